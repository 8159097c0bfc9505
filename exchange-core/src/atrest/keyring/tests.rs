use std::{fs, os::unix::fs::PermissionsExt, path::PathBuf};

use super::*;
use crate::atrest::kek::test_kek;

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
    let sealed = keys.seal(b"slot", b"record");
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
        .seal(b"s", b"v");
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
        .seal(b"s", b"old");
    assert_eq!(Keyring::add_data_key(&path, &kek).unwrap(), 2);
    let keys = Keyring::open(&path, &kek).unwrap();
    assert_eq!((keys.current_key_id(), keys.key_ids()), (2, vec![1, 2]));
    assert_eq!(keys.open(b"s", &old).unwrap(), b"old");
    let new = keys.seal(b"s", b"new");
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
