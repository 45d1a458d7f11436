//! Report subscriptions that cross links: ours toward remote publishers (for a monitor here,
//! or relayed for a subscriber behind another link), and those a peer holds through its link
//! on our publishers.

use std::sync::Arc;

use netsvc_proto::Pattern;
use netsvc_proto::PatternIndex;
use netsvc_proto::wire::{Frame, Text, frame};
use tokio::time::Instant;

use crate::core::Core;
use crate::core::meters::SubjectCount;
use crate::core::publisher::Delivery;
use crate::model::binding::Binding;
use crate::model::collections::FastSet;
use crate::model::ids::{Id as _, LinkId, MonitorId, Sid, SubKey};

/// A subscription that a peer holds through its link.
///
/// 16 bytes: `Relayed` fits beside the niche of `Local`'s binding pointer. A hub keeps one
/// per relayed subscription.
pub(super) enum Served {
    /// At a publisher of this runtime, under this key.
    Local { publisher: Binding, key: SubKey },
    /// Passed on toward the publisher under our own subscription id.
    Relayed { sid: Sid },
}

/// Where a subscription toward a remote publisher comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubOrigin {
    /// A report monitor of this runtime.
    Monitor(MonitorId),
    /// A subscription received on another link (its id there).
    Relay { link: LinkId, sid: Sid },
}

/// A subscription sent toward a remote publisher.
///
/// A hub holds one per relayed subscription, so it is kept to 64 bytes: the publisher and
/// the subscriber are bindings (one pointer each, shared with the registry and the routes)
/// rather than addresses (two words each).
pub(super) struct RemoteSub {
    pub(super) publisher: Binding,
    pub(super) subscriber: Binding,
    pub(super) pattern: Arc<Pattern>,
    pub(super) origin: SubOrigin,
    pub(super) link: LinkId,
    pub(super) installed: bool,
    /// Of the slot in [`RemoteSubs`]: part of the subscription id.
    generation: u32,
}

/// The subscriptions toward remote publishers, by subscription id.
///
/// A slab rather than a hash map: a hub holds one entry per relayed subscription, and a map
/// would add the id as a key, a control byte and, at its usual load, half as many slots
/// again. Here an entry is its 64 bytes, and the slab grows by an eighth at a time.
///
/// An id is the slot's index (low 32 bits) and the slot's generation (high 32 bits), which
/// changes each time the slot is freed: a freed slot is reused, but its old id is not, so a
/// late SUBSCRIBED or TARGETED for an ended subscription cannot be taken for a new one.
/// This slab is the allocator of the subscription ids we send, on every link.
#[derive(Default)]
pub(super) struct RemoteSubs {
    slots: Vec<Slot>,
    /// The most recently freed slot, the head of the list of free slots.
    free: Option<u32>,
}

/// One slot of [`RemoteSubs`]; 64 bytes either way (`Free` fits beside the niche).
enum Slot {
    Used(RemoteSub),
    Free { generation: u32, next: Option<u32> },
}

impl RemoteSubs {
    /// Every subscription in use.
    pub(super) fn iter(&self) -> impl Iterator<Item = &RemoteSub> {
        self.slots.iter().filter_map(|slot| match slot {
            Slot::Used(sub) => Some(sub),
            Slot::Free { .. } => None,
        })
    }

    fn split(sid: Sid) -> (usize, u32) {
        let raw = sid.raw();
        ((raw & u64::from(u32::MAX)) as usize, (raw >> 32) as u32)
    }

    fn id(index: u32, generation: u32) -> Sid {
        Sid::from_raw((u64::from(generation) << 32) | u64::from(index))
    }

    /// Stores `sub` and returns its id; `None` once there are 2³² slots (256 GiB of them).
    fn insert(&mut self, mut sub: RemoteSub) -> Option<Sid> {
        if let Some(index) = self.free {
            let slot = self.slots.get_mut(index as usize)?;
            let Slot::Free { generation, next } = *slot else {
                return None;
            };
            sub.generation = generation;
            *slot = Slot::Used(sub);
            self.free = next;
            return Some(Self::id(index, generation));
        }
        let index = u32::try_from(self.slots.len()).ok()?;
        if self.slots.len() == self.slots.capacity() {
            // Growing by an eighth keeps at most 11% of the slab empty (doubling would leave
            // up to half); the copies stay amortised O(1).
            self.slots.reserve_exact((self.slots.len() / 8).max(16));
        }
        // Generations start at 1 so that no id is 0.
        sub.generation = 1;
        self.slots.push(Slot::Used(sub));
        Some(Self::id(index, 1))
    }

