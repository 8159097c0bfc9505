//! What can go wrong with a blob, and how errors travel out of blocking jobs and readers
//! (through `io::Error`) and back.

use std::io;

use crate::{atrest::AtRestError, crypto::CryptoError, signing::Digest};

/// A blob operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The filesystem failed (a full disk shows here).
    #[error("blob storage: {0}")]
    Io(io::Error),
    /// The bytes do not hash to the expected digest or size.
    #[error(
        "content does not match its digest {expected}: got {actual_size} bytes hashing to {actual}"
    )]
    Mismatch {
        /// The digest that was promised.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
        /// How many bytes arrived.
        actual_size: u64,
    },
    /// More bytes than the declared size, or a resume at the wrong offset.
    #[error("{0}")]
    Protocol(String),
    /// Another transfer of the same blob is in progress here; try again shortly.
    #[error("content {0} is being received by another transfer")]
    Busy(Digest),
    /// The blob is stored encrypted and this store was opened without data keys.
    #[error(
        "content {0} is encrypted at rest and no data key is configured ([encryption] kek): it cannot be read"
    )]
    Encrypted(Digest),
    /// A stored encrypted blob does not authenticate: altered, truncated, or another store's.
    #[error("stored content {digest} failed its integrity check: {source}")]
    Corrupt {
        /// The blob.
        digest: Digest,
        /// Which chunk (or the header) failed, and how.
        #[source]
        source: Box<AtRestError>,
    },
    /// The store's digest algorithm cannot be computed: SM3 in a build without the `shangmi`
    /// feature, or a failure of the crypto module.
    #[error("content digest: {0}")]
    Digest(#[source] CryptoError),
    /// The database that holds content blobs (a hub on PostgreSQL) failed or refused the
    /// transaction; nothing of it is committed.
    #[error("blob storage: {0}")]
    Store(#[source] crate::store::StoreError),
    /// Small content kept in the store (not in a blob file) cannot be read back: its row fails
    /// to decode or to authenticate. Like [`BlobError::Corrupt`], it does not heal by retrying.
    #[error("stored content {digest} is unreadable: {reason}")]
    Unreadable {
        /// The content.
        digest: Digest,
        /// What the store reported.
        reason: String,
    },
}

impl BlobError {
    /// Whether the disk is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            BlobError::Io(e) => e.kind() == io::ErrorKind::StorageFull,
            BlobError::Store(e) => e.is_disk_full(),
            _ => false,
        }
    }

    /// Whether stored content is damaged (altered on disk or by it): retrying cannot read it.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            BlobError::Corrupt { .. } | BlobError::Unreadable { .. }
        )
    }

    /// An at-rest failure on blob `digest`: I/O stays I/O (a full disk still reads as one), an
    /// offset past the end is the caller's mistake, anything else is damage.
    pub(super) fn at_rest(digest: Digest, e: AtRestError) -> Self {
        match e {
            AtRestError::Io(e) => BlobError::Io(e),
            e @ AtRestError::OffsetBeyondEnd { .. } => BlobError::Protocol(e.to_string()),
            source => BlobError::Corrupt {
                digest,
                source: Box::new(source),
            },
        }
    }
}

/// A resume the partial file does not allow: carried through `io::Error` out of the blocking
/// job, and turned back into [`BlobError::Protocol`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct ResumeError(pub(super) String);

impl From<crate::store::StoreError> for BlobError {
    fn from(e: crate::store::StoreError) -> Self {
        BlobError::Store(e)
    }
}

impl From<io::Error> for BlobError {
    /// Also unwraps a [`BlobError`] that a [`super::BlobReader`] carried through `io::Error`
    /// (damaged content stays [`BlobError::Corrupt`] for the caller's error mapping).
    fn from(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<ResumeError>()) {
            return BlobError::Protocol(e.to_string());
        }
        if e.get_ref().is_some_and(|inner| inner.is::<BlobError>()) {
            let kind = e.kind();
            return match e.into_inner().map(|inner| inner.downcast::<BlobError>()) {
                Some(Ok(blob)) => *blob,
                _ => BlobError::Io(io::Error::from(kind)),
            };
        }
        BlobError::Io(e)
    }
}
