//! What a server-side handshake established, in one type for both crypto profiles: the
//! connection info every request carries (tonic `ConnectInfo`), and the stream of either TLS
//! stack. Code above this module (`peer_principal`, the hub's limits) reads [`ConnInfo`] and
//! never asks which stack ran the handshake.

use std::{
    fmt, io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use crate::identity::Principal;

/// The peer of an established connection, in every request's extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Where the connection came from.
    pub remote_addr: Option<SocketAddr>,
    /// The verified peer certificates in DER, the peer's SIGNING certificate (its identity)
    /// first; under TLCP its encryption certificate next.
    pub certs: Arc<Vec<Vec<u8>>>,
    /// The protocol version, e.g. `TLSv1_3` (rustls) or `NTLSv1.1` (TLCP, Tongsuo).
    pub protocol: &'static str,
    /// The cipher suite, e.g. `TLS13_AES_128_GCM_SHA256` or `ECDHE-SM2-SM4-GCM-SM3`.
    pub cipher: &'static str,
    /// The principal the signing certificate names, read once at the handshake (not at every
    /// request).
    pub principal: Option<Principal>,
}

impl ConnInfo {
    /// The info of a connection from `remote_addr` whose peer presented `certs` (its signing
    /// certificate first).
    pub(crate) fn new(
        remote_addr: Option<SocketAddr>,
        certs: Vec<Vec<u8>>,
        protocol: &'static str,
        cipher: &'static str,
    ) -> Self {
        let principal = certs.first().and_then(|c| Principal::from_cert_der(c));
        ConnInfo {
            remote_addr,
            certs: Arc::new(certs),
            protocol,
            cipher,
            principal,
        }
    }

    /// The peer's signing certificate (DER), if it presented one.
    pub fn leaf(&self) -> Option<&[u8]> {
        self.certs.first().map(Vec::as_slice)
    }

    pub(crate) fn of_rustls(stream: &tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        let (tcp, session) = stream.get_ref();
        ConnInfo::new(
            tcp.peer_addr().ok(),
            session
                .peer_certificates()
                .unwrap_or_default()
                .iter()
                .map(|c| c.to_vec())
                .collect(),
            session
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("unknown"),
            session
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("unknown"),
        )
    }
}

enum Kind {
    Rustls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    #[cfg(feature = "shangmi")]
    Tongsuo(Box<super::sm::SmStream>),
}

/// An established server-side session of either stack, with its [`ConnInfo`].
pub struct ServerStream {
    kind: Kind,
    info: ConnInfo,
}

impl fmt::Debug for ServerStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerStream")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl ServerStream {
    pub(crate) fn rustls(stream: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        let info = ConnInfo::of_rustls(&stream);
        ServerStream {
            kind: Kind::Rustls(Box::new(stream)),
            info,
        }
    }

    #[cfg(feature = "shangmi")]
    pub(crate) fn tongsuo(stream: super::sm::SmStream, info: ConnInfo) -> Self {
        ServerStream {
            kind: Kind::Tongsuo(Box::new(stream)),
            info,
        }
    }

    /// What the handshake established.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().kind {
            Kind::Rustls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(feature = "shangmi")]
            Kind::Tongsuo(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().kind {
            Kind::Rustls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(feature = "shangmi")]
            Kind::Tongsuo(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().kind {
            Kind::Rustls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(feature = "shangmi")]
            Kind::Tongsuo(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().kind {
            Kind::Rustls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(feature = "shangmi")]
            Kind::Tongsuo(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for ServerStream {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}
