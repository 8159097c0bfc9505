//! `[crypto]` in `hub.toml` and `node.toml`: which algorithm family the exchange uses
//! (docs/shangmi.md). The CA decides it; the config states it, so that `check-config` can
//! refuse certificates of the other profile before anything starts.

use serde::{Deserialize, Serialize};

use crate::crypto::Profile;

/// `[crypto]`. Optional: a config without it is `international`, as every config was before
/// the section existed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CryptoSection {
    /// `international` (Ed25519, SHA-256, TLS 1.3 through rustls and ring) or `shangmi`
    /// (SM2, SM3, SM4 and TLCP through Tongsuo; needs a build with the `shangmi` feature).
    #[serde(default)]
    pub profile: Profile,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_profile_is_international_and_an_unknown_one_names_the_allowed() {
        let cfg: CryptoSection = toml::from_str("").unwrap();
        assert_eq!(cfg.profile, Profile::International);
        let cfg: CryptoSection = toml::from_str("profile = \"shangmi\"").unwrap();
        assert_eq!(cfg.profile, Profile::Shangmi);
        let err = toml::from_str::<CryptoSection>("profile = \"sm2\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sm2") && err.contains("international") && err.contains("shangmi"),
            "{err}"
        );
        let err = toml::from_str::<CryptoSection>("profle = \"shangmi\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("profle"), "{err}");
    }
}
