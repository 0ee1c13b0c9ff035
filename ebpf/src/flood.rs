//! The fast path's floods (`hairpin_common::flood`): the flood program, the flood
//! domains, and the devmap egress program that every copy the fast path sends runs
//! through.
//!
//! When the fast path finds a broadcast, multicast or unknown unicast frame from a source
//! learned on its ingress port in a VEB ([`fast::Fast::Flood`]), the XDP program tail-calls
//! [`hairpin_flood`] (a program of its own, which the verifier walks apart from the
//! unicast path's). It floods the frame in the kernel when the VLAN's flood domain holds
//! every port the workers would send it to: one `bpf_redirect_map` with
//! `BPF_F_BROADCAST` over the domain, and the kernel copies the frame for every port in
//! it (less the ingress, with `BPF_F_EXCLUDE_INGRESS`, unless it has hairpin on) once
//! the program returns. Else, and for the frames it does not take (a port in generic
//! mode, a partial checksum, no room for a tag), the workers get the frame whole. It
//! polices, and applies storm control, as the workers would.
//!
//! A frame flooded tagged (some port takes the VLAN tagged) has its tag popped, per copy,
//! by [`hairpin_egress`] where the port takes the VLAN untagged.
//!
//! The kernel runs the devmap program of the first frame queued to a device in a NAPI
//! poll for every frame queued to it in that poll, so `EGRESS`'s unicast entries carry
//! the same program as the domains': a frame the unicast fast path retagged never has
//! a tag of its egress port's untagged VLAN, which the program leaves alone.
use aya_ebpf::{
    bindings::{BPF_F_BROADCAST, BPF_F_EXCLUDE_INGRESS, xdp_action},
    macros::{map, xdp},
    maps::{Array, DevMapHash, PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use hairpin_common::{
    EGRESS_INFO_ENTRIES,
    dot1q::{OFFSET, TCI_OFFSET, TPID_8021Q, VID_MASK},
    flood::{self, MAX_MEMBERS, TAGGED},
    meter, slot_flags,
};

use crate::{
    QUEUE_STATS, XSKS,
    fast::{self, NO_TCI, Retag},
    tap,
};

/// What the XDP program hands the flood program, per CPU (a tail call passes nothing
/// but the frame).
#[derive(Clone, Copy)]
struct Args {
    /// The frame's entry in the per-queue maps (`XSKS`, `QUEUE_STATS`).
    index: u32,
    /// Its ingress port.
    slot: u32,
    /// Its VLAN (0: VLAN-unaware) and tag control information ([`NO_TCI`]: untagged).
    vid: u32,
    tci: u32,
    /// Its length, every buffer counted.
    len: u64,
}

#[map]
static FLOOD_ARGS: PerCpuArray<Args> = PerCpuArray::with_max_entries(1, 0);

/// Entry 0: [`hairpin_flood`] (user space puts it there).
#[map]
static FLOOD_PROGRAM: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Hands the frame of `ctx` (`Fast::Flood` of VLAN `vid` with `tci`, received on port
/// `slot` at per-queue entry `index`, `len` bytes) to [`hairpin_flood`], which returns
/// the verdict itself; returns only when that cannot be done (the workers then take
/// the frame).
#[inline(always)]
pub fn tail_call(ctx: &XdpContext, index: u32, slot: u32, vid: u16, tci: u32, len: u64) {
    let Some(args) = FLOOD_ARGS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU element, touched only by this CPU while this program (and the
    // one it calls) runs.
    unsafe {
        *args = Args {
            index,
            slot,
            vid: u32::from(vid),
            tci,
            len,
        };
    }
    // SAFETY: a tail call to a program of the same type; on failure nothing happened.
    let _ = unsafe { FLOOD_PROGRAM.tail_call(ctx, 0) };
}

/// What [`flood`] decided.
enum Flooded {
    /// Flooded: `XDP_REDIRECT`.
    Sent,
    /// Dropped by policing or storm control, counted: `XDP_DROP`.
    Dropped,
    /// The workers': the domain is not whole (`fallback`), or a frame this program
    /// does not take.
    Workers { fallback: bool },
}

/// The flood program, tail-called by the XDP program for a frame to flood
/// ([`tail_call`]): it floods the frame or gives it to the workers, and counts it in
/// `QUEUE_STATS` as the XDP program would have.
#[xdp(frags)]
pub fn hairpin_flood(ctx: XdpContext) -> u32 {
    let Some(&args) = FLOOD_ARGS.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let flooded = flood(&ctx, &args);
    let action = match flooded {
        Flooded::Sent => xdp_action::XDP_REDIRECT,
        Flooded::Dropped => xdp_action::XDP_DROP,
        Flooded::Workers { .. } => XSKS
            .redirect(args.index, u64::from(xdp_action::XDP_PASS))
            .unwrap_or(xdp_action::XDP_PASS),
    };
    if let Some(stats) = QUEUE_STATS.get_ptr_mut(args.index) {
        // SAFETY: a per-CPU element, touched only by this CPU while this program runs.
        let stats = unsafe { &mut *stats };
        stats.rx_packets += 1;
        stats.rx_bytes += args.len;
        match (action, flooded) {
            (_, Flooded::Sent) => {
                stats.fast += 1;
                stats.fast_bytes += args.len;
                stats.fast_flood += 1;
            }
            (xdp_action::XDP_REDIRECT, Flooded::Workers { fallback }) => {
                stats.steered += 1;
                if fallback {
                    stats.fast_fallback += 1;
                }
            }
            (xdp_action::XDP_DROP, _) => stats.dropped += 1,
            _ => stats.passed += 1,
        }
    }
    action
}

/// Floods the frame of `ctx` as `args` say, if the kernel can.
#[inline(always)]
fn flood(ctx: &XdpContext, args: &Args) -> Flooded {
    let slot = args.slot;
    let Some(ingress) = fast::SLOT_CONF.get(slot) else {
        return Flooded::Workers { fallback: false };
    };
    // In generic mode the skb's copies would share its data (and its partial checksum):
    // the workers'.
    if ingress.flags & slot_flags::GENERIC != 0 {
        return Flooded::Workers { fallback: false };
    }
    let hairpin = ingress.flags & slot_flags::HAIRPIN != 0;
    let vid = args.vid as u16;
    let word = domain_entry(vid);
    let Some(domain) = flood::domain_of(word) else {
        return Flooded::Workers { fallback: true };
    };
    if !flood::complete(word, slot, hairpin) {
        return Flooded::Workers { fallback: true };
    }
    // A checksum an offload left partial: the workers finish it (broadcast and
    // multicast rarely carry one; unknown unicast only until its station is learned).
    if !matches!(fast::partial(ctx), fast::Partial::No) {
        return Flooded::Workers { fallback: false };
    }
    let Some(head) = crate::head(ctx) else {
        return Flooded::Workers { fallback: false };
    };
    let class = if head[..6] == [0xff; 6] {
        meter::BROADCAST
    } else if head[0] & 1 != 0 {
        meter::MULTICAST
    } else {
        meter::UNKNOWN_UNICAST
    };
    // Flooded in the form the domain needs: tagged if any port takes the VLAN tagged
    // (the egress program pops the tag for the others), a priority tag's VLAN filled
    // in (popped where the port takes the VLAN untagged).
    let retag = match args.tci {
        _ if vid == 0 => Retag::Keep,
        NO_TCI if word & TAGGED != 0 => Retag::Push(vid),
        NO_TCI => Retag::Keep,
        t if t as u16 & VID_MASK == 0 => Retag::Rewrite(t as u16 | vid),
        _ => Retag::Keep,
    };
    if !fast::police(ctx, slot, ingress) {
        if tap::wants(slot, tap::IN) {
            tap::take(ctx, slot, tap::IN, tap::POLICED);
        }
        return Flooded::Dropped;
    }
    // After policing, as the workers' (a policed frame charges no storm meter).
    if !fast::storm_control(ctx, slot, ingress, class) {
        if tap::wants(slot, tap::IN) {
            tap::take(ctx, slot, tap::IN, tap::STORM);
        }
        return Flooded::Dropped;
    }
    if tap::wants(slot, tap::IN) {
        tap::take(ctx, slot, tap::IN, 0);
    }
    if !redirect(domain, hairpin) {
        return Flooded::Workers { fallback: true };
    }
    // The redirect takes effect when the program returns; on a failure here the
    // workers' redirect replaces it.
    if !fast::apply(ctx, retag) {
        return Flooded::Workers { fallback: true };
    }
    Flooded::Sent
}

/// By ifindex: the slot of the port a copy leaves by and the VLAN it untags
/// (`hairpin_common::egress_info`).
#[map]
static EGRESS_INFO: Array<u32> = Array::with_max_entries(EGRESS_INFO_ENTRIES, 0);

/// By VLAN ID: the VLAN's flood domain ([`flood::entry`]).
#[map]
static FLOOD_VLAN: Array<u32> = Array::with_max_entries(flood::VLANS, 0);

#[map]
static FLOODS_0: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_1: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_2: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_3: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_4: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_5: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_6: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_7: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_8: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_9: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_10: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_11: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_12: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_13: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_14: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);
#[map]
static FLOODS_15: DevMapHash = DevMapHash::with_max_entries(MAX_MEMBERS, 0);

const _: () = assert!(flood::DOMAINS == 16, "one map above per domain");

/// `vid`'s `FLOOD_VLAN` word (0: the workers flood it).
#[inline(always)]
pub fn domain_entry(vid: u16) -> u32 {
    FLOOD_VLAN.get(u32::from(vid)).map_or(0, |e| *e)
}

/// Floods the frame over domain `domain` once the program returns `XDP_REDIRECT`, to
/// every port in it but the ingress (`to_ingress`: it too); false for no such domain.
#[inline(always)]
fn redirect(domain: u32, to_ingress: bool) -> bool {
    let flags = if to_ingress {
        u64::from(BPF_F_BROADCAST)
    } else {
        u64::from(BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS)
    };
    let map = match domain {
        0 => &FLOODS_0,
        1 => &FLOODS_1,
        2 => &FLOODS_2,
        3 => &FLOODS_3,
        4 => &FLOODS_4,
        5 => &FLOODS_5,
        6 => &FLOODS_6,
        7 => &FLOODS_7,
        8 => &FLOODS_8,
        9 => &FLOODS_9,
        10 => &FLOODS_10,
        11 => &FLOODS_11,
        12 => &FLOODS_12,
        13 => &FLOODS_13,
        14 => &FLOODS_14,
        15 => &FLOODS_15,
        _ => return false,
    };
    map.redirect(0, flags).is_ok()
}

/// The egress program on every entry of `EGRESS` and of the flood domains: run by the
/// kernel on each copy just before the egress device sends it. It pops a tag of the
/// egress port's untagged VLAN (a flooded copy; never a unicast frame, which the fast
/// path retagged for its port already), then counts the copy in `FAST_TX` and taps it.
#[xdp(frags, map = "devmap")]
pub fn hairpin_egress(ctx: XdpContext) -> u32 {
    // SAFETY: `ctx.ctx` is the program's own `xdp_md`; devmap programs may read
    // `egress_ifindex`.
    let ifindex = unsafe { (*ctx.ctx).egress_ifindex };
    // The port's slot and the VLAN it untags, in one array read (it runs for every
    // frame the fast path sends); a port of a higher ifindex from the port map.
    let info = EGRESS_INFO.get(ifindex).map_or(0, |i| *i);
    let (slot, pop) = if info != 0 {
        ((info & 0xffff) - 1, (info >> 16) as u16)
    } else {
        // SAFETY: as for the ingress program's lookup of its port.
        let Some(port) = (unsafe { crate::PORTS.get(&ifindex) }) else {
            return xdp_action::XDP_PASS;
        };
        let pop = fast::SLOT_CONF
            .get(port.slot)
            .filter(|c| c.flags & slot_flags::UNTAG != 0)
            .map_or(0, |c| c.pvid);
        (port.slot, pop)
    };
    if pop != 0 && tagged_with(&ctx, pop) && !fast::apply(&ctx, Retag::Pop) {
        return xdp_action::XDP_DROP;
    }
    fast::count_tx(&ctx, slot);
    if tap::wants(slot, tap::OUT) {
        tap::take(&ctx, slot, tap::OUT, 0);
    }
    xdp_action::XDP_PASS
}

/// Whether the frame's first 16 bytes carry an 802.1Q tag of VLAN `pvid`.
#[inline(always)]
pub fn tagged_with(ctx: &XdpContext, pvid: u16) -> bool {
    let Some(head) = crate::head(ctx) else {
        return false;
    };
    let be16 = |at: usize| u16::from_be_bytes([head[at], head[at + 1]]);
    be16(OFFSET) == TPID_8021Q && be16(TCI_OFFSET) & VID_MASK == pvid
}
