//! Document-signing keys, signatures and digests.
//!
//! Signatures are Ed25519 (ring) or, under the `shangmi` profile, SM2 with SM3 (Tongsuo): one
//! [`Scheme`] per profile, chosen by the key and, for a verifier, by the CA. Either is over
//! `context || bytes`, where `bytes` are exactly the encoded
//! message that travels (so verifying never needs a canonical re-encoding) and `context` names
//! what is signed, so a signature over a header can never pass as one over evidence. Signing keys
//! are separate from TLS keys: their certificates carry only the RFC 9336 document-signing
//! extended key usage, and verification demands it.

use std::{
    fmt,
    path::Path,
    sync::{Arc, Mutex},
};

use exchange_proto::v1 as pb;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};

use crate::{
    cache::BoundedMap, config::SigningPaths, crypto::Profile, identity::Principal,
    tls::read_pem_file,
};

mod batch;
mod digest;
pub mod merkle;
mod scheme;
mod trust;

pub use batch::BatchSigner;
pub use digest::{Digest, Hasher, digest_label};
pub use scheme::{ED25519, ED25519_BATCH, SM2_SM3, SM2_SM3_BATCH, Scheme};
pub use trust::Trust;

/// What a batch signature signs before the tree size and root.
const BATCH_ROOT_PREFIX: &[u8] = b"exchange.v1.BatchRoot\0";

/// The message a batch signature covers: the prefix, the tree size (8 bytes, big-endian) and
/// the root.
fn batch_root_message(tree_size: u64, root: &merkle::Hash) -> Vec<u8> {
    [BATCH_ROOT_PREFIX, &tree_size.to_be_bytes(), root].concat()
}

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
    /// The context string signed before the bytes (and hashed into a batch leaf, see
    /// [`merkle::leaf_hash`]).
    pub fn prefix(self) -> &'static [u8] {
        match self {
            Context::DocumentHeader => b"exchange.v1.DocumentHeader\0",
            Context::Evidence => b"exchange.v1.Evidence\0",
            Context::AuditCheckpoint => b"exchange.v1.AuditCheckpoint\0",
        }
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
    /// A signature of the other crypto profile than this exchange's, or one the build cannot
    /// check (an SM2 signature without the `shangmi` feature).
    #[error(
        "signature algorithm {algorithm:?} is of the {theirs} profile, but this exchange's is {ours}"
    )]
    Profile {
        /// The algorithm the signature names.
        algorithm: String,
        /// Its profile.
        theirs: Profile,
        /// This exchange's (its CA's) profile.
        ours: Profile,
    },
    /// The crypto module could not sign or hash (it is missing from this build, or failed).
    #[error("crypto: {0}")]
    Crypto(String),
    /// A batch signature whose inclusion path is malformed, or does not lead from these bytes
    /// to the root the signature covers.
    #[error("batch signature: inclusion path of leaf {index} of {size}: {reason}")]
    Inclusion {
        /// The leaf's claimed position.
        index: u64,
        /// The claimed batch size.
        size: u64,
        /// What is wrong.
        reason: String,
    },
}

/// This hub's or node's document-signing key with its certificate.
pub struct SigningKey {
    pair: Pair,
    cert_der: Vec<u8>,
    principal: Principal,
    /// The certificate's validity period, Unix seconds.
    validity: Option<(u64, u64)>,
}

/// A private signing key of one of the schemes.
enum Pair {
    Ed25519(Ed25519KeyPair),
    #[cfg(feature = "shangmi")]
    Sm2(crate::crypto::sm::Sm2PrivateKey),
}

