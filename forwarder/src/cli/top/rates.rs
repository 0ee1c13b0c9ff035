//! The arithmetic and layout of one frame of `hairpin top`: two `show stats` answers
//! subtract into rates ([`frame`]), with numbers written for people.
use std::{collections::BTreeMap, time::Duration};

use hairpin::control::protocol::{Latency, PortCounters, PortInfo, Stats, WorkerStats};

/// One frame of `hairpin top`: the rates between `earlier` and `now`, two `show stats`
/// answers taken `interval` apart.
///
/// ```text
/// hairpin 0.1.0, up 01:02:05, rates over 5.00 s
///
/// port            state    rx pkt/s     rx bit/s   tx pkt/s     tx bit/s  drops/s
/// vf1             up      1.00 Mpps  12.0 Gbit/s   500 kpps  6.00 Gbit/s  tx_ring_full=400 vlan=2.00
/// vf2             up          0 pps      0 bit/s      0 pps      0 bit/s  -
/// gone            absent      0 pps      0 bit/s      0 pps      0 bit/s  -
///
/// worker core    busy  ns/frame cycles/frame   rx pkt/s   tx pkt/s   free UMEM
/// q0        2  50.0 %       500         1500  1.00 Mpps  1.00 Mpps   4000/4096
///
/// latency, RX read to TX submit, 1000 busy turns: p50 2.0 us, p99 50.0 us, p99.9 50.0 us, max 50.0 us
/// mac table: 12/4096 entries; in the interval 0 full-bucket misses, 1 moves
/// ```
///
/// A port, worker or counter that started over between the two (it is new, or was
/// removed and added again, or hairpin restarted) counts from zero.
pub(crate) fn frame(earlier: &Stats, now: &Stats, interval: Duration) -> String {
    let fresh = Stats::default();
    let restarted = !same_run(earlier, now);
    let earlier = if restarted { &fresh } else { earlier };
    // A zero interval would make every rate infinite; no caller passes one.
    let secs = interval.as_secs_f64().max(1e-6);
    let mut out = header(now, secs, restarted);
    out += "\n";
    out += &port_table(earlier, now, secs);
    out += "\n";
    out += &worker_table(earlier, now, secs);
    out += "\n";
    out += &latency_line(&earlier.latency_ns, &now.latency_ns);
    out += &fdb_line(earlier, now);
    out
}

/// Both samples come from the same hairpin process, so its counters only grew.
pub(super) fn same_run(earlier: &Stats, now: &Stats) -> bool {
    (now.start_time_s - earlier.start_time_s).abs() < 1e-3 && now.uptime_s >= earlier.uptime_s
}

// --- the frame's parts ---

/// `hairpin 0.1.0, up 01:02:03, rates over 1.00 s`.
fn header(now: &Stats, secs: f64, restarted: bool) -> String {
    let mut line = format!(
        "hairpin {}, up {}, rates over {secs:.2} s",
        now.version,
        uptime(now.uptime_s)
    );
    if restarted {
        line += " (hairpin restarted: counting from its start)";
    }
    line + "\n"
}

/// One row per port: packets and bits per second each way, the share of received frames
/// the kernel fast path forwarded, drops per second by reason.
fn port_table(earlier: &Stats, now: &Stats, secs: f64) -> String {
    let mut out = format!(
        "{:<15} {:<6} {:>10} {:>12} {:>10} {:>12} {:>5}  drops/s\n",
        "port", "state", "rx pkt/s", "rx bit/s", "tx pkt/s", "tx bit/s", "fast"
    );
    for port in &now.ports {
        let d = port_delta(baseline(earlier, now, port), &port.counters);
        let drops: Vec<String> = d
            .drops
            .iter()
            .filter(|&(_, &n)| n > 0)
            .map(|(reason, &n)| format!("{reason}={}", si(n as f64 / secs, "")))
            .collect();
        let fast = if d.fast_rx_packets == 0 {
            "-".to_owned()
        } else {
            format!(
                "{:.0}%",
                100.0 * d.fast_rx_packets as f64 / d.rx_packets.max(1) as f64
            )
        };
        out += &format!(
            "{:<15} {:<6} {:>10} {:>12} {:>10} {:>12} {:>5}  {}\n",
            port.name,
            port.state,
            si(d.rx_packets as f64 / secs, "pps"),
            si(d.rx_bytes as f64 * 8.0 / secs, "bit/s"),
            si(d.tx_packets as f64 / secs, "pps"),
            si(d.tx_bytes as f64 * 8.0 / secs, "bit/s"),
            fast,
            if drops.is_empty() {
                "-".to_owned()
            } else {
                drops.join(" ")
            }
        );
        out += &limits_line(port).unwrap_or_default();
    }
    if now.ports.is_empty() {
        out += "(no ports)\n";
    }
    out
}

