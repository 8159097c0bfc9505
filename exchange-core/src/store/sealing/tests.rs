//! Opening a store with its key ring: a store that has held sealed data never gets new keys
//! (or none) in place of lost ones.

use std::path::{Path, PathBuf};

use super::*;

/// A data directory with a KEK file beside it and the `[encryption]` naming that file.
fn setup() -> (tempfile::TempDir, PathBuf, EncryptionSection) {
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek.key");
    Kek::generate(&kek).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let section = EncryptionSection {
        kek: Some(kek),
        kek_credential: None,
    };
    (dir, data, section)
}

fn open(
    data: &Path,
    section: Option<&EncryptionSection>,
    create: bool,
) -> Result<Store, KeysError> {
    open_store(&data.join("t.redb"), "test", 1, section, create)
}

#[test]
fn a_new_store_gets_a_key_ring_and_is_marked_encrypted() {
    let (_dir, data, section) = setup();
    let store = open(&data, Some(&section), true).unwrap();
    assert!(store.sealer().keys().is_some());
    assert!(store.flag(ENCRYPTED).unwrap());
    drop(store);
    assert!(data.join(Keyring::FILE_NAME).exists());
    let again = open(&data, Some(&section), true).unwrap();
    assert!(again.sealer().keys().is_some(), "the same ring opens again");
}

#[test]
fn an_encrypted_store_whose_key_ring_is_gone_is_refused_and_none_is_made() {
    let (_dir, data, section) = setup();
    drop(open(&data, Some(&section), true).unwrap());
    let ring = data.join(Keyring::FILE_NAME);
    std::fs::remove_file(&ring).unwrap();
    for create in [true, false] {
        let err = open(&data, Some(&section), create).unwrap_err();
        assert!(matches!(err, KeysError::KeyringMissing { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&ring.display().to_string()) && msg.contains("restore"),
            "{msg}"
        );
        assert!(!ring.exists(), "no new key ring");
    }
}

#[test]
fn an_encrypted_store_without_encryption_configured_is_refused() {
    let (_dir, data, section) = setup();
    drop(open(&data, Some(&section), true).unwrap());
    // With the ring there, as before: the ring names the directory as encrypted.
    let err = open(&data, None, true).unwrap_err();
    assert!(matches!(err, KeysError::NotConfigured { .. }), "{err}");
    // With the ring gone too, the store's mark still does.
    std::fs::remove_file(data.join(Keyring::FILE_NAME)).unwrap();
    let err = open(&data, None, true).unwrap_err();
    assert!(matches!(err, KeysError::EncryptionMissing { .. }), "{err}");
    assert!(err.to_string().contains("[encryption]"), "{err}");
}

#[test]
fn a_plaintext_store_can_turn_encryption_on_later() {
    let (_dir, data, section) = setup();
    let plain = open(&data, None, true).unwrap();
    assert!(plain.sealer().keys().is_none());
    assert!(!plain.flag(ENCRYPTED).unwrap());
    drop(plain);
    // A tool that opens the stopped store makes no ring.
    let tool = open(&data, Some(&section), false).unwrap();
    assert!(tool.sealer().keys().is_none());
    drop(tool);
    assert!(!data.join(Keyring::FILE_NAME).exists());
    // The daemon's start does, and marks the store.
    let on = open(&data, Some(&section), true).unwrap();
    assert!(on.sealer().keys().is_some());
    assert!(on.flag(ENCRYPTED).unwrap());
}
