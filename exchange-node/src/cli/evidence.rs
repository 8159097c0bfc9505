//! `exchange-node evidence ID --out FILE [--with-content]`: writes the document's evidence
//! bundle, the one file with which the sender proves what happened to it (signed document, the
//! hub's acceptance, every recipient's signed receipts; the content too with `--with-content`).
//! Anyone can check it offline with `exchange-certs verify FILE --ca ca.pem`.
//!
//! The bundle is written next to `FILE` under a temporary name, fsynced, then renamed, so `FILE`
//! is either the complete bundle or untouched.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use exchange_proto::v1 as pb;
use tokio::io::AsyncWriteExt;

use super::{Ctx, ctx::Lookup};

/// Flags of `evidence`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The document id (as `send` printed it, or as `inbox` lists it).
    id: String,
    /// Where to write the bundle (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also put the document's content (正文 and 附件) in the bundle, so that it proves what was
    /// sent byte for byte; the file grows by the content's size.
    #[arg(long)]
    with_content: bool,
}

/// Writes the bundle and prints its path.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    write(ctx, args.id.trim(), args.with_content, &args.out).await?;
    println!("{}", args.out.display());
    Ok(())
}

/// Streams the bundle of document `id` from the node into `out`, chunk by chunk (never whole in
/// memory): `out` is either the complete bundle or untouched (also used by `forward`).
pub(super) async fn write(
    ctx: &Ctx,
    id: &str,
    with_content: bool,
    out: &Path,
) -> anyhow::Result<()> {
    let req = pb::GetEvidenceRequest {
        doc_id: id.to_owned(),
        with_content,
    };
    let refused = |s: tonic::Status| ctx.rpc_error(&s, Lookup::Any);
    let mut stream = ctx
        .client()
        .get_evidence(req)
        .await
        .map_err(refused)?
        .into_inner();
    let tmp = temp_path(out)?;
    let written = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .with_context(|| format!("creating {}", tmp.display()))?;
        while let Some(msg) = stream.message().await.map_err(refused)? {
            file.write_all(&msg.chunk)
                .await
                .with_context(|| format!("writing {}", tmp.display()))?;
        }
        file.sync_all()
            .await
            .with_context(|| format!("writing {}", tmp.display()))?;
        tokio::fs::rename(&tmp, out)
            .await
            .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await; // best effort: the error below matters more
        return Err(e);
    }
    Ok(())
}

/// `.<name>.partial` in the same directory as `out`, so the final rename stays on one
/// filesystem.
fn temp_path(out: &Path) -> anyhow::Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("--out {}: not a file name", out.display()))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(".partial");
    Ok(out.with_file_name(tmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporary_file_sits_next_to_the_bundle() {
        assert_eq!(
            temp_path(Path::new("/tmp/x/proof.bundle")).unwrap(),
            Path::new("/tmp/x/.proof.bundle.partial")
        );
        assert_eq!(
            temp_path(Path::new("proof")).unwrap(),
            Path::new(".proof.partial")
        );
        assert!(temp_path(Path::new("/")).is_err());
    }
}
