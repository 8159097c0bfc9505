//! The group-committing writer thread: jobs that arrive together run in one transaction and
//! are acknowledged by one commit, on either backend ([`Engine`]).

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::{
    StoreError,
    kv::{Failure, WriteTables},
};
use crate::metrics::Histogram;

/// Most write jobs committed in one transaction.
pub(super) const MAX_BATCH: usize = 512;

/// How many times a batch runs again after colliding with another writer of the same
/// database (PostgreSQL with several hubs) before its jobs fail.
const MAX_COLLISIONS: u32 = 16;

/// How long a busy writer waits for more jobs before it commits (PostgreSQL's `commit_delay`;
/// docs/benchmarks.md has 0.5 and 1 ms measured).
/// Every commit rewrites the pages from each touched leaf up to its table's root and redb's
/// allocator state, and fsyncs: that cost is per commit, whatever it holds, so under load a
/// commit that holds more acknowledgements costs less per acknowledgement.
const COMMIT_DELAY: Duration = Duration::from_micros(500);

/// A writer that committed less than this long ago is busy, and waits [`COMMIT_DELAY`]; an idle
/// writer commits at once.
const BUSY: Duration = Duration::from_millis(5);

pub(super) trait WriteJob: Send {
    /// Runs the job in `txn`, keeping its result; true if it succeeded.
    fn run(&mut self, txn: &dyn WriteTables) -> bool;
    /// Replies with the kept result, or with the commit's failure.
    fn complete(self: Box<Self>, commit: Result<(), &Failure>);
    /// Replies with `e` without having run (or after its results were discarded).
    fn fail(self: Box<Self>, e: StoreError);
}

pub(super) struct Job<F, R, E> {
    pub(super) f: F,
    pub(super) result: Option<Result<R, E>>,
    pub(super) reply: oneshot::Sender<Result<R, E>>,
}

impl<F, R, E> WriteJob for Job<F, R, E>
where
    F: Fn(&dyn WriteTables) -> Result<R, E> + Send,
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    fn run(&mut self, txn: &dyn WriteTables) -> bool {
        let r = (self.f)(txn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }
    fn complete(self: Box<Self>, commit: Result<(), &Failure>) {
        let reply = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Err(failure)) => Err(E::from(failure.error())),
            (Some(Ok(r)), Ok(())) => Ok(r),
            (None, _) => Err(E::from(StoreError::Closed)),
        };
        let _ = self.reply.send(reply);
    }
    fn fail(self: Box<Self>, e: StoreError) {
        let _ = self.reply.send(Err(E::from(e)));
    }
}

/// A database the writer commits to.
pub(super) trait Engine {
    /// A write transaction.
    type Txn<'a>: WriteTables
    where
        Self: 'a;
    /// Begins a write transaction, first reconnecting or reopening if the last one broke.
    fn begin(&mut self) -> Result<Self::Txn<'_>, StoreError>;
    /// Calls `f` with the tables of `txn` as the jobs of a batch use them (before the commit).
    fn with_tables(txn: &Self::Txn<'_>, f: &mut dyn FnMut(&dyn WriteTables));
    /// Commits; returns once the transaction is durable.
    fn commit(txn: Self::Txn<'_>) -> Result<(), StoreError>;
    /// Called after a transaction could not begin or commit (not after a collision): the next
    /// [`Engine::begin`] reopens or reconnects.
    fn broke(&mut self);
}

/// Receives jobs until every sender is gone, committing them in batches.
pub(super) fn run<G: Engine>(
    engine: &mut G,
    rx: &mpsc::Receiver<Box<dyn WriteJob>>,
    commits: &Histogram,
) {
    let mut last_commit: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        // A busy writer sleeps out the delay rather than waking for each job that arrives in
        // it (one wake-up per commit, not per job), then takes what came.
        if last_commit.is_some_and(|t| t.elapsed() < BUSY) {
            std::thread::sleep(COMMIT_DELAY);
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if !run_batch(engine, batch, commits) {
            engine.broke();
        }
        last_commit = Some(Instant::now());
    }
}

/// Runs a batch to a single commit, dropping jobs that fail; returns false if the engine must
/// reopen or reconnect (a transaction could not begin or commit).
fn run_batch<G: Engine>(
    engine: &mut G,
    mut pending: Vec<Box<dyn WriteJob>>,
    commits: &Histogram,
) -> bool {
    let mut failed = Vec::new();
    let mut collisions = 0;
    let healthy = loop {
        let txn = match engine.begin() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "store transaction could not begin");
                let failure = Failure::of(&e);
                pending
                    .into_iter()
                    .for_each(|job| job.fail(failure.error()));
                break false;
            }
        };
        // Jobs run one after the other; a job whose own logic fails is set aside and the rest
        // run again without it, in a new transaction (it may have written half). A failure of
        // the database itself (PostgreSQL: the transaction is then unusable) ends the attempt.
        let mut ran = Vec::with_capacity(pending.len());
        let mut broken: Option<Failure> = None;
        let mut set_aside = false;
        let mut jobs = pending.into_iter();
        G::with_tables(&txn, &mut |tables| {
            for mut job in jobs.by_ref() {
                let ok = job.run(tables);
                if let Some(f) = tables.failure() {
                    ran.push(job);
                    broken = Some(f);
                    return;
                }
                if ok {
                    ran.push(job);
                } else {
                    failed.push(job);
                    set_aside = true;
                }
            }
        });
        ran.extend(jobs);
        pending = ran;
        if let Some(f) = broken {
            drop(txn);
            if f.retry && collisions < MAX_COLLISIONS {
                collisions += 1;
                backoff(collisions);
                continue;
            }
            tracing::error!(error = %f.error(), "store transaction failed; nothing in this batch was acknowledged");
            pending.into_iter().for_each(|j| j.fail(f.error()));
            break f.retry; // a collision to the end leaves the connection sound
        }
        if set_aside {
            drop(txn); // aborts
            if pending.is_empty() {
                break true;
            }
            continue;
        }
        let started = Instant::now();
        let committed = G::commit(txn);
        commits.observe_duration(started.elapsed());
        match committed {
            Ok(()) => {
                pending.into_iter().for_each(|j| j.complete(Ok(())));
                break true;
            }
            Err(e) if e.is_retryable() && collisions < MAX_COLLISIONS => {
                collisions += 1;
                backoff(collisions);
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; nothing in this batch was acknowledged");
                let failure = Failure::of(&e);
                pending.into_iter().for_each(|j| j.complete(Err(&failure)));
                break e.is_retryable();
            }
        }
    };
    failed.into_iter().for_each(|j| j.complete(Ok(())));
    healthy
}

