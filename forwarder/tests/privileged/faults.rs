//! The fault matrix: hairpin under what goes wrong on a real host. A flood of a million
//! random source MACs; an egress port whose peer stops draining; the process stopped
//! and continued (SIGSTOP/SIGCONT) and a station's link flapping while frames flow.
//! Each runs the `hairpin` binary as an operator would and keeps a ledger: every frame
//! a station sent is either delivered or counted as dropped somewhere, by hairpin or by
//! the kernel.
use std::{
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use hairpin::{netlab::Netns, wire::Mac};
use serde_json::Value;

use crate::{
    Topology, packet_socket, ping,
    runtime::{ask_json, frames, port, start, take_log},
};

/// The kernel's counters of `ifname` in `ns` (`ip -s -j link`): (rx packets, rx
/// dropped, tx packets, tx dropped).
fn link_stats(ns: &Netns, ifname: &str) -> [u64; 4] {
    let out = ns.ip(&["-s", "-j", "link", "show", "dev", ifname]).unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &json[0]["stats64"];
    let n = |v: &Value| v.as_u64().unwrap();
    [
        n(&s["rx"]["packets"]),
        n(&s["rx"]["dropped"]),
        n(&s["tx"]["packets"]),
        n(&s["tx"]["dropped"]),
    ]
}

/// A frame from `src` to `dst` with a local experimental EtherType.
fn frame(dst: Mac, src: Mac) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(64, 0);
    f
}

/// The resident memory of process `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS: {status}"))
}

/// The pid of the `hairpin` process under `ip netns exec` (the lab's child execs into
/// it, so they are the same process).
pub(crate) fn hairpin_pid(topo: &mut Topology) -> u32 {
    topo.lab.process(0).unwrap().child().id()
}

#[test]
fn pausing_hairpin_and_flapping_a_link_lose_only_counted_frames() {
    let mut topo = Topology::new("ledg", &[1, 1]);
    // Only hairpin sends on p1: no IPv6 chatter from the switch's own stack as B's
    // link comes back.
    for scope in ["all", "default"] {
        let key = format!("net.ipv6.conf.{scope}.disable_ipv6=1");
        topo.sw.run("sysctl", &["-qw", &key]).unwrap();
    }
    let (socket, log) = start(&mut topo, "ledg", &["--ports", "p0,p1"], Stdio::null());
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    let (a, b) = (topo.vm_mac(0), topo.vm_mac(1));

    let base_ports = ask_json(&socket, &["show", "ports"]);
    let base = (
        link_stats(&topo.vms[0], "eth0"),
        link_stats(&topo.vms[1], "eth0"),
        link_stats(&topo.sw, "p1"),
    );
    // 20 000 frames A -> B over about two seconds, while hairpin is stopped for half a
    // second and B's link goes down and up three times.
    const FRAMES: u64 = 20_000;
    let sent = thread::scope(|s| {
        let sender = s.spawn(|| {
            topo.vms[0]
                .enter(|| {
                    let socket = packet_socket("eth0");
                    let f = frame(b, a);
                    for i in 0..FRAMES {
                        socket.send(&f).unwrap();
                        if i % 100 == 99 {
                            thread::sleep(Duration::from_millis(10));
                        }
                    }
                })
                .unwrap();
        });
        let hairpin = topo.lab.process(0).unwrap();
        thread::sleep(Duration::from_millis(300));
        hairpin.signal(libc::SIGSTOP).unwrap();
        thread::sleep(Duration::from_millis(500));
        hairpin.signal(libc::SIGCONT).unwrap();
        thread::sleep(Duration::from_millis(200));
        for _ in 0..3 {
            topo.vms[1].ip(&["link", "set", "eth0", "down"]).unwrap();
            thread::sleep(Duration::from_millis(150));
            topo.vms[1].ip(&["link", "set", "eth0", "up"]).unwrap();
            thread::sleep(Duration::from_millis(150));
        }
        sender.join().unwrap();
        link_stats(&topo.vms[0], "eth0")[2] - base.0[2]
    });
    // The last frames through.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(sent, FRAMES, "A's link sent them all");

    // The ledger, step by step: A's frames reached hairpin's socket or were counted by
    // the kernel for it (no free frame to receive into while hairpin was stopped);
    // what hairpin received it sent on to B or counted as dropped (B's port down);
    // what it sent, B received but for the frames in flight when B's end went down,
    // which the kernel counts on p1.
    let ports = ask_json(&socket, &["show", "ports"]);
    let counter = |name: &str, what: &str| {
        let of = |v: &Value| port(v, name)["counters"][what].as_u64().unwrap_or(0);
        of(&ports) - of(&base_ports)
    };
    let drops = |kernel: bool| {
        let of = |v: &Value| -> u64 {
            port(v, "p0")["counters"]["drops"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(name, _)| name.starts_with("kernel_") == kernel)
                .map(|(_, n)| n.as_u64().unwrap())
                .sum()
        };
        of(&ports) - of(&base_ports)
    };
    let (received, kernel, dropped) = (counter("p0", "rx_packets"), drops(true), drops(false));
    let forwarded = counter("p1", "tx_packets");
    let delivered = link_stats(&topo.vms[1], "eth0")[0] - base.1[0];
    let in_flight_dropped = link_stats(&topo.sw, "p1")[3] - base.2[3];
    eprintln!(
        "sent {sent}: hairpin received {received}, the kernel counted {kernel} for it; \
         hairpin forwarded {forwarded} and dropped {dropped} ({}); B received \
         {delivered}; the kernel dropped {in_flight_dropped} on p1",
        port(&ports, "p0")["counters"]["drops"]
    );
    assert!(kernel > 0, "the pause cost frames, counted");
    assert!(dropped > 0, "the flaps cost frames, counted");
    assert_eq!(received + kernel, sent, "every frame received or counted");
    assert_eq!(
        received,
        forwarded + dropped,
        "every frame forwarded or counted"
    );
    let lost = forwarded.checked_sub(delivered).unwrap_or_else(|| {
        panic!("B received {delivered} frames, more than the {forwarded} hairpin sent")
    });
    // Frames hairpin sent on p1 in the moment before it saw B's carrier go: the kernel
    // dropped and counted every one (nothing else sends on p1).
    assert_eq!(
        lost, in_flight_dropped,
        "frames lost after hairpin sent them, against the kernel's count"
    );

    // hairpin carries on: B is reached again, and nothing went wrong inside.
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();
    assert!(
        topo.lab
            .process(0)
            .unwrap()
            .child()
            .try_wait()
            .unwrap()
            .is_none(),
        "hairpin still runs"
    );
    let log = take_log(&log);
    assert!(!log.contains("ERROR") && !log.contains("panicked"), "{log}");
}

