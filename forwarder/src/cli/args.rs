//! The command line's shape (clap): `run` and its options, `demo`, `top`, `watch`, the
//! client commands and `libvirt-hook`.
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use hairpin::control::{
    config::BridgeConfig,
    protocol::{CaptureRequest, Direction, MAX_SNAPLEN, TraceFrame},
    service::DEFAULT_SOCKET,
    spec::{MirrorSpec, PortFlags, PortSpec},
    xdp::{FastFloods, FastPath, XdpAttachMode},
};
use hairpin::{
    datapath::{DatapathConfig, ZeroCopy},
    switch::Mode,
};

/// hairpin: an IEEE 802.1Qbg edge virtual bridge over AF_XDP.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Forward between ports until SIGINT or SIGTERM, then detach and print the counters.
    /// SIGHUP reloads --config, SIGUSR1 prints the counters; the control socket answers
    /// the commands below while it runs.
    Run(Box<RunArgs>),
    /// Build a lab of network namespaces, run hairpin between them and send traffic
    /// through it; everything is removed on exit or Ctrl-C.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Attach the XDP program to ports in pass-through mode (frames still go to the
    /// kernel) and print its per-queue counters every second until Ctrl-C.
    Watch {
        /// Ports to watch, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        ports: Vec<String>,
        /// XDP attach mode.
        #[arg(long, value_enum, default_value_t)]
        xdp_mode: XdpAttachMode,
    },
    /// Add or remove a port of a running hairpin.
    #[command(subcommand)]
    Port(PortCommand),
    /// Show a running hairpin's ports, MAC table, counters or mirrors.
    #[command(subcommand)]
    Show(ShowCommand),
    /// Add or remove a port mirror (SPAN) of a running hairpin: copies of the frames of
    /// some ports go out of a monitor port (to an IDS, a tcpdump), which forwards
    /// nothing else.
    #[command(subcommand)]
    Mirror(MirrorCommand),
    /// Change a running hairpin's MAC table.
    #[command(subcommand)]
    Fdb(FdbCommand),
    /// Make a running hairpin re-read its --config file and apply the difference.
    Reload(Client),
    /// Explain what a running hairpin does with a frame received on PORT, against its
    /// tables now: VLAN, anti-spoofing, learning, lookup, the mode's rule, the egress
    /// ports with their tag actions or the drop reason, and the path (fast or workers).
    /// Changes nothing, the MAC table included.
    Trace(Box<TraceArgs>),
    /// Capture the frames a running hairpin's PORT receives and sends, as tcpdump does:
    /// one line per frame, or the frames to a file (-w, pcapng). The XDP fast path's
    /// frames are there too, and the frames hairpin drops with their reason. Ctrl-C
    /// stops it; the summary (frames seen, captured, lost) goes to stderr.
    Capture(Box<CaptureArgs>),
    /// libvirt's qemu hook (install `contrib/libvirt-hook-qemu` as
    /// /etc/libvirt/hooks/qemu): attaches a domain's taps to hairpin with the settings
    /// of its `<metadata>`'s `<hairpin:port>`s when it starts, detaches them when it
    /// stops. Reads the domain XML on stdin; see the README, "On a KVM host".
    LibvirtHook(super::libvirt::HookArgs),
    /// A live view of a running hairpin, redrawn in place: per port packets/s, bits/s and
    /// drops/s, per worker busy % and cycles/frame, the interval's latency, the MAC table.
    Top {
        /// Seconds between frames (the rates are over this interval).
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
        /// Print one frame (two samples an interval apart) and exit.
        #[arg(long)]
        once: bool,
        /// The control socket of the hairpin to watch.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
}

/// A `--interval` in seconds: 0.1 to 3600.
fn parse_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.1..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!("{text:?}: give seconds from 0.1 to 3600")),
    }
}

