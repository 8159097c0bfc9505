//! Content blobs, stored as files named by their SHA-256: once per hop however many recipients
//! a document has, verified before they count as present, and resumable.
//!
//! Layout under the blob root: `sha256/<hex>` complete blobs; `partial/<hex>` an upload or
//! download in progress (its length is where to resume); `staging/<random>` content whose digest
//! is not known yet (a department system's submission). A blob is moved into `sha256/` only after
//! its bytes are fsynced and its digest checked, and the directory is fsynced after the rename,
//! so a blob that is present is durable.
//!
//! The filesystem is synchronous: each operation (open and resume, a write, finish = write the
//! rest + fsync + rename + fsync the directory) runs as one `spawn_blocking` job with `std::fs`,
//! rather than a `tokio::fs` call (a hand-off to the blocking pool and back) per system call.

use std::{
    collections::HashSet,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use ring::digest::{Context as Hasher, SHA256};
use std::{
    fs::OpenOptions,
    io::{Read, Seek, Write},
};
use tokio::{fs::File, task::JoinHandle};

use crate::signing::Digest;

/// Size of the chunks content moves in: large enough to amortise per-message cost, small enough
/// to keep memory flat whatever the document's size.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// A blob operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The filesystem failed (a full disk shows here).
    #[error("blob storage: {0}")]
    Io(io::Error),
    /// The bytes do not hash to the expected digest or size.
    #[error(
        "content does not match its digest {expected}: got {actual_size} bytes hashing to {actual}"
    )]
    Mismatch {
        /// The digest that was promised.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
        /// How many bytes arrived.
        actual_size: u64,
    },
    /// More bytes than the declared size, or a resume at the wrong offset.
    #[error("{0}")]
    Protocol(String),
    /// Another transfer of the same blob is in progress here; try again shortly.
    #[error("content {0} is being received by another transfer")]
    Busy(Digest),
}

impl BlobError {
    /// Whether the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, BlobError::Io(e) if e.kind() == io::ErrorKind::StorageFull)
    }
}

/// The blob directory of a hub or node.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    /// Blobs being received right now: one writer per partial file.
    active: Arc<Mutex<HashSet<Digest>>>,
}

/// Releases a blob's writer slot when the writer goes.
#[derive(Debug)]
struct Slot {
    active: Arc<Mutex<HashSet<Digest>>>,
    digest: Digest,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.digest);
    }
}

impl BlobStore {
    /// Opens (creating) the blob directories under `root`.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        for sub in ["sha256", "partial", "staging"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        // Staged content without a committed document is garbage after a restart.
        for entry in std::fs::read_dir(root.join("staging"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(BlobStore {
            root: root.to_owned(),
            active: Arc::default(),
        })
    }

    fn complete_path(&self, d: &Digest) -> PathBuf {
        self.root.join("sha256").join(d.to_hex())
    }

    fn partial_path(&self, d: &Digest) -> PathBuf {
        self.root.join("partial").join(d.to_hex())
    }

    /// Whether the blob is complete here.
    pub async fn contains(&self, d: &Digest) -> bool {
        tokio::fs::metadata(self.complete_path(d)).await.is_ok()
    }

    /// How many bytes of `d` are held: `(bytes, complete)`.
    pub async fn progress(&self, d: &Digest) -> (u64, bool) {
        let (complete, partial) = (self.complete_path(d), self.partial_path(d));
        blocking(move || {
            if let Ok(m) = std::fs::metadata(complete) {
                return Ok((m.len(), true));
            }
            Ok((std::fs::metadata(partial).map_or(0, |m| m.len()), false))
        })
        .await
        .unwrap_or((0, false))
    }

    /// Opens a complete blob for reading from `offset`.
    pub async fn open_read(&self, d: &Digest, offset: u64) -> Result<File, BlobError> {
        let path = self.complete_path(d);
        let f = blocking(move || {
            let mut f = std::fs::File::open(path)?;
            f.seek(io::SeekFrom::Start(offset))?;
            Ok(f)
        })
        .await?;
        Ok(File::from_std(f))
    }

    /// Continues (or starts) receiving blob `d` of `size` bytes at `offset`, which must not be
    /// beyond what is held. Bytes already held are re-hashed, not re-sent.
    pub async fn resume(&self, d: Digest, size: u64, offset: u64) -> Result<BlobWriter, BlobError> {
        if !self
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(d)
        {
            return Err(BlobError::Busy(d));
        }
        let slot = Slot {
            active: Arc::clone(&self.active),
            digest: d,
        };
        let path = self.partial_path(&d);
        // The slot goes into the job: if this future is dropped, it is released only once
        // the job has ended.
        let (open, hasher) = {
            let path = path.clone();
            blocking(move || {
                let (file, hasher) = reopen_partial(&path, size, offset)?;
                let _slot = Some(slot);
                Ok((Open { file, _slot }, hasher))
            })
            .await?
        };
        Ok(BlobWriter {
            store: self.clone(),
            file: FileState::Idle(open),
            pending: Vec::new(),
            path,
            hasher,
            written: offset,
            expect: Some((d, size)),
        })
    }

    /// Receives content whose digest is not known yet; [`BlobWriter::finish`] reports it.
    pub async fn stage(&self) -> Result<BlobWriter, BlobError> {
        let path = self
            .root
            .join("staging")
            .join(uuid::Uuid::now_v7().to_string());
        let file = {
            let path = path.clone();
            blocking(move || OpenOptions::new().create_new(true).write(true).open(path)).await?
        };
        Ok(BlobWriter {
            store: self.clone(),
            file: FileState::Idle(Open { file, _slot: None }),
            pending: Vec::new(),
            path,
            hasher: Hasher::new(&SHA256),
            written: 0,
            expect: None,
        })
    }
}

/// A buffer length for moving `bytes` bytes: whole, up to [`CHUNK_SIZE`]. (A 256 KiB buffer
/// for a 4 KiB document costs more in page faults than the copy itself.)
pub fn chunk_for(bytes: u64) -> usize {
    usize::try_from(bytes).map_or(CHUNK_SIZE, |n| n.min(CHUNK_SIZE))
}

/// Runs a filesystem job on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("blob task failed: {e}"))))
}

