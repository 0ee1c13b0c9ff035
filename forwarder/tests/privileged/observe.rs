//! Observability of a running switch: the Prometheus endpoint scraped while frames flow
//! (checked by `promtool` and against `hairpin show ports --json`), and `hairpin top`.
use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use hairpin::netlab::Netns;

use crate::{
    Topology, ping,
    runtime::{HAIRPIN, ask, ask_json, port, start, stream, stream_result, take_log},
};

/// Where hairpin serves metrics inside the test's switch namespace (its own loopback).
pub(crate) const METRICS: &str = "127.0.0.1:9417";

/// `GET path` on the metrics endpoint, from inside `ns`: (status line, body).
pub(crate) fn get(ns: &Netns, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {METRICS}\r\nConnection: close\r\n\r\n");
    let response = ns
        .enter(move || {
            let mut stream = TcpStream::connect(METRICS)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(request.as_bytes())?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok::<_, std::io::Error>(response)
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("GET {path} from {METRICS}: {e}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not HTTP: {response}"));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// Every sample of an exposition: `name{labels}` -> value.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l:?}"));
            (
                key.to_owned(),
                value.parse().unwrap_or_else(|_| panic!("{l:?}")),
            )
        })
        .collect()
}

/// `promtool check metrics` on `body`: its complaints (empty when none).
fn promtool(body: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is needed (Debian package prometheus; `cargo xtask setup`): {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let complaints =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        complaints
    } else {
        format!("exit {}: {complaints}", out.status)
    }
}

#[test]
fn metrics_are_scraped_while_frames_flow_and_match_show_ports() {
    let mut topo = Topology::new("metrics", &[1, 1, 1]);
    let (socket, log) = start(
        &mut topo,
        "metrics",
        &["--ports", "p0,p1,p2", "--metrics", METRICS],
        Stdio::null(),
    );
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    let flow = stream(&topo.vms[0], &topo.addr(1), 600);
    std::thread::sleep(Duration::from_millis(500));

    let (status, before) = get(&topo.sw, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    let ports = ask_json(&socket, &["show", "ports"]);
    std::thread::sleep(Duration::from_millis(500));
    let (_, after) = get(&topo.sw, "/metrics");

    assert_eq!(promtool(&before), "", "promtool on:\n{before}");
    let (before, after) = (samples(&before), samples(&after));
    // `show ports` was taken between the two scrapes: each of its counters lies between
    // theirs, and a port that carries the stream moved on.
    for name in ["p0", "p1", "p2"] {
        let counters = &port(&ports, name)["counters"];
        for counter in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"] {
            let key = format!("hairpin_port_{counter}_total{{port=\"{name}\"}}");
            let shown = counters[counter].as_u64().unwrap() as f64;
            let (a, b) = (before[&key], after[&key]);
            assert!(a <= shown && shown <= b, "{key}: {a} <= {shown} <= {b}");
        }
    }
    for name in ["p0", "p1"] {
        let key = format!("hairpin_port_rx_packets_total{{port=\"{name}\"}}");
        assert!(after[&key] > before[&key], "{key} moved with the stream");
    }
    // The queue counters add up to the port's.
    assert_eq!(
        before["hairpin_queue_rx_packets_total{port=\"p0\",queue=\"0\"}"],
        before["hairpin_port_rx_packets_total{port=\"p0\"}"]
    );
    let count = "hairpin_latency_seconds_count";
    assert!(
        after[count] > before[count],
        "the latency histogram grows: {} then {}",
        before[count],
        after[count]
    );
    assert_eq!(
        after[count],
        after["hairpin_latency_seconds_bucket{le=\"+Inf\"}"]
    );
    assert_eq!(before["hairpin_port_up{port=\"p2\"}"], 1.0);
    assert_eq!(
        before["hairpin_port_drops_total{port=\"p2\",reason=\"spoofed\"}"], 0.0,
        "every reason is there, zero or not"
    );

    // `hairpin top --once` while the stream flows: p0 and p1 carry it, p2 is idle.
    let top = ask(&socket, &["top", "--once", "--interval", "1"]).unwrap();
    for (name, busy) in [("p0", true), ("p1", true), ("p2", false)] {
        let row: Vec<&str> = top
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{top}"))
            .split_whitespace()
            .collect();
        // port, state, rx pkt/s (figure, unit), rx bit/s, tx pkt/s, tx bit/s, drops/s
        assert_eq!(row[1], "up", "{top}");
        let (rx, tx) = (row[2], row[6]);
        if busy {
            assert!(rx != "0" && tx != "0", "{name} carries the stream:\n{top}");
        } else {
            assert!(rx == "0" && tx == "0", "{name} is idle:\n{top}");
        }
    }
    assert!(top.contains("latency"), "{top}");

    let (status, _) = get(&topo.sw, "/nothing");
    assert!(status.contains(" 404 "), "{status}");
    let (sent, received) = stream_result(flow);
    assert_eq!(sent, received);
    drop(topo);
    let log = take_log(&log);
    assert!(
        log.contains(&format!("metrics at http://{METRICS}/metrics")),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let _ = ask(&socket, &["show", "ports"]).expect_err("hairpin is gone");
}

/// `setpriv` arguments that run a program as `nobody` with exactly `caps` (e.g.
/// `+net_admin,+bpf`), as systemd's `User=` and `AmbientCapabilities=` would.
fn as_nobody(caps: &str) -> Vec<String> {
    [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &format!("--inh-caps={caps}"),
        &format!("--ambient-caps={caps}"),
        &format!("--bounding-set=-all,{caps}"),
        HAIRPIN,
    ]
    .map(str::to_owned)
    .to_vec()
}

const FIVE: &str = "+net_admin,+net_raw,+bpf,+perfmon,+ipc_lock";

#[test]
fn an_unprivileged_user_with_the_five_capabilities_runs_it_and_with_four_is_told_which_lacks() {
    let mut topo = Topology::new("nonroot", &[1, 1]);
    // One capability short: refused before anything is touched, naming it.
    let short = topo
        .sw
        .command("setpriv")
        .args(as_nobody("+net_admin,+net_raw,+bpf,+perfmon"))
        .args(["run", "--ports", "p0,p1", "--socket", "/tmp/hp-never.sock"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&short.stderr);
    assert!(!short.status.success(), "{said}");
    assert!(said.contains("CAP_IPC_LOCK"), "{said}");
    assert!(!topo.sw.has_xdp("p0"), "nothing attached");

    // All five, as the systemd unit grants them: it forwards.
    let socket = std::env::temp_dir().join(format!("hp-nonroot-{}.sock", std::process::id()));
    let _remove = crate::runtime::SocketFile::new(socket.clone());
    let mut cmd = topo.sw.command("setpriv");
    cmd.args(as_nobody(FIVE))
        .args(["run", "--ports", "p0,p1", "--socket"])
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    topo.lab.spawn(cmd).unwrap();
    assert!(
        topo.sw.wait_for_xdp(&["p0", "p1"], Duration::from_secs(15)),
        "hairpin as nobody attached"
    );
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();
    let mode = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&mode),
        65534,
        "the socket is the service user's"
    );
}
