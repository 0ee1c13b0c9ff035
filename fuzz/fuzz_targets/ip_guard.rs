//! The IP source guard (`hairpin::switch::guard`) against a model of its rules (README,
//! "IP source guard"; the module doc) written here from scratch, byte by byte: for every
//! frame, the guard passes it exactly when the model does, and the fast path's rule
//! (`IpGuard::fast_path`, which `ebpf/src/guard.rs` follows) never passes a frame the
//! guard refuses nor drops one it passes.
//!
//! The input: the allowed prefixes (a byte of bits over a palette of eight, then
//! `b % 4` more, each a family byte, a length byte and the address's bytes, its host
//! bits cleared), the frame's source MAC (`b % 4 == 0`: six bytes of input, else the
//! VM's), then the frame: a kind byte (`% 5`: raw, ARP, IPv4, IPv6, another EtherType)
//! and a tag byte (up to three tags of four TPIDs), and for raw frames the rest of the
//! input as the bytes after the source MAC, for the others their fields, each picked
//! from a palette of meaningful values or taken raw (the layouts are in the builders
//! below). A flag byte may then corrupt a length field.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hairpin::{
    switch::guard::{FastGuard, IpGuard, IpPrefix},
    wire::Mac,
};
use hairpin_fuzz::Input;
use libfuzzer_sys::fuzz_target;

const VM: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const OTHER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];

// The model ---------------------------------------------------------------------------

/// An allowed prefix, as the model keeps it: the address's bits and how many count.
#[derive(Clone, Copy, Debug)]
enum Allowed {
    V4(u32, u8),
    V6(u128, u8),
}

/// Whether the first `len` bits of `a` and `b` (of `width`) are equal, bit by bit.
fn same_bits(a: u128, b: u128, len: u8, width: u8) -> bool {
    (0..len).all(|i| {
        let bit = u32::from(width - 1 - i);
        (a >> bit) & 1 == (b >> bit) & 1
    })
}

struct Model<'a> {
    allowed: &'a [Allowed],
    mac: [u8; 6],
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(*b.get(at)?) << 8 | usize::from(*b.get(at + 1)?))
}

