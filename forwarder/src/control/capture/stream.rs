//! One capture's pcapng stream (the contract is `protocol::capture_stream`): blocks are
//! encoded with the `pcap-file` crate into an outbox of bounded size, which the capture
//! thread writes to the client's socket as fast as the client reads.
use std::{borrow::Cow, io, time::Duration};

use pcap_file::{
    DataLink,
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption},
            section_header::SectionHeaderBlock,
        },
    },
};

use crate::control::protocol::capture_stream;

/// Bytes waiting for the client, at most (past this a frame is lost to a slow reader).
pub const MAX_PENDING: usize = 4 << 20;

/// Bytes encoded and not yet taken by the client.
#[derive(Debug, Default)]
struct Outbox {
    buf: Vec<u8>,
    /// Where the bytes not yet taken start.
    at: usize,
}

impl io::Write for Outbox {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a capture counted, for its statistics block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames of the port in the capture's directions hairpin saw.
    pub seen: u64,
    /// Those that passed the filter.
    pub accepted: u64,
    /// Those encoded for the client.
    pub delivered: u64,
    /// Lost in hairpin's capture rings (the port's, while the capture ran).
    pub lost_rings: u64,
    /// Lost because the client read too slowly.
    pub lost_slow: u64,
}

/// A capture's stream.
pub struct Stream {
    writer: PcapNgWriter<Outbox>,
    snaplen: u32,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("pending", &self.pending().len())
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// A stream of port `port`'s frames, `snaplen` bytes of each at most: `preface`
    /// (the control protocol's answer line), its section header and interface
    /// description are in the outbox.
    pub fn new(preface: &[u8], port: &str, snaplen: u32) -> Self {
        let section = SectionHeaderBlock {
            options: vec![],
            ..SectionHeaderBlock::default()
        };
        // Writing into memory cannot fail.
        let outbox = Outbox {
            buf: preface.to_vec(),
            at: 0,
        };
        let mut writer =
            PcapNgWriter::with_section_header(outbox, section).expect("writing into memory");
        let interface = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(port.to_owned())),
                // pcap-file writes timestamps in nanoseconds: say so, or readers take
                // them for microseconds.
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        writer
            .write_pcapng_block(interface)
            .expect("writing into memory");
        Self { writer, snaplen }
    }

    /// Encodes one frame, `data` whole (its first `snaplen` bytes are kept) or as much
    /// of it as was copied of `len` bytes, at `ts_ns` (Unix time, nanoseconds), with
    /// direction `flags` and a comment. False (nothing encoded) when the outbox is full.
    pub fn packet(
        &mut self,
        ts_ns: u64,
        data: &[u8],
        len: u32,
        flags: u32,
        comment: Option<Cow<'_, str>>,
    ) -> bool {
        if self.pending().len() >= MAX_PENDING {
            return false;
        }
        let kept = data.len().min(self.snaplen as usize);
        let mut options = vec![EnhancedPacketOption::Flags(flags)];
        options.extend(comment.map(EnhancedPacketOption::Comment));
        let block = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(ts_ns),
            original_len: len.max(data.len() as u32),
            data: Cow::Borrowed(&data[..kept]),
            options,
        };
        self.writer
            .write_pcapng_block(block)
            .expect("writing into memory");
        true
    }

    /// Encodes the closing statistics block: `counts`, from `start_ns` to `end_ns`
    /// (Unix time, nanoseconds). Written whatever the outbox holds.
    pub fn statistics(&mut self, start_ns: u64, end_ns: u64, counts: &Counts) {
        let lost = counts.lost_rings + counts.lost_slow;
        let (start_ns, end_ns) = (as_halves(start_ns), as_halves(end_ns));
        let block = InterfaceStatisticsBlock {
            interface_id: 0,
            timestamp: end_ns,
            options: vec![
                InterfaceStatisticsOption::Comment(Cow::Owned(capture_stream::lost_comment(
                    counts.lost_rings,
                    counts.lost_slow,
                ))),
                InterfaceStatisticsOption::IsbStartTime(start_ns),
                InterfaceStatisticsOption::IsbEndTime(end_ns),
                InterfaceStatisticsOption::IsbIfRecv(counts.seen),
                InterfaceStatisticsOption::IsbFilterAccept(counts.accepted),
                InterfaceStatisticsOption::IsbOsDrop(lost),
                InterfaceStatisticsOption::IsbUsrDeliv(counts.delivered),
            ],
        };
        self.writer
            .write_pcapng_block(block)
            .expect("writing into memory");
    }

    /// The encoded bytes not yet taken.
    pub fn pending(&self) -> &[u8] {
        let out = self.writer.get_ref();
        &out.buf[out.at..]
    }

    /// The client took the first `n` bytes of [`Stream::pending`].
    pub fn taken(&mut self, n: usize) {
        let out = self.writer.get_mut();
        out.at += n;
        if out.at == out.buf.len() {
            out.buf.clear();
            out.at = 0;
        } else if out.at > MAX_PENDING / 2 {
            out.buf.drain(..out.at);
            out.at = 0;
        }
    }
}

