//! Hash maps for the runtime's hot paths.
//!
//! The standard library's SipHash costs more than the rest of routing a report through a hub
//! (profiled: 12–17% of the hub's instructions). foldhash is several times faster on short
//! keys (ids, addresses, subjects) and is what `hashbrown` uses by default. Its per-process
//! random seed keeps keys chosen by a remote peer from being aimed at known collisions,
//! though it makes no cryptographic promise; every map here is also bounded by the limits on
//! connections, services and subscriptions, so the worst case is slower routing, not
//! unbounded memory.

pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
