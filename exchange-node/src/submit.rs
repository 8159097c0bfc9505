//! `Node.Submit`: a department system hands over a document.
//!
//! The draft comes first, then each declared part's bytes in order. A small document's content
//! (at most `limits::INLINE_BYTES` in all) is kept in memory and committed with the document;
//! larger content is streamed into the blob store (never held whole in memory) and hashed on
//! the way. Then the header is built with the parts' digests, signed with the department's key,
//! and committed with its outbox entry. Only then is the id returned.

use exchange_core::{
    blob::BlobWriter,
    convert::{HEADER_FORMAT, validate_metadata, validate_part_spec},
    document::{Classification, SignedDoc, limits},
    error::{ErrorCode, ServiceError},
    ids::DocumentId,
    signing::Digest,
    time::now_ms,
};
use exchange_proto::v1::{self as pb, submit_document_request::Msg};
use tonic::Streaming;
use tracing::info;

use crate::{Node, content::blob_error, store};

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 200;
fn stream_err(e: tonic::Status) -> ServiceError {
    ServiceError::invalid(format!("stream: {}", e.message()))
}

/// Checks the draft against the limits and the directory, before any content is read.
fn check_draft(node: &Node, draft: &pb::DocumentDraft) -> Result<(), ServiceError> {
    if draft.idempotency_key.chars().count() > MAX_IDEMPOTENCY_KEY {
        return Err(ServiceError::invalid(format!(
            "idempotency_key: at most {MAX_IDEMPOTENCY_KEY} characters"
        )));
    }
    let meta = draft
        .metadata
        .as_ref()
        .ok_or_else(|| ServiceError::invalid("draft.metadata: required"))?;
    let recipients = validate_metadata(meta).map_err(|e| ServiceError::invalid(e.to_string()))?;
    // 机密 and 绝密 are refused by every hub (its `check_classification`): refused here, before
    // anything is signed, queued or uploaded. 秘密 is the hub's to allow (`allow_classified`).
    if pb::Classification::try_from(meta.classification)
        .is_ok_and(|c| Classification::from(c).never_travels())
    {
        return Err(ServiceError::denied(Classification::NEVER_TRAVELS));
    }
    if recipients.iter().any(|r| r.addr == node.me()) {
        return Err(ServiceError::invalid(
            "metadata.to_depts: a department cannot send to itself",
        ));
    }
    if let Some(dir) = node
        .directory
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
    {
        // Departments of linked exchanges are the hub's to check (it knows the links).
        let unknown: Vec<&str> = recipients
            .iter()
            .filter(|r| r.addr.exchange.is_none())
            .filter(|r| !dir.iter().any(|d| d.id == r.addr.dept.as_str()))
            .map(|r| r.addr.dept.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(ServiceError::invalid(format!(
                "metadata.to_depts: unknown department(s) {}",
                unknown.join(", ")
            )));
        }
    }
    if draft.parts.is_empty() || draft.parts.len() > limits::PARTS {
        return Err(ServiceError::invalid(format!(
            "draft.parts: {} parts; 1 to {} allowed",
            draft.parts.len(),
            limits::PARTS
        )));
    }
    for (i, p) in draft.parts.iter().enumerate() {
        validate_part_spec(&format!("draft.parts[{i}]"), p.role, &p.name, &p.media_type)
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
    }
    let total: u64 = draft
        .parts
        .iter()
        .map(|p| p.size)
        .fold(0, u64::saturating_add);
    let max = node.cfg.node.max_document_bytes;
    if total > max {
        return Err(ServiceError::new(
            ErrorCode::ResourceExhausted,
            format!(
                "draft.parts: {total} bytes of content in all, the limit is {max} (node.max_document_bytes)"
            ),
        ));
    }
    Ok(())
}

/// A forward (转发) must name a document this department received, and a reply (答复) one it
/// received or sent: the link is signed into the new document, so it must not point at
/// something the department never had.
async fn check_links(node: &Node, draft: &pb::DocumentDraft) -> Result<(), ServiceError> {
    let Some(meta) = draft.metadata.as_ref() else {
        return Ok(());
    };
    // The formats were checked by `validate_metadata`.
    if let Ok(id) = meta.forwarded_from.parse::<DocumentId>()
        && store::received(&node.store, id).await?.is_none()
    {
        return Err(ServiceError::invalid(format!(
            "metadata.forwarded_from: {id} is not a document this department received; \
             forward only what is in its inbox"
        )));
    }
    if let Ok(id) = meta.in_reply_to.parse::<DocumentId>()
        && store::received(&node.store, id).await?.is_none()
        && store::sent(&node.store, id).await?.is_none()
    {
        return Err(ServiceError::invalid(format!(
            "metadata.in_reply_to: {id} is not a document this department received or sent"
        )));
    }
    Ok(())
}

/// Where one part's bytes go while they arrive: memory for a small document (stored in the
/// database with it, see `crate::content`), a staging file in the blob store otherwise.
enum Sink {
    Memory(Vec<u8>),
    File(Box<BlobWriter>),
}

