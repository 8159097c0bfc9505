//! How offices work with the exchange (issue 9): group addressing, the clerk's inbox filters
//! and outbox, replies linked to their original, and overdue flags — against the real binaries.

use anyhow::{Context as _, Result};
use exchange_core::config::GroupEntry;
use exchange_tests::{
    DEADLINE, TestExchange,
    cli::{inbox, last_line, send, wait_in_inbox},
    eventually, random_file,
};
use serde_json::Value;

#[tokio::test]
async fn group_addressing_resolves_and_records_both_forms() -> Result<()> {
    let mut ex = TestExchange::setup(&["city", "b", "c", "d"])?;
    ex.edit_hub_config(|c| {
        for d in &mut c.departments {
            if d.id.as_str() == "b" || d.id.as_str() == "c" {
                d.level = Some("county".into());
                d.parent = Some("city".parse().expect("id"));
            }
        }
        c.groups.push(GroupEntry {
            id: "all-counties".parse().expect("id"),
            name: "各县区人民政府".into(),
            members: vec!["b".parse().expect("id"), "c".parse().expect("id")],
        });
    })?;
    ex.start_hub().await?;
    for d in ["city", "b", "c", "d"] {
        ex.start_node(d).await?;
    }

    // The directory shows levels, parents and the group.
    let dir = ex.cli_json("city", &["directory", "--json"]).await?;
    let entries = dir.as_array().context("array")?;
    let b = entries
        .iter()
        .find(|e| e["id"] == "b")
        .context("b listed")?;
    assert_eq!(
        (b["level"].as_str(), b["parent"].as_str()),
        (Some("county"), Some("city"))
    );
    let g = entries
        .iter()
        .find(|e| e["id"] == "group:all-counties")
        .context("group listed")?;
    assert_eq!(g["kind"], "group");
    assert_eq!(g["name"], "各县区人民政府");
    let (ok, table, _) = ex.cli("city", &["directory"]).await?;
    assert!(ok && table.contains("各县区人民政府"), "{table}");

    let id = send(
        &ex,
        "city",
        "关于做好防汛工作的通知",
        &["--to", "group:all-counties", "--cc", "d"],
    )
    .await?;
    for dept in ["b", "c", "d"] {
        wait_in_inbox(&ex, dept, &id).await?;
    }
    // The signed header carries the printed wording and the resolved list.
    let shown = ex.cli_json("b", &["show", &id, "--json"]).await?;
    assert_eq!(shown["main_recipients_text"], "各县区人民政府");
    assert_eq!(shown["to_depts"], serde_json::json!(["b", "c"]));
    assert_eq!(shown["cc_depts"], serde_json::json!(["d"]));
    let status = ex.cli_json("city", &["status", &id, "--json"]).await?;
    let depts: Vec<&str> = status["recipients"]
        .as_array()
        .context("recipients")?
        .iter()
        .filter_map(|r| r["dept"].as_str())
        .collect();
    assert_eq!(depts, ["b", "c", "d"]);

    // An unknown group is refused before anything is sent.
    let body = random_file(ex.root(), "x.ofd", 10, 9)?;
    let (ok, _, err) = ex
        .cli(
            "city",
            &[
                "send",
                "--to",
                "group:nobody",
                "--title",
                "t",
                "--file",
                body.to_str().context("path")?,
            ],
        )
        .await?;
    assert!(!ok && err.contains("unknown group nobody"), "{err}");
    Ok(())
}

