//! What this department received: the typed [`InboxRecord`] (converted from and to the stored
//! `ReceivedDocument` here, and nowhere else), a delivery's arrival, and the clerk's actions on
//! it (签收, 退回, acknowledging a recall), each queued for the hub with the change.

use exchange_core::{
    document::{SignedDoc, SignedEvidence},
    ids::{Address, DeptId, DocumentId, ExchangeName},
    signing::{Digest, SignError},
    state::{ClerkAction, InboxState, Transition},
    store::{
        Store, StoreError,
        kv::{Table, WriteTables},
        sealing::Sealer,
    },
};
use exchange_proto::{store::v1 as st, v1 as pb};

use super::{
    Effects, Event, INBOX,
    record::{self, Record},
    stored_doc,
};
use crate::error::NodeError;

/// A document this department received, and what its clerks did with it.
#[derive(Debug, Clone)]
pub(crate) struct InboxRecord {
    /// The signed document, verified when it arrived.
    pub(crate) doc: SignedDoc,
    /// The hub's signed acceptance it came with.
    pub(crate) acceptance: Option<pb::SignedEvidence>,
    /// Our DELIVERED evidence, sent again if the hub delivers it again.
    pub(crate) delivery_receipt: Option<pb::SignedEvidence>,
    /// When it arrived.
    pub(crate) received_at_ms: i64,
    /// Where it stands.
    pub(crate) state: InboxState,
    /// When a clerk signed for it or returned it (0: not yet).
    pub(crate) handled_at_ms: i64,
    /// That clerk.
    pub(crate) clerk: String,
    /// The rejection's reason or the confirmation's note.
    pub(crate) reason: String,
    /// Our CONFIRMED / REJECTED evidence.
    pub(crate) handling: Option<pb::SignedEvidence>,
    /// The sender's RECIPIENT_ADDED, if this department was added later (补发).
    pub(crate) addition: Option<pb::SignedEvidence>,
    /// The sender's RECALL (撤回), once recalled.
    pub(crate) recall: Option<pb::SignedEvidence>,
    /// Our RECALLED / RECALL_ACKNOWLEDGED evidence.
    pub(crate) recall_handling: Option<pb::SignedEvidence>,
    /// How many reminders (催办) the sender sent.
    pub(crate) reminders: u32,
    /// When the last one was sent (0: never); also what tells a repeated push apart.
    pub(crate) last_reminded_at_ms: i64,
    /// The last reminder's note.
    pub(crate) last_reminder_note: String,
    /// What of our statements (签收, 退回, recall acknowledgement) the hub refused for good, and
    /// why; empty unless it did.
    pub(crate) hub_refused: String,
    /// For a document of a linked exchange (docs/federation.md): that exchange, and how its
    /// header names this department.
    pub(crate) foreign: Option<Foreign>,
}

/// A verified delivery, as it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Arrived {
    /// The document.
    pub(crate) doc: SignedDoc,
    /// The hub's signed acceptance (of the document's own exchange's hub).
    pub(crate) acceptance: pb::SignedEvidence,
    /// The sender's RECIPIENT_ADDED, if this department was added later (补发).
    pub(crate) addition: Option<pb::SignedEvidence>,
    /// For a document of a linked exchange: which, and how it names this department.
    pub(crate) foreign: Option<Foreign>,
}

/// A received document of another exchange.
#[derive(Debug, Clone)]
pub(crate) struct Foreign {
    /// The sender's exchange, which the header's names are relative to.
    pub(crate) origin: ExchangeName,
    /// This department as the header names it (e.g. `office@province`).
    pub(crate) addressed_as: Address,
}

impl InboxRecord {
    /// This department as the document names it (`me`: its bare id, for our own exchange's).
    pub(crate) fn me(&self, me: &DeptId) -> Address {
        match &self.foreign {
            Some(f) => f.addressed_as.clone(),
            None => Address::local(me.clone()),
        }
    }

