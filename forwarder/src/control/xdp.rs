//! Loading hairpin's XDP program and steering ports' RX queues into AF_XDP sockets.
//!
//! [`Steering`] owns the loaded program, its maps and every attachment. Attachments are
//! bpf_links: when the process ends in any way, SIGKILL included, the kernel closes the
//! link and the port goes back to plain kernel forwarding.
use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, AsRawFd},
    ptr::NonNull,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap, MapData, PerCpuArray, ProgramArray, XskMap},
    programs::{Link as _, ProgramFd, Xdp, XdpMode, xdp::XdpLinkId},
};
use hairpin_common::{
    EGRESS_INFO_ENTRIES, EGRESS_PROGRAM_NAME, FLOOD_PROGRAM_NAME, FastConf, FastTx,
    MAX_PORT_QUEUES, PROGRAM_NAME, PortConf, QueueStats, SlotConf, allowed_key, egress_info, maps,
    slot_flags, xsk_index,
};

use crate::{
    control::{capture::XdpTaps, port::Interface},
    switch::{fdb::SharedMemory, guard::IpPrefix},
};

mod meters;

mod guard;

/// The XDP object `cargo xtask build` embedded (empty for a plain `cargo build`).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hairpin.bpf.o"));

/// The embedded eBPF object (empty when built without `cargo xtask build`), for tools
/// that load its other programs, such as the benchmark's generator.
pub fn embedded_object() -> Result<&'static [u8], XdpError> {
    if EBPF_OBJECT.is_empty() {
        Err(XdpError::NotEmbedded)
    } else {
        Ok(EBPF_OBJECT)
    }
}

/// An error loading, attaching or configuring the XDP program.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// This binary was built without the XDP object.
    #[error(
        "this hairpin binary was built without its XDP program; build it with `cargo xtask build`"
    )]
    NotEmbedded,
    /// The kernel refused the object or one of its maps.
    #[error("loading the XDP program into the kernel (needs root or CAP_BPF + CAP_NET_ADMIN)")]
    Load(#[source] aya::EbpfError),
    /// The object lacks a program or map it should have.
    #[error("the embedded XDP object has no {what} named {name}")]
    Missing {
        /// "program" or "map".
        what: &'static str,
        /// The name looked for.
        name: &'static str,
    },
    /// The program failed verification or loading.
    #[error("verifying the XDP program")]
    Program(#[source] aya::programs::ProgramError),
    /// A map had an unexpected type.
    #[error("map {name} of the XDP object")]
    MapType {
        /// The map's name.
        name: &'static str,
        /// The error from aya.
        #[source]
        source: aya::maps::MapError,
    },
    /// Another XDP program holds the port.
    #[error(
        "attaching XDP to {port}: another XDP program{} is attached to it; hairpin does not replace it \
         (see `ip -d link show {port}`; detach it with `ip link set {port} xdp off` if it is not needed)",
        match .prog_id { Some(id) => format!(" (id {id})"), None => String::new() }
    )]
    Occupied {
        /// The port.
        port: String,
        /// The program's id, if the kernel said.
        prog_id: Option<u32>,
    },
    /// Attaching to a port failed.
    #[error("attaching XDP ({mode}) to {port}")]
    Attach {
        /// The port.
        port: String,
        /// The mode tried.
        mode: AttachedMode,
        /// The error from the kernel.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A queue that is not one of the port's entries in the XDP maps.
    #[error("port slot {slot} has no queue {queue} in the XDP maps")]
    OutOfRange {
        /// The port's slot.
        slot: u32,
        /// The queue.
        queue: u32,
    },
    /// The per-queue maps have no room left for a port's RX queues.
    #[error(
        "no room for {queues} more RX queue(s) in the XDP maps: the ports attached hold {used} \
         of their {max} entries (a port takes one per RX queue; fewer queues per port, e.g. \
         `ethtool -L`, leave room for more ports)",
        max = hairpin_common::MAX_PORT_QUEUES
    )]
    NoQueueRoom {
        /// The port's RX queues.
        queues: u32,
        /// Entries the other ports hold.
        used: u32,
    },
    /// The CPU count could not be read.
    #[error("reading the number of possible CPUs")]
    Cpus(#[source] std::io::Error),
    /// The MAC table is too large for the XDP program's map.
    #[error("a MAC table of {0} buckets is too large")]
    FdbTooLarge(usize),
    /// Mapping the MAC table's map into memory failed.
    #[error("mapping the XDP program's MAC table into memory")]
    MapFdb(#[source] std::io::Error),
    /// Mapping the storm control and policing meters' map into memory failed.
    #[error("mapping the XDP program's meters (storm control, policing) into memory")]
    MapMeters(#[source] std::io::Error),
    /// The fast path's egress map refused a device.
    #[error("adding ifindex {0} to the fast path's egress map")]
    Egress(u32, #[source] aya::maps::xdp::XdpMapError),
    /// Updating or reading a map failed.
    #[error("{action} map {name}")]
    Map {
        /// What was being done.
        action: &'static str,
        /// The map's name.
        name: &'static str,
        /// The error from aya.
        #[source]
        source: aya::maps::MapError,
    },
}

/// How to attach: `--xdp-mode auto|native|generic`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpAttachMode {
    /// Native where the driver supports it, generic otherwise (with one log line).
    #[default]
    Auto,
    /// Driver (native) XDP only.
    Native,
    /// Generic (skb) XDP only.
    Generic,
}

/// The kernel fast path (`--fast-path auto|on|off`): learned unicast forwarded inside
/// the XDP program, everything else by the workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FastPath {
    /// To the ports whose AF_XDP sockets run in copy mode, where the workers' transmit
    /// builds an skb for every frame (the fast path measured 5x the workers there); a
    /// port bound zero-copy is left to the workers, whose transmit is cheap there.
    #[default]
    Auto,
    /// Frames whose fate is certain go straight to their egress port from XDP, whatever
    /// the port's socket mode.
    On,
    /// Every frame goes through the AF_XDP workers.
    Off,
}

impl FastPath {
    /// Whether the fast path may send to a port whose sockets are bound zero-copy
    /// (`zero_copy`) or not.
    pub fn sends_to(self, zero_copy: bool) -> bool {
        match self {
            Self::Auto => !zero_copy,
            Self::On => true,
            Self::Off => false,
        }
    }
}

/// The fast path's floods (`--fast-floods on|off`): broadcast, multicast and unknown
/// unicast from a known source flooded inside XDP (a kernel copy per port of the
/// VLAN), where the kernel reaches every port the flood must; else, and with `off`, by
/// the workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FastFloods {
    #[default]
    On,
    Off,
}

