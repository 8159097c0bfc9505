//! Document-signing keys, signatures and digests.
//!
//! Signatures are Ed25519 (ring) over `context || bytes`, where `bytes` are exactly the encoded
//! message that travels (so verifying never needs a canonical re-encoding) and `context` names
//! what is signed, so a signature over a header can never pass as one over evidence. Signing keys
//! are separate from TLS keys: their certificates carry only the RFC 9336 document-signing
//! extended key usage, and verification demands it.

use std::{fmt, path::Path};

use exchange_proto::v1 as pb;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};

use crate::{config::SigningPaths, identity::Principal, tls::read_pem_file};

/// The one algorithm name in use today. Each signature names its algorithm so this can change.
pub const ED25519: &str = "ed25519";

/// What a signature covers; the context string is signed before the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Context {
    /// An encoded `exchange.v1.DocumentHeader`.
    DocumentHeader,
    /// An encoded `exchange.v1.Evidence`.
    Evidence,
    /// An encoded `exchange.v1.AuditCheckpoint` (the hub's audit chain head).
    AuditCheckpoint,
}

impl Context {
    fn prefix(self) -> &'static [u8] {
        match self {
            Context::DocumentHeader => b"exchange.v1.DocumentHeader\0",
            Context::Evidence => b"exchange.v1.Evidence\0",
            Context::AuditCheckpoint => b"exchange.v1.AuditCheckpoint\0",
        }
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        Digest(d.as_ref().try_into().expect("BUG: SHA-256 is 32 bytes"))
    }

    /// From the 32 bytes of a message field; `None` if the length is wrong.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        b.try_into().ok().map(Digest)
    }

    /// Lowercase hex, as used in file names and output.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// A signature could not be made or did not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A key or certificate file could not be read or parsed.
    #[error("signing key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The signature names an algorithm this version does not accept.
    #[error("unsupported signature algorithm {0:?}")]
    Algorithm(String),
    /// The signer's certificate is not a valid document-signing certificate of this exchange.
    #[error("signer certificate not trusted: {0}")]
    Certificate(String),
    /// The signer's certificate does not name an exchange principal.
    #[error("signer certificate names no exchange department or hub")]
    NoPrincipal,
    /// The bytes were altered, or signed with another key.
    #[error("signature does not match the signed bytes")]
    BadSignature,
}

/// This hub's or node's document-signing key with its certificate.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    cert_der: Vec<u8>,
    principal: Principal,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads the key and certificate, and checks that they belong together.
    pub fn load(paths: &SigningPaths) -> Result<Self, SignError> {
        let key_err = |path: &Path, reason: String| SignError::Key {
            path: path.display().to_string(),
            reason,
        };
        let key_der = read_pem_file(&paths.key, "PRIVATE KEY")
            .map_err(|e| key_err(&paths.key, e.to_string()))?;
        let cert_der = read_pem_file(&paths.cert, "CERTIFICATE")
            .map_err(|e| key_err(&paths.cert, e.to_string()))?;
        Self::from_der(&key_der, cert_der).map_err(|e| key_err(&paths.key, e.to_string()))
    }

    /// From a PKCS#8 Ed25519 key and its DER certificate.
    pub fn from_der(pkcs8: &[u8], cert_der: Vec<u8>) -> Result<Self, SignError> {
        let bad = |r: &str| SignError::Key {
            path: String::new(),
            reason: r.to_owned(),
        };
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| bad("not an Ed25519 PKCS#8 key"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|_| bad("certificate is not DER"))?;
        if cert.public_key().subject_public_key.data.as_ref() != pair.public_key().as_ref() {
            return Err(bad("key does not match the certificate"));
        }
        let principal = Principal::from_cert_der(&cert_der).ok_or(SignError::NoPrincipal)?;
        Ok(SigningKey {
            pair,
            cert_der,
            principal,
        })
    }

    /// Whom this key signs for.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Signs `bytes` under `context`.
    pub fn sign(&self, context: Context, bytes: &[u8]) -> pb::Signature {
        let msg = [context.prefix(), bytes].concat();
        pb::Signature {
            algorithm: ED25519.to_owned(),
            signer_cert: self.cert_der.clone(),
            value: self.pair.sign(&msg).as_ref().to_vec(),
        }
    }
}

/// The exchange CA, as the root that every signer's certificate must chain to.
#[derive(Debug, Clone)]
pub struct Verifier {
    anchor: TrustAnchor<'static>,
}

impl Verifier {
    /// From the CA certificate (DER).
    pub fn new(ca_der: &[u8]) -> Result<Self, SignError> {
        let der = CertificateDer::from(ca_der);
        let anchor = webpki::anchor_from_trusted_cert(&der)
            .map_err(|e| SignError::Certificate(format!("CA certificate: {e}")))?
            .to_owned();
        Ok(Verifier { anchor })
    }

    /// Checks `sig` over `bytes` under `context`, at time `at_unix_secs` for certificate
    /// validity, and returns who signed.
    pub fn verify(
        &self,
        sig: &pb::Signature,
        context: Context,
        bytes: &[u8],
        at_unix_secs: u64,
    ) -> Result<Principal, SignError> {
        if sig.algorithm != ED25519 {
            return Err(SignError::Algorithm(sig.algorithm.clone()));
        }
        let cert = CertificateDer::from(sig.signer_cert.as_slice());
        let ee = webpki::EndEntityCert::try_from(&cert)
            .map_err(|e| SignError::Certificate(e.to_string()))?;
        let usage = webpki::KeyUsage::required(crate::identity::DOCUMENT_SIGNING_EKU_DER);
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at_unix_secs));
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            std::slice::from_ref(&self.anchor),
            &[],
            time,
            usage,
            None,
            None,
        )
        .map_err(|e| SignError::Certificate(e.to_string()))?;
        let msg = [context.prefix(), bytes].concat();
        ee.verify_signature(webpki::ring::ED25519, &msg, &sig.value)
            .map_err(|_| SignError::BadSignature)?;
        Principal::from_cert_der(&sig.signer_cert).ok_or(SignError::NoPrincipal)
    }
}
