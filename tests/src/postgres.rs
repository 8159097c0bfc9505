//! A real PostgreSQL server for tests: Debian's `postgresql` package, a fresh cluster made with
//! `initdb` in a temporary directory, running as an unprivileged user on a loopback port.
//!
//! The hub's PostgreSQL backend promises what redb promises: an acknowledgement means a durable
//! commit. So the server runs with `fsync=on` and `synchronous_commit=on` — never the usual
//! "fast test" settings — and [`Postgres::kill`] sends the postmaster SIGKILL so that tests can
//! prove a committed row survives a crash and [`Postgres::start`] (crash recovery, same data
//! directory, same port).
//!
//! [`Postgres::standby`] makes a streaming standby of a running server and
//! [`Postgres::base_backup`] a standalone copy, both with `pg_basebackup` (`replication`);
//! [`hub`] runs the real hub on such servers under steady load; [`Postgres::require_tls`]
//! turns TLS on (`tls`).
//!
//! When PostgreSQL is not installed, [`Postgres::for_test`] skips the test with a message, or
//! fails it when `EXCHANGE_REQUIRE_POSTGRES=1` (CI sets it: there the tests must run).

use std::{
    fs::File,
    io::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

use crate::DEADLINE;

pub mod hub;
mod replication;
mod tls;

/// Where Debian's `postgresql-NN` packages put their programs.
const PG_LIB: &str = "/usr/lib/postgresql";

/// The (unprivileged) system user the Debian package creates, which runs the server when the
/// tests run as root: `initdb` and `postgres` refuse to run as root.
const PG_USER: &str = "postgres";

/// How to install the server, said by every "not installed" error.
const INSTALL_HINT: &str = "PostgreSQL is not installed: run \
     `apt-get install -y --no-install-recommends postgresql` (Debian's package; the tests \
     start their own server and never use the system's cluster)";

/// A PostgreSQL server of its own in a temporary directory, stopped (and the directory removed)
/// on drop.
pub struct Postgres {
    /// The temporary directory; `None` once kept by `EXCHANGE_KEEP_TEST_DIR`.
    dir: Option<TempDir>,
    /// `dir`'s path: the cluster is in `data/`, the server's log in `postgres.log`, and its Unix
    /// socket in the directory itself.
    root: PathBuf,
    /// `/usr/lib/postgresql/<highest version>/bin`.
    bin: PathBuf,
    /// The loopback TCP port, kept across restarts so that a URL stays valid.
    port: u16,
    /// Whether the server programs must be run as [`PG_USER`] (the tests run as root).
    as_pg_user: bool,
    /// The postmaster, while it runs. `setpriv` execs it, so this is the server itself.
    server: Option<Child>,
}

impl Postgres {
    /// Creates a cluster and starts it, or `Ok(None)` (after saying why on stderr) when
    /// PostgreSQL is not installed and `EXCHANGE_REQUIRE_POSTGRES` is not `1`. Any other
    /// failure is an error.
    pub fn for_test() -> Result<Option<Self>> {
        if find_bin_dir().is_err()
            && std::env::var("EXCHANGE_REQUIRE_POSTGRES").as_deref() != Ok("1")
        {
            eprintln!("skipping: {INSTALL_HINT} (set EXCHANGE_REQUIRE_POSTGRES=1 to fail instead)");
            return Ok(None);
        }
        Self::new().map(Some)
    }

    /// Creates a cluster (`initdb`) in a new temporary directory and starts the server on a
    /// free loopback port. Fails with installation instructions when PostgreSQL is missing.
    pub fn new() -> Result<Self> {
        let mut pg = Self::unstarted(find_bin_dir()?, running_as_root()?)?;
        pg.initdb()?;
        pg.start_on_free_port()?;
        Ok(pg)
    }

    /// A server in a new temporary directory (owned by [`PG_USER`] if the tests run as root),
    /// with no data directory yet and no port.
    fn unstarted(bin: PathBuf, as_pg_user: bool) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("exchange-pg-")
            .tempdir()
            .context("creating the PostgreSQL test directory")?;
        let root = dir.path().to_owned();
        if as_pg_user {
            let (uid, gid) = pg_user_ids()?;
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to user {PG_USER}", root.display()))?;
        }
        Ok(Postgres {
            dir: Some(dir),
            root,
            bin,
            port: 0,
            as_pg_user,
            server: None,
        })
    }

    /// Starts the server on its data directory and a free loopback port, which it keeps.
    fn start_on_free_port(&mut self) -> Result<()> {
        // The port is picked, released and then bound by the server (PostgreSQL cannot listen on
        // port 0 and say which port it got); another process can take it in between, so a bind
        // failure is retried on another port.
        let mut last = None;
        for _ in 0..5 {
            self.port = free_port()?;
            let logged = self.log().len();
            match self.start() {
                Ok(()) => return Ok(()),
                Err(e)
                    if self
                        .log()
                        .get(logged..)
                        .unwrap_or("")
                        .contains("could not bind") =>
                {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no free port")))
    }

    /// A connection URL for the superuser `postgres` and database `postgres` (trust
    /// authentication on loopback: no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The loopback TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The postmaster's pid while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// Everything the server has logged so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    /// Starts the server on the existing data directory and port (after [`stop`](Self::stop)
    /// or [`kill`](Self::kill): then it runs crash recovery first), and waits until it accepts
    /// connections.
    pub fn start(&mut self) -> Result<()> {
        ensure!(self.server.is_none(), "the server is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.root.join("postgres.log"))
            .context("opening the server log")?;
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            // Port and socket directory on the command line, not in the data directory: a
            // copy of it (pg_basebackup for a standby) runs beside this one with its own.
            .arg("-k")
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.bin.join("postgres").display()))?;
        self.server = Some(child);
        self.wait_ready()
    }

    /// Stops the server with a fast shutdown (SIGINT: open transactions are rolled back, a
    /// checkpoint is written) and waits for it to exit.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.server.take() else {
            return Ok(());
        };
        let stopped =
            crate::signal(child.id(), "INT").and_then(|()| wait_exit(&mut child, DEADLINE));
        match stopped {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => bail!(
                "the server exited with {status} on stop:\n{}",
                self.log_tail()
            ),
            Err(e) => {
                // Never leave a server behind: it would outlive the test run.
                let _ = child.kill();
                let _ = child.wait();
                Err(e.context(format!("the server did not stop:\n{}", self.log_tail())))
            }
        }
    }

    /// Kills the postmaster with SIGKILL, as a crash would, and waits until its backends have
    /// exited too (a new postmaster refuses to start while they still hold the shared memory).
    pub fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.server.take() else {
            bail!("the server is not running");
        };
        child.kill().context("sending SIGKILL to the postmaster")?;
        child.wait().context("reaping the postmaster")?;
        // Orphaned backends notice the postmaster's death and exit. They are found by their
        // working directory, the data directory, which also catches one forked just before
        // the kill; an exited one (a zombie, if nobody reaps orphans here) has none.
        let data = self.data_dir().canonicalize()?;
        let start = Instant::now();
        while !processes_in(&data).is_empty() {
            ensure!(
                start.elapsed() < DEADLINE,
                "backends of the killed postmaster still run: {:?}",
                processes_in(&data)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// CPU time (user + system) used so far by the server: the postmaster, its running
    /// children (backends, WAL writer, checkpointer, ...) and the children it has reaped.
    /// Differences of two readings measure the database's CPU cost of a workload.
    pub fn cpu_time(&self) -> Result<Duration> {
        let pid = self.pid().context("the server is not running")?;
        let mut total = proc_cpu_ticks(pid, true)?;
        for c in children_of(pid) {
            // A child that exits between the listing and the read is counted by `cutime`.
            total += proc_cpu_ticks(c, false).unwrap_or(0);
        }
        ticks_to_duration(total)
    }

    /// A connection as the superuser, its connection task spawned on the current runtime (it
    /// ends, with an error nobody needs, when the server goes away).
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {}", self.url()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The last lines of the server's log, for error messages.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().rev().take(30).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// A command running `program` from the server's bin directory, as [`PG_USER`] when the
    /// tests run as root (`setpriv` execs it: the child is the program itself, not a wrapper).
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_pg_user {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={PG_USER}"),
                &format!("--regid={PG_USER}"),
                "--init-groups",
                "--",
            ])
            .arg(path);
            c
        } else {
            Command::new(path)
        };
        // The test's working directory may be unreadable for the server's user.
        cmd.current_dir(&self.root).env("LC_ALL", "C");
        cmd
    }

    /// `initdb`: UTF-8, C collation, superuser `postgres`, trust authentication (the server
    /// listens on loopback only), then the settings every start uses.
    fn initdb(&self) -> Result<()> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
            .stdin(Stdio::null())
            .output()
            .context("running initdb")?;
        ensure!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        const SETTINGS: &str = "\n# exchange-tests\n\
             listen_addresses = '127.0.0.1'\n\
             # Real durability: a commit returns after its WAL is on disk.\n\
             fsync = on\n\
             synchronous_commit = on\n\
             full_page_writes = on\n\
             # Room for a standby (pg_basebackup -R) and the concurrency tests.\n\
             wal_level = replica\n\
             max_connections = 100\n";
        File::options()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(SETTINGS.as_bytes()))
            .context("writing postgresql.conf")
    }

    /// Polls `pg_isready` until the server accepts connections (it refuses them during crash
    /// recovery), failing early with the log if the postmaster exits.
    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(child) = self.server.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.server = None;
                bail!("the server exited with {status}:\n{}", self.log_tail());
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-t", "1", "-p"])
                .arg(self.port.to_string())
                .status()
                .context("running pg_isready")?;
            if ready.success() {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                bail!(
                    "the server did not accept connections within {DEADLINE:?}:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- postgres.log (last lines) -----\n{}", self.log_tail());
        }
        if let Err(e) = self.stop() {
            eprintln!("stopping the PostgreSQL test server: {e:#}");
        }
        if std::env::var_os("EXCHANGE_KEEP_TEST_DIR").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("keeping PostgreSQL test directory {}", dir.keep().display());
        }
    }
}