/// The mode an attachment ended up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    /// Driver XDP.
    Native,
    /// Generic XDP.
    Generic,
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

impl AttachedMode {
    fn aya(self) -> XdpMode {
        match self {
            Self::Native => XdpMode::Driver,
            Self::Generic => XdpMode::Skb,
        }
    }
}

/// The loaded XDP program, its maps and its attachments.
pub struct Steering {
    ebpf: Ebpf,
    ports: HashMap<MapData, u32, PortConf>,
    host_ipv4: HashMap<MapData, u32, u8>,
    host_ipv6: HashMap<MapData, [u8; 16], u8>,
    xsks: XskMap<MapData>,
    stats: PerCpuArray<MapData, QueueStats>,
    fast: FastMaps,
    queue_ranges: QueueRanges,
    /// By ifindex.
    links: Vec<(u32, String, XdpLinkId)>,
    /// The tap maps, until the capture thread takes them.
    taps: Option<XdpTaps>,
    /// The IP source guard's maps.
    guard: guard::GuardMaps,
}

/// The fast path's maps (see `ebpf/src/fast.rs`).
struct FastMaps {
    /// The MAC table's buckets, mapped by [`Steering::fdb_memory`].
    fdb: MapData,
    buckets: usize,
    conf: Array<MapData, FastConf>,
    slots: Array<MapData, SlotConf>,
    egress: DevMapHash<MapData>,
    allowed: HashMap<MapData, u64, u8>,
    /// What `allowed` holds, by slot, to take out what a port no longer lists.
    allowed_now: BTreeMap<u32, Vec<u64>>,
    tx: PerCpuArray<MapData, FastTx>,
    /// The meters' state and the fast path's policing drops (`xdp/meters.rs`).
    meters: meters::MeterMaps,
    /// The devmap egress program, on every entry of `floods`, and of `egress` when
    /// `egress_program_on_unicast` (the fast path floods: a device's bulk of frames in a
    /// NAPI poll runs the program of the first one queued, so all must have it).
    egress_program: ProgramFd,
    egress_program_on_unicast: bool,
    /// `EGRESS_INFO`, and the ifindex each slot's entry there is at.
    egress_info: Array<MapData, u32>,
    egress_info_at: BTreeMap<u32, u32>,
    /// `FLOOD_VLAN`: each VLAN's flood domain word.
    flood_vlan: Array<MapData, u32>,
    /// The flood domains (`FLOODS_*`), and what each holds now (slot → ifindex).
    floods: Vec<(DevMapHash<MapData>, BTreeMap<u32, u32>)>,
}

