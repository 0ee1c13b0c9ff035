//! The control socket's protocol: one JSON object per line each way.
//!
//! A client connects to the Unix socket (`/run/hairpin/hairpin.sock` by default), writes
//! one request line and reads one response line:
//!
//! ```text
//! > {"version":1,"request":"port_add","name":"vf3","vlan":10}
//! < {"version":1,"response":"done","message":"vf3: attached as port 3 ..."}
//! > {"version":1,"request":"show_fdb","port":"vf3"}
//! < {"version":1,"response":"fdb","entries":[{"mac":"02:00:00:00:00:03","vlan":10,...}]}
//! ```
//!
//! Every request carries the protocol [`VERSION`]; a server refuses any other with an
//! error naming both. A request that is malformed or invalid gets
//! `{"response":"error","message":...}` and changes nothing.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{MirrorSpec, PortSpec};

/// The latency histogram, read out (nanoseconds): the datapath's own summary, which is
/// what goes on the wire.
pub use crate::datapath::latency::Summary as Latency;

/// A port's counters and one worker's, as the datapath's counter tables define them
/// (one row each, `datapath/stats.rs`): the JSON names are the rows' names.
pub use crate::datapath::stats::{PortCounters, WorkerStats};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// A request and the version it was written for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLine {
    /// [`VERSION`] of the client.
    pub version: u32,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// A response and the version of the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseLine {
    /// [`VERSION`] of the server.
    pub version: u32,
    /// The response.
    #[serde(flatten)]
    pub response: Response,
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Attach a port with these settings.
    PortAdd(PortSpec),
    /// Detach a port and forget it.
    PortDel {
        /// Its name.
        name: String,
    },
    /// Every port with its settings, state and counters.
    ShowPorts,
    /// The MAC table, optionally of one port and/or one VLAN.
    ShowFdb {
        /// Only entries on this port.
        #[serde(default)]
        port: Option<String>,
        /// Only entries in this VLAN.
        #[serde(default)]
        vlan: Option<u32>,
    },
    /// A static MAC table entry.
    FdbAdd {
        /// The port.
        port: String,
        /// The MAC.
        mac: String,
        /// The VLAN (default: every VLAN the port carries).
        #[serde(default)]
        vlan: Option<u32>,
    },
    /// Remove a MAC table entry, static or learned.
    FdbDel {
        /// The MAC.
        mac: String,
        /// The VLAN (default: VLAN 0 on a VLAN-unaware bridge, else every VLAN).
        #[serde(default)]
        vlan: Option<u32>,
    },
    /// Forget learned entries (of one port, or all).
    FdbFlush {
        /// Only this port's.
        #[serde(default)]
        port: Option<String>,
    },
    /// Re-read the configuration file and apply the difference.
    Reload,
    /// Every counter now (ports, workers, MAC table, latency).
    ShowStats,
    /// Explain what the bridge does with a frame received on a port, against the live
    /// tables, changing nothing (`hairpin trace`).
    Trace {
        /// The ingress port's name.
        port: String,
        /// The frame.
        frame: TraceFrame,
    },
    /// Stream the frames a port receives and/or sends (`hairpin capture`). The answer
    /// is [`Response::Capturing`]; the same connection then carries a pcapng stream
    /// ([`capture_stream`]) until the capture ends.
    Capture(CaptureRequest),
    /// Add a port mirror (SPAN): copies of its ports' frames go out of its monitor
    /// port, which forwards nothing else from then on.
    MirrorAdd(MirrorSpec),
    /// Remove a port mirror: its copies stop at once, and its monitor port forwards
    /// again (unless it is another mirror's).
    MirrorDel {
        /// Its name.
        name: String,
    },
    /// Every port mirror, with its state and counts.
    ShowMirrors,
}

/// What `hairpin capture` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// The port's name.
    pub port: String,
    /// Frames it receives, sends, or both.
    #[serde(default)]
    pub direction: Direction,
    /// A tcpdump filter expression (pcap-filter(7)); none: every frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// End after this many frames (that passed the filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// End after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// Bytes kept of each frame (default and most: [`MAX_SNAPLEN`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snaplen: Option<u32>,
}

/// The most bytes a capture keeps of a frame (and its default): the longest jumbo frame
/// hairpin carries, with room to spare.
pub const MAX_SNAPLEN: u32 = 65_535;

