//! `exchange-node status ID`: where a document this department sent is, recipient by
//! recipient: queued here, accepted by the hub, delivered, then confirmed (签收) or rejected
//! (退回) by the recipient's clerk.

use exchange_core::config::Calendar;
use exchange_proto::v1 as pb;
use serde::Serialize;

use super::{
    Ctx,
    ctx::Lookup,
    labels::{inbox_state_name, recipient_state_name, role, role_label, time_or_null, urgency},
    table::{Table, or_dash, printable},
};

/// Flags of `status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The document id, as `send` printed it.
    id: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// `status --json`.
#[derive(Debug, Serialize)]
pub(super) struct StatusJson {
    id: String,
    title: String,
    /// `normal`, `urgent`, `very-urgent`, `pingji` or `teti`.
    urgency: &'static str,
    /// When this node sealed it.
    created_at: Option<String>,
    /// Why the hub refused the document; null if it did not.
    refused: Option<String>,
    recipients: Vec<RecipientJson>,
    /// Documents received in reply to this one (答复), oldest first.
    replies: Vec<ReplyJson>,
    /// When this department recalled it (撤回); null if it did not.
    recalled_at: Option<String>,
    /// Why it was recalled (empty if it was not).
    recall_reason: String,
    /// The received document this one forwards (转发); null if it is not a forward.
    forwarded_from: Option<String>,
    /// The hub refused for good this department's latest recall or reminder of it: what and
    /// why; null if nothing was refused.
    hub_refused: Option<String>,
}

/// One reply in `status --json`.
#[derive(Debug, Serialize)]
struct ReplyJson {
    /// The reply's id (open it with `show`).
    id: String,
    /// Who replied.
    sender: String,
    title: String,
    /// `new`, `confirmed` or `rejected` here.
    state: &'static str,
    received_at: Option<String>,
}

/// One recipient in `status --json`; times are RFC 3339, or null until the step happens.
#[derive(Debug, Serialize)]
struct RecipientJson {
    dept: String,
    /// `main` (主送) or `cc` (抄送).
    role: &'static str,
    /// `queued`, `accepted`, `delivered`, `confirmed`, `rejected`, `not-delivered`, `refused`,
    /// or after a recall: `withdrawn` (never reached it), `recalled` (removed before 签收) or
    /// `recall-acknowledged` (signed for, then acknowledged the recall).
    state: &'static str,
    queued_at: Option<String>,
    accepted_at: Option<String>,
    delivered_at: Option<String>,
    confirmed_at: Option<String>,
    rejected_at: Option<String>,
    /// Who confirmed or rejected it.
    clerk: String,
    /// Why it was rejected (or not delivered), or the confirming clerk's note.
    reason: String,
    /// Delivered but not confirmed past this node's `[reminders]` threshold (超期未签收).
    overdue: bool,
    /// Once delivered: when 签收 falls due by this node's `[reminders]`; null before, or never.
    sign_due_at: Option<String>,
    /// Added after sending (补发).
    added: bool,
    /// Reminders (催办) sent to it.
    reminders: u32,
    last_reminded_at: Option<String>,
    /// When the recall took effect at this recipient; null until it did.
    recalled_at: Option<String>,
}

/// Shows a sent document's delivery status.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let status = ctx
        .client()
        .get_status(pb::GetStatusRequest {
            doc_id: args.id.trim().to_owned(),
        })
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Sent))?
        .into_inner();
    print(&status, args.json, &ctx.cfg.calendar)
}

/// Prints a sent document's status as a table, or with `json` as one JSON object (also `show`
/// of a document this department sent).
pub(super) fn print(status: &pb::DocumentStatus, json: bool, cal: &Calendar) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&to_json(status))?);
    } else {
        print!("{}", text(status, cal));
    }
    Ok(())
}

/// `status --json` of one document (also each element of `outbox --json`).
pub(super) fn to_json(s: &pb::DocumentStatus) -> StatusJson {
    StatusJson {
        id: s.doc_id.clone(),
        title: s.title.clone(),
        urgency: urgency(s.urgency()).name(),
        created_at: time_or_null(s.created_at_ms),
        refused: (!s.refused.is_empty()).then(|| s.refused.clone()),
        recipients: s
            .recipients
            .iter()
            .map(|r| RecipientJson {
                dept: r.dept.clone(),
                role: role(r.role()).name(),
                state: recipient_state_name(r.state()),
                queued_at: time_or_null(r.queued_at_ms),
                accepted_at: time_or_null(r.accepted_at_ms),
                delivered_at: time_or_null(r.delivered_at_ms),
                confirmed_at: time_or_null(r.confirmed_at_ms),
                rejected_at: time_or_null(r.rejected_at_ms),
                clerk: r.clerk.clone(),
                reason: r.reason.clone(),
                overdue: r.overdue,
                sign_due_at: time_or_null(r.sign_due_ms),
                added: r.added,
                reminders: r.reminders,
                last_reminded_at: time_or_null(r.last_reminded_at_ms),
                recalled_at: time_or_null(r.recalled_at_ms),
            })
            .collect(),
        replies: s
            .replies
            .iter()
            .map(|e| ReplyJson {
                id: e.doc_id.clone(),
                sender: e.sender.clone(),
                title: e.title.clone(),
                state: inbox_state_name(e.state()),
                received_at: time_or_null(e.received_at_ms),
            })
            .collect(),
        recalled_at: time_or_null(s.recalled_at_ms),
        recall_reason: s.recall_reason.clone(),
        forwarded_from: (!s.forwarded_from.is_empty()).then(|| s.forwarded_from.clone()),
        hub_refused: (!s.hub_refused.is_empty()).then(|| s.hub_refused.clone()),
    }
}

