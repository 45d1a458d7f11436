//! In-process behaviour of netsvc: one runtime (or several side by side), no sockets.
//!
//! Tests named `sNN_…` are the acceptance scenarios of the original system's reference
//! (section 8) that concern one process. Nothing sleeps and hopes: tests wait for events
//! with a deadline, and use paused tokio time for timeouts and lifetimes.

#![allow(clippy::unwrap_used)] // tests fail loudly, by design

mod registry;
mod reports;
mod requests;
mod streams;
mod util;
mod values;
