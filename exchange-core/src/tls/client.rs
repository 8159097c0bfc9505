//! The node's side of mutual TLS to the hub, with revocation: the hub's certificate is checked
//! against the exchange CA and, with `[tls] crl`, against the revocation list, which is re-read
//! when its file changes (checked at each handshake), so a revoked hub certificate is refused
//! at the node's next connection without a restart. A hub calling a linked exchange's hub
//! ([`peer_endpoint`]) checks it the same way, against that exchange's pinned CA and its
//! `[[peers]] crl`.
//!
//! tonic builds the rest of the TLS client (the node's certificate, SNI, ALPN); only the server
//! certificate verifier is ours. An open connection is not cut when the hub's certificate is
//! revoked: its keys were agreed with the genuine hub, and what revocation protects against is
//! someone else presenting that certificate in a new handshake.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rustls::{
    DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

mod failover;

use super::{
    TlsError,
    crl::{Crl, FileStamp, Watched, load_crl},
    identity, read_pem_file,
};
use crate::{
    config::{TlsPaths, TlsProtocol},
    crypto::Profile,
};

/// Verifies the hub's certificate with webpki, rebuilding the verifier when the CRL changes.
#[derive(Debug)]
struct ReloadingVerifier {
    ca_der: Vec<u8>,
    /// The CRL file, the verifier built with its last good version, and that version.
    current: Mutex<(Option<Watched>, Arc<WebPkiServerVerifier>, Option<Crl>)>,
}

fn build(
    ca_der: &[u8],
    crl: Option<&std::path::Path>,
) -> Result<(Arc<WebPkiServerVerifier>, Option<Crl>), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
    let mut builder = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider);
    let crl = crl.map(|path| load_crl(path, ca_der)).transpose()?;
    if let Some(crl) = &crl {
        builder = builder
            .with_crls([crl.der.clone()])
            .only_check_end_entity_revocation();
    }
    let verifier = builder
        .build()
        .map_err(|e| TlsError::Config(format!("server verifier: {e}")))?;
    Ok((verifier, crl))
}

impl ReloadingVerifier {
    /// Trusting the CA of `paths.ca`, with the revocation list of `paths.crl`.
    fn new(paths: &TlsPaths) -> Result<Self, TlsError> {
        let ca_der = read_pem_file(&paths.ca, "CERTIFICATE")?;
        Self::pinned(ca_der, paths.crl.as_deref())
    }

    /// Trusting only the CA `ca_der`, with the revocation list at `crl`.
    fn pinned(ca_der: Vec<u8>, crl: Option<&std::path::Path>) -> Result<Self, TlsError> {
        let (verifier, loaded) = build(&ca_der, crl)?;
        let watched = crl.map(|path| Watched {
            path: path.to_owned(),
            stamp: FileStamp::of(path),
        });
        Ok(ReloadingVerifier {
            ca_der,
            current: Mutex::new((watched, verifier, loaded)),
        })
    }

    /// The verifier for this handshake, rebuilt first if the CRL file changed. A CRL that does
    /// not load, or is older than the one in force, leaves the previous one in force.
    fn verifier(&self) -> Arc<WebPkiServerVerifier> {
        let mut guard = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let (watched, verifier, in_force) = &mut *guard;
        if let Some(w) = watched
            && w.changed()
        {
            let built = build(&self.ca_der, Some(&w.path)).and_then(|(v, crl)| {
                if let (Some(found), Some(old)) = (&crl, in_force.as_ref()) {
                    found.may_replace(old, &w.path)?;
                }
                Ok((v, crl))
            });
            match built {
                Ok((v, crl)) => {
                    tracing::info!(crl = %w.path.display(), "revocation list reloaded");
                    *verifier = v;
                    *in_force = crl;
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "revocation list not reloaded; the previous one stays in force"
                ),
            }
        }
        Arc::clone(verifier)
    }
}

impl ServerCertVerifier for ReloadingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}

/// How every hub connection is kept: a dead hub is noticed within seconds.
fn keep_alive(e: Endpoint) -> Endpoint {
    e.connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
}

