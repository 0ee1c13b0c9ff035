//! hairpin's XDP program.
//!
//! For every frame on a port hairpin serves it looks up the port's [`PortConf`] by
//! ingress ifindex, counts the frame in the per-CPU [`QueueStats`] of its (port, queue),
//! and redirects it into the AF_XDP socket bound to that queue in `XSKS`. A frame goes
//! to the kernel's stack (`XDP_PASS`) when its port is not served, when no socket is
//! bound to its queue, or when it is addressed to the host's own MAC on that port (or is an
//! ARP request or IPv6 neighbour solicitation for one of the host's addresses there). A port
//! in `DROP` mode (the benchmark's sink) counts and drops everything.
//!
//! Built by `cargo xtask build` for `bpfel-unknown-none`; the user-space forwarder
//! embeds the object and loads it with aya.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use hairpin_common::{MAX_PORT_QUEUES, MAX_PORTS, PortConf, QueueStats, port_flags, xsk_index};

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

#[xdp]
pub fn hairpin(ctx: XdpContext) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: the map holds plain `PortConf` values that user space updates whole; a
    // concurrent update is a race the kernel resolves per element, never a torn read of
    // freed memory.
    let Some(port) = (unsafe { PORTS.get(&ifindex) }) else {
        return xdp_action::XDP_PASS;
    };
    let queue = ctx.rx_queue_index();
    let Some(index) = xsk_index(port.slot, queue) else {
        return xdp_action::XDP_PASS;
    };
    let len = (ctx.data_end() - ctx.data()) as u64;
    let stats = QUEUE_STATS.get_ptr_mut(index);

    let action = if port.flags & port_flags::DROP != 0 {
        xdp_action::XDP_DROP
    } else if port.flags & port_flags::STEER == 0 || is_for_host(&ctx, port) {
        xdp_action::XDP_PASS
    } else {
        // On a miss (no socket bound at `index`) the helper returns the low bits of the
        // flags: XDP_PASS, so the kernel keeps the frame.
        XSKS.redirect(index, u64::from(xdp_action::XDP_PASS))
            .unwrap_or(xdp_action::XDP_PASS)
    };

    if let Some(stats) = stats {
        // SAFETY: a per-CPU array element is only touched by this CPU while this program
        // runs on it, and `get_ptr_mut` returned a valid, aligned pointer into the map.
        let stats = unsafe { &mut *stats };
        stats.rx_packets += 1;
        stats.rx_bytes += len;
        match action {
            xdp_action::XDP_REDIRECT => stats.steered += 1,
            xdp_action::XDP_DROP => stats.dropped += 1,
            _ => stats.passed += 1,
        }
    }
    action
}

/// The generator's pacing: transmit `GEN_CONFIG[0]` out of every 1024 runs.
#[map]
static GEN_CONFIG: Array<u32> = Array::with_max_entries(1, 0);

/// The generator's per-CPU state: `[0]` the pacing accumulator, `[1]` frames sent.
#[map]
static GEN_STATE: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// The benchmark's traffic generator: sends the test frame back out of the port it is
/// run on. Run with `BPF_PROG_TEST_RUN` in live-frames mode, it transmits without an skb
/// per frame (as xdp-trafficgen does). To offer less than its full rate it transmits
/// `GEN_CONFIG[0]` runs in 1024, evenly spaced (an error accumulator, as Bresenham's line
/// does), and drops the others, so a paced stream has no bursts.
#[xdp]
pub fn hairpin_gen(_ctx: XdpContext) -> u32 {
    let share = GEN_CONFIG.get(0).map_or(GEN_SHARE_ONE, |s| u64::from(*s));
    let (Some(acc), Some(sent)) = (GEN_STATE.get_ptr_mut(0), GEN_STATE.get_ptr_mut(1)) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: per-CPU array elements, touched only by this CPU while this program runs on
    // it; `get_ptr_mut` returned valid, aligned pointers into the map.
    let (acc, sent) = unsafe { (&mut *acc, &mut *sent) };
    *acc += share;
    if *acc >= GEN_SHARE_ONE {
        *acc -= GEN_SHARE_ONE;
        *sent += 1;
        xdp_action::XDP_TX
    } else {
        xdp_action::XDP_DROP
    }
}

/// The generator's share denominator: `GEN_CONFIG[0] == 1024` sends every run.
const GEN_SHARE_ONE: u64 = hairpin_common::GEN_SHARE_ONE as u64;

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
    if unsafe { *(start as *const [u8; MAC_LEN]) } == port.host_mac {
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