    /// The sender, as this department names it: `tax@county` for another exchange's.
    pub(crate) fn sender(&self) -> Address {
        Address {
            dept: self.doc.header.sender.clone(),
            exchange: self.foreign.as_ref().map(|f| f.origin.clone()),
        }
    }
}

impl Record for InboxRecord {
    type Stored = st::ReceivedDocument;
    const TABLE: Table = INBOX;

    fn from_stored(id: &str, m: st::ReceivedDocument) -> Result<Self, StoreError> {
        let what = format!("inbox {id}");
        let state = InboxState::try_from_code(m.state).map_err(|e| StoreError::decode(&what, e))?;
        Ok(InboxRecord {
            doc: stored_doc(&what, m.document)?,
            acceptance: m.acceptance,
            delivery_receipt: m.delivery_receipt,
            received_at_ms: m.received_at_ms,
            state,
            handled_at_ms: m.handled_at_ms,
            clerk: m.clerk,
            reason: m.reason,
            handling: m.handling,
            addition: m.addition,
            recall: m.recall,
            recall_handling: m.recall_handling,
            reminders: m.reminders,
            last_reminded_at_ms: m.last_reminded_at_ms,
            last_reminder_note: m.last_reminder_note,
            hub_refused: m.hub_refused,
            foreign: if m.origin_exchange.is_empty() {
                None
            } else {
                Some(Foreign {
                    origin: m
                        .origin_exchange
                        .parse()
                        .map_err(|e| StoreError::decode(&what, e))?,
                    addressed_as: m
                        .addressed_as
                        .parse()
                        .map_err(|e| StoreError::decode(&what, e))?,
                })
            },
        })
    }

    fn into_stored(self) -> st::ReceivedDocument {
        st::ReceivedDocument {
            document: Some(self.doc.wire),
            acceptance: self.acceptance,
            delivery_receipt: self.delivery_receipt,
            received_at_ms: self.received_at_ms,
            state: u32::from(self.state.code()),
            handled_at_ms: self.handled_at_ms,
            clerk: self.clerk,
            reason: self.reason,
            handling: self.handling,
            addition: self.addition,
            recall: self.recall,
            recall_handling: self.recall_handling,
            reminders: self.reminders,
            last_reminded_at_ms: self.last_reminded_at_ms,
            last_reminder_note: self.last_reminder_note,
            hub_refused: self.hub_refused,
            origin_exchange: self
                .foreign
                .as_ref()
                .map(|f| f.origin.to_string())
                .unwrap_or_default(),
            addressed_as: self
                .foreign
                .map(|f| f.addressed_as.to_string())
                .unwrap_or_default(),
        }
    }
}

/// A document this department received.
pub(crate) async fn received(
    store: &Store,
    id: DocumentId,
) -> Result<Option<InboxRecord>, StoreError> {
    record::one(store, id).await
}

/// Every received document, in id order.
pub(crate) async fn inbox(store: &Store) -> Result<Vec<InboxRecord>, StoreError> {
    record::every(store).await
}

/// A verified delivery ready to be stored: the document, its inline content (digest, bytes),
/// this node's signed receipt and when it arrived.
#[derive(Debug)]
pub(crate) struct Delivered {
    /// The document and what came with it.
    pub(crate) arrived: Arrived,
    /// Its content that came inline: (digest, bytes), each distinct part once.
    pub(crate) inline: Vec<(Digest, Vec<u8>)>,
    /// This node's signed DELIVERED.
    pub(crate) receipt: pb::SignedEvidence,
    /// When it arrived.
    pub(crate) at_ms: i64,
}

