//! The `Relay` gRPC service: what the hubs of linked exchanges call on `peer_listen`. The
//! caller is the peer whose pinned CA verified its certificate ([`PeerTls::caller`]); each
//! handler answers only after the store has committed.
//!
//! A relayed document is taken only from the side it comes from: its origin exchange must be
//! reached through the calling peer, it must not have passed this hub before, and it must not
//! have passed more than [`HOP_LIMIT`] hubs. Its signatures are checked against its origin
//! exchange's CA, never the peer's word.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use exchange_core::{
    document::{DocError, Evidence, EvidenceKind, Relay, SignedDoc, SignedEvidence, limits},
    error::ServiceError,
    ids::{Address, ExchangeName},
    signing::Trust,
    time::{now_ms, now_secs},
    tls::peers::PeerTls,
};
use exchange_proto::v1::{self as pb, relay_server};
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use super::{Dest, HOP_LIMIT, Routes};
use crate::{
    Hub,
    audit::{self, Event},
    service::{HubService, check_classification, check_clock, check_content, digest_field},
    store,
};

/// The tonic service.
#[derive(Debug, Clone)]
pub(crate) struct RelayService {
    hub: Arc<Hub>,
    tls: PeerTls,
}

impl RelayService {
    pub(crate) fn new(hub: Arc<Hub>, tls: PeerTls) -> Self {
        RelayService { hub, tls }
    }

    /// The calling peer; a caller that is not one (its certificate revoked, say) is logged and
    /// audited before it is refused.
    async fn caller<T>(&self, req: &Request<T>) -> Result<ExchangeName, Status> {
        match self.tls.caller(req) {
            Ok(peer) => Ok(peer),
            Err(s) => {
                warn!(error = %s.message(), "peer call refused");
                let event = Event::new(pb::AuditKind::RelayRefused)
                    .dept("exchange:?")
                    .detail(s.message().to_owned());
                audit::record(&self.hub.store, event).await;
                Err(s)
            }
        }
    }

    /// Audits a refused relay or evidence from `peer` and returns the error.
    async fn refused(&self, peer: &ExchangeName, doc: &str, e: ServiceError) -> ServiceError {
        warn!(%peer, doc_id = doc, error = %e, "refused from a peer hub");
        let event = Event::new(pb::AuditKind::RelayRefused)
            .doc(doc)
            .dept(format!("exchange:{peer}"))
            .detail(e.message.clone());
        audit::record(&self.hub.store, event).await;
        e
    }

