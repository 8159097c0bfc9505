//! The node's connection to the hub: two tasks over one mutual-TLS channel.
//!
//! - **outbox** ([`outbox`]): takes the most urgent outbox items (up to `[hub] max_in_flight`
//!   at once), uploads each document's content (resuming from what the hub already holds),
//!   submits it, and removes the item only once the hub's signed acceptance is committed here.
//!   Confirmations and rejections go the same way.
//! - **deliveries**: holds the `Subscribe` stream; for each pushed document, verifies the
//!   sender's signature and the hub's acceptance, downloads and verifies the content, commits it
//!   to the inbox and only then acknowledges with a signed delivery receipt. Evidence about the
//!   department's own documents is applied to their timelines, then acknowledged.
//!
//! Both retry with capped, jittered exponential backoff while the hub is unreachable.

use std::sync::Arc;

use exchange_core::{
    backoff::Backoff,
    config::TlsProtocol,
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    error::{ErrorCode, ServiceError},
    signing::{Digest, digest_label},
    time::{now_ms, now_secs},
    tls::mismatch::hub_refused_note,
};
use exchange_proto::v1::{self as pb, hub_client::HubClient};
use tokio::{sync::mpsc, task::JoinSet};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::{info, warn};

use crate::{Node, content::blob_error, store};

mod error;
mod outbox;

type Client = HubClient<Channel>;

/// Starts the outbox and delivery tasks.
pub(crate) fn start(
    tasks: &mut JoinSet<()>,
    node: Arc<Node>,
    hub: exchange_core::tls::HubEndpoint,
    cancel: CancellationToken,
) {
    let client = HubClient::new(hub.connect_lazy())
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES);
    tasks.spawn(outbox::run(
        Arc::clone(&node),
        client.clone(),
        cancel.clone(),
    ));
    // What this node speaks, for the note when the hub refuses the handshake (the config was
    // checked at start-up: an error here only means no note).
    let protocol = TlsProtocol::of(node.cfg.crypto.profile, &node.cfg.tls).ok();
    tasks.spawn(delivery_loop(node, client, protocol, cancel));
}

/// Sleeps for the next backoff delay; false if cancelled meanwhile.
async fn pause(backoff: &mut Backoff, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(backoff.next_delay()) => true,
        () = cancel.cancelled() => false,
    }
}

async fn delivery_loop(
    node: Arc<Node>,
    mut client: Client,
    protocol: Option<TlsProtocol>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        let started = std::time::Instant::now();
        let result = subscribe_once(&node, &mut client, &cancel, &mut backoff).await;
        if started.elapsed() > std::time::Duration::from_secs(30) {
            backoff.reset(); // a long-lived stream ended: reconnect promptly
        }
        match result {
            Ok(()) if cancel.is_cancelled() => return,
            Ok(()) => info!("delivery stream closed by the hub; reconnecting"),
            Err(s) => match protocol.and_then(|p| hub_refused_note(p, &s)) {
                // The hub refused the handshake: say which profile this node is and what the hub
                // then probably is (the hub names both profiles in its log, from its side).
                Some(note) => warn!(
                    code = ?s.code(),
                    error = %s.message(),
                    %note,
                    "the TLS handshake with the hub failed; reconnecting"
                ),
                None => warn!(
                    code = ?s.code(),
                    error = %s.message(),
                    "delivery stream failed; reconnecting"
                ),
            },
        }
        if !pause(&mut backoff, &cancel).await {
            return;
        }
    }
}

