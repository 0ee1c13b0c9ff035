//! The fast path: frames whose fate is already certain go straight to their egress port
//! (`bpf_redirect_map` over `EGRESS`), without a trip through the AF_XDP workers.
//!
//! It reads the workers' own MAC table (the `FDB` map, which hairpin maps into its
//! memory; layout in `hairpin_common::fdb`), so it never disagrees with them. A frame
//! takes it only when all of this holds; anything else goes to the workers as before:
//!
//! - a known unicast destination; or, in a VEB with floods on (`FastConf::floods`),
//!   broadcast, multicast, relayed reserved group addresses and unknown unicast, which
//!   the flood program sends to their VLAN's flood domain ([`crate::flood`]);
//! - the frame's VLAN is clear: untagged or priority-tagged on a port with an untagged
//!   VLAN, or tagged with a VLAN of a trunk (no 802.1ad or stacked tags);
//! - its source is a learnable address, allowed by the port's anti-spoofing list, and
//!   already in the table *on this very port* (so learning and moves stay with the
//!   workers); its stamp is refreshed here, so a station seen only here does not age;
//! - the mode's rule gives one egress port, which carries the VLAN: `veb` the
//!   destination's port (not the ingress unless it has hairpin on); `vepa`/`private` a
//!   downlink's frames to the uplink, the uplink's to the destination's downlink;
//!   `passthru` the other port;
//! - the egress port is in `EGRESS` (up, and able to take redirected frames); when it is
//!   not, the frame goes to the workers, counted as `fast_fallback`;
//! - the frame is in one buffer: a jumbo frame of several (multi-buffer XDP) goes to the
//!   workers, since not every driver takes them redirected (`NDO_XMIT_SG`);
//! - a TCP or UDP segment whose checksum an offload left partial
//!   (`hairpin_common::csum`) is finished here, written once the redirect is sure; the
//!   workers take those this program does not read far enough to finish (IPv4 with
//!   options, segments longer than [`MAX_SEGMENT`] or not within the frame) and those
//!   from a port in generic XDP mode (still the sender's `CHECKSUM_PARTIAL` skb, which
//!   the egress would finish a second time);
//! - on a port with an IP source guard (`IP_GUARD`), an IPv4 or IPv6 source the port
//!   may not use is dropped here (`XDP_DROP`, counted for `ip_spoofed`), and ARP,
//!   ICMPv6 and the guard's exceptions go to the workers ([`guard`]).
//!
//! The 802.1Q tag is pushed, popped or rewritten here as the workers would
//! (`switch::vlan`), with `bpf_xdp_adjust_head`. A tapped port's frames are copied for
//! its captures as received and as sent ([`crate::tap`]).
//!
//! A policed port's frames ([`police`]) are metered here, once the redirect is sure: in
//! the `METERS` map the workers share (`hairpin_common::meter`), so a frame is policed
//! by whichever path carries it, exactly once. Over the limit: `XDP_DROP`, counted in
//! `METER_DROPS`. Storm control too, for the broadcast, multicast and unknown unicast it
//! carries (`STORM_DROPS`).
use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd};

use crate::{guard, tap};
use aya_ebpf::{
    helpers::{
        bpf_csum_diff, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns, bpf_xdp_adjust_head,
        bpf_xdp_load_bytes,
    },
    macros::map,
    maps::{Array, DevMapHash, HashMap, PerCpuArray},
    programs::XdpContext,
};
use hairpin_common::{
    FastConf, FastTx, MAX_PORTS, NO_SLOT, SlotConf, allowed_key,
    csum::{self, IPV4_LEN, IPV6_LEN},
    dot1q::{
        self, INNER_OFFSET, OFFSET, TAG_LEN, TAGGED_HEADER_LEN, TCI_OFFSET, TPID_8021AD,
        TPID_8021Q, TPID_QINQ_LEGACY, VID_MASK,
    },
    fast_mode,
    fdb::{self, FLAG_STATIC},
    meter::{self, Meter},
    slot_flags,
};

/// The MAC table, one element per bucket; user space sets its size at load.
#[map]
static FDB: Array<fdb::Bucket> =
    Array::with_max_entries(1, aya_ebpf::bindings::BPF_F_MMAPABLE as u32);

#[map]
pub static FAST_CONF: Array<FastConf> = Array::with_max_entries(1, 0);

