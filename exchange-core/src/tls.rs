//! Mutual TLS for both directions (hub server, node client), and identity from the peer
//! certificate.
//!
//! The hub learns who is calling only from the client certificate the TLS handshake verified
//! against the exchange CA — never from a request field. Private key files must not be readable
//! by group or others; a daemon refuses to start otherwise.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, pem::PemObject};
use tonic::{
    Request, Status,
    transport::{Certificate, ClientTlsConfig, Endpoint, Identity},
};

use crate::{config::TlsPaths, identity::Principal, ids::DeptId};

pub mod acceptor;
mod client;
mod conn;
pub mod crl;
mod hello;
mod live;
pub mod mismatch;
pub mod peers;
pub mod reload;
#[cfg(feature = "shangmi")]
mod sm;

pub use client::{HubEndpoint, hub_endpoint, hub_endpoints, peer_endpoint};
pub use conn::{ConnInfo, ServerStream};
pub use live::Revocable;

/// A TLS file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no usable PEM object of the expected kind.
    #[error("{path} holds no {label} in PEM form")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected, e.g. `CERTIFICATE`.
        label: &'static str,
    },
    /// A private key file is readable by group or others.
    #[error("private key {path} is readable by others (mode {mode:o}): run `chmod 600 {path}`")]
    KeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The TLS configuration could not be built from the files.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The endpoint address is not usable.
    #[error("bad endpoint {0}")]
    Endpoint(String),
    /// A certificate revocation list is unusable (not a CRL, or not from the exchange CA).
    #[error("revocation list {path}: {reason}")]
    Crl {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Installs ring as rustls' process-wide crypto provider. Call first in every `main` and test
/// harness: with two providers compiled in, rustls cannot choose and tonic would panic.
pub fn install_ring_provider() {
    // An error means a provider is already installed (e.g. a second call in tests): fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn check_key_permissions(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Reads the first PEM object labelled `label` (`CERTIFICATE` or `PRIVATE KEY`) and returns its
/// DER bytes. For private keys, refuses files readable by others.
pub fn read_pem_file(path: &Path, label: &'static str) -> Result<Vec<u8>, TlsError> {
    let pem = read(path)?;
    let der = match label {
        "PRIVATE KEY" => {
            check_key_permissions(path)?;
            PrivatePkcs8KeyDer::from_pem_slice(&pem).map(|k| k.secret_pkcs8_der().to_vec())
        }
        _ => CertificateDer::from_pem_slice(&pem).map(|c| c.to_vec()),
    };
    der.map_err(|_| TlsError::Pem {
        path: path.to_owned(),
        label,
    })
}

fn identity(paths: &TlsPaths) -> Result<Identity, TlsError> {
    read_pem_file(&paths.key, "PRIVATE KEY")?; // validates form and permissions
    read_pem_file(&paths.cert, "CERTIFICATE")?;
    Ok(Identity::from_pem(read(&paths.cert)?, read(&paths.key)?))
}

fn ca(paths: &TlsPaths) -> Result<Certificate, TlsError> {
    read_pem_file(&paths.ca, "CERTIFICATE")?;
    Ok(Certificate::from_pem(read(&paths.ca)?))
}

/// The CA certificate in DER, for signature verification.
pub fn ca_der(paths: &TlsPaths) -> Result<Vec<u8>, TlsError> {
    read_pem_file(&paths.ca, "CERTIFICATE")
}

/// Client side: present `cert`, trust only `ca`, and expect `server_name` in the server's SANs.
pub fn client_config(paths: &TlsPaths, server_name: &str) -> Result<ClientTlsConfig, TlsError> {
    Ok(ClientTlsConfig::new()
        .ca_certificate(ca(paths)?)
        .identity(identity(paths)?)
        .domain_name(server_name))
}

/// A lazily connecting endpoint to `addr` over mutual TLS, with keep-alives so a dead hub is
/// noticed within seconds.
pub fn endpoint(addr: std::net::SocketAddr, tls: ClientTlsConfig) -> Result<Endpoint, TlsError> {
    Endpoint::from_shared(format!("https://{addr}"))
        .and_then(|e| e.tls_config(tls))
        .map(|e| {
            e.connect_timeout(Duration::from_secs(5))
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true)
        })
        .map_err(|e| TlsError::Endpoint(format!("{addr}: {e}")))
}

/// The principal named by the verified client certificate of this request (the signing
/// certificate under TLCP): from the [`ConnInfo`] of [`acceptor::incoming`], whichever stack ran
/// the handshake (the hub's listener, and a node's API with `[api] tls`), or from tonic's own
/// TLS.
pub fn peer_principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    let no_cert = || Status::unauthenticated("no client certificate");
    let unnamed = || Status::unauthenticated("client certificate names no exchange principal");
    match req.extensions().get::<ConnInfo>() {
        Some(info) => {
            info.leaf().ok_or_else(no_cert)?;
            info.principal.clone().ok_or_else(unnamed)
        }
        None => {
            let certs = req.peer_certs().ok_or_else(no_cert)?;
            let leaf = certs.first().ok_or_else(no_cert)?;
            Principal::from_cert_der(leaf).ok_or_else(unnamed)
        }
    }
}

/// The department of the calling node; refuses any other kind of principal.
pub fn peer_dept<T>(req: &Request<T>) -> Result<DeptId, Status> {
    match peer_principal(req)? {
        Principal::Dept(d) => Ok(d),
        other => Err(Status::permission_denied(format!(
            "{other} is not a department node"
        ))),
    }
}
