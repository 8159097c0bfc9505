//! Profile detection and `check_profile`, with certificates made at test time: rcgen for the
//! international profile, Tongsuo (with the feature) for shangmi.

use std::{os::unix::fs::PermissionsExt, path::Path};

use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
    PKCS_ED25519,
};

use super::*;

fn write(path: &Path, text: &[u8], mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An international identity in `dir`: ca.pem, tls.pem/tls.key (P-256), signing.pem/signing.key
/// (Ed25519).
fn international(dir: &Path) -> (TlsPaths, SigningPaths) {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    write(&dir.join("ca.pem"), ca.pem().as_bytes(), 0o644);
    let issuer = Issuer::new(ca_params, ca_key);
    for (name, alg) in [("tls", &PKCS_ECDSA_P256_SHA256), ("signing", &PKCS_ED25519)] {
        let key = KeyPair::generate_for(alg).unwrap();
        let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        write(
            &dir.join(format!("{name}.pem")),
            cert.pem().as_bytes(),
            0o644,
        );
        write(
            &dir.join(format!("{name}.key")),
            key.serialize_pem().as_bytes(),
            0o600,
        );
    }
    paths(dir)
}

fn paths(dir: &Path) -> (TlsPaths, SigningPaths) {
    (
        TlsPaths {
            ca: dir.join("ca.pem"),
            cert: dir.join("tls.pem"),
            key: dir.join("tls.key"),
            enc_cert: None,
            enc_key: None,
            crl: None,
            protocol: None,
        },
        SigningPaths {
            cert: dir.join("signing.pem"),
            key: dir.join("signing.key"),
        },
    )
}

#[test]
fn international_certificates_pass_under_international_only() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, signing) = international(dir.path());
    check_profile("exchange-hub", Profile::International, &tls, &signing).unwrap();

    let err = check_profile("exchange-hub", Profile::Shangmi, &tls, &signing).unwrap_err();
    let msg = err.to_string();
    if cfg!(feature = "shangmi") {
        // The CA is looked at first: its key decides the profile of everything it issued.
        assert_eq!(
            msg,
            format!(
                "tls.ca {} is an international (ECDSA P-256) certificate but [crypto] profile \
                 is shangmi",
                tls.ca.display()
            )
        );
    } else {
        assert_eq!(
            msg,
            "this exchange-hub was built without 国密 support: rebuild with \
             `cargo build --release --features shangmi`"
        );
    }
    let der = crate::tls::read_pem_file(&signing.cert, "CERTIFICATE").unwrap();
    let (found, algorithm) = cert_profile(&der).unwrap();
    assert_eq!(
        (found, algorithm.as_str()),
        (Profile::International, "Ed25519")
    );
}

#[test]
fn an_encryption_certificate_is_refused_under_international() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tls, signing) = international(dir.path());
    tls.enc_cert = Some(tls.cert.clone());
    tls.enc_key = Some(tls.key.clone());
    let err = check_profile("exchange-node", Profile::International, &tls, &signing)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("[tls] enc_cert is set but [crypto] profile is international"));
}

#[test]
fn an_unreadable_certificate_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tls, signing) = international(dir.path());
    tls.cert = dir.path().join("missing.pem");
    let err = check_profile("exchange-node", Profile::International, &tls, &signing)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("tls.cert "), "{err}");
    assert!(err.contains("missing.pem"), "{err}");
}

#[test]
fn shangmi_is_refused_only_by_a_build_without_it() {
    Profile::International.ensure_built("exchange-hub").unwrap();
    let built = Profile::Shangmi.ensure_built("exchange-hub");
    if cfg!(feature = "shangmi") {
        built.unwrap();
    } else {
        let err = built.unwrap_err().to_string();
        assert!(err.contains("built without 国密 support"), "{err}");
    }
}

#[cfg(feature = "shangmi")]
mod shangmi {
    use super::*;
    use crate::crypto::sm::{
        Sm2PrivateKey,
        cert::{self, CertUsage, ExtendedUsage, LeafExtensions, LeafRequest},
    };
    use crate::identity::Principal;

