//! Several hubs on one PostgreSQL database (issue 17): content and the key ring live in the
//! database, so that any hub serves what a node uploaded to another. Real hub and node binaries,
//! real mutual TLS, a real PostgreSQL, encryption at rest on (every hub with the same KEK and a
//! data directory of its own):
//!
//! - a multi-MiB document uploaded through hub A is delivered through hub B, byte for byte, and
//!   its evidence comes back; the database holds none of its plaintext;
//! - an upload cut by a SIGKILL of hub A mid-`PutBlob` resumes at hub B from the committed
//!   offset;
//! - a backup of a PostgreSQL hub restores into a redb hub that serves the content;
//! - the key ring is in the database (a data directory's `keyring.json` is moved there), a hub
//!   with another KEK is refused naming the fingerprints, and `rotate-kek` rewraps the
//!   database's ring for every hub.
//!
//! Skips without Debian's PostgreSQL binaries unless EXCHANGE_REQUIRE_POSTGRES=1.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use exchange_core::{
    atrest::{Kek, KekSource, Keyring},
    config::{HubConfig, NodeConfig, StoreBackend, read_addr_file},
    signing::Digest,
};
use exchange_proto::v1 as pb;
use exchange_tests::{
    DEADLINE, TestExchange, bin,
    cli::{last_line, wait_in_inbox, wait_state},
    eventually, fetch_content,
    forge::{self, hub_blobs},
    postgres::Postgres,
};
use tokio::process::{Child, Command};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// In the content of every document here: the database must not hold it in clear.
const MARKER: &[u8] = b"CONTENT-MARKER-pg-5e1b-\xe6\xad\xa3\xe6\x96\x87";
/// What a hub moves content in (`exchange_core::blob::CHUNK_SIZE`).
const CHUNK: usize = 256 * 1024;

type HubClient = pb::hub_client::HubClient<Channel>;

/// `len` pseudo-random bytes with the marker every 40,000 bytes.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    for at in (0..len.saturating_sub(MARKER.len())).step_by(40_000) {
        v[at..at + MARKER.len()].copy_from_slice(MARKER);
    }
    v
}

/// The exchange's hub config, on the test's PostgreSQL (schema made by `migrate`).
async fn on_postgres(pg: &Postgres, depts: &[&str]) -> Result<TestExchange> {
    let mut ex = TestExchange::setup(depts)?;
    let url = pg.url();
    ex.edit_hub_config(|c| {
        c.store.backend = StoreBackend::Postgres;
        c.store.url = Some(url);
    })?;
    let (ok, _, err) = ex.hub_cli(&["migrate"]).await?;
    ensure!(ok, "migrate failed: {err}");
    Ok(ex)
}

/// The first hub's config file.
fn hub_a_config(ex: &TestExchange) -> PathBuf {
    ex.hub_data_dir()
        .parent()
        .expect("hub dir")
        .join("hub.toml")
}

/// A config for another hub process beside the first (`<layout>/<name>/hub.toml`): the same
/// identity, database and `[encryption]`, its own data directory and a port of its own, then
/// changed by `f`.
fn another_hub(ex: &TestExchange, name: &str, f: impl FnOnce(&mut HubConfig)) -> Result<PathBuf> {
    let mut cfg: HubConfig = exchange_core::config::load(&hub_a_config(ex))?;
    let dir = ex.layout_dir().join(name);
    std::fs::create_dir_all(&dir)?;
    cfg.hub.data_dir = dir.join("data");
    cfg.hub.listen = "127.0.0.1:0".parse()?;
    f(&mut cfg);
    let path = dir.join("hub.toml");
    std::fs::write(&path, toml::to_string_pretty(&cfg)?)?;
    Ok(path)
}

fn data_dir(config: &Path) -> Result<PathBuf> {
    let cfg: HubConfig = exchange_core::config::load(config)?;
    Ok(cfg.hub.data_dir)
}

