//! The sender's statements about a document it sent — 撤回 (recall), 补发 (added recipients),
//! 催办 (reminders) — each signed and queued for the hub in the transaction that records it,
//! and what the hub's answer to one does to the sent record.

use std::sync::Arc;

use exchange_core::{
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    ids::{Address, DocumentId},
    signing::SignError,
    state::DeliveryState,
    store::{Store, StoreError, queue::QueueKey},
    time::now_ms,
};
use exchange_proto::v1 as pb;

use crate::{
    Node,
    error::NodeError,
    store::{self, Effects, Event, SentRecipient, SentRecord},
};

/// Signs and queues one reminder (催办) to recipient `r` of `doc` and counts it on its row: the
/// step a clerk's `remind` and the automatic reminder share.
pub(super) fn queue_reminder(
    node: &Node,
    doc: &SignedDoc,
    r: &mut SentRecipient,
    note: String,
    at: i64,
    fx: &mut Effects,
) -> Result<(), SignError> {
    let mut ev = Evidence::about(doc, EvidenceKind::Reminded, Some(r.dept.clone()), at);
    ev.reason = note;
    let ev = SignedEvidence::seal(ev, &node.signer)?;
    r.reminders += 1;
    r.last_reminded_at_ms = at;
    fx.queue(doc, &ev);
    Ok(())
}

/// The sent record of `id`, if the hub has accepted it (statements about a document need the
/// hub to hold it).
fn accepted(rec: Option<&mut SentRecord>, id: DocumentId) -> Result<&mut SentRecord, NodeError> {
    let rec = rec.ok_or(NodeError::NotSent(id))?;
    if !rec.refused.is_empty() {
        return Err(NodeError::RefusedByHub {
            id,
            reason: rec.refused.clone(),
        });
    }
    if rec.acceptance.is_none() {
        return Err(NodeError::NotAccepted(id));
    }
    Ok(rec)
}

/// A statement about sent document `id`, which the hub must have accepted: `f` changes the sent
/// record (with this node, whose key signs) and lists what goes with the change, in one
/// transaction; returns `f`'s result.
async fn change_accepted<R, F>(node: &Arc<Node>, id: DocumentId, f: F) -> Result<R, NodeError>
where
    F: Fn(&Node, &mut SentRecord, &mut Effects) -> Result<R, NodeError> + Send + 'static,
    R: Send + 'static,
{
    node.can_sign()?;
    let n = Arc::clone(node);
    let (r, _) = store::change_sent(&node.store, id, move |rec, fx| {
        f(&n, accepted(rec, id)?, fx)
    })
    .await?;
    Ok(r)
}

/// 撤回: records and queues this department's signed recall. False if it was recalled before
/// (the first recall stands).
pub(crate) async fn recall(
    node: &Arc<Node>,
    id: DocumentId,
    reason: String,
    clerk: String,
) -> Result<bool, NodeError> {
    change_accepted(node, id, move |n, rec, fx| {
        if rec.recall.is_some() {
            return Ok(false);
        }
        let mut ev = Evidence::about(&rec.doc, EvidenceKind::Recall, None, now_ms());
        ev.reason.clone_from(&reason);
        ev.clerk.clone_from(&clerk);
        let ev = SignedEvidence::seal(ev, &n.signer)?;
        rec.recall = Some(ev.wire.clone());
        fx.queue(&rec.doc, &ev);
        Ok(true)
    })
    .await
}

/// 补发: adds recipients to a sent document. Returns the departments actually added (those not
/// already recipients).
pub(crate) async fn add_recipients(
    node: &Arc<Node>,
    id: DocumentId,
    added: Vec<(Address, bool)>,
) -> Result<Vec<Address>, NodeError> {
    change_accepted(node, id, move |n, rec, fx| {
        if rec.recall.is_some() {
            return Err(NodeError::RecalledNoAdditions(id));
        }
        let mut out = Vec::new();
        for (dept, cc) in &added {
            if dept.local_to(None) == Some(&rec.doc.header.sender) {
                return Err(NodeError::SenderItself(dept.dept.clone()));
            }
            if rec.recipients.iter().any(|r| r.dept == *dept) {
                continue;
            }
            let mut ev = Evidence::about(
                &rec.doc,
                EvidenceKind::RecipientAdded,
                Some(dept.clone()),
                now_ms(),
            );
            ev.cc = *cc;
            let ev = SignedEvidence::seal(ev, &n.signer)?;
            rec.recipients.push(SentRecipient {
                added: Some(ev.wire.clone()),
                ..SentRecipient::queued(dept.clone(), *cc)
            });
            fx.queue(&rec.doc, &ev);
            out.push(dept.clone());
        }
        Ok(out)
    })
    .await
}

