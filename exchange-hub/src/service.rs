//! The `Hub` gRPC service: what nodes call. Each handler takes the caller's department from its
//! verified client certificate, validates, and answers only after the store has committed.

use std::{pin::Pin, sync::Arc};

use exchange_core::{
    blob::chunk_for,
    document::{Classification, Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    error::{ErrorCode, ServiceError},
    ids::{Address, DeptId, DocumentId},
    signing::{Digest, digest_label},
    time::{now_ms, now_secs},
    tls::peer_dept,
};
use exchange_proto::v1::{self as pb, hub_server};
use tokio::io::AsyncReadExt;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, instrument, warn};

use crate::{
    Hub,
    audit::{self, Event},
    delivery,
    federation::Dest,
    store::{self, StepError, ToAccept},
};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The tonic service.
#[derive(Debug, Clone)]
pub(crate) struct HubService {
    hub: Arc<Hub>,
}

impl HubService {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        HubService { hub }
    }

    /// The calling department, which must be in the directory.
    fn caller<T>(&self, req: &Request<T>) -> Result<DeptId, Status> {
        let dept = peer_dept(req)?;
        if !self.hub.directory.contains(&dept) {
            return Err(Status::permission_denied(format!(
                "department {dept} is not in this hub's directory"
            )));
        }
        Ok(dept)
    }
}

/// How far ahead of the hub's clock a signed time may be (clocks drift; a node may not date
/// things in the future). Times in the past are fine: a document may wait in an outbox for days.
pub(crate) const MAX_CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;

/// Refuses a signed time that is unset or further in the future than [`MAX_CLOCK_SKEW_MS`].
pub(crate) fn check_clock(field: &str, at_ms: i64) -> Result<(), ServiceError> {
    let now = now_ms();
    if at_ms <= 0 {
        return Err(ServiceError::invalid(format!(
            "{field}: must be a Unix time in milliseconds"
        )));
    }
    if at_ms > now + MAX_CLOCK_SKEW_MS {
        return Err(ServiceError::invalid(format!(
            "{field}: {} is {} s ahead of the hub's clock; at most {} s of clock skew is allowed",
            exchange_core::time::format_ms(at_ms),
            (at_ms - now) / 1000,
            MAX_CLOCK_SKEW_MS / 1000
        )));
    }
    Ok(())
}

/// The sender's recall (撤回) of the stored document `rec`: recorded and queued for every
/// recipient not finished with it, here or through the peer hubs towards them. At the origin
/// hub and at every hub it is relayed to alike.
pub(crate) async fn recall_statement(
    hub: &Hub,
    rec: &store::DocumentRecord,
    ev: SignedEvidence,
) -> Result<(), ServiceError> {
    let id = rec.doc.header.id;
    let woken = store::recall(&hub.store, &rec.doc, ev, Arc::clone(&hub.links.routes)).await?;
    info!(doc_id = %id, recipients = woken.local.len(), peers = woken.peers.len(), "recalled by the sender");
    woken.local.iter().for_each(|d| hub.sessions.wake(d));
    woken.peers.iter().for_each(|p| hub.peer_wake.wake(p));
    Ok(())
}

/// The sender's reminder (催办) of one recipient of the stored document `rec`: queued for it,
/// here or through the peer hub towards it, unless its delivery has ended.
pub(crate) async fn remind_statement(
    hub: &Hub,
    rec: &store::DocumentRecord,
    ev: SignedEvidence,
) -> Result<(), ServiceError> {
    let id = rec.doc.header.id;
    let named = ev
        .evidence
        .recipient
        .clone()
        .ok_or_else(|| ServiceError::invalid("evidence.recipient: required"))?;
    let origin = rec.origin();
    let key = hub.links.relative(origin, &named);
    let dest = hub.links.dest(origin, &named).ok_or_else(|| {
        ServiceError::invalid(format!(
            "evidence.recipient: no link of this exchange reaches {named}"
        ))
    })?;
    match store::remind(&hub.store, &rec.doc, ev, key, dest.clone()).await? {
        store::Reminder::Queued => {
            info!(doc_id = %id, recipient = %named, "reminder queued (催办)");
            match &dest {
                Dest::Local(d) => hub.sessions.wake(d),
                Dest::Peer(p) => hub.peer_wake.wake(p),
            }
        }
        store::Reminder::Moot(state) => {
            info!(doc_id = %id, recipient = %named, %state, "reminder kept, not forwarded: the delivery has ended");
        }
    }
    Ok(())
}

/// Whether `dept` of this exchange sent the stored document (a document of a linked exchange
/// has no sender here).
fn is_sender(rec: &store::DocumentRecord, dept: &DeptId) -> bool {
    rec.relay.is_none() && rec.doc.header.sender == *dept
}

pub(crate) fn digest_field(field: &str, b: &[u8]) -> Result<Digest, ServiceError> {
    Digest::from_slice(b)
        .ok_or_else(|| ServiceError::invalid(format!("{field}: must be 32 bytes of SHA-256")))
}

