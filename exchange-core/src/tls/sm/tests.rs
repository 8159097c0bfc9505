//! The 国密 channel end to end in process: a tonic server behind [`acceptor::incoming`] over
//! TLCP (and RFC 8998) with certificates issued by `crypto::sm::cert` as `exchange-certs` issues
//! them, and tonic clients through [`hub_endpoint`]; the refusals the issue names.

use std::{
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tongsuo::ssl::{SslContextBuilder, SslMethod, SslVerifyMode};
use tonic::{Request, Status, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::{TLCP_CIPHERS, check_peer, connect};
use crate::{
    config::{TlsPaths, TlsProtocol},
    crypto::{
        Profile,
        sm::{
            Sm2PrivateKey,
            cert::{self, CertUsage, ExtendedUsage, LeafExtensions, LeafRequest},
        },
    },
    identity::Principal,
    tls::{
        ConnInfo, acceptor, crl::Crl, crl::serial, hub_endpoint, peer_principal, reload::Reloadable,
    },
};

/// An SM2 CA that writes identities as `exchange-certs` lays them out.
struct Ca {
    key: Sm2PrivateKey,
    der: Vec<u8>,
    dir: PathBuf,
}

/// The files of one TLS identity.
struct Files {
    sign: PathBuf,
    sign_key: PathBuf,
    enc: PathBuf,
    enc_key: PathBuf,
}

fn write(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let key = Sm2PrivateKey::generate().unwrap();
        let der = cert::self_signed_ca(&key, name, 30).unwrap();
        write(&dir.join("ca.pem"), &cert::to_pem(&der).unwrap(), 0o644);
        Ca { key, der, dir }
    }

    fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// One certificate and key for `who`, of `usage`, as `<name>.pem` / `<name>.key`.
    fn issue(&self, who: &Principal, usage: CertUsage, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let (uri, dns, eku): (String, &[&str], _) = match who {
            Principal::Hub => (
                crate::identity::HUB_URI.to_owned(),
                &["localhost"],
                ExtendedUsage::ServerAuth,
            ),
            Principal::Dept(d) => (
                format!("{}{d}", crate::identity::DEPT_URI_PREFIX),
                &[],
                ExtendedUsage::ClientAuth,
            ),
            Principal::Admin(_) => unreachable!("not used here"),
        };
        let key = Sm2PrivateKey::generate().unwrap();
        let cn = match who {
            Principal::Dept(d) => d.to_string(),
            _ => "hub".to_owned(),
        };
        let req = LeafRequest {
            common_name: &cn,
            usage,
            dns_names: dns,
            days: 1,
        };
        let uris = [uri.as_str()];
        // The hub's certificate also names the loopback addresses, as `exchange-certs` has it.
        let loopback: [std::net::IpAddr; 2] = [
            std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::Ipv6Addr::LOCALHOST.into(),
        ];
        let ext = LeafExtensions {
            uris: &uris,
            ips: if *who == Principal::Hub {
                &loopback
            } else {
                &[]
            },
            extended: &[eku],
            backdate_secs: 3600,
        };
        let der =
            cert::issue_with(&self.der, &self.key, &key.public_key().unwrap(), &req, &ext).unwrap();
        let dir = self.dir.join(cn);
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        write(&c, &cert::to_pem(&der).unwrap(), 0o644);
        write(&k, &key.to_pkcs8_pem().unwrap(), 0o600);
        (c, k, der)
    }

    /// The double certificate (TLCP signing + encryption) of `who`.
    fn double(&self, who: &Principal) -> (Files, Vec<u8>) {
        let (sign, sign_key, der) = self.issue(who, CertUsage::Signing, "tls");
        let (enc, enc_key, _) = self.issue(who, CertUsage::Encryption, "tls-enc");
        (
            Files {
                sign,
                sign_key,
                enc,
                enc_key,
            },
            der,
        )
    }
}

fn paths(ca: &Path, f: &Files, protocol: Option<TlsProtocol>) -> TlsPaths {
    TlsPaths {
        ca: ca.to_owned(),
        cert: f.sign.clone(),
        key: f.sign_key.clone(),
        enc_cert: Some(f.enc.clone()),
        enc_key: Some(f.enc_key.clone()),
        crl: None,
        protocol,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    ca: Ca,
    hub: Files,
    node: Files,
    node_der: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "exchange-ca");
        let (hub, _) = ca.double(&Principal::Hub);
        let (node, node_der) = ca.double(&Principal::Dept("a".parse().unwrap()));
        Fixture {
            _dir: dir,
            ca,
            hub,
            node,
            node_der,
        }
    }

    fn hub_paths(&self, protocol: Option<TlsProtocol>) -> TlsPaths {
        paths(&self.ca.ca_pem(), &self.hub, protocol)
    }

    fn node_paths(&self, protocol: Option<TlsProtocol>) -> TlsPaths {
        paths(&self.ca.ca_pem(), &self.node, protocol)
    }
}