    pub(super) fn get(&self, sid: Sid) -> Option<&RemoteSub> {
        let (index, generation) = Self::split(sid);
        match self.slots.get(index)? {
            Slot::Used(sub) if sub.generation == generation => Some(sub),
            _ => None,
        }
    }

    fn get_mut(&mut self, sid: Sid) -> Option<&mut RemoteSub> {
        let (index, generation) = Self::split(sid);
        match self.slots.get_mut(index)? {
            Slot::Used(sub) if sub.generation == generation => Some(sub),
            _ => None,
        }
    }

    fn remove(&mut self, sid: Sid) -> Option<RemoteSub> {
        let (index, generation) = Self::split(sid);
        let slot = self.slots.get_mut(index)?;
        if !matches!(slot, Slot::Used(sub) if sub.generation == generation) {
            return None;
        }
        let next = generation.wrapping_add(1).max(1);
        let old = std::mem::replace(
            slot,
            Slot::Free {
                generation: next,
                next: self.free,
            },
        );
        self.free = Some(index as u32);
        match old {
            Slot::Used(sub) => Some(sub),
            Slot::Free { .. } => None,
        }
    }
}

/// The subscriptions toward one remote publisher.
#[derive(Default)]
pub(super) struct RemotePublisher {
    /// Installed subscriptions (acknowledged), by pattern: what live reports are matched against.
    pub(super) index: PatternIndex<Sid>,
    /// Every subscription id toward it, installed or not.
    pub(super) sids: FastSet<Sid>,
    /// How many of them go through each link (nearly always one link), so that the link's
    /// `out_subs` names this publisher exactly while it has subscriptions there.
    links: Vec<(LinkId, u32)>,
    /// Where the reports of the last subject received went. A publisher mostly reports
    /// on the same few subjects again and again, so most reports skip matching; cleared
    /// whenever `index` changes.
    pub(super) route: Option<ReportRoute>,
    /// Its reports on the subject it reported on last, for [`Core::stats`].
    pub(super) counted: SubjectCount,
}

/// The targets of one subject's reports arriving on one link.
#[derive(Default)]
pub(super) struct ReportRoute {
    /// Shared by every report delivered on it.
    pub(super) subject: Arc<str>,
    pub(super) link: Option<LinkId>,
    /// Monitors of this runtime, with the pattern each matched.
    pub(super) monitors: Vec<(MonitorId, Arc<Pattern>)>,
    /// Links to relay to (each once).
    pub(super) downstream: Vec<LinkId>,
}

impl RemotePublisher {
    /// Counts one more subscription through `link`; true if it is the first.
    fn add_link(&mut self, link: LinkId) -> bool {
        if let Some((_, n)) = self.links.iter_mut().find(|(l, _)| *l == link) {
            *n += 1;
            return false;
        }
        self.links.push((link, 1));
        true
    }

    /// Counts one subscription less through `link`; true if it was the last.
    fn remove_link(&mut self, link: LinkId) -> bool {
        let Some(i) = self.links.iter().position(|(l, _)| *l == link) else {
            return false;
        };
        self.links[i].1 -= 1;
        if self.links[i].1 > 0 {
            return false;
        }
        self.links.swap_remove(i);
        true
    }
}

impl Core {
    /// Sends a subscription toward a remote publisher on its best route; `None` if it has
    /// none.
    pub(crate) fn subscribe_remote(
        &mut self,
        publisher: &str,
        subscriber: Binding,
        pattern: Arc<Pattern>,
        origin: SubOrigin,
    ) -> Option<Sid> {
        let link = self.best_link(publisher)?;
        let publisher = self.remote_binding(publisher)?.clone();
        let sid = self.mesh.subs.insert(RemoteSub {
            publisher: publisher.clone(),
            subscriber: subscriber.clone(),
            pattern: pattern.clone(),
            origin,
            link,
            installed: false,
            generation: 0,
        })?;
        let p = self
            .mesh
            .publishers
            .entry(publisher.address_arc().clone())
            .or_default();
        p.sids.insert(sid);
        let first = p.add_link(link);
        // A publisher serves only subscribers it can see: on an interest-scoped link, the
        // subscriber goes first.
        self.admit(link, subscriber.address());
        if let Some(l) = self.mesh.links.get_mut(&link) {
            if first {
                l.out_subs.insert(publisher.address_arc().clone());
            }
            if !l.resynced {
                l.awaiting_acks.insert(sid);
            }
            l.queue.push(Frame::Subscribe(frame::Subscribe {
                sid: sid.raw(),
                publisher: Text::from(publisher.address()),
                subscriber: Text::from(subscriber.address()),
                pattern: Text::from(pattern.as_str()),
            }));
        }
        Some(sid)
    }

