//! `exchange-hub stats`: the figures an office is asked for — sent, received, signed for (签收)
//! on time, average time to sign, overdue — computed by the running hub, against the real
//! binaries, with a short `[reminders]` threshold so that "overdue" happens within the test.

use anyhow::{Context as _, Result};
use exchange_core::time::{format_ms, now_ms};
use exchange_tests::{
    DEADLINE, TestExchange, bin,
    cli::{send, wait_in_inbox},
    eventually,
};
use serde_json::Value;

/// `exchange-hub stats --json <flags>`, parsed.
async fn stats(ex: &TestExchange, flags: &[&str]) -> Result<Value> {
    let mut args = vec!["stats", "--json"];
    args.extend_from_slice(flags);
    let (ok, out, err) = ex.hub_cli(&args).await?;
    anyhow::ensure!(ok, "stats {flags:?} failed: {err}");
    serde_json::from_str(&out).with_context(|| format!("parsing stats --json: {out}"))
}

fn row<'a>(s: &'a Value, dept: &str) -> &'a Value {
    s["departments"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["dept"] == dept))
        .unwrap_or(&Value::Null)
}

/// `exchange-hub stats <args>` with its exit code and stderr.
async fn stats_status(ex: &TestExchange, args: &[&str]) -> Result<(Option<i32>, String)> {
    let config = ex
        .hub_data_dir()
        .parent()
        .context("hub dir")?
        .join("hub.toml");
    let out = tokio::process::Command::new(bin("exchange-hub"))
        .arg("--config")
        .arg(config)
        .arg("stats")
        .args(args)
        .output()
        .await?;
    Ok((out.status.code(), String::from_utf8(out.stderr)?))
}