impl Model<'_> {
    fn allows4(&self, a: [u8; 4]) -> bool {
        let a = u32::from_be_bytes(a);
        self.allowed.iter().any(|p| match *p {
            Allowed::V4(net, len) => same_bits(u128::from(a), u128::from(net), len, 32),
            Allowed::V6(..) => false,
        })
    }

    fn link_local(&self) -> [u8; 16] {
        let m = self.mac;
        let mut a = [0u8; 16];
        a[0] = 0xfe;
        a[1] = 0x80;
        a[8..16].copy_from_slice(&[m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
        a
    }

    fn own6(&self, a: [u8; 16]) -> bool {
        let bits = u128::from_be_bytes(a);
        a == self.link_local()
            || self.allowed.iter().any(|p| match *p {
                Allowed::V6(net, len) => same_bits(bits, net, len, 128),
                Allowed::V4(..) => false,
            })
    }

    /// Whether the guard should pass `frame`.
    fn passes(&self, frame: &[u8]) -> bool {
        let mut at = 12;
        let mut tags = 0;
        let ethertype = loop {
            let Some(t) = be16(frame, at) else {
                return false;
            };
            if ![0x8100, 0x88a8, 0x9100].contains(&t) {
                break t;
            }
            if tags == 2 {
                return false;
            }
            tags += 1;
            at += 4;
        };
        let l3 = &frame[at + 2..];
        match ethertype {
            0x0806 => self.arp(l3),
            0x0800 => self.ipv4(l3).unwrap_or(false),
            0x86dd => self.ipv6(l3).unwrap_or(false),
            _ => true,
        }
    }

    fn arp(&self, b: &[u8]) -> bool {
        if b.len() < 28 || b[..6] != [0, 1, 8, 0, 6, 4] || b[8..14] != self.mac {
            return false;
        }
        let sender = [b[14], b[15], b[16], b[17]];
        let target = [b[24], b[25], b[26], b[27]];
        self.allows4(sender) || (sender == [0; 4] && b[6..8] == [0, 1] && self.allows4(target))
    }

    fn ipv4(&self, b: &[u8]) -> Option<bool> {
        let first = *b.first()?;
        let header = usize::from(first & 15) * 4;
        let total = be16(b, 2)?;
        // The packet may go on in the frame's next buffers: only its header must be
        // in this one.
        if b.len() < 20 || first >> 4 != 4 || header < 20 || header > total || header > b.len() {
            return Some(false);
        }
        let total = total.min(b.len());
        let src = [b[12], b[13], b[14], b[15]];
        if self.allows4(src) {
            return Some(true);
        }
        if src != [0; 4] {
            return Some(false);
        }
        let first_fragment = be16(b, 6)? & 0x1fff == 0;
        let udp = &b[header..total];
        Some(
            b[9] == 2
                || (b[9] == 17 && first_fragment && udp.len() >= 4 && udp[..4] == [0, 68, 0, 67]),
        )
    }

    fn ipv6(&self, b: &[u8]) -> Option<bool> {
        if b.len() < 40 || b[0] >> 4 != 6 {
            return Some(false);
        }
        // The packet may go on in the frame's next buffers.
        let len = be16(b, 4)?.min(b.len() - 40);
        let payload = &b[40..40 + len];
        let mut src = [0u8; 16];
        src.copy_from_slice(&b[8..24]);
        // The extension headers, eight at most.
        let mut next = b[6];
        let mut at = 0;
        let mut headers = 0;
        let mut fragment = false;
        let mut later = false;
        loop {
            let size = match next {
                0 | 43 | 60 | 135 | 139 | 140 | 253 | 254 => (usize::from(*payload.get(at + 1)?) + 1) * 8,
                51 => (usize::from(*payload.get(at + 1)?) + 2) * 4,
                44 => 8,
                _ => break,
            };
            if headers == 8 || at + size > payload.len() {
                return Some(false);
            }
            if next == 44 {
                fragment = true;
                later = be16(payload, at + 2)? >> 3 != 0;
            }
            next = payload[at];
            at += size;
            headers += 1;
            if later {
                break;
            }
        }
        let icmp = (next == 58 && !later).then(|| &payload[at..]);
        let kind = match icmp {
            Some(m) => Some(*m.first()?),
            None => None,
        };
        if !self.own6(src) {
            let exempt = src == [0; 16] && matches!(kind, Some(131 | 133 | 135 | 143));
            if !exempt {
                return Some(false);
            }
        }
        let (Some(m), Some(kind)) = (icmp, kind) else {
            return Some(true);
        };
        if !(133..=137).contains(&kind) {
            return Some(true);
        }
        if fragment {
            return Some(false);
        }
        if kind == 137 {
            return Some(true);
        }
        let fixed = [8, 16, 24, 24][usize::from(kind - 133)];
        if m.len() < fixed {
            return Some(false);
        }
        if kind == 136 || (kind == 135 && src == [0; 16]) {
            let mut target = [0u8; 16];
            target.copy_from_slice(&m[8..24]);
            if !self.own6(target) {
                return Some(false);
            }
        }
        let mut options = &m[fixed..];
        while !options.is_empty() {
            if options.len() < 2 || options[1] == 0 {
                return Some(false);
            }
            let size = usize::from(options[1]) * 8;
            if size > options.len() {
                return Some(false);
            }
            if (options[0] == 1 || options[0] == 2) && (size != 8 || options[2..8] != self.mac) {
                return Some(false);
            }
            options = &options[size..];
        }
        Some(true)
    }
}

// The frames --------------------------------------------------------------------------

/// The palette of prefixes the first byte's bits choose.
const PALETTE: [&str; 8] = [
    "10.0.0.5/32",
    "10.0.0.0/24",
    "fd00::5/128",
    "fd00::/64",
    "fe80::/64",
    "0.0.0.0/0",
    "::/0",
    "10.0.0.6/31",
];

fn prefixes(input: &mut Input<'_>) -> Vec<IpPrefix> {
    let bits = input.byte();
    let mut out: Vec<IpPrefix> = (0..8)
        .filter(|i| bits & (1 << i) != 0)
        .map(|i| PALETTE[i].parse().expect("a palette prefix"))
        .collect();
    for _ in 0..input.byte() % 4 {
        let v6 = input.byte() & 1 == 1;
        let len = input.byte();
        let addr: IpAddr = if v6 {
            let mut a = [0u8; 16];
            a.copy_from_slice(&padded(input.take(16), 16));
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            let a = padded(input.take(4), 4);
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        };
        let len = len % if v6 { 129 } else { 33 };
        let cleared = clear_host_bits(addr, len);
        out.push(IpPrefix::new(cleared, len).expect("host bits cleared"));
    }
    out
}

fn padded(bytes: &[u8], n: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(n, 0);
    v
}

fn clear_host_bits(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mut bits = u32::from(a);
            for i in len..32 {
                bits &= !(1 << (31 - i));
            }
            IpAddr::V4(Ipv4Addr::from(bits))
        }
        IpAddr::V6(a) => {
            let mut bits = u128::from(a);
            for i in len..128 {
                bits &= !(1 << (127 - i));
            }
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

fn addr4(input: &mut Input<'_>) -> [u8; 4] {
    match input.byte() % 6 {
        0 => [10, 0, 0, 5],
        1 => [10, 0, 0, 6],
        2 => [0; 4],
        3 => [10, 0, 1, 9],
        4 => [10, 0, 0, 7],
        _ => padded(input.take(4), 4).try_into().expect("4 bytes"),
    }
}

fn addr6(input: &mut Input<'_>, mac: [u8; 6]) -> [u8; 16] {
    let link_local = |m: [u8; 6]| {
        Model {
            allowed: &[],
            mac: m,
        }
        .link_local()
    };
    match input.byte() % 7 {
        0 => "fd00::5".parse::<Ipv6Addr>().expect("an address").octets(),
        1 => "fd00::6".parse::<Ipv6Addr>().expect("an address").octets(),
        2 => [0; 16],
        3 => link_local(mac),
        4 => link_local(OTHER),
        5 => "fe80::1".parse::<Ipv6Addr>().expect("an address").octets(),
        _ => padded(input.take(16), 16).try_into().expect("16 bytes"),
    }
}

fn arp(input: &mut Input<'_>, mac: [u8; 6]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1 + input.byte() % 2];
    a.extend_from_slice(if input.byte() % 4 == 0 { &OTHER } else { &mac });
    a.extend_from_slice(&addr4(input));
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&addr4(input));
    a
}

fn ipv4(input: &mut Input<'_>) -> Vec<u8> {
    let protocol = [17, 2, 6, 1, input.byte()][usize::from(input.byte() % 5)];
    let fragment: u16 = [0, 0x2000, 0x0001, 0x4000][usize::from(input.byte() % 4)];
    let payload: Vec<u8> = match input.byte() % 3 {
        0 => vec![0, 68, 0, 67, 0, 8, 0, 0],
        1 => vec![0, 68, 0, 53, 0, 8, 0, 0],
        _ => {
            let n = usize::from(input.byte() % 32);
            padded(input.take(n), n)
        }
    };
    let options = usize::from(input.byte() % 3) * 4;
    let total = (20 + options + payload.len()) as u16;
    let mut p = vec![0x45 + (options / 4) as u8, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&fragment.to_be_bytes());
    p.extend_from_slice(&[64, protocol, 0, 0]);
    p.extend_from_slice(&addr4(input));
    p.extend_from_slice(&[255, 255, 255, 255]);
    p.extend(std::iter::repeat_n(1, options));
    p.extend_from_slice(&payload);
    p
}

/// An ICMPv6 message: a type, its fixed part (a target where it has one) and options.
fn icmpv6(input: &mut Input<'_>, mac: [u8; 6]) -> Vec<u8> {
    let kind = [128, 131, 133, 134, 135, 136, 137, 143, input.byte()][usize::from(input.byte() % 9)];
    let mut m = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    match kind {
        134 => m.extend_from_slice(&[0; 8]),
        135 | 136 => m.extend_from_slice(&addr6(input, mac)),
        137 => {
            m.extend_from_slice(&addr6(input, mac));
            m.extend_from_slice(&[0; 16]);
        }
        _ => {}
    }
    if input.byte() % 8 == 0 {
        m.truncate(usize::from(input.byte()) % (m.len() + 1));
    }
    for _ in 0..input.byte() % 4 {
        let kind = [1, 2, 5, input.byte()][usize::from(input.byte() % 4)];
        let units = [1, 1, 1, 0, 2, 3][usize::from(input.byte() % 6)];
        m.extend_from_slice(&[kind, units]);
        let owner = match input.byte() % 3 {
            0 => OTHER,
            1 => padded(input.take(6), 6).try_into().expect("6 bytes"),
            _ => mac,
        };
        m.extend_from_slice(&owner);
        m.extend(std::iter::repeat_n(0, usize::from(units).saturating_sub(1) * 8));
    }
    if input.byte() % 8 == 0 {
        m.push(1);
    }
    m
}

fn ipv6(input: &mut Input<'_>, mac: [u8; 6]) -> Vec<u8> {
    let src = addr6(input, mac);
    // The extension headers, then the upper layer.
    let mut headers: Vec<(u8, Vec<u8>)> = Vec::new();
    for _ in 0..input.byte() % 11 {
        let kind = [0, 43, 60, 135, 139, 140, 253, 254, 51, 44][usize::from(input.byte() % 10)];
        let units = input.byte() % 3;
        let mut h = match kind {
            51 => vec![0; (usize::from(units) + 2) * 4],
            44 => vec![0; 8],
            _ => vec![0; (usize::from(units) + 1) * 8],
        };
        if kind == 44 {
            let offset: u16 = [0, 0x0001, 0x0010, 0x0011][usize::from(input.byte() % 4)];
            h[2..4].copy_from_slice(&offset.to_be_bytes());
        } else {
            h[1] = units;
        }
        headers.push((kind, h));
    }
    let upper = [58, 58, 58, 6, 17, 59, 50][usize::from(input.byte() % 7)];
    let body = if upper == 58 {
        icmpv6(input, mac)
    } else {
        let n = usize::from(input.byte() % 24);
        padded(input.take(n), n)
    };
    let first = headers.first().map_or(upper, |h| h.0);
    let mut payload = Vec::new();
    for (i, (_, h)) in headers.iter().enumerate() {
        let mut h = h.clone();
        h[0] = headers.get(i + 1).map_or(upper, |n| n.0);
        payload.extend_from_slice(&h);
    }
    payload.extend_from_slice(&body);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[first, 255]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&payload);
    p
}

