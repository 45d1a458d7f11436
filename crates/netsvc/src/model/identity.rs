//! Identities of processes, agents and services.
//!
//! - The **process identity** names one [`Runtime`](crate::Runtime): `"<hostname>:<pid>"`, with
//!   a `.<n>` suffix for the second and later runtimes of one operating-system process (tests
//!   run several runtimes side by side as if they were separate processes). One format is
//!   used everywhere, unlike the original's `hostname:pid` versus `ip:pid`.
//! - The **agent identity** names one service for its whole life: `"<n>@<process identity>"`,
//!   `n` counting the services the runtime ever created, never reused.
//! - The **service address** is `"<agent identity>!<service name>"`.
//!
//! None of the three depends on the route by which a process learned of a service: they stay
//! the same when an exchange connection is lost and re-established, or when a mesh routes
//! around a failed server. (The original used source routes as addresses, so an address
//! changed whenever an intermediary reconnected.) A withdrawn service's identity is never
//! handed out again; a service that reappears after a reconnect is the same agent and keeps
//! its address.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Counts the runtimes created in this operating-system process, to keep their identities
/// distinct. This is the only process-wide state in the crate and it never affects behaviour.
static RUNTIMES_CREATED: AtomicU32 = AtomicU32::new(0);

/// Makes the identity of a new runtime.
pub(crate) fn new_process_identity() -> Arc<str> {
    let instance = RUNTIMES_CREATED.fetch_add(1, Ordering::Relaxed) + 1;
    let host = hostname();
    let pid = std::process::id();
    if instance == 1 {
        format!("{host}:{pid}").into()
    } else {
        format!("{host}:{pid}.{instance}").into()
    }
}

/// The agent identity of the `n`th service of a process.
pub(crate) fn agent_identity(n: u64, process: &str) -> Arc<str> {
    format!("{n}@{process}").into()
}

/// The service address of an agent's service.
pub(crate) fn service_address(agent: &str, name: &str) -> Arc<str> {
    format!("{agent}!{name}").into()
}

fn hostname() -> String {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned());
    from_kernel
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
        // Identities are separated by ':', '@' and '!'; keep the hostname free of them.
        .replace([':', '@', '!'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_get_distinct_identities() {
        let a = new_process_identity();
        let b = new_process_identity();
        assert_ne!(a, b);
        assert!(a.contains(&std::process::id().to_string()));
        let agent = agent_identity(3, &a);
        assert_eq!(&*agent, format!("3@{a}"));
        assert_eq!(&*service_address(&agent, "echo"), format!("3@{a}!echo"));
    }
}
