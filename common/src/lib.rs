//! Types shared by hairpin's XDP program (`ebpf/`) and its user-space forwarder.
//!
//! Everything here is `#[repr(C)]` plain data with a fixed layout: the same bytes are
//! written by one side and read by the other through BPF maps. With the `user` feature
//! the map value types implement [`aya::Pod`].
#![no_std]

pub mod meter;

/// Upper bound on the ports one hairpin instance serves (the Linux bridge's
/// `BR_MAX_PORTS`).
pub const MAX_PORTS: u32 = 1024;

/// Upper bound on the RX queues hairpin serves per port.
pub const MAX_QUEUES: u32 = 64;

/// Most host IPv4 addresses the XDP program answers ARP for (`HOST_IPV4`).
pub const MAX_HOST_ADDRESSES: u32 = 64;

/// Entries in the per-(port, queue) maps, `XSKS` and `QUEUE_STATS`: every port's RX
/// queues together. Each port has a range of [`PortConf::queues`] entries from
/// [`PortConf::queue_base`], so a thousand single-queue ports fit beside a few dozen
/// with 64 queues, while the per-CPU counters stay small (72 bytes an entry, per CPU).
pub const MAX_PORT_QUEUES: u32 = 4096;

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "hairpin";

/// Name of hairpin's devmap egress program, on every entry of `EGRESS` and the flood
/// domains (`FLOODS_*`): it pops the tag of a flooded copy bound for a port that takes
/// the VLAN untagged, and counts (`FAST_TX`) and taps what the fast path sends.
pub const EGRESS_PROGRAM_NAME: &str = "hairpin_egress";

/// Name of hairpin's flood program, which the XDP program tail-calls (through
/// `FLOOD_PROGRAM`) for a frame to flood.
pub const FLOOD_PROGRAM_NAME: &str = "hairpin_flood";

/// Name of the benchmark generator's XDP program (`XDP_TX`, run in live-frames mode).
pub const GENERATOR_PROGRAM_NAME: &str = "hairpin_gen";

/// Name of the fan-out generator's XDP program: on the fan-out veth's receiving end, it
/// broadcasts each frame it receives through the `FANOUT` devmap.
pub const FANOUT_PROGRAM_NAME: &str = "hairpin_fanout";

/// Name of the fan-out generator's devmap egress program: paces, stamps and counts each
/// copy bound for the generator's port, as `hairpin_gen` does each run.
pub const GEN_EGRESS_PROGRAM_NAME: &str = "hairpin_gen_egress";

/// The generator sends `GEN_CONFIG[generator::SHARE]` frames out of this many.
pub const GEN_SHARE_ONE: u32 = 1024;

/// The benchmark generator's settings (`GEN_CONFIG`, `u32`s user space writes) and
/// per-CPU state (`GEN_STATE`, `u64`s the programs keep): the indices of each.
pub mod generator {
    /// Config: transmit this many frames out of every [`super::GEN_SHARE_ONE`] the
    /// generator could send, evenly spaced.
    pub const SHARE: u32 = 0;
    /// Config: spread frames over this many flows (0 or 1: one).
    pub const FLOWS: u32 = 1;
    /// Config: give frames this many distinct source MACs, the frame's own with its last
    /// three bytes replaced by the sequence number modulo the count (0: its own only).
    pub const SOURCES: u32 = 2;
    /// Config: four words, the frame's first 16 bytes, written into every frame sent (all
    /// zero: none).
    pub const HEAD: u32 = 3;
    /// Config: send no more than this many frames (0: no limit).
    pub const LIMIT: u32 = 7;
    /// Config: non-zero stops the fan-out generator's circulating frames.
    pub const STOP: u32 = 8;
    /// Config: how many words.
    pub const CONFIG_LEN: u32 = 9;

    /// State: the pacing accumulator.
    pub const ACC: u32 = 0;
    /// State: frames sent.
    pub const SENT: u32 = 1;
    /// State: the next sequence number.
    pub const SEQ: u32 = 2;
    /// State: when the first frame was sent (`bpf_ktime_get_ns`).
    pub const FIRST_NS: u32 = 3;
    /// State: when the last frame was sent.
    pub const LAST_NS: u32 = 4;
    /// State: the fan-out's circulating frames that ended (stopped, or at the limit).
    pub const ENDED: u32 = 5;
    /// State: fan-out turns (each sends up to the devmap's copies).
    pub const TURNS: u32 = 6;
    /// State: how many words.
    pub const STATE_LEN: u32 = 7;

    /// Entries of the fan-out devmap (`FANOUT`): copies to the generator's port in the
    /// first ones, the circulating frame's own way back in the last one used.
    pub const FANOUT_ENTRIES: u32 = 65;
}

/// Name of the benchmark sink's XDP program: counts, reads the probe, drops.
pub const SINK_PROGRAM_NAME: &str = "hairpin_sink";

/// The probe the benchmark's generator writes into every frame it sends, and its sink
/// reads: a flow number, a sequence number and the send time, in the UDP payload.
pub mod probe {
    /// Where the probe starts in an untagged frame: after the Ethernet (14), IPv4 (20)
    /// and UDP (8) headers. A frame with one 802.1Q tag has it four bytes later.
    pub const OFFSET: usize = 42;
    /// Bytes of the probe: magic (2), flow (2), sequence (4), send time in ns (8), all
    /// little-endian. It fits the 18 payload bytes of a 64-byte frame.
    pub const LEN: usize = 16;
    /// The probe's first two bytes.
    pub const MAGIC: u16 = 0x6870;
    /// Most flows the generator spreads frames over (`GEN_CONFIG[generator::FLOWS]`).
    pub const MAX_FLOWS: u32 = 256;
    /// Buckets of the sink's latency histogram.
    pub const LATENCY_BUCKETS: u32 = 1024;
    /// Latencies below this many ns have linear buckets [`LINEAR_STEP`] wide.
    const LINEAR_END: u64 = 1024;
    /// Width of the linear buckets.
    const LINEAR_STEP: u64 = 16;
    /// Sub-buckets per power of two above [`LINEAR_END`] (about 3 % wide each).
    const SUB: u64 = 32;
    /// log2 of [`LINEAR_END`].
    const LINEAR_BITS: u32 = 10;

