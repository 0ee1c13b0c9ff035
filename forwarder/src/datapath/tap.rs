//! Copies of frames for captures (and mirrors), taken by the workers on the frame path.
//!
//! The control plane sets, per port, which directions are tapped ([`Taps::set`]); a
//! worker reads that one byte per frame it decides (and per port per TX batch) and,
//! only where it is set, copies the frame into a [`Tapped`] record from its own ring's
//! free list and queues it (crossbeam's lock-free `ArrayQueue`, one pair per worker).
//! The control plane's capture thread drains the queues ([`Taps::drain`]) and gives the
//! records back. Nothing on the frame path waits or allocates for a tap (a record grows
//! once for a frame longer than it was made for): with no free record the frame is
//! only counted as lost ([`Taps::lost`]).
//!
//! The XDP program's fast path taps its own frames the same way into a BPF ring buffer
//! (`ebpf/src/tap.rs`); both carry the same [`Tapped`] facts.
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::switch::{DropReason, MAX_PORTS, PortId};

/// Tap the frames a port receives.
pub const IN: u8 = hairpin_common::tap::IN;
/// Tap the frames a port sends.
pub const OUT: u8 = hairpin_common::tap::OUT;

/// Records per worker: at a drain every millisecond, a million tapped frames a second
/// per worker before any is lost.
pub const RECORDS: usize = 1024;

/// What a record is made to hold before it grows: a full standard frame with a tag.
const RECORD_BYTES: usize = 2048;

/// One tapped frame.
#[derive(Debug, Default)]
pub struct Tapped {
    /// When it was tapped, in `CLOCK_MONOTONIC` nanoseconds (as the XDP program's
    /// `bpf_ktime_get_ns`).
    pub ts_ns: u64,
    /// The port.
    pub port: PortId,
    /// [`IN`] or [`OUT`].
    pub dir: u8,
    /// Why hairpin dropped it, if it did.
    pub reason: Option<DropReason>,
    /// Whether the XDP program's fast path carried it.
    pub fast: bool,
    /// Its bytes, whole.
    pub data: Vec<u8>,
}

/// One worker's queues of records.
#[derive(Debug)]
struct Ring {
    /// Tapped frames, for the capture thread.
    full: ArrayQueue<Tapped>,
    /// Records to tap into.
    free: ArrayQueue<Tapped>,
    /// Frames not tapped for want of a record, by port.
    lost: Box<[AtomicU64]>,
}

/// The tap settings of every port and each worker's records.
#[derive(Debug)]
pub struct Taps {
    /// By port: [`IN`] and/or [`OUT`].
    flags: Box<[AtomicU8]>,
    rings: Box<[Ring]>,
}

impl Taps {
    /// No port tapped, rings for `workers` workers (their records are made when the
    /// first tap is set, [`Taps::arm`]).
    pub fn new(workers: usize) -> Self {
        Self {
            flags: (0..MAX_PORTS).map(|_| AtomicU8::new(0)).collect(),
            rings: (0..workers)
                .map(|_| Ring {
                    full: ArrayQueue::new(RECORDS),
                    free: ArrayQueue::new(RECORDS),
                    lost: (0..MAX_PORTS).map(|_| AtomicU64::new(0)).collect(),
                })
                .collect(),
        }
    }

    /// Whether `port`'s frames in direction `dir` are tapped: the one read the frame
    /// path pays when nothing is.
    #[inline(always)]
    pub fn wants(&self, port: PortId, dir: u8) -> bool {
        self.flags[usize::from(port)].load(Ordering::Relaxed) & dir != 0
    }

    /// Taps `port`'s frames in the directions `dirs` ([`IN`] | [`OUT`]), none for 0.
    pub fn set(&self, port: PortId, dirs: u8) {
        self.flags[usize::from(port)].store(dirs, Ordering::Relaxed);
    }

    /// Makes every worker's records, once.
    pub fn arm(&self) {
        for ring in &self.rings {
            while ring.free.len() + ring.full.len() < RECORDS {
                let record = Tapped {
                    data: Vec::with_capacity(RECORD_BYTES),
                    ..Tapped::default()
                };
                if ring.free.push(record).is_err() {
                    break;
                }
            }
        }
    }

    /// Worker `worker` taps the frame whose bytes are `parts`, in order.
    #[inline(never)]
    pub fn take(
        &self,
        worker: usize,
        port: PortId,
        dir: u8,
        reason: Option<DropReason>,
        parts: &[&[u8]],
    ) {
        let ring = &self.rings[worker];
        let Some(mut record) = ring.free.pop() else {
            ring.lost[usize::from(port)].fetch_add(1, Ordering::Relaxed);
            return;
        };
        record.ts_ns = crate::sys::monotonic_ns();
        record.port = port;
        record.dir = dir;
        record.reason = reason;
        record.fast = false;
        record.data.clear();
        for part in parts {
            record.data.extend_from_slice(part);
        }
        // Never full: a ring's records are on one of its two queues, each as long as
        // there are records.
        let _ = ring.full.push(record);
    }

    /// Hands every tapped frame to `f`, worker by worker, and takes its record back.
    pub fn drain(&self, mut f: impl FnMut(&Tapped)) {
        for ring in &self.rings {
            // At most what was there at the start: a worker tapping flat out does not
            // keep the caller here.
            for _ in 0..ring.full.len() {
                let Some(record) = ring.full.pop() else { break };
                f(&record);
                let _ = ring.free.push(record);
            }
        }
    }

    /// Frames of `port` the workers could not tap for want of a record, so far.
    pub fn lost(&self, port: PortId) -> u64 {
        self.rings
            .iter()
            .map(|r| r.lost[usize::from(port)].load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_tapped_until_set_and_a_tap_is_drained_whole() {
        let taps = Taps::new(2);
        assert!(!taps.wants(3, IN));
        taps.set(3, IN | OUT);
        assert!(taps.wants(3, IN) && taps.wants(3, OUT) && !taps.wants(4, IN));
        // Not armed: no record, the frame is counted lost.
        taps.take(1, 3, IN, None, &[b"abc"]);
        assert_eq!(taps.lost(3), 1);
        taps.arm();
        taps.take(1, 3, OUT, Some(DropReason::Spoofed), &[b"ab", b"cd"]);
        let mut seen = Vec::new();
        taps.drain(|t| seen.push((t.port, t.dir, t.reason, t.data.clone())));
        assert_eq!(
            seen,
            [(3, OUT, Some(DropReason::Spoofed), b"abcd".to_vec())]
        );
        taps.set(3, 0);
        assert!(!taps.wants(3, IN));
    }

    #[test]
    fn a_full_ring_loses_frames_and_counts_them() {
        let taps = Taps::new(1);
        taps.arm();
        for _ in 0..RECORDS + 5 {
            taps.take(0, 7, IN, None, &[&[0u8; 60]]);
        }
        assert_eq!(taps.lost(7), 5);
        let mut n = 0;
        taps.drain(|_| n += 1);
        assert_eq!(n, RECORDS);
        // The records are back: taps go on.
        taps.take(0, 7, IN, None, &[&[0u8; 60]]);
        taps.drain(|_| n += 1);
        assert_eq!((n, taps.lost(7)), (RECORDS + 1, 5));
    }
}
