//! The outbound queue: what the hub still has to push to each department, most urgent first,
//! until the department acknowledges it. Items are typed ([`Outbound`]) here and nowhere else.

use std::collections::HashSet;

use exchange_core::{
    ids::{DeptId, DocumentId},
    store::{Store, StoreError, decode, encode, kv::WriteTables, queue::QueueKey},
};
use exchange_proto::{store::v1 as st, v1 as pb};

use super::{
    OUTBOUND, StepError,
    push::{PushView, push_view_in},
};
use crate::lease::Fence;

/// What the hub pushes next to a department.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// A document to deliver.
    Deliver(DocumentId),
    /// Evidence about a document the department sent.
    Evidence(pb::SignedEvidence),
    /// The sender's recall or reminder about a document addressed to the department.
    Notice(pb::SignedEvidence),
}

impl Outbound {
    /// The stored bytes of the queue item.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let item = match self {
            Outbound::Deliver(id) => st::queue_item::Item::DeliverDoc(id.to_string()),
            Outbound::Evidence(e) => st::queue_item::Item::Evidence(e.clone()),
            Outbound::Notice(e) => st::queue_item::Item::Notice(e.clone()),
        };
        encode(&st::QueueItem { item: Some(item) })
    }

    /// Decodes a queue item; `what` names it in the error.
    pub(crate) fn decode(what: impl std::fmt::Display, bytes: &[u8]) -> Result<Self, StoreError> {
        let what = format!("outbound {what}");
        let item: st::QueueItem = decode(&what, bytes)?;
        match item.item {
            Some(st::queue_item::Item::DeliverDoc(id)) => id
                .parse()
                .map(Outbound::Deliver)
                .map_err(|e| StoreError::decode(&what, e)),
            Some(st::queue_item::Item::Evidence(e)) => Ok(Outbound::Evidence(e)),
            Some(st::queue_item::Item::Notice(e)) => Ok(Outbound::Notice(e)),
            _ => Err(StoreError::decode(what, "unknown item")),
        }
    }
}

/// A queue item taken to be pushed, removed once its effect is committed: only while the
/// pushing hub still holds the department's lease ([`Fence`]).
#[derive(Debug, Clone)]
pub(crate) struct Taken {
    /// The department whose queue holds it.
    pub(crate) dept: DeptId,
    /// Its place in that queue.
    pub(crate) key: QueueKey,
    /// The pusher's lease.
    pub(crate) fence: Fence,
}

impl Taken {
    /// Removes the item inside `txn`, if the fence still holds.
    pub(crate) fn remove(&self, txn: &dyn WriteTables) -> Result<(), StepError> {
        self.fence.check(txn, &self.dept)?;
        OUTBOUND.remove(txn, self.dept.as_str(), self.key)?;
        Ok(())
    }
}

/// Removes an acknowledged queue item.
pub(crate) async fn ack(store: &Store, taken: Taken) -> Result<(), StepError> {
    store.write(move |txn| taken.remove(txn)).await
}

/// A queued item as the push loop takes it.
pub(crate) struct Next {
    /// Where it sits in the queue.
    pub(crate) key: QueueKey,
    /// The item, or why it does not decode.
    pub(crate) item: Result<Outbound, StoreError>,
    /// For a delivery, what pushing it needs ([`PushView`]), read in the same snapshot as the
    /// item, or why it could not be read.
    pub(crate) view: Option<Result<Option<PushView>, StoreError>>,
}

/// The `limit` most urgent items waiting for department `dest` that are not in `skip` (pushed
/// and not finished, or set aside), with what pushing each needs: the push loop refills its
/// window with one read, not one per item (on PostgreSQL every read is a round trip).
pub(crate) async fn next_outbound(
    store: &Store,
    dest: DeptId,
    skip: HashSet<QueueKey>,
    limit: usize,
) -> Result<Vec<Next>, StoreError> {
    let sealer = store.sealer().clone();
    store
        .lookup(move |txn| {
            let items = OUTBOUND.peek(txn, dest.as_str(), limit, &skip)?;
            Ok(items
                .into_iter()
                .map(|(key, bytes)| {
                    let item = Outbound::decode(key.seq, &bytes);
                    let view = match &item {
                        Ok(Outbound::Deliver(id)) => Some(push_view_in(txn, &sealer, *id, &dest)),
                        _ => None,
                    };
                    Next { key, item, view }
                })
                .collect())
        })
        .await
}

/// Every delivery still queued at the hub: (recipient, queue key, document).
pub(crate) async fn queued_deliveries(
    store: &Store,
) -> Result<Vec<(DeptId, QueueKey, DocumentId)>, StoreError> {
    let items = store.read(|txn| OUTBOUND.all(txn)).await?;
    let mut out = Vec::new();
    for (dest, key, bytes) in items {
        if let Outbound::Deliver(id) = Outbound::decode(key.seq, &bytes)? {
            let dept = dest.parse().map_err(|e| StoreError::decode(&dest, e))?;
            out.push((dept, key, id));
        }
    }
    Ok(out)
}