impl Pair {
    /// Reads a PKCS#8 key of either scheme; `None` if it is neither (or SM2 in a build without
    /// the `shangmi` feature).
    fn from_pkcs8(der: &[u8]) -> Option<Self> {
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Some(Pair::Ed25519(pair));
        }
        #[cfg(feature = "shangmi")]
        if let Ok(key) = crate::crypto::sm::Sm2PrivateKey::from_pkcs8_der(der) {
            return Some(Pair::Sm2(key));
        }
        None
    }

    fn scheme(&self) -> Scheme {
        match self {
            Pair::Ed25519(_) => Scheme::Ed25519,
            #[cfg(feature = "shangmi")]
            Pair::Sm2(_) => Scheme::Sm2Sm3,
        }
    }

    /// The raw public key, as a certificate's `subjectPublicKey` holds it.
    fn public_key(&self) -> Result<Vec<u8>, String> {
        match self {
            Pair::Ed25519(p) => Ok(p.public_key().as_ref().to_vec()),
            #[cfg(feature = "shangmi")]
            Pair::Sm2(k) => {
                use x509_parser::prelude::FromDer as _;
                let spki = k
                    .public_key()
                    .and_then(|p| p.to_spki_der())
                    .map_err(|e| e.to_string())?;
                let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki)
                    .map_err(|e| format!("its public key does not parse: {e}"))?;
                Ok(info.subject_public_key.data.to_vec())
            }
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        match self {
            Pair::Ed25519(p) => Ok(p.sign(msg).as_ref().to_vec()),
            #[cfg(feature = "shangmi")]
            Pair::Sm2(k) => k.sign(msg).map_err(|e| SignError::Crypto(e.to_string())),
        }
    }
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

    /// From a PKCS#8 key (Ed25519, or SM2 with the `shangmi` feature) and its DER certificate.
    pub fn from_der(pkcs8: &[u8], cert_der: Vec<u8>) -> Result<Self, SignError> {
        let bad = |r: &str| SignError::Key {
            path: String::new(),
            reason: r.to_owned(),
        };
        let pair = Pair::from_pkcs8(pkcs8).ok_or_else(|| {
            bad(if cfg!(feature = "shangmi") {
                "not an Ed25519 or SM2 PKCS#8 key"
            } else {
                "not an Ed25519 PKCS#8 key (an SM2 key needs a build with --features shangmi)"
            })
        })?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|_| bad("certificate is not DER"))?;
        let public = pair
            .public_key()
            .map_err(|e| bad(&format!("reading the public key: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != public.as_slice() {
            return Err(bad("key does not match the certificate"));
        }
        let principal = Principal::from_cert_der(&cert_der).ok_or(SignError::NoPrincipal)?;
        let validity = validity(&cert_der);
        Ok(SigningKey {
            pair,
            cert_der,
            principal,
            validity,
        })
    }

    /// When the certificate stops being valid, Unix seconds (`None`: not representable).
    pub fn not_after_secs(&self) -> Option<u64> {
        self.validity.map(|(_, after)| after)
    }

    /// Tells the operator at start when the certificate (at `cert`) has run out — what cannot
    /// be done until it is renewed is `blocked` — or runs out within 30 days. Daemons export
    /// the same date as a metric, for alerting.
    pub fn warn_on_expiry(&self, cert: &Path, blocked: &str) {
        const SOON_SECS: u64 = 30 * 24 * 3600;
        let now = u64::try_from(crate::time::now_ms() / 1000).unwrap_or(0);
        let cert = cert.display();
        if let Some(why) = self.unusable_at(now) {
            tracing::error!(%cert, "{why}: {blocked} until it is renewed");
        } else if let Some(after) = self.not_after_secs()
            && after.saturating_sub(now) < SOON_SECS
        {
            let days = after.saturating_sub(now) / 86_400;
            tracing::warn!(
                %cert,
                days,
                "the document-signing certificate expires in {days} days: renew it (exchange-certs)"
            );
        }
    }

    /// Why anything signed at `now_secs` would be refused by whoever checks it: the certificate
    /// has expired or is not valid yet. `None`: it is in its validity period.
    pub fn unusable_at(&self, now_secs: u64) -> Option<String> {
        let (before, after) = self.validity?;
        let at = |s: u64| {
            crate::time::format_ms(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
        };
        if now_secs > after {
            Some(format!(
                "the document-signing certificate expired at {}",
                at(after)
            ))
        } else if now_secs < before {
            Some(format!(
                "the document-signing certificate is not valid before {}",
                at(before)
            ))
        } else {
            None
        }
    }

    /// Whom this key signs for.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The scheme this key signs with (its profile's).
    pub fn scheme(&self) -> Scheme {
        self.pair.scheme()
    }

    /// Loads the key and certificate ([`SigningKey::load`]) of `expected`: the hub, or one
    /// department. A certificate naming anyone else is refused with an error naming the file, so
    /// that a hub or node never signs in another principal's name.
    pub fn load_as(paths: &SigningPaths, expected: &Principal) -> Result<Self, SignError> {
        let key = Self::load(paths)?;
        if key.principal != *expected {
            return Err(SignError::Key {
                path: paths.cert.display().to_string(),
                reason: format!("the certificate names {}, not {expected}", key.principal),
            });
        }
        Ok(key)
    }

    /// Signs `bytes` under `context`. Fails only if the crypto module does.
    pub fn sign(&self, context: Context, bytes: &[u8]) -> Result<pb::Signature, SignError> {
        let msg = [context.prefix(), bytes].concat();
        Ok(pb::Signature {
            algorithm: self.scheme().name().to_owned(),
            signer_cert: self.cert_der.clone(),
            value: self.pair.sign(&msg)?,
            batch: None,
        })
    }

    /// The batch leaf of `bytes` under `context`, hashed with this key's scheme's digest.
    pub fn leaf(&self, context: Context, bytes: &[u8]) -> Result<merkle::Hash, SignError> {
        merkle::leaf_hash(self.scheme().digest(), context.prefix(), bytes)
            .map_err(|e| SignError::Crypto(e.to_string()))
    }

    /// Signs a batch: one signature over the Merkle root of `leaves` ([`SigningKey::leaf`] of
    /// each statement under its context), and for each leaf, in order, its signature: that one
    /// signature with the leaf's inclusion path. Empty for no leaves.
    pub fn sign_batch(&self, leaves: &[merkle::Hash]) -> Result<Vec<pb::Signature>, SignError> {
        let scheme = self.scheme();
        let Some((root, paths)) =
            merkle::build(scheme.digest(), leaves).map_err(|e| SignError::Crypto(e.to_string()))?
        else {
            return Ok(Vec::new());
        };
        let size = leaves.len() as u64;
        let value = self.pair.sign(&batch_root_message(size, &root))?;
        Ok(paths
            .into_iter()
            .enumerate()
            .map(|(i, path)| pb::Signature {
                algorithm: scheme.batch_name().to_owned(),
                signer_cert: self.cert_der.clone(),
                value: value.clone(),
                batch: Some(pb::BatchInclusion {
                    leaf_index: i as u64,
                    tree_size: size,
                    path: path.into_iter().map(|h| h.to_vec()).collect(),
                }),
            })
            .collect())
    }
}

/// The exchange CA, as the root that every signer's certificate must chain to.
///
/// Clones share one cache of signer certificates already validated against the CA, so that a
/// signature by a known signer costs one Ed25519 verification, not a certificate path build.
#[derive(Debug, Clone)]
pub struct Verifier {
    anchor: TrustAnchor<'static>,
    /// The CA's profile: the only one whose signatures this verifier accepts.
    profile: Profile,
    /// Signer certificates that chained to the CA, with the document-signing usage, keyed by
    /// the SHA-256 of their DER. Only what does not depend on the time is cached: the validity
    /// window is kept and checked against the time of every verification, exactly as webpki
    /// checks it. Failures are never cached.
    trusted: Arc<Mutex<BoundedMap<Digest, Signer>>>,
    /// Batch signatures that verified: `SHA-256(certificate digest ‖ signed message ‖
    /// signature)`. Only the signature check over the root is skipped on a hit; the inclusion
    /// path, the certificate and its validity at the statement's time are checked every time.
    /// Failures are never cached.
    roots: Arc<Mutex<BoundedMap<Digest, ()>>>,
}

/// Batch roots remembered; the oldest is forgotten first (and checked again if it comes back).
/// A batch's statements arrive close together (a hub pushes a sender's batch to its recipients
/// within moments), so a few thousand cover every batch in flight.
const ROOT_CACHE_SIZE: usize = 4_096;

/// Most signer certificates remembered; beyond it the oldest entry is forgotten (and simply
/// validated again the next time it signs). A hub sees one certificate per department (two
/// during a key rotation), so this covers thousands of departments.
const SIGNER_CACHE_SIZE: usize = 16_384;

/// What a validated signer certificate established.
#[derive(Debug, Clone)]
struct Signer {
    not_before: u64,
    not_after: u64,
    principal: Principal,
}

impl Signer {
    /// The same check, and the same errors, as webpki's for the end-entity certificate (the
    /// trust anchor has no validity period in webpki, and we pass no intermediates).
    fn check_time(&self, at: u64) -> Result<(), webpki::Error> {
        let t = |s: u64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s));
        if at < self.not_before {
            return Err(webpki::Error::CertNotValidYet {
                time: t(at),
                not_before: t(self.not_before),
            });
        }
        if at > self.not_after {
            return Err(webpki::Error::CertExpired {
                time: t(at),
                not_after: t(self.not_after),
            });
        }
        Ok(())
    }
}

