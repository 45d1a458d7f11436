//! Everything of the runtime's state that crosses exchange links: the links themselves,
//! routes to remote services, requests and report subscriptions relayed between links, and
//! what each link has been told.
//!
//! Routing is path-vector: every SERVICE announcement carries the processes it went
//! through, a process ignores announcements that already passed through it, and it keeps
//! every route it hears of, using the shortest. This is loop-free on any topology, and a
//! lost link only withdraws the services that have no other route.
//!
//! - `inbound.rs`: the frames a link receives, checked and turned into domain values, each
//!   kind handed to the part below that owns it;
//! - `routes.rs`: remote services and the routes to them;
//! - `ads.rs`: what each link has been told of our registry, and telling it of changes;
//! - `interest.rs`: the interest-scoped registry, where a client is told only of the
//!   services it asked for;
//! - `relay.rs`: requests that cross links, ours and relayed;
//! - `subs.rs`: subscriptions toward remote publishers, ours and relayed, and those that
//!   links hold on our publishers;
//! - `reports.rs`: reports arriving from remote publishers, delivered and relayed.

mod ads;
mod inbound;
mod interest;
mod relay;
mod reports;
mod routes;
#[cfg(test)]
mod scoped_tests;
mod subs;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use self::ads::ServiceAd;
use self::interest::{Interest, Scope, Wanted};
use self::relay::Pending;
use self::routes::RemoteService;
use self::subs::{RemotePublisher, RemoteSubs, Served};
use super::Core;
use super::link_queue::LinkQueue;
use super::link_queue::failure_frame;
use super::local::{EncodedCall, ServiceRef};
use super::meters::QueueTotals;
use super::reply::{Reply, Responder};
use crate::model::announcement::WithdrawReason;
use crate::model::binding::Binding;
use crate::model::collections::{FastMap, FastSet};
use crate::model::failure::Failure;
use crate::model::grant::Grants;
use crate::model::ids::{Conv, Id as _, Ids, LinkId, Sid};
use crate::model::stats::{LinkStats, SubscriptionRole, SubscriptionStats, Subscriptions};
use netsvc_proto::Pattern;

pub(crate) use self::interest::INTEREST_PATIENCE;
pub(crate) use self::subs::SubOrigin;

/// What a link is, as the state owner needs to know it.
#[derive(Debug, Clone)]
pub(crate) struct LinkInfo {
    pub(crate) group: Arc<str>,
    pub(crate) peer: Arc<str>,
    pub(crate) initiated_here: bool,
    /// The number the connecting side gave this connection among those it opened (its
    /// HELLO's `attempt` option), if it said.
    pub(crate) attempt: Option<u64>,
    /// What the peer's user may do, when users are configured: checked on every frame the
    /// link brings (`inbound.rs`) and every announcement it is sent (`ads.rs`).
    pub(crate) grants: Option<Arc<Grants>>,
    /// The peer's socket address (`unix` on a Unix socket), for stats.
    pub(crate) remote: Arc<str>,
    pub(crate) tls: bool,
    /// The user the peer logged in as.
    pub(crate) user: Option<Arc<str>>,
    /// Both HELLOs agreed on an interest-scoped registry (PROTOCOL.md §8.1): the side that
    /// initiated the link is told only of the services it asks for.
    pub(crate) scoped_registry: bool,
    /// When the link came up.
    pub(crate) since: std::time::Instant,
}

impl LinkInfo {
    /// What decides which of two links between the same two processes survives, the same
    /// at both ends (PROTOCOL.md §6.3): the link started by the lower process identity, and
    /// of two started by one process, the one it started first. Lower survives.
    fn precedence(&self, ours: &Arc<str>) -> (Arc<str>, u64) {
        let initiator = if self.initiated_here {
            ours.clone()
        } else {
            self.peer.clone()
        };
        // A peer that does not number its connections: the link registered first here wins.
        (initiator, self.attempt.unwrap_or(u64::MAX))
    }
}

