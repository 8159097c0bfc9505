//! **steady**: K sending departments to M receiving departments through one hub, N documents
//! of S bytes, at most W submissions outstanding per sender.
//!
//! Document j is sent by sender `j mod K` to receiver `(j div K) mod M`, so every sender
//! writes to every receiver. Two phases on the same exchange:
//!
//! 1. **full load** (closed loop, W outstanding per sender): submissions acknowledged per
//!    second, documents durable in the recipients' inboxes per second, delivery receipts back
//!    at the senders per second; latencies submit → inbox commit (`RECEIVED` event) and
//!    submit → receipt at the sender (`DELIVERED` event); CPU seconds per document of every
//!    process; fsync + fdatasync calls per document. A node acknowledges a submission once it
//!    is in its outbox, so a full-load run builds a backlog: its latencies measure the queue,
//!    and grow with N.
//! 2. **paced** (open loop) at a fixed rate, by default half the delivery rate of phase 1:
//!    the latency the target speaks of.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;
use exchange_core::config::DEFAULT_MAX_DOCUMENT_BYTES;
use serde::Serialize;

use super::{Ctx, check_arg, cpu_used, peak_rss, reached, sample_all};
use crate::{
    cli::parse_bytes,
    clock::{now_us, secs_between},
    events::Events,
    exchange::{Exchange, Plan},
    fsyncs::{FsyncCounter, FsyncCounts},
    load::{self, DocSpec, NodeClient},
    stats::{Summary, round3},
};

/// Flags of the steady scenario.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Scenario steady")]
pub struct SteadyArgs {
    /// Sending departments (K).
    #[arg(short = 'k', long = "senders", default_value_t = 2, value_name = "K")]
    pub senders: usize,
    /// Receiving departments (M).
    #[arg(short = 'm', long = "receivers", default_value_t = 2, value_name = "M")]
    pub receivers: usize,
    /// Documents in the full-load phase (N).
    #[arg(short = 'n', long = "docs", default_value_t = 20_000, value_name = "N")]
    pub docs: usize,
    /// Content size of each document (S), e.g. 4096 or 4KiB.
    #[arg(short = 's', long = "doc-bytes", default_value = "4096", value_parser = parse_bytes, value_name = "BYTES")]
    pub doc_bytes: u64,
    /// Most submissions outstanding per sender (W).
    #[arg(short = 'w', long = "window", default_value_t = 64, value_name = "W")]
    pub window: usize,
    /// Rate of the paced phase, documents per second in all; 0: half the full-load delivery
    /// rate.
    #[arg(long, default_value_t = 0.0, value_name = "DOCS_PER_SEC")]
    pub paced_rate: f64,
    /// Length of the paced phase in seconds; 0 skips it.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub paced_secs: f64,
}

/// The paced phase.
#[derive(Debug, Clone, Serialize)]
pub struct Paced {
    /// Documents per second submitted.
    pub rate: f64,
    /// Documents submitted.
    pub docs: usize,
    /// Of those, durable in their recipient's inbox.
    pub delivered: usize,
    /// Submit → durable in the recipient's inbox.
    #[serde(flatten)]
    pub latency: Summary,
    /// Submit → the recipient's receipt recorded at the sender.
    pub receipt_latency: Summary,
}

