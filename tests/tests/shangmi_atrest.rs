//! Encryption at rest under the 国密 profile (issue 14), against the real binaries: a shangmi
//! exchange (`demo-setup --profile shangmi`, each data directory with its `[encryption]` KEK)
//! seals document content and records with SM4-GCM — the key rings, the blob headers and the
//! sealed records name the SM suite in their bytes, nothing is in clear — while the journey works
//! as usual, and the key-encryption key rotates with `rotate-kek` on the hub and on a node.
//! Needs binaries built with the `shangmi` features (the harness builds them so when this
//! crate's `shangmi` feature is on).
#![cfg(feature = "shangmi")]

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, ensure};
use exchange_core::store::kv::{self, Table};
use exchange_core::{
    atrest::{BLOB_HEADER_LEN, DataKeys, Suite, VALUE_MAGIC, is_sealed_blob},
    config::{HubConfig, NodeConfig},
    crypto::Profile,
};
use exchange_tests::{
    TestExchange,
    cli::{entry_when, last_line, row_when},
};
use redb::ReadableDatabase as _;

/// In the title and, repeated, in the body of the test's documents.
const TITLE_MARKER: &str = "国密封存-TITLE-MARKER-5e21";
const BODY_MARKER: &str = "BODY-MARKER-9b07-正文标记";

/// The byte after the magic of values and blob headers sealed with SM4-GCM and HKDF-SM3.
const SM4_FORMAT: u8 = 2;

/// A body holding the marker, `len` bytes at least (over 256 KiB travels as a blob file, below
/// it inline in the stores' records).
fn body(dir: &Path, name: &str, len: usize) -> Result<PathBuf> {
    let line = format!("{BODY_MARKER}\n");
    let path = dir.join(name);
    std::fs::write(&path, line.repeat(len / line.len() + 1))?;
    Ok(path)
}

/// Every file below `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        if e.file_type()?.is_dir() {
            files(&e.path(), out)?;
        } else {
            out.push(e.path());
        }
    }
    Ok(())
}

/// Sends a document with the markers from a to b: a small body (inline, in the records) and,
/// unless `inline`, a large attachment (blob files at every hop). Returns its id.
async fn send_marked(ex: &TestExchange, inline: bool) -> Result<String> {
    let small = body(ex.root(), "small.txt", 2_000)?;
    let large = body(ex.root(), "large.txt", 600_000)?;
    let mut args = vec!["send", "--to", "b", "--title", TITLE_MARKER];
    args.extend(["--file", small.to_str().context("path")?]);
    if !inline {
        args.extend(["--file", large.to_str().context("path")?]);
    }
    Ok(last_line(&ex.cli_ok("a", &args).await?))
}

/// A new KEK file in the test's directory.
async fn new_kek(ex: &TestExchange, name: &str) -> Result<PathBuf> {
    let path = ex.root().join(name);
    let (ok, _, err) = ex
        .certs(&["new-kek", "--out", path.to_str().context("path")?])
        .await?;
    ensure!(ok, "new-kek: {err}");
    Ok(path)
}

/// The key ring of `dir` names the SM suite (version 2).
fn assert_sm_keyring(dir: &Path) -> Result<()> {
    let path = dir.join("keyring.json");
    let ring: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    ensure!(
        ring["version"] == 2 && ring["suite"] == Suite::Sm4Gcm.name(),
        "{} does not name the SM suite: {ring}",
        path.display()
    );
    Ok(())
}

/// Checks every blob file of `dir`: each is an encrypted blob whose header names SM4; returns
/// how many there are.
fn sm_blobs(dir: &Path) -> Result<usize> {
    let mut all = Vec::new();
    files(&dir.join("blobs"), &mut all)?;
    let mut count = 0;
    for f in all {
        let bytes = std::fs::read(&f)?;
        if bytes.is_empty() {
            continue;
        }
        ensure!(
            bytes.len() >= BLOB_HEADER_LEN && is_sealed_blob(&bytes),
            "{} is not an encrypted blob",
            f.display()
        );
        ensure!(
            bytes[4] == SM4_FORMAT,
            "{} is sealed with format {}, not SM4-GCM's {SM4_FORMAT}",
            f.display(),
            bytes[4]
        );
        count += 1;
    }
    Ok(count)
}

/// The raw values of `table` in the (stopped) store `file`: checks that each is sealed with
/// SM4 and returns how many there are.
fn sm_records(file: &Path, table: &'static str) -> Result<usize> {
    let db = redb::Database::open(file).with_context(|| format!("opening {}", file.display()))?;
    let txn = db.begin_read()?;
    let mut rows = Vec::new();
    kv::for_each(&txn, Table::new(table), 1024, &mut |row| {
        rows.push(row);
        Ok(())
    })?;
    let mut count = 0;
    for (key, value) in &rows {
        let key = String::from_utf8_lossy(key);
        ensure!(
            DataKeys::is_sealed(value) && value[..4] == VALUE_MAGIC,
            "{table}/{key} in {} is not sealed",
            file.display()
        );
        ensure!(
            value[4] == SM4_FORMAT,
            "{table}/{key} in {} is sealed with format {}, not SM4-GCM's",
            file.display(),
            value[4]
        );
        count += 1;
    }
    Ok(count)
}

/// Files below `dirs` that hold either marker in UTF-8.
fn leaks(dirs: &[PathBuf]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for d in dirs {
        let mut all = Vec::new();
        files(d, &mut all)?;
        for f in all {
            let bytes = std::fs::read(&f)?;
            for marker in [TITLE_MARKER, BODY_MARKER] {
                let needle = marker.as_bytes();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(format!("{} holds {marker}", f.display()));
                }
            }
        }
    }
    Ok(found)
}

