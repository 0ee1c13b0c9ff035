//! The AF_XDP datapath: UMEMs, sockets, rings and the pinned per-queue workers.
//!
//! [`Datapath::start`] starts one worker per RX queue index `q`, pinned to its core and
//! owning its first UMEM, with no port yet. Ports then come and go while it runs, each
//! through two calls from the control plane:
//!
//! - [`Datapath::open`] makes the port's AF_XDP sockets, one per RX queue `q`, each on
//!   one of worker `q`'s UMEMs (`XDP_SHARED_UMEM`: each socket its own fill and
//!   completion rings): the first with room, or a new one ([`group`]: a UMEM serves
//!   at most [`group::PORTS_PER_UMEM`] ports, since each socket costs the kernel memory
//!   for every frame of its UMEM); the control plane points the XDP program's XSKMAP at
//!   them, then [`Datapath::attach`] hands them to their workers, which fill their fill
//!   rings.
//! - [`Datapath::detach`] tells every worker to let the port go; each closes its socket
//!   once its rings are quiet and takes back every frame the socket held.
//!
//! [`Datapath::set_tables`] gives the workers new switching tables (a port up or down, a
//! new policy). All three travel on one channel per worker (its [`handoff::Mailbox`]) and
//! are applied between two batches; each call returns once every worker has done it.
//!
//! A frame received on port A queue `q` goes out of port B through worker `q`'s own
//! socket on B, by passing its descriptor where A's and B's sockets share a UMEM: no
//! copy in user space, and none at all where the driver binds zero-copy. Where they do
//! not, it is copied into a frame of B's UMEM. Where B has no queue `q`, the frame is
//! copied into a frame of the worker that owns B's queue `q % queues(B)` and handed
//! over ([`handoff`]).
//!
//! This module knows nothing of interfaces, XDP programs or configuration: the control
//! plane ([`crate::control`]) owns those.
//!
//! The folder, one concern a file:
//!
//! - this file: [`Datapath`], the control plane's handle (start, attach, detach,
//!   tables, counters, stop); `open.rs`: a port's sockets made and placed on UMEMs
//!   ([`Datapath::open`]) and the check before ([`Datapath::admit`]); `config.rs`:
//!   [`DatapathConfig`], the sizes of rings and UMEMs and their checks, the cores
//!   ([`pick_cores`]); `error.rs`: [`DatapathError`];
//! - `command.rs`: what the control plane asks of a worker, and its answer;
//! - `worker.rs`: the hot loop alone; `worker/ports.rs`: its ports joining and leaving
//!   (commands applied, routes, sockets closed and their frames taken back);
//!   `worker/books.rs`: its gauges, quotas, ledger and the kernel's drop counters;
//!   `worker/offload.rs`: partial checksums finished and large segments cut;
//!   `worker/tests.rs`: turns of workers on fake sockets;
//! - [`xsk`]: hairpin's AF_XDP layer (UMEM, sockets, their syscalls; the rings in
//!   `xsk/ring.rs`), and the seam through which tests put a fake kernel in its place
//!   (`fake.rs`, compiled for tests only);
//! - [`group`], [`budget`], `holders.rs`: a worker's UMEMs of 32 ports, how their
//!   frames are shared between the ports' fill rings, which socket holds each frame;
//! - `visits.rs`: which ports a turn looks at; `retag.rs`: 802.1Q tags pushed and
//!   popped where a frame lies; [`handoff`]: frames handed between workers;
//!   [`stats`], [`latency`]: counters and histograms the control plane reads.

pub mod budget;
mod command;
mod config;
mod error;
#[cfg(test)]
mod fake;
pub mod group;
pub mod handoff;
mod holders;
pub mod latency;
mod open;
mod retag;
pub mod stats;
pub mod tap;
mod visits;
mod worker;
pub mod xsk;

