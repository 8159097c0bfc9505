//! How offices work with the exchange (issue 9): group addressing, the clerk's inbox filters
//! and outbox, replies linked to their original, and overdue flags — against the real binaries.

use anyhow::{Context as _, Result};
use exchange_core::config::GroupEntry;
use exchange_tests::{DEADLINE, TestExchange, eventually, random_file};
use serde_json::Value;

fn last_line(out: &str) -> String {
    out.lines().last().unwrap_or_default().trim().to_owned()
}

/// `inbox --json` at `dept` with extra flags.
async fn inbox(ex: &TestExchange, dept: &str, flags: &[str.as_str()]) -> Result<Vec<Value>> {
    let mut args = vec!["inbox", "--json"];
    args.extend_from_slice(flags);
    let v = ex.cli_json(dept, &args).await?;
    v.as_array().cloned().context("inbox --json is an array")
}

async fn wait_in_inbox(ex: &TestExchange, dept: &str, id: &str) -> Result<Value> {
    eventually(&format!("{id} in {dept}'s inbox"), DEADLINE, || async {
        Ok(inbox(ex, dept, &[])
            .await?
            .into_iter()
            .find(|e| e["id"] == id))
    })
    .await
}

/// `send` from `from` with the given extra flags; returns the id.
async fn send(ex: &TestExchange, from: &str, title: &str, flags: &[str.as_str()]) -> Result<String> {
    let body = random_file(ex.root(), &format!("{title}.ofd"), 1000, title.len() as u64)?;
    let body = body.to_str().context("utf-8 path")?.to_owned();
    let mut args = vec!["send", "--title", title, "--file", &body];
    args.extend_from_slice(flags);
    Ok(last_line(&ex.cli_ok(from, &args).await?))
}

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
    let normal = send(&ex, "a", "关于报送统计数据的通知", &["--to", "b"]).await?;
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
    assert_eq!(ids(&inbox(&ex, "b", &[]).await?), [very.as_str(), normal.as_str(), from_c.as_str()]);
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
    assert_eq!(ids(&inbox(&ex, "b", &["--from", "c"]).await?), [from_c.as_str()]);
    assert_eq!(
        ids(&inbox(&ex, "b", &["--since", "2000-01-01"]).await?).len(),
        3
    );
    assert!(
        inbox(&ex, "b", &["--since", "2999-01-01"])
            .await?
            .is_empty()
    );
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
