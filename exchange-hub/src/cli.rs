//! Command line of `exchange-hub`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod audit;
pub mod backup;
pub mod migrate;
pub mod rotate_kek;
pub mod stats;

/// The central hub of the electronic official-document exchange (电子公文交换).
#[derive(Debug, Parser)]
#[command(name = "exchange-hub", version)]
pub struct Cli {
    /// The hub's config file (hub.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub until SIGINT or SIGTERM.
    Serve,
    /// Check the config file and the files it names, then exit (0 if usable).
    CheckConfig,
    /// Question the audit log: list, verify, export (works while the hub runs: asked as the
    /// administrator in [admin], over the hub's channel, TLCP under shangmi).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Write a consistent copy of the store and content blobs to a new directory (works while
    /// the hub runs; restore by putting it in place of the data directory while it is stopped).
    Backup(backup::BackupArgs),
    /// Per-department statistics for a period (days of [calendar]): documents sent and
    /// received, the share signed for (签收) on time, the average time to sign, overdue
    /// deliveries, totals (works while the hub runs).
    Stats(stats::StatsArgs),
    /// Rotate the key-encryption key of the data directory ([encryption]): rewrap its key ring
    /// under the key in --new (online: the running hub is unaffected), record it in the audit
    /// log; then point [encryption] kek at the new file. Keep the old key for older backups.
    RotateKek(rotate_kek::RotateKekArgs),
    /// Upgrade the store to the schema this build reads (with the hub stopped). A hub refuses
    /// to start on a store of an older schema and names this command; it copies every record
    /// in one transaction, so an interrupted run leaves the old schema whole.
    Migrate,
}

/// A flag's value that clap accepted but the command cannot use (e.g. `--from` after `--to`):
/// `main` exits 64 (EX_USAGE) for it, as for a flag clap refuses.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Loads the config named by `--config`, with a message for the operator on failure.
pub fn load_config(cli: &Cli) -> anyhow::Result<exchange_core::config::HubConfig> {
    let path = cli
        .config
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--config FILE is required (the hub's hub.toml)"))?;
    Ok(exchange_core::config::load(path)?)
}

/// Runs an administrator's command (`audit`, `backup`, `stats`); `serve` and `check-config` are
/// run by `main`.
pub async fn run(cfg: exchange_core::config::HubConfig, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Audit(a) => audit::run(cfg, a).await,
        Command::Backup(b) => backup::run(cfg, b).await,
        Command::Stats(s) => stats::run(cfg, s).await,
        Command::RotateKek(r) => rotate_kek::run(cfg, r).await,
        Command::Migrate => migrate::run(&cfg),
        Command::Serve | Command::CheckConfig => {
            anyhow::bail!("`serve` and `check-config` are not administrator commands")
        }
    }
}
