//! Non-delivery by expiry: a delivery still waiting when its time is up (the document's reply
//! deadline, or `expire_undelivered_after_secs` after acceptance) is taken out of the queue and
//! recorded as NOT_DELIVERED ("expired"), signed by the hub and routed to the sender like any
//! other evidence — so the sender can prove the document was not delivered, and why.

use std::{collections::HashMap, sync::Arc, time::Duration};

use exchange_core::{
    document::{Evidence, EvidenceKind, SignedEvidence},
    error::ServiceError,
    ids::DocumentId,
    time::{format_ms, now_ms},
};
use tracing::{info, warn};

use crate::{Hub, delivery::damaged, store};

/// How often queued deliveries are checked.
const EVERY: Duration = Duration::from_secs(2);

/// Whether deliveries expire at all (`[hub]`).
fn enabled(hub: &Hub) -> bool {
    let cfg = &hub.cfg.hub;
    cfg.expire_undelivered_after_secs > 0 || cfg.expire_at_reply_deadline
}

/// Runs until the hub stops.
pub(crate) async fn expiry_loop(hub: Arc<Hub>) {
    if !enabled(&hub) {
        return;
    }
    loop {
        tokio::time::sleep(EVERY).await;
        if let Err(e) = expire_due(&hub).await {
            warn!(error = %e, "checking deliveries for expiry");
        }
    }
}

/// Tells the expiry pass the deadline of document `id`, which this hub just accepted at
/// `accepted_at_ms`: the pass then need not read the document to learn it.
pub(crate) fn accepted(hub: &Hub, id: DocumentId, accepted_at_ms: i64, reply_deadline_ms: i64) {
    if enabled(hub) {
        let due = deadline(hub, accepted_at_ms, reply_deadline_ms);
        hub.deadlines.lock().learn(id, due);
    }
}

/// When the delivery of a document accepted at `accepted_at_ms` with `reply_deadline_ms`
/// expires, if ever.
fn deadline(hub: &Hub, accepted_at_ms: i64, reply_deadline_ms: i64) -> Option<i64> {
    let cfg = &hub.cfg.hub;
    let after =
        i64::try_from(cfg.expire_undelivered_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let by_age =
        (cfg.expire_undelivered_after_secs > 0).then(|| accepted_at_ms.saturating_add(after));
    let by_reply =
        (cfg.expire_at_reply_deadline && reply_deadline_ms > 0).then_some(reply_deadline_ms);
    by_age.into_iter().chain(by_reply).min()
}

/// The deadline of each queued document, learned once: from the accepting path as the hub
/// accepts it ([`accepted`]), or by reading it the first time a pass finds it queued (one
/// accepted by another hub on the same database, or before a restart). With a backlog of
/// thousands, reading every queued document on every pass cost the hub more than a tenth of its
/// CPU under load. A document's deadline never changes: it depends on its acceptance time, its
/// signed reply deadline and this process's configuration.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    /// Document → when its deliveries expire (`None`: never), as of the last pass.
    known: HashMap<DocumentId, Option<i64>>,
    /// The documents seen queued in the current pass, and those accepted during it; the others
    /// are forgotten at its end. One accepted but not seen queued by the end of the next pass
    /// has left the queue (delivered), and is forgotten then.
    seen: HashMap<DocumentId, Option<i64>>,
}

/// The hub's [`Deadlines`], shared by the accepting paths and the expiry pass.
#[derive(Debug, Default)]
pub(crate) struct SharedDeadlines(std::sync::Mutex<Deadlines>);

impl SharedDeadlines {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Deadlines {
    /// The deadline of `id` if it is known (and keeps it for the next pass).
    fn get(&mut self, id: DocumentId) -> Option<Option<i64>> {
        if let Some(due) = self.seen.get(&id) {
            return Some(*due);
        }
        let due = *self.known.get(&id)?;
        self.seen.insert(id, due);
        Some(due)
    }

    /// Learns the deadline of `id`: read from the store in this pass, or told by the accepting
    /// path.
    fn learn(&mut self, id: DocumentId, due: Option<i64>) {
        self.seen.insert(id, due);
    }

