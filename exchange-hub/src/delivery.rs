//! Pushing deliveries and evidence to connected nodes.
//!
//! Each node holds one `Subscribe` stream. The hub sends the most urgent waiting items, up to a
//! window of them not yet finished ([`push_window`]); for each, the node's acknowledgement (for a
//! document: its signed delivery receipt, sent only once the document is on the node's disk) is
//! committed with the removal of the item from the queue. A very urgent document queued later
//! waits behind at most the window's items already in flight, at most `LARGE_IN_FLIGHT` of them
//! deliveries of large documents (downloads), and nothing less urgent is pushed while it is in
//! flight (the node stores pushed items concurrently). An item that is never acknowledged stays
//! queued and is pushed again on the node's next stream, so delivery is at-least-once on the
//! wire and exactly-once in the inbox (the node deduplicates by document id).
//!
//! An acknowledgement the hub cannot take (a receipt that does not verify) refuses that item
//! alone: audited, the node told with `AckRefused`, the item left queued but not pushed again on
//! this stream, and the stream goes on (docs/delivery.md).

pub(crate) mod damaged;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use exchange_core::{
    document::{Evidence, EvidenceKind, SignedEvidence, limits},
    error::{ErrorCode, ServiceError},
    ids::DeptId,
    store::queue::QueueKey,
    time::{now_ms, now_secs},
};
use exchange_proto::v1::{self as pb, AuditKind, subscribe_request::Msg};
use prost::Message;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use tracing::{info, warn};

use crate::{
    Hub,
    audit::{self, Event},
    lease::Fence,
    service::check_clock,
    store::{self, Outbound, Taken},
};

type Tx = mpsc::Sender<Result<pb::HubPush, Status>>;

/// The connected nodes: one session per department; a new stream replaces an older one.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    inner: Mutex<HashMap<DeptId, Session>>,
    /// Deliveries pushed and not yet acknowledged since this hub started: pushing one again is
    /// a redelivery, which the audit log records.
    pushed: Mutex<std::collections::HashSet<(exchange_core::ids::DocumentId, DeptId)>>,
    /// The other hubs on the same database, told of what is queued for a department whose
    /// node is not connected here (`crate::wake`).
    others: std::sync::OnceLock<crate::wake::Others>,
}

#[derive(Debug)]
struct Session {
    id: u64,
    notify: Arc<Notify>,
    cancel: CancellationToken,
}

impl Sessions {
    /// Tells `dept`'s session that something was queued for it (or its push lease given up):
    /// here if its node is connected here, otherwise the other hubs sharing the database.
    pub(crate) fn wake(&self, dept: &DeptId) {
        if !self.wake_here(dept)
            && let Some(others) = self.others.get()
        {
            others.tell(dept);
        }
    }

    /// Wakes `dept`'s session on this hub, if its node is connected here.
    pub(crate) fn wake_here(&self, dept: &DeptId) -> bool {
        match self.lock().get(dept) {
            Some(s) => {
                s.notify.notify_one();
                true
            }
            None => false,
        }
    }

    /// How many nodes are connected to this hub.
    pub(crate) fn connected(&self) -> usize {
        self.lock().len()
    }

    /// Wakes every session on this hub (wake-ups from other hubs may have been missed).
    pub(crate) fn wake_all(&self) {
        self.lock().values().for_each(|s| s.notify.notify_one());
    }

    /// From now on, wake-ups for departments not connected here go to `others`.
    pub(crate) fn tell_others(&self, others: crate::wake::Others) {
        let _ = self.others.set(others);
    }

    /// Notes that `doc` is pushed to `dept`; false if it was pushed before without an ack.
    fn first_push(&self, doc: exchange_core::ids::DocumentId, dept: &DeptId) -> bool {
        self.pushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((doc, dept.clone()))
    }