/// Which of a port's frames a capture (or a mirror) takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// What the port receives (before any tag is pushed or popped).
    In,
    /// What the port sends (as it leaves, tag and all).
    Out,
    /// Both.
    #[default]
    Both,
}

impl Direction {
    /// Whether it takes the frames the port receives.
    pub const fn takes_in(self) -> bool {
        matches!(self, Self::In | Self::Both)
    }

    /// Whether it takes the frames the port sends.
    pub const fn takes_out(self) -> bool {
        matches!(self, Self::Out | Self::Both)
    }
}

/// The capture stream that follows [`Response::Capturing`] on the connection of a
/// [`Request::Capture`]: one pcapng section (the format is pcapng's, read and written
/// with the `pcap-file` crate).
///
/// - A section header block, then one interface description block: link type Ethernet
///   (1), `if_name` the port's name, `if_tsresol` 9 (nanoseconds), the snap length.
/// - One enhanced packet block per frame, in the order hairpin saw them: its `epb_flags`
///   direction bits say inbound (1) or outbound (2); a frame hairpin dropped carries the
///   comment `dropped: REASON` (the reason by its counter's name, as in `show stats`);
///   a frame the XDP program's fast path carried carries the comment `fast path`.
/// - When the capture ends (its count, its seconds, the port removed, hairpin stopping,
///   or the client shutting down its side of the connection: how `hairpin capture` stops
///   on Ctrl-C), one interface statistics block: `isb_starttime`/`isb_endtime`,
///   `isb_ifrecv` the port's frames in the capture's directions hairpin saw,
///   `isb_filteraccept` those that passed the filter, `isb_osdrop` those lost (see
///   below), `isb_usrdeliv` those written to the stream; and the comment [`LOST_COMMENT`]
///   with the two causes of loss. Then hairpin closes the connection.
///
/// Frames are lost (and only counted) when hairpin's capture rings are full (the frame
/// path never waits for a capture) or when the client reads too slowly (hairpin holds at
/// most a few MiB for it, and never blocks on it).
pub mod capture_stream {
    /// `epb_flags` of a frame the port received.
    pub const INBOUND: u32 = 1;
    /// `epb_flags` of a frame the port sent.
    pub const OUTBOUND: u32 = 2;
    /// Comment prefix of a dropped frame: `dropped: REASON`.
    pub const DROPPED: &str = "dropped: ";
    /// Comment of a frame the fast path carried.
    pub const FAST_PATH: &str = "fast path";
    /// The statistics block's comment: `lost: RINGS in hairpin's capture rings, SLOW to a
    /// slow reader`.
    pub const LOST_COMMENT: &str =
        "lost: {rings} in hairpin's capture rings, {slow} to a slow reader";

    /// The statistics block's comment for these counts.
    pub fn lost_comment(rings: u64, slow: u64) -> String {
        LOST_COMMENT
            .replace("{rings}", &rings.to_string())
            .replace("{slow}", &slow.to_string())
    }
}

/// The frame `hairpin trace` asks about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TraceFrame {
    /// A frame described by its header.
    Described {
        /// Source MAC.
        src: String,
        /// Destination MAC.
        dst: String,
        /// An 802.1Q tag's VLAN id (none: untagged; 0: priority-tagged).
        #[serde(default)]
        vlan: Option<u16>,
        /// The tag's priority (PCP, 0 to 7).
        #[serde(default)]
        pcp: u8,
        /// The ethertype (default IPv4, 0x0800).
        #[serde(default = "ipv4")]
        ethertype: u16,
    },
    /// A whole frame in hexadecimal, from its destination MAC on.
    Hex(String),
}

fn ipv4() -> u16 {
    0x0800
}

