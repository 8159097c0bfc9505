//! Proof at every step: the sender's evidence bundle verifies offline with only the CA and shows
//! who signed each step and when; an altered byte, another CA, content altered at the hub and a
//! forged signature are all caught, and the refusals are themselves proven.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use exchange_certs::{Ca, Validity};
use exchange_core::{
    bundle::decode_bundle,
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    signing::Digest,
    time::now_ms,
};
use exchange_proto::v1 as pb;
use exchange_tests::{
    DEADLINE, TestExchange, bin,
    cli::{last_line, wait_state},
    eventually, forge, random_file,
};
use tonic::Code;

/// `exchange-certs verify FILE --ca CA`: (success, stdout, stderr).
async fn verify(bundle: &Path, ca: &Path) -> Result<(bool, String, String)> {
    let out = tokio::process::Command::new(bin("exchange-certs"))
        .arg("verify")
        .arg(bundle)
        .arg("--ca")
        .arg(ca)
        .output()
        .await?;
    Ok((
        out.status.success(),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

/// `verify` that must fail: returns its stderr, after checking it is one `error: ...` report.
async fn verify_fails(bundle: &Path, ca: &Path) -> Result<String> {
    let (ok, out, err) = verify(bundle, ca).await?;
    anyhow::ensure!(!ok, "verified although it must not:\n{out}");
    anyhow::ensure!(
        out.is_empty(),
        "a failed verification prints no report: {out}"
    );
    anyhow::ensure!(err.starts_with("error: "), "{err}");
    Ok(err)
}

fn ca_pem(ex: &TestExchange) -> PathBuf {
    ex.layout_dir().join("ca/ca.pem")
}

/// `evidence ID --out <root>/<name>` at `dept`; checks that it prints the path it wrote.
async fn write_bundle(
    ex: &TestExchange,
    dept: &str,
    id: &str,
    name: &str,
    with_content: bool,
) -> Result<PathBuf> {
    let path = ex.root().join(name);
    let out_arg = path.to_str().context("path")?;
    let mut args = vec!["evidence", id, "--out", out_arg];
    if with_content {
        args.push("--with-content");
    }
    let out = ex.cli_ok(dept, &args).await?;
    assert_eq!(out.trim(), out_arg, "evidence prints the written path");
    Ok(path)
}

/// The report's line for `kind` at `recipient` (`-` for none): `STEP RECIPIENT SIGNED-BY AT ...`.
fn step<'a>(report: &'a str, kind: &str, recipient: &str) -> Result<&'a str> {
    report
        .lines()
        .find(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some(kind) && w.next() == Some(recipient)
        })
        .with_context(|| format!("no {kind} step for {recipient} in:\n{report}"))
}

/// `send` at `from`; returns the id it printed last.
async fn send(ex: &TestExchange, from: &str, args: &[&str]) -> Result<String> {
    Ok(last_line(
        &ex.cli_ok(from, &[&["send"], args].concat()).await?,
    ))
}

async fn inbox_ids(ex: &TestExchange, dept: &str) -> Result<Vec<String>> {
    let inbox = ex.cli_json(dept, &["inbox", "--json"]).await?;
    let entries = inbox.as_array().context("inbox is not a list")?;
    Ok(entries
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect())
}

/// Writes `bytes` with one byte flipped at `at` to `<root>/<name>`.
fn flipped(ex: &TestExchange, bytes: &[u8], at: usize, name: &str) -> Result<PathBuf> {
    let mut bad = bytes.to_vec();
    bad[at] ^= 0x01;
    let path = ex.root().join(name);
    std::fs::write(&path, bad)?;
    Ok(path)
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Result<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .context("bytes not found in the bundle")
}

