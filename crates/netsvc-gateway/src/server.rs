//! The HTTP side: one axum router in front of one [`Runtime`]. The runtime owns all state
//! (registry, requests in flight); the gateway keeps only its configuration, so every
//! request is independent and ends in a response: a result, a failure, or the request
//! timeout's 47.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use futures_util::stream::{self, Stream};
use netsvc::value::Limits;
use netsvc::{
    Announcement, AnnouncementKind, Binding, Exchange, Failure, Location, RecvError, RegistryWatch,
    Runtime, Target, Value,
};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;

use crate::codec::jsonrpc::{self, ServiceBody, V2Body, V2Entry};
use crate::codec::{Fault, XmlLimits, netrpc, xmlrpc};
use crate::limits::Limited;
use crate::logins::{Asked, Logins, Peer, RemoteHub, UserDoor};
use crate::tls::TlsListener;
use crate::withdrawals::{Withdrawal, Withdrawals};
use crate::{dashboard, introspect, reports};
use netsvc::security::{ServerTls, TlsError};
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;

/// How a JSON-RPC 2.0 method names a service's `system.listMethods`.
const LIST_SUFFIX: &str = ".system.listMethods";

/// How long a stats snapshot serves every HTTP client that asks.
const STATS_FRESH: Duration = Duration::from_millis(250);

/// Which services the gateway exposes (the original's `RpcGateway(selection, type)`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Exposure {
    /// Every service the runtime's registry knows (the original's registry selection `"*"`).
    #[default]
    All,
    /// Only the services of this process (the original's registry selection `""`).
    Local,
    /// The members of one group (the original's `SERVICE_GROUP` selection).
    Group(String),
    /// One service name (the original's `SERVICE_NAME` selection).
    Name(String),
}

/// How the gateway behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Which services may be called.
    pub exposure: Exposure,
    /// How long a call may take before the caller gets failure 47 (the original waited
    /// forever).
    pub request_timeout: Duration,
    /// Largest request body accepted; a larger one is answered 413.
    pub max_body: usize,
    /// Bounds on XML-RPC and NET-RPC bodies.
    pub xml_limits: XmlLimits,
    /// Bounds on the values decoded from JSON bodies.
    pub value_limits: Limits,
    /// Serve HTTPS only, with this certificate (and client CA); `None`: plain HTTP.
    pub tls: Option<ServerTls>,
    /// The publisher services `POST /api/reports/SERVICE/SUBJECT` may publish from; the
    /// gateway hosts them (announced when the server starts).
    pub publishers: Vec<String>,
    /// Most HTTP connections open at once; past it new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection with nothing read or written for this long is closed. Keep it above
    /// the event streams' 15 s keep-alive and above the request timeout, or streams and
    /// slow calls would be cut too.
    pub idle_timeout: Duration,
    /// A request head (request line and headers) must be complete this long after its
    /// first byte, or the connection is closed: a client dripping a byte at a time cannot
    /// hold its connection. A connection merely idle between requests is left to
    /// [`idle_timeout`](Self::idle_timeout).
    pub header_read_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            exposure: Exposure::All,
            request_timeout: Duration::from_secs(60),
            max_body: 4 * 1024 * 1024,
            xml_limits: XmlLimits::DEFAULT,
            value_limits: Limits::DEFAULT,
            tls: None,
            publishers: Vec::new(),
            max_connections: 4096,
            idle_timeout: Duration::from_secs(120),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

impl GatewayConfig {
    /// Sets [`exposure`](Self::exposure).
    #[must_use]
    pub fn with_exposure(mut self, exposure: Exposure) -> Self {
        self.exposure = exposure;
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout).
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`max_connections`](Self::max_connections) and
    /// [`idle_timeout`](Self::idle_timeout).
    #[must_use]
    pub fn with_connection_limits(mut self, max_connections: usize, idle: Duration) -> Self {
        self.max_connections = max_connections;
        self.idle_timeout = idle;
        self
    }

    /// Sets [`header_read_timeout`](Self::header_read_timeout).
    #[must_use]
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Adds a publisher service to [`publishers`](Self::publishers).
    #[must_use]
    pub fn with_publisher(mut self, name: &str) -> Self {
        self.publishers.push(name.to_owned());
        self
    }

    /// Sets [`tls`](Self::tls): HTTPS only.
    #[must_use]
    pub fn with_tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets [`max_body`](Self::max_body).
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

