//! The outbox sender: keeps up to `[hub] max_in_flight` outbox items on their way to the hub at
//! once, so that the hub's and this node's commits of many documents share fsyncs (group
//! commit) instead of one document waiting for the previous one's round trips and commits.
//!
//! What stays as with one item at a time:
//! - **Most urgent first.** Items start in queue order (priority, then arrival). An item never
//!   starts while a more urgent one is being sent, so a 特急 document waits behind at most the
//!   items already in flight when it was queued (at most `max_in_flight`), and nothing less
//!   urgent overtakes it.
//! - **One item per document at a time**, in queue order: evidence about a document (a recall,
//!   an addition, a reminder) never races the document's own submission or other evidence
//!   about it.
//! - **At least once.** An item leaves the outbox only in the transaction that records the
//!   hub's answer (`store::apply_evidence`, `store::refused`, `store::outbox_done`); the hub
//!   deduplicates by document id, so a resubmission after a lost answer gets the same
//!   acceptance.
//! - **Backoff.** After a transient failure no new item starts until the backoff delay has
//!   passed (or the delivery stream reconnects); items already in flight finish. The failed
//!   item is started again first.
//! - **Damaged items are set aside.** An item whose own stored data this node cannot read back
//!   (its outbox entry, the document's record or its content fails to decode or to
//!   authenticate: altered on disk, or damaged by it) would fail the same way on every retry.
//!   It is logged as an error once and set aside: it stays in the outbox (nothing is dropped;
//!   a restart tries it again, e.g. after restoring the store) but is not sent again by this
//!   process, costs no backoff, and holds back only the later items about the same document.
//! - **Small documents together.** The small documents (content inline) started at once go in
//!   one `SubmitBatch` call (at most 64 and 2 MiB a call), each answered and recorded as if sent
//!   alone; a large one is uploaded and submitted in a task of its own, so that its upload holds
//!   no other slot. A hub older than the call (`UNIMPLEMENTED`) gets one `Submit` per document,
//!   and a batch is tried again after [`BATCH_RETRY_MS`].
//! - **Shutdown.** On cancellation nothing new starts and the items in flight are finished (the
//!   node's grace period bounds the wait); anything cut off stays queued.

use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
};

use exchange_core::{
    backoff::Backoff,
    blob::chunk_for,
    document::{EvidenceKind, SignedDoc, SignedEvidence, limits},
    error::ServiceError,
    ids::DocumentId,
    signing::Digest,
    store::queue::QueueKey,
    time::now_ms,
};
use exchange_proto::v1 as pb;
use tokio::{io::AsyncReadExt, sync::Notify, task::JoinSet};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tracing::{info, warn};

use super::{
    Client,
    error::{Call, UplinkError},
    now_secs,
};
use crate::{
    Node,
    content::blob_error,
    store::{self, OutboxItem},
};

/// An item being sent.
#[derive(Debug)]
struct InFlight {
    /// The document it is about (for evidence, as its encoding names it).
    doc: Option<String>,
    task: tokio::task::Id,
}

/// What a sending task returns for each of its items: the item, and how sending it went.
type Sent = (QueueKey, Result<(), UplinkError>);

/// The sending tasks and what they are sending. A task sends one item, or several submissions
/// together (`SubmitBatch`).
struct Window {
    size: usize,
    tasks: JoinSet<Vec<Sent>>,
    busy: HashMap<QueueKey, InFlight>,
    /// Items set aside because their stored data is damaged, with the document they are about.
    parked: HashMap<QueueKey, Option<String>>,
    uploads: Arc<Uploads>,
    batches: Arc<Batches>,
}

