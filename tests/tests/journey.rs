//! A document's whole journey through real processes: submit at a, delivery to b (主送) and c
//! (抄送), 签收 at b, 退回 at c, and the sender's per-recipient view of all of it.

use anyhow::Result;
use exchange_tests::{
    TestExchange,
    cli::{last_line, wait_in_inbox, wait_state},
    random_file, sha256_file,
};

#[tokio::test]
async fn main_and_cc_recipients_receive_confirm_and_reject_and_the_sender_sees_both() -> Result<()>
{
    let ex = TestExchange::start(&["a", "b", "c"]).await?;
    let body = random_file(ex.root(), "正文.ofd", 100_000, 1)?;
    let out = ex
        .cli_ok(
            "a",
            &[
                "send",
                "--to",
                "b",
                "--cc",
                "c",
                "--title",
                "关于做好年终工作的通知",
                "--file",
                body.to_str().unwrap(),
                "--urgency",
                "urgent",
                "--number",
                "明政〔2026〕12号",
            ],
        )
        .await?;
    let id = last_line(&out);
    assert_eq!(id.len(), 36, "send prints the document id last: {out}");

    for dept in ["b", "c"] {
        let entry = wait_in_inbox(&ex, dept, &id).await?;
        assert_eq!(entry["sender"], "a");
        assert_eq!(entry["title"], "关于做好年终工作的通知");
        assert_eq!(entry["urgency"], "urgent");
        assert_eq!(entry["state"], "new");
        assert!(
            entry["received_at"].as_str().is_some_and(|t| !t.is_empty()),
            "{entry}"
        );
    }
    // b opens it and saves the content: byte-identical.
    let save = ex.root().join("b-saved");
    ex.cli_ok("b", &["show", &id, "--save", save.to_str().unwrap()])
        .await?;
    assert_eq!(sha256_file(&save.join("正文.ofd"))?, sha256_file(&body)?);

    wait_state(&ex, "a", &id, "b", "delivered").await?;
    wait_state(&ex, "a", &id, "c", "delivered").await?;

    ex.cli_ok("b", &["confirm", &id, "--clerk", "王芳"]).await?;
    ex.cli_ok("c", &["reject", &id, "--reason", "不属于本单位职责范围"])
        .await?;

    let b = wait_state(&ex, "a", &id, "b", "confirmed").await?;
    assert_eq!(b["clerk"], "王芳");
    assert_eq!(b["role"], "main");
    assert!(b["confirmed_at"].as_str().is_some(), "{b}");
    let c = wait_state(&ex, "a", &id, "c", "rejected").await?;
    assert_eq!(c["reason"], "不属于本单位职责范围");
    assert_eq!(c["role"], "cc");

    // The recipients' own views agree, and a second, contradicting action is refused.
    assert_eq!(wait_in_inbox(&ex, "b", &id).await?["state"], "confirmed");
    assert_eq!(wait_in_inbox(&ex, "c", &id).await?["state"], "rejected");
    let (ok, _, err) = ex
        .cli("b", &["reject", &id, "--reason", "changed my mind"])
        .await?;
    assert!(!ok, "rejecting a confirmed document must fail");
    assert!(err.contains("confirmed"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_twenty_mib_attachment_arrives_byte_identical() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let body = random_file(ex.root(), "body.pdf", 4096, 2)?;
    let big = random_file(ex.root(), "attachment.bin", 20 * 1024 * 1024, 3)?;
    let out = ex
        .cli_ok(
            "a",
            &[
                "send",
                "--to",
                "b",
                "--title",
                "large attachment",
                "--file",
                body.to_str().unwrap(),
                "--file",
                big.to_str().unwrap(),
            ],
        )
        .await?;
    let id = last_line(&out);
    wait_in_inbox(&ex, "b", &id).await?;
    let save = ex.root().join("saved");
    ex.cli_ok("b", &["show", &id, "--save", save.to_str().unwrap()])
        .await?;
    assert_eq!(
        sha256_file(&save.join("attachment.bin"))?,
        sha256_file(&big)?
    );
    assert_eq!(sha256_file(&save.join("body.pdf"))?, sha256_file(&body)?);
    Ok(())
}

#[tokio::test]
async fn an_unknown_recipient_is_refused_at_submission_with_its_name() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let body = random_file(ex.root(), "body.txt", 10, 4)?;
    let (ok, out, err) = ex
        .cli(
            "a",
            &[
                "send",
                "--to",
                "b,nosuchdept",
                "--title",
                "t",
                "--file",
                body.to_str().unwrap(),
            ],
        )
        .await?;
    assert!(!ok, "send to an unknown department must fail: {out}");
    assert!(
        err.contains("nosuchdept"),
        "the error names the department: {err}"
    );
    Ok(())
}

#[tokio::test]
async fn hub_restart_between_submission_and_delivery_loses_nothing() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.start_hub().await?;
    ex.start_node("a").await?;
    ex.start_node("b").await?;
    ex.kill_node("b").await?; // b is offline: the document must wait at the hub
    let body = random_file(ex.root(), "body.ofd", 300_000, 5)?;
    let id = last_line(
        &ex.cli_ok(
            "a",
            &[
                "send",
                "--to",
                "b",
                "--title",
                "restart",
                "--file",
                body.to_str().unwrap(),
            ],
        )
        .await?,
    );
    wait_state(&ex, "a", &id, "b", "accepted").await?;

    ex.kill_hub().await?; // SIGKILL: only what was committed survives
    ex.start_hub().await?;
    ex.start_node("b").await?;

    wait_in_inbox(&ex, "b", &id).await?;
    let save = ex.root().join("saved");
    ex.cli_ok("b", &["show", &id, "--save", save.to_str().unwrap()])
        .await?;
    assert_eq!(sha256_file(&save.join("body.ofd"))?, sha256_file(&body)?);
    ex.cli_ok("b", &["confirm", &id]).await?;
    wait_state(&ex, "a", &id, "b", "confirmed").await?;
    let inbox = ex.cli_json("b", &["inbox", "--json"]).await?;
    assert_eq!(
        inbox.as_array().map(Vec::len),
        Some(1),
        "delivered exactly once: {inbox}"
    );
    Ok(())
}