    async fn relay_inner(
        &self,
        peer: ExchangeName,
        req: pb::RelayRequest,
    ) -> Result<pb::RelayResponse, ServiceError> {
        let hub = &self.hub;
        let links = &hub.links;
        let here = links
            .name
            .clone()
            .ok_or_else(|| ServiceError::precondition("this hub has no [hub] exchange name"))?;
        let exchange = |field: &str, s: &str| {
            s.parse::<ExchangeName>()
                .map_err(|e| ServiceError::invalid(format!("{field}: {e}")))
        };
        let origin = exchange("origin_exchange", &req.origin_exchange)?;
        let via = req
            .via
            .iter()
            .map(|v| exchange("via", v))
            .collect::<Result<Vec<_>, _>>()?;
        // Loops and detours: the document must come from the side of its origin.
        if origin == here || via.contains(&here) {
            return Err(ServiceError::denied(format!(
                "via: the document already passed exchange {here} (a routing loop)"
            )));
        }
        if via.len() >= HOP_LIMIT {
            return Err(ServiceError::denied(format!(
                "via: {} hubs already, at most {HOP_LIMIT} may relay one document",
                via.len()
            )));
        }
        if via.first() != Some(&origin) || via.last() != Some(&peer) {
            return Err(ServiceError::invalid(format!(
                "via: must run from the origin exchange {origin} to the calling peer {peer}"
            )));
        }
        match links.peer_towards(&origin) {
            Some(p) if p.name == peer => {}
            _ => {
                return Err(ServiceError::denied(format!(
                    "origin_exchange: {origin} is not on the side of peer {peer} (its routes), \
                     so {peer} may not relay its documents here"
                )));
            }
        }
        // Sizes and duplicates first: no signature is checked for a request refused anyway.
        let recipients = parse_recipients(links, &origin, &req.recipients)?;
        if req.additions.len() > limits::RECIPIENTS {
            return Err(ServiceError::invalid(format!(
                "additions: {}, at most {} allowed",
                req.additions.len(),
                limits::RECIPIENTS
            )));
        }
        let wire = req
            .document
            .ok_or_else(|| ServiceError::invalid("document: required"))?;
        let doc = SignedDoc::verify_from(wire, &links.trust, Some(&origin), now_secs())
            .map_err(doc_refused)?;
        let h = &doc.header;
        check_clock("header.created_at_ms", h.created_at_ms)?;
        let acceptance = req
            .acceptance
            .ok_or_else(|| ServiceError::invalid("acceptance: required"))?;
        let acc = SignedEvidence::verify_in(acceptance, &links.trust, Some(&origin), now_secs())
            .map_err(|e| ServiceError::denied(format!("acceptance: {e}")))?;
        if acc.evidence.kind != EvidenceKind::Accepted || !acc.is_about(&doc) {
            return Err(ServiceError::invalid(
                "acceptance: not the origin hub's ACCEPTED of this document",
            ));
        }
        // The recipients this hub takes custody for: named in the header, each a department of
        // ours (in the directory) or reached through another peer.
        let mut added = verified_additions(req.additions, &links.trust, &origin, &doc);
        let mut plan = store::Plan::default();
        let mut to = Vec::with_capacity(recipients.len());
        for a in recipients {
            // A recipient the header does not name needs the sender's signed RECIPIENT_ADDED
            // (补发), which goes with its delivery.
            if h.role_of(&a).is_none() {
                let wire = added.remove(&a).ok_or_else(|| {
                    ServiceError::invalid(format!(
                        "recipients: {a} is not named by the document, and no RECIPIENT_ADDED of its sender adds it (additions)"
                    ))
                })?;
                plan.additions
                    .push((links.relative(Some(&origin), &a), wire));
            }
            match links.dest(Some(&origin), &a) {
                Some(Dest::Local(d)) if hub.directory.contains(&d) => {
                    plan.local.push((Address::local(d.clone()), d));
                }
                Some(Dest::Local(d)) => {
                    return Err(ServiceError::invalid(format!(
                        "recipients: exchange {here} has no department {d}"
                    )));
                }
                Some(Dest::Peer(p)) if p != peer => {
                    plan.remote
                        .push((links.relative(Some(&origin), &a), p.clone()));
                    match plan.relays.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, list)) => list.push(a.clone()),
                        None => plan.relays.push((p, vec![a.clone()])),
                    }
                }
                _ => {
                    return Err(ServiceError::invalid(format!(
                        "recipients: no link of exchange {here} reaches {a} (other than back to {peer})"
                    )));
                }
            }
            to.push(a);
        }
        check_classification(hub, h)?;
        let inline = check_content(hub, h, req.content).await?;
        let at = now_ms();
        let mut ev = Evidence::about(&doc, EvidenceKind::Relayed, None, at);
        ev.relay = Some(Relay {
            hub: here,
            from: peer.clone(),
            to,
        });
        let relayed = SignedEvidence::seal_batched(ev, &hub.batch_signer)
            .await?
            .wire;
        let relay = store::Relayed {
            origin,
            from_peer: peer.clone(),
            via,
            relayed,
        };
        let local: Vec<_> = plan.local.iter().map(|(_, d)| d.clone()).collect();
        let onward: Vec<_> = plan.relays.iter().map(|(p, _)| p.clone()).collect();
        let id = h.id;
        let job = store::ToAccept {
            doc: Arc::new(doc),
            acceptance: acc.wire,
            relay: Some(relay),
            inline,
            at_ms: at,
            plan,
        };
        let answer = match store::accept(&hub.store, job).await? {
            store::Accepted::New(relayed) => {
                info!(doc_id = %id, %peer, local = local.len(), onward = onward.len(), "relayed in");
                local.iter().for_each(|d| hub.sessions.wake(d));
                onward.iter().for_each(|p| hub.peer_wake.wake(p));
                relayed
            }
            store::Accepted::Again(relayed) => relayed,
        };
        Ok(pb::RelayResponse {
            relayed: Some(answer),
        })
    }

    async fn relay_evidence_inner(
        &self,
        peer: ExchangeName,
        req: pb::RelayEvidenceRequest,
    ) -> Result<(), ServiceError> {
        let hub = &self.hub;
        let wire = req
            .evidence
            .ok_or_else(|| ServiceError::invalid("evidence: required"))?;
        let claimed = SignedEvidence::decode(wire.clone()).map_err(doc_refused)?;
        let id = claimed.evidence.doc_id;
        let rec = store::document(&hub.store, id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no document {id} here")))?;
        let origin = rec.origin().cloned();
        let ev = SignedEvidence::verify_in(wire, &hub.links.trust, origin.as_ref(), now_secs())
            .map_err(doc_refused)?;
        if !ev.is_about(&rec.doc) {
            return Err(ServiceError::invalid(
                "evidence.header_digest: does not match the document",
            ));
        }
        check_clock("evidence.at_ms", ev.evidence.at_ms)?;
        // The sender's statements come only from the side the document came from.
        if ev.evidence.kind.is_senders() {
            if rec.relay.as_ref().map(|r| &r.from_peer) != Some(&peer) {
                return Err(ServiceError::denied(format!(
                    "evidence: {:?} about document {id} does not come from the side of its sender",
                    ev.evidence.kind
                )));
            }
            let kind = ev.evidence.kind;
            match kind {
                EvidenceKind::Recall => crate::service::recall_statement(hub, &rec, ev).await?,
                EvidenceKind::Reminded => crate::service::remind_statement(hub, &rec, ev).await?,
                _ => {
                    return Err(ServiceError::precondition(format!(
                        "evidence.kind: {kind:?} across exchanges is not relayed yet (docs/federation.md)"
                    )));
                }
            }
            let event = Event::new(pb::AuditKind::EvidenceIn)
                .doc(id)
                .dept(format!("exchange:{peer}"))
                .detail(format!("{kind:?}"));
            audit::record(&hub.store, event).await;
            return Ok(());
        }
        // Evidence comes back only from the side its recipients were handed to.
        let towards = |a: &Address| hub.links.dest(origin.as_ref(), a);
        let from_their_side = match (&ev.evidence.relay, &ev.evidence.recipient) {
            (Some(r), _) => {
                r.to.iter()
                    .all(|a| towards(a) == Some(Dest::Peer(peer.clone())))
            }
            (None, Some(a)) => towards(a) == Some(Dest::Peer(peer.clone())),
            (None, None) => false,
        };
        if !from_their_side {
            return Err(ServiceError::denied(format!(
                "evidence: {:?} about document {id} does not come from the side of peer {peer}",
                ev.evidence.kind
            )));
        }
        let about = hub.about(&rec);
        let kind = ev.evidence.kind;
        let fresh = if kind == EvidenceKind::Relayed {
            store::relayed_further(&hub.store, about.clone(), ev).await?
        } else {
            store::record_evidence(&hub.store, about.clone(), ev, None).await?
        };
        if fresh {
            info!(doc_id = %id, %peer, ?kind, "evidence relayed in");
            let event = Event::new(pb::AuditKind::EvidenceIn)
                .doc(id)
                .dept(format!("exchange:{peer}"))
                .detail(format!("{kind:?}"));
            audit::record(&hub.store, event).await;
            hub.wake_back(&about);
        }
        Ok(())
    }
}

