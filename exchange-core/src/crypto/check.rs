//! Does a config's `[crypto] profile` match its certificates? (`check-config`, docs/shangmi.md)
//!
//! A certificate's profile is read from its public key algorithm with x509-parser, so this works
//! in every build, with or without Tongsuo: an SM2 key (id-ecPublicKey on the curve
//! 1.2.156.10197.1.301, or the SM2 algorithm OID itself) is `shangmi`, any other key (Ed25519,
//! ECDSA P-256, RSA) is `international`. A hub or node whose CA, TLS or signing certificate is of
//! the other profile is refused at start with the file, the config key and both profiles named,
//! rather than failing later in a handshake or a signature check with a less useful message.

use std::path::{Path, PathBuf};

use x509_parser::prelude::{FromDer, X509Certificate};

use super::Profile;
use crate::config::{SigningPaths, TlsPaths};

/// id-ecPublicKey (RFC 5480): the algorithm of ECDSA and, with the SM2 curve, of SM2 keys.
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// The SM2 curve (GB/T 33560 / GM/T 0006), as the parameter of id-ecPublicKey; some issuers
/// also put it in the algorithm field itself.
const SM2_CURVE: &str = "1.2.156.10197.1.301";
/// NIST P-256, the international profile's TLS and CA key.
const P256_CURVE: &str = "1.2.840.10045.3.1.7";
/// Ed25519 (RFC 8410), the international profile's document-signing key.
const ED25519: &str = "1.3.101.112";
/// rsaEncryption, which an operator's own CA may still use.
const RSA: &str = "1.2.840.113549.1.1.1";

/// Why a config's certificates do not fit its profile, or the profile cannot run here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The profile needs Tongsuo, and this binary was compiled without the `shangmi` feature.
    #[error(
        "this {program} was built without 国密 support: rebuild with \
         `cargo build --release --features shangmi`"
    )]
    NotBuilt {
        /// The binary, e.g. `exchange-hub`.
        program: &'static str,
    },
    /// A certificate of the other profile.
    #[error(
        "{key} {} is {} ({algorithm}) certificate but [crypto] profile is {configured}",
        path.display(),
        with_article(*found)
    )]
    Mismatch {
        /// The config key naming the file, e.g. `tls.cert`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The profile the certificate's key belongs to.
        found: Profile,
        /// Its key algorithm, for the operator (`SM2`, `Ed25519`, `ECDSA P-256`, ...).
        algorithm: String,
        /// `[crypto] profile`.
        configured: Profile,
    },
    /// A file the profile needs is not configured.
    #[error("{key} is required when [crypto] profile is {profile}: {why}")]
    Missing {
        /// The missing config key, e.g. `[tls] enc_cert`.
        key: &'static str,
        /// `[crypto] profile`.
        profile: Profile,
        /// Why it is needed and where it comes from.
        why: &'static str,
    },
    /// A file the other profile needs is configured.
    #[error(
        "{key} is set but [crypto] profile is {profile}, which has no TLS encryption \
         certificate: remove it, or set [crypto] profile = \"shangmi\""
    )]
    Unexpected {
        /// The config key, e.g. `[tls] enc_cert`.
        key: &'static str,
        /// `[crypto] profile`.
        profile: Profile,
    },
    /// A certificate file that cannot be read or parsed.
    #[error("{key} {}: {message}", path.display())]
    BadFile {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// "a shangmi" / "an international".
fn with_article(p: Profile) -> String {
    match p {
        Profile::International => format!("an {p}"),
        Profile::Shangmi => format!("a {p}"),
    }
}

/// The profile a DER certificate belongs to, from its subject public key, and the key
/// algorithm's name for messages.
pub fn cert_profile(der: &[u8]) -> Result<(Profile, String), String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let alg = &cert.public_key().algorithm;
    let oid = alg.algorithm.to_id_string();
    let curve = alg
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    Ok(match (oid.as_str(), curve.as_deref()) {
        (SM2_CURVE, _) | (EC_PUBLIC_KEY, Some(SM2_CURVE)) => (Profile::Shangmi, "SM2".to_owned()),
        (EC_PUBLIC_KEY, Some(P256_CURVE)) => (Profile::International, "ECDSA P-256".to_owned()),
        (EC_PUBLIC_KEY, Some(c)) => (Profile::International, format!("ECDSA curve {c}")),
        (ED25519, _) => (Profile::International, "Ed25519".to_owned()),
        (RSA, _) => (Profile::International, "RSA".to_owned()),
        (other, _) => (Profile::International, format!("key algorithm {other}")),
    })
}

