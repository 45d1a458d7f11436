//! The bounded queues between the runtime's state and the tasks that consume events.
//!
//! Every queue here is bounded, and each has one documented policy for a consumer that
//! falls behind, because the state owner must never wait for a consumer:
//!
//! - [`EventSender`] (announcements, subscription events): when full, the consumer is cut
//!   off and its next receive after the queued events says [`RecvError::Lagged`]. Dropping
//!   events silently would break the "no gap" promise; re-subscribing gives a fresh
//!   snapshot.
//! - [`ReportQueue`] (reports): when full, a new report *replaces* the queued report of the
//!   same publisher and subject (coalescing: the subscriber ends up with the latest value of
//!   each subject); past a hard limit of queued events a report for a subject not yet
//!   queued is dropped. Either way the subscriber is told how many reports it missed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::meters::QueueTotals;
use crate::model::collections::FastMap;
use crate::model::report::{Report, ReportEvent};

/// Why a receive found no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The consumer fell behind by more than the queue's capacity and was cut off. Subscribe
    /// again for a fresh snapshot.
    #[error("the subscriber fell behind and was cut off; subscribe again")]
    Lagged,
    /// The source is gone: the runtime shut down or the service was withdrawn.
    #[error("the subscription is closed")]
    Closed,
}

/// Producer half of an event queue whose consumer is cut off when it lags.
#[derive(Debug)]
pub(crate) struct EventSender<T> {
    tx: mpsc::Sender<T>,
    lagged: Arc<AtomicBool>,
}

/// Consumer half of an event queue.
#[derive(Debug)]
pub(crate) struct EventReceiver<T> {
    rx: mpsc::Receiver<T>,
    lagged: Arc<AtomicBool>,
    /// Whether a stream over it has said how it ended.
    ended: bool,
}

/// Makes an event queue holding at most `capacity` undelivered events.
pub(crate) fn event_queue<T>(capacity: usize) -> (EventSender<T>, EventReceiver<T>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let lagged = Arc::new(AtomicBool::new(false));
    (
        EventSender {
            tx,
            lagged: lagged.clone(),
        },
        EventReceiver {
            rx,
            lagged,
            ended: false,
        },
    )
}

impl<T> EventSender<T> {
    /// Queues an event. Returns false when this sender should be dropped: the consumer has
    /// gone, or has just been cut off for lagging.
    pub(crate) fn send(&self, event: T) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lagged.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl<T> EventReceiver<T> {
    pub(crate) async fn recv(&mut self) -> Result<T, RecvError> {
        match self.rx.recv().await {
            Some(event) => Ok(event),
            None => Err(self.end()),
        }
    }

    pub(crate) fn try_recv(&mut self) -> Result<Option<T>, RecvError> {
        match self.rx.try_recv() {
            Ok(event) => Ok(Some(event)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(self.end()),
        }
    }

    /// The next event for a stream: events, then `Err(Lagged)` if the consumer was cut
    /// off, then the end.
    pub(crate) fn poll_next_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<T, RecvError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) => {
                self.ended = true;
                match self.end() {
                    RecvError::Lagged => Poll::Ready(Some(Err(RecvError::Lagged))),
                    RecvError::Closed => Poll::Ready(None),
                }
            }
        }
    }

    fn end(&self) -> RecvError {
        if self.lagged.load(Ordering::Acquire) {
            RecvError::Lagged
        } else {
            RecvError::Closed
        }
    }
}

/// How many events a coalescing report queue holds, as a multiple of its capacity, before it
/// drops reports it cannot coalesce.
const HARD_LIMIT_FACTOR: usize = 8;

/// (publisher address, subject): reports with the same key replace each other when the
/// consumer is behind.
type ReportKey = (Arc<str>, Arc<str>);

/// The bounded, coalescing queue of one report subscription.
#[derive(Debug)]
pub(crate) struct ReportQueue {
    state: Mutex<QueueState>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    /// Events in delivery order; the sequence number of `events[0]` is `head_seq`.
    events: VecDeque<ReportEvent>,
    head_seq: u64,
    /// Only while over capacity: (publisher address, subject) → sequence number of the queued
    /// report, so that a newer report can replace it in place.
    coalesce: Option<FastMap<ReportKey, u64>>,
    missed: u64,
    /// Reports coalesced and dropped since the queue was made, for the runtime's stats.
    coalesced_total: u64,
    dropped_total: u64,
    closed: bool,
    /// The consumer, when it waits for the queue to stop being empty (there is only ever
    /// one consumer).
    waiting: Option<Waker>,
}

