//! Who is at the other end of an accepted link, and what they may do: the users a hub
//! knows ([`Users`]), checking a connecting peer's credentials against them, and slowing
//! down an address that keeps failing.
//!
//! Credentials travel in the HELLO's options (PROTOCOL.md §4.1): `user` and `password`, or
//! `token`. A client certificate (mTLS) or, on a Unix socket, the peer's uid can stand for
//! them. Nothing here logs a credential: reasons name the user at most.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use netsvc_proto::wire::{Hello, Role};
use parking_lot::Mutex;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::model::collections::FastMap;
use crate::model::grant::{Grants, Rule};

/// The HELLO options that carry credentials.
pub(crate) const USER_OPTION: &str = "user";
pub(crate) const PASSWORD_OPTION: &str = "password";
pub(crate) const TOKEN_OPTION: &str = "token";

/// What a connecting process presents in its HELLO to log in.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// A user name and password (checked against the hub's argon2 hash).
    Password {
        /// The user name.
        user: String,
        /// The password, sent only over TLS or to a loopback address.
        password: String,
    },
    /// A token (a shared secret configured for one user at the hub).
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself: a Debug print may end up in a log.
        match self {
            Self::Password { user, .. } => write!(f, "Password {{ user: {user:?}, .. }}"),
            Self::Token(_) => f.write_str("Token(..)"),
        }
    }
}

impl Credentials {
    /// A user name and password.
    pub fn password(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Password {
            user: user.into(),
            password: password.into(),
        }
    }

    /// A token.
    pub fn token(token: impl Into<String>) -> Self {
        Self::Token(token.into())
    }

    /// Whether these credentials are a password (which must not cross a network in clear).
    pub(crate) fn is_password(&self) -> bool {
        matches!(self, Self::Password { .. })
    }

    /// The HELLO options that carry them.
    pub(crate) fn options(&self) -> Vec<(String, String)> {
        match self {
            Self::Password { user, password } => vec![
                (USER_OPTION.to_owned(), user.clone()),
                (PASSWORD_OPTION.to_owned(), password.clone()),
            ],
            Self::Token(token) => vec![(TOKEN_OPTION.to_owned(), token.clone())],
        }
    }
}

/// Allowed and denied glob patterns (netsvc's pattern syntax) for one kind of act. A name
/// is allowed when an `allow` pattern matches it and no `deny` pattern does: deny wins.
/// `$user` and `$process` in a pattern stand for the link's user and process identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Patterns of what is allowed.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Patterns of what is denied, even if allowed above.
    #[serde(default)]
    pub deny: Vec<String>,
}

impl RuleSpec {
    /// Allows what `patterns` match.
    pub fn allow<I: IntoIterator<Item = S>, S: Into<String>>(patterns: I) -> Self {
        Self {
            allow: patterns.into_iter().map(Into::into).collect(),
            deny: Vec::new(),
        }
    }

    /// Also denies what `patterns` match.
    #[must_use]
    pub fn deny<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patterns: I) -> Self {
        self.deny.extend(patterns.into_iter().map(Into::into));
        self
    }

    fn compile(spec: Option<&Self>, user: &str, process: &str) -> Result<Rule, String> {
        match spec {
            None => Ok(Rule::everything()),
            Some(spec) => Rule::compile(&spec.allow, &spec.deny, user, process)
                .map_err(|e| format!("invalid pattern: {e}")),
        }
    }
}

/// What a user may do. A kind left out allows everything; `link` is off unless set.
///
/// | field | checked at the hub when | refused by |
/// |---|---|---|
/// | `provide` | a SERVICE arrives (its name) | WITHDRAW `refused` back to the announcer |
/// | `call` | a REQUEST arrives (the target's name) | FAILURE 49, the service never sees it |
/// | `see` | the registry is sent to the link (each name) | the service is not announced |
/// | `publish` | a REPORT arrives (its subject) | dropped, logged |
/// | `subscribe` | a report is about to be sent to the link (its subject) | not sent |
/// | `link` | the HELLO says `server`, or a SERVICE went through other processes | CLOSE 5 |
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Service names the user may announce.
    pub provide: Option<RuleSpec>,
    /// Service names the user may call.
    pub call: Option<RuleSpec>,
    /// Service names announced to the user.
    pub see: Option<RuleSpec>,
    /// Subjects the user may publish reports on.
    pub publish: Option<RuleSpec>,
    /// Subjects of the reports the user receives.
    pub subscribe: Option<RuleSpec>,
    /// Whether the user may link as a hub (and so relay for others).
    #[serde(default)]
    pub link: bool,
}

