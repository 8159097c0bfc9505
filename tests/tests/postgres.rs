//! PostgreSQL for the hub's store (issue 17). The harness's server keeps what it committed
//! through a SIGKILL; and, run by hand (`--ignored`), the commit rates of the shapes the hub's
//! backend would write, which settle whether it can carry half of redb's documents per second
//! on this machine:
//!
//! ```text
//! cargo test -p exchange-tests --release --test postgres -- --ignored --nocapture
//! ```

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use exchange_tests::{
    DEADLINE, eventually,
    postgres::{Postgres, process_cpu_time},
};
use futures_util::future::{BoxFuture, try_join_all};
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_rows_survive_sigkill_of_postgres() -> Result<()> {
    let Some(mut pg) = Postgres::for_test()? else {
        return Ok(());
    };
    let port = pg.port();
    let client = pg.connect().await?;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v bytea NOT NULL)")
        .await?;
    let content = vec![7u8; 4096];
    client
        .execute("INSERT INTO t VALUES (0, $1)", &[&content])
        .await?;
    // Written but never committed (never acknowledged): the crash must take it away.
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (-1, 'uncommitted')")
        .await?;
    // A writer committing row after row when the crash comes: every commit it saw returned
    // must be there afterwards (the one in flight may or may not be).
    let writer = pg.connect().await?;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writing = tokio::spawn({
        let acked = Arc::clone(&acked);
        async move {
            for id in 1.. {
                if writer
                    .execute("INSERT INTO t VALUES ($1, 'x')", &[&id])
                    .await
                    .is_err()
                {
                    break;
                }
                acked.lock().expect("not poisoned").push(id);
            }
        }
    });
    eventually("50 acknowledged commits", DEADLINE, || {
        let n = acked.lock().expect("not poisoned").len();
        async move { Ok((n >= 50).then_some(())) }
    })
    .await?;

    pg.kill()?;
    writing.await?;
    ensure!(
        client.simple_query("SELECT 1").await.is_err(),
        "a connection survived the postmaster's SIGKILL"
    );
    pg.start()?;
    assert_eq!(pg.port(), port, "a restart keeps the port");
    let client = pg.connect().await?;
    let first: Vec<u8> = client
        .query_one("SELECT v FROM t WHERE id = 0", &[])
        .await?
        .get(0);
    assert_eq!(first, content);
    let ids: Vec<i32> = client
        .query("SELECT id FROM t WHERE id > 0 ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let acked = acked.lock().expect("not poisoned").clone();
    assert!(
        ids.starts_with(&acked) && ids.len() <= acked.len() + 1,
        "acknowledged {} commits, found {} rows after crash recovery",
        acked.len(),
        ids.len()
    );
    let uncommitted: i64 = client
        .query_one("SELECT count(*) FROM t WHERE id < 0", &[])
        .await?
        .get(0);
    assert_eq!(uncommitted, 0, "an uncommitted row survived the crash");

    // A clean stop and start on the same data directory keeps them too.
    pg.stop()?;
    pg.start()?;
    let n: i64 = pg
        .connect()
        .await?
        .query_one("SELECT count(*) FROM t", &[])
        .await?
        .get(0);
    assert_eq!(n as usize, 1 + ids.len());
    Ok(())
}

/// How long each measured workload runs.
const RUN: Duration = Duration::from_secs(5);

