//! Meters for storm control and ingress policing, written once for the XDP program and
//! the workers, which share their state: one `u64` per meter, the meter's *theoretical
//! arrival time* (TAT) in `CLOCK_MONOTONIC` nanoseconds, in the `METERS` map that
//! hairpin maps into its memory.
//!
//! The arithmetic is the generic cell rate algorithm (GCRA, ITU-T I.371), the virtual
//! scheduling form of a token bucket: a meter of `rate` units per second lets a unit
//! through every `1/rate` seconds on average, and up to `burst` units at once after an
//! idle spell. A frame of `n` units arriving at `now` is admitted when
//! `tat - now <= tolerance` (the meter is not further ahead of the clock than the burst
//! allows); admitting it moves `tat` to `max(tat, now) + cost(n)`. A refused frame
//! changes nothing. One word is the whole state, so a meter is updated by one
//! compare-and-swap, from any CPU, by the workers and the XDP program alike
//! ([`Meter::admit`] is the step each side's compare-and-swap loop takes).
//!
//! - A packet meter (storm control, `police_pps`) costs a whole number of nanoseconds
//!   per packet, `ceil(1e9 / rate)`, and tolerates `(burst - 1)` of those: exactly
//!   `burst` packets pass at once, then one per interval.
//! - A byte meter (`police_rate`, bits/s) costs `8e9 / rate` ns per byte in 1/65536 ns
//!   steps, rounded up per frame (so it never lets more than the rate through), and
//!   tolerates `burst - 1` bytes' worth: a frame passes while the meter is less than
//!   `burst` bytes ahead, so a burst may overshoot by one frame (never a frame refused
//!   for being larger than the burst).
//!
//! Over any interval of `t` seconds a meter admits at most `rate * t + burst` units
//! (plus one frame, for bytes), whoever admits them. Clock values are compared by their
//! wrapping difference, so the state never needs resetting for time's sake; a `tat` of
//! 0 (a new or reset meter) is simply behind the clock.

/// The bits of a meter's cost per unit below the nanosecond.
pub const FRAC_BITS: u32 = 16;

/// Meter words per port slot in `METERS`: the slot's meters are words
/// `slot * WORDS ..`, one cache line.
pub const WORDS: u32 = 8;

/// Storm control's meter of the broadcast frames a port sends into the bridge.
pub const BROADCAST: u32 = 0;
/// Storm control's meter of its multicast frames (broadcast not included).
pub const MULTICAST: u32 = 1;
/// Storm control's meter of its unicast frames the bridge floods (unknown destination).
pub const UNKNOWN_UNICAST: u32 = 2;
/// Ingress policing's byte meter.
pub const POLICE_BYTES: u32 = 3;
/// Ingress policing's packet meter.
pub const POLICE_PACKETS: u32 = 4;

/// Entries of `METERS`: every slot's words.
pub const ENTRIES: u32 = super::MAX_PORTS * WORDS;

/// The slowest byte meter, in bits per second: 1 kB/s. Slower rates would make a
/// byte's cost too large for the 64-bit arithmetic of a large frame.
pub const MIN_BITS_PER_SECOND: u64 = 8_000;

/// The most units one frame is charged for: the longest frame hairpin carries
/// (a large TCP segment before it is cut) is shorter.
pub const MAX_UNITS: u64 = 1 << 20;

/// The index of `slot`'s meter `meter` in `METERS`, or `None` outside the map.
#[inline(always)]
pub const fn index(slot: u32, meter: u32) -> Option<u32> {
    if slot < super::MAX_PORTS && meter < WORDS {
        Some(slot * WORDS + meter)
    } else {
        None
    }
}

/// One meter's settings: what a unit costs and how far ahead of the clock the meter
/// may run. The default is no limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meter {
    /// Nanoseconds per unit, times `1 << FRAC_BITS`; 0: no limit.
    pub cost: u64,
    /// How far ahead of the clock (ns) the meter may be and still admit: the burst.
    pub tolerance: u64,
}

impl Meter {
    /// No limit.
    pub const UNLIMITED: Self = Self {
        cost: 0,
        tolerance: 0,
    };