/// A document or evidence that does not verify: a field names itself, the rest is a refusal.
fn doc_refused(e: DocError) -> ServiceError {
    match e {
        DocError::Field(f) => ServiceError::invalid(f.to_string()),
        e => ServiceError::denied(format!("refused: {e}")),
    }
}

/// The recipients a relay names, parsed and checked before any signature is: 1 to
/// [`limits::RECIPIENTS`] of them (the most one RELAYED may list, `evidence.relay_to`), each
/// once. Otherwise one message could name a department millions of times: each copy a delivery
/// of its own, pushed to it again and again, under a RELAYED no hub would decode. Two names of
/// one recipient (`tax` and `tax@county` in a county document) are the same delivery here, so
/// they count as the same.
fn parse_recipients(
    routes: &Routes,
    origin: &ExchangeName,
    names: &[String],
) -> Result<Vec<Address>, ServiceError> {
    if names.is_empty() {
        return Err(ServiceError::invalid(
            "recipients: at least one is required",
        ));
    }
    if names.len() > limits::RECIPIENTS {
        return Err(ServiceError::invalid(format!(
            "recipients: {}, at most {} allowed",
            names.len(),
            limits::RECIPIENTS
        )));
    }
    let mut seen = HashSet::with_capacity(names.len());
    names
        .iter()
        .map(|r| {
            let a: Address = r
                .parse()
                .map_err(|e| ServiceError::invalid(format!("recipients: {e}")))?;
            if !seen.insert(routes.relative(Some(origin), &a)) {
                return Err(ServiceError::invalid(format!(
                    "recipients: {a} is named twice"
                )));
            }
            Ok(a)
        })
        .collect()
}

