//! The API's server streams: a received document followed by its content (`FetchDocument`),
//! and the event log, replayed then followed (`WatchEvents`). Each runs in its own task and
//! ends when the caller goes away (or the node shuts down).

use std::sync::Arc;

use exchange_core::{
    blob::{BlobStore, CHUNK_SIZE},
    document::PartInfo,
    error::ServiceError,
    ids::DocumentId,
    store::Store,
};
use exchange_proto::v1 as pb;
use tokio::{io::AsyncReadExt, sync::mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::{Node, store};

/// `first`, then the bytes of each of `parts` in order, read from wherever they are.
pub(super) fn document(
    store: Store,
    blobs: BlobStore,
    id: DocumentId,
    first: pb::ReceivedDocument,
    parts: Vec<PartInfo>,
) -> ReceiverStream<Result<pb::FetchDocumentResponse, Status>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let first = pb::FetchDocumentResponse {
            msg: Some(pb::fetch_document_response::Msg::Document(first)),
        };
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        for (i, p) in parts.iter().enumerate() {
            let unreadable = |e: &dyn std::fmt::Display| {
                Err(Status::unavailable(format!("reading {}: {e}", p.name)))
            };
            let mut file = match crate::content::open(&store, &blobs, id, &p.sha256, 0).await {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.send(unreadable(&e)).await;
                    return;
                }
            };
            let mut buf = vec![0u8; CHUNK_SIZE];
            loop {
                let n = match file.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(unreadable(&e)).await;
                        return;
                    }
                };
                let chunk = pb::PartChunk {
                    part: u32::try_from(i).unwrap_or(u32::MAX),
                    data: buf[..n].to_vec(),
                };
                let msg = pb::FetchDocumentResponse {
                    msg: Some(pb::fetch_document_response::Msg::Chunk(chunk)),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Every event after `after`, then each new one as it is committed.
pub(super) fn events(
    node: Arc<Node>,
    mut after: u64,
) -> ReceiverStream<Result<pb::NodeEvent, Status>> {
    let mut latest = node.events.subscribe();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            latest.borrow_and_update();
            let batch = match store::events_after(&node.store, after, 256).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(Status::from(ServiceError::from(e)))).await;
                    return;
                }
            };
            for (seq, e) in &batch {
                let ev = pb::NodeEvent {
                    seq: *seq,
                    kind: i32::try_from(e.kind).unwrap_or(0),
                    doc_id: e.doc_id.clone(),
                    dept: e.dept.clone(),
                    state: i32::try_from(e.state).unwrap_or(0),
                    at_ms: e.at_ms,
                };
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
                after = *seq;
            }
            if batch.is_empty() {
                tokio::select! {
                    r = latest.changed() => if r.is_err() { return },
                    () = tx.closed() => return,
                    () = node.shutdown.cancelled() => return,
                }
            }
        }
    });
    ReceiverStream::new(rx)
}
