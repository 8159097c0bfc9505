//! [`BlobReader`]: a complete blob's plaintext as an [`AsyncRead`], whichever format it is
//! stored in, in constant memory.

use std::{
    fs::File,
    future::Future,
    io::{self, Read},
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, ReadBuf},
    task::JoinHandle,
};

use crate::{
    atrest::{AtRestError, DecryptingReader},
    signing::Digest,
};

use super::{BlobError, chunk_for};

/// A blob file opened (and positioned) by a blocking job, before it becomes a [`BlobReader`].
pub(super) enum Opened {
    /// A plaintext file, at the offset.
    Plain(File),
    /// An encrypted blob whose header and first chunk have authenticated.
    Sealed(Box<DecryptingReader<File>>),
}

/// Reads the plaintext of a complete blob from the offset given to
/// [`super::BlobStore::open_read`].
///
/// An encrypted blob is decrypted on the blocking pool, up to [`super::CHUNK_SIZE`] of plaintext
/// per job (a few at-rest chunks: one job per network message), so memory is that buffer and one
/// chunk whatever the size. A chunk that does not authenticate fails the read with an
/// `InvalidData` error holding [`BlobError::Corrupt`] (naming the blob and the chunk); no byte of
/// it is returned, and every later read fails too.
pub struct BlobReader {
    digest: Digest,
    inner: Inner,
}

enum Inner {
    Plain(tokio::fs::File),
    /// Rows of the database ([`super::database`]).
    Database(Box<super::DbReader>),
    Sealed {
        /// Plaintext bytes per blocking read.
        batch: usize,
        state: State,
    },
}

/// Result of one blocking read: the reader and buffer back, and how many bytes it filled.
type Job = JoinHandle<(Box<DecryptingReader<File>>, Vec<u8>, io::Result<usize>)>;

enum State {
    /// `buf[pos..]` is plaintext not yet returned.
    Idle {
        reader: Box<DecryptingReader<File>>,
        buf: Vec<u8>,
        pos: usize,
    },
    /// A batch is being decrypted on the blocking pool.
    Reading(Job),
    /// The end of the content.
    Done,
    /// A read failed: nothing more is returned.
    Failed,
}

impl BlobReader {
    pub(super) fn new(digest: Digest, opened: Opened) -> Self {
        let inner = match opened {
            Opened::Plain(f) => Inner::Plain(tokio::fs::File::from_std(f)),
            Opened::Sealed(reader) => {
                // Sized to the content left: a small blob needs no 256 KiB buffer.
                let batch = chunk_for(reader.plaintext_len()).max(1);
                Inner::Sealed {
                    batch,
                    state: State::Idle {
                        reader,
                        buf: Vec::new(),
                        pos: 0,
                    },
                }
            }
        };
        BlobReader { digest, inner }
    }

    pub(super) fn database(digest: Digest, reader: super::DbReader) -> Self {
        BlobReader {
            digest,
            inner: Inner::Database(Box::new(reader)),
        }
    }
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("digest", &self.digest)
            .field("sealed", &matches!(self.inner, Inner::Sealed { .. }))
            .field("database", &matches!(self.inner, Inner::Database(_)))
            .finish_non_exhaustive()
    }
}

impl AsyncRead for BlobReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let digest = this.digest;
        let (batch, state) = match &mut this.inner {
            Inner::Plain(f) => return Pin::new(f).poll_read(cx, out),
            Inner::Database(r) => return Pin::new(r.as_mut()).poll_read(cx, out),
            Inner::Sealed { batch, state } => (*batch, state),
        };
        loop {
            match std::mem::replace(state, State::Failed) {
                State::Idle { reader, buf, pos } => {
                    if pos < buf.len() || out.remaining() == 0 {
                        let n = out.remaining().min(buf.len() - pos);
                        out.put_slice(&buf[pos..pos + n]);
                        *state = State::Idle {
                            reader,
                            buf,
                            pos: pos + n,
                        };
                        return Poll::Ready(Ok(()));
                    }
                    *state = State::Reading(read_batch(reader, buf, batch));
                }
                State::Reading(mut job) => match Pin::new(&mut job).poll(cx) {
                    Poll::Pending => {
                        *state = State::Reading(job);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok((reader, buf, Ok(n)))) => {
                        *state = if n == 0 {
                            State::Done
                        } else {
                            State::Idle {
                                reader,
                                buf,
                                pos: 0,
                            }
                        };
                    }
                    Poll::Ready(Ok((_, _, Err(e)))) => return Poll::Ready(Err(named(digest, e))),
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(io::Error::other(format!(
                            "reading content {digest}: blob task failed: {e}"
                        ))));
                    }
                },
                State::Done => {
                    *state = State::Done;
                    return Poll::Ready(Ok(()));
                }
                State::Failed => {
                    return Poll::Ready(Err(io::Error::other(format!(
                        "an earlier read of content {digest} failed"
                    ))));
                }
            }
        }
    }
}

/// Decrypts up to `batch` plaintext bytes into `buf` (reused) on the blocking pool.
fn read_batch(mut reader: Box<DecryptingReader<File>>, mut buf: Vec<u8>, batch: usize) -> Job {
    tokio::task::spawn_blocking(move || {
        buf.resize(batch, 0);
        let mut n = 0;
        let r = loop {
            if n == buf.len() {
                break Ok(n);
            }
            match reader.read(&mut buf[n..]) {
                Ok(0) => break Ok(n),
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // Bytes of a batch that failed are never returned: a chunk is all or nothing.
        buf.truncate(if r.is_ok() { n } else { 0 });
        (reader, buf, r)
    })
}

/// An error of the at-rest reader, with the blob named: damage becomes [`BlobError::Corrupt`]
/// (still `InvalidData`, so callers refuse it); anything else (a disk error) is passed on.
fn named(digest: Digest, e: io::Error) -> io::Error {
    if e.kind() != io::ErrorKind::InvalidData || !e.get_ref().is_some_and(|i| i.is::<AtRestError>())
    {
        return e;
    }
    match e.into_inner().map(|i| i.downcast::<AtRestError>()) {
        Some(Ok(source)) => io::Error::new(
            io::ErrorKind::InvalidData,
            BlobError::Corrupt { digest, source },
        ),
        Some(Err(other)) => io::Error::new(io::ErrorKind::InvalidData, other),
        None => io::Error::from(io::ErrorKind::InvalidData),
    }
}
