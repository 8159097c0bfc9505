//! Certificate revocation lists: loading one, checking that it really comes from the exchange
//! CA, and noticing when its file changes.
//!
//! A CRL that is not signed by the CA, or names another issuer, is refused when it is loaded:
//! webpki would otherwise treat every peer's status as unknown and refuse them all. The serial
//! numbers it lists are kept apart too, so that connections already open with a certificate that
//! has just been revoked can be cut (see `acceptor`).
//!
//! The CA's key decides how the signature is checked ([`crate::crypto::cert_profile`]): with
//! ring through x509-parser under an international CA, with Tongsuo under a shangmi (SM2) one
//! (`sm2`, cargo feature `shangmi`; a build without it refuses such a CRL, naming the feature).

use std::{
    collections::BTreeSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use rustls::pki_types::{CertificateRevocationListDer, pem::PemObject};

use super::TlsError;
use crate::crypto::{Profile, cert_profile};

#[cfg(feature = "shangmi")]
mod der;
#[cfg(feature = "shangmi")]
pub mod sm2;

/// A CRL that verified against the exchange CA.
#[derive(Debug, Clone)]
pub struct Crl {
    /// The DER bytes, as rustls' verifiers take them.
    pub der: CertificateRevocationListDer<'static>,
    /// The serial numbers it revokes, without leading zero bytes.
    pub revoked: BTreeSet<Vec<u8>>,
    /// Its `nextUpdate`, in Unix seconds, if it has one (informational: see docs/security.md).
    pub next_update: Option<i64>,
    /// Its `thisUpdate`, in Unix seconds.
    pub this_update: i64,
    /// Its CRL number (big-endian, no leading zeros), if it carries one (`exchange-certs` counts
    /// them up from 1).
    pub number: Option<Vec<u8>>,
}

impl Crl {
    /// Whether this list is older than `other`, so that putting it in force would lift the
    /// revocations made since: by CRL number when both carry one, else by `thisUpdate`. A list
    /// as new as the one in force (the same, or re-issued in the same second) is not older.
    pub fn is_older_than(&self, other: &Crl) -> bool {
        match (&self.number, &other.number) {
            (Some(a), Some(b)) => (a.len(), a) < (b.len(), b),
            _ => self.this_update < other.this_update,
        }
    }

    /// Refuses this list (read from `path`) as the successor of `in_force` if it is older: it
    /// would lift the revocations made since. A reload treats this as any list that does not
    /// load: reported, and the previous one stays in force.
    pub fn may_replace(&self, in_force: &Crl, path: &Path) -> Result<(), TlsError> {
        if self.is_older_than(in_force) {
            return Err(crl_err(
                path,
                format!(
                    "it is older than the one in force ({} against {}), whose later revocations \
                     it would lift",
                    self.version(),
                    in_force.version()
                ),
            ));
        }
        Ok(())
    }

    /// How [`Crl::is_older_than`] placed it, for an error: its number, else its date.
    pub fn version(&self) -> String {
        match &self.number {
            Some(n) => format!(
                "number {}",
                u128_of(n).map_or_else(|| hex::encode(n), |v| v.to_string())
            ),
            None => format!("thisUpdate {}", self.this_update),
        }
    }

    /// Whether the certificate `cert_der` is listed.
    pub fn revokes(&self, cert_der: &[u8]) -> bool {
        serial(cert_der).is_some_and(|s| self.revoked.contains(&s))
    }
}

/// A certificate's serial number without leading zero bytes (the DER sign padding), so that
/// serials from certificates and from CRLs compare equal.
pub fn serial(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(strip_zeros(cert.raw_serial()))
}

/// A big-endian number that fits 128 bits.
fn u128_of(be: &[u8]) -> Option<u128> {
    (be.len() <= 16).then(|| be.iter().fold(0u128, |v, b| (v << 8) | u128::from(*b)))
}

fn strip_zeros(raw: &[u8]) -> Vec<u8> {
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    raw[first..].to_vec()
}

fn crl_err(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Crl {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads the CRL at `path` (PEM `X509 CRL`, or DER) and checks that the CA whose certificate
/// is `ca_der` issued and signed it.
pub fn load_crl(path: &Path, ca_der: &[u8]) -> Result<Crl, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let der = match CertificateRevocationListDer::from_pem_slice(&bytes) {
        Ok(der) => der,
        Err(_) => CertificateRevocationListDer::from(bytes),
    };
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der)
        .map_err(|e| crl_err(path, format!("CA certificate: {e}")))?;
    let (profile, _) =
        cert_profile(ca_der).map_err(|e| crl_err(path, format!("CA certificate: {e}")))?;
    let (revoked, next_update, this_update, number) = {
        let (rest, crl) = x509_parser::parse_x509_crl(der.as_ref())
            .map_err(|e| crl_err(path, format!("not a CRL: {e}")))?;
        if !rest.is_empty() {
            return Err(crl_err(path, "trailing bytes after the CRL"));
        }
        if crl.issuer().as_raw() != ca.subject().as_raw() {
            return Err(crl_err(
                path,
                format!("issued by {}, not by the exchange CA", crl.issuer()),
            ));
        }
        match profile {
            Profile::International => crl.verify_signature(ca.public_key()).map_err(|e| {
                crl_err(path, format!("signature does not verify with the CA: {e}"))
            })?,
            Profile::Shangmi => {
                verify_shangmi(&crl, der.as_ref(), ca_der).map_err(|e| crl_err(path, e))?;
            }
        }
        let revoked = crl
            .iter_revoked_certificates()
            .map(|r| strip_zeros(r.raw_serial()))
            .collect();
        (
            revoked,
            crl.next_update().map(|t| t.timestamp()),
            crl.last_update().timestamp(),
            crl.crl_number().map(|n| strip_zeros(&n.to_bytes_be())),
        )
    };
    Ok(Crl {
        der,
        revoked,
        next_update,
        this_update,
        number,
    })
}

/// Checks the signature of a CRL of a shangmi (SM2) CA with Tongsuo.
#[cfg(feature = "shangmi")]
fn verify_shangmi(
    crl: &x509_parser::revocation_list::CertificateRevocationList<'_>,
    der: &[u8],
    ca_der: &[u8],
) -> Result<(), String> {
    sm2::check_algorithm(crl)?;
    sm2::verify_signature(der, ca_der)
}

/// Without Tongsuo an SM2 signature cannot be checked: refuse, naming the feature.
#[cfg(not(feature = "shangmi"))]
fn verify_shangmi(
    _crl: &x509_parser::revocation_list::CertificateRevocationList<'_>,
    _der: &[u8],
    _ca_der: &[u8],
) -> Result<(), String> {
    Err(format!(
        "the CA is a shangmi (SM2) CA, and {}",
        crate::crypto::CryptoError::ShangmiUnavailable
    ))
}

/// What identifies one version of a file: an atomic replacement (`rename`) changes the inode, an
/// edit in place the size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    device: u64,
}

impl FileStamp {
    /// The stamp of `path` now, or `None` if it cannot be read.
    pub fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
            device: meta.dev(),
        })
    }
}

/// A CRL file and the stamp of the version last loaded from it.
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) path: PathBuf,
    pub(crate) stamp: Option<FileStamp>,
}

impl Watched {
    /// Whether the file changed since the version last loaded; records the new stamp.
    pub(crate) fn changed(&mut self) -> bool {
        let now = FileStamp::of(&self.path);
        if now == self.stamp || now.is_none() {
            // Gone or unreadable: keep what was loaded rather than drop every revocation.
            return false;
        }
        self.stamp = now;
        true
    }
}

#[cfg(test)]
mod tests;
