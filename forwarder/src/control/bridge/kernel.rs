//! The bridge's seam to the kernel: every call [`super::Bridge`] makes to the XDP
//! program and its maps ([`XdpProgram`]), rtnetlink ([`Rtnetlink`]), the netdev family
//! ([`NetdevFamily`]), the workers ([`Workers`]) and the interfaces themselves
//! ([`Kernel`], which also loads, opens and starts the others) goes through one of these
//! traits, as aya's syscalls go through its `sys` module.
//!
//! [`Linux`] is the real kernel: each trait is implemented by the type that did the job
//! before ([`Steering`], [`Netlink`], [`Netdev`], [`Datapath`]), each method calling the
//! type's own, so behaviour and messages are theirs. The unit tests put fakes in their
//! place (`bridge/fake.rs`), which record every call in order and fail the ones they
//! are told to, so the bridge's lifecycle is tested without root. The calls are the
//! control plane's, never the hot path's: trait objects cost nothing that counts.
use std::{
    fmt, io,
    net::IpAddr,
    os::fd::{BorrowedFd, RawFd},
    sync::Arc,
};

use hairpin_common::{
    FastConf, FastTx, PortConf, QueueStats, SlotConf, guard::Drops as GuardDrops, meter::Dropped,
};

use crate::{
    control::{
        capture::XdpTaps,
        netdev::{DeviceXdp, Netdev},
        netlink::{Change, Link, Netlink},
        port::{Interface, PortError},
        xdp::{AttachedMode, Steering, XdpAttachMode, XdpError},
    },
    datapath::{
        Datapath, DatapathConfig, DatapathError, PortQueues, PortSockets, Snapshot, tap::Taps,
    },
    switch::{Fdb, Meters, PortId, Tables, guard::IpPrefix},
};

/// The kernel as the bridge starts from it: interfaces looked up, the XDP program
/// loaded, the netlink sockets opened, the workers started.
pub trait Kernel: fmt::Debug + Send {
    /// Looks interface `name` up ([`Interface::lookup`]).
    fn lookup(&self, name: &str) -> Result<Interface, PortError>;
    /// Loads the XDP program with room for a MAC table of `fdb_buckets` buckets
    /// ([`Steering::load`]).
    /// (`floods`: the fast path floods too, [`Steering::load`].)
    fn load_program(
        &mut self,
        fdb_buckets: usize,
        floods: bool,
    ) -> Result<Box<dyn XdpProgram>, XdpError>;
    /// Opens the rtnetlink sockets ([`Netlink::open`]).
    fn open_rtnetlink(&mut self) -> io::Result<Box<dyn Rtnetlink>>;
    /// Opens the netdev family ([`Netdev::open`]; kernels before 6.3 have none).
    fn open_netdev(&mut self) -> io::Result<Box<dyn NetdevFamily>>;
    /// Starts one worker per core of `cores` ([`Datapath::start`]).
    fn start_workers(
        &mut self,
        cores: Vec<usize>,
        ports: usize,
        config: &DatapathConfig,
        tables: Arc<Tables>,
    ) -> Result<Box<dyn Workers>, DatapathError>;
}

