//! Interest-scoped registry sync (PROTOCOL.md §8.1): a client that asked for it at the
//! handshake is told only of the services it has shown an interest in, instead of every
//! service of the exchange.
//!
//! Both ends live here. At the hub, [`Interest`] is what one such link wants, and SERVICE
//! goes to it only for services it admits (`ads.rs` asks [`Interest::admits`]). At the
//! client, [`Wanted`] is what this process wants on all its interest-scoped links; it grows
//! from the API (a lookup or watch of a name, a call, a report monitor) and never shrinks.
//!
//! Besides the names a client asks for, the hub admits on its own the addresses a client
//! must see for what the hub hands it: the subscriber of a SUBSCRIBE and the caller of a
//! REQUEST (a publisher serves only subscribers it can see, and a service is told who calls
//! it). Those go again when the service is withdrawn.

use std::sync::Arc;

use netsvc_proto::wire::{Frame, Text, frame};
use tokio::sync::oneshot;

use super::inbound::service_name;
use crate::core::Core;
use crate::model::announcement::RegistryScope;
use crate::model::collections::{FastMap, FastSet};
use crate::model::ids::LinkId;

/// Past this many names a link's interest becomes the whole registry: a process that wants
/// that much gains nothing from the scope, and the hub's set stays bounded.
pub(super) const MAX_NAMES: usize = 65_536;

/// Past this many bytes of names likewise: with [`MAX_NAMES`], what a hub keeps for one
/// link's interest stays under a few megabytes whatever a peer sends.
const MAX_NAME_BYTES: usize = 1 << 20;

/// Names per INTEREST frame when a client sends all it wants on a new link, so that the
/// frame stays far below any peer's `max_frame`.
const NAMES_PER_FRAME: usize = 4096;

/// How long a caller waits for the answer to an INTEREST before it goes on with what it
/// knows: a hub that never answers must not hold a call (or a lookup) for ever.
pub(crate) const INTEREST_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// What one interest-scoped link has asked to be told of (kept by the hub).
#[derive(Debug, Default)]
pub(super) struct Interest {
    all: bool,
    names: FastSet<Arc<str>>,
    /// The bytes of `names`, bounded by [`MAX_NAME_BYTES`].
    name_bytes: usize,
    /// Addresses admitted because the link needed to see them, whatever their name.
    addresses: FastSet<Arc<str>>,
}

impl Interest {
    /// Whether the service at `address` is announced on the link.
    pub(super) fn admits(&self, address: &str) -> bool {
        self.all || self.names.contains(service_name(address)) || self.addresses.contains(address)
    }
}

/// What this process wants on its interest-scoped links (kept by the client).
#[derive(Debug)]
pub(crate) struct Wanted {
    all: bool,
    /// Each name, with the sequence number of the INTEREST that first asked for it.
    names: FastMap<Arc<str>, u64>,
    /// The sequence number of the INTEREST sent last.
    seq: u64,
    /// Callers waiting until every interest-scoped link has answered that INTEREST.
    waiters: Vec<(u64, oneshot::Sender<()>)>,
}

impl Default for Wanted {
    /// The whole registry, as the original had it.
    fn default() -> Self {
        Self {
            all: true,
            names: FastMap::default(),
            seq: 0,
            waiters: Vec::new(),
        }
    }
}

/// One end of an interest-scoped link, as the link's state keeps it.
#[derive(Debug)]
pub(super) enum Scope {
    /// We asked for it. `initial` is the last of the INTERESTs that said on the new link
    /// what we wanted until then: its answer stands for the peer's SYNCED. `answered` is the
    /// highest INTEREST answered so far.
    Asked { initial: u64, answered: u64 },
    /// The peer asked for it: what it wants.
    Serving(Interest),
}

impl Scope {
    /// Whether the service at `address` is announced on a link with this scope (always,
    /// on a link where it is we who asked: the peer is told of everything we have).
    pub(super) fn admits(&self, address: &str) -> bool {
        match self {
            Self::Asked { .. } => true,
            Self::Serving(interest) => interest.admits(address),
        }
    }
}

impl Core {
    /// From now on, hubs are asked to tell this process only of the services it shows an
    /// interest in (`RegistrySync::Scoped`). Called before any link is up.
    pub(crate) fn scope_registry(&mut self) {
        self.mesh.wanted.all = false;
    }

