//! The hub's answers about a sent document: its acceptance and each recipient's evidence
//! (applied to the recipients' rows through the one delivery state machine), or its refusal.

use exchange_core::{
    document::{EvidenceKind, SignedEvidence},
    ids::DocumentId,
    state::Transition,
    store::{Store, StoreError, kv::WriteTables, queue::QueueKey, sealing::Sealer},
};
use exchange_proto::v1 as pb;

use super::{SentRecord, change_sent, record};
use crate::{
    error::NodeError,
    store::{Effects, Event},
};

impl SentRecord {
    /// Applies evidence about this document to its recipients' rows (all of them for the hub's
    /// acceptance), logging an event for each recipient whose state moves.
    fn apply(&mut self, ev: &SignedEvidence, fx: &mut Effects) -> Result<(), NodeError> {
        let id = ev.evidence.doc_id;
        if self.doc.digest != ev.evidence.header_digest {
            return Err(NodeError::OtherVersion(id));
        }
        let kind = ev.evidence.kind;
        let at = ev.evidence.at_ms;
        // A linked exchange's hub took custody: kept for the evidence bundle, moving no row.
        if kind == EvidenceKind::Relayed {
            if !self.relays.contains(&ev.wire) {
                self.relays.push(ev.wire.clone());
            }
            return Ok(());
        }
        for r in &mut self.recipients {
            if ev.evidence.recipient.as_ref().is_some_and(|d| *d != r.dept) {
                continue; // about another recipient (none named: the acceptance, about all)
            }
            let next = r.state.apply(kind).map_err(|source| NodeError::Delivery {
                id,
                dept: r.dept.clone(),
                source,
            })?;
            match kind {
                EvidenceKind::Accepted => r.accepted_at_ms = at,
                EvidenceKind::Delivered => r.delivered_at_ms = at,
                EvidenceKind::Confirmed => r.confirmed_at_ms = at,
                EvidenceKind::Rejected | EvidenceKind::NotDelivered | EvidenceKind::Refused => {
                    r.rejected_at_ms = at;
                }
                EvidenceKind::Withdrawn
                | EvidenceKind::Recalled
                | EvidenceKind::RecallAcknowledged => r.recall_done_at_ms = at,
                // Our own statements are recorded when made, never pushed back to us.
                EvidenceKind::Recall
                | EvidenceKind::RecipientAdded
                | EvidenceKind::Reminded
                | EvidenceKind::Relayed => {}
            }
            if matches!(
                kind,
                EvidenceKind::Confirmed | EvidenceKind::Rejected | EvidenceKind::NotDelivered
            ) {
                r.clerk.clone_from(&ev.evidence.clerk);
                r.reason.clone_from(&ev.evidence.reason);
            }
            // The same evidence pushed again (our acknowledgement was lost) is kept once.
            if ev.evidence.recipient.is_some() && !r.evidence.contains(&ev.wire) {
                r.evidence.push(ev.wire.clone());
            }
            if let Transition::Changed(s) = next {
                r.state = s;
                fx.event(Event {
                    kind: pb::NodeEventKind::Recipient,
                    doc_id: id,
                    dept: Some(r.dept.clone()),
                    state: s.into(),
                    at_ms: at,
                });
            }
        }
        if kind == EvidenceKind::Accepted {
            self.acceptance = Some(ev.wire.clone());
        }
        Ok(())
    }
}

/// Applies evidence about a sent document to its recipients' timelines (and removes the
/// outbox item `done`, if given, in the same transaction). Returns the new event seq, if any.
pub(crate) async fn apply_evidence(
    store: &Store,
    ev: SignedEvidence,
    done: Option<QueueKey>,
) -> Result<Option<u64>, NodeError> {
    let sealer = store.sealer().clone();
    store
        .write(move |txn| {
            let (rec, fx) = applied(txn, &sealer, &ev, done)?;
            write_applied(txn, &sealer, rec, fx)
        })
        .await
}

/// [`apply_evidence`] for statements that came together (pushed in one batch, or the
/// acceptances of one `SubmitBatch`, each with the outbox item it answers), in one transaction:
/// each is applied, or refused with its error, as if it came alone; a failure of the store
/// itself fails them all. Returns each one's outcome in order, and the seq of the last event
/// logged.
pub(crate) async fn apply_evidence_all(
    store: &Store,
    evs: Vec<(SignedEvidence, Option<QueueKey>)>,
) -> Result<(Vec<Result<(), NodeError>>, Option<u64>), NodeError> {
    let (read, write) = (store.sealer().clone(), store.sealer().clone());
    let outcomes = store
        .write_each(
            evs,
            move |txn, (ev, done)| applied(txn, &read, ev, *done),
            move |txn, _, (rec, fx)| write_applied(txn, &write, rec, fx),
            |e| !e.is_transient(),
        )
        .await?;
    let last = outcomes
        .iter()
        .rev()
        .find_map(|o| o.as_ref().ok().copied().flatten());
    Ok((outcomes.into_iter().map(|o| o.map(|_| ())).collect(), last))
}

/// The sent record that `ev` is about, with `ev` applied, and what goes with it (the removal of
/// the outbox item `done`, if given); reads only, so an error leaves `txn` as it was.
fn applied(
    txn: &dyn WriteTables,
    sealer: &Sealer,
    ev: &SignedEvidence,
    done: Option<QueueKey>,
) -> Result<(SentRecord, Effects), NodeError> {
    let id = ev.evidence.doc_id;
    let mut rec =
        record::read::<SentRecord>(txn, sealer, id)?.ok_or(NodeError::EvidenceForUnknown(id))?;
    let mut fx = Effects::default();
    rec.apply(ev, &mut fx)?;
    if let Some(key) = done {
        fx.done(key);
    }
    Ok((rec, fx))
}

/// Writes a record changed by [`applied`] and its effects; returns the seq of the last event
/// logged.
fn write_applied(
    txn: &dyn WriteTables,
    sealer: &Sealer,
    rec: SentRecord,
    fx: Effects,
) -> Result<Option<u64>, NodeError> {
    record::write(txn, sealer, rec.doc.header.id, rec)?;
    Ok(fx.commit(txn)?)
}

/// Marks a sent document as refused by the hub and drops it from the outbox.
pub(crate) async fn refused(
    store: &Store,
    id: DocumentId,
    reason: String,
    evidence: Option<pb::SignedEvidence>,
    key: QueueKey,
    at_ms: i64,
) -> Result<Option<u64>, StoreError> {
    let ((), seq) = change_sent(store, id, move |rec, fx| {
        if let Some(rec) = rec {
            rec.refused.clone_from(&reason);
            rec.refusal.clone_from(&evidence);
            fx.event(Event {
                kind: pb::NodeEventKind::Recipient,
                doc_id: id,
                dept: None,
                state: pb::RecipientState::Refused,
                at_ms,
            });
        }
        fx.done(key);
        Ok::<_, StoreError>(())
    })
    .await?;
    Ok(seq)
}
