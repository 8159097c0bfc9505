//! Stored documents are encrypted at rest (issue 16), against the real binaries: no data
//! directory or backup holds a document's title or body in clear; the right key reads
//! everything after a restart; a wrong key is refused, naming the key file, and changes nothing;
//! the key-encryption key rotates online and the rotation is audited.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};
use exchange_core::config::NodeConfig;
use exchange_tests::{
    TestExchange,
    cli::{entry_when, last_line, row_when},
};

#[path = "encryption/damaged.rs"]
mod damaged;

/// In the title (Chinese and ASCII) and, repeated, in the body of the test's documents.
const TITLE_MARKER: &str = "机密标记-TITLE-MARKER-7f3a";
const BODY_MARKER: &str = "BODY-MARKER-c41d-正文标记";

/// A body holding the marker many times: `len` bytes at least (over 256 KiB travels as a blob,
/// below it inline in the stores).
fn body(dir: &Path, name: &str, len: usize) -> Result<PathBuf> {
    let mut text = String::new();
    while text.len() < len {
        text.push_str(BODY_MARKER);
        text.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The marker's encodings an attacker would search a disk for.
fn encodings(marker: &str) -> Vec<(String, Vec<u8>)> {
    let utf16 = |big: bool| -> Vec<u8> {
        marker
            .encode_utf16()
            .flat_map(|u| {
                if big {
                    u.to_be_bytes()
                } else {
                    u.to_le_bytes()
                }
            })
            .collect()
    };
    vec![
        (format!("{marker} (UTF-8)"), marker.as_bytes().to_vec()),
        (format!("{marker} (UTF-16LE)"), utf16(false)),
        (format!("{marker} (UTF-16BE)"), utf16(true)),
    ]
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

/// Files below `dirs` that hold any encoding of either marker.
fn leaks(dirs: &[PathBuf]) -> Result<Vec<String>> {
    let mut all = Vec::new();
    for d in dirs {
        files(d, &mut all)?;
    }
    anyhow::ensure!(all.len() > 3, "the data directories hold files: {all:?}");
    let needles: Vec<_> = encodings(TITLE_MARKER)
        .into_iter()
        .chain(encodings(BODY_MARKER))
        .collect();
    let mut found = Vec::new();
    for f in all {
        let bytes = std::fs::read(&f)?;
        for (what, needle) in &needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                found.push(format!("{} holds {what}", f.display()));
            }
        }
    }
    Ok(found)
}

/// Every file below `dir` with its content, to show that a refused start changed nothing.
fn snapshot(dir: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut all = Vec::new();
    files(dir, &mut all)?;
    all.into_iter()
        .map(|f| Ok((f.clone(), std::fs::read(&f)?)))
        .collect()
}

/// Sends a document whose title and body carry the markers to b: a small body and a large
/// attachment (blob files at every hop), or with `inline` the small body alone (small content
/// travels inside the messages and is kept in the stores themselves).
async fn send_marked(ex: &TestExchange, inline: bool) -> Result<String> {
    let small = body(ex.root(), "small.txt", 2_000)?;
    let large = body(ex.root(), "large.txt", 600_000)?;
    let mut args = vec![
        "send",
        "--to",
        "b",
        "--title",
        TITLE_MARKER,
        "--file",
        small.to_str().context("path")?,
    ];
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
    anyhow::ensure!(ok, "new-kek: {err}");
    Ok(path)
}

/// Runs `exchange-node serve` for `dept` and expects it to refuse to start: returns stderr.
async fn refused_start(ex: &TestExchange, dept: &str) -> Result<String> {
    let run = ex.cli(dept, &["serve"]);
    let (ok, _, err) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .context("the node started instead of refusing")??;
    anyhow::ensure!(!ok, "the node started with a wrong key: {err}");
    Ok(err)
}

/// Points `dept`'s (stopped) node at another key-encryption key file.
fn use_kek(ex: &mut TestExchange, dept: &str, kek: Option<PathBuf>) -> Result<()> {
    ex.edit_node_config(dept, |c: &mut NodeConfig| {
        if let Some(enc) = c.encryption.as_mut() {
            enc.kek = kek;
        }
    })
}

#[tokio::test]
async fn no_data_directory_or_backup_holds_a_documents_title_or_body_in_clear() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    let small = send_marked(&ex, true).await?;
    let id = send_marked(&ex, false).await?;
    entry_when(&ex, "b", &small, "received", |_| true).await?;
    entry_when(&ex, "b", &id, "received", |_| true).await?;
    ex.cli_ok("b", &["confirm", &id]).await?;
    row_when(&ex, "a", &id, "b", "confirmed", |r| {
        r["state"] == "confirmed"
    })
    .await?;
    // The content reads back in clear through the API, from the encrypted stores.
    let saved = ex.root().join("saved");
    ex.cli_ok(
        "b",
        &["show", &id, "--save", saved.to_str().context("path")?],
    )
    .await?;
    let mut got = Vec::new();
    files(&saved, &mut got)?;
    let large = got
        .iter()
        .find(|p| p.ends_with("large.txt"))
        .context("large.txt saved")?;
    assert_eq!(
        std::fs::read(large)?,
        std::fs::read(ex.root().join("large.txt"))?,
        "the attachment reads back byte for byte"
    );

    let backups = ex.root().join("backups");
    let (hub_bak, a_bak, b_bak) = (backups.join("hub"), backups.join("a"), backups.join("b"));
    let (ok, _, err) = ex
        .hub_cli(&["backup", "--out", hub_bak.to_str().context("path")?])
        .await?;
    assert!(ok, "hub backup: {err}");
    for (dept, out) in [("a", &a_bak), ("b", &b_bak)] {
        ex.cli_ok(dept, &["backup", "--out", out.to_str().context("path")?])
            .await?;
    }
    // Stopped, so that everything the daemons hold is on disk.
    for d in ["a", "b"] {
        ex.stop_node(d).await?;
    }
    ex.stop_hub().await?;
    let dirs = vec![
        ex.hub_data_dir(),
        ex.node_data_dir("a"),
        ex.node_data_dir("b"),
        hub_bak,
        a_bak,
        b_bak,
    ];
    let found = leaks(&dirs)?;
    assert!(found.is_empty(), "content in clear on disk: {found:#?}");
    Ok(())
}

