//! One local publisher: its subscribers, indexed by pattern, and its report cache.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use netsvc_proto::value::{self, Limits, Value, ValueError};
use netsvc_proto::wire::{self, Frame, Text, frame};
use netsvc_proto::{Pattern, PatternIndex};
use tokio::time::Instant;

use super::link_queue::LinkQueue;
use super::meters::SubjectCount;
use super::queue::{EventReceiver, EventSender, ReportQueue, event_queue};
use crate::model::binding::Binding;
use crate::model::collections::FastMap;
use crate::model::ids::{Id as _, LinkId, Sid, SubKey};
use crate::model::payload::{Payload, check_depth};
use crate::model::report::{Lifetime, Report, ReportEvent, SubscriptionEvent, SubscriptionStatus};

/// Scratch buffers bigger than this are freed after the publish that needed them.
const SCRATCH_KEEP: usize = 64 * 1024;

/// Where a subscription's reports go.
pub(crate) enum Delivery {
    /// Straight into a monitor's queue in this runtime.
    Local(Arc<ReportQueue>),
    /// To a subscriber behind an exchange link, known there by `sid`.
    Link {
        link: LinkId,
        queue: Arc<LinkQueue>,
        sid: Sid,
    },
}

impl Delivery {
    /// Delivers a report to this subscription alone (cached reports on subscription,
    /// targeted reports).
    fn deliver(&self, report: Report, seq: u64) {
        match self {
            Self::Local(queue) => queue.push(ReportEvent::Report(report)),
            Self::Link { queue, .. } if !queue.admits_subject(report.subject()) => {}
            Self::Link { queue, sid, .. } => match report.payload().bytes() {
                Ok(payload) => queue.push_targeted(
                    Frame::Targeted(frame::Targeted {
                        sid: sid.raw(),
                        subject: Text::from(report.subject()),
                        seq,
                        pattern: report.pattern().map(|p| Text::from(p.as_str())),
                        targeted: report.is_targeted(),
                        payload,
                    }),
                    &Text::from(report.publisher().address()),
                ),
                Err(e) => tracing::warn!(subject = report.subject(), "report not sent: {e}"),
            },
        }
    }
}

/// One report to publish.
pub(crate) struct Publication<'a> {
    pub(crate) subject: &'a str,
    pub(crate) content: Value,
    pub(crate) lifetime: Lifetime,
    /// Whether the publisher paces itself (see `Frame::Report::paced`).
    pub(crate) paced: bool,
}

/// What a publish did.
pub(crate) struct Published {
    /// Deliveries to monitors in this runtime.
    pub(crate) delivered: usize,
    /// When the cached report expires, if it does.
    pub(crate) expires: Option<Instant>,
    /// Links it was queued on that are over their soft limit.
    pub(crate) congested: Vec<Arc<LinkQueue>>,
    /// The count of the subject published before, when this one is another.
    pub(crate) counted: Option<(Arc<str>, u64)>,
}

struct Subscription {
    subscriber: Binding,
    pattern: Arc<Pattern>,
    delivery: Delivery,
}

struct Cached {
    payload: Payload,
    posted: Instant,
    expires: Option<Instant>,
    seq: u64,
}

/// The publisher side of reports for one local service.
pub(crate) struct PublisherState {
    /// Sequence number of the last report published.
    seq: u64,
    cache: FastMap<Arc<str>, Cached>,
    /// (expiry instant, subject), so expiry is exact and purging never scans the cache.
    expiries: BTreeSet<(Instant, Arc<str>)>,
    index: PatternIndex<SubKey>,
    subscriptions: FastMap<SubKey, Subscription>,
    watchers: Vec<EventSender<SubscriptionEvent>>,
    /// Scratch space reused from one publish to the next, so that publishing does not
    /// allocate: the subscriptions it matches, the links it goes to, its encoded content
    /// and its encoded REPORT frame.
    matched: Vec<SubKey>,
    links: Vec<(LinkId, Arc<LinkQueue>)>,
    encoded: Vec<u8>,
    frame: BytesMut,
    /// Its reports on the subject it published on last, for [`Core::stats`].
    ///
    /// [`Core::stats`]: crate::core::Core::stats
    counted: SubjectCount,
}

