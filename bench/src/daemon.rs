//! The processes of a run: finding the binaries, starting them with a raised file-descriptor
//! limit and their output in a log file, and stopping them.

use std::{
    ffi::OsString,
    future::Future,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// Raises the soft open-files limit to the hard limit, then becomes the program. Rust's std has
/// no setrlimit, and the hub and the simulated nodes need one descriptor per connection.
const RAISE_NOFILE: &str = r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@""#;

/// Where the daemons are.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `exchange-hub`.
    pub hub: PathBuf,
    /// `exchange-node`.
    pub node: PathBuf,
    /// This executable, which also runs the simulated nodes.
    pub bench: PathBuf,
}

impl Bins {
    /// The daemons in `dir`, or next to this executable (the same cargo profile directory).
    pub fn locate(dir: Option<&Path>) -> Result<Self> {
        let bench = std::env::current_exe().context("finding this executable")?;
        let dir = match dir {
            Some(d) => d.to_owned(),
            None => bench
                .parent()
                .context("this executable has no directory")?
                .to_owned(),
        };
        let bins = Bins {
            hub: dir.join("exchange-hub"),
            node: dir.join("exchange-node"),
            bench,
        };
        for b in [&bins.hub, &bins.node] {
            if !b.is_file() {
                bail!(
                    "{} not found: build the daemons next to exchange-bench with \
                     `cargo build --release --workspace --bins`, or pass --bin-dir",
                    b.display()
                );
            }
        }
        Ok(bins)
    }
}

/// A running child process, killed if dropped.
#[derive(Debug)]
pub struct Daemon {
    /// Its name in the report (`hub`, a department id, `sim-nodes`).
    pub name: String,
    /// Its process id (the program itself: the shell that raised the limit exec'd it).
    pub pid: u32,
    child: Child,
}

impl Daemon {
    /// Starts `program args` with its stdout and stderr appended to `log` and `RUST_LOG` set.
    /// With `stdin_pipe`, its stdin is a pipe the caller can take; otherwise /dev/null.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[OsString],
        log: &Path,
        rust_log: &str,
        piped: bool,
    ) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(RAISE_NOFILE)
            .arg(program)
            .args(args)
            .env("RUST_LOG", rust_log)
            .stderr(file.try_clone()?)
            .kill_on_drop(true);
        if piped {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        } else {
            cmd.stdin(Stdio::null()).stdout(file);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().context("child exited at once")?;
        Ok(Daemon {
            name: name.to_owned(),
            pid,
            child,
        })
    }

    /// The child's stdin and stdout, if spawned with pipes (each can be taken once).
    pub fn pipes(
        &mut self,
    ) -> (
        Option<tokio::process::ChildStdin>,
        Option<tokio::process::ChildStdout>,
    ) {
        (self.child.stdin.take(), self.child.stdout.take())
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited: {status} (see its log)", self.name);
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within 15 s.
    pub async fn stop(mut self) {
        if signal(self.pid, "TERM").is_ok()
            && tokio::time::timeout(Duration::from_secs(15), self.child.wait())
                .await
                .is_ok()
        {
            return;
        }
        let _ = self.child.kill().await;
    }
}

/// Sends `sig` (`TERM`, `INT`) to `pid` with kill(1): std has no kill with a signal.
pub fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill -{sig} {pid} failed");
    Ok(())
}

/// Polls `f` every 20 ms until it returns `Some`, or fails after `deadline` naming `what`.
pub async fn poll_until<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("not yet");
    loop {
        match f().await {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
