//! Tenants cannot hurt each other (storm control and ingress policing), against a
//! running hairpin with the host's defaults: a port broadcasting flat out under storm
//! control reaches the others at no more than its rate and burst, the excess counted,
//! while another pair's ping loses nothing; a port policed at 100 Mbit/s carries a TCP
//! stream at that rate while another pair runs unpoliced at full rate, through the fast
//! path and through the workers.
use std::{
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    Topology, packet_socket, ping,
    runtime::{ask, ask_json, port, start, stream, take_log},
};

/// Broadcasts per second storm control lets p0 send.
const STORM_PPS: u64 = 1000;
/// And at once.
const STORM_BURST: u64 = 100;

/// A broadcast of an experimental EtherType from `src`, numbered `n`.
fn broadcast(src: [u8; 6], n: u32) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend(src);
    f.extend([0x88, 0xb5]);
    f.extend(n.to_be_bytes());
    f.resize(60, 0);
    f
}

/// Counter `what` of port `name` in a `show ports --json` answer.
fn counter(ports: &Value, name: &str, what: &str) -> u64 {
    port(ports, name)["counters"][what].as_u64().unwrap_or(0)
}

fn drops(ports: &Value, name: &str, reason: &str) -> u64 {
    port(ports, name)["counters"]["drops"][reason]
        .as_u64()
        .unwrap_or(0)
}

