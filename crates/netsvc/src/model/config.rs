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
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            request_timeout: Some(Duration::from_secs(60)),
            announcement_capacity: 4096,
            report_capacity: 1024,
            max_requests_in_progress: 10_000,
            value_limits: Limits::default(),
        }
    }
}
