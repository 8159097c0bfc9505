//! The one place that owns the document's state machines.
//!
//! At the sender, each recipient's delivery moves
//! `Queued → Accepted → Delivered → Confirmed | Rejected`. Evidence can arrive out of order (the
//! recipient's delivery receipt may overtake the hub's acceptance on another connection), so an
//! older step arriving late is absorbed — its time is recorded but the state never moves back.
//! The three endings (confirmed, rejected, not delivered) exclude each other.
//!
//! At the recipient, an inbox entry moves `New → Confirmed | Rejected`, once; repeating the same
//! action is harmless, the opposite one is refused.

use std::fmt;

use exchange_proto::v1 as pb;

use crate::document::EvidenceKind;

/// A transition that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot go from {from} to {to}")]
pub struct StateError {
    /// The current state.
    pub from: &'static str,
    /// The refused target.
    pub to: &'static str,
}

/// What a transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition<S> {
    /// The state moved to the new value.
    Changed(S),
    /// Nothing changes (a repeated or late step).
    Unchanged(S),
}

impl<S: Copy> Transition<S> {
    /// The state after the transition.
    pub fn state(self) -> S {
        match self {
            Transition::Changed(s) | Transition::Unchanged(s) => s,
        }
    }
}

/// A recipient's delivery, as the sender sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// In the sender node's outbox.
    Queued,
    /// Accepted and stored by the hub.
    Accepted,
    /// On the recipient node's disk.
    Delivered,
    /// 签收 by a clerk.
    Confirmed,
    /// 退回 by a clerk.
    Rejected,
    /// The recipient node refused it (its signature or content did not verify), or it expired.
    NotDelivered,
    /// The hub refused the document at submission.
    Refused,
}

impl DeliveryState {
    fn rank(self) -> u8 {
        match self {
            DeliveryState::Queued => 0,
            DeliveryState::Accepted => 1,
            DeliveryState::Delivered => 2,
            DeliveryState::Confirmed
            | DeliveryState::Rejected
            | DeliveryState::NotDelivered
            | DeliveryState::Refused => 3,
        }
    }

    /// Stable name for output and logs.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Accepted => "accepted",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Confirmed => "confirmed",
            DeliveryState::Rejected => "rejected",
            DeliveryState::NotDelivered => "not-delivered",
            DeliveryState::Refused => "refused",
        }
    }

    /// The state that evidence of `kind` proves.
    pub fn proven_by(kind: EvidenceKind) -> Self {
        match kind {
            EvidenceKind::Accepted => DeliveryState::Accepted,
            EvidenceKind::Delivered => DeliveryState::Delivered,
            EvidenceKind::Confirmed => DeliveryState::Confirmed,
            EvidenceKind::Rejected => DeliveryState::Rejected,
            EvidenceKind::NotDelivered => DeliveryState::NotDelivered,
            EvidenceKind::Refused => DeliveryState::Refused,
        }
    }

    /// Applies evidence of `kind`.
    pub fn apply(self, kind: EvidenceKind) -> Result<Transition<Self>, StateError> {
        let target = Self::proven_by(kind);
        if self.rank() == 3 && target.rank() == 3 && self != target {
            return Err(StateError {
                from: self.name(),
                to: target.name(),
            });
        }
        if target.rank() <= self.rank() {
            Ok(Transition::Unchanged(self))
        } else {
            Ok(Transition::Changed(target))
        }
    }

    /// Stable code for storage.
    pub fn code(self) -> u8 {
        match self {
            DeliveryState::Queued => 1,
            DeliveryState::Accepted => 2,
            DeliveryState::Delivered => 3,
            DeliveryState::Confirmed => 4,
            DeliveryState::Rejected => 5,
            DeliveryState::NotDelivered => 6,
            DeliveryState::Refused => 7,
        }
    }

    /// From a stored code.
    pub fn from_code(c: u8) -> Option<Self> {
        [
            Self::Queued,
            Self::Accepted,
            Self::Delivered,
            Self::Confirmed,
            Self::Rejected,
            Self::NotDelivered,
            Self::Refused,
        ]
        .into_iter()
        .find(|s| s.code() == c)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<DeliveryState> for pb::RecipientState {
    fn from(s: DeliveryState) -> Self {
        match s {
            DeliveryState::Queued => pb::RecipientState::Queued,
            DeliveryState::Accepted => pb::RecipientState::Accepted,
            DeliveryState::Delivered => pb::RecipientState::Delivered,
            DeliveryState::Confirmed => pb::RecipientState::Confirmed,
            DeliveryState::Rejected => pb::RecipientState::Rejected,
            DeliveryState::NotDelivered => pb::RecipientState::NotDelivered,
            DeliveryState::Refused => pb::RecipientState::Refused,
        }
    }
}

/// A received document, as the recipient sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboxState {
    /// Received, not yet handled by a clerk.
    New,
    /// 签收.
    Confirmed,
    /// 退回.
    Rejected,
}