/// Everything the runtime keeps about one established link.
struct LinkState {
    info: LinkInfo,
    queue: Arc<LinkQueue>,
    /// Conversation ids of the requests we send on this link, ours and relayed: one
    /// namespace per link and direction (PROTOCOL.md §4.6).
    convs: Ids<Conv>,
    /// Our requests on this link awaiting their reply.
    calls: FastMap<Conv, Pending>,
    /// Requests received on this link and relayed: their conv → (next link, conv there).
    relayed: FastMap<Conv, (LinkId, Conv)>,
    /// Subscriptions the peer holds through this link, by its subscription id.
    served: FastMap<Sid, Served>,
    /// The remote publishers that our subscriptions on this link go to, so that they move
    /// to another route when the link goes. One entry per publisher rather than one id per
    /// subscription: a hub's link to a busy publisher carries thousands.
    out_subs: FastSet<Arc<str>>,
    /// Whether the peer has sent its whole registry, and which of our subscriptions sent on
    /// this link before then still await their acknowledgement.
    peer_synced: bool,
    awaiting_acks: FastSet<Sid>,
    resynced: bool,
    /// On an interest-scoped link, which end asked and what the peer wants.
    scope: Option<Scope>,
    /// The path of a route straight from the peer (`[peer]`), shared by every such route.
    direct_path: Arc<[Arc<str>]>,
}

impl LinkState {
    /// Whether the service at `address` is announced on this link, as far as the peer's
    /// interest goes (`ServiceAd::exports_to` says the rest).
    fn admits(&self, address: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.admits(address))
    }
}

/// The exchange half of the core's state.
#[derive(Default)]
pub(super) struct Mesh {
    links: FastMap<LinkId, LinkState>,
    /// Services learned through links, by address.
    remote: FastMap<Arc<str>, RemoteService>,
    /// Our subscriptions toward remote publishers, by subscription id.
    subs: RemoteSubs,
    /// The same, by publisher, with what routes its reports.
    publishers: FastMap<Arc<str>, RemotePublisher>,
    /// Encoded SERVICE frames, by address, until the service's state changes.
    ads: FastMap<Arc<str>, ServiceAd>,
    /// What this process wants on its interest-scoped links.
    wanted: Wanted,
}

impl Mesh {
    fn link(&self, id: LinkId) -> Option<&LinkState> {
        self.links.get(&id)
    }

    /// The queue of link `id`.
    pub(super) fn queue(&self, id: LinkId) -> Option<Arc<LinkQueue>> {
        self.links.get(&id).map(|l| l.queue.clone())
    }
}

/// Work a link's task does after releasing the state lock.
pub(crate) enum Action {
    /// Run a method for a request that came in on the link.
    Dispatch {
        service: ServiceRef,
        call: EncodedCall,
        responder: Responder,
    },
    /// The peer's registry is fully known and our subscriptions through it are in place.
    Resynced,
    /// A paced report from this link went to a congested link: stop reading until it
    /// drains (bounded by `ExchangeConfig::backpressure_limit`).
    Backpressure(Arc<LinkQueue>),
}

/// Why a link could not be established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkRefused {
    /// Another link to the same process in the same group wins.
    Duplicate,
    /// A link of another user holds that process identity: a link may replace only a link
    /// of its own user (docs/SECURITY.md, *Process identities*).
    OtherUser,
}

