//! The XDP program's side of the taps (`ebpf/src/tap.rs`): which slots it taps, the ring
//! buffer its copies come in, and what it lost.
use aya::maps::{Array, Map, MapData, MapError, PerCpuArray, RingBuf};
use hairpin_common::tap::{self, META_LEN, Meta};

use crate::switch::DropReason;

/// The XDP program's tap maps.
pub struct XdpTaps {
    flags: Array<MapData, u8>,
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for XdpTaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XdpTaps")
    }
}

impl XdpTaps {
    /// From the program's `TAPS`, `TAP_RING` and `TAP_LOST` maps.
    pub fn new(flags: Map, ring: Map, lost: Map) -> Result<Self, MapError> {
        Ok(Self {
            flags: Array::try_from(flags)?,
            ring: RingBuf::try_from(ring)?,
            lost: PerCpuArray::try_from(lost)?,
        })
    }

    /// Taps `slot`'s frames in the directions `dirs` (0: none).
    pub fn set(&mut self, slot: u32, dirs: u8) -> Result<(), MapError> {
        self.flags.set(slot, dirs, 0)
    }

    /// Hands every copy in the ring to `f`: what the record says, and the bytes kept.
    pub fn drain(&mut self, mut f: impl FnMut(&Meta, &[u8])) {
        while let Some(item) = self.ring.next() {
            if let Some((meta, data)) = parse(&item) {
                f(&meta, data);
            }
        }
    }

    /// Copies of `slot`'s frames lost to a full ring, so far.
    pub fn lost(&self, slot: u32) -> u64 {
        self.lost
            .get(&slot, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }
}

/// Why the fast path dropped a frame, from its record's [`Meta::reason`].
pub fn reason(code: u8) -> Option<DropReason> {
    match code {
        tap::POLICED => Some(DropReason::Policed),
        tap::IP_SPOOFED => Some(DropReason::IpSpoofed),
        tap::STORM => Some(DropReason::Storm),
        _ => None,
    }
}

/// A record's [`Meta`] and its frame's bytes, or none if it is too short to be one.
fn parse(record: &[u8]) -> Option<(Meta, &[u8])> {
    let word = |at: usize, n: usize| record.get(at..at + n);
    let u32_at = |at| word(at, 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let meta = Meta {
        ts_ns: u64::from_ne_bytes(word(0, 8)?.try_into().ok()?),
        len: u32_at(8)?,
        caplen: u32_at(12)?,
        slot: u16::from_ne_bytes(word(16, 2)?.try_into().ok()?),
        dir: *record.get(18)?,
        reason: *record.get(19)?,
        _pad: 0,
    };
    let data = record.get(META_LEN..META_LEN + meta.caplen as usize)?;
    Some((meta, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_read_as_the_program_writes_it() {
        let meta = Meta {
            ts_ns: 123_456_789,
            len: 3000,
            caplen: 4,
            slot: 9,
            dir: 2,
            reason: 0,
            _pad: 0,
        };
        let mut record = Vec::new();
        record.extend(meta.ts_ns.to_ne_bytes());
        record.extend(meta.len.to_ne_bytes());
        record.extend(meta.caplen.to_ne_bytes());
        record.extend(meta.slot.to_ne_bytes());
        record.extend([meta.dir, meta.reason, 0, 0, 0, 0]);
        record.extend(b"abcdxyz");
        assert_eq!(parse(&record), Some((meta, &b"abcd"[..])));
        assert_eq!(parse(&record[..20]), None);
        assert_eq!(reason(0), None);
        assert_eq!(reason(tap::POLICED), Some(DropReason::Policed));
        assert_eq!(reason(tap::STORM), Some(DropReason::Storm));
        assert_eq!(reason(tap::IP_SPOOFED), Some(DropReason::IpSpoofed));
        assert_eq!(reason(200), None, "a code this build does not know");
        assert_eq!(parse(&record[..META_LEN + 3]), None);
    }
}
