//! What each link has been told of this runtime's registry, and telling it of changes: the
//! SERVICE and WITHDRAW frames we send, and the registry sync of a new link.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use netsvc_proto::wire::{self, Frame, Text, frame};

use super::{LinkInfo, LinkState};
use crate::core::Core;
use crate::model::announcement::WithdrawReason;
use crate::model::binding::Audience;
use crate::model::ids::LinkId;

/// How a service was last announced: what decides which links have it, and its SERVICE
/// frame, encoded once per state and shared by every link (a thousand clients reconnecting
/// would otherwise cost a million encodings).
///
/// Every change of a service's state is announced to every link (`reannounce`), and a new
/// link gets every service as it stands (`link_up`), so a link has been told of a service
/// exactly when `exports_to` says so (and, on an interest-scoped link, its interest admits
/// the service: interest only grows, and a service is sent the moment it is admitted). That answers "was it announced there?" (for a
/// withdrawal) without a set per link of every service announced on it: at a hub, one
/// entry per service and client.
#[derive(Clone)]
pub(super) struct ServiceAd {
    /// Encoded when a link first needs it: a client, with one link, never does for what it
    /// learned from the hub.
    raw: Option<Bytes>,
    /// The link of the route it was learned over (none for a local service).
    learned_from: Option<LinkId>,
    /// The path of that route (empty for a local service).
    path: Arc<[Arc<str>]>,
    audience: Audience,
}

impl ServiceAd {
    /// The ad of a service just learned over `link` by `path`.
    pub(super) fn learned(link: LinkId, path: Arc<[Arc<str>]>, audience: Audience) -> Self {
        Self {
            raw: None,
            learned_from: Some(link),
            path,
            audience,
        }
    }

    /// Whether the service may be exported on the link: not on a link of a group its
    /// audience excludes, nor to a user who may not see its name, not back where it was learned from, not to a process it has
    /// already been through.
    fn exports_to(&self, id: LinkId, link: &LinkInfo, address: &str) -> bool {
        self.audience.admits(&link.group)
            && link.grants.as_ref().is_none_or(|g| {
                // Unnamed services (agents) are always seen: publishers serve only the
                // subscribers they can see, and an unnamed one reveals no name.
                let name = super::inbound::service_name(address);
                name.is_empty() || g.see.allows(name)
            })
            && self.learned_from != Some(id)
            && !self
                .path
                .iter()
                .any(|p| Arc::ptr_eq(p, &link.peer) || *p == link.peer)
    }
}

impl Core {
    /// Announces a visible service on every link it may be exported to, and withdraws it
    /// from links it may no longer be exported to. Call on every change of its state.
    pub(crate) fn advertise(&mut self, address: &Arc<str>) {
        self.reannounce(address, true);
    }

    /// Brings every link up to date with a service's current state. With `resend`, the
    /// state changed and every link that may have it hears it again; without, the SERVICE
    /// frame is unchanged and only links whose eligibility changed hear of it.
    pub(super) fn reannounce(&mut self, address: &Arc<str>, resend: bool) {
        let old = self.mesh.ads.remove(address);
        match self.current_ad(address) {
            Some(new) => self.announce_ad(address, old, new, resend),
            None => {
                if let Some(old) = old {
                    self.withdraw_ad(address, &old, WithdrawReason::ConnectionLost);
                }
            }
        }
    }

