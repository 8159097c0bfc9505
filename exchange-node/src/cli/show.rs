//! `exchange-node show ID`: a received document's details, as signed by its sender, and with
//! `--save DIR` its files, verified against the signed manifest. The documents this department
//! forwarded it in (转发) are listed under it. For a document this department sent, `show`
//! prints what `status` does.

use std::path::PathBuf;

use anyhow::Context as _;
use exchange_core::config::Calendar;
use exchange_proto::v1::{self as pb, fetch_document_response::Msg};
use serde::Serialize;

use super::{
    Ctx,
    ctx::Lookup,
    inbox::EntryJson,
    labels::{
        doc_type_label, doc_type_name, part_label, part_role_name, role_label, time_or_null,
        urgency,
    },
    outbox,
    save::save_parts,
    status::{self, StatusJson},
    table::{Table, or_dash, pad, printable},
};

/// Flags of `show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The document id, as `inbox` lists it.
    id: String,
    /// Also save the document's files (正文 and 附件) into this directory (created if needed).
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// `show --json`: the inbox entry's fields, plus the signed header's.
#[derive(Debug, Serialize)]
struct ShowJson {
    #[serde(flatten)]
    entry: EntryJson,
    /// 文种, English name (`notice`, `request`, ...; empty if unspecified).
    doc_type: &'static str,
    /// 主送 department ids.
    to_depts: Vec<String>,
    /// 抄送 department ids.
    cc_depts: Vec<String>,
    /// 主送机关 as printed on the document.
    main_recipients_text: String,
    /// 抄送机关 as printed.
    cc_text: String,
    /// 成文日期, YYYY-MM-DD.
    document_date: String,
    /// The id of the document this one answers (答复); null if it is not a reply.
    in_reply_to: Option<String>,
    /// The id of the received document this one forwards (转发); null if it is not a forward.
    forwarded_from: Option<String>,
    /// Documents this department sent that forward this one (转发), oldest first, each as
    /// `status --json` prints it.
    forwards: Vec<StatusJson>,
    /// When the sender's node sealed it.
    created_at: Option<String>,
    /// When a clerk here confirmed it (签收).
    confirmed_at: Option<String>,
    /// When a clerk here rejected it (退回).
    rejected_at: Option<String>,
    /// The content manifest, body first.
    parts: Vec<PartJson>,
}

/// One part in `show --json`.
#[derive(Debug, Serialize)]
struct PartJson {
    /// `body` or `attachment`.
    role: &'static str,
    name: String,
    media_type: String,
    size: u64,
    /// Lowercase hex.
    sha256: String,
    /// Where `--save` wrote it (null without `--save`).
    saved_to: Option<String>,
}

/// Shows (and with `--save`, saves) a received document.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let req = pb::FetchDocumentRequest {
        doc_id: args.id.trim().to_owned(),
        with_content: args.save.is_some(),
    };
    let refused = |s: tonic::Status| ctx.rpc_error(&s, Lookup::Received);
    let mut stream = match ctx.client().fetch_document(req).await {
        Ok(answer) => answer.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => return show_sent(&args, ctx, s).await,
        Err(s) => return Err(refused(s)),
    };
    let first = stream.message().await.map_err(refused)?;
    let Some(pb::FetchDocumentResponse {
        msg: Some(Msg::Document(doc)),
    }) = first
    else {
        anyhow::bail!("the node answered without the document");
    };
    let entry = doc.entry.unwrap_or_default();
    let header = doc
        .header
        .context("the node's answer has no document header")?;
    let saved = match &args.save {
        Some(dir) => save_parts(&mut stream, &header, dir).await?,
        None => Vec::new(),
    };
    let forwards = super::forward::forwards_of(ctx, &entry.doc_id).await?;
    if args.json {
        let mut json = to_json(&entry, header, &saved);
        json.forwards = forwards.iter().map(status::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", text(&entry, &header, &ctx.cfg.calendar));
        if !forwards.is_empty() {
            println!("\nforwarded (转发) by this department as:");
            print!("{}", outbox::table(&forwards, &ctx.cfg.calendar).render());
        }
        for path in &saved {
            println!("saved {}", path.display());
        }
    }
    Ok(())
}

