//! The counters behind [`Stats`](crate::model::stats::Stats) that are kept outside the
//! core's lock: requests are answered by responders and awaited by callers that never take
//! it, so their meters are atomics shared by whoever finishes a request.
//!
//! Counts under the core's lock (reports, subjects) live in [`Traffic`], owned by the core;
//! each queue counts what it coalesces and drops itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::model::collections::FastMap;
use crate::model::failure::codes;
use crate::model::stats::{Histogram, LATENCY_BOUNDS_US, RequestRole, RequestStats, SubjectStats};

/// How many service names get meters of their own; the requests of names
/// beyond them share the meter named [`OTHER`], so that a process calling an unbounded
/// number of names keeps bounded state.
const MAX_METERED: usize = 1024;

const ROLES: [RequestRole; 3] = [
    RequestRole::Called,
    RequestRole::Served,
    RequestRole::Relayed,
];

fn role_index(role: RequestRole) -> usize {
    match role {
        RequestRole::Called => 0,
        RequestRole::Served => 1,
        RequestRole::Relayed => 2,
    }
}

/// The name under which requests beyond [`MAX_METERED`] are counted.
pub(crate) const OTHER: &str = "!other";

/// The requests of one service name in one role.
#[derive(Debug, Default)]
pub(crate) struct RequestMeter {
    ok: AtomicU64,
    /// Failures are the rare path: a lock there keeps the codes exact without one atomic
    /// per possible code.
    failures: Mutex<BTreeMap<i32, u64>>,
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl RequestMeter {
    /// Counts one request: `failure` is its failure code, `None` for a value.
    pub(crate) fn record(&self, failure: Option<i32>, elapsed: Duration) {
        match failure {
            None => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Some(code) => *self.failures.lock().entry(code).or_default() += 1,
        }
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        if let Some(b) = self.buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn snapshot(&self, service: &str, role: RequestRole) -> RequestStats {
        RequestStats {
            service: service.to_owned(),
            role,
            ok: self.ok.load(Ordering::Relaxed),
            failures: self.failures.lock().clone(),
            latency: Histogram {
                buckets: self
                    .buckets
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .collect(),
                sum_us: self.sum_us.load(Ordering::Relaxed),
            },
        }
    }
}

/// A request being timed: finishing it counts it once; dropping it unfinished (the caller
/// gave up: its future was dropped) counts it as cancelled, 48.
#[derive(Debug)]
pub(crate) struct Metered {
    meter: Arc<RequestMeter>,
    started: Instant,
    finished: bool,
}

impl Metered {
    pub(crate) fn start(meter: Arc<RequestMeter>) -> Self {
        Self {
            meter,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Counts the request with its outcome: `failure` is its failure code, `None` for a
    /// value.
    pub(crate) fn finish(mut self, failure: Option<i32>) {
        self.finished = true;
        self.meter.record(failure, self.started.elapsed());
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if !self.finished {
            self.meter
                .record(Some(codes::REQUEST_ABORTED), self.started.elapsed());
        }
    }
}

/// One service's meters, indexed by [`role_index`]; a role it never had has none.
type RoleMeters = [Option<Arc<RequestMeter>>; 3];

/// The runtime's request meters and the counters its links share.
#[derive(Debug)]
pub(crate) struct Meters {
    started: std::time::Instant,
    /// Service name → its meter per role.
    requests: Mutex<FastMap<Arc<str>, RoleMeters>>,
    /// Links closed because their peer read too slowly.
    pub(crate) slow_consumer_closes: AtomicU64,
}

impl Default for Meters {
    fn default() -> Self {
        Self {
            started: std::time::Instant::now(),
            requests: Mutex::default(),
            slow_consumer_closes: AtomicU64::new(0),
        }
    }
}

impl Meters {
    /// The meter of `service`'s requests in `role`.
    pub(crate) fn requests(&self, service: &str, role: RequestRole) -> Arc<RequestMeter> {
        let mut meters = self.requests.lock();
        let name = if meters.len() < MAX_METERED || meters.contains_key(service) {
            service
        } else {
            OTHER
        };
        // Only the first request of a name allocates its key.
        if !meters.contains_key(name) {
            meters.insert(Arc::from(name), Default::default());
        }
        match meters.get_mut(name) {
            Some(roles) => roles[role_index(role)].get_or_insert_default().clone(),
            None => Arc::default(),
        }
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every meter's counts, by service name then role.
    pub(crate) fn request_stats(&self) -> Vec<RequestStats> {
        let meters: Vec<_> = self
            .requests
            .lock()
            .iter()
            .flat_map(|(name, roles)| {
                ROLES
                    .iter()
                    .zip(roles)
                    .filter_map(|(role, meter)| Some((name.clone(), *role, meter.clone()?)))
            })
            .collect();
        let mut stats: Vec<RequestStats> = meters
            .iter()
            .map(|(name, role, meter)| meter.snapshot(name, *role))
            .collect();
        stats.sort_by(|a, b| (&a.service, a.role).cmp(&(&b.service, b.role)));
        stats
    }
}

/// How many (publisher, subject) pairs are counted by name; reports on others only in
/// [`Traffic::subjects_overflow`].
const MAX_SUBJECTS: usize = 1024;

/// The report counts the core keeps under its lock.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) published: u64,
    pub(crate) received: u64,
    pub(crate) delivered: u64,
    /// What the queues of links and monitors that have gone had counted.
    pub(crate) retired: QueueTotals,
    /// Publisher address → subject → reports.
    subjects: FastMap<Arc<str>, FastMap<Arc<str>, u64>>,
    tracked: usize,
    pub(crate) subjects_overflow: u64,
}

/// What one queue has counted.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct QueueTotals {
    pub(crate) sent: u64,
    pub(crate) coalesced: u64,
    pub(crate) dropped: u64,
}

impl std::ops::AddAssign for QueueTotals {
    fn add_assign(&mut self, other: Self) {
        self.sent += other.sent;
        self.coalesced += other.coalesced;
        self.dropped += other.dropped;
    }
}

/// The reports of one publisher on the subject it reported on last, not yet added to
/// [`Traffic`]'s table. A publisher mostly reports on one subject again and again, so
/// counting here costs a comparison of the subject instead of two hash lookups per report;
/// the table is updated when the subject changes and before every snapshot.
#[derive(Debug, Default)]
pub(crate) struct SubjectCount {
    subject: Option<Arc<str>>,
    reports: u64,
}

impl SubjectCount {
    /// Counts one report on `subject` (shared as `shared` gives it when new); hands back
    /// the previous subject's count when the subject changed.
    pub(crate) fn count(
        &mut self,
        subject: &str,
        shared: impl FnOnce() -> Arc<str>,
    ) -> Option<(Arc<str>, u64)> {
        if self.subject.as_deref() == Some(subject) {
            self.reports += 1;
            return None;
        }
        let previous = self.take();
        self.subject = Some(shared());
        self.reports = 1;
        previous
    }

    /// The count not yet added, if any; counting starts again from zero.
    pub(crate) fn take(&mut self) -> Option<(Arc<str>, u64)> {
        let reports = std::mem::take(&mut self.reports);
        let subject = self.subject.clone()?;
        (reports > 0).then_some((subject, reports))
    }
}

impl Traffic {
    /// Adds `reports` reports of `publisher` on `subject`.
    pub(crate) fn add_subject(&mut self, publisher: &str, (subject, reports): (Arc<str>, u64)) {
        let tracked = self.tracked;
        if let Some(subjects) = self.subjects.get_mut(publisher) {
            if let Some(n) = subjects.get_mut(&subject) {
                *n += reports;
                return;
            }
            if tracked < MAX_SUBJECTS {
                subjects.insert(subject, reports);
                self.tracked += 1;
                return;
            }
        } else if tracked < MAX_SUBJECTS {
            let mut subjects = FastMap::default();
            subjects.insert(subject, reports);
            self.subjects.insert(Arc::from(publisher), subjects);
            self.tracked += 1;
            return;
        }
        self.subjects_overflow += reports;
    }

    /// Counts one report of `publisher` on `subject`.
    #[cfg(test)]
    pub(crate) fn count_subject(&mut self, publisher: &str, subject: &str) {
        self.add_subject(publisher, (Arc::from(subject), 1));
    }

    /// Forgets a publisher that has gone, making room for others.
    pub(crate) fn forget_publisher(&mut self, publisher: &str) {
        if let Some(subjects) = self.subjects.remove(publisher) {
            self.tracked -= subjects.len();
        }
    }

    /// The counted subjects, with each publisher's name as `name_of` gives it.
    pub(crate) fn subject_stats(&self, name_of: impl Fn(&str) -> String) -> Vec<SubjectStats> {
        let mut stats: Vec<SubjectStats> = self
            .subjects
            .iter()
            .flat_map(|(address, subjects)| {
                let publisher = name_of(address);
                subjects
                    .iter()
                    .map(move |(subject, &reports)| SubjectStats {
                        publisher: publisher.clone(),
                        address: address.to_string(),
                        subject: subject.to_string(),
                        reports,
                    })
            })
            .collect();
        stats.sort_by(|a, b| (&a.publisher, &a.subject).cmp(&(&b.publisher, &b.subject)));
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_meters_are_bounded_and_count_outcomes_and_latency() {
        let meters = Meters::default();
        let echo = meters.requests("echo", RequestRole::Served);
        echo.record(None, Duration::from_micros(70));
        echo.record(Some(55), Duration::from_millis(3));
        assert!(Arc::ptr_eq(
            &echo,
            &meters.requests("echo", RequestRole::Served)
        ));
        for i in 0..MAX_METERED + 10 {
            meters.requests(&format!("s{i}"), RequestRole::Called);
        }
        let stats = meters.request_stats();
        assert_eq!(stats.len(), MAX_METERED + 1, "the others share one meter");
        assert!(stats.iter().any(|s| s.service == OTHER));
        let echo = stats.iter().find(|s| s.service == "echo").unwrap();
        assert_eq!((echo.ok, echo.failed()), (1, 1));
        assert_eq!(echo.failures.get(&55), Some(&1));
        assert_eq!(echo.latency.count(), 2);
        assert_eq!(echo.latency.buckets[1], 1, "70 µs is in (50, 100]");
        assert_eq!(echo.latency.sum_us, 3070);
    }

    #[test]
    fn subjects_are_bounded_and_forgotten_with_their_publisher() {
        let mut traffic = Traffic::default();
        let a = "1@p!a";
        for i in 0..MAX_SUBJECTS + 5 {
            traffic.count_subject(a, &format!("s.{i}"));
        }
        traffic.count_subject(a, "s.0");
        assert_eq!(traffic.subjects_overflow, 5);
        let stats = traffic.subject_stats(|_| "a".to_owned());
        assert_eq!(stats.len(), MAX_SUBJECTS);
        assert_eq!(
            stats.iter().find(|s| s.subject == "s.0").map(|s| s.reports),
            Some(2)
        );
        traffic.forget_publisher("1@p!a");
        traffic.count_subject(a, "new");
        assert_eq!(traffic.subject_stats(|_| "a".to_owned()).len(), 1);
    }
}
