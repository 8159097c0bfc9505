//! The hub's durable state: accepted documents (once each), per-recipient deliveries, evidence,
//! and one priority queue per department of what is still to be pushed to it.
//!
//! Tables (see `exchange_core::store` for the durability rule):
//! - `documents`: doc id → `HubDocument` ([`records::DocumentRecord`])
//! - `deliveries`: (doc id, recipient) → `HubDelivery` ([`records::DeliveryRecord`])
//! - `evidence`: (doc id, recipient or "", kind code) → encoded `SignedEvidence`
//! - `recalls`: doc id → `HubRecall` (the sender's signed RECALL, once recalled)
//! - `content`: SHA-256 → bytes, the content of small documents sent inline (larger content is
//!   in the blob store)
//! - `outbound` queue: per destination department → `QueueItem` ([`Outbound`]: deliver a
//!   document, evidence for its sender, or a notice — recall or reminder — for a recipient)
//!
//! Stored values are decoded once, here, into typed records; a value that does not decode (an
//! unknown state code included) is a [`StoreError`] naming the record, never a default. The
//! functions return store errors, or a [`StepError`] where the request itself can be refused;
//! only the gRPC layer turns those into status codes.
//!
//! One concern per submodule: [`documents`] (accepting and reading documents), [`deliveries`]
//! (evidence moving a recipient's delivery), [`statements`] (the sender's recall, added
//! recipient and reminder), [`outbound`] (the push queue), [`push`] (what one push needs) and
//! [`scan`] (the statistics scan).

mod deliveries;
mod documents;
mod error;
mod outbound;
mod push;
mod records;
mod scan;
mod statements;
#[cfg(test)]
mod tests;

use exchange_core::{
    document::EvidenceKind,
    store::{StoreError, content::CONTENT, encode, queue::DurableQueue},
};
use exchange_proto::v1 as pb;
use redb::{ReadOnlyTable, ReadTransaction, TableDefinition, WriteTransaction};

pub(crate) use deliveries::{About, acceptance, delivery, record_evidence};
pub(crate) use documents::{Accepted, accept, document, get_document, inline_content};
pub(crate) use error::StepError;
pub(crate) use outbound::{Outbound, ack, next_outbound, queued_deliveries};
pub(crate) use push::push_view;
pub(crate) use scan::{DeliveryFacts, scan_accepted};
pub(crate) use statements::{Reminder, add_recipient, recall, remind};

/// Schema version of the hub store.
pub(crate) const SCHEMA: u64 = 1;

const DOCUMENTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("documents");
const DELIVERIES: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("deliveries");
const EVIDENCE: TableDefinition<'_, (&str, &str, u8), &[u8]> = TableDefinition::new("evidence");
const RECALLS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("recalls");
/// What the hub still has to push, per destination department.
pub(crate) const OUTBOUND: DurableQueue = DurableQueue::new("outbound");
/// Every table of this module, for a backup (`crate::backup`).
pub(crate) const TABLES: &[&dyn exchange_core::backup::BackupTable] = &[
    &DOCUMENTS,
    &DELIVERIES,
    &EVIDENCE,
    &RECALLS,
    &CONTENT,
    &OUTBOUND,
];

/// Opens `table` for reading; `None` if nothing was ever written to it (a new store).
fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<'_, K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Keeps signed evidence about document `id` (`dept` = "" for evidence about no recipient).
fn put_evidence(
    txn: &WriteTransaction,
    id: &str,
    dept: &str,
    kind: EvidenceKind,
    ev: &pb::SignedEvidence,
) -> Result<(), StoreError> {
    txn.open_table(EVIDENCE)?
        .insert((id, dept, kind.code()), encode(ev).as_slice())?;
    Ok(())
}
