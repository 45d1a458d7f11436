//! Announcements: what a registry watch reports.

use std::sync::{Arc, Weak};

use crate::binding::Binding;
use crate::queue::{EventReceiver, RecvError};
use crate::runtime::RuntimeShared;

/// Why a service was withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WithdrawReason {
    /// Its owner withdrew it (dropped the service or called `withdraw`).
    Owner,
    /// Its process (runtime) shut down.
    ProcessExit,
    /// The exchange connection through which it was known was lost; it may still exist.
    ConnectionLost,
}

impl std::fmt::Display for WithdrawReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Owner => "withdrawn by owner",
            Self::ProcessExit => "process gone",
            Self::ConnectionLost => "connection lost",
        })
    }
}

/// Whether a service is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceStatus {
    /// Present in the registry (the original's `SERVICE_AVAILABLE`).
    Available,
    /// Absent (the original's `SERVICE_WITHDRAWN`).
    Withdrawn,
}

/// What happened to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnnouncementKind {
    /// It became visible.
    Available,
    /// It is gone, and why. Any groups it was in were left first, each with its own
    /// [`GroupLeft`](Self::GroupLeft).
    Withdrawn(WithdrawReason),
    /// It joined a group.
    GroupJoined(Arc<str>),
    /// It left a group.
    GroupLeft(Arc<str>),
}

/// One change in the registry, as a watch delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The service concerned.
    pub binding: Binding,
    /// What happened.
    pub kind: AnnouncementKind,
}

impl Announcement {
    pub(crate) fn new(binding: Binding, kind: AnnouncementKind) -> Self {
        Self { binding, kind }
    }

    /// For a service-level announcement, the service's status; `None` for group changes.
    pub fn status(&self) -> Option<ServiceStatus> {
        match self.kind {
            AnnouncementKind::Available => Some(ServiceStatus::Available),
            AnnouncementKind::Withdrawn(_) => Some(ServiceStatus::Withdrawn),
            _ => None,
        }
    }

    /// For a group change, the group.
    pub fn group(&self) -> Option<&str> {
        match &self.kind {
            AnnouncementKind::GroupJoined(g) | AnnouncementKind::GroupLeft(g) => Some(g),
            _ => None,
        }
    }
}

/// What a registry watch covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RegistryScope {
    /// Every service and every group change.
    All,
    /// Services of one name; no group changes.
    Name(Arc<str>),
    /// One service and its group changes.
    Address(Arc<str>),
    /// Joins and leaves of one group.
    Group(Arc<str>),
}

/// A registry watch: the current matches first, then every change, in order, with no gap
/// and no duplicate. Dropping it ends the watch.
///
/// The queue between the registry and the watch is bounded; a watch that falls further
/// behind than that is cut off and [`recv`](Self::recv) then returns
/// [`RecvError::Lagged`]: watch again for a fresh snapshot.
#[derive(Debug)]
pub struct Announcements {
    pub(crate) id: u64,
    pub(crate) rx: EventReceiver<Announcement>,
    pub(crate) runtime: Weak<RuntimeShared>,
}

impl Announcements {
    /// The next announcement.
    pub async fn recv(&mut self) -> Result<Announcement, RecvError> {
        self.rx.recv().await
    }

    /// The next announcement if one is queued.
    pub fn try_recv(&mut self) -> Result<Option<Announcement>, RecvError> {
        self.rx.try_recv()
    }
}

impl Drop for Announcements {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.upgrade() {
            rt.core.lock().unwatch(self.id);
        }
    }
}