impl Permissions {
    /// Everything, relaying as a hub included.
    pub fn everything() -> Self {
        Self {
            link: true,
            ..Self::default()
        }
    }

    /// Checks every pattern (with placeholder values for `$user` and `$process`).
    fn check(&self) -> Result<(), String> {
        self.grants("user", "process").map(drop)
    }

    pub(crate) fn grants(&self, user: &str, process: &str) -> Result<Grants, String> {
        Ok(Grants {
            user: user.to_owned(),
            provide: RuleSpec::compile(self.provide.as_ref(), user, process)?,
            call: RuleSpec::compile(self.call.as_ref(), user, process)?,
            see: RuleSpec::compile(self.see.as_ref(), user, process)?,
            publish: RuleSpec::compile(self.publish.as_ref(), user, process)?,
            subscribe: RuleSpec::compile(self.subscribe.as_ref(), user, process)?,
            link: self.link,
        })
    }
}

/// One user a hub knows: how it proves who it is (any of the ways given), and what it may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// An argon2 hash of the password in PHC form (`$argon2id$v=19$...`), as
    /// [`hash_password`] (or `netsvc passwd`) prints it.
    pub password_hash: Option<String>,
    /// A token that logs this user in.
    pub token: Option<String>,
    /// A DNS name in a client certificate (signed by the listener's client CA) that logs
    /// this user in.
    pub certificate: Option<String>,
    /// A Unix user id that logs this user in on a Unix socket.
    pub uid: Option<u32>,
    /// What the user may do.
    #[serde(default)]
    pub permissions: Permissions,
}

/// The users of a hub, and what a link that presents no credentials may do.
///
/// With no users at all and `anonymous` unset, nobody can link: give `anonymous` (for
/// example [`Permissions::everything`]) to let peers without credentials in. The CLI reads
/// the same structure from TOML (docs/SECURITY.md).
///
/// ```
/// use netsvc::security::{Permissions, RuleSpec, User, Users};
/// let mut users = Users::default();
/// users.users.insert("alice".into(), User {
///     token: Some("s3cret-token".into()),
///     permissions: Permissions {
///         call: Some(RuleSpec::allow(["weather*"]).deny(["weather.admin"])),
///         ..Permissions::default()
///     },
///     ..User::default()
/// });
/// assert!(users.check().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// The users, by name.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    /// What a link without credentials may do; `None` refuses such links.
    pub anonymous: Option<Permissions>,
    /// Accept passwords over plaintext TCP from addresses that are not loopback (off by
    /// default: a password sent in clear can be read on the way).
    #[serde(default)]
    pub allow_plaintext_passwords: bool,
}

impl Users {
    /// Checks that every hash parses and every pattern is valid.
    pub fn check(&self) -> Result<(), String> {
        for (name, user) in &self.users {
            // The name stands for `$user` in patterns: it must not be pattern syntax.
            netsvc_proto::names::check_user_name(name).map_err(|e| e.to_string())?;
            if let Some(hash) = &user.password_hash {
                PasswordHash::new(hash)
                    .map_err(|e| format!("user {name:?}: invalid password hash: {e}"))?;
            }
            if user.token.as_ref().is_some_and(String::is_empty) {
                return Err(format!("user {name:?}: empty token"));
            }
            user.permissions
                .check()
                .map_err(|e| format!("user {name:?}: {e}"))?;
        }
        if let Some(anonymous) = &self.anonymous {
            anonymous
                .check()
                .map_err(|e| format!("anonymous permissions: {e}"))?;
        }
        Ok(())
    }
}

