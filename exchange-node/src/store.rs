//! The node's durable state (see `exchange_core::store` for the durability rule).
//!
//! Tables:
//! - `sent`: doc id → `SentDocument` (what this department sent, each recipient's timeline)
//! - `inbox`: doc id → `ReceivedDocument` (what it received, and what the clerk did)
//! - `idempotency`: client key → doc id
//! - `events`: seq → `NodeEventRecord` (what `WatchEvents` replays)
//! - `outbox` queue (destination "hub"): documents to submit, evidence to send

use exchange_core::{
    document::{EvidenceKind, SignedDoc, SignedEvidence},
    error::{ErrorCode, ServiceError},
    ids::DocumentId,
    state::{ClerkAction, DeliveryState, InboxState, Transition},
    store::{
        Store, StoreError, decode, encode, next_counter, queue::DurableQueue, queue::QueueKey,
    },
};
use exchange_proto::{store::v1 as st, v1 as pb};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

/// Schema version of the node store.
pub(crate) const SCHEMA: u64 = 1;

pub(crate) const SENT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sent");
pub(crate) const INBOX: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("inbox");
const IDEMPOTENCY: TableDefinition<'_, &str, &str> = TableDefinition::new("idempotency");
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
pub(crate) const OUTBOX: DurableQueue = DurableQueue::new("outbox");
/// Every table of this module, for a backup (`crate::backup`).
pub(crate) const TABLES: &[&dyn exchange_core::backup::BackupTable] = &[
    &SENT,
    &INBOX,
    &IDEMPOTENCY,
    &EVENTS,
    &exchange_core::store::content::CONTENT,
    &OUTBOX,
];
pub(crate) const HUB: &str = "hub";

/// What waits in the outbox.
#[derive(Debug, Clone)]
pub(crate) enum OutboxItem {
    /// Upload and submit this document.
    Submit(DocumentId),
    /// Send this evidence (a clerk's confirmation or rejection).
    Evidence(pb::SignedEvidence),
}

