//! Online backup: `exchange-hub backup` and `exchange-node backup` taken while documents keep
//! arriving, then a restore (stop, replace the data directory, start) that brings back every
//! document acknowledged before the backup, with its content and an intact audit chain. The
//! body of `tests/backup.rs`, run under shangmi by `tests/shangmi_ops.rs`.

use std::{
    collections::BTreeSet,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::{Context, Result, ensure};
use exchange_core::store::kv::{self, ReadTables as _, Table};
use exchange_core::{
    crypto::Profile,
    signing::Digest,
    store::{
        content::{self, CONTENT},
        sealing::{Sealer, slot},
    },
};
use exchange_proto::{store::v1 as st, v1 as pb};
use prost::Message as _;
use redb::ReadableDatabase as _;

use crate::{DEADLINE, Draft, TestExchange, admin_reaches_hub, eventually, submit};

const DOCUMENTS: Table = Table::new("documents");
const SENT: Table = Table::new("sent");

/// Submits documents from a to b until `stop`; every id the node acknowledged goes to `acked`.
fn start_load(
    mut api: pb::node_client::NodeClient<tonic::transport::Channel>,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<()>> {
    tokio::spawn(async move {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let draft = Draft {
                to: vec!["b".into()],
                title: format!("备份期间的公文 {i}"),
                urgency: pb::Urgency::Normal,
                parts: vec![(
                    "正文.txt".into(),
                    format!("content {i}").repeat(50).into_bytes(),
                )],
                key: format!("load-{i}"),
            };
            let id = submit(&mut api, &draft).await?;
            acked
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .push(id);
        }
        Ok(())
    })
}

fn snapshot(acked: &Mutex<Vec<String>>) -> Vec<String> {
    acked.lock().map(|v| v.clone()).unwrap_or_default()
}

/// The ids among `ids` that the hub has accepted, as the sender sees it (the sender records
/// acceptance only after the hub committed it).
async fn accepted_by_hub(ex: &TestExchange, ids: &[String]) -> Result<Vec<String>> {
    let mut api = ex.node_api("a").await?;
    let mut out = Vec::new();
    for id in ids {
        let status = api
            .get_status(pb::GetStatusRequest { doc_id: id.clone() })
            .await?
            .into_inner();
        if status
            .recipients
            .iter()
            .all(|r| r.state() != pb::RecipientState::Queued)
        {
            out.push(id.clone());
        }
    }
    Ok(out)
}

/// The keys of `table` in the redb file at `path` (the daemon owning it is stopped).
fn keys(path: &Path, table: Table) -> Result<BTreeSet<String>> {
    let db = redb::Database::open(path).with_context(|| format!("opening {}", path.display()))?;
    let txn = db.begin_read()?;
    let mut out = BTreeSet::new();
    kv::for_each(&txn, table, 1024, &mut |(k, _)| {
        out.insert(String::from_utf8_lossy(&k).into_owned());
        Ok(())
    })?;
    Ok(out)
}

/// Checks that every part of every document in the hub store at `data` has its content: a blob
/// file, or (a small document) a row of the `content` table.
fn hub_blobs_present(data: &Path, sealer: &Sealer) -> Result<usize> {
    let db = redb::Database::open(data.join("hub.redb"))?;
    let txn = db.begin_read()?;
    let mut rows = Vec::new();
    kv::for_each(&txn, DOCUMENTS, 1024, &mut |row| {
        rows.push(row);
        Ok(())
    })?;
    let mut n = 0;
    for (id, v) in rows {
        let id = String::from_utf8(id)?;
        // The record is sealed at rest (the header holds the title).
        let plain = sealer.open(&id, &slot("documents", id.as_bytes()), &v)?;
        let doc = st::HubDocument::decode(plain.as_ref())?;
        let header =
            pb::DocumentHeader::decode(doc.document.context("document")?.header.as_slice())?;
        for p in header.parts {
            // In clear (`sha256/`) or encrypted at rest (`sealed/`): exchange_core::blob.
            let blob = ["sha256", "sealed"]
                .map(|dir| data.join("blobs").join(dir).join(hex(&p.sha256)))
                .into_iter()
                .find(|b| b.is_file())
                .unwrap_or_else(|| data.join("blobs/sealed").join(hex(&p.sha256)));
            let digest = Digest(p.sha256.as_slice().try_into()?);
            let inline = txn
                .get(CONTENT, &content::key(id.parse()?, &digest))?
                .is_some();
            ensure!(
                inline || blob.is_file(),
                "{id} misses content {}",
                blob.display()
            );
            n += 1;
        }
    }
    Ok(n)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Puts `backup` in place of the data directory `data` (the daemon is stopped).
fn restore(backup: &Path, data: &Path) -> Result<()> {
    std::fs::rename(data, data.with_extension("before-restore"))?;
    std::fs::rename(backup, data)?;
    Ok(())
}

/// `exchange-hub backup` and `exchange-node backup` taken while documents keep arriving, then a
/// restore (stop, replace the data directory, start) that brings back every document
/// acknowledged before the backup, with its content and an intact audit chain, and carries new
/// documents. The hub's backup is taken by the running hub where the administrator's client
/// reaches it ([`admin_reaches_hub`]), else from its stopped store after the load.
pub async fn backup_and_restore(profile: Profile) -> Result<()> {
    let online = admin_reaches_hub(profile);
    let mut ex = TestExchange::start_with_profile(&["a", "b"], profile).await?;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(
        ex.node_api("a").await?,
        Arc::clone(&acked),
        Arc::clone(&stop),
    );

    // Under load: some documents accepted by the hub, more on their way.
    let hub_acked = eventually("documents accepted by the hub", DEADLINE, || async {
        let accepted = accepted_by_hub(&ex, &snapshot(&acked)).await?;
        Ok((accepted.len() >= 10).then_some(accepted))
    })
    .await?;
    let hub_backup = ex.root().join("backups/hub");
    if online {
        hub_backup_into(&ex, &hub_backup).await?;
    }
    let node_acked = snapshot(&acked);
    let node_backup = ex.root().join("backups/a");
    let out = ex
        .cli_ok(
            "a",
            &[
                "backup",
                "--out",
                &node_backup.display().to_string(),
                "--json",
            ],
        )
        .await?;
    let summary: serde_json::Value = serde_json::from_str(&out)?;
    assert!(
        summary["tables"]["sent"].as_u64() >= Some(node_acked.len() as u64),
        "{out}"
    );
    let target = snapshot(&acked).len() + 5;
    eventually("more load after the backups", DEADLINE, || {
        let n = snapshot(&acked).len();
        async move { Ok((n >= target).then_some(())) }
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    load.await??;
    if !online {
        ex.stop_hub().await?;
        hub_backup_into(&ex, &hub_backup).await?;
    }

    // A second backup into a used directory is refused.
    let (ok, _, err) = ex
        .hub_cli(&["backup", "--out", &hub_backup.display().to_string()])
        .await?;
    assert!(!ok && err.contains("not empty"), "{err}");

    // Restore both from their backups.
    ex.stop_node("a").await?;
    if online {
        ex.stop_hub().await?;
    }
    // With the hub stopped, the command copies its store directly.
    let offline = ex.root().join("backups/hub-offline");
    let (ok, _, err) = ex
        .hub_cli(&["backup", "--out", &offline.display().to_string()])
        .await?;
    ensure!(ok, "offline hub backup failed: {err}");
    restore(&hub_backup, &ex.hub_data_dir())?;
    restore(&node_backup, &ex.node_data_dir("a"))?;

    let in_hub = keys(&ex.hub_data_dir().join("hub.redb"), DOCUMENTS)?;
    for id in &hub_acked {
        assert!(
            in_hub.contains(id),
            "hub backup lacks accepted document {id}"
        );
    }
    assert!(hub_blobs_present(&ex.hub_data_dir(), &ex.hub_sealer()?)? >= hub_acked.len());
    let in_node = keys(&ex.node_data_dir("a").join("node.redb"), SENT)?;
    for id in &node_acked {
        assert!(
            in_node.contains(id),
            "node backup lacks acknowledged document {id}"
        );
    }

    ex.start_hub().await?;
    ex.start_node("a").await?;
    let mut api = ex.node_api("a").await?;
    for id in &node_acked {
        api.get_status(pb::GetStatusRequest { doc_id: id.clone() })
            .await
            .with_context(|| format!("status of {id} after the restore"))?;
    }
    // The restored exchange carries new documents.
    let draft = Draft {
        to: vec!["b".into()],
        title: "恢复后的公文".into(),
        urgency: pb::Urgency::VeryUrgent,
        parts: vec![("正文.txt".into(), b"after the restore".to_vec())],
        key: String::new(),
    };
    let id = submit(&mut api, &draft).await?;
    let api_b = ex.node_api("b").await?;
    eventually("the new document at b", DEADLINE, || {
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
    // The restored hub's audit chain is intact, its new entries included.
    let (ok, out, err) = ex.hub_admin_cli(&["audit", "verify"]).await?;
    ensure!(ok, "audit chain of the restored hub: {out}{err}");
    Ok(())
}

/// `exchange-hub backup --out DIR`, which must succeed and say how many documents it copied.
async fn hub_backup_into(ex: &TestExchange, dir: &Path) -> Result<()> {
    let (ok, out, err) = ex
        .hub_cli(&["backup", "--out", &dir.display().to_string()])
        .await?;
    ensure!(ok, "hub backup failed: {err}");
    ensure!(out.contains("documents"), "{out}");
    Ok(())
}
