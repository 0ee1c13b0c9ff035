//! The differential trial: the same seeded frames through hairpin and through a reference
//! bridge, compared frame by frame: which stations each frame reaches, and the bytes it
//! arrives with there.
//!
//! The references are the Linux bridge for the VLAN-unaware cases (this kernel's bridge
//! has no VLAN filtering) and Open vSwitch's userspace bridge (NORMAL, `netdev`
//! datapath) for VLANs. Both sides are cabled alike: station interfaces `hN` and `rN`,
//! all in namespace `st`, are cabled to hairpin's port `pN` (namespace `hsw`) and to the
//! reference's port `qN` (namespace `ref`). Each frame is sent on `hN` and on `rN`, and
//! tcpdump on every station interface records what arrives.
//!
//! VEPA and private mode are compared as their stations see them. hairpin's uplink goes
//! to an adjacent switch (a Linux bridge in `tor` doing reflective relay: `hairpin on`),
//! behind which the last station sits. A VEPA with reflective relay then delivers what a
//! plain bridge does, and private mode what a Linux bridge with `isolated` downlinks does.
//!
//! Frames of a class where the designs differ on purpose are not sent to that reference;
//! [`EXCLUDED`] names each with the reason (README, "Differences from the reference
//! bridges"). `HAIRPIN_DIFF_DUMP=1` prints every frame of a case before it runs.
use std::{collections::BTreeMap, fmt::Write as _, thread, time::Duration};

use hairpin::{
    control::xdp::FastPath,
    netlab::{Lab, Netns, PacketSocket, ovs::Ovs},
    switch::{Mode, PortPolicy, Role, vlan::PortVlans},
    wire::Mac,
};
use proptest::{
    prelude::RngExt as _,
    test_runner::{RngAlgorithm, TestRng},
};

use crate::{Capture, TestConfig, finish, lab, start_in};

/// A bridge hairpin is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reference {
    /// The Linux bridge, STP and multicast snooping off.
    Linux,
    /// Open vSwitch, userspace datapath, the NORMAL action.
    Ovs,
}

/// A class of frames where hairpin and a reference differ on purpose: not sent to it.
struct Exclusion {
    /// A frame's destination, tag or move class.
    class: &'static str,
    /// The cases it applies to.
    applies: fn(&Case) -> bool,
    /// Why the two differ, as the README explains it.
    why: &'static str,
}

/// Every class of frames not compared, by name (README, "Differences from the
/// reference bridges").
const EXCLUDED: &[Exclusion] = &[
    Exclusion {
        class: "stp",
        applies: |c| c.reference == Reference::Linux,
        why: "with STP off the Linux bridge floods BPDUs; hairpin drops them unless \
              group_fwd_mask bit 0 relays them (a VM's BPDU would err-disable a \
              BPDU-guarded ToR port)",
    },
    Exclusion {
        class: "move-across-uplink",
        applies: Case::edge,
        why: "vepa/private: a station that moves from a downlink to behind the uplink \
              is taken for a reflection of itself until its entry ages (a VEPA cannot \
              tell the two apart)",
    },
    Exclusion {
        class: "reserved",
        applies: Case::edge,
        why: "vepa/private: the adjacent switch never sees a downlink's frames to \
              reserved addresses, so unlike the single reference bridge it has not \
              learned their source, and floods the next frame to it (an artefact of \
              comparing two switches with one)",
    },
    Exclusion {
        class: "reserved",
        applies: |c| c.reference == Reference::Ovs,
        why: "OVS drops frames to reserved addresses before learning their source; \
              hairpin learns it, as the Linux bridge does",
    },
    Exclusion {
        class: "stp",
        applies: |c| c.reference == Reference::Ovs,
        why: "as for the other reserved addresses",
    },
    Exclusion {
        class: "bad-source",
        applies: |c| c.reference == Reference::Ovs,
        why: "OVS forwards frames whose source is a group address; hairpin drops them, \
              as the Linux bridge does (a group address is never a station's)",
    },
    Exclusion {
        class: "service-tag",
        applies: |c| c.reference == Reference::Ovs,
        why: "OVS takes an 802.1ad S-tag's VLAN as the frame's VLAN; hairpin is a \
              C-VLAN bridge and drops S-tagged frames (no hopping through a service tag)",
    },
];

