//! The algorithms that seal a store at rest, one suite per crypto profile (issue 14): the
//! international profile seals with AES-256-GCM and HKDF-SHA256 through ring, the shangmi
//! profile with SM4-GCM and HKDF-SM3 through Tongsuo, so that a 国密 assessment finds no AES
//! anywhere. The rest of [`super`] is written once against [`AeadKey`] and never names an
//! algorithm; the format byte after each magic, and the key ring's `version`/`suite`, record
//! which suite sealed what (see [`super`] for the layouts).

use std::{error::Error, fmt};

use ring::{
    aead::{self, Aad, LessSafeKey, Nonce, UnboundKey},
    digest, hkdf,
    rand::{SecureRandom, SystemRandom},
};

use super::AtRestError;
use crate::crypto::Profile;

/// Length of every GCM nonce here (96 bits under both suites).
pub(super) const NONCE_LEN: usize = 12;
/// Length of every GCM tag here (128 bits under both suites).
pub(super) const TAG_LEN: usize = 16;

/// A set of at-rest algorithms. A store keeps the suite it was created with: its key ring, its
/// sealed values and its blob headers name it, and a store is refused by a configuration whose
/// profile has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// AES-256-GCM, keys from HKDF-SHA256, KEK fingerprint with SHA-256, salts and data keys
    /// from the operating system; all through ring. Format byte 1, key ring version 1: today's
    /// bytes, unchanged. The international profile's.
    Aes256Gcm,
    /// SM4-GCM (GB/T 32907, 128-bit keys), keys from HKDF-SM3 (RFC 5869 over HMAC-SM3), KEK
    /// fingerprint with SM3 (GB/T 32905), salts, nonces and data keys from Tongsuo's random
    /// generator; all through Tongsuo. Format byte 2, key ring version 2. The shangmi profile's.
    Sm4Gcm,
}

impl Suite {
    /// Every suite, in format-byte order.
    pub const ALL: [Suite; 2] = [Suite::Aes256Gcm, Suite::Sm4Gcm];

    /// The suite a store of `profile` seals with: the one place the profile decides at rest.
    pub const fn for_profile(profile: Profile) -> Suite {
        match profile {
            Profile::International => Suite::Aes256Gcm,
            Profile::Shangmi => Suite::Sm4Gcm,
        }
    }

    /// The profile this suite serves.
    pub const fn profile(self) -> Profile {
        match self {
            Suite::Aes256Gcm => Profile::International,
            Suite::Sm4Gcm => Profile::Shangmi,
        }
    }

