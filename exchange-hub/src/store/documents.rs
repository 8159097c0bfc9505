//! Accepting a document (once, with its deliveries and queue entries in one transaction) and
//! reading accepted documents and the content held inline with them.

use std::sync::Arc;

use exchange_core::store::kv::{ReadTables, WriteTables};
use exchange_core::{
    document::{EvidenceKind, SignedDoc},
    ids::{Address, DeptId, DocumentId, ExchangeName},
    signing::Digest,
    store::{Store, StoreError, content, decode, sealing::Sealer},
};
use exchange_proto::v1 as pb;

use super::{
    DELIVERIES, DOCUMENTS, EVIDENCE, OUTBOUND, Outbound, RELAY_OUT, StepError, delivery_key,
    evidence_key, put_evidence,
    records::{DeliveryRecord, DocumentRecord, Relayed},
    relay::{PeerItem, relay_key},
};
use crate::audit::{self, Event};

/// The result of a submission: the same acceptance for a repeated identical submission.
#[derive(Debug)]
pub(crate) enum Accepted {
    /// Newly stored and queued.
    New(pb::SignedEvidence),
    /// Already accepted earlier; nothing changed.
    Again(pb::SignedEvidence),
}

/// The stored document `id`, in the caller's read transaction.
pub(crate) fn get_document(
    txn: &dyn ReadTables,
    sealer: &Sealer,
    id: &str,
) -> Result<Option<DocumentRecord>, StoreError> {
    txn.get(DOCUMENTS, id.as_bytes())?
        .map(|v| DocumentRecord::decode(sealer, id, &v))
        .transpose()
}

/// Reads a stored document.
pub(crate) async fn document(
    store: &Store,
    id: DocumentId,
) -> Result<Option<DocumentRecord>, StoreError> {
    let sealer = store.sealer().clone();
    store
        .lookup(move |txn| get_document(txn, &sealer, &id.to_string()))
        .await
}

/// Where a document's recipients go from this hub, decided before it is stored
/// (`crate::federation::Routes::dest`): each recipient's delivery (under its name relative to
/// this exchange) with its queue, and the recipients handed to each peer hub (as the header
/// names them).
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Deliveries to departments of this exchange: (key, department).
    pub(crate) local: Vec<(Address, DeptId)>,
    /// Deliveries through peers: (key, peer).
    pub(crate) remote: Vec<(Address, ExchangeName)>,
    /// What each peer is handed: the recipients as the header names them.
    pub(crate) relays: Vec<(ExchangeName, Vec<Address>)>,
    /// The sender's RECIPIENT_ADDED (补发) of recipients the header does not name, by key.
    pub(crate) additions: Vec<(Address, pb::SignedEvidence)>,
}

/// A document to store as accepted ([`accept`]).
pub(crate) struct ToAccept {
    /// The document, its signature verified.
    pub(crate) doc: Arc<SignedDoc>,
    /// This hub's signed ACCEPTED.
    pub(crate) acceptance: pb::SignedEvidence,
    /// How a document of a linked exchange reached us (its RELAYED is what a repeat gets).
    pub(crate) relay: Option<Relayed>,
    /// The content sent with it, already checked against the signed parts.
    pub(crate) inline: Vec<(Digest, Vec<u8>)>,
    /// When it was accepted.
    pub(crate) at_ms: i64,
    /// Where it goes.
    pub(crate) plan: Plan,
}

/// Stores an accepted document, its deliveries and queue entries, in one durable transaction.
/// A repeated submission of the same header changes nothing and gets the first acceptance
/// again; the same id with another header is a [`StepError::Conflict`].
pub(crate) async fn accept(store: &Store, job: ToAccept) -> Result<Accepted, StepError> {
    let sealer = store.sealer().clone();
    store
        .write(move |txn| {
            let existing = existing(txn, &sealer, &job)?;
            accept_in(txn, &sealer, &job, existing)
        })
        .await
}

