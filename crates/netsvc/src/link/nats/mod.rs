//! A NATS cluster as the backbone between hubs (docs/SCALING.md, *Hubs on a NATS cluster*).
//!
//! Each hub joins the cluster with one NATS connection and runs an ordinary netsvc link to
//! every other hub of its exchange group over it: the native protocol unchanged (HELLO and
//! logins, path-vector routing, SYNCED, subscriptions and cached reports, CANCEL, 57 on a
//! lost link), carried as a byte stream in numbered NATS messages ([`carrier`]). So a NATS
//! cluster gives the mesh its clustering, failover and routes between data centres, and
//! netsvc keeps its own semantics on top.
//!
//! - **Presence.** Every hub publishes its process identity on `<prefix>.<group>.present`
//!   every [`NatsConfig::with_beacon`] interval; the hub whose identity sorts first in a pair dials the
//!   other, so that a pair has one link.
//! - **Opening a link.** The dialler subscribes to the link's inbound subject, then asks
//!   `<prefix>.<group>.open.<hub>` (NATS request/reply) with a fresh session; the hub
//!   subscribes to its own inbound subject before it answers, so no byte is published before
//!   its reader is there. Then both run the link as if over TCP, the dialler through the
//!   exchange's reconnecting connector, the other as an accepted connection (counted against
//!   `max_connections`; logins apply as on any port).
//! - **Losing a link.** A gap in a link's sequence (NATS dropped a slow consumer's messages,
//!   a connection moved to another node) ends it, as does silence beyond the link's
//!   heartbeat limit (a hub killed): its services are withdrawn as connection-lost, and the
//!   dialler opens a new session. A peer absent from presence for
//!   [`ABSENT_BEACONS`] beacons is no longer dialled.

pub(crate) mod carrier;
mod pump;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use parking_lot::Mutex;
use tokio::io::DuplexStream;

use self::carrier::Subjects;
use super::auth::Transport;
use super::error::ExchangeError;
use super::shared::{ExchangeShared, stopped};
use super::{Endpoints, run};

/// Bytes buffered in each direction between a link task and its pump.
const BUFFER: usize = 256 * 1024;

/// Beacons a peer may miss before it is no longer dialled.
pub const ABSENT_BEACONS: u32 = 5;

/// Beacons after which a silent peer that is no longer dialled is forgotten.
const FORGET_BEACONS: u32 = 60;

/// The largest message a link sends, below the cluster's `max_payload`: larger messages
/// only delay the small frames queued behind them on the other hub.
const MAX_CHUNK: usize = 256 * 1024;

/// How a hub joins a NATS cluster.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    urls: Vec<String>,
    prefix: String,
    beacon: Duration,
    credentials: Option<NatsCredentials>,
}

#[derive(Debug, Clone)]
enum NatsCredentials {
    UserPassword(String, String),
    Token(String),
}

impl NatsConfig {
    /// The cluster's URLs (`nats://HOST:PORT`; several for failover, any one suffices to
    /// join; `nats://USER:PASSWORD@HOST:PORT` logs in too).
    pub fn new<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            prefix: "netsvc".to_owned(),
            beacon: Duration::from_secs(1),
            credentials: None,
        }
    }

    /// The first token of every subject this hub uses (default `netsvc`): exchanges that
    /// share a cluster but must not see each other use different prefixes, and a NATS
    /// account's permissions can confine a hub to its own.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often the hub says it is there (default 1 s); a peer silent for
    /// [`ABSENT_BEACONS`] of them is no longer dialled.
    pub fn with_beacon(mut self, beacon: Duration) -> Self {
        self.beacon = beacon;
        self
    }

    /// Logs in to NATS with a user and password.
    pub fn with_user_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some(NatsCredentials::UserPassword(user.into(), password.into()));
        self
    }

    /// Logs in to NATS with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = Some(NatsCredentials::Token(token.into()));
        self
    }

    /// The cluster's URLs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    fn check(&self) -> Result<(), ExchangeError> {
        let invalid = |why: &str| Err(ExchangeError::InvalidConfig(why.to_owned()));
        if self.urls.is_empty() {
            return invalid("no NATS URL to join");
        }
        if self.prefix.is_empty() {
            return invalid("an empty NATS subject prefix");
        }
        if self.beacon.is_zero() {
            return invalid("a zero NATS presence interval");
        }
        Ok(())
    }
}

