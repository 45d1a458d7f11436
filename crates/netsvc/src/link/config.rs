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
///
/// [`Retry::default`] is [`Retry::reconnect`], the policy meant for clients of a hub that
/// may restart. [`Retry::every`] and [`Retry::from_seconds`] keep the original's meaning (a
/// fixed delay between failed attempts); [`Retry::backoff`] is exponential with equal jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    policy: Policy,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Policy {
    Once,
    Every(Duration),
    Backoff { initial: Duration, max: Duration },
    Reconnect,
}

/// [`Retry::reconnect`]: the longest delay between attempts while a link that was up is
/// being re-established. Clients are back at most this long after their hub is (plus their
/// handshake). Not shorter: with delays drawn in [`RELINK_LOW`]..=1 of it, a client attempts
/// on average every 0.875 × 500 ms, so a 100 ms window holds on average 23% of a crowd's
/// attempts, which leaves a margin under 30% for the randomness of a thousand clients (a
/// band from 0.6 gave 25% on average and 31% in the busiest window of a thousand).
const RELINK_CAP: Duration = Duration::from_millis(500);

/// [`Retry::reconnect`]: failed attempts at [`RELINK_CAP`] after a loss (about 9 s) before the
/// delays grow: a hub restart is over by then, and a hub gone for longer is not worth the
/// thousands of connection attempts per second a large fleet would make.
const RELINK_ATTEMPTS: u32 = 20;

/// [`Retry::reconnect`]: the longest delay once it has grown (after [`RELINK_ATTEMPTS`], or from
/// the start for a first connection that has never succeeded).
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// [`Retry::reconnect`]: each delay is drawn in `[RELINK_LOW × cap, cap]` (a narrower band than
/// equal jitter's `[cap/2, cap]`: the crowd is spread by its first delay, see
/// [`stationary_first`], so later delays need only keep it spread, and a higher floor
/// means fewer attempts for the same longest wait).
const RELINK_LOW: f64 = 0.75;

impl Default for Retry {
    /// [`Retry::reconnect`].
    fn default() -> Self {
        Self::reconnect()
    }
}

impl Retry {
    /// One attempt only, and no reconnection after a loss (the original's negative delay).
    pub fn once() -> Self {
        Self {
            policy: Policy::Once,
        }
    }

    /// Retry every `delay`, for ever, and reconnect after a loss (the original's behaviour).
    pub fn every(delay: Duration) -> Self {
        Self {
            policy: Policy::Every(delay),
        }
    }

    /// Retry with exponential backoff from `initial` up to `max`, with *equal* jitter: the
    /// delay before attempt `n + 1` is drawn uniformly in `[cap/2, cap]` where `cap` is
    /// `initial × 2^n`, at most `max`. Half of each delay is random, so that many clients
    /// losing the same server do not reconnect in lock-step; the other half keeps a client
    /// from retrying at once. Clients that lost their server together still cluster: for
    /// a crowd, prefer [`Retry::reconnect`].
    pub fn backoff(initial: Duration, max: Duration) -> Self {
        Self {
            policy: Policy::Backoff {
                initial,
                max: max.max(initial),
            },
        }
    }

