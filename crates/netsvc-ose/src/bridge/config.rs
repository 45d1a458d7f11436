//! The bridge's settings, and what all connections of one bridge share.

use std::time::Duration;

use netsvc::Runtime;

use crate::ids::Ids;

/// How the bridge behaves on its OSE connections.
#[derive(Debug, Clone)]
pub struct OseConfig {
    /// The exchange group (`""`, the default group: exchange `$E`; else `$E?group`). Only
    /// peers of the same group are served, and only services whose audience admits it are
    /// announced to them.
    pub group: String,
    /// How often this side sends its own `$E::KEEP-ALIVE` round trip (the original: every
    /// two minutes, and it never waits for the answer).
    pub keep_alive: Duration,
    /// A peer heard from not at all for this long is dead: the connection is closed and its
    /// services withdrawn. Longer than `keep_alive`, so a live peer always answers in time.
    pub dead_after: Duration,
    /// The longest frame accepted from a peer.
    pub max_frame: usize,
    /// Calls from one peer running at once, and calls into it waiting for their answers;
    /// more fail at once with 51.
    pub max_requests: usize,
    /// Services one peer may announce; further announcements are ignored (and logged).
    pub max_services: usize,
    /// Report subscriptions one peer may hold; further ones are ignored (and logged).
    pub max_subscriptions: usize,
    /// How long a call from a peer into netsvc may take before it fails with 47 (`None`:
    /// as long as the service takes; it still ends if the service goes away).
    pub call_timeout: Option<Duration>,
    /// How long a call from netsvc into a peer waits before the bridge fails it with 47.
    pub request_timeout: Duration,
    /// How long a new connection may take to finish both handshakes.
    pub handshake_timeout: Duration,
}

impl Default for OseConfig {
    fn default() -> Self {
        Self {
            group: String::new(),
            keep_alive: Duration::from_secs(30),
            dead_after: Duration::from_secs(75),
            max_frame: crate::frame::DEFAULT_MAX_FRAME,
            max_requests: 1024,
            max_services: 10_000,
            max_subscriptions: 10_000,
            call_timeout: Some(Duration::from_secs(120)),
            request_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl OseConfig {
    /// The exchange's receiver name: `$E`, or `$E?group`.
    pub fn exchange_name(&self) -> String {
        if self.group.is_empty() {
            "$E".to_owned()
        } else {
            format!("$E?{}", self.group)
        }
    }
}

/// What every connection of one bridge shares.
#[derive(Debug)]
pub(super) struct Context {
    pub(super) runtime: Runtime,
    pub(super) config: OseConfig,
    pub(super) ids: Ids,
    /// The process identity sent in ANNOUNCE: `host:pid`, as the original's.
    pub(super) identity: String,
}
