//! The state of one runtime, and the only code that changes it.
//!
//! [`Core`] lives behind a single mutex ([`shared::RuntimeShared`]). Every change to the
//! registry, to a publisher's subscriptions or cache, and every report fan-out happens inside
//! one critical section, which is what makes the ordering promises hold: a subscriber's
//! snapshot (current services, or cached reports) and the changes after it are produced under
//! the same lock, so there is no gap and no duplicate between them. Consumers are reached
//! through bounded, non-blocking queues, so the lock is never held across an `.await` and
//! never waits for a slow consumer.
//!
//! Who owns what:
//! - `registry.rs`, `watchers.rs`: the services this runtime can see, and who watches them;
//! - `local.rs`, `publisher.rs`: this runtime's own services, their report caches and the
//!   subscriptions they serve;
//! - `monitors.rs`: the report subscriptions this runtime's services hold;
//! - `mesh/`: everything that crosses exchange links (routes, relayed requests and
//!   subscriptions, the announcements each link has had);
//! - `queue.rs`, `link_queue.rs`, `reply.rs`: the bounded queues the core pushes into, toward
//!   applications and toward links.
//!
//! The core imports nothing above it: no API handle, no socket, no task but the wake-ups of
//! its queues.

pub(crate) mod link_queue;
pub(crate) mod local;
mod mesh;
pub(crate) mod meters;
mod monitors;
mod publisher;
pub(crate) mod queue;
mod registry;
pub(crate) mod reply;
pub(crate) mod shared;
#[cfg(test)]
mod testing;
mod watchers;

use std::sync::Arc;

use netsvc_proto::value::Limits;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use self::local::{LocalService, ServiceRef};
use self::mesh::Mesh;
use self::meters::{Meters, RequestMeter, Traffic};
use self::monitors::Monitors;
use self::queue::EventReceiver;
use self::watchers::Watchers;
use crate::model::announcement::{Announcement, AnnouncementKind, RegistryScope, WithdrawReason};
use crate::model::binding::Binding;
use crate::model::collections::FastMap;
use crate::model::ids::{Ids, LinkId, MonitorId, RequestId, SubKey, WatchId};
use crate::model::report::SubscriptionEvent;
use crate::model::stats::{ReportStats, RequestRole, Stats};

pub(crate) use self::mesh::{Action, INTEREST_PATIENCE, LinkInfo, LinkRefused};
pub(crate) use self::monitors::{Monitor, MonitorTarget};
pub(crate) use self::publisher::{Publication, Published, PublisherState};
pub(crate) use self::registry::RegistryState;

/// How a caller reaches the target of a request.
pub(crate) enum Route {
    Local {
        service: ServiceRef,
        /// The id the request gets (its conversation id as the handler sees it).
        id: RequestId,
        /// The service's meter of the requests it serves.
        served: Arc<RequestMeter>,
        liveness: watch::Receiver<()>,
    },
    Remote {
        link: LinkId,
        liveness: watch::Receiver<()>,
    },
}

/// The ids the core hands out, one allocator per namespace.
#[derive(Default)]
struct CoreIds {
    links: Ids<LinkId>,
    monitors: Ids<MonitorId>,
    watches: Ids<WatchId>,
    sub_keys: Ids<SubKey>,
    requests: Ids<RequestId>,
}

/// The whole mutable state of one runtime.
pub(crate) struct Core {
    /// This runtime's process identity.
    pub(crate) identity: Arc<str>,
    pub(crate) limits: Limits,
    pub(crate) registry: RegistryState,
    locals: FastMap<Arc<str>, LocalService>,
    /// Subscriber address → (publisher address, key) of its subscriptions at local
    /// publishers, whether it is a service here or behind a link: when the subscriber goes,
    /// they all end.
    served: FastMap<Arc<str>, Vec<(Arc<str>, SubKey)>>,
    monitors: Monitors,
    watchers: Watchers,
    mesh: Mesh,
    ids: CoreIds,
    /// Request meters, shared with the responders and callers that finish requests.
    pub(crate) meters: Arc<Meters>,
    /// Report counts.
    traffic: Traffic,
    /// When the expiry sweeper will next wake, if it is waiting for a deadline.
    next_sweep: Option<Instant>,
    /// Report sequence numbers of new publishers start here: the wall clock in microseconds
    /// when the runtime started, so that a restarted process's numbers are higher.
    seq_base: u64,
}