/// How a client command reaches hairpin.
#[derive(Clone, Debug, Args)]
pub(crate) struct Client {
    /// The control socket of the hairpin to talk to.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
    /// Print the answer as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `hairpin trace`: the frame, described or in hexadecimal.
#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The ingress port.
    pub(crate) port: String,
    /// Source MAC.
    #[arg(long, required_unless_present = "hex")]
    pub(crate) src: Option<String>,
    /// Destination MAC.
    #[arg(long, required_unless_present = "hex")]
    pub(crate) dst: Option<String>,
    /// An 802.1Q tag: VLAN id and, optionally, priority (`10`, `10:5`; `0:5` a priority
    /// tag). Untagged without it.
    #[arg(long, value_name = "VID[:PCP]", value_parser = parse_tag)]
    pub(crate) vlan: Option<(u16, u8)>,
    /// The ethertype, after any tag.
    #[arg(long, value_parser = parse_ethertype, default_value = "0x0800")]
    pub(crate) ethertype: u16,
    /// A whole frame in hexadecimal (from its destination MAC; spaces and colons are
    /// ignored), instead of --src/--dst/--vlan/--ethertype.
    #[arg(long, conflicts_with_all = ["src", "dst", "vlan"])]
    pub(crate) hex: Option<String>,
    #[command(flatten)]
    pub(crate) client: Client,
}

impl TraceArgs {
    /// The frame to ask about.
    pub(crate) fn frame(&self) -> TraceFrame {
        match &self.hex {
            Some(hex) => TraceFrame::Hex(hex.clone()),
            None => TraceFrame::Described {
                src: self.src.clone().unwrap_or_default(),
                dst: self.dst.clone().unwrap_or_default(),
                vlan: self.vlan.map(|(vid, _)| vid),
                pcp: self.vlan.map_or(0, |(_, pcp)| pcp),
                ethertype: self.ethertype,
            },
        }
    }
}

/// `hairpin capture`: the port, which of its frames, how many, and where they go.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("direction").args(["inbound", "outbound", "both"])))]
pub(crate) struct CaptureArgs {
    /// The port.
    pub(crate) port: String,
    /// Only the frames the port receives (as they arrive, before any tag is pushed or
    /// popped).
    #[arg(long = "in")]
    pub(crate) inbound: bool,
    /// Only the frames the port sends (as they leave, tag and all).
    #[arg(long = "out")]
    pub(crate) outbound: bool,
    /// The frames it receives and those it sends (the default).
    #[arg(long)]
    pub(crate) both: bool,
    /// Stop after this many frames (that passed the filter).
    #[arg(short = 'c', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) seconds: Option<u64>,
    /// Bytes kept of each frame, 1 to 65535 (default: 65535, whole frames).
    #[arg(short = 's', long, value_name = "N", value_parser = parse_snaplen)]
    pub(crate) snaplen: Option<u32>,
    /// Write the frames to FILE (`-`: stdout, e.g. `-w - | tcpdump -r - -nn`) as pcapng,
    /// with each frame's direction and hairpin's comments (`dropped: REASON`, `fast
    /// path`) and the statistics at the end, instead of printing a line per frame.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub(crate) write: Option<PathBuf>,
    /// With -w: classic pcap (nanosecond timestamps) instead of pcapng, for tools that
    /// read nothing else. Each frame's direction and comments (drop reason, fast path)
    /// and the statistics are lost there.
    #[arg(long, requires = "write")]
    pub(crate) pcap: bool,
    /// The control socket of the hairpin to capture from.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
    /// A tcpdump filter (pcap-filter(7)), its words joined by spaces as tcpdump does,
    /// e.g. `tcp port 80 and not host 10.0.0.1`; none: every frame.
    #[arg(value_name = "FILTER")]
    pub(crate) filter: Vec<String>,
}

impl CaptureArgs {
    /// Which of the port's frames it asks for.
    pub(crate) fn direction(&self) -> Direction {
        match (self.inbound, self.outbound) {
            (true, _) => Direction::In,
            (_, true) => Direction::Out,
            _ => Direction::Both,
        }
    }

    /// The request hairpin is sent: it enforces the count, seconds and filter.
    pub(crate) fn request(&self) -> CaptureRequest {
        CaptureRequest {
            port: self.port.clone(),
            direction: self.direction(),
            filter: (!self.filter.is_empty()).then(|| self.filter.join(" ")),
            count: self.count,
            seconds: self.seconds,
            snaplen: self.snaplen,
        }
    }
}

/// A `--snaplen` of `hairpin capture`: 1 to [`MAX_SNAPLEN`] bytes.
fn parse_snaplen(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_SNAPLEN).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?}: give the bytes kept of each frame, 1 to {MAX_SNAPLEN} \
             (without -s, whole frames are kept)"
        )),
    }
}

