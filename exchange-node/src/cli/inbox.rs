//! `exchange-node inbox`: the documents this department received, overdue first, then most
//! urgent, then oldest (the order a clerk works in, as the node sorts them), optionally
//! filtered by state, urgency, sender and date (`--state`, `--urgency`, `--from`, `--since`).

use exchange_core::{
    config::Calendar,
    time::{format_ms, now_ms},
};
use exchange_proto::v1 as pb;
use serde::Serialize;

use super::{
    Ctx,
    ctx::Lookup,
    labels::{inbox_state_name, role, time_or_null, urgency},
    table::{Table, truncate},
};

/// Display columns a title may take in the table before it is cut with "…".
const TITLE_COLUMNS: usize = 40;

/// Flags of `inbox`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array (one object per document) instead of a table.
    #[arg(long)]
    json: bool,
    /// Which documents to list (all when no filter is given).
    #[command(flatten)]
    filter: super::filter::Filter,
}

/// One received document in `--json` output (also the core of `show --json`).
#[derive(Debug, Serialize)]
pub(crate) struct EntryJson {
    /// The document id (UUIDv7).
    pub(crate) id: String,
    /// The sending department's id.
    pub(crate) sender: String,
    /// 标题.
    pub(crate) title: String,
    /// `normal`, `urgent`, `very-urgent`, `pingji` or `teti`.
    pub(crate) urgency: &'static str,
    /// `new`, `confirmed`, `rejected`, `recalled`, `recall-pending` or `recall-acknowledged`.
    pub(crate) state: &'static str,
    /// When this node received it, RFC 3339 UTC.
    pub(crate) received_at: String,
    /// The same, in Unix milliseconds.
    pub(crate) received_at_ms: i64,
    /// 发文字号 (may be empty).
    pub(crate) doc_number: String,
    /// Whether this department is a `main` (主送) or `cc` (抄送) recipient.
    pub(crate) role: &'static str,
    /// Who confirmed or rejected it (empty while new).
    pub(crate) clerk: String,
    /// Why it was rejected, or the note given when confirming (may be empty).
    pub(crate) reason: String,
    /// Still new past the `[reminders]` threshold for its urgency (超期未签收).
    pub(crate) overdue: bool,
    /// When 签收 falls due by `[reminders]` (working days of the node's calendar), RFC 3339
    /// UTC; null if never.
    pub(crate) sign_due_at: Option<String>,
    /// 办理/答复时限 set by the sender, RFC 3339 UTC; null if none.
    pub(crate) reply_deadline: Option<String>,
    /// Seconds left until the reply deadline when this was printed (negative once it has
    /// passed); null if there is none.
    pub(crate) time_left_secs: Option<i64>,
    /// How many reminders (催办) the sender sent.
    pub(crate) reminders: u32,
    /// The latest reminder, RFC 3339 UTC; null if none.
    pub(crate) last_reminded_at: Option<String>,
    /// The latest reminder's note (may be empty).
    pub(crate) reminder_note: String,
    /// The sender's reason, once it recalled the document (empty otherwise).
    pub(crate) recall_reason: String,
    /// This department was added after sending (补发).
    pub(crate) added: bool,
    /// The hub refused for good this department's 签收, 退回 or recall acknowledgement: what and
    /// why (it stands here, but the sender was never told); null if nothing was refused.
    pub(crate) hub_refused: Option<String>,
}

impl From<&pb::InboxEntry> for EntryJson {
    fn from(e: &pb::InboxEntry) -> Self {
        EntryJson {
            id: e.doc_id.clone(),
            sender: e.sender.clone(),
            title: e.title.clone(),
            urgency: urgency(e.urgency()).name(),
            state: inbox_state_name(e.state()),
            received_at: format_ms(e.received_at_ms),
            received_at_ms: e.received_at_ms,
            doc_number: e.doc_number.clone(),
            role: role(e.role()).name(),
            clerk: e.clerk.clone(),
            reason: e.reason.clone(),
            overdue: e.overdue,
            sign_due_at: time_or_null(e.sign_due_ms),
            reply_deadline: time_or_null(e.reply_deadline_ms),
            time_left_secs: time_left_secs(e.reply_deadline_ms, now_ms()),
            reminders: e.reminders,
            last_reminded_at: time_or_null(e.last_reminded_at_ms),
            reminder_note: e.last_reminder_note.clone(),
            recall_reason: e.recall_reason.clone(),
            added: e.added,
            hub_refused: (!e.hub_refused.is_empty()).then(|| e.hub_refused.clone()),
        }
    }
}

