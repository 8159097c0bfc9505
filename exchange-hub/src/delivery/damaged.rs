//! Queued items whose stored data the hub cannot read back: a document record or inline
//! content that fails to decode or to authenticate (altered on disk, or damaged by it).
//! Retrying cannot read them, so they must not hold back what is queued behind them: the push
//! loop would otherwise end its stream at the same item on every reconnect, for ever.
//!
//! Like other data loss (a damaged blob, which the recipient refuses), the delivery ends
//! NOT_DELIVERED: the hub signs it with a reason naming the data loss, the item leaves the queue
//! and the evidence is queued for the sender in one transaction (the state machine decides, as
//! for any evidence), and the damage is audited (`DATA_LOSS`). An item that cannot be reported
//! so — its ACCEPTED evidence is unreadable too, or it is not a delivery — is parked instead:
//! audited, left queued (nothing is dropped), and not pushed again by this stream.

use exchange_core::{
    document::EvidenceKind,
    error::ServiceError,
    ids::{Address, DeptId, DocumentId},
    store::StoreError,
    time::now_ms,
};
use exchange_proto::v1::AuditKind;
use tracing::{info, warn};

use crate::{
    Hub,
    audit::{self, Event},
    store::{self, About, Taken},
};

/// What became of a damaged item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Reported NOT_DELIVERED to its sender; it has left the queue.
    Reported,
    /// Left queued and audited; the caller does not push it again.
    Parked,
}

/// Whether a store error means that stored data is damaged — it does not heal by retrying —
/// rather than a store that is unavailable for now.
pub(crate) fn is_damage(e: &StoreError) -> bool {
    matches!(e, StoreError::Decode { .. })
}

/// The delivery of document `id` (queue item `taken`) cannot be pushed because its
/// stored data is damaged (`damage`): reported NOT_DELIVERED to the sender, or parked.
pub(crate) async fn not_delivered(
    hub: &Hub,
    taken: &Taken,
    id: DocumentId,
    damage: &StoreError,
) -> Result<Outcome, ServiceError> {
    let dept = &taken.dept;
    warn!(doc_id = %id, recipient = %dept, error = %damage, "stored document is damaged: not delivered (data loss)");
    let accepted = match store::acceptance(&hub.store, id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return park(hub, dept, Some(id), damage, "its acceptance is not stored").await;
        }
        Err(e) if is_damage(&e) => {
            return park(hub, dept, Some(id), damage, &format!("and {e}")).await;
        }
        Err(e) => return Err(e.into()),
    };
    // Only our own hub's ACCEPTED names a sender of this exchange: a document relayed from
    // another exchange (its origin hub's ACCEPTED) cannot be traced back without its record.
    let ours = exchange_core::document::SignedEvidence::verify(
        accepted.wire.clone(),
        &hub.verifier,
        exchange_core::time::now_secs(),
    );
    if ours.is_err() {
        let why = "relayed from another exchange: it cannot be traced back without its record";
        return park(hub, dept, Some(id), damage, why).await;
    }
    // The evidence names the document as the acceptance does (sender, header digest): the
    // sender can check it against its own copy although the hub can no longer read its own.
    let mut ev = accepted.evidence;
    ev.kind = EvidenceKind::NotDelivered;
    ev.recipient = Some(Address::local(dept.clone()));
    ev.at_ms = now_ms();
    ev.clerk.clear();
    ev.cc = false;
    ev.reason = exchange_core::convert::one_line_text(
        &format!("data loss at the hub: {damage}"),
        exchange_core::document::limits::TEXT_CHARS,
    );
    let sender = ev.sender.clone();
    let ev = exchange_core::document::SignedEvidence::seal(ev, &hub.signer)?;
    let about = About {
        id,
        back: store::Back::Sender(sender.clone()),
        priority: taken.key.priority,
        origin: None,
        here: None,
    };
    audit::record(
        &hub.store,
        Event::new(AuditKind::DataLoss)
            .doc(id)
            .dept(dept)
            .detail(format!("{damage}; reported NOT_DELIVERED to {sender}")),
    )
    .await;
    match store::record_evidence(&hub.store, about, ev, Some(taken.clone())).await {
        Ok(recorded) => {
            if recorded {
                info!(doc_id = %id, recipient = %dept, "not delivered: data loss reported to the sender");
                hub.sessions.wake(&sender);
            }
            Ok(Outcome::Reported)
        }
        // The delivery ended otherwise meanwhile: nothing is left to report.
        Err(e) if e.is_state_conflict() => {
            store::ack(&hub.store, taken.clone()).await?;
            Ok(Outcome::Reported)
        }
        Err(store::StepError::Store(e)) if !is_damage(&e) => Err(e.into()),
        Err(e @ store::StepError::Fenced { .. }) => Err(e.into()),
        Err(e) => park(hub, dept, Some(id), damage, &e.to_string()).await,
    }
}

/// Parks a damaged item (`why` it could not be reported): audited, left queued.
pub(crate) async fn park(
    hub: &Hub,
    dept: &DeptId,
    doc: Option<DocumentId>,
    damage: &StoreError,
    why: &str,
) -> Result<Outcome, ServiceError> {
    warn!(doc_id = ?doc, recipient = %dept, error = %damage, why, "damaged queued item parked");
    let mut event = Event::new(AuditKind::DataLoss).dept(dept).detail(format!(
        "{damage}; {why}: the item stays queued, not pushed"
    ));
    if let Some(id) = doc {
        event = event.doc(id);
    }
    audit::record(&hub.store, event).await;
    Ok(Outcome::Parked)
}