/// `/usr/lib/postgresql/<highest installed version>/bin`, or an error saying how to install it.
fn find_bin_dir() -> Result<PathBuf> {
    let entries = std::fs::read_dir(PG_LIB).context(INSTALL_HINT)?;
    entries
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            ["initdb", "postgres", "pg_isready"]
                .iter()
                .all(|p| bin.join(p).is_file())
                .then_some((version, bin))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, bin)| bin)
        .context(INSTALL_HINT)
}

/// Whether this process's effective uid is 0 (read from /proc: the workspace forbids `unsafe`).
fn running_as_root() -> Result<bool> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no Uid line in /proc/self/status")?;
    Ok(euid == "0")
}

/// The uid and gid of [`PG_USER`].
fn pg_user_ids() -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id")
            .args([flag, PG_USER])
            .output()
            .context("running id")?;
        ensure!(
            out.status.success(),
            "no user {PG_USER} (Debian's postgresql package creates it): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8(out.stdout)?.trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

/// A loopback port that is free now, below the kernel's ephemeral range (32768 and up) so that
/// port-0 listeners and outgoing connections of other tests do not land on it meanwhile.
fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let port = fastrand::u16(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port in 20000..32000")
}

/// Waits up to `deadline` for `child` to exit.
fn wait_exit(child: &mut Child, deadline: Duration) -> Result<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        ensure!(start.elapsed() < deadline, "no exit within {deadline:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat_fields(p).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid))
        .collect()
}

/// The running processes whose working directory is `dir` (the server's processes all work in
/// its data directory).
fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|cwd| cwd == dir))
        .collect()
}