    /// The histogram bucket of a latency of `ns` nanoseconds: 16 ns steps up to 1 µs,
    /// then 32 buckets per power of two (3 % precision) up to about a minute; longer
    /// latencies land in the last bucket.
    #[inline(always)]
    pub const fn bucket(ns: u64) -> u32 {
        if ns < LINEAR_END {
            return (ns / LINEAR_STEP) as u32;
        }
        let exp = 63 - ns.leading_zeros(); // >= LINEAR_BITS
        let sub = (ns >> (exp - 5)) & (SUB - 1);
        let b = (LINEAR_END / LINEAR_STEP) + (exp - LINEAR_BITS) as u64 * SUB + sub;
        if b >= LATENCY_BUCKETS as u64 {
            LATENCY_BUCKETS - 1
        } else {
            b as u32
        }
    }

    /// The latencies (ns) bucket `b` holds: `low..high`.
    pub const fn bucket_range(b: u32) -> (u64, u64) {
        let b = b as u64;
        let linear = LINEAR_END / LINEAR_STEP;
        if b < linear {
            return (b * LINEAR_STEP, (b + 1) * LINEAR_STEP);
        }
        let exp = LINEAR_BITS as u64 + (b - linear) / SUB;
        let sub = (b - linear) % SUB;
        let width = 1u64 << (exp - 5);
        let low = (1u64 << exp) + sub * width;
        (low, low + width)
    }
}

/// Map names, as the eBPF object declares them.
pub mod maps {
    /// `HashMap<u32 ifindex, PortConf>`: which ports hairpin serves.
    pub const PORTS: &str = "PORTS";
    /// `HashMap<u32, u8>`: the host's IPv4 addresses (network-order bytes as a native
    /// `u32`) whose ARP requests go to the host's stack.
    pub const HOST_IPV4: &str = "HOST_IPV4";
    /// `HashMap<[u8; 16], u8>`: the host's IPv6 addresses whose neighbour solicitations
    /// go to the host's stack.
    pub const HOST_IPV6: &str = "HOST_IPV6";
    /// `XskMap`, indexed by [`super::xsk_index`].
    pub const XSKS: &str = "XSKS";
    /// `PerCpuArray<QueueStats>`, indexed by [`super::xsk_index`].
    pub const QUEUE_STATS: &str = "QUEUE_STATS";
    /// `Array<fdb::Bucket>` (`BPF_F_MMAPABLE`): the MAC table itself, which hairpin
    /// maps into its memory; one element per bucket, sized at load.
    pub const FDB: &str = "FDB";
    /// `Array<FastConf>`, one element: the fast path's bridge-wide settings.
    pub const FAST_CONF: &str = "FAST_CONF";
    /// `Array<SlotConf>`, by port slot: each port's fast-path settings.
    pub const SLOT_CONF: &str = "SLOT_CONF";
    /// `DevMapHash`, by port slot: the ports the fast path may send to.
    pub const EGRESS: &str = "EGRESS";
    /// `HashMap<u64, u8>`, keyed by [`super::allowed_key`]: the source MACs a port with
    /// an anti-spoofing list may send from.
    pub const ALLOWED: &str = "ALLOWED";
    /// `PerCpuArray<FastTx>`, by egress slot: what the fast path sent.
    pub const FAST_TX: &str = "FAST_TX";
    /// `Array<u8>`, by port slot: the directions tapped ([`super::tap`]).
    pub const TAPS: &str = "TAPS";
    /// `RingBuf` of [`super::tap::Record`]s.
    pub const TAP_RING: &str = "TAP_RING";
    /// `PerCpuArray<u64>`, by port slot: frames not tapped for a full `TAP_RING`.
    pub const TAP_LOST: &str = "TAP_LOST";
    /// `Array<u32>`: the generator's settings, by [`super::generator`].
    pub const GEN_CONFIG: &str = "GEN_CONFIG";
    /// `PerCpuArray<u64>`: the generator's state, by [`super::generator`].
    pub const GEN_STATE: &str = "GEN_STATE";
    /// `DevMap`: where the fan-out generator sends each frame it receives.
    pub const FANOUT: &str = "FANOUT";
    /// `PerCpuArray<u64>`: the sink's counters, by [`super::sink_stat`].
    pub const SINK_STATS: &str = "SINK_STATS";
    /// `PerCpuArray<u64>`: the sink's latency histogram, by [`super::probe::bucket`].
    pub const SINK_LATENCY: &str = "SINK_LATENCY";
    /// `Array<u64>`: per flow, one more than the highest sequence number seen.
    pub const SINK_FLOWS: &str = "SINK_FLOWS";

    /// `Array<u64>` (`BPF_F_MMAPABLE`), by [`super::meter::index`]: the storm control
    /// and policing meters' state, which hairpin maps into its memory.
    pub const METERS: &str = "METERS";
    /// `PerCpuArray<meter::Dropped>`, by port slot: what the fast path's policing
    /// dropped.
    pub const METER_DROPS: &str = "METER_DROPS";
    /// `PerCpuArray<meter::Dropped>`, by port slot: what the fast path's storm control
    /// dropped.
    pub const STORM_DROPS: &str = "STORM_DROPS";

    /// `Array<u32>`, by ifindex: [`super::egress_info`] of each port the fast path sends
    /// to.
    pub const EGRESS_INFO: &str = "EGRESS_INFO";
    /// `ProgramArray`, one entry: the flood program ([`super::FLOOD_PROGRAM_NAME`]).
    pub const FLOOD_PROGRAM: &str = "FLOOD_PROGRAM";
    /// `Array<u32>`, by VLAN ID: each VLAN's flood domain ([`super::flood`]).
    pub const FLOOD_VLAN: &str = "FLOOD_VLAN";
    /// `DevMapHash`es by port slot, one per flood domain: `FLOODS_0`, `FLOODS_1`, ...
    /// ([`super::flood::DOMAINS`]).
    pub const FLOODS: [&str; super::flood::DOMAINS as usize] = [
        "FLOODS_0",
        "FLOODS_1",
        "FLOODS_2",
        "FLOODS_3",
        "FLOODS_4",
        "FLOODS_5",
        "FLOODS_6",
        "FLOODS_7",
        "FLOODS_8",
        "FLOODS_9",
        "FLOODS_10",
        "FLOODS_11",
        "FLOODS_12",
        "FLOODS_13",
        "FLOODS_14",
        "FLOODS_15",
    ];

