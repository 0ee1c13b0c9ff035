//! Storm control and ingress policing: a port's [`Limits`], the meters that enforce
//! them ([`Meters`], shared by every worker and the XDP program), and
//! [`decide_metered`], [`decide`] with the port's meters around it.
//!
//! - **Ingress policing** (`police_rate` bits/s, `police_pps`): every frame a policed
//!   port sends into the bridge is metered before it is decided, so a frame over the
//!   limit is dropped ([`DropReason::Policed`]) before its source is learned. The XDP
//!   program's fast path meters the frames it carries in the same meters
//!   (`ebpf/src/fast.rs`, with the settings published in `SlotConf`); the frames it
//!   does not carry come here: each frame is metered once, on the path that carries
//!   it.
//! - **Storm control** (`storm_broadcast`, `storm_multicast`, `storm_unknown_unicast`,
//!   packets/s): a frame the port sends to the broadcast address, to a multicast
//!   address (whatever the verdict sends it to), or to a unicast address the bridge
//!   floods (unknown), once decided, is metered in its class's meter; over the limit it
//!   is dropped ([`DropReason::Storm`]). Such frames never take the fast path (it
//!   takes only unicast to a learned destination), so the workers alone enforce it.
//!
//! The meters are GCRA meters (`hairpin_common::meter`): one word of state each, eight
//! words per port slot, in the XDP program's `METERS` map, mapped into hairpin's memory
//! as the MAC table is ([`Meters::in_shared`]), or memory of their own in the unit
//! tests ([`Meters::owned`]). A worker reads the clock once per turn ([`Now`]); a
//! stale `now` only ever refuses more, never lets more through.
#![allow(unsafe_code)]
use std::{
    fmt,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use hairpin_common::meter::{self, Meter};

use super::{
    Action, DropReason, MAX_PORTS, PortId, Tables, Verdict, decide,
    fdb::{SharedMemory, SharedMemoryError},
};

/// The clock as a worker's turn reads it, once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Table seconds, for the MAC table's stamps ([`decide`]).
    pub secs: u32,
    /// `CLOCK_MONOTONIC` in ns, the XDP program's clock, for the meters.
    pub ns: u64,
}

impl Now {
    /// The clock at `start`, in table seconds since `epoch` and, read now, in
    /// `CLOCK_MONOTONIC` ns (a worker's turn takes both as it starts).
    pub fn at(start: std::time::Instant, epoch: std::time::Instant) -> Self {
        Self {
            secs: start.duration_since(epoch).as_secs() as u32,
            ns: crate::sys::monotonic_ns(),
        }
    }
}

/// Storm control's classes of frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StormClass {
    /// To `ff:ff:ff:ff:ff:ff`.
    Broadcast,
    /// To a multicast (group) address other than broadcast.
    Multicast,
    /// To a unicast address the bridge floods: no MAC table entry.
    UnknownUnicast,
}

impl StormClass {
    /// Every class, in the meters' order.
    pub const ALL: [Self; 3] = [Self::Broadcast, Self::Multicast, Self::UnknownUnicast];

    /// The class as the settings name it (`storm_broadcast`, ...), without the prefix.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Multicast => "multicast",
            Self::UnknownUnicast => "unknown_unicast",
        }
    }

    /// Its meter among the port's words.
    const fn word(self) -> u32 {
        match self {
            Self::Broadcast => meter::BROADCAST,
            Self::Multicast => meter::MULTICAST,
            Self::UnknownUnicast => meter::UNKNOWN_UNICAST,
        }
    }
}

/// The burst a packet limit of `rate` packets/s gets when none is given: a tenth of a
/// second's worth, at least 10 packets.
pub const fn default_packet_burst(rate: u64) -> u64 {
    let tenth = rate / 10;
    if tenth > 10 { tenth } else { 10 }
}

/// The least burst `police_rate` gets when none is given: two 9216-byte jumbo frames.
pub const MIN_DEFAULT_POLICE_BURST: u64 = 2 * 9216;

/// The burst (bytes) a policing rate of `bits_per_second` gets when none is given: half
/// a second's worth, at least [`MIN_DEFAULT_POLICE_BURST`]. (A tenth of a second, OVS's
/// advice, held a TCP stream through the fast path to 47 % of a 100 Mbit/s rate here:
/// the stream's window outgrows the burst and each overflow costs it a loss; half a
/// second let it settle at 96 %: the privileged `limits` test.)
pub const fn default_police_burst(bits_per_second: u64) -> u64 {
    let half = bits_per_second / 16;
    if half > MIN_DEFAULT_POLICE_BURST {
        half
    } else {
        MIN_DEFAULT_POLICE_BURST
    }
}

