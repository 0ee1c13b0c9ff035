//! The bridge as configured: [`BridgeConfig`], its ports' [`PortConfig`]s (what
//! [`PortSpec::check`](super::spec::PortSpec::check) makes of a port's settings) and its
//! port mirrors ([`MirrorSpec`]s, checked as they are).
use super::{
    spec::MirrorSpec,
    xdp::{FastFloods, FastPath, XdpAttachMode},
};
use crate::{
    datapath::DatapathConfig,
    switch::{Mode, PortPolicy},
    wire::Mac,
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
    /// Whether the fast path floods too.
    pub fast_floods: FastFloods,
    /// Port mirrors (SPAN), each of ports of `ports`.
    pub mirrors: Vec<MirrorSpec>,
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
            fast_floods: FastFloods::default(),
            mirrors: Vec::new(),
        }
    }
}