/// This hub's place on a NATS cluster: made by
/// [`Exchange::join_nats`](crate::Exchange::join_nats); its tasks run until the exchange
/// stops.
#[derive(Debug, Clone)]
pub struct NatsBackbone {
    shared: Arc<Backbone>,
}

impl NatsBackbone {
    /// The other hubs of this exchange group present on the cluster now, sorted.
    pub fn peers(&self) -> Vec<String> {
        let mut peers: Vec<String> = self.shared.present().into_iter().collect();
        peers.sort();
        peers
    }

    /// Whether the NATS connection is up now (it reconnects on its own, to any node).
    pub fn is_connected(&self) -> bool {
        self.shared.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// What the backbone's tasks share.
#[derive(Debug)]
pub(crate) struct Backbone {
    client: async_nats::Client,
    subjects: Subjects,
    /// This hub's process identity.
    me: Arc<str>,
    beacon: Duration,
    /// Peers by when their last beacon came, and whether this hub dials them now.
    peers: Mutex<HashMap<Arc<str>, Peer>>,
    exchange: Weak<ExchangeShared>,
}

#[derive(Debug)]
struct Peer {
    seen: Instant,
    dialling: bool,
}

impl Backbone {
    fn present(&self) -> Vec<String> {
        let absent_after = self.beacon * ABSENT_BEACONS;
        self.peers
            .lock()
            .iter()
            .filter(|(_, p)| p.seen.elapsed() <= absent_after)
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// Records a beacon; true if this hub should start dialling the peer.
    fn seen(&self, peer: &str) -> bool {
        let mut peers = self.peers.lock();
        let entry = peers.entry(Arc::from(peer)).or_insert(Peer {
            seen: Instant::now(),
            dialling: false,
        });
        entry.seen = Instant::now();
        if entry.dialling || *self.me >= *peer {
            return false;
        }
        entry.dialling = true;
        true
    }

    /// Forgets the peers silent for [`FORGET_BEACONS`] beacons that this hub no longer
    /// dials: a hub restarted is a new identity (its pid), so the map would otherwise grow
    /// with every restart in the group's history.
    fn forget_long_gone(&self) {
        let forget_after = self.beacon * FORGET_BEACONS;
        self.peers
            .lock()
            .retain(|_, p| p.dialling || p.seen.elapsed() <= forget_after);
    }

    /// Whether `peer` is still worth dialling; if not, it is marked as no longer dialled
    /// (its next beacon starts a new connector).
    fn still_present(&self, peer: &str) -> bool {
        let mut peers = self.peers.lock();
        let Some(entry) = peers.get_mut(peer) else {
            return false;
        };
        if entry.seen.elapsed() <= self.beacon * ABSENT_BEACONS {
            return true;
        }
        entry.dialling = false;
        false
    }
}

/// What starts a connector toward a peer this hub should dial (the caller's: connectors
/// live above this module).
pub(crate) type Dial = Arc<dyn Fn(NatsPeer) + Send + Sync>;

/// Joins the cluster and starts the presence and accepting tasks; `dial` keeps a link to
/// each peer this hub should open one to.
pub(crate) async fn join(
    exchange: &Arc<ExchangeShared>,
    config: NatsConfig,
    dial: Dial,
) -> Result<NatsBackbone, ExchangeError> {
    config.check()?;
    let me = exchange.runtime.identity.clone();
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("netsvc hub {me}"))
        // A link is a heavy subscriber: a deep buffer before NATS calls it slow (and the
        // link is then lost, see the module's comment).
        .subscription_capacity(64 * 1024)
        .retry_on_initial_connect()
        .event_callback(backbone_events());
    match config.credentials.clone() {
        Some(NatsCredentials::UserPassword(user, password)) => {
            options = options.user_and_password(user, password);
        }
        Some(NatsCredentials::Token(token)) => options = options.token(token),
        None => {}
    }
    let client = options
        .connect(config.urls.as_slice())
        .await
        .map_err(|e| ExchangeError::Nats(format!("{}: {e}", config.urls.join(","))))?;
    let subjects = Subjects::new(&config.prefix, &exchange.group);
    let fail = |e: &dyn std::fmt::Display| ExchangeError::Nats(e.to_string());
    let presence = client
        .subscribe(subjects.presence())
        .await
        .map_err(|e| fail(&e))?;
    let opens = client
        .subscribe(subjects.open(&me))
        .await
        .map_err(|e| fail(&e))?;
    let shared = Arc::new(Backbone {
        client,
        subjects,
        me,
        beacon: config.beacon,
        peers: Mutex::new(HashMap::new()),
        exchange: Arc::downgrade(exchange),
    });
    tracing::info!(group = %exchange.group, "joining the NATS cluster at {}", config.urls.join(","));
    let handle = &exchange.runtime.handle;
    handle.spawn(presence_task(
        shared.clone(),
        exchange.clone(),
        presence,
        dial,
    ));
    handle.spawn(accept_task(shared.clone(), exchange.clone(), opens));
    Ok(NatsBackbone { shared })
}

/// What the NATS client reports, for the log: an operator should hear that the backbone is
/// away (the links over it end) and back, once per outage, not once per reconnection
/// attempt.
fn backbone_events() -> impl Fn(async_nats::Event) -> std::future::Ready<()> + Send + Sync + 'static
{
    let away = Arc::new(std::sync::atomic::AtomicBool::new(false));
    move |event| {
        use std::sync::atomic::Ordering::Relaxed;
        match event {
            async_nats::Event::Connected => {
                away.store(false, Relaxed);
                tracing::info!("NATS backbone: connected");
            }
            async_nats::Event::Disconnected | async_nats::Event::ClientError(_) => {
                if !away.swap(true, Relaxed) {
                    tracing::warn!("NATS backbone: {event}; reconnecting until it answers");
                }
            }
            other => tracing::warn!("NATS backbone: {other}"),
        }
        std::future::ready(())
    }
}

/// Says this hub is there at every beacon, and dials the peers it should.
async fn presence_task(
    backbone: Arc<Backbone>,
    exchange: Arc<ExchangeShared>,
    mut beacons: async_nats::Subscriber,
    dial: Dial,
) {
    let mut stop = exchange.stop.subscribe();
    let mut tick = tokio::time::interval(backbone.beacon);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let subject = backbone.subjects.presence();
    let me = Bytes::copy_from_slice(backbone.me.as_bytes());
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // While NATS is away the client buffers or refuses; the next beacon will do.
                let _ = backbone.client.publish(subject.clone(), me.clone()).await;
                backbone.forget_long_gone();
            }
            beacon = beacons.next() => {
                let Some(beacon) = beacon else { break };
                let Ok(peer) = std::str::from_utf8(&beacon.payload) else { continue };
                if peer.is_empty() || *peer == *backbone.me || !backbone.seen(peer) {
                    continue;
                }
                tracing::info!(%peer, "linking to a hub on the NATS cluster");
                dial(NatsPeer {
                    backbone: backbone.clone(),
                    peer: Arc::from(peer),
                });
            }
            _ = stopped(&mut stop) => break,
        }
    }
}

