//! Port sets: which ports a frame may leave by, a bit per port slot.
use std::fmt;

use super::PortId;

/// Most ports one bridge serves.
pub const MAX_PORTS: usize = hairpin_common::MAX_PORTS as usize;

/// Words of a [`PortSet`].
const WORDS: usize = MAX_PORTS / 64;

/// A set of ports: a bit per port, [`MAX_PORTS`] bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSet([u64; WORDS]);

impl Default for PortSet {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl PortSet {
    /// No ports.
    pub const EMPTY: Self = Self([0; WORDS]);

    /// Ports `0..n`.
    pub fn first(n: usize) -> Self {
        debug_assert!(n <= MAX_PORTS);
        let mut set = Self::EMPTY;
        for (i, word) in set.0.iter_mut().enumerate() {
            let below = n.saturating_sub(i * 64);
            *word = if below >= 64 {
                u64::MAX
            } else {
                (1u64 << below) - 1
            };
        }
        set
    }

    /// This set with `port` added.
    #[must_use]
    pub const fn with(mut self, port: PortId) -> Self {
        self.0[port as usize / 64] |= 1 << (port % 64);
        self
    }

    /// This set without `port`.
    #[must_use]
    pub const fn without(mut self, port: PortId) -> Self {
        self.0[port as usize / 64] &= !(1 << (port % 64));
        self
    }

    /// Whether `port` is in the set.
    #[inline]
    pub const fn contains(&self, port: PortId) -> bool {
        self.0[port as usize / 64] & (1 << (port % 64)) != 0
    }

    /// The ports in both sets.
    #[must_use]
    #[inline]
    pub fn and(mut self, other: &Self) -> Self {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= b;
        }
        self
    }

    /// How many ports.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The ports, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = PortId> + '_ {
        (0u16..).zip(&self.0).flat_map(|(i, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let port = i * 64 + bits.trailing_zeros() as PortId;
                    bits &= bits - 1;
                    port
                })
            })
        })
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_sets_iterate_in_order() {
        let s = PortSet::EMPTY.with(5).with(0).with(63).with(64).with(1023);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 5, 63, 64, 1023]);
        assert_eq!(s.len(), 5);
        assert!(s.contains(1023) && !s.contains(1022));
        assert_eq!(s.without(64).len(), 4);
        for n in [0, 1, 63, 64, 65, 1000, MAX_PORTS] {
            let first = PortSet::first(n);
            assert_eq!(first.len(), n);
            assert_eq!(first.iter().last(), n.checked_sub(1).map(|p| p as PortId));
        }
        assert_eq!(PortSet::first(0), PortSet::EMPTY);
        assert!(PortSet::EMPTY.is_empty());
        assert_eq!(s.and(&PortSet::first(64)).len(), 3);
    }
}
