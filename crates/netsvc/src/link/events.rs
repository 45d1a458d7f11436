//! What an exchange tells about its links: a [`ConnectionEvent`] for each change of one.

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
    /// The user the peer logged in as, on a link this process accepted with users
    /// configured (`None` for an anonymous peer, or without users).
    pub user: Option<String>,
    /// Whether the link runs over TLS.
    pub tls: bool,
    /// For [`ConnectionState::Inactive`], why the link ended.
    pub reason: Option<String>,
}
