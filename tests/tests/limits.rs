//! Limits against abuse, end to end: a department over its call or byte rate is told which limit
//! it hit (and others are not affected), and a node's API cannot be exposed to the network
//! without mutual TLS.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use exchange_certs::{Ca, Validity};
use exchange_core::{config::TlsPaths, identity::Principal, signing::Digest};
use exchange_proto::v1 as pb;
use exchange_tests::{TestExchange, bin, forge};
use tonic::Code;

#[tokio::test]
async fn a_department_over_its_rate_limits_gets_resource_exhausted_naming_the_limit() -> Result<()>
{
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.edit_hub_config(|c| {
        c.limits.requests_per_second = 2;
        c.limits.burst_requests = 5;
        c.limits.bytes_per_second = 64 * 1024;
        c.limits.burst_bytes = 64 * 1024;
    })?;
    ex.start_hub().await?;
    let mut a = ex.hub_client_as("a").await?;
    let mut refused = None;
    for _ in 0..20 {
        if let Err(s) = a.list_departments(pb::ListDepartmentsRequest {}).await {
            refused = Some(s);
            break;
        }
    }
    let s = refused.context("20 calls at once were all admitted")?;
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("requests_per_second = 2"),
        "{}",
        s.message()
    );
    let mut b = ex.hub_client_as("b").await?;
    b.list_departments(pb::ListDepartmentsRequest {}).await?; // b has its own bucket

    // 256 KiB at 64 KiB/s: the upload is slowed down, and a second one meanwhile is refused.
    tokio::time::sleep(Duration::from_secs(3)).await; // a's call bucket refills
    let data = vec![5u8; 256 * 1024];
    let sha = Digest::of(&data);
    let mut first = ex.hub_client_as("a").await?;
    let started = Instant::now();
    let upload = tokio::spawn(async move {
        let chunks = data.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
        forge::put_blob(&mut first, sha, 256 * 1024, chunks).await
    });
    let mut second = None;
    while !upload.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tiny = b"x".to_vec();
        if let Err(s) = forge::put_blob(&mut a, Digest::of(&tiny), 1, vec![tiny]).await {
            second = Some(s);
            break;
        }
    }
    upload.await??;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not slowed: {:?}",
        started.elapsed()
    );
    let s = second.context("no call was refused while a was over its byte rate")?;
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("bytes_per_second = 65536"),
        "{}",
        s.message()
    );
    Ok(())
}

/// One certificate holds at most `[limits] connections_per_principal` connections to the hub: the
/// next is dropped after its handshake and logged naming the limit, another department is not
/// affected, and a place comes back when a connection closes.
#[tokio::test]
async fn a_department_over_its_connection_limit_is_refused_naming_the_limit() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.edit_hub_config(|c| c.limits.connections_per_principal = 2)?;
    ex.start_hub().await?;
    let mut first = ex.hub_client_as("a").await?;
    let mut second = ex.hub_client_as("a").await?;
    first
        .list_departments(pb::ListDepartmentsRequest {})
        .await?;
    second
        .list_departments(pb::ListDepartmentsRequest {})
        .await?;
    let third = async {
        let mut c = ex.hub_client_as("a").await?;
        c.list_departments(pb::ListDepartmentsRequest {}).await?;
        anyhow::Ok(())
    }
    .await;
    assert!(third.is_err(), "a third connection of a was served");
    ex.wait_logged(
        "hub",
        "department a already holds 2 connections (limits.connections_per_principal = 2)",
    )
    .await?;
    let mut b = ex.hub_client_as("b").await?;
    b.list_departments(pb::ListDepartmentsRequest {}).await?;
    second
        .list_departments(pb::ListDepartmentsRequest {})
        .await?; // the first two are kept
    drop(first);
    exchange_tests::eventually("a's freed place", exchange_tests::DEADLINE, || async {
        let Ok(mut c) = ex.hub_client_as("a").await else {
            return Ok(None);
        };
        Ok(c.list_departments(pb::ListDepartmentsRequest {})
            .await
            .ok()
            .map(|_| ()))
    })
    .await
}

#[tokio::test]
async fn a_node_api_on_the_network_needs_mutual_tls() -> Result<()> {
    let mut ex = TestExchange::start(&["a"]).await?;
    ex.stop_node("a").await?;

    // Not loopback, no TLS: refused at start with a usage error naming the key.
    ex.edit_node_config("a", |c| c.api.listen = "0.0.0.0:0".parse().expect("addr"))?;
    let out = tokio::process::Command::new(bin("exchange-node"))
        .arg("--config")
        .arg(ex.node_config("a"))
        .arg("serve")
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("api.listen") && stderr.contains("[api] tls"),
        "{stderr}"
    );

    // With [api] tls: clients must present a certificate from api.tls.ca.
    let ca = Ca::load(&ex.layout_dir().join("ca"))?;
    let dir = ex.root().join("api-tls");
    std::fs::create_dir_all(&dir)?;
    // A server certificate naming localhost and 127.0.0.1 (the shape of the hub's), and a
    // client one, from the exchange CA for the test's sake.
    ca.issue_tls(&Principal::Hub, &[], &[], Validity::days_from_now(1))?
        .write(&dir.join("api.pem"), &dir.join("api.key"))?;
    let client = ca.issue_tls(
        &Principal::Dept("a".parse()?),
        &[],
        &[],
        Validity::days_from_now(1),
    )?;
    ex.edit_node_config("a", |c| {
        c.api.tls = Some(TlsPaths {
            ca: ex_ca(&dir),
            cert: dir.join("api.pem"),
            key: dir.join("api.key"),
            enc_cert: None,
            enc_key: None,
            crl: None,
            protocol: None,
        });
    })?;
    std::fs::copy(ex.layout_dir().join("ca/ca.pem"), ex_ca(&dir))?;
    ex.start_node_unchecked("a").await?;
    let addr = exchange_core::config::read_addr_file(&ex.node_data_dir("a"), "api.addr")?;
    let port = addr.port();

    // Plaintext: refused.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect_timeout(Duration::from_secs(5));
    let refused = match plain.connect().await {
        Ok(ch) => pb::node_client::NodeClient::new(ch)
            .list_inbox(pb::ListInboxRequest {})
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "a plaintext client was served");

    // TLS with a client certificate: served.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca.cert_pem()))
        .identity(tonic::transport::Identity::from_pem(
            &client.cert_pem,
            &client.key_pem,
        ))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    pb::node_client::NodeClient::new(channel)
        .list_inbox(pb::ListInboxRequest {})
        .await?;
    // The clerk's CLI reaches it too, as the department (its [tls] identity from the exchange
    // CA, which api.tls.ca names here).
    ex.cli_ok("a", &["inbox"]).await?;

    // TLS without a client certificate: refused.
    let anonymous = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca.cert_pem()))
        .domain_name("localhost");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(anonymous)?;
    let served = match endpoint.connect().await {
        Ok(ch) => pb::node_client::NodeClient::new(ch)
            .list_inbox(pb::ListInboxRequest {})
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!served, "a client without a certificate was served");
    Ok(())
}

fn ex_ca(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("clients-ca.pem")
}
