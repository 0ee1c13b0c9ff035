//! The hot loop: one worker, one RSS queue index, one core, its UMEMs ([`Group`]s).
//!
//! This file holds only the per-frame path. Each turn of [`Worker::run`]
//! ([`Worker::turn`]):
//!
//! 1. takes up to [`BATCH`] frames from the RX ring of each socket it visits this turn
//!    (the ones with recent work and a few others in rotation, [`Visits`]), asks
//!    [`decide`] what to do with each, and queues it for its egress port — the same
//!    descriptor, no copy, where both ports are in one group; else a copy into a frame
//!    of the egress port's group — or hands a copy to the worker owning the egress queue;
//!    a jumbo frame is a chain of buffers ([`xsk::frames`]), decided on its first
//!    buffer (where a tag is pushed or popped too) and queued as the same chain;
//! 2. takes the frames other workers handed it;
//! 3. puts everything queued on the TX rings in one batch per port, then kicks the
//!    kernel where it asks;
//! 4. reaps TX completions into the free pool, refills the fill rings, lends credits;
//! 5. on a turn that found nothing, yields its core (`sched_yield`: the queue's NAPI
//!    thread or ksoftirqd, when they share it, fill the rings now); sleeps in `poll`
//!    after a stretch of idle turns (unless busy-polling).
//!
//! Between two turns it applies the control plane's commands from its mailbox and closes
//! the sockets of ports let go of (`worker/ports.rs`); every few thousand turns it reads
//! the kernel's drop counters and rebalances the ports' quotas, and every turn it
//! publishes its gauges (`worker/books.rs`); a partial checksum or a segment longer than
//! the MTU is finished or cut on the way (`worker/offload.rs`). No lock and no atomic
//! read-modify-write is taken per frame for any of this: a changed port table is a
//! pointer swap between batches.
//!
//! Each turn that received frames is timed from the first RX read to the last TX submit
//! (frames on the TX rings, before the kick) into the worker's latency histogram
//! ([`super::latency`]); whole busy turns, kicks included, into its busy-time counter.
//!
//! Every UMEM frame is always in exactly one place: its group's free pool, a fill ring
//! (or the RX ring behind it) or pending TX batch or TX ring (or the completion ring
//! behind it) of one of the group's ports, or lent to other workers. A port's pending
//! batch holds frames of its own group only. Debug builds check those sums every turn;
//! `free_frames` in the counters shows the pools.
//!
//! The tests (`worker/tests.rs`) run turns of real workers on fake sockets
//! (`datapath/fake.rs`), without root.
#![allow(unsafe_code)]

mod books;
mod offload;
mod ports;
mod taps;
#[cfg(test)]
mod tests;

use std::{
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Instant,
};

pub(super) use self::ports::WorkerPort;
use self::{
    books::{KERNEL_STATS_SOCKETS, KERNEL_STATS_TURNS},
    offload::finish_checksum,
    taps::{tap_frames, tap_sent},
};
use super::{
    command::Reply,
    group::Group,
    handoff::Mailbox,
    latency::Recorder,
    retag::retag_in_place,
    stats::{PortQueueCounters, WorkerCounters},
    tap::{self, Taps},
    visits::Visits,
    xsk::{self, Desc, Kick, MAX_CHAIN, Umem},
};
use crate::{
    switch::{
        Action, DropReason, MAX_PORTS, Now, PortId, Tables, Verdict, decide_metered,
        vlan::{self, Classified, Retag},
    },
    sys,
    wire::{ETHERNET_HEADER_LEN, dot1q::TAG_LEN},
};

/// Frames taken from a ring at once.
pub const BATCH: usize = 64;

/// The UMEM of each of a worker's groups, by index (`None`: no group there).
type Umems = [Option<Arc<Umem>>];

/// The UMEM of group `g`, which has ports.
#[inline]
fn umem_of(umems: &Umems, g: usize) -> &Umem {
    umems[g]
        .as_deref()
        .expect("a group lives while it has ports")
}