#[map]
pub static SLOT_CONF: Array<SlotConf> = Array::with_max_entries(MAX_PORTS, 0);

#[map]
static EGRESS: DevMapHash = DevMapHash::with_max_entries(MAX_PORTS, 0);

/// 16 sources per port of a full bridge (more where fewer ports list them).
#[map]
static ALLOWED: HashMap<u64, u8> = HashMap::with_max_entries(16_384, 0);

#[map]
static FAST_TX: PerCpuArray<FastTx> = PerCpuArray::with_max_entries(MAX_PORTS, 0);

/// The meters' state, shared with the workers (hairpin maps it into its memory).
#[map]
static METERS: Array<u64> =
    Array::with_max_entries(meter::ENTRIES, aya_ebpf::bindings::BPF_F_MMAPABLE as u32);

/// By port slot: what policing dropped here.
#[map]
static METER_DROPS: PerCpuArray<meter::Dropped> = PerCpuArray::with_max_entries(MAX_PORTS, 0);

/// By port slot: what storm control dropped here.
#[map]
static STORM_DROPS: PerCpuArray<meter::Dropped> = PerCpuArray::with_max_entries(MAX_PORTS, 0);

/// [`Fast::Flood`]'s `tci` of an untagged frame.
pub const NO_TCI: u32 = u32::MAX;

/// Compare-and-swap attempts on a meter before a frame is refused (other CPUs kept
/// winning: the meter is busy, and refusing never lets more than the rate through).
const METER_TRIES: usize = 4;

/// What the fast path decided.
pub enum Fast {
    /// Not for the fast path: the workers decide.
    No,
    /// Sent to its egress port, counted: return `XDP_REDIRECT`. `finished`: its partial
    /// checksum was finished on the way.
    Sent { finished: bool },
    /// Broadcast, multicast or unknown unicast from a known source, in VLAN `vid` (0:
    /// VLAN-unaware) with the tag control information `tci` (or [`NO_TCI`]): for the
    /// flood program ([`crate::flood`]).
    Flood { vid: u16, tci: u32 },
    /// Its egress port takes no redirected frames: the workers get it.
    Fallback,
    /// Over its port's policing limit: return `XDP_DROP` (counted in `METER_DROPS`).
    Policed,
    /// The port's IP source guard refused it, counted ([`guard`]): return `XDP_DROP`.
    Dropped,
}

/// What a frame's tag needs on its way out.
#[derive(Clone, Copy)]
pub enum Retag {
    Keep,
    Push(u16),
    Pop,
    Rewrite(u16),
}

