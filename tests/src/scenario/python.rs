//! The Python integration example (`docs/examples/python/submit_and_follow.py`) against a real
//! exchange: it generates its stubs from `proto/`, submits a document through node a's API and
//! follows it with `WatchEvents` until b's clerk has confirmed it (签收). The body of
//! `tests/python_client.rs`, run under shangmi by `tests/shangmi_ops.rs`.
//!
//! Runs only where `python3 -c 'import grpc, grpc_tools'` works (`pip install grpcio
//! grpcio-tools`); elsewhere it prints SKIPPED and passes, unless `EXCHANGE_REQUIRE_PYTHON_GRPC`
//! is set (CI sets it after installing the packages in a venv): then it fails.

use std::{path::PathBuf, process::Stdio};

use anyhow::{Context, Result, ensure};
use exchange_core::crypto::Profile;
use exchange_proto::v1 as pb;
use tokio::process::Command;

use crate::{DEADLINE, TestExchange, eventually, random_file};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

async fn python_has_grpc() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// The example submits a document through node a's API and follows it with `WatchEvents` until
/// b's clerk has confirmed it, against an exchange of `profile` (the loopback API is the same
/// under both). Skips, passing, where python3 lacks grpcio, unless
/// `EXCHANGE_REQUIRE_PYTHON_GRPC` is set.
pub async fn submit_and_follow(profile: Profile) -> Result<()> {
    if !python_has_grpc().await {
        ensure!(
            std::env::var_os("EXCHANGE_REQUIRE_PYTHON_GRPC").is_none(),
            "python3 cannot import grpc and grpc_tools, and EXCHANGE_REQUIRE_PYTHON_GRPC is set"
        );
        eprintln!("SKIPPED: python3 with grpcio and grpcio-tools is not available");
        return Ok(());
    }
    let ex = TestExchange::start_with_profile(&["a", "b"], profile).await?;
    let api_addr = exchange_core::config::read_addr_file(&ex.node_data_dir("a"), "api.addr")?;
    let body = random_file(ex.root(), "正文.txt", 300_000, 8)?;
    let state_file = ex.root().join("last-seq");
    let title = "Python 示例发来的通知";
    let script = repo().join("docs/examples/python/submit_and_follow.py");
    let client = Command::new("python3")
        .arg(&script)
        .args(["--node", &api_addr.to_string(), "--to", "b"])
        .args(["--title", title, "--urgency", "urgent"])
        .args(["--until", "confirmed", "--timeout", "120"])
        .arg("--file")
        .arg(&body)
        .arg("--state-file")
        .arg(&state_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting python3")?;

    // b's clerk confirms it as soon as it arrives.
    let mut b = ex.node_api("b").await?;
    let id = eventually("the document at b", DEADLINE, || {
        let mut b = b.clone();
        async move {
            let inbox = b.list_inbox(pb::ListInboxRequest {}).await?.into_inner();
            Ok(inbox
                .entries
                .into_iter()
                .find(|e| e.title == title)
                .map(|e| e.doc_id))
        }
    })
    .await?;
    b.confirm(pb::ConfirmRequest {
        doc_id: id.clone(),
        clerk: "李明".into(),
        note: String::new(),
    })
    .await?;

    let out = tokio::time::timeout(DEADLINE * 2, client.wait_with_output()).await??;
    let (stdout, stderr) = (
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    );
    ensure!(
        out.status.success(),
        "the example failed:\n{stderr}\n{stdout}"
    );
    let status: serde_json::Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("parsing the example's output: {stdout}"))?;
    assert_eq!(status["doc_id"], id.as_str());
    assert_eq!(status["recipients"][0]["state"], "confirmed", "{status}");
    assert_eq!(status["recipients"][0]["clerk"], "李明", "{status}");
    assert!(stderr.contains("confirmed"), "{stderr}");
    // It remembered where it stopped, for the next run to resume from.
    let seq: u64 = std::fs::read_to_string(&state_file)?.trim().parse()?;
    assert!(seq >= 3, "last seq {seq}");
    Ok(())
}
