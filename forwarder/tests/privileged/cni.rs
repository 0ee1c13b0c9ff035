//! `hairpin-cni` driven exactly as a container runtime drives it: `CNI_*` variables in
//! the environment, the network configuration on stdin, the result on stdout. "Pods"
//! are network namespaces of the test's lab; the node is its switch namespace, where
//! hairpin runs; IP addresses come from Debian's `host-local` IPAM plugin, with its
//! leases in a directory of the test's own.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Output, Stdio},
};

use hairpin::netlab::Netns;
use serde_json::{Value, json};

use crate::{
    Topology, ping,
    runtime::{HAIRPIN, ask, ask_json, start, take_log},
};

/// `hairpin-cni`, which `cargo xtask build` puts beside `hairpin`.
fn plugin() -> PathBuf {
    let path = Path::new(HAIRPIN).with_file_name("hairpin-cni");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo xtask build` (cargo xtask test does)",
        path.display()
    );
    path
}

/// Where Debian's containernetworking-plugins put the IPAM plugins.
const CNI_PATH: &str = "/usr/lib/cni";

/// host-local's lease directory for this test, removed at the end.
struct LeaseDir(PathBuf);

impl Drop for LeaseDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One tenant's network configuration: an access VLAN and a host-local range.
fn network(name: &str, vlan: u32, range: (&str, &str), socket: &Path, leases: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "type": "hairpin-cni",
        "socket": socket,
        "vlan": vlan,
        "spoofchk": true,
        "ipam": {
            "type": "host-local",
            "dataDir": leases,
            "ranges": [[{"subnet": "10.10.0.0/24", "rangeStart": range.0, "rangeEnd": range.1}]]
        }
    })
}

/// One run of the plugin from the node (the switch namespace).
/// The path a runtime gives as `CNI_NETNS` for `pod`.
fn netns(pod: &Netns) -> PathBuf {
    Path::new("/var/run/netns").join(pod.name())
}

fn cni(node: &Netns, command: &str, pod: &Path, id: &str, stdin: &[u8]) -> Output {
    cni_args(node, command, pod, id, stdin, "")
}

/// [`cni`] with `CNI_ARGS` (as podman passes `--mac-address`: `...;MAC=...`).
fn cni_args(node: &Netns, command: &str, pod: &Path, id: &str, stdin: &[u8], args: &str) -> Output {
    let mut child = node
        .command(plugin().to_str().unwrap())
        .env("CNI_ARGS", args)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", pod)
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", CNI_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// A run that must succeed; its stdout as JSON (`null` when empty, as for DEL).
fn cni_ok(node: &Netns, command: &str, pod: &Netns, id: &str, config: &Value) -> Value {
    cni_ok_args(node, command, pod, id, config, "")
}

/// [`cni_ok`] with `CNI_ARGS`.
fn cni_ok_args(
    node: &Netns,
    command: &str,
    pod: &Netns,
    id: &str,
    config: &Value,
    args: &str,
) -> Value {
    let out = cni_args(
        node,
        command,
        &netns(pod),
        id,
        config.to_string().as_bytes(),
        args,
    );
    assert!(
        out.status.success(),
        "{command} {id}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// A run that must fail with the spec's error result; returns it.
fn cni_err(node: &Netns, command: &str, pod: &Netns, id: &str, stdin: &[u8]) -> Value {
    let out = cni(node, command, &netns(pod), id, stdin);
    assert!(
        !out.status.success(),
        "{command} {id} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let error: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{command} {id}: no error JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert!(error["code"].as_u64().is_some(), "{error}");
    assert!(error["msg"].as_str().is_some(), "{error}");
    assert!(error["cniVersion"].as_str().is_some(), "{error}");
    assert_eq!(
        out.status.code().map(i64::from),
        error["code"].as_i64(),
        "the exit status is the error code"
    );
    error
}

/// The pod's address (without the prefix) from an ADD result.
fn address(result: &Value) -> String {
    let cidr = result["ips"][0]["address"].as_str().unwrap();
    cidr.split('/').next().unwrap().to_owned()
}

/// The host end's name from an ADD result.
fn host_end(result: &Value) -> String {
    result["interfaces"][0]["name"].as_str().unwrap().to_owned()
}

fn has_port(socket: &Path, name: &str) -> bool {
    ask_json(socket, &["show", "ports"])["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == name)
}

#[test]
fn pods_attached_by_the_cni_plugin_are_switched_isolated_and_detached() {
    let mut topo = Topology::new("cni", &[1]);
    // The node's uplink: a trunk of both tenants' VLANs.
    // hairpin keeps its run-time ports (the pods') in a state directory.
    let leases = LeaseDir(std::env::temp_dir().join(format!("hp-cni-{}", std::process::id())));
    let state = leases.0.join("state");
    let args = [
        "--ports",
        "p0",
        "--trunk",
        "p0=10,20",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let (socket, log) = start(&mut topo, "cni", &args, Stdio::null());
    let tenant_a = network(
        "tenant-a",
        10,
        ("10.10.0.10", "10.10.0.49"),
        &socket,
        &leases.0,
    );
    let tenant_b = network(
        "tenant-b",
        20,
        ("10.10.0.50", "10.10.0.99"),
        &socket,
        &leases.0,
    );
    let pid = std::process::id();
    let id = |pod: &str| format!("cni{pid}{pod}");

    // Five pods: a, b and c in tenant A (VLAN 10), d and e in tenant B (VLAN 20). All
    // share one subnet, so only the VLANs keep the tenants apart.
    let mut pods = Vec::new();
    let mut results = Vec::new();
    for (name, config) in [
        ("a", &tenant_a),
        ("b", &tenant_a),
        ("c", &tenant_a),
        ("d", &tenant_b),
        ("e", &tenant_b),
    ] {
        let pod = topo.lab.add_ns(&format!("pod{name}")).unwrap();
        let result = cni_ok(&topo.sw, "ADD", &pod, &id(name), config);
        assert_eq!(result["cniVersion"], "1.0.0", "{result}");
        assert_eq!(result["interfaces"][1]["name"], "net1", "{result}");
        assert_eq!(
            result["interfaces"][1]["sandbox"],
            format!("/var/run/netns/{}", pod.name()),
            "{result}"
        );
        assert_eq!(result["ips"][0]["interface"], 1, "{result}");
        let port = crate::runtime::port(&ask_json(&socket, &["show", "ports"]), &host_end(&result))
            .clone();
        let vlan = if name < "d" {
            "access VLAN 10"
        } else {
            "access VLAN 20"
        };
        assert_eq!(port["vlans"], vlan, "{port}");
        assert_eq!(
            port["allowed_macs"],
            json!([result["interfaces"][1]["mac"]
                .as_str()
                .unwrap()
                .to_lowercase()]),
            "spoofchk: only the pod's own MAC"
        );
        assert_eq!(port["origin"], "runtime", "{port}");
        pods.push(pod);
        results.push(result);
    }
    let (a, b, c, d, e) = (&pods[0], &pods[1], &pods[2], &pods[3], &pods[4]);
    let addr: Vec<String> = results.iter().map(address).collect();

    // Tenant A's pods reach each other through hairpin; so do tenant B's.
    ping(a, &addr[1], 3).unwrap();
    ping(a, &addr[2], 3).unwrap();
    ping(b, &addr[2], 3).unwrap();
    ping(d, &addr[4], 3).unwrap();
    // TCP too: the pods keep their offloads, so their stacks leave checksums partial,
    // and hairpin finishes them.
    // (One client, and gone after 10 s idle whatever happens.)
    let mut server = b
        .command("iperf3")
        .args(["-s", "-1", "--idle-timeout", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = a.run("iperf3", &["-c", &addr[1], "-t", "1", "-J"]);
    server.wait().unwrap();
    let out = out.unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received > 0, "no TCP data crossed: {report}");

    // Across the VLANs: nothing, though the addresses share a subnet.
    assert!(ping(a, &addr[3], 2).is_err(), "tenant A reached tenant B");
    assert!(ping(e, &addr[1], 2).is_err(), "tenant B reached tenant A");

    // hairpin restarts (a DaemonSet rollout): the pods keep their ports. One pod is
    // deleted while it is down, which removes its veth and lease; hairpin then drops
    // its port instead of restoring it.
    let mut first_log = take_log(&log);
    topo.lab
        .last_process()
        .unwrap()
        .signal(libc::SIGTERM)
        .unwrap();
    topo.lab.last_process().unwrap().child().wait().unwrap();
    let e_port = host_end(&results[4]);
    let out = cni(
        &topo.sw,
        "DEL",
        &netns(e),
        &id("e"),
        tenant_b.to_string().as_bytes(),
    );
    assert!(
        out.status.success(),
        "DEL while hairpin is down: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not answering"),
        "DEL said nothing of hairpin being down"
    );
    let (socket, log) = start(&mut topo, "cni", &args, Stdio::null());
    let ports = ask_json(&socket, &["show", "ports"]);
    for result in &results[..4] {
        let port = crate::runtime::port(&ports, &host_end(result));
        assert_eq!(port["origin"], "runtime", "{port}");
        assert_eq!(port["state"], "up", "{port}");
    }
    assert!(
        !has_port(&socket, &e_port),
        "restored {e_port}, whose pod is gone"
    );
    let saved: Value =
        serde_json::from_slice(&std::fs::read(state.join("ports.json")).unwrap()).unwrap();
    assert_eq!(saved["ports"].as_array().unwrap().len(), 4, "{saved}");
    ping(a, &addr[1], 3).unwrap();
    ping(b, &addr[2], 3).unwrap();
    assert!(ping(a, &addr[3], 2).is_err(), "tenant A reached tenant B");

    // A pod that sends from a MAC not its own is dropped, and counted.
    let c_port = host_end(&results[2]);
    c.ip(&["link", "set", "dev", "net1", "address", "02:00:00:00:99:99"])
        .unwrap();
    assert!(ping(c, &addr[0], 2).is_err(), "a spoofing pod got through");
    let ports = ask_json(&socket, &["show", "ports"]);
    let spoofed = crate::runtime::port(&ports, &c_port)["counters"]["drops"]["spoofed"]
        .as_u64()
        .unwrap_or(0);
    assert!(spoofed > 0, "no spoofed drops counted: {ports}");

    // CHECK passes on an intact attachment ...
    let mut check_a = tenant_a.clone();
    check_a["prevResult"] = results[0].clone();
    cni_ok(&topo.sw, "CHECK", a, &id("a"), &check_a);
    // ... and fails, with the spec's error result, once its port is removed by hand.
    let a_port = host_end(&results[0]);
    ask(&socket, &["port", "del", &a_port]).unwrap();
    let error = cni_err(
        &topo.sw,
        "CHECK",
        a,
        &id("a"),
        check_a.to_string().as_bytes(),
    );
    assert!(
        error["details"].as_str().unwrap().contains(&a_port),
        "{error}"
    );

    // DEL removes the port, the host end and the address lease; a second DEL succeeds.
    let b_port = host_end(&results[1]);
    let lease = leases.0.join("tenant-a").join(&addr[1]);
    assert!(lease.exists(), "no lease at {}", lease.display());
    cni_ok(&topo.sw, "DEL", b, &id("b"), &tenant_a);
    assert!(!has_port(&socket, &b_port), "DEL left port {b_port}");
    assert!(
        topo.sw.ip(&["link", "show", "dev", &b_port]).is_err(),
        "DEL left {b_port}"
    );
    assert!(!lease.exists(), "DEL left the lease {}", lease.display());
    cni_ok(&topo.sw, "DEL", b, &id("b"), &tenant_a);
    // ... also when the pod's namespace is gone already (nothing was ever attached).
    let gone = std::env::temp_dir().join(format!("hp-cni-gone-{pid}"));
    let out = cni(
        &topo.sw,
        "DEL",
        &gone,
        &id("z"),
        tenant_b.to_string().as_bytes(),
    );
    assert!(
        out.status.success(),
        "DEL without a namespace: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Malformed input gets the spec's error result: undecodable JSON (6), a key the
    // plugin does not know (2), a value hairpin would refuse (7).
    let error = cni_err(
        &topo.sw,
        "ADD",
        e,
        &id("x"),
        b"{\"cniVersion\": \"1.0.0\", ",
    );
    assert_eq!(error["code"], 6, "{error}");
    let mut typo = tenant_a.clone();
    typo["vaIn"] = json!(10);
    let error = cni_err(&topo.sw, "ADD", e, &id("x"), typo.to_string().as_bytes());
    assert_eq!(error["code"], 2, "{error}");
    let mut bad = tenant_a.clone();
    bad["vlan"] = json!(5000);
    let error = cni_err(&topo.sw, "ADD", e, &id("x"), bad.to_string().as_bytes());
    assert_eq!(error["code"], 7, "{error}");
    // Nothing was made for the refused ADDs.
    assert_eq!(
        ask_json(&socket, &["show", "ports"])["ports"]
            .as_array()
            .unwrap()
            .len(),
        1 + 2, // p0, c, d (a removed by hand, b and e deleted)
    );

    // VERSION names what the plugin speaks.
    let out = cni(
        &topo.sw,
        "VERSION",
        &netns(e),
        "",
        b"{\"cniVersion\":\"1.0.0\"}",
    );
    assert!(out.status.success());
    let version: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(version["supportedVersions"], json!(["1.0.0"]), "{version}");

    // The rest go as a runtime tears pods down.
    for (pod, name, config) in [
        (a, "a", &tenant_a),
        (c, "c", &tenant_a),
        (d, "d", &tenant_b),
        (e, "e", &tenant_b),
    ] {
        cni_ok(&topo.sw, "DEL", pod, &id(name), config);
    }
    assert_eq!(
        ask_json(&socket, &["show", "ports"])["ports"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only p0 is left"
    );
    let left: Vec<_> = std::fs::read_dir(leases.0.join("tenant-a"))
        .unwrap()
        .chain(std::fs::read_dir(leases.0.join("tenant-b")).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(left.is_empty(), "leases left: {left:?}");
    first_log.push_str(&take_log(&log));
    assert!(
        !first_log.contains("ERROR"),
        "hairpin logged errors:\n{first_log}"
    );
    assert!(
        first_log.contains(&format!("{e_port}: run-time port not restored")),
        "no word of the port not restored:\n{first_log}"
    );
    // The state follows the ports: all of the pods' are gone.
    let saved: Value =
        serde_json::from_slice(&std::fs::read(state.join("ports.json")).unwrap()).unwrap();
    assert_eq!(saved["ports"], json!([]), "{saved}");
}

#[test]
fn pods_of_mtu_9000_carry_jumbo_frames_and_an_mtu_hairpin_cannot_carry_is_refused() {
    let mut topo = Topology::new("cnimtu", &[1]);
    let leases = LeaseDir(std::env::temp_dir().join(format!("hp-cnimtu-{}", std::process::id())));
    let (socket, log) = start(&mut topo, "cnimtu", &["--ports", "p0"], Stdio::null());
    let mut jumbo = network(
        "jumbo",
        30,
        ("10.10.0.10", "10.10.0.49"),
        &socket,
        &leases.0,
    );
    jumbo["mtu"] = json!(9000);
    let pid = std::process::id();
    let id = |pod: &str| format!("cnimtu{pid}{pod}");

    // Both ends of each pod's veth get the MTU; hairpin carries 9000-byte frames whole.
    let pods = [
        topo.lab.add_ns("poda").unwrap(),
        topo.lab.add_ns("podb").unwrap(),
    ];
    let results: Vec<Value> = pods
        .iter()
        .zip(["a", "b"])
        .map(|(pod, name)| cni_ok(&topo.sw, "ADD", pod, &id(name), &jumbo))
        .collect();
    let ports = ask_json(&socket, &["show", "ports"]);
    for result in &results {
        let port = crate::runtime::port(&ports, &host_end(result));
        assert_eq!(port["mtu"], 9000, "{port}");
        assert!(port["largest_frame"].as_u64().unwrap() >= 9014, "{port}");
    }
    crate::jumbo::ping_jumbo(&pods[0], &address(&results[1]), 3)
        .expect("ping -s 8000 -M do between pods of MTU 9000");

    // CHECK holds the pod to its MTU.
    let mut check = jumbo.clone();
    check["prevResult"] = results[0].clone();
    cni_ok(&topo.sw, "CHECK", &pods[0], &id("a"), &check);
    pods[0]
        .ip(&["link", "set", "dev", "net1", "mtu", "1500"])
        .unwrap();
    let error = cni_err(
        &topo.sw,
        "CHECK",
        &pods[0],
        &id("a"),
        check.to_string().as_bytes(),
    );
    assert!(
        error["details"].as_str().unwrap().contains("MTU 1500"),
        "{error}"
    );

    // An MTU longer than a chain of UMEM frames: refused, and nothing is left of it.
    let mut huge = jumbo.clone();
    huge["mtu"] = json!(65000);
    let pod = topo.lab.add_ns("podc").unwrap();
    let error = cni_err(&topo.sw, "ADD", &pod, &id("c"), huge.to_string().as_bytes());
    assert_eq!(error["code"], 7, "{error}");
    assert!(
        error["details"]
            .as_str()
            .unwrap()
            .contains("hairpin carries"),
        "{error}"
    );
    let names: Vec<String> = ask_json(&socket, &["show", "ports"])["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 3, "p0 and the two pods only: {names:?}");
    assert!(
        pod.ip(&["link", "show", "dev", "net1"]).is_err(),
        "the refused pod kept its interface"
    );
    let leased = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("10.")
            })
            .count()
    };
    assert_eq!(
        leased(&leases.0.join("jumbo")),
        2,
        "the refused ADD kept its lease"
    );

    for (pod, name) in pods.iter().zip(["a", "b"]) {
        cni_ok(&topo.sw, "DEL", pod, &id(name), &jumbo);
    }
    assert_eq!(leased(&leases.0.join("jumbo")), 0);
    let log = take_log(&log);
    assert!(!log.contains("ERROR"), "hairpin logged errors:\n{log}");
}

#[test]
fn a_runtime_s_mac_its_go_encoded_prev_result_and_its_pod_s_name_are_kept() {
    // What podman (Go, CNI backend) does: `--mac-address` as `MAC=` in CNI_ARGS, and
    // for CHECK the ADD result as Go re-encodes it (no empty `sandbox`, no `dns`).
    let mut topo = Topology::new("cnipod", &[1]);
    let leases = LeaseDir(std::env::temp_dir().join(format!("hp-cnipod-{}", std::process::id())));
    let (socket, log) = start(&mut topo, "cnipod", &["--ports", "p0"], Stdio::null());
    let config = network(
        "podnet",
        10,
        ("10.10.0.10", "10.10.0.19"),
        &socket,
        &leases.0,
    );
    let pod = topo.lab.add_ns("poda").unwrap();
    let id = format!("cnipod{}", std::process::id());
    let mac = "02:00:00:00:0a:0a";
    let args = format!("IgnoreUnknown=1;K8S_POD_NAME=web;MAC={mac}");
    let run =
        |command: &str, config: &Value| cni_ok_args(&topo.sw, command, &pod, &id, config, &args);
    let result = run("ADD", &config);
    assert_eq!(
        result["interfaces"][1]["mac"]
            .as_str()
            .map(str::to_lowercase)
            .as_deref(),
        Some(mac),
        "{result}"
    );
    let in_pod = pod
        .enter(|| {
            hairpin::control::port::Interface::lookup("net1")
                .unwrap()
                .mac
        })
        .unwrap();
    assert_eq!(in_pod.to_string(), mac);
    let host = host_end(&result);
    let ports = ask_json(&socket, &["show", "ports"]);
    let port = crate::runtime::port(&ports, &host);
    assert_eq!(port["alias"], format!("cni {id} net1"), "{ports}");
    assert_eq!(port["allowed_macs"], json!([mac]), "{ports}");
    let table = ask(&socket, &["show", "ports"]).unwrap();
    assert!(table.contains(&format!("{host}: cni {id} net1")), "{table}");

    // CHECK with the result as a Go runtime hands it back.
    let mut prev = result.clone();
    prev["interfaces"][0]
        .as_object_mut()
        .unwrap()
        .remove("sandbox");
    prev.as_object_mut().unwrap().remove("dns");
    let mut check = config.clone();
    check["prevResult"] = prev;
    run("CHECK", &check);

    run("DEL", &config);
    assert!(!has_port(&socket, &host));
    take_log(&log);
}