/// A timestamp as pcap-file must be given one to write it as pcapng stores it: its
/// upper 32 bits first, then its lower (pcap-file 2.0 writes these fields as one
/// native-endian word, which puts the halves the other way round on little-endian).
fn as_halves(ts: u64) -> u64 {
    if cfg!(target_endian = "little") {
        ts.rotate_left(32)
    } else {
        ts
    }
}

#[cfg(test)]
mod tests {
    use pcap_file::pcapng::{Block, PcapNgReader};

    use super::*;

    #[test]
    fn a_stream_reads_back_as_pcapng_with_directions_comments_and_statistics() {
        let mut s = Stream::new(b"", "vm1", 100);
        assert!(s.packet(1_700_000_000_123_456_789, &[0xaa; 150], 150, 1, None));
        let comment = Some(Cow::Borrowed("dropped: spoofed"));
        assert!(s.packet(1_700_000_001_000_000_000, &[0xbb; 60], 60, 2, comment));
        let counts = Counts {
            seen: 3,
            accepted: 2,
            delivered: 2,
            lost_rings: 1,
            lost_slow: 0,
        };
        s.statistics(
            1_700_000_000_000_000_000,
            1_700_000_002_000_000_000,
            &counts,
        );
        // Taken in two parts, as a socket might.
        let mut bytes = s.pending()[..10].to_vec();
        s.taken(10);
        bytes.extend_from_slice(s.pending());
        let n = s.pending().len();
        s.taken(n);
        assert!(s.pending().is_empty());

        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let mut blocks = Vec::new();
        while let Some(block) = reader.next_block() {
            blocks.push(block.unwrap().into_owned());
        }
        let [
            Block::InterfaceDescription(idb),
            Block::EnhancedPacket(a),
            Block::EnhancedPacket(b),
            Block::InterfaceStatistics(isb),
        ] = &blocks[..]
        else {
            panic!("blocks: {blocks:?}");
        };
        assert_eq!((idb.linktype, idb.snaplen), (DataLink::ETHERNET, 100));
        assert!(
            idb.options
                .contains(&InterfaceDescriptionOption::IfTsResol(9))
        );
        assert_eq!((a.data.len(), a.original_len), (100, 150));
        assert_eq!(a.timestamp, Duration::from_nanos(1_700_000_000_123_456_789));
        assert_eq!(a.options, [EnhancedPacketOption::Flags(1)]);
        assert_eq!(
            b.options,
            [
                EnhancedPacketOption::Flags(2),
                EnhancedPacketOption::Comment("dropped: spoofed".into())
            ]
        );
        assert!(
            isb.options
                .contains(&InterfaceStatisticsOption::IsbOsDrop(1))
        );
        assert!(isb.options.contains(&InterfaceStatisticsOption::Comment(
            "lost: 1 in hairpin's capture rings, 0 to a slow reader".into()
        )));
    }

    #[test]
    fn a_full_outbox_refuses_frames_until_the_client_takes_some() {
        let mut s = Stream::new(b"", "vm1", 65_535);
        let frame = [0u8; 9000];
        let mut encoded = 0;
        while s.packet(0, &frame, 9000, 1, None) {
            encoded += 1;
        }
        assert!(encoded >= MAX_PENDING / 9100 && s.pending().len() >= MAX_PENDING);
        let n = s.pending().len();
        s.taken(n);
        assert!(s.packet(0, &frame, 9000, 1, None));
    }
}
