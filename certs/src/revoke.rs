//! Revocation: `exchange-certs revoke` and `exchange-certs crl`.
//!
//! The CA directory keeps the list of revoked certificates in `revoked.toml` (serial number,
//! time, reason, and whom the certificate named, for the operator), with the number of the last
//! CRL issued. Each `revoke` appends to that list and signs a new CRL from the whole of it, so
//! re-running never forgets an earlier revocation; the CRL is written atomically (a reader sees
//! the old file or the new one), which is what lets the hub and the nodes pick it up while they
//! run. Revoking a certificate that is already listed changes nothing but the CRL's number.
//!
//! Both work the same under a CA of either profile (`Issuer`): a shangmi (SM2) CA's CRL has
//! the same contents and numbering, signed SM2-with-SM3 (`crate::sm`, docs/shangmi.md).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use exchange_core::identity::Principal;
use rcgen::RevocationReason;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    Authority, Ca,
    ca::RevokedCert,
    files::{PUBLIC_MODE, replace_file},
};

/// File name of the revocation list's source inside a CA directory.
pub const REVOKED_FILE: &str = "revoked.toml";
/// Default file name of the CRL inside a CA directory.
pub const CRL_FILE: &str = "crl.pem";
/// How long a CRL says it is current (`nextUpdate`). Informational: the daemons keep using the
/// newest CRL they have, however old (see docs/security.md).
pub const CRL_DAYS: i64 = 30;

/// Why a certificate is revoked (RFC 5280 reason codes that apply here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Reason {
    /// No reason given.
    Unspecified,
    /// The private key leaked or may have.
    KeyCompromise,
    /// The department changed (merged, renamed).
    AffiliationChanged,
    /// Replaced by a new certificate (rotation).
    Superseded,
    /// The department no longer takes part.
    CessationOfOperation,
    /// Its right to take part was withdrawn.
    PrivilegeWithdrawn,
}

impl Reason {
    fn code(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "key-compromise",
            Reason::AffiliationChanged => "affiliation-changed",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessation-of-operation",
            Reason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        <Reason as clap::ValueEnum>::value_variants()
            .iter()
            .copied()
            .find(|r| r.name() == s)
    }
}

/// `revoked.toml`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokedList {
    /// Number of the last CRL issued (CRL numbers only go up).
    crl_number: u64,
    /// Every certificate revoked so far.
    #[serde(default)]
    revoked: Vec<Entry>,
}

/// One revoked certificate in `revoked.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// Serial number, lowercase hex without leading zero bytes.
    serial: String,
    /// Unix seconds.
    revoked_at: i64,
    /// A [`Reason`] name.
    reason: String,
    /// Whom the certificate named (for the operator only).
    subject: String,
}

fn read_list(ca_dir: &Path) -> Result<RevokedList> {
    let path = ca_dir.join(REVOKED_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RevokedList::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A certificate's serial number, normalised (no leading zero bytes).
fn serial_of(der: &[u8]) -> Result<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)?;
    let raw = cert.raw_serial();
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    Ok(raw[first..].to_vec())
}

/// The CA that signs the CRL, of whichever profile `ca.pem` says.
enum Issuer {
    International(Box<Ca>),
    #[cfg(feature = "shangmi")]
    Shangmi(crate::sm::SmCa),
}

impl Issuer {
    /// Loads the CA in `ca_dir`; a build without the `shangmi` feature refuses an SM2 CA (exit
    /// 64), as every other command does.
    fn load(ca_dir: &Path) -> Result<Self> {
        match Authority::load(ca_dir)? {
            Authority::International(ca) => Ok(Issuer::International(ca)),
            #[cfg(feature = "shangmi")]
            Authority::Shangmi(ca) => Ok(Issuer::Shangmi(ca)),
        }
    }

    /// Whether `cert_der` was issued by this CA.
    fn issued(&self, cert_der: &[u8]) -> Result<bool> {
        match self {
            Issuer::International(ca) => ca.issued(cert_der),
            #[cfg(feature = "shangmi")]
            Issuer::Shangmi(ca) => ca.issued(cert_der),
        }
    }

    /// The CRL (PEM) of `revoked`, numbered `number`, current for `days`.
    fn issue_crl(&self, revoked: &[RevokedCert], number: u64, days: i64) -> Result<String> {
        match self {
            Issuer::International(ca) => ca.issue_crl(revoked, number, days),
            #[cfg(feature = "shangmi")]
            Issuer::Shangmi(ca) => ca.issue_crl(revoked, number, days),
        }
    }
}