/// Hashes a password for [`User::password_hash`] (argon2id with a random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

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
    /// On an in-process door (`door.rs`): the user it acts as. Set only by this process's
    /// own code, never from anything a peer sends, so it logs that user in unchecked.
    pub(crate) door_user: Option<Arc<str>>,
}

/// A login that succeeded: the user (none for anonymous) and what the link may do.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub(crate) user: Option<Arc<str>>,
    pub(crate) grants: Arc<Grants>,
}

/// How many failed logins an address may have within [`FAILURE_WINDOW`] before it is
/// refused without a check until the window has passed.
const LOCKOUT_AFTER: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it the oldest record goes (an attacker with many
/// addresses gets no more than the per-failure delay).
const MAX_TRACKED: usize = 4096;
/// Password checks running at once: argon2 costs about 20 MB and tens of milliseconds each,
/// and a flood of logins must not take the hub's memory and cores.
const CONCURRENT_CHECKS: usize = 2;

/// The users in force now and the failures of each address.
pub(crate) struct Authenticator {
    users: Mutex<Arc<Users>>,
    failures: Mutex<FastMap<IpAddr, (u32, Instant)>>,
    checks: Arc<Semaphore>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    pub(crate) fn new(users: Users) -> Self {
        Self {
            users: Mutex::new(Arc::new(users)),
            failures: Mutex::new(FastMap::default()),
            checks: Arc::new(Semaphore::new(CONCURRENT_CHECKS)),
        }
    }

    /// Puts new users in force for links made from now on.
    pub(crate) fn replace(&self, users: Users) {
        *self.users.lock() = Arc::new(users);
    }

    /// What `user` (or anonymous, for `None`) may do under the users in force now, if it
    /// still may link at all: a reload compares it with what a link was given.
    pub(crate) fn current_grants(&self, user: Option<&str>, process: &str) -> Option<Grants> {
        let users = self.users.lock().clone();
        let permissions = match user {
            Some(name) => &users.users.get(name)?.permissions,
            None => users.anonymous.as_ref()?,
        };
        permissions.grants(user.unwrap_or(""), process).ok()
    }

    /// How long to wait before answering a failed login from `ip`: doubling with each
    /// recent failure, from 100 ms up to 2 s.
    pub(crate) fn penalty(&self, ip: Option<IpAddr>) -> Duration {
        let failures = ip.and_then(|ip| self.failures.lock().get(&ip).map(|f| f.0));
        let n = failures.unwrap_or(1).clamp(1, 6);
        Duration::from_millis(100 << (n - 1)).min(Duration::from_secs(2))
    }

    fn note_failure(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&ip) {
            failures.retain(|_, (_, at)| now.duration_since(*at) < FAILURE_WINDOW);
            if failures.len() >= MAX_TRACKED
                && let Some(oldest) = failures.iter().min_by_key(|(_, (_, at))| *at).map(|e| *e.0)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.1 = now;
    }

    fn locked_out(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else { return false };
        self.failures.lock().get(&ip).is_some_and(|(n, at)| {
            *n >= LOCKOUT_AFTER && Instant::now().duration_since(*at) < FAILURE_WINDOW
        })
    }

    /// Decides whether the peer that sent `hello` over `transport` may link, and as whom.
    /// The error is the reason for the CLOSE (`not authorised`): it never says whether a
    /// user exists, and never quotes a credential.
    pub(crate) async fn login(
        &self,
        hello: &Hello,
        transport: &Transport,
    ) -> Result<Login, String> {
        if self.locked_out(transport.ip) {
            return Err("too many failed logins from this address; try again later".to_owned());
        }
        let outcome = self.check(hello, transport).await;
        if outcome.is_err() {
            self.note_failure(transport.ip);
        }
        outcome
    }

    async fn check(&self, hello: &Hello, transport: &Transport) -> Result<Login, String> {
        let users = self.users.lock().clone();
        let option = |key: &str| {
            hello
                .options
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| v.as_str().to_owned())
        };
        let process = hello.process.as_str();
        let user = if let Some(name) = &transport.door_user {
            Some(name.to_string())
        } else if let Some(name) = users.users.iter().find_map(|(name, u)| {
            let cert = u.certificate.as_deref()?;
            transport
                .certificate_names
                .iter()
                .any(|n| n == cert)
                .then_some(name)
        }) {
            Some(name.clone())
        } else if let Some(name) = transport.uid.and_then(|uid| {
            users
                .users
                .iter()
                .find_map(|(name, u)| (u.uid == Some(uid)).then_some(name))
        }) {
            Some(name.clone())
        } else if let Some(token) = option(TOKEN_OPTION) {
            // Every token is compared, in constant time, so that timing tells nothing.
            let mut found = None;
            for (name, u) in &users.users {
                if let Some(t) = &u.token
                    && bool::from(t.as_bytes().ct_eq(token.as_bytes()))
                {
                    found = Some(name.clone());
                }
            }
            Some(found.ok_or_else(|| "invalid token".to_owned())?)
        } else if let Some(name) = option(USER_OPTION) {
            let password = option(PASSWORD_OPTION).unwrap_or_default();
            if !transport.tls && !transport.local && !users.allow_plaintext_passwords {
                return Err(
                    "passwords are not accepted over plaintext TCP from another machine; \
                     connect with TLS"
                        .to_owned(),
                );
            }
            let hash = users.users.get(&name).and_then(|u| u.password_hash.clone());
            if !self.verify(password, hash).await {
                return Err(format!("invalid user name or password (user {name:?})"));
            }
            Some(name)
        } else {
            None
        };
        let (name, permissions) = match &user {
            Some(name) => match users.users.get(name) {
                Some(u) => (name.as_str(), &u.permissions),
                None => return Err("unknown user".to_owned()),
            },
            None => match &users.anonymous {
                Some(p) => ("", p),
                None => return Err("credentials required".to_owned()),
            },
        };
        let grants = permissions.grants(name, process)?;
        if hello.role == Role::Server && !grants.link {
            return Err(match &user {
                Some(u) => format!("user {u:?} may not link as a hub"),
                None => "an anonymous peer may not link as a hub".to_owned(),
            });
        }
        Ok(Login {
            user: user.map(Arc::from),
            grants: Arc::new(grants),
        })
    }

    /// Checks a password against a hash, off the async threads and a few at a time. An
    /// unknown user is checked against a dummy hash, so that it takes as long as a wrong
    /// password.
    async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.checks.clone().acquire_owned().await else {
            return false;
        };
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let verified = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await;
        known && verified.unwrap_or(false)
    }
}

