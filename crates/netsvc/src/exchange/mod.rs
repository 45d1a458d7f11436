//! The message exchange: links between processes, so that services everywhere are visible
//! and usable as if they were local.
//!
//! An [`Exchange`] belongs to one runtime and one exchange group. A **server** listens for
//! links (TCP or Unix socket) and, like a **client**, can connect to other servers; every
//! process relays between all its links, with loop-free path-vector routing, so servers can
//! form any mesh. A client keeps its connections up on its own: with a [`Retry`] policy it
//! retries until the server is there and reconnects after any loss, and everything it had
//! (services, groups, report subscriptions) is re-established without the application doing
//! anything.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use netsvc::{Exchange, Retry, Runtime};
//! use std::time::Duration;
//!
//! // The hub.
//! let hub_rt = Runtime::new();
//! let hub = Exchange::server(&hub_rt).build()?;
//! let address = hub.listen("127.0.0.1:11111").await?;
//!
//! // A client, in this or (usually) another process.
//! let rt = Runtime::new();
//! let client = Exchange::client(&rt).build()?;
//! client.connect(&address.to_string(), Retry::every(Duration::from_secs(5)))?;
//! # Ok(()) }
//! ```

mod link;
pub(crate) mod outbound;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use netsvc_proto::names::{self, NameError};
use netsvc_proto::wire::{self, Role};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::failure::{Failure, codes};
use crate::fast::FastMap;
use crate::queue::{EventReceiver, EventSender, RecvError, event_queue};
use crate::runtime::{Runtime, RuntimeShared};

pub use netsvc_proto::wire::Role as ExchangeRole;

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
    fn check(&self) -> Result<(), ExchangeError> {
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

    fn retries(&self) -> bool {
        self.initial.is_some()
    }

    /// The delay before attempt number `failures + 1`.
    fn delay(&self, failures: u32) -> Duration {
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
        let fraction = (jitter_seed() % 10_000) as f64 / 10_000.0;
        cap.mul_f64(0.5 + fraction / 2.0)
    }
}

/// A cheap source of randomness for jitter (no need for a cryptographic generator).
fn jitter_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The failure of a request that a congested link refused.
pub(crate) fn busy_failure() -> Failure {
    Failure::netsvc(
        codes::RESOURCE_UNAVAILABLE,
        "The exchange link toward the service is congested; the request was not sent.",
    )
}

/// An exchange could not be set up or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The group name is not acceptable.
    #[error(transparent)]
    InvalidGroup(#[from] NameError),
    /// This runtime already has an exchange for that group.
    #[error("this process already has an exchange for group {0:?}")]
    DuplicateGroup(String),
    /// An address could not be parsed.
    #[error("invalid exchange address {0:?}: expected HOST:PORT or unix:PATH")]
    InvalidAddress(String),
    /// Listening failed (for example: the port is in use).
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// Where.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// Only a server exchange listens.
    #[error("a client exchange cannot listen; build it with Exchange::server")]
    NotAServer,
    /// The exchange has been shut down.
    #[error("the exchange has been shut down")]
    ShutDown,
    /// A setting in [`ExchangeConfig`] cannot work (for example a zero heartbeat).
    #[error("invalid exchange configuration: {0}")]
    InvalidConfig(String),
}

/// The address of a peer, as the `authorise` hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A peer on a Unix socket (on the same machine).
    Unix,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix => f.write_str("unix"),
        }
    }
}

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
pub struct ConnectionEvent {
    /// The new state.
    pub state: ConnectionState,
    /// The exchange group.
    pub group: String,
    /// The peer's process identity.
    pub peer_process: String,
    /// The peer's role.
    pub peer_role: ExchangeRole,
    /// The peer's address.
    pub peer_address: String,
    /// Our end's address.
    pub local_address: String,
    /// Whether this process opened the connection.
    pub initiated_here: bool,
    /// For [`ConnectionState::Inactive`], why the link ended.
    pub reason: Option<String>,
}

/// A watch on an exchange's links: the active links first, then every change.
#[derive(Debug)]
pub struct ConnectionEvents {
    rx: EventReceiver<ConnectionEvent>,
}

