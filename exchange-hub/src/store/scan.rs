//! The statistics scan (`crate::stats`): every document accepted in a period with every
//! delivery of it, read in the caller's one read transaction.

use exchange_core::store::kv::{self, ReadTables};
use exchange_core::{
    document::{EvidenceKind, SignedDoc, SignedEvidence},
    state::DeliveryState,
    store::{StoreError, decode, sealing::Sealer},
};
use exchange_proto::v1 as pb;

use super::{
    DOCUMENTS, EVIDENCE, deliveries::deliveries_of, evidence_key, records::DocumentRecord,
};

/// One delivery as `crate::stats` counts it.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryFacts {
    /// The recipient's id, as stored.
    pub(crate) recipient: String,
    /// Where the delivery stands (a stored code this build does not know fails the scan).
    pub(crate) state: DeliveryState,
    /// When the recipient's node had it (the time in its signed receipt); 0 = not known yet.
    pub(crate) delivered_at_ms: i64,
    /// The time in the recipient's CONFIRMED evidence (签收); 0 = none. Read from the evidence
    /// rather than `handled_at_ms`, which a later step (a recall acknowledgement) overwrites.
    pub(crate) confirmed_at_ms: i64,
}

/// A document and every delivery of it (named recipients and ones added later).
pub(crate) struct DocumentFacts {
    /// The document.
    pub(crate) doc: std::sync::Arc<SignedDoc>,
    /// Its sender, named relative to this exchange (`tax@county` for a linked exchange's).
    pub(crate) sender: String,
    /// Its deliveries, by recipient id.
    pub(crate) deliveries: Vec<DeliveryFacts>,
}

/// Calls `each` for every document the hub accepted within `period` (Unix ms, by
/// `accepted_at_ms`), in the caller's one read transaction, so that statistics are one consistent
/// snapshot. Reads every document record: meant for an administrator's occasional question, not a
/// hot path.
pub(crate) fn scan_accepted(
    txn: &dyn ReadTables,
    sealer: &Sealer,
    period: std::ops::Range<i64>,
    each: &mut dyn FnMut(DocumentFacts),
) -> Result<(), StoreError> {
    kv::for_each(txn, DOCUMENTS, 256, &mut |(k, v)| {
        let id = String::from_utf8(k).map_err(|e| StoreError::decode("document id", e))?;
        let rec = DocumentRecord::decode(sealer, &id, &v)?;
        if !period.contains(&rec.accepted_at_ms) {
            return Ok(());
        }
        let sender = match rec.origin() {
            Some(o) => format!("{}@{o}", rec.doc.header.sender),
            None => rec.doc.header.sender.to_string(),
        };
        let mut facts = DocumentFacts {
            sender,
            doc: rec.doc,
            deliveries: Vec::new(),
        };
        for (dept, d) in deliveries_of(txn, &id)? {
            let dept = dept.to_string();
            let confirmed =
                txn.get(EVIDENCE, &evidence_key(&id, &dept, EvidenceKind::Confirmed))?;
            let confirmed_at_ms = match confirmed {
                Some(v) => {
                    let what = format!("evidence {id}/{dept} confirmed");
                    let wire: pb::SignedEvidence = decode(&what, &v)?;
                    SignedEvidence::decode(wire)
                        .map_err(|e| StoreError::decode(&what, e))?
                        .evidence
                        .at_ms
                }
                None => 0,
            };
            facts.deliveries.push(DeliveryFacts {
                recipient: dept,
                state: d.state,
                delivered_at_ms: d.delivered_at_ms,
                confirmed_at_ms,
            });
        }
        each(facts);
        Ok(())
    })?;
    Ok(())
}
