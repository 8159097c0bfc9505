//! The node's local gRPC API (`exchange.v1.Node`), for the department's OA system and the
//! clerk's CLI. It listens on loopback by default and answers only about this department's own
//! documents; every answer that reports a change is sent after the change is durable.

mod codes;
mod streams;
mod views;

use std::{pin::Pin, sync::Arc};

use exchange_core::{
    document::{Evidence, EvidenceKind, SignedEvidence, limits},
    error::ServiceError,
    ids::{DocumentId, IdError},
    state::ClerkAction,
    time::now_ms,
};
use exchange_proto::v1::{self as pb, node_server};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

pub(crate) use views::{inbox_entry, is_past, recipient_status, sign_due_ms};

use crate::{MAX_MESSAGE_BYTES, Node, store, submit};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The tonic service for `node`.
pub(crate) fn service(node: Arc<Node>) -> node_server::NodeServer<NodeApi> {
    node_server::NodeServer::new(NodeApi { node })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The API handlers: one per RPC of `exchange.v1.Node`, over the node they serve.
#[derive(Debug)]
pub struct NodeApi {
    node: Arc<Node>,
}

fn doc_id(field: &str, s: &str) -> Result<DocumentId, ServiceError> {
    s.parse()
        .map_err(|e: IdError| ServiceError::invalid(format!("{field}: {e}")))
}

/// The same rule the hub applies to evidence, so nothing the node accepts is refused later.
fn text(field: &str, s: &str, max: usize) -> Result<(), ServiceError> {
    exchange_core::convert::validate_text(field, s, max)
        .map_err(|e| ServiceError::invalid(e.to_string()))
}

impl NodeApi {
    /// A clerk's 签收, 退回 or recall acknowledgement: checked, signed and recorded (and queued
    /// for the hub) in one transaction.
    async fn clerk_action(
        &self,
        id: &str,
        action: ClerkAction,
        clerk: String,
        reason: String,
    ) -> Result<(), ServiceError> {
        let id = doc_id("doc_id", id)?;
        text("clerk", &clerk, limits::CLERK_CHARS)?;
        text(
            if action == ClerkAction::Reject {
                "reason"
            } else {
                "note"
            },
            &reason,
            limits::TEXT_CHARS,
        )?;
        if action == ClerkAction::Reject && reason.trim().is_empty() {
            return Err(ServiceError::invalid(
                "reason: a rejection (退回) needs a reason",
            ));
        }
        self.node.can_sign()?;
        let me = self.node.cfg.node.id.clone();
        let signer = Arc::clone(&self.node);
        let kind = match action {
            ClerkAction::Confirm => EvidenceKind::Confirmed,
            ClerkAction::Reject => EvidenceKind::Rejected,
            ClerkAction::AcknowledgeRecall => EvidenceKind::RecallAcknowledged,
        };
        let changed = store::handle(&self.node.store, id, me, action, move |doc, me| {
            let mut ev = Evidence::about(doc, kind, Some(me.clone()), now_ms());
            ev.clerk.clone_from(&clerk);
            ev.reason.clone_from(&reason);
            SignedEvidence::seal(ev, &signer.signer)
        })
        .await?;
        if changed {
            info!(doc_id = %id, ?action, "clerk action recorded");
            self.node.outbox_wake.notify_one();
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl node_server::Node for NodeApi {
    async fn submit(
        &self,
        req: Request<Streaming<pb::SubmitDocumentRequest>>,
    ) -> Result<Response<pb::SubmitDocumentResponse>, Status> {
        let id = submit::submit(&self.node, req.into_inner()).await?;
        Ok(Response::new(pb::SubmitDocumentResponse {
            doc_id: id.to_string(),
        }))
    }

    async fn get_status(
        &self,
        req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::DocumentStatus>, Status> {
        let id = doc_id("doc_id", &req.get_ref().doc_id)?;
        Ok(Response::new(crate::status::of(&self.node, id).await?))
    }

    async fn list_sent(
        &self,
        _req: Request<pb::ListSentRequest>,
    ) -> Result<Response<pb::ListSentResponse>, Status> {
        let documents = crate::status::all(&self.node).await?;
        Ok(Response::new(pb::ListSentResponse { documents }))
    }

    async fn list_inbox(
        &self,
        _req: Request<pb::ListInboxRequest>,
    ) -> Result<Response<pb::ListInboxResponse>, Status> {
        let recs = store::inbox(&self.node.store)
            .await
            .map_err(ServiceError::from)?;
        let mut entries = recs
            .iter()
            .map(|r| (r.doc.header.urgency.priority(), inbox_entry(&self.node, r)))
            .collect::<Vec<_>>();
        // Overdue, reminded (催办) or recalled-after-签收 first, then most urgent, then oldest:
        // the order a clerk works in.
        let flagged = |e: &pb::InboxEntry| {
            e.overdue
                || e.state() == pb::InboxState::RecallPending
                || (e.state() == pb::InboxState::New && e.reminders > 0)
        };
        entries.sort_by(|a, b| {
            flagged(&b.1)
                .cmp(&flagged(&a.1))
                .then(a.0.cmp(&b.0))
                .then(a.1.received_at_ms.cmp(&b.1.received_at_ms))
        });
        Ok(Response::new(pb::ListInboxResponse {
            entries: entries.into_iter().map(|(_, e)| e).collect(),
        }))
    }

    type FetchDocumentStream = Stream_<pb::FetchDocumentResponse>;

    async fn fetch_document(
        &self,
        req: Request<pb::FetchDocumentRequest>,
    ) -> Result<Response<Self::FetchDocumentStream>, Status> {
        let req = req.into_inner();
        let id = doc_id("doc_id", &req.doc_id)?;
        let rec = store::received(&self.node.store, id)
            .await
            .map_err(ServiceError::from)?;
        let rec =
            rec.ok_or_else(|| ServiceError::not_found(format!("no received document {id}")))?;
        let entry = inbox_entry(&self.node, &rec);
        if req.with_content && entry.state() == pb::InboxState::Recalled {
            // Recalled before 签收: the entry stays listed, its content is no longer handed out.
            return Err(ServiceError::precondition(format!(
                "document {id} was recalled by its sender (撤回): its content is withheld"
            ))
            .into());
        }
        let doc = rec.doc;
        let header = prost::Message::decode(doc.wire.header.as_slice())
            .map_err(|_| Status::internal("stored header"))?;
        let parts = if req.with_content {
            doc.header.parts
        } else {
            Vec::new()
        };
        let first = pb::ReceivedDocument {
            entry: Some(entry),
            header: Some(header),
            signed: Some(doc.wire),
            acceptance: rec.acceptance,
        };
        let (store, blobs) = (self.node.store.clone(), self.node.blobs.clone());
        Ok(Response::new(Box::pin(streams::document(
            store, blobs, id, first, parts,
        ))))
    }

    async fn confirm(
        &self,
        req: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::ConfirmResponse>, Status> {
        let r = req.into_inner();
        self.clerk_action(&r.doc_id, ClerkAction::Confirm, r.clerk, r.note)
            .await?;
        Ok(Response::new(pb::ConfirmResponse {}))
    }

    async fn reject(
        &self,
        req: Request<pb::RejectRequest>,
    ) -> Result<Response<pb::RejectResponse>, Status> {
        let r = req.into_inner();
        self.clerk_action(&r.doc_id, ClerkAction::Reject, r.clerk, r.reason)
            .await?;
        Ok(Response::new(pb::RejectResponse {}))
    }

    async fn recall(
        &self,
        req: Request<pb::RecallRequest>,
    ) -> Result<Response<pb::RecallResponse>, Status> {
        let r = req.into_inner();
        let id = doc_id("doc_id", &r.doc_id)?;
        text("reason", &r.reason, limits::TEXT_CHARS)?;
        text("clerk", &r.clerk, limits::CLERK_CHARS)?;
        if r.reason.trim().is_empty() {
            return Err(ServiceError::invalid("reason: a recall (撤回) needs a reason").into());
        }
        if crate::office::recall(&self.node, id, r.reason, r.clerk)
            .await
            .map_err(ServiceError::from)?
        {
            info!(doc_id = %id, "recall queued for the hub");
            self.node.outbox_wake.notify_one();
        }
        Ok(Response::new(pb::RecallResponse {}))
    }

    async fn add_recipients(
        &self,
        req: Request<pb::AddRecipientsRequest>,
    ) -> Result<Response<pb::AddRecipientsResponse>, Status> {
        let r = req.into_inner();
        let id = doc_id("doc_id", &r.doc_id)?;
        let mut wanted = Vec::new();
        for (field, list, cc) in [
            ("to_depts", &r.to_depts, false),
            ("cc_depts", &r.cc_depts, true),
        ] {
            for d in list {
                let dept: exchange_core::ids::Address = d
                    .parse()
                    .map_err(|e: IdError| ServiceError::invalid(format!("{field}: {e}")))?;
                wanted.push((dept, cc));
            }
        }
        if wanted.is_empty() {
            return Err(
                ServiceError::invalid("to_depts: name at least one department to add").into(),
            );
        }
        if wanted.len() > limits::RECIPIENTS {
            return Err(ServiceError::invalid(format!(
                "to_depts: at most {} departments at once",
                limits::RECIPIENTS
            ))
            .into());
        }
        let added = crate::office::add_recipients(&self.node, id, wanted)
            .await
            .map_err(ServiceError::from)?;
        if !added.is_empty() {
            info!(doc_id = %id, added = added.len(), "recipients added (补发)");
            self.node.outbox_wake.notify_one();
        }
        Ok(Response::new(pb::AddRecipientsResponse {
            added: added.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn remind(
        &self,
        req: Request<pb::RemindRequest>,
    ) -> Result<Response<pb::RemindResponse>, Status> {
        let r = req.into_inner();
        let id = doc_id("doc_id", &r.doc_id)?;
        text("note", &r.note, limits::TEXT_CHARS)?;
        if r.recipients.len() > limits::RECIPIENTS {
            return Err(ServiceError::invalid(format!(
                "recipients: {} named, at most {} allowed",
                r.recipients.len(),
                limits::RECIPIENTS
            ))
            .into());
        }
        let mut recipients: Vec<exchange_core::ids::Address> = r
            .recipients
            .iter()
            .map(|d| {
                d.parse()
                    .map_err(|e: IdError| ServiceError::invalid(format!("recipients: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        recipients.sort();
        recipients.dedup();
        let reminded = crate::office::remind(&self.node, id, recipients, r.note)
            .await
            .map_err(ServiceError::from)?;
        info!(doc_id = %id, reminded = reminded.len(), "reminders queued (催办)");
        self.node.outbox_wake.notify_one();
        Ok(Response::new(pb::RemindResponse {
            reminded: reminded.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn acknowledge_recall(
        &self,
        req: Request<pb::AcknowledgeRecallRequest>,
    ) -> Result<Response<pb::AcknowledgeRecallResponse>, Status> {
        let r = req.into_inner();
        self.clerk_action(
            &r.doc_id,
            ClerkAction::AcknowledgeRecall,
            r.clerk,
            String::new(),
        )
        .await?;
        Ok(Response::new(pb::AcknowledgeRecallResponse {}))
    }

    type WatchEventsStream = Stream_<pb::NodeEvent>;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let after = req.into_inner().after_seq;
        let events = streams::events(Arc::clone(&self.node), after);
        Ok(Response::new(Box::pin(events)))
    }

    type GetEvidenceStream = Stream_<pb::GetEvidenceResponse>;

    async fn get_evidence(
        &self,
        req: Request<pb::GetEvidenceRequest>,
    ) -> Result<Response<Self::GetEvidenceStream>, Status> {
        let req = req.into_inner();
        let id = doc_id("doc_id", &req.doc_id)?;
        let chunks = crate::bundle::get(&self.node, id, req.with_content).await?;
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn list_departments(
        &self,
        _req: Request<pb::ListDepartmentsRequest>,
    ) -> Result<Response<pb::ListDepartmentsResponse>, Status> {
        let dir = self
            .node
            .directory
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let departments = dir.ok_or_else(|| {
            Status::unavailable("the hub has not been reached yet; the directory is not known")
        })?;
        let groups = self
            .node
            .groups
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let (exchange, exchanges) = self.node.linked_exchanges();
        Ok(Response::new(pb::ListDepartmentsResponse {
            departments,
            groups,
            exchange,
            exchanges,
        }))
    }
    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        let out = std::path::PathBuf::from(req.into_inner().out_dir);
        let node = &self.node;
        let summary = crate::backup::take(&node.store, &node.cfg.node.data_dir, &out)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(summary.into()))
    }
}
