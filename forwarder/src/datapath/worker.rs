//! The hot loop: one worker, one RSS queue index, one core, its UMEMs ([`Group`]s).
//!
//! This file holds only the per-frame path. Each turn of [`Worker::run`]:
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
//! 5. sleeps in `poll` after a stretch of idle turns (unless busy-polling).
//!
//! Between two turns it applies the control plane's [`Command`]s from its mailbox: new
//! [`Tables`], a port's socket to serve, a port to let go of. A port let go of is
//! *closing* for a few turns: nothing more is sent to it or refilled, what it receives is
//! dropped, its TX ring drains; then its socket closes and every frame it still held
//! comes back to the pool ([`Holders`]). No lock and no atomic read-modify-write is taken
//! per frame for any of this: a changed port table is a pointer swap between batches.
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
#![allow(unsafe_code)]

use std::{
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use super::{
    command::{Command, Joining, Reply},
    group::{Group, MAX_UMEMS},
    handoff::Mailbox,
    latency::Recorder,
    retag::retag_in_place,
    stats::{PortQueueCounters, WorkerCounters},
    visits::Visits,
    xsk::{self, Desc, Kick, MAX_CHAIN, Socket, Umem},
};
use crate::{
    switch::{
        Action, DropReason, MAX_PORTS, PortId, Tables, Verdict, decide,
        vlan::{self, Classified, Retag},
    },
    sys,
    wire::{
        ETHERNET_HEADER_LEN, checksum,
        dot1q::{self, TAG_LEN},
        segment::{Cutter, MAX_HEADERS, Uncuttable},
    },
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

/// Turns between reads of the kernel's socket statistics (a syscall per socket).
const KERNEL_STATS_TURNS: u32 = 4096;

/// Sockets whose kernel statistics one read covers, in rotation: a worker with hundreds
/// of ports does not stop for hundreds of syscalls at once.
const KERNEL_STATS_SOCKETS: usize = 64;

/// Frames the kernel may take per TX kick in copy mode is bounded; kicks per turn are too.
const MAX_KICKS: usize = 16;

/// A closing socket stays open at least this long, so that a frame the kernel was
/// already steering to it (on another CPU, as its map entry went) lands on its ring.
const CLOSE_GRACE: Duration = Duration::from_millis(20);

/// ... and at most this long waiting for its TX ring to drain (a deleted device's never
/// does).
const CLOSE_DRAIN: Duration = Duration::from_millis(500);

/// One (port, queue) socket of a worker.
#[derive(Debug)]
pub(super) struct WorkerPort {
    pub id: PortId,
    pub socket: Socket,
    /// The group whose UMEM its socket is bound to: every frame it holds is of it.
    pub group: usize,
    /// Frames decided for this port this turn, not yet on the TX ring.
    pub pending: Vec<Desc>,
    /// Frames on the fill ring or in the RX ring behind it.
    pub in_fill: usize,
    /// Frames on the TX ring or in the completion ring behind it.
    pub in_tx: usize,
    /// Frames were submitted and not yet kicked, or the last kick stopped early.
    pub tx_backlog: bool,
    /// Since when the port has been leaving (see the module docs).
    pub closing: Option<Instant>,
    /// The number of the `Detach` that made it leave, answered once its socket closed.
    pub detach_seq: u64,
    /// Dropping the rest of a chain far longer than [`MAX_CHAIN`].
    pub discarding: bool,
    /// The most buffers a frame it receives or sends may take.
    pub max_chain: usize,
    /// Its MTU: a TCP segment longer is an offload's, cut to it ([`Worker::cut`]).
    pub mtu: u32,
    /// Frames its fill and RX rings may hold together ([`Budget`]).
    pub quota: usize,
    /// Its RX ring held a quarter of its quota or more at once since its last refill:
    /// the kernel drains its fill ring faster than a turn refills it.
    pub hungry: bool,
    /// Frames received since the last look at idle ports.
    pub window: usize,
}

impl WorkerPort {
    /// A port of MTU `mtu` served through `socket` on group `group`'s UMEM, whose
    /// frames take at most `max_chain` buffers, with a quota of `quota` frames, nothing
    /// on its rings yet.
    pub fn new(
        id: PortId,
        socket: Socket,
        group: usize,
        max_chain: usize,
        mtu: u32,
        quota: usize,
    ) -> Self {
        Self {
            id,
            socket,
            group,
            pending: Vec::with_capacity(4 * BATCH),
            in_fill: 0,
            in_tx: 0,
            tx_backlog: false,
            closing: None,
            detach_seq: 0,
            discarding: false,
            max_chain,
            mtu,
            quota,
            hungry: false,
            window: 0,
        }
    }
}

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

    /// Tells the control plane how many frames the pools hold, of how many.
    fn publish_frames(&self) {
        let (mut free, mut total) = (0, 0);
        for g in self.groups.iter().flatten() {
            free += g.pool.len();
            total += g.total_frames;
        }
        self.counters.free_frames.set(free as u64);
        self.counters.total_frames.set(total as u64);
    }

    /// Runs until the stop flag is set.
    pub fn run(mut self) {
        let mut umems = self.umems();
        let mut batch = [Desc::default(); RX_BATCH];
        let mut pollfds = self.pollfds();
        let mut idle = 0u32;
        let mut turns = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            turns = turns.wrapping_add(1);
            if self.apply_commands() | self.finish_closing() {
                pollfds = self.pollfds();
                umems = self.umems();
                self.visits.reset(self.ports.len());
            }
            if turns.is_multiple_of(KERNEL_STATS_TURNS) {
                self.read_kernel_stats(KERNEL_STATS_SOCKETS);
                self.rebalance();
            }
            let start = Instant::now();
            let now = start.duration_since(self.epoch).as_secs() as u32;
            let mut work = 0;
            let mut wake = 0u64;
            self.visits.plan();
            for k in 0..self.visits.turn().len() {
                let i = self.visits.turn()[k];
                work += self.receive(&umems, i, &mut batch, now, &mut wake);
            }
            let received = work;
            for w in 0..self.mailboxes.len() {
                if wake & (1 << w) != 0 {
                    self.mailboxes[w].wake();
                }
            }
            work += self.take_handoffs(&umems);
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
            if work > 0 || self.visits.awake().iter().any(|&i| ports[i].tx_backlog) {
                idle = 0;
            } else {
                idle += 1;
                if idle >= SPIN_TURNS {
                    idle = 0;
                    // The last busy turns are seen while the worker idles, not only at
                    // its next busy turn.
                    self.latency.flush(Instant::now());
                    if !self.busy_poll {
                        self.sleep(&mut pollfds);
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

    /// Applies the control plane's pending commands; returns whether the set of sockets
    /// changed.
    fn apply_commands(&mut self) -> bool {
        let mut changed = false;
        while let Some(command) = self.mailboxes[self.index].commands.pop() {
            self.seq += 1;
            match command {
                Command::Tables(tables) => self.tables = tables,
                Command::Attach {
                    id,
                    queues,
                    joining,
                    max_chain,
                    mtu,
                } => {
                    self.queues[usize::from(id)] = queues;
                    if let Some(joining) = joining {
                        let Joining {
                            socket,
                            group: g,
                            made,
                        } = *joining;
                        if let Some(made) = made {
                            if self.groups.len() <= g {
                                self.groups.resize_with(g + 1, || None);
                            }
                            assert!(self.groups[g].is_none(), "group {g} made twice");
                            self.groups[g] = Some(made);
                        }
                        self.max_chain = self.max_chain.max(max_chain);
                        self.mailboxes[self.index].set_max_chain(self.max_chain);
                        let ring = self.ring;
                        let group = self.group(g);
                        let quota = group.budget.admit(ring);
                        group.ports += 1;
                        self.publish_budget();
                        self.ports
                            .push(WorkerPort::new(id, socket, g, max_chain, mtu, quota));
                        let i = self.ports.len() - 1;
                        self.refill(i);
                        changed = true;
                    }
                    self.route();
                }
                Command::Mtu { id, mtu } => {
                    for port in self.ports.iter_mut().filter(|p| p.id == id) {
                        port.mtu = mtu;
                    }
                }
                Command::Detach { id } => {
                    self.queues[usize::from(id)] = 0;
                    self.route();
                    if let Some(port) = self.ports.iter_mut().find(|p| p.id == id) {
                        // Acknowledged once the socket is closed (`finish_closing`).
                        if port.closing.is_none() {
                            self.closing += 1;
                        }
                        port.closing = Some(Instant::now());
                        port.detach_seq = self.seq;
                        continue;
                    }
                }
            }
            self.reply(self.seq, 0);
        }
        changed
    }

    /// Tells the control plane that command `seq` is done.
    fn reply(&self, seq: u64, reclaimed: usize) {
        // The control plane gone means the datapath is stopping: nobody to tell.
        let _ = self.replies.send(Reply {
            worker: self.index,
            seq,
            reclaimed,
        });
    }

    /// Recomputes where frames for each port go from here.
    pub fn route(&mut self) {
        let mut local = [None; MAX_PORTS];
        for (i, p) in self.ports.iter().enumerate() {
            local[usize::from(p.id)] = Some(i);
        }
        for (id, route) in self.routes.iter_mut().enumerate() {
            let queues = self.queues[id] as usize;
            *route = match local[id] {
                Some(i) if self.ports[i].closing.is_none() => Route::Local(i),
                Some(_) => Route::Gone,
                None if queues > 0 => Route::Remote(self.index % queues),
                None => Route::Gone,
            };
        }
    }

    /// Closes the sockets of ports that have been leaving long enough, taking back every
    /// frame they held; returns whether any closed.
    fn finish_closing(&mut self) -> bool {
        if self.closing == 0 {
            return false;
        }
        let Some(i) = self.ports.iter().position(|p| {
            p.closing.is_some_and(|since| {
                let waited = since.elapsed();
                waited >= CLOSE_GRACE && (p.in_tx == 0 || waited >= CLOSE_DRAIN)
            })
        }) else {
            return false;
        };
        let port = self.ports.remove(i);
        self.closing -= 1;
        let (id, g, held) = (port.id, port.group, port.in_fill + port.in_tx);
        let group = self.groups[g]
            .as_mut()
            .expect("a group lives while it has ports");
        group.budget.release(port.quota);
        group.ports -= 1;
        group.pool.extend_from_slice(&port.pending);
        drop(port.socket); // unmaps the rings and closes: the kernel lets go of all of it
        let chunks = group.holders.reclaim(id);
        debug_assert_eq!(
            chunks.len(),
            held,
            "worker {}: port {id} held other frames than its rings counted",
            self.index
        );
        let reclaimed = chunks.len();
        let umem = Arc::clone(&group.umem);
        group
            .pool
            .extend(chunks.into_iter().map(|c| umem.reset(Desc::new(c, 0))));
        // Counted as gone so the ledger balances also if the kernel kept one.
        group.total_frames -= held - reclaimed.min(held);
        if g != 0 && group.ports == 0 {
            // Every frame is back in its pool: the UMEM goes (the first stays, for
            // the credits it lends).
            self.groups[g] = None;
        }
        self.publish_budget();
        self.publish_frames();
        self.route();
        self.reply(port.detach_seq, reclaimed);
        true
    }

    /// Takes one RX batch from `ports[i]` and decides every frame in it; returns how
    /// many descriptors it took.
    #[inline]
    fn receive(
        &mut self,
        umems: &Umems,
        i: usize,
        batch: &mut [Desc; RX_BATCH],
        now: u32,
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
            self.forward(umems, from, chain, ingress, c, now, wake);
        }
        c.rx_packets.add(frames);
        c.rx_bytes.add(bytes);
        whole
    }

    /// Decides the frame `chain` of group `from`, received on `ingress` (counted in
    /// `c`), and queues it (or its copies) or drops it.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn forward(
        &mut self,
        umems: &Umems,
        from: usize,
        chain: &[Desc],
        ingress: PortId,
        c: &PortQueueCounters,
        now: u32,
        wake: &mut u64,
    ) {
        let umem = umem_of(umems, from);
        // SAFETY: the chain came off this worker's RX ring (or was written from its pool),
        // so its buffers are frames of `umem` the worker owns; nothing writes them until
        // they are queued again.
        let data = unsafe { umem.data(chain[0]) };
        let verdict = decide(&self.tables, data, ingress, now);
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

    /// Cuts the frame `chain` of `len` bytes, received on `ingress` of MTU `mtu`, if
    /// it is a large TCP segment (longer than the MTU admits: an Ethernet header, and a
    /// tag if it has one), into segments the MTU admits, written into frames of the
    /// pool, and queues them as the large one's verdict says ([`crate::wire::segment`]).
    /// Returns whether it took the frame (cut, or dropped and counted); `false` leaves
    /// it to be forwarded as it came (not TCP, or no longer than its tag allows). The
    /// caller frees `chain` either way.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn cut(
        &mut self,
        umems: &Umems,
        from: usize,
        chain: &[Desc],
        len: usize,
        ingress: PortId,
        c: &PortQueueCounters,
        mtu: usize,
        now: u32,
        wake: &mut u64,
    ) -> bool {
        let umem = umem_of(umems, from);
        // SAFETY: the chain came off this worker's RX ring; it is only read here, and
        // the segments are written into other frames, from the pool.
        let first = unsafe { umem.data(chain[0]) };
        let tagged =
            first.get(dot1q::OFFSET..dot1q::OFFSET + 2) == Some(&dot1q::TPID_8021Q.to_be_bytes());
        if tagged && len <= mtu + ETHERNET_HEADER_LEN + TAG_LEN {
            return false;
        }
        let mut rest: [&[u8]; RX_BATCH] = [&[]; RX_BATCH];
        for (part, &buffer) in rest.iter_mut().zip(&chain[1..]) {
            // SAFETY: as above.
            *part = unsafe { umem.data(buffer) };
        }
        let rest = &rest[..chain.len() - 1];
        let mut cutter = match Cutter::new(first, rest, mtu) {
            Ok(cutter) => cutter,
            Err(Uncuttable::NotTcp) => return false,
            Err(Uncuttable::Truncated | Uncuttable::NoRoom) => {
                c.drop(DropReason::Oversize);
                return true;
            }
        };
        // Decided once, for every segment: they share its Ethernet header and tag.
        let verdict = decide(&self.tables, first, ingress, now);
        if let Action::Drop(reason) = verdict.action {
            c.drop(reason);
            return true;
        }
        let hlen = cutter.header_len();
        let (mut headers, mut payload) = ([0; MAX_HEADERS], Vec::with_capacity(4));
        while cutter.next_into(&mut headers, &mut payload).is_some() {
            let mut parts: [&[u8]; MAX_CHAIN + 1] = [&[]; MAX_CHAIN + 1];
            let len = hlen + payload.iter().map(|p| p.len()).sum::<usize>();
            let buffers = umem.buffers_for(len);
            if buffers > MAX_CHAIN || payload.len() > MAX_CHAIN {
                c.drop(DropReason::Oversize);
                return true;
            }
            parts[0] = &headers[..hlen];
            parts[1..=payload.len()].copy_from_slice(&payload);
            let mut segment = [Desc::default(); MAX_CHAIN];
            let segment = &mut segment[..buffers];
            if !self.group(from).take(segment) {
                c.drop(DropReason::NoFreeFrame);
                return true;
            }
            // SAFETY: the frames came from the group's free pool: frames of `umem` that
            // nothing else holds.
            unsafe { umem.write_chain(segment, &parts[..=payload.len()]) };
            self.dispatch(umems, from, segment, verdict, c, wake);
        }
        c.segmented.add(1);
        true
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
                    return false;
                }
                let mut copy = [Desc::default(); MAX_CHAIN];
                let copy = &mut copy[..buffers];
                let group = self.groups[to]
                    .as_mut()
                    .expect("a group lives while it has ports");
                if !group.take(copy) {
                    c.drop(DropReason::NoFreeFrame);
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
                    false
                }
            }
            Route::Gone => {
                c.drop(DropReason::PortDown);
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
            let mut n = want.min(tx.free(want as u32) as usize);
            if n < want {
                // Back to the end of the last whole frame that fits.
                n = port.pending[..n]
                    .iter()
                    .rposition(|d| !d.more)
                    .map_or(0, |p| p + 1);
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

    /// Halves the quota of every port that received nothing since the last look, and
    /// doubles that of every port that received its quota's worth or more: a steady
    /// stream deserves a deep fill ring, to ride out the turns the worker is late
    /// ([`Budget`]).
    fn rebalance(&mut self) {
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
    fn publish_budget(&self) {
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

    /// Debug builds: every frame is in exactly one place.
    fn check_ledger(&self) {
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
    fn read_kernel_stats(&mut self, count: usize) {
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

/// Finishes the TCP or UDP checksum of the frame `chain` if an offload left it partial
/// (`wire::checksum`); true when it did.
#[inline]
fn finish_checksum(umem: &Umem, chain: &[Desc]) -> bool {
    let mut rest: [&[u8]; MAX_CHAIN] = [&[]; MAX_CHAIN];
    for (slot, &desc) in rest.iter_mut().zip(&chain[1..]) {
        // SAFETY: the chain came off this worker's RX ring and is on no ring now; its
        // buffers are frames of `umem` that only this worker touches.
        *slot = unsafe { umem.data(desc) };
    }
    // SAFETY: as above; the first buffer is a different frame from the others, and
    // nothing else reads it while this runs.
    let first = unsafe { umem.data_mut(chain[0]) };
    let others = (chain.len() - 1).min(MAX_CHAIN);
    checksum::finish_partial(first, &rest[..others]) == checksum::Finish::Finished
}
