//! The gRPC boundary: every refusal a service returns is a [`ServiceError`] with a closed
//! [`ErrorCode`], mapped to a `tonic::Status` in exactly one place.

use crate::{signing::SignError, store::StoreError};

/// The kinds of refusal the exchange's services return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A field is missing, malformed or over a limit; the message names it.
    InvalidArgument,
    /// No such document (for this caller).
    NotFound,
    /// The caller may not do this (another department's document, a sender it is not).
    PermissionDenied,
    /// The same id with different content.
    AlreadyExists,
    /// Not possible in the current state (content not uploaded, already rejected, ...).
    FailedPrecondition,
    /// Out of disk or over a size limit.
    ResourceExhausted,
    /// Storage or a peer is unavailable: retry later.
    Unavailable,
    /// Stored content failed its integrity check (altered on disk): it does not heal by
    /// retrying; the reader refuses it rather than pass altered bytes on.
    DataLoss,
    /// A bug: should never happen.
    Internal,
}

/// A refusal with a message for the caller.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    /// The kind.
    pub code: ErrorCode,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
    /// Signed evidence of the refusal itself (the hub's REFUSED), sent as the status details.
    pub evidence: Option<Box<exchange_proto::v1::SignedEvidence>>,
}

impl ServiceError {
    /// A refusal of kind `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError {
            code,
            message: message.into(),
            evidence: None,
        }
    }
    /// Shorthand for [`ErrorCode::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    /// Shorthand for [`ErrorCode::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    /// Shorthand for [`ErrorCode::PermissionDenied`].
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }
    /// Shorthand for [`ErrorCode::FailedPrecondition`].
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::FailedPrecondition, message)
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        use tonic::Code;
        let code = match e.code {
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::PermissionDenied => Code::PermissionDenied,
            ErrorCode::AlreadyExists => Code::AlreadyExists,
            ErrorCode::FailedPrecondition => Code::FailedPrecondition,
            ErrorCode::ResourceExhausted => Code::ResourceExhausted,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::DataLoss => Code::DataLoss,
            ErrorCode::Internal => Code::Internal,
        };
        match e.evidence {
            Some(ev) => tonic::Status::with_details(
                code,
                e.message,
                tonic::codegen::Bytes::from(prost::Message::encode_to_vec(ev.as_ref())),
            ),
            None => tonic::Status::new(code, e.message),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        let code = if e.is_disk_full() {
            ErrorCode::ResourceExhausted
        } else {
            ErrorCode::Unavailable
        };
        ServiceError::new(code, format!("storage: {e}"))
    }
}

impl From<SignError> for ServiceError {
    fn from(e: SignError) -> Self {
        match e {
            // This side could not sign or hash: not the caller's fault.
            e @ SignError::Crypto(_) => {
                ServiceError::new(ErrorCode::Internal, format!("signature: {e}"))
            }
            e => ServiceError::denied(format!("signature: {e}")),
        }
    }
}
