//! Forwarding (转发) (issue 9): a department forwards a document it received as a new document
//! of its own, linked to the original and carrying it as an evidence bundle that the new
//! recipient verifies offline as the original sender's; only received documents can be
//! forwarded. The bodies of `tests/forward.rs`, run under shangmi by `tests/shangmi_ops.rs`.

use std::path::Path;

use anyhow::{Context as _, Result};
use exchange_core::{bundle::decode_bundle, crypto::Profile, document::SignedDoc};
use exchange_proto::v1 as pb;

use crate::{
    TestExchange,
    cli::{last_line, wait_in_inbox},
    random_file,
};

const TITLE: &str = "关于开展安全生产大检查的通知";
const NUMBER: &str = "明应急〔2026〕3号";

/// `forward` at `dept` that must fail; returns its stderr.
async fn forward_fails(ex: &TestExchange, dept: &str, id: &str) -> Result<String> {
    let (ok, out, err) = ex.cli(dept, &["forward", id, "--to", "c"]).await?;
    anyhow::ensure!(!ok, "forwarding {id} at {dept} succeeded: {out}");
    anyhow::ensure!(out.is_empty(), "a refusal prints nothing on stdout: {out}");
    Ok(err)
}

/// 转发: b forwards what a sent it to c; c receives b's document naming the original and
/// carrying it as an evidence bundle that verifies offline as a's; both link both ways.
pub async fn forward_carries_the_original(profile: Profile) -> Result<()> {
    let ex = TestExchange::start_with_profile(&["a", "b", "c"], profile).await?;
    let body = random_file(ex.root(), "正文.ofd", 300_000, 23)?;
    let body = body.to_str().context("utf-8 path")?;
    let sent = ex
        .cli_ok(
            "a",
            &[
                "send",
                "--to",
                "b",
                "--title",
                TITLE,
                "--number",
                NUMBER,
                "--file",
                body,
                "--urgency",
                "urgent",
            ],
        )
        .await?;
    let original = last_line(&sent);
    wait_in_inbox(&ex, "b", &original).await?;

    // b forwards what it received to c, with the defaults: generated cover note and title.
    let out = ex.cli_ok("b", &["forward", &original, "--to", "c"]).await?;
    let forward = last_line(&out);
    assert_eq!(forward.len(), 36, "forward prints the new id last: {out}");
    assert_ne!(forward, original, "a forward is a new document");

    // c receives a document of b's that names the original and carries it as an attachment.
    let entry = wait_in_inbox(&ex, "c", &forward).await?;
    assert_eq!(entry["sender"], "b");
    let shown = ex.cli_json("c", &["show", &forward, "--json"]).await?;
    assert_eq!(shown["forwarded_from"], original.as_str());
    assert_eq!(shown["title"], format!("关于转发《{TITLE}》的通知"));
    assert_eq!(
        shown["urgency"], "urgent",
        "the original's urgency by default"
    );
    assert_eq!(shown["doc_type"], "notice");
    let parts = shown["parts"].as_array().context("parts")?;
    assert_eq!(parts.len(), 2, "{shown}");
    assert_eq!(parts[0]["role"], "body");
    assert_eq!(parts[1]["role"], "attachment");
    let bundle_name = format!("原文-{NUMBER}.bundle");
    assert_eq!(parts[1]["name"], bundle_name.as_str());
    assert_eq!(
        parts[1]["media_type"],
        "application/vnd.exchange.evidence-bundle"
    );
    let text = ex.cli_ok("c", &["show", &forward]).await?;
    assert!(
        text.contains("转发自") && text.contains(&original),
        "{text}"
    );

    // The attachment, saved at c, verifies offline as a's original, content included.
    let saved = ex.root().join("c-saved");
    let saved_arg = saved.to_str().context("utf-8 path")?;
    ex.cli_ok("c", &["show", &forward, "--save", saved_arg])
        .await?;
    let note = std::fs::read_to_string(saved.join(parts[0]["name"].as_str().context("name")?))?;
    assert!(
        note.contains(TITLE) && note.contains(NUMBER) && note.contains(&original),
        "the cover note names the original: {note}"
    );
    let bundle = saved.join(&bundle_name);
    let report = ex.verify_bundle(&bundle).await?;
    assert!(
        report.contains(&original) && report.contains(TITLE) && report.contains(NUMBER),
        "{report}"
    );
    let sender_line = report
        .lines()
        .find(|l| l.starts_with("sender"))
        .context("verify names the sender")?;
    assert_eq!(sender_line.split_whitespace().last(), Some("a"), "{report}");
    assert!(
        report.contains("part(s) included"),
        "content is bundled: {report}"
    );
    assert_original(&bundle, &original)?;

    // At b, the forward names the original, and the original lists the forward.
    let at_b = ex.cli_json("b", &["show", &forward, "--json"]).await?;
    assert_eq!(at_b["forwarded_from"], original.as_str());
    let status = ex.cli_json("b", &["status", &forward, "--json"]).await?;
    assert_eq!(status["forwarded_from"], original.as_str());
    let shown_original = ex.cli_json("b", &["show", &original, "--json"]).await?;
    assert!(shown_original["forwarded_from"].is_null());
    let forwards = shown_original["forwards"].as_array().context("forwards")?;
    assert_eq!(forwards.len(), 1, "{shown_original}");
    assert_eq!(forwards[0]["id"], forward.as_str());
    assert_eq!(forwards[0]["recipients"][0]["dept"], "c");
    let text = ex.cli_ok("b", &["show", &original]).await?;
    assert!(text.contains("转发") && text.contains(&forward), "{text}");
    Ok(())
}

