//! How much of a blob a file holds, and reopening a partial file to continue it, in either
//! format. Everything here runs inside one blocking job (`std::fs`), in constant memory.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::Path,
};

use crate::{
    atrest::{
        BLOB_HEADER_LEN, BlobOpener, BlobSealer, CHUNK_OVERHEAD, ChunkPos, DataKeys,
        EncryptingWriter,
    },
    crypto::DigestAlgorithm,
    signing::{Digest, Hasher},
};

use super::{CHUNK_SIZE, ResumeError, chunk_for, writer::Sink};

/// The plaintext length of the complete encrypted blob at `path`, if there is one.
///
/// With keys its header must authenticate: a blob whose header does not counts as absent, so a
/// new transfer replaces it (damage further in is caught when it is read). Without keys the
/// length is worked out from the header's chunk size (bytes 9..13, see [`crate::atrest`])
/// unauthenticated: it only reports the blob as present, since it cannot be read anyway.
pub(super) fn sealed_len(path: &Path, keys: Option<&DataKeys>) -> Option<u64> {
    let mut file = File::open(path).ok()?;
    let file_len = file.metadata().ok()?.len();
    let mut header = [0u8; BLOB_HEADER_LEN];
    file.read_exact(&mut header).ok()?;
    if let Some(keys) = keys {
        let layout = BlobOpener::from_header(keys, &header).ok()?.layout();
        return layout.plaintext_len(file_len).ok();
    }
    let chunk_size = u64::from(u32::from_be_bytes(header[9..13].try_into().ok()?));
    let body = file_len.checked_sub(BLOB_HEADER_LEN as u64)?;
    let chunks = body.div_ceil(chunk_size.checked_add(CHUNK_OVERHEAD)?);
    body.checked_sub(chunks.checked_mul(CHUNK_OVERHEAD)?)
}

/// Where the encrypted partial at `path` can be resumed (plaintext bytes held): 0 when there is
/// none, or it cannot be trusted.
pub(super) fn sealed_resume_point(path: &Path, keys: &DataKeys) -> u64 {
    File::open(path)
        .ok()
        .and_then(|mut f| held(&mut f, keys))
        .map_or(0, |h| h.at.plaintext_offset)
}

/// What an encrypted partial holds that can be trusted.
struct Held {
    /// Its header, which a resumed writer continues under.
    header: [u8; BLOB_HEADER_LEN],
    /// The blob key, from the header.
    opener: BlobOpener,
    /// After the last complete chunk (a torn one after it is cut off on resume).
    at: ChunkPos,
}

/// Reads an encrypted partial's header and finds its resume point, checking that the header and
/// the chunk just before that point authenticate (as a non-last chunk). `None`: start over.
fn held(file: &mut File, keys: &DataKeys) -> Option<Held> {
    let file_len = file.metadata().ok()?.len();
    let mut header = [0u8; BLOB_HEADER_LEN];
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_exact(&mut header).ok()?;
    let opener = BlobOpener::from_header(keys, &header).ok()?;
    let layout = opener.layout();
    let at = layout.resume_point(file_len)?;
    if let Some(prev) = at.index.checked_sub(1) {
        let mut buf = vec![0u8; stride(&opener)];
        file.seek(SeekFrom::Start(layout.chunk_file_offset(prev)))
            .ok()?;
        file.read_exact(&mut buf).ok()?;
        opener.open_chunk(prev, false, &buf).ok()?;
    }
    Some(Held { header, opener, at })
}

/// Length of a full chunk in the file (at most 16 MiB and a tag: the header checked it).
fn stride(opener: &BlobOpener) -> usize {
    opener.layout().chunk_size() as usize + CHUNK_OVERHEAD as usize
}

fn beyond(offset: u64, held: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        ResumeError(format!(
            "resume offset {offset} is beyond the {held} bytes held"
        )),
    )
}

