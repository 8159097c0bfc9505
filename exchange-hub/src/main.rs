//! `exchange-hub`: parse, load, wire, run, map the result to an exit code. Nothing else.

use std::process::ExitCode;

use clap::Parser;
use exchange_hub::cli::{Cli, Command, load_config};

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
    let cfg = match load_config(&cli) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let serving = matches!(cli.cmd, Command::Serve);
    if serving {
        exchange_core::telemetry::init_tracing(&cfg.log); // the admin commands keep stderr for errors
    }
    exchange_core::tls::install_ring_provider();
    // Unusable keys or certificates are a configuration error: say so before starting.
    if matches!(cli.cmd, Command::Serve | Command::CheckConfig)
        && let Err(e) = exchange_hub::check_config(&cfg)
    {
        let file = cli
            .config
            .as_deref()
            .unwrap_or_else(|| std::path::Path::new("?"));
        eprintln!("error: {}: {e:#}", file.display());
        return ExitCode::from(EXIT_USAGE);
    }
    let admin = match cli.cmd {
        Command::CheckConfig => {
            println!("config ok");
            return ExitCode::SUCCESS;
        }
        Command::Serve => None,
        other => Some(other),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if let Some(cmd) = admin {
            return exchange_hub::cli::run(cfg, cmd).await;
        }
        let listener = tokio::net::TcpListener::bind(cfg.hub.listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {}: {e}", cfg.hub.listen))?;
        exchange_hub::run(cfg, listener, exchange_core::shutdown::signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if serving {
                tracing::error!("{e:#}");
            }
            eprintln!("error: {e:#}");
            if e.is::<exchange_hub::cli::UsageError>()
                || e.is::<exchange_core::crypto::ProfileError>()
            {
                return ExitCode::from(EXIT_USAGE);
            }
            ExitCode::FAILURE
        }
    }
}
