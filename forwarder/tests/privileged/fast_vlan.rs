//! The XDP fast path tags frames as the workers do: the same frames, sent once through a
//! bridge with the fast path off (the workers' `retag_in_place`) and once with it on
//! (the XDP program's own push, pop and rewrite with `bpf_xdp_adjust_head`), come out
//! of their egress ports byte for byte the same, and the same as the frame the test
//! builds from `common`'s 802.1Q layout. Every shape of retag is covered: kept untagged,
//! kept tagged, pushed, popped and rewritten (a priority tag given its VLAN).
//!
//! The frames are captured by tcpdump on the egress port's peer. The peer's kernel moves
//! a received tag out of the frame and libpcap puts it back (TPID and TCI), the same way
//! for both runs.
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
    switch::{VlanId, vlan::PortVlans},
    wire::{Mac, dot1q},
};

use crate::{Capture, TestConfig, Topology, finish, send_raw, vlan_policies};

/// Frames sent per case and run.
pub const FRAMES: u16 = 16;

/// The local experimental EtherType the test frames carry.
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// Bytes after the MACs (and tag): the EtherType, the case, the frame's number, zeros;
/// an untagged frame is 60 bytes, a tagged one 64.
const INNER_LEN: usize = 60 - dot1q::OFFSET;

/// The ports' VLANs: p0 and p1 access VLAN 10; p2 a trunk of 10 and 20 with native
/// VLAN 1; p3 a trunk of 10 with native VLAN 20.
pub fn port_vlans() -> Vec<PortVlans> {
    vec![
        PortVlans::Access(10),
        PortVlans::Access(10),
        PortVlans::Trunk {
            tagged: vec![10, 20],
            native: Some(1),
        },
        PortVlans::Trunk {
            tagged: vec![10],
            native: Some(20),
        },
    ]
}

/// A station of the test: made-up MAC behind port `port`, in `vid`, which it sends
/// with `tag` (`None`: untagged).
#[derive(Clone, Copy, Debug)]
pub struct Station {
    pub port: usize,
    pub vid: VlanId,
    pub tag: Option<u16>,
}

impl Station {
    pub fn mac(self) -> Mac {
        Mac([0x02, 0xfa, 0, 0, self.port as u8, self.vid as u8])
    }
}

/// On p0 and p1, VLAN 10 (untagged).
pub const S0: Station = Station {
    port: 0,
    vid: 10,
    tag: None,
};
pub const S1: Station = Station {
    port: 1,
    vid: 10,
    tag: None,
};
/// On trunk p2, VLANs 10 and 20 (tagged).
pub const T10: Station = Station {
    port: 2,
    vid: 10,
    tag: Some(10),
};
pub const T20: Station = Station {
    port: 2,
    vid: 20,
    tag: Some(20),
};
/// On trunk p3, VLAN 10 (tagged) and its native VLAN 20 (untagged).
pub const U10: Station = Station {
    port: 3,
    vid: 10,
    tag: Some(10),
};
pub const U20: Station = Station {
    port: 3,
    vid: 20,
    tag: None,
};

/// Every station, each taught to the bridge before the frames are sent.
pub const STATIONS: [Station; 6] = [S0, S1, T10, T20, U10, U20];

/// One shape of frame: from `src` to `dst`, with the 802.1Q tag `sent` (TCI) or none,
/// leaving with `expected`.
#[derive(Clone, Copy, Debug)]
struct Case {
    what: &'static str,
    src: Station,
    dst: Station,
    sent: Option<u16>,
    expected: Option<u16>,
}

/// Priority `pcp` in a TCI.
pub const fn pcp(p: u16) -> u16 {
    p << 13
}

const CASES: [Case; 9] = [
    Case {
        what: "access to access, untagged: kept",
        src: S0,
        dst: S1,
        sent: None,
        expected: None,
    },
    Case {
        what: "access to access, priority-tagged: popped",
        src: S0,
        dst: S1,
        sent: Some(pcp(5)),
        expected: None,
    },
    Case {
        what: "access to trunk, untagged: pushed",
        src: S0,
        dst: T10,
        sent: None,
        expected: Some(10),
    },
    Case {
        what: "access to trunk, priority-tagged: rewritten",
        src: S0,
        dst: T10,
        sent: Some(pcp(5)),
        expected: Some(pcp(5) | 10),
    },
    Case {
        what: "trunk to access, tagged with a priority: popped",
        src: T10,
        dst: S0,
        sent: Some(pcp(3) | 10),
        expected: None,
    },
    Case {
        what: "trunk to trunk, tagged with a priority: kept",
        src: T10,
        dst: U10,
        sent: Some(pcp(3) | 10),
        expected: Some(pcp(3) | 10),
    },
    Case {
        what: "trunk's native VLAN to a trunk that tags it: pushed",
        src: U20,
        dst: T20,
        sent: None,
        expected: Some(20),
    },
    Case {
        what: "trunk to a trunk's native VLAN: popped",
        src: T20,
        dst: U20,
        sent: Some(20),
        expected: None,
    },
    Case {
        what: "priority-tagged in a trunk's native VLAN to a trunk that tags it: rewritten",
        src: U20,
        dst: T20,
        sent: Some(pcp(6)),
        expected: Some(pcp(6) | 20),
    },
];

