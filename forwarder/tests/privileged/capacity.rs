//! A full bridge: 1024 ports at start with the defaults, and a thousand added and
//! removed while a stream crosses the bridge, some of them reaching each other through
//! port numbers past 255 and UMEMs other than their neighbours' (a worker's sockets
//! share a UMEM 32 at most, `datapath::group`), then one port past the 1024 refused.
use std::{
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use hairpin::netlab::Netns;
use serde_json::Value;

use crate::{
    Topology,
    faults::{hairpin_pid, rss_kib},
    observe::{METRICS, get},
    ping,
    runtime::{
        ask, ask_json, assert_frames_back, frames, port, promises, start, start_within, stream,
        stream_result, take_log,
    },
};

/// hairpin's resident memory (KiB).
fn rss_kb(topo: &mut Topology) -> u64 {
    rss_kib(hairpin_pid(topo))
}

/// A ping stream from `ns` to `addr` for as long as it runs, in rounds of 2 s that
/// each end with their last echo answered or lost: nothing is cut short when it stops.
struct Stream {
    stop: Arc<AtomicBool>,
    rounds: thread::JoinHandle<(u32, u32)>,
}

impl Stream {
    fn start(ns: &Netns, addr: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, addr, flag) = (ns.clone(), addr.to_owned(), Arc::clone(&stop));
        let rounds = thread::spawn(move || {
            let (mut sent, mut received) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                let (s, r) = stream_result(stream(&ns, &addr, 200));
                sent += s;
                received += r;
            }
            (sent, received)
        });
        Self { stop, rounds }
    }

    /// Stops after the current round: (sent, received).
    fn finish(self) -> (u32, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.rounds.join().unwrap()
    }
}

fn sent(ports: &Value, name: &str) -> u64 {
    port(ports, name)["counters"]["tx_packets"]
        .as_u64()
        .unwrap_or(0)
}

