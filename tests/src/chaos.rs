//! The chaos tests' workload (tests/chaos.rs: one hub and its nodes killed at random;
//! tests/postgres_hubs.rs: several hubs on one database killed in turn): documents from some
//! departments to others, submitted through the senders' node APIs (each retried with the same
//! idempotency key until its node acknowledges it) while clerks confirm (签收) whatever
//! arrives; then every document must be confirmed by each of its recipients as its sender sees
//! it, and be in each recipient's inbox exactly once, byte for byte.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Result, bail, ensure};
use exchange_core::{config::read_addr_file, signing::Digest};
use exchange_proto::v1 as pb;
use tokio::{sync::Mutex, task::JoinSet};

use crate::{Draft, TestExchange, fetch_content, submit};

/// What a chaos run sends.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Makes the plan (printed, to replay a run with `EXCHANGE_CHAOS_SEED`).
    pub seed: u64,
    /// How many documents.
    pub docs: usize,
    /// The sending departments (document i is sent by `senders[i % len]`).
    pub senders: Vec<&'static str>,
    /// The receiving departments.
    pub receivers: Vec<&'static str>,
    /// How long, after the faults, everything has to arrive.
    pub converge: Duration,
    /// Pause between one sender's documents.
    pub pace: Duration,
}

/// Document ids by plan index, as the senders' nodes acknowledged them.
pub type Ids = BTreeMap<usize, String>;

