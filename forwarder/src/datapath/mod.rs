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

pub mod budget;
mod command;
pub mod group;
pub mod handoff;
mod holders;
pub mod latency;
mod retag;
pub mod stats;
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
    group::{Group, Placement, Room},
    handoff::Mailbox,
    stats::{PortQueueSnapshot, WorkerCounters, WorkerSnapshot},
    worker::{Route, Worker},
    xsk::{Bind, MAX_CHAIN, Socket, Umem},
};
use crate::{
    switch::{MAX_PORTS, PortId, Tables},
    sys,
};

/// How long to retry binding a queue that the kernel still holds for a closed socket.
const BIND_BUSY_WAIT: Duration = Duration::from_secs(3);

/// How long a worker may take to apply a command (a closing socket waits for its TX ring
/// for up to half a second).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Busy ports each worker's first UMEM has full rings for, by default (the others share
/// what is left; UMEMs made for more ports have full rings for one: [`group::more_frames`]).
pub const BUSY_PORTS: usize = 4;

/// `--zero-copy auto|on|off`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZeroCopy {
    /// Zero-copy where the driver supports it, copy mode otherwise.
    #[default]
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode.
    Off,
}

/// How to run the datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatapathConfig {
    /// AF_XDP bind mode.
    pub zero_copy: ZeroCopy,
    /// Entries of every ring (RX, TX, fill, completion); a power of two.
    pub ring_size: u32,
    /// UMEM frame size; a power of two, at least 2048.
    pub frame_size: u32,
    /// Workers never sleep: they spin on their rings, each owning its core.
    pub busy_poll: bool,
    /// Frames in each worker's first UMEM; by default
    /// [`DatapathConfig::umem_frames_for`] the ports at start. (UMEMs made for more
    /// ports have [`group::more_frames`].)
    pub umem_frames: Option<u32>,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        Self {
            zero_copy: ZeroCopy::Auto,
            ring_size: 2048,
            frame_size: 2048,
            busy_poll: false,
            umem_frames: None,
        }
    }
}

impl DatapathConfig {
    /// Frames one port needs for full rings: a full fill ring, a full RX ring and a full
    /// TX ring at once.
    pub fn frames_per_port(&self) -> u64 {
        3 * u64::from(self.ring_size)
    }

    /// The budget's growth part ([`budget`]) of each worker's first UMEM when `ports`
    /// ports are known at start: full rings for [`BUSY_PORTS`] busy ports,
    /// and at least a full quota (a ring) for every port known at start that it serves
    /// (up to [`group::PORTS_PER_UMEM`]). The rest of the UMEM is 64 frames for each port
    /// to come.
    pub fn growth_frames(&self, ports: usize) -> usize {
        (BUSY_PORTS * self.frames_per_port() as usize)
            .max(ports.min(group::PORTS_PER_UMEM) * self.ring_size as usize)
    }

    /// Frames of each worker's first UMEM when `ports` ports are known at start: full
    /// rings for [`BUSY_PORTS`] busy ports (the least growth part), the
    /// least quota ([`budget::MIN_QUOTA`]) for each port it serves (at least as many as
    /// the busy ones, at most [`group::PORTS_PER_UMEM`]: more go into other UMEMs), and
    /// a ring's worth for flood copies and the credits lent to other workers. Ports
    /// share them by the [`budget`]. No more: every socket on the UMEM costs the kernel
    /// [`KERNEL_BYTES_PER_FRAME`] for each of its frames.
    pub fn umem_frames_for(&self, ports: usize) -> u64 {
        let extra = u64::from(self.ring_size) + handoff::CREDITS as u64;
        let served = ports.clamp(BUSY_PORTS, group::PORTS_PER_UMEM);
        self.umem_frames.map_or(
            BUSY_PORTS as u64 * self.frames_per_port()
                + (served * budget::MIN_QUOTA) as u64
                + extra,
            u64::from,
        )
    }
}

