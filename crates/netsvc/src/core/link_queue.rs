//! The bounded outbound queue of one exchange link.
//!
//! Producers (the runtime's state owner, under its lock) never wait: they push and move on.
//! The link's task drains the queue into the socket. The policy when the peer reads slower
//! than we write, measured in queued bytes:
//!
//! - control frames (registry, subscriptions, responses, failures) are never dropped; past
//!   the hard limit the link is closed as a slow consumer, which withdraws everything learned
//!   through it (a clear failure rather than silent loss);
//! - requests are refused past the soft limit: the caller gets failure 51 at once;
//! - reports past the soft limit replace the queued report of the same publisher and
//!   subject (the peer ends up with the latest value of each subject); reports that cannot
//!   be coalesced are dropped past the hard limit. The peer is told how many reports of each
//!   publisher it lost with a MISSED frame.
//!
//! While the peer keeps up, frames are encoded straight into one contiguous buffer that the
//! link task takes whole (a pointer swap) and writes with one system call: no allocation,
//! no per-frame bookkeeping. Only once the soft limit is passed do new frames queue one by
//! one in a backlog, where reports can still be coalesced; the backlog is written after the
//! buffer, so the order of frames on the link never changes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use netsvc_proto::wire::{self, CloseCode, Frame, Text, frame};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::meters::QueueTotals;
use crate::model::collections::FastMap;
use crate::model::failure::Failure;
use crate::model::grant::Grants;
use crate::model::ids::{Conv, Id as _};

/// Byte limits of a link's queue, and the largest frame body the peer accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    pub(crate) soft: usize,
    pub(crate) hard: usize,
    /// The peer's `max_frame` from its HELLO: nothing larger is ever queued (PROTOCOL.md
    /// §6.2), since the peer would close the link on it.
    pub(crate) peer_max_frame: usize,
}

/// A frame that the peer would refuse for its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge {
    /// The frame's body size in bytes.
    pub(crate) size: usize,
    /// The peer's limit.
    pub(crate) limit: usize,
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestRefused {
    /// The queue is over its soft limit (or the link is closing): failure 51.
    Congested,
    /// The request is larger than the peer accepts: failure 42.
    TooLarge(TooLarge),
}

/// (publisher address, subject): reports with the same key may be coalesced.
pub(crate) type CoalesceKey = (Text, Text);

/// Buffers that grew past this while the peer was behind are freed once written, so a
/// burst does not pin its peak memory on every link for the link's lifetime.
const KEEP_CAPACITY: usize = 256 * 1024;

/// The most the link task takes from the backlog at once (the buffer is taken whole).
const BACKLOG_BATCH: usize = 256 * 1024;

/// A frame queued in the backlog.
enum Item {
    Control(Bytes),
    Report { raw: Bytes, key: CoalesceKey },
}

impl Item {
    fn size(&self) -> usize {
        match self {
            Self::Control(b) | Self::Report { raw: b, .. } => b.len(),
        }
    }
}

/// How the link should end once the queue is done.
#[derive(Debug, Clone)]
pub(crate) struct Closing {
    pub(crate) code: CloseCode,
    pub(crate) reason: String,
}

#[derive(Default)]
struct State {
    /// Encoded frames, in order, ahead of everything in `backlog`.
    flat: BytesMut,
    /// Frames queued since the soft limit was passed, until the link task has caught up.
    backlog: VecDeque<Item>,
    /// Sequence number of the backlog's front item.
    head_seq: u64,
    backlog_bytes: usize,
    /// Bytes the link task has taken and not written yet: still this link's, for every
    /// limit (a write stuck on a peer that does not read must not make room for more).
    in_flight: usize,
    /// Report key → sequence number of its newest report in the backlog.
    coalesce: FastMap<CoalesceKey, u64>,
    /// Reports handed to this queue, and of them those coalesced and dropped.
    sent: u64,
    coalesced: u64,
    dropped: u64,
    /// Bytes the link task has written.
    bytes_out: u64,
    /// Reports lost per publisher since the peer was last told (with a MISSED frame).
    untold: FastMap<Text, u64>,
    closing: Option<Closing>,
    close_sent: bool,
    /// Set when this link stayed congested past the backpressure limit: links feeding it
    /// stop waiting for it until it has drained to half its soft limit.
    slow: bool,
}

