//! Several hubs serving one exchange on one PostgreSQL database (issue 17): more hub processes
//! beside [`TestExchange`]'s own, each with a config of its own (a copy of the first hub's: the
//! same `[store]`, keys and directory; its own data directory and port), and nodes that know
//! every hub (`[hub] addresses`).

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result};
use exchange_core::config::{HubConfig, NodeConfig, read_addr_file};
use tokio::process::Child;

use crate::{DEADLINE, TestExchange, edit_toml, eventually};

/// A hub started by [`TestExchange::start_other_hub`].
pub struct OtherHub {
    config: PathBuf,
    child: Option<Child>,
    addr: Option<SocketAddr>,
}

impl TestExchange {
    /// Starts (or restarts) the hub called `name` beside the first one, on the same database,
    /// and waits until it listens; returns its address, which it keeps across restarts. Its
    /// config is `hub-<name>.toml` beside hub.toml, made from hub.toml at the first start.
    pub async fn start_other_hub(&mut self, name: &str) -> Result<SocketAddr> {
        let dir = self.hub_config.parent().context("hub dir")?.to_owned();
        let data = dir.join(format!("data-{name}"));
        if !self.other_hubs.contains_key(name) {
            let config = dir.join(format!("hub-{name}.toml"));
            std::fs::copy(&self.hub_config, &config)?;
            edit_toml::<HubConfig>(&config, |c| {
                c.hub.data_dir = data.clone();
                c.hub.listen = "127.0.0.1:0".parse().expect("addr");
            })?;
            let hub = OtherHub {
                config,
                child: None,
                addr: None,
            };
            self.other_hubs.insert(name.to_owned(), hub);
        }
        let config = self.other_hubs[name].config.clone();
        let _ = std::fs::remove_file(data.join("hub.addr"));
        let child = self.spawn(&format!("hub-{name}"), "exchange-hub", &config)?;
        let addr = eventually(&format!("hub {name} to listen"), DEADLINE, || {
            let r = read_addr_file(&data, "hub.addr").ok();
            async move { Ok(r) }
        })
        .await?;
        let hub = self.other_hubs.get_mut(name).context("other hub")?;
        hub.child = Some(child);
        if hub.addr.is_none() {
            hub.addr = Some(addr);
            edit_toml::<HubConfig>(&config, |c| c.hub.listen = addr)?;
        }
        Ok(addr)
    }

    /// Kills the hub called `name` with SIGKILL and waits for it to die.
    pub async fn kill_other_hub(&mut self, name: &str) -> Result<()> {
        if let Some(mut c) = self.other_hubs.get_mut(name).and_then(|h| h.child.take()) {
            c.kill().await?;
        }
        Ok(())
    }

    /// The pid of the running hub called `name`.
    pub fn other_hub_pid(&self, name: &str) -> Option<u32> {
        self.other_hubs
            .get(name)
            .and_then(|h| h.child.as_ref())
            .and_then(Child::id)
    }

    /// Makes every node know the hubs at `addrs`, tried in this order (`[hub] addresses`),
    /// except those in `first_other`, which try them the other way round. Takes effect at a
    /// node's next start.
    pub fn use_hubs(&mut self, addrs: &[SocketAddr], first_other: &[&str]) -> Result<()> {
        for (dept, cfg) in &self.node_configs {
            let mut order = addrs.to_vec();
            if first_other.contains(&dept.as_str()) {
                order.reverse();
            }
            edit_toml::<NodeConfig>(cfg, |c| {
                c.hub.addr = None;
                c.hub.addresses = order;
            })?;
        }
        Ok(())
    }
}
