//! `exchange-hub backup --out DIR`: a consistent copy of the hub's store and content blobs,
//! taken by the running hub through its `Admin` service (with the administrator identity in
//! `[admin]`), or — when the hub is not running — directly from its data directory.
//!
//! `DIR` is on the hub's machine and must not exist yet (or be empty); the hub must be allowed
//! to write there (under the sample systemd unit: below `/var/lib/exchange/backup/`).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use exchange_core::config::HubConfig;
use exchange_proto::v1 as pb;

use super::audit::{Source, connect};

/// `backup` flags.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The new directory to write the backup into (a data directory: restore by putting it in
    /// place of `[hub] data_dir` while the hub is stopped).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Print the summary as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Runs `backup`.
pub async fn run(cfg: HubConfig, args: BackupArgs) -> Result<()> {
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("resolving {}", args.out.display()))?;
    let summary: pb::BackupResponse = match connect(&cfg).await? {
        Source::Hub(mut client) => {
            let req = pb::BackupRequest {
                out_dir: out.display().to_string(),
            };
            client
                .backup(req)
                .await
                .map_err(|s| anyhow::anyhow!("the hub refused the backup: {}", s.message()))?
                .into_inner()
        }
        Source::Store(store) => crate::backup::take(&store, &cfg.hub.data_dir, &out)
            .await?
            .into(),
    };
    println!("{}", exchange_core::backup::describe(&summary, args.json));
    Ok(())
}
