//! The receiving ends of report subscriptions: a subscriber's [`ReportMonitor`] and a
//! publisher's [`SubscriptionWatch`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use crate::core::queue::{EventReceiver, RecvError, ReportQueue};
use crate::core::shared::RuntimeShared;
use crate::model::ids::MonitorId;
use crate::model::report::{Report, ReportEvent, SubscriptionEvent};

/// A live report subscription. Dropping it unsubscribes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use netsvc::{Lifetime, ReportEvent, Runtime};
/// let rt = Runtime::new();
/// let clock = rt.service("clock").build()?;
/// clock.publish("system.time", 1, Lifetime::Forever)?;
///
/// let watcher = rt.service("").build()?;
/// let mut monitor = watcher.monitor_reports("clock", "system.*")?;
/// assert!(matches!(monitor.recv().await, Some(ReportEvent::PublisherAvailable(_))));
/// let report = monitor.next_report().await.unwrap();
/// assert_eq!((report.subject(), report.value()?.as_i64()), ("system.time", Some(1)));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ReportMonitor {
    id: MonitorId,
    queue: Arc<ReportQueue>,
    /// Events taken from the queue in one go and not handed out yet: the queue's lock is
    /// taken once per batch rather than once per report.
    taken: VecDeque<ReportEvent>,
    runtime: Weak<RuntimeShared>,
}

impl ReportMonitor {
    pub(crate) fn new(
        id: MonitorId,
        queue: Arc<ReportQueue>,
        runtime: Weak<RuntimeShared>,
    ) -> Self {
        Self {
            id,
            queue,
            taken: VecDeque::new(),
            runtime,
        }
    }

    /// The next event; `None` once the subscriber service is withdrawn or the runtime is gone.
    pub async fn recv(&mut self) -> Option<ReportEvent> {
        if self.taken.is_empty() {
            self.queue.pop_all(&mut self.taken).await;
        }
        self.taken.pop_front()
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<ReportEvent> {
        if self.taken.is_empty() {
            self.queue.try_pop_all(&mut self.taken);
        }
        self.taken.pop_front()
    }

    /// The next report, skipping publisher notifications and missed counts.
    pub async fn next_report(&mut self) -> Option<Report> {
        loop {
            if let ReportEvent::Report(r) = self.recv().await? {
                return Some(r);
            }
        }
    }

    /// Whether the subscription has ended (events may still be queued).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

/// The same events as [`recv`](ReportMonitor::recv); the stream ends when the
/// subscription does.
impl futures_core::Stream for ReportMonitor {
    type Item = ReportEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ReportEvent>> {
        let this = &mut *self;
        if this.taken.is_empty() && this.queue.poll_pop_all(cx, &mut this.taken).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(this.taken.pop_front())
    }
}

impl Drop for ReportMonitor {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.upgrade() {
            rt.core.lock().unsubscribe(self.id);
        }
    }
}

/// A publisher's view of its subscribers: the current ones first, then every change.
///
/// Also a [`Stream`](futures_core::Stream) of `Result<SubscriptionEvent, RecvError>`.
#[derive(Debug)]
pub struct SubscriptionWatch {
    pub(crate) rx: EventReceiver<SubscriptionEvent>,
}

impl futures_core::Stream for SubscriptionWatch {
    type Item = Result<SubscriptionEvent, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_next_event(cx)
    }
}

impl SubscriptionWatch {
    /// The next event.
    pub async fn recv(&mut self) -> Result<SubscriptionEvent, RecvError> {
        self.rx.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Result<Option<SubscriptionEvent>, RecvError> {
        self.rx.try_recv()
    }
}
