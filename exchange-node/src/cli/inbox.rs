//! `exchange-node inbox`: the documents this department received, most urgent first (the
//! order a clerk works in, as the node sorts them), optionally filtered by state, urgency,
//! sender and date (`--state`, `--urgency`, `--from`, `--since`).

use exchange_core::time::format_ms;
use exchange_proto::v1 as pb;
use serde::Serialize;

use super::{
    Ctx,
    ctx::Lookup,
    labels::{inbox_state_name, role, urgency},
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
    /// `new`, `confirmed` or `rejected`.
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
        .filter(|e| args.filter.matches(e))
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
    print!("{}", table(&entries).render());
    Ok(())
}

/// The inbox as a table.
fn table(entries: &[pb::InboxEntry]) -> Table {
    let mut t = Table::new(&["ID", "URGENCY", "FROM", "TITLE", "STATE", "RECEIVED"]);
    for e in entries {
        t.row(vec![
            e.doc_id.clone(),
            urgency(e.urgency()).label().to_owned(),
            e.sender.clone(),
            truncate(&e.title, TITLE_COLUMNS),
            inbox_state_name(e.state()).to_owned(),
            format_ms(e.received_at_ms),
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
        assert_eq!(keys.len(), 11, "{keys:?}");
    }

    #[test]
    fn the_table_shows_chinese_labels() {
        let out = table(&[entry()]).render();
        assert!(out.starts_with("ID"), "{out}");
        assert!(out.contains("特急"), "{out}");
        assert!(out.contains("2025-11-26T14:27:10.123Z"), "{out}");
    }
}
