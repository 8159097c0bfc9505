//! Content blobs, stored as files named by their digest: once per hop however many recipients
//! a document has, verified before they count as present, resumable, and encrypted at rest when
//! the store has data keys (issue 16).
//!
//! A hub on PostgreSQL keeps them in its database instead ([`database`]), in the same at-rest
//! format, so that every hub on the database serves them; [`BlobStore::for_store`] chooses. The
//! API is the same for both; what follows describes the files.
//!
//! # On-disk layout
//! Under the blob root (`<data dir>/blobs`), the directory a file is in says which format it
//! has; its bytes are never sniffed (plaintext content can start like an encrypted header):
//!
//! ```text
//! sha256/<hex>            plaintext   complete blobs of a store without keys, and blobs written
//!                                     in clear before encryption was turned on (still read)
//! partial/<hex>           plaintext   a transfer in progress without keys (its length is
//!                                     where it resumes)
//! staging/<uuid>          plaintext   content whose digest is not known yet (a department
//!                                     system's submission)
//! sealed/<hex>            encrypted   complete blobs of a store with keys
//! sealed-partial/<hex>    encrypted   a transfer in progress with keys (resumes after its last
//!                                     complete chunk)
//! sealed-staging/<uuid>   encrypted   staged content with keys
//! ```
//!
//! `<hex>` is the digest of the *plaintext* under the store's algorithm, the exchange's profile's
//! ([`BlobStore::with_digest`]): SHA-256 (the file name is the hex alone, as it always was), or
//! SM3 under the shangmi profile, where every file name says so: `sm3-<hex>` (the directories
//! keep their names; `sha256/` is "plaintext, complete"). The encrypted format is the at-rest core's
//! ([`crate::atrest`]: a 45-byte authenticated header, then chunks of 64 KiB of plaintext, each
//! GCM-sealed under a per-blob key with the store's suite — AES-256-GCM, or SM4-GCM under the
//! shangmi profile —, the last one marked as last). Its chunk size is
//! independent of [`CHUNK_SIZE`], the size content moves over the network in.
//!
//! With keys, new writes always go to the `sealed*` directories; a complete `sha256/` blob is
//! still found and read as plaintext (legacy), and leftover plaintext `partial/` files are
//! deleted at open (their transfers start over, encrypted). Without keys, a `sealed/` blob
//! counts as present but reading it fails with [`BlobError::Encrypted`].
//!
//! # Durability and resume
//! A blob is moved into `sha256/` or `sealed/` only after its bytes are fsynced and its digest
//! (over the plaintext) checked, and the directory is fsynced after the rename, so a blob that
//! is present is durable. A plaintext partial resumes at any offset up to its length. An
//! encrypted partial resumes at the plaintext length of its complete chunks (a torn chunk is
//! cut off) once the chunk before that point authenticates; on resume, the plaintext already
//! held is decrypted and re-hashed chunk by chunk, and a chunk that fails there discards the
//! partial (the transfer starts over). Bytes re-sent after a resume point are the same
//! plaintext as before because the partial is content-addressed, which the at-rest format
//! requires (a chunk index is its nonce); staged content is never resumed.
//!
//! # Reading
//! [`BlobStore::open_read`] returns a [`BlobReader`] that yields plaintext from an offset in
//! constant memory. Every encrypted chunk authenticates before any of its bytes are returned; a
//! chunk that does not fails the read with an `InvalidData` I/O error naming the blob and the
//! chunk ([`BlobError::Corrupt`] inside), so no consumer ever passes on altered bytes.
//!
//! The filesystem is synchronous: each operation (open and resume, a write, finish = write the
//! rest + fsync + rename + fsync the directory, a batch of reads) runs as one `spawn_blocking`
//! job with `std::fs`, rather than a `tokio::fs` call (a hand-off to the blocking pool and back)
//! per system call.

use std::{
    collections::HashSet,
    io::{self, Seek},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use std::fs::OpenOptions;

use crate::{
    atrest::{DataKeys, DecryptingReader, EncryptingWriter},
    crypto::DigestAlgorithm,
    signing::{Digest, Hasher},
    store::Store,
};

pub mod database;
mod error;
mod partial;
mod reader;
mod writer;

pub use error::BlobError;
use error::ResumeError;
pub use reader::BlobReader;
pub use writer::BlobWriter;

use database::DbReader;

use writer::{Open, Sink};

/// Size of the chunks content moves in: large enough to amortise per-message cost, small enough
/// to keep memory flat whatever the document's size.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// The directories (under the blob root) that hold complete blobs, plaintext and encrypted: what
/// a backup copies.
pub const COMPLETE_DIRS: [&str; 2] = [Format::Plain.complete_dir(), Format::Sealed.complete_dir()];

/// Which format a blob file has, told by the directory it is in (never by its bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// The bytes as received.
    Plain,
    /// The at-rest encrypted chunked format.
    Sealed,
}