/// `show` of an id the node does not know as received: a document this department sent is
/// shown as `status` shows it; anything else is refused with the node's answer `not_received`.
async fn show_sent(args: &Args, ctx: &Ctx, not_received: tonic::Status) -> anyhow::Result<()> {
    let req = pb::GetStatusRequest {
        doc_id: args.id.trim().to_owned(),
    };
    let sent = match ctx.client().get_status(req).await {
        Ok(answer) => answer.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => {
            return Err(ctx.rpc_error(&not_received, Lookup::Any));
        }
        Err(s) => return Err(ctx.rpc_error(&s, Lookup::Sent)),
    };
    if args.save.is_some() {
        anyhow::bail!(
            "{} is a document this department sent: --save saves received documents only",
            sent.doc_id
        );
    }
    eprintln!("{} was sent by this department; its status:", sent.doc_id);
    status::print(&sent, args.json, &ctx.cfg.calendar)
}

fn to_json(entry: &pb::InboxEntry, header: pb::DocumentHeader, saved: &[PathBuf]) -> ShowJson {
    let meta = header.metadata.unwrap_or_default();
    let parts = header
        .parts
        .iter()
        .enumerate()
        .map(|(i, p)| PartJson {
            role: part_role_name(p.role()),
            name: p.name.clone(),
            media_type: p.media_type.clone(),
            size: p.size,
            sha256: hex::encode(&p.sha256),
            saved_to: saved.get(i).map(|s| s.display().to_string()),
        })
        .collect();
    ShowJson {
        entry: EntryJson::from(entry),
        doc_type: doc_type_name(meta.doc_type()),
        document_date: meta.document_date,
        in_reply_to: (!meta.in_reply_to.is_empty()).then(|| meta.in_reply_to.clone()),
        forwarded_from: (!meta.forwarded_from.is_empty()).then(|| meta.forwarded_from.clone()),
        forwards: Vec::new(),
        main_recipients_text: meta.main_recipients_text,
        cc_text: meta.cc_text,
        to_depts: meta.to_depts,
        cc_depts: meta.cc_depts,
        created_at: time_or_null(header.created_at_ms),
        confirmed_at: time_or_null(entry.confirmed_at_ms),
        rejected_at: time_or_null(entry.rejected_at_ms),
        parts,
    }
}

/// The document as labelled lines, then its parts as a table.
fn text(entry: &pb::InboxEntry, header: &pb::DocumentHeader, cal: &Calendar) -> String {
    let local = |ms: i64| match cal.format_local(ms) {
        t if t.is_empty() => t,
        t => format!("{t} ({})", cal.offset_label()),
    };
    let meta = header.metadata.clone().unwrap_or_default();
    let kind = match doc_type_label(meta.doc_type()) {
        "" => String::new(),
        label => format!("{label} ({})", doc_type_name(meta.doc_type())),
    };
    let u = urgency(entry.urgency());
    let mut lines = vec![
        ("id", header.id.clone()),
        ("文种", kind),
        ("发文字号", meta.doc_number.clone()),
        ("标题", meta.title.clone()),
        ("发文单位", header.sender.clone()),
        ("紧急程度", format!("{} ({})", u.label(), u.name())),
        (
            "主送",
            recipients(&meta.main_recipients_text, &meta.to_depts),
        ),
        ("抄送", recipients(&meta.cc_text, &meta.cc_depts)),
        ("成文日期", meta.document_date.clone()),
        ("sent", local(header.created_at_ms)),
        ("received", local(entry.received_at_ms)),
        ("role", role_label(entry.role()).to_owned()),
        ("state", state(entry, &local)),
    ];
    if !meta.forwarded_from.is_empty() {
        lines.insert(5, ("转发自", meta.forwarded_from));
    }
    let width = lines
        .iter()
        .map(|(k, _)| unicode_width::UnicodeWidthStr::width(*k))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in lines {
        out.push_str(&format!("{}  {}\n", pad(k, width), or_dash(printable(&v))));
    }
    let mut parts = Table::new(&["PART", "NAME", "SIZE", "SHA256", "TYPE"]);
    let mut attachments = 0;
    for p in &header.parts {
        if p.role() == pb::PartRole::Attachment {
            attachments += 1;
        }
        parts.row(vec![
            part_label(p.role(), attachments),
            p.name.clone(),
            p.size.to_string(),
            hex::encode(&p.sha256),
            p.media_type.clone(),
        ]);
    }
    out.push('\n');
    out.push_str(&parts.render());
    out
}

/// 主送/抄送 as printed, with the department ids when the printed text says something else.
fn recipients(printed: &str, ids: &[String]) -> String {
    let joined = ids.join("、");
    if printed.is_empty() || printed == joined {
        joined
    } else if ids.is_empty() {
        printed.to_owned()
    } else {
        format!("{printed} ({})", ids.join(", "))
    }
}

