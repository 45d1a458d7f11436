//! The settings of an exchange, and when a client (re)attempts its connections.

use std::time::Duration;

use netsvc_proto::wire;

use super::error::ExchangeError;
use crate::core::shared::random_u64;

/// Settings of an exchange. Every limit has its default here.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExchangeConfig {
    /// How often to send a heartbeat on an otherwise idle link (default 1 s).
    pub heartbeat: Duration,
    /// How many heartbeat intervals of the peer may pass in silence before the link is
    /// declared dead (default 4: a frozen peer is detected within about 4 s).
    pub heartbeat_misses: u32,
    /// How long a new connection has to complete the handshake (default 5 s).
    pub handshake_timeout: Duration,
    /// Largest frame accepted or sent (default 20 MiB).
    pub max_frame: usize,
    /// Queued bytes on a link past which reports are coalesced and requests refused
    /// (default 8 MiB).
    pub queue_soft_limit: usize,
    /// Queued bytes on a link past which it is closed as a slow consumer (default 64 MiB).
    pub queue_hard_limit: usize,
    /// Most links a server accepts at once (default 10,000).
    pub max_connections: usize,
    /// How long a link may stop reading while a link it forwards *paced* reports to (from
    /// `publish_paced`) is over its soft limit (default 500 ms). Backpressure so carries a
    /// slow subscriber's pace back, hop by hop, to a paced publisher, whose own link then
    /// fills and makes it wait: nothing is coalesced anywhere on the way. Unpaced reports
    /// never hold a link back (they coalesce at the congested link instead). A link that
    /// stays congested past this limit is treated as a slow consumer: it no longer holds
    /// others back, and reports to it coalesce, until it has drained to half its soft
    /// limit. Zero turns backpressure off.
    pub backpressure_limit: Duration,
}

/// Builder-style setters, so that a configuration reads as one expression:
/// `ExchangeConfig::default().with_...(..)`.
impl ExchangeConfig {
    /// Sets [`heartbeat`](Self::heartbeat).
    #[must_use]
    pub fn with_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets [`heartbeat_misses`](Self::heartbeat_misses).
    #[must_use]
    pub fn with_heartbeat_misses(mut self, heartbeat_misses: u32) -> Self {
        self.heartbeat_misses = heartbeat_misses;
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    #[must_use]
    pub fn with_handshake_timeout(mut self, handshake_timeout: Duration) -> Self {
        self.handshake_timeout = handshake_timeout;
        self
    }

    /// Sets [`max_frame`](Self::max_frame).
    #[must_use]
    pub fn with_max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }

    /// Sets [`queue_soft_limit`](Self::queue_soft_limit).
    #[must_use]
    pub fn with_queue_soft_limit(mut self, queue_soft_limit: usize) -> Self {
        self.queue_soft_limit = queue_soft_limit;
        self
    }

    /// Sets [`queue_hard_limit`](Self::queue_hard_limit).
    #[must_use]
    pub fn with_queue_hard_limit(mut self, queue_hard_limit: usize) -> Self {
        self.queue_hard_limit = queue_hard_limit;
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    #[must_use]
    pub fn with_max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Sets [`backpressure_limit`](Self::backpressure_limit).
    #[must_use]
    pub fn with_backpressure_limit(mut self, backpressure_limit: Duration) -> Self {
        self.backpressure_limit = backpressure_limit;
        self
    }
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            heartbeat_misses: 4,
            handshake_timeout: Duration::from_secs(5),
            max_frame: wire::DEFAULT_MAX_FRAME,
            queue_soft_limit: 8 << 20,
            queue_hard_limit: 64 << 20,
            max_connections: 10_000,
            backpressure_limit: Duration::from_millis(500),
        }
    }
}

impl ExchangeConfig {
    /// The smallest `max_frame` accepted: a frame must at least hold a HELLO and a SERVICE
    /// announcement.
    const MIN_FRAME: usize = 1024;

    /// Refuses settings that cannot work, instead of failing later inside a link's task.
    pub(crate) fn check(&self) -> Result<(), ExchangeError> {
        let invalid = |what: String| Err(ExchangeError::InvalidConfig(what));
        if self.heartbeat.is_zero() {
            return invalid("the heartbeat interval must not be zero".into());
        }
        if self.handshake_timeout.is_zero() {
            return invalid("the handshake timeout must not be zero".into());
        }
        if self.max_frame < Self::MIN_FRAME {
            return invalid(format!(
                "max_frame {} is below the minimum of {} bytes",
                self.max_frame,
                Self::MIN_FRAME
            ));
        }
        if self.queue_soft_limit > self.queue_hard_limit {
            return invalid(format!(
                "queue_soft_limit {} is over queue_hard_limit {}",
                self.queue_soft_limit, self.queue_hard_limit
            ));
        }
        Ok(())
    }
}

/// When a client connection is (re)attempted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    initial: Option<Duration>,
    max: Duration,
    jitter: bool,
}

impl Retry {
    /// One attempt only, and no reconnection after a loss (the original's negative delay).
    pub fn once() -> Self {
        Self {
            initial: None,
            max: Duration::ZERO,
            jitter: false,
        }
    }

    /// Retry every `delay`, for ever, and reconnect after a loss (the original's behaviour).
    pub fn every(delay: Duration) -> Self {
        Self {
            initial: Some(delay),
            max: delay,
            jitter: false,
        }
    }

    /// Retry with exponential backoff from `initial` up to `max`, with full jitter, so that
    /// many clients losing the same server do not reconnect in lock-step.
    pub fn backoff(initial: Duration, max: Duration) -> Self {
        Self {
            initial: Some(initial),
            max: max.max(initial),
            jitter: true,
        }
    }

    /// The original's `retry` argument in seconds: negative for a single attempt.
    pub fn from_seconds(seconds: f64) -> Self {
        if seconds < 0.0 || !seconds.is_finite() {
            Self::once()
        } else {
            // Beyond Duration's range means "practically never", not a panic.
            Self::every(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
        }
    }

    /// Whether a failed or lost connection is tried again.
    pub fn retries(&self) -> bool {
        self.initial.is_some()
    }

    /// The delay before attempt number `failures + 1`.
    pub fn delay(&self, failures: u32) -> Duration {
        let Some(initial) = self.initial else {
            return Duration::ZERO;
        };
        // A zero delay would spin; the original retried "immediately", which we read as
        // "as soon as reasonable".
        let initial = initial.max(Duration::from_millis(10));
        if !self.jitter {
            return initial;
        }
        let exp = initial.saturating_mul(1u32 << failures.min(16));
        let cap = exp.min(self.max);
        let fraction = (random_u64() % 10_000) as f64 / 10_000.0;
        cap.mul_f64(0.5 + fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policies() {
        assert!(!Retry::once().retries());
        assert!(!Retry::from_seconds(-1.0).retries());
        assert_eq!(
            Retry::every(Duration::from_secs(5)).delay(7),
            Duration::from_secs(5)
        );
        let b = Retry::backoff(Duration::from_millis(100), Duration::from_secs(2));
        for failures in 0..20 {
            let d = b.delay(failures);
            let cap = Duration::from_millis(100)
                .saturating_mul(1 << failures.min(16))
                .min(Duration::from_secs(2));
            assert!(d >= cap / 2 && d <= cap, "{d:?} vs {cap:?}");
        }
    }
}
