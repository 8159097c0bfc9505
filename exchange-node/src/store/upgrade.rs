//! Upgrading a node store of schema 1 (typed redb tables, counters in `meta`) to schema 2
//! ([`kv`](exchange_core::store::kv) tables, counters in `kv::COUNTERS`) when it is opened, in
//! one write transaction (`exchange_core::store::migrate`): a crash or a full disk half-way
//! leaves schema 1 whole, and the next start upgrades again.
//!
//! Every key keeps its bytes and its order: a document id or a client key is its string's
//! bytes, as redb stored a `&str`; an event seq becomes eight big-endian bytes; the outbox's
//! `(destination, priority, seq)` becomes the `kv::Key` tuple that `DurableQueue` writes.
//! Values are copied as they are, sealed or not: a sealed value's AAD is its slot (table name
//! and key bytes, [`slot`](exchange_core::store::sealing::slot)), and both stay the same, so
//! the upgrade needs no key and every value still opens.

use std::path::Path;

use exchange_core::store::{
    StoreError,
    content::CONTENT,
    migrate::{self, Upgrade},
    queue::{self, QueueKey},
};
use redb::{TableDefinition, WriteTransaction};

use super::{EVENTS, IDEMPOTENCY, INBOX, KIND, OUTBOX, SCHEMA, SENT, events::EVENT_SEQ};

#[cfg(test)]
mod tests;

/// The tables of schema 1, as it defined them; nothing else reads them.
mod v1 {
    use redb::TableDefinition;

    pub(super) const SENT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sent");
    pub(super) const INBOX: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("inbox");
    pub(super) const IDEMPOTENCY: TableDefinition<'_, &str, &str> =
        TableDefinition::new("idempotency");
    pub(super) const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
    pub(super) const OUTBOX: TableDefinition<'_, (&str, u8, u64), &[u8]> =
        TableDefinition::new("outbox");
    pub(super) const CONTENT: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("content");
    /// The counters schema 1 kept in `meta`: the outbox's (`DurableQueue`) and the events'.
    pub(super) const COUNTERS: &[&str] = &["queue_seq", super::EVENT_SEQ];
}

/// Upgrades the node store at `path` from schema 1, if it has schema 1; nothing if it is new or
/// current (`exchange_core::store::migrate::upgrade` logs the upgrade, once, at info).
pub(super) fn upgrade(path: &Path) -> Result<Upgrade, StoreError> {
    migrate::upgrade(path, KIND, 1, SCHEMA, steps)
}

/// Moves every table of schema 1 into its kv table, and the counters out of `meta`.
fn steps(txn: &WriteTransaction) -> Result<(), StoreError> {
    let moved = [
        ("sent", by_string(txn, v1::SENT, SENT)?),
        ("inbox", by_string(txn, v1::INBOX, INBOX)?),
        (
            "idempotency",
            migrate::move_table(txn, v1::IDEMPOTENCY, IDEMPOTENCY, |k: &str, v: &str| {
                Ok((k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            })?,
        ),
        (
            "events",
            migrate::move_table(txn, v1::EVENTS, EVENTS, |seq: u64, v: &[u8]| {
                Ok((super::events::key(seq).to_vec(), v.to_vec()))
            })?,
        ),
        (
            "outbox",
            migrate::move_table(
                txn,
                v1::OUTBOX,
                OUTBOX.table(),
                |(dest, priority, seq): (&str, u8, u64), v: &[u8]| {
                    // `DurableQueue`'s key: (destination, priority, seq).
                    let key = queue::key(dest, QueueKey { priority, seq });
                    Ok((key, v.to_vec()))
                },
            )?,
        ),
        (
            "content",
            migrate::move_table(txn, v1::CONTENT, CONTENT, |k: &[u8], v: &[u8]| {
                Ok((k.to_vec(), v.to_vec()))
            })?,
        ),
    ];
    migrate::move_counters(txn, v1::COUNTERS)?;
    tracing::debug!(?moved, "node store tables moved to schema 2");
    Ok(())
}

/// Moves a table keyed by document id: the key stays the id's bytes.
fn by_string(
    txn: &WriteTransaction,
    from: TableDefinition<'_, &str, &[u8]>,
    to: exchange_core::store::kv::Table,
) -> Result<u64, StoreError> {
    migrate::move_table(txn, from, to, |k: &str, v: &[u8]| {
        Ok((k.as_bytes().to_vec(), v.to_vec()))
    })
}
