//! The unwrapped data-encryption keys of one store, and the derivation of the one-use keys that
//! actually encrypt: every sealed value and every blob gets its own AES-256-GCM key,
//! `HKDF-SHA256(salt = random 16 bytes, ikm = DEK, info = purpose label)`, as Tink's
//! `AesGcmHkdfStreaming` does. Nonces then never repeat under a key by construction, and a DEK
//! can encrypt any number of values (the only limit is a salt collision; see [`super`]).

use std::{collections::BTreeMap, fmt, sync::Arc};

use ring::{
    aead::{self, LessSafeKey, UnboundKey},
    hkdf,
    rand::{SecureRandom, SystemRandom},
};

use super::AtRestError;

/// Length of a data-encryption key (AES-256).
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
    /// The key new values and blobs are sealed under.
    current: u32,
    /// Every key of the ring, by id: older ones still open what they sealed.
    keys: BTreeMap<u32, Dek>,
}

impl DataKeys {
    /// Keys from an unwrapped ring; `current` must be one of `keys` (the key ring checks).
    pub(super) fn new(current: u32, keys: BTreeMap<u32, Dek>) -> Self {
        DataKeys {
            inner: Arc::new(Inner { current, keys }),
        }
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
    pub(super) fn current(&self) -> (u32, &Dek) {
        let id = self.inner.current;
        let dek = self
            .inner
            .keys
            .get(&id)
            .expect("BUG: the key ring checked that the current key id is present");
        (id, dek)
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
            .field("current", &self.inner.current)
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

/// Derives the one-use AES-256-GCM key for `salt` under `dek`; `info` separates purposes
/// (values, blobs, key wrapping) so that equal salts in different places give unrelated keys.
pub(super) fn derive(ikm: &[u8], salt: &[u8], info: &[u8]) -> LessSafeKey {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk
        .expand(&info, &aead::AES_256_GCM)
        .expect("BUG: 32 bytes is within HKDF-SHA256's output limit");
    LessSafeKey::new(UnboundKey::from(okm))
}

/// `N` bytes from the operating system's random source, or an error for callers that can
/// report one.
pub(super) fn try_random<const N: usize>() -> Result<[u8; N], ring::error::Unspecified> {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out)?;
    Ok(out)
}

/// `N` random bytes for the infallible sealing paths.
///
/// # Panics
/// When the operating system's random source fails (`getrandom(2)` does not fail on a supported
/// Linux once booted): encrypting without fresh salts would be unsafe, so there is no fallback.
pub(super) fn random<const N: usize>() -> [u8; N] {
    try_random().expect("the operating system's random source failed: refusing to encrypt")
}

/// Keys for tests: one data key of `byte`s with id 1.
#[cfg(test)]
pub(super) fn test_keys(byte: u8) -> DataKeys {
    DataKeys::new(1, BTreeMap::from([(1, Dek([byte; KEY_LEN]))]))
}
