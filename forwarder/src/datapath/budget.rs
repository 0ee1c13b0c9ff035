//! How a worker shares the frames of one of its UMEMs between the fill rings of the
//! ports on it ([`super::group`]: one budget per UMEM).
//!
//! A copy-mode socket receives only into frames its fill ring holds, and a frame given
//! there stays until a frame arrives in it: frames parked in an idle port's fill ring
//! cannot be taken back. So a port is given no more than it has shown it needs. Each
//! port has a quota, the frames its fill and RX rings may hold together, at least
//! [`MIN_QUOTA`].
//!
//! The budget — the UMEM less a reserve for frames in flight (on TX rings,
//! flood copies, handoffs, segments being cut) — has two parts, as the UMEM was sized
//! (`DatapathConfig::umem_frames_for`, `growth_frames`): a *growth* part, full rings
//! for a few busy ports and a ring for each port known at start, and the rest,
//! [`MIN_QUOTA`] for each port to come. Beyond
//! [`MIN_QUOTA`], quotas come out of the growth part only, so every port the UMEM was
//! sized for is admitted however busy the others are:
//!
//! - a new port starts with up to [`START_QUOTA`] (enough for a burst into a port that
//!   was idle): an eighth of what half the growth part has left, so starting quotas
//!   shrink as ports come, and the other half stays for busy ports to grow into;
//! - a quota doubles (up to its ring) when a quarter of it waited on the RX ring at once,
//!   or when the port received a quota's worth between two looks (every 4096 turns of
//!   its worker), and halves back (never below [`MIN_QUOTA`] nor what it holds) when the
//!   port received nothing between two looks.
//!
//! Quotas are promised only out of what no port was promised: a port growing, or a new
//! one, never takes frames another port was promised. Ports beyond those the UMEM was
//! sized for are admitted while the budget has [`MIN_QUOTA`] left ([`Budget::room`]);
//! a port it cannot give that goes into another of the worker's UMEMs.

/// The frames a port keeps at least, and is refused without: one RX batch (the
/// workers check that the two agree).
pub const MIN_QUOTA: usize = 64;

/// The frames a port starts with where the budget allows.
pub const START_QUOTA: usize = 512;

/// One worker's promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Frames the ports may be promised in all.
    total: usize,
    /// Of `total`, the frames beyond [`MIN_QUOTA`] per port the UMEM was sized for.
    growth: usize,
    /// Frames promised: the sum of the ports' quotas.
    promised: usize,
    /// Ports promised frames.
    ports: usize,
}

