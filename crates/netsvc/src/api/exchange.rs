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
//! let link = client.connect(&address.to_string(), Retry::every(Duration::from_secs(5)))?;
//! link.synced_within(Duration::from_secs(10)).await?; // the hub's registry is here
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use netsvc_proto::names;
use netsvc_proto::wire::{CloseCode, Role};
use tokio::sync::watch;

use super::introspect;
use super::runtime::Runtime;
use super::service::Service;
use crate::core::queue::{EventReceiver, RecvError};
use crate::core::shared::RuntimeShared;
use crate::link::auth::{Authenticator, LoginStats};
use crate::link::config::{ExchangeConfig, Retry};
use crate::link::connector::{ConnectError, ConnectorStatus, LinkPhase};
use crate::link::dial::{self, DialAddress};
use crate::link::error::{ExchangeError, LinkFailure};
use crate::link::events::ConnectionEvent;
use crate::link::listen::{self, OwnSocket};
use crate::link::shared::{Authorise, ExchangeShared, PeerAddr, Security, TlsSlot};
use crate::link::tls::{ClientTls, ServerTls};
use crate::link::users::{Credentials, Users};

/// A watch on an exchange's links: the active links first, then every change.
///
/// Also a [`Stream`](futures_core::Stream) of `Result<ConnectionEvent, RecvError>`: it ends
/// when the exchange is gone, after an `Err(RecvError::Lagged)` if the watch fell behind.
#[derive(Debug)]
pub struct ConnectionWatch {
    rx: EventReceiver<ConnectionEvent>,
}

impl ConnectionWatch {
    /// The next event.
    pub async fn recv(&mut self) -> Result<ConnectionEvent, RecvError> {
        self.rx.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Result<Option<ConnectionEvent>, RecvError> {
        self.rx.try_recv()
    }
}

impl futures_core::Stream for ConnectionWatch {
    type Item = Result<ConnectionEvent, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_next_event(cx)
    }
}

/// Builds an [`Exchange`].
#[must_use = "an exchange exists only once built"]
pub struct ExchangeBuilder {
    runtime: Arc<RuntimeShared>,
    role: Role,
    group: String,
    config: ExchangeConfig,
    authorise: Option<Authorise>,
    users: Option<Users>,
    credentials: Option<Credentials>,
    client_tls: Option<ClientTls>,
    introspection: bool,
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

    /// The users that may link to this exchange, and what each may do (docs/SECURITY.md).
    /// Peers must then log in (see [`credentials`](Self::credentials)) unless
    /// [`Users::anonymous`] lets them in without; every frame from a peer is checked
    /// against its user's [`Permissions`](crate::security::Permissions).
    pub fn users(mut self, users: Users) -> Self {
        self.users = Some(users);
        self
    }