/// `hairpin trace`'s answer: each step as fields, and the whole in lines of text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceReport {
    /// The ingress port.
    pub port: String,
    /// The bridge's mode.
    pub mode: String,
    /// The frame's VLAN as ingress classified it (absent: not VLAN-aware, or not
    /// classified).
    pub vlan: Option<u16>,
    /// The anti-spoofing check: absent with no list on the port.
    pub source_allowed: Option<bool>,
    /// What learning the source would do: `new`, `moved from PORT`, `refreshed`,
    /// `static on PORT`, `refused (max_macs N)`, `reflection (lives on PORT)`, `none`.
    pub learning: String,
    /// The port the destination's MAC table entry names, if any.
    pub destination_port: Option<String>,
    /// The rule that decided, in words.
    pub rule: String,
    /// `forward`, `flood` or `drop`.
    pub action: String,
    /// The ingress port's limits the frame is subject to (its policing, its class's
    /// storm control), in words: whether it is within them depends on the meters'
    /// state, which a trace does not read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
    /// Why it is dropped, by its counter's name.
    pub drop_reason: Option<String>,
    /// Where it leaves, with the tag action on each port.
    pub egress: Vec<TraceEgress>,
    /// `fast` (the XDP program's fast path) or `workers`.
    pub path: String,
    /// Why the workers carry it (absent on the fast path or for a drop).
    pub path_reason: Option<String>,
    /// The steps, in words, one per line.
    pub lines: Vec<String>,
}

/// One egress port of a traced frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEgress {
    /// The port.
    pub port: String,
    /// What happens to the tag: `keep`, `push VID 10`, `pop`, `rewrite VID 10 PCP 3`.
    pub tag: String,
}

/// What the server answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// A change was made.
    Done {
        /// What was done.
        message: String,
    },
    /// `show ports`.
    Ports {
        /// One per port, by slot.
        ports: Vec<PortInfo>,
    },
    /// `show fdb`.
    Fdb {
        /// The entries, sorted by port, VLAN and MAC.
        entries: Vec<FdbEntry>,
    },
    /// `show stats`.
    Stats(Box<Stats>),
    /// `trace`.
    Trace(Box<TraceReport>),
    /// `capture`: the capture runs; its pcapng stream follows on this connection
    /// ([`capture_stream`]).
    Capturing {
        /// The port.
        port: String,
        /// Its directions.
        direction: Direction,
    },
    /// `show mirrors`.
    Mirrors {
        /// In the order they were added (the configuration's first).
        mirrors: Vec<MirrorInfo>,
    },
    /// The request was refused; nothing changed.
    Error {
        /// Why.
        message: String,
    },
}

/// One port mirror, as `hairpin show mirrors` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorInfo {
    /// Its name.
    pub name: String,
    /// The mirrored ports.
    pub from: Vec<String>,
    /// Which of their frames are copied.
    pub direction: Direction,
    /// The monitor port.
    pub to: String,
    /// `active` (copies go out), or `waiting`: one of its ports is absent (its
    /// interface gone) or not a port now, listed in `missing`; it resumes when they
    /// are all back. Its monitor port forwards nothing either way.
    pub state: String,
    /// The ports it waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// From the configuration (`config`) or `hairpin mirror add` (`runtime`).
    pub origin: String,
    /// Copies sent out of the monitor port since it last became active.
    pub copies: u64,
    /// Copies lost since then (hairpin's rings or the monitor port's queue full).
    pub lost: u64,
}

/// One port, as `hairpin show ports` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Its name.
    pub name: String,
    /// Its interface's alias, if it has one: hairpin-cni writes the pod's container ID
    /// and interface there (`cni CONTAINER_ID IFNAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Its slot in the bridge.
    pub slot: u16,
    /// `up`, `down` (no carrier: frames for it are dropped) or `absent` (configured, no
    /// such interface now; attached again when it appears).
    pub state: String,
    /// `uplink` or `downlink`.
    pub role: String,
    /// Its VLAN setting (`access VLAN 10`, `trunk of 2 VLAN(s), native VLAN 1`), if any.
    pub vlans: Option<String>,
    /// Reflective relay.
    pub hairpin: bool,
    /// Anti-spoofing list.
    pub allowed_macs: Vec<String>,
    /// MAC table entries the port has learned now (static ones not counted).
    #[serde(default)]
    pub learned_macs: u32,
    /// The most it may learn (0: no limit).
    #[serde(default)]
    pub max_macs: u32,
    /// Sources not learned because the port was at `max_macs` (their frames were
    /// forwarded all the same), since the port was attached.
    #[serde(default)]
    pub macs_refused: u64,
    /// From the configuration (`config`) or `hairpin port add` (`runtime`).
    pub origin: String,
    /// Interface index (absent: none).
    pub ifindex: Option<u32>,
    /// RX queues served.
    pub queues: u32,
    /// `native` or `generic`.
    pub xdp: Option<String>,
    /// AF_XDP bound zero-copy (else copy mode).
    pub zero_copy: bool,
    /// The interface's MTU.
    pub mtu: Option<u32>,
    /// The largest frame hairpin carries through it (Ethernet header included, FCS
    /// not): one UMEM frame, or a chain of them where its sockets take multi-buffer.
    #[serde(default)]
    pub largest_frame: Option<u32>,
    /// Counters since the port was attached.
    pub counters: PortCounters,
    /// The same, queue by queue (RX queue `i` is served by worker `i`).
    pub per_queue: Vec<QueueCounters>,

    /// Storm control and ingress policing in force, by setting (`police_rate`,
    /// `police_pps`, `storm_broadcast`, `storm_multicast`, `storm_unknown_unicast`);
    /// absent: none. Their drops are the `storm` and `policed` counters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, LimitInfo>,
    /// The IP source guard's prefixes (`allow_ip`; none: no guard).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<String>,
}

