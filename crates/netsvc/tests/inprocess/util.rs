use std::future::Future;
use std::time::Duration;

use netsvc::{Announcement, RegistryWatch, ReportEvent, ReportMonitor};

/// How long a test waits for an event that must come.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`DEADLINE`].
pub(crate) async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("event did not arrive before the deadline")
}

pub(crate) async fn next_announcement(watch: &mut RegistryWatch) -> Announcement {
    within(watch.recv()).await.expect("watch ended")
}

pub(crate) async fn next_event(monitor: &mut ReportMonitor) -> ReportEvent {
    within(monitor.recv()).await.expect("monitor ended")
}

/// Everything queued right now, without waiting.
pub(crate) fn drain_announcements(watch: &mut RegistryWatch) -> Vec<Announcement> {
    let mut out = Vec::new();
    while let Ok(Some(a)) = watch.try_recv() {
        out.push(a);
    }
    out
}

pub(crate) fn drain_events(monitor: &mut ReportMonitor) -> Vec<ReportEvent> {
    let mut out = Vec::new();
    while let Some(e) = monitor.try_recv() {
        out.push(e);
    }
    out
}

/// The (subject, integer content) pairs of the reports among `events`.
pub(crate) fn reports_of(events: &[ReportEvent]) -> Vec<(String, i64)> {
    events
        .iter()
        .filter_map(|e| match e {
            ReportEvent::Report(r) => Some((
                r.subject().to_owned(),
                r.value().ok().and_then(|v| v.as_i64()).unwrap_or(i64::MIN),
            )),
            _ => None,
        })
        .collect()
}
