//! The kernel fast path seen through the counters: a known flow takes it and is counted
//! on both ports, a station that moves is followed by the very next frame, and a port
//! that stops taking redirected frames goes back to the workers.
use std::{
    thread,
    time::{Duration, Instant},
};

use hairpin::{
    control::{protocol::PortCounters, xdp::FastPath},
    wire::Mac,
};

use crate::{TestConfig, Topology, ping, send_raw};

/// `count` frames from `src` to `dst`, a local experimental EtherType, none alike.
fn frames(dst: Mac, src: Mac, count: u16) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut f = Vec::with_capacity(60);
            f.extend_from_slice(&dst.0);
            f.extend_from_slice(&src.0);
            f.extend_from_slice(&[0x88, 0xb5]);
            f.extend_from_slice(&i.to_be_bytes());
            f.resize(60, 0);
            f
        })
        .collect()
}

/// What counter `f` of port `p` counted from `before` to `after`.
fn delta(
    before: &[PortCounters],
    after: &[PortCounters],
    p: usize,
    f: fn(&PortCounters) -> u64,
) -> u64 {
    f(&after[p]) - f(&before[p])
}

/// Every port's counters, by slot.
fn counters(bridge: &hairpin::control::bridge::Bridge) -> Vec<PortCounters> {
    bridge.ports().into_iter().map(|p| p.counters).collect()
}

/// Waits until counter `f` of port `port` has counted `more` beyond `before`, or 5 s;
/// returns the counters then.
fn wait_for(
    bridge: &hairpin::control::bridge::Bridge,
    before: &[PortCounters],
    port: usize,
    f: fn(&PortCounters) -> u64,
    more: u64,
) -> Vec<PortCounters> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = counters(bridge);
        if delta(before, &now, port, f) >= more || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_known_flow_takes_the_fast_path_and_follows_a_moved_station() {
    const BURST: u16 = 200;
    let topo = Topology::new("fast", &[1, 1, 1]);
    topo.fast_path_ready();
    let mut bridge = topo.start(TestConfig {
        fast_path: FastPath::On,
        ..TestConfig::default()
    });
    // The workers learn vm0 on port 0 and vm1 on port 1.
    ping(&topo.vms[1], &topo.addr(0), 2).unwrap();
    let (wanderer, sender) = (topo.vm_mac(0), topo.vm_mac(1));

    // A known flow: vm1 to vm0, all by the fast path, counted on both ports.
    let before = counters(&bridge);
    send_raw(&topo.vms[1], "eth0", &frames(wanderer, sender, BURST));
    let after = wait_for(&bridge, &before, 0, |c| c.fast_tx_packets, u64::from(BURST));
    assert_eq!(
        delta(&before, &after, 0, |c| c.fast_tx_packets),
        u64::from(BURST),
        "vm0's port sent the flow by the fast path: {after:?}"
    );
    assert_eq!(
        delta(&before, &after, 1, |c| c.fast_rx_packets),
        u64::from(BURST),
        "vm1's port received it by the fast path: {after:?}"
    );
    // Merged into the ports' own counters: at least the burst each way (the VMs may
    // add a frame of their own).
    assert!(delta(&before, &after, 1, |c| c.rx_packets) >= u64::from(BURST));
    assert!(delta(&before, &after, 0, |c| c.tx_packets) >= u64::from(BURST));
    assert!(
        delta(&before, &after, 0, |c| c.tx_bytes) >= u64::from(BURST) * 60,
        "bytes merged too: {after:?}"
    );

    // vm0's MAC now speaks from vm2's port (a migrated VM announcing itself): the workers
    // learn the move, and the fast path reads the same table.
    send_raw(&topo.vms[2], "eth0", &frames(Mac::BROADCAST, wanderer, 1));
    let deadline = Instant::now() + Duration::from_secs(5);
    while bridge.fdb().lookup(0, wanderer) != Some(2) {
        assert!(Instant::now() < deadline, "the move was not learned");
        thread::sleep(Duration::from_millis(10));
    }
    let before = counters(&bridge);
    send_raw(&topo.vms[1], "eth0", &frames(wanderer, sender, BURST));
    let after = wait_for(&bridge, &before, 2, |c| c.fast_tx_packets, u64::from(BURST));
    assert_eq!(
        delta(&before, &after, 2, |c| c.fast_tx_packets),
        u64::from(BURST),
        "every frame of the flow went to the new port, by the fast path: {after:?}"
    );
    assert_eq!(
        delta(&before, &after, 0, |c| c.fast_tx_packets),
        0,
        "none to the old one: {after:?}"
    );

    // vm2's end stops taking redirected frames (GRO off): within a second the bridge
    // gives its port back to the workers, and the flow goes on, none of it lost.
    topo.vms[2]
        .run("ethtool", &["-K", "eth0", "gro", "off"])
        .unwrap();
    thread::sleep(Duration::from_millis(1100));
    bridge.tick();
    let before = counters(&bridge);
    send_raw(&topo.vms[1], "eth0", &frames(wanderer, sender, BURST));
    let after = wait_for(&bridge, &before, 2, |c| c.tx_packets, u64::from(BURST));
    assert!(
        delta(&before, &after, 2, |c| c.tx_packets) >= u64::from(BURST),
        "the workers sent the flow: {after:?}"
    );
    assert_eq!(
        delta(&before, &after, 2, |c| c.fast_tx_packets),
        0,
        "the fast path sent none of it: {after:?}"
    );

    // The ledger of the whole run: every frame the fast path received went out.
    let (stats, panicked) = bridge.stop();
    assert_eq!(panicked, 0);
    let fast_rx: u64 = stats.ports.iter().map(|p| p.counters.fast_rx_packets).sum();
    let fast_tx: u64 = stats.ports.iter().map(|p| p.counters.fast_tx_packets).sum();
    assert_eq!(fast_rx, fast_tx, "{:?}", stats.ports);
    assert!(fast_rx >= 2 * u64::from(BURST));
}
