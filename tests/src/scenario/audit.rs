//! The hub's audit log, offline and online: the helpers of `tests/audit.rs`, and the scenario
//! bodies that `tests/shangmi_ops.rs` runs under the 国密 profile too.

use anyhow::{Context, Result};
use exchange_core::crypto::Profile;
use exchange_core::store::kv::{ReadTables as _, Table, WriteTables as _};
use exchange_proto::v1 as pb;
use redb::ReadableDatabase;
use serde_json::Value;

use crate::{
    DEADLINE, Draft, TestExchange,
    cli::{entry_when, send, wait_state},
    eventually, submit,
};

/// The hub's audit log: seq (8 bytes, big-endian) → entry.
const AUDIT: Table = Table::new("audit");

/// The log's entries as a test edits them: get, put and delete by seq.
struct Log<'t>(&'t redb::WriteTransaction);

impl Log<'_> {
    fn insert(&mut self, seq: u64, entry: &[u8]) -> Result<()> {
        Ok(self.0.put(AUDIT, &seq.to_be_bytes(), entry)?)
    }
    fn remove(&mut self, seq: u64) -> Result<()> {
        Ok(self.0.delete(AUDIT, &seq.to_be_bytes())?)
    }
}

/// `exchange-hub audit list --json ARGS` (through the running hub, or on its stopped store):
/// the entries.
pub async fn audit_list(ex: &TestExchange, args: &[&str]) -> Result<Vec<Value>> {
    let mut all = vec!["audit", "list", "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = ex.hub_cli(&all).await?;
    anyhow::ensure!(ok, "audit list failed: {err}");
    Ok(serde_json::from_str::<Value>(&out)?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The `kind` of each entry.
pub fn kinds(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The log of one document sent from `sender` to `recipient` and signed for: accepted from the
/// sender, queued, delivered to the recipient, the evidence — in that order.
pub fn assert_round_trip(entries: &[Value], sender: &str, recipient: &str) {
    assert_eq!(
        kinds(entries),
        ["DOCUMENT_ACCEPTED", "QUEUED", "DELIVERED", "EVIDENCE"],
        "{entries:#?}"
    );
    assert_eq!(entries[0]["dept"], sender);
    assert_eq!(entries[2]["dept"], recipient);
}

/// A one-part document to `to`.
pub fn draft(to: &str, title: &str) -> Draft {
    Draft {
        to: vec![to.into()],
        title: title.into(),
        urgency: pb::Urgency::Normal,
        parts: vec![("b.txt".into(), b"hello".to_vec())],
        key: String::new(),
    }
}

/// Runs `audit verify` on a stopped hub's store; returns (ok, stdout + stderr).
async fn verify_stopped(ex: &TestExchange) -> Result<(bool, String)> {
    let (ok, out, err) = ex.hub_cli(&["audit", "verify"]).await?;
    Ok((ok, format!("{out}{err}")))
}

fn edit_log(ex: &TestExchange, f: impl FnOnce(&mut Log<'_>) -> Result<()>) -> Result<()> {
    let db = redb::Database::open(ex.hub_data_dir().join("hub.redb"))?;
    let txn = db.begin_write()?;
    f(&mut Log(&txn))?;
    txn.commit()?;
    Ok(())
}

fn entry(t: &Log<'_>, seq: u64) -> Result<Vec<u8>> {
    t.0.get(AUDIT, &seq.to_be_bytes())?.context("no such entry")
}

/// On a stopped hub with a few documents delivered: the log verifies; a changed, swapped or
/// removed entry fails verification naming it.
pub async fn tamper_is_found(profile: Profile) -> Result<()> {
    let mut ex = TestExchange::start_with_profile(&["a", "b"], profile).await?;
    let mut api = ex.node_api("a").await?;
    for i in 0..3 {
        submit(&mut api, &draft("b", &format!("doc {i}"))).await?;
    }
    eventually("deliveries", DEADLINE, || async {
        let inbox = ex.cli_json("b", &["inbox", "--json"]).await?;
        Ok((inbox.as_array().map(Vec::len) == Some(3)).then_some(()))
    })
    .await?;
    ex.kill_node("a").await?;
    ex.kill_node("b").await?;
    assert_eq!(ex.stop_hub().await?, Some(0));
    let (ok, out) = verify_stopped(&ex).await?;
    assert!(ok, "the untouched log verifies: {out}");
    assert!(out.contains("intact"), "{out}");

    // Change one byte of entry 5 (its detail or id text), then put it back.
    let original = {
        let db = redb::Database::open(ex.hub_data_dir().join("hub.redb"))?;
        let r = db.begin_read()?;
        r.get(AUDIT, &5u64.to_be_bytes())?.context("entry 5")?
    };
    edit_log(&ex, |t| {
        let mut e = entry(t, 5)?;
        let last = e.len() - 1;
        e[last] ^= 0x01;
        t.insert(5, &e)?;
        Ok(())
    })?;
    let (ok, out) = verify_stopped(&ex).await?;
    assert!(!ok, "a changed entry must fail: {out}");
    assert!(
        out.contains("entry 5") || out.contains("entry 6"),
        "names the entry: {out}"
    );
    edit_log(&ex, |t| {
        t.insert(5, &original)?;
        Ok(())
    })?;
    assert!(verify_stopped(&ex).await?.0, "restored");

    // Swap entries 3 and 4.
    edit_log(&ex, |t| {
        let (e3, e4) = (entry(t, 3)?, entry(t, 4)?);
        t.insert(3, &e4)?;
        t.insert(4, &e3)?;
        Ok(())
    })?;
    let (ok, out) = verify_stopped(&ex).await?;
    assert!(
        !ok && out.contains("entry 3"),
        "a swap is found at entry 3: {out}"
    );
    edit_log(&ex, |t| {
        let (e3, e4) = (entry(t, 3)?, entry(t, 4)?);
        t.insert(3, &e4)?;
        t.insert(4, &e3)?;
        Ok(())
    })?;
    assert!(verify_stopped(&ex).await?.0, "restored");

    // Remove entry 7.
    edit_log(&ex, |t| {
        t.remove(7)?;
        Ok(())
    })?;
    let (ok, out) = verify_stopped(&ex).await?;
    assert!(
        !ok && out.contains("entry 7"),
        "a removal is found at entry 7: {out}"
    );
    Ok(())
}

/// `exchange-hub audit list/verify/export` on the stopped hub's store (no administrator's
/// client involved) after a round trip, and the export checked on its own by `exchange-certs
/// verify-audit`: the chain's digest is the profile's (SM3 under shangmi, named in each entry).
pub async fn offline_list_verify_export(profile: Profile) -> Result<()> {
    let mut ex = TestExchange::start_with_profile(&["a", "b"], profile).await?;
    let title = "关于报送年度审计材料的通知";
    let id = send(&ex, "a", title, &["--to", "b"]).await?;
    entry_when(&ex, "b", &id, "delivered", |_| true).await?;
    ex.cli_ok("b", &["confirm", &id, "--clerk", "李明"]).await?;
    wait_state(&ex, "a", &id, "b", "confirmed").await?;
    ex.stop_hub().await?;

    let entries = audit_list(&ex, &["--doc", &id]).await?;
    assert_round_trip(&entries, "a", "b");
    let (ok, out, err) = ex.hub_cli(&["audit", "verify"]).await?;
    assert!(ok && out.contains("intact"), "{out}{err}");
    let (ok, export, err) = ex.hub_cli(&["audit", "export"]).await?;
    assert!(ok, "{err}");
    let named = format!("\"hash_algorithm\":\"{}\"", profile.digest().name());
    assert_eq!(
        export.contains(&named),
        profile == Profile::Shangmi,
        "an SM3 chain names its digest; a SHA-256 one is as before the field: {export}"
    );
    export_verifies_and_a_change_is_found(&ex, &export, title).await
}

/// `export` (the output of `audit export`) verifies on its own with `exchange-certs
/// verify-audit` against the CA; holds no document title (`title`, one that was sent); one
/// changed bit in an exported entry is found, naming the entry.
pub async fn export_verifies_and_a_change_is_found(
    ex: &TestExchange,
    export: &str,
    title: &str,
) -> Result<()> {
    let file = ex.root().join("audit.jsonl");
    std::fs::write(&file, export)?;
    let ca = ex.layout_dir().join("ca/ca.pem");
    let verify_audit = || async {
        let file = file.to_str().context("utf-8 path")?;
        ex.certs(&[
            "verify-audit",
            file,
            "--ca",
            ca.to_str().context("utf-8 path")?,
        ])
        .await
    };
    let (ok, _, err) = verify_audit().await?;
    assert!(ok, "the export verifies on its own: {err}");

    // One changed bit in an exported entry is found. Titles are document content: the log
    // never holds them (docs/security.md).
    assert!(!export.contains(title), "no title in the audit log");
    let lines: Vec<&str> = export.lines().collect();
    let victim = lines
        .iter()
        .position(|l| l.contains("\"entry\"") && l.contains("DOCUMENT_ACCEPTED"))
        .context("an accepted entry")?;
    let mut broken: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let v: Value = serde_json::from_str(&broken[victim])?;
    let mut bytes = hex_decode(v["bytes"].as_str().context("bytes")?)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let mut v = v;
    v["bytes"] = Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect());
    broken[victim] = v.to_string();
    std::fs::write(&file, broken.join("\n"))?;
    let (ok, _, err) = verify_audit().await?;
    assert!(!ok, "a changed entry in an export is found");
    assert!(err.contains("entry"), "{err}");
    Ok(())
}

fn hex_decode(s: &str) -> Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&s[i..i + 2], 16)?))
        .collect()
}
