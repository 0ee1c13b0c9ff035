//! The MAC table seen from outside: entries age out, a station that moves is followed at
//! once, a flood of random source MACs leaves the table bounded, and one port learns no
//! more than its `max_macs`.
use std::{
    thread,
    time::{Duration, Instant},
};

use hairpin::wire::Mac;

use crate::{TestConfig, Topology, ping};

/// Sends raw Ethernet frames out of VM `vm`'s `eth0`.
fn send_raw(topo: &Topology, vm: usize, frames: &[Vec<u8>]) {
    crate::send_raw(&topo.vms[vm], "eth0", frames);
}

fn frame(dst: Mac, src: Mac) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental EtherType
    f.resize(60, 0);
    f
}

#[test]
fn learned_entries_age_out() {
    let topo = Topology::new("age", &[1, 1]);
    let mut datapath = topo.start(TestConfig {
        fdb_max_age: 2,
        ..TestConfig::default()
    });
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    assert_eq!(datapath.fdb().len(), 2);
    // Quiet stations: the control loop's ticks remove them once they are 2 s old.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !datapath.fdb().is_empty() {
        assert!(
            Instant::now() < deadline,
            "entries never aged: {:?}",
            datapath.fdb().entries()
        );
        datapath.tick();
        thread::sleep(Duration::from_millis(200));
    }
    // Traffic teaches them again.
    ping(&topo.vms[0], &topo.addr(1), 1).unwrap();
    assert_eq!(datapath.fdb().len(), 2);
    assert_eq!(datapath.stop().1, 0);
}

#[test]
fn a_station_that_moves_is_followed_at_once() {
    let topo = Topology::new("move", &[1, 1, 1]);
    let datapath = topo.start(TestConfig::default());
    ping(&topo.vms[0], &topo.addr(1), 1).unwrap();
    let wanderer = topo.vm_mac(0);
    assert_eq!(datapath.fdb().lookup(0, wanderer), Some(0));
    // The VM migrates: its old port goes quiet and its MAC speaks from vm2's port.
    topo.vms[0].ip(&["link", "set", "eth0", "down"]).unwrap();
    send_raw(&topo, 2, &[frame(Mac::BROADCAST, wanderer)]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while datapath.fdb().lookup(0, wanderer) != Some(2) {
        assert!(Instant::now() < deadline, "the move was not learned");
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(datapath.stop().1, 0);
}

#[test]
fn a_flood_of_random_sources_leaves_the_table_bounded() {
    let topo = Topology::new("flood", &[1, 1]);
    let datapath = topo.start(TestConfig {
        fdb_capacity: 256,
        ..TestConfig::default()
    });
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let frames: Vec<Vec<u8>> = (0..5000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = state.to_be_bytes();
            frame(Mac::BROADCAST, Mac([0x02, b[1], b[2], b[3], b[4], b[5]]))
        })
        .collect();
    send_raw(&topo, 0, &frames);
    // Wait until every frame is accounted for: received, or counted by the kernel as
    // dropped (a burst can outrun a worker that parallel tests keep off its core; such
    // drops are counted, which is all this test needs of them).
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = |t: hairpin::datapath::stats::PortQueueSnapshot| {
        t.rx_packets + t.kernel_fill_ring_empty + t.kernel_rx_ring_full + t.kernel_rx_dropped
    };
    while seen(datapath.snapshot().port_total(0)) < 5000 {
        assert!(
            Instant::now() < deadline,
            "frames not received: {:?}",
            datapath.snapshot().port_total(0)
        );
        thread::sleep(Duration::from_millis(20));
    }
    let fdb = &datapath.fdb();
    assert_eq!(fdb.capacity(), 256);
    assert!(
        fdb.len() <= 256 && fdb.len() > 200,
        "bounded and nearly full: {}",
        fdb.len()
    );
    // Every source hairpin received either found room (256 at most) or was refused and
    // counted; those the kernel dropped on a loaded machine never reached the table.
    let received = datapath.snapshot().port_total(0).rx_packets;
    assert!(
        received > 1000,
        "too few frames reached hairpin: {received}"
    );
    assert!(
        fdb.full_events() + 256 + 16 >= received,
        "refusals counted: {} of {received} received",
        fdb.full_events()
    );
    // The bridge still works for real stations whose buckets have room, and floods the
    // rest: the ping gets through either way.
    ping(&topo.vms[1], &topo.addr(0), 2).unwrap();
    let (s, panicked) = datapath.stop();
    assert_eq!(panicked, 0);
    assert!(s.fdb_entries <= 256, "{}", s.fdb_entries);
    // The counter operators see has every refusal (against the frames received, as
    // above: a loaded machine drops part of the burst before hairpin sees it).
    assert!(
        s.fdb_full + 256 + 16 >= received,
        "the counter operators see: {} of {received} received",
        s.fdb_full
    );
}

/// With the defaults, one downlink sending from more source MACs than a port may learn
/// fills no more than its share of the table: 4096 learned, the rest refused and
/// counted, its frames still forwarded; stations on other ports are learned as before.
#[test]
fn one_port_learns_at_most_its_max_macs() {
    let topo = Topology::new("maxm", &[1, 1, 1]);
    let datapath = topo.start(TestConfig::default());
    let limit = hairpin::switch::DEFAULT_MAX_MACS;
    let sent = limit as usize + 1500;
    let frames: Vec<Vec<u8>> = (0..sent as u32)
        .map(|n| {
            let b = n.to_be_bytes();
            frame(Mac::BROADCAST, Mac([0x02, 0x4d, b[0], b[1], b[2], b[3]]))
        })
        .collect();
    // In bursts a worker keeps up with (a burst the kernel drops for lack of room is
    // counted, and the test needs every source received).
    for burst in frames.chunks(500) {
        send_raw(&topo, 0, burst);
        thread::sleep(Duration::from_millis(50));
    }
    let fdb = datapath.fdb();
    let deadline = Instant::now() + Duration::from_secs(10);
    while datapath.snapshot().port_total(0).rx_packets < sent as u64 {
        let t = datapath.snapshot().port_total(0);
        assert!(
            Instant::now() < deadline && t.kernel_fill_ring_empty + t.kernel_rx_ring_full == 0,
            "not every frame reached hairpin: {t:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let on_port = fdb.entries().iter().filter(|e| e.port == 0).count();
    assert_eq!((on_port, fdb.learned_on(0)), (limit as usize, limit));
    // Every source past the limit was refused, but for the few whose bucket was full.
    let refused = fdb.refused(0);
    assert!(
        refused + fdb.full_events() >= (sent - limit as usize) as u64 && refused > 0,
        "refused {refused}, full {}",
        fdb.full_events()
    );
    // The frames were forwarded all the same: the other ports received the flood.
    for vm in [1, 2] {
        let tx = datapath.snapshot().port_total(vm).tx_packets;
        assert!(tx + 100 >= sent as u64, "port {vm} sent {tx} of {sent}");
    }
    // Stations on the other ports are learned as before.
    ping(&topo.vms[1], &topo.addr(2), 2).unwrap();
    assert_eq!(fdb.lookup(0, topo.vm_mac(1)), Some(1));
    assert_eq!(fdb.lookup(0, topo.vm_mac(2)), Some(2));
    assert_eq!(datapath.stop().1, 0);
}