/// Accepts the links other hubs open to this one.
async fn accept_task(
    backbone: Arc<Backbone>,
    exchange: Arc<ExchangeShared>,
    mut opens: async_nats::Subscriber,
) {
    let mut stop = exchange.stop.subscribe();
    loop {
        let open = tokio::select! {
            open = opens.next() => open,
            _ = stopped(&mut stop) => break,
        };
        let Some(open) = open else { break };
        let Some(reply) = open.reply.clone() else {
            continue;
        };
        let Some((session, dialler)) = std::str::from_utf8(&open.payload)
            .ok()
            .and_then(|text| text.split_once('\n'))
        else {
            tracing::debug!("an OPEN on the NATS backbone that says nothing");
            continue;
        };
        let answer = match accept(&backbone, &exchange, session, dialler).await {
            Ok(()) => Bytes::from_static(b"ok"),
            Err(why) => {
                tracing::info!(peer = %dialler, "link from the NATS backbone refused: {why}");
                Bytes::from(why)
            }
        };
        let _ = backbone.client.publish(reply, answer).await;
    }
}

/// Starts this hub's side of a link `dialler` opens: its inbound subscription first, then
/// the link task, as an accepted connection.
async fn accept(
    backbone: &Arc<Backbone>,
    exchange: &Arc<ExchangeShared>,
    session: &str,
    dialler: &str,
) -> Result<(), String> {
    let permit = exchange
        .admission
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            format!(
                "too many connections (limit {})",
                exchange.config.max_connections
            )
        })?;
    let inbound = backbone
        .client
        .subscribe(backbone.subjects.link(session, true))
        .await
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    let (link_end, pump_end) = tokio::io::duplex(BUFFER);
    pump::spawn(
        &exchange.runtime.handle,
        backbone.client.clone(),
        pump_end,
        backbone.subjects.link(session, false),
        inbound,
        chunk(&backbone.client),
    );
    let endpoints = Endpoints::accepted(
        format!("nats:{dialler}"),
        "nats".to_owned(),
        Transport::default(),
    );
    let exchange = exchange.clone();
    let handle = exchange.runtime.handle.clone();
    // Not through the `authorise` hook: it decides by network address, and a hub on the
    // cluster has none; the NATS account and the link's login decide (SECURITY.md).
    handle.spawn(async move {
        let _permit = permit;
        run(link_end, &exchange, endpoints).await;
    });
    Ok(())
}