    /// Forgets a push once it is acknowledged.
    fn acked(&self, doc: exchange_core::ids::DocumentId, dept: &DeptId) {
        self.pushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(doc, dept.clone()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeptId, Session>> {
        // A poisoned lock only means another handler panicked mid-update of this map of
        // handles; the map itself stays consistent, so keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register(
        &self,
        dept: &DeptId,
        parent: &CancellationToken,
    ) -> (u64, Arc<Notify>, CancellationToken) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let cancel = parent.child_token();
        let old = self.lock().insert(
            dept.clone(),
            Session {
                id,
                notify: Arc::clone(&notify),
                cancel: cancel.clone(),
            },
        );
        if let Some(old) = old {
            old.cancel.cancel();
        }
        (id, notify, cancel)
    }

    fn unregister(&self, dept: &DeptId, id: u64) {
        let mut map = self.lock();
        if map.get(dept).is_some_and(|s| s.id == id) {
            map.remove(dept);
        }
    }
}

/// Starts pushing to `dept` (several items per message if the node asked for `batches`);
/// returns the receiving end of its response stream.
pub(crate) fn start(
    hub: Arc<Hub>,
    dept: DeptId,
    acks: Streaming<pb::SubscribeRequest>,
    batches: bool,
) -> mpsc::Receiver<Result<pb::HubPush, Status>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let (id, notify, cancel) = hub.sessions.register(&dept, &hub.shutdown);
        info!(%dept, "node connected");
        audit::record(&hub.store, Event::new(AuditKind::NodeConnected).dept(&dept)).await;
        let stop = async {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tx.closed() => {}
            }
        };
        let result = match hub
            .leases
            .acquire(&hub.store, &dept, &notify, &cancel, stop)
            .await
        {
            Ok(Some(fence)) => {
                let out = Outgoing::new(&tx, batches);
                let result = push_loop(&hub, &dept, fence, acks, out, &notify, &cancel).await;
                hub.leases.release(&hub.store, &dept, fence).await;
                result
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
        hub.sessions.unregister(&dept, id);
        if hub.leases.is_shared() {
            // Another hub may be waiting for this department's lease.
            hub.sessions.wake(&dept);
        }
        audit::record(
            &hub.store,
            Event::new(AuditKind::NodeDisconnected).dept(&dept),
        )
        .await;
        match result {
            Ok(()) => info!(%dept, "node disconnected"),
            Err(e) => {
                warn!(%dept, error = %e, "delivery stream ended with an error");
                let _ = tx.send(Err(e.into())).await;
            }
        }
    });
    rx
}

/// Items pushed to one node before the hub waits for their acknowledgements, while few nodes are
/// connected. The node stores them concurrently, so their commits share fsyncs, and the hub
/// commits the effect of one acknowledgement (batched with other commits) while the node already
/// works on the next. 64 rather than 16: a receiving node's commits then hold more documents,
/// and the exchange carries 13–34 % more documents per second on 9–24 % less CPU per document
/// (docs/benchmarks.md, "A deeper push window").
const MAX_WINDOW: usize = 64;

/// The window with many nodes connected: each item in flight holds its document's record at the
/// hub (a few KiB), so the windows of all connected nodes share [`IN_FLIGHT_BUDGET`] items, and
/// none gets fewer than this.
const MIN_WINDOW: usize = 16;

/// Items in flight to all nodes together that the windows are sized for: 64 each for up to 256
/// connected nodes, shrinking to 16 each from 1,024 on (10,000 nodes with a backlog each then
/// hold what they held with a fixed window of 16).
const IN_FLIGHT_BUDGET: usize = MAX_WINDOW * 256;

/// The push window of each node while `connected` nodes are connected to this hub.
pub(crate) fn push_window(connected: usize) -> usize {
    (IN_FLIGHT_BUDGET / connected.max(1)).clamp(MIN_WINDOW, MAX_WINDOW)
}

/// Of those, deliveries of large documents (content the node downloads with `GetBlob`): each
/// is a transfer, and a 特急 document waiting for the window to refill must never wait for many
/// of them to finish.
const LARGE_IN_FLIGHT: usize = 16;
const _: () = assert!(
    LARGE_IN_FLIGHT <= MIN_WINDOW,
    "a window always has room for them"
);

