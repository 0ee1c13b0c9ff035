//! What `hairpin capture` prints: a line per frame (without `-w`), and the summary on
//! stderr at the end, from the stream's statistics block.
use std::time::Duration;

use hairpin::control::protocol::capture_stream;
use hairpin::wire::{Dot1qTag, EthernetFrame, dot1q};
use pcap_file::pcapng::blocks::{
    enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
    interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption},
};

/// `if_tsresol` when an interface does not say: microseconds (pcapng's default).
pub(super) const DEFAULT_TSRESOL: u8 = 6;

/// A frame's time since the Unix epoch. pcap-file hands an enhanced packet block's raw
/// count as if it were nanoseconds; the interface's `if_tsresol` says what it counts:
/// `10^-n` seconds, or `2^-n` with the high bit set. hairpin's is 9 (nanoseconds).
pub(super) fn timestamp(raw: Duration, tsresol: u8) -> Duration {
    let units = raw.as_nanos();
    let exponent = u32::from(tsresol & 0x7f);
    let nanos = if tsresol & 0x80 == 0 {
        match exponent.checked_sub(9) {
            None => units * 10u128.pow(9 - exponent),
            Some(finer) => units / 10u128.checked_pow(finer).unwrap_or(u128::MAX),
        }
    } else {
        // The raw count is a u64: times 10^9 it fits a u128 before the shift.
        (units * 1_000_000_000) >> exponent
    };
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The time of day of `time` (since the Unix epoch) with nanoseconds,
/// `20:45:01.123456789`, `utc_offset_s` east of UTC.
pub(super) fn clock(time: Duration, utc_offset_s: i64) -> String {
    let secs = i64::try_from(time.as_secs()).unwrap_or(i64::MAX);
    let of_day = secs.saturating_add(utc_offset_s).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:09}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        time.subsec_nanos()
    )
}

/// One frame as a line after its time: direction, length, MACs, the 802.1Q tag's VID,
/// the ethertype, and hairpin's comments (`fast path`, `dropped: REASON`), e.g.
/// `in  98 02:00:00:00:00:01 > 02:00:00:00:00:02 vlan 10 IPv4 fast path`.
pub(super) fn frame_line(clock: &str, epb: &EnhancedPacketBlock<'_>) -> String {
    let mut direction = "-";
    let mut comments = String::new();
    for option in &epb.options {
        match option {
            EnhancedPacketOption::Flags(flags) => {
                direction = match flags & 3 {
                    capture_stream::INBOUND => "in",
                    capture_stream::OUTBOUND => "out",
                    _ => "-",
                }
            }
            EnhancedPacketOption::Comment(comment) => {
                comments.push(' ');
                comments.push_str(comment);
            }
            _ => {}
        }
    }
    format!(
        "{clock} {direction:<3} {} {}{comments}",
        epb.original_len,
        header(&epb.data)
    )
}

/// The Ethernet header in words: `SRC > DST [vlan VID] ETHERTYPE`.
fn header(data: &[u8]) -> String {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return format!("[{} bytes captured, no Ethernet header]", data.len());
    };
    let mut text = format!("{} > {}", frame.src(), frame.dst());
    let mut ethertype = frame.ethertype();
    if ethertype == dot1q::TPID_8021Q {
        let Ok(tag) = Dot1qTag::new_checked(data) else {
            return text + " [802.1Q tag cut short]";
        };
        text += &format!(" vlan {}", tag.vid());
        ethertype = tag.inner_ethertype();
    }
    text + " " + &ethertype_name(ethertype)
}

/// An ethertype by its name where it has a common one, else in hexadecimal.
fn ethertype_name(ethertype: u16) -> String {
    match ethertype {
        0x0800 => "IPv4".into(),
        0x86dd => "IPv6".into(),
        0x0806 => "ARP".into(),
        // A length: an 802.3 frame with an LLC header (STP, say).
        n if n <= 1500 => format!("802.3 length {n}"),
        n => format!("ethertype 0x{n:04x}"),
    }
}

/// The end of a capture, from its statistics block: what the summary on stderr says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Summary {
    /// Frames this client read from the stream.
    pub(super) received: u64,
    /// `isb_usrdeliv`: frames hairpin wrote to the stream.
    pub(super) delivered: Option<u64>,
    /// `isb_ifrecv`: the port's frames in the capture's directions hairpin saw.
    pub(super) seen: Option<u64>,
    /// `isb_filteraccept`: those that passed the filter.
    pub(super) accepted: Option<u64>,
    /// `isb_osdrop`: those lost.
    pub(super) lost: Option<u64>,
    /// The block's comment ([`capture_stream::LOST_COMMENT`]).
    pub(super) comment: Option<String>,
}

impl Summary {
    /// The summary of a capture whose stream held `received` frames and ended with `isb`.
    pub(super) fn new(isb: &InterfaceStatisticsBlock<'_>, received: u64) -> Self {
        let mut summary = Self {
            received,
            ..Self::default()
        };
        for option in &isb.options {
            match option {
                InterfaceStatisticsOption::IsbUsrDeliv(n) => summary.delivered = Some(*n),
                InterfaceStatisticsOption::IsbIfRecv(n) => summary.seen = Some(*n),
                InterfaceStatisticsOption::IsbFilterAccept(n) => summary.accepted = Some(*n),
                InterfaceStatisticsOption::IsbOsDrop(n) => summary.lost = Some(*n),
                InterfaceStatisticsOption::Comment(c) => summary.comment = Some(c.to_string()),
                _ => {}
            }
        }
        summary
    }

