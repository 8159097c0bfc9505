//! The node API and the hub's administrator client under the 国密 profile (issue 14): a node
//! whose `[api] tls` is served over TLCP (an `exchange-certs issue-api` identity with its
//! encryption pair), reached by a client the provider layer builds and by the clerk's CLI, and
//! refusing clients without a valid certificate; and `exchange-hub audit list|verify|export`
//! asking a running shangmi hub over TLCP (`[admin]` with its encryption pair, as `demo-setup
//! --profile shangmi` writes it), agreeing with the same commands run offline on its store.
//! Needs binaries built with the `shangmi` features (the harness builds them so when this
//! crate's `shangmi` feature is on).
#![cfg(feature = "shangmi")]

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, Result, ensure};
use exchange_core::{
    config::{HubConfig, NodeConfig, TlsPaths, TlsProtocol, read_addr_file},
    crypto::Profile,
    tls,
};
use exchange_proto::v1 as pb;
use exchange_tests::{
    Draft, TestExchange,
    cli::{send, wait_in_inbox, wait_state},
    submit, tls_probe,
};
use serde_json::Value;

/// `path` as a command-line argument.
fn arg(path: &Path) -> Result<&str> {
    path.to_str().context("utf-8 path")
}

/// Stops `dept`'s node, gives it `[api] tls` with an API identity issued now by `ca_dir`'s CA
/// (`exchange-certs issue-api`) and `protocol`, checks the config and starts it again; returns
/// the API's address.
async fn serve_api_over_tls(
    ex: &mut TestExchange,
    dept: &str,
    protocol: Option<TlsProtocol>,
) -> Result<std::net::SocketAddr> {
    ex.stop_node(dept).await?;
    let ca_dir = ex.layout_dir().join("ca");
    let api_dir = ex.root().join(format!("api-{dept}"));
    let (ok, _, err) = ex
        .certs(&[
            "issue-api",
            "--ca-dir",
            arg(&ca_dir)?,
            "--id",
            dept,
            "--out",
            arg(&api_dir)?,
        ])
        .await?;
    ensure!(ok, "exchange-certs issue-api: {err}");
    for file in ["tls.pem", "tls.key", "tls-enc.pem", "tls-enc.key"] {
        ensure!(api_dir.join(file).exists(), "issue-api wrote no {file}");
    }
    let api_tls = TlsPaths {
        ca: ca_dir.join("ca.pem"),
        cert: api_dir.join("tls.pem"),
        key: api_dir.join("tls.key"),
        enc_cert: Some(api_dir.join("tls-enc.pem")),
        enc_key: Some(api_dir.join("tls-enc.key")),
        crl: None,
        protocol,
    };
    if protocol.is_none() {
        // TLCP needs the API's encryption pair: check-config names the missing key.
        let single = TlsPaths {
            enc_cert: None,
            enc_key: None,
            ..api_tls.clone()
        };
        ex.edit_node_config(dept, |c| c.api.tls = Some(single))?;
        let (ok, _, err) = ex.cli(dept, &["check-config"]).await?;
        ensure!(!ok && err.contains("[api] tls.enc_cert"), "{err}");
    }
    ex.edit_node_config(dept, |c| c.api.tls = Some(api_tls))?;
    let (ok, out, err) = ex.cli(dept, &["check-config"]).await?;
    ensure!(ok, "check-config refused [api] tls over TLCP: {out}{err}");
    ex.start_node_unchecked(dept).await?;
    Ok(read_addr_file(&ex.node_data_dir(dept), "api.addr")?)
}

/// Whether a provider-layer client with `paths` gets an answer from the API at `addr`: false if
/// the handshake is refused (or, where the server judges after its end of the handshake, the
/// first call is).
async fn served(addr: std::net::SocketAddr, paths: &TlsPaths) -> bool {
    match provider_client(addr, paths).await {
        Ok(mut c) => c.list_inbox(pb::ListInboxRequest {}).await.is_ok(),
        Err(_) => false,
    }
}

/// A client of `dept`'s API built by the provider layer from `paths` (the stack of the
/// exchange's profile), connected now.
async fn provider_client(
    addr: std::net::SocketAddr,
    paths: &TlsPaths,
) -> Result<pb::node_client::NodeClient<tonic::transport::Channel>> {
    let channel = tls::hub_endpoint(addr, paths, Profile::Shangmi, "localhost")?
        .connect()
        .await?;
    Ok(pb::node_client::NodeClient::new(channel))
}

