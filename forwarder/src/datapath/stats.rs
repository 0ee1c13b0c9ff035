//! Lock-free counters the workers write and the control thread reads.
//!
//! Every counter has exactly one writer, the worker that owns it, so an increment is a
//! relaxed load and store (no locked read-modify-write on the frame path); readers see a
//! value at most one batch old. Each worker's block sits behind its own `Arc`, so two
//! workers never write the same cache line.
use std::sync::atomic::{AtomicU64, Ordering};

use super::group::MAX_UMEMS;
use crate::switch::{DropReason, MAX_PORTS, PortId};

/// A counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Sets a gauge.
    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one port on one worker (that is, one queue of the port).
#[derive(Debug, Default)]
pub struct PortQueueCounters {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames put on the TX ring.
    pub tx_packets: Counter,
    /// Bytes put on the TX ring.
    pub tx_bytes: Counter,
    /// Extra copies made to flood a frame (one per egress port beyond the first).
    pub flood_copies: Counter,
    /// Frames received with a TCP or UDP checksum an offload left partial, finished
    /// here (`wire::checksum`; the fast path's own are merged into the snapshot).
    pub checksums_finished: Counter,
    /// Large TCP segments (an offload's, longer than the port's MTU) received and cut
    /// into segments the MTU admits (`wire::segment`).
    pub segmented: Counter,
    /// Frames handed to the worker owning the egress queue.
    pub handoff_out: Counter,
    /// Frames another worker handed here for this port.
    pub handoff_in: Counter,
    /// Drops, by [`DropReason`] (indexed by its discriminant).
    pub drops: [Counter; DropReason::COUNT],
    /// The kernel's drops for this socket (`XDP_STATISTICS`): frames lost because the
    /// RX ring was full (hairpin fell behind) ...
    pub kernel_rx_ring_full: Counter,
    /// ... or because the fill ring was empty (no free frame to receive into) ...
    pub kernel_fill_ring_empty: Counter,
    /// ... or dropped for another reason (too big for a frame, ...).
    pub kernel_rx_dropped: Counter,
}

impl PortQueueCounters {
    /// Counts one drop.
    #[inline]
    pub fn drop(&self, reason: DropReason) {
        self.drops[reason as usize].add(1);
    }
}

/// Every counter of one worker.
#[derive(Debug)]
pub struct WorkerCounters {
    /// Per port, indexed by [`PortId`].
    pub ports: Vec<PortQueueCounters>,
    /// Gauge: UMEM frames in the worker's free pool.
    pub free_frames: Counter,
    /// UMEM frames the worker owns in all.
    pub total_frames: Counter,
    /// Gauge: frames promised to its ports' fill rings (`datapath::budget`).
    pub promised_frames: Counter,
    /// Gauge: frames it may promise in all.
    pub budget_frames: Counter,
    /// Gauges, by group ([`super::group`]): frames promised, and that may be promised in
    /// all. The control plane places new ports by them.
    pub group_promised: Vec<Counter>,
    pub group_budget: Vec<Counter>,
    /// Gauge: UMEMs (groups) it has.
    pub umems: Counter,
    /// Times the worker went to sleep for lack of work.
    pub sleeps: Counter,
    /// Nanoseconds spent in turns that did work.
    pub busy_ns: Counter,
}

impl WorkerCounters {
    /// Counters for `ports` ports.
    pub fn new(ports: usize) -> Self {
        assert!(ports <= MAX_PORTS);
        Self {
            ports: (0..ports).map(|_| PortQueueCounters::default()).collect(),
            free_frames: Counter::default(),
            total_frames: Counter::default(),
            promised_frames: Counter::default(),
            budget_frames: Counter::default(),
            group_promised: (0..MAX_UMEMS).map(|_| Counter::default()).collect(),
            group_budget: (0..MAX_UMEMS).map(|_| Counter::default()).collect(),
            umems: Counter::default(),
            sleeps: Counter::default(),
            busy_ns: Counter::default(),
        }
    }

    /// The counters of `port`.
    #[inline]
    pub fn port(&self, port: PortId) -> &PortQueueCounters {
        &self.ports[port as usize]
    }
}

/// A plain copy of one [`PortQueueCounters`], for reports and sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortQueueSnapshot {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Flood copies.
    pub flood_copies: u64,
    /// Partial checksums finished.
    pub checksums_finished: u64,
    /// Large TCP segments cut to the port's MTU.
    pub segmented: u64,
    /// Frames handed to another worker.
    pub handoff_out: u64,
    /// Frames handed over by another worker.
    pub handoff_in: u64,
    /// Drops by reason.
    pub drops: [u64; DropReason::COUNT],
    /// Kernel: RX ring full.
    pub kernel_rx_ring_full: u64,
    /// Kernel: fill ring empty.
    pub kernel_fill_ring_empty: u64,
    /// Kernel: other RX drops.
    pub kernel_rx_dropped: u64,
    /// Of `rx_packets`, the frames the kernel fast path forwarded (no worker saw them).
    pub fast_rx_packets: u64,
    /// Of `rx_bytes`, theirs.
    pub fast_rx_bytes: u64,
    /// Of `tx_packets`, the frames the kernel fast path sent.
    pub fast_tx_packets: u64,
    /// Of `tx_bytes`, theirs.
    pub fast_tx_bytes: u64,
}

