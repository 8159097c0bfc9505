//! The node's durable state (see `exchange_core::store` for the durability rule: nothing is
//! acknowledged before the transaction holding it has committed).
//!
//! Tables:
//! - `sent`: doc id → `SentDocument` (what this department sent, each recipient's timeline)
//! - `inbox`: doc id → `ReceivedDocument` (what it received, and what the clerk did)
//! - `idempotency`: client key → doc id
//! - `events`: seq → `NodeEventRecord` (what `WatchEvents` replays)
//! - `outbox` queue (destination "hub"): documents to submit, evidence to send
//! - `content`: (doc id, digest) → bytes, small documents' content, per document (digest →
//!   bytes in stores written before; `exchange_core::store::content`)
//!
//! They are `exchange_core::store::kv` tables (schema 2): a key that is one string is its bytes,
//! the events' seq is eight big-endian bytes, the outbox's keys are `kv::Key` tuples. A store of
//! schema 1 (typed redb tables) is upgraded when it is opened ([`open`], [`upgrade`]).
//!
//! Callers see typed records — [`SentRecord`], [`InboxRecord`], [`OutboxItem`] — never the
//! stored protobuf messages. Each record is converted in one place (its module), so a record
//! that cannot be read (no document, an unknown state code) is reported there, once, as a
//! `StoreError::Decode` naming the record (`inbox <doc id>: unknown inbox state code 42`).
//!
//! Every change is one write transaction behind a function with typed arguments. Where the
//! change needs a decision (a recall, a reminder, a notice), the caller makes it on the typed
//! record inside [`change_sent`] / [`change_inbox`] and lists in an [`Effects`] what must be
//! written with it (statements queued for the hub, events, the outbox item it answers).
//!
//! - [`sent`]: what this department sent, and the hub's answers about it;
//! - [`inbox`]: what it received, and the clerk's actions;
//! - [`outbox`]: what waits for the hub;
//! - [`events`]: the event log `WatchEvents` follows.
//! - [`record`]: what the `sent` and `inbox` records share (read one, read all, change one);
//! - [`upgrade`]: from schema 1.

mod events;
mod inbox;
mod outbox;
mod record;
mod sent;
#[cfg(test)]
mod tests;
mod upgrade;

use std::{ops::Bound, path::Path};

use exchange_core::{
    config::EncryptionSection,
    crypto::Profile,
    document::{SignedDoc, SignedEvidence},
    store::{
        Store, StoreError,
        content::CONTENT,
        decode, encode,
        kv::{KeyRange, Order, ReadTables, Table, WriteTables},
        queue::{DurableQueue, QueueKey},
        sealing::{self, KeysError, Sealer, slot},
    },
};
use exchange_proto::v1 as pb;

pub(crate) use events::{Event, events_after};
pub(crate) use inbox::{
    Arrived, Delivered, Foreign, InboxRecord, change_inbox, handle, inbox, receipt_refused,
    receive, receive_all, received, replace_receipt,
};
pub(crate) use outbox::{OutboxItem, next_outbox, outbox_done};
pub(crate) use sent::{
    SentRecipient, SentRecord, all_sent, apply_evidence, apply_evidence_all, change_sent,
    change_sents, idempotent, refused, sent, sent_since, submit,
};

/// Schema version of the node store: 2 since its tables are `kv` tables (1: typed redb tables,
/// upgraded when the store is opened, [`upgrade`]).
pub(crate) const SCHEMA: u64 = 2;

/// The store's kind, in its stamps.
const KIND: &str = "node";

/// Doc id → `SentDocument`; the key is the id's string bytes (sealed values bind them).
const SENT: Table = Table::new("sent");
/// Doc id → `ReceivedDocument`; keyed like [`SENT`].
const INBOX: Table = Table::new("inbox");
/// Client key (its bytes) → doc id (its string bytes).
const IDEMPOTENCY: Table = Table::new("idempotency");
/// Event seq (eight bytes, big-endian, so that byte order is seq order) → `NodeEventRecord`.
const EVENTS: Table = Table::new("events");
/// The outbox queue (also read by `metrics` for its depths).
pub(crate) const OUTBOX: DurableQueue = DurableQueue::new("outbox");
/// Every table of this module, for a backup (`crate::backup`).
pub(crate) const TABLES: &[Table] = &[SENT, INBOX, IDEMPOTENCY, EVENTS, CONTENT, OUTBOX.table()];
/// The outbox's only destination.
const HUB: &str = "hub";

/// Records are read this many at a time by a scan.
const PAGE: usize = 256;

/// Opens the node store at `path` with the keys beside it as `section` asks (see
/// `exchange_core::store::sealing::open_store`; `create`: the daemon's start), upgrading a
/// schema-1 file to [`SCHEMA`] first.
pub(crate) fn open(
    path: &Path,
    profile: Profile,
    section: Option<&EncryptionSection>,
    create: bool,
) -> Result<Store, KeysError> {
    // The keys are checked before the file is touched: a wrong key neither upgrades nor opens
    // it. `open_store` unwraps them again; that costs a key file read, once per start.
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    sealing::data_keys(dir, profile, section)?;
    upgrade::upgrade(path)?;
    sealing::open_store(path, KIND, SCHEMA, profile, section, create)
}

