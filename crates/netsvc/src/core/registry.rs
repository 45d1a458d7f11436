//! The registry proper: which services this runtime can see, by address, name and group.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::announce::{Announcement, AnnouncementKind, RegistryScope};
use crate::binding::Binding;
use crate::fast::FastMap;

pub(crate) struct Entry {
    pub(crate) binding: Binding,
    /// Groups in the order they were joined.
    pub(crate) groups: Vec<Arc<str>>,
    /// Insertion order, so lookups list services oldest first.
    seq: u64,
}

/// Visible services, indexed by address, name and group. Lists keep insertion order, so the
/// "first service of a name" is the oldest one, as in the original.
#[derive(Default)]
pub(crate) struct RegistryState {
    entries: FastMap<Arc<str>, Entry>,
    by_name: FastMap<Arc<str>, Vec<Arc<str>>>,
    by_group: FastMap<Arc<str>, Vec<Arc<str>>>,
    next_seq: u64,
}

impl RegistryState {
    /// Adds a binding; false if its address is already present.
    pub(crate) fn insert(&mut self, binding: Binding) -> bool {
        let address = binding.address_arc().clone();
        if self.entries.contains_key(&address) {
            return false;
        }
        self.next_seq += 1;
        self.by_name
            .entry(binding.name_arc().clone())
            .or_default()
            .push(address.clone());
        self.entries.insert(
            address,
            Entry {
                binding,
                groups: Vec::new(),
                seq: self.next_seq,
            },
        );
        true
    }

    /// Removes a binding (its groups must have been left first).
    pub(crate) fn remove(&mut self, address: &str) -> Option<Entry> {
        let entry = self.entries.remove(address)?;
        let name = entry.binding.name_arc();
        if let Some(list) = self.by_name.get_mut(name) {
            list.retain(|a| &**a != address);
            if list.is_empty() {
                self.by_name.remove(name);
            }
        }
        for group in &entry.groups {
            self.unindex_group(address, group);
        }
        Some(entry)
    }

    pub(crate) fn get(&self, address: &str) -> Option<&Entry> {
        self.entries.get(address)
    }

    /// Records a group join; returns the binding if it is a new membership.
    pub(crate) fn join(&mut self, address: &str, group: Arc<str>) -> Option<Binding> {
        let entry = self.entries.get_mut(address)?;
        if entry.groups.contains(&group) {
            return None;
        }
        entry.groups.push(group.clone());
        self.by_group
            .entry(group)
            .or_default()
            .push(entry.binding.address_arc().clone());
        Some(entry.binding.clone())
    }

    /// Records a group leave; returns the binding and group if it was a member.
    pub(crate) fn leave(&mut self, address: &str, group: &str) -> Option<(Binding, Arc<str>)> {
        let entry = self.entries.get_mut(address)?;
        let pos = entry.groups.iter().position(|g| &**g == group)?;
        let group = entry.groups.remove(pos);
        let binding = entry.binding.clone();
        self.unindex_group(address, &group);
        Some((binding, group))
    }

    fn unindex_group(&mut self, address: &str, group: &str) {
        if let Some(members) = self.by_group.get_mut(group) {
            members.retain(|a| &**a != address);
            if members.is_empty() {
                self.by_group.remove(group);
            }
        }
    }

    pub(crate) fn first_named(&self, name: &str) -> Option<Arc<str>> {
        self.by_name.get(name)?.first().cloned()
    }

    pub(crate) fn lookup_name(&self, name: &str) -> Vec<Binding> {
        self.bindings(self.by_name.get(name))
    }

    pub(crate) fn lookup_group(&self, group: &str) -> Vec<Binding> {
        self.bindings(self.by_group.get(group))
    }

    pub(crate) fn lookup_address(&self, address: &str) -> Option<Binding> {
        self.entries.get(address).map(|e| e.binding.clone())
    }

    fn bindings(&self, addresses: Option<&Vec<Arc<str>>>) -> Vec<Binding> {
        addresses
            .into_iter()
            .flatten()
            .filter_map(|a| self.entries.get(a).map(|e| e.binding.clone()))
            .collect()
    }

    /// Every entry, oldest first.
    pub(crate) fn entries(&self) -> Vec<&Entry> {
        let mut all: Vec<&Entry> = self.entries.values().collect();
        all.sort_by_key(|e| e.seq);
        all
    }

    /// Every group with at least one member, sorted.
    pub(crate) fn groups(&self) -> Vec<Arc<str>> {
        let set: BTreeSet<&Arc<str>> = self.by_group.keys().collect();
        set.into_iter().cloned().collect()
    }

    pub(crate) fn groups_of(&self, address: &str) -> Vec<Arc<str>> {
        self.entries
            .get(address)
            .map(|e| e.groups.clone())
            .unwrap_or_default()
    }

    /// The announcements that describe the current state to a new watch of `scope`.
    pub(crate) fn snapshot(&self, scope: &RegistryScope) -> Vec<Announcement> {
        let with_groups = |e: &Entry, out: &mut Vec<Announcement>| {
            out.push(Announcement::new(
                e.binding.clone(),
                AnnouncementKind::Available,
            ));
            for g in &e.groups {
                out.push(Announcement::new(
                    e.binding.clone(),
                    AnnouncementKind::GroupJoined(g.clone()),
                ));
            }
        };
        let mut out = Vec::new();
        match scope {
            RegistryScope::All => {
                for e in self.entries() {
                    with_groups(e, &mut out);
                }
            }
            RegistryScope::Name(name) => {
                out.extend(
                    self.lookup_name(name)
                        .into_iter()
                        .map(|b| Announcement::new(b, AnnouncementKind::Available)),
                );
            }
            RegistryScope::Address(address) => {
                if let Some(e) = self.entries.get(&**address) {
                    with_groups(e, &mut out);
                }
            }
            RegistryScope::Group(group) => {
                out.extend(
                    self.lookup_group(group).into_iter().map(|b| {
                        Announcement::new(b, AnnouncementKind::GroupJoined(group.clone()))
                    }),
                );
            }
        }
        out
    }
}