/// Checks content sent inline with `Submit`: only parts of this document, each exactly its
/// signed size and SHA-256, and no more than `INLINE_BYTES` in all. Returns each content with
/// the digest of its part.
fn check_inline(
    h: &exchange_core::document::Header,
    inline: Vec<pb::InlineContent>,
) -> Result<Vec<(Digest, Vec<u8>)>, ServiceError> {
    let total: u64 = inline.iter().map(|c| c.data.len() as u64).sum();
    let max = exchange_core::document::limits::INLINE_BYTES;
    if total > max {
        return Err(ServiceError::invalid(format!(
            "content: {total} bytes inline, at most {max} (upload larger content with PutBlob)"
        )));
    }
    let mut checked = Vec::with_capacity(inline.len());
    for (i, c) in inline.into_iter().enumerate() {
        let part = h
            .parts
            .iter()
            .find(|p| p.sha256.0.as_slice() == c.sha256.as_slice());
        let part = part.ok_or_else(|| {
            ServiceError::invalid(format!("content[{i}].sha256: not a part of this document"))
        })?;
        // The header's algorithm: `SignedDoc::verify` found it to be this exchange's.
        let digest = Digest::with(h.digest, &c.data)
            .map_err(|e| ServiceError::invalid(format!("content[{i}]: {e}")))?;
        if c.data.len() as u64 != part.size || digest != part.sha256 {
            return Err(ServiceError::invalid(format!(
                "content[{i}]: does not match the signed size and {} of {}",
                digest_label(h.digest),
                part.name
            )));
        }
        checked.push((part.sha256, c.data));
    }
    Ok(checked)
}

/// Refuses a classification this exchange does not carry.
pub(crate) fn check_classification(
    hub: &Hub,
    h: &exchange_core::document::Header,
) -> Result<(), ServiceError> {
    match h.classification {
        c if c.never_travels() => Err(ServiceError::denied(Classification::NEVER_TRAVELS)),
        Classification::Unclassified => Ok(()),
        Classification::Secret if hub.cfg.hub.allow_classified => Ok(()),
        _ => Err(ServiceError::denied(
            "metadata.classification: this exchange is not approved for classified documents (秘密 or higher)",
        )),
    }
}

/// The content of a document about to be stored: within the hub's size limit, every part
/// either sent inline (and matching its signed size and digest) or already held. Returns the
/// inline content to store with the document.
pub(crate) async fn check_content(
    hub: &Hub,
    h: &exchange_core::document::Header,
    inline: Vec<pb::InlineContent>,
) -> Result<Vec<(Digest, Vec<u8>)>, ServiceError> {
    let max = hub.cfg.hub.max_document_bytes;
    if h.total_size() > max {
        // Refused for good: RESOURCE_EXHAUSTED would be retried by the node as a full disk.
        return Err(ServiceError::invalid(format!(
            "header.parts: {} bytes in all, the hub's limit is {max}",
            h.total_size()
        )));
    }
    let inline = check_inline(h, inline)?;
    for (i, p) in h.parts.iter().enumerate() {
        if inline.iter().any(|(d, _)| *d == p.sha256)
            || store::inline_content(&hub.store, h.id, p.sha256)
                .await?
                .is_some()
        {
            continue;
        }
        let (have, complete) = hub.blobs.progress(&p.sha256).await;
        if !complete || have != p.size {
            return Err(ServiceError::precondition(format!(
                "header.parts[{i}]: content {} not uploaded (PutBlob first, or send it inline)",
                p.sha256
            )));
        }
    }
    Ok(inline)
}

/// The gRPC status of a step the store refused: the one place these codes are chosen.
impl From<StepError> for ServiceError {
    fn from(e: StepError) -> Self {
        let code = match e {
            StepError::Store(s) => return ServiceError::from(s),
            StepError::NoRecipient | StepError::Unroutable { .. } => ErrorCode::InvalidArgument,
            StepError::NotRecipient { .. } => ErrorCode::PermissionDenied,
            StepError::Conflict { .. } => ErrorCode::AlreadyExists,
            StepError::State { .. }
            | StepError::Recalled { .. }
            | StepError::NotRecalled { .. } => ErrorCode::FailedPrecondition,
            StepError::Fenced { .. } => ErrorCode::Unavailable,
        };
        ServiceError::new(code, e.to_string())
    }
}

/// A submission checked and its acceptance signed: what storing it needs, and what follows.
struct Checked {
    job: ToAccept,
    after: AfterAccept,
}

/// What follows a document's acceptance once it is stored ([`HubService::accepted`]).
struct AfterAccept {
    id: DocumentId,
    sender: DeptId,
    at_ms: i64,
    reply_deadline_ms: i64,
    /// The departments here it goes to.
    local: Vec<DeptId>,
    /// The linked exchanges it goes through.
    peers: Vec<exchange_core::ids::ExchangeName>,
}

