//! **large**: one large document (default 1 GiB) from a sending to a receiving department.
//!
//! The document streams through four hops, each ending in an fsync and a digest check: the
//! department system → the sending node (`Submit`), the node → the hub (`PutBlob`, then
//! `Submit`), the hub → the receiving node (`GetBlob`, inbox commit), and the receipt back.
//! Reports end-to-end MiB/s (submit call → durable in the recipient's inbox), each stage's
//! time and MiB/s, and the peak RSS of every process; then reads the document back from the
//! recipient and compares its SHA-256 with what was sent.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use clap::Args;
use exchange_core::config::DEFAULT_MAX_DOCUMENT_BYTES;
use serde::Serialize;

use super::{Ctx, check_arg, cpu_used, peak_rss, sample_all};
use crate::{
    cli::parse_bytes,
    clock::secs_between,
    events::Events,
    exchange::{Exchange, Plan},
    load::{self, Content, DocSpec},
    stats::round3,
};

const SENDER: &str = "sender-1";
const RECEIVER: &str = "receiver-1";
const SEED: u64 = 0x1a_46e;

/// Flags of the large scenario.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Scenario large")]
pub struct LargeArgs {
    /// Size of the document, e.g. 1GiB or 16MiB.
    #[arg(long = "large-bytes", default_value = "1GiB", value_parser = parse_bytes, value_name = "BYTES")]
    pub large_bytes: u64,
    /// Do not read the document back from the recipient to compare digests.
    #[arg(long = "large-no-verify")]
    pub no_verify: bool,
}

/// One stage of the journey.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// Seconds.
    pub secs: f64,
    /// MiB per second over the stage.
    pub mib_per_sec: f64,
}

/// Figures of the large scenario.
#[derive(Debug, Clone, Serialize)]
pub struct LargeReport {
    /// Document size.
    pub bytes: u64,
    /// 1 once the document is durable in the recipient's inbox.
    pub delivered: usize,
    /// Whether the recipient's copy has the sent SHA-256 (None: not checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Submit call start → durable in the recipient's inbox.
    pub mib_per_sec: f64,
    /// Durable at the sending node (submit acknowledged) → durable in the recipient's inbox:
    /// the exchange's own part of the journey.
    pub node_to_node_mib_per_sec: f64,
    /// Department system → sending node, until the node acknowledged.
    pub submit: Stage,
    /// Sending node → hub, until the sender recorded the hub's acceptance.
    pub upload: Stage,
    /// Hub → receiving node, until its inbox commit.
    pub download: Stage,
    /// Until the receipt was recorded at the sender, from the inbox commit.
    pub receipt_secs: f64,
    /// Peak RSS of each process, MiB (`exchange-bench` includes every earlier scenario).
    pub peak_rss_mib: BTreeMap<String, f64>,
    /// CPU seconds of each process for the document.
    pub cpu_secs: BTreeMap<String, f64>,
}

/// Runs the scenario on a fresh exchange.
pub async fn run(ctx: &Ctx, args: &LargeArgs) -> Result<LargeReport> {
    check_arg(args.large_bytes >= 1, "--large-bytes must be at least 1")?;
    let depts = [SENDER.to_owned(), RECEIVER.to_owned()];
    let plan = Plan {
        name: "large",
        depts: &depts,
        simulated: &[],
        max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES.max(args.large_bytes),
    };
    let mut ex = Exchange::start(ctx, &plan).await?;
    let result = measure(ctx, args, &mut ex).await;
    ex.stop(ctx.keep_dir).await;
    result
}

fn stage(bytes: u64, from_us: i64, to_us: i64) -> Stage {
    let secs = secs_between(from_us, to_us);
    Stage {
        secs: round3(secs),
        mib_per_sec: round3(bytes as f64 / (1 << 20) as f64 / secs),
    }
}

async fn measure(ctx: &Ctx, args: &LargeArgs, ex: &mut Exchange) -> Result<LargeReport> {
    let mut events = Events::default();
    for d in [SENDER, RECEIVER] {
        events.follow(d, ex.api(d)?).await?;
    }
    let mut procs = ex.processes();
    procs.push(("exchange-bench".to_owned(), std::process::id()));
    let before = sample_all(&procs)?;
    let mut client = ex.client(SENDER).await?;
    let spec = DocSpec {
        to: vec![RECEIVER.to_owned()],
        title: "large".to_owned(),
        bytes: args.large_bytes,
        seed: SEED,
    };
    eprintln!("  one document of {} MiB", args.large_bytes >> 20);
    let sub = load::submit(&mut client, spec).await?;
    events
        .wait("delivered", ctx.stall, |log| (log.received.len(), 1))
        .await?;
    events
        .wait("receipt", ctx.stall, |log| (log.receipts.len(), 1))
        .await?;
    let after = sample_all(&procs)?;
    ex.check_alive()?;
    let key = (sub.doc_id.clone(), RECEIVER.to_owned());
    let (accepted, received, receipt) = events.with(|log| {
        (
            log.accepted.get(&key).copied(),
            log.received.get(&key).copied(),
            log.receipts.get(&key).copied(),
        )
    });
    let received = received.context("no RECEIVED event for the document")?;
    let receipt = receipt.context("no receipt for the document")?;
    // The ACCEPTED event can be overtaken by the receipt (the sender then skips it).
    let accepted = accepted.unwrap_or(received);

    let verified = if args.no_verify {
        None
    } else {
        eprintln!("  reading it back from {RECEIVER}");
        let mut recipient = ex.client(RECEIVER).await?;
        let (digest, size) =
            load::fetch_digest(&mut recipient, &sub.doc_id, ctx.profile.digest()).await?;
        let expected = Content::digest(ctx.profile.digest(), args.large_bytes, SEED)?;
        Some(size == args.large_bytes && digest == expected)
    };
    let end_to_end = stage(args.large_bytes, sub.start_us, received);
    Ok(LargeReport {
        bytes: args.large_bytes,
        delivered: 1,
        verified,
        mib_per_sec: end_to_end.mib_per_sec,
        node_to_node_mib_per_sec: stage(args.large_bytes, sub.end_us, received).mib_per_sec,
        submit: stage(args.large_bytes, sub.start_us, sub.end_us),
        upload: stage(args.large_bytes, sub.end_us, accepted),
        download: stage(args.large_bytes, accepted, received),
        receipt_secs: round3(secs_between(received, receipt)),
        peak_rss_mib: peak_rss(&after),
        cpu_secs: cpu_used(&before, &after, 1.0),
    })
}
