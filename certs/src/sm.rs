//! The 国密 (shangmi) CA: SM2 keys and SM2-with-SM3 signatures, all made by Tongsuo through
//! `exchange_core::crypto::sm` (docs/shangmi.md). Only with the cargo feature `shangmi`.
//!
//! It issues the same principals with the same names as the international [`crate::Ca`] (CN,
//! the principal's URI SAN, the hub's DNS and IP SANs, the same extended key usages), but each
//! TLS identity is TLCP's pair of certificates: a signing one (`digitalSignature`) and an
//! encryption one (`keyEncipherment`, `keyAgreement`), each with its own key. The
//! document-signing certificate is an SM2 one with `digitalSignature` and `nonRepudiation`.
//!
//! Its CRLs have the international CRL's shape and numbering ([`SmCa::issue_crl`]); the DER is
//! encoded by `exchange_core::tls::crl::sm2` and signed by Tongsuo.

use std::{collections::BTreeSet, fmt, fs, net::IpAddr, path::Path};

use anyhow::{Context, Result, bail, ensure};
use exchange_core::{
    crypto::sm::{
        Sm2PrivateKey, Sm2PublicKey,
        cert::{self, CertUsage, ExtendedUsage, LeafExtensions, LeafRequest},
    },
    identity::Principal,
    tls::crl::sm2::{CrlParams, RevokedEntry, sign_crl, to_pem},
};
use time::{Duration, OffsetDateTime};

use crate::{
    Identity, RevokedCert, Validity,
    files::{CA_CERT_FILE, CA_KEY_FILE},
};

/// How far back a leaf's validity starts, like the international CA's: clock skew between the
/// issuing machine and the checking ones.
const BACKDATE_SECS: u32 = 3600;

/// An SM2 exchange CA: its certificate and its private key.
pub struct SmCa {
    key: Sm2PrivateKey,
    cert_der: Vec<u8>,
    cert_pem: String,
    /// Issued certificates never outlive the CA's own.
    not_after: OffsetDateTime,
}