#[tokio::test]
async fn the_senders_bundle_proves_acceptance_delivery_confirmation_and_rejection_offline()
-> Result<()> {
    let mut ex = TestExchange::start(&["a", "b", "c"]).await?;
    let body = random_file(ex.root(), "正文.ofd", 100_000, 11)?;
    let title = "关于做好年终工作的通知";
    let file = body.to_str().context("path")?;
    let id = send(
        &ex,
        "a",
        &["--to", "b", "--cc", "c", "--title", title, "--file", file],
    )
    .await?;
    wait_state(&ex, "a", &id, "b", "delivered").await?;
    wait_state(&ex, "a", &id, "c", "delivered").await?;
    ex.cli_ok("b", &["confirm", &id, "--clerk", "王芳"]).await?;
    ex.cli_ok("c", &["reject", &id, "--reason", "不属于本单位职责范围"])
        .await?;
    wait_state(&ex, "a", &id, "b", "confirmed").await?;
    wait_state(&ex, "a", &id, "c", "rejected").await?;

    let bundle = write_bundle(&ex, "a", &id, "proof.bundle", false).await?;
    // b can prove its own part too: what it received, that it had it, and that it signed for it.
    let receipt = write_bundle(&ex, "b", &id, "b-receipt.bundle", false).await?;

    // Offline: nothing of the exchange runs any more; the file and the CA are all there is.
    ex.kill_hub().await?;
    for d in ["a", "b", "c"] {
        ex.kill_node(d).await?;
    }
    let (ok, report, err) = verify(&bundle, &ca_pem(&ex)).await?;
    assert!(ok, "the genuine bundle verifies: {err}");
    assert!(
        report.contains(&id) && report.contains(title),
        "names the document: {report}"
    );
    assert!(step(&report, "sent", "-")?.contains("department a"));
    assert!(step(&report, "accepted", "-")?.contains(" hub "));
    assert!(step(&report, "delivered", "b")?.contains("department b"));
    assert!(step(&report, "delivered", "c")?.contains("department c"));
    let confirmed = step(&report, "confirmed", "b")?;
    assert!(
        confirmed.contains("department b") && confirmed.contains("clerk 王芳"),
        "{confirmed}"
    );
    let rejected = step(&report, "rejected", "c")?;
    assert!(
        rejected.contains("department c") && rejected.contains("reason: 不属于本单位职责范围"),
        "{rejected}"
    );

    let (ok, report, err) = verify(&receipt, &ca_pem(&ex)).await?;
    assert!(ok, "the recipient's bundle verifies: {err}");
    assert!(step(&report, "confirmed", "b")?.contains("department b"));
    assert!(
        step(&report, "delivered", "c").is_err(),
        "b's bundle holds only b's own evidence: {report}"
    );
    Ok(())
}

