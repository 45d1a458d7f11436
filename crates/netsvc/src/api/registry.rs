//! The registry as applications see it: lookups and watches.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use crate::core::INTEREST_PATIENCE;
use crate::core::queue::{EventReceiver, RecvError};
use crate::core::shared::RuntimeShared;
use crate::model::announcement::{Announcement, RegistryScope, ServiceStatus};
use crate::model::binding::Binding;
use crate::model::ids::WatchId;

/// A runtime's service registry: every service visible to this process, local or remote.
///
/// Lookups answer at once from the current state; watches deliver the current matches and
/// then every change.
///
/// With a scoped registry ([`RegistrySync::Scoped`](crate::RegistrySync::Scoped)), this
/// process is told only of the services of the names it uses. A lookup or watch of a name
/// asks the hub for that name's services and answers from what is known at once: services
/// the hub then tells of arrive as changes for a watch and are found by later lookups;
/// [`find_name`](Self::find_name) waits for the hub's answer instead. Listing the
/// registry, watching all of it or a group, or looking up a group widens the scope to every
/// service.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use netsvc::{AnnouncementKind, Runtime};
/// let rt = Runtime::new();
/// let mut watch = rt.registry().watch_name("alarm-monitor");
/// let service = rt.service("alarm-monitor").build()?;
/// let seen = watch.recv().await?;
/// assert_eq!(seen.kind, AnnouncementKind::Available);
/// assert_eq!(seen.binding.service_name(), "alarm-monitor");
/// assert_eq!(rt.registry().lookup_name("alarm-monitor").len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Registry {
    pub(crate) runtime: Arc<RuntimeShared>,
}

impl Registry {
    /// Every visible service, oldest first (in a scoped registry, from now on every service
    /// of the exchange: the scope widens to the whole registry).
    pub fn services(&self) -> Vec<Binding> {
        let mut core = self.runtime.core.lock();
        core.want_all();
        core.registry.entries().map(|e| e.binding.clone()).collect()
    }

    /// The services with this name, oldest first.
    pub fn lookup_name(&self, name: &str) -> Vec<Binding> {
        let mut core = self.runtime.core.lock();
        core.want_name(name);
        core.registry.lookup_name(name)
    }

    /// The services with this name, oldest first, once the hubs of a scoped registry have
    /// told of them (at once otherwise): the first lookup of a name in a scoped registry
    /// waits for a round trip to the hub (at most 10 s, for a hub that never answers).
    pub async fn find_name(&self, name: &str) -> Vec<Binding> {
        let unanswered = {
            let mut core = self.runtime.core.lock();
            let seq = core.want_name(name);
            core.interest_answered(seq)
        };
        if let Some(answered) = unanswered {
            // An error means the link went, a timeout that the hub does not answer: what is
            // known then is the answer.
            let _ = tokio::time::timeout(INTEREST_PATIENCE, answered).await;
        }
        self.runtime.core.lock().registry.lookup_name(name)
    }

    /// The members of a group, in the order they joined (in a scoped registry, the scope
    /// widens to the whole registry: members can have any name).
    pub fn lookup_group(&self, group: &str) -> Vec<Binding> {
        let mut core = self.runtime.core.lock();
        core.want_all();
        core.registry.lookup_group(group)
    }

    /// The service at this address, if visible.
    pub fn lookup_address(&self, address: &str) -> Option<Binding> {
        let mut core = self.runtime.core.lock();
        core.want_address(address);
        core.registry.lookup_address(address)
    }

    /// Every group that has at least one member, sorted (in a scoped registry, the scope
    /// widens to the whole registry).
    pub fn groups(&self) -> Vec<String> {
        let mut core = self.runtime.core.lock();
        core.want_all();
        core.registry
            .groups()
            .iter()
            .map(|g| g.to_string())
            .collect()
    }

    /// The groups of the service at this address, in the order it joined them.
    pub fn groups_of(&self, address: &str) -> Vec<String> {
        let mut core = self.runtime.core.lock();
        core.want_address(address);
        core.registry
            .groups_of(address)
            .iter()
            .map(|g| g.to_string())
            .collect()
    }

    /// Watches the whole registry: every service with its groups, then every change,
    /// including group joins and leaves.
    pub fn watch(&self) -> RegistryWatch {
        self.watch_scope(RegistryScope::All).0
    }

    /// Watches the services of one name: those present, then each one that becomes
    /// available or is withdrawn. Never reports group changes.
    pub fn watch_name(&self, name: &str) -> RegistryWatch {
        self.watch_scope(RegistryScope::Name(name.into())).0
    }

    /// Watches one service: if present, its availability and groups, then its changes.
    /// Also says at once whether it is present now; an absent service produces no
    /// announcement until it appears.
    pub fn watch_address(&self, address: &str) -> (ServiceStatus, RegistryWatch) {
        let (watch, empty) = self.watch_scope(RegistryScope::Address(address.into()));
        let status = if empty {
            ServiceStatus::Withdrawn
        } else {
            ServiceStatus::Available
        };
        (status, watch)
    }

    /// Watches one group: its current members (as joins), then every join and leave,
    /// including the leave implied by a member's withdrawal.
    pub fn watch_group(&self, group: &str) -> RegistryWatch {
        self.watch_scope(RegistryScope::Group(group.into())).0
    }

    /// Starts a watch; also says whether it started with an empty snapshot.
    fn watch_scope(&self, scope: RegistryScope) -> (RegistryWatch, bool) {
        let capacity = self.runtime.config.announcement_capacity;
        let (id, rx, empty) = self.runtime.core.lock().watch(scope, capacity);
        let watch = RegistryWatch {
            id,
            rx,
            runtime: Arc::downgrade(&self.runtime),
        };
        (watch, empty)
    }
}

/// A registry watch: the current matches first, then every change, in order, with no gap
/// and no duplicate. Dropping it ends the watch.
///
/// The queue between the registry and the watch is bounded; a watch that falls further
/// behind than that is cut off and [`recv`](Self::recv) then returns
/// [`RecvError::Lagged`]: watch again for a fresh snapshot.
///
/// Also a [`Stream`](futures_core::Stream) of `Result<Announcement, RecvError>`: it ends when
/// the runtime is gone, after an `Err(RecvError::Lagged)` if the watch was cut off.
#[derive(Debug)]
pub struct RegistryWatch {
    id: WatchId,
    rx: EventReceiver<Announcement>,
    runtime: Weak<RuntimeShared>,
}

impl RegistryWatch {
    /// The next announcement.
    pub async fn recv(&mut self) -> Result<Announcement, RecvError> {
        self.rx.recv().await
    }

    /// The next announcement if one is queued.
    pub fn try_recv(&mut self) -> Result<Option<Announcement>, RecvError> {
        self.rx.try_recv()
    }
}

impl Drop for RegistryWatch {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.upgrade() {
            rt.core.lock().unwatch(self.id);
        }
    }
}

impl futures_core::Stream for RegistryWatch {
    type Item = Result<Announcement, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_next_event(cx)
    }
}
