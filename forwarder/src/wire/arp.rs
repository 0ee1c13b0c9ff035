//! A zero-copy view of an ARP packet (RFC 826) over Ethernet and IPv4: the fields the
//! IP source guard reads (`switch::guard`).
//!
//! [`ArpPacket::new_checked`] verifies the length once; after that no accessor can
//! panic or read past the buffer.
use std::net::Ipv4Addr;

use super::{Mac, Truncated};

/// Byte ranges of an Ethernet/IPv4 ARP packet.
mod field {
    use std::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const TPA: Range<usize> = 24..28;
    pub const LEN: usize = 28;
}

/// Bytes of an ARP packet for Ethernet and IPv4.
pub const ARP_LEN: usize = field::LEN;
/// ARP's operation code of a request.
pub const REQUEST: u16 = 1;

/// A read-only view of an ARP packet (what follows the Ethernet header and its tags).
#[derive(Clone, Copy, Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` after checking it holds the 28 bytes of an Ethernet/IPv4 ARP
    /// packet (whether it is one is [`ArpPacket::is_ethernet_ipv4`]).
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        if buffer.as_ref().len() < field::LEN {
            return Err(Truncated);
        }
        Ok(Self { buffer })
    }

    fn be16(&self, range: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn ipv4(&self, range: std::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[range];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Whether it maps IPv4 addresses to Ethernet ones (hardware type 1, protocol type
    /// 0x0800, address lengths 6 and 4): the only kind whose other fields this view
    /// reads where they are.
    pub fn is_ethernet_ipv4(&self) -> bool {
        let b = self.buffer.as_ref();
        self.be16(field::HTYPE) == 1
            && self.be16(field::PTYPE) == 0x0800
            && b[field::HLEN] == 6
            && b[field::PLEN] == 4
    }

    /// The operation (1 request, 2 reply).
    pub fn operation(&self) -> u16 {
        self.be16(field::OPER)
    }

    /// The sender's hardware (MAC) address.
    pub fn sender_mac(&self) -> Mac {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SHA]);
        Mac(mac)
    }

    /// The sender's IPv4 address (0.0.0.0 in a probe, RFC 5227).
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ipv4(field::SPA)
    }

    /// The target's IPv4 address.
    pub fn target_ip(&self) -> Ipv4Addr {
        self.ipv4(field::TPA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gratuitous ARP reply of 02:..:01 for 10.0.0.5.
    const PACKET: [u8; 28] = [
        0, 1, 0x08, 0, 6, 4, 0, 2, // Ethernet, IPv4, lengths, reply
        2, 0, 0, 0, 0, 1, 10, 0, 0, 5, // sender
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 10, 0, 0, 5, // target
    ];

    #[test]
    fn reads_the_sender_and_the_target() {
        let arp = ArpPacket::new_checked(&PACKET[..]).unwrap();
        assert!(arp.is_ethernet_ipv4());
        assert_eq!(arp.operation(), 2);
        assert_eq!(arp.sender_mac(), Mac([2, 0, 0, 0, 0, 1]));
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(arp.target_ip(), Ipv4Addr::new(10, 0, 0, 5));
    }

    #[test]
    fn a_short_packet_or_another_kind_is_told() {
        assert_eq!(
            ArpPacket::new_checked(&PACKET[..27]).unwrap_err(),
            Truncated
        );
        for (at, value) in [(1, 6), (2, 0x86), (4, 8), (5, 16)] {
            let mut other = PACKET;
            other[at] = value;
            assert!(
                !ArpPacket::new_checked(&other[..])
                    .unwrap()
                    .is_ethernet_ipv4(),
                "byte {at}"
            );
        }
    }
}
