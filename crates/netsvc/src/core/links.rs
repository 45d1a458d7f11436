//! The runtime's side of exchange links: routes to remote services, requests and report
//! subscriptions that cross links, and the frames that carry them.
//!
//! Routing is path-vector: every SERVICE announcement carries the processes it went
//! through, a process ignores announcements that already passed through it, and it keeps
//! every route it hears of, using the shortest. This is loop-free on any topology, and a
//! lost link only withdraws the services that have no other route.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use netsvc_proto::names;
use netsvc_proto::wire::{Frame, Role, Text};
use netsvc_proto::{Pattern, PatternIndex};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::registry::Few;
use super::{Core, Delivery, Route};
use crate::announce::WithdrawReason;
use crate::binding::{Audience, Binding, Location};
use crate::call::{Reply, Responder, failure_frame};
use crate::exchange::outbound::Outbound;
use crate::failure::Failure;
use crate::fast::{FastMap, FastSet};
use crate::payload::Payload;
use crate::report::{Report, ReportEvent};
use crate::service::ServiceShared;

/// What a link is, as the state owner needs to know it.
#[derive(Debug, Clone)]
pub(crate) struct LinkInfo {
    pub(crate) group: Arc<str>,
    pub(crate) peer: Arc<str>,
    #[allow(dead_code)] // shown in connection events
    pub(crate) peer_role: Role,
    pub(crate) initiated_here: bool,
}

/// A request sent on a link and not answered yet.
enum Pending {
    /// For a caller in this runtime.
    Local(oneshot::Sender<Reply>),
    /// Relayed for a request that came in on another link.
    Relay { link: u64, conv: u64 },
}

/// A subscription that came in on a link.
///
/// 16 bytes: `Relayed` fits beside the niche of `Local`'s binding pointer. A hub keeps one
/// per relayed subscription.
enum Served {
    /// To a publisher in this runtime, under this subscription key.
    Local { publisher: Binding, key: u64 },
    /// Passed on toward the publisher under our own subscription id.
    Relayed { sid: u64 },
}

/// Everything the runtime keeps about one established link.
pub(crate) struct LinkState {
    pub(crate) info: LinkInfo,
    pub(crate) outbound: Arc<Outbound>,
    calls: FastMap<u64, Pending>,
    /// Requests received on this link and relayed: their conv → (next link, conv there).
    relayed: FastMap<u64, (u64, u64)>,
    served: FastMap<u64, Served>,
    /// The remote publishers that our subscriptions on this link go to, so that they move
    /// to another route when the link goes. One entry per publisher rather than one id per
    /// subscription: a hub's link to a busy publisher carries thousands.
    out_subs: FastSet<Arc<str>>,
    /// Whether the peer has sent its whole registry, and which of our subscriptions sent on
    /// this link before then still await their acknowledgement.
    peer_synced: bool,
    awaiting_acks: FastSet<u64>,
    resynced: bool,
}

/// One route to a remote service. Cheap to clone: a registry sync creates one per service
/// and link, and route changes compare the state before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteInfo {
    /// As received: the origin first, the peer of the link last.
    path: Arc<[Arc<str>]>,
    version: u64,
    groups: Few<Arc<str>>,
}

/// A service learned through links.
pub(crate) struct RemoteService {
    binding: Binding,
    /// Routes by link id, one per link; nearly always just one, so a list.
    routes: Few<(u64, RouteInfo)>,
    /// Dropped when the service is removed: callers waiting on it fail at once. Made by the
    /// first caller: most of the services a registry sync brings are never called.
    liveness: OnceLock<watch::Sender<()>>,
}

impl RemoteService {
    /// The link to use: shortest path, then lowest link id.
    fn best(&self) -> Option<(u64, &RouteInfo)> {
        self.routes
            .iter()
            .min_by_key(|(id, r)| (r.path.len(), *id))
            .map(|(id, r)| (*id, r))
    }

    /// The newest state (highest version; ties go to the best route).
    fn newest(&self) -> Option<&RouteInfo> {
        let best = self.best()?;
        Some(
            self.routes
                .iter()
                .map(|(_, r)| r)
                .filter(|r| r.version > best.1.version)
                .max_by_key(|r| r.version)
                .unwrap_or(best.1),
        )
    }

    fn route(&self, link: u64) -> Option<usize> {
        self.routes.iter().position(|(id, _)| *id == link)
    }
}

/// How a service was last announced: what decides which links have it, and its SERVICE
/// frame, encoded once per state and shared by every link (a thousand clients reconnecting
/// would otherwise cost a million encodings).
///
/// Every change of a service's state is announced to every link (`reannounce`), and a new
/// link gets every service as it stands (`link_up`), so a link has been told of a service
/// exactly when `exports_to` says so. That answers "was it announced there?" (for a
/// withdrawal) without a set per link of every service announced on it: at a hub, one
/// entry per service and client.
#[derive(Clone)]
pub(crate) struct ServiceAd {
    /// Encoded when a link first needs it: a client, with one link, never does for what it
    /// learned from the hub.
    raw: Option<Bytes>,
    /// The link of the route it was learned over (none for a local service).
    learned_from: Option<u64>,
    /// The path of that route (empty for a local service).
    path: Arc<[Arc<str>]>,
    audience: Audience,
}

impl ServiceAd {
    /// Whether the service may be exported on the link: not on a link of a group its
    /// audience excludes, not back where it was learned from, not to a process it has
    /// already been through.
    fn exports_to(&self, id: u64, link: &LinkInfo) -> bool {
        self.audience.admits(&link.group)
            && self.learned_from != Some(id)
            && !self
                .path
                .iter()
                .any(|p| Arc::ptr_eq(p, &link.peer) || *p == link.peer)
    }
}

/// Where a subscription toward a remote publisher comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubOrigin {
    /// A report monitor of this runtime.
    Monitor(u64),
    /// A subscription received on another link (its id there).
    Relay { link: u64, sid: u64 },
}

