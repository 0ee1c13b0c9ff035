//! Storm control and policing on real workers' turns: what leaves each port, and the
//! drops counted. Every frame of a test is received in one batch, which a turn meters
//! at one instant, so the counts do not depend on the host's clock.
use super::*;
use crate::switch::Limits;

/// `ports` plain downlinks in VEB, port 0 with `limits`, on one worker.
fn rig(ports: usize, limits: Limits) -> Rig {
    let slots: Vec<_> = (0..ports)
        .map(|i| {
            Some(PortPolicy {
                limits: if i == 0 { limits } else { Limits::default() },
                ..PortPolicy::default()
            })
        })
        .collect();
    let fdb = Arc::new(Fdb::with_capacity(64));
    let tables = Tables::new(Mode::Veb, &slots, PortSet::first(ports), fdb).unwrap();
    Rig::new(1, ports, tables)
}

#[test]
fn a_broadcast_storm_reaches_the_other_ports_only_up_to_its_burst_and_unicast_passes() {
    let mut rig = rig(
        3,
        Limits {
            storm_broadcast: Some(1000),
            storm_burst: Some(5),
            ..Limits::default()
        },
    );
    let fakes: Vec<FakeSocket> = (0..3).map(|id| rig.attach(id)).collect();
    // Station 2 lives on port 1.
    fakes[1].receive(&frame(BROADCAST, mac(2), 60, 0)).unwrap();
    rig.turn(0);
    fakes[0].sent();
    fakes[2].sent();
    for n in 0..20 {
        fakes[0].receive(&frame(BROADCAST, mac(1), 60, n)).unwrap();
    }
    rig.turn(0);
    assert_eq!(fakes[1].sent().len(), 5, "the burst, no more");
    assert_eq!(fakes[2].sent().len(), 5);
    let c = rig.counters(0, 0);
    assert_eq!(c.drops[DropReason::Storm as usize], 15);
    assert_eq!(c.rx_packets, 20, "received, then dropped");
    // A storm of known unicast is no storm: all of it goes to its port.
    for n in 0..20 {
        fakes[0].receive(&frame(mac(2), mac(1), 60, n)).unwrap();
    }
    rig.turn(0);
    assert_eq!(fakes[1].sent().len(), 20);
    assert!(fakes[2].sent().is_empty());
    assert_eq!(rig.counters(0, 0).drops[DropReason::Storm as usize], 15);
    // Port 1 has no limit.
    for n in 0..20 {
        fakes[1].receive(&frame(BROADCAST, mac(2), 60, n)).unwrap();
    }
    rig.turn(0);
    assert_eq!(fakes[0].sent().len(), 20);
    rig.assert_all_back(0);
}

#[test]
fn a_policed_port_s_frames_over_the_rate_are_dropped_counted_and_not_learned() {
    let mut rig = rig(
        2,
        Limits {
            police_rate: Some(8_000_000), // 1 MB/s
            police_burst: Some(3000),
            ..Limits::default()
        },
    );
    let (a, b) = (rig.attach(0), rig.attach(1));
    rig.taps.arm();
    rig.taps.set(0, tap::IN);
    for n in 0..10 {
        a.receive(&frame(BROADCAST, mac(1), 1000, n)).unwrap();
    }
    // From another source: over the rate as well, so never learned.
    a.receive(&frame(BROADCAST, mac(9), 1000, 0)).unwrap();
    rig.turn(0);
    assert_eq!(b.sent().len(), 3, "3000 bytes of burst: three frames");
    let c = rig.counters(0, 0);
    assert_eq!(c.drops[DropReason::Policed as usize], 8);
    assert_eq!((c.rx_packets, c.rx_bytes), (11, 11_000));
    let fdb = &rig.worker(0).tables.fdb;
    assert_eq!(fdb.lookup(0, crate::wire::Mac(mac(1))), Some(0));
    assert_eq!(fdb.lookup(0, crate::wire::Mac(mac(9))), None);
    let mut reasons = Vec::new();
    rig.taps.drain(|t| reasons.push(t.reason));
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == Some(DropReason::Policed))
            .count(),
        8,
        "a capture sees each policed frame with its reason"
    );
    // Port 1 is not policed.
    for n in 0..10 {
        b.receive(&frame(BROADCAST, mac(2), 1000, n)).unwrap();
    }
    rig.turn(0);
    assert_eq!(a.sent().len(), 10);
    rig.assert_all_back(0);
}