/// Whether frames of `class` are left out of `case`.
fn excluded(case: &Case, class: &str) -> bool {
    EXCLUDED
        .iter()
        .any(|e| e.class == class && (e.applies)(case))
}

/// One port of a case, on both sides.
#[derive(Clone, Debug, Default)]
struct Port {
    hairpin: bool,
    vlans: Option<PortVlans>,
}

/// A topology, a mode and a reference.
#[derive(Clone, Debug)]
struct Case {
    /// Names the lab (a few letters).
    tag: &'static str,
    mode: Mode,
    /// The last one is the uplink in vepa and private, behind the adjacent switch.
    ports: Vec<Port>,
    reference: Reference,
    group_fwd_mask: u16,
    frames: usize,
    seed: u64,
    /// Between two frames: the reference learns on its own time (OVS in its upcall
    /// handlers), and each frame must meet the table the previous one left.
    gap: Duration,
    /// hairpin's kernel fast path.
    fast_path: FastPath,
}

impl Case {
    fn edge(&self) -> bool {
        matches!(self.mode, Mode::Vepa | Mode::Private)
    }

    fn vlans(&self) -> bool {
        self.ports.iter().any(|p| p.vlans.is_some())
    }

    fn uplink(&self) -> Option<usize> {
        self.edge().then(|| self.ports.len() - 1)
    }
}

/// A frame to send, and what it is.
#[derive(Debug)]
struct Frame {
    ingress: usize,
    bytes: Vec<u8>,
    /// What it is addressed to, e.g. "unicast", "broadcast", "reserved".
    dst: &'static str,
    /// Its tags, e.g. "untagged", "tagged", "priority".
    tag: &'static str,
    /// Its source has just moved to `ingress`.
    moved: bool,
}

/// The last bytes of every test frame: a magic word and the frame's number.
const MAGIC: &[u8; 4] = b"HPDF";

fn marker(frame: &[u8]) -> Option<u32> {
    let tail = frame.len().checked_sub(8).map(|at| &frame[at..])?;
    (&tail[..4] == MAGIC).then(|| u32::from_be_bytes(tail[4..].try_into().unwrap()))
}

