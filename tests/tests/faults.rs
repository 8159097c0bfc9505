//! Faults that delay documents but never lose or duplicate them: the hub away for a while, a
//! backlog with a very urgent document behind it, SIGTERM, a damaged store, a transfer cut off
//! midway, a full disk.

use anyhow::{Context, Result, bail};
use exchange_proto::v1 as pb;
use exchange_tests::{
    DEADLINE, Draft, TestExchange, bin, eventually, fetch_content, random_file, submit,
};

fn draft(to: &str, title: &str, urgency: pb::Urgency, body: Vec<u8>) -> Draft {
    Draft {
        to: vec![to.to_owned()],
        title: title.to_owned(),
        urgency,
        parts: vec![("body.bin".into(), body)],
        key: String::new(),
    }
}

/// The sender's view of one recipient's state.
async fn state_at_sender(ex: &TestExchange, sender: &str, id: &str) -> Result<String> {
    let s = ex.cli_json(sender, &["status", id, "--json"]).await?;
    Ok(s["recipients"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn wait_all(ex: &TestExchange, sender: &str, ids: &[String], state: &str) -> Result<()> {
    for id in ids {
        eventually(&format!("{id} {state}"), DEADLINE, || async {
            Ok((state_at_sender(ex, sender, id).await? == state).then_some(()))
        })
        .await?;
    }
    Ok(())
}

/// Document ids in the order `dept`'s node recorded events of `kind` (and `state`, if given).
async fn event_order(
    ex: &TestExchange,
    dept: &str,
    kind: pb::NodeEventKind,
    state: Option<pb::RecipientState>,
    n: usize,
) -> Result<Vec<String>> {
    let mut api = ex.node_api(dept).await?;
    let mut stream = api
        .watch_events(pb::WatchEventsRequest { after_seq: 0 })
        .await?
        .into_inner();
    let mut ids = Vec::new();
    while ids.len() < n {
        let ev = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .context("waiting for events")??
            .context("event stream ended")?;
        if ev.kind == i32::from(kind) && state.is_none_or(|s| ev.state == i32::from(s)) {
            ids.push(ev.doc_id);
        }
    }
    Ok(ids)
}

#[tokio::test]
async fn with_the_hub_away_nodes_keep_accepting_and_everything_drains_when_it_returns() -> Result<()>
{
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    ex.kill_hub().await?;
    let mut api = ex.node_api("a").await?;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            submit(
                &mut api,
                &draft(
                    "b",
                    &format!("during the outage {i}"),
                    pb::Urgency::Normal,
                    vec![i as u8; 5000],
                ),
            )
            .await?,
        );
    }
    for id in &ids {
        assert_eq!(
            state_at_sender(&ex, "a", id).await?,
            "queued",
            "nothing reaches a hub that is down"
        );
    }
    ex.start_hub().await?;
    wait_all(&ex, "a", &ids, "delivered").await?;
    // The backlog went to the hub several documents per call.
    assert!(
        ex.log("a").contains("submitted together (SubmitBatch)"),
        "{}",
        ex.log("a")
    );
    let inbox = ex.cli_json("b", &["inbox", "--json"]).await?;
    assert_eq!(
        inbox.as_array().map(Vec::len),
        Some(20),
        "each exactly once: {inbox}"
    );
    Ok(())
}

#[tokio::test]
async fn a_very_urgent_document_overtakes_a_backlog_of_normal_ones() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    ex.kill_node("b").await?;
    ex.kill_hub().await?;
    let mut api = ex.node_api("a").await?;
    let mut normal = Vec::new();
    for i in 0..30 {
        normal.push(
            submit(
                &mut api,
                &draft(
                    "b",
                    &format!("routine {i}"),
                    pb::Urgency::Normal,
                    vec![1; 2000],
                ),
            )
            .await?,
        );
    }
    let urgent = submit(
        &mut api,
        &draft(
            "b",
            "特急: flood warning",
            pb::Urgency::VeryUrgent,
            vec![2; 2000],
        ),
    )
    .await?;

    // The sender's outbox: the very urgent one goes to the hub first.
    ex.start_hub().await?;
    let accepted = event_order(
        &ex,
        "a",
        pb::NodeEventKind::Recipient,
        Some(pb::RecipientState::Accepted),
        31,
    )
    .await?;
    assert_eq!(
        accepted.first(),
        Some(&urgent),
        "outbox order: {accepted:?}"
    );

    // The hub's queue for b: very urgent first, behind at most one item in flight.
    ex.start_node("b").await?;
    let received = event_order(&ex, "b", pb::NodeEventKind::Received, None, 31).await?;
    let pos = received
        .iter()
        .position(|id| id == &urgent)
        .context("never received")?;
    assert!(
        pos <= 1,
        "the very urgent document arrived at position {pos}: {received:?}"
    );
    Ok(())
}

