//! The exchange between runtimes over real loopback sockets, several runtimes in one test
//! process standing in for separate processes (the multi-process tests with real binaries
//! are in `netsvc-testkit`). Tests named `sNN_…` are reference scenarios.

#![allow(clippy::unwrap_used)] // tests fail loudly, by design

mod connect;
mod mesh;
#[cfg(feature = "nats")]
mod nats;
mod relay;
mod reports;
mod stats;
mod topology;
mod util;
