//! Floods in the kernel (`--fast-floods on`, the default with the fast path): broadcast,
//! multicast and unknown unicast from a learned source are copied by the kernel to every
//! other port of their VLAN (`BPF_F_BROADCAST` over the VLAN's flood domain), and leave
//! each port byte for byte as the workers send them: untagged where the port takes the
//! VLAN untagged (the devmap egress program pops the tag), tagged on a trunk (pushed at
//! ingress, a priority tag given its VLAN). The same frames, sent once through a bridge
//! with the fast path off and once with kernel floods, give the same frames on every
//! port, each once.
//!
//! Then a port whose peer stops taking redirected frames (GRO off on a veth's peer,
//! with no XDP program there) leaves its VLAN's domain incomplete: the floods that must
//! reach it go to the workers whole, and nothing is lost; its own floods, which it gets
//! no copy of, stay in the kernel.
use std::{
    thread,
    time::{Duration, Instant},
};

use hairpin::{
    control::{
        bridge::Bridge,
        protocol::PortCounters,
        xdp::{FastFloods, FastPath},
    },
    wire::{Mac, dot1q},
};

use crate::{
    TestConfig, Topology,
    fast_vlan::{
        FRAMES, S0, S1, Station, T10, T20, U20, capture_arrivals, counters, frame, inner, pcp,
        port_vlans, teach,
    },
    finish, send_raw, vlan_policies,
};

/// A multicast group address (not a reserved one).
const GROUP: Mac = Mac([0x01, 0x00, 0x5e, 0x00, 0x00, 0x42]);

/// A unicast address no station has.
const NOBODY: Mac = Mac([0x02, 0xfa, 0xee, 0xee, 0xee, 0xee]);

/// One flood: from `src` to `dst` with the 802.1Q tag `sent` (TCI) or none.
#[derive(Clone, Copy, Debug)]
struct Flood {
    what: &'static str,
    src: Station,
    dst: Mac,
    sent: Option<u16>,
}

const FLOODS: [Flood; 6] = [
    Flood {
        what: "untagged broadcast from an access port (VLAN 10: p1 untagged, p2 and p3 tagged)",
        src: S0,
        dst: Mac::BROADCAST,
        sent: None,
    },
    Flood {
        what: "priority-tagged broadcast from an access port (its VLAN filled in)",
        src: S0,
        dst: Mac::BROADCAST,
        sent: Some(pcp(5)),
    },
    Flood {
        what: "tagged multicast from a trunk (popped for the access ports)",
        src: T10,
        dst: GROUP,
        sent: Some(pcp(3) | 10),
    },
    Flood {
        what: "unknown unicast from an access port",
        src: S1,
        dst: NOBODY,
        sent: None,
    },
    Flood {
        what: "untagged broadcast in a trunk's native VLAN 20 (to p2 tagged)",
        src: U20,
        dst: Mac::BROADCAST,
        sent: None,
    },
    Flood {
        what: "tagged broadcast in VLAN 20 (to p3 untagged, its native VLAN)",
        src: T20,
        dst: Mac::BROADCAST,
        sent: Some(20),
    },
];

impl Flood {
    /// The frame port `port` should get of frame `n` of flood `case`, if any: every port
    /// of the VLAN but the sender's, untagged where it is the port's untagged VLAN.
    fn expected(&self, case: usize, port: usize, n: u16) -> Option<Vec<u8>> {
        let vid = self.src.vid;
        let vlans = &port_vlans()[port];
        if port == self.src.port || !vlans.vlans().any(|v| v == vid) {
            return None;
        }
        let untagged = match vlans {
            hairpin::switch::vlan::PortVlans::Access(v) => *v == vid,
            hairpin::switch::vlan::PortVlans::Trunk { native, .. } => *native == Some(vid),
        };
        let tci = match self.sent {
            None => vid,
            Some(t) if t & dot1q::VID_MASK == 0 => t | vid,
            Some(t) => t,
        };
        let tag = (!untagged).then_some(tci);
        Some(frame(self.dst, self.src.mac(), tag, &inner(case, n)))
    }
}

/// The case and number of a test frame as it arrived (tagged or not), if it is one.
fn parse(frame: &[u8]) -> Option<(usize, u16)> {
    let mut at = dot1q::OFFSET;
    if frame.get(at..at + 2)? == dot1q::TPID_8021Q.to_be_bytes() {
        at += dot1q::TAG_LEN;
    }
    if frame.get(at..at + 2)? != [0x88, 0xb5] {
        return None;
    }
    let case = usize::from(*frame.get(at + 2)?);
    let n = u16::from_be_bytes([*frame.get(at + 3)?, *frame.get(at + 4)?]);
    (case < FLOODS.len()).then_some((case, n))
}

/// What one run saw: per (case, port) the frames captured on the port's peer, in the
/// order they came; per port, the counters' change.
struct Run {
    frames: Vec<Vec<Vec<Vec<u8>>>>,
    delta: Vec<PortCounters>,
}

/// Copies of the floods each port should send.
fn copies_to() -> [u64; 4] {
    let mut to = [0u64; 4];
    for (c, flood) in FLOODS.iter().enumerate() {
        for (p, n) in to.iter_mut().enumerate() {
            if flood.expected(c, p, 0).is_some() {
                *n += u64::from(FRAMES);
            }
        }
    }
    to
}

