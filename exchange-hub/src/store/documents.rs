//! Accepting a document (once, with its deliveries and queue entries in one transaction) and
//! reading accepted documents and the content held inline with them.

use exchange_core::{
    document::{EvidenceKind, SignedDoc},
    ids::DocumentId,
    signing::Digest,
    store::{Store, StoreError, content, sealing::Sealer},
};
use exchange_proto::v1 as pb;
use redb::{ReadTransaction, ReadableTable};

use super::{
    DELIVERIES, DOCUMENTS, OUTBOUND, Outbound, StepError, put_evidence, read_table,
    records::{DeliveryRecord, DocumentRecord},
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
    txn: &ReadTransaction,
    sealer: &Sealer,
    id: &str,
) -> Result<Option<DocumentRecord>, StoreError> {
    let Some(table) = read_table(txn, DOCUMENTS)? else {
        return Ok(None);
    };
    let found = table.get(id)?;
    found
        .map(|v| DocumentRecord::decode(sealer, id, v.value()))
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

/// Stores an accepted document, its deliveries and queue entries, in one durable transaction.
/// `inline` is the content sent with it (already checked against the signed parts). A repeated
/// submission of the same header changes nothing and gets the first acceptance again; the same
/// id with another header is a [`StepError::Conflict`].
pub(crate) async fn accept(
    store: &Store,
    doc: SignedDoc,
    acceptance: pb::SignedEvidence,
    inline: Vec<(Digest, Vec<u8>)>,
    at_ms: i64,
) -> Result<Accepted, StepError> {
    let sealer = store.sealer().clone();
    store
        .write(move |txn| {
            let id = doc.header.id.to_string();
            let existing = {
                let table = txn.open_table(DOCUMENTS)?;
                let v = table.get(id.as_str())?;
                v.map(|v| DocumentRecord::decode(&sealer, &id, v.value()))
                    .transpose()?
            };
            if let Some(rec) = existing {
                if rec.doc.wire.header == doc.wire.header {
                    return Ok(Accepted::Again(rec.acceptance));
                }
                return Err(StepError::Conflict { doc: doc.header.id });
            }
            let rec = DocumentRecord {
                doc: doc.clone(),
                acceptance: acceptance.clone(),
                accepted_at_ms: at_ms,
            };
            txn.open_table(DOCUMENTS)?
                .insert(id.as_str(), rec.encode(&sealer)?.as_slice())?;
            put_evidence(txn, &id, "", EvidenceKind::Accepted, &acceptance)?;
            for (digest, data) in &inline {
                content::put(txn, &sealer, digest, data)?;
            }
            audit::append(txn, &accepted_event(&doc))?;
            let queued = DeliveryRecord::accepted().encode();
            let priority = doc.header.urgency.priority();
            let item = Outbound::Deliver(doc.header.id).encode();
            let mut deliveries = txn.open_table(DELIVERIES)?;
            for r in &doc.header.recipients {
                deliveries.insert((id.as_str(), r.dept.as_str()), queued.as_slice())?;
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

/// The audit record of an accepted document: who sent it to whom, how urgent, its 发文字号.
/// Never its title: that is document content, which the hub keeps only sealed when encryption
/// is on (docs/security.md), and the audit log is not sealed.
fn accepted_event(doc: &SignedDoc) -> Event {
    let h = &doc.header;
    let to: Vec<String> = h
        .recipients
        .iter()
        .map(|r| format!("{}({})", r.dept, r.role.name()))
        .collect();
    let detail = format!(
        "to {}; {} {:?}",
        to.join(","),
        h.urgency.name(),
        h.metadata.doc_number
    );
    Event::new(pb::AuditKind::DocumentAccepted)
        .doc(h.id)
        .dept(&h.sender)
        .detail(detail)
}

/// The parts of `doc` held inline, with their content.
pub(super) fn inline_of(
    txn: &ReadTransaction,
    sealer: &Sealer,
    doc: &SignedDoc,
) -> Result<Vec<pb::InlineContent>, StoreError> {
    let mut out: Vec<pb::InlineContent> = Vec::new();
    for p in &doc.header.parts {
        if out.iter().any(|c| c.sha256 == p.sha256.0) {
            continue;
        }
        if let Some(data) = content::get_in(txn, sealer, &p.sha256)? {
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
    digest: Digest,
) -> Result<Option<Vec<u8>>, StoreError> {
    content::get(store, digest).await
}
