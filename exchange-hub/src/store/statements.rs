//! The sender's own signed statements about a document it sent: a recall (撤回), an added
//! recipient (补发) and a reminder (催办). None of them moves a delivery by itself; each is
//! kept as evidence and queued, as a notice or a delivery, for the recipients it concerns.

use std::sync::Arc;

use exchange_core::store::kv::WriteTables;
use exchange_core::{
    document::{EvidenceKind, SignedDoc, SignedEvidence},
    ids::{Address, DeptId, DocumentId, ExchangeName},
    state::DeliveryState,
    store::{Store, StoreError, encode},
};
use exchange_proto::{store::v1 as st, v1 as pb};

use super::{
    DELIVERIES, OUTBOUND, Outbound, RECALLS, RELAY_OUT, StepError,
    deliveries::{deliveries_of, load_delivery},
    delivery_key, put_evidence,
    records::DeliveryRecord,
    relay::PeerItem,
};
use crate::{
    audit::{self, Event},
    federation::{Dest, Routes},
};

/// Whether the sender recalled document `id`.
pub(super) fn is_recalled(txn: &dyn WriteTables, id: &str) -> Result<bool, StoreError> {
    Ok(txn.get(RECALLS, id.as_bytes())?.is_some())
}

/// Who a sender's statement was queued for: departments of this exchange, and peer hubs
/// (towards recipients of linked exchanges).
#[derive(Debug, Default)]
pub(crate) struct Woken {
    /// Departments to wake.
    pub(crate) local: Vec<DeptId>,
    /// Peers whose workers to wake.
    pub(crate) peers: Vec<ExchangeName>,
}

/// Records the sender's recall (撤回) and queues it, as a notice, for every recipient that is not
/// finished with the document (a confirmed one still has to acknowledge it); for recipients of
/// linked exchanges, once for each peer hub towards them (`routes`). A delivery still queued is
/// never pushed after this (see `crate::delivery`). Returns who to wake; a repeated recall
/// changes nothing (the first one stands).
pub(crate) async fn recall(
    store: &Store,
    doc: &SignedDoc,
    ev: SignedEvidence,
    routes: Arc<Routes>,
) -> Result<Woken, StepError> {
    let id = doc.header.id.to_string();
    let priority = doc.header.urgency.priority();
    store
        .write(move |txn| {
            if is_recalled(txn, &id)? {
                return Ok(Woken::default());
            }
            let rec = st::HubRecall {
                recall: Some(ev.wire.clone()),
                at_ms: ev.evidence.at_ms,
            };
            txn.put(RECALLS, id.as_bytes(), &encode(&rec))?;
            put_evidence(txn, &id, "", EvidenceKind::Recall, &ev.wire)?;
            audit::append(
                txn,
                &Event::new(pb::AuditKind::Evidence)
                    .doc(&id)
                    .dept(&ev.evidence.sender)
                    .detail(format!("Recall reason {:?}", ev.evidence.reason)),
            )?;
            let notice = Outbound::Notice(ev.wire.clone()).encode();
            let mut woken = Woken::default();
            for (key, delivery) in deliveries_of(txn, &id)? {
                let open = matches!(
                    delivery.state,
                    DeliveryState::Queued
                        | DeliveryState::Accepted
                        | DeliveryState::Delivered
                        | DeliveryState::Confirmed
                );
                if !open {
                    continue;
                }
                // Delivery keys are relative to this exchange.
                match routes.dest(None, &key) {
                    Some(Dest::Local(dept)) => {
                        OUTBOUND.push(txn, dept.as_str(), priority, &notice)?;
                        woken.local.push(dept);
                    }
                    Some(Dest::Peer(p)) if !woken.peers.contains(&p) => {
                        let item = PeerItem::Evidence(ev.wire.clone()).encode();
                        RELAY_OUT.push(txn, p.as_str(), priority, &item)?;
                        woken.peers.push(p);
                    }
                    Some(Dest::Peer(_)) => {}
                    None => return Err(StepError::Unroutable { addr: key }),
                }
            }
            Ok(woken)
        })
        .await
}

