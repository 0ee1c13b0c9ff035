//! Fakes of the bridge's kernel ([`super::kernel`]), for unit tests without root, in
//! the spirit of aya's `sys/fake.rs` and OVS's netdev-dummy: a [`FakeKernel`] holds
//! made-up interfaces, and the program, sockets and workers the bridge gets from it
//! share one state with it, where every call is recorded in order ([`Call`]) and a
//! call can be told to fail ([`FakeKernel::fail`]).
//!
//! They keep what the real ones keep, as far as a test can see: the XDP program's
//! port map, socket map, queue entries, attachments and host addresses, the ports the
//! workers serve and the tables they were given; and they refuse what the real ones
//! refuse where a test could trip over it (a socket bound to a queue its slot has no
//! entry for, a port with more queues than workers).
use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt,
    fs::File,
    io,
    net::IpAddr,
    os::fd::{AsFd as _, BorrowedFd, RawFd},
    sync::{Arc, Mutex, MutexGuard},
};

use hairpin_common::{
    FastConf, FastTx, PortConf, QueueStats, SlotConf,
    guard::Drops as GuardDrops,
    meter::{Dropped, Meter},
};

use super::kernel::{Kernel, NetdevFamily, OpenSockets, Rtnetlink, Workers, XdpProgram};
use crate::{
    control::{
        capture::XdpTaps,
        netdev::DeviceXdp,
        netlink::{Change, Link},
        port::{Interface, PortError},
        xdp::{AttachedMode, XdpAttachMode, XdpError},
    },
    datapath::{
        DatapathConfig, DatapathError, PortQueues, Snapshot, latency,
        stats::{PortQueueSnapshot, WorkerSnapshot},
        tap::Taps,
        xsk::MAX_CHAIN,
    },
    switch::{Action, Fdb, MAX_PORTS, Meters, PortId, Tables, decide, guard::IpPrefix},
    wire::Mac,
};

/// A call the bridge made, as the fakes record it (reads of counters are not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// [`Kernel::lookup`].
    Lookup(String),
    /// [`Kernel::load_program`].
    LoadProgram,
    /// [`Kernel::open_rtnetlink`].
    OpenRtnetlink,
    /// [`Kernel::open_netdev`].
    OpenNetdev,
    /// [`Kernel::start_workers`], with so many workers.
    StartWorkers(usize),
    /// [`XdpProgram::reserve_queues`].
    ReserveQueues { slot: u32, queues: u32 },
    /// [`XdpProgram::release_queues`].
    ReleaseQueues(u32),
    /// [`XdpProgram::configure_port`]: the port map's entry for `ifindex`.
    ConfigurePort { ifindex: u32, slot: u32, flags: u32 },
    /// [`XdpProgram::forget_port`].
    ForgetPort(u32),
    /// [`XdpProgram::add_host_address`].
    AddHostAddress(IpAddr),
    /// [`XdpProgram::remove_host_address`].
    RemoveHostAddress(IpAddr),
    /// [`XdpProgram::attach`], to this ifindex.
    XdpAttach(u32),
    /// [`XdpProgram::detach`], from this ifindex.
    XdpDetach(u32),
    /// [`XdpProgram::detach_ports`].
    XdpDetachPorts(Vec<u32>),
    /// [`XdpProgram::bind_socket`].
    Bind { slot: u32, queue: u32 },
    /// [`XdpProgram::unbind_socket`].
    Unbind { slot: u32, queue: u32 },
    /// [`XdpProgram::set_fast_conf`].
    SetFastConf,
    /// [`XdpProgram::set_fast_slot`]: the slot and the device the fast path may send
    /// to.
    SetFastSlot { slot: u32, egress: Option<u32> },
    /// [`XdpProgram::set_guard`]: the slot and its IP source guard's prefixes.
    SetGuard { slot: u32, prefixes: Vec<String> },
    /// The program's [`Drop`]: every attachment goes with it.
    ProgramUnloaded,
    /// [`Rtnetlink::link_by_name`].
    LinkByName(String),
    /// [`Rtnetlink::links`].
    Links,
    /// [`Rtnetlink::addresses`].
    Addresses(u32),
    /// [`NetdevFamily::device`].
    Device(u32),
    /// [`NetdevFamily::xdp_features`].
    XdpFeatures(u32),
    /// [`NetdevFamily::all_xdp_features`].
    AllXdpFeatures,
    /// [`Workers::admit`].
    Admit { id: PortId, queues: u32 },
    /// [`Workers::open`].
    Open(PortId),
    /// [`Workers::attach`].
    Attach(PortId),
    /// [`Workers::set_mtu`].
    SetMtu { id: PortId, mtu: u32 },
    /// [`Workers::detach`], with the port's entries in the MAC table then.
    Detach { id: PortId, entries: usize },
    /// [`Workers::set_tables`]: the ports the tables send to, as the ports a broadcast
    /// from a free slot floods to (`veb` mode without VLANs only).
    SetTables(Vec<PortId>),
    /// The workers' [`Drop`]: they stop.
    WorkersStopped,
}

