//! An HTTP gateway to the services of a netsvc [`Runtime`](netsvc::Runtime): the original
//! gateway's NET-RPC, XML-RPC and JSON-RPC dialects on `POST /service/NAME`, JSON-RPC 2.0 on
//! `POST /jsonrpc`, and the registry as JSON (`GET /api/services`) and as Server-Sent Events
//! (`GET /api/events`), the process's stats as JSON (`GET /api/stats`, `/api/links`) and
//! Prometheus text (`GET /metrics`), and a service's methods
//! (`GET /api/services/NAME/methods`). See docs/GATEWAY.md.
//!
//! The decoders are sans-IO ([`codec`]); the server (feature `server`, on by default) is
//! axum on one HTTP/1.1 port.

pub mod codec;
#[cfg(feature = "server")]
mod dashboard;
#[cfg(feature = "server")]
mod introspect;
#[cfg(feature = "server")]
mod limits;
#[cfg(feature = "server")]
mod logins;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
mod reports;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(feature = "server")]
mod withdrawals;

#[cfg(feature = "server")]
pub use logins::RemoteHub;
#[cfg(feature = "server")]
pub use server::{Exposure, Gateway, GatewayConfig, GatewayError, Serving};
