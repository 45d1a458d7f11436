//! Per-request logins, for a gateway that a hub with a users file serves itself
//! ([`Gateway::with_logins`](crate::Gateway::with_logins)): each request is authenticated
//! against the hub's users (`Authorization: Basic` or `Bearer`, or a session cookie from
//! `POST /api/login`), then served through a door of the hub for that user, so that the
//! user's permissions apply to everything it does exactly as on the native port
//! (docs/SECURITY.md, *Every door, every check*).
//!
//! A gateway in a process of its own ([`Gateway::with_remote_logins`](
//! crate::Gateway::with_remote_logins)) cannot check a password itself: it forwards each
//! request's credentials in a link of their own to the hub ([`RemoteHub`]), which checks
//! them and applies that user's permissions to everything done through the link. Such a
//! link is the request's "door"; it is kept for the next requests with the very same
//! credentials (keyed by an HMAC of them, never by the user name alone, so that a wrong
//! password never reaches a link that a right one opened).
//!
//! Two bounded tables: the doors, one per user (or per credential, remote) served lately
//! ([`MAX_DOORS`], idle ones dropped after [`DOOR_IDLE`]), and the dashboard's sessions
//! ([`MAX_SESSIONS`], each for [`SESSION_FOR`]). A users reload empties both.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use netsvc::security::{ClientTls, Credentials, LoginRefused, SecretTags};
use netsvc::{Connector, Door, Exchange, ExchangeConfig, LinkFailure, Retry, Runtime};
use serde_json::json;

use crate::server::{Shared, reply};

/// Doors kept at most, one per user (and one for anonymous), or with a remote hub one per
/// credential (and one without); past it the least recently used goes (a request still
/// using it keeps it open until it ends).
pub(crate) const MAX_DOORS: usize = 256;
/// A door no request has used for this long is closed.
pub(crate) const DOOR_IDLE: Duration = Duration::from_secs(300);
/// How long a new door may take to link to its hub.
const DOOR_READY: Duration = Duration::from_secs(10);
/// Dashboard sessions kept at most; past it the expired go, then the oldest.
pub(crate) const MAX_SESSIONS: usize = 1024;
/// How long a session lasts after its login.
pub(crate) const SESSION_FOR: Duration = Duration::from_secs(8 * 3600);
/// The session cookie's name.
const COOKIE: &str = "netsvc_session";
/// What a request without a login hears: it may log in with a password or a token.
/// (The dashboard asks without the Basic challenge, see [`challenge`], so that a browser
/// shows the page's own form rather than its password dialog.)
const CHALLENGE: &str = "Basic realm=\"netsvc\", Bearer realm=\"netsvc\"";

/// The client of a connection, put into each of its requests by the server: its address,
/// and over HTTPS the DNS names of its verified client certificate (none without a client
/// CA), which log in the user whose `certificate` is one of them.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) address: SocketAddr,
    pub(crate) certificate_names: Arc<[String]>,
}

impl From<SocketAddr> for Peer {
    fn from(address: SocketAddr) -> Self {
        Self {
            address,
            certificate_names: Arc::new([]),
        }
    }
}

/// What a login looks at in a request: its headers, and where it comes from.
#[derive(Debug)]
pub(crate) struct Asked {
    headers: HeaderMap,
    from: IpAddr,
    certificate_names: Arc<[String]>,
}

impl Asked {
    pub(crate) fn of(request: &Request) -> Self {
        Self {
            headers: request.headers().clone(),
            // Served by another server, without our [`Peer`]: as if from another machine.
            from: request
                .extensions()
                .get::<Peer>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.address.ip()),
            certificate_names: request.extensions().get::<Peer>().map_or_else(
                || Arc::new([]) as Arc<[String]>,
                |p| p.certificate_names.clone(),
            ),
        }
    }
}

/// One user's door, closed when the last request using it ends.
#[derive(Debug)]
pub(crate) enum UserDoor {
    /// A door of the hub of this process.
    InProcess(Door),
    /// A link of its own to a remote hub, logged in with one request's credentials; the
    /// exchange is kept so that the link lives as long as the door.
    Remote {
        runtime: Runtime,
        _exchange: Exchange,
        connector: Connector,
    },
}