    /// A meter of `per_second` packets per second (at least 1) with bursts of `burst`
    /// packets (at least 1).
    #[cfg(any(test, feature = "user"))]
    pub fn packets(per_second: u64, burst: u64) -> Self {
        let interval = 1_000_000_000u64.div_ceil(per_second.max(1));
        Self {
            cost: interval << FRAC_BITS,
            tolerance: clamp(u128::from(burst.max(1) - 1) * u128::from(interval)),
        }
    }

    /// A meter of `bits_per_second` (at least [`MIN_BITS_PER_SECOND`]) whose units are
    /// bytes, with bursts of `burst` bytes (at least 1).
    #[cfg(any(test, feature = "user"))]
    pub fn bytes(bits_per_second: u64, burst: u64) -> Self {
        let rate = u128::from(bits_per_second.max(MIN_BITS_PER_SECOND));
        let cost = (8_000_000_000u128 << FRAC_BITS).div_ceil(rate);
        let tolerance = (u128::from(burst.max(1) - 1) * cost).div_ceil(1 << FRAC_BITS);
        Self {
            cost: cost as u64,
            tolerance: clamp(tolerance),
        }
    }

    /// Whether the meter limits anything.
    #[inline(always)]
    pub const fn is_limited(&self) -> bool {
        self.cost != 0
    }

    /// What `units` cost, in whole nanoseconds (rounded up).
    #[inline(always)]
    pub const fn cost_of(&self, units: u64) -> u64 {
        let units = if units > MAX_UNITS { MAX_UNITS } else { units };
        // Within 64 bits: a packet meter is charged one unit (its cost is below
        // 2^46), a byte meter at most MAX_UNITS (2^20) of at most 2^36 each.
        units
            .wrapping_mul(self.cost)
            .wrapping_add((1 << FRAC_BITS) - 1)
            >> FRAC_BITS
    }

    /// The meter's next `tat` if `units` arriving at `now` are admitted, given its
    /// `tat` now; `None` when they are over the limit (and the meter stays as it is).
    #[inline(always)]
    pub const fn admit(&self, tat: u64, now: u64, units: u64) -> Option<u64> {
        let ahead = tat.wrapping_sub(now) as i64;
        if ahead > self.tolerance as i64 {
            return None;
        }
        let base = if ahead > 0 { tat } else { now };
        Some(base.wrapping_add(self.cost_of(units)))
    }
}

/// A tolerance that fits the signed comparison in [`Meter::admit`].
#[cfg(any(test, feature = "user"))]
fn clamp(ns: u128) -> u64 {
    ns.min(i64::MAX as u128) as u64
}

