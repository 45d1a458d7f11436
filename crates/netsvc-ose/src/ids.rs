//! Identifiers in the original's formats, so that an OSE peer's logs and tools read ours as
//! they read its own.
//!
//! Endpoint ids (`$EP?…`) and receiver names (`$O?…`) use the short form
//! `<hex IPv4>:<hex pid>:<hex counter>`; conversation ids the long form
//! `$ID?<hex IPv4>:<hex pid>:<hex start time>:<hex seconds since start>:<hex counter>`. The
//! counter starts from the clock, as the original's does, so that two processes of one pid
//! (one after the other) do not reuse names.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Makes a process's identifiers. One per process is enough; it is shared by all its OSE
/// connections.
#[derive(Debug)]
pub struct Ids {
    prefix: String,
    start_secs: u64,
    started: Instant,
    counter: AtomicU32,
}

impl Ids {
    /// Identifiers of this process (its pid) at `ip`.
    pub fn new(ip: Ipv4Addr) -> Self {
        let start_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            prefix: format!("{:08X}:{:X}", u32::from(ip), std::process::id()),
            start_secs,
            started: Instant::now(),
            // The high 16 bits from the clock, as in the original.
            counter: AtomicU32::new(((start_secs as u32) & 0xFFFF) << 16),
        }
    }

    fn next(&self) -> u32 {
        self.counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    /// A new endpoint id: `$EP?…`.
    pub fn endpoint(&self) -> String {
        format!("$EP?{}:{:X}", self.prefix, self.next())
    }

    /// A new receiver name: `$O?…`.
    pub fn receiver(&self) -> String {
        format!("$O?{}:{:X}", self.prefix, self.next())
    }

    /// A new conversation id: `$ID?…`.
    pub fn conversation(&self) -> String {
        format!(
            "$ID?{}:{:X}:{:X}:{:X}",
            self.prefix,
            self.start_secs,
            self.started.elapsed().as_secs(),
            self.next()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_the_original() {
        let ids = Ids::new(Ipv4Addr::LOCALHOST);
        let pid = format!("{:X}", std::process::id());
        let endpoint = ids.endpoint();
        assert!(
            endpoint.starts_with(&format!("$EP?7F000001:{pid}:")),
            "{endpoint}"
        );
        assert!(ids.receiver().starts_with("$O?7F000001:"));
        let conversation = ids.conversation();
        assert_eq!(conversation.matches(':').count(), 4, "{conversation}");
        assert_ne!(ids.receiver(), ids.receiver());
    }
}
