//! The key ring of a store in PostgreSQL, shared by every hub on the database: the wrapped ring
//! (the bytes of a `keyring.json`) is the row [`KEYRING`] of the `settings` table, so that a hub
//! started with an empty data directory and the same KEK opens everything the others sealed.
//! Each hub holds only the KEK (`[encryption]`, as for a redb store).
//!
//! - **First open** of an empty database with encryption on: the ring is made and inserted in
//!   one `SERIALIZABLE` transaction that inserts only if no ring is there; of two hubs starting
//!   at once, the second finds the first's ring and uses it.
//! - **A `keyring.json` in the data directory** (a hub that kept its ring in files before): at
//!   the first open of a database without a ring it is checked against the KEK and moved into
//!   the database; once the database holds a ring, a `keyring.json` beside the hub must hold the
//!   same data keys (it is a copy), and is then renamed [`MOVED`] so that it is never mistaken
//!   for the store's ring again. A ring with other keys, or one the KEK does not open, is refused
//!   ([`KeysError::KeyringConflict`]): the database's ring is the store's.
//! - **KEK rotation** ([`rotate_kek_postgres`]) reads, rewraps and replaces the row in one
//!   transaction: every hub reads the new ring at its next start, and the ones running keep the
//!   data keys they hold.

use std::path::{Path, PathBuf};

use crate::{
    atrest::{DataKeys, Kek, KekSource, Keyring, Rewrapped, Suite},
    config::EncryptionSection,
    crypto::Profile,
    store::{
        SETTINGS, Store, StoreError,
        kv::{
            ReadTables, WriteTables,
            postgres::{PgTarget, blocking},
        },
    },
};

use super::{ENCRYPTED, KeysError, Sealer};

/// The `settings` row that holds the wrapped key ring.
pub const KEYRING: &str = "keyring";

/// What a data directory's `keyring.json` is renamed to once the database holds the ring.
pub const MOVED: &str = "keyring.json.in-database";

/// How errors name the ring in the database `target`.
pub fn ring_label(target: &PgTarget) -> PathBuf {
    PathBuf::from(format!("{}#settings/{KEYRING}", target.shown()))
}