/// Why the gateway could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// Binding or serving the HTTP port failed.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS settings could not be used.
    #[error("HTTPS: {0}")]
    Tls(#[from] TlsError),
    /// A publisher service of the configuration could not be made.
    #[error("publisher {0:?}: {1}")]
    Publisher(String, netsvc::Error),
    /// The system had no randomness for the logins' keys.
    #[error("no randomness for the logins")]
    Random,
}

/// An HTTP gateway in front of a runtime's services.
///
/// ```no_run
/// # async fn run() -> Result<(), netsvc_gateway::GatewayError> {
/// use netsvc_gateway::{Gateway, GatewayConfig};
/// let rt = netsvc::Runtime::new();
/// let gateway = Gateway::new(rt, GatewayConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// gateway.serve(listener, std::future::pending()).await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Gateway {
    state: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) rt: Runtime,
    config: GatewayConfig,
    /// The services the gateway itself hosts, for reports.
    hosted: std::sync::Mutex<reports::Hosted>,
    /// Recent withdrawals, for `/api/services`.
    withdrawals: Arc<Withdrawals>,
    /// The last stats snapshot and when it was taken: taking one holds the runtime's lock,
    /// so HTTP clients share one per [`STATS_FRESH`].
    stats: std::sync::Mutex<Option<(std::time::Instant, Arc<netsvc::stats::Stats>)>>,
    /// Where a served HTTPS listener takes its certificate for each new connection.
    tls_in_force: std::sync::Mutex<Option<watch::Sender<Arc<ServerConfig>>>>,
    /// With a hub's users: who each request is, and the doors that serve them. The state
    /// of the gateway itself then serves nothing but the logins and the page's files.
    logins: Option<Logins>,
    /// In the state of one user's door: that door, kept open while the state is used.
    door: Option<UserDoor>,
}

type Ctx = State<Arc<Shared>>;

impl Gateway {
    /// A gateway to `rt`'s services.
    pub fn new(rt: Runtime, config: GatewayConfig) -> Self {
        Self {
            state: Arc::new(Shared::new(rt, config, None, None)),
        }
    }

    /// A gateway that a hub with users serves itself (`rt` is the hub's runtime and
    /// `exchange` its server exchange, with
    /// [`users`](netsvc::ExchangeBuilder::users)): every request logs in to it, by
    /// `Authorization: Basic` or `Bearer` or the session cookie of `POST /api/login`, and
    /// is served through a [`Door`](netsvc::Door) of that user (or the users' anonymous
    /// permissions, if any, for a request with no login; else 401), so that the user's
    /// permissions apply to calls, the registry, report streams and publishing, and
    /// `/api/stats`, `/api/links` and `/metrics` show only its own door's link.
    /// Call [`users_reloaded`](Self::users_reloaded) after
    /// [`Exchange::set_users`](netsvc::Exchange::set_users). Serve it with
    /// [`serve`](Self::serve) or [`bind`](Self::bind): they tell each request its client's
    /// address (for the throttling, and for passwords over plain HTTP from loopback) and
    /// certificate; through [`router`](Self::router) in another server every request is
    /// taken as from `0.0.0.0` without a certificate, sharing one throttle.
    pub fn with_logins(rt: Runtime, exchange: Exchange, config: GatewayConfig) -> Self {
        Self {
            state: Arc::new(Shared::new(rt, config, Some(Logins::new(exchange)), None)),
        }
    }

    /// A gateway in a process of its own in front of the hub `hub`, with logins: each
    /// request's credentials (`Authorization: Basic` or `Bearer`, or the session of
    /// `POST /api/login`) log in a link of their own to the hub, which checks them and
    /// applies that user's permissions to everything the request does; a request without
    /// any gets a link without credentials (the hub's `[anonymous]` permissions, or 401).
    /// Links are kept per credential (at most 256, idle ones closed after 5 minutes); `rt`
    /// (the gateway's own runtime and login) serves no request.
    ///
    /// # Errors
    ///
    /// [`GatewayError::Random`] without randomness for the key that names the links.
    pub fn with_remote_logins(
        rt: Runtime,
        hub: RemoteHub,
        config: GatewayConfig,
    ) -> Result<Self, GatewayError> {
        let logins = Logins::remote(hub).ok_or(GatewayError::Random)?;
        Ok(Self {
            state: Arc::new(Shared::new(rt, config, Some(logins), None)),
        })
    }

