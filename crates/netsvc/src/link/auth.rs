//! Who is at the other end of an accepted link, and what they may do: checking a
//! connecting peer's credentials against the users a hub knows (`users.rs`; passwords on
//! the threads of `checkers.rs`), and throttling a user name or an address that keeps
//! failing.
//!
//! Credentials travel in the HELLO's options (PROTOCOL.md §4.1): `user` and `password`, or
//! `token`. A client certificate (mTLS) or, on a Unix socket, the peer's uid can stand for
//! them. Nothing here logs a credential: reasons name the user at most.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use netsvc_proto::wire::{Hello, Role};
use parking_lot::Mutex;
use subtle::ConstantTimeEq as _;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::checkers::{CheckJob, Checkers};
use super::secret_tags::SecretTags;
use super::users::{Credentials, PASSWORD_OPTION, Permissions, TOKEN_OPTION, USER_OPTION, Users};
use crate::model::collections::FastMap;
use crate::model::grant::Grants;

/// What the transport itself says of the peer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Transport {
    /// The connection is TLS.
    pub(crate) tls: bool,
    /// The peer is on this machine (loopback TCP or a Unix socket).
    pub(crate) local: bool,
    /// The DNS names of its verified client certificate.
    pub(crate) certificate_names: Vec<String>,
    /// Its Unix user id, on a Unix socket.
    pub(crate) uid: Option<u32>,
    /// Its IP address, for slowing down repeated failures.
    pub(crate) ip: Option<IpAddr>,
    /// On an in-process door (`door.rs`): the user it acts as (`Some(None)`: anonymous).
    /// Set only by this process's own code, never from anything a peer sends, so it logs
    /// that user in unchecked.
    pub(crate) door: Option<Option<Arc<str>>>,
}

/// A login that succeeded: the user (none for anonymous) and what the link may do.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub(crate) user: Option<Arc<str>>,
    pub(crate) grants: Arc<Grants>,
}

/// Failed logins one user name may have from one address within [`FAILURE_WINDOW`], the
/// checks in progress for it counted as failures, before it is refused there without a
/// check until the window has passed. Logins without a user name (a token, say) share one
/// such count per address.
const PER_USER_LIMIT: u32 = 10;
/// The same for an address, over all its user names: larger, so that the users behind one
/// NAT do not lock each other out, yet an address trying passwords across many user names
/// is stopped.
const PER_ADDRESS_LIMIT: u32 = 30;
/// Failures older than this (since the last one of their kind) are forgotten.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Records kept at most, per user and address and per address; past it the oldest idle
/// record goes (an attacker with many addresses gets no more than the per-failure delay).
const MAX_TRACKED: usize = 4096;
/// The longest user name kept in a record: a name is the attacker's to choose, so the
/// records' memory must not be.
const MAX_TRACKED_NAME: usize = 128;
/// Why a login was refused, on a link (the text is then its CLOSE reason) or by
/// [`Exchange::authenticate`](crate::Exchange::authenticate). The text never says whether a
/// user exists, and never quotes a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginRefused {
    /// No credentials, and the users file has no `[anonymous]` section.
    #[error("credentials required")]
    CredentialsRequired,
    /// The credentials were checked and do not log in (answered after the penalty).
    #[error("{0}")]
    Failed(String),
    /// Refused unchecked: too many failures (or checks in progress) of this user name or
    /// address lately. The text says when to try again.
    #[error("{0}")]
    Throttled(String),
    /// No password check could be run in time.
    #[error("the hub is too busy to check the login now; try again in a few seconds")]
    Busy,
}

/// The credentials a login presents, wherever they come from (a HELLO's options, an HTTP
/// request's `Authorization`).
#[derive(Debug, Default)]
struct Presented<'a> {
    token: Option<&'a str>,
    user: Option<&'a str>,
    password: Option<&'a str>,
}

/// The permissions of `user` (`None`: anonymous) under `users`, with the name that stands
/// for `$user`; refused if there is no such user, or no `[anonymous]`.
fn permissions_of<'u>(
    users: &'u Users,
    user: Option<&'u str>,
) -> Result<(&'u str, &'u Permissions), LoginRefused> {
    match user {
        Some(name) => match users.users.get(name) {
            Some(u) => Ok((name, &u.permissions)),
            None => Err(LoginRefused::Failed("unknown user".to_owned())),
        },
        None => match &users.anonymous {
            Some(p) => Ok(("", p)),
            None => Err(LoginRefused::CredentialsRequired),
        },
    }
}

