//! `hairpin trace` against a running hairpin: its answers agree with what frames really
//! did (a ping's echoes, by the ports' counters) and with the configuration (a flood
//! over the VLAN's other ports, a tag pushed towards a trunk, a source the port does not
//! allow), and tracing changes nothing in the MAC table.
use std::process::Stdio;

use serde_json::Value;

use crate::{
    Topology, ping,
    runtime::{ask, ask_json, port, start, take_log},
};

/// `(port, tag action)` of each egress port in a `trace --json` answer.
fn egress(report: &Value) -> Vec<(String, String)> {
    report["egress"]
        .as_array()
        .unwrap_or_else(|| panic!("no egress: {report}"))
        .iter()
        .map(|e| {
            (
                e["port"].as_str().unwrap().to_owned(),
                e["tag"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Each port's `(tx_packets, fast_tx_packets)`, by name.
fn sent(socket: &std::path::Path, name: &str) -> (u64, u64) {
    let ports = ask_json(socket, &["show", "ports"]);
    let c = &port(&ports, name)["counters"];
    (
        c["tx_packets"].as_u64().unwrap(),
        c["fast_tx_packets"].as_u64().unwrap_or(0),
    )
}

fn pair(port: &str, tag: &str) -> (String, String) {
    (port.to_owned(), tag.to_owned())
}

#[test]
fn trace_agrees_with_the_frames_and_the_configuration() {
    // p0, p1: access VLAN 10; p2: a trunk of VLAN 10; p3: access VLAN 10, allowing
    // only its own station's MAC.
    let mut topo = Topology::new("trace", &[1, 1, 1, 1]);
    let allowed = topo.vm_mac(3).to_string();
    let (socket, log) = start(
        &mut topo,
        "trace",
        &[
            "--ports",
            "p0,p1,p2,p3",
            "--vlan",
            "p0=10",
            "--vlan",
            "p1=10",
            "--trunk",
            "p2=10",
            "--vlan",
            "p3=10",
            "--allow",
            &format!("p3={allowed}"),
        ],
        Stdio::null(),
    );
    let (a, b) = (topo.vm_mac(0).to_string(), topo.vm_mac(1).to_string());
    // The ping teaches the stations (and the neighbours their addresses).
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();

    // A known unicast, each way: the port the echoes really went to.
    let to_b = ask_json(&socket, &["trace", "p0", "--src", &a, "--dst", &b]);
    assert_eq!(to_b["action"], "forward", "{to_b}");
    assert_eq!(egress(&to_b), [pair("p1", "keep")], "{to_b}");
    let to_a = ask_json(&socket, &["trace", "p1", "--src", &b, "--dst", &a]);
    assert_eq!(egress(&to_a), [pair("p0", "keep")], "{to_a}");
    let before: Vec<_> = ["p0", "p1", "p2", "p3"]
        .iter()
        .map(|p| sent(&socket, p))
        .collect();
    ping(&topo.vms[0], &topo.addr(1), 10).unwrap();
    let after: Vec<_> = ["p0", "p1", "p2", "p3"]
        .iter()
        .map(|p| sent(&socket, p))
        .collect();
    let delta = |i: usize| (after[i].0 - before[i].0, after[i].1 - before[i].1);
    assert!(
        delta(1).0 >= 10,
        "the requests left by p1: {before:?} {after:?}"
    );
    assert!(
        delta(0).0 >= 10,
        "the replies left by p0: {before:?} {after:?}"
    );
    for other in [2, 3] {
        assert!(
            delta(other).0 < 10,
            "the echoes did not leave by p{other}: {before:?} {after:?}"
        );
    }
    // The path the trace names is the one that carried them.
    for (report, egress_port) in [(&to_b, 1), (&to_a, 0)] {
        match report["path"].as_str().unwrap() {
            "fast" => assert!(delta(egress_port).1 >= 10, "{report} {before:?} {after:?}"),
            "workers" => assert_eq!(delta(egress_port).1, 0, "{report} {before:?} {after:?}"),
            other => panic!("path {other}: {report}"),
        }
    }

    // An unknown destination floods VLAN 10's other ports, tagged to the trunk.
    let unknown = "02:00:00:00:99:99";
    let flood = ask_json(&socket, &["trace", "p0", "--src", &a, "--dst", unknown]);
    assert_eq!(flood["action"], "flood", "{flood}");
    assert_eq!(
        egress(&flood),
        [
            pair("p1", "keep"),
            pair("p2", "push VID 10"),
            pair("p3", "keep")
        ],
        "{flood}"
    );
    assert_eq!(flood["path"], "workers", "{flood}");
    // From the trunk, tagged 10: popped towards the access ports.
    let from_trunk = ask_json(
        &socket,
        &[
            "trace", "p2", "--src", unknown, "--dst", &a, "--vlan", "10:3",
        ],
    );
    assert_eq!(egress(&from_trunk), [pair("p0", "pop")], "{from_trunk}");

    // A source p3 does not allow is dropped as spoofed.
    let spoofed = ask_json(&socket, &["trace", "p3", "--src", unknown, "--dst", &a]);
    assert_eq!(spoofed["action"], "drop", "{spoofed}");
    assert_eq!(spoofed["drop_reason"], "spoofed", "{spoofed}");
    assert_eq!(spoofed["source_allowed"], false, "{spoofed}");

    // The text answer, and a refusal.
    let text = ask(&socket, &["trace", "p0", "--src", &a, "--dst", unknown]).unwrap();
    assert!(
        text.contains("action: flood to p1 (keep), p2 (push VID 10), p3 (keep)"),
        "{text}"
    );
    let refused = ask(&socket, &["trace", "p9", "--src", &a, "--dst", &b]).unwrap_err();
    assert!(refused.contains("p9 is not a port"), "{refused}");

    // Tracing taught the table nothing: the traced source is still unknown, and the
    // stations are where the ping put them.
    let fdb = ask_json(&socket, &["show", "fdb"]);
    let entries: Vec<String> = fdb["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["mac"].as_str().unwrap(),
                e["port"].as_str().unwrap(),
                e["vlan"]
            )
        })
        .collect();
    assert!(
        !entries.iter().any(|e| e.starts_with(unknown)),
        "{entries:?}"
    );
    assert!(entries.contains(&format!("{a} p0 10")), "{entries:?}");
    assert!(entries.contains(&format!("{b} p1 10")), "{entries:?}");
    let log = take_log(&log);
    assert!(!log.contains("panicked"), "{log}");
}