/// The UMEMs of every worker.
fn umems(socket: &std::path::Path) -> u64 {
    ask_json(socket, &["show", "stats"])["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["umems"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_full_bridge_of_1024_ports_at_start_with_defaults_carries_a_flood_to_all() {
    // Every option at its default, from a config file: vm0 on p0, and 1023 more veth
    // pairs whose far ends stay in the switch namespace.
    const PORTS: usize = 1024;
    let mut topo = Topology::new("full", &[1]);
    let pairs: Vec<(String, String)> = (1..PORTS)
        .map(|i| (format!("y{i}a"), format!("y{i}b")))
        .collect();
    topo.lab.veth_pairs(&topo.sw, &pairs).unwrap();
    let mut config = String::from("mode = \"veb\"\n[[port]]\nname = \"p0\"\n");
    for (a, _) in &pairs {
        config += &format!("[[port]]\nname = \"{a}\"\n");
    }
    let file = std::env::temp_dir().join(format!("{}-full.toml", topo.sw.name()));
    std::fs::write(&file, config).unwrap();
    let file_arg = file.display().to_string();
    let began = Instant::now();
    let (socket, log) = start_within(
        &mut topo,
        "full",
        &["--config", &file_arg, "--metrics", METRICS],
        Stdio::null(),
        Duration::from_secs(120),
    );
    let started = began.elapsed();
    let _ = std::fs::remove_file(&file);
    let asked = Instant::now();
    let before = ask_json(&socket, &["show", "ports"]);
    let shown = asked.elapsed();
    assert_eq!(before["ports"].as_array().unwrap().len(), PORTS);

    // Broadcasts from vm0 (pings to its subnet's broadcast address, which nobody
    // answers) reach every other port.
    let _ = topo.vms[0].run(
        "ping",
        &["-b", "-c", "3", "-i", "0.2", "-W", "1", "198.18.0.255"],
    );
    let after = ask_json(&socket, &["show", "ports"]);
    for (a, _) in &pairs {
        assert!(
            sent(&after, a) >= sent(&before, a) + 3,
            "{a} was sent the flood: {}",
            port(&after, a)
        );
    }
    let scraping = Instant::now();
    let (status, body) = get(&topo.sw, "/metrics");
    let scraped = scraping.elapsed();
    assert!(status.contains("200"), "{status}");
    let last = &pairs.last().unwrap().0;
    assert!(
        body.lines()
            .any(|l| l.starts_with("hairpin_port_tx_packets") && l.contains(last.as_str())),
        "every port has its samples"
    );
    let (promised, budget, w) = promises(&socket);
    assert!(
        promised <= budget,
        "every port fits the default budget: {w}"
    );
    // A UMEM serves 32 ports at most: the first, and one for each 32 more.
    let umems = umems(&socket);
    assert!(umems >= (PORTS / 32) as u64, "{umems} UMEMs: {w}");
    // Another port is refused, and says why.
    let refused = ask(&socket, &["port", "add", "y1b"]).unwrap_err();
    assert!(refused.contains("1024 ports already"), "{refused}");
    eprintln!(
        "{PORTS} ports: answering {started:.1?} after start, show ports {shown:.1?}, \
         metrics {scraped:.1?} ({} kB), RSS {} kB, {umems} UMEMs, promised {promised} of \
         {budget} frames",
        body.len() / 1024,
        rss_kb(&mut topo),
    );
    // The devices' XDP features are asked every second, in one dump: at least once.
    std::thread::sleep(Duration::from_millis(1100));
    let log = take_log(&log);
    assert!(!log.contains("ERROR") && !log.contains("panicked"), "{log}");
    assert!(!log.contains("XDP features"), "{log}");
}

#[test]
fn a_thousand_ports_added_and_removed_at_run_time_never_disturb_a_stream() {
    // Every option at its default: p0 and p1 at start, a stream between them, then a
    // thousand ports added one by one, as on a node whose pods come and go.
    const ADDED: usize = 1000;
    let mut topo = Topology::new("many", &[1, 1, 1, 1]);
    let (socket, log) = start(&mut topo, "many", &["--ports", "p0,p1"], Stdio::null());
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();
    let frames_before = frames(&socket);
    let umems_before = umems(&socket);
    let rss_before = rss_kb(&mut topo);

    // Idle veth pairs, and vm2's and vm3's ports among the last: their port numbers
    // are past 255, which a byte cannot name, and their sockets on UMEMs other than
    // p0's. Enough pairs for the bridge's every port, and one more.
    let pairs: Vec<(String, String)> = (0..1024 - 2 - 2 + 1)
        .map(|i| (format!("z{i}a"), format!("z{i}b")))
        .collect();
    topo.lab.veth_pairs(&topo.sw, &pairs).unwrap();
    let mut names: Vec<String> = pairs.iter().map(|(a, _)| a.clone()).collect();
    names.insert(700, "p2".into());
    names.insert(900, "p3".into());
    let (added_names, rest) = names.split_at(ADDED);

    let ab = Stream::start(&topo.vms[0], &topo.addr(1));
    let adding = Instant::now();
    for (k, name) in added_names.iter().enumerate() {
        ask(&socket, &["port", "add", name]).unwrap_or_else(|e| panic!("port {k}: {e}"));
    }
    let added = adding.elapsed();
    let ports = ask_json(&socket, &["show", "ports"]);
    assert_eq!(ports["ports"].as_array().unwrap().len(), ADDED + 2);
    for name in ["p2", "p3"] {
        let slot = port(&ports, name)["slot"].as_u64().unwrap();
        assert!(slot > 255, "{name} is port {slot}");
    }
    // Ports added among a thousand reach each other and the first ones, through the
    // MAC table (learned on both paths) and floods, across UMEMs.
    ping(&topo.vms[2], &topo.addr(3), 3).unwrap();
    ping(&topo.vms[3], &topo.addr(0), 3).unwrap();
    let rss_full = rss_kb(&mut topo);
    let umems_full = umems(&socket);
    assert!(umems_full > umems_before, "{umems_full} UMEMs");

    // The bridge's last ports, then one past them: refused, saying why.
    let (filling, past) = rest.split_at(rest.len() - 1);
    for name in filling {
        ask(&socket, &["port", "add", name]).unwrap();
    }
    let refused = ask(&socket, &["port", "add", &past[0]]).unwrap_err();
    assert!(refused.contains("1024 ports already"), "{refused}");

    // Removed in batches of 256, the first ports checked between them.
    let removing = Instant::now();
    for batch in names[..names.len() - 1].chunks(256) {
        for name in batch {
            ask(&socket, &["port", "del", name]).unwrap();
        }
        ping(&topo.vms[0], &topo.addr(1), 1).unwrap();
    }
    let removed = removing.elapsed();
    let (sent, received) = ab.finish();
    assert!(sent > 100, "the stream ran: {sent}");
    assert_eq!(sent, received, "the A-B stream lost nothing ({sent} sent)");
    assert_eq!(
        ask_json(&socket, &["show", "ports"])["ports"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Every UMEM made for the ports is gone, and every frame of the first is back.
    assert_eq!(umems(&socket), umems_before);
    assert_frames_back(&socket, frames_before);
    eprintln!(
        "{ADDED} ports added in {added:.1?}, all 1022 removed in {removed:.1?}; RSS \
         {rss_before} kB with 2 ports, {rss_full} kB with {}: {} kB a port; {umems_full} \
         UMEMs",
        ADDED + 2,
        (rss_full - rss_before) / ADDED as u64,
    );
    let log = take_log(&log);
    assert!(!log.contains("panicked"), "{log}");
}