impl PortQueueSnapshot {
    /// Reads `c`.
    pub fn of(c: &PortQueueCounters) -> Self {
        Self {
            rx_packets: c.rx_packets.get(),
            rx_bytes: c.rx_bytes.get(),
            tx_packets: c.tx_packets.get(),
            tx_bytes: c.tx_bytes.get(),
            flood_copies: c.flood_copies.get(),
            checksums_finished: c.checksums_finished.get(),
            segmented: c.segmented.get(),
            handoff_out: c.handoff_out.get(),
            handoff_in: c.handoff_in.get(),
            drops: std::array::from_fn(|i| c.drops[i].get()),
            kernel_rx_ring_full: c.kernel_rx_ring_full.get(),
            kernel_fill_ring_empty: c.kernel_fill_ring_empty.get(),
            kernel_rx_dropped: c.kernel_rx_dropped.get(),
            ..Self::default()
        }
    }

    /// Merges in what the kernel fast path received (`rx`) and sent (`tx`), each as
    /// (frames, bytes): counted in the totals and apart.
    pub fn add_fast(&mut self, rx: (u64, u64), tx: (u64, u64)) {
        self.rx_packets += rx.0;
        self.rx_bytes += rx.1;
        self.tx_packets += tx.0;
        self.tx_bytes += tx.1;
        self.fast_rx_packets += rx.0;
        self.fast_rx_bytes += rx.1;
        self.fast_tx_packets += tx.0;
        self.fast_tx_bytes += tx.1;
    }

    /// Adds `other` into `self`.
    pub fn accumulate(&mut self, other: &Self) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.flood_copies += other.flood_copies;
        self.checksums_finished += other.checksums_finished;
        self.segmented += other.segmented;
        self.handoff_out += other.handoff_out;
        self.handoff_in += other.handoff_in;
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a += b;
        }
        self.kernel_rx_ring_full += other.kernel_rx_ring_full;
        self.kernel_fill_ring_empty += other.kernel_fill_ring_empty;
        self.kernel_rx_dropped += other.kernel_rx_dropped;
        self.fast_rx_packets += other.fast_rx_packets;
        self.fast_rx_bytes += other.fast_rx_bytes;
        self.fast_tx_packets += other.fast_tx_packets;
        self.fast_tx_bytes += other.fast_tx_bytes;
    }

    /// What was counted since `base` (an earlier snapshot of the same counters).
    #[must_use]
    pub fn since(&self, base: &Self) -> Self {
        Self {
            rx_packets: self.rx_packets.wrapping_sub(base.rx_packets),
            rx_bytes: self.rx_bytes.wrapping_sub(base.rx_bytes),
            tx_packets: self.tx_packets.wrapping_sub(base.tx_packets),
            tx_bytes: self.tx_bytes.wrapping_sub(base.tx_bytes),
            flood_copies: self.flood_copies.wrapping_sub(base.flood_copies),
            checksums_finished: self
                .checksums_finished
                .wrapping_sub(base.checksums_finished),
            segmented: self.segmented.wrapping_sub(base.segmented),
            handoff_out: self.handoff_out.wrapping_sub(base.handoff_out),
            handoff_in: self.handoff_in.wrapping_sub(base.handoff_in),
            drops: std::array::from_fn(|i| self.drops[i].wrapping_sub(base.drops[i])),
            kernel_rx_ring_full: self
                .kernel_rx_ring_full
                .wrapping_sub(base.kernel_rx_ring_full),
            kernel_fill_ring_empty: self
                .kernel_fill_ring_empty
                .wrapping_sub(base.kernel_fill_ring_empty),
            kernel_rx_dropped: self.kernel_rx_dropped.wrapping_sub(base.kernel_rx_dropped),
            fast_rx_packets: self.fast_rx_packets.wrapping_sub(base.fast_rx_packets),
            fast_rx_bytes: self.fast_rx_bytes.wrapping_sub(base.fast_rx_bytes),
            fast_tx_packets: self.fast_tx_packets.wrapping_sub(base.fast_tx_packets),
            fast_tx_bytes: self.fast_tx_bytes.wrapping_sub(base.fast_tx_bytes),
        }
    }

    /// Every drop counter, hairpin's and then the kernel's, by name.
    pub fn drop_counts(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let kernel = [
            ("kernel_rx_ring_full", self.kernel_rx_ring_full),
            ("kernel_fill_ring_empty", self.kernel_fill_ring_empty),
            ("kernel_rx_dropped", self.kernel_rx_dropped),
        ];
        DropReason::ALL
            .iter()
            .map(|r| r.name())
            .zip(self.drops)
            .chain(kernel)
    }

    /// All drops hairpin made (not counting the kernel's).
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// The drops that happened, hairpin's and then the kernel's, as `reason=count` pairs.
    pub fn drop_summary(&self) -> String {
        let parts: Vec<String> = self
            .drop_counts()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join(",")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_sum_and_summarise_drops() {
        let c = WorkerCounters::new(2);
        c.port(1).rx_packets.add(3);
        c.port(1).drop(DropReason::Runt);
        c.port(1).drop(DropReason::Runt);
        c.port(1).drop(DropReason::TxRingFull);
        c.port(1).kernel_rx_ring_full.set(7);
        let mut total = PortQueueSnapshot::of(c.port(1));
        total.accumulate(&PortQueueSnapshot::of(c.port(1)));
        assert_eq!(total.rx_packets, 6);
        assert_eq!(total.dropped(), 6);
        assert_eq!(
            total.drop_summary(),
            "runt=4,tx_ring_full=2,kernel_rx_ring_full=14"
        );
        assert_eq!(PortQueueSnapshot::of(c.port(0)).drop_summary(), "-");
    }
}