/// An error a failing call returns: of the type its real one returns.
#[derive(Debug)]
pub enum Failure {
    /// For the XDP program's calls.
    Xdp(XdpError),
    /// For netlink's (and the netdev family's) calls.
    Io(io::Error),
    /// For the workers' calls.
    Datapath(DatapathError),
    /// For lookups.
    Port(PortError),
}

impl From<XdpError> for Failure {
    fn from(e: XdpError) -> Self {
        Self::Xdp(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<DatapathError> for Failure {
    fn from(e: DatapathError) -> Self {
        Self::Datapath(e)
    }
}

impl From<PortError> for Failure {
    fn from(e: PortError) -> Self {
        Self::Port(e)
    }
}

impl Failure {
    fn xdp(self) -> XdpError {
        match self {
            Self::Xdp(e) => e,
            other => panic!("{other:?} is not an XDP program's error"),
        }
    }

    fn io(self) -> io::Error {
        match self {
            Self::Io(e) => e,
            other => panic!("{other:?} is not a netlink error"),
        }
    }

    fn datapath(self) -> DatapathError {
        match self {
            Self::Datapath(e) => e,
            other => panic!("{other:?} is not a datapath error"),
        }
    }

    fn port(self) -> PortError {
        match self {
            Self::Port(e) => e,
            other => panic!("{other:?} is not an interface's error"),
        }
    }
}

/// A call to fail once, and how.
struct Rule {
    matches: Box<dyn Fn(&Call) -> bool + Send>,
    failure: Failure,
}

/// A made-up interface.
#[derive(Clone, Debug)]
struct FakeLink {
    iface: Interface,
    link: Link,
    /// `NETDEV_XDP_ACT_*` bits.
    features: u64,
    addresses: Vec<IpAddr>,
}

/// What the fakes share: the interfaces, the calls, and what the program and the
/// workers hold.
#[derive(Default)]
struct State {
    calls: Vec<Call>,
    rules: Vec<Rule>,
    links: Vec<FakeLink>,
    changes: VecDeque<Change>,
    /// The kernel has no netdev family (before 6.3).
    no_netdev: bool,
    /// The program's entries per slot in the per-queue maps: slot -> queues.
    reserved: BTreeMap<u32, u32>,
    /// (slot, queue) bound in the socket map.
    bound: BTreeSet<(u32, u32)>,
    /// The port map: ifindex -> entry.
    port_map: BTreeMap<u32, PortConf>,
    /// Where the program is attached.
    xdp: BTreeSet<u32>,
    host_addresses: BTreeSet<IpAddr>,
    /// Slots the fast path may send to, with their device.
    fast_egress: BTreeMap<u32, u32>,
    /// Ports the workers serve, with their queues.
    served: BTreeMap<PortId, u32>,
    /// Frames the workers received per port slot (on its first queue), as the test
    /// set them: the workers' counters go on per slot whatever comes and goes.
    received: BTreeMap<PortId, u64>,

    /// The fast path's policing meters per slot (byte, packet), where one limits.
    fast_police: BTreeMap<u32, (Meter, Meter)>,
    /// What the fast path's policing dropped per slot, as the test set it.
    meter_drops: BTreeMap<u32, Dropped>,
    /// The IP source guard's prefixes in the fast path, by slot.
    guards: BTreeMap<u32, Vec<String>>,
    /// The fast path's guard drops, by slot, as the test set them.
    guard_drops: BTreeMap<u32, GuardDrops>,
    /// Each slot's fast-path flags, as last set.
    fast_flags: BTreeMap<u32, u32>,
    /// The flood domain words by VLAN, where not 0.
    flood_vlans: BTreeMap<u16, u32>,
    /// The flood domains' members, (slot, ifindex), where not empty.
    flood_domains: BTreeMap<u32, Vec<(u32, u32)>>,
}

/// A kernel of made-up interfaces; clones share it, so a test keeps one to look at
/// and steer what the bridge it gave another to does.
#[derive(Clone, Default)]
pub struct FakeKernel(Arc<Mutex<State>>);

impl fmt::Debug for FakeKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FakeKernel")
    }
}

impl FakeKernel {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `call`; fails it if a rule says so (the rule is used up).
    fn call(&self, call: Call) -> Result<(), Failure> {
        let mut s = self.state();
        s.calls.push(call.clone());
        match s.rules.iter().position(|r| (r.matches)(&call)) {
            Some(i) => Err(s.rules.remove(i).failure),
            None => Ok(()),
        }
    }

