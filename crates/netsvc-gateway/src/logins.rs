//! Per-request logins, for a gateway that a hub with a users file serves itself
//! ([`Gateway::with_logins`](crate::Gateway::with_logins)): each request is authenticated
//! against the hub's users (`Authorization: Basic` or `Bearer`, or a session cookie from
//! `POST /api/login`), then served through a door of the hub for that user, so that the
//! user's permissions apply to everything it does exactly as on the native port
//! (docs/SECURITY.md, *Every door, every check*).
//!
//! Two bounded tables: the doors, one per user served lately ([`MAX_DOORS`], idle ones
//! dropped after [`DOOR_IDLE`]), and the dashboard's sessions ([`MAX_SESSIONS`], each for
//! [`SESSION_FOR`]). A users reload empties both.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use netsvc::security::{Credentials, LoginRefused};
use netsvc::{Door, Exchange};
use serde_json::json;

use crate::server::{Shared, reply};

/// Doors kept at most, one per user (and one for anonymous); past it the least recently
/// used goes (a request still using it keeps it open until it ends).
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
pub(crate) struct UserDoor(pub(crate) Door);

impl Drop for UserDoor {
    fn drop(&mut self) {
        // Its services (publishers, the report subscriber) go, and the link with them.
        self.0.runtime().shutdown();
    }
}

#[derive(Debug)]
struct Session {
    user: Option<String>,
    until: Instant,
}

/// Each user's door state (`None`: anonymous), and when a request last used it.
type Doors = HashMap<Option<String>, (Arc<Shared>, Instant)>;

/// The logins of a gateway served by a hub with users.
#[derive(Debug)]
pub(crate) struct Logins {
    exchange: Exchange,
    /// The door of each user served lately (`None`: anonymous), and when it was last used.
    doors: Mutex<Doors>,
    /// Sessions by the SHA-256 of their token (so that a lookup's timing says nothing of
    /// the token itself).
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    random: ring::rand::SystemRandom,
}

impl Logins {
    pub(crate) fn new(exchange: Exchange) -> Self {
        Self {
            exchange,
            doors: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            random: ring::rand::SystemRandom::new(),
        }
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
    /// (anonymous, if the users have `[anonymous]`). The response is the refusal.
    async fn user_of(&self, root: &Shared, asked: &Asked) -> Result<Option<String>, Response> {
        let headers = &asked.headers;
        if headers.get(header::AUTHORIZATION).is_none()
            && let Some(token) = cookie(headers)
        {
            if let Some(user) = self.session(token) {
                return Ok(user);
            }
            return Err(refused(
                headers,
                &LoginRefused::Failed("the session has ended; log in again".to_owned()),
            ));
        }
        let credentials = credentials(headers)
            .map_err(|why| refused(headers, &LoginRefused::Failed(why.to_owned())))?;
        let tls = root.config().tls.is_some();
        self.exchange
            .authenticate(
                credentials.as_ref(),
                asked.from,
                tls,
                &asked.certificate_names,
            )
            .await
            .map_err(|refusal| refused(headers, &refusal))
    }

    /// The state that serves `request`: that of its user's door.
    pub(crate) async fn state_for(
        &self,
        root: &Shared,
        asked: &Asked,
    ) -> Result<Arc<Shared>, Response> {
        let user = self.user_of(root, asked).await?;
        self.door_state(root, user).await
    }

    async fn door_state(
        &self,
        root: &Shared,
        user: Option<String>,
    ) -> Result<Arc<Shared>, Response> {
        let state = {
            let mut doors = lock(&self.doors);
            let now = Instant::now();
            match doors.get_mut(&user) {
                Some((state, used)) => {
                    *used = now;
                    state.clone()
                }
                None => {
                    doors.retain(|_, (_, used)| now.duration_since(*used) < DOOR_IDLE);
                    if doors.len() >= MAX_DOORS
                        && let Some(oldest) = doors
                            .iter()
                            .min_by_key(|(_, (_, used))| *used)
                            .map(|(k, _)| k.clone())
                    {
                        doors.remove(&oldest);
                    }
                    let door = match &user {
                        Some(name) => self.exchange.door(name),
                        None => self.exchange.anonymous_door(),
                    };
                    let door = door.map_err(|e| {
                        tracing::warn!(user = ?user, "HTTP: no door for the user: {e}");
                        error(
                            StatusCode::FORBIDDEN,
                            "this user may not use the gateway now",
                        )
                    })?;
                    let state = Arc::new(root.for_door(UserDoor(door)));
                    doors.insert(user.clone(), (state.clone(), now));
                    state
                }
            }
        };
        // The first request of a user waits for its door's registry, as a client of the
        // hub would; later ones find it synced at once.
        if let Some(door) = state.door()
            && door.0.connector().synced_within(DOOR_READY).await.is_err()
        {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway could not link for this user; try again",
            ));
        }
        Ok(state)
    }

    fn session(&self, token: &str) -> Option<Option<String>> {
        let key = digest(token);
        let mut sessions = lock(&self.sessions);
        match sessions.get(&key) {
            Some(session) if session.until > Instant::now() => Some(session.user.clone()),
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
        let user = match self.user_of(root, asked).await {
            Ok(user) => user,
            Err(response) => return response,
        };
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
                    user: user.clone(),
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn digest(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
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
    fn the_session_cookie_is_found_among_others() {
        let map = headers(&[("cookie", "a=1; netsvc_session=tok; b=2")]);
        assert_eq!(cookie(&map), Some("tok"));
        let map = headers(&[("cookie", "a=1"), ("cookie", "netsvc_session=t2")]);
        assert_eq!(cookie(&map), Some("t2"));
        assert_eq!(cookie(&headers(&[("cookie", "netsvc_session=")])), None);
        assert_eq!(cookie(&headers(&[("cookie", "netsvc_sessionx=1")])), None);
    }
}
