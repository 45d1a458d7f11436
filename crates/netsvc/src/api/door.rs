//! [`Door`]: a runtime of the hub's own process that acts as one user of the hub's users
//! file, for components (the OSE bridge, the HTTP gateway) that must obey the same logins
//! and permissions as every peer (`link/door.rs` says how).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::exchange::{Connector, Exchange};
use super::runtime::Runtime;
use crate::link::auth::{LoginRefused, Transport};
use crate::link::config::Retry;
use crate::link::dial::DialAddress;
use crate::link::door::DoorTarget;
use crate::link::error::ExchangeError;
use crate::link::users::Credentials;
use netsvc_proto::wire::Role;

/// How soon a door's link is opened again after it ended (a reload that changed its
/// user's rights, typically), doubling while it is refused.
const RELINK_FIRST: Duration = Duration::from_millis(20);
const RELINK_MAX: Duration = Duration::from_secs(2);

/// A runtime of this process that reaches a hub of this process as one of the hub's users,
/// with exactly that user's rights: what it may provide, call, see, publish and receive is
/// checked by the hub as for a peer logged in as that user over the network, and a reload
/// of the users file applies to it as to them. Made by [`Exchange::door`].
///
/// Give a component the door's [`runtime`](Door::runtime) instead of the hub's own. Keep
/// the door while the component runs; dropping every clone closes its link.
///
/// ```
/// use netsvc::security::{Permissions, RuleSpec, User, Users};
/// use netsvc::{Exchange, Runtime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = Runtime::new();
/// let _secret = hub.service("secret").build()?;
/// let _public = hub.service("public.clock").build()?;
/// let mut users = Users::default();
/// users.users.insert("bridge".into(), User {
///     permissions: Permissions {
///         see: Some(RuleSpec::allow(["public.*"])),
///         ..Permissions::default()
///     },
///     ..User::default()
/// });
/// let exchange = Exchange::server(&hub).users(users).build()?;
///
/// let door = exchange.door("bridge")?;
/// door.connector().synced().await?;
/// let registry = door.runtime().registry();
/// assert_eq!(registry.lookup_name("public.clock").len(), 1);
/// assert!(registry.lookup_name("secret").is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Door {
    runtime: Runtime,
    /// Its link lives as long as its exchange.
    _exchange: Exchange,
    connector: Connector,
    /// `None`: anonymous.
    user: Option<Arc<str>>,
}

impl Door {
    /// The runtime to hand the component: everything it does goes through the door's link.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Where the door's link stands; [`Connector::synced`] waits until the hub has sent
    /// the registry as the user may see it.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The user the door acts as; `""` for a door of [`Exchange::anonymous_door`].
    pub fn user(&self) -> &str {
        self.user.as_deref().unwrap_or_default()
    }
}

impl Exchange {
    /// Opens a [`Door`] into this hub for a component of this process that must act as
    /// `user` of the hub's users file, rather than as the hub itself (with every right).
    ///
    /// # Errors
    ///
    /// [`ExchangeError::NotAServer`] for a client exchange, and
    /// [`ExchangeError::InvalidConfig`] if the exchange has no users or none named `user`.
    pub fn door(&self, user: &str) -> Result<Door, ExchangeError> {
        self.open_door(Some(user))
    }

    /// Opens a [`Door`] that acts as a peer without credentials: with the users file's
    /// `[anonymous]` permissions (the HTTP gateway's requests that carry no login).
    ///
    /// # Errors
    ///
    /// As [`door`](Self::door), and [`ExchangeError::InvalidConfig`] if the users have no
    /// `anonymous` permissions.
    pub fn anonymous_door(&self) -> Result<Door, ExchangeError> {
        self.open_door(None)
    }

    fn open_door(&self, user: Option<&str>) -> Result<Door, ExchangeError> {
        let shared = self.shared();
        if shared.role != Role::Server {
            return Err(ExchangeError::NotAServer);
        }
        let Some(auth) = &shared.security.users else {
            return Err(ExchangeError::InvalidConfig(
                "a door acts as one of the hub's users, and this exchange has none".to_owned(),
            ));
        };
        if auth.current_grants(user, "door").is_none() {
            return Err(ExchangeError::InvalidConfig(match user {
                Some(user) => {
                    format!("a door acts as one of the hub's users, and there is no user {user:?}")
                }
                None => "the hub's users have no anonymous permissions".to_owned(),
            }));
        }
        let runtime = Runtime::with_config(shared.runtime.config.clone())
            .map_err(|e| ExchangeError::InvalidConfig(e.to_string()))?;
        let exchange = Self::client(&runtime)
            .group(&shared.group)
            .config(shared.config.clone())
            .build()?;
        let target = DoorTarget::new(shared, user);
        let connector = exchange.dial(
            DialAddress::Door(target),
            Retry::backoff(RELINK_FIRST, RELINK_MAX),
        )?;
        Ok(Door {
            runtime,
            _exchange: exchange,
            connector,
            user: user.map(Arc::from),
        })
    }
}

/// How long an HTTP login may wait for a password check; past it the request is refused as
/// busy rather than left hanging.
const HTTP_CHECK_WITHIN: Duration = Duration::from_secs(5);

impl Exchange {
    /// Who a request of a component of this process (the HTTP gateway) logs in as, by the
    /// hub's users file and exactly its rules for native logins: `credentials` (a password
    /// is refused over plaintext from another machine unless `allow_plaintext_passwords`),
    /// or a client certificate whose verified DNS names are `certificate_names`, or none
    /// (anonymous, if the file has `[anonymous]`). Failures are throttled and counted in
    /// [`login_stats`](Self::login_stats) with the native ones, per user name and `from`,
    /// and answered after the same penalty. A verified password is remembered (as a keyed
    /// hash) for a few minutes and until the next [`set_users`](Self::set_users), so that
    /// a client sending it with every request does not cost an argon2 check each time.
    ///
    /// `Ok(Some(user))`, `Ok(None)` for anonymous; serve the request through
    /// [`door`](Self::door) or [`anonymous_door`](Self::anonymous_door).
    ///
    /// # Errors
    ///
    /// [`LoginRefused`] says why; [`LoginRefused::Failed`] too if this exchange has no
    /// users.
    pub async fn authenticate(
        &self,
        credentials: Option<&Credentials>,
        from: IpAddr,
        tls: bool,
        certificate_names: &[String],
    ) -> Result<Option<String>, LoginRefused> {
        let Some(auth) = &self.shared().security.users else {
            return Err(LoginRefused::Failed(
                "this hub has no users to log in as".to_owned(),
            ));
        };
        let transport = Transport {
            tls,
            local: from.is_loopback(),
            certificate_names: certificate_names.to_vec(),
            ip: Some(from),
            ..Transport::default()
        };
        auth.authenticate(credentials, &transport, HTTP_CHECK_WITHIN)
            .await
    }
}