impl UserDoor {
    pub(crate) fn runtime(&self) -> &Runtime {
        match self {
            Self::InProcess(door) => door.runtime(),
            Self::Remote { runtime, .. } => runtime,
        }
    }

    fn connector(&self) -> &Connector {
        match self {
            Self::InProcess(door) => door.connector(),
            Self::Remote { connector, .. } => connector,
        }
    }
}

impl Drop for UserDoor {
    fn drop(&mut self) {
        // Its services (publishers, the report subscriber) go, and the link with them (a
        // remote door's exchange stops when its last handle, this one, goes).
        self.runtime().shutdown();
    }
}

/// A hub in another process that a standalone gateway logs each request in to, with that
/// request's credentials: its address and group, and the TLS of the gateway's own link.
/// The library refuses to send a password in clear to a hub off loopback, so without
/// [`tls`](Self::tls) only tokens reach such a hub.
#[derive(Debug, Clone)]
pub struct RemoteHub {
    address: String,
    group: String,
    tls: Option<ClientTls>,
    retry: Duration,
    plaintext_passwords: bool,
}

impl RemoteHub {
    /// The hub at `address` (`HOST:PORT` or `unix:PATH`), the default group, without TLS,
    /// relinking a lost link every second.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            group: String::new(),
            tls: None,
            retry: Duration::from_secs(1),
            plaintext_passwords: false,
        }
    }

    /// The exchange group to join.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Links with TLS, as [`ExchangeBuilder::tls`](netsvc::ExchangeBuilder::tls).
    #[must_use]
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The delay before relinking a lost link.
    #[must_use]
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// Whether a password may come over plain HTTP from another machine (off by default:
    /// anyone on the way could read it). The hub's own rule still applies to the link.
    #[must_use]
    pub fn plaintext_passwords(mut self, allow: bool) -> Self {
        self.plaintext_passwords = allow;
        self
    }
}

/// What [`Logins`] logs requests in against.
#[derive(Debug)]
enum Hub {
    /// The server exchange of this process, with its users.
    InProcess(Exchange),
    /// A hub of another process, and the tags that name each credential's link.
    /// (Boxed: the key is large, and there is one `Hub` per gateway.)
    Remote(Box<(RemoteHub, SecretTags)>),
}

/// What a door is kept for: a user of the in-process hub (`None`: anonymous), or, remote,
/// one credential (its HMAC; `None`: no credentials).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DoorKey {
    User(Option<String>),
    Login(Option<[u8; 32]>),
}

#[derive(Debug)]
struct Session {
    key: DoorKey,
    until: Instant,
}

/// Each door's state, and when a request last used it.
type Doors = HashMap<DoorKey, (Arc<Shared>, Instant)>;

/// The logins of a gateway served by a hub with users, or logging in to a remote hub.
#[derive(Debug)]
pub(crate) struct Logins {
    hub: Hub,
    /// The door of each user (or credential) served lately, and when it was last used.
    doors: Mutex<Doors>,
    /// Sessions by the SHA-256 of their token (so that a lookup's timing says nothing of
    /// the token itself).
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    random: ring::rand::SystemRandom,
    /// Logins to a remote hub in progress (at most [`MAX_OPENING`]).
    opening: AtomicUsize,
}

impl Logins {
    pub(crate) fn new(exchange: Exchange) -> Self {
        Self {
            hub: Hub::InProcess(exchange),
            doors: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            random: ring::rand::SystemRandom::new(),
            opening: AtomicUsize::new(0),
        }
    }

    /// Logins forwarded to `hub`. `None` only without randomness for the tags' key.
    pub(crate) fn remote(hub: RemoteHub) -> Option<Self> {
        // A key of this process only: the table's keys say nothing of a credential to
        // anyone who does not have it, and nothing at all after a restart.
        let tags = SecretTags::new()?;
        Some(Self {
            hub: Hub::Remote(Box::new((hub, tags))),
            doors: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            random: ring::rand::SystemRandom::new(),
            opening: AtomicUsize::new(0),
        })
    }

    /// The users were reloaded: every session ends and every door is opened again on use
    /// (a request in progress keeps its own).
    pub(crate) fn users_reloaded(&self) {
        lock(&self.sessions).clear();
        lock(&self.doors).clear();
    }