/// The id a submission's document claims, for the audit trail of a refusal (not trusted for
/// anything).
fn claimed_id(req: &pb::SubmitRequest) -> Option<String> {
    req.document.as_ref().and_then(|d| {
        <pb::DocumentHeader as prost::Message>::decode(d.header.as_slice())
            .ok()
            .map(|h| h.id)
    })
}

/// Sets the outcome of document `i` of a `SubmitBatch` to what `Submit` would have answered.
fn set_outcome(
    outcomes: &mut [pb::SubmitOutcome],
    i: usize,
    result: Result<pb::SubmitResponse, ServiceError>,
) {
    let outcome = match result {
        Ok(r) => pb::SubmitOutcome {
            acceptance: r.acceptance,
            ..Default::default()
        },
        Err(e) => {
            let status = Status::from(e);
            pb::SubmitOutcome {
                acceptance: None,
                code: status.code().into(),
                message: status.message().to_owned(),
                details: status.details().to_vec(),
            }
        }
    };
    if let Some(slot) = outcomes.get_mut(i) {
        *slot = outcome;
    }
}

fn blob_error(e: exchange_core::blob::BlobError) -> ServiceError {
    use exchange_core::blob::BlobError;
    match e {
        e if e.is_disk_full() => {
            ServiceError::new(ErrorCode::ResourceExhausted, format!("hub disk full: {e}"))
        }
        e @ (BlobError::Mismatch { .. } | BlobError::Protocol(_)) => {
            ServiceError::invalid(e.to_string())
        }
        e @ BlobError::Busy(_) => ServiceError::new(ErrorCode::Unavailable, e.to_string()),
        // Stored content that fails its integrity check does not heal by retrying: DATA_LOSS,
        // so that a recipient refuses the delivery (the sender is told) instead of waiting.
        e if e.is_damage() => {
            warn!(error = %e, "stored content failed its integrity check");
            ServiceError::new(ErrorCode::DataLoss, e.to_string())
        }
        // Encrypted content and no key configured: the operator must act.
        e @ BlobError::Encrypted(_) => {
            warn!(error = %e, "stored content cannot be read");
            ServiceError::new(ErrorCode::Internal, e.to_string())
        }
        e => ServiceError::new(ErrorCode::Unavailable, e.to_string()),
    }
}

impl HubService {
    /// One submission from `dept`, a refusal audited (`DOCUMENT_REFUSED`).
    async fn submit_audited(
        &self,
        dept: &DeptId,
        req: pb::SubmitRequest,
    ) -> Result<pb::SubmitResponse, ServiceError> {
        let (Checked { job, after }, doc, claimed) = self.checked_audited(dept, req).await?;
        let stored = store::accept(&self.hub.store, job)
            .await
            .map_err(ServiceError::from);
        self.stored_audited(dept, after, &doc, claimed, stored)
            .await
    }

    /// A submission from `dept` verified and checked, its acceptance signed, ready to be stored
    /// (alone, or with the others of a `SubmitBatch`: [`Checked`]); with it, the document (for
    /// a refusal at storing) and the id it claims. A refusal is audited.
    async fn checked_audited(
        &self,
        dept: &DeptId,
        req: pb::SubmitRequest,
    ) -> Result<(Checked, Arc<SignedDoc>, Option<String>), ServiceError> {
        let claimed = claimed_id(&req);
        let result = async {
            let doc = Arc::new(self.verified(req.document)?);
            let for_refusal = Arc::clone(&doc);
            let checked = self
                .checked(dept.clone(), doc, req.content)
                .await
                .map_err(|e| self.final_refusal(e, &for_refusal))?;
            Ok((checked, for_refusal))
        }
        .await;
        match result {
            Ok((checked, doc)) => Ok((checked, doc, claimed)),
            Err(e) => {
                self.audit_refusal(dept, claimed, &e).await;
                Err(e)
            }
        }
    }

    /// The submitted document, its signature verified.
    fn verified(&self, wire: Option<pb::SignedDocument>) -> Result<SignedDoc, ServiceError> {
        let wire = wire.ok_or_else(|| ServiceError::invalid("document: required"))?;
        SignedDoc::verify(wire, &self.hub.verifier, now_secs()).map_err(|e| match e {
            exchange_core::document::DocError::Field(f) => ServiceError::invalid(f.to_string()),
            e => ServiceError::denied(format!("document refused: {e}")),
        })
    }

    /// `e` refusing `doc`: a refusal for good (a bad field, a department it may not send to, an
    /// id taken by another header) carries the hub's signed REFUSED ([`Self::refusal`]); any
    /// other error is returned as it is.
    fn final_refusal(&self, e: ServiceError, doc: &SignedDoc) -> ServiceError {
        if matches!(
            e.code,
            ErrorCode::InvalidArgument | ErrorCode::PermissionDenied | ErrorCode::AlreadyExists
        ) {
            self.refusal(e, doc)
        } else {
            e
        }
    }

