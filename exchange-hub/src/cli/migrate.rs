//! `exchange-hub --config F migrate`: brings the hub's store to the schema this build reads,
//! with the hub stopped. A hub refuses to start on a schema it does not know; `migrate` is the
//! one step that changes one.
//!
//! Schema 1 (up to this version) kept typed redb tables; schema 2 keeps the same records in
//! `kv` tables (byte keys, the form PostgreSQL holds too: `exchange_core::store::kv`). The
//! upgrade copies every row in one redb transaction: a crash or a full disk half-way leaves
//! schema 1 whole, and running it again starts over. Values are copied as they are, so sealed
//! records (encryption at rest) stay sealed and still open: their seal binds the table name
//! and the record's key, which do not change.

use anyhow::{Context as _, Result};
use exchange_core::{
    config::HubConfig,
    store::{
        StoreError,
        kv::{Key, Table, postgres::blocking},
        migrate::{Upgrade, move_counters, move_table, upgrade},
        queue::{self, QueueKey},
    },
};
use redb::{TableDefinition, WriteTransaction};

use crate::{StoreTarget, store::SCHEMA};

/// Runs `migrate`; prints what it did.
pub fn run(cfg: &HubConfig) -> Result<()> {
    match crate::store_target(cfg)? {
        StoreTarget::Redb(path) => {
            let done =
                upgrade_file(&path).with_context(|| format!("upgrading {}", path.display()))?;
            match done {
                Upgrade::Current => println!("{}: schema {SCHEMA}, nothing to do", path.display()),
                Upgrade::From(v) => {
                    println!("{}: upgraded from schema {v} to {SCHEMA}", path.display());
                }
            }
        }
        StoreTarget::Postgres(target) => {
            let before = blocking(|| -> Result<_> {
                let mut conn = target
                    .connect()
                    .with_context(|| format!("connecting to {}", target.shown()))?;
                let before = conn.schema_version("hub")?;
                conn.migrate("hub", SCHEMA, &postgres_tables())
                    .with_context(|| format!("creating the hub's tables in {}", target.shown()))?;
                Ok(before)
            })?;
            match before {
                Some(v) if v == SCHEMA => {
                    println!("{}: schema {SCHEMA}, nothing to do", target.shown());
                }
                _ => println!("{}: schema {SCHEMA} created", target.shown()),
            }
        }
    }
    Ok(())
}

/// Every table of the hub in PostgreSQL: those a backup copies, and the store's flags.
pub(crate) fn postgres_tables() -> Vec<Table> {
    let mut all = crate::backup::tables();
    all.push(exchange_core::store::SETTINGS);
    // Who pushes to which department: only hubs sharing a database write it, and a backup
    // does not keep it.
    all.push(crate::lease::LEASES);
    // Content blobs: in the database, so that every hub on it serves them (a backup writes
    // them out as blob files).
    all.extend(exchange_core::blob::database::TABLES);
    all
}

/// Upgrades the hub store file at `path` to [`SCHEMA`].
pub(crate) fn upgrade_file(path: &std::path::Path) -> Result<Upgrade, StoreError> {
    upgrade(path, "hub", 1, SCHEMA, from_schema_1)
}

/// A table of schema 1 and its `kv` table in schema 2.
fn kv(name: &'static str) -> Table {
    Table::new(name)
}

/// Schema 1 → 2: every typed table into its `kv` table, keys encoded as the modules of schema
/// 2 read them (`crate::store`, `crate::audit`), the queue counter out of `meta`.
fn from_schema_1(txn: &WriteTransaction) -> Result<(), StoreError> {
    let bytes = |k: &str, v: &[u8]| Ok((k.as_bytes().to_vec(), v.to_vec()));
    let seq = |k: u64, v: &[u8]| Ok((k.to_be_bytes().to_vec(), v.to_vec()));
    let by_string =
        |(s, seq): (&str, u64), (): ()| Ok((Key::new().str(s).u64(seq).finish(), vec![]));

    let documents: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("documents");
    move_table(txn, documents, kv("documents"), bytes)?;
    let recalls: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("recalls");
    move_table(txn, recalls, kv("recalls"), bytes)?;
    let deliveries: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("deliveries");
    move_table(txn, deliveries, kv("deliveries"), |(id, dept), v| {
        Ok((Key::new().str(id).str(dept).finish(), v.to_vec()))
    })?;
    let evidence: TableDefinition<'_, (&str, &str, u8), &[u8]> = TableDefinition::new("evidence");
    move_table(txn, evidence, kv("evidence"), |(id, dept, kind), v| {
        Ok((Key::new().str(id).str(dept).u8(kind).finish(), v.to_vec()))
    })?;
    let content: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("content");
    move_table(txn, content, kv("content"), |k, v| {
        Ok((k.to_vec(), v.to_vec()))
    })?;
    let outbound: TableDefinition<'_, (&str, u8, u64), &[u8]> = TableDefinition::new("outbound");
    move_table(txn, outbound, kv("outbound"), |(dest, priority, seq), v| {
        Ok((queue::key(dest, QueueKey { priority, seq }), v.to_vec()))
    })?;

    let audit: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit");
    move_table(txn, audit, kv("audit"), seq)?;
    let checkpoints: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit_checkpoints");
    move_table(txn, checkpoints, kv("audit_checkpoints"), seq)?;
    let by_doc: TableDefinition<'_, (&str, u64), ()> = TableDefinition::new("audit_by_doc");
    move_table(txn, by_doc, kv("audit_by_doc"), by_string)?;
    let by_dept: TableDefinition<'_, (&str, u64), ()> = TableDefinition::new("audit_by_dept");
    move_table(txn, by_dept, kv("audit_by_dept"), by_string)?;
    let by_time: TableDefinition<'_, (i64, u64), ()> = TableDefinition::new("audit_by_time");
    move_table(txn, by_time, kv("audit_by_time"), |(at, seq), ()| {
        Ok((Key::new().i64(at).u64(seq).finish(), vec![]))
    })?;
    let head: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("audit_head");
    move_table(txn, head, kv("audit_head"), bytes)?;

    move_counters(txn, &["queue_seq"])
}