impl Budget {
    /// The budget of a UMEM of `frames` frames keeping `reserve` for frames in flight,
    /// `growth` of them meant for busy ports' full rings (the rest: [`MIN_QUOTA`] for
    /// each port it was sized for).
    pub fn new(frames: usize, reserve: usize, growth: usize) -> Self {
        let total = frames.saturating_sub(reserve);
        Self {
            total,
            growth: growth.min(total),
            promised: 0,
            ports: 0,
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

    /// Frames promised beyond the ports' minimums.
    fn beyond_minimums(&self) -> usize {
        self.promised.saturating_sub(self.ports * MIN_QUOTA)
    }

    /// The minimums of the ports the UMEM was sized for and that have not come yet:
    /// no quota grows into them.
    fn kept_for_newcomers(&self) -> usize {
        let sized_for = (self.total - self.growth) / MIN_QUOTA;
        sized_for.saturating_sub(self.ports) * MIN_QUOTA
    }

    /// A new port's quota: [`MIN_QUOTA`] and, up to [`START_QUOTA`] (and its ring,
    /// `max`, and what is left), an eighth of what half the growth part has left;
    /// [`MIN_QUOTA`] is promised even past the
    /// total (the control plane checked [`Budget::room`]; a port that grew meanwhile is
    /// the only way past it, and then no port grows until the promises fit again).
    pub fn admit(&mut self, max: usize) -> usize {
        let spare = (self.growth / 2).saturating_sub(self.beyond_minimums()) / 8;
        let left = self.total.saturating_sub(self.promised);
        let quota = (MIN_QUOTA + spare)
            .min(START_QUOTA)
            .min(max)
            .min(left)
            .max(MIN_QUOTA);
        self.promised += quota;
        self.ports += 1;
        quota
    }

    /// A port of quota `quota` leaves.
    pub fn release(&mut self, quota: usize) {
        self.promised = self.promised.saturating_sub(quota);
        self.ports = self.ports.saturating_sub(1);
    }

    /// Doubles `quota`, up to `max`, if the promises allow it (leaving the minimums of
    /// the ports the UMEM was sized for that have not come yet).
    pub fn grow(&mut self, quota: &mut usize, max: usize) {
        let want = (*quota * 2).min(max.max(MIN_QUOTA));
        let more = want.saturating_sub(*quota);
        if more > 0 && self.promised + more + self.kept_for_newcomers() <= self.total {
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

    /// The default UMEM of a bridge sized for 1024 ports, rings of 2048.
    const SIZED: usize = 4 * 3 * 2048 + 1024 * MIN_QUOTA;
    const GROWTH: usize = 4 * 3 * 2048;

    #[test]
    fn every_port_the_umem_was_sized_for_is_admitted_whoever_came_first() {
        let mut b = Budget::new(SIZED, 0, GROWTH);
        let mut quotas: Vec<usize> = (0..2).map(|_| b.admit(2048)).collect();
        assert_eq!(quotas, [START_QUOTA, START_QUOTA]);
        // The first two ports are busy: they grow as far as they may.
        for q in &mut quotas {
            for _ in 0..10 {
                b.grow(q, 2048);
            }
        }
        assert_eq!(quotas, [2048, 2048]);
        let mut admitted = 2;
        while Budget::room(b.total(), b.promised()) {
            quotas.push(b.admit(2048));
            admitted += 1;
        }
        assert!(admitted >= 1024, "only {admitted} ports admitted");
        assert!(b.promised() <= b.total());
        // Starting quotas shrink as ports come, to the minimum.
        assert!(quotas[2..].windows(2).all(|w| w[0] >= w[1]), "{quotas:?}");
        assert_eq!(*quotas.last().unwrap(), MIN_QUOTA);
    }

    #[test]
    fn starting_quotas_come_out_of_half_the_growth_part() {
        let mut b = Budget::new(SIZED, 0, GROWTH);
        let quotas: Vec<usize> = (0..1024).map(|_| b.admit(2048)).collect();
        assert_eq!(quotas[0], START_QUOTA);
        let started = quotas.iter().filter(|&&q| q > MIN_QUOTA).count();
        assert!(started > 8, "{started} ports start above the minimum");
        let beyond: usize = quotas.iter().map(|q| q - MIN_QUOTA).sum();
        assert!(beyond <= GROWTH / 2, "{beyond} of {GROWTH}");
        assert!(b.promised() <= b.total());
        // The other half stays for busy ports to grow into, whoever came first.
        let mut busy = MIN_QUOTA;
        for _ in 0..6 {
            b.grow(&mut busy, 2048);
        }
        assert_eq!(busy, 2048, "promised {} of {}", b.promised(), b.total());
        assert_eq!(
            Budget::new(20_000, 0, 20_000).admit(256),
            256,
            "never past its ring"
        );
        assert_eq!(
            Budget::new(20_000, 0, 0).admit(2048),
            MIN_QUOTA,
            "no growth part: the minimum"
        );
    }

    #[test]
    fn ports_grow_only_out_of_what_no_port_was_promised() {
        let mut b = Budget::new(1000 + 100, 100, 1000);
        let (mut busy, mut other) = (b.admit(2048), b.admit(2048));
        assert_eq!((busy, other), (126, 118), "an eighth of half, then less");
        for _ in 0..10 {
            b.grow(&mut busy, 2048);
        }
        // 1000 - 118 for the other port: the busy one stops at 504 (the next double
        // does not fit).
        assert_eq!(busy, 504);
        assert_eq!(b.promised(), busy + other);
        // New ports take what is left, then none fits.
        let mut admitted = 0;
        while Budget::room(b.total(), b.promised()) {
            b.admit(2048);
            admitted += 1;
        }
        assert_eq!(admitted, (1000 - 504 - 118) / MIN_QUOTA);
        // The busy port keeps its quota; the other cannot grow now.
        b.grow(&mut other, 2048);
        assert_eq!(other, 118);
        assert!(b.promised() <= b.total());
    }

    #[test]
    fn a_port_admitted_with_room_never_takes_the_promises_past_the_total() {
        // All growth part (a UMEM too small for a sized port), as a small lab has it.
        let mut b = Budget::new(2048, 512, 3072);
        while Budget::room(b.total(), b.promised()) {
            b.admit(256);
            assert!(
                b.promised() <= b.total(),
                "{} of {}",
                b.promised(),
                b.total()
            );
        }
    }

    #[test]
    fn an_idle_port_shrinks_to_what_it_holds_and_gives_the_rest_back() {
        let mut b = Budget::new(10_000, 0, 10_000);
        let mut q = b.admit(2048);
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
