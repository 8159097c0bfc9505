//! **connections**: C connected departments (default 10,000), all simulated, each with its own
//! certificate, connection and `Subscribe` stream.
//!
//! Once every department is connected and the hub has been left alone for `--settle-secs`,
//! reports the hub's RSS, open file descriptors and CPU use at rest (keep-alives only). Then a
//! light load — documents from a real node to randomly chosen simulated departments at a low
//! fixed rate — gives the delivery latency p50 / p99 / max, and the hub's RSS afterwards.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Result;
use clap::Args;
use exchange_core::config::DEFAULT_MAX_DOCUMENT_BYTES;
use serde::Serialize;

use super::{Ctx, check_arg, cpu_used, reached, sample_all};
use crate::{
    cli::parse_bytes,
    events::Events,
    exchange::{Exchange, Plan},
    load::{self, DocSpec},
    procstat,
    sim::{fleet::SimFleet, sim_dept, sim_depts},
    stats::{Summary, round3},
};

const SENDER: &str = "sender-1";

/// Flags of the connections scenario.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Scenario connections")]
pub struct ConnectionsArgs {
    /// Connected departments (C), all simulated.
    #[arg(long = "connections", default_value_t = 10_000, value_name = "C")]
    pub connections: usize,
    /// Documents of the light load, each to one department chosen at random.
    #[arg(long = "conn-docs", default_value_t = 200, value_name = "N")]
    pub conn_docs: usize,
    /// Rate of the light load, documents per second.
    #[arg(
        long = "conn-rate",
        default_value_t = 20.0,
        value_name = "DOCS_PER_SEC"
    )]
    pub conn_rate: f64,
    /// Content size of those documents.
    #[arg(long = "conn-bytes", default_value = "4096", value_parser = parse_bytes, value_name = "BYTES")]
    pub conn_bytes: u64,
    /// Seconds to leave the connected exchange alone before reading it "at rest".
    #[arg(long = "settle-secs", default_value_t = 5.0, value_name = "SECS")]
    pub settle_secs: f64,
}

/// Figures of the connections scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    /// C.
    pub connections: usize,
    /// Departments connected at rest (should be C).
    pub connected: usize,
    /// Seconds to issue the simulated departments' identities.
    pub issue_secs: f64,
    /// Seconds to connect them all.
    pub connect_secs: f64,
    /// The hub's RSS at rest, MiB.
    pub hub_rss_mib: f64,
    /// The hub's open file descriptors at rest.
    pub hub_fds: usize,
    /// The hub's CPU use at rest, percent of one core.
    pub hub_cpu_percent_at_rest: f64,
    /// The hub's RSS after the load, MiB.
    pub hub_rss_mib_after_load: f64,
    /// The hub's peak RSS, MiB.
    pub hub_peak_rss_mib: f64,
    /// The simulated nodes' process at rest: RSS, MiB.
    pub sim_rss_mib: f64,
    /// Documents of the light load.
    pub docs: usize,
    /// Its rate, documents per second.
    pub rate: f64,
    /// Of those, durable in their recipient's inbox (should be all).
    pub delivered: usize,
    /// Receipts recorded at the sender (should be all).
    pub receipts: usize,
    /// Submit → durable in the (simulated) recipient's inbox.
    #[serde(flatten)]
    pub latency: Summary,
    /// Submit → receipt recorded at the sender.
    pub receipt_latency: Summary,
    /// CPU seconds of each process during the load.
    pub cpu_secs: BTreeMap<String, f64>,
}

/// Runs the scenario on a fresh exchange.
pub async fn run(ctx: &Ctx, args: &ConnectionsArgs) -> Result<ConnectionsReport> {
    check_arg(args.connections >= 1, "--connections must be at least 1")?;
    check_arg(
        args.conn_docs >= 1 && args.conn_rate > 0.0 && args.conn_bytes >= 1,
        "--conn-docs, --conn-rate and --conn-bytes must be positive",
    )?;
    check_fd_limit(args.connections)?;
    let sims = sim_depts(args.connections);
    let depts = [SENDER.to_owned()];
    let plan = Plan {
        name: "connections",
        depts: &depts,
        simulated: &sims,
        max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES.max(args.conn_bytes),
    };
    let mut ex = Exchange::start(ctx, &plan).await?;
    let mut events = Events::default();
    let result = match SimFleet::start(ctx, &ex, args.connections, events.recorder()) {
        Ok(mut fleet) => {
            let r = measure(ctx, args, &mut ex, &mut events, &mut fleet).await;
            fleet.stop().await;
            r
        }
        Err(e) => Err(e),
    };
    drop(events);
    ex.stop(ctx.keep_dir).await;
    result
}

