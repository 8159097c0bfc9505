//! Durable storage on redb, shared by the hub and the node.
//!
//! **The rule: nothing is acknowledged before it is durable.** Every write goes through
//! [`Store::write`], which returns only after the redb transaction holding it has committed with
//! `Durability::Immediate` (an fsync). Writes that arrive together share one transaction (group
//! commit): one fsync for many acknowledgements, never none.
//!
//! A write job must do its checks before it writes: a job that returns `Err` must leave the
//! transaction unchanged, because it shares the transaction with other jobs that will commit.
//!
//! redb is synchronous, so all of it runs off the async runtime: writes on one dedicated writer
//! thread, reads on the blocking pool.

pub mod queue;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use tokio::sync::oneshot;

/// Most write jobs committed in one transaction.
const MAX_BATCH: usize = 512;

/// Store metadata: schema version, kind of store, counters.
pub const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

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
}

impl StoreError {
    /// Whether the failure is a full disk (→ RESOURCE_EXHAUSTED rather than UNAVAILABLE).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Commit { disk_full, .. } => *disk_full,
            StoreError::Redb(e) => is_full(e),
            _ => false,
        }
    }

    /// A decode failure of the record at `key`.
    pub fn decode(key: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        StoreError::Decode { key: key.to_string(), reason: e.to_string() }
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

trait WriteJob: Send {
    fn run(self: Box<Self>, txn: &WriteTransaction) -> Box<dyn FnOnce(Result<(), StoreError>) + Send>;
    fn fail(self: Box<Self>, e: StoreError);
}

struct Job<F, R, E> {
    f: F,
    reply: oneshot::Sender<Result<R, E>>,
}

impl<F, R, E> WriteJob for Job<F, R, E>
where
    F: FnOnce(&WriteTransaction) -> Result<R, E> + Send,
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, txn: &WriteTransaction) -> Box<dyn FnOnce(Result<(), StoreError>) + Send> {
        let result = (self.f)(txn);
        let reply = self.reply;
        Box::new(move |commit| {
            let _ = reply.send(commit.map_err(E::from).and(result));
        })
    }
    fn fail(self: Box<Self>, e: StoreError) {
        let _ = self.reply.send(Err(E::from(e)));
    }
}

/// A redb database with a group-committing writer thread.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: Arc<Writer>,
    path: PathBuf,
}

/// The writer thread's end of the job channel. When the last `Store` clone goes, the channel
/// closes and the drop waits for the thread, so the file is closed when `Store` is gone.
struct Writer {
    jobs: Option<mpsc::Sender<Box<dyn WriteJob>>>,
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

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store at `path`, checking that it is a `kind` store of `version`.
    pub fn open(path: &Path, kind: &'static str, version: u64) -> Result<Self, StoreError> {
        let db = Arc::new(Database::create(path)?);
        check_or_stamp(&db, path, kind, version)?;
        let (jobs, rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let writer_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name(format!("{kind}-store-writer"))
            .spawn(move || writer(&writer_db, &rx))
            .map_err(|e| StoreError::Redb(redb::Error::Io(e)))?;
        let writer = Arc::new(Writer { jobs: Some(jobs), thread: Some(thread) });
        Ok(Store { db, writer, path: path.to_owned() })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a write transaction and returns its result once that transaction is durable.
    /// `f` must not write anything if it returns `Err` (see the module docs).
    pub async fn write<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&WriteTransaction) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let jobs = self.writer.jobs.as_ref().ok_or_else(|| E::from(StoreError::Closed))?;
        jobs.send(Box::new(Job { f, reply })).map_err(|_| E::from(StoreError::Closed))?;
        rx.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// Runs `f` on a read snapshot, on the blocking pool.
    pub async fn read<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&ReadTransaction) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(StoreError::from)?;
            f(&txn)
        })
        .await
        .map_err(|_| E::from(StoreError::Closed))?
    }
}

fn check_or_stamp(db: &Database, path: &Path, kind: &'static str, version: u64) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let kind_key = format!("kind:{kind}");
        let foreign = |found: String| StoreError::Foreign { path: path.to_owned(), expected: kind, version, found };
        let stamped = meta.get(kind_key.as_str())?.map(|v| v.value());
        let schema = meta.get("schema")?.map(|v| v.value());
        match (stamped, schema) {
            (Some(1), Some(v)) if v == version => {}
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

fn commit_failure(e: impl Into<redb::Error>) -> impl Fn() -> StoreError {
    let e: redb::Error = e.into();
    let (message, disk_full) = (e.to_string(), is_full(&e));
    move || StoreError::Commit { message: message.clone(), disk_full }
}

fn writer(db: &Database, rx: &mpsc::Receiver<Box<dyn WriteJob>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "store transaction could not begin");
                let failure = commit_failure(e);
                batch.into_iter().for_each(|job| job.fail(failure()));
                continue;
            }
        };
        let completions: Vec<_> = batch.into_iter().map(|job| job.run(&txn)).collect();
        match txn.commit() {
            Ok(()) => completions.into_iter().for_each(|c| c(Ok(()))),
            Err(e) => {
                tracing::error!(error = %e, "store commit failed");
                let failure = commit_failure(e);
                completions.into_iter().for_each(|c| c(Err(failure())));
            }
        }
    }
}

/// Takes the next value of the counter `name` in META (starting at 1), inside `txn`.
pub fn next_counter(txn: &WriteTransaction, name: &str) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let next = meta.get(name)?.map_or(0, |v| v.value()) + 1;
    meta.insert(name, next)?;
    Ok(next)
}

/// Encodes a prost message for storage.
pub fn encode<M: prost::Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

/// Decodes a stored prost message; `key` names the record in the error.
pub fn decode<M: prost::Message + Default>(key: impl std::fmt::Display, bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::decode(key, e))
}
