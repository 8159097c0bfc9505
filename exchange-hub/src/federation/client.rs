//! Handing documents and evidence to each peer hub: one worker per `[[peers]]` entry drains
//! that peer's durable queue (`relay_out`), most urgent first, one item at a time. An item
//! leaves the queue only in the transaction that records the peer's answer (its signed
//! RELAYED for a document), so a crash at any point hands it over again; the peer's side is
//! idempotent by document id.
//!
//! A peer that is down or unreachable only delays: the worker retries with backoff. A peer that
//! refuses an item for good (a routing or signature error, which retrying cannot change) leaves
//! it parked in the queue, audited, until an operator acts; the other items go on.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use exchange_core::{
    backoff::Backoff,
    blob::chunk_for,
    document::{EvidenceKind, SignedEvidence},
    ids::{Address, ExchangeName},
    store::queue::QueueKey,
    time::now_secs,
    tls,
};
use exchange_proto::v1::{self as pb, relay_client::RelayClient};
use tokio::{io::AsyncReadExt, sync::Notify};
use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};
use tracing::{info, warn};

use super::Peer;
use crate::{Hub, MAX_MESSAGE_BYTES, audit::Event, store};

/// How often an idle worker looks at its queue anyway (another hub on the same database may
/// have queued something, or a wake-up was missed).
const RECHECK: Duration = Duration::from_secs(5);

/// How often a worker asks its peer for the departments it reaches (a peer's own listing of
/// exchanges beyond it may have been empty the first time, if it had just started).
pub(crate) const DIRECTORY_EVERY: Duration = Duration::from_secs(15);

/// One wake-up per peer.
#[derive(Debug, Default)]
pub(crate) struct Wakers(HashMap<ExchangeName, Arc<Notify>>);

impl Wakers {
    /// One for each peer of `links`.
    pub(crate) fn new(links: &super::Links) -> Self {
        Wakers(
            links
                .peers
                .iter()
                .map(|p| (p.name.clone(), Arc::new(Notify::new())))
                .collect(),
        )
    }

    /// Wakes the worker of `peer`.
    pub(crate) fn wake(&self, peer: &ExchangeName) {
        if let Some(n) = self.0.get(peer) {
            n.notify_one();
        }
    }

    fn of(&self, peer: &ExchangeName) -> Arc<Notify> {
        self.0.get(peer).cloned().unwrap_or_default()
    }
}

/// Starts one worker per peer; they end when `stop` is cancelled.
pub(crate) fn start(hub: &Arc<Hub>, stop: &CancellationToken) -> anyhow::Result<()> {
    for peer in &hub.links.peers {
        let channel = tls::peer_endpoint(
            peer.address,
            &hub.cfg.tls,
            peer.ca_der.clone(),
            peer.crl.as_deref(),
            &peer.server_name,
        )?
        .connect_lazy();
        let client = RelayClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        tokio::spawn(run(Arc::clone(hub), peer.clone(), client, stop.clone()));
    }
    Ok(())
}

/// Why handing an item over did not finish.
enum Failed {
    /// Try again later (the peer or our store is unavailable).
    Later(String),
    /// The peer refused it for good: parked.
    Refused(String),
    /// The peer refused the document itself for good (no such recipient there, a loop, over the
    /// hop limit, the wrong side, a conflicting id): it goes back to the sender as not
    /// delivered. Not for a refusal of us (our certificate, say), which an operator can fix.
    Bounced(String),
}

