//! The key-encryption key (KEK): the one secret an operator keeps outside the data directory.
//! It only wraps the stores' data keys, so it can live in a file readable by the service user
//! alone or in a systemd credential (`LoadCredential=`/`LoadCredentialEncrypted=`, which may
//! keep it sealed by a TPM), and it can be rotated without re-encrypting any content.
//!
//! The key file is the same under both profiles; what is derived from it is not: a [`Kek`] is
//! loaded for one [`Suite`], whose hash makes its fingerprint and whose cipher wraps data keys.

use std::{
    ffi::OsString,
    fmt,
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use super::{
    AtRestError, Suite,
    keys::{Dek, KEY_LEN, try_random},
    suite::{AeadKey, NONCE_LEN, TAG_LEN},
};

/// Domain-separation label of the fingerprint: the fingerprint is a hash of this and the key,
/// so it can never equal a hash the key is used for elsewhere.
const FINGERPRINT_LABEL: &[u8] = b"exchange at-rest kek fingerprint v1\0";
/// HKDF info of the wrapping key derived from the KEK (the KEK bytes themselves encrypt nothing).
const WRAP_INFO: &[u8] = b"exchange at-rest kek wrap v1";
/// Prefix of a wrapped data key's AAD; the key id follows, so wrapped keys cannot swap ids.
const WRAP_AAD_LABEL: &[u8] = b"exchange keyring dek v1";
/// Length of a wrapped data key: nonce, encrypted key, tag.
pub(super) const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;
/// A KEK file is 64 hex characters and a newline; anything much longer is not one.
const MAX_FILE_LEN: u64 = 128;

/// Where the KEK comes from: a file, or a systemd credential of the running unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    /// A file holding 64 hex characters, readable by its owner only (mode 0600 or 0400).
    File(PathBuf),
    /// A systemd credential name, read from `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

impl fmt::Display for KekSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KekSource::File(path) => write!(f, "{}", path.display()),
            KekSource::Credential(name) => write!(f, "systemd credential {name:?}"),
        }
    }
}

/// The key-encryption key, loaded for one [`Suite`]. It keeps only the derived wrapping key and
/// the fingerprint: the raw bytes are dropped once loaded, and `Debug` shows the source, suite
/// and fingerprint, never a key.
pub struct Kek {
    /// The key derived from the KEK with the suite's HKDF (an AES-256-GCM or SM4-GCM key), used
    /// for nothing but wrapping data keys.
    wrap_key: AeadKey,
    /// Names this KEK in key rings, errors and audit records without revealing it.
    fingerprint: String,
    /// Where it was read from, for error messages.
    source: KekSource,
}

impl Kek {
    /// Reads the KEK from `source` for the international suite ([`Kek::load_for`] names the
    /// suite; stores take theirs from the profile). A file must not be readable by group or
    /// others; its content is 64 hex characters, optionally followed by a newline.
    pub fn load(source: &KekSource) -> Result<Kek, AtRestError> {
        Self::load_for(source, Suite::Aes256Gcm)
    }

    /// Reads the KEK from `source` (as [`Kek::load`]) and derives its wrapping key and
    /// fingerprint with `suite`'s algorithms.
    pub fn load_for(source: &KekSource, suite: Suite) -> Result<Kek, AtRestError> {
        match source {
            KekSource::File(path) => Self::load_file(path, source, suite),
            KekSource::Credential(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY");
                Self::load_credential(dir, name, source, suite)
            }
        }
    }

    /// Creates a new random KEK in `path` with mode 0600 and returns it, for the international
    /// suite (the file serves either: load it again with [`Kek::load_for`]). An existing file
    /// is never overwritten: losing a KEK loses every store wrapped under it.
    pub fn generate(path: &Path) -> Result<Kek, AtRestError> {
        let err = |source| AtRestError::KekCreate {
            path: path.to_path_buf(),
            source,
        };
        let key: [u8; KEY_LEN] =
            try_random().map_err(|_| err(std::io::Error::other("random source failed")))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        let written = file
            .write_all(format!("{}\n", hex::encode(key)).as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| super::replace::sync_parent(path));
        if let Err(e) = written {
            // A half-written KEK file would fail every later load: leave nothing behind.
            let _ = std::fs::remove_file(path);
            return Err(err(e));
        }
        Self::from_key(key, KekSource::File(path.to_path_buf()), Suite::Aes256Gcm)
    }

    /// A short hex id of this KEK (16 characters: the first 8 bytes of a SHA-256, or under the
    /// shangmi suite an SM3, over a label and the key). Key rings record it, so a wrong KEK is
    /// named as such before any unwrapping. The same key file has one fingerprint per suite.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The suite this KEK was loaded for: the one its key rings must have.
    pub fn suite(&self) -> Suite {
        self.wrap_key.suite()
    }

    /// Where this KEK was read from.
    pub fn source(&self) -> &KekSource {
        &self.source
    }

    /// Wraps `dek` as key `id`: random nonce (a KEK wraps a handful of keys per rotation, far
    /// below random nonces' 2^32 limit), then the encrypted key and its tag.
    pub(super) fn wrap(&self, id: u32, dek: &Dek) -> Result<[u8; WRAPPED_LEN], AtRestError> {
        let nonce: [u8; NONCE_LEN] = self.suite().random()?;
        let mut out = [0u8; WRAPPED_LEN];
        out[..NONCE_LEN].copy_from_slice(&nonce);
        out[NONCE_LEN..NONCE_LEN + KEY_LEN].copy_from_slice(&dek.0);
        let tag = self.wrap_key.seal(
            nonce,
            &wrap_aad(id),
            &mut out[NONCE_LEN..NONCE_LEN + KEY_LEN],
        )?;
        out[NONCE_LEN + KEY_LEN..].copy_from_slice(&tag);
        Ok(out)
    }

