//! Command line of `exchange-bench`: one flag per parameter of issue 7, grouped by scenario.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::scenario::{
    connections::ConnectionsArgs, fanout::FanoutArgs, large::LargeArgs, steady::SteadyArgs,
};

const LONG_ABOUT: &str = "\
Benchmark of the electronic official-document exchange (电子公文交换).

Each scenario lays out a fresh exchange in a temporary directory (a new CA and identities made
with exchange-certs), starts the real exchange-hub and exchange-node binaries on loopback (mutual
TLS, redb, every acknowledgement behind a durable commit), drives them through the nodes' local
API and measures. Simulated departments (fanout, connections) run in a child process of this
binary (`exchange-bench sim-nodes`): each has its own certificate, mTLS connection and Subscribe
stream (TLS 1.3, or TLCP under --profile shangmi), fetches content with GetBlob, commits it to a
redb file and acknowledges with a signed DELIVERED receipt.

The daemons are taken from the directory of this executable (the same target profile), or from
--bin-dir. Build them together:

    cargo build --release --workspace --bins
    target/release/exchange-bench --scenario steady --json

File descriptors: the hub and the simulated nodes hold one socket per department; their soft
limit is raised to the hard limit (`ulimit -Hn`) when they start. Raise the hard limit before
running --connections above it.

fsync counting (--fsyncs): `perf stat` on the syscalls:sys_enter_fsync / sys_enter_fdatasync
tracepoints of every daemon during the measured phase (cheap), or `strace -f -c` (slows the
daemons down a lot: throughput figures of such a run are not comparable).

Progress goes to stderr; stdout carries the table, or exactly one JSON document with --json.";

/// Benchmark of the document exchange: real hub and nodes on loopback.
#[derive(Debug, Parser)]
#[command(
    name = "exchange-bench",
    version,
    long_about = LONG_ABOUT,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// The benchmark run.
    #[command(flatten)]
    pub run: RunArgs,
    /// Internal subcommands.
    #[command(subcommand)]
    pub cmd: Option<Command>,
}

/// Subcommands; the default (none) runs the benchmark.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Internal: simulated department nodes, started by the fanout and connections scenarios.
    #[command(hide = true)]
    SimNodes(crate::sim::SimArgs),
}

/// Which scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// K senders to M receivers, N documents of S bytes.
    Steady,
    /// One large document, sender to recipient.
    Large,
    /// One notice to R recipients.
    Fanout,
    /// C connected departments; the hub's footprint and latency under a light load.
    Connections,
    /// Every scenario, in the order above.
    All,
}

/// How to count fsync and fdatasync calls of the daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncMode {
    /// perf if it can read the syscall tracepoints, else strace if installed, else off.
    Auto,
    /// `perf stat -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -p PID`.
    Perf,
    /// `strace -f -c -e trace=fsync,fdatasync -p PID` (slows the daemons down).
    Strace,
    /// Do not count.
    Off,
}

/// Everything a benchmark run takes.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Which scenario to run.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,
    /// Print exactly one JSON document (each scenario an object under its name) instead of the
    /// table.
    #[arg(long)]
    pub json: bool,
    /// Where exchange-hub and exchange-node are (default: the directory of this executable).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Where to create the temporary exchanges (default: the system's temp dir). Put it on the
    /// disk you want to measure.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Keep each scenario's directory (configs, stores, daemon logs) and print where it is.
    #[arg(long)]
    pub keep_dir: bool,
    /// How to count the daemons' fsync/fdatasync calls during the measured phase of steady.
    #[arg(long, value_enum, default_value_t = FsyncMode::Auto)]
    pub fsyncs: FsyncMode,
    /// RUST_LOG of the daemons (their logs go to files in the scenario's directory).
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub daemon_log: String,
    /// Give up when nothing is delivered for this many seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub stall_secs: u64,
    /// Simulated departments opening their connection at the same time.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub connect_concurrency: usize,
    /// Run the exchange without encryption at rest (no `[encryption]` in the configs; the
    /// default, like every demo, encrypts): to measure what encryption costs.
    #[arg(long)]
    pub plaintext: bool,
    /// The crypto profile of the exchange under test: `international` (Ed25519, SHA-256, TLS
    /// 1.3) or `shangmi` (SM2, SM3, TLCP from Tongsuo; needs exchange-bench and the daemons
    /// built with `--features shangmi`). Every scenario runs under both; the simulated
    /// departments connect as a node does, over TLCP under shangmi.
    #[arg(long, default_value = "international", value_name = "PROFILE")]
    pub profile: exchange_core::crypto::Profile,
    /// Keep the hub's records in this PostgreSQL database (`[store] backend = "postgres"`)
    /// instead of `hub.redb`: an empty database per run (the bench runs `exchange-hub migrate`
    /// on it first), e.g. `postgresql://postgres@127.0.0.1:5432/bench1`. For one scenario at a
    /// time: each scenario's hub would find the last one's records.
    #[arg(long, value_name = "URL")]
    pub hub_store_url: Option<String>,
    /// Scenario steady.
    #[command(flatten)]
    pub steady: SteadyArgs,
    /// Scenario large.
    #[command(flatten)]
    pub large: LargeArgs,
    /// Scenario fanout.
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// Scenario connections.
    #[command(flatten)]
    pub connections: ConnectionsArgs,
}

impl RunArgs {
    /// Whether `s` is among the scenarios to run.
    pub fn wants(&self, s: Scenario) -> bool {
        self.scenario == Scenario::All || self.scenario == s
    }
}

/// Parses a byte count: `4096`, `4KiB`, `16MiB`, `1GiB` (also `K`, `M`, `G`, `KB`.., all
/// binary multiples).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: not a byte count"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse_with_binary_units() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("2k"), Ok(2048));
        assert!(parse_bytes("1TiB").is_err());
        assert!(parse_bytes("MiB").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
