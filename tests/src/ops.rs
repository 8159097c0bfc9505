//! Test support for the operator's surfaces: scraping the metrics endpoint, reading a sample
//! out of it, and a plaintext channel to a node's API (the hub's: `TestExchange::hub_channel_as`).

use std::{net::SocketAddr, path::Path};

use anyhow::{Context, Result, bail};
use exchange_core::config::{HubConfig, NodeConfig, read_addr_file};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use crate::{DEADLINE, TestExchange, eventually};

/// `GET /metrics` on `addr`; the body, after checking the status and content type.
pub async fn scrape(addr: SocketAddr) -> Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of the response head")?;
    if !head.starts_with("HTTP/1.1 200 ") || !head.contains("text/plain; version=0.0.4") {
        bail!("unexpected answer from {addr}: {head}");
    }
    Ok(body.to_owned())
}

/// The value of the sample `series` (the name with its labels exactly as exposed, e.g.
/// `exchange_hub_documents_total{step="accepted"}`), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The metrics address a daemon with data directory `data` reported, once it has.
pub async fn metrics_addr(data: &Path) -> Result<SocketAddr> {
    eventually("the metrics endpoint", DEADLINE, || {
        let r = read_addr_file(data, "metrics.addr").ok();
        async move { Ok(r) }
    })
    .await
}

/// Turns on `[metrics]` (port 0) and `[log] format = "json"` for the hub of a set-up, not yet
/// started exchange.
pub fn hub_metrics_on(ex: &TestExchange) -> Result<()> {
    let path = ex.layout_dir().join("hub").join("hub.toml");
    let mut cfg: HubConfig = toml::from_str(&std::fs::read_to_string(&path)?)?;
    cfg.metrics = Some(exchange_core::config::MetricsSection {
        listen: "127.0.0.1:0".parse()?,
    });
    cfg.log.format = Some(exchange_core::config::LogFormat::Json);
    std::fs::write(&path, toml::to_string_pretty(&cfg)?)?;
    Ok(())
}

/// Turns on `[metrics]` (port 0) for a department's node.
pub fn node_metrics_on(ex: &mut TestExchange, dept: &str) -> Result<()> {
    ex.edit_node_config(dept, |c: &mut NodeConfig| {
        c.metrics = Some(exchange_core::config::MetricsSection {
            listen: "127.0.0.1:0".parse().expect("address"),
        });
    })
}

/// A plaintext channel to a department node's local API.
pub async fn node_channel(ex: &TestExchange, dept: &str) -> Result<Channel> {
    let addr = read_addr_file(&ex.node_data_dir(dept), "api.addr")?;
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}
