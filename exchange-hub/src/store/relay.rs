//! The queue of what this hub still has to hand to each peer hub (docs/federation.md):
//! documents to relay and evidence to pass on, most urgent first, until the peer acknowledges
//! them. Items are typed ([`PeerItem`]) here and nowhere else.

use std::collections::HashSet;

use exchange_core::{
    document::{EvidenceKind, SignedEvidence},
    ids::{Address, DocumentId, ExchangeName},
    store::{Store, StoreError, decode, encode, kv::WriteTables, queue::QueueKey},
};
use exchange_proto::{store::v1 as st, v1 as pb};

use super::{About, EVIDENCE, RELAY_OUT, StepError, evidence_key, put_evidence};
use crate::audit::{self, Event};

/// What this hub hands next to a peer hub.
#[derive(Debug, Clone)]
pub(crate) enum PeerItem {
    /// A document, for these of its recipients (as its header names them).
    Relay {
        /// The document.
        doc: DocumentId,
        /// The recipients the peer takes custody for.
        recipients: Vec<Address>,
    },
    /// Evidence about a document relayed earlier, either way.
    Evidence(pb::SignedEvidence),
}

impl PeerItem {
    /// The stored bytes of the queue item.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let item = match self {
            PeerItem::Relay { doc, recipients } => st::queue_item::Item::RelayDoc(st::RelayDoc {
                doc_id: doc.to_string(),
                recipients: recipients.iter().map(ToString::to_string).collect(),
            }),
            PeerItem::Evidence(e) => st::queue_item::Item::RelayEvidence(e.clone()),
        };
        encode(&st::QueueItem { item: Some(item) })
    }

    /// Decodes a queue item; `what` names it in the error.
    pub(crate) fn decode(what: impl std::fmt::Display, bytes: &[u8]) -> Result<Self, StoreError> {
        let what = format!("relay {what}");
        let item: st::QueueItem = decode(&what, bytes)?;
        match item.item {
            Some(st::queue_item::Item::RelayDoc(r)) => Ok(PeerItem::Relay {
                doc: r.doc_id.parse().map_err(|e| StoreError::decode(&what, e))?,
                recipients: r
                    .recipients
                    .iter()
                    .map(|a| a.parse().map_err(|e| StoreError::decode(&what, e)))
                    .collect::<Result<_, _>>()?,
            }),
            Some(st::queue_item::Item::RelayEvidence(e)) => Ok(PeerItem::Evidence(e)),
            _ => Err(StoreError::decode(what, "not a relay item")),
        }
    }
}

/// The key under which a RELAYED is kept with its document: one per relaying hub and set of
/// recipients it took custody for (a recipient added later, 补发, gets a RELAYED of its own).
/// A RELAYED that does not decode, or names no custody, is an error: a shared fallback slot
/// would let it stand in for (or be taken for) another custody of the document.
pub(crate) fn relay_key(ev: &pb::SignedEvidence) -> Result<String, StoreError> {
    let what = "RELAYED evidence";
    let relay = SignedEvidence::decode(ev.clone())
        .map_err(|e| StoreError::decode(what, e))?
        .evidence
        .relay
        .ok_or_else(|| StoreError::decode(what, "it names no relaying hub and recipients"))?;
    Ok(relay_slot(&relay.hub, &relay.to))
}

/// [`relay_key`] of hub `hub`'s custody of `to`.
pub(crate) fn relay_slot(hub: &ExchangeName, to: &[Address]) -> String {
    let mut names: Vec<String> = to.iter().map(ToString::to_string).collect();
    names.sort();
    format!("relay:{hub}:{}", names.join(","))
}

/// The sender's RECIPIENT_ADDED (补发) kept for recipient `key` (named relative to this
/// exchange) of document `id`, if it was added after sending.
pub(crate) async fn addition(
    store: &Store,
    id: DocumentId,
    key: Address,
) -> Result<Option<pb::SignedEvidence>, StoreError> {
    store
        .lookup(move |txn| {
            let id = id.to_string();
            txn.get(
                EVIDENCE,
                &evidence_key(&id, &key.to_string(), EvidenceKind::RecipientAdded),
            )?
            .map(|v| decode(format!("addition {id}/{key}"), &v))
            .transpose()
        })
        .await
}

/// Every document waiting in a peer queue: (peer, queue key, document, recipients).
pub(crate) async fn queued_relays(
    store: &Store,
) -> Result<Vec<(ExchangeName, QueueKey, DocumentId, Vec<Address>)>, StoreError> {
    let items = store.read(|txn| RELAY_OUT.all(txn)).await?;
    let mut out = Vec::new();
    for (dest, key, bytes) in items {
        if let PeerItem::Relay { doc, recipients } = PeerItem::decode(key.seq, &bytes)? {
            let peer = dest.parse().map_err(|e| StoreError::decode(&dest, e))?;
            out.push((peer, key, doc, recipients));
        }
    }
    Ok(out)
}