async fn run(hub: Arc<Hub>, peer: Peer, mut client: RelayClient<Channel>, stop: CancellationToken) {
    let wake = hub.peer_wake.of(&peer.name);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut parked: HashSet<QueueKey> = HashSet::new();
    let mut listed_at: Option<std::time::Instant> = None;
    info!(peer = %peer.name, address = %peer.address, "relaying to peer hub");
    loop {
        if stop.is_cancelled() {
            return;
        }
        if listed_at.is_none_or(|t| t.elapsed() >= DIRECTORY_EVERY) {
            match client.directory(pb::DirectoryRequest {}).await {
                Ok(r) => {
                    let departments = r.into_inner().departments;
                    info!(peer = %peer.name, departments = departments.len(), "peer directory");
                    hub.peer_dirs.set(peer.name.clone(), departments);
                    listed_at = Some(std::time::Instant::now());
                }
                Err(s) => {
                    tracing::debug!(peer = %peer.name, error = %s, "peer directory not fetched");
                }
            }
        }
        let next = store::next_for_peer(&hub.store, peer.name.clone(), parked.clone()).await;
        let (key, item) = match next {
            Ok(Some(found)) => found,
            Ok(None) => {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(RECHECK) => {}
                    () = stop.cancelled() => return,
                }
                continue;
            }
            Err(e) => {
                warn!(peer = %peer.name, error = %e, "reading the relay queue");
                pause(&stop, backoff.next_delay()).await;
                continue;
            }
        };
        let result = match item {
            Ok(item) => hand_over(&hub, &peer, &mut client, key, item).await,
            Err(e) => Err(Failed::Refused(format!("queue item does not decode: {e}"))),
        };
        match result {
            Ok(()) => backoff.reset(),
            Err(Failed::Later(why)) => {
                let delay = backoff.next_delay();
                warn!(peer = %peer.name, error = %why, retry_in = ?delay, "peer hub not reached; will retry");
                pause(&stop, delay).await;
            }
            Err(Failed::Refused(why) | Failed::Bounced(why)) => {
                warn!(peer = %peer.name, error = %why, "peer hub refused an item: parked in the queue");
                parked.insert(key);
                let event = Event::new(pb::AuditKind::RelayRefused)
                    .dept(format!("exchange:{}", peer.name))
                    .detail(format!("refused by the peer, parked: {why}"));
                crate::audit::record(&hub.store, event).await;
            }
        }
    }
}

async fn pause(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = stop.cancelled() => {}
    }
}

/// Whether a peer's error may pass (the peer or the network), or is its final word.
fn classify(s: &tonic::Status) -> Failed {
    let what = format!("{:?}: {}", s.code(), s.message());
    match s.code() {
        Code::InvalidArgument | Code::PermissionDenied | Code::AlreadyExists => {
            Failed::Bounced(what)
        }
        Code::FailedPrecondition
        | Code::NotFound
        | Code::Unauthenticated
        | Code::OutOfRange
        | Code::Unimplemented => Failed::Refused(what),
        _ => Failed::Later(what),
    }
}

fn later(e: impl std::fmt::Display) -> Failed {
    Failed::Later(e.to_string())
}

async fn hand_over(
    hub: &Hub,
    peer: &Peer,
    client: &mut RelayClient<Channel>,
    key: QueueKey,
    item: store::PeerItem,
) -> Result<(), Failed> {
    match item {
        store::PeerItem::Relay { doc, recipients } => {
            relay_document(hub, peer, client, key, doc, recipients).await
        }
        store::PeerItem::Evidence(ev) => pass_evidence(hub, peer, client, key, ev).await,
    }
}

