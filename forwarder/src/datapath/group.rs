//! A worker's UMEMs: the frames of its ports, in groups of at most [`PORTS_PER_UMEM`].
//!
//! Every AF_XDP socket bound to a UMEM another socket registered gets a buffer pool of
//! its own in the kernel, with a descriptor for every frame of that UMEM
//! ([`super::KERNEL_BYTES_PER_FRAME`]): one UMEM shared by all of a worker's ports costs
//! the kernel ports x frames, and with a UMEM sized for its ports, that grows with the
//! square of the ports (a thousand ports: gigabytes). So a worker's ports share its
//! frames in *groups*: each group is one UMEM, its free pool, its record of holders and
//! its [`Budget`], and serves at most [`PORTS_PER_UMEM`] ports.
//!
//! - The first group of each worker is made at start and lives as long as the worker:
//!   it is sized for the ports given at start (up to [`PORTS_PER_UMEM`] of them), with
//!   full rings for a few busy ones (`DatapathConfig::umem_frames_for`, or
//!   `--umem-frames`), and lends the handoff credits other workers copy into.
//! - A port for which no group has room (its budget, or [`PORTS_PER_UMEM`] ports
//!   already) gets a new group, made by the control plane as the port is opened
//!   ([`more_frames`] frames: the least quota for every port it may serve, and full
//!   rings for one busy one). A group other than the first is unmapped once its last
//!   port is gone.
//!
//! Frames move between two ports of one group by passing their descriptor, as between
//! all ports before groups; between two groups by one copy into a frame of the egress
//! port's group. So the kernel memory of a port's socket is bounded by one group's
//! frames, however many ports the bridge has.
use std::sync::Arc;

use super::{
    budget::{Budget, MIN_QUOTA},
    holders::Holders,
    xsk::{Desc, Umem},
};
use crate::switch::MAX_PORTS;

/// The most ports one UMEM serves.
pub const PORTS_PER_UMEM: usize = 32;

/// The most UMEMs one worker has: its first, and enough groups of [`PORTS_PER_UMEM`]
/// for every port however few the first holds.
pub const MAX_UMEMS: usize = 1 + MAX_PORTS / PORTS_PER_UMEM;

// Even a first group that holds no port at all leaves room for every port.
const _: () = assert!((MAX_UMEMS - 1) * PORTS_PER_UMEM >= MAX_PORTS);

/// Frames of a group made after the first, for rings of `ring` entries: the least quota
/// for each of [`PORTS_PER_UMEM`] ports, full rings (fill, RX and TX) for one busy port,
/// and a ring's worth for frames in flight (copies into it, on its ports' TX rings).
pub fn more_frames(ring: usize) -> usize {
    PORTS_PER_UMEM * MIN_QUOTA + 3 * ring + ring
}

/// The budget of a group made after the first, for rings of `ring` entries: a ring's
/// worth kept for frames in flight, full rings for one busy port to grow into.
pub fn more_budget(ring: usize) -> Budget {
    let frames = more_frames(ring);
    Budget::new(frames, Budget::reserve(frames, ring, 0), 3 * ring)
}

/// One UMEM of a worker and everything the worker keeps about its frames.
///
/// Every frame of the UMEM is always in exactly one place: `pool`, lent to other
/// workers (`lent`, the first group only), or with one of the group's ports (its fill
/// or RX ring, its pending batch, its TX or completion ring).
#[derive(Debug)]
pub struct Group {
    /// The frames.
    pub umem: Arc<Umem>,
    /// Free frames.
    pub pool: Vec<Desc>,
    /// Which port holds each frame given to the kernel.
    pub holders: Holders,
    /// How the frames are shared between the fill rings of the group's ports.
    pub budget: Budget,
    /// Frames still counted: the UMEM's, less any a closed socket's kernel kept.
    pub total_frames: usize,
    /// Frames lent to other workers as handoff credits.
    pub lent: usize,
    /// Ports served from it.
    pub ports: usize,
}