#[tokio::test]
async fn a_day_of_sending_signing_and_overdue_adds_up_per_department() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b", "c"])?;
    // 平件 overdue 1 s after delivery; 特急 keeps its default 2 h.
    ex.edit_hub_config(|c| c.reminders.normal = exchange_core::config::Allowance::Clock(1))?;
    ex.start_hub().await?;
    for d in ["a", "b", "c"] {
        ex.start_node(d).await?;
    }
    let to = ["--to", "b,c"];
    let very = ["--to", "b,c", "--urgency", "very-urgent"];
    let d1 = send(&ex, "a", "关于防范寒潮的紧急通知", &very).await?;
    let d2 = send(&ex, "a", "关于报送年度总结的通知", &to).await?;
    let d3 = send(&ex, "a", "关于召开工作会议的通知", &to).await?;
    for d in ["b", "c"] {
        for id in [&d1, &d2, &d3] {
            wait_in_inbox(&ex, d, id).await?;
        }
    }
    // b signs for the 特急 at once; c sends the second back; the rest waits.
    ex.cli_ok("b", &["confirm", &d1, "--clerk", "王芳"]).await?;
    ex.cli_ok("c", &["reject", &d2, "--reason", "不属于本单位职责范围"])
        .await?;
    // Until the 平件 pass their threshold: d2 and d3 at b, d3 at c.
    eventually("the 平件 to be overdue", DEADLINE, || async {
        let s = stats(&ex, &[]).await?;
        let (b, c) = (row(&s, "b"), row(&s, "c"));
        Ok((b["confirmed"] == 1
            && b["overdue_unconfirmed"] == 2
            && c["rejected"] == 1
            && c["overdue_unconfirmed"] == 1)
            .then_some(()))
    })
    .await?;
    // ...and b signs for d3 only now: confirmed, but late.
    ex.cli_ok("b", &["confirm", &d3, "--clerk", "王芳"]).await?;
    let s = eventually("b's late 签收 at the hub", DEADLINE, || async {
        let s = stats(&ex, &[]).await?;
        let b = row(&s, "b");
        let timed = b["confirmed_on_time"].as_u64().unwrap_or(0)
            + b["confirmed_late"].as_u64().unwrap_or(0);
        Ok((b["confirmed"] == 2 && timed == 2).then_some(s))
    })
    .await?;

    assert_eq!(s["timezone"], "+08:00");
    assert_eq!(s["thresholds_secs"]["normal"], 1);
    assert_eq!(s["thresholds_secs"]["very_urgent"], 7200);
    assert_eq!(s["thresholds_secs"]["urgent"], Value::Null);
    assert_eq!(
        s["thresholds_working_days"]["urgent"], 1,
        "1 working day by default"
    );
    assert_eq!(s["thresholds_working_days"]["normal"], Value::Null);
    assert_eq!(s["calendar"]["utc_offset"], "+08:00");
    let a = row(&s, "a");
    assert_eq!(
        (a["sent"].as_u64(), a["received"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(a["on_time_share"], Value::Null, "nothing to sign for");

    let b = row(&s, "b");
    assert_eq!(b["sent"], 0);
    assert_eq!(b["received"], 3);
    assert_eq!(b["confirmed"], 2);
    assert_eq!(b["confirmed_on_time"], 1, "the 特急, at once: {b}");
    assert_eq!(b["confirmed_late"], 1, "d3, after its 1 s: {b}");
    assert_eq!(b["on_time_share"], 0.5);
    assert_eq!(b["unconfirmed"], 1);
    assert_eq!(b["overdue_unconfirmed"], 1, "d2");
    assert_eq!(b["overdue"], 2);
    assert!(b["avg_sign_secs"].as_f64().is_some_and(|t| t > 0.5), "{b}");

    let c = row(&s, "c");
    assert_eq!(c["received"], 3);
    assert_eq!(c["confirmed"], 0);
    assert_eq!(c["rejected"], 1);
    assert_eq!(c["unconfirmed"], 2, "the 特急 (in time) and d3 (overdue)");
    assert_eq!(c["overdue"], 1);
    assert_eq!(c["on_time_share"], Value::Null);
    assert_eq!(c["avg_sign_secs"], Value::Null);
    for r in [b, c] {
        assert_eq!(r["not_delivered"], 0);
        assert_eq!(r["in_transit"], 0);
    }

    let t = &s["total"];
    assert_eq!(t["sent"], 3);
    assert_eq!(t["received"], 6);
    assert_eq!(t["confirmed"], 2);
    assert_eq!(t["rejected"], 1);
    assert_eq!(t["overdue"], 3);
    assert_eq!(t["on_time_share"], 0.5);

    // One department, and the period: today holds everything, an old day nothing. Days are
    // the hub's calendar days, at +08:00 by default.
    let only = stats(&ex, &["--dept", "b"]).await?;
    assert_eq!(only["departments"].as_array().map(Vec::len), Some(1));
    assert_eq!(only["total"]["received"], 3);
    let beijing = now_ms() + 8 * 3_600_000;
    let yesterday = format_ms(beijing - 86_400_000)[..10].to_owned();
    let today = format_ms(beijing)[..10].to_owned();
    let period = stats(&ex, &["--from", &yesterday, "--to", &today]).await?;
    assert_eq!(period["total"]["sent"], 3);
    assert_eq!(period["from"], yesterday.as_str());
    let before = stats(&ex, &["--to", &yesterday]).await?;
    assert_eq!(before["total"]["sent"], 0, "--to ends at 24:00 of that day");
    let old = stats(&ex, &["--from", "2020-01-01", "--to", "2020-01-31"]).await?;
    assert_eq!(old["total"]["sent"], 0);
    assert_eq!(
        row(&old, "b")["received"],
        0,
        "directory departments show, with zeros"
    );

    // The table: a row per department and the total.
    let (ok, table, err) = ex.hub_cli(&["stats"]).await?;
    assert!(ok, "{err}");
    assert!(
        table.contains("ON-TIME") && table.contains("50.0%"),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("total")), "{table}");

    // Asking is an administrator's action, and audited.
    let (ok, audit, err) = ex
        .hub_cli(&["audit", "list", "--event", "admin-action", "--json"])
        .await?;
    assert!(ok, "{err}");
    assert!(audit.contains("stats from="), "{audit}");
    Ok(())
}

#[tokio::test]
async fn a_bad_day_a_reversed_period_or_an_unknown_department_is_a_usage_error() -> Result<()> {
    let ex = TestExchange::start(&["a"]).await?;
    let (code, err) = stats_status(&ex, &["--from", "2026-13-01"]).await?;
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("--from"), "{err}");

    let (code, err) = stats_status(&ex, &["--from", "2026-11-30", "--to", "2026-11-01"]).await?;
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("--from 2026-11-30 is after --to 2026-11-01"),
        "{err}"
    );

    let (code, err) = stats_status(&ex, &["--dept", "nosuch"]).await?;
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("--dept") && err.contains("nosuch"), "{err}");
    Ok(())
}