    /// `LpmTrie<[u8; 8], u8>`, keyed by [`super::guard::v4_key`]: the IPv4 prefixes a
    /// port with an IP source guard may send from.
    pub const GUARD_V4: &str = "GUARD_V4";
    /// `LpmTrie<[u8; 20], u8>`, keyed by [`super::guard::v6_key`]: the same for IPv6.
    pub const GUARD_V6: &str = "GUARD_V6";
    /// `PerCpuArray<guard::Drops>`, by port slot: frames the fast path's IP source
    /// guard dropped.
    pub const GUARD_DROPS: &str = "GUARD_DROPS";
}

/// The entry of a port's `queue` in the XSKMAP and the per-queue counters: `queue`
/// of the `queues` entries from `base`.
///
/// Returns `None` when the queue is not one of the port's or the range is beyond the
/// maps, so no caller can index past them.
#[inline(always)]
pub const fn xsk_index(base: u32, queues: u32, queue: u32) -> Option<u32> {
    if queue < queues && queue < MAX_QUEUES && base < MAX_PORT_QUEUES {
        let index = base + queue;
        if index < MAX_PORT_QUEUES {
            return Some(index);
        }
    }
    None
}

/// What the XDP program does with the frames of one port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortConf {
    /// The port's slot, `0..MAX_PORTS`.
    pub slot: u32,
    /// [`port_flags`] bits.
    pub flags: u32,
    /// With [`port_flags::PASS_HOST_MAC`]: frames to this destination MAC go to the
    /// host's stack instead of hairpin (the host keeps its own connectivity).
    pub host_mac: [u8; 6],
    /// With [`port_flags::PASS_HOST_MAC`]: bit `n` clear sends frames to the reserved
    /// group address `01:80:c2:00:00:0n` (LLDP, STP, ...) to the host's stack, which
    /// runs the link's protocols; bit `n` set lets hairpin relay them.
    pub group_fwd_mask: u16,
    /// The port's first entry in the per-(port, queue) maps ([`xsk_index`]).
    pub queue_base: u32,
    /// How many entries it has there: the RX queues hairpin serves on it.
    pub queues: u32,
}

impl PortConf {
    /// The entry of this port's `queue` in `XSKS` and `QUEUE_STATS`.
    #[inline(always)]
    pub const fn queue_index(&self, queue: u32) -> Option<u32> {
        xsk_index(self.queue_base, self.queues, queue)
    }
}

/// The MAC table's memory layout, shared by the workers (`switch::fdb`) and the XDP
/// program's fast path, which read and write the same buckets (the `FDB` map, mapped
/// into hairpin's memory).
///
/// The table is an array of 64-byte buckets, each four slots of two words:
///
/// - `key`: `1 << 63 | vlan << 48 | mac`, or 0 for an empty slot;
/// - `val`: `stamp << 32 | flags << 16 | (port + 1)`, or 0 while a slot is being filled
///   or emptied.
///
/// A key lives in the one bucket its Fibonacci hash picks ([`bucket_index`]).
pub mod fdb {
    /// Slots per bucket.
    pub const SLOTS: usize = 4;
    /// Set in every key, so that a valid key is never 0.
    pub const VALID: u64 = 1 << 63;
    /// `val` flag: a configured entry, never aged or moved.
    pub const FLAG_STATIC: u64 = 1 << 16;
    /// The bits of a `val` that hold its port (plus one).
    const PORT_BITS: u64 = 0xffff;

    const _: () = assert!(super::MAX_PORTS as u64 <= PORT_BITS);

    /// One bucket as the XDP program sees it: `[key, val]` per slot.
    pub type Bucket = [[u64; 2]; SLOTS];

    /// The key of `mac` (its six bytes as the low 48 bits) in `vlan`.
    #[inline(always)]
    pub const fn key(vlan: u16, mac: u64) -> u64 {
        VALID | ((vlan as u64 & 0xfff) << 48) | (mac & 0xffff_ffff_ffff)
    }

    /// The key of the six bytes of `mac` in `vlan`.
    #[inline(always)]
    pub const fn key_of(vlan: u16, mac: [u8; 6]) -> u64 {
        key(
            vlan,
            u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]),
        )
    }

    /// A `val`: `port` seen at `stamp` (table seconds), with `flags`.
    #[inline(always)]
    pub const fn encode(port: u16, stamp: u32, flags: u64) -> u64 {
        ((stamp as u64) << 32) | flags | (port as u64 + 1)
    }

    /// The port of a `val`, or `None` for 0 (a slot being filled or emptied).
    #[inline(always)]
    pub const fn port_of(val: u64) -> Option<u16> {
        match val & PORT_BITS {
            0 => None,
            p => Some((p - 1) as u16),
        }
    }

    /// The port of a `val` as a slot number, [`super::NO_SLOT`] for 0: for the XDP
    /// program, where an `Option` payload left undefined on `None` can make LLVM read
    /// an unset register, which the verifier refuses.
    #[inline(always)]
    pub const fn slot_of(val: u64) -> u32 {
        match val & PORT_BITS {
            0 => super::NO_SLOT,
            p => p as u32 - 1,
        }
    }

    /// The stamp (table seconds) of a `val`.
    #[inline(always)]
    pub const fn stamp_of(val: u64) -> u32 {
        (val >> 32) as u32
    }

    /// `val` with its stamp replaced by `stamp`.
    #[inline(always)]
    pub const fn restamped(val: u64, stamp: u32) -> u64 {
        (val & 0xffff_ffff) | ((stamp as u64) << 32)
    }

    /// The bucket of `key` in a table of `1 << (64 - shift)` buckets (`shift` 64: one
    /// bucket). Fibonacci hashing: the multiply spreads the key, the top bits pick.
    #[inline(always)]
    pub const fn bucket_index(key: u64, shift: u32) -> u64 {
        match key.wrapping_mul(0x9e37_79b9_7f4a_7c15).checked_shr(shift) {
            Some(i) => i,
            None => 0,
        }
    }
}

