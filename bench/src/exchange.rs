//! A fresh exchange for one scenario: a temporary directory, the PKI and configs made by
//! `exchange_certs::demo_setup`, adjusted for the run (port 0 everywhere, the document size
//! limit, simulated departments in the hub's directory), then the real hub and one real node
//! per department, started and connected.

use std::{
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use exchange_certs::DeptSpec;
use exchange_core::{
    config::{DirectoryEntry, HubConfig, NodeConfig, read_addr_file},
    ids::DeptId,
};
use exchange_proto::v1 as pb;
use tonic::transport::Channel;

use crate::{daemon::Daemon, daemon::poll_until, scenario::Ctx};

/// How long a daemon may take to start listening (or a node to reach the hub).
const START_DEADLINE: Duration = Duration::from_secs(120);

/// What to lay out.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// The scenario's name, in the directory name.
    pub name: &'a str,
    /// Departments with a real node, in start order.
    pub depts: &'a [String],
    /// Departments simulated by `sim-nodes`: listed in the hub's directory, no node started.
    pub simulated: &'a [DeptId],
    /// `max_document_bytes` of the hub and every node.
    pub max_document_bytes: u64,
}

/// A running exchange.
#[derive(Debug)]
pub struct Exchange {
    dir: Option<tempfile::TempDir>,
    /// The scenario's directory.
    pub root: PathBuf,
    /// The CA (`ca.pem`, `ca.key`), for issuing the simulated departments' identities.
    pub ca_dir: PathBuf,
    /// The hub process.
    pub hub: Daemon,
    /// Where the hub listens.
    pub hub_addr: SocketAddr,
    /// Each real department's node and the address of its local API, in start order.
    pub nodes: Vec<(Daemon, SocketAddr)>,
}