/// Takes items from the outbox and sends them to the hub until `cancel`.
pub(super) async fn run(node: Arc<Node>, client: Client, cancel: CancellationToken) {
    let mut w = Window {
        size: node.cfg.hub.max_in_flight.get(),
        tasks: JoinSet::new(),
        busy: HashMap::new(),
        parked: HashMap::new(),
        uploads: Arc::default(),
        batches: Arc::default(),
    };
    let mut backoff = Backoff::default();
    // While backing off after a failure (`holding`), nothing new starts until `hold` fires.
    let mut hold = Box::pin(tokio::time::sleep(std::time::Duration::ZERO));
    let mut holding = false;
    loop {
        if !holding
            && w.busy.len() < w.size
            && let Err(e) = w.start_more(&node, &client).await
        {
            warn!(error = %e, "reading the outbox");
            back_off(&mut hold, &mut backoff);
            holding = true;
        }
        tokio::select! {
            Some(done) = w.tasks.join_next_with_id(), if !w.tasks.is_empty() => {
                match w.finished(done) {
                    Ok(()) => backoff.reset(),
                    Err(e) => {
                        warn!(error = %e, "outbox item not sent; will retry");
                        // Several items failing together (the hub went away) count as one.
                        if !holding {
                            back_off(&mut hold, &mut backoff);
                            holding = true;
                        }
                    }
                }
            }
            () = &mut hold, if holding => holding = false,
            // The delivery stream reconnected: the hub is back, retry now.
            () = node.hub_up.notified(), if holding => holding = false,
            () = node.outbox_wake.notified() => {}
            () = cancel.cancelled() => break,
        }
    }
    // Let what was started finish, so that answers the hub gave are recorded now rather than
    // asked for again after the restart.
    while let Some(done) = w.tasks.join_next_with_id().await {
        let _ = w.finished(done);
    }
}

/// Sets `hold` to fire after the next backoff delay.
fn back_off(hold: &mut Pin<Box<tokio::time::Sleep>>, backoff: &mut Backoff) {
    hold.as_mut()
        .reset(tokio::time::Instant::now() + backoff.next_delay());
}

impl Window {
    /// Starts the next items that may start now, filling the free slots.
    async fn start_more(&mut self, node: &Arc<Node>, client: &Client) -> Result<(), ServiceError> {
        let skip: HashSet<QueueKey> = self
            .busy
            .keys()
            .chain(self.parked.keys())
            .copied()
            .collect();
        let items = store::next_outbox(&node.store, self.size - self.busy.len(), skip).await?;
        // The most urgent priority being sent: nothing less urgent starts beside it.
        let mut floor = self.busy.keys().map(|k| k.priority).min();
        // Small documents started together go together (`SubmitBatch`, one task).
        let mut submissions: Vec<(Prepared, Option<String>)> = Vec::new();
        for (key, item) in items {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    self.park(key, None, &e);
                    continue;
                }
            };
            if floor.is_some_and(|f| key.priority > f) {
                break;
            }
            let doc = about(&item);
            if doc.is_some()
                && (self.busy.values().any(|b| b.doc == doc)
                    || submissions.iter().any(|(_, d)| *d == doc)
                    || self.parked.values().any(|d| *d == doc))
            {
                continue; // after the item about the same document in flight or set aside
            }
            floor = Some(floor.map_or(key.priority, |f| f.min(key.priority)));
            let task = match item {
                OutboxItem::Evidence(ev) => {
                    let (node, mut client) = (Arc::clone(node), client.clone());
                    self.tasks.spawn(async move {
                        vec![(key, send_evidence(&node, &mut client, ev, key).await)]
                    })
                }
                // Read here, so that a small document joins the others and a large one (whose
                // upload may take long) goes in a task of its own.
                OutboxItem::Submit(id) => match prepare(node, id, key).await {
                    Ok(Some(p)) if p.inline => {
                        submissions.push((p, doc));
                        continue;
                    }
                    Ok(Some(p)) => {
                        let (node, mut client) = (Arc::clone(node), client.clone());
                        let uploads = Arc::clone(&self.uploads);
                        self.tasks.spawn(async move {
                            vec![(key, submit_large(&node, &mut client, &uploads, p).await)]
                        })
                    }
                    Ok(None) => continue, // not stored: the item was dropped
                    Err(e) if e.is_damage() => {
                        self.park(key, doc, &e);
                        continue;
                    }
                    Err(e) => self.tasks.spawn(async move { vec![(key, Err(e))] }),
                },
            };
            let task = task.id();
            self.busy.insert(key, InFlight { doc, task });
        }
        if !submissions.is_empty() {
            let (node, client) = (Arc::clone(node), client.clone());
            let batches = Arc::clone(&self.batches);
            let (small, docs): (Vec<_>, Vec<_>) = submissions.into_iter().unzip();
            let keys: Vec<QueueKey> = small.iter().map(|p| p.key).collect();
            let task = self
                .tasks
                .spawn(async move { submit_small(&node, &client, &batches, small).await })
                .id();
            for (key, doc) in keys.into_iter().zip(docs) {
                self.busy.insert(key, InFlight { doc, task });
            }
        }
        Ok(())
    }

    /// Frees the slots of a finished task and returns how its items went (the first failure).
    fn finished(
        &mut self,
        done: Result<(tokio::task::Id, Vec<Sent>), tokio::task::JoinError>,
    ) -> Result<(), UplinkError> {
        match done {
            Ok((_, sent)) => {
                let mut first = Ok(());
                for (key, result) in sent {
                    let doc = self.busy.remove(&key).and_then(|b| b.doc);
                    match result {
                        Err(e) if e.is_damage() => self.park(key, doc, &e),
                        Err(e) if first.is_ok() => first = Err(e),
                        _ => {}
                    }
                }
                first
            }
            Err(e) => {
                let id = e.id();
                self.busy.retain(|_, b| b.task != id);
                Err(UplinkError::Local(ServiceError::new(
                    exchange_core::error::ErrorCode::Internal,
                    format!("sending an outbox item: {e}"),
                )))
            }
        }
    }

    /// Sets aside item `key` (about `doc`), whose stored data is damaged: logged once, left in
    /// the outbox, not sent again by this process.
    fn park(&mut self, key: QueueKey, doc: Option<String>, e: &dyn std::fmt::Display) {
        tracing::error!(
            doc_id = doc.as_deref().unwrap_or("unknown"),
            seq = key.seq,
            error = %e,
            "outbox item set aside: its stored data is damaged and sending it again cannot \
             succeed; it stays queued (restore the store from a backup and restart, or send \
             the document again)"
        );
        self.parked.insert(key, doc);
    }
}