/// Under a port's row, what limits its traffic, if anything does: its policing, storm
/// control and IP source guard (their drops are in the row: `policed`, `storm`,
/// `ip_spoofed`).
///
/// ```text
///   limits: police 100 Mbit/s burst 6.25 MB, storm_broadcast 1.00 kpps burst 100; allow_ip 10.0.0.5/32
/// ```
fn limits_line(port: &PortInfo) -> Option<String> {
    let parts: Vec<String> = port
        .limits
        .iter()
        .map(|(setting, limit)| match setting.as_str() {
            "police_rate" => format!(
                "police {} burst {}",
                si(limit.rate as f64, "bit/s"),
                si(limit.burst as f64, "B")
            ),
            other => format!(
                "{} {} burst {}",
                other.replace("police_pps", "police"),
                si(limit.rate as f64, "pps"),
                limit.burst
            ),
        })
        .collect();
    let mut line = parts.join(", ");
    if !port.allowed_ips.is_empty() {
        if !line.is_empty() {
            line += "; ";
        }
        line += &format!("allow_ip {}", port.allowed_ips.join(" "));
    }
    (!line.is_empty()).then(|| format!("  limits: {line}\n"))
}

/// What a port counted in the interval.
#[derive(Debug, Default)]
struct PortDelta<'a> {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    /// Of `rx_packets`, those the kernel fast path forwarded.
    fast_rx_packets: u64,
    drops: BTreeMap<&'a str, u64>,
}

/// The earlier counters of `port`, or `None` when they started over since: the port is
/// new, or moved to another slot, or was detached and attached again (counters restart
/// at attach; a detach is recorded in `departed`). A port that went absent keeps its
/// counters frozen, so its departure is no restart.
fn baseline<'a>(earlier: &'a Stats, now: &Stats, port: &PortInfo) -> Option<&'a PortCounters> {
    let before = earlier.ports.iter().find(|p| p.name == port.name)?;
    let departures = |s: &Stats| {
        s.departed
            .iter()
            .find(|d| d.name == port.name)
            .map_or(0, |d| d.removals)
    };
    let reattached = port.state != "absent" && departures(now) != departures(earlier);
    (before.slot == port.slot && !reattached).then_some(&before.counters)
}

/// `now` minus `before`; all of `now` when there is no `before` or a counter of it went
/// backwards (the port's counters restarted).
fn port_delta<'a>(before: Option<&PortCounters>, now: &'a PortCounters) -> PortDelta<'a> {
    let zero = PortCounters::default();
    let before = before.filter(|b| !went_back(b, now)).unwrap_or(&zero);
    PortDelta {
        rx_packets: now.rx_packets - before.rx_packets,
        rx_bytes: now.rx_bytes - before.rx_bytes,
        tx_packets: now.tx_packets - before.tx_packets,
        tx_bytes: now.tx_bytes - before.tx_bytes,
        fast_rx_packets: now.fast_rx_packets - before.fast_rx_packets,
        drops: now
            .drops
            .iter()
            .map(|(reason, &n)| {
                let was = before.drops.get(reason).copied().unwrap_or(0);
                (reason.as_str(), n - was)
            })
            .collect(),
    }
}

/// Some counter of `now` is below the same one in `before`.
fn went_back(before: &PortCounters, now: &PortCounters) -> bool {
    now.rx_packets < before.rx_packets
        || now.rx_bytes < before.rx_bytes
        || now.tx_packets < before.tx_packets
        || now.tx_bytes < before.tx_bytes
        || now.fast_rx_packets < before.fast_rx_packets
        || before
            .drops
            .iter()
            .any(|(reason, &n)| now.drops.get(reason).copied().unwrap_or(0) < n)
}

