//! How the protocol's enums are named for clerks: the Chinese labels on screen, the stable
//! English names in flags and `--json`. Where `exchange-core` already names a value (urgency,
//! inbox and delivery states, roles) its name is used, so there is one spelling of each.

use exchange_core::{
    document::{RecipientRole, Urgency},
    state::{DeliveryState, InboxState},
    time::format_ms,
};
use exchange_proto::v1 as pb;

/// Every urgency, in the order `--urgency` lists them.
const URGENCIES: [Urgency; 5] = [
    Urgency::Normal,
    Urgency::Urgent,
    Urgency::VeryUrgent,
    Urgency::Pingji,
    Urgency::Teti,
];

/// The 15 文种: flag and JSON name, Chinese name, proto value.
const DOC_TYPES: [(&str, &str, pb::DocumentType); 15] = [
    ("resolution", "决议", pb::DocumentType::Resolution),
    ("decision", "决定", pb::DocumentType::Decision),
    ("order", "命令", pb::DocumentType::Order),
    ("communique", "公报", pb::DocumentType::Communique),
    ("announcement", "公告", pb::DocumentType::Announcement),
    ("public-notice", "通告", pb::DocumentType::PublicNotice),
    ("opinion", "意见", pb::DocumentType::Opinion),
    ("notice", "通知", pb::DocumentType::Notice),
    ("bulletin", "通报", pb::DocumentType::Bulletin),
    ("report", "报告", pb::DocumentType::Report),
    ("request", "请示", pb::DocumentType::Request),
    ("reply", "批复", pb::DocumentType::Reply),
    ("motion", "议案", pb::DocumentType::Motion),
    ("letter", "函", pb::DocumentType::Letter),
    ("minutes", "纪要", pb::DocumentType::Minutes),
];

/// Parses `--urgency`: a machine name (`very-urgent`) or the Chinese label (`特急`).
pub(crate) fn parse_urgency(s: &str) -> Result<Urgency, String> {
    let s = s.trim();
    URGENCIES
        .into_iter()
        .find(|u| u.name().eq_ignore_ascii_case(s) || u.label() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = URGENCIES.iter().map(|u| u.name()).collect();
            format!("unknown urgency {s:?}; use one of: {}", names.join(", "))
        })
}

/// Parses `--doc-type`: an English name (`public-notice`) or the Chinese name (`通告`).
pub(crate) fn parse_doc_type(s: &str) -> Result<pb::DocumentType, String> {
    let s = s.trim();
    let wanted = s.replace('_', "-");
    DOC_TYPES
        .iter()
        .find(|(name, label, _)| name.eq_ignore_ascii_case(&wanted) || *label == s)
        .map(|d| d.2)
        .ok_or_else(|| {
            let names: Vec<&str> = DOC_TYPES.iter().map(|d| d.0).collect();
            format!(
                "unknown document type {s:?}; use one of: {}",
                names.join(", ")
            )
        })
}

/// The English name of a 文种 (empty when unspecified).
pub(crate) fn doc_type_name(t: pb::DocumentType) -> &'static str {
    DOC_TYPES.iter().find(|d| d.2 == t).map_or("", |d| d.0)
}

/// The Chinese name of a 文种 (empty when unspecified).
pub(crate) fn doc_type_label(t: pb::DocumentType) -> &'static str {
    DOC_TYPES.iter().find(|d| d.2 == t).map_or("", |d| d.1)
}

/// The domain urgency of a proto value.
pub(crate) fn urgency(u: pb::Urgency) -> Urgency {
    Urgency::from(u)
}

/// The domain role of a proto value.
pub(crate) fn role(r: pb::RecipientRole) -> RecipientRole {
    match r {
        pb::RecipientRole::Main => RecipientRole::Main,
        pb::RecipientRole::Cc => RecipientRole::Cc,
    }
}

/// 主送 or 抄送.
pub(crate) fn role_label(r: pb::RecipientRole) -> &'static str {
    match role(r) {
        RecipientRole::Main => "主送",
        RecipientRole::Cc => "抄送",
    }
}

