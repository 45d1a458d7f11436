//! The subscriber side of reports: the monitors of this runtime's services, what each one
//! is subscribed to, and the indexes that find the monitors a new or departing publisher
//! concerns.

use std::sync::Arc;

use netsvc_proto::Pattern;
use tokio::time::Instant;

use super::Core;
use super::meters::QueueTotals;
use super::publisher::Delivery;
use super::queue::ReportQueue;
use crate::model::binding::Binding;
use crate::model::collections::FastMap;
use crate::model::ids::{MonitorId, Sid, SubKey};
use crate::model::report::ReportEvent;

/// What a report monitor subscribes to.
#[derive(Debug, Clone)]
pub(crate) enum MonitorTarget {
    /// Every service of that name, now or later.
    Name(Arc<str>),
    /// The service at that address, whenever it is visible.
    Address(Arc<str>),
    /// Every visible service, now or later.
    Every,
}

impl MonitorTarget {
    /// The name or address, as monitors are indexed (`None`: every service). Names and
    /// addresses cannot collide: only addresses contain `!`.
    fn key(&self) -> Option<&Arc<str>> {
        match self {
            Self::Name(key) | Self::Address(key) => Some(key),
            Self::Every => None,
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
    publishers: Vec<Arc<str>>,
    /// Its subscriptions at publishers of this runtime.
    local_keys: Vec<(Arc<str>, SubKey)>,
    /// Its subscription ids toward remote publishers.
    pub(super) remote_sids: Vec<Sid>,
    /// The highest report sequence number seen from each publisher, so that a cache
    /// delivered again after a re-subscription is not delivered twice. A monitor follows
    /// one publisher, or a few services of one name: a short list, searched by pointer
    /// first, beats hashing an address per report.
    last_seq: Vec<(Arc<str>, u64)>,
}

impl Monitor {
    pub(crate) fn new(
        subscriber: Binding,
        target: MonitorTarget,
        pattern: Pattern,
        queue: Arc<ReportQueue>,
    ) -> Self {
        Self {
            subscriber,
            target,
            pattern,
            queue,
            publishers: Vec::new(),
            local_keys: Vec::new(),
            remote_sids: Vec::new(),
            last_seq: Vec::new(),
        }
    }

    /// Records a report's sequence number; false if it was seen already.
    pub(crate) fn note_seq(&mut self, publisher: &Arc<str>, seq: u64) -> bool {
        // Nearly always the publisher's own `Arc` (shared with the registry): compare
        // pointers before comparing text.
        let found = self
            .last_seq
            .iter()
            .position(|(p, _)| Arc::ptr_eq(p, publisher))
            .or_else(|| self.last_seq.iter().position(|(p, _)| p == publisher));
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

/// Every monitor of this runtime, with the indexes that find them.
#[derive(Default)]
pub(crate) struct Monitors {
    by_id: FastMap<MonitorId, Monitor>,
    /// By the name or address they target.
    by_target: FastMap<Arc<str>, Vec<MonitorId>>,
    /// Those that target every service.
    every: Vec<MonitorId>,
    /// By the address of the subscribing service.
    by_subscriber: FastMap<Arc<str>, Vec<MonitorId>>,
    /// What the queues of removed monitors had counted.
    retired: QueueTotals,
}

impl Monitors {
    pub(crate) fn get(&self, id: MonitorId) -> Option<&Monitor> {
        self.by_id.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: MonitorId) -> Option<&mut Monitor> {
        self.by_id.get_mut(&id)
    }

    fn insert(&mut self, id: MonitorId, monitor: Monitor) {
        match monitor.target.key() {
            Some(key) => self.by_target.entry(key.clone()).or_default().push(id),
            None => self.every.push(id),
        }
        self.by_subscriber
            .entry(monitor.subscriber.address_arc().clone())
            .or_default()
            .push(id);
        self.by_id.insert(id, monitor);
    }

    /// What every monitor's queue has coalesced and dropped, removed monitors included.
    pub(crate) fn totals(&self) -> QueueTotals {
        let mut totals = self.retired;
        for monitor in self.by_id.values() {
            totals += monitor.queue.totals();
        }
        totals
    }

    fn remove(&mut self, id: MonitorId) -> Option<Monitor> {
        let monitor = self.by_id.remove(&id)?;
        self.retired += monitor.queue.totals();
        match monitor.target.key() {
            Some(key) => remove_from(&mut self.by_target, key, &id),
            None => self.every.retain(|m| *m != id),
        }
        remove_from(
            &mut self.by_subscriber,
            monitor.subscriber.address_arc(),
            &id,
        );
        Some(monitor)
    }

    /// The monitors that a newly visible publisher concerns.
    pub(crate) fn waiting_for(&self, publisher: &Binding) -> Vec<MonitorId> {
        [publisher.name_arc(), publisher.address_arc()]
            .into_iter()
            .filter_map(|key| self.by_target.get(key))
            .flatten()
            .chain(&self.every)
            .copied()
            .collect()
    }

    /// A publisher went away: the monitors subscribed to it are told, and forget it.
    pub(crate) fn publisher_gone(&mut self, publisher: &Binding) {
        let address = publisher.address();
        for id in self.waiting_for(publisher) {
            if let Some(monitor) = self.by_id.get_mut(&id)
                && let Some(pos) = monitor.publishers.iter().position(|p| &**p == address)
            {
                monitor.publishers.remove(pos);
                monitor.local_keys.retain(|(p, _)| &**p != address);
                monitor
                    .queue
                    .push(ReportEvent::PublisherWithdrawn(publisher.clone()));
            }
        }
    }

    fn of_subscriber(&self, address: &str) -> Vec<MonitorId> {
        self.by_subscriber.get(address).cloned().unwrap_or_default()
    }
}

impl Core {
    /// Registers a report monitor and subscribes it to every matching visible publisher.
    pub(crate) fn add_monitor(&mut self, monitor: Monitor, now: Instant) -> MonitorId {
        let id = self.ids.monitors.next();
        // In a scoped registry, publishers the hub then tells of are subscribed to as they
        // arrive, like those that appear later.
        let publishers: Vec<Binding> = match &monitor.target {
            MonitorTarget::Name(name) => {
                self.want_name(name);
                self.registry.lookup_name(name)
            }
            MonitorTarget::Address(address) => {
                self.want_address(address);
                self.registry.lookup_address(address).into_iter().collect()
            }
            MonitorTarget::Every => {
                self.want_all();
                self.registry.entries().map(|e| e.binding.clone()).collect()
            }
        };
        self.monitors.insert(id, monitor);
        for publisher in publishers {
            self.subscribe_to(id, &publisher, now);
        }
        id
    }

    /// Subscribes monitor `id` to one publisher: the publisher records the subscription and
    /// the monitor gets the publisher's notification, its matching cached reports, and from
    /// then on its live reports.
    pub(super) fn subscribe_to(&mut self, id: MonitorId, publisher: &Binding, now: Instant) {
        let Some(monitor) = self.monitors.get(id) else {
            return;
        };
        if monitor.publishers.contains(publisher.address_arc()) {
            return;
        }
        let (subscriber, pattern) = (monitor.subscriber.clone(), monitor.pattern.clone());
        if !self.locals.contains_key(publisher.address()) {
            let sid = self.subscribe_remote(
                publisher.address(),
                subscriber,
                Arc::new(pattern),
                super::mesh::SubOrigin::Monitor(id),
            );
            if let Some(sid) = sid
                && let Some(monitor) = self.monitors.get_mut(id)
            {
                monitor.remote_sids.push(sid);
                monitor.publishers.push(publisher.address_arc().clone());
                monitor
                    .queue
                    .push(ReportEvent::PublisherAvailable(publisher.clone()));
            }
            return;
        }
        let key = self.ids.sub_keys.next();
        let (Some(monitor), Some(local)) = (
            self.monitors.by_id.get_mut(&id),
            self.locals.get_mut(publisher.address()),
        ) else {
            return;
        };
        monitor.publishers.push(publisher.address_arc().clone());
        monitor
            .local_keys
            .push((publisher.address_arc().clone(), key));
        monitor
            .queue
            .push(ReportEvent::PublisherAvailable(publisher.clone()));
        local.publisher.subscribe(
            key,
            publisher,
            monitor.subscriber.clone(),
            pattern,
            Delivery::Local(monitor.queue.clone()),
            now,
        );
        self.served
            .entry(monitor.subscriber.address_arc().clone())
            .or_default()
            .push((publisher.address_arc().clone(), key));
    }

    /// Ends a report monitor: its publishers see the subscription withdrawn.
    pub(crate) fn unsubscribe(&mut self, id: MonitorId) {
        let Some(monitor) = self.monitors.remove(id) else {
            return;
        };
        for sid in &monitor.remote_sids {
            self.drop_remote_sub(*sid, true);
        }
        for (publisher, key) in &monitor.local_keys {
            if let Some(local) = self.locals.get_mut(publisher) {
                local.publisher.unsubscribe(*key);
            }
            remove_from(
                &mut self.served,
                monitor.subscriber.address_arc(),
                &(publisher.clone(), *key),
            );
        }
        monitor.queue.close();
    }

    /// A service stopped existing as a subscriber: end its monitors and withdraw its
    /// subscriptions from every publisher.
    pub(super) fn drop_subscriber(&mut self, address: &str) {
        for id in self.monitors.of_subscriber(address) {
            self.unsubscribe(id);
        }
        for (publisher, key) in self.served.remove(address).unwrap_or_default() {
            if let Some(local) = self.locals.get_mut(&publisher) {
                local.publisher.unsubscribe(key);
            }
        }
    }
}

pub(super) fn remove_from<K, V>(map: &mut FastMap<K, Vec<V>>, key: &K, value: &V)
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
