//! The sender's own statements about a document it sent — recall (撤回), added recipients (补发),
//! reminders (催办) — and what they do when they reach a recipient.
//!
//! At the sender each statement is signed and queued for the hub in the same transaction that
//! records it, so the API answers only once it is durable. At the recipient a recall moves the
//! inbox entry through `InboxState::recall` (the one state machine) and a reminder is counted.

use std::sync::Arc;

use exchange_core::{
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    error::ServiceError,
    ids::{DeptId, DocumentId},
    state::{DeliveryState, InboxState, RecallEffect},
    store::{StoreError, encode, queue::QueueKey},
    time::now_ms,
};
use exchange_proto::{store::v1 as st, v1 as pb};
use redb::WriteTransaction;

use crate::{
    Node,
    store::{self, HUB, INBOX, OUTBOX, SENT, get_w, put},
};

fn queue_evidence(
    txn: &WriteTransaction,
    doc: &SignedDoc,
    ev: &SignedEvidence,
) -> Result<(), StoreError> {
    let item = st::QueueItem {
        item: Some(st::queue_item::Item::Evidence(ev.wire.clone())),
    };
    OUTBOX.push(txn, HUB, doc.header.urgency.priority(), &encode(&item))?;
    Ok(())
}

/// Signs and queues one reminder (催办) to recipient `r` of `doc` and counts it on its row: the
/// step a clerk's `remind` and the automatic reminder share.
fn queue_reminder(
    txn: &WriteTransaction,
    node: &Node,
    doc: &SignedDoc,
    r: &mut st::SentRecipient,
    dept: DeptId,
    note: String,
    at: i64,
) -> Result<(), StoreError> {
    let mut ev = Evidence::about(doc, EvidenceKind::Reminded, Some(dept), at);
    ev.reason = note;
    let ev = SignedEvidence::seal(ev, &node.signer);
    r.reminders += 1;
    r.last_reminded_at_ms = at;
    queue_evidence(txn, doc, &ev)
}

/// A sent document the hub has accepted (statements about it need the hub to hold it).
fn accepted_sent(
    txn: &WriteTransaction,
    id: DocumentId,
) -> Result<(st::SentDocument, SignedDoc), ServiceError> {
    let key = id.to_string();
    let rec = get_w::<st::SentDocument>(txn, SENT, &key)?.ok_or_else(|| {
        ServiceError::not_found(format!("{id} is not a document this department sent"))
    })?;
    if !rec.refused.is_empty() {
        return Err(ServiceError::precondition(format!(
            "document {id} was refused by the hub ({}); there is nothing to change",
            rec.refused
        )));
    }
    if rec.acceptance.is_none() {
        return Err(ServiceError::precondition(format!(
            "document {id} is not accepted by the hub yet; try again once `status {id}` shows it accepted"
        )));
    }
    let doc = SignedDoc::decode(rec.document.clone().unwrap_or_default())
        .map_err(|e| StoreError::decode(&key, e))?;
    Ok((rec, doc))
}

/// 撤回: records and queues this department's signed recall. False if it was recalled before
/// (the first recall stands).
pub(crate) async fn recall(
    node: &Arc<Node>,
    id: DocumentId,
    reason: String,
    clerk: String,
) -> Result<bool, ServiceError> {
    node.can_sign()?;
    let n = Arc::clone(node);
    node.store
        .write(move |txn| {
            let (mut rec, doc) = accepted_sent(txn, id)?;
            if rec.recall.is_some() {
                return Ok(false);
            }
            let mut ev = Evidence::about(&doc, EvidenceKind::Recall, None, now_ms());
            ev.reason.clone_from(&reason);
            ev.clerk.clone_from(&clerk);
            let ev = SignedEvidence::seal(ev, &n.signer);
            rec.recall = Some(ev.wire.clone());
            put(txn, SENT, &id.to_string(), &rec)?;
            queue_evidence(txn, &doc, &ev)?;
            Ok(true)
        })
        .await
}

