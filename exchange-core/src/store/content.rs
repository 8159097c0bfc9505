//! Small documents' content inside the store (hub and node alike): at most
//! `document::limits::INLINE_BYTES` per document, keyed by SHA-256 and written in the same commit
//! as the document that carries it, so it needs no blob file and no fsync of its own. Larger
//! content lives in the blob store (`crate::blob`). Sealed with the store's data keys when
//! encryption is on ([`super::sealing`]).

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::{Store, StoreError, sealing::Sealer};
use crate::signing::Digest;

/// SHA-256 → content.
pub const CONTENT: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("content");

fn slot(digest: &Digest) -> Vec<u8> {
    super::sealing::slot("content", &digest.0)
}

/// Stores content in `txn` (content-addressed: storing it again changes nothing).
pub fn put(
    txn: &WriteTransaction,
    sealer: &Sealer,
    digest: &Digest,
    data: &[u8],
) -> Result<(), StoreError> {
    let mut table = txn.open_table(CONTENT)?;
    if table.get(digest.0.as_slice())?.is_some() {
        return Ok(()); // already here (sealed anew it would only differ by its salt)
    }
    let stored = sealer.seal(&slot(digest), data.to_vec())?;
    table.insert(digest.0.as_slice(), stored.as_slice())?;
    Ok(())
}

/// The content stored under `digest` in `txn`, if any.
pub fn get_in(
    txn: &ReadTransaction,
    sealer: &Sealer,
    digest: &Digest,
) -> Result<Option<Vec<u8>>, StoreError> {
    let table = match txn.open_table(CONTENT) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(v) = table.get(digest.0.as_slice())? else {
        return Ok(None);
    };
    let what = format!("content {digest}");
    let data = sealer.open(&what, &slot(digest), v.value())?.into_owned();
    Ok(Some(data))
}

/// The content stored under `digest`, if any (a point read on the calling thread).
pub async fn get(store: &Store, digest: Digest) -> Result<Option<Vec<u8>>, StoreError> {
    let sealer = store.sealer().clone();
    store.lookup(move |txn| get_in(txn, &sealer, &digest)).await
}