impl Verifier {
    /// From the CA certificate (DER).
    pub fn new(ca_der: &[u8]) -> Result<Self, SignError> {
        let der = CertificateDer::from(ca_der);
        let anchor = webpki::anchor_from_trusted_cert(&der)
            .map_err(|e| SignError::Certificate(format!("CA certificate: {e}")))?
            .to_owned();
        Ok(Verifier {
            anchor,
            // A CA that does not parse fails in webpki above; its profile is then moot.
            profile: crate::crypto::cert_profile(ca_der).map_or(Profile::International, |(p, _)| p),
            trusted: Arc::new(Mutex::new(BoundedMap::new(SIGNER_CACHE_SIZE))),
            roots: Arc::new(Mutex::new(BoundedMap::new(ROOT_CACHE_SIZE))),
        })
    }

    /// The profile of the exchange (its CA) whose signatures this verifier checks.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, BoundedMap<Digest, Signer>> {
        self.trusted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn root_cache(&self) -> std::sync::MutexGuard<'_, BoundedMap<Digest, ()>> {
        self.roots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks `sig` over `bytes` under `context`, at time `at_unix_secs` for certificate
    /// validity, and returns who signed.
    ///
    /// Signing certificates are not checked against a revocation list (none is passed to
    /// webpki): revocation is enforced on the TLS identities. Should a CRL be added here, a
    /// cached signer must be looked up in it on every use, like the validity period.
    pub fn verify(
        &self,
        sig: &pb::Signature,
        context: Context,
        bytes: &[u8],
        at_unix_secs: u64,
    ) -> Result<Principal, SignError> {
        let Some((scheme, batched)) = Scheme::parse(&sig.algorithm) else {
            return Err(SignError::Algorithm(sig.algorithm.clone()));
        };
        if scheme.profile() != self.profile {
            return Err(SignError::Profile {
                algorithm: sig.algorithm.clone(),
                theirs: scheme.profile(),
                ours: self.profile,
            });
        }
        let alg = verification_alg(scheme)?;
        let (msg, root_key) = match (batched, &sig.batch) {
            (false, None) => ([context.prefix(), bytes].concat(), None),
            (true, Some(b)) => {
                let inclusion = |reason: String| SignError::Inclusion {
                    index: b.leaf_index,
                    size: b.tree_size,
                    reason,
                };
                let digest = scheme.digest();
                let leaf = merkle::leaf_hash(digest, context.prefix(), bytes)
                    .map_err(|e| SignError::Crypto(e.to_string()))?;
                let root = merkle::root_from_path(digest, leaf, b.leaf_index, b.tree_size, &b.path)
                    .map_err(|e| inclusion(e.to_string()))?;
                let msg = batch_root_message(b.tree_size, &root);
                let key =
                    Digest::of(&[&Digest::of(&sig.signer_cert).0[..], &msg, &sig.value].concat());
                (msg, Some(key))
            }
            (true, None) => {
                return Err(SignError::Algorithm(format!(
                    "{} without its batch inclusion",
                    sig.algorithm
                )));
            }
            (false, Some(_)) => {
                return Err(SignError::Algorithm(format!(
                    "{} with a batch inclusion (a batch signature must say {})",
                    sig.algorithm,
                    scheme.batch_name()
                )));
            }
        };
        let cert = CertificateDer::from(sig.signer_cert.as_slice());
        let ee = webpki::EndEntityCert::try_from(&cert)
            .map_err(|e| SignError::Certificate(e.to_string()))?;
        let key = Digest::of(&sig.signer_cert);
        let cached = self.cache().get(&key).cloned();
        let principal = match cached {
            Some(signer) => {
                signer
                    .check_time(at_unix_secs)
                    .map_err(|e| SignError::Certificate(e.to_string()))?;
                Some(signer.principal)
            }
            None => {
                self.validate_chain(&ee, at_unix_secs)?;
                None
            }
        };
        let known_root = root_key.is_some_and(|k| self.root_cache().contains(&k));
        if !known_root {
            ee.verify_signature(alg, &msg, &sig.value)
                .map_err(|_| match &sig.batch {
                    Some(b) => SignError::Inclusion {
                        index: b.leaf_index,
                        size: b.tree_size,
                        reason: "these bytes and this path do not lead to the root the signature covers (the statement, the path or the signature was altered)".into(),
                    },
                    None => SignError::BadSignature,
                })?;
            if let Some(k) = root_key {
                self.root_cache().insert(k, ());
            }
        }
        if let Some(p) = principal {
            return Ok(p);
        }
        let principal = Principal::from_cert_der(&sig.signer_cert).ok_or(SignError::NoPrincipal)?;
        if let Some((not_before, not_after)) = validity(&sig.signer_cert) {
            let signer = Signer {
                not_before,
                not_after,
                principal: principal.clone(),
            };
            self.cache().insert(key, signer);
        }
        Ok(principal)
    }

