//! `inbox` filters: by state, urgency, sender and date. Filtering happens in the CLI over the
//! node's inbox listing, which keeps the API's order (urgent first, then oldest first).

use exchange_core::{
    config::{Calendar, When, parse_when},
    document::Urgency,
};
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
    /// Only documents received at or after this time: a date (2026-11-20: from 00:00 that day
    /// in the node's `[calendar] utc_offset`, default +08:00) or RFC 3339
    /// (2026-11-20T08:00:00+08:00).
    #[arg(long, value_name = "DATE", value_parser = parse_when)]
    since: Option<When>,
}

impl Filter {
    /// Whether `e` passes every flag given; dates are days of `calendar`.
    pub(crate) fn matches(&self, e: &pb::InboxEntry, calendar: &Calendar) -> bool {
        self.state.is_none_or(|s| {
            inbox_state_name(e.state()) == s
                || (s == "overdue" && e.overdue)
                || (s == "reminded" && e.state() == pb::InboxState::New && e.reminders > 0)
        }) && self.urgency.is_none_or(|u| urgency(e.urgency()) == u)
            && self.from.as_deref().is_none_or(|f| e.sender == f.trim())
            && self
                .since
                .is_none_or(|t| e.received_at_ms >= t.start_ms(calendar))
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
        let cal = Calendar::default();
        let since = parse_when("2026-11-20").unwrap();
        // The day starts at 00:00 Beijing time, 16:00 UTC the day before.
        let day = parse_when("2026-11-19T16:00:00Z").unwrap().start_ms(&cal);
        assert_eq!(since.start_ms(&cal), day);
        assert_eq!(since.end_ms(&cal), day + 86_400_000);
        let f = Filter {
            state: Some("new"),
            urgency: Some(Urgency::Urgent),
            from: Some("a".into()),
            since: Some(since),
        };
        assert!(f.matches(&entry("a", pb::InboxState::New, day), &cal));
        assert!(!f.matches(&entry("b", pb::InboxState::New, day), &cal));
        assert!(!f.matches(&entry("a", pb::InboxState::Confirmed, day), &cal));
        assert!(!f.matches(&entry("a", pb::InboxState::New, day - 1), &cal));
        assert!(Filter::default().matches(&entry("z", pb::InboxState::Rejected, 0), &cal));
        assert!(parse_when("yesterday").is_err());
        assert!(parse_state("signed").is_err());
    }
}
