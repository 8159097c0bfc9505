//! `GetEvidence`: the evidence bundle of a document, assembled from the node's store and
//! streamed as the bytes of the bundle file (`exchange_core::bundle`, `docs/evidence.md`).
//!
//! For a document this department sent, the bundle holds the signed document, the hub's
//! acceptance and every recipient's evidence; for one it received, the document, the acceptance
//! and this department's own DELIVERED and CONFIRMED / REJECTED evidence. Content, if asked for,
//! is streamed from the blob files part by part (`bundle::part_frame`), so memory stays flat
//! whatever the document's size. Nothing here changes the store.

use exchange_core::{
    blob::{BlobStore, CHUNK_SIZE},
    bundle::{bundle_format_for, encode_bundle, part_frame},
    document::{PartInfo, SignedDoc, SignedEvidence},
    error::{ErrorCode, ServiceError},
    ids::DocumentId,
};
use exchange_proto::v1 as pb;
use tokio::{
    io::AsyncReadExt,
    sync::mpsc::{self, Sender},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::info;

use crate::{
    Node,
    content::blob_error,
    store::{self, InboxRecord, SentRecord},
};

type Chunk = Result<pb::GetEvidenceResponse, Status>;

/// The bundle of document `id` as a stream of file bytes, or why there is none. Every check that
/// can fail before the first byte (unknown document, not accepted yet, content missing) does, so
/// a caller never receives half a bundle for those.
pub(crate) async fn get(
    node: &Node,
    id: DocumentId,
    with_content: bool,
) -> Result<ReceiverStream<Chunk>, ServiceError> {
    let (bundle, parts) = assemble(node, id).await?;
    let parts = if with_content { parts } else { Vec::new() };
    for p in &parts {
        if !crate::content::has(&node.store, &node.blobs, id, &p.sha256).await {
            return Err(ServiceError::new(
                ErrorCode::FailedPrecondition,
                format!("content {} of {id} is not on this node's disk", p.name),
            ));
        }
    }
    info!(doc_id = %id, evidence = bundle.evidence.len(), with_content, "writing an evidence bundle");
    let (tx, rx) = mpsc::channel(4);
    let (store, blobs) = (node.store.clone(), node.blobs.clone());
    tokio::spawn(async move {
        let mut out = Chunker {
            tx,
            buf: Vec::with_capacity(CHUNK_SIZE),
        };
        if let Err(e) = stream(&mut out, &store, &blobs, id, &bundle, &parts).await {
            let _ = out.tx.send(Err(e.into())).await; // the caller may be gone already
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// The bundle without content, and the manifest (for content to follow).
async fn assemble(
    node: &Node,
    id: DocumentId,
) -> Result<(pb::EvidenceBundle, Vec<PartInfo>), ServiceError> {
    if let Some(rec) = store::sent(&node.store, id).await? {
        return from_sent(id, rec);
    }
    if let Some(rec) = store::received(&node.store, id).await? {
        return from_received(id, rec);
    }
    Err(ServiceError::not_found(format!(
        "no document {id} was sent or received by this department"
    )))
}

fn stored(id: DocumentId, what: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::new(
        ErrorCode::Internal,
        format!("stored {what} of {id} is unreadable: {e}"),
    )
}

/// A sent document: the acceptance, then each recipient's evidence (header order, then those
/// added later), each group in the order of the steps (an addition first), with repeats (a
/// redelivered receipt) left out; then our recall, if any.
fn from_sent(
    id: DocumentId,
    rec: SentRecord,
) -> Result<(pb::EvidenceBundle, Vec<PartInfo>), ServiceError> {
    let doc = rec.doc;
    if let (None, Some(refusal)) = (&rec.acceptance, rec.refusal) {
        // Refused at submission: the document and the hub's signed refusal are the whole story.
        return Ok((bundle(&doc, refusal, Vec::new()), doc.header.parts));
    }
    let Some(acceptance) = rec.acceptance else {
        let why = if rec.refused.is_empty() {
            "the hub has not accepted it yet; try again once `status` shows it accepted".to_owned()
        } else {
            format!("the hub refused it ({})", rec.refused)
        };
        return Err(ServiceError::precondition(format!(
            "no evidence to bundle for {id}: {why}"
        )));
    };
    // Each linked exchange's hub that took custody (RELAYED), in the order they came.
    let mut evidence = rec.relays;
    for r in rec.recipients {
        let mut group: Vec<(u8, i64, pb::SignedEvidence)> = Vec::new();
        for wire in r.evidence {
            if group.iter().any(|(_, _, w)| *w == wire) {
                continue;
            }
            let ev = SignedEvidence::decode(wire.clone()).map_err(|e| stored(id, "evidence", e))?;
            group.push((ev.evidence.kind.code(), ev.evidence.at_ms, wire));
        }
        group.sort_by_key(|(kind, at, _)| (*kind, *at));
        // A recipient added after sending (补发): our signed addition comes first.
        evidence.extend(r.added);
        evidence.extend(group.into_iter().map(|(_, _, w)| w));
    }
    // Our recall (撤回), if any, after every recipient's steps.
    evidence.extend(rec.recall);
    Ok((bundle(&doc, acceptance, evidence), doc.header.parts))
}

/// A received document: the acceptance it came with, the sender's addition of this department
/// (补发) if any, this department's own receipt and its clerk's confirmation or rejection, then
/// the sender's recall (撤回) and what it did here, if any.
fn from_received(
    id: DocumentId,
    rec: InboxRecord,
) -> Result<(pb::EvidenceBundle, Vec<PartInfo>), ServiceError> {
    let doc = rec.doc;
    let acceptance = rec
        .acceptance
        .ok_or_else(|| stored(id, "acceptance", "missing"))?;
    let evidence = [
        rec.addition,
        rec.delivery_receipt,
        rec.handling,
        rec.recall,
        rec.recall_handling,
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok((bundle(&doc, acceptance, evidence), doc.header.parts))
}

/// The bundle of `doc`: format 2 for a SHA-256 document (as before), 3 for one whose header
/// names another digest (docs/evidence.md#formats).
fn bundle(
    doc: &SignedDoc,
    acceptance: pb::SignedEvidence,
    evidence: Vec<pb::SignedEvidence>,
) -> pb::EvidenceBundle {
    pb::EvidenceBundle {
        format: bundle_format_for(doc.header.digest),
        document: Some(doc.wire.clone()),
        acceptance: Some(acceptance),
        evidence,
        content: Vec::new(),
    }
}

/// Sends the bundle file: the encoded bundle, then each part framed and read from its blob.
/// Returns `Ok` also when the caller went away (there is no one left to tell).
async fn stream(
    out: &mut Chunker,
    store: &exchange_core::store::Store,
    blobs: &BlobStore,
    id: DocumentId,
    bundle: &pb::EvidenceBundle,
    parts: &[PartInfo],
) -> Result<(), ServiceError> {
    if !out.put(&encode_bundle(bundle)).await {
        return Ok(());
    }
    let mut buf = vec![0u8; CHUNK_SIZE];
    for (i, p) in parts.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        if !out.put(&part_frame(index, p.size)).await {
            return Ok(());
        }
        let file = crate::content::open(store, blobs, id, &p.sha256, 0)
            .await
            .map_err(blob_error)?;
        let mut file = file.take(p.size);
        let mut sent = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| blob_error(e.into()))?;
            if n == 0 {
                break;
            }
            sent += n as u64;
            if !out.put(&buf[..n]).await {
                return Ok(());
            }
        }
        if sent != p.size {
            // The frame promised `size` bytes: end the stream rather than write a broken file.
            return Err(ServiceError::new(
                ErrorCode::Internal,
                format!(
                    "content {} on disk is {sent} bytes, the manifest says {}",
                    p.name, p.size
                ),
            ));
        }
    }
    out.flush().await;
    Ok(())
}

/// Gathers bytes into messages of [`CHUNK_SIZE`].
struct Chunker {
    tx: Sender<Chunk>,
    buf: Vec<u8>,
}

impl Chunker {
    /// Appends `data`, sending every full chunk; `false` once the caller has gone.
    async fn put(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let n = (CHUNK_SIZE - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == CHUNK_SIZE && !self.flush().await {
                return false;
            }
        }
        true
    }

    /// Sends what is gathered; `false` once the caller has gone.
    async fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_SIZE));
        let msg = pb::GetEvidenceResponse { chunk };
        self.tx.send(Ok(msg)).await.is_ok()
    }
}
