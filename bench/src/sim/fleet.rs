//! The bench's side of the simulated departments: starts `exchange-bench sim-nodes` against a
//! running exchange, turns its stdout lines into [`events`](crate::events), and waits until
//! every department is connected.

use std::{
    ffi::OsString,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::ChildStdin,
    sync::watch,
};

use super::SimEvent;
use crate::{daemon::Daemon, events::Recorder, exchange::Exchange, scenario::Ctx};

/// Where the simulated departments are.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    connected: usize,
    issue_secs: f64,
    /// Seconds to connect everyone, once all are.
    ready_secs: Option<f64>,
}

/// What it took to bring the simulated departments up.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// Seconds to issue every identity.
    pub issue_secs: f64,
    /// Seconds from the first connection attempt to the last connection.
    pub connect_secs: f64,
}

/// The running `sim-nodes` process.
#[derive(Debug)]
pub struct SimFleet {
    daemon: Daemon,
    stdin: Option<ChildStdin>,
    state: watch::Receiver<State>,
    stopping: Arc<AtomicBool>,
    count: usize,
}

impl SimFleet {
    /// Starts `count` simulated departments (`sim-00001`..) against `ex`'s hub; their commits
    /// go to `recorder`.
    pub fn start(ctx: &Ctx, ex: &Exchange, count: usize, recorder: Recorder) -> Result<Self> {
        let args: Vec<OsString> = vec![
            "sim-nodes".into(),
            "--hub".into(),
            ex.hub_addr.to_string().into(),
            "--ca-dir".into(),
            ex.ca_dir.clone().into(),
            "--dir".into(),
            ex.root.join("sim-nodes").into(),
            "--count".into(),
            count.to_string().into(),
            "--store".into(),
            ex.root.join("sim-nodes.redb").into(),
            "--connect-concurrency".into(),
            ctx.connect_concurrency.to_string().into(),
        ];
        let log = ex.logs().join("sim-nodes.log");
        let mut daemon = Daemon::spawn("sim-nodes", &ctx.bins.bench, &args, &log, "warn", true)?;
        let (stdin, stdout) = daemon.pipes();
        let stdout = stdout.context("sim-nodes has no stdout pipe")?;
        let (tx, state) = watch::channel(State::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stopping);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<SimEvent>(&line) {
                    Ok(SimEvent::Received {
                        dept,
                        doc_id,
                        at_us,
                    }) => recorder.received(doc_id, dept, at_us),
                    Ok(SimEvent::Refused { dept, reason }) => {
                        recorder.failure(format!("simulated {dept} refused a delivery: {reason}"));
                    }
                    Ok(SimEvent::Issued { secs, .. }) => tx.send_modify(|s| s.issue_secs = secs),
                    Ok(SimEvent::Progress { connected }) => {
                        tx.send_modify(|s| s.connected = connected)
                    }
                    Ok(SimEvent::Ready { connected, secs }) => tx.send_modify(|s| {
                        s.connected = connected;
                        s.ready_secs = Some(secs);
                    }),
                    Err(e) => eprintln!("  sim-nodes said {line:?}: {e}"),
                }
            }
            if !stop_flag.load(Ordering::Relaxed) {
                recorder.failure("sim-nodes exited (see logs/sim-nodes.log)".to_owned());
            }
        });
        Ok(SimFleet {
            daemon,
            stdin,
            state,
            stopping,
            count,
        })
    }

    /// The process id (for CPU and memory readings).
    pub fn pid(&self) -> u32 {
        self.daemon.pid
    }

    /// Waits until every department has connected; fails if connecting makes no progress for
    /// `stall` or the process exits.
    pub async fn wait_ready(&mut self, stall: Duration) -> Result<Ready> {
        let mut best = (0, std::time::Instant::now());
        let mut last_print = std::time::Instant::now();
        loop {
            let s = *self.state.borrow_and_update();
            if let Some(connect_secs) = s.ready_secs {
                return Ok(Ready {
                    issue_secs: s.issue_secs,
                    connect_secs,
                });
            }
            self.daemon.check_alive()?;
            // Issuing every department's identities comes first (SM2 ones take ~30 ms each):
            // no connection is expected before it is done, so the stall clock waits for it.
            let issuing = s.issue_secs == 0.0;
            if issuing || s.connected > best.0 {
                best = (s.connected, std::time::Instant::now());
            } else if best.1.elapsed() > stall {
                bail!(
                    "simulated departments: no new connection for {stall:?} at {}/{}",
                    s.connected,
                    self.count
                );
            }
            if last_print.elapsed() > Duration::from_secs(5) {
                if issuing {
                    eprintln!("  issuing {} identities", self.count);
                } else {
                    eprintln!("  connected {}/{}", s.connected, self.count);
                }
                last_print = std::time::Instant::now();
            }
            if let Ok(Err(_)) =
                tokio::time::timeout(Duration::from_secs(1), self.state.changed()).await
            {
                bail!("sim-nodes stopped reporting (see logs/sim-nodes.log)");
            }
        }
    }

    /// Closes the process's stdin (it exits), and kills it if it lingers.
    pub async fn stop(mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stdin.take();
        self.daemon.stop().await;
    }
}