    /// The credentials this exchange logs in with on every connection it makes.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Makes every TCP connection this exchange makes TLS, trusting what `tls` says.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.client_tls = Some(tls);
        self
    }

    /// Whether a server exchange hosts the service [`INTROSPECTION_SERVICE`](crate::INTROSPECTION_SERVICE) (off by
    /// default in the library; `netsvc exchange` turns it on): remote tools then ask it for
    /// this process's links, stats and version. It is a service like any other: audience,
    /// exchange groups and permissions apply. A client exchange never hosts it.
    pub fn introspection(mut self, on: bool) -> Self {
        self.introspection = on;
        self
    }

    /// Creates the exchange. A runtime has at most one exchange per group.
    pub fn build(self) -> Result<Exchange, ExchangeError> {
        if !self.group.is_empty() {
            names::check_group_name(&self.group)?;
        }
        self.config.check()?;
        if let Some(users) = &self.users {
            users.check().map_err(ExchangeError::InvalidConfig)?;
        }
        let client_tls = match self.client_tls {
            Some(tls) => {
                let config = tls
                    .config()
                    .map_err(|e| ExchangeError::InvalidConfig(e.to_string()))?;
                Some((tls, config))
            }
            None => None,
        };
        let security = Security {
            credentials: self.credentials,
            client_tls,
            users: self.users.map(Authenticator::new),
            tls_listeners: parking_lot::Mutex::default(),
        };
        let group: Arc<str> = self.group.as_str().into();
        if !self.runtime.exchange_groups.lock().insert(group.clone()) {
            return Err(ExchangeError::DuplicateGroup(self.group));
        }
        let introspection = if self.introspection && self.role == Role::Server {
            match introspect::host(&self.runtime, &self.group) {
                Ok(service) => Some(Arc::new(service)),
                Err(e) => {
                    self.runtime.exchange_groups.lock().remove(&group);
                    return Err(ExchangeError::InvalidConfig(format!(
                        "the introspection service: {e}"
                    )));
                }
            }
        } else {
            None
        };
        let shared = Arc::new(ExchangeShared::new(
            self.runtime,
            self.role,
            group,
            self.config,
            self.authorise,
            security,
        ));
        Ok(Exchange {
            _stop_on_drop: Arc::new(StopOnDrop(shared.clone())),
            _introspection: introspection,
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
    /// Withdrawn with the last clone.
    _introspection: Option<Arc<Service>>,
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
            users: None,
            credentials: None,
            client_tls: None,
            introspection: false,
        }
    }

    /// What this exchange's tasks share.
    pub(crate) fn shared(&self) -> &Arc<ExchangeShared> {
        &self.shared
    }

    /// The exchange group.
    pub fn group(&self) -> &str {
        &self.shared.group
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// Listens on a TCP address (`HOST:PORT`; port 0 picks a free port) and returns the
    /// address actually bound.
    pub async fn listen(&self, address: &str) -> Result<SocketAddr, ExchangeError> {
        self.listen_tcp(address, None).await
    }

    /// Listens on a TCP address for TLS connections only, with the certificate (and client
    /// CA) of `tls`; returns the address actually bound. A plaintext netsvc peer is told, in
    /// plaintext, that this port needs TLS (CLOSE 13).
    pub async fn listen_tls(
        &self,
        address: &str,
        tls: &ServerTls,
    ) -> Result<SocketAddr, ExchangeError> {
        let config = tls
            .config()
            .map_err(|e| ExchangeError::InvalidConfig(e.to_string()))?;
        let slot = Arc::new(parking_lot::Mutex::new(config));
        let bound = self.listen_tcp(address, Some(slot.clone())).await?;
        self.shared.security.tls_listeners.lock().push(slot);
        Ok(bound)
    }

    /// Puts a new certificate (and client CA) in force on every TLS listener of this
    /// exchange, for the connections accepted from now on (certificate rotation; links up
    /// now keep their sessions). Returns how many listeners took it.
    pub fn reload_tls(&self, tls: &ServerTls) -> Result<usize, ExchangeError> {
        let config = tls
            .config()
            .map_err(|e| ExchangeError::InvalidConfig(e.to_string()))?;
        let slots = self.shared.security.tls_listeners.lock();
        for slot in slots.iter() {
            *slot.lock() = config.clone();
        }
        Ok(slots.len())
    }

    async fn listen_tcp(
        &self,
        address: &str,
        tls: Option<TlsSlot>,
    ) -> Result<SocketAddr, ExchangeError> {
        self.check_listen()?;
        let failed = |source| ExchangeError::Listen {
            address: address.to_owned(),
            source,
        };
        let listener = listen::bind_tcp(address).await.map_err(failed)?;
        let bound = listener.local_addr().map_err(failed)?;
        let kind = if tls.is_some() { " (TLS)" } else { "" };
        tracing::info!(group = %self.shared.group, "exchange listening on {bound}{kind}");
        self.shared.listener_started();
        self.shared
            .runtime
            .handle
            .spawn(listen::accept_tcp(listener, self.shared.clone(), tls));
        Ok(bound)
    }

    /// Joins a NATS cluster as this hub's backbone to the other hubs of its exchange group
    /// there (docs/SCALING.md, *Hubs on a NATS cluster*): each pair of hubs gets a netsvc
    /// link carried by NATS, with everything a TCP link between them would carry. A server
    /// exchange only. Returns as soon as the settings are checked and the subscriptions
    /// queued: the connection to the cluster is made in the background, retried until the
    /// cluster answers and remade after any loss (hubs link once it is up); an unusable
    /// URL is an error here.
    #[cfg(feature = "nats")]
    pub async fn join_nats(
        &self,
        config: crate::link::nats::NatsConfig,
    ) -> Result<crate::link::nats::NatsBackbone, ExchangeError> {
        self.check_listen()?;
        // A peer is dialled like a `connect` address, with the default reconnect policy.
        // Weak: the connector must not keep the exchange from stopping.
        let exchange = Arc::downgrade(&self.shared);
        let dial: crate::link::nats::Dial = Arc::new(move |peer| {
            if let Some(exchange) = exchange.upgrade() {
                dial::spawn_connect(&exchange, DialAddress::Nats(peer), Retry::reconnect());
            }
        });
        crate::link::nats::join(&self.shared, config, dial).await
    }

    /// Puts new users in force (a configuration reload, say on SIGHUP): new links log in
    /// against them, and every link whose user is gone or whose permissions changed is
    /// closed, so that it logs in again under the new ones (a client reconnects on its
    /// own). Returns how many links were closed.
    pub fn set_users(&self, users: Users) -> Result<usize, ExchangeError> {
        users.check().map_err(ExchangeError::InvalidConfig)?;
        let Some(auth) = &self.shared.security.users else {
            return Err(ExchangeError::InvalidConfig(
                "this exchange was built without users; it cannot take them later".to_owned(),
            ));
        };
        auth.replace(users);
        let group = &self.shared.group;
        let closed = self.shared.runtime.core.lock().close_links(
            |info| {
                info.group == *group
                    && info.grants.as_ref().is_some_and(|granted| {
                        let user = (!granted.user.is_empty()).then_some(granted.user.as_str());
                        auth.current_grants(user, &info.peer).as_ref() != Some(&**granted)
                    })
            },
            CloseCode::NotAuthorised,
            "the permissions of this link's user changed",
        );
        if closed > 0 {
            tracing::info!(group = %group, "users reloaded: {closed} links closed to log in again");
        }
        Ok(closed)
    }

    /// What this exchange's logins did since it was built: password checks run, logins
    /// refused after a check, and logins refused unchecked (throttled). All zero without
    /// users.
    pub fn login_stats(&self) -> LoginStats {
        self.shared
            .security
            .users
            .as_ref()
            .map(Authenticator::stats)
            .unwrap_or_default()
    }

    /// Listens on a Unix socket at `path`. Nothing there is ever destroyed: a file that is
    /// not a socket is refused, and so is a socket that another process still listens on
    /// ("address in use"); only a stale socket, which nothing answers, is replaced. The
    /// socket is removed when the exchange stops, unless something else has taken its place.
    pub async fn listen_unix(&self, path: impl AsRef<Path>) -> Result<(), ExchangeError> {
        self.listen_unix_mode(path, None).await
    }

    /// Like [`listen_unix`](Self::listen_unix), and sets the socket's file mode (for
    /// example `0o660`: only its owner and group may connect). The socket is never
    /// reachable before it has its mode: it is bound in a private directory (mode 0700)
    /// next to `path`, given its mode there and only then linked to `path`. With users
    /// configured, a peer's Unix user id can log it in ([`User::uid`](crate::security::User)).
    pub async fn listen_unix_mode(
        &self,
        path: impl AsRef<Path>,
        mode: Option<u32>,
    ) -> Result<(), ExchangeError> {
        self.check_listen()?;
        let path = path.as_ref();
        let failed = |source| ExchangeError::Listen {
            address: path.display().to_string(),
            source,
        };
        let (listener, socket) = OwnSocket::bind(path, mode).await.map_err(failed)?;
        tracing::info!(group = %self.shared.group, "exchange listening on {}", path.display());
        self.shared.listener_started();
        self.shared.runtime.handle.spawn(listen::accept_unix(
            listener,
            socket,
            self.shared.clone(),
        ));
        Ok(())
    }

    fn check_listen(&self) -> Result<(), ExchangeError> {
        if self.shared.role != Role::Server {
            return Err(ExchangeError::NotAServer);
        }
        if self.shared.stopping() {
            return Err(ExchangeError::ShutDown);
        }
        Ok(())
    }

    /// Connects to a server at `HOST:PORT` or `unix:PATH`, in the background, retrying and
    /// reconnecting as `retry` says: with [`Retry::every`] or [`Retry::backoff`] for as long
    /// as the exchange exists, whether the server is there yet or not. A refused login is
    /// the exception: before the first link it stops the connector (retrying the same
    /// credentials would only get the address locked out); after it, it is retried at
    /// intervals doubling from 1 s to 60 s.
    ///
    /// Returns at once, with a [`Connector`] that tells how the connection stands and can
    /// wait until it is synced. Dropping the connector does not stop it.
    pub fn connect(&self, address: &str, retry: Retry) -> Result<Connector, ExchangeError> {
        if self.shared.stopping() {
            return Err(ExchangeError::ShutDown);
        }
        self.dial(DialAddress::parse(address)?, retry)
    }

    /// Starts the connector task toward `target`.
    pub(crate) fn dial(
        &self,
        target: DialAddress,
        retry: Retry,
    ) -> Result<Connector, ExchangeError> {
        if self.shared.stopping() {
            return Err(ExchangeError::ShutDown);
        }
        let address = target.to_string();
        let watch = dial::spawn_connect(&self.shared, target, retry);
        Ok(Connector {
            address: address.into(),
            status: watch,
        })
    }

    /// Watches this exchange's links: an [`Active`](crate::ConnectionState::Active) event
    /// for each link up now, then every change.
    pub fn watch_connections(&self) -> ConnectionWatch {
        ConnectionWatch {
            rx: self.shared.watch(),
        }
    }

    /// The links up now.
    pub fn connections(&self) -> Vec<ConnectionEvent> {
        self.shared.connections()
    }

    /// Stops listening and connecting, sends what is queued on every link followed by an
    /// orderly close, and waits (at most `grace`) for the links to end and the listeners to
    /// clean up (a Unix socket is removed by then).
    ///
    /// To leave cleanly, withdraw the services first ([`Runtime::shutdown`]) so that peers
    /// hear why they went.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.stop.send_replace(true);
        self.shared.wait_idle(grace).await;
    }
}