/// The seeded frames of a case: stations (three per port to start with) sending to each
/// other, to unknown, broadcast, multicast and reserved addresses, some with a bad
/// source, some after moving to another port; with VLANs, untagged, tagged,
/// priority-tagged, double-tagged and S-tagged.
fn frames(case: &Case) -> Vec<Frame> {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&case.seed.to_le_bytes());
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let ports = case.ports.len();
    let mut stations: Vec<(Mac, usize)> = (0..ports * 3)
        .map(|i| (Mac([0x02, 0xd1, 0xff, 0, 0, i as u8]), i % ports))
        .collect();
    let mut out = Vec::with_capacity(case.frames);
    while out.len() < case.frames {
        let who = rng.random_range(0..stations.len());
        let mut moved = false;
        if rng.random_range(0..100) < 8 {
            let to = rng.random_range(0..ports);
            let across = case
                .uplink()
                .is_some_and(|up| (to == up) != (stations[who].1 == up));
            let class = if across { "move-across-uplink" } else { "move" };
            if to != stations[who].1 && !excluded(case, class) {
                stations[who].1 = to;
                moved = true;
            }
        }
        let (mut src, ingress) = stations[who];
        let roll = rng.random_range(0..100);
        let (dst, class) = match roll {
            0..45 => (stations[rng.random_range(0..stations.len())].0, "unicast"),
            45..55 => (
                Mac([0x02, 0xee, 0, 0, 0, rng.random_range(0..8)]),
                "unknown-unicast",
            ),
            55..67 => (Mac::BROADCAST, "broadcast"),
            67..77 => (
                Mac([0x01, 0x00, 0x5e, 0, 0, rng.random_range(0..4)]),
                "multicast",
            ),
            77..80 => (Mac([0x01, 0x80, 0xc2, 0, 0, 0]), "stp"),
            80..88 => (
                Mac([0x01, 0x80, 0xc2, 0, 0, rng.random_range(1..16)]),
                "reserved",
            ),
            _ => {
                src = Mac([0x01, 0x00, 0x5e, 0, 0, 1]);
                (Mac::BROADCAST, "bad-source")
            }
        };
        let mut tags: Vec<(u16, u16)> = Vec::new();
        let mut tag = "untagged";
        if case.vlans() {
            let pcp = rng.random_range(0..8u16) << 13;
            match rng.random_range(0..100) {
                0..40 => {}
                40..75 => {
                    tags.push((0x8100, pcp | [10, 20, 30, 40][rng.random_range(0..4)]));
                    tag = "tagged";
                }
                75..90 => {
                    tags.push((0x8100, pcp));
                    tag = "priority";
                }
                90..95 => {
                    tags.push((0x8100, 10));
                    tags.push((0x8100, 20));
                    tag = "double-tag";
                }
                _ => {
                    tags.push((0x88a8, 10));
                    tag = "service-tag";
                }
            }
        }
        if excluded(case, class) || excluded(case, tag) {
            continue;
        }
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&dst.0);
        bytes.extend_from_slice(&src.0);
        for (tpid, tci) in tags {
            bytes.extend_from_slice(&tpid.to_be_bytes());
            bytes.extend_from_slice(&tci.to_be_bytes());
        }
        bytes.extend_from_slice(&[0x88, 0xb5]);
        let payload = rng.random_range(38..160);
        bytes.extend((0..payload).map(|_| rng.random::<u8>()));
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(out.len() as u32).to_be_bytes());
        out.push(Frame {
            ingress,
            bytes,
            dst: class,
            tag,
            moved,
        });
    }
    out
}

/// Per frame number, the (station, bytes) it arrived at, sorted.
type Deliveries = BTreeMap<u32, Vec<(usize, Vec<u8>)>>;

fn deliveries(captures: Vec<Vec<Vec<u8>>>) -> Deliveries {
    let mut out = Deliveries::new();
    for (station, frames) in captures.into_iter().enumerate() {
        for frame in frames {
            if let Some(n) = marker(&frame) {
                out.entry(n).or_default().push((station, frame));
            }
        }
    }
    for seen in out.values_mut() {
        seen.sort();
    }
    out
}

/// The lab of one case: both sides built, nothing running yet.
struct Rig {
    /// Everything of the case; dropping it tears it down.
    _lab: Lab,
    stations: Netns,
    hairpin: Netns,
    /// The reference's daemons, when it is OVS.
    ovs: Option<Ovs>,
}

fn no_ipv6(ns: &Netns) {
    for scope in ["all", "default"] {
        ns.run(
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{scope}.disable_ipv6=1")],
        )
        .unwrap();
    }
}

/// A Linux bridge `br0` in `ns` over `ports`, STP and multicast snooping off.
fn linux_bridge(ns: &Netns, ports: &[String], group_fwd_mask: u16) {
    let mask = group_fwd_mask.to_string();
    ns.ip(&[
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "stp_state",
        "0",
        "mcast_snooping",
        "0",
        "group_fwd_mask",
        &mask,
    ])
    .unwrap();
    for port in ports {
        ns.ip(&["link", "set", port, "master", "br0"]).unwrap();
    }
    ns.ip(&["link", "set", "br0", "up"]).unwrap();
}

fn bridge_port_flag(ns: &Netns, port: &str, flag: &str) {
    ns.run("bridge", &["link", "set", "dev", port, flag, "on"])
        .unwrap();
}

/// With the fast path on, lets hairpin's port whose far end is `peer` (in `ns`) take
/// redirected frames: a veth does only while its peer receives through NAPI (GRO on).
fn fast_path_peer(case: &Case, ns: &Netns, peer: &str) {
    if case.fast_path == FastPath::On {
        ns.run("ethtool", &["-K", peer, "gro", "on"]).unwrap();
    }
}

