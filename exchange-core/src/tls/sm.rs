//! The 国密 channel: TLCP (GB/T 38636-2020, Tongsuo's "NTLS") with the double certificate, or
//! RFC 8998 TLS 1.3 with `TLS_SM4_GCM_SM3`, both from Tongsuo through `tongsuo` +
//! `tokio-tongsuo` (docs/shangmi.md). Only the safe API of the two crates is used.
//!
//! tonic's own TLS is rustls-only, so this module runs the handshake on both sides: the server
//! side is called by [`super::acceptor::incoming`] (the same accept loop, CRL and connection
//! registry as rustls), the client side by [`super::hub_endpoint`] through
//! `connect_with_connector_lazy`.
//!
//! Pitfalls found by the spike (kept here so nobody removes a line that looks redundant):
//! - `enable_force_ntls`: without it Tongsuo's `SSL_get_error` answers WANT_READ to a TLCP peer
//!   that closes mid-handshake (the crate's Rust BIO never reports EOF), and the handshake only
//!   ends at the timeout;
//! - `FAIL_IF_NO_PEER_CERT`: without it an ECC-SM2 client with no certificate gets in;
//! - Tongsuo does not check the PEER's key usage in TLCP: [`check_peer`] does, after the
//!   handshake;
//! - the client endpoint's URI is `http://`: the connector does the TLS itself, and a tonic built
//!   with a rustls feature refuses an `https` URI without a tonic TLS config.

use std::{
    io,
    net::SocketAddr,
    path::Path,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::net::TcpStream;
use tongsuo::{
    error::ErrorStack,
    ssl::{
        AlpnError, Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslRef,
        SslVerifyMode, SslVersion, select_next_proto,
    },
    x509::{
        X509, X509VerifyResult,
        store::{X509Lookup, X509Store, X509StoreBuilder},
        verify::X509VerifyFlags,
    },
};

use super::{
    TlsError, acceptor::HANDSHAKE_TIMEOUT, conn::ConnInfo, crl::FileStamp, crl::Watched,
    read_pem_file,
};
use crate::{
    config::{TlsPaths, TlsProtocol},
    crypto::sm::Sm2PrivateKey,
    identity::Principal,
};

/// TLCP cipher suites, in preference order (Tongsuo's names for GB/T 38636's ECDHE_SM4_GCM_SM3
/// and ECC_SM4_GCM_SM3). ECDHE-SM2 uses the client's encryption certificate as its static key;
/// ECC-SM2 is key transport to the server's encryption certificate.
pub(crate) const TLCP_CIPHERS: &str = "ECDHE-SM2-SM4-GCM-SM3:ECC-SM2-SM4-GCM-SM3";
/// The RFC 8998 cipher suite.
pub(crate) const TLS13_SM_SUITES: &str = "TLS_SM4_GCM_SM3";

/// A certificate and its SM2 key, as Tongsuo takes them.
struct CertKey {
    cert: X509,
    key: Sm2PrivateKey,
}

fn ts(what: &str) -> impl FnOnce(ErrorStack) -> TlsError + '_ {
    move |e| TlsError::Config(format!("{what}: {e}"))
}

fn cert(path: &Path) -> Result<X509, TlsError> {
    let der = read_pem_file(path, "CERTIFICATE")?;
    X509::from_der(&der).map_err(|e| TlsError::Config(format!("{}: {e}", path.display())))
}

fn cert_key(cert_path: &Path, key_path: &Path) -> Result<CertKey, TlsError> {
    let der = read_pem_file(key_path, "PRIVATE KEY")?; // checks the form and the permissions
    let key = Sm2PrivateKey::from_pkcs8_der(&der)
        .map_err(|e| TlsError::Config(format!("{}: {e}", key_path.display())))?;
    Ok(CertKey {
        cert: cert(cert_path)?,
        key,
    })
}

/// The encryption pair TLCP needs; `None` under RFC 8998.
fn enc_pair(protocol: TlsProtocol, paths: &TlsPaths) -> Result<Option<CertKey>, TlsError> {
    if protocol != TlsProtocol::Tlcp {
        return Ok(None);
    }
    match (&paths.enc_cert, &paths.enc_key) {
        (Some(c), Some(k)) => cert_key(c, k).map(Some),
        _ => Err(TlsError::Config(
            "TLCP needs the encryption certificate: set [tls] enc_cert and enc_key".to_owned(),
        )),
    }
}

