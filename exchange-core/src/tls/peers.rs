//! Mutual TLS between the hubs of linked exchanges (docs/federation.md), apart from the nodes'
//! channel: a hub's `peer_listen` trusts only the pinned CAs of its `[[peers]]`, never its own
//! CA (so no department of ours can speak as a peer), and its node listener never trusts a peer
//! CA (so no peer can speak as one of our departments). A caller is the peer whose CA verified
//! its certificate, and only a hub certificate (`urn:exchange:hub`) is a peer.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use rustls::{
    pki_types::{CertificateDer, TrustAnchor, UnixTime},
    server::WebPkiClientVerifier,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};

use super::{
    ConnInfo, ServerStream, TlsError,
    acceptor::HANDSHAKE_TIMEOUT,
    crl::{Crl, FileStamp, Watched, load_crl},
    live::{Registry, Revocable, Ticket},
};
use crate::{config::TlsPaths, identity::Principal, ids::ExchangeName};

/// The peer-facing TLS of a hub: its server configuration and the pinned CA of each peer,
/// with the peer's revocation list where one is configured.
#[derive(Clone)]
pub struct PeerTls {
    config: Arc<rustls::ServerConfig>,
    anchors: Arc<Vec<(ExchangeName, TrustAnchor<'static>)>>,
    crls: Arc<Vec<PeerCrl>>,
    /// Leaf certificates that verified (by digest): their peer and the end of their validity.
    seen: Arc<Mutex<HashMap<crate::signing::Digest, (ExchangeName, u64)>>>,
    /// The open connections, counted by peer exchange.
    live: Arc<Registry>,
    /// Most connections one peer's hub may hold open (`[peer_limits] connections_per_principal`;
    /// 0: no limit).
    max_per_peer: usize,
}

/// One peer's revocation list, re-read when its file changes.
struct PeerCrl {
    peer: ExchangeName,
    ca_der: Vec<u8>,
    watched: Mutex<Watched>,
    current: Mutex<Crl>,
}

/// One peer as [`PeerTls::new`] takes it: its name, its CA (DER), and its CRL file if any.
#[derive(Debug, Clone)]
pub struct PeerTrust {
    /// The peer exchange.
    pub name: ExchangeName,
    /// Its CA certificate (DER).
    pub ca_der: Vec<u8>,
    /// A revocation list of its CA (`[[peers]] crl`), re-read when it changes.
    pub crl: Option<PathBuf>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.anchors.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("PeerTls").field("peers", &names).finish()
    }
}

