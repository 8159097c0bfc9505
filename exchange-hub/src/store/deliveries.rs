//! Evidence about one recipient moving its delivery: delivered, confirmed (签收), rejected
//! (退回), not delivered, and the outcome of a recall. Each step is recorded once, checked
//! against the delivery's state machine (`exchange_core::state`), and queued for the sender.

use exchange_core::store::kv::{Order, ReadTables, WriteTables};
use exchange_core::{
    document::{EvidenceKind, SignedEvidence},
    ids::{Address, DeptId, DocumentId, ExchangeName},
    state::{DeliveryState, Transition},
    store::{Store, StoreError, decode},
};
use exchange_proto::v1 as pb;

use super::{
    DELIVERIES, EVIDENCE, OUTBOUND, Outbound, RELAY_OUT, StepError, Taken, deliveries_of_doc,
    delivery_key, evidence_key, parse_delivery_key, put_evidence,
    records::{DeliveryRecord, DocumentRecord},
    relay::PeerItem,
};
use crate::audit::{self, Event};

/// The recipient that evidence is about (required for every per-recipient step).
pub(super) fn recipient_of(ev: &SignedEvidence) -> Result<Address, StepError> {
    ev.evidence.recipient.clone().ok_or(StepError::NoRecipient)
}

/// The delivery of document `doc` to `dept`; refused if `dept` is not a recipient.
pub(super) fn load_delivery(
    txn: &dyn WriteTables,
    doc: DocumentId,
    dept: &Address,
) -> Result<DeliveryRecord, StepError> {
    let id = doc.to_string();
    read_delivery(txn, &id, &dept.to_string())?.ok_or_else(|| StepError::NotRecipient {
        doc,
        dept: dept.clone(),
    })
}

/// What recording evidence needs to know of its document: normally taken from its record
/// ([`About::of`]); for a document whose stored record is damaged, from the hub's ACCEPTED
/// evidence and the queue item ([`acceptance`]).
#[derive(Debug, Clone)]
pub(crate) struct About {
    /// The document.
    pub(crate) id: DocumentId,
    /// Who is told of evidence about it.
    pub(crate) back: Back,
    /// The queue priority of its urgency, for the evidence queued for the sender.
    pub(crate) priority: u8,
    /// The document's own exchange (`None`: ours), and this exchange's name: a recipient's
    /// delivery is kept under its name relative to this exchange.
    pub(crate) origin: Option<ExchangeName>,
    pub(crate) here: Option<ExchangeName>,
}

/// Where evidence about a document goes from this hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Back {
    /// To its sender, a department of this exchange.
    Sender(DeptId),
    /// To the peer hub it came from (docs/federation.md).
    Peer(ExchangeName),
}

impl About {
    /// What the record of a stored document says (`here`: this exchange's name).
    pub(crate) fn of(rec: &DocumentRecord, here: Option<&ExchangeName>) -> Self {
        let h = &rec.doc.header;
        About {
            id: h.id,
            back: match &rec.relay {
                Some(r) => Back::Peer(r.from_peer.clone()),
                None => Back::Sender(h.sender.clone()),
            },
            priority: h.urgency.priority(),
            origin: rec.origin().cloned(),
            here: here.cloned(),
        }
    }

    /// A document of this exchange, from its sender's signed header.
    #[cfg(test)]
    pub(crate) fn own(doc: &exchange_core::document::SignedDoc) -> Self {
        About {
            id: doc.header.id,
            back: Back::Sender(doc.header.sender.clone()),
            priority: doc.header.urgency.priority(),
            origin: None,
            here: None,
        }
    }

    /// Recipient `a`, named relative to this exchange: the key of its delivery here.
    pub(crate) fn relative(&self, a: &Address) -> Address {
        crate::federation::relative(self.here.as_ref(), self.origin.as_ref(), a)
    }

    /// Queues `ev` (about this document) for whoever is told of it, in `txn`.
    pub(crate) fn send_back(
        &self,
        txn: &dyn WriteTables,
        ev: &pb::SignedEvidence,
    ) -> Result<(), StoreError> {
        match &self.back {
            Back::Sender(s) => {
                let item = Outbound::Evidence(ev.clone()).encode();
                OUTBOUND.push(txn, s.as_str(), self.priority, &item)?;
            }
            Back::Peer(p) => {
                let item = PeerItem::Evidence(ev.clone()).encode();
                RELAY_OUT.push(txn, p.as_str(), self.priority, &item)?;
            }
        }
        Ok(())
    }
}

/// The hub's ACCEPTED evidence of document `id`, if stored. It is kept apart from the
/// document record and never sealed (it holds no content), so it still names the document's
/// sender and header digest when the record itself cannot be read.
pub(crate) async fn acceptance(
    store: &Store,
    id: DocumentId,
) -> Result<Option<SignedEvidence>, StoreError> {
    store
        .lookup(move |txn| {
            let key = id.to_string();
            let found = txn.get(EVIDENCE, &evidence_key(&key, "", EvidenceKind::Accepted))?;
            found
                .map(|v| {
                    let wire = decode(format!("acceptance {key}"), &v)?;
                    SignedEvidence::decode(wire)
                        .map_err(|e| StoreError::decode(format!("acceptance {key}"), e))
                })
                .transpose()
        })
        .await
}

/// Records evidence about a recipient (delivered, confirmed, rejected, not delivered), advances
/// its delivery and queues the evidence for the sender. With `ack`, also removes the acknowledged
/// queue item, in the same transaction. Evidence already recorded changes nothing and returns
/// false; evidence that contradicts the delivery's state is refused. Evidence that arrives after
/// a later step (a delivery receipt overtaken by the clerk's confirmation) is still recorded and
/// forwarded, so the sender gets every timestamp.
pub(crate) async fn record_evidence(
    store: &Store,
    about: About,
    ev: SignedEvidence,
    ack: Option<Taken>,
) -> Result<bool, StepError> {
    store
        .write(move |txn| record_in(txn, &about, &ev, ack.as_ref()))
        .await
}

