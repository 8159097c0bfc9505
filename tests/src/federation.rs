//! Linked exchanges on loopback (docs/federation.md): the layout of `exchange-certs
//! demo-federation` (one CA, hub and nodes per exchange, each exchange the parent of the next),
//! run as real processes. Every port comes from the kernel: the hubs start once to learn their
//! addresses, the links are written with them, and the hubs start again.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result};
use exchange_core::{
    config::{HubConfig, NodeConfig, read_addr_file},
    crypto::Profile,
};

use crate::{DEADLINE, TestExchange, edit_toml, eventually};

/// Several linked exchanges, each a [`TestExchange`].
pub struct Federation {
    _dir: tempfile::TempDir,
    /// The exchanges by name, parent first in `order`.
    exchanges: BTreeMap<String, TestExchange>,
    order: Vec<String>,
    cas: BTreeMap<String, PathBuf>,
}

impl Federation {
    /// Lays out `specs` (`NAME=DEPT[,DEPT...]`, parent first), starts every hub and node, and
    /// waits until each node has reached its hub.
    pub async fn start(specs: &[&str]) -> Result<Self> {
        exchange_core::tls::install_ring_provider();
        let dir = tempfile::Builder::new()
            .prefix("exchange-federation-")
            .tempdir()?;
        let specs = specs
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<exchange_certs::ExchangeSpec>, _>>()?;
        let layout = exchange_certs::demo_federation(
            &dir.path().join("fed"),
            &specs,
            None,
            false,
            Profile::International,
        )?;
        let mut exchanges = BTreeMap::new();
        let mut order = Vec::new();
        let mut cas = BTreeMap::new();
        for linked in &layout.exchanges {
            let name = linked.name.to_string();
            let root = dir.path().join(&name);
            std::fs::create_dir_all(root.join("logs"))?;
            edit_toml::<HubConfig>(&linked.layout.hub_config, |c| {
                c.hub.listen = "127.0.0.1:0".parse().expect("addr");
                c.hub.peer_listen = Some("127.0.0.1:0".parse().expect("addr"));
            })?;
            let ex = TestExchange {
                dir: None,
                layout: linked.layout.dir.clone(),
                root,
                hub: None,
                hub_config: linked.layout.hub_config.clone(),
                hub_addr: None,
                nodes: BTreeMap::new(),
                node_configs: linked
                    .layout
                    .nodes
                    .iter()
                    .map(|(id, p)| (id.to_string(), p.clone()))
                    .collect(),
                profile: Profile::International,
                other_hubs: BTreeMap::new(),
            };
            cas.insert(name.clone(), linked.layout.ca_cert.clone());
            order.push(name.clone());
            exchanges.insert(name, ex);
        }
        let mut fed = Federation {
            _dir: dir,
            exchanges,
            order,
            cas,
        };
        // First start: each hub binds its ports; then every link is written with them.
        let mut peer_addrs = BTreeMap::new();
        for name in fed.order.clone() {
            let ex = fed.ex_mut(&name);
            ex.start_hub().await?;
            let data = ex.hub_data_dir();
            let peer = eventually(&format!("hub {name} to listen for peers"), DEADLINE, || {
                let r = read_addr_file(&data, "peer.addr").ok();
                async move { Ok(r) }
            })
            .await?;
            peer_addrs.insert(name, peer);
        }
        for name in fed.order.clone() {
            let ex = fed.ex_mut(&name);
            ex.kill_hub().await?;
            let own: SocketAddr = peer_addrs[&name];
            edit_toml::<HubConfig>(&ex.hub_config, |c| {
                c.hub.peer_listen = Some(own);
                for p in &mut c.peers {
                    p.address = peer_addrs[p.name.as_str()];
                }
            })?;
        }
        for name in fed.order.clone() {
            fed.ex_mut(&name).start_hub().await?;
        }
        for name in fed.order.clone() {
            let ex = fed.ex_mut(&name);
            let depts: Vec<String> = ex.node_configs.keys().cloned().collect();
            for d in depts {
                ex.start_node(&d).await?;
            }
        }
        Ok(fed)
    }

    /// The exchange `name`.
    pub fn ex(&self, name: &str) -> &TestExchange {
        &self.exchanges[name]
    }

    /// The exchange `name`, to start or kill its processes.
    pub fn ex_mut(&mut self, name: &str) -> &mut TestExchange {
        self.exchanges.get_mut(name).expect("exchange")
    }

    /// Restarts exchange `name`'s hub with its hub.toml changed by `f` (a kill, as an operator's
    /// restart would be abrupt or not: the store is the same either way).
    pub async fn restart_hub_with(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut HubConfig),
    ) -> Result<()> {
        let ex = self.ex_mut(name);
        ex.kill_hub().await?;
        ex.edit_hub_config(f)?;
        ex.start_hub().await
    }

    /// The CA certificate (ca.pem) of exchange `name`.
    pub fn ca(&self, name: &str) -> &PathBuf {
        &self.cas[name]
    }

    /// The node.toml of `dept` of exchange `exchange`.
    pub fn node_config(&self, exchange: &str, dept: &str) -> PathBuf {
        self.ex(exchange).node_config(dept).to_owned()
    }

    /// The hub.toml of exchange `name`, as written now.
    pub fn hub_config(&self, name: &str) -> Result<HubConfig> {
        exchange_core::config::load(&self.ex(name).hub_config)
            .with_context(|| format!("hub.toml of {name}"))
    }

    /// The node.toml of `dept` of exchange `exchange`, as written now.
    pub fn node_config_loaded(&self, exchange: &str, dept: &str) -> Result<NodeConfig> {
        Ok(exchange_core::config::load(
            self.ex(exchange).node_config(dept),
        )?)
    }
}