/// Opens (creating) a partial blob to continue at `offset`: cuts what lies beyond and hashes
/// the bytes before it, which are not sent again.
fn reopen_partial(
    path: &Path,
    size: u64,
    offset: u64,
) -> Result<(std::fs::File, Hasher), io::Error> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)?;
    let held = file.metadata()?.len();
    if offset > held || offset > size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            ResumeError(format!(
                "resume offset {offset} is beyond the {held} bytes held"
            )),
        ));
    }
    file.set_len(offset)?;
    let mut hasher = Hasher::new(&SHA256);
    // Sized to what is re-read: a fresh blob needs no buffer at all.
    let mut buf = vec![0u8; chunk_for(offset)];
    let mut left = offset;
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK_SIZE as u64)).unwrap_or(CHUNK_SIZE);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                ResumeError("partial blob shrank while resuming".to_owned()),
            ));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    file.seek(io::SeekFrom::Start(offset))?;
    Ok((file, hasher))
}

/// A resume the partial file does not allow: carried through `io::Error` out of the blocking
/// job, and turned back into [`BlobError::Protocol`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ResumeError(String);

impl From<io::Error> for BlobError {
    fn from(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<ResumeError>()) {
            return BlobError::Protocol(e.to_string());
        }
        BlobError::Io(e)
    }
}

/// An open blob file with the writer slot it holds: they travel together into a blocking
/// write, so that a writer dropped while a write is still running keeps the slot until that
/// write has ended (no second writer can start on the file meanwhile).
#[derive(Debug)]
struct Open {
    file: std::fs::File,
    _slot: Option<Slot>,
}

/// Where a writer's file is.
#[derive(Debug)]
enum FileState {
    /// Ready for the next write.
    Idle(Open),
    /// A write is running on the blocking pool; it hands back the file and its (emptied)
    /// buffer for reuse.
    Writing(JoinHandle<(Open, Vec<u8>, io::Result<()>)>),
    /// An earlier write failed; the writer is unusable.
    Failed,
}

/// A blob being received. Dropping it keeps the partial bytes written so far for a later
/// resume (up to [`CHUNK_SIZE`] received last may not be written yet: they are sent again).
///
/// Writes are batched and run behind: a chunk is copied into a buffer and, once the buffer
/// holds [`CHUNK_SIZE`], written on the blocking pool while the next chunks arrive (as tokio's
/// `File` does). A small blob is written only by [`BlobWriter::finish`], with the fsync and
/// the rename, in one blocking job.
pub struct BlobWriter {
    store: BlobStore,
    file: FileState,
    /// Received and hashed, not yet handed to a write.
    pending: Vec<u8>,
    path: PathBuf,
    hasher: Hasher,
    written: u64,
    expect: Option<(Digest, u64)>,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl BlobWriter {
    /// Bytes received so far (including any resumed prefix).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends a chunk.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        if let Some((_, size)) = self.expect
            && self.written + data.len() as u64 > size
        {
            return Err(BlobError::Protocol(format!(
                "more than the declared {size} bytes"
            )));
        }
        self.hasher.update(data);
        self.written += data.len() as u64;
        self.pending.extend_from_slice(data);
        if self.pending.len() >= CHUNK_SIZE {
            let open = self.idle().await?;
            let mut buf = std::mem::take(&mut self.pending);
            self.file = FileState::Writing(tokio::task::spawn_blocking(move || {
                let mut open = open;
                let r = open.file.write_all(&buf);
                buf.clear();
                (open, buf, r)
            }));
        }
        Ok(())
    }

