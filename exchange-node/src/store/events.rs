//! The event log that `WatchEvents` replays and follows: one row per change a department
//! system may want to react to, numbered by a counter so a follower resumes after the last
//! seq it saw.

use std::ops::Bound;

use exchange_core::{
    ids::{Address, DocumentId},
    store::{
        Store, StoreError, decode, encode,
        kv::{KeyRange, Order, WriteTables},
        next_counter,
    },
};
use exchange_proto::{store::v1 as st, v1 as pb};

use super::EVENTS;

/// The counter that numbers events (kept in `meta` in schema 1, moved by [`super::upgrade`]).
pub(super) const EVENT_SEQ: &str = "event_seq";

/// The key of event `seq`: big-endian, so that byte order is seq order.
pub(super) fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// One event to log.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// What happened.
    pub(crate) kind: pb::NodeEventKind,
    /// The document it happened to.
    pub(crate) doc_id: DocumentId,
    /// The department concerned (the recipient, or the sender of a received document); none
    /// for a change of the whole document.
    pub(crate) dept: Option<Address>,
    /// The recipient's new state, for recipient events.
    pub(crate) state: pb::RecipientState,
    /// When.
    pub(crate) at_ms: i64,
}

/// Appends `e` to the log in `txn`; returns its seq.
pub(super) fn log(txn: &dyn WriteTables, e: &Event) -> Result<u64, StoreError> {
    let seq = next_counter(txn, EVENT_SEQ)?;
    let rec = st::NodeEventRecord {
        kind: u32::try_from(i32::from(e.kind)).unwrap_or(0),
        doc_id: e.doc_id.to_string(),
        dept: e.dept.as_ref().map(ToString::to_string).unwrap_or_default(),
        state: u32::try_from(i32::from(e.state)).unwrap_or(0),
        at_ms: e.at_ms,
    };
    txn.put(EVENTS, &key(seq), &encode(&rec))?;
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
            let range = KeyRange {
                start: Bound::Excluded(key(after).to_vec()),
                end: Bound::Unbounded,
            };
            txn.scan(EVENTS, &range, Order::Ascending, limit)?
                .into_iter()
                .map(|(k, v)| {
                    let seq = <[u8; 8]>::try_from(k.as_slice())
                        .map(u64::from_be_bytes)
                        .map_err(|_| StoreError::decode("event key", "not 8 bytes"))?;
                    Ok((seq, decode(seq, &v)?))
                })
                .collect()
        })
        .await
}
