//! The hub's durable state: accepted documents (once each), per-recipient deliveries, evidence,
//! and one priority queue per department of what is still to be pushed to it.
//!
//! Tables (see `exchange_core::store` for the durability rule):
//! - `documents`: doc id → `HubDocument`
//! - `deliveries`: (doc id, recipient) → `HubDelivery`
//! - `evidence`: (doc id, recipient or "", kind code) → encoded `SignedEvidence`
//! - `recalls`: doc id → `HubRecall` (the sender's signed RECALL, once recalled)
//! - `content`: SHA-256 → bytes, the content of small documents sent inline (larger content is
//!   in the blob store)
//! - `outbound` queue: per destination department → `QueueItem` (deliver a document, evidence
//!   for its sender, or a notice — recall or reminder — for a recipient)

use crate::audit::{self, Event};
use exchange_core::{
    document::{EvidenceKind, SignedDoc, SignedEvidence},
    error::{ErrorCode, ServiceError},
    ids::{DeptId, DocumentId},
    state::{DeliveryState, Transition},
    store::{Store, StoreError, decode, encode, queue::DurableQueue, queue::QueueKey},
};
use exchange_proto::{store::v1 as st, v1 as pb};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

/// Schema version of the hub store.
pub(crate) const SCHEMA: u64 = 1;

const DOCUMENTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("documents");
const DELIVERIES: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("deliveries");
const EVIDENCE: TableDefinition<'_, (&str, &str, u8), &[u8]> = TableDefinition::new("evidence");
const RECALLS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("recalls");
use exchange_core::store::content::{self, CONTENT};
pub(crate) const OUTBOUND: DurableQueue = DurableQueue::new("outbound");
/// Every table of this module, for a backup (`crate::backup`).
pub(crate) const TABLES: &[&dyn exchange_core::backup::BackupTable] = &[
    &DOCUMENTS,
    &DELIVERIES,
    &EVIDENCE,
    &RECALLS,
    &CONTENT,
    &OUTBOUND,
];

/// What the hub pushes next to a department.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// A document to deliver.
    Deliver(DocumentId),
    /// Evidence about a document the department sent.
    Evidence(pb::SignedEvidence),
    /// The sender's recall or reminder about a document addressed to the department.
    Notice(pb::SignedEvidence),
}

impl Outbound {
    fn encode(&self) -> Vec<u8> {
        let item = match self {
            Outbound::Deliver(id) => st::queue_item::Item::DeliverDoc(id.to_string()),
            Outbound::Evidence(e) => st::queue_item::Item::Evidence(e.clone()),
            Outbound::Notice(e) => st::queue_item::Item::Notice(e.clone()),
        };
        encode(&st::QueueItem { item: Some(item) })
    }

    fn decode(key: QueueKey, bytes: &[u8]) -> Result<Self, StoreError> {
        let item: st::QueueItem = decode(format!("outbound {}", key.seq), bytes)?;
        match item.item {
            Some(st::queue_item::Item::DeliverDoc(id)) => id
                .parse()
                .map(Outbound::Deliver)
                .map_err(|e| StoreError::decode("outbound doc id", e)),
            Some(st::queue_item::Item::Evidence(e)) => Ok(Outbound::Evidence(e)),
            Some(st::queue_item::Item::Notice(e)) => Ok(Outbound::Notice(e)),
            _ => Err(StoreError::decode(
                format!("outbound {}", key.seq),
                "unknown item",
            )),
        }
    }
}

/// The result of a submission: the same acceptance for a repeated identical submission.
#[derive(Debug)]
pub(crate) enum Accepted {
    /// Newly stored and queued.
    New(pb::SignedEvidence),
    /// Already accepted earlier; nothing changed.
    Again(pb::SignedEvidence),
}