impl Workload {
    /// What document `i` is: its sender's index and the draft, deterministic from the seed, so
    /// that a failure can be replayed.
    pub fn plan(&self, i: usize) -> (usize, Draft) {
        let mut rng =
            fastrand::Rng::with_seed(self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let sender = i % self.senders.len();
        let mut to: Vec<String> = self
            .receivers
            .iter()
            .filter(|_| rng.bool())
            .map(|s| (*s).to_owned())
            .collect();
        if to.is_empty() {
            to.push(self.receivers[rng.usize(..self.receivers.len())].to_owned());
        }
        let urgency = [
            pb::Urgency::Normal,
            pb::Urgency::Normal,
            pb::Urgency::Urgent,
            pb::Urgency::VeryUrgent,
        ][rng.usize(..4)];
        let mut body = vec![0u8; rng.usize(1..64 * 1024)];
        rng.fill(&mut body);
        let mut parts = vec![("body.ofd".to_owned(), body)];
        if i % 40 == 7 {
            let mut big = vec![0u8; rng.usize(2 << 20..4 << 20)];
            rng.fill(&mut big);
            parts.push(("attachment.pdf".to_owned(), big));
        }
        let draft = Draft {
            to,
            title: format!("chaos {} #{i}", self.seed),
            urgency,
            parts,
            key: format!("chaos-{}-{i}", self.seed),
        };
        (sender, draft)
    }

    /// Starts the senders and the clerks on `ex`'s running nodes.
    pub fn start(&self, ex: &TestExchange) -> Running {
        let w = Arc::new(self.clone());
        let ids = Arc::new(Mutex::new(BTreeMap::new()));
        let done = Arc::new(tokio::sync::Notify::new());
        let mut submitters = JoinSet::new();
        for (s, dept) in self.senders.iter().enumerate() {
            let (w, data, ids) = (Arc::clone(&w), ex.node_data_dir(dept), Arc::clone(&ids));
            submitters.spawn(async move { w.submitter(s, data, ids).await });
        }
        let clerks = self
            .receivers
            .iter()
            .map(|d| tokio::spawn(clerk(ex.node_data_dir(d), Arc::clone(&done))))
            .collect();
        Running {
            submitters,
            clerks,
            ids,
            done,
        }
    }

    /// Submits sender `sender`'s share of the plan, retrying each document (same idempotency
    /// key) until the node acknowledges it.
    async fn submitter(&self, sender: usize, data: PathBuf, ids: Arc<Mutex<Ids>>) -> Result<()> {
        for i in (sender..self.docs).step_by(self.senders.len()) {
            let (_, draft) = self.plan(i);
            let start = Instant::now();
            let id = loop {
                let attempt = async {
                    submit(&mut api_at(&data).await?, &draft)
                        .await
                        .map_err(anyhow::Error::from)
                };
                match attempt.await {
                    Ok(id) => break id,
                    Err(_) if start.elapsed() < self.converge => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => bail!("document {i} never acknowledged: {e:#}"),
                }
            };
            ids.lock().await.insert(i, id);
            tokio::time::sleep(self.pace).await;
        }
        Ok(())
    }

    /// Waits until every recipient of every document has confirmed it, as its sender sees it.
    pub async fn converge(&self, ex: &TestExchange, ids: &Ids) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let mut pending = 0;
            for (i, id) in ids {
                let (s, draft) = self.plan(*i);
                let Ok(mut api) = ex.node_api(self.senders[s]).await else {
                    pending += 1;
                    continue;
                };
                let status = api
                    .get_status(pb::GetStatusRequest { doc_id: id.clone() })
                    .await?
                    .into_inner();
                let confirmed = status
                    .recipients
                    .iter()
                    .filter(|r| r.state == i32::from(pb::RecipientState::Confirmed))
                    .count();
                ensure!(
                    status.recipients.len() == draft.to.len(),
                    "{id}: {} recipients at the sender, {} addressed",
                    status.recipients.len(),
                    draft.to.len()
                );
                pending += usize::from(confirmed != draft.to.len());
            }
            if pending == 0 {
                return Ok(start.elapsed());
            }
            if start.elapsed() > self.converge {
                bail!(
                    "{pending} documents still not confirmed by every recipient after {:?}",
                    self.converge
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Checks that every inbox holds exactly its documents, once each, byte for byte, besides
    /// `others` (documents sent to every receiver before the run).
    pub async fn check_inboxes(&self, ex: &TestExchange, ids: &Ids, others: &[&str]) -> Result<()> {
        for r in &self.receivers {
            let mut expected: BTreeSet<&str> = ids
                .iter()
                .filter(|(i, _)| self.plan(**i).1.to.iter().any(|t| t == r))
                .map(|(_, id)| id.as_str())
                .collect();
            expected.extend(others);
            let mut api = ex.node_api(r).await?;
            let inbox = api
                .list_inbox(pb::ListInboxRequest {})
                .await?
                .into_inner()
                .entries;
            let got: Vec<&str> = inbox.iter().map(|e| e.doc_id.as_str()).collect();
            ensure!(
                got.len() == expected.len(),
                "{r}: {} documents in the inbox, {} sent",
                got.len(),
                expected.len()
            );
            ensure!(
                got.iter().copied().collect::<BTreeSet<_>>() == expected,
                "{r}: the inbox holds other documents than were sent to it"
            );
            for (i, id) in ids.iter().filter(|(_, id)| expected.contains(id.as_str())) {
                let (_, draft) = self.plan(*i);
                let content = fetch_content(&mut api, id).await?;
                ensure!(content.len() == draft.parts.len(), "{r}: {id} parts");
                for ((_, want), (_, have)) in draft.parts.iter().zip(&content) {
                    ensure!(
                        Digest::of(have) == Digest::of(want),
                        "{r}: {id} content differs"
                    );
                }
            }
        }
        Ok(())
    }
}

/// A workload under way.
pub struct Running {
    submitters: JoinSet<Result<()>>,
    clerks: Vec<tokio::task::JoinHandle<()>>,
    ids: Arc<Mutex<Ids>>,
    done: Arc<tokio::sync::Notify>,
}

impl Running {
    /// Waits until every document is acknowledged by its sender's node; returns their ids.
    pub async fn submitted(&mut self) -> Result<Ids> {
        while let Some(r) = self.submitters.join_next().await {
            r??;
        }
        Ok(self.ids.lock().await.clone())
    }

    /// Stops the clerks.
    pub fn stop_clerks(&self) {
        self.done.notify_waiters();
        for c in &self.clerks {
            c.abort();
        }
    }
}

async fn api_at(
    data: &std::path::Path,
) -> Result<pb::node_client::NodeClient<tonic::transport::Channel>> {
    let addr = read_addr_file(data, "api.addr")?;
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    Ok(pb::node_client::NodeClient::new(ch).max_decoding_message_size(16 << 20))
}

/// A clerk at a receiving department: confirms (签收) whatever arrives, until `done`.
async fn clerk(data: PathBuf, done: Arc<tokio::sync::Notify>) {
    loop {
        let round = async {
            let mut api = api_at(&data).await?;
            let inbox = api.list_inbox(pb::ListInboxRequest {}).await?.into_inner();
            for e in inbox
                .entries
                .iter()
                .filter(|e| e.state == i32::from(pb::InboxState::New))
            {
                api.confirm(pb::ConfirmRequest {
                    doc_id: e.doc_id.clone(),
                    clerk: "chaos".into(),
                    note: String::new(),
                })
                .await?;
            }
            anyhow::Ok(())
        };
        let _ = round.await; // the node may be down right now: try again
        tokio::select! {
            () = done.notified() => return,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}
