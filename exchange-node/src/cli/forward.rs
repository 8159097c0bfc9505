//! `exchange-node forward ID --to DEPT[,…]`: forward a received document (转发) to further
//! departments.
//!
//! A forward is a new document of this department, with its own 标题, 发文字号 and 正文 (a cover
//! note), whose signed metadata names the original in `forwarded_from` and whose one attachment
//! is the original as an evidence bundle with content (`evidence ID --with-content`,
//! `docs/evidence.md`). The recipients thus hold the original exactly as its sender signed it,
//! and check that signature offline with `exchange-certs verify FILE --ca ca.pem`; a copy of the
//! files alone would prove nothing. Adding recipients to a document this department *sent* is
//! 补发 (`add-recipients`), not this.
//!
//! The bundle is streamed from the node into a temporary file, then streamed back to the node as
//! the attachment, so the original is never held in memory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use exchange_core::document::{Urgency, limits};
use exchange_proto::v1 as pb;

use super::{
    Ctx,
    ctx::Lookup,
    evidence,
    labels::{parse_doc_type, parse_urgency},
    reply::fetch_received,
    send::{dept_ids, local_parts, recipients, submit, today},
    upload::LocalPart,
};

/// The media type of the attached original: an evidence bundle file (`docs/evidence.md`).
const BUNDLE_MEDIA_TYPE: &str = "application/vnd.exchange.evidence-bundle";

/// At most this many characters of the original's 发文字号 go into the attachment's name.
const NUMBER_IN_NAME: usize = 100;

/// Flags of `forward`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The id of the received document to forward, as `inbox` lists it.
    id: String,
    /// 主送: department ids to forward it to, comma-separated (see `directory`).
    #[arg(
        long,
        value_name = "DEPT[,DEPT]",
        value_delimiter = ',',
        required = true
    )]
    to: Vec<String>,
    /// 抄送: copy-to department ids, comma-separated.
    #[arg(long, value_name = "DEPT[,DEPT]", value_delimiter = ',')]
    cc: Vec<String>,
    /// 标题 of the forwarding document [default: 关于转发《<original title>》的通知].
    #[arg(long)]
    title: Option<String>,
    /// The forwarding document's 正文, e.g. an OFD with this department's instructions
    /// [default: a short text naming the original's title, 发文字号 and sender].
    #[arg(long, value_name = "FILE")]
    body: Option<PathBuf>,
    /// 紧急程度: normal, urgent, very-urgent, pingji or teti [default: the original's].
    #[arg(long, value_name = "URGENCY", value_parser = parse_urgency)]
    urgency: Option<Urgency>,
    /// 发文字号 of the forwarding document.
    #[arg(long = "number", value_name = "N")]
    doc_number: Option<String>,
    /// 文种 of the forwarding document.
    #[arg(long, value_name = "TYPE", default_value = "notice", value_parser = parse_doc_type)]
    doc_type: pb::DocumentType,
    /// Makes a retry safe: the node returns the same id for the same key.
    #[arg(long, value_name = "K")]
    idempotency_key: Option<String>,
}

/// Forwards the received document and prints the new document's id.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let id = args.id.trim();
    let original = fetch_received(ctx, id, |s| not_received(ctx, id, s)).await?;
    let entry = original.entry.unwrap_or_default();
    check_forwardable(id, &entry)?;
    let title = match &args.title {
        Some(t) => t.clone(),
        None => default_title(&entry.title)?,
    };
    let (to, cc) = (dept_ids(&args.to), dept_ids(&args.cc));
    // Removed when it goes out of scope, whatever happens.
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let mut parts = match &args.body {
        Some(body) => local_parts(std::slice::from_ref(body))?,
        None => {
            let note = cover_note(&entry, &to, &cc, &ctx.cfg.node.id.to_string());
            let path = dir.path().join("转发通知.txt");
            std::fs::write(&path, note).with_context(|| format!("writing {}", path.display()))?;
            local_parts(&[path])?
        }
    };
    let bundle = bundle_name(&entry);
    parts.push(original_part(ctx, id, &bundle, dir.path()).await?);
    let metadata = pb::DocumentMetadata {
        doc_type: args.doc_type.into(),
        urgency: match args.urgency {
            Some(u) => pb::Urgency::from(u).into(),
            None => entry.urgency,
        },
        doc_number: args.doc_number.clone().unwrap_or_default(),
        title,
        main_recipients_text: to.join("、"),
        cc_text: cc.join("、"),
        to_depts: to,
        cc_depts: cc,
        attachment_note: bundle,
        document_date: today(&ctx.cfg.calendar),
        forwarded_from: id.to_owned(),
        ..Default::default()
    };
    let draft = pb::DocumentDraft {
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        metadata: Some(metadata),
        parts: parts.iter().map(|p| p.spec.clone()).collect(),
    };
    let new_id = submit(ctx, draft, parts).await?;
    eprintln!(
        "forward of {id} queued for {}; follow it with: {}",
        recipients(&args.to, &args.cc).join("、"),
        ctx.command(&format!("status {new_id}"))
    );
    println!("{new_id}");
    Ok(())
}

