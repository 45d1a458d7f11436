//! The registry proper: which services this runtime can see, by address, name and group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::model::announcement::{Announcement, AnnouncementKind, RegistryScope};
use crate::model::binding::Binding;
use crate::model::collections::{FastMap, Few};

pub(crate) struct Entry {
    pub(crate) binding: Binding,
    /// Groups in the order they were joined, each with the sequence number of the join (its
    /// key in the group's member index).
    groups: Few<(Arc<str>, u64)>,
    /// Insertion order, so lookups list services oldest first.
    seq: u64,
}

impl Entry {
    /// The groups, in the order they were joined.
    pub(crate) fn groups(&self) -> impl DoubleEndedIterator<Item = &Arc<str>> + ExactSizeIterator {
        self.groups.iter().map(|(g, _)| g)
    }
}

/// Visible services, indexed by address, name and group. Lists keep insertion order, so the
/// "first service of a name" is the oldest one, as in the original.
///
/// Insertion and removal cost O(log n), never O(n): a lost link withdraws every service
/// learned through it, and with a linear member list per group, a client losing its hub
/// spent O(n²) on it (a thousand services in one group: half a million comparisons).
#[derive(Default)]
pub(crate) struct RegistryState {
    entries: FastMap<Arc<str>, Entry>,
    /// Addresses by insertion sequence: every service, oldest first, without sorting.
    order: BTreeMap<u64, Arc<str>>,
    /// Names are nearly always unique, so a short list beats an ordered map here.
    by_name: FastMap<Arc<str>, Few<Arc<str>>>,
    /// Members by the sequence number of their join.
    by_group: FastMap<Arc<str>, BTreeMap<u64, Arc<str>>>,
    next_seq: u64,
}

impl RegistryState {
    /// Adds a binding, a member of `groups`; false if its address is already present.
    pub(crate) fn insert(&mut self, binding: Binding, groups: &[Arc<str>]) -> bool {
        let address = binding.address_arc().clone();
        let std::collections::hash_map::Entry::Vacant(slot) = self.entries.entry(address.clone())
        else {
            return false;
        };
        self.next_seq += 1;
        let seq = self.next_seq;
        self.by_name
            .entry(binding.name_arc().clone())
            .or_default()
            .push(address.clone());
        let mut joined = Few::Zero;
        for group in groups {
            if joined.iter().any(|(g, _)| g == group) {
                continue;
            }
            self.next_seq += 1;
            joined.push((group.clone(), self.next_seq));
            self.by_group
                .entry(group.clone())
                .or_default()
                .insert(self.next_seq, address.clone());
        }
        self.order.insert(seq, address);
        slot.insert(Entry {
            binding,
            groups: joined,
            seq,
        });
        true
    }

    /// Removes a binding and its group memberships (without announcing them: the caller
    /// does, from the returned entry).
    pub(crate) fn remove(&mut self, address: &str) -> Option<Entry> {
        let entry = self.entries.remove(address)?;
        let name = entry.binding.name_arc();
        if let Some(list) = self.by_name.get_mut(name) {
            list.retain(|a| &**a != address);
            if list.is_empty() {
                self.by_name.remove(name);
            }
        }
        self.order.remove(&entry.seq);
        for (group, seq) in entry.groups.iter() {
            self.unindex_group(group, *seq);
        }
        Some(entry)
    }

