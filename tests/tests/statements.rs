//! Statements that cross or cannot be taken never jam a queue (issue 15): a reminder that
//! crosses a 签收 does not hold back the sender's later documents, and a receipt the hub cannot
//! verify is refused on its own while the delivery stream goes on.

use anyhow::{Context as _, Result};
use exchange_core::config::NodeConfig;
use exchange_tests::{
    DEADLINE, TestExchange,
    cli::{entry_when, send, wait_state},
    eventually,
};
use serde_json::Value;

async fn audit_kinds(ex: &TestExchange, dept: &str) -> Result<Vec<Value>> {
    let (ok, out, err) = ex
        .hub_cli(&["audit", "list", "--json", "--dept", dept])
        .await?;
    anyhow::ensure!(ok, "audit list: {err}");
    Ok(serde_json::from_str::<Value>(&out)?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[tokio::test]
async fn a_reminder_crossing_a_confirmation_does_not_hold_back_the_senders_later_documents()
-> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    // 特急, so that nothing less urgent may start while its statements are being sent.
    let first = send(
        &ex,
        "a",
        "first",
        &["--to", "b", "--urgency", "very-urgent"],
    )
    .await?;
    wait_state(&ex, "a", &first, "b", "delivered").await?;

    // The hub is away: b signs for it and a reminds b, each queued at its own node.
    ex.stop_hub().await?;
    ex.cli_ok("b", &["confirm", &first, "--clerk", "张三"])
        .await?;
    ex.cli_ok(
        "a",
        &["remind", &first, "--to", "b", "--note", "请尽快签收"],
    )
    .await?;
    // The 签收 reaches the hub first; a's reminder arrives after the delivery has ended.
    ex.stop_node("a").await?;
    ex.start_hub().await?;
    let confirmed = eventually("b's 签收 at the hub", DEADLINE, || async {
        let entries = audit_kinds(&ex, "b").await?;
        Ok(entries
            .iter()
            .any(|e| {
                e["doc_id"] == first.as_str()
                    && e["detail"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with("Confirmed")
            })
            .then_some(()))
    });
    confirmed.await?;
    ex.start_node("a").await?;

    // A later ordinary document from a is not held back behind the moot reminder.
    let second = send(&ex, "a", "second", &["--to", "b"]).await?;
    wait_state(&ex, "a", &second, "b", "delivered").await?;
    let row = wait_state(&ex, "a", &first, "b", "confirmed").await?;
    assert_eq!(
        row["reminders"], 1,
        "the reminder was made and counted at a: {row}"
    );

    // The reminder is a no-op at the hub: recorded and audited, never forwarded to b, and
    // nothing is flagged as refused at a.
    let entries = audit_kinds(&ex, "b").await?;
    let noted = entries.iter().any(|e| {
        e["doc_id"] == first.as_str()
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("Reminded") && d.contains("not forwarded"))
    });
    assert!(noted, "the moot reminder is audited: {entries:?}");
    let status = ex.cli_json("a", &["status", &first, "--json"]).await?;
    assert!(status["hub_refused"].is_null(), "{status}");
    let at_b = entry_when(&ex, "b", &first, "confirmed", |e| e["state"] == "confirmed").await?;
    assert_eq!(
        at_b["reminders"], 0,
        "a reminder after 签收 is not forwarded: {at_b}"
    );

    // A reminder naming more recipients than a document can have is refused by name.
    let mut api = ex.node_api("a").await?;
    let refused = api
        .remind(exchange_proto::v1::RemindRequest {
            doc_id: first.clone(),
            recipients: vec!["b".to_owned(); 5001],
            note: String::new(),
        })
        .await
        .expect_err("5,001 recipients");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(
        refused.message(),
        "recipients: 5001 named, at most 5000 allowed"
    );
    Ok(())
}

#[tokio::test]
async fn a_receipt_the_hub_cannot_verify_is_refused_alone_and_the_stream_goes_on() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b", "c"]).await?;
    // b sent something earlier, while its signing certificate was good.
    let earlier = send(&ex, "b", "earlier", &["--to", "c"]).await?;
    entry_when(&ex, "c", &earlier, "received", |_| true).await?;

    // b's node restarts signing with a certificate of another CA: the hub cannot verify it.
    ex.stop_node("b").await?;
    let stranger = ex.root().join("stranger");
    let (s_ca, s_b) = (stranger.join("ca"), stranger.join("b"));
    let (ok, _, err) = ex
        .certs(&["init-ca", "--dir", s_ca.to_str().context("path")?])
        .await?;
    anyhow::ensure!(ok, "init-ca: {err}");
    let (ok, _, err) = ex
        .certs(&[
            "issue-dept",
            "--ca-dir",
            s_ca.to_str().context("path")?,
            "--id",
            "b",
            "--out",
            s_b.to_str().context("path")?,
        ])
        .await?;
    anyhow::ensure!(ok, "issue-dept: {err}");
    let mut original = None;
    ex.edit_node_config("b", |c: &mut NodeConfig| {
        original = Some(c.signing.clone());
        c.signing.cert = s_b.join("signing.pem");
        c.signing.key = s_b.join("signing.key");
    })?;

    // While b is away: a 特急 document for b (pushed first, alone), then c's 签收 of b's earlier
    // document (evidence for b, less urgent, queued behind it).
    let urgent = send(
        &ex,
        "a",
        "urgent",
        &["--to", "b", "--urgency", "very-urgent"],
    )
    .await?;
    wait_state(&ex, "a", &urgent, "b", "accepted").await?;
    ex.cli_ok("c", &["confirm", &earlier]).await?;
    entry_when(&ex, "c", &earlier, "confirmed", |e| {
        e["state"] == "confirmed"
    })
    .await?;

    ex.start_node("b").await?;
    // b stores the document; the hub refuses its receipt and says why ...
    let entry = entry_when(&ex, "b", &urgent, "receipt refused", |e| {
        e["hub_refused"].is_string()
    })
    .await?;
    let why = entry["hub_refused"].as_str().unwrap_or_default();
    assert!(why.contains("delivery receipt refused by the hub"), "{why}");
    // ... and the stream goes on: c's 签收 of b's earlier document still reaches b.
    wait_state(&ex, "b", &earlier, "c", "confirmed").await?;
    let refusals: Vec<Value> = audit_kinds(&ex, "b")
        .await?
        .into_iter()
        .filter(|e| e["kind"] == "STATEMENT_REFUSED")
        .collect();
    assert_eq!(refusals.len(), 1, "refused once, audited: {refusals:?}");
    assert_eq!(refusals[0]["doc_id"], urgent.as_str());
    // Nothing was lost: the sender still waits for the delivery, which the hub keeps queued.
    let row = ex.cli_json("a", &["status", &urgent, "--json"]).await?;
    assert_eq!(row["recipients"][0]["state"], "accepted", "{row}");

    // With its own signing certificate back, b's next stream delivers it with a new receipt.
    ex.stop_node("b").await?;
    ex.edit_node_config("b", |c: &mut NodeConfig| {
        if let Some(s) = original {
            c.signing = s;
        }
    })?;
    ex.start_node("b").await?;
    wait_state(&ex, "a", &urgent, "b", "delivered").await?;
    let entry = entry_when(&ex, "b", &urgent, "refusal cleared", |e| {
        e["hub_refused"].is_null()
    })
    .await?;
    assert_eq!(
        entry["state"], "new",
        "stored once, still to sign for: {entry}"
    );
    Ok(())
}