/// Opens the `kind` store of schema `version` in `target` with the key ring in the database
/// (see the module docs; `dir` is the hub's data directory).
pub(super) fn open(
    target: &PgTarget,
    (kind, version): (&'static str, u64),
    dir: &Path,
    profile: Profile,
    section: Option<&EncryptionSection>,
    create: bool,
) -> Result<Store, KeysError> {
    let file = dir.join(Keyring::FILE_NAME);
    let label = ring_label(target);
    // The KEK is loaded before the database is touched: a bad key file changes nothing.
    let kek = match section {
        Some(s) => Some(Kek::load_for(&s.source()?, Suite::for_profile(profile))?),
        None => None,
    };
    let store = Store::open_postgres(target, kind, version)?;
    let stored = setting(target, KEYRING)?;
    let marked = store.flag(ENCRYPTED)?;
    let Some(kek) = kek else {
        if stored.is_some() || file.exists() {
            let keyring = if stored.is_some() { label } else { file };
            return Err(KeysError::NotConfigured {
                dir: dir.to_owned(),
                keyring,
            });
        }
        if marked {
            return Err(KeysError::EncryptionMissing {
                store: store.path().to_owned(),
            });
        }
        return Ok(store);
    };
    let keys = match stored {
        Some(bytes) => Some(Keyring::open_bytes(&label, &bytes, &kek)?),
        None => {
            let made = if file.exists() {
                let bytes = std::fs::read(&file).map_err(|source| {
                    crate::atrest::AtRestError::KeyringIo {
                        path: file.clone(),
                        source,
                    }
                })?;
                let keys = Keyring::open(&file, &kek)?;
                Some((bytes, keys))
            } else if marked {
                return Err(KeysError::KeyringMissing {
                    keyring: label,
                    store: store.path().to_owned(),
                });
            } else if create {
                Some(Keyring::create_bytes(&label, &kek)?)
            } else {
                None // never started with encryption on: nothing is sealed yet
            };
            match made {
                None => None,
                Some((bytes, keys)) => {
                    let kept = put_setting_if_absent(target, KEYRING, &bytes)?;
                    if kept == bytes {
                        tracing::info!(database = %target.shown(), "key ring stored in the database");
                        Some(keys)
                    } else {
                        // Another hub stored its ring first: that one is the store's.
                        Some(Keyring::open_bytes(&label, &kept, &kek)?)
                    }
                }
            }
        }
    };
    if let Some(keys) = &keys {
        adopt_file(&file, &label, &kek, keys)?;
        if !marked {
            store.set_flag(ENCRYPTED)?;
        }
    }
    Ok(store.with_sealer(Sealer::new(keys)))
}

/// A `keyring.json` beside a hub whose ring is in the database: a copy of the same keys is
/// renamed [`MOVED`]; anything else is refused (see the module docs).
fn adopt_file(file: &Path, label: &Path, kek: &Kek, keys: &DataKeys) -> Result<(), KeysError> {
    if !file.exists() {
        return Ok(());
    }
    let conflict = |reason: String| KeysError::KeyringConflict {
        file: file.to_owned(),
        database: label.display().to_string(),
        reason,
    };
    let local = Keyring::open(file, kek).map_err(|e| conflict(e.to_string()))?;
    if !Keyring::same_keys(&local, keys) {
        return Err(conflict("it holds other data keys".into()));
    }
    let moved = file.with_file_name(MOVED);
    std::fs::rename(file, &moved)
        .and_then(|()| {
            std::fs::File::open(file.parent().unwrap_or_else(|| Path::new(".")))?.sync_all()
        })
        .map_err(|e| conflict(format!("renaming it to {}: {e}", moved.display())))?;
    tracing::info!(
        file = %file.display(),
        moved = %moved.display(),
        "the key ring is kept in the database: the data directory's copy is set aside"
    );
    Ok(())
}

/// KEK rotation of a store in PostgreSQL: the ring in the database is read, rewrapped from the
/// configured KEK to the one in `new` and replaced in one transaction (a crash leaves the old
/// ring or the new). A database without a ring yet: a `keyring.json` waiting in `dir` to be
/// moved in is rewrapped in place; otherwise a ring is made under the new key.
pub fn rotate_kek_postgres(
    target: &PgTarget,
    (kind, version): (&'static str, u64),
    dir: &Path,
    profile: Profile,
    section: Option<&EncryptionSection>,
    new: &Path,
) -> Result<Rewrapped, KeysError> {
    let Some(section) = section else {
        return Err(KeysError::NotEncrypted {
            dir: dir.to_owned(),
        });
    };
    let suite = Suite::for_profile(profile);
    let old = Kek::load_for(&section.source()?, suite)?;
    let new = Kek::load_for(&KekSource::File(new.to_owned()), suite)?;
    drop(Store::open_postgres(target, kind, version)?); // the schema is this build's
    let label = ring_label(target);
    let rewrapped = blocking(|| {
        retried(|| -> Result<Option<Rewrapped>, KeysError> {
            let mut conn = target.connect()?;
            let txn = conn.begin()?;
            let Some(bytes) = txn.get(SETTINGS, KEYRING.as_bytes())? else {
                return Ok(None);
            };
            let (replacement, done) = Keyring::rewrap_bytes(&label, &bytes, &old, &new)?;
            if let Some(r) = replacement {
                txn.put(SETTINGS, KEYRING.as_bytes(), &r)?;
            }
            txn.commit()?;
            Ok(Some(done))
        })
    })?;
    if let Some(done) = rewrapped {
        return Ok(done);
    }
    let file = dir.join(Keyring::FILE_NAME);
    if file.exists() {
        return Ok(Keyring::rewrap(&file, &old, &new)?);
    }
    let (bytes, _) = Keyring::create_bytes(&label, &new)?;
    let kept = put_setting_if_absent(target, KEYRING, &bytes)?;
    let keys = Keyring::open_bytes(&label, &kept, &new)?;
    Ok(Rewrapped {
        old_fingerprint: old.fingerprint().to_owned(),
        new_fingerprint: new.fingerprint().to_owned(),
        key_ids: if kept == bytes {
            Vec::new()
        } else {
            keys.key_ids()
        },
        already_done: kept != bytes,
    })
}

/// The wrapped key ring in the database `target`, if it holds one (a backup writes it out as
/// the copy's `keyring.json`).
pub fn stored_ring(target: &PgTarget) -> Result<Option<Vec<u8>>, StoreError> {
    setting(target, KEYRING)
}

/// The value of setting `name`.
fn setting(target: &PgTarget, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    blocking(|| {
        let mut conn = target.connect()?;
        let txn = conn.begin_read()?;
        let v = txn.get(SETTINGS, name.as_bytes())?;
        txn.commit()?;
        Ok(v)
    })
}

/// Stores `value` as setting `name` unless one is there; returns the value kept.
fn put_setting_if_absent(
    target: &PgTarget,
    name: &str,
    value: &[u8],
) -> Result<Vec<u8>, StoreError> {
    blocking(|| {
        retried(|| {
            let mut conn = target.connect()?;
            let txn = conn.begin()?;
            if let Some(v) = txn.get(SETTINGS, name.as_bytes())? {
                return Ok(v);
            }
            txn.put(SETTINGS, name.as_bytes(), value)?;
            txn.commit()?;
            Ok(value.to_vec())
        })
    })
}

/// Runs `f` again while it fails with a collision with another hub's transaction (up to ten
/// times): two hubs starting at once both try to store the first ring.
fn retried<T, E: AsStore>(mut f: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(e) if attempt < 10 && e.retryable() => attempt += 1,
            r => return r,
        }
    }
}

/// Whether an error is a collision worth retrying.
trait AsStore {
    fn retryable(&self) -> bool;
}

impl AsStore for StoreError {
    fn retryable(&self) -> bool {
        self.is_retryable()
    }
}

impl AsStore for KeysError {
    fn retryable(&self) -> bool {
        matches!(self, KeysError::Store(e) if e.is_retryable())
    }
}