// A port's least quota is one RX batch.
const _: () = assert!(super::budget::MIN_QUOTA == BATCH);

/// Descriptors taken from an RX ring at once at most: a batch, and the rest of a chain
/// that began in it.
const RX_BATCH: usize = BATCH + MAX_CHAIN;

/// Idle turns before the worker sleeps in `poll`.
const SPIN_TURNS: u32 = 512;

/// Longest sleep, so that a stop request is seen promptly.
const SLEEP_MS: i32 = 20;

/// Frames the kernel may take per TX kick in copy mode is bounded; kicks per turn are too.
const MAX_KICKS: usize = 16;

/// Where a frame for some port goes from this worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Through this worker's own socket `ports[i]`.
    Local(usize),
    /// Handed to worker `w`, which owns a queue of that port.
    Remote(usize),
    /// No such port (any more): dropped.
    Gone,
}

/// A worker and everything it owns.
#[derive(Debug)]
pub(super) struct Worker {
    pub index: usize,
    /// Its UMEMs, by index; the first lives as long as the worker, the others while
    /// they have ports ([`super::group`]).
    pub groups: Vec<Option<Group>>,
    pub ports: Vec<WorkerPort>,
    /// By [`PortId`].
    pub routes: [Route; MAX_PORTS],
    /// RX queues of each port, by [`PortId`] (0: no port).
    pub queues: [u32; MAX_PORTS],
    /// Where command acknowledgements go.
    pub replies: mpsc::Sender<Reply>,
    /// Commands are numbered in the order they arrive, as the sender numbers them.
    pub seq: u64,
    pub tables: Arc<Tables>,
    /// Which ports' frames are copied for captures, and the rings they go to.
    pub taps: Arc<Taps>,
    pub mailboxes: Arc<[Mailbox]>,
    pub counters: Arc<WorkerCounters>,
    pub stop: Arc<AtomicBool>,
    pub epoch: Instant,
    /// Never sleep: spin on the rings (a dedicated core, lowest latency).
    pub busy_poll: bool,
    /// Time from reading the RX rings to submitting the TX rings, per busy turn.
    pub latency: Recorder,
    /// The longest chain any of its ports takes ([`WorkerPort::max_chain`]): what its
    /// mailbox accepts from other workers.
    pub max_chain: usize,
    /// Entries of every ring: the most a port's quota grows to.
    pub ring: usize,
    /// Which ports each turn looks at.
    pub visits: Visits,
    /// Ports closing now.
    pub closing: usize,
    /// The next port whose kernel statistics are read.
    pub stats_cursor: usize,
}

/// What [`Worker::run`] keeps from one turn to the next besides the worker itself.
#[derive(Debug)]
struct Turns {
    /// A second handle to each group's UMEM ([`Worker::umems`]), made again when the
    /// groups change.
    umems: Vec<Option<Arc<Umem>>>,
    /// One RX batch's descriptors.
    batch: [Desc; RX_BATCH],
    /// What the worker sleeps on ([`Worker::pollfds`]), made again when the sockets
    /// change.
    pollfds: Vec<libc::pollfd>,
    /// Turns so far.
    count: u32,
}

impl Worker {
    /// Fills every fill ring before the first frame can arrive.
    pub fn prime(&mut self) {
        self.visits.reset(self.ports.len());
        for i in 0..self.ports.len() {
            self.refill(i);
        }
        self.lend_credits();
        self.publish_frames();
        self.publish_budget();
    }

    /// The UMEM of each group, by index: a second handle to each, so frame data can be
    /// read while `self` is borrowed mutably to queue it.
    fn umems(&self) -> Vec<Option<Arc<Umem>>> {
        self.groups
            .iter()
            .map(|g| g.as_ref().map(|g| Arc::clone(&g.umem)))
            .collect()
    }

    /// Group `g`, which has ports (or is the first).
    #[inline]
    fn group(&mut self, g: usize) -> &mut Group {
        self.groups[g]
            .as_mut()
            .expect("a group lives while it has ports")
    }