/// This hub gives up on relaying a document to `peer` (its queue item `key`): each
/// NOT_DELIVERED it signed (one per recipient of the item) moves that delivery and goes back
/// towards the sender, and the item leaves the queue, in one transaction. A delivery that ended
/// otherwise meanwhile keeps its end.
pub(crate) async fn relay_given_up(
    store: &Store,
    about: About,
    evs: Vec<SignedEvidence>,
    peer: ExchangeName,
    key: QueueKey,
) -> Result<usize, StepError> {
    store
        .write(move |txn| {
            RELAY_OUT.remove(txn, peer.as_str(), key)?;
            let mut told = 0;
            for ev in &evs {
                match super::deliveries::record_in(txn, &about, ev, None) {
                    Ok(true) => told += 1,
                    Ok(false) => {}
                    Err(e) if e.is_state_conflict() => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(told)
        })
        .await
}

/// The most urgent item waiting for `peer` that is not in `busy`. An item that does not decode
/// comes with its key, so that the caller can set it aside rather than meet it again first on
/// every try.
pub(crate) async fn next_for_peer(
    store: &Store,
    peer: ExchangeName,
    busy: HashSet<QueueKey>,
) -> Result<Option<(QueueKey, Result<PeerItem, StoreError>)>, StoreError> {
    let items = store
        .lookup(move |txn| RELAY_OUT.peek(txn, peer.as_str(), 1, &busy))
        .await?;
    Ok(items
        .into_iter()
        .next()
        .map(|(k, v)| (k, PeerItem::decode(k.seq, &v))))
}

/// Removes an item the peer took (or that cannot be handed over), with an audit entry, in one
/// transaction.
pub(crate) async fn peer_done(
    store: &Store,
    peer: ExchangeName,
    key: QueueKey,
    event: Event,
) -> Result<(), StoreError> {
    store
        .write(move |txn| {
            RELAY_OUT.remove(txn, peer.as_str(), key)?;
            audit::append(txn, &event)?;
            Ok(())
        })
        .await
}

/// Keeps a RELAYED with its document and passes it on towards the sender, in `txn`; returns
/// false (and does nothing) if it is kept already.
fn keep_relayed(
    txn: &dyn WriteTables,
    about: &About,
    ev: &SignedEvidence,
) -> Result<bool, StoreError> {
    let id = about.id.to_string();
    let slot = relay_key(&ev.wire)?;
    if txn
        .get(EVIDENCE, &evidence_key(&id, &slot, EvidenceKind::Relayed))?
        .is_some()
    {
        return Ok(false);
    }
    put_evidence(txn, &id, &slot, EvidenceKind::Relayed, &ev.wire)?;
    about.send_back(txn, &ev.wire)?;
    Ok(true)
}

/// A hub further on took custody (its RELAYED came back through a peer): kept and passed on
/// towards the sender. Returns false if it was kept already.
pub(crate) async fn relayed_further(
    store: &Store,
    about: About,
    ev: SignedEvidence,
) -> Result<bool, StepError> {
    Ok(store
        .write(move |txn| keep_relayed(txn, &about, &ev))
        .await?)
}

/// The peer took custody of a document and signed RELAYED: kept with the document, passed on
/// towards the sender, and the queue item removed, in one transaction. A RELAYED already kept
/// changes nothing but the queue.
pub(crate) async fn relayed_by_peer(
    store: &Store,
    about: About,
    ev: SignedEvidence,
    peer: ExchangeName,
    key: QueueKey,
) -> Result<(), StepError> {
    store
        .write(move |txn| {
            let id = about.id.to_string();
            RELAY_OUT.remove(txn, peer.as_str(), key)?;
            if keep_relayed(txn, &about, &ev)? {
                let to: Vec<String> = ev
                    .evidence
                    .relay
                    .iter()
                    .flat_map(|r| r.to.iter().map(ToString::to_string))
                    .collect();
                audit::append(
                    txn,
                    &Event::new(pb::AuditKind::RelayedOut)
                        .doc(&id)
                        .dept(format!("exchange:{peer}"))
                        .detail(format!("to {}", to.join(","))),
                )?;
            }
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_that_does_not_decode_has_no_key() {
        let garbled = pb::SignedEvidence {
            evidence: vec![0xff; 3],
            ..Default::default()
        };
        let e = relay_key(&garbled).expect_err("no shared fallback slot");
        assert!(e.to_string().contains("RELAYED evidence"), "{e}");
    }
}
