//! `exchange-bench`: measured speed of the document exchange (issue 7).
//!
//! Every scenario starts a fresh exchange — the real `exchange-hub` and `exchange-node`
//! binaries, a PKI made now with `exchange-certs`, mutual TLS and redb on loopback — and drives
//! it through the nodes' local API the way a department system would:
//!
//! - [`scenario::steady`]: K senders to M receivers, N documents, throughput and latency;
//! - [`scenario::large`]: one large document, MiB/s and every process's peak RSS;
//! - [`scenario::fanout`]: one notice to R (simulated) recipients;
//! - [`scenario::connections`]: C connected (simulated) departments, the hub's footprint.
//!
//! The supporting pieces: [`exchange`] and [`daemon`] (laying out and running the exchange),
//! [`load`] (submissions), [`events`] (what the nodes report on `WatchEvents`), [`sim`] (light
//! simulated departments speaking the real protocol), [`procstat`] and [`fsyncs`] (what the
//! processes cost), [`stats`] and [`report`] (figures, table and JSON).

#![warn(missing_docs)]

pub mod cli;
pub mod clock;
pub mod daemon;
pub mod events;
pub mod exchange;
pub mod fsyncs;
pub mod load;
pub mod procstat;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod stats;

use report::{Outcome, Report};
use scenario::Ctx;

/// Runs the scenarios `args` asks for, one after another, each on a fresh exchange. A scenario
/// that fails is reported as failed and the others still run.
pub async fn run(args: cli::RunArgs) -> anyhow::Result<Report> {
    use cli::Scenario;
    let ctx = Ctx::new(&args)?;
    let mut report = Report::new(&ctx);
    if args.wants(Scenario::Steady) {
        eprintln!("== steady");
        report.steady = Some(Outcome::from(
            scenario::steady::run(&ctx, &args.steady).await,
        ));
    }
    if args.wants(Scenario::Large) {
        eprintln!("== large");
        report.large = Some(Outcome::from(scenario::large::run(&ctx, &args.large).await));
    }
    if args.wants(Scenario::Fanout) {
        eprintln!("== fanout");
        report.fanout = Some(Outcome::from(
            scenario::fanout::run(&ctx, &args.fanout).await,
        ));
    }
    if args.wants(Scenario::Connections) {
        eprintln!("== connections");
        report.connections = Some(Outcome::from(
            scenario::connections::run(&ctx, &args.connections).await,
        ));
    }
    Ok(report)
}