use std::{
    os::fd::{AsRawFd as _, RawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use self::{
    budget::Budget,
    command::{Command, Joining, Reply},
    config::{make_umems, validate_sizes},
    group::Group,
    handoff::Mailbox,
    stats::{PortQueueSnapshot, WorkerCounters, WorkerSnapshot},
    worker::{Route, Worker},
    xsk::Umem,
};
pub use self::{
    config::{BUSY_PORTS, DatapathConfig, KERNEL_BYTES_PER_FRAME, ZeroCopy, pick_cores},
    error::DatapathError,
    open::PortSockets,
};
use crate::{
    switch::{MAX_PORTS, PortId, Tables},
    sys,
};

/// How long a worker may take to apply a command (a closing socket waits for its TX ring
/// for up to half a second).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A port as the datapath sees it: an interface index and its RX queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortQueues {
    /// Its slot in the bridge.
    pub id: PortId,
    /// Its name, for messages.
    pub name: String,
    /// Its interface index.
    pub ifindex: u32,
    /// Its RX queues, each served by the worker of the same index.
    pub queues: u32,
    /// How many buffers its driver joins into one frame on a zero-copy socket
    /// (`xdp_zc_max_segs`, which the netdev family tells; 1: none).
    pub zc_max_segs: u32,
    /// Its MTU: the workers cut larger TCP segments to it ([`crate::wire::segment`]).
    pub mtu: u32,
}

/// Counters of the whole datapath at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// `per_queue[port][worker]`, for every port slot.
    pub per_queue: Vec<Vec<PortQueueSnapshot>>,
    /// Each worker's own counters.
    pub workers: Vec<WorkerSnapshot>,
    /// Workers that panicked (always 0 unless something is badly wrong).
    pub panicked_workers: usize,
    /// Time from RX read to TX submit of busy turns, all workers merged.
    pub latency: latency::Summary,
}

impl Snapshot {
    /// Frames worker `w` received, over every port.
    pub fn worker_rx(&self, w: usize) -> u64 {
        self.per_queue.iter().map(|port| port[w].rx_packets).sum()
    }

    /// The counters of `port`, one per queue (worker).
    pub fn port_queues(&self, port: PortId) -> &[PortQueueSnapshot] {
        &self.per_queue[usize::from(port)]
    }

    /// The totals of `port` over all queues.
    pub fn port_total(&self, port: PortId) -> PortQueueSnapshot {
        let mut total = PortQueueSnapshot::default();
        for q in &self.per_queue[usize::from(port)] {
            total.accumulate(q);
        }
        total
    }
}

/// The control plane's handle on one worker.
#[derive(Debug)]
struct WorkerHandle {
    thread: Option<JoinHandle<()>>,
    counters: Arc<WorkerCounters>,
    latency: latency::SharedHistogram,
    /// Its UMEMs, by index, as its own [`Worker::groups`] has them.
    groups: Vec<Option<GroupHandle>>,
    /// Commands sent to it.
    sent: u64,
}

/// The control plane's view of one of a worker's UMEMs.
#[derive(Debug)]
struct GroupHandle {
    umem: Arc<Umem>,
    /// Whether it takes chains: set by the socket that registered it (the first in
    /// `sockets`), inherited by every socket after it.
    sg: bool,
    /// The ports with a socket on it, with the socket's descriptor (a new socket shares
    /// the UMEM through any of them).
    sockets: Vec<(PortId, RawFd)>,
    /// Its last port left but its worker did not say so in time: no port is placed
    /// into it again, nor another group in its place.
    retired: bool,
}

impl GroupHandle {
    fn new(umem: Arc<Umem>) -> Self {
        Self {
            umem,
            sg: false,
            sockets: Vec::new(),
            retired: false,
        }
    }
}

/// The running datapath.
#[derive(Debug)]
pub struct Datapath {
    workers: Vec<WorkerHandle>,
    mailboxes: Arc<[Mailbox]>,
    replies: mpsc::Receiver<Reply>,
    stop: Arc<AtomicBool>,
    config: DatapathConfig,
    cores: Vec<usize>,
    panicked: usize,
    /// The kernel takes `XDP_USE_SG` (until a bind says otherwise: Linux before 6.6).
    sg: AtomicBool,
    /// The most kernel memory the sockets of all workers may hold in their buffer pools
    /// ([`KERNEL_BYTES_PER_FRAME`]): a quarter of the host's memory.
    kernel_memory_limit: u64,
    /// Which ports' frames the workers copy for captures.
    taps: Arc<tap::Taps>,
}

impl Datapath {
    /// Starts one worker per core of `cores` (worker `q` serves RX queue `q` of every
    /// port), each with a UMEM sized for `ports` ports, deciding with `tables`. No port
    /// is served until [`Datapath::attach`].
    pub fn start(
        cores: Vec<usize>,
        ports: usize,
        config: &DatapathConfig,
        tables: Arc<Tables>,
    ) -> Result<Self, DatapathError> {
        validate_sizes(config, ports)?;
        let umems = make_umems(cores.len(), ports, config)?;
        let frames = config.umem_frames_for(ports);
        let more = group::more_frames(config.ring_size as usize) as u64;
        tracing::info!(
            "{} worker(s), each with a first UMEM of {frames} frames ({} MiB, locked), and \
             one of {more} frames ({} MiB) for each {} ports more; each port's socket holds \
             about {} (first UMEM) or {} KiB of kernel memory",
            cores.len(),
            (frames * u64::from(config.frame_size)) >> 20,
            (more * u64::from(config.frame_size)) >> 20,
            group::PORTS_PER_UMEM,
            (frames * KERNEL_BYTES_PER_FRAME) >> 10,
            (more * KERNEL_BYTES_PER_FRAME) >> 10,
        );
        let mailboxes = make_mailboxes(&umems)?;
        let (reply_to, replies) = mpsc::channel();
        let workers = cores.len();
        let mut datapath = Self {
            workers: Vec::with_capacity(cores.len()),
            mailboxes,
            replies,
            stop: Arc::new(AtomicBool::new(false)),
            config: config.clone(),
            cores,
            panicked: 0,
            sg: AtomicBool::new(true),
            kernel_memory_limit: sys::memory_total().unwrap_or(u64::MAX) / 4,
            taps: Arc::new(tap::Taps::new(workers)),
        };
        datapath.spawn_workers(&tables, &reply_to, ports, umems)?;
        Ok(datapath)
    }