/// Passwords verified for HTTP requests lately, so that a client sending Basic credentials
/// with every request costs one argon2 check (~19 MiB, tens of ms) per [`VERIFIED_FOR`],
/// not one per request. Each entry is the [`SecretTags`] tag of the user name, the
/// password and the user's stored hash: never the password itself,
/// and a changed hash no longer matches. At most [`MAX_VERIFIED`] entries (then the
/// expired go, and if none has, the oldest); emptied when the users are replaced.
#[derive(Debug)]
struct Verified {
    /// `None` if the system gave no randomness: then nothing is cached.
    tags: Option<SecretTags>,
    entries: Mutex<FastMap<[u8; 32], Instant>>,
}

/// Verified passwords remembered at most.
const MAX_VERIFIED: usize = 1024;
/// How long a verified password is remembered: the longest a password changed by hand in
/// the users file (without a reload) would still be taken.
const VERIFIED_FOR: Duration = Duration::from_secs(300);

impl Default for Verified {
    fn default() -> Self {
        Self {
            tags: SecretTags::new(),
            entries: Mutex::new(FastMap::default()),
        }
    }
}

impl Verified {
    fn key(&self, user: &str, password: &str, hash: &str) -> Option<[u8; 32]> {
        let tags = self.tags.as_ref()?;
        Some(tags.tag(&[user.as_bytes(), password.as_bytes(), hash.as_bytes()]))
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        let mut entries = self.entries.lock();
        match entries.get(key) {
            Some(at) if at.elapsed() < VERIFIED_FOR => true,
            Some(_) => {
                entries.remove(key);
                false
            }
            None => false,
        }
    }

    fn insert(&self, key: [u8; 32]) {
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_VERIFIED {
            entries.retain(|_, at| at.elapsed() < VERIFIED_FOR);
        }
        if entries.len() >= MAX_VERIFIED
            && let Some(oldest) = entries.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k)
        {
            entries.remove(&oldest);
        }
        entries.insert(key, Instant::now());
    }

    fn clear(&self) {
        self.entries.lock().clear();
    }
}

/// Recent failures and checks in progress, of one user name at one address or of one
/// address.
#[derive(Debug, Clone, Copy, Default)]
struct Record {
    failures: u32,
    /// When the last failure was noted.
    last: Option<Instant>,
    in_flight: u32,
}

impl Record {
    /// The failures still within the window at `now`.
    fn recent(&self, now: Instant) -> u32 {
        match self.last {
            Some(last) if now.duration_since(last) < FAILURE_WINDOW => self.failures,
            _ => 0,
        }
    }

    /// Whole seconds until the window of the last failure has passed (at least 1).
    fn retry_after(&self, now: Instant) -> u64 {
        let left = self.last.map_or(Duration::ZERO, |last| {
            FAILURE_WINDOW.saturating_sub(now.duration_since(last))
        });
        let whole = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        whole.max(1)
    }

    fn idle(&self, now: Instant) -> bool {
        self.in_flight == 0 && self.recent(now) == 0
    }

    fn note_failure(&mut self, now: Instant) {
        self.failures = self.recent(now).saturating_add(1);
        self.last = Some(now);
    }
}

/// One user name (or none) at one address.
type UserKey = (IpAddr, Option<Box<str>>);

/// The records of failures, by user name and address and by address.
#[derive(Debug, Default)]
struct Throttle {
    by_user: FastMap<UserKey, Record>,
    by_address: FastMap<IpAddr, Record>,
}

