//! The `blobs` record of a content blob in the database, its keys, and how it is sealed: as a
//! value in its slot (table and key, which hold the digest), so that the at-rest header inside it
//! cannot be moved to another digest.

use std::sync::Arc;

use crate::{
    atrest::{BLOB_HEADER_LEN, DataKeys},
    crypto::DigestAlgorithm,
    signing::Digest,
    store::{
        StoreError,
        kv::{Key, ReadTables},
        sealing::slot,
    },
};

use super::{BLOBS, BlobError};

/// Version byte of an encoded [`Record`].
const RECORD_V1: u8 = 1;

/// What the `blobs` table says of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// All chunks are in and the digest was checked.
    pub(super) complete: bool,
    /// Declared (and, once complete, actual) plaintext length.
    pub(super) size: u64,
    /// Plaintext bytes in committed chunks: where a resume can continue.
    pub(super) held: u64,
    /// Plaintext bytes per chunk.
    pub(super) chunk_size: u32,
    /// Which transfer wrote the chunks: a chunk commit of another is refused.
    pub(super) transfer: [u8; 16],
    /// The at-rest header (with keys): the blob's key and the chunks' AAD.
    pub(super) header: Option<[u8; BLOB_HEADER_LEN]>,
}

impl Record {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(40 + BLOB_HEADER_LEN);
        b.push(RECORD_V1);
        b.push(u8::from(self.complete));
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.held.to_be_bytes());
        b.extend_from_slice(&self.chunk_size.to_be_bytes());
        b.extend_from_slice(&self.transfer);
        match &self.header {
            Some(h) => {
                b.push(1);
                b.extend_from_slice(h);
            }
            None => b.push(0),
        }
        b
    }

    pub(super) fn decode(b: &[u8]) -> Option<Record> {
        let (&[RECORD_V1, complete], rest) = b.split_first_chunk::<2>()? else {
            return None;
        };
        let (size, rest) = rest.split_first_chunk::<8>()?;
        let (held, rest) = rest.split_first_chunk::<8>()?;
        let (chunk_size, rest) = rest.split_first_chunk::<4>()?;
        let (transfer, rest) = rest.split_first_chunk::<16>()?;
        let header = match rest.split_first()? {
            (0, []) => None,
            (1, h) => Some(<[u8; BLOB_HEADER_LEN]>::try_from(h).ok()?),
            _ => return None,
        };
        let chunk_size = u32::from_be_bytes(*chunk_size);
        (complete <= 1 && chunk_size > 0).then_some(Record {
            complete: complete == 1,
            size: u64::from_be_bytes(*size),
            held: u64::from_be_bytes(*held),
            chunk_size,
            transfer: *transfer,
            header,
        })
    }

    /// How many chunks the complete blob has: full ones, then the last (empty when the size
    /// is a multiple of the chunk size, as in the file format).
    pub(super) fn chunks(&self) -> u64 {
        self.size / u64::from(self.chunk_size) + 1
    }
}

/// Where one blob's rows are: its key in `blobs`, the prefix of its chunks' keys.
#[derive(Debug, Clone)]
pub(super) struct BlobKey {
    pub(super) digest: Digest,
    pub(super) key: Arc<Vec<u8>>,
}

impl BlobKey {
    pub(super) fn new(alg: DigestAlgorithm, digest: Digest) -> Self {
        let key = Key::new().str(alg.name()).bytes(&digest.0).finish();
        BlobKey {
            digest,
            key: Arc::new(key),
        }
    }

    pub(super) fn chunk(&self, index: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.key.len() + 8);
        k.extend_from_slice(&self.key);
        k.extend_from_slice(&index.to_be_bytes());
        k
    }

    pub(super) fn slot(&self) -> Vec<u8> {
        slot(BLOBS.name(), &self.key)
    }
}

/// A record as found.
pub(super) enum Loaded {
    /// No record: nothing held.
    Absent,
    /// The record.
    Present(Record),
    /// Sealed, and this store has no keys.
    Sealed,
}

/// Reads and opens the record of `blob`. A sealed record that does not authenticate (altered,
/// or moved from another digest) is [`BlobError::Corrupt`].
pub(super) fn load(
    txn: &dyn ReadTables,
    keys: Option<&DataKeys>,
    blob: &BlobKey,
) -> Result<Loaded, BlobError> {
    let Some(stored) = txn.get(BLOBS, &blob.key)? else {
        return Ok(Loaded::Absent);
    };
    let unreadable = |reason: &str| BlobError::Unreadable {
        digest: blob.digest,
        reason: format!("its record {reason}"),
    };
    let plain = if DataKeys::is_sealed(&stored) {
        let Some(keys) = keys else {
            return Ok(Loaded::Sealed);
        };
        keys.open(&blob.slot(), &stored)
            .map_err(|e| unreadable(&format!("does not open: {e}")))?
    } else {
        stored // written before encryption was turned on, as plaintext files are still read
    };
    Record::decode(&plain)
        .map(Loaded::Present)
        .ok_or_else(|| unreadable("is malformed"))
}

/// The record as stored: sealed in its slot when the store has keys.
pub(super) fn seal(
    keys: Option<&DataKeys>,
    blob: &BlobKey,
    rec: &Record,
) -> Result<Vec<u8>, BlobError> {
    match keys {
        Some(k) => k
            .seal(&blob.slot(), &rec.encode())
            .map_err(|e| BlobError::Store(StoreError::Seal(e))),
        None => Ok(rec.encode()),
    }
}
