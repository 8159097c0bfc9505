//! The node's durable state (see `exchange_core::store` for the durability rule: nothing is
//! acknowledged before the transaction holding it has committed).
//!
//! Tables:
//! - `sent`: doc id → `SentDocument` (what this department sent, each recipient's timeline)
//! - `inbox`: doc id → `ReceivedDocument` (what it received, and what the clerk did)
//! - `idempotency`: client key → doc id
//! - `events`: seq → `NodeEventRecord` (what `WatchEvents` replays)
//! - `outbox` queue (destination "hub"): documents to submit, evidence to send
//!
//! Callers see typed records — [`SentRecord`], [`InboxRecord`], [`OutboxItem`] — never the
//! stored protobuf messages. Each record is converted in one place (its module), so a record
//! that cannot be read (no document, an unknown state code) is reported there, once, as a
//! `StoreError::Decode` naming the record (`inbox <doc id>: unknown inbox state code 42`).
//!
//! Every change is one write transaction behind a function with typed arguments. Where the
//! change needs a decision (a recall, a reminder, a notice), the caller makes it on the typed
//! record inside [`change_sent`] / [`change_inbox`] and lists in an [`Effects`] what must be
//! written with it (statements queued for the hub, events, the outbox item it answers).
//!
//! - [`sent`]: what this department sent, and the hub's answers about it;
//! - [`inbox`]: what it received, and the clerk's actions;
//! - [`outbox`]: what waits for the hub;
//! - [`events`]: the event log `WatchEvents` follows.
//! - [`record`]: what the `sent` and `inbox` records share (read one, read all, change one).

mod events;
mod inbox;
mod outbox;
mod record;
mod sent;
#[cfg(test)]
mod tests;

use exchange_core::{
    document::{SignedDoc, SignedEvidence},
    store::{
        StoreError, decode, encode,
        queue::DurableQueue,
        queue::QueueKey,
        sealing::{Sealer, slot},
    },
};
use exchange_proto::v1 as pb;
use redb::{ReadTransaction, ReadableTable, TableDefinition, TableHandle, WriteTransaction};

pub(crate) use events::{Event, events_after};
pub(crate) use inbox::{
    InboxRecord, change_inbox, handle, inbox, receipt_refused, receive, received, replace_receipt,
};
pub(crate) use outbox::{OutboxItem, next_outbox, outbox_done};
pub(crate) use sent::{
    SentRecipient, SentRecord, all_sent, apply_evidence, change_sent, change_sents, idempotent,
    refused, sent, sent_since, submit,
};

/// Schema version of the node store.
pub(crate) const SCHEMA: u64 = 1;

const SENT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sent");
const INBOX: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("inbox");
const IDEMPOTENCY: TableDefinition<'_, &str, &str> = TableDefinition::new("idempotency");
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
/// The outbox queue (also read by `metrics` for its depths).
pub(crate) const OUTBOX: DurableQueue = DurableQueue::new("outbox");
/// Every table of this module, for a backup (`crate::backup`).
pub(crate) const TABLES: &[&dyn exchange_core::backup::BackupTable] = &[
    &SENT,
    &INBOX,
    &IDEMPOTENCY,
    &EVENTS,
    &exchange_core::store::content::CONTENT,
    &OUTBOX,
];
/// The outbox's only destination.
const HUB: &str = "hub";

/// What a change to a record brings along, written in the same transaction as the record.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Signed statements for the hub, with their queue priority, in order.
    queued: Vec<(u8, pb::SignedEvidence)>,
    /// Events for `WatchEvents`, in order.
    events: Vec<Event>,
    /// The outbox item this change answers, removed with it.
    done: Option<QueueKey>,
}

impl Effects {
    /// Queues `ev` (a statement about `doc`) for the hub, as urgent as the document.
    pub(crate) fn queue(&mut self, doc: &SignedDoc, ev: &SignedEvidence) {
        self.queued
            .push((doc.header.urgency.priority(), ev.wire.clone()));
    }

    /// Logs `event` for `WatchEvents`.
    pub(crate) fn event(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Removes the outbox item `key` (the hub answered it).
    pub(crate) fn done(&mut self, key: QueueKey) {
        self.done = Some(key);
    }

    /// Writes the effects in `txn`; returns the seq of the last event logged, if any.
    fn commit(self, txn: &WriteTransaction) -> Result<Option<u64>, StoreError> {
        for (priority, ev) in self.queued {
            outbox::push_evidence(txn, priority, ev)?;
        }
        let mut seq = None;
        for e in &self.events {
            seq = Some(events::log(txn, e)?);
        }
        if let Some(key) = self.done {
            OUTBOX.remove(txn, HUB, key)?;
        }
        Ok(seq)
    }
}

/// Decodes the stored bytes at `key` of `table`, opening them first when sealed: the `sent`
/// and `inbox` records hold the signed document, title included ([`Sealer`]).
fn unseal<M: prost::Message + Default>(
    sealer: &Sealer,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
    stored: &[u8],
) -> Result<M, StoreError> {
    let what = format!("{} {key}", table.name());
    let plain = sealer.open(&what, &slot(table.name(), key.as_bytes()), stored)?;
    decode(&what, &plain)
}

/// The stored message at `key` of `table`, in a read snapshot.
fn get<M: prost::Message + Default>(
    txn: &ReadTransaction,
    sealer: &Sealer,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
) -> Result<Option<M>, StoreError> {
    match txn.open_table(table) {
        Ok(t) => t
            .get(key)?
            .map(|v| unseal(sealer, table, key, v.value()))
            .transpose(),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The stored message at `key` of `table`, in a write transaction.
fn get_w<M: prost::Message + Default>(
    txn: &WriteTransaction,
    sealer: &Sealer,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
) -> Result<Option<M>, StoreError> {
    let t = txn.open_table(table)?;
    let v = t.get(key)?;
    v.map(|v| unseal(sealer, table, key, v.value())).transpose()
}

/// Stores `m` at `key` of `table`, sealed when encryption is on.
fn put<M: prost::Message>(
    txn: &WriteTransaction,
    sealer: &Sealer,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
    m: &M,
) -> Result<(), StoreError> {
    let stored = sealer.seal(&slot(table.name(), key.as_bytes()), encode(m))?;
    txn.open_table(table)?.insert(key, stored.as_slice())?;
    Ok(())
}

/// Every record of a table keyed by document id from `from` on, in id order, each converted by
/// `convert` (given its key).
fn all<M, R>(
    txn: &ReadTransaction,
    sealer: &Sealer,
    table: TableDefinition<'_, &str, &[u8]>,
    from: &str,
    convert: impl Fn(&str, M) -> Result<R, StoreError>,
) -> Result<Vec<R>, StoreError>
where
    M: prost::Message + Default,
{
    let t = match txn.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    t.range(from..)?
        .map(|e| {
            let (k, v) = e?;
            convert(k.value(), unseal(sealer, table, k.value(), v.value())?)
        })
        .collect()
}

/// The signed document of a stored record (`what`: e.g. `sent <id>`), read back without
/// checking its signature again (it was verified, or made here, before it was stored).
fn stored_doc(what: &str, wire: Option<pb::SignedDocument>) -> Result<SignedDoc, StoreError> {
    let wire = wire.ok_or_else(|| StoreError::decode(what, "no document"))?;
    SignedDoc::decode(wire).map_err(|e| StoreError::decode(what, format!("document: {e}")))
}