impl Rig {
    fn new(case: &Case) -> Self {
        let mut lab = lab(case.tag);
        let stations = lab.add_ns("st").unwrap();
        let hairpin = lab.add_ns("hsw").unwrap();
        let reference = lab.add_ns("ref").unwrap();
        for ns in [&stations, &hairpin, &reference] {
            no_ipv6(ns);
        }
        let n = case.ports.len();
        for i in 0..n {
            let (h, p, r, q) = (
                format!("h{i}"),
                format!("p{i}"),
                format!("r{i}"),
                format!("q{i}"),
            );
            lab.veth((&stations, &r), (&reference, &q), 1).unwrap();
            if case.uplink() == Some(i) {
                // hairpin's uplink to the adjacent switch, the station behind it.
                let tor = lab.add_ns("tor").unwrap();
                no_ipv6(&tor);
                lab.veth((&hairpin, &p), (&tor, "t0"), 1).unwrap();
                lab.veth((&stations, &h), (&tor, "t1"), 1).unwrap();
                linux_bridge(&tor, &["t0".into(), "t1".into()], 0);
                bridge_port_flag(&tor, "t0", "hairpin");
                fast_path_peer(case, &tor, "t0");
            } else {
                lab.veth((&stations, &h), (&hairpin, &p), 1).unwrap();
                fast_path_peer(case, &stations, &h);
            }
        }
        let qs: Vec<String> = (0..n).map(|i| format!("q{i}")).collect();
        let ovs = match case.reference {
            Reference::Linux => {
                linux_bridge(&reference, &qs, case.group_fwd_mask);
                for (i, port) in case.ports.iter().enumerate() {
                    assert!(port.vlans.is_none(), "the Linux bridge here has no VLANs");
                    if port.hairpin {
                        bridge_port_flag(&reference, &qs[i], "hairpin");
                    }
                    if case.mode == Mode::Private && case.uplink() != Some(i) {
                        bridge_port_flag(&reference, &qs[i], "isolated");
                    }
                }
                None
            }
            Reference::Ovs => {
                assert!(!case.edge(), "OVS is the reference for veb only");
                let ovs = Ovs::start(&mut lab, &reference).unwrap();
                ovs.add_userspace_bridge("br0").unwrap();
                for (q, port) in qs.iter().zip(&case.ports) {
                    assert!(!port.hairpin, "OVS has no hairpin flag per port");
                    let mut args = vec!["add-port", "br0", q, "--", "set", "port", q];
                    let settings = ovs_vlan_settings(port);
                    args.extend(settings.iter().map(String::as_str));
                    ovs.vsctl(&args).unwrap();
                }
                Some(ovs)
            }
        };
        Self {
            _lab: lab,
            stations,
            hairpin,
            ovs,
        }
    }
}

