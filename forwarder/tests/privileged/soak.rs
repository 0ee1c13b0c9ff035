//! The soak: hairpin (a debug build, whose workers check their UMEM ledger every turn)
//! under mixed traffic for minutes: TCP and pings within a VLAN, tagged frames between an
//! access port and a trunk, a station moving between two ports, and a port that comes
//! and goes. It samples memory, open descriptors, UMEM frames and counters once a
//! minute and fails on any growth or inconsistency.
//!
//! Not part of the suite: `cargo xtask soak [--minutes N]` runs it (10 minutes by
//! default; `HAIRPIN_SOAK_MINUTES`).
use std::{
    process::Stdio,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use hairpin::wire::Mac;
use serde_json::Value;

use crate::{
    Topology, iperf, ping,
    runtime::{ask, ask_json, take_log},
};

/// One sample of the process and its counters.
#[derive(Debug)]
struct Sample {
    minute: u64,
    rss_kib: u64,
    fds: usize,
    free_frames: u64,
    total_frames: u64,
    rx_frames: u64,
    tx_frames: u64,
    fdb_moves: u64,
}

fn sample(pid: u32, socket: &std::path::Path, minute: u64) -> (Sample, Value) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let stats = ask_json(socket, &["show", "stats"]);
    let sum = |what: &str| -> u64 {
        stats["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w[what].as_u64().unwrap())
            .sum()
    };
    (
        Sample {
            minute,
            rss_kib,
            fds,
            free_frames: sum("free_frames"),
            total_frames: sum("total_frames"),
            rx_frames: sum("rx_frames"),
            tx_frames: sum("tx_frames"),
            fdb_moves: stats["fdb_moves"].as_u64().unwrap(),
        },
        stats,
    )
}

/// Frames received and sent by every port, present and departed,
/// from `show stats`.
fn port_totals(stats: &Value) -> (u64, u64) {
    let ports = stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["counters"]);
    let departed = stats["departed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["counters"]);
    ports.chain(departed).fold((0, 0), |(rx, tx), c| {
        (
            rx + c["rx_packets"].as_u64().unwrap(),
            tx + c["tx_packets"].as_u64().unwrap(),
        )
    })
}

/// A frame from `src` to `dst`, tagged with `vlan` if given, with a local EtherType.
fn frame(dst: Mac, src: Mac, vlan: Option<u16>) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if let Some(vid) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(64, 0);
    f
}