/// One row per worker: busy share, time and cycles per received frame, frame rates.
fn worker_table(earlier: &Stats, now: &Stats, secs: f64) -> String {
    let mut out = format!(
        "{:<6} {:>4} {:>7} {:>9} {:>12} {:>10} {:>10} {:>11}\n",
        "worker", "core", "busy", "ns/frame", "cycles/frame", "rx pkt/s", "tx pkt/s", "free UMEM"
    );
    for w in &now.workers {
        let before = earlier.workers.iter().find(|b| b.queue == w.queue);
        let d = worker_delta(before, w);
        let ns_per_frame = (d.rx_frames > 0).then(|| d.busy_ns as f64 / d.rx_frames as f64);
        let cycles = ns_per_frame
            .zip(now.cpu_hz)
            .map(|(ns, hz)| ns * hz as f64 / 1e9);
        out += &format!(
            "{:<6} {:>4} {:>5.1} % {:>9} {:>12} {:>10} {:>10} {:>11}\n",
            format!("q{}", w.queue),
            w.core,
            d.busy_ns as f64 / 1e9 / secs * 100.0,
            ns_per_frame.map_or_else(|| "-".to_owned(), |ns| format!("{ns:.0}")),
            cycles.map_or_else(|| "-".to_owned(), |c| format!("{c:.0}")),
            si(d.rx_frames as f64 / secs, "pps"),
            si(d.tx_frames as f64 / secs, "pps"),
            format!("{}/{}", w.free_frames, w.total_frames),
        );
    }
    if now.workers.is_empty() {
        out += "(no workers)\n";
    }
    out
}

/// `now` minus `before`; all of `now` when there is no `before` or it counted more
/// (the worker's counters restarted).
fn worker_delta(before: Option<&WorkerStats>, now: &WorkerStats) -> WorkerStats {
    let zero = WorkerStats::default();
    let before = before
        .filter(|b| {
            b.busy_ns <= now.busy_ns && b.rx_frames <= now.rx_frames && b.tx_frames <= now.tx_frames
        })
        .unwrap_or(&zero);
    WorkerStats {
        busy_ns: now.busy_ns - before.busy_ns,
        rx_frames: now.rx_frames - before.rx_frames,
        tx_frames: now.tx_frames - before.tx_frames,
        ..now.clone()
    }
}

/// The percentiles of the turns recorded between the two read-outs.
fn latency_line(earlier: &Latency, now: &Latency) -> String {
    let l = now.since(earlier);
    if l.count == 0 {
        return "latency: no busy turns in the interval\n".to_owned();
    }
    format!(
        "latency, RX read to TX submit, {} busy turns: p50 {}, p99 {}, p99.9 {}, max {}\n",
        l.count,
        nanos(l.p50),
        nanos(l.p99),
        nanos(l.p999),
        nanos(l.max)
    )
}

/// The MAC table's size, and what happened to it in the interval.
fn fdb_line(earlier: &Stats, now: &Stats) -> String {
    format!(
        "mac table: {}/{} entries; in the interval {} full-bucket misses, {} moves\n",
        now.fdb_entries,
        now.fdb_capacity,
        counted(earlier.fdb_full, now.fdb_full),
        counted(earlier.fdb_moves, now.fdb_moves)
    )
}

/// What a counter counted from `before` to `now`; all of `now` if it restarted.
fn counted(before: u64, now: u64) -> u64 {
    now.checked_sub(before).unwrap_or(now)
}

// --- numbers for people ---

/// `value` with an SI prefix and three significant figures: `0 pps`, `4.20 pps`,
/// `812 kpps`, `1.23 Gbit/s`. Zero is exactly `0`; a non-zero value never looks like it.
fn si(value: f64, unit: &str) -> String {
    const PREFIXES: [&str; 5] = ["", "k", "M", "G", "T"];
    if value <= 0.0 {
        return format!("0 {unit}").trim_end().to_owned();
    }
    if value < 0.01 {
        return format!("<0.01 {unit}").trim_end().to_owned();
    }
    let (mut scaled, mut prefix) = (value, 0);
    while scaled >= 999.5 && prefix + 1 < PREFIXES.len() {
        scaled /= 1000.0;
        prefix += 1;
    }
    let decimals = if scaled < 9.995 {
        2
    } else if scaled < 99.95 {
        1
    } else {
        0
    };
    format!("{scaled:.decimals$} {}{unit}", PREFIXES[prefix])
        .trim_end()
        .to_owned()
}