    /// As tcpdump says it: `N frames captured on PORT (M seen, K passed the filter); L
    /// lost: X in hairpin's capture rings, Y to a slow reader`.
    pub(super) fn text(&self, port: &str) -> String {
        let number = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let captured = self.delivered.unwrap_or(self.received);
        let mut text = format!(
            "{captured} frame{} captured on {port} ({} seen, {} passed the filter); {} lost",
            if captured == 1 { "" } else { "s" },
            number(self.seen),
            number(self.accepted),
            number(self.lost),
        );
        if let Some(comment) = self.comment.as_deref() {
            match parse_lost(comment) {
                Some((rings, slow)) => {
                    text +=
                        &format!(": {rings} in hairpin's capture rings, {slow} to a slow reader");
                }
                None => text += &format!(" ({comment})"),
            }
        }
        text
    }
}

/// The two causes of loss in a statistics block's comment
/// ([`capture_stream::lost_comment`]): hairpin's capture rings, a slow reader.
pub(super) fn parse_lost(comment: &str) -> Option<(u64, u64)> {
    let (prefix, rest) = capture_stream::LOST_COMMENT.split_once("{rings}")?;
    let (middle, suffix) = rest.split_once("{slow}")?;
    let numbers = comment.strip_prefix(prefix)?.strip_suffix(suffix)?;
    let (rings, slow) = numbers.split_once(middle)?;
    Some((rings.parse().ok()?, slow.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn epb(flags: u32, data: &[u8], comments: &[&'static str]) -> EnhancedPacketBlock<'static> {
        let mut options = vec![EnhancedPacketOption::Flags(flags)];
        options.extend(
            comments
                .iter()
                .map(|c| EnhancedPacketOption::Comment(Cow::Borrowed(*c))),
        );
        EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::ZERO,
            original_len: 1514,
            data: Cow::Owned(data.to_vec()),
            options,
        }
    }

    const MACS: [u8; 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];

    fn with(tail: &[u8]) -> Vec<u8> {
        [&MACS[..], tail].concat()
    }

    #[test]
    fn a_frame_is_its_direction_length_macs_tag_ethertype_and_comments() {
        let line = |flags, data: &[u8], comments| frame_line("T", &epb(flags, data, comments));
        assert_eq!(
            line(1, &with(&[0x08, 0x00]), &["fast path"]),
            "T in  1514 02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 fast path"
        );
        assert_eq!(
            line(2, &with(&[0x81, 0x00, 0xa0, 0x0a, 0x86, 0xdd]), &[]),
            "T out 1514 02:00:00:00:00:01 > 02:00:00:00:00:02 vlan 10 IPv6"
        );
        assert_eq!(
            line(1, &with(&[0x08, 0x06]), &["dropped: spoofed"]),
            "T in  1514 02:00:00:00:00:01 > 02:00:00:00:00:02 ARP dropped: spoofed"
        );
        assert_eq!(
            line(0, &with(&[0x88, 0xcc]), &[]),
            "T -   1514 02:00:00:00:00:01 > 02:00:00:00:00:02 ethertype 0x88cc"
        );
        assert_eq!(
            line(1, &with(&[0x00, 0x26]), &[]),
            "T in  1514 02:00:00:00:00:01 > 02:00:00:00:00:02 802.3 length 38"
        );
        assert_eq!(
            line(1, &with(&[0x81, 0x00, 0x00]), &[]),
            "T in  1514 02:00:00:00:00:01 > 02:00:00:00:00:02 [802.1Q tag cut short]"
        );
        assert_eq!(
            line(1, &MACS[..6], &[]),
            "T in  1514 [6 bytes captured, no Ethernet header]"
        );
    }

    #[test]
    fn the_clock_is_the_time_of_day_with_nanoseconds() {
        // 2023-11-14 22:13:20 UTC.
        let t = Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(clock(t, 0), "22:13:20.123456789");
        assert_eq!(clock(t, 2 * 3600), "00:13:20.123456789");
        assert_eq!(clock(t, -23 * 3600), "23:13:20.123456789");
        assert_eq!(clock(Duration::from_nanos(5), 0), "00:00:00.000000005");
    }

    #[test]
    fn timestamps_follow_the_interfaces_resolution() {
        let raw = Duration::from_nanos(1_500);
        assert_eq!(timestamp(raw, 9), Duration::from_nanos(1_500));
        assert_eq!(timestamp(raw, 6), Duration::from_micros(1_500));
        assert_eq!(timestamp(raw, 3), Duration::from_millis(1_500));
        assert_eq!(timestamp(raw, 12), Duration::from_nanos(1));
        assert_eq!(
            timestamp(raw, 0x80 | 10),
            Duration::from_nanos(1_464_843_750)
        );
        assert_eq!(timestamp(raw, 127), Duration::ZERO);
        assert_eq!(
            timestamp(Duration::from_nanos(u64::MAX), 0),
            Duration::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn the_lost_comment_reads_back_and_anything_else_is_quoted() {
        assert_eq!(
            parse_lost(&capture_stream::lost_comment(7, 11)),
            Some((7, 11))
        );
        assert_eq!(parse_lost("lost: many"), None);
        let summary = Summary {
            received: 1,
            lost: Some(2),
            comment: Some("something else".into()),
            ..Summary::default()
        };
        assert_eq!(
            summary.text("vf1"),
            "1 frame captured on vf1 (? seen, ? passed the filter); 2 lost (something else)"
        );
    }
}