/// Tries the fast path for the frame in `ctx`, received on port `slot`; `fragmented`:
/// it has more buffers than the first.
#[inline(always)]
pub fn try_forward(ctx: &XdpContext, slot: u32, fragmented: bool) -> Fast {
    let Some(conf) = FAST_CONF.get(0) else {
        return Fast::No;
    };
    if conf.mode == fast_mode::OFF || fragmented {
        return Fast::No;
    }
    let Some(ingress) = SLOT_CONF.get(slot) else {
        return Fast::No;
    };
    let Some(head) = crate::head(ctx) else {
        return Fast::No;
    };
    let dst = [head[0], head[1], head[2], head[3], head[4], head[5]];
    let src = [head[6], head[7], head[8], head[9], head[10], head[11]];
    // Longer than its sender could put on the wire (an Ethernet header, and its tag if
    // it has one, in front of the MTU's payload): an offload's large segment, which the
    // workers cut to the MTU.
    let (start, end) = (ctx.data(), ctx.data_end());
    let (_, payload) = dot1q::payload(head);
    if ingress.mtu != 0 && end - start > usize::from(ingress.mtu) + payload {
        return Fast::No;
    }
    // Group or all-zero sources are dropped by the workers.
    if src[0] & 1 != 0 || src == [0; 6] {
        return Fast::No;
    }
    // Group destinations: with floods on, in a VEB, those a bridge relays; the
    // reserved ones it does not are the workers' (dropped there once their source is
    // learned).
    let group = dst[0] & 1 != 0;
    if group {
        if conf.floods == 0 || conf.mode != fast_mode::VEB {
            return Fast::No;
        }
        if let [0x01, 0x80, 0xc2, 0x00, 0x00, last] = dst
            && last < 0x10
            && conf.group_fwd_mask & (1 << last) == 0
        {
            return Fast::No;
        }
    }
    if ingress.flags & slot_flags::ANTI_SPOOF != 0
        // SAFETY: a plain lookup in a hash map of u8 values.
        && unsafe { ALLOWED.get(&allowed_key(slot, src)) }.is_none()
    {
        return Fast::No;
    }

    let passthru = conf.mode == fast_mode::PASSTHRU;
    let (vid, tci) = if passthru || conf.vlan_aware == 0 {
        (0, None)
    } else {
        match classify(head, ingress) {
            Some(c) => c,
            None => return Fast::No,
        }
    };
    // The IP source guard, where the workers check it: after the VLAN and the MAC
    // checks, before learning and the destination. One flag test for other ports.
    if ingress.flags & slot_flags::IP_GUARD != 0 {
        match guard::check(ctx, slot) {
            guard::Verdict::Pass => {}
            guard::Verdict::Workers => return Fast::No,
            guard::Verdict::Drop => {
                guard::count_drop(slot, (end - start) as u64);
                if tap::wants(slot, tap::IN) {
                    tap::take(ctx, slot, tap::IN, tap::IP_SPOOFED);
                }
                return Fast::Dropped;
            }
        }
    }

    let egress = if passthru {
        // Two ports: slots 0 and 1.
        slot ^ 1
    } else {
        // The source must live here already: learning and moves are the workers'.
        // (Ports are plain numbers with NO_SLOT for none: an `Option` whose payload is
        // left undefined can make LLVM read an unset register, which the verifier
        // refuses.)
        if lookup(conf, vid, src, true) != slot {
            return Fast::No;
        }
        let edge = conf.mode == fast_mode::VEPA || conf.mode == fast_mode::PRIVATE;
        if edge && conf.uplink != slot {
            // A downlink's frames all go to the uplink.
            conf.uplink
        } else if edge || conf.mode == fast_mode::VEB {
            let to = if group {
                NO_SLOT
            } else {
                lookup(conf, vid, dst, false)
            };
            if to == NO_SLOT && !edge && conf.floods != 0 {
                // Unknown, or a group: a VEB floods it ([`crate::flood`]).
                return Fast::Flood {
                    vid,
                    tci: tci.map_or(NO_TCI, u32::from),
                };
            }
            let back = to == slot && (edge || ingress.flags & slot_flags::HAIRPIN == 0);
            // Unknown, or staying on its segment (from the uplink: behind it): the
            // workers'.
            if to == NO_SLOT || back {
                return Fast::No;
            }
            to
        } else {
            return Fast::No;
        }
    };
    let Some(out) = SLOT_CONF.get(egress) else {
        return Fast::No;
    };
    if out.flags & slot_flags::CONFIGURED == 0 || (vid != 0 && !out.carries(vid)) {
        return Fast::No;
    }
    let retag = if vid == 0 {
        Retag::Keep
    } else {
        let tagged = out.pvid != vid;
        match (tci, tagged) {
            (None, false) => Retag::Keep,
            (None, true) => Retag::Push(vid),
            (Some(_), false) => Retag::Pop,
            (Some(t), true) if t & VID_MASK == vid => Retag::Keep,
            (Some(t), true) => Retag::Rewrite((t & !VID_MASK) | vid),
        }
    };
    // A checksum an offload left for the device to finish is finished here (or, where
    // this program cannot, by the workers). In generic mode the frame is still the
    // sender's skb, marked CHECKSUM_PARTIAL, which a redirect keeps: the egress would
    // finish the finished checksum again, so the workers take those.
    let finish = match finish_checksum(ctx) {
        Csum::NotPartial => None,
        Csum::Finish { field, checksum } if ingress.flags & slot_flags::GENERIC == 0 => {
            Some((field, checksum))
        }
        Csum::Finish { .. } | Csum::Unable => return Fast::No,
    };
    // Redirect first: on a miss nothing has been changed and the workers get the frame
    // as it came. The redirect takes effect when the program returns, after the retag.
    if EGRESS.redirect(egress, 0).is_err() {
        return Fast::Fallback;
    }
    // Policed here, not by the workers: the frame is sure to leave by this path (but
    // for a tag with no room, below, which the workers then police once more).
    if !police(ctx, slot, ingress) {
        if tap::wants(slot, tap::IN) {
            tap::take(ctx, slot, tap::IN, tap::POLICED);
        }
        return Fast::Policed;
    }
    // As received: before its checksum is finished or its tag changed.
    if tap::wants(slot, tap::IN) {
        tap::take(ctx, slot, tap::IN, 0);
    }
    if let Some((field, checksum)) = finish {
        if field + 2 > ctx.data_end() {
            return Fast::Fallback;
        }
        // SAFETY: the bounds check above covers the checksum field's two bytes.
        unsafe { *(field as *mut [u8; 2]) = checksum.to_ne_bytes() };
    }
    if !apply(ctx, retag) {
        // No room for a tag: the workers have their own way (and count it).
        return Fast::Fallback;
    }
    // Counted as sent (`FAST_TX`) and tapped on the way out by the egress program
    // (`flood::hairpin_egress`) with floods on, else here.
    if conf.floods == 0 {
        count_tx(ctx, egress);
        if tap::wants(egress, tap::OUT) {
            tap::take(ctx, egress, tap::OUT, 0);
        }
    }
    Fast::Sent {
        finished: finish.is_some(),
    }
}

