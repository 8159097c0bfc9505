use std::{fs, os::unix::fs::PermissionsExt};

use super::*;

const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn write_kek(dir: &Path, content: &str, mode: u32) -> PathBuf {
    let path = dir.join("kek");
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn a_kek_file_with_or_without_a_newline_loads_to_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = Kek::load(&KekSource::File(write_kek(dir.path(), HEX, 0o600))).unwrap();
    let b = Kek::load(&KekSource::File(write_kek(
        dir.path(),
        &format!("{HEX}\n"),
        0o400,
    )))
    .unwrap();
    let c = Kek::load(&KekSource::File(write_kek(
        dir.path(),
        &format!("{}\r\n", HEX.to_uppercase()),
        0o600,
    )))
    .unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.fingerprint(), c.fingerprint());
    assert_eq!(a.fingerprint().len(), 16);
}

#[test]
fn a_kek_file_readable_by_group_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o640, 0o604, 0o644] {
        let path = write_kek(dir.path(), HEX, mode);
        let err = Kek::load(&KekSource::File(path.clone())).unwrap_err();
        assert!(matches!(err, AtRestError::KekPermissions { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
    }
}

#[test]
fn malformed_kek_content_is_refused_naming_the_file_and_the_form() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        "",
        &HEX[..62],
        &format!("{HEX}00"),
        &format!("{HEX}\n\n"),
        &format!(" {HEX}"),
        &HEX.replace('0', "g"),
    ];
    for content in bad {
        let path = write_kek(dir.path(), content, 0o600);
        let err = Kek::load(&KekSource::File(path.clone())).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("64 hex characters"), "{msg}");
    }
}

#[test]
fn a_missing_kek_file_is_named() {
    let err = Kek::load(&KekSource::File("/nonexistent/kek".into())).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/kek"), "{err}");
}

#[test]
fn generate_creates_a_private_file_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.kek");
    let kek = Kek::generate(&path).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let loaded = Kek::load(&KekSource::File(path.clone())).unwrap();
    assert_eq!(kek.fingerprint(), loaded.fingerprint());
    let before = fs::read(&path).unwrap();
    let err = Kek::generate(&path).unwrap_err();
    assert!(matches!(err, AtRestError::KekCreate { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_ne!(
        Kek::generate(&dir.path().join("other"))
            .unwrap()
            .fingerprint(),
        kek.fingerprint()
    );
}

#[test]
fn a_credential_is_read_from_the_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("exchange-kek"), format!("{HEX}\n")).unwrap();
    let source = KekSource::Credential("exchange-kek".into());
    let kek = Kek::load_credential(
        Some(dir.path().into()),
        "exchange-kek",
        &source,
        Suite::Aes256Gcm,
    )
    .unwrap();
    let file = Kek::load(&KekSource::File(write_kek(dir.path(), HEX, 0o600))).unwrap();
    assert_eq!(kek.fingerprint(), file.fingerprint());
}

#[test]
fn a_credential_without_credentials_directory_names_the_variable() {
    let source = KekSource::Credential("exchange-kek".into());
    let err = Kek::load_credential(None, "exchange-kek", &source, Suite::Aes256Gcm).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("$CREDENTIALS_DIRECTORY") && msg.contains("exchange-kek"),
        "{msg}"
    );
    let dir = tempfile::tempdir().unwrap();
    let err = Kek::load_credential(Some(dir.path().into()), "absent", &source, Suite::Aes256Gcm)
        .unwrap_err();
    assert!(err.to_string().contains("absent"), "{err}");
    for name in ["../kek", "", "..", "a/b"] {
        let err = Kek::load_credential(Some(dir.path().into()), name, &source, Suite::Aes256Gcm)
            .unwrap_err();
        assert!(
            matches!(err, AtRestError::BadCredentialName { .. }),
            "{name}: {err}"
        );
    }
}

#[test]
fn debug_shows_the_fingerprint_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let kek = Kek::load(&KekSource::File(write_kek(dir.path(), HEX, 0o600))).unwrap();
    let debug = format!("{kek:?}");
    assert!(debug.contains(kek.fingerprint()), "{debug}");
    assert!(!debug.contains(&HEX[..16]), "{debug}");
    assert!(!debug.contains("0, 1, 2, 3"), "{debug}");
}

#[test]
fn a_wrapped_key_opens_only_under_its_kek_and_id() {
    for suite in crate::atrest::keys::test_suites() {
        let (a, b) = (test_kek_for(suite, 1), test_kek_for(suite, 2));
        let dek = Dek([9; KEY_LEN]);
        let wrapped = a.wrap(7, &dek).unwrap();
        assert_eq!(a.unwrap(7, &wrapped).unwrap().unwrap().0, dek.0);
        assert!(a.unwrap(8, &wrapped).unwrap().is_none(), "bound to its id");
        assert!(b.unwrap(7, &wrapped).unwrap().is_none(), "bound to its KEK");
        assert!(a.unwrap(7, &wrapped[1..]).unwrap().is_none(), "a short one");
        for i in 0..WRAPPED_LEN {
            let mut bad = wrapped;
            bad[i] ^= 0x01;
            assert!(a.unwrap(7, &bad).unwrap().is_none(), "{suite} byte {i}");
        }
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}

#[test]
fn the_international_fingerprint_is_a_sha256_over_label_and_key() {
    let kek = test_kek(1);
    let hash = ring::digest::digest(
        &ring::digest::SHA256,
        &[FINGERPRINT_LABEL, &[1u8; KEY_LEN][..]].concat(),
    );
    assert_eq!(kek.fingerprint(), hex::encode(&hash.as_ref()[..8]));
    assert_eq!(kek.suite(), Suite::Aes256Gcm);
}

#[cfg(feature = "shangmi")]
#[test]
fn under_shangmi_the_fingerprint_is_an_sm3_and_the_wrapping_key_another() {
    let (aes, sm) = (test_kek(1), test_kek_for(Suite::Sm4Gcm, 1));
    let hash = crate::crypto::sm::sm3(&[FINGERPRINT_LABEL, &[1u8; KEY_LEN][..]].concat()).unwrap();
    assert_eq!(sm.fingerprint(), hex::encode(&hash[..8]));
    assert_ne!(sm.fingerprint(), aes.fingerprint());
    assert_eq!(sm.suite(), Suite::Sm4Gcm);
    // A key wrapped under one suite does not unwrap under the other, though the KEK is the same.
    let dek = Dek([9; KEY_LEN]);
    let wrapped = sm.wrap(1, &dek).unwrap();
    assert!(aes.unwrap(1, &wrapped).unwrap().is_none());
    assert!(sm.unwrap(1, &aes.wrap(1, &dek).unwrap()).unwrap().is_none());
    assert_eq!(sm.unwrap(1, &wrapped).unwrap().unwrap().0, dek.0);
}