    /// Adds an interface: up, MTU 1500, MAC `02:00:00:00:00:<ifindex>`, no XDP
    /// features, no addresses.
    pub fn add_link(&self, name: &str, ifindex: u32, rx_queues: u32) {
        let mac = [2, 0, 0, 0, 0, ifindex as u8];
        self.state().links.push(FakeLink {
            iface: Interface {
                name: name.to_owned(),
                ifindex,
                mac: Mac(mac),
                rx_queues,
            },
            link: Link {
                ifindex,
                name: name.to_owned(),
                mac: Some(mac),
                mtu: 1500,
                admin_up: true,
                oper_up: true,
                max_mtu: None,
                xdp_prog_id: None,
                alias: None,
            },
            features: 0,
            addresses: Vec::new(),
        });
    }

    /// Changes interface `name` with `change` and tells the bridge (`RTM_NEWLINK`).
    pub fn change_link(&self, name: &str, change: impl FnOnce(&mut Link)) {
        let mut s = self.state();
        let l = s
            .links
            .iter_mut()
            .find(|l| l.link.name == name)
            .expect("a fake link of that name");
        change(&mut l.link);
        l.iface.name.clone_from(&l.link.name);
        let link = l.link.clone();
        s.changes.push_back(Change::Link(link));
    }

    /// Deletes interface `name` and tells the bridge (`RTM_DELLINK`).
    pub fn remove_link(&self, name: &str) {
        let mut s = self.state();
        let i = s
            .links
            .iter()
            .position(|l| l.link.name == name)
            .expect("a fake link of that name");
        let gone = s.links.remove(i);
        s.changes.push_back(Change::LinkGone {
            ifindex: gone.link.ifindex,
            name: gone.link.name,
        });
    }

    /// Tells the bridge `change`.
    pub fn push_change(&self, change: Change) {
        self.state().changes.push_back(change);
    }

    /// Loses the changes not yet read, as a socket that overran.
    pub fn drop_changes(&self) {
        self.state().changes.clear();
    }

    /// Sets interface `ifindex`'s XDP features (`NETDEV_XDP_ACT_*`).
    pub fn set_features(&self, ifindex: u32, features: u64) {
        let mut s = self.state();
        let l = s.links.iter_mut().find(|l| l.link.ifindex == ifindex);
        l.expect("a fake link of that ifindex").features = features;
    }

    /// Gives interface `ifindex` these addresses (without telling the bridge).
    pub fn set_addresses(&self, ifindex: u32, addresses: &[IpAddr]) {
        let mut s = self.state();
        let l = s.links.iter_mut().find(|l| l.link.ifindex == ifindex);
        l.expect("a fake link of that ifindex").addresses = addresses.to_vec();
    }

