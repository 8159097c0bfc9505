//! What the departments report, and when the bench learnt it.
//!
//! A node's `WatchEvents` stream emits `RECEIVED` after the inbox commit (the document and its
//! content are durable at the recipient) and `RECIPIENT` when a recipient's state of a sent
//! document changes (`ACCEPTED` by the hub, `DELIVERED` when the recipient's signed receipt came
//! back). The simulated nodes report their own commits on stdout. Everything lands in one
//! [`EventLog`], stamped with [`now_us`](crate::clock::now_us) on arrival, and waiters are woken
//! on every change — no polling.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::{Result, bail};
use exchange_proto::v1 as pb;
use tokio::{sync::watch, task::JoinSet};

use crate::clock::now_us;

/// Key of a per-recipient fact: (document id, department).
pub type DocDept = (String, String);

/// Everything seen so far.
#[derive(Debug, Default)]
pub struct EventLog {
    /// (doc, recipient) → when the recipient had it durably in its inbox.
    pub received: HashMap<DocDept, i64>,
    /// (doc, recipient) → when the sender learnt that the hub accepted it for that recipient.
    pub accepted: HashMap<DocDept, i64>,
    /// (doc, recipient) → when the recipient's DELIVERED receipt was recorded by the sender.
    pub receipts: HashMap<DocDept, i64>,
    /// What went wrong: refused or not-delivered documents, simulated nodes' refusals.
    pub failures: Vec<String>,
}

/// The shared log and its followers.
#[derive(Debug)]
pub struct Events {
    log: Arc<Mutex<EventLog>>,
    changed: Arc<watch::Sender<u64>>,
    tasks: JoinSet<()>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            log: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
            tasks: JoinSet::new(),
        }
    }
}

impl Events {
    /// Follows the `WatchEvents` stream of `dept`'s node at `api`, from its first event on.
    /// Returns once the stream is open.
    pub async fn follow(&mut self, dept: &str, api: SocketAddr) -> Result<()> {
        let mut client = crate::exchange::connect(api).await?;
        let mut stream = client
            .watch_events(pb::WatchEventsRequest { after_seq: 0 })
            .await?
            .into_inner();
        let recorder = self.recorder();
        let dept = dept.to_owned();
        self.tasks.spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(ev)) => recorder.node_event(&dept, ev),
                    Ok(None) => return,
                    Err(e) => {
                        recorder.failure(format!("event stream of {dept} failed: {e}"));
                        return;
                    }
                }
            }
        });
        Ok(())
    }

    /// A handle that records into this log (for the simulated nodes' reader).
    pub fn recorder(&self) -> Recorder {
        Recorder {
            log: Arc::clone(&self.log),
            changed: Arc::clone(&self.changed),
        }
    }

    /// Reads the log.
    pub fn with<R>(&self, f: impl FnOnce(&EventLog) -> R) -> R {
        f(&self.log.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Waits until `progress` returns `(have, want)` with `have >= want`. Fails at the first
    /// recorded failure, or when `have` has not grown for `stall`. Prints progress to stderr.
    pub async fn wait(
        &self,
        what: &str,
        stall: Duration,
        progress: impl Fn(&EventLog) -> (usize, usize),
    ) -> Result<()> {
        let mut rx = self.changed.subscribe();
        let mut best = 0;
        let mut last_progress = std::time::Instant::now();
        let mut last_print = std::time::Instant::now();
        loop {
            rx.borrow_and_update();
            let ((have, want), failure) =
                self.with(|log| (progress(log), log.failures.first().cloned()));
            if let Some(f) = failure {
                bail!("{what}: {f}");
            }
            if have >= want {
                return Ok(());
            }
            if have > best {
                best = have;
                last_progress = std::time::Instant::now();
            } else if last_progress.elapsed() > stall {
                bail!("{what}: no progress for {stall:?} at {have}/{want}");
            }
            if last_print.elapsed() > Duration::from_secs(5) {
                eprintln!("  {what}: {have}/{want}");
                last_print = std::time::Instant::now();
            }
            // Woken by the next change; at least once a second to print and check the stall.
            let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        }
    }
}

/// Records into an [`EventLog`] and wakes its waiters.
#[derive(Debug, Clone)]
pub struct Recorder {
    log: Arc<Mutex<EventLog>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Recorder {
    fn update(&self, f: impl FnOnce(&mut EventLog)) {
        f(&mut self.log.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.send_modify(|n| *n += 1);
    }

    /// `dept`'s node reported `ev`.
    pub fn node_event(&self, dept: &str, ev: pb::NodeEvent) {
        let at = now_us();
        let kind = pb::NodeEventKind::try_from(ev.kind).unwrap_or_default();
        let state = pb::RecipientState::try_from(ev.state).unwrap_or_default();
        self.update(|log| match (kind, state) {
            (pb::NodeEventKind::Received, _) => {
                log.received
                    .entry((ev.doc_id, dept.to_owned()))
                    .or_insert(at);
            }
            (pb::NodeEventKind::Recipient, pb::RecipientState::Accepted) => {
                log.accepted.entry((ev.doc_id, ev.dept)).or_insert(at);
            }
            (pb::NodeEventKind::Recipient, pb::RecipientState::Delivered) => {
                log.receipts.entry((ev.doc_id, ev.dept)).or_insert(at);
            }
            (
                pb::NodeEventKind::Recipient,
                pb::RecipientState::Refused | pb::RecipientState::NotDelivered,
            ) => log.failures.push(format!(
                "document {} {} for recipient {:?} (see the {dept} node's log)",
                ev.doc_id,
                state.as_str_name(),
                ev.dept
            )),
            _ => {}
        });
    }

    /// A simulated recipient committed `doc` at `at_us`.
    pub fn received(&self, doc: String, dept: String, at_us: i64) {
        self.update(|log| {
            log.received.entry((doc, dept)).or_insert(at_us);
        });
    }

    /// Something failed that makes the run's figures meaningless.
    pub fn failure(&self, what: String) {
        self.update(|log| log.failures.push(what));
    }
}