/// A client's connection to one server, kept up by the exchange as its [`Retry`] says:
/// where it stands, what its attempts came to, and a way to wait until it is usable.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use netsvc::{Exchange, Retry, Runtime};
/// use std::time::Duration;
///
/// let rt = Runtime::new();
/// let exchange = Exchange::client(&rt).build()?;
/// let link = exchange.connect("127.0.0.1:11111", Retry::every(Duration::from_secs(1)))?;
/// match link.synced_within(Duration::from_secs(5)).await {
///     Ok(()) => println!("linked; {} services visible", rt.registry().services().len()),
///     Err(e) => eprintln!("{e}"), // names the address and the cause
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Connector {
    address: Arc<str>,
    status: watch::Receiver<ConnectorStatus>,
}

impl Connector {
    /// The server's address, as given to [`Exchange::connect`].
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Where the connection stands now, with the count of attempts and the last failure.
    pub fn status(&self) -> ConnectorStatus {
        self.status.borrow().clone()
    }

    /// Whether a link is up and synced now.
    pub fn is_synced(&self) -> bool {
        self.status.borrow().phase == LinkPhase::Synced
    }

    /// Waits for the next change of status (an attempt begun or failed, a link up, synced
    /// or lost) and returns the new status.
    pub async fn changed(&mut self) -> ConnectorStatus {
        // The sender lives as long as the connector's task; once that has ended the status
        // says `Stopped` and never changes again.
        let _ = self.status.changed().await;
        self.status.borrow_and_update().clone()
    }