/// A port's storm control and ingress policing, as configured: `None` is no limit,
/// and a burst not given is the default ([`default_packet_burst`],
/// [`default_police_burst`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Broadcast frames per second the port may send.
    pub storm_broadcast: Option<u32>,
    /// Multicast frames per second (broadcast not included).
    pub storm_multicast: Option<u32>,
    /// Unicast frames per second the bridge floods (unknown destinations).
    pub storm_unknown_unicast: Option<u32>,
    /// The burst of each storm class, in packets.
    pub storm_burst: Option<u32>,
    /// Bits per second the port may send (Ethernet header to the end of the payload;
    /// FCS, preamble and gap not counted).
    pub police_rate: Option<u64>,
    /// The policing burst, in bytes.
    pub police_burst: Option<u64>,
    /// Frames per second the port may send.
    pub police_pps: Option<u32>,
}

/// A limit in force: its rate and burst (packets/s and packets, or bits/s and bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Units per second.
    pub rate: u64,
    /// Units at once.
    pub burst: u64,
}

/// One of a port's limits, as [`Limits::in_force`] lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `police_rate` (bits/s, burst in bytes).
    PoliceRate,
    /// `police_pps`.
    PolicePps,
    /// Storm control of a class.
    Storm(StormClass),
}

impl Limit {
    /// The setting's name: `police_rate`, `police_pps`, `storm_broadcast`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::PoliceRate => "police_rate",
            Self::PolicePps => "police_pps",
            Self::Storm(StormClass::Broadcast) => "storm_broadcast",
            Self::Storm(StormClass::Multicast) => "storm_multicast",
            Self::Storm(StormClass::UnknownUnicast) => "storm_unknown_unicast",
        }
    }

    /// `limit` in words: `police_rate 100 Mbit/s (burst 1250000 bytes)`,
    /// `storm_broadcast 1000 pps (burst 100)`.
    pub fn describe(self, limit: Rate) -> String {
        match self {
            Self::PoliceRate => format!(
                "police_rate {} (burst {} bytes)",
                bits_per_second(limit.rate),
                limit.burst
            ),
            Self::PolicePps | Self::Storm(_) => {
                format!("{} {} pps (burst {})", self.name(), limit.rate, limit.burst)
            }
        }
    }
}

/// `bits` per second in the largest SI unit that says it exactly: `100 Mbit/s`,
/// `1500 kbit/s`, `123 bit/s`.
pub fn bits_per_second(bits: u64) -> String {
    for (unit, name) in [(1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")] {
        if bits >= unit && bits.is_multiple_of(unit) {
            return format!("{} {name}bit/s", bits / unit);
        }
    }
    format!("{bits} bit/s")
}

impl Limits {
    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        self.police().is_none()
            && self.police_packets().is_none()
            && StormClass::ALL.iter().all(|&c| self.storm(c).is_none())
    }

    /// The packets/s limit of storm class `class`, with its burst.
    pub fn storm(&self, class: StormClass) -> Option<Rate> {
        let rate = match class {
            StormClass::Broadcast => self.storm_broadcast,
            StormClass::Multicast => self.storm_multicast,
            StormClass::UnknownUnicast => self.storm_unknown_unicast,
        }
        .filter(|&r| r > 0)?;
        let rate = u64::from(rate);
        Some(Rate {
            rate,
            burst: self
                .storm_burst
                .map_or_else(|| default_packet_burst(rate), u64::from),
        })
    }

    /// The bits/s policing limit, with its burst in bytes.
    pub fn police(&self) -> Option<Rate> {
        let rate = self.police_rate.filter(|&r| r > 0)?;
        Some(Rate {
            rate,
            burst: self
                .police_burst
                .unwrap_or_else(|| default_police_burst(rate)),
        })
    }

    /// The packets/s policing limit, with its burst.
    pub fn police_packets(&self) -> Option<Rate> {
        let rate = u64::from(self.police_pps.filter(|&r| r > 0)?);
        Some(Rate {
            rate,
            burst: default_packet_burst(rate),
        })
    }

    /// Every limit set, policing first.
    pub fn in_force(&self) -> Vec<(Limit, Rate)> {
        let mut out = Vec::new();
        out.extend(self.police().map(|r| (Limit::PoliceRate, r)));
        out.extend(self.police_packets().map(|r| (Limit::PolicePps, r)));
        for class in StormClass::ALL {
            out.extend(self.storm(class).map(|r| (Limit::Storm(class), r)));
        }
        out
    }

    /// The meters' settings.
    pub fn meters(&self) -> PortMeters {
        let storm = StormClass::ALL.map(|class| {
            self.storm(class)
                .map_or(Meter::UNLIMITED, |r| Meter::packets(r.rate, r.burst))
        });
        PortMeters {
            storm,
            police_bytes: self
                .police()
                .map_or(Meter::UNLIMITED, |r| Meter::bytes(r.rate, r.burst)),
            police_packets: self
                .police_packets()
                .map_or(Meter::UNLIMITED, |r| Meter::packets(r.rate, r.burst)),
        }
    }
}