/// A frame from `src` to `dst` with `tag` (a TCI) or none, built from `common`'s 802.1Q
/// layout: the MACs, the tag at [`dot1q::OFFSET`], then `inner`.
pub fn frame(dst: Mac, src: Mac, tag: Option<u16>, inner: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if let Some(tci) = tag {
        f.extend_from_slice(&dot1q::tag(tci));
    }
    f.extend_from_slice(inner);
    f
}

/// What follows the MACs (and tag) in frame `n` of case `case`.
pub fn inner(case: usize, n: u16) -> Vec<u8> {
    let mut inner = Vec::with_capacity(INNER_LEN);
    inner.extend_from_slice(&ETHERTYPE);
    inner.push(case as u8);
    inner.extend_from_slice(&n.to_be_bytes());
    inner.resize(INNER_LEN, 0);
    inner
}

/// The case and number of a test frame as it arrived (tagged or not), if it is one.
fn parse(frame: &[u8]) -> Option<(usize, u16)> {
    let mut at = dot1q::OFFSET;
    if frame.get(at..at + 2)? == dot1q::TPID_8021Q.to_be_bytes() {
        at += dot1q::TAG_LEN;
    }
    if frame.get(at..at + 2)? != ETHERTYPE || frame[..6] == Mac::BROADCAST.0 {
        return None;
    }
    let case = usize::from(*frame.get(at + 2)?);
    let n = u16::from_be_bytes([*frame.get(at + 3)?, *frame.get(at + 4)?]);
    Some((case, n))
}