impl ConnectionEvents {
    /// The next event.
    pub async fn recv(&mut self) -> Result<ConnectionEvent, RecvError> {
        self.rx.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Result<Option<ConnectionEvent>, RecvError> {
        self.rx.try_recv()
    }
}

type Authorise = Arc<dyn Fn(&PeerAddr) -> bool + Send + Sync>;

/// Builds an [`Exchange`].
#[must_use = "an exchange exists only once built"]
pub struct ExchangeBuilder {
    runtime: Arc<RuntimeShared>,
    role: Role,
    group: String,
    config: ExchangeConfig,
    authorise: Option<Authorise>,
}

impl fmt::Debug for ExchangeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeBuilder")
            .field("role", &self.role)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl ExchangeBuilder {
    /// The exchange group (default `""`). Services whose audience is a group name are only
    /// propagated through exchanges of that group.
    pub fn group(mut self, group: &str) -> Self {
        group.clone_into(&mut self.group);
        self
    }

    /// The settings.
    pub fn config(mut self, config: ExchangeConfig) -> Self {
        self.config = config;
        self
    }

    /// A hook that decides, from the peer's address, whether to accept a connection. A
    /// refused client sees a failed attempt (and retries, if it does).
    pub fn authorise(mut self, hook: impl Fn(&PeerAddr) -> bool + Send + Sync + 'static) -> Self {
        self.authorise = Some(Arc::new(hook));
        self
    }

    /// Creates the exchange. A runtime has at most one exchange per group.
    pub fn build(self) -> Result<Exchange, ExchangeError> {
        if !self.group.is_empty() {
            names::check_group_name(&self.group)?;
        }
        self.config.check()?;
        let group: Arc<str> = self.group.as_str().into();
        if !self.runtime.exchange_groups.lock().insert(group.clone()) {
            return Err(ExchangeError::DuplicateGroup(self.group));
        }
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(ExchangeShared {
            runtime: self.runtime,
            role: self.role,
            group,
            config: self.config,
            authorise: self.authorise,
            stop,
            state: Mutex::new(ExchangeState::default()),
            idle: Notify::new(),
        });
        Ok(Exchange {
            _stop_on_drop: Arc::new(StopOnDrop(shared.clone())),
            shared,
        })
    }
}

/// One process's exchange for one group. Cheap to clone; when the last clone is dropped
/// the exchange stops (without the graceful flush of [`Exchange::shutdown`]).
#[derive(Debug, Clone)]
pub struct Exchange {
    shared: Arc<ExchangeShared>,
    _stop_on_drop: Arc<StopOnDrop>,
}

impl Exchange {
    /// Starts building a server exchange: it listens for links and relays between them.
    pub fn server(runtime: &Runtime) -> ExchangeBuilder {
        Self::builder(runtime, Role::Server)
    }

    /// Starts building a client exchange: it connects to servers.
    pub fn client(runtime: &Runtime) -> ExchangeBuilder {
        Self::builder(runtime, Role::Client)
    }

    fn builder(runtime: &Runtime, role: Role) -> ExchangeBuilder {
        ExchangeBuilder {
            runtime: runtime.shared().clone(),
            role,
            group: String::new(),
            config: ExchangeConfig::default(),
            authorise: None,
        }
    }

    /// The exchange group.
    pub fn group(&self) -> &str {
        &self.shared.group
    }

    /// Client or server.
    pub fn role(&self) -> ExchangeRole {
        self.shared.role
    }

    /// Listens on a TCP address (`HOST:PORT`; port 0 picks a free port) and returns the
    /// address actually bound.
    pub async fn listen(&self, address: &str) -> Result<SocketAddr, ExchangeError> {
        self.check_listen()?;
        let listener =
            TcpListener::bind(address)
                .await
                .map_err(|source| ExchangeError::Listen {
                    address: address.to_owned(),
                    source,
                })?;
        let bound = listener
            .local_addr()
            .map_err(|source| ExchangeError::Listen {
                address: address.to_owned(),
                source,
            })?;
        tracing::info!(group = %self.shared.group, "exchange listening on {bound}");
        let shared = self.shared.clone();
        self.shared
            .runtime
            .handle
            .spawn(link::accept_tcp(listener, shared));
        Ok(bound)
    }

    /// Listens on a Unix socket path (an existing socket file there is replaced).
    pub async fn listen_unix(&self, path: impl Into<PathBuf>) -> Result<(), ExchangeError> {
        self.check_listen()?;
        let path = path.into();
        let _ = std::fs::remove_file(&path);
        let listener =
            tokio::net::UnixListener::bind(&path).map_err(|source| ExchangeError::Listen {
                address: path.display().to_string(),
                source,
            })?;
        tracing::info!(group = %self.shared.group, "exchange listening on {}", path.display());
        let shared = self.shared.clone();
        self.shared
            .runtime
            .handle
            .spawn(link::accept_unix(listener, path, shared));
        Ok(())
    }

    fn check_listen(&self) -> Result<(), ExchangeError> {
        if self.shared.role != Role::Server {
            return Err(ExchangeError::NotAServer);
        }
        if *self.shared.stop.borrow() {
            return Err(ExchangeError::ShutDown);
        }
        Ok(())
    }

    /// Connects to a server at `HOST:PORT` or `unix:PATH`, in the background, retrying and
    /// reconnecting as `retry` says. Returns at once; watch the connections (or the
    /// registry) to learn when the link is up.
    pub fn connect(&self, address: &str, retry: Retry) -> Result<(), ExchangeError> {
        if *self.shared.stop.borrow() {
            return Err(ExchangeError::ShutDown);
        }
        let target = Target::parse(address)?;
        let shared = self.shared.clone();
        self.shared
            .runtime
            .handle
            .spawn(link::connect_loop(target, retry, shared));
        Ok(())
    }