/// Reads the certificate (PEM) at `path` and returns its profile and key algorithm.
fn file_profile(key: &'static str, path: &Path) -> Result<(Profile, String), ProfileError> {
    let unreadable = |message: String| ProfileError::BadFile {
        key,
        path: path.to_owned(),
        message,
    };
    let der =
        crate::tls::read_pem_file(path, "CERTIFICATE").map_err(|e| unreadable(e.to_string()))?;
    cert_profile(&der).map_err(unreadable)
}

/// Checks that the certificate at `path` (config key `key`) belongs to `profile`.
fn expect(profile: Profile, key: &'static str, path: &Path) -> Result<(), ProfileError> {
    let (found, algorithm) = file_profile(key, path)?;
    if found == profile {
        Ok(())
    } else {
        Err(ProfileError::Mismatch {
            key,
            path: path.to_owned(),
            found,
            algorithm,
            configured: profile,
        })
    }
}

/// The config keys of one TLS section: `[tls]` itself, or `[api] tls` of a node.
#[derive(Debug, Clone, Copy)]
pub struct TlsKeys {
    /// e.g. `tls.ca`.
    pub ca: &'static str,
    /// e.g. `tls.cert`.
    pub cert: &'static str,
    /// e.g. `tls.enc_cert`.
    pub enc_cert: &'static str,
    /// e.g. `[tls] enc_cert`, as a missing key is named.
    pub enc_cert_section: &'static str,
    /// e.g. `[tls] enc_key`.
    pub enc_key_section: &'static str,
}

/// `[tls]` of a hub or node.
pub const TLS_KEYS: TlsKeys = TlsKeys {
    ca: "tls.ca",
    cert: "tls.cert",
    enc_cert: "tls.enc_cert",
    enc_cert_section: "[tls] enc_cert",
    enc_key_section: "[tls] enc_key",
};

/// Checks one TLS section against `profile`: the CA, the TLS certificate and, when present, the
/// encryption certificate are of that profile. `require_enc` makes the encryption certificate
/// and key mandatory under `shangmi` (TLCP's double certificates).
pub fn check_tls_profile(
    profile: Profile,
    tls: &TlsPaths,
    keys: TlsKeys,
    require_enc: bool,
) -> Result<(), ProfileError> {
    expect(profile, keys.ca, &tls.ca)?;
    expect(profile, keys.cert, &tls.cert)?;
    let missing = |key| ProfileError::Missing {
        key,
        profile,
        why: ENC_WHY,
    };
    let unexpected = |key| ProfileError::Unexpected { key, profile };
    match (profile, &tls.enc_cert, &tls.enc_key) {
        (Profile::International, None, None) => {}
        (Profile::International, Some(_), _) => return Err(unexpected(keys.enc_cert_section)),
        (Profile::International, None, Some(_)) => return Err(unexpected(keys.enc_key_section)),
        (Profile::Shangmi, Some(enc), Some(_)) => expect(profile, keys.enc_cert, enc)?,
        (Profile::Shangmi, Some(_), None) => return Err(missing(keys.enc_key_section)),
        (Profile::Shangmi, None, Some(_)) => return Err(missing(keys.enc_cert_section)),
        (Profile::Shangmi, None, None) if require_enc => {
            return Err(missing(keys.enc_cert_section));
        }
        (Profile::Shangmi, None, None) => {}
    }
    Ok(())
}

const ENC_WHY: &str = "TLCP needs an encryption certificate and key beside the signing one \
                       (`exchange-certs` writes them as tls-enc.pem and tls-enc.key)";

/// Checks a hub's or node's `[tls]` and `[signing]` against `[crypto] profile`: the profile is
/// built into this binary (`program`), every certificate is of that profile, and under
/// `shangmi` the TLS encryption certificate and key are configured.
pub fn check_profile(
    program: &'static str,
    profile: Profile,
    tls: &TlsPaths,
    signing: &SigningPaths,
) -> Result<(), ProfileError> {
    profile.ensure_built(program)?;
    check_tls_profile(profile, tls, TLS_KEYS, true)?;
    expect(profile, "signing.cert", &signing.cert)
}