/// [`accept`] for documents submitted together (one `SubmitBatch`), in one transaction, each
/// as if alone: one whose id is taken by another header ([`StepError::Conflict`]) or whose
/// stored record cannot be read gets its error and nothing of it is written; a failure while
/// writing fails them all. Returns each one's outcome in order.
pub(crate) async fn accept_all(
    store: &Store,
    jobs: Vec<ToAccept>,
) -> Result<Vec<Result<Accepted, StepError>>, StepError> {
    let (read, write) = (store.sealer().clone(), store.sealer().clone());
    store
        .write_each(
            jobs,
            move |txn, job| existing(txn, &read, job),
            move |txn, job, existing| accept_in(txn, &write, job, existing),
            |e| {
                matches!(
                    e,
                    StepError::Conflict { .. } | StepError::Store(StoreError::Decode { .. })
                )
            },
        )
        .await
}

/// The stored record of `job`'s document, if it was accepted before with the same header; a
/// [`StepError::Conflict`] if with another. Reads only.
fn existing(
    txn: &dyn WriteTables,
    sealer: &Sealer,
    job: &ToAccept,
) -> Result<Option<DocumentRecord>, StepError> {
    let existing = get_document(txn, sealer, &job.doc.header.id.to_string())?;
    if let Some(rec) = &existing
        && rec.doc.wire.header != job.doc.wire.header
    {
        return Err(StepError::Conflict {
            doc: job.doc.header.id,
        });
    }
    Ok(existing)
}

/// Stores `job` in `txn`; `existing`: its record if it was accepted before ([`existing`]).
fn accept_in(
    txn: &dyn WriteTables,
    sealer: &Sealer,
    job: &ToAccept,
    existing: Option<DocumentRecord>,
) -> Result<Accepted, StepError> {
    let ToAccept {
        doc,
        acceptance,
        relay,
        inline,
        at_ms,
        plan,
    } = job;
    let id = doc.header.id.to_string();
    if let Some(rec) = existing {
        let Some(r) = relay else {
            return Ok(Accepted::Again(rec.acceptance));
        };
        // The same custody again gets the same RELAYED; custody of recipients added later
        // (补发) to a document already here adds their deliveries.
        let slot = relay_key(&r.relayed)?;
        if let Some(v) = txn.get(EVIDENCE, &evidence_key(&id, &slot, EvidenceKind::Relayed))? {
            return Ok(Accepted::Again(decode(format!("relayed {id}"), &v)?));
        }
        put_evidence(txn, &id, &slot, EvidenceKind::Relayed, &r.relayed)?;
        queue_plan(txn, &id, doc, plan, true)?;
        audit::append(txn, &accepted_event(doc, relay.as_ref(), plan))?;
        return Ok(Accepted::New(r.relayed.clone()));
    }
    let answer = relay
        .as_ref()
        .map_or_else(|| acceptance.clone(), |r| r.relayed.clone());
    let rec = DocumentRecord {
        doc: Arc::clone(doc),
        acceptance: acceptance.clone(),
        accepted_at_ms: *at_ms,
        relay: relay.clone(),
    };
    txn.put(DOCUMENTS, id.as_bytes(), &rec.encode(sealer)?)?;
    put_evidence(txn, &id, "", EvidenceKind::Accepted, acceptance)?;
    if let Some(r) = relay {
        put_evidence(
            txn,
            &id,
            &relay_key(&r.relayed)?,
            EvidenceKind::Relayed,
            &r.relayed,
        )?;
    }
    for (digest, data) in inline {
        content::put(txn, sealer, doc.header.id, digest, data)?;
    }
    audit::append(txn, &accepted_event(doc, relay.as_ref(), plan))?;
    queue_plan(txn, &id, doc, plan, false)?;
    Ok(Accepted::New(answer))
}