/// Tables shaped like what the hub keeps when it accepts a document. Content is sealed
/// (encrypted) by the hub, so compressing it is wasted work: `STORAGE EXTERNAL`.
const SCHEMA: &str = "
CREATE TABLE single (id uuid PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE documents (id uuid PRIMARY KEY, sender text NOT NULL, header bytea NOT NULL,
    accepted_at timestamptz NOT NULL DEFAULT now());
ALTER TABLE documents ALTER COLUMN header SET STORAGE EXTERNAL;
CREATE TABLE contents (doc_id uuid NOT NULL, part smallint NOT NULL, chunk int NOT NULL,
    data bytea NOT NULL, PRIMARY KEY (doc_id, part, chunk));
ALTER TABLE contents ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE evidence (doc_id uuid NOT NULL, kind smallint NOT NULL, body bytea NOT NULL,
    PRIMARY KEY (doc_id, kind));
CREATE TABLE audit (seq bigserial PRIMARY KEY, doc_id uuid NOT NULL, entry bytea NOT NULL);
CREATE TABLE audit_head (id int PRIMARY KEY, seq bigint NOT NULL);
INSERT INTO audit_head VALUES (1, 0);
CREATE TABLE deliveries (doc_id uuid NOT NULL, recipient text NOT NULL, state smallint NOT NULL,
    PRIMARY KEY (doc_id, recipient));
CREATE TABLE queue (recipient text NOT NULL, seq bigserial, doc_id uuid NOT NULL,
    PRIMARY KEY (recipient, seq));
";

/// What one connection does in a loop; each call commits one transaction and returns how many
/// documents (or rows) it committed.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// (a, b) One single-row INSERT in autocommit: one round trip, one commit.
    SingleRow,
    /// (c) One document's acceptance, statement after statement (BEGIN, 7 INSERTs, COMMIT).
    Accept,
    /// (c) The same plus an UPDATE of one audit-chain head row, as one chain with several
    /// writers would need: the row lock is held through the commit's WAL flush.
    AcceptChainHead,
    /// (d) `n` documents' acceptance in one transaction, every statement in flight at once on
    /// the connection (pipelining): one round trip per transaction.
    Pipelined(usize),
}

/// One connection's prepared statements and the bytes it writes.
struct Conn {
    client: Client,
    single: Statement,
    document: Statement,
    content: Statement,
    evidence: Statement,
    audit: Statement,
    head: Statement,
    delivery: Statement,
    queue: Statement,
    dept: String,
    header: Vec<u8>,
    data: Vec<u8>,
    proof: Vec<u8>,
    entry: Vec<u8>,
}