#[test]
fn a_million_random_sources_leave_memory_bounded_and_stations_working() {
    // A small table and a short age, so that the flood fills it and ages out in the test.
    let mut topo = Topology::new("mflood", &[1, 1, 1]);
    let (socket, log) = start(
        &mut topo,
        "mflood",
        &[
            "--ports",
            "p0,p1,p2",
            "--fdb-size",
            "4096",
            "--fdb-age",
            "3",
        ],
        Stdio::null(),
    );
    let pid = hairpin_pid(&mut topo);
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    ping(&topo.vms[2], &topo.addr(0), 1).unwrap();
    let flooder = topo.vm_mac(2);
    let rss_before = rss_kib(pid);

    // vm2 sends a million frames from random sources to its own address: each is
    // learned (or refused, the table full) and dropped as staying on its segment, so
    // the flood costs the table, not the other stations' links. A and B keep pinging.
    const FRAMES: u32 = 1_000_000;
    let (pings, rss_during) = thread::scope(|s| {
        let flood = s.spawn(|| {
            topo.vms[2]
                .enter(|| {
                    let socket = packet_socket("eth0");
                    let mut f = frame(flooder, flooder);
                    let mut x = 0x9e37_79b9_u32;
                    for _ in 0..FRAMES {
                        // A different locally administered unicast source each time.
                        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        f[6..12].copy_from_slice(&[0x02, 0x5f, 0, 0, 0, 0]);
                        f[8..12].copy_from_slice(&x.to_be_bytes());
                        // A full AF_PACKET queue is not the test: retry.
                        while socket.send(&f).is_err() {
                            thread::yield_now();
                        }
                    }
                })
                .unwrap();
        });
        let mut ok = 0;
        let mut peak = 0;
        while !flood.is_finished() {
            if ping(&topo.vms[0], &topo.addr(1), 1).is_ok() {
                ok += 1;
            }
            peak = peak.max(rss_kib(pid));
            thread::sleep(Duration::from_millis(100));
        }
        flood.join().unwrap();
        (ok, peak)
    });
    let stats = ask_json(&socket, &["show", "stats"]);
    eprintln!(
        "RSS {rss_before} KiB before, {rss_during} KiB at most during the flood; \
         {pings} pings answered during it; MAC table: {} entries, {} refused; p2: {}",
        stats["fdb_entries"],
        stats["fdb_full"],
        port(&stats, "p2")["counters"]
    );
    // Bounded: the table and every buffer are allocated at start.
    assert!(
        rss_during < rss_before + 8 * 1024,
        "memory grew from {rss_before} to {rss_during} KiB"
    );
    assert!(pings > 0, "A and B kept talking during the flood");
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();
    // The table stayed within its size and refused the rest, counted (entries may have
    // aged since: the flood takes longer than the age).
    let entries = stats["fdb_entries"].as_u64().unwrap();
    assert!(entries <= 4096, "{entries} entries in a table of 4096");
    assert!(
        stats["fdb_full"].as_u64().unwrap() > 100_000,
        "refusals counted: {}",
        stats["fdb_full"]
    );
    let fdb = |socket| {
        ask_json(socket, &["show", "fdb"])["entries"]
            .as_array()
            .unwrap()
            .len()
    };

    // Once the flood's entries age out, a new station is learned again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while fdb(&socket) > 16 {
        assert!(
            Instant::now() < deadline,
            "the flood's entries did not age out"
        );
        thread::sleep(Duration::from_millis(200));
    }
    topo.vms[2]
        .ip(&["link", "set", "eth0", "address", "02:5e:00:00:00:01"])
        .unwrap();
    ping(&topo.vms[2], &topo.addr(0), 2).unwrap();
    let entries = ask_json(&socket, &["show", "fdb"]);
    assert!(
        entries["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == "02:5e:00:00:00:01"),
        "the new station is learned: {entries}"
    );
    let log = take_log(&log);
    assert!(!log.contains("ERROR") && !log.contains("panicked"), "{log}");
}

