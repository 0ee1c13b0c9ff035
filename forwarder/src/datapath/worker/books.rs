//! A worker's books, kept between batches: the gauges the control plane reads (free
//! frames, each group's budget), the quotas rebalanced, the frame ledger checked, the
//! kernel's per-socket drop counters copied in. None of it runs per frame.
//!
//! The ledger: every UMEM frame is always in exactly one place, its group's free pool,
//! a fill ring (or the RX ring behind it) or pending TX batch or TX ring (or the
//! completion ring behind it) of one of the group's ports, or lent to other workers.
//! Debug builds check those sums every turn ([`Worker::check_ledger`]).
use super::Worker;
use crate::datapath::group::MAX_UMEMS;

/// Turns between reads of the kernel's socket statistics (a syscall per socket).
pub(super) const KERNEL_STATS_TURNS: u32 = 4096;

/// Sockets whose kernel statistics one read covers, in rotation: a worker with hundreds
/// of ports does not stop for hundreds of syscalls at once.
pub(super) const KERNEL_STATS_SOCKETS: usize = 64;

impl Worker {
    /// Tells the control plane how many frames the pools hold, of how many.
    pub(super) fn publish_frames(&self) {
        let (mut free, mut total) = (0, 0);
        for g in self.groups.iter().flatten() {
            free += g.pool.len();
            total += g.total_frames;
        }
        self.counters.free_frames.set(free as u64);
        self.counters.total_frames.set(total as u64);
    }

    /// Halves the quota of every port that received nothing since the last look, and
    /// doubles that of every port that received its quota's worth or more: a steady
    /// stream deserves a deep fill ring, to ride out the turns the worker is late
    /// ([`crate::datapath::budget::Budget`]).
    pub(super) fn rebalance(&mut self) {
        for port in &mut self.ports {
            if port.closing.is_some() {
                continue;
            }
            let budget = &mut self.groups[port.group]
                .as_mut()
                .expect("a group lives while it has ports")
                .budget;
            if port.window == 0 {
                budget.shrink(&mut port.quota, port.in_fill);
            } else if port.window >= port.quota {
                budget.grow(&mut port.quota, self.ring);
            }
            port.window = 0;
        }
        self.publish_budget();
    }

    /// Tells the control plane how much of each group's budget is promised, and of
    /// all of them.
    pub(super) fn publish_budget(&self) {
        let (mut promised, mut total) = (0, 0);
        for (g, group) in self.groups.iter().enumerate() {
            let (p, t) = group
                .as_ref()
                .map_or((0, 0), |g| (g.budget.promised(), g.budget.total()));
            self.counters.group_promised[g].set(p as u64);
            self.counters.group_budget[g].set(t as u64);
            promised += p;
            total += t;
        }
        self.counters.promised_frames.set(promised as u64);
        self.counters.budget_frames.set(total as u64);
        self.counters
            .umems
            .set(self.groups.iter().flatten().count() as u64);
    }

    /// Debug builds: every frame is in exactly one place.
    pub(super) fn check_ledger(&self) {
        if cfg!(debug_assertions) {
            let mut placed = [0usize; MAX_UMEMS];
            for p in &self.ports {
                placed[p.group] += p.in_fill + p.in_tx + p.pending.len();
            }
            for (g, group) in self.groups.iter().enumerate() {
                let Some(group) = group else { continue };
                assert_eq!(
                    placed[g] + group.pool.len() + group.lent,
                    group.total_frames,
                    "worker {}: frames of UMEM {g} lost or duplicated",
                    self.index
                );
            }
        }
    }

    /// Copies the kernel's per-socket drop counters of the next `count` ports into
    /// ours.
    pub(super) fn read_kernel_stats(&mut self, count: usize) {
        let n = self.ports.len();
        for k in 0..count.min(n) {
            let port = &self.ports[(self.stats_cursor + k) % n];
            if let Ok(k) = port.socket.statistics() {
                let c = self.counters.port(port.id);
                c.kernel_rx_ring_full.set(k.rx_ring_full);
                c.kernel_fill_ring_empty.set(k.rx_fill_ring_empty_descs);
                // The kernel's rx_dropped includes the fill-ring misses counted above.
                c.kernel_rx_dropped
                    .set(k.rx_dropped.saturating_sub(k.rx_fill_ring_empty_descs));
            }
        }
        self.stats_cursor = (self.stats_cursor + count) % n.max(1);
    }
}
