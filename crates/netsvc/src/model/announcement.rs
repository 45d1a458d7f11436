//! Announcements: the changes of a registry, as a watch delivers them.

use std::sync::Arc;

use netsvc_proto::wire::WithdrawCode;

use super::binding::Binding;

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
    /// A hub refused to announce it: the process's user may not provide a service of that
    /// name. Only the announcer hears this reason.
    Refused,
}

impl WithdrawReason {
    /// A stable one-word name for machine-readable output: `owner`, `process-exit` or
    /// `connection-lost`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::ProcessExit => "process-exit",
            Self::ConnectionLost => "connection-lost",
            Self::Refused => "refused",
        }
    }

    pub(crate) fn from_wire(code: WithdrawCode) -> Self {
        match code {
            WithdrawCode::Owner => Self::Owner,
            WithdrawCode::ProcessExit => Self::ProcessExit,
            WithdrawCode::ConnectionLost => Self::ConnectionLost,
            WithdrawCode::Refused => Self::Refused,
        }
    }

    pub(crate) fn to_wire(self) -> WithdrawCode {
        match self {
            Self::Owner => WithdrawCode::Owner,
            Self::ProcessExit => WithdrawCode::ProcessExit,
            Self::ConnectionLost => WithdrawCode::ConnectionLost,
            Self::Refused => WithdrawCode::Refused,
        }
    }
}

/// Words for people, e.g. `withdrawn by owner`; see [`WithdrawReason::name`] for machines.
impl std::fmt::Display for WithdrawReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Owner => "withdrawn by owner",
            Self::ProcessExit => "process exit",
            Self::ConnectionLost => "connection lost",
            Self::Refused => "refused by the hub",
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