    /// The name in key rings and messages.
    pub const fn name(self) -> &'static str {
        match self {
            Suite::Aes256Gcm => "aes-256-gcm/hkdf-sha256",
            Suite::Sm4Gcm => "sm4-gcm/hkdf-sm3",
        }
    }

    /// The byte after the magic of a sealed value or blob header (the format version).
    pub const fn format_byte(self) -> u8 {
        match self {
            Suite::Aes256Gcm => 1,
            Suite::Sm4Gcm => 2,
        }
    }

    /// The suite a format byte names, if any this build knows.
    pub fn from_format_byte(byte: u8) -> Option<Suite> {
        Self::ALL.into_iter().find(|s| s.format_byte() == byte)
    }

    /// The suite a key ring's `suite` field names, if any this build knows.
    pub fn from_name(name: &str) -> Option<Suite> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The one-use AEAD key for `salt` under `ikm` (a data key or the KEK): HKDF with this
    /// suite's hash, `info` separating purposes (values, blobs, key wrapping), so that equal
    /// salts in different places give unrelated keys.
    pub(super) fn derive(
        self,
        ikm: &[u8],
        salt: &[u8],
        info: &[u8],
    ) -> Result<AeadKey, AtRestError> {
        match self {
            Suite::Aes256Gcm => {
                let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
                let info = [info];
                let okm = prk
                    .expand(&info, &aead::AES_256_GCM)
                    .map_err(|e| self.failed("key derivation", ring_error(e)))?;
                Ok(AeadKey::Aes(LessSafeKey::new(UnboundKey::from(okm))))
            }
            #[cfg(feature = "shangmi")]
            Suite::Sm4Gcm => {
                use crate::crypto::sm::{kdf::hkdf_sm3, sm4};
                let mut key = zeroize::Zeroizing::new([0u8; sm4::KEY_LEN]);
                hkdf_sm3(ikm, salt, info, key.as_mut())
                    .map_err(|e| self.failed("key derivation", e))?;
                Ok(AeadKey::Sm4(key))
            }
            #[cfg(not(feature = "shangmi"))]
            Suite::Sm4Gcm => Err(self.unavailable("key derivation")),
        }
    }

    /// The hash of `label` then `key` with this suite's hash function (SHA-256 or SM3), for
    /// the KEK fingerprint.
    pub(super) fn fingerprint_hash(
        self,
        label: &[u8],
        key: &[u8],
    ) -> Result<[u8; 32], AtRestError> {
        match self {
            Suite::Aes256Gcm => {
                let mut hash = digest::Context::new(&digest::SHA256);
                hash.update(label);
                hash.update(key);
                let mut out = [0u8; 32];
                out.copy_from_slice(hash.finish().as_ref());
                Ok(out)
            }
            #[cfg(feature = "shangmi")]
            Suite::Sm4Gcm => {
                let input = zeroize::Zeroizing::new([label, key].concat());
                crate::crypto::sm::sm3(&input).map_err(|e| self.failed("sm3 fingerprint", e))
            }
            #[cfg(not(feature = "shangmi"))]
            Suite::Sm4Gcm => Err(self.unavailable("fingerprint")),
        }
    }

    /// `N` fresh random bytes for salts, nonces and data keys: the operating system's through
    /// ring, or Tongsuo's generator under the shangmi suite (the certified module's). A failed
    /// source is an error: there is no fallback to weaker randomness.
    pub(super) fn random<const N: usize>(self) -> Result<[u8; N], AtRestError> {
        let mut out = [0u8; N];
        match self {
            Suite::Aes256Gcm => SystemRandom::new()
                .fill(&mut out)
                .map_err(|e| self.failed("random generation", ring_error(e)))?,
            #[cfg(feature = "shangmi")]
            Suite::Sm4Gcm => tongsuo::rand::rand_bytes(&mut out)
                .map_err(|e| self.failed("random generation", e))?,
            #[cfg(not(feature = "shangmi"))]
            Suite::Sm4Gcm => return Err(self.unavailable("random generation")),
        }
        Ok(out)
    }

    /// A failure of this suite's library in `op`.
    fn failed(self, op: &'static str, e: impl Error + Send + Sync + 'static) -> AtRestError {
        AtRestError::Cipher {
            suite: self,
            op,
            source: Box::new(e),
        }
    }

    /// This suite asked of a build without it (the shangmi suite without the `shangmi` feature).
    #[cfg(not(feature = "shangmi"))]
    fn unavailable(self, op: &'static str) -> AtRestError {
        self.failed(op, crate::crypto::CryptoError::ShangmiUnavailable)
    }
}