#[tokio::test]
async fn a_flipped_byte_anywhere_in_a_bundle_or_another_ca_fails_verification() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let body = random_file(ex.root(), "正文.ofd", 600_000, 12)?; // several stream chunks
    let file = body.to_str().context("path")?;
    let id = send(&ex, "a", &["--to", "b", "--title", "flip", "--file", file]).await?;
    wait_state(&ex, "a", &id, "b", "delivered").await?;
    ex.cli_ok("b", &["confirm", &id, "--clerk", "王芳"]).await?;
    wait_state(&ex, "a", &id, "b", "confirmed").await?;

    let path = write_bundle(&ex, "a", &id, "full.bundle", true).await?;
    let ca = ca_pem(&ex);
    let (ok, report, err) = verify(&path, &ca).await?;
    assert!(ok, "the genuine bundle verifies: {err}");
    assert!(report.contains("1 part(s) included"), "{report}");

    let bytes = std::fs::read(&path)?;
    let bundle = decode_bundle(&bytes)?;
    let doc = bundle.document.as_ref().context("no document")?;
    let header = find(&bytes, &doc.header)? + doc.header.len() / 2;
    let signature = doc.signature.as_ref().context("no signature")?;
    let sig = find(&bytes, &signature.value)? + 20;
    let delivered = &bundle.evidence.first().context("no evidence")?.evidence;
    let evidence = find(&bytes, delivered)? + delivered.len() / 2;
    let content = &bundle.content.first().context("no content")?.data;
    let content = find(&bytes, content)? + content.len() / 2;
    let cases = [
        (header, "header.bundle", "document header: "),
        (
            sig,
            "sig.bundle",
            // The node seals documents in batches: one signature over a batch's Merkle root.
            "document header: batch signature: inclusion path of leaf 0 of 1: these bytes and this path do not lead to the root the signature covers",
        ),
        (evidence, "evidence.bundle", "evidence #1"),
        (
            content,
            "content.bundle",
            "content part 0 (正文.ofd): SHA-256 does not match the signed manifest",
        ),
        (0, "magic.bundle", "not an evidence bundle"),
    ];
    for (at, name, names) in cases {
        let err = verify_fails(&flipped(&ex, &bytes, at, name)?, &ca).await?;
        assert!(err.contains(names), "{name}: expected {names:?} in {err}");
    }

    // The same genuine bundle, checked against another exchange's CA.
    let other = Ca::generate("Another Exchange CA", Validity::days_from_now(30))?;
    let other_pem = ex.root().join("other-ca.pem");
    std::fs::write(&other_pem, other.cert_pem())?;
    let err = verify_fails(&path, &other_pem).await?;
    assert!(
        err.contains("document header: signer certificate not trusted: UnknownIssuer"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn content_altered_in_the_hubs_store_is_refused_by_the_recipient_and_the_refusal_is_proven()
-> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.start_hub().await?;
    ex.start_node("a").await?;
    ex.start_node("b").await?;
    ex.kill_node("b").await?; // offline: the document waits at the hub
    // Larger than `limits::INLINE_BYTES`: the hub keeps it as a blob file (small content is
    // stored inline in its database).
    let body = random_file(ex.root(), "正文.ofd", 400_000, 13)?;
    let file = body.to_str().context("path")?;
    let id = send(
        &ex,
        "a",
        &["--to", "b", "--title", "tampered", "--file", file],
    )
    .await?;
    wait_state(&ex, "a", &id, "b", "accepted").await?;

    // Someone with access to the hub's disk changes a few bytes of the stored content
    // (encrypted at rest: the hub finds the altered chunk when it reads it, and refuses to send
    // it; without encryption the recipient finds the digest wrong).
    let hex = Digest::of(&std::fs::read(&body)?).to_hex();
    let blob = ex.layout_dir().join("hub/data/blobs/sealed").join(hex);
    let mut stored = std::fs::read(&blob).with_context(|| format!("{}", blob.display()))?;
    stored[1000..1004].copy_from_slice(b"EVIL");
    std::fs::write(&blob, stored)?;

    ex.start_node("b").await?;
    let b = wait_state(&ex, "a", &id, "b", "not-delivered").await?;
    let reason = b["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("正文.ofd"),
        "the reason names the part: {b}"
    );
    assert!(
        !inbox_ids(&ex, "b").await?.contains(&id),
        "b stored nothing"
    );

    let path = write_bundle(&ex, "a", &id, "refused.bundle", false).await?;
    let (ok, report, err) = verify(&path, &ca_pem(&ex)).await?;
    assert!(ok, "the proof of the refusal verifies: {err}");
    let refused = step(&report, "not-delivered", "b")?;
    assert!(
        refused.contains(" hub ") && refused.contains("reason: "),
        "{refused}"
    );
    assert!(step(&report, "delivered", "b").is_err(), "{report}");
    Ok(())
}

#[tokio::test]
async fn a_document_signed_with_another_departments_key_is_refused_by_the_hub() -> Result<()> {
    let ex = TestExchange::start(&["a", "b", "c"]).await?;
    // c's genuine signing key, used to sign a header that claims to come from a.
    let c_key = forge::signing_key(&ex, "c")?;
    let content = b"forged instructions".to_vec();
    let sha = Digest::of(&content);
    let header = forge::header("a", &["b"], "伪造的通知", vec![forge::part(&content)]);
    let forged = SignedDoc::seal(&header, &c_key)?;

    // Submitted over a's own TLS identity, with its content uploaded first.
    let mut hub = ex.hub_client_as("a").await?;
    let chunk = pb::BlobChunk {
        sha256: sha.0.to_vec(),
        size: content.len() as u64,
        offset: 0,
        data: content,
    };
    hub.put_blob(tonic::codegen::tokio_stream::iter(vec![chunk]))
        .await?;
    let err = hub
        .submit(pb::SubmitRequest {
            document: Some(forged.wire.clone()),
            ..Default::default()
        })
        .await
        .expect_err("a forged document must be refused");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("signed by department c"),
        "{}",
        err.message()
    );

    // The hub kept nothing: b cannot fetch it, and only a genuine document reaches b.
    let mut as_b = ex.hub_client_as("b").await?;
    let fetch = as_b
        .get_blob(pb::GetBlobRequest {
            doc_id: forged.header.id.to_string(),
            sha256: sha.0.to_vec(),
            offset: 0,
        })
        .await
        .expect_err("the hub has no such document");
    assert_eq!(fetch.code(), Code::NotFound, "{fetch:?}");
    // Nor does a's node know it: there is nothing to prove.
    let out = ex.root().join("forged.bundle");
    let forged_id = forged.header.id.to_string();
    let args = [
        "evidence",
        &forged_id,
        "--out",
        out.to_str().context("path")?,
    ];
    let (ok, _, err) = ex.cli("a", &args).await?;
    assert!(!ok && err.contains("no document"), "{err}");
    assert!(!out.exists(), "no file is written for an unknown document");
    let body = random_file(ex.root(), "genuine.txt", 100, 14)?;
    let file = body.to_str().context("path")?;
    let genuine = send(
        &ex,
        "a",
        &["--to", "b", "--title", "genuine", "--file", file],
    )
    .await?;
    wait_state(&ex, "a", &genuine, "b", "delivered").await?;
    assert_eq!(inbox_ids(&ex, "b").await?, vec![genuine]);
    Ok(())
}