/// Which entries of the per-(port, queue) maps (`XSKS`, `QUEUE_STATS`) each port slot
/// holds: a range of one entry per RX queue, first fit in `0..MAX_PORT_QUEUES`.
#[derive(Debug, Default)]
struct QueueRanges {
    /// By slot: (first entry, entries).
    by_slot: BTreeMap<u32, (u32, u32)>,
}

impl QueueRanges {
    /// Gives `slot` a range of `queues` entries (in place of any it had, which it keeps
    /// if there is no room), returning its first entry.
    fn reserve(&mut self, slot: u32, queues: u32) -> Result<u32, XdpError> {
        let had = self.by_slot.remove(&slot);
        let mut taken: Vec<(u32, u32)> = self.by_slot.values().copied().collect();
        taken.sort_unstable();
        let mut next = 0;
        for (base, n) in taken.iter().copied().chain([(MAX_PORT_QUEUES, 0)]) {
            if base - next >= queues {
                self.by_slot.insert(slot, (next, queues));
                return Ok(next);
            }
            next = base + n;
        }
        if let Some(had) = had {
            self.by_slot.insert(slot, had);
        }
        Err(XdpError::NoQueueRoom {
            queues,
            used: taken.iter().map(|&(_, n)| n).sum(),
        })
    }

    /// Frees `slot`'s range.
    fn release(&mut self, slot: u32) {
        self.by_slot.remove(&slot);
    }

    /// The entry of `slot`'s `queue`.
    fn index(&self, slot: u32, queue: u32) -> Result<u32, XdpError> {
        self.by_slot
            .get(&slot)
            .and_then(|&(base, n)| xsk_index(base, n, queue))
            .ok_or(XdpError::OutOfRange { slot, queue })
    }

    /// `slot`'s (first entry, entries), or none.
    fn of(&self, slot: u32) -> (u32, u32) {
        self.by_slot.get(&slot).copied().unwrap_or((0, 0))
    }
}

impl Steering {
    /// Loads the embedded XDP program into the kernel, without attaching it anywhere,
    /// with room for a MAC table of `fdb_buckets` buckets. With `floods` (the fast path
    /// floods too) every `EGRESS` entry carries the devmap egress program, which then
    /// counts what the fast path sends; without, the XDP program counts it itself and
    /// a unicast frame costs no second program.
    pub fn load(fdb_buckets: usize, floods: bool) -> Result<Self, XdpError> {
        let buckets = u32::try_from(fdb_buckets).map_err(|_| XdpError::FdbTooLarge(fdb_buckets))?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::FDB, buckets)
            .load(embedded_object()?)
            .map_err(XdpError::Load)?;
        program_of(&mut ebpf)?.load().map_err(XdpError::Program)?;
        let egress_program = load_program(&mut ebpf, EGRESS_PROGRAM_NAME)?;
        let flood_program = load_program(&mut ebpf, FLOOD_PROGRAM_NAME)?;
        {
            let map = ebpf.map_mut(maps::FLOOD_PROGRAM).ok_or(XdpError::Missing {
                what: "map",
                name: maps::FLOOD_PROGRAM,
            })?;
            let mut programs = ProgramArray::try_from(map).map_err(|source| XdpError::MapType {
                name: maps::FLOOD_PROGRAM,
                source,
            })?;
            programs
                .set(0, &flood_program, 0)
                .map_err(map_error("updating", maps::FLOOD_PROGRAM))?;
        }