#[test]
fn a_stalled_egress_port_costs_only_its_own_frames() {
    let mut topo = Topology::new("stall", &[1, 1, 1]);
    for scope in ["all", "default"] {
        let key = format!("net.ipv6.conf.{scope}.disable_ipv6=1");
        topo.sw.run("sysctl", &["-qw", &key]).unwrap();
    }
    // The workers' transmit ring is what this test stalls.
    let (socket, log) = start(
        &mut topo,
        "stall",
        &["--ports", "p0,p1,p2", "--fast-path", "off"],
        Stdio::null(),
    );
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    ping(&topo.vms[2], &topo.addr(0), 1).unwrap();
    let (a, b, c) = (topo.vm_mac(0), topo.vm_mac(1), topo.vm_mac(2));
    let (free_before, total) = frames(&socket);

    // C's end stops draining, as a NIC's does under pause frames. A veth sender waits
    // (the peer's queue full) instead of dropping when a qdisc is on it and the peer
    // receives through NAPI (GRO on, and no TSO on the sending end so that frames are
    // eligible). The peer's NAPI is told to defer its interrupts (here: the sender's
    // wake-ups) for 2 s after each poll, so it takes the next frames only then.
    topo.sw
        .run(
            "tc",
            &[
                "qdisc", "add", "dev", "p2", "root", "pfifo", "limit", "1000",
            ],
        )
        .unwrap();
    topo.sw.run("ethtool", &["-K", "p2", "tso", "off"]).unwrap();
    topo.vms[2]
        .run("ethtool", &["-K", "eth0", "gro", "on"])
        .unwrap();
    let hold = |defer: u32, timeout_ns: u64| {
        let script = format!(
            "echo {defer} > /sys/class/net/eth0/napi_defer_hard_irqs && \
             echo {timeout_ns} > /sys/class/net/eth0/gro_flush_timeout"
        );
        topo.vms[2].run("sh", &["-c", &script]).unwrap();
    };
    hold(1_000_000, 2_000_000_000);

    let base_ports = ask_json(&socket, &["show", "ports"]);
    let base = [
        link_stats(&topo.vms[0], "eth0"),
        link_stats(&topo.vms[2], "eth0"),
        link_stats(&topo.sw, "p2"),
    ];
    // A sends 100 000 frames to C, far more than C takes; at the same time B sends
    // 20 000 to A.
    const TO_C: u64 = 100_000;
    const TO_A: u64 = 20_000;
    let send = |ns: &Netns, f: Vec<u8>, count: u64, pause_ms: u64| {
        ns.enter(|| {
            let socket = packet_socket("eth0");
            for i in 0..count {
                socket.send(&f).unwrap();
                if i % 100 == 99 {
                    thread::sleep(Duration::from_millis(pause_ms));
                }
            }
        })
        .unwrap();
    };
    thread::scope(|s| {
        s.spawn(|| send(&topo.vms[0], frame(c, a), TO_C, 2));
        s.spawn(|| send(&topo.vms[1], frame(a, b), TO_A, 10));
    });
    // Until hairpin is done with what it received (a loaded machine may leave it busy
    // for longer than the senders): two answers alike, 200 ms apart.
    let mut ports = ask_json(&socket, &["show", "ports"]);
    let settled_by = Instant::now() + Duration::from_secs(10);
    loop {
        thread::sleep(Duration::from_millis(200));
        let again = ask_json(&socket, &["show", "ports"]);
        let same = again["ports"]
            .as_array()
            .zip(ports["ports"].as_array())
            .is_some_and(|(a, b)| a.iter().zip(b).all(|(a, b)| a["counters"] == b["counters"]));
        ports = again;
        if same || Instant::now() > settled_by {
            break;
        }
    }
    let counter = |name: &str, what: &str| {
        let of = |v: &Value| port(v, name)["counters"][what].as_u64().unwrap_or(0);
        of(&ports) - of(&base_ports)
    };
    let dropped = |name: &str, reason: &str| {
        let of = |v: &Value| {
            port(v, name)["counters"]["drops"][reason]
                .as_u64()
                .unwrap_or(0)
        };
        of(&ports) - of(&base_ports)
    };
    let to_a = link_stats(&topo.vms[0], "eth0")[0] - base[0][0];
    let (stalled, forwarded_c) = (dropped("p2", "tx_ring_full"), counter("p2", "tx_packets"));
    eprintln!(
        "A received {to_a} of B's {TO_A}; hairpin received {} from A and sent C {forwarded_c}, \
         {stalled} dropped on C's full ring; p0: {}, p1: {}, p2: {}",
        counter("p0", "rx_packets"),
        port(&ports, "p0")["counters"]["drops"],
        port(&ports, "p1")["counters"]["drops"],
        port(&ports, "p2")["counters"]["drops"],
    );
    assert!(
        stalled > 0,
        "C's port stalled: its ring filled and frames were dropped"
    );
    // The others did not notice: every one of B's frames reached A.
    assert_eq!(
        counter("p1", "rx_packets"),
        TO_A,
        "hairpin received all of B's"
    );
    assert_eq!(counter("p0", "tx_packets"), TO_A, "and sent them all to A");
    assert_eq!(to_a, TO_A, "A received every one of B's frames");
    // A's frames for C: received or counted by the kernel; then sent to C or dropped
    // for its full ring, counted.
    let kernel: u64 = [
        "kernel_rx_ring_full",
        "kernel_fill_ring_empty",
        "kernel_rx_dropped",
    ]
    .iter()
    .map(|r| dropped("p0", r))
    .sum();
    assert_eq!(
        counter("p0", "rx_packets") + kernel,
        TO_C,
        "every frame of A received or counted"
    );
    assert_eq!(
        counter("p0", "rx_packets"),
        forwarded_c + stalled,
        "every frame for C sent or counted"
    );

    // Let C drain again: what hairpin sent it arrives, and the frames held in C's ring
    // come back to the pool.
    hold(0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivered_c = loop {
        let delivered = link_stats(&topo.vms[2], "eth0")[0] - base[1][0];
        if delivered >= forwarded_c || Instant::now() > deadline {
            break delivered;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let lost = link_stats(&topo.sw, "p2")[3] - base[2][3];
    assert_eq!(
        forwarded_c - delivered_c,
        lost,
        "C received all hairpin sent it but what the kernel counted dropped"
    );
    thread::sleep(Duration::from_millis(300));
    let (free_after, total_after) = frames(&socket);
    assert_eq!(total_after, total, "no frame lost or made");
    assert!(
        free_after.abs_diff(free_before) < 3 * 64,
        "free frames {free_before} before, {free_after} after"
    );
    let log = take_log(&log);
    assert!(!log.contains("ERROR") && !log.contains("panicked"), "{log}");
}