/// The message size for this cluster.
fn chunk(client: &async_nats::Client) -> usize {
    client
        .server_info()
        .max_payload
        .saturating_sub(carrier::HEADER + 64)
        .clamp(1024, MAX_CHUNK)
}

/// A hub on the cluster that this hub dials.
#[derive(Debug, Clone)]
pub(crate) struct NatsPeer {
    backbone: Arc<Backbone>,
    peer: Arc<str>,
}

/// What became of an attempt to open a link to a [`NatsPeer`].
pub(crate) enum Opened {
    /// The link's stream, this hub's end.
    Stream(DuplexStream),
    /// The peer did not take it (absent, refused, NATS unreachable).
    Failed(std::io::Error),
    /// The peer has left the cluster: stop dialling it.
    Gone,
}

impl NatsPeer {
    /// Opens a link to the peer within `limit`.
    pub(crate) async fn open(&self, limit: Duration) -> Opened {
        let backbone = &self.backbone;
        if !backbone.still_present(&self.peer) {
            return Opened::Gone;
        }
        let Some(exchange) = backbone.exchange.upgrade() else {
            return Opened::Gone;
        };
        let session = format!("{:016x}", crate::core::shared::random_u64());
        let failed = |kind, why: String| Opened::Failed(std::io::Error::new(kind, why));
        let inbound = match backbone
            .client
            .subscribe(backbone.subjects.link(&session, false))
            .await
        {
            Ok(s) => s,
            Err(e) => return failed(std::io::ErrorKind::NotConnected, e.to_string()),
        };
        let request = backbone.client.request(
            backbone.subjects.open(&self.peer),
            Bytes::from(format!("{session}\n{}", backbone.me)),
        );
        let answer = match tokio::time::timeout(limit, request).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return failed(std::io::ErrorKind::ConnectionRefused, e.to_string()),
            Err(_) => {
                return failed(
                    std::io::ErrorKind::TimedOut,
                    "no answer to OPEN in time".to_owned(),
                );
            }
        };
        if &answer.payload[..] != b"ok" {
            let why = String::from_utf8_lossy(&answer.payload).into_owned();
            return failed(std::io::ErrorKind::ConnectionRefused, why);
        }
        let (link_end, pump_end) = tokio::io::duplex(BUFFER);
        pump::spawn(
            &exchange.runtime.handle,
            backbone.client.clone(),
            pump_end,
            backbone.subjects.link(&session, true),
            inbound,
            chunk(&backbone.client),
        );
        Opened::Stream(link_end)
    }
}

impl std::fmt::Display for NatsPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nats:{}", self.peer)
    }
}
