//! The signature schemes, one per crypto profile ([`crate::crypto::Profile`]): what a
//! `Signature.algorithm` names, which digest its batches hash with, and which webpki algorithm
//! checks it. The names are known to every build, so that a build without the `shangmi` feature
//! can say why it refuses an SM2 signature instead of calling it unknown.

use crate::crypto::{DigestAlgorithm, Profile};

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Ed25519 (RFC 8032), through ring; Merkle batches hash with SHA-256.
    Ed25519,
    /// SM2 with SM3 (GM/T 0009, distinguishing ID `1234567812345678`), DER-encoded, through
    /// Tongsuo; Merkle batches hash with SM3.
    Sm2Sm3,
}

/// The `Signature.algorithm` of one Ed25519 signature over `context || bytes`.
pub const ED25519: &str = "ed25519";
/// One Ed25519 signature over the root of a SHA-256 Merkle tree of many statements.
pub const ED25519_BATCH: &str = "ed25519-merkle-sha256";
/// One SM2-with-SM3 signature over `context || bytes`.
pub const SM2_SM3: &str = "sm2-sm3";
/// One SM2-with-SM3 signature over the root of an SM3 Merkle tree of many statements.
pub const SM2_SM3_BATCH: &str = "sm2-sm3-merkle-sm3";

impl Scheme {
    /// Every scheme.
    pub const ALL: [Scheme; 2] = [Scheme::Ed25519, Scheme::Sm2Sm3];

    /// The scheme of `profile`.
    pub const fn of(profile: Profile) -> Self {
        match profile {
            Profile::International => Scheme::Ed25519,
            Profile::Shangmi => Scheme::Sm2Sm3,
        }
    }

    /// The profile this scheme belongs to.
    pub const fn profile(self) -> Profile {
        match self {
            Scheme::Ed25519 => Profile::International,
            Scheme::Sm2Sm3 => Profile::Shangmi,
        }
    }

    /// The `Signature.algorithm` of a single signature.
    pub const fn name(self) -> &'static str {
        match self {
            Scheme::Ed25519 => ED25519,
            Scheme::Sm2Sm3 => SM2_SM3,
        }
    }

    /// The `Signature.algorithm` of a batch signature.
    pub const fn batch_name(self) -> &'static str {
        match self {
            Scheme::Ed25519 => ED25519_BATCH,
            Scheme::Sm2Sm3 => SM2_SM3_BATCH,
        }
    }

    /// The digest a batch's Merkle tree is built with.
    pub const fn digest(self) -> DigestAlgorithm {
        self.profile().digest()
    }

    /// The scheme an algorithm name belongs to, and whether it names a batch signature.
    pub fn parse(algorithm: &str) -> Option<(Scheme, bool)> {
        Scheme::ALL.into_iter().find_map(|s| {
            if algorithm == s.name() {
                Some((s, false))
            } else if algorithm == s.batch_name() {
                Some((s, true))
            } else {
                None
            }
        })
    }
}

/// SM2-with-SM3 for webpki: lets webpki build and check certificate paths of SM2 certificates
/// (signature, validity, key usage, names) exactly as it does for the international profile,
/// with every signature check done by Tongsuo.
#[cfg(feature = "shangmi")]
pub(crate) mod sm2_webpki {
    use rustls::pki_types::{
        AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm,
    };

    use std::sync::{LazyLock, Mutex, PoisonError};

    use crate::{cache::BoundedMap, crypto::sm::Sm2PublicKey};

    /// `AlgorithmIdentifier` contents (no outer SEQUENCE) of an SM2 public key:
    /// id-ecPublicKey (1.2.840.10045.2.1) with the curve sm2 (1.2.156.10197.1.301).
    const SM2_PUBLIC_KEY: &[u8] = &[
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // id-ecPublicKey
        0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d, // sm2
    ];

    /// `AlgorithmIdentifier` contents of SM2-with-SM3 (1.2.156.10197.1.501), no parameters.
    const SM2_WITH_SM3: &[u8] = &[0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x75];

    /// The algorithm, for webpki's list of supported ones.
    #[derive(Debug)]
    pub(crate) struct Sm2WithSm3;

    pub(crate) static SM2_WITH_SM3_ALG: Sm2WithSm3 = Sm2WithSm3;

    /// The algorithms an SM2 certificate path may be signed with.
    pub(crate) static ALGS: &[&dyn SignatureVerificationAlgorithm] = &[&SM2_WITH_SM3_ALG];

