//! SM2 certificates (GM/T 0015 style) issued with Tongsuo's X.509 builder: a self-signed CA and
//! end-entity certificates under it, each signed SM2-with-SM3 with [`super::DISTID`].
//!
//! TLCP (GB/T 38636) gives every TLS identity two certificates, one to sign with and one to
//! encrypt to; [`CertUsage`] says which a certificate is, and sets its key usage accordingly.
//! `exchange-certs` builds the exchange's identities on [`issue_with`], adding the names and
//! extended key usages of each principal ([`LeafExtensions`]).

use std::net::IpAddr;

use tongsuo::asn1::Asn1Time;
use tongsuo::bn::{BigNum, MsbOption};
use tongsuo::error::ErrorStack;
use tongsuo::hash::MessageDigest;
use tongsuo::nid::Nid;
use tongsuo::pkey::{HasPublic, PKeyRef};
use tongsuo::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use tongsuo::x509::{X509, X509Builder, X509Extension, X509Name, X509NameBuilder, X509NameRef};

use super::{Sm2PrivateKey, Sm2PublicKey, SmError, ts};

/// What an end-entity certificate's key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUsage {
    /// Signatures: TLCP's signing certificate, and document signing (`digitalSignature`).
    Signing,
    /// TLCP's encryption certificate: key exchange only (`keyEncipherment`, `keyAgreement`).
    Encryption,
    /// Official documents and evidence: `digitalSignature` and `nonRepudiation`
    /// (contentCommitment), like the international profile's Ed25519 signing certificate.
    DocumentSigning,
}

/// An extended key usage of an end-entity certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendedUsage {
    /// id-kp-serverAuth: the hub's TLS certificates.
    ServerAuth,
    /// id-kp-clientAuth: a department's or administrator's TLS certificates.
    ClientAuth,
    /// id-kp-documentSigning (RFC 9336, 1.3.6.1.5.5.7.3.36): a document-signing certificate,
    /// which no TLS stack accepts for a connection.
    DocumentSigning,
}

/// What [`issue_with`] adds to a [`LeafRequest`]: the names and uses of an exchange identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeafExtensions<'a> {
    /// URI subjectAltNames, e.g. `urn:exchange:hub` (where the daemons read identities from).
    pub uris: &'a [&'a str],
    /// IP address subjectAltNames.
    pub ips: &'a [IpAddr],
    /// Extended key usages (none: no extension).
    pub extended: &'a [ExtendedUsage],
    /// Seconds to start validity before now, to absorb clock skew between the issuing machine
    /// and the checking ones (0: from now).
    pub backdate_secs: u32,
}

/// What the CA is asked to certify.
#[derive(Debug, Clone)]
pub struct LeafRequest<'a> {
    /// The subject's common name (a department id, or the hub's name).
    pub common_name: &'a str,
    /// Signing or encryption; decides the key usage extension.
    pub usage: CertUsage,
    /// DNS names for the subjectAltName extension (none: no extension).
    pub dns_names: &'a [&'a str],
    /// Validity from now, in days (at least 1).
    pub days: u32,
}

/// A self-signed SM2 CA certificate (DER) for `key`: `basicConstraints` CA (critical), key usage
/// `keyCertSign` and `cRLSign` (critical), subject key identifier.
pub fn self_signed_ca(
    key: &Sm2PrivateKey,
    common_name: &str,
    days: u32,
) -> Result<Vec<u8>, SmError> {
    let name = subject_name(common_name)?;
    let mut b = builder(&name, &name, key.pkey(), days)?;
    append(&mut b, BasicConstraints::new().critical().ca().build())?;
    append(
        &mut b,
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build(),
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None));
    append(&mut b, ski)?;
    b.sign(key.pkey(), MessageDigest::sm3())
        .map_err(ts("x509 sign"))?;
    b.build().to_der().map_err(ts("x509 encode"))
}

/// An end-entity certificate (DER) for `subject`, issued by the CA whose certificate is `ca_der`
/// and whose key is `ca_key`: `basicConstraints` not CA, key usage from `req.usage`, subject and
/// authority key identifiers, and the DNS names as subjectAltName.
pub fn issue(
    ca_der: &[u8],
    ca_key: &Sm2PrivateKey,
    subject: &Sm2PublicKey,
    req: &LeafRequest<'_>,
) -> Result<Vec<u8>, SmError> {
    issue_with(ca_der, ca_key, subject, req, &LeafExtensions::default())
}

