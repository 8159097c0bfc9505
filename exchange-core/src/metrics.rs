//! Prometheus metrics without a metrics crate: the few instruments the daemons keep live
//! ([`Counter`], [`Gauge`], [`Histogram`]), a writer of the text exposition format
//! ([`Exposition`]), and a minimal HTTP/1.1 responder for `GET /metrics` ([`http::serve`]).
//!
//! Most of what the hub and the node report is not counted on the hot path at all: it is derived
//! when Prometheus scrapes, from state the daemons keep anyway (the hub's audit log, the stores'
//! tables and queues). Only what leaves no trace in the store — how long a commit took — is
//! measured live, with the atomics here. A scrape costs one read transaction per page of new
//! log entries; nothing a request does waits for it.
//!
//! The format is the Prometheus text format 0.0.4: `# HELP`, `# TYPE`, then one sample a line.

pub mod http;

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::Duration,
};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds `d` (negative to subtract).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) for latencies from a fraction of a millisecond (a batched commit) to
/// minutes (a document waiting for an offline node is reported as "more than 5 min").
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Upper bounds (seconds) for how long documents take between departments: seconds to days.
pub const DELIVERY_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 604800.0,
];

/// A histogram with fixed buckets, safe to observe from any thread without a lock.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum of observations, as `f64` bits (updated with compare-and-swap).
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with the given upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation of `v` (seconds, for latencies).
    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    /// Records a duration, in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// How many observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// A consistent-enough copy for exposition (each field is read once).
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

/// The values of a [`Histogram`] at one moment.
#[derive(Debug, Clone)]
pub struct HistogramSnapshot {
    bounds: &'static [f64],
    buckets: Vec<u64>,
    sum: f64,
}

/// Labels of one sample: `(name, value)` pairs.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// Builds a text exposition, one metric family after another.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A counter family: `name` should end in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, u64)]) {
        self.header(name, help, "counter");
        for (labels, v) in samples {
            self.sample(name, labels, *v as f64);
        }
    }

    /// A gauge family.
    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, f64)]) {
        self.header(name, help, "gauge");
        for (labels, v) in samples {
            self.sample(name, labels, *v);
        }
    }

    /// A histogram family: `_bucket` (cumulative, with `le`), `_sum` and `_count` per series.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        series: &[(Labels<'_>, HistogramSnapshot)],
    ) {
        self.header(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        for (labels, h) in series {
            let mut cumulative = 0u64;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n;
                let le = h
                    .bounds
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| number(*b));
                let mut with_le: Vec<(&str, &str)> = labels.to_vec();
                with_le.push(("le", &le));
                self.sample(&bucket, &with_le, cumulative as f64);
            }
            self.sample(&format!("{name}_sum"), labels, h.sum);
            self.sample(&format!("{name}_count"), labels, cumulative as f64);
        }
    }

    /// The text, ready to serve.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, infinities as `+Inf`/`-Inf`.
fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.is_nan() {
        "NaN".to_owned()
    } else {
        format!("{v}")
    }
}

/// The store's own metrics, the same for hub and node: commit latency (measured live), the
/// database file's size, and `rows` — each table's row count, read by the caller in its scrape
/// transaction.
pub fn store_metrics(out: &mut Exposition, store: &crate::store::Store, rows: &[(String, u64)]) {
    out.histogram(
        "exchange_store_commit_seconds",
        "Duration of each store commit (one fsync per batch of writes).",
        &[(&[], store.commit_latency().snapshot())],
    );
    let size = std::fs::metadata(store.path()).map_or(0, |m| m.len());
    out.gauge(
        "exchange_store_file_bytes",
        "Size of the redb database file (content blobs are not included).",
        &[(&[], size as f64)],
    );
    let samples: Vec<_> = rows
        .iter()
        .map(|(t, n)| ([("table", t.as_str())], *n as f64))
        .collect();
    let samples: Vec<_> = samples.iter().map(|(l, n)| (l.as_slice(), *n)).collect();
    out.gauge("exchange_store_rows", "Rows in each store table.", &samples);
}

/// The label value for a queue priority (0, 1, 2), as the daemons name urgency everywhere.
pub fn urgency_label(priority: u8) -> &'static str {
    match priority {
        0 => "very_urgent",
        1 => "urgent",
        _ => "normal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        let mut e = Exposition::new();
        e.histogram("x_seconds", "test", &[(&[("op", "a")], h.snapshot())]);
        let text = e.finish();
        assert!(text.contains("# TYPE x_seconds histogram\n"), "{text}");
        assert!(
            text.contains("x_seconds_bucket{op=\"a\",le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{op=\"a\",le=\"1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{op=\"a\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_count{op=\"a\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_sum{op=\"a\"} 7.55\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::new();
        e.counter("c_total", "help", &[(&[("reason", "a \"b\"\\\n")], 2)]);
        assert!(
            e.finish()
                .contains("c_total{reason=\"a \\\"b\\\"\\\\\\n\"} 2\n")
        );
    }

    #[test]
    fn counters_and_gauges_hold_their_values() {
        let c = Counter::default();
        c.inc();
        c.add(2);
        assert_eq!(c.get(), 3);
        let g = Gauge::default();
        g.set(5);
        g.add(-2);
        assert_eq!(g.get(), 3);
    }
}
