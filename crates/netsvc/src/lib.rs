//! netsvc: a service agent framework and message exchange.
//!
//! A process hosts named **services** in a [`Runtime`]. Services find each other through the
//! runtime's [`Registry`], which announces when a service becomes available or is withdrawn
//! and when it joins or leaves a **group**. They talk by **requests** (an [`Endpoint`] calls
//! a method; the outcome is a [`Value`] or a [`Failure`]) and by **reports** (a service
//! publishes on a subject with a [`Lifetime`]; subscribers monitor subjects by glob
//! pattern, and late subscribers receive the cached reports first).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use netsvc::{Failure, Lifetime, Runtime, Value};
//!
//! let rt = Runtime::new();
//! let _adder = rt
//!     .service("adder")
//!     .export("add", |req| async move {
//!         let (a, b): (i64, i64) = req.decode_args()?;
//!         Ok::<_, Failure>(a + b)
//!     })
//!     .build()?;
//! let sum = rt.endpoint("adder").call("add", vec![2.into(), 3.into()]).await?;
//! assert_eq!(sum, Value::from(5));
//!
//! let clock = rt.service("clock").build()?;
//! clock.publish("system.time", "12:00", Lifetime::Forever)?;
//! let reader = rt.service("").build()?;
//! let mut reports = reader.monitor_reports("clock", "system.*")?;
//! let report = reports.next_report().await.unwrap();
//! assert_eq!(report.value()?.as_str(), Some("12:00"));
//! # Ok(()) }
//! ```
//!
//! Across processes, one process runs an exchange server (a hub) and the others connect
//! to it; here both in one program, on a free port:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use netsvc::{Exchange, Retry, Runtime, Value, args};
//! use std::time::Duration;
//!
//! let hub_rt = Runtime::new();
//! let hub = Exchange::server(&hub_rt).build()?;
//! let address = hub.listen("127.0.0.1:0").await?.to_string();
//! let _echo = hub_rt
//!     .service("echo")
//!     .export("echo", |req| async move { Ok(Value::List(req.into_args())) })
//!     .build()?;
//!
//! let rt = Runtime::new();
//! let client = Exchange::client(&rt).build()?;
//! let link = client.connect(&address, Retry::every(Duration::from_millis(100)))?;
//! link.synced_within(Duration::from_secs(10)).await?;
//! let echoed = rt.endpoint("echo").call("echo", args!["hi"]).await?;
//! assert_eq!(echoed, Value::List(args!["hi"]));
//! # Ok(()) }
//! ```
//!
//! The vocabulary is the original OSE netsvc's: service, registry, binding, audience,
//! group, endpoint, request, response, failure, report, subject, pattern, lifetime,
//! exchange. See `docs/ARCHITECTURE.md` for who owns which state.

// The layers, bottom up; each imports only from those above it in this list.
mod api;
mod core;
mod link;
mod model;

pub use crate::api::door::Door;
pub use crate::api::endpoint::{Endpoint, Target};
pub use crate::api::exchange::{ConnectionWatch, Connector, Exchange, ExchangeBuilder};
pub use crate::api::introspect::{INTROSPECTION_SERVICE, MAX_SUBSCRIPTIONS};
pub use crate::api::monitor::{ReportMonitor, SubscriptionWatch};
pub use crate::api::registry::{Registry, RegistryWatch};
pub use crate::api::runtime::Runtime;
pub use crate::api::service::{LIST_METHODS, Request, Service, ServiceBuilder, ServiceHandle};
pub use crate::core::queue::RecvError;
pub use crate::link::config::{ExchangeConfig, Retry};
pub use crate::link::connector::{ConnectError, ConnectorStatus, LinkPhase};
pub use crate::link::error::{ExchangeError, LinkFailure};
pub use crate::link::events::{ConnectionEvent, ConnectionState};
pub use crate::link::shared::PeerAddr;
pub use crate::model::announcement::{
    Announcement, AnnouncementKind, ServiceStatus, WithdrawReason,
};
pub use crate::model::binding::{Audience, Binding, Location, Visibility};
pub use crate::model::config::{RegistrySync, RuntimeConfig};
pub use crate::model::error::Error;
pub use crate::model::failure::{Failure, FailureKind, MethodResult};
pub use crate::model::payload::Payload;
pub use crate::model::report::{
    Lifetime, Report, ReportEvent, SubscriptionEvent, SubscriptionStatus,
};
pub use netsvc_proto::value::{self, Value};
pub use netsvc_proto::{Pattern, names};

