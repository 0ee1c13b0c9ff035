//! Jumbo frames: ports of MTU 9000 carried end to end, as chains of UMEM frames (AF_XDP
//! multi-buffer). Pings of 8000 bytes that may not fragment, TCP at MTU 9000, and
//! 9000-byte broadcasts that reach every port whole, the 802.1Q tag pushed on a trunk
//! and popped off it; the byte counters count whole frames, and nothing is dropped.
use hairpin::{
    control::{bridge::Bridge, protocol::PortCounters, xdp::XdpAttachMode},
    netlab::{LabError, Netns},
    switch::{DropReason, vlan::PortVlans},
    wire::Mac,
};

use crate::{Capture, TestConfig, Topology, finish, iperf_report, send_raw, vlan_policies};

/// The ports' MTU.
const MTU: u32 = 9000;

/// A broadcast of a local experimental EtherType from `src`, under `tag` (a VLAN) if
/// given, carrying `MTU` bytes of payload none of whose neighbours are alike.
fn jumbo_broadcast(src: Mac, tag: Option<u16>, seed: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + MTU as usize);
    f.extend_from_slice(&Mac::BROADCAST.0);
    f.extend_from_slice(&src.0);
    if let Some(vid) = tag {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..MTU).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)));
    f
}

/// `frame` with its 802.1Q tag removed (bytes 12..16).
fn untag(frame: &[u8]) -> Vec<u8> {
    [&frame[..12], &frame[16..]].concat()
}

/// Pings `addr` from `ns` with 8000 bytes of ICMP that may not be fragmented
/// (`-M do`): `count` echoes, failing on the first unanswered one.
pub(crate) fn ping_jumbo(ns: &Netns, addr: &str, count: u32) -> Result<(), LabError> {
    let count = count.to_string();
    ns.run(
        "ping",
        &[
            "-c", &count, "-i", "0.05", "-W", "2", "-q", "-s", "8000", "-M", "do", addr,
        ],
    )
    .map(drop)
}

/// Every port's counters, by slot.
fn counters(bridge: &Bridge) -> Vec<PortCounters> {
    bridge.ports().into_iter().map(|p| p.counters).collect()
}

/// Sets the MTU of both ends of every VM's cable.
fn set_mtu(topo: &Topology, mtu: u32) {
    let mtu = mtu.to_string();
    for (i, vm) in topo.vms.iter().enumerate() {
        vm.ip(&["link", "set", "eth0", "mtu", &mtu]).unwrap();
        topo.sw
            .ip(&["link", "set", &format!("p{i}"), "mtu", &mtu])
            .unwrap();
    }
}

