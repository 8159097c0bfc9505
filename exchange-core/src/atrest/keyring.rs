//! The key-ring file of a store (`keyring.json` in its data directory): the store's data keys,
//! each wrapped under the KEK. It sits next to the data it protects, because it is useless
//! without the KEK, and it travels with the store into backups so that a restore needs nothing
//! but the KEK. Every change is an atomic replacement of the whole file ([`super::replace`]).
//!
//! A ring records its [`Suite`]: version 1 (no `suite` field) is the international suite, as
//! every ring before the shangmi suite; version 2 names it in `suite`. A ring of one suite is
//! refused by a KEK loaded for the other (the configuration's profile), naming both.
//!
//! The same bytes can live elsewhere than in a file: a hub on PostgreSQL keeps its ring in the
//! database, shared by every hub on it ([`Keyring::open_bytes`], [`Keyring::rewrap_bytes`];
//! `store::sealing` says where and how it is replaced).

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    path::Path,
};

use serde::{Deserialize, Serialize};

use super::{
    AtRestError, DataKeys, Kek, Suite,
    kek::WRAPPED_LEN,
    keys::Dek,
    replace::{self, Install, Installed},
};

/// The `format` field: what this JSON file is, for a human who finds it.
const FORMAT: &str = "exchange-keyring";
/// The `version` of international rings: no `suite` field (the bytes of every ring made before
/// the shangmi suite, kept as they were).
const VERSION_1: u32 = 1;
/// The `version` of rings that name their suite (the shangmi suite's).
const VERSION_2: u32 = 2;

/// The file as stored (see the byte-level description in [`super`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RingFile {
    /// Always [`FORMAT`].
    format: String,
    /// [`VERSION_1`] or [`VERSION_2`].
    version: u32,
    /// The suite's name ([`Suite::name`]); version 2 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suite: Option<String>,
    /// Fingerprint of the KEK the keys are wrapped under: a wrong KEK is named before unwrapping.
    kek_fingerprint: String,
    /// Id of the key new values and blobs are sealed under.
    current: u32,
    /// Every data key, wrapped.
    keys: Vec<WrappedKey>,
}

/// One wrapped data key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrappedKey {
    /// The id sealed values and blob headers carry (1, 2, ...; bound into the wrapping).
    id: u32,
    /// Hex of nonce (12) | encrypted key (32) | tag (16), with the ring's suite.
    wrapped: String,
}

/// Operations on a key-ring file. There is no long-lived key-ring object: the daemons need only
/// the unwrapped [`DataKeys`], and the operator commands (rotation, checks) are one-shot.
#[derive(Debug)]
pub struct Keyring;

/// What [`Keyring::check`] found, for `check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringSummary {
    /// The algorithms the ring's keys seal with.
    pub suite: Suite,
    /// Fingerprint of the KEK the ring is wrapped under.
    pub kek_fingerprint: String,
    /// The current data key's id.
    pub current: u32,
    /// Every data key's id.
    pub key_ids: Vec<u32>,
}

/// What [`Keyring::rewrap`] did: the facts for the audit record of a KEK rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrapped {
    /// Fingerprint of the KEK the ring was wrapped under.
    pub old_fingerprint: String,
    /// Fingerprint of the KEK it is wrapped under now.
    pub new_fingerprint: String,
    /// The data keys rewrapped.
    pub key_ids: Vec<u32>,
    /// The ring was already under the new KEK (a rotation re-run after a crash): nothing changed.
    pub already_done: bool,
}

impl Keyring {
    /// The key ring's file name in a data directory.
    pub const FILE_NAME: &'static str = "keyring.json";

    /// Unwraps the ring at `path`, creating it with one new data key when there is no file (a
    /// ring of `kek`'s suite).
    /// Only a new store should get here without a ring: a store holding sealed data whose ring
    /// was deleted cannot be read again, so callers with existing data use [`Keyring::open`].
    pub fn open_or_create(path: &Path, kek: &Kek) -> Result<DataKeys, AtRestError> {
        if read(path)?.is_none() {
            let (bytes, keys) = Self::create_bytes(path, kek)?;
            match replace::write(path, &bytes, Install::KeepExisting).map_err(io_err(path))? {
                Installed::New => return Ok(keys),
                Installed::Existing => {} // created meanwhile by another process: use that one
            }
        }
        Self::open(path, kek)
    }

    /// Unwraps the ring at `path`; a missing file is an error. Changes nothing on disk.
    pub fn open(path: &Path, kek: &Kek) -> Result<DataKeys, AtRestError> {
        let bytes = read(path)?.ok_or_else(|| missing(path))?;
        unwrap_all(path, &parse(path, &bytes)?, kek)
    }

    /// Checks that the ring at `path` opens with `kek`, without creating or changing anything.
    pub fn check(path: &Path, kek: &Kek) -> Result<KeyringSummary, AtRestError> {
        let keys = Self::open(path, kek)?;
        Ok(KeyringSummary {
            suite: keys.suite(),
            kek_fingerprint: kek.fingerprint().to_string(),
            current: keys.current_key_id(),
            key_ids: keys.key_ids(),
        })
    }

