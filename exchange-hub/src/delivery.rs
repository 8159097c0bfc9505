//! Pushing deliveries and evidence to connected nodes.
//!
//! Each node holds one `Subscribe` stream. The hub sends the most urgent waiting item, waits for
//! the node's acknowledgement (for a document: its signed delivery receipt, sent only once the
//! document is on the node's disk), commits the effect of the acknowledgement, and only then
//! sends the next item. One item in flight per node means a very urgent document waits behind
//! at most one other. An item that is never acknowledged stays queued and is pushed again on the
//! node's next stream, so delivery is at-least-once on the wire and exactly-once in the inbox
//! (the node deduplicates by document id).

use std::{collections::HashMap, sync::Arc, sync::Mutex};

use exchange_core::{
    document::{Evidence, EvidenceKind, SignedEvidence},
    error::ServiceError,
    ids::DeptId,
    state::DeliveryState,
    time::now_ms,
};
use exchange_proto::v1::{self as pb, AuditKind, subscribe_request::Msg};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use tracing::{info, warn};

use crate::{
    Hub,
    audit::{self, Event},
    service::now_secs,
    store::{self, Outbound},
};

type Tx = mpsc::Sender<Result<pb::HubPush, Status>>;

/// The connected nodes: one session per department; a new stream replaces an older one.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    inner: Mutex<HashMap<DeptId, Session>>,
    /// Deliveries pushed and not yet acknowledged since this hub started: pushing one again is
    /// a redelivery, which the audit log records.
    pushed: Mutex<std::collections::HashSet<(exchange_core::ids::DocumentId, DeptId)>>,
}

#[derive(Debug)]
struct Session {
    id: u64,
    notify: Arc<Notify>,
    cancel: CancellationToken,
}

impl Sessions {
    /// Tells `dept`'s session, if any, that something was queued for it.
    pub(crate) fn wake(&self, dept: &DeptId) {
        if let Some(s) = self.lock().get(dept) {
            s.notify.notify_one();
        }
    }

    /// Notes that `doc` is pushed to `dept`; false if it was pushed before without an ack.
    fn first_push(&self, doc: exchange_core::ids::DocumentId, dept: &DeptId) -> bool {
        self.pushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((doc, dept.clone()))
    }

    /// Forgets a push once it is acknowledged.
    fn acked(&self, doc: exchange_core::ids::DocumentId, dept: &DeptId) {
        self.pushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(doc, dept.clone()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeptId, Session>> {
        // A poisoned lock only means another handler panicked mid-update of this map of
        // handles; the map itself stays consistent, so keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register(
        &self,
        dept: &DeptId,
        parent: &CancellationToken,
    ) -> (u64, Arc<Notify>, CancellationToken) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let cancel = parent.child_token();
        let old = self.lock().insert(
            dept.clone(),
            Session {
                id,
                notify: Arc::clone(&notify),
                cancel: cancel.clone(),
            },
        );
        if let Some(old) = old {
            old.cancel.cancel();
        }
        (id, notify, cancel)
    }

    fn unregister(&self, dept: &DeptId, id: u64) {
        let mut map = self.lock();
        if map.get(dept).is_some_and(|s| s.id == id) {
            map.remove(dept);
        }
    }
}

/// Starts pushing to `dept`; returns the receiving end of its response stream.
pub(crate) fn start(
    hub: Arc<Hub>,
    dept: DeptId,
    acks: Streaming<pb::SubscribeRequest>,
) -> mpsc::Receiver<Result<pb::HubPush, Status>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let (id, notify, cancel) = hub.sessions.register(&dept, &hub.shutdown);
        info!(%dept, "node connected");
        audit::record(&hub.store, Event::new(AuditKind::NodeConnected).dept(&dept)).await;
        let result = push_loop(&hub, &dept, acks, &tx, &notify, &cancel).await;
        hub.sessions.unregister(&dept, id);
        audit::record(
            &hub.store,
            Event::new(AuditKind::NodeDisconnected).dept(&dept),
        )
        .await;
        match result {
            Ok(()) => info!(%dept, "node disconnected"),
            Err(e) => {
                warn!(%dept, error = %e, "delivery stream ended with an error");
                let _ = tx.send(Err(e.into())).await;
            }
        }
    });
    rx
}

