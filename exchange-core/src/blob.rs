//! Content blobs, stored as files named by their SHA-256: once per hop however many recipients
//! a document has, verified before they count as present, and resumable.
//!
//! Layout under the blob root: `sha256/<hex>` complete blobs; `partial/<hex>` an upload or
//! download in progress (its length is where to resume); `staging/<random>` content whose digest
//! is not known yet (a department system's submission). A blob is moved into `sha256/` only after
//! its bytes are fsynced and its digest checked, and the directory is fsynced after the rename,
//! so a blob that is present is durable.

use std::{
    collections::HashSet,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use ring::digest::{Context as Hasher, SHA256};
use tokio::{
    fs::{self, File, OpenOptions},
    io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt},
};

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
    Io(#[from] io::Error),
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
        fs::metadata(self.complete_path(d)).await.is_ok()
    }

    /// How many bytes of `d` are held: `(bytes, complete)`.
    pub async fn progress(&self, d: &Digest) -> (u64, bool) {
        if let Ok(m) = fs::metadata(self.complete_path(d)).await {
            return (m.len(), true);
        }
        let partial = fs::metadata(self.partial_path(d))
            .await
            .map_or(0, |m| m.len());
        (partial, false)
    }

    /// Opens a complete blob for reading from `offset`.
    pub async fn open_read(&self, d: &Digest, offset: u64) -> Result<File, BlobError> {
        let mut f = File::open(self.complete_path(d)).await?;
        f.seek(io::SeekFrom::Start(offset)).await?;
        Ok(f)
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
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .await?;
        let held = file.metadata().await?.len();
        if offset > held || offset > size {
            return Err(BlobError::Protocol(format!(
                "resume offset {offset} is beyond the {held} bytes held"
            )));
        }
        file.set_len(offset).await?;
        let mut hasher = Hasher::new(&SHA256);
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut left = offset;
        while left > 0 {
            let want = usize::try_from(left.min(CHUNK_SIZE as u64)).unwrap_or(CHUNK_SIZE);
            let n = file.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(BlobError::Protocol(
                    "partial blob shrank while resuming".to_owned(),
                ));
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        file.seek(io::SeekFrom::Start(offset)).await?;
        Ok(BlobWriter {
            store: self.clone(),
            file,
            path,
            hasher,
            written: offset,
            expect: Some((d, size)),
            _slot: Some(slot),
        })
    }

    /// Receives content whose digest is not known yet; [`BlobWriter::finish`] reports it.
    pub async fn stage(&self) -> Result<BlobWriter, BlobError> {
        let path = self
            .root
            .join("staging")
            .join(uuid::Uuid::now_v7().to_string());
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .await?;
        Ok(BlobWriter {
            store: self.clone(),
            file,
            path,
            hasher: Hasher::new(&SHA256),
            written: 0,
            expect: None,
            _slot: None,
        })
    }

    async fn install(&self, from: &Path, d: &Digest) -> Result<(), BlobError> {
        fs::rename(from, self.complete_path(d)).await?;
        sync_dir(&self.root.join("sha256")).await?;
        Ok(())
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).await?.sync_all().await
}

/// A blob being received. Dropping it keeps the partial bytes for a later resume.
pub struct BlobWriter {
    store: BlobStore,
    file: File,
    path: PathBuf,
    hasher: Hasher,
    written: u64,
    expect: Option<(Digest, u64)>,
    _slot: Option<Slot>,
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
        self.file.write_all(data).await?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Verifies, fsyncs and installs the blob; returns its digest and size. On a mismatch the
    /// bytes are discarded.
    pub async fn finish(mut self) -> Result<(Digest, u64), BlobError> {
        self.file.flush().await?;
        let actual =
            Digest::from_slice(self.hasher.finish().as_ref()).expect("BUG: SHA-256 is 32 bytes");
        if let Some((expected, size)) = self.expect
            && (expected != actual || size != self.written)
        {
            let _ = fs::remove_file(&self.path).await;
            return Err(BlobError::Mismatch {
                expected,
                actual,
                actual_size: self.written,
            });
        }
        self.file.sync_all().await?;
        self.store.install(&self.path, &actual).await?;
        Ok((actual, self.written))
    }

    /// Discards what was received (a staged upload that was abandoned).
    pub async fn discard(self) {
        let _ = fs::remove_file(&self.path).await;
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
        let data = vec![7u8; 1000];
        let d = Digest::of(&data);
        let mut w = store.resume(d, 1000, 0).await.unwrap();
        w.write(&data[..600]).await.unwrap();
        drop(w);
        assert_eq!(store.progress(&d).await, (600, false));
        let mut w = store.resume(d, 1000, 600).await.unwrap();
        w.write(&data[600..]).await.unwrap();
        w.finish().await.unwrap();
        assert!(store.contains(&d).await);

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