async fn subscribe_once(
    node: &Arc<Node>,
    client: &mut Client,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), tonic::Status> {
    let listing = client
        .list_departments(pb::ListDepartmentsRequest {})
        .await?
        .into_inner();
    let departments = listing.departments;
    node.learn_links(listing.exchange, listing.exchanges);
    *node
        .groups
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = listing.groups;
    *node
        .directory
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(departments);
    let (acks, rx) = mpsc::channel(4);
    // v1.4: ask for several pushes per message; a hub that takes several acknowledgements per
    // message says so in its answer (an older hub does neither).
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    exchange_proto::say_batches(request.metadata_mut());
    let response = client.subscribe(request).await?;
    let acks = Acks {
        tx: acks,
        together: exchange_proto::says_batches(response.metadata()),
    };
    let mut pushes = response.into_inner();
    info!("connected to the hub");
    node.hub_up.notify_one(); // the hub is back: retry the outbox now, not after its backoff
    // Deliveries are stored (and evidence applied) concurrently — the hub keeps several in
    // flight — so their commits share fsyncs; each is acknowledged when it is durable, in
    // whatever order they finish, together with any others finished by then.
    let mut receiving: Receiving = JoinSet::new();
    loop {
        let push = tokio::select! {
            m = pushes.message() => m?,
            Some(done) = receiving.join_next(), if !receiving.is_empty() => {
                let mut done = joined(done)?;
                while let Some(more) = receiving.try_join_next() {
                    done.extend(joined(more)?);
                }
                if !acks.send(done, backoff).await {
                    return Ok(());
                }
                continue;
            }
            () = cancel.cancelled() => return Ok(()),
        };
        let Some(push) = push else { return Ok(()) };
        let items = if push.batch.is_empty() {
            vec![push]
        } else {
            push.batch
        };
        // Evidence about documents we sent, and deliveries whose content came inline, that
        // came together are taken together (`take`, `Together`).
        let mut together = Together::default();
        for push in items {
            let taken = take(
                node,
                client,
                push,
                &mut together,
                &mut receiving,
                &acks,
                backoff,
            );
            let Some(ack) = taken.await? else {
                continue;
            };
            if !acks.send(vec![ack], backoff).await {
                return Ok(());
            }
        }
        together.start(node, client, &mut receiving);
    }
}

/// Items of one push message taken together (pushed seq, item).
#[derive(Default)]
struct Together {
    evidence: Vec<(u64, pb::SignedEvidence)>,
    deliveries: Vec<(u64, pb::Delivery)>,
}

impl Together {
    /// Starts what has gathered, in `receiving`: the evidence in one task ([`apply`]), the
    /// deliveries in another ([`receive_together`]).
    fn start(&mut self, node: &Arc<Node>, client: &Client, receiving: &mut Receiving) {
        let evidence = std::mem::take(&mut self.evidence);
        if !evidence.is_empty() {
            let node = Arc::clone(node);
            receiving.spawn(async move { apply(&node, evidence).await });
        }
        let deliveries = std::mem::take(&mut self.deliveries);
        if !deliveries.is_empty() {
            let (node, client) = (Arc::clone(node), client.clone());
            receiving.spawn(async move { receive_together(&node, &client, deliveries).await });
        }
    }
}

/// The items being stored or applied, each task with the acknowledgements it gives when it
/// finishes.
type Receiving = JoinSet<Result<Vec<pb::Ack>, tonic::Status>>;

/// Takes one pushed item. Evidence, and a delivery whose content came inline, join `together`:
/// each kind in one task and one transaction, concurrently with what came before and after (the
/// state machine absorbs steps of one document arriving out of order). Any other item first
/// starts what gathered before it, so that it runs after it: a delivery whose content must be
/// downloaded is stored in a task of its own (in `receiving`, acknowledged when it finishes); a
/// notice is acted on at once and its acknowledgement returned.
async fn take(
    node: &Arc<Node>,
    client: &Client,
    push: pb::HubPush,
    together: &mut Together,
    receiving: &mut Receiving,
    acks: &Acks,
    backoff: &mut Backoff,
) -> Result<Option<pb::Ack>, tonic::Status> {
    let seq = push.seq;
    let ack = match push.item {
        Some(pb::hub_push::Item::Evidence(e)) => {
            together.evidence.push((seq, e));
            return Ok(None);
        }
        Some(pb::hub_push::Item::Delivery(d)) if !d.content.is_empty() => {
            together.deliveries.push((seq, d));
            return Ok(None);
        }
        Some(pb::hub_push::Item::Delivery(d)) => {
            together.start(node, client, receiving);
            let (node, mut client) = (Arc::clone(node), client.clone());
            receiving.spawn(async move {
                receive(&node, &mut client, d)
                    .await
                    .map(|ack| vec![pb::Ack { seq, ..ack }])
            });
            return Ok(None);
        }
        // A notice may be about a document still being stored (a recall right behind its
        // delivery): everything pushed before it is finished first.
        Some(pb::hub_push::Item::Notice(e)) => {
            together.start(node, client, receiving);
            finish_all(receiving, acks, backoff).await?;
            let origin = push.origin_exchange.parse().ok();
            crate::office::notice(node, e, origin)
                .await
                .map_err(ServiceError::from)?
        }
        // The hub refused our acknowledgement of an earlier item: nothing to acknowledge.
        Some(pb::hub_push::Item::AckRefused(r)) => {
            together.start(node, client, receiving);
            ack_refused(node, r).await?;
            return Ok(None);
        }
        None => return Err(tonic::Status::invalid_argument("hub pushed an empty item")),
    };
    Ok(Some(pb::Ack { seq, ..ack }))
}

