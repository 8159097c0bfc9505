//! The figures of a run: a table for people, or exactly one JSON document (each scenario an
//! object under its name) for scripts that compare runs.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::{
    procstat::Machine,
    scenario::{
        Ctx, connections::ConnectionsReport, fanout::FanoutReport, large::LargeReport,
        steady::SteadyReport,
    },
    stats::Summary,
};

/// A scenario's figures, or why it has none.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Outcome<T> {
    /// It ran.
    Done(T),
    /// It failed; `error` says why.
    Failed {
        /// The error, with its causes.
        error: String,
    },
}

impl<T> From<Result<T>> for Outcome<T> {
    fn from(r: Result<T>) -> Self {
        match r {
            Ok(t) => Outcome::Done(t),
            Err(e) => {
                eprintln!("  failed: {e:#}");
                Outcome::Failed {
                    error: format!("{e:#}"),
                }
            }
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Where the daemons came from (a `release` or `debug` target directory).
    pub bin_dir: PathBuf,
    /// Whether the stores encrypted content at rest (`--plaintext` turns it off).
    pub encryption: bool,
    /// The crypto profile of the exchange measured (`--profile`).
    pub profile: exchange_core::crypto::Profile,
    /// Scenario steady, if run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady: Option<Outcome<SteadyReport>>,
    /// Scenario large, if run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub large: Option<Outcome<LargeReport>>,
    /// Scenario fanout, if run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanout: Option<Outcome<FanoutReport>>,
    /// Scenario connections, if run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<Outcome<ConnectionsReport>>,
}

impl Report {
    /// An empty report for a run with `ctx`.
    pub fn new(ctx: &Ctx) -> Self {
        Report {
            machine: Machine::detect(),
            bin_dir: ctx.bins.hub.parent().map(PathBuf::from).unwrap_or_default(),
            encryption: !ctx.plaintext,
            profile: ctx.profile,
            steady: None,
            large: None,
            fanout: None,
            connections: None,
        }
    }

    /// Whether any scenario failed.
    pub fn any_failed(&self) -> bool {
        let failed = |o: Option<bool>| o.unwrap_or(false);
        failed(self.steady.as_ref().map(is_failed))
            || failed(self.large.as_ref().map(is_failed))
            || failed(self.fanout.as_ref().map(is_failed))
            || failed(self.connections.as_ref().map(is_failed))
    }

    /// Prints the table, or the JSON document, to stdout.
    pub fn print(&self, json: bool) -> Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        } else {
            print!("{}", self.table());
        }
        Ok(())
    }

    /// The table.
    pub fn table(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "exchange-bench: {} CPUs, {} GiB, Linux {}, daemons from {}, {}\n({})\n\n",
            m.cpus,
            m.mem_gib,
            m.kernel,
            self.bin_dir.display(),
            if self.encryption {
                "content encrypted at rest"
            } else {
                "content in clear (--plaintext)"
            },
            m.note
        );
        let mut rows: Vec<(&str, String, String)> = Vec::new();
        let mut add = |name: &'static str, r: Vec<(String, String)>| {
            rows.extend(r.into_iter().map(|(k, v)| (name, k, v)));
        };
        if let Some(o) = &self.steady {
            add("steady", outcome_rows(o, steady_rows));
        }
        if let Some(o) = &self.large {
            add("large", outcome_rows(o, large_rows));
        }
        if let Some(o) = &self.fanout {
            add("fanout", outcome_rows(o, fanout_rows));
        }
        if let Some(o) = &self.connections {
            add("connections", outcome_rows(o, connections_rows));
        }
        let w1 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(8);
        let w2 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(6);
        let _ = writeln!(out, "{:w1$}  {:w2$}  value", "scenario", "metric");
        let _ = writeln!(
            out,
            "{}  {}  {}",
            "-".repeat(w1),
            "-".repeat(w2),
            "-".repeat(24)
        );
        for (s, k, v) in rows {
            let _ = writeln!(out, "{s:w1$}  {k:w2$}  {v}");
        }
        out
    }
}

fn is_failed<T>(o: &Outcome<T>) -> bool {
    matches!(o, Outcome::Failed { .. })
}

fn outcome_rows<T>(o: &Outcome<T>, f: fn(&T) -> Vec<(String, String)>) -> Vec<(String, String)> {
    match o {
        Outcome::Done(t) => f(t),
        Outcome::Failed { error } => vec![("FAILED".to_owned(), error.clone())],
    }
}

fn row(k: &str, v: impl std::fmt::Display) -> (String, String) {
    (k.to_owned(), v.to_string())
}

fn per_process<V: std::fmt::Display>(m: &BTreeMap<String, V>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fixed(m: &BTreeMap<String, f64>, decimals: usize) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, v)| (k.clone(), format!("{v:.decimals$}")))
        .collect()
}

fn latency(s: &Summary) -> String {
    s.short()
}