/// Waits a little, more after each collision, so that colliding writers spread out.
fn backoff(collisions: u32) {
    let ms = fastrand::u64(0..=(1u64 << collisions.min(6)));
    std::thread::sleep(Duration::from_millis(ms));
}

/// The embedded engine: the redb file, reopened after a failed commit (redb then refuses
/// further use of the handle; a reopen recovers once the cause — a full disk, an I/O error — is
/// gone).
pub(super) struct RedbEngine<'h> {
    pub(super) handle: &'h super::Handle,
    pub(super) path: PathBuf,
    pub(super) broken: bool,
}

impl Engine for RedbEngine<'_> {
    type Txn<'a>
        = redb::WriteTransaction
    where
        Self: 'a;

    fn begin(&mut self) -> Result<redb::WriteTransaction, StoreError> {
        if self.broken {
            self.handle.reopen(&self.path)?;
            self.broken = false;
        }
        let db = self.handle.get().ok_or(StoreError::Closed)?;
        Ok(db.begin_write()?)
    }

    fn with_tables(txn: &redb::WriteTransaction, f: &mut dyn FnMut(&dyn WriteTables)) {
        f(&super::kv::redb::OpenTables::new(txn));
    }

    fn commit(txn: redb::WriteTransaction) -> Result<(), StoreError> {
        txn.commit().map_err(|e| {
            let e: redb::Error = e.into();
            StoreError::Commit {
                message: e.to_string(),
                disk_full: super::is_full(&e),
            }
        })
    }

    fn broke(&mut self) {
        self.broken = true;
    }
}

impl RedbEngine<'_> {
    /// The writer thread of a redb store.
    pub(super) fn thread(
        handle: &super::Handle,
        path: &Path,
        rx: &mpsc::Receiver<Box<dyn WriteJob>>,
    ) {
        let mut engine = RedbEngine {
            handle,
            path: path.to_owned(),
            broken: false,
        };
        run(&mut engine, rx, &handle.commits);
    }
}

/// The PostgreSQL engine: the writer's own connection, made again after it breaks.
#[cfg(feature = "postgres")]
pub(super) struct PgEngine {
    pub(super) target: super::kv::postgres::PgTarget,
    pub(super) conn: Option<super::kv::postgres::PgConnection>,
}

#[cfg(feature = "postgres")]
impl Engine for PgEngine {
    type Txn<'a>
        = super::kv::postgres::PgTxn<'a>
    where
        Self: 'a;

    fn begin(&mut self) -> Result<Self::Txn<'_>, StoreError> {
        let conn = match &mut self.conn {
            Some(c) => c,
            slot @ None => slot.insert(self.target.connect()?),
        };
        conn.begin()
    }

    fn with_tables(txn: &Self::Txn<'_>, f: &mut dyn FnMut(&dyn WriteTables)) {
        f(txn);
    }

    fn commit(txn: Self::Txn<'_>) -> Result<(), StoreError> {
        txn.commit()
    }

    fn broke(&mut self) {
        self.conn = None;
    }
}
