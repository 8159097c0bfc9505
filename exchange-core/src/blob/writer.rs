//! [`BlobWriter`]: receiving one blob, batched writes behind the network, and the durable
//! install (fsync, digest check, rename, directory fsync) at [`BlobWriter::finish`].

use std::{
    io::{self, Write},
    path::PathBuf,
};

use tokio::task::JoinHandle;

use crate::{
    atrest::EncryptingWriter,
    signing::{Digest, Hasher},
};

use super::{BlobError, BlobStore, CHUNK_SIZE, Slot, blocking, database::DbWriter};

/// Where a blob file's bytes go: as they are, or through the at-rest encryption (which holds at
/// most one unsealed chunk of its own).
#[derive(Debug)]
pub(super) enum Sink {
    /// A plaintext file (a store without keys).
    Plain(std::fs::File),
    /// An encrypted blob file.
    Sealed(Box<EncryptingWriter<std::fs::File>>),
}

impl Sink {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(f) => f.write_all(data),
            Sink::Sealed(w) => w.write_all(data),
        }
    }

    /// Writes what is still buffered (an encrypted blob's last chunk) and returns the file.
    fn finish(self) -> io::Result<std::fs::File> {
        match self {
            Sink::Plain(f) => Ok(f),
            Sink::Sealed(w) => w.finish(),
        }
    }
}

/// An open blob file with the writer slot it holds: they travel together into a blocking
/// write, so that a writer dropped while a write is still running keeps the slot until that
/// write has ended (no second writer can start on the file meanwhile).
#[derive(Debug)]
pub(super) struct Open {
    pub(super) sink: Sink,
    pub(super) _slot: Option<Slot>,
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

/// A blob file being received. Dropping it keeps the partial bytes written so far for a later
/// resume (up to [`CHUNK_SIZE`] received last may not be written yet, and with encryption the
/// unsealed chunk after them: they are sent again).
///
/// Writes are batched and run behind: a chunk is copied into a buffer and, once the buffer
/// holds [`CHUNK_SIZE`], written on the blocking pool while the next chunks arrive (as tokio's
/// `File` does). A small blob is written only by [`BlobWriter::finish`], with the fsync and
/// the rename, in one blocking job.
pub(super) struct FileWriter {
    store: BlobStore,
    file: FileState,
    /// Received and hashed, not yet handed to a write.
    pending: Vec<u8>,
    path: PathBuf,
    /// The digest (the store's algorithm) of the plaintext received (and, after a resume,
    /// re-read) so far.
    hasher: Hasher,
    written: u64,
    expect: Option<(Digest, u64)>,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl FileWriter {
    fn new(
        store: BlobStore,
        open: Open,
        path: PathBuf,
        hasher: Hasher,
        written: u64,
        expect: Option<(Digest, u64)>,
    ) -> Self {
        FileWriter {
            store,
            file: FileState::Idle(open),
            pending: Vec::new(),
            path,
            hasher,
            written,
            expect,
        }
    }

    /// Bytes received so far (including any resumed prefix).
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    /// Appends a chunk.
    pub(super) async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        if let Some((_, size)) = self.expect
            && self.written + data.len() as u64 > size
        {
            return Err(BlobError::Protocol(format!(
                "more than the declared {size} bytes"
            )));
        }
        self.hasher.update(data).map_err(BlobError::Digest)?;
        self.written += data.len() as u64;
        self.pending.extend_from_slice(data);
        if self.pending.len() >= CHUNK_SIZE {
            let open = self.idle().await?;
            let mut buf = std::mem::take(&mut self.pending);
            self.file = FileState::Writing(tokio::task::spawn_blocking(move || {
                let mut open = open;
                let r = open.sink.write_all(&buf);
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
    pub(super) async fn finish(mut self) -> Result<(Digest, u64), BlobError> {
        let open = self.idle().await?;
        let actual = self.hasher.finish().map_err(BlobError::Digest)?;
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
        let format = self.store.format();
        let dest = self.store.complete_path(format, &actual);
        let dir = self.store.root().join(format.complete_dir());
        blocking(move || {
            let Open { mut sink, _slot } = open;
            sink.write_all(&rest)?;
            let file = sink.finish()?;
            file.sync_all()?;
            std::fs::rename(&path, dest)?;
            std::fs::File::open(dir)?.sync_all()?;
            drop((file, _slot)); // the slot goes once the blob is in place
            Ok(())
        })
        .await?;
        Ok((actual, self.written))
    }

    /// Discards what was received (a staged upload that was abandoned).
    pub(super) async fn discard(mut self) {
        let open = self.idle().await;
        let path = self.path.clone();
        let _ = blocking(move || {
            drop(open);
            std::fs::remove_file(path)
        })
        .await;
    }
}

/// A blob being received, into a file or into the database ([`super::database`]): bytes are
/// hashed as they arrive, and [`BlobWriter::finish`] checks the digest and returns only once the
/// blob is durably complete. Dropping it keeps what was written (committed) for a resume.
#[derive(Debug)]
pub struct BlobWriter(Kind);

#[derive(Debug)]
enum Kind {
    File(Box<FileWriter>),
    Database(Box<DbWriter>),
}

impl BlobWriter {
    pub(super) fn new(
        store: BlobStore,
        open: Open,
        path: PathBuf,
        hasher: Hasher,
        written: u64,
        expect: Option<(Digest, u64)>,
    ) -> Self {
        BlobWriter(Kind::File(Box::new(FileWriter::new(
            store, open, path, hasher, written, expect,
        ))))
    }

    pub(super) fn database(w: DbWriter) -> Self {
        BlobWriter(Kind::Database(Box::new(w)))
    }

    /// Bytes received so far (including any resumed prefix).
    pub fn written(&self) -> u64 {
        match &self.0 {
            Kind::File(w) => w.written(),
            Kind::Database(w) => w.written(),
        }
    }

    /// Appends a chunk.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        match &mut self.0 {
            Kind::File(w) => w.write(data).await,
            Kind::Database(w) => w.write(data).await,
        }
    }

    /// Verifies the digest and makes the blob durable and complete; returns its digest and
    /// size. On a mismatch the bytes are discarded.
    pub async fn finish(self) -> Result<(Digest, u64), BlobError> {
        match self.0 {
            Kind::File(w) => w.finish().await,
            Kind::Database(w) => w.finish().await,
        }
    }

    /// Discards what was received (a staged upload that was abandoned).
    pub async fn discard(self) {
        match self.0 {
            Kind::File(w) => w.discard().await,
            Kind::Database(w) => w.discard().await,
        }
    }
}
