//! The sender's view of what it sent: one `DocumentStatus` per document, for `GetStatus`
//! (`exchange-node status ID`) and `ListSent` (`exchange-node outbox`). Built from the `sent`
//! record at read time, so both commands always agree.
//!
//! Replies (答复) are found by reading the inbox for documents whose signed `in_reply_to` names
//! the sent document: the inbox is the index, read once per call. That is a scan of every
//! received document; at a department's volume (hundreds a year) it costs less than keeping a
//! second table in step with the inbox.

use std::collections::HashMap;

use exchange_core::{error::ServiceError, ids::DocumentId, time::now_ms};
use exchange_proto::v1 as pb;

use crate::{
    Node,
    api::{inbox_entry, is_past, recipient_status, sign_due_ms},
    store::{self, SentRecord},
};

/// The status of one sent record, with the replies received to it.
pub(crate) fn of_record(
    node: &Node,
    rec: &SentRecord,
    replies: Vec<pb::InboxEntry>,
) -> pb::DocumentStatus {
    let now = now_ms();
    let doc = &rec.doc;
    let refused = !rec.refused.is_empty();
    let recall = rec
        .recall
        .clone()
        .and_then(|r| exchange_core::document::SignedEvidence::decode(r).ok());
    let recipients = rec
        .recipients
        .iter()
        .map(|r| {
            let mut s = recipient_status(r, rec.queued_at_ms);
            if refused {
                s.state = pb::RecipientState::Refused.into();
            }
            s.sign_due_ms = sign_due_ms(&node.cfg, doc.header.urgency, s.delivered_at_ms);
            s.overdue = s.state() == pb::RecipientState::Delivered && is_past(s.sign_due_ms, now);
            s
        })
        .collect();
    pb::DocumentStatus {
        doc_id: doc.header.id.to_string(),
        title: doc.header.title.clone(),
        urgency: pb::Urgency::from(doc.header.urgency).into(),
        created_at_ms: doc.header.created_at_ms,
        recipients,
        refused: rec.refused.clone(),
        replies,
        recalled_at_ms: recall.as_ref().map_or(0, |r| r.evidence.at_ms),
        recall_reason: recall.map(|r| r.evidence.reason).unwrap_or_default(),
        forwarded_from: doc.header.metadata.forwarded_from.clone(),
        hub_refused: rec.hub_refused.clone(),
    }
}

/// Received documents that answer another document, by the id they answer; oldest first.
async fn replies_by_original(
    node: &Node,
) -> Result<HashMap<String, Vec<pb::InboxEntry>>, ServiceError> {
    let mut by: HashMap<String, Vec<pb::InboxEntry>> = HashMap::new();
    for rec in store::inbox(&node.store).await? {
        let original = &rec.doc.header.metadata.in_reply_to;
        if !original.is_empty() {
            by.entry(original.clone())
                .or_default()
                .push(inbox_entry(node, &rec));
        }
    }
    for list in by.values_mut() {
        list.sort_by_key(|e| e.received_at_ms);
    }
    Ok(by)
}

/// The status of document `id`, which this department must have sent.
pub(crate) async fn of(node: &Node, id: DocumentId) -> Result<pb::DocumentStatus, ServiceError> {
    let rec = store::sent(&node.store, id).await?;
    let rec = rec.ok_or_else(|| {
        ServiceError::not_found(format!("no document {id} was sent by this department"))
    })?;
    let replies = replies_by_original(node)
        .await?
        .remove(&id.to_string())
        .unwrap_or_default();
    Ok(of_record(node, &rec, replies))
}

/// Every sent document, newest first.
pub(crate) async fn all(node: &Node) -> Result<Vec<pb::DocumentStatus>, ServiceError> {
    let recs = store::all_sent(&node.store).await?;
    let mut replies = replies_by_original(node).await?;
    let mut out = Vec::with_capacity(recs.len());
    for rec in &recs {
        let id = rec.doc.header.id.to_string();
        out.push(of_record(
            node,
            rec,
            replies.remove(&id).unwrap_or_default(),
        ));
    }
    out.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then(b.doc_id.cmp(&a.doc_id))
    });
    Ok(out)
}
