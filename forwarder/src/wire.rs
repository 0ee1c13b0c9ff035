//! Zero-copy views of the frame headers hairpin reads.
//!
//! [`EthernetFrame::new_checked`] verifies the length once; after that no accessor can
//! panic or read past the buffer.
use crate::control::port::Mac;

/// Byte ranges of the Ethernet header.
mod field {
    use std::ops::Range;

    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const HEADER_LEN: usize = 14;
}

/// Length of an Ethernet header without tags.
pub const ETHERNET_HEADER_LEN: usize = field::HEADER_LEN;

/// A frame too short to hold an Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runt;

/// A read-only view of an Ethernet frame.
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds at least an Ethernet header.
    pub fn new_checked(buffer: T) -> Result<Self, Runt> {
        if buffer.as_ref().len() < field::HEADER_LEN {
            return Err(Runt);
        }
        Ok(Self { buffer })
    }

    fn mac_at(&self, range: std::ops::Range<usize>) -> Mac {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[range]);
        Mac(mac)
    }

    /// The destination MAC.
    pub fn dst(&self) -> Mac {
        self.mac_at(field::DST)
    }

    /// The source MAC.
    pub fn src(&self) -> Mac {
        self.mac_at(field::SRC)
    }

    /// The outer EtherType (0x8100 for an 802.1Q tag).
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The whole frame.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl Mac {
    /// The broadcast address.
    pub const BROADCAST: Self = Self([0xff; 6]);
    /// The all-zero address, never a valid source.
    pub const ZERO: Self = Self([0; 6]);

    /// Group (multicast or broadcast) address: the I/G bit is set.
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Whether a frame from this address may be learned: unicast and not all-zero.
    pub fn is_learnable(self) -> bool {
        !self.is_multicast() && self != Self::ZERO
    }

    /// The address as the low 48 bits of a `u64`.
    pub const fn to_u64(self) -> u64 {
        let m = self.0;
        u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 14] = [
        0x02, 0, 0, 0, 0, 0x02, // dst
        0x02, 0, 0, 0, 0, 0x01, // src
        0x08, 0x00, // IPv4
    ];

    #[test]
    fn reads_header_fields() {
        let frame = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(frame.dst(), Mac([2, 0, 0, 0, 0, 2]));
        assert_eq!(frame.src(), Mac([2, 0, 0, 0, 0, 1]));
        assert_eq!(frame.ethertype(), 0x0800);
    }

    #[test]
    fn rejects_runts() {
        assert_eq!(EthernetFrame::new_checked(&FRAME[..13]).unwrap_err(), Runt);
        assert_eq!(EthernetFrame::new_checked(&[][..]).unwrap_err(), Runt);
    }

    #[test]
    fn classifies_addresses() {
        assert!(Mac::BROADCAST.is_multicast());
        assert!(Mac([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!Mac([0x02, 0, 0, 0, 0, 1]).is_multicast());
        assert!(!Mac::ZERO.is_learnable());
        assert!(!Mac::BROADCAST.is_learnable());
        assert!(Mac([0x02, 0, 0, 0, 0, 1]).is_learnable());
        assert_eq!(Mac([1, 2, 3, 4, 5, 6]).to_u64(), 0x0102_0304_0506);
    }
}
