//! Durable storage on redb, shared by the hub and the node.
//!
//! **The rule: nothing is acknowledged before it is durable.** Every write goes through
//! [`Store::write`], which returns only after the redb transaction holding it has committed with
//! `Durability::Immediate` (an fsync). Writes that arrive together share one transaction (group
//! commit): one fsync for many acknowledgements, never none.
//!
//! A write job that fails commits nothing: when a job in a batch returns `Err`, the whole
//! transaction is aborted and the batch is run again without it (jobs are `Fn`, so they can be
//! re-run). A refusal half-way through a job therefore never leaves half its writes behind.
//!
//! redb is synchronous, so all of it runs off the async runtime: writes on one dedicated writer
//! thread, reads on the blocking pool.

pub mod content;
pub mod kv;
pub mod queue;
pub mod sealing;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
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

trait WriteJob: Send {
    /// Runs the job in `txn`, keeping its result; true if it succeeded.
    fn run(&mut self, txn: &WriteTransaction) -> bool;
    /// Replies with the kept result, or with the commit's failure.
    fn complete(self: Box<Self>, commit: Result<(), &dyn Fn() -> StoreError>);
    /// Replies with `e` without having run (or after its results were discarded).
    fn fail(self: Box<Self>, e: StoreError);
}

struct Job<F, R, E> {
    f: F,
    result: Option<Result<R, E>>,
    reply: oneshot::Sender<Result<R, E>>,
}

impl<F, R, E> WriteJob for Job<F, R, E>
where
    F: Fn(&WriteTransaction) -> Result<R, E> + Send,
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    fn run(&mut self, txn: &WriteTransaction) -> bool {
        let r = (self.f)(txn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }
    fn complete(self: Box<Self>, commit: Result<(), &dyn Fn() -> StoreError>) {
        let reply = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Err(failure)) => Err(E::from(failure())),
            (Some(Ok(r)), Ok(())) => Ok(r),
            (None, _) => Err(E::from(StoreError::Closed)),
        };
        let _ = self.reply.send(reply);
    }
    fn fail(self: Box<Self>, e: StoreError) {
        let _ = self.reply.send(Err(E::from(e)));
    }
}

/// A redb database with a group-committing writer thread.
#[derive(Clone)]
pub struct Store {
    db: Arc<Handle>,
    writer: Arc<Writer>,
    path: PathBuf,
    /// Seals the values that hold document content ([`sealing`]).
    sealer: sealing::Sealer,
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
        let db = Arc::new(Handle {
            current: std::sync::RwLock::new(Some(Arc::new(db))),
            commits: crate::metrics::Histogram::new(crate::metrics::LATENCY_BUCKETS),
        });
        let (jobs, rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let writer_db = Arc::clone(&db);
        let writer_path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("{kind}-store-writer"))
            .spawn(move || writer(&writer_db, &writer_path, &rx))
            .map_err(|e| StoreError::Redb(redb::Error::Io(e)))?;
        let writer = Arc::new(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        });
        Ok(Store {
            db,
            writer,
            path: path.to_owned(),
            sealer: sealing::Sealer::default(),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The latency of every commit (one per batch) since the store was opened.
    pub fn commit_latency(&self) -> &crate::metrics::Histogram {
        &self.db.commits
    }

    /// Runs `f` in a write transaction and returns its result once that transaction is durable.
    /// If `f` fails, nothing it wrote is committed (see the module docs); `f` may run more than
    /// once, in successive attempts of a batch, and only its last run counts.
    pub async fn write<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: Fn(&WriteTransaction) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let jobs = self
            .writer
            .jobs
            .as_ref()
            .ok_or_else(|| E::from(StoreError::Closed))?;
        jobs.send(Box::new(Job {
            f,
            result: None,
            reply,
        }))
        .map_err(|_| E::from(StoreError::Closed))?;
        rx.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// Runs `f` on a read snapshot right here, on the calling task's thread: for lookups of a
    /// few keys on a hot path (a redb point read from the page cache takes microseconds, far
    /// less than the two thread hand-offs of the blocking pool). Scans and anything that may
    /// touch many pages use [`Store::read`]. While the database is being reopened this falls back
    /// to `read`, which waits for it.
    pub async fn lookup<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&ReadTransaction) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        match self.db.get() {
            Some(db) => {
                let txn = db.begin_read().map_err(StoreError::from)?;
                f(&txn)
            }
            None => self.read(f).await,
        }
    }

    /// Runs `f` on a read snapshot, on the blocking pool.
    pub async fn read<F, R, E>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&ReadTransaction) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let handle = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            // While the writer reopens the database (after a failed commit) there is briefly no
            // handle: wait for it rather than fail a read that has nothing to do with the write.
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
        })
        .await
        .map_err(|_| E::from(StoreError::Closed))?
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
    move || StoreError::Commit {
        message: message.clone(),
        disk_full,
    }
}

