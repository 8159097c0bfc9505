//! `std::io` adapters over [`super::chunked`]: an [`EncryptingWriter`] that turns a plaintext
//! stream into an encrypted blob file, and a [`DecryptingReader`] that reads one back from any
//! plaintext offset. Each holds one chunk in memory, whatever the content's size.

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::{
    AtRestError, BlobOpener, BlobSealer, DataKeys,
    chunked::BLOB_HEADER_LEN,
    layout::{CHUNK_OVERHEAD, ChunkPos},
};

/// Encrypts a plaintext stream into `W` (a new blob file): the header at once, then each chunk
/// as soon as it is full, and the last chunk at [`EncryptingWriter::finish`]. A writer dropped
/// without `finish` leaves a file that readers refuse as truncated, never a shorter document.
#[derive(Debug)]
pub struct EncryptingWriter<W: Write> {
    /// Where the encrypted bytes go.
    inner: W,
    /// This blob's key and header.
    sealer: BlobSealer,
    /// The chunk being filled; sealed in place, so at most one chunk and a tag.
    buf: Vec<u8>,
    /// The index of the chunk in `buf`.
    index: u64,
    /// Plaintext bytes accepted so far (including those before a resume point).
    written: u64,
    /// A write of `inner` failed halfway through a chunk: the file is unusable from here.
    failed: bool,
}

impl<W: Write> EncryptingWriter<W> {
    /// Starts a new blob with the default chunk size, writing its header to `inner`.
    pub fn new(keys: &DataKeys, inner: W) -> io::Result<Self> {
        let (header, sealer) = BlobSealer::new(keys)?;
        Self::start(header, sealer, inner)
    }

    /// As [`EncryptingWriter::new`] with `chunk_size` bytes per chunk.
    pub fn with_chunk_size(keys: &DataKeys, chunk_size: u32, inner: W) -> io::Result<Self> {
        let (header, sealer) = BlobSealer::with_chunk_size(keys, chunk_size)?;
        Self::start(header, sealer, inner)
    }

    /// Continues an interrupted blob at `at` (from [`super::ChunkLayout::resume_point`]), with
    /// `sealer` from [`BlobSealer::resume`]; `inner` must be positioned at `at.file_offset`,
    /// the file truncated there, and the plaintext from `at.plaintext_offset` on must be the
    /// same bytes as before the interruption.
    pub fn resume(sealer: BlobSealer, at: ChunkPos, inner: W) -> Self {
        let capacity = sealer.layout().chunk_size() as usize + CHUNK_OVERHEAD as usize;
        EncryptingWriter {
            inner,
            sealer,
            buf: Vec::with_capacity(capacity),
            index: at.index,
            written: at.plaintext_offset,
            failed: false,
        }
    }

    fn start(header: [u8; BLOB_HEADER_LEN], sealer: BlobSealer, mut inner: W) -> io::Result<Self> {
        inner.write_all(&header)?;
        let at = ChunkPos {
            index: 0,
            offset_in_chunk: 0,
            file_offset: BLOB_HEADER_LEN as u64,
            plaintext_offset: 0,
        };
        Ok(Self::resume(sealer, at, inner))
    }

    /// Plaintext bytes accepted so far.
    pub fn plaintext_len(&self) -> u64 {
        self.written
    }

    /// Seals and writes the last chunk, flushes, and returns `W`; fsyncing is the caller's.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_chunk(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    fn write_chunk(&mut self, last: bool) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write of this blob failed"));
        }
        self.failed = true; // until this chunk is fully written
        self.sealer
            .seal_chunk_in_place(self.index, last, &mut self.buf)?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.index += 1;
        self.failed = false;
        Ok(())
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("an earlier write of this blob failed"));
        }
        let size = self.sealer.layout().chunk_size() as usize;
        let n = data.len().min(size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        // Sealed as soon as full, as not last: the last chunk is whatever `finish` finds.
        if self.buf.len() == size {
            self.write_chunk(false)?;
        }
        Ok(n)
    }

    /// Flushes `W`; a partly filled chunk stays buffered (it cannot be sealed before it is full
    /// or known to be the last).
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the plaintext of an encrypted blob from a plaintext offset on. Every chunk is
/// authenticated before any of its bytes are returned; tampering or truncation fails the read
/// with `InvalidData` naming the chunk ([`AtRestError`] inside).
#[derive(Debug)]
pub struct DecryptingReader<R: Read + Seek> {
    /// The encrypted file.
    inner: R,
    /// This blob's key, from its header.
    opener: BlobOpener,
    /// The current chunk: ciphertext read in, plaintext decrypted in place.
    buf: Vec<u8>,
    /// Next plaintext byte of `buf` to return.
    pos: usize,
    /// End of the plaintext in `buf`.
    end: usize,
    /// The chunk to load after `buf`.
    next_index: u64,
    /// Chunks in the file, from its length at open: the last one must authenticate as last.
    chunk_count: u64,
    /// The file's length at open.
    file_len: u64,
    /// The content's length, from the file length.
    plaintext_len: u64,
}

