//! [`DbReader`]: a complete blob's plaintext from its chunk rows, one row per read transaction,
//! each chunk authenticated (as the last or not) before any of its bytes are returned.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, ReadBuf};

use crate::{
    atrest::{AtRestError, BlobOpener},
    store::Store,
};

use super::{BLOB_CHUNKS, BlobError, BlobKey, Record};

/// A chunk being fetched and opened.
type Fetch = Pin<Box<dyn Future<Output = Result<Vec<u8>, BlobError>> + Send>>;

/// Reads a blob's plaintext from its rows.
pub(crate) struct DbReader {
    store: Store,
    blob: BlobKey,
    /// Opens the chunks (with keys; `None`: plaintext rows).
    opener: Option<Arc<BlobOpener>>,
    size: u64,
    chunk_size: u64,
    /// How many chunks the blob has (the last may be empty).
    chunks: u64,
    /// The next chunk to fetch.
    next: u64,
    /// Bytes of the next chunk fetched that come before the offset read from.
    skip: usize,
    state: State,
}

enum State {
    /// `buf[pos..]` is plaintext not yet returned.
    Idle { buf: Vec<u8>, pos: usize },
    /// A chunk is being read.
    Fetching(Fetch),
    /// A read failed: nothing more is returned.
    Failed,
}

impl DbReader {
    pub(super) fn new(
        store: Store,
        blob: BlobKey,
        rec: &Record,
        opener: Option<Arc<BlobOpener>>,
        offset: u64,
    ) -> Self {
        let chunk_size = u64::from(rec.chunk_size);
        DbReader {
            store,
            blob,
            opener,
            size: rec.size,
            chunk_size,
            chunks: rec.chunks(),
            next: offset / chunk_size,
            skip: (offset % chunk_size) as usize, // < chunk size, a u32
            state: State::Idle {
                buf: Vec::new(),
                pos: 0,
            },
        }
    }

    /// Reads and opens chunk `index`.
    fn fetch(&self, index: u64) -> Fetch {
        let (store, blob, opener) = (self.store.clone(), self.blob.clone(), self.opener.clone());
        let last = index + 1 == self.chunks;
        let len = if last {
            self.size % self.chunk_size
        } else {
            self.chunk_size
        };
        Box::pin(async move {
            store
                .read(move |txn| {
                    let digest = blob.digest;
                    let Some(stored) = txn.get(BLOB_CHUNKS, &blob.chunk(index))? else {
                        return Err(match opener {
                            Some(_) => {
                                BlobError::at_rest(digest, AtRestError::ChunkTruncated { index })
                            }
                            None => BlobError::Unreadable {
                                digest,
                                reason: format!("chunk {index} is missing"),
                            },
                        });
                    };
                    let plain = match &opener {
                        Some(o) => o
                            .open_chunk(index, last, &stored)
                            .map_err(|e| BlobError::at_rest(digest, e))?,
                        None => stored,
                    };
                    if plain.len() as u64 != len {
                        return Err(BlobError::Unreadable {
                            digest,
                            reason: format!("chunk {index} holds {} bytes, not {len}", plain.len()),
                        });
                    }
                    Ok(plain)
                })
                .await
        })
    }
}

impl AsyncRead for DbReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.state, State::Failed) {
                State::Idle { buf, pos } => {
                    if pos < buf.len() || out.remaining() == 0 || this.next >= this.chunks {
                        let n = out.remaining().min(buf.len() - pos);
                        out.put_slice(&buf[pos..pos + n]);
                        this.state = State::Idle { buf, pos: pos + n };
                        return Poll::Ready(Ok(())); // nothing put: the end
                    }
                    this.state = State::Fetching(this.fetch(this.next));
                }
                State::Fetching(mut job) => match job.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = State::Fetching(job);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(buf)) => {
                        this.next += 1;
                        let pos = std::mem::take(&mut this.skip).min(buf.len());
                        this.state = State::Idle { buf, pos };
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(into_io(e))),
                },
                State::Failed => {
                    let d = this.blob.digest;
                    return Poll::Ready(Err(io::Error::other(format!(
                        "an earlier read of content {d} failed"
                    ))));
                }
            }
        }
    }
}

/// Damage becomes `InvalidData` holding the [`BlobError`] (naming the blob and the chunk), so
/// that callers refuse it and never pass altered bytes on; anything else (the database is
/// unreachable) is passed on as other errors are.
fn into_io(e: BlobError) -> io::Error {
    match e {
        BlobError::Io(e) => e,
        e if e.is_damage() => io::Error::new(io::ErrorKind::InvalidData, e),
        e => io::Error::other(e),
    }
}