/// The store peers are verified against: the CA and, for a client, the CRL (Tongsuo checks the
/// hub's certificate against it in the handshake; the server side checks serials at admission,
/// like rustls, see `reload::Reloadable::admit`).
fn verify_store(ca: &X509, crl: Option<&Path>) -> Result<X509Store, TlsError> {
    let mut store = X509StoreBuilder::new().map_err(ts("certificate store"))?;
    store.add_cert(ca.clone()).map_err(ts("CA certificate"))?;
    if let Some(crl) = crl {
        // No safe X509_STORE_add_crl in the `tongsuo` crate: the file lookup loads it now (a
        // changed CRL means a new context). CRL_CHECK = the leaf only (issued by the CA
        // directly).
        store
            .add_lookup(X509Lookup::file())
            .map_err(ts("revocation list lookup"))?
            .load_crl_file(crl, SslFiletype::PEM)
            .map_err(|e| TlsError::Crl {
                path: crl.to_owned(),
                reason: e.to_string(),
            })?;
        store
            .set_flags(X509VerifyFlags::CRL_CHECK)
            .map_err(ts("revocation check"))?;
    }
    Ok(store.build())
}

fn common(
    b: &mut SslContextBuilder,
    protocol: TlsProtocol,
    paths: &TlsPaths,
    crl: Option<&Path>,
) -> Result<(), TlsError> {
    let sign = cert_key(&paths.cert, &paths.key)?;
    let ca = cert(&paths.ca)?;
    match protocol {
        TlsProtocol::Tlcp => {
            let enc = enc_pair(protocol, paths)?;
            b.enable_ntls();
            // TLCP only; also what makes a peer closing mid-handshake noticed at once.
            b.enable_force_ntls();
            b.set_cipher_list(TLCP_CIPHERS).map_err(ts("cipher list"))?;
            b.set_sign_certificate(&sign.cert)
                .map_err(ts("[tls] cert (signing certificate)"))?;
            b.set_sign_private_key(sign.key.pkey())
                .map_err(ts("[tls] key"))?;
            if let Some(enc) = enc {
                b.set_enc_certificate(&enc.cert)
                    .map_err(ts("[tls] enc_cert (encryption certificate)"))?;
                b.set_enc_private_key(enc.key.pkey())
                    .map_err(ts("[tls] enc_key"))?;
            }
        }
        TlsProtocol::Tls13Sm => {
            b.set_min_proto_version(Some(SslVersion::TLS1_3))
                .map_err(ts("protocol version"))?;
            b.set_max_proto_version(Some(SslVersion::TLS1_3))
                .map_err(ts("protocol version"))?;
            b.set_ciphersuites(TLS13_SM_SUITES)
                .map_err(ts("cipher suites"))?;
            b.set_sigalgs_list("sm2sig_sm3")
                .map_err(ts("signature algorithms"))?;
            b.set_groups_list("curveSM2").map_err(ts("groups"))?;
            b.enable_sm_tls13_strict();
            b.set_certificate(&sign.cert).map_err(ts("[tls] cert"))?;
            b.set_private_key(sign.key.pkey())
                .map_err(ts("[tls] key"))?;
            b.check_private_key().map_err(ts("[tls] key"))?;
        }
        TlsProtocol::Tls13 => {
            return Err(TlsError::Config(
                "tls13 is the international profile's protocol, not Tongsuo's".to_owned(),
            ));
        }
    }
    b.set_verify_cert_store(verify_store(&ca, crl)?)
        .map_err(ts("certificate store"))?;
    Ok(())
}

/// The server context: `protocol` only, a client certificate chaining to the CA required.
pub(crate) fn server_context(
    protocol: TlsProtocol,
    paths: &TlsPaths,
) -> Result<SslContext, TlsError> {
    let method = match protocol {
        TlsProtocol::Tlcp => SslMethod::ntls_server(),
        _ => SslMethod::tls_server(),
    };
    let mut b = SslContextBuilder::new(method).map_err(ts("TLS context"))?;
    common(&mut b, protocol, paths, None)?;
    b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    let ca = cert(&paths.ca)?;
    b.add_client_ca(&ca).map_err(ts("client CA"))?;
    if protocol == TlsProtocol::Tls13Sm {
        b.set_alpn_select_callback(|_, client| {
            select_next_proto(b"\x02h2", client).ok_or(AlpnError::NOACK)
        });
    }
    Ok(b.build())
}