    /// Watches this exchange's links: an [`ConnectionState::Active`] event for each link up
    /// now, then every change.
    pub fn watch_connections(&self) -> ConnectionEvents {
        let mut state = self.shared.state.lock();
        let current: Vec<ConnectionEvent> = state.links.values().cloned().collect();
        let (tx, rx) =
            event_queue(self.shared.runtime.config.announcement_capacity + current.len());
        for event in current {
            tx.send(event);
        }
        state.watchers.push(tx);
        ConnectionEvents { rx }
    }

    /// The links up now.
    pub fn connections(&self) -> Vec<ConnectionEvent> {
        self.shared.state.lock().links.values().cloned().collect()
    }

    /// Stops listening and connecting, sends what is queued on every link followed by an
    /// orderly close, and waits (at most `grace`) for the links to end.
    ///
    /// To leave cleanly, withdraw the services first ([`Runtime::shutdown`]) so that peers
    /// hear why they went.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.stop.send_replace(true);
        let wait = async {
            loop {
                let idle = self.shared.idle.notified();
                if self.shared.state.lock().links.is_empty() {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
    }
}

/// Where a client connects.
#[derive(Debug, Clone)]
enum Target {
    Tcp(String),
    Unix(PathBuf),
}

impl Target {
    fn parse(address: &str) -> Result<Self, ExchangeError> {
        if let Some(path) = address.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ExchangeError::InvalidAddress(address.to_owned()));
            }
            return Ok(Self::Unix(path.into()));
        }
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(address.to_owned()))
            }
            _ => Err(ExchangeError::InvalidAddress(address.to_owned())),
        }
    }

    async fn connect(&self) -> std::io::Result<(link::Stream, String, String)> {
        match self {
            Self::Tcp(address) => {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                let peer = stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let local = stream
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                Ok((link::Stream::Tcp(stream), peer, local))
            }
            Self::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok((
                    link::Stream::Unix(stream),
                    format!("unix:{}", path.display()),
                    "unix".to_owned(),
                ))
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => f.write_str(a),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What the exchange's tasks share.
pub(crate) struct ExchangeShared {
    runtime: Arc<RuntimeShared>,
    role: Role,
    group: Arc<str>,
    config: ExchangeConfig,
    authorise: Option<Authorise>,
    /// Set to true to stop listeners and connectors and close every link gracefully.
    stop: watch::Sender<bool>,
    state: Mutex<ExchangeState>,
    /// Notified whenever a link ends.
    idle: Notify,
}

impl fmt::Debug for ExchangeShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("role", &self.role)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct ExchangeState {
    /// Active links by link id, as their Active event.
    links: FastMap<u64, ConnectionEvent>,
    outbounds: FastMap<u64, Arc<outbound::Outbound>>,
    watchers: Vec<EventSender<ConnectionEvent>>,
}

impl ExchangeShared {
    /// Records a new active link.
    fn register_link(&self, link: u64, outbound: Arc<outbound::Outbound>, event: ConnectionEvent) {
        self.state.lock().outbounds.insert(link, outbound);
        self.announce(link, event);
    }

    /// Closes a link at once (its task then ends it).
    fn close_link(&self, link: u64, code: wire::CloseCode, reason: &str) {
        if let Some(outbound) = self.state.lock().outbounds.get(&link) {
            outbound.close(code, reason, false);
        }
    }

    /// Records a link's new state and tells the watchers.
    fn announce(&self, link: u64, event: ConnectionEvent) {
        let mut state = self.state.lock();
        match event.state {
            ConnectionState::Active => {
                state.links.insert(link, event.clone());
            }
            ConnectionState::Inactive => {
                state.links.remove(&link);
                state.outbounds.remove(&link);
            }
            ConnectionState::Resynced => {}
        }
        state.watchers.retain(|w| w.send(event.clone()));
        drop(state);
        if event.state == ConnectionState::Inactive {
            self.idle.notify_waiters();
        }
    }
}

/// Stops the exchange when the last [`Exchange`] handle goes.
struct StopOnDrop(Arc<ExchangeShared>);

impl fmt::Debug for StopOnDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StopOnDrop")
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.send_replace(true);
        self.0.runtime.exchange_groups.lock().remove(&self.0.group);
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

    #[test]
    fn addresses_parse() {
        assert!(Target::parse("127.0.0.1:11111").is_ok());
        assert!(Target::parse("localhost:0").is_ok());
        assert!(Target::parse("unix:/tmp/x.sock").is_ok());
        for bad in ["", "nohost", ":1", "host:notaport", "unix:"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