/// Whether the frame in `ctx`, received on port `slot`, is within the port's storm
/// control limit for class `class` (a [`meter`] word); when it is not, it is counted in
/// `STORM_DROPS`.
#[inline(always)]
pub fn storm_control(ctx: &XdpContext, slot: u32, ingress: &SlotConf, class: u32) -> bool {
    // One branch per class, each at a constant offset (an index computed into the
    // array would make the verifier track the class precisely on every later path).
    let limit = match class {
        meter::BROADCAST => &ingress.storm[0],
        meter::MULTICAST => &ingress.storm[1],
        _ => &ingress.storm[2],
    };
    if !limit.is_limited() {
        return true;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if take(slot, class, limit, 1, now) {
        return true;
    }
    if let Some(dropped) = STORM_DROPS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU element, touched only by this CPU while this program runs.
        let dropped = unsafe { &mut *dropped };
        dropped.packets += 1;
        dropped.bytes += (ctx.data_end() - ctx.data()) as u64;
    }
    false
}

/// For the egress program: counts the frame as sent by the fast path out of `slot`.
#[inline(always)]
pub fn count_tx(ctx: &XdpContext, slot: u32) {
    let len = (ctx.data_end() - ctx.data()) as u64;
    if let Some(tx) = FAST_TX.get_ptr_mut(slot) {
        // SAFETY: a per-CPU element, touched only by this CPU while this program runs.
        let tx = unsafe { &mut *tx };
        tx.packets += 1;
        tx.bytes += len;
    }
}

/// Whether the frame in `ctx`, received on port `slot`, is within the port's policing
/// limits (its packet meter, then its byte meter); when it is not, it is counted in
/// `METER_DROPS`.
#[inline(always)]
pub fn police(ctx: &XdpContext, slot: u32, ingress: &SlotConf) -> bool {
    let (bytes, packets) = (&ingress.police_bytes, &ingress.police_packets);
    if !bytes.is_limited() && !packets.is_limited() {
        return true;
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if take(slot, meter::POLICE_PACKETS, packets, 1, now) {
        if take(slot, meter::POLICE_BYTES, bytes, len, now) {
            return true;
        }
        // A dropped frame charges neither meter (as the workers' `decide_metered`).
        refund(slot, meter::POLICE_PACKETS, packets, 1);
    }
    if let Some(dropped) = METER_DROPS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU element, touched only by this CPU while this program runs.
        let dropped = unsafe { &mut *dropped };
        dropped.packets += 1;
        dropped.bytes += len;
    }
    false
}

/// Charges `units` at `now` to meter `which` of port `slot`, whose settings are
/// `meter`: true when admitted (or unlimited). One compare-and-swap of the meter's
/// word, as the workers' (`switch::meters`).
#[inline(always)]
fn take(slot: u32, which: u32, meter: &Meter, units: u64, now: u64) -> bool {
    if !meter.is_limited() {
        return true;
    }
    let Some(index) = meter::index(slot, which) else {
        return true;
    };
    let Some(word) = METERS.get_ptr_mut(index) else {
        return true;
    };
    // SAFETY: `word` points at a live, 8-byte aligned element of the array map; an
    // aligned 8-byte load is single-copy atomic in BPF, as the workers' atomics expect.
    let mut tat = unsafe { word.read_volatile() };
    for _ in 0..METER_TRIES {
        let Some(next) = meter.admit(tat, now, units) else {
            return false;
        };
        // SAFETY: as above; BPF's compare-and-swap is the one the workers use.
        let (seen, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
                word, tat, next,
            )
        };
        if swapped {
            return true;
        }
        tat = seen;
    }
    false
}