/// The client context: `protocol` only, the server must chain to the CA and, with a CRL, not
/// be listed in it.
pub(crate) fn client_context(
    protocol: TlsProtocol,
    paths: &TlsPaths,
    crl: Option<&Path>,
) -> Result<SslContext, TlsError> {
    let method = match protocol {
        TlsProtocol::Tlcp => SslMethod::ntls_client(),
        _ => SslMethod::tls_client(),
    };
    let mut b = SslContextBuilder::new(method).map_err(ts("TLS context"))?;
    common(&mut b, protocol, paths, crl)?;
    b.set_verify(SslVerifyMode::PEER);
    if protocol == TlsProtocol::Tls13Sm {
        b.set_alpn_protos(b"\x02h2").map_err(ts("ALPN"))?;
    }
    Ok(b.build())
}

/// The verified peer certificates in DER, the SIGNING certificate first. Server side,
/// `peer_certificate()` is the client's signing certificate and `peer_cert_chain()` the rest
/// (TLCP: the encryption certificate first); client side the chain holds all, signing first.
fn peer_certs(ssl: &SslRef) -> Vec<Vec<u8>> {
    let mut certs: Vec<Vec<u8>> = Vec::new();
    if let Some(der) = ssl.peer_certificate().and_then(|c| c.to_der().ok()) {
        certs.push(der);
    }
    for c in ssl.peer_cert_chain().into_iter().flatten() {
        if let Ok(der) = c.to_der()
            && !certs.contains(&der)
        {
            certs.push(der);
        }
    }
    certs
}

fn conn_info(ssl: &SslRef, remote_addr: Option<SocketAddr>) -> ConnInfo {
    ConnInfo::new(
        remote_addr,
        peer_certs(ssl),
        ssl.version_str(),
        ssl.current_cipher().map_or("none", |c| c.name()),
    )
}

/// Whether the certificate's key usage extension allows one of `wanted`.
fn key_usage(der: &[u8], wanted: fn(&x509_parser::extensions::KeyUsage) -> bool) -> bool {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, c)| c.key_usage().ok().flatten().map(|ku| wanted(ku.value)))
        .unwrap_or(false)
}

/// Checks what Tongsuo does not: the peer's signing certificate may sign (digitalSignature),
/// and under TLCP its encryption certificate is there, may encrypt or agree keys
/// (keyEncipherment / keyAgreement) and names the same principal.
pub(crate) fn check_peer(certs: &[Vec<u8>], protocol: TlsProtocol) -> Result<(), String> {
    let sign = certs
        .first()
        .ok_or_else(|| "the peer presented no certificate".to_owned())?;
    if !key_usage(sign, |ku| ku.digital_signature()) {
        return Err("the peer's signing certificate lacks the digitalSignature key usage".into());
    }
    if protocol == TlsProtocol::Tlcp {
        let enc = certs
            .get(1)
            .ok_or_else(|| "the peer presented no TLCP encryption certificate".to_owned())?;
        if !key_usage(enc, |ku| ku.key_encipherment() || ku.key_agreement()) {
            return Err(
                "the peer's encryption certificate lacks the keyEncipherment and keyAgreement \
                 key usages"
                    .into(),
            );
        }
        if Principal::from_cert_der(enc) != Principal::from_cert_der(sign) {
            return Err(
                "the peer's encryption and signing certificates name different principals".into(),
            );
        }
    }
    Ok(())
}

/// The handshake error, with the certificate verification result when that is what failed
/// (the error queue only says "certificate verify failed"; the reason, e.g. "unable to get
/// local issuer certificate", is in `SSL_get_verify_result`).
fn explain(ssl: &SslRef, e: &tongsuo::ssl::Error) -> String {
    let v = ssl.verify_result();
    if v == X509VerifyResult::OK {
        e.to_string()
    } else {
        format!("{e} ({})", v.error_string())
    }
}

/// An established Tongsuo session over TCP.
pub(crate) type SmStream = tokio_tongsuo::SslStream<TcpStream>;