/// Figures of the steady scenario.
#[derive(Debug, Clone, Serialize)]
pub struct SteadyReport {
    /// K.
    pub senders: usize,
    /// M.
    pub receivers: usize,
    /// N.
    pub docs: usize,
    /// S.
    pub doc_bytes: u64,
    /// W.
    pub window: usize,
    /// Documents durable in their recipient's inbox (should be N).
    pub delivered: usize,
    /// Delivery receipts recorded at the senders (should be N).
    pub receipts: usize,
    /// Submissions acknowledged by the sending nodes per second.
    pub submits_per_sec: f64,
    /// Documents durable in the recipients' inboxes per second (first submit → last commit).
    pub docs_per_sec: f64,
    /// Delivery receipts back at the senders per second.
    pub receipts_per_sec: f64,
    /// Submit → durable in the recipient's inbox, at full load.
    #[serde(flatten)]
    pub latency: Summary,
    /// Submit → the recipient's receipt recorded at the sender, at full load.
    pub receipt_latency: Summary,
    /// CPU seconds per document of each process during the full-load phase.
    pub cpu_secs_per_doc: BTreeMap<String, f64>,
    /// CPU milliseconds per document during the full-load phase, every process measured: the
    /// hub, every node and the bench itself (which plays the departments' OA systems).
    pub cpu_ms_per_doc_total: f64,
    /// CPU milliseconds per document of the hub alone, during the full-load phase.
    pub cpu_ms_per_doc_hub: f64,
    /// fsync + fdatasync calls per document, all processes (if counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsyncs_per_doc: Option<f64>,
    /// The counts behind `fsyncs_per_doc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsyncs: Option<FsyncCounts>,
    /// System calls per document of each process (counted with perf only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls_per_doc: Option<BTreeMap<String, f64>>,
    /// Context switches per document of each process (counted with perf only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_switches_per_doc: Option<BTreeMap<String, f64>>,
    /// Peak RSS of each process, MiB.
    pub peak_rss_mib: BTreeMap<String, f64>,
    /// The paced phase, unless skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paced: Option<Paced>,
}

/// Runs the scenario on a fresh exchange.
pub async fn run(ctx: &Ctx, args: &SteadyArgs) -> Result<SteadyReport> {
    check_arg(
        args.senders >= 1 && args.receivers >= 1,
        "--senders and --receivers must be at least 1",
    )?;
    check_arg(
        args.docs >= 1 && args.doc_bytes >= 1 && args.window >= 1,
        "--docs, --doc-bytes and --window must be at least 1",
    )?;
    let senders: Vec<String> = (1..=args.senders).map(|i| format!("sender-{i}")).collect();
    let receivers: Vec<String> = (1..=args.receivers)
        .map(|i| format!("receiver-{i}"))
        .collect();
    let depts: Vec<String> = senders.iter().chain(&receivers).cloned().collect();
    let plan = Plan {
        name: "steady",
        depts: &depts,
        simulated: &[],
        max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES.max(args.doc_bytes),
    };
    let mut ex = Exchange::start(ctx, &plan).await?;
    let result = measure(ctx, args, &mut ex, &senders, &receivers).await;
    ex.stop(ctx.keep_dir).await;
    result
}

/// Document `j`: its sender's index and its spec.
fn doc(j: usize, args: &SteadyArgs, receivers: &[String]) -> (usize, DocSpec) {
    let receiver = &receivers[(j / args.senders) % args.receivers];
    let spec = DocSpec {
        to: vec![receiver.clone()],
        title: format!("steady {j}"),
        bytes: args.doc_bytes,
        seed: j as u64,
    };
    (j % args.senders, spec)
}

