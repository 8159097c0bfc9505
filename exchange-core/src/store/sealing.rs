//! Values that hold document content (the signed document with its title, inline content) are
//! sealed before they are written and opened when read: [`Sealer`], which every [`Store`]
//! carries. With encryption off it passes bytes through, so the same code serves both.
//!
//! A sealed value's AAD is its slot (table and key), so a value copied into another record does
//! not open there. A value written before encryption was turned on (plaintext) is still read;
//! docs/security.md says what that means.
//!
//! [`open_store`] opens a store with the key ring beside it as `[encryption]` asks, for the
//! daemons and the commands that open a stopped daemon's store; [`data_keys`] only unwraps the
//! ring (check-config, tests). A store once opened with encryption on is marked so in its META
//! table, and from then on refuses to open without its key ring or without `[encryption]`.
//!
//! Every function here takes the exchange's [`Profile`] (`[crypto] profile`) and leaves the
//! choice of algorithms to [`Suite::for_profile`]: a new key ring gets the profile's suite
//! (AES-256-GCM under international, SM4-GCM and SM3 under shangmi), and a ring of the other
//! suite is refused with an error naming both. Hub and node pass their config and never branch
//! on the profile themselves.

use std::{borrow::Cow, path::Path};

use crate::{
    atrest::{AtRestError, DataKeys, Kek, KekSource, Keyring, Rewrapped, Suite},
    config::EncryptionSection,
    crypto::Profile,
};

use super::{Store, StoreError};

/// Seals and opens stored values with the store's data keys, if it has any.
#[derive(Clone, Default)]
pub struct Sealer {
    keys: Option<DataKeys>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("on", &self.keys.is_some())
            .finish()
    }
}

/// The AAD of a value: its table and key, so that it opens only where it was written.
pub fn slot(table: &str, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(table.len() + 1 + key.len());
    aad.extend_from_slice(table.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key);
    aad
}

impl Sealer {
    /// A sealer with `keys` (`None`: encryption off, values pass through).
    pub fn new(keys: Option<DataKeys>) -> Self {
        Sealer { keys }
    }

    /// The data keys, when encryption is on (blobs use them too).
    pub fn keys(&self) -> Option<&DataKeys> {
        self.keys.as_ref()
    }

    /// `plain` as it is to be stored in `slot`: sealed when encryption is on. Fails only when
    /// the random source or the cipher library fails; nothing is then written.
    pub fn seal(&self, slot: &[u8], plain: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        match &self.keys {
            Some(k) => k.seal(slot, &plain).map_err(StoreError::Seal),
            None => Ok(plain),
        }
    }

    /// The plaintext of a value read from `slot`. `what` names the record in errors: a value
    /// that does not authenticate, or a sealed value with encryption off.
    pub fn open<'a>(
        &self,
        what: &str,
        slot: &[u8],
        stored: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, StoreError> {
        if !DataKeys::is_sealed(stored) {
            return Ok(Cow::Borrowed(stored)); // in clear: encryption off, or written before it
        }
        let keys = self.keys.as_ref().ok_or_else(|| {
            StoreError::decode(
                what,
                "it is encrypted, and no key is configured ([encryption] kek)",
            )
        })?;
        keys.open(slot, stored)
            .map(Cow::Owned)
            .map_err(|e| StoreError::decode(what, e))
    }
}

impl Store {
    /// Gives the store its sealer (the data keys of its directory); set once, at open.
    pub fn with_sealer(mut self, sealer: Sealer) -> Self {
        self.sealer = sealer;
        self
    }

    /// Seals and opens this store's content-bearing values.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Whether the store is in a database server (PostgreSQL) rather than a redb file: its
    /// content blobs ([`crate::blob`]) and key ring ([`database`]) are then in the database too.
    pub fn is_database(&self) -> bool {
        !matches!(&*self.engine, super::Backend::Redb(_))
    }

    /// The wrapped key ring kept in the store's database, if it is in a database that holds one
    /// (see [`database`]): what a backup writes out as its `keyring.json`.
    pub fn database_keyring(&self) -> Result<Option<Vec<u8>>, StoreError> {
        match &*self.engine {
            super::Backend::Redb(_) => Ok(None),
            #[cfg(feature = "postgres")]
            super::Backend::Postgres(readers) => database::stored_ring(&readers.target),
        }
    }
}

