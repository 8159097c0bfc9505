//! Small documents' content inside the store (hub and node alike): at most
//! `document::limits::INLINE_BYTES` per document, written in the same commit as the document
//! that carries it, so it needs no blob file and no fsync of its own. Larger content lives in the
//! blob store (`crate::blob`). Sealed with the store's data keys when encryption is on
//! ([`super::sealing`]), bound to its digest.
//!
//! Keys: (document id, SHA-256) → content, held for each document that carries it. Document ids
//! are time-ordered (UUIDv7), so a commit's new content lands together at the end of the table;
//! keyed by the digest alone, each landed on a random leaf of a table far larger than redb's
//! cache, which made storing a 4 KiB document's content three times dearer than storing its
//! record (docs/benchmarks.md, "Content keyed by document"). Stores written before hold content
//! under its digest alone (32-byte keys, in the same table): still read, as the content of any
//! document that names it.

use super::{
    Store, StoreError,
    kv::{Key, ReadTables, Table, WriteTables},
    sealing::Sealer,
};
use crate::{ids::DocumentId, signing::Digest};

/// (document id, digest) → content; digest → content in stores written before.
pub const CONTENT: Table = Table::new("content");

fn slot(digest: &Digest) -> Vec<u8> {
    super::sealing::slot("content", &digest.0)
}

/// The key in [`CONTENT`] of `doc`'s part `digest`.
pub fn key(doc: DocumentId, digest: &Digest) -> Vec<u8> {
    Key::new().str(&doc.to_string()).bytes(&digest.0).finish()
}

/// Stores the content `data` of `doc`'s part `digest` in `txn` (storing it again leaves the
/// same content, sealed anew).
pub fn put(
    txn: &dyn WriteTables,
    sealer: &Sealer,
    doc: DocumentId,
    digest: &Digest,
    data: &[u8],
) -> Result<(), StoreError> {
    let stored = sealer.seal(&slot(digest), data.to_vec())?;
    txn.put(CONTENT, &key(doc, digest), &stored)
}

/// The content of `doc`'s part `digest` in `txn`, if the store holds it.
pub fn get_in(
    txn: &dyn ReadTables,
    sealer: &Sealer,
    doc: DocumentId,
    digest: &Digest,
) -> Result<Option<Vec<u8>>, StoreError> {
    let stored = match txn.get(CONTENT, &key(doc, digest))? {
        Some(v) => v,
        None => match txn.get(CONTENT, &digest.0)? {
            Some(v) => v, // written before content was kept per document
            None => return Ok(None),
        },
    };
    let what = format!("content {digest} of {doc}");
    let data = sealer.open(&what, &slot(digest), &stored)?.into_owned();
    Ok(Some(data))
}

/// The content of `doc`'s part `digest`, if the store holds it (a point read on the calling
/// thread).
pub async fn get(
    store: &Store,
    doc: DocumentId,
    digest: Digest,
) -> Result<Option<Vec<u8>>, StoreError> {
    let sealer = store.sealer().clone();
    store
        .lookup(move |txn| get_in(txn, &sealer, doc, &digest))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn content_is_kept_per_document_and_older_stores_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), "test", 1).unwrap();
        let (a, b, old) = (DocumentId::new(), DocumentId::new(), DocumentId::new());
        let digest = Digest([1; 32]);
        let legacy = Digest([2; 32]);
        store
            .write(move |txn| -> Result<(), StoreError> {
                put(txn, &Sealer::default(), a, &digest, b"new")?;
                // As a store written before kept it: under the digest alone.
                txn.put(CONTENT, &legacy.0, b"old")
            })
            .await
            .unwrap();
        assert_eq!(get(&store, a, digest).await.unwrap(), Some(b"new".to_vec()));
        assert_eq!(
            get(&store, b, digest).await.unwrap(),
            None,
            "another document's content is not this one's"
        );
        assert_eq!(
            get(&store, old, legacy).await.unwrap(),
            Some(b"old".to_vec()),
            "content stored by digest alone is found for any document naming it"
        );
    }
}
