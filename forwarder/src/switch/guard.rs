//! The IP source guard: a port with an `allow_ip` list may send IP, ARP and neighbour
//! discovery only for the addresses on it (as libvirt's `clean-traffic`, Neutron's ARP
//! spoofing protection and allowed address pairs). [`decide`](super::decide) asks
//! [`IpGuard::check`] before it learns the frame's source, so a refused frame is
//! dropped (`ip_spoofed`) and never learned from.
//!
//! The rules, for a frame from a guarded port, read behind up to two VLAN tags (a frame
//! with more is refused: what it carries cannot be seen):
//!
//! - **IPv4**: the source address is allowed; or it is 0.0.0.0 in a DHCP client's
//!   message (UDP from port 68 to 67, first fragment) or IGMP.
//! - **ARP** (Ethernet/IPv4 only): the sender MAC is the frame's source MAC (which the
//!   port's MAC list, if any, has already allowed), and the sender IP is allowed; or
//!   the sender IP is 0.0.0.0 in a request whose target is allowed (a probe, RFC 5227).
//! - **IPv6**: the source address is allowed, or it is the port's *own link-local
//!   address*: `fe80::/64` with the modified EUI-64 interface identifier of the frame's
//!   source MAC (Neutron allows the same; a station with another link-local address,
//!   RFC 7217's stable-privacy ones say, needs it listed, or `fe80::/64` to allow any).
//!   The unspecified source `::` is allowed only in a neighbour solicitation (DAD,
//!   whose target must then be allowed), a router solicitation or an MLD report.
//! - **Neighbour discovery** (ICMPv6 133 to 136 behind any extension headers): a
//!   neighbour advertisement's target is allowed (or the own link-local address); every
//!   source or target link-layer address option is 8 bytes long and carries the frame's
//!   source MAC. A fragmented ND message is refused (receivers drop those too, RFC
//!   6980). Redirects are checked as IP only.
//! - A header that does not add up (cut short, another version, lengths past the frame,
//!   more than [`MAX_EXTENSION_HEADERS`](crate::wire::ip::MAX_EXTENSION_HEADERS) extension headers, an ND option of length 0) is
//!   refused: a receiver would drop it, and the guard cannot say whose it is.
//! - **Every other EtherType passes untouched** (PPPoE, MPLS, LLDP, ...: the guard does
//!   not look for IP inside them).
//!
//! The XDP fast path applies the IP source rule to the frames it would carry (an LPM
//! trie of the same prefixes) and leaves the rest to the workers:
//! [`IpGuard::fast_path`] is its rule written in Rust, which the tests and the fuzz
//! target hold against [`IpGuard::check`].
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use hairpin_common::csum::{ETH_P_IP, ETH_P_IPV6};

use crate::wire::{
    Mac,
    arp::{self, ArpPacket},
    dot1q,
    ip::{
        Fragment, IPPROTO_ICMPV6, IPPROTO_IGMP, IPPROTO_UDP, Ipv4Packet, Ipv6Packet, upper_layer,
    },
    ndp::{self, NdpMessage},
};

/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// VLAN tags the guard looks behind.
pub const MAX_TAGS: usize = 2;
/// Prefixes one port's `allow_ip` may list.
pub const MAX_ALLOWED_IPS: usize = hairpin_common::guard::MAX_ALLOWED_IPS as usize;

/// An IP prefix: an address and how many of its leading bits count, its other bits
/// zero (`10.0.0.0/24`, `fd00::5/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

/// An IP prefix that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// Not an address, or not `ADDRESS/LENGTH`, or a length the family has not.
    #[error(
        "{0:?} is not an IP prefix (expected an address and its length, e.g. 10.0.0.5/32 or fd00::5/128)"
    )]
    Syntax(String),
    /// Bits set past the length.
    #[error("{given} has bits set past its length: the prefix is {prefix}")]
    HostBits {
        /// As given.
        given: String,
        /// With those bits cleared.
        prefix: IpPrefix,
    },
}

