//! The unwrapped data-encryption keys of one store, and the derivation of the one-use keys that
//! actually encrypt: every sealed value and every blob gets its own key, `HKDF(salt = random 16
//! bytes, ikm = DEK, info = purpose label)` with the store's [`Suite`] (AES-256-GCM keys from
//! HKDF-SHA256, or SM4-GCM keys from HKDF-SM3), as Tink's `AesGcmHkdfStreaming` does. Nonces
//! then never repeat under a key by construction, and a DEK can encrypt any number of values
//! (the only limit is a salt collision; see [`super`]).

use std::{collections::BTreeMap, fmt, sync::Arc};

use ring::rand::{SecureRandom, SystemRandom};

use super::{AtRestError, Suite};

/// Length of a data-encryption key and of the KEK under both suites: the input of HKDF, whose
/// output is the cipher's key (32 bytes for AES-256, 16 for SM4).
pub(super) const KEY_LEN: usize = 32;
/// Length of the random salt of a sealed value or blob.
pub(super) const SALT_LEN: usize = 16;

/// A data-encryption key: 32 random bytes, only ever in memory unwrapped.
#[derive(Clone)]
pub(super) struct Dek(pub(super) [u8; KEY_LEN]);

impl Drop for Dek {
    /// Best effort: without `unsafe` volatile writes the compiler may elide this, so it is a
    /// courtesy, not a guarantee (see the limits in [`super`]).
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

/// The data keys of one store: what [`super::Keyring::open_or_create`] returns and what seals and
/// opens values and blobs. Cheap to clone (shared), so the database, the blob store and the
/// backup code can each hold one.
#[derive(Clone)]
pub struct DataKeys {
    inner: Arc<Inner>,
}

struct Inner {
    /// The algorithms every key of this store seals and opens with.
    suite: Suite,
    /// The key new values and blobs are sealed under.
    current: u32,
    /// Every key of the ring, by id: older ones still open what they sealed.
    keys: BTreeMap<u32, Dek>,
}

impl DataKeys {
    /// Keys from an unwrapped ring; `current` must be one of `keys` (the key ring checks).
    pub(super) fn new(suite: Suite, current: u32, keys: BTreeMap<u32, Dek>) -> Self {
        DataKeys {
            inner: Arc::new(Inner {
                suite,
                current,
                keys,
            }),
        }
    }

    /// The algorithms this store seals with (its key ring's; the profile's when it was made).
    pub fn suite(&self) -> Suite {
        self.inner.suite
    }

    /// The id of the key new values and blobs are sealed under.
    pub fn current_key_id(&self) -> u32 {
        self.inner.current
    }

    /// The ids of every key held, ascending (for `check-config` and audit records).
    pub fn key_ids(&self) -> Vec<u32> {
        self.inner.keys.keys().copied().collect()
    }

    /// The current key, with its id.
    pub(super) fn current(&self) -> Result<(u32, &Dek), AtRestError> {
        let id = self.inner.current;
        Ok((id, self.get(id)?))
    }

    /// The key `id`, or the error a caller reports when a value names a key this ring lacks.
    pub(super) fn get(&self, id: u32) -> Result<&Dek, AtRestError> {
        self.inner
            .keys
            .get(&id)
            .ok_or(AtRestError::UnknownKeyId { key_id: id })
    }

    /// Every key, for rewrapping.
    pub(super) fn all(&self) -> impl Iterator<Item = (u32, &Dek)> {
        self.inner.keys.iter().map(|(id, k)| (*id, k))
    }
}

impl fmt::Debug for DataKeys {
    /// Ids only: key bytes never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeys")
            .field("suite", &self.inner.suite)
            .field("current", &self.inner.current)
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

/// `N` bytes from the operating system's random source, or an error for callers that can
/// report one.
pub(super) fn try_random<const N: usize>() -> Result<[u8; N], ring::error::Unspecified> {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out)?;
    Ok(out)
}

/// Keys for tests: one data key of `byte`s with id 1, under the international suite.
#[cfg(test)]
pub(super) fn test_keys(byte: u8) -> DataKeys {
    test_keys_for(Suite::Aes256Gcm, byte)
}

/// [`test_keys`] under `suite`.
#[cfg(test)]
pub(super) fn test_keys_for(suite: Suite, byte: u8) -> DataKeys {
    DataKeys::new(suite, 1, BTreeMap::from([(1, Dek([byte; KEY_LEN]))]))
}

/// The suites this build can run, for tests that hold under each.
#[cfg(test)]
pub(super) fn test_suites() -> Vec<Suite> {
    let mut all = vec![Suite::Aes256Gcm];
    if cfg!(feature = "shangmi") {
        all.push(Suite::Sm4Gcm);
    }
    all
}