/// Teaches `bridge` every station where it lives: a broadcast from each (case `0xff`),
/// which the workers learn (the fast path forwards only from a source learned on its
/// ingress port).
pub fn teach(topo: &Topology, bridge: &Bridge, label: &str) {
    for s in STATIONS {
        let hello = frame(Mac::BROADCAST, s.mac(), s.tag, &inner(0xff, 0));
        send_raw(&topo.vms[s.port], "eth0", &[hello]);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for s in STATIONS {
        while bridge.fdb().lookup(s.vid, s.mac()) != Some(s.port as u16) {
            assert!(
                Instant::now() < deadline,
                "{label}: {} not learned on p{} in VLAN {}",
                s.mac(),
                s.port,
                s.vid
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A capture of what arrives at each VM's `eth0` (what the VM sends itself is not the
/// bridge's output), settled.
pub fn capture_arrivals(topo: &Topology, label: &str) -> Vec<Capture> {
    let captures = topo
        .vms
        .iter()
        .enumerate()
        .map(|(i, vm)| {
            let file = std::env::temp_dir().join(format!("{}-{label}-vm{i}.pcap", topo.sw.name()));
            Capture::spawn(vm, "eth0", file, &["-Q", "in"])
        })
        .collect();
    Capture::settle();
    captures
}

/// Every port's counters, by slot.
pub fn counters(bridge: &Bridge) -> Vec<PortCounters> {
    bridge.ports().into_iter().map(|p| p.counters).collect()
}

/// What one run saw: per case, the frames captured on the egress port's peer (in the
/// order they came), and per port, what the fast path sent and received.
#[derive(Debug)]
struct Run {
    frames: Vec<Vec<Vec<u8>>>,
    fast_tx: Vec<u64>,
    fast_rx: Vec<u64>,
}

/// Starts a bridge with `fast_path`, teaches it every station, sends every case's frames
/// and returns what left the bridge.
fn run(topo: &Topology, fast_path: FastPath, fast_floods: FastFloods, label: &str) -> Run {
    let bridge = topo.start(TestConfig {
        policies: vlan_policies(&port_vlans()),
        fast_path,
        fast_floods,
        ..TestConfig::default()
    });
    let captures = capture_arrivals(topo, label);

    // The workers learn every station where it lives (the fast path forwards only
    // from a source learned on its ingress port, to a known destination).
    teach(topo, &bridge, label);

    let before = counters(&bridge);
    for (c, case) in CASES.iter().enumerate() {
        let frames: Vec<Vec<u8>> = (0..FRAMES)
            .map(|n| frame(case.dst.mac(), case.src.mac(), case.sent, &inner(c, n)))
            .collect();
        send_raw(&topo.vms[case.src.port], "eth0", &frames);
    }
    // Every frame counted out of the bridge (by the workers or the fast path), then a
    // moment for tcpdump to write the last of them.
    let mut sent_to = [0u64; 4];
    for case in &CASES {
        sent_to[case.dst.port] += u64::from(FRAMES);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let now = counters(&bridge);
        let done = (0..4).all(|p| now[p].tx_packets - before[p].tx_packets >= sent_to[p]);
        if done || Instant::now() > deadline {
            break now;
        }
        thread::sleep(Duration::from_millis(20));
    };
    thread::sleep(Duration::from_secs(1));
    let delta = |p: usize, f: fn(&PortCounters) -> u64| f(&after[p]) - f(&before[p]);
    let fast_tx = (0..4).map(|p| delta(p, |c| c.fast_tx_packets)).collect();
    let fast_rx = (0..4).map(|p| delta(p, |c| c.fast_rx_packets)).collect();

    let mut frames = vec![Vec::new(); CASES.len()];
    for (vm, capture) in captures.into_iter().enumerate() {
        for f in capture.frames() {
            if let Some((c, _)) = parse(&f)
                && c < CASES.len()
            {
                assert_eq!(
                    CASES[c].dst.port, vm,
                    "{label}: case {c} ({}) left by p{vm}: {f:02x?}",
                    CASES[c].what
                );
                frames[c].push(f);
            }
        }
    }
    finish(bridge);
    Run {
        frames,
        fast_tx,
        fast_rx,
    }
}

#[test]
fn the_fast_path_tags_frames_byte_for_byte_as_the_workers_do() {
    let topo = Topology::new("fvlan", &[1, 1, 1, 1]);
    topo.fast_path_ready();

    let workers = run(&topo, FastPath::Off, FastFloods::On, "off");
    let fast = run(&topo, FastPath::On, FastFloods::On, "on");
    // Floods off: no devmap egress program, the XDP program counts and taps what it
    // sends itself.
    let unicast = run(&topo, FastPath::On, FastFloods::Off, "unicast");

    // Who carried the frames: the workers alone in the first run, the fast path alone
    // in the second. Everything found wrong is reported at once.
    let mut wrong = Vec::new();
    let mut sent_to = [0u64; 4];
    let mut sent_from = [0u64; 4];
    for case in &CASES {
        sent_to[case.dst.port] += u64::from(FRAMES);
        sent_from[case.src.port] += u64::from(FRAMES);
    }
    if workers.fast_tx != [0; 4] {
        wrong.push(format!(
            "the fast path sent {:?} (by port) while off",
            workers.fast_tx
        ));
    }
    for (label, run) in [("floods on", &fast), ("floods off", &unicast)] {
        if run.fast_tx != sent_to || run.fast_rx != sent_from {
            wrong.push(format!(
                "{label}: the fast path sent {:?} and received {:?} (by port), not \
                 {sent_to:?} and {sent_from:?}: it did not carry every frame",
                run.fast_tx, run.fast_rx
            ));
        }
    }

    // Byte for byte: both runs give the frame built here, in the order it was sent.
    for (c, case) in CASES.iter().enumerate() {
        let expected: Vec<Vec<u8>> = (0..FRAMES)
            .map(|n| frame(case.dst.mac(), case.src.mac(), case.expected, &inner(c, n)))
            .collect();
        for (path, run) in [
            ("workers", &workers),
            ("fast path", &fast),
            ("fast path, floods off", &unicast),
        ] {
            let got = &run.frames[c];
            if *got != expected {
                let first = got
                    .iter()
                    .zip(&expected)
                    .position(|(g, e)| g != e)
                    .unwrap_or(got.len().min(expected.len()));
                wrong.push(format!(
                    "case {c} ({}) by the {path}: {} frames of {}; frame {first}:\n  got      \
                     {:02x?}\n  expected {:02x?}",
                    case.what,
                    got.len(),
                    expected.len(),
                    got.get(first),
                    expected.get(first),
                ));
            }
        }
        if workers.frames[c] != fast.frames[c] || workers.frames[c] != unicast.frames[c] {
            wrong.push(format!(
                "case {c} ({}): the fast path's frames differ from the workers'",
                case.what
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