/// A window with items in flight is refilled once a quarter of its slots are free, not after
/// every acknowledgement: each refill reads the queue past the items in flight (on PostgreSQL, a
/// round trip that carries them again).
const REFILL_DIVISOR: usize = 4;

/// The pushes of one refill on their way to the node: one message each, or, to a node that
/// asked for batches (v1.4), as few messages as [`limits::PUSH_BATCH_BYTES`] allows.
struct Outgoing<'a> {
    tx: &'a Tx,
    batches: bool,
    held: Vec<pb::HubPush>,
    bytes: usize,
}

impl<'a> Outgoing<'a> {
    fn new(tx: &'a Tx, batches: bool) -> Self {
        Outgoing {
            tx,
            batches,
            held: Vec::new(),
            bytes: 0,
        }
    }

    /// Sends `push`, or holds it for the next batch; false once the stream is gone.
    async fn add(&mut self, push: pb::HubPush) -> bool {
        if !self.batches {
            return self.tx.send(Ok(push)).await.is_ok();
        }
        let len = push.encoded_len();
        if self.bytes + len > limits::PUSH_BATCH_BYTES && !self.flush().await {
            return false;
        }
        self.bytes += len;
        self.held.push(push);
        true
    }

    /// Sends what is held; false once the stream is gone.
    async fn flush(&mut self) -> bool {
        self.bytes = 0;
        let push = if self.held.len() > 1 {
            pb::HubPush {
                batch: std::mem::take(&mut self.held),
                ..Default::default()
            }
        } else if let Some(one) = self.held.pop() {
            one // a single push goes plain
        } else {
            return true;
        };
        self.tx.send(Ok(push)).await.is_ok()
    }
}

/// With several hubs on one database, how often a push loop looks at its queue without being
/// woken: the bound on a delivery delayed by a wake-up lost between hubs.
const RECHECK: Duration = Duration::from_secs(5);

/// How acknowledging one item ended.
struct Finished {
    key: QueueKey,
    seq: u64,
    /// The document the item is about, for a refusal's message.
    doc: Option<exchange_core::ids::DocumentId>,
    result: Result<(), ServiceError>,
}