    /// Whether our HELLO on a connection we open asks for an interest-scoped registry.
    pub(crate) fn asks_scoped_registry(&self) -> bool {
        !self.mesh.wanted.all
    }

    /// Wants every service of `name` on interest-scoped links. Returns the INTEREST that
    /// asks for it, to wait for with [`interest_answered`](Self::interest_answered).
    pub(crate) fn want_name(&mut self, name: &str) -> u64 {
        let wanted = &mut self.mesh.wanted;
        if wanted.all {
            return wanted.seq;
        }
        if let Some(&seq) = wanted.names.get(name) {
            return seq;
        }
        if wanted.names.len() >= MAX_NAMES {
            return self.want_all();
        }
        wanted.seq += 1;
        let seq = wanted.seq;
        wanted.names.insert(Arc::from(name), seq);
        self.send_interest(&Frame::Interest(frame::Interest {
            seq,
            all: false,
            names: vec![Text::from(name)],
        }));
        seq
    }

    /// Wants what a registry watch (or lookup) of `scope` needs: a group's members can have
    /// any name, so a group, like the whole registry, wants every service.
    pub(crate) fn want_scope(&mut self, scope: &RegistryScope) -> u64 {
        match scope {
            RegistryScope::Name(name) => self.want_name(name),
            RegistryScope::Address(address) => self.want_address(address),
            RegistryScope::Group(_) | RegistryScope::All => self.want_all(),
        }
    }

    /// Wants the name of the service at `address`.
    pub(crate) fn want_address(&mut self, address: &str) -> u64 {
        self.want_name(service_name(address))
    }

    /// Wants every service, as a link without interest scope has it.
    pub(crate) fn want_all(&mut self) -> u64 {
        let wanted = &mut self.mesh.wanted;
        if !wanted.all {
            wanted.all = true;
            wanted.seq += 1;
            let seq = wanted.seq;
            self.send_interest(&Frame::Interest(frame::Interest {
                seq,
                all: true,
                names: Vec::new(),
            }));
        }
        self.mesh.wanted.seq
    }

    /// A receiver that completes once every interest-scoped link has answered INTEREST
    /// `seq` (or has gone); `None` if they all have already.
    pub(crate) fn interest_answered(&mut self, seq: u64) -> Option<oneshot::Receiver<()>> {
        // 0: nothing was ever asked (a whole registry), and the links need no look.
        if seq == 0 || self.lowest_answer().is_none_or(|lowest| lowest >= seq) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let waiters = &mut self.mesh.wanted.waiters;
        // Callers that stopped waiting (timed out, cancelled) leave no trace.
        waiters.retain(|(_, tx)| !tx.is_closed());
        waiters.push((seq, tx));
        Some(rx)
    }

    /// The lowest INTEREST answered over our interest-scoped links, if there are any.
    fn lowest_answer(&self) -> Option<u64> {
        self.mesh
            .links
            .values()
            .filter_map(|l| match l.scope {
                // Until the new link has answered all we wanted before, it has answered
                // nothing we wait for.
                Some(Scope::Asked { initial, answered }) if answered >= initial => Some(answered),
                Some(Scope::Asked { .. }) => Some(0),
                _ => None,
            })
            .min()
    }

    /// Wakes the callers whose INTEREST every interest-scoped link has answered.
    pub(super) fn wake_interest_waiters(&mut self) {
        let lowest = self.lowest_answer();
        self.mesh
            .wanted
            .waiters
            .retain(|(seq, _)| lowest.is_some_and(|lowest| lowest < *seq));
    }

    fn send_interest(&self, frame: &Frame) {
        for link in self.mesh.links.values() {
            if matches!(link.scope, Some(Scope::Asked { .. })) {
                link.queue.push(frame.clone());
            }
        }
    }

