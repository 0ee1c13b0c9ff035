//! Zero-copy views of the IPv4 and IPv6 headers, and the walk over IPv6's extension
//! headers to the upper-layer protocol: what the IP source guard (`switch::guard`)
//! reads of a frame.
//!
//! `new_checked` verifies a header once (its version, its lengths against the buffer);
//! after that no accessor can panic or read past the buffer. A header that does not add
//! up is [`Malformed`], with what is wrong, as a receiver would refuse it.
use std::net::{Ipv4Addr, Ipv6Addr};

/// A header that does not add up, and what is wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of IGMP.
pub const IPPROTO_IGMP: u8 = 2;
/// IPv6's fragment header.
pub const IPPROTO_FRAGMENT: u8 = 44;
/// IPv6's authentication header.
pub const IPPROTO_AH: u8 = 51;

/// Extension headers [`upper_layer`] walks at most before it gives up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Byte ranges of the IPv4 header.
mod v4 {
    use std::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const PROTOCOL: usize = 9;
    pub const SRC: Range<usize> = 12..16;
    pub const MIN_LEN: usize = 20;
}

/// Byte ranges of the IPv6 header.
mod v6 {
    use std::ops::Range;

    pub const VERSION: usize = 0;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC: Range<usize> = 8..24;
    pub const LEN: usize = 40;
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A read-only view of an IPv4 packet.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` (the packet, and any Ethernet padding after it; or its start,
    /// a jumbo frame's first buffer) after checking the header: version 4, a header
    /// length of at least 20 bytes within the total length and within the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let b = buffer.as_ref();
        if b.len() < v4::MIN_LEN {
            return Err(Malformed("shorter than an IPv4 header"));
        }
        if b[v4::VER_IHL] >> 4 != 4 {
            return Err(Malformed("IPv4 header of another version"));
        }
        let header = usize::from(b[v4::VER_IHL] & 0x0f) * 4;
        let total = usize::from(be16(b, v4::TOTAL_LEN.start));
        if header < v4::MIN_LEN || header > total {
            return Err(Malformed("IPv4 header length outside its packet"));
        }
        // A longer packet goes on in the frame's next buffers.
        if header > b.len() {
            return Err(Malformed("IPv4 header longer than the frame"));
        }
        Ok(Self { buffer })
    }

    /// The source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[v4::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The protocol of the payload.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[v4::PROTOCOL]
    }

    /// Where in the packet its payload starts: past the fragment's first byte for any
    /// fragment but the first.
    pub fn fragment_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), v4::FLAGS_FRAG.start) & 0x1fff
    }

    /// The payload: from the end of the header (options included) to the total length,
    /// or to the buffer's end where the packet goes on in a next buffer.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let header = usize::from(b[v4::VER_IHL] & 0x0f) * 4;
        let total = usize::from(be16(b, v4::TOTAL_LEN.start)).min(b.len());
        &b[header..total]
    }
}

/// A read-only view of an IPv6 packet.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` (the packet, and any Ethernet padding after it; or its start,
    /// a jumbo frame's first buffer) after checking the header: version 6.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let b = buffer.as_ref();
        if b.len() < v6::LEN {
            return Err(Malformed("shorter than an IPv6 header"));
        }
        if b[v6::VERSION] >> 4 != 6 {
            return Err(Malformed("IPv6 header of another version"));
        }
        Ok(Self { buffer })
    }

    /// The source address.
    pub fn src(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[v6::SRC]);
        Ipv6Addr::from(a)
    }

    /// The header that follows this one (an extension header, or the upper layer).
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[v6::NEXT_HEADER]
    }

    /// The payload, extension headers included, as long as the payload length says
    /// (or to the buffer's end where the packet goes on in a next buffer).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let len = usize::from(be16(b, v6::PAYLOAD_LEN.start)).min(b.len() - v6::LEN);
        &b[v6::LEN..v6::LEN + len]
    }
}

/// Which part of a fragmented packet an IPv6 packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment: no fragment header.
    Whole,
    /// A fragment header with offset 0 (the first fragment, or an atomic one): the
    /// upper layer's header starts here.
    First,
    /// A later fragment: what follows is the middle of the upper layer's data.
    Later,
}

/// Where an IPv6 packet's upper layer starts, behind its extension headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpperLayer {
    /// Its protocol (59: none; 50, ESP: the rest is encrypted).
    pub protocol: u8,
    /// Where it starts in the payload.
    pub offset: usize,
    /// Whether the packet is a fragment.
    pub fragment: Fragment,
}

/// Walks the extension headers of an IPv6 payload whose first header is `next` to
/// its upper layer, at most [`MAX_EXTENSION_HEADERS`] of them: hop-by-hop, routing,
/// destination options, mobility, HIP, shim6 and the experimental ones (a length in
/// 8-byte units), the authentication header (in 4-byte units) and the fragment header
/// (8 bytes; a later fragment ends the walk, its upper layer's header being in the
/// first). A header cut short by the payload's end, or one header too many, is
/// [`Malformed`].
pub fn upper_layer(mut next: u8, payload: &[u8]) -> Result<UpperLayer, Malformed> {
    let mut at = 0;
    let mut fragment = Fragment::Whole;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            0 | 43 | 60 | 135 | 139 | 140 | 253 | 254 => payload
                .get(at + 1)
                .map(|&units| (usize::from(units) + 1) * 8),
            IPPROTO_AH => payload
                .get(at + 1)
                .map(|&units| (usize::from(units) + 2) * 4),
            IPPROTO_FRAGMENT => Some(8),
            protocol => {
                return Ok(UpperLayer {
                    protocol,
                    offset: at,
                    fragment,
                });
            }
        };
        let Some(header) = len.and_then(|len| payload.get(at..at + len)) else {
            return Err(Malformed("IPv6 extension header cut short"));
        };
        if next == IPPROTO_FRAGMENT {
            fragment = if be16(header, 2) & 0xfff8 == 0 {
                Fragment::First
            } else {
                Fragment::Later
            };
        }
        next = header[0];
        at += header.len();
        if fragment == Fragment::Later {
            return Ok(UpperLayer {
                protocol: next,
                offset: at,
                fragment,
            });
        }
    }
    if is_extension_header(next) {
        return Err(Malformed("more IPv6 extension headers than hairpin reads"));
    }
    Ok(UpperLayer {
        protocol: next,
        offset: at,
        fragment,
    })
}