async fn push_loop(
    hub: &Arc<Hub>,
    dept: &DeptId,
    fence: Fence,
    mut acks: Streaming<pb::SubscribeRequest>,
    mut out: Outgoing<'_>,
    notify: &Notify,
    cancel: &CancellationToken,
) -> Result<(), ServiceError> {
    let tx = out.tx;
    let mut seq = 0u64;
    // Pushed and not yet acknowledged, by seq.
    let mut in_flight: HashMap<u64, (QueueKey, Pending)> = HashMap::new();
    // Queue items pushed and not finished (acknowledged and the effect committed): never
    // pushed twice on one stream.
    let mut busy: HashSet<QueueKey> = HashSet::new();
    // Those of them that are deliveries of large documents (at most `LARGE_IN_FLIGHT`).
    let mut large: HashSet<QueueKey> = HashSet::new();
    // Items whose acknowledgement the hub refused: still queued (nothing is lost), but not
    // pushed again on this stream, and not holding back anything behind them.
    let mut parked: HashSet<QueueKey> = HashSet::new();
    // Acknowledgements being committed: those that arrive together, together.
    let mut committing: JoinSet<Vec<Finished>> = JoinSet::new();
    let mut look = true; // the queue may hold something not pushed yet
    let taken = |key| Taken {
        dept: dept.clone(),
        key,
        fence,
    };
    // Another hub's wake-up can be lost (it died between its commit and telling this one):
    // with several hubs the queue is looked at every few seconds as well.
    let shared = hub.leases.is_shared();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The window is refilled with one read of the queue: as many items as it has room for.
        let window = push_window(hub.sessions.connected());
        'refill: while look && busy.len() <= window - window / REFILL_DIVISOR {
            let skip: HashSet<QueueKey> = busy.union(&parked).copied().collect();
            let room = window - busy.len();
            let items = store::next_outbound(&hub.store, dept.clone(), skip, room).await?;
            // Fewer than asked for: the queue holds nothing else now (a later arrival notifies).
            look = items.len() == room;
            for store::Next { key, item, view } in items {
                let item = match item {
                    Ok(item) => item,
                    Err(e) => {
                        damaged::park(hub, dept, None, &e, "the queue item does not decode")
                            .await?;
                        parked.insert(key);
                        look = true;
                        continue;
                    }
                };
                if busy.iter().any(|b| b.priority < key.priority) {
                    // Something more urgent is in flight: it is stored alone, not alongside
                    // (and possibly after) less urgent items pushed behind it.
                    look = false;
                    break 'refill;
                }
                let is_large = matches!(&view, Some(Ok(Some(v)))
                    if v.rec.doc.header.total_size() > limits::INLINE_BYTES);
                if is_large && large.len() >= LARGE_IN_FLIGHT {
                    // It waits, and what is queued behind it with it (the queue's order
                    // holds), until one of the large deliveries in flight is finished.
                    look = false;
                    break 'refill;
                }
                let (push, pending, origin_exchange) =
                    match prepare(hub, taken(key), item, view).await? {
                        Prepared::Push(push) => *push,
                        Prepared::Done => {
                            look = true; // not pushed, and removed from the queue: room for another
                            continue;
                        }
                        Prepared::Parked => {
                            parked.insert(key);
                            look = true;
                            continue;
                        }
                    };
                seq += 1;
                let push = pb::HubPush {
                    seq,
                    item: Some(push),
                    origin_exchange,
                    batch: Vec::new(),
                };
                if !out.add(push).await {
                    return Ok(());
                }
                busy.insert(key);
                if is_large {
                    large.insert(key);
                }
                in_flight.insert(seq, (key, pending));
            }
        }
        if !out.flush().await {
            return Ok(());
        }
        tokio::select! {
            () = notify.notified() => look = true,
            _ = recheck.tick(), if shared => look = true,
            msg = acks.message() => {
                let acks = match msg {
                    Ok(Some(pb::SubscribeRequest { msg: Some(Msg::Ack(ack)) })) => vec![ack],
                    Ok(Some(pb::SubscribeRequest { msg: Some(Msg::Acks(batch)) }))
                        if !batch.acks.is_empty() => batch.acks,
                    Ok(Some(_)) => {
                        return Err(ServiceError::invalid(
                            "SubscribeRequest.msg: expected an ack or a non-empty batch of acks",
                        ));
                    }
                    // The node went away; unfinished items stay queued.
                    Ok(None) | Err(_) => return Ok(()),
                };
                let mut together = Vec::with_capacity(acks.len());
                for ack in acks {
                    let Some((key, pending)) = in_flight.remove(&ack.seq) else {
                        return Err(ServiceError::invalid(format!(
                            "ack.seq: {} is not an item in flight",
                            ack.seq
                        )));
                    };
                    let alone = match &pending {
                        Pending::Plain => false,
                        Pending::Delivery(_) => !ack.refused.is_empty(),
                        Pending::Recall(_) => true,
                    };
                    if !alone {
                        together.push((key, taken(key), pending, ack));
                        continue;
                    }
                    let (hub, taken) = (Arc::clone(hub), taken(key));
                    committing.spawn(async move {
                        let (seq, doc) = (ack.seq, pending.doc_id());
                        let result = acked(&hub, taken, pending, ack).await;
                        vec![Finished { key, seq, doc, result }]
                    });
                }
                if !together.is_empty() {
                    let (hub, dept) = (Arc::clone(hub), dept.clone());
                    committing.spawn(async move { acked_together(&hub, &dept, together).await });
                }
            }
            Some(done) = committing.join_next(), if !committing.is_empty() => {
                let done = done.map_err(|e| {
                    ServiceError::new(ErrorCode::Internal, format!("acknowledgement task: {e}"))
                })?;
                look = true;
                for done in done {
                    busy.remove(&done.key);
                    large.remove(&done.key);
                    if let Err(e) = done.result {
                        if !is_the_nodes_fault(&e) {
                            // The hub's own trouble (its store): the node reconnects.
                            return Err(e);
                        }
                        parked.insert(done.key);
                        refuse_ack(hub, dept, tx, done.seq, done.doc, &e).await;
                    }
                }
            }
            () = tx.closed() => return Ok(()),
            () = cancel.cancelled() => return Ok(()),
        }
    }
}