#[tokio::test]
async fn a_delivery_that_expires_undelivered_is_proven_not_delivered() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.edit_hub_config(|c| c.hub.expire_undelivered_after_secs = 2)?;
    ex.start_hub().await?;
    ex.start_node("a").await?;
    ex.start_node("b").await?;
    ex.kill_node("b").await?; // b stays away past the expiry
    let body = random_file(ex.root(), "body.txt", 100, 21)?;
    let id = send(
        &ex,
        "a",
        &[
            "--to",
            "b",
            "--title",
            "will expire",
            "--file",
            body.to_str().context("path")?,
        ],
    )
    .await?;
    let b = wait_state(&ex, "a", &id, "b", "not-delivered").await?;
    assert!(
        b["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("expired")),
        "{b}"
    );

    // The sender can prove it: the hub signed the non-delivery.
    let bundle = write_bundle(&ex, "a", &id, "expired.bundle", false).await?;
    let (ok, report, err) = verify(&bundle, &ca_pem(&ex)).await?;
    assert!(ok, "{err}");
    let line = step(&report, "not-delivered", "b")?;
    assert!(line.contains("hub"), "signed by the hub: {line}");

    // When b returns, the expired document is not delivered; a later one is.
    ex.start_node("b").await?;
    let later = send(
        &ex,
        "a",
        &[
            "--to",
            "b",
            "--title",
            "later",
            "--file",
            body.to_str().context("path")?,
        ],
    )
    .await?;
    eventually("the later document at b", DEADLINE, || async {
        Ok(inbox_ids(&ex, "b").await?.contains(&later).then_some(()))
    })
    .await?;
    assert_eq!(
        inbox_ids(&ex, "b").await?,
        vec![later],
        "the expired one never arrives"
    );
    Ok(())
}