/// Makes room for one more record in `map` (see [`MAX_TRACKED`]): forgets idle records,
/// and if none is idle the oldest record without a check in progress. `false` if every
/// record has a check in progress.
fn make_room<K: Clone + Eq + std::hash::Hash>(map: &mut FastMap<K, Record>, now: Instant) -> bool {
    if map.len() < MAX_TRACKED {
        return true;
    }
    map.retain(|_, r| !r.idle(now));
    if map.len() < MAX_TRACKED {
        return true;
    }
    let oldest = map
        .iter()
        .filter(|(_, r)| r.in_flight == 0)
        .min_by_key(|(_, r)| r.last)
        .map(|(k, _)| k.clone());
    oldest.is_some_and(|k| map.remove(&k).is_some())
}

/// Counts of what a hub's logins did since it started ([`Exchange::login_stats`]).
///
/// [`Exchange::login_stats`]: crate::Exchange::login_stats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginStats {
    /// Password checks (argon2) run.
    pub password_checks: u64,
    /// Logins refused after their credentials were checked.
    pub failed: u64,
    /// Logins refused without a check: too many failures (or checks in progress) for the
    /// user name or the address, or no check possible in time.
    pub throttled: u64,
}

/// The users in force now, the failures of each user name and address, and the threads
/// that check passwords.
pub(crate) struct Authenticator {
    users: Mutex<Arc<Users>>,
    throttle: Mutex<Throttle>,
    checkers: Arc<Checkers>,
    failed: AtomicU64,
    throttled: AtomicU64,
    /// Passwords verified for HTTP requests lately.
    verified: Verified,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        self.checkers.close();
    }
}

/// A login admitted past the limits: counted as in progress until it ends (or is
/// dropped, say by a timeout), and as a failure if it fails.
struct Attempt<'a> {
    auth: &'a Authenticator,
    key: Option<UserKey>,
}

impl Attempt<'_> {
    fn failed(self) {
        self.auth.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(key) = &self.key {
            let now = Instant::now();
            let mut throttle = self.auth.throttle.lock();
            if let Some(record) = throttle.by_user.get_mut(key) {
                record.note_failure(now);
            }
            if let Some(record) = throttle.by_address.get_mut(&key.0) {
                record.note_failure(now);
            }
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let Some(key) = &self.key else { return };
        let mut throttle = self.auth.throttle.lock();
        if let Some(record) = throttle.by_user.get_mut(key) {
            record.in_flight = record.in_flight.saturating_sub(1);
        }
        if let Some(record) = throttle.by_address.get_mut(&key.0) {
            record.in_flight = record.in_flight.saturating_sub(1);
        }
    }
}

/// The user name a HELLO claims, if any.
pub(crate) fn claimed_user(hello: &Hello) -> Option<&str> {
    hello
        .options
        .iter()
        .find(|(k, _)| k.as_str() == USER_OPTION)
        .map(|(_, v)| v.as_str())
}