/// `new`, `confirmed`, `rejected`, `recalled`, `recall-pending` or `recall-acknowledged`
/// (`unknown` for a value this CLI does not know).
pub(crate) fn inbox_state_name(s: pb::InboxState) -> &'static str {
    match s {
        pb::InboxState::New => InboxState::New.name(),
        pb::InboxState::Confirmed => InboxState::Confirmed.name(),
        pb::InboxState::Rejected => InboxState::Rejected.name(),
        pb::InboxState::Recalled => InboxState::Recalled.name(),
        pb::InboxState::RecallPending => InboxState::RecallPending.name(),
        pb::InboxState::RecallAcknowledged => InboxState::RecallAcknowledged.name(),
        pb::InboxState::Unspecified => "unknown",
    }
}

/// A recipient's delivery state as the sender sees it: the delivery states, plus `refused`
/// when the hub refused the whole document.
pub(crate) fn recipient_state_name(s: pb::RecipientState) -> &'static str {
    match s {
        pb::RecipientState::Queued => DeliveryState::Queued.name(),
        pb::RecipientState::Accepted => DeliveryState::Accepted.name(),
        pb::RecipientState::Delivered => DeliveryState::Delivered.name(),
        pb::RecipientState::Confirmed => DeliveryState::Confirmed.name(),
        pb::RecipientState::Rejected => DeliveryState::Rejected.name(),
        pb::RecipientState::NotDelivered => DeliveryState::NotDelivered.name(),
        pb::RecipientState::Refused => "refused",
        pb::RecipientState::Withdrawn => DeliveryState::Withdrawn.name(),
        pb::RecipientState::Recalled => DeliveryState::Recalled.name(),
        pb::RecipientState::RecallAcknowledged => DeliveryState::RecallAcknowledged.name(),
        pb::RecipientState::Unspecified => "unknown",
    }
}

/// `正文` for the body, `附件n` for the n-th attachment.
pub(crate) fn part_label(role: pb::PartRole, attachment_no: usize) -> String {
    match role {
        pb::PartRole::Body => "正文".to_owned(),
        pb::PartRole::Attachment => format!("附件{attachment_no}"),
        pb::PartRole::Unspecified => "?".to_owned(),
    }
}

/// `body` or `attachment`, for `--json`.
pub(crate) fn part_role_name(role: pb::PartRole) -> &'static str {
    match role {
        pb::PartRole::Body => "body",
        pb::PartRole::Attachment => "attachment",
        pb::PartRole::Unspecified => "unknown",
    }
}

/// RFC 3339 for a set time, `None` (JSON `null`) for 0 (unset).
pub(crate) fn time_or_null(ms: i64) -> Option<String> {
    (ms != 0).then(|| format_ms(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgency_flags_take_names_and_labels() {
        assert_eq!(parse_urgency("normal"), Ok(Urgency::Normal));
        assert_eq!(parse_urgency("urgent"), Ok(Urgency::Urgent));
        assert_eq!(parse_urgency("very-urgent"), Ok(Urgency::VeryUrgent));
        assert_eq!(parse_urgency("特急"), Ok(Urgency::VeryUrgent));
        let err = parse_urgency("asap").unwrap_err();
        assert!(err.contains("very-urgent"), "{err}");
    }

    #[test]
    fn doc_type_flags_take_names_and_labels() {
        assert_eq!(parse_doc_type("notice"), Ok(pb::DocumentType::Notice));
        assert_eq!(
            parse_doc_type("public-notice"),
            Ok(pb::DocumentType::PublicNotice)
        );
        assert_eq!(parse_doc_type("Letter"), Ok(pb::DocumentType::Letter));
        assert_eq!(parse_doc_type("函"), Ok(pb::DocumentType::Letter));
        assert!(parse_doc_type("memo").unwrap_err().contains("minutes"));
    }

    #[test]
    fn every_doc_type_round_trips() {
        for (name, label, t) in DOC_TYPES {
            assert_eq!(parse_doc_type(name), Ok(t));
            assert_eq!(doc_type_name(t), name);
            assert_eq!(doc_type_label(t), label);
        }
        assert_eq!(doc_type_name(pb::DocumentType::Unspecified), "");
    }

    #[test]
    fn unset_times_are_null() {
        assert_eq!(time_or_null(0), None);
        assert_eq!(
            time_or_null(1_764_167_230_123).as_deref(),
            Some("2025-11-26T14:27:10.123Z")
        );
    }
}
