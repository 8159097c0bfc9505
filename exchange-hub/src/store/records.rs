//! The typed form of the hub's stored records, and their one encoding and decoding. Everything
//! read from the `documents` and `deliveries` tables goes through here, so that a record that
//! does not decode — a missing field, an invalid header, an unknown state code — is reported
//! as a [`StoreError`] naming the record, in one place.

use std::sync::Arc;

use exchange_core::{
    document::SignedDoc,
    ids::ExchangeName,
    state::DeliveryState,
    store::{
        StoreError, decode, encode,
        sealing::{Sealer, slot},
    },
};
use exchange_proto::{store::v1 as st, v1 as pb};

/// A document the hub accepted: stored once, with the acceptance the hub signed for it.
#[derive(Debug, Clone)]
pub(crate) struct DocumentRecord {
    /// The document as the sender signed it (verified before it was stored); shared, not
    /// copied, with the submission that stored it (a header is many small allocations).
    pub(crate) doc: Arc<SignedDoc>,
    /// The hub's signed ACCEPTED: what a repeated submission gets again, and what goes with
    /// every delivery.
    pub(crate) acceptance: pb::SignedEvidence,
    /// When the hub accepted it (hub clock, Unix ms): expiry and statistics count from here.
    pub(crate) accepted_at_ms: i64,
    /// Where it came from, for a document of a linked exchange (docs/federation.md).
    pub(crate) relay: Option<Relayed>,
}

/// How a document of a linked exchange reached this hub.
#[derive(Debug, Clone)]
pub(crate) struct Relayed {
    /// The sender's exchange: the one the header's names are relative to.
    pub(crate) origin: ExchangeName,
    /// The peer whose hub handed it over: evidence about it goes back there.
    pub(crate) from_peer: ExchangeName,
    /// The exchanges whose hubs held it before this one, the origin first.
    pub(crate) via: Vec<ExchangeName>,
    /// This hub's RELAYED, answered again to a repeated relay.
    pub(crate) relayed: pb::SignedEvidence,
}

impl DocumentRecord {
    /// The sender's exchange (`None`: this exchange's own document).
    pub(crate) fn origin(&self) -> Option<&ExchangeName> {
        self.relay.as_ref().map(|r| &r.origin)
    }
}

impl DocumentRecord {
    /// Decodes (opening, when sealed) the record of document `id`.
    pub(crate) fn decode(sealer: &Sealer, id: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        let what = format!("document {id}");
        let bytes = sealer.open(&what, &slot("documents", id.as_bytes()), bytes)?;
        let rec: st::HubDocument = decode(&what, &bytes)?;
        let wire = rec
            .document
            .ok_or_else(|| StoreError::decode(&what, "no document"))?;
        let acceptance = rec
            .acceptance
            .ok_or_else(|| StoreError::decode(&what, "no acceptance"))?;
        let relay = if rec.origin_exchange.is_empty() {
            None
        } else {
            let name = |s: &str| {
                s.parse::<ExchangeName>()
                    .map_err(|e| StoreError::decode(&what, e))
            };
            Some(Relayed {
                origin: name(&rec.origin_exchange)?,
                from_peer: name(&rec.from_peer)?,
                via: rec.via.iter().map(|v| name(v)).collect::<Result<_, _>>()?,
                relayed: rec
                    .relayed
                    .ok_or_else(|| StoreError::decode(&what, "relayed, without RELAYED"))?,
            })
        };
        Ok(DocumentRecord {
            doc: Arc::new(SignedDoc::decode(wire).map_err(|e| StoreError::decode(&what, e))?),
            acceptance,
            accepted_at_ms: rec.accepted_at_ms,
            relay,
        })
    }

    /// The stored bytes: sealed when encryption is on (the signed header holds the title).
    pub(crate) fn encode(&self, sealer: &Sealer) -> Result<Vec<u8>, StoreError> {
        let r = self.relay.as_ref();
        let plain = encode(&st::HubDocument {
            document: Some(self.doc.wire.clone()),
            acceptance: Some(self.acceptance.clone()),
            accepted_at_ms: self.accepted_at_ms,
            origin_exchange: r.map(|r| r.origin.to_string()).unwrap_or_default(),
            from_peer: r.map(|r| r.from_peer.to_string()).unwrap_or_default(),
            via: r
                .map(|r| r.via.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            relayed: r.map(|r| r.relayed.clone()),
        });
        let id = self.doc.header.id.to_string();
        sealer.seal(&slot("documents", id.as_bytes()), plain)
    }
}

/// One recipient's delivery of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeliveryRecord {
    /// Where the delivery stands.
    pub(crate) state: DeliveryState,
    /// The time in the recipient's signed delivery receipt; 0 = not delivered yet.
    pub(crate) delivered_at_ms: i64,
    /// The time of the last later step (confirmed, rejected, not delivered, recall outcome);
    /// 0 = none yet.
    pub(crate) handled_at_ms: i64,
}

impl DeliveryRecord {
    /// A new delivery: accepted by the hub, queued for the recipient.
    pub(crate) fn accepted() -> Self {
        DeliveryRecord {
            state: DeliveryState::Accepted,
            delivered_at_ms: 0,
            handled_at_ms: 0,
        }
    }

    /// Decodes the delivery of document `id` to `dept`.
    pub(crate) fn decode(id: &str, dept: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        let what = format!("delivery {id}/{dept}");
        let rec: st::HubDelivery = decode(&what, bytes)?;
        Ok(DeliveryRecord {
            state: DeliveryState::try_from_code(rec.state)
                .map_err(|e| StoreError::decode(&what, e))?,
            delivered_at_ms: rec.delivered_at_ms,
            handled_at_ms: rec.handled_at_ms,
        })
    }

    /// The stored bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode(&st::HubDelivery {
            state: u32::from(self.state.code()),
            delivered_at_ms: self.delivered_at_ms,
            handled_at_ms: self.handled_at_ms,
        })
    }
}
