//! What an exchange tells about its links: a [`ConnectionEvent`] for each change of a link,
//! and a [`ConnectorStatus`] for each server a client keeps connecting to.

use super::error::LinkFailure;
use netsvc_proto::wire::Role;

/// The state of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// The handshake completed; the link carries traffic.
    Active,
    /// The peer's whole registry has arrived and every report subscription through the link
    /// is in place again: after a reconnect, everything is as it was.
    Resynced,
    /// The link is gone.
    Inactive,
}

/// A change in the state of one link.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionEvent {
    /// The new state.
    pub state: ConnectionState,
    /// The exchange group.
    pub group: String,
    /// The peer's process identity.
    pub peer_process: String,
    /// The peer's role.
    pub peer_role: Role,
    /// The peer's address.
    pub peer_address: String,
    /// Our end's address.
    pub local_address: String,
    /// Whether this process opened the connection.
    pub initiated_here: bool,
    /// For [`ConnectionState::Inactive`], why the link ended.
    pub reason: Option<String>,
}

/// Where a client stands with one server it connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkPhase {
    /// No link: an attempt is under way, or the next one is waiting for its retry delay.
    Connecting,
    /// Linked; the server's registry is still arriving.
    Linked,
    /// Linked and synced: the server's whole registry is here, and every report
    /// subscription through the link is in place.
    Synced,
    /// The connector has stopped: its single attempt failed or its link ended
    /// ([`Retry::once`](crate::Retry::once)), or the exchange shut down.
    Stopped,
}

/// The state of a connector, with what its attempts so far came to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectorStatus {
    /// Where it stands now.
    pub phase: LinkPhase,
    /// Connection attempts made so far (the one under way included).
    pub attempts: u64,
    /// Attempts that failed before a link was established.
    pub failures: u64,
    /// Why the most recent failed attempt failed; cleared when a link is established.
    pub last_failure: Option<LinkFailure>,
}

impl ConnectorStatus {
    pub(crate) fn new() -> Self {
        Self {
            phase: LinkPhase::Connecting,
            attempts: 0,
            failures: 0,
            last_failure: None,
        }
    }
}