/// What a clerk does with a received document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClerkAction {
    /// 签收.
    Confirm,
    /// 退回.
    Reject,
}

impl InboxState {
    /// Stable name for output and logs.
    pub fn name(self) -> &'static str {
        match self {
            InboxState::New => "new",
            InboxState::Confirmed => "confirmed",
            InboxState::Rejected => "rejected",
        }
    }

    /// Applies a clerk's action.
    pub fn apply(self, action: ClerkAction) -> Result<Transition<Self>, StateError> {
        let target = match action {
            ClerkAction::Confirm => InboxState::Confirmed,
            ClerkAction::Reject => InboxState::Rejected,
        };
        match self {
            InboxState::New => Ok(Transition::Changed(target)),
            s if s == target => Ok(Transition::Unchanged(s)),
            s => Err(StateError {
                from: s.name(),
                to: target.name(),
            }),
        }
    }

    /// Stable code for storage.
    pub fn code(self) -> u8 {
        match self {
            InboxState::New => 1,
            InboxState::Confirmed => 2,
            InboxState::Rejected => 3,
        }
    }

    /// From a stored code.
    pub fn from_code(c: u8) -> Option<Self> {
        [Self::New, Self::Confirmed, Self::Rejected]
            .into_iter()
            .find(|s| s.code() == c)
    }
}

impl From<InboxState> for pb::InboxState {
    fn from(s: InboxState) -> Self {
        match s {
            InboxState::New => pb::InboxState::New,
            InboxState::Confirmed => pb::InboxState::Confirmed,
            InboxState::Rejected => pb::InboxState::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DeliveryState::*, *};

    #[test]
    fn delivery_moves_forward_and_absorbs_late_evidence() {
        assert_eq!(
            Queued.apply(EvidenceKind::Accepted),
            Ok(Transition::Changed(Accepted))
        );
        assert_eq!(
            Queued.apply(EvidenceKind::Delivered),
            Ok(Transition::Changed(Delivered))
        );
        assert_eq!(
            Delivered.apply(EvidenceKind::Accepted),
            Ok(Transition::Unchanged(Delivered))
        );
        assert_eq!(
            Confirmed.apply(EvidenceKind::Delivered),
            Ok(Transition::Unchanged(Confirmed))
        );
        assert_eq!(
            Confirmed.apply(EvidenceKind::Confirmed),
            Ok(Transition::Unchanged(Confirmed))
        );
        assert!(Confirmed.apply(EvidenceKind::Rejected).is_err());
        assert!(Rejected.apply(EvidenceKind::Confirmed).is_err());
    }

    #[test]
    fn inbox_is_handled_once() {
        assert_eq!(
            InboxState::New.apply(ClerkAction::Confirm),
            Ok(Transition::Changed(InboxState::Confirmed))
        );
        assert_eq!(
            InboxState::Confirmed.apply(ClerkAction::Confirm),
            Ok(Transition::Unchanged(InboxState::Confirmed))
        );
        assert!(InboxState::Confirmed.apply(ClerkAction::Reject).is_err());
        for s in [InboxState::New, InboxState::Confirmed, InboxState::Rejected] {
            assert_eq!(InboxState::from_code(s.code()), Some(s));
        }
    }
}
