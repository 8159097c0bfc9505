//! What a process costs, read from `/proc`: CPU time, resident memory, open file descriptors.

use std::{fs, sync::OnceLock};

use anyhow::{Context, Result};
use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    /// User + system CPU seconds since the process started (`/proc/PID/stat` utime + stime).
    pub cpu_secs: f64,
    /// Resident set now, MiB (`VmRSS`).
    pub rss_mib: f64,
    /// Peak resident set since the process started, MiB (`VmHWM`).
    pub peak_rss_mib: f64,
    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub fds: usize,
}

/// Reads `pid` now.
pub fn sample(pid: u32) -> Result<Sample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (has the process exited?)"))?;
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count();
    Ok(Sample {
        cpu_secs: cpu_secs(pid)?,
        rss_mib: status_kib(&status, "VmRSS:") / 1024.0,
        peak_rss_mib: status_kib(&status, "VmHWM:") / 1024.0,
        fds,
    })
}

/// User + system CPU seconds of `pid` (all its threads).
pub fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("/proc/{pid}/stat: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let ticks = |i: usize| -> Result<f64> {
        let f = fields
            .get(i)
            .with_context(|| format!("/proc/{pid}/stat: too few fields"))?;
        Ok(f.parse::<u64>()
            .with_context(|| format!("/proc/{pid}/stat: field {f:?}"))? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / clock_ticks())
}

/// The soft limit on open files of `pid`.
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn status_kib(status: &str, key: &str) -> f64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` once (this crate has no libc); 100 if unknown,
/// which is what Linux uses everywhere in practice.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Facts about this machine for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may run on.
    pub cpus: usize,
    /// Total memory, GiB.
    pub mem_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// Every process of the benchmark runs on these same CPUs (loopback).
    pub note: &'static str,
}

impl Machine {
    /// Reads the facts.
    pub fn detect() -> Self {
        let mem_kib = fs::read_to_string("/proc/meminfo")
            .map(|m| status_kib(&m, "MemTotal:"))
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            mem_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            note: "loopback: the hub, every node, the simulated nodes and the bench share these CPUs",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_mib > 0.0 && s.peak_rss_mib >= s.rss_mib);
        assert!(s.fds >= 3);
        assert!(s.cpu_secs >= 0.0);
        assert!(open_files_limit(std::process::id()).is_some_and(|n| n > 0));
    }
}
