//! Doors: how a component in a hub's own process (the OSE bridge, the HTTP gateway) acts as
//! one user of the hub's users file.
//!
//! Such a component reaches the core through the public API, so no link login applies to
//! it: on the hub's own runtime it would act as the hub itself, with every right. A door
//! gives it a runtime of its own instead, linked to the hub over an in-memory connection
//! that the hub accepts like any other, logged in as the door's user without credentials
//! (only code in this process can open one: the user travels in the [`Transport`], never
//! in anything a peer sends). Every check of docs/SECURITY.md then applies unchanged, at
//! the one place where the hub makes it: what the door may provide, call, see, publish and
//! receive; and a reload that changes the user's rights closes the link, which the door's
//! connector opens again under the new ones.

use std::sync::{Arc, Weak};

use tokio::io::DuplexStream;

use super::auth::Transport;
use super::shared::ExchangeShared;
use super::{Endpoints, run};

/// Bytes buffered in each direction of a door's in-memory connection. The link tasks at
/// both ends write whole batches; a larger buffer only saves wake-ups.
const BUFFER: usize = 256 * 1024;

/// The hub a door opens into, and the user it acts as there.
#[derive(Debug, Clone)]
pub(crate) struct DoorTarget {
    /// Weak: a door must not keep its hub's exchange from stopping.
    hub: Weak<ExchangeShared>,
    /// `None`: the users file's `[anonymous]`.
    user: Option<Arc<str>>,
}

impl DoorTarget {
    pub(crate) fn new(hub: &Arc<ExchangeShared>, user: Option<&str>) -> Self {
        Self {
            hub: Arc::downgrade(hub),
            user: user.map(Arc::from),
        }
    }

    /// Opens one in-memory connection into the hub: starts the hub's side, an accepted
    /// link logged in as the door's user, and returns the door's side. `None` once the
    /// hub has stopped.
    pub(crate) fn open(&self) -> Option<DuplexStream> {
        let hub = self.hub.upgrade().filter(|hub| !hub.stopping())?;
        let (door_end, hub_end) = tokio::io::duplex(BUFFER);
        let transport = Transport {
            local: true,
            door: Some(self.user.clone()),
            ..Transport::default()
        };
        let endpoints = Endpoints::accepted(self.to_string(), "in-process".to_owned(), transport);
        // Not through the listeners' admission: the `authorise` hook decides by network
        // address, and a door is part of this process; its login decides what it may do.
        let handle = hub.runtime.handle.clone();
        handle.spawn(async move {
            run(hub_end, &hub, endpoints).await;
        });
        Some(door_end)
    }
}

impl std::fmt::Display for DoorTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.user {
            Some(user) => write!(f, "door:{user}"),
            None => f.write_str("door:[anonymous]"),
        }
    }
}
