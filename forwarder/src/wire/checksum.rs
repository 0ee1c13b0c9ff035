//! Finishing TCP and UDP checksums that an offload left partial.
//!
//! A veth peer whose stack has `tx` checksumming on, or a guest's virtio-net with
//! `NEEDS_CSUM`, hands over segments whose checksum field holds only the
//! pseudo-header's sum, for the device to finish. XDP and AF_XDP see the bytes without
//! the offload's flag, and a frame sent on as it is arrives with a checksum its
//! receiver rejects. [`finish_partial`] recognises such a field (by its value, as
//! [`hairpin_common::csum`] says) and writes the whole checksum in its place. A frame
//! whose checksum already verifies is left alone, so a complete checksum that happens to
//! equal the pseudo-header sum (one in 65536) is never touched.
//!
//! The cost: reading the IP header and summing the pseudo-header for every TCP or UDP
//! frame, and summing the segment (RFC 1071, the `internet-checksum` crate) only for the
//! frames recognised as partial.
use hairpin_common::{
    csum::{self, IPV4_LEN, IPV6_LEN, L4},
    dot1q::{INNER_OFFSET, OFFSET, TAGGED_HEADER_LEN, TPID_8021Q},
};
use internet_checksum::Checksum;

/// What [`finish_partial`] did to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Not a TCP or UDP segment with a partial checksum: untouched.
    NotPartial,
    /// Its checksum field held the pseudo-header's sum and did not verify: the whole
    /// checksum is written now.
    Finished,
    /// Recognised as partial, but the segment runs past the frame's end: untouched.
    Truncated,
}

/// Finishes the TCP or UDP checksum of the frame whose first buffer is `first` (its
/// headers must lie there) and whose other buffers, for a chain, are `rest`, if an
/// offload left it partial. Frames untagged or under one 802.1Q tag, IPv4 (options
/// too, no fragments) or IPv6 (TCP or UDP right after its header).
pub fn finish_partial(first: &mut [u8], rest: &[&[u8]]) -> Finish {
    let Some((l3, l4)) = transport(first) else {
        return Finish::NotPartial;
    };
    let start = l3 + l4.offset;
    let field = start + l4.field;
    let Some(value) = first.get(field..field + 2) else {
        return Finish::NotPartial;
    };
    if !csum::is_partial(u16::from_be_bytes([value[0], value[1]]), &l4) {
        return Finish::NotPartial;
    }
    // The segment's bytes, the field as it is, across the chain's buffers.
    let mut sum = Checksum::new();
    let mut left = l4.len;
    let head = &first[start.min(first.len())..];
    for part in std::iter::once(head).chain(rest.iter().copied()) {
        let take = left.min(part.len());
        sum.add_bytes(&part[..take]);
        left -= take;
        if left == 0 {
            break;
        }
    }
    if left > 0 {
        return Finish::Truncated;
    }
    // `sum.checksum()` is the complement of the segment's folded sum. With the
    // pseudo-header added back it verifies when the field already held the checksum.
    let whole = sum.checksum();
    let segment = !u16::from_be_bytes(whole);
    if csum::same(
        csum::fold(u64::from(segment) + u64::from(l4.pseudo)),
        0xffff,
    ) {
        return Finish::NotPartial;
    }
    // The field held the pseudo-header's sum, so the segment's sum already counts it:
    // its complement is the checksum. UDP writes a zero checksum as 0xffff (0 means none).
    let udp = l4.field == csum::UDP_FIELD;
    let finished = match whole {
        [0, 0] if udp => [0xff, 0xff],
        other => other,
    };
    first[field..field + 2].copy_from_slice(&finished);
    Finish::Finished
}