impl Core {
    pub(crate) fn new(identity: Arc<str>, limits: Limits) -> Self {
        Self {
            identity,
            limits,
            registry: RegistryState::default(),
            locals: FastMap::default(),
            served: FastMap::default(),
            monitors: Monitors::default(),
            watchers: Watchers::default(),
            mesh: Mesh::default(),
            ids: CoreIds::default(),
            meters: Arc::default(),
            traffic: Traffic::default(),
            next_sweep: None,
            seq_base: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2)),
        }
    }

    // ----- services -------------------------------------------------------------------

    /// Adds a new local service; announces it unless it is hidden.
    pub(crate) fn add_local(&mut self, service: ServiceRef, visible: bool, now: Instant) {
        let binding = service.binding().clone();
        let served = self
            .meters
            .requests(binding.service_name(), RequestRole::Served);
        self.locals.insert(
            binding.address_arc().clone(),
            LocalService {
                service,
                served,
                publisher: PublisherState::new(self.seq_base),
                visible: false,
                hidden_groups: Vec::new(),
                version: 0,
            },
        );
        if visible {
            self.announce(&binding, now);
        }
    }

    /// Makes a hidden local service visible. Does nothing if it already is.
    pub(crate) fn announce(&mut self, binding: &Binding, now: Instant) {
        let Some(local) = self.locals.get_mut(binding.address()) else {
            return;
        };
        if local.visible {
            return;
        }
        local.visible = true;
        let groups = std::mem::take(&mut local.hidden_groups);
        self.add_binding(binding.clone(), &groups, now);
        self.advertise(binding.address_arc());
    }

    /// Removes a local service for good: announcements, subscriptions, cache. Returns it, and
    /// the caller must [`end`](local::Methods::end) it *after* releasing the lock: ending
    /// drops the service's handlers, which are application code and may own other services
    /// whose withdrawal needs the lock.
    #[must_use = "end the returned service after releasing the lock"]
    pub(crate) fn withdraw_local(
        &mut self,
        address: &str,
        reason: WithdrawReason,
    ) -> Option<ServiceRef> {
        let local = self.locals.remove(address)?;
        // What its subscribers had here goes with it.
        for (key, subscriber) in local.publisher.subscribers() {
            monitors::remove_from(
                &mut self.served,
                subscriber.address_arc(),
                &(local.service.binding().address_arc().clone(), key),
            );
        }
        if local.visible {
            self.remove_binding(address, reason);
            self.withdraw_everywhere(local.service.binding().address_arc(), reason);
        } else {
            self.drop_subscriber(address);
            // A hidden publisher is in no registry, so it is not forgotten there.
            self.traffic.forget_publisher(address);
        }
        // Its subscribers learn of the withdrawal through the registry (above); what remains
        // of its publisher state goes with it.
        drop(local.publisher);
        Some(local.service)
    }

    pub(crate) fn join_group(&mut self, binding: &Binding, group: Arc<str>) {
        let Some(local) = self.locals.get_mut(binding.address()) else {
            return;
        };
        if local.visible {
            local.version += 1;
            self.registry_join(binding.address(), group);
            self.advertise(binding.address_arc());
        } else if !local.hidden_groups.contains(&group) {
            local.hidden_groups.push(group);
        }
    }

    pub(crate) fn leave_group(&mut self, binding: &Binding, group: &str) {
        let Some(local) = self.locals.get_mut(binding.address()) else {
            return;
        };
        if local.visible {
            local.version += 1;
            self.registry_leave(binding.address(), group);
            self.advertise(binding.address_arc());
        } else {
            local.hidden_groups.retain(|g| &**g != group);
        }
    }

    /// Finds how to reach a service for a request.
    pub(crate) fn route(&mut self, address: &str) -> Option<Route> {
        match self.locals.get(address) {
            Some(local) => Some(Route::Local {
                service: local.service.clone(),
                id: self.ids.requests.next(),
                served: local.served.clone(),
                liveness: local.service.liveness(),
            }),
            None => self.remote_route(address),
        }
    }

    /// Whether a request to the service at `address` would find it now.
    pub(crate) fn reachable(&self, address: &str) -> bool {
        self.locals.contains_key(address) || self.best_link(address).is_some()
    }

    /// The address of the first visible service with that name.
    pub(crate) fn first_named(&self, name: &str) -> Option<Arc<str>> {
        self.registry.first_named(name)
    }

    /// A snapshot of the runtime's traffic, but for its requests, which
    /// [`RuntimeShared::stats`](shared::RuntimeShared::stats) reads from the meters
    /// without this lock.
    pub(crate) fn stats(&mut self) -> Stats {
        self.add_pending_counts();
        let (links, link_totals) = self.link_stats();
        let monitor_totals = self.monitors.totals();
        let services_local = self.locals.values().filter(|l| l.visible).count() as u64;
        let services_total = self.registry.len() as u64;
        Stats {
            identity: self.identity.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_s: self.meters.uptime().as_secs_f64(),
            services_local,
            services_remote: services_total.saturating_sub(services_local),
            requests: Vec::new(),
            reports: ReportStats {
                published: self.traffic.published,
                received: self.traffic.received,
                delivered: self.traffic.delivered,
                sent: link_totals.sent,
                coalesced: link_totals.coalesced + monitor_totals.coalesced,
                missed: link_totals.dropped + monitor_totals.dropped,
            },
            subjects: self.traffic.subject_stats(|address| {
                self.registry
                    .lookup_address(address)
                    .map_or_else(String::new, |b| b.service_name().to_owned())
            }),
            subjects_overflow: self.traffic.subjects_overflow,
            links,
            slow_consumer_closes: self
                .meters
                .slow_consumer_closes
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Counts a report the local service at `publisher` published, as `published` says
    /// it went.
    pub(crate) fn note_published(&mut self, publisher: &str, published: &mut Published) {
        self.traffic.published += 1;
        self.traffic.delivered += published.delivered as u64;
        if let Some(counted) = published.counted.take() {
            self.traffic.add_subject(publisher, counted);
        }
    }

    /// Adds the counts publishers keep of their last subject to the table.
    fn add_pending_counts(&mut self) {
        for (address, local) in &mut self.locals {
            if let Some(counted) = local.publisher.take_count() {
                self.traffic.add_subject(address, counted);
            }
        }
        self.add_pending_remote_counts();
    }

    // ----- registry changes --------------------------------------------------------------

    /// Adds a binding to the registry, announces it and its groups, and subscribes the
    /// monitors waiting for it.
    fn add_binding(&mut self, binding: Binding, groups: &[Arc<str>], now: Instant) {
        if !self.registry.insert(binding.clone(), groups) {
            return;
        }
        if !self.watchers.is_idle() {
            let joined: Vec<Arc<str>> = self.registry.groups_of(binding.address());
            self.emit(&binding, || AnnouncementKind::Available);
            for group in joined {
                self.emit(&binding, || AnnouncementKind::GroupJoined(group));
            }
        }
        for id in self.monitors.waiting_for(&binding) {
            self.subscribe_to(id, &binding, now);
        }
    }

    /// Removes a binding: group-left for each group, then withdrawn; its subscribers and the
    /// publishers it subscribed to are told.
    fn remove_binding(&mut self, address: &str, reason: WithdrawReason) {
        // The entry goes with its memberships at once; nothing can observe the registry
        // until the lock is released, so announcing the leaves afterwards is the same.
        if let Some(entry) = self.registry.remove(address) {
            self.binding_removed(entry, reason);
        }
    }

    /// [`Self::remove_binding`] for many bindings at once (see
    /// [`RegistryState::remove_many`]); each is announced as `remove_binding` would.
    fn remove_bindings(&mut self, addresses: &[Arc<str>], reason: WithdrawReason) {
        for entry in self.registry.remove_many(addresses.iter().map(|a| &**a)) {
            self.binding_removed(entry, reason);
        }
    }

    /// Tells of a binding removed from the registry: its group leaves and withdrawal to the
    /// watches, and the monitors and subscriptions it was part of.
    fn binding_removed(&mut self, entry: registry::Entry, reason: WithdrawReason) {
        let address = entry.binding.address();
        self.traffic.forget_publisher(address);
        let binding = entry.binding.clone();
        if !self.watchers.is_idle() {
            for group in entry.groups().rev() {
                self.watchers.emit(&Announcement::new(
                    binding.clone(),
                    AnnouncementKind::GroupLeft(group.clone()),
                ));
            }
        }
        self.emit(&binding, || AnnouncementKind::Withdrawn(reason));
        self.monitors.publisher_gone(&binding);
        self.drop_subscriber(binding.address());
    }

    /// Tells the registry watches of a change; the announcement is only made if someone
    /// watches (most processes never do, and each change would cost reference counting).
    fn emit(&mut self, binding: &Binding, kind: impl FnOnce() -> AnnouncementKind) {
        if !self.watchers.is_idle() {
            self.watchers
                .emit(&Announcement::new(binding.clone(), kind()));
        }
    }

    fn registry_join(&mut self, address: &str, group: Arc<str>) {
        if let Some(binding) = self.registry.join(address, group.clone()) {
            self.emit(&binding, || AnnouncementKind::GroupJoined(group));
        }
    }

    fn registry_leave(&mut self, address: &str, group: &str) {
        if let Some((binding, group)) = self.registry.leave(address, group) {
            self.emit(&binding, || AnnouncementKind::GroupLeft(group));
        }
    }

    // ----- registry watches -----------------------------------------------------------------

    /// Starts a registry watch: the current matches are queued first, then every change.
    /// Also returns whether the snapshot was empty.
    pub(crate) fn watch(
        &mut self,
        scope: RegistryScope,
        capacity: usize,
    ) -> (WatchId, EventReceiver<Announcement>, bool) {
        // In a scoped registry, what the hub then tells of arrives as changes.
        self.want_scope(&scope);
        let snapshot = self.registry.snapshot(&scope);
        let empty = snapshot.is_empty();
        let id = self.ids.watches.next();
        let rx = self.watchers.add(id, scope, snapshot, capacity);
        (id, rx, empty)
    }

    pub(crate) fn unwatch(&mut self, id: WatchId) {
        self.watchers.remove(id);
    }

    // ----- reports: publisher side -----------------------------------------------------------

    pub(crate) fn publisher(&mut self, address: &str) -> Option<&mut PublisherState> {
        self.locals.get_mut(address).map(|l| &mut l.publisher)
    }

    /// Starts a publisher's watch on its subscriptions.
    pub(crate) fn watch_subscriptions(
        &mut self,
        address: &str,
        capacity: usize,
    ) -> Option<EventReceiver<SubscriptionEvent>> {
        self.publisher(address)
            .map(|p| p.watch_subscriptions(capacity))
    }

    /// Drops expired cached reports of every publisher; returns (and remembers) the next
    /// expiry, if any.
    pub(crate) fn purge_expired(&mut self, now: Instant) -> Option<Instant> {
        self.next_sweep = self
            .locals
            .values_mut()
            .filter_map(|l| l.publisher.purge_expired(now))
            .min();
        self.next_sweep
    }

    /// Makes sure the sweeper wakes by `at` to purge a report expiring then.
    pub(crate) fn schedule_sweep(&mut self, at: Instant, sweeper: &Notify) {
        if self.next_sweep.is_none_or(|next| at < next) {
            self.next_sweep = Some(at);
            sweeper.notify_one();
        }
    }

    /// Withdraws every local service (the runtime is shutting down); see
    /// [`withdraw_local`](Self::withdraw_local) for what to do with the result.
    #[must_use = "end the returned services after releasing the lock"]
    pub(crate) fn withdraw_all(&mut self, reason: WithdrawReason) -> Vec<ServiceRef> {
        let addresses: Vec<Arc<str>> = self.locals.keys().cloned().collect();
        addresses
            .iter()
            .filter_map(|address| self.withdraw_local(address, reason))
            .collect()
    }
}
