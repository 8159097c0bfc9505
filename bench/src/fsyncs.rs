//! Counting the daemons' `fsync` and `fdatasync` calls during a measured phase, to check that
//! flushes are batched (group commit) rather than one per document per hop.
//!
//! `perf stat` counts the syscall tracepoints in the kernel, attached to each running daemon
//! (threads started later included) — cheap enough not to change the figures. With perf, every
//! system call and every context switch is counted too: what a document costs the kernel and
//! the scheduler, a profile that does not depend on how busy the machine is. `strace -f -c`
//! stops every traced thread at every system call it makes, so a run measured with it is much
//! slower; its counts are right, its throughput is not.

use std::{collections::BTreeMap, path::Path, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::{cli::FsyncMode, daemon::poll_until, daemon::signal};

/// The tool that counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Perf,
    Strace,
}

/// Counts per process.
#[derive(Debug, Clone, Serialize)]
pub struct FsyncCounts {
    /// `perf` or `strace`.
    pub tool: &'static str,
    /// fsync + fdatasync calls of each process.
    pub per_process: BTreeMap<String, u64>,
    /// All of them.
    pub total: u64,
    /// System calls of each process (perf only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<BTreeMap<String, u64>>,
    /// Context switches of each process (perf only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_switches: Option<BTreeMap<String, u64>>,
}

/// What perf counts: fsyncs first, then the profile.
const PERF_EVENTS: &str = "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,\
                           raw_syscalls:sys_enter,context-switches";

/// Counters attached to running processes.
#[derive(Debug)]
pub struct FsyncCounter {
    tool: Tool,
    counters: Vec<(String, Child, std::path::PathBuf)>,
}

/// The tool `mode` resolves to on this machine, or why there is none.
fn choose(mode: FsyncMode) -> Result<Option<Tool>, String> {
    let works = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let perf = || {
        works(
            "perf",
            &["stat", "-e", "syscalls:sys_enter_fsync", "--", "true"],
        )
    };
    let strace = || works("strace", &["-V"]);
    match mode {
        FsyncMode::Off => Ok(None),
        FsyncMode::Perf if perf() => Ok(Some(Tool::Perf)),
        FsyncMode::Perf => Err("perf cannot count syscall tracepoints here".to_owned()),
        FsyncMode::Strace if strace() => Ok(Some(Tool::Strace)),
        FsyncMode::Strace => Err("strace is not installed".to_owned()),
        FsyncMode::Auto if perf() => Ok(Some(Tool::Perf)),
        FsyncMode::Auto if strace() => Ok(Some(Tool::Strace)),
        FsyncMode::Auto => Err("neither perf (with tracepoints) nor strace is usable".to_owned()),
    }
}

impl FsyncCounter {
    /// Attaches a counter to each `(name, pid)`, writing into `dir`; `None` (with a note on
    /// stderr) if `mode` is off or no tool is usable.
    pub async fn start(
        mode: FsyncMode,
        procs: &[(String, u32)],
        dir: &Path,
    ) -> Result<Option<Self>> {
        let tool = match choose(mode) {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(None),
            Err(why) if mode == FsyncMode::Auto => {
                eprintln!("  fsyncs not counted: {why}");
                return Ok(None);
            }
            Err(why) => bail!("--fsyncs: {why}"),
        };
        if tool == Tool::Strace {
            eprintln!("  counting fsyncs with strace: the daemons run much slower in this phase");
        }
        let mut counters = Vec::new();
        for (name, pid) in procs {
            let out = dir.join(format!("fsyncs-{name}.txt"));
            let mut cmd = match tool {
                Tool::Perf => {
                    let mut c = Command::new("perf");
                    c.args(["stat", "-x", ",", "-e", PERF_EVENTS]);
                    c
                }
                Tool::Strace => {
                    let mut c = Command::new("strace");
                    c.args(["-f", "-c", "-e", "trace=fsync,fdatasync"]);
                    c
                }
            };
            cmd.arg("-p")
                .arg(pid.to_string())
                .arg("-o")
                .arg(&out)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            let child = cmd.spawn().context("starting the fsync counter")?;
            let counter_pid = child.id().context("fsync counter exited at once")?;
            attached(tool, counter_pid, *pid).await?;
            counters.push((name.clone(), child, out));
        }
        Ok(Some(FsyncCounter { tool, counters }))
    }

