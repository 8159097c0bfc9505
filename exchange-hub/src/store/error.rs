//! Why the store refuses a step: the request contradicts what is stored. Kept apart from
//! storage failures ([`StoreError`], inside [`StepError::Store`]) so that callers can tell a
//! refusal (final: retrying does not help) from an outage (retry later). The gRPC layer maps
//! each variant to a status code, in `crate::service`.

use exchange_core::{
    ids::{Address, DeptId, DocumentId},
    state::StateError,
    store::StoreError,
};

/// A step the hub's store refused, or could not make.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    /// The evidence names no recipient, and the step is about one.
    #[error("evidence.recipient: required")]
    NoRecipient,
    /// The department is not a recipient of the document (named in its header or added).
    #[error("{dept} is not a recipient of {doc}")]
    NotRecipient {
        /// The document.
        doc: DocumentId,
        /// The department that is not a recipient.
        dept: Address,
    },
    /// The document id was accepted before, with a different header.
    #[error("document {doc} was already submitted with different content")]
    Conflict {
        /// The document id.
        doc: DocumentId,
    },
    /// The evidence contradicts the delivery's state (e.g. REJECTED after CONFIRMED).
    #[error("document {doc} at {dept}: {source}")]
    State {
        /// The document.
        doc: DocumentId,
        /// The recipient.
        dept: Address,
        /// The refused transition.
        #[source]
        source: StateError,
    },
    /// The sender recalled the document: it gets no new recipients.
    #[error("document {doc} was recalled (撤回); it cannot get new recipients")]
    Recalled {
        /// The document.
        doc: DocumentId,
    },
    /// A recipient acknowledged a recall that its sender never made.
    #[error("document {doc} was not recalled (撤回): there is no recall to acknowledge")]
    NotRecalled {
        /// The document.
        doc: DocumentId,
    },
    /// Another hub took over pushing to the department (its push lease, `crate::lease`): this
    /// hub no longer changes the department's queue. Nothing is committed; the node's stream
    /// ends and the node reconnects.
    #[error("another hub ({holder}) now pushes to {dept}; nothing was changed")]
    Fenced {
        /// The department.
        dept: DeptId,
        /// The hub holding the lease now ("" if none).
        holder: String,
    },
    /// The recipient is a department of another exchange, and this hub does not relay to
    /// other exchanges (docs/federation.md).
    #[error("{addr} is a department of another exchange, which this hub has no link to")]
    Unroutable {
        /// The recipient.
        addr: Address,
    },
    /// Storage failed; nothing of the step is committed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StepError {
    /// Whether the step was refused because of the document's or delivery's state (a
    /// contradicting step, an ended delivery, a recalled document): final for this step, where
    /// a storage failure may pass.
    pub(crate) fn is_state_conflict(&self) -> bool {
        matches!(
            self,
            StepError::State { .. } | StepError::Recalled { .. } | StepError::NotRecalled { .. }
        )
    }
}