/// The fast path's bridge-wide settings (`FAST_CONF`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastConf {
    /// [`fast_mode`]: which rule applies, or [`fast_mode::OFF`].
    pub mode: u32,
    /// The MAC table's bucket shift ([`fdb::bucket_index`]).
    pub shift: u32,
    /// 1 when the bridge is VLAN-aware.
    pub vlan_aware: u32,
    /// The uplink's slot ([`NO_SLOT`]: none).
    pub uplink: u32,
    /// `CLOCK_MONOTONIC` (ns) at table second 0, for stamping entries.
    pub epoch_ns: u64,
    /// 1 when the fast path floods too (broadcast, multicast and unknown unicast through
    /// the flood domains, [`flood`]).
    pub floods: u32,
    /// The bridge's group forward mask: bit `n` relays `01:80:c2:00:00:0n`.
    pub group_fwd_mask: u32,
}

/// A slot number that names no port.
pub const NO_SLOT: u32 = u32::MAX;

/// Values of [`FastConf::mode`].
pub mod fast_mode {
    /// No fast path: every frame goes to the workers.
    pub const OFF: u32 = 0;
    /// `veb`.
    pub const VEB: u32 = 1;
    /// `vepa`.
    pub const VEPA: u32 = 2;
    /// `private`.
    pub const PRIVATE: u32 = 3;
    /// `passthru`.
    pub const PASSTHRU: u32 = 4;
}

/// One port's fast-path settings (`SLOT_CONF`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotConf {
    /// [`slot_flags`] bits.
    pub flags: u32,
    /// The VLAN of the port's untagged frames (its access or native VLAN; 0: none).
    pub pvid: u16,
    /// The port's MTU (0: unknown). A longer frame is an offload's large segment, which
    /// the fast path leaves to the workers to cut.
    pub mtu: u16,
    /// The VLANs the port carries, bit `v % 64` of word `v / 64`.
    pub members: [u64; 64],

    /// Ingress policing's byte meter ([`meter::POLICE_BYTES`]; unlimited: none).
    pub police_bytes: meter::Meter,
    /// Ingress policing's packet meter ([`meter::POLICE_PACKETS`]).
    pub police_packets: meter::Meter,
    /// Storm control, by class ([`meter::BROADCAST`], [`meter::MULTICAST`],
    /// [`meter::UNKNOWN_UNICAST`]; unlimited: none).
    pub storm: [meter::Meter; 3],
}

impl Default for SlotConf {
    fn default() -> Self {
        Self {
            flags: 0,
            pvid: 0,
            mtu: 0,
            members: [0; 64],
            police_bytes: meter::Meter::UNLIMITED,
            police_packets: meter::Meter::UNLIMITED,
            storm: [meter::Meter::UNLIMITED; 3],
        }
    }
}

impl SlotConf {
    /// Whether the port carries VLAN `vid`.
    #[inline(always)]
    pub fn carries(&self, vid: u16) -> bool {
        let vid = usize::from(vid & 0xfff);
        self.members[vid / 64] & (1 << (vid % 64)) != 0
    }
}

/// Bits of [`SlotConf::flags`].
pub mod slot_flags {
    /// A configured port.
    pub const CONFIGURED: u32 = 1 << 0;
    /// Reflective relay: frames may leave by the port they came in on.
    pub const HAIRPIN: u32 = 1 << 1;
    /// The uplink.
    pub const UPLINK: u32 = 1 << 2;
    /// Only the sources in `ALLOWED` may send from this port.
    pub const ANTI_SPOOF: u32 = 1 << 3;
    /// A trunk: takes tagged frames.
    pub const TRUNK: u32 = 1 << 4;
    /// Its XDP program runs in generic (skb) mode, where a partial checksum is still
    /// the skb's (`CHECKSUM_PARTIAL`) and a redirect keeps it so: the egress would
    /// finish a checksum the fast path finished too, and spoil it. The fast path leaves
    /// such frames to the workers.
    pub const GENERIC: u32 = 1 << 5;

    /// An IP source guard: the IPv4 and IPv6 sources of the frames the fast path would
    /// carry must be in `GUARD_V4`/`GUARD_V6` (else dropped), and ARP, ICMPv6 and
    /// extension headers go to the workers ([`super::guard`]).
    pub const IP_GUARD: u32 = 1 << 10;

    /// A copy leaving by this port loses a tag of its `pvid` (a VLAN-aware bridge but
    /// `passthru`): a flood tagged for the domain's trunks ([`super::egress_info`]).
    pub const UNTAG: u32 = 1 << 11;
}

/// What the devmap egress program needs of the port a copy leaves by, in one word of
/// `EGRESS_INFO` (by ifindex, for ifindexes below [`EGRESS_INFO_ENTRIES`]): its slot
/// plus one in the low 16 bits (0: none), the VLAN whose tag it pops in the high 16
/// (0: none).
#[inline(always)]
pub const fn egress_info(slot: u32, pop_vid: u16) -> u32 {
    (slot + 1) | ((pop_vid as u32) << 16)
}

/// Entries of `EGRESS_INFO`: ports of higher ifindexes take a slower path (the port map).
pub const EGRESS_INFO_ENTRIES: u32 = 1 << 16;