        let mut take = |name: &'static str| {
            ebpf.take_map(name)
                .ok_or(XdpError::Missing { what: "map", name })
        };
        let (ports, xsks, stats) = (
            take(maps::PORTS)?,
            take(maps::XSKS)?,
            take(maps::QUEUE_STATS)?,
        );
        let host_ipv4 = take(maps::HOST_IPV4)?;
        let host_ipv6 = take(maps::HOST_IPV6)?;
        let fdb = take(maps::FDB)?;
        let (conf, slots, egress, allowed, tx) = (
            take(maps::FAST_CONF)?,
            take(maps::SLOT_CONF)?,
            take(maps::EGRESS)?,
            take(maps::ALLOWED)?,
            take(maps::FAST_TX)?,
        );
        let typed = |name| move |source| XdpError::MapType { name, source };
        let fdb = match fdb {
            aya::maps::Map::Array(data) => data,
            _ => {
                return Err(XdpError::MapType {
                    name: maps::FDB,
                    source: aya::maps::MapError::InvalidName {
                        name: maps::FDB.to_owned(),
                    },
                });
            }
        };
        let fast = FastMaps {
            fdb,
            buckets: fdb_buckets,
            conf: Array::try_from(conf).map_err(typed(maps::FAST_CONF))?,
            slots: Array::try_from(slots).map_err(typed(maps::SLOT_CONF))?,
            egress: DevMapHash::try_from(egress).map_err(typed(maps::EGRESS))?,
            allowed: HashMap::try_from(allowed).map_err(typed(maps::ALLOWED))?,
            allowed_now: BTreeMap::new(),
            tx: PerCpuArray::try_from(tx).map_err(typed(maps::FAST_TX))?,
            meters: meters::MeterMaps::new(
                take(maps::METERS)?,
                take(maps::METER_DROPS)?,
                take(maps::STORM_DROPS)?,
            )?,
            egress_program,
            egress_program_on_unicast: floods,
            egress_info: Array::try_from(take(maps::EGRESS_INFO)?)
                .map_err(typed(maps::EGRESS_INFO))?,
            egress_info_at: BTreeMap::new(),
            flood_vlan: Array::try_from(take(maps::FLOOD_VLAN)?)
                .map_err(typed(maps::FLOOD_VLAN))?,
            floods: maps::FLOODS
                .iter()
                .map(|&name| {
                    let map = DevMapHash::try_from(take(name)?).map_err(typed(name))?;
                    Ok((map, BTreeMap::new()))
                })
                .collect::<Result<_, XdpError>>()?,
        };
        let taps = XdpTaps::new(
            take(maps::TAPS)?,
            take(maps::TAP_RING)?,
            take(maps::TAP_LOST)?,
        )
        .map_err(typed(maps::TAP_RING))?;
        let guard = guard::GuardMaps::new(
            take(maps::GUARD_V4)?,
            take(maps::GUARD_V6)?,
            take(maps::GUARD_DROPS)?,
        )?;
        Ok(Self {
            guard,
            taps: Some(taps),
            fast,
            ports: HashMap::try_from(ports).map_err(typed(maps::PORTS))?,
            host_ipv4: HashMap::try_from(host_ipv4).map_err(typed(maps::HOST_IPV4))?,
            host_ipv6: HashMap::try_from(host_ipv6).map_err(typed(maps::HOST_IPV6))?,
            xsks: XskMap::try_from(xsks).map_err(typed(maps::XSKS))?,
            stats: PerCpuArray::try_from(stats).map_err(typed(maps::QUEUE_STATS))?,
            ebpf,
            queue_ranges: QueueRanges::default(),
            links: Vec::new(),
        })
    }

    /// The tap maps (`TAPS`, `TAP_RING`, `TAP_LOST`), for the capture thread: once.
    pub fn take_taps(&mut self) -> Option<XdpTaps> {
        self.taps.take()
    }

    /// Gives port `slot` one entry per RX queue in the per-queue maps (`XSKS`,
    /// `QUEUE_STATS`), its counters there zeroed; refused when the maps are full.
    pub fn reserve_queues(&mut self, slot: u32, queues: u32) -> Result<(), XdpError> {
        if self
            .queue_ranges
            .by_slot
            .get(&slot)
            .is_some_and(|&(_, n)| n == queues)
        {
            return Ok(());
        }
        let base = self.queue_ranges.reserve(slot, queues)?;
        self.zero_stats(base, queues).inspect_err(|_| {
            // Not given after all: the next attempt zeroes them again.
            self.queue_ranges.release(slot);
        })
    }

    /// Zeroes the per-queue counters of entries `base..base + queues`.
    fn zero_stats(&mut self, base: u32, queues: u32) -> Result<(), XdpError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| XdpError::Cpus(e))?;
        let zeroing = |source| XdpError::Map {
            action: "zeroing",
            name: maps::QUEUE_STATS,
            source,
        };
        for index in base..base + queues {
            let zero = aya::maps::PerCpuValues::try_from(vec![QueueStats::default(); cpus])
                .map_err(|e| zeroing(aya::maps::MapError::IoError(e)))?;
            self.stats.set(index, zero, 0).map_err(zeroing)?;
        }
        Ok(())
    }

    /// Frees port `slot`'s entries in the per-queue maps (after its sockets are
    /// unbound).
    pub fn release_queues(&mut self, slot: u32) {
        self.queue_ranges.release(slot);
    }

    /// Tells the program how to treat frames arriving on `iface`; `conf`'s queue range
    /// is its slot's ([`Self::reserve_queues`], for its RX queues, if not yet).
    pub fn configure_port(
        &mut self,
        iface: &Interface,
        mut conf: PortConf,
    ) -> Result<(), XdpError> {
        self.reserve_queues(conf.slot, iface.rx_queues)?;
        (conf.queue_base, conf.queues) = self.queue_ranges.of(conf.slot);
        self.ports
            .insert(iface.ifindex, conf, 0)
            .map_err(|source| XdpError::Map {
                action: "updating",
                name: maps::PORTS,
                source,
            })
    }

    /// Forgets `ifindex`: the program passes its frames to the kernel again.
    pub fn forget_port(&mut self, ifindex: u32) -> Result<(), XdpError> {
        match self.ports.remove(&ifindex) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(XdpError::Map {
                action: "updating",
                name: maps::PORTS,
                source,
            }),
        }
    }

    /// Lets ARP requests (IPv4) or neighbour solicitations (IPv6) for `addr` through to
    /// the host's stack on ports with [`hairpin_common::port_flags::PASS_HOST_MAC`].
    pub fn add_host_address(&mut self, addr: std::net::IpAddr) -> Result<(), XdpError> {
        let (name, result) = match addr {
            std::net::IpAddr::V4(v4) => (
                maps::HOST_IPV4,
                self.host_ipv4.insert(u32::from_ne_bytes(v4.octets()), 1, 0),
            ),
            std::net::IpAddr::V6(v6) => (maps::HOST_IPV6, self.host_ipv6.insert(v6.octets(), 1, 0)),
        };
        result.map_err(|source| XdpError::Map {
            action: "updating",
            name,
            source,
        })
    }

    /// Forgets a host address given to [`Steering::add_host_address`].
    pub fn remove_host_address(&mut self, addr: std::net::IpAddr) -> Result<(), XdpError> {
        let (name, result) = match addr {
            std::net::IpAddr::V4(v4) => (
                maps::HOST_IPV4,
                self.host_ipv4.remove(&u32::from_ne_bytes(v4.octets())),
            ),
            std::net::IpAddr::V6(v6) => (maps::HOST_IPV6, self.host_ipv6.remove(&v6.octets())),
        };
        result.map_err(|source| XdpError::Map {
            action: "updating",
            name,
            source,
        })
    }

    /// Attaches the program to `iface`, returning the mode it ended up in.
    pub fn attach(
        &mut self,
        iface: &Interface,
        mode: XdpAttachMode,
    ) -> Result<AttachedMode, XdpError> {
        let tries: &[AttachedMode] = match mode {
            XdpAttachMode::Auto => &[AttachedMode::Native, AttachedMode::Generic],
            XdpAttachMode::Native => &[AttachedMode::Native],
            XdpAttachMode::Generic => &[AttachedMode::Generic],
        };
        let program = self.program()?;
        let mut last = None;
        for &attempt in tries {
            match program.attach_to_if_index(iface.ifindex, attempt.aya()) {
                Ok(link) => {
                    if last.is_some() {
                        tracing::warn!(
                            "{}: native XDP is not supported by its driver; using generic (slower)",
                            iface.name
                        );
                    }
                    self.links.push((iface.ifindex, iface.name.clone(), link));
                    return Ok(attempt);
                }
                Err(source) => last = Some((attempt, source)),
            }
        }
        let (mode, source) = last.expect("at least one attach mode is always tried");
        if let Some(prog_id) = occupied(&source) {
            return Err(XdpError::Occupied {
                port: iface.name.clone(),
                prog_id,
            });
        }
        Err(XdpError::Attach {
            port: iface.name.clone(),
            mode,
            source,
        })
    }

    /// Points (port slot, queue) at an AF_XDP socket.
    pub fn bind_socket(
        &mut self,
        slot: u32,
        queue: u32,
        socket: &impl AsRawFd,
    ) -> Result<(), XdpError> {
        let index = self.queue_ranges.index(slot, queue)?;
        self.xsks
            .set(index, socket.as_raw_fd(), 0)
            .map_err(|source| XdpError::Map {
                action: "updating",
                name: maps::XSKS,
                source,
            })
    }

    /// Clears (port slot, queue) in the socket map.
    pub fn unbind_socket(&mut self, slot: u32, queue: u32) -> Result<(), XdpError> {
        let index = self.queue_ranges.index(slot, queue)?;
        match self.xsks.unset(index) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(XdpError::Map {
                action: "updating",
                name: maps::XSKS,
                source,
            }),
        }
    }

    /// Detaches from `ifindex` (a device already gone detached itself).
    pub fn detach(&mut self, ifindex: u32) {
        let Some(i) = self.links.iter().position(|l| l.0 == ifindex) else {
            return;
        };
        let (_, port, link) = self.links.remove(i);
        if let Ok(program) = self.program()
            && let Err(e) = program.detach(link)
        {
            tracing::debug!("detaching XDP from {port}: {e}");
        }
    }

    /// Detaches the program from every port of `ifindexes` at once: each detach waits
    /// for the kernel (`sys::in_parallel`), so a thousand take seconds one by one.
    pub fn detach_ports(&mut self, ifindexes: &[u32]) {
        let (gone, kept) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|l| ifindexes.contains(&l.0));
        self.links = kept;
        let Ok(program) = self.program() else {
            return;
        };
        let links: Vec<_> = gone
            .into_iter()
            .filter_map(|(_, port, link)| {
                program
                    .take_link(link)
                    .inspect_err(|e| tracing::warn!("detaching XDP from {port}: {e}"))
                    .ok()
                    .map(|link| (port, link))
            })
            .collect();
        crate::sys::in_parallel(links, |(port, link)| {
            if let Err(e) = link.detach() {
                tracing::warn!("detaching XDP from {port}: {e}");
            }
        });
    }

    fn program(&mut self) -> Result<&mut Xdp, XdpError> {
        program_of(&mut self.ebpf)
    }

    /// The program's counters for (port slot, queue), summed over CPUs.
    pub fn queue_stats(&self, slot: u32, queue: u32) -> Result<QueueStats, XdpError> {
        let index = self.queue_ranges.index(slot, queue)?;
        let per_cpu = self.stats.get(&index, 0).map_err(|source| XdpError::Map {
            action: "reading",
            name: maps::QUEUE_STATS,
            source,
        })?;
        let mut total = QueueStats::default();
        for cpu in per_cpu.iter() {
            total.accumulate(cpu);
        }
        Ok(total)
    }

    /// The MAC table's buckets (the `FDB` map), mapped into this process: the memory the
    /// workers' table lives in, so that the fast path reads the same one.
    pub fn fdb_memory(&self) -> Result<Box<dyn SharedMemory>, XdpError> {
        let len = crate::switch::fdb::Fdb::bytes_for(self.fast.buckets);
        map_values(&self.fast.fdb, len).map_err(XdpError::MapFdb)
    }

    /// The workers' MAC table, in the program's `FDB` map (empty), so that the fast
    /// path reads the same table.
    #[allow(unsafe_code)]
    pub fn shared_fdb(&self) -> Result<crate::switch::Fdb, XdpError> {
        let memory = self.fdb_memory()?;
        // SAFETY: a fresh array map is zeroed, and its mapping page-aligned and of the
        // size asked for (checked again by `in_shared`); the XDP program touches its
        // words only with aligned 8-byte loads and compare-and-swaps that follow the
        // layout (`ebpf/src/fast.rs`).
        unsafe { crate::switch::Fdb::in_shared(memory, self.fast.buckets) }
            .map_err(|e| XdpError::MapFdb(std::io::Error::other(e)))
    }

    /// Sets the fast path's bridge-wide settings.
    pub fn set_fast_conf(&mut self, conf: FastConf) -> Result<(), XdpError> {
        self.fast
            .conf
            .set(0, conf, 0)
            .map_err(map_error("updating", maps::FAST_CONF))
    }

    /// Sets port `slot`'s fast-path settings, its anti-spoofing list, and whether (and
    /// to which device) the fast path may send to it.
    pub fn set_fast_slot(
        &mut self,
        slot: u32,
        conf: &SlotConf,
        allowed: &[[u8; 6]],
        egress: Option<u32>,
    ) -> Result<(), XdpError> {
        let fast = &mut self.fast;
        // Egress first off, settings last on: a frame never meets half of a change.
        if egress.is_none() {
            match fast.egress.remove(slot) {
                Err(e) if !absent(&e) => return Err(map_error("updating", maps::EGRESS)(e)),
                _ => {}
            }
        }
        fast.slots
            .set(slot, conf, 0)
            .map_err(map_error("updating", maps::SLOT_CONF))?;
        let wanted: Vec<u64> = allowed.iter().map(|m| allowed_key(slot, *m)).collect();
        // Forgotten only once out of the map: a failure half-way leaves them to remove
        // next time.
        let had = fast.allowed_now.get(&slot).cloned().unwrap_or_default();
        for key in had.iter().filter(|k| !wanted.contains(k)) {
            match fast.allowed.remove(key) {
                Err(e) if !absent(&e) => return Err(map_error("updating", maps::ALLOWED)(e)),
                _ => {}
            }
        }
        fast.allowed_now.remove(&slot);
        for key in &wanted {
            fast.allowed
                .insert(key, 1, 0)
                .map_err(map_error("updating", maps::ALLOWED))?;
        }
        if !wanted.is_empty() {
            fast.allowed_now.insert(slot, wanted);
        }
        // What the egress program needs of the port, before any frame is sent to it.
        // (Cleared only while it still names this slot: another may have it now.)
        if let Some(at) = fast.egress_info_at.remove(&slot)
            && Some(at) != egress
            && fast
                .egress_info
                .get(&at, 0)
                .is_ok_and(|info| info & 0xffff == slot + 1)
        {
            fast.egress_info
                .set(at, 0, 0)
                .map_err(map_error("updating", maps::EGRESS_INFO))?;
        }
        if let Some(ifindex) = egress
            && ifindex < EGRESS_INFO_ENTRIES
        {
            let pop = if conf.flags & slot_flags::UNTAG != 0 {
                conf.pvid
            } else {
                0
            };
            fast.egress_info
                .set(ifindex, egress_info(slot, pop), 0)
                .map_err(map_error("updating", maps::EGRESS_INFO))?;
            fast.egress_info_at.insert(slot, ifindex);
        }
        if let Some(ifindex) = egress {
            let program = fast
                .egress_program_on_unicast
                .then_some(&fast.egress_program);
            fast.egress
                .insert(slot, ifindex, program, 0)
                .map_err(|e| XdpError::Egress(ifindex, e))?;
        }
        Ok(())
    }

    /// Sets VLAN `vid`'s flood domain word (`hairpin_common::flood::entry`; 0: the
    /// workers flood it).
    pub fn set_flood_vlan(&mut self, vid: u16, entry: u32) -> Result<(), XdpError> {
        self.fast
            .flood_vlan
            .set(u32::from(vid), entry, 0)
            .map_err(map_error("updating", maps::FLOOD_VLAN))
    }

    /// Makes flood domain `domain` hold exactly `members`, as (slot, ifindex): those
    /// it no longer holds out, then the new ones in.
    pub fn set_flood_domain(
        &mut self,
        domain: u32,
        members: &[(u32, u32)],
    ) -> Result<(), XdpError> {
        let name = maps::FLOODS[domain as usize];
        let program = &self.fast.egress_program;
        let (map, now) = &mut self.fast.floods[domain as usize];
        let wanted: BTreeMap<u32, u32> = members.iter().copied().collect();
        for slot in now.keys().copied().collect::<Vec<_>>() {
            if wanted.get(&slot) != now.get(&slot) {
                match map.remove(slot) {
                    Err(e) if !absent(&e) => return Err(map_error("updating", name)(e)),
                    _ => {}
                }
                now.remove(&slot);
            }
        }
        for (&slot, &ifindex) in &wanted {
            if now.get(&slot) != Some(&ifindex) {
                map.insert(slot, ifindex, Some(program), 0)
                    .map_err(|e| XdpError::Egress(ifindex, e))?;
                now.insert(slot, ifindex);
            }
        }
        Ok(())
    }

    /// What the fast path sent out of port `slot`, summed over CPUs.
    pub fn fast_tx(&self, slot: u32) -> Result<FastTx, XdpError> {
        let per_cpu = self
            .fast
            .tx
            .get(&slot, 0)
            .map_err(map_error("reading", maps::FAST_TX))?;
        Ok(per_cpu.iter().fold(FastTx::default(), |mut t, c| {
            t.packets += c.packets;
            t.bytes += c.bytes;
            t
        }))
    }

    /// Sets port `slot`'s IP source guard prefixes in the fast path's tries (empty:
    /// none), the new ones in before the old ones out.
    pub fn set_guard(&mut self, slot: u32, prefixes: &[IpPrefix]) -> Result<(), XdpError> {
        self.guard.set(slot, prefixes)
    }

    /// What the fast path's IP source guard dropped on port `slot`, summed over CPUs.
    pub fn guard_drops(&self, slot: u32) -> Result<hairpin_common::guard::Drops, XdpError> {
        self.guard.drops(slot)
    }

    /// Detaches from every port now (dropping `Steering` does the same).
    pub fn detach_all(&mut self) {
        let all: Vec<u32> = self.links.iter().map(|l| l.0).collect();
        self.detach_ports(&all);
    }
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering")
            .field("links", &self.links)
            .finish_non_exhaustive()
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// `CLOCK_MONOTONIC` now, in ns: the XDP program's clock (`bpf_ktime_get_ns`).
#[allow(unsafe_code)]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether `e` says only that the key was not there (which aya reports either way).
fn absent(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// The error of a map operation, named.
fn map_error(action: &'static str, name: &'static str) -> impl Fn(aya::maps::MapError) -> XdpError {
    move |source| XdpError::Map {
        action,
        name,
        source,
    }
}

/// The first `len` bytes of the values of `map`, an mmapable array map (declared
/// `BPF_F_MMAPABLE`), mapped shared into this process.
#[allow(unsafe_code)]
fn map_values(map: &MapData, len: usize) -> std::io::Result<Box<dyn SharedMemory>> {
    let fd = map.fd().as_fd();
    // SAFETY: a shared, read-write mapping of an mmapable array map's values, of no
    // more than its size; the kernel checks both, and the mapping keeps the map alive
    // until `munmap`.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let ptr = NonNull::new(ptr.cast())
        .ok_or_else(|| std::io::Error::other("mmap returned a null mapping"))?;
    Ok(Box::new(MappedMap { ptr, len }))
}

/// An mmapable map's values, mapped into this process.
#[derive(Debug)]
struct MappedMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, accessed only through atomics by the
// table that owns this value.
#[allow(unsafe_code)]
unsafe impl Send for MappedMap {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl Sync for MappedMap {}

impl SharedMemory for MappedMap {
    fn region(&self) -> (NonNull<u8>, usize) {
        (self.ptr, self.len)
    }
}

impl Drop for MappedMap {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map_values`, unmapped once, when its table goes.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Whether an attach failed because another program holds the device: `Some(its id, if
/// known)`. The kernel answers EBUSY (or EEXIST) when a program is attached without a
/// link, or by another link.
fn occupied(error: &aya::programs::ProgramError) -> Option<Option<u32>> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EBUSY | libc::EEXIST))
        {
            return Some(None);
        }
        source = e.source();
    }
    None
}