/// Gives back what [`take`] charged meter `which` of port `slot` for `units`.
#[inline(always)]
fn refund(slot: u32, which: u32, meter: &Meter, units: u64) {
    let Some(index) = meter::index(slot, which) else {
        return;
    };
    if let Some(word) = METERS.get_ptr_mut(index)
        && meter.is_limited()
    {
        // SAFETY: `word` points at a live, 8-byte aligned element of the array map;
        // BPF's atomic add is the workers' `fetch_sub` (the cost negated).
        unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                word,
                meter.cost_of(units).wrapping_neg(),
            )
        };
    }
}

/// The frame's VLAN and tag as the workers' `VlanTable::classify` finds them, or `None`
/// where they would drop it (the workers then do, and count it) or where a second tag
/// follows the first: stacked tags are the workers' (a pop here would leave the inner
/// tag in front, which the egress program could take for a flood's and pop too).
#[inline(always)]
fn classify(head: &[u8; TAGGED_HEADER_LEN], ingress: &SlotConf) -> Option<(u16, Option<u16>)> {
    let be16 = |at: usize| u16::from_be_bytes([head[at], head[at + 1]]);
    let (vid, tci) = match be16(OFFSET) {
        TPID_8021Q => {
            if dot1q::is_stacking(be16(INNER_OFFSET)) {
                return None;
            }
            let tci = be16(TCI_OFFSET);
            let vid = match tci & VID_MASK {
                0 => ingress.pvid,
                _ if ingress.flags & slot_flags::TRUNK == 0 => return None,
                v => v,
            };
            (vid, Some(tci))
        }
        TPID_8021AD | TPID_QINQ_LEGACY => return None,
        _ => (ingress.pvid, None),
    };
    (vid != 0 && ingress.carries(vid)).then_some((vid, tci))
}

/// The port `mac` lives on in `vid` ([`NO_SLOT`]: none), from the shared MAC table. With `refresh`, a
/// learned entry's stamp is brought up to now (at most once a second, by
/// compare-and-swap, exactly as a worker's learn does).
#[inline(always)]
fn lookup(conf: &FastConf, vid: u16, mac: [u8; 6], refresh: bool) -> u32 {
    let key = fdb::key_of(vid, mac);
    let index = fdb::bucket_index(key, conf.shift) as u32;
    let Some(bucket) = FDB.get_ptr_mut(index) else {
        return NO_SLOT;
    };
    for i in 0..fdb::SLOTS {
        // SAFETY: `bucket` points at a live element of the array map; each word is
        // 8-byte aligned, and an aligned 8-byte load is single-copy atomic in BPF, as
        // hairpin's atomic accesses to the same words expect.
        let (k, v) = unsafe {
            let slot = &raw mut (*bucket)[i];
            (&raw mut (*slot)[0], &raw mut (*slot)[1])
        };
        // SAFETY: as above.
        if unsafe { k.read_volatile() } != key {
            continue;
        }
        // SAFETY: as above.
        let val = unsafe { v.read_volatile() };
        let port = fdb::slot_of(val);
        if port == NO_SLOT {
            return NO_SLOT;
        }
        if refresh && val & FLAG_STATIC == 0 {
            // The stamp counts seconds: the clock as of the last tick (Linux 5.11) is
            // plenty, and unlike the precise one it reads no clock source per frame
            // (`read_tsc` was 4 % of the NAPI's core). SAFETY: a helper without
            // arguments.
            let now_ns = unsafe { bpf_ktime_get_coarse_ns() };
            let now = (now_ns.saturating_sub(conf.epoch_ns) / 1_000_000_000) as u32;
            if now > fdb::stamp_of(val) {
                // A failure means a worker or the ager got there first: theirs stands.
                // SAFETY: `v` is a valid, aligned word of the map (above); BPF's
                // compare-and-swap is the same one hairpin's workers use.
                let _ = unsafe {
                    atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
                        v,
                        val,
                        fdb::restamped(val, now),
                    )
                };
            }
        }
        return port;
    }
    NO_SLOT
}