    /// The hub's users were reloaded: the dashboard's sessions end, and each user's door
    /// is opened anew on its next request. Nothing without logins.
    pub fn users_reloaded(&self) {
        if let Some(logins) = &self.state.logins {
            logins.users_reloaded();
        }
    }

    /// The routes, to serve or to merge into a larger application. Served by another
    /// server, they have that server's connection limits and timeouts, not the
    /// configuration's (`max_connections`, `idle_timeout`, `header_read_timeout`).
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(dispatch)
            .with_state(Arc::clone(&self.state))
    }

    /// Serves HTTP/1.1 (keep-alive) on `listener`, over TLS if the configuration has
    /// [`tls`](GatewayConfig::tls), until `shutdown` completes, then lets the requests in
    /// progress finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        // With logins each user's door hosts the publishers it may provide, on first use.
        let publishers = match &self.state.logins {
            Some(_) => &[][..],
            None => &self.state.config.publishers[..],
        };
        for name in publishers {
            if let Some(Err(e)) = self.state.publisher(name) {
                return Err(GatewayError::Publisher(name.clone(), e));
            }
        }
        if self.state.logins.is_some() {
            sweep_logins(Arc::downgrade(&self.state));
        }
        let router = self.router();
        let (max, idle, head) = (
            self.state.config.max_connections,
            self.state.config.idle_timeout,
            self.state.config.header_read_timeout,
        );
        match &self.state.config.tls {
            Some(tls) => {
                let (in_force, config) = watch::channel(tls.rustls_config(&[b"http/1.1"])?);
                *self
                    .state
                    .tls_in_force
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(in_force);
                let listener = Limited::new(TlsListener::new(listener, config)?, max, idle);
                serve_http1(listener, router, shutdown, head).await;
            }
            None => {
                serve_http1(Limited::new(listener, max, idle), router, shutdown, head).await;
            }
        }
        Ok(())
    }

    /// Puts a new certificate (and client CA) in force for the HTTPS connections accepted
    /// from now on (certificate rotation; connections open now keep their sessions).
    /// Returns whether an HTTPS listener of this gateway took it.
    pub fn reload_tls(&self, tls: &ServerTls) -> Result<bool, GatewayError> {
        let config = tls.rustls_config(&[b"http/1.1"])?;
        let in_force = self
            .state
            .tls_in_force
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(match in_force.as_ref() {
            Some(sender) => sender.send(config).is_ok(),
            None => false,
        })
    }

    /// Binds `address` (for example `127.0.0.1:8080`) and returns the bound address and the
    /// future that serves it.
    pub async fn bind(
        self,
        address: &str,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(SocketAddr, Serving), GatewayError> {
        let listener = netsvc::exchange::bind_tcp(address).await?;
        let bound = listener.local_addr()?;
        Ok((bound, Box::pin(self.serve(listener, shutdown))))
    }
}

/// Every [`SWEEP_EVERY`], closes the doors no request has used lately and forgets expired
/// sessions, for as long as the gateway lives: without requests nothing else would.
fn sweep_logins(state: std::sync::Weak<Shared>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(state) = state.upgrade() else { return };
            if let Some(logins) = &state.logins {
                logins.sweep();
            }
        }
    });
}

/// How often idle doors and expired sessions are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Serves HTTP/1.1 on the connections of `listener` until `shutdown` completes, then lets
/// each finish the request it is serving and waits for them all, as `axum::serve` with
/// graceful shutdown does. `axum::serve` cannot set hyper's header-read timeout, hence this.
async fn serve_http1<L: Listener<Addr: Into<Peer>>>(
    mut listener: Limited<L>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    header_read_timeout: Duration,
) {
    // Tells the connections to finish; its closing says they all have.
    let (stop, stopping) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let timer = io.head_timer();
        // Each request knows its client: logins are throttled by its address, a password
        // is taken over plain HTTP only from this machine, and a client certificate's
        // names can log it in.
        let router = router.clone().layer(axum::Extension::<Peer>(peer.into()));
        let service = hyper_util::service::TowerToHyperService::new(router);
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(timer)
                .header_read_timeout(header_read_timeout);
            let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            // A client that hung up, timed out or spoke no HTTP: nothing to tell anyone.
            if let Err(e) = ended {
                tracing::debug!("HTTP connection ended: {e}");
            }
            drop(stopping);
        });
    }
    drop(listener);
    drop(stopping);
    let _ = stop.send(());
    stop.closed().await;
}