/// Opens the node store at `path` without its keys (sealed values stay sealed: an offline
/// backup copies them as they are), upgrading a schema-1 file first.
pub(crate) fn open_unkeyed(path: &Path) -> Result<Store, StoreError> {
    upgrade::upgrade(path)?;
    Store::open(path, KIND, SCHEMA)
}

/// What a change to a record brings along, written in the same transaction as the record.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Signed statements for the hub, with their queue priority, in order.
    queued: Vec<(u8, pb::SignedEvidence)>,
    /// Events for `WatchEvents`, in order.
    events: Vec<Event>,
    /// The outbox item this change answers, removed with it.
    done: Option<QueueKey>,
}

impl Effects {
    /// Queues `ev` (a statement about `doc`) for the hub, as urgent as the document.
    pub(crate) fn queue(&mut self, doc: &SignedDoc, ev: &SignedEvidence) {
        self.queued
            .push((doc.header.urgency.priority(), ev.wire.clone()));
    }

    /// Logs `event` for `WatchEvents`.
    pub(crate) fn event(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Removes the outbox item `key` (the hub answered it).
    pub(crate) fn done(&mut self, key: QueueKey) {
        self.done = Some(key);
    }

    /// Writes the effects in `txn`; returns the seq of the last event logged, if any.
    fn commit(self, txn: &dyn WriteTables) -> Result<Option<u64>, StoreError> {
        for (priority, ev) in self.queued {
            outbox::push_evidence(txn, priority, ev)?;
        }
        let mut seq = None;
        for e in &self.events {
            seq = Some(events::log(txn, e)?);
        }
        if let Some(key) = self.done {
            OUTBOX.remove(txn, HUB, key)?;
        }
        Ok(seq)
    }
}

/// Decodes the stored bytes at `key` of `table`, opening them first when sealed: the `sent`
/// and `inbox` records hold the signed document, title included ([`Sealer`]). The slot is the
/// table's name and the key's string bytes, as in schema 1, so records sealed then still open.
fn unseal<M: prost::Message + Default>(
    sealer: &Sealer,
    table: Table,
    key: &str,
    stored: &[u8],
) -> Result<M, StoreError> {
    let what = format!("{table} {key}");
    let plain = sealer.open(&what, &slot(table.name(), key.as_bytes()), stored)?;
    decode(&what, &plain)
}

/// The stored message at `key` of `table`, in a read snapshot or a write transaction.
fn get<M: prost::Message + Default>(
    txn: &dyn ReadTables,
    sealer: &Sealer,
    table: Table,
    key: &str,
) -> Result<Option<M>, StoreError> {
    txn.get(table, key.as_bytes())?
        .map(|v| unseal(sealer, table, key, &v))
        .transpose()
}

/// Stores `m` at `key` of `table`, sealed when encryption is on.
fn put<M: prost::Message>(
    txn: &dyn WriteTables,
    sealer: &Sealer,
    table: Table,
    key: &str,
    m: &M,
) -> Result<(), StoreError> {
    let stored = sealer.seal(&slot(table.name(), key.as_bytes()), encode(m))?;
    txn.put(table, key.as_bytes(), &stored)
}

/// Every record of a table keyed by document id from `from` on, in id order, each converted by
/// `convert` (given its key).
fn all<M, R>(
    txn: &dyn ReadTables,
    sealer: &Sealer,
    table: Table,
    from: &str,
    convert: impl Fn(&str, M) -> Result<R, StoreError>,
) -> Result<Vec<R>, StoreError>
where
    M: prost::Message + Default,
{
    let mut out = Vec::new();
    let mut range = KeyRange {
        start: Bound::Included(from.as_bytes().to_vec()),
        end: Bound::Unbounded,
    };
    loop {
        let entries = txn.scan(table, &range, Order::Ascending, PAGE)?;
        let Some((last, _)) = entries.last() else {
            break;
        };
        range.start = Bound::Excluded(last.clone());
        let full = entries.len() == PAGE;
        for (k, v) in entries {
            let key =
                String::from_utf8(k).map_err(|e| StoreError::decode(format!("{table} key"), e))?;
            out.push(convert(&key, unseal(sealer, table, &key, &v)?)?);
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

/// The signed document of a stored record (`what`: e.g. `sent <id>`), read back without
/// checking its signature again (it was verified, or made here, before it was stored).
fn stored_doc(what: &str, wire: Option<pb::SignedDocument>) -> Result<SignedDoc, StoreError> {
    let wire = wire.ok_or_else(|| StoreError::decode(what, "no document"))?;
    SignedDoc::decode(wire).map_err(|e| StoreError::decode(what, format!("document: {e}")))
}