fn joined(
    done: Result<Result<Vec<pb::Ack>, tonic::Status>, tokio::task::JoinError>,
) -> Result<Vec<pb::Ack>, tonic::Status> {
    done.map_err(|e| tonic::Status::internal(format!("storing a delivery: {e}")))?
}

/// Waits for every delivery being stored and acknowledges them.
async fn finish_all(
    receiving: &mut Receiving,
    acks: &Acks,
    backoff: &mut Backoff,
) -> Result<(), tonic::Status> {
    let mut done = Vec::new();
    while let Some(one) = receiving.join_next().await {
        done.extend(joined(one)?);
    }
    acks.send(done, backoff).await;
    Ok(())
}

/// The acknowledgements' way to the hub.
struct Acks {
    tx: mpsc::Sender<pb::SubscribeRequest>,
    /// The hub takes several per message (v1.4).
    together: bool,
}

impl Acks {
    /// Sends acknowledgements, in one message where the hub takes that; false once the stream
    /// is gone.
    async fn send(&self, mut acks: Vec<pb::Ack>, backoff: &mut Backoff) -> bool {
        if acks.is_empty() {
            return true;
        }
        backoff.reset(); // an item went through: the link works, not merely connects
        let msgs = if self.together && acks.len() > 1 {
            vec![pb::subscribe_request::Msg::Acks(pb::AckBatch { acks })]
        } else {
            acks.drain(..)
                .map(pb::subscribe_request::Msg::Ack)
                .collect()
        };
        for msg in msgs {
            let request = pb::SubscribeRequest { msg: Some(msg) };
            if self.tx.send(request).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Verifies, downloads and stores a delivery; returns the acknowledgement to send. A document
/// that fails verification is refused (not stored), so the hub can tell the sender.
async fn receive(
    node: &Node,
    client: &mut Client,
    d: pb::Delivery,
) -> Result<pb::Ack, tonic::Status> {
    match verify_delivery(node, client, d).await? {
        Verified::Answer(ack) => Ok(*ack),
        Verified::Store(d) => {
            let about = (d.arrived.doc.header.id, d.arrived.doc.header.sender.clone());
            let stored = store::receive(&node.store, d.arrived, d.inline, d.receipt, d.at_ms).await;
            stored_ack(node, about, stored)
        }
    }
}

/// Verifies and stores deliveries pushed together (seq, delivery): each verified in a task of
/// its own (so their receipts are signed together), then all stored in one transaction; returns
/// the acknowledgements.
async fn receive_together(
    node: &Arc<Node>,
    client: &Client,
    pushed: Vec<(u64, pb::Delivery)>,
) -> Result<Vec<pb::Ack>, tonic::Status> {
    let mut verifying = JoinSet::new();
    for (seq, d) in pushed {
        let (node, mut client) = (Arc::clone(node), client.clone());
        verifying.spawn(async move { (seq, verify_delivery(&node, &mut client, d).await) });
    }
    let mut acks = Vec::new();
    // Each delivery to store, and beside it its seq and (document, sender) for the log.
    let (mut about, mut deliveries) = (Vec::new(), Vec::new());
    for (seq, verified) in verifying.join_all().await {
        match verified? {
            Verified::Answer(ack) => acks.push(pb::Ack { seq, ..*ack }),
            Verified::Store(d) => {
                let header = &d.arrived.doc.header;
                about.push((seq, (header.id, header.sender.clone())));
                deliveries.push(*d);
            }
        }
    }
    if deliveries.is_empty() {
        return Ok(acks);
    }
    let stored = store::receive_all(&node.store, deliveries)
        .await
        .map_err(|e| tonic::Status::from(ServiceError::from(e)))?;
    // Every stored one is logged and its event announced; a failed one (its inbox record
    // cannot be read) fails the stream, as it would alone, and the others come again and are
    // acknowledged with the receipts stored now.
    let mut failed = None;
    for ((seq, about), stored) in about.into_iter().zip(stored) {
        match stored_ack(node, about, stored) {
            Ok(ack) => acks.push(pb::Ack { seq, ..ack }),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    failed.map_or(Ok(acks), Err)
}

/// The acknowledgement of a delivery stored (or found stored) with receipt `stored`; `about`:
/// its document and sender, for the log.
fn stored_ack(
    node: &Node,
    (id, sender): (exchange_core::ids::DocumentId, exchange_core::ids::DeptId),
    stored: Result<(pb::SignedEvidence, Option<u64>), exchange_core::store::StoreError>,
) -> Result<pb::Ack, tonic::Status> {
    let (receipt, seq) = stored.map_err(|e| tonic::Status::from(ServiceError::from(e)))?;
    if seq.is_some() {
        info!(doc_id = %id, %sender, "received");
        node.event_committed(seq);
    }
    Ok(pb::Ack {
        delivery_receipt: Some(receipt),
        ..Default::default()
    })
}

/// What checking a delivery comes to: an acknowledgement to send as it is (a refusal, or a
/// document already in the inbox), or a delivery to store.
enum Verified {
    Answer(Box<pb::Ack>),
    Store(Box<store::Delivered>),
}

/// Verifies a delivery, fetches any content that did not come inline and signs this node's
/// receipt; stores nothing.
async fn verify_delivery(
    node: &Node,
    client: &mut Client,
    d: pb::Delivery,
) -> Result<Verified, tonic::Status> {
    let refuse = |reason: String| {
        warn!(%reason, "refusing a delivery");
        Ok(Verified::Answer(Box::new(pb::Ack {
            refused: reason,
            ..Default::default()
        })))
    };
    let Some(wire) = d.document else {
        return refuse("delivery without a document".into());
    };
    // A document of a linked exchange: its signatures are checked against that exchange's CA,
    // and it names this department as the hub says (e.g. office@province).
    let foreign = match foreign(node, &d.origin_exchange, &d.addressed_as) {
        Ok(f) => f,
        Err(reason) => return refuse(reason),
    };
    let origin = foreign.as_ref().map(|f| &f.origin);
    let me = foreign
        .as_ref()
        .map_or_else(|| node.me(), |f| f.addressed_as.clone());
    let doc = match SignedDoc::verify_from(wire, &node.trust, origin, now_secs()) {
        Ok(doc) => doc,
        Err(e) => return refuse(format!("sender signature: {e}")),
    };
    let Some(acc) = d.acceptance else {
        return refuse("delivery without the hub's acceptance".into());
    };
    match SignedEvidence::verify_in(acc.clone(), &node.trust, origin, now_secs()) {
        Ok(ev) if ev.evidence.kind == EvidenceKind::Accepted && ev.is_about(&doc) => {}
        Ok(_) => return refuse("hub acceptance is not about this document".into()),
        Err(e) => return refuse(format!("hub acceptance: {e}")),
    }
    // A recipient added after sending (补发) is not in the signed header: the sender's signed
    // RECIPIENT_ADDED for this node comes with the delivery instead.
    let addition = match doc.header.role_of(&me) {
        Some(_) => None,
        None => match crate::office::check_addition(node, &doc, d.addition, origin, &me) {
            Ok(a) => Some(a),
            Err(reason) => return refuse(reason),
        },
    };
    let id = doc.header.id;
    if let Some(rec) = store::received(&node.store, id)
        .await
        .map_err(|e| tonic::Status::from(ServiceError::from(e)))?
    {
        if rec.doc.wire.header != doc.wire.header {
            return refuse(format!(
                "conflict: another document with id {id} is already in the inbox"
            ));
        }
        // Redelivery (our earlier ack was lost, or the hub refused it): acknowledge again with
        // the same receipt while it still verifies, else with a new one.
        let receipt = renewed_receipt(node, &doc, &me, rec.delivery_receipt).await?;
        return Ok(Verified::Answer(Box::new(pb::Ack {
            delivery_receipt: Some(receipt),
            ..Default::default()
        })));
    }
    // A small document's content comes inline with the delivery and is committed with it; any
    // other part is fetched into the blob store first.
    let mut inline = Vec::new();
    for p in &doc.header.parts {
        let sent = d
            .content
            .iter()
            .find(|c| c.sha256.as_slice() == p.sha256.0.as_slice());
        if let Some(c) = sent {
            // The header's algorithm, which its verification found to be this exchange's.
            let alg = doc.header.digest;
            let matches = Digest::with(alg, &c.data).is_ok_and(|d| d == p.sha256);
            if c.data.len() as u64 != p.size || !matches {
                return refuse(format!(
                    "content {}: does not match its signed size and {}",
                    p.name,
                    digest_label(alg)
                ));
            }
            if !inline.iter().any(|(d, _)| *d == p.sha256) {
                inline.push((p.sha256, c.data.clone()));
            }
            continue;
        }
        match download(node, client, id, p.sha256, p.size).await {
            Ok(()) => {}
            Err(e) if e.code == ErrorCode::InvalidArgument => {
                return refuse(format!("content {}: {}", p.name, e.message));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let at = now_ms();
    let receipt = SignedEvidence::seal_batched(
        Evidence::about(&doc, EvidenceKind::Delivered, Some(me), at),
        &node.batch_signer,
    )
    .await
    .map_err(|e| tonic::Status::from(ServiceError::from(e)))?
    .wire;
    Ok(Verified::Store(Box::new(store::Delivered {
        arrived: store::Arrived {
            doc,
            acceptance: acc,
            addition,
            foreign,
        },
        inline,
        receipt,
        at_ms: at,
    })))
}

/// Downloads one blob (resuming a partial one) and verifies it against the signed digest.
async fn download(
    node: &Node,
    client: &mut Client,
    id: exchange_core::ids::DocumentId,
    sha256: Digest,
    size: u64,
) -> Result<(), ServiceError> {
    let (have, complete) = node.blobs.progress(&sha256).await;
    if complete
        || matches!(
            crate::content::get(&node.store, id, sha256).await,
            Ok(Some(_))
        )
    {
        return Ok(());
    }
    let mut offset = have.min(size);
    let mut w = loop {
        match node.blobs.resume(sha256, size, offset).await {
            // Another delivery being stored has the same content: let it finish, then use it
            // (or take over where it stopped, if it failed).
            Err(exchange_core::blob::BlobError::Busy(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                let (have, complete) = node.blobs.progress(&sha256).await;
                if complete {
                    return Ok(());
                }
                offset = have.min(size);
            }
            other => break other.map_err(blob_error)?,
        }
    };
    let protocol = |e| match e {
        exchange_core::blob::BlobError::Protocol(m) => ServiceError::invalid(m),
        e => blob_error(e),
    };
    let finished = |e| match e {
        e @ exchange_core::blob::BlobError::Mismatch { .. } => ServiceError::invalid(e.to_string()),
        e => blob_error(e),
    };
    let req = pb::GetBlobRequest {
        doc_id: id.to_string(),
        sha256: sha256.0.to_vec(),
        offset,
    };
    let unavailable = |s: tonic::Status| {
        // The hub's stored copy failed its integrity check: refused, so that the hub tells the
        // sender (NOT_DELIVERED) instead of this node asking for it for ever.
        if s.code() == tonic::Code::DataLoss {
            return ServiceError::invalid(format!(
                "the hub's stored copy is damaged ({})",
                s.message()
            ));
        }
        ServiceError::new(
            ErrorCode::Unavailable,
            format!("fetching content: {}", s.message()),
        )
    };
    let mut stream = client
        .get_blob(req)
        .await
        .map_err(unavailable)?
        .into_inner();
    while let Some(chunk) = stream.message().await.map_err(unavailable)? {
        w.write(&chunk.data).await.map_err(protocol)?;
    }
    w.finish().await.map_err(finished)?;
    Ok(())
}

/// Applies evidence about our documents that was pushed together (seq, statement), in one
/// transaction; returns the acknowledgements. Unknown or invalid evidence is logged and
/// acknowledged (it can never become valid by retrying); a failing store fails the stream.
async fn apply(
    node: &Node,
    pushed: Vec<(u64, pb::SignedEvidence)>,
) -> Result<Vec<pb::Ack>, tonic::Status> {
    let ack = |seq| pb::Ack {
        seq,
        ..Default::default()
    };
    let mut acks = Vec::with_capacity(pushed.len());
    // Each statement to apply, and beside it its seq and (document, kind) for the log.
    let (mut about, mut verified) = (Vec::new(), Vec::new());
    for (seq, wire) in pushed {
        // About our own document: its names are relative to our exchange, and a recipient's or
        // relaying hub's signature of a linked exchange is checked against that exchange's CA.
        match SignedEvidence::verify_in(wire, &node.trust, None, now_secs()) {
            Ok(ev) if ev.evidence.sender == node.cfg.node.id => {
                about.push((seq, (ev.evidence.doc_id, ev.evidence.kind)));
                verified.push((ev, None));
            }
            Ok(ev) => {
                warn!(doc_id = %ev.evidence.doc_id, "evidence about another department's document: ignored");
                acks.push(ack(seq));
            }
            Err(e) => {
                warn!(error = %e, "evidence that does not verify: ignored");
                acks.push(ack(seq));
            }
        }
    }
    if verified.is_empty() {
        return Ok(acks);
    }
    let (outcomes, event) = store::apply_evidence_all(&node.store, verified)
        .await
        .map_err(ServiceError::from)?;
    node.event_committed(event);
    for ((seq, (id, kind)), outcome) in about.into_iter().zip(outcomes) {
        match outcome {
            Ok(()) => info!(doc_id = %id, ?kind, "evidence recorded"),
            Err(e) => warn!(doc_id = %id, error = %e, "evidence not applicable: ignored"),
        }
        acks.push(ack(seq));
    }
    Ok(acks)
}

/// What the hub says of a delivery's exchange: `None` for our own exchange's document, else
/// its origin exchange and how it names this department (which must be this department).
fn foreign(
    node: &Node,
    origin: &str,
    addressed_as: &str,
) -> Result<Option<store::Foreign>, String> {
    if origin.is_empty() {
        return Ok(None);
    }
    let origin = origin
        .parse()
        .map_err(|e| format!("delivery.origin_exchange: {e}"))?;
    let addressed_as: exchange_core::ids::Address = addressed_as
        .parse()
        .map_err(|e| format!("delivery.addressed_as: {e}"))?;
    if addressed_as.dept != node.cfg.node.id || addressed_as.exchange.is_none() {
        return Err(format!(
            "delivery.addressed_as: {addressed_as} is not this department of this exchange"
        ));
    }
    Ok(Some(store::Foreign {
        origin,
        addressed_as,
    }))
}

/// The receipt to send again for a document already in the inbox: the stored one while it
/// verifies; otherwise (the signing certificate it was made with has expired or was replaced,
/// so the hub refuses it) a new one made now with the current key, stored in its place. A
/// node that still cannot sign sends the stored one, and the hub refuses it again.
async fn renewed_receipt(
    node: &Node,
    doc: &SignedDoc,
    me: &exchange_core::ids::Address,
    stored: Option<pb::SignedEvidence>,
) -> Result<pb::SignedEvidence, tonic::Status> {
    let stored = stored.unwrap_or_default();
    // Our own signature: checked against our own CA whatever the document's exchange.
    if SignedEvidence::verify(stored.clone(), &node.verifier, now_secs()).is_ok()
        || node.can_sign().is_err()
    {
        return Ok(stored);
    }
    let receipt = SignedEvidence::seal(
        Evidence::about(doc, EvidenceKind::Delivered, Some(me.clone()), now_ms()),
        &node.signer,
    )
    .map_err(|e| tonic::Status::from(ServiceError::from(e)))?
    .wire;
    store::replace_receipt(&node.store, doc.header.id, receipt.clone())
        .await
        .map_err(|e| tonic::Status::from(ServiceError::from(e)))?;
    info!(doc_id = %doc.header.id, "delivery receipt made anew (the stored one no longer verifies)");
    Ok(receipt)
}

/// The hub refused our acknowledgement of an item (a receipt it cannot verify): the item stays
/// queued at the hub; the inbox entry records why, and department systems get a REFUSED event.
async fn ack_refused(node: &Node, r: pb::AckRefused) -> Result<(), tonic::Status> {
    warn!(doc_id = %r.doc_id, reason = %r.reason, "the hub refused our acknowledgement; it will push the item again on the next connection");
    let Ok(id) = r.doc_id.parse() else {
        return Ok(()); // not about a document we can name: the log line is all there is
    };
    let text = r.reason;
    let seq = store::receipt_refused(
        &node.store,
        id,
        node.cfg.node.id.to_string(),
        text,
        now_ms(),
    )
    .await
    .map_err(|e| tonic::Status::from(ServiceError::from(e)))?;
    node.event_committed(seq);
    Ok(())
}
