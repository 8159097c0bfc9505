//! SM2 certificates (GM/T 0015 style) issued with Tongsuo's X.509 builder: a self-signed CA and
//! end-entity certificates under it, each signed SM2-with-SM3 with [`super::DISTID`].
//!
//! TLCP (GB/T 38636) gives every TLS identity two certificates, one to sign with and one to
//! encrypt to; [`CertUsage`] says which a certificate is, and sets its key usage accordingly.
//! This is the issuance core only: file layout and the `exchange-certs` commands come later.

use tongsuo::asn1::Asn1Time;
use tongsuo::bn::{BigNum, MsbOption};
use tongsuo::error::ErrorStack;
use tongsuo::hash::MessageDigest;
use tongsuo::nid::Nid;
use tongsuo::pkey::{HasPublic, PKeyRef};
use tongsuo::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectAlternativeName,
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
    let ca = X509::from_der(ca_der).map_err(ts("x509 decode"))?;
    let ca_pub = ca.public_key().map_err(ts("x509 public key"))?;
    if !ca_pub.public_eq(ca_key.pkey()) {
        return Err(SmError::CertRequest(
            "the ca key does not match the ca certificate",
        ));
    }
    let name = subject_name(req.common_name)?;
    let mut b = builder(&name, ca.subject_name(), subject.pkey(), req.days)?;
    append(&mut b, BasicConstraints::new().critical().build())?;
    let mut usage = KeyUsage::new();
    usage.critical();
    match req.usage {
        CertUsage::Signing => usage.digital_signature(),
        CertUsage::Encryption => usage.key_encipherment().key_agreement(),
    };
    append(&mut b, usage.build())?;
    if !req.dns_names.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for dns in req.dns_names {
            san.dns(dns);
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