/// The XDP program and its maps ([`Steering`]'s methods of the same names).
pub trait XdpProgram: fmt::Debug + Send {
    /// The workers' MAC table, in the program's `FDB` map.
    fn shared_fdb(&self) -> Result<Fdb, XdpError>;
    /// The workers' storm control and policing meters, in the program's `METERS` map.
    fn shared_meters(&self) -> Result<Meters, XdpError>;
    /// What the fast path's policing dropped on port `slot`.
    fn meter_drops(&self, slot: u32) -> Result<Dropped, XdpError>;
    /// What the fast path's storm control dropped on port `slot`.
    fn storm_drops(&self, slot: u32) -> Result<Dropped, XdpError>;
    /// Gives port `slot` one entry per RX queue in the per-queue maps.
    fn reserve_queues(&mut self, slot: u32, queues: u32) -> Result<(), XdpError>;
    /// Frees port `slot`'s entries in the per-queue maps.
    fn release_queues(&mut self, slot: u32);
    /// Enters `iface` in the port map.
    fn configure_port(&mut self, iface: &Interface, conf: PortConf) -> Result<(), XdpError>;
    /// Takes `ifindex` out of the port map.
    fn forget_port(&mut self, ifindex: u32) -> Result<(), XdpError>;
    /// Hands ARP and ND for `addr` to the kernel.
    fn add_host_address(&mut self, addr: IpAddr) -> Result<(), XdpError>;
    /// Forgets a host address.
    fn remove_host_address(&mut self, addr: IpAddr) -> Result<(), XdpError>;
    /// Attaches the program to `iface`.
    fn attach(&mut self, iface: &Interface, mode: XdpAttachMode) -> Result<AttachedMode, XdpError>;
    /// Points (port slot, queue) at the AF_XDP socket `fd` in the socket map.
    fn bind_socket(&mut self, slot: u32, queue: u32, fd: RawFd) -> Result<(), XdpError>;
    /// Clears (port slot, queue) in the socket map.
    fn unbind_socket(&mut self, slot: u32, queue: u32) -> Result<(), XdpError>;
    /// Detaches the program from `ifindex`.
    fn detach(&mut self, ifindex: u32);
    /// Detaches the program from every port of `ifindexes` at once.
    fn detach_ports(&mut self, ifindexes: &[u32]);
    /// The program's counters for (port slot, queue).
    fn queue_stats(&self, slot: u32, queue: u32) -> Result<QueueStats, XdpError>;
    /// Sets the fast path's bridge-wide settings.
    fn set_fast_conf(&mut self, conf: FastConf) -> Result<(), XdpError>;
    /// Sets port `slot`'s fast-path settings, anti-spoofing list and egress device.
    fn set_fast_slot(
        &mut self,
        slot: u32,
        conf: &SlotConf,
        allowed: &[[u8; 6]],
        egress: Option<u32>,
    ) -> Result<(), XdpError>;
    /// What the fast path sent out of port `slot`.
    fn fast_tx(&self, slot: u32) -> Result<FastTx, XdpError>;
    /// Sets VLAN `vid`'s flood domain word (`hairpin_common::flood::entry`; 0: the
    /// workers flood it).
    fn set_flood_vlan(&mut self, vid: u16, entry: u32) -> Result<(), XdpError>;
    /// Makes flood domain `domain` hold exactly `members`, as (slot, ifindex).
    fn set_flood_domain(&mut self, domain: u32, members: &[(u32, u32)]) -> Result<(), XdpError>;
    /// The program's tap maps, for the capture thread (once; none for a fake).
    fn take_taps(&mut self) -> Option<XdpTaps>;
    /// Sets port `slot`'s IP source guard prefixes in the fast path (empty: none).
    fn set_guard(&mut self, slot: u32, prefixes: &[IpPrefix]) -> Result<(), XdpError>;
    /// What the fast path's IP source guard dropped on port `slot`.
    fn guard_drops(&self, slot: u32) -> Result<GuardDrops, XdpError>;
}

/// The kernel's links and addresses ([`Netlink`]'s methods of the same names).
pub trait Rtnetlink: fmt::Debug + Send {
    /// The descriptor that is readable when links or addresses changed.
    fn events_fd(&self) -> BorrowedFd<'_>;
    /// Every change pending now, without blocking.
    fn changes(&mut self) -> io::Result<Vec<Change>>;
    /// Every link.
    fn links(&mut self) -> io::Result<Vec<Link>>;
    /// The link called `name`, if there is one.
    fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>>;
    /// The addresses of `ifindex`.
    fn addresses(&mut self, ifindex: u32) -> io::Result<Vec<IpAddr>>;
}

/// What devices do with XDP ([`Netdev`]'s methods of the same names).
pub trait NetdevFamily: fmt::Debug + Send {
    /// What device `ifindex` does with XDP.
    fn device(&mut self, ifindex: u32) -> io::Result<DeviceXdp>;
    /// The XDP features of device `ifindex`.
    fn xdp_features(&mut self, ifindex: u32) -> io::Result<u64>;
    /// The XDP features of every device, by ifindex.
    fn all_xdp_features(&mut self) -> io::Result<Vec<(u32, u64)>>;
}

/// The workers, as the bridge drives them ([`Datapath`]'s methods of the same names).
pub trait Workers: fmt::Debug + Send {
    /// The core each worker runs on.
    fn cores(&self) -> &[usize];
    /// How many workers there are.
    fn workers(&self) -> usize;
    /// Whether the workers can take `port` ([`Datapath::admit`]).
    fn admit(&self, port: &PortQueues) -> Result<(), DatapathError>;
    /// Makes `port`'s sockets, one per RX queue.
    fn open(&self, port: &PortQueues) -> Result<OpenSockets, DatapathError>;
    /// Hands `port`'s sockets to the workers.
    fn attach(&mut self, port: &PortQueues, sockets: OpenSockets) -> Result<(), DatapathError>;
    /// Port `id`'s MTU is now `mtu`.
    fn set_mtu(&mut self, id: PortId, mtu: u32) -> Result<(), DatapathError>;
    /// Lets port `id` go; returns the frames taken back.
    fn detach(&mut self, id: PortId) -> Result<usize, DatapathError>;
    /// The workers decide with `tables` from now on.
    fn set_tables(&mut self, tables: &Arc<Tables>) -> Result<(), DatapathError>;
    /// The counters now.
    fn snapshot(&self) -> Snapshot;
    /// Which ports' frames the workers copy for captures.
    fn taps(&self) -> Arc<Taps>;
}

