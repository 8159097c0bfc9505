//! Durable storage, shared by the hub and the node: ordered tables ([`kv`]) on redb (embedded,
//! the default) or, for the hub, PostgreSQL (feature `postgres`, issue 17).
//!
//! **The rule: nothing is acknowledged before it is durable.** Every write goes through
//! [`Store::write`], which returns only after the transaction holding it has committed: on redb
//! with `Durability::Immediate` (an fsync), on PostgreSQL when the server reports the commit
//! (durable, and replicated, as its `synchronous_commit` says: docs/operations.md). Writes that
//! arrive together share one transaction (group commit): one commit for many acknowledgements,
//! never none. On PostgreSQL a batch that collides with another hub's transaction runs again.
//!
//! A write job that fails commits nothing: when a job in a batch returns `Err`, the whole
//! transaction is aborted and the batch is run again without it (jobs are `Fn`, so they can be
//! re-run). A refusal half-way through a job therefore never leaves half its writes behind.
//!
//! Both clients are synchronous, so all of it runs off the async runtime: writes on one dedicated
//! writer thread ([`writer`]), reads on the blocking pool.

pub mod content;
pub mod kv;
pub mod migrate;
pub mod queue;
pub mod sealing;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use kv::{ReadTables, WriteTables};

/// Store metadata of a redb store: schema version, kind of store, flags.
pub const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The flags of a PostgreSQL store (what a redb store keeps in [`META`]; its kind and schema
/// are in `exchange_schema`): a store module that lists its tables for `migrate` lists this one.
pub const SETTINGS: kv::Table = kv::Table::new("settings");

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb reported an error.
    #[error("{0}")]
    Redb(#[from] redb::Error),
    /// The directory holds a store of another kind or version.
    #[error("{path} is not a {expected} store of schema version {version}: {found}")]
    Foreign {
        /// The store file.
        path: PathBuf,
        /// `hub` or `node`.
        expected: &'static str,
        /// The schema version this build reads.
        version: u64,
        /// What was found instead.
        found: String,
    },
    /// A stored value could not be decoded.
    #[error("stored record {key} is unreadable: {reason}")]
    Decode {
        /// Which record.
        key: String,
        /// Why.
        reason: String,
    },
    /// A value could not be sealed (the random source or the cipher library failed): nothing
    /// of the transaction is written.
    #[error("a record could not be sealed: {0}")]
    Seal(#[source] crate::atrest::AtRestError),
    /// A transaction could not begin or commit; nothing in it is durable.
    #[error("commit failed: {message}")]
    Commit {
        /// redb's message.
        message: String,
        /// Whether the cause is a full disk.
        disk_full: bool,
    },
    /// The writer thread has stopped (the daemon is shutting down).
    #[error("store is closed")]
    Closed,
    /// The database server (PostgreSQL) refused or failed a statement; nothing of the
    /// transaction is committed.
    #[error("{message}")]
    Database {
        /// What the server said (never the statement's parameters).
        message: String,
        /// Whether running the transaction again may succeed (a serialization failure or a
        /// deadlock between concurrent transactions).
        retry: bool,
        /// Whether the server's disk is full.
        disk_full: bool,
    },
}

impl StoreError {
    /// Whether the failure is a full disk (→ RESOURCE_EXHAUSTED rather than UNAVAILABLE).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Commit { disk_full, .. } => *disk_full,
            StoreError::Redb(e) => is_full(e),
            StoreError::Database { disk_full, .. } => *disk_full,
            _ => false,
        }
    }

    /// Whether the transaction failed only because it collided with a concurrent one, so that
    /// running it again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Database { retry: true, .. })
    }

    /// A decode failure of the record at `key`.
    pub fn decode(key: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        StoreError::Decode {
            key: key.to_string(),
            reason: e.to_string(),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Redb(e.into()) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A store with a group-committing writer thread, on redb or (feature `postgres`) PostgreSQL.
#[derive(Clone)]
pub struct Store {
    engine: Arc<Backend>,
    writer: Arc<Writer>,
    /// The redb file, or a description of the database (never its password).
    path: PathBuf,
    /// Seals the values that hold document content ([`sealing`]).
    sealer: sealing::Sealer,
    kind: &'static str,
    version: u64,
}

/// What a redb store file says of itself in [`META`]: its kind, its schema version, and whether
/// it may hold sealed values. A backup stamps its copy the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamps {
    /// `hub` or `node`.
    pub kind: &'static str,
    /// The schema version.
    pub version: u64,
    /// Whether values may be sealed ([`sealing`]).
    pub encrypted: bool,
}

impl Stamps {
    /// Writes the stamps into a new store's META table.
    pub fn write(&self, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut meta = txn.open_table(META)?;
        meta.insert(format!("kind:{}", self.kind).as_str(), 1)?;
        meta.insert("schema", self.version)?;
        if self.encrypted {
            meta.insert(sealing::ENCRYPTED, 1)?;
        }
        Ok(())
    }
}

/// Where the store's data lives, for readers.
enum Backend {
    Redb(Arc<Handle>),
    #[cfg(feature = "postgres")]
    Postgres(Box<PgReaders>),
}

/// Connections for reads, taken and given back around each read: at most [`MAX_READERS`] open
/// at once (a read beyond them waits for one to be given back), [`IDLE_READERS`] of them kept
/// between reads.
#[cfg(feature = "postgres")]
struct PgReaders {
    target: kv::postgres::PgTarget,
    pool: std::sync::Mutex<ReaderPool>,
    /// Signalled each time a connection is given back or closed.
    freed: std::sync::Condvar,
    commits: Arc<crate::metrics::Histogram>,
}

/// Most reader connections a PostgreSQL store holds open at once. With the writer's and the
/// two of the wake-ups (`exchange-hub`), a hub takes at most this plus three of the server's
/// `max_connections`.
#[cfg(feature = "postgres")]
pub const MAX_READERS: usize = 16;

/// Reader connections kept open between reads.
#[cfg(feature = "postgres")]
const IDLE_READERS: usize = 8;

/// The reader connections: those idle, and how many are open in all (idle or in use).
#[cfg(feature = "postgres")]
#[derive(Default)]
struct ReaderPool {
    idle: Vec<kv::postgres::PgConnection>,
    open: usize,
}

/// The open database, replaced by the writer thread when redb needs a reopen: after a failed
/// commit (a full disk, an I/O error) redb refuses further use of the handle, so the writer
/// closes it and opens the file again, which recovers once the cause is gone.
#[derive(Debug)]
struct Handle {
    current: std::sync::RwLock<Option<Arc<Database>>>,
    /// How long each commit (the fsync) took, for the metrics endpoint.
    commits: crate::metrics::Histogram,
}

impl Handle {
    fn get(&self) -> Option<Arc<Database>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, db: Option<Arc<Database>>) -> Option<Arc<Database>> {
        std::mem::replace(
            &mut *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            db,
        )
    }

    /// Closes the database (waiting for readers to let go) and opens it again.
    fn reopen(&self, path: &Path) -> Result<(), StoreError> {
        let mut old = self.set(None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while let Some(db) = old {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    drop(db);
                    old = None;
                }
                Err(db) if std::time::Instant::now() < deadline => {
                    old = Some(db);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(db) => {
                    self.set(Some(db));
                    return Err(StoreError::Closed);
                }
            }
        }
        let db = create(path)?;
        self.set(Some(Arc::new(db)));
        tracing::info!(path = %path.display(), "store reopened");
        Ok(())
    }
}