#[tokio::test]
async fn a_node_api_served_over_tlcp_serves_the_provider_client_and_the_clerk_cli_only()
-> Result<()> {
    let mut ex = TestExchange::start_with_profile(&["a", "b"], Profile::Shangmi).await?;
    let addr = serve_api_over_tls(&mut ex, "a", None).await?;
    let node: NodeConfig = exchange_core::config::load(ex.node_config("a"))?;

    // The department's own TLCP identity ([tls]: signing and encryption pairs), through the
    // provider layer: lists, then submits a document that reaches b.
    let mut client = provider_client(addr, &node.tls).await?;
    client.list_inbox(pb::ListInboxRequest {}).await?;
    let draft = Draft {
        to: vec!["b".into()],
        title: "经由TLCP接口提交的通知".into(),
        urgency: pb::Urgency::Normal,
        parts: vec![("正文.ofd".into(), vec![7u8; 3000])],
        key: String::new(),
    };
    let id = submit(&mut client, &draft).await?;
    assert_eq!(wait_in_inbox(&ex, "b", &id).await?["sender"], "a");
    ex.wait_logged("a", "node API listening").await?;

    // The clerk's CLI reaches the same API over TLCP: it sends, and follows both documents.
    let sent = send(&ex, "a", "经由命令行发送", &["--to", "b"]).await?;
    wait_in_inbox(&ex, "b", &sent).await?;
    ex.cli_ok("b", &["confirm", &sent, "--clerk", "王芳"])
        .await?;
    let row = wait_state(&ex, "a", &sent, "b", "confirmed").await?;
    assert_eq!(row["clerk"], "王芳");
    let status = ex.cli_ok("a", &["status", &id]).await?;
    assert!(
        status.contains("经由TLCP接口提交的通知") && status.contains("delivered"),
        "status over TLCP: {status}"
    );

    // A client without a valid certificate is refused at the handshake:
    // - plaintext;
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?;
    let plain_served = match plain.connect().await {
        Ok(ch) => pb::node_client::NodeClient::new(ch)
            .list_inbox(pb::ListInboxRequest {})
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!plain_served, "a plaintext client was served");
    // - TLS 1.3 through rustls, even with a certificate (the other profile's stack);
    let ca_pem = std::fs::read(&node.tls.ca)?;
    let refused = tls_probe(addr, &ca_pem, None).await?;
    assert!(refused.is_err(), "a rustls TLS 1.3 client was served");
    // - TLCP with a certificate from another (SM2) CA;
    let other = ex.root().join("other-ca");
    let (ok, _, err) = ex
        .certs(&["init-ca", "--dir", arg(&other)?, "--profile", "shangmi"])
        .await?;
    ensure!(ok, "init-ca: {err}");
    let other_a = ex.root().join("other-a");
    let (ok, _, err) = ex
        .certs(&[
            "issue-dept",
            "--ca-dir",
            arg(&other)?,
            "--id",
            "a",
            "--out",
            arg(&other_a)?,
        ])
        .await?;
    ensure!(ok, "issue-dept: {err}");
    let foreign = TlsPaths {
        ca: node.tls.ca.clone(),
        cert: other_a.join("tls.pem"),
        key: other_a.join("tls.key"),
        enc_cert: Some(other_a.join("tls-enc.pem")),
        enc_key: Some(other_a.join("tls-enc.key")),
        crl: None,
        protocol: None,
    };
    assert!(
        !served(addr, &foreign).await,
        "a client of another CA was served"
    );
    // - TLCP whose encryption certificate is another department's (the server's peer check).
    let b: NodeConfig = exchange_core::config::load(ex.node_config("b"))?;
    let mixed = TlsPaths {
        enc_cert: b.tls.enc_cert.clone(),
        enc_key: b.tls.enc_key.clone(),
        ..node.tls.clone()
    };
    assert!(
        !served(addr, &mixed).await,
        "a TLCP client with another principal's encryption certificate was served"
    );
    ex.wait_logged("a", "name different principals").await?;
    ex.wait_logged("a", "API TLS handshake refused").await?;
    Ok(())
}

#[tokio::test]
async fn a_node_api_can_speak_rfc_8998_and_the_cli_follows_its_protocol() -> Result<()> {
    let mut ex = TestExchange::start_with_profile(&["a", "b"], Profile::Shangmi).await?;
    let addr = serve_api_over_tls(&mut ex, "a", Some(TlsProtocol::Tls13Sm)).await?;
    let node: NodeConfig = exchange_core::config::load(ex.node_config("a"))?;
    let tls13_sm = TlsPaths {
        protocol: Some(TlsProtocol::Tls13Sm),
        ..node.tls.clone()
    };
    provider_client(addr, &tls13_sm)
        .await?
        .list_inbox(pb::ListInboxRequest {})
        .await?;
    // A TLCP client does not get in.
    assert!(!served(addr, &node.tls).await, "a TLCP client was served");
    let id = send(&ex, "a", "经由RFC8998发送", &["--to", "b"]).await?;
    wait_in_inbox(&ex, "b", &id).await?;
    Ok(())
}

