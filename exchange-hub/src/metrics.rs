//! The hub's Prometheus endpoint (`[metrics] listen`).
//!
//! Almost nothing here is counted on the request path. Every event worth counting is already
//! in the audit log, in the same transaction as the change it records, so the counters are
//! *derived* from the log when Prometheus scrapes: each scrape folds in the entries appended
//! since the last one (one read transaction per page), so a scrape costs what happened since the
//! previous scrape. The totals are lifetime totals, the same after a restart; if the fold ever
//! fails, it starts again from the first entry and arrives at the same numbers. Queue depths and
//! table sizes are read from the store at each scrape; only commit latency is measured live
//! (in `exchange_core::store`).

use std::{collections::BTreeMap, sync::Arc};

use exchange_core::{
    metrics::{self, DELIVERY_BUCKETS, Exposition, Histogram},
    store::{StoreError, kv::ReadTables, sealing::Sealer},
    time::now_ms,
};
use exchange_proto::v1 as pb;
use prost::Message as _;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{Hub, audit, store};

mod reasons;

use reasons::{handshake_class, refusal_class};

/// Audit entries folded in per read transaction.
const PAGE: usize = 4096;

/// Binds `[metrics] listen` (if configured), reports the address in `<data_dir>/metrics.addr`,
/// and serves scrapes until `stop`.
pub(crate) async fn start(hub: &Arc<Hub>, stop: CancellationToken) -> anyhow::Result<()> {
    let Some(section) = &hub.cfg.metrics else {
        return Ok(());
    };
    let folded = Arc::new(Mutex::new(Folded::default()));
    let data_dir = hub.cfg.hub.data_dir.clone();
    let hub = Arc::clone(hub);
    let render = move || {
        let (hub, folded) = (Arc::clone(&hub), Arc::clone(&folded));
        async move { render(&hub, &folded).await.map_err(|e| e.to_string()) }
    };
    metrics::http::start(section.listen, &data_dir, render, stop)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// What the audit log says so far.
#[derive(Debug)]
struct Folded {
    /// The last entry folded in.
    after: u64,
    /// Documents by step: accepted, delivered, confirmed, rejected, not_delivered.
    steps: BTreeMap<&'static str, u64>,
    /// Content bytes of the accepted documents.
    accepted_bytes: u64,
    /// Refused submissions, by reason class.
    refused: BTreeMap<&'static str, u64>,
    /// Refused TLS handshakes, by reason class.
    handshakes: BTreeMap<&'static str, u64>,
    /// Open delivery streams per department (connected minus disconnected since the last start).
    streams: BTreeMap<String, i64>,
    /// Items pushed again because the node did not acknowledge them in time.
    redeliveries: u64,
    /// Acknowledgements and statements from nodes that the hub would not take.
    statements_refused: u64,
    /// From the hub's acceptance to the recipient's DELIVERED receipt.
    delivery: Histogram,
}

impl Default for Folded {
    fn default() -> Self {
        Folded {
            after: 0,
            steps: BTreeMap::new(),
            accepted_bytes: 0,
            refused: BTreeMap::new(),
            handshakes: BTreeMap::new(),
            streams: BTreeMap::new(),
            redeliveries: 0,
            statements_refused: 0,
            delivery: Histogram::new(DELIVERY_BUCKETS),
        }
    }
}

impl Folded {
    fn step(&mut self, step: &'static str) {
        *self.steps.entry(step).or_default() += 1;
    }

    fn fold(
        &mut self,
        txn: &dyn ReadTables,
        sealer: &Sealer,
        e: &pb::AuditEntry,
    ) -> Result<(), StoreError> {
        use pb::AuditKind as K;
        self.after = e.seq;
        match K::try_from(e.kind).unwrap_or(K::Unspecified) {
            // Every stream of the previous run ended with it.
            K::HubStarted => self.streams.clear(),
            K::DocumentAccepted => {
                self.step("accepted");
                if let Some(rec) = store::get_document(txn, sealer, &e.doc_id)? {
                    self.accepted_bytes += rec.doc.header.total_size();
                }
            }
            K::DocumentRefused => *self.refused.entry(refusal_class(&e.detail)).or_default() += 1,
            K::Delivered => {
                self.step("delivered");
                if let Some(doc) = store::get_document(txn, sealer, &e.doc_id)? {
                    let ms = (e.at_ms - doc.accepted_at_ms).max(0);
                    self.delivery.observe(ms as f64 / 1000.0);
                }
            }
            K::Evidence => match e.detail.split(' ').next().unwrap_or_default() {
                "Confirmed" => self.step("confirmed"),
                "Rejected" => self.step("rejected"),
                "NotDelivered" => self.step("not_delivered"),
                _ => {}
            },
            K::Redelivery => self.redeliveries += 1,
            K::StatementRefused => self.statements_refused += 1,
            K::HandshakeRefused => {
                *self
                    .handshakes
                    .entry(handshake_class(&e.detail))
                    .or_default() += 1;
            }
            K::NodeConnected => *self.streams.entry(e.dept.clone()).or_default() += 1,
            K::NodeDisconnected => {
                let n = self.streams.entry(e.dept.clone()).or_default();
                *n = (*n - 1).max(0);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Folds in the audit entries appended since the last scrape, and writes what the log says.
async fn from_log(
    hub: &Hub,
    folded: &Mutex<Folded>,
    out: &mut Exposition,
) -> Result<(), StoreError> {
    let mut guard = folded.lock().await;
    // Taken out while folding: if a read fails, the next scrape starts again from entry 1.
    let mut state = std::mem::take(&mut *guard);
    loop {
        let sealer = hub.store.sealer().clone();
        let (next, n) = hub
            .store
            .read(move |txn| {
                let entries = audit::entries_after(txn, state.after, PAGE)?;
                for e in &entries {
                    state.fold(txn, &sealer, e)?;
                }
                Ok::<_, StoreError>((state, entries.len()))
            })
            .await?;
        state = next;
        if n < PAGE {
            break;
        }
    }
    let f = &state;
    let steps: Vec<_> = [
        "accepted",
        "delivered",
        "confirmed",
        "rejected",
        "not_delivered",
    ]
    .iter()
    .map(|s| (vec![("step", *s)], f.steps.get(s).copied().unwrap_or(0)))
    .collect();
    out.counter(
        "exchange_hub_documents_total",
        "Documents reaching each step: accepted once per document, the others per recipient.",
        &labelled(&steps),
    );
    out.counter(
        "exchange_hub_accepted_bytes_total",
        "Content bytes of the documents the hub accepted.",
        &[(&[], f.accepted_bytes)],
    );
    let refused: Vec<_> = f
        .refused
        .iter()
        .map(|(k, v)| (vec![("reason", *k)], *v))
        .collect();
    out.counter(
        "exchange_hub_documents_refused_total",
        "Submissions the hub refused, by reason class.",
        &labelled(&refused),
    );
    let hs: Vec<_> = f
        .handshakes
        .iter()
        .map(|(k, v)| (vec![("reason", *k)], *v))
        .collect();
    out.counter(
        "exchange_hub_tls_handshake_failures_total",
        "TLS handshakes the hub refused, by reason class.",
        &labelled(&hs),
    );
    out.counter(
        "exchange_hub_redeliveries_total",
        "Deliveries pushed again because the node had not acknowledged them.",
        &[(&[], f.redeliveries)],
    );
    out.counter(
        "exchange_hub_statements_refused_total",
        "Receipts and statements from nodes the hub would not take (a signature that does not \
         verify, a step that contradicts the delivery's state): see the audit log.",
        &[(&[], f.statements_refused)],
    );
    let connected = f.streams.values().filter(|n| **n > 0).count();
    out.gauge(
        "exchange_hub_connected_nodes",
        "Departments with an open delivery stream.",
        &[(&[], connected as f64)],
    );
    out.histogram(
        "exchange_hub_delivery_seconds",
        "From the hub's acceptance to the recipient node's DELIVERED receipt.",
        &[(&[], f.delivery.snapshot())],
    );
    *guard = state;
    Ok(())
}

/// `(labels, value)` pairs with borrowed labels, as `Exposition` takes them.
fn labelled<'a, T: Copy>(
    rows: &'a [(Vec<(&'a str, &'a str)>, T)],
) -> Vec<(&'a [(&'a str, &'a str)], T)> {
    rows.iter().map(|(l, v)| (l.as_slice(), *v)).collect()
}

/// One queue group: destination, urgency, depth, age of the oldest item (seconds).
type Depth = (String, &'static str, u64, f64);

/// What one read transaction of the store says: queue groups and table sizes.
struct FromStore {
    depths: Vec<Depth>,
    /// Every table and its row count.
    rows: Vec<(String, u64)>,
}

/// Queue depths and oldest ages, and every table's row count, in one read transaction.
fn from_store(txn: &dyn ReadTables, sealer: &Sealer) -> Result<FromStore, StoreError> {
    let now = now_ms();
    let mut depths = Vec::new();
    for d in store::OUTBOUND.depths(txn)? {
        let since = match store::Outbound::decode(format!("oldest of {}", d.dest), &d.oldest)? {
            store::Outbound::Deliver(id) => {
                store::get_document(txn, sealer, &id.to_string())?.map(|doc| doc.accepted_at_ms)
            }
            store::Outbound::Evidence(ev) => pb::Evidence::decode(ev.evidence.as_slice())
                .ok()
                .map(|e| e.at_ms),
            _ => None,
        };
        let age = since.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
        depths.push((d.dest, metrics::urgency_label(d.priority), d.len, age));
    }
    let mut rows = Vec::new();
    for t in crate::backup::tables() {
        rows.push((t.name().to_owned(), txn.len(t)?));
    }
    Ok(FromStore { depths, rows })
}

/// The whole exposition.
async fn render(hub: &Hub, folded: &Mutex<Folded>) -> Result<String, StoreError> {
    let mut out = Exposition::new();
    from_log(hub, folded, &mut out).await?;
    let sealer = hub.store.sealer().clone();
    let FromStore { depths, rows } = hub.store.read(move |txn| from_store(txn, &sealer)).await?;
    let labels: Vec<_> = depths
        .iter()
        .map(|(dept, urgency, _, _)| [("dept", dept.as_str()), ("urgency", *urgency)])
        .collect();
    let depth: Vec<_> = depths
        .iter()
        .zip(&labels)
        .map(|((_, _, n, _), l)| (l.as_slice(), *n as f64))
        .collect();
    out.gauge(
        "exchange_hub_queue_depth",
        "Items waiting to be pushed to a department, by urgency (groups with none are absent).",
        &depth,
    );
    let age: Vec<_> = depths
        .iter()
        .zip(&labels)
        .map(|((_, _, _, a), l)| (l.as_slice(), *a))
        .collect();
    out.gauge(
        "exchange_hub_queue_oldest_age_seconds",
        "Age of the oldest item waiting for a department, by urgency.",
        &age,
    );
    if let Some(after) = hub.signer.not_after_secs() {
        out.gauge(
            "exchange_hub_signing_certificate_expiry_timestamp_seconds",
            "When the hub's document-signing certificate expires (Unix time): past it, nodes \
             refuse what the hub signs. Alert well before.",
            &[(&[], after as f64)],
        );
    }
    metrics::store_metrics(&mut out, &hub.store, &rows);
    Ok(out.finish())
}
