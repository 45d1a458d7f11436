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
//! The vocabulary is the original OSE netsvc's: service, registry, binding, audience,
//! group, endpoint, request, response, failure, report, subject, pattern, lifetime,
//! exchange. See `docs/ARCHITECTURE.md` for who owns which state.

mod announce;
mod binding;
mod call;
mod core;
mod endpoint;
mod error;
mod exchange;
mod failure;
mod fast;
mod identity;
mod payload;
mod queue;
mod registry;
mod report;
mod runtime;
mod service;

pub use announce::{Announcement, AnnouncementKind, Announcements, ServiceStatus, WithdrawReason};
pub use binding::{Audience, Binding, Location, Visibility};
pub use endpoint::{Endpoint, Target};
pub use error::Error;
pub use exchange::{
    ConnectionEvent, ConnectionEvents, ConnectionState, Exchange, ExchangeBuilder, ExchangeConfig,
    ExchangeError, ExchangeRole, PeerAddr, Retry,
};
pub use failure::{Failure, NETSVC_ORIGIN, WITHDRAWN_DETAILS, codes, description_of};
pub use netsvc_proto::value::{self, Value};
pub use netsvc_proto::{Pattern, names};
pub use payload::Payload;
pub use queue::RecvError;
pub use registry::Registry;
pub use report::{
    Lifetime, Report, ReportEvent, ReportMonitor, SubscriptionEvent, SubscriptionStatus,
    SubscriptionWatch,
};
pub use runtime::{Runtime, RuntimeConfig};
pub use service::{MethodResult, Request, Service, ServiceBuilder, ServiceHandle};

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
