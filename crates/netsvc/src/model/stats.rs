//! What a runtime has done, as a snapshot: requests by service and outcome with their
//! latencies, reports in and out, and each link's traffic ([`Runtime::stats`]).
//!
//! Every count is a counter since the runtime started (never decreasing, so that rates are
//! differences of two snapshots); queue sizes and ages are the only gauges.
//!
//! [`Runtime::stats`]: crate::Runtime::stats

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency histogram's buckets, in microseconds; the last bucket is
/// everything slower. From 50 µs (a call within one machine) to 10 s (a call timing out).
pub const LATENCY_BOUNDS_US: [u64; 17] = [
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// A snapshot of one runtime's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// The runtime's process identity.
    pub identity: String,
    /// The netsvc version the process runs.
    pub version: String,
    /// Seconds since the runtime started.
    pub uptime_s: f64,
    /// Services the registry holds now: this process's own, and those learned through links.
    pub services_local: u64,
    /// See [`services_local`](Self::services_local).
    pub services_remote: u64,
    /// Requests by service and by this process's part in them.
    pub requests: Vec<RequestStats>,
    /// Reports through this process.
    pub reports: ReportStats,
    /// Reports by publisher and subject (the most active subjects; see
    /// [`subjects_overflow`](Self::subjects_overflow)).
    pub subjects: Vec<SubjectStats>,
    /// Reports on subjects beyond the tracked ones, which are counted here only.
    pub subjects_overflow: u64,
    /// The links up now.
    pub links: Vec<LinkStats>,
    /// Links closed because their peer read too slowly.
    pub slow_consumer_closes: u64,
}

/// This process's part in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RequestRole {
    /// A caller here made it (the latency is what the caller waited).
    Called,
    /// A service here answered it (the latency is the method's).
    Served,
    /// It passed through here between two links (the latency is the rest of the path's).
    Relayed,
}

impl RequestRole {
    /// The role's name, as in the JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Called => "called",
            Self::Served => "served",
            Self::Relayed => "relayed",
        }
    }
}

/// The requests of one service name in one role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RequestStats {
    /// The service's name.
    pub service: String,
    /// This process's part.
    pub role: RequestRole,
    /// Requests answered with a value.
    pub ok: u64,
    /// Requests that failed, by failure code.
    pub failures: BTreeMap<i32, u64>,
    /// How long they took, from the request to its outcome.
    pub latency: Histogram,
}

impl RequestStats {
    /// Requests that failed, whatever the code.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// Counts of durations in the buckets of [`LATENCY_BOUNDS_US`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Histogram {
    /// One count per bound of [`LATENCY_BOUNDS_US`], then the count above the last.
    pub buckets: Vec<u64>,
    /// The sum of all durations, in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// The number of durations counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The mean duration in microseconds (0 when empty).
    pub fn mean_us(&self) -> f64 {
        match self.count() {
            0 => 0.0,
            n => self.sum_us as f64 / n as f64,
        }
    }

    /// An estimate of the `q` quantile (0 ≤ q ≤ 1) in microseconds, interpolated within its
    /// bucket; the bucket above the last bound reports that bound. 0 when empty.
    pub fn quantile_us(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let low = if i == 0 { 0 } else { LATENCY_BOUNDS_US[i - 1] };
                let Some(&high) = LATENCY_BOUNDS_US.get(i) else {
                    return low as f64;
                };
                let within = (rank - seen as f64) / n as f64;
                return low as f64 + within * (high - low) as f64;
            }
            seen += n;
        }
        LATENCY_BOUNDS_US[LATENCY_BOUNDS_US.len() - 1] as f64
    }
}

