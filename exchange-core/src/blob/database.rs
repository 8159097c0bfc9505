//! Content blobs in the store's database, for a hub on PostgreSQL: every hub on the database
//! serves content a node uploaded to any of them, and an upload cut at one resumes at another.
//! The same code runs on any [`Store`] (the unit tests use redb).
//!
//! # Tables
//! ```text
//! blobs        (alg, digest)          -> record: state, size, bytes held, chunk size,
//!                                        transfer id, at-rest header (45 bytes, with keys)
//! blob_chunks  (alg, digest) | index  -> chunk `index`: GCM ciphertext and tag (with keys),
//!                                        or the plaintext
//! ```
//! Keys are [`kv::Key`] tuples (`alg` is the digest algorithm's name, `sha256` or `sm3`), the chunk
//! index a big-endian u64 after them, so a blob's chunks scan in order.
//!
//! # Encryption at rest
//! Exactly the file format's ([`crate::atrest`]): a blob gets its own key from a random salt in
//! its header, and chunk `i` (a row) is GCM-sealed under it with the header as AAD and a nonce
//! made of `i` and whether it is the last chunk. The header is kept in the record, and the
//! record is sealed as a value with its slot (table and key, which hold the digest) as AAD: a
//! header cannot be moved to another digest, nor a chunk to another blob (another key) or index
//! (another nonce), nor can the blob be cut short or extended (the last chunk is sealed as
//! last). The header and the rows in order *are* an encrypted blob file, byte for byte, which
//! is how a backup writes them out ([`export`]).
//!
//! A row holds [`DB_CHUNK_SIZE`] plaintext bytes (one network message's worth, [`CHUNK_SIZE`]):
//! a 1 GiB blob is 4,096 rows, each written and read on its own, so memory stays flat.
//!
//! # Durability and resume
//! Every full chunk is committed ([`Store::write`]) with the record's count of bytes held, in
//! one transaction; [`super::BlobStore::progress`] reports that count, so a transfer resumes,
//! at this hub or another, after the last committed chunk. On resume the chunks before the
//! offset are read back, decrypted and re-hashed; one that fails discards the partial (the
//! transfer starts over). The last chunk is committed with the record marked complete, only
//! after the digest of everything received has been checked, and [`super::BlobWriter::finish`]
//! returns after that commit. Each transfer carries a random id in the record: a chunk commit
//! checks it, so two hubs receiving the same content at once cannot interleave their chunks
//! (the second is told [`BlobError::Busy`], and its node asks again).

use std::{io, path::Path, sync::Arc};

use crate::{
    atrest::{AtRestError, BlobOpener, BlobSealer},
    signing::{Digest, Hasher},
    store::{
        Store, StoreError,
        kv::{self, KeyRange, KeyReader, ReadTables, Table},
    },
};

use super::{BlobError, BlobReader, BlobStore, BlobWriter, CHUNK_SIZE, Slot};

mod export;
mod reader;
mod record;
mod writer;

pub use export::export;
pub(super) use reader::DbReader;
use record::{BlobKey, Loaded, Record, load, seal};
pub(super) use writer::DbWriter;

/// Digest → the blob's record.
pub const BLOBS: Table = Table::new("blobs");
/// (digest, index) → one chunk of a blob.
pub const BLOB_CHUNKS: Table = Table::new("blob_chunks");
/// Both tables, for `migrate`.
pub const TABLES: [Table; 2] = [BLOBS, BLOB_CHUNKS];

/// Plaintext bytes per chunk row (the last chunk holds 0 to this many).
pub const DB_CHUNK_SIZE: u32 = CHUNK_SIZE as u32;

/// [`BlobStore::progress`] of a database store.
pub(super) async fn progress(blobs: &BlobStore, store: &Store, d: &Digest) -> (u64, bool) {
    let (keys, blob) = (blobs.keys.clone(), BlobKey::new(blobs.digest, *d));
    let found = store.read(move |txn| load(txn, keys.as_ref(), &blob)).await;
    match found {
        Ok(Loaded::Present(r)) if r.complete => (r.size, true),
        Ok(Loaded::Present(r)) => (r.held, false),
        // Damaged, or unreadable without keys: a new transfer replaces it.
        _ => (0, false),
    }
}