impl Conn {
    async fn open(pg: &Postgres, i: usize) -> Result<Self> {
        let client = pg.connect().await?;
        let p = |sql: &'static str| {
            let client = &client;
            async move { client.prepare(sql).await.with_context(|| sql.to_owned()) }
        };
        let bytes = |n: usize| {
            let mut v = vec![0u8; n];
            fastrand::fill(&mut v);
            v
        };
        Ok(Conn {
            single: p("INSERT INTO single VALUES ($1, $2)").await?,
            document: p("INSERT INTO documents (id, sender, header) VALUES ($1, $2, $3)").await?,
            content: p("INSERT INTO contents VALUES ($1, 0, 0, $2)").await?,
            evidence: p("INSERT INTO evidence VALUES ($1, 1, $2)").await?,
            audit: p("INSERT INTO audit (doc_id, entry) VALUES ($1, $2)").await?,
            head: p("UPDATE audit_head SET seq = seq + 1 WHERE id = 1").await?,
            delivery: p("INSERT INTO deliveries VALUES ($1, $2, 0)").await?,
            queue: p("INSERT INTO queue (recipient, doc_id) VALUES ($1, $2)").await?,
            client,
            dept: format!("dept-{}", i % 4),
            header: bytes(1024),
            data: bytes(4096),
            proof: bytes(300),
            entry: bytes(200),
        })
    }

    async fn run(&mut self, work: Work) -> Result<u64> {
        match work {
            Work::SingleRow => {
                let data = &self.data[..100];
                self.client
                    .execute(&self.single, &[&Uuid::now_v7(), &data])
                    .await?;
                Ok(1)
            }
            Work::Accept => self.accept(false).await,
            Work::AcceptChainHead => self.accept(true).await,
            Work::Pipelined(n) => self.pipelined(n).await,
        }
    }

    async fn accept(&mut self, chain_head: bool) -> Result<u64> {
        let id = Uuid::now_v7();
        let tx = self.client.transaction().await?;
        tx.execute(&self.document, &[&id, &self.dept, &self.header])
            .await?;
        tx.execute(&self.content, &[&id, &self.data]).await?;
        tx.execute(&self.evidence, &[&id, &self.proof]).await?;
        for _ in 0..2 {
            tx.execute(&self.audit, &[&id, &self.entry]).await?;
        }
        tx.execute(&self.delivery, &[&id, &self.dept]).await?;
        tx.execute(&self.queue, &[&self.dept, &id]).await?;
        if chain_head {
            tx.execute(&self.head, &[]).await?;
        }
        tx.commit().await?;
        Ok(1)
    }

    async fn pipelined(&self, docs: usize) -> Result<u64> {
        type Query<'a> = BoxFuture<'a, Result<u64, tokio_postgres::Error>>;
        let c = &self.client;
        // Futures are first polled in this order, and each sends its request on its first
        // poll: the server receives BEGIN, the inserts, COMMIT, in order, without waiting.
        let mut queries: Vec<Query<'_>> = vec![Box::pin(async {
            c.batch_execute("BEGIN").await.map(|()| 0)
        })];
        for _ in 0..docs {
            let id = Uuid::now_v7();
            let (dept, header) = (&self.dept, &self.header);
            queries.push(Box::pin(async move {
                c.execute(&self.document, &[&id, dept, header]).await
            }));
            queries.push(Box::pin(async move {
                c.execute(&self.content, &[&id, &self.data]).await
            }));
            queries.push(Box::pin(async move {
                c.execute(&self.evidence, &[&id, &self.proof]).await
            }));
            for _ in 0..2 {
                queries.push(Box::pin(async move {
                    c.execute(&self.audit, &[&id, &self.entry]).await
                }));
            }
            queries.push(Box::pin(async move {
                c.execute(&self.delivery, &[&id, dept]).await
            }));
            queries.push(Box::pin(async move {
                c.execute(&self.queue, &[dept, &id]).await
            }));
        }
        queries.push(Box::pin(async {
            c.batch_execute("COMMIT").await.map(|()| 0)
        }));
        try_join_all(queries).await?;
        Ok(docs as u64)
    }
}