/// The future that serves a bound gateway, from [`Gateway::bind`].
pub type Serving = std::pin::Pin<Box<dyn Future<Output = Result<(), GatewayError>> + Send>>;

/// The dialect of a `/service`-style path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// By content type, as the original's `/service` mount.
    Auto,
    Json,
    XmlRpc,
}

async fn dispatch(State(state): Ctx, request: Request) -> Response {
    let Some(logins) = &state.logins else {
        return serve_request(state, request).await;
    };
    let path = request.uri().path();
    let is_post = request.method() == Method::POST;
    let is_get = request.method() == Method::GET || request.method() == Method::HEAD;
    // The page's files are the same for everyone; the page logs in for the rest.
    if is_get && let Some(file) = dashboard::file(path) {
        return file;
    }
    let asked = Asked::of(&request);
    match path {
        "/api/login" if is_post => return logins.login(&state, &asked).await,
        "/api/logout" if is_post => return logins.logout(&asked),
        _ => {}
    }
    match logins.state_for(&state, &asked).await {
        Ok(user_state) => serve_request(user_state, request).await,
        Err(refused) => refused,
    }
}

async fn serve_request(state: Arc<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let is_post = request.method() == Method::POST;
    let is_get = request.method() == Method::GET || request.method() == Method::HEAD;
    match path.as_str() {
        "/jsonrpc" if is_post => jsonrpc_v2(&state, request).await,
        "/api/services" if is_get => services(&state, request.uri().query()),
        "/api/events" if is_get => events(&state),
        "/api/stats" if is_get => introspect::stats(&state),
        "/api/links" if is_get => introspect::links(&state),
        "/api/subscriptions" if is_get => introspect::subscriptions(&state, request.uri().query()),
        "/api/reports" if is_get => reports::stream(&state, request.uri().query()),
        "/metrics" if is_get => introspect::prometheus(&state),
        "/jsonrpc" | "/api/services" | "/api/events" | "/api/stats" | "/api/links" | "/metrics" => {
            page(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed",
                "Method not supported here.",
            )
        }
        _ if is_get && let Some(file) = dashboard::file(&path) => file,
        _ if is_post && let Some(rest) = path.strip_prefix("/api/reports/") => {
            let query = request.uri().query().map(str::to_owned);
            let rest = rest.to_owned();
            match read_body(&state, request).await {
                Ok((_, body)) => reports::publish(&state, &rest, query.as_deref(), &body),
                Err(response) => response,
            }
        }
        _ if is_get && path.starts_with("/api/services/") && path.ends_with("/methods") => {
            let name = path
                .strip_prefix("/api/services/")
                .and_then(|rest| rest.strip_suffix("/methods"))
                .and_then(percent_decode);
            match name {
                Some(name) if !name.is_empty() => introspect::methods(&state, &name).await,
                _ => not_found(),
            }
        }
        _ => {
            let (dialect, rest) = if let Some(rest) = mount(&path, "/service") {
                (Dialect::Auto, rest)
            } else if let Some(rest) = mount(&path, "/json") {
                (Dialect::Json, rest)
            } else if let Some(rest) = mount(&path, "/xmlrpc") {
                (Dialect::XmlRpc, rest)
            } else {
                return page(
                    StatusCode::NOT_FOUND,
                    "404 Not Found",
                    "No server loaded to handle request.",
                );
            };
            if !is_post {
                return page(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "405 Method Not Allowed",
                    "Only POST method supported by servlet.",
                );
            }
            let name = percent_decode(rest);
            match name.as_deref() {
                Some(name) if !name.is_empty() && state.resolve(name).is_some() => {
                    service(&state, name.to_owned(), dialect, request).await
                }
                _ => not_found(),
            }
        }
    }
}

