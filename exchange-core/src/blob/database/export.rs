//! [`export`]: a backup writes the database's complete blobs out as blob files, so that the
//! backup restores into a hub that keeps its blobs in files (a redb hub).

use std::{io::Write, os::unix::fs::DirBuilderExt, path::Path};

use crate::{
    atrest::DataKeys,
    store::{
        StoreError,
        kv::{self, KeyRange, ReadTables},
    },
};

use super::{
    BLOB_CHUNKS, BLOBS, BlobError, BlobKey, Loaded, export_dir, file_name, load, parse_key,
};

/// Writes every complete blob of the database (read in `txn`) as a file under `root` (a backup's
/// `blobs/`), in the layout [`super::super::BlobStore`] reads: with keys, the at-rest header and
/// then the chunk rows in order, which is the encrypted file format byte for byte (nothing is
/// decrypted); without, the plaintext under `sha256/`. Each file is fsynced. A few rows in
/// memory at a time. Returns (files, bytes written).
pub fn export(
    txn: &dyn ReadTables,
    keys: Option<&DataKeys>,
    root: &Path,
) -> Result<(u64, u64), BlobError> {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut failed = None;
    kv::visit(
        txn,
        BLOBS,
        KeyRange::all(),
        256,
        &mut |(k, _)| match export_one(txn, keys, root, &k) {
            Ok(Some(n)) => {
                files += 1;
                bytes += n;
                Ok(true)
            }
            Ok(None) => Ok(true),
            Err(e) => {
                failed = Some(e);
                Ok(false)
            }
        },
    )?;
    match failed {
        Some(e) => Err(e),
        None => Ok((files, bytes)),
    }
}

/// Writes the blob of `blobs` key `key` if it is complete; returns the file's length.
fn export_one(
    txn: &dyn ReadTables,
    keys: Option<&DataKeys>,
    root: &Path,
    key: &[u8],
) -> Result<Option<u64>, BlobError> {
    let (alg, digest) = parse_key(key)?;
    let digest = crate::signing::Digest(
        digest
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::decode("blobs key", "the digest is not 32 bytes"))?,
    );
    let blob = BlobKey {
        digest,
        key: std::sync::Arc::new(key.to_vec()),
    };
    let rec = match load(txn, keys, &blob)? {
        Loaded::Present(r) if r.complete => r,
        Loaded::Present(_) | Loaded::Absent => return Ok(None),
        Loaded::Sealed => return Err(BlobError::Encrypted(digest)),
    };
    let dir = export_dir(root, &rec);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let path = dir.join(file_name(&alg, &digest.0));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut len = 0u64;
    if let Some(h) = &rec.header {
        file.write_all(h)?;
        len += h.len() as u64;
    }
    let chunks = rec.chunks();
    let (mut seen, mut failed) = (0u64, None);
    let range = KeyRange::between(blob.chunk(0), blob.chunk(chunks));
    kv::visit(txn, BLOB_CHUNKS, range, 4, &mut |(k, v)| {
        if k != blob.chunk(seen) {
            return Ok(false);
        }
        if let Err(e) = file.write_all(&v) {
            failed = Some(e);
            return Ok(false);
        }
        len += v.len() as u64;
        seen += 1;
        Ok(true)
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    if seen != chunks {
        return Err(BlobError::Unreadable {
            digest,
            reason: format!("chunk {seen} is missing"),
        });
    }
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(Some(len))
}