/// One port's meters' settings, as the tables hold them (and the fast path's
/// `SlotConf` its policing ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortMeters {
    /// Storm control, by [`StormClass`].
    pub storm: [Meter; 3],
    /// Policing, bytes.
    pub police_bytes: Meter,
    /// Policing, packets.
    pub police_packets: Meter,
}

impl PortMeters {
    /// Whether the port is policed.
    pub fn polices(&self) -> bool {
        self.police_bytes.is_limited() || self.police_packets.is_limited()
    }

    /// Whether any storm class is limited.
    pub fn storms(&self) -> bool {
        self.storm.iter().any(Meter::is_limited)
    }
}

/// Where the meters' words are.
enum Storage {
    Owned(Box<[AtomicU64]>),
    Shared {
        /// Keeps the region mapped.
        #[allow(dead_code)]
        memory: Box<dyn SharedMemory>,
        words: NonNull<AtomicU64>,
    },
}

/// Every port's meters' state: [`meter::WORDS`] words per port slot, each a meter's
/// theoretical arrival time, shared by every worker and the XDP program.
pub struct Meters {
    words: Storage,
}

// SAFETY: the shared region is only ever accessed through `AtomicU64`s (see
// `Meters::in_shared`'s contract), which are `Sync`; `memory` keeps it mapped.
unsafe impl Send for Meters {}
// SAFETY: as above.
unsafe impl Sync for Meters {}

impl fmt::Debug for Meters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meters")
            .field("shared", &matches!(self.words, Storage::Shared { .. }))
            .finish_non_exhaustive()
    }
}

impl Meters {
    /// Bytes of every port's words (the `METERS` map's values).
    pub const BYTES: usize = meter::ENTRIES as usize * size_of::<u64>();

    /// Meters in memory of their own: nobody else meters (tests, a bridge's checks).
    pub fn owned() -> Self {
        Self {
            words: Storage::Owned((0..meter::ENTRIES).map(|_| AtomicU64::new(0)).collect()),
        }
    }

    /// Meters in `memory`, which the XDP program reads and writes too.
    ///
    /// # Safety
    ///
    /// The region must start 8-byte aligned, hold at least [`Meters::BYTES`] bytes,
    /// and stay mapped while `memory` lives; whoever else touches it must do so only
    /// with aligned 8-byte loads, stores and compare-and-swaps of whole words.
    pub unsafe fn in_shared(memory: Box<dyn SharedMemory>) -> Result<Self, SharedMemoryError> {
        let (start, len) = memory.region();
        if len < Self::BYTES {
            return Err(SharedMemoryError::TooSmall {
                have: len,
                need: Self::BYTES,
            });
        }
        if start.as_ptr().align_offset(align_of::<AtomicU64>()) != 0 {
            return Err(SharedMemoryError::Misaligned);
        }
        Ok(Self {
            words: Storage::Shared {
                words: start.cast(),
                memory,
            },
        })
    }

    fn words(&self) -> &[AtomicU64] {
        match &self.words {
            Storage::Owned(w) => w,
            // SAFETY: `in_shared` checked that the words fit the region, aligned, and
            // the region outlives `self` (held in `memory`).
            Storage::Shared { words, .. } => unsafe {
                std::slice::from_raw_parts(words.as_ptr(), meter::ENTRIES as usize)
            },
        }
    }

    /// The word of `port`'s meter `which`.
    fn word(&self, port: PortId, which: u32) -> Option<&AtomicU64> {
        let index = meter::index(u32::from(port), which)?;
        self.words().get(index as usize)
    }