/// The fast path's floods: broadcast, multicast and unknown unicast sent by the kernel
/// to every port of the frame's flood domain at once (`bpf_redirect_map` with
/// `BPF_F_BROADCAST`), a copy each.
///
/// A domain is one of [`DOMAINS`] devmaps (`FLOODS_0` ...), keyed by port slot, holding
/// the ports of a VLAN the kernel can send to (VLANs with the same such ports share
/// one). `FLOOD_VLAN`, by VLAN (0 on a VLAN-unaware bridge), says in one word which
/// domain a VLAN's floods take and whether they are whole: a flood goes to the kernel
/// only when every port the workers would send it to is in the domain ([`complete`]);
/// otherwise the whole frame goes to the workers. 0: the workers flood this VLAN.
pub mod flood {
    /// Flood domains (devmaps): VLANs with more distinct port sets are the workers'.
    pub const DOMAINS: u32 = 16;
    /// Most ports in one domain (the kernel walks every bucket of the map for each flood,
    /// so the maps are kept small): a wider VLAN is the workers'.
    pub const MAX_MEMBERS: u32 = 64;
    /// Entries of `FLOOD_VLAN`: one per VLAN ID.
    pub const VLANS: u32 = 4096;
    /// The domain's index plus one.
    const DOMAIN_MASK: u32 = 0xff;
    /// Some port of the domain takes the VLAN tagged: the frame is flooded tagged, and
    /// the egress program pops the tag where the port takes it untagged.
    pub const TAGGED: u32 = 1 << 8;
    /// One port of the VLAN is out of the kernel's reach, the one in the top half: its
    /// floods are whole only when it is the ingress (which gets no copy).
    const LONE: u32 = 1 << 9;
    const LONE_SHIFT: u32 = 16;

    /// The `FLOOD_VLAN` word of domain `domain`; `tagged`: see [`TAGGED`]; `lone`: the one
    /// port the kernel cannot send to, if there is one.
    pub const fn entry(domain: u32, tagged: bool, lone: Option<u32>) -> u32 {
        let mut e = (domain + 1) & DOMAIN_MASK;
        if tagged {
            e |= TAGGED;
        }
        if let Some(slot) = lone {
            e |= LONE | (slot << LONE_SHIFT);
        }
        e
    }

    /// The domain of `FLOOD_VLAN` word `entry`, if its VLAN has one.
    #[inline(always)]
    pub const fn domain_of(entry: u32) -> Option<u32> {
        match entry & DOMAIN_MASK {
            0 => None,
            d => Some(d - 1),
        }
    }

    /// Whether a flood from port `ingress` (with reflective relay: `hairpin`) under
    /// `FLOOD_VLAN` word `entry` reaches, in the kernel, every port it must.
    #[inline(always)]
    pub const fn complete(entry: u32, ingress: u32, hairpin: bool) -> bool {
        if entry & DOMAIN_MASK == 0 {
            return false;
        }
        entry & LONE == 0 || (!hairpin && entry >> LONE_SHIFT == ingress)
    }
}

/// The IP source guard's map layouts.
pub mod guard;

/// The key of (port slot, source MAC) in `ALLOWED`.
#[inline(always)]
pub const fn allowed_key(slot: u32, mac: [u8; 6]) -> u64 {
    ((slot as u64) << 48)
        | u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
}

/// What the fast path sent out of one egress port, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastTx {
    /// Frames.
    pub packets: u64,
    /// Their bytes, as sent (tags pushed or popped).
    pub bytes: u64,
}

/// Copies of the frames the fast path carries, for captures and mirrors: the XDP
/// program taps a port's frame in a direction whose bit is set in `TAPS` (by slot) into
/// the `TAP_RING` ring buffer, a [`tap::Record`] each, or counts it in `TAP_LOST` (by
/// slot, per CPU) when the ring is full.
pub mod tap {
    /// Tap the frames a port receives.
    pub const IN: u8 = 1;
    /// Tap the frames a port sends.
    pub const OUT: u8 = 2;
    /// [`Meta::reason`] of a frame over its port's policing limit (the workers'
    /// `policed`).
    pub const POLICED: u8 = 1;
    /// [`Meta::reason`] of a frame the IP source guard refused (`ip_spoofed`).
    pub const IP_SPOOFED: u8 = 2;
    /// [`Meta::reason`] of a frame over its port's storm control limit (`storm`).
    pub const STORM: u8 = 3;
    /// Bytes of the ring buffer (a power of two): about two thousand records.
    pub const RING_BYTES: u32 = 4 << 20;
    /// Bytes of a frame a record keeps: a standard frame with a tag, and more (the fast
    /// path carries frames of one buffer only). A power of two: the XDP program bounds
    /// the length it copies with a mask, which the verifier follows.
    pub const SNAP: usize = 2048;

    /// What a record says of its frame.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Meta {
        /// `bpf_ktime_get_ns` (`CLOCK_MONOTONIC`) when tapped.
        pub ts_ns: u64,
        /// The frame's length.
        pub len: u32,
        /// Bytes of it in the record: `len`, or [`SNAP`] for a longer frame.
        pub caplen: u32,
        /// The port's slot.
        pub slot: u16,
        /// [`IN`] or [`OUT`].
        pub dir: u8,
        /// Why the fast path dropped the frame ([`POLICED`], [`IP_SPOOFED`]); zero: it
        /// did not.
        pub reason: u8,
        /// Padding, zero.
        pub _pad: u32,
    }

    /// One tapped frame in `TAP_RING`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct Record {
        /// What it says.
        pub meta: Meta,
        /// The first [`Meta::caplen`] bytes are the frame's.
        pub data: [u8; SNAP],
    }

    impl core::fmt::Debug for Record {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("Record")
                .field("meta", &self.meta)
                .finish_non_exhaustive()
        }
    }

    /// Bytes of a [`Meta`].
    pub const META_LEN: usize = core::mem::size_of::<Meta>();
}

/// Indices of the sink's counters in `SINK_STATS`.
pub mod sink_stat {
    /// Every frame.
    pub const FRAMES: u32 = 0;
    /// Frames that carried a probe.
    pub const PROBED: u32 = 1;
    /// Probed frames older than one already seen on their flow.
    pub const REORDERED: u32 = 2;
    /// How many counters.
    pub const COUNT: u32 = 3;
}

/// Bits of [`PortConf::flags`].
pub mod port_flags {
    /// Redirect frames into the AF_XDP socket bound to their queue (when one is).
    pub const STEER: u32 = 1 << 0;
    /// Hand frames addressed to [`super::PortConf::host_mac`], ARP requests and IPv6
    /// neighbour solicitations for the host's addresses, and frames to the reserved group
    /// addresses hairpin does not relay, to the kernel's stack.
    pub const PASS_HOST_MAC: u32 = 1 << 1;
}