async fn relay_document(
    hub: &Hub,
    peer: &Peer,
    client: &mut RelayClient<Channel>,
    key: QueueKey,
    id: exchange_core::ids::DocumentId,
    recipients: Vec<Address>,
) -> Result<(), Failed> {
    let Some(rec) = store::document(&hub.store, id).await.map_err(later)? else {
        let event = Event::new(pb::AuditKind::RelayRefused)
            .doc(id)
            .dept(format!("exchange:{}", peer.name))
            .detail("the document to relay is not stored: dropped from the queue");
        store::peer_done(&hub.store, peer.name.clone(), key, event)
            .await
            .map_err(later)?;
        return Ok(());
    };
    let here = hub
        .links
        .name
        .clone()
        .ok_or_else(|| Failed::Refused("this hub has no [hub] exchange name".into()))?;
    // The content: inline where the hub holds it so, else uploaded (resuming) before the relay.
    let mut content = Vec::new();
    for p in &rec.doc.header.parts {
        if content
            .iter()
            .any(|c: &pb::InlineContent| c.sha256 == p.sha256.0)
        {
            continue;
        }
        match store::inline_content(&hub.store, rec.doc.header.id, p.sha256)
            .await
            .map_err(later)?
        {
            Some(data) => content.push(pb::InlineContent {
                sha256: p.sha256.0.to_vec(),
                data,
            }),
            None => upload(hub, client, p.sha256, p.size).await?,
        }
    }
    // Recipients added after sending (补发) go with the sender's RECIPIENT_ADDED.
    let mut additions = Vec::new();
    for a in recipients
        .iter()
        .filter(|a| rec.doc.header.role_of(a).is_none())
    {
        let key = hub.links.relative(rec.origin(), a);
        match store::addition(&hub.store, id, key).await.map_err(later)? {
            Some(ev) => additions.push(ev),
            None => {
                return Err(Failed::Refused(format!(
                    "{a} is not named by document {id} and its RECIPIENT_ADDED is not stored"
                )));
            }
        }
    }
    let (origin, mut via) = match &rec.relay {
        Some(r) => (r.origin.clone(), r.via.clone()),
        None => (here.clone(), Vec::new()),
    };
    via.push(here.clone());
    let req = pb::RelayRequest {
        document: Some(rec.doc.wire.clone()),
        origin_exchange: origin.to_string(),
        via: via.iter().map(ToString::to_string).collect(),
        acceptance: Some(rec.acceptance.clone()),
        recipients: recipients.iter().map(ToString::to_string).collect(),
        content,
        additions,
    };
    let answer = match client.relay(req).await {
        Ok(a) => a.into_inner(),
        Err(s) => match classify(&s) {
            // The peer refused the document for good (no such department there, a loop, over
            // the hop limit): bounced back with this hub's signed NOT_DELIVERED, never dropped.
            Failed::Bounced(why) => {
                let why = format!("refused by exchange {}'s hub: {why}", peer.name);
                return give_up(hub, peer, key, &rec, recipients, &why).await;
            }
            later => return Err(later),
        },
    };
    let relayed = answer
        .relayed
        .ok_or_else(|| Failed::Refused("the peer answered without its RELAYED".into()))?;
    let ev = SignedEvidence::verify_in(relayed, &hub.links.trust, rec.origin(), now_secs())
        .map_err(|e| Failed::Refused(format!("the peer's RELAYED: {e}")))?;
    let matches = ev.evidence.kind == EvidenceKind::Relayed
        && ev.is_about(&rec.doc)
        && ev.evidence.relay.as_ref().is_some_and(|r| {
            r.hub == peer.name
                && r.from == here
                && r.to.len() == recipients.len()
                && recipients.iter().all(|a| r.to.contains(a))
        });
    if !matches {
        return Err(Failed::Refused(
            "the peer's RELAYED is not its custody of these recipients of this document".into(),
        ));
    }
    let about = hub.about(&rec);
    store::relayed_by_peer(&hub.store, about.clone(), ev, peer.name.clone(), key)
        .await
        .map_err(later)?;
    info!(doc_id = %id, peer = %peer.name, recipients = recipients.len(), "relayed out");
    hub.wake_back(&about);
    Ok(())
}

