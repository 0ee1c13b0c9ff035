//! Real VMs on hairpin, as a KVM host runs them: qemu guests (Debian's kernel,
//! virtio-net with qemu's default offloads: checksums left partial, TCP segmentation
//! offered to the host) attached by qemu's own `script=`/`downscript=`, the shipped
//! `contrib/qemu-ifup` and `qemu-ifdown` with the port's settings in qemu's environment
//! (`HAIRPIN_VLAN`, ...), on a switch that started with no port. Every guest
//! serves a random file and fetches its peers' (SHA-256 compared), and counts no TCP
//! checksum error.
//!
//! ```text
//!   veb:     vm a ── t0 ┐ hairpin ┌ t1 ── vm b
//!   vlan:    vm a ── t0 (access 10) ┐          ┌ t1 (trunk 10,20) ── vm b (eth0.10)
//!                                   └ hairpin ─┴ t2 (access 20)   ── vm c (same subnet, apart)
//!   vepa:    vm a ── mv0 ┐ macvtap (VEPA) on l0 ── veth ── l1 (hairpin port, reflective relay)
//!            vm b ── mv1 ┘
//! ```
use std::{collections::HashMap, path::PathBuf, process::Stdio, time::Duration};

use serde_json::Value;

use crate::{
    Topology,
    guest::{Nic, Report, Role, Vm, tap_settings},
    offloads::{Httpd, fetch_sha256},
    runtime::{SocketFile, ask_json, port, start},
};

/// Each guest's file: 4 MiB, each way.
const KIB: u32 = 4096;

/// Boots, transfers and reports under TCG on a busy two-core machine.
const TIMEOUT: Duration = Duration::from_secs(300);