async fn push_loop(
    hub: &Hub,
    dept: &DeptId,
    mut acks: Streaming<pb::SubscribeRequest>,
    tx: &Tx,
    notify: &Notify,
    cancel: &CancellationToken,
) -> Result<(), ServiceError> {
    let mut seq = 0u64;
    loop {
        let Some((key, item)) = store::next_outbound(&hub.store, dept.clone()).await? else {
            tokio::select! {
                () = notify.notified() => continue,
                () = tx.closed() => return Ok(()),
                () = cancel.cancelled() => return Ok(()),
            }
        };
        seq += 1;
        let (push, pending) = match &item {
            Outbound::Deliver(id) => {
                let Some((doc, rec)) = store::document(&hub.store, *id).await? else {
                    warn!(doc_id = %id, "queued delivery for a missing document: dropped");
                    store::ack(&hub.store, dept.clone(), key).await?;
                    continue;
                };
                if withdrawn_before_push(hub, *id, dept).await? {
                    info!(doc_id = %id, recipient = %dept, "recalled before delivery: not pushed");
                    store::ack(&hub.store, dept.clone(), key).await?;
                    continue;
                }
                let addition = match doc.header.role_of(dept) {
                    Some(_) => None,
                    None => store::addition(&hub.store, *id, dept.clone()).await?,
                };
                let delivery = pb::Delivery {
                    document: rec.document,
                    acceptance: rec.acceptance,
                    addition,
                };
                if !hub.sessions.first_push(*id, dept) {
                    audit::record(
                        &hub.store,
                        Event::new(AuditKind::Redelivery).doc(id).dept(dept),
                    )
                    .await;
                }
                (
                    pb::hub_push::Item::Delivery(delivery),
                    Pending::Delivery(doc),
                )
            }
            Outbound::Evidence(e) => (pb::hub_push::Item::Evidence(e.clone()), Pending::Plain),
            Outbound::Notice(e) => {
                let recall = match SignedEvidence::decode(e.clone()) {
                    Ok(n) if n.evidence.kind == EvidenceKind::Recall => {
                        store::document(&hub.store, n.evidence.doc_id).await?
                    }
                    _ => None,
                };
                let pending = match recall {
                    Some((doc, _)) => Pending::Recall(doc),
                    None => Pending::Plain,
                };
                (pb::hub_push::Item::Notice(e.clone()), pending)
            }
        };
        if tx
            .send(Ok(pb::HubPush {
                seq,
                item: Some(push),
            }))
            .await
            .is_err()
        {
            return Ok(());
        }
        let msg = tokio::select! {
            m = acks.message() => m,
            () = cancel.cancelled() => return Ok(()),
        };
        let ack = match msg {
            Ok(Some(pb::SubscribeRequest {
                msg: Some(Msg::Ack(ack)),
            })) => ack,
            Ok(Some(_)) => {
                return Err(ServiceError::invalid(
                    "SubscribeRequest.msg: expected an ack",
                ));
            }
            Ok(None) | Err(_) => return Ok(()), // the node went away; the item stays queued
        };
        if ack.seq != seq {
            return Err(ServiceError::invalid(format!(
                "ack.seq: {} but the item in flight is {seq}",
                ack.seq
            )));
        }
        let doc = match pending {
            Pending::Plain => {
                store::ack(&hub.store, dept.clone(), key).await?;
                continue;
            }
            Pending::Recall(doc) => {
                recall_acked(hub, dept, &doc, ack, key).await?;
                continue;
            }
            Pending::Delivery(doc) => doc,
        };
        hub.sessions.acked(doc.header.id, dept);
        match doc {
            doc if !ack.refused.is_empty() => {
                let reason: String = ack
                    .refused
                    .chars()
                    .take(exchange_core::document::limits::TEXT_CHARS)
                    .collect();
                warn!(doc_id = %doc.header.id, recipient = %dept, %reason, "recipient refused the delivery");
                let mut ev = Evidence::about(
                    &doc,
                    EvidenceKind::NotDelivered,
                    Some(dept.clone()),
                    now_ms(),
                );
                ev.reason = reason;
                let ev = SignedEvidence::seal(ev, &hub.signer);
                if store::record_evidence(&hub.store, &doc, ev, Some((dept.clone(), key))).await? {
                    hub.sessions.wake(&doc.header.sender);
                }
            }
            doc => {
                let receipt = ack.delivery_receipt.ok_or_else(|| {
                    ServiceError::invalid("ack.delivery_receipt: required for a delivery")
                })?;
                let ev = SignedEvidence::verify(receipt, &hub.verifier, now_secs())
                    .map_err(|e| ServiceError::invalid(format!("ack.delivery_receipt: {e}")))?;
                if ev.evidence.kind != EvidenceKind::Delivered
                    || ev.evidence.recipient.as_ref() != Some(dept)
                    || !ev.is_about(&doc)
                {
                    return Err(ServiceError::invalid(
                        "ack.delivery_receipt: not a delivery receipt of this recipient for this document",
                    ));
                }
                if store::record_evidence(&hub.store, &doc, ev, Some((dept.clone(), key))).await? {
                    info!(doc_id = %doc.header.id, recipient = %dept, "delivered");
                    hub.sessions.wake(&doc.header.sender);
                }
            }
        }
    }
}

