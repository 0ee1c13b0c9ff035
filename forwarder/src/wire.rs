//! Zero-copy views of the frame headers hairpin reads.
//!
//! [`EthernetFrame::new_checked`] verifies the length once; after that no accessor can
//! panic or read past the buffer.
use std::fmt;

/// The 802.1Q tag's layout, shared with the XDP program: TPIDs, offsets, `tag(tci)`.
pub use hairpin_common::dot1q;

pub mod checksum;
pub mod segment;

// The IP source guard's views (`switch::guard`).
pub mod arp;
pub mod ip;
pub mod ndp;

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

/// A packet too short for the header a view reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncated;

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

/// A read-only view of a tagged frame's 802.1Q tag: the TCI and the EtherType behind
/// it. Whether the frame is tagged at all is its [`EthernetFrame::ethertype`].
#[derive(Clone, Copy, Debug)]
pub struct Dot1qTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Dot1qTag<T> {
    /// Wraps the tagged `frame` after checking it holds the MACs, the tag and the inner
    /// EtherType.
    pub fn new_checked(frame: T) -> Result<Self, Runt> {
        if frame.as_ref().len() < dot1q::TAGGED_HEADER_LEN {
            return Err(Runt);
        }
        Ok(Self { buffer: frame })
    }

    fn be16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// The tag's TPID.
    pub fn tpid(&self) -> u16 {
        self.be16(dot1q::OFFSET)
    }

    /// The tag control information: priority, DEI and VLAN ID.
    pub fn tci(&self) -> u16 {
        self.be16(dot1q::TCI_OFFSET)
    }

    /// The VLAN ID (0: a priority tag only).
    pub fn vid(&self) -> u16 {
        self.tci() & dot1q::VID_MASK
    }

    /// The EtherType behind the tag (another TPID when tags are stacked).
    pub fn inner_ethertype(&self) -> u16 {
        self.be16(dot1q::INNER_OFFSET)
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

    /// For one of IEEE 802.1Q's reserved group addresses, `01:80:c2:00:00:00` to
    /// `01:80:c2:00:00:0f` (STP, pause, LACP, 802.1X, LLDP, ...), which a bridge does not
    /// relay: the last nibble, the address's bit in a group forward mask.
    pub const fn reserved_group(self) -> Option<u8> {
        match self.0 {
            [0x01, 0x80, 0xc2, 0x00, 0x00, last] if last < 0x10 => Some(last),
            _ => None,
        }
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

/// A MAC address.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An error parsing a MAC address.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex bytes like 02:00:00:00:00:01)")]
pub struct MacParseError(String);

impl std::str::FromStr for Mac {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| MacParseError(s.to_owned()))?;
            if part.len() != 2 {
                return Err(MacParseError(s.to_owned()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError(s.to_owned()));
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_read_where_it_is_written() {
        let mut frame = [0u8; 64];
        frame[dot1q::OFFSET..dot1q::INNER_OFFSET].copy_from_slice(&dot1q::tag(0xa00a));
        frame[dot1q::INNER_OFFSET..dot1q::TAGGED_HEADER_LEN].copy_from_slice(&[0x08, 0x00]);
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.ethertype(), dot1q::TPID_8021Q);
        let tag = Dot1qTag::new_checked(&frame[..]).unwrap();
        assert_eq!(tag.tpid(), dot1q::TPID_8021Q);
        assert_eq!(tag.tci(), 0xa00a);
        assert_eq!(tag.vid(), 10);
        assert_eq!(tag.inner_ethertype(), 0x0800);
        assert!(Dot1qTag::new_checked(&frame[..17]).is_err());
        assert!(dot1q::is_stacking(dot1q::TPID_8021AD));
        assert!(!dot1q::is_stacking(0x0800));
    }

    #[test]
    fn mac_round_trips_through_text() {
        let mac: Mac = "02:0a:FF:00:10:01".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0x0a, 0xff, 0x00, 0x10, 0x01]);
        assert_eq!(mac.to_string(), "02:0a:ff:00:10:01");
        assert!("02:0a:ff:00:10".parse::<Mac>().is_err());
        assert!("02:0a:ff:00:10:01:02".parse::<Mac>().is_err());
        assert!("02:0a:ff:00:10:zz".parse::<Mac>().is_err());
    }

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