pub(crate) fn get_document(
    txn: &ReadTransaction,
    id: &str,
) -> Result<Option<st::HubDocument>, StoreError> {
    let table = match txn.open_table(DOCUMENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    table.get(id)?.map(|v| decode(id, v.value())).transpose()
}

/// Reads a stored document.
pub(crate) async fn document(
    store: &Store,
    id: DocumentId,
) -> Result<Option<(SignedDoc, st::HubDocument)>, StoreError> {
    let rec = store
        .lookup(move |txn| get_document(txn, &id.to_string()))
        .await?;
    rec.map(|rec| {
        let wire = rec.document.clone().unwrap_or_default();
        SignedDoc::decode(wire)
            .map(|d| (d, rec))
            .map_err(|e| StoreError::decode(id, e))
    })
    .transpose()
}

/// Stores an accepted document, its deliveries and queue entries, in one durable transaction.
pub(crate) async fn accept(
    store: &Store,
    doc: SignedDoc,
    acceptance: pb::SignedEvidence,
    inline: Vec<pb::InlineContent>,
    at_ms: i64,
) -> Result<Accepted, ServiceError> {
    store
        .write(move |txn| {
            let id = doc.header.id.to_string();
            let existing = {
                let table = txn.open_table(DOCUMENTS).map_err(StoreError::from)?;
                let v = table.get(id.as_str()).map_err(StoreError::from)?;
                v.map(|v| decode::<st::HubDocument>(&id, v.value()))
                    .transpose()?
            };
            if let Some(rec) = existing {
                let same = rec
                    .document
                    .as_ref()
                    .is_some_and(|d| d.header == doc.wire.header);
                return match (same, rec.acceptance) {
                    (true, Some(acc)) => Ok(Accepted::Again(acc)),
                    _ => Err(ServiceError::new(
                        ErrorCode::AlreadyExists,
                        format!("document {id} was already submitted with different content"),
                    )),
                };
            }
            let rec = st::HubDocument {
                document: Some(doc.wire.clone()),
                acceptance: Some(acceptance.clone()),
                accepted_at_ms: at_ms,
            };
            txn.open_table(DOCUMENTS)
                .map_err(StoreError::from)?
                .insert(id.as_str(), encode(&rec).as_slice())
                .map_err(StoreError::from)?;
            put_evidence(txn, &id, "", EvidenceKind::Accepted, &acceptance)?;
            for c in &inline {
                let digest = exchange_core::signing::Digest::from_slice(&c.sha256)
                    .ok_or_else(|| ServiceError::invalid("content.sha256: must be 32 bytes"))?;
                content::put(txn, &digest, &c.data)?;
            }
            let queued = encode(&st::HubDelivery {
                state: u32::from(DeliveryState::Accepted.code()),
                ..Default::default()
            });
            let priority = doc.header.urgency.priority();
            let item = Outbound::Deliver(doc.header.id).encode();
            let h = &doc.header;
            let to: Vec<String> = h
                .recipients
                .iter()
                .map(|r| format!("{}({})", r.dept, r.role.name()))
                .collect();
            let detail = format!(
                "to {}; {} {:?}; title {:?}",
                to.join(","),
                h.urgency.name(),
                h.metadata.doc_number,
                h.title
            );
            audit::append(
                txn,
                &Event::new(pb::AuditKind::DocumentAccepted)
                    .doc(&id)
                    .dept(&h.sender)
                    .detail(detail),
            )?;
            let mut deliveries = txn.open_table(DELIVERIES).map_err(StoreError::from)?;
            for r in &doc.header.recipients {
                deliveries
                    .insert((id.as_str(), r.dept.as_str()), queued.as_slice())
                    .map_err(StoreError::from)?;
                OUTBOUND.push(txn, r.dept.as_str(), priority, &item)?;
                audit::append(
                    txn,
                    &Event::new(pb::AuditKind::Queued).doc(&id).dept(&r.dept),
                )?;
            }
            Ok(Accepted::New(acceptance.clone()))
        })
        .await
}

/// The recipient that evidence is about (required for every per-recipient step).
fn recipient_of(ev: &SignedEvidence) -> Result<DeptId, ServiceError> {
    ev.evidence
        .recipient
        .clone()
        .ok_or_else(|| ServiceError::invalid("evidence.recipient: required"))
}

/// The delivery of document `id` to `dept`; refused if `dept` is not a recipient.
fn load_delivery(
    txn: &WriteTransaction,
    id: &str,
    dept: &DeptId,
) -> Result<st::HubDelivery, ServiceError> {
    let table = txn.open_table(DELIVERIES).map_err(StoreError::from)?;
    let v = table
        .get((id, dept.as_str()))
        .map_err(StoreError::from)?
        .ok_or_else(|| ServiceError::denied(format!("{dept} is not a recipient of {id}")))?;
    Ok(decode(format!("delivery {id}/{dept}"), v.value())?)
}

fn put_evidence(
    txn: &WriteTransaction,
    id: &str,
    dept: &str,
    kind: EvidenceKind,
    ev: &pb::SignedEvidence,
) -> Result<(), StoreError> {
    txn.open_table(EVIDENCE)?
        .insert((id, dept, kind.code()), encode(ev).as_slice())?;
    Ok(())
}

/// Records evidence about a recipient (delivered, confirmed, rejected, not delivered), advances
/// its delivery and queues the evidence for the sender. With `ack`, also removes the acknowledged
/// queue item, in the same transaction. Evidence already recorded changes nothing and returns
/// false; evidence that contradicts the delivery's state is refused. Evidence that arrives after
/// a later step (a delivery receipt overtaken by the clerk's confirmation) is still recorded and
/// forwarded, so the sender gets every timestamp.
pub(crate) async fn record_evidence(
    store: &Store,
    doc: &SignedDoc,
    ev: SignedEvidence,
    ack: Option<(DeptId, QueueKey)>,
) -> Result<bool, ServiceError> {
    let id = doc.header.id.to_string();
    let sender = doc.header.sender.clone();
    let priority = doc.header.urgency.priority();
    store
        .write(move |txn| {
            let recipient = recipient_of(&ev)?;
            let key = (id.as_str(), recipient.as_str());
            let mut delivery = load_delivery(txn, &id, &recipient)?;
            let is_new = {
                let table = txn.open_table(EVIDENCE).map_err(StoreError::from)?;
                let found = table
                    .get((id.as_str(), recipient.as_str(), ev.evidence.kind.code()))
                    .map_err(StoreError::from)?;
                found.is_none()
            };
            let current = u8::try_from(delivery.state)
                .ok()
                .and_then(DeliveryState::from_code)
                .unwrap_or(DeliveryState::Accepted);
            let next = current.apply(ev.evidence.kind).map_err(|e| {
                ServiceError::precondition(format!("document {id} at {recipient}: {e}"))
            })?;
            if let Some((dest, key)) = &ack {
                OUTBOUND.remove(txn, dest.as_str(), *key)?;
            }
            if !is_new {
                return Ok(false);
            }
            match ev.evidence.kind {
                EvidenceKind::Delivered => delivery.delivered_at_ms = ev.evidence.at_ms,
                _ => delivery.handled_at_ms = ev.evidence.at_ms,
            }
            if let Transition::Changed(s) = next {
                delivery.state = u32::from(s.code());
            }
            txn.open_table(DELIVERIES)
                .map_err(StoreError::from)?
                .insert(key, encode(&delivery).as_slice())
                .map_err(StoreError::from)?;
            put_evidence(txn, &id, recipient.as_str(), ev.evidence.kind, &ev.wire)?;
            let e = &ev.evidence;
            let audited = match e.kind {
                EvidenceKind::Delivered => Event::new(pb::AuditKind::Delivered),
                kind => Event::new(pb::AuditKind::Evidence).detail(format!(
                    "{kind:?} clerk {:?} reason {:?}",
                    e.clerk, e.reason
                )),
            };
            audit::append(txn, &audited.doc(&id).dept(&recipient))?;
            OUTBOUND.push(
                txn,
                sender.as_str(),
                priority,
                &Outbound::Evidence(ev.wire.clone()).encode(),
            )?;
            Ok(true)
        })
        .await
}

/// Removes an acknowledged queue item.
pub(crate) async fn ack(store: &Store, dest: DeptId, key: QueueKey) -> Result<(), StoreError> {
    store
        .write(move |txn| OUTBOUND.remove(txn, dest.as_str(), key).map(|_| ()))
        .await
}

/// The most urgent item waiting for `dest` that is not in `busy` (pushed, not yet finished).
pub(crate) async fn next_outbound(
    store: &Store,
    dest: DeptId,
    busy: std::collections::HashSet<QueueKey>,
) -> Result<Option<(QueueKey, Outbound)>, StoreError> {
    let items = store
        .lookup(move |txn| OUTBOUND.peek(txn, dest.as_str(), 1, &|k| busy.contains(&k)))
        .await?;
    items
        .into_iter()
        .next()
        .map(|(k, v)| Outbound::decode(k, &v).map(|o| (k, o)))
        .transpose()
}

/// Every delivery still queued at the hub: (recipient, queue key, document).
pub(crate) async fn queued_deliveries(
    store: &Store,
) -> Result<Vec<(DeptId, QueueKey, DocumentId)>, StoreError> {
    let items = store.read(|txn| OUTBOUND.all(txn)).await?;
    let mut out = Vec::new();
    for (dest, key, bytes) in items {
        if let Outbound::Deliver(id) = Outbound::decode(key, &bytes)? {
            let dept = dest.parse().map_err(|e| StoreError::decode(&dest, e))?;
            out.push((dept, key, id));
        }
    }
    Ok(out)
}

fn delivery_state(v: &[u8], what: &str) -> Result<DeliveryState, StoreError> {
    let d: st::HubDelivery = decode(what, v)?;
    Ok(u8::try_from(d.state)
        .ok()
        .and_then(DeliveryState::from_code)
        .unwrap_or(DeliveryState::Accepted))
}

/// Every recipient of document `id` (named in its header or added later) with its state.
fn deliveries_of(
    txn: &WriteTransaction,
    id: &str,
) -> Result<Vec<(DeptId, DeliveryState)>, StoreError> {
    let table = txn.open_table(DELIVERIES)?;
    let mut out = Vec::new();
    for item in table.range((id, "")..)? {
        let (k, v) = item?;
        let (doc, dept) = k.value();
        if doc != id {
            break;
        }
        let what = format!("delivery {id}/{dept}");
        let state = delivery_state(v.value(), &what)?;
        out.push((
            dept.parse().map_err(|e| StoreError::decode(&what, e))?,
            state,
        ));
    }
    Ok(out)
}

/// `dept`'s delivery state of document `id`, if `dept` is a recipient (named or added).
pub(crate) async fn delivery(
    store: &Store,
    id: DocumentId,
    dept: DeptId,
) -> Result<Option<DeliveryState>, StoreError> {
    store
        .lookup(move |txn| {
            let table = match txn.open_table(DELIVERIES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let id = id.to_string();
            let v = table.get((id.as_str(), dept.as_str()))?;
            v.map(|v| delivery_state(v.value(), &format!("delivery {id}/{dept}")))
                .transpose()
        })
        .await
}

/// Records the sender's recall (撤回) and queues it, as a notice, for every recipient that is not
/// finished with the document (a confirmed one still has to acknowledge it). A delivery still
/// queued is never pushed after this (see `crate::delivery`). Returns the recipients to wake;
/// a repeated recall changes nothing (the first one stands).
pub(crate) async fn recall(
    store: &Store,
    doc: &SignedDoc,
    ev: SignedEvidence,
) -> Result<Vec<DeptId>, ServiceError> {
    let id = doc.header.id.to_string();
    let priority = doc.header.urgency.priority();
    store
        .write(move |txn| {
            {
                let table = txn.open_table(RECALLS).map_err(StoreError::from)?;
                if table.get(id.as_str()).map_err(StoreError::from)?.is_some() {
                    return Ok(Vec::new());
                }
            }
            let rec = st::HubRecall {
                recall: Some(ev.wire.clone()),
                at_ms: ev.evidence.at_ms,
            };
            txn.open_table(RECALLS)
                .map_err(StoreError::from)?
                .insert(id.as_str(), encode(&rec).as_slice())
                .map_err(StoreError::from)?;
            put_evidence(txn, &id, "", EvidenceKind::Recall, &ev.wire)?;
            audit::append(
                txn,
                &Event::new(pb::AuditKind::Evidence)
                    .doc(&id)
                    .dept(&ev.evidence.sender)
                    .detail(format!("Recall reason {:?}", ev.evidence.reason)),
            )?;
            let notice = Outbound::Notice(ev.wire.clone()).encode();
            let mut woken = Vec::new();
            for (dept, state) in deliveries_of(txn, &id)? {
                let open = matches!(
                    state,
                    DeliveryState::Queued
                        | DeliveryState::Accepted
                        | DeliveryState::Delivered
                        | DeliveryState::Confirmed
                );
                if open {
                    OUTBOUND.push(txn, dept.as_str(), priority, &notice)?;
                    woken.push(dept);
                }
            }
            Ok(woken)
        })
        .await
}

/// Adds a recipient to a sent document (补发): a new delivery, queued like the first ones, with
/// the sender's signed RECIPIENT_ADDED kept to go with it. Returns false if `dept` already is a
/// recipient (nothing changes).
pub(crate) async fn add_recipient(
    store: &Store,
    doc: &SignedDoc,
    ev: SignedEvidence,
) -> Result<bool, ServiceError> {
    let id = doc.header.id.to_string();
    let priority = doc.header.urgency.priority();
    let doc_id = doc.header.id;
    store
        .write(move |txn| {
            let dept = recipient_of(&ev)?;
            if txn
                .open_table(RECALLS)
                .map_err(StoreError::from)?
                .get(id.as_str())
                .map_err(StoreError::from)?
                .is_some()
            {
                return Err(ServiceError::precondition(format!(
                    "document {id} was recalled (撤回); it cannot get new recipients"
                )));
            }
            let mut deliveries = txn.open_table(DELIVERIES).map_err(StoreError::from)?;
            if deliveries
                .get((id.as_str(), dept.as_str()))
                .map_err(StoreError::from)?
                .is_some()
            {
                return Ok(false);
            }
            let queued = encode(&st::HubDelivery {
                state: u32::from(DeliveryState::Accepted.code()),
                ..Default::default()
            });
            deliveries
                .insert((id.as_str(), dept.as_str()), queued.as_slice())
                .map_err(StoreError::from)?;
            drop(deliveries);
            put_evidence(
                txn,
                &id,
                dept.as_str(),
                EvidenceKind::RecipientAdded,
                &ev.wire,
            )?;
            OUTBOUND.push(
                txn,
                dept.as_str(),
                priority,
                &Outbound::Deliver(doc_id).encode(),
            )?;
            let role = if ev.evidence.cc { "cc" } else { "to" };
            audit::append(
                txn,
                &Event::new(pb::AuditKind::Queued)
                    .doc(&id)
                    .dept(&dept)
                    .detail(format!("added after sending (补发) as {role}")),
            )?;
            Ok(true)
        })
        .await
}

/// Queues the sender's reminder (催办) for a recipient that has not finished with the document.
pub(crate) async fn remind(
    store: &Store,
    doc: &SignedDoc,
    ev: SignedEvidence,
) -> Result<(), ServiceError> {
    let id = doc.header.id.to_string();
    let priority = doc.header.urgency.priority();
    store
        .write(move |txn| {
            let dept = recipient_of(&ev)?;
            let delivery = load_delivery(txn, &id, &dept)?;
            let state = u8::try_from(delivery.state)
                .ok()
                .and_then(DeliveryState::from_code)
                .unwrap_or(DeliveryState::Accepted);
            if state.is_final() {
                return Err(ServiceError::precondition(format!(
                    "document {id} at {dept} is {state}: nothing to remind of"
                )));
            }
            put_evidence(txn, &id, dept.as_str(), EvidenceKind::Reminded, &ev.wire)?;
            OUTBOUND.push(
                txn,
                dept.as_str(),
                priority,
                &Outbound::Notice(ev.wire.clone()).encode(),
            )?;
            audit::append(
                txn,
                &Event::new(pb::AuditKind::Evidence)
                    .doc(&id)
                    .dept(&dept)
                    .detail(format!("Reminded note {:?}", ev.evidence.reason)),
            )?;
            Ok(())
        })
        .await
}

/// What pushing document `id` to `dept` needs, read in one transaction: the stored document,
/// whether the sender recalled it before `dept` had it (then it is not pushed), and the
/// sender's RECIPIENT_ADDED if `dept` was added after sending.
pub(crate) struct PushView {
    pub(crate) doc: SignedDoc,
    pub(crate) rec: st::HubDocument,
    pub(crate) withdrawn: bool,
    pub(crate) addition: Option<pb::SignedEvidence>,
    /// The content of the parts held inline.
    pub(crate) content: Vec<pb::InlineContent>,
}

pub(crate) async fn push_view(
    store: &Store,
    id: DocumentId,
    dept: DeptId,
) -> Result<Option<PushView>, StoreError> {
    let found: Option<PushView> = store
        .lookup(move |txn| {
            let key = id.to_string();
            let Some(rec) = get_document(txn, &key)? else {
                return Ok::<_, StoreError>(None);
            };
            let recalled = match txn.open_table(RECALLS) {
                Ok(t) => t.get(key.as_str())?.is_some(),
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(e.into()),
            };
            let state = if recalled {
                let t = txn.open_table(DELIVERIES)?;
                let v = t.get((key.as_str(), dept.as_str()))?;
                v.map(|v| delivery_state(v.value(), &format!("delivery {key}/{dept}")))
                    .transpose()?
            } else {
                None
            };
            let withdrawn = recalled
                && matches!(
                    state,
                    Some(DeliveryState::Queued | DeliveryState::Accepted) | None
                );
            let addition = match txn.open_table(EVIDENCE) {
                Ok(t) => t
                    .get((
                        key.as_str(),
                        dept.as_str(),
                        EvidenceKind::RecipientAdded.code(),
                    ))?
                    .map(|v| decode(format!("addition {key}/{dept}"), v.value()))
                    .transpose()?,
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            };
            let doc = SignedDoc::decode(rec.document.clone().unwrap_or_default())
                .map_err(|e| StoreError::decode(id, e))?;
            let content = if withdrawn {
                Vec::new()
            } else {
                inline_of(txn, &doc)?
            };
            Ok(Some(PushView {
                doc,
                rec,
                withdrawn,
                addition,
                content,
            }))
        })
        .await?;
    Ok(found)
}

/// One delivery as `crate::stats` counts it.
pub(crate) struct DeliveryFacts {
    /// The recipient's id, as stored.
    pub(crate) recipient: String,
    /// The stored state code ([`DeliveryState::code`]), passed on as is: a code this build does
    /// not know is the caller's to skip.
    pub(crate) state: u32,
    /// When the recipient's node had it (the time in its signed receipt); 0 = not known yet.
    pub(crate) delivered_at_ms: i64,
    /// The time in the recipient's CONFIRMED evidence (签收); 0 = none. Read from the evidence
    /// rather than `handled_at_ms`, which a later step (a recall acknowledgement) overwrites.
    pub(crate) confirmed_at_ms: i64,
}

/// A document and every delivery of it (named recipients and ones added later).
pub(crate) struct DocumentFacts {
    pub(crate) doc: SignedDoc,
    pub(crate) deliveries: Vec<DeliveryFacts>,
}

/// Calls `each` for every document the hub accepted within `period` (Unix ms, by
/// `accepted_at_ms`), in the caller's one read transaction, so that statistics are one consistent
/// snapshot. Reads every document record: meant for an administrator's occasional question, not a
/// hot path.
pub(crate) fn scan_accepted(
    txn: &ReadTransaction,
    period: std::ops::Range<i64>,
    each: &mut dyn FnMut(DocumentFacts),
) -> Result<(), StoreError> {
    let documents = match txn.open_table(DOCUMENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let deliveries = match txn.open_table(DELIVERIES) {
        Ok(t) => Some(t),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let evidence = match txn.open_table(EVIDENCE) {
        Ok(t) => Some(t),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    for item in documents.iter()? {
        let (k, v) = item?;
        let id = k.value();
        let rec: st::HubDocument = decode(id, v.value())?;
        if !period.contains(&rec.accepted_at_ms) {
            continue;
        }
        let doc = SignedDoc::decode(rec.document.unwrap_or_default())
            .map_err(|e| StoreError::decode(id, e))?;
        let mut facts = DocumentFacts {
            doc,
            deliveries: Vec::new(),
        };
        let Some(deliveries) = &deliveries else {
            each(facts);
            continue;
        };
        for item in deliveries.range((id, "")..)? {
            let (k, v) = item?;
            let (doc_id, dept) = k.value();
            if doc_id != id {
                break;
            }
            let what = format!("delivery {id}/{dept}");
            let d: st::HubDelivery = decode(&what, v.value())?;
            let confirmed = match &evidence {
                Some(t) => t.get((id, dept, EvidenceKind::Confirmed.code()))?,
                None => None,
            };
            let confirmed_at_ms = match confirmed {
                Some(v) => {
                    let wire: pb::SignedEvidence = decode(&what, v.value())?;
                    SignedEvidence::decode(wire)
                        .map_err(|e| StoreError::decode(&what, e))?
                        .evidence
                        .at_ms
                }
                None => 0,
            };
            facts.deliveries.push(DeliveryFacts {
                recipient: dept.to_owned(),
                state: d.state,
                delivered_at_ms: d.delivered_at_ms,
                confirmed_at_ms,
            });
        }
        each(facts);
    }
    Ok(())
}

/// The parts of `doc` held inline, with their content.
fn inline_of(txn: &ReadTransaction, doc: &SignedDoc) -> Result<Vec<pb::InlineContent>, StoreError> {
    let mut out: Vec<pb::InlineContent> = Vec::new();
    for p in &doc.header.parts {
        if out.iter().any(|c| c.sha256 == p.sha256.0) {
            continue;
        }
        if let Some(data) = content::get_in(txn, &p.sha256)? {
            out.push(pb::InlineContent {
                sha256: p.sha256.0.to_vec(),
                data,
            });
        }
    }
    Ok(out)
}

/// Content held inline under `digest`, if any (small documents sent inline).
pub(crate) async fn inline_content(
    store: &Store,
    digest: exchange_core::signing::Digest,
) -> Result<Option<Vec<u8>>, StoreError> {
    content::get(store, digest).await
}
