//! [`Digest`], the 32-byte value every content part, header and hash chain is named by, and
//! [`Hasher`], which computes one incrementally. The algorithm is the exchange's profile's
//! ([`DigestAlgorithm`]): SHA-256 through ring for `international`, SM3 through Tongsuo for
//! `shangmi`. Both produce 32 bytes, so a [`Digest`] does not carry its algorithm: what it names
//! says which one it is (a header's `digest_algorithm`, a store's or chain's), see
//! docs/protocol.md#digests.

use std::fmt;

use crate::crypto::{self, CryptoError, DigestAlgorithm};

/// A 32-byte digest: SHA-256, or SM3 where the header, store or chain it belongs to says so.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `bytes`: the international profile's digest, and what the exchange's own
    /// bookkeeping (cache keys, key fingerprints) uses under either profile.
    pub fn of(bytes: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        Digest(d.as_ref().try_into().expect("BUG: SHA-256 is 32 bytes"))
    }

    /// The digest of `bytes` under `alg`. SM3 in a build without the `shangmi` feature is
    /// [`CryptoError::ShangmiUnavailable`], never a panic.
    pub fn with(alg: DigestAlgorithm, bytes: &[u8]) -> Result<Self, CryptoError> {
        crypto::digest(alg, bytes).map(Digest)
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

/// How people are told a digest algorithm, as the standards write it (`SHA-256`, `SM3`): in
/// error messages and reports.
pub fn digest_label(alg: DigestAlgorithm) -> &'static str {
    match alg {
        DigestAlgorithm::Sha256 => "SHA-256",
        DigestAlgorithm::Sm3 => "SM3",
    }
}

/// A digest computed piece by piece, for content that is streamed (a blob being received or
/// re-read): the same value [`Digest::with`] gives for the concatenated pieces.
#[derive(Clone)]
pub struct Hasher(State);

#[derive(Clone)]
enum State {
    Sha256(ring::digest::Context),
    #[cfg(feature = "shangmi")]
    Sm3(tongsuo::hash::Hasher),
}

impl Hasher {
    /// A hasher for `alg`; SM3 without the `shangmi` feature is
    /// [`CryptoError::ShangmiUnavailable`].
    pub fn new(alg: DigestAlgorithm) -> Result<Self, CryptoError> {
        match alg {
            DigestAlgorithm::Sha256 => Ok(Hasher(State::Sha256(ring::digest::Context::new(
                &ring::digest::SHA256,
            )))),
            #[cfg(feature = "shangmi")]
            DigestAlgorithm::Sm3 => {
                let h = tongsuo::hash::Hasher::new(tongsuo::hash::MessageDigest::sm3())
                    .map_err(crypto::sm::ts("sm3"))?;
                Ok(Hasher(State::Sm3(h)))
            }
            #[cfg(not(feature = "shangmi"))]
            DigestAlgorithm::Sm3 => Err(CryptoError::ShangmiUnavailable),
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> DigestAlgorithm {
        match &self.0 {
            State::Sha256(_) => DigestAlgorithm::Sha256,
            #[cfg(feature = "shangmi")]
            State::Sm3(_) => DigestAlgorithm::Sm3,
        }
    }

    /// Adds `data`. Fails only if the crypto module does (never for SHA-256).
    pub fn update(&mut self, data: &[u8]) -> Result<(), CryptoError> {
        match &mut self.0 {
            State::Sha256(c) => {
                c.update(data);
                Ok(())
            }
            #[cfg(feature = "shangmi")]
            State::Sm3(h) => Ok(h.update(data).map_err(crypto::sm::ts("sm3"))?),
        }
    }

    /// The digest of everything added.
    pub fn finish(self) -> Result<Digest, CryptoError> {
        match self.0 {
            State::Sha256(c) => Ok(Digest(
                c.finish()
                    .as_ref()
                    .try_into()
                    .expect("BUG: SHA-256 is 32 bytes"),
            )),
            #[cfg(feature = "shangmi")]
            State::Sm3(mut h) => {
                let d = h.finish().map_err(crypto::sm::ts("sm3"))?;
                Ok(Digest(d.as_ref().try_into().expect("BUG: SM3 is 32 bytes")))
            }
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hasher({})", self.algorithm())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_sha256_equals_one_shot_and_of() {
        let mut h = Hasher::new(DigestAlgorithm::Sha256).unwrap();
        h.update(b"hello ").unwrap();
        h.update(b"world").unwrap();
        let d = h.finish().unwrap();
        assert_eq!(d, Digest::of(b"hello world"));
        assert_eq!(
            d,
            Digest::with(DigestAlgorithm::Sha256, b"hello world").unwrap()
        );
    }

    #[test]
    #[cfg(not(feature = "shangmi"))]
    fn sm3_without_the_feature_is_a_clear_error() {
        let e = Hasher::new(DigestAlgorithm::Sm3).unwrap_err();
        assert!(matches!(e, CryptoError::ShangmiUnavailable), "{e}");
        assert!(e.to_string().contains("no 国密 support"), "{e}");
        assert!(Digest::with(DigestAlgorithm::Sm3, b"abc").is_err());
    }

    #[test]
    #[cfg(feature = "shangmi")]
    fn streamed_sm3_equals_one_shot_and_the_gbt_vector() {
        // GB/T 32905-2016 appendix A.1: SM3("abc").
        let abc = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0";
        let mut h = Hasher::new(DigestAlgorithm::Sm3).unwrap();
        h.update(b"a").unwrap();
        h.update(b"bc").unwrap();
        let d = h.finish().unwrap();
        assert_eq!(d.to_hex(), abc);
        assert_eq!(Digest::with(DigestAlgorithm::Sm3, b"abc").unwrap(), d);
        assert_ne!(d, Digest::of(b"abc"));
    }
}
