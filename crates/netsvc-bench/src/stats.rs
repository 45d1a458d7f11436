//! Latency histograms (HDR) and their summaries.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A latency histogram in nanoseconds, 1 µs to 60 s at 3 significant digits.
#[derive(Debug, Clone)]
pub(crate) struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub(crate) fn new() -> Self {
        match Histogram::new_with_bounds(1_000, 60_000_000_000, 3) {
            Ok(h) => Self(h),
            Err(e) => unreachable!("constant histogram bounds are valid: {e}"),
        }
    }

    /// Records one sample (clamped into the histogram's range).
    pub(crate) fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(1_000));
    }

    /// Adds another histogram's samples.
    pub(crate) fn merge(&mut self, other: &Self) {
        // Same bounds on both sides, so this cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// The percentiles the reports show.
    pub(crate) fn summary(&self) -> Summary {
        let us = |ns: u64| ns as f64 / 1e3;
        Summary {
            count: self.0.len(),
            p50_us: us(self.0.value_at_quantile(0.50)),
            p90_us: us(self.0.value_at_quantile(0.90)),
            p99_us: us(self.0.value_at_quantile(0.99)),
            p999_us: us(self.0.value_at_quantile(0.999)),
            max_us: us(self.0.max()),
            mean_us: self.0.mean() / 1e3,
        }
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub(crate) count: u64,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
    pub(crate) mean_us: f64,
}

/// Percentile `p` (0..=1) of unsorted samples, in the samples' unit; 0 when empty.
pub(crate) fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_percentile() {
        let mut h = Latency::new();
        for i in 1..=1000u64 {
            h.record_ns(i * 1_000);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0, "{s:?}");
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.99), 99.0);
        assert_eq!(percentile(&mut v, 1.0), 100.0);
        assert_eq!(percentile(&mut [], 0.5), 0.0);
    }
}
