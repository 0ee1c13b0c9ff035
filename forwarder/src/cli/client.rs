//! The client commands: one request over the control socket, its answer printed as a
//! table (or JSON).

use anyhow::{Result, bail};
use hairpin::control::{
    protocol::{MirrorInfo, PortCounters, PortInfo, Request, Response, Stats},
    service::{self},
    spec::mirror::direction_name,
};
use hairpin::datapath::stats::in_column_order;
use hairpin::switch::{DropReason, meters::bits_per_second};
use hairpin::wire::ETHERNET_HEADER_LEN;

use super::args::*;

/// A client command: one request, its answer printed; a refusal is an error.
pub(crate) fn ask(client: &Client, request: Request) -> Result<()> {
    let response = service::request(&client.socket, &request)?;
    if let Response::Error { message } = &response {
        bail!("{message}");
    }
    let text = if client.json {
        serde_json::to_string_pretty(&response)?
    } else {
        match response {
            Response::Done { message } => message,
            Response::Ports { ports } => ports_table(&ports),
            Response::Fdb { entries } => {
                let mut out = String::new();
                for e in entries {
                    out += &format!(
                        "{} dev {}{} {}\n",
                        e.mac,
                        e.port,
                        if e.vlan > 0 {
                            format!(" vlan {}", e.vlan)
                        } else {
                            String::new()
                        },
                        if e.is_static {
                            "static".to_owned()
                        } else {
                            format!("age {}s", e.age)
                        }
                    );
                }
                out.trim_end().to_owned()
            }
            Response::Stats(stats) => counters_text(&stats),
            Response::Trace(report) => report.lines.join("\n"),
            Response::Capturing { port, .. } => format!("capturing on {port}"),
            Response::Mirrors { mirrors } => mirrors_table(&mirrors),
            Response::Error { .. } => unreachable!("handled above"),
        }
    };
    println!("{text}");
    Ok(())
}

fn ports_table(ports: &[PortInfo]) -> String {
    let mut out = format!(
        "{:<15} {:>4} {:<6} {:<8} {:<22} {:>6} {:<8} {:>6} {:>12} {:>12}  drops\n",
        "port", "slot", "state", "role", "vlans", "queues", "af_xdp", "mtu", "rx_pkts", "tx_pkts"
    );
    let mut too_long = Vec::new();
    for p in ports {
        let drops: Vec<String> = p
            .counters
            .drops
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        let mtu = match (p.mtu, p.largest_frame) {
            (None, _) => "-".to_owned(),
            (Some(mtu), Some(largest)) if mtu + ETHERNET_HEADER_LEN as u32 > largest => {
                too_long.push(format!("{} carries frames up to {largest} bytes", p.name));
                format!("{mtu}*")
            }
            (Some(mtu), _) => mtu.to_string(),
        };
        out += &format!(
            "{:<15} {:>4} {:<6} {:<8} {:<22} {:>6} {:<8} {:>6} {:>12} {:>12}  {}\n",
            p.name,
            p.slot,
            p.state,
            p.role,
            p.vlans.as_deref().unwrap_or("-"),
            p.queues,
            match (&p.xdp, p.zero_copy) {
                (None, _) => "-".to_owned(),
                (Some(x), true) => format!("{x}/zc"),
                (Some(x), false) => format!("{x}/copy"),
            },
            mtu,
            p.counters.rx_packets,
            p.counters.tx_packets,
            if drops.is_empty() {
                "-".to_owned()
            } else {
                drops.join(",")
            },
        );
    }
    if !too_long.is_empty() {
        out += &format!(
            "* MTU more than hairpin carries: {}; longer frames are dropped\n",
            too_long.join(", ")
        );
    }
    // Ports that met their MAC limit: sources past it are forwarded but not learned.
    for p in ports.iter().filter(|p| p.macs_refused > 0) {
        out += &format!(
            "{}: learned {} of at most {} MACs; {} sources refused (forwarded, not learned)\n",
            p.name, p.learned_macs, p.max_macs, p.macs_refused
        );
    }
    // Ports with storm control or policing: the limits, and what they dropped.
    for p in ports.iter().filter(|p| !p.limits.is_empty()) {
        out += &format!("{}: {}\n", p.name, limits_text(p));
    }
    // Ports with an IP source guard, and what it allows.
    for p in ports.iter().filter(|p| !p.allowed_ips.is_empty()) {
        out += &format!(
            "{}: IP source guard: allows {}\n",
            p.name,
            p.allowed_ips.join(", ")
        );
    }
    // Who a port is, where its interface says (hairpin-cni names the pod there).
    for p in ports {
        if let Some(alias) = &p.alias {
            out += &format!("{}: {alias}\n", p.name);
        }
    }
    out.trim_end().to_owned()
}