#[test]
fn jumbo_frames_cross_whole_with_vlans_and_every_byte_is_counted() {
    // p0, p1, p2: access ports of VLAN 10; p3: a trunk carrying VLAN 10 tagged.
    let topo = Topology::new("jumbo", &[1, 1, 1, 1]);
    set_mtu(&topo, MTU);
    // GRO on the VMs' ends lets the fast path send to them: small frames take it, the
    // jumbo frames (several buffers) must still go through the workers whole.
    topo.fast_path_ready();
    let vlans = [
        PortVlans::Access(10),
        PortVlans::Access(10),
        PortVlans::Access(10),
        PortVlans::Trunk {
            tagged: vec![10],
            native: None,
        },
    ];
    let bridge = topo.start(TestConfig {
        policies: vlan_policies(&vlans),
        ..TestConfig::default()
    });

    // 8000 bytes of ICMP that may not be fragmented, both ways.
    ping_jumbo(&topo.vms[0], &topo.addr(1), 5).expect("ping -s 8000 -M do through hairpin");

    // TCP at MTU 9000.
    let report = iperf_report(&topo, 0, 1, 2, 1).expect("iperf3 at MTU 9000");
    let receiver = report
        .lines()
        .find(|l| l.contains("receiver"))
        .unwrap_or_else(|| panic!("no receiver line in the iperf3 report: {report}"));
    println!("iperf3 TCP at MTU {MTU} through hairpin: {receiver}");
    let p0 = &counters(&bridge)[0];
    assert!(
        p0.rx_bytes > 10_000_000,
        "iperf3 passed but p0 received only {} bytes",
        p0.rx_bytes
    );

    // A 9000-byte broadcast from an access port, and one tagged from the trunk.
    let files: Vec<_> = (0..4)
        .map(|i| std::env::temp_dir().join(format!("{}-j{i}.pcap", topo.sw.name())))
        .collect();
    let captures: Vec<_> = topo
        .vms
        .iter()
        .zip(&files)
        .map(|(vm, file)| Capture::spawn(vm, "eth0", file.clone(), &["ether proto 0x88b5"]))
        .collect();
    Capture::settle();
    let before = counters(&bridge);
    let from_access = jumbo_broadcast(topo.vm_mac(0), None, 1);
    let from_trunk = jumbo_broadcast(topo.vm_mac(3), Some(10), 2);
    send_raw(&topo.vms[0], "eth0", std::slice::from_ref(&from_access));
    send_raw(&topo.vms[3], "eth0", std::slice::from_ref(&from_trunk));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let after = counters(&bridge);
    let seen: Vec<Vec<Vec<u8>>> = captures.into_iter().map(Capture::frames).collect();

    // Every port got the other's frame whole: tagged on the trunk, untagged elsewhere.
    let mut tagged = from_access.clone();
    tagged.splice(12..12, [0x81, 0x00, 0x00, 10]);
    let want: [(&[u8], &[u8]); 4] = [
        (&from_access, &untag(&from_trunk)),
        (&from_access, &untag(&from_trunk)),
        (&from_access, &untag(&from_trunk)),
        (&tagged, &from_trunk),
    ];
    for (port, (frames, (access, trunk))) in seen.iter().zip(want).enumerate() {
        let received: Vec<&Vec<u8>> = frames
            .iter()
            .filter(|f| f[..12] != from_access[..12] || port != 0)
            .filter(|f| f[..12] != from_trunk[..12] || port != 3)
            .collect();
        let expected: Vec<&[u8]> = match port {
            0 => vec![trunk],
            3 => vec![access],
            _ => vec![access, trunk],
        };
        assert_eq!(
            received.len(),
            expected.len(),
            "port {port}: {:?}",
            received.iter().map(|f| f.len()).collect::<Vec<_>>()
        );
        for want in expected {
            assert!(
                received.iter().any(|f| f.as_slice() == want),
                "port {port} did not get the {}-byte frame whole: got lengths {:?}",
                want.len(),
                received.iter().map(|f| f.len()).collect::<Vec<_>>()
            );
        }
    }
    // The byte counters count whole frames: 9014 bytes in on p0 and out of every
    // access port, 9018 on the trunk both ways.
    let delta = |p: usize, f: fn(&PortCounters) -> u64| f(&after[p]) - f(&before[p]);
    let (untagged, tagged) = (from_access.len() as u64, from_trunk.len() as u64);
    assert_eq!(delta(0, |c| c.rx_bytes), untagged);
    assert_eq!(delta(3, |c| c.rx_bytes), tagged);
    assert_eq!(delta(0, |c| c.tx_bytes), untagged);
    for p in [1, 2] {
        assert_eq!(delta(p, |c| c.tx_bytes), 2 * untagged, "port {p}");
        assert_eq!(delta(p, |c| c.tx_packets), 2, "port {p}");
    }
    assert_eq!(delta(3, |c| c.tx_bytes), tagged);

    // No frame was refused for its length or its tag anywhere over the whole run
    // (iperf3 itself may overrun a ring now and then, which TCP recovers from: the
    // broadcasts' exact counts above are the ledger of a quiet moment).
    let s = finish(bridge);
    for p in 0..4 {
        let t = s.port_total(p);
        for reason in [
            DropReason::Oversize,
            DropReason::NoHeadroom,
            DropReason::Vlan,
        ] {
            assert_eq!(t.drops[reason as usize], 0, "port {p}, {reason:?}: {t:?}");
        }
    }
}

