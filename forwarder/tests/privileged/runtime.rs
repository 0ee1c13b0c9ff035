//! hairpin as a service that lives with its host: ports added and removed while frames
//! flow, ports that vanish and come back, the control socket's commands, reload and
//! signals, and bad requests refused. Each test runs the `hairpin` binary as an operator
//! would, in its own namespaces, with a control socket of its own.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hairpin::netlab::Netns;
use serde_json::{Value, json};

use crate::{Topology, iperf, ping};

pub(crate) const HAIRPIN: &str = env!("CARGO_BIN_EXE_hairpin");

/// A control socket path of this test's own.
fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("hp-{tag}-{}.sock", std::process::id()))
}

/// A control socket's path, removed when the test ends (the lab kills hairpin, which
/// then has no chance to remove it itself).
#[derive(Debug)]
pub(crate) struct SocketFile(PathBuf);

impl SocketFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self(path)
    }
}

impl std::ops::Deref for SocketFile {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads hairpin's log and removes the file.
pub(crate) fn take_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let _ = std::fs::remove_file(path);
    text
}

/// Runs `hairpin run ARGS --socket SOCKET` in the switch namespace, stderr to a file,
/// stdout as given; waits until it answers on its socket.
pub(crate) fn start(
    topo: &mut Topology,
    tag: &str,
    args: &[&str],
    stdout: Stdio,
) -> (SocketFile, PathBuf) {
    start_within(topo, tag, args, stdout, Duration::from_secs(20))
}