/// Decodes the bundle file: its signed header is the original document, as `a` sealed it.
fn assert_original(bundle: &Path, original: &str) -> Result<()> {
    let decoded = decode_bundle(&std::fs::read(bundle)?)?;
    let doc = SignedDoc::decode(decoded.document.context("the bundle holds a document")?)?;
    assert_eq!(doc.header.id.to_string(), original);
    assert_eq!(doc.header.sender.as_str(), "a");
    assert_eq!(doc.header.title, TITLE);
    assert_eq!(
        decoded.content.len(),
        doc.header.parts.len(),
        "every part's content is bundled"
    );
    Ok(())
}

/// Only a document in the inbox, not sent back, can be forwarded; the node's API holds
/// department systems to the same rule for `forwarded_from` and `in_reply_to`.
pub async fn only_the_inbox_is_forwarded(profile: Profile) -> Result<()> {
    let ex = TestExchange::start_with_profile(&["a", "b", "c"], profile).await?;
    let body = random_file(ex.root(), "正文.ofd", 1000, 5)?;
    let body = body.to_str().context("utf-8 path")?;
    let sent = ex
        .cli_ok(
            "a",
            &["send", "--to", "b", "--title", TITLE, "--file", body],
        )
        .await?;
    let original = last_line(&sent);
    wait_in_inbox(&ex, "b", &original).await?;

    // a sent it (it is not in a's inbox); c never received it; nobody has this id.
    for (dept, id) in [
        ("a", original.as_str()),
        ("c", original.as_str()),
        ("b", "0190f1a2-0000-7000-8000-000000000001"),
    ] {
        let err = forward_fails(&ex, dept, id).await?;
        assert!(
            err.contains("not a document this department received") && err.contains("inbox"),
            "{dept} forwarding {id}: {err}"
        );
    }
    // A document sent back (退回) is not passed on either.
    ex.cli_ok(
        "b",
        &["reject", &original, "--reason", "不属于本单位职责范围"],
    )
    .await?;
    let err = forward_fails(&ex, "b", &original).await?;
    assert!(err.contains("退回"), "{err}");

    // The node's API holds department systems to the same rule, and a reply must answer a
    // document the department received or sent.
    let link = |forwarded_from: &str, in_reply_to: &str| pb::DocumentMetadata {
        title: "转发".into(),
        to_depts: vec!["b".into()],
        doc_type: pb::DocumentType::Notice.into(),
        forwarded_from: forwarded_from.into(),
        in_reply_to: in_reply_to.into(),
        ..Default::default()
    };
    for (dept, meta, field) in [
        ("c", link(&original, ""), "metadata.forwarded_from"),
        ("a", link(&original, ""), "metadata.forwarded_from"),
        ("c", link("", &original), "metadata.in_reply_to"),
    ] {
        let err = submit_with(&ex, dept, meta)
            .await
            .expect_err("a link to a document the department never had");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(field) && err.message().contains(original.as_str()),
            "{}",
            err.message()
        );
    }
    // The sender may refer to its own document (a follow-up); the link is accepted.
    let mut follow_up = link("", &original);
    follow_up.to_depts = vec!["c".into()];
    submit_with(&ex, "a", follow_up).await?;
    Ok(())
}

/// Submits a one-part document with `meta` through `dept`'s node API.
async fn submit_with(
    ex: &TestExchange,
    dept: &str,
    meta: pb::DocumentMetadata,
) -> std::result::Result<String, tonic::Status> {
    use pb::submit_document_request::Msg;
    let mut api = ex
        .node_api(dept)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let msgs = vec![
        pb::SubmitDocumentRequest {
            msg: Some(Msg::Draft(pb::DocumentDraft {
                idempotency_key: String::new(),
                metadata: Some(meta),
                parts: vec![pb::PartSpec {
                    role: pb::PartRole::Body.into(),
                    name: "正文.txt".into(),
                    media_type: "text/plain".into(),
                    size: 4,
                }],
            })),
        },
        pb::SubmitDocumentRequest {
            msg: Some(Msg::Chunk(pb::PartChunk {
                part: 0,
                data: b"body".to_vec(),
            })),
        },
    ];
    let resp = api.submit(tokio_stream::iter(msgs)).await?;
    Ok(resp.into_inner().doc_id)
}