/// `pg_stat_wal`'s (wal_records, wal_bytes, wal_sync) once every client backend but `ctl` has
/// exited (a backend's WAL statistics reach the view at the latest when it exits).
async fn wal_stats(ctl: &Client) -> Result<(i64, i64, i64)> {
    let start = Instant::now();
    loop {
        let others: i64 = ctl
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                &[],
            )
            .await?
            .get(0);
        if others == 0 {
            break;
        }
        ensure!(start.elapsed() < RUN, "benchmark connections did not close");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let row = ctl
        .query_one(
            "SELECT wal_records, wal_bytes::bigint, wal_sync FROM pg_stat_wal",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Runs `work` on `conns` connections for [`RUN`] and prints what it measured.
async fn measure(pg: &Postgres, ctl: &Client, conns: usize, work: Work) -> Result<()> {
    ctl.batch_execute(
        "TRUNCATE single, documents, contents, evidence, audit, deliveries, queue; CHECKPOINT",
    )
    .await?;
    let wal0 = wal_stats(ctl).await?;
    let mut open = Vec::with_capacity(conns);
    for i in 0..conns {
        open.push(Conn::open(pg, i).await?);
    }
    let (pg0, me0) = (pg.cpu_time()?, process_cpu_time(std::process::id())?);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in open {
        tasks.spawn(async move {
            let mut done = 0u64;
            while start.elapsed() < RUN {
                done += c.run(work).await?;
            }
            anyhow::Ok((c, done))
        });
    }
    let mut finished = Vec::with_capacity(conns);
    let mut docs = 0;
    while let Some(r) = tasks.join_next().await {
        let (c, n) = r??;
        docs += n;
        finished.push(c);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (pg1, me1) = (pg.cpu_time()?, process_cpu_time(std::process::id())?);
    drop(finished);
    let wal1 = wal_stats(ctl).await?;
    let txns = match work {
        Work::Pipelined(n) => docs / n as u64,
        _ => docs,
    };
    let per_txn = |d: Duration| d.as_secs_f64() * 1e6 / txns.max(1) as f64;
    let per_txn_n = |n: i64| n as f64 / txns.max(1) as f64;
    println!(
        "{:<22} {conns:>3} conn  {:>8.0} docs/s {:>8.0} txn/s  mean {:>6.2} ms  \
         pg cpu {:>5.0} us/txn  client cpu {:>5.0} us/txn  wal_sync {:>5.2}/txn  \
         wal {:>6.0} B/txn  ({} records)",
        format!("{work:?}"),
        docs as f64 / elapsed,
        txns as f64 / elapsed,
        elapsed * 1e3 * conns as f64 / txns.max(1) as f64,
        per_txn(pg1.saturating_sub(pg0)),
        per_txn(me1.saturating_sub(me0)),
        per_txn_n(wal1.2 - wal0.2),
        per_txn_n(wal1.1 - wal0.1),
        wal1.0 - wal0.0,
    );
    Ok(())
}

/// redb beside it, in the same run on the same disk (the disk's fsync rate drifts with the
/// machine's load, so only same-run ratios mean something): `per_txn` documents per durable
/// commit, each a 1 KiB header, 4 KiB of content and 300 bytes of evidence.
fn measure_redb(per_txn: usize) -> Result<()> {
    const DOCS: redb::TableDefinition<'_, (u128, u8), &[u8]> = redb::TableDefinition::new("docs");
    let dir = tempfile::tempdir()?;
    let db = redb::Database::create(dir.path().join("bench.redb"))?;
    let (header, data, proof) = (vec![1u8; 1024], vec![2u8; 4096], vec![3u8; 300]);
    let cpu0 = process_cpu_time(std::process::id())?;
    let start = Instant::now();
    let mut docs = 0u64;
    while start.elapsed() < RUN {
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(DOCS)?;
            for _ in 0..per_txn {
                let id = Uuid::now_v7().as_u128();
                t.insert((id, 0), header.as_slice())?;
                t.insert((id, 1), data.as_slice())?;
                t.insert((id, 2), proof.as_slice())?;
                docs += 1;
            }
        }
        tx.commit()?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = process_cpu_time(std::process::id())?.saturating_sub(cpu0);
    let txns = docs / per_txn as u64;
    println!(
        "{:<22}   1 thread {:>8.0} docs/s {:>8.0} txn/s  mean {:>6.2} ms  cpu {:>5.0} us/txn",
        format!("redb({per_txn})"),
        docs as f64 / elapsed,
        txns as f64 / elapsed,
        elapsed * 1e3 / txns.max(1) as f64,
        cpu.as_secs_f64() * 1e6 / txns.max(1) as f64,
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (about a minute): run by hand with --ignored --nocapture"]
async fn measure_commit_rates_of_the_hubs_transactions() -> Result<()> {
    let Some(pg) = Postgres::for_test()? else {
        return Ok(());
    };
    let ctl = pg.connect().await?;
    ctl.batch_execute(SCHEMA).await?;
    let version: String = ctl.query_one("SHOW server_version", &[]).await?.get(0);
    let method: String = ctl.query_one("SHOW wal_sync_method", &[]).await?.get(0);
    println!(
        "PostgreSQL {version}, fsync=on, synchronous_commit=on, wal_sync_method={method}, \
         {RUN:?} per line"
    );
    let plan = [
        (Work::SingleRow, [1, 8, 32].as_slice()),
        (Work::Accept, &[1, 8, 32]),
        (Work::AcceptChainHead, &[8, 32]),
        (Work::Pipelined(1), &[1, 8, 32]),
        (Work::Pipelined(16), &[1, 2]),
    ];
    for (work, conns) in plan {
        for &n in conns {
            measure(&pg, &ctl, n, work).await?;
        }
    }
    for per_txn in [1, 16] {
        tokio::task::spawn_blocking(move || measure_redb(per_txn)).await??;
    }
    Ok(())
}