/// Whether a failed acknowledgement is the node's (a receipt that does not verify, about
/// another document, contradicting the delivery's state): retrying the same acknowledgement
/// cannot succeed, so only that item is refused. Anything else (the store) ends the stream.
fn is_the_nodes_fault(e: &ServiceError) -> bool {
    matches!(
        e.code,
        ErrorCode::InvalidArgument | ErrorCode::PermissionDenied | ErrorCode::FailedPrecondition
    )
}

/// Refuses one acknowledgement: audited, and the node is told which and why; the stream goes
/// on. The item stays queued, so it is pushed again on the node's next stream (after, say, its
/// signing certificate is renewed).
async fn refuse_ack(
    hub: &Hub,
    dept: &DeptId,
    tx: &Tx,
    seq: u64,
    doc: Option<exchange_core::ids::DocumentId>,
    e: &ServiceError,
) {
    warn!(recipient = %dept, doc_id = ?doc, error = %e, "acknowledgement refused; the item stays queued");
    let doc_id = doc.map(|d| d.to_string()).unwrap_or_default();
    let event = Event::new(AuditKind::StatementRefused)
        .doc(&doc_id)
        .dept(dept)
        .detail(format!("acknowledgement of a pushed item: {}", e.message));
    audit::record(&hub.store, event).await;
    let push = pb::HubPush {
        seq: 0,
        item: Some(pb::hub_push::Item::AckRefused(pb::AckRefused {
            seq,
            doc_id,
            reason: e.message.clone(),
        })),
        origin_exchange: String::new(),
        batch: Vec::new(),
    };
    // A node that is gone meanwhile learns it on its next stream, when the item comes again.
    let _ = tx.send(Ok(push)).await;
}

/// What to do with a queued item.
enum Prepared {
    /// Push it (with the exchange of a notice's document, "" for ours), and wait for this
    /// (boxed: a delivery is large, the other answers empty).
    Push(Box<(pb::hub_push::Item, Pending, String)>),
    /// Nothing to push, and it has left the queue: its document is gone, was recalled before
    /// this recipient had it, or is damaged and reported NOT_DELIVERED ([`damaged`]).
    Done,
    /// Damaged, audited and left queued: not pushed again on this stream ([`damaged`]).
    Parked,
}

impl From<damaged::Outcome> for Prepared {
    fn from(o: damaged::Outcome) -> Self {
        match o {
            damaged::Outcome::Reported => Prepared::Done,
            damaged::Outcome::Parked => Prepared::Parked,
        }
    }
}

