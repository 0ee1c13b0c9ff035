//! The Prometheus endpoint: `hairpin run --metrics ADDR:PORT` serves `GET /metrics`.
//!
//! A scrape asks the control thread for [`Stats`] exactly as `hairpin show stats` does
//! (the workers' counters are plain loads; their latency histograms are read under a
//! lock a worker only ever `try_lock`s), then renders them with `prometheus-client`'s
//! text encoder. Nothing on the frame path knows a scrape happened. The HTTP server
//! around it ([`http`]: one thread, one request per connection, a bound on the head's
//! size, the connections and each one's time) answers what [`respond`] makes of a request.
//!
//! The exposition is OpenMetrics text (served as such, which Prometheus negotiates), with
//! Prometheus names: `hairpin_port_rx_packets_total{port="vf0"}` and so on; the table in
//! the README lists every family. Series do not vanish when idle: every drop reason of
//! every port is present, zero or not, so `rate()` and alerts see no gaps.
use std::{borrow::Cow, collections::HashMap, io, net::SocketAddr};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet},
    metrics::{MetricType, exemplar::Exemplar},
    registry::Registry,
};

use super::{
    protocol::{
        Latency, LimitInfo, MirrorInfo, PortCounters, PortInfo, Request, Response, Stats,
        WorkerStats,
    },
    service::Caller,
};
use crate::{
    datapath::stats::{Metric, MetricKind, SOCKET_DROPS, in_metric_order},
    switch::DropReason,
};

mod http;

/// The latency histogram's bucket bounds, in seconds: 1 µs to 10 ms, 1-2-5 steps
/// (a busy turn on a healthy switch takes microseconds; beyond 10 ms is `+Inf`).
const LATENCY_BOUNDS: [f64; 13] = [
    1e-6, 2e-6, 5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3,
];

/// The content type of the OpenMetrics exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of the classic Prometheus text exposition.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels as `(name, value)` pairs.
type Labels = Vec<(Cow<'static, str>, Cow<'static, str>)>;

fn labels<const N: usize>(pairs: [(&'static str, String); N]) -> Labels {
    pairs
        .into_iter()
        .map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v)))
        .collect()
}

/// Renders `stats` as a classic Prometheus text exposition (version 0.0.4), what
/// `curl` and `promtool check metrics` read.
///
/// `prometheus-client` writes only OpenMetrics, which differs from it in three ways
/// hairpin's families can show: a counter's `# HELP`/`# TYPE` name the family without
/// its `_total` suffix, `# UNIT` lines, and the closing `# EOF`. This maps those.
pub fn render_text(stats: &Stats) -> String {
    let openmetrics = render(stats);
    let mut out = String::with_capacity(openmetrics.len());
    let mut family: Vec<&str> = Vec::new();
    for line in openmetrics.lines() {
        if line.starts_with("# HELP ") {
            classic_family(&family, &mut out);
            family.clear();
        }
        family.push(line);
    }
    classic_family(&family, &mut out);
    out
}