#[tokio::test]
async fn the_right_key_reads_everything_and_a_wrong_key_is_refused_changing_nothing() -> Result<()>
{
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    let id = send_marked(&ex, false).await?;
    entry_when(&ex, "b", &id, "received", |_| true).await?;
    ex.stop_node("b").await?;

    let data = ex.node_data_dir("b");
    let before = snapshot(&data)?;
    let wrong = new_kek(&ex, "wrong.kek").await?;
    let mut right = None;
    ex.edit_node_config("b", |c: &mut NodeConfig| {
        let enc = c.encryption.as_mut().expect("the demo is encrypted");
        right = enc.kek.replace(wrong.clone());
    })?;
    let err = refused_start(&ex, "b").await?;
    assert!(
        err.contains("wrong.kek") && err.contains("keyring.json"),
        "the error names the key file and the key ring: {err}"
    );
    let (ok, _, check) = ex.cli("b", &["check-config"]).await?;
    assert!(!ok && check.contains("wrong.kek"), "check-config: {check}");
    assert_eq!(
        snapshot(&data)?,
        before,
        "a refused start changed the data directory"
    );

    // A key file others can read is refused too, naming the fix.
    let loose = new_kek(&ex, "loose.kek").await?;
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    use_kek(&mut ex, "b", Some(loose.clone()))?;
    let err = refused_start(&ex, "b").await?;
    assert!(err.contains("chmod 600"), "{err}");
    // And a key file that is not there, naming it.
    let missing = ex.root().join("missing.kek");
    use_kek(&mut ex, "b", Some(missing.clone()))?;
    let err = refused_start(&ex, "b").await?;
    assert!(err.contains("missing.kek"), "{err}");
    assert_eq!(snapshot(&data)?, before, "a refused start changed nothing");

    // The right key: everything is there.
    use_kek(&mut ex, "b", right.clone())?;
    ex.start_node("b").await?;
    let entry = entry_when(&ex, "b", &id, "readable", |_| true).await?;
    assert_eq!(entry["title"], TITLE_MARKER);
    let saved = ex.root().join("saved");
    ex.cli_ok(
        "b",
        &["show", &id, "--save", saved.to_str().context("path")?],
    )
    .await?;

    // A backup restored under another key fails clearly; under its own key it reads.
    let backup = ex.root().join("b-backup");
    ex.cli_ok("b", &["backup", "--out", backup.to_str().context("path")?])
        .await?;
    ex.stop_node("b").await?;
    std::fs::rename(&data, data.with_extension("before-restore"))?;
    std::fs::rename(&backup, &data)?;
    use_kek(&mut ex, "b", Some(wrong.clone()))?;
    let err = refused_start(&ex, "b").await?;
    assert!(
        err.contains("wrong.kek") && err.contains("keyring.json"),
        "a restore under another key: {err}"
    );
    use_kek(&mut ex, "b", right.clone())?;
    ex.start_node("b").await?;
    let entry = entry_when(&ex, "b", &id, "restored", |_| true).await?;
    assert_eq!(entry["title"], TITLE_MARKER);
    Ok(())
}