/// The push for a queued item, or what became of it instead; `view` is a delivery's
/// [`store::PushView`] if read with the item (read here if not).
async fn prepare(
    hub: &Hub,
    taken: Taken,
    item: Outbound,
    view: Option<Result<Option<store::PushView>, exchange_core::store::StoreError>>,
) -> Result<Prepared, ServiceError> {
    let dept = &taken.dept;
    // Evidence pushed to a node is about its own documents (evidence about a linked exchange's
    // goes back to the peer hub it came from); a notice may be about a linked exchange's.
    let mut origin = String::new();
    let (push, pending) = match item {
        Outbound::Deliver(id) => {
            let view = match view {
                Some(view) => view,
                None => store::push_view(&hub.store, id, dept.clone()).await,
            };
            let view = match view {
                Err(e) if damaged::is_damage(&e) => {
                    return Ok(damaged::not_delivered(hub, &taken, id, &e).await?.into());
                }
                other => other?,
            };
            let Some(view) = view else {
                warn!(doc_id = %id, "queued delivery for a missing document: dropped");
                store::ack(&hub.store, taken).await?;
                return Ok(Prepared::Done);
            };
            if view.withdrawn {
                info!(doc_id = %id, recipient = %dept, "recalled before delivery: not pushed");
                store::ack(&hub.store, taken.clone()).await?;
                return Ok(Prepared::Done);
            }
            if !hub.sessions.first_push(id, dept) {
                audit::record(
                    &hub.store,
                    Event::new(AuditKind::Redelivery).doc(id).dept(dept),
                )
                .await;
            }
            let origin = view.rec.origin();
            let delivery = pb::Delivery {
                document: Some(view.rec.doc.wire.clone()),
                acceptance: Some(view.rec.acceptance.clone()),
                addition: view.addition,
                content: view.content,
                origin_exchange: origin.map(ToString::to_string).unwrap_or_default(),
                addressed_as: match origin {
                    Some(_) => hub.links.header_form(origin, dept).to_string(),
                    None => String::new(),
                },
            };
            (
                pb::hub_push::Item::Delivery(delivery),
                Pending::Delivery(Box::new(view.rec)),
            )
        }
        Outbound::Evidence(e) => (pb::hub_push::Item::Evidence(e), Pending::Plain),
        Outbound::Notice(e) => {
            let (is_recall, rec) = match SignedEvidence::decode(e.clone()) {
                Ok(n) => {
                    let id = n.evidence.doc_id;
                    let rec = match store::document(&hub.store, id).await {
                        Err(e) if damaged::is_damage(&e) => {
                            let why = "a notice needs the document";
                            return Ok(damaged::park(hub, dept, Some(id), &e, why).await?.into());
                        }
                        other => other?,
                    };
                    (n.evidence.kind == EvidenceKind::Recall, rec)
                }
                Err(_) => (false, None),
            };
            if let Some(o) = rec.as_ref().and_then(store::DocumentRecord::origin) {
                origin = o.to_string();
            }
            let pending = match rec {
                Some(rec) if is_recall => Pending::Recall(Box::new(rec)),
                _ => Pending::Plain,
            };
            (pb::hub_push::Item::Notice(e), pending)
        }
    };
    Ok(Prepared::Push(Box::new((push, pending, origin))))
}

/// Commits acknowledgements that arrived together (of evidence and notices, and delivery
/// receipts) in one transaction: each item removed from the queue, and each receipt that
/// verifies recorded with it. A receipt that does not verify, or that its delivery's state
/// refuses, is refused alone.
async fn acked_together(
    hub: &Hub,
    dept: &DeptId,
    acks: Vec<(QueueKey, Taken, Pending, pb::Ack)>,
) -> Vec<Finished> {
    let mut finished = Vec::with_capacity(acks.len());
    let mut steps = Vec::with_capacity(acks.len());
    let mut stepped = Vec::with_capacity(acks.len()); // (index in `finished`, about)
    for (key, taken, pending, ack) in acks {
        let (seq, doc) = (ack.seq, pending.doc_id());
        let result = match pending {
            Pending::Delivery(rec) => receipt(hub, dept, &rec, ack).map(Some),
            _ => Ok(None),
        };
        match result {
            Ok(evidence) => {
                stepped.push((finished.len(), evidence.as_ref().map(|(a, _)| a.clone())));
                steps.push(store::AckStep { taken, evidence });
                finished.push(Finished {
                    key,
                    seq,
                    doc,
                    result: Ok(()),
                });
            }
            Err(e) => finished.push(Finished {
                key,
                seq,
                doc,
                result: Err(e),
            }),
        }
    }
    if steps.is_empty() {
        return finished;
    }
    match store::ack_all(&hub.store, steps).await {
        Ok(results) => {
            for ((i, about), result) in stepped.into_iter().zip(results) {
                match (result, about) {
                    (Ok(true), Some(about)) => {
                        info!(doc_id = %about.id, recipient = %dept, "delivered");
                        hub.wake_back(&about);
                    }
                    (Ok(_), _) => {}
                    (Err(e), _) => finished[i].result = Err(e.into()),
                }
            }
        }
        Err(e) => {
            let e = ServiceError::from(e);
            for (i, _) in stepped {
                finished[i].result = Err(e.clone());
            }
        }
    }
    finished
}