    /// Closes the doors idle for [`DOOR_IDLE`] and forgets the expired sessions.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        // Dropped outside the lock: closing a door shuts its runtime down.
        let idle: Vec<_> = {
            let mut doors = lock(&self.doors);
            let gone: Vec<_> = doors
                .iter()
                .filter(|(_, (_, used))| now.duration_since(*used) >= DOOR_IDLE)
                .map(|(user, _)| user.clone())
                .collect();
            gone.iter().filter_map(|user| doors.remove(user)).collect()
        };
        drop(idle);
        lock(&self.sessions).retain(|_, s| s.until > now);
    }

    /// Who `request` logs in as: a session cookie, else its `Authorization`, else nobody
    /// (anonymous, if the users have `[anonymous]`). In process the hub checks the login
    /// here; remote, the credentials come back to log in the door's link with (`None` for
    /// a session: its link is open already, or the session is over). The response is the
    /// refusal.
    async fn who(
        &self,
        root: &Shared,
        asked: &Asked,
    ) -> Result<(DoorKey, Option<Credentials>), Response> {
        let headers = &asked.headers;
        if headers.get(header::AUTHORIZATION).is_none()
            && let Some(token) = cookie(headers)
        {
            if let Some(key) = self.session(token) {
                return Ok((key, None));
            }
            return Err(session_over(headers));
        }
        let credentials = credentials(headers)
            .map_err(|why| refused(headers, &LoginRefused::Failed(why.to_owned())))?;
        let tls = root.config().tls.is_some();
        match &self.hub {
            Hub::InProcess(exchange) => exchange
                .authenticate(
                    credentials.as_ref(),
                    asked.from,
                    tls,
                    &asked.certificate_names,
                )
                .await
                .map(|user| (DoorKey::User(user), None))
                .map_err(|refusal| refused(headers, &refusal)),
            Hub::Remote(remote) => {
                let (hub, key) = &**remote;
                // The same rule as the hub's for its own gateway: a password read by anyone
                // on the way is no login.
                if matches!(credentials, Some(Credentials::Password { .. }))
                    && !tls
                    && !asked.from.is_loopback()
                    && !hub.plaintext_passwords
                {
                    return Err(refused(
                        headers,
                        &LoginRefused::Failed(
                            "a password over plain HTTP from another machine is refused: \
                             use HTTPS or a token"
                                .to_owned(),
                        ),
                    ));
                }
                let tag = match &credentials {
                    Some(c) => Some(tag(key, c).ok_or_else(|| {
                        refused(
                            headers,
                            &LoginRefused::Failed("unsupported credentials".to_owned()),
                        )
                    })?),
                    None => None,
                };
                Ok((DoorKey::Login(tag), credentials))
            }
        }
    }

    /// The state that serves `request`: that of its user's door.
    pub(crate) async fn state_for(
        &self,
        root: &Shared,
        asked: &Asked,
    ) -> Result<Arc<Shared>, Response> {
        let (key, credentials) = self.who(root, asked).await?;
        self.door_state(root, &asked.headers, key, credentials)
            .await
    }

    async fn door_state(
        &self,
        root: &Shared,
        headers: &HeaderMap,
        key: DoorKey,
        credentials: Option<Credentials>,
    ) -> Result<Arc<Shared>, Response> {
        if let DoorKey::Login(_) = key {
            return self.remote_state(root, headers, key, credentials).await;
        }
        let state = {
            let mut doors = lock(&self.doors);
            let now = Instant::now();
            match doors.get_mut(&key) {
                Some((state, used)) => {
                    *used = now;
                    state.clone()
                }
                None => {
                    make_room(&mut doors, now);
                    let state = Arc::new(
                        root.for_door(
                            self.open(&key, credentials)
                                .map_err(|e| no_door(&key, &e))?,
                        ),
                    );
                    doors.insert(key.clone(), (state.clone(), now));
                    state
                }
            }
        };
        // The first request of a user waits for its door's registry, as a client of the
        // hub would; later ones find it synced at once.
        if let Some(door) = state.door()
            && door.connector().synced_within(DOOR_READY).await.is_err()
        {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway could not link for this user; try again",
            ));
        }
        Ok(state)
    }

    /// The state of a remote hub's link for `key`: the one kept, else a new one, kept only
    /// once the hub has taken its login and sent its registry. (So that credentials the
    /// hub refuses never push a good link out of the table, nor are ever served.)
    async fn remote_state(
        &self,
        root: &Shared,
        headers: &HeaderMap,
        key: DoorKey,
        credentials: Option<Credentials>,
    ) -> Result<Arc<Shared>, Response> {
        if let Some((state, used)) = lock(&self.doors).get_mut(&key) {
            *used = Instant::now();
            return Ok(state.clone());
        }
        // A session's link was closed (idle, or pushed out): its credentials are not
        // kept, so the session is over.
        if matches!(key, DoorKey::Login(Some(_))) && credentials.is_none() {
            return Err(session_over(headers));
        }
        // Each login in progress is a runtime and a connection to the hub: a bounded few.
        let Some(_opening) = Opening::start(&self.opening) else {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many logins in progress; try again",
            ));
        };
        let state = Arc::new(
            root.for_door(
                self.open(&key, credentials)
                    .map_err(|e| no_door(&key, &e))?,
            ),
        );
        // A refused login ends the wait at once (the library does not retry a refused
        // first login).
        if let Some(door) = state.door()
            && let Err(e) = door.connector().synced_within(DOOR_READY).await
        {
            return Err(match e.cause {
                Some(LinkFailure::NotAuthorised(why)) => {
                    // The hub's words, after the link's own: "too many ..." is its throttle.
                    let why = why
                        .strip_prefix("peer closed: ")
                        .unwrap_or(&why)
                        .strip_prefix("not authorised: ")
                        .unwrap_or(&why)
                        .to_owned();
                    let refusal = if why.starts_with("too many") {
                        LoginRefused::Throttled(why)
                    } else {
                        LoginRefused::Failed(why)
                    };
                    refused(headers, &refusal)
                }
                _ => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the gateway could not link to the hub for this request; try again",
                ),
            });
        }
        let mut doors = lock(&self.doors);
        let now = Instant::now();
        // Requests with the same credentials at once each opened a link: the first kept
        // stays, the others' go with their last request.
        if let Some((kept, used)) = doors.get_mut(&key) {
            *used = now;
            return Ok(kept.clone());
        }
        make_room(&mut doors, now);
        doors.insert(key, (state.clone(), now));
        Ok(state)
    }

    /// Opens the door of `key`: in process, the hub's door for the user; remote, a link of
    /// its own logged in with `credentials`.
    fn open(
        &self,
        key: &DoorKey,
        credentials: Option<Credentials>,
    ) -> Result<UserDoor, netsvc::ExchangeError> {
        match (&self.hub, key) {
            (Hub::InProcess(exchange), DoorKey::User(Some(name))) => {
                exchange.door(name).map(UserDoor::InProcess)
            }
            (Hub::InProcess(exchange), _) => exchange.anonymous_door().map(UserDoor::InProcess),
            (Hub::Remote(remote), _) => {
                let hub = &remote.0;
                let runtime = Runtime::with_config(netsvc::RuntimeConfig::default())
                    .map_err(|e| netsvc::ExchangeError::InvalidConfig(e.to_string()))?;
                let mut builder = Exchange::client(&runtime)
                    .group(&hub.group)
                    .config(ExchangeConfig::default());
                if let Some(tls) = &hub.tls {
                    builder = builder.tls(tls.clone());
                }
                if let Some(credentials) = credentials {
                    builder = builder.credentials(credentials);
                }
                let exchange = builder.build()?;
                let connector = exchange.connect(&hub.address, Retry::every(hub.retry))?;
                Ok(UserDoor::Remote {
                    runtime,
                    _exchange: exchange,
                    connector,
                })
            }
        }
    }

    fn session(&self, token: &str) -> Option<DoorKey> {
        let key = digest(token);
        let mut sessions = lock(&self.sessions);
        match sessions.get(&key) {
            Some(session) if session.until > Instant::now() => Some(session.key.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// `POST /api/login`: checks the request's `Authorization` and, if it logs in, starts a
    /// session whose cookie the browser sends with every later request (an `EventSource`
    /// cannot send an `Authorization`).
    pub(crate) async fn login(&self, root: &Shared, asked: &Asked) -> Response {
        if asked.headers.get(header::AUTHORIZATION).is_none() {
            return refused(&asked.headers, &LoginRefused::CredentialsRequired);
        }
        let (key, credentials) = match self.who(root, asked).await {
            Ok(who) => who,
            Err(response) => return response,
        };
        // The name to show: the in-process hub's answer, or the Basic one (a token's user
        // is the remote hub's to know).
        let user = match (&key, &credentials) {
            (DoorKey::User(user), _) => user.clone(),
            (DoorKey::Login(_), Some(Credentials::Password { user, .. })) => Some(user.clone()),
            (DoorKey::Login(_), _) => None,
        };
        // Remote, only the hub can tell whether the login is good: open its link now.
        if matches!(key, DoorKey::Login(_))
            && let Err(response) = self
                .door_state(root, &asked.headers, key.clone(), credentials)
                .await
        {
            return response;
        }
        let mut token = [0u8; 32];
        if ring::rand::SecureRandom::fill(&self.random, &mut token).is_err() {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no randomness for a session",
            );
        }
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
        {
            let mut sessions = lock(&self.sessions);
            let now = Instant::now();
            if sessions.len() >= MAX_SESSIONS {
                sessions.retain(|_, s| s.until > now);
            }
            if sessions.len() >= MAX_SESSIONS
                && let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.until)
                    .map(|(k, _)| *k)
            {
                sessions.remove(&oldest);
            }
            sessions.insert(
                digest(&token),
                Session {
                    key,
                    until: now + SESSION_FOR,
                },
            );
        }
        let secure = if root.config().tls.is_some() {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_FOR.as_secs()
        );
        let mut response = reply(
            StatusCode::OK,
            "application/json",
            json!({ "user": user }).to_string(),
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        response
    }

    /// `POST /api/logout`: ends the request's session, if any.
    pub(crate) fn logout(&self, asked: &Asked) -> Response {
        if let Some(token) = cookie(&asked.headers) {
            lock(&self.sessions).remove(&digest(token));
        }
        let mut response = reply(StatusCode::OK, "application/json", "{}");
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static(
                "netsvc_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
            ),
        );
        response
    }
}