#[test]
#[ignore = "minutes long: cargo xtask soak"]
fn soak() {
    let minutes: u64 = std::env::var("HAIRPIN_SOAK_MINUTES")
        .ok()
        .map_or(10, |m| m.parse().expect("HAIRPIN_SOAK_MINUTES: a number"));
    // vm0, vm1: VLAN 10 (TCP, pings). vm2: access VLAN 20; vm3: trunk of 20 (tagged
    // frames both ways), and the roaming station moves between vm2's and vm3's ports.
    // vm4: VLAN 10, its port added and removed over and over.
    let mut topo = Topology::new("soak", &[1, 1, 1, 1, 1]);
    let config = std::env::temp_dir().join(format!("hp-soak-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "mode = \"veb\"\n\
         [[port]]\nname = \"p0\"\nvlan = 10\n\
         [[port]]\nname = \"p1\"\nvlan = 10\n\
         [[port]]\nname = \"p2\"\nvlan = 20\n\
         [[port]]\nname = \"p3\"\ntrunk = \"20\"\n",
    )
    .unwrap();
    let (socket, log) = crate::runtime::start(
        &mut topo,
        "soak",
        &["--config", config.to_str().unwrap()],
        Stdio::null(),
    );
    let _ = std::fs::remove_file(&config);
    let pid = topo.lab.process(0).unwrap().child().id();
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    let (m2, m3) = (topo.vm_mac(2), topo.vm_mac(3));
    let roamer = Mac([0x02, 0x50, 0x0a, 0, 0, 1]);

    // Descriptors before p4 first comes: at the end it is out again (a sample taken
    // meanwhile may find it in, with its socket open).
    let (baseline, _) = sample(pid, &socket, 0);
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(60 * minutes);
    let mut samples = Vec::new();
    let failures = thread::scope(|s| {
        let topo = &topo;
        let socket = &*socket;
        let stop = &stop;
        let tcp = s.spawn(move || {
            let mut failed = 0;
            while !stop.load(Ordering::Relaxed) {
                failed += u32::from(iperf(topo, 0, 1, 10, 2).is_err());
            }
            failed
        });
        let pings = s.spawn(move || {
            let mut failed = 0;
            while !stop.load(Ordering::Relaxed) {
                failed += u32::from(ping(&topo.vms[1], &topo.addr(0), 20).is_err());
            }
            failed
        });
        // VLAN 20: vm2 (untagged, access) and vm3 (tagged, trunk) exchange frames; the
        // roaming station sends from one port, then the other, every 200 ms.
        let vlan = s.spawn(move || {
            let open = |i: usize| topo.vms[i].enter(|| crate::packet_socket("eth0")).unwrap();
            let (s2, s3) = (open(2), open(3));
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..50 {
                    s2.send(&frame(m3, m2, None)).unwrap();
                    s3.send(&frame(m2, m3, Some(20))).unwrap();
                }
                let f = if round.is_multiple_of(2) {
                    (&s2, frame(Mac::BROADCAST, roamer, None))
                } else {
                    (&s3, frame(Mac::BROADCAST, roamer, Some(20)))
                };
                f.0.send(&f.1).unwrap();
                round += 1;
                thread::sleep(Duration::from_millis(200));
            }
            round
        });
        // p4 comes and goes; while it is in, vm4 reaches vm0.
        let churn = s.spawn(move || {
            let (mut rounds, mut failed) = (0u32, 0u32);
            while !stop.load(Ordering::Relaxed) {
                ask(socket, &["port", "add", "p4", "--vlan", "10"]).unwrap();
                failed += u32::from(ping(&topo.vms[4], &topo.addr(0), 2).is_err());
                ask(socket, &["port", "del", "p4"]).unwrap();
                rounds += 1;
                thread::sleep(Duration::from_secs(1));
            }
            (rounds, failed)
        });

        let mut minute = 0;
        samples.push(sample(pid, socket, minute).0);
        while Instant::now() < deadline {
            thread::sleep(Duration::from_secs(60).min(deadline - Instant::now()));
            minute += 1;
            let (now, _) = sample(pid, socket, minute);
            eprintln!(
                "minute {}: RSS {} KiB, {} fds, UMEM {} free of {}, frames rx {} tx {}, \
                 MAC moves {}",
                now.minute,
                now.rss_kib,
                now.fds,
                now.free_frames,
                now.total_frames,
                now.rx_frames,
                now.tx_frames,
                now.fdb_moves
            );
            samples.push(now);
        }
        stop.store(true, Ordering::Relaxed);
        (
            tcp.join().unwrap(),
            pings.join().unwrap(),
            vlan.join().unwrap(),
            churn.join().unwrap(),
        )
    });
    let (tcp_failed, pings_failed, vlan_rounds, (churn_rounds, churn_failed)) = failures;

    // Quiet again: every frame back in the pool but those the fill rings hold.
    thread::sleep(Duration::from_secs(2));
    let (end, stats) = sample(pid, &socket, minutes + 1);
    let first = &samples[1.min(samples.len() - 1)];
    let (rx, tx) = port_totals(&stats);
    eprintln!(
        "soak: {minutes} min; {} samples; TCP runs failed {tcp_failed}, ping runs failed \
         {pings_failed}; {vlan_rounds} VLAN rounds; p4 added and removed {churn_rounds} \
         times ({churn_failed} failed pings); MAC moves {}; frames rx {rx} tx {tx}; \
         RSS {} -> {} KiB; fds {} -> {}; UMEM {} free of {}",
        samples.len(),
        end.fdb_moves,
        first.rss_kib,
        end.rss_kib,
        baseline.fds,
        end.fds,
        end.free_frames,
        end.total_frames
    );
    assert_eq!(
        tcp_failed + pings_failed + churn_failed,
        0,
        "traffic failed"
    );
    assert!(churn_rounds > 0 && vlan_rounds > 0);
    assert!(
        end.fdb_moves >= vlan_rounds / 2,
        "the roamer's moves followed"
    );
    // Flat: after the first minute's warm-up, no growth in memory or descriptors.
    assert!(
        end.rss_kib <= first.rss_kib + 4 * 1024,
        "RSS grew from {} to {} KiB",
        first.rss_kib,
        end.rss_kib
    );
    assert_eq!(end.fds, baseline.fds, "open descriptors changed");
    // Every UMEM frame accounted for (the debug build checked the ledger every turn).
    assert_eq!(end.total_frames, samples[0].total_frames);
    assert!(end.free_frames <= end.total_frames);
    // Counters consistent: monotonic, and the workers' totals are the ports' totals
    // (departed ports included).
    for pair in samples.windows(2) {
        assert!(pair[1].rx_frames >= pair[0].rx_frames && pair[1].tx_frames >= pair[0].tx_frames);
    }
    assert_eq!(rx, end.rx_frames, "frames received: ports against workers");
    assert_eq!(tx, end.tx_frames, "frames sent: ports against workers");
    let log = take_log(&log);
    assert!(!log.contains("ERROR") && !log.contains("panicked"), "{log}");
}