/// Applies `retag` to the frame; false when there is no room to push a tag.
#[inline(always)]
pub fn apply(ctx: &XdpContext, retag: Retag) -> bool {
    match retag {
        Retag::Keep => true,
        Retag::Rewrite(tci) => {
            let start = ctx.data();
            if start + INNER_OFFSET > ctx.data_end() {
                return false;
            }
            // SAFETY: the bounds check covers the tag's TCI.
            unsafe { *((start + TCI_OFFSET) as *mut [u8; 2]) = tci.to_be_bytes() };
            true
        }
        Retag::Push(tci) => {
            // SAFETY: the helper checks the headroom and fails without changing the
            // frame when there is too little.
            if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(TAG_LEN as i32)) } != 0 {
                return false;
            }
            let start = ctx.data();
            if start + INNER_OFFSET > ctx.data_end() {
                return false;
            }
            // SAFETY: the bounds check covers the 16 bytes written: the MACs move a
            // tag's length forward (to the new start) and the tag follows them.
            unsafe {
                let macs = *((start + TAG_LEN) as *const [u8; OFFSET]);
                *(start as *mut [u8; OFFSET]) = macs;
                *((start + OFFSET) as *mut [u8; TAG_LEN]) = dot1q::tag(tci);
            }
            true
        }
        Retag::Pop => {
            let start = ctx.data();
            if start + INNER_OFFSET > ctx.data_end() {
                return false;
            }
            // SAFETY: the bounds check covers the MACs and the tag; the MACs move a tag's
            // length back, over the tag, and the head then drops the tag's bytes.
            unsafe {
                let macs = *(start as *const [u8; OFFSET]);
                *((start + TAG_LEN) as *mut [u8; OFFSET]) = macs;
                bpf_xdp_adjust_head(ctx.ctx, TAG_LEN as i32) == 0
            }
        }
    }
}

/// What [`finish_checksum`] found.
enum Csum {
    /// No partial checksum: nothing to do.
    NotPartial,
    /// A partial checksum, and the whole one to write in its place (memory order) at
    /// `field`, an address in the frame.
    Finish { field: usize, checksum: u16 },
    /// A partial checksum (or one that may be) this program does not finish: the
    /// workers' job.
    Unable,
}

/// Longest TCP or UDP segment whose checksum the fast path finishes (a page's worth:
/// longer frames come in several buffers, which the fast path leaves to the workers).
const MAX_SEGMENT: usize = 4096;

/// Where a partial TCP or UDP checksum is to be finished ([`partial`]).
pub enum Partial {
    /// None: nothing to do.
    No,
    /// One (or maybe one) this program does not finish.
    Unable,
    /// One: its segment starts at address `at` of the frame, its field at `field`.
    Segment {
        at: usize,
        field: usize,
        l4: csum::L4,
    },
}

/// Whether the frame (untagged, or under one 802.1Q tag) has a TCP or UDP checksum an
/// offload left partial ([`csum`]), from its headers alone.
#[inline(always)]
pub fn partial(ctx: &XdpContext) -> Partial {
    let Some(head) = crate::head(ctx) else {
        return Partial::No;
    };
    let (ethertype, payload) = dot1q::payload(head);
    let (start, end) = (ctx.data(), ctx.data_end());
    let l3 = start + payload;
    let l4 = match ethertype {
        csum::ETH_P_IP => {
            if l3 + IPV4_LEN > end {
                return Partial::No;
            }
            // SAFETY: the bounds check above covers the IPv4 header's first 20 bytes.
            match csum::ipv4(unsafe { &*(l3 as *const [u8; IPV4_LEN]) }) {
                // Options: the segment is not read here.
                Some(l4) if l4.offset != IPV4_LEN => return Partial::Unable,
                Some(l4) => l4,
                None => return Partial::No,
            }
        }
        csum::ETH_P_IPV6 => {
            if l3 + IPV6_LEN > end {
                return Partial::No;
            }
            // SAFETY: the bounds check above covers the IPv6 header.
            match csum::ipv6(unsafe { &*(l3 as *const [u8; IPV6_LEN]) }) {
                Some(l4) => l4,
                None => return Partial::No,
            }
        }
        _ => return Partial::No,
    };
    let segment = l3 + l4.offset;
    let field = segment + l4.field;
    if field + 2 > end {
        return Partial::No;
    }
    // SAFETY: the bounds check above covers the two bytes of the checksum field.
    let value = u16::from_be_bytes(unsafe { *(field as *const [u8; 2]) });
    if !csum::is_partial(value, &l4) {
        return Partial::No;
    }
    Partial::Segment {
        at: segment,
        field,
        l4,
    }
}