/// The writer thread's end of the job channel. When the last `Store` clone goes, the channel
/// closes and the drop waits for the thread, so the file is closed when `Store` is gone.
struct Writer {
    jobs: Option<mpsc::Sender<Box<dyn writer::WriteJob>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    fn spawn(
        kind: &str,
        body: impl FnOnce(mpsc::Receiver<Box<dyn writer::WriteJob>>) + Send + 'static,
    ) -> Result<Self, StoreError> {
        let (jobs, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("{kind}-store-writer"))
            .spawn(move || body(rx))
            .map_err(|e| StoreError::Redb(redb::Error::Io(e)))?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// redb's page cache per store. redb's default (1 GiB) lets a process grow with its database;
/// small documents' content lives in the store, so the cache is bounded: hot pages (queues,
/// recent documents) fit, and older pages are read from the OS page cache when needed.
pub const CACHE_BYTES: usize = 64 * 1024 * 1024;

fn create(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(CACHE_BYTES).create(path)
}

impl Store {
    /// Opens (or creates) the store at `path`, checking that it is a `kind` store of `version`.
    pub fn open(path: &Path, kind: &'static str, version: u64) -> Result<Self, StoreError> {
        let db = create(path)?;
        check_or_stamp(&db, path, kind, version)?;
        let handle = Arc::new(Handle {
            current: std::sync::RwLock::new(Some(Arc::new(db))),
            commits: crate::metrics::Histogram::new(crate::metrics::LATENCY_BUCKETS),
        });
        let writer_handle = Arc::clone(&handle);
        let writer_path = path.to_owned();
        let writer = Writer::spawn(kind, move |rx| {
            writer::RedbEngine::thread(&writer_handle, &writer_path, &rx);
        })?;
        Ok(Store {
            engine: Arc::new(Backend::Redb(handle)),
            writer: Arc::new(writer),
            path: path.to_owned(),
            sealer: sealing::Sealer::default(),
            kind,
            version,
        })
    }

    /// Connects to the `kind` store of schema `version` in the PostgreSQL database `target`
    /// (made by [`kv::postgres::PgConnection::migrate`]); refuses a database without it, or
    /// with another version.
    #[cfg(feature = "postgres")]
    pub fn open_postgres(
        target: &kv::postgres::PgTarget,
        kind: &'static str,
        version: u64,
    ) -> Result<Self, StoreError> {
        kv::postgres::blocking(|| Self::open_postgres_here(target, kind, version))
    }

    #[cfg(feature = "postgres")]
    fn open_postgres_here(
        target: &kv::postgres::PgTarget,
        kind: &'static str,
        version: u64,
    ) -> Result<Self, StoreError> {
        let shown = target.shown();
        let mut conn = target.connect()?;
        match conn.schema_version(kind)? {
            Some(v) if v == version => {}
            found => {
                return Err(StoreError::Foreign {
                    path: PathBuf::from(shown),
                    expected: kind,
                    version,
                    found: match found {
                        Some(v) => format!("schema version {v}"),
                        None => "no schema: run `migrate` first".to_owned(),
                    },
                });
            }
        }
        let commits = Arc::new(crate::metrics::Histogram::new(
            crate::metrics::LATENCY_BUCKETS,
        ));
        let writer_commits = Arc::clone(&commits);
        let writer_target = target.clone();
        let writer = Writer::spawn(kind, move |rx| {
            let mut engine = writer::PgEngine {
                target: writer_target,
                conn: Some(conn),
            };
            writer::run(&mut engine, &rx, &writer_commits);
        })?;
        Ok(Store {
            engine: Arc::new(Backend::Postgres(Box::new(PgReaders {
                target: target.clone(),
                pool: std::sync::Mutex::default(),
                freed: std::sync::Condvar::new(),
                commits,
            }))),
            writer: Arc::new(writer),
            path: PathBuf::from(shown),
            sealer: sealing::Sealer::default(),
            kind,
            version,
        })
    }

    /// The redb database, for what only a redb store keeps outside its tables (the stamps in
    /// [`META`]); `Closed` on PostgreSQL or while the writer reopens the file.
    fn redb(&self) -> Result<Arc<Database>, StoreError> {
        match &*self.engine {
            Backend::Redb(h) => h.get().ok_or(StoreError::Closed),
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => Err(StoreError::Closed),
        }
    }

    /// Whether the flag `name` is set: in [`META`] on redb, in [`SETTINGS`] on PostgreSQL.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, StoreError> {
        match &*self.engine {
            Backend::Redb(_) => {
                let db = self.redb()?;
                let txn = db.begin_read()?;
                match txn.open_table(META) {
                    Ok(meta) => Ok(meta.get(name)?.is_some()),
                    Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(readers) => kv::postgres::blocking(|| {
                readers
                    .read(|txn| Ok::<_, StoreError>(txn.get(SETTINGS, name.as_bytes())?.is_some()))
            }),
        }
    }

    /// Sets the flag `name`, durably, outside the writer (at open, while nothing else writes).
    pub(crate) fn set_flag(&self, name: &str) -> Result<(), StoreError> {
        match &*self.engine {
            Backend::Redb(_) => {
                let db = self.redb()?;
                let txn = db.begin_write()?;
                txn.open_table(META)?.insert(name, 1)?;
                txn.commit()?;
                Ok(())
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(readers) => kv::postgres::blocking(|| {
                let mut conn = readers.target.connect()?;
                let txn = conn.begin()?;
                txn.put(SETTINGS, name.as_bytes(), &[1])?;
                txn.commit()
            }),
        }
    }

    /// What a copy of this store is stamped with.
    pub fn stamps(&self) -> Stamps {
        Stamps {
            kind: self.kind,
            version: self.version,
            encrypted: self.sealer.keys().is_some(),
        }
    }

    /// The store file (or, on PostgreSQL, the database as shown in messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The latency of every commit (one per batch) since the store was opened.
    pub fn commit_latency(&self) -> &crate::metrics::Histogram {
        match &*self.engine {
            Backend::Redb(h) => &h.commits,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => &p.commits,
        }
    }

    /// Runs `f` in a write transaction and returns its result once that transaction is durable.
    /// If `f` fails, nothing it wrote is committed (see the module docs); `f` may run more than
    /// once, in successive attempts of a batch, and only its last run counts.
    pub async fn write<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: Fn(&dyn WriteTables) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let jobs = self
            .writer
            .jobs
            .as_ref()
            .ok_or_else(|| E::from(StoreError::Closed))?;
        jobs.send(Box::new(writer::Job {
            f,
            result: None,
            reply,
        }))
        .map_err(|_| E::from(StoreError::Closed))?;
        rx.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// [`Store::write`] for items that came together (one message, one batch call), in one
    /// transaction, each taken as if it came alone. For each item in order, `read` decides what
    /// to write and writes nothing; if it fails with an error `own` calls the item's own (a
    /// refusal, a record that does not decode), that error is the item's outcome and nothing
    /// of the item is written. Otherwise `apply` writes it, and any failure there, or any other
    /// failure of `read`, fails the whole job: nothing of any item is committed and the writer
    /// runs the batch's other jobs without it. Returns each item's outcome in order.
    pub async fn write_each<T, P, R, E>(
        &self,
        items: Vec<T>,
        read: impl Fn(&dyn WriteTables, &T) -> Result<P, E> + Send + 'static,
        apply: impl Fn(&dyn WriteTables, &T, P) -> Result<R, E> + Send + 'static,
        own: fn(&E) -> bool,
    ) -> Result<Vec<Result<R, E>>, E>
    where
        T: Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.write(move |txn| {
            let mut out = Vec::with_capacity(items.len());
            for item in &items {
                match read(txn, item) {
                    Ok(plan) => out.push(Ok(apply(txn, item, plan)?)),
                    Err(e) if own(&e) => out.push(Err(e)),
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    /// Runs `f` on a read snapshot right here, on the calling task's thread: for lookups of a
    /// few keys on a hot path (a redb point read from the page cache takes microseconds, far
    /// less than the two thread hand-offs of the blocking pool). Scans and anything that may
    /// touch many pages use [`Store::read`]. While the database is being reopened, and on
    /// PostgreSQL (a network round trip), this is `read`.
    pub async fn lookup<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&dyn ReadTables) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        if let Backend::Redb(h) = &*self.engine
            && let Some(db) = h.get()
        {
            let txn = db.begin_read().map_err(StoreError::from)?;
            return f(&txn);
        }
        self.read(f).await
    }

    /// Runs `f` on a read snapshot, on the blocking pool.
    pub async fn read<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&dyn ReadTables) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let engine = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || match &*engine {
            Backend::Redb(handle) => {
                // While the writer reopens the database (after a failed commit) there is
                // briefly no handle: wait for it rather than fail a read that has nothing to do
                // with the write.
                let mut waited = 0;
                let db = loop {
                    match handle.get() {
                        Some(db) => break db,
                        None if waited < 200 => {
                            std::thread::sleep(std::time::Duration::from_millis(5));
                            waited += 1;
                        }
                        None => return Err(E::from(StoreError::Closed)),
                    }
                };
                let txn = db.begin_read().map_err(StoreError::from)?;
                f(&txn)
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(readers) => readers.read(f),
        })
        .await
        .map_err(|_| E::from(StoreError::Closed))?
    }
}

/// The idle connections close where closing may block (see [`kv::postgres::blocking`]).
#[cfg(feature = "postgres")]
impl Drop for PgReaders {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.lock().idle);
        kv::postgres::blocking(move || drop(idle));
    }
}

#[cfg(feature = "postgres")]
impl PgReaders {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReaderPool> {
        // Each update is a push, a pop or a count: consistent across a panic elsewhere.
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` in a read-only snapshot on an idle connection (a new one if none is idle and
    /// fewer than [`MAX_READERS`] are open; else it waits for one); the connection goes back to
    /// the idle ones unless a statement failed on it.
    fn read<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&dyn ReadTables) -> Result<R, E>,
        E: From<StoreError>,
    {
        let idle = {
            let mut pool = self.lock();
            loop {
                if let Some(c) = pool.idle.pop() {
                    break Some(c);
                }
                if pool.open < MAX_READERS {
                    pool.open += 1; // this read's place, taken before connecting
                    break None;
                }
                pool = self
                    .freed
                    .wait(pool)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        // The place is given back however this ends, a failed connect included.
        let mut lease = ReaderLease {
            readers: self,
            conn: None,
            sound: false,
        };
        let conn = match idle {
            Some(c) => c,
            None => self.target.connect()?,
        };
        let conn = lease.conn.insert(conn);
        let txn = conn.begin_read()?;
        let result = f(&txn);
        let sound = txn.failure().is_none() && txn.commit().is_ok();
        lease.sound = sound;
        result
    }
}

/// A reader connection's place, given back on drop (whatever way the read ends): kept idle if
/// the read was sound and fewer than [`IDLE_READERS`] are, else closed; a waiting read is woken.
#[cfg(feature = "postgres")]
struct ReaderLease<'a> {
    readers: &'a PgReaders,
    conn: Option<kv::postgres::PgConnection>,
    sound: bool,
}

#[cfg(feature = "postgres")]
impl Drop for ReaderLease<'_> {
    fn drop(&mut self) {
        let closing = {
            let mut pool = self.readers.lock();
            match self.conn.take() {
                Some(c) if self.sound && pool.idle.len() < IDLE_READERS => {
                    pool.idle.push(c);
                    None
                }
                other => {
                    pool.open -= 1;
                    other
                }
            }
        };
        drop(closing); // closed outside the lock
        self.readers.freed.notify_one();
    }
}

fn check_or_stamp(
    db: &Database,
    path: &Path,
    kind: &'static str,
    version: u64,
) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let kind_key = format!("kind:{kind}");
        let foreign = |found: String| StoreError::Foreign {
            path: path.to_owned(),
            expected: kind,
            version,
            found,
        };
        let stamped = meta.get(kind_key.as_str())?.map(|v| v.value());
        let schema = meta.get("schema")?.map(|v| v.value());
        match (stamped, schema) {
            (Some(1), Some(v)) if v == version => {}
            (Some(1), Some(v)) if v < version => {
                return Err(foreign(format!(
                    "schema version {v}, older than this build's: upgrade it first (for a hub: \
                     `exchange-hub --config FILE migrate` with the hub stopped; \
                     docs/operations.md)"
                )));
            }
            (Some(1), Some(v)) => return Err(foreign(format!("schema version {v}"))),
            (None, None) if meta.len()? == 0 => {
                meta.insert(kind_key.as_str(), 1)?;
                meta.insert("schema", version)?;
            }
            _ => return Err(foreign("a store of another kind".to_owned())),
        }
    }
    txn.commit()?;
    Ok(())
}

fn is_full(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull)
        || e.to_string().contains("No space left")
}

pub use kv::next_counter;

/// Encodes a prost message for storage.
pub fn encode<M: prost::Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

/// Decodes a stored prost message; `key` names the record in the error.
pub fn decode<M: prost::Message + Default>(
    key: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::decode(key, e))
}

#[cfg(test)]
mod tests {
    use std::{
        future::Future,
        pin::{Pin, pin},
        sync::atomic::{AtomicUsize, Ordering},
        task::{Context, Poll, Waker},
    };

    use super::*;

    const T: kv::Table = kv::Table::new("t");

    /// Polls `f` once: a [`Store::write`] hands its job to the writer thread on its first poll.
    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// A job that writes `key` and counts its runs: a job runs once per attempt of its batch.
    fn counted(
        key: &'static str,
        runs: &Arc<AtomicUsize>,
    ) -> impl Fn(&dyn WriteTables) -> Result<(), StoreError> + Send + 'static {
        let runs = Arc::clone(runs);
        move |txn| {
            runs.fetch_add(1, Ordering::SeqCst);
            txn.put(T, key.as_bytes(), &[2])
        }
    }

    /// The writer is held inside a job while three more queue up, so that they must form one
    /// batch: the failing one is dropped, and the other two commit together in one transaction
    /// (one fsync) after an attempt that ran all three was aborted. If every job committed alone,
    /// the two would take two commits and each would run only once.
    #[tokio::test]
    async fn a_failing_job_commits_nothing_and_its_batch_mates_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), "test", 1).unwrap();
        let commits = || store.commit_latency().count();

        let entered = Arc::new(tokio::sync::Notify::new());
        let (release, held) = mpsc::channel::<()>();
        let mut holder = pin!(store.write({
            let entered = Arc::clone(&entered);
            move |txn| -> Result<(), StoreError> {
                entered.notify_one();
                held.recv().expect("BUG: the test releases the writer");
                txn.put(T, b"holder", &[0])
            }
        }));
        assert!(poll_once(holder.as_mut()).is_pending());
        entered.notified().await; // the writer thread is inside the holder's job now
        let before = commits();

        let (first_runs, second_runs) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut half = pin!(store.write(|txn| -> Result<(), StoreError> {
            txn.put(T, b"half-written", &[1])?;
            Err(StoreError::decode("job", "refused after writing"))
        }));
        let mut first = pin!(store.write(counted("first", &first_runs)));
        let mut second = pin!(store.write(counted("second", &second_runs)));
        // Each is in the writer's queue now, behind the held job.
        assert!(poll_once(half.as_mut()).is_pending());
        assert!(poll_once(first.as_mut()).is_pending());
        assert!(poll_once(second.as_mut()).is_pending());
        release.send(()).unwrap();

        holder.await.unwrap();
        let (half, first, second) = tokio::join!(half, first, second);
        assert!(half.is_err());
        first.unwrap();
        second.unwrap();
        assert_eq!(
            commits() - before,
            2,
            "one commit for the held job, one for the whole batch"
        );
        assert_eq!(
            (
                first_runs.load(Ordering::SeqCst),
                second_runs.load(Ordering::SeqCst)
            ),
            (2, 2),
            "the batch mates ran in the aborted attempt with the failing job, then again"
        );
        let (a, b, c) = store
            .read(|txn| -> Result<_, StoreError> {
                let get = |k: &str| txn.get(T, k.as_bytes());
                Ok((get("half-written")?, get("first")?, get("second")?))
            })
            .await
            .unwrap();
        assert_eq!((a, b, c), (None, Some(vec![2]), Some(vec![2])));
    }

    /// Items written together with [`Store::write_each`]: a refused one is its own outcome and
    /// leaves nothing behind while the others commit; a failure after something was written
    /// (or one that is not an item's own) commits nothing of any item.
    #[tokio::test]
    async fn items_written_together_are_each_taken_as_if_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), "test", 1).unwrap();
        store.write(|txn| txn.put(T, b"taken", &[0])).await.unwrap();
        // Refuses a key that is there already (an item's own error), fails the job on "closed".
        let read = |txn: &dyn WriteTables, key: &&'static str| -> Result<(), StoreError> {
            match *key {
                "closed" => Err(StoreError::Closed),
                _ if txn.get(T, key.as_bytes())?.is_some() => Err(StoreError::decode(key, "taken")),
                _ => Ok(()),
            }
        };
        // Writes the key, then fails on "fails".
        let apply = |txn: &dyn WriteTables, key: &&'static str, ()| -> Result<u8, StoreError> {
            txn.put(T, key.as_bytes(), &[1])?;
            match *key {
                "fails" => Err(StoreError::Closed),
                _ => Ok(1),
            }
        };
        let own = |e: &StoreError| matches!(e, StoreError::Decode { .. });
        let get = |key: &'static str| {
            store.read(move |txn| -> Result<_, StoreError> { txn.get(T, key.as_bytes()) })
        };

        let out = store
            .write_each(vec!["a", "taken", "b"], read, apply, own)
            .await
            .unwrap();
        assert!(matches!(
            out.as_slice(),
            [Ok(1), Err(StoreError::Decode { .. }), Ok(1)]
        ));
        assert_eq!(get("a").await.unwrap(), Some(vec![1]));
        assert_eq!(get("b").await.unwrap(), Some(vec![1]));
        assert_eq!(
            get("taken").await.unwrap(),
            Some(vec![0]),
            "the refused item wrote nothing"
        );

        for failing in ["fails", "closed"] {
            let all = store
                .write_each(vec!["c", failing, "d"], read, apply, own)
                .await;
            assert!(matches!(all, Err(StoreError::Closed)), "{failing}: {all:?}");
            for key in ["c", "fails", "d"] {
                assert_eq!(
                    get(key).await.unwrap(),
                    None,
                    "{failing}: {key} was committed"
                );
            }
        }
    }
}
