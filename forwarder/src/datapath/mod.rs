//! The AF_XDP datapath: sockets, UMEMs and the pinned per-queue workers.
//!
//! [`Datapath::start`] turns a list of ports into running workers:
//!
//! - one worker per RX queue index `q`, pinned to its core, owning one UMEM;
//! - in that UMEM, one AF_XDP socket for each port that has a queue `q`
//!   (`XDP_SHARED_UMEM`: each socket its own fill and completion rings), registered in
//!   the XDP program's XSKMAP at (port, `q`);
//! - the XDP program attached to every port with steering on.
//!
//! A frame received on port A queue `q` goes out of port B through worker `q`'s own
//! socket on B, by passing its descriptor: no copy in user space, and none at all where
//! the driver binds zero-copy. Where B has no queue `q`, the frame is copied into a frame
//! of the worker that owns B's queue `q % queues(B)` and handed over ([`handoff`]).
//!
//! [`Datapath::stop`] (or dropping it) stops the workers, closes the sockets and detaches
//! the program; if the process dies instead, the kernel detaches it (bpf_link).
#![allow(unsafe_code)]

pub mod handoff;
pub mod latency;
pub mod stats;
mod worker;
pub mod xsk;

use std::{
    os::fd::AsRawFd as _,
    sync::{Arc, atomic::AtomicBool, atomic::Ordering},
    thread::{self, JoinHandle},
    time::Instant,
};

use hairpin_common::{PortConf, port_flags};

use self::{
    handoff::Mailbox,
    stats::{PortQueueSnapshot, WorkerCounters},
    worker::{Route, Worker, WorkerPort},
    xsk::{Bind, Socket, Umem},
};
use crate::sys::RouteSocket;
use crate::{
    control::{
        port::{Interface, Mac},
        xdp::{AttachedMode, Steering, XdpAttachMode, XdpError},
    },
    switch::{Mode, PortId, PortPolicy, Role, Tables, TablesError},
};

/// How long to retry binding a queue that the kernel still holds for a closed socket.
const BIND_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

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
#[derive(Clone, Debug)]
pub struct DatapathConfig {
    /// The switching mode.
    pub mode: Mode,
    /// Queue indices to serve; by default the most queues any port has. A port with more
    /// RX queues than this is refused (frames on the others would bypass hairpin).
    pub queues: Option<u32>,
    /// Core for each queue index; by default queue `i` runs on the `i`-th allowed core.
    pub cores: Option<Vec<usize>>,
    /// XDP attach mode.
    pub xdp_mode: XdpAttachMode,
    /// AF_XDP bind mode.
    pub zero_copy: ZeroCopy,
    /// Entries of every ring (RX, TX, fill, completion); a power of two.
    pub ring_size: u32,
    /// UMEM frame size; a power of two, at least 2048.
    pub frame_size: u32,
    /// MAC table capacity.
    pub fdb_capacity: usize,
    /// Seconds a learned MAC lives without being seen.
    pub fdb_max_age: u32,
    /// Workers never sleep: they spin on their rings, each owning its core.
    pub busy_poll: bool,
    /// Role, hairpin and anti-spoofing of each port, in the order of the ports (missing
    /// entries: a plain downlink).
    pub policies: Vec<PortPolicy>,
    /// MAC table entries that never age or move: (port index, MAC).
    pub static_macs: Vec<(PortId, Mac)>,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Veb,
            queues: None,
            cores: None,
            xdp_mode: XdpAttachMode::Auto,
            zero_copy: ZeroCopy::Auto,
            ring_size: 2048,
            frame_size: 2048,
            fdb_capacity: 65_536,
            fdb_max_age: 300,
            busy_poll: false,
            policies: Vec::new(),
            static_macs: Vec::new(),
        }
    }
}

