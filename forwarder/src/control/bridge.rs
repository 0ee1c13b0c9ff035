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
//!
//! This file keeps the ports' lifecycle; the bridge's other jobs are in its own
//! modules: reload, planned whole and applied all or nothing (`bridge/reload.rs`),
//! publishing the tables and the fast path's maps (`bridge/fast.rs`), following the
//! kernel's links and addresses (`bridge/links.rs`), the operator's MAC table commands
//! (`bridge/mac_table.rs`), port mirrors and their monitor ports (`bridge/mirror.rs`),
//! what it reports (`bridge/report.rs`) and the checks of a configuration and a port's
//! MTU (`bridge/checks.rs`). Every call it makes
//! to the kernel and the workers goes through the seam of `bridge/kernel.rs`, which the
//! unit tests (`bridge/tests.rs`) fill with fakes (`bridge/fake.rs`). The
//! configuration's types are [`super::config`]'s.
use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use hairpin_common::{PortConf, SlotConf, port_flags};

mod capture;
mod checks;
#[cfg(test)]
mod fake;
mod fast;
pub mod kernel;
mod links;
mod mac_table;
mod mirror;
mod reload;
mod report;
#[cfg(test)]
mod tests;
mod trace;

pub use self::checks::{check_config, largest_frame};
use self::{
    checks::{mtu_warning, worker_count},
    mirror::{Mirrors, policies},
    report::{cpu_hz, since},
};

/// A slot's entry in the fast path's maps: its settings, its allowed sources, and its
/// ifindex where the fast path may send to it.
type FastSlot = (SlotConf, Vec<[u8; 6]>, Option<u32>);

use self::kernel::{Kernel, Linux, NetdevFamily, Rtnetlink, Workers, XdpProgram};
use super::{
    capture::Captures,
    departed::Departures,
    netdev::XDP_ACT_XSK_ZEROCOPY,
    netlink::Link,
    port::{Interface, PortError},
    protocol::Stats,
    xdp::{AttachedMode, FastFloods, FastPath, XdpError},
};
use crate::{
    datapath::{DatapathError, PortQueues, ZeroCopy, pick_cores, stats::PortQueueSnapshot},
    switch::{
        Fdb, MAX_PORTS, Mode, PortId, PortSet, Role, Tables, TablesError, VlanId, fdb::Learned,
    },
};

