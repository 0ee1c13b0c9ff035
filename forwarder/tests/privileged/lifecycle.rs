//! The `hairpin` binary as an operator runs it: it stops cleanly on SIGTERM, leaves
//! nothing attached when killed, and says what is wrong with bad input.
use std::{
    io::Read as _,
    process::Stdio,
    time::{Duration, Instant},
};

use crate::{Topology, ping};

const HAIRPIN: &str = env!("CARGO_BIN_EXE_hairpin");

/// The control socket of the hairpin spawned with `args` words.
fn socket_of(args: usize) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("hp-life-{}-{args}.sock", std::process::id()))
}

fn spawn_hairpin(topo: &mut Topology, args: &[&str]) -> u32 {
    // A control socket of its own: the default path is the host's, shared by every
    // network namespace and every test.
    let socket = socket_of(args.len());
    let mut cmd = topo.sw.command(HAIRPIN);
    cmd.args(args)
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let pid = topo.lab.spawn(cmd).unwrap().child().id();
    // Generous: the capacity tests, which run beside this one, attach and detach
    // thousands of sockets and links (each close waits for an RCU grace period).
    if !topo.sw.wait_for_xdp(&["p0", "p1"], Duration::from_secs(60)) {
        let process = topo.lab.last_process().unwrap();
        let _ = process.signal(libc::SIGKILL);
        let (_, out) = wait_exit(topo, Duration::from_secs(10));
        panic!("hairpin did not attach to both ports within 60 s; it said:\n{out}");
    }
    pid
}

/// Waits for the last spawned process to exit; returns (success, stdout + stderr).
fn wait_exit(topo: &mut Topology, timeout: Duration) -> (bool, String) {
    let deadline = Instant::now() + timeout;
    let child = topo.lab.last_process().unwrap().child();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            return (status.success(), out);
        }
        assert!(
            Instant::now() < deadline,
            "hairpin did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bridge_ports_in_kernel(topo: &Topology) {
    let sw = &topo.sw;
    sw.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
    for port in ["p0", "p1"] {
        sw.ip(&["link", "set", port, "master", "br0"]).unwrap();
    }
    sw.ip(&["link", "set", "br0", "up"]).unwrap();
}