    /// Audits the refusal `e` of a submission from `dept` (`DOCUMENT_REFUSED`), naming the id
    /// the document claims, if any.
    async fn audit_refusal(&self, dept: &DeptId, claimed: Option<String>, e: &ServiceError) {
        warn!(error = %e, "submission refused");
        let ev = Event::new(pb::AuditKind::DocumentRefused)
            .dept(dept)
            .detail(e.message.clone());
        let ev = match claimed {
            Some(id) => ev.doc(id.chars().take(64).collect::<String>()),
            None => ev,
        };
        audit::record(&self.hub.store, ev).await;
    }

    /// A permanent refusal of a document whose signature verified: the hub signs REFUSED
    /// evidence with the reason and sends it with the error, so the sender can prove it.
    fn refusal(&self, mut e: ServiceError, doc: &SignedDoc) -> ServiceError {
        let mut ev = Evidence::about(doc, EvidenceKind::Refused, None, now_ms());
        // A message may quote the request: made valid as a reason (no control characters).
        ev.reason = exchange_core::convert::one_line_text(
            &e.message,
            exchange_core::document::limits::TEXT_CHARS,
        );
        match SignedEvidence::seal(ev, &self.hub.signer) {
            Ok(ev) => e.evidence = Some(Box::new(ev.wire)),
            Err(s) => warn!(error = %s, "could not sign the REFUSED evidence; refusing without it"),
        }
        e
    }

    /// The checks of a submission whose signature verified, and its acceptance signed: what
    /// storing it needs.
    async fn checked(
        &self,
        sender: DeptId,
        doc: Arc<SignedDoc>,
        inline: Vec<pb::InlineContent>,
    ) -> Result<Checked, ServiceError> {
        let hub = &self.hub;
        let h = &doc.header;
        check_clock("header.created_at_ms", h.created_at_ms)?;
        if h.sender != sender {
            return Err(ServiceError::denied(format!(
                "header.sender is {}, but the caller is {sender}",
                h.sender
            )));
        }
        let plan = self.plan(h)?;
        let unknown: Vec<_> = plan
            .local
            .iter()
            .filter(|(_, d)| !hub.directory.contains(d))
            .map(|(_, d)| d.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(ServiceError::invalid(format!(
                "metadata.to_depts: unknown department(s) {}",
                unknown.join(", ")
            )));
        }
        crate::policy::check(&hub.cfg.routing, &sender, &h.recipients)?;
        check_classification(hub, h)?;
        let inline = check_content(hub, h, inline).await?;
        let at = now_ms();
        let acceptance = SignedEvidence::seal_batched(
            Evidence::about(&doc, EvidenceKind::Accepted, None, at),
            &hub.batch_signer,
        )
        .await?
        .wire;
        let after = AfterAccept {
            id: h.id,
            sender,
            at_ms: at,
            reply_deadline_ms: h.metadata.reply_deadline_ms,
            local: plan.local.iter().map(|(_, d)| d.clone()).collect(),
            peers: plan.relays.iter().map(|(p, _)| p.clone()).collect(),
        };
        let job = ToAccept {
            doc,
            acceptance,
            relay: None,
            inline,
            at_ms: at,
            plan,
        };
        Ok(Checked { job, after })
    }

    /// The answer to a checked submission once storing it came to `stored`: its acceptance, or
    /// its refusal (with the hub's signed REFUSED if for good: [`Self::final_refusal`]),
    /// audited.
    async fn stored_audited(
        &self,
        dept: &DeptId,
        after: AfterAccept,
        doc: &SignedDoc,
        claimed: Option<String>,
        stored: Result<store::Accepted, ServiceError>,
    ) -> Result<pb::SubmitResponse, ServiceError> {
        match stored {
            Ok(accepted) => Ok(self.accepted(after, accepted)),
            Err(e) => {
                let e = self.final_refusal(e, doc);
                self.audit_refusal(dept, claimed, &e).await;
                Err(e)
            }
        }
    }

    /// The answer to a submission stored (`accepted`), with what follows a new one: the
    /// recipients' and peers' push loops woken, its reply deadline learnt.
    fn accepted(&self, after: AfterAccept, accepted: store::Accepted) -> pb::SubmitResponse {
        let hub = &self.hub;
        let acc = match accepted {
            store::Accepted::New(acc) => {
                let AfterAccept {
                    id,
                    sender,
                    at_ms,
                    reply_deadline_ms,
                    local,
                    peers,
                } = after;
                info!(doc_id = %id, %sender, recipients = local.len(), peers = peers.len(), "accepted");
                crate::expiry::accepted(hub, id, at_ms, reply_deadline_ms);
                local.iter().for_each(|r| hub.sessions.wake(r));
                peers.iter().for_each(|p| hub.peer_wake.wake(p));
                acc
            }
            store::Accepted::Again(acc) => acc,
        };
        pb::SubmitResponse {
            acceptance: Some(acc),
        }
    }