    /// Detaches every counter and reads the counts.
    pub async fn stop(self) -> Result<FsyncCounts> {
        let mut per_process = BTreeMap::new();
        let (mut syscalls, mut switches) = (BTreeMap::new(), BTreeMap::new());
        for (name, mut child, out) in self.counters {
            if let Some(pid) = child.id() {
                signal(pid, "INT")?;
            }
            tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .context("the fsync counter did not stop")??;
            let text = std::fs::read_to_string(&out)
                .with_context(|| format!("reading {}", out.display()))?;
            let n = match self.tool {
                Tool::Perf => {
                    syscalls.insert(name.clone(), perf_count(&text, &["raw_syscalls:sys_enter"]));
                    switches.insert(name.clone(), perf_count(&text, &["context-switches"]));
                    perf_count(&text, &["sys_enter_fsync", "sys_enter_fdatasync"])
                }
                Tool::Strace => parse_strace(&text),
            };
            per_process.insert(name, n);
        }
        let perf = self.tool == Tool::Perf;
        Ok(FsyncCounts {
            tool: if perf { "perf" } else { "strace" },
            total: per_process.values().sum(),
            per_process,
            syscalls: perf.then_some(syscalls),
            context_switches: perf.then_some(switches),
        })
    }
}

/// Waits until the counter has attached to `target`: perf holds perf_event descriptors, strace
/// shows as the target's tracer.
async fn attached(tool: Tool, counter: u32, target: u32) -> Result<()> {
    poll_until(
        "the fsync counter to attach",
        Duration::from_secs(20),
        || async move {
            Ok(match tool {
                Tool::Perf => std::fs::read_dir(format!("/proc/{counter}/fd"))?
                    .flatten()
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .any(|l| l.to_string_lossy().contains("perf_event"))
                    .then_some(()),
                Tool::Strace => std::fs::read_to_string(format!("/proc/{target}/status"))?
                    .lines()
                    .find_map(|l| l.strip_prefix("TracerPid:"))
                    .is_some_and(|p| p.trim() != "0")
                    .then_some(()),
            })
        },
    )
    .await?;
    // perf enables its counters right after opening them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// Sums the counts of `events` in `perf stat -x,` output (`count,unit,event,...`).
fn perf_count(text: &str, events: &[&str]) -> u64 {
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            let event = cols.get(2)?.trim();
            events
                .iter()
                .any(|e| event.ends_with(e))
                .then(|| cols.first()?.trim().parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

/// Sums the `calls` column of the fsync and fdatasync rows of `strace -c`.
fn parse_strace(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let name = *cols.last()?;
            (name == "fsync" || name == "fdatasync")
                .then(|| cols.get(3)?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_tools() {
        let perf = "# started on x\n\n7,,syscalls:sys_enter_fsync,6939279,100.00,,\n\
                    3,,syscalls:sys_enter_fdatasync,6939279,100.00,,\n\
                    90,,raw_syscalls:sys_enter,6939279,100.00,,\n\
                    <not counted>,,context-switches,0,100.00,,\n";
        assert_eq!(
            perf_count(perf, &["sys_enter_fsync", "sys_enter_fdatasync"]),
            10
        );
        assert_eq!(perf_count(perf, &["raw_syscalls:sys_enter"]), 90);
        assert_eq!(perf_count(perf, &["context-switches"]), 0);
        let strace = "% time     seconds  usecs/call     calls    errors syscall\n\
            ------ ----------- ----------- --------- --------- ----------------\n\
             90.00    0.000262          37         7           fsync\n\
             10.00    0.000020          10         2         1 fdatasync\n\
            ------ ----------- ----------- --------- --------- ----------------\n\
            100.00    0.000282          31         9         1 total\n";
        assert_eq!(parse_strace(strace), 9);
    }
}
