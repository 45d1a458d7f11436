//! The users a hub knows, as its users file says them ([`Users`]), what each may do
//! ([`Permissions`]), and what a connecting process presents to log in ([`Credentials`]).
//! Values only: `auth.rs` checks logins against them.

use std::collections::BTreeMap;

use argon2::password_hash::PasswordHasher as _;
use argon2::password_hash::phc::PasswordHash;
use serde::Deserialize;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
