//! Reload is all or nothing: a running `hairpin run --config FILE` given a file with one
//! bad entry among good changes answers with the reason and changes nothing (ports,
//! VLANs, counters, forwarding); the good file then applies whole.
use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use serde_json::Value;

use crate::{
    Topology, ping,
    runtime::{ask, ask_json, port, start, take_log},
};

/// A file of this test's own, removed when the test ends (on every path).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes a `veb` configuration of `ports` (name, access VLAN) to `path`.
fn write_config(path: &Path, ports: &[(&str, u16)]) {
    let mut text = String::from("mode = \"veb\"\n");
    for (name, vlan) in ports {
        text.push_str(&format!("[[port]]\nname = \"{name}\"\nvlan = {vlan}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// (name, slot, state, VLANs) of every port in a `show ports --json` answer.
fn layout(ports: &Value) -> Vec<(String, u64, String, String)> {
    ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["slot"].as_u64().unwrap(),
                p["state"].as_str().unwrap().to_owned(),
                p["vlans"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn counter(ports: &Value, name: &str, what: &str) -> u64 {
    port(ports, name)["counters"][what].as_u64().unwrap()
}

#[test]
fn a_reload_with_one_bad_entry_changes_nothing_and_the_good_file_then_applies() {
    let mut topo = Topology::new("rlfl", &[1, 1, 1, 1]);
    let config =
        TempFile(std::env::temp_dir().join(format!("hp-rlfl-{}.toml", std::process::id())));
    // p0, p1 and p2 in VLAN 10; p3 not a port.
    write_config(&config.0, &[("p0", 10), ("p1", 10), ("p2", 10)]);
    let (socket, log) = start(
        &mut topo,
        "rlfl",
        &["--config", config.0.to_str().unwrap()],
        Stdio::null(),
    );
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();
    ping(&topo.vms[0], &topo.addr(2), 3).unwrap();
    let before = ask_json(&socket, &["show", "ports"]);
    for name in ["p0", "p1", "p2"] {
        assert!(counter(&before, name, "rx_packets") > 0, "{before}");
    }

    // p2 removed, p1 into VLAN 30, p3 added into VLAN 30, and an interface that does
    // not exist added too.
    let missing = format!("hpmiss{}", std::process::id() % 100_000);
    write_config(
        &config.0,
        &[("p0", 10), ("p1", 30), ("p3", 30), (missing.as_str(), 30)],
    );
    let said = ask(&socket, &["reload"]).expect_err("a reload with a missing interface fails");
    assert!(
        said.contains(&format!("interface {missing}: no such device"))
            && said.contains("nothing changed"),
        "{said}"
    );

    // Nothing changed: the same ports in the same slots and VLANs, counters not reset.
    let after = ask_json(&socket, &["show", "ports"]);
    assert_eq!(layout(&after), layout(&before), "{after}");
    for name in ["p0", "p1", "p2"] {
        for what in ["rx_packets", "tx_packets"] {
            assert!(
                counter(&after, name, what) >= counter(&before, name, what),
                "{name} {what}: {before} then {after}"
            );
        }
    }
    // And it forwards as before: p1 still in VLAN 10, p2 still a port, p3 not one.
    ping(&topo.vms[0], &topo.addr(1), 3).expect("p1 still in VLAN 10");
    ping(&topo.vms[0], &topo.addr(2), 3).expect("p2 still a port");
    // (From vm3: vm1's neighbour entry for vm3 is left alone for the ping below.)
    ping(&topo.vms[3], &topo.addr(0), 1).expect_err("p3 was not added");
    let forwarded = ask_json(&socket, &["show", "ports"]);
    assert!(
        counter(&forwarded, "p2", "rx_packets") > counter(&after, "p2", "rx_packets"),
        "{forwarded}"
    );

    // The file without the missing interface applies whole.
    write_config(&config.0, &[("p0", 10), ("p1", 30), ("p3", 30)]);
    let said = ask(&socket, &["reload"]).unwrap();
    assert!(
        said.contains("p2 removed") && said.contains("p1 changed") && said.contains("p3 added"),
        "{said}"
    );
    ping(&topo.vms[1], &topo.addr(3), 3).expect("p1 and p3 share VLAN 30");
    ping(&topo.vms[0], &topo.addr(1), 1).expect_err("VLAN 10 is not VLAN 30");
    ping(&topo.vms[0], &topo.addr(2), 1).expect_err("p2 was removed");
    take_log(&log);
}