/// Loads program `name` of `ebpf` into the kernel; returns its descriptor.
fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<ProgramFd, XdpError> {
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(XdpError::Missing {
            what: "program",
            name,
        })?
        .try_into()
        .map_err(XdpError::Program)?;
    program.load().map_err(XdpError::Program)?;
    program
        .fd()
        .and_then(|fd| fd.try_clone().map_err(Into::into))
        .map_err(XdpError::Program)
}

/// hairpin's XDP program in `ebpf`.
fn program_of(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or(XdpError::Missing {
            what: "program",
            name: PROGRAM_NAME,
        })?
        .try_into()
        .map_err(XdpError::Program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ranges_fit_first_reuse_holes_and_refuse_when_full() {
        let mut r = QueueRanges::default();
        assert_eq!(r.reserve(0, 4).unwrap(), 0);
        assert_eq!(r.reserve(1, 1).unwrap(), 4);
        assert_eq!(r.reserve(2, 2).unwrap(), 5);
        assert_eq!(r.index(1, 0).unwrap(), 4);
        assert!(r.index(1, 1).is_err(), "not one of slot 1's queues");
        assert!(r.index(9, 0).is_err(), "a slot with no range");
        r.release(0);
        assert_eq!(r.reserve(3, 3).unwrap(), 0, "the hole slot 0 left");
        assert_eq!(r.reserve(4, 2).unwrap(), 7, "too big for the one left");
        assert_eq!(r.reserve(5, 1).unwrap(), 3);
        // Fill the rest; one more entry is refused and names what is taken.
        let left = MAX_PORT_QUEUES - 9;
        assert_eq!(r.reserve(6, left).unwrap(), 9);
        match r.reserve(7, 1) {
            Err(XdpError::NoQueueRoom { queues: 1, used }) => {
                assert_eq!(used, MAX_PORT_QUEUES);
            }
            other => panic!("{other:?}"),
        }
        // A slot asking again for a different size gives its old range back first,
        // and keeps it when the new one does not fit.
        assert!(r.reserve(5, 2).is_err());
        assert_eq!(r.of(5), (3, 1));
        assert_eq!(r.reserve(6, 1).unwrap(), 9);
        assert_eq!(r.of(6), (9, 1));
    }

    #[test]
    fn a_full_bridge_of_single_queue_ports_fits_beside_48_of_64_queues() {
        let mut r = QueueRanges::default();
        for slot in 0..hairpin_common::MAX_PORTS {
            let queues = if slot < 48 { 64 } else { 1 };
            r.reserve(slot, queues)
                .unwrap_or_else(|e| panic!("slot {slot}: {e}"));
        }
    }
}
