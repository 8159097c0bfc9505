//! Recall (撤回), adding recipients (补发) and reminders (催办) (issue 9): the bodies of
//! `tests/recall.rs` and their shangmi runs in `tests/shangmi_ops.rs`.

use anyhow::{Context as _, Result};
use exchange_core::crypto::Profile;

use crate::{
    DEADLINE, TestExchange,
    cli::{entry_when, inbox, row_when, send, wait_state},
    eventually,
};

/// Waits until the hub has accepted `id` for every recipient (none still queued at `from`).
pub async fn accepted(ex: &TestExchange, from: &str, id: &str) -> Result<()> {
    eventually(&format!("{id} accepted"), DEADLINE, || async {
        let s = ex.cli_json(from, &["status", id, "--json"]).await?;
        Ok(s["recipients"]
            .as_array()
            .is_some_and(|rs| rs.iter().all(|r| r["state"] != "queued"))
            .then_some(()))
    })
    .await
}

/// The steps `exchange-certs verify` reports for `id`'s bundle at `dept`.
pub async fn verified_steps(ex: &TestExchange, dept: &str, id: &str) -> Result<String> {
    let out = ex.root().join(format!("{dept}-{id}.bundle"));
    let out_s = out.to_str().context("path")?;
    ex.cli_ok(dept, &["evidence", id, "--out", out_s]).await?;
    ex.verify_bundle(&out).await
}

/// 撤回 before and after 签收, with evidence at every step: the recipient that had it unsigned
/// sees it recalled, the one not yet reached never does (the hub signs WITHDRAWN), the one that
/// signed for it acknowledges; every bundle verifies offline and the hub's audit log names the
/// recall.
pub async fn recall_before_and_after_signing_for(profile: Profile) -> Result<()> {
    let mut ex = TestExchange::start_with_profile(&["a", "b", "c"], profile).await?;
    // c's node is down: the recall reaches the hub before the document reaches c.
    ex.stop_node("c").await?;
    let id = send(&ex, "a", "关于调整会议时间的通知", &["--to", "b,c"]).await?;
    accepted(&ex, "a", &id).await?;
    entry_when(&ex, "b", &id, "delivered", |_| true).await?;

    // Before recalling: b has it new; c never had it. Then b's clerk signs for a second one,
    // which is recalled after 签收.
    let signed = send(&ex, "a", "关于报送材料的通知", &["--to", "b"]).await?;
    entry_when(&ex, "b", &signed, "delivered", |_| true).await?;
    ex.cli_ok("b", &["confirm", &signed, "--clerk", "王五"])
        .await?;
    wait_state(&ex, "a", &signed, "b", "confirmed").await?;

    // A recall needs a reason.
    let (ok, _, err) = ex.cli("a", &["recall", &id, "--reason", " "]).await?;
    assert!(!ok && err.contains("reason"), "{err}");
    // Only the sender can recall: b has no such sent document.
    let (ok, _, err) = ex.cli("b", &["recall", &id, "--reason", "x"]).await?;
    assert!(
        !ok && err.contains("not a document this department sent"),
        "{err}"
    );

    ex.cli_ok("a", &["recall", &id, "--reason", "时间有误"])
        .await?;
    ex.cli_ok("a", &["recall", &signed, "--reason", "材料清单有误"])
        .await?;

    // Unsigned-for: b's inbox shows it recalled with the reason, and it can no longer be
    // signed for; the sender sees b's signed RECALLED.
    let e = entry_when(&ex, "b", &id, "recalled", |e| e["state"] == "recalled").await?;
    assert_eq!(e["recall_reason"], "时间有误");
    let (ok, _, err) = ex.cli("b", &["confirm", &id]).await?;
    assert!(!ok && err.contains("recalled"), "{err}");
    let save = ex.root().join("save-b");
    let (ok, _, err) = ex
        .cli(
            "b",
            &["show", &id, "--save", save.to_str().context("path")?],
        )
        .await?;
    assert!(
        !ok && err.contains("withheld"),
        "content of a recalled document: {err}"
    );
    wait_state(&ex, "a", &id, "b", "recalled").await?;

    // Not yet delivered: c never sees it, and the hub signs WITHDRAWN once c's node is back.
    ex.start_node("c").await?;
    wait_state(&ex, "a", &id, "c", "withdrawn").await?;
    assert!(
        inbox(&ex, "c", &[]).await?.iter().all(|e| e["id"] != id),
        "a recalled document never reaches an inbox it had not reached"
    );

    // Signed for: b is told and must acknowledge; until then the sender sees it confirmed.
    let e = entry_when(&ex, "b", &signed, "recall pending", |e| {
        e["state"] == "recall-pending"
    })
    .await?;
    assert_eq!(e["recall_reason"], "材料清单有误");
    let listed = ex
        .cli_json("b", &["inbox", "--json", "--state", "recall-pending"])
        .await?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // Nothing to acknowledge on one recalled before 签收, nor on one never recalled.
    let (ok, _, err) = ex.cli("b", &["ack-recall", &id]).await?;
    assert!(!ok && err.contains("recalled by its sender"), "{err}");
    let (ok, _, err) = ex.cli("a", &["ack-recall", &id]).await?;
    assert!(!ok && err.contains("no received document"), "{err}");
    ex.cli_ok("b", &["ack-recall", &signed, "--clerk", "王五"])
        .await?;
    wait_state(&ex, "a", &signed, "b", "recall-acknowledged").await?;
    let status = ex.cli_json("a", &["status", &signed, "--json"]).await?;
    assert_eq!(status["recall_reason"], "材料清单有误");
    assert!(status["recalled_at"].is_string(), "{status}");

    // Every step is signed evidence that verifies offline, at the sender and at the recipient.
    let steps = verified_steps(&ex, "a", &id).await?;
    for step in ["recalled", "withdrawn", "recall"] {
        assert!(
            steps.contains(step),
            "{step} in the sender's bundle:\n{steps}"
        );
    }
    let steps = verified_steps(&ex, "b", &signed).await?;
    for step in ["confirmed", "recall", "recall-acknowledged"] {
        assert!(steps.contains(step), "{step} in b's bundle:\n{steps}");
    }
    // The hub's audit log names the recall.
    let (ok, audit, err) = ex.hub_admin_cli(&["audit", "list", "--doc", &id]).await?;
    assert!(ok, "{err}");
    assert!(audit.contains("Recall"), "{audit}");
    Ok(())
}

