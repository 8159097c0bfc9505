//! `exchange-certs`: creates the exchange CA, issues the hub's and departments' certificates, and
//! verifies evidence bundles offline.
//! All the work is in the library; this file parses flags and maps results to exit codes:
//! 64 (EX_USAGE) for bad flags (or a profile this build lacks), 1 for a failure, 0 for success.

use std::process::ExitCode;

use clap::Parser;
use exchange_certs::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print(); // nothing better to do if stderr is gone
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.is::<exchange_certs::UsageError>() {
                return ExitCode::from(64);
            }
            ExitCode::FAILURE
        }
    }
}