    /// A kernel without the netdev family: opening it fails.
    pub fn without_netdev(&self) {
        self.state().no_netdev = true;
    }

    /// The next call `matches` accepts fails with `failure` (once).
    pub fn fail(
        &self,
        matches: impl Fn(&Call) -> bool + Send + 'static,
        failure: impl Into<Failure>,
    ) {
        self.state().rules.push(Rule {
            matches: Box::new(matches),
            failure: failure.into(),
        });
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Every call so far, forgotten.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state().calls)
    }

    /// Slots with entries in the program's per-queue maps, with their queues.
    pub fn reserved(&self) -> BTreeMap<u32, u32> {
        self.state().reserved.clone()
    }

    /// (slot, queue) pairs bound in the socket map.
    pub fn bound(&self) -> Vec<(u32, u32)> {
        self.state().bound.iter().copied().collect()
    }

    /// The ifindexes in the program's port map, with their slots.
    pub fn port_map(&self) -> Vec<(u32, u32)> {
        let s = self.state();
        s.port_map.iter().map(|(&i, c)| (i, c.slot)).collect()
    }

    /// Where the program is attached.
    pub fn xdp_attached(&self) -> Vec<u32> {
        self.state().xdp.iter().copied().collect()
    }

    /// The host addresses the program hands to the kernel.
    pub fn host_addresses(&self) -> Vec<IpAddr> {
        self.state().host_addresses.iter().copied().collect()
    }

    /// The IP source guard's prefixes in the fast path, by slot.
    pub fn guards(&self) -> Vec<(u32, Vec<String>)> {
        let s = self.state();
        s.guards.iter().map(|(&k, v)| (k, v.clone())).collect()
    }

    /// Sets what the fast path's guard dropped on slot `slot`.
    pub fn set_guard_drops(&self, slot: u32, drops: GuardDrops) {
        self.state().guard_drops.insert(slot, drops);
    }

    /// Slot `slot`'s fast-path flags, as last set (0: never).
    pub fn fast_flags(&self, slot: u32) -> u32 {
        self.state().fast_flags.get(&slot).copied().unwrap_or(0)
    }

    /// Slots the fast path sends to, with their devices.
    pub fn fast_egress(&self) -> Vec<(u32, u32)> {
        let s = self.state();
        s.fast_egress.iter().map(|(&k, &v)| (k, v)).collect()
    }

    /// The fast path's policing meters per slot (byte, packet), where one limits.
    pub fn fast_police(&self) -> Vec<(u32, Meter, Meter)> {
        let s = self.state();
        s.fast_police
            .iter()
            .map(|(&k, &(b, p))| (k, b, p))
            .collect()
    }

    /// The fast path's flood domains: by VLAN whose floods the kernel makes, its word
    /// and its domain's members (slot, ifindex).
    pub fn floods(&self) -> BTreeMap<u16, (u32, Vec<(u32, u32)>)> {
        let s = self.state();
        s.flood_vlans
            .iter()
            .map(|(&vid, &e)| {
                let domain = hairpin_common::flood::domain_of(e).expect("non-zero word");
                let members = s.flood_domains.get(&domain).cloned().unwrap_or_default();
                (vid, (e, members))
            })
            .collect()
    }

    /// Sets what the fast path's policing dropped on slot `slot` so far.
    pub fn set_meter_drops(&self, slot: u32, dropped: Dropped) {
        self.state().meter_drops.insert(slot, dropped);
    }

    /// Ports the workers serve, with their queues.
    pub fn served(&self) -> Vec<(PortId, u32)> {
        let s = self.state();
        s.served.iter().map(|(&k, &v)| (k, v)).collect()
    }

    /// Sets the frames the workers received on port slot `id` (its first queue's
    /// `rx_packets`) so far.
    pub fn set_received(&self, id: PortId, frames: u64) {
        self.state().received.insert(id, frames);
    }

    /// The fake link called `name`.
    fn link(&self, name: &str) -> Option<FakeLink> {
        self.state()
            .links
            .iter()
            .find(|l| l.link.name == name)
            .cloned()
    }
}

