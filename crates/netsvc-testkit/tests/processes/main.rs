//! netsvc across real processes: every test spawns `netsvc-node` processes that talk over
//! loopback TCP, and kills, freezes or restarts them (the same scenarios as netsvc's
//! in-process exchange tests, where runtimes in one process stand in for processes). Tests
//! named `sNN_…` are reference scenarios.
//!
//! Every wait has a deadline, and every process is killed when its [`Node`] is dropped, so
//! a failing test neither hangs nor leaves processes behind.
//!
//! [`Node`]: netsvc_testkit::Node

#![allow(clippy::unwrap_used)] // tests fail loudly, by design

mod chaos;
mod failures;
mod inproc;
mod load;
mod mesh;
mod partition;
mod proxy;
mod topology;
mod util;
