//! Latency summaries: nearest-rank percentiles over every sample (no histogram, no sampling).

use serde::Serialize;

/// p50 / p99 / max / mean of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Summary {
    /// Summarises `samples` (milliseconds); all zero when there are none.
    pub fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_by(f64::total_cmp);
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        Summary {
            p50_ms: percentile(&samples, 50.0),
            p99_ms: percentile(&samples, 99.0),
            max_ms: samples[samples.len() - 1],
            mean_ms: mean,
        }
    }

    /// `p50 / p99 / max` for the table.
    pub fn short(&self) -> String {
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

/// The nearest-rank `p`th percentile of sorted, non-empty `sorted`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Rounds for display and JSON: figures are noisy beyond three significant decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::of((1..=100).map(f64::from).rev().collect());
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (50.0, 99.0, 100.0));
        assert_eq!(s.mean_ms, 50.5);
        let one = Summary::of(vec![7.0]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (7.0, 7.0, 7.0));
        assert_eq!(Summary::of(Vec::new()), Summary::default());
    }
}