impl State {
    /// Bytes queued and not yet taken by the link task: what pacing and coalescing go by
    /// (a paced publisher waits while this is over the soft limit, so its reports never
    /// coalesce).
    fn waiting(&self) -> usize {
        self.flat.len() + self.backlog_bytes
    }

    /// Every byte the link holds, taken or not: what the memory bound (the hard limit) and
    /// the refusal of requests go by.
    fn queued(&self) -> usize {
        self.waiting() + self.in_flight
    }

    fn push_backlog(&mut self, item: Item) {
        if let Item::Report { key, .. } = &item {
            let seq = self.head_seq + self.backlog.len() as u64;
            self.coalesce.insert(key.clone(), seq);
        }
        self.backlog_bytes += item.size();
        self.backlog.push_back(item);
    }

    /// Moves queued frames to `out` (at least everything in `flat`); whether any moved.
    fn take(&mut self, out: &mut BytesMut) -> bool {
        let mut any = false;
        if !self.flat.is_empty() {
            if out.is_empty() {
                std::mem::swap(out, &mut self.flat);
            } else {
                out.extend_from_slice(&self.flat);
                self.flat.clear();
            }
            any = true;
        }
        while out.len() < BACKLOG_BATCH {
            let Some(item) = self.backlog.pop_front() else {
                break;
            };
            self.backlog_bytes -= item.size();
            let seq = self.head_seq;
            self.head_seq += 1;
            match item {
                Item::Control(raw) => out.extend_from_slice(&raw),
                Item::Report { raw, key } => {
                    out.extend_from_slice(&raw);
                    if self.coalesce.get(&key) == Some(&seq) {
                        self.coalesce.remove(&key);
                    }
                }
            }
            any = true;
        }
        if self.backlog.is_empty() && self.coalesce.capacity() > 64 {
            self.coalesce = FastMap::default();
        }
        // Tell the peer what it lost, after the reports that replaced them.
        for (publisher, count) in self.untold.drain() {
            wire::encode(&Frame::Missed(frame::Missed { publisher, count }), out);
            any = true;
        }
        any
    }
}

/// A link queue's counts ([`LinkQueue::traffic`]).
pub(crate) struct QueueTraffic {
    pub(crate) totals: QueueTotals,
    pub(crate) bytes_in: u64,
    pub(crate) frames_in: u64,
    pub(crate) bytes_out: u64,
    /// Bytes queued and not yet written.
    pub(crate) queued: usize,
    /// Whether the link is being closed because its peer read too slowly.
    pub(crate) slow_consumer: bool,
}

/// One link's outbound queue.
pub(crate) struct LinkQueue {
    state: Mutex<State>,
    /// What the link task has read, counted by it (it holds no lock while reading).
    bytes_in: AtomicU64,
    frames_in: AtomicU64,
    notify: Notify,
    /// Woken when the queue drops back under its soft limit (for paced publishers).
    drained: Notify,
    limits: QueueLimits,
    /// The peer's user's rights, when it has limited ones: its `subscribe` rule decides
    /// which reports may be sent here, whatever path they take to this queue.
    grants: Option<Arc<Grants>>,
}

impl std::fmt::Debug for LinkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("LinkQueue")
            .field("bytes", &s.queued())
            .field("backlog", &s.backlog.len())
            .finish()
    }
}