/// One limit of a port in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitInfo {
    /// Per second: bits for `police_rate`, frames for the others.
    pub rate: u64,
    /// At once: bytes for `police_rate`, frames for the others (the default where
    /// none was given).
    pub burst: u64,
}

/// One queue's share of a port's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounters {
    /// The queue (and worker) index.
    pub queue: u32,
    /// Frames received on it.
    pub rx_packets: u64,
    /// Bytes received on it.
    pub rx_bytes: u64,
    /// Frames sent on it.
    pub tx_packets: u64,
    /// Bytes sent on it.
    pub tx_bytes: u64,
    /// Drops of frames received on it (hairpin's and the kernel's).
    pub drops: u64,
}

/// Ports removed while running under one name: how often, and their counters summed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartedPort {
    pub name: String,
    pub removals: u64,
    pub counters: PortCounters,
}

/// One MAC table entry, as `hairpin show fdb` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// The address.
    pub mac: String,
    /// The VLAN (0 on a VLAN-unaware bridge).
    pub vlan: u16,
    /// The port's name.
    pub port: String,
    /// Seconds since last seen (0 for static entries).
    pub age: u32,
    /// Configured, never aged or moved.
    #[serde(rename = "static")]
    pub is_static: bool,
}

/// Every counter, as `hairpin show stats` gives it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The version of the running hairpin (named apart from the protocol's `version`,
    /// which shares the answer's JSON object).
    #[serde(rename = "hairpin_version")]
    pub version: String,
    /// When it started, in seconds since the Unix epoch.
    pub start_time_s: f64,
    /// Seconds the bridge has run.
    pub uptime_s: f64,
    /// The ports.
    pub ports: Vec<PortInfo>,
    /// Ports removed while running, with their final counters, summed by name (the
    /// oldest names summed into one row, `(earlier)`, so the list stays bounded).
    pub departed: Vec<DepartedPort>,
    /// One per worker (RX queue index).
    pub workers: Vec<WorkerStats>,
    /// The CPU clock (Hz) that turns busy time into cycles, when the kernel tells it.
    pub cpu_hz: Option<u64>,
    /// MAC table entries.
    pub fdb_entries: usize,
    /// MAC table capacity.
    pub fdb_capacity: usize,
    /// Learns refused for a full bucket.
    pub fdb_full: u64,
    /// Learned addresses that moved to another port.
    pub fdb_moves: u64,
    /// RX-read-to-TX-submit time per busy turn, all workers, since start (ns).
    pub latency_ns: Latency,
    /// Captures running now (`hairpin capture`).
    #[serde(default)]
    pub captures: usize,
    /// The port mirrors, with their counts.
    #[serde(default)]
    pub mirrors: Vec<MirrorInfo>,
    /// hairpin's own log lines dropped since start because stderr refused them (a
    /// closed pipe, journald restarting).
    #[serde(default)]
    pub log_lines_dropped: u64,
}

impl PortInfo {
    /// An attached, up downlink called `name` with `counters`, one queue and nothing
    /// else set: for tests and examples.
    pub fn example(name: &str, counters: PortCounters) -> Self {
        Self {
            name: name.into(),
            alias: None,
            slot: 0,
            state: "up".into(),
            role: "downlink".into(),
            vlans: None,
            hairpin: false,
            allowed_macs: Vec::new(),
            learned_macs: 0,
            max_macs: 0,
            macs_refused: 0,
            origin: "config".into(),
            ifindex: None,
            queues: 1,
            xdp: None,
            zero_copy: false,
            mtu: None,
            largest_frame: None,
            counters,
            per_queue: Vec::new(),
            limits: BTreeMap::new(),
            allowed_ips: Vec::new(),
        }
    }
}

