//! The settings of a runtime: every queue and limit of the library has its bound here or in
//! [`ExchangeConfig`](crate::ExchangeConfig).

use std::time::Duration;

use netsvc_proto::value::Limits;

/// Settings of a [`Runtime`](crate::Runtime). Every queue and limit in netsvc has its bound here.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Default timeout of requests made through endpoints (default 60 s; `None`: wait as
    /// long as the service exists).
    pub request_timeout: Option<Duration>,
    /// How far a registry watch or subscription watch may fall behind before it is cut off
    /// (default 4096 events).
    pub announcement_capacity: usize,
    /// How many reports a subscription queues before it starts coalescing them by subject
    /// (default 1024).
    pub report_capacity: usize,
    /// How many requests one service handles at once before it refuses more with failure 51
    /// (default 10,000).
    pub max_requests_in_progress: usize,
    /// Limits on values carried in messages (default: nesting depth 64, 16 MiB encoded).
    pub value_limits: Limits,
    /// Which services a hub tells this process of (default [`RegistrySync::Whole`]).
    pub registry_sync: RegistrySync,
}

/// Which services the hubs this process connects to tell it of (docs/PROTOCOL.md §8.1).
///
/// ```
/// use netsvc::{RegistrySync, Runtime, RuntimeConfig};
/// // A small client that calls `echo` and never lists the registry: the hub tells it of
/// // the `echo` services only, not of every service of the exchange.
/// let rt = Runtime::with_config(RuntimeConfig::default().with_registry_sync(RegistrySync::Scoped));
/// # drop(rt);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrySync {
    /// Every service of the exchange, as the original did: the registry lists everything,
    /// at the cost of every process hearing of every service.
    #[default]
    Whole,
    /// Only the services whose names this process uses: looks up, watches, calls or
    /// monitors (plus those that call or subscribe to its own services). Asking for the
    /// whole registry (listing it, watching all of it or a group) widens it to every
    /// service for the rest of the process's life. A hub that does not offer it tells the
    /// process of everything, as with `Whole`.
    Scoped,
}

/// Builder-style setters, so that a configuration reads as one expression:
/// `RuntimeConfig::default().with_...(..)`.
impl RuntimeConfig {
    /// Sets [`request_timeout`](Self::request_timeout).
    #[must_use]
    pub fn with_request_timeout(mut self, request_timeout: Option<Duration>) -> Self {
        self.request_timeout = request_timeout;
        self
    }

    /// Sets [`announcement_capacity`](Self::announcement_capacity).
    #[must_use]
    pub fn with_announcement_capacity(mut self, announcement_capacity: usize) -> Self {
        self.announcement_capacity = announcement_capacity;
        self
    }

    /// Sets [`report_capacity`](Self::report_capacity).
    #[must_use]
    pub fn with_report_capacity(mut self, report_capacity: usize) -> Self {
        self.report_capacity = report_capacity;
        self
    }

    /// Sets [`max_requests_in_progress`](Self::max_requests_in_progress).
    #[must_use]
    pub fn with_max_requests_in_progress(mut self, max_requests_in_progress: usize) -> Self {
        self.max_requests_in_progress = max_requests_in_progress;
        self
    }

    /// Sets [`registry_sync`](Self::registry_sync).
    #[must_use]
    pub fn with_registry_sync(mut self, registry_sync: RegistrySync) -> Self {
        self.registry_sync = registry_sync;
        self
    }

    /// Sets [`value_limits`](Self::value_limits).
    #[must_use]
    pub fn with_value_limits(mut self, value_limits: Limits) -> Self {
        self.value_limits = value_limits;
        self
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            request_timeout: Some(Duration::from_secs(60)),
            announcement_capacity: 4096,
            report_capacity: 1024,
            max_requests_in_progress: 10_000,
            value_limits: Limits::default(),
            registry_sync: RegistrySync::Whole,
        }
    }
}