/// hairpin's VLAN settings in OVS's words. A port without any is hairpin's VLAN 1,
/// untagged.
fn ovs_vlan_settings(port: &Port) -> Vec<String> {
    let list = |vlans: &[u16]| {
        vlans
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    match &port.vlans {
        None => vec!["tag=1".into()],
        Some(PortVlans::Access(vid)) => vec![format!("tag={vid}")],
        Some(PortVlans::Trunk {
            tagged,
            native: None,
        }) => vec!["vlan_mode=trunk".into(), format!("trunks={}", list(tagged))],
        Some(PortVlans::Trunk {
            tagged,
            native: Some(native),
        }) => {
            let mut all = tagged.clone();
            all.push(*native);
            vec![
                "vlan_mode=native-untagged".into(),
                format!("tag={native}"),
                format!("trunks={}", list(&all)),
            ]
        }
    }
}

/// Runs `case`: the same frames through both sides; returns the deliveries of hairpin
/// and of the reference, and how many frames hairpin's fast path sent.
fn run(case: &Case, frames: &[Frame]) -> (Deliveries, Deliveries, (u64, u64)) {
    let rig = Rig::new(case);
    let n = case.ports.len();
    let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let ports: Vec<&str> = names.iter().map(String::as_str).collect();
    let policies = case
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| PortPolicy {
            role: if case.uplink() == Some(i) {
                Role::Uplink
            } else {
                Role::Downlink
            },
            hairpin: p.hairpin,
            vlans: p.vlans.clone(),
            ..PortPolicy::default()
        })
        .collect();
    let config = TestConfig {
        mode: case.mode,
        policies,
        group_fwd_mask: case.group_fwd_mask,
        fast_path: case.fast_path,
        ..TestConfig::default()
    };
    let bridge = start_in(&rig.hairpin, &ports, config);

    let file = |side: &str, i: usize| {
        std::env::temp_dir().join(format!("{}-{side}{i}.pcap", rig.stations.name()))
    };
    let capture = |side: &str| -> Vec<Capture> {
        (0..n)
            .map(|i| {
                let ifname = format!("{side}{i}");
                Capture::spawn(&rig.stations, &ifname, file(side, i), &["-Q", "in"])
            })
            .collect()
    };
    let (theirs, ours) = (capture("r"), capture("h"));
    Capture::settle();
    if rig.ovs.is_some() {
        // OVS polls a new port from its main loop: give it a moment more.
        thread::sleep(Duration::from_secs(1));
    }

    rig.stations
        .enter(|| {
            let open = |side: &str| -> Vec<PacketSocket> {
                (0..n)
                    .map(|i| crate::packet_socket(&format!("{side}{i}")))
                    .collect()
            };
            let (h, r) = (open("h"), open("r"));
            for frame in frames {
                h[frame.ingress]
                    .send(&frame.bytes)
                    .expect("sending to hairpin");
                r[frame.ingress]
                    .send(&frame.bytes)
                    .expect("sending to the reference");
                thread::sleep(case.gap);
            }
        })
        .unwrap();
    // The last frames through, and written by tcpdump.
    thread::sleep(Duration::from_secs(1));
    let collect =
        |captures: Vec<Capture>| deliveries(captures.into_iter().map(Capture::frames).collect());
    let (ours, theirs) = (collect(ours), collect(theirs));
    // Frames the fast path carried, and of those, flooded.
    let fast = ports
        .iter()
        .flat_map(|p| bridge.xdp_stats(p))
        .fold((0, 0), |(f, fl), q| (f + q.fast, fl + q.fast_flood));
    finish(bridge);
    drop(rig);
    (ours, theirs, fast)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(22).map(|b| format!("{b:02x}")).collect()
}

/// Runs `case` with hairpin's fast path off, then on.
fn both(case: Case) {
    compare(Case {
        fast_path: FastPath::Off,
        ..case.clone()
    });
    compare(Case {
        fast_path: FastPath::On,
        ..case
    });
}

