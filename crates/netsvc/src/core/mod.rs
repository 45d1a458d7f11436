//! The state of one runtime, and the only code that changes it.
//!
//! [`Core`] lives behind a single mutex in the runtime. Every change to the registry, to a
//! publisher's subscriptions or cache, and every report fan-out happens inside one critical
//! section, which is what makes the ordering promises hold: a subscriber's snapshot (current
//! services, or cached reports) and the changes after it are produced under the same lock, so
//! there is no gap and no duplicate between them. Consumers are reached through bounded,
//! non-blocking queues, so the lock is never held across an `.await` and never waits for a
//! slow consumer.

mod links;
mod publisher;
mod registry;
mod watchers;

use std::sync::Arc;

use netsvc_proto::Pattern;
use netsvc_proto::value::Limits;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::announce::{Announcement, AnnouncementKind, RegistryScope, WithdrawReason};
use crate::binding::Binding;
use crate::fast::FastMap;
use crate::queue::{EventReceiver, ReportQueue};
use crate::report::{ReportEvent, SubscriptionEvent};
use crate::service::ServiceShared;

pub(crate) use links::{Action, LinkInfo, LinkRefused};
pub(crate) use publisher::{Delivery, Published, PublisherState};
pub(crate) use registry::RegistryState;
pub(crate) use watchers::Watchers;

/// One local service, visible or not.
pub(crate) struct LocalService {
    pub(crate) shared: Arc<ServiceShared>,
    pub(crate) publisher: PublisherState,
    pub(crate) visible: bool,
    /// Groups joined while hidden, applied when the service is announced.
    pub(crate) hidden_groups: Vec<Arc<str>>,
    /// Increases with every group change, so that other processes keep the newest state.
    pub(crate) version: u64,
}

/// What a report monitor subscribes to.
#[derive(Debug, Clone)]
pub(crate) enum MonitorTarget {
    /// Every service of that name, now or later.
    Name(Arc<str>),
    /// The service at that address, whenever it is visible.
    Address(Arc<str>),
}

impl MonitorTarget {
    /// The name or address, as monitors are indexed. Names and addresses cannot collide:
    /// only addresses contain `!`.
    fn key(&self) -> &Arc<str> {
        match self {
            Self::Name(key) | Self::Address(key) => key,
        }
    }
}

/// The subscriber side of one report subscription.
pub(crate) struct Monitor {
    pub(crate) subscriber: Binding,
    pub(crate) target: MonitorTarget,
    pub(crate) pattern: Pattern,
    pub(crate) queue: Arc<ReportQueue>,
    /// Addresses of the publishers this monitor is subscribed to.
    pub(crate) publishers: Vec<Arc<str>>,
    /// Its subscription ids toward remote publishers.
    pub(crate) remote_sids: Vec<u64>,
    /// The highest report sequence number seen from each publisher, so that a cache
    /// delivered again after a re-subscription is not delivered twice. A monitor follows
    /// one publisher, or a few services of one name: a short list, searched by pointer
    /// first, beats hashing an address per report.
    pub(crate) last_seq: Vec<(Arc<str>, u64)>,
}

impl Monitor {
    /// Records a report's sequence number; false if it was seen already.
    pub(crate) fn note_seq(&mut self, publisher: &Arc<str>, seq: u64) -> bool {
        let found = match self
            .last_seq
            .iter()
            .position(|(p, _)| Arc::ptr_eq(p, publisher))
        {
            Some(i) => Some(i),
            None => self.last_seq.iter().position(|(p, _)| p == publisher),
        };
        match found {
            Some(i) if self.last_seq[i].1 >= seq => false,
            Some(i) => {
                self.last_seq[i].1 = seq;
                true
            }
            None => {
                self.last_seq.push((publisher.clone(), seq));
                true
            }
        }
    }
}

/// How a caller reaches the target of a request.
pub(crate) enum Route {
    Local {
        service: Arc<ServiceShared>,
        liveness: watch::Receiver<()>,
    },
    Remote {
        link: u64,
        outbound: Arc<crate::exchange::outbound::Outbound>,
        liveness: watch::Receiver<()>,
    },
}

