//! The collections of the runtime's hot paths: fast hash maps, and a list that is nearly
//! always one element long.
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

/// A list that nearly always holds one element, kept inline then: a registry sync makes
/// several per service (its groups, the services of its name, its routes), and allocating
/// each was a good part of the cost of learning a service.
#[derive(Debug, Clone, Default)]
pub(crate) enum Few<T> {
    #[default]
    Zero,
    One(T),
    Many(Vec<T>),
}

impl<T> Few<T> {
    pub(crate) fn push(&mut self, item: T) {
        *self = match std::mem::take(self) {
            Self::Zero => Self::One(item),
            Self::One(first) => Self::Many(vec![first, item]),
            Self::Many(mut all) => {
                all.push(item);
                Self::Many(all)
            }
        };
    }

    pub(crate) fn remove(&mut self, i: usize) -> Option<T> {
        match self {
            Self::Many(all) => (i < all.len()).then(|| all.remove(i)),
            Self::One(_) if i == 0 => match std::mem::take(self) {
                Self::One(item) => Some(item),
                _ => None,
            },
            _ => None,
        }
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        match self {
            Self::Zero => {}
            Self::One(item) => {
                if !keep(item) {
                    *self = Self::Zero;
                }
            }
            Self::Many(all) => all.retain(keep),
        }
    }
}

impl<T> std::ops::Deref for Few<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Self::Zero => &[],
            Self::One(item) => std::slice::from_ref(item),
            Self::Many(all) => all,
        }
    }
}

impl<T> std::ops::DerefMut for Few<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Self::Zero => &mut [],
            Self::One(item) => std::slice::from_mut(item),
            Self::Many(all) => all,
        }
    }
}

impl<T: PartialEq> PartialEq for Few<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for Few<T> {}

impl<T> FromIterator<T> for Few<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut few = Self::Zero;
        for item in iter {
            few.push(item);
        }
        few
    }
}
