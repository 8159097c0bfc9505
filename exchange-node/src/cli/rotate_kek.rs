//! `exchange-node rotate-kek --new FILE`: rotates the key-encryption key of the node's data
//! directory. The key ring (`keyring.json`) is rewrapped under the new key in one atomic
//! replacement; document content is not re-encrypted, and a running node keeps serving with the
//! data keys it holds. A local file operation: it works whether or not the node runs.

use std::path::PathBuf;

use anyhow::Context as _;
use exchange_core::config::NodeConfig;

/// `rotate-kek` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new key-encryption key: a file of 64 hex characters, mode 0600 (e.g. made with
    /// `exchange-certs new-kek --out FILE`). Keep it outside the data directory.
    #[arg(long, value_name = "FILE")]
    pub new: PathBuf,
}

/// Runs `rotate-kek`.
pub fn run(args: Args, cfg: NodeConfig) -> anyhow::Result<()> {
    let data = &cfg.node.data_dir;
    let done = exchange_core::store::sealing::rotate_kek(
        data,
        cfg.crypto.profile,
        cfg.encryption.as_ref(),
        &args.new,
    )
    .context("rotating the key-encryption key")?;
    println!(
        "{}",
        exchange_core::store::sealing::rotation_report(data, &done, &args.new, "node", "node.toml")
    );
    Ok(())
}