    /// A `SubjectPublicKeyInfo` around an SM2 public key (the uncompressed point).
    fn spki(point: &[u8]) -> Option<Vec<u8>> {
        let bits = point.len().checked_add(1)?; // the unused-bits byte
        let alg_len = 2 + SM2_PUBLIC_KEY.len();
        let body = alg_len + 2 + bits;
        // Short DER lengths only: an SM2 point is 65 bytes.
        let (Ok(bits), Ok(body), Ok(alg)) = (
            u8::try_from(bits),
            u8::try_from(body),
            u8::try_from(SM2_PUBLIC_KEY.len()),
        ) else {
            return None;
        };
        if body >= 0x80 || bits >= 0x80 {
            return None;
        }
        let mut der = vec![0x30, body, 0x30, alg];
        der.extend_from_slice(SM2_PUBLIC_KEY);
        der.extend_from_slice(&[0x03, bits, 0x00]);
        der.extend_from_slice(point);
        Some(der)
    }

    /// Most parsed keys remembered. A city's exchange has a few hundred signers (each
    /// department's key, two during a rotation, the hub's and the CA's); beyond the bound the
    /// oldest is forgotten and parsed again when it next signs.
    const KEY_CACHE_SIZE: usize = 1_024;

    /// Keys parsed so far, by their point. Tongsuo parses a public key through OpenSSL 3's
    /// decoders, which cost about half as much again as the SM2 verification itself (11 % of a
    /// 国密 hub's samples were in `d2i_PUBKEY` under load), and the same few keys sign everything
    /// a daemon verifies. Only the parse is remembered: every signature is still verified, and a
    /// point that does not parse is not remembered.
    static KEYS: LazyLock<Mutex<BoundedMap<Vec<u8>, Sm2PublicKey>>> =
        LazyLock::new(|| Mutex::new(BoundedMap::new(KEY_CACHE_SIZE)));

    /// The key whose uncompressed point is `point`, parsed once while it is remembered.
    fn key(point: &[u8]) -> Option<Sm2PublicKey> {
        let keys = || KEYS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = keys().get(point) {
            return Some(key.clone());
        }
        let key = spki(point).and_then(|der| Sm2PublicKey::from_spki_der(&der).ok())?;
        keys().insert(point.to_vec(), key.clone());
        Some(key)
    }

    impl SignatureVerificationAlgorithm for Sm2WithSm3 {
        fn verify_signature(
            &self,
            public_key: &[u8],
            message: &[u8],
            signature: &[u8],
        ) -> Result<(), InvalidSignature> {
            let key = key(public_key).ok_or(InvalidSignature)?;
            key.verify(message, signature).map_err(|_| InvalidSignature)
        }

        fn public_key_alg_id(&self) -> AlgorithmIdentifier {
            AlgorithmIdentifier::from_slice(SM2_PUBLIC_KEY)
        }

        fn signature_alg_id(&self) -> AlgorithmIdentifier {
            AlgorithmIdentifier::from_slice(SM2_WITH_SM3)
        }

        fn fips(&self) -> bool {
            false
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::crypto::sm::Sm2PrivateKey;

        fn remembered(point: &[u8]) -> bool {
            KEYS.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(point)
        }

        #[test]
        fn a_parsed_key_is_remembered_and_every_signature_still_checked() {
            let (a, b) = (
                Sm2PrivateKey::generate().unwrap(),
                Sm2PrivateKey::generate().unwrap(),
            );
            let spki = a.public_key().unwrap().to_spki_der().unwrap();
            let point = &spki[spki.len() - 65..];
            assert_eq!(point[0], 0x04, "an uncompressed point");
            let alg = &SM2_WITH_SM3_ALG;
            let sig = a.sign(b"bytes").unwrap();
            assert!(!remembered(point));
            alg.verify_signature(point, b"bytes", &sig).unwrap();
            assert!(remembered(point), "parsed once, then remembered");
            // A remembered key checks every signature as a freshly parsed one does.
            alg.verify_signature(point, b"bytes", &sig).unwrap();
            assert!(alg.verify_signature(point, b"other", &sig).is_err());
            let by_b = b.sign(b"bytes").unwrap();
            assert!(alg.verify_signature(point, b"bytes", &by_b).is_err());
            // A point that does not parse fails, and is not remembered.
            let mut bad = point.to_vec();
            bad[64] ^= 1;
            assert!(alg.verify_signature(&bad, b"bytes", &sig).is_err());
            assert!(!remembered(&bad));
        }
    }
}