/// The hub keeps at most 16 deliveries of large documents (downloads) in flight to a node,
/// among up to 64 items: 20 large ones queued for an offline node all arrive once, the last four
/// after slots free up, and a 特急 one queued behind them is not held back by the downloads.
#[tokio::test]
async fn more_large_documents_than_may_be_in_flight_all_arrive_once() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    ex.stop_node("b").await?;
    let mut api = ex.node_api("a").await?;
    let mut large = Vec::new();
    for i in 0..20u8 {
        // Over the inline limit (256 KiB): uploaded, and downloaded by b with GetBlob.
        let body = vec![i; 300 * 1024];
        large.push(
            submit(
                &mut api,
                &draft("b", &format!("large {i}"), pb::Urgency::Normal, body),
            )
            .await?,
        );
    }
    wait_all(&ex, "a", &large, "accepted").await?;
    let urgent = submit(
        &mut api,
        &draft("b", "特急: the dam", pb::Urgency::VeryUrgent, vec![3; 1000]),
    )
    .await?;
    wait_all(&ex, "a", std::slice::from_ref(&urgent), "accepted").await?;

    ex.start_node("b").await?;
    let received = event_order(&ex, "b", pb::NodeEventKind::Received, None, 21).await?;
    assert_eq!(
        received.first(),
        Some(&urgent),
        "the very urgent document is pushed first: {received:?}"
    );
    let mut got = received.clone();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 21, "each exactly once: {received:?}");
    wait_all(&ex, "a", &large, "delivered").await?;
    let mut b = ex.node_api("b").await?;
    for (i, id) in large.iter().enumerate() {
        let content = fetch_content(&mut b, id).await?;
        let body = vec![u8::try_from(i)?; 300 * 1024];
        assert_eq!(
            content,
            vec![("body.bin".to_owned(), body)],
            "content of {id}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_hub_and_nodes_cleanly_with_exit_code_zero() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    let mut api = ex.node_api("a").await?;
    let id = submit(
        &mut api,
        &draft("b", "before shutdown", pb::Urgency::Normal, vec![3; 100]),
    )
    .await?;
    wait_all(&ex, "a", std::slice::from_ref(&id), "delivered").await?;
    // A department system following events must not hold the node up.
    let _watching = api
        .watch_events(pb::WatchEventsRequest { after_seq: 0 })
        .await?
        .into_inner();
    assert_eq!(ex.stop_node("a").await?, Some(0));
    assert_eq!(ex.stop_node("b").await?, Some(0));
    assert_eq!(ex.stop_hub().await?, Some(0));
    // And they come back with everything.
    ex.start_hub().await?;
    ex.start_node("a").await?;
    ex.start_node("b").await?;
    assert_eq!(state_at_sender(&ex, "a", &id).await?, "delivered");
    Ok(())
}

/// Runs `exchange-node serve` on `dept`'s config and returns (exit code, stderr).
async fn serve_and_fail(ex: &TestExchange, dept: &str) -> Result<(Option<i32>, String)> {
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(bin("exchange-node"))
            .arg("--config")
            .arg(ex.node_config(dept))
            .arg("serve")
            .output(),
    )
    .await
    .context("serve did not exit on a bad store")??;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn a_corrupted_or_foreign_store_is_refused_at_start_with_a_clear_message() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.start_hub().await?;
    ex.stop_hub().await?;

    let data = ex.node_data_dir("a");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("node.redb"), vec![0x5a; 64 * 1024])?;
    let (code, err) = serve_and_fail(&ex, "a").await?;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("opening the node store"),
        "names the store: {err}"
    );
    assert!(!err.contains("panicked"), "no panic: {err}");

    std::fs::copy(ex.hub_data_dir().join("hub.redb"), data.join("node.redb"))?;
    let (code, err) = serve_and_fail(&ex, "a").await?;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("not a node store"),
        "says it is foreign: {err}"
    );
    Ok(())
}