    /// Forgets a subscription toward a remote publisher; with `tell`, the next hop is told.
    pub(crate) fn drop_remote_sub(&mut self, sid: Sid, tell: bool) {
        let Some(sub) = self.mesh.subs.remove(sid) else {
            return;
        };
        // A publisher already forgotten (withdrawn) had its last subscriptions dropped.
        let mut last = true;
        if let Some(p) = self.mesh.publishers.get_mut(sub.publisher.address()) {
            p.sids.remove(&sid);
            if sub.installed {
                p.index.remove(&sub.pattern, &sid);
                p.route = None;
            }
            last = p.remove_link(sub.link);
        }
        if let Some(l) = self.mesh.links.get_mut(&sub.link) {
            if last {
                l.out_subs.remove(sub.publisher.address());
            }
            l.awaiting_acks.remove(&sid);
            if tell {
                l.queue
                    .push(Frame::Unsubscribe(frame::Unsubscribe { sid: sid.raw() }));
            }
        }
    }

    /// A remote publisher was withdrawn: the subscriptions toward it end (nothing to tell:
    /// the next hop has withdrawn it too).
    pub(super) fn forget_publisher(&mut self, address: &str) {
        if let Some(publisher) = self.mesh.publishers.remove(address) {
            for sid in publisher.sids {
                self.drop_remote_sub(sid, false);
            }
        }
    }

    /// Moves every subscription toward `publisher` that is not on its best route onto it.
    pub(super) fn reroute_subscriptions(&mut self, publisher: &Arc<str>) {
        let Some(best) = self.best_link(publisher) else {
            return;
        };
        let stale: Vec<Sid> = self
            .mesh
            .publishers
            .get(publisher)
            .map(|p| {
                p.sids
                    .iter()
                    .copied()
                    .filter(|sid| self.mesh.subs.get(*sid).is_some_and(|s| s.link != best))
                    .collect()
            })
            .unwrap_or_default();
        for sid in stale {
            let Some(sub) = self.mesh.subs.get(sid) else {
                continue;
            };
            let (subscriber, pattern, origin) =
                (sub.subscriber.clone(), sub.pattern.clone(), sub.origin);
            self.drop_remote_sub(sid, true);
            let Some(new_sid) = self.subscribe_remote(publisher, subscriber, pattern, origin)
            else {
                continue;
            };
            match origin {
                SubOrigin::Monitor(m) => {
                    if let Some(monitor) = self.monitors.get_mut(m) {
                        monitor.remote_sids.retain(|s| *s != sid);
                        monitor.remote_sids.push(new_sid);
                    }
                }
                SubOrigin::Relay { link, sid: theirs } => {
                    if let Some(l) = self.mesh.links.get_mut(&link) {
                        l.served.insert(theirs, Served::Relayed { sid: new_sid });
                    }
                }
            }
        }
    }

    /// A SUBSCRIBE with a valid pattern: served by a local publisher, or relayed toward a
    /// remote one.
    pub(super) fn on_subscribe(
        &mut self,
        link: LinkId,
        sid: Sid,
        publisher: &str,
        subscriber: &str,
        pattern: Pattern,
        now: Instant,
    ) {
        let Some(queue) = self.mesh.queue(link) else {
            return;
        };
        let acknowledge = |refused| {
            Frame::Subscribed(frame::Subscribed {
                sid: sid.raw(),
                refused,
            })
        };
        // As in the original, a publisher serves only subscribers it can see. A subscription
        // not served is still acknowledged, as refused: the subscriber then knows its request
        // was processed and that nothing will flow, instead of waiting for an answer that
        // never comes.
        let Some(subscriber) = self.registry.lookup_address(subscriber) else {
            tracing::debug!(%subscriber, "SUBSCRIBE from a service not visible here not served");
            queue.push(acknowledge(true));
            return;
        };
        if let Some(local) = self.locals.get_mut(publisher) {
            if !local.visible {
                queue.push(acknowledge(true));
                return;
            }
            let key = self.ids.sub_keys.next();
            let publisher = local.service.binding().clone();
            local.publisher.subscribe(
                key,
                &publisher,
                subscriber.clone(),
                pattern,
                Delivery::Link {
                    link,
                    queue: queue.clone(),
                    sid,
                },
                now,
            );
            queue.push(acknowledge(false));
            self.served
                .entry(subscriber.address_arc().clone())
                .or_default()
                .push((publisher.address_arc().clone(), key));
            if let Some(l) = self.mesh.links.get_mut(&link) {
                l.served.insert(sid, Served::Local { publisher, key });
            }
            return;
        }
        let origin = SubOrigin::Relay { link, sid };
        match self.subscribe_remote(publisher, subscriber, Arc::new(pattern), origin) {
            Some(ours) => {
                if let Some(l) = self.mesh.links.get_mut(&link) {
                    l.served.insert(sid, Served::Relayed { sid: ours });
                }
            }
            None => queue.push(acknowledge(true)),
        }
    }