#[tokio::test]
async fn a_shangmi_exchange_seals_content_and_records_with_sm4_and_rotates_its_kek() -> Result<()> {
    let mut ex = TestExchange::start_with_profile(&["a", "b"], Profile::Shangmi).await?;
    let hub_cfg: HubConfig = exchange_core::config::load(&ex.layout_dir().join("hub/hub.toml"))?;
    ensure!(hub_cfg.crypto.profile == Profile::Shangmi && hub_cfg.encryption.is_some());
    let node_cfg: NodeConfig = exchange_core::config::load(ex.node_config("b"))?;
    ensure!(node_cfg.crypto.profile == Profile::Shangmi && node_cfg.encryption.is_some());

    // The journey: a blob-sized document and an inline one, received, signed for, read back.
    let id = send_marked(&ex, false).await?;
    let small = send_marked(&ex, true).await?;
    for doc in [&id, &small] {
        entry_when(&ex, "b", doc, "received", |e| e["title"] == TITLE_MARKER).await?;
    }
    ex.cli_ok("b", &["confirm", &id, "--clerk", "李明"]).await?;
    row_when(&ex, "a", &id, "b", "confirmed", |r| {
        r["state"] == "confirmed"
    })
    .await?;
    let saved = ex.root().join("saved");
    ex.cli_ok(
        "b",
        &["show", &id, "--save", saved.to_str().context("path")?],
    )
    .await?;
    assert_eq!(
        std::fs::read(saved.join("large.txt"))?,
        std::fs::read(ex.root().join("large.txt"))?,
        "the attachment reads back byte for byte from SM4-sealed blobs"
    );

    // KEK rotation, on the running hub and on the running node b.
    let hub_new = new_kek(&ex, "hub-new.kek").await?;
    let (ok, out, err) = ex
        .hub_cli(&["rotate-kek", "--new", hub_new.to_str().context("path")?])
        .await?;
    ensure!(ok, "hub rotate-kek under shangmi: {err}");
    ensure!(out.contains("is now wrapped under"), "{out}");
    let b_new = new_kek(&ex, "b-new.kek").await?;
    let out = ex
        .cli_ok(
            "b",
            &["rotate-kek", "--new", b_new.to_str().context("path")?],
        )
        .await?;
    ensure!(out.contains("is now wrapped under"), "{out}");
    let (ok, list, err) = ex
        .hub_cli(&["audit", "list", "--json", "--event", "admin-action"])
        .await?;
    ensure!(
        ok && list.contains("rotate-kek"),
        "the rotation is audited: {list}{err}"
    );
    // The report's fingerprint is the SM3 one: what the shangmi key ring records.
    let ring: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ex.node_data_dir("b").join("keyring.json"))?)?;
    let fingerprint = ring["kek_fingerprint"].as_str().context("a fingerprint")?;
    ensure!(out.contains(fingerprint), "{fingerprint} in {out}");
    let after = send_marked(&ex, true).await?;
    entry_when(&ex, "b", &after, "received after the rotations", |_| true).await?;

    // Everything stopped, so that all the daemons hold is on disk.
    for d in ["a", "b"] {
        ex.stop_node(d).await?;
    }
    ex.stop_hub().await?;
    let dirs = [
        ex.hub_data_dir(),
        ex.node_data_dir("a"),
        ex.node_data_dir("b"),
    ];
    for dir in &dirs {
        assert_sm_keyring(dir)?;
        let blobs = sm_blobs(dir)?;
        ensure!(
            blobs >= 1,
            "{} holds SM4-sealed blobs: {blobs}",
            dir.display()
        );
    }
    let hub_records = sm_records(&ex.hub_data_dir().join("hub.redb"), "documents")?;
    ensure!(
        hub_records == 3,
        "three SM4-sealed documents at the hub: {hub_records}"
    );
    let sent = sm_records(&ex.node_data_dir("a").join("node.redb"), "sent")?;
    let inbox = sm_records(&ex.node_data_dir("b").join("node.redb"), "inbox")?;
    ensure!(
        sent == 3 && inbox == 3,
        "sent at a: {sent}, inbox at b: {inbox}"
    );
    let found = leaks(&dirs)?;
    ensure!(found.is_empty(), "content in clear on disk: {found:#?}");
    // The hub's keys, as its (shangmi) config opens them, are SM keys, and the old KEK no
    // longer opens them.
    ensure!(
        ex.hub_sealer().is_err(),
        "the hub's old KEK still opens its ring after the rotation"
    );
    ex.edit_hub_config(|c| {
        if let Some(enc) = c.encryption.as_mut() {
            enc.kek = Some(hub_new.clone());
        }
    })?;
    let sealer = ex.hub_sealer()?;
    let keys = sealer.keys().context("the hub is encrypted")?;
    assert_eq!(keys.suite(), Suite::Sm4Gcm);

    // Restarted under the new keys, everything reads: old and new documents, the content.
    ex.edit_node_config("b", |c| {
        if let Some(enc) = c.encryption.as_mut() {
            enc.kek = Some(b_new.clone());
        }
    })?;
    ex.start_hub().await?;
    for d in ["a", "b"] {
        ex.start_node(d).await?;
    }
    for doc in [&id, &small, &after] {
        entry_when(&ex, "b", doc, "readable with the new KEK", |e| {
            e["title"] == TITLE_MARKER
        })
        .await?;
    }
    let again = ex.root().join("saved-again");
    ex.cli_ok(
        "b",
        &["show", &id, "--save", again.to_str().context("path")?],
    )
    .await?;
    assert_eq!(
        std::fs::read(again.join("large.txt"))?,
        std::fs::read(ex.root().join("large.txt"))?
    );
    Ok(())
}
