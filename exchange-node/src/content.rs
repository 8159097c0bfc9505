//! Where a department's document content lives: the parts of a small document (at most
//! `limits::INLINE_BYTES` in all) in the node's database, written in the same commit as the
//! document itself (no file, no extra fsync); larger parts in the blob store. Readers go
//! through [`open`] and never need to know which.

use exchange_core::{
    blob::{BlobError, BlobStore},
    error::{ErrorCode, ServiceError},
    ids::DocumentId,
    signing::Digest,
    store::{Store, StoreError},
};
use tokio::io::AsyncRead;

pub(crate) use exchange_core::store::content::{get, put};

/// A part's bytes, from wherever they are.
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// Whether the whole content of `doc`'s part `digest` is on this node.
pub(crate) async fn has(
    store: &Store,
    blobs: &BlobStore,
    doc: DocumentId,
    digest: &Digest,
) -> bool {
    matches!(get(store, doc, *digest).await, Ok(Some(_))) || blobs.contains(digest).await
}

/// Opens the content of `doc`'s part `digest` at `offset`.
pub(crate) async fn open(
    store: &Store,
    blobs: &BlobStore,
    doc: DocumentId,
    digest: &Digest,
    offset: u64,
) -> Result<Reader, BlobError> {
    match get(store, doc, *digest).await {
        Ok(Some(data)) => {
            let from = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            Ok(Box::new(std::io::Cursor::new(
                data.get(from..).unwrap_or_default().to_vec(),
            )))
        }
        Ok(None) => Ok(Box::new(blobs.open_read(digest, offset).await?)),
        Err(e @ StoreError::Decode { .. }) => Err(BlobError::Unreadable {
            digest: *digest,
            reason: e.to_string(),
        }),
        Err(e) => Err(BlobError::Io(std::io::Error::other(e.to_string()))),
    }
}

/// A blob store failure as the API and the hub link report it: a full disk is
/// RESOURCE_EXHAUSTED and stored content that fails its integrity check INTERNAL (the operator
/// must act), anything else UNAVAILABLE (worth a retry).
pub(crate) fn blob_error(e: BlobError) -> ServiceError {
    if e.is_disk_full() {
        ServiceError::new(ErrorCode::ResourceExhausted, format!("node disk full: {e}"))
    } else if e.is_damage() {
        // Stored content altered on disk: refused, never passed on; it does not heal by
        // retrying.
        ServiceError::new(ErrorCode::DataLoss, e.to_string())
    } else if matches!(e, BlobError::Encrypted(_)) {
        // Encrypted content and no key configured: the operator must act.
        ServiceError::new(ErrorCode::Internal, e.to_string())
    } else {
        ServiceError::new(ErrorCode::Unavailable, e.to_string())
    }
}
