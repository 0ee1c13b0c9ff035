//! The `hairpin` command line.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use hairpin::{
    control::{
        config::{BridgeSpec, PortArg, PortMac, PortOptions},
        config_file::RunConfig,
        port::Interface,
        preflight,
        xdp::{Steering, XdpAttachMode},
    },
    datapath::{Datapath, DatapathConfig, Snapshot, ZeroCopy, stats::PortQueueSnapshot},
    switch::Mode,
};
use hairpin_common::PortConf;

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
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The whole bridge from a TOML file (see the README); no other option but --stats
    /// goes with it.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Ports to bridge, comma-separated: the downlinks (VFs, macvlans, veths, taps).
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "config",
        conflicts_with = "config"
    )]
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
    /// AF_XDP zero-copy: `auto` uses it where the driver can.
    #[arg(long, conflicts_with = "config", value_enum, default_value_t)]
    zero_copy: ZeroCopy,
    /// Entries per ring (RX, TX, fill, completion).
    #[arg(long, conflicts_with = "config", default_value_t = DatapathConfig::default().ring_size)]
    ring_size: u32,
    /// UMEM frame size in bytes (2048 or 4096).
    #[arg(long, conflicts_with = "config", default_value_t = DatapathConfig::default().frame_size)]
    frame_size: u32,
    /// MAC table capacity.
    #[arg(long, conflicts_with = "config", default_value_t = DatapathConfig::default().fdb_capacity)]
    fdb_size: usize,
    /// Seconds a learned MAC lives unseen.
    #[arg(long, conflicts_with = "config", default_value_t = DatapathConfig::default().fdb_max_age)]
    fdb_age: u32,
    /// Workers spin on their rings instead of sleeping when idle: lowest latency and no
    /// wake-up delays, at the price of a busy core each.
    #[arg(long, conflicts_with = "config")]
    busy_poll: bool,
    /// Print the counters every this many seconds (0: only at exit).
    #[arg(long, default_value_t = 0)]
    stats: u64,
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("hairpin: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => forward(*args),
        Command::Demo { seconds } => demo::run(seconds.map(Duration::from_secs)),
        Command::Watch { ports, xdp_mode } => watch(&ports, xdp_mode),
    }
}

fn lookup_ports(names: &[String]) -> Result<Vec<Interface>> {
    Ok(names
        .iter()
        .map(|name| Interface::lookup(name))
        .collect::<Result<Vec<_>, _>>()?)
}

fn config_from_options(args: &RunArgs) -> Result<(Vec<String>, DatapathConfig)> {
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
    let config = DatapathConfig {
        policies: spec.policies,
        static_macs: spec.static_macs,
        mode: args.mode,
        queues: args.queues,
        cores: args.cores.clone().map(|c| c.0),
        xdp_mode: args.xdp_mode,
        zero_copy: args.zero_copy,
        ring_size: args.ring_size,
        frame_size: args.frame_size,
        fdb_capacity: args.fdb_size,
        fdb_max_age: args.fdb_age,
        busy_poll: args.busy_poll,
    };
    Ok((spec.ports, config))
}

fn forward(args: RunArgs) -> Result<()> {
    let (names, config) = match &args.config {
        Some(path) => {
            let file = RunConfig::load(path)?;
            (file.ports, file.datapath)
        }
        None => config_from_options(&args)?,
    };
    preflight::check()?;
    let ports = lookup_ports(&names)?;
    hairpin::catch_stop_signals().context("installing signal handlers")?;
    let mut datapath = Datapath::start(&ports, &config)?;
    for (p, policy) in datapath.ports().iter().zip(&config.policies) {
        log::info!(
            "{}: {:?}{}{}{}, {} RX queue(s), XDP {}, AF_XDP {}",
            p.iface.name,
            policy.role,
            if policy.hairpin { ", hairpin" } else { "" },
            if policy.allowed_sources.is_empty() {
                String::new()
            } else {
                format!(", {} allowed source MAC(s)", policy.allowed_sources.len())
            },
            match &policy.vlans {
                Some(v) => format!(", {v}"),
                None if datapath.tables().vlans.is_aware() => ", access VLAN 1".to_owned(),
                None => String::new(),
            },
            p.iface.rx_queues,
            p.xdp,
            if p.zero_copy {
                "zero-copy"
            } else {
                "copy mode"
            }
        );
    }
    log::info!(
        "forwarding: mode {}, {} worker(s) on cores {:?}; Ctrl-C to stop",
        config.mode,
        datapath.cores().len(),
        datapath.cores()
    );
    // This thread's housekeeping (ticks, counters) keeps off the workers' cores when
    // there is another, as a DPDK application's main lcore does.
    let others: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .filter(|c| !datapath.cores().contains(c))
        .collect();
    if !others.is_empty()
        && let Err(e) = hairpin::set_affinity(&others)
    {
        log::warn!("could not move the control thread off the workers' cores: {e}");
    }
    let mut last_print = Instant::now();
    while !hairpin::stop_requested() {
        thread::sleep(Duration::from_millis(200));
        datapath.tick();
        if args.stats > 0 && last_print.elapsed() >= Duration::from_secs(args.stats) {
            last_print = Instant::now();
            print_counters(
                &datapath
                    .ports()
                    .iter()
                    .map(|p| p.iface.name.clone())
                    .collect::<Vec<_>>(),
                &datapath.snapshot(),
                false,
            );
        }
    }
    let names: Vec<String> = datapath
        .ports()
        .iter()
        .map(|p| p.iface.name.clone())
        .collect();
    let fin = datapath.stop();
    log::info!("stopped; XDP detached from {} port(s)", names.len());
    print_counters(&names, &fin, true);
    if fin.panicked_workers > 0 {
        anyhow::bail!(
            "{} worker(s) panicked; the counters above may be incomplete",
            fin.panicked_workers
        );
    }
    Ok(())
}

