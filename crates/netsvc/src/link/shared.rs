//! What one exchange's tasks share: its settings, its stop signal, the connection limit, and
//! the links it has for the connection events it publishes.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use netsvc_proto::wire::Role;
use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore, watch};

use super::auth::Authenticator;
use super::config::ExchangeConfig;
use super::events::{ConnectionEvent, ConnectionState};
use super::users::Credentials;
use crate::core::queue::{EventReceiver, EventSender, event_queue};
use crate::core::shared::RuntimeShared;
use crate::model::collections::FastMap;
use crate::model::ids::LinkId;

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

/// The hook that decides, from a peer's address, whether to accept its connection.
pub(crate) type Authorise = Arc<dyn Fn(&PeerAddr) -> bool + Send + Sync>;

/// How this exchange proves who it is, and checks who its peers are.
#[derive(Default)]
pub(crate) struct Security {
    /// Sent in the HELLO of every connection this exchange makes.
    pub(crate) credentials: Option<Credentials>,
    /// Makes every TCP connection this exchange makes TLS.
    pub(crate) client_tls: Option<(super::tls::ClientTls, Arc<rustls::ClientConfig>)>,
    /// Checks the peers of the connections it accepts; `None` admits every peer.
    pub(crate) users: Option<Authenticator>,
    /// The settings of each TLS listener, replaced whole by a reload: a connection accepted
    /// afterwards gets the new certificate, one already up keeps its session.
    pub(crate) tls_listeners: Mutex<Vec<TlsSlot>>,
}

/// The TLS settings one listener accepts with now.
pub(crate) type TlsSlot = Arc<Mutex<Arc<rustls::ServerConfig>>>;

/// One exchange's shared half.
pub(crate) struct ExchangeShared {
    pub(crate) runtime: Arc<RuntimeShared>,
    pub(crate) role: Role,
    pub(crate) group: Arc<str>,
    pub(crate) config: ExchangeConfig,
    pub(crate) authorise: Option<Authorise>,
    pub(crate) security: Security,
    /// Set to true to stop listeners and connectors and close every link gracefully.
    pub(crate) stop: watch::Sender<bool>,
    /// One permit per accepted connection, from accept to the end of its link (the
    /// handshake included), so that half-open connections count against the limit too.
    pub(crate) admission: Arc<Semaphore>,
    /// Links that have something to write now (see `link::Writing`).
    pub(crate) writing: std::sync::atomic::AtomicUsize,
    state: Mutex<ExchangeState>,
    /// Notified whenever a link or a listener ends.
    idle: Notify,
}

#[derive(Default)]
struct ExchangeState {
    /// Active links, as their Active event.
    links: FastMap<LinkId, ConnectionEvent>,
    watchers: Vec<EventSender<ConnectionEvent>>,
    /// Listeners still accepting (they end once the stop signal is given).
    listeners: usize,
}

impl fmt::Debug for ExchangeShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("role", &self.role)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl ExchangeShared {
    pub(crate) fn new(
        runtime: Arc<RuntimeShared>,
        role: Role,
        group: Arc<str>,
        config: ExchangeConfig,
        authorise: Option<Authorise>,
        security: Security,
    ) -> Self {
        let admission = Arc::new(Semaphore::new(
            config.max_connections.min(Semaphore::MAX_PERMITS),
        ));
        Self {
            runtime,
            role,
            group,
            config,
            authorise,
            security,
            stop: watch::channel(false).0,
            admission,
            writing: std::sync::atomic::AtomicUsize::new(0),
            state: Mutex::default(),
            idle: Notify::new(),
        }
    }

    /// Whether the exchange has been told to stop.
    pub(crate) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Records a link's new state and tells the watchers.
    pub(crate) fn announce(&self, link: LinkId, event: ConnectionEvent) {
        let mut state = self.state.lock();
        match event.state {
            ConnectionState::Active => {
                state.links.insert(link, event.clone());
            }
            ConnectionState::Inactive => {
                state.links.remove(&link);
            }
            _ => {}
        }
        state.watchers.retain(|w| w.send(event.clone()));
        drop(state);
        if event.state == ConnectionState::Inactive {
            self.idle.notify_waiters();
        }
    }

    /// The Active event of a link that is up, with its state set to `state`.
    pub(crate) fn link_event(
        &self,
        link: LinkId,
        state: ConnectionState,
    ) -> Option<ConnectionEvent> {
        let mut event = self.state.lock().links.get(&link).cloned()?;
        event.state = state;
        Some(event)
    }

    /// A watch on the links: an Active event for each link up now, then every change.
    pub(crate) fn watch(&self) -> EventReceiver<ConnectionEvent> {
        let mut state = self.state.lock();
        let current: Vec<ConnectionEvent> = state.links.values().cloned().collect();
        let (tx, rx) = event_queue(self.runtime.config.announcement_capacity + current.len());
        for event in current {
            tx.send(event);
        }
        state.watchers.push(tx);
        rx
    }

    /// The links up now, as their Active events.
    pub(crate) fn connections(&self) -> Vec<ConnectionEvent> {
        self.state.lock().links.values().cloned().collect()
    }

    /// A listener starts accepting; it calls [`listener_ended`](Self::listener_ended) when
    /// it is done (and has cleaned up after itself).
    pub(crate) fn listener_started(&self) {
        self.state.lock().listeners += 1;
    }

    pub(crate) fn listener_ended(&self) {
        self.state.lock().listeners -= 1;
        self.idle.notify_waiters();
    }

    /// Waits (at most `grace`) until no link is up and no listener is accepting.
    pub(crate) async fn wait_idle(&self, grace: Duration) {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                {
                    let state = self.state.lock();
                    if state.links.is_empty() && state.listeners == 0 {
                        return;
                    }
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
    }
}

/// Completes once the exchange is told to stop (or is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}