use super::config::{BridgeConfig, PortConfig};

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
    /// The capture thread could not be started.
    #[error("starting the capture thread")]
    CaptureThread(#[source] std::io::Error),
    /// A reload refused before it changed anything (the reason is the error inside).
    #[error("{0}; nothing changed")]
    ReloadRefused(Box<BridgeError>),
    /// A reload that failed while applying and was undone whole: the bridge is as it
    /// was.
    #[error("{0}; the reload was undone: nothing changed")]
    ReloadUndone(Box<BridgeError>),
    /// A reload that failed while applying, and whose undoing failed in part: `left`
    /// says what differs from before the reload (everything else is as it was).
    #[error("{reason}; undoing the reload left {left}; everything else is as before the reload")]
    ReloadPartlyUndone {
        /// Why the reload failed.
        reason: Box<BridgeError>,
        /// What could not be undone, port by port.
        left: String,
    },
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

impl Slot {
    /// A port of `config`, not attached yet.
    fn new(config: PortConfig, origin: Origin) -> Self {
        Self {
            config,
            origin,
            attached: None,
            baseline: Vec::new(),
        }
    }
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
    /// Captures end first (fields drop in order).
    captures: Captures,
    /// Port mirrors, carried out by the capture thread.
    mirrors: Mirrors,
    /// Dropped after the datapath (fields drop in order): workers stop before the
    /// program and its socket map go.
    datapath: Box<dyn Workers>,
    steering: Box<dyn XdpProgram>,
    netlink: Box<dyn Rtnetlink>,
    /// The devices' XDP features, with the fast path on.
    netdev: Option<Box<dyn NetdevFamily>>,
    /// Where interfaces are looked up (and the netdev family opened when the fast path
    /// is off).
    kernel: Box<dyn Kernel>,
    /// The ports the fast path sends to, by slot, as last published.
    fast_egress: Vec<Option<u32>>,
    /// What the fast path's maps hold for each slot, as last published: only what
    /// changed is written again.
    fast_slots: Vec<Option<FastSlot>>,
    /// The fast path's floods, as last published.
    floods: fast::Floods,
    /// When the ports' drivers were last asked.
    fast_checked: Instant,
    /// Each slot's IP source guard prefixes in the fast path, as last published.
    guard_slots: Vec<Vec<crate::switch::guard::IpPrefix>>,
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
        Self::with_kernel(config, Box::new(Linux))
    }

    /// [`Bridge::start`] over `kernel`: the running one ([`Linux`]), or the unit tests'
    /// fake.
    pub fn with_kernel(
        config: BridgeConfig,
        mut kernel: Box<dyn Kernel>,
    ) -> Result<Self, BridgeError> {
        check_config(&config)?;
        let ifaces = config
            .ports
            .iter()
            .map(|p| kernel.lookup(&p.name))
            .collect::<Result<Vec<_>, _>>()?;
        let workers = worker_count(&config, &ifaces)?;
        let cores = pick_cores(config.cores.as_deref(), workers)?;
        // The MAC table lives in the XDP program's map, which the fast path reads.
        let steering = kernel.load_program(
            Fdb::buckets_for(config.fdb_capacity),
            config.fast_floods == FastFloods::On,
        )?;
        let fdb = Arc::new(steering.shared_fdb()?);
        // So do the storm control and policing meters, which its fast path charges.
        let meters = Arc::new(steering.shared_meters()?);
        let slots: Vec<Option<Slot>> = config
            .ports
            .iter()
            .map(|p| Some(Slot::new(p.clone(), Origin::Config)))
            .collect();
        let mirrors = Mirrors::of_config(&config);
        let tables = Arc::new(
            Tables::new(
                config.mode,
                &policies(&slots, &mirrors),
                PortSet::EMPTY,
                Arc::clone(&fdb),
            )?
            .with_group_fwd_mask(config.group_fwd_mask)
            .with_meters(meters),
        );
        let netlink = kernel.open_rtnetlink().map_err(BridgeError::Netlink)?;
        let netdev = match config.fast_path {
            FastPath::Off => None,
            FastPath::On => Some(kernel.open_netdev().map_err(BridgeError::Netdev)?),
            // A kernel without the netdev family (before 6.3) cannot say which ports
            // take redirected frames: `auto` then leaves every frame to the workers.
            FastPath::Auto => kernel
                .open_netdev()
                .inspect_err(|e| tracing::info!("fast path off: {e}"))
                .ok(),
        };
        let mut steering = steering;
        let datapath = kernel.start_workers(
            cores,
            config.ports.len(),
            &config.datapath,
            Arc::clone(&tables),
        )?;
        let captures = Captures::start(datapath.taps(), steering.take_taps(), datapath.cores())
            .map_err(BridgeError::CaptureThread)?;
        let mut bridge = Self {
            captures,
            mirrors,
            next_slot: slots.len(),
            slots,
            fdb,
            tables,
            datapath,
            steering,
            netlink,
            netdev,
            kernel,
            fast_egress: vec![None; MAX_PORTS],
            fast_slots: vec![None; MAX_PORTS],
            floods: fast::Floods::default(),
            fast_checked: Instant::now(),
            guard_slots: vec![Vec::new(); MAX_PORTS],
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
        self.attach_or_undo(id, iface, admission, true)
    }

    /// The kernel's link of `iface`, as netlink lists it now: gone (or its name taken
    /// by another interface since `iface` was read) is [`PortError::NoSuchDevice`].
    fn link_of(&mut self, iface: &Interface) -> Result<Link, BridgeError> {
        self.netlink
            .link_by_name(&iface.name)
            .map_err(BridgeError::Netlink)?
            .filter(|l| l.ifindex == iface.ifindex)
            .ok_or_else(|| {
                PortError::NoSuchDevice {
                    name: iface.name.clone(),
                }
                .into()
            })
    }

    /// [`Bridge::attach`]: a failure half-way is undone, and the port's counters go to
    /// the departed list if `record_departure` (a reload records departures only once
    /// it stands).
    fn attach_or_undo(
        &mut self,
        id: PortId,
        iface: Interface,
        admission: Admission,
        record_departure: bool,
    ) -> Result<(), BridgeError> {
        let link = self.link_of(&iface)?;
        let result = self.attach_steps(id, &iface, &link, admission);
        if result.is_err()
            && let Some((name, counters)) = self.take_down(id, false)
            && record_departure
        {
            self.departed.record(&name, &counters);
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
            self.steering.bind_socket(u32::from(id), queue, fd)?;
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
        if let Some((name, counters)) = self.take_down(id, keep_entries) {
            self.departed.record(&name, &counters);
        }
    }

    /// [`Bridge::detach_keeping`] without the departed list: returns the port's row
    /// for it (its name and counters), `None` if it was not attached.
    fn take_down(&mut self, id: PortId, keep_entries: bool) -> Option<(String, PortQueueSnapshot)> {
        let attached = self.slot_mut(id).attached.take()?;
        self.captures.port_gone(id);
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
            self.fdb.reset_refused(id);
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
        // Last: its counters in the XDP program's maps were read just above.
        self.steering.release_queues(u32::from(id));
        Some((attached.iface.name, counters))
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
            &policies(slots, &self.mirrors),
            up,
            Arc::clone(&self.fdb),
        )
        .map(|t| {
            t.with_group_fwd_mask(self.config.group_fwd_mask)
                .with_meters(Arc::clone(&self.tables.meters))
        })
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
            None => self
                .kernel
                .open_netdev()
                .and_then(|mut netdev| netdev.device(iface.ifindex)),
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
        check_statics_unique(&self.slots, &config, None)?;
        self.check_port_for_mirrors(&config)?;
        let iface = self.servable(&config.name)?;
        let id = self.free_slot().ok_or_else(|| full(&config.name))?;
        // The new policy must fit with the others before anything is touched.
        let mut candidate = self.bare_slots();
        if candidate.len() <= usize::from(id) {
            candidate.resize_with(usize::from(id) + 1, || None);
        }
        candidate[usize::from(id)] = Some(Slot::new(config.clone(), origin));
        self.build_tables(&candidate)?;

        self.put(id, Slot::new(config, origin));
        if let Err(e) = self.attach(id, iface, Admission::Check) {
            self.forget(id);
            return Err(e);
        }
        Ok(id)
    }

    /// Interface `name`, if it is there and the workers can serve each of its RX
    /// queues.
    fn servable(&self, name: &str) -> Result<Interface, BridgeError> {
        let iface = self.kernel.lookup(name)?;
        if iface.rx_queues as usize > self.datapath.workers() {
            return Err(DatapathError::UnservedQueues {
                port: iface.name,
                has: iface.rx_queues,
                workers: self.datapath.workers(),
            }
            .into());
        }
        Ok(iface)
    }

    /// The slots' settings and origins, without their attachments: what a change is
    /// checked against before it is made.
    fn bare_slots(&self) -> Vec<Option<Slot>> {
        self.slots
            .iter()
            .map(|s| s.as_ref().map(|s| Slot::new(s.config.clone(), s.origin)))
            .collect()
    }

    /// Puts `slot` in slot `id`.
    fn put(&mut self, id: PortId, slot: Slot) {
        if self.slots.len() <= usize::from(id) {
            self.slots.resize_with(usize::from(id) + 1, || None);
        }
        self.slots[usize::from(id)] = Some(slot);
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
        self.refuse_if_mirrored(name)?;
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
        free_slot_in(&self.slots, &mut self.next_slot)
    }

    /// Seconds since the bridge started: the MAC table's clock.
    fn now(&self) -> u32 {
        self.epoch.elapsed().as_secs() as u32
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

/// A free slot of `slots`, searching from `*next` and leaving `*next` after it
/// ([`Bridge::free_slot`]).
fn free_slot_in(slots: &[Option<Slot>], next: &mut usize) -> Option<PortId> {
    for k in 0..MAX_PORTS {
        let i = (*next + k) % MAX_PORTS;
        if slots.get(i).is_none_or(Option::is_none) {
            *next = i + 1;
            return Some(i as PortId);
        }
    }
    None
}

/// Refuses a static MAC of `config` that another port of `slots` (other than
/// `except`) has already.
fn check_statics_unique(
    slots: &[Option<Slot>],
    config: &PortConfig,
    except: Option<PortId>,
) -> Result<(), BridgeError> {
    for mac in &config.static_macs {
        let other = slots.iter().enumerate().find(|(i, s)| {
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

/// The refusal of port `name` when every slot is taken.
fn full(name: &str) -> BridgeError {
    refused(format!(
        "{name}: the bridge has its {MAX_PORTS} ports already"
    ))
}

/// Whether attaching a port checks that its workers can promise it frames
/// ([`Workers::admit`]): for a port being added, not for one coming back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission {
    Check,
    Skip,
}