#[tokio::test]
async fn a_document_the_hub_refuses_comes_back_with_the_hubs_signed_refusal() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    // A 秘密 (secret) document: this exchange is not approved for classified documents.
    let mut api = ex.node_api("a").await?;
    use pb::submit_document_request::Msg;
    let metadata = pb::DocumentMetadata {
        title: "classified".into(),
        to_depts: vec!["b".into()],
        classification: pb::Classification::Secret.into(),
        ..Default::default()
    };
    let part = pb::PartSpec {
        role: pb::PartRole::Body.into(),
        name: "x.txt".into(),
        media_type: "text/plain".into(),
        size: 3,
    };
    let msgs = vec![
        pb::SubmitDocumentRequest {
            msg: Some(Msg::Draft(pb::DocumentDraft {
                idempotency_key: String::new(),
                metadata: Some(metadata),
                parts: vec![part],
            })),
        },
        pb::SubmitDocumentRequest {
            msg: Some(Msg::Chunk(pb::PartChunk {
                part: 0,
                data: b"abc".to_vec(),
            })),
        },
    ];
    let id = api
        .submit(tokio_stream::iter(msgs))
        .await?
        .into_inner()
        .doc_id;
    let b = wait_state(&ex, "a", &id, "b", "refused").await?;
    assert_eq!(b["state"], "refused");
    let status = ex.cli_json("a", &["status", &id, "--json"]).await?;
    assert!(
        status["refused"]
            .as_str()
            .is_some_and(|r| r.contains("classification")),
        "{status}"
    );

    let bundle = write_bundle(&ex, "a", &id, "refused.bundle", false).await?;
    let (ok, report, err) = verify(&bundle, &ca_pem(&ex)).await?;
    assert!(ok, "{err}");
    let line = step(&report, "refused", "-")?;
    assert!(line.contains("hub"), "the hub signed the refusal: {line}");
    assert!(inbox_ids(&ex, "b").await?.is_empty(), "nothing reached b");

    // 机密 and higher never travel: the node refuses the draft itself, before anything is
    // signed, queued or uploaded.
    let outbox = ex.cli_json("a", &["outbox", "--json"]).await?;
    let confidential = vec![pb::SubmitDocumentRequest {
        msg: Some(Msg::Draft(pb::DocumentDraft {
            idempotency_key: String::new(),
            metadata: Some(pb::DocumentMetadata {
                title: "confidential".into(),
                to_depts: vec!["b".into()],
                classification: pb::Classification::Confidential.into(),
                ..Default::default()
            }),
            parts: vec![pb::PartSpec {
                role: pb::PartRole::Body.into(),
                name: "x.txt".into(),
                media_type: "text/plain".into(),
                size: 3,
            }],
        })),
    }];
    let refused = api
        .submit(tokio_stream::iter(confidential))
        .await
        .expect_err("a 机密 draft is refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().starts_with("metadata.classification:"),
        "{refused:?}"
    );
    assert_eq!(
        ex.cli_json("a", &["outbox", "--json"]).await?,
        outbox,
        "nothing queued"
    );
    Ok(())
}

