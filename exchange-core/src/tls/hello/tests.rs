//! The ClientHello peek on real first flights: rustls' (international), and with the `shangmi`
//! feature Tongsuo's TLCP and RFC 8998 ones; and that the peek leaves every byte to the handshake.

use std::sync::Arc;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{Hello, PEEK_BYTES, classify, peek};
use crate::{config::TlsProtocol, tls::mismatch::of_client as mismatch};

/// The first flight of a rustls TLS 1.3 client (ring's suites), as it goes on the wire.
fn rustls_hello() -> Vec<u8> {
    #[derive(Debug)]
    struct AnyServer;
    impl rustls::client::danger::ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("unused".into()))
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("unused".into()))
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            vec![rustls::SignatureScheme::ED25519]
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[test]
fn a_rustls_client_is_tls_without_sm_suites() {
    let hello = rustls_hello();
    assert_eq!(
        classify(&hello),
        Some(Hello::Tls {
            sm: false,
            other: true
        })
    );
    assert_eq!(
        mismatch(classify(&hello).unwrap(), TlsProtocol::Tlcp).unwrap(),
        "a client of the international profile (TLS 1.3 without SM suites) reached this shangmi \
         server (TLCP)"
    );
    assert_eq!(
        mismatch(classify(&hello).unwrap(), TlsProtocol::Tls13),
        None
    );
}

#[test]
fn a_partial_hello_needs_more_and_other_bytes_are_unknown() {
    let hello = rustls_hello();
    for cut in [0, 1, 4, 5, 9, 40, 43] {
        assert_eq!(classify(&hello[..cut]), None, "{cut} bytes");
    }
    assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Hello::Unknown));
    assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), Some(Hello::Unknown));
    // A handshake record that is not a ClientHello, and an impossible session id.
    let mut not_hello = hello.clone();
    not_hello[5] = 0x02;
    assert_eq!(classify(&not_hello), Some(Hello::Unknown));
    let mut long_session = hello;
    long_session[5 + 4 + 2 + 32] = 33;
    assert_eq!(classify(&long_session), Some(Hello::Unknown));
    // A record header claiming TLCP is enough to tell.
    assert_eq!(classify(&[0x16, 0x01, 0x01, 0x00, 0x40]), Some(Hello::Tlcp));
}

/// A ClientHello whose cipher suites are `suites`, and nothing after them.
fn hello_with(suites: &[u16]) -> Vec<u8> {
    let mut body = vec![0x01, 0, 0, 0, 0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // no session id
    let len = u16::try_from(suites.len() * 2).unwrap();
    body.extend_from_slice(&len.to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&body);
    record
}

#[test]
fn sm_suites_grease_and_the_scsv_are_told_apart() {
    let only_sm = hello_with(&[0x0A0A, 0x00C6, 0x00FF]);
    assert_eq!(
        classify(&only_sm),
        Some(Hello::Tls {
            sm: true,
            other: false
        })
    );
    assert!(
        mismatch(classify(&only_sm).unwrap(), TlsProtocol::Tls13)
            .unwrap()
            .contains("a client of the shangmi profile (TLS 1.3 with only SM suites, RFC 8998)")
    );
    assert_eq!(
        mismatch(classify(&only_sm).unwrap(), TlsProtocol::Tls13Sm),
        None
    );
    let both = hello_with(&[0x00C6, 0x1301]);
    assert_eq!(
        classify(&both),
        Some(Hello::Tls {
            sm: true,
            other: true
        })
    );
    assert_eq!(mismatch(classify(&both).unwrap(), TlsProtocol::Tls13), None);
    // Too many suites to ever fit in the window: no opinion rather than a wait.
    let huge = hello_with(&vec![0x1301; PEEK_BYTES]);
    assert_eq!(classify(&huge[..PEEK_BYTES]), Some(Hello::Unknown));
}

/// A client that writes `first`, pauses, writes `rest`; the server peeks, then reads everything.
async fn peek_then_read(first: Vec<u8>, rest: Vec<u8>) -> (Hello, Vec<u8>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&first).await.unwrap();
        tcp.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        tcp.write_all(&rest).await.unwrap();
        tcp.shutdown().await.unwrap();
    });
    let (mut tcp, _) = listener.accept().await.unwrap();
    let hello = peek(&tcp).await;
    let mut all = Vec::new();
    tcp.read_to_end(&mut all).await.unwrap();
    client.await.unwrap();
    (hello, all)
}

#[tokio::test]
async fn the_peek_waits_for_a_split_hello_and_consumes_nothing() {
    let hello = rustls_hello();
    let (first, rest) = hello.split_at(20);
    let (seen, read) = peek_then_read(first.to_vec(), rest.to_vec()).await;
    assert_eq!(
        seen,
        Hello::Tls {
            sm: false,
            other: true
        }
    );
    assert_eq!(read, hello, "the handshake gets every byte, in order");
}

#[tokio::test]
async fn a_silent_client_costs_at_most_the_peek_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let start = std::time::Instant::now();
    assert_eq!(peek(&tcp).await, Hello::Unknown);
    let took = start.elapsed();
    assert!(
        took >= super::PEEK_TIMEOUT && took < super::PEEK_TIMEOUT * 3,
        "{took:?}"
    );
}

/// Collects what a client writes; reading would block (the server's answer never comes).
#[cfg(feature = "shangmi")]
#[derive(Debug, Default)]
struct Capture(Vec<u8>);

#[cfg(feature = "shangmi")]
impl std::io::Read for Capture {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

#[cfg(feature = "shangmi")]
impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The first flight of a Tongsuo client of `protocol`, configured as the node's connector is.
#[cfg(feature = "shangmi")]
fn tongsuo_hello(protocol: TlsProtocol) -> Vec<u8> {
    use tongsuo::ssl::{SslContextBuilder, SslMethod, SslStream, SslVersion};
    let mut b = match protocol {
        TlsProtocol::Tlcp => {
            let mut b = SslContextBuilder::new(SslMethod::ntls_client()).unwrap();
            b.enable_ntls();
            b.enable_force_ntls();
            b.set_cipher_list(crate::tls::sm::TLCP_CIPHERS).unwrap();
            b
        }
        _ => {
            let mut b = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
            b.set_min_proto_version(Some(SslVersion::TLS1_3)).unwrap();
            b.set_max_proto_version(Some(SslVersion::TLS1_3)).unwrap();
            b.set_ciphersuites(crate::tls::sm::TLS13_SM_SUITES).unwrap();
            b.enable_sm_tls13_strict();
            b
        }
    };
    b.set_verify(tongsuo::ssl::SslVerifyMode::NONE);
    let ssl = tongsuo::ssl::Ssl::new(&b.build()).unwrap();
    let mut s = SslStream::new(ssl, Capture::default()).unwrap();
    assert!(s.connect().is_err(), "no server: the handshake waits");
    s.get_ref().0.clone()
}

#[cfg(feature = "shangmi")]
#[test]
fn tongsuo_clients_are_tlcp_or_rfc_8998() {
    let tlcp = tongsuo_hello(TlsProtocol::Tlcp);
    assert_eq!(classify(&tlcp), Some(Hello::Tlcp));
    assert_eq!(
        mismatch(Hello::Tlcp, TlsProtocol::Tls13).unwrap(),
        "a client of the shangmi profile (TLCP) reached this international server (TLS 1.3 \
         without SM suites)"
    );
    let sm13 = tongsuo_hello(TlsProtocol::Tls13Sm);
    assert_eq!(
        classify(&sm13),
        Some(Hello::Tls {
            sm: true,
            other: false
        })
    );
}
