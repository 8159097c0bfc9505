//! Where a department's document content lives: the parts of a small document (at most
//! `limits::INLINE_BYTES` in all) in the node's database, written in the same commit as the
//! document itself (no file, no extra fsync); larger parts in the blob store. Readers go
//! through [`open`] and never need to know which.

use exchange_core::{
    blob::{BlobError, BlobStore},
    signing::Digest,
    store::{Store, StoreError},
};
use redb::{TableDefinition, WriteTransaction};
use tokio::io::AsyncRead;

/// Content of small documents, by SHA-256.
pub(crate) const CONTENT: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("content");

/// A part's bytes, from wherever they are.
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// Stores small content in `txn` (content-addressed: storing it again changes nothing).
pub(crate) fn put(txn: &WriteTransaction, digest: &Digest, data: &[u8]) -> Result<(), StoreError> {
    txn.open_table(CONTENT)?.insert(digest.0.as_slice(), data)?;
    Ok(())
}

/// The small content stored under `digest`, if any.
pub(crate) async fn get(store: &Store, digest: Digest) -> Result<Option<Vec<u8>>, StoreError> {
    store
        .lookup(move |txn| match txn.open_table(CONTENT) {
            Ok(t) => Ok(t.get(digest.0.as_slice())?.map(|v| v.value().to_vec())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
}

/// Whether the whole content of `digest` is on this node.
pub(crate) async fn has(store: &Store, blobs: &BlobStore, digest: &Digest) -> bool {
    matches!(get(store, *digest).await, Ok(Some(_))) || blobs.contains(digest).await
}

/// Opens the content of `digest` at `offset`.
pub(crate) async fn open(
    store: &Store,
    blobs: &BlobStore,
    digest: &Digest,
    offset: u64,
) -> Result<Reader, BlobError> {
    match get(store, *digest).await {
        Ok(Some(data)) => {
            let from = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            Ok(Box::new(std::io::Cursor::new(
                data.get(from..).unwrap_or_default().to_vec(),
            )))
        }
        Ok(None) => Ok(Box::new(blobs.open_read(digest, offset).await?)),
        Err(e) => Err(BlobError::Io(std::io::Error::other(e.to_string()))),
    }
}
