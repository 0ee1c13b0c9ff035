//! How a worker shares its UMEM's frames between its ports' fill rings.
//!
//! A copy-mode socket receives only into frames its fill ring holds, and a frame given
//! there stays until a frame arrives in it: frames parked in an idle port's fill ring
//! cannot be taken back. So a port is given no more than it has shown it needs. Each
//! port has a quota, the frames its fill and RX rings may hold together: it starts at
//! up to [`START_QUOTA`] (enough for a burst into a port that was idle), as much as half
//! the budget has beyond [`MIN_QUOTA`] for every port slot still free (the other half
//! is for busy ports to grow into); it doubles (up to
//! its ring) when a quarter of it waited on the RX ring at once, or when the port
//! received a quota's worth between two looks (every 4096 turns of its worker), and
//! halves back (never below [`MIN_QUOTA`] nor what it holds) when the port received
//! nothing between two looks. Quotas are promised out of the worker's budget — its UMEM less a reserve
//! for frames in flight (on TX rings, flood copies, handoffs, segments being cut) — and
//! only out of what no port was promised: a port growing, or a new one, never takes
//! frames another port was promised. A port the budget cannot give [`MIN_QUOTA`] is
//! refused by the control plane before it is attached ([`Budget::room`]).

/// The frames a port keeps at least, and is refused without: one RX batch.
pub const MIN_QUOTA: usize = super::worker::BATCH;

/// The frames a port starts with where the budget allows.
pub const START_QUOTA: usize = 512;

/// One worker's promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Frames the ports may be promised in all.
    total: usize,
    /// Frames promised: the sum of the ports' quotas.
    promised: usize,
}

impl Budget {
    /// The budget of a UMEM of `frames` frames keeping `reserve` for frames in flight.
    pub fn new(frames: usize, reserve: usize) -> Self {
        Self {
            total: frames.saturating_sub(reserve),
            promised: 0,
        }
    }

    /// The frames reserved for in-flight use out of `frames`: a ring's worth for
    /// copies and the handoff credits lent to other workers, at most a quarter.
    pub fn reserve(frames: usize, ring: usize, credits: usize) -> usize {
        (ring + credits).min(frames / 4)
    }

    /// Frames promised now.
    pub fn promised(&self) -> usize {
        self.promised
    }

    /// Frames that may be promised in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Whether `promised` of `total` leave room for one more port.
    pub fn room(total: usize, promised: usize) -> bool {
        promised + MIN_QUOTA <= total
    }

    /// A new port's quota, with `free_slots` port slots left after it: up to
    /// [`START_QUOTA`] (and its ring, `max`) out of what half the budget has beyond
    /// [`MIN_QUOTA`] for each free slot (the other half is for busy ports to grow
    /// into: frames a port that stays idle was given at its start stay with it), and at
    /// least [`MIN_QUOTA`], promised even past the total (the control plane checked
    /// [`Budget::room`]; a port that grew meanwhile is the only way past it, and then no
    /// port grows until the promises fit again).
    pub fn admit(&mut self, free_slots: usize, max: usize) -> usize {
        let spare = (self.total / 2).saturating_sub(self.promised + free_slots * MIN_QUOTA);
        let quota = spare.min(START_QUOTA).min(max).max(MIN_QUOTA);
        self.promised += quota;
        quota
    }

    /// A port of quota `quota` leaves.
    pub fn release(&mut self, quota: usize) {
        self.promised = self.promised.saturating_sub(quota);
    }

    /// Doubles `quota`, up to `max`, if the promises allow it.
    pub fn grow(&mut self, quota: &mut usize, max: usize) {
        let want = (*quota * 2).min(max.max(MIN_QUOTA));
        let more = want.saturating_sub(*quota);
        if more > 0 && self.promised + more <= self.total {
            self.promised += more;
            *quota = want;
        }
    }

    /// Halves `quota`, not below [`MIN_QUOTA`] nor below `held`, the frames the port
    /// holds on its rings (which it cannot give back until frames arrive in them).
    pub fn shrink(&mut self, quota: &mut usize, held: usize) {
        let want = (*quota / 2).max(MIN_QUOTA).max(held).min(*quota);
        self.promised -= *quota - want;
        *quota = want;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_start_with_what_leaves_every_free_slot_its_minimum() {
        let mut b = Budget::new(24_576, 0);
        let quotas: Vec<usize> = (0..64).map(|i| b.admit(63 - i, 2048)).collect();
        assert_eq!(quotas[0], START_QUOTA);
        assert_eq!(quotas[63], MIN_QUOTA);
        assert!(quotas.windows(2).all(|w| w[0] >= w[1]), "{quotas:?}");
        assert!(b.promised() <= b.total(), "all 64 fit: {quotas:?}");
        // Half the budget stays for busy ports to grow into, whoever came first.
        let mut busy = quotas[63];
        for _ in 0..6 {
            b.grow(&mut busy, 2048);
        }
        assert_eq!(busy, 2048, "promised {} of {}", b.promised(), b.total());
        assert_eq!(
            Budget::new(2000, 0).admit(0, 256),
            256,
            "never past its ring"
        );
    }

    #[test]
    fn ports_grow_only_out_of_what_no_port_was_promised() {
        let mut b = Budget::new(1000 + 100, 100);
        let (mut busy, mut other) = (b.admit(100, 2048), b.admit(100, 2048));
        assert_eq!(
            (busy, other),
            (MIN_QUOTA, MIN_QUOTA),
            "no spare beyond the free slots"
        );
        for _ in 0..10 {
            b.grow(&mut busy, 2048);
        }
        // 1000 - 64 for the other port: the busy one stops at 512 (the next double, 1024,
        // does not fit).
        assert_eq!(busy, 512);
        assert_eq!(b.promised(), busy + other);
        // New ports take what is left, then none fits.
        let mut admitted = 0;
        while Budget::room(b.total(), b.promised()) {
            b.admit(1000, 2048);
            admitted += 1;
        }
        assert_eq!(admitted, (1000 - 512 - 64) / MIN_QUOTA);
        // The busy port keeps its quota; the other cannot grow now.
        b.grow(&mut other, 2048);
        assert_eq!(other, MIN_QUOTA);
        assert!(b.promised() <= b.total());
    }

    #[test]
    fn an_idle_port_shrinks_to_what_it_holds_and_gives_the_rest_back() {
        let mut b = Budget::new(10_000, 0);
        let mut q = b.admit(0, 2048);
        assert_eq!(q, START_QUOTA);
        for _ in 0..5 {
            b.grow(&mut q, 2048);
        }
        assert_eq!(q, 2048);
        b.shrink(&mut q, 1500);
        assert_eq!((q, b.promised()), (1500, 1500));
        b.shrink(&mut q, 10);
        assert_eq!((q, b.promised()), (750, 750));
        for _ in 0..10 {
            b.shrink(&mut q, 0);
        }
        assert_eq!((q, b.promised()), (MIN_QUOTA, MIN_QUOTA));
        b.release(q);
        assert_eq!(b.promised(), 0);
    }

    #[test]
    fn the_reserve_leaves_most_of_a_small_umem_to_the_ports() {
        assert_eq!(Budget::reserve(27_136, 2048, 512), 2560);
        assert_eq!(Budget::reserve(1000, 2048, 512), 250);
    }
}
