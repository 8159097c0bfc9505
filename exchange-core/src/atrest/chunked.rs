//! Large content in authenticated chunks: pure, I/O-agnostic building blocks (a header, then
//! each chunk sealed on its own) from which the file reader and writer in [`super::stream`], or
//! an async store, are built. Memory is one chunk whatever the content's size. The byte layout
//! is in [`super`].

use super::{
    AtRestError, DataKeys, Suite,
    keys::SALT_LEN,
    layout::{CHUNK_OVERHEAD, ChunkLayout},
    suite::{AeadKey, NONCE_LEN, TAG_LEN},
};

/// Marks an encrypted blob (first byte 0xF7 as for values; "EXB" for blob).
pub const BLOB_MAGIC: [u8; 4] = [0xF7, b'E', b'X', b'B'];
/// HKDF info of blob keys (distinct from values').
const INFO: &[u8] = b"exchange at-rest blob v1";
/// magic | format byte (the suite) | key id | chunk size | salt: the part the header tag covers.
const HEADER_BODY_LEN: usize = BLOB_MAGIC.len() + 1 + 4 + 4 + SALT_LEN;
/// Length of a blob header: its body and the header tag.
pub const BLOB_HEADER_LEN: usize = HEADER_BODY_LEN + TAG_LEN;
/// Chunk size of new blobs: 64 KiB keeps the tag overhead at 0.02% and a reader's memory small.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Largest chunk size a header may declare, so a forged header cannot make a reader allocate
/// gigabytes.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

/// First nonce byte of a non-last chunk, the last chunk, and the header tag: a chunk sealed as
/// one kind never opens as another.
const NOT_LAST: u8 = 0;
const LAST: u8 = 1;
const HEADER: u8 = 2;

/// The per-blob key and the header it is bound to, shared by sealer and opener.
struct BlobKey {
    /// The suite's key from HKDF(DEK, header salt): this blob's alone.
    key: AeadKey,
    /// The whole header, the AAD of every chunk.
    header: [u8; BLOB_HEADER_LEN],
    /// From the header's chunk size.
    layout: ChunkLayout,
}

/// Seals the chunks of one new blob. Obtained with its header from [`BlobSealer::new`], or for
/// a resumed write from [`BlobSealer::resume`].
pub struct BlobSealer(BlobKey);

/// Opens the chunks of one blob, once its header has authenticated.
pub struct BlobOpener(BlobKey);

impl BlobSealer {
    /// A sealer for a new blob with [`DEFAULT_CHUNK_SIZE`], and the header to write first.
    /// Fails only when the random source or the cipher library fails.
    pub fn new(keys: &DataKeys) -> Result<([u8; BLOB_HEADER_LEN], BlobSealer), AtRestError> {
        Self::with_chunk_size(keys, DEFAULT_CHUNK_SIZE)
    }

    /// As [`BlobSealer::new`], with `chunk_size` plaintext bytes per chunk (1 to
    /// [`MAX_CHUNK_SIZE`]).
    pub fn with_chunk_size(
        keys: &DataKeys,
        chunk_size: u32,
    ) -> Result<([u8; BLOB_HEADER_LEN], BlobSealer), AtRestError> {
        check_chunk_size(chunk_size)?;
        let suite = keys.suite();
        let (id, dek) = keys.current()?;
        let salt: [u8; SALT_LEN] = suite.random()?;
        let mut header = [0u8; BLOB_HEADER_LEN];
        header[..4].copy_from_slice(&BLOB_MAGIC);
        header[4] = suite.format_byte();
        header[5..9].copy_from_slice(&id.to_be_bytes());
        header[9..13].copy_from_slice(&chunk_size.to_be_bytes());
        header[13..HEADER_BODY_LEN].copy_from_slice(&salt);
        let key = suite.derive(&dek.0, &salt, INFO)?;
        let tag = key.seal(nonce(HEADER, 0), &header[..HEADER_BODY_LEN], &mut [])?;
        header[HEADER_BODY_LEN..].copy_from_slice(&tag);
        let layout = ChunkLayout::new(chunk_size);
        Ok((
            header,
            BlobSealer(BlobKey {
                key,
                header,
                layout,
            }),
        ))
    }

    /// A sealer continuing the blob whose (authenticating) header is `header`, for a writer
    /// resumed at [`ChunkLayout::resume_point`].
    pub fn resume(keys: &DataKeys, header: &[u8]) -> Result<BlobSealer, AtRestError> {
        BlobKey::from_header(keys, header).map(BlobSealer)
    }

    /// The header, as written at the start of the file.
    pub fn header(&self) -> &[u8; BLOB_HEADER_LEN] {
        &self.0.header
    }

    /// The blob's geometry.
    pub fn layout(&self) -> ChunkLayout {
        self.0.layout
    }