/// 催办: reminds the named recipients (all that are not finished, if none are named).
pub(crate) async fn remind(
    node: &Arc<Node>,
    id: DocumentId,
    recipients: Vec<Address>,
    note: String,
) -> Result<Vec<Address>, NodeError> {
    change_accepted(node, id, move |n, rec, fx| {
        if rec.recall.is_some() {
            return Err(NodeError::RecalledNoReminders(id));
        }
        for d in &recipients {
            if !rec.recipients.iter().any(|r| r.dept == *d) {
                return Err(NodeError::NotARecipient {
                    id,
                    dept: d.clone(),
                });
            }
        }
        let at = now_ms();
        let mut out = Vec::new();
        for r in &mut rec.recipients {
            let named = recipients.contains(&r.dept);
            if !recipients.is_empty() && !named {
                continue;
            }
            if r.state.is_final() || r.state == DeliveryState::Queued {
                if named {
                    return Err(NodeError::NothingToRemindAt {
                        id,
                        dept: r.dept.clone(),
                        state: r.state,
                    });
                }
                continue;
            }
            queue_reminder(n, &rec.doc, r, note.clone(), at, fx)?;
            out.push(r.dept.clone());
        }
        if out.is_empty() {
            return Err(NodeError::NothingToRemind(id));
        }
        Ok(out)
    })
    .await
}

/// The hub took (or refused for good) a RECIPIENT_ADDED of ours: the added recipient becomes
/// accepted (or refused, with the hub's reason), and the outbox item goes, in one transaction.
pub(crate) async fn addition_answered(
    node: &Node,
    ev: &pb::SignedEvidence,
    refusal: Option<String>,
    key: QueueKey,
) -> Result<(), StoreError> {
    let Ok(ev) = SignedEvidence::decode(ev.clone()) else {
        return store::outbox_done(&node.store, key).await;
    };
    let id = ev.evidence.doc_id;
    let ((), seq) = store::change_sent(&node.store, id, move |rec, fx| {
        if let (Some(rec), Some(dept)) = (rec, ev.evidence.recipient.as_ref())
            && let Some(r) = rec.recipients.iter_mut().find(|r| r.dept == *dept)
            && r.state == DeliveryState::Queued
        {
            let at = now_ms();
            match &refusal {
                None => {
                    r.state = DeliveryState::Accepted;
                    r.accepted_at_ms = at;
                }
                Some(why) => {
                    r.state = DeliveryState::Refused;
                    r.rejected_at_ms = at;
                    r.reason.clone_from(why);
                }
            }
            // Department systems following WatchEvents learn the added recipient's fate too.
            fx.event(store::Event {
                kind: pb::NodeEventKind::Recipient,
                doc_id: id,
                dept: Some(dept.clone()),
                state: r.state.into(),
                at_ms: at,
            });
        }
        fx.done(key);
        Ok::<_, StoreError>(())
    })
    .await?;
    node.event_committed(seq);
    Ok(())
}

/// The hub refused for good a statement of ours that the outbox carried: a 签收, 退回 or recall
/// acknowledgement of a received document, or a recall or reminder of a sent one (an addition
/// has its own row: [`addition_answered`]). It is already in force here and retrying cannot
/// change the hub's answer, so it must not vanish into a log: the document's record keeps what
/// was refused and why, a REFUSED event tells department systems, and the outbox item goes, in
/// one transaction.
pub(crate) async fn statement_refused(
    node: &Node,
    ev: &pb::SignedEvidence,
    reason: String,
    key: QueueKey,
) -> Result<(), StoreError> {
    let me = Address::local(node.cfg.node.id.clone());
    let seq = record_refusal(&node.store, me, ev, reason, key).await?;
    node.event_committed(seq);
    Ok(())
}

/// [`statement_refused`] on the store (`me`: this department, named by the event); returns the
/// event's seq, none if the document is not here.
pub(super) async fn record_refusal(
    store: &Store,
    me: Address,
    ev: &pb::SignedEvidence,
    reason: String,
    key: QueueKey,
) -> Result<Option<u64>, StoreError> {
    let Ok(ev) = SignedEvidence::decode(ev.clone()) else {
        return store::outbox_done(store, key).await.map(|()| None);
    };
    let id = ev.evidence.doc_id;
    let what = match ev.evidence.kind {
        EvidenceKind::Confirmed => "签收 (CONFIRMED)",
        EvidenceKind::Rejected => "退回 (REJECTED)",
        EvidenceKind::RecallAcknowledged => "recall acknowledgement (RECALL_ACKNOWLEDGED)",
        EvidenceKind::Recall => "撤回 (RECALL)",
        EvidenceKind::Reminded => "催办 (REMINDED)",
        _ => "statement",
    };
    let text = format!("{what} refused by the hub: {reason}");
    let event = Event {
        kind: pb::NodeEventKind::Refused,
        doc_id: id,
        dept: Some(me),
        state: pb::RecipientState::Unspecified,
        at_ms: now_ms(),
    };
    let record = move |hub_refused: Option<&mut String>, fx: &mut Effects| {
        if let Some(field) = hub_refused {
            field.clone_from(&text);
            fx.event(event.clone());
        }
        fx.done(key);
        Ok::<_, StoreError>(())
    };
    let ((), seq) = if ev.evidence.kind.is_senders() {
        store::change_sent(store, id, move |rec, fx| {
            record(rec.map(|r| &mut r.hub_refused), fx)
        })
        .await?
    } else {
        store::change_inbox(store, id, move |rec, fx| {
            record(rec.map(|r| &mut r.hub_refused), fx)
        })
        .await?
    };
    Ok(seq)
}
