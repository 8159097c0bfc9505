//! The profile and digest names, and the digest dispatch, in every build.

use super::*;

#[derive(Debug, serde::Deserialize)]
struct Config {
    crypto: CryptoSection,
}

#[derive(Debug, serde::Deserialize)]
struct CryptoSection {
    profile: Profile,
}

#[test]
fn profile_names_round_trip() {
    for p in Profile::ALL {
        assert_eq!(p.to_string().parse::<Profile>().unwrap(), p);
    }
    assert_eq!("shangmi".parse::<Profile>().unwrap(), Profile::Shangmi);
    assert_eq!(Profile::International.to_string(), "international");
    assert_eq!(Profile::default(), Profile::International);
}

#[test]
fn unknown_profile_names_the_allowed_ones() {
    let err = "guomi".parse::<Profile>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown crypto profile \"guomi\" (allowed: international, shangmi)"
    );
    // Names are exact: configs and the wire use the lowercase form only.
    assert!("Shangmi".parse::<Profile>().is_err());
}

#[test]
fn config_states_the_profile() {
    let cfg: Config = toml::from_str("[crypto]\nprofile = \"shangmi\"\n").unwrap();
    assert_eq!(cfg.crypto.profile, Profile::Shangmi);
    let err = toml::from_str::<Config>("[crypto]\nprofile = \"sm\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("international") && msg.contains("shangmi"),
        "{msg}"
    );
    assert_eq!(
        serde_json::to_string(&Profile::International).unwrap(),
        "\"international\""
    );
}

#[test]
fn each_profile_names_its_digest() {
    assert_eq!(Profile::International.digest(), DigestAlgorithm::Sha256);
    assert_eq!(Profile::Shangmi.digest(), DigestAlgorithm::Sm3);
    for a in DigestAlgorithm::ALL {
        assert_eq!(a.name().parse::<DigestAlgorithm>().unwrap(), a);
        assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
    }
    let err = "sha1".parse::<DigestAlgorithm>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown digest algorithm \"sha1\" (allowed: sha256, sm3)"
    );
}

#[test]
fn sha256_known_answer() {
    let d = digest(DigestAlgorithm::Sha256, b"abc").unwrap();
    assert_eq!(
        hex::encode(d),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[cfg(not(feature = "shangmi"))]
#[test]
fn sm3_without_the_feature_is_a_clear_error() {
    let err = digest(DigestAlgorithm::Sm3, b"abc").unwrap_err();
    assert!(matches!(err, CryptoError::ShangmiUnavailable));
    assert_eq!(
        err.to_string(),
        "this build has no 国密 support (build with --features shangmi)"
    );
}

#[cfg(feature = "shangmi")]
#[test]
fn sm3_through_the_dispatch() {
    let d = digest(DigestAlgorithm::Sm3, b"abc").unwrap();
    assert_eq!(
        hex::encode(d),
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    );
}