    /// The frames of `chain`, of group `g`, are free again.
    #[inline]
    fn free(&mut self, g: usize, chain: &[Desc]) {
        self.group(g).pool.extend_from_slice(chain);
    }

    /// Runs until the stop flag is set.
    pub fn run(mut self) {
        let mut turns = self.turns();
        let mut idle = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            let work = self.turn(&mut turns);
            if work > 0
                || self
                    .visits
                    .awake()
                    .iter()
                    .any(|&i| self.ports[i].tx_backlog)
            {
                idle = 0;
            } else {
                idle += 1;
                // Nothing came: whatever else may run on this core runs now. That is
                // the kernel's receive work when the queue's NAPI (a NAPI thread, or
                // ksoftirqd) shares the worker's core, which would otherwise wait for
                // the scheduler's time slice while the rings it fills overflow. Alone
                // on its core, the call returns at once.
                std::thread::yield_now();
                if idle >= SPIN_TURNS {
                    idle = 0;
                    // The last busy turns are seen while the worker idles, not only at
                    // its next busy turn.
                    self.latency.flush(Instant::now());
                    if !self.busy_poll {
                        let pollfds = &mut turns.pollfds;
                        self.sleep(pollfds);
                        // The sockets that woke it are visited at once.
                        for (i, fd) in pollfds[..self.ports.len()].iter().enumerate() {
                            if fd.revents != 0 {
                                self.visits.wake(i);
                            }
                        }
                    }
                }
            }
        }
        self.read_kernel_stats(self.ports.len());
        self.latency.flush(Instant::now());
        // Every socket at once: each close waits for the kernel (`sys::in_parallel`).
        let ports = std::mem::take(&mut self.ports);
        sys::in_parallel(ports.into_iter().map(|p| p.socket).collect(), drop);
    }

    /// What the loop keeps from turn to turn, for the ports as they are.
    fn turns(&self) -> Turns {
        Turns {
            umems: self.umems(),
            batch: [Desc::default(); RX_BATCH],
            pollfds: self.pollfds(),
            count: 0,
        }
    }

    /// One turn: the commands and closings due, then every step of the module docs but
    /// the sleep. Returns the work done (descriptors received, frames taken over and
    /// sent, completions reaped).
    #[inline(always)]
    fn turn(&mut self, turns: &mut Turns) -> usize {
        turns.count = turns.count.wrapping_add(1);
        if self.apply_commands() | self.finish_closing() {
            turns.pollfds = self.pollfds();
            turns.umems = self.umems();
            self.visits.reset(self.ports.len());
        }
        if turns.count.is_multiple_of(KERNEL_STATS_TURNS) {
            self.read_kernel_stats(KERNEL_STATS_SOCKETS);
            self.rebalance();
        }
        let umems = &turns.umems;
        let start = Instant::now();
        let now = Now::at(start, self.epoch);
        let mut work = 0;
        let mut wake = 0u64;
        self.visits.plan();
        for k in 0..self.visits.turn().len() {
            let i = self.visits.turn()[k];
            work += self.receive(umems, i, &mut turns.batch, now, &mut wake);
        }
        let received = work;
        for w in 0..self.mailboxes.len() {
            if wake & (1 << w) != 0 {
                self.mailboxes[w].wake();
            }
        }
        work += self.take_handoffs(umems);
        work += self.submit();
        if received > 0 {
            // In user space: from the RX read to the frames being on the TX rings.
            let submitted = Instant::now();
            self.latency
                .record(submitted.duration_since(start).as_nanos() as u64, submitted);
        }
        self.kick();
        work += self.complete();
        for k in 0..self.visits.turn().len() {
            self.refill(self.visits.turn()[k]);
        }
        self.lend_credits();
        self.check_ledger();
        self.publish_frames();
        if work > 0 {
            self.counters.busy_ns.add(start.elapsed().as_nanos() as u64);
        }
        let ports = &self.ports;
        self.visits.settle(|i| {
            let p = &ports[i];
            p.in_tx > 0 || p.tx_backlog || p.closing.is_some()
        });
        work
    }

    /// What the worker sleeps on: its sockets and its mailbox's eventfd.
    fn pollfds(&self) -> Vec<libc::pollfd> {
        self.ports
            .iter()
            .map(|p| p.socket.as_raw_fd())
            .chain([self.mailboxes[self.index].wake_fd().raw()])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect()
    }

    /// Takes one RX batch from `ports[i]` and decides every frame in it; returns how
    /// many descriptors it took.
    #[inline]
    fn receive(
        &mut self,
        umems: &Umems,
        i: usize,
        batch: &mut [Desc; RX_BATCH],
        now: Now,
        wake: &mut u64,
    ) -> usize {
        let port = &mut self.ports[i];
        let from = port.group;
        let group = self.groups[from]
            .as_mut()
            .expect("a group lives while it has ports");
        let rx = &mut port.socket.rx;
        let available = rx.available() as usize;
        if available == 0 {
            return 0;
        }
        port.hungry |= available * 4 >= port.quota;
        let ready = available.min(RX_BATCH);
        // Whole frames only: the kernel publishes a chain's buffers together, and one
        // not yet whole waits for the next turn.
        let (mut n, mut whole) = (0, 0);
        while n < ready {
            batch[n] = xsk::from_xdp(rx.get(n as u32));
            n += 1;
            if !batch[n - 1].more {
                whole = n;
                if n >= BATCH {
                    break;
                }
            }
        }
        let counters = Arc::clone(&self.counters);
        let c = counters.port(port.id);
        let taken = if port.discarding || (whole == 0 && n == RX_BATCH) {
            // A chain longer than a whole RX batch (far over MAX_CHAIN): dropped buffer by
            // buffer as it comes, counted once, at its end.
            let end = batch[..n].iter().position(|d| !d.more).map_or(n, |p| p + 1);
            port.discarding = batch[end - 1].more;
            if !port.discarding {
                c.drop(DropReason::Oversize);
            }
            whole = 0;
            end
        } else {
            whole
        };
        if taken == 0 {
            return 0; // a chain not yet whole
        }
        for desc in &batch[..taken] {
            group.holders.take(desc.addr);
        }
        rx.release(taken as u32);
        port.in_fill -= taken;
        port.window += taken;
        self.visits.wake(i);
        let (ingress, max_chain, mtu) = (port.id, port.max_chain, port.mtu as usize);
        if whole == 0 {
            group.pool.extend_from_slice(&batch[..taken]);
            return taken;
        }
        if port.closing.is_some() {
            let frames = batch[..taken].iter().filter(|d| !d.more).count();
            c.drops[DropReason::PortDown as usize].add(frames as u64);
            group.pool.extend_from_slice(&batch[..taken]);
            return taken;
        }
        let (mut frames, mut bytes) = (0, 0);
        for chain in xsk::frames(&batch[..whole]) {
            frames += 1;
            let len = chain.iter().map(|d| d.len as usize).sum::<usize>();
            bytes += len as u64;
            // Longer than its sender could put on the wire: an offload's large segment
            // (an MTU of 0 says nothing).
            if mtu != 0
                && len > mtu + ETHERNET_HEADER_LEN
                && self.cut(umems, from, chain, len, ingress, c, mtu, now, wake)
            {
                self.free(from, chain);
                continue;
            }
            if chain.len() > max_chain {
                c.drop(DropReason::Oversize);
                self.free(from, chain);
                continue;
            }
            self.forward(umems, from, chain, len, ingress, c, now, wake);
        }
        c.rx_packets.add(frames);
        c.rx_bytes.add(bytes);
        whole
    }

    /// Decides the frame `chain` of group `from`, `len` bytes received on `ingress`
    /// (counted in `c`) within its limits, and queues it (or its copies) or drops it.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn forward(
        &mut self,
        umems: &Umems,
        from: usize,
        chain: &[Desc],
        len: usize,
        ingress: PortId,
        c: &PortQueueCounters,
        now: Now,
        wake: &mut u64,
    ) {
        let umem = umem_of(umems, from);
        // SAFETY: the chain came off this worker's RX ring (or was written from its pool),
        // so its buffers are frames of `umem` the worker owns; nothing writes them until
        // they are queued again.
        let data = unsafe { umem.data(chain[0]) };
        let verdict = decide_metered(&self.tables, data, len, ingress, now);
        if self.taps.wants(ingress, tap::IN) {
            let reason = match verdict.action {
                Action::Drop(reason) => Some(reason),
                _ => None,
            };
            // SAFETY: as above; the chain is as received (nothing changed it yet).
            unsafe {
                tap_frames(
                    &self.taps,
                    self.index,
                    umem,
                    chain,
                    ingress,
                    tap::IN,
                    reason,
                )
            };
        }
        if !matches!(verdict.action, Action::Drop(_)) && finish_checksum(umem, chain) {
            c.checksums_finished.add(1);
        }
        self.dispatch(umems, from, chain, verdict, c, wake);
    }

    /// Queues the frame `chain` of group `from` (or its copies) as `verdict` says, or
    /// drops it.
    #[inline(always)]
    fn dispatch(
        &mut self,
        umems: &Umems,
        from: usize,
        chain: &[Desc],
        verdict: Verdict,
        c: &PortQueueCounters,
        wake: &mut u64,
    ) {
        match verdict.action {
            Action::Forward(egress) => self.send(umems, from, chain, egress, verdict.vlan, wake),
            Action::Flood(ports) => {
                // One port gets the received frame itself, once every copy is made: the
                // last of its own UMEM's (no copy at all), else the last.
                let routes = &self.routes;
                let keep = ports
                    .iter()
                    .filter(|&p| {
                        matches!(routes[usize::from(p)],
                            Route::Local(j) if self.ports[j].group == from)
                    })
                    .last()
                    .or_else(|| ports.iter().last());
                for egress in ports.iter().filter(|&p| Some(p) != keep) {
                    let retag = self.tables.vlans.retag(verdict.vlan, egress);
                    if self.copy_to(umems, from, chain, egress, retag, wake) {
                        c.flood_copies.add(1);
                    }
                }
                match keep {
                    Some(egress) => self.send(umems, from, chain, egress, verdict.vlan, wake),
                    None => self.free(from, chain),
                }
            }
            Action::Drop(reason) => {
                c.drop(reason);
                self.free(from, chain);
            }
        }
    }

    /// Queues the frame `chain` of group `from`, of VLAN `vlan`, for `egress`:
    /// retagged in place on the local TX batch where the egress port is of the same
    /// group, else as a copy into the egress port's group or handed to the worker that
    /// owns the port's queue.
    #[inline]
    fn send(
        &mut self,
        umems: &Umems,
        from: usize,
        chain: &[Desc],
        egress: PortId,
        vlan: Classified,
        wake: &mut u64,
    ) {
        match self.routes[egress as usize] {
            // A zero-copy egress may transmit shorter chains than the ingress takes.
            Route::Local(j) if chain.len() > self.ports[j].max_chain => {
                self.counters.port(egress).drop(DropReason::Oversize);
                self.free(from, chain);
            }
            Route::Local(j) if self.ports[j].group == from => {
                let retag = self.tables.vlans.retag(vlan, egress);
                // SAFETY: the worker owns the chain (off its RX ring, on no other queue),
                // and no slice of it is alive.
                match unsafe { retag_in_place(umem_of(umems, from), chain[0], retag) } {
                    Some(first) => {
                        let pending = &mut self.ports[j].pending;
                        pending.push(first);
                        pending.extend_from_slice(&chain[1..]);
                        self.visits.wake(j);
                    }
                    None => {
                        self.counters.port(egress).drop(DropReason::NoHeadroom);
                        self.free(from, chain);
                    }
                }
            }
            // Another group's UMEM, or another worker's.
            Route::Local(_) | Route::Remote(_) => {
                let retag = self.tables.vlans.retag(vlan, egress);
                self.copy_to(umems, from, chain, egress, retag, wake);
                self.free(from, chain);
            }
            Route::Gone => {
                self.counters.port(egress).drop(DropReason::PortDown);
                self.free(from, chain);
            }
        }
    }

    /// Queues a copy of the frame `chain` of group `from`, retagged as `retag` says,
    /// for `egress`. Returns whether a copy was queued.
    fn copy_to(
        &mut self,
        umems: &Umems,
        from: usize,
        chain: &[Desc],
        egress: PortId,
        retag: Retag,
        wake: &mut u64,
    ) -> bool {
        let c = self.counters.port(egress);
        let umem = umem_of(umems, from);
        let mut tag = [0; TAG_LEN];
        // SAFETY: the worker owns the chain (see `receive`); these slices end before
        // it is queued or freed.
        let first = unsafe { umem.data(chain[0]) };
        let head = vlan::retagged_parts(first, retag, &mut tag);
        let mut parts: [&[u8]; MAX_CHAIN + 2] = [&[]; MAX_CHAIN + 2];
        parts[..3].copy_from_slice(&head);
        for (part, &buffer) in parts[3..].iter_mut().zip(&chain[1..]) {
            // SAFETY: as above.
            *part = unsafe { umem.data(buffer) };
        }
        let parts = &parts[..chain.len() + 2];
        match self.routes[egress as usize] {
            Route::Local(j) => {
                let to = self.ports[j].group;
                let umem = umem_of(umems, to);
                let len = parts.iter().map(|p| p.len()).sum();
                let buffers = umem.buffers_for(len);
                if buffers > self.ports[j].max_chain {
                    c.drop(DropReason::Oversize);
                    self.tap_dropped(egress, parts, DropReason::Oversize);
                    return false;
                }
                let mut copy = [Desc::default(); MAX_CHAIN];
                let copy = &mut copy[..buffers];
                let group = self.groups[to]
                    .as_mut()
                    .expect("a group lives while it has ports");
                if !group.take(copy) {
                    c.drop(DropReason::NoFreeFrame);
                    self.tap_dropped(egress, parts, DropReason::NoFreeFrame);
                    return false;
                }
                // SAFETY: the frames came from the egress group's free pool, so they are
                // frames of its `umem` that nothing else holds (and none of `chain`).
                unsafe { umem.write_chain(copy, parts) };
                self.ports[j].pending.extend_from_slice(copy);
                self.visits.wake(j);
                true
            }
            Route::Remote(w) => {
                let mailbox = &self.mailboxes[w];
                if mailbox.send(parts, egress, mailbox.max_chain()) {
                    c.handoff_out.add(1);
                    *wake |= 1 << w;
                    true
                } else {
                    c.drop(DropReason::HandoffFull);
                    self.tap_dropped(egress, parts, DropReason::HandoffFull);
                    false
                }
            }
            Route::Gone => {
                c.drop(DropReason::PortDown);
                self.tap_dropped(egress, parts, DropReason::PortDown);
                false
            }
        }
    }

    /// Queues the frames other workers handed over (frames of the first group, which
    /// lent them), copied once more where the egress port is of another group.
    fn take_handoffs(&mut self, umems: &Umems) -> usize {
        let mut chain = [Desc::default(); MAX_CHAIN];
        let mut n = 0;
        while n < BATCH * 4 {
            let mailbox = &self.mailboxes[self.index];
            let Some((first, egress)) = mailbox.inbound.pop() else {
                break;
            };
            // SAFETY: `first` came off this worker's inbound queue: the chain is ours.
            let buffers = unsafe { mailbox.chain(first, &mut chain) };
            let chain = &chain[..buffers];
            n += 1;
            self.group(0).lent -= buffers;
            match self.routes[egress as usize] {
                Route::Local(j) if chain.len() > self.ports[j].max_chain => {
                    self.counters.port(egress).drop(DropReason::Oversize);
                    self.free(0, chain);
                }
                Route::Local(j) if self.ports[j].group == 0 => {
                    self.counters.port(egress).handoff_in.add(1);
                    self.ports[j].pending.extend_from_slice(chain);
                    self.visits.wake(j);
                }
                Route::Local(_) => {
                    // Retagged by its sender already.
                    if self.copy_to(umems, 0, chain, egress, Retag::Keep, &mut 0) {
                        self.counters.port(egress).handoff_in.add(1);
                    }
                    self.free(0, chain);
                }
                // A port that left while the frame was on its way.
                Route::Remote(_) | Route::Gone => {
                    self.counters.port(egress).drop(DropReason::PortDown);
                    self.free(0, chain);
                }
            }
        }
        n
    }

    /// Puts the pending batches on the TX rings: whole frames only, a chain never split
    /// between two turns.
    fn submit(&mut self) -> usize {
        let mut sent = 0;
        for &i in self.visits.awake() {
            let port = &mut self.ports[i];
            if port.pending.is_empty() {
                continue;
            }
            let group = self.groups[port.group]
                .as_mut()
                .expect("a group lives while it has ports");
            let c = self.counters.port(port.id);
            if port.closing.is_some() {
                let frames = xsk::frames(&port.pending).count();
                c.drops[DropReason::PortDown as usize].add(frames as u64);
                group.pool.append(&mut port.pending);
                continue;
            }
            let want = port.pending.len();
            let tx = &mut port.socket.tx;
            let tapped = self.taps.wants(port.id, tap::OUT);
            let mut n = want.min(tx.free(want as u32) as usize);
            if n < want {
                // Back to the end of the last whole frame that fits.
                n = port.pending[..n]
                    .iter()
                    .rposition(|d| !d.more)
                    .map_or(0, |p| p + 1);
            }
            if tapped {
                // SAFETY: every pending descriptor is a frame of the port's group's UMEM
                // the worker owns (below), retagged already; nothing writes it now.
                unsafe {
                    tap_sent(
                        &self.taps,
                        self.index,
                        &group.umem,
                        &port.pending,
                        n,
                        port.id,
                    )
                };
            }
            if n > 0 {
                // Every pending descriptor is a frame of the port's group's UMEM, held
                // by nothing else since it left the RX ring, the pool or a mailbox.
                let (mut frames, mut bytes) = (0, 0);
                for &desc in &port.pending[..n] {
                    tx.push(xsk::to_xdp(desc));
                    group.holders.give(desc.addr, port.id);
                    bytes += u64::from(desc.len);
                    frames += u64::from(!desc.more);
                }
                tx.publish();
                port.in_tx += n;
                port.tx_backlog = true;
                c.tx_packets.add(frames);
                c.tx_bytes.add(bytes);
                sent += frames as usize;
            }
            for _ in xsk::frames(&port.pending[n..]) {
                c.drop(DropReason::TxRingFull);
            }
            group.pool.extend(port.pending.drain(n..));
            port.pending.clear();
        }
        sent
    }

    /// Kicks the kernel to transmit what the TX rings hold, where it asks for a kick.
    fn kick(&mut self) {
        for k in 0..self.visits.awake().len() {
            let i = self.visits.awake()[k];
            let port = &mut self.ports[i];
            if !port.tx_backlog {
                continue;
            }
            port.tx_backlog = false;
            if !port.socket.tx.needs_wakeup() {
                continue;
            }
            for _ in 0..MAX_KICKS {
                match self.ports[i].socket.kick_tx() {
                    Kick::Done | Kick::Failed => break,
                    Kick::Again => {
                        self.ports[i].tx_backlog = true;
                        // Room on the completion ring lets the kernel go on.
                        self.reap(i);
                    }
                }
            }
        }
    }

    /// Reaps TX completions into the free pool.
    fn complete(&mut self) -> usize {
        let mut n = 0;
        for k in 0..self.visits.awake().len() {
            let i = self.visits.awake()[k];
            if self.ports[i].in_tx > 0 {
                n += self.reap(i);
            }
        }
        n
    }

    /// Moves the completions of `ports[i]` into the free pool; returns how many.
    fn reap(&mut self, i: usize) -> usize {
        let port = &mut self.ports[i];
        let group = self.groups[port.group]
            .as_mut()
            .expect("a group lives while it has ports");
        let comp = &mut port.socket.comp;
        let n = comp.available();
        for j in 0..n {
            // The kernel returns the address that was transmitted, which a pushed or
            // popped tag moved within its chunk.
            let addr = comp.get(j);
            group.holders.take(addr);
            group.pool.push(group.umem.reset(Desc::new(addr, 0)));
        }
        comp.release(n);
        self.ports[i].in_tx -= n as usize;
        n as usize
    }

    /// Tops the fill ring of `ports[i]` up from the pool.
    ///
    /// The target is the ring's free room, not a count of frames "with the kernel": frames
    /// waiting on the RX ring do not help the kernel receive the next one.
    fn refill(&mut self, i: usize) {
        let port = &mut self.ports[i];
        if port.closing.is_some() {
            return;
        }
        let group = self.groups[port.group]
            .as_mut()
            .expect("a group lives while it has ports");
        // A quarter of its quota waited on its RX ring at once: it may need more.
        if port.hungry {
            let before = port.quota;
            group.budget.grow(&mut port.quota, self.ring);
            if port.quota != before {
                let grown = (port.quota - before) as u64;
                let promised = &self.counters.promised_frames;
                promised.set(promised.get() + grown);
                self.counters.group_promised[port.group].set(group.budget.promised() as u64);
            }
        }
        port.hungry = false;
        // Not worth a ring operation yet (an idle port's ring is not even read).
        let want = port.quota.saturating_sub(port.in_fill);
        let worth = BATCH.min(port.quota / 2);
        if want == 0 || (want < worth && port.in_fill > 0) {
            return;
        }
        let fill = &mut port.socket.fill;
        let n = (fill.free(BATCH as u32) as usize)
            .min(group.pool.len())
            .min(want);
        if n == 0 || (n < worth && port.in_fill > 0) {
            return;
        }
        // Pool frames are frames of the group's UMEM that nothing else holds.
        let at = group.pool.len() - n;
        for desc in group.pool.drain(at..) {
            fill.push(group.umem.chunk(desc.addr));
            group.holders.give(desc.addr, port.id);
        }
        fill.publish();
        port.in_fill += n;
        if fill.needs_wakeup() {
            // Zero-copy drivers sleep until poked; copy mode never sets the flag.
            port.socket.wake_rx();
        }
    }

    /// Publishes free frames for other workers to hand frames over in.
    fn lend_credits(&mut self) {
        if self.mailboxes.len() < 2 {
            return;
        }
        let credits = &self.mailboxes[self.index].credits;
        let first = self.groups[0].as_mut().expect("the first group lives");
        while first.lent < super::handoff::CREDITS {
            let Some(desc) = first.pool.pop() else { break };
            if let Err(desc) = credits.push(desc) {
                first.pool.push(desc);
                break;
            }
            first.lent += 1;
        }
    }

    /// Sleeps until a socket has frames, another worker hands some over, or the timeout.
    fn sleep(&mut self, pollfds: &mut [libc::pollfd]) {
        self.read_kernel_stats(KERNEL_STATS_SOCKETS);
        let mailbox = &self.mailboxes[self.index];
        if !mailbox.prepare_sleep() {
            return;
        }
        self.counters.sleeps.add(1);
        sys::poll(pollfds, SLEEP_MS);
        mailbox.woke();
    }
}
