//! The switching decision: what to do with one frame, as a pure function.
//!
//! [`decide`] reads the frame's header and the shared [`Tables`], learns the source
//! address, and returns an [`Action`]; it performs no I/O, so unit and property tests
//! call it directly, without root or sockets.
pub mod fdb;

use std::fmt;

pub use fdb::{Fdb, PortId, VlanId};

use crate::wire::EthernetFrame;

/// Most ports one bridge serves: a [`PortSet`] is a 64-bit mask.
pub const MAX_PORTS: usize = hairpin_common::MAX_PORTS as usize;

/// A set of ports.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PortSet(u64);

impl PortSet {
    /// No ports.
    pub const EMPTY: Self = Self(0);

    /// Ports `0..n`.
    pub fn first(n: usize) -> Self {
        debug_assert!(n <= MAX_PORTS);
        Self(if n >= 64 { u64::MAX } else { (1u64 << n) - 1 })
    }

    /// This set with `port` added.
    #[must_use]
    pub const fn with(self, port: PortId) -> Self {
        Self(self.0 | (1 << port))
    }

    /// This set without `port`.
    #[must_use]
    pub const fn without(self, port: PortId) -> Self {
        Self(self.0 & !(1 << port))
    }

    /// Whether `port` is in the set.
    pub const fn contains(self, port: PortId) -> bool {
        self.0 & (1 << port) != 0
    }

    /// How many ports.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The ports, lowest first.
    pub fn iter(self) -> impl Iterator<Item = PortId> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let port = bits.trailing_zeros() as PortId;
                bits &= bits - 1;
                port
            })
        })
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Source MAC is multicast or all-zero (never learned, never forwarded, as in the
    /// Linux bridge).
    BadSourceMac,
    /// The destination was learned on the ingress port: the frame stays on its segment.
    SameSegment,
    /// Nowhere to send it (a flood with no other port).
    NoEgress,
    /// The egress TX ring was full.
    TxRingFull,
    /// The handoff to the worker owning the egress queue was full.
    HandoffFull,
    /// No free UMEM frame for a flood copy or a handoff.
    NoFreeFrame,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [Self; 7] = [
        Self::Runt,
        Self::BadSourceMac,
        Self::SameSegment,
        Self::NoEgress,
        Self::TxRingFull,
        Self::HandoffFull,
        Self::NoFreeFrame,
    ];

    /// How many reasons there are.
    pub const COUNT: usize = Self::ALL.len();

    /// The reason's name in counters.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Runt => "runt",
            Self::BadSourceMac => "bad_src_mac",
            Self::SameSegment => "same_segment",
            Self::NoEgress => "no_egress",
            Self::TxRingFull => "tx_ring_full",
            Self::HandoffFull => "handoff_full",
            Self::NoFreeFrame => "no_free_frame",
        }
    }
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send it out of one port.
    Forward(PortId),
    /// Send a copy out of each of these ports.
    Flood(PortSet),
    /// Drop it, counted under the reason.
    Drop(DropReason),
}

/// The switching mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Virtual Ethernet bridge: a learning bridge between all ports.
    #[default]
    Veb,
    /// Two ports patched to each other, no lookups (like testpmd `io`): for benchmarks.
    Xconnect,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Veb => "veb",
            Self::Xconnect => "xconnect",
        })
    }
}

/// An error in the bridge's set-up.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// Too few or too many ports for the mode.
    #[error("{mode} mode needs {need} ports, got {got}")]
    PortCount {
        /// The mode.
        mode: Mode,
        /// What it needs.
        need: &'static str,
        /// What it got.
        got: usize,
    },
}

/// Everything [`decide`] reads: the mode, the ports, the MAC table.
#[derive(Debug)]
pub struct Tables {
    mode: Mode,
    ports: PortSet,
    /// The MAC table; learning writes to it through atomics.
    pub fdb: Fdb,
}

impl Tables {
    /// Tables for `ports` ports in `mode`, with a MAC table of `fdb_capacity` entries.
    pub fn new(mode: Mode, ports: usize, fdb_capacity: usize) -> Result<Self, TablesError> {
        let ok = match mode {
            Mode::Xconnect => ports == 2,
            Mode::Veb => (1..=MAX_PORTS).contains(&ports),
        };
        if !ok {
            let need = match mode {
                Mode::Xconnect => "exactly 2",
                Mode::Veb => "1 to 64",
            };
            return Err(TablesError::PortCount {
                mode,
                need,
                got: ports,
            });
        }
        Ok(Self {
            mode,
            ports: PortSet::first(ports),
            fdb: Fdb::with_capacity(fdb_capacity),
        })
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Every port.
    pub fn ports(&self) -> PortSet {
        self.ports
    }
}

/// Decides what happens to `frame`, received on `ingress` at `now` (table seconds),
/// learning its source address on the way.
#[inline]
pub fn decide(tables: &Tables, frame: &[u8], ingress: PortId, now: u32) -> Action {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Action::Drop(DropReason::Runt);
    };
    match tables.mode {
        Mode::Xconnect => Action::Forward(ingress ^ 1),
        Mode::Veb => {
            let src = eth.src();
            if !src.is_learnable() {
                return Action::Drop(DropReason::BadSourceMac);
            }
            tables.fdb.learn(0, src, ingress, now);
            let dst = eth.dst();
            let known = if dst.is_multicast() {
                None
            } else {
                tables.fdb.lookup(0, dst)
            };
            match known {
                Some(port) if port == ingress => Action::Drop(DropReason::SameSegment),
                Some(port) => Action::Forward(port),
                None => flood(tables.ports.without(ingress)),
            }
        }
    }
}

