//! End-to-end tests of the `netsvc` binary: real processes, real sockets, ephemeral ports.
//!
//! Every process a test starts is killed when the test ends (pass or fail), and every wait
//! is bounded, so a broken build fails with the output collected so far instead of hanging.

mod util;

mod call;
mod connect;
mod dashboard;
mod demo;
mod exchange;
mod gateway;
mod gateway_logins;
mod gateway_slow_head;
mod help;
mod http_logins;
mod info;
mod monitor;
mod nats;
mod ose;
mod publish;
mod refusals;
mod scoped_registry;
mod security;
mod serve;
mod services;
mod tls_help;