/// What an item in flight waits for.
enum Pending {
    /// Only the acknowledgement (evidence for the sender, a reminder).
    Plain,
    /// A delivery receipt or a refusal.
    Delivery(exchange_core::document::SignedDoc),
    /// What the sender's recall did at the recipient.
    Recall(exchange_core::document::SignedDoc),
}

/// Whether the delivery of `id` to `dept` is to be dropped unpushed: the sender recalled it
/// before the recipient had it. (Had an earlier push reached the recipient's disk with its
/// acknowledgement lost, the recall notice queued behind this item still finds it there.)
async fn withdrawn_before_push(
    hub: &Hub,
    id: exchange_core::ids::DocumentId,
    dept: &DeptId,
) -> Result<bool, ServiceError> {
    if !store::recalled(&hub.store, id).await? {
        return Ok(false);
    }
    let state = store::delivery(&hub.store, id, dept.clone()).await?;
    Ok(matches!(
        state,
        Some(DeliveryState::Queued | DeliveryState::Accepted) | None
    ))
}

/// Records what a recall notice did at `dept` and removes it from the queue: the hub signs
/// WITHDRAWN when the recipient never held the document; the recipient signs RECALLED when it
/// held it unsigned-for; a recipient that had signed for it acknowledges later through
/// `SubmitEvidence` (RECALL_ACKNOWLEDGED).
async fn recall_acked(
    hub: &Hub,
    dept: &DeptId,
    doc: &exchange_core::document::SignedDoc,
    ack: pb::Ack,
    key: exchange_core::store::queue::QueueKey,
) -> Result<(), ServiceError> {
    let ev = match ack.recall() {
        pb::RecallOutcome::NotHeld => SignedEvidence::seal(
            Evidence::about(doc, EvidenceKind::Withdrawn, Some(dept.clone()), now_ms()),
            &hub.signer,
        ),
        pb::RecallOutcome::Recalled => {
            let receipt = ack.recall_receipt.ok_or_else(|| {
                ServiceError::invalid("ack.recall_receipt: required with RECALLED")
            })?;
            let ev = SignedEvidence::verify(receipt, &hub.verifier, now_secs())
                .map_err(|e| ServiceError::invalid(format!("ack.recall_receipt: {e}")))?;
            if ev.evidence.kind != EvidenceKind::Recalled
                || ev.evidence.recipient.as_ref() != Some(dept)
                || !ev.is_about(doc)
            {
                return Err(ServiceError::invalid(
                    "ack.recall_receipt: not this recipient's RECALLED evidence for this document",
                ));
            }
            ev
        }
        pb::RecallOutcome::AckRequired | pb::RecallOutcome::AlreadyDone => {
            info!(doc_id = %doc.header.id, recipient = %dept, outcome = ?ack.recall(), "recall delivered");
            return Ok(store::ack(&hub.store, dept.clone(), key).await?);
        }
        pb::RecallOutcome::Unspecified => {
            return Err(ServiceError::invalid(
                "ack.recall: required for a recall notice",
            ));
        }
    };
    let kind = ev.evidence.kind;
    match store::record_evidence(&hub.store, doc, ev, Some((dept.clone(), key))).await {
        Ok(true) => {
            info!(doc_id = %doc.header.id, recipient = %dept, ?kind, "recall took effect");
            hub.sessions.wake(&doc.header.sender);
            Ok(())
        }
        Ok(false) => Ok(()),
        // The delivery ended otherwise meanwhile (e.g. it expired): the notice is done.
        Err(e) if e.code == exchange_core::error::ErrorCode::FailedPrecondition => {
            warn!(doc_id = %doc.header.id, recipient = %dept, error = %e, "recall outcome not recorded");
            Ok(store::ack(&hub.store, dept.clone(), key).await?)
        }
        Err(e) => Err(e),
    }
}
