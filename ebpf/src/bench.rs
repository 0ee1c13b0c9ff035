//! The benchmark's programs (`bench/`): its traffic generators and its sink.
//!
//! Two generators share one pacing-and-stamping step ([`stamp`]):
//! - `hairpin_gen`, run with `BPF_PROG_TEST_RUN` in live-frames mode: each run may send
//!   the test frame back out of the port (`XDP_TX`), with no skb per frame (as
//!   xdp-trafficgen does). Kernels that refuse live-frames test runs (as root: EPERM
//!   under some BPF LSM policies) leave the next one.
//! - The fan-out: a frame circulates between the two ends of a veth pair; each time it
//!   arrives, `hairpin_fanout` broadcasts it through the `FANOUT` devmap, whose entries
//!   are the generator's port (many times over) and the pair's other end (once, so it
//!   comes round again). The kernel copies the frame for each entry and runs
//!   `hairpin_gen_egress` on every copy bound for the generator's port, which paces and
//!   stamps it as `hairpin_gen` does a run. No skb, no system call per frame: the
//!   copies leave as xdp_frames, as live frames do.
//!
//! `hairpin_sink` counts what arrives and reads the stamps.
use aya_ebpf::{
    bindings::{BPF_F_BROADCAST, xdp_action},
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, DevMap, PerCpuArray},
    programs::XdpContext,
};
use hairpin_common::{
    GEN_SHARE_ONE, dot1q,
    generator::{self as g, FANOUT_ENTRIES},
    probe, sink_stat,
};

/// The generator's settings, by `hairpin_common::generator`.
#[map]
static GEN_CONFIG: Array<u32> = Array::with_max_entries(g::CONFIG_LEN, 0);

/// The generator's per-CPU state, by `hairpin_common::generator`.
#[map]
static GEN_STATE: PerCpuArray<u64> = PerCpuArray::with_max_entries(g::STATE_LEN, 0);

/// Where the fan-out sends each frame: the generator's port in the first entries (each
/// with `hairpin_gen_egress`), the way back round in the last one used.
#[map]
static FANOUT: DevMap = DevMap::with_max_entries(FANOUT_ENTRIES, 0);

/// What [`stamp`] decided for one frame.
enum Stamp {
    /// Stamped: send it.
    Send,
    /// Paced out, or past the limit: drop it.
    Skip,
    /// Too short for a probe, or no state: a bug.
    Bad,
}

fn config(index: u32) -> u32 {
    GEN_CONFIG.get(index).map_or(0, |v| *v)
}

