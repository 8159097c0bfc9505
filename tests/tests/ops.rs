//! The operator's and integrator's surfaces of the real daemons: the standard gRPC health and
//! reflection services (hub over mutual TLS, node API in plaintext), the Prometheus endpoint
//! after a round trip, JSON logs, `check-config` naming the file and the key, and systemd
//! readiness.

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use anyhow::{Context, Result, bail};
use exchange_proto::v1 as pb;
use exchange_tests::{
    DEADLINE, Draft, TestExchange, bin, eventually,
    ops::{hub_metrics_on, metrics_addr, node_channel, node_metrics_on, sample, scrape},
    submit, tls_probe,
};
use prost::Message as _;
use prost_types::FileDescriptorProto;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

/// Health/Check for `service` on `channel`.
async fn health(channel: &Channel, service: &str) -> Result<ServingStatus> {
    let resp = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?
        .into_inner();
    Ok(resp.status())
}

/// The services listed by server reflection (v1) on `channel`.
async fn reflected_services(channel: &Channel) -> Result<Vec<String>> {
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let resp = stream.message().await?.context("no reflection answer")?;
    match resp.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            Ok(l.service.into_iter().map(|s| s.name).collect())
        }
        other => bail!("unexpected reflection answer {other:?}"),
    }
}

/// The file descriptors reflection returns for one request, decoded.
async fn reflect_files(channel: &Channel, req: MessageRequest) -> Result<Vec<FileDescriptorProto>> {
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(req),
    };
    let mut stream = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    match stream.message().await?.and_then(|r| r.message_response) {
        Some(MessageResponse::FileDescriptorResponse(f)) => f
            .file_descriptor_proto
            .iter()
            .map(|b| Ok(FileDescriptorProto::decode(b.as_slice())?))
            .collect(),
        other => bail!("unexpected reflection answer: {other:?}"),
    }
}

/// Checks that reflection knows `symbol` and every file its file imports, transitively, as a
/// tool such as grpcurl asks for them; returns every file name seen.
async fn reflect_closure(channel: &Channel, symbol: &str) -> Result<Vec<String>> {
    let first = reflect_files(channel, MessageRequest::FileContainingSymbol(symbol.into())).await?;
    let mut todo: Vec<String> = first.iter().flat_map(|f| f.dependency.clone()).collect();
    let mut seen: Vec<String> = first.iter().map(|f| f.name().to_owned()).collect();
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        let files = reflect_files(channel, MessageRequest::FileByFilename(name.clone())).await?;
        let file = files
            .first()
            .with_context(|| format!("no descriptor for {name}"))?;
        todo.extend(file.dependency.clone());
        seen.push(name);
    }
    Ok(seen)
}

#[tokio::test]
async fn health_and_reflection_answer_on_the_hub_over_mtls_and_on_the_node_api() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;

    let hub = ex.hub_channel_as("a").await?;
    assert_eq!(health(&hub, "").await?, ServingStatus::Serving);
    assert_eq!(
        health(&hub, "exchange.v1.Hub").await?,
        ServingStatus::Serving
    );
    let services = reflected_services(&hub).await?;
    for s in [
        "exchange.v1.Hub",
        "exchange.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(services.iter().any(|x| x == s), "{s} not in {services:?}");
    }
    // The descriptor set carries the service's file and everything it imports.
    let files = reflect_closure(&hub, "exchange.v1.Admin").await?;
    for f in [
        "exchange/v1/audit.proto",
        "exchange/v1/document.proto",
        "exchange/v1/backup.proto",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} not in {files:?}");
    }
    assert!(!reflect_closure(&hub, "exchange.v1.Hub").await?.is_empty());

    // Without a client certificate there is no TLS session, so no health answer either.
    let ca = std::fs::read(ex.layout_dir().join("ca").join("ca.pem"))?;
    assert!(tls_probe(ex.hub_addr(), &ca, None).await?.is_err());

    let node = node_channel(&ex, "b").await?;
    assert_eq!(
        health(&node, "exchange.v1.Node").await?,
        ServingStatus::Serving
    );
    let services = reflected_services(&node).await?;
    assert!(
        services.iter().any(|s| s == "exchange.v1.Node"),
        "{services:?}"
    );
    let files = reflect_closure(&node, "exchange.v1.Node").await?;
    for f in [
        "exchange/v1/node.proto",
        "exchange/v1/hub.proto",
        "exchange/v1/backup.proto",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} not in {files:?}");
    }
    let unknown = HealthClient::new(node)
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await;
    assert_eq!(
        unknown.map_err(|s| s.code()).err(),
        Some(tonic::Code::NotFound)
    );
    Ok(())
}

/// Waits until `series` in the scrape at `addr` reaches at least `min`; returns the scrape.
async fn scrape_until(addr: std::net::SocketAddr, series: &str, min: f64) -> Result<String> {
    eventually(&format!("{series} >= {min}"), DEADLINE, || async move {
        let text = scrape(addr).await?;
        Ok((sample(&text, series).unwrap_or(0.0) >= min).then_some(text))
    })
    .await
}