/// Records the deliveries of `plan` and queues them: to departments here, and to the peers
/// towards the others; keeps the additions (补发) with them. For a document already `held`,
/// only the deliveries not recorded yet (a new document has none: no read is spent on it).
fn queue_plan(
    txn: &dyn WriteTables,
    id: &str,
    doc: &SignedDoc,
    plan: &Plan,
    held: bool,
) -> Result<(), StepError> {
    let queued = DeliveryRecord::accepted().encode();
    let priority = doc.header.urgency.priority();
    let item = Outbound::Deliver(doc.header.id).encode();
    let fresh = |key: &Address| -> Result<bool, StepError> {
        if !held {
            return Ok(true);
        }
        Ok(txn
            .get(DELIVERIES, &delivery_key(id, &key.to_string()))?
            .is_none())
    };
    for (key, ev) in &plan.additions {
        put_evidence(txn, id, &key.to_string(), EvidenceKind::RecipientAdded, ev)?;
    }
    for (key, dept) in &plan.local {
        if !fresh(key)? {
            continue;
        }
        txn.put(DELIVERIES, &delivery_key(id, &key.to_string()), &queued)?;
        OUTBOUND.push(txn, dept.as_str(), priority, &item)?;
        audit::append(txn, &Event::new(pb::AuditKind::Queued).doc(id).dept(dept))?;
    }
    for (key, _) in &plan.remote {
        if fresh(key)? {
            txn.put(DELIVERIES, &delivery_key(id, &key.to_string()), &queued)?;
        }
    }
    for (peer, recipients) in &plan.relays {
        let item = PeerItem::Relay {
            doc: doc.header.id,
            recipients: recipients.clone(),
        };
        RELAY_OUT.push(txn, peer.as_str(), priority, &item.encode())?;
    }
    Ok(())
}

/// The audit record of an accepted document: who sent it to whom, how urgent, its 发文字号.
/// Never its title: that is document content, which the hub keeps only sealed when encryption
/// is on (docs/security.md), and the audit log is not sealed.
fn accepted_event(doc: &SignedDoc, relay: Option<&Relayed>, plan: &Plan) -> Event {
    let h = &doc.header;
    let to: Vec<String> = h
        .recipients
        .iter()
        .map(|r| format!("{}({})", r.addr, r.role.name()))
        .collect();
    let detail = format!(
        "to {}; {} {:?}",
        to.join(","),
        h.urgency.name(),
        h.metadata.doc_number
    );
    let Some(r) = relay else {
        return Event::new(pb::AuditKind::DocumentAccepted)
            .doc(h.id)
            .dept(&h.sender)
            .detail(detail);
    };
    let onward: Vec<String> = plan
        .relays
        .iter()
        .map(|(p, to)| format!("{p}:{}", to.len()))
        .collect();
    Event::new(pb::AuditKind::RelayedIn)
        .doc(h.id)
        .dept(format!("exchange:{}", r.from_peer))
        .detail(format!(
            "from {}@{} via {}; {detail}; onward {}",
            h.sender,
            r.origin,
            r.via
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            onward.join(",")
        ))
}

/// The parts of `doc` held inline, with their content.
pub(super) fn inline_of(
    txn: &dyn ReadTables,
    sealer: &Sealer,
    doc: &SignedDoc,
) -> Result<Vec<pb::InlineContent>, StoreError> {
    let mut out: Vec<pb::InlineContent> = Vec::new();
    for p in &doc.header.parts {
        if out.iter().any(|c| c.sha256 == p.sha256.0) {
            continue;
        }
        if let Some(data) = content::get_in(txn, sealer, doc.header.id, &p.sha256)? {
            out.push(pb::InlineContent {
                sha256: p.sha256.0.to_vec(),
                data,
            });
        }
    }
    Ok(out)
}

/// The content of `doc`'s part `digest` if it is held inline (a small document).
pub(crate) async fn inline_content(
    store: &Store,
    doc: DocumentId,
    digest: Digest,
) -> Result<Option<Vec<u8>>, StoreError> {
    content::get(store, doc, digest).await
}