/// A port's sockets opened by [`Workers::open`], not yet handed to the workers: each
/// queue's descriptor (for the socket map) and how they bound.
#[derive(Debug)]
pub struct OpenSockets {
    fds: Vec<(u32, RawFd)>,
    zero_copy: bool,
    max_chain: usize,
    /// The datapath's own sockets (none from a fake).
    sockets: Option<PortSockets>,
}

impl OpenSockets {
    /// Each socket's queue and descriptor.
    pub fn fds(&self) -> impl Iterator<Item = (u32, RawFd)> + '_ {
        self.fds.iter().copied()
    }

    /// Whether they bound zero-copy.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The most UMEM frames one frame of theirs may take.
    pub fn max_chain(&self) -> usize {
        self.max_chain
    }

    /// Sockets with these descriptors that are no real sockets (for fakes).
    #[cfg(test)]
    pub(super) fn fake(fds: Vec<(u32, RawFd)>, zero_copy: bool, max_chain: usize) -> Self {
        Self {
            fds,
            zero_copy,
            max_chain,
            sockets: None,
        }
    }
}

impl From<PortSockets> for OpenSockets {
    fn from(sockets: PortSockets) -> Self {
        Self {
            fds: sockets.fds().collect(),
            zero_copy: sockets.zero_copy(),
            max_chain: sockets.max_chain(),
            sockets: Some(sockets),
        }
    }
}

/// The running kernel: interfaces by ioctl, the embedded XDP program through aya,
/// rtnetlink and the netdev family over netlink, AF_XDP workers.
#[derive(Debug, Default)]
pub struct Linux;

impl Kernel for Linux {
    fn lookup(&self, name: &str) -> Result<Interface, PortError> {
        Interface::lookup(name)
    }

    fn load_program(
        &mut self,
        fdb_buckets: usize,
        floods: bool,
    ) -> Result<Box<dyn XdpProgram>, XdpError> {
        Ok(Box::new(Steering::load(fdb_buckets, floods)?))
    }

    fn open_rtnetlink(&mut self) -> io::Result<Box<dyn Rtnetlink>> {
        Ok(Box::new(Netlink::open()?))
    }

    fn open_netdev(&mut self) -> io::Result<Box<dyn NetdevFamily>> {
        Ok(Box::new(Netdev::open()?))
    }

    fn start_workers(
        &mut self,
        cores: Vec<usize>,
        ports: usize,
        config: &DatapathConfig,
        tables: Arc<Tables>,
    ) -> Result<Box<dyn Workers>, DatapathError> {
        Ok(Box::new(Datapath::start(cores, ports, config, tables)?))
    }
}

impl XdpProgram for Steering {
    fn shared_fdb(&self) -> Result<Fdb, XdpError> {
        Steering::shared_fdb(self)
    }

    fn shared_meters(&self) -> Result<Meters, XdpError> {
        Steering::shared_meters(self)
    }

    fn meter_drops(&self, slot: u32) -> Result<Dropped, XdpError> {
        Steering::meter_drops(self, slot)
    }

    fn storm_drops(&self, slot: u32) -> Result<Dropped, XdpError> {
        Steering::storm_drops(self, slot)
    }

    fn set_flood_vlan(&mut self, vid: u16, entry: u32) -> Result<(), XdpError> {
        Steering::set_flood_vlan(self, vid, entry)
    }

    fn set_flood_domain(&mut self, domain: u32, members: &[(u32, u32)]) -> Result<(), XdpError> {
        Steering::set_flood_domain(self, domain, members)
    }

    fn reserve_queues(&mut self, slot: u32, queues: u32) -> Result<(), XdpError> {
        Steering::reserve_queues(self, slot, queues)
    }

    fn release_queues(&mut self, slot: u32) {
        Steering::release_queues(self, slot);
    }

    fn configure_port(&mut self, iface: &Interface, conf: PortConf) -> Result<(), XdpError> {
        Steering::configure_port(self, iface, conf)
    }

    fn forget_port(&mut self, ifindex: u32) -> Result<(), XdpError> {
        Steering::forget_port(self, ifindex)
    }