/// [`start`], waiting up to `wait` for hairpin to answer (it answers once every port
/// at start is attached).
pub(crate) fn start_within(
    topo: &mut Topology,
    tag: &str,
    args: &[&str],
    stdout: Stdio,
    wait: Duration,
) -> (SocketFile, PathBuf) {
    let socket = SocketFile(socket_path(tag));
    let log = std::env::temp_dir().join(format!("hp-{tag}-{}.log", std::process::id()));
    let mut cmd = topo.sw.command(HAIRPIN);
    cmd.arg("run")
        .args(args)
        .arg("--socket")
        .arg(&*socket)
        .stdout(stdout)
        .stderr(std::fs::File::create(&log).unwrap());
    topo.lab.spawn(cmd).unwrap();
    let deadline = Instant::now() + wait;
    while ask(&socket, &["show", "ports"]).is_err() {
        assert!(
            Instant::now() < deadline,
            "hairpin did not answer on {}: {}",
            socket.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (socket, log)
}

/// Runs a client command against `socket`: its stdout, or its stderr if it failed.
pub(crate) fn ask(socket: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(HAIRPIN)
        .args(args)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A client command's `--json` answer.
pub(crate) fn ask_json(socket: &Path, args: &[&str]) -> Value {
    let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let text = ask(socket, &args).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The port called `name` in a `show ports --json` answer.
pub(crate) fn port<'a>(ports: &'a Value, name: &str) -> &'a Value {
    ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name}: {ports}"))
}

/// A ping stream: `count` echoes every 10 ms from `ns` to `addr`, in the background.
pub(crate) fn stream(ns: &Netns, addr: &str, count: u32) -> Child {
    ns.command("ping")
        .args([
            "-i",
            "0.01",
            "-c",
            &count.to_string(),
            "-W",
            "2",
            "-q",
            addr,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a stream and returns (sent, received).
pub(crate) fn stream_result(child: Child) -> (u32, u32) {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    let number = |word: &str| -> u32 {
        let before = line.split(word).next().unwrap();
        before
            .trim_end()
            .rsplit([' ', ','])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (number(" packets transmitted"), number(" received"))
}

/// The first worker's UMEM frames that are free or promised to a fill ring (its ports'
/// quotas grow and shrink with their traffic, moving frames between the two), and all
/// it owns. At rest the first is the second less what the fill rings lack of their
/// quotas (less than a batch a port): a frame lost elsewhere shows.
pub(crate) fn frames(socket: &Path) -> (u64, u64) {
    let stats = ask_json(socket, &["show", "stats"]);
    let w = &stats["workers"][0];
    (
        w["free_frames"].as_u64().unwrap() + w["promised_frames"].as_u64().unwrap(),
        w["total_frames"].as_u64().unwrap(),
    )
}

/// The first worker's frames promised to fill rings, all it may promise, and its
/// `show stats` entry (for messages).
pub(crate) fn promises(socket: &Path) -> (u64, u64, Value) {
    let mut stats = ask_json(socket, &["show", "stats"]);
    let w = stats["workers"][0].take();
    (
        w["promised_frames"].as_u64().unwrap(),
        w["budget_frames"].as_u64().unwrap(),
        w,
    )
}

/// Checks that the pool is back where `before` (free, total) had it, once the ports
/// that left have given their frames back (the fill rings are topped up a batch at a
/// time, so it may differ by less than a batch a port).
pub(crate) fn assert_frames_back(socket: &Path, (free_before, total): (u64, u64)) {
    std::thread::sleep(Duration::from_millis(300));
    let (free_after, total_after) = frames(socket);
    assert_eq!(total_after, total, "no frame lost or made");
    assert!(
        free_after.abs_diff(free_before) < 2 * 64,
        "free frames {free_before} before, {free_after} after"
    );
}

#[test]
fn a_switch_started_with_no_port_waits_for_port_add() {
    // As qemu's scripts, libvirt's hook and hairpin-cni use it: nothing at start, ports
    // added as VMs and pods come, TCP between them (default offloads) and gone again.
    let mut topo = Topology::new("empty", &[1, 1]);
    let (socket, log) = start(&mut topo, "empty", &[], Stdio::null());
    let ports = ask_json(&socket, &["show", "ports"]);
    assert_eq!(ports["ports"].as_array().unwrap().len(), 0, "{ports}");
    for name in ["p0", "p1"] {
        ask(&socket, &["port", "add", name]).unwrap();
    }
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();
    iperf(&topo, 0, 1, 1, 1).unwrap();
    for name in ["p0", "p1"] {
        ask(&socket, &["port", "del", name]).unwrap();
    }
    ping(&topo.vms[0], &topo.addr(1), 1).expect_err("no port, no path");
    let ports = ask_json(&socket, &["show", "ports"]);
    assert_eq!(ports["ports"].as_array().unwrap().len(), 0, "{ports}");
    let text = take_log(&log);
    assert!(
        text.contains("no port given: waiting for `hairpin port add`"),
        "{text}"
    );
}

#[test]
fn ports_come_and_go_under_traffic_without_disturbing_the_others() {
    let mut topo = Topology::new("churn", &[1, 1, 1]);
    let (socket, log) = start(&mut topo, "churn", &["--ports", "p0,p1"], Stdio::null());
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    let (free_before, total) = frames(&socket);

    // A stream between A and B while C comes and goes twenty times.
    let ab = stream(&topo.vms[0], &topo.addr(1), 2000);
    for round in 0..20 {
        ask(&socket, &["port", "add", "p2"]).unwrap_or_else(|e| panic!("round {round}: {e}"));
        ping(&topo.vms[2], &topo.addr(0), 1)
            .unwrap_or_else(|e| panic!("round {round}: C reaches A while it is in: {e}"));
        ask(&socket, &["port", "del", "p2"]).unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    ping(&topo.vms[2], &topo.addr(0), 1).expect_err("C is out");
    let (sent, received) = stream_result(ab);
    assert_eq!(sent, received, "the A-B stream lost nothing ({sent} sent)");

    // The MAC table and the ports, as an operator asks for them.
    let fdb = ask_json(&socket, &["show", "fdb"]);
    let entries = fdb["entries"].as_array().unwrap();
    for (vm, port) in [(0, "p0"), (1, "p1")] {
        let mac = topo.vm_mac(vm).to_string();
        assert!(
            entries
                .iter()
                .any(|e| e["mac"] == mac && e["port"] == port && e["vlan"] == 0),
            "{mac} on {port}: {fdb}"
        );
    }
    assert!(
        ask(&socket, &["show", "fdb", "--port", "p0"])
            .unwrap()
            .contains(" dev p0 "),
        "the table as `bridge fdb show` prints it"
    );
    let ports = ask_json(&socket, &["show", "ports"]);
    assert_eq!(ports["ports"].as_array().unwrap().len(), 2, "{ports}");
    for name in ["p0", "p1"] {
        let p = port(&ports, name);
        assert_eq!(p["state"], "up");
        assert_eq!(p["xdp"], "native", "veth has native XDP: {p}");
        assert_eq!(p["zero_copy"], false);
        assert!(p["counters"]["rx_packets"].as_u64().unwrap() >= 2000, "{p}");
        assert!(p["counters"]["drops"].get("port_down").is_none(), "{p}");
    }
    // Every frame C's sockets held came back.
    assert_frames_back(&socket, (free_before, total));
    let stats = ask_json(&socket, &["show", "stats"]);
    let departed = stats["departed"].as_array().unwrap();
    assert_eq!(departed.len(), 1, "one row for p2's removals: {stats}");
    assert_eq!(
        (&departed[0]["name"], &departed[0]["removals"]),
        (&json!("p2"), &json!(20)),
        "each removal counted: {stats}"
    );
    let log = take_log(&log);
    assert_eq!(log.matches("p2: removed").count(), 20, "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn ports_added_past_the_first_umem_go_into_new_ones_and_never_starve_the_running_ones() {
    // A small first UMEM (this test is about its budget, not its size): 2048 frames
    // with rings of 256, which hold the two ports at start and a few more. Two ports
    // carry a ping stream while idle ports are added one after the other, past what the
    // first UMEM holds and past 32 more (a new UMEM's most); the stream loses nothing,
    // a port added late (vm2's, in another UMEM than vm0's) works.
    let mut topo = Topology::new("budget", &[1, 1, 1]);
    let args = [
        "--ports",
        "p0,p1",
        "--ring-size",
        "256",
        "--umem-frames",
        "2048",
    ];
    let (socket, log) = start(&mut topo, "budget", &args, Stdio::null());
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    let (free_before, total) = frames(&socket);
    let umems = |socket: &Path| {
        ask_json(socket, &["show", "stats"])["workers"][0]["umems"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(umems(&socket), 1);
    let ab = stream(&topo.vms[0], &topo.addr(1), 1500);
    let mut added = Vec::new();
    // 63 ports: the first UMEM holds 24 at most (1536 frames of budget, 64 each), so
    // two more UMEMs, and no third (64 ports).
    for i in 0..60 {
        let (a, b) = (format!("x{i}a"), format!("x{i}b"));
        topo.lab.veth((&topo.sw, &a), (&topo.sw, &b), 1).unwrap();
        ask(&socket, &["port", "add", &a]).unwrap_or_else(|e| panic!("port {i}: {e}"));
        added.push(a);
        let (promised, budget, w) = promises(&socket);
        assert!(promised <= budget, "{w}");
    }
    ask(&socket, &["port", "add", "p2"]).unwrap();
    added.push("p2".into());
    assert_eq!(umems(&socket), 3, "the first UMEM and two more");
    ping(&topo.vms[2], &topo.addr(0), 3).expect("a port added among the last works");
    let (sent, received) = stream_result(ab);
    assert_eq!(sent, received, "the A-B stream lost nothing ({sent} sent)");

    for name in &added {
        ask(&socket, &["port", "del", name]).unwrap();
    }
    assert_eq!(
        umems(&socket),
        1,
        "the UMEMs made for the ports went with them"
    );
    assert_frames_back(&socket, (free_before, total));
    let log = take_log(&log);
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_deleted_port_is_detached_and_comes_back_by_name() {
    let mut topo = Topology::new("gone", &[1, 1, 1]);
    let (socket, log) = start(&mut topo, "gone", &["--ports", "p0,p1,p2"], Stdio::null());
    ping(&topo.vms[0], &topo.addr(2), 2).unwrap();
    let (_, total) = frames(&socket);

    // C's veth goes while A streams to it.
    let to_c = stream(&topo.vms[0], &topo.addr(2), 300);
    std::thread::sleep(Duration::from_millis(1000));
    topo.sw.ip(&["link", "del", "p2"]).unwrap();
    let (sent, received) = stream_result(to_c);
    assert!(received > 50 && received < sent, "{received} of {sent}");
    let ports = ask_json(&socket, &["show", "ports"]);
    let c = port(&ports, "p2");
    assert_eq!(c["state"], "absent", "{c}");
    // Drops the switching decision makes count on the port the frame came in by.
    let a = port(&ports, "p0");
    let dropped = a["counters"]["drops"]["port_down"].as_u64().unwrap_or(0);
    assert!(
        dropped > 10,
        "frames for C's MAC counted as dropped, not sent: {ports}"
    );
    assert!(
        port(&ports, "p1")["counters"]["tx_packets"]
            .as_u64()
            .unwrap()
            < 50,
        "not flooded to B: {ports}"
    );
    assert_eq!(
        frames(&socket).1,
        total,
        "every frame C's socket held came back"
    );
    ping(&topo.vms[0], &topo.addr(1), 2).expect("the others are undisturbed");

    // C comes back with the same name: attached again with no command.
    topo.lab
        .veth((&topo.vms[2], "eth0"), (&topo.sw, "p2"), 1)
        .unwrap();
    topo.vms[2]
        .ip(&["addr", "add", "198.18.0.3/24", "dev", "eth0"])
        .unwrap();
    let back = Instant::now();
    while ping(&topo.vms[2], &topo.addr(0), 1).is_err() {
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "C not reached 2 s after it came back"
        );
    }
    assert_eq!(
        port(&ask_json(&socket, &["show", "ports"]), "p2")["state"],
        "up"
    );
    let log = take_log(&log);
    assert_eq!(log.matches("p2 is gone").count(), 1, "logged once: {log}");
    assert!(log.contains("p2: back: attached again"), "{log}");
}

/// A veb with p0, p1 in VLAN 10 and p2 in VLAN 20, plus what `more` adds.
fn vlan_config(path: &Path, more: &str) {
    std::fs::write(
        path,
        format!(
            "mode = \"veb\"\n\
             [[port]]\nname = \"p0\"\nvlan = 10\n\
             [[port]]\nname = \"p1\"\nvlan = 10\n{more}"
        ),
    )
    .unwrap();
}

#[test]
fn reload_and_signals_change_a_running_switch() {
    let mut topo = Topology::new("reld", &[1, 1, 1, 1]);
    let config = std::env::temp_dir().join(format!("hp-reld-{}.toml", std::process::id()));
    vlan_config(&config, "[[port]]\nname = \"p2\"\nvlan = 20\n");
    let (socket, log) = start(
        &mut topo,
        "reld",
        &["--config", config.to_str().unwrap()],
        Stdio::piped(),
    );
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    let ab = stream(&topo.vms[0], &topo.addr(1), 1500);

    // `hairpin reload`: p2 moves to VLAN 30 and p3 joins it.
    vlan_config(
        &config,
        "[[port]]\nname = \"p2\"\nvlan = 30\n[[port]]\nname = \"p3\"\nvlan = 30\n",
    );
    let said = ask(&socket, &["reload"]).unwrap();
    assert!(
        said.contains("p2 changed") && said.contains("p3 added"),
        "{said}"
    );
    ping(&topo.vms[2], &topo.addr(3), 2).expect("p2 and p3 share VLAN 30");
    ping(&topo.vms[2], &topo.addr(0), 1).expect_err("VLAN 30 is not VLAN 10");

    // SIGHUP: p3 goes again.
    vlan_config(&config, "[[port]]\nname = \"p2\"\nvlan = 30\n");
    let process = topo.lab.last_process().unwrap();
    process.signal(libc::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ask_json(&socket, &["show", "ports"])["ports"]
        .as_array()
        .unwrap()
        .len()
        != 3
    {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    ping(&topo.vms[2], &topo.addr(3), 1).expect_err("p3 is gone");

    // SIGUSR1 prints the counters; once stdout's reader is gone (`| head -1`), more
    // printing finds a closed pipe and hairpin goes on forwarding.
    let process = topo.lab.last_process().unwrap();
    let stdout = process.child().stdout.take().unwrap();
    process.signal(libc::SIGUSR1).unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.starts_with("port "), "the counters' header: {first}");
    // (The reader is dropped here: the pipe is closed.)
    for _ in 0..3 {
        topo.lab
            .last_process()
            .unwrap()
            .signal(libc::SIGUSR1)
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let (sent, received) = stream_result(ab);
    assert_eq!(
        sent, received,
        "no loss on the untouched ports ({sent} sent)"
    );
    ping(&topo.vms[1], &topo.addr(0), 2).expect("still forwarding");
    assert!(
        matches!(
            topo.lab.last_process().unwrap().child().try_wait(),
            Ok(None)
        ),
        "still running"
    );
    let log = take_log(&log);
    assert!(log.contains("SIGHUP: reloaded: p3 removed"), "{log}");
    std::fs::remove_file(&config).unwrap();
}

/// Sends one raw line to the control socket and returns the answer.
fn raw(socket: &Path, line: &str) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.write_all(line.as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    answer
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let mut topo = Topology::new("breq", &[1, 1]);
    let (socket, log) = start(&mut topo, "breq", &["--ports", "p0,p1"], Stdio::null());
    let _ = take_log(&log);
    let before = ask_json(&socket, &["show", "ports"]);
    let refused = |args: &[&str], says: &str| {
        let err = ask(&socket, args).expect_err(&format!("{args:?} refused"));
        assert!(err.contains(says), "{args:?}: {err}");
    };
    refused(
        &["port", "del", "nosuch"],
        "nosuch is not a port of this bridge",
    );
    refused(&["port", "add", "p1"], "p1 is already a port");
    refused(
        &["port", "add", "nosuch"],
        "interface nosuch: no such device",
    );
    refused(
        &["port", "add", "p9", "--vlan", "5000"],
        "VLAN 5000 is outside 1-4094",
    );
    refused(
        &["port", "add", "p9", "--trunk", "10,x"],
        "is not a VLAN number",
    );
    refused(
        &["port", "add", "p9", "--allow", "01:00:5e:00:00:01"],
        "not a station's MAC",
    );
    refused(
        &["fdb", "add", "nosuch", "02:00:00:00:00:01"],
        "nosuch is not a port",
    );
    refused(
        &["fdb", "add", "p0", "ff:ff:ff:ff:ff:ff"],
        "not a station's MAC",
    );
    refused(
        &["fdb", "add", "p0", "02:00:00:00:00:01", "--vlan", "10"],
        "not VLAN-aware",
    );
    refused(&["fdb", "del", "02:00:00:00:00:77"], "not in the MAC table");
    refused(&["show", "fdb", "--vlan", "4095"], "outside 1-4094");
    refused(&["reload"], "started without --config");
    assert!(raw(&socket, "not json\n").contains("malformed request"));
    assert!(raw(&socket, "{\"version\":99,\"request\":\"show_ports\"}\n").contains("version 99"));
    assert!(raw(&socket, "{\"version\":1,\"request\":\"port_add\"}\n").contains("missing field"));

    // A second instance on the same socket is refused, and takes nothing.
    let second = topo
        .sw
        .command(HAIRPIN)
        .args(["run", "--ports", "p0,p1", "--socket"])
        .arg(&*socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        err.contains("another hairpin is serving this control socket"),
        "{err}"
    );

    // Values that used to be accepted silently, or to abort.
    for (args, says) in [
        (
            &["--fdb-size", "4294967295"][..],
            "MAC table size 4294967295: give 1 to 16777216",
        ),
        (&["--fdb-size", "0"], "MAC table size 0"),
        (&["--fdb-age", "0"], "MAC table age 0"),
        (
            &[
                "--static-mac",
                "p0=02:00:00:00:00:01",
                "--static-mac",
                "p1=02:00:00:00:00:01",
            ],
            "is given for p0 and p1",
        ),
    ] {
        let other = socket_path("breq2");
        let out = topo
            .sw
            .command(HAIRPIN)
            .args(["run", "--ports", "p0,p1", "--socket"])
            .arg(&other)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
        assert!(!other.exists(), "{args:?} left its socket");
    }

    // Nothing changed.
    let after = ask_json(&socket, &["show", "ports"]);
    let settings = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].clone(), p["state"].clone(), p["vlans"].clone()))
            .collect()
    };
    assert_eq!(settings(&before), settings(&after));
    assert!(
        ask_json(&socket, &["show", "fdb"])["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["static"] == false)
    );
    ping(&topo.vms[0], &topo.addr(1), 2).expect("still forwarding");
}

#[test]
fn a_held_port_is_named_and_a_port_without_carrier_is_sent_nothing() {
    let mut topo = Topology::new("carr", &[1, 1]);
    // Another XDP program holds p0: hairpin says so, with the program's id.
    let mut watch = topo.sw.command(HAIRPIN);
    watch
        .args(["watch", "--ports", "p0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    topo.lab.spawn(watch).unwrap();
    assert!(topo.sw.wait_for_xdp(&["p0"], Duration::from_secs(20)));
    let other = socket_path("carr2");
    let out = topo
        .sw
        .command(HAIRPIN)
        .args(["run", "--ports", "p0,p1", "--socket"])
        .arg(&other)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let id = err
        .split("another XDP program (id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no program id named: {err}"));
    assert!(id.parse::<u32>().is_ok(), "{err}");
    assert!(!topo.sw.has_xdp("p1"), "nothing left attached: {err}");
    topo.lab
        .last_process()
        .unwrap()
        .signal(libc::SIGTERM)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while topo.sw.has_xdp("p0") {
        assert!(Instant::now() < deadline, "watch did not detach");
        std::thread::sleep(Duration::from_millis(20));
    }

    // B's side goes down: p1 has no carrier; frames for B are dropped at once and
    // counted, nothing waits on p1's ring; then the carrier is back.
    let (socket, log) = start(&mut topo, "carr", &["--ports", "p0,p1"], Stdio::null());
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    topo.vms[1].ip(&["link", "set", "eth0", "down"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while port(&ask_json(&socket, &["show", "ports"]), "p1")["state"] != "down" {
        assert!(Instant::now() < deadline, "p1 not seen down");
        std::thread::sleep(Duration::from_millis(20));
    }
    ping(&topo.vms[0], &topo.addr(1), 3).expect_err("B is down");
    let ports = ask_json(&socket, &["show", "ports"]);
    assert!(
        port(&ports, "p0")["counters"]["drops"]["port_down"]
            .as_u64()
            .unwrap_or(0)
            >= 3,
        "{ports}"
    );
    let tx_down = port(&ports, "p1")["counters"]["tx_packets"]
        .as_u64()
        .unwrap();
    topo.vms[1].ip(&["link", "set", "eth0", "up"]).unwrap();
    let back = Instant::now();
    while ping(&topo.vms[0], &topo.addr(1), 1).is_err() {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "B not reached again"
        );
    }
    let ports = ask_json(&socket, &["show", "ports"]);
    assert_eq!(port(&ports, "p1")["state"], "up");
    // What was sent while it was down did not go out late: only the new echoes (and
    // the ARP around them) left by p1.
    let late = port(&ports, "p1")["counters"]["tx_packets"]
        .as_u64()
        .unwrap()
        - tx_down;
    assert!(
        late < 10,
        "{late} frames left p1 after the carrier came back"
    );
    let log = take_log(&log);
    assert!(log.contains("p1: no carrier"), "{log}");
    assert!(log.contains("p1: carrier back"), "{log}");
}
