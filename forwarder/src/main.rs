//! The `hairpin` command line: `run` (the switch, as a service), `demo`, `watch`, and the
//! client commands that query and change a running switch over its control socket.
use std::{
    path::PathBuf,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use hairpin::control::{
    bridge::BridgeConfig,
    config::{BridgeSpec, PortArg, PortMac, PortOptions},
    config_file, metrics,
    port::Interface,
    preflight,
    protocol::{PortInfo, PortSpec, Request, Response, Stats},
    service::{self, DEFAULT_SOCKET, Service, ServiceOptions},
    xdp::{FastPath, Steering, XdpAttachMode},
};
use hairpin::{
    datapath::{DatapathConfig, ZeroCopy},
    switch::Mode,
    wire::ETHERNET_HEADER_LEN,
};
use hairpin_common::PortConf;
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

mod demo;

/// hairpin: an IEEE 802.1Qbg edge virtual bridge over AF_XDP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Show a running hairpin's ports, MAC table or counters.
    #[command(subcommand)]
    Show(ShowCommand),
    /// Change a running hairpin's MAC table.
    #[command(subcommand)]
    Fdb(FdbCommand),
    /// Make a running hairpin re-read its --config file and apply the difference.
    Reload(Client),
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
struct Client {
    /// The control socket of the hairpin to talk to.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum PortCommand {
    /// Attach an interface as a port.
    Add {
        /// The interface.
        name: String,
        /// The port towards the physical network.
        #[arg(long)]
        uplink: bool,
        /// Access port of this VLAN.
        #[arg(long, conflicts_with = "trunk")]
        vlan: Option<u32>,
        /// Trunk of these VLANs, e.g. `10,20,100-110`.
        #[arg(long)]
        trunk: Option<String>,
        /// The trunk's native VLAN.
        #[arg(long, requires = "trunk")]
        native: Option<u32>,
        /// Reflective relay.
        #[arg(long)]
        hairpin: bool,
        /// Anti-spoofing: the port may send only from these MACs (repeatable).
        #[arg(long, value_name = "MAC")]
        allow: Vec<String>,
        /// A static MAC table entry on the port (repeatable).
        #[arg(long, value_name = "MAC")]
        static_mac: Vec<String>,
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
enum ShowCommand {
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
}

#[derive(Debug, Subcommand)]
enum FdbCommand {
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
struct RunArgs {
    /// The whole bridge from a TOML file (see the README); no other option but --stats,
    /// --socket and --metrics goes with it. SIGHUP or `hairpin reload` re-reads it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Ports to bridge, comma-separated: the downlinks (VFs, macvlans, veths, taps).
    /// More can be added while it runs (`hairpin port add`).
    #[arg(long, value_delimiter = ',', conflicts_with = "config")]
    ports: Vec<String>,
    /// Switching mode.
    #[arg(long, conflicts_with = "config", value_enum, default_value_t)]
    mode: Mode,
    /// The port towards the physical network (required by vepa and private).
    #[arg(long, conflicts_with = "config")]
    uplink: Option<String>,
    /// Ports with reflective relay: frames may go back out of the port they came in on.
    #[arg(long, conflicts_with = "config", value_delimiter = ',')]
    hairpin: Vec<String>,
    /// Anti-spoofing: PORT=MAC lets PORT send from MAC, and only from the MACs so listed
    /// (repeat the option for more).
    #[arg(long, conflicts_with = "config", value_name = "PORT=MAC")]
    allow: Vec<PortMac>,
    /// A MAC table entry that never ages or moves, in every VLAN of the port (repeatable).
    #[arg(long, conflicts_with = "config", value_name = "PORT=MAC")]
    static_mac: Vec<PortMac>,
    /// Access port: PORT=VID puts PORT in VLAN VID, untagged (repeatable). Once any port
    /// has a VLAN setting, ports without one are access ports of VLAN 1.
    #[arg(long, conflicts_with = "config", value_name = "PORT=VID")]
    vlan: Vec<PortArg>,
    /// Trunk port: PORT=LIST carries the VLANs of LIST tagged, e.g. `up=10,20,100-110`
    /// (repeatable).
    #[arg(long, conflicts_with = "config", value_name = "PORT=LIST")]
    trunk: Vec<PortArg>,
    /// A trunk's native VLAN: PORT=VID carries VLAN VID untagged on trunk PORT.
    #[arg(long, conflicts_with = "config", value_name = "PORT=VID")]
    native: Vec<PortArg>,
    /// RX queue indices to serve, one worker each (default: the most any port has).
    #[arg(long, conflicts_with = "config")]
    queues: Option<u32>,
    /// Cores for the workers, queue i on the i-th: e.g. `2,3` or `2-5`.
    #[arg(long, conflicts_with = "config", value_parser = parse_cores)]
    cores: Option<Cores>,
    /// XDP attach mode: native falls back to generic under `auto`.
    #[arg(long, conflicts_with = "config", value_enum, default_value_t)]
    xdp_mode: XdpAttachMode,
    /// Kernel fast path: learned unicast forwarded inside the XDP program, straight to
    /// ports whose drivers take redirected frames; everything else by the workers.
    /// `auto` sends only to ports in AF_XDP copy mode (see README, Fast path).
    #[arg(long, conflicts_with = "config", value_enum, default_value_t)]
    fast_path: FastPath,
    /// AF_XDP zero-copy: `auto` uses it where the driver can.
    #[arg(long, conflicts_with = "config", value_enum, default_value_t)]
    zero_copy: ZeroCopy,
    /// Entries per ring (RX, TX, fill, completion).
    #[arg(long, conflicts_with = "config", default_value_t = DatapathConfig::default().ring_size)]
    ring_size: u32,
    /// UMEM frame size in bytes (2048 or 4096).
    #[arg(long, conflicts_with = "config", default_value_t = DatapathConfig::default().frame_size)]
    frame_size: u32,
    /// Frames of each worker's first UMEM (default: full rings for 4 busy ports and 64
    /// frames for each port given, 4 to 32), shared by the ports' fill rings as their
    /// traffic asks; ports past what it holds go into UMEMs of 32 ports each.
    #[arg(long, conflicts_with = "config")]
    umem_frames: Option<u32>,
    /// Relay frames to the reserved group addresses 01:80:c2:00:00:0N whose bit N is set
    /// (e.g. 0x4000 for LLDP, 0x8 for 802.1X; none by default, as a bridge should). Pause
    /// (bit 1) and LACP (bit 2) are never relayed.
    #[arg(long, conflicts_with = "config", value_name = "MASK", value_parser = parse_mask, default_value = "0")]
    group_fwd_mask: u16,
    /// MAC table capacity (1 to 16777216).
    #[arg(long, conflicts_with = "config", default_value_t = BridgeConfig::default().fdb_capacity)]
    fdb_size: usize,
    /// Seconds a learned MAC lives unseen (1 or more).
    #[arg(long, conflicts_with = "config", default_value_t = BridgeConfig::default().fdb_max_age)]
    fdb_age: u32,
    /// Workers spin on their rings instead of sleeping when idle: lowest latency and no
    /// wake-up delays, at the price of a busy core each.
    #[arg(long, conflicts_with = "config")]
    busy_poll: bool,
    /// Print the counters every this many seconds (0: only at exit and on SIGUSR1).
    #[arg(long, default_value_t = 0)]
    stats: u64,
    /// The control socket to serve.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9417; off by
    /// default). Anyone who can reach it can read every counter: keep it on loopback or
    /// a management network.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Keep the ports added at run time (`hairpin port add`, hairpin-cni) in
    /// DIR/ports.json and add them again at the next start (off by default: run-time
    /// ports last until hairpin stops).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// A `--cores` list.
#[derive(Clone, Debug)]
struct Cores(Vec<usize>);

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

fn main() {
    init_logging();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("hairpin: error: {e:#}");
        std::process::exit(1);
    }
}

/// Logs go to stderr through `tracing`, filtered by `RUST_LOG` (`info` by default; e.g.
/// `RUST_LOG=hairpin=debug,aya=warn`), coloured only on a terminal, and without a
/// timestamp under systemd, whose journal stamps every line itself.
fn init_logging() {
    use std::io::IsTerminal as _;
    use tracing_subscriber::{EnvFilter, filter::LevelFilter};
    let (filter, bad) = match EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
    {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
    if let Some(e) = bad {
        tracing::warn!("RUST_LOG ignored ({e}); logging at info");
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => forward(*args),
        Command::Demo { seconds } => demo::run(seconds.map(Duration::from_secs)),
        Command::Top {
            interval,
            once,
            socket,
        } => hairpin::top::run(&socket, Duration::from_secs_f64(interval), once),
        Command::Watch { ports, xdp_mode } => watch(&ports, xdp_mode),
        Command::Port(PortCommand::Add {
            name,
            uplink,
            vlan,
            trunk,
            native,
            hairpin,
            allow,
            static_mac,
            client,
        }) => ask(
            &client,
            Request::PortAdd(PortSpec {
                name,
                uplink,
                vlan,
                trunk,
                native,
                hairpin,
                allow,
                static_macs: static_mac,
            }),
        ),
        Command::Port(PortCommand::Del { name, client }) => ask(&client, Request::PortDel { name }),
        Command::Show(ShowCommand::Ports(client)) => ask(&client, Request::ShowPorts),
        Command::Show(ShowCommand::Fdb { port, vlan, client }) => {
            ask(&client, Request::ShowFdb { port, vlan })
        }
        Command::Show(ShowCommand::Stats(client)) => ask(&client, Request::ShowStats),
        Command::Fdb(FdbCommand::Add {
            port,
            mac,
            vlan,
            client,
        }) => ask(&client, Request::FdbAdd { port, mac, vlan }),
        Command::Fdb(FdbCommand::Del { mac, vlan, client }) => {
            ask(&client, Request::FdbDel { mac, vlan })
        }
        Command::Fdb(FdbCommand::Flush { port, client }) => {
            ask(&client, Request::FdbFlush { port })
        }
        Command::Reload(client) => ask(&client, Request::Reload),
    }
}

/// A client command: one request, its answer printed; a refusal is an error.
fn ask(client: &Client, request: Request) -> Result<()> {
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
    // Who a port is, where its interface says (hairpin-cni names the pod there).
    for p in ports {
        if let Some(alias) = &p.alias {
            out += &format!("{}: {alias}\n", p.name);
        }
    }
    out.trim_end().to_owned()
}

fn lookup_ports(names: &[String]) -> Result<Vec<Interface>> {
    Ok(names
        .iter()
        .map(|name| Interface::lookup(name))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The bridge the command line describes.
fn config_from_options(args: &RunArgs) -> Result<BridgeConfig> {
    if args.ports.is_empty() && args.uplink.is_none() {
        // A switch with no port yet: qemu's scripts, libvirt's hook and hairpin-cni add
        // them (`hairpin port add`) as VMs and pods come.
        tracing::info!("no port given: waiting for `hairpin port add`");
    }
    let spec = BridgeSpec::from_options(
        args.mode,
        &PortOptions {
            ports: &args.ports,
            uplink: args.uplink.as_deref(),
            hairpin: &args.hairpin,
            allow: &args.allow,
            static_macs: &args.static_mac,
            vlan: &args.vlan,
            trunk: &args.trunk,
            native: &args.native,
        },
    )?;
    Ok(BridgeConfig {
        mode: args.mode,
        ports: spec.into_ports(),
        fdb_capacity: args.fdb_size,
        fdb_max_age: args.fdb_age,
        xdp_mode: args.xdp_mode,
        queues: args.queues,
        cores: args.cores.clone().map(|c| c.0),
        datapath: DatapathConfig {
            zero_copy: args.zero_copy,
            ring_size: args.ring_size,
            frame_size: args.frame_size,
            busy_poll: args.busy_poll,
            umem_frames: args.umem_frames,
        },
        group_fwd_mask: args.group_fwd_mask,
        fast_path: args.fast_path,
    })
}

/// A `--group-fwd-mask`: decimal, or hexadecimal with `0x`.
fn parse_mask(text: &str) -> Result<u16, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?}: a 16-bit mask, e.g. 0x4000 for LLDP"))
}

/// Output that never holds anyone up: lines go to a thread that writes them to stdout,
/// through a short queue; when stdout is full or closed, lines are dropped (and a
/// closed stdout's EPIPE is ignored), so `hairpin run | head -1` keeps forwarding.
struct Printer {
    lines: Option<mpsc::SyncSender<String>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Printer {
    fn new() -> Self {
        let (lines, inbox) = mpsc::sync_channel::<String>(64);
        let thread = thread::Builder::new()
            .name("hairpin-output".into())
            .spawn(move || {
                use std::io::Write as _;
                let mut stdout = std::io::stdout();
                for text in inbox {
                    let _ = stdout.write_all(text.as_bytes());
                    let _ = stdout.flush();
                }
            })
            .ok();
        Self {
            lines: Some(lines),
            thread,
        }
    }

    fn print(&self, text: String) {
        if let Some(lines) = &self.lines {
            let _ = lines.try_send(text);
        }
    }

    /// Waits up to `timeout` for what was printed to be written.
    fn finish(mut self, timeout: Duration) {
        drop(self.lines.take());
        let deadline = Instant::now() + timeout;
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

fn forward(args: RunArgs) -> Result<()> {
    let (config, config_file) = match &args.config {
        Some(path) => (config_file::load(path)?, Some(path.clone())),
        None => (config_from_options(&args)?, None),
    };
    preflight::check()?;
    // Before anything starts, so that no signal finds the default action (death).
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])
        .context("installing signal handlers")?;
    let mode = config.mode;
    let ports = config.ports.len();
    let service = Service::spawn(
        config,
        ServiceOptions {
            socket: Some(args.socket.clone()),
            config_file,
            state_dir: args.state_dir.clone(),
        },
    )?;
    // This thread, and the threads it starts, keep off the workers' cores too.
    service::keep_off(service.cores());
    let metrics = args
        .metrics
        .map(|addr| metrics::serve(addr, service.caller(), service.cores()))
        .transpose()?;
    tracing::info!(
        "forwarding: mode {mode}, {} worker(s) on cores {:?}; control socket {}{}; Ctrl-C to stop",
        service.cores().len(),
        service.cores(),
        args.socket.display(),
        metrics
            .as_ref()
            .map(|m| format!("; metrics at http://{}/metrics", m.addr()))
            .unwrap_or_default()
    );
    // Every port is attached and the socket answers: ready (Type=notify under systemd).
    systemd(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("forwarding: {ports} port(s), mode {mode}")),
    ]);
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut last_ping = Instant::now();
    let printer = Printer::new();
    let mut last_print = Instant::now();
    'running: loop {
        for signal in signals.pending() {
            match signal {
                SIGHUP => reload(&service),
                SIGUSR1 => print_stats(&service, &printer),
                _ => break 'running,
            }
        }
        if args.stats > 0 && last_print.elapsed() >= Duration::from_secs(args.stats) {
            last_print = Instant::now();
            print_stats(&service, &printer);
        }
        // The watchdog is fed only while the control thread answers: a wedged control
        // plane gets the service restarted.
        if let Some(every) = watchdog
            && last_ping.elapsed() >= every
            && matches!(service.call(Request::ShowPorts), Response::Ports { .. })
        {
            last_ping = Instant::now();
            systemd(&[NotifyState::Watchdog]);
        }
        thread::sleep(Duration::from_millis(50));
    }
    systemd(&[NotifyState::Stopping]);
    drop(metrics);
    let (fin, panicked) = service.stop();
    tracing::info!(
        "stopped; XDP detached from {} port(s)",
        fin.ports.iter().filter(|p| p.state != "absent").count()
    );
    printer.print(counters_text(&fin) + "\n");
    printer.finish(Duration::from_secs(2));
    if panicked > 0 {
        bail!("{panicked} worker(s) panicked; the counters above may be incomplete");
    }
    Ok(())
}

/// SIGHUP: re-reads the configuration file, telling systemd while it does.
fn reload(service: &Service) {
    let mut reloading = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        reloading.push(now);
    }
    systemd(&reloading);
    match service.call(Request::Reload) {
        Response::Done { message } => tracing::info!("SIGHUP: {message}"),
        Response::Error { message } => tracing::warn!("SIGHUP: {message}"),
        _ => {}
    }
    systemd(&[NotifyState::Ready]);
}

/// Tells systemd (when it started us with `Type=notify`; otherwise does nothing).
fn systemd(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("sd_notify: {e}");
    }
}

fn print_stats(service: &Service, printer: &Printer) {
    if let Response::Stats(stats) = service.call(Request::ShowStats) {
        printer.print(counters_text(&stats) + "\n");
    }
}

/// The counters as a table: one row per port (removed ones included), then the MAC
/// table, latency and workers.
fn counters_text(s: &Stats) -> String {
    let mut out = format!(
        "{:<15} {:>12} {:>14} {:>12} {:>14} {:>9} {:>9} {:>9} {:>9}  drops\n",
        "port",
        "rx_pkts",
        "rx_bytes",
        "tx_pkts",
        "tx_bytes",
        "flood_cp",
        "handoff",
        "csum_fin",
        "tso_cut"
    );
    let rows = s
        .ports
        .iter()
        .map(|p| (p.name.as_str(), &p.counters))
        .chain(s.departed.iter().map(|d| (d.name.as_str(), &d.counters)));
    for (name, c) in rows {
        let drops: Vec<String> = c.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
        out += &format!(
            "{name:<15} {:>12} {:>14} {:>12} {:>14} {:>9} {:>9} {:>9} {:>9}  {}\n",
            c.rx_packets,
            c.rx_bytes,
            c.tx_packets,
            c.tx_bytes,
            c.flood_copies,
            c.handoff_out,
            c.checksums_finished,
            c.segmented,
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
    out
}

fn watch(names: &[String], mode: XdpAttachMode) -> Result<()> {
    preflight::check()?;
    let ports = lookup_ports(names)?;
    let mut steering = Steering::load(1)?; // No MAC table: the smallest map.
    for (slot, port) in (0u32..).zip(&ports) {
        steering.configure_port(
            port,
            PortConf {
                slot,
                ..PortConf::default()
            },
        )?;
        let attached = steering.attach(port, mode)?;
        tracing::info!(
            "{}: XDP attached ({attached}), {} RX queue(s), MAC {}",
            port.name,
            port.rx_queues,
            port.mac
        );
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        thread::sleep(Duration::from_secs(1));
        for (slot, port) in (0u32..).zip(&ports) {
            for queue in 0..port.rx_queues {
                let s = steering.queue_stats(slot, queue)?;
                println!(
                    "{:>15} q{queue:<3} rx {:>12} pkts {:>14} bytes  passed {:>12}",
                    port.name, s.rx_packets, s.rx_bytes, s.passed
                );
            }
        }
    }
    steering.detach_all();
    tracing::info!("detached from {} port(s)", ports.len());
    Ok(())
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
    fn cli_is_well_formed() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