#[test]
fn sigterm_and_sigkill_leave_no_program_behind() {
    let mut topo = Topology::new("life", &[1, 1]);

    // SIGTERM: a clean stop with the final counters. This run reads a config file.
    let config = std::env::temp_dir().join(format!("hp-life-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "mode = \"veb\"\n[[port]]\nname = \"p0\"\n[[port]]\nname = \"p1\"\nhairpin = false\n",
    )
    .unwrap();
    let pid = spawn_hairpin(&mut topo, &["run", "--config", config.to_str().unwrap()]);
    std::fs::remove_file(&config).unwrap();
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();
    topo.lab
        .last_process()
        .unwrap()
        .signal(libc::SIGTERM)
        .unwrap();
    let (ok, out) = wait_exit(&mut topo, Duration::from_secs(10));
    assert!(ok, "exit status after SIGTERM: {out}");
    assert!(out.contains("XDP detached from 2 port(s)"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("p0 ")),
        "final counters printed: {out}"
    );
    assert!(
        !topo.sw.has_xdp("p0") && !topo.sw.has_xdp("p1"),
        "pid {pid} detached"
    );

    // SIGKILL: no chance to clean up; the kernel closes the bpf_links.
    spawn_hairpin(
        &mut topo,
        &["run", "--ports", "p0,p1", "--mode", "xconnect"],
    );
    ping(&topo.vms[1], &topo.addr(0), 3).unwrap();
    topo.lab
        .last_process()
        .unwrap()
        .signal(libc::SIGKILL)
        .unwrap();
    let (ok, _) = wait_exit(&mut topo, Duration::from_secs(10));
    assert!(!ok, "killed");
    // What a killed hairpin could not remove.
    let _ = std::fs::remove_file(socket_of(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while topo.sw.has_xdp("p0") || topo.sw.has_xdp("p1") {
        assert!(
            Instant::now() < deadline,
            "XDP still attached 5 s after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The ports are plain kernel ports again: a kernel bridge carries the ping.
    bridge_ports_in_kernel(&topo);
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();
}

fn run_fails(topo: &Topology, args: &[&str]) -> String {
    // Not the default socket, which the other tests' hairpins may be serving: the
    // error must be the one asked about.
    let socket = std::env::temp_dir().join(format!("hp-fail-{}.sock", std::process::id()));
    let out = topo
        .sw
        .command(HAIRPIN)
        .args(args)
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&socket);
    assert!(!out.status.success(), "hairpin {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_input_is_refused_with_what_failed_on_what() {
    let topo = Topology::new("errs", &[1, 1]);
    let err = run_fails(&topo, &["run", "--ports", "p0,nosuchport"]);
    assert!(
        err.contains("interface nosuchport: no such device"),
        "{err}"
    );
    let err = run_fails(&topo, &["run", "--ports", "p0,p1", "--queues", "4"]);
    assert!(
        err.contains("--queues 4: no port has that many RX queues"),
        "{err}"
    );
    let err = run_fails(&topo, &["run", "--ports", "p0,p1,p0"]);
    assert!(err.contains("port p0 is given twice"), "{err}");
    let err = run_fails(&topo, &["run", "--ports", "p0", "--mode", "xconnect"]);
    assert!(
        err.contains("xconnect mode needs exactly 2 ports, got 1"),
        "{err}"
    );
    let err = run_fails(&topo, &["run", "--ports", "p0,p1", "--ring-size", "1000"]);
    assert!(err.contains("ring size 1000 is not usable"), "{err}");
    let err = run_fails(&topo, &["run", "--config", "/nonexistent/hairpin.toml"]);
    assert!(
        err.contains("/nonexistent/hairpin.toml: cannot read it"),
        "{err}"
    );
    let err = run_fails(&topo, &["run", "--config", "/dev/null", "--ports", "p0"]);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = run_fails(&topo, &["run", "--ports", "p0,p1", "--mode", "vepa"]);
    assert!(err.contains("--mode vepa needs --uplink IF"), "{err}");
    let err = run_fails(
        &topo,
        &["run", "--ports", "p0", "--uplink", "p1", "--hairpin", "p2"],
    );
    assert!(
        err.contains("--hairpin p2: p2 is not one of the bridged ports (p0,p1)"),
        "{err}"
    );
    let err = run_fails(
        &topo,
        &["run", "--ports", "p0,p1", "--allow", "p0=01:00:5e:00:00:01"],
    );
    assert!(err.contains("not a station's MAC"), "{err}");
    let err = run_fails(&topo, &["run", "--ports", "p0,p1", "--zero-copy", "on"]);
    assert!(err.contains("zero-copy"), "veth has no zero-copy: {err}");
    // Nothing was left attached by any of the failures.
    assert!(!topo.sw.has_xdp("p0") && !topo.sw.has_xdp("p1"));
    ping(&topo.vms[0], &topo.addr(1), 1).expect_err("no forwarding without hairpin or a bridge");
}

#[test]
fn the_demo_forwards_pings_and_tcp_and_cleans_up() {
    crate::lab("demo"); // the preflight check, loudly
    let child = std::process::Command::new(HAIRPIN)
        .args(["demo", "--seconds", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lab_prefix = format!("hp-demo-{}-", child.id());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches(", 0% packet loss").count(),
        3,
        "three pairs pinged: {text}"
    );
    assert!(
        text.contains("iperf3 vm1 -> vm3 (TCP, 3 s): [") && text.contains("receiver"),
        "{text}"
    );
    assert!(text.contains("XDP detached from 3 port(s)"), "{text}");
    // The live view, one frame at least: the trickle from vm1 to vm2 moves port1.
    let row = text
        .lines()
        .find(|l| l.starts_with("port1 "))
        .unwrap_or_else(|| panic!("no live view: {text}"));
    assert_eq!(row.split_whitespace().nth(1), Some("up"), "{row}");
    assert_ne!(row.split_whitespace().nth(2), Some("0"), "{row}");
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with(&lab_prefix)),
        "the demo removed its lab: {left}"
    );
}
