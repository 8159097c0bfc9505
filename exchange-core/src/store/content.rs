//! Small documents' content inside the store (hub and node alike): at most
//! `document::limits::INLINE_BYTES` per document, keyed by SHA-256 and written in the same commit
//! as the document that carries it, so it needs no blob file and no fsync of its own. Larger
//! content lives in the blob store (`crate::blob`). Sealed with the store's data keys when
//! encryption is on ([`super::sealing`]).

use super::{
    Store, StoreError,
    kv::{ReadTables, Table, WriteTables},
    sealing::Sealer,
};
use crate::signing::Digest;

/// Digest → content.
pub const CONTENT: Table = Table::new("content");

fn slot(digest: &Digest) -> Vec<u8> {
    super::sealing::slot("content", &digest.0)
}

/// Stores content in `txn` (content-addressed: storing it again changes nothing).
pub fn put(
    txn: &dyn WriteTables,
    sealer: &Sealer,
    digest: &Digest,
    data: &[u8],
) -> Result<(), StoreError> {
    if txn.get(CONTENT, &digest.0)?.is_some() {
        return Ok(()); // already here (sealed anew it would only differ by its salt)
    }
    let stored = sealer.seal(&slot(digest), data.to_vec())?;
    txn.put(CONTENT, &digest.0, &stored)
}

/// The content stored under `digest` in `txn`, if any.
pub fn get_in(
    txn: &dyn ReadTables,
    sealer: &Sealer,
    digest: &Digest,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(v) = txn.get(CONTENT, &digest.0)? else {
        return Ok(None);
    };
    let what = format!("content {digest}");
    let data = sealer.open(&what, &slot(digest), &v)?.into_owned();
    Ok(Some(data))
}

/// The content stored under `digest`, if any (a point read on the calling thread).
pub async fn get(store: &Store, digest: Digest) -> Result<Option<Vec<u8>>, StoreError> {
    let sealer = store.sealer().clone();
    store.lookup(move |txn| get_in(txn, &sealer, &digest)).await
}
