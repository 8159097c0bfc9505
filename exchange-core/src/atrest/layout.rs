//! Where things are in an encrypted blob file: pure arithmetic from the chunk size, so that a
//! reader can start at a plaintext offset, a resumed writer can continue after the last complete
//! chunk, and a store can tell a file's plaintext length, all without reading a byte.

use super::{AtRestError, chunked::BLOB_HEADER_LEN};

/// Bytes each chunk adds to its plaintext (the GCM tag, under both suites).
pub const CHUNK_OVERHEAD: u64 = 16;

/// The geometry of one encrypted blob, from its header's chunk size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    /// Plaintext bytes per chunk (the last chunk holds 0 to this many).
    chunk_size: u32,
}

/// A position in an encrypted blob: which chunk, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPos {
    /// The chunk's index (0-based): its nonce.
    pub index: u64,
    /// Offset within the chunk's plaintext.
    pub offset_in_chunk: u32,
    /// Offset in the file where the chunk's ciphertext starts.
    pub file_offset: u64,
    /// Offset in the plaintext of this position (`index * chunk_size + offset_in_chunk`).
    pub plaintext_offset: u64,
}

impl ChunkLayout {
    /// The layout for `chunk_size` (checked by the header code: 1 to 16 MiB).
    pub(super) fn new(chunk_size: u32) -> Self {
        ChunkLayout { chunk_size }
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Length of a full chunk in the file.
    fn stride(&self) -> u64 {
        u64::from(self.chunk_size) + CHUNK_OVERHEAD
    }

    /// File offset of chunk `index` (after the header and `index` full chunks).
    pub fn chunk_file_offset(&self, index: u64) -> u64 {
        BLOB_HEADER_LEN as u64 + index.saturating_mul(self.stride())
    }

    /// The chunk holding plaintext byte `offset`, and where it starts in the file. An offset at
    /// a chunk boundary names the start of the next chunk.
    pub fn locate(&self, offset: u64) -> ChunkPos {
        let size = u64::from(self.chunk_size);
        let index = offset / size;
        ChunkPos {
            index,
            offset_in_chunk: (offset % size) as u32, // < chunk_size, a u32
            file_offset: self.chunk_file_offset(index),
            plaintext_offset: offset,
        }
    }

    /// Length of the file [`super::EncryptingWriter`] writes for `plaintext_len` bytes: full
    /// chunks, then a last chunk holding the rest (empty when the length is a multiple of the
    /// chunk size, so that "last" is always known when a chunk is sealed).
    pub fn sealed_len(&self, plaintext_len: u64) -> u64 {
        let size = u64::from(self.chunk_size);
        self.chunk_file_offset(plaintext_len / size) + plaintext_len % size + CHUNK_OVERHEAD
    }

    /// How many chunks a file of `file_len` bytes holds, the last possibly short. A file that
    /// ends inside the header or inside a chunk's tag is [`AtRestError::ChunkTruncated`].
    pub fn chunk_count(&self, file_len: u64) -> Result<u64, AtRestError> {
        let body = file_len
            .checked_sub(BLOB_HEADER_LEN as u64)
            .filter(|b| *b > 0)
            .ok_or(AtRestError::ChunkTruncated { index: 0 })?;
        let count = body.div_ceil(self.stride());
        let last_len = body - (count - 1) * self.stride();
        if last_len < CHUNK_OVERHEAD {
            return Err(AtRestError::ChunkTruncated { index: count - 1 });
        }
        Ok(count)
    }

    /// The plaintext length of a file of `file_len` bytes. It comes from the file's length, so
    /// it is trustworthy only once the last chunk has authenticated as last.
    pub fn plaintext_len(&self, file_len: u64) -> Result<u64, AtRestError> {
        let count = self.chunk_count(file_len)?;
        Ok(file_len - BLOB_HEADER_LEN as u64 - count * CHUNK_OVERHEAD)
    }

    /// Where a writer interrupted after `file_len` bytes continues: after the last complete
    /// chunk (a torn one is rewritten). `None` when even the header is incomplete: start over.
    /// The caller should check that chunk `index - 1` opens as a non-last chunk before
    /// continuing, and must re-send the very same plaintext (see the limits in [`super`]).
    pub fn resume_point(&self, file_len: u64) -> Option<ChunkPos> {
        let body = file_len.checked_sub(BLOB_HEADER_LEN as u64)?;
        let index = body / self.stride();
        Some(ChunkPos {
            index,
            offset_in_chunk: 0,
            file_offset: self.chunk_file_offset(index),
            plaintext_offset: index * u64::from(self.chunk_size),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = BLOB_HEADER_LEN as u64;

    #[test]
    fn offsets_map_to_chunks_and_back() {
        let l = ChunkLayout::new(100);
        let p = l.locate(250);
        assert_eq!((p.index, p.offset_in_chunk), (2, 50));
        assert_eq!(p.file_offset, H + 2 * 116);
        assert_eq!(l.locate(200).index, 2);
        assert_eq!(l.locate(0).file_offset, H);
    }

    #[test]
    fn lengths_round_trip_through_the_file_length() {
        let l = ChunkLayout::new(100);
        for len in [0u64, 1, 99, 100, 101, 250, 300] {
            let file_len = l.sealed_len(len);
            assert_eq!(l.plaintext_len(file_len).unwrap(), len, "len {len}");
            assert_eq!(l.chunk_count(file_len).unwrap(), len / 100 + 1);
        }
    }

    #[test]
    fn a_file_ending_inside_a_tag_or_the_header_is_truncated() {
        let l = ChunkLayout::new(100);
        assert!(matches!(
            l.chunk_count(H),
            Err(AtRestError::ChunkTruncated { index: 0 })
        ));
        assert!(matches!(
            l.chunk_count(10),
            Err(AtRestError::ChunkTruncated { index: 0 })
        ));
        let two_chunks_torn = H + 116 + 15;
        assert!(matches!(
            l.chunk_count(two_chunks_torn),
            Err(AtRestError::ChunkTruncated { index: 1 })
        ));
    }

    #[test]
    fn a_writer_resumes_after_the_last_complete_chunk() {
        let l = ChunkLayout::new(100);
        assert_eq!(l.resume_point(H - 1), None);
        let p = l.resume_point(H + 2 * 116 + 40).unwrap();
        assert_eq!(
            (p.index, p.plaintext_offset, p.file_offset),
            (2, 200, H + 232)
        );
        assert_eq!(l.resume_point(H).unwrap().index, 0);
    }
}
