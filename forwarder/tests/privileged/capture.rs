//! `hairpin capture` against a running hairpin, with the host's defaults: a counted
//! stream of 1000 pings, carried once by the XDP program's fast path and once by the
//! workers, captured on the ingress and the egress port by several captures at once;
//! tcpdump reads the files and counts exactly the frames sent, a filter keeps only
//! ICMP, the frames the fast path carried say so, and frames hairpin dropped carry
//! their reason.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
};

use pcap_file::pcapng::{Block, PcapNgReader, blocks::enhanced_packet::EnhancedPacketOption};

use crate::{
    Topology, ping,
    runtime::{HAIRPIN, ask_json, port, start, take_log},
    send_raw,
};

/// Echoes in the counted stream.
const PINGS: u32 = 1000;

/// Frames with a multicast source sent from vm0: hairpin drops them (`bad_src_mac`).
const BAD: usize = 5;

/// A `hairpin capture` running in the background, writing `file`.
pub(crate) struct Running {
    child: Child,
    stderr: BufReader<ChildStderr>,
    file: PathBuf,
}

impl Running {
    /// Starts `hairpin capture ARGS -w FILE` and waits for its `capturing` line: from
    /// then on no frame is missed.
    pub(crate) fn start(socket: &Path, file: PathBuf, args: &[&str]) -> Self {
        let mut child = Command::new(HAIRPIN)
            .arg("capture")
            .args(args)
            .arg("-w")
            .arg(&file)
            .arg("--socket")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("capturing on"),
            "hairpin capture {args:?}: {line}"
        );
        Self {
            child,
            stderr,
            file,
        }
    }

    /// Stops it as Ctrl-C does; its summary line.
    pub(crate) fn stop(mut self) -> (PathBuf, String) {
        // SAFETY: signals a child this test spawned and has not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let mut summary = String::new();
        self.stderr.read_to_string(&mut summary).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "hairpin capture: {status}: {summary}");
        (self.file, summary)
    }
}

/// tcpdump's lines for the frames of `file` that pass `filter`.
fn tcpdump(file: &Path, filter: &[&str]) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(file)
        .args(filter)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "tcpdump -r {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn count(lines: &[String], what: &str) -> usize {
    lines.iter().filter(|l| l.contains(what)).count()
}

/// Each frame's comments in a pcapng file, with its first bytes.
pub(crate) fn comments(file: &Path) -> Vec<(Vec<u8>, Vec<String>)> {
    let mut reader = PcapNgReader::new(std::fs::File::open(file).unwrap()).unwrap();
    let mut frames = Vec::new();
    while let Some(block) = reader.next_block() {
        if let Block::EnhancedPacket(p) = block.unwrap() {
            let comments = p
                .options
                .iter()
                .filter_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                })
                .collect();
            frames.push((p.data.to_vec(), comments));
        }
    }
    frames
}

/// A frame from a multicast source MAC, which no bridge forwards.
fn bad_frame(dst: [u8; 6]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend([0x03, 0, 0, 0, 0, 0x42, 0x88, 0xb5]);
    f.extend([0u8; 46]);
    f
}