/// The answer when no door could be opened for `key` (a user the hub no longer has, or a
/// runtime that could not be made).
fn no_door(key: &DoorKey, e: &netsvc::ExchangeError) -> Response {
    tracing::warn!(door = ?key, "HTTP: no door for the request: {e}");
    error(
        StatusCode::FORBIDDEN,
        "this user may not use the gateway now",
    )
}

/// Before a new door goes in: the idle ones go, then, at [`MAX_DOORS`], the least
/// recently used.
fn make_room(doors: &mut Doors, now: Instant) {
    doors.retain(|_, (_, used)| now.duration_since(*used) < DOOR_IDLE);
    if doors.len() >= MAX_DOORS
        && let Some(oldest) = doors
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(k, _)| k.clone())
    {
        doors.remove(&oldest);
    }
}

/// Logins to a remote hub in progress at most; past it a request is answered 503.
const MAX_OPENING: usize = 32;

/// One login in progress, counted in [`Logins::opening`] until dropped.
struct Opening<'a>(&'a AtomicUsize);

impl<'a> Opening<'a> {
    fn start(count: &'a AtomicUsize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_OPENING).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count))
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn digest(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// The tag of `credentials`: what names their link. The kind and the user's name are in
/// it too, so that no two credentials share a tag. `None` for a kind of credentials this
/// gateway does not know (it never parses one).
fn tag(tags: &SecretTags, credentials: &Credentials) -> Option<[u8; 32]> {
    Some(match credentials {
        Credentials::Password { user, password } => {
            tags.tag(&[b"P", user.as_bytes(), password.as_bytes()])
        }
        Credentials::Token(token) => tags.tag(&[b"T", token.as_bytes()]),
        _ => return None,
    })
}

/// The refusal of a session that is over (expired, logged out, or its link closed).
fn session_over(headers: &HeaderMap) -> Response {
    refused(
        headers,
        &LoginRefused::Failed("the session has ended; log in again".to_owned()),
    )
}

/// The session cookie's token, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|token| !token.is_empty())
}

/// The credentials of an `Authorization` header: `Basic` (user and password) or `Bearer`
/// (a token); `None` without one.
fn credentials(headers: &HeaderMap) -> Result<Option<Credentials>, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "unreadable Authorization header")?;
    let (scheme, rest) = value
        .split_once(' ')
        .ok_or("malformed Authorization header")?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(Some(Credentials::token(rest)));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| "malformed Basic credentials")?;
        let text = String::from_utf8(decoded).map_err(|_| "malformed Basic credentials")?;
        let (user, password) = text.split_once(':').ok_or("malformed Basic credentials")?;
        return Ok(Some(Credentials::password(user, password)));
    }
    Err("Authorization must be Basic or Bearer")
}