/// [`BlobStore::open_read`] of a database store.
pub(super) async fn open_read(
    blobs: &BlobStore,
    store: &Store,
    d: &Digest,
    offset: u64,
) -> Result<BlobReader, BlobError> {
    let (keys, blob) = (blobs.keys.clone(), BlobKey::new(blobs.digest, *d));
    let found = {
        let (keys, blob) = (keys.clone(), blob.clone());
        store
            .read(move |txn| load(txn, keys.as_ref(), &blob))
            .await?
    };
    let rec = match found {
        Loaded::Present(r) if r.complete => r,
        Loaded::Sealed => return Err(BlobError::Encrypted(*d)),
        _ => {
            return Err(BlobError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("content {d} is not stored"),
            )));
        }
    };
    if offset > rec.size {
        let e = AtRestError::OffsetBeyondEnd {
            offset,
            len: rec.size,
        };
        return Err(BlobError::Protocol(e.to_string()));
    }
    let opener = match (&keys, &rec.header) {
        (Some(k), Some(h)) => Some(Arc::new(
            BlobOpener::from_header(k, h).map_err(|e| BlobError::at_rest(*d, e))?,
        )),
        (None, Some(_)) => return Err(BlobError::Encrypted(*d)),
        (_, None) => None,
    };
    Ok(BlobReader::database(
        *d,
        DbReader::new(store.clone(), blob, &rec, opener, offset),
    ))
}

/// [`BlobStore::resume`] of a database store: a new transfer at offset 0, else the committed
/// chunks before `offset` re-hashed (see the module docs).
pub(super) async fn resume(
    blobs: &BlobStore,
    store: &Store,
    slot: Slot,
    (d, size): (Digest, u64),
    offset: u64,
) -> Result<BlobWriter, BlobError> {
    let hasher = Hasher::new(blobs.digest).map_err(BlobError::Digest)?;
    let (keys, blob) = (blobs.keys.clone(), BlobKey::new(blobs.digest, d));
    let slot = Arc::new(slot);
    if offset == 0 {
        let (header, sealer) = match &keys {
            Some(k) => {
                let (h, s) = BlobSealer::with_chunk_size(k, DB_CHUNK_SIZE)
                    .map_err(|e| BlobError::Store(StoreError::Seal(e)))?;
                (Some(h), Some(Arc::new(s)))
            }
            None => (None, None),
        };
        let rec = Record {
            complete: false,
            size,
            held: 0,
            chunk_size: DB_CHUNK_SIZE,
            transfer: uuid::Uuid::now_v7().into_bytes(),
            header,
        };
        let started = rec.clone();
        let (k, b) = (keys.clone(), blob.clone());
        store
            .write(move |txn| {
                if let Ok(Loaded::Present(r)) = load(txn, k.as_ref(), &b)
                    && r.complete
                {
                    return Err(BlobError::Busy(b.digest)); // finished meanwhile elsewhere
                }
                txn.put(BLOBS, &b.key, &seal(k.as_ref(), &b, &started)?)?;
                Ok(())
            })
            .await?;
        let w = DbWriter::new(store.clone(), (keys, blob, rec), sealer, hasher, slot);
        return Ok(BlobWriter::database(w));
    }
    let found = {
        let (k, b) = (keys.clone(), blob.clone());
        store.read(move |txn| load(txn, k.as_ref(), &b)).await?
    };
    let rec = match found {
        Loaded::Present(r) if !r.complete && r.size == size && offset <= r.held => r,
        Loaded::Present(r) => {
            let held = if r.complete { 0 } else { r.held };
            return Err(BlobError::Protocol(format!(
                "resume offset {offset} is beyond the {held} bytes held"
            )));
        }
        _ => {
            return Err(BlobError::Protocol(format!(
                "resume offset {offset} is beyond the 0 bytes held"
            )));
        }
    };
    let (sealer, opener) = match (&keys, &rec.header) {
        (Some(k), Some(h)) => {
            let at_rest = |e| BlobError::at_rest(d, e);
            let sealer = BlobSealer::resume(k, h).map_err(at_rest)?;
            let opener = BlobOpener::from_header(k, h).map_err(at_rest)?;
            (Some(Arc::new(sealer)), Some(opener))
        }
        (None, None) => (None, None),
        _ => return Err(BlobError::Encrypted(d)),
    };
    let reread = {
        let (b, r) = (blob.clone(), rec.clone());
        store
            .read(move |txn| {
                Ok::<_, BlobError>(rehash(txn, &b, &r, opener.as_ref(), hasher, offset))
            })
            .await?
    };
    match reread {
        Ok((hasher, carry)) => {
            let w = DbWriter::new(store.clone(), (keys, blob, rec), sealer, hasher, slot)
                .resumed_at(offset, carry);
            Ok(BlobWriter::database(w))
        }
        Err(reason) => {
            // The partial cannot be trusted: it goes, and the transfer starts over.
            let transfer = rec.transfer;
            let _ = store
                .write(move |txn| writer::forget(txn, keys.as_ref(), &blob, transfer, 0))
                .await;
            Err(BlobError::Protocol(format!(
                "partial content {d} is damaged ({reason}): discarded, the transfer starts over"
            )))
        }
    }
}