#[tokio::test]
async fn the_key_encryption_key_rotates_online_and_the_rotation_is_audited() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    let first = send_marked(&ex, false).await?;
    entry_when(&ex, "b", &first, "received", |_| true).await?;

    // The hub, while it runs.
    let hub_new = new_kek(&ex, "hub-new.kek").await?;
    let (ok, out, err) = ex
        .hub_cli(&["rotate-kek", "--new", hub_new.to_str().context("path")?])
        .await?;
    assert!(ok, "hub rotate-kek: {err}");
    assert!(out.contains("is now wrapped under"), "{out}");
    let (ok, list, err) = ex
        .hub_cli(&["audit", "list", "--json", "--event", "admin-action"])
        .await?;
    assert!(ok, "{err}");
    assert!(
        list.contains("rotate-kek"),
        "the rotation is audited: {list}"
    );
    let hex_key = std::fs::read_to_string(&hub_new)?;
    assert!(
        !list.contains(hex_key.trim()),
        "no key material in the audit log"
    );

    // A node, while it runs; it keeps working meanwhile.
    let b_new = new_kek(&ex, "b-new.kek").await?;
    let out = ex
        .cli_ok(
            "b",
            &["rotate-kek", "--new", b_new.to_str().context("path")?],
        )
        .await?;
    assert!(out.contains("is now wrapped under"), "{out}");
    let second = send_marked(&ex, true).await?;
    entry_when(&ex, "b", &second, "received after the rotation", |_| true).await?;

    // The old key no longer opens b's data directory; the new one does, with everything.
    ex.stop_node("b").await?;
    let err = refused_start(&ex, "b").await?;
    assert!(
        err.contains("keyring.json"),
        "the old key is refused: {err}"
    );
    use_kek(&mut ex, "b", Some(b_new.clone()))?;
    ex.start_node("b").await?;
    for id in [&first, &second] {
        entry_when(&ex, "b", id, "readable with the new key", |e| {
            e["title"] == TITLE_MARKER
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_store_without_its_key_ring_or_its_encryption_section_refuses_to_start() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    let id = send_marked(&ex, true).await?;
    entry_when(&ex, "b", &id, "received", |_| true).await?;
    let backup = ex.root().join("b-backup");
    ex.cli_ok("b", &["backup", "--out", backup.to_str().context("path")?])
        .await?;
    ex.stop_node("b").await?;

    // The key ring is lost: refused, naming it and the backup to restore it from; none is made.
    let ring = ex.node_data_dir("b").join("keyring.json");
    std::fs::remove_file(&ring)?;
    let err = refused_start(&ex, "b").await?;
    assert!(
        err.contains(&ring.display().to_string())
            && err.contains("restore")
            && err.contains("backup"),
        "the error names the missing key ring and the backup: {err}"
    );
    assert!(!ring.exists(), "a refused start made a new key ring");
    let (ok, _, check) = ex.cli("b", &["check-config"]).await?;
    assert!(ok, "check-config does not open the store: {check}");

    // [encryption] removed as well: refused, naming the section.
    let mut section = None;
    ex.edit_node_config("b", |c: &mut NodeConfig| section = c.encryption.take())?;
    let err = refused_start(&ex, "b").await?;
    assert!(err.contains("[encryption]"), "ring and section gone: {err}");
    // The ring restored from the backup, still without [encryption]: refused, as before.
    std::fs::copy(backup.join("keyring.json"), &ring)?;
    let err = refused_start(&ex, "b").await?;
    assert!(err.contains("[encryption]"), "section gone: {err}");

    // Both back: everything reads.
    ex.edit_node_config("b", |c: &mut NodeConfig| c.encryption = section.clone())?;
    ex.start_node("b").await?;
    entry_when(&ex, "b", &id, "readable with the restored key ring", |e| {
        e["title"] == TITLE_MARKER
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_key_encryption_key_rotates_with_the_hub_stopped_and_the_rotation_is_audited()
-> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    let first = send_marked(&ex, true).await?;
    entry_when(&ex, "b", &first, "received", |_| true).await?;
    ex.stop_hub().await?;

    let new = new_kek(&ex, "hub-new.kek").await?;
    let (ok, out, err) = ex
        .hub_cli(&["rotate-kek", "--new", new.to_str().context("path")?])
        .await?;
    assert!(ok, "rotate-kek with the hub stopped: {err}");
    assert!(out.contains("is now wrapped under"), "{out}");
    let fingerprint = out
        .split("key-encryption key ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .context("the report names the new key's fingerprint")?
        .to_owned();

    ex.edit_hub_config(|c| {
        if let Some(enc) = c.encryption.as_mut() {
            enc.kek = Some(new.clone());
        }
    })?;
    ex.start_hub().await?;
    let (ok, list, err) = ex
        .hub_cli(&["audit", "list", "--json", "--event", "admin-action"])
        .await?;
    assert!(ok, "{err}");
    let entries: serde_json::Value = serde_json::from_str(&list)?;
    let rotations: Vec<_> = entries
        .as_array()
        .context("a JSON array")?
        .iter()
        .filter(|e| {
            e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("rotate-kek"))
        })
        .collect();
    assert_eq!(rotations.len(), 1, "one rotation audited: {list}");
    let detail = rotations[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&fingerprint), "{detail}");
    assert!(
        rotations[0]["dept"]
            .as_str()
            .is_some_and(|d| d.starts_with("local:")),
        "recorded as a local action: {list}"
    );
    let (ok, out, err) = ex.hub_cli(&["audit", "verify"]).await?;
    assert!(ok, "audit verify after an offline rotation: {out}{err}");

    // The hub works under the new key: old and new documents reach b.
    let second = send_marked(&ex, true).await?;
    entry_when(&ex, "b", &second, "received after the rotation", |e| {
        e["title"] == TITLE_MARKER
    })
    .await?;
    Ok(())
}