/// A recipient's state for people: `overdue` in place of `delivered` when it is (超期未签收).
pub(super) fn state_label(r: &pb::RecipientStatus) -> String {
    let mut label = if r.overdue {
        "overdue (超期)".to_owned()
    } else {
        recipient_state_name(r.state()).to_owned()
    };
    if r.added {
        label.push_str(", added (补发)");
    }
    if r.reminders > 0 {
        label.push_str(&format!(", reminded ×{}", r.reminders));
    }
    label
}

/// The title and urgency, the hub's refusal if any, then one row per recipient; times in the
/// office's local time (`[calendar] utc_offset`, said once in the first line).
fn text(s: &pb::DocumentStatus, cal: &Calendar) -> String {
    let u = urgency(s.urgency());
    let local = |ms: i64| cal.format_local(ms);
    let mut out = format!(
        "{}  [{}]  sent {} (times at {})\n",
        printable(&s.title),
        u.label(),
        local(s.created_at_ms),
        cal.offset_label()
    );
    if !s.refused.is_empty() {
        out.push_str(&format!(
            "the hub refused this document: {}\n",
            printable(&s.refused)
        ));
    }
    if !s.hub_refused.is_empty() {
        out.push_str(&format!(
            "not taken by the hub, the recipients were not told: {}\n",
            printable(&s.hub_refused)
        ));
    }
    if !s.forwarded_from.is_empty() {
        out.push_str(&format!(
            "forwarded from (转发自) {}\n",
            printable(&s.forwarded_from)
        ));
    }
    if s.recalled_at_ms != 0 {
        out.push_str(&format!(
            "recalled (撤回) {}: {}\n",
            local(s.recalled_at_ms),
            printable(&s.recall_reason)
        ));
    }
    out.push('\n');
    let mut t = Table::new(&[
        "RECIPIENT",
        "ROLE",
        "STATE",
        "ACCEPTED",
        "DELIVERED",
        "CONFIRMED/REJECTED",
        "CLERK",
        "REASON",
    ]);
    for r in &s.recipients {
        let handled = if r.confirmed_at_ms != 0 {
            r.confirmed_at_ms
        } else {
            r.rejected_at_ms
        };
        t.row(vec![
            r.dept.clone(),
            role_label(r.role()).to_owned(),
            state_label(r),
            or_dash(local(r.accepted_at_ms)),
            or_dash(local(r.delivered_at_ms)),
            or_dash(local(handled)),
            or_dash(r.clerk.clone()),
            r.reason.clone(),
        ]);
    }
    out.push_str(&t.render());
    if !s.replies.is_empty() {
        out.push_str("\nreplies (答复):\n");
        let mut t = Table::new(&["ID", "FROM", "TITLE", "STATE", "RECEIVED"]);
        for e in &s.replies {
            t.row(vec![
                e.doc_id.clone(),
                e.sender.clone(),
                printable(&e.title),
                inbox_state_name(e.state()).to_owned(),
                local(e.received_at_ms),
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> pb::DocumentStatus {
        let confirmed = pb::RecipientStatus {
            dept: "b".into(),
            state: pb::RecipientState::Confirmed.into(),
            queued_at_ms: 1_764_167_230_000,
            accepted_at_ms: 1_764_167_230_123,
            confirmed_at_ms: 1_764_167_231_000,
            clerk: "张三".into(),
            ..Default::default()
        };
        let queued = pb::RecipientStatus {
            dept: "c".into(),
            role: pb::RecipientRole::Cc.into(),
            state: pb::RecipientState::Queued.into(),
            queued_at_ms: 1_764_167_230_000,
            ..Default::default()
        };
        pb::DocumentStatus {
            doc_id: "id-1".into(),
            title: "关于检查的通知".into(),
            urgency: pb::Urgency::Urgent.into(),
            created_at_ms: 1_764_167_230_000,
            recipients: vec![confirmed, queued],
            refused: String::new(),
            replies: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn json_has_null_for_steps_not_taken() {
        let v = serde_json::to_value(to_json(&status())).unwrap();
        assert_eq!(v["urgency"], "urgent");
        assert!(v["refused"].is_null());
        assert_eq!(v["recipients"][0]["state"], "confirmed");
        assert_eq!(
            v["recipients"][0]["accepted_at"],
            "2025-11-26T14:27:10.123Z"
        );
        assert!(v["recipients"][0]["delivered_at"].is_null());
        assert_eq!(v["recipients"][1]["role"], "cc");
        assert_eq!(v["recipients"][1]["state"], "queued");
    }

    #[test]
    fn replies_are_listed_under_the_original() {
        let mut s = status();
        s.replies.push(pb::InboxEntry {
            doc_id: "reply-1".into(),
            sender: "b".into(),
            title: "关于同意的批复".into(),
            state: pb::InboxState::New.into(),
            received_at_ms: 1_764_167_240_000,
            ..Default::default()
        });
        let out = text(&s, &Calendar::default());
        assert!(
            out.contains("replies (答复)") && out.contains("reply-1"),
            "{out}"
        );
        let v = serde_json::to_value(to_json(&s)).unwrap();
        assert_eq!(v["replies"][0]["sender"], "b");
        assert_eq!(v["replies"][0]["state"], "new");
    }

    #[test]
    fn a_refusal_is_explained() {
        let mut s = status();
        s.refused = "classified documents are not accepted".into();
        s.recipients[1].state = pb::RecipientState::Refused.into();
        let out = text(&s, &Calendar::default());
        assert!(
            out.contains("the hub refused this document: classified"),
            "{out}"
        );
        assert!(out.contains("refused"), "{out}");
        assert!(out.contains("抄送"), "{out}");
    }
}