/// The way to the hub (or another server of the exchange), of either stack;
/// [`HubEndpoint::connect_lazy`] or [`HubEndpoint::connect`] makes the channel (inside a
/// runtime), so that `check-config` can build and check it without one.
pub struct HubEndpoint {
    endpoint: Endpoint,
    kind: Kind,
    /// Where the hub is, or the several hubs (`[hub] addresses`).
    hubs: failover::Hubs,
}

enum Kind {
    /// tonic's own TLS (rustls) is configured on the endpoint.
    Rustls,
    /// Tongsuo's handshake runs in a custom connector.
    #[cfg(feature = "shangmi")]
    Tongsuo {
        connector: Arc<super::sm::Connector>,
        server_name: String,
    },
}

impl std::fmt::Debug for HubEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubEndpoint")
            .field("uri", self.endpoint.uri())
            .finish_non_exhaustive()
    }
}

impl HubEndpoint {
    /// A channel that connects (and reconnects) when used. Needs a Tokio runtime.
    pub fn connect_lazy(self) -> Channel {
        match self.kind {
            Kind::Rustls if self.hubs.len() == 1 => self.endpoint.connect_lazy(),
            Kind::Rustls => self
                .endpoint
                .connect_with_connector_lazy(failover::tcp(self.hubs)),
            #[cfg(feature = "shangmi")]
            Kind::Tongsuo {
                connector,
                server_name,
            } => self.endpoint.connect_with_connector_lazy(tongsuo_connector(
                connector,
                self.hubs,
                server_name,
            )),
        }
    }

    /// A channel connected now: the handshake has completed (or failed, with the error), for a
    /// command that must know at once whether the server answers (`exchange-hub audit`, the
    /// clerk's CLI). It reconnects when used after a drop, like [`Self::connect_lazy`].
    pub async fn connect(self) -> Result<Channel, tonic::transport::Error> {
        match self.kind {
            Kind::Rustls if self.hubs.len() == 1 => self.endpoint.connect().await,
            Kind::Rustls => {
                self.endpoint
                    .connect_with_connector(failover::tcp(self.hubs))
                    .await
            }
            #[cfg(feature = "shangmi")]
            Kind::Tongsuo {
                connector,
                server_name,
            } => {
                self.endpoint
                    .connect_with_connector(tongsuo_connector(connector, self.hubs, server_name))
                    .await
            }
        }
    }
}