/// Opens (creating) a plaintext partial blob to continue at `offset`: cuts what lies beyond and
/// hashes the bytes before it, which are not sent again.
pub(super) fn reopen_plain(
    path: &Path,
    alg: DigestAlgorithm,
    size: u64,
    offset: u64,
) -> io::Result<(Sink, Hasher)> {
    let mut file = open_partial(path)?;
    let held = file.metadata()?.len();
    if offset > held || offset > size {
        return Err(beyond(offset, held));
    }
    file.set_len(offset)?;
    let mut hasher = new_hasher(alg)?;
    // Sized to what is re-read: a fresh blob needs no buffer at all.
    let mut buf = vec![0u8; chunk_for(offset)];
    let mut left = offset;
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK_SIZE as u64)).unwrap_or(CHUNK_SIZE);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                ResumeError("partial blob shrank while resuming".to_owned()),
            ));
        }
        hasher.update(&buf[..n]).map_err(io::Error::other)?;
        left -= n as u64;
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok((Sink::Plain(file), hasher))
}

/// Opens (creating) the encrypted partial of `d` to continue at plaintext `offset`, at most
/// what [`sealed_resume_point`] reports. Offset 0 starts a new blob under a new key. Otherwise
/// the chunks before `offset` are decrypted and hashed one at a time (a chunk that does not
/// authenticate discards the partial: the next attempt starts over), the file is cut at the
/// chunk holding `offset`, and that chunk's plaintext before `offset` is handed to the writer
/// again: it is re-sealed under the same key and index, so it must be, and is (the partial is
/// content-addressed), the same plaintext as before.
pub(super) fn reopen_sealed(
    path: &Path,
    keys: &DataKeys,
    (d, alg): (Digest, DigestAlgorithm),
    size: u64,
    offset: u64,
) -> io::Result<(Sink, Hasher)> {
    let mut hasher = new_hasher(alg)?;
    let mut file = open_partial(path)?;
    if offset == 0 {
        file.set_len(0)?;
        let writer = EncryptingWriter::new(keys, file)?;
        return Ok((Sink::Sealed(Box::new(writer)), hasher));
    }
    let held = held(&mut file, keys);
    let held_len = held.as_ref().map_or(0, |h| h.at.plaintext_offset);
    let Some(Held { header, opener, .. }) = held.filter(|_| offset <= held_len && offset <= size)
    else {
        return Err(beyond(offset, held_len));
    };
    let layout = opener.layout();
    let to = layout.locate(offset);
    let mut carry = Vec::new();
    let mut buf = vec![0u8; stride(&opener)];
    file.seek(SeekFrom::Start(layout.chunk_file_offset(0)))?;
    let reread = to.index + u64::from(to.offset_in_chunk > 0);
    for index in 0..reread {
        file.read_exact(&mut buf)?;
        let plain = match opener.open_chunk(index, false, &buf) {
            Ok(plain) => plain,
            Err(e) => {
                file.set_len(0)?;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    ResumeError(format!(
                        "partial content {d} is damaged ({e}): discarded, the transfer starts over"
                    )),
                ));
            }
        };
        if index < to.index {
            hasher.update(&plain).map_err(io::Error::other)?;
        } else {
            carry = plain;
            carry.truncate(to.offset_in_chunk as usize);
            hasher.update(&carry).map_err(io::Error::other)?;
        }
    }
    file.set_len(to.file_offset)?;
    file.seek(SeekFrom::Start(to.file_offset))?;
    let start = ChunkPos {
        offset_in_chunk: 0,
        plaintext_offset: offset - u64::from(to.offset_in_chunk),
        ..to
    };
    let mut writer = EncryptingWriter::resume(BlobSealer::resume(keys, &header)?, start, file);
    writer.write_all(&carry)?; // less than a chunk: buffered, sealed with what follows
    Ok((Sink::Sealed(Box::new(writer)), hasher))
}

/// A hasher of the store's algorithm; one the build cannot compute (SM3 without the `shangmi`
/// feature) fails the transfer with that reason.
pub(super) fn new_hasher(alg: DigestAlgorithm) -> io::Result<Hasher> {
    Hasher::new(alg).map_err(io::Error::other)
}

fn open_partial(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
}
