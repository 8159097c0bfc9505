//! CRLs of a shangmi (SM2) CA: issuing one for `exchange-certs`, and checking one's signature for
//! the daemons. Only with the cargo feature `shangmi`.
//!
//! The `tongsuo` crate's safe API reads and verifies an X.509 CRL but cannot build or sign one
//! (no binding for `X509_CRL_new`, `X509_CRL_add0_revoked`, `X509_CRL_sign`), and the workspace
//! forbids `unsafe`. So [`sign_crl`] encodes the RFC 5280 `TBSCertList` itself (`der`,
//! encoding only) and has Tongsuo sign those bytes ([`Sm2PrivateKey::sign`]: SM2 with SM3 and
//! the distinguishing ID [`crate::crypto::sm::DISTID`]); `verify_signature` is Tongsuo's
//! `X509_CRL_verify`, which applies the same default ID. No SM algorithm is implemented here.
//!
//! The CRL has the shape of the international profile's (rcgen's): version 2, the CA
//! certificate's subject copied byte for byte as the issuer, `thisUpdate` and `nextUpdate`, one
//! entry per revoked serial with its revocation date and, unless unspecified, its reason code,
//! and the authorityKeyIdentifier (the CA's subjectKeyIdentifier) and cRLNumber extensions.

use time::OffsetDateTime;
use tongsuo::{error::ErrorStack, x509::X509Crl};
use x509_parser::{
    extensions::ParsedExtension, parse_x509_certificate, revocation_list::CertificateRevocationList,
};

use super::der::{
    ENUMERATED, INTEGER, OCTET_STRING, bit_string, explicit, implicit, sequence, time, tlv,
    unsigned,
};
use crate::crypto::sm::{Sm2PrivateKey, Sm2PublicKey, SmError, ts};

/// SM2-with-SM3, 1.2.156.10197.1.501 (GM/T 0006), as the signature of every certificate and CRL
/// of a shangmi CA names it.
pub const SM2_WITH_SM3_OID: &str = "1.2.156.10197.1.501";

/// The DER `AlgorithmIdentifier` of [`SM2_WITH_SM3_OID`] with no parameters, byte for byte what
/// Tongsuo's X.509 builder writes in our SM2 certificates (a test compares them).
pub const SM2_WITH_SM3_ALGORITHM: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x75,
];

/// id-ce-authorityKeyIdentifier (2.5.29.35), DER.
const AUTHORITY_KEY_ID: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x23];
/// id-ce-cRLNumber (2.5.29.20), DER.
const CRL_NUMBER: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x14];
/// id-ce-cRLReasons (2.5.29.21), DER.
const CRL_REASON: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x15];

/// One certificate the CRL revokes.
#[derive(Debug, Clone, Copy)]
pub struct RevokedEntry<'a> {
    /// The certificate's serial number, big-endian (leading zero bytes are dropped).
    pub serial: &'a [u8],
    /// When it was revoked.
    pub at: OffsetDateTime,
    /// Its RFC 5280 `CRLReason` code; 0 (unspecified) is left out of the entry, as RFC 5280
    /// §5.3.1 asks and rcgen does.
    pub reason: u8,
}

/// What one CRL says.
#[derive(Debug, Clone, Copy)]
pub struct CrlParams<'a> {
    /// `thisUpdate`: when it was issued.
    pub this_update: OffsetDateTime,
    /// `nextUpdate`: when the next one is due (informational for the daemons).
    pub next_update: OffsetDateTime,
    /// The cRLNumber: each CRL of the CA gets a larger one.
    pub number: u64,
    /// Every revoked certificate (none: the field is left out, as RFC 5280 requires).
    pub revoked: &'a [RevokedEntry<'a>],
}

/// One `Extension` that is not critical: `SEQUENCE { extnID, extnValue OCTET STRING }`.
fn extension(oid: &[u8], value: &[u8]) -> Vec<u8> {
    sequence(&[oid, &tlv(OCTET_STRING, value)])
}