/// The path below `mount` (`""` for the mount itself), if `path` is under it.
fn mount<'p>(path: &'p str, mount: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(mount)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Shared {
    fn new(
        rt: Runtime,
        config: GatewayConfig,
        logins: Option<Logins>,
        door: Option<UserDoor>,
    ) -> Self {
        let withdrawals = Arc::new(Withdrawals::default());
        // With logins the hub's own registry is never shown: only each door's.
        if logins.is_none() {
            Withdrawals::follow(Arc::downgrade(&withdrawals), &rt);
        }
        Self {
            rt,
            config,
            hosted: std::sync::Mutex::default(),
            withdrawals,
            stats: std::sync::Mutex::new(None),
            tls_in_force: std::sync::Mutex::new(None),
            logins,
            door,
        }
    }

    /// The state that serves one user's requests through `door`: the door's runtime, what
    /// that user may see and do, with this gateway's configuration.
    pub(crate) fn for_door(&self, door: UserDoor) -> Self {
        Self::new(
            door.runtime().clone(),
            self.config.clone(),
            None,
            Some(door),
        )
    }

    pub(crate) fn door(&self) -> Option<&UserDoor> {
        self.door.as_ref()
    }

    pub(crate) fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// This process's stats, at most [`STATS_FRESH`] old.
    pub(crate) fn stats(&self) -> Arc<netsvc::stats::Stats> {
        let mut cached = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((taken, stats)) = cached.as_ref()
            && taken.elapsed() < STATS_FRESH
        {
            return stats.clone();
        }
        let stats = Arc::new(self.rt.stats());
        *cached = Some((std::time::Instant::now(), stats.clone()));
        stats
    }

    pub(crate) fn hosted(&self) -> std::sync::MutexGuard<'_, reports::Hosted> {
        self.hosted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where a call to the service `name` goes, if the gateway exposes such a service now.
    pub(crate) fn resolve(&self, name: &str) -> Option<Target> {
        let registry = self.rt.registry();
        match &self.config.exposure {
            Exposure::All => (!registry.lookup_name(name).is_empty()).then(|| Target::from(name)),
            Exposure::Name(only) => {
                (only == name && !registry.lookup_name(name).is_empty()).then(|| Target::from(name))
            }
            Exposure::Local => registry
                .lookup_name(name)
                .into_iter()
                .find(Binding::is_local)
                .map(Target::from),
            Exposure::Group(group) => registry
                .lookup_group(group)
                .into_iter()
                .find(|b| b.service_name() == name)
                .map(Target::from),
        }
    }

    /// Whether a withdrawn service of this name would have been listed: by name only, since
    /// its groups went with it.
    fn exposes_name(&self, name: &str) -> bool {
        match &self.config.exposure {
            Exposure::Name(only) => only == name,
            _ => true,
        }
    }

    /// Whether `binding` is listed and told of (`/api/services`, `/api/events`). netsvc's
    /// own services (names beginning `netsvc.`, such as a hub's `netsvc.exchange`) are
    /// callable but not listed, as `netsvc services` lists them only with `--all`.
    fn exposes(&self, binding: &Binding) -> bool {
        if binding.service_name().starts_with("netsvc.") {
            return false;
        }
        match &self.config.exposure {
            Exposure::All => true,
            Exposure::Name(only) => binding.service_name() == only,
            Exposure::Local => binding.is_local(),
            Exposure::Group(group) => self
                .rt
                .registry()
                .groups_of(binding.address())
                .iter()
                .any(|g| g == group),
        }
    }

    /// Calls `method` of the service `name`; every outcome is a value or a failure, within
    /// the request timeout.
    pub(crate) async fn call(
        &self,
        name: &str,
        method: &str,
        params: Vec<Value>,
    ) -> Result<Value, Fault> {
        let Some(target) = self.resolve(name) else {
            return Err(fault_of(Failure::service_unavailable(name)));
        };
        self.rt
            .endpoint(target)
            .call_with_timeout(method, params, Some(self.config.request_timeout))
            .await
            .map_err(fault_of)
    }
}

fn fault_of(failure: Failure) -> Fault {
    Fault {
        error: failure.error,
        description: failure.description,
        origin: failure.origin,
        details: failure.details,
    }
}

