//! A zero-copy view of an IPv6 neighbour discovery message (RFC 4861: router and
//! neighbour solicitations and advertisements, redirects) and its options: what the IP
//! source guard (`switch::guard`) reads of one.
//!
//! [`NdpMessage::new_checked`] verifies the message's fixed part once; its options are
//! checked one by one as [`NdpMessage::options`] walks them, as a receiver does (an
//! option of length 0, or one that runs past the message, makes the message invalid).
use std::net::Ipv6Addr;

use super::{Mac, ip::Malformed};

/// ICMPv6 type of an MLDv1 report.
pub const MLD_REPORT: u8 = 131;
/// ICMPv6 type of an MLDv2 report.
pub const MLD2_REPORT: u8 = 143;
/// ICMPv6 type of a router solicitation.
pub const ROUTER_SOLICIT: u8 = 133;
/// ICMPv6 type of a router advertisement.
pub const ROUTER_ADVERT: u8 = 134;
/// ICMPv6 type of a neighbour solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// ICMPv6 type of a neighbour advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;
/// ICMPv6 type of a redirect.
pub const REDIRECT: u8 = 137;

/// Option type of the source link-layer address.
pub const SOURCE_LINK_LAYER: u8 = 1;
/// Option type of the target link-layer address.
pub const TARGET_LINK_LAYER: u8 = 2;

/// Whether ICMPv6 type `kind` is a neighbour discovery message.
pub const fn is_nd(kind: u8) -> bool {
    matches!(kind, ROUTER_SOLICIT..=REDIRECT)
}

/// Bytes of the fixed part of ND message `kind` (ICMPv6 header included), before its
/// options.
const fn fixed_len(kind: u8) -> usize {
    match kind {
        ROUTER_SOLICIT => 8,
        ROUTER_ADVERT => 16,
        NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT => 24,
        _ => 40,
    }
}

/// Where a solicitation's, advertisement's or redirect's target address lies.
const TARGET: std::ops::Range<usize> = 8..24;

/// A read-only view of a neighbour discovery message: the ICMPv6 message, from its type
/// to the end of the IPv6 payload.
#[derive(Clone, Copy, Debug)]
pub struct NdpMessage<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NdpMessage<T> {
    /// Wraps `buffer` after checking it is an ND message (types 133 to 137) with its
    /// whole fixed part.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let b = buffer.as_ref();
        match b.first() {
            Some(&kind) if is_nd(kind) && b.len() >= fixed_len(kind) => Ok(Self { buffer }),
            Some(&kind) if is_nd(kind) => Err(Malformed("neighbour discovery message cut short")),
            _ => Err(Malformed("not a neighbour discovery message")),
        }
    }

    /// Its ICMPv6 type.
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The target address of a solicitation, advertisement or redirect.
    pub fn target(&self) -> Option<Ipv6Addr> {
        match self.kind() {
            NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT | REDIRECT => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&self.buffer.as_ref()[TARGET]);
                Some(Ipv6Addr::from(a))
            }
            _ => None,
        }
    }

    /// Its options, in order.
    pub fn options(&self) -> Options<'_> {
        Options {
            rest: &self.buffer.as_ref()[fixed_len(self.kind())..],
        }
    }
}

/// One option of an ND message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdpOption<'a> {
    /// Its type.
    pub kind: u8,
    /// All its bytes, type and length included.
    pub bytes: &'a [u8],
}

impl NdpOption<'_> {
    /// The Ethernet address a link-layer address option carries: `None` unless the
    /// option is 8 bytes long, the only length an Ethernet address takes (a receiver
    /// refuses a message whose option has another).
    pub fn link_layer_address(&self) -> Option<Mac> {
        match self.bytes {
            [_, 1, a, b, c, d, e, f] => Some(Mac([*a, *b, *c, *d, *e, *f])),
            _ => None,
        }
    }
}

/// The options of an ND message, each checked as it comes: an option of length 0, one
/// running past the message or a lone byte after the last are [`Malformed`], and the
/// walk stops there.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<NdpOption<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = std::mem::take(&mut self.rest);
        let (&kind, &units) = match rest {
            [] => return None,
            [kind, units, ..] => (kind, units),
            [_] => return Some(Err(Malformed("a byte after the last ND option"))),
        };
        let len = usize::from(units) * 8;
        if len == 0 {
            return Some(Err(Malformed("an ND option of length 0")));
        }
        let Some((bytes, after)) = rest.split_at_checked(len) else {
            return Some(Err(Malformed("an ND option past the message's end")));
        };
        self.rest = after;
        Some(Ok(NdpOption { kind, bytes }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A neighbour advertisement for fd00::5 with a target link-layer address option.
    fn advert() -> Vec<u8> {
        let mut m = vec![NEIGHBOR_ADVERT, 0, 0, 0, 0x60, 0, 0, 0];
        m.extend_from_slice(&"fd00::5".parse::<Ipv6Addr>().unwrap().octets());
        m.extend_from_slice(&[TARGET_LINK_LAYER, 1, 2, 0, 0, 0, 0, 1]);
        m
    }

    #[test]
    fn reads_the_target_and_the_options() {
        let m = advert();
        let nd = NdpMessage::new_checked(&m[..]).unwrap();
        assert_eq!(nd.kind(), NEIGHBOR_ADVERT);
        assert_eq!(nd.target(), Some("fd00::5".parse().unwrap()));
        let options: Vec<_> = nd.options().collect::<Result<_, _>>().unwrap();
        assert_eq!(options.len(), 1);
        assert_eq!(options[0].kind, TARGET_LINK_LAYER);
        assert_eq!(
            options[0].link_layer_address(),
            Some(Mac([2, 0, 0, 0, 0, 1]))
        );
        // A router solicitation has no target; its options start at 8.
        let rs = [
            ROUTER_SOLICIT,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            SOURCE_LINK_LAYER,
            1,
            2,
            0,
            0,
            0,
            0,
            9,
        ];
        let nd = NdpMessage::new_checked(&rs[..]).unwrap();
        assert_eq!(nd.target(), None);
        assert_eq!(nd.options().count(), 1);
    }

    #[test]
    fn a_short_message_or_another_type_is_malformed() {
        let m = advert();
        assert!(NdpMessage::new_checked(&m[..23]).is_err());
        assert!(
            NdpMessage::new_checked(&[128u8, 0, 0, 0][..]).is_err(),
            "echo"
        );
        assert!(NdpMessage::new_checked(&[][..]).is_err());
    }

    #[test]
    fn bad_options_stop_the_walk() {
        let mut zero = advert();
        zero[25] = 0;
        let nd = NdpMessage::new_checked(&zero[..]).unwrap();
        assert_eq!(
            nd.options().collect::<Vec<_>>(),
            [Err(Malformed("an ND option of length 0"))]
        );
        let mut long = advert();
        long[25] = 2;
        assert!(
            NdpMessage::new_checked(&long[..])
                .unwrap()
                .options()
                .any(|o| o.is_err())
        );
        let mut lone = advert();
        lone.push(1);
        let nd = NdpMessage::new_checked(&lone[..]).unwrap();
        let all: Vec<_> = nd.options().collect();
        assert!(all[0].is_ok() && all[1].is_err() && all.len() == 2);
        // Sixteen bytes: not an Ethernet address.
        let mut wide = advert();
        wide[25] = 2;
        wide.extend_from_slice(&[0; 8]);
        let nd = NdpMessage::new_checked(&wide[..]).unwrap();
        let option = nd.options().next().unwrap().unwrap();
        assert_eq!(option.link_layer_address(), None);
    }
}