/// A subscription sent toward a remote publisher.
///
/// A hub holds one per relayed subscription, so it is kept to 64 bytes: the publisher and
/// the subscriber are bindings (one pointer each, shared with the registry and the routes)
/// rather than addresses (two words each).
pub(crate) struct RemoteSub {
    publisher: PublisherAddress,
    subscriber: Binding,
    pattern: Arc<Pattern>,
    origin: SubOrigin,
    link: u64,
    installed: bool,
    /// Of the slot in [`RemoteSubs`]: part of the subscription id.
    generation: u32,
}

/// A remote publisher's binding, read as its address (what publishers are looked up by).
pub(crate) struct PublisherAddress(Binding);

impl std::ops::Deref for PublisherAddress {
    type Target = str;

    fn deref(&self) -> &str {
        self.0.address()
    }
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
#[derive(Default)]
pub(crate) struct RemoteSubs {
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
    fn split(sid: u64) -> (usize, u32) {
        ((sid & u64::from(u32::MAX)) as usize, (sid >> 32) as u32)
    }

    fn id(index: u32, generation: u32) -> u64 {
        (u64::from(generation) << 32) | u64::from(index)
    }

    /// Stores `sub` and returns its id; `None` once there are 2³² slots (256 GiB of them).
    fn insert(&mut self, mut sub: RemoteSub) -> Option<u64> {
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

    pub(crate) fn get(&self, sid: &u64) -> Option<&RemoteSub> {
        let (index, generation) = Self::split(*sid);
        match self.slots.get(index)? {
            Slot::Used(sub) if sub.generation == generation => Some(sub),
            _ => None,
        }
    }

    fn get_mut(&mut self, sid: &u64) -> Option<&mut RemoteSub> {
        let (index, generation) = Self::split(*sid);
        match self.slots.get_mut(index)? {
            Slot::Used(sub) if sub.generation == generation => Some(sub),
            _ => None,
        }
    }

    fn remove(&mut self, sid: &u64) -> Option<RemoteSub> {
        let (index, generation) = Self::split(*sid);
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
pub(crate) struct RemotePublisher {
    /// Installed subscriptions (acknowledged), by pattern: what live reports are matched against.
    index: PatternIndex<u64>,
    /// Every subscription id toward it, installed or not.
    sids: FastSet<u64>,
    /// How many of them go through each link (nearly always one link), so that the link's
    /// `out_subs` names this publisher exactly while it has subscriptions there.
    links: Vec<(u64, u32)>,
    /// Where the reports of the last subject received went. A publisher mostly reports
    /// on the same few subjects again and again, so most reports skip matching; cleared
    /// whenever `index` changes.
    route: Option<ReportRoute>,
}

/// The targets of one subject's reports arriving on one link.
#[derive(Default)]
struct ReportRoute {
    /// Shared by every report delivered on it.
    subject: Arc<str>,
    link: u64,
    /// Monitors of this runtime, with the pattern each matched.
    monitors: Vec<(u64, Arc<Pattern>)>,
    /// Links to relay to (each once).
    downstream: Vec<u64>,
}

impl RemotePublisher {
    /// Counts one more subscription through `link`; true if it is the first.
    fn add_link(&mut self, link: u64) -> bool {
        if let Some((_, n)) = self.links.iter_mut().find(|(l, _)| *l == link) {
            *n += 1;
            return false;
        }
        self.links.push((link, 1));
        true
    }

    /// Counts one subscription less through `link`; true if it was the last.
    fn remove_link(&mut self, link: u64) -> bool {
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

/// Work a link's task does after releasing the state lock.
pub(crate) enum Action {
    /// Run a method for a request that came in on the link.
    Dispatch {
        service: Arc<ServiceShared>,
        method: Text,
        args: Bytes,
        sender: Option<Binding>,
        conv: u64,
        responder: Responder,
    },
    /// The peer's registry is fully known and our subscriptions through it are in place.
    Resynced,
    /// A paced report from this link went to a congested link: stop reading until it
    /// drains (bounded by `ExchangeConfig::backpressure_limit`).
    Backpressure(Arc<Outbound>),
}

/// Why a link could not be established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkRefused {
    /// Another link to the same process in the same group wins.
    Duplicate,
}

impl Core {
    fn link(&self, id: u64) -> Option<&LinkState> {
        self.links.get(&id)
    }

    // ----- link lifecycle -----------------------------------------------------------------

    /// Registers an established link and announces to it everything it may see. Returns the
    /// link id of a duplicate link that this one replaces (which the caller must close).
    pub(crate) fn link_up(
        &mut self,
        info: LinkInfo,
        outbound: Arc<Outbound>,
    ) -> Result<(u64, Option<u64>), LinkRefused> {
        let mut replaced = None;
        if let Some((&other, existing)) = self
            .links
            .iter()
            .find(|(_, l)| l.info.peer == info.peer && l.info.group == info.group)
        {
            let initiator = |l: &LinkInfo| -> Arc<str> {
                if l.initiated_here {
                    self.identity.clone()
                } else {
                    l.peer.clone()
                }
            };
            let (old, new) = (initiator(&existing.info), initiator(&info));
            // Both ends compute the same answer: the link started by the lower identity
            // survives; between two links started by the same process, the older one.
            if new >= old {
                return Err(LinkRefused::Duplicate);
            }
            replaced = Some(other);
        }
        if let Some(other) = replaced {
            self.link_down(other);
        }
        let id = self.next_id();
        self.links.insert(
            id,
            LinkState {
                info,
                outbound,
                calls: FastMap::default(),
                relayed: FastMap::default(),
                served: FastMap::default(),
                out_subs: FastSet::default(),
                peer_synced: false,
                awaiting_acks: FastSet::default(),
                resynced: false,
            },
        );
        self.send_registry(id);
        Ok((id, replaced))
    }

    /// Forgets a link: its routes, the calls and subscriptions through it.
    pub(crate) fn link_down(&mut self, id: u64) {
        let Some(link) = self.links.remove(&id) else {
            return;
        };
        let lost = Failure::application_error(format!(
            "{} (connection to {} lost)",
            crate::failure::WITHDRAWN_DETAILS,
            link.info.peer
        ));
        for (_, pending) in link.calls {
            match pending {
                Pending::Local(tx) => {
                    let _ = tx.send(Reply::Failure(lost.clone()));
                }
                Pending::Relay { link, conv } => {
                    if let Some(back) = self.links.get_mut(&link) {
                        back.relayed.remove(&conv);
                        back.outbound.push(failure_frame(conv, &lost));
                    }
                }
            }
        }
        for (_, (next, conv)) in link.relayed {
            if let Some(next) = self.links.get_mut(&next)
                && next.calls.remove(&conv).is_some()
            {
                next.outbound.push(Frame::Cancel { conv });
            }
        }
        for (_, served) in link.served {
            self.end_served(served);
        }
        // Routes through the link go; services with no other route are withdrawn.
        let affected: Vec<Arc<str>> = self
            .remote
            .iter()
            .filter(|(_, s)| s.route(id).is_some())
            .map(|(a, _)| a.clone())
            .collect();
        for address in affected {
            self.remove_route(&address, id, WithdrawReason::ConnectionLost);
        }
        // Subscriptions we had sent on it and whose publisher is still reachable move to
        // the new route.
        for publisher in link.out_subs {
            self.reroute_subscriptions(&publisher);
        }
    }

    /// Ends a subscription that came in on a link.
    fn end_served(&mut self, served: Served) {
        match served {
            Served::Local { publisher, key } => {
                if let Some(local) = self.locals.get_mut(publisher.address()) {
                    local.publisher.unsubscribe(key);
                }
            }
            Served::Relayed { sid } => self.drop_remote_sub(sid, true),
        }
    }

    // ----- frames ---------------------------------------------------------------------------

    /// Handles one frame received on link `id`. Work that must not run under the lock is
    /// appended to `actions`.
    pub(crate) fn handle_frame(
        &mut self,
        id: u64,
        frame: Frame,
        raw: &Bytes,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        self.dispatch_frame(id, frame, raw, now, actions);
        // Checked after every frame, not only after SYNCED and SUBSCRIBED: a subscription
        // awaited for the resync can also end without an acknowledgement (its publisher
        // withdrawn, its monitor dropped), and the link must still be declared resynced.
        self.check_resynced(id, actions);
    }

    fn dispatch_frame(
        &mut self,
        id: u64,
        frame: Frame,
        raw: &Bytes,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        match frame {
            Frame::Service {
                address,
                name,
                audience,
                groups,
                version,
                path,
            } => self.on_service(id, &address, &name, &audience, &groups, version, &path, now),
            Frame::Withdraw { address, reason } => {
                let reason = match reason {
                    0 => WithdrawReason::Owner,
                    1 => WithdrawReason::ProcessExit,
                    _ => WithdrawReason::ConnectionLost,
                };
                self.remove_route(&address, id, reason);
            }
            Frame::Synced => {
                if let Some(link) = self.links.get_mut(&id) {
                    link.peer_synced = true;
                }
            }
            Frame::Request {
                conv,
                to,
                from,
                method,
                timeout_ms,
                args,
            } => self.on_request(id, conv, to, from, method, timeout_ms, args, actions),
            Frame::Response { conv, result } => {
                let relay = result.clone();
                self.on_reply(id, conv, Reply::Encoded(result), move |c| Frame::Response {
                    conv: c,
                    result: relay,
                });
            }
            Frame::Failure {
                conv,
                error,
                description,
                origin,
                details,
            } => {
                let failure = Failure::new(
                    error,
                    description.as_str(),
                    origin.as_str(),
                    details.as_str(),
                );
                let relay = failure.clone();
                self.on_reply(id, conv, Reply::Failure(failure), move |c| {
                    failure_frame(c, &relay)
                });
            }
            Frame::Cancel { conv } => {
                let relayed = self
                    .links
                    .get_mut(&id)
                    .and_then(|l| l.relayed.remove(&conv));
                if let Some((next, next_conv)) = relayed
                    && let Some(next) = self.links.get_mut(&next)
                    && next.calls.remove(&next_conv).is_some()
                {
                    next.outbound.push(Frame::Cancel { conv: next_conv });
                }
            }
            Frame::Subscribe {
                sid,
                publisher,
                subscriber,
                pattern,
            } => self.on_subscribe(id, sid, &publisher, &subscriber, &pattern, now),
            Frame::Subscribed { sid } => self.on_subscribed(id, sid),
            Frame::Unsubscribe { sid } => {
                let served = self.links.get_mut(&id).and_then(|l| l.served.remove(&sid));
                if let Some(served) = served {
                    self.end_served(served);
                }
            }
            Frame::Report {
                publisher,
                subject,
                seq,
                payload,
                paced,
            } => self.on_report(id, &publisher, &subject, seq, payload, paced, raw, actions),
            Frame::Targeted {
                sid,
                subject,
                seq,
                pattern,
                targeted,
                payload,
            } => self.on_targeted(id, sid, subject, seq, pattern, targeted, payload),
            Frame::Missed { publisher, count } => self.on_missed(id, &publisher, count),
            // Handshake, heartbeats and closes are the link task's business.
            Frame::Hello(_) | Frame::Heartbeat | Frame::Close { .. } => {}
        }
    }

    // ----- registry sync ------------------------------------------------------------------------

    /// A SERVICE frame: a new service, or a new or changed route to a known one. At a client
    /// taking back its hub this runs once per service in the whole network, so it avoids
    /// allocating what it can share (the peer's identity, group names) and encoding what no
    /// link will be sent.
    #[allow(clippy::too_many_arguments)]
    fn on_service(
        &mut self,
        link: u64,
        address: &Text,
        name: &Text,
        audience: &Text,
        groups: &[Text],
        version: u64,
        path: &[Text],
        now: Instant,
    ) {
        // Only what is kept is turned into an owned string, once.
        let address = address.as_str();
        if path.is_empty() {
            tracing::warn!(%address, "SERVICE without a path ignored");
            return;
        }
        if path
            .iter()
            .any(|p| p.as_bytes() == self.identity.as_bytes())
        {
            return; // it went around a loop back to us
        }
        let Some(info) = self.link(link).map(|l| &l.info) else {
            return;
        };
        let (link_group, peer) = (info.group.clone(), info.peer.clone());
        let route_path: Arc<[Arc<str>]> = path
            .iter()
            .map(|p| match p.as_bytes() == peer.as_bytes() {
                true => peer.clone(),
                false => Arc::from(p.as_str()),
            })
            .collect();
        let origin = route_path[0].clone();
        let path = route_path.clone();
        let route_groups: Few<Arc<str>> = groups
            .iter()
            .map(Text::as_str)
            .filter_map(|g| match self.registry.group_name(g) {
                Some(known) => Some(known),
                None => names::check_group_name(g).ok().map(|()| Arc::from(g)),
            })
            .collect();
        let route = RouteInfo {
            path: route_path,
            version,
            groups: route_groups,
        };
        // A known remote service cannot be local: the remote map is asked first, and only a
        // new service costs a second lookup.
        if let Some(service) = self.remote.get_mut(address) {
            let before = (
                service.best().map(|(l, r)| (l, r.clone())),
                service.newest().cloned(),
            );
            match service.route(link) {
                Some(i) => service.routes[i].1 = route,
                None => service.routes.push((link, route)),
            }
            self.after_route_change(address, before);
            return;
        }
        if self.locals.contains_key(address) {
            return; // it went around a loop back to us
        }
        let name = name.as_str();
        let (Ok(audience), Ok(())) = (
            audience.as_str().parse::<Audience>(),
            names::check_service_name(name),
        ) else {
            tracing::warn!(%address, "SERVICE with an invalid name or audience ignored");
            return;
        };
        let Some(_agent) = address
            .strip_suffix(name)
            .and_then(|a| a.strip_suffix('!'))
            .filter(|a| !a.is_empty())
        else {
            tracing::warn!(%address, %name, "SERVICE whose address does not end in its name ignored");
            return;
        };
        let binding = Binding::with_address(
            Arc::from(address),
            Arc::from(name),
            audience,
            origin,
            Location::Remote,
            Some(link_group),
        );
        let groups = route.groups.clone();
        self.remote.insert(
            binding.address_arc().clone(),
            RemoteService {
                binding: binding.clone(),
                routes: Few::One((link, route)),
                liveness: OnceLock::new(),
            },
        );
        self.add_binding(binding.clone(), &groups, now);
        // What `current_ad` would find, without looking it up again.
        let ad = ServiceAd {
            raw: None,
            learned_from: Some(link),
            path,
            audience: binding.audience().clone(),
        };
        self.announce_ad(binding.address_arc(), None, ad, true);
    }

    /// Applies a change in a remote service's routes: group changes to the registry, a new
    /// best route to subscriptions, and the new state to the other links.
    fn after_route_change(
        &mut self,
        address: &str,
        before: (Option<(u64, RouteInfo)>, Option<RouteInfo>),
    ) {
        let Some(service) = self.remote.get(address) else {
            return;
        };
        let best = service.best().map(|(l, r)| (l, r.clone()));
        let newest = service.newest().cloned();
        let address: Arc<str> = service.binding.address_arc().clone();
        let old_groups: &[Arc<str>] = before.1.as_ref().map_or(&[], |r| &r.groups);
        let new_groups: &[Arc<str>] = newest.as_ref().map_or(&[], |r| &r.groups);
        for g in old_groups.iter().filter(|g| !new_groups.contains(g)) {
            self.registry_leave(&address, g);
        }
        for g in new_groups.iter().filter(|g| !old_groups.contains(g)) {
            self.registry_join(&address, g.clone());
        }
        if before.0.as_ref().map(|b| b.0) != best.as_ref().map(|b| b.0) {
            self.reroute_subscriptions(&address);
        }
        let changed = before.0.as_ref().map(|b| &b.1.path) != best.as_ref().map(|b| &b.1.path)
            || before.1.as_ref().map(|r| r.version) != newest.as_ref().map(|r| r.version)
            || old_groups != new_groups;
        // Unchanged, the SERVICE frame is the same, but the route it was learned over may
        // be another: links that may now have it (or no longer) must hear of it.
        self.reannounce(&address, changed);
    }

    /// Removes the route via `link` to a remote service; withdraws the service if it was
    /// the last one.
    fn remove_route(&mut self, address: &str, link: u64, reason: WithdrawReason) {
        let Some(service) = self.remote.get_mut(address) else {
            return;
        };
        let Some(i) = service.route(link) else {
            return;
        };
        if service.routes.len() > 1 {
            let before = (
                service.best().map(|(l, r)| (l, r.clone())),
                service.newest().cloned(),
            );
            service.routes.remove(i);
            self.after_route_change(address, before);
            return;
        }
        let Some(service) = self.remote.remove(address) else {
            return;
        };
        // Subscriptions toward it end with it; its subscribers hear of the withdrawal
        // through the registry.
        if let Some(publisher) = self.remote_publishers.remove(address) {
            for sid in publisher.sids {
                self.drop_remote_sub(sid, false);
            }
        }
        self.remove_binding(address, reason);
        self.withdraw_everywhere(service.binding.address_arc(), reason);
        drop(service.liveness);
    }

    /// Announces a visible service on every link it may be exported to, and withdraws it
    /// from links it may no longer be exported to. Call on every change of its state.
    pub(crate) fn advertise(&mut self, address: &Arc<str>) {
        self.reannounce(address, true);
    }

    /// Brings every link up to date with a service's current state. With `resend`, the
    /// state changed and every link that may have it hears it again; without, the SERVICE
    /// frame is unchanged and only links whose eligibility changed hear of it.
    fn reannounce(&mut self, address: &Arc<str>, resend: bool) {
        let old = self.ads.remove(address);
        match self.current_ad(address) {
            Some(new) => self.announce_ad(address, old, new, resend),
            None => {
                if let Some(old) = old {
                    self.withdraw_ad(address, &old, 2);
                }
            }
        }
    }

    /// Moves every link from a service's `old` announced state (if any) to `new`.
    fn announce_ad(
        &mut self,
        address: &Arc<str>,
        old: Option<ServiceAd>,
        mut new: ServiceAd,
        resend: bool,
    ) {
        if !resend {
            new.raw = old.as_ref().and_then(|o| o.raw.clone());
        }
        let mut exported = false;
        for (&id, link) in &self.links {
            let was = old.as_ref().is_some_and(|o| o.exports_to(id, &link.info));
            if new.exports_to(id, &link.info) {
                exported = true;
                if resend || !was {
                    let raw = match &new.raw {
                        Some(raw) => raw.clone(),
                        None => {
                            let Some(raw) = self.encode_ad(address) else {
                                continue;
                            };
                            new.raw.insert(raw).clone()
                        }
                    };
                    link.outbound.push_raw(&raw);
                }
            } else if was {
                link.outbound.push(Frame::Withdraw {
                    address: Text::from(&**address),
                    reason: 2,
                });
            }
        }
        // Kept only where it went: most services a client learns go nowhere, and a service
        // with no ad is then one that no link has.
        if exported {
            self.ads.insert(address.clone(), new);
        }
    }

    /// What decides where a visible service may be announced, as it stands now.
    fn current_ad(&self, address: &str) -> Option<ServiceAd> {
        let entry = self.registry.get(address)?;
        let (learned_from, path) = if self.locals.contains_key(address) {
            (None, Arc::from([]))
        } else {
            let (link, best) = self.remote.get(address)?.best()?;
            (Some(link), best.path.clone())
        };
        Some(ServiceAd {
            raw: None,
            learned_from,
            path,
            audience: entry.binding.audience().clone(),
        })
    }

    /// The service's SERVICE frame as this process sends it.
    fn encode_ad(&self, address: &str) -> Option<Bytes> {
        let entry = self.registry.get(address)?;
        let binding = &entry.binding;
        let (version, path): (u64, Vec<Text>) = match self.locals.get(address) {
            Some(local) => (local.version, Vec::new()),
            None => {
                let remote = self.remote.get(address)?;
                let (_, best) = remote.best()?;
                (
                    remote.newest()?.version,
                    best.path.iter().map(Text::from).collect(),
                )
            }
        };
        let mut path = path;
        path.push(Text::from(&self.identity));
        let frame = Frame::Service {
            address: Text::from(address),
            name: Text::from(binding.service_name()),
            audience: Text::from(binding.audience().as_str()),
            groups: entry.groups().map(Text::from).collect(),
            version,
            path,
        };
        let mut buf = BytesMut::new();
        netsvc_proto::wire::encode(&frame, &mut buf);
        Some(buf.freeze())
    }

    /// Sends a new link every service it may see, oldest first, then SYNCED: as one queued
    /// item, since a hub taking back a thousand clients queues a thousand services on each.
    fn send_registry(&mut self, id: u64) {
        let Some(info) = self.link(id).map(|l| l.info.clone()) else {
            return;
        };
        // SERVICE frames are some 100 bytes: one allocation, nearly always.
        let mut batch = BytesMut::with_capacity((self.registry.len() * 128).min(1 << 22));
        let mut fresh = Vec::new();
        for address in self.registry.addresses() {
            let made;
            let ad = match self.ads.get(address) {
                Some(ad) => ad,
                None => match self.current_ad(address) {
                    Some(ad) => {
                        made = ad;
                        &made
                    }
                    None => continue,
                },
            };
            if !ad.exports_to(id, &info) {
                continue;
            }
            match &ad.raw {
                Some(raw) => batch.extend_from_slice(raw),
                None => {
                    let Some(raw) = self.encode_ad(address) else {
                        continue;
                    };
                    batch.extend_from_slice(&raw);
                    fresh.push((
                        address.clone(),
                        ServiceAd {
                            raw: Some(raw),
                            ..ad.clone()
                        },
                    ));
                }
            }
        }
        // Announced now, or encoded for the first time: kept for the next links.
        for (address, ad) in fresh {
            self.ads.insert(address, ad);
        }
        netsvc_proto::wire::encode(&Frame::Synced, &mut batch);
        if let Some(link) = self.links.get(&id) {
            link.outbound.push_raw(&batch);
        }
    }

    /// Sends WITHDRAW for a service to every link it was announced on.
    pub(crate) fn withdraw_everywhere(&mut self, address: &Arc<str>, reason: WithdrawReason) {
        let code = match reason {
            WithdrawReason::Owner => 0,
            WithdrawReason::ProcessExit => 1,
            WithdrawReason::ConnectionLost => 2,
        };
        if let Some(ad) = self.ads.remove(address) {
            self.withdraw_ad(address, &ad, code);
        }
    }

    fn withdraw_ad(&self, address: &str, ad: &ServiceAd, code: u8) {
        for (&id, link) in &self.links {
            if ad.exports_to(id, &link.info) {
                link.outbound.push(Frame::Withdraw {
                    address: Text::from(address),
                    reason: code,
                });
            }
        }
    }

    fn check_resynced(&mut self, id: u64, actions: &mut Vec<Action>) {
        if let Some(link) = self.links.get_mut(&id)
            && link.peer_synced
            && link.awaiting_acks.is_empty()
            && !link.resynced
        {
            link.resynced = true;
            actions.push(Action::Resynced);
        }
    }

    // ----- requests ---------------------------------------------------------------------------

    /// How to reach a remote service for a request.
    pub(crate) fn remote_route(&self, address: &str) -> Option<Route> {
        let service = self.remote.get(address)?;
        let (link, _) = service.best()?;
        let outbound = self.link(link)?.outbound.clone();
        Some(Route::Remote {
            link,
            outbound,
            liveness: service
                .liveness
                .get_or_init(|| watch::channel(()).0)
                .subscribe(),
        })
    }

    /// Records a call waiting for its reply on `link`. False if the link is gone.
    pub(crate) fn await_reply(&mut self, link: u64, conv: u64, tx: oneshot::Sender<Reply>) -> bool {
        match self.links.get_mut(&link) {
            Some(l) => {
                l.calls.insert(conv, Pending::Local(tx));
                true
            }
            None => false,
        }
    }

    /// A local caller stopped waiting (timeout or cancellation): tell the next hop.
    pub(crate) fn abandon_call(&mut self, link: u64, conv: u64) {
        if let Some(l) = self.links.get_mut(&link)
            && l.calls.remove(&conv).is_some()
        {
            l.outbound.push(Frame::Cancel { conv });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_request(
        &mut self,
        id: u64,
        conv: u64,
        to: Text,
        from: Option<Text>,
        method: Text,
        timeout_ms: u64,
        args: Bytes,
        actions: &mut Vec<Action>,
    ) {
        let Some(link) = self.link(id) else { return };
        let back = link.outbound.clone();
        if let Some(local) = self.locals.get(to.as_str()) {
            let sender = from
                .as_deref()
                .and_then(|f| self.registry.lookup_address(f));
            actions.push(Action::Dispatch {
                service: local.shared.clone(),
                method,
                args,
                sender,
                conv,
                responder: Responder::link(back, conv, self.limits),
            });
            return;
        }
        let next = self
            .remote
            .get(to.as_str())
            .and_then(|s| s.best())
            .map(|(l, _)| l);
        let Some(next) = next else {
            back.push(failure_frame(
                conv,
                &Failure::service_unavailable(format!("No service at address {to:?}.")),
            ));
            return;
        };
        let next_conv = self.next_id();
        let frame = Frame::Request {
            conv: next_conv,
            to,
            from,
            method,
            timeout_ms,
            args,
        };
        let accepted = self
            .links
            .get(&next)
            .is_some_and(|l| l.outbound.try_push_request(frame));
        if !accepted {
            back.push(failure_frame(conv, &crate::exchange::busy_failure()));
            return;
        }
        if let Some(l) = self.links.get_mut(&next) {
            l.calls.insert(next_conv, Pending::Relay { link: id, conv });
        }
        if let Some(l) = self.links.get_mut(&id) {
            l.relayed.insert(conv, (next, next_conv));
        }
    }

    fn on_reply(&mut self, id: u64, conv: u64, reply: Reply, relay: impl FnOnce(u64) -> Frame) {
        let pending = self.links.get_mut(&id).and_then(|l| l.calls.remove(&conv));
        match pending {
            Some(Pending::Local(tx)) => {
                let _ = tx.send(reply);
            }
            Some(Pending::Relay { link, conv }) => {
                if let Some(back) = self.links.get_mut(&link) {
                    back.relayed.remove(&conv);
                    back.outbound.push(relay(conv));
                }
            }
            None => {} // the caller gave up
        }
    }

    // ----- reports ---------------------------------------------------------------------------

    /// Sends a subscription toward a remote publisher on its best route.
    pub(crate) fn subscribe_remote(
        &mut self,
        publisher: &str,
        subscriber: Binding,
        pattern: Arc<Pattern>,
        origin_monitor: Option<u64>,
        origin_relay: Option<(u64, u64)>,
    ) -> Option<u64> {
        let origin = match (origin_monitor, origin_relay) {
            (Some(m), _) => SubOrigin::Monitor(m),
            (None, Some((link, sid))) => SubOrigin::Relay { link, sid },
            (None, None) => return None,
        };
        self.send_subscribe(publisher, subscriber, pattern, origin)
    }

    /// Sends a subscription toward a remote publisher on its best route; `None` if it has
    /// none.
    fn send_subscribe(
        &mut self,
        publisher: &str,
        subscriber: Binding,
        pattern: Arc<Pattern>,
        origin: SubOrigin,
    ) -> Option<u64> {
        let remote = self.remote.get(publisher)?;
        let link = remote.best()?.0;
        let publisher = remote.binding.clone();
        let frame = |sid| Frame::Subscribe {
            sid,
            publisher: Text::from(publisher.address()),
            subscriber: Text::from(subscriber.address()),
            pattern: Text::from(pattern.as_str()),
        };
        let sid = self.remote_subs.insert(RemoteSub {
            publisher: PublisherAddress(publisher.clone()),
            subscriber: subscriber.clone(),
            pattern: pattern.clone(),
            origin,
            link,
            installed: false,
            generation: 0,
        })?;
        let p = self
            .remote_publishers
            .entry(publisher.address_arc().clone())
            .or_default();
        p.sids.insert(sid);
        let first = p.add_link(link);
        if let Some(l) = self.links.get_mut(&link) {
            if first {
                l.out_subs.insert(publisher.address_arc().clone());
            }
            if !l.resynced {
                l.awaiting_acks.insert(sid);
            }
            l.outbound.push(frame(sid));
        }
        Some(sid)
    }

    /// Forgets a subscription toward a remote publisher; with `tell`, the next hop is told.
    pub(crate) fn drop_remote_sub(&mut self, sid: u64, tell: bool) {
        let Some(sub) = self.remote_subs.remove(&sid) else {
            return;
        };
        // A publisher already forgotten (withdrawn) had its last subscriptions dropped.
        let mut last = true;
        if let Some(p) = self.remote_publishers.get_mut(&*sub.publisher) {
            p.sids.remove(&sid);
            if sub.installed {
                p.index.remove(&sub.pattern, &sid);
                p.route = None;
            }
            last = p.remove_link(sub.link);
        }
        if let Some(l) = self.links.get_mut(&sub.link) {
            if last {
                l.out_subs.remove(&*sub.publisher);
            }
            l.awaiting_acks.remove(&sid);
            if tell {
                l.outbound.push(Frame::Unsubscribe { sid });
            }
        }
    }

    /// Moves every subscription toward `publisher` that is not on its best route onto it.
    fn reroute_subscriptions(&mut self, publisher: &Arc<str>) {
        let Some(best) = self
            .remote
            .get(publisher)
            .and_then(|s| s.best())
            .map(|b| b.0)
        else {
            return;
        };
        let stale: Vec<u64> = self
            .remote_publishers
            .get(publisher)
            .map(|p| {
                p.sids
                    .iter()
                    .copied()
                    .filter(|sid| self.remote_subs.get(sid).is_some_and(|s| s.link != best))
                    .collect()
            })
            .unwrap_or_default();
        for sid in stale {
            let Some(sub) = self.remote_subs.get(&sid) else {
                continue;
            };
            let (subscriber, pattern, origin) =
                (sub.subscriber.clone(), sub.pattern.clone(), sub.origin);
            self.drop_remote_sub(sid, true);
            let Some(new_sid) = self.send_subscribe(publisher, subscriber, pattern, origin) else {
                continue;
            };
            match origin {
                SubOrigin::Monitor(m) => {
                    if let Some(monitor) = self.monitors.get_mut(&m) {
                        monitor.remote_sids.retain(|s| *s != sid);
                        monitor.remote_sids.push(new_sid);
                    }
                }
                SubOrigin::Relay { link, sid: theirs } => {
                    if let Some(l) = self.links.get_mut(&link) {
                        l.served.insert(theirs, Served::Relayed { sid: new_sid });
                    }
                }
            }
        }
    }

    fn on_subscribe(
        &mut self,
        id: u64,
        sid: u64,
        publisher: &Text,
        subscriber: &Text,
        pattern: &Text,
        now: Instant,
    ) {
        let Some(outbound) = self.link(id).map(|l| l.outbound.clone()) else {
            return;
        };
        // A subscription this process will not serve is still acknowledged: the subscriber
        // then knows its request was processed (and nothing will flow), instead of waiting
        // for an answer that never comes.
        let Ok(pattern) = Pattern::new(pattern) else {
            tracing::warn!(%pattern, "SUBSCRIBE with an invalid pattern not served");
            outbound.push(Frame::Subscribed { sid });
            return;
        };
        // As in the original, a publisher serves only subscribers it can see.
        let Some(subscriber) = self.registry.lookup_address(subscriber) else {
            tracing::debug!(%subscriber, "SUBSCRIBE from a service not visible here not served");
            outbound.push(Frame::Subscribed { sid });
            return;
        };
        let key = self.next_id();
        if let Some(local) = self.locals.get_mut(publisher.as_str()) {
            if !local.visible {
                outbound.push(Frame::Subscribed { sid });
                return;
            }
            let publisher_binding = local.shared.binding.clone();
            local.publisher.subscribe(
                key,
                &publisher_binding,
                subscriber.clone(),
                pattern,
                Delivery::Link {
                    link: id,
                    outbound: outbound.clone(),
                    sid,
                },
                now,
            );
            outbound.push(Frame::Subscribed { sid });
            self.subscriptions_by_subscriber
                .entry(subscriber.address_arc().clone())
                .or_default()
                .push((publisher_binding.address_arc().clone(), key));
            if let Some(l) = self.links.get_mut(&id) {
                l.served.insert(
                    sid,
                    Served::Local {
                        publisher: publisher_binding,
                        key,
                    },
                );
            }
            return;
        }
        match self.subscribe_remote(
            publisher.as_str(),
            subscriber,
            Arc::new(pattern),
            None,
            Some((id, sid)),
        ) {
            Some(ours) => {
                if let Some(l) = self.links.get_mut(&id) {
                    l.served.insert(sid, Served::Relayed { sid: ours });
                }
            }
            None => outbound.push(Frame::Subscribed { sid }),
        }
    }

    fn on_subscribed(&mut self, id: u64, sid: u64) {
        let Some(sub) = self.remote_subs.get_mut(&sid) else {
            return;
        };
        if sub.link != id {
            return;
        }
        if !sub.installed {
            sub.installed = true;
            if let Some(p) = self.remote_publishers.get_mut(&*sub.publisher) {
                p.index.insert(&sub.pattern, sid);
                p.route = None;
            }
        }
        if let SubOrigin::Relay { link, sid: theirs } = sub.origin
            && let Some(l) = self.links.get(&link)
        {
            l.outbound.push(Frame::Subscribed { sid: theirs });
        }
        if let Some(l) = self.links.get_mut(&id) {
            l.awaiting_acks.remove(&sid);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_report(
        &mut self,
        id: u64,
        publisher: &Text,
        subject: &Text,
        seq: u64,
        payload: Bytes,
        paced: bool,
        raw: &Bytes,
        actions: &mut Vec<Action>,
    ) {
        let Some(remote) = self.remote_publishers.get_mut(publisher.as_str()) else {
            return;
        };
        let known = remote
            .route
            .as_ref()
            .is_some_and(|r| r.link == id && *r.subject == *subject.as_str());
        if !known {
            // The previous route's buffers are reused: a publisher cycling through many
            // subjects allocates only each subject's shared string.
            let mut route = remote.route.take().unwrap_or_default();
            route.monitors.clear();
            route.downstream.clear();
            let subs = &self.remote_subs;
            remote.index.for_each_match(subject, |_, sid| {
                let Some(sub) = subs.get(sid) else { return };
                if sub.link != id {
                    return; // a report still in flight on a route we have left
                }
                match sub.origin {
                    SubOrigin::Monitor(m) => route.monitors.push((m, sub.pattern.clone())),
                    SubOrigin::Relay { link, .. } => {
                        if !route.downstream.contains(&link) {
                            route.downstream.push(link);
                        }
                    }
                }
            });
            route.subject = Arc::from(subject.as_str());
            route.link = id;
            remote.route = Some(route);
        }
        let Some(route) = &remote.route else {
            return;
        };
        for link in &route.downstream {
            if let Some(l) = self.links.get(link)
                && l.outbound
                    .push_report(raw, || (publisher.clone(), subject.clone()))
                && paced
                && l.outbound.applies_backpressure()
                && !actions
                    .iter()
                    .any(|a| matches!(a, Action::Backpressure(o) if Arc::ptr_eq(o, &l.outbound)))
            {
                actions.push(Action::Backpressure(l.outbound.clone()));
            }
        }
        if !route.monitors.is_empty()
            && let Some(binding) = self.remote.get(publisher.as_str()).map(|s| &s.binding)
        {
            let content = Payload::from_bytes(payload);
            for (m, pattern) in &route.monitors {
                if let Some(monitor) = self.monitors.get_mut(m) {
                    monitor.note_seq(binding.address_arc(), seq);
                    monitor.queue.push(ReportEvent::Report(Report::new(
                        binding.clone(),
                        route.subject.clone(),
                        content.clone(),
                        Some(pattern.clone()),
                        false,
                    )));
                }
            }
        }
    }

    /// Reports of `publisher` were lost on the way here: tell every subscription that
    /// receives them through this link.
    fn on_missed(&mut self, id: u64, publisher: &Text, count: u64) {
        let Some(remote) = self.remote_publishers.get(publisher.as_str()) else {
            return;
        };
        let mut monitors = Vec::new();
        let mut downstream = Vec::new();
        for sid in &remote.sids {
            let Some(sub) = self.remote_subs.get(sid) else {
                continue;
            };
            if sub.link != id || !sub.installed {
                continue;
            }
            match sub.origin {
                SubOrigin::Monitor(m) if !monitors.contains(&m) => monitors.push(m),
                SubOrigin::Relay { link, .. } if !downstream.contains(&link) => {
                    downstream.push(link)
                }
                _ => {}
            }
        }
        for m in monitors {
            if let Some(monitor) = self.monitors.get(&m) {
                monitor.queue.push(ReportEvent::Missed(count));
            }
        }
        for link in downstream {
            if let Some(l) = self.links.get(&link) {
                l.outbound.push(Frame::Missed {
                    publisher: publisher.clone(),
                    count,
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_targeted(
        &mut self,
        id: u64,
        sid: u64,
        subject: Text,
        seq: u64,
        pattern: Option<Text>,
        targeted: bool,
        payload: Bytes,
    ) {
        let Some(sub) = self.remote_subs.get(&sid) else {
            return;
        };
        if sub.link != id {
            return;
        }
        match sub.origin {
            SubOrigin::Relay { link, sid: theirs } => {
                if let Some(l) = self.links.get(&link) {
                    l.outbound.push(Frame::Targeted {
                        sid: theirs,
                        subject,
                        seq,
                        pattern,
                        targeted,
                        payload,
                    });
                }
            }
            SubOrigin::Monitor(m) => {
                let Some(binding) = self.remote.get(&*sub.publisher).map(|s| s.binding.clone())
                else {
                    return;
                };
                let Some(monitor) = self.monitors.get_mut(&m) else {
                    return;
                };
                // After a re-subscription the cache comes again: skip what was seen.
                if !targeted && !monitor.note_seq(binding.address_arc(), seq) {
                    return;
                }
                let pattern = pattern.and_then(|p| Pattern::new(&p).ok()).map(Arc::new);
                monitor.queue.push(ReportEvent::Report(Report::new(
                    binding,
                    Arc::from(subject.as_str()),
                    Payload::from_bytes(payload),
                    pattern,
                    targeted,
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn sub(link: u64) -> RemoteSub {
        RemoteSub {
            publisher: PublisherAddress(binding("p")),
            subscriber: binding("s"),
            pattern: Arc::new(Pattern::new("a.b").expect("valid pattern")),
            origin: SubOrigin::Monitor(1),
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
        let mut subs = RemoteSubs::default();
        let a = subs.insert(sub(1)).expect("room");
        let b = subs.insert(sub(2)).expect("room");
        assert_ne!(a, 0);
        assert_eq!(subs.get(&b).map(|s| s.link), Some(2));
        assert_eq!(subs.remove(&a).map(|s| s.link), Some(1));
        assert!(subs.get(&a).is_none());
        assert!(subs.remove(&a).is_none());
        // The freed slot is reused under a new id; the old id still finds nothing.
        let c = subs.insert(sub(3)).expect("room");
        assert_ne!(c, a);
        assert_eq!(c & u64::from(u32::MAX), a & u64::from(u32::MAX));
        assert!(subs.get(&a).is_none());
        assert_eq!(subs.get(&c).map(|s| s.link), Some(3));
        if let Some(s) = subs.get_mut(&c) {
            s.installed = true;
        }
        assert!(subs.get(&c).is_some_and(|s| s.installed));
        // An id naming a slot that was never used finds nothing either.
        assert!(subs.get(&(c + 100)).is_none());
    }
}
