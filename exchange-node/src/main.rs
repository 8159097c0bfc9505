//! `exchange-node`: parse, load, wire, run, map the result to an exit code. Nothing else.

use std::process::ExitCode;

use clap::Parser;
use exchange_node::cli::{self, Cli, Command};

/// EX_USAGE: bad flags or config.
const EXIT_USAGE: u8 = 64;

/// With feature `jemalloc`, jemalloc serves every allocation of the daemon.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print to stdout and succeed; a bad flag is a usage error.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Command::Completions { shell } = cli.cmd {
        cli::print_completions(shell);
        return ExitCode::SUCCESS;
    }
    let cfg = match cli::load_config(&cli) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let serving = matches!(cli.cmd, Command::Serve);
    // Only the daemon logs: a clerk's commands keep stderr for errors, hints and progress.
    if serving {
        exchange_core::telemetry::init_tracing(&cfg.log);
    }
    exchange_core::tls::install_ring_provider();
    if matches!(cli.cmd, Command::Serve | Command::CheckConfig) {
        // Unusable keys or certificates are a configuration error: say so before starting.
        if let Err(e) = exchange_node::check_config(&cfg) {
            let file = cli
                .config
                .as_deref()
                .unwrap_or_else(|| std::path::Path::new("?"));
            eprintln!("error: {}: {e:#}", file.display());
            return ExitCode::from(EXIT_USAGE);
        }
        if let Command::CheckConfig = cli.cmd {
            println!("config ok");
            return ExitCode::SUCCESS;
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if serving {
            let addr = cfg.api.listen;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("binding the node API on {addr}: {e}"))?;
            exchange_node::serve(cfg, listener, exchange_core::shutdown::signal()).await
        } else {
            cli::run(cli, cfg).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if serving {
                tracing::error!("{e:#}");
            }
            eprintln!("error: {e:#}");
            // A profile this build cannot serve is a configuration error, like a bad key.
            if e.is::<exchange_core::crypto::ProfileError>() {
                return ExitCode::from(EXIT_USAGE);
            }
            ExitCode::FAILURE
        }
    }
}