/// The whole mutable state of one runtime.
pub(crate) struct Core {
    /// This runtime's process identity.
    pub(crate) identity: Arc<str>,
    pub(crate) limits: Limits,
    pub(crate) registry: RegistryState,
    pub(crate) locals: FastMap<Arc<str>, LocalService>,
    monitors: FastMap<u64, Monitor>,
    monitors_by_target: FastMap<Arc<str>, Vec<u64>>,
    monitors_by_subscriber: FastMap<Arc<str>, Vec<u64>>,
    /// Subscriber address → (publisher address, subscription id) of its subscriptions on
    /// local publishers, so that a subscriber's disappearance can withdraw them all.
    subscriptions_by_subscriber: FastMap<Arc<str>, Vec<(Arc<str>, u64)>>,
    watchers: Watchers,
    next_id: u64,
    /// When the expiry sweeper will next wake, if it is waiting for a deadline.
    next_sweep: Option<Instant>,
    /// Report sequence numbers of new publishers start here: the wall clock in microseconds
    /// when the runtime started, so that a restarted process's numbers are higher.
    seq_base: u64,
    // Exchange state: see `links.rs`.
    links: FastMap<u64, links::LinkState>,
    remote: FastMap<Arc<str>, links::RemoteService>,
    remote_subs: links::RemoteSubs,
    remote_publishers: FastMap<Arc<str>, links::RemotePublisher>,
    /// Encoded SERVICE frames, by address, until the service's state changes.
    ads: FastMap<Arc<str>, links::ServiceAd>,
}

impl Core {
    pub(crate) fn new(identity: Arc<str>, limits: Limits) -> Self {
        Self {
            identity,
            limits,
            registry: RegistryState::default(),
            locals: FastMap::default(),
            monitors: FastMap::default(),
            monitors_by_target: FastMap::default(),
            monitors_by_subscriber: FastMap::default(),
            subscriptions_by_subscriber: FastMap::default(),
            watchers: Watchers::default(),
            next_id: 0,
            next_sweep: None,
            seq_base: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2)),
            links: FastMap::default(),
            remote: FastMap::default(),
            remote_subs: links::RemoteSubs::default(),
            remote_publishers: FastMap::default(),
            ads: FastMap::default(),
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // ----- services -------------------------------------------------------------------