fn flood(ports: PortSet) -> Action {
    if ports.is_empty() {
        Action::Drop(DropReason::NoEgress)
    } else {
        Action::Flood(ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::port::Mac;

    const A: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);
    const B: Mac = Mac([0x02, 0, 0, 0, 0, 0x0b]);
    const C: Mac = Mac([0x02, 0, 0, 0, 0, 0x0c]);

    fn frame(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = Vec::with_capacity(60);
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.resize(60, 0);
        f
    }

    fn veb(ports: usize) -> Tables {
        Tables::new(Mode::Veb, ports, 1024).unwrap()
    }

    #[test]
    fn unknown_unicast_floods_to_every_other_port_and_teaches_the_source() {
        let t = veb(3);
        assert_eq!(
            decide(&t, &frame(B, A), 0, 1),
            Action::Flood(PortSet::EMPTY.with(1).with(2))
        );
        assert_eq!(t.fdb.lookup(0, A), Some(0));
        // The reply goes straight back to where A was learned.
        assert_eq!(decide(&t, &frame(A, B), 2, 1), Action::Forward(0));
        // And now B is known too.
        assert_eq!(decide(&t, &frame(B, A), 0, 1), Action::Forward(2));
    }

    #[test]
    fn broadcast_and_multicast_flood_but_never_back_to_ingress() {
        let t = veb(4);
        let all_but_1 = PortSet::first(4).without(1);
        assert_eq!(
            decide(&t, &frame(Mac::BROADCAST, A), 1, 1),
            Action::Flood(all_but_1)
        );
        let mcast = Mac([0x01, 0x00, 0x5e, 0, 0, 1]);
        assert_eq!(decide(&t, &frame(mcast, A), 1, 1), Action::Flood(all_but_1));
    }

    #[test]
    fn a_destination_on_the_ingress_segment_is_filtered() {
        let t = veb(3);
        decide(&t, &frame(B, A), 0, 1);
        decide(&t, &frame(A, C), 0, 1); // C lives on port 0 too.
        assert_eq!(
            decide(&t, &frame(C, A), 0, 1),
            Action::Drop(DropReason::SameSegment)
        );
    }

    #[test]
    fn a_moved_station_is_followed_at_once() {
        let t = veb(3);
        decide(&t, &frame(B, A), 0, 1);
        decide(&t, &frame(B, A), 2, 1);
        assert_eq!(decide(&t, &frame(A, B), 1, 1), Action::Forward(2));
    }

    #[test]
    fn runts_and_bad_sources_are_dropped_and_never_learned() {
        let t = veb(2);
        assert_eq!(
            decide(&t, &frame(B, A)[..13], 0, 1),
            Action::Drop(DropReason::Runt)
        );
        assert_eq!(decide(&t, &[], 0, 1), Action::Drop(DropReason::Runt));
        assert_eq!(
            decide(&t, &frame(B, Mac::ZERO), 0, 1),
            Action::Drop(DropReason::BadSourceMac)
        );
        assert_eq!(
            decide(&t, &frame(B, Mac([0x01, 0, 0x5e, 0, 0, 9])), 0, 1),
            Action::Drop(DropReason::BadSourceMac)
        );
        assert!(t.fdb.is_empty());
        // A header-only frame is not a runt.
        assert!(matches!(
            decide(&t, &frame(B, A)[..14], 0, 1),
            Action::Flood(_)
        ));
    }

    #[test]
    fn a_single_port_bridge_has_nowhere_to_flood() {
        let t = veb(1);
        assert_eq!(
            decide(&t, &frame(B, A), 0, 1),
            Action::Drop(DropReason::NoEgress)
        );
    }

    #[test]
    fn xconnect_patches_two_ports_whatever_the_addresses() {
        let t = Tables::new(Mode::Xconnect, 2, 16).unwrap();
        assert_eq!(decide(&t, &frame(B, A), 0, 1), Action::Forward(1));
        assert_eq!(
            decide(&t, &frame(Mac::BROADCAST, Mac::ZERO), 1, 1),
            Action::Forward(0)
        );
        assert!(t.fdb.is_empty(), "xconnect learns nothing");
        assert!(Tables::new(Mode::Xconnect, 3, 16).is_err());
        assert!(Tables::new(Mode::Veb, 0, 16).is_err());
        assert!(Tables::new(Mode::Veb, 65, 16).is_err());
    }

    #[test]
    fn random_frames_never_return_to_ingress_nor_exceed_the_ports() {
        // A small deterministic property test: xorshift-generated frames and ports.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for ports in 1..=8usize {
            let t = veb(ports);
            for _ in 0..2000 {
                let r = next();
                let len = (r % 80) as usize;
                let pick = |x: u64| Mac([(x as u8) & 0x03, 0, 0, 0, 0, (x >> 8) as u8 % 6]);
                let mut f = frame(pick(r >> 8), pick(r >> 24));
                f.truncate(len);
                let ingress = ((r >> 40) % ports as u64) as PortId;
                match decide(&t, &f, ingress, (r >> 50) as u32 % 4) {
                    Action::Forward(p) => assert!(p != ingress && (p as usize) < ports),
                    Action::Flood(set) => {
                        assert!(!set.contains(ingress));
                        assert!(set.len() < ports);
                        assert!(set.iter().all(|p| (p as usize) < ports));
                    }
                    Action::Drop(_) => {}
                }
            }
        }
    }

    #[test]
    fn port_sets_iterate_in_order() {
        let s = PortSet::EMPTY.with(5).with(0).with(63);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 5, 63]);
        assert_eq!(s.len(), 3);
        assert_eq!(PortSet::first(64).len(), 64);
        assert_eq!(PortSet::first(0), PortSet::EMPTY);
    }
}
