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
    open_as(data, Profile::International, section, create)
}

fn open_as(
    data: &Path,
    profile: Profile,
    section: Option<&EncryptionSection>,
    create: bool,
) -> Result<Store, KeysError> {
    open_store(&data.join("t.redb"), "test", 1, profile, section, create)
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

#[test]
fn an_international_store_keeps_format_1_and_the_keys_open_what_it_sealed() {
    let (_dir, data, section) = setup();
    let store = open(&data, Some(&section), true).unwrap();
    let sealer = store.sealer().clone();
    let sealed = sealer.seal(b"t\0k", b"record".to_vec()).unwrap();
    assert_eq!(sealed[4], 1, "format byte 1: aes-256-gcm");
    drop(store);
    let keys = data_keys(&data, Profile::International, Some(&section))
        .unwrap()
        .unwrap();
    assert_eq!(keys.suite(), Suite::Aes256Gcm);
    assert_eq!(
        &*Sealer::new(Some(keys))
            .open("t/k", b"t\0k", &sealed)
            .unwrap(),
        b"record"
    );
}

#[cfg(feature = "shangmi")]
mod shangmi {
    use super::*;

    #[test]
    fn a_shangmi_store_seals_with_sm4_and_rotates_its_kek() {
        let (dir, data, section) = setup();
        let store = open_as(&data, Profile::Shangmi, Some(&section), true).unwrap();
        let sealed = store.sealer().seal(b"t\0k", b"record".to_vec()).unwrap();
        assert_eq!(sealed[4], 2, "format byte 2: sm4-gcm/hkdf-sm3");
        drop(store);
        let ring = std::fs::read_to_string(data.join(Keyring::FILE_NAME)).unwrap();
        assert!(ring.contains("\"suite\": \"sm4-gcm/hkdf-sm3\""), "{ring}");

        let new = dir.path().join("new.kek");
        Kek::generate(&new).unwrap();
        let done = rotate_kek(&data, Profile::Shangmi, Some(&section), &new).unwrap();
        assert!(!done.already_done);
        let sm_new = Kek::load_for(&KekSource::File(new.clone()), Suite::Sm4Gcm).unwrap();
        assert_eq!(
            done.new_fingerprint,
            sm_new.fingerprint(),
            "an SM3 fingerprint"
        );
        let rotated = EncryptionSection {
            kek: Some(new),
            kek_credential: None,
        };
        let store = open_as(&data, Profile::Shangmi, Some(&rotated), true).unwrap();
        assert_eq!(
            &*store.sealer().open("t/k", b"t\0k", &sealed).unwrap(),
            b"record"
        );
    }

    #[test]
    fn a_store_of_one_profile_is_refused_by_the_other_naming_both() {
        for (made, other) in [
            (Profile::International, Profile::Shangmi),
            (Profile::Shangmi, Profile::International),
        ] {
            let (dir, data, section) = setup();
            drop(open_as(&data, made, Some(&section), true).unwrap());
            let before = std::fs::read(data.join(Keyring::FILE_NAME)).unwrap();
            let new = dir.path().join("new.kek");
            Kek::generate(&new).unwrap();
            let errors = [
                open_as(&data, other, Some(&section), true).map(|_| ()),
                open_as(&data, other, Some(&section), false).map(|_| ()),
                data_keys(&data, other, Some(&section)).map(|_| ()),
                rotate_kek(&data, other, Some(&section), &new).map(|_| ()),
            ];
            for err in errors {
                let msg = err.unwrap_err().to_string();
                for name in [
                    made.name(),
                    other.name(),
                    "sm4-gcm",
                    "aes-256-gcm",
                    "keyring.json",
                ] {
                    assert!(msg.contains(name), "{name} in {msg}");
                }
            }
            let after = std::fs::read(data.join(Keyring::FILE_NAME)).unwrap();
            assert_eq!(before, after, "nothing changed");
        }
    }
}