/// Why a data directory's keys could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// `[encryption]` is malformed.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The KEK or the key ring failed (the message names the file).
    #[error(transparent)]
    AtRest(#[from] AtRestError),
    /// A KEK rotation was asked of a directory that is not encrypted.
    #[error(
        "{} is not encrypted: there is no [encryption] section in the config (and no key ring) \
         to rotate",
        dir.display()
    )]
    NotEncrypted {
        /// The data directory.
        dir: std::path::PathBuf,
    },
    /// The store has held sealed data, and the key ring beside it is gone: new data keys would
    /// open none of its records, so nothing is created and the daemon does not start.
    #[error(
        "{} is missing, but the store {} holds encrypted records that only the data keys in it \
         open: restore {} from the latest backup of this data directory (backups copy the key \
         ring) and start again; a new key ring would not open them, so none is made",
        keyring.display(),
        store.display(),
        keyring.display()
    )]
    KeyringMissing {
        /// The missing key ring.
        keyring: std::path::PathBuf,
        /// The store marked as encrypted.
        store: std::path::PathBuf,
    },
    /// The store has held sealed data, and the config names no KEK (nor is its key ring there).
    #[error(
        "the store {} holds encrypted records, but the config has no [encryption] section: add \
         [encryption] kek = \"FILE\" (or kek_credential) with the key it was created with",
        store.display()
    )]
    EncryptionMissing {
        /// The store marked as encrypted.
        store: std::path::PathBuf,
    },
    /// The store could not be opened or marked.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hub's key ring is in its database, and the data directory holds a `keyring.json`
    /// that is not a copy of it ([`database`]).
    #[error(
        "{} is not a copy of the key ring in the database ({database}): {reason}; the \
         database's ring is the store's: move {} out of the data directory and start again",
        file.display(),
        file.display()
    )]
    KeyringConflict {
        /// The data directory's key-ring file.
        file: std::path::PathBuf,
        /// The ring in the database, as messages name it.
        database: String,
        /// How they differ.
        reason: String,
    },
    /// The directory is encrypted but the config names no KEK.
    #[error(
        "{} holds an encrypted store (key ring {}), but the config has no [encryption] section: \
         add [encryption] kek = \"FILE\" with the key it was created with",
        dir.display(),
        keyring.display()
    )]
    NotConfigured {
        /// The data directory.
        dir: std::path::PathBuf,
        /// Its key ring.
        keyring: std::path::PathBuf,
    },
}

/// The META key that marks a store whose values may be sealed: set when the store is first
/// opened with encryption on, never cleared, and copied by backups (META is backed up).
pub(crate) const ENCRYPTED: &str = "encrypted";

/// Opens the store at `path` (a `kind` store of schema `version`) with the data keys of the key
/// ring beside it, as `section` asks, with the algorithms of `profile`: the daemons' start (`create`: a directory with encryption
/// on and no key ring yet gets one) and the commands that open a stopped daemon's store (no
/// ring is ever made).
///
/// A store opened with encryption on is marked so in its META table. A marked store whose key
/// ring is missing, or whose config has no `[encryption]`, is refused: new data keys, or none,
/// would open none of its records, and every read would fail one by one instead.
pub fn open_store(
    path: &Path,
    kind: &'static str,
    version: u64,
    profile: Profile,
    section: Option<&EncryptionSection>,
    create: bool,
) -> Result<Store, KeysError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    open_with_keys(dir, profile, section, create, || {
        Store::open(path, kind, version)
    })
}

/// Opens the `kind` store of schema `version` in the PostgreSQL database `target`, with the data
/// keys of the key ring kept in the database itself (shared by every hub on it; [`database`]),
/// as [`open_store`] does for a redb file; `dir` is the hub's data directory, where a
/// `keyring.json` from before is moved into the database. The flag that marks the store as
/// holding sealed values is in the database (`settings`).
#[cfg(feature = "postgres")]
pub fn open_postgres_store(
    target: &super::kv::postgres::PgTarget,
    kind: &'static str,
    version: u64,
    dir: &Path,
    profile: Profile,
    section: Option<&EncryptionSection>,
    create: bool,
) -> Result<Store, KeysError> {
    database::open(target, (kind, version), dir, profile, section, create)
}

/// Unwraps the key ring in `dir` as `section` asks, then opens the store with `open` and checks
/// its flag against the keys (see [`open_store`]).
fn open_with_keys(
    dir: &Path,
    profile: Profile,
    section: Option<&EncryptionSection>,
    create: bool,
    open: impl FnOnce() -> Result<Store, StoreError>,
) -> Result<Store, KeysError> {
    let ring = dir.join(Keyring::FILE_NAME);
    // Before the store is touched: a wrong key or a bad ring changes nothing on disk.
    let kek = unwrap_ring(dir, profile, section)?;
    let store = open()?;
    let path = store.path().to_owned();
    let marked = store.flag(ENCRYPTED)?;
    let keys = match kek {
        None if marked => {
            return Err(KeysError::EncryptionMissing { store: path });
        }
        None => None,
        Some((_, Some(keys))) => Some(keys),
        Some((_, None)) if marked => {
            return Err(KeysError::KeyringMissing {
                keyring: ring,
                store: path,
            });
        }
        Some((kek, None)) if create => Some(Keyring::open_or_create(&ring, &kek)?),
        Some((_, None)) => None, // never started with encryption on: nothing is sealed yet
    };
    if keys.is_some() && !marked {
        store.set_flag(ENCRYPTED)?;
    }
    Ok(store.with_sealer(Sealer::new(keys)))
}