fn steady_rows(r: &SteadyReport) -> Vec<(String, String)> {
    let cpu_ms: BTreeMap<String, f64> = r
        .cpu_secs_per_doc
        .iter()
        .map(|(k, v)| (k.clone(), v * 1000.0))
        .collect();
    let mut rows = vec![
        row(
            "parameters",
            format!(
                "K={} M={} N={} S={} W={}",
                r.senders, r.receivers, r.docs, r.doc_bytes, r.window
            ),
        ),
        row(
            "delivered / receipts",
            format!("{} / {}", r.delivered, r.receipts),
        ),
        row(
            "submissions acknowledged /s",
            format!("{:.0}", r.submits_per_sec),
        ),
        row(
            "documents durable in inboxes /s",
            format!("{:.0}", r.docs_per_sec),
        ),
        row(
            "receipts back at senders /s",
            format!("{:.0}", r.receipts_per_sec),
        ),
        row("full load: end-to-end p50/p99/max", latency(&r.latency)),
        row(
            "full load: receipt p50/p99/max",
            latency(&r.receipt_latency),
        ),
        row("CPU ms per document", per_process(&fixed(&cpu_ms, 3))),
        row(
            "CPU ms per document: all / hub",
            format!(
                "{:.3} / {:.3}",
                r.cpu_ms_per_doc_total, r.cpu_ms_per_doc_hub
            ),
        ),
    ];
    match (&r.fsyncs_per_doc, &r.fsyncs) {
        (Some(per), Some(f)) => rows.push(row(
            "fsync+fdatasync per document",
            format!("{per:.2} ({}: {})", f.tool, per_process(&f.per_process)),
        )),
        _ => rows.push(row("fsync+fdatasync per document", "not counted")),
    }
    if let Some(m) = &r.syscalls_per_doc {
        rows.push(row("system calls per document", per_process(&fixed(m, 0))));
    }
    if let Some(m) = &r.context_switches_per_doc {
        rows.push(row(
            "context switches per document",
            per_process(&fixed(m, 0)),
        ));
    }
    if let Some(p) = &r.paced {
        rows.push(row(
            "paced",
            format!(
                "{} documents at {:.0}/s, {} delivered",
                p.docs, p.rate, p.delivered
            ),
        ));
        rows.push(row("paced: end-to-end p50/p99/max", latency(&p.latency)));
        rows.push(row(
            "paced: receipt p50/p99/max",
            latency(&p.receipt_latency),
        ));
    }
    rows.push(row("peak RSS MiB", per_process(&fixed(&r.peak_rss_mib, 1))));
    rows
}

fn large_rows(r: &LargeReport) -> Vec<(String, String)> {
    let stage =
        |s: &crate::scenario::large::Stage| format!("{:.2} s ({:.0} MiB/s)", s.secs, s.mib_per_sec);
    vec![
        row("size", format!("{} MiB", r.bytes >> 20)),
        row(
            "delivered / verified",
            format!(
                "{} / {}",
                r.delivered,
                r.verified
                    .map_or_else(|| "not checked".to_owned(), |v| v.to_string())
            ),
        ),
        row("end-to-end MiB/s", format!("{:.1}", r.mib_per_sec)),
        row(
            "node to node MiB/s",
            format!("{:.1}", r.node_to_node_mib_per_sec),
        ),
        row("stage: system → sending node", stage(&r.submit)),
        row("stage: sending node → hub", stage(&r.upload)),
        row("stage: hub → receiving node", stage(&r.download)),
        row("receipt back at sender", format!("{:.3} s", r.receipt_secs)),
        row("peak RSS MiB", per_process(&fixed(&r.peak_rss_mib, 1))),
        row("CPU seconds", per_process(&fixed(&r.cpu_secs, 2))),
    ]
}

fn fanout_rows(r: &FanoutReport) -> Vec<(String, String)> {
    vec![
        row("recipients", r.recipients),
        row(
            "delivered / receipts",
            format!("{} / {}", r.delivered, r.receipts),
        ),
        row("all inboxes durable", format!("{:.0} ms", r.all_durable_ms)),
        row(
            "first inbox durable",
            format!("{:.0} ms", r.first_durable_ms),
        ),
        row("per recipient p50/p99/max", latency(&r.durable)),
        row(
            "all receipts at sender",
            format!("{:.0} ms", r.all_receipts_ms),
        ),
        row("CPU seconds", per_process(&fixed(&r.cpu_secs, 2))),
        row("peak RSS MiB", per_process(&fixed(&r.peak_rss_mib, 1))),
    ]
}

fn connections_rows(r: &ConnectionsReport) -> Vec<(String, String)> {
    vec![
        row(
            "connected departments",
            format!("{} / {}", r.connected, r.connections),
        ),
        row("connect all", format!("{:.1} s", r.connect_secs)),
        row("hub at rest: RSS", format!("{:.1} MiB", r.hub_rss_mib)),
        row("hub at rest: open fds", r.hub_fds),
        row(
            "hub at rest: CPU",
            format!("{:.1} % of a core", r.hub_cpu_percent_at_rest),
        ),
        row(
            "hub after load: RSS / peak",
            format!(
                "{:.1} / {:.1} MiB",
                r.hub_rss_mib_after_load, r.hub_peak_rss_mib
            ),
        ),
        row("simulated nodes: RSS", format!("{:.1} MiB", r.sim_rss_mib)),
        row(
            "light load",
            format!(
                "{} documents at {}/s, {} delivered",
                r.docs, r.rate, r.delivered
            ),
        ),
        row("end-to-end p50/p99/max", latency(&r.latency)),
        row("receipt p50/p99/max", latency(&r.receipt_latency)),
    ]
}
