//! **fanout**: one notice from a real department node to R simulated recipients (default
//! 1,000): the time until the last recipient has it durably in its inbox, and until the last
//! signed receipt is back at the sender.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;
use exchange_core::config::DEFAULT_MAX_DOCUMENT_BYTES;
use serde::Serialize;

use super::{Ctx, check_arg, cpu_used, peak_rss, reached, sample_all};
use crate::{
    cli::parse_bytes,
    clock::ms_between,
    events::Events,
    exchange::{Exchange, Plan},
    load::{self, DocSpec},
    sim::{fleet::SimFleet, sim_depts},
    stats::{Summary, round3},
};

const SENDER: &str = "sender-1";

/// Flags of the fanout scenario.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Scenario fanout")]
pub struct FanoutArgs {
    /// Recipients of the notice (R), all simulated.
    #[arg(long = "fanout-recipients", default_value_t = 1000, value_name = "R")]
    pub fanout_recipients: usize,
    /// Content size of the notice.
    #[arg(long = "fanout-bytes", default_value = "4096", value_parser = parse_bytes, value_name = "BYTES")]
    pub fanout_bytes: u64,
}

/// Figures of the fanout scenario.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// R.
    pub recipients: usize,
    /// Content size.
    pub bytes: u64,
    /// Recipients with the notice durably in their inbox (should be R).
    pub delivered: usize,
    /// Receipts recorded at the sender (should be R).
    pub receipts: usize,
    /// Submit call start → the last recipient's inbox commit.
    pub all_durable_ms: f64,
    /// Submit call start → the first recipient's inbox commit.
    pub first_durable_ms: f64,
    /// Submit → inbox commit, over the recipients.
    pub durable: Summary,
    /// Submit call start → the last receipt recorded at the sender.
    pub all_receipts_ms: f64,
    /// Submit call → the sending node's acknowledgement.
    pub submit_ms: f64,
    /// CPU seconds of each process for the notice.
    pub cpu_secs: BTreeMap<String, f64>,
    /// Peak RSS of each process, MiB.
    pub peak_rss_mib: BTreeMap<String, f64>,
    /// Seconds to connect every simulated recipient (before the measurement).
    pub connect_secs: f64,
}

/// Runs the scenario on a fresh exchange.
pub async fn run(ctx: &Ctx, args: &FanoutArgs) -> Result<FanoutReport> {
    check_arg(
        (1..=5000).contains(&args.fanout_recipients),
        "--fanout-recipients must be 1 to 5000 (the exchange's limit)",
    )?;
    check_arg(args.fanout_bytes >= 1, "--fanout-bytes must be at least 1")?;
    let sims = sim_depts(args.fanout_recipients);
    let depts = [SENDER.to_owned()];
    let plan = Plan {
        name: "fanout",
        depts: &depts,
        simulated: &sims,
        max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES.max(args.fanout_bytes),
    };
    let mut ex = Exchange::start(ctx, &plan).await?;
    let mut events = Events::default();
    let fleet = SimFleet::start(ctx, &ex, args.fanout_recipients, events.recorder());
    let result = match fleet {
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

async fn measure(
    ctx: &Ctx,
    args: &FanoutArgs,
    ex: &mut Exchange,
    events: &mut Events,
    fleet: &mut SimFleet,
) -> Result<FanoutReport> {
    events.follow(SENDER, ex.api(SENDER)?).await?;
    eprintln!(
        "  connecting {} simulated recipients",
        args.fanout_recipients
    );
    let ready = fleet.wait_ready(ctx.stall).await?;
    let mut procs = ex.processes();
    procs.push(("sim-nodes".to_owned(), fleet.pid()));
    let before = sample_all(&procs)?;
    let mut client = ex.client(SENDER).await?;
    let spec = DocSpec {
        to: sim_depts(args.fanout_recipients)
            .iter()
            .map(ToString::to_string)
            .collect(),
        title: format!("notice to {} departments", args.fanout_recipients),
        bytes: args.fanout_bytes,
        seed: 0xfa_7007,
    };
    eprintln!("  one notice to {} recipients", args.fanout_recipients);
    let sub = load::submit(&mut client, spec).await?;
    let r = args.fanout_recipients;
    events
        .wait("delivered", ctx.stall, |log| (log.received.len(), r))
        .await?;
    events
        .wait("receipts", ctx.stall, |log| (log.receipts.len(), r))
        .await?;
    let after = sample_all(&procs)?;
    ex.check_alive()?;
    let subs = [sub];
    let (inbox, receipts) =
        events.with(|log| (reached(&subs, &log.received), reached(&subs, &log.receipts)));
    let start = subs[0].start_us;
    Ok(FanoutReport {
        recipients: r,
        bytes: args.fanout_bytes,
        delivered: inbox.count,
        receipts: receipts.count,
        all_durable_ms: round3(ms_between(start, inbox.last_us)),
        first_durable_ms: round3(ms_between(start, inbox.first_us)),
        durable: inbox.latency,
        all_receipts_ms: round3(ms_between(start, receipts.last_us)),
        submit_ms: round3(ms_between(start, subs[0].end_us)),
        cpu_secs: cpu_used(&before, &after, 1.0),
        peak_rss_mib: peak_rss(&after),
        connect_secs: round3(ready.connect_secs),
    })
}
