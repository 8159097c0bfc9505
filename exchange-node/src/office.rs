//! The sender's own statements about a document it sent — recall (撤回), added recipients (补发),
//! reminders (催办) — and what they do when they reach a recipient.
//!
//! At the sender each statement is signed and queued for the hub in the same transaction that
//! records it, so the API answers only once it is durable. At the recipient a recall moves the
//! inbox entry through `InboxState::recall` (the one state machine) and a reminder is counted.
//!
//! The decisions live here, on the typed records; the store writes them (`store::change_sent`,
//! `store::change_inbox`):
//! - [`statements`]: the sender's 撤回, 补发 and 催办, and the hub's answers to them;
//! - [`notices`]: a recall or reminder arriving at the recipient, and a 补发 delivery's check;
//! - [`auto_remind`]: the automatic reminder (自动催办) of overdue deliveries.

mod auto_remind;
mod notices;
mod statements;
#[cfg(test)]
mod tests;

pub(crate) use auto_remind::auto_remind_loop;
pub(crate) use notices::{check_addition, notice};
pub(crate) use statements::{add_recipients, addition_answered, recall, remind, statement_refused};