pub(crate) const SERVER: HeaderValue =
    HeaderValue::from_static(concat!("netsvc/", env!("CARGO_PKG_VERSION")));

pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response {
    let mut response = (status, body.into()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::SERVER, SERVER);
    response
}

/// The original's error page.
fn page(status: StatusCode, title: &str, text: &str) -> Response {
    reply(
        status,
        "text/html",
        format!(
            "<HTML>\n<HEAD>\n<TITLE>\n{title}\n</TITLE>\n</HEAD>\n<BODY>\n<H2>\n{title}\n</H2>\n{text}\n</BODY>\n</HTML>\n"
        ),
    )
}

pub(crate) fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "404 Not Found",
        "No such service available.",
    )
}

fn bad_request(text: &str) -> Response {
    page(StatusCode::BAD_REQUEST, "400 Bad Request", text)
}

/// Reads the whole body, at most `max_body` bytes: a larger one is answered 413.
async fn read_body(state: &Shared, request: Request) -> Result<(HeaderMap, Bytes), Response> {
    let limit = state.config.max_body;
    let too_large = || {
        page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413 Payload Too Large",
            "Request body too large.",
        )
    };
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok((parts.headers, bytes)),
        Err(e) => {
            let inner = e.into_inner();
            if inner
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(too_large())
            } else {
                Err(bad_request("Request body could not be read."))
            }
        }
    }
}