/// Under `shangmi`, what the international loaders (rustls, ring) would check of a hub's or
/// node's identity but cannot read: every SM2 key file holds an SM2 key matching its
/// certificate, every certificate is signed by the CA, and the TLS and signing certificates
/// name `who`. Run after [`check_profile`], which has made sure every file is of this profile.
/// In a build without the `shangmi` feature it refuses, like [`Profile::ensure_built`].
#[cfg(not(feature = "shangmi"))]
pub fn check_shangmi_identity(
    program: &'static str,
    _tls: &TlsPaths,
    _signing: &SigningPaths,
    _who: &crate::identity::Principal,
) -> Result<(), ProfileError> {
    Err(ProfileError::NotBuilt { program })
}

/// Under `shangmi`, what the international loaders (rustls, ring) would check of a hub's or
/// node's identity but cannot read: every SM2 key file holds an SM2 key matching its
/// certificate, every certificate is signed by the CA, and the TLS and signing certificates
/// name `who`. Run after [`check_profile`], which has made sure every file is of this profile.
#[cfg(feature = "shangmi")]
pub fn check_shangmi_identity(
    _program: &'static str,
    tls: &TlsPaths,
    signing: &SigningPaths,
    who: &crate::identity::Principal,
) -> Result<(), ProfileError> {
    use super::sm::{Sm2PrivateKey, Sm2PublicKey, cert::issued_by};

    let ca_der = read_cert("tls.ca", &tls.ca)?;
    let mut pairs = vec![
        ("tls.cert", &tls.cert, "tls.key", &tls.key, true),
        (
            "signing.cert",
            &signing.cert,
            "signing.key",
            &signing.key,
            true,
        ),
    ];
    if let (Some(cert), Some(key)) = (&tls.enc_cert, &tls.enc_key) {
        pairs.push(("tls.enc_cert", cert, "tls.enc_key", key, false));
    }
    for (cert_key, cert_path, key_key, key_path, names_who) in pairs {
        let bad = |key: &'static str, path: &Path, message: String| ProfileError::BadFile {
            key,
            path: path.to_owned(),
            message,
        };
        let der = read_cert(cert_key, cert_path)?;
        if !issued_by(&ca_der, &der).map_err(|e| bad(cert_key, cert_path, e.to_string()))? {
            return Err(bad(
                cert_key,
                cert_path,
                format!("is not signed by the CA in {}", tls.ca.display()),
            ));
        }
        if names_who && crate::identity::Principal::from_cert_der(&der).as_ref() != Some(who) {
            return Err(bad(cert_key, cert_path, format!("does not name {who}")));
        }
        let pkcs8 = crate::tls::read_pem_file(key_path, "PRIVATE KEY")
            .map_err(|e| bad(key_key, key_path, e.to_string()))?;
        let key = Sm2PrivateKey::from_pkcs8_der(&pkcs8)
            .map_err(|e| bad(key_key, key_path, format!("not an SM2 private key: {e}")))?;
        let mine = key.public_key().and_then(|k| k.to_spki_der());
        let theirs = Sm2PublicKey::from_certificate_der(&der).and_then(|k| k.to_spki_der());
        match (mine, theirs) {
            (Ok(a), Ok(b)) if a == b => {}
            _ => {
                return Err(bad(
                    key_key,
                    key_path,
                    format!("does not belong to {}", cert_path.display()),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(feature = "shangmi")]
fn read_cert(key: &'static str, path: &Path) -> Result<Vec<u8>, ProfileError> {
    crate::tls::read_pem_file(path, "CERTIFICATE").map_err(|e| ProfileError::BadFile {
        key,
        path: path.to_owned(),
        message: e.to_string(),
    })
}

impl Profile {
    /// Refuses a profile this binary cannot handle: `shangmi` without the cargo feature.
    pub fn ensure_built(self, program: &'static str) -> Result<(), ProfileError> {
        match self {
            Profile::International => Ok(()),
            Profile::Shangmi if cfg!(feature = "shangmi") => Ok(()),
            Profile::Shangmi => Err(ProfileError::NotBuilt { program }),
        }
    }
}

#[cfg(test)]
mod tests;