/// `new`, or who confirmed/rejected it, when, and the reason or note.
fn state(e: &pb::InboxEntry, local: &dyn Fn(i64) -> String) -> String {
    let (name, at) = match e.state() {
        pb::InboxState::Confirmed => ("confirmed (签收)", e.confirmed_at_ms),
        pb::InboxState::Rejected => ("rejected (退回)", e.rejected_at_ms),
        pb::InboxState::RecallPending => (
            "confirmed (签收), then RECALLED by the sender: acknowledge with `ack-recall`",
            e.confirmed_at_ms,
        ),
        pb::InboxState::RecallAcknowledged => (
            "confirmed (签收), then recalled by the sender (recall acknowledged)",
            e.confirmed_at_ms,
        ),
        pb::InboxState::Recalled => {
            return format!("recalled by the sender (撤回): {}", e.recall_reason);
        }
        pb::InboxState::New => return "new".to_owned(),
        pb::InboxState::Unspecified => return "unknown".to_owned(),
    };
    let mut s = format!("{name} by {} at {}", e.clerk, local(at));
    if !e.reason.is_empty() {
        s.push_str(&format!(": {}", e.reason));
    }
    if !e.recall_reason.is_empty() {
        s.push_str(&format!("; recall reason: {}", e.recall_reason));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> (pb::InboxEntry, pb::DocumentHeader) {
        let entry = pb::InboxEntry {
            doc_id: "id-1".into(),
            sender: "a".into(),
            title: "关于检查的通知".into(),
            state: pb::InboxState::Rejected.into(),
            rejected_at_ms: 1_764_167_230_123,
            clerk: "李四".into(),
            reason: "附件缺页".into(),
            ..Default::default()
        };
        let meta = pb::DocumentMetadata {
            doc_type: pb::DocumentType::Notice.into(),
            title: entry.title.clone(),
            to_depts: vec!["b".into()],
            main_recipients_text: "b".into(),
            ..Default::default()
        };
        let body = pb::Part {
            role: pb::PartRole::Body.into(),
            name: "正文.ofd".into(),
            size: 3,
            sha256: vec![0xab; 32],
            ..Default::default()
        };
        let att = pb::Part {
            role: pb::PartRole::Attachment.into(),
            name: "附件.pdf".into(),
            ..Default::default()
        };
        let header = pb::DocumentHeader {
            id: "id-1".into(),
            sender: "a".into(),
            metadata: Some(meta),
            parts: vec![body, att],
            ..Default::default()
        };
        (entry, header)
    }

    #[test]
    fn text_names_the_elements_clerks_know() {
        let (entry, header) = doc();
        let out = text(&entry, &header, &Calendar::default());
        assert!(out.contains("通知 (notice)"), "{out}");
        assert!(
            out.contains("rejected (退回) by 李四 at 2025-11-26 22:27:10 (+08:00): 附件缺页"),
            "{out}"
        );
        assert!(out.contains("附件1"), "{out}");
        assert!(out.contains(&"ab".repeat(32)), "{out}");
    }

    #[test]
    fn json_adds_the_header_to_the_entry() {
        let (entry, header) = doc();
        let v = serde_json::to_value(to_json(&entry, header, &[PathBuf::from("/tmp/x/正文.ofd")]))
            .unwrap();
        assert_eq!(v["id"], "id-1");
        assert_eq!(v["state"], "rejected");
        assert_eq!(v["doc_type"], "notice");
        assert_eq!(v["rejected_at"], "2025-11-26T14:27:10.123Z");
        assert!(v["confirmed_at"].is_null());
        assert_eq!(v["parts"][0]["role"], "body");
        assert_eq!(v["parts"][0]["saved_to"], "/tmp/x/正文.ofd");
        assert!(v["parts"][1]["saved_to"].is_null());
    }

    #[test]
    fn a_forward_names_its_original() {
        let (entry, mut header) = doc();
        let out = text(&entry, &header, &Calendar::default());
        assert!(
            !out.contains("转发自"),
            "only forwards say where from: {out}"
        );
        let v = serde_json::to_value(to_json(&entry, header.clone(), &[])).unwrap();
        assert!(v["forwarded_from"].is_null());
        assert_eq!(v["forwards"], serde_json::json!([]));
        if let Some(m) = header.metadata.as_mut() {
            m.forwarded_from = "id-0".into();
        }
        let out = text(&entry, &header, &Calendar::default());
        assert!(out.contains("转发自") && out.contains("id-0"), "{out}");
        let v = serde_json::to_value(to_json(&entry, header, &[])).unwrap();
        assert_eq!(v["forwarded_from"], "id-0");
    }

    #[test]
    fn printed_recipients_keep_their_ids() {
        assert_eq!(recipients("", &["b".into(), "c".into()]), "b、c");
        assert_eq!(recipients("市财政局", &["b".into()]), "市财政局 (b)");
    }
}
