//! Links to the hubs of other exchanges (docs/federation.md): who they are, which exchanges
//! each one reaches, and whose signatures this hub can check. The relay service that peers call
//! is [`service`]; the worker that hands documents and evidence to each peer is [`client`].
//!
//! Names: a document's header names departments relative to its own exchange (the sender's,
//! its *origin*). This hub keeps each delivery under the recipient's name relative to *this*
//! exchange ([`Links::relative`]): a bare id for a department of ours, `dept@exchange` for one
//! elsewhere. At the origin hub both are the same.

pub(crate) mod client;
pub(crate) mod service;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{Hub, audit};
use exchange_core::{
    config::{HubConfig, Route},
    ids::{Address, DeptId, ExchangeName},
    signing::{Trust, Verifier},
    tls::{
        self,
        peers::{PeerTls, PeerTrust},
    },
};
use exchange_proto::v1 as pb;

/// Starts what links this hub to its peers, if it has any: the relay service on `[hub]
/// peer_listen` (its address written to `<data_dir>/peer.addr`) and one worker per peer.
/// Returns the server's task, which ends when `stop` is cancelled.
pub(crate) async fn serve(
    hub: &Arc<Hub>,
    stop: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let (Some(tls), Some(listen)) = (hub.links.tls.clone(), hub.cfg.hub.peer_listen) else {
        return Ok(None);
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding [hub] peer_listen {listen}"))?;
    let addr = listener.local_addr()?;
    let data = &hub.cfg.hub.data_dir;
    exchange_core::config::write_addr_file(data, "peer.addr", addr)
        .with_context(|| format!("writing {}/peer.addr", data.display()))?;
    let audited = Arc::clone(hub);
    let on_refused = move |from: std::net::SocketAddr, reason: String| {
        tracing::warn!(peer = %from, %reason, "peer TLS handshake refused");
        let ev = audit::Event::new(pb::AuditKind::HandshakeRefused)
            .peer(from)
            .dept("exchange:?")
            .detail(format!("peer listener: {reason}"));
        let hub = Arc::clone(&audited);
        tokio::spawn(async move { audit::record(&hub.store, ev).await });
    };
    let incoming = tls.incoming(listener, on_refused, stop.clone());
    // Each peer hub metered on its own (`[peer_limits]`), named as its exchange's hub.
    let who: crate::limits::Who = {
        let tls = tls.clone();
        Arc::new(
            move |req: &tonic::codegen::http::Request<tonic::body::Body>| {
                let info = req.extensions().get::<exchange_core::tls::ConnInfo>()?;
                let peer = tls.exchange_of(info.leaf()?)?;
                Some(format!("the hub of exchange {peer}"))
            },
        )
    };
    let limits = &hub.cfg.peer_limits;
    let layer = crate::limits::LimitsLayer::peers(
        crate::limits::Limits::named(*limits, "[peer_limits]"),
        who,
    );
    let svc = pb::relay_server::RelayServer::new(service::RelayService::new(Arc::clone(hub), tls))
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES);
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(limits.max_header_list_bytes)
        .layer(layer)
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
    client::start(hub, &stop)?;
    tracing::info!(%addr, peers = hub.links.peers.len(), exchange = ?hub.links.name, "peer listener up");
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "peer listener");
        }
    })))
}

/// The departments reachable through each peer (its `Directory` answer), kept in memory and
/// asked again by the peer's worker every [`client::DIRECTORY_EVERY`].
#[derive(Debug, Default)]
pub(crate) struct Directories(
    std::sync::RwLock<std::collections::BTreeMap<ExchangeName, Vec<pb::Department>>>,
);

impl Directories {
    /// Replaces what `peer` reaches.
    pub(crate) fn set(&self, peer: ExchangeName, departments: Vec<pb::Department>) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(peer, departments);
    }

    /// Every department reachable through any peer.
    pub(crate) fn all(&self) -> Vec<pb::Department> {
        self.except(None)
    }

    /// Every department reachable through a peer other than `peer`.
    pub(crate) fn except(&self, peer: Option<&ExchangeName>) -> Vec<pb::Department> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(p, _)| Some(*p) != peer)
            .flat_map(|(_, d)| d.iter().cloned())
            .collect()
    }
}

/// Recipient `a` of a document of exchange `origin` (`None`: ours), named relative to this
/// exchange `here`: bare for one of ours, `dept@exchange` for one elsewhere.
pub(crate) fn relative(
    here: Option<&ExchangeName>,
    origin: Option<&ExchangeName>,
    a: &Address,
) -> Address {
    let abs = a.exchange.as_ref().or(origin);
    Address {
        dept: a.dept.clone(),
        exchange: abs.filter(|e| Some(*e) != here).cloned(),
    }
}