/// Signs and writes the CRL for `list` to `out`, bumping its number.
fn write_crl(ca: &Issuer, ca_dir: &Path, list: &mut RevokedList, out: &Path) -> Result<()> {
    list.crl_number += 1;
    let revoked = list
        .revoked
        .iter()
        .map(|e| {
            Ok(RevokedCert {
                serial: hex::decode(&e.serial)
                    .ok()
                    .with_context(|| format!("{REVOKED_FILE}: serial {:?}", e.serial))?,
                at: OffsetDateTime::from_unix_timestamp(e.revoked_at)
                    .with_context(|| format!("{REVOKED_FILE}: time of {}", e.serial))?,
                reason: Reason::from_name(&e.reason)
                    .unwrap_or(Reason::Unspecified)
                    .code(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let pem = ca.issue_crl(&revoked, list.crl_number, CRL_DAYS)?;
    // The list first: a CRL is never newer than the list it was made from.
    let text = toml::to_string_pretty(list).context("encoding the revocation list")?;
    replace_file(&ca_dir.join(REVOKED_FILE), text.as_bytes(), PUBLIC_MODE)?;
    replace_file(out, pem.as_bytes(), PUBLIC_MODE)
}

/// Revokes each certificate in `certs` (PEM files issued by the CA in `ca_dir`), and writes the
/// new CRL to `crl` (default `ca_dir/crl.pem`). Returns the CRL's path and whom each revoked
/// certificate named.
pub fn revoke(
    ca_dir: &Path,
    certs: &[PathBuf],
    reason: Reason,
    crl: Option<&Path>,
) -> Result<(PathBuf, Vec<String>)> {
    let ca = Issuer::load(ca_dir)?;
    let mut list = read_list(ca_dir)?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut named = Vec::new();
    for path in certs {
        let der = exchange_core::tls::read_pem_file(path, "CERTIFICATE")?;
        if !ca.issued(&der)? {
            bail!(
                "{} was not issued by the CA in {}",
                path.display(),
                ca_dir.display()
            );
        }
        let serial = hex::encode(serial_of(&der)?);
        let subject = Principal::from_cert_der(&der)
            .map_or_else(|| "no exchange principal".to_owned(), |p| p.to_string());
        if !list.revoked.iter().any(|e| e.serial == serial) {
            list.revoked.push(Entry {
                serial,
                revoked_at: now,
                reason: reason.name().to_owned(),
                subject: subject.clone(),
            });
        }
        named.push(subject);
    }
    let out = crl.map_or_else(|| ca_dir.join(CRL_FILE), Path::to_owned);
    write_crl(&ca, ca_dir, &mut list, &out)?;
    Ok((out, named))
}

/// Writes a fresh CRL of everything revoked so far (an empty one if nothing is) to `crl`
/// (default `ca_dir/crl.pem`): for a first CRL to configure, or to renew its dates.
pub fn write_current_crl(ca_dir: &Path, crl: Option<&Path>) -> Result<PathBuf> {
    let ca = Issuer::load(ca_dir)?;
    let mut list = read_list(ca_dir)?;
    let out = crl.map_or_else(|| ca_dir.join(CRL_FILE), Path::to_owned);
    write_crl(&ca, ca_dir, &mut list, &out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Validity, issue_into_dir};

    #[test]
    fn revoking_appends_and_the_crl_lists_every_serial() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let ca_dir = dir.path().join("ca");
        Ca::generate("CA", Validity::days_from_now(30))?.write(&ca_dir)?;
        let ca = Ca::load(&ca_dir)?;
        for d in ["a", "b"] {
            let who = Principal::Dept(d.parse()?);
            issue_into_dir(
                &ca,
                &who,
                &[],
                &[],
                Validity::days_from_now(1),
                &dir.path().join(d),
            )?;
        }
        let empty = write_current_crl(&ca_dir, None)?;
        let ca_der = ca.cert_der().to_vec();
        let crl = exchange_core::tls::crl::load_crl(&empty, &ca_der)?;
        assert!(crl.revoked.is_empty());

        let (out, named) = revoke(
            &ca_dir,
            &[dir.path().join("a/tls.pem")],
            Reason::KeyCompromise,
            None,
        )?;
        assert_eq!(named, ["department a"]);
        revoke(
            &ca_dir,
            &[dir.path().join("b/tls.pem")],
            Reason::Superseded,
            None,
        )?;
        revoke(
            &ca_dir,
            &[dir.path().join("a/tls.pem")],
            Reason::KeyCompromise,
            None,
        )?;
        let crl = exchange_core::tls::crl::load_crl(&out, &ca_der)?;
        for d in ["a", "b"] {
            let der = exchange_core::tls::read_pem_file(
                &dir.path().join(d).join("tls.pem"),
                "CERTIFICATE",
            )?;
            assert!(crl.revoked.contains(&serial_of(&der)?), "{d}");
        }
        assert_eq!(crl.revoked.len(), 2, "a revoked twice is listed once");
        assert_eq!(read_list(&ca_dir)?.crl_number, 4);

        // A certificate from another CA is refused, and the list is left as it was.
        let other = Ca::generate("Other", Validity::days_from_now(1))?;
        let stranger = other.issue_tls(
            &Principal::Dept("a".parse()?),
            &[],
            &[],
            Validity::days_from_now(1),
        )?;
        let path = dir.path().join("stranger.pem");
        fs::write(&path, stranger.cert_pem)?;
        assert!(revoke(&ca_dir, &[path], Reason::Unspecified, None).is_err());
        assert_eq!(read_list(&ca_dir)?.revoked.len(), 2);
        Ok(())
    }
}