impl ReportQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    /// Queues an event, coalescing or dropping reports when the consumer is behind.
    pub(crate) fn push(&self, event: ReportEvent) {
        let mut s = self.state.lock();
        if s.closed {
            return;
        }
        // The one consumer only waits after finding the queue empty, so only the push that
        // ends emptiness needs to wake it.
        let was_empty = s.events.is_empty() && s.missed == 0;
        if s.events.len() >= self.capacity {
            if let ReportEvent::Report(report) = &event {
                if s.coalesce_into(report, &event) {
                    s.coalesced_total += 1;
                    return;
                }
                if s.events.len() >= self.capacity * HARD_LIMIT_FACTOR {
                    s.missed += 1;
                    s.dropped_total += 1;
                    return;
                }
            }
        } else if s.events.len() < self.capacity / 2 {
            s.coalesce = None;
        }
        let seq = s.head_seq + s.events.len() as u64;
        if let (Some(index), ReportEvent::Report(r)) = (&mut s.coalesce, &event) {
            index.insert(key_of(r), seq);
        }
        s.events.push_back(event);
        let waiting = if was_empty { s.waiting.take() } else { None };
        drop(s);
        if let Some(consumer) = waiting {
            consumer.wake();
        }
    }

    /// Reports coalesced and dropped so far.
    pub(crate) fn totals(&self) -> QueueTotals {
        let s = self.state.lock();
        QueueTotals {
            sent: 0,
            coalesced: s.coalesced_total,
            dropped: s.dropped_total,
        }
    }

    /// Ends the queue: the consumer gets what is queued, then `None`.
    pub(crate) fn close(&self) {
        let waiting = {
            let mut s = self.state.lock();
            s.closed = true;
            s.waiting.take()
        };
        if let Some(consumer) = waiting {
            consumer.wake();
        }
    }

    /// Moves every queued event into `out` (which the consumer has emptied); whether any
    /// moved.
    pub(crate) fn try_pop_all(&self, out: &mut VecDeque<ReportEvent>) -> bool {
        self.state.lock().take_all(out)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Waits for events and moves them all into `out`; leaves `out` empty once the queue is
    /// closed and drained.
    pub(crate) async fn pop_all(&self, out: &mut VecDeque<ReportEvent>) {
        std::future::poll_fn(|cx| self.poll_pop_all(cx, out)).await;
    }

    /// Moves every queued event into `out` (which the consumer has emptied), or registers
    /// the consumer to be woken by the next push. Ready with `out` empty once the queue is
    /// closed and drained.
    pub(crate) fn poll_pop_all(
        &self,
        cx: &mut Context<'_>,
        out: &mut VecDeque<ReportEvent>,
    ) -> Poll<()> {
        let mut s = self.state.lock();
        if s.take_all(out) || s.closed {
            return Poll::Ready(());
        }
        // Registered under the lock that pushes take: no push can slip in between the
        // check above and this.
        match &mut s.waiting {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

fn key_of(report: &Report) -> ReportKey {
    (
        report.publisher().address_arc().clone(),
        report.subject_arc().clone(),
    )
}

impl QueueState {
    /// Hands every event to the consumer, the count of reports missed first.
    fn take_all(&mut self, out: &mut VecDeque<ReportEvent>) -> bool {
        if self.missed > 0 {
            out.push_back(ReportEvent::Missed(std::mem::take(&mut self.missed)));
        }
        if !self.events.is_empty() {
            self.head_seq += self.events.len() as u64;
            // Whatever the consumer holds can no longer be coalesced.
            self.coalesce = None;
            if out.is_empty() {
                std::mem::swap(out, &mut self.events);
            } else {
                out.extend(self.events.drain(..));
            }
        }
        !out.is_empty()
    }

    /// Replaces the queued report of the same publisher and subject, if there is one.
    fn coalesce_into(&mut self, report: &Report, event: &ReportEvent) -> bool {
        if self.coalesce.is_none() {
            let mut index = FastMap::default();
            for (i, e) in self.events.iter().enumerate() {
                if let ReportEvent::Report(r) = e {
                    index.insert(key_of(r), self.head_seq + i as u64);
                }
            }
            self.coalesce = Some(index);
        }
        let Some(index) = &self.coalesce else {
            return false;
        };
        let Some(&seq) = index.get(&key_of(report)) else {
            return false;
        };
        let Some(slot) = self.events.get_mut((seq - self.head_seq) as usize) else {
            return false;
        };
        *slot = event.clone();
        self.missed += 1;
        true
    }
}