/// One family's lines (its `# HELP`, `# TYPE` and samples), in the classic format.
fn classic_family(lines: &[&str], out: &mut String) {
    let counter = lines
        .iter()
        .find_map(|l| l.strip_prefix("# TYPE "))
        .and_then(|t| t.strip_suffix(" counter"));
    for &line in lines {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        match counter {
            Some(name) if line.starts_with("# HELP ") || line.starts_with("# TYPE ") => {
                let (marker, rest) = line.split_at("# HELP ".len());
                let rest = rest.strip_prefix(name).unwrap_or(rest);
                out.push_str(&format!("{marker}{name}_total{rest}\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

/// Renders `stats` as an OpenMetrics text exposition.
pub fn render(stats: &Stats) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition(stats.clone())));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// One scrape's worth of counters, as a collector.
#[derive(Debug)]
struct Exposition(Stats);

/// Writes one metric family: a descriptor and one sample per label set.
fn family<T>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, T)>,
    mut write: impl FnMut(&mut MetricEncoder<'_>, T) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        if labels.is_empty() {
            write(&mut metric, value)?;
        } else {
            write(&mut metric.encode_family(&labels)?, value)?;
        }
    }
    Ok(())
}

fn counter(m: &mut MetricEncoder<'_>, v: u64) -> Result<(), std::fmt::Error> {
    m.encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn counter_f(m: &mut MetricEncoder<'_>, v: f64) -> Result<(), std::fmt::Error> {
    m.encode_counter::<NoLabelSet, _, f64>(&v, None)
}

fn gauge(m: &mut MetricEncoder<'_>, v: f64) -> Result<(), std::fmt::Error> {
    m.encode_gauge(&v)
}

fn gauge_u(m: &mut MetricEncoder<'_>, v: u64) -> Result<(), std::fmt::Error> {
    m.encode_gauge(&v)
}

/// Writes the family of a counter table's row ([`Metric`]), counter or gauge.
fn kind_family(
    encoder: &mut DescriptorEncoder<'_>,
    m: &Metric,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    match m.kind {
        MetricKind::Counter => family(
            encoder,
            m.name,
            m.help,
            MetricType::Counter,
            samples,
            counter,
        ),
        MetricKind::Gauge => family(encoder, m.name, m.help, MetricType::Gauge, samples, gauge_u),
    }
}

impl Collector for Exposition {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        self.process(&mut e)?;
        ports(&mut e, &s.ports)?;
        queues(&mut e, &s.ports)?;
        self.workers(&mut e)?;
        self.mac_table(&mut e)?;
        self.capture(&mut e)?;
        latency(&mut e, &s.latency_ns)
    }
}

impl Exposition {
    fn process(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        family(
            e,
            "hairpin_build_info",
            "The running hairpin's version (the value is always 1).",
            MetricType::Gauge,
            [(labels([("version", s.version.clone())]), 1)],
            gauge_u,
        )?;
        family(
            e,
            "hairpin_start_time_seconds",
            "When the bridge started, in seconds since the Unix epoch.",
            MetricType::Gauge,
            [(Labels::new(), s.start_time_s)],
            gauge,
        )
    }

    fn workers(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let workers = &self.0.workers;
        let id = |w: &WorkerStats| {
            labels([
                ("worker", w.queue.to_string()),
                ("core", w.core.to_string()),
            ])
        };
        let each = |f: fn(&WorkerStats) -> u64| workers.iter().map(move |w| (id(w), f(w)));
        family(
            e,
            "hairpin_worker_rx_frames",
            "Frames a worker received, over every port (worker i serves RX queue i).",
            MetricType::Counter,
            each(|w| w.rx_frames),
            counter,
        )?;
        family(
            e,
            "hairpin_worker_tx_frames",
            "Frames a worker put on TX rings, over every port.",
            MetricType::Counter,
            each(|w| w.tx_frames),
            counter,
        )?;
        family(
            e,
            "hairpin_worker_busy_seconds",
            "Time a worker spent in turns that moved frames (kernel time of its syscalls included).",
            MetricType::Counter,
            workers.iter().map(|w| (id(w), w.busy_ns as f64 / 1e9)),
            counter_f,
        )?;
        if let Some(hz) = self.0.cpu_hz {
            // Busy cycles over frames is `pmd-stats-show`'s "processing cycles per packet".
            family(
                e,
                "hairpin_worker_busy_cycles",
                "Busy time in CPU cycles at the clock the kernel reports; divide its rate by the frames' for cycles per frame.",
                MetricType::Counter,
                workers
                    .iter()
                    .map(|w| (id(w), (w.busy_ns as f64 * hz as f64 / 1e9) as u64)),
                counter,
            )?;
        }
        for (m, get) in in_metric_order(WorkerStats::ROWS) {
            kind_family(e, &m, workers.iter().map(|w| (id(w), get(w))))?;
        }
        Ok(())
    }

    /// Captures running, what each port mirror copied and lost, and the log lines dropped.
    fn capture(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        family(
            e,
            "hairpin_captures",
            "Captures running now (hairpin capture).",
            MetricType::Gauge,
            [(Labels::new(), s.captures as u64)],
            gauge_u,
        )?;
        let mirror = |m: &MirrorInfo| labels([("mirror", m.name.clone()), ("to", m.to.clone())]);
        family(
            e,
            "hairpin_mirror_copies",
            "Copies a port mirror sent out of its monitor port since it last became active.",
            MetricType::Counter,
            s.mirrors.iter().map(|m| (mirror(m), m.copies)),
            counter,
        )?;
        family(
            e,
            "hairpin_mirror_lost",
            "Copies a port mirror lost since it last became active (hairpin's rings or the monitor port's queue full).",
            MetricType::Counter,
            s.mirrors.iter().map(|m| (mirror(m), m.lost)),
            counter,
        )?;
        family(
            e,
            "hairpin_log_lines_dropped",
            "hairpin's own log lines dropped since start because stderr refused them.",
            MetricType::Counter,
            [(Labels::new(), s.log_lines_dropped)],
            counter,
        )
    }

    fn mac_table(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let one = |v: usize| [(Labels::new(), v as u64)];
        family(
            e,
            "hairpin_fdb_entries",
            "MAC table entries, learned and static.",
            MetricType::Gauge,
            one(s.fdb_entries),
            gauge_u,
        )?;
        family(
            e,
            "hairpin_fdb_capacity",
            "MAC table capacity.",
            MetricType::Gauge,
            one(s.fdb_capacity),
            gauge_u,
        )?;
        family(
            e,
            "hairpin_fdb_learn_refused",
            "Addresses not learned because their bucket was full (frames to them are flooded).",
            MetricType::Counter,
            [(Labels::new(), s.fdb_full)],
            counter,
        )?;
        family(
            e,
            "hairpin_fdb_moves",
            "Learned addresses that moved to another port.",
            MetricType::Counter,
            [(Labels::new(), s.fdb_moves)],
            counter,
        )
    }
}

fn ports(e: &mut DescriptorEncoder<'_>, ports: &[PortInfo]) -> Result<(), std::fmt::Error> {
    let id = |p: &PortInfo| labels([("port", p.name.clone())]);
    family(
        e,
        "hairpin_port_up",
        "1 when the port is attached and has carrier, 0 when down or absent.",
        MetricType::Gauge,
        ports.iter().map(|p| (id(p), u64::from(p.state == "up"))),
        gauge_u,
    )?;
    for (m, get) in in_metric_order(PortCounters::ROWS) {
        let samples = ports.iter().map(|p| (id(p), get(&p.counters)));
        kind_family(e, &m, samples)?;
    }
    family(
        e,
        "hairpin_port_learned_macs",
        "MAC table entries the port has learned (static ones not counted).",
        MetricType::Gauge,
        ports.iter().map(|p| (id(p), u64::from(p.learned_macs))),
        gauge_u,
    )?;
    family(
        e,
        "hairpin_port_max_macs",
        "The most MAC table entries the port may learn (0: no limit).",
        MetricType::Gauge,
        ports.iter().map(|p| (id(p), u64::from(p.max_macs))),
        gauge_u,
    )?;
    family(
        e,
        "hairpin_port_macs_refused",
        "Sources not learned because the port had learned its max_macs (their frames were forwarded).",
        MetricType::Counter,
        ports.iter().map(|p| (id(p), p.macs_refused)),
        counter,
    )?;
    let limits = |get: fn(&LimitInfo) -> u64| {
        ports.iter().flat_map(move |p| {
            p.limits.iter().map(move |(limit, l)| {
                (
                    labels([("port", p.name.clone()), ("limit", limit.clone())]),
                    get(l),
                )
            })
        })
    };
    family(
        e,
        "hairpin_port_limit",
        "A port's storm control or policing limit in force, per second (bits for police_rate, frames for the others), by setting; frames over it are dropped (reasons storm, policed).",
        MetricType::Gauge,
        limits(|l| l.rate),
        gauge_u,
    )?;
    family(
        e,
        "hairpin_port_limit_burst",
        "The burst of a port's storm control or policing limit (bytes for police_rate, frames for the others), by setting.",
        MetricType::Gauge,
        limits(|l| l.burst),
        gauge_u,
    )?;
    let count = |p: &PortInfo, reason: &str| p.counters.drops.get(reason).copied().unwrap_or(0);
    family(
        e,
        "hairpin_port_drops",
        "Frames received on the port that hairpin dropped, by reason.",
        MetricType::Counter,
        ports.iter().flat_map(|p| {
            DropReason::ALL.iter().map(move |r| {
                (
                    labels([("port", p.name.clone()), ("reason", r.name().to_owned())]),
                    count(p, r.name()),
                )
            })
        }),
        counter,
    )?;
    family(
        e,
        "hairpin_port_socket_drops",
        "Frames the kernel dropped on the port's AF_XDP sockets (XDP_STATISTICS), by reason.",
        MetricType::Counter,
        ports.iter().flat_map(|p| {
            SOCKET_DROPS.iter().map(move |d| {
                (
                    labels([("port", p.name.clone()), ("reason", d.label.to_owned())]),
                    count(p, d.name),
                )
            })
        }),
        counter,
    )
}

fn queues(e: &mut DescriptorEncoder<'_>, ports: &[PortInfo]) -> Result<(), std::fmt::Error> {
    let each = |f: fn(&super::protocol::QueueCounters) -> u64| {
        ports.iter().flat_map(move |p| {
            p.per_queue.iter().map(move |q| {
                (
                    labels([("port", p.name.clone()), ("queue", q.queue.to_string())]),
                    f(q),
                )
            })
        })
    };
    family(
        e,
        "hairpin_queue_rx_packets",
        "Frames received on one RX queue of a port.",
        MetricType::Counter,
        each(|q| q.rx_packets),
        counter,
    )?;
    family(
        e,
        "hairpin_queue_rx_bytes",
        "Bytes received on one RX queue of a port.",
        MetricType::Counter,
        each(|q| q.rx_bytes),
        counter,
    )?;
    family(
        e,
        "hairpin_queue_tx_packets",
        "Frames sent on one queue of a port.",
        MetricType::Counter,
        each(|q| q.tx_packets),
        counter,
    )?;
    family(
        e,
        "hairpin_queue_tx_bytes",
        "Bytes sent on one queue of a port.",
        MetricType::Counter,
        each(|q| q.tx_bytes),
        counter,
    )?;
    family(
        e,
        "hairpin_queue_drops",
        "Frames received on one queue of a port and dropped (by hairpin or the kernel).",
        MetricType::Counter,
        each(|q| q.drops),
        counter,
    )
}

/// The latency histogram in classic Prometheus buckets, from the HdrHistogram's.
fn latency(e: &mut DescriptorEncoder<'_>, l: &Latency) -> Result<(), std::fmt::Error> {
    let buckets = prometheus_buckets(l);
    let mut metric = e.encode_descriptor(
        "hairpin_latency_seconds",
        "Time from reading the RX rings to submitting the TX rings, per busy turn of a worker (all workers).",
        None,
        MetricType::Histogram,
    )?;
    metric.encode_histogram::<NoLabelSet>(
        l.sum as f64 / 1e9,
        l.count,
        &buckets,
        None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
    )
}

/// `(upper bound in seconds, turns in that bucket alone)` for every bound and `+Inf`,
/// as the encoder wants them (it accumulates).
fn prometheus_buckets(l: &Latency) -> Vec<(f64, u64)> {
    let mut out: Vec<(f64, u64)> = LATENCY_BOUNDS
        .iter()
        .chain(&[f64::INFINITY])
        .map(|&b| (b, 0))
        .collect();
    for &(ns, n) in &l.buckets {
        let s = ns as f64 / 1e9;
        let i = out
            .iter()
            .position(|&(bound, _)| s <= bound)
            .unwrap_or(out.len() - 1);
        out[i].1 += n;
    }
    out
}

/// The running endpoint; dropping it stops the server.
pub struct MetricsServer {
    server: http::Server,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// The address it listens on (the port is real when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

/// Listens on `addr` and answers `GET /metrics` from what `caller` gets from the control
/// thread, within the bounds of [`http::Limits::default`]. The server's one thread keeps
/// off the workers' `cores`.
pub fn serve(addr: SocketAddr, caller: Caller, cores: &[usize]) -> io::Result<MetricsServer> {
    let server = http::spawn(
        "hairpin-metrics",
        addr,
        cores,
        http::Limits::default(),
        move |head| respond(head, || caller.call(Request::ShowStats)),
    )
    .map_err(|e| io::Error::other(format!("metrics endpoint {addr}: {e}")))?;
    Ok(MetricsServer { server })
}

/// The answer to one request; `stats` asks the control thread.
fn respond(head: &http::Head<'_>, stats: impl FnOnce() -> Response) -> http::Reply {
    use http::Reply;
    let path = head.target.split('?').next().unwrap_or_default();
    // Prometheus asks for OpenMetrics first; anything else gets the classic format.
    let openmetrics = head
        .header("Accept")
        .any(|v| v.contains("application/openmetrics-text"));
    match (head.method, path) {
        ("GET" | "HEAD", "/metrics") => match stats() {
            Response::Stats(stats) if openmetrics => Reply::text(200, OPENMETRICS, render(&stats)),
            Response::Stats(stats) => Reply::text(200, PROMETHEUS_TEXT, render_text(&stats)),
            Response::Error { message } => Reply::text(503, "text/plain", message + "\n"),
            _ => Reply::text(500, "text/plain", "unexpected answer\n"),
        },
        ("GET" | "HEAD", "/") => Reply::text(200, "text/plain", "hairpin: metrics at /metrics\n"),
        ("GET" | "HEAD", _) => Reply::text(404, "text/plain", "not found: try /metrics\n"),
        _ => Reply::text(405, "text/plain", "only GET\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::QueueCounters;

    fn sample() -> Stats {
        let port = |name: &str, rx: u64| PortInfo {
            per_queue: vec![QueueCounters {
                queue: 0,
                rx_packets: rx,
                ..QueueCounters::default()
            }],
            ..PortInfo::example(
                name,
                PortCounters {
                    rx_packets: rx,
                    rx_bytes: rx * 64,
                    drops: [("spoofed".to_owned(), 3), ("kernel_rx_ring_full".into(), 2)]
                        .into_iter()
                        .filter(|_| rx > 0)
                        .collect(),
                    ..PortCounters::default()
                },
            )
        };
        Stats {
            version: "9.9.9".into(),
            start_time_s: 1.7e9,
            ports: vec![port("vf0", 1000), port("vf1", 0)],
            workers: vec![WorkerStats {
                queue: 0,
                core: 1,
                rx_frames: 1000,
                busy_ns: 2_000_000,
                ..WorkerStats::default()
            }],
            cpu_hz: Some(2_000_000_000),
            fdb_entries: 2,
            fdb_capacity: 4096,
            latency_ns: Latency {
                count: 6,
                sum: 3 * 1_500 + 2 * 30_000 + 20_000_000,
                buckets: vec![(1_500, 3), (30_000, 2), (20_000_000, 1)],
                ..Latency::default()
            },
            captures: 2,
            log_lines_dropped: 3,
            mirrors: vec![MirrorInfo {
                name: "ids".into(),
                from: vec!["vf0".into()],
                direction: crate::control::protocol::Direction::Both,
                to: "mon0".into(),
                state: "active".into(),
                missing: vec![],
                origin: "config".into(),
                copies: 7,
                lost: 1,
            }],
            ..Stats::default()
        }
    }

    #[test]
    fn renders_prometheus_names_labels_and_every_drop_reason() {
        let text = render(&sample());
        for line in [
            "hairpin_port_rx_packets_total{port=\"vf0\"} 1000",
            "hairpin_port_rx_packets_total{port=\"vf1\"} 0",
            "hairpin_port_rx_bytes_total{port=\"vf0\"} 64000",
            "hairpin_port_drops_total{port=\"vf0\",reason=\"spoofed\"} 3",
            "hairpin_port_drops_total{port=\"vf1\",reason=\"spoofed\"} 0",
            "hairpin_port_socket_drops_total{port=\"vf0\",reason=\"rx_ring_full\"} 2",
            "hairpin_queue_rx_packets_total{port=\"vf0\",queue=\"0\"} 1000",
            "hairpin_worker_busy_cycles_total{worker=\"0\",core=\"1\"} 4000000",
            "hairpin_build_info{version=\"9.9.9\"} 1",
            "hairpin_fdb_entries 2",
            "hairpin_captures 2",
            "hairpin_mirror_copies_total{mirror=\"ids\",to=\"mon0\"} 7",
            "hairpin_mirror_lost_total{mirror=\"ids\",to=\"mon0\"} 1",
            "hairpin_log_lines_dropped_total 3",
            "# TYPE hairpin_latency_seconds histogram",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        for reason in DropReason::ALL {
            assert!(text.contains(&format!("port=\"vf1\",reason=\"{}\"", reason.name())));
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_classic_text_names_counters_with_their_suffix_and_has_no_eof() {
        let text = render_text(&sample());
        assert!(text.contains(
            "# HELP hairpin_port_rx_packets_total Frames received on the port.\n\
             # TYPE hairpin_port_rx_packets_total counter\n\
             hairpin_port_rx_packets_total{port=\"vf0\"} 1000\n"
        ));
        assert!(text.contains("# TYPE hairpin_fdb_entries gauge\nhairpin_fdb_entries 2\n"));
        assert!(text.contains("# TYPE hairpin_latency_seconds histogram\n"));
        assert!(!text.contains("# EOF"));
        assert!(!text.contains("_total_total"));
        // Nothing but the descriptors changed.
        let samples = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(samples(&text), samples(&render(&sample())));
    }

    #[test]
    fn latency_buckets_are_cumulative_with_the_tail_in_inf() {
        let text = render(&sample());
        for line in [
            "hairpin_latency_seconds_bucket{le=\"0.000001\"} 0",
            "hairpin_latency_seconds_bucket{le=\"0.000002\"} 3",
            "hairpin_latency_seconds_bucket{le=\"0.00005\"} 5",
            "hairpin_latency_seconds_bucket{le=\"0.01\"} 5",
            "hairpin_latency_seconds_bucket{le=\"+Inf\"} 6",
            "hairpin_latency_seconds_count 6",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn the_endpoint_routes_paths_and_negotiates_the_format() {
        let ask = |method: &str, target: &str, accept: &str| {
            let headers = [httparse::Header {
                name: "accept",
                value: accept.as_bytes(),
            }];
            let head = http::Head::new(method, target, &headers);
            let asked = std::cell::Cell::new(false);
            let reply = respond(&head, || {
                asked.set(true);
                Response::Stats(Box::new(sample()))
            });
            (reply.status, reply.content_type, reply.body, asked.get())
        };
        let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
        let (status, kind, body, _) = ask("GET", "/metrics", prometheus);
        assert_eq!((status, kind), (200, OPENMETRICS));
        assert_eq!(body, render(&sample()).into_bytes());
        let (status, kind, body, _) = ask("HEAD", "/metrics?x=1", "*/*");
        assert_eq!((status, kind), (200, PROMETHEUS_TEXT));
        assert_eq!(body, render_text(&sample()).into_bytes());
        assert_eq!(ask("GET", "/", "").0, 200);
        let (status, _, _, asked) = ask("GET", "/nothing", "");
        assert_eq!((status, asked), (404, false));
        let (status, _, _, asked) = ask("POST", "/metrics", "");
        assert_eq!((status, asked), (405, false));
        let head = http::Head::new("GET", "/metrics", &[]);
        let reply = respond(&head, || Response::Error {
            message: "the control thread has stopped".into(),
        });
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, b"the control thread has stopped\n");
    }

    /// The families, their types and their order, which the README, dashboards and the
    /// privileged tests name (the counter tables' own are pinned with the tables, in
    /// `datapath/stats.rs`).
    #[test]
    fn the_families_do_not_change() {
        use crate::datapath::stats::CounterRow;
        let text = render_text(&sample());
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        fn table<T>(rows: &[CounterRow<T>]) -> Vec<String> {
            in_metric_order(rows)
                .iter()
                .map(|(m, _)| match m.kind {
                    MetricKind::Counter => format!("{}_total counter", m.name),
                    MetricKind::Gauge => format!("{} gauge", m.name),
                })
                .collect()
        }
        let expected: Vec<String> = [
            "hairpin_build_info gauge",
            "hairpin_start_time_seconds gauge",
            "hairpin_port_up gauge",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(table(PortCounters::ROWS))
        .chain(
            [
                "hairpin_port_learned_macs gauge",
                "hairpin_port_max_macs gauge",
                "hairpin_port_macs_refused_total counter",
                "hairpin_port_limit gauge",
                "hairpin_port_limit_burst gauge",
                "hairpin_port_drops_total counter",
                "hairpin_port_socket_drops_total counter",
                "hairpin_queue_rx_packets_total counter",
                "hairpin_queue_rx_bytes_total counter",
                "hairpin_queue_tx_packets_total counter",
                "hairpin_queue_tx_bytes_total counter",
                "hairpin_queue_drops_total counter",
                "hairpin_worker_rx_frames_total counter",
                "hairpin_worker_tx_frames_total counter",
                "hairpin_worker_busy_seconds_total counter",
                "hairpin_worker_busy_cycles_total counter",
            ]
            .map(str::to_owned),
        )
        .chain(table(WorkerStats::ROWS))
        .chain(
            [
                "hairpin_fdb_entries gauge",
                "hairpin_fdb_capacity gauge",
                "hairpin_fdb_learn_refused_total counter",
                "hairpin_fdb_moves_total counter",
                "hairpin_captures gauge",
                "hairpin_mirror_copies_total counter",
                "hairpin_mirror_lost_total counter",
                "hairpin_log_lines_dropped_total counter",
                "hairpin_latency_seconds histogram",
            ]
            .map(str::to_owned),
        )
        .collect();
        assert_eq!(types, expected);
        for line in [
            "# HELP hairpin_port_segmented_total Large TCP segments received on the port (an offload's, longer than its MTU), cut by hairpin into segments the MTU admits.\n",
            "# HELP hairpin_worker_umem_frames UMEM frames a worker owns.\n",
            "hairpin_worker_umems{worker=\"0\",core=\"1\"} 0\n",
            "hairpin_port_socket_drops_total{port=\"vf0\",reason=\"fill_ring_empty\"} 0\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }
}