/// Lists the inbox.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let entries = ctx
        .client()
        .list_inbox(pb::ListInboxRequest {})
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Received))?
        .into_inner()
        .entries;
    let entries: Vec<pb::InboxEntry> = entries
        .into_iter()
        .filter(|e| args.filter.matches(e, &ctx.cfg.calendar))
        .collect();
    if args.json {
        let json: Vec<EntryJson> = entries.iter().map(EntryJson::from).collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    if entries.is_empty() {
        eprintln!("inbox is empty");
        return Ok(());
    }
    print!("{}", table(&entries, &ctx.cfg.calendar).render());
    Ok(())
}

/// Seconds from `now_ms` to a deadline (0 = none).
fn time_left_secs(deadline_ms: i64, now_ms: i64) -> Option<i64> {
    (deadline_ms > 0).then(|| deadline_ms.saturating_sub(now_ms) / 1000)
}

/// The DUE column: time left to the reply deadline, e.g. `2d 3h`, `45m`, `past` (or empty).
fn due_label(deadline_ms: i64, now_ms: i64) -> String {
    match time_left_secs(deadline_ms, now_ms) {
        None => String::new(),
        Some(s) if s < 0 => "past".to_owned(),
        Some(s) if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        Some(s) if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        Some(s) => format!("{}m", s / 60),
    }
}

/// The state column: `new, overdue (超期)` for an overdue entry, `, reminded ×N (催办)` once
/// the sender reminded.
fn state_label(e: &pb::InboxEntry) -> String {
    let mut label = inbox_state_name(e.state()).to_owned();
    if e.overdue {
        label.push_str(", overdue (超期)");
    }
    if e.reminders > 0 && e.state() == pb::InboxState::New {
        label.push_str(&format!(", reminded ×{} (催办)", e.reminders));
    }
    if !e.hub_refused.is_empty() {
        label.push_str(", not taken by the hub (inbox --json: hub_refused)");
    }
    label
}

/// The inbox as a table, times in the office's local time.
fn table(entries: &[pb::InboxEntry], cal: &Calendar) -> Table {
    let now = now_ms();
    let received = format!("RECEIVED ({})", cal.offset_label());
    let mut t = Table::new(&["ID", "URGENCY", "FROM", "TITLE", "STATE", &received, "DUE"]);
    for e in entries {
        t.row(vec![
            e.doc_id.clone(),
            urgency(e.urgency()).label().to_owned(),
            e.sender.clone(),
            truncate(&e.title, TITLE_COLUMNS),
            state_label(e),
            cal.format_local(e.received_at_ms),
            due_label(e.reply_deadline_ms, now),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> pb::InboxEntry {
        pb::InboxEntry {
            doc_id: "0193a0b0-0000-7000-8000-000000000001".into(),
            sender: "a".into(),
            title: "关于开展2026年度预算执行情况检查的通知".into(),
            urgency: pb::Urgency::VeryUrgent.into(),
            state: pb::InboxState::New.into(),
            received_at_ms: 1_764_167_230_123,
            role: pb::RecipientRole::Cc.into(),
            ..Default::default()
        }
    }

    #[test]
    fn json_uses_machine_names() {
        let v = serde_json::to_value(EntryJson::from(&entry())).unwrap();
        assert_eq!(v["urgency"], "very-urgent");
        assert_eq!(v["state"], "new");
        assert_eq!(v["role"], "cc");
        assert_eq!(v["received_at"], "2025-11-26T14:27:10.123Z");
        assert_eq!(v["received_at_ms"], 1_764_167_230_123_i64);
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 21, "{keys:?}");
        assert_eq!(v["overdue"], false);
        assert!(v["reply_deadline"].is_null() && v["time_left_secs"].is_null());
    }

    #[test]
    fn the_time_left_to_a_deadline_reads_plainly() {
        let h = 3_600_000;
        assert_eq!(due_label(0, 5), "");
        assert_eq!(due_label(10 * h, 11 * h), "past");
        assert_eq!(due_label(53 * h, 0), "2d 5h");
        assert_eq!(due_label(h + 120_000, 0), "1h 2m");
        assert_eq!(time_left_secs(h, 0), Some(3600));
    }

    #[test]
    fn the_table_shows_chinese_labels() {
        let out = table(&[entry()], &Calendar::default()).render();
        assert!(out.starts_with("ID"), "{out}");
        assert!(out.contains("特急"), "{out}");
        // 14:27:10 UTC is 22:27:10 in Beijing, and the column says so.
        assert!(out.contains("RECEIVED (+08:00)"), "{out}");
        assert!(out.contains("2025-11-26 22:27:10"), "{out}");
    }
}