/// The challenge for a request: without the Basic one for the dashboard's own requests
/// (they say `X-Netsvc-Dashboard`), so that the browser leaves the login to the page.
fn challenge(headers: &HeaderMap) -> HeaderValue {
    if headers.contains_key("x-netsvc-dashboard") {
        HeaderValue::from_static("Bearer realm=\"netsvc\"")
    } else {
        HeaderValue::from_static(CHALLENGE)
    }
}

/// The answer to a refused login: 401 (with the challenge) for missing or wrong
/// credentials, 429 when throttled, 503 when busy; the reason as JSON.
fn refused(headers: &HeaderMap, refusal: &LoginRefused) -> Response {
    let status = match refusal {
        LoginRefused::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        LoginRefused::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut response = error(status, &refusal.to_string());
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge(headers));
    }
    response
}

fn error(status: StatusCode, text: &str) -> Response {
    reply(
        status,
        "application/json",
        json!({ "error": text }).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).expect("a header value"));
        }
        map
    }

    #[test]
    fn authorization_headers_parse_or_are_refused_without_a_panic() {
        let basic = |text: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            credentials(&headers(&[("authorization", &format!("Basic {encoded}"))]))
        };
        assert_eq!(
            basic("station:pw:with:colons"),
            Ok(Some(Credentials::password("station", "pw:with:colons")))
        );
        assert_eq!(
            basic("station:"),
            Ok(Some(Credentials::password("station", "")))
        );
        assert!(basic("no colon").is_err());
        assert_eq!(
            credentials(&headers(&[("authorization", "bearer tok-1")])),
            Ok(Some(Credentials::token("tok-1")))
        );
        assert_eq!(credentials(&headers(&[])), Ok(None));
        for bad in ["Basic", "Basic !!!", "Bearer ", "Digest x=1", "Basic //8="] {
            assert!(
                credentials(&headers(&[("authorization", bad)])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn each_credential_has_its_own_tag_and_no_other_key_makes_it() {
        let key = SecretTags::new().expect("a key");
        let tagged = |c: Credentials| tag(&key, &c).expect("a known kind");
        let right = tagged(Credentials::password("station", "pw"));
        assert_eq!(right, tagged(Credentials::password("station", "pw")));
        // A wrong password, another user, the same bytes split otherwise, a token with
        // the same text: each another link.
        for other in [
            Credentials::password("station", "pw2"),
            Credentials::password("admin", "pw"),
            Credentials::password("stationp", "w"),
            Credentials::token("stationpw"),
            Credentials::token("pw"),
        ] {
            assert_ne!(right, tagged(other));
        }
        let another = SecretTags::new().expect("a key");
        assert_ne!(
            Some(right),
            tag(&another, &Credentials::password("station", "pw"))
        );
    }

    #[test]
    fn logins_in_progress_are_bounded() {
        let count = AtomicUsize::new(0);
        let held: Vec<_> = (0..MAX_OPENING)
            .map(|_| Opening::start(&count).expect("room"))
            .collect();
        assert!(Opening::start(&count).is_none());
        drop(held);
        assert_eq!(count.load(Ordering::Acquire), 0);
        assert!(Opening::start(&count).is_some());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let map = headers(&[("cookie", "a=1; netsvc_session=tok; b=2")]);
        assert_eq!(cookie(&map), Some("tok"));
        let map = headers(&[("cookie", "a=1"), ("cookie", "netsvc_session=t2")]);
        assert_eq!(cookie(&map), Some("t2"));
        assert_eq!(cookie(&headers(&[("cookie", "netsvc_session=")])), None);
        assert_eq!(cookie(&headers(&[("cookie", "netsvc_sessionx=1")])), None);
    }
}
