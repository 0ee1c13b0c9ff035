//! Port mirroring against a running hairpin: a mirror of p0 to a monitor port p2, whose
//! namespace runs tcpdump (an IDS's seat), shows every frame of a ping flow in both
//! directions, carried once by the fast path and once by the workers; the monitor port
//! forwards nothing else (a broadcast reaches it only as the mirror's copy); once the
//! mirror is removed nothing more is copied.
use std::{process::Stdio, thread, time::Duration};

use crate::{
    Capture, Topology, ping,
    runtime::{ask, ask_json, start, take_log},
    send_raw,
};

/// Echoes in the flow.
const PINGS: u32 = 200;

/// Broadcasts vm1 sends (p1 is not mirrored; p0 sends them, so they are mirrored out).
const BROADCASTS: usize = 20;

/// A broadcast of an experimental EtherType from `src`.
fn broadcast(src: [u8; 6], n: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend(src);
    f.extend([0x88, 0xb5, n]);
    f.resize(60, 0);
    f
}

fn count(lines: &[String], what: &str) -> usize {
    lines.iter().filter(|l| l.contains(what)).count()
}

fn mirror_shows_the_flow(tag: &str, args: &[&str], fast: bool) {
    let mut topo = Topology::new(tag, &[1, 1, 1]);
    if fast {
        topo.fast_path_ready();
    }
    let mut run_args = vec!["--ports", "p0,p1,p2"];
    run_args.extend(args);
    let (socket, log) = start(&mut topo, tag, &run_args, Stdio::null());
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();

    ask(
        &socket,
        &["mirror", "add", "ids", "--from", "p0", "--to", "p2"],
    )
    .unwrap();
    let monitor = Capture::start(
        &topo.vms[2],
        "eth0",
        std::env::temp_dir().join(format!("hp-{tag}-mon-{}.pcap", std::process::id())),
    );
    topo.vms[0]
        .run(
            "ping",
            &[
                "-c",
                &PINGS.to_string(),
                "-i",
                "0.005",
                "-W",
                "2",
                "-q",
                &topo.addr(1),
            ],
        )
        .unwrap();
    let mac1 = topo.vm_mac(1).0;
    let frames: Vec<Vec<u8>> = (0..BROADCASTS).map(|n| broadcast(mac1, n as u8)).collect();
    send_raw(&topo.vms[1], "eth0", &frames);
    let lines = monitor.finish();
    let mirrors = ask_json(&socket, &["show", "mirrors"]);

    let n = PINGS as usize;
    assert_eq!(
        (
            count(&lines, "ICMP echo request"),
            count(&lines, "ICMP echo reply")
        ),
        (n, n),
        "the monitor saw every echo of the flow once: {mirrors}\n{}",
        take_log(&log)
    );
    // Each broadcast once: the mirror's copy of it leaving p0, not a flood's.
    assert_eq!(
        count(&lines, "ethertype Unknown (0x88b5)"),
        BROADCASTS,
        "{lines:?}"
    );
    let ids = &mirrors["mirrors"][0];
    assert_eq!(ids["name"], "ids", "{mirrors}");
    assert_eq!(ids["state"], "active", "{mirrors}");
    assert_eq!(ids["lost"], 0, "{mirrors}");
    assert!(
        ids["copies"].as_u64().unwrap() >= (2 * n + BROADCASTS) as u64,
        "{mirrors}"
    );
    let ports = ask_json(&socket, &["show", "ports"]);
    let fast_sent: u64 = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["counters"]["fast_tx_packets"].as_u64().unwrap_or(0))
        .sum();
    if fast {
        assert!(
            fast_sent >= 2 * u64::from(PINGS),
            "the fast path carried the flow: {fast_sent}"
        );
    } else {
        assert_eq!(fast_sent, 0, "the workers carried the flow");
    }

    // Removed: the copies stop at once, and the monitor port is a port again.
    ask(&socket, &["mirror", "del", "ids"]).unwrap();
    let monitor = Capture::start(
        &topo.vms[2],
        "eth0",
        std::env::temp_dir().join(format!("hp-{tag}-after-{}.pcap", std::process::id())),
    );
    ping(&topo.vms[0], &topo.addr(1), 20).unwrap();
    thread::sleep(Duration::from_millis(100));
    let lines = monitor.finish();
    // (The switch namespace's own stack may still talk to vm2 over p2's veth: a router
    // solicitation, say.)
    assert_eq!(
        count(&lines, "ICMP echo"),
        0,
        "copies after the mirror was removed: {lines:?}"
    );
    assert!(
        ask_json(&socket, &["show", "mirrors"])["mirrors"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_mirror_shows_every_frame_the_fast_path_carries() {
    mirror_shows_the_flow("mirf", &[], true);
}

#[test]
fn a_mirror_shows_every_frame_the_workers_carry() {
    mirror_shows_the_flow("mirw", &["--fast-path", "off"], false);
}