/// The sender's RECIPIENT_ADDED (补发) among `additions` that verify against `origin`'s CA and
/// are about `doc`, by the recipient each adds (as the header would name it): each signature is
/// checked once, however many recipients there are. Others are left out (a recipient only they
/// would add is then refused); of two for one recipient, the first counts.
fn verified_additions(
    additions: Vec<pb::SignedEvidence>,
    trust: &Trust,
    origin: &ExchangeName,
    doc: &SignedDoc,
) -> HashMap<Address, pb::SignedEvidence> {
    let now = now_secs();
    let mut added = HashMap::new();
    for w in additions {
        let Ok(ev) = SignedEvidence::verify_in(w, trust, Some(origin), now) else {
            continue;
        };
        if ev.evidence.kind != EvidenceKind::RecipientAdded || !ev.is_about(doc) {
            continue;
        }
        if let Some(a) = ev.evidence.recipient {
            added.entry(a).or_insert(ev.wire);
        }
    }
    added
}

#[tonic::async_trait]
impl relay_server::Relay for RelayService {
    async fn blob_status(
        &self,
        req: Request<pb::BlobStatusRequest>,
    ) -> Result<Response<pb::BlobStatusResponse>, Status> {
        self.caller(&req).await?;
        let digest = digest_field("sha256", &req.get_ref().sha256)?;
        let (have, complete) = self.hub.blobs.progress(&digest).await;
        Ok(Response::new(pb::BlobStatusResponse { have, complete }))
    }

    async fn put_blob(
        &self,
        req: Request<Streaming<pb::BlobChunk>>,
    ) -> Result<Response<pb::PutBlobResponse>, Status> {
        self.caller(&req).await?;
        HubService::new(Arc::clone(&self.hub))
            .put_blob_inner(req.into_inner())
            .await?;
        Ok(Response::new(pb::PutBlobResponse {}))
    }

    async fn relay(
        &self,
        req: Request<pb::RelayRequest>,
    ) -> Result<Response<pb::RelayResponse>, Status> {
        let peer = self.caller(&req).await?;
        let req = req.into_inner();
        let doc = relayed_doc_id(&req);
        match self.relay_inner(peer.clone(), req).await {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => Err(self.refused(&peer, &doc, e).await.into()),
        }
    }

    async fn directory(
        &self,
        req: Request<pb::DirectoryRequest>,
    ) -> Result<Response<pb::DirectoryResponse>, Status> {
        let peer = self.caller(&req).await?;
        let here = self
            .hub
            .links
            .name
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let mut departments = self.hub.directory.to_proto();
        for d in &mut departments {
            d.exchange.clone_from(&here);
        }
        departments.extend(self.hub.peer_dirs.except(Some(&peer)));
        Ok(Response::new(pb::DirectoryResponse { departments }))
    }

    async fn relay_evidence(
        &self,
        req: Request<pb::RelayEvidenceRequest>,
    ) -> Result<Response<pb::RelayEvidenceResponse>, Status> {
        let peer = self.caller(&req).await?;
        let req = req.into_inner();
        match self.relay_evidence_inner(peer.clone(), req).await {
            Ok(()) => Ok(Response::new(pb::RelayEvidenceResponse {})),
            Err(e) => Err(self.refused(&peer, "", e).await.into()),
        }
    }
}

/// The document id a relay request names, for the audit of a refusal ("" if it names none).
fn relayed_doc_id(req: &pb::RelayRequest) -> String {
    req.document
        .as_ref()
        .and_then(|d| SignedDoc::decode(d.clone()).ok())
        .map(|d| d.header.id.to_string())
        .unwrap_or_default()
}