/// The generators' step for one frame they could send: to offer less than the full rate
/// it sends [`g::SHARE`] frames in 1024, evenly spaced (an error accumulator, as
/// Bresenham's line does), and never more than [`g::LIMIT`]. Every frame it sends gets
/// the configured first 16 bytes, a [`probe`] (its flow: sequence number modulo
/// [`g::FLOWS`], also the UDP source port's offset from 9000; its sequence number; the
/// time it was sent), and with [`g::SOURCES`] a source MAC of its own.
#[inline(always)]
fn stamp(ctx: &XdpContext) -> Stamp {
    let share = u64::from(GEN_CONFIG.get(g::SHARE).map_or(GEN_SHARE_ONE, |s| *s));
    let flows = u64::from(config(g::FLOWS)).max(1);
    let sources = u64::from(config(g::SOURCES));
    let limit = u64::from(config(g::LIMIT));
    let (Some(acc), Some(sent), Some(seq), Some(first), Some(last)) = (
        GEN_STATE.get_ptr_mut(g::ACC),
        GEN_STATE.get_ptr_mut(g::SENT),
        GEN_STATE.get_ptr_mut(g::SEQ),
        GEN_STATE.get_ptr_mut(g::FIRST_NS),
        GEN_STATE.get_ptr_mut(g::LAST_NS),
    ) else {
        return Stamp::Bad;
    };
    // SAFETY: per-CPU array elements, touched only by this CPU while this program runs on
    // it; `get_ptr_mut` returned valid, aligned pointers into the map.
    let (acc, sent, seq, first, last) =
        unsafe { (&mut *acc, &mut *sent, &mut *seq, &mut *first, &mut *last) };
    if limit != 0 && *sent >= limit {
        return Stamp::Skip;
    }
    *acc += share;
    if *acc < u64::from(GEN_SHARE_ONE) {
        return Stamp::Skip;
    }
    *acc -= u64::from(GEN_SHARE_ONE);
    let start = ctx.data();
    if start + probe::OFFSET + probe::LEN > ctx.data_end() {
        return Stamp::Bad;
    }
    // In live-frames mode a page comes back to the generator with whatever its receivers
    // did to it, and a forwarder that pushes an 802.1Q tag in place (hairpin's fast path)
    // moves the MACs over the frame's first bytes: they are written again every time.
    let mut head = [0u8; 16];
    for i in 0..4 {
        let word = config(g::HEAD + i as u32);
        head[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
    }
    if head != [0; 16] {
        // SAFETY: the bounds check above covers the frame's first 16 bytes.
        unsafe { *(start as *mut [u8; 16]) = head };
    }
    let flow = (*seq % flows) as u16;
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut probe = [0u8; probe::LEN];
    probe[..2].copy_from_slice(&probe::MAGIC.to_le_bytes());
    probe[2..4].copy_from_slice(&flow.to_le_bytes());
    probe[4..8].copy_from_slice(&(*seq as u32).to_le_bytes());
    probe[8..].copy_from_slice(&now.to_le_bytes());
    // SAFETY: the bounds check above proves the probe and the UDP source port (bytes
    // 34..36) lie inside the frame, which this program may write.
    unsafe {
        *((start + probe::OFFSET) as *mut [u8; probe::LEN]) = probe;
        *((start + 34) as *mut [u8; 2]) = (9000 + flow).to_be_bytes();
    }
    if sources > 0 {
        let index = (*seq % sources) as u32;
        let [_, a, b, c] = index.to_be_bytes();
        // SAFETY: bytes 9..12, the end of the source MAC, lie inside the frame (checked
        // above).
        unsafe { *((start + 9) as *mut [u8; 3]) = [a, b, c] };
    }
    if *sent == 0 {
        *first = now;
    }
    *last = now;
    *seq += 1;
    *sent += 1;
    Stamp::Send
}

/// The live-frames generator: sends the test frame back out of the port it is run on,
/// as [`stamp`] decides.
#[xdp]
pub fn hairpin_gen(ctx: XdpContext) -> u32 {
    match stamp(&ctx) {
        Stamp::Send => xdp_action::XDP_TX,
        Stamp::Skip => xdp_action::XDP_DROP,
        Stamp::Bad => xdp_action::XDP_ABORTED,
    }
}

/// The fan-out generator's turn: the circulating frame arrived; unless told to stop (or
/// the limit is reached), copy it to every `FANOUT` entry: the generator's port many
/// times, and back round once.
#[xdp]
pub fn hairpin_fanout(_ctx: XdpContext) -> u32 {
    let limit = u64::from(config(g::LIMIT));
    let sent = GEN_STATE.get(g::SENT).map_or(0, |s| *s);
    if config(g::STOP) != 0 || (limit != 0 && sent >= limit) {
        bump(g::ENDED);
        return xdp_action::XDP_DROP;
    }
    bump(g::TURNS);
    // The key is ignored with BPF_F_BROADCAST: every entry gets the frame.
    FANOUT
        .redirect(0, u64::from(BPF_F_BROADCAST))
        .unwrap_or(xdp_action::XDP_ABORTED)
}

/// The fan-out's egress program, on each copy bound for the generator's port.
#[xdp(map = "devmap")]
pub fn hairpin_gen_egress(ctx: XdpContext) -> u32 {
    match stamp(&ctx) {
        Stamp::Send => xdp_action::XDP_PASS,
        Stamp::Skip => xdp_action::XDP_DROP,
        Stamp::Bad => xdp_action::XDP_ABORTED,
    }
}

/// Adds one to the generator's per-CPU state word `index`.
#[inline(always)]
fn bump(index: u32) {
    if let Some(c) = GEN_STATE.get_ptr_mut(index) {
        // SAFETY: a per-CPU element, touched only by this CPU while this program runs.
        unsafe { *c += 1 };
    }
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