impl Core {
    /// Registers an established link and announces to it everything it may see. Returns its
    /// id and the queue of a duplicate link that this one replaces (which the caller closes).
    pub(crate) fn link_up(
        &mut self,
        info: LinkInfo,
        queue: Arc<LinkQueue>,
    ) -> Result<(LinkId, Option<Arc<LinkQueue>>), LinkRefused> {
        let mut replaced = None;
        if let Some((&other, existing)) = self
            .mesh
            .links
            .iter()
            .find(|(_, l)| l.info.peer == info.peer && l.info.group == info.group)
        {
            // With logins, a process identity belongs to the user that linked with it: a
            // HELLO that claims it for another user must not take the link away (and with
            // it every service of that process).
            if existing.info.user != info.user {
                return Err(LinkRefused::OtherUser);
            }
            let old = existing.info.precedence(&self.identity);
            let new = info.precedence(&self.identity);
            if new >= old {
                return Err(LinkRefused::Duplicate);
            }
            replaced = Some(other);
        }
        let replaced = replaced.and_then(|other| {
            let queue = self.mesh.queue(other);
            self.link_down(other);
            queue
        });
        // A process that others link to answers for the whole registry: it wants it all.
        if !info.initiated_here {
            self.want_all();
        }
        let scope = info.scoped_registry.then(|| match info.initiated_here {
            true => Scope::Asked {
                initial: u64::MAX,
                answered: 0,
            },
            false => Scope::Serving(Interest::default()),
        });
        let id = self.ids.links.next();
        let direct_path = Arc::from([info.peer.clone()]);
        self.mesh.links.insert(
            id,
            LinkState {
                direct_path,
                info,
                queue,
                convs: Ids::default(),
                calls: FastMap::default(),
                relayed: FastMap::default(),
                served: FastMap::default(),
                out_subs: FastSet::default(),
                peer_synced: false,
                awaiting_acks: FastSet::default(),
                resynced: false,
                scope,
            },
        );
        self.send_registry(id);
        self.send_wanted(id);
        Ok((id, replaced))
    }

    /// Forgets a link: its routes, the calls and subscriptions through it.
    /// Each link up now, with its traffic; and what the queues of all links, gone ones
    /// included, have counted.
    pub(crate) fn link_stats(&self) -> (Vec<LinkStats>, QueueTotals) {
        let mut totals = self.traffic.retired;
        let mut links: Vec<LinkStats> = self
            .mesh
            .links
            .iter()
            .map(|(id, link)| {
                let traffic = link.queue.traffic();
                totals += traffic.totals;
                let info = &link.info;
                LinkStats {
                    id: id.raw(),
                    peer: info.peer.to_string(),
                    group: info.group.to_string(),
                    remote: info.remote.to_string(),
                    initiated_here: info.initiated_here,
                    user: info.user.as_deref().map(str::to_owned),
                    tls: info.tls,
                    age_ms: u64::try_from(info.since.elapsed().as_millis()).unwrap_or(u64::MAX),
                    bytes_in: traffic.bytes_in,
                    bytes_out: traffic.bytes_out,
                    frames_in: traffic.frames_in,
                    reports_out: traffic.totals.sent,
                    queued_bytes: traffic.queued as u64,
                    coalesced: traffic.totals.coalesced,
                    dropped: traffic.totals.dropped,
                }
            })
            .collect();
        links.sort_by_key(|l| l.id);
        (links, totals)
    }

    /// The subscriptions held here, at most `limit` of them, sorted by publisher, pattern
    /// and subscriber; the rest are only counted.
    pub(crate) fn subscriptions(&self, limit: usize) -> Subscriptions {
        let entry = |publisher: &Binding,
                     subscriber: &Binding,
                     pattern: &Pattern,
                     role: SubscriptionRole,
                     link: Option<LinkId>| SubscriptionStats {
            publisher: publisher.service_name().to_owned(),
            publisher_address: publisher.address().to_owned(),
            subscriber: subscriber.service_name().to_owned(),
            subscriber_address: subscriber.address().to_owned(),
            pattern: pattern.as_str().to_owned(),
            role,
            link: link.map(|l| l.raw()),
        };
        let mut entries: Vec<SubscriptionStats> = Vec::new();
        let mut total = 0u64;
        let mut keep = |e: SubscriptionStats| {
            total += 1;
            if entries.len() < limit {
                entries.push(e);
            }
        };
        for local in self.locals.values() {
            let publisher = local.service.binding();
            for (subscriber, pattern, link) in local.publisher.subscriptions() {
                let role = match link {
                    None => SubscriptionRole::Local,
                    Some(_) => SubscriptionRole::Served,
                };
                keep(entry(publisher, subscriber, pattern, role, link));
            }
        }
        for sub in self.mesh.subs.iter() {
            let role = match sub.origin {
                SubOrigin::Monitor(_) => SubscriptionRole::Subscribed,
                SubOrigin::Relay { .. } => SubscriptionRole::Relayed,
            };
            keep(entry(
                &sub.publisher,
                &sub.subscriber,
                &sub.pattern,
                role,
                Some(sub.link),
            ));
        }
        entries.sort_by(|a, b| {
            (&a.publisher_address, &a.pattern, &a.subscriber_address).cmp(&(
                &b.publisher_address,
                &b.pattern,
                &b.subscriber_address,
            ))
        });
        Subscriptions {
            truncated: total - entries.len() as u64,
            entries,
        }
    }