    /// Ends a pass: what was not seen queued (or accepted) in it is no longer needed.
    fn end_pass(&mut self) {
        self.known = std::mem::take(&mut self.seen);
    }
}

async fn expire_due(hub: &Hub) -> Result<(), ServiceError> {
    let now = now_ms();
    let result = match expire_deliveries(hub, now).await {
        Ok(()) => expire_relays(hub, now).await,
        Err(e) => Err(e),
    };
    // After a failed pass, what it did not reach is read again when next needed.
    hub.deadlines.lock().end_pass();
    result
}

/// The deadline of document `id`: known, or read from the store. `Ok(None)` also for a
/// document that is gone or damaged (passed over, not remembered: the next pass looks again).
async fn due_of(hub: &Hub, id: DocumentId) -> Result<Option<i64>, ServiceError> {
    if let Some(due) = hub.deadlines.lock().get(id) {
        return Ok(due);
    }
    let rec = match store::document(&hub.store, id).await {
        // Damaged: its deadline cannot be read. Passed over, so that it does not stop every
        // pass here; the push to the recipient reports it (`delivery::damaged`).
        Err(e) if damaged::is_damage(&e) => {
            tracing::debug!(doc_id = %id, error = %e, "damaged document passed over by expiry");
            return Ok(None);
        }
        other => other?,
    };
    let Some(rec) = rec else {
        return Ok(None);
    };
    let due = deadline(
        hub,
        rec.accepted_at_ms,
        rec.doc.header.metadata.reply_deadline_ms,
    );
    hub.deadlines.lock().learn(id, due);
    Ok(due)
}

/// Queued deliveries past their deadline: NOT_DELIVERED ("expired"), back to the sender.
async fn expire_deliveries(hub: &Hub, now: i64) -> Result<(), ServiceError> {
    for (dept, key, id) in store::queued_deliveries(&hub.store).await? {
        let due = match due_of(hub, id).await? {
            Some(due) if now >= due => due,
            _ => continue,
        };
        let Some(rec) = store::document(&hub.store, id).await? else {
            continue;
        };
        let about = hub.about(&rec);
        let me = hub.links.header_form(rec.origin(), &dept);
        let doc = rec.doc;
        let mut ev = Evidence::about(&doc, EvidenceKind::NotDelivered, Some(me), now);
        ev.reason = format!("expired: not delivered by {}", format_ms(due));
        let ev = SignedEvidence::seal(ev, &hub.signer)?;
        let taken = store::Taken {
            dept: dept.clone(),
            key,
            fence: crate::lease::Fence::NONE,
        };
        if store::record_evidence(&hub.store, about.clone(), ev, Some(taken)).await? {
            info!(doc_id = %id, recipient = %dept, "delivery expired");
            hub.wake_back(&about);
        }
    }
    Ok(())
}

/// Documents waiting in a peer queue past their deadline (the next hub down, or refusing them,
/// for that long): this hub, which holds custody, gives up on their recipients there and signs
/// NOT_DELIVERED as the custodian, which goes back towards the sender (docs/federation.md).
async fn expire_relays(hub: &Hub, now: i64) -> Result<(), ServiceError> {
    let Some(here) = hub.links.name.clone() else {
        return Ok(());
    };
    for (peer, key, id, recipients) in store::queued_relays(&hub.store).await? {
        let due = match due_of(hub, id).await {
            Ok(Some(due)) if now >= due => due,
            _ => continue,
        };
        let Some(rec) = store::document(&hub.store, id).await.ok().flatten() else {
            continue;
        };
        let mut evs = Vec::with_capacity(recipients.len());
        for r in recipients {
            let mut ev = Evidence::about(&rec.doc, EvidenceKind::NotDelivered, Some(r), now);
            ev.custodian = Some(here.clone());
            ev.reason = format!(
                "expired: not handed to exchange {peer}'s hub by {}",
                format_ms(due)
            );
            evs.push(SignedEvidence::seal(ev, &hub.signer)?);
        }
        let about = hub.about(&rec);
        let told = store::relay_given_up(&hub.store, about.clone(), evs, peer.clone(), key).await?;
        info!(doc_id = %id, %peer, recipients = told, "relay expired: not delivered");
        hub.wake_back(&about);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_kept_while_queued_and_forgotten_after() {
        let (a, b) = (DocumentId::new(), DocumentId::new());
        let mut d = Deadlines::default();
        assert_eq!(d.get(a), None, "nothing learned yet");
        d.learn(a, Some(10));
        d.learn(b, None);
        d.end_pass();
        assert_eq!(d.get(a), Some(Some(10)));
        d.end_pass(); // b was not queued in this pass
        assert_eq!(d.get(a), Some(Some(10)));
        assert_eq!(d.get(b), None, "b left the queue and was forgotten");
        d.end_pass();
        d.end_pass();
        assert!(d.known.is_empty() && d.seen.is_empty());
    }

    #[test]
    fn noted_deadlines_are_used_once_queued_and_dropped_once_delivered() {
        let (queued, delivered, late) = (DocumentId::new(), DocumentId::new(), DocumentId::new());
        let mut d = Deadlines::default();
        d.learn(queued, Some(20));
        d.learn(delivered, None);
        // A pass finds `queued` in the queue: known without a read; `delivered` is not there.
        assert_eq!(d.get(queued), Some(Some(20)));
        d.learn(late, Some(30)); // accepted during the pass, after the queue was scanned
        d.end_pass();
        assert_eq!(d.get(queued), Some(Some(20)), "kept while queued");
        assert_eq!(
            d.get(late),
            Some(Some(30)),
            "told during the last pass: still noted"
        );
        d.end_pass();
        assert_eq!(d.get(delivered), None, "never seen queued: dropped");
    }
}
