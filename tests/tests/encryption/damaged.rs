//! A sealed record or content row damaged on disk does not heal by retrying: the item that
//! needs it is reported (data loss) and set aside, and what is queued behind it moves on.

use anyhow::{Context as _, Result};
use exchange_core::signing::Digest;
use exchange_core::store::{
    content::{self, CONTENT},
    kv::{self, ReadTables as _, Table, WriteTables as _},
};
use exchange_tests::{
    DEADLINE, TestExchange,
    cli::{entry_when, inbox, send, wait_state},
    eventually,
};

const DOCUMENTS: Table = Table::new("documents");

/// Flips the last byte (in the GCM tag) of the value at `key` in `table` of the stopped hub's
/// store.
fn damage(ex: &TestExchange, table: Table, key: &[u8]) -> Result<()> {
    damage_in(&ex.hub_data_dir().join("hub.redb"), table, key)
}

/// Flips the last byte of the value at `key` in `table` of the (closed) store at `path`.
fn damage_in(path: &std::path::Path, table: Table, key: &[u8]) -> Result<()> {
    let db = redb::Database::open(path)?;
    let txn = db.begin_write()?;
    let mut value = txn.get(table, key)?.context("the row is stored")?;
    *value.last_mut().context("a non-empty value")? ^= 0x01;
    txn.put(table, key, &value)?;
    txn.commit()?;
    Ok(())
}

/// The body `exchange_tests::cli::send` sent with `title`.
fn body_digest(ex: &TestExchange, title: &str) -> Result<Digest> {
    Ok(Digest::of(&std::fs::read(
        ex.root().join(format!("{title}.ofd")),
    )?))
}

#[tokio::test]
async fn a_damaged_sealed_row_at_the_hub_is_reported_as_data_loss_and_the_queue_moves_on()
-> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    ex.stop_node("b").await?; // the documents wait at the hub
    let bad_record = send(&ex, "a", "damaged record", &["--to", "b"]).await?;
    let bad_content = send(&ex, "a", "damaged inline content", &["--to", "b"]).await?;
    for id in [&bad_record, &bad_content] {
        wait_state(&ex, "a", id, "b", "accepted").await?;
    }
    ex.stop_hub().await?;
    damage(&ex, DOCUMENTS, bad_record.as_bytes())?;
    let digest = body_digest(&ex, "damaged inline content")?;
    damage(&ex, CONTENT, &content::key(bad_content.parse()?, &digest))?;
    ex.start_hub().await?;

    // Queued behind the damaged two, at the same urgency.
    let healthy = send(&ex, "a", "healthy", &["--to", "b"]).await?;
    ex.start_node("b").await?;
    entry_when(
        &ex,
        "b",
        &healthy,
        "delivered past the damaged items",
        |_| true,
    )
    .await?;

    // The sender is told, with hub-signed NOT_DELIVERED naming the data loss.
    for id in [&bad_record, &bad_content] {
        let row = wait_state(&ex, "a", id, "b", "not-delivered").await?;
        let reason = row["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("data loss"), "{id}: {row}");
    }
    let got = inbox(&ex, "b", &[]).await?;
    assert_eq!(got.len(), 1, "only the healthy document reached b: {got:?}");

    // Audited, once each; and not retried: the delivery stream never failed on them.
    let (ok, list, err) = ex
        .hub_cli(&["audit", "list", "--json", "--event", "data-loss"])
        .await?;
    assert!(ok, "{err}");
    let entries: serde_json::Value = serde_json::from_str(&list)?;
    for id in [&bad_record, &bad_content] {
        let n = entries
            .as_array()
            .context("a JSON array")?
            .iter()
            .filter(|e| e["doc_id"] == id.as_str() && e["dept"] == "b")
            .count();
        assert_eq!(n, 1, "{id} audited as data loss once: {list}");
    }
    let log = ex.log("hub");
    assert!(
        !log.contains("delivery stream ended with an error"),
        "the damaged items ended no delivery stream:\n{log}"
    );
    let (ok, out, err) = ex.hub_cli(&["audit", "verify"]).await?;
    assert!(ok, "audit verify: {out}{err}");
    Ok(())
}

const SENT: Table = Table::new("sent");
const OUTBOX: Table = Table::new("outbox");

/// Replaces the outbox entry of the (closed) node store at `path` that names document `id` with
/// bytes that do not decode.
fn garble_outbox_entry(path: &std::path::Path, id: &str) -> Result<()> {
    let db = redb::Database::open(path)?;
    let txn = db.begin_write()?;
    let mut found = None;
    kv::for_each(&txn, OUTBOX, 1024, &mut |(k, v)| {
        if v.windows(id.len()).any(|w| w == id.as_bytes()) {
            found = Some(k);
        }
        Ok(())
    })?;
    let key = found.context("the outbox names the document")?;
    txn.put(OUTBOX, &key, &[0xff, 0xff, 0xff])?;
    txn.commit()?;
    Ok(())
}

#[tokio::test]
async fn damaged_rows_in_a_senders_outbox_are_set_aside_and_the_rest_is_sent() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    ex.stop_hub().await?; // the documents wait in a's outbox
    let bad_record = send(&ex, "a", "damaged sent record", &["--to", "b"]).await?;
    let bad_content = send(&ex, "a", "damaged content", &["--to", "b"]).await?;
    let bad_entry = send(&ex, "a", "damaged outbox entry", &["--to", "b"]).await?;
    ex.stop_node("a").await?;
    let store = ex.node_data_dir("a").join("node.redb");
    damage_in(&store, SENT, bad_record.as_bytes())?;
    let digest = body_digest(&ex, "damaged content")?;
    damage_in(
        &store,
        CONTENT,
        &content::key(bad_content.parse()?, &digest),
    )?;
    garble_outbox_entry(&store, &bad_entry)?;
    ex.start_hub().await?;
    ex.start_node("a").await?;

    // Queued behind the damaged three, at the same urgency: the outbox is not jammed.
    let healthy = send(&ex, "a", "healthy", &["--to", "b"]).await?;
    entry_when(&ex, "b", &healthy, "sent past the damaged items", |_| true).await?;

    // Each damaged item is set aside once, with an error naming it, and never retried. (The
    // log goes on from before the restart, when the hub was down: only what follows counts.)
    let since_restart = |log: String| {
        log.rsplit_once("node API listening")
            .map(|(_, after)| after.to_owned())
            .unwrap_or_default()
    };
    let set_aside = |log: &str| log.matches("outbox item set aside").count();
    eventually("three items set aside", DEADLINE, || async {
        Ok((set_aside(&since_restart(ex.log("a"))) >= 3).then_some(()))
    })
    .await?;
    let log = since_restart(ex.log("a"));
    assert_eq!(set_aside(&log), 3, "each set aside once:\n{log}");
    for id in [&bad_record, &bad_content] {
        assert!(
            log.lines()
                .any(|l| l.contains("outbox item set aside") && l.contains(id.as_str())),
            "{id} named:\n{log}"
        );
    }
    assert!(
        !log.contains("will retry"),
        "no damaged item cost a retry:\n{log}"
    );
    let got = inbox(&ex, "b", &[]).await?;
    assert_eq!(got.len(), 1, "only the healthy document reached b: {got:?}");
    Ok(())
}