/// An error of the datapath. Each names what failed on what.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// `--cores` has too few entries or a core that is not allowed.
    #[error("--cores: {0}")]
    Cores(String),
    /// A ring, frame or UMEM size is not usable.
    #[error("{what} {value} is not usable: {why}")]
    Size {
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: u64,
        /// Why not.
        why: String,
    },
    /// Creating a worker's UMEM failed.
    #[error(
        "creating the UMEM of worker {worker} ({frames} frames of {frame_size} bytes){hint}",
        hint = if source.raw_os_error() == Some(libc::ENOMEM) || source.raw_os_error() == Some(libc::EPERM) {
            ": not enough lockable memory? (CAP_IPC_LOCK, or a smaller --umem-frames / --ring-size)"
        } else { "" }
    )]
    Umem {
        /// The worker.
        worker: usize,
        /// Frames asked for.
        frames: u64,
        /// Their size.
        frame_size: u32,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Creating or binding an AF_XDP socket failed.
    #[error(
        "binding an AF_XDP socket to {port} queue {queue} ({mode}){hint}",
        hint = if source.raw_os_error() == Some(libc::EMFILE) {
            ": hairpin has as many files open as it may (a socket per port and worker, \
             an XDP link per port): raise its limit (`ulimit -n` before `hairpin run`, \
             LimitNOFILE= in its unit)"
        } else {
            ""
        }
    )]
    Socket {
        /// The port.
        port: String,
        /// The queue.
        queue: u32,
        /// "zero-copy" or "copy".
        mode: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `--zero-copy on`, but a socket bound in copy mode.
    #[error("{port} queue {queue} bound in copy mode, but --zero-copy on was asked for")]
    NotZeroCopy {
        /// The port.
        port: String,
        /// The queue.
        queue: u32,
    },
    /// A port has more RX queues than there are workers.
    #[error(
        "port {port} has {has} RX queues but only {workers} are served: frames on the others would \
         bypass hairpin; serve them all (--queues {has}, at start) or reduce them (ethtool -L {port} combined {workers})"
    )]
    UnservedQueues {
        /// The port.
        port: String,
        /// Its queue count.
        has: u32,
        /// Workers running.
        workers: usize,
    },
    /// None of a worker's UMEMs has frames left to promise a new port, and it may make
    /// no more.
    #[error(
        "{port} cannot be served without taking frames the running ports need: worker \
         {worker}'s {umems} UMEMs have promised the fill rings of their ports (the bridge \
         has {ports}) all but fewer than the {min} frames a port needs to start; remove \
         idle ports",
        min = budget::MIN_QUOTA
    )]
    NoFrames {
        /// The port refused.
        port: String,
        /// The worker without room.
        worker: usize,
        /// Its UMEMs.
        umems: usize,
        /// Ports attached.
        ports: usize,
    },
    /// A worker's sockets would take more kernel memory than the host can spare.
    #[error(
        "{port} refused: with it, the bridge's {sockets} AF_XDP sockets would hold about \
         {mib} MiB of kernel memory (each socket about {per} bytes for every frame of the \
         UMEM it is bound to, up to {frames} frames), past a quarter of this host's memory \
         ({limit_mib} MiB); smaller UMEMs (--umem-frames, --ring-size, or umem_frames and \
         ring_size in the config file) let more ports in",
        per = KERNEL_BYTES_PER_FRAME
    )]
    KernelMemory {
        /// The port refused.
        port: String,
        /// The bridge's sockets, this port's included.
        sockets: usize,
        /// The most frames of a UMEM.
        frames: u64,
        /// The kernel memory they would hold.
        mib: u64,
        /// What it may hold.
        limit_mib: u64,
    },
    /// Starting a worker thread or its wake-up eventfd failed.
    #[error("starting worker {worker}")]
    Worker {
        /// The worker.
        worker: usize,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A worker did not answer a command: it panicked or is stuck.
    #[error("worker {worker} did not {what} within {COMMAND_TIMEOUT:?}")]
    Unresponsive {
        /// The worker.
        worker: usize,
        /// What it was asked.
        what: &'static str,
    },
}

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

/// A port's sockets, made by [`Datapath::open`] and not yet served.
#[derive(Debug)]
pub struct PortSockets {
    id: PortId,
    /// One per queue, queue `q` at index `q`.
    sockets: Vec<Socket>,
    zero_copy: bool,
    /// Per queue: where the socket went among its worker's UMEMs.
    places: Vec<Place>,
    /// The longest chain the port's sockets take and transmit.
    max_chain: usize,
}

impl PortSockets {
    /// Each socket's queue and descriptor, for the XDP program's socket map.
    pub fn fds(&self) -> impl Iterator<Item = (u32, RawFd)> + '_ {
        (0u32..).zip(self.sockets.iter().map(|s| s.as_raw_fd()))
    }

    /// Whether they bound zero-copy.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Whether they take frames longer than a UMEM frame, as chains (`XDP_USE_SG`).
    pub fn multi_buffer(&self) -> bool {
        self.max_chain > 1
    }

    /// The most UMEM frames one frame of theirs may take: [`MAX_CHAIN`] in copy mode
    /// with `XDP_USE_SG`, the driver's `xdp_zc_max_segs` zero-copy, else 1.
    pub fn max_chain(&self) -> usize {
        self.max_chain
    }
}