impl PublisherState {
    /// A publisher whose report sequence numbers start after `seq_base`.
    pub(crate) fn new(seq_base: u64) -> Self {
        Self {
            seq: seq_base,
            cache: FastMap::default(),
            expiries: BTreeSet::new(),
            index: PatternIndex::new(),
            subscriptions: FastMap::default(),
            watchers: Vec::new(),
            matched: Vec::new(),
            links: Vec::new(),
            encoded: Vec::new(),
            frame: BytesMut::new(),
            counted: SubjectCount::default(),
        }
    }

    /// The count of reports not yet added to the runtime's table.
    pub(crate) fn take_count(&mut self) -> Option<(Arc<str>, u64)> {
        self.counted.take()
    }

    /// Records a subscription and delivers the matching cached reports to it.
    pub(crate) fn subscribe(
        &mut self,
        id: SubKey,
        publisher: &Binding,
        subscriber: Binding,
        pattern: Pattern,
        delivery: Delivery,
        now: Instant,
    ) {
        let pattern = Arc::new(pattern);
        let mut cached: Vec<(&Arc<str>, &Cached)> = self
            .cache
            .iter()
            .filter(|(subject, c)| live(c, now) && pattern.matches(subject))
            .collect();
        // In publication order: a subscriber that re-subscribes after a reconnect skips the
        // reports it has already seen by their sequence numbers.
        cached.sort_by_key(|(_, c)| c.seq);
        for (subject, c) in cached {
            delivery.deliver(
                Report::new(
                    publisher.clone(),
                    subject.clone(),
                    c.payload.clone(),
                    Some(pattern.clone()),
                    false,
                )
                .replayed(),
                c.seq,
            );
        }
        self.index.insert(&pattern, id);
        self.notify(&subscriber, &pattern, SubscriptionStatus::Requested);
        self.subscriptions.insert(
            id,
            Subscription {
                subscriber,
                pattern,
                delivery,
            },
        );
    }

    pub(crate) fn unsubscribe(&mut self, id: SubKey) {
        if let Some(sub) = self.subscriptions.remove(&id) {
            self.index.remove(&sub.pattern, &id);
            self.notify(&sub.subscriber, &sub.pattern, SubscriptionStatus::Withdrawn);
        }
    }

    fn notify(&mut self, subscriber: &Binding, pattern: &Pattern, status: SubscriptionStatus) {
        if self.watchers.is_empty() {
            return;
        }
        let event = SubscriptionEvent {
            subscriber: subscriber.clone(),
            pattern: pattern.clone(),
            status,
        };
        self.watchers.retain(|w| w.send(event.clone()));
    }

    pub(crate) fn watch_subscriptions(
        &mut self,
        capacity: usize,
    ) -> EventReceiver<SubscriptionEvent> {
        let mut current: Vec<(&SubKey, &Subscription)> = self.subscriptions.iter().collect();
        current.sort_by_key(|(id, _)| **id);
        let (tx, rx) = event_queue(capacity + current.len());
        for (_, sub) in current {
            tx.send(SubscriptionEvent {
                subscriber: sub.subscriber.clone(),
                pattern: (*sub.pattern).clone(),
                status: SubscriptionStatus::Requested,
            });
        }
        self.watchers.push(tx);
        rx
    }