    /// Writes `name.pem`/`name.key`: an SM2 certificate of `usage` for the hub.
    fn leaf(dir: &Path, ca: &[u8], ca_key: &Sm2PrivateKey, name: &str, usage: CertUsage) {
        let key = Sm2PrivateKey::generate().unwrap();
        let req = LeafRequest {
            common_name: "hub",
            usage,
            dns_names: &["localhost"],
            days: 30,
        };
        let ext = LeafExtensions {
            uris: &["urn:exchange:hub"],
            extended: &[ExtendedUsage::ServerAuth],
            backdate_secs: 3600,
            ..Default::default()
        };
        let der = cert::issue_with(ca, ca_key, &key.public_key().unwrap(), &req, &ext).unwrap();
        write(
            &dir.join(format!("{name}.pem")),
            &cert::to_pem(&der).unwrap(),
            0o644,
        );
        write(
            &dir.join(format!("{name}.key")),
            &key.to_pkcs8_pem().unwrap(),
            0o600,
        );
    }

    /// A shangmi hub identity in `dir`, with its encryption pair.
    fn shangmi(dir: &Path) -> (TlsPaths, SigningPaths) {
        let ca_key = Sm2PrivateKey::generate().unwrap();
        let ca = cert::self_signed_ca(&ca_key, "SM2 CA", 30).unwrap();
        write(&dir.join("ca.pem"), &cert::to_pem(&ca).unwrap(), 0o644);
        leaf(dir, &ca, &ca_key, "tls", CertUsage::Signing);
        leaf(dir, &ca, &ca_key, "tls-enc", CertUsage::Encryption);
        leaf(dir, &ca, &ca_key, "signing", CertUsage::DocumentSigning);
        let (mut tls, signing) = paths(dir);
        tls.enc_cert = Some(dir.join("tls-enc.pem"));
        tls.enc_key = Some(dir.join("tls-enc.key"));
        (tls, signing)
    }

    #[test]
    fn sm2_certificates_pass_under_shangmi_and_match_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (tls, signing) = shangmi(dir.path());
        check_profile("exchange-hub", Profile::Shangmi, &tls, &signing).unwrap();
        check_shangmi_identity("exchange-hub", &tls, &signing, &Principal::Hub).unwrap();

        let err = check_profile("exchange-hub", Profile::International, &tls, &signing)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "tls.ca {} is a shangmi (SM2) certificate but [crypto] profile is international",
                tls.ca.display()
            )
        );
        // Someone else's identity, or a key of another certificate, is refused by name.
        let dept = Principal::Dept("a".parse().unwrap());
        let err = check_shangmi_identity("exchange-hub", &tls, &signing, &dept)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("tls.cert ") && err.contains("does not name department a"));
        let mut swapped = signing;
        swapped.key = tls.key.clone();
        let err = check_shangmi_identity("exchange-hub", &tls, &swapped, &Principal::Hub)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("signing.key ") && err.contains("does not belong to"));
    }

    #[test]
    fn a_swapped_international_certificate_or_a_missing_enc_pair_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (mut tls, mut signing) = shangmi(dir.path());
        let other = tempfile::tempdir().unwrap();
        let (intl_tls, intl_signing) = international(other.path());

        signing.cert = intl_signing.cert.clone();
        let err = check_profile("exchange-node", Profile::Shangmi, &tls, &signing)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "signing.cert {} is an international (Ed25519) certificate but [crypto] profile \
                 is shangmi",
                intl_signing.cert.display()
            )
        );
        signing.cert = dir.path().join("signing.pem");

        tls.enc_cert = Some(intl_tls.cert);
        let err = check_profile("exchange-node", Profile::Shangmi, &tls, &signing)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("tls.enc_cert "), "{err}");
        assert!(err.contains("international (ECDSA P-256)"), "{err}");

        tls.enc_cert = None;
        tls.enc_key = None;
        let err = check_profile("exchange-node", Profile::Shangmi, &tls, &signing)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("[tls] enc_cert is required when [crypto] profile is shangmi"),
            "{err}"
        );
        tls.enc_cert = Some(dir.path().join("tls-enc.pem"));
        let err = check_profile("exchange-node", Profile::Shangmi, &tls, &signing)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("[tls] enc_key is required"), "{err}");
    }
}