/// The document an outbox item is about.
fn about(item: &OutboxItem) -> Option<String> {
    match item {
        OutboxItem::Submit(id) => Some(id.to_string()),
        OutboxItem::Evidence(ev) => {
            <pb::Evidence as prost::Message>::decode(ev.evidence.as_slice())
                .ok()
                .map(|e| e.doc_id)
        }
    }
}

/// The whole content of a small blob.
async fn read_small(
    node: &Node,
    id: DocumentId,
    sha256: Digest,
    size: u64,
) -> Result<Vec<u8>, UplinkError> {
    let file = crate::content::open(&node.store, &node.blobs, id, &sha256, 0)
        .await
        .map_err(blob_error)?;
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(size).read_to_end(&mut data).await.map_err(|e| {
        ServiceError::new(
            exchange_core::error::ErrorCode::Unavailable,
            format!("reading content {sha256}: {e}"),
        )
    })?;
    Ok(data)
}

/// Most bytes of documents sent in one `SubmitBatch` (the gRPC message limit is 8 MiB).
const BATCH_BYTES: usize = 2 * 1024 * 1024;

/// How long a node whose hub does not know `SubmitBatch` (an older hub) submits one document
/// per call before it tries a batch again.
const BATCH_RETRY_MS: i64 = 10 * 60 * 1000;

/// Whether the hub takes `SubmitBatch`: until when it is not tried (ms; 0: it is).
#[derive(Debug, Default)]
struct Batches {
    off_until_ms: std::sync::atomic::AtomicI64,
}

