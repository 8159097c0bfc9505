//! [`DbWriter`]: receiving one blob into the database, a chunk row per commit. A full chunk is
//! sealed on the blocking pool and committed while the next one arrives (one commit in flight
//! at a time); the last chunk is committed with the record marked complete, after the digest
//! check.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::{
    atrest::{BlobSealer, DataKeys},
    signing::{Digest, Hasher},
    store::{Store, kv::WriteTables},
};

use super::{BLOB_CHUNKS, BLOBS, BlobError, BlobKey, Loaded, Record, Slot, load, seal};

/// A blob being received into the database.
pub(crate) struct DbWriter {
    store: Store,
    keys: Option<DataKeys>,
    blob: BlobKey,
    /// The record as this transfer started or resumed it (its transfer id, size, chunk size).
    rec: Record,
    /// Seals chunks under the blob's key (with keys).
    sealer: Option<Arc<BlobSealer>>,
    /// The index of the chunk `pending` fills.
    next: u64,
    /// Plaintext of chunk `next` received so far (less than a chunk).
    pending: Vec<u8>,
    /// Digest of the plaintext received (and, after a resume, re-read) so far.
    hasher: Hasher,
    written: u64,
    /// The commit of the previous chunk, if still running.
    inflight: Option<JoinHandle<Result<(), BlobError>>>,
    /// A commit failed: the writer is unusable.
    failed: bool,
    /// The writer slot, held by every commit in flight too.
    slot: Arc<Slot>,
}

impl std::fmt::Debug for DbWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbWriter")
            .field("digest", &self.blob.digest)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl DbWriter {
    pub(super) fn new(
        store: Store,
        (keys, blob, rec): (Option<DataKeys>, BlobKey, Record),
        sealer: Option<Arc<BlobSealer>>,
        hasher: Hasher,
        slot: Arc<Slot>,
    ) -> Self {
        DbWriter {
            store,
            keys,
            blob,
            rec,
            sealer,
            next: 0,
            pending: Vec::new(),
            hasher,
            written: 0,
            inflight: None,
            failed: false,
            slot,
        }
    }

    /// Continues at plaintext `offset`, with `carry` the bytes of its chunk before it.
    pub(super) fn resumed_at(mut self, offset: u64, carry: Vec<u8>) -> Self {
        self.next = offset / u64::from(self.rec.chunk_size);
        self.pending = carry;
        self.written = offset;
        self
    }

    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    fn chunk_size(&self) -> usize {
        self.rec.chunk_size as usize
    }

    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        let size = self.rec.size;
        if self.written + data.len() as u64 > size {
            return Err(BlobError::Protocol(format!(
                "more than the declared {size} bytes"
            )));
        }
        if self.failed {
            return Err(earlier());
        }
        self.hasher.update(data).map_err(BlobError::Digest)?;
        self.written += data.len() as u64;
        let mut rest = data;
        while !rest.is_empty() {
            let take = (self.chunk_size() - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == self.chunk_size() {
                self.settle().await?;
                let fresh = Vec::with_capacity(self.chunk_size());
                let full = std::mem::replace(&mut self.pending, fresh);
                self.inflight = Some(self.commit(self.next, false, full));
                self.next += 1;
            }
        }
        Ok(())
    }

    /// Waits for the commit in flight; its failure fails the writer.
    async fn settle(&mut self) -> Result<(), BlobError> {
        let Some(job) = self.inflight.take() else {
            return Ok(());
        };
        let r = job.await.unwrap_or_else(|e| {
            Err(BlobError::Io(std::io::Error::other(format!(
                "blob commit task failed: {e}"
            ))))
        });
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Seals chunk `index` (on the blocking pool) and commits it with the record; `last` also
    /// marks the blob complete. The job holds the writer slot until it has ended.
    fn commit(&self, index: u64, last: bool, plain: Vec<u8>) -> JoinHandle<Result<(), BlobError>> {
        let (store, keys, blob, rec) = (
            self.store.clone(),
            self.keys.clone(),
            self.blob.clone(),
            self.rec.clone(),
        );
        let (sealer, slot) = (self.sealer.clone(), Arc::clone(&self.slot));
        tokio::spawn(async move {
            let _slot = slot;
            let digest = blob.digest;
            let value = match sealer {
                Some(s) => tokio::task::spawn_blocking(move || s.seal_chunk(index, last, &plain))
                    .await
                    .map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))?
                    .map_err(|e| BlobError::at_rest(digest, e))?,
                None => plain,
            };
            let value = Arc::new(value);
            store
                .write(move |txn| put_chunk(txn, keys.as_ref(), (&blob, &rec), index, last, &value))
                .await
        })
    }

    pub(crate) async fn finish(mut self) -> Result<(Digest, u64), BlobError> {
        self.settle().await?;
        let fresh = Hasher::new(self.hasher.algorithm()).map_err(BlobError::Digest)?;
        let hasher = std::mem::replace(&mut self.hasher, fresh);
        let actual = hasher.finish().map_err(BlobError::Digest)?;
        let (expected, size) = (self.blob.digest, self.rec.size);
        if expected != actual || size != self.written {
            let actual_size = self.written;
            self.discard().await;
            return Err(BlobError::Mismatch {
                expected,
                actual,
                actual_size,
            });
        }
        let rest = std::mem::take(&mut self.pending);
        self.inflight = Some(self.commit(self.next, true, rest));
        self.settle().await?;
        Ok((actual, self.written))
    }

    pub(crate) async fn discard(mut self) {
        let _ = self.settle().await;
        let (keys, blob, transfer, upto) = (
            self.keys.clone(),
            self.blob.clone(),
            self.rec.transfer,
            self.next + 1,
        );
        let _ = self
            .store
            .write(move |txn| forget(txn, keys.as_ref(), &blob, transfer, upto))
            .await;
    }
}