/// The fields of `/proc/<pid>/stat` after the command name: state, ppid, ... (field 3 on).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces or parentheses itself.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime of `pid` in clock ticks, plus cutime + cstime (its reaped children) if asked.
fn proc_cpu_ticks(pid: u32, with_reaped: bool) -> Result<u64> {
    let f = stat_fields(pid).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields 14-17 of stat(5) (utime, stime, cutime, cstime) are indices 11-14 here.
    let field = |i: usize| -> Result<u64> {
        Ok(f.get(i)
            .with_context(|| format!("short /proc/{pid}/stat"))?
            .parse()?)
    };
    let mut ticks = field(11)? + field(12)?;
    if with_reaped {
        ticks += field(13)? + field(14)?;
    }
    Ok(ticks)
}

/// CPU time (user + system) used so far by process `pid` and the children it has reaped: for
/// the client side of a measurement, `process_cpu_time(std::process::id())`.
pub fn process_cpu_time(pid: u32) -> Result<Duration> {
    ticks_to_duration(proc_cpu_ticks(pid, true)?)
}

/// Converts /proc clock ticks to a duration.
fn ticks_to_duration(ticks: u64) -> Result<Duration> {
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks()? as f64,
    ))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), the unit of /proc's CPU times.
fn clock_ticks() -> Result<u64> {
    static TICKS: OnceLock<u64> = OnceLock::new();
    if let Some(&t) = TICKS.get() {
        return Ok(t);
    }
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    let t: u64 = String::from_utf8(out.stdout)?
        .trim()
        .parse()
        .context("parsing getconf CLK_TCK")?;
    Ok(*TICKS.get_or_init(|| t))
}
