//! The connection a client command uses: the node's local API, found from the config file.
//!
//! The API address is `api.listen`, unless that asks for port 0, in which case the running node
//! reported the port it got in `<data_dir>/api.addr`. gRPC errors are turned into sentences for
//! the clerk here, once, so every command explains a refusal the same way.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context as _;
use exchange_core::{
    config::{NodeConfig, TlsPaths},
    tls,
};
use exchange_proto::v1::node_client::NodeClient;
use tonic::{Code, Status, transport::Channel};

use super::table::printable;
use crate::MAX_MESSAGE_BYTES;

/// How long to wait for the node to answer a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client command's context: the config, and a connection to the running node.
#[derive(Debug)]
pub struct Ctx {
    /// The node's config (its department id and data directory, for messages and hints).
    pub cfg: NodeConfig,
    /// The config file as given on the command line, to repeat it in hints.
    config_path: PathBuf,
    /// The connected API client; cloning it is cheap (it shares the connection).
    client: NodeClient<Channel>,
}

impl Ctx {
    /// Connects to the node that `cfg` describes, or explains how to start it.
    pub async fn connect(cfg: NodeConfig, config_path: PathBuf) -> anyhow::Result<Self> {
        let start_hint = format!(
            "is it running? Start it with: exchange-node --config {} serve",
            config_path.display()
        );
        let addr = api_addr(&cfg)
            .with_context(|| format!("cannot find the address of the node's API: {start_hint}"))?;
        let connected = match &cfg.api.tls {
            None => {
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .with_context(|| format!("invalid API address {addr}"))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .connect()
                    .await
            }
            Some(api_tls) => {
                let paths = clerk_tls(&cfg, api_tls);
                tls::hub_endpoint(addr, &paths, cfg.crypto.profile, &server_name(addr))
                    .context("loading the department's TLS identity ([tls]) for the API")?
                    .connect()
                    .await
            }
        };
        let channel = connected.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the node at {addr}: {start_hint} ({})",
                root_cause(&e)
            )
        })?;
        let client = NodeClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Ctx {
            cfg,
            config_path,
            client,
        })
    }

    /// `exchange-node --config FILE <rest>`, for hints that tell the clerk what to run next.
    pub(crate) fn command(&self, rest: &str) -> String {
        format!(
            "exchange-node --config {} {rest}",
            self.config_path.display()
        )
    }

    /// A handle on the API client for one call.
    pub(crate) fn client(&self) -> NodeClient<Channel> {
        self.client.clone()
    }

    /// The clerk's sentence for a failed call. The node's status message names the field or the
    /// document concerned, so it is always shown; an unknown id also gets a hint on where ids
    /// come from, depending on which kind of document the command asked about.
    pub(crate) fn rpc_error(&self, status: &Status, lookup: Lookup) -> anyhow::Error {
        let message = if status.message().is_empty() {
            status.code().description().to_owned()
        } else {
            printable(status.message())
        };
        match status.code() {
            Code::NotFound => {
                let inbox = self.command("inbox");
                let hint = match lookup {
                    Lookup::Received => format!("received documents are listed by: {inbox}"),
                    Lookup::Sent => format!(
                        "`status` follows documents this department sent (the id `send` printed); received documents are listed by: {inbox}"
                    ),
                    Lookup::Any => format!(
                        "use the id `send` printed for a document this department sent; received documents are listed by: {inbox}"
                    ),
                };
                anyhow::anyhow!("the node refused: {message}\nhint: {hint}")
            }
            Code::Unavailable => anyhow::anyhow!("the node is unavailable: {message}"),
            Code::Internal | Code::Unknown | Code::DataLoss => {
                anyhow::anyhow!("the node failed: {message}")
            }
            _ => anyhow::anyhow!("the node refused: {message}"),
        }
    }
}

/// Which documents a command's id refers to, for the hint when the node does not know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A document this department received (`show`, `confirm`, `reject`, `inbox`).
    Received,
    /// A document this department sent (`status`).
    Sent,
    /// A document this department sent or received (`evidence`).
    Any,
}

/// The address of the node's API according to `cfg` (and `api.addr` for port 0).
fn api_addr(cfg: &NodeConfig) -> anyhow::Result<SocketAddr> {
    let addr = if cfg.api.listen.port() == 0 {
        let dir = &cfg.node.data_dir;
        exchange_core::config::read_addr_file(dir, "api.addr")
            .with_context(|| format!("reading {}", dir.join("api.addr").display()))?
    } else {
        cfg.api.listen
    };
    Ok(connectable(addr))
}

/// The TLS files the CLI reaches an API served with `[api] tls` with: the department's own
/// identity (`[tls]`: under TLCP its signing and encryption pairs) and CA, revocation list and
/// the API's protocol. So the API serves the clerk when `api.tls.ca` is the exchange CA and its
/// certificate (`exchange-certs issue-api`) comes from that CA.
fn clerk_tls(cfg: &NodeConfig, api_tls: &TlsPaths) -> TlsPaths {
    TlsPaths {
        protocol: api_tls.protocol,
        ..cfg.tls.clone()
    }
}

/// The name the API's certificate must carry: `localhost` on loopback (where the CLI reaches
/// a wildcard listener), else the address itself (an IP subjectAltName).
fn server_name(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        addr.ip().to_string()
    }
}

/// A node listening on every interface is reached on loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The innermost cause of a transport error ("Connection refused (os error 111)"), which says
/// more than tonic's "transport error".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:7001".parse().unwrap();
        assert_eq!(connectable(any), "127.0.0.1:7001".parse().unwrap());
        let any6: SocketAddr = "[::]:7001".parse().unwrap();
        assert_eq!(connectable(any6), "[::1]:7001".parse().unwrap());
        let lo: SocketAddr = "127.0.0.2:7001".parse().unwrap();
        assert_eq!(connectable(lo), lo);
    }
}