    /// Adds the counts remote publishers' routes keep of their last subject to the table.
    pub(super) fn add_pending_remote_counts(&mut self) {
        for (address, publisher) in &mut self.mesh.publishers {
            if let Some(counted) = publisher.counted.take() {
                self.traffic.add_subject(address, counted);
            }
        }
    }

    pub(crate) fn link_down(&mut self, id: LinkId) {
        let Some(link) = self.mesh.links.remove(&id) else {
            return;
        };
        let traffic = link.queue.traffic();
        self.traffic.retired += traffic.totals;
        if traffic.slow_consumer {
            self.meters
                .slow_consumer_closes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let lost = Failure::withdrawn_because(&format!("connection to {} lost", link.info.peer));
        for (_, pending) in link.calls {
            match pending {
                Pending::Local(tx) => {
                    let _ = tx.send(Reply::Failure(lost.clone()));
                }
                Pending::Relay {
                    link,
                    conv,
                    metered,
                } => {
                    metered.finish(Some(lost.error));
                    if let Some(back) = self.mesh.links.get_mut(&link) {
                        back.relayed.remove(&conv);
                        back.queue.push_reply(failure_frame(conv, &lost));
                    }
                }
            }
        }
        for (_, (next, conv)) in link.relayed {
            self.cancel_relayed(next, conv);
        }
        for (_, served) in link.served {
            self.end_served(served);
        }
        // Routes through the link go; services with no other route are withdrawn, all at
        // once (a client losing its hub loses every service it knew).
        self.withdraw_routes_of(id, WithdrawReason::ConnectionLost);
        // Subscriptions we had sent on it and whose publisher is still reachable move to
        // the new route.
        for publisher in link.out_subs {
            self.reroute_subscriptions(&publisher);
        }
        // Callers waiting for this link's answer to an INTEREST wait no longer.
        self.wake_interest_waiters();
    }

    /// Closes every link `doomed` picks (the users changed, and their rights with them);
    /// returns how many.
    pub(crate) fn close_links(
        &self,
        mut doomed: impl FnMut(&LinkInfo) -> bool,
        code: netsvc_proto::wire::CloseCode,
        reason: &str,
    ) -> usize {
        let mut closed = 0;
        for link in self.mesh.links.values() {
            if doomed(&link.info) {
                link.queue.close(code, reason, true);
                closed += 1;
            }
        }
        closed
    }

    /// Handles one frame received on link `id`. Work that must not run under the lock is
    /// appended to `actions`.
    pub(crate) fn handle_frame(
        &mut self,
        id: LinkId,
        frame: netsvc_proto::wire::Frame,
        raw: &bytes::Bytes,
        now: tokio::time::Instant,
        actions: &mut Vec<Action>,
    ) {
        self.on_frame(id, frame, raw, now, actions);
        // Checked after every frame, not only after SYNCED and SUBSCRIBED: a subscription
        // awaited for the resync can also end without an acknowledgement (its publisher
        // withdrawn, its monitor dropped), and the link must still be declared resynced.
        self.check_resynced(id, actions);
    }
}