#[tokio::test]
async fn an_upload_cut_off_midway_resumes_where_it_stopped() -> Result<()> {
    const SIZE: usize = 96 * 1024 * 1024;
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    ex.kill_node("b").await?;
    let big = random_file(ex.root(), "big.bin", SIZE, 11)?;
    let sha = exchange_tests::sha256_file(&big)?;
    // Encrypted at rest (the demo setup makes a KEK) or in clear: exchange_core::blob.
    let partials = ["blobs/sealed-partial", "blobs/partial"].map(|d| ex.hub_data_dir().join(d));
    let partial_len = || {
        partials
            .iter()
            .find_map(|d| std::fs::metadata(d.join(&sha)).ok())
            .map_or(0, |m| m.len())
    };
    let out = ex
        .cli_ok(
            "a",
            &[
                "send",
                "--to",
                "b",
                "--title",
                "large",
                "--file",
                big.to_str().context("path")?,
            ],
        )
        .await?;
    let id = out.lines().last().context("no id")?.trim().to_owned();

    // Cut the hub off while the content is partly on its disk: several whole chunks (a resume
    // starts after the last complete one, so a file holding less than one resumes from 0), and
    // not yet half.
    const SOME: u64 = 4 * 1024 * 1024;
    let held = eventually("a partial upload at the hub", DEADLINE, || {
        let len = partial_len();
        async move { Ok((len >= SOME && len < SIZE as u64 / 2).then_some(len)) }
    })
    .await?;
    ex.kill_hub().await?;
    let kept = partial_len();
    assert!(kept >= held, "the partial content survives the kill");
    ex.start_hub().await?;
    wait_all(&ex, "a", std::slice::from_ref(&id), "accepted").await?;

    let log = std::fs::read_to_string(ex.root().join("logs/hub.log"))?;
    let line = log
        .lines()
        .rfind(|l| l.contains("content received") && l.contains(&sha))
        .context("no 'content received' log line")?;
    let field = |name: &str| -> Result<u64> {
        let v = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .context("field missing")?;
        Ok(v.parse()?)
    };
    let (resumed_from, received) = (field("resumed_from")?, field("received")?);
    assert!(resumed_from > 0, "resumed, not restarted: {line}");
    assert_eq!(resumed_from + received, SIZE as u64, "{line}");
    eprintln!(
        "resumed at {resumed_from} of {SIZE} bytes: {received} bytes sent again instead of {SIZE}"
    );

    ex.start_node("b").await?;
    wait_all(&ex, "a", std::slice::from_ref(&id), "delivered").await?;
    let mut api = ex.node_api("b").await?;
    let got = fetch_content(&mut api, &id).await?;
    assert_eq!(
        exchange_core::signing::Digest::of(&got[0].1).to_hex(),
        sha,
        "byte-identical"
    );
    Ok(())
}

/// A small tmpfs for the full-disk test; `None` (with the reason printed) where mounting is not
/// possible (not root, or no permission in this sandbox).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, mib: u32) -> Option<Self> {
        std::fs::create_dir_all(dir).ok()?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk(dir.to_owned())),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a small tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    /// Fills the disk, then frees `leave` bytes; returns the filler's path.
    fn fill(&self, leave: u64) -> Result<std::path::PathBuf> {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let chunk = vec![0u8; 1 << 20];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => bail!("filling the disk: {e}"),
            }
        }
        let len = std::fs::metadata(&path)?.len();
        f.set_len(len.saturating_sub(leave))?;
        Ok(path)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_new_work_keeps_what_was_acknowledged_and_recovers() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    let Some(disk) = SmallDisk::mount(&ex.root().join("small"), 48) else {
        return Ok(());
    };
    ex.edit_node_config("a", |c| c.node.data_dir = disk.0.join("data"))?;
    ex.start_hub().await?;
    ex.start_node("a").await?;
    ex.start_node("b").await?;
    let mut api = ex.node_api("a").await?;

    let filler = disk.fill(4 << 20)?;
    let before = submit(
        &mut api,
        &draft("b", "fits", pb::Urgency::Normal, vec![1; 10_000]),
    )
    .await?;
    let err = submit(
        &mut api,
        &draft(
            "b",
            "too big for what is left",
            pb::Urgency::Normal,
            vec![2; 12 << 20],
        ),
    )
    .await
    .expect_err("disk is full");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("disk full"), "{}", err.message());

    disk.fill(0)?; // now completely full: even a small document cannot be committed
    let err = submit(
        &mut api,
        &draft("b", "tiny", pb::Urgency::Normal, vec![3; 100]),
    )
    .await
    .expect_err("disk is full");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(
        ex.cli_json("a", &["inbox", "--json"]).await.is_ok(),
        "the node stays up and answers"
    );

    std::fs::remove_file(&filler)?;
    let after = eventually("submissions accepted again", DEADLINE, || {
        let mut api = api.clone();
        async move {
            Ok(submit(
                &mut api,
                &draft("b", "after", pb::Urgency::Normal, vec![4; 12 << 20]),
            )
            .await
            .ok())
        }
    })
    .await?;
    wait_all(&ex, "a", &[before, after], "delivered").await?;
    let inbox = ex.cli_json("b", &["inbox", "--json"]).await?;
    assert_eq!(
        inbox.as_array().map(Vec::len),
        Some(2),
        "exactly the two acknowledged documents: {inbox}"
    );
    Ok(())
}

