//! The capture thread over the workers' taps (no XDP program), with a client on the
//! other end of a socket pair: what it reads back as pcapng.
use std::{
    io::Read as _,
    net::Shutdown,
    os::unix::net::UnixStream,
    sync::Arc,
    time::{Duration, Instant},
};

use pcap_file::pcapng::{
    Block, PcapNgReader,
    blocks::{
        enhanced_packet::EnhancedPacketOption, interface_statistics::InterfaceStatisticsOption,
    },
};

use super::{Captures, Plan};
use crate::{
    control::protocol::{CaptureRequest, Direction},
    datapath::tap::{self, Taps},
    switch::DropReason,
};

/// An ICMP echo request from 10.0.0.1 to 10.0.0.2, Ethernet and all.
fn icmp() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend([
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f.extend([8, 0, 0, 0, 0, 0, 0, 0]);
    f
}

/// A frame of an experimental EtherType.
fn other() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend([2, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    f.extend([0u8; 46]);
    f
}

fn request(direction: Direction, filter: Option<&str>, count: Option<u64>) -> CaptureRequest {
    CaptureRequest {
        port: "vm1".into(),
        direction,
        filter: filter.map(str::to_owned),
        count,
        seconds: None,
        snaplen: None,
    }
}

/// Starts a capture of `plan` and returns the client's end once the taps are set.
fn begin(captures: &Captures, taps: &Taps, plan: Plan) -> UnixStream {
    let (client, server) = UnixStream::pair().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (port, dirs) = (plan.port, plan.dirs);
    captures.handover(plan).hand(server);
    let by = Instant::now() + Duration::from_secs(5);
    while !(taps.wants(port, dirs & tap::IN) || taps.wants(port, dirs & tap::OUT)) {
        assert!(Instant::now() < by, "the capture never tapped its port");
        std::thread::sleep(Duration::from_millis(1));
    }
    client
}

/// Every block the client reads until hairpin closes the stream.
fn read_all(mut client: UnixStream) -> Vec<Block<'static>> {
    let mut bytes = Vec::new();
    client.read_to_end(&mut bytes).unwrap();
    // The answer first, then the stream.
    let line = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let answer = std::str::from_utf8(&bytes[..line]).unwrap();
    assert!(answer.contains("\"response\":\"capturing\""), "{answer}");
    let mut reader = PcapNgReader::new(&bytes[line..]).unwrap();
    let mut blocks = Vec::new();
    while let Some(block) = reader.next_block() {
        blocks.push(block.unwrap().into_owned());
    }
    blocks
}

fn packets(blocks: &[Block<'_>]) -> Vec<(Vec<u8>, Vec<EnhancedPacketOption<'static>>)> {
    blocks
        .iter()
        .filter_map(|b| match b {
            Block::EnhancedPacket(p) => Some((
                p.data.to_vec(),
                p.options.iter().map(|o| o.clone().into_owned()).collect(),
            )),
            _ => None,
        })
        .collect()
}

fn statistics(blocks: &[Block<'_>]) -> Vec<InterfaceStatisticsOption<'static>> {
    match blocks.last() {
        Some(Block::InterfaceStatistics(s)) => {
            s.options.iter().map(|o| o.clone().into_owned()).collect()
        }
        other => panic!("the stream does not end with statistics: {other:?}"),
    }
}

#[test]
fn a_capture_streams_its_port_s_frames_in_its_directions_until_the_client_stops_it() {
    let taps = Arc::new(Taps::new(2));
    let captures = Captures::start(Arc::clone(&taps), None, &[]).unwrap();
    let plan = Plan::new(3, "vm1", &request(Direction::Both, None, None)).unwrap();
    let client = begin(&captures, &taps, plan);
    taps.take(0, 3, tap::IN, None, &[&icmp()]);
    taps.take(1, 3, tap::OUT, Some(DropReason::TxRingFull), &[&other()]);
    // Another port's frames are not this capture's.
    taps.take(0, 4, tap::IN, None, &[&icmp()]);
    std::thread::sleep(Duration::from_millis(50));
    client.shutdown(Shutdown::Write).unwrap();
    let blocks = read_all(client);
    let mut got = packets(&blocks);
    got.sort_by_key(|p| p.0.len());
    assert_eq!(
        got,
        [
            (icmp(), vec![EnhancedPacketOption::Flags(1)]),
            (
                other(),
                vec![
                    EnhancedPacketOption::Flags(2),
                    EnhancedPacketOption::Comment("dropped: tx_ring_full".into())
                ]
            ),
        ]
    );
    let stats = statistics(&blocks);
    assert!(stats.contains(&InterfaceStatisticsOption::IsbIfRecv(2)));
    assert!(stats.contains(&InterfaceStatisticsOption::IsbUsrDeliv(2)));
    assert!(stats.contains(&InterfaceStatisticsOption::IsbOsDrop(0)));
    // Ended: the port is not tapped any more.
    let by = Instant::now() + Duration::from_secs(5);
    while taps.wants(3, tap::IN) {
        assert!(Instant::now() < by, "the tap outlived its capture");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn two_captures_of_one_port_each_get_what_their_filter_and_direction_select() {
    let taps = Arc::new(Taps::new(1));
    let captures = Captures::start(Arc::clone(&taps), None, &[]).unwrap();
    let icmp_in = Plan::new(3, "vm1", &request(Direction::In, Some("icmp"), Some(2))).unwrap();
    let all_out = Plan::new(3, "vm1", &request(Direction::Out, None, Some(1))).unwrap();
    let a = begin(&captures, &taps, icmp_in);
    let b = begin(&captures, &taps, all_out);
    for _ in 0..3 {
        taps.take(0, 3, tap::IN, None, &[&other()]);
        taps.take(0, 3, tap::IN, None, &[&icmp()]);
    }
    taps.take(0, 3, tap::OUT, None, &[&icmp()]);
    // Each ends at its count by itself.
    let (a, b) = (read_all(a), read_all(b));
    assert_eq!(packets(&a).len(), 2);
    assert!(packets(&a).iter().all(|p| p.0 == icmp()));
    assert!(statistics(&a).contains(&InterfaceStatisticsOption::IsbFilterAccept(2)));
    assert_eq!(packets(&b).len(), 1);
    assert_eq!(packets(&b)[0].1, [EnhancedPacketOption::Flags(2)]);
}

#[test]
fn a_port_removed_ends_its_capture_and_ring_losses_are_reported() {
    let taps = Arc::new(Taps::new(1));
    let captures = Captures::start(Arc::clone(&taps), None, &[]).unwrap();
    let plan = Plan::new(5, "vm2", &request(Direction::In, None, None)).unwrap();
    let client = begin(&captures, &taps, plan);
    // More than the ring holds at once, faster than it is drained.
    for _ in 0..tap::RECORDS + 100 {
        taps.take(0, 5, tap::IN, None, &[&other()]);
    }
    captures.port_gone(5);
    let blocks = read_all(client);
    let stats = statistics(&blocks);
    let lost = stats
        .iter()
        .find_map(|o| match o {
            InterfaceStatisticsOption::IsbOsDrop(n) => Some(*n),
            _ => None,
        })
        .unwrap();
    let written = packets(&blocks).len() as u64;
    // Every frame is written or counted lost (how many are lost depends on how fast
    // the capture thread drains: each ring holds `RECORDS`).
    assert_eq!(written + lost, tap::RECORDS as u64 + 100);
}

#[test]
fn a_bad_filter_or_snaplen_is_refused_with_the_reason() {
    let mut r = request(Direction::Both, Some("icmp and and"), None);
    let e = Plan::new(1, "vm1", &r).unwrap_err();
    assert!(e.contains("filter \"icmp and and\""), "{e}");
    r.filter = None;
    r.snaplen = Some(0);
    assert!(Plan::new(1, "vm1", &r).unwrap_err().contains("snaplen 0"));
}
