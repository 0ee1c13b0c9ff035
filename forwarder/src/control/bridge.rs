//! The control plane's one owner: [`Bridge`] holds the ports, the XDP program and its
//! maps, the MAC table's configuration and aging, the host's addresses on the uplink, and
//! the window on the kernel's links; the datapath is one of its parts.
//!
//! Every change goes through the same few steps, in an order that never lets a frame
//! reach something half made or half gone:
//!
//! - **attach**: sockets made (one per RX queue) → socket map entries → sockets handed
//!   to the workers (fill rings filled) → tables with the port up → the port's entry in
//!   the program's port map → the program attached to the interface;
//! - **detach**: the port map entry removed and the program detached (the kernel has the
//!   port back) → socket map entries cleared → tables without the port → the workers
//!   close their sockets and take back every frame → its MAC table entries removed.
//!
//! Ports keep their slot ([`PortId`]) from attach to removal. A port of the
//! configuration whose interface disappears (deleted, or moved to another namespace)
//! stays configured, *absent*, and is attached again when an interface of that name
//! appears; a port added at run time is forgotten instead.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use hairpin_common::{FastConf, NO_SLOT, PortConf, SlotConf, fast_mode, port_flags, slot_flags};

/// A slot's entry in the fast path's maps: its settings, its allowed sources, and its
/// ifindex where the fast path may send to it.
type FastSlot = (SlotConf, Vec<[u8; 6]>, Option<u32>);

use super::{
    departed::Departures,
    netdev::{Netdev, XDP_ACT_NDO_XMIT, XDP_ACT_XSK_ZEROCOPY},
    netlink::{Change, Link, Netlink},
    port::{Interface, PortError},
    protocol::{DepartedPort, FdbEntry, PortCounters, PortInfo, QueueCounters, Stats, WorkerStats},
    xdp::{AttachedMode, FastPath, Steering, XdpAttachMode, XdpError, monotonic_ns},
};
use crate::{
    datapath::{
        Datapath, DatapathConfig, DatapathError, PortQueues, Snapshot, ZeroCopy, pick_cores,
        stats::PortQueueSnapshot,
        xsk::{HEADROOM, MAX_CHAIN},
    },
    switch::{
        Fdb, GROUP_FWD_RESTRICTED, MAX_PORTS, Mode, PortId, PortPolicy, PortSet, Role, Tables,
        TablesError, VlanId, fdb::Learned, vlan,
    },
    wire::{ETHERNET_HEADER_LEN, Mac, dot1q},
};

/// A port as configured: its name, policy and static MAC entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// The interface name.
    pub name: String,
    /// Role, reflective relay, anti-spoofing, VLANs.
    pub policy: PortPolicy,
    /// MAC table entries that never age or move, in every VLAN of the port.
    pub static_macs: Vec<Mac>,
}

impl PortConfig {
    /// A plain downlink called `name`.
    pub fn downlink(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            policy: PortPolicy::default(),
            static_macs: Vec::new(),
        }
    }
}

/// The whole bridge, as the command line or the configuration file describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The switching mode.
    pub mode: Mode,
    /// The ports, in slot order.
    pub ports: Vec<PortConfig>,
    /// MAC table capacity.
    pub fdb_capacity: usize,
    /// Seconds a learned MAC lives unseen.
    pub fdb_max_age: u32,
    /// XDP attach mode.
    pub xdp_mode: XdpAttachMode,
    /// Queue indices to serve (workers); by default the most any port has.
    pub queues: Option<u32>,
    /// Core for each worker.
    pub cores: Option<Vec<usize>>,
    /// Sockets, rings, UMEMs.
    pub datapath: DatapathConfig,
    /// Bit `n`: relay frames to the reserved group address `01:80:c2:00:00:0n` (none by
    /// default; as the Linux bridge's `group_fwd_mask`).
    pub group_fwd_mask: u16,
    /// The kernel fast path.
    pub fast_path: FastPath,
}

/// Largest MAC table: 16 M entries (1 GiB of buckets).
pub const MAX_FDB_SIZE: usize = 1 << 24;

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Veb,
            ports: Vec::new(),
            fdb_capacity: 65_536,
            fdb_max_age: 300,
            xdp_mode: XdpAttachMode::Auto,
            queues: None,
            cores: None,
            datapath: DatapathConfig::default(),
            group_fwd_mask: 0,
            fast_path: FastPath::default(),
        }
    }
}