/// The CA certificate's subject (DER, verbatim) and subjectKeyIdentifier.
fn issuer_of(ca_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SmError> {
    let (_, ca) = parse_x509_certificate(ca_der)
        .map_err(|_| SmError::CertRequest("the ca certificate does not parse"))?;
    let ski = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .ok_or(SmError::CertRequest(
            "the ca certificate has no subject key identifier",
        ))?;
    Ok((ca.subject().as_raw().to_vec(), ski))
}

/// One `revokedCertificates` entry.
fn entry(r: &RevokedEntry<'_>) -> Result<Vec<u8>, SmError> {
    // RFC 5280 §5.3.1: 0..=10 without 7, which is unused.
    if r.reason > 10 || r.reason == 7 {
        return Err(SmError::CertRequest("not an rfc 5280 revocation reason"));
    }
    let serial = unsigned(INTEGER, r.serial);
    let date = time(r.at);
    if r.reason == 0 {
        return Ok(sequence(&[&serial, &date]));
    }
    let reason = extension(&CRL_REASON, &unsigned(ENUMERATED, &[r.reason]));
    Ok(sequence(&[&serial, &date, &sequence(&[&reason])]))
}

/// Issues a CRL (DER) of the SM2 CA whose certificate is `ca_der` and whose key is `ca_key`,
/// signed SM2-with-SM3 by Tongsuo. The result is checked against the CA certificate before it
/// is returned, so a key that is not the CA's is refused here rather than by every daemon.
pub fn sign_crl(
    ca_der: &[u8],
    ca_key: &Sm2PrivateKey,
    params: &CrlParams<'_>,
) -> Result<Vec<u8>, SmError> {
    if params.next_update <= params.this_update {
        return Err(SmError::CertRequest(
            "nextupdate must come after thisupdate",
        ));
    }
    let (issuer, key_id) = issuer_of(ca_der)?;
    let entries = params
        .revoked
        .iter()
        .map(entry)
        .collect::<Result<Vec<_>, _>>()?;
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING, .. }
    let aki = extension(&AUTHORITY_KEY_ID, &sequence(&[&implicit(0, &key_id)]));
    let number = extension(
        &CRL_NUMBER,
        &unsigned(INTEGER, &params.number.to_be_bytes()),
    );
    let version = unsigned(INTEGER, &[1]); // v2
    let (this_update, next_update) = (time(params.this_update), time(params.next_update));
    let extensions = explicit(0, &sequence(&[&aki, &number]));
    let revoked = sequence(&entries.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let mut tbs_parts: Vec<&[u8]> = vec![
        &version,
        &SM2_WITH_SM3_ALGORITHM,
        &issuer,
        &this_update,
        &next_update,
    ];
    if !entries.is_empty() {
        tbs_parts.push(&revoked);
    }
    tbs_parts.push(&extensions);
    let tbs = sequence(&tbs_parts);
    let signature = ca_key.sign(&tbs)?;
    let crl = sequence(&[&tbs, &SM2_WITH_SM3_ALGORITHM, &bit_string(&signature)]);
    match verify_signature(&crl, ca_der) {
        Ok(()) => Ok(crl),
        Err(_) => Err(SmError::CertRequest(
            "the ca key does not match the ca certificate",
        )),
    }
}

/// A DER CRL as PEM (`-----BEGIN X509 CRL-----`), as `crl.pem` is written.
pub fn to_pem(der: &[u8]) -> Result<Vec<u8>, SmError> {
    X509Crl::from_der(der)
        .and_then(|c| c.to_pem())
        .map_err(ts("x509 crl pem encode"))
}

/// Refuses a CRL (already parsed by x509-parser) that does not say SM2-with-SM3 in both of its
/// algorithm fields: under a shangmi CA nothing else is acceptable, and RFC 5280 wants the two
/// equal.
pub(super) fn check_algorithm(crl: &CertificateRevocationList<'_>) -> Result<(), String> {
    let outer = &crl.signature_algorithm;
    if outer.algorithm.to_id_string() != SM2_WITH_SM3_OID {
        return Err(format!(
            "signed with algorithm {}, but a shangmi CA signs SM2-with-SM3 ({SM2_WITH_SM3_OID})",
            outer.algorithm
        ));
    }
    if crl.tbs_cert_list.signature != *outer {
        return Err("its two signature algorithm fields differ".to_owned());
    }
    Ok(())
}

/// Checks with Tongsuo that the CA certificate `ca_der`'s SM2 key signed the CRL `crl_der`.
pub(super) fn verify_signature(crl_der: &[u8], ca_der: &[u8]) -> Result<(), String> {
    let key =
        Sm2PublicKey::from_certificate_der(ca_der).map_err(|e| format!("CA certificate: {e}"))?;
    let crl = X509Crl::from_der(crl_der).map_err(|e| format!("tongsuo cannot read it: {e}"))?;
    match crl.verify(key.pkey()) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => {
            // A plain failure can leave entries on Tongsuo's per-thread error queue; clear it
            // so that they are not reported by the next, unrelated, failure on this thread.
            drop(ErrorStack::get());
            Err("sm2 signature does not verify with the CA".to_owned())
        }
    }
}

#[cfg(test)]
#[cfg(feature = "shangmi")]
mod tests;