/// Failures in detail: the original's numeric codes and their descriptions.
pub mod failure {
    pub use crate::model::failure::{
        Failure, FailureKind, MethodResult, NETSVC_ORIGIN, WITHDRAWN_DETAILS, codes, description_of,
    };
}

/// The exchange in detail: everything about links, connectors and their settings.
pub mod exchange {
    pub use crate::api::door::Door;
    pub use crate::api::exchange::{ConnectionWatch, Connector, Exchange, ExchangeBuilder};
    pub use crate::link::config::{ExchangeConfig, Retry};
    pub use crate::link::connector::{ConnectError, ConnectorStatus, LinkPhase};
    pub use crate::link::error::{ExchangeError, LinkFailure};
    pub use crate::link::events::{ConnectionEvent, ConnectionState};
    pub use crate::link::listen::bind_tcp;
    #[cfg(feature = "nats")]
    pub use crate::link::nats::{ABSENT_BEACONS, NatsBackbone, NatsConfig};
    pub use crate::link::shared::PeerAddr;
    pub use netsvc_proto::wire::Role;
}

/// What a runtime has done: requests by service and outcome with their latencies, reports
/// in and out, each link's traffic ([`Runtime::stats`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use netsvc::stats::RequestRole;
/// use netsvc::{Runtime, Value};
///
/// let rt = Runtime::new();
/// let _echo = rt
///     .service("echo")
///     .export("echo", |req| async move { Ok(Value::List(req.into_args())) })
///     .build()?;
/// rt.endpoint("echo").call("echo", vec![]).await?;
/// let stats = rt.stats();
/// let served = stats
///     .requests
///     .iter()
///     .find(|r| r.service == "echo" && r.role == RequestRole::Served)
///     .unwrap();
/// assert_eq!(served.ok, 1);
/// # Ok(()) }
/// ```
pub mod stats {
    pub use crate::model::stats::{
        Histogram, LATENCY_BOUNDS_US, LinkStats, ReportStats, RequestRole, RequestStats, Stats,
        SubjectStats, SubscriptionRole, SubscriptionStats, Subscriptions,
    };
}

/// Security (docs/SECURITY.md): TLS for listeners and connections, the users of a hub with
/// their credentials and permissions, and the credentials a process logs in with.
///
/// ```
/// use netsvc::security::{Credentials, Permissions, RuleSpec, User, Users, hash_password};
///
/// let mut users = Users::default();
/// users.users.insert("weather-station".into(), User {
///     password_hash: Some(hash_password("correct horse")?),
///     permissions: Permissions {
///         provide: Some(RuleSpec::allow(["weather"])),
///         publish: Some(RuleSpec::allow(["weather.*"])),
///         ..Permissions::default()
///     },
///     ..User::default()
/// });
/// assert!(users.check().is_ok());
/// let station = Credentials::password("weather-station", "correct horse");
/// assert!(!format!("{station:?}").contains("horse")); // never in a log
/// # Ok::<(), String>(())
/// ```
pub mod security {
    pub use crate::link::auth::{LoginRefused, LoginStats};
    pub use crate::link::secret_tags::SecretTags;
    pub use crate::link::tls::{ClientTls, ServerTls, TlsError, TlsErrorKind, certificate_names};
    pub use crate::link::users::{Credentials, Permissions, RuleSpec, User, Users, hash_password};
}

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;

/// The old name of [`RegistryWatch`].
#[deprecated(since = "0.2.0", note = "renamed RegistryWatch")]
pub type Announcements = RegistryWatch;

/// The old name of [`ConnectionWatch`].
#[deprecated(since = "0.2.0", note = "renamed ConnectionWatch")]
pub type ConnectionEvents = ConnectionWatch;

/// Builds a request's argument list from expressions convertible into [`Value`].
///
/// ```
/// let args = netsvc::args![1, "two", 3.0];
/// assert_eq!(args.len(), 3);
/// ```
#[macro_export]
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        vec![$($crate::Value::from($arg)),*]
    };
}