    /// Caches (or uncaches) the report per its lifetime and delivers it to every matching
    /// subscription, once per matching pattern. Returns the number of deliveries, the
    /// report's expiry if it has one, and the links it was queued on that are congested.
    ///
    /// The common case of a report that only crosses links allocates nothing: the content
    /// is encoded straight into a reused buffer, the frame into another, and each link
    /// copies the frame's bytes into its own write buffer.
    pub(crate) fn publish(
        &mut self,
        publisher: &Binding,
        report: Publication<'_>,
        limits: &Limits,
        now: Instant,
    ) -> Result<Published, ValueError> {
        let Publication {
            subject,
            content,
            lifetime,
            paced,
        } = report;
        let mut matched = std::mem::take(&mut self.matched);
        matched.clear();
        self.index
            .for_each_match(subject, |_, id| matched.push(*id));
        let (mut local, mut remote) = (false, false);
        for id in &matched {
            match self.subscriptions.get(id).map(|s| &s.delivery) {
                Some(Delivery::Local(_)) => local = true,
                Some(Delivery::Link { .. }) => remote = true,
                None => {}
            }
        }
        // The content is checked (and encoded, if it is to cross a link) before anything
        // changes: a report that cannot be sent fails the publish as a whole rather than
        // after it was cached and delivered here.
        let cached = lifetime != Lifetime::None;
        self.encoded.clear();
        let payload =
            match encode_content(content, local || cached, remote, limits, &mut self.encoded) {
                Ok(payload) => payload,
                Err(e) => {
                    self.matched = matched;
                    return Err(e);
                }
            };
        self.seq += 1;
        let seq = self.seq;
        let mut subject_arc: Option<Arc<str>> = None;
        let mut subject_arc = || {
            subject_arc
                .get_or_insert_with(|| Arc::from(subject))
                .clone()
        };
        if !self.cache.is_empty()
            && let Some((old_subject, old)) = self.cache.remove_entry(subject)
            && let Some(at) = old.expires
        {
            self.expiries.remove(&(at, old_subject));
        }
        let expires = match lifetime {
            Lifetime::For(d) => Some(now + d),
            Lifetime::None | Lifetime::Forever => None,
        };
        if let Some(payload) = payload.as_ref().filter(|_| cached) {
            if let Some(at) = expires {
                self.expiries.insert((at, subject_arc()));
            }
            self.cache.insert(
                subject_arc(),
                Cached {
                    payload: payload.clone(),
                    posted: now,
                    expires,
                    seq,
                },
            );
        }
        let mut delivered = 0;
        // Subscribers behind one link share one copy: the next process fans it out.
        let mut links = std::mem::take(&mut self.links);
        for id in &matched {
            let Some(sub) = self.subscriptions.get(id) else {
                continue;
            };
            match &sub.delivery {
                Delivery::Local(queue) => {
                    if let Some(payload) = &payload {
                        queue.push(ReportEvent::Report(Report::new(
                            publisher.clone(),
                            subject_arc(),
                            payload.clone(),
                            Some(sub.pattern.clone()),
                            false,
                        )));
                        delivered += 1;
                    }
                }
                Delivery::Link { link, queue, .. } => {
                    if queue.admits_subject(subject) && !links.iter().any(|(l, _)| l == link) {
                        links.push((*link, queue.clone()));
                    }
                }
            }
        }
        let mut congested = Vec::new();
        if !links.is_empty() {
            self.frame.clear();
            wire::encode_report(
                publisher.address(),
                subject,
                seq,
                &self.encoded,
                paced,
                &mut self.frame,
            );
            for (_, queue) in links.drain(..) {
                let key = || (Text::from(publisher.address()), Text::from(subject));
                if queue.push_report(&self.frame, key) {
                    congested.push(queue);
                }
            }
        }
        self.links = links;
        self.matched = matched;
        // One huge report must not pin its size in the scratch buffers for good.
        if self.encoded.capacity() > SCRATCH_KEEP {
            self.encoded = Vec::new();
        }
        if self.frame.capacity() > SCRATCH_KEEP {
            self.frame = BytesMut::new();
        }
        let counted = self.counted.count(subject, || Arc::from(subject));
        Ok(Published {
            delivered,
            expires,
            congested,
            counted,
        })
    }