fn ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn inbox_filters_and_the_outbox_show_the_clerks_day() -> Result<()> {
    let ex = TestExchange::start(&["a", "b", "c"]).await?;
    let normal = send(
        &ex,
        "a",
        "关于报送统计数据的通知",
        &["--to", "b", "--deadline", "2100-01-01"],
    )
    .await?;
    let very = send(
        &ex,
        "a",
        "关于立即开展安全检查的紧急通知",
        &["--to", "b", "--cc", "c", "--urgency", "very-urgent"],
    )
    .await?;
    let from_c = send(
        &ex,
        "c",
        "关于商请协助的函",
        &["--to", "b", "--doc-type", "letter"],
    )
    .await?;
    for id in [normal.as_str(), very.as_str(), from_c.as_str()] {
        wait_in_inbox(&ex, "b", id).await?;
    }
    ex.cli_ok("b", &["confirm", &normal, "--clerk", "李明"])
        .await?;

    // Urgent first, then oldest first; each filter narrows it.
    assert_eq!(
        ids(&inbox(&ex, "b", &[]).await?),
        [very.as_str(), normal.as_str(), from_c.as_str()]
    );
    assert_eq!(
        ids(&inbox(&ex, "b", &["--state", "new"]).await?),
        [very.as_str(), from_c.as_str()]
    );
    assert_eq!(
        ids(&inbox(&ex, "b", &["--state", "confirmed"]).await?),
        [normal.as_str()]
    );
    assert_eq!(
        ids(&inbox(&ex, "b", &["--urgency", "very-urgent"]).await?),
        [very.as_str()]
    );
    assert_eq!(
        ids(&inbox(&ex, "b", &["--from", "c"]).await?),
        [from_c.as_str()]
    );
    assert_eq!(
        ids(&inbox(&ex, "b", &["--since", "2000-01-01"]).await?).len(),
        3
    );
    assert!(
        inbox(&ex, "b", &["--since", "2999-01-01"])
            .await?
            .is_empty()
    );
    // A reply deadline shows with the time left; a document without one shows none.
    let listed = inbox(&ex, "b", &[]).await?;
    let n = listed
        .iter()
        .find(|e| e["id"] == normal.as_str())
        .context("normal")?;
    // `--deadline 2100-01-01`: until the end of that day in Beijing (+08:00).
    assert_eq!(n["reply_deadline"], "2100-01-01T16:00:00.000Z");
    assert!(n["time_left_secs"].as_i64().is_some_and(|s| s > 0), "{n}");
    assert!(listed[0]["reply_deadline"].is_null(), "{}", listed[0]);
    let (ok, _, err) = ex.cli("b", &["inbox", "--state", "signed"]).await?;
    assert!(!ok && err.contains("signed"), "{err}");

    // The outbox: what a sent, newest first, each recipient with its state.
    let outbox = eventually("b's confirmation at a", DEADLINE, || async {
        let v = ex.cli_json("a", &["outbox", "--json"]).await?;
        let docs = v.as_array().cloned().unwrap_or_default();
        let confirmed = docs
            .iter()
            .any(|d| d["id"] == normal.as_str() && d["recipients"][0]["state"] == "confirmed");
        Ok(confirmed.then_some(docs))
    })
    .await?;
    assert_eq!(ids(&outbox), [very.as_str(), normal.as_str()]);
    let depts: Vec<&str> = outbox[0]["recipients"]
        .as_array()
        .context("recipients")?
        .iter()
        .filter_map(|r| r["dept"].as_str())
        .collect();
    assert_eq!(depts, ["b", "c"]);
    assert_eq!(outbox[1]["recipients"][0]["clerk"], "李明");
    let table = ex.cli_ok("a", &["outbox"]).await?;
    assert!(table.contains("b:confirmed"), "{table}");
    Ok(())
}

#[tokio::test]
async fn a_reply_links_to_its_original() -> Result<()> {
    let ex = TestExchange::start(&["a", "b", "c"]).await?;
    let request = send(
        &ex,
        "a",
        "关于拨付专项资金的请示",
        &["--to", "b", "--doc-type", "request"],
    )
    .await?;
    wait_in_inbox(&ex, "b", &request).await?;

    let answer = random_file(ex.root(), "批复.ofd", 500, 7)?;
    let out = ex
        .cli_ok(
            "b",
            &[
                "reply",
                &request,
                "--title",
                "关于同意拨付专项资金的批复",
                "--file",
                answer.to_str().context("path")?,
            ],
        )
        .await?;
    let reply = last_line(&out);
    assert_eq!(reply.len(), 36, "reply prints the new id last: {out}");

    // The reply reaches the original's sender, and its signed header names the original.
    wait_in_inbox(&ex, "a", &reply).await?;
    let shown = ex.cli_json("a", &["show", &reply, "--json"]).await?;
    assert_eq!(shown["in_reply_to"], request.as_str());
    assert_eq!(shown["doc_type"], "reply");
    assert_eq!(shown["to_depts"], serde_json::json!(["a"]));
    // The sender sees it under the original's status (and in the outbox listing).
    let status = ex.cli_json("a", &["status", &request, "--json"]).await?;
    assert_eq!(status["replies"][0]["id"], reply.as_str());
    assert_eq!(status["replies"][0]["sender"], "b");
    let table = ex.cli_ok("a", &["status", &request]).await?;
    assert!(table.contains("关于同意拨付专项资金的批复"), "{table}");
    let outbox = ex.cli_json("a", &["outbox", "--json"]).await?;
    assert_eq!(outbox[0]["replies"][0]["id"], reply.as_str());

    // Only a received document can be answered.
    let (ok, _, err) = ex
        .cli(
            "c",
            &[
                "reply",
                &request,
                "--title",
                "t",
                "--file",
                answer.to_str().context("path")?,
            ],
        )
        .await?;
    assert!(!ok, "c never received the request: {err}");
    Ok(())
}