/// What the server saw: the principal and connection info of each request, each refusal.
#[derive(Clone, Default)]
struct Seen {
    calls: Arc<Mutex<Vec<(Principal, ConnInfo)>>>,
    refused: Arc<Mutex<Vec<acceptor::RefusedHandshake>>>,
}

impl Seen {
    fn refusals(&self) -> Vec<String> {
        self.refused
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.reason.clone())
            .collect()
    }

    /// Waits a little for a refusal to be reported (the handshake task reports it after the
    /// client has seen the error).
    async fn wait_refusals(&self, n: usize) -> Vec<String> {
        for _ in 0..100 {
            if self.refused.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.refusals()
    }
}

/// A health service behind the shared accept loop, with an interceptor that records who called.
async fn serve(paths: &TlsPaths) -> (SocketAddr, Arc<Reloadable>, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = Reloadable::load(paths, Profile::Shangmi, 0).unwrap();
    let seen = Seen::default();
    let refused = Arc::clone(&seen.refused);
    let incoming = acceptor::incoming(
        listener,
        Arc::clone(&tls),
        move |r| refused.lock().unwrap().push(r),
        CancellationToken::new(),
    );
    let calls = Arc::clone(&seen.calls);
    let record = move |req: Request<()>| -> Result<Request<()>, Status> {
        let who = peer_principal(&req)?;
        let info = req.extensions().get::<ConnInfo>().cloned().unwrap();
        calls.lock().unwrap().push((who, info));
        Ok(req)
    };
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(tonic::service::InterceptorLayer::new(record))
            .add_service(health)
            .serve_with_incoming(incoming),
    );
    (addr, tls, seen)
}

async fn check(channel: Channel) -> Result<(), Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
}

async fn mutual_auth(protocol: Option<TlsProtocol>, version: &str, cipher: &str) {
    let f = Fixture::new();
    let (addr, _, seen) = serve(&f.hub_paths(protocol)).await;
    let channel = hub_endpoint(addr, &f.node_paths(protocol), Profile::Shangmi, "localhost")
        .unwrap()
        .connect_lazy();
    check(channel).await.unwrap();
    let calls = seen.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (who, info) = &calls[0];
    assert_eq!(*who, Principal::Dept("a".parse().unwrap()));
    // The signing certificate is first, whatever order Tongsuo keeps them in.
    assert_eq!(info.leaf(), Some(f.node_der.as_slice()));
    assert_eq!(info.protocol, version);
    assert_eq!(info.cipher, cipher);
    assert!(info.remote_addr.is_some());
}