impl fmt::Debug for SmCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("SmCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Whole days from now until `until`, at least 1 (Tongsuo's builder counts validity in days).
fn days_until(until: OffsetDateTime) -> Result<u32> {
    let days = (until - OffsetDateTime::now_utc()).whole_days();
    ensure!(days >= 1, "empty validity period");
    u32::try_from(days).context("validity period too long")
}

fn pem_string(pem: &[u8], what: &str) -> Result<String> {
    String::from_utf8(pem.to_vec()).with_context(|| format!("{what}: PEM is not text"))
}

impl SmCa {
    /// A new self-signed SM2 CA: `CA:true`, key usage keyCertSign and cRLSign, signed
    /// SM2-with-SM3.
    pub fn generate(common_name: &str, validity: Validity) -> Result<SmCa> {
        let key = Sm2PrivateKey::generate().context("generating the SM2 CA key")?;
        let days = days_until(validity.not_after)?;
        let cert_der = cert::self_signed_ca(&key, common_name, days)
            .context("signing the SM2 CA certificate")?;
        let cert_pem = pem_string(&cert::to_pem(&cert_der)?, "CA certificate")?;
        Ok(SmCa {
            key,
            cert_der,
            cert_pem,
            not_after: validity.not_after,
        })
    }

    /// Loads `dir/ca.pem` and `dir/ca.key`, checking that the certificate is an unexpired CA
    /// and that the key belongs to it.
    pub fn load(dir: &Path) -> Result<SmCa> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        let key_pem =
            fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let bad_key = || format!("parsing private key {}", key_path.display());
        let (_, pem) = x509_parser::pem::parse_x509_pem(&key_pem).with_context(bad_key)?;
        ensure!(
            pem.label == "PRIVATE KEY",
            "{} holds no PKCS#8 private key",
            key_path.display()
        );
        let key = Sm2PrivateKey::from_pkcs8_der(&pem.contents).with_context(bad_key)?;

        let bad_cert = || format!("parsing certificate {}", cert_path.display());
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).with_context(bad_cert)?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&pem.contents).with_context(bad_cert)?;
        ensure!(
            cert.is_ca(),
            "{} is not a CA certificate",
            cert_path.display()
        );
        let mine = key.public_key().and_then(|k| k.to_spki_der());
        let theirs =
            Sm2PublicKey::from_certificate_der(&pem.contents).and_then(|k| k.to_spki_der());
        match (mine, theirs) {
            (Ok(a), Ok(b)) if a == b => {}
            _ => bail!(
                "{} does not belong to {}",
                key_path.display(),
                cert_path.display()
            ),
        }
        let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .with_context(bad_cert)?;
        ensure!(
            not_after > OffsetDateTime::now_utc(),
            "CA certificate {} has expired",
            cert_path.display()
        );
        Ok(SmCa {
            key,
            cert_der: pem.contents,
            cert_pem,
            not_after,
        })
    }

    /// Writes `dir/ca.pem` (0644) and `dir/ca.key` (PKCS#8, 0600), creating `dir`. Refuses to
    /// overwrite an existing `ca.key`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let key_pem = self.key.to_pkcs8_pem().context("encoding the CA key")?;
        crate::files::write_ca(dir, &key_pem, &self.cert_pem)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Whether `cert_der` was issued by this CA (its issuer is our subject and our key signed
    /// it, checked by Tongsuo), so that `revoke` never lists a stranger's serial number.
    pub fn issued(&self, cert_der: &[u8]) -> Result<bool> {
        let (_, ca) = x509_parser::parse_x509_certificate(&self.cert_der)?;
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der)?;
        Ok(cert.issuer().as_raw() == ca.subject().as_raw()
            && cert::issued_by(&self.cert_der, cert_der)?)
    }

    /// A CRL (PEM) listing `revoked`, numbered `number`, current for `days` from now: the
    /// international [`crate::Ca::issue_crl`]'s contents, signed SM2-with-SM3 by this CA.
    pub fn issue_crl(&self, revoked: &[RevokedCert], number: u64, days: i64) -> Result<String> {
        let now = OffsetDateTime::now_utc();
        let entries: Vec<RevokedEntry<'_>> = revoked
            .iter()
            .map(|r| RevokedEntry {
                serial: &r.serial,
                at: r.at,
                // RFC 5280's CRLReason code: rcgen's enum carries it as its discriminant.
                reason: r.reason as u8,
            })
            .collect();
        let params = CrlParams {
            this_update: now,
            next_update: now + Duration::days(days),
            number,
            revoked: &entries,
        };
        let der = sign_crl(&self.cert_der, &self.key, &params).context("signing the CRL")?;
        pem_string(&to_pem(&der)?, "CRL")
    }

    /// One of TLCP's two TLS certificates for `who`: `usage` is [`CertUsage::Signing`] (the
    /// certificate that authenticates) or [`CertUsage::Encryption`] (the one key exchange
    /// encrypts to). Names and EKU as [`crate::Ca::issue_tls`]: the hub gets serverAuth, DNS
    /// `localhost` plus `dns_names`, IP `127.0.0.1` and `::1` plus `ips`; departments and
    /// administrators clientAuth and no DNS or IP names.
    pub fn issue_tls(
        &self,
        who: &Principal,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
        usage: CertUsage,
    ) -> Result<Identity> {
        if *who == Principal::Hub {
            return self.issue_server_tls(who, dns_names, ips, validity, usage);
        }
        if !dns_names.is_empty() || !ips.is_empty() {
            bail!("only the hub's TLS certificate carries DNS names or IP addresses");
        }
        self.issue(who, validity, usage, &[], &[], &[ExtendedUsage::ClientAuth])
            .with_context(|| format!("issuing {} certificate for {who}", what(usage)))
    }

    /// One of TLCP's two certificates of a server's identity for `who`: serverAuth, DNS
    /// `localhost` plus `dns_names`, IP `127.0.0.1` and `::1` plus `ips` (as
    /// [`crate::Ca::issue_server_tls`]): the hub's, and a node API's (`issue-api`).
    pub fn issue_server_tls(
        &self,
        who: &Principal,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
        usage: CertUsage,
    ) -> Result<Identity> {
        let dns: BTreeSet<&str> = std::iter::once("localhost")
            .chain(dns_names.iter().map(String::as_str))
            .collect();
        ensure!(!dns.contains(""), "empty DNS name");
        let loopback: [IpAddr; 2] = [[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
        let ips: Vec<IpAddr> = loopback
            .into_iter()
            .chain(ips.iter().copied())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let dns: Vec<&str> = dns.into_iter().collect();
        self.issue(
            who,
            validity,
            usage,
            &dns,
            &ips,
            &[ExtendedUsage::ServerAuth],
        )
        .with_context(|| format!("issuing {} certificate for {who}", what(usage)))
    }

    /// The document-signing identity: an SM2 key, key usage digitalSignature and
    /// nonRepudiation, and id-kp-documentSigning as the only extended key usage.
    pub fn issue_signing(&self, who: &Principal, validity: Validity) -> Result<Identity> {
        self.issue(
            who,
            validity,
            CertUsage::DocumentSigning,
            &[],
            &[],
            &[ExtendedUsage::DocumentSigning],
        )
        .with_context(|| format!("issuing document-signing certificate for {who}"))
    }

    /// A fresh SM2 key and its certificate for `who`, with the principal's CN and URI SAN.
    fn issue(
        &self,
        who: &Principal,
        validity: Validity,
        usage: CertUsage,
        dns_names: &[&str],
        ips: &[IpAddr],
        extended: &[ExtendedUsage],
    ) -> Result<Identity> {
        let days = days_until(validity.not_after.min(self.not_after))?;
        let key = Sm2PrivateKey::generate()?;
        let common_name = crate::ca::common_name(who);
        let uri = who.uri();
        let req = LeafRequest {
            common_name: &common_name,
            usage,
            dns_names,
            days,
        };
        let ext = LeafExtensions {
            uris: &[&uri],
            ips,
            extended,
            backdate_secs: BACKDATE_SECS,
        };
        let der = cert::issue_with(&self.cert_der, &self.key, &key.public_key()?, &req, &ext)?;
        Ok(Identity {
            cert_pem: pem_string(&cert::to_pem(&der)?, "certificate")?,
            key_pem: pem_string(&key.to_pkcs8_pem()?, "private key")?,
            cert_der: der,
        })
    }
}

/// A TLS certificate's role, for messages.
fn what(usage: CertUsage) -> &'static str {
    match usage {
        CertUsage::Encryption => "TLS encryption",
        _ => "TLS signing",
    }
}
