//! `exchange-bench`: parse, run the chosen scenarios (or the simulated nodes), print, exit.

use std::process::ExitCode;

use clap::Parser;
use exchange_bench::cli::{Cli, Command};

/// EX_USAGE: bad flags.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    exchange_core::tls::install_ring_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.cmd {
        Some(Command::SimNodes(args)) => runtime.block_on(exchange_bench::sim::run(args)),
        None => runtime.block_on(async {
            let report = exchange_bench::run(cli.run.clone()).await?;
            report.print(cli.run.json)?;
            anyhow::ensure!(!report.any_failed(), "a scenario failed (see above)");
            Ok(())
        }),
    };
    // Simulated-node tasks may still hold connections: do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