/// Runs the counted stream through a hairpin started with `args` and checks every
/// capture; `fast`: the fast path carries the echoes.
fn counted_stream(tag: &str, args: &[&str], fast: bool) {
    let mut topo = Topology::new(tag, &[1, 1]);
    if fast {
        topo.fast_path_ready();
    }
    let mut run_args = vec!["--ports", "p0,p1"];
    run_args.extend(args);
    let (socket, log) = start(&mut topo, tag, &run_args, Stdio::null());
    // The stations learned (and each other's addresses), so the echoes are unicast.
    ping(&topo.vms[0], &topo.addr(1), 3).unwrap();
    let fast_tx = |name: &str| {
        port(&ask_json(&socket, &["show", "ports"]), name)["counters"]["fast_tx_packets"]
            .as_u64()
            .unwrap_or(0)
    };
    let fast_before = fast_tx("p1");

    let file = |what: &str| {
        std::env::temp_dir().join(format!("hp-{tag}-{what}-{}.cap", std::process::id()))
    };
    // Several at once: the ingress port's received echoes, the egress port's sent ones,
    // everything on the ingress port, and ICMP only in both directions as classic pcap.
    let captures = [
        Running::start(&socket, file("in"), &["p0", "--in", "icmp"]),
        Running::start(&socket, file("out"), &["p1", "--out", "icmp"]),
        Running::start(&socket, file("all"), &["p0"]),
        Running::start(&socket, file("icmp"), &["p0", "--pcap", "icmp"]),
    ];
    topo.vms[0]
        .run(
            "ping",
            &[
                "-c",
                &PINGS.to_string(),
                "-i",
                "0.002",
                "-W",
                "2",
                "-q",
                &topo.addr(1),
            ],
        )
        .unwrap();
    let mac1 = topo.vm_mac(1).0;
    send_raw(&topo.vms[0], "eth0", &vec![bad_frame(mac1); BAD]);
    // The dropped frames are decided before the stop below reaches hairpin.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let [
        (in_file, in_sum),
        (out_file, out_sum),
        (all_file, all_sum),
        (icmp_file, icmp_sum),
    ] = captures.map(Running::stop);
    let log = take_log(&log);

    for summary in [&in_sum, &out_sum, &all_sum, &icmp_sum] {
        assert!(
            summary.contains("lost: 0 in hairpin's capture rings, 0 to a slow reader"),
            "{summary}\n{log}"
        );
    }
    let n = PINGS as usize;
    // p0 received exactly the requests; p1 sent exactly the requests.
    let lines = tcpdump(&in_file, &[]);
    assert_eq!(
        (
            count(&lines, "ICMP echo request"),
            count(&lines, "ICMP echo reply")
        ),
        (n, 0),
        "p0 --in: {in_sum}"
    );
    let lines = tcpdump(&out_file, &[]);
    assert_eq!(
        (
            count(&lines, "ICMP echo request"),
            count(&lines, "ICMP echo reply")
        ),
        (n, 0),
        "p1 --out: {out_sum}"
    );
    // Both directions of p0, unfiltered: the requests in, the replies out.
    let lines = tcpdump(&all_file, &["icmp"]);
    assert_eq!(
        (
            count(&lines, "ICMP echo request"),
            count(&lines, "ICMP echo reply")
        ),
        (n, n),
        "p0: {all_sum}"
    );
    // The filter kept ICMP only, and all of it.
    let lines = tcpdump(&icmp_file, &[]);
    assert_eq!(lines.len(), 2 * n, "p0 icmp: {icmp_sum}");
    assert!(tcpdump(&icmp_file, &["not", "icmp"]).is_empty());

    // Which path carried the echoes, as the frames say and the counters agree.
    let frames = comments(&all_file);
    let echoes: Vec<_> = frames
        .iter()
        .filter(|(data, _)| data.len() > 34 && data[12..14] == [0x08, 0x00] && data[23] == 1)
        .collect();
    assert_eq!(echoes.len(), 2 * n);
    let by_fast_path = echoes
        .iter()
        .filter(|(_, c)| c.iter().any(|c| c == "fast path"))
        .count();
    let fast_sent = fast_tx("p1") - fast_before;
    if fast {
        assert_eq!(
            by_fast_path,
            2 * n,
            "the fast path carried the echoes (p1 sent {fast_sent} by the fast path)"
        );
        assert!(
            fast_sent >= u64::from(PINGS),
            "fast_tx_packets of p1: {fast_sent}"
        );
    } else {
        assert_eq!(
            (by_fast_path, fast_sent),
            (0, 0),
            "the workers carried the echoes"
        );
    }
    // The frames hairpin dropped, with their reason.
    let dropped = frames
        .iter()
        .filter(|(_, c)| c.iter().any(|c| c == "dropped: bad_src_mac"))
        .count();
    assert_eq!(dropped, BAD, "{all_sum}");
    for f in [in_file, out_file, all_file, icmp_file] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn capture_counts_every_frame_the_fast_path_carries() {
    counted_stream("capf", &[], true);
}

#[test]
fn capture_counts_every_frame_the_workers_carry() {
    counted_stream("capw", &["--fast-path", "off"], false);
}