/// The whole TCP or UDP checksum of the frame (untagged, or under one 802.1Q tag) if its
/// field holds only its pseudo-header's sum, an offload's partial checksum ([`csum`]):
/// the complement of the segment's sum (its field included, which already holds the
/// pseudo-header's sum). Nothing is written here: the caller writes it once the frame
/// is surely leaving by the fast path. A whole checksum that happens to equal the
/// pseudo-header sum comes out the same, so no verification is needed.
#[inline(always)]
fn finish_checksum(ctx: &XdpContext) -> Csum {
    let (segment, field, l4) = match partial(ctx) {
        Partial::No => return Csum::NotPartial,
        Partial::Unable => return Csum::Unable,
        Partial::Segment { at, field, l4 } => (at, field, l4),
    };
    let (start, end) = (ctx.data(), ctx.data_end());
    let len = l4.len;
    // (Each read checks its own bounds: a check of the whole segment up front would let
    // the compiler drop those, and the verifier follows only checks it sees.)
    if len > MAX_SEGMENT {
        return Csum::Unable;
    }
    // The segment's one's-complement sum, in memory order: 512-byte and 64-byte blocks
    // by the kernel's `csum_partial` (bpf_csum_diff), then the last bytes. (Two short
    // loops and a copy, not a loop of words: the verifier walks every path through
    // loops, and each loop multiplies the paths.)
    let mut sum: u64 = 0;
    let mut at = 0usize;
    for _ in 0..MAX_SEGMENT / 512 {
        if len - at < 512 {
            break;
        }
        let Some(part) = block::<512>(segment + at, end) else {
            return Csum::Unable;
        };
        sum += part;
        at += 512;
    }
    for _ in 0..512 / 64 {
        if len - at < 64 {
            break;
        }
        let Some(part) = block::<64>(segment + at, end) else {
            return Csum::Unable;
        };
        sum += part;
        at += 64;
    }
    // The last 0 to 63 bytes, copied by the kernel (which checks the bounds) into a
    // zeroed block: the zeros pad them as RFC 1071 pads an odd byte.
    // `black_box`: the compiler must not fold the bounds below into what it knows of
    // `len`, or the verifier, which sees only the register, finds the size unbounded.
    let rest = core::hint::black_box((len - at) as u32);
    if rest >= 64 {
        return Csum::Unable;
    }
    if rest > 0 {
        let mut tail = [0u32; 16];
        let offset = (segment - start + at) as u32;
        // SAFETY: the helper copies at most `rest` (< 64) bytes into the 64-byte
        // `tail`, and fails if they are not all in the frame.
        let copied = unsafe { bpf_xdp_load_bytes(ctx.ctx, offset, tail.as_mut_ptr().cast(), rest) };
        if copied != 0 {
            return Csum::Unable;
        }
        // SAFETY: the helper reads the 64 bytes of `tail`, on this program's stack.
        let part = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, tail.as_mut_ptr(), 64, 0) };
        if part < 0 {
            return Csum::Unable;
        }
        sum += u64::from(part as u32);
    }
    let mut checksum = !csum::fold(sum);
    // UDP writes a zero checksum as all ones (zero means none).
    if checksum == 0 && l4.field == csum::UDP_FIELD {
        checksum = 0xffff;
    }
    Csum::Finish { field, checksum }
}

/// The one's-complement sum of the `N` bytes at `at` (a multiple of four), by the
/// kernel's `csum_partial`; `None` when they are not all in the frame.
#[inline(always)]
fn block<const N: usize>(at: usize, end: usize) -> Option<u64> {
    if at + N > end {
        return None;
    }
    // SAFETY: the bounds check above covers the N bytes the helper reads; the `from`
    // side is empty.
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, at as *mut u32, N as u32, 0) };
    // A negative value is an error (never for these sizes); the sum is its low 32 bits.
    (sum >= 0).then_some(u64::from(sum as u32))
}