impl Batches {
    fn on(&self) -> bool {
        now_ms() >= self.off_until_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn unsupported(&self) {
        let until = now_ms().saturating_add(BATCH_RETRY_MS);
        self.off_until_ms
            .store(until, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A document ready to be submitted: the request, and what checking the answer needs.
struct Prepared {
    key: QueueKey,
    doc: SignedDoc,
    req: pb::SubmitRequest,
    /// Whether its content travels in the request (a small document), so that it may share a
    /// `SubmitBatch` with others.
    inline: bool,
}

/// Submits the small documents `small` (in queue order) in `SubmitBatch` calls of at most
/// [`limits::SUBMIT_BATCH`] documents and [`BATCH_BYTES`]. Returns how each went.
async fn submit_small(
    node: &Arc<Node>,
    client: &Client,
    batches: &Batches,
    small: Vec<Prepared>,
) -> Vec<Sent> {
    let mut out = Vec::with_capacity(small.len());
    let (mut batch, mut bytes): (Vec<Prepared>, usize) = (Vec::new(), 0);
    for p in small {
        let len = prost::Message::encoded_len(&p.req);
        if batch.len() == limits::SUBMIT_BATCH || bytes + len > BATCH_BYTES {
            let full = std::mem::take(&mut batch);
            out.extend(submit_batch(node, client, batches, full).await);
            bytes = 0;
        }
        bytes += len;
        batch.push(p);
    }
    out.extend(submit_batch(node, client, batches, batch).await);
    out
}

/// Uploads the content of `p` (resuming where the hub's copy stops) and submits it.
async fn submit_large(
    node: &Node,
    client: &mut Client,
    uploads: &Arc<Uploads>,
    p: Prepared,
) -> Result<(), UplinkError> {
    for part in &p.doc.header.parts {
        let _claim = uploads.claim(part.sha256).await;
        upload(node, client, part.sha256, part.size).await?;
    }
    submit_alone(node, client, p).await
}

/// Submits `p` in a `Submit` of its own and records the answer.
async fn submit_alone(
    node: &Node,
    client: &mut Client,
    mut p: Prepared,
) -> Result<(), UplinkError> {
    let sent = client.submit(std::mem::take(&mut p.req)).await;
    answered(node, p, sent.map(tonic::Response::into_inner)).await
}

/// Submits `batch` in one `SubmitBatch` call (one alone, or all one by one to a hub that does
/// not know the call, with `Submit`), and records each answer.
async fn submit_batch(
    node: &Arc<Node>,
    client: &Client,
    batches: &Batches,
    mut batch: Vec<Prepared>,
) -> Vec<Sent> {
    if batch.len() > 1 && batches.on() {
        let documents = batch
            .iter_mut()
            .map(|p| std::mem::take(&mut p.req))
            .collect();
        let call = client
            .clone()
            .submit_batch(pb::SubmitBatchRequest { documents })
            .await;
        match call {
            Ok(r) => {
                info!(documents = batch.len(), "submitted together (SubmitBatch)");
                return batch_answered(node, batch, r.into_inner().outcomes).await;
            }
            // An older hub that does not know the call, or one that does not take this batch
            // (an error about the batch, not about a document): one by one.
            Err(s) if matches!(s.code(), Code::Unimplemented | Code::InvalidArgument) => {
                info!(reason = %s.message(), "the hub did not take SubmitBatch: submitting one by one");
                batches.unsupported();
                if let Err(e) = refill(node, &mut batch).await {
                    return failed_all(batch, &e);
                }
            }
            // Whatever the call met (the caller's identity, a rate, the link), each document
            // meets as Submit would have.
            Err(s) => {
                return batch
                    .into_iter()
                    .map(|p| {
                        (
                            p.key,
                            Err(UplinkError::from_status(Call::Submit, s.clone())),
                        )
                    })
                    .collect();
            }
        }
    }
    let mut tasks = JoinSet::new();
    for p in batch {
        let (node, mut client) = (Arc::clone(node), client.clone());
        tasks.spawn(async move { (p.key, submit_alone(&node, &mut client, p).await) });
    }
    tasks.join_all().await
}

/// Makes the requests of `batch` again (they went into a call the hub did not take).
async fn refill(node: &Node, batch: &mut [Prepared]) -> Result<(), UplinkError> {
    for p in batch.iter_mut() {
        p.req = request(node, &p.doc).await?;
    }
    Ok(())
}

/// Every item of `batch` failed for the same reason, to be retried.
fn failed_all(batch: Vec<Prepared>, s: &dyn std::fmt::Display) -> Vec<Sent> {
    batch
        .into_iter()
        .map(|p| (p.key, Err(UplinkError::unusable(s.to_string()))))
        .collect()
}

/// Records the hub's `outcomes` of a `SubmitBatch` of `batch`, together so that their commits
/// are shared.
async fn batch_answered(
    node: &Arc<Node>,
    batch: Vec<Prepared>,
    outcomes: Vec<pb::SubmitOutcome>,
) -> Vec<Sent> {
    if outcomes.len() != batch.len() {
        let e = format!(
            "hub answered {} outcomes for {} documents",
            outcomes.len(),
            batch.len()
        );
        return failed_all(batch, &e);
    }
    // The acceptances are recorded in one transaction; a refusal or an error is answered as
    // if it came alone.
    let mut out = Vec::with_capacity(batch.len());
    let (mut accepted, mut others) = (Vec::new(), JoinSet::new());
    for (p, o) in batch.into_iter().zip(outcomes) {
        match outcome(o) {
            Ok(resp) => match acceptance(node, &p.doc, resp) {
                Ok(ev) => accepted.push((p.doc.header.id, p.key, ev)),
                Err(e) => out.push((p.key, Err(e))),
            },
            Err(s) => {
                let node = Arc::clone(node);
                others.spawn(async move { (p.key, answered(&node, p, Err(s)).await) });
            }
        }
    }
    if !accepted.is_empty() {
        out.extend(record_accepted(node, accepted).await);
    }
    out.extend(others.join_all().await);
    out
}

/// Records the hub's acceptances `accepted` (document, outbox item, verified acceptance) in
/// one transaction.
async fn record_accepted(
    node: &Node,
    accepted: Vec<(DocumentId, QueueKey, SignedEvidence)>,
) -> Vec<Sent> {
    let (items, evs): (Vec<_>, Vec<_>) = accepted
        .into_iter()
        .map(|(id, key, ev)| ((id, key), (ev, Some(key))))
        .unzip();
    let outcomes = match store::apply_evidence_all(&node.store, evs).await {
        Ok((outcomes, seq)) => {
            node.event_committed(seq);
            outcomes
        }
        Err(e) => {
            let e = ServiceError::from(e);
            return items
                .into_iter()
                .map(|(_, key)| (key, Err(UplinkError::from(e.clone()))))
                .collect();
        }
    };
    items
        .into_iter()
        .zip(outcomes)
        .map(|((id, key), o)| {
            let o = o.map_err(|e| UplinkError::from(ServiceError::from(e)));
            if o.is_ok() {
                info!(doc_id = %id, "accepted by the hub");
            }
            (key, o)
        })
        .collect()
}

/// One document's outcome in a `SubmitBatch` answer, as `Submit` would have answered it.
fn outcome(o: pb::SubmitOutcome) -> Result<pb::SubmitResponse, tonic::Status> {
    if o.code == 0 {
        return Ok(pb::SubmitResponse {
            acceptance: o.acceptance,
        });
    }
    Err(tonic::Status::with_details(
        tonic::Code::from(o.code),
        o.message,
        o.details.into(),
    ))
}

/// Reads outbox item `key` (document `id`) and makes its `Submit`, with the content inline
/// for a small document. `None`: the document is not stored (the item is dropped).
async fn prepare(
    node: &Node,
    id: DocumentId,
    key: QueueKey,
) -> Result<Option<Prepared>, UplinkError> {
    let Some(rec) = store::sent(&node.store, id).await? else {
        warn!(doc_id = %id, "outbox names a document that is not stored; dropping the item");
        store::outbox_done(&node.store, key).await?;
        return Ok(None);
    };
    let doc = rec.doc;
    let inline = doc.header.total_size() <= limits::INLINE_BYTES;
    let req = request(node, &doc).await?;
    Ok(Some(Prepared {
        key,
        doc,
        req,
        inline,
    }))
}

/// The `Submit` of `doc`: with its content inline if it is small (each distinct part once).
async fn request(node: &Node, doc: &SignedDoc) -> Result<pb::SubmitRequest, UplinkError> {
    let mut content = Vec::new();
    if doc.header.total_size() <= limits::INLINE_BYTES {
        for p in &doc.header.parts {
            if content
                .iter()
                .any(|c: &pb::InlineContent| c.sha256 == p.sha256.0)
            {
                continue;
            }
            content.push(pb::InlineContent {
                sha256: p.sha256.0.to_vec(),
                data: read_small(node, doc.header.id, p.sha256, p.size).await?,
            });
        }
    }
    Ok(pb::SubmitRequest {
        document: Some(doc.wire.clone()),
        content,
    })
}

/// Records the hub's answer to the submission of `p`. A refusal is recorded and ends the item;
/// anything else is returned for a retry.
async fn answered(
    node: &Node,
    p: Prepared,
    sent: Result<pb::SubmitResponse, tonic::Status>,
) -> Result<(), UplinkError> {
    let (id, key, doc) = (p.doc.header.id, p.key, p.doc);
    match sent.map_err(|s| UplinkError::from_status(Call::Submit, s)) {
        Ok(resp) => {
            let ev = acceptance(node, &doc, resp)?;
            let seq = store::apply_evidence(&node.store, ev, Some(key))
                .await
                .map_err(ServiceError::from)?;
            node.event_committed(seq);
            info!(doc_id = %id, "accepted by the hub");
            Ok(())
        }
        Err(UplinkError::Refused {
            code,
            message,
            details,
        }) => {
            warn!(doc_id = %id, ?code, reason = %message, "hub refused the document");
            // The hub's signed REFUSED evidence, if it sent one: kept so the refusal is provable.
            let evidence = <pb::SignedEvidence as prost::Message>::decode(details)
                .ok()
                .and_then(|w| SignedEvidence::verify(w, &node.verifier, now_secs()).ok())
                .filter(|ev| ev.evidence.kind == EvidenceKind::Refused && ev.is_about(&doc))
                .map(|ev| ev.wire);
            let seq = store::refused(&node.store, id, message, evidence, key, now_ms()).await?;
            node.event_committed(seq);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The hub's acceptance of `doc` in its answer `resp`, verified.
fn acceptance(
    node: &Node,
    doc: &SignedDoc,
    resp: pb::SubmitResponse,
) -> Result<SignedEvidence, UplinkError> {
    let acc = resp
        .acceptance
        .ok_or_else(|| UplinkError::unusable("hub sent no acceptance"))?;
    let ev = SignedEvidence::verify(acc, &node.verifier, now_secs())
        .map_err(|e| UplinkError::unusable(format!("hub acceptance: {e}")))?;
    if ev.evidence.kind != EvidenceKind::Accepted || !ev.is_about(doc) {
        return Err(UplinkError::unusable(
            "hub acceptance is not about this document",
        ));
    }
    Ok(ev)
}

/// Blobs being uploaded by one of the sending tasks. Another document with the same content
/// waits for that upload and then finds the blob complete, instead of racing it: the hub takes
/// one writer per blob and answers a second with UNAVAILABLE (which would cost a backoff).
#[derive(Debug, Default)]
struct Uploads {
    active: Mutex<HashSet<Digest>>,
    done: Notify,
}

/// The right to upload one blob, released when dropped.
struct Claim {
    uploads: Arc<Uploads>,
    digest: Digest,
}

impl Uploads {
    async fn claim(self: &Arc<Self>, digest: Digest) -> Claim {
        loop {
            // Registered before the check, so a release in between is not missed.
            let released = self.done.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let free = self
                .active
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(digest);
            if free {
                return Claim {
                    uploads: Arc::clone(self),
                    digest,
                };
            }
            released.await;
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.uploads
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.digest);
        self.uploads.done.notify_waiters();
    }
}

/// Uploads one blob, from wherever the hub's copy stops.
async fn upload(
    node: &Node,
    client: &mut Client,
    sha256: Digest,
    size: u64,
) -> Result<(), UplinkError> {
    let status = client
        .blob_status(pb::BlobStatusRequest {
            sha256: sha256.0.to_vec(),
            size,
        })
        .await
        .map_err(|s| UplinkError::from_status(Call::Submit, s))?
        .into_inner();
    if status.complete {
        return Ok(());
    }
    let offset = status.have.min(size);
    let mut file = node
        .blobs
        .open_read(&sha256, offset)
        .await
        .map_err(blob_error)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut pos = offset;
        let mut first = true;
        let mut buf = vec![0u8; chunk_for(size - offset)];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "reading content for upload");
                    return; // the hub sees a short blob and the item is retried
                }
            };
            if n == 0 && !first {
                return;
            }
            let chunk = pb::BlobChunk {
                sha256: sha256.0.to_vec(),
                size,
                offset: pos,
                data: buf[..n].to_vec(),
            };
            if tx.send(chunk).await.is_err() || n == 0 {
                return;
            }
            first = false;
            pos += n as u64;
            if pos >= size {
                return; // all sent: no read just to learn that the file ends here
            }
        }
    });
    client
        .put_blob(ReceiverStream::new(rx))
        .await
        .map_err(|s| UplinkError::from_status(Call::Submit, s))?;
    Ok(())
}

async fn send_evidence(
    node: &Node,
    client: &mut Client,
    ev: pb::SignedEvidence,
    key: QueueKey,
) -> Result<(), UplinkError> {
    let addition = SignedEvidence::decode(ev.clone())
        .is_ok_and(|e| e.evidence.kind == EvidenceKind::RecipientAdded);
    let sent = client
        .submit_evidence(pb::SubmitEvidenceRequest {
            evidence: Some(ev.clone()),
        })
        .await
        .map_err(|s| UplinkError::from_status(Call::Statement, s));
    let answer = match sent {
        Ok(_) => None,
        Err(UplinkError::Refused { code, message, .. }) => {
            warn!(?code, reason = %message, "hub refused our statement for good; recorded on the document");
            Some(message)
        }
        Err(e) => return Err(e),
    };
    let done = match answer {
        // 补发: the added recipient's row shows whether the hub took it.
        _ if addition => crate::office::addition_answered(node, &ev, answer, key).await,
        Some(reason) => crate::office::statement_refused(node, &ev, reason, key).await,
        None => store::outbox_done(&node.store, key).await,
    };
    Ok(done?)
}