impl Exchange {
    /// Lays out `plan` and starts the hub and every node; returns once each node has reached
    /// the hub.
    pub async fn start(ctx: &Ctx, plan: &Plan<'_>) -> Result<Self> {
        let base = ctx.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("exchange-bench-{}-", plan.name))
            .tempdir_in(&base)
            .with_context(|| format!("creating a directory in {}", base.display()))?;
        let root = dir.path().to_owned();
        let specs = plan
            .depts
            .iter()
            .map(|d| {
                d.parse::<DeptSpec>()
                    .with_context(|| format!("department {d}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let layout = exchange_certs::demo_setup_with_profile(
            &root.join("ex"),
            &specs,
            None,
            false,
            ctx.profile,
        )?;
        std::fs::create_dir_all(root.join("logs"))?;

        edit_toml::<HubConfig>(&layout.hub_config, |c| {
            c.hub.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            c.hub.max_document_bytes = plan.max_document_bytes;
            if ctx.plaintext {
                c.encryption = None;
            }
            if let Some(url) = &ctx.hub_store_url {
                c.store.backend = exchange_core::config::StoreBackend::Postgres;
                c.store.url = Some(url.clone());
            }
            c.departments
                .extend(plan.simulated.iter().map(|id| DirectoryEntry {
                    id: id.clone(),
                    name: id.to_string(),
                    level: None,
                    parent: None,
                }));
        })?;
        if ctx.hub_store_url.is_some() {
            let out = std::process::Command::new(&ctx.bins.hub)
                .arg("--config")
                .arg(&layout.hub_config)
                .arg("migrate")
                .output()
                .context("running exchange-hub migrate")?;
            anyhow::ensure!(
                out.status.success(),
                "exchange-hub migrate: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let hub = spawn(ctx, &root, "hub", &ctx.bins.hub, &layout.hub_config)?;
        let hub_data = exchange_core::config::load::<HubConfig>(&layout.hub_config)?
            .hub
            .data_dir;
        let mut ex = Exchange {
            dir: Some(dir),
            ca_dir: root.join("ex").join("ca"),
            root,
            hub,
            hub_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            nodes: Vec::new(),
        };
        ex.hub_addr = poll_until("the hub to listen", START_DEADLINE, || {
            let alive = ex.hub.check_alive();
            let addr = read_addr_file(&hub_data, "hub.addr").ok();
            async move { alive.map(|()| addr) }
        })
        .await?;

        for (id, config) in &layout.nodes {
            edit_toml::<NodeConfig>(config, |c| {
                c.hub.addr = Some(ex.hub_addr);
                c.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
                c.node.max_document_bytes = plan.max_document_bytes;
                if ctx.plaintext {
                    c.encryption = None;
                }
            })?;
            let mut node = spawn(ctx, &ex.root, id.as_str(), &ctx.bins.node, config)?;
            let data = exchange_core::config::load::<NodeConfig>(config)?
                .node
                .data_dir;
            let what = format!("node {id} to reach the hub");
            let api = poll_until(&what, START_DEADLINE, || {
                let alive = node.check_alive();
                let addr = read_addr_file(&data, "api.addr").ok();
                async move {
                    alive?;
                    let Some(addr) = addr else { return Ok(None) };
                    let reached = connect(addr)
                        .await?
                        .list_departments(pb::ListDepartmentsRequest {})
                        .await
                        .is_ok();
                    Ok(reached.then_some(addr))
                }
            })
            .await?;
            ex.nodes.push((node, api));
        }
        Ok(ex)
    }

    /// The local API address of `dept`'s node.
    pub fn api(&self, dept: &str) -> Result<SocketAddr> {
        self.nodes
            .iter()
            .find(|(d, _)| d.name == dept)
            .map(|(_, a)| *a)
            .with_context(|| format!("no node for department {dept}"))
    }

    /// A client of `dept`'s local API.
    pub async fn client(&self, dept: &str) -> Result<pb::node_client::NodeClient<Channel>> {
        connect(self.api(dept)?).await
    }

    /// `(name, pid)` of the hub and every node.
    pub fn processes(&self) -> Vec<(String, u32)> {
        std::iter::once(&self.hub)
            .chain(self.nodes.iter().map(|(d, _)| d))
            .map(|d| (d.name.clone(), d.pid))
            .collect()
    }

    /// The directory for logs of this run's processes.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Fails if the hub or a node has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.hub.check_alive()?;
        self.nodes.iter_mut().try_for_each(|(d, _)| d.check_alive())
    }

    /// Stops the nodes, then the hub; removes the directory unless `keep`.
    pub async fn stop(mut self, keep: bool) {
        for (node, _) in std::mem::take(&mut self.nodes) {
            node.stop().await;
        }
        self.hub.stop().await;
        if let Some(dir) = self.dir.take() {
            if keep {
                eprintln!("kept {}", dir.keep().display());
            } else if let Err(e) = dir.close() {
                eprintln!("warning: removing the scenario's directory: {e}");
            }
        }
    }
}

/// A client of a node's local API (plaintext, loopback).
pub async fn connect(addr: SocketAddr) -> Result<pb::node_client::NodeClient<Channel>> {
    let client = pb::node_client::NodeClient::connect(format!("http://{addr}"))
        .await
        .with_context(|| format!("connecting to the node API at {addr}"))?;
    Ok(client
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20))
}

fn spawn(ctx: &Ctx, root: &Path, name: &str, program: &Path, config: &Path) -> Result<Daemon> {
    let args: Vec<OsString> = vec!["--config".into(), config.into(), "serve".into()];
    let log = root.join("logs").join(format!("{name}.log"));
    Daemon::spawn(name, program, &args, &log, &ctx.daemon_log, false)
}

/// Rewrites a config file through its typed form, keeping its relative paths as they are.
fn edit_toml<T: serde::de::DeserializeOwned + serde::Serialize>(
    path: &Path,
    f: impl FnOnce(&mut T),
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cfg: T =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    f(&mut cfg);
    std::fs::write(path, toml::to_string_pretty(&cfg)?)
        .with_context(|| format!("writing {}", path.display()))
}