impl Format {
    const fn complete_dir(self) -> &'static str {
        match self {
            Format::Plain => "sha256",
            Format::Sealed => "sealed",
        }
    }

    const fn partial_dir(self) -> &'static str {
        match self {
            Format::Plain => "partial",
            Format::Sealed => "sealed-partial",
        }
    }

    const fn staging_dir(self) -> &'static str {
        match self {
            Format::Plain => "staging",
            Format::Sealed => "sealed-staging",
        }
    }
}

/// The content blobs of a hub or node: files under a directory, or (a hub on PostgreSQL) rows
/// of its database ([`database`]), behind one API.
#[derive(Debug, Clone)]
pub struct BlobStore {
    /// Where the blobs are.
    backend: Backend,
    /// The store's data keys when encryption is on: every new blob file is sealed with them.
    keys: Option<DataKeys>,
    /// The digest blobs are named and checked by: the exchange's profile's (SHA-256 unless
    /// [`BlobStore::with_digest`] says otherwise).
    digest: DigestAlgorithm,
    /// Blobs being received right now: one writer per partial file.
    active: Arc<Mutex<HashSet<Digest>>>,
}

/// Where a [`BlobStore`]'s blobs are.
#[derive(Debug, Clone)]
enum Backend {
    /// Files under this directory (the module docs' layout): nodes, and hubs on redb.
    Files(PathBuf),
    /// Rows of the store's database, shared by every hub on it ([`database`]).
    Database(Store),
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
    /// Opens (creating) the blob directories under `root`. With `keys`, new blobs are encrypted
    /// at rest (the layout is in the module docs); without, they are stored as received.
    pub fn open(root: &Path, keys: Option<DataKeys>) -> Result<Self, BlobError> {
        let format = if keys.is_some() {
            Format::Sealed
        } else {
            Format::Plain
        };
        for sub in [
            format.complete_dir(),
            format.partial_dir(),
            format.staging_dir(),
        ] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        // Staged content without a committed document is garbage after a restart; with keys, so
        // is a plaintext partial (its transfer starts over, encrypted, rather than going on in
        // clear).
        let mut garbage = vec![Format::Plain.staging_dir(), Format::Sealed.staging_dir()];
        if format == Format::Sealed {
            garbage.push(Format::Plain.partial_dir());
        }
        for sub in garbage {
            let entries = match std::fs::read_dir(root.join(sub)) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            for entry in entries {
                let _ = std::fs::remove_file(entry?.path());
            }
        }
        Ok(BlobStore {
            backend: Backend::Files(root.to_owned()),
            keys,
            digest: DigestAlgorithm::Sha256,
            active: Arc::default(),
        })
    }

    /// The blobs of a daemon whose store is `store`: in its database when that is a database
    /// server (a hub on PostgreSQL, so that every hub on the database serves them), else files
    /// under `root` ([`BlobStore::open`]). Sealed with the store's data keys, if it has any.
    pub fn for_store(root: &Path, store: &Store) -> Result<Self, BlobError> {
        let keys = store.sealer().keys().cloned();
        if !store.is_database() {
            return Self::open(root, keys);
        }
        Ok(BlobStore {
            backend: Backend::Database(store.clone()),
            keys,
            digest: DigestAlgorithm::Sha256,
            active: Arc::default(),
        })
    }

    /// The directory of a file store (empty for a database store, whose code never builds a
    /// path).
    fn root(&self) -> &Path {
        match &self.backend {
            Backend::Files(root) => root,
            Backend::Database(_) => Path::new(""),
        }
    }

    /// The same store, naming and checking its blobs by `alg` (the exchange's profile's
    /// digest: the hub's and node's signing key's scheme's). A store names every blob file
    /// after its digest under one algorithm; SHA-256 blob files keep today's names.
    pub fn with_digest(mut self, alg: DigestAlgorithm) -> Self {
        self.digest = alg;
        self
    }

    /// The digest blobs here are named and checked by.
    pub fn digest_algorithm(&self) -> DigestAlgorithm {
        self.digest
    }

    /// A blob file's name: the digest in hex, prefixed by the algorithm's name and `-` unless
    /// it is SHA-256 (`sm3-<hex>`), so that a file name never leaves its algorithm to guess.
    fn file_name(&self, d: &Digest) -> String {
        match self.digest {
            DigestAlgorithm::Sha256 => d.to_hex(),
            other => format!("{}-{}", other.name(), d.to_hex()),
        }
    }

    /// The format new blob files are written in.
    fn format(&self) -> Format {
        if self.keys.is_some() {
            Format::Sealed
        } else {
            Format::Plain
        }
    }

    fn complete_path(&self, f: Format, d: &Digest) -> PathBuf {
        self.root().join(f.complete_dir()).join(self.file_name(d))
    }

    fn partial_path(&self, d: &Digest) -> PathBuf {
        self.root()
            .join(self.format().partial_dir())
            .join(self.file_name(d))
    }

    /// Whether the blob is complete here, in either format. Without keys an encrypted blob is
    /// present but cannot be read; with keys, one whose header does not authenticate is not
    /// present (a new transfer replaces it).
    pub async fn contains(&self, d: &Digest) -> bool {
        self.progress(d).await.1
    }

