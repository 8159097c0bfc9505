//! Saving a received document's parts to a directory (`show --save DIR`).
//!
//! Content arrives chunk by chunk and is written as it comes (never held whole in memory),
//! into a hidden temporary file that is renamed into place only once its size and digest (under
//! the algorithm the signed header names: SHA-256, or SM3 under the shangmi profile) match the
//! signed manifest: a file under its real name is always the complete, verified part.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use exchange_core::{
    convert::header_digest_algorithm,
    crypto::DigestAlgorithm,
    signing::{Hasher, digest_label},
};
use exchange_proto::v1::{self as pb, fetch_document_response::Msg};
use tokio::{fs::File, io::AsyncWriteExt};
use tonic::Streaming;

/// Writes every part of `header` into `dir` from the content chunks that follow on `stream`,
/// each checked with the digest the header names; returns the paths written, in manifest order.
pub(crate) async fn save_parts(
    stream: &mut Streaming<pb::FetchDocumentResponse>,
    header: &pb::DocumentHeader,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let parts = header.parts.as_slice();
    let alg = header_digest_algorithm(&header.digest_algorithm)?;
    // Fails here, before anything is written, if this build cannot compute it (SM3 without
    // the `shangmi` feature).
    Hasher::new(alg)?;
    check_names(parts)?;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut saved = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let path = dir.join(&part.name);
        let tmp = dir.join(format!(".{}.partial", part.name));
        let result = save_part(stream, (i, part), alg, &tmp).await;
        let result = match result {
            Ok(()) => tokio::fs::rename(&tmp, &path)
                .await
                .with_context(|| format!("writing {}", path.display())),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        saved.push(path);
    }
    Ok(saved)
}

/// Refuses part names that could write outside `dir`, hide a file, or overwrite another part.
/// The node only accepts plain file names; this is the last line of defence on the clerk's disk.
fn check_names(parts: &[pb::Part]) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for p in parts {
        let n = &p.name;
        if n.is_empty() || n.starts_with('.') || n.contains(['/', '\\', '\0']) {
            anyhow::bail!("refusing to save a part named {n:?}: not a plain file name");
        }
        if !seen.insert(n.as_str()) {
            anyhow::bail!("refusing to save: two parts are named {n:?}");
        }
    }
    Ok(())
}

/// Receives part `index` into `tmp`, checking its size and digest.
async fn save_part(
    stream: &mut Streaming<pb::FetchDocumentResponse>,
    (index, part): (usize, &pb::Part),
    alg: DigestAlgorithm,
    tmp: &Path,
) -> anyhow::Result<()> {
    let name = &part.name;
    let mut file = File::create(tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut hasher = Hasher::new(alg)?;
    let mut got = 0u64;
    let mut progress = super::upload::Progress::with_verb("saving", name, part.size);
    while got < part.size {
        let chunk = next_chunk(stream).await?.with_context(|| {
            format!(
                "the node's answer ended in the middle of {name} ({got} of {} bytes)",
                part.size
            )
        })?;
        let len = chunk.data.len() as u64;
        if chunk.part as usize != index || got + len > part.size {
            anyhow::bail!(
                "the node sent content out of order (part {} while saving {name})",
                chunk.part
            );
        }
        hasher.update(&chunk.data)?;
        file.write_all(&chunk.data)
            .await
            .with_context(|| format!("writing {}", tmp.display()))?;
        got += len;
        progress.update(got);
    }
    progress.done();
    file.sync_all()
        .await
        .with_context(|| format!("writing {}", tmp.display()))?;
    if hasher.finish()?.0.as_slice() != part.sha256.as_slice() {
        anyhow::bail!(
            "{name}: the content does not match its {} {}; not saved",
            digest_label(alg),
            hex::encode(&part.sha256)
        );
    }
    Ok(())
}

/// The next non-empty content chunk, or `None` when the node's answer ends.
async fn next_chunk(
    stream: &mut Streaming<pb::FetchDocumentResponse>,
) -> anyhow::Result<Option<pb::PartChunk>> {
    loop {
        let msg = stream
            .message()
            .await
            .map_err(|s| anyhow::anyhow!("receiving content: {}", s.message()))?;
        match msg {
            None => return Ok(None),
            Some(pb::FetchDocumentResponse {
                msg: Some(Msg::Chunk(c)),
            }) if c.data.is_empty() => {}
            Some(pb::FetchDocumentResponse {
                msg: Some(Msg::Chunk(c)),
            }) => return Ok(Some(c)),
            Some(_) => anyhow::bail!("the node sent a second document where content was expected"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str) -> pb::Part {
        pb::Part {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_plain_distinct_names_are_saved() {
        assert!(check_names(&[part("正文.ofd"), part("附件1.pdf")]).is_ok());
        for bad in ["../x", "a/b", ".bashrc", "", "a\\b"] {
            assert!(check_names(&[part(bad)]).is_err(), "{bad:?}");
        }
        assert!(check_names(&[part("a.pdf"), part("a.pdf")]).is_err());
    }
}