/// 补发: added recipients receive the same signed document (the header unchanged), no one gets
/// it twice, the addition is signed evidence at both ends, and an unknown department is refused.
pub async fn add_recipients(profile: Profile) -> Result<()> {
    let ex = TestExchange::start_with_profile(&["a", "b", "c", "d"], profile).await?;
    let id = send(&ex, "a", "关于开展安全检查的通知", &["--to", "b"]).await?;
    entry_when(&ex, "b", &id, "delivered", |_| true).await?;
    let original = ex.cli_json("b", &["show", &id, "--json"]).await?;

    // b already is a recipient: only c and d are added (d as 抄送).
    let out = ex
        .cli_ok("a", &["add-recipients", &id, "--to", "b,c", "--cc", "d"])
        .await?;
    let added: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(added, ["c", "d"]);
    // Adding again changes nothing.
    let out = ex
        .cli_ok("a", &["add-recipients", &id, "--to", "c"])
        .await?;
    assert!(out.trim().is_empty(), "{out}");

    let c = entry_when(&ex, "c", &id, "delivered", |_| true).await?;
    assert_eq!(
        (c["added"].as_bool(), c["role"].as_str()),
        (Some(true), Some("main"))
    );
    let d = entry_when(&ex, "d", &id, "delivered", |_| true).await?;
    assert_eq!(d["role"], "cc");
    // The same signed document: the header still names only b.
    let shown = ex.cli_json("c", &["show", &id, "--json"]).await?;
    assert_eq!(shown["to_depts"], original["to_depts"]);
    assert_eq!(shown["title"], original["title"]);
    // b got it once.
    let at_b = inbox(&ex, "b", &[]).await?;
    assert_eq!(at_b.iter().filter(|e| e["id"] == id).count(), 1);

    // c signs for it; the sender sees it, marked as added.
    ex.cli_ok("c", &["confirm", &id]).await?;
    let row = wait_state(&ex, "a", &id, "c", "confirmed").await?;
    assert_eq!(row["added"], true);
    // Evidence links the addition: the bundle at c verifies with the sender's signed addition.
    let steps = verified_steps(&ex, "c", &id).await?;
    assert!(steps.contains("recipient-added"), "{steps}");
    let steps = verified_steps(&ex, "a", &id).await?;
    assert!(steps.contains("recipient-added"), "{steps}");

    // Bad input: an unknown department is refused by the hub; the row says so.
    ex.cli_ok("a", &["add-recipients", &id, "--to", "nobody"])
        .await?;
    wait_state(&ex, "a", &id, "nobody", "refused").await?;
    let (ok, _, err) = ex.cli("a", &["add-recipients", &id]).await?;
    assert!(!ok && err.contains("--to"), "{err}");
    Ok(())
}

/// 催办: a reminder is counted and flagged at the recipient (first in its inbox) and at the
/// sender; once signed for there is nothing to remind of.
pub async fn remind(profile: Profile) -> Result<()> {
    let ex = TestExchange::start_with_profile(&["a", "b"], profile).await?;
    let first = send(&ex, "a", "先到的文件", &["--to", "b"]).await?;
    let id = send(&ex, "a", "关于催报统计数据的通知", &["--to", "b"]).await?;
    entry_when(&ex, "b", &first, "delivered", |_| true).await?;
    entry_when(&ex, "b", &id, "delivered", |_| true).await?;

    let out = ex
        .cli_ok("a", &["remind", &id, "--note", "请于今日下班前签收"])
        .await?;
    assert_eq!(out.trim(), "b");
    let e = entry_when(&ex, "b", &id, "reminded", |e| e["reminders"] == 1).await?;
    assert_eq!(e["reminder_note"], "请于今日下班前签收");
    // The reminded document comes first, though it arrived later.
    let listed = inbox(&ex, "b", &[]).await?;
    assert_eq!(listed[0]["id"], id);
    let reminded = ex
        .cli_json("b", &["inbox", "--json", "--state", "reminded"])
        .await?;
    assert_eq!(reminded.as_array().map(Vec::len), Some(1));
    let (ok, table, _) = ex.cli("b", &["inbox"]).await?;
    assert!(ok && table.contains("reminded ×1"), "{table}");
    let row = row_when(&ex, "a", &id, "b", "reminded", |r| r["reminders"] == 1).await?;
    assert!(row["last_reminded_at"].is_string());

    // Once signed for, there is nothing to remind of.
    ex.cli_ok("b", &["confirm", &id]).await?;
    wait_state(&ex, "a", &id, "b", "confirmed").await?;
    let (ok, _, err) = ex.cli("a", &["remind", &id]).await?;
    assert!(!ok && err.contains("nothing to remind"), "{err}");
    Ok(())
}
