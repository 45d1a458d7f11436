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
//!   be coalesced are dropped past the hard limit.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use netsvc_proto::wire::{self, CloseCode, Frame, Text};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::fast::FastMap;

/// Byte limits of an outbound queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    pub(crate) soft: usize,
    pub(crate) hard: usize,
}

/// (publisher address, subject): reports with the same key may be coalesced.
pub(crate) type ReportKey = (Text, Text);

enum Item {
    Frame(Frame),
    Raw(Bytes),
    Report { raw: Bytes, key: ReportKey },
}

impl Item {
    fn size(&self) -> usize {
        match self {
            Self::Frame(f) => wire::size_bound(f),
            Self::Raw(b) | Self::Report { raw: b, .. } => b.len(),
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
    items: VecDeque<Item>,
    head_seq: u64,
    bytes: usize,
    /// Only while over the soft limit: report key → sequence number of its queued report.
    coalesce: Option<FastMap<ReportKey, u64>>,
    coalesced: u64,
    dropped: u64,
    /// Reports lost per publisher since the peer was last told (with a MISSED frame).
    untold: FastMap<Text, u64>,
    closing: Option<Closing>,
    close_sent: bool,
}

/// One link's outbound queue.
pub(crate) struct Outbound {
    state: Mutex<State>,
    notify: Notify,
    /// Woken when the queue drops back under its soft limit (for paced publishers).
    drained: Notify,
    limits: QueueLimits,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Outbound")
            .field("queued", &s.items.len())
            .field("bytes", &s.bytes)
            .finish()
    }
}

impl Outbound {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        Self {
            state: Mutex::default(),
            notify: Notify::new(),
            drained: Notify::new(),
            limits,
        }
    }

    /// Whether the queue is over its soft limit (reports are being coalesced).
    pub(crate) fn is_congested(&self) -> bool {
        let s = self.state.lock();
        s.bytes > self.limits.soft && s.closing.is_none()
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

    /// Queues a control frame.
    pub(crate) fn push(&self, frame: Frame) {
        self.push_item(Item::Frame(frame));
    }

    /// Queues already-encoded control bytes.
    pub(crate) fn push_raw(&self, raw: Bytes) {
        self.push_item(Item::Raw(raw));
    }

    fn push_item(&self, item: Item) {
        let mut s = self.state.lock();
        if s.closing.is_some() {
            return;
        }
        s.bytes += item.size();
        s.items.push_back(item);
        if s.bytes > self.limits.hard {
            let queued = s.bytes;
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
        self.notify.notify_one();
    }

    /// Queues a request unless the queue is over its soft limit.
    pub(crate) fn try_push_request(&self, frame: Frame) -> bool {
        {
            let s = self.state.lock();
            if s.closing.is_some() || s.bytes > self.limits.soft {
                return false;
            }
        }
        self.push(frame);
        true
    }

    /// Queues an encoded REPORT frame, coalescing or dropping it when the peer is behind.
    pub(crate) fn push_report(&self, raw: Bytes, key: ReportKey) {
        let mut s = self.state.lock();
        if s.closing.is_some() {
            return;
        }
        if s.bytes > self.limits.soft {
            if s.coalesce.is_none() {
                let head = s.head_seq;
                let index = s
                    .items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| match item {
                        Item::Report { key, .. } => Some((key.clone(), head + i as u64)),
                        _ => None,
                    })
                    .collect();
                s.coalesce = Some(index);
            }
            let found = s
                .coalesce
                .as_ref()
                .and_then(|index| index.get(&key).copied());
            if let Some(seq) = found {
                let pos = (seq - s.head_seq) as usize;
                let new_size = raw.len();
                if let Some(Item::Report { raw: old, .. }) = s.items.get_mut(pos) {
                    let old_size = old.len();
                    *old = raw;
                    s.bytes = s.bytes - old_size + new_size;
                    s.coalesced += 1;
                    *s.untold.entry(key.0).or_default() += 1;
                    return;
                }
            }
            if s.bytes > self.limits.hard {
                s.dropped += 1;
                *s.untold.entry(key.0).or_default() += 1;
                return;
            }
        } else {
            s.coalesce = None;
        }
        let seq = s.head_seq + s.items.len() as u64;
        if let Some(index) = &mut s.coalesce {
            index.insert(key.clone(), seq);
        }
        s.bytes += raw.len();
        s.items.push_back(Item::Report { raw, key });
        drop(s);
        self.notify.notify_one();
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
            s.items.clear();
            s.bytes = 0;
            s.coalesce = None;
        }
    }

    /// How the link is to close, if it is.
    pub(crate) fn closing(&self) -> Option<Closing> {
        self.state.lock().closing.clone()
    }

    /// How many reports were coalesced and dropped so far.
    #[allow(dead_code)]
    pub(crate) fn report_losses(&self) -> (u64, u64) {
        let s = self.state.lock();
        (s.coalesced, s.dropped)
    }

    /// Waits for queued frames and encodes a batch of them into `out`. Returns false when
    /// the queue is closed and nothing is left to send (the CLOSE frame included).
    pub(crate) async fn next_batch(&self, out: &mut BytesMut) -> bool {
        const BATCH_BYTES: usize = 256 * 1024;
        loop {
            {
                let mut s = self.state.lock();
                let mut any = false;
                while out.len() < BATCH_BYTES {
                    let Some(item) = s.items.pop_front() else {
                        break;
                    };
                    s.bytes -= item.size();
                    let head = s.head_seq;
                    if let (Some(index), Item::Report { key, .. }) = (&mut s.coalesce, &item)
                        && index.get(key) == Some(&head)
                    {
                        index.remove(key);
                    }
                    s.head_seq += 1;
                    match item {
                        Item::Frame(f) => {
                            wire::encode(&f, out);
                        }
                        Item::Raw(b) | Item::Report { raw: b, .. } => out.extend_from_slice(&b),
                    }
                    any = true;
                }
                if any {
                    // Tell the peer what it lost, after the reports that replaced them.
                    for (publisher, count) in s.untold.drain() {
                        wire::encode(&Frame::Missed { publisher, count }, out);
                    }
                    if s.bytes <= self.limits.soft {
                        self.drained.notify_waiters();
                    }
                    return true;
                }
                if let Some(closing) = &s.closing {
                    if s.close_sent {
                        return false;
                    }
                    let frame = Frame::Close {
                        code: closing.code,
                        reason: Text::from(closing.reason.as_str()),
                    };
                    wire::encode(&frame, out);
                    s.close_sent = true;
                    return true;
                }
            }
            self.notify.notified().await;
        }
    }
}
