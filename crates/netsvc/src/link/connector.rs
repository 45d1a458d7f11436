//! What a client's connector knows of one server it keeps connecting to: where it stands
//! ([`ConnectorStatus`]), and why a caller waiting for it gave up ([`ConnectError`]).

use std::fmt;
use std::time::Duration;

use super::error::LinkFailure;

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
    /// ([`Retry::once`](crate::Retry::once)), its first login was refused, or the exchange
    /// shut down.
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

/// A client could not link to a server (see [`Connector::synced`](crate::Connector::synced)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectError {
    /// The server's address, as given to `connect`.
    pub address: String,
    /// How long the caller waited, if it gave a limit that passed.
    pub waited: Option<Duration>,
    /// Why the last attempt failed, if one did (none: see `phase`).
    pub cause: Option<LinkFailure>,
    /// Whether the connector has stopped trying (a single-attempt [`Retry`](crate::Retry)
    /// that failed, a refused first login, or the exchange shut down).
    pub stopped: bool,
    /// Where the connector stood when the caller gave up.
    pub phase: LinkPhase,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no link to the exchange at {}", self.address)?;
        if let Some(waited) = self.waited {
            write!(f, " within {:.1} s", waited.as_secs_f64())?;
        }
        match (&self.cause, self.phase) {
            (Some(cause), _) => write!(f, ": {cause}"),
            (None, _) if self.stopped => f.write_str(": the connector stopped"),
            (None, LinkPhase::Linked) => {
                f.write_str(": linked, but the registry has not arrived yet")
            }
            (None, _) => f.write_str(": no connection attempt has ended yet"),
        }
    }
}

impl std::error::Error for ConnectError {}