/// Whether IPv6 next header `next` is one of the extension headers [`upper_layer`]
/// walks.
pub const fn is_extension_header(next: u8) -> bool {
    matches!(next, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140 | 253 | 254)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(total: u16, ihl: u8) -> Vec<u8> {
        let mut p = vec![0u8; 64];
        p[0] = 0x40 | ihl;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[6] = 0x20; // more fragments, offset 0
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 0, 0, 5]);
        p
    }

    #[test]
    fn an_ipv4_header_is_read_within_its_total_length() {
        let p = ipv4(28, 5);
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.src(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(ip.protocol(), 17);
        assert_eq!(ip.fragment_offset(), 0);
        assert_eq!(
            ip.payload().len(),
            8,
            "padding after the total length is not payload"
        );
        let options = ipv4(32, 6);
        assert_eq!(
            Ipv4Packet::new_checked(&options[..])
                .unwrap()
                .payload()
                .len(),
            8
        );
        let mut later = ipv4(28, 5);
        later[6..8].copy_from_slice(&[0x00, 0x10]);
        assert_eq!(
            Ipv4Packet::new_checked(&later[..])
                .unwrap()
                .fragment_offset(),
            16
        );
    }

    #[test]
    fn an_ipv4_header_that_does_not_add_up_is_malformed() {
        assert!(Ipv4Packet::new_checked(&ipv4(28, 5)[..19]).is_err());
        assert!(Ipv4Packet::new_checked(&ipv4(28, 4)[..]).is_err(), "IHL 4");
        assert!(
            Ipv4Packet::new_checked(&ipv4(19, 5)[..]).is_err(),
            "total < header"
        );
        // Longer than this buffer: the rest is in the frame's next ones.
        let jumbo = ipv4(8000, 5);
        let ip = Ipv4Packet::new_checked(&jumbo[..]).unwrap();
        assert_eq!(ip.payload().len(), jumbo.len() - 20);
        let mut v6 = ipv4(28, 5);
        v6[0] = 0x65;
        assert!(Ipv4Packet::new_checked(&v6[..]).is_err());
    }

    fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p[6] = next;
        p[8] = 0xfd;
        p[23] = 5;
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn an_ipv6_header_is_read_within_its_payload_length() {
        let mut p = ipv6(58, &[135, 0, 0, 0]);
        p.extend_from_slice(&[0xee; 6]); // padding
        let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.src(), "fd00::5".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.next_header(), 58);
        assert_eq!(ip.payload(), [135, 0, 0, 0]);
        assert!(Ipv6Packet::new_checked(&p[..39]).is_err());
        // Past this buffer: the rest is in the frame's next ones.
        p[5] = 11;
        assert_eq!(
            Ipv6Packet::new_checked(&p[..]).unwrap().payload().len(),
            p.len() - 40
        );
        p[5] = 4;
        p[0] = 0x40;
        assert!(Ipv6Packet::new_checked(&p[..]).is_err(), "version 4");
    }

    #[test]
    fn the_walk_skips_extension_headers_to_the_upper_layer() {
        // Hop-by-hop (8 bytes), destination options (16), then ICMPv6.
        let mut payload = vec![60, 0, 0, 0, 0, 0, 0, 0, 58, 1];
        payload.resize(24, 0);
        payload.push(136);
        let up = upper_layer(0, &payload).unwrap();
        assert_eq!(
            up,
            UpperLayer {
                protocol: 58,
                offset: 24,
                fragment: Fragment::Whole
            }
        );
        // AH counts 4-byte units, plus two.
        let ah = [6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(upper_layer(IPPROTO_AH, &ah).unwrap().offset, 12);
        // The upper layer alone.
        assert_eq!(upper_layer(6, &[]).unwrap().offset, 0);
        // Cut short.
        assert!(upper_layer(0, &payload[..7]).is_err());
        assert!(upper_layer(0, &[]).is_err());
    }

    #[test]
    fn fragments_say_which_they_are() {
        let first = [58, 0, 0, 1, 0, 0, 0, 1];
        assert_eq!(
            upper_layer(IPPROTO_FRAGMENT, &first).unwrap().fragment,
            Fragment::First
        );
        let later = [58, 0, 0x05, 0x00, 0, 0, 0, 1];
        let up = upper_layer(IPPROTO_FRAGMENT, &later).unwrap();
        assert_eq!((up.protocol, up.fragment), (58, Fragment::Later));
    }

    #[test]
    fn too_many_extension_headers_are_malformed() {
        let mut payload = Vec::new();
        for _ in 0..MAX_EXTENSION_HEADERS {
            payload.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
        }
        let mut last = payload.clone();
        last[payload.len() - 8] = 6;
        assert_eq!(upper_layer(60, &last).unwrap().protocol, 6);
        payload.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            upper_layer(60, &payload),
            Err(Malformed("more IPv6 extension headers than hairpin reads")),
            "a ninth header"
        );
    }
}