    /// Adds a new local service; announces it unless it is hidden.
    pub(crate) fn add_local(&mut self, shared: Arc<ServiceShared>, visible: bool, now: Instant) {
        let binding = shared.binding.clone();
        self.locals.insert(
            binding.address_arc().clone(),
            LocalService {
                shared,
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

    /// Removes a local service for good: announcements, subscriptions, cache. Returns its
    /// shared half, which the caller must [`end`](ServiceShared::end) *after* releasing the
    /// lock: ending drops the service's handlers, which are application code and may own
    /// other services whose withdrawal needs the lock.
    #[must_use = "end the returned service after releasing the lock"]
    pub(crate) fn withdraw_local(
        &mut self,
        address: &str,
        reason: WithdrawReason,
    ) -> Option<Arc<ServiceShared>> {
        let local = self.locals.remove(address)?;
        if local.visible {
            self.remove_binding(address, reason);
            self.withdraw_everywhere(local.shared.binding.address_arc(), reason);
        } else {
            self.drop_subscriber(address);
        }
        // Its subscribers learn of the withdrawal through the registry (above); what remains
        // of its publisher state goes with it.
        drop(local.publisher);
        Some(local.shared)
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
    pub(crate) fn route(&self, address: &str) -> Option<Route> {
        match self.locals.get(address) {
            Some(local) => Some(Route::Local {
                service: local.shared.clone(),
                liveness: local.shared.liveness(),
            }),
            None => self.remote_route(address),
        }
    }

    /// The address of the first visible service with that name.
    pub(crate) fn first_named(&self, name: &str) -> Option<Arc<str>> {
        self.registry.first_named(name)
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
        let waiting: Vec<u64> = [binding.name_arc(), binding.address_arc()]
            .into_iter()
            .filter_map(|key| self.monitors_by_target.get(key))
            .flatten()
            .copied()
            .collect();
        for id in waiting {
            self.subscribe_to(id, &binding, now);
        }
    }

    /// Removes a binding: group-left for each group, then withdrawn; its subscribers and the
    /// publishers it subscribed to are told.
    fn remove_binding(&mut self, address: &str, reason: WithdrawReason) {
        // The entry goes with its memberships at once; nothing can observe the registry
        // until the lock is released, so announcing the leaves afterwards is the same.
        let Some(entry) = self.registry.remove(address) else {
            return;
        };
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
        // Monitors subscribed to it as a publisher.
        let targets = [binding.name_arc(), binding.address_arc()];
        let ids: Vec<u64> = targets
            .into_iter()
            .filter_map(|key| self.monitors_by_target.get(key))
            .flatten()
            .copied()
            .collect();
        for id in ids {
            if let Some(monitor) = self.monitors.get_mut(&id)
                && let Some(pos) = monitor.publishers.iter().position(|p| &**p == address)
            {
                monitor.publishers.remove(pos);
                monitor
                    .queue
                    .push(ReportEvent::PublisherWithdrawn(binding.clone()));
            }
        }
        self.drop_subscriber(address);
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
    ) -> (u64, EventReceiver<Announcement>, bool) {
        let snapshot = self.registry.snapshot(&scope);
        let empty = snapshot.is_empty();
        let id = self.next_id();
        let rx = self.watchers.add(id, scope, snapshot, capacity);
        (id, rx, empty)
    }

    pub(crate) fn unwatch(&mut self, id: u64) {
        self.watchers.remove(id);
    }

    // ----- reports: subscriber side -------------------------------------------------------

    /// Registers a report monitor and subscribes it to every matching visible publisher.
    pub(crate) fn add_monitor(&mut self, monitor: Monitor, now: Instant) -> u64 {
        let id = self.next_id();
        let key = monitor.target.key().clone();
        let publishers: Vec<Binding> = match &monitor.target {
            MonitorTarget::Name(name) => self.registry.lookup_name(name),
            MonitorTarget::Address(address) => {
                self.registry.lookup_address(address).into_iter().collect()
            }
        };
        self.monitors_by_target.entry(key).or_default().push(id);
        self.monitors_by_subscriber
            .entry(monitor.subscriber.address_arc().clone())
            .or_default()
            .push(id);
        self.monitors.insert(id, monitor);
        for publisher in publishers {
            self.subscribe_to(id, &publisher, now);
        }
        id
    }

    /// Subscribes monitor `id` to one publisher: the publisher records the subscription and
    /// the monitor gets the publisher's notification, its matching cached reports, and from
    /// then on its live reports.
    fn subscribe_to(&mut self, id: u64, publisher: &Binding, now: Instant) {
        let Some(monitor) = self.monitors.get_mut(&id) else {
            return;
        };
        if monitor.publishers.contains(publisher.address_arc()) {
            return;
        }
        let Some(local) = self.locals.get_mut(publisher.address()) else {
            let (subscriber, pattern) = (
                monitor.subscriber.clone(),
                Arc::new(monitor.pattern.clone()),
            );
            if let Some(sid) =
                self.subscribe_remote(publisher.address(), subscriber, pattern, Some(id), None)
                && let Some(monitor) = self.monitors.get_mut(&id)
            {
                monitor.remote_sids.push(sid);
                monitor.publishers.push(publisher.address_arc().clone());
                monitor
                    .queue
                    .push(ReportEvent::PublisherAvailable(publisher.clone()));
            }
            return;
        };
        monitor.publishers.push(publisher.address_arc().clone());
        monitor
            .queue
            .push(ReportEvent::PublisherAvailable(publisher.clone()));
        local.publisher.subscribe(
            id,
            publisher,
            monitor.subscriber.clone(),
            monitor.pattern.clone(),
            Delivery::Local(monitor.queue.clone()),
            now,
        );
        self.subscriptions_by_subscriber
            .entry(monitor.subscriber.address_arc().clone())
            .or_default()
            .push((publisher.address_arc().clone(), id));
    }

    /// Ends a report monitor: its publishers see the subscription withdrawn.
    pub(crate) fn unsubscribe(&mut self, id: u64) {
        let Some(monitor) = self.monitors.remove(&id) else {
            return;
        };
        remove_from(&mut self.monitors_by_target, monitor.target.key(), &id);
        remove_from(
            &mut self.monitors_by_subscriber,
            monitor.subscriber.address_arc(),
            &id,
        );
        for sid in &monitor.remote_sids {
            self.drop_remote_sub(*sid, true);
        }
        for publisher in &monitor.publishers {
            if let Some(local) = self.locals.get_mut(publisher) {
                local.publisher.unsubscribe(id);
            }
            remove_from(
                &mut self.subscriptions_by_subscriber,
                monitor.subscriber.address_arc(),
                &(publisher.clone(), id),
            );
        }
        monitor.queue.close();
    }

    /// A service stopped existing as a subscriber: end its monitors and withdraw its
    /// subscriptions from every publisher.
    fn drop_subscriber(&mut self, address: &str) {
        for id in self
            .monitors_by_subscriber
            .get(address)
            .cloned()
            .unwrap_or_default()
        {
            self.unsubscribe(id);
        }
        for (publisher, id) in self
            .subscriptions_by_subscriber
            .remove(address)
            .unwrap_or_default()
        {
            if let Some(local) = self.locals.get_mut(&publisher) {
                local.publisher.unsubscribe(id);
            }
        }
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
    pub(crate) fn withdraw_all(&mut self, reason: WithdrawReason) -> Vec<Arc<ServiceShared>> {
        let addresses: Vec<Arc<str>> = self.locals.keys().cloned().collect();
        addresses
            .iter()
            .filter_map(|address| self.withdraw_local(address, reason))
            .collect()
    }
}

fn remove_from<K, V>(map: &mut FastMap<K, Vec<V>>, key: &K, value: &V)
where
    K: std::hash::Hash + Eq,
    V: PartialEq,
{
    if let Some(list) = map.get_mut(key) {
        list.retain(|v| v != value);
        if list.is_empty() {
            map.remove(key);
        }
    }
}