/// The node's delivery receipt for document `rec`, checked: signed by this node, naming it as
/// the recipient, about this document; with what recording it needs.
fn receipt(
    hub: &Hub,
    dept: &DeptId,
    rec: &store::DocumentRecord,
    ack: pb::Ack,
) -> Result<(store::About, SignedEvidence), ServiceError> {
    let (doc, origin) = (&rec.doc, rec.origin());
    let me = hub.links.header_form(origin, dept);
    hub.sessions.acked(doc.header.id, dept);
    let receipt = ack
        .delivery_receipt
        .ok_or_else(|| ServiceError::invalid("ack.delivery_receipt: required for a delivery"))?;
    let ev = SignedEvidence::verify_in(receipt, &hub.links.trust, origin, now_secs())
        .map_err(|e| ServiceError::invalid(format!("ack.delivery_receipt: {e}")))?;
    if ev.evidence.kind != EvidenceKind::Delivered
        || ev.evidence.recipient.as_ref() != Some(&me)
        || !ev.is_about(doc)
    {
        return Err(ServiceError::invalid(format!(
            "ack.delivery_receipt: not a delivery receipt of {me} for this document"
        )));
    }
    // As `SubmitEvidence` checks it: the time becomes the delivery's, which the sender's
    // overdue checks and reminders count from.
    check_clock("ack.delivery_receipt.at_ms", ev.evidence.at_ms)?;
    Ok((hub.about(rec), ev))
}

/// Commits what the node's acknowledgement of one item means, and removes the item from the
/// queue in the same transaction. The push loop sends here what is not committed with others
/// ([`acked_together`]): a delivery the node refused, and what a recall notice did.
async fn acked(
    hub: &Hub,
    taken: Taken,
    pending: Pending,
    ack: pb::Ack,
) -> Result<(), ServiceError> {
    let dept = &taken.dept.clone();
    let rec = match pending {
        Pending::Plain => return Ok(store::ack(&hub.store, taken).await?),
        Pending::Recall(rec) => return recall_acked(hub, &rec, ack, taken).await,
        Pending::Delivery(rec) => rec,
    };
    let (about, ev) = match refusal(hub, dept, &rec, &ack)? {
        Some(refused) => refused,
        None => receipt(hub, dept, &rec, ack)?,
    };
    if store::record_evidence(&hub.store, about.clone(), ev, Some(taken)).await? {
        hub.wake_back(&about);
    }
    Ok(())
}

/// For a delivery the node refused to store (`ack.refused`): the hub's signed NOT_DELIVERED.
fn refusal(
    hub: &Hub,
    dept: &DeptId,
    rec: &store::DocumentRecord,
    ack: &pb::Ack,
) -> Result<Option<(store::About, SignedEvidence)>, ServiceError> {
    if ack.refused.is_empty() {
        return Ok(None);
    }
    let doc = &rec.doc;
    let me = hub.links.header_form(rec.origin(), dept);
    hub.sessions.acked(doc.header.id, dept);
    let reason = exchange_core::convert::one_line_text(&ack.refused, limits::TEXT_CHARS);
    warn!(doc_id = %doc.header.id, recipient = %dept, %reason, "recipient refused the delivery");
    let mut ev = Evidence::about(doc, EvidenceKind::NotDelivered, Some(me), now_ms());
    ev.reason = reason;
    let ev = SignedEvidence::seal(ev, &hub.signer)?;
    Ok(Some((hub.about(rec), ev)))
}

