//! Registry watches: who wants to hear about which changes.

use std::sync::Arc;

use super::queue::{EventReceiver, EventSender, event_queue};
use crate::model::announcement::{Announcement, AnnouncementKind, RegistryScope};
use crate::model::collections::FastMap;
use crate::model::ids::WatchId;

/// Registry watches, indexed by what they watch so that a change reaches only the watches
/// it concerns.
#[derive(Default)]
pub(crate) struct Watchers {
    senders: FastMap<WatchId, (RegistryScope, EventSender<Announcement>)>,
    by_scope: FastMap<RegistryScope, Vec<WatchId>>,
}

impl Watchers {
    /// Adds a watch whose queue starts with `snapshot`.
    pub(crate) fn add(
        &mut self,
        id: WatchId,
        scope: RegistryScope,
        snapshot: Vec<Announcement>,
        capacity: usize,
    ) -> EventReceiver<Announcement> {
        // The snapshot always fits: the capacity bounds how far the watcher may fall behind
        // on changes, not the size of the registry.
        let (tx, rx) = event_queue(capacity + snapshot.len());
        for announcement in snapshot {
            tx.send(announcement);
        }
        self.by_scope.entry(scope.clone()).or_default().push(id);
        self.senders.insert(id, (scope, tx));
        rx
    }

    pub(crate) fn remove(&mut self, id: WatchId) {
        if let Some((scope, _)) = self.senders.remove(&id)
            && let Some(ids) = self.by_scope.get_mut(&scope)
        {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_scope.remove(&scope);
            }
        }
    }

    /// Whether no watch is open: changes need not even be described.
    pub(crate) fn is_idle(&self) -> bool {
        self.senders.is_empty()
    }

    /// Delivers a change to every watch it concerns, dropping watches that are gone or
    /// that lag.
    pub(crate) fn emit(&mut self, announcement: &Announcement) {
        if self.senders.is_empty() {
            return;
        }
        let binding = &announcement.binding;
        let address = RegistryScope::Address(binding.address_arc().clone());
        let scopes: [Option<RegistryScope>; 3] = match &announcement.kind {
            AnnouncementKind::Available | AnnouncementKind::Withdrawn(_) => [
                Some(RegistryScope::All),
                Some(RegistryScope::Name(binding.name_arc().clone())),
                Some(address),
            ],
            AnnouncementKind::GroupJoined(g) | AnnouncementKind::GroupLeft(g) => [
                Some(RegistryScope::All),
                Some(address),
                Some(RegistryScope::Group(Arc::clone(g))),
            ],
        };
        let mut dead = Vec::new();
        for scope in scopes.iter().flatten() {
            for id in self.by_scope.get(scope).into_iter().flatten() {
                if let Some((_, tx)) = self.senders.get(id)
                    && !tx.send(announcement.clone())
                {
                    dead.push(*id);
                }
            }
        }
        for id in dead {
            self.remove(id);
        }
    }
}