/// Where one socket of a port went among its worker's UMEMs.
#[derive(Debug)]
struct Place {
    /// The group's index.
    group: usize,
    /// The group's UMEM, if it was made for this socket.
    made: Option<Arc<Umem>>,
    /// Whether the socket registered the UMEM, and if so whether with `XDP_USE_SG`
    /// (every later socket on that UMEM inherits it).
    registered: Option<bool>,
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
}

/// Kernel memory an AF_XDP socket holds for each frame of the UMEM it shares: every
/// socket bound to another device or queue gets a buffer pool of its own, with a
/// descriptor for every frame of the UMEM (`xp_create_and_assign_umem`). Measured on
/// Linux 6.18 (copy mode, the host's `MemAvailable` with 100 ports): 120 to 180 bytes.
/// So a worker's sockets cost the kernel ports x frames x this: a UMEM shared by many
/// ports must stay small.
pub const KERNEL_BYTES_PER_FRAME: u64 = 128;

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

    /// The core each worker (queue index) is pinned to.
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// How many workers (RX queue indices) there are.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Makes `port`'s sockets, one per RX queue, on the UMEMs of the workers that will
    /// serve them (the first with room, or a new one: [`group`]). Nothing is received
    /// on them until the XDP program steers to them.
    pub fn open(&self, port: &PortQueues) -> Result<PortSockets, DatapathError> {
        if port.queues as usize > self.workers.len() {
            return Err(DatapathError::UnservedQueues {
                port: port.name.clone(),
                has: port.queues,
                workers: self.workers.len(),
            });
        }
        let mut zero_copy = self.config.zero_copy != ZeroCopy::Off;
        let mut sockets = Vec::with_capacity(port.queues as usize);
        let mut places = Vec::with_capacity(port.queues as usize);
        let mut umems_sg = true;
        for queue in 0..port.queues {
            let w = queue as usize;
            let (group, made) = match self.placement(w) {
                Placement::Join(g) => (g, None),
                Placement::Make(g) => (g, Some(self.make_umem(w)?)),
                Placement::Full => return Err(self.no_frames(port, w)),
            };
            let handle = match made {
                Some(_) => None,
                None => self.workers[w].groups.get(group).and_then(Option::as_ref),
            };
            let umem = match (&made, handle) {
                (Some(umem), _) | (None, Some(GroupHandle { umem, .. })) => umem,
                (None, None) => unreachable!("a port joins only a group that is there"),
            };
            // The first socket on a UMEM registers it; the others share it.
            let shared_with = handle.and_then(|h| h.sockets.first().map(|&(_, fd)| fd));
            let bind = Bind {
                ifindex: port.ifindex,
                queue,
                zero_copy,
                shared_with,
                sg: self.takes_chains(zero_copy, port.zc_max_segs),
            };
            let created = match self.bind(umem, bind) {
                Err(e)
                    if zero_copy
                        && self.config.zero_copy == ZeroCopy::Auto
                        && shared_with.is_none() =>
                {
                    tracing::info!(
                        "{}: zero-copy is not available ({e}); using copy mode",
                        port.name
                    );
                    zero_copy = false;
                    self.bind(
                        umem,
                        Bind {
                            zero_copy,
                            sg: self.takes_chains(false, port.zc_max_segs),
                            ..bind
                        },
                    )
                }
                other => other,
            };
            let (socket, sg) = created.map_err(|source| DatapathError::Socket {
                port: port.name.clone(),
                queue,
                mode: match (shared_with, zero_copy) {
                    (Some(_), _) => "sharing the worker's UMEM",
                    (None, true) => "zero-copy",
                    (None, false) => "copy",
                },
                source,
            })?;
            // A socket sharing a UMEM binds in the mode of the UMEM's first socket, so
            // ask the kernel what this one got.
            zero_copy = xsk::zero_copy(&socket).unwrap_or(false);
            if self.config.zero_copy == ZeroCopy::On && !zero_copy {
                return Err(DatapathError::NotZeroCopy {
                    port: port.name.clone(),
                    queue,
                });
            }
            let registered = shared_with.is_none().then_some(sg);
            // Every queue's UMEM must take chains for the port to.
            umems_sg &= registered.unwrap_or(handle.is_some_and(|h| h.sg));
            sockets.push(socket);
            places.push(Place {
                group,
                made,
                registered,
            });
        }
        // Zero-copy, the driver joins (and transmits) no more than its own number of
        // buffers.
        let max_chain = match (umems_sg, zero_copy) {
            (false, _) => 1,
            (true, true) => (port.zc_max_segs as usize).clamp(1, MAX_CHAIN),
            (true, false) => MAX_CHAIN,
        };
        Ok(PortSockets {
            id: port.id,
            sockets,
            zero_copy,
            places,
            max_chain,
        })
    }

    /// Where a new socket goes among worker `w`'s UMEMs ([`group::place`]). A UMEM the
    /// worker still has is never made again: one let go of while the worker did not
    /// answer in time is taken for full until the worker's gauges say it is gone.
    fn placement(&self, w: usize) -> Placement {
        let worker = &self.workers[w];
        let rooms: Vec<Option<Room>> = worker
            .groups
            .iter()
            .enumerate()
            .map(|(g, handle)| {
                let budget = worker.counters.group_budget[g].get() as usize;
                let full = Room {
                    ports: group::PORTS_PER_UMEM,
                    frames: false,
                };
                match handle {
                    Some(h) if !h.retired => Some(Room {
                        ports: h.sockets.len(),
                        frames: Budget::room(
                            budget,
                            worker.counters.group_promised[g].get() as usize,
                        ),
                    }),
                    // The worker has none there (a live UMEM's budget is never 0).
                    _ if budget == 0 => None,
                    _ => Some(full),
                }
            })
            .collect();
        group::place(&rooms)
    }

    /// A new UMEM for worker `w`, of [`group::more_frames`].
    fn make_umem(&self, w: usize) -> Result<Arc<Umem>, DatapathError> {
        let frames = group::more_frames(self.config.ring_size as usize) as u32;
        Umem::new(frames, self.config.frame_size)
            .map(Arc::new)
            .map_err(|source| DatapathError::Umem {
                worker: w,
                frames: frames.into(),
                frame_size: self.config.frame_size,
                source,
            })
    }

    /// The refusal of `port` for want of room on worker `w`.
    fn no_frames(&self, port: &PortQueues, w: usize) -> DatapathError {
        let groups = &self.workers[w].groups;
        DatapathError::NoFrames {
            port: port.name.clone(),
            worker: w,
            umems: groups.iter().flatten().count(),
            ports: groups.iter().flatten().map(|g| g.sockets.len()).sum(),
        }
    }

    /// Whether to ask for chains (`XDP_USE_SG`) on a socket bound `zero_copy` (or not)
    /// to a device whose driver joins `zc_max_segs` buffers zero-copy: in copy mode
    /// where the kernel can (Linux 6.6), zero-copy where the driver joins more than one
    /// (the kernel refuses `XDP_USE_SG` on a driver that joins none).
    fn takes_chains(&self, zero_copy: bool, zc_max_segs: u32) -> bool {
        self.sg.load(Ordering::Relaxed) && (!zero_copy || zc_max_segs > 1)
    }

    /// Creates and binds one socket; returns it and whether it took chains. The kernel
    /// releases a closed socket's hold on its queue from a work item: right after
    /// another process (or an earlier run, or a port just removed) let go of this queue,
    /// binding can fail with EBUSY for a moment.
    ///
    /// A kernel that does not know `XDP_USE_SG` (before 6.6) refuses it with EINVAL: the
    /// socket is bound without it, and so is every socket after it.
    fn bind(&self, umem: &Umem, bind: Bind) -> std::io::Result<(Socket, bool)> {
        let deadline = Instant::now() + BIND_BUSY_WAIT;
        loop {
            match Socket::new(umem, self.config.ring_size, bind) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::EINVAL)
                        && bind.sg
                        && bind.shared_with.is_none() =>
                {
                    let without = self.bind(umem, Bind { sg: false, ..bind });
                    if without.is_ok() {
                        tracing::warn!(
                            "AF_XDP multi-buffer (XDP_USE_SG) is not available ({e}): frames \
                             longer than a UMEM frame ({} bytes) are dropped",
                            umem.room()
                        );
                        self.sg.store(false, Ordering::Relaxed);
                    }
                    return without;
                }
                other => return other.map(|socket| (socket, bind.sg)),
            }
        }
    }

    /// Checks that every worker serving one of `port`'s queues can give it a quota
    /// without taking frames promised to the ports it serves ([`budget`]), in a UMEM it
    /// has or a new one, and that the bridge's sockets would not hold too much kernel
    /// memory with the port's: the reason, naming the option to change, if not.
    pub fn admit(&self, port: &PortQueues) -> Result<(), DatapathError> {
        let more = group::more_frames(self.config.ring_size as usize) as u64;
        let (mut sockets, mut frames, mut most) = (0, 0, 0);
        for (w, worker) in self.workers.iter().enumerate() {
            for h in worker.groups.iter().flatten() {
                let n = h.sockets.len() as u64;
                sockets += n;
                frames += n * u64::from(h.umem.frames());
                most = most.max(u64::from(h.umem.frames()));
            }
            if w < port.queues as usize {
                sockets += 1;
                frames += match self.placement(w) {
                    Placement::Join(g) => u64::from(
                        worker.groups[g]
                            .as_ref()
                            .expect("a port joins only a group that is there")
                            .umem
                            .frames(),
                    ),
                    Placement::Make(_) => {
                        most = most.max(more);
                        more
                    }
                    Placement::Full => return Err(self.no_frames(port, w)),
                };
            }
        }
        let bytes = frames * KERNEL_BYTES_PER_FRAME;
        if bytes > self.kernel_memory_limit {
            return Err(DatapathError::KernelMemory {
                port: port.name.clone(),
                sockets: sockets as usize,
                frames: most,
                mib: bytes >> 20,
                limit_mib: self.kernel_memory_limit >> 20,
            });
        }
        Ok(())
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

fn validate_sizes(config: &DatapathConfig, ports: usize) -> Result<(), DatapathError> {
    let size_err = |what, value: u64, why: &str| DatapathError::Size {
        what,
        value,
        why: why.to_owned(),
    };
    if !config.ring_size.is_power_of_two() || !(64..=16384).contains(&config.ring_size) {
        return Err(size_err(
            "ring size",
            config.ring_size.into(),
            "a power of two from 64 to 16384",
        ));
    }
    if !config.frame_size.is_power_of_two() || !(2048..=4096).contains(&config.frame_size) {
        return Err(size_err(
            "frame size",
            config.frame_size.into(),
            "2048 or 4096",
        ));
    }
    let frames = config.umem_frames_for(ports);
    let least = config.frames_per_port() + u64::from(config.ring_size) + handoff::CREDITS as u64;
    if frames < least {
        return Err(size_err(
            "UMEM frames",
            frames,
            &format!("at least {least} (full rings for one port, plus flood and handoff frames)"),
        ));
    }
    // The frame index must fit a u32 and the UMEM a sane share of memory.
    if frames > u64::from(MAX_UMEM_FRAMES) {
        return Err(size_err(
            "UMEM frames",
            frames,
            &format!(
                "at most {MAX_UMEM_FRAMES} per worker (asked for {ports} port(s) at start with \
                 --ring-size {}): lower --umem-frames or --ring-size",
                config.ring_size
            ),
        ));
    }
    Ok(())
}

/// Most frames one worker's UMEM may have (1 GiB of 4 KiB frames).
const MAX_UMEM_FRAMES: u32 = 1 << 18;

/// One UMEM per worker, each sized for every socket it will own.
fn make_umems(
    workers: usize,
    ports: usize,
    config: &DatapathConfig,
) -> Result<Vec<Arc<Umem>>, DatapathError> {
    let frames = config.umem_frames_for(ports);
    (0..workers)
        .map(|w| {
            Umem::new(frames as u32, config.frame_size)
                .map(Arc::new)
                .map_err(|source| DatapathError::Umem {
                    worker: w,
                    frames,
                    frame_size: config.frame_size,
                    source,
                })
        })
        .collect()
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

/// Picks a core for each of `workers` workers: `cores` if given (checked against this
/// process's CPU set), else the allowed cores in turn.
pub fn pick_cores(cores: Option<&[usize]>, workers: usize) -> Result<Vec<usize>, DatapathError> {
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if let Some(cores) = cores {
        if cores.len() < workers {
            return Err(DatapathError::Cores(format!(
                "{} core(s) given for {workers} queue(s): give one core per queue",
                cores.len()
            )));
        }
        if let Some(bad) = cores
            .iter()
            .find(|c| !allowed.is_empty() && !allowed.contains(c))
        {
            return Err(DatapathError::Cores(format!(
                "core {bad} is not in this process's CPU set {allowed:?}"
            )));
        }
        return Ok(cores[..workers].to_vec());
    }
    if allowed.is_empty() {
        return Err(DatapathError::Cores(
            "cannot read this process's CPU set".to_owned(),
        ));
    }
    if workers > allowed.len() {
        tracing::warn!(
            "{workers} queues on {} cores: some workers share a core",
            allowed.len()
        );
    }
    Ok((0..workers).map(|i| allowed[i % allowed.len()]).collect())
}
