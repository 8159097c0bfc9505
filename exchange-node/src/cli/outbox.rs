//! `exchange-node outbox`: what this department sent, newest first, with each recipient's
//! state — the clerk's 发文登记 view. `--json` prints an array whose elements are exactly what
//! `status ID --json` prints for each document.

use exchange_core::config::Calendar;
use exchange_proto::v1 as pb;

use super::{
    Ctx,
    ctx::Lookup,
    labels::{recipient_state_name, urgency},
    status::to_json,
    table::{Table, truncate},
};

/// Display columns a title may take in the table before it is cut with "…".
const TITLE_COLUMNS: usize = 30;

/// Flags of `outbox`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array (one `status --json` object per document) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Lists the sent documents.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let documents = ctx
        .client()
        .list_sent(pb::ListSentRequest {})
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Sent))?
        .into_inner()
        .documents;
    if args.json {
        let json: Vec<_> = documents.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    if documents.is_empty() {
        eprintln!("this department has sent nothing yet");
        return Ok(());
    }
    print!("{}", table(&documents, &ctx.cfg.calendar).render());
    Ok(())
}

/// One row per document; the recipients as `dept:state` pairs (also `show`'s list of forwards).
pub(super) fn table(documents: &[pb::DocumentStatus], cal: &Calendar) -> Table {
    let sent = format!("SENT ({})", cal.offset_label());
    let mut t = Table::new(&["ID", "URGENCY", "TITLE", &sent, "RECIPIENTS"]);
    for d in documents {
        let recipients: Vec<String> = d
            .recipients
            .iter()
            .map(|r| format!("{}:{}", r.dept, recipient_label(r)))
            .collect();
        t.row(vec![
            d.doc_id.clone(),
            urgency(d.urgency()).label().to_owned(),
            truncate(&d.title, TITLE_COLUMNS),
            cal.format_local(d.created_at_ms),
            recipients.join(" "),
        ]);
    }
    t
}

/// The state a clerk reads for one recipient (`overdue` for a late 签收).
fn recipient_label(r: &pb::RecipientStatus) -> &'static str {
    if r.overdue {
        "overdue"
    } else {
        recipient_state_name(r.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_recipient_shows_its_state() {
        let d = pb::DocumentStatus {
            doc_id: "id-1".into(),
            title: "关于检查的通知".into(),
            recipients: vec![
                pb::RecipientStatus {
                    dept: "b".into(),
                    state: pb::RecipientState::Confirmed.into(),
                    ..Default::default()
                },
                pb::RecipientStatus {
                    dept: "c".into(),
                    state: pb::RecipientState::Delivered.into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let out = table(&[d], &Calendar::default()).render();
        assert!(out.contains("b:confirmed c:delivered"), "{out}");
    }
}