impl Kernel for FakeKernel {
    fn lookup(&self, name: &str) -> Result<Interface, PortError> {
        self.call(Call::Lookup(name.to_owned()))
            .map_err(Failure::port)?;
        self.link(name)
            .map(|l| l.iface)
            .ok_or_else(|| PortError::NoSuchDevice {
                name: name.to_owned(),
            })
    }

    fn load_program(
        &mut self,
        fdb_buckets: usize,
        _floods: bool,
    ) -> Result<Box<dyn XdpProgram>, XdpError> {
        self.call(Call::LoadProgram).map_err(Failure::xdp)?;
        Ok(Box::new(FakeProgram {
            kernel: self.clone(),
            fdb_buckets,
        }))
    }

    fn open_rtnetlink(&mut self) -> io::Result<Box<dyn Rtnetlink>> {
        self.call(Call::OpenRtnetlink).map_err(Failure::io)?;
        Ok(Box::new(FakeRtnetlink {
            kernel: self.clone(),
            events: File::open("/dev/null")?,
        }))
    }

    fn open_netdev(&mut self) -> io::Result<Box<dyn NetdevFamily>> {
        self.call(Call::OpenNetdev).map_err(Failure::io)?;
        if self.state().no_netdev {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        Ok(Box::new(FakeNetdev(self.clone())))
    }

    fn start_workers(
        &mut self,
        cores: Vec<usize>,
        _ports: usize,
        _config: &DatapathConfig,
        tables: Arc<Tables>,
    ) -> Result<Box<dyn Workers>, DatapathError> {
        self.call(Call::StartWorkers(cores.len()))
            .map_err(Failure::datapath)?;
        Ok(Box::new(FakeWorkers {
            kernel: self.clone(),
            taps: Arc::new(Taps::new(cores.len())),
            cores,
            tables,
        }))
    }
}

/// The fake XDP program.
#[derive(Debug)]
struct FakeProgram {
    kernel: FakeKernel,
    fdb_buckets: usize,
}

impl FakeProgram {
    /// Refuses a queue its slot has no entry for, as the real program's maps do.
    fn check_range(&self, slot: u32, queue: u32) -> Result<(), XdpError> {
        match self.kernel.state().reserved.get(&slot) {
            Some(&n) if queue < n => Ok(()),
            _ => Err(XdpError::OutOfRange { slot, queue }),
        }
    }
}

impl XdpProgram for FakeProgram {
    fn take_taps(&mut self) -> Option<XdpTaps> {
        None
    }

    fn shared_fdb(&self) -> Result<Fdb, XdpError> {
        Ok(Fdb::with_capacity(
            self.fdb_buckets * hairpin_common::fdb::SLOTS,
        ))
    }

    fn shared_meters(&self) -> Result<Meters, XdpError> {
        Ok(Meters::owned())
    }

    fn meter_drops(&self, slot: u32) -> Result<Dropped, XdpError> {
        Ok(self
            .kernel
            .state()
            .meter_drops
            .get(&slot)
            .copied()
            .unwrap_or_default())
    }

    fn storm_drops(&self, _slot: u32) -> Result<Dropped, XdpError> {
        Ok(Dropped::default())
    }

    fn reserve_queues(&mut self, slot: u32, queues: u32) -> Result<(), XdpError> {
        self.kernel
            .call(Call::ReserveQueues { slot, queues })
            .map_err(Failure::xdp)?;
        self.kernel.state().reserved.insert(slot, queues);
        Ok(())
    }

    fn release_queues(&mut self, slot: u32) {
        let _ = self.kernel.call(Call::ReleaseQueues(slot));
        self.kernel.state().reserved.remove(&slot);
    }

    fn configure_port(&mut self, iface: &Interface, conf: PortConf) -> Result<(), XdpError> {
        self.kernel
            .call(Call::ConfigurePort {
                ifindex: iface.ifindex,
                slot: conf.slot,
                flags: conf.flags,
            })
            .map_err(Failure::xdp)?;
        let mut s = self.kernel.state();
        // As the real one: the slot's queue entries, if it had none yet.
        s.reserved.entry(conf.slot).or_insert(iface.rx_queues);
        s.port_map.insert(iface.ifindex, conf);
        Ok(())
    }

