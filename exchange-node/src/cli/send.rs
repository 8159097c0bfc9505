//! `exchange-node send`: hand a document to the node, which signs it and queues it for the hub.
//!
//! Every file is checked (it exists, it is a regular file, its name is usable) before anything
//! is sent, so a typo in a path costs nothing. The new document's id is the last line on
//! stdout; a script keeps it to follow the document with `status`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use exchange_core::{
    config::{Calendar, When, format_date, parse_when},
    document::Urgency,
};
use exchange_proto::v1 as pb;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    Ctx,
    ctx::Lookup,
    labels::{parse_doc_type, parse_urgency},
    upload::{self, LocalPart},
};

/// How long the file reader may take to notice the node stopped reading, after its answer.
const READER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Flags of `send`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// 主送: recipient department ids, comma-separated (see `directory`).
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
    /// 标题: the document's title.
    #[arg(long)]
    title: String,
    /// A file to send: the first is the body (正文), any further ones are attachments (附件).
    #[arg(long = "file", value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// 紧急程度: normal (平件), urgent (加急) or very-urgent (特急).
    #[arg(long, value_name = "URGENCY", default_value = "normal", value_parser = parse_urgency)]
    urgency: Urgency,
    /// 发文字号, e.g. 明政〔2026〕12号.
    #[arg(long = "number", value_name = "N")]
    doc_number: Option<String>,
    /// 文种: notice (通知), request (请示), reply (批复), letter (函), report (报告), opinion,
    /// decision, resolution, order, communique, announcement, public-notice, bulletin, motion,
    /// minutes.
    #[arg(long, value_name = "TYPE", default_value = "notice", value_parser = parse_doc_type)]
    doc_type: pb::DocumentType,
    /// Makes a retry safe: the node returns the same id for the same key instead of sending twice.
    #[arg(long, value_name = "K")]
    idempotency_key: Option<String>,
    /// 办理/答复时限: a date (2026-12-01: until the end of that day in the node's `[calendar]
    /// utc_offset`, default +08:00) or an RFC 3339 time by which recipients should act; their
    /// `inbox` shows the time left. The hub gives up on a delivery still undelivered then.
    #[arg(long, value_name = "DATE", value_parser = parse_when)]
    deadline: Option<When>,
}

/// Sends the document and prints its id.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let parts = local_parts(&args.files)?;
    let draft = draft(&args, &parts, &ctx.cfg.calendar);
    let id = submit(ctx, draft, parts).await?;
    eprintln!(
        "queued for {}; follow it with: {}",
        recipients(&args.to, &args.cc).join("、"),
        ctx.command(&format!("status {id}"))
    );
    println!("{id}");
    Ok(())
}

/// Hands `draft` and the files of `parts` to the node; returns the new document's id once the
/// node has it durably (also used by `reply` and `forward`).
pub(super) async fn submit(
    ctx: &Ctx,
    draft: pb::DocumentDraft,
    parts: Vec<LocalPart>,
) -> anyhow::Result<String> {
    let (rx, mut reader) = upload::start(draft, parts);
    let mut client = ctx.client();
    let call = client.submit(ReceiverStream::new(rx));
    tokio::pin!(call);
    let answer = tokio::select! {
        read = &mut reader => match read {
            // Everything is handed over: the node answers once the document is durable.
            Ok(Ok(())) => call.await,
            // A file could not be read as declared; the reader aborted the submission.
            Ok(Err(e)) => return Err(e),
            Err(e) => anyhow::bail!("the file reader failed: {e}"),
        },
        answer = &mut call => {
            if answer.is_err()
                && let Ok(Ok(Err(e))) = tokio::time::timeout(READER_GRACE, &mut reader).await
            {
                return Err(e); // the local cause explains the node's refusal best
            }
            reader.abort();
            answer
        }
    };
    Ok(answer
        .map_err(|s| ctx.rpc_error(&s, Lookup::Sent))?
        .into_inner()
        .doc_id)
}

/// Checks every file and describes it for the manifest: the first is the body.
pub(super) fn local_parts(files: &[PathBuf]) -> anyhow::Result<Vec<LocalPart>> {
    files
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if !meta.is_file() {
                anyhow::bail!("{} is not a regular file", path.display());
            }
            let name = path.file_name().and_then(|n| n.to_str()).with_context(|| {
                format!("{}: the file name must be valid UTF-8", path.display())
            })?;
            let role = if i == 0 {
                pb::PartRole::Body
            } else {
                pb::PartRole::Attachment
            };
            let spec = pb::PartSpec {
                role: role.into(),
                name: name.to_owned(),
                media_type: media_type(path).to_owned(),
                size: meta.len(),
            };
            Ok(LocalPart {
                path: path.clone(),
                spec,
            })
        })
        .collect()
}

