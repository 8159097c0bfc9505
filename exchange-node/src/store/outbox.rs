//! The outbox: what waits to go to the hub — documents to submit, statements (evidence) to
//! send — most urgent first. An item is removed only in the transaction that records the hub's
//! answer to it.

use std::collections::HashSet;

use exchange_core::{
    ids::DocumentId,
    store::{Store, StoreError, decode, encode, kv::WriteTables, queue::QueueKey},
};
use exchange_proto::{store::v1 as st, v1 as pb};

use super::{HUB, OUTBOX};

/// What waits in the outbox.
#[derive(Debug, Clone)]
pub(crate) enum OutboxItem {
    /// Upload and submit this document.
    Submit(DocumentId),
    /// Send this evidence (a clerk's confirmation or rejection, or one of the sender's
    /// statements).
    Evidence(pb::SignedEvidence),
}

/// Queues a document for submission.
pub(super) fn push_submit(
    txn: &dyn WriteTables,
    priority: u8,
    id: DocumentId,
) -> Result<(), StoreError> {
    push(
        txn,
        priority,
        st::queue_item::Item::SubmitDoc(id.to_string()),
    )
}

/// Queues a signed statement.
pub(super) fn push_evidence(
    txn: &dyn WriteTables,
    priority: u8,
    ev: pb::SignedEvidence,
) -> Result<(), StoreError> {
    push(txn, priority, st::queue_item::Item::Evidence(ev))
}

fn push(txn: &dyn WriteTables, priority: u8, item: st::queue_item::Item) -> Result<(), StoreError> {
    let item = st::QueueItem { item: Some(item) };
    OUTBOX.push(txn, HUB, priority, &encode(&item))?;
    Ok(())
}

/// The next `limit` outbox items not in `skip` (those being sent or set aside), most urgent
/// first. An item that cannot be decoded comes back as its error, so that the caller can set it
/// aside and go on with the others.
pub(crate) async fn next_outbox(
    store: &Store,
    limit: usize,
    skip: HashSet<QueueKey>,
) -> Result<Vec<(QueueKey, Result<OutboxItem, StoreError>)>, StoreError> {
    let items = store
        .lookup(move |txn| OUTBOX.peek(txn, HUB, limit, &skip))
        .await?;
    Ok(items
        .into_iter()
        .map(|(key, bytes)| (key, outbox_item(key, &bytes)))
        .collect())
}

fn outbox_item(key: QueueKey, bytes: &[u8]) -> Result<OutboxItem, StoreError> {
    let item: st::QueueItem = decode(format!("outbox {}", key.seq), bytes)?;
    Ok(match item.item {
        Some(st::queue_item::Item::SubmitDoc(id)) => OutboxItem::Submit(
            id.parse()
                .map_err(|e| StoreError::decode("outbox doc id", e))?,
        ),
        Some(st::queue_item::Item::Evidence(e)) => OutboxItem::Evidence(e),
        _ => {
            return Err(StoreError::decode(
                format!("outbox {}", key.seq),
                "unknown item",
            ));
        }
    })
}

/// Removes an outbox item that the hub acknowledged (or refused for good).
pub(crate) async fn outbox_done(store: &Store, key: QueueKey) -> Result<(), StoreError> {
    store.write(move |txn| OUTBOX.remove(txn, HUB, key)).await
}
