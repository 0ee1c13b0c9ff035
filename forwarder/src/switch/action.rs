//! What [`decide`](super::decide) answers: an [`Action`] (forward, flood or drop), the
//! [`DropReason`] a dropped frame is counted under, and the [`Verdict`] that carries the
//! action with the frame's VLAN.
use super::{PortId, PortSet, vlan::Classified};

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Source MAC is multicast or all-zero (never learned, never forwarded, as in the
    /// Linux bridge).
    BadSourceMac,
    /// The destination was learned on the ingress port (for a frame the adjacent switch
    /// reflected, on its source's port): the frame stays on its segment.
    SameSegment,
    /// Nowhere to send it (a flood with no other port).
    NoEgress,
    /// The egress TX ring was full.
    TxRingFull,
    /// The handoff to the worker owning the egress queue was full.
    HandoffFull,
    /// No free UMEM frame for a flood copy or a handoff.
    NoFreeFrame,
    /// The source MAC is not one the downlink may use (anti-spoofing).
    Spoofed,
    /// VEPA or private mode, but no uplink to send the frame to.
    NoUplink,
    /// Private mode: a frame between two local downlinks, reflected by the adjacent
    /// switch, is not delivered.
    PrivateIsolation,
    /// Not in a VLAN the port carries: a tagged frame on an access port, a tag the
    /// trunk does not carry, an untagged frame on a trunk without a native VLAN, a
    /// service (802.1ad) tag.
    Vlan,
    /// No room in front of the frame to push a tag (a driver that left no headroom).
    NoHeadroom,
    /// The egress port is down (no carrier) or has just been removed: the frame is
    /// dropped at once rather than queued until it comes back.
    PortDown,
    /// Addressed to a reserved group address (`01:80:c2:00:00:0x`: STP, pause, LACP,
    /// 802.1X, LLDP, ...) that the bridge's group forward mask does not relay.
    Reserved,
    /// Longer than hairpin carries: more UMEM frames than it joins into one frame
    /// (`MAX_CHAIN`), or more than one where the sockets take no chains (zero-copy, or
    /// a kernel without AF_XDP multi-buffer).
    Oversize,
    /// Received on a port mirror's monitor port, which sends the mirror's copies and
    /// forwards nothing else (counted on that port); or addressed to a station a static
    /// entry puts on one (counted on the ingress port).
    Monitor,

    /// Storm control: a broadcast, multicast or unknown-unicast frame over its class's
    /// limit on the ingress port (`storm_broadcast`, ...).
    Storm,
    /// Ingress policing: over the ingress port's `police_rate` or `police_pps`, on the
    /// workers or the XDP fast path.
    Policed,
    /// The IP source guard (`allow_ip`) refused it: an IP source, an ARP sender or a
    /// neighbour advertisement's target the port may not use, a link-layer address
    /// option or ARP sender MAC other than the frame's source, or a header it cannot
    /// read (`switch::guard`).
    IpSpoofed,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [Self; 19] = [
        Self::Runt,
        Self::BadSourceMac,
        Self::SameSegment,
        Self::NoEgress,
        Self::TxRingFull,
        Self::HandoffFull,
        Self::NoFreeFrame,
        Self::Spoofed,
        Self::NoUplink,
        Self::PrivateIsolation,
        Self::Vlan,
        Self::NoHeadroom,
        Self::PortDown,
        Self::Reserved,
        Self::Oversize,
        Self::Monitor,
        Self::Storm,
        Self::Policed,
        Self::IpSpoofed,
    ];

    /// How many reasons there are.
    pub const COUNT: usize = Self::ALL.len();

    /// The reason's name in counters.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Runt => "runt",
            Self::BadSourceMac => "bad_src_mac",
            Self::SameSegment => "same_segment",
            Self::NoEgress => "no_egress",
            Self::TxRingFull => "tx_ring_full",
            Self::HandoffFull => "handoff_full",
            Self::NoFreeFrame => "no_free_frame",
            Self::Spoofed => "spoofed",
            Self::NoUplink => "no_uplink",
            Self::PrivateIsolation => "private",
            Self::Vlan => "vlan",
            Self::NoHeadroom => "no_headroom",
            Self::PortDown => "port_down",
            Self::Reserved => "reserved",
            Self::Oversize => "oversize",
            Self::Monitor => "monitor_port",
            Self::Storm => "storm",
            Self::Policed => "policed",
            Self::IpSpoofed => "ip_spoofed",
        }
    }
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send it out of one port.
    Forward(PortId),
    /// Send a copy out of each of these ports.
    Flood(PortSet),
    /// Drop it, counted under the reason.
    Drop(DropReason),
}

/// [`decide`](super::decide)'s answer: the action, and the VLAN the frame was found in
/// (which says, with [`VlanTable::retag`](super::vlan::VlanTable::retag), how it leaves
/// each port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What to do.
    pub action: Action,
    /// The frame's VLAN and tag on ingress.
    pub vlan: Classified,
}

impl Verdict {
    pub(super) fn drop(reason: DropReason) -> Self {
        Self {
            action: Action::Drop(reason),
            vlan: Classified::default(),
        }
    }
}