/// The draft: metadata from the flags, the manifest from the files.
fn draft(args: &Args, parts: &[LocalPart], calendar: &Calendar) -> pb::DocumentDraft {
    let to = dept_ids(&args.to);
    let cc = dept_ids(&args.cc);
    let metadata = pb::DocumentMetadata {
        doc_type: args.doc_type.into(),
        urgency: pb::Urgency::from(args.urgency).into(),
        doc_number: args.doc_number.clone().unwrap_or_default(),
        title: args.title.clone(),
        main_recipients_text: to.join("、"),
        cc_text: cc.join("、"),
        to_depts: to,
        cc_depts: cc,
        document_date: today(calendar),
        reply_deadline_ms: args.deadline.map_or(0, |d| d.end_ms(calendar)),
        ..Default::default()
    };
    pb::DocumentDraft {
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        metadata: Some(metadata),
        parts: parts.iter().map(|p| p.spec.clone()).collect(),
    }
}

/// Department ids from a comma-split flag: trimmed, empty entries dropped (also `forward`).
pub(super) fn dept_ids(raw: &[String]) -> Vec<String> {
    raw.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every recipient, 主送 then 抄送, for the confirmation message (also `forward`).
pub(super) fn recipients(to: &[String], cc: &[String]) -> Vec<String> {
    dept_ids(to).into_iter().chain(dept_ids(cc)).collect()
}

/// 成文日期: today in the office's calendar, as YYYY-MM-DD.
pub(super) fn today(calendar: &Calendar) -> String {
    format_date(calendar.today())
}

/// The media type the node records for a file, from its extension.
fn media_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "ofd" => "application/ofd",
        "pdf" => "application/pdf",
        "txt" => "text/plain; charset=utf-8",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        // Kingsoft WPS Writer, the usual .wps in government offices (not Microsoft Works).
        "wps" => "application/kswps",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "zip" => "application/zip",
        "xml" => "application/xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn media_types_follow_the_extension() {
        assert_eq!(media_type(Path::new("正文.ofd")), "application/ofd");
        assert_eq!(media_type(Path::new("a/b.PDF")), "application/pdf");
        assert_eq!(
            media_type(Path::new("note.txt")),
            "text/plain; charset=utf-8"
        );
        assert_eq!(media_type(Path::new("x.docx")).len(), 71);
        assert_eq!(
            media_type(Path::new("no-extension")),
            "application/octet-stream"
        );
        assert_eq!(
            media_type(Path::new("archive.tar.gz")),
            "application/octet-stream"
        );
    }

    #[test]
    fn a_missing_file_is_named_before_anything_is_sent() {
        let err = local_parts(&[PathBuf::from("/nonexistent/正文.ofd")]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/正文.ofd"), "{err}");
    }

    #[test]
    fn the_draft_carries_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let (body, att) = (dir.path().join("正文.ofd"), dir.path().join("附件.pdf"));
        std::fs::write(&body, b"body").unwrap();
        std::fs::write(&att, b"attachment").unwrap();
        let cli = Cli::try_parse_from([
            "exchange-node",
            "--config",
            "n.toml",
            "send",
            "--to",
            "b, c,",
            "--cc",
            "d",
            "--title",
            "关于检查的通知",
            "--file",
            body.to_str().unwrap(),
            "--file",
            att.to_str().unwrap(),
            "--urgency",
            "urgent",
            "--number",
            "明政〔2026〕12号",
            "--doc-type",
            "letter",
            "--deadline",
            "2026-12-01",
        ])
        .unwrap();
        let Command::Send(args) = cli.cmd else {
            panic!("not send")
        };
        let parts = local_parts(&args.files).unwrap();
        let cal = Calendar::default();
        let d = draft(&args, &parts, &cal);
        let m = d.metadata.unwrap();
        assert_eq!(m.to_depts, ["b", "c"]);
        assert_eq!(m.main_recipients_text, "b、c");
        assert_eq!(
            (m.cc_depts, m.cc_text),
            (vec!["d".to_owned()], "d".to_owned())
        );
        assert_eq!(m.urgency, i32::from(pb::Urgency::Urgent));
        assert_eq!(m.doc_type, i32::from(pb::DocumentType::Letter));
        assert_eq!(m.doc_number, "明政〔2026〕12号");
        assert_eq!(m.document_date, today(&cal));
        // "By 1 December": until 24:00 that day in Beijing, 16:00 UTC.
        assert_eq!(m.reply_deadline_ms, 1_796_140_800_000);
        assert_eq!(d.parts[0].role, i32::from(pb::PartRole::Body));
        assert_eq!(
            (d.parts[1].name.as_str(), d.parts[1].size),
            ("附件.pdf", 10)
        );
        assert_eq!(d.parts[1].role, i32::from(pb::PartRole::Attachment));
    }
}
