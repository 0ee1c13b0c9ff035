//! Cutting a large TCP segment into segments a port's MTU admits: segmentation offload
//! done in software.
//!
//! A sender with TCP segmentation offload (a guest's virtio-net, whose host offers TSO
//! by default; a tap's writer) hands over one segment of up to 64 KiB for the device to
//! cut into MSS-sized ones. The kernel runs XDP on it whole (taps take such frames
//! through generic XDP) and AF_XDP delivers it as one chain of buffers, without its MSS.
//! Sent on as it is, it reaches a guest that may accept it, a veth that drops it for
//! its MTU, or a NIC that cannot send it. [`Cutter`] cuts it as the sender's device
//! would have: segments of at most the ingress port's MTU (which the sender's MSS fits
//! in), each with its IP length, IPv4 identification and header checksum, TCP sequence
//! number, flags (FIN and PSH on the last segment only, CWR on the first only) and a
//! whole TCP checksum computed afresh (the offload left it partial).
use hairpin_common::{csum, dot1q::TAGGED_HEADER_LEN};
use internet_checksum::Checksum;

use super::checksum::transport;

/// Headers a segment can carry at most: Ethernet with one tag, IPv4 with options (or
/// IPv6), TCP with options.
pub const MAX_HEADERS: usize = TAGGED_HEADER_LEN + 60 + 60;

/// Offsets of the TCP header's fields.
mod tcp {
    pub const SEQ: usize = 4;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const CHECKSUM: usize = 16;
    pub const FIN: u8 = 0x01;
    pub const PSH: u8 = 0x08;
    pub const CWR: u8 = 0x80;
}

/// Why a frame cannot be cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uncuttable {
    /// Not a whole TCP segment over IPv4 or IPv6 (untagged or under one tag) with its
    /// headers in the first buffer.
    NotTcp,
    /// The IP header announces more than the frame holds.
    Truncated,
    /// The MTU leaves no room for payload after the headers.
    NoRoom,
}

/// Cuts one large TCP segment; [`Cutter::next_into`] gives the segments in order.
#[derive(Debug)]
pub struct Cutter<'a> {
    first: &'a [u8],
    rest: &'a [&'a [u8]],
    /// Where the IP header starts; its length; the TCP header's length.
    l3: usize,
    ip_len: usize,
    tcp_len: usize,
    v4: bool,
    /// Payload bytes a segment carries at most, and in all.
    mss: usize,
    payload: usize,
    /// Payload bytes given out so far, and segments.
    done: usize,
    index: u16,
    /// The next payload byte: in part `part` (0: `first` past the headers, `k`:
    /// `rest[k - 1]`), at `at`.
    part: usize,
    at: usize,
}