/// Gives up on relaying document `rec` to `peer` for `recipients` (queue item `key`): this
/// hub, which holds custody, signs NOT_DELIVERED for each with `why`, which goes back towards
/// the sender, and the item leaves the queue, in one transaction.
async fn give_up(
    hub: &Hub,
    peer: &Peer,
    key: QueueKey,
    rec: &store::DocumentRecord,
    recipients: Vec<Address>,
    why: &str,
) -> Result<(), Failed> {
    let here = hub
        .links
        .name
        .clone()
        .ok_or_else(|| Failed::Refused("this hub has no [hub] exchange name".into()))?;
    let reason =
        exchange_core::convert::one_line_text(why, exchange_core::document::limits::TEXT_CHARS);
    let mut evs = Vec::with_capacity(recipients.len());
    for r in recipients {
        let mut ev = exchange_core::document::Evidence::about(
            &rec.doc,
            EvidenceKind::NotDelivered,
            Some(r),
            exchange_core::time::now_ms(),
        );
        ev.custodian = Some(here.clone());
        ev.reason.clone_from(&reason);
        evs.push(SignedEvidence::seal(ev, &hub.signer).map_err(later)?);
    }
    let about = hub.about(rec);
    let told = store::relay_given_up(&hub.store, about.clone(), evs, peer.name.clone(), key)
        .await
        .map_err(later)?;
    warn!(doc_id = %rec.doc.header.id, peer = %peer.name, recipients = told, %reason, "not delivered: bounced to the sender");
    let event = Event::new(pb::AuditKind::RelayRefused)
        .doc(rec.doc.header.id)
        .dept(format!("exchange:{}", peer.name))
        .detail(format!("not delivered, bounced to the sender: {reason}"));
    crate::audit::record(&hub.store, event).await;
    hub.wake_back(&about);
    Ok(())
}

/// Uploads content blob `digest` to the peer from where the peer's copy ends.
async fn upload(
    hub: &Hub,
    client: &mut RelayClient<Channel>,
    digest: exchange_core::signing::Digest,
    size: u64,
) -> Result<(), Failed> {
    let status = client
        .blob_status(pb::BlobStatusRequest {
            sha256: digest.0.to_vec(),
            size,
        })
        .await
        .map_err(|s| classify(&s))?
        .into_inner();
    if status.complete {
        return Ok(());
    }
    let mut reader = hub
        .blobs
        .open_read(&digest, status.have)
        .await
        .map_err(|e| Failed::Refused(format!("content {digest}: {e}")))?;
    let len = chunk_for(size);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::BlobChunk>(4);
    let reading = tokio::spawn(async move {
        let mut offset = status.have;
        let mut first = true;
        let mut buf = vec![0u8; len];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 && !first {
                return Ok::<(), std::io::Error>(());
            }
            let chunk = pb::BlobChunk {
                sha256: if first { digest.0.to_vec() } else { Vec::new() },
                size: if first { size } else { 0 },
                offset,
                data: buf[..n].to_vec(),
            };
            first = false;
            offset += n as u64;
            if tx.send(chunk).await.is_err() || n == 0 {
                return Ok(());
            }
        }
    });
    let sent = client
        .put_blob(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let read = reading.await;
    sent.map_err(|s| classify(&s))?;
    match read {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failed::Later(format!("reading content {digest}: {e}"))),
        Err(e) => Err(Failed::Later(format!("reading content {digest}: {e}"))),
    }
}

async fn pass_evidence(
    hub: &Hub,
    peer: &Peer,
    client: &mut RelayClient<Channel>,
    key: QueueKey,
    ev: pb::SignedEvidence,
) -> Result<(), Failed> {
    let decoded = SignedEvidence::decode(ev.clone())
        .map_err(|e| Failed::Refused(format!("queued evidence: {e}")))?;
    let id = decoded.evidence.doc_id;
    let origin = match store::document(&hub.store, id).await.map_err(later)? {
        Some(rec) => rec
            .origin()
            .cloned()
            .or_else(|| hub.links.name.clone())
            .map(|o| o.to_string())
            .unwrap_or_default(),
        None => return Err(Failed::Refused(format!("document {id} is not stored"))),
    };
    client
        .relay_evidence(pb::RelayEvidenceRequest {
            evidence: Some(ev),
            origin_exchange: origin,
        })
        .await
        .map_err(|s| classify(&s))?;
    let kind = decoded.evidence.kind;
    let event = Event::new(pb::AuditKind::EvidenceOut)
        .doc(id)
        .dept(format!("exchange:{}", peer.name))
        .detail(format!("{kind:?}"));
    store::peer_done(&hub.store, peer.name.clone(), key, event)
        .await
        .map_err(later)?;
    info!(doc_id = %id, peer = %peer.name, ?kind, "evidence relayed out");
    Ok(())
}