/// 补发: adds recipients to a sent document. Returns the departments actually added (those not
/// already recipients).
pub(crate) async fn add_recipients(
    node: &Arc<Node>,
    id: DocumentId,
    added: Vec<(DeptId, bool)>,
) -> Result<Vec<DeptId>, ServiceError> {
    node.can_sign()?;
    let n = Arc::clone(node);
    node.store
        .write(move |txn| {
            let (mut rec, doc) = accepted_sent(txn, id)?;
            if rec.recall.is_some() {
                return Err(ServiceError::precondition(format!(
                    "document {id} was recalled (撤回); it cannot get new recipients"
                )));
            }
            let mut out = Vec::new();
            for (dept, cc) in &added {
                if *dept == doc.header.sender {
                    return Err(ServiceError::invalid(format!(
                        "to_depts: {dept} is the sender itself"
                    )));
                }
                if rec.recipients.iter().any(|r| r.dept == dept.as_str()) {
                    continue;
                }
                let mut ev = Evidence::about(
                    &doc,
                    EvidenceKind::RecipientAdded,
                    Some(dept.clone()),
                    now_ms(),
                );
                ev.cc = *cc;
                let ev = SignedEvidence::seal(ev, &n.signer);
                rec.recipients.push(st::SentRecipient {
                    dept: dept.to_string(),
                    cc: *cc,
                    state: u32::from(DeliveryState::Queued.code()),
                    added: Some(ev.wire.clone()),
                    ..Default::default()
                });
                queue_evidence(txn, &doc, &ev)?;
                out.push(dept.clone());
            }
            put(txn, SENT, &id.to_string(), &rec)?;
            Ok(out)
        })
        .await
}