impl Sink {
    fn written(&self) -> u64 {
        match self {
            Sink::Memory(v) => v.len() as u64,
            Sink::File(w) => w.written(),
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), ServiceError> {
        match self {
            Sink::Memory(v) => {
                v.extend_from_slice(data);
                Ok(())
            }
            Sink::File(w) => w.write(data).await.map_err(blob_error),
        }
    }

    async fn discard(self) {
        if let Sink::File(w) = self {
            (*w).discard().await;
        }
    }
}

/// Receives every part's bytes; returns the manifest and, for a small document, the content
/// to store with it (a larger one's parts are in the blob store by then). Each chunk belongs to
/// one part; parts arrive in order, each exactly as long as declared.
async fn receive_parts(
    node: &Node,
    draft: &pb::DocumentDraft,
    stream: &mut Streaming<pb::SubmitDocumentRequest>,
) -> Result<(Vec<pb::Part>, Vec<(Digest, Vec<u8>)>), ServiceError> {
    let total: u64 = draft.parts.iter().map(|p| p.size).sum();
    let small = total <= exchange_core::document::limits::INLINE_BYTES;
    let mut parts = Vec::with_capacity(draft.parts.len());
    let mut inline = Vec::new();
    for (i, spec) in draft.parts.iter().enumerate() {
        let mut w = if small {
            Sink::Memory(Vec::with_capacity(usize::try_from(spec.size).unwrap_or(0)))
        } else {
            Sink::File(Box::new(node.blobs.stage().await.map_err(blob_error)?))
        };
        while w.written() < spec.size {
            let Some(chunk) = next_chunk(stream).await? else {
                let got = w.written();
                w.discard().await;
                return Err(ServiceError::invalid(format!(
                    "draft.parts[{i}].size: stream ended after {got} of {} bytes",
                    spec.size
                )));
            };
            let fits =
                chunk.part as usize == i && w.written() + chunk.data.len() as u64 <= spec.size;
            if !fits {
                let need = spec.size - w.written();
                w.discard().await;
                return Err(ServiceError::invalid(format!(
                    "chunk.part: got {} bytes for part {} while part {i} needs {need} more",
                    chunk.data.len(),
                    chunk.part,
                )));
            }
            if let Err(e) = w.write(&chunk.data).await {
                w.discard().await;
                return Err(e);
            }
        }
        let (digest, size): (Digest, u64) = match w {
            Sink::Memory(data) => {
                // The blob store's algorithm: the one the signing key's scheme uses (see
                // `submit`), as for a part received into a blob file.
                let d = Digest::with(node.blobs.digest_algorithm(), &data)
                    .map_err(|e| ServiceError::new(ErrorCode::Internal, e.to_string()))?;
                let size = data.len() as u64;
                inline.push((d, data));
                (d, size)
            }
            Sink::File(w) => (*w).finish().await.map_err(blob_error)?,
        };
        parts.push(pb::Part {
            role: spec.role,
            name: spec.name.clone(),
            media_type: spec.media_type.clone(),
            size,
            sha256: digest.0.to_vec(),
        });
    }
    if let Some(extra) = next_chunk(stream).await? {
        return Err(ServiceError::invalid(format!(
            "chunk.part: {} is beyond the declared parts",
            extra.part
        )));
    }
    Ok((parts, inline))
}

/// The next non-empty content chunk, or `None` at the end of the stream.
async fn next_chunk(
    stream: &mut Streaming<pb::SubmitDocumentRequest>,
) -> Result<Option<pb::PartChunk>, ServiceError> {
    loop {
        match stream.message().await.map_err(stream_err)? {
            None => return Ok(None),
            Some(pb::SubmitDocumentRequest {
                msg: Some(Msg::Chunk(c)),
            }) if c.data.is_empty() => continue,
            Some(pb::SubmitDocumentRequest {
                msg: Some(Msg::Chunk(c)),
            }) => return Ok(Some(c)),
            Some(_) => {
                return Err(ServiceError::invalid(
                    "chunk: expected content, got another draft",
                ));
            }
        }
    }
}

/// Handles one submission; returns the document id once it is durable in the outbox.
pub(crate) async fn submit(
    node: &Node,
    mut stream: Streaming<pb::SubmitDocumentRequest>,
) -> Result<DocumentId, ServiceError> {
    let draft = match stream.message().await.map_err(stream_err)? {
        Some(pb::SubmitDocumentRequest {
            msg: Some(Msg::Draft(d)),
        }) => d,
        _ => {
            return Err(ServiceError::invalid(
                "draft: the first message must be the draft",
            ));
        }
    };
    let key = (!draft.idempotency_key.is_empty()).then(|| draft.idempotency_key.clone());
    if let Some(k) = &key
        && let Some(id) = store::idempotent(&node.store, k.clone()).await?
    {
        return Ok(id); // a retry: the document was already taken
    }
    let mut draft = draft;
    crate::groups::resolve_draft(node, &mut draft)?;
    check_draft(node, &draft)?;
    check_links(node, &draft).await?;
    node.can_sign()?;
    // The signer decides the digest: every part and the header are hashed with its scheme's,
    // which the header names (empty for SHA-256: an international header is unchanged).
    let (alg, digest_algorithm) = SignedDoc::digest_algorithm_for(node.batch_signer.key());
    if node.blobs.digest_algorithm() != alg {
        return Err(ServiceError::new(
            ErrorCode::Internal,
            format!(
                "BUG: the blob store hashes with {}, the signing key with {alg}",
                node.blobs.digest_algorithm()
            ),
        ));
    }
    let (parts, inline) = receive_parts(node, &draft, &mut stream).await?;
    let now = now_ms();
    let header = pb::DocumentHeader {
        format: HEADER_FORMAT,
        id: DocumentId::new().to_string(),
        sender: node.cfg.node.id.to_string(),
        created_at_ms: now,
        metadata: draft.metadata,
        parts,
        digest_algorithm,
    };
    let doc = SignedDoc::seal_batched(&header, &node.batch_signer)
        .await
        .map_err(|e| ServiceError::invalid(e.to_string()))?;
    let (title_len, recipients) = (doc.header.title.len(), doc.header.recipients.len());
    let id = store::submit(&node.store, doc, key, inline, now).await?;
    info!(doc_id = %id, recipients, title_len, "submitted");
    node.outbox_wake.notify_one();
    Ok(id)
}
