//! What the sender's notices do at the recipient: a recall (撤回) moves the inbox entry through
//! `InboxState::recall` and is answered with a signed receipt when it took the document back; a
//! reminder (催办) is counted. Also the check of a delivery's RECIPIENT_ADDED (补发).

use std::sync::Arc;

use exchange_core::{
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    ids::{Address, ExchangeName},
    signing::SignError,
    state::{InboxState, RecallEffect},
    store::StoreError,
    time::{now_ms, now_secs},
};
use exchange_proto::v1 as pb;

use crate::{
    Node,
    error::NodeError,
    store::{self, Event, InboxRecord},
};

/// A recall or reminder from the sender of a document addressed to this node; returns the
/// acknowledgement for the hub. Anything that does not verify is acknowledged and ignored (it
/// can never become valid by retrying).
pub(crate) async fn notice(
    node: &Arc<Node>,
    wire: pb::SignedEvidence,
    origin: Option<ExchangeName>,
) -> Result<pb::Ack, NodeError> {
    // A document of a linked exchange: its sender's signature is checked against that
    // exchange's CA (the hub says which exchange; the inbox record must agree).
    let ev = match SignedEvidence::verify_in(wire, &node.trust, origin.as_ref(), now_secs()) {
        Ok(ev) => ev,
        Err(e) => {
            tracing::warn!(error = %e, "notice that does not verify: ignored");
            return Ok(pb::Ack::default());
        }
    };
    match ev.evidence.kind {
        EvidenceKind::Recall => recall_arrived(node, ev, origin).await,
        EvidenceKind::Reminded => {
            reminded(node, ev, origin).await?;
            Ok(pb::Ack::default())
        }
        kind => {
            tracing::warn!(?kind, "unexpected notice kind: ignored");
            Ok(pb::Ack::default())
        }
    }
}

/// Whether `ev` is about the document of `rec` — the same document (header digest) from the
/// same sender of the same exchange (`origin`): a department cannot recall or remind of another
/// department's document.
fn held(rec: &InboxRecord, ev: &SignedEvidence, origin: Option<&ExchangeName>) -> bool {
    ev.is_about(&rec.doc)
        && ev.evidence.sender == rec.doc.header.sender
        && rec.foreign.as_ref().map(|f| &f.origin) == origin
}

async fn recall_arrived(
    node: &Arc<Node>,
    ev: SignedEvidence,
    origin: Option<ExchangeName>,
) -> Result<pb::Ack, NodeError> {
    let n = Arc::clone(node);
    let id = ev.evidence.doc_id;
    let ((outcome, receipt), seq) = store::change_inbox(&node.store, id, move |rec, fx| {
        let Some(rec) = rec.filter(|r| held(r, &ev, origin.as_ref())) else {
            return Ok((pb::RecallOutcome::NotHeld, None));
        };
        let state = rec.state;
        if state == InboxState::Recalled {
            // A repeated notice (our acknowledgement was lost): the same receipt again.
            return Ok((pb::RecallOutcome::Recalled, rec.recall_handling.clone()));
        }
        let (next, effect) = state.recall();
        let outcome = match effect {
            RecallEffect::Recalled => pb::RecallOutcome::Recalled,
            RecallEffect::AckRequired => pb::RecallOutcome::AckRequired,
            RecallEffect::AlreadyDone => pb::RecallOutcome::AlreadyDone,
        };
        if next == state {
            return Ok((outcome, None));
        }
        let at = now_ms();
        rec.state = next;
        rec.recall = Some(ev.wire.clone());
        let receipt = if effect == RecallEffect::Recalled {
            let me = rec.me(&n.cfg.node.id);
            Some(recalled_receipt(&n, &rec.doc, me, at)?.wire)
        } else {
            None
        };
        rec.recall_handling.clone_from(&receipt);
        fx.event(Event {
            kind: pb::NodeEventKind::Received,
            doc_id: id,
            dept: Some(rec.sender()),
            state: pb::RecipientState::Recalled,
            at_ms: at,
        });
        Ok::<_, NodeError>((outcome, receipt))
    })
    .await?;
    node.event_committed(seq);
    tracing::info!(doc_id = %id, ?outcome, "recalled by the sender");
    Ok(pb::Ack {
        recall: outcome.into(),
        recall_receipt: receipt,
        ..Default::default()
    })
}

/// This node's signed RECALLED: the document left its inbox before 签收.
fn recalled_receipt(
    node: &Node,
    doc: &SignedDoc,
    me: Address,
    at: i64,
) -> Result<SignedEvidence, SignError> {
    let ev = Evidence::about(doc, EvidenceKind::Recalled, Some(me), at);
    SignedEvidence::seal(ev, &node.signer)
}

async fn reminded(
    node: &Arc<Node>,
    ev: SignedEvidence,
    origin: Option<ExchangeName>,
) -> Result<(), StoreError> {
    let id = ev.evidence.doc_id;
    let (counted, _) = store::change_inbox(&node.store, id, move |rec, _| {
        let Some(rec) = rec.filter(|r| held(r, &ev, origin.as_ref())) else {
            return Ok(false);
        };
        if rec.last_reminded_at_ms == ev.evidence.at_ms {
            return Ok(false); // the same reminder pushed again
        }
        rec.reminders += 1;
        rec.last_reminded_at_ms = ev.evidence.at_ms;
        rec.last_reminder_note.clone_from(&ev.evidence.reason);
        Ok::<_, StoreError>(true)
    })
    .await?;
    if counted {
        tracing::info!(doc_id = %id, "reminded by the sender (催办)");
    }
    Ok(())
}

/// Checks a delivery's RECIPIENT_ADDED evidence: signed by the document's sender, about this
/// document, naming this node. Returns the reason to refuse otherwise.
pub(crate) fn check_addition(
    node: &Node,
    doc: &SignedDoc,
    addition: Option<pb::SignedEvidence>,
    origin: Option<&ExchangeName>,
    me: &Address,
) -> Result<pb::SignedEvidence, String> {
    let wire =
        addition.ok_or_else(|| format!("document is not addressed to {}", node.cfg.node.id))?;
    let ev = SignedEvidence::verify_in(wire, &node.trust, origin, now_secs())
        .map_err(|e| format!("addition (补发): {e}"))?;
    if ev.evidence.kind != EvidenceKind::RecipientAdded
        || !ev.is_about(doc)
        || ev.evidence.recipient.as_ref() != Some(me)
    {
        return Err("addition (补发) is not the sender's RECIPIENT_ADDED for this node".into());
    }
    Ok(ev.wire)
}