/// Stores a verified delivery, with this node's signed receipt. If the document is already in
/// the inbox, stores nothing and returns the receipt given the first time (so a redelivery is
/// acknowledged identically and the inbox holds it once). Returns the receipt and, for a new
/// document, its event seq.
pub(crate) async fn receive(
    store: &Store,
    arrived: Arrived,
    inline: Vec<(Digest, Vec<u8>)>,
    receipt: pb::SignedEvidence,
    at_ms: i64,
) -> Result<(pb::SignedEvidence, Option<u64>), StoreError> {
    let delivered = Delivered {
        arrived,
        inline,
        receipt,
        at_ms,
    };
    let sealer = store.sealer().clone();
    store
        .write(move |txn| {
            let stored = record::read(txn, &sealer, delivered.arrived.doc.header.id)?;
            receive_in(txn, &sealer, &delivered, stored)
        })
        .await
}

/// [`receive`] for deliveries that came together (pushed in one message), in one transaction,
/// each stored as if alone. One whose inbox record cannot be read comes back as its error
/// (nothing of it is written); a failure while writing fails them all. Returns each one's
/// outcome in order.
pub(crate) async fn receive_all(
    store: &Store,
    deliveries: Vec<Delivered>,
) -> Result<Vec<Result<(pb::SignedEvidence, Option<u64>), StoreError>>, StoreError> {
    let (read, write) = (store.sealer().clone(), store.sealer().clone());
    store
        .write_each(
            deliveries,
            move |txn, d| record::read::<InboxRecord>(txn, &read, d.arrived.doc.header.id),
            move |txn, d, stored| receive_in(txn, &write, d, stored),
            |e| matches!(e, StoreError::Decode { .. }),
        )
        .await
}

/// Stores `d` in `txn` unless its document is in the inbox already (`stored`, read in `txn`;
/// [`receive`]).
fn receive_in(
    txn: &dyn WriteTables,
    sealer: &Sealer,
    d: &Delivered,
    stored: Option<InboxRecord>,
) -> Result<(pb::SignedEvidence, Option<u64>), StoreError> {
    let Arrived {
        doc,
        acceptance,
        addition,
        foreign,
    } = &d.arrived;
    let id = doc.header.id;
    if let Some(rec) = stored {
        return Ok((rec.delivery_receipt.unwrap_or_default(), None));
    }
    let rec = InboxRecord {
        doc: doc.clone(),
        acceptance: Some(acceptance.clone()),
        delivery_receipt: Some(d.receipt.clone()),
        received_at_ms: d.at_ms,
        state: InboxState::New,
        handled_at_ms: 0,
        clerk: String::new(),
        reason: String::new(),
        handling: None,
        addition: addition.clone(),
        recall: None,
        recall_handling: None,
        reminders: 0,
        last_reminded_at_ms: 0,
        last_reminder_note: String::new(),
        hub_refused: String::new(),
        foreign: foreign.clone(),
    };
    let sender = rec.sender();
    record::write(txn, sealer, id, rec)?;
    for (digest, data) in &d.inline {
        crate::content::put(txn, sealer, id, digest, data)?;
    }
    let mut fx = Effects::default();
    fx.event(Event {
        kind: pb::NodeEventKind::Received,
        doc_id: id,
        dept: Some(sender),
        state: pb::RecipientState::Delivered,
        at_ms: d.at_ms,
    });
    Ok((d.receipt.clone(), fx.commit(txn)?))
}

/// Changes the inbox record of `id` with what goes with the change, in one transaction
/// ([`record::change`]); `f` gets `None` if `id` is not in the inbox.
pub(crate) async fn change_inbox<R, E, F>(
    store: &Store,
    id: DocumentId,
    f: F,
) -> Result<(R, Option<u64>), E>
where
    F: Fn(Option<&mut InboxRecord>, &mut Effects) -> Result<R, E> + Send + 'static,
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    record::change(store, id, f).await
}