fn print_counters(names: &[String], s: &Snapshot, per_queue: bool) {
    println!(
        "{:<15} {:>12} {:>14} {:>12} {:>14} {:>9} {:>9}  drops",
        "port", "rx_pkts", "rx_bytes", "tx_pkts", "tx_bytes", "flood_cp", "handoff"
    );
    let row = |label: &str, t: &PortQueueSnapshot| {
        println!(
            "{label:<15} {:>12} {:>14} {:>12} {:>14} {:>9} {:>9}  {}",
            t.rx_packets,
            t.rx_bytes,
            t.tx_packets,
            t.tx_bytes,
            t.flood_copies,
            t.handoff_out,
            t.drop_summary()
        );
    };
    for (p, name) in names.iter().enumerate() {
        row(name, &s.port_total(p));
        if per_queue && s.per_queue[p].len() > 1 {
            for (q, t) in s.per_queue[p].iter().enumerate() {
                row(&format!("  q{q}"), t);
            }
        }
    }
    let free: Vec<String> = s
        .free_frames
        .iter()
        .zip(&s.total_frames)
        .map(|(f, t)| format!("{f}/{t}"))
        .collect();
    println!(
        "mac table: {} entries ({} full-bucket misses); free UMEM frames per worker: {}",
        s.fdb_entries,
        s.fdb_full,
        free.join(" ")
    );
    let l = s.latency;
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "latency, RX read to TX submit per busy turn ({} turns): p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        l.count,
        us(l.p50),
        us(l.p99),
        us(l.p999),
        us(l.max)
    );
    let mhz = cpu_mhz();
    for (w, busy) in s.busy_ns.iter().enumerate() {
        let frames = s.worker_rx(w);
        // Busy time includes the kernel's share of the worker's syscalls (copy-mode
        // transmit), as OVS's processing cycles do.
        let per_frame = busy.checked_div(frames).map_or_else(
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
        println!(
            "worker q{w}: {} frames, busy {:.1} ms, {per_frame}, slept {} times",
            frames,
            *busy as f64 / 1e6,
            s.sleeps[w]
        );
    }
}

fn watch(names: &[String], mode: XdpAttachMode) -> Result<()> {
    preflight::check()?;
    let ports = lookup_ports(names)?;
    let mut steering = Steering::load()?;
    for (slot, port) in (0u32..).zip(&ports) {
        steering.configure_port(
            port,
            PortConf {
                slot,
                ..PortConf::default()
            },
        )?;
        let attached = steering.attach(port, mode)?;
        log::info!(
            "{}: XDP attached ({attached}), {} RX queue(s), MAC {}",
            port.name,
            port.rx_queues,
            port.mac
        );
    }
    hairpin::catch_stop_signals().context("installing signal handlers")?;
    while !hairpin::stop_requested() {
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
    log::info!("detached from {} port(s)", ports.len());
    Ok(())
}

/// The CPU clock in MHz, as `/proc/cpuinfo` reports it (the first CPU's), to turn busy
/// time into cycles.
fn cpu_mhz() -> Option<f64> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()
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
    fn cli_is_well_formed() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
