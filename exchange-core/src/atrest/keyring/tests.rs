use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use super::*;
use crate::atrest::{
    golden::*,
    kek::{test_kek, test_kek_for},
    keys::test_suites,
};

fn ring_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(Keyring::FILE_NAME)
}

#[test]
fn a_new_ring_is_created_private_and_reopens_to_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    let kek = test_kek(1);
    let keys = Keyring::open_or_create(&path, &kek).unwrap();
    assert_eq!(keys.key_ids(), vec![1]);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let sealed = keys.seal(b"slot", b"record").unwrap();
    let again = Keyring::open_or_create(&path, &kek).unwrap();
    assert_eq!(again.open(b"slot", &sealed).unwrap(), b"record");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(kek.fingerprint()) && text.contains("exchange-keyring"));
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left behind");
}

#[test]
fn a_wrong_kek_is_refused_naming_ring_and_kek_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    Keyring::open_or_create(&path, &test_kek(1)).unwrap();
    let before = fs::read(&path).unwrap();
    let wrong = test_kek(2);
    for result in [
        Keyring::open_or_create(&path, &wrong).map(|_| ()),
        Keyring::open(&path, &wrong).map(|_| ()),
        Keyring::check(&path, &wrong).map(|_| ()),
        Keyring::add_data_key(&path, &wrong).map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, AtRestError::WrongKek { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains("test.kek") && msg.contains(wrong.fingerprint()),
            "{msg}"
        );
    }
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn an_altered_wrapped_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    let kek = test_kek(1);
    Keyring::open_or_create(&path, &kek).unwrap();
    let mut ring: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let wrapped = ring["keys"][0]["wrapped"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        &wrapped[..40],
        if &wrapped[40..41] == "0" { "1" } else { "0" }
    );
    ring["keys"][0]["wrapped"] = format!("{flipped}{}", &wrapped[41..]).into();
    fs::write(&path, serde_json::to_vec(&ring).unwrap()).unwrap();
    let err = Keyring::open(&path, &kek).unwrap_err();
    assert!(
        err.to_string().contains("data key 1 does not unwrap"),
        "{err}"
    );
}

