//! hairpin's XDP program.
//!
//! For every frame on a port hairpin serves it looks up the port's [`PortConf`] by
//! ingress ifindex, counts the frame in the per-CPU [`QueueStats`] of its (port, queue),
//! and sends it straight to its egress port when its fate is certain (the fast path,
//! [`fast`]) or else redirects it into the AF_XDP socket bound to that queue in `XSKS`. A frame goes
//! to the kernel's stack (`XDP_PASS`) when its port is not served, when no socket is
//! bound to its queue, or when it is addressed to the host's own MAC on that port (or is an
//! ARP request or IPv6 neighbour solicitation for one of the host's addresses there).
//!
//! The program takes multi-buffer frames (`xdp.frags`): a jumbo frame on a port of MTU
//! 9000 arrives as a first buffer and fragments, and reaches the AF_XDP socket whole (as
//! a chain of descriptors). Every decision here reads the first buffer only; counters
//! count the whole frame.
//!
//! Its floods and the devmap egress program every frame it sends runs through are in
//! [`flood`].
//!
//! The benchmark's (`bench/`) traffic generators and sink are in [`bench`].
//!
//! Built by `cargo xtask build` for `bpfel-unknown-none`; the user-space forwarder
//! embeds the object and loads it with aya.
#![no_std]
#![no_main]
// The fast path's compare-and-swap on the shared MAC table: the BPF target has no
// `AtomicU64::compare_exchange`, but LLVM lowers the intrinsic to BPF_CMPXCHG.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod bench;
mod fast;
mod flood;
mod guard;
mod tap;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_get_buff_len,
    macros::{map, xdp},
    maps::{HashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use hairpin_common::{
    MAX_PORT_QUEUES, MAX_PORTS, PortConf, QueueStats, dot1q::TAGGED_HEADER_LEN, port_flags,
};

#[map]
static PORTS: HashMap<u32, PortConf> = HashMap::with_max_entries(MAX_PORTS, 0);

/// The host's IPv4 addresses on its ports that keep host traffic, as the raw bytes of
/// the address (network order) read as a native `u32`.
#[map]
static HOST_IPV4: HashMap<u32, u8> =
    HashMap::with_max_entries(hairpin_common::MAX_HOST_ADDRESSES, 0);

/// The host's IPv6 addresses on its ports that keep host traffic.
#[map]
static HOST_IPV6: HashMap<[u8; 16], u8> =
    HashMap::with_max_entries(hairpin_common::MAX_HOST_ADDRESSES, 0);

#[map]
static XSKS: XskMap = XskMap::with_max_entries(MAX_PORT_QUEUES, 0);

#[map]
static QUEUE_STATS: PerCpuArray<QueueStats> = PerCpuArray::with_max_entries(MAX_PORT_QUEUES, 0);

/// Length of an Ethernet destination MAC.
const MAC_LEN: usize = 6;

#[xdp(frags)]
pub fn hairpin(ctx: XdpContext) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: the map holds plain `PortConf` values that user space updates whole; a
    // concurrent update is a race the kernel resolves per element, never a torn read of
    // freed memory.
    let Some(port) = (unsafe { PORTS.get(&ifindex) }) else {
        return xdp_action::XDP_PASS;
    };
    let queue = ctx.rx_queue_index();
    let Some(index) = port.queue_index(queue) else {
        return xdp_action::XDP_PASS;
    };
    // The whole frame, fragments included.
    // SAFETY: the helper reads the program's own context.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    let fragmented = len > (ctx.data_end() - ctx.data()) as u64;
    let stats = QUEUE_STATS.get_ptr_mut(index);

    let mut fast = fast::Fast::No;
    let action = if port.flags & port_flags::STEER == 0 || is_for_host(&ctx, port) {
        xdp_action::XDP_PASS
    } else {
        fast = fast::try_forward(&ctx, port.slot, fragmented);
        if let fast::Fast::Flood { vid, tci } = fast {
            // The flood program returns the verdict, counted; here only if it could
            // not be called.
            flood::tail_call(&ctx, index, port.slot, vid, tci, len);
        }
        match fast {
            fast::Fast::Sent { .. } => xdp_action::XDP_REDIRECT,
            fast::Fast::Policed => xdp_action::XDP_DROP,
            fast::Fast::Dropped => xdp_action::XDP_DROP,
            // On a miss (no socket bound at `index`) the helper returns the low bits of
            // the flags: XDP_PASS, so the kernel keeps the frame.
            _ => XSKS
                .redirect(index, u64::from(xdp_action::XDP_PASS))
                .unwrap_or(xdp_action::XDP_PASS),
        }
    };

    if let Some(stats) = stats {
        // SAFETY: a per-CPU array element is only touched by this CPU while this program
        // runs on it, and `get_ptr_mut` returned a valid, aligned pointer into the map.
        let stats = unsafe { &mut *stats };
        stats.rx_packets += 1;
        stats.rx_bytes += len;
        match (action, fast) {
            (_, fast::Fast::Sent { finished }) => {
                stats.fast += 1;
                stats.fast_bytes += len;
                if finished {
                    stats.checksums_finished += 1;
                }
            }
            (xdp_action::XDP_REDIRECT, fast::Fast::Fallback) => {
                stats.fast_fallback += 1;
                stats.steered += 1;
            }
            (xdp_action::XDP_REDIRECT, _) => stats.steered += 1,
            (xdp_action::XDP_DROP, _) => stats.dropped += 1,
            _ => stats.passed += 1,
        }
    }
    action
}