/// Runs `case` and fails with every frame whose delivery differs.
fn compare(case: Case) {
    let frames = frames(&case);
    if std::env::var_os("HAIRPIN_DIFF_DUMP").is_some() {
        for (i, f) in frames.iter().enumerate() {
            eprintln!(
                "{i} {}/{} port {} {}",
                f.dst,
                f.tag,
                f.ingress,
                hex(&f.bytes)
            );
        }
    }
    let (ours, theirs, (fast, flooded)) = run(&case, &frames);
    eprintln!(
        "{} (fast path {:?}): {fast} frames by the fast path, {flooded} of them floods",
        case.tag, case.fast_path
    );
    if case.fast_path == FastPath::On {
        assert!(fast > 0, "the fast path was on, but sent nothing");
        // Kernel floods are on with the fast path (the default): in a VEB, broadcasts
        // from learned stations take them.
        if case.mode == Mode::Veb {
            assert!(flooded > 0, "kernel floods were on, but flooded nothing");
        }
    }
    let mut report = String::new();
    let mut differ = 0;
    let mut classes: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, frame) in frames.iter().enumerate() {
        let n = i as u32;
        let (a, b) = (ours.get(&n), theirs.get(&n));
        let class = format!("{}/{}", frame.dst, frame.tag);
        let entry = classes.entry(class.clone()).or_default();
        entry.0 += 1;
        entry.1 += b.map_or(0, Vec::len);
        if a == b {
            continue;
        }
        differ += 1;
        if differ <= 12 {
            let show = |d: Option<&Vec<(usize, Vec<u8>)>>| {
                d.map_or("nowhere".into(), |d| {
                    d.iter()
                        .map(|(s, bytes)| format!("{s}:{}", hex(bytes)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
            };
            let _ = writeln!(
                report,
                "frame {i} ({class}{}, in on port {}, {}):\n  hairpin:   {}\n  reference: {}",
                if frame.moved {
                    ", source just moved"
                } else {
                    ""
                },
                frame.ingress,
                hex(&frame.bytes),
                show(a),
                show(b)
            );
        }
    }
    let delivered: usize = classes.values().map(|c| c.1).sum();
    let left_out: Vec<String> = EXCLUDED
        .iter()
        .filter(|e| (e.applies)(&case))
        .map(|e| format!("{} ({})", e.class, e.why))
        .collect();
    eprintln!("not compared: {left_out:#?}");
    eprintln!(
        "{:?} vs {:?} (seed {}): {} frames, {delivered} deliveries by the reference; \
         per class (frames, deliveries): {classes:?}",
        case.mode,
        case.reference,
        case.seed,
        frames.len(),
    );
    assert!(
        differ == 0,
        "{:?} vs {:?} (seed {}): {differ} of {} frames delivered differently:\n{report}",
        case.mode,
        case.reference,
        case.seed,
        frames.len()
    );
    // Not a vacuous agreement: the reference delivered most frames somewhere.
    assert!(
        delivered > frames.len() / 2,
        "only {delivered} deliveries for {} frames",
        frames.len()
    );
}

fn plain(n: usize) -> Vec<Port> {
    vec![Port::default(); n]
}

#[test]
fn veb_delivers_as_the_linux_bridge_does() {
    let mut ports = plain(4);
    ports[1].hairpin = true;
    both(Case {
        tag: "dveb",
        mode: Mode::Veb,
        ports,
        reference: Reference::Linux,
        group_fwd_mask: 0,
        frames: 240,
        seed: 1,
        gap: Duration::from_millis(4),
        fast_path: FastPath::Off,
    });
}

#[test]
fn veb_relays_the_reserved_addresses_its_mask_allows_as_the_linux_bridge_does() {
    both(Case {
        tag: "dmask",
        mode: Mode::Veb,
        ports: plain(3),
        reference: Reference::Linux,
        group_fwd_mask: 1 << 0x0e | 1 << 0x03,
        frames: 120,
        seed: 2,
        gap: Duration::from_millis(4),
        fast_path: FastPath::Off,
    });
}

#[test]
fn vepa_with_reflective_relay_delivers_as_a_bridge_does() {
    both(Case {
        tag: "dvepa",
        mode: Mode::Vepa,
        ports: plain(4),
        reference: Reference::Linux,
        group_fwd_mask: 0,
        frames: 200,
        seed: 3,
        gap: Duration::from_millis(4),
        fast_path: FastPath::Off,
    });
}

#[test]
fn private_with_reflective_relay_delivers_as_isolated_bridge_ports_do() {
    both(Case {
        tag: "dpriv",
        mode: Mode::Private,
        ports: plain(4),
        reference: Reference::Linux,
        group_fwd_mask: 0,
        frames: 200,
        seed: 4,
        gap: Duration::from_millis(4),
        fast_path: FastPath::Off,
    });
}

#[test]
fn vlans_push_pop_and_retag_as_open_vswitch_does() {
    let vlan = |v| Port {
        vlans: Some(v),
        ..Port::default()
    };
    both(Case {
        tag: "dvlan",
        mode: Mode::Veb,
        ports: vec![
            vlan(PortVlans::Access(10)),
            vlan(PortVlans::Access(10)),
            vlan(PortVlans::Access(20)),
            vlan(PortVlans::Trunk {
                tagged: vec![10, 20],
                native: None,
            }),
            vlan(PortVlans::Trunk {
                tagged: vec![20, 30],
                native: Some(10),
            }),
            Port::default(),
        ],
        reference: Reference::Ovs,
        group_fwd_mask: 0,
        frames: 240,
        seed: 5,
        gap: Duration::from_millis(20),
        fast_path: FastPath::Off,
    });
}