fn get<M: prost::Message + Default>(
    txn: &ReadTransaction,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
) -> Result<Option<M>, StoreError> {
    match txn.open_table(table) {
        Ok(t) => t.get(key)?.map(|v| decode(key, v.value())).transpose(),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn get_w<M: prost::Message + Default>(
    txn: &WriteTransaction,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
) -> Result<Option<M>, StoreError> {
    let t = txn.open_table(table)?;
    let v = t.get(key)?;
    v.map(|v| decode(key, v.value())).transpose()
}

pub(crate) fn put<M: prost::Message>(
    txn: &WriteTransaction,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
    m: &M,
) -> Result<(), StoreError> {
    txn.open_table(table)?.insert(key, encode(m).as_slice())?;
    Ok(())
}

pub(crate) fn event(
    txn: &WriteTransaction,
    kind: pb::NodeEventKind,
    doc_id: &str,
    dept: &str,
    state: pb::RecipientState,
    at_ms: i64,
) -> Result<u64, StoreError> {
    let seq = next_counter(txn, "event_seq")?;
    let rec = st::NodeEventRecord {
        kind: u32::try_from(i32::from(kind)).unwrap_or(0),
        doc_id: doc_id.to_owned(),
        dept: dept.to_owned(),
        state: u32::try_from(i32::from(state)).unwrap_or(0),
        at_ms,
    };
    txn.open_table(EVENTS)?
        .insert(seq, encode(&rec).as_slice())?;
    Ok(seq)
}

/// The document id already submitted under `key`, if any.
pub(crate) async fn idempotent(
    store: &Store,
    key: String,
) -> Result<Option<DocumentId>, StoreError> {
    store
        .lookup(move |txn| {
            let t = match txn.open_table(IDEMPOTENCY) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let v = t.get(key.as_str())?;
            v.map(|v| v.value().parse().map_err(|e| StoreError::decode(&key, e)))
                .transpose()
        })
        .await
}

/// Records a sealed document as sent and queues it for the hub. With an idempotency key that
/// was used before, stores nothing and returns the earlier document's id.
pub(crate) async fn submit(
    store: &Store,
    doc: SignedDoc,
    key: Option<String>,
    inline: Vec<(exchange_core::signing::Digest, Vec<u8>)>,
    at_ms: i64,
) -> Result<DocumentId, StoreError> {
    store
        .write(move |txn| {
            if let Some(k) = &key
                && let Some(v) = txn.open_table(IDEMPOTENCY)?.get(k.as_str())?
            {
                return v.value().parse().map_err(|e| StoreError::decode(k, e));
            }
            let id = doc.header.id.to_string();
            let recipients = doc
                .header
                .recipients
                .iter()
                .map(|r| st::SentRecipient {
                    dept: r.dept.to_string(),
                    cc: r.role == exchange_core::document::RecipientRole::Cc,
                    state: u32::from(DeliveryState::Queued.code()),
                    ..Default::default()
                })
                .collect();
            let rec = st::SentDocument {
                document: Some(doc.wire.clone()),
                recipients,
                queued_at_ms: at_ms,
                ..Default::default()
            };
            put(txn, SENT, &id, &rec)?;
            for (digest, data) in &inline {
                crate::content::put(txn, digest, data)?;
            }
            let item = st::QueueItem {
                item: Some(st::queue_item::Item::SubmitDoc(id.clone())),
            };
            OUTBOX.push(txn, HUB, doc.header.urgency.priority(), &encode(&item))?;
            if let Some(k) = &key {
                txn.open_table(IDEMPOTENCY)?
                    .insert(k.as_str(), id.as_str())?;
            }
            Ok(doc.header.id)
        })
        .await
}

/// The next `limit` outbox items not in `busy` (those being sent), most urgent first.
pub(crate) async fn next_outbox(
    store: &Store,
    limit: usize,
    busy: std::collections::HashSet<QueueKey>,
) -> Result<Vec<(QueueKey, OutboxItem)>, StoreError> {
    let items = store
        .lookup(move |txn| OUTBOX.peek(txn, HUB, limit, &|k| busy.contains(&k)))
        .await?;
    items
        .into_iter()
        .map(|(key, bytes)| Ok((key, outbox_item(key, &bytes)?)))
        .collect()
}

fn outbox_item(key: QueueKey, bytes: &[u8]) -> Result<OutboxItem, StoreError> {
    let item: st::QueueItem = decode(format!("outbox {}", key.seq), bytes)?;
    Ok(match item.item {
        Some(st::queue_item::Item::SubmitDoc(id)) => OutboxItem::Submit(
            id.parse()
                .map_err(|e| StoreError::decode("outbox doc id", e))?,
        ),
        Some(st::queue_item::Item::Evidence(e)) => OutboxItem::Evidence(e),
        _ => {
            return Err(StoreError::decode(
                format!("outbox {}", key.seq),
                "unknown item",
            ));
        }
    })
}

/// Removes an outbox item that the hub acknowledged (or refused for good).
pub(crate) async fn outbox_done(store: &Store, key: QueueKey) -> Result<(), StoreError> {
    store
        .write(move |txn| OUTBOX.remove(txn, HUB, key).map(|_| ()))
        .await
}

/// A document this department sent.
pub(crate) async fn sent(
    store: &Store,
    id: DocumentId,
) -> Result<Option<st::SentDocument>, StoreError> {
    store
        .lookup(move |txn| get(txn, SENT, &id.to_string()))
        .await
}

/// A document this department received.
pub(crate) async fn received(
    store: &Store,
    id: DocumentId,
) -> Result<Option<st::ReceivedDocument>, StoreError> {
    store
        .lookup(move |txn| get(txn, INBOX, &id.to_string()))
        .await
}

/// Every received document.
pub(crate) async fn inbox(store: &Store) -> Result<Vec<st::ReceivedDocument>, StoreError> {
    store.read(|txn| all(txn, INBOX)).await
}

/// Every record of a table keyed by document id, in id order.
fn all<M: prost::Message + Default>(
    txn: &ReadTransaction,
    table: TableDefinition<'_, &str, &[u8]>,
) -> Result<Vec<M>, StoreError> {
    let t = match txn.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    t.iter()?
        .map(|e| {
            e.map_err(StoreError::from)
                .and_then(|(k, v)| decode(k.value(), v.value()))
        })
        .collect()
}

/// Events after `after`, at most `limit`.
pub(crate) async fn events_after(
    store: &Store,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, st::NodeEventRecord)>, StoreError> {
    store
        .read(move |txn| {
            let t = match txn.open_table(EVENTS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for e in t.range(after.saturating_add(1)..)?.take(limit) {
                let (k, v) = e?;
                out.push((k.value(), decode(k.value(), v.value())?));
            }
            Ok(out)
        })
        .await
}

/// Applies evidence about a sent document to its recipients' timelines (and removes the
/// outbox item `done`, if given, in the same transaction). Returns the new event seq, if any.
pub(crate) async fn apply_evidence(
    store: &Store,
    ev: SignedEvidence,
    done: Option<QueueKey>,
) -> Result<Option<u64>, ServiceError> {
    store
        .write(move |txn| {
            let id = ev.evidence.doc_id.to_string();
            let Some(mut rec) = get_w::<st::SentDocument>(txn, SENT, &id)? else {
                return Err(ServiceError::not_found(format!(
                    "evidence for {id}, which this node did not send"
                )));
            };
            let digest_ok = rec.document.as_ref().is_some_and(|d| {
                exchange_core::signing::Digest::of(&d.header) == ev.evidence.header_digest
            });
            if !digest_ok {
                return Err(ServiceError::invalid(format!(
                    "evidence for {id} names another version of the document"
                )));
            }
            let targets: Vec<usize> = match &ev.evidence.recipient {
                Some(r) => rec
                    .recipients
                    .iter()
                    .position(|x| x.dept == r.as_str())
                    .into_iter()
                    .collect(),
                None => (0..rec.recipients.len()).collect(), // acceptance: every recipient
            };
            let mut last_event = None;
            for i in targets {
                let r = &mut rec.recipients[i];
                let current = u8::try_from(r.state)
                    .ok()
                    .and_then(DeliveryState::from_code)
                    .unwrap_or(DeliveryState::Queued);
                let next = current
                    .apply(ev.evidence.kind)
                    .map_err(|e| ServiceError::precondition(format!("{id} at {}: {e}", r.dept)))?;
                let at = ev.evidence.at_ms;
                match ev.evidence.kind {
                    EvidenceKind::Accepted => r.accepted_at_ms = at,
                    EvidenceKind::Delivered => r.delivered_at_ms = at,
                    EvidenceKind::Confirmed => r.confirmed_at_ms = at,
                    EvidenceKind::Rejected | EvidenceKind::NotDelivered | EvidenceKind::Refused => {
                        r.rejected_at_ms = at
                    }
                    EvidenceKind::Withdrawn
                    | EvidenceKind::Recalled
                    | EvidenceKind::RecallAcknowledged => r.recall_done_at_ms = at,
                    // Our own statements are recorded when made, never pushed back to us.
                    EvidenceKind::Recall
                    | EvidenceKind::RecipientAdded
                    | EvidenceKind::Reminded => {}
                }
                if matches!(
                    ev.evidence.kind,
                    EvidenceKind::Confirmed | EvidenceKind::Rejected | EvidenceKind::NotDelivered
                ) {
                    r.clerk.clone_from(&ev.evidence.clerk);
                    r.reason.clone_from(&ev.evidence.reason);
                }
                if ev.evidence.recipient.is_some() {
                    r.evidence.push(ev.wire.clone());
                }
                if let Transition::Changed(s) = next {
                    r.state = u32::from(s.code());
                    let dept = r.dept.clone();
                    last_event = Some(event(
                        txn,
                        pb::NodeEventKind::Recipient,
                        &id,
                        &dept,
                        s.into(),
                        at,
                    )?);
                }
            }
            if ev.evidence.kind == EvidenceKind::Accepted {
                rec.acceptance = Some(ev.wire.clone());
            }
            put(txn, SENT, &id, &rec)?;
            if let Some(key) = done {
                OUTBOX.remove(txn, HUB, key)?;
            }
            Ok(last_event)
        })
        .await
}

/// Marks a sent document as refused by the hub and drops it from the outbox.
pub(crate) async fn refused(
    store: &Store,
    id: DocumentId,
    reason: String,
    evidence: Option<pb::SignedEvidence>,
    key: QueueKey,
    at_ms: i64,
) -> Result<Option<u64>, StoreError> {
    store
        .write(move |txn| {
            let id = id.to_string();
            if let Some(mut rec) = get_w::<st::SentDocument>(txn, SENT, &id)? {
                rec.refused.clone_from(&reason);
                rec.refusal.clone_from(&evidence);
                put(txn, SENT, &id, &rec)?;
                let seq = event(
                    txn,
                    pb::NodeEventKind::Recipient,
                    &id,
                    "",
                    pb::RecipientState::Refused,
                    at_ms,
                )?;
                OUTBOX.remove(txn, HUB, key)?;
                return Ok(Some(seq));
            }
            OUTBOX.remove(txn, HUB, key)?;
            Ok(None)
        })
        .await
}

/// Stores a verified delivery, with this node's signed receipt. If the document is already in
/// the inbox, stores nothing and returns the receipt given the first time (so a redelivery is
/// acknowledged identically and the inbox holds it once). Returns the receipt and, for a new
/// document, its event seq.
pub(crate) async fn receive(
    store: &Store,
    doc: SignedDoc,
    acceptance: pb::SignedEvidence,
    addition: Option<pb::SignedEvidence>,
    inline: Vec<(exchange_core::signing::Digest, Vec<u8>)>,
    receipt: pb::SignedEvidence,
    at_ms: i64,
) -> Result<(pb::SignedEvidence, Option<u64>), StoreError> {
    store
        .write(move |txn| {
            let id = doc.header.id.to_string();
            if let Some(rec) = get_w::<st::ReceivedDocument>(txn, INBOX, &id)? {
                return Ok((rec.delivery_receipt.unwrap_or_default(), None));
            }
            let rec = st::ReceivedDocument {
                document: Some(doc.wire.clone()),
                acceptance: Some(acceptance.clone()),
                delivery_receipt: Some(receipt.clone()),
                received_at_ms: at_ms,
                state: u32::from(InboxState::New.code()),
                addition: addition.clone(),
                ..Default::default()
            };
            put(txn, INBOX, &id, &rec)?;
            for (digest, data) in &inline {
                crate::content::put(txn, digest, data)?;
            }
            let seq = event(
                txn,
                pb::NodeEventKind::Received,
                &id,
                doc.header.sender.as_str(),
                pb::RecipientState::Delivered,
                at_ms,
            )?;
            Ok((receipt.clone(), Some(seq)))
        })
        .await
}

/// A clerk's confirmation or rejection: updates the inbox entry and queues the signed evidence
/// for the hub, in one transaction. Repeating the same action changes nothing.
pub(crate) async fn handle(
    store: &Store,
    id: DocumentId,
    action: ClerkAction,
    make_evidence: impl Fn(&SignedDoc) -> SignedEvidence + Send + 'static,
) -> Result<bool, ServiceError> {
    store
        .write(move |txn| {
            let key = id.to_string();
            let mut rec = get_w::<st::ReceivedDocument>(txn, INBOX, &key)?
                .ok_or_else(|| ServiceError::not_found(format!("no received document {id}")))?;
            let current = u8::try_from(rec.state)
                .ok()
                .and_then(InboxState::from_code)
                .unwrap_or(InboxState::New);
            let next = match current.apply(action) {
                Ok(Transition::Unchanged(_)) => return Ok(false),
                Ok(Transition::Changed(s)) => s,
                Err(_) if current == InboxState::Recalled => {
                    return Err(ServiceError::precondition(format!(
                        "document {id} was recalled by its sender (撤回): it can no longer be \
                         signed for or returned"
                    )));
                }
                Err(_) if action == ClerkAction::AcknowledgeRecall => {
                    return Err(ServiceError::precondition(format!(
                        "document {id} has no recall to acknowledge (it is {})",
                        current.name()
                    )));
                }
                Err(e) => {
                    return Err(ServiceError::new(
                        ErrorCode::FailedPrecondition,
                        format!("document {id}: {e}"),
                    ));
                }
            };
            let doc = SignedDoc::decode(rec.document.clone().unwrap_or_default())
                .map_err(|e| StoreError::decode(&key, e))?;
            let ev = make_evidence(&doc);
            rec.state = u32::from(next.code());
            if action == ClerkAction::AcknowledgeRecall {
                // The 签收 (time, clerk, evidence) stays as it was; the acknowledgement is apart.
                rec.recall_handling = Some(ev.wire.clone());
            } else {
                rec.handled_at_ms = ev.evidence.at_ms;
                rec.clerk.clone_from(&ev.evidence.clerk);
                rec.reason.clone_from(&ev.evidence.reason);
                rec.handling = Some(ev.wire.clone());
            }
            put(txn, INBOX, &key, &rec)?;
            let item = st::QueueItem {
                item: Some(st::queue_item::Item::Evidence(ev.wire)),
            };
            OUTBOX.push(txn, HUB, doc.header.urgency.priority(), &encode(&item))?;
            Ok(true)
        })
        .await
}

/// Every document this department sent (for `ListSent`), in id order (UUIDv7: oldest first).
pub(crate) async fn all_sent(store: &Store) -> Result<Vec<st::SentDocument>, StoreError> {
    store.read(|txn| all(txn, SENT)).await
}
