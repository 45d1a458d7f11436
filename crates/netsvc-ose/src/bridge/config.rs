//! The bridge's settings, and what all connections of one bridge share.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use netsvc::Runtime;

use crate::ids::Ids;

/// How the bridge behaves on its OSE connections.
#[derive(Debug, Clone)]
pub struct OseConfig {
    /// The exchange group (`""`, the default group: exchange `$E`; else `$E?group`). Only
    /// peers of the same group are served, and only services whose audience admits it are
    /// announced to them.
    pub group: String,
    /// How often this side sends its own `$E::KEEP-ALIVE` round trip (the original: every
    /// two minutes, and it never waits for the answer).
    pub keep_alive: Duration,
    /// A peer heard from not at all for this long is dead: the connection is closed and its
    /// services withdrawn. Longer than `keep_alive`, so a live peer always answers in time.
    pub dead_after: Duration,
    /// The longest frame accepted from a peer.
    pub max_frame: usize,
    /// Calls from one peer running at once, and calls into it waiting for their answers;
    /// more fail at once with 51.
    pub max_requests: usize,
    /// Services one peer may announce; further announcements are ignored (and logged).
    pub max_services: usize,
    /// Report subscriptions one peer may hold; further ones are ignored (and logged).
    pub max_subscriptions: usize,
    /// How long a call from a peer into netsvc may take before it fails with 47 (`None`:
    /// as long as the service takes; it still ends if the service goes away).
    pub call_timeout: Option<Duration>,
    /// How long a call from netsvc into a peer waits before the bridge fails it with 47.
    pub request_timeout: Duration,
    /// How long a new connection may take to finish both handshakes.
    pub handshake_timeout: Duration,
    /// The addresses a listener accepts peers from, as the original's `authorise(host)`
    /// decided by address (`None`: every address). A peer from another is closed at once,
    /// before anything is read: it sees a failed attempt and retries, as the original's.
    pub allow: Option<Vec<IpPrefix>>,
}

impl Default for OseConfig {
    fn default() -> Self {
        Self {
            group: String::new(),
            keep_alive: Duration::from_secs(30),
            dead_after: Duration::from_secs(75),
            max_frame: crate::frame::DEFAULT_MAX_FRAME,
            max_requests: 1024,
            max_services: 10_000,
            max_subscriptions: 10_000,
            call_timeout: Some(Duration::from_secs(120)),
            request_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
            allow: None,
        }
    }
}

impl OseConfig {
    /// Whether a listener accepts a peer from `ip` ([`allow`](Self::allow)).
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|rules| rules.iter().any(|rule| rule.contains(ip)))
    }

    /// The exchange's receiver name: `$E`, or `$E?group`.
    pub fn exchange_name(&self) -> String {
        if self.group.is_empty() {
            "$E".to_owned()
        } else {
            format!("$E?{}", self.group)
        }
    }
}

/// What every connection of one bridge shares.
#[derive(Debug)]
pub(super) struct Context {
    pub(super) runtime: Runtime,
    pub(super) config: OseConfig,
    pub(super) ids: Ids,
    /// The process identity sent in ANNOUNCE: `host:pid`, as the original's.
    pub(super) identity: String,
}

/// An address or a network: `10.1.2.3`, `10.0.0.0/8`, `::1`, `fd00::/8`.
///
/// ```
/// use netsvc_ose::bridge::IpPrefix;
/// let lan: IpPrefix = "10.0.0.0/8".parse().unwrap();
/// assert!(lan.contains([10, 1, 2, 3].into()));
/// assert!(!lan.contains([192, 168, 0, 1].into()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPrefix {
    network: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// Whether `ip` is in the network. An IPv4 address written as IPv6 (`::ffff:a.b.c.d`)
    /// counts as the IPv4 one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(net.to_bits()), 32, self.len)
                    == masked(u128::from(ip.to_bits()), 32, self.len)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(net.to_bits(), 128, self.len) == masked(ip.to_bits(), 128, self.len)
            }
            _ => false,
        }
    }
}

/// The first `len` of the `width` low bits of `bits`.
fn masked(bits: u128, width: u8, len: u8) -> u128 {
    let shift = u32::from(width - len.min(width));
    if shift >= 128 { 0 } else { bits >> shift }
}

impl FromStr for IpPrefix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, len) = match text.split_once('/') {
            Some((address, len)) => (address, Some(len)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network (e.g. 10.0.0.0/8)"))?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => width,
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|len| *len <= width)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {width}"))?,
        };
        Ok(Self { network, len })
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_match() {
        let p = |t: &str| t.parse::<IpPrefix>().expect(t);
        assert!(p("127.0.0.1").contains([127, 0, 0, 1].into()));
        assert!(!p("127.0.0.1").contains([127, 0, 0, 2].into()));
        assert!(p("0.0.0.0/0").contains([8, 8, 8, 8].into()));
        assert!(p("192.168.4.0/22").contains([192, 168, 7, 255].into()));
        assert!(!p("192.168.4.0/22").contains([192, 168, 8, 0].into()));
        assert!(p("::1").contains("::1".parse().expect("v6")));
        assert!(p("fd00::/8").contains("fd12::5".parse().expect("v6")));
        assert!(p("10.0.0.0/8").contains("::ffff:10.9.9.9".parse().expect("mapped")));
        assert!(!p("10.0.0.0/8").contains("fd12::5".parse().expect("v6")));
        for bad in ["", "10.0.0.0/33", "::/129", "host", "10.0.0.0/x"] {
            assert!(bad.parse::<IpPrefix>().is_err(), "{bad}");
        }
    }
}
