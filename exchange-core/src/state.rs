//! The one place that owns the document's state machines.
//!
//! At the sender, each recipient's delivery moves
//! `Queued → Accepted → Delivered → Confirmed | Rejected`. Evidence can arrive out of order (the
//! recipient's delivery receipt may overtake the hub's acceptance on another connection), so an
//! older step arriving late is absorbed — its time is recorded but the state never moves back.
//! The endings (confirmed, rejected, not delivered, withdrawn, recalled) exclude each other.
//!
//! A recall (撤回) ends a delivery in one of three ways: `Withdrawn` (the hub still held it: the
//! recipient never did), `Recalled` (the recipient held it and no clerk had signed for it), or
//! `Confirmed → RecallAcknowledged` (a clerk had signed for it and acknowledged the recall).
//! A rejected (退回) delivery is already back with the sender and stays rejected.
//!
//! At the recipient, an inbox entry moves `New → Confirmed | Rejected`, once; repeating the same
//! action is harmless, the opposite one is refused. A recall moves `New → Recalled` and
//! `Confirmed → RecallPending → RecallAcknowledged` (the last by a clerk's action).

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

/// A stored state code this build does not know: a corrupted record, or one written by a newer
/// version. Reading it as any particular state would misreport the document, so it is an error
/// the caller reports with the record's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} state code {code}")]
pub struct UnknownState {
    /// Which state machine: `delivery` or `inbox`.
    pub what: &'static str,
    /// The stored code.
    pub code: u32,
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
    /// Recalled before it reached the recipient.
    Withdrawn,
    /// Recalled from the recipient's inbox before 签收.
    Recalled,
    /// Recalled after 签收; the recipient acknowledged.
    RecallAcknowledged,
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
            | DeliveryState::Refused
            | DeliveryState::Withdrawn
            | DeliveryState::Recalled => 3,
            DeliveryState::RecallAcknowledged => 4,
        }
    }

    /// Whether nothing more is expected of the recipient (no reminder makes sense).
    pub fn is_final(self) -> bool {
        self.rank() >= 3
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
            DeliveryState::Withdrawn => "withdrawn",
            DeliveryState::Recalled => "recalled",
            DeliveryState::RecallAcknowledged => "recall-acknowledged",
        }
    }

    /// The state that evidence of `kind` proves; `None` for the sender's own statements
    /// (recall, addition, reminder), which move no recipient's delivery by themselves.
    pub fn proven_by(kind: EvidenceKind) -> Option<Self> {
        Some(match kind {
            EvidenceKind::Accepted => DeliveryState::Accepted,
            EvidenceKind::Delivered => DeliveryState::Delivered,
            EvidenceKind::Confirmed => DeliveryState::Confirmed,
            EvidenceKind::Rejected => DeliveryState::Rejected,
            EvidenceKind::NotDelivered => DeliveryState::NotDelivered,
            EvidenceKind::Refused => DeliveryState::Refused,
            EvidenceKind::Withdrawn => DeliveryState::Withdrawn,
            EvidenceKind::Recalled => DeliveryState::Recalled,
            EvidenceKind::RecallAcknowledged => DeliveryState::RecallAcknowledged,
            EvidenceKind::Recall
            | EvidenceKind::RecipientAdded
            | EvidenceKind::Reminded
            | EvidenceKind::Relayed => {
                return None;
            }
        })
    }

    /// Applies evidence of `kind`.
    pub fn apply(self, kind: EvidenceKind) -> Result<Transition<Self>, StateError> {
        let Some(target) = Self::proven_by(kind) else {
            return Ok(Transition::Unchanged(self));
        };
        let refused = Err(StateError {
            from: self.name(),
            to: target.name(),
        });
        match (self, target) {
            // Only a confirmed delivery (or one whose confirmation is still on its way) can
            // have its recall acknowledged; a late confirmation is absorbed afterwards.
            (DeliveryState::RecallAcknowledged, DeliveryState::Confirmed) => {
                return Ok(Transition::Unchanged(self));
            }
            (s, DeliveryState::RecallAcknowledged) if s.rank() < 3 => {
                return Ok(Transition::Changed(target));
            }
            (DeliveryState::Confirmed, DeliveryState::RecallAcknowledged) => {
                return Ok(Transition::Changed(target));
            }
            (s, DeliveryState::RecallAcknowledged) if s != target => return refused,
            (DeliveryState::RecallAcknowledged, t) if t.rank() == 3 => return refused,
            _ => {}
        }
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
            DeliveryState::Withdrawn => 8,
            DeliveryState::Recalled => 9,
            DeliveryState::RecallAcknowledged => 10,
        }
    }

    /// From a stored code (stored as `u32` in protobuf records); an unknown code is an error.
    pub fn try_from_code(code: u32) -> Result<Self, UnknownState> {
        u8::try_from(code)
            .ok()
            .and_then(Self::from_code)
            .ok_or(UnknownState {
                what: "delivery",
                code,
            })
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
            Self::Withdrawn,
            Self::Recalled,
            Self::RecallAcknowledged,
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
            DeliveryState::Withdrawn => pb::RecipientState::Withdrawn,
            DeliveryState::Recalled => pb::RecipientState::Recalled,
            DeliveryState::RecallAcknowledged => pb::RecipientState::RecallAcknowledged,
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
    /// Recalled by the sender before 签收: it can no longer be signed for.
    Recalled,
    /// Recalled by the sender after 签收: a clerk must acknowledge the recall.
    RecallPending,
    /// The recall after 签收 was acknowledged.
    RecallAcknowledged,
}