#[tokio::test]
async fn a_document_over_the_size_limit_is_refused_at_submission_naming_the_limit() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.edit_node_config("a", |c| c.node.max_document_bytes = 1 << 20)?;
    ex.start_hub().await?;
    ex.start_node("a").await?;
    let mut api = ex.node_api("a").await?;
    let err = submit(
        &mut api,
        &draft("b", "too big", pb::Urgency::Normal, vec![0; (1 << 20) + 1]),
    )
    .await
    .expect_err("over the limit");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("1048576") && err.message().contains("max_document_bytes"),
        "{}",
        err.message()
    );
    let sent = submit(
        &mut api,
        &draft("b", "just fits", pb::Urgency::Normal, vec![0; 1 << 20]),
    )
    .await?;
    assert_eq!(sent.len(), 36);
    Ok(())
}

#[tokio::test]
async fn the_same_submission_twice_is_one_document_and_a_changed_one_is_a_conflict() -> Result<()> {
    use exchange_tests::forge;
    let ex = TestExchange::start(&["a", "b"]).await?;

    // Node API: the same idempotency key returns the same id, and one document is delivered.
    let mut api = ex.node_api("a").await?;
    let mut d = draft(
        "b",
        "retried after a timeout",
        pb::Urgency::Normal,
        vec![5; 1000],
    );
    d.key = "oa-42".into();
    let first = submit(&mut api, &d).await?;
    assert_eq!(submit(&mut api, &d).await?, first, "same key, same id");

    // Hub: the same signed document twice gets the same acceptance; the same id with other
    // content is refused as a conflict.
    let key = forge::signing_key(&ex, "a")?;
    let mut hub = ex.hub_client_as("a").await?;
    let body = b"hello";
    forge::put_blob(
        &mut hub,
        exchange_core::signing::Digest::of(body),
        body.len() as u64,
        vec![body.to_vec()],
    )
    .await?;
    let header = forge::header("a", &["b"], "sent twice", vec![forge::part(body)]);
    let once = forge::submit(&mut hub, forge::sign(&header, &key)).await?;
    let twice = forge::submit(&mut hub, forge::sign(&header, &key)).await?;
    assert_eq!(
        once.acceptance, twice.acceptance,
        "answered with the same acceptance"
    );
    let mut changed = header.clone();
    if let Some(m) = changed.metadata.as_mut() {
        m.title = "same id, other content".into();
    }
    let err = forge::submit(&mut hub, forge::sign(&changed, &key))
        .await
        .expect_err("a conflict");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");

    eventually("both documents at b", DEADLINE, || async {
        let inbox = ex.cli_json("b", &["inbox", "--json"]).await?;
        Ok((inbox.as_array().map(Vec::len) == Some(2)).then_some(inbox))
    })
    .await?;
    let inbox = ex.cli_json("b", &["inbox", "--json"]).await?;
    let ids: Vec<&str> = inbox
        .as_array()
        .context("inbox")?
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert!(
        ids.contains(&first.as_str()) && ids.contains(&header.id.as_str()),
        "each once: {ids:?}"
    );
    Ok(())
}