    /// The full check: the certificate chains to the CA, carries the document-signing usage and
    /// is valid at `at_unix_secs`.
    fn validate_chain(
        &self,
        ee: &webpki::EndEntityCert<'_>,
        at_unix_secs: u64,
    ) -> Result<(), SignError> {
        let usage = webpki::KeyUsage::required(crate::identity::DOCUMENT_SIGNING_EKU_DER);
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at_unix_secs));
        ee.verify_for_usage(
            chain_algs(self.profile),
            std::slice::from_ref(&self.anchor),
            &[],
            time,
            usage,
            None,
            None,
        )
        .map_err(|e| SignError::Certificate(e.to_string()))?;
        Ok(())
    }
}

/// The algorithm that checks a signature of `scheme` (a certificate's key must match it).
fn verification_alg(
    scheme: Scheme,
) -> Result<&'static dyn SignatureVerificationAlgorithm, SignError> {
    match scheme {
        Scheme::Ed25519 => Ok(webpki::ring::ED25519),
        #[cfg(feature = "shangmi")]
        Scheme::Sm2Sm3 => Ok(&scheme::sm2_webpki::SM2_WITH_SM3_ALG),
        #[cfg(not(feature = "shangmi"))]
        Scheme::Sm2Sm3 => Err(SignError::Crypto(
            crate::crypto::CryptoError::ShangmiUnavailable.to_string(),
        )),
    }
}