/// What an item in flight waits for.
enum Pending {
    /// Only the acknowledgement (evidence for the sender, a reminder).
    Plain,
    /// A delivery receipt or a refusal.
    Delivery(Box<store::DocumentRecord>),
    /// What the sender's recall did at the recipient.
    Recall(Box<store::DocumentRecord>),
}

impl Pending {
    /// The document the item is about, where the hub knows it.
    fn doc_id(&self) -> Option<exchange_core::ids::DocumentId> {
        match self {
            Pending::Plain => None,
            Pending::Delivery(d) | Pending::Recall(d) => Some(d.doc.header.id),
        }
    }
}

/// Records what a recall notice did at `dept` and removes it from the queue: the hub signs
/// WITHDRAWN when the recipient never held the document; the recipient signs RECALLED when it
/// held it unsigned-for; a recipient that had signed for it acknowledges later through
/// `SubmitEvidence` (RECALL_ACKNOWLEDGED).
async fn recall_acked(
    hub: &Hub,
    rec: &store::DocumentRecord,
    ack: pb::Ack,
    taken: Taken,
) -> Result<(), ServiceError> {
    let dept = &taken.dept.clone();
    let (doc, origin) = (&rec.doc, rec.origin());
    let about = hub.about(rec);
    let me = hub.links.header_form(origin, dept);
    let ev = match ack.recall() {
        pb::RecallOutcome::NotHeld => SignedEvidence::seal(
            Evidence::about(doc, EvidenceKind::Withdrawn, Some(me.clone()), now_ms()),
            &hub.signer,
        )?,
        pb::RecallOutcome::Recalled => {
            let receipt = ack.recall_receipt.ok_or_else(|| {
                ServiceError::invalid("ack.recall_receipt: required with RECALLED")
            })?;
            let ev = SignedEvidence::verify_in(receipt, &hub.links.trust, origin, now_secs())
                .map_err(|e| ServiceError::invalid(format!("ack.recall_receipt: {e}")))?;
            if ev.evidence.kind != EvidenceKind::Recalled
                || ev.evidence.recipient.as_ref() != Some(&me)
                || !ev.is_about(doc)
            {
                return Err(ServiceError::invalid(
                    "ack.recall_receipt: not this recipient's RECALLED evidence for this document",
                ));
            }
            check_clock("ack.recall_receipt.at_ms", ev.evidence.at_ms)?;
            ev
        }
        pb::RecallOutcome::AckRequired | pb::RecallOutcome::AlreadyDone => {
            info!(doc_id = %doc.header.id, recipient = %dept, outcome = ?ack.recall(), "recall delivered");
            return Ok(store::ack(&hub.store, taken).await?);
        }
        pb::RecallOutcome::Unspecified => {
            return Err(ServiceError::invalid(
                "ack.recall: required for a recall notice",
            ));
        }
    };
    let kind = ev.evidence.kind;
    match store::record_evidence(&hub.store, about.clone(), ev, Some(taken.clone())).await {
        Ok(true) => {
            info!(doc_id = %doc.header.id, recipient = %dept, ?kind, "recall took effect");
            hub.wake_back(&about);
            Ok(())
        }
        Ok(false) => Ok(()),
        // The delivery ended otherwise meanwhile (e.g. it expired): the notice is done.
        Err(e) if e.is_state_conflict() => {
            warn!(doc_id = %doc.header.id, recipient = %dept, error = %e, "recall outcome not recorded");
            Ok(store::ack(&hub.store, taken).await?)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_shrink_as_nodes_connect_and_never_below_the_minimum() {
        let w: Vec<usize> = [0, 1, 4, 256, 257, 512, 1024, 10_000]
            .into_iter()
            .map(push_window)
            .collect();
        assert_eq!(w, vec![64, 64, 64, 64, 63, 32, 16, 16]);
    }
}