impl<'a> Cutter<'a> {
    /// A cutter of the frame whose first buffer is `first` and whose other buffers are
    /// `rest`, into segments whose IP packets take at most `mtu` bytes.
    pub fn new(first: &'a [u8], rest: &'a [&'a [u8]], mtu: usize) -> Result<Self, Uncuttable> {
        let (l3, l4) = transport(first).ok_or(Uncuttable::NotTcp)?;
        if l4.field != tcp::CHECKSUM {
            return Err(Uncuttable::NotTcp);
        }
        let th = l3 + l4.offset;
        let tcp_len =
            usize::from(*first.get(th + tcp::DATA_OFFSET).ok_or(Uncuttable::NotTcp)? >> 4) * 4;
        let headers = th + tcp_len;
        if tcp_len < 20 || l4.len < tcp_len || headers > first.len() || headers > MAX_HEADERS {
            return Err(Uncuttable::NotTcp);
        }
        let held = first.len() + rest.iter().map(|p| p.len()).sum::<usize>();
        if held < th + l4.len {
            return Err(Uncuttable::Truncated);
        }
        let mss = mtu
            .checked_sub(l4.offset + tcp_len)
            .filter(|&m| m > 0)
            .ok_or(Uncuttable::NoRoom)?;
        Ok(Self {
            first,
            rest,
            l3,
            ip_len: l4.offset,
            tcp_len,
            v4: first[l3] >> 4 == 4,
            mss,
            payload: l4.len - tcp_len,
            done: 0,
            index: 0,
            part: 0,
            at: headers,
        })
    }

    /// How many segments it makes.
    pub fn segments(&self) -> usize {
        self.payload.div_ceil(self.mss).max(1)
    }

    /// Bytes of each segment's headers, Ethernet's included.
    pub fn header_len(&self) -> usize {
        self.l3 + self.ip_len + self.tcp_len
    }

    /// Writes the next segment's headers into `headers` (its first
    /// [`Cutter::header_len`] bytes) and its payload, as slices of the frame, into
    /// `payload`; `None` once every segment is given.
    pub fn next_into(
        &mut self,
        headers: &mut [u8; MAX_HEADERS],
        payload: &mut Vec<&'a [u8]>,
    ) -> Option<()> {
        if self.done >= self.payload && (self.index > 0 || self.payload > 0) {
            return None;
        }
        let n = self.mss.min(self.payload - self.done);
        let (l3, th, hlen) = (self.l3, self.l3 + self.ip_len, self.header_len());
        let h = &mut headers[..hlen];
        h.copy_from_slice(&self.first[..hlen]);
        let l4_len = self.tcp_len + n;
        if self.v4 {
            let total = (self.ip_len + l4_len) as u16;
            h[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            let id = u16::from_be_bytes([h[l3 + 4], h[l3 + 5]]).wrapping_add(self.index);
            h[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
            h[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let mut sum = Checksum::new();
            sum.add_bytes(&h[l3..th]);
            h[l3 + 10..l3 + 12].copy_from_slice(&sum.checksum());
        } else {
            h[l3 + 4..l3 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        let seq = u32::from_be_bytes(h[th + tcp::SEQ..th + tcp::SEQ + 4].try_into().unwrap())
            .wrapping_add(self.done as u32);
        h[th + tcp::SEQ..th + tcp::SEQ + 4].copy_from_slice(&seq.to_be_bytes());
        if self.done + n < self.payload {
            h[th + tcp::FLAGS] &= !(tcp::FIN | tcp::PSH);
        }
        if self.index > 0 {
            h[th + tcp::FLAGS] &= !tcp::CWR;
        }

        payload.clear();
        let mut left = n;
        while left > 0 {
            let part = match self.part {
                0 => self.first,
                k => self.rest[k - 1],
            };
            let take = left.min(part.len() - self.at);
            if take > 0 {
                payload.push(&part[self.at..self.at + take]);
            }
            left -= take;
            self.at += take;
            if self.at == part.len() {
                self.part += 1;
                self.at = 0;
            }
        }

        // The pseudo-header of this segment's length, then the segment itself.
        let ip = &h[l3..];
        let l4 = if self.v4 {
            csum::ipv4(ip[..csum::IPV4_LEN].try_into().unwrap())
        } else {
            csum::ipv6(ip[..csum::IPV6_LEN].try_into().unwrap())
        }
        .expect("the headers parsed as TCP in `new`");
        h[th + tcp::CHECKSUM..th + tcp::CHECKSUM + 2].copy_from_slice(&[0, 0]);
        let mut sum = Checksum::new();
        // The pseudo-header's folded sum counts as one more 16-bit word.
        sum.add_bytes(&l4.pseudo.to_be_bytes());
        sum.add_bytes(&h[th..hlen]);
        for p in payload.iter() {
            sum.add_bytes(p);
        }
        h[th + tcp::CHECKSUM..th + tcp::CHECKSUM + 2].copy_from_slice(&sum.checksum());

        self.done += n;
        self.index = self.index.wrapping_add(1);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 over the concatenation of `parts`: 0 when a checksum in them verifies.
    fn reference(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut sum: u64 = 0;
        for pair in bytes.chunks(2) {
            sum += (u64::from(pair[0]) << 8) | pair.get(1).map_or(0, |&b| u64::from(b));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// A TCP segment carrying `payload` in one Ethernet frame (its checksum left
    /// partial, as an offload leaves it: the cutter must not need it), with `options`
    /// bytes of TCP options and flags FIN|PSH|CWR|ACK.
    fn large(v6: bool, tagged: bool, options: usize, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        if tagged {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        }
        let l4_len = 20 + options + payload.len();
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend((0..32).map(|i| 0x20 + i as u8));
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((l4_len + 20) as u16).to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        }
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x50, 0xff, 0xff, 0xfe, 0x00, 0, 0, 0, 7]);
        f.push((((20 + options) / 4) << 4) as u8);
        f.extend_from_slice(&[0x80 | 0x10 | 0x08 | 0x01, 0xff, 0xff, 0x12, 0x34, 0, 0]);
        f.extend((0..options).map(|_| 1u8)); // NOPs
        f.extend_from_slice(payload);
        f
    }

    /// Cuts `frame` (split into buffers at `cuts`) for `mtu`; returns the segments.
    fn cut(frame: &[u8], cuts: &[usize], mtu: usize) -> Vec<Vec<u8>> {
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(frame.len());
        let parts: Vec<&[u8]> = bounds.windows(2).map(|w| &frame[w[0]..w[1]]).collect();
        let mut cutter = Cutter::new(parts[0], &parts[1..], mtu).unwrap();
        let count = cutter.segments();
        let (mut headers, mut payload) = ([0; MAX_HEADERS], Vec::new());
        let mut out = Vec::new();
        while cutter.next_into(&mut headers, &mut payload).is_some() {
            let mut s = headers[..cutter.header_len()].to_vec();
            for p in &payload {
                s.extend_from_slice(p);
            }
            out.push(s);
        }
        assert_eq!(out.len(), count);
        out
    }

    #[test]
    fn a_large_segment_is_cut_into_valid_segments_that_fit_the_mtu() {
        let payload: Vec<u8> = (0..20_001u32).map(|i| (i * 13 % 251) as u8).collect();
        for v6 in [false, true] {
            for tagged in [false, true] {
                for options in [0, 12] {
                    let frame = large(v6, tagged, options, &payload);
                    let l3 = if tagged { 18 } else { 14 };
                    let (ip, th) = (if v6 { 40 } else { 20 }, 20 + options);
                    let hlen = l3 + ip + th;
                    let mtu = 1500;
                    let case = format!("v6 {v6} tagged {tagged} options {options}");
                    for cuts in [vec![], vec![100, 1800, 1801, 9000], vec![hlen, hlen + 1]] {
                        let segments = cut(&frame, &cuts, mtu);
                        assert_eq!(
                            segments.len(),
                            payload.len().div_ceil(mtu - ip - th),
                            "{case}"
                        );
                        let mut carried = Vec::new();
                        for (i, s) in segments.iter().enumerate() {
                            let last = i == segments.len() - 1;
                            assert!(s.len() - l3 <= mtu, "{case}: segment {i} fits");
                            assert_eq!(s[..12], frame[..12], "{case}: MACs");
                            let ipv = &s[l3..l3 + ip];
                            let t = &s[l3 + ip..];
                            if v6 {
                                let len = u16::from_be_bytes([ipv[4], ipv[5]]) as usize;
                                assert_eq!(len, t.len(), "{case}");
                            } else {
                                let len = u16::from_be_bytes([ipv[2], ipv[3]]) as usize;
                                assert_eq!(len, s.len() - l3, "{case}");
                                assert_eq!(reference(&[ipv]), 0, "{case}: IP header checksum");
                                let id = u16::from_be_bytes([ipv[4], ipv[5]]);
                                assert_eq!(id, 0x1234 + i as u16, "{case}");
                            }
                            let pseudo: Vec<u8> = if v6 {
                                [
                                    &ipv[8..40],
                                    &[0, 0],
                                    &(t.len() as u16).to_be_bytes(),
                                    &[0, 0, 0, 6],
                                ]
                                .concat()
                            } else {
                                [&ipv[12..20], &[0, 6], &(t.len() as u16).to_be_bytes()].concat()
                            };
                            assert_eq!(reference(&[&pseudo, t]), 0, "{case}: TCP checksum of {i}");
                            let seq = u32::from_be_bytes(t[4..8].try_into().unwrap());
                            assert_eq!(
                                seq,
                                0xffff_fe00u32.wrapping_add(carried.len() as u32),
                                "{case}"
                            );
                            let flags = t[13];
                            assert_eq!(flags & 0x10, 0x10, "{case}: ACK kept");
                            assert_eq!(flags & 0x80 != 0, i == 0, "{case}: CWR on the first only");
                            assert_eq!(
                                flags & 0x09 == 0x09,
                                last,
                                "{case}: FIN|PSH on the last only"
                            );
                            assert_eq!(t[12..13], frame[hlen - th + 12..hlen - th + 13], "{case}");
                            assert_eq!(t[20..th], frame[hlen - th + 20..hlen], "{case}: options");
                            carried.extend_from_slice(&t[th..]);
                        }
                        assert_eq!(carried, payload, "{case}: the payload, in order, once");
                    }
                }
            }
        }
    }

    #[test]
    fn what_is_not_a_whole_tcp_segment_is_not_cut() {
        let frame = large(false, false, 0, &[7; 5000]);
        let no = |f: &[u8], rest: &[&[u8]], mtu| Cutter::new(f, rest, mtu).map(drop);
        let mut udp = frame.clone();
        udp[23] = 17;
        assert_eq!(no(&udp, &[], 1500), Err(Uncuttable::NotTcp));
        assert_eq!(no(&frame[..3000], &[], 1500), Err(Uncuttable::Truncated));
        assert_eq!(no(&frame[..3000], &[&frame[3000..]], 1500), Ok(()));
        assert_eq!(no(&frame, &[], 40), Err(Uncuttable::NoRoom));
        assert_eq!(
            no(&frame[..40], &[&frame[40..]], 1500),
            Err(Uncuttable::NotTcp)
        );
        let mut fragment = frame.clone();
        fragment[20] = 0x20;
        assert_eq!(no(&fragment, &[], 1500), Err(Uncuttable::NotTcp));
    }
}