fn now_secs() -> f64 {
    exchange_core::time::now_ms() as f64 / 1000.0
}

#[tokio::test]
async fn metrics_scraped_after_a_round_trip_show_the_counts_moved() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    hub_metrics_on(&ex)?;
    ex.start_hub().await?;
    for d in ["a", "b"] {
        node_metrics_on(&mut ex, d)?;
        ex.start_node(d).await?;
    }
    let hub = metrics_addr(&ex.hub_data_dir()).await?;
    let (a, b) = (
        metrics_addr(&ex.node_data_dir("a")).await?,
        metrics_addr(&ex.node_data_dir("b")).await?,
    );
    let before = scrape(hub).await?;
    assert_eq!(
        sample(&before, "exchange_hub_documents_total{step=\"accepted\"}"),
        Some(0.0)
    );

    let mut api = ex.node_api("a").await?;
    let content = vec![7u8; 5000];
    let draft = Draft {
        to: vec!["b".into()],
        title: "指标测试".into(),
        urgency: pb::Urgency::Urgent,
        parts: vec![("正文.txt".into(), content)],
        key: String::new(),
    };
    let id = submit(&mut api, &draft).await?;
    let mut api_b = ex.node_api("b").await?;
    eventually("the document at b", DEADLINE, || {
        let (mut api_b, id) = (api_b.clone(), id.clone());
        async move {
            let inbox = api_b
                .list_inbox(pb::ListInboxRequest {})
                .await?
                .into_inner();
            Ok(inbox.entries.iter().any(|e| e.doc_id == id).then_some(()))
        }
    })
    .await?;
    api_b
        .confirm(pb::ConfirmRequest {
            doc_id: id.clone(),
            clerk: "王芳".into(),
            note: String::new(),
        })
        .await?;

    let text = scrape_until(hub, "exchange_hub_documents_total{step=\"confirmed\"}", 1.0).await?;
    assert_eq!(
        sample(&text, "exchange_hub_documents_total{step=\"accepted\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "exchange_hub_documents_total{step=\"delivered\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "exchange_hub_accepted_bytes_total"),
        Some(5000.0)
    );
    assert_eq!(sample(&text, "exchange_hub_connected_nodes"), Some(2.0));
    assert_eq!(
        sample(&text, "exchange_hub_delivery_seconds_count"),
        Some(1.0)
    );
    assert!(sample(&text, "exchange_store_commit_seconds_count").unwrap_or(0.0) >= 3.0);
    assert_eq!(
        sample(&text, "exchange_store_rows{table=\"documents\"}"),
        Some(1.0)
    );
    assert!(sample(&text, "exchange_store_file_bytes").unwrap_or(0.0) > 0.0);
    // The hub's signing certificate runs a year from the test's setup.
    let year_ahead = now_secs() + 300.0 * 86_400.0;
    let hub_expiry = "exchange_hub_signing_certificate_expiry_timestamp_seconds";
    assert!(
        sample(&text, hub_expiry).is_some_and(|t| t > year_ahead),
        "{text}"
    );

    let text = scrape_until(
        a,
        "exchange_node_recipient_steps_total{step=\"confirmed\"}",
        1.0,
    )
    .await?;
    assert_eq!(
        sample(&text, "exchange_node_documents_sent_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "exchange_node_document_seconds_count{step=\"delivered\"}"
        ),
        Some(1.0)
    );
    let text = scrape(b).await?;
    assert_eq!(
        sample(&text, "exchange_node_documents_received_total"),
        Some(1.0)
    );
    let node_expiry = "exchange_node_signing_certificate_expiry_timestamp_seconds";
    assert!(
        sample(&text, node_expiry).is_some_and(|t| t > year_ahead),
        "{text}"
    );

    // A client with no certificate is refused at the handshake, and counted by reason.
    let ca = std::fs::read(ex.layout_dir().join("ca").join("ca.pem"))?;
    assert!(tls_probe(ex.hub_addr(), &ca, None).await?.is_err());
    let failures = "exchange_hub_tls_handshake_failures_total{reason=\"no_certificate\"}";
    scrape_until(hub, failures, 1.0).await?;

    // `[log] format = "json"`: every line the hub wrote is a JSON object.
    let log = std::fs::read_to_string(ex.root().join("logs").join("hub.log"))?;
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).with_context(|| format!("log line {l}"))?;
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{l}");
    }
    Ok(())
}

/// Runs `<bin> --config <config> check-config`; returns (exit code, stderr).
async fn check_config(bin_name: &str, config: &Path) -> Result<(Option<i32>, String)> {
    let out = tokio::process::Command::new(bin(bin_name))
        .arg("--config")
        .arg(config)
        .arg("check-config")
        .output()
        .await?;
    Ok((out.status.code(), String::from_utf8(out.stderr)?))
}