    /// Sends a report to one subscriber only, never cached: once per subscription of that
    /// subscriber whose pattern matches, or once without a pattern if none does. Returns
    /// `None` if the subscriber holds no subscription here.
    pub(crate) fn send_to(
        &mut self,
        publisher: &Binding,
        subscriber: &str,
        subject: Arc<str>,
        payload: Payload,
    ) -> Option<usize> {
        let mut theirs: Vec<(&SubKey, &Subscription)> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| s.subscriber.address() == subscriber)
            .collect();
        theirs.sort_by_key(|(id, _)| **id);
        let first = theirs.first()?.1;
        let matching: Vec<&Subscription> = theirs
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| s.pattern.matches(&subject))
            .collect();
        if matching.is_empty() {
            first.delivery.deliver(
                Report::new(publisher.clone(), subject, payload, None, true),
                0,
            );
            return Some(1);
        }
        for sub in &matching {
            sub.delivery.deliver(
                Report::new(
                    publisher.clone(),
                    subject.clone(),
                    payload.clone(),
                    Some(sub.pattern.clone()),
                    true,
                ),
                0,
            );
        }
        Some(matching.len())
    }

    /// Drops cached reports whose subject matches `pattern` and that were posted more than
    /// `age` ago. Returns how many were dropped.
    pub(crate) fn expire(&mut self, pattern: &Pattern, age: Duration, now: Instant) -> usize {
        let doomed: Vec<Arc<str>> = self
            .cache
            .iter()
            .filter(|(subject, c)| {
                pattern.matches(subject) && now.saturating_duration_since(c.posted) >= age
            })
            .map(|(s, _)| s.clone())
            .collect();
        for subject in &doomed {
            if let Some(c) = self.cache.remove(subject)
                && let Some(at) = c.expires
            {
                self.expiries.remove(&(at, subject.clone()));
            }
        }
        doomed.len()
    }

    /// Drops every cached report whose lifetime has run out; returns the next expiry.
    pub(crate) fn purge_expired(&mut self, now: Instant) -> Option<Instant> {
        while let Some((at, _)) = self.expiries.first() {
            if *at > now {
                return Some(*at);
            }
            if let Some((_, subject)) = self.expiries.pop_first() {
                self.cache.remove(&subject);
            }
        }
        None
    }

    /// Every subscription held here, by key, with its subscriber.
    pub(crate) fn subscribers(&self) -> impl Iterator<Item = (SubKey, &Binding)> {
        self.subscriptions
            .iter()
            .map(|(key, sub)| (*key, &sub.subscriber))
    }

    /// Every subscription held here: its subscriber, its pattern, and the link it is
    /// delivered on (`None`: a monitor of this runtime).
    pub(crate) fn subscriptions(
        &self,
    ) -> impl Iterator<Item = (&Binding, &Pattern, Option<LinkId>)> {
        self.subscriptions.values().map(|sub| {
            let link = match &sub.delivery {
                Delivery::Local(_) => None,
                Delivery::Link { link, .. } => Some(*link),
            };
            (&sub.subscriber, &*sub.pattern, link)
        })
    }

    /// The subjects currently cached and not expired, sorted.
    pub(crate) fn cached_subjects(&self, now: Instant) -> Vec<Arc<str>> {
        let mut subjects: Vec<Arc<str>> = self
            .cache
            .iter()
            .filter(|(_, c)| live(c, now))
            .map(|(s, _)| s.clone())
            .collect();
        subjects.sort();
        subjects
    }
}

/// Checks `content` and puts it in the forms the publish needs: a shared [`Payload`] if it
/// is cached or delivered in this runtime, its wire encoding (appended to `encoded`) if it
/// crosses a link.
fn encode_content(
    content: Value,
    shared: bool,
    remote: bool,
    limits: &Limits,
    encoded: &mut Vec<u8>,
) -> Result<Option<Payload>, ValueError> {
    if shared {
        let payload = Payload::from_value(content, limits)?;
        if remote {
            encoded.extend_from_slice(&payload.bytes()?);
        }
        return Ok(Some(payload));
    }
    if remote {
        // What crosses a link obeys the wire's limits as well as the runtime's.
        let wire = Limits {
            max_depth: limits.max_depth.min(Limits::DEFAULT.max_depth),
            max_size: Limits::DEFAULT.max_size,
        };
        value::encode_into(&content, encoded, &wire)?;
    } else {
        check_depth(&content, limits.max_depth)?;
    }
    Ok(None)
}

/// A cached report is live until the instant it expires (exclusive): exact expiry even
/// before the purge has run.
fn live(cached: &Cached, now: Instant) -> bool {
    cached.expires.is_none_or(|at| now < at)
}
