//! `exchange-node reply ID`: answer a received document (答复, e.g. a 批复 to a 请示). The reply
//! is a new document from this department to the original's sender, whose signed metadata
//! names the original in `in_reply_to`; the original's sender sees it under the original's
//! `status`.

use std::path::PathBuf;

use anyhow::Context as _;
use exchange_core::document::Urgency;
use exchange_proto::v1::{self as pb, fetch_document_response::Msg};

use super::{
    Ctx,
    ctx::Lookup,
    labels::{parse_doc_type, parse_urgency},
    send::{local_parts, submit, today},
};

/// Flags of `reply`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The id of the received document this answers, as `inbox` lists it.
    id: String,
    /// 标题 of the reply.
    #[arg(long)]
    title: String,
    /// A file to send: the first is the body (正文), any further ones are attachments (附件).
    #[arg(long = "file", value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// 紧急程度: normal, urgent or very-urgent.
    #[arg(long, value_name = "URGENCY", default_value = "normal", value_parser = parse_urgency)]
    urgency: Urgency,
    /// 发文字号 of the reply.
    #[arg(long = "number", value_name = "N")]
    doc_number: Option<String>,
    /// 文种 of the reply: reply (批复, the default), letter (函), opinion (意见), ...
    #[arg(long, value_name = "TYPE", default_value = "reply", value_parser = parse_doc_type)]
    doc_type: pb::DocumentType,
    /// Makes a retry safe: the node returns the same id for the same key.
    #[arg(long, value_name = "K")]
    idempotency_key: Option<String>,
}

/// Sends the reply to the original's sender and prints its id.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let original = args.id.trim().to_owned();
    let sender = original_sender(ctx, &original).await?;
    let parts = local_parts(&args.files)?;
    let metadata = pb::DocumentMetadata {
        doc_type: args.doc_type.into(),
        urgency: pb::Urgency::from(args.urgency).into(),
        doc_number: args.doc_number.clone().unwrap_or_default(),
        title: args.title.clone(),
        main_recipients_text: sender.clone(),
        to_depts: vec![sender.clone()],
        document_date: today(&ctx.cfg.calendar),
        in_reply_to: original.clone(),
        ..Default::default()
    };
    let draft = pb::DocumentDraft {
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        metadata: Some(metadata),
        parts: parts.iter().map(|p| p.spec.clone()).collect(),
    };
    let id = submit(ctx, draft, parts).await?;
    eprintln!(
        "reply to {original} queued for {sender}; follow it with: {}",
        ctx.command(&format!("status {id}"))
    );
    println!("{id}");
    Ok(())
}

/// Who sent the received document `id` (the reply goes back to them).
async fn original_sender(ctx: &Ctx, id: &str) -> anyhow::Result<String> {
    let doc = fetch_received(ctx, id, |s| ctx.rpc_error(&s, Lookup::Received)).await?;
    doc.entry
        .map(|e| e.sender)
        .filter(|s| !s.is_empty())
        .context("the node's answer does not name the original's sender")
}

/// The received document `id` as the node describes it (inbox entry, verified header, signed
/// document), without content; `refused` explains a failed call (also used by `forward`).
pub(super) async fn fetch_received(
    ctx: &Ctx,
    id: &str,
    refused: impl Fn(tonic::Status) -> anyhow::Error,
) -> anyhow::Result<pb::ReceivedDocument> {
    let mut stream = ctx
        .client()
        .fetch_document(pb::FetchDocumentRequest {
            doc_id: id.to_owned(),
            with_content: false,
        })
        .await
        .map_err(&refused)?
        .into_inner();
    match stream.message().await.map_err(&refused)? {
        Some(pb::FetchDocumentResponse {
            msg: Some(Msg::Document(doc)),
        }) => Ok(doc),
        _ => anyhow::bail!("the node answered without the original document"),
    }
}