/// Asserts that check-config refuses `config` with exit 64 and names every one of `needles`.
async fn refused(bin_name: &str, config: &Path, needles: &[&str]) -> Result<()> {
    let (code, err) = check_config(bin_name, config).await?;
    assert_eq!(code, Some(64), "{bin_name} check-config: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in: {err}");
    }
    Ok(())
}

#[tokio::test]
async fn check_config_names_the_file_and_the_key_of_a_broken_config() -> Result<()> {
    let ex = TestExchange::setup(&["a"])?;
    let node = ex.node_config("a").to_owned();
    let hub = ex.layout_dir().join("hub").join("hub.toml");
    let (node_text, hub_text) = (
        std::fs::read_to_string(&node)?,
        std::fs::read_to_string(&hub)?,
    );
    let node_name = node.display().to_string();
    let hub_name = hub.display().to_string();
    assert_eq!(check_config("exchange-node", &node).await?.0, Some(0));
    assert_eq!(check_config("exchange-hub", &hub).await?.0, Some(0));

    // An unknown key.
    std::fs::write(
        &node,
        node_text.replace("[api]\n", "[api]\nlisten_port = 7101\n"),
    )?;
    refused("exchange-node", &node, &[&node_name, "listen_port"]).await?;
    // A bad value.
    std::fs::write(
        &node,
        format!("{node_text}\n[metrics]\nlisten = \"localhost:9710\"\n"),
    )?;
    refused(
        "exchange-node",
        &node,
        &[&node_name, "listen", "localhost:9710"],
    )
    .await?;
    std::fs::write(&hub, format!("{hub_text}\n[log]\nformat = \"xml\"\n"))?;
    refused("exchange-hub", &hub, &[&hub_name, "format", "xml"]).await?;
    // An HTTP/2 setting of 0, which would refuse every call rather than turn a limit off.
    let zero = hub_text.replace(
        "max_concurrent_streams = 128\n",
        "max_concurrent_streams = 0\n",
    );
    assert_ne!(
        zero, hub_text,
        "the hub's config names max_concurrent_streams"
    );
    std::fs::write(&hub, zero)?;
    refused(
        "exchange-hub",
        &hub,
        &[
            &hub_name,
            "limits.max_concurrent_streams: 0 would refuse every call",
        ],
    )
    .await?;
    std::fs::write(&node, &node_text)?;
    std::fs::write(&hub, &hub_text)?;

    // A private key readable by the group, and one that is missing.
    let key = node.parent().context("node dir")?.join("tls.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640))?;
    let key_name = key.display().to_string();
    refused(
        "exchange-node",
        &node,
        &[&node_name, "tls.key: ", &key_name, "chmod 600"],
    )
    .await?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    let signing = hub.parent().context("hub dir")?.join("signing.key");
    std::fs::rename(&signing, signing.with_extension("gone"))?;
    let signing_name = signing.display().to_string();
    refused(
        "exchange-hub",
        &hub,
        &[&hub_name, "signing.key: cannot read", &signing_name],
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn readiness_is_sent_to_systemd_once_the_listener_is_bound() -> Result<()> {
    let ex = TestExchange::setup(&["a"])?;
    let socket_path = ex.root().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path)?;
    socket.set_read_timeout(Some(DEADLINE))?;
    let hub_config = ex.layout_dir().join("hub").join("hub.toml");
    let mut hub = tokio::process::Command::new(bin("exchange-hub"))
        .arg("--config")
        .arg(&hub_config)
        .arg("serve")
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let recv = |socket: std::os::unix::net::UnixDatagram| {
        tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 256];
            let n = socket.recv(&mut buf)?;
            Ok::<_, std::io::Error>((String::from_utf8_lossy(&buf[..n]).into_owned(), socket))
        })
    };
    let (msg, socket) = recv(socket).await??;
    assert_eq!(msg, "READY=1");
    // Ready means bound: the address file is already there.
    assert!(ex.hub_data_dir().join("hub.addr").exists());
    let pid = hub.id().context("hub pid")?;
    exchange_tests::signal(pid, "TERM")?;
    let (msg, _) = recv(socket).await??;
    assert_eq!(msg, "STOPPING=1");
    let status = tokio::time::timeout(Duration::from_secs(30), hub.wait()).await??;
    assert_eq!(status.code(), Some(0));
    Ok(())
}

#[tokio::test]
async fn shell_completions_need_no_config_and_know_the_commands() -> anyhow::Result<()> {
    let out = tokio::process::Command::new(exchange_tests::bin("exchange-node"))
        .args(["completions", "bash"])
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = String::from_utf8(out.stdout)?;
    for word in ["inbox", "confirm", "reject", "status", "--config", "--json"] {
        assert!(script.contains(word), "completion script lacks {word}");
    }
    Ok(())
}