    /// KEK rotation: replaces the ring with the same data keys wrapped under `new`. A crash at
    /// any point leaves either the old ring or the new one, each complete; content is not
    /// re-encrypted. Re-running after the replacement finds the ring already under `new` and
    /// reports `already_done`.
    pub fn rewrap(path: &Path, old: &Kek, new: &Kek) -> Result<Rewrapped, AtRestError> {
        let bytes = read(path)?.ok_or_else(|| missing(path))?;
        let (rewrapped, done) = Self::rewrap_bytes(path, &bytes, old, new)?;
        if let Some(rewrapped) = rewrapped {
            replace::write(path, &rewrapped, Install::Replace).map_err(io_err(path))?;
        }
        Ok(done)
    }

    /// A new ring of `kek`'s suite with one new data key, as bytes for a ring kept elsewhere
    /// than in a file (a database shared by several hubs); `label` names it in errors.
    pub fn create_bytes(label: &Path, kek: &Kek) -> Result<(Vec<u8>, DataKeys), AtRestError> {
        let dek = Dek(kek.suite().random()?);
        let keys = DataKeys::new(kek.suite(), 1, BTreeMap::from([(1, dek)]));
        Ok((encode(kek, &keys, label)?, keys))
    }

    /// Unwraps a ring held as `bytes` (the file's format) where `label` says, e.g. a database:
    /// the same checks and errors as [`Keyring::open`] (a wrong KEK names both fingerprints).
    pub fn open_bytes(label: &Path, bytes: &[u8], kek: &Kek) -> Result<DataKeys, AtRestError> {
        unwrap_all(label, &parse(label, bytes)?, kek)
    }

    /// [`Keyring::rewrap`] of a ring held as `bytes` where `label` says: the rewrapped bytes
    /// (`None` when the ring is already under `new`), for the caller to replace atomically.
    pub fn rewrap_bytes(
        label: &Path,
        bytes: &[u8],
        old: &Kek,
        new: &Kek,
    ) -> Result<(Option<Vec<u8>>, Rewrapped), AtRestError> {
        if old.fingerprint() == new.fingerprint() {
            return Err(AtRestError::SameKek {
                fingerprint: old.fingerprint().to_string(),
            });
        }
        let ring = parse(label, bytes)?;
        let done = |keys: &DataKeys, already_done| Rewrapped {
            old_fingerprint: old.fingerprint().to_string(),
            new_fingerprint: new.fingerprint().to_string(),
            key_ids: keys.key_ids(),
            already_done,
        };
        if ring.file.kek_fingerprint == new.fingerprint() && ring.suite == new.suite() {
            let keys = unwrap_all(label, &ring, new)?;
            return Ok((None, done(&keys, true)));
        }
        let keys = unwrap_all(label, &ring, old)?;
        let rewrapped = encode(new, &keys, label)?;
        // Proof before replacing: the new ring opens with the new KEK to the same keys.
        let again = unwrap_all(label, &parse(label, &rewrapped)?, new)?;
        if !Self::same_keys(&again, &keys) {
            return Err(format_err(
                label,
                "BUG: the rewrapped ring lost a key".into(),
            ));
        }
        Ok((Some(rewrapped), done(&keys, false)))
    }

    /// Whether two unwrapped rings hold the same data keys (suite, ids, key bytes, current):
    /// two copies of one store's ring, however each is wrapped.
    pub fn same_keys(a: &DataKeys, b: &DataKeys) -> bool {
        a.suite() == b.suite()
            && a.current_key_id() == b.current_key_id()
            && a.all()
                .map(|(i, k)| (i, &k.0))
                .eq(b.all().map(|(i, k)| (i, &k.0)))
    }

    /// Data-key rotation: adds a new random data key and makes it current; returns its id. Old
    /// keys stay (they open what they sealed). Processes holding [`DataKeys`] keep sealing under
    /// the previous key until they reopen the ring.
    pub fn add_data_key(path: &Path, kek: &Kek) -> Result<u32, AtRestError> {
        let keys = Self::open(path, kek)?;
        let id = keys
            .key_ids()
            .last()
            .and_then(|last| last.checked_add(1))
            .ok_or_else(|| format_err(path, "no key id left".into()))?;
        let mut all: BTreeMap<u32, Dek> = keys.all().map(|(i, k)| (i, k.clone())).collect();
        all.insert(id, Dek(keys.suite().random()?));
        let bytes = encode(kek, &DataKeys::new(keys.suite(), id, all), path)?;
        replace::write(path, &bytes, Install::Replace).map_err(io_err(path))?;
        Ok(id)
    }
}

/// The file's bytes, or `None` when it does not exist.
fn read(path: &Path) -> Result<Option<Vec<u8>>, AtRestError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// A parsed key ring: the file's fields, and the suite its version and `suite` name.
struct Ring {
    /// As stored.
    file: RingFile,
    /// The algorithms its keys are wrapped with and seal with.
    suite: Suite,
}

