//! TLS to the hub's database (`[store] ca_file`, issue 17): the test server runs `ssl = on` with
//! a certificate made at test time (the exchange PKI's, by rcgen) and refuses plaintext. With
//! the right CA the store connects; with another CA the handshake is refused and says why;
//! without a CA the server refuses the plaintext connection, and a URL asking for TLS without
//! a CA is refused before any connection. Skips without Debian's PostgreSQL unless
//! EXCHANGE_REQUIRE_POSTGRES=1.

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use exchange_core::config::StoreBackend;
use exchange_core::store::kv::postgres::{PgTarget, blocking};
use exchange_tests::{
    TestExchange,
    cli::{send, wait_in_inbox},
    postgres::Postgres,
};

/// Connects to `url` with `ca_file` as the store does; `Err` with the store's message.
fn connect(url: &str, ca_file: Option<&Path>) -> Result<(), String> {
    let target = PgTarget::with_ca_file(url, None, ca_file).map_err(|e| e.to_string())?;
    blocking(|| target.connect().map(drop).map_err(|e| e.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reaches_the_database_over_tls_only_with_its_ca() -> Result<()> {
    let Some(pg) = Postgres::for_test()? else {
        return Ok(());
    };
    // The exchange's PKI: its hub certificate names 127.0.0.1; a second exchange's CA did not
    // issue it.
    let ex = TestExchange::setup(&["a"])?;
    let other = TestExchange::setup(&["z"])?;
    let ca: PathBuf = ex.layout_dir().join("ca/ca.pem");
    let wrong_ca = other.layout_dir().join("ca/ca.pem");
    let hub = ex.layout_dir().join("hub");
    pg.require_tls(&hub.join("tls.pem"), &hub.join("tls.key"))
        .await?;
    let url = pg.url();

    connect(&url, Some(&ca)).map_err(anyhow::Error::msg)?;
    let verify_full = format!("{url}?sslmode=verify-full");
    connect(&verify_full, Some(&ca)).map_err(anyhow::Error::msg)?;

    let Err(e) = connect(&url, Some(&wrong_ca)) else {
        anyhow::bail!("a server certificate from another CA must be refused");
    };
    eprintln!("another CA: {e}");
    ensure!(e.contains("certificate"), "{e}");

    let Err(e) = connect(&url, None) else {
        anyhow::bail!("the server refuses plaintext");
    };
    eprintln!("no CA: {e}");
    ensure!(e.contains("no encryption"), "{e}");

    let Err(e) = connect(&verify_full, None) else {
        anyhow::bail!("sslmode=verify-full without [store] ca_file must be refused");
    };
    ensure!(e.contains("ca_file"), "{e}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_refuses_a_database_certificate_its_ca_file_did_not_issue() -> Result<()> {
    let Some(pg) = Postgres::for_test()? else {
        return Ok(());
    };
    let mut ex = TestExchange::setup(&["a", "b"])?;
    let other = TestExchange::setup(&["z"])?;
    let hub = ex.layout_dir().join("hub");
    pg.require_tls(&hub.join("tls.pem"), &hub.join("tls.key"))
        .await?;
    let url = format!("{}?sslmode=verify-full", pg.url());
    let wrong_ca = other.layout_dir().join("ca/ca.pem");
    ex.edit_hub_config(|c| {
        c.store.backend = StoreBackend::Postgres;
        c.store.url = Some(url);
        c.store.ca_file = Some(wrong_ca);
    })?;
    let (ok, out, err) = ex.hub_cli(&["migrate"]).await?;
    ensure!(
        !ok,
        "a database certificate from another CA must be refused: {out}"
    );
    ensure!(err.contains("certificate"), "{err}");

    let ca = ex.layout_dir().join("ca/ca.pem");
    ex.edit_hub_config(|c| c.store.ca_file = Some(ca))?;
    let (ok, out, err) = ex.hub_cli(&["migrate"]).await?;
    ensure!(ok, "migrate over TLS failed: {out}{err}");
    ex.start_hub().await?;
    for d in ["a", "b"] {
        ex.start_node(d).await?;
    }
    let id = send(&ex, "a", "经加密连接存入数据库的公文", &["--to", "b"]).await?;
    wait_in_inbox(&ex, "b", &id).await?;
    Ok(())
}