/// One acknowledgement of a batch ([`ack_all`]): the queue item it finishes, and the evidence it
/// brings (a recipient's delivery receipt), if any.
pub(crate) struct AckStep {
    /// The acknowledged item.
    pub(crate) taken: Taken,
    /// Evidence recorded with the item's removal.
    pub(crate) evidence: Option<(About, SignedEvidence)>,
}

/// Commits several acknowledgements in one transaction, each exactly as [`record_evidence`]
/// (with its item) or `ack` would alone; `Ok(true)` where new evidence was recorded. A step
/// refused for what its evidence says fails alone — [`record_in`] refuses before it writes
/// anything — and the others are committed; a storage failure fails them all.
pub(crate) async fn ack_all(
    store: &Store,
    steps: Vec<AckStep>,
) -> Result<Vec<Result<bool, StepError>>, StepError> {
    store
        .write(move |txn| {
            let mut out = Vec::with_capacity(steps.len());
            for step in &steps {
                let result = match &step.evidence {
                    Some((about, ev)) => record_in(txn, about, ev, Some(&step.taken)),
                    None => step.taken.remove(txn).map(|()| false),
                };
                match result {
                    Err(StepError::Store(e)) => return Err(StepError::Store(e)),
                    result => out.push(result),
                }
            }
            Ok(out)
        })
        .await
}

/// [`record_evidence`] inside `txn`. Every refusal (no or another recipient, a contradicting
/// step, a lost push lease) comes before the first write, so that [`ack_all`] can refuse one
/// step of a batch and commit the others.
pub(super) fn record_in(
    txn: &dyn WriteTables,
    about: &About,
    ev: &SignedEvidence,
    ack: Option<&Taken>,
) -> Result<bool, StepError> {
    let doc_id = about.id;
    let id = doc_id.to_string();
    let named = recipient_of(ev)?;
    let recipient = about.relative(&named);
    let key = recipient.to_string();
    let mut delivery = load_delivery(txn, doc_id, &recipient)?;
    let kind = ev.evidence.kind;
    // A recall is recorded at every hub it crosses before any recipient can see it, so its
    // acknowledgement always finds it here.
    if kind == EvidenceKind::RecallAcknowledged && !super::statements::is_recalled(txn, &id)? {
        return Err(StepError::NotRecalled { doc: doc_id });
    }
    let is_new = txn.get(EVIDENCE, &evidence_key(&id, &key, kind))?.is_none();
    let next = delivery
        .state
        .apply(kind)
        .map_err(|source| StepError::State {
            doc: doc_id,
            dept: recipient.clone(),
            source,
        })?;
    if let Some(taken) = ack {
        taken.remove(txn)?;
    }
    if !is_new {
        return Ok(false);
    }
    match kind {
        EvidenceKind::Delivered => delivery.delivered_at_ms = ev.evidence.at_ms,
        _ => delivery.handled_at_ms = ev.evidence.at_ms,
    }
    if let Transition::Changed(s) = next {
        delivery.state = s;
    }
    txn.put(DELIVERIES, &delivery_key(&id, &key), &delivery.encode())?;
    put_evidence(txn, &id, &key, kind, &ev.wire)?;
    let e = &ev.evidence;
    let audited = match kind {
        EvidenceKind::Delivered => Event::new(pb::AuditKind::Delivered),
        kind => Event::new(pb::AuditKind::Evidence).detail(format!(
            "{kind:?} clerk {:?} reason {:?}",
            e.clerk, e.reason
        )),
    };
    audit::append(txn, &audited.doc(&id).dept(&recipient))?;
    about.send_back(txn, &ev.wire)?;
    Ok(true)
}

/// Every recipient of document `id` (named in its header or added later) with its delivery.
pub(super) fn deliveries_of(
    txn: &dyn ReadTables,
    id: &str,
) -> Result<Vec<(Address, DeliveryRecord)>, StoreError> {
    let mut out = Vec::new();
    let rows = txn.scan(
        DELIVERIES,
        &deliveries_of_doc(id),
        Order::Ascending,
        usize::MAX,
    )?;
    for (k, v) in rows {
        let (_, dept) = parse_delivery_key(&k)?;
        let dept = dept.as_str();
        let delivery = DeliveryRecord::decode(id, dept, &v)?;
        let dept = dept
            .parse()
            .map_err(|e| StoreError::decode(format!("delivery {id}/{dept}"), e))?;
        out.push((dept, delivery));
    }
    Ok(out)
}

/// `dept`'s delivery state of document `id`, if `dept` is a recipient (named or added).
pub(crate) async fn delivery(
    store: &Store,
    id: DocumentId,
    dept: Address,
) -> Result<Option<DeliveryState>, StoreError> {
    store
        .lookup(move |txn| {
            let d = read_delivery(txn, &id.to_string(), &dept.to_string())?;
            Ok(d.map(|d| d.state))
        })
        .await
}

/// The delivery of document `id` (its key) to `dept` in a read snapshot, if `dept` is a
/// recipient (named or added).
pub(super) fn read_delivery(
    txn: &dyn ReadTables,
    id: &str,
    dept: &str,
) -> Result<Option<DeliveryRecord>, StoreError> {
    txn.get(DELIVERIES, &delivery_key(id, dept))?
        .map(|v| DeliveryRecord::decode(id, dept, &v))
        .transpose()
}