/// Sends every flood's frames through `bridge` (stations taught) and returns what left
/// it and how it was counted.
fn send(topo: &Topology, bridge: &Bridge, label: &str, cases: &[usize]) -> Run {
    let captures = capture_arrivals(topo, label);
    let before = counters(bridge);
    let mut to = [0u64; 4];
    for &c in cases {
        let flood = &FLOODS[c];
        let frames: Vec<Vec<u8>> = (0..FRAMES)
            .map(|n| frame(flood.dst, flood.src.mac(), flood.sent, &inner(c, n)))
            .collect();
        send_raw(&topo.vms[flood.src.port], "eth0", &frames);
        for (p, n) in to.iter_mut().enumerate() {
            if flood.expected(c, p, 0).is_some() {
                *n += u64::from(FRAMES);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let now = counters(bridge);
        let done = (0..4).all(|p| now[p].tx_packets - before[p].tx_packets >= to[p]);
        if done || Instant::now() > deadline {
            break now;
        }
        thread::sleep(Duration::from_millis(20));
    };
    thread::sleep(Duration::from_secs(1));
    let delta = after
        .iter()
        .zip(&before)
        .map(|(a, b)| PortCounters {
            tx_packets: a.tx_packets - b.tx_packets,
            fast_rx_packets: a.fast_rx_packets - b.fast_rx_packets,
            fast_tx_packets: a.fast_tx_packets - b.fast_tx_packets,
            fast_flood_packets: a.fast_flood_packets - b.fast_flood_packets,
            ..PortCounters::default()
        })
        .collect();
    let mut frames = vec![vec![Vec::new(); 4]; FLOODS.len()];
    for (vm, capture) in captures.into_iter().enumerate() {
        for f in capture.frames() {
            if let Some((c, _)) = parse(&f) {
                frames[c][vm].push(f);
            }
        }
    }
    Run { frames, delta }
}

/// Starts a bridge on the test's VLANs with `fast_path` and `fast_floods`, teaches it
/// every station.
fn start(topo: &Topology, fast_path: FastPath, fast_floods: FastFloods, label: &str) -> Bridge {
    let bridge = topo.start(TestConfig {
        policies: vlan_policies(&port_vlans()),
        fast_path,
        fast_floods,
        ..TestConfig::default()
    });
    teach(topo, &bridge, label);
    bridge
}

#[test]
fn kernel_floods_leave_every_port_as_the_workers_floods_and_fall_back_whole() {
    let topo = Topology::new("kflood", &[1, 1, 1, 1]);
    topo.fast_path_ready();
    let every: Vec<usize> = (0..FLOODS.len()).collect();

    let bridge = start(&topo, FastPath::Off, FastFloods::On, "off");
    let workers = send(&topo, &bridge, "off", &every);
    finish(bridge);
    let mut bridge = start(&topo, FastPath::On, FastFloods::On, "on");
    let kernel = send(&topo, &bridge, "on", &every);

    let mut wrong = Vec::new();
    let to = copies_to();
    let mut from = [0u64; 4];
    for flood in &FLOODS {
        from[flood.src.port] += u64::from(FRAMES);
    }
    let sent: Vec<u64> = workers.delta.iter().map(|c| c.fast_tx_packets).collect();
    if sent != [0; 4] {
        wrong.push(format!("the fast path sent {sent:?} (by port) while off"));
    }
    let flooded: Vec<u64> = kernel.delta.iter().map(|c| c.fast_flood_packets).collect();
    let sent: Vec<u64> = kernel.delta.iter().map(|c| c.fast_tx_packets).collect();
    if flooded != from || sent != to {
        wrong.push(format!(
            "the kernel flooded {flooded:?} and sent {sent:?} (by port), not {from:?} and \
             {to:?}: it did not carry every flood"
        ));
    }
    for (c, flood) in FLOODS.iter().enumerate() {
        for port in 0..4 {
            let expected: Vec<Vec<u8>> = (0..FRAMES)
                .filter_map(|n| flood.expected(c, port, n))
                .collect();
            for (path, run) in [("workers", &workers), ("kernel", &kernel)] {
                let got = &run.frames[c][port];
                if *got != expected {
                    wrong.push(format!(
                        "flood {c} ({}) to p{port} by the {path}: {} frames of {}; first:\n  \
                         got      {:02x?}\n  expected {:02x?}",
                        flood.what,
                        got.len(),
                        expected.len(),
                        got.first(),
                        expected.first(),
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // p1's peer stops taking redirected frames: VLAN 10's domain is incomplete. Floods
    // that must reach p1 go to the workers; p1's own stay in the kernel.
    topo.vms[1]
        .run("ethtool", &["-K", "eth0", "gro", "off"])
        .unwrap();
    // The bridge asks the drivers at most once a second, on its tick.
    thread::sleep(Duration::from_millis(1100));
    bridge.tick();
    let (s0_broadcast, s1_unknown) = (0, 3);
    let partial = send(&topo, &bridge, "gro-off", &[s0_broadcast, s1_unknown]);
    for (c, path) in [(s0_broadcast, "workers"), (s1_unknown, "kernel")] {
        let flood = &FLOODS[c];
        for port in 0..4 {
            let expected: Vec<Vec<u8>> = (0..FRAMES)
                .filter_map(|n| flood.expected(c, port, n))
                .collect();
            let got = &partial.frames[c][port];
            if *got != expected {
                wrong.push(format!(
                    "with p1 out of the kernel's reach, flood {c} ({}) to p{port} by the \
                     {path}: {} frames of {}",
                    flood.what,
                    got.len(),
                    expected.len()
                ));
            }
        }
    }
    let flooded: Vec<u64> = partial.delta.iter().map(|c| c.fast_flood_packets).collect();
    if flooded != [0, u64::from(FRAMES), 0, 0] {
        wrong.push(format!(
            "with p1 out of the kernel's reach it flooded {flooded:?} (by port): p0's floods \
             must go to the workers, p1's stay in the kernel"
        ));
    }
    finish(bridge);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
