//! Small documents' content inside the store (hub and node alike): at most
//! `document::limits::INLINE_BYTES` per document, keyed by SHA-256 and written in the same commit
//! as the document that carries it, so it needs no blob file and no fsync of its own. Larger
//! content lives in the blob store (`crate::blob`).

use redb::{ReadTransaction, TableDefinition, WriteTransaction};

use super::{Store, StoreError};
use crate::signing::Digest;

/// SHA-256 → content.
pub const CONTENT: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("content");

/// Stores content in `txn` (content-addressed: storing it again changes nothing).
pub fn put(txn: &WriteTransaction, digest: &Digest, data: &[u8]) -> Result<(), StoreError> {
    txn.open_table(CONTENT)?.insert(digest.0.as_slice(), data)?;
    Ok(())
}

/// The content stored under `digest` in `txn`, if any.
pub fn get_in(txn: &ReadTransaction, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
    match txn.open_table(CONTENT) {
        Ok(t) => Ok(t.get(digest.0.as_slice())?.map(|v| v.value().to_vec())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The content stored under `digest`, if any (a point read on the calling thread).
pub async fn get(store: &Store, digest: Digest) -> Result<Option<Vec<u8>>, StoreError> {
    store.lookup(move |txn| get_in(txn, &digest)).await
}