/// A scratch directory for the test's files, removed at its end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(topo: &Topology) -> Self {
        let dir = std::env::temp_dir().join(format!("{}-scripts", topo.sw.name()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn role(ip: &str, peers: &[&str]) -> Role {
    Role {
        ip: format!("{ip}/24"),
        peers: peers.iter().map(|p| (*p).to_owned()).collect(),
        kib: KIB,
        ..Role::default()
    }
}

/// Every report's own file's sum, by the guest's address.
fn sums(reports: &[(&str, &Report)]) -> HashMap<String, String> {
    reports
        .iter()
        .map(|(addr, r)| {
            assert_eq!(r.sum.len(), 64, "{} made its file:\n{}", r.name, r.console);
            ((*addr).to_owned(), r.sum.clone())
        })
        .collect()
}

/// A port's counter from `show ports --json`.
fn counter(ports: &Value, name: &str, key: &str) -> u64 {
    port(ports, name)["counters"][key].as_u64().unwrap_or(0)
}

/// Waits until hairpin lists exactly `names` as its ports.
fn wait_for_ports(socket: &SocketFile, names: &[&str]) -> Value {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let ports = ask_json(socket, &["show", "ports"]);
        let mut have: Vec<&str> = ports["ports"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        have.sort_unstable();
        if have == names {
            return ports;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ports {have:?}, waiting for {names:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_vms_and_a_container_with_default_offloads_move_files_every_way() {
    // The "container" is a namespace on a veth (MTU 1500, default offloads) serving and
    // fetching too: what a guest hands over in large segments must reach it in frames
    // its MTU admits.
    let mut topo = Topology::new("vmveb", &[1]);
    let (socket, _log) = start(&mut topo, "vmveb", &[], Stdio::null());
    crate::runtime::ask(&socket, &["port", "add", "p0"]).unwrap();
    let scratch = Scratch::new(&topo);
    let plain = tap_settings(&socket, &[]);
    let www = scratch.0.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let blob: Vec<u8> = (0..KIB << 10)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(www.join("blob"), &blob).unwrap();
    let _httpd = Httpd::start(&topo.vms[0], &www, 80);
    let pod = topo.addr(0);
    let sw = topo.sw.clone();
    let (a, b) = ("198.18.0.11", "198.18.0.12");
    let vm_a = Vm::boot(
        &mut topo.lab,
        &sw,
        "a",
        "52:54:00:00:09:01",
        Nic::Tap {
            name: "t0",
            env: &plain,
        },
        &role(a, &[b, &pod]),
    );
    let vm_b = Vm::boot(
        &mut topo.lab,
        &sw,
        "b",
        "52:54:00:00:09:02",
        Nic::Tap {
            name: "t1",
            env: &plain,
        },
        &role(b, &[a, &pod]),
    );
    let (ra, rb) = (vm_a.report(TIMEOUT), vm_b.report(TIMEOUT));
    let mut sums = sums(&[(a, &ra), (b, &rb)]);
    sums.insert(pod.clone(), crate::sha256(&blob));
    ra.assert_fetched(&sums);
    rb.assert_fetched(&sums);
    for (vm, r) in [(a, &ra), (b, &rb)] {
        assert_eq!(
            r.got.get(&pod),
            Some(&sums[&pod]),
            "{vm} fetched the pod's file"
        );
        let got = fetch_sha256(&topo.vms[0], &format!("http://{vm}/blob")).unwrap();
        assert_eq!(got, r.sum, "the pod fetched {vm}'s file");
    }

    let ports = wait_for_ports(&socket, &["p0", "t0", "t1"]);
    for name in ["p0", "t0", "t1"] {
        assert!(
            counter(&ports, name, "rx_bytes") > u64::from(KIB) << 10,
            "{name} carried the transfers: {ports}"
        );
        let drops = &port(&ports, name)["counters"]["drops"];
        assert!(drops.get("oversize").is_none(), "{name}: {ports}");
    }
    // The guests' TSO segments were cut (and their checksums finished), the veth's
    // segments were not.
    for name in ["t0", "t1"] {
        assert!(counter(&ports, name, "segmented") > 0, "{name}: {ports}");
        assert!(
            counter(&ports, name, "checksums_finished") > 0,
            "{name}: {ports}"
        );
    }
    assert_eq!(counter(&ports, "p0", "segmented"), 0, "{ports}");

    // qemu's downscript detaches its tap when the VM stops.
    topo.lab
        .process(vm_a.process.unwrap())
        .unwrap()
        .signal(libc::SIGTERM)
        .unwrap();
    wait_for_ports(&socket, &["p0", "t1"]);
}

#[test]
fn vms_in_one_vlan_behind_a_trunk_reach_each_other_and_not_another_vlan() {
    let mut topo = Topology::new("vmvlan", &[]);
    let (socket, _log) = start(&mut topo, "vmvlan", &[], Stdio::null());
    // a may send only from its own MAC.
    let access10 = tap_settings(
        &socket,
        &[("HAIRPIN_VLAN", "10"), ("HAIRPIN_MAC", "52:54:00:00:0a:01")],
    );
    let trunk = tap_settings(&socket, &[("HAIRPIN_TRUNK", "10,20")]);
    let access20 = tap_settings(&socket, &[("HAIRPIN_VLAN", "20")]);
    let sw = topo.sw.clone();
    let (a, b, c) = ("10.9.1.1", "10.9.1.2", "10.9.1.3");
    // c shares the subnet but not the VLAN: a and b look for it once their transfers
    // are done, long after it is up (checked below by the guests' clocks).
    let mut role_a = role(a, &[b]);
    role_a.apart = vec![c.to_owned()];
    let mut role_b = role(b, &[a]);
    role_b.vlan = Some(10);
    role_b.apart = vec![c.to_owned()];
    let role_c = role(c, &[]);
    let started = std::time::Instant::now();
    let vm_a = Vm::boot(
        &mut topo.lab,
        &sw,
        "a",
        "52:54:00:00:0a:01",
        Nic::Tap {
            name: "t0",
            env: &access10,
        },
        &role_a,
    );
    let vm_b = Vm::boot(
        &mut topo.lab,
        &sw,
        "b",
        "52:54:00:00:0a:02",
        Nic::Tap {
            name: "t1",
            env: &trunk,
        },
        &role_b,
    );
    let vm_c = Vm::boot(
        &mut topo.lab,
        &sw,
        "c",
        "52:54:00:00:0a:03",
        Nic::Tap {
            name: "t2",
            env: &access20,
        },
        &role_c,
    );
    let spread = started.elapsed().as_secs_f64();
    let (ra, rb, rc) = (
        vm_a.report(TIMEOUT),
        vm_b.report(TIMEOUT),
        vm_c.report(TIMEOUT),
    );
    let sums = sums(&[(a, &ra), (b, &rb)]);
    ra.assert_fetched(&sums);
    rb.assert_fetched(&sums);
    for r in [&ra, &rb] {
        r.assert_kept_from(
            c,
            rc.ready + spread + 1.0,
            &format!("c was up at {} s, +{spread:.1} s between boots", rc.ready),
        );
    }

    let ports = wait_for_ports(&socket, &["t0", "t1", "t2"]);
    let trunk = port(&ports, "t1")["vlans"].as_str().unwrap_or_default();
    assert!(
        trunk.starts_with("trunk"),
        "t1 is the trunk its script made: {ports}"
    );
    assert_eq!(
        port(&ports, "t0")["allowed_macs"],
        serde_json::json!(["52:54:00:00:0a:01"]),
        "t0 allows only a's MAC: {ports}"
    );
}

#[test]
fn vms_on_macvtaps_in_vepa_mode_meet_through_hairpin_s_reflective_relay() {
    // The macvtaps' lower device l0 is cabled to hairpin's port l1: in VEPA mode every
    // frame between the two guests leaves by l0 and must come back from hairpin.
    let mut topo = Topology::new("vmvepa", &[]);
    let (socket, _log) = start(&mut topo, "vmvepa", &[], Stdio::null());
    let sw = topo.sw.clone();
    topo.lab.veth((&sw, "l0"), (&sw, "l1"), 1).unwrap();
    crate::runtime::ask(&socket, &["port", "add", "l1", "--hairpin"]).unwrap();
    let macs = ["52:54:00:00:0b:01", "52:54:00:00:0b:02"];
    for (i, mac) in macs.iter().enumerate() {
        let mv = format!("mv{i}");
        sw.ip(&[
            "link", "add", "link", "l0", "name", &mv, "type", "macvtap", "mode", "vepa",
        ])
        .unwrap();
        sw.ip(&["link", "set", &mv, "address", mac, "up"]).unwrap();
    }
    let (a, b) = ("10.9.2.1", "10.9.2.2");
    let vm_a = Vm::boot(
        &mut topo.lab,
        &sw,
        "a",
        macs[0],
        Nic::Macvtap { name: "mv0" },
        &role(a, &[b]),
    );
    let vm_b = Vm::boot(
        &mut topo.lab,
        &sw,
        "b",
        macs[1],
        Nic::Macvtap { name: "mv1" },
        &role(b, &[a]),
    );
    let (ra, rb) = (vm_a.report(TIMEOUT), vm_b.report(TIMEOUT));
    let sums = sums(&[(a, &ra), (b, &rb)]);
    ra.assert_fetched(&sums);
    rb.assert_fetched(&sums);
    let ports = ask_json(&socket, &["show", "ports"]);
    assert!(
        counter(&ports, "l1", "rx_packets") > u64::from(KIB),
        "the guests' frames crossed hairpin: {ports}"
    );
}