/// A port's storm control and policing, and their drops: `police_rate 100 Mbit/s
/// (burst 1250000 bytes), storm_broadcast 1000 pps (burst 100); dropped: policed 12,
/// storm 0`.
fn limits_text(p: &PortInfo) -> String {
    let limits: Vec<String> = p
        .limits
        .iter()
        .map(|(name, l)| match name.as_str() {
            "police_rate" => format!(
                "{name} {} (burst {} bytes)",
                bits_per_second(l.rate),
                l.burst
            ),
            _ => format!("{name} {} pps (burst {})", l.rate, l.burst),
        })
        .collect();
    let dropped: Vec<String> = [DropReason::Policed, DropReason::Storm]
        .iter()
        .map(|r| {
            let n = p.counters.drops.get(r.name()).copied().unwrap_or(0);
            format!("{} {n}", r.name())
        })
        .collect();
    format!("{}; dropped: {}", limits.join(", "), dropped.join(", "))
}

/// The mirrors as a table: one row each; a waiting mirror says which ports it waits
/// for in its state.
fn mirrors_table(mirrors: &[MirrorInfo]) -> String {
    if mirrors.is_empty() {
        return "no mirror (hairpin mirror add NAME --from PORT[,PORT...] --to PORT)".to_owned();
    }
    let mut out = format!(
        "{:<15} {:<23} {:<4} {:<15} {:<23} {:>12} {:>10}\n",
        "mirror", "from", "dir", "to", "state", "copies", "lost"
    );
    for m in mirrors {
        let state = if m.missing.is_empty() {
            m.state.clone()
        } else {
            format!("{} ({})", m.state, m.missing.join(","))
        };
        out += &format!(
            "{:<15} {:<23} {:<4} {:<15} {:<23} {:>12} {:>10}\n",
            m.name,
            m.from.join(","),
            direction_name(m.direction),
            m.to,
            state,
            m.copies,
            m.lost
        );
    }
    out.trim_end().to_owned()
}

