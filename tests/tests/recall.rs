//! Recall (撤回), adding recipients (补发), reminders (催办) and per-sender directory scoping
//! (issue 9), against the real binaries. The first three are `exchange_tests::scenario::recall`,
//! which `tests/shangmi_ops.rs` runs under the 国密 profile.

use anyhow::{Context as _, Result};
use exchange_core::{
    config::{DeptPattern, RoutingRule},
    crypto::Profile::International,
};
use exchange_tests::{TestExchange, scenario::recall};
use serde_json::Value;

#[tokio::test]
async fn recall_before_and_after_signing_for_leaves_evidence_at_every_step() -> Result<()> {
    recall::recall_before_and_after_signing_for(International).await
}

#[tokio::test]
async fn added_recipients_receive_the_same_signed_document_and_no_one_else_twice() -> Result<()> {
    recall::add_recipients(International).await
}

#[tokio::test]
async fn a_reminder_is_counted_and_flagged_at_the_recipient() -> Result<()> {
    recall::remind(International).await
}

#[tokio::test]
async fn the_directory_is_scoped_per_sender() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b", "c"])?;
    ex.edit_hub_config(|c| {
        let p = |s: &str| DeptPattern::try_from(s.to_owned()).expect("pattern");
        c.routing.rules = vec![RoutingRule {
            from: p("a"),
            to: vec![p("b")],
        }];
        c.groups.push(exchange_core::config::GroupEntry {
            id: "all".parse().expect("id"),
            name: "各单位".into(),
            members: vec!["b".parse().expect("id"), "c".parse().expect("id")],
        });
    })?;
    ex.start_hub().await?;
    for d in ["a", "b", "c"] {
        ex.start_node(d).await?;
    }
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    // a may address only b: c and the group naming c are not offered.
    let a_dir = ex.cli_json("a", &["directory", "--json"]).await?;
    assert_eq!(ids(&a_dir), ["b"]);
    let a_all = ex.cli_json("a", &["directory", "--json", "--all"]).await?;
    let c = a_all
        .as_array()
        .and_then(|v| v.iter().find(|e| e["id"] == "c"))
        .context("c listed with --all")?;
    assert_eq!(c["addressable"], false);
    // b is not scoped: everyone, and the group.
    let b_dir = ex.cli_json("b", &["directory", "--json"]).await?;
    let b_ids = ids(&b_dir);
    assert!(b_ids.contains(&"c".to_owned()) && b_ids.contains(&"group:all".to_owned()));
    Ok(())
}