#[tokio::test]
async fn a_statement_the_hub_refuses_for_good_is_recorded_not_dropped() -> Result<()> {
    // b signs a 签收 while its document-signing certificate is valid and the hub is away; by the
    // time the hub hears of it, the certificate has run out (b's TLS certificate has not).
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    let body = random_file(ex.root(), "正文.txt", 100, 21)?;
    let send = |title: &'static str| {
        let body = body.clone();
        let ex = &ex;
        async move {
            let path = body.to_str().context("path")?.to_owned();
            let out = ex
                .cli_ok(
                    "a",
                    &["send", "--to", "b", "--title", title, "--file", &path],
                )
                .await?;
            Ok::<_, anyhow::Error>(out.lines().last().context("no id")?.trim().to_owned())
        }
    };
    let id = send("关于年检的通知").await?;
    let other = send("关于年检的补充通知").await?;
    for doc in [&id, &other] {
        eventually("b's delivery receipt at a", DEADLINE, || async {
            let s = ex.cli_json("a", &["status", doc, "--json"]).await?;
            Ok((s["recipients"][0]["state"] == "delivered").then_some(()))
        })
        .await?;
    }

    // Only now, with everything slow done and the hub away, b gets a signing certificate that
    // runs out `margin` seconds from now, and restarts with it. The 签收 must be signed inside
    // that window; if a slow machine misses it, b refuses to sign (nothing is recorded) and the
    // window is made longer: slowness costs time, never a wrong verdict.
    ex.kill_hub().await?;
    let ca = Ca::load(&ex.layout_dir().join("ca"))?;
    let dir = ex.layout_dir().join("b");
    let mut until = None;
    for margin in [4, 8, 16, 32] {
        let now = time::OffsetDateTime::now_utc();
        let end = now + time::Duration::seconds(margin);
        let short = Validity {
            not_before: now - time::Duration::hours(1),
            not_after: end,
        };
        ca.issue_signing(
            &exchange_core::identity::Principal::Dept("b".parse()?),
            short,
        )?
        .write(&dir.join("signing.pem"), &dir.join("signing.key"))?;
        ex.stop_node("b").await?;
        let logged = ex.log("b").len();
        ex.start_node_unchecked("b").await?; // the hub is away: b only binds its API
        let (ok, _, err) = ex.cli("b", &["confirm", &id, "--clerk", "刘洋"]).await?;
        if ok {
            // b's node warned at start that the certificate runs out.
            let log = ex.log("b");
            assert!(
                log[logged..].contains("certificate expires in 0 days"),
                "{log}"
            );
            until = Some(end);
            break;
        }
        assert!(err.contains("signing certificate expired"), "{err}");
    }
    let until = until.context("b never signed inside its certificate's validity")?;
    // A department system following b's events live hears of the refusal as it happens.
    let mut api = ex.node_api("b").await?;
    let mut events = api
        .watch_events(pb::WatchEventsRequest { after_seq: 0 })
        .await?
        .into_inner();
    // The hub comes back only once the certificate has run out: it then refuses the 签收.
    let left = (until - time::OffsetDateTime::now_utc()).max(time::Duration::ZERO);
    eventually(
        "b's signing certificate to expire",
        DEADLINE + left.unsigned_abs(),
        || async {
            Ok(
                (time::OffsetDateTime::now_utc() > until + time::Duration::seconds(1))
                    .then_some(()),
            )
        },
    )
    .await?;
    ex.start_hub().await?;
    let entry = eventually("the refusal recorded at b", DEADLINE, || async {
        let list = ex.cli_json("b", &["inbox", "--json"]).await?;
        let e = list
            .as_array()
            .and_then(|l| l.iter().find(|e| e["id"] == id.as_str()))
            .cloned();
        Ok(e.filter(|e| e["hub_refused"].is_string()))
    })
    .await?;
    let why = entry["hub_refused"].as_str().unwrap_or_default();
    assert!(
        why.contains("签收") && why.to_lowercase().contains("expired"),
        "{why}"
    );
    assert_eq!(entry["state"], "confirmed", "it stands at b");
    let table = ex.cli_ok("b", &["inbox"]).await?;
    assert!(table.contains("not taken by the hub"), "{table}");

    loop {
        let ev = tokio::time::timeout(DEADLINE, events.message())
            .await
            .context("waiting for the REFUSED event")??
            .context("event stream ended")?;
        if ev.kind == i32::from(pb::NodeEventKind::Refused) {
            assert_eq!(ev.doc_id, id);
            break;
        }
    }
    // The sender never got that 签收: b is still only delivered there.
    let s = ex.cli_json("a", &["status", &id, "--json"]).await?;
    assert_eq!(s["recipients"][0]["state"], "delivered", "{s}");

    // Now that b knows its certificate has expired, it refuses to sign anything more, saying
    // why, and the document stays new.
    let (ok, _, err) = ex.cli("b", &["confirm", &other, "--clerk", "刘洋"]).await?;
    assert!(!ok);
    assert!(
        err.contains("signing certificate expired") && err.contains("issue-dept"),
        "{err}"
    );
    let list = ex
        .cli_json("b", &["inbox", "--json", "--state", "new"])
        .await?;
    assert_eq!(list[0]["id"], other.as_str(), "{list}");
    Ok(())
}

