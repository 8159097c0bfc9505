//! How a call to the hub failed, as the uplink acts on it: refused for good (record the answer,
//! never send the same thing again), retry (the hub or the network), or a failure of this node
//! (its store or content files). The rules per call are in docs/delivery.md ("Statements the
//! hub refuses").

use exchange_core::error::{ErrorCode, ServiceError};
use tonic::Code;

/// What the uplink was doing when a call failed: the same status code can mean "for good" for
/// one call and "try again" for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// Uploading content and submitting a document. FAILED_PRECONDITION here means the hub's
    /// copy of the content is incomplete (an upload cut off): retrying uploads the rest.
    Submit,
    /// Sending a signed statement (签收, 退回, recall, 补发, 催办, recall acknowledgement).
    /// FAILED_PRECONDITION here means the statement contradicts what the hub already recorded
    /// (the delivery ended otherwise, the document was recalled): the same signed statement
    /// will meet the same answer, so it is final.
    Statement,
}

/// Why a call to the hub did not go through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum UplinkError {
    /// The hub refused, and would refuse the same request again.
    #[error("refused by the hub ({code:?}): {message}")]
    Refused {
        /// The gRPC status code.
        code: Code,
        /// The hub's message (names the field and the limit).
        message: String,
        /// The status details: the hub's signed REFUSED evidence, for a refused document.
        details: tonic::codegen::Bytes,
    },
    /// The hub is unreachable, busy, or answered something this node cannot use: retry after
    /// the backoff delay.
    #[error("hub unavailable ({code:?}): {message}")]
    Retry {
        /// The gRPC status code.
        code: Code,
        /// What happened.
        message: String,
    },
    /// This node could not do its part (its store, a content file): retry after the backoff
    /// delay; nothing was refused.
    #[error("on this node: {0}")]
    Local(ServiceError),
}

impl UplinkError {
    /// Classifies the hub's answer to `call`.
    pub(crate) fn from_status(call: Call, s: tonic::Status) -> Self {
        let final_for_any = matches!(
            s.code(),
            Code::InvalidArgument
                | Code::PermissionDenied
                | Code::AlreadyExists
                | Code::NotFound
                | Code::Unauthenticated
        );
        let final_here = call == Call::Statement && s.code() == Code::FailedPrecondition;
        if final_for_any || final_here {
            UplinkError::Refused {
                code: s.code(),
                message: s.message().to_owned(),
                details: s.details().to_vec().into(),
            }
        } else {
            UplinkError::Retry {
                code: s.code(),
                message: s.message().to_owned(),
            }
        }
    }

    /// An answer from the hub that this node cannot use (no acceptance, a bad signature): not a
    /// refusal, so the item is retried.
    pub(crate) fn unusable(message: impl Into<String>) -> Self {
        UplinkError::Retry {
            code: Code::Internal,
            message: message.into(),
        }
    }

    /// Whether this node's own stored data for the item is damaged (a record or content that
    /// fails to decode or to authenticate): sending it again cannot succeed.
    pub(crate) fn is_damage(&self) -> bool {
        matches!(self, UplinkError::Local(e) if e.code == ErrorCode::DataLoss)
    }
}

impl From<ServiceError> for UplinkError {
    fn from(e: ServiceError) -> Self {
        UplinkError::Local(e)
    }
}

impl From<exchange_core::store::StoreError> for UplinkError {
    /// A stored record that cannot be read back is damage (DATA_LOSS: it does not heal by
    /// retrying); anything else is this node's store being unavailable for now.
    fn from(e: exchange_core::store::StoreError) -> Self {
        match e {
            e @ exchange_core::store::StoreError::Decode { .. } => {
                UplinkError::Local(ServiceError::new(ErrorCode::DataLoss, e.to_string()))
            }
            e => UplinkError::Local(e.into()),
        }
    }
}

impl From<UplinkError> for tonic::Status {
    /// For the delivery stream, which reports through `tonic::Status`.
    fn from(e: UplinkError) -> Self {
        match e {
            UplinkError::Refused { code, message, .. } | UplinkError::Retry { code, message } => {
                tonic::Status::new(code, message)
            }
            UplinkError::Local(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(call: Call, code: Code) -> &'static str {
        match UplinkError::from_status(call, tonic::Status::new(code, "m")) {
            UplinkError::Refused { .. } => "refused",
            UplinkError::Retry { .. } => "retry",
            UplinkError::Local(_) => "local",
        }
    }

    #[test]
    fn a_statement_contradicting_the_hub_is_final_but_a_submission_missing_content_retries() {
        assert_eq!(
            classify(Call::Statement, Code::FailedPrecondition),
            "refused"
        );
        assert_eq!(classify(Call::Submit, Code::FailedPrecondition), "retry");
    }

    #[test]
    fn refusals_are_final_and_outages_retry_for_every_call() {
        for call in [Call::Submit, Call::Statement] {
            for code in [
                Code::InvalidArgument,
                Code::PermissionDenied,
                Code::AlreadyExists,
                Code::NotFound,
                Code::Unauthenticated,
            ] {
                assert_eq!(classify(call, code), "refused", "{call:?} {code:?}");
            }
            for code in [
                Code::Unavailable,
                Code::DeadlineExceeded,
                Code::ResourceExhausted,
                Code::Aborted,
                Code::Internal,
                Code::Unknown,
                Code::Cancelled,
            ] {
                assert_eq!(classify(call, code), "retry", "{call:?} {code:?}");
            }
        }
    }
}