/// Adds a recipient to a sent document (补发): a new delivery, queued like the first ones, with
/// the sender's signed RECIPIENT_ADDED kept to go with it. Returns false if `dept` already is a
/// recipient (nothing changes); a recalled document is refused ([`StepError::Recalled`]).
pub(crate) async fn add_recipient(
    store: &Store,
    doc: &SignedDoc,
    ev: SignedEvidence,
    named: Address,
    dest: Dest,
) -> Result<bool, StepError> {
    let (doc_id, priority) = (doc.header.id, doc.header.urgency.priority());
    store
        .write(move |txn| {
            let id = doc_id.to_string();
            if is_recalled(txn, &id)? {
                return Err(StepError::Recalled { doc: doc_id });
            }
            // At the sender's hub the header's names are this exchange's.
            let slot = named.to_string();
            let key = delivery_key(&id, &slot);
            if txn.get(DELIVERIES, &key)?.is_some() {
                return Ok(false);
            }
            txn.put(DELIVERIES, &key, &DeliveryRecord::accepted().encode())?;
            put_evidence(txn, &id, &slot, EvidenceKind::RecipientAdded, &ev.wire)?;
            match &dest {
                Dest::Local(dept) => {
                    OUTBOUND.push(
                        txn,
                        dept.as_str(),
                        priority,
                        &Outbound::Deliver(doc_id).encode(),
                    )?;
                }
                Dest::Peer(p) => {
                    let item = PeerItem::Relay {
                        doc: doc_id,
                        recipients: vec![named.clone()],
                    };
                    RELAY_OUT.push(txn, p.as_str(), priority, &item.encode())?;
                }
            }
            let role = if ev.evidence.cc { "cc" } else { "to" };
            audit::append(
                txn,
                &Event::new(pb::AuditKind::Queued)
                    .doc(&id)
                    .dept(&slot)
                    .detail(format!("added after sending (补发) as {role}")),
            )?;
            Ok(true)
        })
        .await
}

/// What became of a sender's reminder (催办).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reminder {
    /// Queued as a notice for the recipient.
    Queued,
    /// The delivery had already ended (the reminder crossed a 签收 or 退回 on its way): kept as
    /// evidence and audited, but not forwarded. Not a refusal: nothing is left to ask of the
    /// recipient, and the sender's node must not retry it (docs/delivery.md).
    Moot(DeliveryState),
}

/// Records the sender's reminder (催办) and queues it for a recipient that has not finished
/// with the document; for one that has, it is kept and audited but not forwarded.
pub(crate) async fn remind(
    store: &Store,
    doc: &SignedDoc,
    ev: SignedEvidence,
    key: Address,
    dest: Dest,
) -> Result<Reminder, StepError> {
    let (doc_id, priority) = (doc.header.id, doc.header.urgency.priority());
    store
        .write(move |txn| {
            let id = doc_id.to_string();
            remind_in(txn, &id, doc_id, priority, &ev, &key, &dest)
        })
        .await
}

fn remind_in(
    txn: &dyn WriteTables,
    id: &str,
    doc_id: DocumentId,
    priority: u8,
    ev: &SignedEvidence,
    key: &Address,
    dest: &Dest,
) -> Result<Reminder, StepError> {
    let state = load_delivery(txn, doc_id, key)?.state;
    let slot = key.to_string();
    put_evidence(txn, id, &slot, EvidenceKind::Reminded, &ev.wire)?;
    let (outcome, detail) = if state.is_final() {
        (
            Reminder::Moot(state),
            format!(
                "Reminded note {:?}: not forwarded: the delivery is {state}",
                ev.evidence.reason
            ),
        )
    } else {
        match dest {
            Dest::Local(dept) => {
                let item = Outbound::Notice(ev.wire.clone()).encode();
                OUTBOUND.push(txn, dept.as_str(), priority, &item)?;
            }
            Dest::Peer(p) => {
                let item = PeerItem::Evidence(ev.wire.clone()).encode();
                RELAY_OUT.push(txn, p.as_str(), priority, &item)?;
            }
        }
        (
            Reminder::Queued,
            format!("Reminded note {:?}", ev.evidence.reason),
        )
    };
    audit::append(
        txn,
        &Event::new(pb::AuditKind::Evidence)
            .doc(id)
            .dept(&slot)
            .detail(detail),
    )?;
    Ok(outcome)
}