impl<R: Read + Seek> DecryptingReader<R> {
    /// Opens the blob in `inner` (header checked) and positions it at plaintext `offset`; the
    /// chunk holding `offset` is read and authenticated now, earlier chunks never.
    pub fn new(keys: &DataKeys, mut inner: R, offset: u64) -> Result<Self, AtRestError> {
        let file_len = inner.seek(SeekFrom::End(0)).map_err(AtRestError::Io)?;
        inner.seek(SeekFrom::Start(0)).map_err(AtRestError::Io)?;
        let mut header = [0u8; BLOB_HEADER_LEN];
        read_exact(&mut inner, &mut header, || AtRestError::BlobHeaderFormat {
            reason: format!("the file ends inside the {BLOB_HEADER_LEN}-byte header"),
        })?;
        let opener = BlobOpener::from_header(keys, &header)?;
        let layout = opener.layout();
        let chunk_count = layout.chunk_count(file_len)?;
        let plaintext_len = layout.plaintext_len(file_len)?;
        if offset > plaintext_len {
            return Err(AtRestError::OffsetBeyondEnd {
                offset,
                len: plaintext_len,
            });
        }
        // An offset at the very end may lie past the last chunk when that one is full.
        let index = layout.locate(offset).index.min(chunk_count - 1);
        let skip = offset - index * u64::from(layout.chunk_size());
        let capacity = layout.chunk_size() as usize + CHUNK_OVERHEAD as usize;
        let mut reader = DecryptingReader {
            inner,
            opener,
            buf: Vec::with_capacity(capacity),
            pos: 0,
            end: 0,
            next_index: index,
            chunk_count,
            file_len,
            plaintext_len,
        };
        reader
            .inner
            .seek(SeekFrom::Start(layout.chunk_file_offset(index)))
            .map_err(AtRestError::Io)?;
        reader.load_next()?;
        reader.pos = skip as usize; // <= chunk size, checked by the plaintext length above
        Ok(reader)
    }

    /// The content's length (from the file's; confirmed once the last chunk authenticates).
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Returns the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads and authenticates chunk `next_index` into `buf`.
    fn load_next(&mut self) -> Result<(), AtRestError> {
        let index = self.next_index;
        let layout = self.opener.layout();
        let last = index + 1 == self.chunk_count;
        let len = if last {
            self.file_len - layout.chunk_file_offset(index)
        } else {
            u64::from(layout.chunk_size()) + CHUNK_OVERHEAD
        };
        self.buf.resize(len as usize, 0); // <= chunk size + tag (chunk_count checked)
        read_exact(&mut self.inner, &mut self.buf, || {
            AtRestError::ChunkTruncated { index }
        })?;
        let plain = self
            .opener
            .open_chunk_in_place(index, last, &mut self.buf)?;
        self.end = plain.len();
        self.pos = 0;
        self.next_index += 1;
        Ok(())
    }
}

impl<R: Read + Seek> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.end {
            if self.next_index >= self.chunk_count {
                return Ok(0);
            }
            self.load_next()?;
        }
        let n = out.len().min(self.end - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// `read_exact`, with a file that ends early reported as `short()` rather than a bare EOF.
fn read_exact(
    inner: &mut impl Read,
    buf: &mut [u8],
    short: impl FnOnce() -> AtRestError,
) -> Result<(), AtRestError> {
    match inner.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(short()),
        Err(e) => Err(AtRestError::Io(e)),
    }
}

#[cfg(test)]
mod tests;