/// 催办: reminds the named recipients (all that are not finished, if none are named).
pub(crate) async fn remind(
    node: &Arc<Node>,
    id: DocumentId,
    recipients: Vec<DeptId>,
    note: String,
) -> Result<Vec<DeptId>, ServiceError> {
    node.can_sign()?;
    let n = Arc::clone(node);
    node.store
        .write(move |txn| {
            let (mut rec, doc) = accepted_sent(txn, id)?;
            if rec.recall.is_some() {
                return Err(ServiceError::precondition(format!(
                    "document {id} was recalled (撤回); there is nothing to remind of"
                )));
            }
            for d in &recipients {
                if !rec.recipients.iter().any(|r| r.dept == d.as_str()) {
                    return Err(ServiceError::invalid(format!(
                        "recipients: {d} is not a recipient of {id}"
                    )));
                }
            }
            let at = now_ms();
            let mut out = Vec::new();
            for r in &mut rec.recipients {
                let state = u8::try_from(r.state)
                    .ok()
                    .and_then(DeliveryState::from_code)
                    .unwrap_or(DeliveryState::Queued);
                let named = recipients.iter().any(|d| r.dept == d.as_str());
                if !recipients.is_empty() && !named {
                    continue;
                }
                if state.is_final() || state == DeliveryState::Queued {
                    if named {
                        return Err(ServiceError::precondition(format!(
                            "document {id} at {} is {state}: nothing to remind of",
                            r.dept
                        )));
                    }
                    continue;
                }
                let dept: DeptId = r
                    .dept
                    .parse()
                    .map_err(|e| StoreError::decode(format!("recipient of {id}"), e))?;
                queue_reminder(txn, &n, &doc, r, dept.clone(), note.clone(), at)?;
                out.push(dept);
            }
            if out.is_empty() {
                return Err(ServiceError::precondition(format!(
                    "document {id}: every recipient has finished with it (or it is not delivered \
                     to anyone yet); nothing to remind of"
                )));
            }
            put(txn, SENT, &id.to_string(), &rec)?;
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
    node.store
        .write(move |txn| {
            let id = ev.evidence.doc_id.to_string();
            if let (Some(mut rec), Some(dept)) = (
                get_w::<st::SentDocument>(txn, SENT, &id)?,
                ev.evidence.recipient.as_ref(),
            ) && let Some(r) = rec.recipients.iter_mut().find(|r| r.dept == dept.as_str())
                && r.state == u32::from(DeliveryState::Queued.code())
            {
                match &refusal {
                    None => {
                        r.state = u32::from(DeliveryState::Accepted.code());
                        r.accepted_at_ms = now_ms();
                    }
                    Some(why) => {
                        r.state = u32::from(DeliveryState::Refused.code());
                        r.rejected_at_ms = now_ms();
                        r.reason.clone_from(why);
                    }
                }
                put(txn, SENT, &id, &rec)?;
            }
            OUTBOX.remove(txn, HUB, key)?;
            Ok(())
        })
        .await
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
    let Ok(ev) = SignedEvidence::decode(ev.clone()) else {
        return store::outbox_done(&node.store, key).await;
    };
    let me = node.cfg.node.id.to_string();
    let seq = node
        .store
        .write(move |txn| {
            let id = ev.evidence.doc_id.to_string();
            let what = match ev.evidence.kind {
                EvidenceKind::Confirmed => "签收 (CONFIRMED)",
                EvidenceKind::Rejected => "退回 (REJECTED)",
                EvidenceKind::RecallAcknowledged => "recall acknowledgement (RECALL_ACKNOWLEDGED)",
                EvidenceKind::Recall => "撤回 (RECALL)",
                EvidenceKind::Reminded => "催办 (REMINDED)",
                _ => "statement",
            };
            let text = format!("{what} refused by the hub: {reason}");
            let mut found = false;
            if ev.evidence.kind.is_senders() {
                if let Some(mut rec) = get_w::<st::SentDocument>(txn, SENT, &id)? {
                    rec.hub_refused = text;
                    put(txn, SENT, &id, &rec)?;
                    found = true;
                }
            } else if let Some(mut rec) = get_w::<st::ReceivedDocument>(txn, INBOX, &id)? {
                rec.hub_refused = text;
                put(txn, INBOX, &id, &rec)?;
                found = true;
            }
            let seq = if found {
                Some(store::event(
                    txn,
                    pb::NodeEventKind::Refused,
                    &id,
                    &me,
                    pb::RecipientState::Unspecified,
                    now_ms(),
                )?)
            } else {
                None
            };
            OUTBOX.remove(txn, HUB, key)?;
            Ok::<_, StoreError>(seq)
        })
        .await?;
    node.event_committed(seq);
    Ok(())
}

/// A recall or reminder from the sender of a document addressed to this node; returns the
/// acknowledgement for the hub. Anything that does not verify is acknowledged and ignored (it
/// can never become valid by retrying).
pub(crate) async fn notice(
    node: &Arc<Node>,
    wire: pb::SignedEvidence,
) -> Result<pb::Ack, ServiceError> {
    let now_secs = u64::try_from(now_ms() / 1000).unwrap_or(0);
    let ev = match SignedEvidence::verify(wire, &node.verifier, now_secs) {
        Ok(ev) => ev,
        Err(e) => {
            tracing::warn!(error = %e, "notice that does not verify: ignored");
            return Ok(pb::Ack::default());
        }
    };
    match ev.evidence.kind {
        EvidenceKind::Recall => recall_arrived(node, ev).await,
        EvidenceKind::Reminded => {
            reminded(node, ev).await?;
            Ok(pb::Ack::default())
        }
        kind => {
            tracing::warn!(?kind, "unexpected notice kind: ignored");
            Ok(pb::Ack::default())
        }
    }
}

/// The inbox record of `ev`'s document, if it is the same document.
fn held(
    txn: &WriteTransaction,
    ev: &SignedEvidence,
) -> Result<Option<st::ReceivedDocument>, StoreError> {
    let rec = get_w::<st::ReceivedDocument>(txn, INBOX, &ev.evidence.doc_id.to_string())?;
    // The same document (header digest) from the same sender: a department cannot recall or
    // remind of another department's document.
    Ok(rec.filter(|r| {
        r.document
            .clone()
            .and_then(|d| SignedDoc::decode(d).ok())
            .is_some_and(|d| ev.is_about(&d) && ev.evidence.sender == d.header.sender)
    }))
}

async fn recall_arrived(node: &Arc<Node>, ev: SignedEvidence) -> Result<pb::Ack, ServiceError> {
    let n = Arc::clone(node);
    let id = ev.evidence.doc_id;
    let (outcome, receipt, seq) = node
        .store
        .write(move |txn| {
            let Some(mut rec) = held(txn, &ev)? else {
                return Ok::<_, StoreError>((pb::RecallOutcome::NotHeld, None, None));
            };
            let state = u8::try_from(rec.state)
                .ok()
                .and_then(InboxState::from_code)
                .unwrap_or(InboxState::New);
            if state == InboxState::Recalled {
                // A repeated notice (our acknowledgement was lost): the same receipt again.
                return Ok((
                    pb::RecallOutcome::Recalled,
                    rec.recall_handling.clone(),
                    None,
                ));
            }
            let (next, effect) = state.recall();
            let outcome = match effect {
                RecallEffect::Recalled => pb::RecallOutcome::Recalled,
                RecallEffect::AckRequired => pb::RecallOutcome::AckRequired,
                RecallEffect::AlreadyDone => pb::RecallOutcome::AlreadyDone,
            };
            if next == state {
                return Ok((outcome, None, None));
            }
            let doc = SignedDoc::decode(rec.document.clone().unwrap_or_default())
                .map_err(|e| StoreError::decode(id, e))?;
            let at = now_ms();
            rec.state = u32::from(next.code());
            rec.recall = Some(ev.wire.clone());
            let receipt = (effect == RecallEffect::Recalled).then(|| {
                SignedEvidence::seal(
                    Evidence::about(
                        &doc,
                        EvidenceKind::Recalled,
                        Some(n.cfg.node.id.clone()),
                        at,
                    ),
                    &n.signer,
                )
                .wire
            });
            rec.recall_handling.clone_from(&receipt);
            put(txn, INBOX, &id.to_string(), &rec)?;
            let seq = store::event(
                txn,
                pb::NodeEventKind::Received,
                &id.to_string(),
                doc.header.sender.as_str(),
                pb::RecipientState::Recalled,
                at,
            )?;
            Ok((outcome, receipt, Some(seq)))
        })
        .await?;
    node.event_committed(seq);
    tracing::info!(doc_id = %id, ?outcome, "recalled by the sender");
    Ok(pb::Ack {
        recall: outcome.into(),
        recall_receipt: receipt,
        ..Default::default()
    })
}

async fn reminded(node: &Arc<Node>, ev: SignedEvidence) -> Result<(), ServiceError> {
    let id = ev.evidence.doc_id;
    let counted = node
        .store
        .write(move |txn| {
            let Some(mut rec) = held(txn, &ev)? else {
                return Ok(false);
            };
            if rec.last_reminded_at_ms == ev.evidence.at_ms {
                return Ok(false); // the same reminder pushed again
            }
            rec.reminders += 1;
            rec.last_reminded_at_ms = ev.evidence.at_ms;
            rec.last_reminder_note.clone_from(&ev.evidence.reason);
            put(txn, INBOX, &id.to_string(), &rec)?;
            Ok::<_, ServiceError>(true)
        })
        .await?;
    if counted {
        tracing::info!(doc_id = %id, "reminded by the sender (催办)");
    }
    Ok(())
}

/// Checks a delivery's RECIPIENT_ADDED evidence: signed by the document's sender, about this
/// document, naming this node. Returns the reason to refuse otherwise.
pub(crate) fn check_addition(
    node: &Node,
    doc: &SignedDoc,
    addition: Option<pb::SignedEvidence>,
) -> Result<pb::SignedEvidence, String> {
    let wire =
        addition.ok_or_else(|| format!("document is not addressed to {}", node.cfg.node.id))?;
    let now_secs = u64::try_from(now_ms() / 1000).unwrap_or(0);
    let ev = SignedEvidence::verify(wire, &node.verifier, now_secs)
        .map_err(|e| format!("addition (补发): {e}"))?;
    if ev.evidence.kind != EvidenceKind::RecipientAdded
        || !ev.is_about(doc)
        || ev.evidence.recipient.as_ref() != Some(&node.cfg.node.id)
    {
        return Err("addition (补发) is not the sender's RECIPIENT_ADDED for this node".into());
    }
    Ok(ev.wire)
}

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
async fn auto_remind(node: &Arc<Node>) -> Result<usize, StoreError> {
    let now = now_ms();
    let from = uuid_v7_floor(now.saturating_sub(AUTO_REMIND_WINDOW_MS));
    let n = Arc::clone(node);
    let due: Vec<(DocumentId, Vec<String>)> = node
        .store
        .read(move |txn| {
            let table = match txn.open_table(SENT) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(StoreError::from(e)),
            };
            let mut due = Vec::new();
            for row in table.range(from.as_str()..)? {
                let (k, v) = row?;
                let rec: st::SentDocument = exchange_core::store::decode(k.value(), v.value())?;
                if !may_remind(&rec) {
                    continue; // most documents: no decoding of the signed header for them
                }
                let Ok(doc) = SignedDoc::decode(rec.document.clone().unwrap_or_default()) else {
                    continue;
                };
                let depts = overdue_unreminded(&n, &rec, doc.header.urgency, now);
                if !depts.is_empty() {
                    due.push((doc.header.id, depts));
                }
            }
            Ok(due)
        })
        .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let n = Arc::clone(node);
    node.store
        .write(move |txn| {
            let at = now_ms();
            let mut count = 0;
            for (id, depts) in &due {
                let key = id.to_string();
                let Some(mut rec) = get_w::<st::SentDocument>(txn, SENT, &key)? else {
                    continue;
                };
                let Ok(doc) = SignedDoc::decode(rec.document.clone().unwrap_or_default()) else {
                    continue;
                };
                let still = overdue_unreminded(&n, &rec, doc.header.urgency, at);
                let due_at = |delivered: i64| {
                    exchange_core::time::format_ms(n.cfg.reminders.due_ms(
                        &n.cfg.calendar,
                        doc.header.urgency,
                        delivered,
                    ))
                };
                for r in &mut rec.recipients {
                    if !depts.contains(&r.dept) || !still.contains(&r.dept) {
                        continue;
                    }
                    let Ok(dept) = r.dept.parse::<DeptId>() else {
                        continue;
                    };
                    let note = format!(
                        "自动催办 (automatic): 签收 was due {}",
                        due_at(r.delivered_at_ms)
                    );
                    queue_reminder(txn, &n, &doc, r, dept, note, at)?;
                    r.auto_reminded_at_ms = at;
                    count += 1;
                }
                put(txn, SENT, &key, &rec)?;
            }
            Ok(count)
        })
        .await
}

/// A recipient that the automatic reminder may still concern: delivered, not signed for or
/// sent back, not reminded automatically yet.
fn awaits_auto_reminder(r: &st::SentRecipient) -> bool {
    r.auto_reminded_at_ms == 0 && r.state == u32::from(DeliveryState::Delivered.code())
}

/// Whether `rec` may have a recipient to remind automatically, without reading the clock or
/// the signed header (a recalled or refused document reminds no one).
fn may_remind(rec: &st::SentDocument) -> bool {
    rec.recall.is_none()
        && rec.refused.is_empty()
        && rec.acceptance.is_some()
        && rec.recipients.iter().any(awaits_auto_reminder)
}

/// The recipients of `rec` (a document of `urgency`) whose delivery is overdue at `now` and
/// not reminded automatically yet.
fn overdue_unreminded(
    node: &Node,
    rec: &st::SentDocument,
    urgency: exchange_core::document::Urgency,
    now: i64,
) -> Vec<String> {
    if !may_remind(rec) {
        return Vec::new();
    }
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