/// The documents this department sent that forward document `id`, oldest first: a scan of
/// every sent document (`ListSent`), which is cheap at a department's volume (used by `show`).
pub(super) async fn forwards_of(ctx: &Ctx, id: &str) -> anyhow::Result<Vec<pb::DocumentStatus>> {
    let mut sent = ctx
        .client()
        .list_sent(pb::ListSentRequest {})
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Sent))?
        .into_inner()
        .documents;
    sent.retain(|d| d.forwarded_from == id);
    sent.sort_by_key(|d| d.created_at_ms);
    Ok(sent)
}

/// The clerk's sentence when the node does not have `id` among the received documents.
fn not_received(ctx: &Ctx, id: &str, status: tonic::Status) -> anyhow::Error {
    if status.code() != tonic::Code::NotFound {
        return ctx.rpc_error(&status, Lookup::Received);
    }
    anyhow::anyhow!(
        "cannot forward {id}: it is not a document this department received; only documents in \
         this department's inbox can be forwarded (转发), and they are listed by: {}\n\
         hint: to send a document this department sent to more departments, use add-recipients (补发)",
        ctx.command("inbox")
    )
}

/// Refuses what this department may not pass on: a document it sent back, or one its sender
/// recalled (its content is withheld, and a forward would spread what the sender withdrew).
fn check_forwardable(id: &str, entry: &pb::InboxEntry) -> anyhow::Result<()> {
    match entry.state() {
        pb::InboxState::New | pb::InboxState::Confirmed => Ok(()),
        pb::InboxState::Rejected => {
            anyhow::bail!("cannot forward {id}: this department sent it back to its sender (退回)")
        }
        pb::InboxState::Recalled
        | pb::InboxState::RecallPending
        | pb::InboxState::RecallAcknowledged => {
            anyhow::bail!("cannot forward {id}: its sender recalled it (撤回)")
        }
        pb::InboxState::Unspecified => anyhow::bail!(
            "cannot forward {id}: the node reports a state this command does not know"
        ),
    }
}

/// 关于转发《<title>》的通知, if it fits the title limit.
fn default_title(original: &str) -> anyhow::Result<String> {
    let title = format!("关于转发《{original}》的通知");
    let chars = title.chars().count();
    if chars > limits::TITLE_CHARS {
        anyhow::bail!(
            "the default title would be {chars} characters, more than {}; give one with --title",
            limits::TITLE_CHARS
        );
    }
    Ok(title)
}

/// The attachment's file name: `原文-<发文字号>.bundle`, or `原文-<id>.bundle` without one. The
/// 发文字号 is free text, so anything that is not a plain file name character is replaced.
fn bundle_name(entry: &pb::InboxEntry) -> String {
    let number: String = entry
        .doc_number
        .trim()
        .chars()
        .take(NUMBER_IN_NAME)
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let stem = if number.is_empty() {
        entry.doc_id.as_str()
    } else {
        number.as_str()
    };
    format!("原文-{stem}.bundle")
}

/// The generated 正文 when no `--body` is given: what is forwarded, from whom, and how the
/// attachment is checked.
fn cover_note(entry: &pb::InboxEntry, to: &[String], cc: &[String], this_dept: &str) -> String {
    let number = if entry.doc_number.is_empty() {
        String::new()
    } else {
        format!("（{}）", entry.doc_number)
    };
    let mut note = format!(
        "{}：\n\n现将 {} 发来的《{}》{number}转发给你们，请遵照执行。\n\n",
        to.join("、"),
        entry.sender,
        entry.title,
    );
    note.push_str(&format!(
        "原文见附件 {}：原发文单位签名的电子公文（公文标识 {}）及其收发凭证，可用\n\
         exchange-certs verify {} --ca ca.pem 离线核验。\n",
        bundle_name(entry),
        entry.doc_id,
        bundle_name(entry),
    ));
    if !cc.is_empty() {
        note.push_str(&format!("\n抄送：{}\n", cc.join("、")));
    }
    note.push_str(&format!("\n{this_dept}\n"));
    note
}