/// Parses one request line, checking the version.
pub fn parse_request(line: &str) -> Result<Request, String> {
    #[derive(Deserialize)]
    struct Version {
        version: Option<u32>,
    }
    let version: Version =
        serde_json::from_str(line).map_err(|e| format!("malformed request: {e}"))?;
    match version.version {
        Some(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "protocol version {v} is not spoken here (this hairpin speaks version {VERSION})"
            ));
        }
        None => return Err("malformed request: no \"version\"".into()),
    }
    serde_json::from_str::<RequestLine>(line)
        .map(|r| r.request)
        .map_err(|e| format!("malformed request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_named() {
        let line = serde_json::to_string(&RequestLine {
            version: VERSION,
            request: Request::PortAdd(PortSpec {
                name: "vf3".into(),
                vlan: Some(10),
                ..PortSpec::default()
            }),
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"version":1,"request":"port_add","name":"vf3","uplink":false,"vlan":10,"hairpin":false}"#
        );
        assert!(matches!(parse_request(&line), Ok(Request::PortAdd(p)) if p.name == "vf3"));
        assert_eq!(
            parse_request(r#"{"version":1,"request":"show_fdb","vlan":5}"#),
            Ok(Request::ShowFdb {
                port: None,
                vlan: Some(5)
            })
        );
        let err = |line: &str| parse_request(line).unwrap_err();
        assert!(err("{").starts_with("malformed request"));
        assert!(err(r#"{"request":"show_ports"}"#).contains("no \"version\""));
        assert!(err(r#"{"version":7,"request":"show_ports"}"#).contains("version 7"));
        assert!(err(r#"{"version":1,"request":"explode"}"#).contains("unknown variant"));
        assert!(err(r#"{"version":1,"request":"port_del"}"#).contains("missing field"));
        assert!(
            err(r#"{"version":1,"request":"port_add","name":"a","colour":1}"#)
                .contains("unknown field")
        );
    }

    #[test]
    fn mirror_requests_take_the_spec_flat_both_directions_by_default() {
        let line =
            r#"{"version":1,"request":"mirror_add","name":"m1","from":["vm1","vm2"],"to":"mon"}"#;
        assert_eq!(
            parse_request(line),
            Ok(Request::MirrorAdd(MirrorSpec {
                name: "m1".into(),
                from: vec!["vm1".into(), "vm2".into()],
                direction: Direction::Both,
                to: "mon".into(),
            }))
        );
        assert_eq!(
            parse_request(r#"{"version":1,"request":"mirror_del","name":"m1"}"#),
            Ok(Request::MirrorDel { name: "m1".into() })
        );
        assert_eq!(
            parse_request(r#"{"version":1,"request":"show_mirrors"}"#),
            Ok(Request::ShowMirrors)
        );
        let err = parse_request(
            r#"{"version":1,"request":"mirror_add","name":"m1","from":["a"],"to":"b","dir":"in"}"#,
        )
        .unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn a_trace_request_takes_a_described_frame_ipv4_by_default_or_hex() {
        let line = r#"{"version":1,"request":"trace","port":"vm1","frame":{"described":{"src":"02:00:00:00:00:0a","dst":"ff:ff:ff:ff:ff:ff","vlan":10}}}"#;
        assert_eq!(
            parse_request(line),
            Ok(Request::Trace {
                port: "vm1".into(),
                frame: TraceFrame::Described {
                    src: "02:00:00:00:00:0a".into(),
                    dst: "ff:ff:ff:ff:ff:ff".into(),
                    vlan: Some(10),
                    pcp: 0,
                    ethertype: 0x0800,
                },
            })
        );
        let hex = r#"{"version":1,"request":"trace","port":"vm1","frame":{"hex":"ffff"}}"#;
        assert!(matches!(
            parse_request(hex),
            Ok(Request::Trace { frame: TraceFrame::Hex(h), .. }) if h == "ffff"
        ));
    }
}