    /// Seals chunk `index`: a non-last chunk holds exactly the chunk size, the last one 0 to
    /// that many bytes. Returns ciphertext and tag (`plaintext.len() + 16` bytes).
    pub fn seal_chunk(
        &self,
        index: u64,
        last: bool,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, AtRestError> {
        let mut buf = Vec::with_capacity(plaintext.len() + CHUNK_OVERHEAD as usize);
        buf.extend_from_slice(plaintext);
        self.seal_chunk_in_place(index, last, &mut buf)?;
        Ok(buf)
    }

    /// [`BlobSealer::seal_chunk`] in `buf` (plaintext in, ciphertext and tag out), for writers
    /// that reuse one buffer.
    pub(super) fn seal_chunk_in_place(
        &self,
        index: u64,
        last: bool,
        buf: &mut Vec<u8>,
    ) -> Result<(), AtRestError> {
        let chunk_size = self.0.layout.chunk_size();
        let size = chunk_size as usize;
        if buf.len() > size || (!last && buf.len() != size) {
            return Err(AtRestError::ChunkLength {
                index,
                len: buf.len(),
                chunk_size,
            });
        }
        let flag = if last { LAST } else { NOT_LAST };
        self.0
            .key
            .seal_append(nonce(flag, index), &self.0.header, buf)
    }
}

impl BlobOpener {
    /// Checks the header (at least [`BLOB_HEADER_LEN`] bytes; more are ignored) and derives the
    /// blob's key. A header that was altered, or is another store's, does not authenticate.
    pub fn from_header(keys: &DataKeys, header: &[u8]) -> Result<BlobOpener, AtRestError> {
        BlobKey::from_header(keys, header).map(BlobOpener)
    }

    /// The blob's geometry, from its header.
    pub fn layout(&self) -> ChunkLayout {
        self.0.layout
    }

    /// Opens chunk `index` (ciphertext and tag), which the caller expects to be the last or
    /// not: a chunk that was altered, moved, or whose last-ness differs (the file was truncated
    /// or extended) fails as "chunk N does not authenticate".
    pub fn open_chunk(
        &self,
        index: u64,
        last: bool,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, AtRestError> {
        let mut buf = ciphertext.to_vec();
        let len = self.open_chunk_in_place(index, last, &mut buf)?.len();
        buf.truncate(len);
        Ok(buf)
    }

    /// [`BlobOpener::open_chunk`] in place; returns the plaintext part of `buf`.
    pub(super) fn open_chunk_in_place<'b>(
        &self,
        index: u64,
        last: bool,
        buf: &'b mut [u8],
    ) -> Result<&'b mut [u8], AtRestError> {
        let max = self.0.layout.chunk_size() as usize + CHUNK_OVERHEAD as usize;
        if buf.len() > max || buf.len() < CHUNK_OVERHEAD as usize {
            return Err(AtRestError::ChunkNotAuthentic { index });
        }
        let flag = if last { LAST } else { NOT_LAST };
        self.0
            .key
            .open(nonce(flag, index), &self.0.header, buf)
            .map_err(|e| e.or(AtRestError::ChunkNotAuthentic { index }))
    }
}

impl BlobKey {
    fn from_header(keys: &DataKeys, header: &[u8]) -> Result<BlobKey, AtRestError> {
        let malformed = |reason: String| AtRestError::BlobHeaderFormat { reason };
        let Some(header) = header.get(..BLOB_HEADER_LEN) else {
            return Err(malformed(format!("shorter than {BLOB_HEADER_LEN} bytes")));
        };
        if !header.starts_with(&BLOB_MAGIC) {
            return Err(malformed("not an encrypted blob (no marker)".into()));
        }
        let Some(suite) = Suite::from_format_byte(header[4]) else {
            let v = header[4];
            return Err(malformed(format!("unknown version {v} (a newer build's?)")));
        };
        if suite != keys.suite() {
            return Err(AtRestError::SuiteMismatch {
                what: "encrypted blob",
                found: suite,
                expected: keys.suite(),
            });
        }
        let id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let chunk_size = u32::from_be_bytes([header[9], header[10], header[11], header[12]]);
        check_chunk_size(chunk_size)?;
        let key = suite.derive(&keys.get(id)?.0, &header[13..HEADER_BODY_LEN], INFO)?;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&header[HEADER_BODY_LEN..]);
        key.open(nonce(HEADER, 0), &header[..HEADER_BODY_LEN], &mut tag)
            .map_err(|e| e.or(AtRestError::BlobHeaderNotAuthentic))?;
        let mut copy = [0u8; BLOB_HEADER_LEN];
        copy.copy_from_slice(header);
        Ok(BlobKey {
            key,
            header: copy,
            layout: ChunkLayout::new(chunk_size),
        })
    }
}

/// Whether `prefix` starts like an encrypted blob. Unlike values, plaintext content is
/// arbitrary bytes and may start like this too: see [`super`] before sniffing content files.
pub fn is_sealed_blob(prefix: &[u8]) -> bool {
    prefix.starts_with(&BLOB_MAGIC)
}

fn check_chunk_size(chunk_size: u32) -> Result<(), AtRestError> {
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return Err(AtRestError::BlobHeaderFormat {
            reason: format!("chunk size {chunk_size} is not between 1 and {MAX_CHUNK_SIZE}"),
        });
    }
    Ok(())
}

/// The nonce of a chunk or of the header tag: kind, three zero bytes, the index (big-endian).
/// Unique per (kind, index) under a blob key that encrypts one blob only.
fn nonce(kind: u8, index: u64) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[0] = kind;
    n[4..].copy_from_slice(&index.to_be_bytes());
    n
}

impl std::fmt::Debug for BlobSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSealer")
            .field("suite", &self.0.key.suite())
            .field("layout", &self.0.layout)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for BlobOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobOpener")
            .field("suite", &self.0.key.suite())
            .field("layout", &self.0.layout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