    fn forget_port(&mut self, ifindex: u32) -> Result<(), XdpError> {
        self.kernel
            .call(Call::ForgetPort(ifindex))
            .map_err(Failure::xdp)?;
        self.kernel.state().port_map.remove(&ifindex);
        Ok(())
    }

    fn add_host_address(&mut self, addr: IpAddr) -> Result<(), XdpError> {
        self.kernel
            .call(Call::AddHostAddress(addr))
            .map_err(Failure::xdp)?;
        self.kernel.state().host_addresses.insert(addr);
        Ok(())
    }

    fn remove_host_address(&mut self, addr: IpAddr) -> Result<(), XdpError> {
        self.kernel
            .call(Call::RemoveHostAddress(addr))
            .map_err(Failure::xdp)?;
        self.kernel.state().host_addresses.remove(&addr);
        Ok(())
    }

    fn attach(&mut self, iface: &Interface, mode: XdpAttachMode) -> Result<AttachedMode, XdpError> {
        self.kernel
            .call(Call::XdpAttach(iface.ifindex))
            .map_err(Failure::xdp)?;
        self.kernel.state().xdp.insert(iface.ifindex);
        Ok(match mode {
            XdpAttachMode::Generic => AttachedMode::Generic,
            XdpAttachMode::Auto | XdpAttachMode::Native => AttachedMode::Native,
        })
    }

    fn bind_socket(&mut self, slot: u32, queue: u32, _fd: RawFd) -> Result<(), XdpError> {
        self.kernel
            .call(Call::Bind { slot, queue })
            .map_err(Failure::xdp)?;
        self.check_range(slot, queue)?;
        self.kernel.state().bound.insert((slot, queue));
        Ok(())
    }

    fn unbind_socket(&mut self, slot: u32, queue: u32) -> Result<(), XdpError> {
        self.kernel
            .call(Call::Unbind { slot, queue })
            .map_err(Failure::xdp)?;
        self.check_range(slot, queue)?;
        self.kernel.state().bound.remove(&(slot, queue));
        Ok(())
    }

    fn detach(&mut self, ifindex: u32) {
        let _ = self.kernel.call(Call::XdpDetach(ifindex));
        self.kernel.state().xdp.remove(&ifindex);
    }

    fn detach_ports(&mut self, ifindexes: &[u32]) {
        let _ = self.kernel.call(Call::XdpDetachPorts(ifindexes.to_vec()));
        let mut s = self.kernel.state();
        for ifindex in ifindexes {
            s.xdp.remove(ifindex);
        }
    }

    fn queue_stats(&self, slot: u32, queue: u32) -> Result<QueueStats, XdpError> {
        self.check_range(slot, queue)?;
        Ok(QueueStats::default())
    }

    fn set_fast_conf(&mut self, _conf: FastConf) -> Result<(), XdpError> {
        self.kernel.call(Call::SetFastConf).map_err(Failure::xdp)
    }

    fn set_fast_slot(
        &mut self,
        slot: u32,
        conf: &SlotConf,
        _allowed: &[[u8; 6]],
        egress: Option<u32>,
    ) -> Result<(), XdpError> {
        self.kernel
            .call(Call::SetFastSlot { slot, egress })
            .map_err(Failure::xdp)?;
        let mut s = self.kernel.state();
        if conf.police_bytes.is_limited() || conf.police_packets.is_limited() {
            s.fast_police
                .insert(slot, (conf.police_bytes, conf.police_packets));
        } else {
            s.fast_police.remove(&slot);
        }
        s.fast_flags.insert(slot, conf.flags);
        match egress {
            Some(ifindex) => s.fast_egress.insert(slot, ifindex),
            None => s.fast_egress.remove(&slot),
        };
        Ok(())
    }

    fn fast_tx(&self, _slot: u32) -> Result<FastTx, XdpError> {
        Ok(FastTx::default())
    }