/// An error starting the datapath. Each names what failed on what.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// No ports.
    #[error("no ports given")]
    NoPorts,
    /// A port was given twice.
    #[error("port {0} is given twice")]
    DuplicatePort(String),
    /// Too many ports.
    #[error("{0} ports given; hairpin serves at most {max}", max = crate::switch::MAX_PORTS)]
    TooManyPorts(usize),
    /// The mode cannot work with these ports.
    #[error(transparent)]
    Tables(#[from] TablesError),
    /// `--queues` is larger than any port's queue count.
    #[error("--queues {queues}: no port has that many RX queues (the most is {most})")]
    TooManyQueues {
        /// Asked for.
        queues: u32,
        /// The most any port has.
        most: u32,
    },
    /// A port has more queues than are served.
    #[error(
        "port {port} has {has} RX queues but only {queues} are served: frames on the others would \
         bypass hairpin; serve them all (--queues {has}) or reduce them (ethtool -L {port} combined {queues})"
    )]
    UnservedQueues {
        /// The port.
        port: String,
        /// Its queue count.
        has: u32,
        /// Queues served.
        queues: u32,
    },
    /// `--cores` has too few entries or a core that is not allowed.
    #[error("--cores: {0}")]
    Cores(String),
    /// A ring or frame size is not usable.
    #[error("{what} {value} is not usable: {why}")]
    Size {
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: u32,
        /// Why not.
        why: String,
    },
    /// Creating a worker's UMEM failed.
    #[error("creating the UMEM of worker {worker} ({frames} frames of {frame_size} bytes)")]
    Umem {
        /// The worker.
        worker: usize,
        /// Frames asked for.
        frames: u32,
        /// Their size.
        frame_size: u32,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Creating or binding an AF_XDP socket failed.
    #[error("binding an AF_XDP socket to {port} queue {queue} ({mode})")]
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
    /// A static MAC names a port that does not exist.
    #[error("static MAC {mac}: there is no port {port}")]
    StaticPort {
        /// The MAC.
        mac: Mac,
        /// The port index.
        port: PortId,
    },
    /// The MAC table has no room for a static entry.
    #[error("static MAC {mac}: its MAC table bucket is full; raise the table size")]
    StaticFull {
        /// The MAC.
        mac: Mac,
    },
    /// `--zero-copy on`, but a socket bound in copy mode.
    #[error("{port} queue {queue} bound in copy mode, but --zero-copy on was asked for")]
    NotZeroCopy {
        /// The port.
        port: String,
        /// The queue.
        queue: u32,
    },
    /// The XDP program.
    #[error(transparent)]
    Xdp(#[from] XdpError),
    /// The netlink socket that reads the uplink's addresses could not be opened.
    #[error("opening a netlink route socket to follow the uplink's addresses")]
    RouteSocket(#[source] std::io::Error),
    /// Starting a worker thread or its wake-up eventfd failed.
    #[error("starting worker {worker}")]
    Worker {
        /// The worker.
        worker: usize,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What was set up on one port.
#[derive(Clone, Debug)]
pub struct PortState {
    /// The interface.
    pub iface: Interface,
    /// XDP mode it is attached in.
    pub xdp: AttachedMode,
    /// Whether its sockets bound zero-copy.
    pub zero_copy: bool,
}

/// Counters of the whole datapath at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// `per_queue[port][worker]`.
    pub per_queue: Vec<Vec<PortQueueSnapshot>>,
    /// Free pool size of each worker.
    pub free_frames: Vec<u64>,
    /// Frames each worker owns.
    pub total_frames: Vec<u64>,
    /// MAC table entries.
    pub fdb_entries: usize,
    /// Learns refused for a full bucket.
    pub fdb_full: u64,
    /// Workers that panicked (always 0 unless something is badly wrong).
    pub panicked_workers: usize,
    /// Nanoseconds each worker spent in busy turns.
    pub busy_ns: Vec<u64>,
    /// Times each worker slept for lack of work.
    pub sleeps: Vec<u64>,
    /// Time from RX read to TX submit of busy turns, all workers merged.
    pub latency: latency::Percentiles,
}

impl Snapshot {
    /// Frames worker `w` received, over every port.
    pub fn worker_rx(&self, w: usize) -> u64 {
        self.per_queue.iter().map(|port| port[w].rx_packets).sum()
    }
}

impl Snapshot {
    /// The totals of `port` over all queues.
    pub fn port_total(&self, port: usize) -> PortQueueSnapshot {
        let mut total = PortQueueSnapshot::default();
        for q in &self.per_queue[port] {
            total.accumulate(q);
        }
        total
    }
}

/// The running datapath.
#[derive(Debug)]
pub struct Datapath {
    ports: Vec<PortState>,
    tables: Arc<Tables>,
    counters: Vec<Arc<WorkerCounters>>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    steering: Steering,
    epoch: Instant,
    max_age: u32,
    cores: Vec<usize>,
    panicked: usize,
    latency: Vec<latency::SharedHistogram>,
    /// The uplink's host addresses, followed as they change.
    host_addresses: Option<HostAddresses>,
}

/// The host's addresses on the uplink, whose ARP requests and neighbour solicitations
/// the XDP program hands to the kernel.
#[derive(Debug)]
struct HostAddresses {
    /// Opened in the uplink's namespace when the datapath started.
    socket: RouteSocket,
    iface: Interface,
    current: Vec<std::net::IpAddr>,
}

impl HostAddresses {
    /// Reads the uplink's addresses and updates the XDP program's lists to match.
    fn refresh(&mut self, steering: &mut Steering) -> Result<(), XdpError> {
        let Ok(now) = self.socket.addresses(self.iface.ifindex) else {
            return Ok(()); // keep the last known list; the next tick tries again
        };
        for addr in now.iter().filter(|a| !self.current.contains(a)) {
            steering.add_host_address(*addr)?;
            if !self.current.is_empty() {
                log::info!("{}: host address {addr} added", self.iface.name);
            }
        }
        for addr in self.current.iter().filter(|a| !now.contains(a)) {
            steering.remove_host_address(*addr)?;
            log::info!("{}: host address {addr} removed", self.iface.name);
        }
        self.current = now;
        Ok(())
    }
}

fn validate_sizes(config: &DatapathConfig) -> Result<(), DatapathError> {
    let size_err = |what, value: u32, why: &str| DatapathError::Size {
        what,
        value,
        why: why.to_owned(),
    };
    if !config.ring_size.is_power_of_two() || !(64..=16384).contains(&config.ring_size) {
        return Err(size_err(
            "ring size",
            config.ring_size,
            "a power of two from 64 to 16384",
        ));
    }
    if !config.frame_size.is_power_of_two() || !(2048..=4096).contains(&config.frame_size) {
        return Err(size_err("frame size", config.frame_size, "2048 or 4096"));
    }
    Ok(())
}

fn pick_cores(config: &DatapathConfig, workers: usize) -> Result<Vec<usize>, DatapathError> {
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if let Some(cores) = &config.cores {
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
        log::warn!(
            "{workers} queues on {} cores: some workers share a core",
            allowed.len()
        );
    }
    Ok((0..workers).map(|i| allowed[i % allowed.len()]).collect())
}

impl Datapath {
    /// Sets up sockets, UMEMs and the XDP program on `ports` and starts the workers.
    /// Nothing is left attached if it fails.
    pub fn start(ports: &[Interface], config: &DatapathConfig) -> Result<Self, DatapathError> {
        if ports.is_empty() {
            return Err(DatapathError::NoPorts);
        }
        if ports.len() > crate::switch::MAX_PORTS {
            return Err(DatapathError::TooManyPorts(ports.len()));
        }
        for (i, p) in ports.iter().enumerate() {
            if ports[..i].iter().any(|q| q.ifindex == p.ifindex) {
                return Err(DatapathError::DuplicatePort(p.name.clone()));
            }
        }
        validate_sizes(config)?;
        let mut policies = config.policies.clone();
        policies.resize(ports.len(), PortPolicy::default());
        let tables = Arc::new(Tables::new(config.mode, &policies, config.fdb_capacity)?);
        for &(port, mac) in &config.static_macs {
            if usize::from(port) >= ports.len() {
                return Err(DatapathError::StaticPort { mac, port });
            }
            // In every VLAN the port carries (VLAN 0 on a VLAN-unaware bridge).
            let vlans: Vec<_> = if tables.vlans.is_aware() {
                tables.vlans.vlans_of(port).collect()
            } else {
                vec![0]
            };
            for vid in vlans {
                if tables.fdb.insert_static(vid, mac, port) == crate::switch::fdb::Learned::Full {
                    return Err(DatapathError::StaticFull { mac });
                }
            }
        }
        let most = ports.iter().map(|p| p.rx_queues).max().unwrap_or(1);
        let queues = config.queues.unwrap_or(most);
        if queues == 0 || queues > most {
            return Err(DatapathError::TooManyQueues { queues, most });
        }
        if let Some(p) = ports.iter().find(|p| p.rx_queues > queues) {
            return Err(DatapathError::UnservedQueues {
                port: p.name.clone(),
                has: p.rx_queues,
                queues,
            });
        }
        if queues > hairpin_common::MAX_QUEUES {
            return Err(DatapathError::TooManyQueues {
                queues,
                most: hairpin_common::MAX_QUEUES,
            });
        }
        let n_workers = queues as usize;
        let cores = pick_cores(config, n_workers)?;
        let mut steering = Steering::load()?;

        // One UMEM per worker, sized for every socket it will own.
        let ring = config.ring_size as usize;
        let mut umems = Vec::with_capacity(n_workers);
        for (w, _) in cores.iter().enumerate() {
            let local = ports.iter().filter(|p| (w as u32) < p.rx_queues).count();
            // Per socket: a full fill ring, a full RX ring and a full TX ring at once;
            // plus a ring's worth for flood copies and the credits lent to other workers.
            let frames = (local * 3 * ring + ring + handoff::CREDITS) as u32;
            let umem =
                Umem::new(frames, config.frame_size).map_err(|source| DatapathError::Umem {
                    worker: w,
                    frames,
                    frame_size: config.frame_size,
                    source,
                })?;
            umems.push(Arc::new(umem));
        }
        let mailboxes: Arc<[Mailbox]> = umems
            .iter()
            .enumerate()
            .map(|(w, u)| {
                Mailbox::new(Arc::clone(u))
                    .map_err(|source| DatapathError::Worker { worker: w, source })
            })
            .collect::<Result<Vec<_>, _>>()?
            .into();

        let mut host_addresses = None;
        // Sockets, registered in the XSKMAP.
        let mut states: Vec<PortState> = Vec::with_capacity(ports.len());
        let mut worker_ports: Vec<Vec<WorkerPort>> = (0..n_workers).map(|_| Vec::new()).collect();
        for (slot, iface) in ports.iter().enumerate() {
            let mut zero_copy = config.zero_copy != ZeroCopy::Off;
            for queue in 0..iface.rx_queues {
                let umem = &umems[queue as usize];
                // The first socket on a UMEM registers it; the others share it.
                let shared_with = worker_ports[queue as usize]
                    .first()
                    .map(|p: &WorkerPort| p.socket.as_raw_fd());
                let socket = |zero_copy: bool| {
                    let bind = Bind {
                        ifindex: iface.ifindex,
                        queue,
                        zero_copy,
                        shared_with,
                    };
                    // The kernel releases a closed socket's hold on its queue from a work
                    // item: right after another process (or an earlier run) let go of
                    // this queue, binding can fail with EBUSY for a moment.
                    let deadline = Instant::now() + BIND_BUSY_WAIT;
                    loop {
                        match Socket::new(umem, config.ring_size, bind) {
                            Err(e)
                                if e.raw_os_error() == Some(libc::EBUSY)
                                    && Instant::now() < deadline =>
                            {
                                thread::sleep(std::time::Duration::from_millis(20));
                            }
                            other => break other,
                        }
                    }
                };
                let created = match socket(zero_copy) {
                    Err(e)
                        if zero_copy
                            && config.zero_copy == ZeroCopy::Auto
                            && shared_with.is_none() =>
                    {
                        log::info!(
                            "{}: zero-copy is not available ({e}); using copy mode",
                            iface.name,
                        );
                        zero_copy = false;
                        socket(false)
                    }
                    other => other,
                };
                let socket = created.map_err(|source| DatapathError::Socket {
                    port: iface.name.clone(),
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
                zero_copy = crate::sys::xsk_zero_copy(socket.as_raw_fd()).unwrap_or(false);
                if config.zero_copy == ZeroCopy::On && !zero_copy {
                    return Err(DatapathError::NotZeroCopy {
                        port: iface.name.clone(),
                        queue,
                    });
                }
                steering.bind_socket(slot as u32, queue, &socket)?;
                worker_ports[queue as usize].push(WorkerPort {
                    id: slot as PortId,
                    socket,
                    pending: Vec::with_capacity(4 * worker::BATCH),
                    in_fill: 0,
                    in_tx: 0,
                    tx_backlog: false,
                });
            }
            // The uplink keeps the host's own traffic: frames for its MAC, and ARP
            // requests and neighbour solicitations for its addresses, go to the kernel.
            let mut conf = PortConf {
                slot: slot as u32,
                flags: port_flags::STEER,
                ..PortConf::default()
            };
            if policies[slot].role == Role::Uplink {
                conf.flags |= port_flags::PASS_HOST_MAC;
                conf.host_mac = iface.mac.0;
                let mut host = HostAddresses {
                    socket: RouteSocket::new().map_err(DatapathError::RouteSocket)?,
                    iface: iface.clone(),
                    current: Vec::new(),
                };
                host.refresh(&mut steering)?;
                log::info!(
                    "{}: frames for the host ({}) and ARP/ND for {:?} stay with the kernel",
                    iface.name,
                    iface.mac,
                    host.current
                );
                host_addresses = Some(host);
            }
            steering.configure_port(iface, conf)?;
            states.push(PortState {
                iface: iface.clone(),
                xdp: AttachedMode::Generic,
                zero_copy,
            });
        }
        for state in &mut states {
            state.xdp = steering.attach(&state.iface, config.xdp_mode)?;
        }

        // Workers.
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let mut counters = Vec::with_capacity(n_workers);
        let mut histograms = Vec::with_capacity(n_workers);
        let mut workers = Vec::with_capacity(n_workers);
        for (w, (umem, local)) in umems.into_iter().zip(worker_ports).enumerate() {
            let pool = umem.all_frames();
            let routes = ports
                .iter()
                .enumerate()
                .map(
                    |(p, iface)| match local.iter().position(|wp| wp.id as usize == p) {
                        Some(i) => Route::Local(i),
                        None => Route::Remote(w % iface.rx_queues as usize),
                    },
                )
                .collect();
            let worker_counters = Arc::new(WorkerCounters::new(ports.len()));
            counters.push(Arc::clone(&worker_counters));
            let mut worker = Worker {
                index: w,
                umem,
                ports: local,
                routes,
                total_frames: pool.len(),
                pool,
                lent: 0,
                tables: Arc::clone(&tables),
                mailboxes: Arc::clone(&mailboxes),
                counters: worker_counters,
                stop: Arc::clone(&stop),
                epoch,
                busy_poll: config.busy_poll,
                latency: {
                    let h = latency::shared();
                    histograms.push(Arc::clone(&h));
                    latency::Recorder::new(h)
                },
            };
            worker.prime();
            let core = cores[w];
            let spawned = thread::Builder::new()
                .name(format!("hairpin-q{w}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        log::warn!("worker {w}: could not pin to core {core}");
                    }
                    worker.run();
                });
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(source) => {
                    stop.store(true, Ordering::Relaxed);
                    for handle in workers {
                        let _ = handle.join();
                    }
                    return Err(DatapathError::Worker { worker: w, source });
                }
            }
        }
        Ok(Self {
            ports: states,
            tables,
            counters,
            stop,
            workers,
            steering,
            epoch,
            max_age: config.fdb_max_age,
            cores,
            panicked: 0,
            latency: histograms,
            host_addresses,
        })
    }

    /// The ports and how they were set up.
    pub fn ports(&self) -> &[PortState] {
        &self.ports
    }

    /// The core each worker (queue index) is pinned to.
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// The switching tables (for the MAC table).
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Housekeeping, a few times a second: ages the MAC table, and follows the host's
    /// addresses on the uplink (a DHCP renewal or an operator's `ip addr add` is seen at
    /// the next tick).
    pub fn tick(&mut self) {
        if let Some(host) = &mut self.host_addresses
            && let Err(e) = host.refresh(&mut self.steering)
        {
            log::warn!("following the host's addresses: {e}");
        }
        let now = self.epoch.elapsed().as_secs() as u32;
        let aged = self.tables.fdb.age(now, self.max_age);
        if aged > 0 {
            log::debug!("aged out {aged} MAC table entries");
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            per_queue: (0..self.ports.len())
                .map(|p| {
                    self.counters
                        .iter()
                        .map(|c| PortQueueSnapshot::of(&c.ports[p]))
                        .collect()
                })
                .collect(),
            free_frames: self.counters.iter().map(|c| c.free_frames.get()).collect(),
            total_frames: self.counters.iter().map(|c| c.total_frames.get()).collect(),
            fdb_entries: self.tables.fdb.len(),
            fdb_full: self.tables.fdb.full_events(),
            panicked_workers: self.panicked,
            busy_ns: self.counters.iter().map(|c| c.busy_ns.get()).collect(),
            sleeps: self.counters.iter().map(|c| c.sleeps.get()).collect(),
            latency: latency::merge(&self.latency),
        }
    }

    /// The XDP program's own per-queue counters for port `slot`.
    pub fn xdp_stats(&self, slot: usize) -> Vec<hairpin_common::QueueStats> {
        (0..self.ports[slot].iface.rx_queues)
            .map(|q| {
                self.steering
                    .queue_stats(slot as u32, q)
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Stops the workers, closes the sockets, detaches from every port, and returns the
    /// final counters.
    pub fn stop(mut self) -> Snapshot {
        self.shutdown();
        self.snapshot()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.workers.drain(..) {
            if handle.join().is_err() {
                log::error!("a worker panicked");
                self.panicked += 1;
            }
        }
        self.steering.detach_all();
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}