/// The argon2id hash of a random password nobody knows (default parameters), checked
/// against for unknown users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1NKOlZ5mYsiuVFxDcbUP0p7TTUW0F6yZkRqXq/kCO3I";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_parse() {
        let hash = hash_password("pw").expect("hashes");
        let parsed = PasswordHash::new(&hash).expect("parses");
        assert!(
            argon2::Argon2::default()
                .verify_password(b"pw", &parsed)
                .is_ok()
        );
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let text = format!(
            "{:?} {:?}",
            Credentials::password("alice", "hunter2"),
            Credentials::token("tok-123")
        );
        assert!(
            !text.contains("hunter2") && !text.contains("tok-123"),
            "{text}"
        );
    }

    #[test]
    fn penalties_double_and_are_bounded() {
        let auth = Authenticator::new(Users::default());
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(auth.penalty(Some(ip)), Duration::from_millis(100));
        for _ in 0..3 {
            auth.note_failure(Some(ip));
        }
        assert_eq!(auth.penalty(Some(ip)), Duration::from_millis(400));
        for _ in 0..20 {
            auth.note_failure(Some(ip));
        }
        assert_eq!(auth.penalty(Some(ip)), Duration::from_secs(2));
        assert!(auth.locked_out(Some(ip)));
        assert!(!auth.locked_out(Some([10, 0, 0, 2].into())));
    }
}