/// What a clerk does with a received document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClerkAction {
    /// 签收.
    Confirm,
    /// 退回.
    Reject,
    /// Acknowledge the sender's recall of a document already signed for.
    AcknowledgeRecall,
}

/// What the sender's recall does to an inbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecallEffect {
    /// Not yet signed for: now recalled (the node signs RECALLED).
    Recalled,
    /// Already signed for: a clerk must acknowledge it.
    AckRequired,
    /// Already returned (退回) or already recalled: nothing changes.
    AlreadyDone,
}

impl InboxState {
    /// Stable name for output and logs.
    pub fn name(self) -> &'static str {
        match self {
            InboxState::New => "new",
            InboxState::Confirmed => "confirmed",
            InboxState::Rejected => "rejected",
            InboxState::Recalled => "recalled",
            InboxState::RecallPending => "recall-pending",
            InboxState::RecallAcknowledged => "recall-acknowledged",
        }
    }

    /// Applies a clerk's action.
    pub fn apply(self, action: ClerkAction) -> Result<Transition<Self>, StateError> {
        let target = match action {
            ClerkAction::Confirm => InboxState::Confirmed,
            ClerkAction::Reject => InboxState::Rejected,
            ClerkAction::AcknowledgeRecall => InboxState::RecallAcknowledged,
        };
        let refused = |s: InboxState| {
            Err(StateError {
                from: s.name(),
                to: target.name(),
            })
        };
        match (self, action) {
            (InboxState::New, ClerkAction::Confirm | ClerkAction::Reject)
            | (InboxState::RecallPending, ClerkAction::AcknowledgeRecall) => {
                Ok(Transition::Changed(target))
            }
            // A confirmation repeated after the recall was acknowledged is harmless too.
            (InboxState::RecallPending | InboxState::RecallAcknowledged, ClerkAction::Confirm) => {
                Ok(Transition::Unchanged(self))
            }
            (s, _) if s == target => Ok(Transition::Unchanged(s)),
            (s, _) => refused(s),
        }
    }

    /// The sender's recall arrives: the new state and what it did.
    pub fn recall(self) -> (Self, RecallEffect) {
        match self {
            InboxState::New => (InboxState::Recalled, RecallEffect::Recalled),
            InboxState::Confirmed => (InboxState::RecallPending, RecallEffect::AckRequired),
            InboxState::RecallPending => (self, RecallEffect::AckRequired),
            InboxState::Rejected | InboxState::Recalled | InboxState::RecallAcknowledged => {
                (self, RecallEffect::AlreadyDone)
            }
        }
    }

    /// Whether a clerk still has to act on it (sign for it, return it, or acknowledge a recall).
    pub fn needs_clerk(self) -> bool {
        matches!(self, InboxState::New | InboxState::RecallPending)
    }

    /// Stable code for storage.
    pub fn code(self) -> u8 {
        match self {
            InboxState::New => 1,
            InboxState::Confirmed => 2,
            InboxState::Rejected => 3,
            InboxState::Recalled => 4,
            InboxState::RecallPending => 5,
            InboxState::RecallAcknowledged => 6,
        }
    }

    /// From a stored code (stored as `u32` in protobuf records); an unknown code is an error.
    pub fn try_from_code(code: u32) -> Result<Self, UnknownState> {
        u8::try_from(code)
            .ok()
            .and_then(Self::from_code)
            .ok_or(UnknownState {
                what: "inbox",
                code,
            })
    }

    /// From a stored code.
    pub fn from_code(c: u8) -> Option<Self> {
        [
            Self::New,
            Self::Confirmed,
            Self::Rejected,
            Self::Recalled,
            Self::RecallPending,
            Self::RecallAcknowledged,
        ]
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
            InboxState::Recalled => pb::InboxState::Recalled,
            InboxState::RecallPending => pb::InboxState::RecallPending,
            InboxState::RecallAcknowledged => pb::InboxState::RecallAcknowledged,
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

    #[test]
    fn a_recall_ends_each_delivery_once() {
        assert_eq!(
            Accepted.apply(EvidenceKind::Withdrawn),
            Ok(Transition::Changed(Withdrawn))
        );
        assert_eq!(
            Delivered.apply(EvidenceKind::Recalled),
            Ok(Transition::Changed(Recalled))
        );
        assert_eq!(
            Confirmed.apply(EvidenceKind::RecallAcknowledged),
            Ok(Transition::Changed(RecallAcknowledged))
        );
        // The confirmation may arrive after the acknowledgement of the recall.
        assert_eq!(
            RecallAcknowledged.apply(EvidenceKind::Confirmed),
            Ok(Transition::Unchanged(RecallAcknowledged))
        );
        assert!(Rejected.apply(EvidenceKind::RecallAcknowledged).is_err());
        assert!(Recalled.apply(EvidenceKind::Confirmed).is_err());
        assert!(
            Withdrawn
                .apply(EvidenceKind::Delivered)
                .is_ok_and(|t| t.state() == Withdrawn)
        );
        assert!(RecallAcknowledged.apply(EvidenceKind::Rejected).is_err());
        // The sender's own statements move nothing.
        assert_eq!(
            Delivered.apply(EvidenceKind::Reminded),
            Ok(Transition::Unchanged(Delivered))
        );
        for s in [Withdrawn, Recalled, RecallAcknowledged] {
            assert_eq!(DeliveryState::from_code(s.code()), Some(s));
            assert_eq!(DeliveryState::try_from_code(u32::from(s.code())), Ok(s));
        }
        for code in [0, 42, 256 + 2] {
            let e = DeliveryState::try_from_code(code).unwrap_err();
            assert_eq!(e.to_string(), format!("unknown delivery state code {code}"));
            assert!(InboxState::try_from_code(code).is_err());
        }
    }

    #[test]
    fn a_recall_at_the_recipient() {
        use InboxState as I;
        assert_eq!(I::New.recall(), (I::Recalled, RecallEffect::Recalled));
        assert_eq!(
            I::Confirmed.recall(),
            (I::RecallPending, RecallEffect::AckRequired)
        );
        assert_eq!(
            I::Rejected.recall(),
            (I::Rejected, RecallEffect::AlreadyDone)
        );
        assert!(I::Recalled.apply(ClerkAction::Confirm).is_err());
        assert!(I::Recalled.apply(ClerkAction::Reject).is_err());
        assert!(I::New.apply(ClerkAction::AcknowledgeRecall).is_err());
        assert_eq!(
            I::RecallPending.apply(ClerkAction::AcknowledgeRecall),
            Ok(Transition::Changed(I::RecallAcknowledged))
        );
        assert_eq!(
            I::RecallAcknowledged.apply(ClerkAction::AcknowledgeRecall),
            Ok(Transition::Unchanged(I::RecallAcknowledged))
        );
        for s in [I::Recalled, I::RecallPending, I::RecallAcknowledged] {
            assert_eq!(I::from_code(s.code()), Some(s));
        }
    }
}