/// Starts `exchange-hub serve` with `config` (its log in the harness's `logs/<name>.log`, dumped
/// on failure) and waits until it listens.
async fn spawn_hub(ex: &TestExchange, config: &Path, name: &str) -> Result<(Child, SocketAddr)> {
    let data = data_dir(config)?;
    let _ = std::fs::remove_file(data.join("hub.addr"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ex.root().join("logs").join(format!("{name}.log")))?;
    let child = Command::new(bin("exchange-hub"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let addr = eventually(&format!("{name} to listen"), DEADLINE, || {
        let r = read_addr_file(&data, "hub.addr").ok();
        async move { Ok(r) }
    })
    .await?;
    Ok((child, addr))
}

/// `exchange-hub --config CONFIG ARGS`: (success, stdout and stderr).
async fn hub_cli_at(config: &Path, args: &[&str]) -> Result<(bool, String)> {
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new(bin("exchange-hub"))
            .arg("--config")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("exchange-hub did not exit")??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// A hub client at `addr` presenting `dept`'s node identity.
async fn client_at(ex: &TestExchange, dept: &str, addr: SocketAddr) -> Result<HubClient> {
    let cfg: NodeConfig = exchange_core::config::load(ex.node_config(dept))?;
    let endpoint =
        exchange_core::tls::hub_endpoint(addr, &cfg.tls, cfg.crypto.profile, &cfg.hub.server_name)?;
    Ok(HubClient::new(endpoint.connect().await?)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20))
}

/// `PutBlob` messages for `data[from..]`.
fn chunks(data: &[u8], from: usize) -> Vec<pb::BlobChunk> {
    let digest = Digest::of(data).0.to_vec();
    data[from..]
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, c)| pb::BlobChunk {
            sha256: digest.clone(),
            size: data.len() as u64,
            offset: (from + i * CHUNK) as u64,
            data: c.to_vec(),
        })
        .collect()
}

async fn blob_status(hub: &mut HubClient, digest: &Digest) -> Result<pb::BlobStatusResponse> {
    let req = pb::BlobStatusRequest {
        sha256: digest.0.to_vec(),
        ..Default::default()
    };
    Ok(hub.blob_status(req).await?.into_inner())
}

/// A part's content read back with `GetBlob` as `dept`.
async fn get_blob(hub: &mut HubClient, doc_id: &str, data: &[u8]) -> Result<Vec<u8>> {
    let req = pb::GetBlobRequest {
        doc_id: doc_id.to_owned(),
        sha256: Digest::of(data).0.to_vec(),
        offset: 0,
    };
    let mut stream = hub.get_blob(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        out.extend_from_slice(&m.data);
    }
    Ok(out)
}

/// Rows of every `kv_` table holding the marker in a key or value, as "table" names.
async fn plaintext_in_database(pg: &Postgres) -> Result<(Vec<String>, u64)> {
    let db = pg.connect().await?;
    let tables = db
        .query(
            "SELECT tablename::text FROM pg_tables WHERE tablename LIKE 'kv\\_%'",
            &[],
        )
        .await?;
    let (mut leaks, mut chunk_rows) = (Vec::new(), 0u64);
    for t in tables {
        let name: String = t.get(0);
        for row in db.query(&format!("SELECT k, v FROM {name}"), &[]).await? {
            let (k, v): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
            if name == "kv_blob_chunks" {
                chunk_rows += 1;
            }
            if [k, v]
                .iter()
                .any(|b| b.windows(MARKER.len()).any(|w| w == MARKER))
            {
                leaks.push(name.clone());
            }
        }
    }
    Ok((leaks, chunk_rows))
}

#[tokio::test]
async fn two_hubs_on_one_database_serve_each_others_content_and_resume_uploads() -> Result<()> {
    let Some(pg) = Postgres::for_test()? else {
        return Ok(());
    };
    let mut ex = on_postgres(&pg, &["a", "b"]).await?;
    let hub_b = another_hub(&ex, "hub-b", |_| {})?;
    ex.start_hub().await?;
    ex.start_node("a").await?;
    let (_b, b_addr) = spawn_hub(&ex, &hub_b, "hub-b").await?;

    // A document of several chunks, uploaded through hub A while its recipient is away.
    let body = content(3 * CHUNK + 12_345, 1);
    let body_file = ex.root().join("report.ofd");
    std::fs::write(&body_file, &body)?;
    let file = body_file.to_str().context("utf-8 path")?;
    let out = ex
        .cli_ok(
            "a",
            &["send", "--title", "跨枢纽送达", "--file", file, "--to", "b"],
        )
        .await?;
    let id = last_line(&out);
    wait_state(&ex, "a", &id, "b", "accepted").await?;

    // The recipient, connected only to hub B, receives it from there, byte for byte.
    ex.edit_node_config("b", |c| c.hub.addr = Some(b_addr))?;
    ex.start_node("b").await?;
    wait_in_inbox(&ex, "b", &id).await?;
    let parts = fetch_content(&mut ex.node_api("b").await?, &id).await?;
    ensure!(
        parts.len() == 1 && parts[0].1 == body,
        "the content arrives unchanged"
    );

    // An upload cut by a SIGKILL of hub A mid-PutBlob: three chunks are committed, the stream
    // is still open.
    let second = content(8 * CHUNK + 777, 2);
    let mut at_a = ex.hub_client_as("a").await?;
    let mut at_b = client_at(&ex, "a", b_addr).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let upload = tokio::spawn(async move { at_a.put_blob(ReceiverStream::new(rx)).await });
    for c in chunks(&second, 0).into_iter().take(3) {
        tx.send(c).await?;
    }
    let d2 = Digest::of(&second);
    let committed = eventually("hub A to commit three chunks", DEADLINE, || {
        let mut hub = at_b.clone();
        async move {
            let s = blob_status(&mut hub, &d2).await?;
            Ok((s.have == 3 * CHUNK as u64).then_some(s))
        }
    })
    .await?;
    ensure!(!committed.complete, "{committed:?}");
    ex.kill_hub().await?;
    drop(tx);
    ensure!(upload.await?.is_err(), "the cut upload is not acknowledged");

    // Hub B reports what A committed, and the upload resumes there from that offset.
    let s = blob_status(&mut at_b, &d2).await?;
    ensure!(s.have == 3 * CHUNK as u64 && !s.complete, "{s:?}");
    let from = usize::try_from(s.have)?;
    at_b.put_blob(tokio_stream::iter(chunks(&second, from)))
        .await
        .context("the resumed upload")?;
    let s = blob_status(&mut at_b, &d2).await?;
    ensure!(s.complete && s.have == second.len() as u64, "{s:?}");
    let header = forge::header("a", &["b"], "续传的附件", vec![forge::part(&second)]);
    let key = forge::signing_key(&ex, "a")?;
    let accepted = forge::submit(&mut at_b, forge::sign(&header, &key)).await?;
    ensure!(accepted.acceptance.is_some(), "accepted at hub B");
    wait_in_inbox(&ex, "b", &header.id).await?;
    let parts = fetch_content(&mut ex.node_api("b").await?, &header.id).await?;
    ensure!(
        parts.len() == 1 && parts[0].1 == second,
        "the resumed content arrives unchanged"
    );

    // Evidence as usual: b's receipt reaches the sender (now through hub B, A being gone).
    ex.cli_ok("b", &["confirm", &id, "--clerk", "李明"]).await?;
    ex.stop_node("a").await?;
    ex.edit_node_config("a", |c| c.hub.addr = Some(b_addr))?;
    ex.start_node("a").await?;
    let row = wait_state(&ex, "a", &id, "b", "confirmed").await?;
    ensure!(row["clerk"] == "李明", "{row}");

    // Content is in the database, sealed: no plaintext there, no blob file on either hub.
    let (leaks, chunk_rows) = plaintext_in_database(&pg).await?;
    ensure!(leaks.is_empty(), "plaintext content in {leaks:?}");
    ensure!(chunk_rows >= 4 + 9, "{chunk_rows} chunk rows");
    for dir in [ex.hub_data_dir(), data_dir(&hub_b)?] {
        ensure!(
            hub_blobs(&dir).is_empty(),
            "blob files in {}",
            dir.display()
        );
        ensure!(
            !dir.join(Keyring::FILE_NAME).exists(),
            "the key ring is in the database, not in {}",
            dir.display()
        );
    }

    // A backup of the PostgreSQL hub restores into a redb hub that serves the content.
    let backup = ex.root().join("backup");
    let (ok, out) = hub_cli_at(
        &hub_b,
        &["backup", "--out", backup.to_str().context("path")?],
    )
    .await?;
    ensure!(ok, "backup failed: {out}");
    ensure!(backup.join(Keyring::FILE_NAME).exists(), "{out}");
    let restored = another_hub(&ex, "hub-restored", |c| {
        c.store.backend = StoreBackend::Redb;
        c.store.url = None;
        c.store.password_file = None;
        c.hub.data_dir = backup.clone();
    })?;
    let (_d, d_addr) = spawn_hub(&ex, &restored, "hub-restored").await?;
    ensure!(hub_blobs(&backup).len() == 2, "{:?}", hub_blobs(&backup));
    let mut at_d = client_at(&ex, "b", d_addr).await?;
    ensure!(
        get_blob(&mut at_d, &id, &body).await? == body,
        "the first document"
    );
    ensure!(
        get_blob(&mut at_d, &header.id, &second).await? == second,
        "the resumed document"
    );
    Ok(())
}

#[tokio::test]
async fn the_key_ring_is_shared_in_the_database_and_a_wrong_kek_is_refused() -> Result<()> {
    let Some(pg) = Postgres::for_test()? else {
        return Ok(());
    };
    let mut ex = on_postgres(&pg, &["a", "b"]).await?;
    let cfg: HubConfig = exchange_core::config::load(&hub_a_config(&ex))?;
    let kek_file = cfg
        .encryption
        .as_ref()
        .and_then(|e| e.kek.clone())
        .context("[encryption] kek")?;
    let kek = Kek::load(&KekSource::File(kek_file.clone()))?;

    // A key ring from before, in hub A's data directory: moved into the empty database.
    let data = ex.hub_data_dir();
    std::fs::create_dir_all(&data)?;
    let ring = data.join(Keyring::FILE_NAME);
    let keys = Keyring::open_or_create(&ring, &kek)?;
    let ring_bytes = std::fs::read(&ring)?;
    ex.start_hub().await?;
    ex.start_node("a").await?;
    ensure!(!ring.exists(), "the data directory's ring was moved");
    ensure!(data.join("keyring.json.in-database").exists());
    let db = pg.connect().await?;
    let row = db
        .query_one(
            "SELECT v FROM kv_settings WHERE k = $1",
            &[&b"keyring".as_slice()],
        )
        .await?;
    ensure!(
        row.get::<_, Vec<u8>>(0) == ring_bytes,
        "the database holds that ring"
    );

    // A second hub with an empty data directory and the same KEK opens everything A sealed.
    let id = exchange_tests::cli::send(&ex, "a", "共享密钥环", &["--to", "b"]).await?;
    wait_state(&ex, "a", &id, "b", "accepted").await?;
    let hub_b = another_hub(&ex, "hub-b", |_| {})?;
    let (mut b, _) = spawn_hub(&ex, &hub_b, "hub-b").await?;
    ensure!(!data_dir(&hub_b)?.join(Keyring::FILE_NAME).exists());
    terminate(&mut b).await?;
    let (ok, out) = hub_cli_at(&hub_b, &["audit", "verify"]).await?;
    ensure!(ok, "hub B reads A's sealed records: {out}");

    // A hub with another KEK is refused, naming the fingerprints, and changes nothing.
    let other_kek = ex.layout_dir().join("other.kek");
    let other = Kek::generate(&other_kek)?;
    let hub_c = another_hub(&ex, "hub-c", |c| {
        c.encryption = Some(exchange_core::config::EncryptionSection {
            kek: Some(other_kek.clone()),
            kek_credential: None,
        });
    })?;
    let (ok, out) = hub_cli_at(&hub_c, &["serve"]).await?;
    ensure!(!ok, "a hub with the wrong KEK must not start: {out}");
    for fp in [kek.fingerprint(), other.fingerprint()] {
        ensure!(
            out.contains(fp),
            "the refusal names fingerprint {fp}: {out}"
        );
    }

    // rotate-kek rewraps the database's ring: the new key opens it, the old one no longer.
    ex.stop_node("a").await?;
    ex.stop_hub().await?;
    let new_kek = ex.layout_dir().join("new.kek");
    let new = Kek::generate(&new_kek)?;
    let (ok, out) = hub_cli_at(
        &hub_a_config(&ex),
        &["rotate-kek", "--new", new_kek.to_str().context("path")?],
    )
    .await?;
    ensure!(ok, "rotate-kek failed: {out}");
    ensure!(out.contains(new.fingerprint()), "{out}");
    let (ok, out) = hub_cli_at(&hub_b, &["audit", "verify"]).await?;
    ensure!(
        !ok && out.contains(new.fingerprint()),
        "the old KEK is refused: {out}"
    );
    let hub_d = another_hub(&ex, "hub-d", |c| {
        c.encryption = Some(exchange_core::config::EncryptionSection {
            kek: Some(new_kek.clone()),
            kek_credential: None,
        });
    })?;
    // A key ring of other keys in a hub's data directory is refused: the database's is the
    // store's. Moved away, the hub opens the database's ring with the new KEK.
    let foreign = data_dir(&hub_d)?.join(Keyring::FILE_NAME);
    std::fs::create_dir_all(foreign.parent().context("data dir")?)?;
    Keyring::open_or_create(&foreign, &new)?;
    let (ok, out) = hub_cli_at(&hub_d, &["audit", "verify"]).await?;
    ensure!(
        !ok && out.contains("is not a copy of the key ring in the database"),
        "{out}"
    );
    std::fs::remove_file(&foreign)?;
    let (ok, out) = hub_cli_at(&hub_d, &["audit", "verify"]).await?;
    ensure!(ok, "the new KEK opens the database's ring: {out}");
    let rotated = db
        .query_one(
            "SELECT v FROM kv_settings WHERE k = $1",
            &[&b"keyring".as_slice()],
        )
        .await?
        .get::<_, Vec<u8>>(0);
    let label = Path::new("database");
    let reopened = Keyring::open_bytes(label, &rotated, &Kek::load(&KekSource::File(new_kek))?)?;
    ensure!(
        Keyring::same_keys(&reopened, &keys),
        "the same data keys, rewrapped"
    );
    Ok(())
}

/// SIGTERM, then wait for the exit.
async fn terminate(child: &mut Child) -> Result<()> {
    let pid = child.id().context("exited already")?;
    exchange_tests::signal(pid, "TERM")?;
    tokio::time::timeout(Duration::from_secs(60), child.wait()).await??;
    Ok(())
}