/// Writes the original's bundle with content into `dir` and describes it as the attachment.
async fn original_part(ctx: &Ctx, id: &str, name: &str, dir: &Path) -> anyhow::Result<LocalPart> {
    let path = dir.join("original.bundle");
    evidence::write(ctx, id, true, &path)
        .await
        .with_context(|| format!("bundling the original {id}"))?;
    let size = tokio::fs::metadata(&path)
        .await
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    Ok(LocalPart {
        path,
        spec: pb::PartSpec {
            role: pb::PartRole::Attachment.into(),
            name: name.to_owned(),
            media_type: BUNDLE_MEDIA_TYPE.to_owned(),
            size,
        },
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn entry() -> pb::InboxEntry {
        pb::InboxEntry {
            doc_id: "0190f1a2-0000-7000-8000-000000000001".into(),
            sender: "a".into(),
            title: "关于开展安全检查的通知".into(),
            doc_number: "明政〔2026〕12号".into(),
            state: pb::InboxState::Confirmed.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_attachment_is_named_after_the_original() {
        let mut e = entry();
        assert_eq!(bundle_name(&e), "原文-明政〔2026〕12号.bundle");
        e.doc_number = "a/b\\c\n".into();
        assert_eq!(bundle_name(&e), "原文-a_b_c.bundle");
        e.doc_number = "  ".into();
        assert_eq!(bundle_name(&e), format!("原文-{}.bundle", e.doc_id));
        e.doc_number = "号".repeat(1000);
        assert!(bundle_name(&e).chars().count() <= limits::NAME_CHARS);
    }

    #[test]
    fn the_cover_note_names_the_original() {
        let note = cover_note(&entry(), &["c".into(), "d".into()], &[], "b");
        assert!(note.starts_with("c、d："), "{note}");
        assert!(
            note.contains("a 发来的《关于开展安全检查的通知》（明政〔2026〕12号）转发"),
            "{note}"
        );
        assert!(note.contains(&entry().doc_id), "{note}");
        assert!(note.trim_end().ends_with('b'), "{note}");
    }

    #[test]
    fn the_default_title_wraps_the_original_and_respects_the_limit() {
        assert_eq!(
            default_title("关于开展安全检查的通知").unwrap(),
            "关于转发《关于开展安全检查的通知》的通知"
        );
        let err = default_title(&"长".repeat(limits::TITLE_CHARS)).unwrap_err();
        assert!(err.to_string().contains("--title"), "{err}");
    }

    #[test]
    fn only_a_kept_document_can_be_forwarded() {
        let mut e = entry();
        assert!(check_forwardable("x", &e).is_ok());
        e.state = pb::InboxState::New.into();
        assert!(check_forwardable("x", &e).is_ok());
        e.state = pb::InboxState::Rejected.into();
        assert!(
            check_forwardable("x", &e)
                .unwrap_err()
                .to_string()
                .contains("退回")
        );
        e.state = pb::InboxState::Recalled.into();
        assert!(
            check_forwardable("x", &e)
                .unwrap_err()
                .to_string()
                .contains("撤回")
        );
    }

    #[test]
    fn the_flags_parse() {
        let cli = Cli::try_parse_from([
            "exchange-node",
            "--config",
            "n.toml",
            "forward",
            "ID",
            "--to",
            "c, d",
            "--cc",
            "e",
            "--urgency",
            "特急",
        ])
        .unwrap();
        let Command::Forward(args) = cli.cmd else {
            panic!("not forward")
        };
        assert_eq!(dept_ids(&args.to), ["c", "d"]);
        assert_eq!(args.urgency, Some(Urgency::VeryUrgent));
        assert_eq!(args.doc_type, pb::DocumentType::Notice);
        assert!(args.title.is_none() && args.body.is_none());
        let missing_to = Cli::try_parse_from(["exchange-node", "forward", "ID"]);
        assert!(missing_to.is_err());
    }
}
