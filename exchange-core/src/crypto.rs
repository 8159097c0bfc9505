//! The crypto profile of an exchange, and the start of the one provider layer that serves it
//! (issue 14, docs/shangmi.md).
//!
//! An exchange runs one [`Profile`]: `international` (Ed25519, SHA-256, TLS 1.3 through rustls and
//! ring) or `shangmi` (国密: SM2 with SM3, SM3, SM4 and TLCP, all from Tongsuo, a certified module).
//! Hub and node code asks this module for a digest, signer or channel and never branches on the
//! profile itself. This first slice holds the names and the digest; the SM primitives live in
//! [`sm`], compiled only with the cargo feature `shangmi` because Tongsuo is C built from source.
//! Without the feature the names still parse, so a config that asks for `shangmi` is refused with
//! a clear error rather than misread.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod check;
#[cfg(feature = "shangmi")]
pub mod sm;

pub use check::{
    ProfileError, TLS_KEYS, TlsKeys, cert_profile, check_profile, check_shangmi_identity,
    check_tls_profile,
};

/// The algorithm family an exchange uses end to end. The CA decides it; hub and node configs
/// state it as `[crypto] profile = "..."` so that a mismatch is found at start, not mid-exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Ed25519 signatures, SHA-256 digests, TLS 1.3 through rustls and ring: today's exchange.
    #[default]
    International,
    /// 国密: SM2-with-SM3 signatures, SM3 digests, TLCP, all from Tongsuo.
    Shangmi,
}

impl Profile {
    /// Every profile, in the order the error messages list them.
    pub const ALL: [Profile; 2] = [Profile::International, Profile::Shangmi];

    /// The name in configs and on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            Profile::International => "international",
            Profile::Shangmi => "shangmi",
        }
    }

    /// The digest this profile uses for content parts, headers and hash chains.
    pub const fn digest(self) -> DigestAlgorithm {
        match self {
            Profile::International => DigestAlgorithm::Sha256,
            Profile::Shangmi => DigestAlgorithm::Sm3,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| CryptoError::UnknownProfile(s.to_owned()))
    }
}

/// A digest algorithm, named on the wire and in the stores so that a digest is never read with
/// the wrong function. Both produce 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlgorithm {
    /// SHA-256 (FIPS 180-4), through ring.
    Sha256,
    /// SM3 (GB/T 32905-2016), through Tongsuo; needs the `shangmi` feature.
    Sm3,
}

impl DigestAlgorithm {
    /// Every digest algorithm, in the order the error messages list them.
    pub const ALL: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha256, DigestAlgorithm::Sm3];

    /// The wire name.
    pub const fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sm3 => "sm3",
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DigestAlgorithm {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DigestAlgorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| CryptoError::UnknownDigest(s.to_owned()))
    }
}

/// The digest of `bytes` under `alg`. Asking for SM3 in a build without the `shangmi` feature is
/// an error, never a panic: a node must be able to say why it cannot read a shangmi document.
pub fn digest(alg: DigestAlgorithm, bytes: &[u8]) -> Result<[u8; 32], CryptoError> {
    match alg {
        DigestAlgorithm::Sha256 => {
            let d = ring::digest::digest(&ring::digest::SHA256, bytes);
            let mut out = [0u8; 32];
            out.copy_from_slice(d.as_ref());
            Ok(out)
        }
        #[cfg(feature = "shangmi")]
        DigestAlgorithm::Sm3 => Ok(sm::sm3(bytes)?),
        #[cfg(not(feature = "shangmi"))]
        DigestAlgorithm::Sm3 => Err(CryptoError::ShangmiUnavailable),
    }
}

/// Why a profile or algorithm cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A config or peer named a profile this version does not know.
    #[error("unknown crypto profile {0:?} (allowed: international, shangmi)")]
    UnknownProfile(String),
    /// A wire or store record named a digest this version does not know.
    #[error("unknown digest algorithm {0:?} (allowed: sha256, sm3)")]
    UnknownDigest(String),
    /// An SM algorithm was asked of a build without Tongsuo.
    #[error("this build has no 国密 support (build with --features shangmi)")]
    ShangmiUnavailable,
    /// Tongsuo refused or failed an SM operation.
    #[cfg(feature = "shangmi")]
    #[error(transparent)]
    Sm(#[from] sm::SmError),
}

#[cfg(test)]
mod tests;