/// The hub and the simulated nodes need a descriptor per connection; their soft limit is
/// raised to the hard limit, which this process shares.
fn check_fd_limit(connections: usize) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|h| h.parse::<usize>().ok());
    if let Some(hard) = hard {
        anyhow::ensure!(
            hard >= connections + 1024,
            "--connections {connections} needs about {} file descriptors per process, but the \
             hard limit is {hard}: raise it (e.g. `ulimit -Hn {}` as root) and run again",
            connections + 1024,
            connections + 4096
        );
    }
    Ok(())
}

async fn measure(
    ctx: &Ctx,
    args: &ConnectionsArgs,
    ex: &mut Exchange,
    events: &mut Events,
    fleet: &mut SimFleet,
) -> Result<ConnectionsReport> {
    events.follow(SENDER, ex.api(SENDER)?).await?;
    eprintln!("  connecting {} simulated departments", args.connections);
    let ready = fleet.wait_ready(ctx.stall).await?;
    if let Some(limit) = procstat::open_files_limit(ex.hub.pid) {
        eprintln!("  hub open-files limit {limit}");
    }
    let hub_pid = ex.hub.pid;
    let settle_from = procstat::sample(hub_pid)?;
    eprintln!("  settling for {} s", args.settle_secs);
    tokio::time::sleep(Duration::from_secs_f64(args.settle_secs.max(0.0))).await;
    let rest = procstat::sample(hub_pid)?;
    let sim_rest = procstat::sample(fleet.pid())?;
    let hub_cpu_percent_at_rest =
        100.0 * (rest.cpu_secs - settle_from.cpu_secs) / args.settle_secs.max(1e-3);

    let mut procs = ex.processes();
    procs.push(("sim-nodes".to_owned(), fleet.pid()));
    let before = sample_all(&procs)?;
    let clients = vec![ex.client(SENDER).await?];
    let mut rng = fastrand::Rng::with_seed(0xc0_77ec7);
    let specs: Vec<(usize, DocSpec)> = (0..args.conn_docs)
        .map(|j| {
            let to = sim_dept(rng.usize(1..=args.connections)).to_string();
            let spec = DocSpec {
                to: vec![to],
                title: format!("connections {j}"),
                bytes: args.conn_bytes,
                seed: j as u64,
            };
            (0, spec)
        })
        .collect();
    eprintln!(
        "  light load: {} documents at {}/s",
        args.conn_docs, args.conn_rate
    );
    let subs = load::paced(&clients, specs, args.conn_rate).await?;
    let n = args.conn_docs;
    events
        .wait("delivered", ctx.stall, |log| (log.received.len(), n))
        .await?;
    events
        .wait("receipts", ctx.stall, |log| (log.receipts.len(), n))
        .await?;
    let after = sample_all(&procs)?;
    ex.check_alive()?;
    let (inbox, receipts) =
        events.with(|log| (reached(&subs, &log.received), reached(&subs, &log.receipts)));
    let hub_after = after.get("hub").copied().unwrap_or_default();
    Ok(ConnectionsReport {
        connections: args.connections,
        connected: args.connections,
        issue_secs: round3(ready.issue_secs),
        connect_secs: round3(ready.connect_secs),
        hub_rss_mib: round3(rest.rss_mib),
        hub_fds: rest.fds,
        hub_cpu_percent_at_rest: round3(hub_cpu_percent_at_rest),
        hub_rss_mib_after_load: round3(hub_after.rss_mib),
        hub_peak_rss_mib: round3(hub_after.peak_rss_mib),
        sim_rss_mib: round3(sim_rest.rss_mib),
        docs: n,
        rate: args.conn_rate,
        delivered: inbox.count,
        receipts: receipts.count,
        latency: inbox.latency,
        receipt_latency: receipts.latency,
        cpu_secs: cpu_used(&before, &after, 1.0),
    })
}