async fn service(state: &Shared, name: String, dialect: Dialect, request: Request) -> Response {
    let (headers, body) = match read_body(state, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The original chooses by an exact match on the whole Content-Type.
    let dialect = match (dialect, content_type) {
        (Dialect::Auto, "application/x-rpc") => {
            return net_rpc(state, &name, &headers, &body).await;
        }
        (Dialect::Auto, "text/xml") | (Dialect::XmlRpc, _) => Dialect::XmlRpc,
        _ => Dialect::Json,
    };
    if dialect == Dialect::XmlRpc {
        let text = match xmlrpc::decode_call(&body, state.config.xml_limits) {
            Ok(call) => match state.call(&name, &call.method, call.params).await {
                Ok(value) => xmlrpc::encode_response(&value),
                Err(fault) => xmlrpc::encode_fault(&fault),
            },
            Err(e) => xmlrpc::encode_fault(&Fault {
                details: e.to_string(),
                ..Fault::decoding(xmlrpc::ORIGIN)
            }),
        };
        return reply(StatusCode::OK, "text/xml", text);
    }
    match jsonrpc::decode_service_body(&body, &state.config.value_limits) {
        ServiceBody::Original { id, call } => {
            let text = match call {
                Ok(call) => match state.call(&name, &call.method, call.params).await {
                    Ok(value) => jsonrpc::encode_original_result(&id, &value),
                    Err(fault) => jsonrpc::encode_original_fault(&id, &fault),
                },
                Err(fault) => jsonrpc::encode_original_fault(&id, &fault),
            };
            reply(StatusCode::OK, "text/plain", text)
        }
        ServiceBody::V2(body) => v2_reply(state, body, Some(&name)).await,
    }
}

async fn net_rpc(state: &Shared, name: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let header = |key: &str| headers.get(key).and_then(|v| v.to_str().ok());
    if header("X-RPC-Content-Type") != Some("request") {
        return bad_request("Request headers invalid: X-RPC-Content-Type must be request.");
    }
    let Some(method) = header("X-RPC-Request-Method").filter(|m| !m.is_empty()) else {
        return bad_request("Request headers invalid: no X-RPC-Request-Method.");
    };
    let params = match netrpc::decode_params(body, state.config.xml_limits) {
        Ok(params) => params,
        Err(e) => return bad_request(&format!("Request body invalid: {e}.")),
    };
    let (kind, text) = match state.call(name, method, params).await {
        Ok(value) => ("response", netrpc::encode(&value)),
        Err(fault) => ("failure", netrpc::encode_failure(&fault)),
    };
    let mut response = reply(StatusCode::OK, "application/x-rpc", text);
    let headers = response.headers_mut();
    headers.insert("X-RPC-Version", HeaderValue::from_static("1.1"));
    headers.insert("X-RPC-Content-Type", HeaderValue::from_static(kind));
    response
}

async fn jsonrpc_v2(state: &Shared, request: Request) -> Response {
    let body = match read_body(state, request).await {
        Ok((_, body)) => body,
        Err(response) => return response,
    };
    v2_reply(
        state,
        jsonrpc::decode_v2(&body, &state.config.value_limits),
        None,
    )
    .await
}

/// Answers a JSON-RPC 2.0 body; `service` is the service of a `/service/NAME` path, `None`
/// on `/jsonrpc` (where the method is `SERVICE.METHOD`).
async fn v2_reply(state: &Shared, body: V2Body, service: Option<&str>) -> Response {
    let answer = match body {
        V2Body::ParseError => Some(jsonrpc::v2_error(
            Json::Null,
            jsonrpc::codes::PARSE_ERROR,
            "Parse error",
            None,
        )),
        V2Body::Single(entry) => v2_entry(state, entry, service).await,
        V2Body::Batch(entries) => {
            let answers = futures_util::future::join_all(
                entries
                    .into_iter()
                    .map(|entry| v2_entry(state, entry, service)),
            )
            .await;
            let answers: Vec<Json> = answers.into_iter().flatten().collect();
            (!answers.is_empty()).then_some(Json::Array(answers))
        }
    };
    match answer {
        Some(json) => reply(StatusCode::OK, "application/json", json.to_string()),
        // Only notifications: nothing to answer.
        None => reply(StatusCode::NO_CONTENT, "application/json", Body::empty()),
    }
}

async fn v2_entry(state: &Shared, entry: V2Entry, service: Option<&str>) -> Option<Json> {
    let (id, method, params) = match entry {
        V2Entry::Invalid { id, message } => {
            return Some(jsonrpc::v2_error(
                id,
                jsonrpc::codes::INVALID_REQUEST,
                "Invalid Request",
                Some(&Fault {
                    details: message,
                    ..Fault::decoding(jsonrpc::ORIGIN)
                }),
            ));
        }
        V2Entry::Call { id, method, params } => (id, method, params),
    };
    let (name, method) = match service {
        Some(name) => (name, method.as_str()),
        // `SERVICE.system.listMethods`: the method name has a dot of its own.
        None if method.len() > LIST_SUFFIX.len() && method.ends_with(LIST_SUFFIX) => (
            &method[..method.len() - LIST_SUFFIX.len()],
            netsvc::LIST_METHODS,
        ),
        None => match method.rsplit_once('.') {
            Some((name, method)) if !name.is_empty() && !method.is_empty() => (name, method),
            _ => {
                let fault = Fault {
                    details: format!("method {method:?} is not SERVICE.METHOD"),
                    ..fault_of(Failure::method_unavailable(&method))
                };
                return id.map(|id| jsonrpc::v2_failure(id, &fault));
            }
        },
    };
    let outcome = match params {
        Ok(params) => state.call(name, method, params).await,
        Err(details) => Err(Fault {
            details,
            ..Fault::decoding(jsonrpc::ORIGIN)
        }),
    };
    let id = id?;
    Some(match outcome {
        Ok(value) => jsonrpc::v2_result(id, &value),
        Err(fault) => jsonrpc::v2_failure(id, &fault),
    })
}

fn binding_json(state: &Shared, binding: &Binding) -> Json {
    json!({
        "name": binding.service_name(),
        "address": binding.address(),
        "audience": binding.audience().as_str(),
        "location": match binding.location() {
            Location::Local => "local",
            Location::Remote => "remote",
        },
        "process": binding.process_identity(),
        "agent": binding.agent_identity(),
        "groups": state.rt.registry().groups_of(binding.address()),
    })
}

/// The exposed services, each with the last withdrawal of its name if one is remembered;
/// with `?withdrawn=1`, the recent withdrawals (newest first) instead.
fn services(state: &Shared, query: Option<&str>) -> Response {
    let withdrawn = query.is_some_and(|q| q.split('&').any(|p| p == "withdrawn=1"));
    let list: Vec<Json> = if withdrawn {
        state
            .withdrawals
            .newest_first()
            .iter()
            .filter(|w| !w.name.starts_with("netsvc.") && state.exposes_name(&w.name))
            .map(Withdrawal::json)
            .collect()
    } else {
        state
            .rt
            .registry()
            .services()
            .iter()
            .filter(|b| state.exposes(b))
            .map(|b| {
                let mut json = binding_json(state, b);
                if let (Some(object), Some(last)) = (
                    json.as_object_mut(),
                    state.withdrawals.last_of(b.service_name()),
                ) {
                    object.insert("last_withdrawal".into(), last.json());
                }
                json
            })
            .collect()
    };
    reply(
        StatusCode::OK,
        "application/json",
        Json::Array(list).to_string(),
    )
}

fn announcement_json(state: &Shared, announcement: &Announcement) -> (&'static str, Json) {
    let mut data = binding_json(state, &announcement.binding);
    let kind = match &announcement.kind {
        AnnouncementKind::Available => "available",
        AnnouncementKind::Withdrawn(reason) => {
            if let Some(object) = data.as_object_mut() {
                object.insert("reason".into(), json!(reason.name()));
                object.insert("reason_text".into(), json!(reason.to_string()));
            }
            "withdrawn"
        }
        AnnouncementKind::GroupJoined(group) => {
            if let Some(object) = data.as_object_mut() {
                object.insert("group".into(), json!(&**group));
            }
            "joined"
        }
        AnnouncementKind::GroupLeft(group) => {
            if let Some(object) = data.as_object_mut() {
                object.insert("group".into(), json!(&**group));
            }
            "left"
        }
        _ => "other",
    };
    (kind, data)
}

/// One SSE client's stream: the registry watch's snapshot, a `synced` event, then every
/// change. The watch's queue is the only buffer between the runtime and the socket, and it
/// is bounded by the runtime: a client too slow to keep up is cut off there (the runtime
/// never waits for it), gets a `lagged` event and the stream ends; reconnecting gives a
/// fresh snapshot.
struct EventStream {
    state: Arc<Shared>,
    watch: RegistryWatch,
    /// The addresses this client has been told about and not yet told are gone: their
    /// later events are sent even when the service no longer passes the exposure check (a
    /// withdrawn service is in no group any more). Bounded by the registry's size.
    told: HashSet<String>,
    sequence: u64,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Snapshot,
    Live,
    Done,
}

impl EventStream {
    fn event(&mut self, name: &str, data: &Json) -> Event {
        self.sequence += 1;
        Event::default()
            .id(self.sequence.to_string())
            .event(name)
            .data(data.to_string())
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            let item = match self.phase {
                Phase::Done => return None,
                Phase::Snapshot => match self.watch.try_recv() {
                    Ok(Some(a)) => Ok(a),
                    Ok(None) => {
                        self.phase = Phase::Live;
                        let event = self.event("synced", &Json::Null);
                        return Some((Ok(event), self));
                    }
                    Err(e) => Err(e),
                },
                Phase::Live => self.watch.recv().await,
            };
            let event = match item {
                Ok(announcement) => {
                    let address = announcement.binding.address();
                    let withdrawn = matches!(announcement.kind, AnnouncementKind::Withdrawn(_));
                    let exposed = !withdrawn && self.state.exposes(&announcement.binding);
                    if !exposed && !self.told.contains(address) {
                        // Not for this gateway's clients: on with the next.
                        continue;
                    }
                    if withdrawn {
                        self.told.remove(address);
                    } else if exposed {
                        self.told.insert(address.to_owned());
                    }
                    let (kind, data) = announcement_json(&self.state, &announcement);
                    self.event(kind, &data)
                }
                Err(RecvError::Lagged) => {
                    self.phase = Phase::Done;
                    self.event(
                        "lagged",
                        &json!("fell behind; reconnect for a fresh snapshot"),
                    )
                }
                Err(RecvError::Closed) => {
                    self.phase = Phase::Done;
                    self.event("closed", &Json::Null)
                }
            };
            return Some((Ok(event), self));
        }
    }
}

fn events(state: &Arc<Shared>) -> Response {
    let start = EventStream {
        state: Arc::clone(state),
        watch: state.rt.registry().watch(),
        told: HashSet::new(),
        sequence: 0,
        phase: Phase::Snapshot,
    };
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(stream::unfold(start, EventStream::next));
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    response.headers_mut().insert(header::SERVER, SERVER);
    response
}
