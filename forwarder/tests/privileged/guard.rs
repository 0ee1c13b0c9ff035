//! The IP source guard against a running hairpin: a port allowed 198.18.0.1 and
//! fd00::1 keeps its own traffic (ping, DHCP, DAD) but cannot claim its neighbour's
//! addresses (a gratuitous ARP, an unsolicited neighbour advertisement) or send from a
//! foreign IPv4 source: those are dropped and counted `ip_spoofed`, and never reach the
//! neighbour, through the fast path and through the workers; a capture of the port
//! shows each of them with its reason, the fast path's drops too.
use std::{process::Stdio, thread, time::Duration};

use crate::{
    Capture, Topology,
    capture::{Running, comments},
    ping,
    runtime::{ask_json, port, start, take_log},
    send_raw,
};

/// The one's-complement sum of `bytes` (RFC 1071), folded.
fn sum(bytes: &[u8], mut acc: u32) -> u32 {
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        acc += u32::from(word);
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// An IPv4 packet of `proto` from `src` to `dst` carrying `payload`, header checksummed.
fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let len = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend(len.to_be_bytes());
    h.extend([0, 0, 0, 0, 64, proto, 0, 0]);
    h.extend(src);
    h.extend(dst);
    let c = !(sum(&h, 0) as u16);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend(payload);
    h
}