/// Runs `exchange-hub audit <args>`; fails unless it succeeds; returns stdout.
async fn audit(ex: &TestExchange, args: &[&str]) -> Result<String> {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    let (ok, out, err) = ex.hub_cli(&all).await?;
    ensure!(ok, "exchange-hub {all:?} failed:\n{err}");
    Ok(out)
}

/// `audit list --json`, by seq.
async fn listed(ex: &TestExchange) -> Result<BTreeMap<u64, Value>> {
    let v: Value = serde_json::from_str(&audit(ex, &["list", "--json"]).await?)?;
    let mut by_seq = BTreeMap::new();
    for e in v.as_array().context("audit list --json is an array")? {
        by_seq.insert(e["seq"].as_u64().context("an entry has a seq")?, e.clone());
    }
    Ok(by_seq)
}

/// The entry lines of an `audit export`, by seq.
fn exported_entries(export: &str) -> Result<BTreeMap<u64, Value>> {
    let mut by_seq = BTreeMap::new();
    for line in export.lines() {
        let v: Value = serde_json::from_str(line)?;
        if let Some(seq) = v["seq"].as_u64().filter(|_| v["type"] == "entry") {
            by_seq.insert(seq, v);
        }
    }
    Ok(by_seq)
}

#[tokio::test]
async fn audit_commands_ask_a_running_shangmi_hub_over_tlcp_and_agree_with_the_offline_ones()
-> Result<()> {
    let mut ex = TestExchange::start_with_profile(&["a", "b"], Profile::Shangmi).await?;
    let hub: HubConfig = exchange_core::config::load(&ex.layout_dir().join("hub/hub.toml"))?;
    let admin = hub.admin.clone().context("demo-setup writes [admin]")?;
    assert!(
        admin.enc_cert.is_some() && admin.enc_key.is_some(),
        "a shangmi demo's [admin] names the encryption pair: {admin:?}"
    );
    let id = send(&ex, "a", "审计用通知", &["--to", "b"]).await?;
    wait_in_inbox(&ex, "b", &id).await?;

    // Online: the hub answers (it holds its store, so nothing else could), and records each
    // question as an administrator's action of admin:admin — the name in the signing
    // certificate the TLCP handshake verified.
    let online = listed(&ex).await?;
    assert!(
        online.values().any(|e| e["doc_id"] == id.as_str()),
        "the document's entries are listed: {online:?}"
    );
    let verified = audit(&ex, &["verify"]).await?;
    assert!(verified.contains("audit log intact"), "{verified}");
    let online_export = audit(&ex, &["export"]).await?;
    let actions: Value =
        serde_json::from_str(&audit(&ex, &["list", "--json", "--event", "admin-action"]).await?)?;
    let actions = actions.as_array().context("an array")?;
    for question in ["audit list", "audit verify", "audit export"] {
        assert!(
            actions.iter().any(|e| e["dept"] == "admin:admin"
                && e["detail"].as_str().unwrap_or("").starts_with(question)),
            "the hub recorded {question:?} by admin:admin: {actions:?}"
        );
    }
    let file = ex.root().join("audit-online.jsonl");
    std::fs::write(&file, &online_export)?;
    let (ok, out, err) = ex
        .certs(&[
            "verify-audit",
            arg(&file)?,
            "--ca",
            arg(&ex.layout_dir().join("ca/ca.pem"))?,
        ])
        .await?;
    ensure!(ok, "verify-audit of the online export: {out}{err}");

    // An [admin] without TLCP's encryption pair is refused by name, before any handshake.
    ex.edit_hub_config(|c| {
        if let Some(a) = &mut c.admin {
            a.enc_cert = None;
        }
    })?;
    let (ok, _, err) = ex.hub_cli(&["audit", "verify"]).await?;
    assert!(!ok && err.contains("[admin] enc_cert"), "{err}");
    ex.edit_hub_config(|c| c.admin = Some(admin))?;

    // Offline, on the stopped hub's store: the same entries, and more (the stop).
    ex.stop_hub().await?;
    let offline = listed(&ex).await?;
    for (seq, entry) in &online {
        assert_eq!(
            offline.get(seq),
            Some(entry),
            "entry {seq} online and offline"
        );
    }
    let verified = audit(&ex, &["verify"]).await?;
    assert!(verified.contains("audit log intact"), "{verified}");
    let offline_export = exported_entries(&audit(&ex, &["export"]).await?)?;
    let online_export = exported_entries(&online_export)?;
    ensure!(!online_export.is_empty(), "the online export has entries");
    for (seq, line) in &online_export {
        assert_eq!(offline_export.get(seq), Some(line), "exported entry {seq}");
    }
    Ok(())
}