fn earlier() -> BlobError {
    BlobError::Io(std::io::Error::other(
        "an earlier write to this blob failed",
    ))
}

/// The write job of one chunk: only while the record is still this transfer's and holds every
/// chunk before `index` (else another transfer took over: [`BlobError::Busy`]).
fn put_chunk(
    txn: &dyn WriteTables,
    keys: Option<&DataKeys>,
    (blob, ours): (&BlobKey, &Record),
    index: u64,
    last: bool,
    value: &[u8],
) -> Result<(), BlobError> {
    let mut rec = match load(txn, keys, blob) {
        Ok(Loaded::Present(r)) => r,
        _ => return Err(BlobError::Busy(blob.digest)),
    };
    if rec.complete {
        // The same content, completed meanwhile by another transfer (another hub): done.
        return if last {
            Ok(())
        } else {
            Err(BlobError::Busy(blob.digest))
        };
    }
    let cs = u64::from(rec.chunk_size);
    if rec.transfer != ours.transfer || rec.held < index * cs {
        return Err(BlobError::Busy(blob.digest));
    }
    txn.put(BLOB_CHUNKS, &blob.chunk(index), value)?;
    if last {
        rec.complete = true;
        rec.held = rec.size;
    } else {
        rec.held = rec.held.max((index + 1) * cs);
    }
    txn.put(BLOBS, &blob.key, &seal(keys, blob, &rec)?)?;
    Ok(())
}

/// Removes the partial of `transfer` (its record and chunks `0..upto`), unless another transfer
/// has taken the record over or completed it.
pub(super) fn forget(
    txn: &dyn WriteTables,
    keys: Option<&DataKeys>,
    blob: &BlobKey,
    transfer: [u8; 16],
    upto: u64,
) -> Result<(), BlobError> {
    let rec = match load(txn, keys, blob) {
        Ok(Loaded::Present(r)) if r.complete || r.transfer != transfer => return Ok(()),
        Ok(Loaded::Present(r)) => Some(r),
        _ => None,
    };
    let held = rec.map_or(0, |r| r.held.div_ceil(u64::from(r.chunk_size)));
    for index in 0..upto.max(held) {
        txn.delete(BLOB_CHUNKS, &blob.chunk(index))?;
    }
    if txn.get(BLOBS, &blob.key)?.is_some() {
        txn.delete(BLOBS, &blob.key)?;
    }
    Ok(())
}
