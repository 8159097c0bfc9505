//! `inbox` filters: by state, urgency, sender and date. Filtering happens in the CLI over the
//! node's inbox listing, which keeps the API's order (urgent first, then oldest first).

use exchange_core::document::Urgency;
use exchange_proto::v1 as pb;

use super::labels::{inbox_state_name, parse_urgency, urgency};

/// The filter flags of `inbox`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct Filter {
    /// Only documents in this state: new (未签收), confirmed (已签收), rejected (已退回),
    /// overdue (new past the `[reminders]` threshold, 超期), reminded (new, with a 催办 from the
    /// sender), recalled (撤回 before 签收), recall-pending (撤回 after 签收, to acknowledge with
    /// `ack-recall`) or recall-acknowledged.
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    state: Option<&'static str>,
    /// Only documents of this urgency: normal, urgent, very-urgent (also pingji, teti).
    #[arg(long, value_name = "URGENCY", value_parser = parse_urgency)]
    urgency: Option<Urgency>,
    /// Only documents from this department (its id).
    #[arg(long = "from", value_name = "DEPT")]
    from: Option<String>,
    /// Only documents received at or after this time: a date (2026-11-20, midnight UTC) or
    /// RFC 3339 (2026-11-20T08:00:00Z).
    #[arg(long, value_name = "DATE", value_parser = parse_since)]
    since: Option<i64>,
}

impl Filter {
    /// Whether `e` passes every flag given.
    pub(crate) fn matches(&self, e: &pb::InboxEntry) -> bool {
        self.state.is_none_or(|s| {
            inbox_state_name(e.state()) == s
                || (s == "overdue" && e.overdue)
                || (s == "reminded" && e.state() == pb::InboxState::New && e.reminders > 0)
        }) && self.urgency.is_none_or(|u| urgency(e.urgency()) == u)
            && self.from.as_deref().is_none_or(|f| e.sender == f.trim())
            && self.since.is_none_or(|t| e.received_at_ms >= t)
    }
}

fn parse_state(s: &str) -> Result<&'static str, String> {
    match s.trim() {
        "new" => Ok("new"),
        "confirmed" => Ok("confirmed"),
        "rejected" => Ok("rejected"),
        "overdue" => Ok("overdue"),
        "reminded" => Ok("reminded"),
        "recalled" => Ok("recalled"),
        "recall-pending" => Ok("recall-pending"),
        "recall-acknowledged" => Ok("recall-acknowledged"),
        other => Err(format!(
            "unknown state {other:?}: use new, confirmed, rejected, overdue, reminded, recalled, \
             recall-pending or recall-acknowledged"
        )),
    }
}

/// A date (midnight UTC) or an RFC 3339 time, as Unix ms.
pub(crate) fn parse_since(s: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    let t = time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339))
        .map_err(|_| {
            format!("{s:?} is neither a date (2026-11-20) nor RFC 3339 (2026-11-20T08:00:00Z)")
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sender: &str, state: pb::InboxState, at: i64) -> pb::InboxEntry {
        pb::InboxEntry {
            sender: sender.into(),
            state: state.into(),
            urgency: pb::Urgency::Urgent.into(),
            received_at_ms: at,
            ..Default::default()
        }
    }

    #[test]
    fn every_given_flag_must_match() {
        let day = parse_since("2026-11-20").unwrap();
        assert_eq!(parse_since("2026-11-20T00:00:00Z").unwrap(), day);
        let f = Filter {
            state: Some("new"),
            urgency: Some(Urgency::Urgent),
            from: Some("a".into()),
            since: Some(day),
        };
        assert!(f.matches(&entry("a", pb::InboxState::New, day)));
        assert!(!f.matches(&entry("b", pb::InboxState::New, day)));
        assert!(!f.matches(&entry("a", pb::InboxState::Confirmed, day)));
        assert!(!f.matches(&entry("a", pb::InboxState::New, day - 1)));
        assert!(Filter::default().matches(&entry("z", pb::InboxState::Rejected, 0)));
        assert!(parse_since("yesterday").is_err());
        assert!(parse_state("signed").is_err());
    }
}