async fn measure(
    ctx: &Ctx,
    args: &SteadyArgs,
    ex: &mut Exchange,
    senders: &[String],
    receivers: &[String],
) -> Result<SteadyReport> {
    let mut events = Events::default();
    for d in senders.iter().chain(receivers) {
        events.follow(d, ex.api(d)?).await?;
    }
    let mut clients: Vec<NodeClient> = Vec::new();
    for s in senders {
        clients.push(ex.client(s).await?);
    }
    let n = args.docs;
    let mut jobs: Vec<Vec<DocSpec>> = vec![Vec::new(); senders.len()];
    for j in 0..n {
        let (s, spec) = doc(j, args, receivers);
        jobs[s].push(spec);
    }

    eprintln!("  full load: {n} documents, window {}", args.window);
    let procs = ex.processes();
    // The bench's own CPU too: it shares the cores with the daemons.
    let mut sampled = procs.clone();
    sampled.push(("exchange-bench".to_owned(), std::process::id()));
    let before = sample_all(&sampled)?;
    let counter = FsyncCounter::start(ctx.fsyncs, &procs, &ex.logs()).await?;
    let t0 = now_us();
    let subs = load::windowed(&clients, jobs, args.window).await?;
    let submitted_at = subs.iter().map(|s| s.end_us).max().unwrap_or(t0);
    events
        .wait("delivered", ctx.stall, |log| (log.received.len(), n))
        .await?;
    events
        .wait("receipts", ctx.stall, |log| (log.receipts.len(), n))
        .await?;
    let fsyncs = match counter {
        Some(c) => Some(c.stop().await?),
        None => None,
    };
    let after = sample_all(&sampled)?;
    ex.check_alive()?;
    let (inbox, receipts) =
        events.with(|log| (reached(&subs, &log.received), reached(&subs, &log.receipts)));

    let cpu_secs_per_doc = cpu_used(&before, &after, n as f64);
    let cpu_ms_per_doc_total = round3(cpu_secs_per_doc.values().sum::<f64>() * 1e3);
    let cpu_ms_per_doc_hub = round3(cpu_secs_per_doc.get("hub").copied().unwrap_or(0.0) * 1e3);
    let mut report = SteadyReport {
        senders: args.senders,
        receivers: args.receivers,
        docs: n,
        doc_bytes: args.doc_bytes,
        window: args.window,
        delivered: inbox.count,
        receipts: receipts.count,
        submits_per_sec: round3(n as f64 / secs_between(t0, submitted_at)),
        docs_per_sec: round3(inbox.count as f64 / secs_between(t0, inbox.last_us)),
        receipts_per_sec: round3(receipts.count as f64 / secs_between(t0, receipts.last_us)),
        latency: inbox.latency,
        receipt_latency: receipts.latency,
        cpu_secs_per_doc,
        cpu_ms_per_doc_total,
        cpu_ms_per_doc_hub,
        fsyncs_per_doc: fsyncs.as_ref().map(|f| round3(f.total as f64 / n as f64)),
        syscalls_per_doc: fsyncs
            .as_ref()
            .and_then(|f| per_doc(f.syscalls.as_ref(), n)),
        context_switches_per_doc: fsyncs
            .as_ref()
            .and_then(|f| per_doc(f.context_switches.as_ref(), n)),
        fsyncs,
        peak_rss_mib: BTreeMap::new(),
        paced: None,
    };
    if args.paced_secs > 0.0 {
        let rate = if args.paced_rate > 0.0 {
            args.paced_rate
        } else {
            report.docs_per_sec / 2.0
        };
        report.paced = Some(paced(ctx, args, &events, &clients, receivers, rate).await?);
    }
    report.peak_rss_mib = peak_rss(&sample_all(&procs)?);
    Ok(report)
}

/// Counts per process divided by `n` documents.
fn per_doc(counts: Option<&BTreeMap<String, u64>>, n: usize) -> Option<BTreeMap<String, f64>> {
    counts.map(|c| {
        c.iter()
            .map(|(k, v)| (k.clone(), round3(*v as f64 / n as f64)))
            .collect()
    })
}

/// The paced phase: `rate × paced_secs` more documents, open loop.
async fn paced(
    ctx: &Ctx,
    args: &SteadyArgs,
    events: &Events,
    clients: &[NodeClient],
    receivers: &[String],
    rate: f64,
) -> Result<Paced> {
    let count = ((rate * args.paced_secs).round() as usize).max(1);
    eprintln!("  paced: {count} documents at {rate:.0}/s");
    let specs: Vec<(usize, DocSpec)> = (args.docs..args.docs + count)
        .map(|j| doc(j, args, receivers))
        .collect();
    let subs = load::paced(clients, specs, rate).await?;
    let want = args.docs + count;
    events
        .wait("paced: delivered", ctx.stall, |log| {
            (log.received.len(), want)
        })
        .await?;
    events
        .wait("paced: receipts", ctx.stall, |log| {
            (log.receipts.len(), want)
        })
        .await?;
    let (inbox, receipts) =
        events.with(|log| (reached(&subs, &log.received), reached(&subs, &log.receipts)));
    Ok(Paced {
        rate: round3(rate),
        docs: count,
        delivered: inbox.count,
        latency: inbox.latency,
        receipt_latency: receipts.latency,
    })
}