fn frame(input: &mut Input<'_>, mac: [u8; 6]) -> Vec<u8> {
    let kind = input.byte() % 5;
    let tags = input.byte();
    let mut f = vec![0x02, 0, 0, 0, 0, 0x99];
    f.extend_from_slice(&mac);
    if kind == 0 {
        f.extend_from_slice(input.take(usize::MAX));
        return f;
    }
    for i in 0..tags % 4 {
        let tpid: u16 = [0x8100, 0x88a8, 0x9100, 0x8100][usize::from(tags >> (2 + 2 * i) & 3)];
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&[0, 10]);
    }
    let (ethertype, l3): (u16, Vec<u8>) = match kind {
        1 => (0x0806, arp(input, mac)),
        2 => (0x0800, ipv4(input)),
        3 => (0x86dd, ipv6(input, mac)),
        _ => (input.u16(), padded(input.take(46), 46)),
    };
    f.extend_from_slice(&ethertype.to_be_bytes());
    let l3_at = f.len();
    f.extend_from_slice(&l3);
    // Now and then, a length field or the frame's end made wrong.
    match input.byte() % 8 {
        0 if f.len() >= l3_at + 6 => f[l3_at + 5] ^= input.byte() | 1,
        1 if f.len() >= l3_at + 4 => f[l3_at + 3] ^= input.byte() | 1,
        2 => f.truncate(l3_at + usize::from(input.byte()) % (l3.len() + 1)),
        3 => f.resize(f.len().max(60), 0),
        _ => {}
    }
    f
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let prefixes = prefixes(&mut input);
    let mac = if input.byte() % 4 == 0 {
        padded(input.take(6), 6).try_into().expect("6 bytes")
    } else {
        VM
    };
    let Some(guard) = IpGuard::new(&prefixes) else {
        return;
    };
    let allowed: Vec<Allowed> = prefixes
        .iter()
        .map(|p| match p.addr() {
            IpAddr::V4(a) => Allowed::V4(u32::from(a), p.prefix_len()),
            IpAddr::V6(a) => Allowed::V6(u128::from(a), p.prefix_len()),
        })
        .collect();
    let model = Model {
        allowed: &allowed,
        mac,
    };
    while !input.is_empty() {
        let frame = frame(&mut input, mac);
        let checked = guard.check(&frame);
        assert_eq!(
            checked.is_ok(),
            model.passes(&frame),
            "guard {checked:?}, prefixes {prefixes:?}, MAC {}, frame {frame:02x?}",
            Mac(mac)
        );
        match guard.fast_path(&frame) {
            FastGuard::Pass => assert!(checked.is_ok(), "the fast path passes {frame:02x?}"),
            FastGuard::Drop => assert!(checked.is_err(), "the fast path drops {frame:02x?}"),
            FastGuard::Workers => {}
        }
    }
});
