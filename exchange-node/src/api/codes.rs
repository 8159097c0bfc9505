//! The one place a node refusal ([`NodeError`]) becomes a gRPC code: the handlers, the submit
//! path and the uplink all convert through it, so a refusal reads the same wherever it
//! surfaces. The message is the error's own.

use exchange_core::error::{ErrorCode, ServiceError};

use crate::error::NodeError;

/// The one place a node refusal becomes a gRPC code (the message is the error's own).
impl From<NodeError> for ServiceError {
    fn from(e: NodeError) -> Self {
        let e = match e {
            NodeError::Store(s) => return ServiceError::from(s),
            NodeError::Sign(s) => return ServiceError::from(s),
            e => e,
        };
        let code = match &e {
            // Returned above, with their own codes and messages.
            NodeError::Store(_) => ErrorCode::Unavailable,
            NodeError::Sign(_) => ErrorCode::Internal,
            NodeError::EvidenceForUnknown(_)
            | NodeError::NotReceived(_)
            | NodeError::NotSent(_) => ErrorCode::NotFound,
            NodeError::OtherVersion(_)
            | NodeError::SenderItself(_)
            | NodeError::NotARecipient { .. } => ErrorCode::InvalidArgument,
            NodeError::CannotSign { .. }
            | NodeError::Delivery { .. }
            | NodeError::RecalledBySender(_)
            | NodeError::NoRecallToAcknowledge { .. }
            | NodeError::Inbox { .. }
            | NodeError::RefusedByHub { .. }
            | NodeError::NotAccepted(_)
            | NodeError::RecalledNoAdditions(_)
            | NodeError::RecalledNoReminders(_)
            | NodeError::NothingToRemindAt { .. }
            | NodeError::NothingToRemind(_) => ErrorCode::FailedPrecondition,
        };
        ServiceError::new(code, e.to_string())
    }
}