/// A UDP datagram (checksum 0: none) from port `sport` to `dport`.
fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend(dport.to_be_bytes());
    u.extend(((8 + data.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(data);
    u
}

/// An IPv6 packet carrying ICMPv6 `icmp` (its checksum filled in), hop limit 255.
fn icmpv6(src: [u8; 16], dst: [u8; 16], mut icmp: Vec<u8>) -> Vec<u8> {
    let mut pseudo = src.to_vec();
    pseudo.extend(dst);
    pseudo.extend((icmp.len() as u32).to_be_bytes());
    pseudo.extend([0, 0, 0, 58]);
    let c = !(sum(&icmp, sum(&pseudo, 0)) as u16);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((icmp.len() as u16).to_be_bytes());
    p.extend([58, 255]);
    p.extend(src);
    p.extend(dst);
    p.extend(icmp);
    p
}

fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

fn v6(last: u8, prefix: [u8; 2]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..2].copy_from_slice(&prefix);
    a[15] = last;
    a
}

fn count(lines: &[String], what: &str) -> usize {
    lines.iter().filter(|l| l.contains(what)).count()
}

fn guard(tag: &str, args: &[&str], fast: bool) {
    let mut topo = Topology::new(tag, &[1, 1]);
    if fast {
        topo.fast_path_ready();
    }
    let mut run_args = vec![
        "--ports",
        "p0,p1",
        "--allow-ip",
        "p0=198.18.0.1/32",
        "--allow-ip",
        "p0=fd00::1/128",
    ];
    run_args.extend(args);
    let (socket, log) = start(&mut topo, tag, &run_args, Stdio::null());
    // Its own traffic passes (and teaches the stations).
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();
    let (mac0, mac1) = (topo.vm_mac(0).0, topo.vm_mac(1).0);
    let before = ask_json(&socket, &["show", "ports"]);
    let seen = Capture::start(
        &topo.vms[1],
        "eth0",
        std::env::temp_dir().join(format!("hp-{tag}-vm1-{}.pcap", std::process::id())),
    );

    let (ip1, foreign) = ([198, 18, 0, 2], [198, 18, 0, 99]);
    let bcast = [0xff; 6];
    // A gratuitous ARP claiming vm1's address.
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend(mac0);
    arp.extend(ip1);
    arp.extend([0; 6]);
    arp.extend(ip1);
    // An unsolicited neighbour advertisement claiming fd00::2 (override set), with
    // vm0's link-layer address, from vm0's own fd00::1.
    let mut na = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    na.extend(v6(2, [0xfd, 0]));
    na.extend([2, 1]);
    na.extend(mac0);
    let all_nodes = v6(1, [0xff, 0x02]);
    let na = icmpv6(v6(1, [0xfd, 0]), all_nodes, na);
    // UDP to vm1 from a foreign source (a unicast the fast path may carry).
    let spoofed = ipv4(foreign, ip1, 17, &udp(4000, 4001, b"spoofed"));
    // DHCP discover from 0.0.0.0, and DAD for fd00::1: the port's own, they pass.
    let dhcp = ipv4([0; 4], [255; 4], 17, &udp(68, 67, &[0u8; 240]));
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend(v6(1, [0xfd, 0]));
    let mut solicited = v6(1, [0xff, 0x02]);
    solicited[11] = 1;
    solicited[12] = 0xff;
    let dad = icmpv6([0; 16], solicited, ns);
    let mut sol_mac = [0x33, 0x33, 0xff, 0, 0, 0];
    sol_mac[3..].copy_from_slice(&solicited[13..]);
    let frames = [
        ether(bcast, mac0, 0x0806, &arp),
        ether([0x33, 0x33, 0, 0, 0, 1], mac0, 0x86dd, &na),
        ether(mac1, mac0, 0x0800, &spoofed),
        ether(bcast, mac0, 0x0800, &dhcp),
        ether(sol_mac, mac0, 0x86dd, &dad),
    ];
    let capture = Running::start(
        &socket,
        std::env::temp_dir().join(format!("hp-{tag}-p0-{}.pcapng", std::process::id())),
        &["p0", "--in"],
    );
    send_raw(&topo.vms[0], "eth0", &frames);
    // vm0's own IPv4 still passes, on the fast path where it is on.
    ping(&topo.vms[0], &topo.addr(1), 5).unwrap();
    thread::sleep(Duration::from_millis(200));
    let lines = seen.finish();
    let (file, summary) = capture.stop();
    let captured = comments(&file);
    let _ = std::fs::remove_file(&file);
    let after = ask_json(&socket, &["show", "ports"]);
    let log = take_log(&log);
    let spoofed_drops = |v: &serde_json::Value| {
        port(v, "p0")["counters"]["drops"]["ip_spoofed"]
            .as_u64()
            .unwrap_or(0)
    };
    let dropped = spoofed_drops(&after) - spoofed_drops(&before);
    let fast_sent = port(&after, "p1")["counters"]["fast_tx_packets"]
        .as_u64()
        .unwrap_or(0);
    eprintln!(
        "vm1 saw: {lines:#?}\nip_spoofed on p0: {dropped}; p1 sent {fast_sent} by the fast path"
    );

    assert_eq!(
        dropped, 3,
        "the ARP, the NA and the foreign source, counted\n{log}"
    );
    // The capture of p0 shows the same three with their reason (the foreign source's
    // dropped by the fast path where it is on).
    let refused: Vec<&Vec<u8>> = captured
        .iter()
        .filter(|(_, c)| c.iter().any(|c| c == "dropped: ip_spoofed"))
        .map(|(data, _)| data)
        .collect();
    assert_eq!(refused.len(), 3, "{captured:?}\n{summary}");
    assert!(
        refused
            .iter()
            .any(|data| data.windows(4).any(|w| w == foreign)),
        "the foreign source's frame, captured as dropped: {refused:?}"
    );
    assert_eq!(
        count(&lines, "198.18.0.99"),
        0,
        "the foreign source did not pass"
    );
    assert_eq!(
        count(&lines, "tell 198.18.0.2"),
        0,
        "the gratuitous ARP did not pass"
    );
    assert_eq!(
        count(&lines, "neighbor advertisement"),
        0,
        "the NA did not pass"
    );
    assert!(count(&lines, "BOOTP/DHCP") >= 1, "DHCP passed: {lines:?}");
    assert!(
        count(&lines, "neighbor solicitation") >= 1,
        "DAD passed: {lines:?}"
    );
    assert!(
        count(&lines, "ICMP echo request") >= 5,
        "vm0's own pings passed"
    );
    if fast {
        assert!(
            fast_sent >= 5,
            "the fast path carried vm0's pings: {fast_sent}"
        );
    } else {
        assert_eq!(fast_sent, 0, "the workers carried everything");
    }
}

#[test]
fn the_ip_guard_drops_claims_on_a_neighbour_s_addresses_on_the_fast_path() {
    guard("ipgf", &[], true);
}

#[test]
fn the_ip_guard_drops_claims_on_a_neighbour_s_addresses_in_the_workers() {
    guard("ipgw", &["--fast-path", "off"], false);
}
