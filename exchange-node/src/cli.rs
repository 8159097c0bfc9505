//! The clerk's command line: `exchange-node --config FILE <command>`.
//!
//! Every client command talks to a running node through its local API (the same gRPC API a
//! department's OA system uses), so the CLI never opens the node's store itself and can run
//! while the daemon does. One file per command (mini-redis `cmd/`), each exposing
//! `run(args, ctx)`. stdout carries results only (`send` prints the id last; `--json` prints
//! exactly one JSON document); hints, progress and errors go to stderr.

pub mod ack_recall;
pub mod add_recipients;
pub mod backup;
pub mod confirm;
pub mod ctx;
pub mod directory;
pub mod evidence;
mod filter;
pub mod forward;
pub mod inbox;
mod labels;
pub mod outbox;
pub mod recall;
pub mod reject;
pub mod remind;
pub mod reply;
pub mod rotate_kek;
mod save;
pub mod send;
pub mod show;
pub mod status;
mod table;
mod upload;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use exchange_core::config::NodeConfig;

pub use ctx::Ctx;

/// The department node of the electronic official-document exchange (电子公文交换): run it
/// with `serve`, then send, receive, confirm (签收) and reject (退回) documents with the other
/// commands.
#[derive(Debug, Parser)]
#[command(name = "exchange-node", version)]
pub struct Cli {
    /// The node's config file (node.toml). Required by every command but `completions`.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Command,
}

/// The commands of `exchange-node`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node (local API and hub connection) until SIGINT or SIGTERM.
    Serve,
    /// Send a document to other departments; prints its id (keep it to follow it with `status`).
    Send(send::Args),
    /// List the documents this department has received: what needs you first (overdue,
    /// reminded), then the most urgent, then the oldest.
    Inbox(inbox::Args),
    /// Show a received document's details and the forwards (转发) made of it, and save its files
    /// with --save; for a document this department sent, show its status.
    Show(show::Args),
    /// Confirm receipt of a received document (签收).
    Confirm(confirm::Args),
    /// Send a received document back to its sender, with a reason (退回).
    Reject(reject::Args),
    /// Answer a received document (答复): a new document to its sender, linked to it.
    Reply(reply::Args),
    /// Forward a received document (转发): a new document from this department to others,
    /// linked to the original and carrying it as a verifiable attachment; prints the new id.
    Forward(forward::Args),
    /// Recall a document this department sent (撤回), with a reason.
    Recall(recall::Args),
    /// Send a document this department sent to further departments (补发).
    AddRecipients(add_recipients::Args),
    /// Remind recipients that have not signed for a document this department sent (催办).
    Remind(remind::Args),
    /// Acknowledge the recall of a document this department had already signed for.
    AckRecall(ack_recall::Args),
    /// Show where a document this department sent is, recipient by recipient.
    Status(status::Args),
    /// List the documents this department sent, newest first, with each recipient's state.
    Outbox(outbox::Args),
    /// List the departments documents can be sent to.
    Directory(directory::Args),
    /// Write a document's evidence bundle (signed document and every signed receipt) to a file,
    /// for `exchange-certs verify`; prints the file's path.
    Evidence(evidence::Args),
    /// Check the config file and the certificates and keys it names, then exit (0 if usable).
    CheckConfig,
    /// Write a consistent copy of the node's store and content blobs to a new directory (works
    /// while the node runs; restore by putting it in place of the data directory).
    Backup(backup::Args),
    /// Rotate the key-encryption key of the data directory ([encryption]): rewrap its key ring
    /// under the key in --new (works while the node runs); then point [encryption] kek at the
    /// new file. Keep the old key for older backups.
    RotateKek(rotate_kek::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell); needs no config.
    /// e.g. `exchange-node completions bash > /etc/bash_completion.d/exchange-node`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Writes the completion script for `shell` to stdout.
pub fn print_completions(shell: clap_complete::Shell) {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "exchange-node", &mut std::io::stdout());
}

/// Loads the config named by `--config`, with a message for the clerk when it is missing.
pub fn load_config(cli: &Cli) -> anyhow::Result<NodeConfig> {
    let path = cli.config.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "--config FILE is required (the node's node.toml), e.g. exchange-node --config /etc/exchange/node.toml inbox"
        )
    })?;
    Ok(exchange_core::config::load(path)?)
}

/// Runs a client command against the running node named by `cfg`. `serve` and `check-config`
/// are not client commands; `main` runs them.
pub async fn run(cli: Cli, cfg: NodeConfig) -> anyhow::Result<()> {
    let config_path = cli.config.unwrap_or_default();
    // `backup` works with the node stopped too: it then copies the store directly.
    if let Command::Backup(args) = cli.cmd {
        return backup::run(args, cfg, config_path).await;
    }
    // A local file operation on the data directory: no node needs to answer.
    if let Command::RotateKek(args) = cli.cmd {
        return rotate_kek::run(args, cfg);
    }
    let ctx = match &cli.cmd {
        Command::Serve | Command::CheckConfig | Command::Completions { .. } => {
            anyhow::bail!("`serve` and `check-config` do not talk to a running node")
        }
        _ => Ctx::connect(cfg, config_path).await?,
    };
    match cli.cmd {
        Command::Send(args) => send::run(args, &ctx).await,
        Command::Inbox(args) => inbox::run(args, &ctx).await,
        Command::Show(args) => show::run(args, &ctx).await,
        Command::Confirm(args) => confirm::run(args, &ctx).await,
        Command::Reject(args) => reject::run(args, &ctx).await,
        Command::Reply(args) => reply::run(args, &ctx).await,
        Command::Forward(args) => forward::run(args, &ctx).await,
        Command::Recall(args) => recall::run(args, &ctx).await,
        Command::AddRecipients(args) => add_recipients::run(args, &ctx).await,
        Command::Remind(args) => remind::run(args, &ctx).await,
        Command::AckRecall(args) => ack_recall::run(args, &ctx).await,
        Command::Status(args) => status::run(args, &ctx).await,
        Command::Outbox(args) => outbox::run(args, &ctx).await,
        Command::Directory(args) => directory::run(args, &ctx).await,
        Command::Evidence(args) => evidence::run(args, &ctx).await,
        Command::Serve
        | Command::CheckConfig
        | Command::Backup(_)
        | Command::RotateKek(_)
        | Command::Completions { .. } => Ok(()),
    }
}

/// The clerk's name recorded in 签收/退回 evidence: `--clerk`, else `$USER`, else "clerk".
fn clerk_name(flag: Option<String>) -> String {
    flag.filter(|s| !s.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "clerk".to_owned())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_is_global_and_lists_split_on_commas() {
        let cli = Cli::try_parse_from([
            "exchange-node",
            "send",
            "--to",
            "b, c",
            "--cc",
            "d",
            "--title",
            "t",
            "--file",
            "x.ofd",
            "--file",
            "y.pdf",
            "--urgency",
            "very-urgent",
            "--config",
            "node.toml",
        ])
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("node.toml")));
        assert!(matches!(cli.cmd, Command::Send(_)));
    }

    #[test]
    fn reject_needs_a_reason() {
        let err = Cli::try_parse_from(["exchange-node", "--config", "n.toml", "reject", "ID"]);
        assert!(err.is_err());
    }

    #[test]
    fn an_explicit_clerk_wins() {
        assert_eq!(clerk_name(Some("张三".to_owned())), "张三");
        assert!(!clerk_name(None).is_empty());
    }
}
