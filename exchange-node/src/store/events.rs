//! The event log that `WatchEvents` replays and follows: one row per change a department
//! system may want to react to, numbered by a counter so a follower resumes after the last
//! seq it saw.

use exchange_core::{
    ids::{DeptId, DocumentId},
    store::{Store, StoreError, decode, encode, next_counter},
};
use exchange_proto::{store::v1 as st, v1 as pb};
use redb::WriteTransaction;

use super::EVENTS;

/// One event to log.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// What happened.
    pub(crate) kind: pb::NodeEventKind,
    /// The document it happened to.
    pub(crate) doc_id: DocumentId,
    /// The department concerned (the recipient, or the sender of a received document); none
    /// for a change of the whole document.
    pub(crate) dept: Option<DeptId>,
    /// The recipient's new state, for recipient events.
    pub(crate) state: pb::RecipientState,
    /// When.
    pub(crate) at_ms: i64,
}

/// Appends `e` to the log in `txn`; returns its seq.
pub(super) fn log(txn: &WriteTransaction, e: &Event) -> Result<u64, StoreError> {
    let seq = next_counter(txn, "event_seq")?;
    let rec = st::NodeEventRecord {
        kind: u32::try_from(i32::from(e.kind)).unwrap_or(0),
        doc_id: e.doc_id.to_string(),
        dept: e.dept.as_ref().map(ToString::to_string).unwrap_or_default(),
        state: u32::try_from(i32::from(e.state)).unwrap_or(0),
        at_ms: e.at_ms,
    };
    txn.open_table(EVENTS)?
        .insert(seq, encode(&rec).as_slice())?;
    Ok(seq)
}

/// Events after `after`, at most `limit`.
pub(crate) async fn events_after(
    store: &Store,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, st::NodeEventRecord)>, StoreError> {
    store
        .read(move |txn| {
            let t = match txn.open_table(EVENTS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for e in t.range(after.saturating_add(1)..)?.take(limit) {
                let (k, v) = e?;
                out.push((k.value(), decode(k.value(), v.value())?));
            }
            Ok(out)
        })
        .await
}
