//! The scenarios of issue 7, one module each, and what they share: the run's [`Ctx`] and
//! readings of the processes.

pub mod connections;
pub mod fanout;
pub mod large;
pub mod steady;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::Duration,
};

use anyhow::Result;

use crate::{
    cli::{FsyncMode, RunArgs},
    clock::ms_between,
    daemon::Bins,
    events::DocDept,
    load::Submitted,
    procstat::{self, Sample},
    stats::Summary,
};

/// What every scenario needs from the command line.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The binaries.
    pub bins: Bins,
    /// Where to create scenario directories (default: the system's temp dir).
    pub work_dir: Option<PathBuf>,
    /// Keep each scenario's directory.
    pub keep_dir: bool,
    /// `RUST_LOG` of the daemons.
    pub daemon_log: String,
    /// How to count fsyncs.
    pub fsyncs: FsyncMode,
    /// How long without progress before giving up.
    pub stall: Duration,
    /// Simulated departments connecting at the same time.
    pub connect_concurrency: usize,
    /// Store content in clear (no `[encryption]`): to measure what encryption at rest costs.
    pub plaintext: bool,
    /// The crypto profile of the exchange under test.
    pub profile: exchange_core::crypto::Profile,
    /// The hub's PostgreSQL database, if not `hub.redb`.
    pub hub_store_url: Option<String>,
}

impl Ctx {
    /// From the command line; fails if the daemons cannot be found.
    pub fn new(args: &RunArgs) -> Result<Self> {
        // exchange-core may have the feature through another crate of the build; the
        // simulated departments need the bench's own (its SM2 identities).
        anyhow::ensure!(
            args.profile == exchange_core::crypto::Profile::International
                || cfg!(feature = "shangmi"),
            "--profile {}: this exchange-bench was built without 国密 support (build it with \
             --features exchange-bench/shangmi, and the daemons with theirs)",
            args.profile
        );
        Ok(Ctx {
            bins: Bins::locate(args.bin_dir.as_deref())?,
            work_dir: args.work_dir.clone(),
            keep_dir: args.keep_dir,
            daemon_log: args.daemon_log.clone(),
            fsyncs: args.fsyncs,
            stall: Duration::from_secs(args.stall_secs.max(1)),
            connect_concurrency: args.connect_concurrency.max(1),
            plaintext: args.plaintext,
            profile: args.profile,
            hub_store_url: args.hub_store_url.clone(),
        })
    }
}

/// Reads every `(name, pid)`.
pub fn sample_all(procs: &[(String, u32)]) -> Result<BTreeMap<String, Sample>> {
    procs
        .iter()
        .map(|(name, pid)| Ok((name.clone(), procstat::sample(*pid)?)))
        .collect()
}

/// CPU seconds each process used between two readings, divided by `per` (e.g. documents).
pub fn cpu_used(
    before: &BTreeMap<String, Sample>,
    after: &BTreeMap<String, Sample>,
    per: f64,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, a)| {
            let b = before.get(name).map_or(0.0, |b| b.cpu_secs);
            let used = (a.cpu_secs - b) / per.max(1e-9);
            (name.clone(), (used * 1e6).round() / 1e6)
        })
        .collect()
}

/// The peak RSS (MiB) of each process, from the last reading.
pub fn peak_rss(after: &BTreeMap<String, Sample>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, s)| (name.clone(), s.peak_rss_mib))
        .collect()
}

/// Fails with `what` unless `ok`: for flags that make no sense (0 documents, ...).
pub fn check_arg(ok: bool, what: &str) -> Result<()> {
    anyhow::ensure!(ok, "{what}");
    Ok(())
}

/// When each (document, recipient) of some submissions reached a milestone.
#[derive(Debug, Clone)]
pub struct Reached {
    /// How many (document, recipient) pairs reached it.
    pub count: usize,
    /// Submit call start → milestone, in ms, per pair.
    pub latency: Summary,
    /// When the last pair reached it (0 if none did).
    pub last_us: i64,
    /// When the first pair reached it (0 if none did).
    pub first_us: i64,
}

/// Which of `subs`' (document, recipient) pairs are in `seen` (e.g. `received`), and when.
pub fn reached(subs: &[Submitted], seen: &HashMap<DocDept, i64>) -> Reached {
    let mut samples = Vec::new();
    let (mut first, mut last) = (i64::MAX, 0);
    for s in subs {
        for to in &s.to {
            if let Some(&t) = seen.get(&(s.doc_id.clone(), to.clone())) {
                samples.push(ms_between(s.start_us, t));
                first = first.min(t);
                last = last.max(t);
            }
        }
    }
    Reached {
        count: samples.len(),
        latency: Summary::of(samples),
        last_us: last,
        first_us: if last == 0 { 0 } else { first },
    }
}