/// A `--vlan VID[:PCP]` of `hairpin trace`.
fn parse_tag(text: &str) -> Result<(u16, u8), String> {
    let (vid, pcp) = text.split_once(':').unwrap_or((text, "0"));
    match (vid.parse::<u16>(), pcp.parse::<u8>()) {
        (Ok(v), Ok(p)) if v <= 4094 && p <= 7 => Ok((v, p)),
        _ => Err(format!(
            "{text:?}: VID 0 to 4094, then optionally :PCP 0 to 7"
        )),
    }
}

/// An `--ethertype`: hexadecimal with `0x`, or decimal.
fn parse_ethertype(text: &str) -> Result<u16, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?}: an ethertype, e.g. 0x0800"))
}

#[derive(Debug, Subcommand)]
// Parsed once per command: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum PortCommand {
    /// Attach an interface as a port.
    Add {
        #[command(flatten)]
        spec: PortSpec,
        #[command(flatten)]
        client: Client,
    },
    /// Detach a port and forget it.
    Del {
        /// The interface.
        name: String,
        #[command(flatten)]
        client: Client,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ShowCommand {
    /// Every port: state, role, VLANs, queues, XDP and AF_XDP mode, counters.
    Ports(Client),
    /// The MAC table, as `bridge fdb show` lists it.
    Fdb {
        /// Only this port's entries.
        #[arg(long)]
        port: Option<String>,
        /// Only this VLAN's entries.
        #[arg(long)]
        vlan: Option<u32>,
        #[command(flatten)]
        client: Client,
    },
    /// Every counter: ports, workers, MAC table, latency.
    Stats(Client),
    /// Every port mirror: its ports, direction, state, copies and losses.
    Mirrors(Client),
}

#[derive(Debug, Subcommand)]
pub(crate) enum MirrorCommand {
    /// Copy the frames of the --from ports out of the --to port (e.g. `hairpin mirror
    /// add ids --from vm1,vm2 --to mon0`). The monitor port forwards nothing else from
    /// then on: what it receives is dropped (`monitor_port`), it learns nothing and no
    /// flood reaches it. The uplink may be mirrored, but is never a monitor port.
    Add {
        #[command(flatten)]
        spec: MirrorSpec,
        #[command(flatten)]
        client: Client,
    },
    /// Remove a mirror: its copies stop at once, and its monitor port forwards again.
    Del {
        /// The mirror's name.
        name: String,
        #[command(flatten)]
        client: Client,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum FdbCommand {
    /// A static entry: MAC lives on port IF.
    Add {
        /// The port.
        port: String,
        /// The MAC.
        mac: String,
        /// In this VLAN only (default: every VLAN of the port).
        #[arg(long)]
        vlan: Option<u32>,
        #[command(flatten)]
        client: Client,
    },
    /// Remove an entry, static or learned.
    Del {
        /// The MAC.
        mac: String,
        /// In this VLAN only (default: every VLAN).
        #[arg(long)]
        vlan: Option<u32>,
        #[command(flatten)]
        client: Client,
    },
    /// Forget learned entries.
    Flush {
        /// Only this port's.
        #[arg(long)]
        port: Option<String>,
        #[command(flatten)]
        client: Client,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The whole bridge from a TOML file (see the README); no other option but --stats,
    /// --socket and --metrics goes with it. SIGHUP or `hairpin reload` re-reads it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Ports to bridge, comma-separated: the downlinks (VFs, macvlans, veths, taps).
    /// More can be added while it runs (`hairpin port add`).
    #[arg(long, value_delimiter = ',', conflicts_with = "config")]
    pub(crate) ports: Vec<String>,
    /// Switching mode.
    #[arg(long, conflicts_with = "config", value_enum, default_value_t)]
    pub(crate) mode: Mode,
    /// The port towards the physical network (required by vepa and private).
    #[arg(long, conflicts_with = "config")]
    pub(crate) uplink: Option<String>,
    /// Each port's settings: `--vlan PORT=VID`, `--allow PORT=MAC`, ...
    #[command(flatten)]
    pub(crate) port_flags: PortFlags,
    /// RX queue indices to serve, one worker each (default: the most any port has).
    #[arg(long, conflicts_with = "config")]
    pub(crate) queues: Option<u32>,
    /// Cores for the workers, queue i on the i-th: e.g. `2,3` or `2-5`.
    #[arg(long, conflicts_with = "config", value_parser = parse_cores)]
    pub(crate) cores: Option<Cores>,
    /// XDP attach mode: native falls back to generic under `auto`.
    #[arg(long, conflicts_with = "config", value_enum, default_value_t)]
    pub(crate) xdp_mode: XdpAttachMode,
    /// Kernel fast path: learned unicast forwarded inside the XDP program, straight to
    /// ports whose drivers take redirected frames; everything else by the workers.
    /// `auto` sends only to ports in AF_XDP copy mode (see README, Fast path).
    #[arg(long, conflicts_with = "config", value_enum, default_value_t)]
    pub(crate) fast_path: FastPath,
    /// With the fast path: broadcast, multicast and unknown unicast from a learned
    /// source flooded inside XDP too, where the kernel reaches every port of the VLAN
    /// (see README, Fast path).
    #[arg(long, conflicts_with = "config", value_enum, default_value_t)]
    pub(crate) fast_floods: FastFloods,
    /// AF_XDP zero-copy: `auto` uses it where the driver can.
    #[arg(long, conflicts_with = "config", value_enum, default_value_t)]
    pub(crate) zero_copy: ZeroCopy,
    /// Entries per ring (RX, TX, fill, completion).
    #[arg(long, conflicts_with = "config", default_value_t = DatapathConfig::default().ring_size)]
    pub(crate) ring_size: u32,
    /// UMEM frame size in bytes (2048 or 4096).
    #[arg(long, conflicts_with = "config", default_value_t = DatapathConfig::default().frame_size)]
    pub(crate) frame_size: u32,
    /// Frames of each worker's first UMEM (default: full rings for 4 busy ports and 64
    /// frames for each port given, 4 to 32), shared by the ports' fill rings as their
    /// traffic asks; ports past what it holds go into UMEMs of 32 ports each.
    #[arg(long, conflicts_with = "config")]
    pub(crate) umem_frames: Option<u32>,
    /// Relay frames to the reserved group addresses 01:80:c2:00:00:0N whose bit N is set
    /// (e.g. 0x4000 for LLDP, 0x8 for 802.1X; none by default, as a bridge should). Pause
    /// (bit 1) and LACP (bit 2) are never relayed.
    #[arg(long, conflicts_with = "config", value_name = "MASK", value_parser = parse_mask, default_value = "0")]
    pub(crate) group_fwd_mask: u16,
    /// MAC table capacity (1 to 16777216).
    #[arg(long, conflicts_with = "config", default_value_t = BridgeConfig::default().fdb_capacity)]
    pub(crate) fdb_size: usize,
    /// Seconds a learned MAC lives unseen (1 or more).
    #[arg(long, conflicts_with = "config", default_value_t = BridgeConfig::default().fdb_max_age)]
    pub(crate) fdb_age: u32,
    /// Workers spin on their rings instead of sleeping when idle: lowest latency and no
    /// wake-up delays, at the price of a busy core each.
    #[arg(long, conflicts_with = "config")]
    pub(crate) busy_poll: bool,
    /// Print the counters every this many seconds (0: only at exit and on SIGUSR1).
    #[arg(long, default_value_t = 0)]
    pub(crate) stats: u64,
    /// The control socket to serve.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9417; off by
    /// default). Anyone who can reach it can read every counter: keep it on loopback or
    /// a management network.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// Keep the ports added at run time (`hairpin port add`, hairpin-cni) in
    /// DIR/ports.json and add them again at the next start (off by default: run-time
    /// ports last until hairpin stops).
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
}

/// A `--cores` list.
#[derive(Clone, Debug)]
pub(crate) struct Cores(pub(crate) Vec<usize>);

fn parse_cores(text: &str) -> Result<Cores, String> {
    let mut cores = Vec::new();
    for part in text.split(',').map(str::trim) {
        let parse = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| format!("{s:?} is not a core number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if a > b {
                    return Err(format!("{part:?}: range runs backwards"));
                }
                cores.extend(a..=b);
            }
            None => cores.push(parse(part)?),
        }
    }
    Ok(Cores(cores))
}

/// A `--group-fwd-mask`: decimal, or hexadecimal with `0x`.
fn parse_mask(text: &str) -> Result<u16, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?}: a 16-bit mask, e.g. 0x4000 for LLDP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_core_lists_and_ranges() {
        assert_eq!(parse_cores("0").unwrap().0, vec![0]);
        assert_eq!(parse_cores("2,3").unwrap().0, vec![2, 3]);
        assert_eq!(parse_cores("1-3,7").unwrap().0, vec![1, 2, 3, 7]);
        assert!(parse_cores("3-1").is_err());
        assert!(parse_cores("a").is_err());
        assert!(parse_cores("").is_err());
    }

    #[test]
    fn trace_takes_a_described_or_a_hex_frame() {
        let cli = Cli::try_parse_from([
            "hairpin",
            "trace",
            "vm1",
            "--src",
            "02:00:00:00:00:0a",
            "--dst",
            "02:00:00:00:00:0b",
            "--vlan",
            "10:5",
        ])
        .unwrap();
        let Command::Trace(args) = cli.command else {
            panic!("not a trace")
        };
        assert_eq!(
            args.frame(),
            TraceFrame::Described {
                src: "02:00:00:00:00:0a".into(),
                dst: "02:00:00:00:00:0b".into(),
                vlan: Some(10),
                pcp: 5,
                ethertype: 0x0800,
            }
        );
        let cli = Cli::try_parse_from(["hairpin", "trace", "vm1", "--hex", "ffff"]).unwrap();
        let Command::Trace(args) = cli.command else {
            panic!("not a trace")
        };
        assert_eq!(args.frame(), TraceFrame::Hex("ffff".into()));
        assert!(Cli::try_parse_from(["hairpin", "trace", "vm1", "--src", "x"]).is_err());
        assert!(parse_tag("4095").is_err());
        assert!(parse_tag("10:8").is_err());
        assert_eq!(parse_ethertype("0x86dd"), Ok(0x86dd));
    }

    fn capture(words: &[&str]) -> Result<CaptureArgs, clap::Error> {
        let cli = Cli::try_parse_from(["hairpin", "capture"].iter().chain(words))?;
        let Command::Capture(args) = cli.command else {
            panic!("not a capture")
        };
        Ok(*args)
    }

    #[test]
    fn capture_takes_a_direction_limits_and_a_trailing_filter() {
        let args = capture(&["vf0"]).unwrap();
        assert_eq!(
            args.request(),
            CaptureRequest {
                port: "vf0".into(),
                direction: Direction::Both,
                filter: None,
                count: None,
                seconds: None,
                snaplen: None,
            }
        );
        assert!(args.write.is_none() && !args.pcap);
        let args = capture(&[
            "vf0",
            "--in",
            "-c",
            "5",
            "tcp",
            "port",
            "80",
            "--seconds",
            "9",
            "-s",
            "128",
        ])
        .unwrap();
        assert_eq!(
            args.request(),
            CaptureRequest {
                port: "vf0".into(),
                direction: Direction::In,
                filter: Some("tcp port 80".into()),
                count: Some(5),
                seconds: Some(9),
                snaplen: Some(128),
            }
        );
        assert_eq!(
            capture(&["vf0", "--out"]).unwrap().direction(),
            Direction::Out
        );
        assert_eq!(
            capture(&["vf0", "--both"]).unwrap().direction(),
            Direction::Both
        );
        let args = capture(&["vf0", "-w", "-", "--pcap"]).unwrap();
        assert_eq!(args.write.as_deref(), Some(std::path::Path::new("-")));
        assert!(args.pcap);
    }

    #[test]
    fn capture_refuses_two_directions_a_bad_snaplen_and_pcap_without_a_file() {
        assert!(capture(&["vf0", "--in", "--out"]).is_err());
        assert!(capture(&["vf0", "--in", "--both"]).is_err());
        assert!(capture(&["vf0", "--pcap"]).is_err());
        assert!(capture(&["vf0", "-c", "0"]).is_err());
        for bad in ["0", "65536", "x"] {
            let e = capture(&["vf0", "-s", bad]).unwrap_err().to_string();
            assert!(e.contains("1 to 65535"), "{e}");
        }
        assert_eq!(parse_snaplen("65535"), Ok(MAX_SNAPLEN));
        assert_eq!(parse_snaplen("1"), Ok(1));
    }
}