#[tokio::test]
async fn an_overdue_delivery_is_flagged_at_both_ends() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    for d in ["a", "b"] {
        // 平件 overdue after 1 s; 特急 keeps its default 2 h.
        // a looks for overdue deliveries to remind (自动催办) every second.
        ex.edit_node_config(d, |c| {
            c.reminders.normal = exchange_core::config::Allowance::Clock(1);
            c.reminders.check_every_secs = 1;
        })?;
    }
    ex.start_hub().await?;
    ex.start_node("a").await?;
    ex.start_node("b").await?;
    let normal = send(&ex, "a", "关于报送年度总结的通知", &["--to", "b"]).await?;
    let very = send(
        &ex,
        "a",
        "关于防范寒潮的紧急通知",
        &["--to", "b", "--urgency", "very-urgent"],
    )
    .await?;
    wait_in_inbox(&ex, "b", &very).await?;
    // 加急 keeps its default: 1 working day of b's calendar (Monday to Friday at +08:00).
    let urgent = send(
        &ex,
        "a",
        "关于上报数据的函",
        &["--to", "b", "--urgency", "urgent"],
    )
    .await?;
    wait_in_inbox(&ex, "b", &urgent).await?;
    let e = inbox(&ex, "b", &["--urgency", "urgent"]).await?;
    let received = e[0]["received_at_ms"].as_i64().context("received_at_ms")?;
    let due = exchange_core::config::Calendar::default().add_working_days(received, 1);
    assert!(due >= received + 86_400_000, "at least a day: {}", e[0]);
    assert_eq!(
        e[0]["sign_due_at"],
        exchange_core::time::format_ms(due).as_str()
    );
    assert_eq!(e[0]["overdue"], false);
    ex.cli_ok("b", &["confirm", &urgent, "--clerk", "赵敏"])
        .await?;

    // At the recipient: the overdue 平件 is flagged and listed before the 特急 that is not.
    let entries = eventually("the 平件 to be overdue at b", DEADLINE, || async {
        let e = inbox(&ex, "b", &[]).await?;
        Ok((e
            .first()
            .is_some_and(|e| e["id"] == normal.as_str() && e["overdue"] == true))
        .then_some(e))
    })
    .await?;
    // The signed-for 加急 comes last: nothing left to do about it.
    assert_eq!(
        ids(&entries),
        [normal.as_str(), very.as_str(), urgent.as_str()]
    );
    assert_eq!(entries[1]["overdue"], false);
    // When 签收 falls due: 1 s after arrival for the 平件, 2 h around the clock for the 特急.
    let due_after = |e: &serde_json::Value, secs: i64| -> Result<()> {
        let received = e["received_at_ms"].as_i64().context("received_at_ms")?;
        let due = exchange_core::time::format_ms(received + secs * 1000);
        assert_eq!(e["sign_due_at"], due.as_str(), "{e}");
        Ok(())
    };
    due_after(&entries[0], 1)?;
    due_after(&entries[1], 7200)?;
    assert_eq!(
        ids(&inbox(&ex, "b", &["--state", "overdue"]).await?),
        [normal.as_str()]
    );
    let table = ex.cli_ok("b", &["inbox"]).await?;
    assert!(table.contains("overdue"), "{table}");

    // At the sender: delivered but not confirmed past the threshold.
    let b = eventually("b to be overdue at a", DEADLINE, || async {
        let s = ex.cli_json("a", &["status", &normal, "--json"]).await?;
        let b = s["recipients"][0].clone();
        Ok((b["overdue"] == true).then_some(b))
    })
    .await?;
    assert_eq!(b["state"], "delivered");
    assert!(b["sign_due_at"].is_string(), "{b}");
    let s = ex.cli_json("a", &["status", &very, "--json"]).await?;
    assert_eq!(s["recipients"][0]["overdue"], false);
    let outbox = ex.cli_ok("a", &["outbox"]).await?;
    assert!(outbox.contains("b:overdue"), "{outbox}");

    // 自动催办: a reminds b of the overdue 平件 by itself, once; b counts it and sees why.
    let reminded = eventually("the automatic reminder at b", DEADLINE, || async {
        let e = inbox(&ex, "b", &["--state", "reminded"]).await?;
        Ok(e.first().cloned())
    })
    .await?;
    assert_eq!(reminded["id"], normal.as_str());
    assert_eq!(reminded["reminders"], 1);
    let note = reminded["reminder_note"].as_str().unwrap_or_default();
    assert!(
        note.contains("自动催办") && note.contains("签收 was due"),
        "{note}"
    );
    let s = ex.cli_json("a", &["status", &normal, "--json"]).await?;
    assert_eq!(s["recipients"][0]["reminders"], 1, "{s}");
    // Only once: three more checks later it is still one (an absence can only be waited out).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let again = inbox(&ex, "b", &["--state", "reminded"]).await?;
    assert_eq!(ids(&again), [normal.as_str()], "the 特急 is not overdue");
    assert_eq!(again[0]["reminders"], 1, "reminded once: {}", again[0]);

    // 签收 ends it at both ends.
    ex.cli_ok("b", &["confirm", &normal, "--clerk", "赵敏"])
        .await?;
    eventually("b's confirmation at a", DEADLINE, || async {
        let s = ex.cli_json("a", &["status", &normal, "--json"]).await?;
        let b = &s["recipients"][0];
        Ok((b["state"] == "confirmed" && b["overdue"] == false).then_some(()))
    })
    .await?;
    let entries = inbox(&ex, "b", &[]).await?;
    assert!(entries.iter().all(|e| e["overdue"] == false), "{entries:?}");
    Ok(())
}
