//! The hub's durable state: accepted documents (once each), per-recipient deliveries, evidence,
//! and one priority queue per department of what is still to be pushed to it.
//!
//! Tables (`exchange_core::store::kv`, on redb or PostgreSQL; see `exchange_core::store` for
//! the durability rule). Keys: a document id alone is its bytes; tuples are `kv::Key`s.
//! - `documents`: doc id → `HubDocument` ([`records::DocumentRecord`])
//! - `deliveries`: (doc id, recipient) → `HubDelivery` ([`records::DeliveryRecord`])
//! - `evidence`: (doc id, recipient or "", kind code) → encoded `SignedEvidence`
//! - `recalls`: doc id → `HubRecall` (the sender's signed RECALL, once recalled)
//! - `content`: (doc id, digest) → bytes, the content of small documents sent inline, per
//!   document (digest → bytes in stores written before; `exchange_core::store::content`);
//!   larger content is in the blob store
//! - `outbound` queue: per destination department → `QueueItem` ([`Outbound`]: deliver a
//!   document, evidence for its sender, or a notice — recall or reminder — for a recipient)
//! - `relay_out` queue: per peer exchange → `QueueItem` ([`PeerItem`]: relay a document, or
//!   pass evidence on; docs/federation.md)
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
mod relay;
mod scan;
mod statements;
#[cfg(test)]
mod tests;

use exchange_core::{
    document::EvidenceKind,
    store::{
        StoreError,
        content::CONTENT,
        encode,
        kv::{Key, KeyRange, KeyReader, Table, WriteTables},
        queue::DurableQueue,
    },
};
use exchange_proto::v1 as pb;

pub(crate) use deliveries::{About, AckStep, Back, acceptance, ack_all, delivery, record_evidence};
pub(crate) use documents::{
    Accepted, Plan, ToAccept, accept, accept_all, document, get_document, inline_content,
};
pub(crate) use error::StepError;
pub(crate) use outbound::{Next, Outbound, Taken, ack, next_outbound, queued_deliveries};
pub(crate) use push::{PushView, push_view};
pub(crate) use records::{DocumentRecord, Relayed};
pub(crate) use relay::{
    PeerItem, addition, next_for_peer, peer_done, queued_relays, relay_given_up, relayed_by_peer,
    relayed_further,
};
pub(crate) use scan::{DeliveryFacts, scan_accepted};
pub(crate) use statements::{Reminder, add_recipient, recall, remind};

/// Schema version of the hub store: 2 since its tables are `kv` tables (1: typed redb tables,
/// upgraded by `exchange-hub migrate`).
pub(crate) const SCHEMA: u64 = 2;

const DOCUMENTS: Table = Table::new("documents");
const DELIVERIES: Table = Table::new("deliveries");
const EVIDENCE: Table = Table::new("evidence");
const RECALLS: Table = Table::new("recalls");
/// What the hub still has to push, per destination department.
pub(crate) const OUTBOUND: DurableQueue = DurableQueue::new("outbound");
/// What the hub still has to hand to each peer hub, per peer exchange (docs/federation.md).
pub(crate) const RELAY_OUT: DurableQueue = DurableQueue::new("relay_out");
/// Every table of this module, for a backup (`crate::backup`) and `migrate`.
pub(crate) const TABLES: &[Table] = &[
    DOCUMENTS,
    DELIVERIES,
    EVIDENCE,
    RECALLS,
    CONTENT,
    OUTBOUND.table(),
    RELAY_OUT.table(),
];

/// The key of document `id`'s delivery to `dept` (the recipient as the header names it).
fn delivery_key(id: &str, dept: &str) -> Vec<u8> {
    Key::new().str(id).str(dept).finish()
}

/// Every delivery of document `id`.
fn deliveries_of_doc(id: &str) -> KeyRange {
    KeyRange::prefix(Key::new().str(id))
}

/// The (document, recipient) of a delivery key.
fn parse_delivery_key(raw: &[u8]) -> Result<(String, String), StoreError> {
    let mut r = KeyReader::new(raw);
    let (id, dept) = (r.str()?, r.str()?);
    r.end()?;
    Ok((id, dept))
}

/// The key of evidence of `kind` about document `id` (`dept` = "" for evidence about no
/// recipient).
fn evidence_key(id: &str, dept: &str, kind: EvidenceKind) -> Vec<u8> {
    Key::new().str(id).str(dept).u8(kind.code()).finish()
}

/// Keeps signed evidence about document `id` (`dept` = "" for evidence about no recipient).
fn put_evidence(
    txn: &dyn WriteTables,
    id: &str,
    dept: &str,
    kind: EvidenceKind,
    ev: &pb::SignedEvidence,
) -> Result<(), StoreError> {
    txn.put(EVIDENCE, &evidence_key(id, dept, kind), &encode(ev))
}