/// Most hubs a document may pass: six levels of government and room to spare.
pub(crate) const HOP_LIMIT: usize = 8;

/// One linked exchange's hub (`[[peers]]`).
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The peer exchange's name.
    pub(crate) name: ExchangeName,
    /// Its hub's `peer_listen`.
    pub(crate) address: std::net::SocketAddr,
    /// The name in its hub's certificate.
    pub(crate) server_name: String,
    /// Its pinned CA (DER): the only one our client trusts for its hub.
    pub(crate) ca_der: Vec<u8>,
    /// Its revocation list (`[[peers]] crl`), checked at each of our handshakes with its hub
    /// too, not only when it calls us.
    pub(crate) crl: Option<std::path::PathBuf>,
    /// The exchanges reached through it, besides itself.
    pub(crate) routes: Vec<Route>,
}

/// Where one recipient of a document goes from this hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dest {
    /// A department of this exchange.
    Local(DeptId),
    /// The hub of this linked exchange, towards the recipient.
    Peer(ExchangeName),
}

/// This hub's links: its name and peers ([`Routes`]), and the CAs it trusts for signatures.
#[derive(Debug)]
pub(crate) struct Links {
    /// Names and routes (shared with the store's transactions, which route statements).
    pub(crate) routes: Arc<Routes>,
    /// Our CA, and each linked exchange's (peers and `[[exchanges]]`).
    pub(crate) trust: Trust,
    /// Every linked exchange's CA (DER), for the nodes: they check foreign signatures with it.
    pub(crate) cas: Vec<(ExchangeName, Vec<u8>)>,
    /// The peer listener's TLS, when there are peers.
    pub(crate) tls: Option<PeerTls>,
}

impl Links {
    /// From `hub.toml` (already checked by `check_links`), with `own` our CA's verifier.
    pub(crate) fn load(cfg: &HubConfig, own: Verifier) -> anyhow::Result<Self> {
        let trust = Trust::new(own, cfg.hub.exchange.clone());
        let mut cas = Vec::new();
        let mut peers = Vec::new();
        for p in &cfg.peers {
            let der = tls::read_pem_file(&p.ca, "CERTIFICATE")
                .with_context(|| format!("[[peers]] {}: ca", p.name))?;
            trust
                .link(p.name.clone(), &der)
                .with_context(|| format!("[[peers]] {}: ca {}", p.name, p.ca.display()))?;
            cas.push((p.name.clone(), der.clone()));
            peers.push(Peer {
                name: p.name.clone(),
                address: p.address,
                server_name: p.server_name.clone(),
                ca_der: der,
                crl: p.crl.clone(),
                routes: p.routes.clone(),
            });
        }
        for e in &cfg.exchanges {
            let der = tls::read_pem_file(&e.ca, "CERTIFICATE")
                .with_context(|| format!("[[exchanges]] {}: ca", e.name))?;
            trust
                .link(e.name.clone(), &der)
                .with_context(|| format!("[[exchanges]] {}: ca {}", e.name, e.ca.display()))?;
            cas.push((e.name.clone(), der));
        }
        let tls = if peers.is_empty() {
            None
        } else {
            let anchors: Vec<PeerTrust> = cfg
                .peers
                .iter()
                .filter_map(|p| {
                    cas.iter()
                        .find(|(n, _)| n == &p.name)
                        .map(|(n, d)| PeerTrust {
                            name: n.clone(),
                            ca_der: d.clone(),
                            crl: p.crl.clone(),
                        })
                })
                .collect();
            Some(
                PeerTls::new(
                    &cfg.tls,
                    &anchors,
                    cfg.peer_limits.connections_per_principal,
                )
                .context("the peer listener's TLS")?,
            )
        };
        Ok(Links {
            routes: Arc::new(Routes {
                name: cfg.hub.exchange.clone(),
                peers,
            }),
            trust,
            cas,
            tls,
        })
    }

    /// What nodes learn from `ListDepartments`: our name and each linked exchange's CA.
    pub(crate) fn for_nodes(&self) -> (String, Vec<pb::LinkedExchange>) {
        let name = self
            .routes
            .name
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let linked = self
            .cas
            .iter()
            .map(|(n, der)| pb::LinkedExchange {
                name: n.to_string(),
                ca_der: der.clone(),
            })
            .collect();
        (name, linked)
    }
}

impl std::ops::Deref for Links {
    type Target = Routes;
    fn deref(&self) -> &Routes {
        &self.routes
    }
}