/// The configured KEK (loaded for `profile`'s suite) and, when the ring exists, the data keys it
/// unwraps; `None` when encryption is off. Refuses a ring without `[encryption]` (the ring names
/// the directory as encrypted even before its store is marked), and a ring of the other suite.
fn unwrap_ring(
    dir: &Path,
    profile: Profile,
    section: Option<&EncryptionSection>,
) -> Result<Option<(Kek, Option<DataKeys>)>, KeysError> {
    let ring = dir.join(Keyring::FILE_NAME);
    let Some(section) = section else {
        if ring.exists() {
            return Err(KeysError::NotConfigured {
                dir: dir.to_owned(),
                keyring: ring,
            });
        }
        return Ok(None);
    };
    let kek = Kek::load_for(&section.source()?, Suite::for_profile(profile))?;
    let keys = if ring.exists() {
        Some(Keyring::open(&ring, &kek)?)
    } else {
        None
    };
    Ok(Some((kek, keys)))
}

/// The data keys of the store in `dir` as `section` asks, unwrapped with the configured KEK
/// for `profile`'s suite,
/// for checks and tools that do not open the store (`check-config`, tests): `None` when
/// encryption is off or when the ring does not exist yet (the KEK is then only checked). Never
/// creates a ring: only [`open_store`] does, once it has seen that the store holds no sealed
/// data. A wrong KEK fails with an error naming the key file and changes nothing.
pub fn data_keys(
    dir: &Path,
    profile: Profile,
    section: Option<&EncryptionSection>,
) -> Result<Option<DataKeys>, KeysError> {
    Ok(unwrap_ring(dir, profile, section)?.and_then(|(_, keys)| keys))
}

/// KEK rotation (`rotate-kek --new FILE`): the key ring of the store in `dir` is rewrapped from
/// the configured KEK to the one in `new`, atomically; content is not re-encrypted, and the old
/// KEK is not needed once this returns. The running daemon is unaffected (it holds the data
/// keys); its config must name the new KEK before its next start. Running it again after a
/// crash is harmless. Both keys are loaded for `profile`'s suite, which the ring keeps.
pub fn rotate_kek(
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
    let ring = dir.join(Keyring::FILE_NAME);
    if !ring.exists() {
        // A store that was never started has no ring yet: make it under the new key.
        Keyring::open_or_create(&ring, &new)?;
        return Ok(Rewrapped {
            old_fingerprint: old.fingerprint().to_owned(),
            new_fingerprint: new.fingerprint().to_owned(),
            key_ids: Vec::new(),
            already_done: false,
        });
    }
    Ok(Keyring::rewrap(&ring, &old, &new)?)
}

/// What `rotate-kek` tells the operator: where the ring stands and what to do next (`daemon`:
/// `hub` or `node`, `config`: its config file's name).
pub fn rotation_report(
    dir: &Path,
    done: &Rewrapped,
    new: &Path,
    daemon: &str,
    config: &str,
) -> String {
    let ring = dir.join(Keyring::FILE_NAME);
    rotation_report_at(&ring, done, new, daemon, config)
}

/// [`rotation_report`] for a ring kept at `ring` (a file, or a database's ring as
/// [`database::ring_label`] names it).
pub fn rotation_report_at(
    ring: &Path,
    done: &Rewrapped,
    new: &Path,
    daemon: &str,
    config: &str,
) -> String {
    let state = if done.already_done {
        "was already wrapped under"
    } else {
        "is now wrapped under"
    };
    format!(
        "key ring {} {state} key-encryption key {} (was {}).\n\
         Next: set [encryption] kek = \"{}\" in {config} (or install it as the systemd \
         credential) before the {daemon}'s next start; keep the old key escrowed while backups taken before now are kept.",
        ring.display(),
        done.new_fingerprint,
        done.old_fingerprint,
        new.display()
    )
}

#[cfg(feature = "postgres")]
pub mod database;
#[cfg(feature = "postgres")]
pub use database::rotate_kek_postgres;

#[cfg(test)]
mod tests;