#[test]
fn rewrap_moves_the_ring_to_the_new_kek_and_keeps_the_data_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    let (old, new) = (test_kek(1), test_kek(2));
    let sealed = Keyring::open_or_create(&path, &old)
        .unwrap()
        .seal(b"s", b"v")
        .unwrap();
    let done = Keyring::rewrap(&path, &old, &new).unwrap();
    assert_eq!(done.old_fingerprint, old.fingerprint());
    assert_eq!(done.new_fingerprint, new.fingerprint());
    assert_eq!((done.key_ids, done.already_done), (vec![1], false));
    let keys = Keyring::open(&path, &new).unwrap();
    assert_eq!(keys.open(b"s", &sealed).unwrap(), b"v");
    assert!(matches!(
        Keyring::open(&path, &old),
        Err(AtRestError::WrongKek { .. })
    ));
    // A re-run (say after a crash right after the rename) is harmless.
    let before = fs::read(&path).unwrap();
    assert!(Keyring::rewrap(&path, &old, &new).unwrap().already_done);
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn rewrap_with_a_wrong_old_kek_or_the_same_kek_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    Keyring::open_or_create(&path, &test_kek(1)).unwrap();
    let before = fs::read(&path).unwrap();
    let err = Keyring::rewrap(&path, &test_kek(3), &test_kek(2)).unwrap_err();
    assert!(matches!(err, AtRestError::WrongKek { .. }), "{err}");
    let err = Keyring::rewrap(&path, &test_kek(1), &test_kek(1)).unwrap_err();
    assert!(matches!(err, AtRestError::SameKek { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn check_and_open_never_create_a_ring() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    let err = Keyring::check(&path, &test_kek(1)).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(Keyring::open(&path, &test_kek(1)).is_err());
    assert!(!path.exists());
    Keyring::open_or_create(&path, &test_kek(1)).unwrap();
    let summary = Keyring::check(&path, &test_kek(1)).unwrap();
    assert_eq!((summary.current, summary.key_ids), (1, vec![1]));
}

#[test]
fn a_new_data_key_becomes_current_and_old_values_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    let kek = test_kek(1);
    let old = Keyring::open_or_create(&path, &kek)
        .unwrap()
        .seal(b"s", b"old")
        .unwrap();
    assert_eq!(Keyring::add_data_key(&path, &kek).unwrap(), 2);
    let keys = Keyring::open(&path, &kek).unwrap();
    assert_eq!((keys.current_key_id(), keys.key_ids()), (2, vec![1, 2]));
    assert_eq!(keys.open(b"s", &old).unwrap(), b"old");
    let new = keys.seal(b"s", b"new").unwrap();
    assert_eq!(new[5..9], 2u32.to_be_bytes());
    let first_only = Keyring::open(&path, &kek).unwrap();
    assert_eq!(first_only.open(b"s", &new).unwrap(), b"new");
}

#[test]
fn a_malformed_ring_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    for text in [
        "",
        "{}",
        r#"{"format":"x","version":1,"kek_fingerprint":"","current":1,"keys":[]}"#,
    ] {
        fs::write(&path, text).unwrap();
        let err = Keyring::open_or_create(&path, &test_kek(1)).unwrap_err();
        assert!(matches!(err, AtRestError::KeyringFormat { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "left as it was");
    }
}

#[test]
fn a_version_1_ring_still_opens_and_new_international_rings_keep_its_form() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    fs::write(&path, V1_KEYRING).unwrap();
    let kek = test_kek(1);
    assert_eq!(kek.fingerprint(), "ea24a068283c992c");
    let keys = Keyring::open(&path, &kek).unwrap();
    assert_eq!(keys.suite(), Suite::Aes256Gcm);
    let golden = hex::decode(V1_AES_VALUE).unwrap();
    assert_eq!(
        keys.open(GOLDEN_SLOT, &golden).unwrap(),
        b"golden record v1"
    );
    // Rewrapped and back: the same fields in the same order, only the nonce and tag differ.
    Keyring::rewrap(&path, &kek, &test_kek(2)).unwrap();
    Keyring::rewrap(&path, &test_kek(2), &kek).unwrap();
    let again = fs::read_to_string(&path).unwrap();
    let (old, new) = (V1_KEYRING.lines(), again.lines());
    for (a, b) in old.zip(new) {
        if !a.contains("\"wrapped\"") {
            assert_eq!(a, b);
        }
    }
    assert_eq!(again.len(), V1_KEYRING.len());
}

#[test]
fn a_ring_names_its_suite_and_opens_only_for_that_suite() {
    for suite in test_suites() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let kek = test_kek_for(suite, 1);
        let keys = Keyring::open_or_create(&path, &kek).unwrap();
        assert_eq!(keys.suite(), suite);
        let sealed = keys.seal(b"s", b"v").unwrap();
        let ring: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        match suite {
            Suite::Aes256Gcm => {
                assert_eq!(ring["version"], 1);
                assert!(ring.get("suite").is_none(), "{ring}");
            }
            _ => {
                assert_eq!(ring["version"], 2);
                assert_eq!(ring["suite"], suite.name());
            }
        }
        let reopened = Keyring::open(&path, &kek).unwrap();
        assert_eq!(reopened.open(b"s", &sealed).unwrap(), b"v");
        assert_eq!(Keyring::check(&path, &kek).unwrap().suite, suite);
        // Rotation keeps the suite.
        let new = test_kek_for(suite, 2);
        Keyring::rewrap(&path, &kek, &new).unwrap();
        assert_eq!(Keyring::open(&path, &new).unwrap().suite(), suite);
        assert_eq!(Keyring::add_data_key(&path, &new).unwrap(), 2);
        assert_eq!(Keyring::open(&path, &new).unwrap().suite(), suite);
    }
}