impl IpPrefix {
    /// `addr/len`, refused if `len` is past the family's bits or `addr` has bits set
    /// past it.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(PrefixError::Syntax(format!("{addr}/{len}")));
        }
        let prefix = Self {
            addr: masked(addr, len),
            len,
        };
        if prefix.addr != addr {
            return Err(PrefixError::HostBits {
                given: format!("{addr}/{len}"),
                prefix,
            });
        }
        Ok(prefix)
    }

    /// The prefix of `addr` alone: `/32` or `/128`.
    pub fn host(addr: IpAddr) -> Self {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, len }
    }

    /// Its address (bits past the length zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Its length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `addr` is within it.
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4() && masked(addr, self.len) == self.addr
    }
}

/// `addr` with every bit past the first `len` cleared.
fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(len))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(len))),
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

impl FromStr for IpPrefix {
    type Err = PrefixError;

    /// `ADDRESS/LENGTH`, or an address alone for its host prefix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || PrefixError::Syntax(s.to_owned());
        match s.split_once('/') {
            None => s.parse().map(Self::host).map_err(|_| syntax()),
            Some((addr, len)) => {
                let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
                // Digits only: `u8::from_str` would take a `+`.
                if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let len: u8 = len.parse().map_err(|_| syntax())?;
                Self::new(addr, len).map_err(|e| match e {
                    PrefixError::Syntax(_) => syntax(),
                    PrefixError::HostBits { prefix, .. } => PrefixError::HostBits {
                        given: s.to_owned(),
                        prefix,
                    },
                })
            }
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The link-local address a station derives from `mac` (RFC 4291's modified EUI-64:
/// `fe80::` and the MAC with `ff:fe` in its middle and the universal/local bit
/// flipped).
pub fn link_local_of(mac: Mac) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        a ^ 0x02,
        b,
        c,
        0xff,
        0xfe,
        d,
        e,
        f,
    ])
}

/// Why the guard refused a frame: `hairpin trace`'s words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A header that does not add up.
    Malformed(&'static str),
    /// More VLAN tags than [`MAX_TAGS`].
    StackedTags,
    /// An IP source the port may not use.
    Source(IpAddr),
    /// The unspecified source outside the messages that may have it.
    Unspecified,
    /// An ARP sender MAC other than the frame's source.
    ArpSenderMac(Mac),
    /// An ARP sender IP the port may not use.
    ArpSender(Ipv4Addr),
    /// An ARP probe for an address the port may not use.
    ArpProbe(Ipv4Addr),
    /// A neighbour advertisement, or a DAD solicitation, for an address the port may
    /// not use.
    Target(Ipv6Addr),
    /// A link-layer address option other than the frame's source MAC.
    LinkLayerOption,
    /// A fragmented neighbour discovery message.
    FragmentedNd,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "malformed: {what}"),
            Self::StackedTags => write!(f, "more than {MAX_TAGS} VLAN tags"),
            Self::Source(a) => write!(f, "source {a} is not one the port may use"),
            Self::Unspecified => f.write_str(
                "an unspecified source outside DHCP, IGMP, DAD, router solicitations and MLD",
            ),
            Self::ArpSenderMac(m) => write!(f, "ARP sender MAC {m} is not the frame's source"),
            Self::ArpSender(a) => write!(f, "ARP sender {a} is not one the port may use"),
            Self::ArpProbe(a) => write!(f, "ARP probe for {a}, not one the port may use"),
            Self::Target(a) => write!(f, "ND target {a} is not one the port may use"),
            Self::LinkLayerOption => {
                f.write_str("an ND link-layer address option that is not the frame's source MAC")
            }
            Self::FragmentedNd => f.write_str("a fragmented neighbour discovery message"),
        }
    }
}

/// What the XDP fast path does with a frame from a guarded port it would otherwise
/// carry (`ebpf/src/guard.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastGuard {
    /// Carries it: not IP, or IP from an allowed source with no ICMPv6 or extension
    /// header behind it.
    Pass,
    /// Leaves it to the workers: ARP, ICMPv6 and extension headers, the unspecified
    /// and link-local sources, stacked tags, headers that do not add up.
    Workers,
    /// Drops it (`XDP_DROP`, counted `ip_spoofed`): an IP source that is neither
    /// allowed nor one of the exceptions.
    Drop,
}

/// One port's allowed prefixes, as the workers check them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpGuard {
    /// (network, mask) of each IPv4 prefix.
    v4: Box<[(u32, u32)]>,
    /// (network, mask) of each IPv6 prefix.
    v6: Box<[(u128, u128)]>,
}