/// Reads the committed chunks before `offset` back, a few rows at a time, and hashes their
/// plaintext; returns the hasher and the plaintext of the chunk `offset` is inside (up to
/// `offset`), which the writer seals again with what follows. `Err`: why the partial cannot be
/// trusted.
fn rehash(
    txn: &dyn ReadTables,
    blob: &BlobKey,
    rec: &Record,
    opener: Option<&BlobOpener>,
    mut hasher: Hasher,
    offset: u64,
) -> Result<(Hasher, Vec<u8>), String> {
    let cs = u64::from(rec.chunk_size);
    let (whole, tail) = (offset / cs, offset % cs);
    let need = whole + u64::from(tail > 0);
    let (mut seen, mut carry, mut failed) = (0u64, Vec::new(), None);
    let range = KeyRange::between(blob.chunk(0), blob.chunk(need));
    let visited = kv::visit(txn, BLOB_CHUNKS, range, 4, &mut |(k, v)| {
        let index = seen;
        let plain = if k != blob.chunk(index) {
            Err(format!("chunk {index} is missing"))
        } else if let Some(o) = opener {
            o.open_chunk(index, false, &v).map_err(|e| e.to_string())
        } else {
            Ok(v)
        };
        let checked = plain.and_then(|p| {
            if p.len() as u64 == cs {
                Ok(p)
            } else {
                Err(format!("chunk {index} has the wrong length"))
            }
        });
        let plain = match checked {
            Ok(p) => p,
            Err(e) => {
                failed = Some(e);
                return Ok(false);
            }
        };
        if index < whole {
            hasher
                .update(&plain)
                .map_err(|e| StoreError::decode("content", e))?;
        } else {
            carry = plain;
            carry.truncate(tail as usize); // < chunk size, a u32
            hasher
                .update(&carry)
                .map_err(|e| StoreError::decode("content", e))?;
        }
        seen += 1;
        Ok(true)
    });
    match (visited, failed) {
        (Err(e), _) => Err(e.to_string()),
        (Ok(()), Some(reason)) => Err(reason),
        (Ok(()), None) if seen != need => Err(format!("chunk {seen} is missing")),
        (Ok(()), None) => Ok((hasher, carry)),
    }
}

/// The file name a blob of `alg` (by name) and `digest` has in a blob directory (see
/// [`super::BlobStore`]): the hex alone for SHA-256, else prefixed by the algorithm.
fn file_name(alg: &str, digest: &[u8]) -> String {
    match alg {
        "sha256" => hex::encode(digest),
        other => format!("{other}-{}", hex::encode(digest)),
    }
}

/// The (algorithm name, digest) of a `blobs` key.
fn parse_key(raw: &[u8]) -> Result<(String, Vec<u8>), StoreError> {
    let mut r = KeyReader::new(raw);
    let (alg, digest) = (r.str()?, r.bytes()?);
    r.end()?;
    Ok((alg, digest))
}

/// Where a backup writes complete blobs: `sha256/` (plaintext) or `sealed/` (at rest).
fn export_dir(root: &Path, rec: &Record) -> std::path::PathBuf {
    let f = if rec.header.is_some() {
        super::Format::Sealed
    } else {
        super::Format::Plain
    };
    root.join(f.complete_dir())
}

#[cfg(test)]
mod tests;
