//! Reliability under bad input and overload, against real exchanges over loopback sockets
//! (several runtimes in one test process standing in for processes; the tests that kill
//! and freeze real processes are in `netsvc-testkit`). `docs/RELIABILITY.md` lists what
//! netsvc promises and which test proves each promise.

#![allow(clippy::unwrap_used)] // tests fail loudly, by design

mod hostile;
mod login_retry;
mod logins;
mod misuse;
mod overload;
mod protocol;
mod security;
mod unix_socket;
mod util;
