//! Remote services and the routes to them: learning a route from a SERVICE frame, choosing
//! the best one, and losing routes until a service is withdrawn.

use std::sync::{Arc, OnceLock};

use netsvc_proto::names;
use netsvc_proto::wire::{Text, frame};
use tokio::sync::watch;
use tokio::time::Instant;

use super::ads::ServiceAd;
use super::inbound;
use crate::core::{Core, Route};
use crate::model::announcement::WithdrawReason;
use crate::model::binding::{Binding, Location};
use crate::model::collections::Few;
use crate::model::ids::LinkId;

/// One route to a remote service. Cheap to clone: a registry sync creates one per service
/// and link, and route changes compare the state before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RouteInfo {
    /// As received: the origin first, the peer of the link last.
    pub(super) path: Arc<[Arc<str>]>,
    pub(super) version: u64,
    pub(super) groups: Few<Arc<str>>,
}

/// A service learned through links.
pub(super) struct RemoteService {
    pub(super) binding: Binding,
    /// Routes by link, one per link; nearly always just one, so a list.
    routes: Few<(LinkId, RouteInfo)>,
    /// Dropped when the service is removed: callers waiting on it fail at once. Made by the
    /// first caller: most of the services a registry sync brings are never called.
    liveness: OnceLock<watch::Sender<()>>,
}

/// A service's best route and newest state, before a change, to compare with after it.
type RouteState = (Option<(LinkId, RouteInfo)>, Option<RouteInfo>);

impl RemoteService {
    /// The link to use: shortest path, then lowest link id.
    pub(super) fn best(&self) -> Option<(LinkId, &RouteInfo)> {
        self.routes
            .iter()
            .min_by_key(|(id, r)| (r.path.len(), *id))
            .map(|(id, r)| (*id, r))
    }

    /// The newest state (highest version; ties go to the best route).
    pub(super) fn newest(&self) -> Option<&RouteInfo> {
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

    /// The index of the route through `link`, if there is one.
    pub(super) fn route(&self, link: LinkId) -> Option<usize> {
        self.routes.iter().position(|(id, _)| *id == link)
    }

    fn state(&self) -> RouteState {
        (
            self.best().map(|(l, r)| (l, r.clone())),
            self.newest().cloned(),
        )
    }
}

impl Core {
    /// How to reach a remote service for a request.
    pub(crate) fn remote_route(&self, address: &str) -> Option<Route> {
        let service = self.mesh.remote.get(address)?;
        let (link, _) = service.best()?;
        self.mesh.link(link)?;
        Some(Route::Remote {
            link,
            liveness: service
                .liveness
                .get_or_init(|| watch::channel(()).0)
                .subscribe(),
        })
    }

    /// The best link toward a remote service.
    pub(crate) fn best_link(&self, address: &str) -> Option<LinkId> {
        self.mesh.remote.get(address)?.best().map(|(l, _)| l)
    }