/// Per-(port, queue) counters kept by the XDP program, one copy per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames the program saw on this queue.
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames redirected into the queue's AF_XDP socket.
    pub steered: u64,
    /// Frames handed to the kernel's stack (`XDP_PASS`): no socket bound, or host traffic.
    pub passed: u64,
    /// Frames dropped (`XDP_DROP`): over their port's policing limit (`METER_DROPS`), or
    /// refused by the fast path's IP source guard (`GUARD_DROPS`).
    pub dropped: u64,
    /// Frames the fast path sent straight to their egress port (not in `steered`).
    pub fast: u64,
    /// Bytes of those frames, as received.
    pub fast_bytes: u64,
    /// Frames whose fate the fast path knew, but whose egress port took none
    /// (not a fast-path port, or down): given to the workers instead (in `steered`).
    pub fast_fallback: u64,
    /// Of `fast`, the frames whose partial TCP or UDP checksum it finished
    /// ([`csum`]).
    pub checksums_finished: u64,
    /// Of `fast`, the frames it flooded ([`flood`]).
    pub fast_flood: u64,
}

impl QueueStats {
    /// Adds `other` into `self`, as when summing the per-CPU copies.
    pub fn accumulate(&mut self, other: &Self) {
        self.rx_packets = self.rx_packets.wrapping_add(other.rx_packets);
        self.rx_bytes = self.rx_bytes.wrapping_add(other.rx_bytes);
        self.steered = self.steered.wrapping_add(other.steered);
        self.passed = self.passed.wrapping_add(other.passed);
        self.dropped = self.dropped.wrapping_add(other.dropped);
        self.fast = self.fast.wrapping_add(other.fast);
        self.fast_bytes = self.fast_bytes.wrapping_add(other.fast_bytes);
        self.fast_fallback = self.fast_fallback.wrapping_add(other.fast_fallback);
        self.checksums_finished = self
            .checksums_finished
            .wrapping_add(other.checksums_finished);
        self.fast_flood = self.fast_flood.wrapping_add(other.fast_flood);
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `PortConf` is `repr(C)`, `Copy`, made only of integers and byte arrays, and
    // has no padding bytes the compiler could leave uninitialised (its size is checked
    // in the tests).
    unsafe impl aya::Pod for super::PortConf {}
    // SAFETY: `QueueStats` is `repr(C)`, `Copy`, and made only of `u64`s: no padding.
    unsafe impl aya::Pod for super::QueueStats {}
    // SAFETY: `repr(C)`, `Copy`, integers only, no padding (checked in the tests).
    unsafe impl aya::Pod for super::FastConf {}
    // SAFETY: `repr(C)`, `Copy`, integers only; `_pad` makes the padding explicit.
    unsafe impl aya::Pod for super::SlotConf {}
    // SAFETY: `repr(C)`, `Copy`, two `u64`s.
    unsafe impl aya::Pod for super::FastTx {}
    // SAFETY: `repr(C)`, `Copy`, two `u64`s.
    unsafe impl aya::Pod for super::meter::Dropped {}
    // SAFETY: `repr(C)`, `Copy`, two `u64`s.
    unsafe impl aya::Pod for super::guard::Drops {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_whole_when_only_its_own_ingress_is_out_of_reach() {
        assert_eq!(flood::domain_of(0), None);
        assert!(!flood::complete(0, 3, false), "no domain: the workers'");
        let all = flood::entry(4, false, None);
        assert_eq!(flood::domain_of(all), Some(4));
        assert!(flood::complete(all, 3, false) && flood::complete(all, 3, true));
        let tagged = flood::entry(15, true, Some(1023));
        assert_eq!(flood::domain_of(tagged), Some(15));
        assert_ne!(tagged & flood::TAGGED, 0);
        assert!(
            flood::complete(tagged, 1023, false),
            "the lone port is the ingress"
        );
        assert!(
            !flood::complete(tagged, 1023, true),
            "with hairpin it needs its copy"
        );
        assert!(
            !flood::complete(tagged, 7, false),
            "port 1023 would miss its copy"
        );
    }

    #[test]
    fn payload_is_behind_one_customer_tag_or_none() {
        let mut head = [0u8; dot1q::TAGGED_HEADER_LEN];
        head[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(dot1q::payload(&head), (0x0800, 14));
        head[12..16].copy_from_slice(&dot1q::tag(10));
        head[16..18].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(dot1q::payload(&head), (0x86dd, 18));
        // A service tag is not looked behind: its TPID is the EtherType.
        head[12..14].copy_from_slice(&dot1q::TPID_8021AD.to_be_bytes());
        assert_eq!(dot1q::payload(&head), (dot1q::TPID_8021AD, 14));
    }

    #[test]
    fn xsk_index_stays_in_the_ports_range_and_the_maps() {
        assert_eq!(xsk_index(0, 1, 0), Some(0));
        assert_eq!(xsk_index(7, 4, 3), Some(10));
        assert_eq!(xsk_index(7, 4, 4), None, "not one of the port's queues");
        assert_eq!(xsk_index(7, 0, 0), None, "a port with no range");
        assert_eq!(
            xsk_index(MAX_PORT_QUEUES - 1, 1, 0),
            Some(MAX_PORT_QUEUES - 1)
        );
        assert_eq!(xsk_index(MAX_PORT_QUEUES - 1, 2, 1), None);
        assert_eq!(xsk_index(MAX_PORT_QUEUES, 1, 0), None);
        assert_eq!(xsk_index(0, MAX_QUEUES + 1, MAX_QUEUES), None);
    }

    #[test]
    fn a_table_value_holds_every_port() {
        for port in [0u16, 255, 256, MAX_PORTS as u16 - 1] {
            let val = fdb::encode(port, 77, fdb::FLAG_STATIC);
            assert_eq!(fdb::port_of(val), Some(port));
            assert_eq!(fdb::slot_of(val), u32::from(port));
            assert_eq!(fdb::stamp_of(val), 77);
            assert_ne!(val & fdb::FLAG_STATIC, 0);
        }
        assert_eq!(fdb::port_of(0), None);
    }

    #[test]
    fn latency_buckets_cover_every_latency_in_order() {
        let mut last = 0;
        for ns in [
            0,
            15,
            16,
            1023,
            1024,
            1056,
            5000,
            123_456,
            10_000_000,
            60_000_000_000,
        ] {
            let b = probe::bucket(ns);
            assert!(b >= last, "{ns} ns went backwards");
            last = b;
            let (low, high) = probe::bucket_range(b);
            assert!(
                low <= ns && ns < high,
                "{ns} ns not in bucket {b} = {low}..{high}"
            );
            assert!(high - low <= low / 32 + 16, "bucket {b} too wide");
        }
        assert_eq!(probe::bucket(u64::MAX), probe::LATENCY_BUCKETS - 1);
    }

    #[test]
    fn the_pseudo_header_sum_is_what_a_stack_leaves_in_a_partial_checksum() {
        // 10.0.0.1 -> 10.0.0.2, TCP, 20 bytes of segment (total length 40): by hand,
        // 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 20 = 0x141d.
        let mut ip = [
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let l4 = csum::ipv4(&ip).unwrap();
        assert_eq!(
            (l4.offset, l4.len, l4.field, l4.pseudo),
            (20, 20, 16, 0x141d)
        );
        // UDP: its field is at 6.
        ip[9] = 17;
        assert_eq!(csum::ipv4(&ip).unwrap().field, 6);
        // Options move the segment, not the sum.
        ip[0] = 0x46;
        ip[3] = 44;
        assert_eq!(csum::ipv4(&ip).unwrap().offset, 24);
        // Fragments, other protocols, not IPv4: none.
        let mut fragment = ip;
        fragment[6] = 0x20;
        assert_eq!(csum::ipv4(&fragment), None);
        let mut icmp = ip;
        icmp[9] = 1;
        assert_eq!(csum::ipv4(&icmp), None);
        let mut v6 = ip;
        v6[0] = 0x65;
        assert_eq!(csum::ipv4(&v6), None);
        // IPv6: ::1 -> ::2, TCP, 20 bytes: 1 + 2 + 6 + 20 = 29.
        let mut ip6 = [0u8; 40];
        ip6[0] = 0x60;
        ip6[5] = 20;
        ip6[6] = 6;
        ip6[23] = 1;
        ip6[39] = 2;
        let l4 = csum::ipv6(&ip6).unwrap();
        assert_eq!((l4.offset, l4.len, l4.field, l4.pseudo), (40, 20, 16, 29));
        ip6[6] = 0; // a hop-by-hop header first: not read
        assert_eq!(csum::ipv6(&ip6), None);
        // A segment too short for its header has no checksum field to finish.
        let mut short = [
            0x45, 0, 0, 30, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        assert_eq!(csum::ipv4(&short), None, "10 bytes of TCP");
        short[9] = 17;
        assert!(csum::ipv4(&short).is_some(), "10 bytes of UDP");
        // UDP's zero is no checksum, never a partial one, whatever the pseudo sum.
        let udp = csum::L4 {
            offset: 20,
            len: 8,
            field: csum::UDP_FIELD,
            pseudo: 0xffff,
        };
        assert!(!csum::is_partial(0, &udp) && csum::is_partial(0xffff, &udp));
        assert!(csum::same(0, 0xffff) && csum::same(0x1234, 0x1234));
        assert!(!csum::same(0x1234, 0x1235));
        assert_eq!(csum::fold(0x1_fffe), 0xffff);
    }

    #[test]
    fn map_value_layouts_are_stable() {
        assert_eq!(core::mem::size_of::<PortConf>(), 24);
        assert_eq!(core::mem::size_of::<QueueStats>(), 80);
        assert_eq!(core::mem::size_of::<FastConf>(), 32);
        assert_eq!(core::mem::size_of::<SlotConf>(), 600);
        assert_eq!(core::mem::size_of::<meter::Meter>(), 16);
        assert_eq!(core::mem::size_of::<fdb::Bucket>(), 64);
        assert_eq!(tap::META_LEN, 24);
        assert_eq!(core::mem::size_of::<tap::Record>(), 24 + 2048);
        assert!(tap::SNAP.is_power_of_two());
        assert_eq!(core::mem::size_of::<guard::Drops>(), 16);
    }
}

/// The layout of an IEEE 802.1Q tag, written once for the XDP program and the workers
/// (the forwarder's view of it is `wire::Dot1qTag`).
///
/// A tag sits right after the two MACs: its TPID where an untagged frame has its
/// EtherType, then the TCI (priority, DEI, VLAN ID), then the inner EtherType.
pub mod dot1q {
    /// The 802.1Q customer tag's TPID.
    pub const TPID_8021Q: u16 = 0x8100;
    /// The 802.1ad service tag's TPID.
    pub const TPID_8021AD: u16 = 0x88a8;
    /// The pre-standard QinQ TPID some switches still send.
    pub const TPID_QINQ_LEGACY: u16 = 0x9100;
    /// Where a tag starts: after the destination and source MACs.
    pub const OFFSET: usize = 12;
    /// Bytes of one tag (TPID and TCI).
    pub const TAG_LEN: usize = 4;
    /// Where the TCI sits in a tagged frame.
    pub const TCI_OFFSET: usize = OFFSET + 2;
    /// Where the inner EtherType sits in a tagged frame.
    pub const INNER_OFFSET: usize = OFFSET + TAG_LEN;
    /// Bytes a tagged frame's header takes: MACs, tag, inner EtherType.
    pub const TAGGED_HEADER_LEN: usize = INNER_OFFSET + 2;
    /// The TCI's VLAN ID bits.
    pub const VID_MASK: u16 = 0x0fff;

    /// The four bytes of an 802.1Q tag carrying `tci`.
    #[inline(always)]
    pub const fn tag(tci: u16) -> [u8; TAG_LEN] {
        let tpid = TPID_8021Q.to_be_bytes();
        let tci = tci.to_be_bytes();
        [tpid[0], tpid[1], tci[0], tci[1]]
    }

    /// The EtherType of the frame whose first bytes are `head`, behind at most one
    /// 802.1Q tag, and where its payload (the L3 header) starts.
    #[inline(always)]
    pub fn payload(head: &[u8; TAGGED_HEADER_LEN]) -> (u16, usize) {
        let be16 = |at: usize| u16::from_be_bytes([head[at], head[at + 1]]);
        if be16(OFFSET) == TPID_8021Q {
            (be16(INNER_OFFSET), TAGGED_HEADER_LEN)
        } else {
            (be16(OFFSET), OFFSET + 2)
        }
    }

    /// Whether `ethertype` is the TPID of a tag that may hide another behind it (a
    /// stacked tag, which hairpin does not forward).
    #[inline(always)]
    pub const fn is_stacking(ethertype: u16) -> bool {
        matches!(ethertype, TPID_8021Q | TPID_8021AD | TPID_QINQ_LEGACY)
    }
}

/// TCP and UDP checksums left partial by an offload.
///
/// A stack that hands a device a segment with `CHECKSUM_PARTIAL` (a veth peer with `tx`
/// on, a guest's virtio-net with `NEEDS_CSUM`) leaves in the TCP or UDP checksum field
/// only the sum of the pseudo-header (addresses, protocol, length), folded and not
/// complemented, for the device to finish. XDP and AF_XDP see the bytes, not the
/// offload's flag, so hairpin recognises such a field by its value: equal to the
/// pseudo-header sum of the packet it is in. The XDP fast path leaves such frames to
/// the workers, which finish the checksum. Written once here for both.
pub mod csum {
    /// IP protocol number of TCP.
    pub const IPPROTO_TCP: u8 = 6;
    /// IP protocol number of UDP.
    pub const IPPROTO_UDP: u8 = 17;
    /// EtherType of IPv4.
    pub const ETH_P_IP: u16 = 0x0800;
    /// EtherType of IPv6.
    pub const ETH_P_IPV6: u16 = 0x86dd;
    /// Bytes of an IPv4 header without options.
    pub const IPV4_LEN: usize = 20;
    /// Bytes of the IPv6 header.
    pub const IPV6_LEN: usize = 40;

    /// A TCP or UDP packet, as its IP header describes it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct L4 {
        /// Where the TCP or UDP header starts, from the IP header's start.
        pub offset: usize,
        /// Bytes of the TCP or UDP header and payload.
        pub len: usize,
        /// Where the checksum field starts, from the TCP or UDP header's start.
        pub field: usize,
        /// The pseudo-header's sum, folded, not complemented: what a partial checksum
        /// field holds.
        pub pseudo: u16,
    }

    /// Where the checksum field of `proto` sits in its header.
    #[inline(always)]
    pub const fn field_offset(proto: u8) -> Option<usize> {
        match proto {
            IPPROTO_TCP => Some(16),
            IPPROTO_UDP => Some(6),
            _ => None,
        }
    }

    /// Where UDP's checksum field sits (TCP's is at 16).
    pub const UDP_FIELD: usize = 6;

    /// The shortest header of the protocol whose checksum field is at `field`.
    #[inline(always)]
    const fn min_header(field: usize) -> usize {
        if field == UDP_FIELD { 8 } else { 20 }
    }

    /// Whether `value`, the checksum field of `l4`, is an offload's partial checksum:
    /// the pseudo-header's sum. A UDP field of 0 means no checksum at all.
    #[inline(always)]
    pub const fn is_partial(value: u16, l4: &L4) -> bool {
        !(value == 0 && l4.field == UDP_FIELD) && same(value, l4.pseudo)
    }

    /// Folds a one's-complement sum to 16 bits.
    #[inline(always)]
    pub const fn fold(mut sum: u64) -> u16 {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        sum as u16
    }

    /// Whether two folded sums are the same one's-complement number (0 and 0xffff both
    /// stand for zero).
    #[inline(always)]
    pub const fn same(a: u16, b: u16) -> bool {
        a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
    }

    #[inline(always)]
    const fn word(b: &[u8], at: usize) -> u64 {
        ((b[at] as u64) << 8) | b[at + 1] as u64
    }

    /// The TCP or UDP packet an IPv4 header (the first 20 bytes, options not needed)
    /// heads: `None` for other protocols, fragments, and a header that does not add up.
    #[inline(always)]
    pub const fn ipv4(ip: &[u8; IPV4_LEN]) -> Option<L4> {
        let ihl = (ip[0] & 0x0f) as usize * 4;
        let total = (word(ip, 2)) as usize;
        // More fragments, or an offset: a fragment carries no whole segment.
        if ip[0] >> 4 != 4 || ihl < IPV4_LEN || total < ihl || word(ip, 6) & 0x3fff != 0 {
            return None;
        }
        let Some(field) = field_offset(ip[9]) else {
            return None;
        };
        let len = total - ihl;
        if len < min_header(field) {
            return None;
        }
        let sum =
            word(ip, 12) + word(ip, 14) + word(ip, 16) + word(ip, 18) + ip[9] as u64 + len as u64;
        Some(L4 {
            offset: ihl,
            len,
            field,
            pseudo: fold(sum),
        })
    }

    /// The TCP or UDP packet an IPv6 header heads directly (no extension header).
    #[inline(always)]
    pub const fn ipv6(ip: &[u8; IPV6_LEN]) -> Option<L4> {
        if ip[0] >> 4 != 6 {
            return None;
        }
        let Some(field) = field_offset(ip[6]) else {
            return None;
        };
        let len = word(ip, 4) as usize;
        if len < min_header(field) {
            return None;
        }
        let mut sum = ip[6] as u64 + len as u64;
        let mut at = 8;
        while at < IPV6_LEN {
            sum += word(ip, at);
            at += 2;
        }
        Some(L4 {
            offset: IPV6_LEN,
            len,
            field,
            pseudo: fold(sum),
        })
    }
}