    fn set_flood_vlan(&mut self, vid: u16, entry: u32) -> Result<(), XdpError> {
        let mut s = self.kernel.state();
        if entry == 0 {
            s.flood_vlans.remove(&vid);
        } else {
            s.flood_vlans.insert(vid, entry);
        }
        Ok(())
    }

    fn set_flood_domain(&mut self, domain: u32, members: &[(u32, u32)]) -> Result<(), XdpError> {
        let mut s = self.kernel.state();
        if members.is_empty() {
            s.flood_domains.remove(&domain);
        } else {
            s.flood_domains.insert(domain, members.to_vec());
        }
        Ok(())
    }

    fn set_guard(&mut self, slot: u32, prefixes: &[IpPrefix]) -> Result<(), XdpError> {
        let prefixes: Vec<String> = prefixes.iter().map(ToString::to_string).collect();
        self.kernel
            .call(Call::SetGuard {
                slot,
                prefixes: prefixes.clone(),
            })
            .map_err(Failure::xdp)?;
        let mut s = self.kernel.state();
        if prefixes.is_empty() {
            s.guards.remove(&slot);
        } else {
            s.guards.insert(slot, prefixes);
        }
        Ok(())
    }

    fn guard_drops(&self, slot: u32) -> Result<GuardDrops, XdpError> {
        Ok(self
            .kernel
            .state()
            .guard_drops
            .get(&slot)
            .copied()
            .unwrap_or_default())
    }
}

impl Drop for FakeProgram {
    fn drop(&mut self) {
        let _ = self.kernel.call(Call::ProgramUnloaded);
        self.kernel.state().xdp.clear();
    }
}

/// The fake rtnetlink sockets: the fake interfaces, and the changes the test made.
#[derive(Debug)]
struct FakeRtnetlink {
    kernel: FakeKernel,
    /// Something to poll.
    events: File,
}

impl Rtnetlink for FakeRtnetlink {
    fn events_fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }

    fn changes(&mut self) -> io::Result<Vec<Change>> {
        Ok(self.kernel.state().changes.drain(..).collect())
    }

    fn links(&mut self) -> io::Result<Vec<Link>> {
        self.kernel.call(Call::Links).map_err(Failure::io)?;
        Ok(self
            .kernel
            .state()
            .links
            .iter()
            .map(|l| l.link.clone())
            .collect())
    }

    fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        self.kernel
            .call(Call::LinkByName(name.to_owned()))
            .map_err(Failure::io)?;
        Ok(self.kernel.link(name).map(|l| l.link))
    }

    fn addresses(&mut self, ifindex: u32) -> io::Result<Vec<IpAddr>> {
        self.kernel
            .call(Call::Addresses(ifindex))
            .map_err(Failure::io)?;
        let s = self.kernel.state();
        let l = s.links.iter().find(|l| l.link.ifindex == ifindex);
        Ok(l.map(|l| l.addresses.clone()).unwrap_or_default())
    }
}

/// The fake netdev family: each interface's features, as the test set them.
#[derive(Debug)]
struct FakeNetdev(FakeKernel);

