//! How the node's records look through the API: the clerk's inbox entry (`InboxEntry`), one
//! recipient's row of a sent document's status (`RecipientStatus`), and when 签收 falls due.
//! Shared by the handlers, `status` and the evidence bundle, so every command shows the same.

use exchange_core::{
    config::NodeConfig,
    document::{SignedEvidence, Urgency},
    state::InboxState,
    time::now_ms,
};
use exchange_proto::v1 as pb;

use crate::{
    Node,
    store::{InboxRecord, SentRecipient},
};

/// The inbox entry for a received document.
pub(crate) fn inbox_entry(node: &Node, rec: &InboxRecord) -> pb::InboxEntry {
    let h = &rec.doc.header;
    let state = rec.state;
    let added = rec
        .addition
        .clone()
        .and_then(|a| SignedEvidence::decode(a).ok());
    let role = match (h.role_of(&rec.me(&node.cfg.node.id)), &added) {
        (Some(r), _) => r.into(),
        (None, Some(a)) if a.evidence.cc => pb::RecipientRole::Cc,
        (None, _) => pb::RecipientRole::Main,
    };
    let (confirmed, rejected) = match state {
        InboxState::Confirmed | InboxState::RecallPending | InboxState::RecallAcknowledged => {
            (rec.handled_at_ms, 0)
        }
        InboxState::Rejected => (0, rec.handled_at_ms),
        InboxState::New | InboxState::Recalled => (0, 0),
    };
    let recall_reason = rec
        .recall
        .clone()
        .and_then(|r| SignedEvidence::decode(r).ok())
        .map(|r| r.evidence.reason)
        .unwrap_or_default();
    let due = sign_due_ms(&node.cfg, h.urgency, rec.received_at_ms);
    pb::InboxEntry {
        doc_id: h.id.to_string(),
        sender: rec.sender().to_string(),
        title: h.title.clone(),
        urgency: pb::Urgency::from(h.urgency).into(),
        state: pb::InboxState::from(state).into(),
        received_at_ms: rec.received_at_ms,
        doc_number: h.metadata.doc_number.clone(),
        role: role.into(),
        confirmed_at_ms: confirmed,
        rejected_at_ms: rejected,
        clerk: rec.clerk.clone(),
        reason: rec.reason.clone(),
        reply_deadline_ms: h.metadata.reply_deadline_ms,
        reminders: rec.reminders,
        last_reminded_at_ms: rec.last_reminded_at_ms,
        last_reminder_note: rec.last_reminder_note.clone(),
        recall_reason,
        added: added.is_some(),
        overdue: state == InboxState::New && is_past(due, now_ms()),
        sign_due_ms: due,
        hub_refused: rec.hub_refused.clone(),
    }
}

/// When 签收 of something of `urgency` that arrived at `since_ms` falls due, for the API: 0
/// for "not delivered yet" or "never" (a calendar without working days).
pub(crate) fn sign_due_ms(cfg: &NodeConfig, urgency: Urgency, since_ms: i64) -> i64 {
    if since_ms <= 0 {
        return 0;
    }
    match cfg.reminders.due_ms(&cfg.calendar, urgency, since_ms) {
        i64::MAX => 0,
        due => due,
    }
}

/// Whether a 签收 due at `due_ms` (from [`sign_due_ms`]; 0 = never) is overdue at `now_ms`:
/// the rule of `RemindersSection::is_late`, on a due time already computed.
pub(crate) fn is_past(due_ms: i64, now_ms: i64) -> bool {
    due_ms > 0 && now_ms > due_ms
}

/// One recipient's row of a sent document's status.
pub(crate) fn recipient_status(r: &SentRecipient, queued_at_ms: i64) -> pb::RecipientStatus {
    pb::RecipientStatus {
        dept: r.dept.to_string(),
        role: if r.cc {
            pb::RecipientRole::Cc
        } else {
            pb::RecipientRole::Main
        }
        .into(),
        state: pb::RecipientState::from(r.state).into(),
        queued_at_ms,
        accepted_at_ms: r.accepted_at_ms,
        delivered_at_ms: r.delivered_at_ms,
        confirmed_at_ms: r.confirmed_at_ms,
        rejected_at_ms: r.rejected_at_ms,
        clerk: r.clerk.clone(),
        reason: r.reason.clone(),
        overdue: false, // these two are set by `status`, which knows the urgency
        sign_due_ms: 0,
        added: r.added.is_some(),
        reminders: r.reminders,
        last_reminded_at_ms: r.last_reminded_at_ms,
        recalled_at_ms: r.recall_done_at_ms,
    }
}