    /// The file, once any write still running has ended (and succeeded).
    async fn idle(&mut self) -> Result<Open, BlobError> {
        match std::mem::replace(&mut self.file, FileState::Failed) {
            FileState::Idle(open) => Ok(open),
            FileState::Writing(job) => {
                let (open, buf, r) = job
                    .await
                    .map_err(|e| io::Error::other(format!("blob write task failed: {e}")))?;
                r?;
                if self.pending.is_empty() {
                    self.pending = buf; // reuse its allocation
                }
                Ok(open)
            }
            FileState::Failed => Err(BlobError::Io(io::Error::other(
                "an earlier write to this blob failed",
            ))),
        }
    }

    /// Verifies, fsyncs and installs the blob; returns its digest and size. On a mismatch the
    /// bytes are discarded.
    pub async fn finish(mut self) -> Result<(Digest, u64), BlobError> {
        let open = self.idle().await?;
        let actual =
            Digest::from_slice(self.hasher.finish().as_ref()).expect("BUG: SHA-256 is 32 bytes");
        let path = self.path.clone();
        if let Some((expected, size)) = self.expect
            && (expected != actual || size != self.written)
        {
            let _ = blocking(move || {
                drop(open);
                std::fs::remove_file(path)
            })
            .await;
            return Err(BlobError::Mismatch {
                expected,
                actual,
                actual_size: self.written,
            });
        }
        let rest = std::mem::take(&mut self.pending);
        let (dest, dir) = (
            self.store.complete_path(&actual),
            self.store.root.join("sha256"),
        );
        blocking(move || {
            let mut open = open;
            open.file.write_all(&rest)?;
            open.file.sync_all()?;
            std::fs::rename(&path, dest)?;
            std::fs::File::open(dir)?.sync_all()?;
            drop(open); // the slot goes once the blob is in place
            Ok(())
        })
        .await?;
        Ok((actual, self.written))
    }

    /// Discards what was received (a staged upload that was abandoned).
    pub async fn discard(mut self) {
        let open = self.idle().await;
        let path = self.path.clone();
        let _ = blocking(move || {
            drop(open);
            std::fs::remove_file(path)
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn staged_content_is_addressed_by_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut w = store.stage().await.unwrap();
        w.write(b"hello ").await.unwrap();
        w.write(b"world").await.unwrap();
        let (d, size) = w.finish().await.unwrap();
        assert_eq!(d, Digest::of(b"hello world"));
        assert_eq!(size, 11);
        assert_eq!(store.progress(&d).await, (11, true));
    }

    #[tokio::test]
    async fn an_interrupted_transfer_resumes_and_a_wrong_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let size = CHUNK_SIZE + 1000;
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let d = Digest::of(&data);
        let mut w = store.resume(d, size as u64, 0).await.unwrap();
        // A full buffer is written behind; the last few bytes wait in memory.
        w.write(&data[..CHUNK_SIZE + 100]).await.unwrap();
        w.write(&data[CHUNK_SIZE + 100..CHUNK_SIZE + 600])
            .await
            .unwrap();
        drop(w);
        // The write still running keeps the blob's writer slot until it has ended.
        for _ in 0..1000 {
            if !store.active.lock().unwrap().contains(&d) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let held = (CHUNK_SIZE + 100) as u64;
        assert_eq!(store.progress(&d).await, (held, false));
        let mut w = store.resume(d, size as u64, held).await.unwrap();
        w.write(&data[CHUNK_SIZE + 100..]).await.unwrap();
        w.finish().await.unwrap();
        assert!(store.contains(&d).await);
        let stored = std::fs::read(store.complete_path(&d)).unwrap();
        assert!(stored == data, "the resumed blob is byte-identical");
        assert!(matches!(
            store.resume(d, size as u64, size as u64 + 1).await,
            Err(BlobError::Protocol(_))
        ));

        let other = Digest::of(b"something else");
        let mut w = store.resume(other, 4, 0).await.unwrap();
        w.write(b"abcd").await.unwrap();
        assert!(matches!(w.finish().await, Err(BlobError::Mismatch { .. })));

        let d2 = Digest::of(b"xy");
        let first = store.resume(d2, 2, 0).await.unwrap();
        assert!(
            matches!(store.resume(d2, 2, 0).await, Err(BlobError::Busy(_))),
            "one writer per blob"
        );
        drop(first);
        assert!(
            store.resume(d2, 2, 0).await.is_ok(),
            "the slot is released with the writer"
        );
        assert!(!store.contains(&other).await);
    }
}