    /// On a new link where we asked for an interest scope: everything we want so far, in as
    /// many INTEREST frames as it takes (at least one: its answer tells that the peer's
    /// part of our registry is complete, as SYNCED does on other links).
    pub(super) fn send_wanted(&mut self, id: LinkId) {
        if !matches!(
            self.mesh.links.get(&id).and_then(|l| l.scope.as_ref()),
            Some(Scope::Asked { .. })
        ) {
            return;
        }
        let wanted = &mut self.mesh.wanted;
        let mut frames = Vec::new();
        if wanted.all {
            wanted.seq += 1;
            frames.push(Frame::Interest(frame::Interest {
                seq: wanted.seq,
                all: true,
                names: Vec::new(),
            }));
        } else {
            let names: Vec<Text> = wanted.names.keys().map(Text::from).collect();
            for chunk in names
                .chunks(NAMES_PER_FRAME)
                .chain(names.is_empty().then_some(&[][..]))
            {
                wanted.seq += 1;
                frames.push(Frame::Interest(frame::Interest {
                    seq: wanted.seq,
                    all: false,
                    names: chunk.to_vec(),
                }));
            }
        }
        let last = wanted.seq;
        if let Some(link) = self.mesh.links.get_mut(&id) {
            for frame in frames {
                link.queue.push(frame);
            }
            link.scope = Some(Scope::Asked {
                initial: last,
                answered: 0,
            });
        }
    }

    /// An INTERESTED: the peer has sent everything INTEREST `seq` asked for.
    pub(super) fn on_interested(&mut self, id: LinkId, seq: u64) {
        let Some(link) = self.mesh.links.get_mut(&id) else {
            return;
        };
        if let Some(Scope::Asked { initial, answered }) = &mut link.scope {
            *answered = (*answered).max(seq);
            if *answered >= *initial {
                link.peer_synced = true;
            }
        }
        self.wake_interest_waiters();
    }

    /// An INTEREST: the peer wants more services. Sends those now admitted that it was not
    /// told of, then INTERESTED.
    pub(super) fn on_interest(&mut self, id: LinkId, asked: frame::Interest) {
        let Some(link) = self.mesh.links.get_mut(&id) else {
            return;
        };
        let answer = Frame::Interested(frame::Interested { seq: asked.seq });
        let Some(Scope::Serving(interest)) = link.scope.as_mut() else {
            // Not an interest-scoped link here: the peer has had every service already.
            link.queue.push(answer);
            return;
        };
        let registry = &self.registry;
        let mut admitted: Vec<Arc<str>> = Vec::new();
        let asked_bytes: usize = asked.names.iter().map(|n| n.len()).sum();
        let everything = asked.all
            || interest.names.len() + asked.names.len() > MAX_NAMES
            || interest.name_bytes + asked_bytes > MAX_NAME_BYTES;
        if everything && !interest.all {
            admitted.extend(
                registry
                    .addresses()
                    .filter(|a| !interest.admits(a))
                    .cloned(),
            );
            interest.all = true;
            interest.names = FastSet::default();
            interest.name_bytes = 0;
            interest.addresses = FastSet::default();
        } else if !interest.all {
            for name in &asked.names {
                if interest.names.contains(name.as_str()) {
                    continue;
                }
                interest.name_bytes += name.len();
                admitted.extend(
                    registry
                        .named(name)
                        .filter(|a| !interest.addresses.contains(*a))
                        .cloned(),
                );
                interest.names.insert(Arc::from(name.as_str()));
            }
        }
        self.send_services(id, admitted.iter(), Some(answer));
    }

    /// Makes sure an interest-scoped link has been told of the service at `address` before
    /// a frame that names it (a SUBSCRIBE's subscriber, a REQUEST's caller) goes there.
    pub(super) fn admit(&mut self, id: LinkId, address: &str) {
        let Some(Scope::Serving(interest)) =
            self.mesh.links.get_mut(&id).and_then(|l| l.scope.as_mut())
        else {
            return;
        };
        if interest.admits(address) {
            return;
        }
        // Only a service of the registry can be told of; its address is shared from there.
        let Some(address) = self
            .registry
            .get(address)
            .map(|e| e.binding.address_arc().clone())
        else {
            return;
        };
        interest.addresses.insert(address.clone());
        self.send_services(id, std::iter::once(&address), None);
    }

    /// Forgets the addresses admitted one by one when their service is withdrawn.
    pub(super) fn forget_admitted(&mut self, address: &str) {
        for link in self.mesh.links.values_mut() {
            if let Some(Scope::Serving(interest)) = &mut link.scope {
                interest.addresses.remove(address);
            }
        }
    }
}
