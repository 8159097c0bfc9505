//! What redb costs on this machine, apart from the exchange: the CPU time of inserting a 4 KiB
//! value (a small document's content) and a 40-byte one (an index entry) per "document", at
//! random or sequential keys, with 1, 10 or 100 documents per commit, synced or not. The store
//! layout decisions in docs/benchmarks.md ("What redb costs here") rest on these figures. For
//! comparison, the same documents appended to a plain file, one `write` and one `fdatasync` per
//! commit: what a log-structured store (RabbitMQ's, JetStream's) pays for the same durability.
//!
//!     cargo run --release -p exchange-bench --example redb_costs
//!
//! Each case preloads 50,000 values (about 200 MB, beyond the 64 MiB cache the daemons give
//! redb, as a store that has served for a while), then times 20,000 documents.

use std::{io::Write, time::Instant};

use exchange_bench::procstat;
use redb::{Database, Durability, TableDefinition};

const VALUES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("values");
const INDEX: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("index");
const CACHE_BYTES: usize = 64 << 20;
const PRELOAD: u64 = 50_000;
const DOCS: usize = 20_000;

fn key(random: bool, seq: u64) -> [u8; 8] {
    if random {
        fastrand::u64(..).to_be_bytes()
    } else {
        seq.to_be_bytes()
    }
}

/// One case; prints CPU and wall time per document.
fn case(random: bool, per_commit: usize, synced: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(dir.path().join("costs.redb"))?;
    let value = vec![7u8; 4096];
    let mut seq = 0u64;
    while seq < PRELOAD {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(VALUES)?;
            for _ in 0..1000 {
                seq += 1;
                t.insert(&key(random, seq)[..], &value[..])?;
            }
        }
        txn.commit()?;
    }
    let (wall, cpu) = (Instant::now(), procstat::cpu_secs(std::process::id())?);
    for _ in 0..DOCS / per_commit {
        let mut txn = db.begin_write()?;
        if !synced {
            txn.set_durability(Durability::None)?;
        }
        {
            let (mut values, mut index) = (txn.open_table(VALUES)?, txn.open_table(INDEX)?);
            for _ in 0..per_commit {
                seq += 1;
                values.insert(&key(random, seq)[..], &value[..])?;
                index.insert(&seq.to_be_bytes()[..], &[1u8; 40][..])?;
            }
        }
        txn.commit()?;
    }
    let per_doc = |secs: f64| secs * 1e6 / DOCS as f64;
    println!(
        "4 KiB value at a {:10} key, {per_commit:3} per commit, {:8}: {:6.1} µs CPU, {:6.1} µs wall per document",
        if random { "random" } else { "sequential" },
        if synced { "synced" } else { "unsynced" },
        per_doc(procstat::cpu_secs(std::process::id())? - cpu),
        per_doc(wall.elapsed().as_secs_f64()),
    );
    Ok(())
}

/// The same documents appended to a file (a length-prefixed record each, as a log would keep
/// them), one write and one `fdatasync` per commit.
fn appended(per_commit: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("costs.log"))?;
    let value = vec![7u8; 4096];
    let mut seq = 0u64;
    let mut buf = Vec::with_capacity(per_commit * 4200);
    let (wall, cpu) = (Instant::now(), procstat::cpu_secs(std::process::id())?);
    for _ in 0..DOCS / per_commit {
        buf.clear();
        for _ in 0..per_commit {
            seq += 1;
            buf.extend_from_slice(&((value.len() + 48) as u32).to_be_bytes());
            buf.extend_from_slice(&seq.to_be_bytes());
            buf.extend_from_slice(&value);
            buf.extend_from_slice(&[1u8; 40]);
        }
        file.write_all(&buf)?;
        file.sync_data()?;
    }
    let per_doc = |secs: f64| secs * 1e6 / DOCS as f64;
    println!(
        "4 KiB record appended to a file, {per_commit:3} per commit, synced  : {:6.1} µs CPU, {:6.1} µs wall per document",
        per_doc(procstat::cpu_secs(std::process::id())? - cpu),
        per_doc(wall.elapsed().as_secs_f64()),
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    for per_commit in [1, 10, 100] {
        for (random, synced) in [(true, true), (false, true), (false, false)] {
            case(random, per_commit, synced)?;
        }
        appended(per_commit)?;
    }
    Ok(())
}