impl NetdevFamily for FakeNetdev {
    fn device(&mut self, ifindex: u32) -> io::Result<DeviceXdp> {
        self.0.call(Call::Device(ifindex)).map_err(Failure::io)?;
        let s = self.0.state();
        let l = s.links.iter().find(|l| l.link.ifindex == ifindex);
        l.map(|l| DeviceXdp {
            features: l.features,
            zc_max_segs: 1,
        })
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    fn xdp_features(&mut self, ifindex: u32) -> io::Result<u64> {
        self.0
            .call(Call::XdpFeatures(ifindex))
            .map_err(Failure::io)?;
        let s = self.0.state();
        let l = s.links.iter().find(|l| l.link.ifindex == ifindex);
        l.map(|l| l.features)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    fn all_xdp_features(&mut self) -> io::Result<Vec<(u32, u64)>> {
        self.0.call(Call::AllXdpFeatures).map_err(Failure::io)?;
        let s = self.0.state();
        Ok(s.links
            .iter()
            .map(|l| (l.link.ifindex, l.features))
            .collect())
    }
}

/// The fake workers: the ports they serve, the tables they were given.
#[derive(Debug)]
struct FakeWorkers {
    kernel: FakeKernel,
    taps: Arc<Taps>,
    cores: Vec<usize>,
    /// The last tables given.
    tables: Arc<Tables>,
}

impl Workers for FakeWorkers {
    fn cores(&self) -> &[usize] {
        &self.cores
    }

    fn taps(&self) -> Arc<Taps> {
        Arc::clone(&self.taps)
    }

    fn workers(&self) -> usize {
        self.cores.len()
    }

    fn admit(&self, port: &PortQueues) -> Result<(), DatapathError> {
        self.kernel
            .call(Call::Admit {
                id: port.id,
                queues: port.queues,
            })
            .map_err(Failure::datapath)
    }

    fn open(&self, port: &PortQueues) -> Result<OpenSockets, DatapathError> {
        self.kernel
            .call(Call::Open(port.id))
            .map_err(Failure::datapath)?;
        if port.queues as usize > self.cores.len() {
            return Err(DatapathError::UnservedQueues {
                port: port.name.clone(),
                has: port.queues,
                workers: self.cores.len(),
            });
        }
        // Made-up descriptors: the fake program never uses them.
        let fds = (0..port.queues)
            .map(|q| (q, 1000 + RawFd::from(port.id) * 64 + q as RawFd))
            .collect();
        Ok(OpenSockets::fake(fds, false, MAX_CHAIN))
    }

    fn attach(&mut self, port: &PortQueues, _sockets: OpenSockets) -> Result<(), DatapathError> {
        self.kernel
            .call(Call::Attach(port.id))
            .map_err(Failure::datapath)?;
        self.kernel.state().served.insert(port.id, port.queues);
        Ok(())
    }

    fn set_mtu(&mut self, id: PortId, mtu: u32) -> Result<(), DatapathError> {
        self.kernel
            .call(Call::SetMtu { id, mtu })
            .map_err(Failure::datapath)
    }

    fn detach(&mut self, id: PortId) -> Result<usize, DatapathError> {
        let entries = self
            .tables
            .fdb
            .entries()
            .iter()
            .filter(|e| e.port == id)
            .count();
        self.kernel
            .call(Call::Detach { id, entries })
            .map_err(Failure::datapath)?;
        self.kernel.state().served.remove(&id);
        Ok(0)
    }

    fn set_tables(&mut self, tables: &Arc<Tables>) -> Result<(), DatapathError> {
        self.kernel
            .call(Call::SetTables(sent_to(tables)))
            .map_err(Failure::datapath)?;
        self.tables = Arc::clone(tables);
        Ok(())
    }

    fn snapshot(&self) -> Snapshot {
        let workers = self.cores.len();
        let mut per_queue = vec![vec![PortQueueSnapshot::default(); workers]; MAX_PORTS];
        for (&id, &frames) in &self.kernel.state().received {
            per_queue[usize::from(id)][0].rx_packets = frames;
        }
        Snapshot {
            per_queue,
            workers: vec![
                WorkerSnapshot {
                    umems: 1,
                    ..WorkerSnapshot::default()
                };
                workers
            ],
            panicked_workers: 0,
            latency: latency::Summary::default(),
        }
    }
}

impl Drop for FakeWorkers {
    fn drop(&mut self) {
        let _ = self.kernel.call(Call::WorkersStopped);
        self.kernel.state().served.clear();
    }
}

/// The ports `tables` send to, as those a broadcast from the last slot (never a
/// test's port) floods to: in `veb` mode without VLANs, every port up. Empty with
/// VLANs; meaningless in the other modes. The source it learned is taken out again.
fn sent_to(tables: &Tables) -> Vec<PortId> {
    const PROBE: Mac = Mac([0x02, 0, 0, 0, 0xff, 0xfe]);
    if tables.vlans.is_aware() {
        return Vec::new();
    }
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&PROBE.0);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    let verdict = decide(tables, &frame, (MAX_PORTS - 1) as PortId, 0);
    tables.fdb.remove(0, PROBE);
    match verdict.action {
        Action::Flood(ports) => ports.iter().collect(),
        _ => Vec::new(),
    }
}