    /// Removes many bindings at once (a lost link's services), returning the entries that
    /// were present. When most of the registry goes (a client losing its hub), what stays
    /// is indexed anew instead of unindexing each entry that goes: at a thousand clients in
    /// one process, each losing a thousand services, removing them one by one from four
    /// indexes outlasted a one-second hub restart.
    pub(crate) fn remove_many<'a>(
        &mut self,
        addresses: impl ExactSizeIterator<Item = &'a str>,
    ) -> Vec<Entry> {
        if addresses.len() * 2 < self.entries.len() {
            return addresses.filter_map(|a| self.remove(a)).collect();
        }
        let removed: Vec<Entry> = addresses.filter_map(|a| self.entries.remove(a)).collect();
        self.reindex();
        removed
    }

    /// Builds the order, name and group indexes from the entries. The maps keep their
    /// capacity: a client that lost its hub gets the same registry back when it links
    /// again (fresh maps showed up as rehashing in the profile of the refill).
    fn reindex(&mut self) {
        self.order = self
            .entries
            .iter()
            .map(|(address, e)| (e.seq, address.clone()))
            .collect();
        self.by_name.clear();
        for address in self.order.values() {
            if let Some(e) = self.entries.get(address) {
                self.by_name
                    .entry(e.binding.name_arc().clone())
                    .or_default()
                    .push(address.clone());
            }
        }
        self.by_group.clear();
        for (address, e) in &self.entries {
            for (group, seq) in e.groups.iter() {
                self.by_group
                    .entry(group.clone())
                    .or_default()
                    .insert(*seq, address.clone());
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, address: &str) -> Option<&Entry> {
        self.entries.get(address)
    }

    /// The registry's own copy of a service name, if a service has it: shared instead of
    /// allocated again (many services share a name, and a registry sync makes a binding per
    /// service in the network).
    pub(crate) fn service_name(&self, name: &str) -> Option<Arc<str>> {
        self.by_name.get_key_value(name).map(|(n, _)| n.clone())
    }

    /// The registry's own copy of a group name, if the group has members: a name known to
    /// be valid, shared instead of allocated again.
    pub(crate) fn group_name(&self, group: &str) -> Option<Arc<str>> {
        self.by_group.get_key_value(group).map(|(g, _)| g.clone())
    }

    /// Records a group join; returns the binding if it is a new membership.
    pub(crate) fn join(&mut self, address: &str, group: Arc<str>) -> Option<Binding> {
        let entry = self.entries.get_mut(address)?;
        if entry.groups.iter().any(|(g, _)| *g == group) {
            return None;
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        entry.groups.push((group.clone(), seq));
        self.by_group
            .entry(group)
            .or_default()
            .insert(seq, entry.binding.address_arc().clone());
        Some(entry.binding.clone())
    }

    /// Records a group leave; returns the binding and group if it was a member.
    pub(crate) fn leave(&mut self, address: &str, group: &str) -> Option<(Binding, Arc<str>)> {
        let entry = self.entries.get_mut(address)?;
        let pos = entry.groups.iter().position(|(g, _)| &**g == group)?;
        let (group, seq) = entry.groups.remove(pos)?;
        let binding = entry.binding.clone();
        self.unindex_group(&group, seq);
        Some((binding, group))
    }

    fn unindex_group(&mut self, group: &str, seq: u64) {
        if let Some(members) = self.by_group.get_mut(group) {
            members.remove(&seq);
            if members.is_empty() {
                self.by_group.remove(group);
            }
        }
    }

    pub(crate) fn first_named(&self, name: &str) -> Option<Arc<str>> {
        self.by_name.get(name)?.first().cloned()
    }

    /// The addresses of the services with this name, oldest first.
    pub(crate) fn named(&self, name: &str) -> impl Iterator<Item = &Arc<str>> {
        self.by_name.get(name).into_iter().flat_map(|a| a.iter())
    }

    pub(crate) fn lookup_name(&self, name: &str) -> Vec<Binding> {
        self.bindings(self.by_name.get(name).into_iter().flat_map(|a| a.iter()))
    }

    pub(crate) fn lookup_group(&self, group: &str) -> Vec<Binding> {
        self.bindings(
            self.by_group
                .get(group)
                .into_iter()
                .flat_map(|m| m.values()),
        )
    }

    pub(crate) fn lookup_address(&self, address: &str) -> Option<Binding> {
        self.entries.get(address).map(|e| e.binding.clone())
    }

    fn bindings<'a>(&self, addresses: impl Iterator<Item = &'a Arc<str>>) -> Vec<Binding> {
        addresses
            .filter_map(|a| self.entries.get(a).map(|e| e.binding.clone()))
            .collect()
    }

    /// Every entry, oldest first.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.order.values().filter_map(|a| self.entries.get(a))
    }

    /// Every address, oldest first.
    pub(crate) fn addresses(&self) -> impl Iterator<Item = &Arc<str>> {
        self.order.values()
    }

    /// Every group with at least one member, sorted.
    pub(crate) fn groups(&self) -> Vec<Arc<str>> {
        let set: BTreeSet<&Arc<str>> = self.by_group.keys().collect();
        set.into_iter().cloned().collect()
    }

    pub(crate) fn groups_of(&self, address: &str) -> Vec<Arc<str>> {
        self.entries
            .get(address)
            .map(|e| e.groups().cloned().collect())
            .unwrap_or_default()
    }

    /// The announcements that describe the current state to a new watch of `scope`.
    pub(crate) fn snapshot(&self, scope: &RegistryScope) -> Vec<Announcement> {
        let with_groups = |e: &Entry, out: &mut Vec<Announcement>| {
            out.push(Announcement::new(
                e.binding.clone(),
                AnnouncementKind::Available,
            ));
            for g in e.groups() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::binding::{Audience, Location};

    fn binding(n: usize, name: &str) -> Binding {
        Binding::new(
            name.into(),
            Audience::Everyone,
            format!("{n}@p").into(),
            "p".into(),
            Location::Remote,
            None,
        )
    }

    /// What every index says, in the order it says it.
    fn view(r: &RegistryState) -> Vec<String> {
        let mut out: Vec<String> = r.entries().map(|e| e.binding.address().into()).collect();
        for name in ["a", "b", "c"] {
            let named: Vec<&str> = r.named(name).map(|a| &**a).collect();
            out.push(format!("{name}: {named:?} first {:?}", r.first_named(name)));
        }
        for group in r.groups() {
            let members: Vec<String> = r
                .lookup_group(&group)
                .iter()
                .map(|b| b.address().into())
                .collect();
            out.push(format!("{group}: {members:?}"));
        }
        out
    }

    /// Twelve services of names a, b and c in none, one or two groups, one of them joining
    /// a group late (so that a group's order is not insertion order). Built the same way
    /// each time, so two of them have the same sequence numbers, hence the same indexes.
    fn sample() -> RegistryState {
        let groups: Vec<Arc<str>> = vec!["g1".into(), "g2".into()];
        let mut r = RegistryState::default();
        for n in 0..12 {
            r.insert(binding(n, ["a", "b", "c"][n % 3]), &groups[..n % 3]);
        }
        r.join("1@p!b", "g2".into());
        r
    }

    /// Removing most of the registry at once (reindexing what stays) leaves every index as
    /// removing the same bindings one by one does, and so does removing a few.
    #[test]
    fn removing_many_at_once_leaves_the_indexes_of_removing_one_by_one() {
        for doomed in [
            vec![0, 2, 3, 5, 6, 7, 8, 9, 11],
            vec![4],
            (0..12).collect::<Vec<_>>(),
        ] {
            let (mut at_once, mut expected) = (sample(), sample());
            let addresses: Vec<String> = doomed
                .iter()
                .map(|n| format!("{n}@p!{}", ["a", "b", "c"][n % 3]))
                .collect();
            for a in &addresses {
                assert!(expected.remove(a).is_some(), "{a}");
            }
            let removed = at_once.remove_many(addresses.iter().map(String::as_str));
            assert_eq!(removed.len(), addresses.len());
            assert_eq!(view(&at_once), view(&expected), "removing {doomed:?}");
            assert_eq!(at_once.len(), 12 - doomed.len());
        }
    }
}