/// A DELIVERED for b reaches a's node through its hub's push stream signed by someone other than
/// b (the hub's document-signing key; department c's): a ignores it, says so, and b stays
/// accepted; the same statement signed by b is then taken. The hub is played by the test
/// ([`exchange_tests::rogue_hub`]): a genuine hub never pushes such evidence.
#[tokio::test]
async fn a_delivery_receipt_not_signed_by_its_recipient_leaves_the_sender_undelivered() -> Result<()>
{
    let mut ex = TestExchange::start(&["a", "b", "c"]).await?;
    ex.kill_node("b").await?; // away: a's document stays accepted for b
    let body = random_file(ex.root(), "body.txt", 100, 31)?;
    let file = body.to_str().context("path")?;
    let id = send(
        &ex,
        "a",
        &["--to", "b", "--title", "未送达", "--file", file],
    )
    .await?;
    wait_state(&ex, "a", &id, "b", "accepted").await?;

    // The statement: the hub's acceptance (from a's bundle) turned into a DELIVERED for b.
    let bundle = write_bundle(&ex, "a", &id, "accepted.bundle", false).await?;
    let bundle = decode_bundle(&std::fs::read(&bundle)?)?;
    let accepted = bundle.acceptance.context("no acceptance")?;
    let accepted = SignedEvidence::decode(accepted)?.evidence;
    assert_eq!(accepted.kind, EvidenceKind::Accepted);
    let delivered = Evidence {
        kind: EvidenceKind::Delivered,
        recipient: Some("b".parse()?),
        at_ms: now_ms(),
        ..accepted
    };

    let rogue = ex.rogue_hub().await?;
    ex.stop_node("a").await?;
    ex.edit_node_config("a", |c| {
        c.hub.addr = Some(rogue.addr());
        c.hub.addresses.clear();
    })?;
    let logged = ex.log("a").len();
    ex.start_node("a").await?;
    let forged = [
        (
            forge::hub_signing_key(&ex)?,
            "signed by hub, but only department b may sign it",
        ),
        (
            forge::signing_key(&ex, "c")?,
            "signed by department c, but only department b may sign it",
        ),
    ];
    for (seq, (key, why)) in (1..).zip(forged) {
        let wire = SignedEvidence::seal(delivered.clone(), &key)?.wire;
        rogue.push_evidence(seq, wire).await?;
        rogue.wait_acked(seq).await?; // taken, looked at and dropped
        let log = ex.log("a");
        assert!(
            log[logged..]
                .lines()
                .any(|l| l.contains("evidence that does not verify: ignored") && l.contains(why)),
            "a logs why it ignored evidence {seq}: {log}"
        );
        let s = ex.cli_json("a", &["status", &id, "--json"]).await?;
        assert_eq!(s["recipients"][0]["state"], "accepted", "{s}");
    }

    // The same statement signed by b, on the same stream, is taken.
    let genuine = SignedEvidence::seal(delivered, &forge::signing_key(&ex, "b")?)?.wire;
    rogue.push_evidence(3, genuine).await?;
    wait_state(&ex, "a", &id, "b", "delivered").await?;
    Ok(())
}
