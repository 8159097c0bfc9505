//! The real hub on a test PostgreSQL under steady load, for the failover and backup tests: an
//! exchange whose `[store] url` is given (one server, or several in a multi-host URL), a sender
//! submitting documents one after another, what its node has been told the hub accepted, and
//! the end state every acknowledged document must reach (delivered once, receipt back).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use exchange_core::config::{StoreBackend, read_addr_file};
use exchange_proto::v1 as pb;
use tokio::task::JoinHandle;

use super::Postgres;
use crate::{DEADLINE, Draft, TestExchange, eventually, submit};

/// How often the steady sender submits: about 25 documents a second, a load the hub carries on
/// two cores without falling behind, so that every wait below measures the store, not a backlog.
const SEND_EVERY: Duration = Duration::from_millis(40);

/// A `postgresql://` URL naming every server in `servers`, in order, for the superuser and
/// database `postgres`, asking for the one that takes writes (`target_session_attrs=read-write`):
/// the hub connects to the first server that is up and not a standby.
pub fn multi_host_url(servers: &[&Postgres]) -> String {
    let hosts: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port()))
        .collect();
    format!(
        "postgresql://postgres@{}/postgres?target_session_attrs=read-write",
        hosts.join(",")
    )
}

/// Lays out an exchange of `depts` whose hub keeps its records at `url`, makes the schema
/// (`migrate`), and starts the hub and the nodes of `running`.
pub async fn exchange_on(url: &str, depts: &[&str], running: &[&str]) -> Result<TestExchange> {
    let mut ex = TestExchange::setup(depts)?;
    let url = url.to_owned();
    ex.edit_hub_config(|c| {
        c.store.backend = StoreBackend::Postgres;
        c.store.url = Some(url);
    })?;
    let (ok, out, err) = ex.hub_cli(&["migrate"]).await?;
    ensure!(ok, "migrate failed: {out}{err}");
    ex.start_hub().await?;
    for d in running {
        ex.start_node(d).await?;
    }
    Ok(ex)
}

/// A department submitting documents through its node's API, one every [`SEND_EVERY`], until
/// [`finish`](Self::finish)ed. Each document is retried under its idempotency key until the node
/// acknowledges it (the node queues it whether or not the hub is reachable).
pub struct SteadySender {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<Vec<String>>>,
}

impl SteadySender {
    /// Starts sending from `from` to every department of `to`.
    pub fn start(ex: &TestExchange, from: &str, to: &[&str]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let data = ex.node_data_dir(from);
        let to: Vec<String> = to.iter().map(|t| (*t).to_owned()).collect();
        let task = tokio::spawn(send_until(data, to, Arc::clone(&stop)));
        SteadySender { stop, task }
    }

    /// Stops after the document in hand; returns the id of every document the node
    /// acknowledged, in the order sent.
    pub async fn finish(self) -> Result<Vec<String>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("the steady sender panicked")?
    }
}

/// The loop of [`SteadySender`].
async fn send_until(data: PathBuf, to: Vec<String>, stop: Arc<AtomicBool>) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut tick = tokio::time::interval(SEND_EVERY);
    let run = fastrand::u64(..);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let i = ids.len();
        let mut body = vec![0u8; 1024];
        fastrand::Rng::with_seed(run ^ i as u64).fill(&mut body);
        let draft = Draft {
            to: to.clone(),
            title: format!("steady {run} #{i}"),
            urgency: pb::Urgency::Normal,
            parts: vec![("body.ofd".to_owned(), body)],
            key: format!("steady-{run}-{i}"),
        };
        let id = eventually(&format!("the node to take document {i}"), DEADLINE, || {
            let (data, draft) = (&data, &draft);
            async move {
                let addr = read_addr_file(data, "api.addr")?;
                let mut api =
                    pb::node_client::NodeClient::connect(format!("http://{addr}")).await?;
                Ok(submit(&mut api, draft).await.ok())
            }
        })
        .await?;
        ids.push(id);
    }
    Ok(ids)
}

/// The sender's view of what it sent: for each document, its recipients' states.
async fn sent(ex: &TestExchange, from: &str) -> Result<BTreeMap<String, Vec<pb::RecipientStatus>>> {
    let documents = ex
        .node_api(from)
        .await?
        .list_sent(pb::ListSentRequest {})
        .await?
        .into_inner()
        .documents;
    Ok(documents
        .into_iter()
        .map(|d| (d.doc_id, d.recipients))
        .collect())
}

/// The documents `from`'s node has been told the hub accepted (it records the hub's
/// acknowledgement as `accepted_at` of every recipient).
pub async fn accepted(ex: &TestExchange, from: &str) -> Result<BTreeSet<String>> {
    Ok(sent(ex, from)
        .await?
        .into_iter()
        .filter(|(_, rs)| !rs.is_empty() && rs.iter().all(|r| r.accepted_at_ms != 0))
        .map(|(id, _)| id)
        .collect())
}

/// Waits until `from`'s node has been told the hub accepted at least `n` documents; returns
/// them.
pub async fn wait_accepted(ex: &TestExchange, from: &str, n: usize) -> Result<BTreeSet<String>> {
    eventually(
        &format!("{n} documents from {from} accepted by the hub"),
        DEADLINE,
        || async {
            let a = accepted(ex, from).await?;
            Ok((a.len() >= n).then_some(a))
        },
    )
    .await
}

/// Waits until each of `ids` has reached every department of `to` and its delivery receipt is
/// back at `from`; then checks that each inbox holds each document exactly once.
pub async fn wait_delivered_once(
    ex: &TestExchange,
    from: &str,
    to: &[&str],
    ids: &[String],
) -> Result<()> {
    let want: BTreeSet<&String> = ids.iter().collect();
    ensure!(want.len() == ids.len(), "the node gave an id twice");
    eventually(
        &format!("{} documents delivered, receipts at {from}", ids.len()),
        DEADLINE,
        || async {
            let sent = sent(ex, from).await?;
            let missing = want
                .iter()
                .filter(|id| {
                    !sent.get(id.as_str()).is_some_and(|rs| {
                        rs.len() == to.len() && rs.iter().all(|r| r.delivered_at_ms != 0)
                    })
                })
                .count();
            Ok((missing == 0).then_some(()))
        },
    )
    .await?;
    for dept in to {
        let entries = ex
            .node_api(dept)
            .await?
            .list_inbox(pb::ListInboxRequest {})
            .await?
            .into_inner()
            .entries;
        let mut seen = BTreeSet::new();
        for e in &entries {
            if want.contains(&e.doc_id) && !seen.insert(&e.doc_id) {
                bail!("{} is twice in {dept}'s inbox", e.doc_id);
            }
        }
        ensure!(
            seen.len() == want.len(),
            "{dept}'s inbox holds {} of the {} documents",
            seen.len(),
            want.len()
        );
    }
    Ok(())
}