/// The error of a ring of one suite opened for the other names the ring and both suites.
fn assert_names_both(err: AtRestError, path: &Path) {
    let msg = err.to_string();
    assert!(matches!(err, AtRestError::KeyringSuite { .. }), "{msg}");
    for name in ["aes-256-gcm", "international", "sm4-gcm", "shangmi"] {
        assert!(msg.contains(name), "{name} in {msg}");
    }
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn a_shangmi_ring_is_refused_by_an_international_kek_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    let mut ring: serde_json::Value = serde_json::from_str(V1_KEYRING).unwrap();
    ring["version"] = 2.into();
    ring["suite"] = "sm4-gcm/hkdf-sm3".into();
    let text = ring.to_string();
    fs::write(&path, &text).unwrap();
    let kek = test_kek(1);
    for result in [
        Keyring::open_or_create(&path, &kek).map(|_| ()),
        Keyring::open(&path, &kek).map(|_| ()),
        Keyring::add_data_key(&path, &kek).map(|_| ()),
        Keyring::rewrap(&path, &kek, &test_kek(2)).map(|_| ()),
    ] {
        assert_names_both(result.unwrap_err(), &path);
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), text, "nothing changed");
}

#[cfg(feature = "shangmi")]
#[test]
fn an_international_ring_is_refused_by_a_shangmi_kek_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    fs::write(&path, V1_KEYRING).unwrap();
    let sm = test_kek_for(Suite::Sm4Gcm, 1);
    for result in [
        Keyring::open_or_create(&path, &sm).map(|_| ()),
        Keyring::open(&path, &sm).map(|_| ()),
        Keyring::add_data_key(&path, &sm).map(|_| ()),
        Keyring::rewrap(&path, &sm, &test_kek_for(Suite::Sm4Gcm, 2)).map(|_| ()),
    ] {
        assert_names_both(result.unwrap_err(), &path);
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), V1_KEYRING);
}

#[test]
fn version_and_suite_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_path(&dir);
    let ring = |version: u32, suite: Option<&str>| {
        let mut v: serde_json::Value = serde_json::from_str(V1_KEYRING).unwrap();
        v["version"] = version.into();
        if let Some(s) = suite {
            v["suite"] = s.into();
        }
        v.to_string()
    };
    for (text, why) in [
        (
            ring(1, Some("sm4-gcm/hkdf-sm3")),
            "version 1 ring has no suite",
        ),
        (ring(2, None), "must name its suite"),
        (ring(2, Some("chacha")), "unknown suite \"chacha\""),
        (ring(3, None), "version 3"),
    ] {
        fs::write(&path, &text).unwrap();
        let err = Keyring::open(&path, &test_kek(1)).unwrap_err();
        assert!(matches!(err, AtRestError::KeyringFormat { .. }), "{err}");
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    // Version 2 may name the international suite too (this build writes version 1 for it).
    fs::write(&path, ring(2, Some("aes-256-gcm/hkdf-sha256"))).unwrap();
    assert_eq!(
        Keyring::open(&path, &test_kek(1)).unwrap().suite(),
        Suite::Aes256Gcm
    );
}

#[test]
fn a_ring_kept_as_bytes_opens_rewraps_and_compares_like_a_file() {
    let label = Path::new("postgresql://exchange@db/exchange#settings/keyring");
    let (old, new) = (test_kek(1), test_kek(2));
    let (bytes, keys) = Keyring::create_bytes(label, &old).unwrap();
    let opened = Keyring::open_bytes(label, &bytes, &old).unwrap();
    assert!(Keyring::same_keys(&keys, &opened));
    let e = Keyring::open_bytes(label, &bytes, &new)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(label.to_str().unwrap()),
        "names where the ring is: {e}"
    );
    assert!(
        e.contains(old.fingerprint()) && e.contains(new.fingerprint()),
        "names both fingerprints: {e}"
    );

    let (rewrapped, done) = Keyring::rewrap_bytes(label, &bytes, &old, &new).unwrap();
    let rewrapped = rewrapped.expect("the ring changes");
    assert!(!done.already_done && done.key_ids == vec![1]);
    assert!(Keyring::same_keys(
        &keys,
        &Keyring::open_bytes(label, &rewrapped, &new).unwrap()
    ));
    let (again, done) = Keyring::rewrap_bytes(label, &rewrapped, &old, &new).unwrap();
    assert!(
        again.is_none() && done.already_done,
        "a second run changes nothing"
    );

    let (_, other) = Keyring::create_bytes(label, &old).unwrap();
    assert!(
        !Keyring::same_keys(&keys, &other),
        "another ring's keys differ"
    );
}