    /// How many plaintext bytes of `d` are held: `(bytes, complete)`. For a partial, that is
    /// where [`BlobStore::resume`] can continue.
    pub async fn progress(&self, d: &Digest) -> (u64, bool) {
        if let Backend::Database(store) = &self.backend {
            return database::progress(self, store, d).await;
        }
        let (sealed, plain) = (
            self.complete_path(Format::Sealed, d),
            self.complete_path(Format::Plain, d),
        );
        let (partial, keys) = (self.partial_path(d), self.keys.clone());
        blocking(move || {
            if let Some(len) = partial::sealed_len(&sealed, keys.as_ref()) {
                return Ok((len, true));
            }
            if let Ok(m) = std::fs::metadata(plain) {
                return Ok((m.len(), true));
            }
            Ok(match &keys {
                Some(keys) => (partial::sealed_resume_point(&partial, keys), false),
                None => (std::fs::metadata(partial).map_or(0, |m| m.len()), false),
            })
        })
        .await
        .unwrap_or((0, false))
    }

    /// Opens a complete blob for reading its plaintext from `offset`.
    pub async fn open_read(&self, d: &Digest, offset: u64) -> Result<BlobReader, BlobError> {
        if let Backend::Database(store) = &self.backend {
            return database::open_read(self, store, d, offset).await;
        }
        let (sealed, plain) = (
            self.complete_path(Format::Sealed, d),
            self.complete_path(Format::Plain, d),
        );
        let (keys, digest) = (self.keys.clone(), *d);
        let open_plain = move || -> Result<std::fs::File, BlobError> {
            let mut f = std::fs::File::open(&plain)?;
            f.seek(io::SeekFrom::Start(offset))?;
            Ok(f)
        };
        let opened = tokio::task::spawn_blocking(move || match keys {
            Some(keys) => match std::fs::File::open(&sealed) {
                Ok(f) => DecryptingReader::new(&keys, f, offset)
                    .map(|r| reader::Opened::Sealed(Box::new(r)))
                    .map_err(|e| BlobError::at_rest(digest, e)),
                // Written in clear before encryption was turned on.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    open_plain().map(reader::Opened::Plain)
                }
                Err(e) => Err(e.into()),
            },
            None => match open_plain() {
                Err(BlobError::Io(e)) if e.kind() == io::ErrorKind::NotFound && sealed.exists() => {
                    Err(BlobError::Encrypted(digest))
                }
                r => r.map(reader::Opened::Plain),
            },
        })
        .await
        .map_err(|e| io::Error::other(format!("blob task failed: {e}")))??;
        Ok(BlobReader::new(digest, opened))
    }

    /// Continues (or starts) receiving blob `d` of `size` bytes at `offset` (plaintext), which
    /// must not be beyond what [`BlobStore::progress`] reports held. Bytes already held are
    /// re-hashed, not re-sent.
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
        if let Backend::Database(store) = &self.backend {
            return database::resume(self, store, slot, (d, size), offset).await;
        }
        let path = self.partial_path(&d);
        // The slot goes into the job: if this future is dropped, it is released only once
        // the job has ended.
        let (open, hasher) = {
            let (path, keys, alg) = (path.clone(), self.keys.clone(), self.digest);
            blocking(move || {
                let (sink, hasher) = match keys {
                    Some(keys) => partial::reopen_sealed(&path, &keys, (d, alg), size, offset)?,
                    None => partial::reopen_plain(&path, alg, size, offset)?,
                };
                let _slot = Some(slot);
                Ok((Open { sink, _slot }, hasher))
            })
            .await?
        };
        Ok(BlobWriter::new(
            self.clone(),
            open,
            path,
            hasher,
            offset,
            Some((d, size)),
        ))
    }

    /// Receives content whose digest is not known yet; [`BlobWriter::finish`] reports it. With
    /// keys it is a new encrypted blob (never a resumed one: its bytes are not fixed yet).
    pub async fn stage(&self) -> Result<BlobWriter, BlobError> {
        if let Backend::Database(_) = &self.backend {
            // Only nodes stage (a department system's submission), and nodes keep files.
            return Err(BlobError::Protocol(
                "content of unknown digest cannot be staged in the database: send its digest \
                 first (PutBlob)"
                    .to_owned(),
            ));
        }
        let hasher = Hasher::new(self.digest).map_err(BlobError::Digest)?;
        let path = self
            .root()
            .join(self.format().staging_dir())
            .join(uuid::Uuid::now_v7().to_string());
        let sink = {
            let (path, keys) = (path.clone(), self.keys.clone());
            blocking(move || {
                let file = OpenOptions::new().create_new(true).write(true).open(path)?;
                Ok(match keys {
                    Some(keys) => Sink::Sealed(Box::new(EncryptingWriter::new(&keys, file)?)),
                    None => Sink::Plain(file),
                })
            })
            .await?
        };
        Ok(BlobWriter::new(
            self.clone(),
            Open { sink, _slot: None },
            path,
            hasher,
            0,
            None,
        ))
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

#[cfg(test)]
mod tests;