impl IpGuard {
    /// The guard of a port allowed `prefixes`; `None` for none (no guard).
    pub fn new(prefixes: &[IpPrefix]) -> Option<Self> {
        if prefixes.is_empty() {
            return None;
        }
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for p in prefixes {
            match p.addr {
                IpAddr::V4(a) => v4.push((u32::from(a), mask32(p.len))),
                IpAddr::V6(a) => v6.push((u128::from(a), mask128(p.len))),
            }
        }
        Some(Self {
            v4: v4.into(),
            v6: v6.into(),
        })
    }

    /// Whether `addr` is within one of the prefixes.
    pub fn allows(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.allows_v4(a),
            IpAddr::V6(a) => self.allows_v6(a),
        }
    }

    fn allows_v4(&self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        self.v4.iter().any(|&(net, mask)| a & mask == net)
    }

    fn allows_v6(&self, a: Ipv6Addr) -> bool {
        let a = u128::from(a);
        self.v6.iter().any(|&(net, mask)| a & mask == net)
    }

    /// Whether the port may send `frame` (an Ethernet frame, runts refused): the rules
    /// of the module doc.
    pub fn check(&self, frame: &[u8]) -> Result<(), Refusal> {
        let Some(src) = frame.get(6..12) else {
            return Err(Refusal::Malformed("shorter than an Ethernet header"));
        };
        let src = Mac([src[0], src[1], src[2], src[3], src[4], src[5]]);
        let (ethertype, l3) = behind_tags(frame)?;
        match ethertype {
            ETH_P_ARP => self.arp(l3, src),
            ETH_P_IP => self.ipv4(l3),
            ETH_P_IPV6 => self.ipv6(l3, src),
            _ => Ok(()),
        }
    }

    fn arp(&self, l3: &[u8], src: Mac) -> Result<(), Refusal> {
        let arp =
            ArpPacket::new_checked(l3).map_err(|_| Refusal::Malformed("ARP packet cut short"))?;
        if !arp.is_ethernet_ipv4() {
            return Err(Refusal::Malformed("ARP for other than Ethernet and IPv4"));
        }
        if arp.sender_mac() != src {
            return Err(Refusal::ArpSenderMac(arp.sender_mac()));
        }
        let sender = arp.sender_ip();
        if self.allows_v4(sender) {
            return Ok(());
        }
        if sender.is_unspecified() && arp.operation() == arp::REQUEST {
            let target = arp.target_ip();
            return if self.allows_v4(target) {
                Ok(())
            } else {
                Err(Refusal::ArpProbe(target))
            };
        }
        Err(Refusal::ArpSender(sender))
    }

    fn ipv4(&self, l3: &[u8]) -> Result<(), Refusal> {
        let ip = Ipv4Packet::new_checked(l3).map_err(|e| Refusal::Malformed(e.0))?;
        let src = ip.src();
        if self.allows_v4(src) {
            return Ok(());
        }
        if !src.is_unspecified() {
            return Err(Refusal::Source(IpAddr::V4(src)));
        }
        let dhcp = ip.protocol() == IPPROTO_UDP
            && ip.fragment_offset() == 0
            && ip.payload().get(..4) == Some(&[0, 68, 0, 67][..]);
        if dhcp || ip.protocol() == IPPROTO_IGMP {
            Ok(())
        } else {
            Err(Refusal::Unspecified)
        }
    }

    fn ipv6(&self, l3: &[u8], src_mac: Mac) -> Result<(), Refusal> {
        let ip = Ipv6Packet::new_checked(l3).map_err(|e| Refusal::Malformed(e.0))?;
        let payload = ip.payload();
        let upper = upper_layer(ip.next_header(), payload).map_err(|e| Refusal::Malformed(e.0))?;
        let own_link_local = link_local_of(src_mac);
        let own = |a: Ipv6Addr| self.allows_v6(a) || a == own_link_local;
        // The ICMPv6 message, where its header is in this packet.
        let icmp = match upper.fragment {
            Fragment::Later => None,
            _ if upper.protocol == IPPROTO_ICMPV6 => Some(&payload[upper.offset..]),
            _ => None,
        };
        let kind = match icmp {
            Some(message) => Some(
                *message
                    .first()
                    .ok_or(Refusal::Malformed("ICMPv6 message cut short"))?,
            ),
            None => None,
        };
        let src = ip.src();
        if !own(src) {
            let exempt = src.is_unspecified()
                && matches!(
                    kind,
                    Some(
                        ndp::NEIGHBOR_SOLICIT
                            | ndp::ROUTER_SOLICIT
                            | ndp::MLD_REPORT
                            | ndp::MLD2_REPORT
                    )
                );
            if src.is_unspecified() && !exempt {
                return Err(Refusal::Unspecified);
            }
            if !exempt {
                return Err(Refusal::Source(IpAddr::V6(src)));
            }
        }
        let (Some(message), Some(kind)) = (icmp, kind) else {
            return Ok(());
        };
        if !ndp::is_nd(kind) {
            return Ok(());
        }
        if upper.fragment == Fragment::First {
            return Err(Refusal::FragmentedNd);
        }
        if kind == ndp::REDIRECT {
            return Ok(());
        }
        let nd = NdpMessage::new_checked(message).map_err(|e| Refusal::Malformed(e.0))?;
        let dad = kind == ndp::NEIGHBOR_SOLICIT && src.is_unspecified();
        if (kind == ndp::NEIGHBOR_ADVERT || dad)
            && let Some(target) = nd.target()
            && !own(target)
        {
            return Err(Refusal::Target(target));
        }
        for option in nd.options() {
            let option = option.map_err(|e| Refusal::Malformed(e.0))?;
            if matches!(option.kind, ndp::SOURCE_LINK_LAYER | ndp::TARGET_LINK_LAYER)
                && option.link_layer_address() != Some(src_mac)
            {
                return Err(Refusal::LinkLayerOption);
            }
        }
        Ok(())
    }

    /// What the XDP fast path does with `frame` from this port, were it to carry it:
    /// the rule `ebpf/src/guard.rs` follows. It never passes a frame [`IpGuard::check`]
    /// refuses, nor drops one it passes.
    pub fn fast_path(&self, frame: &[u8]) -> FastGuard {
        let be16 = |at: usize| {
            frame
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        // One 802.1Q tag at most; anything else tagged is the workers'.
        let (ethertype, l3) = match be16(dot1q::OFFSET) {
            Some(dot1q::TPID_8021Q) => (be16(dot1q::INNER_OFFSET), dot1q::TAGGED_HEADER_LEN),
            other => (other, dot1q::OFFSET + 2),
        };
        let l3 = frame.get(l3..).unwrap_or_default();
        match ethertype {
            Some(ETH_P_IP) => {
                let Ok(ip) = Ipv4Packet::new_checked(l3) else {
                    return FastGuard::Workers;
                };
                match ip.src() {
                    a if self.allows_v4(a) => FastGuard::Pass,
                    a if a.is_unspecified() => FastGuard::Workers,
                    _ => FastGuard::Drop,
                }
            }
            Some(ETH_P_IPV6) => {
                let Ok(ip) = Ipv6Packet::new_checked(l3) else {
                    return FastGuard::Workers;
                };
                match ip.src() {
                    a if self.allows_v6(a) => {
                        if hairpin_common::guard::workers_read(ip.next_header()) {
                            FastGuard::Workers
                        } else {
                            FastGuard::Pass
                        }
                    }
                    a if a.is_unspecified() || a.segments()[0] & 0xffc0 == 0xfe80 => {
                        FastGuard::Workers
                    }
                    _ => FastGuard::Drop,
                }
            }
            Some(ETH_P_ARP) | None => FastGuard::Workers,
            Some(t) if dot1q::is_stacking(t) => FastGuard::Workers,
            Some(_) => FastGuard::Pass,
        }
    }
}

/// The EtherType behind the frame's VLAN tags (at most [`MAX_TAGS`]) and what follows
/// it.
fn behind_tags(frame: &[u8]) -> Result<(u16, &[u8]), Refusal> {
    let mut at = dot1q::OFFSET;
    for _ in 0..=MAX_TAGS {
        let Some(b) = frame.get(at..at + 2) else {
            return Err(Refusal::Malformed("VLAN tag cut short"));
        };
        let ethertype = u16::from_be_bytes([b[0], b[1]]);
        if !dot1q::is_stacking(ethertype) {
            return Ok((ethertype, &frame[at + 2..]));
        }
        at += dot1q::TAG_LEN;
    }
    Err(Refusal::StackedTags)
}

#[cfg(test)]
mod tests;