    fn add_host_address(&mut self, addr: IpAddr) -> Result<(), XdpError> {
        Steering::add_host_address(self, addr)
    }

    fn remove_host_address(&mut self, addr: IpAddr) -> Result<(), XdpError> {
        Steering::remove_host_address(self, addr)
    }

    fn attach(&mut self, iface: &Interface, mode: XdpAttachMode) -> Result<AttachedMode, XdpError> {
        Steering::attach(self, iface, mode)
    }

    fn bind_socket(&mut self, slot: u32, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        Steering::bind_socket(self, slot, queue, &fd)
    }

    fn unbind_socket(&mut self, slot: u32, queue: u32) -> Result<(), XdpError> {
        Steering::unbind_socket(self, slot, queue)
    }

    fn detach(&mut self, ifindex: u32) {
        Steering::detach(self, ifindex);
    }

    fn detach_ports(&mut self, ifindexes: &[u32]) {
        Steering::detach_ports(self, ifindexes);
    }

    fn queue_stats(&self, slot: u32, queue: u32) -> Result<QueueStats, XdpError> {
        Steering::queue_stats(self, slot, queue)
    }

    fn set_fast_conf(&mut self, conf: FastConf) -> Result<(), XdpError> {
        Steering::set_fast_conf(self, conf)
    }

    fn set_fast_slot(
        &mut self,
        slot: u32,
        conf: &SlotConf,
        allowed: &[[u8; 6]],
        egress: Option<u32>,
    ) -> Result<(), XdpError> {
        Steering::set_fast_slot(self, slot, conf, allowed, egress)
    }

    fn fast_tx(&self, slot: u32) -> Result<FastTx, XdpError> {
        Steering::fast_tx(self, slot)
    }

    fn take_taps(&mut self) -> Option<XdpTaps> {
        Steering::take_taps(self)
    }

    fn set_guard(&mut self, slot: u32, prefixes: &[IpPrefix]) -> Result<(), XdpError> {
        Steering::set_guard(self, slot, prefixes)
    }

    fn guard_drops(&self, slot: u32) -> Result<GuardDrops, XdpError> {
        Steering::guard_drops(self, slot)
    }
}

impl Rtnetlink for Netlink {
    fn events_fd(&self) -> BorrowedFd<'_> {
        Netlink::events_fd(self)
    }

    fn changes(&mut self) -> io::Result<Vec<Change>> {
        Netlink::changes(self)
    }

    fn links(&mut self) -> io::Result<Vec<Link>> {
        Netlink::links(self)
    }

    fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        Netlink::link_by_name(self, name)
    }

    fn addresses(&mut self, ifindex: u32) -> io::Result<Vec<IpAddr>> {
        Netlink::addresses(self, ifindex)
    }
}

impl NetdevFamily for Netdev {
    fn device(&mut self, ifindex: u32) -> io::Result<DeviceXdp> {
        Netdev::device(self, ifindex)
    }

    fn xdp_features(&mut self, ifindex: u32) -> io::Result<u64> {
        Netdev::xdp_features(self, ifindex)
    }

    fn all_xdp_features(&mut self) -> io::Result<Vec<(u32, u64)>> {
        Netdev::all_xdp_features(self)
    }
}

impl Workers for Datapath {
    fn cores(&self) -> &[usize] {
        Datapath::cores(self)
    }

    fn workers(&self) -> usize {
        Datapath::workers(self)
    }

    fn admit(&self, port: &PortQueues) -> Result<(), DatapathError> {
        Datapath::admit(self, port)
    }

    fn open(&self, port: &PortQueues) -> Result<OpenSockets, DatapathError> {
        Datapath::open(self, port).map(OpenSockets::from)
    }

    fn attach(&mut self, port: &PortQueues, sockets: OpenSockets) -> Result<(), DatapathError> {
        let sockets = sockets.sockets.expect("sockets the datapath opened itself");
        Datapath::attach(self, port, sockets)
    }

    fn set_mtu(&mut self, id: PortId, mtu: u32) -> Result<(), DatapathError> {
        Datapath::set_mtu(self, id, mtu)
    }

    fn detach(&mut self, id: PortId) -> Result<usize, DatapathError> {
        Datapath::detach(self, id)
    }

    fn set_tables(&mut self, tables: &Arc<Tables>) -> Result<(), DatapathError> {
        Datapath::set_tables(self, tables)
    }

    fn taps(&self) -> Arc<Taps> {
        Arc::clone(Datapath::taps(self))
    }

    fn snapshot(&self) -> Snapshot {
        Datapath::snapshot(self)
    }
}