    /// A SUBSCRIBE that cannot be served (its pattern is invalid) is still acknowledged,
    /// as refused.
    pub(super) fn refuse_subscribe(&mut self, link: LinkId, sid: Sid) {
        if let Some(queue) = self.mesh.queue(link) {
            queue.push(Frame::Subscribed(frame::Subscribed {
                sid: sid.raw(),
                refused: true,
            }));
        }
    }

    /// A SUBSCRIBED: our subscription is in place, and from now on live reports match it;
    /// or, `refused`, the publisher's process does not serve it, and nothing ever will
    /// (unless the subscription moves to another route, where it is asked for again).
    pub(super) fn on_subscribed(&mut self, link: LinkId, sid: Sid, refused: bool) {
        let Some(sub) = self.mesh.subs.get_mut(sid) else {
            return;
        };
        if sub.link != link {
            return;
        }
        if !sub.installed && !refused {
            sub.installed = true;
            if let Some(p) = self.mesh.publishers.get_mut(sub.publisher.address()) {
                p.index.insert(&sub.pattern, sid);
                p.route = None;
            }
        }
        if let SubOrigin::Relay { link, sid: theirs } = sub.origin
            && let Some(l) = self.mesh.links.get(&link)
        {
            l.queue.push(Frame::Subscribed(frame::Subscribed {
                sid: theirs.raw(),
                refused,
            }));
        }
        if let Some(l) = self.mesh.links.get_mut(&link) {
            l.awaiting_acks.remove(&sid);
        }
    }

    /// An UNSUBSCRIBE: the peer ends one of its subscriptions.
    pub(super) fn on_unsubscribe(&mut self, link: LinkId, sid: Sid) {
        let served = self
            .mesh
            .links
            .get_mut(&link)
            .and_then(|l| l.served.remove(&sid));
        if let Some(served) = served {
            self.end_served(served);
        }
    }

    /// Ends a subscription that came in on a link.
    pub(super) fn end_served(&mut self, served: Served) {
        match served {
            Served::Local { publisher, key } => {
                if let Some(local) = self.locals.get_mut(publisher.address()) {
                    local.publisher.unsubscribe(key);
                }
            }
            Served::Relayed { sid } => self.drop_remote_sub(sid, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::binding::{Audience, Location};
    use crate::model::ids::Ids;

    fn binding(name: &str) -> Binding {
        Binding::new(
            Arc::from(name),
            Audience::Everyone,
            Arc::from("1@h:1"),
            Arc::from("h:1"),
            Location::Remote,
            None,
        )
    }

    fn sub(link: LinkId) -> RemoteSub {
        RemoteSub {
            publisher: binding("p"),
            subscriber: binding("s"),
            pattern: Arc::new(Pattern::new("a.b").expect("valid pattern")),
            origin: SubOrigin::Monitor(Ids::<MonitorId>::default().next()),
            link,
            installed: false,
            generation: 0,
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn entries_stay_small() {
        // A hub holds one of each per relayed subscription (see `RemoteSubs`, `Served`).
        assert_eq!(size_of::<Slot>(), 64);
        assert_eq!(size_of::<Served>(), 16);
    }

    #[test]
    fn ids_of_freed_slots_are_not_reused() {
        let mut links = Ids::<LinkId>::default();
        let (l1, l2, l3) = (links.next(), links.next(), links.next());
        let mut subs = RemoteSubs::default();
        let a = subs.insert(sub(l1)).expect("room");
        let b = subs.insert(sub(l2)).expect("room");
        assert_ne!(a.raw(), 0);
        assert_eq!(subs.get(b).map(|s| s.link), Some(l2));
        assert_eq!(subs.remove(a).map(|s| s.link), Some(l1));
        assert!(subs.get(a).is_none());
        assert!(subs.remove(a).is_none());
        // The freed slot is reused under a new id; the old id still finds nothing.
        let c = subs.insert(sub(l3)).expect("room");
        assert_ne!(c, a);
        assert_eq!(c.raw() & u64::from(u32::MAX), a.raw() & u64::from(u32::MAX));
        assert!(subs.get(a).is_none());
        assert_eq!(subs.get(c).map(|s| s.link), Some(l3));
        if let Some(s) = subs.get_mut(c) {
            s.installed = true;
        }
        assert!(subs.get(c).is_some_and(|s| s.installed));
        // An id naming a slot that was never used finds nothing either.
        assert!(subs.get(Sid::from_raw(c.raw() + 100)).is_none());
    }
}