/// Reports through one process, counted where they pass.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReportStats {
    /// Published by this process's services.
    pub published: u64,
    /// Arrived on links from remote publishers.
    pub received: u64,
    /// Handed to this process's report monitors.
    pub delivered: u64,
    /// Queued toward links (one per link a report went to).
    pub sent: u64,
    /// Replaced in a queue by a newer report of the same publisher and subject, because the
    /// consumer was behind (links and monitors).
    pub coalesced: u64,
    /// Dropped because a consumer was too far behind (its queue at its hard limit); the
    /// consumer is told how many it missed.
    pub missed: u64,
}

/// The reports of one publisher on one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SubjectStats {
    /// The publishing service's name.
    pub publisher: String,
    /// The publisher's address.
    pub address: String,
    /// The subject.
    pub subject: String,
    /// Reports published here or arrived here on it.
    pub reports: u64,
}

/// One link and its traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LinkStats {
    /// This runtime's number for the link.
    pub id: u64,
    /// The peer's process identity.
    pub peer: String,
    /// The exchange group.
    pub group: String,
    /// The peer's address (`unix` for a Unix socket).
    pub remote: String,
    /// Whether this process opened the connection.
    pub initiated_here: bool,
    /// The user the peer logged in as, if any.
    pub user: Option<String>,
    /// Whether the link runs over TLS.
    pub tls: bool,
    /// Milliseconds since the link came up.
    pub age_ms: u64,
    /// Bytes read from the peer.
    pub bytes_in: u64,
    /// Bytes written to the peer.
    pub bytes_out: u64,
    /// Frames read from the peer.
    pub frames_in: u64,
    /// Reports queued toward the peer (coalesced and dropped ones included).
    pub reports_out: u64,
    /// Bytes queued toward the peer and not yet written (a gauge).
    pub queued_bytes: u64,
    /// Reports coalesced in this link's queue.
    pub coalesced: u64,
    /// Reports dropped at this link's hard limit.
    pub dropped: u64,
}

/// The subscriptions a runtime holds, as a snapshot ([`Runtime::subscriptions`]).
///
/// [`Runtime::subscriptions`]: crate::Runtime::subscriptions
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Subscriptions {
    /// The subscriptions, at most the limit asked for.
    pub entries: Vec<SubscriptionStats>,
    /// How many more there are beyond `entries`.
    pub truncated: u64,
}

/// Where a subscription is held, from this runtime's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SubscriptionRole {
    /// A publisher here serves it to a monitor here.
    Local,
    /// A publisher here serves it to a subscriber behind a link.
    Served,
    /// A monitor here subscribes to a publisher behind a link.
    Subscribed,
    /// It passes through here: from a subscriber behind one link to a publisher behind
    /// another.
    Relayed,
}

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// The publisher's service name.
    pub publisher: String,
    /// The publisher's address.
    pub publisher_address: String,
    /// The subscriber's service name.
    pub subscriber: String,
    /// The subscriber's address.
    pub subscriber_address: String,
    /// The subject pattern.
    pub pattern: String,
    /// Where it is held.
    pub role: SubscriptionRole,
    /// The link it travels on from here (toward the subscriber when served, toward the
    /// publisher otherwise); `None` when both ends are here.
    pub link: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(samples: &[(usize, u64)]) -> Histogram {
        let mut buckets = vec![0; LATENCY_BOUNDS_US.len() + 1];
        for &(i, n) in samples {
            buckets[i] = n;
        }
        Histogram { buckets, sum_us: 0 }
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        assert_eq!(Histogram::default().quantile_us(0.5), 0.0);
        // 100 durations in (50, 100]: the median is halfway.
        let h = histogram(&[(1, 100)]);
        assert!((h.quantile_us(0.5) - 75.0).abs() < 1e-9);
        assert!((h.quantile_us(1.0) - 100.0).abs() < 1e-9);
        // 99 fast, 1 slower than every bound: p99 is fast, p100 the last bound.
        let h = histogram(&[(0, 99), (LATENCY_BOUNDS_US.len(), 1)]);
        assert!(h.quantile_us(0.99) <= 50.0);
        assert_eq!(h.quantile_us(1.0), 10_000_000.0);
    }
}
