//! Light simulated departments: one process (`exchange-bench sim-nodes`) holding many
//! department identities, for the fanout and connections scenarios.
//!
//! Each simulated department is a real peer of the hub: its own TLS certificate(s) and
//! document-signing certificate (issued now by the exchange CA, of the exchange's profile), its
//! own mutual-TLS connection through the provider layer a real node uses
//! (`exchange_core::tls::hub_endpoint`: TLS 1.3 under the international profile, TLCP under
//! shangmi) and `Subscribe` stream. For each pushed document it verifies the sender's signature and the
//! hub's acceptance, fetches the content with `GetBlob` and checks its digest, commits it to
//! its inbox (one redb file shared by the whole process, group-committed: see
//! [`inbox`]), and only then acknowledges with a signed `DELIVERED` receipt — what a node does,
//! without the node's local API, outbox or event log.
//!
//! The process reports on stdout, one JSON [`SimEvent`] per line; it stops when its stdin
//! closes. [`fleet`] is the bench's side of it.

pub mod fleet;
mod inbox;
mod node;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Args;
use exchange_certs::Authority;
use exchange_core::{ids::DeptId, signing::Verifier};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::{Notify, Semaphore, mpsc},
};

/// `exchange-bench sim-nodes`.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// The hub's address.
    #[arg(long, value_name = "ADDR")]
    pub hub: SocketAddr,
    /// The exchange CA directory (`ca.pem`, `ca.key`), which issues every simulated
    /// department's certificates; its key decides the profile (international or shangmi).
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Where to write each simulated department's TLS certificates and keys (a directory per
    /// department, created).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// How many departments to simulate: `sim-00001` and up (the hub's directory must list
    /// them).
    #[arg(long, value_name = "N")]
    pub count: usize,
    /// The redb file every simulated inbox commits to.
    #[arg(long, value_name = "FILE")]
    pub store: PathBuf,
    /// Connections opened at the same time.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub connect_concurrency: usize,
}

/// What the simulated nodes report, one JSON object per line on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimEvent {
    /// Every identity is issued.
    Issued {
        /// Departments.
        count: usize,
        /// Seconds it took.
        secs: f64,
    },
    /// Connections so far (about once a second while connecting).
    Progress {
        /// Departments with an open `Subscribe` stream.
        connected: usize,
    },
    /// Every department has connected once.
    Ready {
        /// Departments connected.
        connected: usize,
        /// Seconds from the first connection attempt to the last connection.
        secs: f64,
    },
    /// A department committed a document to its inbox.
    Received {
        /// The recipient.
        dept: String,
        /// The document.
        doc_id: String,
        /// When the commit returned ([`now_us`](crate::clock::now_us)).
        at_us: i64,
    },
    /// A department refused a delivery (a signature or digest did not verify).
    Refused {
        /// The recipient.
        dept: String,
        /// Why.
        reason: String,
    },
}

/// The id of the `i`th simulated department (from 1): `sim-00001`.
pub fn sim_dept(i: usize) -> DeptId {
    format!("sim-{i:05}")
        .parse()
        .expect("BUG: sim-NNNNN is a valid department id")
}

/// The ids of `count` simulated departments.
pub fn sim_depts(count: usize) -> Vec<DeptId> {
    (1..=count).map(sim_dept).collect()
}

/// What every simulated department shares.
#[derive(Debug)]
struct Shared {
    verifier: Verifier,
    inbox: inbox::Inbox,
    out: mpsc::UnboundedSender<SimEvent>,
    connect_limit: Semaphore,
    connected: AtomicUsize,
    connected_changed: Notify,
}

impl Shared {
    fn report(&self, ev: SimEvent) {
        let _ = self.out.send(ev);
    }

    fn connected_once(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        self.connected_changed.notify_one();
    }
}

/// Runs the simulated departments until stdin closes.
pub async fn run(args: SimArgs) -> Result<()> {
    let (out, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_lines(rx));
    let ca = Authority::load(&args.ca_dir)?;
    let verifier = Verifier::new(ca.cert_der()).context("loading the CA certificate")?;
    let inbox = inbox::Inbox::open(&args.store)?;

    let started = Instant::now();
    let issuer = Arc::new(node::Issuer {
        ca,
        ca_dir: args.ca_dir.clone(),
        dir: args.dir.clone(),
        hub: args.hub,
    });
    let nodes = node::issue_all(issuer, sim_depts(args.count)).await?;
    let _ = out.send(SimEvent::Issued {
        count: nodes.len(),
        secs: started.elapsed().as_secs_f64(),
    });

    let shared = Arc::new(Shared {
        verifier,
        inbox,
        out,
        connect_limit: Semaphore::new(args.connect_concurrency.max(1)),
        connected: AtomicUsize::new(0),
        connected_changed: Notify::new(),
    });
    let connecting = Instant::now();
    for n in nodes {
        tokio::spawn(node::run(n, Arc::clone(&shared)));
    }
    loop {
        let connected = shared.connected.load(Ordering::Relaxed);
        if connected >= args.count {
            break;
        }
        shared.report(SimEvent::Progress { connected });
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while shared.connected.load(Ordering::Relaxed) < args.count {
                shared.connected_changed.notified().await;
            }
        })
        .await;
    }
    shared.report(SimEvent::Ready {
        connected: args.count,
        secs: connecting.elapsed().as_secs_f64(),
    });

    // Until the bench closes our stdin (or goes away).
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while stdin.read(&mut buf).await.unwrap_or(0) > 0 {}
    Ok(())
}

/// Writes events to stdout, one JSON line each, flushing whenever the queue runs dry.
async fn write_lines(mut rx: mpsc::UnboundedReceiver<SimEvent>) {
    let mut stdout = tokio::io::BufWriter::new(tokio::io::stdout());
    while let Some(ev) = rx.recv().await {
        let mut batch = vec![ev];
        while let Ok(ev) = rx.try_recv() {
            batch.push(ev);
        }
        for ev in batch {
            let Ok(mut line) = serde_json::to_vec(&ev) else {
                continue;
            };
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() {
                return;
            }
        }
        if stdout.flush().await.is_err() {
            return;
        }
    }
}