/// Server side of one handshake (bounded by [`HANDSHAKE_TIMEOUT`]) and the peer check. On
/// refusal: why, and the principal the client's certificate named if it got that far.
pub(crate) async fn accept(
    ctx: &SslContext,
    protocol: TlsProtocol,
    tcp: TcpStream,
) -> Result<(SmStream, ConnInfo), (String, Option<Principal>)> {
    let remote = tcp.peer_addr().ok();
    let mut ssl = Ssl::new(ctx).map_err(|e| (e.to_string(), None))?;
    // Note the presented leaf for the audit trail; Tongsuo's verdict is returned unchanged.
    let presented = Arc::new(Mutex::new(None::<Principal>));
    let slot = Arc::clone(&presented);
    let mode = ssl.verify_mode();
    ssl.set_verify_callback(mode, move |ok, store| {
        if store.error_depth() == 0
            && let Some(der) = store.current_cert().and_then(|c| c.to_der().ok())
            && let Some(p) = Principal::from_cert_der(&der)
        {
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            // Under TLCP both leaves pass here; keep the first named one.
            slot.get_or_insert(p);
        }
        ok
    });
    let taken = || {
        presented
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    };
    let mut s = SmStream::new(ssl, tcp).map_err(|e| (e.to_string(), None))?;
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, Pin::new(&mut s).accept()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err((explain(s.ssl(), &e), taken())),
        Err(_) => {
            return Err((
                format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
                taken(),
            ));
        }
    }
    let info = conn_info(s.ssl(), remote);
    check_peer(&info.certs, protocol).map_err(|reason| (reason, taken()))?;
    Ok((s, info))
}

fn refused(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string())
}

/// Client side of one handshake to `addr`, expecting `server_name` (a DNS name or an IP
/// address) in the server's signing certificate (Tongsuo's host check), and the peer check.
pub(crate) async fn connect(
    ctx: &SslContext,
    protocol: TlsProtocol,
    addr: SocketAddr,
    server_name: &str,
) -> io::Result<SmStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut ssl = Ssl::new(ctx).map_err(refused)?;
    // An IP address is checked against the certificate's IP subjectAltNames (and sent no SNI,
    // RFC 6066), a name against its DNS ones.
    match server_name.parse::<std::net::IpAddr>() {
        Ok(ip) => ssl.param_mut().set_ip(ip).map_err(refused)?,
        Err(_) => {
            ssl.set_hostname(server_name).map_err(refused)?; // SNI
            ssl.param_mut().set_host(server_name).map_err(refused)?;
        }
    }
    let mut s = SmStream::new(ssl, tcp).map_err(refused)?;
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, Pin::new(&mut s).connect()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(refused(explain(s.ssl(), &e))),
        Err(_) => {
            return Err(refused(format!(
                "no handshake within {HANDSHAKE_TIMEOUT:?}"
            )));
        }
    }
    check_peer(&conn_info(s.ssl(), Some(addr)).certs, protocol).map_err(refused)?;
    Ok(s)
}

/// The client's context, rebuilt when `[tls] crl` changes (checked at each handshake), so a
/// revoked hub certificate is refused at the next connection without a restart. A CRL that
/// does not load leaves the previous context in force.
pub(crate) struct Connector {
    protocol: TlsProtocol,
    paths: TlsPaths,
    current: Mutex<(Option<Watched>, SslContext)>,
}

impl Connector {
    pub(crate) fn new(protocol: TlsProtocol, paths: &TlsPaths) -> Result<Self, TlsError> {
        let ctx = client_context(protocol, paths, paths.crl.as_deref())?;
        let watched = paths.crl.as_ref().map(|path| Watched {
            path: path.clone(),
            stamp: FileStamp::of(path),
        });
        Ok(Connector {
            protocol,
            paths: paths.clone(),
            current: Mutex::new((watched, ctx)),
        })
    }

    fn context(&self) -> SslContext {
        let mut guard = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let (watched, ctx) = &mut *guard;
        if let Some(w) = watched
            && w.changed()
        {
            match client_context(self.protocol, &self.paths, Some(&w.path)) {
                Ok(c) => {
                    tracing::info!(crl = %w.path.display(), "revocation list reloaded");
                    *ctx = c;
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "revocation list not reloaded; the previous one stays in force"
                ),
            }
        }
        ctx.clone()
    }

    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> io::Result<SmStream> {
        let ctx = self.context();
        connect(&ctx, self.protocol, addr, server_name).await
    }
}

#[cfg(test)]
#[cfg(feature = "shangmi")]
mod tests;
