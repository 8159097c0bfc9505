//! Non-delivery by expiry: a delivery still waiting when its time is up (the document's reply
//! deadline, or `expire_undelivered_after_secs` after acceptance) is taken out of the queue and
//! recorded as NOT_DELIVERED ("expired"), signed by the hub and routed to the sender like any
//! other evidence — so the sender can prove the document was not delivered, and why.

use std::{sync::Arc, time::Duration};

use exchange_core::{
    document::{Evidence, EvidenceKind, SignedEvidence},
    error::ServiceError,
    time::{format_ms, now_ms},
};
use tracing::{info, warn};

use crate::{Hub, delivery::damaged, store};

/// How often queued deliveries are checked.
const EVERY: Duration = Duration::from_secs(2);

/// Runs until the hub stops.
pub(crate) async fn expiry_loop(hub: Arc<Hub>) {
    let cfg = &hub.cfg.hub;
    if cfg.expire_undelivered_after_secs == 0 && !cfg.expire_at_reply_deadline {
        return;
    }
    loop {
        tokio::time::sleep(EVERY).await;
        if let Err(e) = expire_due(&hub).await {
            warn!(error = %e, "checking deliveries for expiry");
        }
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

async fn expire_due(hub: &Hub) -> Result<(), ServiceError> {
    let now = now_ms();
    for (dept, key, id) in store::queued_deliveries(&hub.store).await? {
        let rec = match store::document(&hub.store, id).await {
            // Damaged: its deadline cannot be read. Passed over, so that it does not stop every
            // pass here; the push to the recipient reports it (`delivery::damaged`).
            Err(e) if damaged::is_damage(&e) => {
                tracing::debug!(doc_id = %id, error = %e, "damaged document passed over by expiry");
                continue;
            }
            other => other?,
        };
        let Some(rec) = rec else {
            continue;
        };
        let about = hub.about(&rec);
        let me = hub.links.header_form(rec.origin(), &dept);
        let doc = rec.doc;
        let Some(due) = deadline(
            hub,
            rec.accepted_at_ms,
            doc.header.metadata.reply_deadline_ms,
        ) else {
            continue;
        };
        if now < due {
            continue;
        }
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
    expire_relays(hub, now).await
}

/// Documents waiting in a peer queue past their deadline (the next hub down, or refusing them,
/// for that long): this hub, which holds custody, gives up on their recipients there and signs
/// NOT_DELIVERED as the custodian, which goes back towards the sender (docs/federation.md).
async fn expire_relays(hub: &Hub, now: i64) -> Result<(), ServiceError> {
    let Some(here) = hub.links.name.clone() else {
        return Ok(());
    };
    for (peer, key, id, recipients) in store::queued_relays(&hub.store).await? {
        let Some(rec) = store::document(&hub.store, id).await.ok().flatten() else {
            continue;
        };
        let Some(due) = deadline(
            hub,
            rec.accepted_at_ms,
            rec.doc.header.metadata.reply_deadline_ms,
        ) else {
            continue;
        };
        if now < due {
            continue;
        }
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
