//! The server side of mutual TLS, owned by the daemon rather than by tonic: the daemon sees
//! every refused handshake (who knocked, from where, with which certificate, and why), bounds
//! how long a handshake may take, and decides the protocol versions.
//!
//! One accept loop serves both crypto profiles: [`ServerContext`] is rustls (TLS 1.3,
//! `international`) or Tongsuo (TLCP or RFC 8998, `shangmi`), chosen from `[crypto] profile`
//! and `[tls] protocol`. Either way an accepted connection is a [`ServerStream`] whose
//! [`ConnInfo`] (signing certificate first) is what [`super::peer_principal`] reads, and it goes
//! through the same revocation check and connection registry.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use rustls::{
    DistinguishedName, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use tokio_stream::wrappers::ReceiverStream;

use super::{
    TlsError,
    conn::ServerStream,
    crl::{Crl, load_crl},
    hello,
    live::Revocable,
    mismatch, read_pem_file,
    reload::{RELOAD_CHECK, Reloadable},
};
use crate::{
    config::{TlsPaths, TlsProtocol},
    crypto::Profile,
    identity::Principal,
};

/// How long a client may take to complete the TLS handshake (slow or silent clients are cut).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection the TLS layer refused, for the log and the audit trail.
#[derive(Debug, Clone)]
pub struct RefusedHandshake {
    /// Where it came from.
    pub peer: SocketAddr,
    /// The identity named in the certificate it presented, if it presented one that parses.
    pub presented: Option<Principal>,
    /// Why it was refused (the TLS error, or a timeout).
    pub reason: String,
}

tokio::task_local! {
    /// The principal named by the client certificate presented in the handshake being run.
    static PRESENTED: Arc<Mutex<Option<Principal>>>;
}

/// Delegates to webpki's client verifier, noting which identity the client claimed so that a
/// refusal can name it.
#[derive(Debug)]
struct Recording(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Recording {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let _ = PRESENTED.try_with(|slot| {
            if let Ok(mut slot) = slot.lock() {
                *slot = Principal::from_cert_der(end_entity);
            }
        });
        self.0.verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Builds the rustls server config: TLS 1.3 only, a client certificate from the exchange CA
/// required (webpki checks its chain, validity and client-auth key usage, and with `paths.crl`
/// that the revocation list does not name it), HTTP/2 by ALPN.
pub fn server_config(paths: &TlsPaths) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    build_server_config(paths).map(|(config, _)| config)
}

/// [`server_config`], and the CRL it was built with.
pub(crate) fn build_server_config(
    paths: &TlsPaths,
) -> Result<(Arc<rustls::ServerConfig>, Option<Crl>), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_der = read_pem_file(&paths.ca, "CERTIFICATE")?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.clone()))
        .map_err(|e| TlsError::Config(format!("CA certificate {}: {e}", paths.ca.display())))?;
    let crl = paths
        .crl
        .as_deref()
        .map(|path| load_crl(path, &ca_der))
        .transpose()?;
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
    if let Some(crl) = &crl {
        // Certificates are issued directly by the CA (path length 0), and the CRL was checked to
        // come from it: every client's status is known, and an unknown one is refused.
        builder = builder
            .with_crls([crl.der.clone()])
            .only_check_end_entity_revocation();
    }
    let verifier = builder
        .build()
        .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let config = tls13_server(paths, provider, Arc::new(Recording(verifier)))?;
    Ok((config, crl))
}

/// A TLS 1.3 server config presenting `paths`' certificate and key, with `verifier` for client
/// certificates and HTTP/2 by ALPN: the node listener's and the peer listener's.
pub(crate) fn tls13_server(
    paths: &TlsPaths,
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert = CertificateDer::from(read_pem_file(&paths.cert, "CERTIFICATE")?);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(read_pem_file(
        &paths.key,
        "PRIVATE KEY",
    )?));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", paths.cert.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The server side of the channel, of the stack `[crypto] profile` and `[tls] protocol` chose.
#[derive(Clone)]
pub enum ServerContext {
    /// TLS 1.3 through rustls and ring (`international`).
    Rustls(Arc<rustls::ServerConfig>),
    /// TLCP or RFC 8998 through Tongsuo (`shangmi`).
    #[cfg(feature = "shangmi")]
    Tongsuo {
        /// The context every handshake starts from.
        ctx: tongsuo::ssl::SslContext,
        /// Which of the two, for the peer check after the handshake.
        protocol: TlsProtocol,
    },
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerContext::Rustls(_) => f.write_str("ServerContext::Rustls"),
            #[cfg(feature = "shangmi")]
            ServerContext::Tongsuo { protocol, .. } => {
                write!(f, "ServerContext::Tongsuo({})", protocol.name())
            }
        }
    }
}