impl PeerTls {
    /// The hub's identity from `paths` (its certificate and key; `paths.ca` is not used here),
    /// requiring a client certificate from one of `peers` (each peer's name and CA in DER), and
    /// allowing each peer's hub `max_per_peer` open connections (0: no limit). TLS 1.3 only,
    /// HTTP/2 by ALPN.
    pub fn new(paths: &TlsPaths, peers: &[PeerTrust], max_per_peer: u32) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let mut anchors = Vec::with_capacity(peers.len());
        let mut crls = Vec::new();
        for p in peers {
            let (name, der) = (&p.name, &p.ca_der);
            if let Some(path) = &p.crl {
                let crl = load_crl(path, der)?;
                crls.push(PeerCrl {
                    peer: name.clone(),
                    ca_der: der.clone(),
                    watched: Mutex::new(Watched {
                        path: path.clone(),
                        stamp: FileStamp::of(path),
                    }),
                    current: Mutex::new(crl),
                });
            }
            let cert = CertificateDer::from(der.clone());
            roots
                .add(cert.clone())
                .map_err(|e| TlsError::Config(format!("CA of peer {name}: {e}")))?;
            let anchor = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| TlsError::Config(format!("CA of peer {name}: {e}")))?
                .to_owned();
            anchors.push((name.clone(), anchor));
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| TlsError::Config(format!("peer client verifier: {e}")))?;
        let config = super::acceptor::tls13_server(paths, provider, verifier)?;
        Ok(PeerTls {
            config,
            anchors: Arc::new(anchors),
            crls: Arc::new(crls),
            seen: Arc::default(),
            live: Arc::default(),
            max_per_peer: usize::try_from(max_per_peer).unwrap_or(usize::MAX),
        })
    }

    /// Admits an established connection: refused if its peer's revocation list lists the
    /// certificate, or if that peer's hub already holds its share of connections. A
    /// certificate of no peer (which the handshake's verifier let through but `exchange_of`
    /// does not place) is not counted: every call on it is refused by [`PeerTls::caller`].
    fn admit(&self, stream: &ServerStream) -> Result<Ticket, String> {
        let leaf = stream.info().leaf();
        let peer = leaf.and_then(|leaf| self.exchange_of(leaf));
        if let (Some(peer), Some(leaf)) = (&peer, leaf)
            && self.revoked(peer, leaf)
        {
            return Err(format!(
                "the certificate of exchange {peer}'s hub is revoked"
            ));
        }
        self.live
            .admit_peer(&stream.info().certs, peer.as_ref(), self.max_per_peer)
    }

    /// Whether `peer`'s revocation list (re-read if its file changed) lists `leaf`.
    pub fn revoked(&self, peer: &ExchangeName, leaf: &[u8]) -> bool {
        let Some(c) = self.crls.iter().find(|c| &c.peer == peer) else {
            return false;
        };
        let changed = c
            .watched
            .lock()
            .map(|mut w| w.changed().then(|| w.path.clone()))
            .ok()
            .flatten();
        if let Some(path) = changed
            && let Ok(mut cur) = c.current.lock()
        {
            let loaded = load_crl(&path, &c.ca_der).and_then(|crl| {
                crl.may_replace(&cur, &path)?;
                Ok(crl)
            });
            match loaded {
                Ok(crl) => {
                    tracing::info!(%peer, revoked = crl.revoked.len(), "peer revocation list reloaded");
                    *cur = crl;
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "peer revocation list not reloaded; the previous one stays in force")
                }
            }
        }
        c.current
            .lock()
            .map(|crl| crl.revokes(leaf))
            .unwrap_or(true)
    }

    /// The peer whose CA issued `leaf` (DER) for client authentication, valid now. Asked on
    /// every call (the limits and the handler both name the caller), so a certificate that
    /// verified is remembered with the end of its validity, and the chain is not built again.
    pub fn exchange_of(&self, leaf: &[u8]) -> Option<ExchangeName> {
        let key = crate::signing::Digest::of(leaf);
        let now_secs = crate::time::now_secs();
        let known = |seen: &HashMap<_, (ExchangeName, u64)>| {
            seen.get(&key)
                .filter(|(_, not_after)| now_secs <= *not_after)
                .map(|(name, _)| name.clone())
        };
        if let Some(name) = self.seen.lock().ok().as_deref().and_then(known) {
            return Some(name);
        }
        let name = self.verify_chain(leaf)?;
        let not_after = x509_parser::parse_x509_certificate(leaf)
            .ok()
            .and_then(|(_, c)| u64::try_from(c.validity().not_after.timestamp()).ok())?;
        if let Ok(mut seen) = self.seen.lock() {
            // One certificate per peer hub (two during a renewal): a handful.
            if seen.len() >= 256 {
                seen.clear();
            }
            seen.insert(key, (name.clone(), not_after));
        }
        Some(name)
    }

    /// The peer whose CA verifies `leaf` for client authentication now (the full chain check).
    fn verify_chain(&self, leaf: &[u8]) -> Option<ExchangeName> {
        let der = CertificateDer::from(leaf);
        let ee = webpki::EndEntityCert::try_from(&der).ok()?;
        let now = UnixTime::now();
        self.anchors.iter().find_map(|(name, anchor)| {
            ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                std::slice::from_ref(anchor),
                &[],
                now,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .is_ok()
            .then(|| name.clone())
        })
    }

    /// The calling peer exchange of a request on the peer listener: the peer whose CA verified
    /// the client certificate, which must name a hub.
    pub fn caller<T>(&self, req: &Request<T>) -> Result<ExchangeName, Status> {
        let no_cert = || Status::unauthenticated("no client certificate");
        let info = req.extensions().get::<ConnInfo>().ok_or_else(no_cert)?;
        let leaf = info.leaf().ok_or_else(no_cert)?;
        let name = self.exchange_of(leaf).ok_or_else(|| {
            Status::unauthenticated("client certificate is from no linked exchange's CA")
        })?;
        // Checked at every call, so that a revocation cuts a connection already open.
        if self.revoked(&name, leaf) {
            return Err(Status::unauthenticated(format!(
                "the certificate of exchange {name}'s hub is revoked ([[peers]] crl)"
            )));
        }
        match Principal::from_cert_der(leaf) {
            Some(Principal::Hub) => Ok(name),
            other => Err(Status::permission_denied(format!(
                "only the hub of exchange {name} may relay; the certificate names {}",
                other.map_or_else(|| "no exchange principal".to_owned(), |p| p.to_string())
            ))),
        }
    }

    /// Accepts connections on `listener`, each handshake on its own task bounded by
    /// [`HANDSHAKE_TIMEOUT`]; refused ones (a revoked certificate, a peer over its connection
    /// limit) go to `on_refused` (where from, and why). Ends when `stop` is cancelled.
    pub fn incoming(
        &self,
        listener: TcpListener,
        on_refused: impl Fn(SocketAddr, String) + Send + Sync + 'static,
        stop: CancellationToken,
    ) -> ReceiverStream<Result<Revocable<ServerStream>, std::io::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let acceptor = TlsAcceptor::from(Arc::clone(&self.config));
        let on_refused = Arc::new(on_refused);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "accepting a peer connection");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = stop.cancelled() => return,
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx, on_refused, this) = (
                    acceptor.clone(),
                    tx.clone(),
                    Arc::clone(&on_refused),
                    this.clone(),
                );
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let stream = ServerStream::rustls(stream);
                            match this.admit(&stream) {
                                Ok(ticket) => {
                                    let _ = tx.send(Ok(Revocable::new(stream, ticket))).await;
                                }
                                Err(reason) => on_refused(peer_addr(&stream), reason),
                            }
                        }
                        Ok(Err(e)) => on_refused(peer, e.to_string()),
                        Err(_) => {
                            on_refused(peer, format!("no handshake within {HANDSHAKE_TIMEOUT:?}"))
                        }
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

/// Whether a certificate (DER) may authenticate a TLS client: a hub presents its own when it
/// connects to its peers, so with `[[peers]]` it needs clientAuth (`issue-hub --linked`).
pub fn allows_client_auth(der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    match cert.extended_key_usage() {
        Ok(Some(eku)) => eku.value.client_auth || eku.value.any,
        // No extended key usage at all: any use.
        Ok(None) => true,
        Err(_) => false,
    }
}

/// Where a connection came from, for a refusal.
fn peer_addr(stream: &ServerStream) -> SocketAddr {
    stream
        .info()
        .remote_addr
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}
