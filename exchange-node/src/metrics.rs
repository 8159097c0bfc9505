//! The node's Prometheus endpoint (`[metrics] listen`).
//!
//! As on the hub, nothing is counted on the request path: the node's event log (the same one
//! `WatchEvents` replays) already records every recipient's step and every received document,
//! so the counters are folded in from it when Prometheus scrapes, from where the last scrape
//! stopped. Outbox depth and table sizes are read from the store at each scrape; commit latency
//! is measured live (in `exchange_core::store`).
//!
//! The latency histograms (from submission to the hub's acceptance, to delivery and to 签收) need
//! the sent document's timeline, one lookup per event, so they cover the events committed since
//! the node started rather than its whole history.

use std::{collections::BTreeMap, sync::Arc};

use exchange_core::{
    metrics::{self, DELIVERY_BUCKETS, Exposition, Histogram},
    store::{StoreError, decode, kv::ReadTables},
    time::now_ms,
};
use exchange_proto::{store::v1 as st, v1 as pb};
use prost::Message as _;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{Node, store};

/// Events folded in per read.
const PAGE: usize = 1024;

/// Binds `[metrics] listen` (if configured), reports the address in `<data_dir>/metrics.addr`,
/// and serves scrapes until `stop`.
pub(crate) async fn start(node: &Arc<Node>, stop: CancellationToken) -> anyhow::Result<()> {
    let Some(section) = &node.cfg.metrics else {
        return Ok(());
    };
    let folded = Arc::new(Mutex::new(Folded::new(now_ms())));
    let data_dir = node.cfg.node.data_dir.clone();
    let node = Arc::clone(node);
    let render = move || {
        let (node, folded) = (Arc::clone(&node), Arc::clone(&folded));
        async move { render(&node, &folded).await.map_err(|e| e.to_string()) }
    };
    metrics::http::start(section.listen, &data_dir, render, stop)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// What the event log says so far.
#[derive(Debug)]
struct Folded {
    /// The last event folded in.
    after: u64,
    /// When the node started: latencies are looked up for later events only.
    since_ms: i64,
    /// Steps of the recipients of sent documents: accepted, delivered, confirmed, ...
    steps: BTreeMap<&'static str, u64>,
    /// From submission to each step, per step.
    latency: BTreeMap<&'static str, Histogram>,
}

impl Folded {
    fn new(since_ms: i64) -> Self {
        let latency = ["accepted", "delivered", "confirmed"]
            .into_iter()
            .map(|s| (s, Histogram::new(DELIVERY_BUCKETS)))
            .collect();
        Folded {
            after: 0,
            since_ms,
            steps: BTreeMap::new(),
            latency,
        }
    }

    async fn fold(&mut self, node: &Node, seq: u64, e: &st::NodeEventRecord) {
        self.after = seq;
        if i32::try_from(e.kind).ok() != Some(pb::NodeEventKind::Recipient.into()) {
            return;
        }
        let state = i32::try_from(e.state)
            .ok()
            .and_then(|s| pb::RecipientState::try_from(s).ok())
            .unwrap_or(pb::RecipientState::Unspecified);
        let step = match state {
            pb::RecipientState::Accepted => "accepted",
            pb::RecipientState::Delivered => "delivered",
            pb::RecipientState::Confirmed => "confirmed",
            pb::RecipientState::Rejected => "rejected",
            pb::RecipientState::NotDelivered => "not_delivered",
            pb::RecipientState::Refused => "refused",
            _ => return,
        };
        *self.steps.entry(step).or_default() += 1;
        if e.at_ms < self.since_ms || !self.latency.contains_key(step) {
            return;
        }
        let Ok(id) = e.doc_id.parse() else { return };
        // A failed lookup only leaves one observation out.
        let Ok(Some(sent)) = store::sent(&node.store, id).await else {
            return;
        };
        let Some(r) = sent
            .recipients
            .iter()
            .find(|r| r.dept.to_string() == e.dept)
        else {
            return;
        };
        let at = match step {
            "accepted" => r.accepted_at_ms,
            "delivered" => r.delivered_at_ms,
            _ => r.confirmed_at_ms,
        };
        if at > 0
            && let Some(h) = self.latency.get(step)
        {
            h.observe((at - sent.queued_at_ms).max(0) as f64 / 1000.0);
        }
    }
}

/// When a document id (a UUIDv7) was made, in Unix ms: its first 48 bits.
fn uuid_v7_ms(id: &str) -> Option<i64> {
    let hex: String = id.chars().filter(|c| *c != '-').take(12).collect();
    i64::from_str_radix(&hex, 16).ok()
}

/// What one read transaction of the store says.
struct FromStore {
    /// Per urgency: depth, and age of the oldest item in seconds.
    depths: Vec<(&'static str, u64, f64)>,
    /// Every table and its row count.
    rows: Vec<(String, u64)>,
}

/// Outbox depth and age of the oldest item per urgency, and every table's row count.
fn from_store(txn: &dyn ReadTables) -> Result<FromStore, StoreError> {
    let now = now_ms();
    let mut depths = Vec::new();
    for d in store::OUTBOX.depths(txn)? {
        let item: st::QueueItem = decode("outbox item", &d.oldest)?;
        let since = match item.item {
            Some(st::queue_item::Item::SubmitDoc(id)) => uuid_v7_ms(&id),
            Some(st::queue_item::Item::Evidence(ev)) => {
                pb::Evidence::decode(ev.evidence.as_slice())
                    .ok()
                    .map(|e| e.at_ms)
            }
            _ => None,
        };
        let age = since.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
        depths.push((metrics::urgency_label(d.priority), d.len, age));
    }
    let mut rows = Vec::new();
    for t in crate::backup::tables() {
        rows.push((t.name().to_owned(), txn.len(t)?));
    }
    Ok(FromStore { depths, rows })
}

async fn render(node: &Node, folded: &Mutex<Folded>) -> Result<String, StoreError> {
    let mut out = Exposition::new();
    {
        let mut f = folded.lock().await;
        loop {
            let events = store::events_after(&node.store, f.after, PAGE).await?;
            for (seq, e) in &events {
                f.fold(node, *seq, e).await;
            }
            if events.len() < PAGE {
                break;
            }
        }
        let steps: Vec<_> = f.steps.iter().map(|(k, v)| ([("step", *k)], *v)).collect();
        let steps: Vec<_> = steps.iter().map(|(l, v)| (l.as_slice(), *v)).collect();
        out.counter(
            "exchange_node_recipient_steps_total",
            "Steps reached by the recipients of documents this department sent.",
            &steps,
        );
        let latency: Vec<_> = f
            .latency
            .iter()
            .map(|(k, h)| ([("step", *k)], h.snapshot()))
            .collect();
        let latency: Vec<_> = latency
            .iter()
            .map(|(l, h)| (l.as_slice(), h.clone()))
            .collect();
        out.histogram(
            "exchange_node_document_seconds",
            "From submission to the hub's acceptance, to delivery, and to 签收, per recipient \
             (events since the node started).",
            &latency,
        );
    }
    let FromStore { depths, rows } = node.store.read(from_store).await?;
    let count = |table: &str| rows.iter().find(|(t, _)| t == table).map_or(0, |(_, n)| *n);
    out.counter(
        "exchange_node_documents_sent_total",
        "Documents this department submitted.",
        &[(&[], count("sent"))],
    );
    out.counter(
        "exchange_node_documents_received_total",
        "Documents this department received.",
        &[(&[], count("inbox"))],
    );
    let labels: Vec<_> = depths.iter().map(|(u, _, _)| [("urgency", *u)]).collect();
    let depth: Vec<_> = labels
        .iter()
        .zip(&depths)
        .map(|(l, (_, n, _))| (l.as_slice(), *n as f64))
        .collect();
    out.gauge(
        "exchange_node_outbox_depth",
        "Items waiting to be sent to the hub, by urgency (urgencies with none are absent).",
        &depth,
    );
    let age: Vec<_> = labels
        .iter()
        .zip(&depths)
        .map(|(l, (_, _, a))| (l.as_slice(), *a))
        .collect();
    out.gauge(
        "exchange_node_outbox_oldest_age_seconds",
        "Age of the oldest item waiting in the outbox, by urgency.",
        &age,
    );
    if let Some(after) = node.signer.not_after_secs() {
        out.gauge(
            "exchange_node_signing_certificate_expiry_timestamp_seconds",
            "When this department's document-signing certificate expires (Unix time): past it, \
             clerks' statements are refused. Alert well before.",
            &[(&[], after as f64)],
        );
    }
    metrics::store_metrics(&mut out, &node.store, &rows);
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_v7_tells_its_time() {
        // 0x0190_0000_0000 ms = 1,717,986,918,400 ms (June 2024).
        assert_eq!(
            uuid_v7_ms("01900000-0000-7000-8000-000000000000"),
            Some(0x0190_0000_0000)
        );
        assert_eq!(uuid_v7_ms("zz"), None);
    }
}