/// How long a busy writer waits for more jobs before it commits (PostgreSQL's `commit_delay`;
/// docs/benchmarks.md has 0.5 and 1 ms measured).
/// Every commit rewrites the pages from each touched leaf up to its table's root and redb's
/// allocator state, and fsyncs: that cost is per commit, whatever it holds, so under load a
/// commit that holds more acknowledgements costs less per acknowledgement.
const COMMIT_DELAY: Duration = Duration::from_micros(500);

/// A writer that committed less than this long ago is busy, and waits [`COMMIT_DELAY`]; an idle
/// writer commits at once.
const BUSY: Duration = Duration::from_millis(5);

fn writer(handle: &Handle, path: &Path, rx: &mpsc::Receiver<Box<dyn WriteJob>>) {
    let mut broken = false;
    let mut last_commit: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = last_commit
            .filter(|t| t.elapsed() < BUSY)
            .map(|_| Instant::now() + COMMIT_DELAY);
        while batch.len() < MAX_BATCH {
            let next = match deadline {
                Some(d) => rx
                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                    .ok(),
                None => rx.try_recv().ok(),
            };
            match next {
                Some(job) => batch.push(job),
                None => break,
            }
        }
        if broken {
            match handle.reopen(path) {
                Ok(()) => broken = false,
                Err(e) => {
                    tracing::error!(error = %e, "store cannot be reopened yet");
                    let (message, disk_full) = (e.to_string(), e.is_disk_full());
                    batch.into_iter().for_each(|job| {
                        job.fail(StoreError::Commit {
                            message: message.clone(),
                            disk_full,
                        })
                    });
                    continue;
                }
            }
        }
        let Some(db) = handle.get() else {
            batch
                .into_iter()
                .for_each(|job| job.fail(StoreError::Closed));
            continue;
        };
        broken = run_batch(&db, batch, &handle.commits);
        last_commit = Some(Instant::now());
    }
}

/// Runs a batch to a single commit, dropping jobs that fail; returns whether redb must be
/// reopened (a transaction could not begin or commit).
fn run_batch(
    db: &Database,
    mut pending: Vec<Box<dyn WriteJob>>,
    commits: &crate::metrics::Histogram,
) -> bool {
    let mut failed = Vec::new();
    let broken = loop {
        let txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "store transaction could not begin");
                let failure = commit_failure(e);
                pending.into_iter().for_each(|job| job.fail(failure()));
                break true;
            }
        };
        let (ok, bad): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .map(|mut j| (j.run(&txn), j))
            .partition(|(ok, _)| *ok);
        pending = ok.into_iter().map(|(_, j)| j).collect();
        if !bad.is_empty() {
            failed.extend(bad.into_iter().map(|(_, j)| j));
            let _ = txn.abort(); // a failed job may have written half: run the rest again
            if pending.is_empty() {
                break false;
            }
            continue;
        }
        let started = std::time::Instant::now();
        let committed = txn.commit();
        commits.observe_duration(started.elapsed());
        match committed {
            Ok(()) => {
                pending.into_iter().for_each(|j| j.complete(Ok(())));
                break false;
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; nothing in this batch was acknowledged");
                let failure = commit_failure(e);
                pending.into_iter().for_each(|j| j.complete(Err(&failure)));
                break true;
            }
        }
    };
    failed.into_iter().for_each(|j| j.complete(Ok(())));
    broken
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

    const T: TableDefinition<'_, &str, u64> = TableDefinition::new("t");

    /// Polls `f` once: a [`Store::write`] hands its job to the writer thread on its first poll.
    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// A job that writes `key` and counts its runs: a job runs once per attempt of its batch.
    fn counted(
        key: &'static str,
        runs: &Arc<AtomicUsize>,
    ) -> impl Fn(&WriteTransaction) -> Result<(), StoreError> + Send + 'static {
        let runs = Arc::clone(runs);
        move |txn| {
            runs.fetch_add(1, Ordering::SeqCst);
            txn.open_table(T)?.insert(key, 2)?;
            Ok(())
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
                txn.open_table(T)?.insert("holder", 0)?;
                Ok(())
            }
        }));
        assert!(poll_once(holder.as_mut()).is_pending());
        entered.notified().await; // the writer thread is inside the holder's job now
        let before = commits();

        let (first_runs, second_runs) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut half = pin!(store.write(|txn| -> Result<(), StoreError> {
            txn.open_table(T)?.insert("half-written", 1)?;
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
                let t = txn.open_table(T)?;
                let get = |k| Ok::<_, StoreError>(t.get(k)?.map(|v| v.value()));
                Ok((get("half-written")?, get("first")?, get("second")?))
            })
            .await
            .unwrap();
        assert_eq!((a, b, c), (None, Some(2), Some(2)));
    }
}