/// Where the frame's IP header starts, and the TCP or UDP segment it heads (untagged or
/// under one 802.1Q tag).
pub(crate) fn transport(frame: &[u8]) -> Option<(usize, L4)> {
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (ethertype, l3) = match be16(OFFSET)? {
        TPID_8021Q => (be16(INNER_OFFSET)?, TAGGED_HEADER_LEN),
        other => (other, OFFSET + 2),
    };
    let l4 = match ethertype {
        csum::ETH_P_IP => csum::ipv4(frame.get(l3..l3 + IPV4_LEN)?.try_into().ok()?)?,
        csum::ETH_P_IPV6 => csum::ipv6(frame.get(l3..l3 + IPV6_LEN)?.try_into().ok()?)?,
        _ => return None,
    };
    Some((l3, l4))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame carrying `payload` over TCP or UDP, IPv4 or IPv6, with its
    /// checksum complete (computed independently of the code under test: a plain
    /// RFC 1071 loop over pseudo-header and segment).
    fn frame(v6: bool, udp: bool, tagged: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        if tagged {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        }
        let l4_len = payload.len() + if udp { 8 } else { 20 };
        let proto = if udp { 17u8 } else { 6 };
        let (src, dst): (Vec<u8>, Vec<u8>) = if v6 {
            (
                (0..16).map(|i| 0x20 + i).collect(),
                (0..16).map(|i| 0x40 + i).collect(),
            )
        } else {
            (vec![10, 0, 0, 1], vec![10, 0, 0, 2])
        };
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((l4_len + 20) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        }
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        let start = f.len();
        if udp {
            f.extend_from_slice(&[0x30, 0x39, 0x00, 0x50]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        } else {
            f.extend_from_slice(&[0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0]);
            f.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        }
        f.extend_from_slice(payload);
        let mut pseudo = src.clone();
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
        let c = reference(&[&pseudo, &f[start..]]);
        let c = if udp && c == 0 { 0xffff } else { c };
        let at = start + if udp { 6 } else { 16 };
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// RFC 1071, the slow way, over the concatenation of `parts`.
    fn reference(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut sum: u64 = 0;
        for pair in bytes.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            sum += hi | pair.get(1).map_or(0, |&b| u64::from(b));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// The same frame with its checksum field as an offload leaves it: the
    /// pseudo-header's sum, folded, not complemented.
    fn partial(complete: &[u8]) -> Vec<u8> {
        let mut f = complete.to_vec();
        let (l3, l4) = transport(&f).expect("a TCP or UDP frame");
        let at = l3 + l4.offset + l4.field;
        f[at..at + 2].copy_from_slice(&l4.pseudo.to_be_bytes());
        f
    }

    #[test]
    fn a_partial_checksum_is_finished_to_the_reference_one() {
        for v6 in [false, true] {
            for udp in [false, true] {
                for tagged in [false, true] {
                    for len in [0, 1, 2, 17, 1000, 1401] {
                        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                        let complete = frame(v6, udp, tagged, &payload);
                        let mut f = partial(&complete);
                        if f == complete {
                            // The checksum equals the pseudo-header sum: nothing to find.
                            continue;
                        }
                        let case = format!("v6 {v6} udp {udp} tagged {tagged} len {len}");
                        assert_eq!(finish_partial(&mut f, &[]), Finish::Finished, "{case}");
                        assert_eq!(f, complete, "{case}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_complete_checksum_is_left_alone() {
        for (v6, udp) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut f = frame(v6, udp, false, b"hello, world");
            let before = f.clone();
            assert_eq!(finish_partial(&mut f, &[]), Finish::NotPartial);
            assert_eq!(f, before);
        }
    }

    #[test]
    fn a_chain_is_summed_across_its_buffers_odd_lengths_too() {
        let payload: Vec<u8> = (0..9001u32).map(|i| (i % 251) as u8).collect();
        let complete = frame(false, false, true, &payload);
        let partial = partial(&complete);
        for cut in [100, 101, 2048, 2049] {
            let (head, tail) = partial.split_at(cut);
            let (mid, last) = tail.split_at(tail.len() / 2 + 1);
            let mut first = head.to_vec();
            assert_eq!(finish_partial(&mut first, &[mid, last]), Finish::Finished);
            assert_eq!(first[..], complete[..cut], "cut at {cut}");
        }
    }

    #[test]
    fn other_frames_and_short_ones_are_untouched() {
        let complete = frame(false, false, false, b"abc");
        let mut f = partial(&complete);
        // Missing the segment's last byte.
        f.pop();
        let before = f.clone();
        assert_eq!(finish_partial(&mut f, &[]), Finish::Truncated);
        assert_eq!(f, before);
        // An ICMP packet, an ARP frame, a runt.
        let mut icmp = complete.clone();
        icmp[23] = 1;
        assert_eq!(finish_partial(&mut icmp, &[]), Finish::NotPartial);
        let mut arp = complete.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(finish_partial(&mut arp, &[]), Finish::NotPartial);
        assert_eq!(finish_partial(&mut [0u8; 10], &[]), Finish::NotPartial);
        // A fragment carries no whole segment.
        let mut fragment = partial(&complete);
        fragment[20] = 0x20; // more fragments
        assert_eq!(finish_partial(&mut fragment, &[]), Finish::NotPartial);
    }

    #[test]
    fn udp_without_a_checksum_stays_without() {
        let mut f = frame(false, true, false, b"no checksum");
        f[40..42].copy_from_slice(&[0, 0]);
        let before = f.clone();
        assert_eq!(finish_partial(&mut f, &[]), Finish::NotPartial);
        assert_eq!(f, before);
    }
}