/// An error of the control plane. Each names what failed on what.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A request or configuration that cannot be applied; nothing changed.
    #[error("{0}")]
    Refused(String),
    /// A port's interface.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The ports' policies do not fit the mode.
    #[error(transparent)]
    Tables(#[from] TablesError),
    /// The datapath.
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// The XDP program.
    #[error(transparent)]
    Xdp(#[from] XdpError),
    /// rtnetlink.
    #[error("reading the kernel's links and addresses (rtnetlink)")]
    Netlink(#[source] std::io::Error),
    /// The netdev generic netlink family, which the fast path asks.
    #[error("asking the kernel's netdev family for devices' XDP features (kernel 6.3 or later)")]
    Netdev(#[source] std::io::Error),
}

fn refused(message: impl Into<String>) -> BridgeError {
    BridgeError::Refused(message.into())
}

/// Where a port came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// The configuration: kept, absent, while its interface is missing.
    Config,
    /// `hairpin port add`: forgotten when its interface goes.
    Runtime,
}

/// A configured port.
#[derive(Debug)]
struct Slot {
    config: PortConfig,
    origin: Origin,
    attached: Option<Attached>,
    /// Its slot's counters, queue by queue, when it was last attached (its counters
    /// count from there, and go on counting drops for it while it is absent).
    baseline: Vec<PortQueueSnapshot>,
}

/// What attaching a port set up.
#[derive(Debug)]
struct Attached {
    iface: Interface,
    xdp: AttachedMode,
    zero_copy: bool,
    /// The most UMEM frames one of its frames may take (1: its sockets take no
    /// chains).
    max_chain: usize,
    oper_up: bool,
    mtu: u32,
    /// The interface's alias (hairpin-cni names the pod there).
    alias: Option<String>,
}

/// The host's addresses on the uplink, whose ARP requests and neighbour solicitations
/// the XDP program hands to the kernel.
#[derive(Debug)]
struct HostAddresses {
    ifindex: u32,
    current: Vec<IpAddr>,
}

/// The running bridge.
#[derive(Debug)]
pub struct Bridge {
    config: BridgeConfig,
    slots: Vec<Option<Slot>>,
    /// Where the search for a free slot starts: slots are reused as late as possible.
    next_slot: usize,
    fdb: Arc<Fdb>,
    tables: Arc<Tables>,
    /// Dropped after the datapath (fields drop in order): workers stop before the
    /// program and its socket map go.
    datapath: Datapath,
    steering: Steering,
    netlink: Netlink,
    /// The devices' XDP features, with the fast path on.
    netdev: Option<Netdev>,
    /// The ports the fast path sends to, by slot, as last published.
    fast_egress: Vec<Option<u32>>,
    /// What the fast path's maps hold for each slot, as last published: only what
    /// changed is written again.
    fast_slots: Vec<Option<FastSlot>>,
    /// When the ports' drivers were last asked.
    fast_checked: Instant,
    host: Option<HostAddresses>,
    epoch: Instant,
    /// When it started, since the Unix epoch.
    started: Duration,
    /// The CPU clock, for cycles.
    cpu_hz: Option<u64>,
    /// Ports removed while running, with their counters.
    departed: Departures,
}

impl Bridge {
    /// Checks `config`, starts the workers and attaches every configured port, in the
    /// calling thread's network namespace. Nothing is left attached if it fails.
    pub fn start(config: BridgeConfig) -> Result<Self, BridgeError> {
        check_config(&config)?;
        let ifaces = config
            .ports
            .iter()
            .map(|p| Interface::lookup(&p.name))
            .collect::<Result<Vec<_>, _>>()?;
        let workers = worker_count(&config, &ifaces)?;
        let cores = pick_cores(config.cores.as_deref(), workers)?;
        // The MAC table lives in the XDP program's map, which the fast path reads.
        let steering = Steering::load(Fdb::buckets_for(config.fdb_capacity))?;
        let fdb = Arc::new(steering.shared_fdb()?);
        let slots: Vec<Option<Slot>> = config
            .ports
            .iter()
            .map(|p| {
                Some(Slot {
                    config: p.clone(),
                    origin: Origin::Config,
                    attached: None,
                    baseline: Vec::new(),
                })
            })
            .collect();
        let tables = Arc::new(
            Tables::new(
                config.mode,
                &policies(&slots),
                PortSet::EMPTY,
                Arc::clone(&fdb),
            )?
            .with_group_fwd_mask(config.group_fwd_mask),
        );
        let netlink = Netlink::open().map_err(BridgeError::Netlink)?;
        let netdev = match config.fast_path {
            FastPath::Off => None,
            FastPath::On => Some(Netdev::open().map_err(BridgeError::Netdev)?),
            // A kernel without the netdev family (before 6.3) cannot say which ports
            // take redirected frames: `auto` then leaves every frame to the workers.
            FastPath::Auto => Netdev::open()
                .inspect_err(|e| tracing::info!("fast path off: {e}"))
                .ok(),
        };
        let datapath = Datapath::start(
            cores,
            config.ports.len(),
            &config.datapath,
            Arc::clone(&tables),
        )?;
        let mut bridge = Self {
            next_slot: slots.len(),
            slots,
            fdb,
            tables,
            datapath,
            steering,
            netlink,
            netdev,
            fast_egress: vec![None; MAX_PORTS],
            fast_slots: vec![None; MAX_PORTS],
            fast_checked: Instant::now(),
            host: None,
            epoch: Instant::now(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
            cpu_hz: cpu_hz(),
            departed: Departures::default(),
            config,
        };
        for (id, iface) in ifaces.into_iter().enumerate() {
            bridge.attach(id as PortId, iface, Admission::Check)?;
        }
        Ok(bridge)
    }

    /// The core each worker runs on.
    pub fn cores(&self) -> &[usize] {
        self.datapath.cores()
    }

    /// Attaches `iface` as port `id`, whose slot holds its configuration; `admission`
    /// says whether a worker without frames to promise refuses it.
    fn attach(
        &mut self,
        id: PortId,
        iface: Interface,
        admission: Admission,
    ) -> Result<(), BridgeError> {
        let link = self
            .netlink
            .link_by_name(&iface.name)
            .map_err(BridgeError::Netlink)?
            .filter(|l| l.ifindex == iface.ifindex)
            .ok_or_else(|| PortError::NoSuchDevice {
                name: iface.name.clone(),
            })?;
        let result = self.attach_steps(id, &iface, &link, admission);
        if result.is_err() {
            self.detach(id);
        }
        result
    }

    fn attach_steps(
        &mut self,
        id: PortId,
        iface: &Interface,
        link: &Link,
        admission: Admission,
    ) -> Result<(), BridgeError> {
        let queues = PortQueues {
            id,
            name: iface.name.clone(),
            ifindex: iface.ifindex,
            queues: iface.rx_queues,
            zc_max_segs: self.zc_max_segs(iface),
            mtu: link.mtu,
        };
        if admission == Admission::Check {
            self.datapath.admit(&queues)?;
        }
        let sockets = self.datapath.open(&queues)?;
        self.steering
            .reserve_queues(u32::from(id), iface.rx_queues)?;
        let zero_copy = sockets.zero_copy();
        let max_chain = sockets.max_chain();
        // The slot is marked attached before anything else, so that undoing a failure
        // half-way finds what to undo.
        let baseline = self.port_queues(&self.datapath.snapshot(), id);
        let slot = self.slot_mut(id);
        slot.baseline = baseline;
        slot.attached = Some(Attached {
            iface: iface.clone(),
            xdp: AttachedMode::Generic,
            zero_copy,
            max_chain,
            oper_up: link.oper_up,
            mtu: link.mtu,
            alias: link.alias.clone(),
        });
        for (queue, fd) in sockets.fds() {
            self.steering.bind_socket(u32::from(id), queue, &fd)?;
        }
        self.datapath.attach(&queues, sockets)?;
        self.publish()?;
        self.insert_statics(id)?;
        let role = self.slot(id).config.policy.role;
        let mut conf = PortConf {
            slot: u32::from(id),
            flags: port_flags::STEER,
            ..PortConf::default()
        };
        if role == Role::Uplink {
            // The uplink keeps the host's own traffic: frames for its MAC, and ARP
            // requests and neighbour solicitations for its addresses, go to the kernel.
            // So do the reserved group addresses hairpin does not relay (LLDP from
            // the adjacent switch, for the host's lldpd).
            conf.flags |= port_flags::PASS_HOST_MAC;
            conf.host_mac = iface.mac.0;
            conf.group_fwd_mask = self.config.group_fwd_mask;
            self.host = Some(HostAddresses {
                ifindex: iface.ifindex,
                current: Vec::new(),
            });
            self.refresh_host_addresses()?;
        }
        self.steering.configure_port(iface, conf)?;
        let xdp = match self.steering.attach(iface, self.config.xdp_mode) {
            Err(XdpError::Occupied {
                port,
                prog_id: None,
            }) => {
                // Name the program that holds the port, as the kernel reports it.
                let prog_id = self
                    .netlink
                    .link_by_name(&port)
                    .ok()
                    .flatten()
                    .and_then(|l| l.xdp_prog_id);
                return Err(XdpError::Occupied { port, prog_id }.into());
            }
            other => other?,
        };
        let attached = self.slot_mut(id).attached.as_mut().expect("marked above");
        attached.xdp = xdp;
        // The fast path's view of the port depends on its XDP mode.
        self.publish()?;
        let policy = &self.slot(id).config.policy;
        tracing::info!(
            "{}: attached as port {id}: {:?}{}{}{}, {} RX queue(s), XDP {xdp}, AF_XDP {}{}",
            iface.name,
            policy.role,
            if policy.hairpin { ", hairpin" } else { "" },
            if policy.allowed_sources.is_empty() {
                String::new()
            } else {
                format!(", {} allowed source MAC(s)", policy.allowed_sources.len())
            },
            match &policy.vlans {
                Some(v) => format!(", {v}"),
                None if self.tables.vlans.is_aware() => ", access VLAN 1".to_owned(),
                None => String::new(),
            },
            iface.rx_queues,
            if zero_copy { "zero-copy" } else { "copy mode" },
            if link.oper_up { "" } else { ", no carrier yet" },
        );
        if role == Role::Uplink
            && let Some(host) = &self.host
        {
            tracing::info!(
                "{}: frames for the host ({}) and ARP/ND for {:?} stay with the kernel",
                iface.name,
                iface.mac,
                host.current
            );
        }
        self.check_mtu(id, link.mtu);
        Ok(())
    }

    /// Undoes whatever attaching port `id` set up, in the order that keeps frames off
    /// what is going; its counters go to the departed list. Failures along the way are
    /// logged: a port whose interface is gone fails some of these steps, and the next
    /// ones must run all the same.
    ///
    /// Its MAC table entries go too, unless `keep_entries`: a configuration port whose
    /// interface vanished keeps them, so that frames for its stations are dropped and
    /// counted (`port_down`) rather than flooded, until they age out or it comes back.
    fn detach(&mut self, id: PortId) {
        self.detach_keeping(id, false);
    }

    fn detach_keeping(&mut self, id: PortId, keep_entries: bool) {
        let Some(attached) = self.slot_mut(id).attached.take() else {
            return;
        };
        let ifindex = attached.iface.ifindex;
        if let Err(e) = self.steering.forget_port(ifindex) {
            tracing::warn!("{}: {e}", attached.iface.name);
        }
        self.steering.detach(ifindex);
        for queue in 0..attached.iface.rx_queues {
            if let Err(e) = self.steering.unbind_socket(u32::from(id), queue) {
                tracing::warn!("{}: {e}", attached.iface.name);
            }
        }
        if self.host.as_ref().is_some_and(|h| h.ifindex == ifindex) {
            let host = self.host.take().expect("checked");
            for addr in host.current {
                let _ = self.steering.remove_host_address(addr);
            }
        }
        if let Err(e) = self.publish() {
            tracing::error!("{}: {e}", attached.iface.name);
        }
        match self.datapath.detach(id) {
            Ok(reclaimed) => tracing::debug!(
                "{}: sockets closed, {reclaimed} UMEM frame(s) taken back",
                attached.iface.name
            ),
            Err(e) => tracing::error!("{}: {e}", attached.iface.name),
        }
        if !keep_entries {
            self.fdb.remove_port(id);
        }
        let counters = since(
            &self.port_queues(&self.datapath.snapshot(), id),
            &self.slot(id).baseline,
        )
        .into_iter()
        .fold(PortQueueSnapshot::default(), |mut total, q| {
            total.accumulate(&q);
            total
        });
        self.departed.record(&attached.iface.name, &counters);
        // Last: its counters in the XDP program's maps were read just above.
        self.steering.release_queues(u32::from(id));
    }

    /// Builds tables from the slots as they are and gives them to the workers.
    fn publish(&mut self) -> Result<(), BridgeError> {
        let tables = Arc::new(self.build_tables(&self.slots)?);
        if tables.vlans.is_aware() != self.tables.vlans.is_aware() {
            // Entries learned in VLAN 0 mean nothing to a VLAN-aware bridge, and back.
            self.fdb.flush(None);
        }
        self.datapath.set_tables(&tables)?;
        self.tables = tables;
        self.publish_fast()
    }

    /// Gives the XDP program's fast path the tables as they are now: each port's VLANs,
    /// hairpin, role and anti-spoofing list, and the ports it may send to (attached,
    /// up, and with a driver that takes redirected frames).
    fn publish_fast(&mut self) -> Result<(), BridgeError> {
        let Some(egress) = self.fast_egress_now() else {
            return Ok(());
        };
        let tables = &self.tables;
        let uplink = self.slots.iter().position(|s| {
            s.as_ref()
                .is_some_and(|s| s.config.policy.role == Role::Uplink)
        });
        let mode = match self.config.mode {
            Mode::Veb => fast_mode::VEB,
            Mode::Vepa => fast_mode::VEPA,
            Mode::Private => fast_mode::PRIVATE,
            Mode::Passthru => fast_mode::PASSTHRU,
            Mode::Xconnect => fast_mode::OFF,
        };
        for id in 0..MAX_PORTS as PortId {
            let slot = self.slots.get(usize::from(id)).and_then(Option::as_ref);
            let mut conf = SlotConf::default();
            let mut allowed = Vec::new();
            if let Some(slot) = slot {
                let policy = &slot.config.policy;
                conf.flags = slot_flags::CONFIGURED;
                if policy.hairpin {
                    conf.flags |= slot_flags::HAIRPIN;
                }
                if policy.role == Role::Uplink {
                    conf.flags |= slot_flags::UPLINK;
                }
                if !policy.allowed_sources.is_empty() {
                    conf.flags |= slot_flags::ANTI_SPOOF;
                    allowed = policy.allowed_sources.iter().map(|m| m.0).collect();
                }
                if tables.vlans.is_trunk(id) {
                    conf.flags |= slot_flags::TRUNK;
                }
                // Until attached, as generic: nothing runs the program for it yet.
                if slot
                    .attached
                    .as_ref()
                    .is_none_or(|a| a.xdp == AttachedMode::Generic)
                {
                    conf.flags |= slot_flags::GENERIC;
                }
                conf.pvid = tables.vlans.pvid(id).unwrap_or(0);
                if let Some(a) = &slot.attached {
                    conf.mtu = u16::try_from(a.mtu).unwrap_or(u16::MAX);
                }
                for vid in tables.vlans.vlans_of(id) {
                    let v = usize::from(vid);
                    conf.members[v / 64] |= 1 << (v % 64);
                }
            }
            let now = Some((conf, allowed, egress[usize::from(id)]));
            let published = &mut self.fast_slots[usize::from(id)];
            if *published != now {
                let (conf, allowed, egress) = now.as_ref().expect("just made");
                *published = None; // until written whole
                self.steering
                    .set_fast_slot(u32::from(id), conf, allowed, *egress)?;
                *published = now;
            }
        }
        self.fast_egress = egress;
        let epoch_ns = monotonic_ns().saturating_sub(self.epoch.elapsed().as_nanos() as u64);
        self.steering.set_fast_conf(FastConf {
            mode,
            shift: self.fdb.shift(),
            vlan_aware: u32::from(tables.vlans.is_aware()),
            uplink: uplink.map_or(NO_SLOT, |u| u as u32),
            epoch_ns,
        })?;
        Ok(())
    }

    /// The ports the fast path may send to now, by slot (`None` with the fast path
    /// off): attached, up, allowed by `--fast-path` (`auto`: copy mode only), and with a
    /// driver that takes redirected frames, which the kernel says (a veth's changes with
    /// its peer's XDP program or GRO, which hairpin's own attaching and detaching
    /// change too). The kernel is asked about every device at once, in one dump; a
    /// port the dump missed, on its own.
    fn fast_egress_now(&mut self) -> Option<Vec<Option<u32>>> {
        let netdev = self.netdev.as_mut()?;
        let known: HashMap<u32, u64> = match netdev.all_xdp_features() {
            Ok(all) => all.into_iter().collect(),
            Err(e) => {
                tracing::warn!("XDP features of the devices: {e}");
                HashMap::new()
            }
        };
        let fast_path = self.config.fast_path;
        let mut egress = vec![None; MAX_PORTS];
        for (id, slot) in self.slots.iter().enumerate() {
            let Some(a) = slot
                .as_ref()
                .and_then(|s| s.attached.as_ref())
                .filter(|a| a.oper_up && fast_path.sends_to(a.zero_copy))
            else {
                continue;
            };
            let ifindex = a.iface.ifindex;
            let features = match known.get(&ifindex) {
                Some(&f) => Ok(f),
                None => netdev.xdp_features(ifindex),
            };
            match features {
                Ok(f) if f & XDP_ACT_NDO_XMIT != 0 => egress[id] = Some(ifindex),
                Ok(_) => {}
                Err(e) => tracing::warn!("{}: XDP features: {e}", a.iface.name),
            }
        }
        Some(egress)
    }

    /// Follows the ports' drivers: a port whose driver now takes redirected frames, or
    /// no longer does (a veth whose peer lost its XDP program or GRO), is given to the
    /// fast path or taken from it. Called every tick, it asks at most once a second:
    /// the kernel sends no link event for it.
    fn follow_fast_egress(&mut self) {
        if self.fast_checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.fast_checked = Instant::now();
        let Some(now) = self.fast_egress_now() else {
            return;
        };
        if now == self.fast_egress {
            return;
        }
        for (id, (was, is)) in self.fast_egress.iter().zip(&now).enumerate() {
            if was.is_some() != is.is_some()
                && let Some(name) = self.slots[id].as_ref().map(|s| &s.config.name)
            {
                if is.is_some() {
                    tracing::info!(
                        "{name}: takes redirected frames now; the fast path sends to it"
                    );
                } else {
                    tracing::info!(
                        "{name}: takes no redirected frames now; the workers send to it"
                    );
                }
            }
        }
        if let Err(e) = self.publish_fast() {
            tracing::error!("updating the fast path: {e}");
        }
    }

    fn build_tables(&self, slots: &[Option<Slot>]) -> Result<Tables, TablesError> {
        let up = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.as_ref()
                    .and_then(|s| s.attached.as_ref())
                    .is_some_and(|a| a.oper_up)
            })
            .fold(PortSet::EMPTY, |set, (i, _)| set.with(i as PortId));
        Tables::new(
            self.config.mode,
            &policies(slots),
            up,
            Arc::clone(&self.fdb),
        )
        .map(|t| t.with_group_fwd_mask(self.config.group_fwd_mask))
    }

    /// Enters port `id`'s static MACs in every VLAN it carries (VLAN 0 when unaware).
    fn insert_statics(&mut self, id: PortId) -> Result<(), BridgeError> {
        let macs = self.slot(id).config.static_macs.clone();
        for mac in macs {
            for vid in self.vlans_of(id) {
                if self.fdb.insert_static(vid, mac, id) == Learned::Full {
                    return Err(refused(format!(
                        "static MAC {mac}: its MAC table bucket is full; raise the table size"
                    )));
                }
            }
        }
        Ok(())
    }

    fn vlans_of(&self, id: PortId) -> Vec<VlanId> {
        if self.tables.vlans.is_aware() {
            self.tables.vlans.vlans_of(id).collect()
        } else {
            vec![0]
        }
    }

    fn slot(&self, id: PortId) -> &Slot {
        self.slots[usize::from(id)]
            .as_ref()
            .expect("a configured slot")
    }

    fn slot_mut(&mut self, id: PortId) -> &mut Slot {
        self.slots[usize::from(id)]
            .as_mut()
            .expect("a configured slot")
    }

    fn find(&self, name: &str) -> Option<PortId> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.config.name == name))
            .map(|i| i as PortId)
    }

    fn find_ifindex(&self, ifindex: u32) -> Option<PortId> {
        self.slots
            .iter()
            .position(|s| {
                s.as_ref()
                    .and_then(|s| s.attached.as_ref())
                    .is_some_and(|a| a.iface.ifindex == ifindex)
            })
            .map(|i| i as PortId)
    }

    /// Warns when the interface's MTU is more than hairpin carries on it (at attach and
    /// at every MTU change): no frame vanishes without a word.
    /// How many buffers `iface`'s driver joins into one frame zero-copy (1 when it binds
    /// no zero-copy sockets, when zero-copy is off, or when the kernel cannot say).
    fn zc_max_segs(&mut self, iface: &Interface) -> u32 {
        if self.config.datapath.zero_copy == ZeroCopy::Off {
            return 1;
        }
        let asked = match self.netdev.as_mut() {
            Some(netdev) => netdev.device(iface.ifindex),
            None => Netdev::open().and_then(|mut netdev| netdev.device(iface.ifindex)),
        };
        match asked {
            Ok(d) if d.features & XDP_ACT_XSK_ZEROCOPY != 0 => d.zc_max_segs,
            Ok(_) => 1,
            Err(e) => {
                tracing::debug!("{}: no zero-copy multi-buffer: {e}", iface.name);
                1
            }
        }
    }

    fn check_mtu(&self, id: PortId, mtu: u32) {
        let Some(a) = self.slot(id).attached.as_ref() else {
            return;
        };
        if let Some(warning) = mtu_warning(
            &a.iface.name,
            mtu,
            self.config.datapath.frame_size,
            a.max_chain,
            a.zero_copy,
        ) {
            tracing::warn!("{warning}");
        }
    }

    // ---- run-time changes ----------------------------------------------------------

    /// Adds a port at run time (forgotten, not waited for, when its interface goes).
    pub fn add_port(&mut self, config: PortConfig) -> Result<PortId, BridgeError> {
        self.add(config, Origin::Runtime)
    }

    fn add(&mut self, config: PortConfig, origin: Origin) -> Result<PortId, BridgeError> {
        if matches!(self.config.mode, Mode::Xconnect | Mode::Passthru) {
            return Err(refused(format!(
                "{} mode has exactly its two ports: change them in the configuration and restart",
                self.config.mode
            )));
        }
        if self.find(&config.name).is_some() {
            return Err(refused(format!("{} is already a port", config.name)));
        }
        self.check_statics_unique(&config, None)?;
        let iface = Interface::lookup(&config.name)?;
        if iface.rx_queues as usize > self.datapath.workers() {
            return Err(DatapathError::UnservedQueues {
                port: iface.name,
                has: iface.rx_queues,
                workers: self.datapath.workers(),
            }
            .into());
        }
        let id = self.free_slot().ok_or_else(|| {
            refused(format!(
                "{}: the bridge has its {MAX_PORTS} ports already",
                config.name
            ))
        })?;
        // The new policy must fit with the others before anything is touched.
        let mut candidate: Vec<Option<Slot>> = self
            .slots
            .iter()
            .map(|s| {
                s.as_ref().map(|s| Slot {
                    config: s.config.clone(),
                    origin: s.origin,
                    attached: None,
                    baseline: Vec::new(),
                })
            })
            .collect();
        if candidate.len() <= usize::from(id) {
            candidate.resize_with(usize::from(id) + 1, || None);
        }
        candidate[usize::from(id)] = Some(Slot {
            config: config.clone(),
            origin,
            attached: None,
            baseline: Vec::new(),
        });
        self.build_tables(&candidate)?;

        if self.slots.len() <= usize::from(id) {
            self.slots.resize_with(usize::from(id) + 1, || None);
        }
        self.slots[usize::from(id)] = Some(Slot {
            config,
            origin,
            attached: None,
            baseline: Vec::new(),
        });
        if let Err(e) = self.attach(id, iface, Admission::Check) {
            self.forget(id);
            return Err(e);
        }
        Ok(id)
    }

    /// Removes port `name`: detached and forgotten.
    pub fn remove_port(&mut self, name: &str) -> Result<(), BridgeError> {
        if matches!(self.config.mode, Mode::Xconnect | Mode::Passthru) {
            return Err(refused(format!(
                "{} mode has exactly its two ports: change them in the configuration and restart",
                self.config.mode
            )));
        }
        let id = self
            .find(name)
            .ok_or_else(|| refused(format!("{name} is not a port of this bridge")))?;
        self.detach(id);
        self.forget(id);
        tracing::info!("{name}: removed");
        Ok(())
    }

    fn forget(&mut self, id: PortId) {
        self.slots[usize::from(id)] = None;
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        if let Err(e) = self.publish() {
            tracing::error!("{e}");
        }
    }

    /// A free slot, searching from where the last search ended, so a slot just freed is
    /// taken last (a frame still in flight for its old port never reaches a new one).
    fn free_slot(&mut self) -> Option<PortId> {
        for k in 0..MAX_PORTS {
            let i = (self.next_slot + k) % MAX_PORTS;
            if self.slots.get(i).is_none_or(Option::is_none) {
                self.next_slot = i + 1;
                return Some(i as PortId);
            }
        }
        None
    }

    /// Refuses a static MAC that another port (other than `except`) has already.
    fn check_statics_unique(
        &self,
        config: &PortConfig,
        except: Option<PortId>,
    ) -> Result<(), BridgeError> {
        for mac in &config.static_macs {
            let other = self.slots.iter().enumerate().find(|(i, s)| {
                Some(*i as PortId) != except
                    && s.as_ref()
                        .is_some_and(|s| s.config.static_macs.contains(mac))
            });
            if let Some((_, Some(other))) = other {
                return Err(refused(format!(
                    "static MAC {mac} is already on port {}: one station lives on one port",
                    other.config.name
                )));
            }
        }
        Ok(())
    }

    /// Changes port `id`'s policy and static MACs in place (its sockets stay).
    fn change(&mut self, id: PortId, config: PortConfig) -> Result<(), BridgeError> {
        self.check_statics_unique(&config, Some(id))?;
        let old = std::mem::replace(&mut self.slot_mut(id).config, config);
        if let Err(e) = self.build_tables(&self.slots) {
            self.slot_mut(id).config = old;
            return Err(e.into());
        }
        self.fdb.remove_port(id);
        self.publish()?;
        if self.slot(id).attached.is_some() {
            self.insert_statics(id)?;
        }
        tracing::info!("{}: settings changed", self.slot(id).config.name);
        Ok(())
    }

    /// Applies `new` (a re-read configuration file): ports added, removed and changed.
    /// Settings that need a restart (mode, workers, rings, MAC table) must not differ.
    /// Ports added at run time are left alone unless the file names them.
    pub fn reload(&mut self, new: BridgeConfig) -> Result<String, BridgeError> {
        check_config(&new)?;
        let fixed = |c: &BridgeConfig| {
            (
                c.mode,
                c.fdb_capacity,
                c.xdp_mode,
                c.queues,
                c.cores.clone(),
                c.datapath.clone(),
                c.group_fwd_mask,
                c.fast_path,
            )
        };
        if fixed(&new) != fixed(&self.config) {
            return Err(refused(
                "the new configuration changes the mode, [datapath], the MAC table size or \
                 group_fwd_mask: those need a restart (only ports and fdb.age change on reload)",
            ));
        }
        if matches!(new.mode, Mode::Xconnect | Mode::Passthru) {
            let names =
                |c: &BridgeConfig| c.ports.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
            let current: Vec<String> = self
                .slots
                .iter()
                .flatten()
                .map(|s| s.config.name.clone())
                .collect();
            if names(&new) != current {
                return Err(refused(format!(
                    "{} mode has exactly its two ports: changing them needs a restart",
                    new.mode
                )));
            }
        }
        let mut done = Vec::new();
        // Removed: configuration ports the file no longer lists.
        let gone: Vec<String> = self
            .slots
            .iter()
            .flatten()
            .filter(|s| {
                s.origin == Origin::Config && !new.ports.iter().any(|p| p.name == s.config.name)
            })
            .map(|s| s.config.name.clone())
            .collect();
        for name in gone {
            let id = self.find(&name).expect("listed above");
            self.detach(id);
            self.forget(id);
            done.push(format!("{name} removed"));
        }
        for port in &new.ports {
            match self.find(&port.name) {
                Some(id) if self.slot(id).config == *port => {
                    self.slot_mut(id).origin = Origin::Config;
                }
                Some(id) if self.slot(id).config.policy.role != port.policy.role => {
                    // A role change re-attaches: the uplink's program entry differs.
                    self.detach(id);
                    self.forget(id);
                    self.add(port.clone(), Origin::Config)?;
                    done.push(format!("{} re-attached", port.name));
                }
                Some(id) => {
                    self.change(id, port.clone())?;
                    self.slot_mut(id).origin = Origin::Config;
                    done.push(format!("{} changed", port.name));
                }
                None => {
                    self.add(port.clone(), Origin::Config)?;
                    done.push(format!("{} added", port.name));
                }
            }
        }
        self.config.fdb_max_age = new.fdb_max_age;
        self.config.ports = new.ports;
        Ok(if done.is_empty() {
            "reloaded: nothing changed".to_owned()
        } else {
            format!("reloaded: {}", done.join(", "))
        })
    }

    // ---- MAC table -----------------------------------------------------------------

    /// A static entry for `mac` on port `name`, in `vlan` or every VLAN of the port.
    pub fn fdb_add(
        &mut self,
        name: &str,
        mac: Mac,
        vlan: Option<u32>,
    ) -> Result<String, BridgeError> {
        let id = self
            .find(name)
            .ok_or_else(|| refused(format!("{name} is not a port of this bridge")))?;
        if !mac.is_learnable() {
            return Err(refused(format!(
                "{mac} is not a station's MAC (multicast or all-zero)"
            )));
        }
        let carried = self.vlans_of(id);
        let vids = match vlan {
            Some(v) => {
                let vid = self.check_vlan(v)?;
                if !carried.contains(&vid) {
                    return Err(refused(format!("{name} does not carry VLAN {v}")));
                }
                vec![vid]
            }
            None => carried,
        };
        for &vid in &vids {
            if let Some(other) = self.static_owner(vid, mac).filter(|&p| p != id) {
                return Err(refused(format!(
                    "{mac} is already static on port {} : one station lives on one port",
                    self.slot(other).config.name
                )));
            }
        }
        for &vid in &vids {
            if self.fdb.insert_static(vid, mac, id) == Learned::Full {
                return Err(refused(format!(
                    "{mac}: its MAC table bucket is full; raise the table size"
                )));
            }
        }
        Ok(format!("{mac} static on {name} in {} VLAN(s)", vids.len()))
    }

    fn static_owner(&self, vid: VlanId, mac: Mac) -> Option<PortId> {
        self.fdb
            .entries()
            .into_iter()
            .find(|e| e.is_static && e.vlan == vid && e.mac == mac)
            .map(|e| e.port)
    }

    fn check_vlan(&self, v: u32) -> Result<VlanId, BridgeError> {
        if !self.tables.vlans.is_aware() {
            return Err(refused(format!(
                "VLAN {v}: this bridge is not VLAN-aware (no port has a VLAN setting)"
            )));
        }
        vlan::check(v).map_err(|e| refused(e.to_string()))
    }

    /// Removes `mac`'s entry in `vlan` (by default in every VLAN).
    pub fn fdb_del(&mut self, mac: Mac, vlan: Option<u32>) -> Result<String, BridgeError> {
        let removed = match vlan {
            Some(v) => usize::from(self.fdb.remove(self.check_vlan(v)?, mac)),
            None => self.fdb.remove_mac(mac),
        };
        if removed == 0 {
            return Err(refused(format!("{mac} is not in the MAC table")));
        }
        Ok(format!(
            "{mac}: {removed} entr{} removed",
            if removed == 1 { "y" } else { "ies" }
        ))
    }

    /// Forgets learned entries, of port `name` or all.
    pub fn fdb_flush(&mut self, name: Option<&str>) -> Result<String, BridgeError> {
        let port = match name {
            Some(n) => Some(
                self.find(n)
                    .ok_or_else(|| refused(format!("{n} is not a port of this bridge")))?,
            ),
            None => None,
        };
        let n = self.fdb.flush(port);
        Ok(format!(
            "{n} learned entr{} flushed",
            if n == 1 { "y" } else { "ies" }
        ))
    }

    /// The MAC table, optionally of one port and one VLAN.
    pub fn fdb_entries(
        &self,
        port: Option<&str>,
        vlan: Option<u32>,
    ) -> Result<Vec<FdbEntry>, BridgeError> {
        let port = match port {
            Some(n) => Some(
                self.find(n)
                    .ok_or_else(|| refused(format!("{n} is not a port of this bridge")))?,
            ),
            None => None,
        };
        if let Some(v) = vlan {
            vlan::check(v).map_err(|e| refused(e.to_string()))?;
        }
        let now = self.now();
        let mut entries: Vec<FdbEntry> = self
            .fdb
            .entries()
            .into_iter()
            .filter(|e| port.is_none_or(|p| e.port == p))
            .filter(|e| vlan.is_none_or(|v| u32::from(e.vlan) == v))
            .filter_map(|e| {
                let slot = self.slots.get(usize::from(e.port))?.as_ref()?;
                Some(FdbEntry {
                    mac: e.mac.to_string(),
                    vlan: e.vlan,
                    port: slot.config.name.clone(),
                    age: if e.is_static {
                        0
                    } else {
                        now.saturating_sub(e.stamp)
                    },
                    is_static: e.is_static,
                })
            })
            .collect();
        entries.sort_by(|a, b| (&a.port, a.vlan, &a.mac).cmp(&(&b.port, b.vlan, &b.mac)));
        Ok(entries)
    }

    fn now(&self) -> u32 {
        self.epoch.elapsed().as_secs() as u32
    }

    // ---- following the kernel ------------------------------------------------------

    /// The descriptor that is readable when the kernel's links or addresses changed.
    pub fn events_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.netlink.events_fd()
    }

    /// Housekeeping, a few times a second and whenever the kernel reports a change:
    /// follows links and addresses, and ages the MAC table.
    pub fn tick(&mut self) {
        match self.netlink.changes() {
            Ok(changes) => {
                for change in changes {
                    self.follow(change);
                }
            }
            Err(e) => tracing::warn!("reading link changes: {e}"),
        }
        self.follow_fast_egress();
        let aged = self.fdb.age(self.now(), self.config.fdb_max_age);
        if aged > 0 {
            tracing::debug!("aged out {aged} MAC table entries");
        }
    }

    fn follow(&mut self, change: Change) {
        match change {
            Change::LinkGone { ifindex, name } => {
                if let Some(id) = self.find_ifindex(ifindex) {
                    self.lose(
                        id,
                        &format!("{name} is gone (deleted, or moved to another namespace)"),
                    );
                }
            }
            Change::Link(link) => self.link_changed(&link),
            Change::Addresses { ifindex } => {
                if self.host.as_ref().is_some_and(|h| h.ifindex == ifindex)
                    && let Err(e) = self.refresh_host_addresses()
                {
                    tracing::warn!("following the host's addresses: {e}");
                }
            }
            Change::Overrun => self.resync(),
        }
    }

    /// After lost notifications: compares every port with a fresh dump.
    fn resync(&mut self) {
        tracing::warn!("the kernel dropped link notifications: re-reading every link");
        let links = match self.netlink.links() {
            Ok(links) => links,
            Err(e) => return tracing::warn!("re-reading links: {e}"),
        };
        let attached: Vec<(PortId, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as PortId, s.as_ref()?.attached.as_ref()?.iface.ifindex)))
            .collect();
        for (id, ifindex) in attached {
            if !links.iter().any(|l| l.ifindex == ifindex) {
                let name = self.slot(id).config.name.clone();
                self.lose(id, &format!("{name} is gone"));
            }
        }
        for link in &links {
            self.link_changed(link);
        }
        if let Err(e) = self.refresh_host_addresses() {
            tracing::warn!("following the host's addresses: {e}");
        }
    }

    /// Port `id`'s interface went away: detached; a configuration port waits for it to
    /// come back, a run-time one is forgotten.
    fn lose(&mut self, id: PortId, why: &str) {
        let runtime = self.slot(id).origin == Origin::Runtime;
        self.detach_keeping(id, !runtime);
        if runtime {
            self.forget(id);
            tracing::warn!("{why}: port removed");
        } else {
            tracing::warn!("{why}: port detached; it is attached again when it comes back");
        }
    }

    fn link_changed(&mut self, link: &Link) {
        if let Some(id) = self.find_ifindex(link.ifindex) {
            let name = self.slot(id).config.name.clone();
            let attached = self
                .slot_mut(id)
                .attached
                .as_mut()
                .expect("found by ifindex");
            let (was_up, old_mtu) = (attached.oper_up, attached.mtu);
            attached.oper_up = link.oper_up;
            attached.mtu = link.mtu;
            // Not every link notification carries the alias: one without keeps it.
            if link.alias.is_some() {
                attached.alias.clone_from(&link.alias);
            }
            if was_up != link.oper_up {
                if let Err(e) = self.publish() {
                    tracing::error!("{name}: {e}");
                }
                if link.oper_up {
                    tracing::info!("{name}: carrier back: forwarding to it again");
                } else {
                    // Its stations' entries stay: their frames are dropped and counted
                    // at once (not flooded to every other tenant, not queued until the
                    // carrier is back); a station that moved is learned again from its
                    // first frame elsewhere, and the rest age out.
                    tracing::warn!("{name}: no carrier: frames for it are dropped (port_down)");
                }
            }
            if old_mtu != link.mtu {
                tracing::info!("{name}: MTU {old_mtu} -> {}", link.mtu);
                self.check_mtu(id, link.mtu);
                // The workers cut frames by it, the fast path leaves longer ones to them.
                if let Err(e) = self.datapath.set_mtu(id, link.mtu) {
                    tracing::error!("{name}: {e}");
                }
                if let Err(e) = self.publish() {
                    tracing::error!("{name}: {e}");
                }
            }
        } else if let Some(id) = self.find(&link.name)
            && self.slot(id).attached.is_none()
        {
            match Interface::lookup(&link.name) {
                // Admitted when it was added: back, it is not refused for frames a
                // neighbour grew into meanwhile (its quota is promised past the budget,
                // and no port grows until the promises fit again).
                Ok(iface) => match self.attach(id, iface, Admission::Skip) {
                    Ok(()) => tracing::info!("{}: back: attached again", link.name),
                    Err(e) => tracing::warn!("{}: back, but attaching it failed: {e}", link.name),
                },
                Err(e) => tracing::warn!("{}: back, but {e}", link.name),
            }
        }
    }

    /// Reads the uplink's addresses and updates the XDP program's lists to match (a DHCP
    /// renewal or an operator's `ip addr add` is seen at once).
    fn refresh_host_addresses(&mut self) -> Result<(), BridgeError> {
        let Some(host) = &mut self.host else {
            return Ok(());
        };
        let now = self
            .netlink
            .addresses(host.ifindex)
            .map_err(BridgeError::Netlink)?;
        for addr in now.iter().filter(|a| !host.current.contains(a)) {
            self.steering.add_host_address(*addr)?;
            if !host.current.is_empty() {
                tracing::info!("uplink: host address {addr} added");
            }
        }
        for addr in host.current.iter().filter(|a| !now.contains(a)) {
            self.steering.remove_host_address(*addr)?;
            tracing::info!("uplink: host address {addr} removed");
        }
        host.current = now;
        Ok(())
    }

    // ---- reports -------------------------------------------------------------------

    /// The names of the ports added at run time.
    pub fn runtime_ports(&self) -> impl Iterator<Item = &str> {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.origin == Origin::Runtime)
            .map(|s| s.config.name.as_str())
    }

    /// Every port, by slot.
    pub fn ports(&self) -> Vec<PortInfo> {
        let snapshot = self.datapath.snapshot();
        self.port_infos(&snapshot)
    }

    fn port_infos(&self, snapshot: &Snapshot) -> Vec<PortInfo> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as PortId, s.as_ref()?)))
            .map(|(id, slot)| {
                let p = &slot.config.policy;
                let a = slot.attached.as_ref();
                let queues = since(&self.port_queues(snapshot, id), &slot.baseline);
                let total = queues
                    .iter()
                    .fold(PortQueueSnapshot::default(), |mut t, q| {
                        t.accumulate(q);
                        t
                    });
                let served = a.map_or(0, |a| a.iface.rx_queues as usize);
                PortInfo {
                    name: slot.config.name.clone(),
                    slot: id,
                    state: match a {
                        None => "absent",
                        Some(a) if a.oper_up => "up",
                        Some(_) => "down",
                    }
                    .to_owned(),
                    role: match p.role {
                        Role::Uplink => "uplink",
                        Role::Downlink => "downlink",
                    }
                    .to_owned(),
                    vlans: p.vlans.as_ref().map(ToString::to_string),
                    hairpin: p.hairpin,
                    allowed_macs: p.allowed_sources.iter().map(ToString::to_string).collect(),
                    origin: match slot.origin {
                        Origin::Config => "config",
                        Origin::Runtime => "runtime",
                    }
                    .to_owned(),
                    ifindex: a.map(|a| a.iface.ifindex),
                    alias: a.and_then(|a| a.alias.clone()),
                    queues: a.map_or(0, |a| a.iface.rx_queues),
                    xdp: a.map(|a| a.xdp.to_string()),
                    zero_copy: a.is_some_and(|a| a.zero_copy),
                    mtu: a.map(|a| a.mtu),
                    largest_frame: a
                        .map(|a| largest_frame(self.config.datapath.frame_size, a.max_chain)),
                    counters: counters(&total),
                    per_queue: (0u32..)
                        .zip(&queues)
                        .take(served)
                        .map(|(queue, q)| QueueCounters {
                            queue,
                            rx_packets: q.rx_packets,
                            rx_bytes: q.rx_bytes,
                            tx_packets: q.tx_packets,
                            tx_bytes: q.tx_bytes,
                            drops: q.drop_counts().map(|(_, n)| n).sum(),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Every counter now.
    pub fn stats(&self) -> Stats {
        let mut s = self.datapath.snapshot();
        let latency_ns = std::mem::take(&mut s.latency);
        Stats {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            start_time_s: self.started.as_secs_f64(),
            uptime_s: self.epoch.elapsed().as_secs_f64(),
            ports: self.port_infos(&s),
            departed: self
                .departed
                .rows()
                .map(|d| DepartedPort {
                    name: d.name.clone(),
                    removals: d.removals,
                    counters: counters(&d.counters),
                })
                .collect(),
            workers: (0..s.busy_ns.len())
                .map(|w| WorkerStats {
                    queue: w as u32,
                    core: self.datapath.cores()[w],
                    rx_frames: s.worker_rx(w),
                    tx_frames: s.per_queue.iter().map(|port| port[w].tx_packets).sum(),
                    busy_ns: s.busy_ns[w],
                    sleeps: s.sleeps[w],
                    free_frames: s.free_frames[w],
                    total_frames: s.total_frames[w],
                    promised_frames: s.promised_frames[w],
                    budget_frames: s.budget_frames[w],
                    umems: s.umems[w],
                })
                .collect(),
            cpu_hz: self.cpu_hz,
            fdb_entries: self.fdb.len(),
            fdb_capacity: self.fdb.capacity(),
            fdb_full: self.fdb.full_events(),
            fdb_moves: self.fdb.moves(),
            latency_ns,
        }
    }

    /// The datapath's counters now, per port slot and worker.
    pub fn snapshot(&self) -> Snapshot {
        self.datapath.snapshot()
    }

    /// Port slot `id`'s counters, queue (worker) by queue: the workers' own with, when
    /// the fast path is on, what it received on the port and sent out of it merged in.
    /// The XDP program's counters are the slot's, not the port's: like the workers',
    /// they count from the slot's [`Slot::baseline`].
    fn port_queues(&self, snapshot: &Snapshot, id: PortId) -> Vec<PortQueueSnapshot> {
        let mut queues = snapshot.port_queues(id).to_vec();
        if self.netdev.is_some() {
            let slot = u32::from(id);
            // What the fast path sent out of the port is counted per port: it is
            // reported with the first queue's.
            // Unreadable counters (never expected) count as none, as the kernel's
            // socket statistics do.
            let tx = self.steering.fast_tx(slot).unwrap_or_default();
            let mut sent = (tx.packets, tx.bytes);
            for (queue, q) in (0u32..).zip(&mut queues) {
                let rx = self.steering.queue_stats(slot, queue).unwrap_or_default();
                q.add_fast((rx.fast, rx.fast_bytes), std::mem::take(&mut sent));
                q.checksums_finished += rx.checksums_finished;
            }
        }
        queues
    }

    /// The MAC table.
    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }

    /// The XDP program's own per-queue counters for port `name`.
    pub fn xdp_stats(&self, name: &str) -> Vec<hairpin_common::QueueStats> {
        let Some(id) = self.find(name) else {
            return Vec::new();
        };
        let queues = self
            .slot(id)
            .attached
            .as_ref()
            .map_or(0, |a| a.iface.rx_queues);
        (0..queues)
            .map(|q| {
                self.steering
                    .queue_stats(u32::from(id), q)
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Detaches every port, stops the workers; returns the final counters of every port
    /// (those removed on the way included) and how many workers panicked.
    pub fn stop(mut self) -> (Stats, usize) {
        let ids: Vec<PortId> = (0..self.slots.len() as PortId)
            .filter(|&id| {
                self.slots[usize::from(id)]
                    .as_ref()
                    .is_some_and(|s| s.attached.is_some())
            })
            .collect();
        // The program first: the kernel has every port back while the workers stop.
        let ifindexes: Vec<u32> = ids
            .iter()
            .map(|&id| {
                let ifindex = self
                    .slot(id)
                    .attached
                    .as_ref()
                    .expect("filtered")
                    .iface
                    .ifindex;
                let _ = self.steering.forget_port(ifindex);
                ifindex
            })
            .collect();
        self.steering.detach_ports(&ifindexes);
        let stats = self.stats();
        let panicked = self.datapath.snapshot().panicked_workers;
        (stats, panicked)
    }
}

/// The policies of `slots`, `None` for free ones.
fn policies(slots: &[Option<Slot>]) -> Vec<Option<PortPolicy>> {
    slots
        .iter()
        .map(|s| s.as_ref().map(|s| s.config.policy.clone()))
        .collect()
}

/// Each queue's counters since `baseline` (a queue missing there counts from zero).
fn since(now: &[PortQueueSnapshot], baseline: &[PortQueueSnapshot]) -> Vec<PortQueueSnapshot> {
    now.iter()
        .enumerate()
        .map(|(i, q)| q.since(baseline.get(i).unwrap_or(&PortQueueSnapshot::default())))
        .collect()
}

/// The CPU clock in Hz, as `/proc/cpuinfo` reports it (the first CPU's), to turn busy
/// time into cycles as `pmd-stats-show` reports them.
fn cpu_hz() -> Option<u64> {
    let mhz: f64 = std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1e6) as u64)
}

fn counters(s: &PortQueueSnapshot) -> PortCounters {
    PortCounters {
        rx_packets: s.rx_packets,
        rx_bytes: s.rx_bytes,
        tx_packets: s.tx_packets,
        tx_bytes: s.tx_bytes,
        flood_copies: s.flood_copies,
        checksums_finished: s.checksums_finished,
        segmented: s.segmented,
        handoff_out: s.handoff_out,
        fast_rx_packets: s.fast_rx_packets,
        fast_tx_packets: s.fast_tx_packets,
        drops: s
            .drop_counts()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.to_owned(), n))
            .collect(),
    }
}

/// Checks what can be checked of a configuration without the kernel.
pub fn check_config(config: &BridgeConfig) -> Result<(), BridgeError> {
    if config.ports.len() > MAX_PORTS {
        return Err(refused(format!(
            "{} ports given; hairpin serves at most {MAX_PORTS}",
            config.ports.len()
        )));
    }
    let mut statics: Vec<(Mac, &str)> = Vec::new();
    for (i, p) in config.ports.iter().enumerate() {
        if config.ports[..i].iter().any(|q| q.name == p.name) {
            return Err(refused(format!("port {} is given twice", p.name)));
        }
        for &mac in &p.static_macs {
            // The same MAC twice on one port is one station, as `port add` takes it.
            if let Some((_, other)) = statics
                .iter()
                .find(|&&(m, owner)| m == mac && owner != p.name)
            {
                return Err(refused(format!(
                    "static MAC {mac} is given on ports {other} and {}: one station lives on one port",
                    p.name
                )));
            }
            statics.push((mac, &p.name));
        }
    }
    if config.group_fwd_mask & GROUP_FWD_RESTRICTED != 0 {
        return Err(refused(format!(
            "group_fwd_mask {:#06x}: pause (bit 1) and LACP/slow protocols (bit 2) belong to \
             one link and are never relayed",
            config.group_fwd_mask
        )));
    }
    if config.fdb_capacity == 0 || config.fdb_capacity > MAX_FDB_SIZE {
        return Err(refused(format!(
            "MAC table size {}: give 1 to {MAX_FDB_SIZE} entries",
            config.fdb_capacity
        )));
    }
    if config.fdb_max_age == 0 {
        return Err(refused(
            "MAC table age 0: learned entries would be gone before their first reply; give 1 second or more",
        ));
    }
    let slots: Vec<Option<PortPolicy>> = config
        .ports
        .iter()
        .map(|p| Some(p.policy.clone()))
        .collect();
    Tables::new(
        config.mode,
        &slots,
        PortSet::EMPTY,
        Arc::new(Fdb::with_capacity(1)),
    )?;
    Ok(())
}

/// Workers to run: `--queues`, or the most RX queues any port has (at least one).
fn worker_count(config: &BridgeConfig, ifaces: &[Interface]) -> Result<usize, BridgeError> {
    let most = ifaces.iter().map(|p| p.rx_queues).max().unwrap_or(1);
    let queues = config.queues.unwrap_or(most);
    if queues == 0 || queues > hairpin_common::MAX_QUEUES {
        return Err(refused(format!(
            "--queues {queues}: give 1 to {}",
            hairpin_common::MAX_QUEUES
        )));
    }
    if !ifaces.is_empty() && queues > most {
        return Err(refused(format!(
            "--queues {queues}: no port has that many RX queues (the most is {most})"
        )));
    }
    if let Some(p) = ifaces.iter().find(|p| p.rx_queues > queues) {
        return Err(DatapathError::UnservedQueues {
            port: p.name.clone(),
            has: p.rx_queues,
            workers: queues as usize,
        }
        .into());
    }
    Ok(queues as usize)
}

/// Whether attaching a port checks that its workers can promise it frames
/// ([`Datapath::admit`]): for a port being added, not for one coming back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission {
    Check,
    Skip,
}

/// The largest frame (Ethernet header included, FCS not) hairpin carries through a
/// port whose frames take at most `max_chain` UMEM frames ([`MAX_CHAIN`] in copy mode
/// with multi-buffer, a zero-copy driver's own limit, else one).
pub fn largest_frame(frame_size: u32, max_chain: usize) -> u32 {
    max_chain as u32 * (frame_size - HEADROOM)
}

/// What to tell the operator when port `name`'s MTU is more than hairpin carries on it,
/// if it is.
fn mtu_warning(
    name: &str,
    mtu: u32,
    frame_size: u32,
    max_chain: usize,
    zero_copy: bool,
) -> Option<String> {
    let largest = largest_frame(frame_size, max_chain);
    let carried = largest - ETHERNET_HEADER_LEN as u32;
    if mtu <= carried {
        return None;
    }
    let (why, counted) = if max_chain > 1 {
        let whose = if zero_copy && max_chain < MAX_CHAIN {
            " (its driver's zero-copy limit)"
        } else {
            ""
        };
        (
            format!("a frame takes at most {max_chain} UMEM frames of {frame_size} bytes{whose}"),
            "oversize",
        )
    } else if zero_copy {
        (
            format!(
                "its driver takes no multi-buffer frames zero-copy: one UMEM frame of \
                 {frame_size} bytes (--frame-size 4096 carries more, --zero-copy off all)"
            ),
            "kernel_rx_dropped",
        )
    } else {
        (
            format!(
                "this kernel has no AF_XDP multi-buffer (Linux 6.6): one UMEM frame of \
                 {frame_size} bytes"
            ),
            "kernel_rx_dropped",
        )
    };
    Some(format!(
        "{name}: MTU {mtu} is more than hairpin carries ({why}): the largest frame that passes \
         is {largest} bytes (MTU {carried}, {} with a VLAN tag); longer ones are dropped and \
         counted as {counted}",
        carried - dot1q::TAG_LEN as u32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_frame_is_a_whole_chain_of_umem_frames_or_one() {
        assert_eq!(largest_frame(2048, 1), 1792);
        assert_eq!(largest_frame(2048, MAX_CHAIN), 16 * 1792);
        assert_eq!(largest_frame(4096, MAX_CHAIN), 16 * 3840);
        assert_eq!(largest_frame(4096, 5), 5 * 3840);
    }

    #[test]
    fn an_mtu_over_what_passes_is_told_with_the_largest_frame_and_why() {
        // MTU 9000 with multi-buffer sockets: carried, no word.
        assert_eq!(mtu_warning("p0", 9000, 2048, MAX_CHAIN, false), None);
        assert_eq!(mtu_warning("p0", 1778, 2048, 1, false), None);
        // One byte over one UMEM frame, copy mode on an old kernel.
        let w = mtu_warning("p0", 1779, 2048, 1, false).unwrap();
        assert!(
            w.starts_with("p0: MTU 1779 is more than hairpin carries"),
            "{w}"
        );
        assert!(
            w.contains("largest frame that passes is 1792 bytes (MTU 1778, 1774 with a VLAN tag)"),
            "{w}"
        );
        assert!(
            w.contains("no AF_XDP multi-buffer") && w.ends_with("kernel_rx_dropped"),
            "{w}"
        );
        // Zero-copy: says how to carry more.
        let w = mtu_warning("eth1", 9000, 2048, 1, true).unwrap();
        assert!(
            w.contains("zero-copy") && w.contains("--zero-copy off"),
            "{w}"
        );
        // Past a whole chain.
        let w = mtu_warning("p1", 65000, 2048, MAX_CHAIN, false).unwrap();
        assert!(w.contains("28672 bytes") && w.ends_with("oversize"), "{w}");
        // A zero-copy driver that joins three buffers: 9000 does not fit in 2048s.
        let w = mtu_warning("eth2", 9000, 2048, 3, true).unwrap();
        assert!(
            w.contains("at most 3 UMEM frames") && w.contains("zero-copy limit"),
            "{w}"
        );
        assert_eq!(mtu_warning("eth2", 9000, 4096, 3, true), None);
    }
}