/// The connector tonic calls for each (re)connection: TCP to one of `hubs`, then Tongsuo's
/// handshake expecting `server_name`.
#[cfg(feature = "shangmi")]
fn tongsuo_connector(
    connector: Arc<super::sm::Connector>,
    hubs: failover::Hubs,
    server_name: String,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = hyper_util::rt::TokioIo<super::sm::SmStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<hyper_util::rt::TokioIo<super::sm::SmStream>>> + Send,
> + Clone
+ Send {
    tower::service_fn(move |_: tonic::transport::Uri| {
        let (connector, server_name) = (Arc::clone(&connector), server_name.clone());
        let hubs = hubs.clone();
        async move {
            hubs.connect(|addr| connector.connect(addr, &server_name))
                .await
                .map(hyper_util::rt::TokioIo::new)
        }
    })
}

/// A lazily connecting endpoint to the hub at `addr` over the channel of `profile`: present the
/// node's certificate(s), expect `server_name` (a DNS name or an IP address) in the hub's, trust
/// only the exchange CA, refuse a hub certificate that `paths.crl` revokes; keep-alives as
/// [`super::endpoint`]. Every other client of the exchange's servers comes through here too,
/// with its own `paths`: the administrator's commands to the hub (`[admin]`), and the clerk's
/// CLI to a node's API served with `[api] tls`.
/// `international`: TLS 1.3 through rustls; `shangmi`: TLCP or RFC 8998 through Tongsuo
/// (`[tls] protocol`). A build without the `shangmi` feature refuses that profile.
pub fn hub_endpoint(
    addr: SocketAddr,
    paths: &TlsPaths,
    profile: Profile,
    server_name: &str,
) -> Result<HubEndpoint, TlsError> {
    hub_endpoints(&[addr], paths, profile, server_name)
}

/// [`hub_endpoint`] for several hubs serving one exchange (`[hub] addresses`): each
/// (re)connection goes to the hub that answered last, or else to each of the others in turn.
/// Every hub must present a certificate naming `server_name`.
pub fn hub_endpoints(
    addrs: &[SocketAddr],
    paths: &TlsPaths,
    profile: Profile,
    server_name: &str,
) -> Result<HubEndpoint, TlsError> {
    let hubs = failover::Hubs::new(addrs);
    let addr = hubs
        .first()
        .ok_or_else(|| TlsError::Config("no hub address".into()))?;
    let protocol = TlsProtocol::of(profile, paths).map_err(|e| TlsError::Config(e.to_string()))?;
    match protocol {
        TlsProtocol::Tls13 => Ok(HubEndpoint {
            endpoint: rustls_endpoint(addr, paths, server_name)?,
            kind: Kind::Rustls,
            hubs,
        }),
        #[cfg(feature = "shangmi")]
        protocol => {
            let connector = Arc::new(super::sm::Connector::new(protocol, paths)?);
            // http: the connector runs the handshake itself (an https URI would make tonic ask
            // for its own, rustls, TLS config).
            let authority = match server_name.parse::<std::net::IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, addr.port()).to_string(),
                Err(_) => format!("{server_name}:{}", addr.port()),
            };
            let endpoint = Endpoint::from_shared(format!("http://{authority}"))
                .map_err(|e| TlsError::Endpoint(format!("{addr}: {e}")))?;
            Ok(HubEndpoint {
                endpoint: keep_alive(endpoint),
                kind: Kind::Tongsuo {
                    connector,
                    server_name: server_name.to_owned(),
                },
                hubs,
            })
        }
        #[cfg(not(feature = "shangmi"))]
        protocol => Err(TlsError::Config(format!(
            "[tls] protocol {}: this build has no 国密 support (build with --features shangmi)",
            protocol.name()
        ))),
    }
}

/// The international profile's endpoint: TLS 1.3 through rustls with the reloading verifier.
fn rustls_endpoint(
    addr: SocketAddr,
    paths: &TlsPaths,
    server_name: &str,
) -> Result<Endpoint, TlsError> {
    let verifier = ReloadingVerifier::new(paths)?;
    verified_endpoint(addr, paths, verifier, server_name)
}

/// A lazily connecting endpoint to a linked exchange's hub at `addr` (its `peer_listen`):
/// present this hub's certificate (`paths.cert`, which must allow client authentication), trust
/// only that exchange's pinned CA (`ca_der`, never our own), expect `server_name` in its
/// certificate, and refuse it if the peer's revocation list (`[[peers]] crl`, re-read when its
/// file changes) lists it. TLS 1.3, international profile.
pub fn peer_endpoint(
    addr: SocketAddr,
    paths: &TlsPaths,
    ca_der: Vec<u8>,
    crl: Option<&std::path::Path>,
    server_name: &str,
) -> Result<Endpoint, TlsError> {
    let verifier = ReloadingVerifier::pinned(ca_der, crl)?;
    verified_endpoint(addr, paths, verifier, server_name)
}

fn verified_endpoint(
    addr: SocketAddr,
    paths: &TlsPaths,
    verifier: ReloadingVerifier,
    server_name: &str,
) -> Result<Endpoint, TlsError> {
    let verifier = Arc::new(verifier);
    let tls = ClientTlsConfig::new()
        .identity(identity(paths)?)
        .domain_name(server_name);
    Endpoint::from_shared(format!("https://{addr}"))
        .and_then(|e| e.tls_config_with_verifier(tls, verifier))
        .map(keep_alive)
        .map_err(|e| TlsError::Endpoint(format!("{addr}: {e}")))
}