    pub(crate) async fn put_blob_inner(
        &self,
        mut chunks: Streaming<pb::BlobChunk>,
    ) -> Result<(), ServiceError> {
        let first = chunks
            .message()
            .await
            .map_err(|e| ServiceError::invalid(format!("stream: {e}")))?;
        let first = first.ok_or_else(|| ServiceError::invalid("PutBlob: empty stream"))?;
        let digest = digest_field("sha256", &first.sha256)?;
        let max = self.hub.cfg.hub.max_document_bytes;
        if first.size > max {
            return Err(ServiceError::invalid(format!(
                "size: {} bytes, the hub's limit is {max}",
                first.size
            )));
        }
        if self.hub.blobs.contains(&digest).await {
            return Ok(()); // content-addressed: already here, nothing to write
        }
        let resumed_from = first.offset;
        let mut w = self
            .hub
            .blobs
            .resume(digest, first.size, resumed_from)
            .await
            .map_err(blob_error)?;
        let mut next = Some(first);
        while let Some(chunk) = next {
            if chunk.offset != w.written() {
                return Err(ServiceError::invalid(format!(
                    "offset: {} but {} bytes are held",
                    chunk.offset,
                    w.written()
                )));
            }
            w.write(&chunk.data).await.map_err(blob_error)?;
            next = chunks
                .message()
                .await
                .map_err(|e| ServiceError::invalid(format!("stream: {e}")))?;
        }
        let (_, size) = w.finish().await.map_err(blob_error)?;
        info!(sha256 = %digest, size, resumed_from, received = size - resumed_from, "content received");
        Ok(())
    }