    /// Moves every link from a service's `old` announced state (if any) to `new`.
    pub(super) fn announce_ad(
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
        for (&id, link) in &self.mesh.links {
            // Interest only grows, and a service is sent to a link the moment its interest
            // admits it: admitted now means told, if the old state was exported there.
            if !link.admits(address) {
                continue;
            }
            let was = old
                .as_ref()
                .is_some_and(|o| o.exports_to(id, &link.info, address));
            if new.exports_to(id, &link.info, address) {
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
                    link.queue.push_raw(&raw);
                }
            } else if was {
                link.queue
                    .push(withdraw_frame(address, WithdrawReason::ConnectionLost));
            }
        }
        // Kept only where it went: most services a client learns go nowhere, and a service
        // with no ad is then one that no link has.
        if exported {
            self.mesh.ads.insert(address.clone(), new);
        }
    }

    /// What decides where a visible service may be announced, as it stands now.
    fn current_ad(&self, address: &str) -> Option<ServiceAd> {
        let entry = self.registry.get(address)?;
        let (learned_from, path) = if self.locals.contains_key(address) {
            (None, Arc::from([]))
        } else {
            let (link, best, _) = self.best_route(address)?;
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
        let (version, mut path): (u64, Vec<Text>) = match self.locals.get(address) {
            Some(local) => (local.version, Vec::new()),
            None => {
                let (_, best, version) = self.best_route(address)?;
                (version, best.path.iter().map(Text::from).collect())
            }
        };
        path.push(Text::from(&self.identity));
        let frame = Frame::Service(frame::Service {
            address: Text::from(address),
            name: Text::from(binding.service_name()),
            audience: Text::from(binding.audience().as_str()),
            groups: entry.groups().map(Text::from).collect(),
            version,
            path,
        });
        let mut buf = BytesMut::new();
        wire::encode(&frame, &mut buf);
        Some(buf.freeze())
    }

    /// Sends a new link every service it may see (on an interest-scoped link, those its
    /// interest admits: none yet), oldest first, then SYNCED: as one queued item, since a
    /// hub taking back a thousand clients queues a thousand services on each.
    pub(super) fn send_registry(&mut self, id: LinkId) {
        let fresh = self.queue_services(id, self.registry.addresses(), Some(Frame::Synced));
        self.keep_ads(fresh);
    }

    /// Sends link `id` the SERVICE frames of those of `addresses` it may be told of, then
    /// `then`, as one queued item.
    pub(super) fn send_services<'a>(
        &mut self,
        id: LinkId,
        addresses: impl Iterator<Item = &'a Arc<str>>,
        then: Option<Frame>,
    ) {
        let fresh = self.queue_services(id, addresses, then);
        self.keep_ads(fresh);
    }

    /// [`send_services`](Self::send_services) but for keeping the ads it encoded for the
    /// first time, which it returns.
    fn queue_services<'a>(
        &self,
        id: LinkId,
        addresses: impl Iterator<Item = &'a Arc<str>>,
        then: Option<Frame>,
    ) -> Vec<(Arc<str>, ServiceAd)> {
        let Some(link) = self.mesh.link(id) else {
            return Vec::new();
        };
        // SERVICE frames are some 100 bytes: one allocation, nearly always.
        let (low, _) = addresses.size_hint();
        let mut batch = BytesMut::with_capacity((low * 128).min(1 << 22));
        let mut fresh = Vec::new();
        for address in addresses.filter(|a| link.admits(a)) {
            let made;
            let ad = match self.mesh.ads.get(address) {
                Some(ad) => ad,
                None => match self.current_ad(address) {
                    Some(ad) => {
                        made = ad;
                        &made
                    }
                    None => continue,
                },
            };
            if !ad.exports_to(id, &link.info, address) {
                continue;
            }
            let raw = match &ad.raw {
                Some(raw) => raw.clone(),
                None => {
                    let Some(raw) = self.encode_ad(address) else {
                        continue;
                    };
                    fresh.push((
                        address.clone(),
                        ServiceAd {
                            raw: Some(raw.clone()),
                            ..ad.clone()
                        },
                    ));
                    raw
                }
            };
            if link.queue.fits(raw.len()) {
                batch.extend_from_slice(&raw);
            } else {
                tracing::warn!(%address, peer = %link.info.peer, "SERVICE over the peer's frame limit not sent");
            }
        }
        if let Some(frame) = then {
            wire::encode(&frame, &mut batch);
        }
        link.queue.push_frames(&batch);
        fresh
    }

    /// Keeps ads announced now, or encoded for the first time, for the next links.
    fn keep_ads(&mut self, fresh: Vec<(Arc<str>, ServiceAd)>) {
        for (address, ad) in fresh {
            self.mesh.ads.insert(address, ad);
        }
    }

    /// Sends WITHDRAW for a service to every link it was announced on.
    pub(crate) fn withdraw_everywhere(&mut self, address: &Arc<str>, reason: WithdrawReason) {
        if let Some(ad) = self.mesh.ads.remove(address) {
            self.withdraw_ad(address, &ad, reason);
        }
    }

    fn withdraw_ad(&mut self, address: &str, ad: &ServiceAd, reason: WithdrawReason) {
        for (&id, link) in &self.mesh.links {
            if link.admits(address) && ad.exports_to(id, &link.info, address) {
                link.queue.push(withdraw_frame(address, reason));
            }
        }
        self.forget_admitted(address);
    }

    /// Declares the link resynced once the peer's registry has arrived and none of our
    /// subscriptions through it awaits an acknowledgement.
    pub(super) fn check_resynced(&mut self, id: LinkId, actions: &mut Vec<super::Action>) {
        if let Some(link) = self.mesh.links.get_mut(&id)
            && is_resynced_now(link)
        {
            link.resynced = true;
            actions.push(super::Action::Resynced);
        }
    }
}

fn is_resynced_now(link: &LinkState) -> bool {
    link.peer_synced && link.awaiting_acks.is_empty() && !link.resynced
}

fn withdraw_frame(address: &str, reason: WithdrawReason) -> Frame {
    Frame::Withdraw(frame::Withdraw {
        address: Text::from(address),
        reason: reason.to_wire().code(),
    })
}
