//! Storm control and policing through the bridge: the fast path's policing settings
//! published per slot, the meters started afresh when a port's limits change, and the
//! fast path's policing drops in the port's counters.
use hairpin_common::meter::{self, Dropped, Meter};

use super::*;
use crate::switch::Limits;

/// `p0` policed at 100 Mbit/s and 1000 pps with storm control on its broadcasts, `p1`
/// plain, both egress ports of the fast path.
fn policed(kernel: &FakeKernel) -> (Bridge, Vec<PortConfig>) {
    kernel.set_features(10, XDP_ACT_NDO_XMIT);
    kernel.set_features(11, XDP_ACT_NDO_XMIT);
    let mut ports = downlinks(&["p0", "p1"]);
    ports[0].policy.limits = Limits {
        police_rate: Some(100_000_000),
        police_pps: Some(1000),
        storm_broadcast: Some(500),
        ..Limits::default()
    };
    let mut c = config(ports.clone());
    c.fast_path = FastPath::On;
    let bridge = Bridge::with_kernel(c, Box::new(kernel.clone())).unwrap();
    (bridge, ports)
}

#[test]
fn the_fast_path_is_given_each_policed_port_s_meters_and_loses_them_with_the_limit() {
    let kernel = kernel();
    let (mut bridge, mut ports) = policed(&kernel);
    assert_eq!(
        kernel.fast_police(),
        [(
            0,
            Meter::bytes(100_000_000, 6_250_000),
            Meter::packets(1000, 100)
        )],
        "policing only: storm control is the workers'"
    );
    let info = &bridge.ports()[0];
    let limits: Vec<(&str, u64, u64)> = info
        .limits
        .iter()
        .map(|(k, l)| (k.as_str(), l.rate, l.burst))
        .collect();
    assert_eq!(
        limits,
        [
            ("police_pps", 1000, 100),
            ("police_rate", 100_000_000, 6_250_000),
            ("storm_broadcast", 500, 50),
        ]
    );
    assert!(bridge.ports()[1].limits.is_empty());

    ports[0].policy.limits = Limits::default();
    let mut c = config(ports);
    c.fast_path = FastPath::On;
    assert_eq!(bridge.reload(c).unwrap(), "reloaded: p0 changed");
    assert!(kernel.fast_police().is_empty());
    assert!(bridge.ports()[0].limits.is_empty());
}

#[test]
fn a_port_s_meters_start_afresh_when_its_limits_change_and_only_then() {
    let kernel = kernel();
    let (mut bridge, mut ports) = policed(&kernel);
    let meters = std::sync::Arc::clone(&bridge.tables.meters);
    let slow = Meter::packets(1, 1);
    assert!(meters.take(0, meter::POLICE_PACKETS, &slow, 1, 1_000));
    assert!(meters.take(1, meter::POLICE_PACKETS, &slow, 1, 1_000));
    let reload = |bridge: &mut Bridge, ports: &[PortConfig]| {
        let mut c = config(ports.to_vec());
        c.fast_path = FastPath::On;
        bridge.reload(c).unwrap()
    };
    // p1 changes, but not its limits: no meter starts over.
    ports[1].policy.hairpin = true;
    assert_eq!(reload(&mut bridge, &ports), "reloaded: p1 changed");
    assert_ne!(
        meters.state(0, meter::POLICE_PACKETS),
        0,
        "p0's limits stay"
    );
    assert_ne!(
        meters.state(1, meter::POLICE_PACKETS),
        0,
        "p1 has the same limits"
    );
    // p0 to a faster rate: a meter left ahead by the old one would refuse a while.
    ports[0].policy.limits.police_pps = Some(1_000_000);
    assert_eq!(reload(&mut bridge, &ports), "reloaded: p0 changed");
    assert_eq!(meters.state(0, meter::POLICE_PACKETS), 0);
    assert!(
        std::sync::Arc::ptr_eq(&meters, &bridge.tables.meters),
        "the same meters"
    );
}

#[test]
fn what_the_fast_path_policed_counts_as_received_and_dropped_on_the_port() {
    let kernel = kernel();
    let (bridge, _) = policed(&kernel);
    kernel.set_meter_drops(
        0,
        Dropped {
            packets: 7,
            bytes: 700,
        },
    );
    let p0 = &bridge.ports()[0];
    assert_eq!(p0.counters.drops.get("policed"), Some(&7));
    assert_eq!((p0.counters.rx_packets, p0.counters.rx_bytes), (7, 700));
    assert_eq!(
        p0.per_queue.iter().map(|q| q.drops).sum::<u64>(),
        7,
        "once, on one queue"
    );
    assert_eq!(bridge.ports()[1].counters.drops.get("policed"), None);
}

#[test]
fn a_trace_says_which_limits_the_frame_is_subject_to() {
    let kernel = kernel();
    let (bridge, _) = policed(&kernel);
    let frame = |dst: &str| crate::control::protocol::TraceFrame::Described {
        src: "02:00:00:00:00:01".into(),
        dst: dst.into(),
        vlan: None,
        pcp: 0,
        ethertype: 0x0800,
    };
    let t = bridge.trace("p0", &frame("ff:ff:ff:ff:ff:ff")).unwrap();
    assert_eq!(
        t.limits,
        [
            "police_rate 100 Mbit/s (burst 6250000 bytes)",
            "police_pps 1000 pps (burst 100)",
            "storm_broadcast 500 pps (burst 50)",
        ]
    );
    let line = t.lines.iter().find(|l| l.starts_with("limits: ")).unwrap();
    assert!(line.ends_with("dropped as policed or storm"), "{line}");
    // A unicast is subject to the policing only; another port to nothing.
    let t = bridge.trace("p0", &frame("02:00:00:00:00:02")).unwrap();
    assert_eq!(t.limits.len(), 2);
    let t = bridge.trace("p1", &frame("ff:ff:ff:ff:ff:ff")).unwrap();
    assert!(t.limits.is_empty());
    assert!(!t.lines.iter().any(|l| l.starts_with("limits: ")));
}
