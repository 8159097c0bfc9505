//! 自动催办: the automatic reminder of overdue deliveries. Every `[reminders] check_every_secs`
//! the node reminds once, by itself, each recipient whose delivery of a document this department
//! sent has become overdue (delivered, neither signed for nor sent back past its allowance).

use std::sync::Arc;

use exchange_core::{
    document::Urgency,
    ids::{Address, DocumentId},
    state::DeliveryState,
    time::{format_ms, now_ms},
};

use super::statements::queue_reminder;
use crate::{
    Node,
    error::NodeError,
    store::{self, SentRecipient, SentRecord},
};

/// How far back (by document id, UUIDv7: by the time it was sent) the automatic reminders look
/// for overdue deliveries: 90 days, so that the scan stays small however much was sent.
const AUTO_REMIND_WINDOW_MS: i64 = 90 * 24 * 3600 * 1000;

/// 自动催办: every `[reminders] check_every_secs`, remind once, by itself, each recipient whose
/// delivery of a document this department sent has become overdue (delivered, neither signed
/// for nor sent back past its allowance). The reminder is signed and counted like a clerk's
/// (`remind`), with a note saying it is automatic, so the recipient sees it first in its inbox
/// and the evidence records that it was reminded. Off with `[reminders] automatic = false`.
pub(crate) async fn auto_remind_loop(node: Arc<Node>, stop: tokio_util::sync::CancellationToken) {
    if !node.cfg.reminders.automatic {
        return;
    }
    let every = std::time::Duration::from_secs(node.cfg.reminders.check_every_secs.max(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if node.can_sign().is_err() {
            continue; // said at start and on every clerk's attempt; nothing to sign with
        }
        match auto_remind(&node).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(reminded = n, "automatic reminders (自动催办) queued");
                node.outbox_wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "looking for overdue deliveries to remind"),
        }
    }
}

/// One pass: finds the overdue, not yet auto-reminded deliveries on a snapshot, then reminds
/// them in one transaction (checking each again there). Returns how many were reminded.
async fn auto_remind(node: &Arc<Node>) -> Result<usize, NodeError> {
    let now = now_ms();
    let from = uuid_v7_floor(now.saturating_sub(AUTO_REMIND_WINDOW_MS));
    let due: Vec<(DocumentId, Vec<Address>)> = store::sent_since(&node.store, from)
        .await?
        .iter()
        .filter_map(|rec| {
            let depts = overdue_unreminded(node, rec, now);
            (!depts.is_empty()).then_some((rec.doc.header.id, depts))
        })
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let ids = due.iter().map(|(id, _)| *id).collect();
    let n = Arc::clone(node);
    let at = now_ms();
    let counts = store::change_sents(&node.store, ids, move |rec, fx| {
        let Some((_, depts)) = due.iter().find(|(id, _)| *id == rec.doc.header.id) else {
            return Ok(0);
        };
        let still = overdue_unreminded(&n, rec, at);
        let urgency = rec.doc.header.urgency;
        let mut count = 0;
        for r in &mut rec.recipients {
            if !depts.contains(&r.dept) || !still.contains(&r.dept) {
                continue;
            }
            let due_at = n
                .cfg
                .reminders
                .due_ms(&n.cfg.calendar, urgency, r.delivered_at_ms);
            let note = format!("自动催办 (automatic): 签收 was due {}", format_ms(due_at));
            queue_reminder(&n, &rec.doc, r, note, at, fx)?;
            r.auto_reminded_at_ms = at;
            count += 1;
        }
        Ok::<_, NodeError>(count)
    })
    .await?;
    Ok(counts.iter().sum())
}

/// A recipient that the automatic reminder may still concern: delivered, not signed for or
/// sent back, not reminded automatically yet.
fn awaits_auto_reminder(r: &SentRecipient) -> bool {
    r.auto_reminded_at_ms == 0 && r.state == DeliveryState::Delivered
}

/// Whether `rec` may have a recipient to remind automatically, without reading the clock (a
/// recalled or refused document reminds no one).
fn may_remind(rec: &SentRecord) -> bool {
    rec.recall.is_none()
        && rec.refused.is_empty()
        && rec.acceptance.is_some()
        && rec.recipients.iter().any(awaits_auto_reminder)
}

/// The recipients of `rec` whose delivery is overdue at `now` and not reminded automatically
/// yet.
fn overdue_unreminded(node: &Node, rec: &SentRecord, now: i64) -> Vec<Address> {
    if !may_remind(rec) {
        return Vec::new();
    }
    let urgency: Urgency = rec.doc.header.urgency;
    rec.recipients
        .iter()
        .filter(|r| {
            awaits_auto_reminder(r)
                && node
                    .cfg
                    .reminders
                    .is_late(&node.cfg.calendar, urgency, r.delivered_at_ms, now)
        })
        .map(|r| r.dept.clone())
        .collect()
}

/// The smallest UUIDv7 (as the store keys documents: lowercase, hyphenated) of time `ms`: every
/// document id minted at or after `ms` sorts at or after it.
fn uuid_v7_floor(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0) & 0xffff_ffff_ffff;
    format!(
        "{:08x}-{:04x}-7000-8000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uuid_v7_floor_sorts_between_ids_minted_before_and_after() {
        let now = now_ms();
        let id = DocumentId::new().to_string();
        assert!(uuid_v7_floor(now - 1_000) <= id, "{id}");
        assert!(uuid_v7_floor(now + 1_000) > id, "{id}");
        assert_eq!(uuid_v7_floor(0), "00000000-0000-7000-8000-000000000000");
    }
}