    /// Starts the workers, each with its first UMEM of `umems`; on failure stops those
    /// already started.
    fn spawn_workers(
        &mut self,
        tables: &Arc<Tables>,
        reply_to: &mpsc::Sender<Reply>,
        ports: usize,
        umems: Vec<Arc<Umem>>,
    ) -> Result<(), DatapathError> {
        let growth = self.config.growth_frames(ports);
        let ring = self.config.ring_size as usize;
        let epoch = Instant::now();
        for (w, umem) in umems.into_iter().enumerate() {
            let frames = umem.frames() as usize;
            let budget = Budget::new(
                frames,
                Budget::reserve(frames, ring, handoff::CREDITS),
                growth,
            );
            let counters = Arc::new(WorkerCounters::new(MAX_PORTS));
            let histogram = latency::shared();
            let mut worker = Worker {
                index: w,
                groups: vec![Some(Group::new(Arc::clone(&umem), budget))],
                ports: Vec::new(),
                routes: [Route::Gone; MAX_PORTS],
                queues: [0; MAX_PORTS],
                replies: reply_to.clone(),
                seq: 0,
                tables: Arc::clone(tables),
                taps: Arc::clone(&self.taps),
                mailboxes: Arc::clone(&self.mailboxes),
                counters: Arc::clone(&counters),
                stop: Arc::clone(&self.stop),
                epoch,
                busy_poll: self.config.busy_poll,
                latency: latency::Recorder::new(Arc::clone(&histogram)),
                max_chain: 1,
                ring,
                visits: visits::Visits::default(),
                closing: 0,
                stats_cursor: 0,
            };
            worker.prime();
            let core = self.cores[w];
            let spawned = thread::Builder::new()
                .name(format!("hairpin-q{w}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        tracing::warn!("worker {w}: could not pin to core {core}");
                    }
                    worker.run();
                });
            match spawned {
                Ok(handle) => self.workers.push(WorkerHandle {
                    thread: Some(handle),
                    counters,
                    latency: histogram,
                    groups: vec![Some(GroupHandle::new(umem))],
                    sent: 0,
                }),
                Err(source) => {
                    self.shutdown();
                    return Err(DatapathError::Worker { worker: w, source });
                }
            }
        }
        Ok(())
    }

    /// Which ports' frames the workers copy for captures, and the copies.
    pub fn taps(&self) -> &Arc<tap::Taps> {
        &self.taps
    }

    /// The core each worker (queue index) is pinned to.
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// How many workers (RX queue indices) there are.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Hands `port`'s sockets to their workers (with the UMEMs made for them) and tells
    /// every worker how to reach it; returns once all have.
    pub fn attach(&mut self, port: &PortQueues, sockets: PortSockets) -> Result<(), DatapathError> {
        debug_assert_eq!(port.id, sockets.id);
        let max_chain = sockets.max_chain;
        let ring = self.config.ring_size as usize;
        let mut places = sockets.places.into_iter();
        let mut sockets = sockets.sockets.into_iter();
        for w in 0..self.workers.len() {
            let joining = sockets.next().map(|socket| {
                let place = places.next().expect("a place for every socket");
                let groups = &mut self.workers[w].groups;
                if groups.len() <= place.group {
                    groups.resize_with(place.group + 1, || None);
                }
                let made = place.made.map(|umem| {
                    groups[place.group] = Some(GroupHandle::new(Arc::clone(&umem)));
                    Group::new(umem, group::more_budget(ring))
                });
                let handle = groups[place.group]
                    .as_mut()
                    .expect("a port joins only a group that is there");
                if let Some(sg) = place.registered {
                    handle.sg = sg;
                }
                handle.sockets.push((port.id, socket.as_raw_fd()));
                Box::new(Joining {
                    socket,
                    group: place.group,
                    made,
                })
            });
            self.send(
                w,
                Command::Attach {
                    id: port.id,
                    queues: port.queues,
                    joining,
                    max_chain,
                    mtu: port.mtu,
                },
            );
        }
        self.wait_all("take a new port's socket").map(drop)
    }

    /// Port `id`'s MTU is now `mtu`; returns once every worker knows.
    pub fn set_mtu(&mut self, id: PortId, mtu: u32) -> Result<(), DatapathError> {
        for w in 0..self.workers.len() {
            self.send(w, Command::Mtu { id, mtu });
        }
        self.wait_all("take a port's MTU").map(drop)
    }

    /// Tells every worker to let port `id` go: nothing more is sent to it, its sockets
    /// close once their rings are quiet, and every frame they held returns to its
    /// worker. Returns the frames taken back, once every worker is done.
    pub fn detach(&mut self, id: PortId) -> Result<usize, DatapathError> {
        // UMEMs (not the first) the port was the last of: each worker unmaps its own.
        let mut emptied = Vec::new();
        for w in 0..self.workers.len() {
            for (g, handle) in self.workers[w].groups.iter_mut().enumerate() {
                let Some(h) = handle else { continue };
                let had = h.sockets.len();
                h.sockets.retain(|&(p, _)| p != id);
                if g > 0 && had > 0 && h.sockets.is_empty() {
                    emptied.push((w, g));
                }
            }
            self.send(w, Command::Detach { id });
        }
        let done = self.wait_all("close a port's socket");
        for (w, g) in emptied {
            let slot = &mut self.workers[w].groups[g];
            match (&done, slot.as_mut()) {
                (Ok(_), _) => *slot = None,
                (Err(_), Some(h)) => h.retired = true,
                (Err(_), None) => {}
            }
        }
        done
    }

    /// Every worker decides with `tables` from its next batch on; returns once all do.
    pub fn set_tables(&mut self, tables: &Arc<Tables>) -> Result<(), DatapathError> {
        for w in 0..self.workers.len() {
            self.send(w, Command::Tables(Arc::clone(tables)));
        }
        self.wait_all("take new tables").map(drop)
    }

    fn send(&mut self, w: usize, command: Command) {
        let mailbox = &self.mailboxes[w];
        // One command at a time per worker, each waited for: the queue never fills.
        if mailbox.commands.push(command).is_err() {
            unreachable!("worker {w}'s command queue is full");
        }
        self.workers[w].sent += 1;
        mailbox.wake();
    }

    /// Waits until every worker has applied every command sent to it; returns the frames
    /// they reclaimed.
    fn wait_all(&mut self, what: &'static str) -> Result<usize, DatapathError> {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let mut reclaimed = 0;
        let mut done: Vec<u64> = vec![0; self.workers.len()];
        loop {
            let behind = self
                .workers
                .iter()
                .zip(&done)
                .position(|(w, &d)| d < w.sent);
            let Some(worker) = behind else {
                return Ok(reclaimed);
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(reply) => {
                    done[reply.worker] = done[reply.worker].max(reply.seq);
                    reclaimed += reply.reclaimed;
                }
                Err(_) => return Err(DatapathError::Unresponsive { worker, what }),
            }
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            per_queue: (0..MAX_PORTS)
                .map(|p| {
                    self.workers
                        .iter()
                        .map(|w| PortQueueSnapshot::of(&w.counters.ports[p]))
                        .collect()
                })
                .collect(),
            workers: self
                .workers
                .iter()
                .map(|w| WorkerSnapshot::of(&w.counters))
                .collect(),
            panicked_workers: self.panicked
                + self
                    .workers
                    .iter()
                    .filter(|w| w.thread.as_ref().is_some_and(JoinHandle::is_finished))
                    .count(),
            latency: latency::merge(
                &self
                    .workers
                    .iter()
                    .map(|w| Arc::clone(&w.latency))
                    .collect::<Vec<_>>(),
            ),
        }
    }

    /// Stops the workers and closes every socket; returns the final counters.
    pub fn stop(mut self) -> Snapshot {
        self.shutdown();
        self.snapshot()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (w, mailbox) in self.workers.iter_mut().zip(self.mailboxes.iter()) {
            mailbox.wake();
            if let Some(handle) = w.thread.take()
                && handle.join().is_err()
            {
                tracing::error!("a worker panicked");
                self.panicked += 1;
            }
        }
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn make_mailboxes(umems: &[Arc<Umem>]) -> Result<Arc<[Mailbox]>, DatapathError> {
    Ok(umems
        .iter()
        .enumerate()
        .map(|(w, u)| {
            Mailbox::new(Arc::clone(u))
                .map_err(|source| DatapathError::Worker { worker: w, source })
        })
        .collect::<Result<Vec<_>, _>>()?
        .into())
}
