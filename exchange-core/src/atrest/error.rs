//! What can go wrong at rest, as one error enum: each variant names the file, the key source,
//! the key id or the chunk, so that the daemon's message tells an operator where to look. The
//! caller adds *which* record or blob (it knows the table and key; this module does not).

use std::{io, path::PathBuf};

use super::Suite;

/// An at-rest encryption operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AtRestError {
    /// The key-encryption key could not be read (missing file, no permission).
    #[error("cannot read key-encryption key {source_name}: {source}")]
    KekRead {
        /// The KEK source, as [`super::KekSource`]'s `Display` prints it.
        source_name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The KEK file can be read by group or others: a secret must not be.
    #[error(
        "key-encryption key {path} is readable by group or others (mode {mode:03o}): run `chmod 600 {path}`"
    )]
    KekPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The KEK's content is not 64 hex characters (an optional trailing newline allowed).
    #[error(
        "key-encryption key {source_name} must hold exactly 64 hex characters (32 bytes), optionally followed by a newline"
    )]
    KekFormat {
        /// The KEK source.
        source_name: String,
    },
    /// A systemd credential was named but the unit passes no credentials.
    #[error(
        "key-encryption key: systemd credential {name:?} requested but $CREDENTIALS_DIRECTORY is not set (add LoadCredential={name}:/path/to/kek to the unit)"
    )]
    NoCredentialsDirectory {
        /// The credential name.
        name: String,
    },
    /// A credential name that would leave `$CREDENTIALS_DIRECTORY`.
    #[error("systemd credential name {name:?} is not a plain file name")]
    BadCredentialName {
        /// The name as given.
        name: String,
    },
    /// A new KEK file could not be created (it exists already: a KEK is never overwritten).
    #[error("cannot create key-encryption key {path}: {source}")]
    KekCreate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the key-ring file failed.
    #[error("key ring {path}: {source}")]
    KeyringIo {
        /// The key-ring file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The key-ring file is not a key ring this build reads.
    #[error("key ring {path} is malformed: {reason}")]
    KeyringFormat {
        /// The key-ring file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key ring was not written under this KEK (or was altered); nothing was changed.
    #[error(
        "key ring {keyring} does not open with key-encryption key {kek_source} (fingerprint {kek_fingerprint}): {reason}"
    )]
    WrongKek {
        /// The key-ring file.
        keyring: PathBuf,
        /// The KEK source that was tried.
        kek_source: String,
        /// That KEK's fingerprint.
        kek_fingerprint: String,
        /// Fingerprint mismatch or a data key that does not unwrap.
        reason: String,
    },
    /// The key ring was made under the other profile's suite than the configured one: its keys
    /// would seal and open with algorithms the configuration does not use. Nothing was changed.
    #[error(
        "key ring {keyring} is for {found} (the {} profile), but the configured [crypto] profile \
         is {} ({configured}): a data directory keeps the profile it was created with",
        found.profile(),
        configured.profile()
    )]
    KeyringSuite {
        /// The key-ring file.
        keyring: PathBuf,
        /// The suite the ring names.
        found: Suite,
        /// The suite of the configured profile (the KEK was loaded for it).
        configured: Suite,
    },
    /// A KEK rotation was asked with the same key as old and new.
    #[error("old and new key-encryption keys are the same (fingerprint {fingerprint})")]
    SameKek {
        /// The fingerprint of both.
        fingerprint: String,
    },
    /// A sealed value or blob names a data key the key ring does not hold.
    #[error("sealed with data key {key_id}, which the key ring does not hold")]
    UnknownKeyId {
        /// The key id found in the sealed bytes.
        key_id: u32,
    },
    /// A sealed value or blob was sealed with the other profile's suite than its store's.
    #[error(
        "{what} was sealed with {found} (the {} profile), but this store uses {expected} (the {} \
         profile)",
        found.profile(),
        expected.profile()
    )]
    SuiteMismatch {
        /// "sealed value" or "encrypted blob".
        what: &'static str,
        /// The suite its format byte names.
        found: Suite,
        /// The store's suite.
        expected: Suite,
    },
    /// The cipher, key derivation or random source of a suite failed (ring or Tongsuo), or the
    /// suite is not in this build: not a verdict on the data.
    #[error("{suite} {op} failed: {source}")]
    Cipher {
        /// The suite.
        suite: Suite,
        /// What was being done ("seal", "key derivation", ...).
        op: &'static str,
        /// The library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A sealed value is too short or has an unknown marker or version.
    #[error("sealed value is malformed: {reason}")]
    ValueFormat {
        /// What is wrong.
        reason: &'static str,
    },
    /// A sealed value was altered, moved to another slot, or sealed under another data key.
    #[error(
        "sealed value does not authenticate (altered, moved from another record, or another store's key)"
    )]
    ValueNotAuthentic,
    /// An encrypted blob's header is malformed.
    #[error("encrypted blob header is malformed: {reason}")]
    BlobHeaderFormat {
        /// What is wrong.
        reason: String,
    },
    /// An encrypted blob's header was altered (or the blob is another store's).
    #[error("encrypted blob header does not authenticate")]
    BlobHeaderNotAuthentic,
    /// A chunk was altered, moved, dropped or the file was truncated or extended after it.
    #[error("chunk {index} does not authenticate")]
    ChunkNotAuthentic {
        /// The chunk's index (0-based).
        index: u64,
    },
    /// The file ends inside chunk `index` (or has no chunk at all).
    #[error("encrypted blob is truncated: chunk {index} is incomplete")]
    ChunkTruncated {
        /// The chunk's index (0-based).
        index: u64,
    },
    /// A chunk of the wrong length was given to seal: a non-last chunk holds exactly the chunk
    /// size, the last one at most that.
    #[error(
        "chunk {index} has {len} bytes of plaintext: a non-last chunk holds exactly {chunk_size}, the last at most that"
    )]
    ChunkLength {
        /// The chunk's index.
        index: u64,
        /// Its plaintext length.
        len: usize,
        /// The blob's chunk size.
        chunk_size: u32,
    },
    /// A reader was asked to start beyond the end of the content.
    #[error("offset {offset} is beyond the end of the content ({len} bytes)")]
    OffsetBeyondEnd {
        /// The requested plaintext offset.
        offset: u64,
        /// The content's plaintext length.
        len: u64,
    },
    /// Reading or writing an encrypted blob failed.
    #[error("encrypted blob: {0}")]
    Io(#[source] io::Error),
}

impl From<AtRestError> for io::Error {
    /// Authentication failures become `InvalidData` (the message names the chunk); I/O errors
    /// stay what they were, so a full disk still reads as one.
    fn from(e: AtRestError) -> Self {
        match e {
            AtRestError::Io(e) => e,
            AtRestError::OffsetBeyondEnd { .. } => io::Error::new(io::ErrorKind::InvalidInput, e),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}
