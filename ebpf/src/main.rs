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
//! Two more programs serve the benchmark (`bench/`): `hairpin_gen`, its traffic
//! generator, and `hairpin_sink`, its counting, latency-measuring sink.
//!
//! Built by `cargo xtask build` for `bpfel-unknown-none`; the user-space forwarder
//! embeds the object and loads it with aya.
#![no_std]
#![no_main]
// The fast path's compare-and-swap on the shared MAC table: the BPF target has no
// `AtomicU64::compare_exchange`, but LLVM lowers the intrinsic to BPF_CMPXCHG.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod fast;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_ns, bpf_xdp_get_buff_len},
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use hairpin_common::{
    MAX_PORT_QUEUES, MAX_PORTS, PortConf, QueueStats, dot1q, port_flags, probe, sink_stat,
    xsk_index,
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
    let Some(index) = xsk_index(port.slot, queue) else {
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
        fast = fast::try_forward(&ctx, port.slot, queue, fragmented);
        if matches!(fast, fast::Fast::Sent) {
            xdp_action::XDP_REDIRECT
        } else {
            // On a miss (no socket bound at `index`) the helper returns the low bits of
            // the flags: XDP_PASS, so the kernel keeps the frame.
            XSKS.redirect(index, u64::from(xdp_action::XDP_PASS))
                .unwrap_or(xdp_action::XDP_PASS)
        }
    };

    if let Some(stats) = stats {
        // SAFETY: a per-CPU array element is only touched by this CPU while this program
        // runs on it, and `get_ptr_mut` returned a valid, aligned pointer into the map.
        let stats = unsafe { &mut *stats };
        stats.rx_packets += 1;
        stats.rx_bytes += len;
        match (action, fast) {
            (_, fast::Fast::Sent) => {
                stats.fast += 1;
                stats.fast_bytes += len;
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

/// The generator's settings: `[0]` transmit this many runs out of every 1024; `[1]`
/// spread frames over this many flows (0 or 1: one); `[2]` give frames this many
/// distinct source MACs, the frame's own with its last three bytes replaced by the
/// sequence number modulo the count (0: the frame's own only); `[3..7]` the frame's
/// first 16 bytes, which it writes into every frame it sends (all zero: none).
#[map]
static GEN_CONFIG: Array<u32> = Array::with_max_entries(7, 0);

/// The generator's per-CPU state: `[0]` the pacing accumulator, `[1]` frames sent, `[2]`
/// the next sequence number.
#[map]
static GEN_STATE: PerCpuArray<u64> = PerCpuArray::with_max_entries(3, 0);

/// The benchmark's traffic generator: sends the test frame back out of the port it is
/// run on. Run with `BPF_PROG_TEST_RUN` in live-frames mode, it transmits without an skb
/// per frame (as xdp-trafficgen does). To offer less than its full rate it transmits
/// `GEN_CONFIG[0]` runs in 1024, evenly spaced (an error accumulator, as Bresenham's line
/// does), and drops the others, so a paced stream has no bursts. Every frame it sends
/// carries a [`probe`]: its flow (sequence number modulo `GEN_CONFIG[1]`, also the UDP
/// source port's offset from 9000), its sequence number and the time it was sent.
#[xdp]
pub fn hairpin_gen(ctx: XdpContext) -> u32 {
    let share = GEN_CONFIG.get(0).map_or(GEN_SHARE_ONE, |s| u64::from(*s));
    let flows = GEN_CONFIG.get(1).map_or(1, |f| u64::from(*f)).max(1);
    let sources = GEN_CONFIG.get(2).map_or(0, |n| u64::from(*n));
    let (Some(acc), Some(sent), Some(seq)) = (
        GEN_STATE.get_ptr_mut(0),
        GEN_STATE.get_ptr_mut(1),
        GEN_STATE.get_ptr_mut(2),
    ) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: per-CPU array elements, touched only by this CPU while this program runs on
    // it; `get_ptr_mut` returned valid, aligned pointers into the map.
    let (acc, sent, seq) = unsafe { (&mut *acc, &mut *sent, &mut *seq) };
    *acc += share;
    if *acc < GEN_SHARE_ONE {
        return xdp_action::XDP_DROP;
    }
    *acc -= GEN_SHARE_ONE;
    let start = ctx.data();
    if start + probe::OFFSET + probe::LEN > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    // In live-frames mode a page comes back to the generator with whatever its receivers
    // did to it, and a forwarder that pushes an 802.1Q tag in place (hairpin's fast path)
    // moves the MACs over the frame's first bytes: they are written again every time.
    let mut head = [0u8; 16];
    for i in 0..4 {
        let word = GEN_CONFIG.get(3 + i as u32).map_or(0, |w| *w);
        head[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
    }
    if head != [0; 16] {
        // SAFETY: the bounds check above covers the frame's first 16 bytes.
        unsafe { *(start as *mut [u8; 16]) = head };
    }
    let flow = (*seq % flows) as u16;
    let mut stamp = [0u8; probe::LEN];
    stamp[..2].copy_from_slice(&probe::MAGIC.to_le_bytes());
    stamp[2..4].copy_from_slice(&flow.to_le_bytes());
    stamp[4..8].copy_from_slice(&(*seq as u32).to_le_bytes());
    // SAFETY: a helper without arguments.
    stamp[8..].copy_from_slice(&unsafe { bpf_ktime_get_ns() }.to_le_bytes());
    // SAFETY: the bounds check above proves the probe and the UDP source port (bytes
    // 34..36) lie inside the frame, which this program may write.
    unsafe {
        *((start + probe::OFFSET) as *mut [u8; probe::LEN]) = stamp;
        *((start + 34) as *mut [u8; 2]) = (9000 + flow).to_be_bytes();
    }
    if sources > 0 {
        let index = (*seq % sources) as u32;
        let [_, a, b, c] = index.to_be_bytes();
        // SAFETY: bytes 9..12, the end of the source MAC, lie inside the frame (checked
        // above).
        unsafe { *((start + 9) as *mut [u8; 3]) = [a, b, c] };
    }
    *seq += 1;
    *sent += 1;
    xdp_action::XDP_TX
}

/// The sink's per-CPU counters, by `hairpin_common::sink_stat`.
#[map]
static SINK_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(sink_stat::COUNT, 0);

/// The sink's per-CPU latency histogram, by `probe::bucket`.
#[map]
static SINK_LATENCY: PerCpuArray<u64> = PerCpuArray::with_max_entries(probe::LATENCY_BUCKETS, 0);

/// Per flow, one more than the highest sequence number the sink has seen (0: none).
/// Shared by CPUs with plain loads and stores: exact while the sink runs on one CPU at
/// a time, as a veth's NAPI does.
#[map]
static SINK_FLOWS: Array<u64> = Array::with_max_entries(probe::MAX_FLOWS, 0);

/// The benchmark's sink: counts every frame, and for a frame with the generator's
/// [`probe`] (untagged, or under one 802.1Q tag) records its one-way latency (same host,
/// same clock) and whether it arrived after a later frame of its flow; then drops it.
/// Jumbo frames too (`xdp.frags`): it reads the first buffer only.
#[xdp(frags)]
pub fn hairpin_sink(ctx: XdpContext) -> u32 {
    count(sink_stat::FRAMES);
    let start = ctx.data();
    let end = ctx.data_end();
    if start + 14 > end {
        return xdp_action::XDP_DROP;
    }
    // SAFETY: the bounds check above covers the Ethernet header.
    let header = unsafe { &*(start as *const [u8; 14]) };
    let at = if u16::from_be_bytes([header[12], header[13]]) == dot1q::TPID_8021Q {
        start + probe::OFFSET + dot1q::TAG_LEN
    } else {
        start + probe::OFFSET
    };
    if at + probe::LEN > end {
        return xdp_action::XDP_DROP;
    }
    // SAFETY: the bounds check above covers the probe.
    let stamp = unsafe { *(at as *const [u8; probe::LEN]) };
    if u16::from_le_bytes([stamp[0], stamp[1]]) != probe::MAGIC {
        return xdp_action::XDP_DROP;
    }
    count(sink_stat::PROBED);
    let flow = u32::from(u16::from_le_bytes([stamp[2], stamp[3]]));
    let seq = u64::from(u32::from_le_bytes([stamp[4], stamp[5], stamp[6], stamp[7]]));
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&stamp[8..]);
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let latency = now.saturating_sub(u64::from_le_bytes(sent));
    if let Some(bucket) = SINK_LATENCY.get_ptr_mut(probe::bucket(latency)) {
        // SAFETY: a per-CPU element, touched only by this CPU while this program runs.
        unsafe { *bucket += 1 };
    }
    if let Some(last) = SINK_FLOWS.get_ptr_mut(flow) {
        // SAFETY: a valid element of the array; see the map's note on concurrency.
        let last = unsafe { &mut *last };
        if seq + 1 <= *last {
            count(sink_stat::REORDERED);
        } else {
            *last = seq + 1;
        }
    }
    xdp_action::XDP_DROP
}

/// Adds one to the sink's per-CPU counter `index`.
#[inline(always)]
fn count(index: u32) {
    if let Some(c) = SINK_STATS.get_ptr_mut(index) {
        // SAFETY: a per-CPU element, touched only by this CPU while this program runs.
        unsafe { *c += 1 };
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