    /// The library's default (also [`Retry::default`]): reconnect soon after a hub that
    /// restarts is back, without a crowd of clients arriving at once.
    ///
    /// - A link that was up and is lost (the hub is probably restarting) is attempted again
    ///   at most 500 ms apart, for the first 20 failed attempts (about 9 s); then the
    ///   longest delay doubles up to 5 s.
    /// - A first connection that has never succeeded (the hub is not there yet, or the
    ///   address is wrong) is attempted at once, then with delays whose longest doubles from
    ///   500 ms up to 5 s.
    /// - Each delay is drawn in `[0.75 × cap, cap]`, except the first after a loss or after
    ///   a failed first attempt, which is drawn from `[0, cap]` with the distribution that
    ///   makes a crowd of clients that failed at the same moment attempt at an even rate
    ///   from the start: any 100 ms holds on average 23% of the crowd's clients (at most 30% in
    ///   the library's own simulations of 1,000 and 10,000 clients), never all of them.
    ///
    /// So a client is back at most about 500 ms after its hub is (within the first 8 s of an
    /// outage), where a fixed backoff capped at a second leaves most clients asleep for up
    /// to another second.
    pub fn reconnect() -> Self {
        Self {
            policy: Policy::Reconnect,
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
        !matches!(self.policy, Policy::Once)
    }

    /// The delay before attempt number `failures + 1` of a connection that has never been
    /// up (for [`Retry::reconnect`]; the other policies do not tell the two apart).
    pub fn delay(&self, failures: u32) -> Duration {
        self.delay_with(failures, false, random_fraction())
    }

    /// The delay before the next attempt after `failures` failed attempts, counted since the
    /// link was lost if `relinking` (a link was up), else since the first attempt.
    pub(crate) fn next_delay(&self, failures: u32, relinking: bool) -> Duration {
        self.delay_with(failures, relinking, random_fraction())
    }

    /// [`Self::next_delay`] as a pure function of `fraction`, the random draw in `[0, 1)`, so
    /// that the spread of a crowd's attempts can be checked without randomness.
    fn delay_with(&self, failures: u32, relinking: bool, fraction: f64) -> Duration {
        // A zero delay would spin; the original retried "immediately", which we read as
        // "as soon as reasonable".
        const MIN: Duration = Duration::from_millis(10);
        let fraction = fraction.clamp(0.0, 1.0);
        match self.policy {
            Policy::Once => Duration::ZERO,
            Policy::Every(delay) => delay.max(MIN),
            Policy::Backoff { initial, max } => {
                let cap = initial
                    .max(MIN)
                    .saturating_mul(1u32 << failures.min(16))
                    .min(max.max(MIN));
                cap.mul_f64(0.5 + fraction / 2.0)
            }
            Policy::Reconnect => {
                let doublings = if relinking {
                    failures.saturating_sub(RELINK_ATTEMPTS - 1)
                } else {
                    failures
                };
                let cap = RELINK_CAP
                    .saturating_mul(1u32 << doublings.min(16))
                    .min(RECONNECT_MAX);
                // The first delay of a run of failures spreads a crowd that failed together
                // (lost its hub, or started before it); later ones only keep it spread.
                let delay = if failures == 0 {
                    stationary_first(cap, fraction)
                } else {
                    cap.mul_f64(RELINK_LOW + (1.0 - RELINK_LOW) * fraction)
                };
                delay.max(MIN)
            }
        }
    }
}

/// A random draw in `[0, 1)`.
fn random_fraction() -> f64 {
    // 53 bits: all an f64 holds.
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The first delay of a run of failures, for a `fraction` in `[0, 1]`: drawn from the *equilibrium*
/// distribution of delays uniform in `[a, b] = [RELINK_LOW × cap, cap]` (density `1/mean`
/// up to `a`, then falling linearly to 0 at `b`). Clients that all lost their hub at the
/// same instant and start so attempt at the constant rate of their steady state, `1/mean`,
/// from the first moment on: a uniform first delay would instead pile the first and second
/// attempts of different clients into the same stretch of time.
fn stationary_first(cap: Duration, fraction: f64) -> Duration {
    let b = cap.as_secs_f64();
    let a = RELINK_LOW * b;
    let mean = (a + b) / 2.0;
    let x = fraction * mean;
    let secs = if x <= a {
        x
    } else {
        // Solves (a + ((b-a)² - (b-s)²) / (2(b-a))) / mean = fraction for s in [a, b].
        let w = b - a;
        b - (w * w - 2.0 * w * (x - a)).max(0.0).sqrt()
    };
    Duration::from_secs_f64(secs.clamp(0.0, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policies() {
        assert!(!Retry::once().retries());
        assert!(!Retry::from_seconds(-1.0).retries());
        assert!(Retry::default().retries());
        assert_eq!(Retry::default(), Retry::reconnect());
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

    /// The original API's fixed delay is the delay between failed attempts, whatever the
    /// attempt and whether a link was up before.
    #[test]
    fn every_and_from_seconds_keep_the_fixed_delay() {
        for (retry, delay) in [
            (Retry::every(Duration::from_millis(250)), 250),
            (Retry::from_seconds(2.0), 2000),
            (Retry::from_seconds(0.0), 10),
        ] {
            for failures in [0, 1, 5, 19, 20, 100, u32::MAX] {
                for relinking in [false, true] {
                    for fraction in [0.0, 0.3, 0.999] {
                        assert_eq!(
                            retry.delay_with(failures, relinking, fraction),
                            Duration::from_millis(delay),
                            "{retry:?} {failures} {relinking} {fraction}"
                        );
                    }
                }
            }
        }
    }

    /// splitmix64: a seeded source of fractions, so that the simulations are the same on
    /// every run.
    struct Seeded(u64);

    impl Seeded {
        fn fraction(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// The attempts of `clients` clients whose links all failed at 0 ms (a hub killed, or
    /// a fleet started before its hub) and whose attempts all fail until `horizon_ms`:
    /// each attempt's time in ms, sorted. An attempt to a dead hub on loopback fails at
    /// once, so each client's next attempt comes one delay after its last.
    fn crowd(retry: Retry, clients: usize, relinking: bool, horizon_ms: f64) -> Vec<f64> {
        let mut random = Seeded(0x5EED_0026);
        let mut attempts = Vec::new();
        for _ in 0..clients {
            let (mut at, mut failures) = (0.0, 0u32);
            loop {
                let delay = retry.delay_with(failures, relinking, random.fraction());
                at += delay.as_secs_f64() * 1000.0;
                if at >= horizon_ms {
                    break;
                }
                attempts.push(at);
                failures += 1;
            }
        }
        attempts.sort_by(f64::total_cmp);
        attempts
    }

    /// The most attempts in any 100 ms window (they bound the clients attempting in it).
    fn busiest_100ms(attempts: &[f64]) -> usize {
        let mut start = 0;
        let mut most = 0;
        for (end, &t) in attempts.iter().enumerate() {
            while attempts[start] <= t - 100.0 {
                start += 1;
            }
            most = most.max(end + 1 - start);
        }
        most
    }

    /// The longest a client waits for its next attempt when the hub is back at `back_ms`.
    fn longest_wait(attempts_of: &[Vec<f64>], back_ms: f64) -> f64 {
        attempts_of
            .iter()
            .map(|a| {
                a.iter()
                    .find(|&&t| t >= back_ms)
                    .map_or(f64::INFINITY, |t| t - back_ms)
            })
            .fold(0.0, f64::max)
    }

    /// Per client, like [`crowd`], unsorted.
    fn per_client(retry: Retry, clients: usize, horizon_ms: f64) -> Vec<Vec<f64>> {
        let mut random = Seeded(0x5EED_0027);
        (0..clients)
            .map(|_| {
                let (mut at, mut failures, mut attempts) = (0.0, 0u32, Vec::new());
                while at < horizon_ms {
                    at += retry
                        .delay_with(failures, true, random.fraction())
                        .as_secs_f64()
                        * 1e3;
                    attempts.push(at);
                    failures += 1;
                }
                attempts
            })
            .collect()
    }

    /// A crowd of 1,000 or 10,000 clients that lost their hub together never has more than 30% of
    /// them attempting in one 100 ms window, through the short delays after the loss and
    /// the growth after them; nor does a crowd that started before its hub (after the
    /// first attempt, which the application makes when it starts).
    #[test]
    fn the_default_policy_spreads_a_crowd() {
        for clients in [1_000, 10_000] {
            for relinking in [true, false] {
                let attempts = crowd(Retry::default(), clients, relinking, 60_000.0);
                let busiest = busiest_100ms(&attempts);
                assert!(
                    busiest <= clients * 3 / 10,
                    "relinking {relinking}: {busiest} of {clients} clients attempt in 100 ms"
                );
            }
        }
        let clients = 10_000;
        let limit = clients * 3 / 10;
        // The check tells: the bench's former policy sends every client in the same 25 ms.
        let former = Retry::backoff(Duration::from_millis(50), Duration::from_secs(1));
        let busiest = busiest_100ms(&crowd(former, clients, true, 60_000.0));
        assert!(busiest > limit, "{busiest}");
    }

    /// Within the first 7 s of an outage (the short delays last at least 20 × 375 ms), a
    /// client is back at most 500 ms after its hub is, whenever the hub comes back; with the
    /// bench's former policy it could sleep for up to a second.
    #[test]
    fn the_default_policy_is_back_soon_after_the_hub() {
        let clients = 1_000;
        let attempts = per_client(Retry::default(), clients, 10_000.0);
        let former = Retry::backoff(Duration::from_millis(50), Duration::from_secs(1));
        let former_attempts = per_client(former, clients, 10_000.0);
        let mut former_worst: f64 = 0.0;
        for back in (0..=700).map(|step| f64::from(step) * 10.0) {
            let wait = longest_wait(&attempts, back);
            assert!(
                wait <= 500.0,
                "hub back at {back} ms: a client waits {wait} ms"
            );
            former_worst = former_worst.max(longest_wait(&former_attempts, back));
        }
        assert!(former_worst > 900.0, "{former_worst}");
        // Later the delays grow to 5 s and stay there.
        let late = Retry::default().delay_with(40, true, 1.0);
        assert_eq!(late, RECONNECT_MAX);
        assert_eq!(
            Retry::default().delay_with(3, false, 1.0),
            Duration::from_secs(4)
        );
    }

    /// The first delay's distribution covers `[0, cap]`, in order.
    #[test]
    fn the_first_delay_spans_zero_to_the_cap() {
        let cap = Duration::from_millis(500);
        assert_eq!(stationary_first(cap, 0.0), Duration::ZERO);
        let end = stationary_first(cap, 1.0);
        assert!(cap - end < Duration::from_micros(1), "{end:?}");
        let mut last = Duration::ZERO;
        for step in 0..=1000 {
            let d = stationary_first(cap, f64::from(step) / 1000.0);
            assert!(d >= last && d <= cap, "{step}: {d:?}");
            last = d;
        }
    }
}
