//! `exchange-node backup --out DIR`: a consistent copy of the node's store and content blobs,
//! taken by the running node (its API's `Backup`), or — when it is not running — directly from
//! its data directory.
//!
//! `DIR` is on the node's machine and must not exist yet (or be empty); the node must be allowed
//! to write there (under the sample systemd unit: below `/var/lib/exchange/backup/`).

use std::path::PathBuf;

use anyhow::Context as _;
use exchange_core::config::NodeConfig;
use exchange_proto::v1 as pb;

use super::{Ctx, ctx::Lookup};

/// `backup` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new directory to write the backup into (a data directory: restore by putting it in
    /// place of `[node] data_dir` while the node is stopped).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Print the summary as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Runs `backup`: through the running node, or from the store when the node is not running.
pub async fn run(args: Args, cfg: NodeConfig, config_path: PathBuf) -> anyhow::Result<()> {
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("resolving {}", args.out.display()))?;
    let data = cfg.node.data_dir.clone();
    let summary: pb::BackupResponse = match Ctx::connect(cfg, config_path).await {
        Ok(ctx) => {
            let req = pb::BackupRequest {
                out_dir: out.display().to_string(),
            };
            ctx.client()
                .backup(req)
                .await
                .map_err(|s| ctx.rpc_error(&s, Lookup::Any))?
                .into_inner()
        }
        Err(not_running) => {
            let path = data.join("node.redb");
            if !path.exists() {
                return Err(not_running);
            }
            // The node is not running, so its store is free: copy it directly. If it is in
            // fact running (and unreachable), redb's lock refuses and both reasons are shown. A
            // store of schema 1 is upgraded first, as the node's next start would.
            let store = crate::store::open_unkeyed(&path)
                .map_err(|e| not_running.context(format!("cannot open {}: {e}", path.display())))?;
            crate::backup::take(&store, &data, &out).await?.into()
        }
    };
    println!("{}", exchange_core::backup::describe(&summary, args.json));
    Ok(())
}