    /// Waits until a link is up and synced: the server's whole registry has arrived here
    /// and every report subscription through the link is in place, so that a lookup sees
    /// every service the server knows and a call to a missing one fails at once with 46.
    /// Returns at once if that is so now (for example again, after a reconnect).
    ///
    /// Waits as long as the connector keeps trying; fails only once it has stopped (a
    /// single-attempt [`Retry`] that failed, a login refused before any link was made, or
    /// the exchange shut down), with the cause.
    pub async fn synced(&self) -> Result<(), ConnectError> {
        let mut status = self.status.clone();
        let outcome = status
            .wait_for(|s| matches!(s.phase, LinkPhase::Synced | LinkPhase::Stopped))
            .await
            .map(|s| s.clone());
        match outcome {
            Ok(s) if s.phase == LinkPhase::Synced => Ok(()),
            Ok(s) => Err(self.error(None, s.last_failure, true)),
            Err(_) => Err(self.error(None, self.status().last_failure, true)),
        }
    }

    /// Like [`synced`](Self::synced), within `limit`. Also fails early, without waiting for
    /// the limit, when the last attempt failed for a reason that retrying cannot mend (see
    /// [`LinkFailure::is_final`](crate::LinkFailure::is_final): another group, another
    /// protocol, no TLS, a refused login).
    pub async fn synced_within(&self, limit: Duration) -> Result<(), ConnectError> {
        let mut status = self.status.clone();
        let wait = status.wait_for(|s| {
            matches!(s.phase, LinkPhase::Synced | LinkPhase::Stopped)
                || s.last_failure.as_ref().is_some_and(|f| f.is_final())
        });
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(s)) if s.phase == LinkPhase::Synced => Ok(()),
            Ok(Ok(s)) => {
                let stopped = s.phase == LinkPhase::Stopped;
                let cause = s.last_failure.clone();
                Err(self.error(None, cause, stopped))
            }
            Ok(Err(_)) => Err(self.error(None, self.status().last_failure, true)),
            Err(_) => Err(self.error(Some(limit), self.status().last_failure, false)),
        }
    }

    fn error(
        &self,
        waited: Option<Duration>,
        cause: Option<LinkFailure>,
        stopped: bool,
    ) -> ConnectError {
        ConnectError {
            address: self.address.to_string(),
            waited,
            cause,
            stopped,
            phase: self.status.borrow().phase,
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
