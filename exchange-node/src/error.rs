//! Why the node refuses a request, a clerk's action or a piece of evidence, in its own terms.
//! The store and the office return these; the gRPC layer maps each to a status code in one
//! place (`impl From<NodeError> for ServiceError`, in `api`), so the codes and messages callers
//! see are decided there and nowhere else.

use exchange_core::{
    ids::{Address, DeptId, DocumentId},
    signing::SignError,
    state::{DeliveryState, StateError},
    store::StoreError,
};

/// A refusal by the node, or a failure of its store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NodeError {
    /// The store failed, or a stored record is unreadable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed inside the crypto module (never the caller's fault).
    #[error("signing: {0}")]
    Sign(#[from] SignError),
    /// The department's signing certificate cannot be used now: nothing it signs would be
    /// accepted by the hub.
    #[error(
        "{why} ({cert}): the hub would refuse anything this department signs; ask the \
         administrator for a new one (exchange-certs issue-dept) and restart the node"
    )]
    CannotSign {
        /// What is wrong with the certificate.
        why: String,
        /// Its path.
        cert: String,
    },
    /// Evidence pushed by the hub about a document this node did not send.
    #[error("evidence for {0}, which this node did not send")]
    EvidenceForUnknown(DocumentId),
    /// Evidence about another version (header digest) of one of our documents.
    #[error("evidence for {0} names another version of the document")]
    OtherVersion(DocumentId),
    /// Evidence the recipient's delivery state does not allow.
    #[error("{id} at {dept}: {source}")]
    Delivery {
        /// The document.
        id: DocumentId,
        /// The recipient.
        dept: Address,
        /// The refused transition.
        #[source]
        source: StateError,
    },
    /// No such document in the inbox.
    #[error("no received document {0}")]
    NotReceived(DocumentId),
    /// A clerk's 签收 or 退回 of a document its sender recalled before.
    #[error(
        "document {0} was recalled by its sender (撤回): it can no longer be signed for or \
         returned"
    )]
    RecalledBySender(DocumentId),
    /// A recall acknowledgement where there is no recall to acknowledge.
    #[error("document {id} has no recall to acknowledge (it is {state})")]
    NoRecallToAcknowledge {
        /// The document.
        id: DocumentId,
        /// The inbox state's name.
        state: &'static str,
    },
    /// A clerk's action the inbox entry's state does not allow (退回 after 签收, ...).
    #[error("document {id}: {source}")]
    Inbox {
        /// The document.
        id: DocumentId,
        /// The refused transition.
        #[source]
        source: StateError,
    },
    /// A statement about a document this department did not send.
    #[error("{0} is not a document this department sent")]
    NotSent(DocumentId),
    /// A statement about a document the hub refused at submission.
    #[error("document {id} was refused by the hub ({reason}); there is nothing to change")]
    RefusedByHub {
        /// The document.
        id: DocumentId,
        /// The hub's reason.
        reason: String,
    },
    /// A statement about a document the hub has not accepted yet.
    #[error(
        "document {0} is not accepted by the hub yet; try again once `status {0}` shows it \
         accepted"
    )]
    NotAccepted(DocumentId),
    /// 补发 after 撤回.
    #[error("document {0} was recalled (撤回); it cannot get new recipients")]
    RecalledNoAdditions(DocumentId),
    /// 催办 after 撤回.
    #[error("document {0} was recalled (撤回); there is nothing to remind of")]
    RecalledNoReminders(DocumentId),
    /// 补发 naming the sender itself.
    #[error("to_depts: {0} is the sender itself")]
    SenderItself(DeptId),
    /// 催办 naming a department that is not a recipient.
    #[error("recipients: {dept} is not a recipient of {id}")]
    NotARecipient {
        /// The document.
        id: DocumentId,
        /// The department named.
        dept: Address,
    },
    /// 催办 naming a recipient with nothing to do (finished, or not delivered yet).
    #[error("document {id} at {dept} is {state}: nothing to remind of")]
    NothingToRemindAt {
        /// The document.
        id: DocumentId,
        /// The recipient named.
        dept: Address,
        /// Its delivery state.
        state: DeliveryState,
    },
    /// 催办 with no recipient left to remind.
    #[error(
        "document {0}: every recipient has finished with it (or it is not delivered to anyone \
         yet); nothing to remind of"
    )]
    NothingToRemind(DocumentId),
}

impl NodeError {
    /// Whether trying again later may succeed: a store that is failing (or full), as opposed
    /// to a refusal or a record that cannot be read.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, NodeError::Store(e) if !matches!(e, StoreError::Decode { .. }))
    }
}