/// A latency: `850 ns`, `12.3 us`, `4.56 ms`, `1.20 s`.
fn nanos(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} us", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

/// `01:02:03`, or `3d 01:02:03`.
fn uptime(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let hms = format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60);
    match s / 86_400 {
        0 => hms,
        days => format!("{days}d {hms}"),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use hairpin::control::protocol::DepartedPort;

    pub(in crate::cli::top) const SECOND: Duration = Duration::from_secs(1);

    fn counters(rx: (u64, u64), tx: (u64, u64), drops: &[(&str, u64)]) -> PortCounters {
        PortCounters {
            rx_packets: rx.0,
            rx_bytes: rx.1,
            tx_packets: tx.0,
            tx_bytes: tx.1,
            drops: drops.iter().map(|&(r, n)| (r.to_owned(), n)).collect(),
            ..PortCounters::default()
        }
    }

    fn port(name: &str, slot: u16, counters: PortCounters) -> PortInfo {
        PortInfo {
            slot,
            ifindex: Some(10 + u32::from(slot)),
            ..PortInfo::example(name, counters)
        }
    }

    fn worker(queue: u32, rx_frames: u64, busy_ns: u64) -> WorkerStats {
        WorkerStats {
            queue,
            core: 2 + queue as usize,
            rx_frames,
            tx_frames: rx_frames,
            busy_ns,
            free_frames: 4000,
            total_frames: 4096,
            promised_frames: 128,
            budget_frames: 3500,
            umems: 1,
            // `sleeps` and any counter added to the table: zero.
            ..WorkerStats::default()
        }
    }

    fn stats(uptime_s: f64, ports: Vec<PortInfo>, workers: Vec<WorkerStats>) -> Stats {
        Stats {
            version: "0.1.0".to_owned(),
            start_time_s: 1_700_000_000.0,
            uptime_s,
            ports,
            workers,
            cpu_hz: Some(3_000_000_000),
            fdb_capacity: 4096,
            ..Stats::default()
        }
    }

    /// The row of `name` in the port table, split into words.
    pub(in crate::cli::top) fn row<'a>(frame: &'a str, name: &str) -> Vec<&'a str> {
        frame
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in\n{frame}"))
            .split_whitespace()
            .collect()
    }

    /// A busy port, an idle one and one whose interface is gone, over one second.
    pub(in crate::cli::top) fn busy_idle_absent() -> (Stats, Stats) {
        let earlier = stats(
            3720.0,
            vec![
                port(
                    "vf1",
                    0,
                    counters((5_000, 7_500_000), (2_000, 3_000_000), &[]),
                ),
                port("vf2", 1, counters((7, 420), (7, 420), &[("vlan", 3)])),
                port("gone", 2, counters((9, 900), (0, 0), &[])),
            ],
            vec![worker(0, 5_000, 1_000_000)],
        );
        let mut now = stats(
            3725.0,
            vec![
                port(
                    "vf1",
                    0,
                    counters(
                        (5_005_000, 7_507_500_000),
                        (2_502_000, 3_753_000_000),
                        &[("tx_ring_full", 2_000), ("vlan", 10)],
                    ),
                ),
                port("vf2", 1, counters((7, 420), (7, 420), &[("vlan", 3)])),
                port("gone", 2, counters((9, 900), (0, 0), &[])),
            ],
            vec![worker(0, 5_005_000, 2_501_000_000)],
        );
        now.ports[2].state = "absent".to_owned();
        // A quarter of vf1's frames in the interval took the kernel fast path.
        now.ports[0].counters.fast_rx_packets = 1_250_000;
        (earlier, now)
    }

    #[test]
    fn a_busy_port_shows_its_rates_and_an_idle_one_zero() {
        let (earlier, now) = busy_idle_absent();
        let f = frame(&earlier, &now, 5 * SECOND);
        // 5 M frames of 1500 B in 5 s: 1 Mpps, 12 Gbit/s; half of that sent.
        assert_eq!(
            row(&f, "vf1")[..11],
            [
                "vf1", "up", "1.00", "Mpps", "12.0", "Gbit/s", "500", "kpps", "6.00", "Gbit/s",
                "25%"
            ],
            "{f}"
        );
        assert_eq!(
            row(&f, "vf2"),
            [
                "vf2", "up", "0", "pps", "0", "bit/s", "0", "pps", "0", "bit/s", "-", "-"
            ],
            "{f}"
        );
        assert_eq!(
            row(&f, "gone"),
            [
                "gone", "absent", "0", "pps", "0", "bit/s", "0", "pps", "0", "bit/s", "-", "-"
            ],
            "{f}"
        );
        assert!(
            f.starts_with("hairpin 0.1.0, up 01:02:05, rates over 5.00 s\n"),
            "{f}"
        );
    }

    #[test]
    fn drops_are_rates_by_reason_and_only_those_that_happened() {
        let (earlier, now) = busy_idle_absent();
        let f = frame(&earlier, &now, 5 * SECOND);
        // Both reasons are new on vf1, so they count from zero: 2000 and 10 in 5 s.
        assert_eq!(
            row(&f, "vf1")[11..],
            ["tx_ring_full=400", "vlan=2.00"],
            "{f}"
        );
        // vf2 has dropped before, but not in the interval.
        assert_eq!(row(&f, "vf2")[11], "-", "{f}");
    }

    #[test]
    fn a_port_s_limits_show_under_its_row() {
        let (earlier, mut now) = busy_idle_absent();
        let limit = |rate, burst| hairpin::control::protocol::LimitInfo { rate, burst };
        now.ports[0].limits = [
            ("police_rate".to_owned(), limit(100_000_000, 6_250_000)),
            ("storm_broadcast".to_owned(), limit(1000, 100)),
        ]
        .into();
        now.ports[0].allowed_ips = vec!["10.0.0.5/32".to_owned(), "fd00::5/128".to_owned()];
        now.ports[1].limits = [("police_pps".to_owned(), limit(5000, 2500))].into();
        let f = frame(&earlier, &now, 5 * SECOND);
        let lines: Vec<&str> = f.lines().collect();
        let under = |name: &str| {
            let at = lines.iter().position(|l| l.starts_with(name)).unwrap();
            lines[at + 1]
        };
        assert_eq!(
            under("vf1"),
            "  limits: police 100 Mbit/s burst 6.25 MB, storm_broadcast 1.00 kpps burst 100; \
             allow_ip 10.0.0.5/32 fd00::5/128",
            "{f}"
        );
        assert_eq!(under("vf2"), "  limits: police 5.00 kpps burst 2500", "{f}");
        assert!(under("gone").is_empty(), "no limits, no line:\n{f}");
    }

    #[test]
    fn workers_show_busy_share_and_cost_per_frame() {
        let (earlier, mut now) = busy_idle_absent();
        let f = frame(&earlier, &now, 5 * SECOND);
        // 2.5 s busy out of 5; 2.5 s over 5 M frames is 500 ns, 1500 cycles at 3 GHz.
        assert_eq!(
            row(&f, "q0"),
            [
                "q0",
                "2",
                "50.0",
                "%",
                "500",
                "1500",
                "1.00",
                "Mpps",
                "1.00",
                "Mpps",
                "4000/4096"
            ],
            "{f}"
        );
        now.cpu_hz = None;
        let f = frame(&earlier, &now, 5 * SECOND);
        assert_eq!(row(&f, "q0")[4..6], ["500", "-"], "{f}");
        // A worker that received nothing has no cost per frame.
        let f = frame(&earlier, &earlier, 5 * SECOND);
        assert_eq!(row(&f, "q0")[1..6], ["2", "0.0", "%", "-", "-"], "{f}");
    }

    #[test]
    fn counters_that_restarted_count_from_zero() {
        let (earlier, mut now) = busy_idle_absent();
        // vf2 was removed and added again: its counters are below the earlier ones.
        now.ports[1].counters = counters((5, 300), (0, 0), &[]);
        // vf3 is new.
        now.ports
            .push(port("vf3", 3, counters((10, 1000), (0, 0), &[])));
        // vf1 was removed and added again, and has since counted more than before.
        now.ports[0].counters = counters((8_000, 12_000_000), (0, 0), &[]);
        now.departed.push(DepartedPort {
            name: "vf1".to_owned(),
            removals: 1,
            counters: counters((6_000, 9_000_000), (0, 0), &[]),
        });
        let f = frame(&earlier, &now, SECOND);
        assert_eq!(
            row(&f, "vf2")[2..6],
            ["5.00", "pps", "2.40", "kbit/s"],
            "{f}"
        );
        assert_eq!(
            row(&f, "vf3")[2..6],
            ["10.0", "pps", "8.00", "kbit/s"],
            "{f}"
        );
        assert_eq!(row(&f, "vf1")[2..4], ["8.00", "kpps"], "{f}");
        // A port that went absent keeps its counters: its departure is no restart.
        let mut gone = now.clone();
        gone.departed = vec![DepartedPort {
            name: "gone".to_owned(),
            removals: 1,
            counters: counters((9, 900), (0, 0), &[]),
        }];
        assert_eq!(row(&frame(&earlier, &gone, SECOND), "gone")[2], "0");
    }

    #[test]
    fn a_restarted_hairpin_counts_from_its_start() {
        let (earlier, mut now) = busy_idle_absent();
        now.start_time_s += 3725.0;
        now.uptime_s = 0.5;
        now.fdb_moves = 3;
        let f = frame(&earlier, &now, SECOND);
        assert!(
            f.lines().next().unwrap().contains("hairpin restarted"),
            "{f}"
        );
        assert_eq!(row(&f, "vf2")[2..4], ["7.00", "pps"], "{f}");
        assert!(
            f.contains("in the interval 0 full-bucket misses, 3 moves"),
            "{f}"
        );
    }

    #[test]
    fn latency_is_the_intervals_own() {
        let (mut earlier, mut now) = busy_idle_absent();
        earlier.latency_ns = Latency {
            count: 10_000,
            buckets: vec![(2_000, 10_000)],
            ..Latency::default()
        };
        // 900 more turns of 2 us and 100 of 50 us: 10 % slow in the interval, under
        // 1 % since the start (whose p99 is 2 us).
        now.latency_ns = Latency {
            count: 11_000,
            buckets: vec![(2_000, 10_900), (50_015, 100)],
            ..Latency::default()
        };
        let f = frame(&earlier, &now, SECOND);
        assert!(
            f.contains("1000 busy turns: p50 2.0 us, p99 50.0 us, p99.9 50.0 us, max 50.0 us"),
            "{f}"
        );
        let f = frame(&now, &now, SECOND);
        assert!(f.contains("latency: no busy turns in the interval"), "{f}");
    }

    #[test]
    fn the_mac_table_shows_size_and_what_happened() {
        let (mut earlier, mut now) = busy_idle_absent();
        (earlier.fdb_full, earlier.fdb_moves) = (4, 10);
        (now.fdb_entries, now.fdb_full, now.fdb_moves) = (12, 4, 13);
        let f = frame(&earlier, &now, SECOND);
        assert!(
            f.contains("mac table: 12/4096 entries; in the interval 0 full-bucket misses, 3 moves"),
            "{f}"
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(si(0.0, "pps"), "0 pps");
        assert_eq!(si(0.001, "pps"), "<0.01 pps");
        assert_eq!(si(4.2, "pps"), "4.20 pps");
        assert_eq!(si(999.4, "pps"), "999 pps");
        assert_eq!(si(999.6, "pps"), "1.00 kpps");
        assert_eq!(si(1_234_567.0, "pps"), "1.23 Mpps");
        assert_eq!(si(99_960_000_000.0, "bit/s"), "100 Gbit/s");
        assert_eq!(si(2.0, ""), "2.00");
        assert_eq!(nanos(850), "850 ns");
        assert_eq!(nanos(12_345), "12.3 us");
        assert_eq!(nanos(4_560_000), "4.56 ms");
        assert_eq!(uptime(3725.9), "01:02:05");
        assert_eq!(uptime(2.0 * 86_400.0 + 61.0), "2d 00:01:01");
    }
}
