//! TLS to the database (`[store] ca_file`): rustls with the ring provider, as every other
//! connection of the exchange. The server's certificate must chain to a certificate in
//! `ca_file` and name the host the URL connects to — libpq's `sslmode=verify-full`, whatever the
//! URL's `sslmode` says. Without `ca_file` connections are plaintext, and a URL that asks for
//! TLS is refused: encrypting without knowing whom the hub talks to would only look safe.

use std::{path::Path, sync::Arc};

use postgres::config::SslMode;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// A refusal of the configuration (not retryable).
fn refuse(message: String) -> StoreError {
    StoreError::Database {
        message,
        retry: false,
        disk_full: false,
    }
}

/// `url` as this client parses it: libpq's `sslmode=verify-ca` and `verify-full`, which it does
/// not know, become `require` (with `ca_file` the chain and the name are always checked); and
/// whether the URL asked for verification.
pub(super) fn normalize(url: &str) -> (String, bool) {
    let mut asked = false;
    let mut url = url.to_owned();
    for mode in ["sslmode=verify-full", "sslmode=verify-ca"] {
        if url.contains(mode) {
            asked = true;
            url = url.replace(mode, "sslmode=require");
        }
    }
    (url, asked)
}

/// The TLS connector for `config` (its `sslmode` made `require`) with the CA in `ca_file`, or
/// `None` for plaintext when there is no `ca_file`; refuses a URL whose `sslmode` contradicts.
pub(super) fn connector(
    config: &mut postgres::Config,
    ca_file: Option<&Path>,
    asked_verify: bool,
) -> Result<Option<MakeRustlsConnect>, StoreError> {
    let Some(ca_file) = ca_file else {
        if asked_verify || config.get_ssl_mode() == SslMode::Require {
            return Err(refuse(
                "[store] url asks for TLS (sslmode): set [store] ca_file to the CA that issued \
                 the database server's certificate"
                    .into(),
            ));
        }
        return Ok(None);
    };
    if config.get_ssl_mode() == SslMode::Disable {
        return Err(refuse(
            "[store] url says sslmode=disable but [store] ca_file is set: remove one".into(),
        ));
    }
    // Never `prefer`: a server (or someone in between) answering "no TLS" must not get the
    // connection in plaintext.
    config.ssl_mode(SslMode::Require);
    let shown = ca_file.display();
    let pem =
        std::fs::read(ca_file).map_err(|e| refuse(format!("[store] ca_file {shown}: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| refuse(format!("[store] ca_file {shown}: {e:?}")))?;
        roots
            .add(cert)
            .map_err(|e| refuse(format!("[store] ca_file {shown}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(refuse(format!(
            "[store] ca_file {shown}: no PEM CERTIFICATE in it"
        )));
    }
    let tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| refuse(format!("TLS to the database: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(tls)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_become_require_and_are_remembered() {
        let (url, asked) = normalize("postgresql://u@db1/x?sslmode=verify-full");
        assert_eq!(url, "postgresql://u@db1/x?sslmode=require");
        assert!(asked);
        let (url, asked) = normalize("host=db1 sslmode=verify-ca user=u");
        assert_eq!(url, "host=db1 sslmode=require user=u");
        assert!(asked);
        assert!(!normalize("postgresql://u@db1/x").1);
    }

    #[test]
    fn tls_without_a_ca_is_refused_and_disable_with_one_too() {
        for url in [
            "postgresql://u@db1/x?sslmode=require",
            "host=db1 sslmode=verify-full",
        ] {
            let (url, asked) = normalize(url);
            let mut config: postgres::Config = url.parse().expect("parses");
            let Err(e) = connector(&mut config, None, asked) else {
                panic!("TLS without a CA must be refused");
            };
            assert!(e.to_string().contains("ca_file"), "{e}");
        }
        let mut config: postgres::Config = "host=db1 sslmode=disable".parse().expect("parses");
        let Err(e) = connector(&mut config, Some(Path::new("/nonexistent")), false) else {
            panic!("sslmode=disable with a CA must be refused");
        };
        assert!(e.to_string().contains("sslmode=disable"), "{e}");
        let mut config: postgres::Config = "host=db1".parse().expect("parses");
        assert!(
            connector(&mut config, None, false)
                .expect("plaintext")
                .is_none()
        );
    }
}