/// The algorithms a certificate path of `profile` may be signed with.
fn chain_algs(profile: Profile) -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    match profile {
        Profile::International => webpki::ALL_VERIFICATION_ALGS,
        #[cfg(feature = "shangmi")]
        Profile::Shangmi => scheme::sm2_webpki::ALGS,
        // Never reached: such a verifier refuses every signature before the chain is built.
        #[cfg(not(feature = "shangmi"))]
        Profile::Shangmi => &[],
    }
}

/// A certificate's validity period in Unix seconds, if it has one representable that way (a
/// certificate without is never cached, only validated each time).
fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    let not_before = u64::try_from(v.not_before.timestamp()).ok()?;
    let not_after = u64::try_from(v.not_after.timestamp()).ok()?;
    (not_before <= not_after).then_some((not_before, not_after))
}

#[cfg(test)]
#[cfg(feature = "shangmi")]
mod sm_tests;

#[cfg(test)]
#[cfg(feature = "shangmi")]
pub(crate) mod testpki;

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, SanType,
    };
    use time::macros::datetime;

    use super::*;
    use crate::identity::DOCUMENT_SIGNING_EKU_ARCS;

    /// A CA and department a's signing key, both valid throughout 2020.
    pub(super) fn pki(ca_name: &str) -> (Vec<u8>, SigningKey) {
        let window = (
            datetime!(2020-01-01 00:00 UTC),
            datetime!(2021-01-01 00:00 UTC),
        );
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, ca_name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        (ca.not_before, ca.not_after) = window;
        let ca_der = ca.self_signed(&ca_key).unwrap().der().to_vec();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut p = CertificateParams::default();
        let who = Principal::Dept("a".parse().unwrap());
        p.subject_alt_names = vec![SanType::URI(who.uri().try_into().unwrap())];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(
            DOCUMENT_SIGNING_EKU_ARCS.to_vec(),
        )];
        (p.not_before, p.not_after) = window;
        let cert = p.signed_by(&key, &issuer).unwrap();
        let signer = SigningKey::from_der(&key.serialize_der(), cert.der().to_vec()).unwrap();
        (ca_der, signer)
    }

    fn secs(t: time::OffsetDateTime) -> u64 {
        u64::try_from(t.unix_timestamp()).unwrap()
    }

    #[test]
    fn a_cached_signer_is_still_checked_for_time_signature_and_ca() {
        let (ca, key) = pki("Cache Test CA");
        let v = Verifier::new(&ca).unwrap();
        let sig = key.sign(Context::Evidence, b"bytes").unwrap();
        let june = secs(datetime!(2020-06-01 00:00 UTC));
        let who = v.verify(&sig, Context::Evidence, b"bytes", june).unwrap();
        assert_eq!(who, *key.principal());
        assert_eq!(v.cache().len(), 1, "the signer is remembered");

        // A clone shares the cache; every check still applies to a remembered signer.
        let v2 = v.clone();
        assert_eq!(
            v2.verify(&sig, Context::Evidence, b"bytes", june).unwrap(),
            who
        );
        let err = |at, ctx, bytes: &[u8]| v2.verify(&sig, ctx, bytes, at).unwrap_err().to_string();
        let late = secs(datetime!(2021-01-01 00:00:01 UTC));
        assert!(
            err(late, Context::Evidence, b"bytes")
                .starts_with("signer certificate not trusted: CertExpired"),
            "{}",
            err(late, Context::Evidence, b"bytes")
        );
        let early = secs(datetime!(2019-12-31 23:59:59 UTC));
        assert!(err(early, Context::Evidence, b"bytes").contains("CertNotValidYet"));
        // The last second of the window is still inside it, as in webpki.
        let last = secs(datetime!(2021-01-01 00:00 UTC));
        assert!(v2.verify(&sig, Context::Evidence, b"bytes", last).is_ok());
        assert!(matches!(
            v2.verify(&sig, Context::Evidence, b"other bytes", june),
            Err(SignError::BadSignature)
        ));
        assert!(matches!(
            v2.verify(&sig, Context::DocumentHeader, b"bytes", june),
            Err(SignError::BadSignature)
        ));
        assert_eq!(v.cache().len(), 1, "one entry, shared by the clones");

        // Another CA's verifier has its own cache: the signer is not trusted there.
        let (other_ca, _) = pki("Another CA");
        let other = Verifier::new(&other_ca).unwrap();
        assert!(matches!(
            other.verify(&sig, Context::Evidence, b"bytes", june),
            Err(SignError::Certificate(_))
        ));
    }

    #[test]
    fn every_statement_of_a_batch_verifies_alone_and_nothing_else_does() {
        let (ca, key) = pki("Batch Test CA");
        let v = Verifier::new(&ca).unwrap();
        let june = secs(datetime!(2020-06-01 00:00 UTC));
        let stmts: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 40]).collect();
        let leaves: Vec<_> = stmts
            .iter()
            .map(|b| key.leaf(Context::Evidence, b).unwrap())
            .collect();
        let sigs = key.sign_batch(&leaves).unwrap();
        assert_eq!(sigs.len(), 5);
        assert!(
            sigs.iter().all(|s| s.value == sigs[0].value),
            "one signature"
        );
        for (b, sig) in stmts.iter().zip(&sigs) {
            assert_eq!(sig.algorithm, ED25519_BATCH);
            assert_eq!(
                v.verify(sig, Context::Evidence, b, june).unwrap(),
                *key.principal()
            );
        }
        assert_eq!(v.root_cache().len(), 1, "the root is checked once");
        let fails = |sig: &pb::Signature, ctx, bytes: &[u8]| {
            let e = v.verify(sig, ctx, bytes, june).unwrap_err();
            (matches!(e, SignError::Inclusion { .. }), e.to_string())
        };
        // Another statement, another context, a changed path, position or size: each refused,
        // naming the inclusion path, though the root's signature is cached.
        let (inclusion, msg) = fails(&sigs[1], Context::Evidence, &stmts[2]);
        assert!(inclusion, "{msg}");
        assert!(
            msg.starts_with("batch signature: inclusion path of leaf 1 of 5"),
            "{msg}"
        );
        assert!(fails(&sigs[1], Context::DocumentHeader, &stmts[1]).0);
        let mut tampered = sigs[3].clone();
        let b = tampered.batch.as_mut().unwrap();
        b.path[1][7] ^= 0x20;
        assert!(fails(&tampered, Context::Evidence, &stmts[3]).0);
        let mut moved = sigs[3].clone();
        moved.batch.as_mut().unwrap().leaf_index = 2;
        assert!(fails(&moved, Context::Evidence, &stmts[3]).0);
        let mut grown = sigs[4].clone();
        grown.batch.as_mut().unwrap().tree_size = 6;
        assert!(fails(&grown, Context::Evidence, &stmts[4]).0);
        let mut short = sigs[0].clone();
        short.batch.as_mut().unwrap().path.pop();
        let (inclusion, msg) = fails(&short, Context::Evidence, &stmts[0]);
        assert!(
            inclusion && msg.contains("do not fit leaf 0 of a tree of 5"),
            "{msg}"
        );
        // The two forms cannot be mixed up.
        let mut unbatched = sigs[0].clone();
        unbatched.batch = None;
        assert!(matches!(
            v.verify(&unbatched, Context::Evidence, &stmts[0], june),
            Err(SignError::Algorithm(_))
        ));
        let mut relabelled = sigs[0].clone();
        relabelled.algorithm = ED25519.into();
        assert!(matches!(
            v.verify(&relabelled, Context::Evidence, &stmts[0], june),
            Err(SignError::Algorithm(_))
        ));
        // A cached root still has its certificate checked at the statement's time.
        let late = secs(datetime!(2021-06-01 00:00 UTC));
        assert!(matches!(
            v.verify(&sigs[0], Context::Evidence, &stmts[0], late),
            Err(SignError::Certificate(_))
        ));
        // Under another CA the cached root counts for nothing.
        let (other_ca, _) = pki("Another CA");
        assert!(
            Verifier::new(&other_ca)
                .unwrap()
                .verify(&sigs[0], Context::Evidence, &stmts[0], june)
                .is_err()
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn statements_waiting_together_share_one_signature() {
        let (ca, key) = pki("Batch Signer CA");
        let v = Verifier::new(&ca).unwrap();
        let june = secs(datetime!(2020-06-01 00:00 UTC));
        let signer = BatchSigner::spawn(Arc::new(key));
        // On one thread every caller queues its statement before the signer runs again.
        let calls: Vec<_> = (0..100u8)
            .map(|i| {
                let s = signer.clone();
                tokio::spawn(async move {
                    let bytes = vec![i; 10];
                    (s.sign(Context::Evidence, &bytes).await.unwrap(), bytes)
                })
            })
            .collect();
        let mut values = std::collections::HashSet::new();
        for call in calls {
            let (sig, bytes) = call.await.unwrap();
            v.verify(&sig, Context::Evidence, &bytes, june).unwrap();
            assert_eq!(sig.batch.as_ref().unwrap().tree_size, 100);
            values.insert(sig.value);
        }
        assert_eq!(values.len(), 1, "one signature for the hundred");
        // Alone, a statement is signed at once, in a batch of one.
        let alone = signer.sign(Context::Evidence, b"alone").await.unwrap();
        assert_eq!(alone.batch.as_ref().unwrap().tree_size, 1);
        assert!(v.verify(&alone, Context::Evidence, b"alone", june).is_ok());
        assert!(v.verify(&alone, Context::Evidence, b"other", june).is_err());
    }

    #[test]
    fn a_signer_first_seen_out_of_its_window_is_not_cached() {
        let (ca, key) = pki("Window Test CA");
        let v = Verifier::new(&ca).unwrap();
        let sig = key.sign(Context::Evidence, b"x").unwrap();
        let late = secs(datetime!(2022-01-01 00:00 UTC));
        assert!(v.verify(&sig, Context::Evidence, b"x", late).is_err());
        assert!(v.cache().is_empty());
    }
}
