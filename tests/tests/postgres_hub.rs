//! The hub on PostgreSQL (`[store] backend = "postgres"`, issue 17): `migrate` makes the schema,
//! the real hub binary carries a document to its recipients and their receipts back with every
//! record in the database (no `hub.redb`), a SIGKILL of the hub loses nothing it acknowledged,
//! and the audit chain it wrote verifies. Skips without Debian's PostgreSQL binaries unless
//! EXCHANGE_REQUIRE_POSTGRES=1.

use anyhow::{Result, ensure};
use exchange_tests::{
    TestExchange,
    cli::{send, wait_in_inbox, wait_state},
    postgres::Postgres,
};

#[tokio::test]
async fn a_hub_on_postgres_carries_the_journey_through_a_sigkill() -> Result<()> {
    let Some(pg) = Postgres::for_test()? else {
        return Ok(());
    };
    let mut ex = TestExchange::setup(&["a", "b", "c"])?;
    let url = pg.url();
    ex.edit_hub_config(|c| {
        c.store.backend = exchange_core::config::StoreBackend::Postgres;
        c.store.url = Some(url);
    })?;

    // A hub refuses a database without the schema, naming the command that makes it.
    let (ok, _, err) = ex.hub_cli(&["audit", "verify"]).await?;
    ensure!(!ok, "a database without the schema must be refused");
    ensure!(err.contains("run `migrate` first"), "{err}");
    let (ok, out, err) = ex.hub_cli(&["migrate"]).await?;
    ensure!(ok, "migrate failed: {err}");
    ensure!(out.contains("schema 2 created"), "{out}");
    let (ok, out, _) = ex.hub_cli(&["migrate"]).await?;
    ensure!(ok && out.contains("nothing to do"), "{out}");

    ex.start_hub().await?;
    for d in ["a", "b", "c"] {
        ex.start_node(d).await?;
    }
    let title = "关于数据库高可用的通知";
    let id = send(&ex, "a", title, &["--to", "b", "--cc", "c"]).await?;
    for dept in ["b", "c"] {
        wait_in_inbox(&ex, dept, &id).await?;
    }
    ex.cli_ok("b", &["confirm", &id, "--clerk", "王芳"]).await?;
    wait_state(&ex, "a", &id, "b", "confirmed").await?;

    // Everything acknowledged so far is in PostgreSQL: a SIGKILL of the hub loses none of it.
    ex.kill_hub().await?;
    ensure!(
        !ex.hub_data_dir().join("hub.redb").exists(),
        "a hub on PostgreSQL must not write hub.redb"
    );
    ex.start_hub().await?;
    ex.cli_ok("c", &["reject", &id, "--reason", "不属于本单位职责范围"])
        .await?;
    let c = wait_state(&ex, "a", &id, "c", "rejected").await?;
    ensure!(c["reason"] == "不属于本单位职责范围", "{c}");
    ensure!(
        wait_state(&ex, "a", &id, "b", "confirmed").await?["clerk"] == "王芳",
        "b's receipt survives the restart"
    );

    // The audit chain in the database verifies, and names the document's steps.
    ex.stop_hub().await?;
    let (ok, out, err) = ex.hub_cli(&["audit", "verify"]).await?;
    ensure!(ok, "audit verify failed: {out}{err}");
    let (ok, out, err) = ex.hub_cli(&["audit", "list", "--doc", &id]).await?;
    ensure!(ok, "audit list failed: {err}");
    for step in ["DOCUMENT_ACCEPTED", "DELIVERED", "Confirmed", "Rejected"] {
        ensure!(out.contains(step), "no {step} in:\n{out}");
    }
    Ok(())
}