/// What the XDP program's policing dropped on one port, per CPU (`METER_DROPS`, by
/// slot): the workers count their own.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Frames.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::{sync::atomic::AtomicU64, sync::atomic::Ordering, vec::Vec};

    use super::*;

    /// Admits `units` at `now` on the meter whose state is `tat`, as both sides do.
    fn take(meter: &Meter, tat: &AtomicU64, now: u64, units: u64) -> bool {
        let mut seen = tat.load(Ordering::Relaxed);
        loop {
            let Some(next) = meter.admit(seen, now, units) else {
                return false;
            };
            match tat.compare_exchange_weak(seen, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now_seen) => seen = now_seen,
            }
        }
    }

    #[test]
    fn a_packet_meter_passes_its_burst_at_once_then_its_rate_exactly() {
        let meter = Meter::packets(1000, 100);
        let tat = AtomicU64::new(0);
        let start = 5_000_000_000u64;
        // An idle meter: exactly the burst at one instant.
        let burst = (0..1000).filter(|_| take(&meter, &tat, start, 1)).count();
        assert_eq!(burst, 100);
        // Then, offered far more than the rate for ten seconds (a frame every 10 µs),
        // exactly one per millisecond more.
        let mut passed = 0;
        for step in 1..=1_000_000u64 {
            if take(&meter, &tat, start + step * 10_000, 1) {
                passed += 1;
            }
        }
        assert_eq!(passed, 10_000, "1000 pps over 10 s");
        // Idle for a while: the burst is back, no more.
        let later = start + 20_000_000_000;
        let burst = (0..1000).filter(|_| take(&meter, &tat, later, 1)).count();
        assert_eq!(burst, 100);
    }

    #[test]
    fn a_byte_meter_holds_its_rate_to_within_the_burst_and_a_frame() {
        // 100 Mbit/s: 12.5 MB/s, a burst of 125 000 bytes.
        let meter = Meter::bytes(100_000_000, 125_000);
        assert_eq!(meter.cost_of(1), 80, "80 ns a byte");
        assert_eq!(meter.cost_of(1500), 120_000);
        let tat = AtomicU64::new(0);
        let start = 1_000_000_000u64;
        let mut bytes = 0u64;
        let mut at = start;
        // 1 Gbit/s of mixed frames offered for 2 s.
        let sizes = [64u64, 1514, 590, 1514, 9014];
        let mut i = 0;
        while at < start + 2_000_000_000 {
            let len = sizes[i % sizes.len()];
            i += 1;
            if take(&meter, &tat, at, len) {
                bytes += len;
            }
            at += len * 8; // 1 Gbit/s: 8 ns a byte
        }
        let allowed = 12_500_000 * 2 + 125_000 + 9014;
        assert!(bytes <= allowed, "{bytes} > {allowed}");
        assert!(
            bytes >= 12_500_000 * 2 - 9014,
            "{bytes}: well under the rate"
        );
    }

    #[test]
    fn the_first_frame_of_a_small_burst_passes_whatever_its_size() {
        let meter = Meter::bytes(MIN_BITS_PER_SECOND, 1);
        let tat = AtomicU64::new(0);
        assert!(
            take(&meter, &tat, 1_000, 65_536),
            "an idle meter admits one frame"
        );
        assert!(
            !take(&meter, &tat, 1_000, 64),
            "and then nothing for a while"
        );
        // 64 KiB at 1 kB/s: 65.5 s later the next.
        assert!(take(&meter, &tat, 1_000 + 65_536_000_000, 64));
    }

    #[test]
    fn a_meter_behind_the_clock_and_one_across_the_wrap_both_start_afresh() {
        let meter = Meter::packets(10, 1);
        assert_eq!(
            meter.admit(0, u64::MAX / 2, 1),
            Some(u64::MAX / 2 + 100_000_000)
        );
        let near_wrap = u64::MAX - 10;
        let next = meter.admit(near_wrap, near_wrap, 1).unwrap();
        assert_eq!(next, 100_000_000 - 11, "wrapped");
        assert_eq!(meter.admit(next, near_wrap + 5, 1), None, "still ahead");
        assert!(meter.admit(next, next, 1).is_some());
        assert!(!Meter::UNLIMITED.is_limited() && meter.is_limited());
        assert_eq!(
            index(MAX_PORTS_LAST, POLICE_PACKETS),
            Some(ENTRIES - WORDS + 4)
        );
        assert_eq!(index(super::super::MAX_PORTS, 0), None);
        assert_eq!(index(0, WORDS), None);
    }

    const MAX_PORTS_LAST: u32 = super::super::MAX_PORTS - 1;

    #[test]
    fn threads_racing_on_one_meter_never_pass_more_than_rate_and_burst() {
        // Four threads offer 4000 packets each at instants of their own, over a
        // simulated second; the meter is 1000 pps with a burst of 50.
        let meter = Meter::packets(1000, 50);
        let tat = AtomicU64::new(0);
        let passed: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u64)
                .map(|t| {
                    let (meter, tat) = (&meter, &tat);
                    s.spawn(move || {
                        (0..4000u64)
                            .filter(|i| take(meter, tat, 1_000_000 + i * 250_000 + t, 1))
                            .count() as u64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total: u64 = passed.iter().sum();
        // Each thread's clock runs from 1 ms to 1.001 s: 1000 intervals and the burst,
        // at most; the clocks are not in step, which only ever refuses more.
        assert!(total <= 1000 + 50, "{total} passed");
        assert!(
            total >= 900,
            "{total}: a lost update would pass more, not fewer"
        );
    }
}
