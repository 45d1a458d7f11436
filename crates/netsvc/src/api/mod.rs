//! What applications hold: the handles on a runtime, its services, endpoints, registry,
//! report monitors and exchanges. Each is a thin shell over the core's state (taken under
//! its lock, never across an `.await`) and the queues the core fills.

pub(crate) mod door;
pub(crate) mod endpoint;
pub(crate) mod exchange;
pub(crate) mod introspect;
pub(crate) mod monitor;
pub(crate) mod registry;
pub(crate) mod runtime;
pub(crate) mod service;