    /// Charges `units` at `now` (ns) to `port`'s meter `which`, of settings `meter`:
    /// true when admitted (always, unlimited).
    #[inline]
    pub fn take(&self, port: PortId, which: u32, meter: &Meter, units: u64, now: u64) -> bool {
        if !meter.is_limited() {
            return true;
        }
        let Some(word) = self.word(port, which) else {
            return true;
        };
        let mut tat = word.load(Ordering::Relaxed);
        loop {
            let Some(next) = meter.admit(tat, now, units) else {
                return false;
            };
            // A failure means another worker or the XDP program charged it first: try
            // again against theirs (lock-free: someone made progress).
            match word.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Gives back what [`Meters::take`] charged `port`'s meter `which` for `units`: the
    /// frame was refused by the port's other meter, and a frame dropped should charge
    /// none. (Later charges by others stay: the subtraction commutes with them.)
    pub fn refund(&self, port: PortId, which: u32, meter: &Meter, units: u64) {
        if let Some(word) = self.word(port, which)
            && meter.is_limited()
        {
            word.fetch_sub(meter.cost_of(units), Ordering::Relaxed);
        }
    }

    /// Starts `port`'s meters afresh (its limits changed, or the slot has a new port):
    /// a meter left far ahead by slower settings would refuse frames for a while.
    pub fn reset(&self, port: PortId) {
        for which in 0..meter::WORDS {
            if let Some(word) = self.word(port, which) {
                word.store(0, Ordering::Relaxed);
            }
        }
    }

    /// The state of `port`'s meter `which` (0: fresh).
    pub fn state(&self, port: PortId, which: u32) -> u64 {
        self.word(port, which)
            .map_or(0, |w| w.load(Ordering::Relaxed))
    }
}

const _: () = assert!(MAX_PORTS as u32 == hairpin_common::MAX_PORTS);

/// The storm class of `frame` (its destination being its first six bytes) given the
/// verdict's `action`: broadcast or multicast whatever it is sent to, unicast only
/// when flooded; none for a frame dropped anyway.
pub fn storm_class(frame: &[u8], action: Action) -> Option<StormClass> {
    if matches!(action, Action::Drop(_)) {
        return None;
    }
    let dst = frame.get(..6)?;
    if dst == [0xff; 6] {
        Some(StormClass::Broadcast)
    } else if dst[0] & 1 != 0 {
        Some(StormClass::Multicast)
    } else if matches!(action, Action::Flood(_)) {
        Some(StormClass::UnknownUnicast)
    } else {
        None
    }
}

/// The limits of port `ingress` that `frame` is subject to, given the verdict's
/// `action`: its policing, and its storm class's storm control (for `hairpin trace`,
/// which knows the settings, not the meters' state).
pub fn subject_to(
    tables: &Tables,
    frame: &[u8],
    ingress: PortId,
    action: Action,
) -> Vec<(Limit, Rate)> {
    let limits = tables.limits(ingress);
    let class = storm_class(frame, action);
    limits
        .in_force()
        .into_iter()
        .filter(|(limit, _)| match limit {
            Limit::PoliceRate | Limit::PolicePps => true,
            Limit::Storm(c) => Some(*c) == class,
        })
        .collect()
}

/// [`decide`] for `frame` of `len` bytes (the whole frame, every buffer of it)
/// received on `ingress` at `now`, within the port's limits: policed first (a frame
/// over the limit is not decided, so its source is not learned; one the byte meter
/// refuses is given back to the packet meter, so a dropped frame charges neither),
/// then storm control on the verdict.
#[inline]
pub fn decide_metered(
    tables: &Tables,
    frame: &[u8],
    len: usize,
    ingress: PortId,
    now: Now,
) -> Verdict {
    let port = usize::from(ingress);
    if tables.policed.contains(ingress) {
        let m = &tables.port_meters[port];
        let meters = &tables.meters;
        if !meters.take(ingress, meter::POLICE_PACKETS, &m.police_packets, 1, now.ns) {
            return Verdict::drop(DropReason::Policed);
        }
        if !meters.take(
            ingress,
            meter::POLICE_BYTES,
            &m.police_bytes,
            len as u64,
            now.ns,
        ) {
            meters.refund(ingress, meter::POLICE_PACKETS, &m.police_packets, 1);
            return Verdict::drop(DropReason::Policed);
        }
    }
    let verdict = decide(tables, frame, ingress, now.secs);
    if tables.storm.contains(ingress)
        && let Some(class) = storm_class(frame, verdict.action)
    {
        let m = &tables.port_meters[port].storm[class as usize];
        if !tables.meters.take(ingress, class.word(), m, 1, now.ns) {
            return Verdict {
                action: Action::Drop(DropReason::Storm),
                vlan: verdict.vlan,
            };
        }
    }
    verdict
}

#[cfg(test)]
mod tests;