/// The frame's first 18 bytes (both MACs, the EtherType and, when tagged, the tag's TCI
/// and the next EtherType: read them with `dot1q`), or `None` for a shorter frame.
#[inline(always)]
fn head(ctx: &XdpContext) -> Option<&[u8; TAGGED_HEADER_LEN]> {
    let start = ctx.data();
    if start + TAGGED_HEADER_LEN > ctx.data_end() {
        return None;
    }
    // SAFETY: the bounds check above covers the 18 bytes, which stay in place while the
    // program runs (nothing here moves the frame's start before the caller is done).
    Some(unsafe { &*(start as *const [u8; TAGGED_HEADER_LEN]) })
}
/// Whether the frame belongs to the host's own stack, on a port that keeps host traffic:
/// addressed to the host's MAC, an ARP request for one of the host's IPv4 addresses
/// (`HOST_IPV4`), or an IPv6 neighbour solicitation for one of its IPv6 addresses
/// (`HOST_IPV6`), which the host must answer.
#[inline(always)]
fn is_for_host(ctx: &XdpContext, port: &PortConf) -> bool {
    if port.flags & port_flags::PASS_HOST_MAC == 0 {
        return false;
    }
    let start = ctx.data();
    let end = ctx.data_end();
    if start + MAC_LEN > end {
        return false;
    }
    // SAFETY: the bounds check above proves the six bytes at `start` are in the frame.
    let dst = unsafe { *(start as *const [u8; MAC_LEN]) };
    if dst == port.host_mac {
        return true;
    }
    // A reserved group address (LLDP, STP, 802.1X, ...) hairpin does not relay: the
    // host's own protocols (lldpd) get it.
    if let [0x01, 0x80, 0xc2, 0x00, 0x00, last] = dst
        && last < 0x10
        && port.group_fwd_mask & (1 << last) == 0
    {
        return true;
    }
    if start + 14 > end {
        return false;
    }
    // SAFETY: the bounds check above covers the 14-byte Ethernet header.
    let header = unsafe { &*(start as *const [u8; 14]) };
    match u16::from_be_bytes([header[12], header[13]]) {
        ETH_P_ARP if start + ARP_TARGET_END <= end => {
            // SAFETY: the match guard proves the first ARP_TARGET_END bytes are in the frame.
            let frame = unsafe { &*(start as *const [u8; ARP_TARGET_END]) };
            let opcode = u16::from_be_bytes([frame[20], frame[21]]);
            let target = u32::from_ne_bytes([frame[38], frame[39], frame[40], frame[41]]);
            // SAFETY: a plain lookup in a hash map of u8 values that user space writes whole.
            opcode == ARP_REQUEST && unsafe { HOST_IPV4.get(&target) }.is_some()
        }
        ETH_P_IPV6 if start + NS_TARGET_END <= end => {
            // SAFETY: the match guard proves the first NS_TARGET_END bytes are in the frame.
            let frame = unsafe { &*(start as *const [u8; NS_TARGET_END]) };
            // IPv6 next header 58 (ICMPv6), ICMPv6 type 135 (neighbour solicitation).
            if frame[20] != IPPROTO_ICMPV6 || frame[54] != ND_NEIGHBOR_SOLICIT {
                return false;
            }
            let mut target = [0u8; 16];
            target.copy_from_slice(&frame[62..NS_TARGET_END]);
            // SAFETY: a plain lookup in a hash map of u8 values that user space writes whole.
            unsafe { HOST_IPV6.get(&target) }.is_some()
        }
        _ => false,
    }
}

/// EtherType of IPv6.
const ETH_P_IPV6: u16 = 0x86dd;
/// IPv6 next header of ICMPv6.
const IPPROTO_ICMPV6: u8 = 58;
/// ICMPv6 type of a neighbour solicitation.
const ND_NEIGHBOR_SOLICIT: u8 = 135;
/// End of a neighbour solicitation's target address (14 + 40 + 8 + 16).
const NS_TARGET_END: usize = 78;

/// EtherType of ARP.
const ETH_P_ARP: u16 = 0x0806;
/// ARP opcode of a request.
const ARP_REQUEST: u16 = 1;
/// End of an ARP request's target IPv4 address (14-byte Ethernet header + 24).
const ARP_TARGET_END: usize = 42;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any reachable panic path, so this is never entered at run time.
    loop {}
}