/// This exchange's name and its peers: where each recipient goes, and what it is called here.
#[derive(Debug)]
pub(crate) struct Routes {
    /// This exchange's name (`[hub] exchange`).
    pub(crate) name: Option<ExchangeName>,
    /// `[[peers]]`.
    pub(crate) peers: Vec<Peer>,
}

impl Routes {
    /// Whether `e` is this exchange (`None`: a document's own exchange when it is ours).
    pub(crate) fn is_ours(&self, e: Option<&ExchangeName>) -> bool {
        e.is_none() || e == self.name.as_ref()
    }

    /// The exchange recipient `a` of a document of `origin` belongs to (`None`: ours).
    fn exchange_of(&self, origin: Option<&ExchangeName>, a: &Address) -> Option<ExchangeName> {
        relative(self.name.as_ref(), origin, a).exchange
    }

    /// Recipient `a` of a document of `origin`, named relative to this exchange: the key of its
    /// delivery here.
    pub(crate) fn relative(&self, origin: Option<&ExchangeName>, a: &Address) -> Address {
        relative(self.name.as_ref(), origin, a)
    }

    /// How a document of `origin` names `dept` of this exchange: bare in our own documents,
    /// `dept@<our name>` in another exchange's.
    pub(crate) fn header_form(&self, origin: Option<&ExchangeName>, dept: &DeptId) -> Address {
        Address {
            dept: dept.clone(),
            exchange: if self.is_ours(origin) {
                None
            } else {
                self.name.clone()
            },
        }
    }

    /// Where recipient `a` of a document of `origin` goes; `None` when no link reaches its
    /// exchange.
    pub(crate) fn dest(&self, origin: Option<&ExchangeName>, a: &Address) -> Option<Dest> {
        match self.exchange_of(origin, a) {
            None => Some(Dest::Local(a.dept.clone())),
            Some(e) => self.peer_towards(&e).map(|p| Dest::Peer(p.name.clone())),
        }
    }

    /// The peer through which exchange `e` is reached: the peer itself, the one routing it by
    /// name, else the one routing `"*"`.
    pub(crate) fn peer_towards(&self, e: &ExchangeName) -> Option<&Peer> {
        let named = |p: &&Peer| {
            &p.name == e
                || p.routes
                    .iter()
                    .any(|r| matches!(r, Route::Exchange(x) if x == e))
        };
        self.peers
            .iter()
            .find(named)
            .or_else(|| self.peers.iter().find(|p| p.routes.contains(&Route::Any)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(name: &str, peers: &[(&str, &[&str])]) -> Routes {
        Routes {
            name: Some(name.parse().unwrap()),
            peers: peers
                .iter()
                .map(|(n, routes)| Peer {
                    name: n.parse().unwrap(),
                    address: "127.0.0.1:1".parse().unwrap(),
                    server_name: "localhost".into(),
                    ca_der: Vec::new(),
                    crl: None,
                    routes: routes.iter().map(|r| r.parse().unwrap()).collect(),
                })
                .collect(),
        }
    }

    fn a(s: &str) -> Address {
        s.parse().unwrap()
    }

    #[test]
    fn recipients_are_routed_and_named_relative_to_this_exchange() {
        let city = links("city", &[("province", &["*"]), ("county", &["township"])]);
        let county: ExchangeName = "county".parse().unwrap();
        // A county document: "finance@city" is ours, "office@province" goes up, a bare id is
        // the county's own department, "x@township" goes down through the county.
        let origin = Some(&county);
        assert_eq!(
            city.dest(origin, &a("finance@city")),
            Some(Dest::Local("finance".parse().unwrap()))
        );
        assert_eq!(city.relative(origin, &a("finance@city")), a("finance"));
        assert_eq!(
            city.dest(origin, &a("office@province")),
            Some(Dest::Peer("province".parse().unwrap()))
        );
        assert_eq!(city.relative(origin, &a("tax")), a("tax@county"));
        assert_eq!(
            city.dest(origin, &a("x@township")),
            Some(Dest::Peer("county".parse().unwrap()))
        );
        assert_eq!(
            city.dest(origin, &a("tax")),
            Some(Dest::Peer("county".parse().unwrap()))
        );
        assert_eq!(
            city.header_form(origin, &"finance".parse().unwrap()),
            a("finance@city")
        );
        // Our own documents: bare ids are ours.
        assert_eq!(
            city.header_form(None, &"finance".parse().unwrap()),
            a("finance")
        );
        assert_eq!(
            city.dest(None, &a("finance")),
            Some(Dest::Local("finance".parse().unwrap()))
        );
        // No route at all.
        let alone = links("county", &[]);
        assert_eq!(alone.dest(None, &a("office@province")), None);
    }
}