impl Group {
    /// A group of every frame of `umem`, all free, shared as `budget` says.
    pub fn new(umem: Arc<Umem>, budget: Budget) -> Self {
        let pool = umem.all_frames();
        Self {
            holders: Holders::new(umem.frames(), umem.frame_size()),
            total_frames: pool.len(),
            pool,
            umem,
            budget,
            lent: 0,
            ports: 0,
        }
    }

    /// Takes `n` frames from the pool into `into` (which must hold `n`), if it has
    /// them.
    #[inline]
    pub fn take(&mut self, into: &mut [Desc]) -> bool {
        let n = into.len();
        if n > self.pool.len() {
            return false;
        }
        let at = self.pool.len() - n;
        into.copy_from_slice(&self.pool[at..]);
        self.pool.truncate(at);
        true
    }
}

/// Where a new port's socket goes among a worker's groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Into group `g`, which has room.
    Join(usize),
    /// Into a new group at index `g`.
    Make(usize),
    /// Nowhere: the worker has [`MAX_UMEMS`] groups, all full.
    Full,
}

/// What the control plane knows of one group when placing a port: its ports, and
/// whether its budget has room for one more ([`Budget::room`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    /// Ports it serves.
    pub ports: usize,
    /// Its budget has [`super::budget::MIN_QUOTA`] left.
    pub frames: bool,
}

/// Places a new port among `groups` (by index; `None`: no group there): the first group
/// with fewer than [`PORTS_PER_UMEM`] ports and frames left, else a new one in the
/// first free index.
pub fn place(groups: &[Option<Room>]) -> Placement {
    if let Some(g) = groups
        .iter()
        .position(|r| r.is_some_and(|r| r.ports < PORTS_PER_UMEM && r.frames))
    {
        return Placement::Join(g);
    }
    match groups.iter().position(Option::is_none) {
        Some(g) => Placement::Make(g),
        None if groups.len() < MAX_UMEMS => Placement::Make(groups.len()),
        None => Placement::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_joins_the_first_group_with_room_else_a_new_one_where_one_was_freed() {
        let room = |ports, frames| Some(Room { ports, frames });
        assert_eq!(place(&[room(3, true)]), Placement::Join(0));
        assert_eq!(
            place(&[room(5, false), room(PORTS_PER_UMEM, true), room(1, true)]),
            Placement::Join(2)
        );
        assert_eq!(
            place(&[room(5, false), None, room(PORTS_PER_UMEM, true)]),
            Placement::Make(1)
        );
        assert_eq!(place(&[room(5, false)]), Placement::Make(1));
        let full = vec![room(PORTS_PER_UMEM, true); MAX_UMEMS];
        assert_eq!(place(&full), Placement::Full);
    }

    #[test]
    fn a_worker_s_groups_hold_every_port_the_bridge_may_have() {
        // Every later group admits PORTS_PER_UMEM ports at its least quota, whatever
        // its busy port took.
        for ring in [64, 256, 2048, 16384] {
            let mut b = more_budget(ring);
            let mut busy = b.admit(ring);
            for _ in 0..20 {
                b.grow(&mut busy, ring);
            }
            assert_eq!(busy, ring, "ring {ring}: the busy port grows to its ring");
            for n in 1..PORTS_PER_UMEM {
                assert!(
                    Budget::room(b.total(), b.promised()),
                    "ring {ring}: no room for port {n}"
                );
                b.admit(ring);
            }
        }
    }

    #[test]
    fn frames_are_taken_only_when_the_pool_has_them_all() {
        let umem = Arc::new(Umem::new(4, 2048).unwrap());
        let mut g = Group::new(umem, Budget::new(4, 0, 0));
        let mut three = [Desc::default(); 3];
        assert!(g.take(&mut three));
        assert_eq!(g.pool.len(), 1);
        assert!(!g.take(&mut three));
        assert_eq!(g.pool.len(), 1, "nothing taken when not all are there");
    }
}