impl LinkQueue {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        Self {
            state: Mutex::default(),
            bytes_in: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            notify: Notify::new(),
            drained: Notify::new(),
            limits,
            grants: None,
        }
    }

    /// A queue toward a peer whose user has `grants`.
    pub(crate) fn restricted(mut self, grants: Option<Arc<Grants>>) -> Self {
        self.grants = grants;
        self
    }

    /// Whether a report on `subject` may be sent to the peer (its user's `subscribe`
    /// permission). Every path that queues a report here asks first.
    pub(crate) fn admits_subject(&self, subject: &str) -> bool {
        self.grants
            .as_ref()
            .is_none_or(|g| g.subscribe.allows(subject))
    }

    /// Whether the queue is over its soft limit (reports are being coalesced).
    pub(crate) fn is_congested(&self) -> bool {
        let s = self.state.lock();
        s.waiting() > self.limits.soft && s.closing.is_none()
    }

    /// Whether links that forward reports to this one should wait for it: it is congested
    /// and has not been declared a slow consumer.
    pub(crate) fn applies_backpressure(&self) -> bool {
        let s = self.state.lock();
        s.waiting() > self.limits.soft && s.closing.is_none() && !s.slow
    }

    /// Declares the peer a slow consumer (it stayed congested past the backpressure limit).
    pub(crate) fn mark_slow(&self) {
        let mut s = self.state.lock();
        if s.waiting() > self.limits.soft {
            s.slow = true;
        }
    }

    /// Waits until the queue is back under its soft limit, or closed.
    pub(crate) async fn uncongested(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.is_congested() {
                return;
            }
            drained.await;
        }
    }

    /// Queues a control frame. One larger than the peer accepts is not sent (and logged):
    /// the callers that can answer for such a frame use [`push_reply`](Self::push_reply)
    /// and [`try_push_request`](Self::try_push_request) instead.
    pub(crate) fn push(&self, frame: Frame) {
        if let Err(e) = self.push_control(|out| wire::encode(&frame, out)) {
            tracing::warn!(
                "{} frame of {} bytes not sent: over the peer's frame limit of {}",
                frame.name(),
                e.size,
                e.limit
            );
        }
    }

    /// Queues a RESPONSE or FAILURE; one too large for the peer is replaced by FAILURE 52
    /// saying so, so that the caller still gets an answer.
    pub(crate) fn push_reply(&self, frame: Frame) {
        let Err(e) = self.push_control(|out| wire::encode(&frame, out)) else {
            return;
        };
        let conv = match &frame {
            Frame::Response(r) => r.conv,
            Frame::Failure(f) => f.conv,
            _ => return,
        };
        self.push(failure_frame(
            Conv::from_raw(conv),
            &Failure::response_too_large(e.size, e.limit),
        ));
    }

    /// Whether an encoded frame of `len` bytes (its length prefix included) is within the
    /// peer's limit.
    pub(crate) fn fits(&self, len: usize) -> bool {
        len <= self.limits.peer_max_frame.saturating_add(4)
    }

    /// Queues one already-encoded control frame; one over the peer's limit is not sent.
    pub(crate) fn push_raw(&self, raw: &[u8]) {
        if let Err(e) = self.push_control(|out| {
            out.extend_from_slice(raw);
            raw.len()
        }) {
            tracing::warn!(
                "frame of {} bytes not sent: over the peer's frame limit of {}",
                e.size,
                e.limit
            );
        }
    }

    /// Queues already-encoded frames, each of which the caller has checked with
    /// [`fits`](Self::fits).
    pub(crate) fn push_frames(&self, raw: &[u8]) {
        let _ = self.push_control(|out| {
            out.extend_from_slice(raw);
            0
        });
    }

    /// Encodes with `encode` (which returns the encoded frame's size including its length
    /// prefix, or 0 for pre-checked bytes) unless the result would be over the peer's limit.
    fn push_control(&self, encode: impl FnOnce(&mut BytesMut) -> usize) -> Result<(), TooLarge> {
        let mut s = self.state.lock();
        if s.closing.is_some() {
            return Ok(());
        }
        let limit = self.limits.peer_max_frame;
        let too_large = |size: usize| {
            (size > limit.saturating_add(4)).then(|| TooLarge {
                size: size - 4,
                limit,
            })
        };
        let was_empty = s.waiting() == 0;
        if s.backlog.is_empty() {
            let before = s.flat.len();
            let size = encode(&mut s.flat);
            if let Some(e) = too_large(size) {
                s.flat.truncate(before);
                return Err(e);
            }
        } else {
            let mut buf = BytesMut::new();
            if let Some(e) = too_large(encode(&mut buf)) {
                return Err(e);
            }
            s.push_backlog(Item::Control(buf.freeze()));
        }
        let queued = s.queued();
        if queued > self.limits.hard {
            self.close_locked(
                &mut s,
                CloseCode::SlowConsumer,
                format!(
                    "peer too slow: {queued} bytes queued, over the limit of {}",
                    self.limits.hard
                ),
                false,
            );
        }
        drop(s);
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Queues a request unless the queue is over its soft limit or the request is larger
    /// than the peer accepts.
    pub(crate) fn try_push_request(&self, frame: &Frame) -> Result<(), RequestRefused> {
        {
            let s = self.state.lock();
            if s.closing.is_some() || s.queued() > self.limits.soft {
                return Err(RequestRefused::Congested);
            }
        }
        self.push_control(|out| wire::encode(frame, out))
            .map_err(RequestRefused::TooLarge)
    }

    /// Queues a TARGETED frame of `publisher`'s; one too large for the peer is counted as a
    /// missed report of that publisher instead.
    pub(crate) fn push_targeted(&self, frame: Frame, publisher: &Text) {
        {
            let mut s = self.state.lock();
            if s.closing.is_some() {
                return;
            }
            s.sent += 1;
        }
        if self.push_control(|out| wire::encode(&frame, out)).is_err() {
            let mut s = self.state.lock();
            s.dropped += 1;
            *s.untold.entry(publisher.clone()).or_default() += 1;
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues an encoded REPORT frame, coalescing or dropping it when the peer is behind.
    /// `key` is only asked for then. Returns whether the queue is now congested (over its
    /// soft limit), for publishers that pace themselves.
    pub(crate) fn push_report(&self, raw: &[u8], key: impl FnOnce() -> CoalesceKey) -> bool {
        let mut s = self.state.lock();
        if s.closing.is_some() {
            return false;
        }
        s.sent += 1;
        if !self.fits(raw.len()) {
            // The peer would refuse it: it is told it missed one instead.
            s.dropped += 1;
            *s.untold.entry(key().0).or_default() += 1;
            drop(s);
            self.notify.notify_one();
            return false;
        }
        let waiting = s.waiting();
        let was_empty = waiting == 0;
        if waiting > self.limits.soft {
            let key = key();
            if let Some(&seq) = s.coalesce.get(&key) {
                let pos = (seq - s.head_seq) as usize;
                if let Some(Item::Report { raw: old, .. }) = s.backlog.get_mut(pos) {
                    let old_size = old.len();
                    *old = Bytes::copy_from_slice(raw);
                    s.backlog_bytes = s.backlog_bytes - old_size + raw.len();
                    s.coalesced += 1;
                    *s.untold.entry(key.0).or_default() += 1;
                    return true;
                }
            }
            if s.queued() > self.limits.hard {
                s.dropped += 1;
                *s.untold.entry(key.0).or_default() += 1;
                return true;
            }
            s.push_backlog(Item::Report {
                raw: Bytes::copy_from_slice(raw),
                key,
            });
        } else if s.backlog.is_empty() {
            s.flat.extend_from_slice(raw);
        } else {
            let key = key();
            s.push_backlog(Item::Report {
                raw: Bytes::copy_from_slice(raw),
                key,
            });
        }
        let congested = s.waiting() > self.limits.soft;
        drop(s);
        if was_empty {
            self.notify.notify_one();
        }
        congested
    }

    /// Ends the link: with `drain`, after the queued frames; otherwise at once. A CLOSE
    /// frame with `code` and `reason` is sent last.
    pub(crate) fn close(&self, code: CloseCode, reason: impl Into<String>, drain: bool) {
        let mut s = self.state.lock();
        if s.closing.is_none() {
            self.close_locked(&mut s, code, reason.into(), drain);
        }
        drop(s);
        self.notify.notify_one();
        self.drained.notify_waiters();
    }

    fn close_locked(&self, s: &mut State, code: CloseCode, reason: String, drain: bool) {
        s.closing = Some(Closing { code, reason });
        if !drain {
            s.flat = BytesMut::new();
            s.backlog.clear();
            s.backlog_bytes = 0;
            s.coalesce.clear();
        }
    }

    /// The link task wrote `n` bytes of what it took: they leave the queue's count.
    pub(crate) fn wrote(&self, n: usize) {
        let mut s = self.state.lock();
        s.in_flight = s.in_flight.saturating_sub(n);
        s.bytes_out += n as u64;
    }

    /// The link task read `bytes` bytes holding `frames` whole frames.
    pub(crate) fn read(&self, bytes: usize, frames: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.frames_in.fetch_add(frames as u64, Ordering::Relaxed);
    }

    /// What the queue has counted, and what it holds now.
    pub(crate) fn traffic(&self) -> QueueTraffic {
        let s = self.state.lock();
        QueueTraffic {
            totals: QueueTotals {
                sent: s.sent,
                coalesced: s.coalesced,
                dropped: s.dropped,
            },
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            bytes_out: s.bytes_out,
            queued: s.queued(),
            slow_consumer: s
                .closing
                .as_ref()
                .is_some_and(|c| c.code == CloseCode::SlowConsumer),
        }
    }

    /// Frees the buffer's memory if nothing is queued (for a link that has gone quiet).
    pub(crate) fn release_idle_buffer(&self) {
        let mut s = self.state.lock();
        if s.flat.is_empty() && s.flat.capacity() > 0 {
            s.flat = BytesMut::new();
        }
    }

    /// How the link is to close, if it is.
    pub(crate) fn closing(&self) -> Option<Closing> {
        self.state.lock().closing.clone()
    }

    /// Waits for queued frames and moves a batch of them into `out` (taking the queue's
    /// buffer whole when `out` is empty). Returns false when the queue is closed and nothing
    /// is left to send (the CLOSE frame included).
    pub(crate) async fn next_batch(&self, out: &mut BytesMut) -> bool {
        if out.is_empty() && out.capacity() > KEEP_CAPACITY {
            *out = BytesMut::new();
        }
        loop {
            let notified = self.notify.notified();
            match self.try_next_batch(out) {
                Some(more) => return more,
                None => notified.await,
            }
        }
    }

    /// Moves a batch of queued frames into `out` if there is one: `Some(true)` then,
    /// `Some(false)` once the queue is closed and everything (the CLOSE frame included) is
    /// out, `None` when there is nothing to send yet.
    pub(crate) fn try_next_batch(&self, out: &mut BytesMut) -> Option<bool> {
        let mut s = self.state.lock();
        let before = out.len();
        if s.take(out) {
            s.in_flight += out.len() - before;
            let waiting = s.waiting();
            if waiting <= self.limits.soft {
                self.drained.notify_waiters();
            }
            if waiting <= self.limits.soft / 2 {
                s.slow = false;
            }
            return Some(true);
        }
        let closing = s.closing.as_ref()?;
        if s.close_sent {
            return Some(false);
        }
        let frame = Frame::Close(frame::Close {
            code: closing.code,
            reason: Text::from(closing.reason.as_str()),
        });
        wire::encode(&frame, out);
        s.close_sent = true;
        Some(true)
    }
}

/// The FAILURE frame carrying `failure` for conversation `conv`.
pub(crate) fn failure_frame(conv: Conv, failure: &Failure) -> Frame {
    Frame::Failure(frame::Failure {
        conv: conv.raw(),
        error: failure.error,
        description: Text::from(failure.description.as_str()),
        origin: Text::from(failure.origin.as_str()),
        details: Text::from(failure.details.as_str()),
        withdrawn: failure.is_withdrawn(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> QueueLimits {
        QueueLimits {
            soft: 100,
            hard: 1000,
            peer_max_frame: 1 << 20,
        }
    }

    fn key(subject: &str) -> CoalesceKey {
        (Text::from("p"), Text::from(subject))
    }

    async fn drain(q: &LinkQueue) -> Vec<u8> {
        let mut out = BytesMut::new();
        assert!(q.next_batch(&mut out).await);
        q.wrote(out.len());
        out.to_vec()
    }

    #[tokio::test]
    async fn bytes_taken_but_not_yet_written_still_count() {
        let q = LinkQueue::new(limits());
        q.push_raw(&[0; 150]);
        let mut out = BytesMut::new();
        assert!(q.next_batch(&mut out).await);
        // The write is stuck: requests are refused as before the take (pacing only waits
        // for what has not been taken).
        assert!(!q.is_congested());
        let request = Frame::Cancel(frame::Cancel { conv: 1 });
        assert_eq!(q.try_push_request(&request), Err(RequestRefused::Congested));
        q.wrote(40);
        assert_eq!(q.try_push_request(&request), Err(RequestRefused::Congested));
        q.wrote(110);
        assert_eq!(q.try_push_request(&request), Ok(()));
        // And they count toward the hard limit: a stuck write plus more than the rest of
        // it closes the link.
        let mut out = BytesMut::new();
        assert!(q.next_batch(&mut out).await);
        q.push_raw(&[0; 990]);
        assert!(
            q.closing().is_none(),
            "the CANCEL taken and 990 bytes queued: within"
        );
        q.push_raw(&[0; 20]);
        assert_eq!(q.closing().map(|c| c.code), Some(CloseCode::SlowConsumer));
    }

    #[tokio::test]
    async fn frames_keep_their_order_across_the_soft_limit() {
        let q = LinkQueue::new(limits());
        q.push_raw(&[1; 60]);
        assert!(!q.push_report(&[2; 30], || key("a")));
        // Over the soft limit now: these go to the backlog, after the buffer.
        assert!(q.push_report(&[3; 30], || key("b")));
        q.push_raw(&[4; 10]);
        let out = drain(&q).await;
        let mut expected = vec![1; 60];
        expected.extend([2; 30]);
        expected.extend([3; 30]);
        expected.extend([4; 10]);
        assert_eq!(out, expected);
        assert!(!q.is_congested());
    }

    #[tokio::test]
    async fn congested_reports_replace_the_queued_one_of_their_subject() {
        let q = LinkQueue::new(limits());
        q.push_raw(&[0; 101]);
        assert!(q.push_report(&[1; 10], || key("a")));
        assert!(q.push_report(&[2; 10], || key("b")));
        assert!(q.push_report(&[3; 10], || key("a")));
        let totals = q.traffic().totals;
        assert_eq!((totals.coalesced, totals.dropped), (1, 0));
        let out = drain(&q).await;
        assert_eq!(&out[101..111], &[3; 10]);
        assert_eq!(&out[111..121], &[2; 10]);
        // Then the MISSED frame telling the peer that one report of `p` was lost.
        let mut missed = BytesMut::new();
        wire::encode(
            &Frame::Missed(frame::Missed {
                publisher: Text::from("p"),
                count: 1,
            }),
            &mut missed,
        );
        assert_eq!(&out[121..], &missed[..]);
    }

    #[tokio::test]
    async fn control_frames_past_the_hard_limit_close_the_link() {
        let q = LinkQueue::new(limits());
        q.push_raw(&[0; 1001]);
        let closing = q.closing().expect("closed");
        assert_eq!(closing.code, CloseCode::SlowConsumer);
        // Nothing but the CLOSE frame is sent, then the queue is done.
        let mut out = BytesMut::new();
        assert!(q.next_batch(&mut out).await);
        out.clear();
        assert!(!q.next_batch(&mut out).await);
    }

    #[tokio::test]
    async fn uncoalescable_reports_past_the_hard_limit_are_dropped_and_counted() {
        let q = LinkQueue::new(limits());
        q.push_raw(&[0; 101]);
        for i in 0..200 {
            q.push_report(&[1; 10], || key(&format!("s{i}")));
        }
        let QueueTotals {
            coalesced, dropped, ..
        } = q.traffic().totals;
        assert_eq!(coalesced, 0);
        assert!(dropped > 0);
        assert!(q.closing().is_none());
    }
}