/// `name` cut to at most [`MAX_TRACKED_NAME`] bytes (on a character boundary).
fn tracked_name(name: &str) -> Box<str> {
    let mut end = name.len().min(MAX_TRACKED_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or_default().into()
}

impl Authenticator {
    pub(crate) fn new(users: Users) -> Self {
        Self {
            users: Mutex::new(Arc::new(users)),
            throttle: Mutex::new(Throttle::default()),
            checkers: Arc::new(Checkers::default()),
            failed: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            verified: Verified::default(),
        }
    }

    /// Puts new users in force for links made from now on; passwords verified under the
    /// old ones are checked again.
    pub(crate) fn replace(&self, users: Users) {
        *self.users.lock() = Arc::new(users);
        self.verified.clear();
    }

    /// What the logins did so far.
    pub(crate) fn stats(&self) -> LoginStats {
        LoginStats {
            password_checks: self.checkers.checks(),
            failed: self.failed.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }

    /// What `user` (or anonymous, for `None`) may do under the users in force now, if it
    /// still may link at all: a reload compares it with what a link was given.
    pub(crate) fn current_grants(&self, user: Option<&str>, process: &str) -> Option<Grants> {
        let users = self.users.lock().clone();
        let (name, permissions) = permissions_of(&users, user).ok()?;
        permissions.grants(name, process).ok()
    }

    /// How long to wait before answering a failed login of `user` from `ip`: doubling with
    /// each recent failure of that user name there, from 100 ms up to 2 s.
    pub(crate) fn penalty(&self, ip: Option<IpAddr>, user: Option<&str>) -> Duration {
        let failures = ip.and_then(|ip| {
            let key = (ip, user.map(tracked_name));
            let throttle = self.throttle.lock();
            throttle.by_user.get(&key).map(|r| r.recent(Instant::now()))
        });
        let n = failures.unwrap_or(1).clamp(1, 6);
        Duration::from_millis(100 << (n - 1)).min(Duration::from_secs(2))
    }

    /// Admits a login of `user` from `ip` as in progress, unless the failures and the
    /// checks in progress of that user name there, or of the address, have reached their
    /// limit: then the reason says which, and when to try again.
    fn admit(&self, ip: Option<IpAddr>, user: Option<&str>) -> Result<Attempt<'_>, LoginRefused> {
        let Some(ip) = ip else {
            // A Unix socket: only processes of this machine, let in by the socket's mode.
            return Ok(Attempt {
                auth: self,
                key: None,
            });
        };
        let key = (ip, user.map(tracked_name));
        let now = Instant::now();
        let mut guard = self.throttle.lock();
        let throttle = &mut *guard;
        let by_user = throttle.by_user.get(&key).copied().unwrap_or_default();
        let by_address = throttle.by_address.get(&ip).copied().unwrap_or_default();
        let whom = match user {
            Some(name) => format!(" for user {name:?}"),
            None => String::new(),
        };
        let refusal = if by_user.recent(now) >= PER_USER_LIMIT {
            Some(format!(
                "too many failed logins{whom} from this address; try again in {} s",
                by_user.retry_after(now)
            ))
        } else if by_address.recent(now) >= PER_ADDRESS_LIMIT {
            Some(format!(
                "too many failed logins from this address; try again in {} s",
                by_address.retry_after(now)
            ))
        } else if by_user.recent(now) + by_user.in_flight >= PER_USER_LIMIT
            || by_address.recent(now) + by_address.in_flight >= PER_ADDRESS_LIMIT
        {
            // Each login in progress may yet fail: together they must stay within the limit.
            Some(format!(
                "too many logins{whom} from this address at once; try again in 1 s"
            ))
        } else if !make_room(&mut throttle.by_user, now)
            || !make_room(&mut throttle.by_address, now)
        {
            Some(LoginRefused::Busy.to_string())
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(LoginRefused::Throttled(reason));
        }
        throttle.by_user.entry(key.clone()).or_default().in_flight += 1;
        throttle.by_address.entry(ip).or_default().in_flight += 1;
        Ok(Attempt {
            auth: self,
            key: Some(key),
        })
    }

    /// Decides whether the peer that sent `hello` over `transport` may link, and as whom.
    pub(crate) async fn login(
        &self,
        hello: &Hello,
        transport: &Transport,
    ) -> Result<Login, LoginRefused> {
        let attempt = self.admit(transport.ip, claimed_user(hello))?;
        match self.check(hello, transport).await {
            Ok(login) => Ok(login),
            Err(LoginRefused::Busy) => {
                // Not the peer's failure: nothing was checked.
                self.throttled.fetch_add(1, Ordering::Relaxed);
                Err(LoginRefused::Busy)
            }
            Err(refusal) => {
                attempt.failed();
                Err(refusal)
            }
        }
    }

    async fn check(&self, hello: &Hello, transport: &Transport) -> Result<Login, LoginRefused> {
        let users = self.users.lock().clone();
        let option = |key: &str| {
            hello
                .options
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| v.as_str())
        };
        let presented = Presented {
            token: option(TOKEN_OPTION),
            user: option(USER_OPTION),
            password: option(PASSWORD_OPTION),
        };
        let process = hello.process.as_str();
        let user = self.identify(&users, &presented, transport, false).await?;
        let (name, permissions) = permissions_of(&users, user.as_deref())?;
        let grants = permissions
            .grants(name, process)
            .map_err(LoginRefused::Failed)?;
        if hello.role == Role::Server && !grants.link {
            return Err(LoginRefused::Failed(match &user {
                Some(u) => format!("user {u:?} may not link as a hub"),
                None => "an anonymous peer may not link as a hub".to_owned(),
            }));
        }
        Ok(Login {
            user: user.map(Arc::from),
            grants: Arc::new(grants),
        })
    }

    /// Who presents `presented` over `transport`: a user of `users`, or `None` for no
    /// credentials at all (anonymous, if the users allow it: [`permissions_of`] says). The
    /// one place where credentials are checked, for native logins and HTTP requests alike.
    /// With `cache`, a password verified within [`VERIFIED_FOR`] is not checked again
    /// (HTTP, where every request carries it; see [`Verified`]).
    async fn identify(
        &self,
        users: &Users,
        presented: &Presented<'_>,
        transport: &Transport,
        cache: bool,
    ) -> Result<Option<String>, LoginRefused> {
        if let Some(door) = &transport.door {
            return Ok(door.as_deref().map(str::to_owned));
        }
        if let Some(name) = users.users.iter().find_map(|(name, u)| {
            let cert = u.certificate.as_deref()?;
            transport
                .certificate_names
                .iter()
                .any(|n| n == cert)
                .then_some(name)
        }) {
            return Ok(Some(name.clone()));
        }
        if let Some(name) = transport.uid.and_then(|uid| {
            users
                .users
                .iter()
                .find_map(|(name, u)| (u.uid == Some(uid)).then_some(name))
        }) {
            return Ok(Some(name.clone()));
        }
        if let Some(token) = presented.token {
            // Every token is compared, in constant time, so that timing tells nothing.
            let mut found = None;
            for (name, u) in &users.users {
                if let Some(t) = &u.token
                    && bool::from(t.as_bytes().ct_eq(token.as_bytes()))
                {
                    found = Some(name.clone());
                }
            }
            return found
                .map(Some)
                .ok_or_else(|| LoginRefused::Failed("invalid token".to_owned()));
        }
        let Some(name) = presented.user else {
            return Ok(None);
        };
        let password = presented.password.unwrap_or_default();
        if !transport.tls && !transport.local && !users.allow_plaintext_passwords {
            return Err(LoginRefused::Failed(
                "passwords are not accepted over plaintext TCP from another machine; \
                 connect with TLS"
                    .to_owned(),
            ));
        }
        let hash = users.users.get(name).and_then(|u| u.password_hash.clone());
        let key = match (&hash, cache) {
            (Some(hash), true) => self.verified.key(name, password, hash),
            _ => None,
        };
        if key.is_some_and(|key| self.verified.contains(&key)) {
            return Ok(Some(name.to_owned()));
        }
        if !self.verify(password.to_owned(), hash).await? {
            return Err(LoginRefused::Failed(format!(
                "invalid user name or password (user {name:?})"
            )));
        }
        if let Some(key) = key {
            self.verified.insert(key);
        }
        Ok(Some(name.to_owned()))
    }

    /// Who an HTTP request logs in as (`Exchange::authenticate`): the same checks as a
    /// native login ([`identify`](Self::identify)), the same throttling, counted in the
    /// same [`LoginStats`]. A request without credentials (and no certificate of a user)
    /// is anonymous if the users allow it, else refused uncounted: a browser's first
    /// request carries none, and that is no failed login.
    pub(crate) async fn authenticate(
        &self,
        credentials: Option<&Credentials>,
        transport: &Transport,
        within: Duration,
    ) -> Result<Option<String>, LoginRefused> {
        let users = self.users.lock().clone();
        let presented = match credentials {
            None => Presented::default(),
            Some(Credentials::Token(token)) => Presented {
                token: Some(token),
                ..Presented::default()
            },
            Some(Credentials::Password { user, password }) => Presented {
                user: Some(user),
                password: Some(password),
                ..Presented::default()
            },
        };
        if credentials.is_none() {
            // Only a certificate or nothing: no secret to guess, nothing to throttle.
            let user = self.identify(&users, &presented, transport, true).await?;
            return match permissions_of(&users, user.as_deref()) {
                Ok(_) => Ok(user),
                Err(_) => Err(LoginRefused::CredentialsRequired),
            };
        }
        let user = presented.user;
        // As a native login's: every refusal at warn, the user name Debug-quoted (it is the
        // client's to choose, and must not forge log lines), never a credential.
        let address = transport
            .ip
            .map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        let attempt = self.admit(transport.ip, user).map_err(|refusal| {
            tracing::warn!(user = ?user, address = %address, "HTTP login refused: {refusal}");
            refusal
        })?;
        let checked = tokio::time::timeout(within, async {
            let user = self.identify(&users, &presented, transport, true).await?;
            permissions_of(&users, user.as_deref())?;
            Ok(user)
        })
        .await
        .unwrap_or(Err(LoginRefused::Busy));
        let refusal = match checked {
            Ok(user) => return Ok(user),
            Err(refusal) => refusal,
        };
        tracing::warn!(user = ?user, address = %address, "HTTP login refused: {refusal}");
        if refusal == LoginRefused::Busy {
            // Not the client's failure: nothing was checked.
            self.throttled.fetch_add(1, Ordering::Relaxed);
        } else {
            attempt.failed();
            // As a native login: a failure is answered after the penalty.
            tokio::time::sleep(self.penalty(transport.ip, user)).await;
        }
        Err(refusal)
    }

    /// Checks a password against a hash on the checking threads. An unknown user is
    /// checked against a dummy hash, so that it takes as long as a wrong password.
    async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, LoginRefused> {
        let (answer, verified) = oneshot::channel();
        self.checkers
            .submit(CheckJob::new(password, hash, answer))
            .ok_or(LoginRefused::Busy)?;
        // Dropping `verified` (the login given up) tells the threads to skip the check.
        verified.await.map_err(|_| LoginRefused::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Notes `n` failures of `user` from `ip`, as failed logins would.
    fn fail(auth: &Authenticator, ip: IpAddr, user: Option<&str>, n: usize) {
        for _ in 0..n {
            auth.admit(Some(ip), user).expect("admitted").failed();
        }
    }

    #[test]
    fn penalties_double_and_are_bounded() {
        let auth = Authenticator::new(Users::default());
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(
            auth.penalty(Some(ip), Some("a")),
            Duration::from_millis(100)
        );
        fail(&auth, ip, Some("a"), 3);
        assert_eq!(
            auth.penalty(Some(ip), Some("a")),
            Duration::from_millis(400)
        );
        assert_eq!(
            auth.penalty(Some(ip), Some("b")),
            Duration::from_millis(100)
        );
        fail(&auth, ip, Some("a"), 7);
        assert_eq!(auth.penalty(Some(ip), Some("a")), Duration::from_secs(2));
    }

    #[test]
    fn a_user_is_throttled_at_its_address_and_an_address_over_all_its_users() {
        let auth = Authenticator::new(Users::default());
        let ip: IpAddr = [10, 0, 0, 1].into();
        fail(&auth, ip, Some("a"), 10);
        let Err(LoginRefused::Throttled(why)) = auth.admit(Some(ip), Some("a")) else {
            panic!("not throttled");
        };
        assert_eq!(
            why,
            "too many failed logins for user \"a\" from this address; try again in 60 s"
        );
        assert!(auth.admit(Some(ip), Some("b")).is_ok());
        assert!(auth.admit(Some([10, 0, 0, 2].into()), Some("a")).is_ok());
        // Spraying: many user names from one address reach the address's limit.
        for user in ["b", "c"] {
            fail(&auth, ip, Some(user), 9);
        }
        fail(&auth, ip, None, 2);
        let Err(LoginRefused::Throttled(why)) = auth.admit(Some(ip), Some("d")) else {
            panic!("not throttled");
        };
        assert!(
            why.starts_with("too many failed logins from this address"),
            "{why}"
        );
        assert_eq!(auth.stats().failed, 30);
    }

    #[test]
    fn logins_in_progress_count_against_the_limit_until_they_end() {
        let auth = Authenticator::new(Users::default());
        let ip: IpAddr = [10, 0, 0, 1].into();
        fail(&auth, ip, Some("a"), 4);
        let pending: Vec<_> = (0..6)
            .map(|_| auth.admit(Some(ip), Some("a")).expect("admitted"))
            .collect();
        let Err(LoginRefused::Throttled(why)) = auth.admit(Some(ip), Some("a")) else {
            panic!("not throttled");
        };
        assert!(why.contains("at once"), "{why}");
        drop(pending);
        assert!(auth.admit(Some(ip), Some("a")).is_ok());
    }
}