#[tokio::test]
async fn an_ip_address_as_server_name_is_checked_against_the_ip_names_and_connect_is_eager() {
    let f = Fixture::new();
    let (addr, _, seen) = serve(&f.hub_paths(None)).await;
    let node = f.node_paths(None);
    // `connect` runs the handshake now; the certificate names 127.0.0.1.
    let channel = hub_endpoint(addr, &node, Profile::Shangmi, "127.0.0.1")
        .unwrap()
        .connect()
        .await
        .unwrap();
    check(channel).await.unwrap();
    assert_eq!(seen.calls.lock().unwrap().len(), 1);
    // An address the certificate does not name is refused by the client, at `connect`.
    for name in ["127.0.0.2", "::2", "hub.example.gov"] {
        let err = hub_endpoint(addr, &node, Profile::Shangmi, name)
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        let mut cause: &dyn std::error::Error = &err;
        while let Some(next) = cause.source() {
            cause = next;
        }
        assert!(
            cause.to_string().contains("certificate verify failed"),
            "{name}: {cause}"
        );
    }
    assert_eq!(seen.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn tlcp_server_sees_the_principal_of_the_client_signing_certificate() {
    mutual_auth(None, "NTLSv1.1", "ECDHE-SM2-SM4-GCM-SM3").await;
}

#[tokio::test]
async fn tls13_sm_server_sees_the_principal_too() {
    mutual_auth(Some(TlsProtocol::Tls13Sm), "TLSv1.3", "TLS_SM4_GCM_SM3").await;
}

#[tokio::test]
async fn an_international_protocol_is_refused_under_shangmi() {
    let f = Fixture::new();
    let err = Reloadable::load(&f.hub_paths(Some(TlsProtocol::Tls13)), Profile::Shangmi, 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"tls13\" is not a protocol of the shangmi profile"),
        "{err}"
    );
}

/// rustls, TLS 1.3 only, international suites, accepting any server certificate: a failure can
/// only be the server's refusal.
async fn rustls_tls13_client(addr: SocketAddr) -> Result<(), String> {
    use rustls::{
        DigitallySignedStruct, SignatureScheme,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        pki_types::{CertificateDer, ServerName, UnixTime},
    };
    #[derive(Debug)]
    struct AcceptAll;
    impl ServerCertVerifier for AcceptAll {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAll))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn an_international_tls13_client_is_refused_at_the_handshake() {
    let f = Fixture::new();
    let (addr, _, seen) = serve(&f.hub_paths(None)).await;
    rustls_tls13_client(addr).await.expect_err("refused");
    let reasons = seen.wait_refusals(1).await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("no shared cipher"), "{reasons:?}");
    assert!(seen.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_tlcp_client_without_its_encryption_certificate_is_refused() {
    let f = Fixture::new();
    let (addr, _, seen) = serve(&f.hub_paths(None)).await;
    // The project's client never starts without it (Connector::new refuses): build Tongsuo's
    // TLCP client by hand, with the signing pair only, for both suites.
    let node = f.node_paths(None);
    let err = hub_endpoint(
        addr,
        &TlsPaths {
            enc_cert: None,
            enc_key: None,
            ..node.clone()
        },
        Profile::Shangmi,
        "localhost",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("TLCP needs the encryption certificate"),
        "{err}"
    );
    let key = Sm2PrivateKey::from_pkcs8_der(
        &crate::tls::read_pem_file(&node.key, "PRIVATE KEY").unwrap(),
    )
    .unwrap();
    let sign = tongsuo::x509::X509::from_der(&f.node_der).unwrap();
    let ca = tongsuo::x509::X509::from_der(&f.ca.der).unwrap();
    for suite in [TLCP_CIPHERS, "ECC-SM2-SM4-GCM-SM3"] {
        let mut b = SslContextBuilder::new(SslMethod::ntls_client()).unwrap();
        b.enable_ntls();
        b.enable_force_ntls();
        b.set_cipher_list(suite).unwrap();
        b.set_sign_certificate(&sign).unwrap();
        b.set_sign_private_key(key.pkey()).unwrap();
        b.cert_store_mut().add_cert(ca.clone()).unwrap();
        b.set_verify(SslVerifyMode::PEER);
        let ctx = b.build();
        // The client may finish its side before the server refuses (ECC-SM2): a call fails then.
        if let Ok(s) = connect(&ctx, TlsProtocol::Tlcp, addr, "localhost").await {
            drop(s);
        }
    }
    let reasons = seen.wait_refusals(2).await;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(seen.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_certificate_of_another_ca_is_refused() {
    let f = Fixture::new();
    let (addr, _, seen) = serve(&f.hub_paths(None)).await;
    let other = Ca::new(f.ca.dir.parent().unwrap(), "another-ca");
    let (stranger, _) = other.double(&Principal::Dept("a".parse().unwrap()));
    // It trusts the right CA (so only the server can refuse), its own certificates are foreign.
    let channel = hub_endpoint(
        addr,
        &paths(&f.ca.ca_pem(), &stranger, None),
        Profile::Shangmi,
        "localhost",
    )
    .unwrap()
    .connect_lazy();
    check(channel).await.expect_err("refused");
    let reasons = seen.wait_refusals(1).await;
    assert!(!reasons.is_empty());
    assert!(
        reasons[0].contains("unable to get local issuer certificate"),
        "{reasons:?}"
    );
    let presented = seen.refused.lock().unwrap()[0].presented.clone();
    assert_eq!(presented, Some(Principal::Dept("a".parse().unwrap())));
    assert!(seen.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_revoked_serial_is_cut_and_refused_at_admission() {
    let f = Fixture::new();
    let (addr, tls, seen) = serve(&f.hub_paths(None)).await;
    let node = f.node_paths(None);
    let channel = hub_endpoint(addr, &node, Profile::Shangmi, "localhost")
        .unwrap()
        .connect_lazy();
    check(channel.clone()).await.unwrap();
    // The CRL in force as the hub would hold it after loading one that lists the node's
    // signing certificate (an SM2 CRL file cannot be signed here: docs/shangmi.md).
    let crl = Crl {
        der: rustls::pki_types::CertificateRevocationListDer::from(Vec::new()),
        revoked: [serial(&f.node_der).unwrap()].into(),
        next_update: None,
        this_update: 0,
        number: None,
    };
    let cut = tls.install_crl(crl);
    assert_eq!(cut, ["department a"]);
    // The open connection is cut, and a new one is refused at admission.
    check(channel).await.expect_err("cut");
    let fresh = hub_endpoint(addr, &node, Profile::Shangmi, "localhost")
        .unwrap()
        .connect_lazy();
    check(fresh).await.expect_err("refused");
    let reasons = seen.wait_refusals(1).await;
    assert!(
        reasons.iter().any(|r| r == "the certificate is revoked"),
        "{reasons:?}"
    );
    assert_eq!(seen.calls.lock().unwrap().len(), 1);
}

#[test]
fn the_peer_check_wants_the_key_usages_of_the_double_certificate() {
    let f = Fixture::new();
    let who = Principal::Dept("b".parse().unwrap());
    let (_, _, sign) = f.ca.issue(&who, CertUsage::Signing, "s");
    let (_, _, enc) = f.ca.issue(&who, CertUsage::Encryption, "e");
    let (_, _, other_enc) = f.ca.issue(&Principal::Hub, CertUsage::Encryption, "h");
    check_peer(&[sign.clone(), enc.clone()], TlsProtocol::Tlcp).unwrap();
    check_peer(std::slice::from_ref(&sign), TlsProtocol::Tls13Sm).unwrap();
    let err = |certs: &[Vec<u8>], p| check_peer(certs, p).unwrap_err();
    assert!(err(&[enc.clone(), enc], TlsProtocol::Tlcp).contains("digitalSignature"));
    assert!(err(&[sign.clone(), sign.clone()], TlsProtocol::Tlcp).contains("keyEncipherment"));
    assert!(err(std::slice::from_ref(&sign), TlsProtocol::Tlcp).contains("no TLCP encryption"));
    assert!(err(&[sign, other_enc], TlsProtocol::Tlcp).contains("different principals"));
    assert!(err(&[], TlsProtocol::Tls13Sm).contains("no certificate"));
}
