//! A small, fast run of every scenario against the binaries of this build profile, so that the
//! benchmark cannot rot: it must start the real daemons, deliver every document, and print
//! one JSON document with the fields scripts rely on.

use std::process::Command;

use serde_json::Value;

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

#[test]
fn a_small_run_of_every_scenario_delivers_every_document() {
    // The daemons next to `exchange-bench`, built the one way every end-to-end test builds them.
    exchange_tests::build_bins();
    let out = Command::new(env!("CARGO_BIN_EXE_exchange-bench"))
        .args([
            "--scenario",
            "all",
            "--json",
            "-n",
            "500",
            "--paced-secs",
            "1",
            "--large-bytes",
            "16MiB",
            "--fanout-recipients",
            "50",
            "--connections",
            "200",
            "--conn-docs",
            "20",
            "--conn-rate",
            "40",
            "--settle-secs",
            "0.5",
            "--stall-secs",
            "60",
        ])
        .output()
        .expect("running exchange-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exchange-bench failed:\n{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stderr}"));

    let steady = &v["steady"];
    assert_eq!(num(steady, "docs"), 500.0);
    assert_eq!(num(steady, "delivered"), 500.0, "{steady:#}");
    assert_eq!(num(steady, "receipts"), 500.0, "{steady:#}");
    for field in [
        "docs_per_sec",
        "submits_per_sec",
        "p50_ms",
        "p99_ms",
        "max_ms",
    ] {
        assert!(num(steady, field) > 0.0, "steady.{field}: {steady:#}");
    }
    assert!(num(steady, "p50_ms") <= num(steady, "p99_ms"));
    assert!(num(steady, "p99_ms") <= num(steady, "max_ms"));
    assert!(num(steady, "cpu_secs_per_doc.hub") > 0.0, "{steady:#}");
    // The two CPU figures: the hub's, and every process's (the hub's is part of it).
    let (hub_ms, total_ms) = (
        num(steady, "cpu_ms_per_doc_hub"),
        num(steady, "cpu_ms_per_doc_total"),
    );
    assert!(hub_ms > 0.0 && total_ms > hub_ms, "{steady:#}");
    assert!((hub_ms - num(steady, "cpu_secs_per_doc.hub") * 1e3).abs() < 0.01);
    if !steady["fsyncs_per_doc"].is_null() {
        assert!(num(steady, "fsyncs_per_doc") > 0.0, "{steady:#}");
    }
    assert_eq!(
        num(steady, "paced.delivered"),
        num(steady, "paced.docs"),
        "{steady:#}"
    );

    let large = &v["large"];
    assert_eq!(num(large, "bytes"), 16.0 * 1024.0 * 1024.0);
    assert_eq!(num(large, "delivered"), 1.0, "{large:#}");
    assert_eq!(large["verified"], Value::Bool(true), "{large:#}");
    assert!(num(large, "mib_per_sec") > 0.0);
    assert!(num(large, "peak_rss_mib.hub") > 0.0, "{large:#}");

    let fanout = &v["fanout"];
    assert_eq!(num(fanout, "delivered"), 50.0, "{fanout:#}");
    assert_eq!(num(fanout, "receipts"), 50.0, "{fanout:#}");
    assert!(num(fanout, "all_durable_ms") >= num(fanout, "first_durable_ms"));

    let conns = &v["connections"];
    assert_eq!(num(conns, "connected"), 200.0, "{conns:#}");
    assert!(num(conns, "hub_fds") >= 200.0, "{conns:#}");
    assert!(num(conns, "hub_rss_mib") > 0.0);
    assert_eq!(num(conns, "delivered"), 20.0, "{conns:#}");
    assert_eq!(num(conns, "receipts"), 20.0, "{conns:#}");
    assert!(num(conns, "p99_ms") > 0.0);
}