#[test]
fn jumbo_frames_handed_to_another_worker_arrive_whole() {
    // p0 has two queues, p1 one: worker 1 hands p1's frames, chains included, to
    // worker 0 (one inbound entry per chain, its buffers listed in its first chunk).
    let topo = Topology::new("jumbohoff", &[2, 1]);
    set_mtu(&topo, MTU);
    let bridge = topo.start(TestConfig::default());
    let report = iperf_report(&topo, 0, 1, 2, 16).expect("iperf3 at MTU 9000, 16 flows");
    let summary = report.lines().rfind(|l| l.contains("receiver"));
    println!("iperf3 TCP at MTU {MTU}, 16 flows over two queues: {summary:?}");
    ping_jumbo(&topo.vms[1], &topo.addr(0), 3).expect("ping -s 8000 -M do back");
    let s = finish(bridge);
    let handed = s.per_queue[1][1].handoff_out;
    assert!(handed > 100, "frames for p1 handed from worker 1: {s:?}");
    let p1 = s.port_total(1);
    // Handed over and sent: the jumbo data segments crossed as chains.
    assert!(
        p1.tx_bytes > 100 * u64::from(MTU),
        "p1 sent {} bytes",
        p1.tx_bytes
    );
    for p in 0..2 {
        let t = s.port_total(p);
        assert_eq!(t.drops[DropReason::Oversize as usize], 0, "port {p}: {t:?}");
    }
}

#[test]
fn jumbo_frames_cross_generic_xdp() {
    // Generic (skb) XDP, what a driver without native XDP gets (macvlan, many VF
    // drivers): the kernel hands the frags-aware program a multi-buffer frame built
    // from the skb, and the copy-mode socket receives it as a chain.
    let topo = Topology::new("jumbogen", &[1, 1]);
    set_mtu(&topo, MTU);
    // Default offloads: in generic mode the program sees the peers' TSO segments (up
    // to 64 KB) whole, and the workers cut them to the MTU.
    let bridge = topo.start(TestConfig {
        xdp_mode: XdpAttachMode::Generic,
        ..TestConfig::default()
    });
    for port in bridge.ports() {
        assert_eq!(port.xdp.as_deref(), Some("generic"), "{port:?}");
    }
    ping_jumbo(&topo.vms[0], &topo.addr(1), 3).expect("ping -s 8000 -M do, generic XDP");
    let report = iperf_report(&topo, 0, 1, 2, 1).expect("iperf3 at MTU 9000, generic XDP");
    let receiver = report.lines().find(|l| l.contains("receiver"));
    println!("iperf3 TCP at MTU {MTU}, generic XDP: {receiver:?}");

    let file = std::env::temp_dir().join(format!("{}-g.pcap", topo.sw.name()));
    let capture = Capture::start(&topo.vms[1], "eth0", file);
    let before = counters(&bridge);
    let frame = jumbo_broadcast(topo.vm_mac(0), None, 3);
    send_raw(&topo.vms[0], "eth0", std::slice::from_ref(&frame));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let after = counters(&bridge);
    let seen = capture.frames();
    assert!(
        seen.contains(&frame),
        "the {}-byte broadcast did not reach vm1 whole: lengths {:?}",
        frame.len(),
        seen.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(after[0].rx_bytes - before[0].rx_bytes, frame.len() as u64);
    assert_eq!(after[1].tx_bytes - before[1].tx_bytes, frame.len() as u64);
    let s = finish(bridge);
    for p in 0..2 {
        let t = s.port_total(p);
        assert_eq!(t.drops[DropReason::Oversize as usize], 0, "port {p}: {t:?}");
    }
    assert!(s.port_total(0).segmented > 0, "vm0's TSO segments were cut");
}