/// [`issue`], with the URI and IP subjectAltNames, extended key usages and backdated start of
/// `ext`.
pub fn issue_with(
    ca_der: &[u8],
    ca_key: &Sm2PrivateKey,
    subject: &Sm2PublicKey,
    req: &LeafRequest<'_>,
    ext: &LeafExtensions<'_>,
) -> Result<Vec<u8>, SmError> {
    let ca = X509::from_der(ca_der).map_err(ts("x509 decode"))?;
    let ca_pub = ca.public_key().map_err(ts("x509 public key"))?;
    if !ca_pub.public_eq(ca_key.pkey()) {
        return Err(SmError::CertRequest(
            "the ca key does not match the ca certificate",
        ));
    }
    let name = subject_name(req.common_name)?;
    let mut b = builder(&name, ca.subject_name(), subject.pkey(), req.days)?;
    if ext.backdate_secs > 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let start = i64::try_from(now.saturating_sub(u64::from(ext.backdate_secs)))
            .map_err(|_| SmError::CertRequest("the clock is past the year 2262"))?;
        let start = Asn1Time::from_unix(start).map_err(ts("x509 validity"))?;
        b.set_not_before(&start).map_err(ts("x509 validity"))?;
    }
    append(&mut b, BasicConstraints::new().critical().build())?;
    let mut usage = KeyUsage::new();
    usage.critical();
    match req.usage {
        CertUsage::Signing => usage.digital_signature(),
        CertUsage::Encryption => usage.key_encipherment().key_agreement(),
        CertUsage::DocumentSigning => usage.digital_signature().non_repudiation(),
    };
    append(&mut b, usage.build())?;
    if !ext.extended.is_empty() {
        let mut eku = ExtendedKeyUsage::new();
        for e in ext.extended {
            match e {
                ExtendedUsage::ServerAuth => eku.server_auth(),
                ExtendedUsage::ClientAuth => eku.client_auth(),
                ExtendedUsage::DocumentSigning => eku.other("1.3.6.1.5.5.7.3.36"),
            };
        }
        append(&mut b, eku.build())?;
    }
    if !req.dns_names.is_empty() || !ext.uris.is_empty() || !ext.ips.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for dns in req.dns_names {
            san.dns(dns);
        }
        for ip in ext.ips {
            san.ip(&ip.to_string());
        }
        for uri in ext.uris {
            san.uri(uri);
        }
        let san = san.build(&b.x509v3_context(Some(&ca), None));
        append(&mut b, san)?;
    }
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&ca), None));
    append(&mut b, ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(Some(&ca), None));
    append(&mut b, aki)?;
    b.sign(ca_key.pkey(), MessageDigest::sm3())
        .map_err(ts("x509 sign"))?;
    b.build().to_der().map_err(ts("x509 encode"))
}

/// A DER certificate as PEM (`-----BEGIN CERTIFICATE-----`), as it is written to disk.
pub fn to_pem(der: &[u8]) -> Result<Vec<u8>, SmError> {
    X509::from_der(der)
        .and_then(|c| c.to_pem())
        .map_err(ts("x509 pem encode"))
}

/// Whether `leaf_der` is signed by the key of the CA certificate `ca_der` (SM2-with-SM3, checked
/// by Tongsuo). Only the signature: validity and usage are the caller's business.
pub fn issued_by(ca_der: &[u8], leaf_der: &[u8]) -> Result<bool, SmError> {
    let ca = X509::from_der(ca_der).map_err(ts("x509 decode"))?;
    let ca_pub = ca.public_key().map_err(ts("x509 public key"))?;
    let leaf = X509::from_der(leaf_der).map_err(ts("x509 decode"))?;
    Ok(leaf.verify(&ca_pub).unwrap_or(false))
}

/// Adds an extension to the certificate being built, or says which step failed.
fn append(b: &mut X509Builder, ext: Result<X509Extension, ErrorStack>) -> Result<(), SmError> {
    let ext = ext.map_err(ts("x509 extension"))?;
    b.append_extension(ext).map_err(ts("x509 extension"))
}

/// `CN=<common_name>`.
fn subject_name(common_name: &str) -> Result<X509Name, SmError> {
    if common_name.is_empty() {
        return Err(SmError::CertRequest("empty common name"));
    }
    let mut n = X509NameBuilder::new().map_err(ts("x509 name"))?;
    n.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .map_err(ts("x509 name"))?;
    Ok(n.build())
}

/// The parts every certificate shares: v3, a random 159-bit serial, names, validity and key.
fn builder<T: HasPublic>(
    subject: &X509Name,
    issuer: &X509NameRef,
    key: &PKeyRef<T>,
    days: u32,
) -> Result<X509Builder, SmError> {
    if days == 0 {
        return Err(SmError::CertRequest("validity must be at least one day"));
    }
    let mut b = X509Builder::new().map_err(ts("x509 builder"))?;
    b.set_version(2).map_err(ts("x509 builder"))?;
    let mut serial = BigNum::new().map_err(ts("x509 serial"))?;
    serial
        .rand(159, MsbOption::MAYBE_ZERO, false)
        .map_err(ts("x509 serial"))?;
    let serial = serial.to_asn1_integer().map_err(ts("x509 serial"))?;
    b.set_serial_number(&serial).map_err(ts("x509 serial"))?;
    b.set_subject_name(subject).map_err(ts("x509 name"))?;
    b.set_issuer_name(issuer).map_err(ts("x509 name"))?;
    let not_before = Asn1Time::days_from_now(0).map_err(ts("x509 validity"))?;
    let not_after = Asn1Time::days_from_now(days).map_err(ts("x509 validity"))?;
    b.set_not_before(&not_before).map_err(ts("x509 validity"))?;
    b.set_not_after(&not_after).map_err(ts("x509 validity"))?;
    b.set_pubkey(key).map_err(ts("x509 public key"))?;
    Ok(b)
}