/// Parses and checks the structure (not the keys: that needs the KEK).
fn parse(path: &Path, bytes: &[u8]) -> Result<Ring, AtRestError> {
    let ring: RingFile =
        serde_json::from_slice(bytes).map_err(|e| format_err(path, e.to_string()))?;
    if ring.format != FORMAT {
        return Err(format_err(path, format!("format is not {FORMAT:?}")));
    }
    let suite = match (ring.version, ring.suite.as_deref()) {
        (VERSION_1, None) => Suite::Aes256Gcm,
        (VERSION_1, Some(_)) => {
            return Err(format_err(
                path,
                "a version 1 ring has no suite field".into(),
            ));
        }
        (VERSION_2, Some(name)) => Suite::from_name(name).ok_or_else(|| {
            let known: Vec<_> = Suite::ALL.iter().map(|s| s.name()).collect();
            format_err(
                path,
                format!("unknown suite {name:?} (this build knows {known:?})"),
            )
        })?,
        (VERSION_2, None) => {
            return Err(format_err(
                path,
                "a version 2 ring must name its suite".into(),
            ));
        }
        (v, _) => {
            return Err(format_err(
                path,
                format!("version {v}; this build reads {VERSION_1} and {VERSION_2}"),
            ));
        }
    };
    let ids: BTreeSet<u32> = ring.keys.iter().map(|k| k.id).collect();
    if ids.len() != ring.keys.len() || ids.contains(&0) {
        return Err(format_err(
            path,
            "key ids must be unique and non-zero".into(),
        ));
    }
    if !ids.contains(&ring.current) {
        let c = ring.current;
        return Err(format_err(
            path,
            format!("current key {c} is not in the ring"),
        ));
    }
    Ok(Ring { file: ring, suite })
}

/// Unwraps every key of `ring` with `kek`: a ring of another suite than the KEK's is
/// [`AtRestError::KeyringSuite`]; a key that does not unwrap is [`AtRestError::WrongKek`].
fn unwrap_all(path: &Path, ring: &Ring, kek: &Kek) -> Result<DataKeys, AtRestError> {
    if ring.suite != kek.suite() {
        return Err(AtRestError::KeyringSuite {
            keyring: path.to_path_buf(),
            found: ring.suite,
            configured: kek.suite(),
        });
    }
    let (suite, ring) = (ring.suite, &ring.file);
    let wrong = |reason: String| AtRestError::WrongKek {
        keyring: path.to_path_buf(),
        kek_source: kek.source().to_string(),
        kek_fingerprint: kek.fingerprint().to_string(),
        reason,
    };
    if ring.kek_fingerprint != kek.fingerprint() {
        let theirs = &ring.kek_fingerprint;
        return Err(wrong(format!(
            "the ring is wrapped under the KEK with fingerprint {theirs}"
        )));
    }
    let mut keys = BTreeMap::new();
    for k in &ring.keys {
        let mut wrapped = [0u8; WRAPPED_LEN];
        let dek = match hex::decode_to_slice(&k.wrapped, &mut wrapped) {
            Ok(()) => kek.unwrap(k.id, &wrapped)?,
            Err(_) => None,
        };
        let dek =
            dek.ok_or_else(|| wrong(format!("data key {} does not unwrap (altered?)", k.id)))?;
        keys.insert(k.id, dek);
    }
    Ok(DataKeys::new(suite, ring.current, keys))
}

/// The file content for `keys` wrapped under `kek`: pretty JSON and a final newline; version 1
/// for the international suite (byte for byte as before the shangmi suite), 2 otherwise.
fn encode(kek: &Kek, keys: &DataKeys, path: &Path) -> Result<Vec<u8>, AtRestError> {
    let suite = keys.suite();
    if suite != kek.suite() {
        return Err(AtRestError::KeyringSuite {
            keyring: path.to_path_buf(),
            found: suite,
            configured: kek.suite(),
        });
    }
    let (version, suite_name) = match suite {
        Suite::Aes256Gcm => (VERSION_1, None),
        other => (VERSION_2, Some(other.name().to_string())),
    };
    let wrapped = keys
        .all()
        .map(|(id, dek)| {
            let w = kek.wrap(id, dek)?;
            Ok(WrappedKey {
                id,
                wrapped: hex::encode(w),
            })
        })
        .collect::<Result<Vec<_>, AtRestError>>()?;
    let ring = RingFile {
        format: FORMAT.to_string(),
        version,
        suite: suite_name,
        kek_fingerprint: kek.fingerprint().to_string(),
        current: keys.current_key_id(),
        keys: wrapped,
    };
    let mut bytes =
        serde_json::to_vec_pretty(&ring).map_err(|e| format_err(path, e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> AtRestError + '_ {
    move |source| AtRestError::KeyringIo {
        path: path.to_path_buf(),
        source,
    }
}

fn missing(path: &Path) -> AtRestError {
    io_err(path)(io::Error::new(
        io::ErrorKind::NotFound,
        "no key ring (not created)",
    ))
}

fn format_err(path: &Path, reason: String) -> AtRestError {
    AtRestError::KeyringFormat {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests;