    /// A SERVICE frame: a new service, or a new or changed route to a known one. At a client
    /// taking back its hub this runs once per service in the whole network, so it avoids
    /// allocating what it can share (the peer's identity, group names) and encoding what no
    /// link will be sent.
    pub(super) fn on_service(&mut self, link: LinkId, service: &frame::Service, now: Instant) {
        // Only what is kept is turned into an owned string, once.
        let address = service.address.as_str();
        let path = &service.path;
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
        let Some(state) = self.mesh.link(link) else {
            return;
        };
        let (link_group, peer) = (state.info.group.clone(), state.info.peer.clone());
        // Most services come straight from the peer: their routes share one path.
        let route_path: Arc<[Arc<str>]> = match &path[..] {
            [only] if only.as_bytes() == peer.as_bytes() => state.direct_path.clone(),
            _ => path
                .iter()
                .map(|p| match p.as_bytes() == peer.as_bytes() {
                    true => peer.clone(),
                    false => Arc::from(p.as_str()),
                })
                .collect(),
        };
        let origin = route_path[0].clone();
        let route_groups: Few<Arc<str>> = service
            .groups
            .iter()
            .map(Text::as_str)
            .filter_map(|g| match self.registry.group_name(g) {
                Some(known) => Some(known),
                None => names::check_group_name(g).ok().map(|()| Arc::from(g)),
            })
            .collect();
        let route = RouteInfo {
            path: route_path.clone(),
            version: service.version,
            groups: route_groups,
        };
        // A known remote service cannot be local: the remote map is asked first, and only a
        // new service costs a second lookup.
        if let Some(known) = self.mesh.remote.get_mut(address) {
            let before = known.state();
            match known.route(link) {
                Some(i) => known.routes[i].1 = route,
                None => known.routes.push((link, route)),
            }
            self.after_route_change(address, before);
            return;
        }
        if self.locals.contains_key(address) {
            return; // it went around a loop back to us
        }
        let audience = match inbound::new_service(service) {
            Ok(audience) => audience,
            Err(why) => {
                tracing::warn!(%address, name = %service.name, "SERVICE ignored: {why}");
                return;
            }
        };
        let name = (self.registry.service_name(&service.name))
            .unwrap_or_else(|| Arc::from(service.name.as_str()));
        let binding = Binding::with_address(
            Arc::from(address),
            name,
            audience,
            origin,
            Location::Remote,
            Some(link_group),
        );
        let groups = route.groups.clone();
        self.mesh.remote.insert(
            binding.address_arc().clone(),
            RemoteService {
                binding: binding.clone(),
                routes: Few::One((link, route)),
                liveness: OnceLock::new(),
            },
        );
        self.add_binding(binding.clone(), &groups, now);
        // What `current_ad` would find, without looking it up again.
        let ad = ServiceAd::learned(link, route_path, binding.audience().clone());
        self.announce_ad(binding.address_arc(), None, ad, true);
    }

    /// Applies a change in a remote service's routes: group changes to the registry, a new
    /// best route to subscriptions, and the new state to the other links.
    fn after_route_change(&mut self, address: &str, before: RouteState) {
        let Some(service) = self.mesh.remote.get(address) else {
            return;
        };
        let (best, newest) = service.state();
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
    pub(super) fn remove_route(&mut self, address: &str, link: LinkId, reason: WithdrawReason) {
        let Some(service) = self.mesh.remote.get_mut(address) else {
            return;
        };
        let Some(i) = service.route(link) else {
            return;
        };
        if service.routes.len() > 1 {
            let before = service.state();
            service.routes.remove(i);
            self.after_route_change(address, before);
            return;
        }
        let Some(service) = self.mesh.remote.remove(address) else {
            return;
        };
        // Subscriptions toward it end with it; its subscribers hear of the withdrawal
        // through the registry.
        self.forget_publisher(address);
        self.remove_binding(address, reason);
        self.withdraw_everywhere(service.binding.address_arc(), reason);
        drop(service.liveness);
    }

    /// Removes every route via `link`: services with another route keep it, the others are
    /// withdrawn together, as [`Self::remove_route`] withdraws one.
    pub(super) fn withdraw_routes_of(&mut self, link: LinkId, reason: WithdrawReason) {
        let rerouted: Vec<Arc<str>> = self
            .mesh
            .remote
            .iter()
            .filter(|(_, s)| s.routes.len() > 1 && s.route(link).is_some())
            .map(|(a, _)| a.clone())
            .collect();
        for address in rerouted {
            self.remove_route(&address, link, reason);
        }
        let gone: Vec<(Arc<str>, RemoteService)> = self
            .mesh
            .remote
            .extract_if(|_, s| s.route(link).is_some())
            .collect();
        for (address, _) in &gone {
            self.forget_publisher(address);
        }
        let addresses: Vec<Arc<str>> = gone.iter().map(|(a, _)| a.clone()).collect();
        self.remove_bindings(&addresses, reason);
        for (address, service) in gone {
            self.withdraw_everywhere(&address, reason);
            // Callers waiting on it fail at once.
            drop(service.liveness);
        }
    }

    /// The path and version of a remote service's best route, as its SERVICE frame carries
    /// them onward.
    pub(super) fn best_route(&self, address: &str) -> Option<(LinkId, &RouteInfo, u64)> {
        let remote = self.mesh.remote.get(address)?;
        let (link, best) = remote.best()?;
        Some((link, best, remote.newest()?.version))
    }

    /// The binding of a remote service.
    pub(super) fn remote_binding(&self, address: &str) -> Option<&Binding> {
        self.mesh.remote.get(address).map(|s| &s.binding)
    }
}
