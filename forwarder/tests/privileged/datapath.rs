//! Frames cross between ports through hairpin: real kernel peers in namespaces, ping and
//! TCP, one and two pinned workers, both switching modes of this issue.
use hairpin::switch::{DropReason, Mode, PortPolicy, Role};

use crate::{TestConfig, Topology, finish, iperf, ping};

#[test]
fn veb_between_two_ports_carries_ping_and_tcp() {
    let topo = Topology::new("veb2", &[1, 1]);
    let datapath = topo.start(TestConfig::default());
    ping(&topo.vms[0], &topo.addr(1), 5).unwrap();
    ping(&topo.vms[1], &topo.addr(0), 5).unwrap();
    iperf(&topo, 0, 1, 2, 1).unwrap();
    let s = finish(datapath);
    for port in 0..2 {
        let t = s.port_total(port);
        assert!(t.rx_packets > 1000, "port {port}: {t:?}");
        assert!(t.tx_packets > 1000, "port {port}: {t:?}");
    }
    assert_eq!(s.fdb_entries, 2);
}

#[test]
fn veb_between_three_ports_learns_and_switches() {
    let topo = Topology::new("veb3", &[1, 1, 1]);
    let datapath = topo.start(TestConfig::default());
    for (a, b) in [(0, 1), (0, 2), (1, 2), (2, 0)] {
        ping(&topo.vms[a], &topo.addr(b), 3).unwrap();
    }
    iperf(&topo, 0, 2, 1, 1).unwrap();
    let entries = datapath.fdb().entries();
    assert_eq!(entries.len(), 3, "{entries:?}");
    for (port, vm) in topo.vms.iter().enumerate() {
        let mac = crate::mac_of(vm, "eth0");
        assert!(
            entries
                .iter()
                .any(|e| e.mac == mac && e.port as usize == port),
            "{mac} on {port}"
        );
    }
    let s = finish(datapath);
    // ARP requests are broadcasts: each flooded to two ports, one of them a copy.
    let copies: u64 = (0..3).map(|p| s.port_total(p).flood_copies).sum();
    assert!(copies >= 3, "{s:?}");
    // The TCP stream went vm1 -> vm3 only: known unicast is not flooded to vm2.
    assert!(s.port_total(0).rx_packets > 1000);
    assert!(s.port_total(1).tx_packets < 200, "{:?}", s.port_total(1));
}

#[test]
fn xconnect_carries_frames_both_ways() {
    let topo = Topology::new("xcon", &[1, 1]);
    let config = TestConfig {
        mode: Mode::Xconnect,
        ..TestConfig::default()
    };
    let datapath = topo.start(config);
    ping(&topo.vms[0], &topo.addr(1), 5).unwrap();
    ping(&topo.vms[1], &topo.addr(0), 5).unwrap();
    let s = finish(datapath);
    assert_eq!(s.fdb_entries, 0, "xconnect learns nothing");
    for port in 0..2 {
        let t = s.port_total(port);
        assert!(
            t.rx_packets >= 10 && t.tx_packets >= 10,
            "port {port}: {t:?}"
        );
        assert_eq!(t.dropped(), 0, "port {port}: {t:?}");
    }
}

#[test]
fn passthru_gives_the_uplink_to_one_downlink_with_anti_spoofing() {
    let topo = Topology::new("pass", &[1, 1]);
    let vm0 = topo.vm_mac(0);
    let mut policies = vec![PortPolicy::default(); 2];
    policies[1].role = Role::Uplink;
    policies[0].allowed_sources = vec![vm0];
    let config = TestConfig {
        mode: Mode::Passthru,
        policies,
        ..TestConfig::default()
    };
    let datapath = topo.start(config);
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();
    // A new MAC on the downlink is not one it may use.
    topo.vms[0]
        .ip(&["link", "set", "eth0", "address", "02:00:00:00:00:99"])
        .unwrap();
    topo.vms[0].ip(&["neigh", "flush", "dev", "eth0"]).unwrap();
    ping(&topo.vms[0], &topo.addr(1), 1).expect_err("a spoofed source gets nowhere");
    let s = finish(datapath);
    assert_eq!(s.fdb_entries, 0, "passthru learns nothing");
    assert!(
        s.port_total(0).drops[DropReason::Spoofed as usize] > 0,
        "{s:?}"
    );
}

#[test]
fn two_pinned_workers_serve_both_queues() {
    let topo = Topology::new("mq", &[2, 2]);
    let datapath = topo.start(TestConfig::default());
    assert_eq!(datapath.cores().len(), 2, "one worker per queue");
    // Sixteen flows spread over both TX queues of vm1's veth, hence both RX queues of
    // hairpin's port (the chance all land on one is 2^-15).
    iperf(&topo, 0, 1, 1, 16).unwrap();
    let xdp = datapath.xdp_stats("p0");
    let s = finish(datapath);
    for (q, steered) in xdp.iter().enumerate() {
        let t = s.per_queue[0][q];
        assert!(t.rx_packets > 100, "port 0 queue {q}: {t:?}");
        assert!(
            steered.steered > 100,
            "XDP steered on queue {q}: {steered:?}"
        );
        assert!(
            s.per_queue[1][q].tx_packets > 100,
            "port 1 queue {q} transmits: {s:?}"
        );
    }
    assert_eq!(
        s.port_total(0).handoff_out,
        0,
        "same queue counts: no handoff"
    );
}

#[test]
fn a_port_with_fewer_queues_is_reached_through_handoff() {
    // vm1's port has two queues, vm2's one: worker 1 must hand vm2's frames to worker 0.
    let topo = Topology::new("hoff", &[2, 1]);
    let datapath = topo.start(TestConfig::default());
    iperf(&topo, 0, 1, 1, 16).unwrap();
    ping(&topo.vms[1], &topo.addr(0), 3).unwrap();
    let s = finish(datapath);
    let from_q1 = s.per_queue[1][1];
    assert!(
        from_q1.handoff_out > 100,
        "frames for port 1 handed from worker 1: {s:?}"
    );
    let taken = s.per_queue[1][0].handoff_in;
    assert!(
        taken > 100 && taken <= from_q1.handoff_out,
        "worker 0 sent what it was handed: {s:?}"
    );
    assert_eq!(
        s.per_queue[1][1].tx_packets, 0,
        "worker 1 has no socket on port 1"
    );
    assert!(s.per_queue[1][0].tx_packets > 1000);
}