/// A clerk's confirmation or rejection (or acknowledgement of a recall): updates the inbox
/// entry and queues the signed evidence for the hub, in one transaction. Repeating the same
/// action changes nothing and returns false; an action the entry's state does not allow is
/// refused and changes nothing.
pub(crate) async fn handle(
    store: &Store,
    id: DocumentId,
    me: DeptId,
    action: ClerkAction,
    make_evidence: impl Fn(&SignedDoc, &Address) -> Result<SignedEvidence, SignError> + Send + 'static,
) -> Result<bool, NodeError> {
    let (changed, _) = change_inbox(store, id, move |rec, fx| {
        let rec = rec.ok_or(NodeError::NotReceived(id))?;
        let current = rec.state;
        let next = match current.apply(action) {
            Ok(Transition::Unchanged(_)) => return Ok(false),
            Ok(Transition::Changed(s)) => s,
            Err(_) if current == InboxState::Recalled => {
                return Err(NodeError::RecalledBySender(id));
            }
            Err(_) if action == ClerkAction::AcknowledgeRecall => {
                return Err(NodeError::NoRecallToAcknowledge {
                    id,
                    state: current.name(),
                });
            }
            Err(source) => return Err(NodeError::Inbox { id, source }),
        };
        let ev = make_evidence(&rec.doc, &rec.me(&me))?;
        rec.state = next;
        if action == ClerkAction::AcknowledgeRecall {
            // The 签收 (time, clerk, evidence) stays as it was; the acknowledgement is apart.
            rec.recall_handling = Some(ev.wire.clone());
        } else {
            rec.handled_at_ms = ev.evidence.at_ms;
            rec.clerk.clone_from(&ev.evidence.clerk);
            rec.reason.clone_from(&ev.evidence.reason);
            rec.handling = Some(ev.wire.clone());
        }
        fx.queue(&rec.doc, &ev);
        Ok(true)
    })
    .await?;
    Ok(changed)
}

/// How `hub_refused` on an inbox entry begins when the hub refused the delivery receipt (rather
/// than a clerk's statement).
pub(crate) const RECEIPT_REFUSED: &str = "delivery receipt refused by the hub: ";

/// Puts `receipt` (a DELIVERED made anew, the stored one no longer verifying) in place of the
/// stored delivery receipt of `id`, so the next redelivery is acknowledged with it too.
pub(crate) async fn replace_receipt(
    store: &Store,
    id: DocumentId,
    receipt: pb::SignedEvidence,
) -> Result<(), StoreError> {
    change_inbox(store, id, move |rec, _| {
        if let Some(rec) = rec {
            rec.delivery_receipt = Some(receipt.clone());
            // A refusal of the receipt now replaced is over; a refused 签收 or 退回 stands.
            if rec.hub_refused.starts_with(RECEIPT_REFUSED) {
                rec.hub_refused.clear();
            }
        }
        Ok::<_, StoreError>(())
    })
    .await?;
    Ok(())
}

/// The hub refused our delivery receipt of `id`: the inbox entry records `text` (why)
/// and department systems get a REFUSED event naming `dept` (this department), in one
/// transaction. Returns the event's seq; none if `id` is not in the inbox.
pub(crate) async fn receipt_refused(
    store: &Store,
    id: DocumentId,
    dept: String,
    text: String,
    at_ms: i64,
) -> Result<Option<u64>, StoreError> {
    let ((), seq) = change_inbox(store, id, move |rec, fx| {
        if let Some(rec) = rec {
            // A refused 签收 or 退回 noted earlier says more to the clerk: it stays.
            if rec.hub_refused.is_empty() || rec.hub_refused.starts_with(RECEIPT_REFUSED) {
                rec.hub_refused = format!("{RECEIPT_REFUSED}{text}");
            }
            fx.event(Event {
                kind: pb::NodeEventKind::Refused,
                doc_id: id,
                dept: dept.parse().ok(),
                state: pb::RecipientState::Unspecified,
                at_ms,
            });
        }
        Ok::<_, StoreError>(())
    })
    .await?;
    Ok(seq)
}