/// Frames of the experimental EtherType `ns` received on eth0: tcpdump's count.
fn tcpdump_broadcasts(ns: &hairpin::netlab::Netns, file: &std::path::Path) -> Child {
    let mut cmd = ns.command("tcpdump");
    cmd.args(["-i", "eth0", "-nn", "-U", "-w"])
        .arg(file)
        .args(["ether", "proto", "0x88b5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

#[test]
fn storm_control_holds_a_broadcast_storm_to_its_rate_and_the_others_lose_nothing() {
    let mut topo = Topology::new("storm", &[1, 1, 1]);
    let (socket, log) = start(
        &mut topo,
        "storm",
        &[
            "--ports",
            "p0,p1,p2",
            "--storm-broadcast",
            &format!("p0={STORM_PPS}"),
            "--storm-burst",
            &format!("p0={STORM_BURST}"),
        ],
        Stdio::null(),
    );
    ping(&topo.vms[1], &topo.addr(2), 3).unwrap();
    let files: Vec<_> = [1, 2]
        .iter()
        .map(|i| std::env::temp_dir().join(format!("hp-storm-{i}-{}.pcap", std::process::id())))
        .collect();
    let mut dumps: Vec<Child> = [1, 2]
        .iter()
        .zip(&files)
        .map(|(&i, f)| tcpdump_broadcasts(&topo.vms[i], f))
        .collect();
    thread::sleep(Duration::from_millis(700));
    let before = ask_json(&socket, &["show", "ports"]);

    // vm1 pings vm2 all along; vm0 broadcasts as fast as it can for 3 s.
    let mut pinger = stream(&topo.vms[1], &topo.addr(2), 300);
    let src = topo.vm_mac(0).0;
    let start_at = Instant::now();
    let sent = topo.vms[0]
        .enter(|| {
            let socket = packet_socket("eth0");
            let mut n = 0u32;
            while start_at.elapsed() < Duration::from_secs(3) {
                for _ in 0..64 {
                    socket.send(&broadcast(src, n)).unwrap();
                    n += 1;
                }
            }
            u64::from(n)
        })
        .unwrap();
    let ping_ok = pinger.wait().unwrap().success();
    // Until hairpin is done with the storm: two answers alike.
    let mut after = ask_json(&socket, &["show", "ports"]);
    loop {
        thread::sleep(Duration::from_millis(200));
        let again = ask_json(&socket, &["show", "ports"]);
        let settled = counter(&again, "p0", "rx_packets") == counter(&after, "p0", "rx_packets");
        after = again;
        if settled {
            break;
        }
    }
    let window = start_at.elapsed().as_secs_f64();
    thread::sleep(Duration::from_millis(500));
    for dump in &mut dumps {
        // SAFETY: signals a child this test spawned and has not reaped.
        unsafe { libc::kill(dump.id() as libc::pid_t, libc::SIGINT) };
        dump.wait().unwrap();
    }
    let received: Vec<u64> = files
        .iter()
        .map(|f| {
            let out = std::process::Command::new("tcpdump")
                .args(["-nn", "-r"])
                .arg(f)
                .stderr(Stdio::null())
                .output()
                .unwrap();
            let _ = std::fs::remove_file(f);
            // (tcpdump prints an unknown EtherType's bytes under its line.)
            let text = String::from_utf8_lossy(&out.stdout);
            text.lines().filter(|l| l.contains("(0x88b5)")).count() as u64
        })
        .collect();
    let log = take_log(&log);

    let storm = drops(&after, "p0", "storm") - drops(&before, "p0", "storm");
    let rx = counter(&after, "p0", "rx_packets") - counter(&before, "p0", "rx_packets");
    // The meter admits at most its rate over the time it ran, and its burst.
    let most = (STORM_PPS as f64 * window) as u64 + STORM_BURST;
    eprintln!(
        "sent {sent} broadcasts in 3 s; hairpin received {rx}, dropped {storm} (storm); \
         vm1, vm2 received {received:?} (at most {most} over {window:.2} s)"
    );
    assert!(ping_ok, "the other pair's ping lost nothing\n{log}");
    for &r in &received {
        assert!(
            r <= most,
            "a port received {r} broadcasts, more than {most}"
        );
        // Not a meter that drops everything: at least most of the rate got through.
        assert!(
            r >= STORM_PPS * 2,
            "a port received only {r} broadcasts in 3 s"
        );
    }
    assert_eq!(
        received[0], received[1],
        "both other ports got the same broadcasts"
    );
    assert!(
        storm > 0 && storm + received[0] >= rx,
        "the excess was counted: {storm} of {rx}"
    );
    // `hairpin top` shows the limit under p0's row.
    let top = ask(&socket, &["top", "--once", "--interval", "1"]).unwrap();
    let lines: Vec<&str> = top.lines().collect();
    let row = lines
        .iter()
        .position(|l| l.starts_with("p0 "))
        .unwrap_or_else(|| panic!("no p0 in top:\n{top}"));
    assert_eq!(
        lines.get(row + 1).copied(),
        Some("  limits: storm_broadcast 1.00 kpps burst 100"),
        "{top}"
    );
}

/// iperf3's receiver rate in Mbit/s from its JSON report.
fn mbits(report: &[u8]) -> f64 {
    let json: Value = serde_json::from_slice(report)
        .unwrap_or_else(|e| panic!("iperf3 -J: {e}: {}", String::from_utf8_lossy(report)));
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no receiver rate: {json}"))
        / 1e6
}

/// A policed TCP stream (vm0 -> vm1) and an unpoliced one (vm2 -> vm3) at once, through a
/// hairpin started with `args`; their rates in Mbit/s.
fn two_streams(tag: &str, args: &[&str], fast: bool) -> (f64, f64, Value) {
    let mut topo = Topology::new(tag, &[1, 1, 1, 1]);
    if fast {
        topo.fast_path_ready();
    }
    let mut run_args = vec!["--ports", "p0,p1,p2,p3", "--police-rate", "p0=100M"];
    run_args.extend(args);
    let (socket, log) = start(&mut topo, tag, &run_args, Stdio::null());
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    ping(&topo.vms[2], &topo.addr(3), 2).unwrap();
    let servers: Vec<Child> = [1, 3]
        .iter()
        .map(|&i| {
            let mut cmd = topo.vms[i].command("iperf3");
            cmd.args(["-s", "-1", "-B", &topo.addr(i)])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cmd.spawn().unwrap()
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let client = |from: usize, to: usize| {
        let addr = topo.addr(to);
        let args = [
            "20",
            "iperf3",
            "-c",
            &addr,
            "-t",
            "6",
            "-O",
            "1",
            "-J",
            "--connect-timeout",
            "3000",
        ];
        topo.vms[from].run("timeout", &args).map(|o| o.stdout)
    };
    let (policed, free) = thread::scope(|s| {
        let a = s.spawn(|| client(0, 1));
        let b = s.spawn(|| client(2, 3));
        (a.join().unwrap(), b.join().unwrap())
    });
    for mut server in servers {
        let _ = server.kill();
        let _ = server.wait();
    }
    let ports = ask_json(&socket, &["show", "ports"]);
    let (policed, free) = match (policed, free) {
        (Ok(p), Ok(f)) => (mbits(&p), mbits(&f)),
        (p, f) => panic!("iperf3: {p:?} {f:?}\n{}", take_log(&log)),
    };
    (policed, free, ports)
}

fn policing(tag: &str, args: &[&str], fast: bool) {
    let (policed, free, ports) = two_streams(tag, args, fast);
    let fast_sent = counter(&ports, "p1", "fast_tx_packets");
    eprintln!(
        "policed at 100 Mbit/s: {policed:.1} Mbit/s; unpoliced: {free:.1} Mbit/s; \
         p0 dropped {} (policed); p1 sent {fast_sent} by the fast path",
        drops(&ports, "p0", "policed")
    );
    assert!(
        (85.0..=115.0).contains(&policed),
        "the policed stream settles within 15 % of 100 Mbit/s: {policed:.1}"
    );
    assert!(
        free > 150.0,
        "the other pair runs at full rate: {free:.1} Mbit/s"
    );
    assert!(drops(&ports, "p0", "policed") > 0, "the excess was counted");
    if fast {
        assert!(
            fast_sent > 1000,
            "the fast path carried the stream: {fast_sent}"
        );
    } else {
        assert_eq!(fast_sent, 0, "the workers carried the stream");
    }
}

#[test]
fn a_port_policed_at_100_mbits_carries_tcp_at_that_rate_through_the_fast_path() {
    policing("polf", &[], true);
}

#[test]
fn a_port_policed_at_100_mbits_carries_tcp_at_that_rate_through_the_workers() {
    policing("polw", &["--fast-path", "off"], false);
}