    /// Where each recipient of our own document `h` goes: a department of ours, or a peer
    /// hub towards its exchange. A recipient no link reaches, or one naming this exchange
    /// explicitly, is refused.
    fn plan(&self, h: &exchange_core::document::Header) -> Result<store::Plan, ServiceError> {
        let links = &self.hub.links;
        let mut plan = store::Plan::default();
        let mut unroutable = Vec::new();
        for r in &h.recipients {
            if let Some(e) = &r.addr.exchange
                && links.is_ours(Some(e))
            {
                return Err(ServiceError::invalid(format!(
                    "metadata.to_depts: {} is a department of this exchange: name it {} (dept@exchange is for other exchanges)",
                    r.addr, r.addr.dept
                )));
            }
            match links.dest(None, &r.addr) {
                Some(Dest::Local(d)) => plan.local.push((Address::local(d.clone()), d)),
                Some(Dest::Peer(p)) => {
                    plan.remote.push((r.addr.clone(), p.clone()));
                    match plan.relays.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, to)) => to.push(r.addr.clone()),
                        None => plan.relays.push((p, vec![r.addr.clone()])),
                    }
                }
                None => unroutable.push(r.addr.to_string()),
            }
        }
        if !unroutable.is_empty() {
            return Err(ServiceError::invalid(format!(
                "metadata.to_depts: no link of this exchange reaches {} ([[peers]] routes in hub.toml)",
                unroutable.join(", ")
            )));
        }
        Ok(plan)
    }

    /// The document `doc_id`, if `caller` is its sender or one of its recipients (named in
    /// the header or added later).
    async fn document_for(
        &self,
        caller: &DeptId,
        doc_id: &str,
    ) -> Result<store::DocumentRecord, ServiceError> {
        let id: DocumentId = doc_id.parse().map_err(|e: exchange_core::ids::IdError| {
            ServiceError::invalid(format!("doc_id: {e}"))
        })?;
        let rec = store::document(&self.hub.store, id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no document {id}")))?;
        if !is_sender(&rec, caller) && !self.is_recipient(&rec, caller).await? {
            return Err(ServiceError::denied(format!(
                "document {id} is not addressed to {caller}"
            )));
        }
        Ok(rec)
    }

    async fn is_recipient(
        &self,
        rec: &store::DocumentRecord,
        dept: &DeptId,
    ) -> Result<bool, ServiceError> {
        let named = self.hub.links.header_form(rec.origin(), dept);
        Ok(rec.doc.header.role_of(&named).is_some()
            || store::delivery(
                &self.hub.store,
                rec.doc.header.id,
                Address::local(dept.clone()),
            )
            .await?
            .is_some())
    }

    async fn submit_evidence_inner(
        &self,
        caller: DeptId,
        req: pb::SubmitEvidenceRequest,
    ) -> Result<(), ServiceError> {
        let wire = req
            .evidence
            .ok_or_else(|| ServiceError::invalid("evidence: required"))?;
        let refused = |e| match e {
            exchange_core::document::DocError::Field(f) => ServiceError::invalid(f.to_string()),
            e => ServiceError::denied(format!("evidence refused: {e}")),
        };
        let claimed = SignedEvidence::decode(wire.clone()).map_err(refused)?;
        if claimed.evidence.kind.is_senders() {
            let ev =
                SignedEvidence::verify(wire, &self.hub.verifier, now_secs()).map_err(refused)?;
            check_clock("evidence.at_ms", ev.evidence.at_ms)?;
            return self.senders_statement(caller, ev).await;
        }
        // A recipient's statement is checked as the document names the recipient: a document
        // of a linked exchange names this department `dept@<this exchange>`.
        let id = claimed.evidence.doc_id;
        let rec = store::document(&self.hub.store, id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no document {id}")))?;
        let origin = rec.origin();
        let ev = SignedEvidence::verify_in(wire, &self.hub.links.trust, origin, now_secs())
            .map_err(refused)?;
        check_clock("evidence.at_ms", ev.evidence.at_ms)?;
        let me = self.hub.links.header_form(origin, &caller);
        if ev.evidence.recipient.as_ref() != Some(&me) {
            return Err(ServiceError::denied(format!(
                "evidence.recipient: {caller} may only report on its own deliveries (as {me})"
            )));
        }
        if !matches!(
            ev.evidence.kind,
            EvidenceKind::Confirmed | EvidenceKind::Rejected | EvidenceKind::RecallAcknowledged
        ) {
            return Err(ServiceError::invalid(
                "evidence.kind: a recipient may submit only CONFIRMED, REJECTED or RECALL_ACKNOWLEDGED here",
            ));
        }
        if !self.is_recipient(&rec, &caller).await? {
            return Err(ServiceError::denied(format!(
                "document {} is not addressed to {caller}",
                rec.doc.header.id
            )));
        }
        if !ev.is_about(&rec.doc) {
            return Err(ServiceError::invalid(
                "evidence.header_digest: does not match the document",
            ));
        }
        let (id, kind) = (rec.doc.header.id, ev.evidence.kind);
        let about = self.hub.about(&rec);
        if store::record_evidence(&self.hub.store, about.clone(), ev, None).await? {
            info!(doc_id = %id, recipient = %caller, ?kind, "recipient evidence recorded");
            self.hub.wake_back(&about);
        }
        Ok(())
    }

    /// The sender's own signed statement about a document it sent: recall (撤回), an added
    /// recipient (补发) or a reminder (催办).
    async fn senders_statement(
        &self,
        caller: DeptId,
        ev: SignedEvidence,
    ) -> Result<(), ServiceError> {
        if ev.evidence.sender != caller {
            return Err(ServiceError::denied(format!(
                "evidence.sender: {caller} may recall, add recipients to or remind of only its own documents"
            )));
        }
        let rec = self
            .document_for(&caller, &ev.evidence.doc_id.to_string())
            .await?;
        if !is_sender(&rec, &caller) {
            return Err(ServiceError::denied(format!(
                "evidence.sender: {caller} did not send document {}",
                rec.doc.header.id
            )));
        }
        if !ev.is_about(&rec.doc) {
            return Err(ServiceError::invalid(
                "evidence.header_digest: does not match the document",
            ));
        }
        let hub = &self.hub;
        let id = rec.doc.header.id;
        match ev.evidence.kind {
            EvidenceKind::Recall => recall_statement(hub, &rec, ev).await?,
            EvidenceKind::Reminded => remind_statement(hub, &rec, ev).await?,
            EvidenceKind::RecipientAdded => {
                let doc = rec.doc;
                let named = ev
                    .evidence
                    .recipient
                    .clone()
                    .ok_or_else(|| ServiceError::invalid("evidence.recipient: required"))?;
                if named
                    .exchange
                    .as_ref()
                    .is_some_and(|e| hub.links.is_ours(Some(e)))
                {
                    return Err(ServiceError::invalid(format!(
                        "evidence.recipient: {named} is a department of this exchange: name it {}",
                        named.dept
                    )));
                }
                let dest = hub.links.dest(None, &named).ok_or_else(|| {
                    ServiceError::invalid(format!(
                        "evidence.recipient: no link of this exchange reaches {named}"
                    ))
                })?;
                if let Dest::Local(dept) = &dest {
                    if *dept == caller {
                        return Err(ServiceError::invalid(
                            "evidence.recipient: a department does not send to itself",
                        ));
                    }
                    if !hub.directory.contains(dept) {
                        return Err(ServiceError::invalid(format!(
                            "evidence.recipient: unknown department {dept}"
                        )));
                    }
                }
                let added = exchange_core::document::Recipient {
                    addr: named.clone(),
                    role: if ev.evidence.cc {
                        exchange_core::document::RecipientRole::Cc
                    } else {
                        exchange_core::document::RecipientRole::Main
                    },
                };
                crate::policy::check(&hub.cfg.routing, &caller, std::slice::from_ref(&added))?;
                if store::add_recipient(&hub.store, &doc, ev, named.clone(), dest.clone()).await? {
                    info!(doc_id = %id, recipient = %named, "recipient added (补发)");
                    match &dest {
                        Dest::Local(d) => hub.sessions.wake(d),
                        Dest::Peer(p) => hub.peer_wake.wake(p),
                    }
                }
            }
            kind => {
                return Err(ServiceError::invalid(format!(
                    "evidence.kind: {kind:?} is not a sender's statement"
                )));
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl hub_server::Hub for HubService {
    async fn list_departments(
        &self,
        req: Request<pb::ListDepartmentsRequest>,
    ) -> Result<Response<pb::ListDepartmentsResponse>, Status> {
        let caller = self.caller(&req)?;
        // Per-sender scoping: what the routing policy lets the caller address.
        let routing = &self.hub.cfg.routing;
        // The policy scopes this exchange's departments; one of a linked exchange (in a
        // group) is the links' to route.
        let may = |id: &str| match id.parse::<Address>() {
            Ok(a) if a.exchange.is_some() => true,
            Ok(a) => crate::policy::allowed(routing, &caller, &a.dept),
            Err(_) => false,
        };
        let mut departments = self.hub.directory.to_proto();
        for d in &mut departments {
            d.outside_scope = !may(&d.id);
        }
        // Departments of linked exchanges, as their hubs last listed them.
        departments.extend(self.hub.peer_dirs.all());
        let groups = self
            .hub
            .directory
            .groups_proto()
            .into_iter()
            .filter(|g| g.members.iter().all(|m| may(m)))
            .collect();
        let (exchange, exchanges) = self.hub.links.for_nodes();
        Ok(Response::new(pb::ListDepartmentsResponse {
            departments,
            groups,
            exchange,
            exchanges,
        }))
    }

    async fn blob_status(
        &self,
        req: Request<pb::BlobStatusRequest>,
    ) -> Result<Response<pb::BlobStatusResponse>, Status> {
        self.caller(&req)?;
        let digest = digest_field("sha256", &req.get_ref().sha256)?;
        let (have, complete) = self.hub.blobs.progress(&digest).await;
        Ok(Response::new(pb::BlobStatusResponse { have, complete }))
    }

    #[instrument(skip_all, fields(dept))]
    async fn put_blob(
        &self,
        req: Request<Streaming<pb::BlobChunk>>,
    ) -> Result<Response<pb::PutBlobResponse>, Status> {
        let dept = self.caller(&req)?;
        tracing::Span::current().record("dept", tracing::field::display(&dept));
        self.put_blob_inner(req.into_inner()).await?;
        Ok(Response::new(pb::PutBlobResponse {}))
    }

    #[instrument(skip_all, fields(dept))]
    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let dept = self.caller(&req)?;
        tracing::Span::current().record("dept", tracing::field::display(&dept));
        Ok(Response::new(
            self.submit_audited(&dept, req.into_inner()).await?,
        ))
    }

    #[instrument(skip_all, fields(dept))]
    async fn submit_batch(
        &self,
        req: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let dept = self.caller(&req)?;
        tracing::Span::current().record("dept", tracing::field::display(&dept));
        let docs = req.into_inner().documents;
        let max = exchange_core::document::limits::SUBMIT_BATCH;
        if docs.is_empty() || docs.len() > max {
            return Err(ServiceError::invalid(format!(
                "documents: {} in the batch, 1 to {max} allowed",
                docs.len()
            ))
            .into());
        }
        let metered = crate::limits::metered_name(&dept);
        self.hub.limits.charge_calls(&metered, docs.len() - 1);
        // Each document checked as Submit would check it alone, all at once (their acceptances
        // share one batch signature), then all stored in one transaction, each as if alone.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, doc) in docs.into_iter().enumerate() {
            let (svc, dept) = (self.clone(), dept.clone());
            let one = async move { (i, svc.checked_audited(&dept, doc).await) };
            tasks.spawn(tracing::Instrument::in_current_span(one));
        }
        let mut outcomes = vec![pb::SubmitOutcome::default(); tasks.len()];
        let (mut waiting, mut jobs) = (Vec::new(), Vec::new());
        while let Some(done) = tasks.join_next().await {
            let (i, result) = done.map_err(|e| Status::internal(format!("submitting: {e}")))?;
            match result {
                Ok((Checked { job, after }, doc, claimed)) => {
                    jobs.push(job);
                    waiting.push((i, after, doc, claimed));
                }
                Err(e) => set_outcome(&mut outcomes, i, Err(e)),
            }
        }
        if jobs.is_empty() {
            return Ok(Response::new(pb::SubmitBatchResponse { outcomes }));
        }
        let stored: Vec<Result<store::Accepted, ServiceError>> =
            match store::accept_all(&self.hub.store, jobs).await {
                Ok(stored) => stored
                    .into_iter()
                    .map(|r| r.map_err(ServiceError::from))
                    .collect(),
                Err(e) => {
                    let e = ServiceError::from(e);
                    waiting.iter().map(|_| Err(e.clone())).collect()
                }
            };
        for ((i, after, doc, claimed), result) in waiting.into_iter().zip(stored) {
            let result = self
                .stored_audited(&dept, after, &doc, claimed, result)
                .await;
            set_outcome(&mut outcomes, i, result);
        }
        Ok(Response::new(pb::SubmitBatchResponse { outcomes }))
    }

    type GetBlobStream = Stream_<pb::BlobData>;

    async fn get_blob(
        &self,
        req: Request<pb::GetBlobRequest>,
    ) -> Result<Response<Self::GetBlobStream>, Status> {
        let dept = self.caller(&req)?;
        let req = req.into_inner();
        let doc = self.document_for(&dept, &req.doc_id).await?;
        let digest = digest_field("sha256", &req.sha256)?;
        let doc = doc.doc;
        let part = doc.header.parts.iter().find(|p| p.sha256 == digest);
        let part = part.ok_or_else(|| {
            ServiceError::not_found(format!("document {} has no part {digest}", doc.header.id))
        })?;
        if req.offset > part.size {
            return Err(ServiceError::invalid(format!(
                "offset: {} is beyond the part's {} bytes",
                req.offset, part.size
            ))
            .into());
        }
        if let Some(data) = store::inline_content(&self.hub.store, doc.header.id, digest)
            .await
            .map_err(ServiceError::from)?
        {
            // A small document's content, held inline: one message.
            let from = usize::try_from(req.offset).unwrap_or(usize::MAX);
            let data = data.get(from..).unwrap_or_default().to_vec();
            let one = tokio_stream::once(Ok(pb::BlobData { data }));
            return Ok(Response::new(Box::pin(one)));
        }
        let mut file = self
            .hub
            .blobs
            .open_read(&digest, req.offset)
            .await
            .map_err(blob_error)?;
        let len = chunk_for(part.size - req.offset);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut buf = vec![0u8; len];
            loop {
                match file.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx
                            .send(Ok(pb::BlobData {
                                data: buf[..n].to_vec(),
                            }))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        // Damaged content (InvalidData, naming the blob and chunk) is refused,
                        // never sent on.
                        let status = if e.kind() == std::io::ErrorKind::InvalidData {
                            warn!(%digest, error = %e, "stored content failed its integrity check");
                            Status::data_loss(format!("reading content: {e}"))
                        } else {
                            Status::unavailable(format!("reading content: {e}"))
                        };
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[instrument(skip_all, fields(dept))]
    async fn submit_evidence(
        &self,
        req: Request<pb::SubmitEvidenceRequest>,
    ) -> Result<Response<pb::SubmitEvidenceResponse>, Status> {
        let dept = self.caller(&req)?;
        tracing::Span::current().record("dept", tracing::field::display(&dept));
        // What the caller claims the statement is, for the audit trail of a refusal only.
        let claimed = req
            .get_ref()
            .evidence
            .as_ref()
            .and_then(|w| <pb::Evidence as prost::Message>::decode(w.evidence.as_slice()).ok());
        match self
            .submit_evidence_inner(dept.clone(), req.into_inner())
            .await
        {
            Ok(()) => Ok(Response::new(pb::SubmitEvidenceResponse {})),
            // The hub's own trouble (its store) is not the statement's fault: not audited as a
            // refusal, and the node retries.
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::Unavailable | ErrorCode::ResourceExhausted
                ) =>
            {
                Err(e.into())
            }
            Err(e) => {
                warn!(error = %e, "statement refused");
                let (doc, kind) = claimed.map_or((String::new(), String::new()), |c| {
                    let kind = c.kind().as_str_name().trim_start_matches("EVIDENCE_KIND_");
                    (c.doc_id.chars().take(64).collect(), kind.to_owned())
                });
                let ev = Event::new(pb::AuditKind::StatementRefused)
                    .doc(doc)
                    .dept(&dept)
                    .detail(format!("{kind}: {}", e.message));
                audit::record(&self.hub.store, ev).await;
                Err(e.into())
            }
        }
    }

    type SubscribeStream = Stream_<pb::HubPush>;

    async fn subscribe(
        &self,
        req: Request<Streaming<pb::SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let dept = self.caller(&req)?;
        // v1.4: a node that asks for batches gets several pushes per message; every node may
        // send several acknowledgements per message, and is told so.
        let batches = exchange_proto::says_batches(req.metadata());
        let acks = req.into_inner();
        let rx = delivery::start(Arc::clone(&self.hub), dept, acks, batches);
        let mut response =
            Response::new(Box::pin(ReceiverStream::new(rx)) as Self::SubscribeStream);
        exchange_proto::say_batches(response.metadata_mut());
        Ok(response)
    }
}