/// The counters as a table: one row per port (removed ones included), then the MAC
/// table, latency and workers.
///
/// Each port has one row. A port of the configuration whose interface the kernel
/// deleted stays among the ports (absent) with the counters it had, which its detach
/// also added to the departed rows (under its name, or `(earlier)`): it is listed there
/// only. An absent port that never counted and never left is listed as a port.
pub(crate) fn counters_text(s: &Stats) -> String {
    let columns = in_column_order(PortCounters::ROWS);
    let mut out = format!("{:<15}", "port");
    for (c, _) in &columns {
        out += &format!(" {:>w$}", c.header, w = c.width);
    }
    out += "  drops\n";
    let departed = |p: &PortInfo| {
        p.state == "absent"
            && (p.counters != PortCounters::default()
                || s.departed.iter().any(|d| d.name == p.name))
    };
    let rows = s
        .ports
        .iter()
        .filter(|p| !departed(p))
        .map(|p| (p.name.as_str(), &p.counters))
        .chain(s.departed.iter().map(|d| (d.name.as_str(), &d.counters)));
    for (name, c) in rows {
        let drops: Vec<String> = c.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
        out += &format!("{name:<15}");
        for (column, get) in &columns {
            out += &format!(" {:>w$}", get(c), w = column.width);
        }
        out += &format!(
            "  {}\n",
            if drops.is_empty() {
                "-".to_owned()
            } else {
                drops.join(",")
            }
        );
    }
    let free: Vec<String> = s
        .workers
        .iter()
        .map(|w| format!("{}/{} ({} UMEMs)", w.free_frames, w.total_frames, w.umems))
        .collect();
    let promised: Vec<String> = s
        .workers
        .iter()
        .map(|w| format!("{}/{}", w.promised_frames, w.budget_frames))
        .collect();
    out += &format!(
        "mac table: {} entries ({} full-bucket misses); free UMEM frames per worker: {}; \
         promised to fill rings: {}\n",
        s.fdb_entries,
        s.fdb_full,
        free.join(" "),
        promised.join(" ")
    );
    let l = &s.latency_ns;
    let us = |ns: u64| ns as f64 / 1000.0;
    out += &format!(
        "latency, RX read to TX submit per busy turn ({} turns): p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us\n",
        l.count,
        us(l.p50),
        us(l.p99),
        us(l.p999),
        us(l.max)
    );
    let mhz = s.cpu_hz.map(|hz| hz as f64 / 1e6);
    for (i, w) in s.workers.iter().enumerate() {
        // Busy time includes the kernel's share of the worker's syscalls (copy-mode
        // transmit), as OVS's processing cycles do.
        let per_frame = w.busy_ns.checked_div(w.rx_frames).map_or_else(
            || "-".to_owned(),
            |ns| match mhz {
                Some(mhz) => format!(
                    "{ns} ns/frame (~{:.0} cycles/frame at {:.2} GHz)",
                    ns as f64 * mhz / 1e3,
                    mhz / 1e3
                ),
                None => format!("{ns} ns/frame"),
            },
        );
        out += &format!(
            "worker q{i}: {} frames, busy {:.1} ms, {per_frame}, slept {} times\n",
            w.rx_frames,
            w.busy_ns as f64 / 1e6,
            w.sleeps
        );
    }
    if s.log_lines_dropped > 0 {
        out += &format!(
            "log: {} line(s) dropped since start (stderr refused them)\n",
            s.log_lines_dropped
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_with_limits_gets_a_line_of_them_and_their_drops() {
        use hairpin::control::protocol::LimitInfo;
        let mut p = PortInfo::example(
            "vm1",
            PortCounters {
                drops: [("policed".to_owned(), 12)].into_iter().collect(),
                ..PortCounters::default()
            },
        );
        let plain = ports_table(std::slice::from_ref(&p));
        assert_eq!(plain.lines().count(), 2, "{plain}");
        p.limits.insert(
            "police_rate".into(),
            LimitInfo {
                rate: 100_000_000,
                burst: 1_250_000,
            },
        );
        p.limits.insert(
            "storm_broadcast".into(),
            LimitInfo {
                rate: 1000,
                burst: 100,
            },
        );
        let table = ports_table(&[p]);
        assert_eq!(
            table.lines().last(),
            Some(
                "vm1: police_rate 100 Mbit/s (burst 1250000 bytes), storm_broadcast 1000 pps \
                 (burst 100); dropped: policed 12, storm 0"
            ),
            "{table}"
        );
    }

    #[test]
    fn the_mirror_table_has_a_row_per_mirror_and_says_what_one_waits_for() {
        use hairpin::control::protocol::Direction;
        let mirror = |name: &str, state: &str, missing: &[&str]| MirrorInfo {
            name: name.into(),
            from: vec!["vm1".into(), "vm2".into()],
            direction: Direction::Both,
            to: "mon".into(),
            state: state.into(),
            missing: missing.iter().map(|s| (*s).to_owned()).collect(),
            origin: "runtime".into(),
            copies: 1234,
            lost: 5,
        };
        let table = mirrors_table(&[
            mirror("ids", "active", &[]),
            mirror("dump", "waiting", &["vm2"]),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            words(lines[0]),
            ["mirror", "from", "dir", "to", "state", "copies", "lost"]
        );
        assert_eq!(
            words(lines[1]),
            ["ids", "vm1,vm2", "both", "mon", "active", "1234", "5"]
        );
        assert_eq!(
            words(lines[2])[4..6],
            ["waiting".to_owned(), "(vm2)".to_owned()]
        );
        assert!(mirrors_table(&[]).starts_with("no mirror"));
    }

    #[test]
    fn the_port_table_marks_an_mtu_longer_than_the_port_carries() {
        use hairpin::control::protocol::PortCounters;
        let port = |name: &str, mtu: u32, largest: u32| PortInfo {
            mtu: Some(mtu),
            largest_frame: Some(largest),
            ..PortInfo::example(name, PortCounters::default())
        };
        let table = ports_table(&[port("vm0", 9000, 1792), port("vm1", 9000, 28672)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].contains(" 9000* "), "{table}");
        assert!(lines[2].contains(" 9000 "), "{table}");
        assert_eq!(
            lines[3],
            "* MTU more than hairpin carries: vm0 carries frames up to 1792 bytes; \
             longer frames are dropped"
        );
        assert!(!ports_table(&[port("vm1", 1500, 1792)]).contains('*'));
    }

    #[test]
    fn the_port_table_says_which_pod_a_port_is() {
        use hairpin::control::protocol::PortCounters;
        let pod = PortInfo {
            alias: Some("cni 0123abcd eth0".to_owned()),
            ..PortInfo::example("hp0123456789abc", PortCounters::default())
        };
        let plain = PortInfo::example("vm1", PortCounters::default());
        let table = ports_table(&[pod, plain]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert_eq!(lines[3], "hp0123456789abc: cni 0123abcd eth0");
    }

    #[test]
    fn the_port_table_lists_a_guarded_ports_prefixes() {
        use hairpin::control::protocol::PortCounters;
        let guarded = PortInfo {
            allowed_ips: vec!["10.0.0.5/32".to_owned(), "fd00::5/128".to_owned()],
            ..PortInfo::example("vm0", PortCounters::default())
        };
        let table = ports_table(&[guarded, PortInfo::example("vm1", PortCounters::default())]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert_eq!(
            lines[3],
            "vm0: IP source guard: allows 10.0.0.5/32, fd00::5/128"
        );
    }

    #[test]
    fn dropped_log_lines_are_told_only_when_there_are_some() {
        let mut stats = Stats::default();
        assert!(!counters_text(&stats).contains("log:"));
        stats.log_lines_dropped = 4;
        assert!(
            counters_text(&stats)
                .ends_with("log: 4 line(s) dropped since start (stderr refused them)\n")
        );
    }

    #[test]
    fn a_port_the_kernel_deleted_is_listed_once() {
        use hairpin::control::protocol::{DepartedPort, PortCounters};
        let counted = PortCounters {
            rx_packets: 7,
            ..PortCounters::default()
        };
        let absent = |name: &str, counters: PortCounters| PortInfo {
            state: "absent".to_owned(),
            ..PortInfo::example(name, counters)
        };
        let stats = Stats {
            ports: vec![
                PortInfo::example("p0", counted.clone()),
                // Deleted by the kernel: its counters went to the departed rows too.
                absent("p1", counted.clone()),
                // Deleted idle: a departed row of zeros.
                absent("p2", PortCounters::default()),
                // Missing since start: never counted, never left.
                absent("p3", PortCounters::default()),
                // Deleted long ago: summed into (earlier).
                absent("p4", counted.clone()),
            ],
            departed: ["(earlier)", "p1", "p2"]
                .into_iter()
                .map(|name| DepartedPort {
                    name: name.to_owned(),
                    removals: 1,
                    counters: if name == "p2" {
                        PortCounters::default()
                    } else {
                        counted.clone()
                    },
                })
                .collect(),
            ..Stats::default()
        };
        let text = counters_text(&stats);
        let names: Vec<&str> = text
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("mac table"))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(names, ["p0", "p3", "(earlier)", "p1", "p2"], "{text}");
    }

    /// `show stats` has a column per row of the counter table that has one, its value
    /// right-aligned under its header, the drops last (the headers and widths are
    /// pinned with the table, in `datapath/stats.rs`).
    #[test]
    fn the_counters_table_has_the_tables_columns_aligned() {
        use hairpin::control::protocol::PortCounters;
        use hairpin::datapath::stats::in_column_order;
        // Each counter its own value, whatever the table holds.
        let mut fields: serde_json::Map<String, serde_json::Value> = (100..)
            .zip(PortCounters::ROWS)
            .map(|(n, row)| (row.name.to_owned(), n.into()))
            .collect();
        fields.insert("drops".into(), serde_json::json!({"spoofed": 9}));
        let counters: PortCounters = serde_json::from_value(fields.into()).unwrap();
        let stats = Stats {
            ports: vec![PortInfo::example("vf0", counters.clone())],
            ..Stats::default()
        };
        let text = counters_text(&stats);
        let lines: Vec<&str> = text.lines().collect();
        let (header, row) = (lines[0], lines[1]);
        assert!(header.starts_with(&format!("{:<15} ", "port")), "{text}");
        assert!(row.starts_with(&format!("{:<15} ", "vf0")), "{text}");
        assert!(header.ends_with("  drops"), "{text}");
        assert!(row.ends_with("  spoofed=9"), "{text}");
        let columns = in_column_order(PortCounters::ROWS);
        assert_eq!(header.split_whitespace().count(), columns.len() + 2);
        let mut end = 15;
        for (column, get) in &columns {
            end += 1 + column.width;
            assert_eq!(&header[end - column.header.len()..end], column.header);
            let value = get(&counters).to_string();
            assert_eq!(&row[end - value.len()..end], value, "{text}");
            assert_eq!(row.as_bytes()[end - value.len() - 1], b' ', "{text}");
        }
        assert_eq!(header.len(), end + "  drops".len());
    }
}
