//! The fast path's IP source guard, for a port whose `SlotConf` has
//! `slot_flags::IP_GUARD`: the workers apply the whole guard (`switch::guard` in the
//! forwarder); here only its IP source rule, on frames the fast path would carry, by
//! the rule `IpGuard::fast_path` writes in Rust (the forwarder's tests and fuzz target
//! hold it against the workers'):
//!
//! - IPv4 (untagged or under one 802.1Q tag) from a source in `GUARD_V4` passes; from
//!   0.0.0.0 (DHCP, IGMP) it goes to the workers; from any other source it is dropped
//!   and counted in `GUARD_DROPS`;
//! - IPv6 from a source in `GUARD_V6` passes, unless ICMPv6 or an extension header
//!   follows its header (neighbour discovery, perhaps hidden behind extension headers:
//!   the workers read it); from `::` or a link-local source (`fe80::/10`: the port's own
//!   is derived from its MAC) it goes to the workers; from any other source it is
//!   dropped;
//! - ARP, stacked or 802.1ad tags, and headers that do not add up go to the workers;
//! - every other EtherType passes.
//!
//! The tries are keyed by the port's slot and the address (`hairpin_common::guard`),
//! so one lookup per frame finds whether any of the port's prefixes covers its source.
use aya_ebpf::{
    macros::map,
    maps::{LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use hairpin_common::{
    MAX_PORTS,
    csum::{ETH_P_IP, ETH_P_IPV6, IPV4_LEN, IPV6_LEN},
    dot1q,
    guard::{self, Drops},
};

/// By (slot, IPv4 prefix): the sources guarded ports may send from.
#[map]
static GUARD_V4: LpmTrie<[u8; 8], u8> = LpmTrie::with_max_entries(guard::ENTRIES, 0);

/// By (slot, IPv6 prefix): the same for IPv6.
#[map]
static GUARD_V6: LpmTrie<[u8; 20], u8> = LpmTrie::with_max_entries(guard::ENTRIES, 0);

/// By slot: frames the guard dropped here.
#[map]
static GUARD_DROPS: PerCpuArray<Drops> = PerCpuArray::with_max_entries(MAX_PORTS, 0);

/// EtherType of ARP.
const ETH_P_ARP: u16 = 0x0806;

/// What the guard says of a frame the fast path would carry.
pub enum Verdict {
    /// It may go on.
    Pass,
    /// The workers decide (ARP, ND, an exception, a header not read here).
    Workers,
    /// Its IP source is not the port's: drop it.
    Drop,
}

/// The guard's verdict on the frame in `ctx` from port `slot`.
#[inline(always)]
pub fn check(ctx: &XdpContext, slot: u32) -> Verdict {
    let Some(head) = crate::head(ctx) else {
        return Verdict::Workers;
    };
    let (ethertype, payload) = dot1q::payload(head);
    let (start, end) = (ctx.data(), ctx.data_end());
    let l3 = start + payload;
    match ethertype {
        ETH_P_IP => ipv4(l3, end, slot),
        ETH_P_IPV6 => ipv6(l3, end, slot),
        ETH_P_ARP => Verdict::Workers,
        t if dot1q::is_stacking(t) => Verdict::Workers,
        _ => Verdict::Pass,
    }
}

/// Counts a frame of `len` bytes from port `slot` dropped.
#[inline(always)]
pub fn count_drop(slot: u32, len: u64) {
    if let Some(drops) = GUARD_DROPS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU element, touched only by this CPU while this program runs.
        let drops = unsafe { &mut *drops };
        drops.packets += 1;
        drops.bytes += len;
    }
}

/// The IPv4 packet at `l3`.
#[inline(always)]
fn ipv4(l3: usize, end: usize, slot: u32) -> Verdict {
    if l3 + IPV4_LEN > end {
        return Verdict::Workers;
    }
    // SAFETY: the bounds check above covers the header's first 20 bytes.
    let ip = unsafe { &*(l3 as *const [u8; IPV4_LEN]) };
    let header = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // As the workers' `Ipv4Packet::new_checked`: a header that does not add up is
    // theirs to drop. (Lengths are compared, never added to a packet pointer.)
    if ip[0] >> 4 != 4 || header < IPV4_LEN || header > total || total > end - l3 {
        return Verdict::Workers;
    }
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let key = Key::new(guard::prefix_len(32), guard::v4_key(slot, src));
    if GUARD_V4.get(&key).is_some() {
        Verdict::Pass
    } else if src == [0; 4] {
        Verdict::Workers
    } else {
        Verdict::Drop
    }
}

/// The IPv6 packet at `l3`.
#[inline(always)]
fn ipv6(l3: usize, end: usize, slot: u32) -> Verdict {
    if l3 + IPV6_LEN > end {
        return Verdict::Workers;
    }
    // SAFETY: the bounds check above covers the 40-byte header.
    let ip = unsafe { &*(l3 as *const [u8; IPV6_LEN]) };
    let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if ip[0] >> 4 != 6 || IPV6_LEN + payload > end - l3 {
        return Verdict::Workers;
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    let key = Key::new(guard::prefix_len(128), guard::v6_key(slot, src));
    if GUARD_V6.get(&key).is_some() {
        // ICMPv6 (neighbour discovery) and extension headers (which may hide it).
        if guard::workers_read(ip[6]) {
            Verdict::Workers
        } else {
            Verdict::Pass
        }
    } else if src == [0; 16] || (src[0] == 0xfe && src[1] & 0xc0 == 0x80) {
        Verdict::Workers
    } else {
        Verdict::Drop
    }
}