    /// Unwraps key `id`: `None` when it was not wrapped under this KEK (or was altered), an
    /// error when the cipher library failed.
    pub(super) fn unwrap(&self, id: u32, wrapped: &[u8]) -> Result<Option<Dek>, AtRestError> {
        let Some((nonce, sealed)) = wrapped.split_first_chunk::<NONCE_LEN>() else {
            return Ok(None);
        };
        if sealed.len() != KEY_LEN + TAG_LEN {
            return Ok(None);
        }
        let mut buf = [0u8; KEY_LEN + TAG_LEN];
        buf.copy_from_slice(sealed);
        let mut key = [0u8; KEY_LEN];
        let opened = match self.wrap_key.open(*nonce, &wrap_aad(id), &mut buf) {
            Ok(plain) if plain.len() == KEY_LEN => {
                key.copy_from_slice(plain);
                Ok(Some(Dek(key)))
            }
            Ok(_) | Err(super::suite::Refused::NotAuthentic) => Ok(None),
            Err(super::suite::Refused::Failed(e)) => Err(e),
        };
        buf.fill(0);
        opened
    }

    fn from_key(key: [u8; KEY_LEN], source: KekSource, suite: Suite) -> Result<Kek, AtRestError> {
        let key = Dek(key); // zeroed on drop, like a data key
        let hash = suite.fingerprint_hash(FINGERPRINT_LABEL, &key.0)?;
        Ok(Kek {
            wrap_key: suite.derive(&key.0, &[], WRAP_INFO)?,
            fingerprint: hex::encode(&hash[..8]),
            source,
        })
    }

    fn load_file(path: &Path, source: &KekSource, suite: Suite) -> Result<Kek, AtRestError> {
        let read_err = |e| AtRestError::KekRead {
            source_name: source.to_string(),
            source: e,
        };
        let file = File::open(path).map_err(read_err)?;
        // The mode of the file we opened, not of whatever the path names a moment later.
        let mode = file.metadata().map_err(read_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AtRestError::KekPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        Self::parse(file, source, suite)
    }

    /// The credential's file mode is not checked: systemd creates it for the unit alone, in a
    /// directory no other user can enter, and picks the mode itself.
    fn load_credential(
        dir: Option<OsString>,
        name: &str,
        source: &KekSource,
        suite: Suite,
    ) -> Result<Kek, AtRestError> {
        let plain_name = !name.is_empty() && name != "." && name != ".." && !name.contains('/');
        if !plain_name {
            return Err(AtRestError::BadCredentialName {
                name: name.to_string(),
            });
        }
        let dir = dir.ok_or_else(|| AtRestError::NoCredentialsDirectory {
            name: name.to_string(),
        })?;
        let path = PathBuf::from(dir).join(name);
        let file = File::open(&path).map_err(|e| AtRestError::KekRead {
            source_name: format!("{source} ({})", path.display()),
            source: e,
        })?;
        Self::parse(file, source, suite)
    }

    fn parse(file: File, source: &KekSource, suite: Suite) -> Result<Kek, AtRestError> {
        let mut text = Vec::with_capacity(MAX_FILE_LEN as usize);
        file.take(MAX_FILE_LEN)
            .read_to_end(&mut text)
            .map_err(|e| AtRestError::KekRead {
                source_name: source.to_string(),
                source: e,
            })?;
        let hex_part = text
            .strip_suffix(b"\r\n")
            .or_else(|| text.strip_suffix(b"\n"))
            .unwrap_or(&text);
        let mut key = [0u8; KEY_LEN];
        let parsed =
            hex_part.len() == 2 * KEY_LEN && hex::decode_to_slice(hex_part, &mut key).is_ok();
        // Best effort, as for data keys: the hex text held the key too.
        text.fill(0);
        if !parsed {
            return Err(AtRestError::KekFormat {
                source_name: source.to_string(),
            });
        }
        Self::from_key(key, source.clone(), suite)
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("source", &self.source)
            .field("suite", &self.suite())
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn wrap_aad(id: u32) -> [u8; WRAP_AAD_LABEL.len() + 4] {
    let mut aad = [0u8; WRAP_AAD_LABEL.len() + 4];
    aad[..WRAP_AAD_LABEL.len()].copy_from_slice(WRAP_AAD_LABEL);
    aad[WRAP_AAD_LABEL.len()..].copy_from_slice(&id.to_be_bytes());
    aad
}

/// A KEK of `byte`s for tests, under the international suite.
#[cfg(test)]
pub(super) fn test_kek(byte: u8) -> Kek {
    test_kek_for(Suite::Aes256Gcm, byte)
}

/// [`test_kek`] under `suite`.
#[cfg(test)]
pub(super) fn test_kek_for(suite: Suite, byte: u8) -> Kek {
    Kek::from_key(
        [byte; KEY_LEN],
        KekSource::File(PathBuf::from("test.kek")),
        suite,
    )
    .unwrap()
}

#[cfg(test)]
mod tests;