/// ring's errors say nothing (by design) and are no `std::error::Error` without its `std`
/// feature: this one says where it came from.
fn ring_error(_: ring::error::Unspecified) -> std::io::Error {
    std::io::Error::other("ring reported an unspecified error")
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A one-use AEAD key of one suite: what seals a value, a blob or the data keys. Its bytes stay
/// in ring (AES) or are zeroed on drop (SM4); it has no `Debug`, so no log can show them.
// ring's expanded AES key is ~540 bytes, SM4's 16: boxing it would add an allocation to every
// sealed value for nothing, as a key lives on the stack for one value or one blob.
#[allow(clippy::large_enum_variant)]
pub(super) enum AeadKey {
    /// AES-256-GCM, through ring.
    Aes(LessSafeKey),
    /// SM4-GCM, through Tongsuo.
    #[cfg(feature = "shangmi")]
    Sm4(zeroize::Zeroizing<[u8; crate::crypto::sm::sm4::KEY_LEN]>),
}

/// Why [`AeadKey::open`] returned no plaintext.
pub(super) enum Refused {
    /// The bytes, the nonce or the AAD are not what was sealed: the caller names what.
    NotAuthentic,
    /// The library failed (not a verdict on the data). Only Tongsuo has such failures (ring's
    /// open fails for a bad tag alone), so a build without it never makes one.
    #[cfg_attr(not(feature = "shangmi"), allow(dead_code))]
    Failed(AtRestError),
}

impl Refused {
    /// The error to report, with `not_authentic` for a verdict on the data.
    pub(super) fn or(self, not_authentic: AtRestError) -> AtRestError {
        match self {
            Refused::NotAuthentic => not_authentic,
            Refused::Failed(e) => e,
        }
    }
}

impl AeadKey {
    /// The suite this key belongs to.
    pub(super) fn suite(&self) -> Suite {
        match self {
            AeadKey::Aes(_) => Suite::Aes256Gcm,
            #[cfg(feature = "shangmi")]
            AeadKey::Sm4(_) => Suite::Sm4Gcm,
        }
    }

    /// Encrypts `buf` in place under `nonce`, authenticating `aad` too, and returns the tag.
    /// The caller guarantees that (key, nonce) seals nothing else.
    pub(super) fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AtRestError> {
        let mut tag = [0u8; TAG_LEN];
        match self {
            AeadKey::Aes(key) => {
                let t = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        buf,
                    )
                    .map_err(|e| self.suite().failed("seal", ring_error(e)))?;
                tag.copy_from_slice(t.as_ref());
            }
            #[cfg(feature = "shangmi")]
            AeadKey::Sm4(key) => {
                let sealed = crate::crypto::sm::sm4::seal(key, &nonce, aad, buf)
                    .map_err(|e| self.suite().failed("seal", e))?;
                if sealed.len() != buf.len() + TAG_LEN {
                    let e = std::io::Error::other(
                        "sm4-gcm returned a sealed length other than plaintext and tag",
                    );
                    return Err(self.suite().failed("seal", e));
                }
                let (ciphertext, t) = sealed.split_at(buf.len());
                buf.copy_from_slice(ciphertext);
                tag.copy_from_slice(t);
            }
        }
        Ok(tag)
    }

    /// [`AeadKey::seal`] of `buf`, with the tag appended to it.
    pub(super) fn seal_append(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), AtRestError> {
        let tag = self.seal(nonce, aad, buf)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Checks and decrypts `buf` (ciphertext then tag) in place; returns the plaintext part.
    /// Nothing is returned unless the tag verifies.
    pub(super) fn open<'b>(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        buf: &'b mut [u8],
    ) -> Result<&'b mut [u8], Refused> {
        match self {
            // ring's only failure here is a tag that does not verify.
            AeadKey::Aes(key) => key
                .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
                .map_err(|_| Refused::NotAuthentic),
            #[cfg(feature = "shangmi")]
            AeadKey::Sm4(key) => {
                use crate::crypto::sm::{SmError, sm4};
                let plain = match sm4::open(key, &nonce, aad, buf) {
                    Ok(plain) => plain,
                    Err(SmError::Unauthentic) => return Err(Refused::NotAuthentic),
                    Err(e) => return Err(Refused::Failed(self.suite().failed("open", e))),
                };
                let n = plain.len();
                if n + TAG_LEN != buf.len() {
                    return Err(Refused::NotAuthentic);
                }
                buf[..n].copy_from_slice(&plain);
                Ok(&mut buf[..n])
            }
        }
    }
}
