//! Typed ids: one newtype per namespace, so that the compiler refuses a link id where a
//! subscription id is meant, and one allocator per namespace, so that two counters can never
//! hand out the same number for one map.
//!
//! Some namespaces are ours alone (links, monitors, watches, subscription keys, the request
//! numbers services see). Two are shared with a peer, per link and direction (PROTOCOL.md
//! §4.6, §4.10): conversation ids and subscription ids. Ids we send are allocated by the link
//! they go on (see `core::mesh`); ids a peer sends are only ever looked up in that link's
//! maps.

use std::fmt;
use std::marker::PhantomData;

/// An id drawn from one namespace.
pub(crate) trait Id: Copy {
    /// The id with this number.
    fn from_raw(raw: u64) -> Self;
    /// Its number.
    fn raw(self) -> u64;
}

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub(crate) struct $name(u64);

        impl Id for $name {
            fn from_raw(raw: u64) -> Self {
                Self(raw)
            }

            fn raw(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
    )*};
}

ids! {
    /// One established exchange link of a runtime.
    LinkId;
    /// A conversation (one request and its reply) on one link, in one direction.
    Conv;
    /// A report subscription on one link, in one direction.
    Sid;
    /// A report monitor of this runtime.
    MonitorId;
    /// A registry watch of this runtime.
    WatchId;
    /// One subscription held by a local publisher (from a monitor here or from a link).
    SubKey;
    /// A request as the service handling it sees it: unique within the serving runtime,
    /// whichever link or local caller it came from.
    RequestId;
}

/// Hands out the ids of one namespace: 1, 2, 3, ... (0 is never an id).
#[derive(Debug)]
pub(crate) struct Ids<T> {
    last: u64,
    of: PhantomData<fn() -> T>,
}

impl<T> Default for Ids<T> {
    fn default() -> Self {
        Self {
            last: 0,
            of: PhantomData,
        }
    }
}

impl<T: Id> Ids<T> {
    /// A fresh id. A `u64` counted up once per id does not wrap in practice (at a billion
    /// ids a second, after 584 years).
    pub(crate) fn next(&mut self) -> T {
        self.last += 1;
        T::from_raw(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_namespace_counts_on_its_own() {
        let mut links = Ids::<LinkId>::default();
        let mut convs = Ids::<Conv>::default();
        assert_eq!(links.next(), LinkId(1));
        assert_eq!(links.next(), LinkId(2));
        assert_eq!(convs.next(), Conv(1));
        assert_eq!(format!("{:?}", convs.next()), "Conv(2)");
    }
}
