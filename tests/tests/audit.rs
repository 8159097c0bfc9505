//! The hub's audit log: complete (every step, refusals with reasons), tamper-evident (a changed,
//! removed or swapped entry is found), and answerable while the hub runs and under load.

use anyhow::{Context, Result};
use exchange_certs::{Ca, Validity};
use exchange_core::{document::SignedDoc, identity::Principal};
use exchange_proto::v1 as pb;
use exchange_tests::{DEADLINE, Draft, TestExchange, bin, eventually, forge, submit, tls_probe};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

const AUDIT: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit");

async fn audit_list(ex: &TestExchange, args: &[&str]) -> Result<Vec<Value>> {
    let mut all = vec!["audit", "list", "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = ex.hub_cli(&all).await?;
    anyhow::ensure!(ok, "audit list failed: {err}");
    Ok(serde_json::from_str::<Value>(&out)?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn kinds(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn draft(to: &str, title: &str) -> Draft {
    Draft {
        to: vec![to.into()],
        title: title.into(),
        urgency: pb::Urgency::Normal,
        parts: vec![("b.txt".into(), b"hello".to_vec())],
        key: String::new(),
    }
}

#[tokio::test]
async fn every_step_of_a_round_trip_is_in_the_log_in_order_while_the_hub_runs() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let mut api = ex.node_api("a").await?;
    let id = submit(&mut api, &draft("b", "audited")).await?;
    eventually("b has it", DEADLINE, || async {
        let inbox = ex.cli_json("b", &["inbox", "--json"]).await?;
        Ok(inbox
            .as_array()
            .is_some_and(|a| !a.is_empty())
            .then_some(()))
    })
    .await?;
    ex.cli_ok("b", &["confirm", &id, "--clerk", "李明"]).await?;
    let entries = eventually("the confirmation in the log", DEADLINE, || async {
        let e = audit_list(&ex, &["--doc", &id]).await?;
        Ok((e.len() >= 4).then_some(e))
    })
    .await?;
    assert_eq!(
        kinds(&entries),
        ["DOCUMENT_ACCEPTED", "QUEUED", "DELIVERED", "EVIDENCE"],
        "{entries:#?}"
    );
    assert_eq!(entries[0]["dept"], "a");
    assert_eq!(entries[2]["dept"], "b");
    assert!(
        entries[3]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Confirmed") && d.contains("李明"))
    );
    let seqs: Vec<u64> = entries.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    // A date is a day of the hub's calendar (+08:00): today holds them, tomorrow nothing.
    let beijing = exchange_core::time::now_ms() + 8 * 3_600_000;
    let day = |ms: i64| exchange_core::time::format_ms(ms)[..10].to_owned();
    let (today, tomorrow) = (day(beijing), day(beijing + 86_400_000));
    let from_today = audit_list(&ex, &["--doc", &id, "--since", &today]).await?;
    assert_eq!(from_today.len(), entries.len(), "since {today}");
    let before_today = audit_list(&ex, &["--doc", &id, "--until", &today]).await?;
    assert!(before_today.is_empty(), "until {today}: {before_today:#?}");
    assert!(
        audit_list(&ex, &["--doc", &id, "--since", &tomorrow])
            .await?
            .is_empty()
    );

    // The administrator's own questions are recorded too.
    let admin = audit_list(&ex, &["--event", "admin-action"]).await?;
    assert!(
        admin.iter().any(|e| e["dept"] == "admin:admin"),
        "{admin:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_handshake_and_a_forged_document_are_logged_with_the_reason() -> Result<()> {
    let ex = TestExchange::start(&["a", "b", "c"]).await?;
    let ca = std::fs::read(ex.layout_dir().join("ca/ca.pem"))?;
    let other = Ca::generate("Rogue CA", Validity::days_from_now(30))?;
    let forged = other.issue_tls(
        &Principal::Dept("a".parse()?),
        &[],
        &[],
        Validity::days_from_now(30),
    )?;
    let verdict = tls_probe(
        ex.hub_addr(),
        &ca,
        Some((forged.cert_pem.as_bytes(), forged.key_pem.as_bytes())),
    )
    .await?;
    assert!(verdict.is_err());

    // A header claiming sender a, signed with c's key, submitted over a's genuine connection.
    let c_key = forge::signing_key(&ex, "c")?;
    let header = forge::header("a", &["b"], "forged", vec![forge::part(b"abc")]);
    let doc = SignedDoc::seal(&header, &c_key)?;
    let mut hub = ex.hub_client_as("a").await?;
    let err = hub
        .submit(pb::SubmitRequest {
            document: Some(doc.wire),
            ..Default::default()
        })
        .await
        .expect_err("forged");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    let refused = eventually("the handshake in the log", DEADLINE, || async {
        let e = audit_list(&ex, &["--event", "handshake-refused"]).await?;
        Ok((!e.is_empty()).then_some(e))
    })
    .await?;
    assert_eq!(
        refused[0]["dept"], "department a",
        "the identity it presented: {refused:#?}"
    );
    assert!(
        refused[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("UnknownCA") || d.contains("certificate")),
        "{refused:#?}"
    );
    assert!(
        refused[0]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
    );

    let refused = audit_list(&ex, &["--event", "document-refused", "--doc", &header.id]).await?;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["dept"], "a");
    assert!(
        refused[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("signed by department c")),
        "{refused:#?}"
    );
    Ok(())
}

/// Runs `audit verify` on a stopped hub's store; returns (ok, stdout + stderr).
async fn verify_stopped(ex: &TestExchange) -> Result<(bool, String)> {
    let (ok, out, err) = ex.hub_cli(&["audit", "verify"]).await?;
    Ok((ok, format!("{out}{err}")))
}

fn edit_log(
    ex: &TestExchange,
    f: impl FnOnce(&mut redb::Table<'_, u64, &[u8]>) -> Result<()>,
) -> Result<()> {
    let db = redb::Database::open(ex.hub_data_dir().join("hub.redb"))?;
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(AUDIT)?;
        f(&mut t)?;
    }
    txn.commit()?;
    Ok(())
}

fn entry(t: &redb::Table<'_, u64, &[u8]>, seq: u64) -> Result<Vec<u8>> {
    Ok(t.get(seq)?.context("no such entry")?.value().to_vec())
}

#[tokio::test]
async fn a_changed_removed_or_swapped_entry_fails_verification_naming_it() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
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
        let t = r.open_table(AUDIT)?;
        t.get(5u64)?.context("entry 5")?.value().to_vec()
    };
    edit_log(&ex, |t| {
        let mut e = entry(t, 5)?;
        let last = e.len() - 1;
        e[last] ^= 0x01;
        t.insert(5, e.as_slice())?;
        Ok(())
    })?;
    let (ok, out) = verify_stopped(&ex).await?;
    assert!(!ok, "a changed entry must fail: {out}");
    assert!(
        out.contains("entry 5") || out.contains("entry 6"),
        "names the entry: {out}"
    );
    edit_log(&ex, |t| {
        t.insert(5, original.as_slice())?;
        Ok(())
    })?;
    assert!(verify_stopped(&ex).await?.0, "restored");

    // Swap entries 3 and 4.
    edit_log(&ex, |t| {
        let (e3, e4) = (entry(t, 3)?, entry(t, 4)?);
        t.insert(3, e4.as_slice())?;
        t.insert(4, e3.as_slice())?;
        Ok(())
    })?;
    let (ok, out) = verify_stopped(&ex).await?;
    assert!(
        !ok && out.contains("entry 3"),
        "a swap is found at entry 3: {out}"
    );
    edit_log(&ex, |t| {
        let (e3, e4) = (entry(t, 3)?, entry(t, 4)?);
        t.insert(3, e4.as_slice())?;
        t.insert(4, e3.as_slice())?;
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

#[tokio::test]
async fn list_verify_and_export_work_while_the_hub_runs_under_load() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let data = ex.node_data_dir("a");
    let load = tokio::spawn(async move {
        let addr = exchange_core::config::read_addr_file(&data, "api.addr")?;
        let mut api = pb::node_client::NodeClient::connect(format!("http://{addr}")).await?;
        for i in 0..150 {
            submit(&mut api, &draft("b", &format!("load {i}"))).await?;
        }
        anyhow::Ok(())
    });
    for _ in 0..3 {
        let (ok, out, err) = ex.hub_cli(&["audit", "verify"]).await?;
        assert!(ok, "verify under load: {out}{err}");
        let entries = audit_list(&ex, &["--dept", "a", "--limit", "5"]).await?;
        assert!(entries.len() <= 5);
    }
    load.await??;
    let (ok, export, err) = ex.hub_cli(&["audit", "export"]).await?;
    assert!(ok, "{err}");
    let file = ex.root().join("audit.jsonl");
    std::fs::write(&file, &export)?;
    let ca = ex.layout_dir().join("ca/ca.pem");
    let out = tokio::process::Command::new(bin("exchange-certs"))
        .arg("verify-audit")
        .arg(&file)
        .arg("--ca")
        .arg(&ca)
        .output()
        .await?;
    assert!(
        out.status.success(),
        "the export verifies on its own: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One changed bit in an exported entry is found. Titles are document content: the log
    // never holds them (docs/security.md).
    assert!(!export.contains("load 7"), "no title in the audit log");
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
    let out = tokio::process::Command::new(bin("exchange-certs"))
        .arg("verify-audit")
        .arg(&file)
        .arg("--ca")
        .arg(&ca)
        .output()
        .await?;
    assert!(
        !out.status.success(),
        "a changed entry in an export is found"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("entry"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn hex_decode(s: &str) -> Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&s[i..i + 2], 16)?))
        .collect()
}