/// The server context for `profile` from `paths` (checking `[tls] protocol` against it), and
/// the CRL in force. A build without the `shangmi` feature refuses that profile.
pub fn server_context(
    paths: &TlsPaths,
    profile: Profile,
) -> Result<(ServerContext, Option<Crl>), TlsError> {
    let protocol = TlsProtocol::of(profile, paths).map_err(|e| TlsError::Config(e.to_string()))?;
    match protocol {
        TlsProtocol::Tls13 => {
            build_server_config(paths).map(|(c, crl)| (ServerContext::Rustls(c), crl))
        }
        #[cfg(feature = "shangmi")]
        protocol => {
            let ctx = super::sm::server_context(protocol, paths)?;
            // Tongsuo verifies chains; revocation is checked by serial at admission (and open
            // connections cut) from the same CRL as under rustls.
            let crl = match &paths.crl {
                Some(path) => Some(load_crl(path, &read_pem_file(&paths.ca, "CERTIFICATE")?)?),
                None => None,
            };
            Ok((ServerContext::Tongsuo { ctx, protocol }, crl))
        }
        #[cfg(not(feature = "shangmi"))]
        protocol => Err(TlsError::Config(format!(
            "[tls] protocol {}: this build has no 国密 support (build with --features shangmi)",
            protocol.name()
        ))),
    }
}

/// One handshake with `ctx`, bounded by [`HANDSHAKE_TIMEOUT`] (after a peek at the ClientHello
/// of at most [`hello::PEEK_TIMEOUT`]). On refusal: why — saying so first when the client is of
/// the other profile, or of the other shangmi protocol — and the principal the client's
/// certificate named, if it got that far.
async fn handshake(
    ctx: ServerContext,
    tcp: TcpStream,
) -> Result<ServerStream, (String, Option<Principal>)> {
    let protocol = match &ctx {
        ServerContext::Rustls(_) => TlsProtocol::Tls13,
        #[cfg(feature = "shangmi")]
        ServerContext::Tongsuo { protocol, .. } => *protocol,
    };
    // Only looks: rustls or Tongsuo reads the same bytes next. The verdict only words a refusal.
    let offered = hello::peek(&tcp).await;
    match run_handshake(ctx, tcp).await {
        Ok(stream) => Ok(stream),
        Err((reason, presented)) => Err(match mismatch::of_client(offered, protocol) {
            Some(why) => (format!("{why}: {reason}"), presented),
            None => (reason, presented),
        }),
    }
}

async fn run_handshake(
    ctx: ServerContext,
    tcp: TcpStream,
) -> Result<ServerStream, (String, Option<Principal>)> {
    match ctx {
        ServerContext::Rustls(config) => {
            let acceptor = TlsAcceptor::from(config);
            let presented = Arc::new(Mutex::new(None));
            let handshake = PRESENTED.scope(Arc::clone(&presented), acceptor.accept(tcp));
            let taken = || presented.lock().ok().and_then(|p| p.clone());
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => Ok(ServerStream::rustls(stream)),
                Ok(Err(e)) => Err((e.to_string(), taken())),
                Err(_) => Err((
                    format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
                    taken(),
                )),
            }
        }
        #[cfg(feature = "shangmi")]
        ServerContext::Tongsuo { ctx, protocol } => super::sm::accept(&ctx, protocol, tcp)
            .await
            .map(|(stream, info)| ServerStream::tongsuo(stream, info)),
    }
}

/// Accepts TCP connections on `listener`, runs each handshake (bounded by
/// [`HANDSHAKE_TIMEOUT`]) on its own task with the configuration `tls` currently holds, and
/// yields the established sessions; refused ones (including a principal over its connection
/// limit) go to `on_refused`. Every [`RELOAD_CHECK`] the CRL is looked at even if no one
/// connects, so that revoked connections are cut promptly. Ends when `stop` is cancelled.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Reloadable>,
    on_refused: impl Fn(RefusedHandshake) + Send + Sync + 'static,
    stop: CancellationToken,
) -> ReceiverStream<Result<Revocable<ServerStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let on_refused = Arc::new(on_refused);
    tokio::spawn(async move {
        let mut reload = tokio::time::interval(RELOAD_CHECK);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await; // e.g. out of fds
                        continue;
                    }
                },
                _ = reload.tick() => {
                    tls.refresh();
                    continue;
                }
                () = stop.cancelled() => return,
            };
            // Small messages (pushes, acks) must not wait for Nagle's algorithm and the peer's
            // delayed ACK: without this each push-ack round trip cost ~40 ms (docs/benchmarks.md).
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "setting TCP_NODELAY");
            }
            let ctx = tls.current();
            let (tls, tx, on_refused) = (Arc::clone(&tls), tx.clone(), Arc::clone(&on_refused));
            tokio::spawn(async move {
                let (reason, presented) = match handshake(ctx, tcp).await {
                    Ok(stream) => {
                        let presented = stream.info().leaf().and_then(Principal::from_cert_der);
                        match tls.admit(stream) {
                            Ok(stream) => {
                                let _ = tx.send(Ok(stream)).await;
                                return;
                            }
                            Err(reason) => (reason, presented),
                        }
                    }
                    Err(refusal) => refusal,
                };
                on_refused(RefusedHandshake {
                    peer,
                    presented,
                    reason,
                });
            });
        }
    });
    ReceiverStream::new(rx)
}
