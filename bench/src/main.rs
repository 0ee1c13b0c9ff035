//! `hairpin-bench`: frames per second through hairpin and through its peers (the Linux
//! bridge, Open vSwitch's AF_XDP datapath, dpdk-testpmd's AF_XDP driver), on the same
//! topology, in one run.
//!
//! ```text
//!   ns gen: g0 ──veth── d0 ┐ ns dut: hairpin (xconnect | veb | vepa) or a peer ┌ d1 ──veth── s0 :ns sink
//! ```
//!
//! The generator ([`generator`]) transmits UDP frames stamped with a probe out of g0 from
//! an XDP program, pinned to one core; the forwarder under test runs pinned to the
//! other; the sink ([`sink`]) is an XDP program on s0 that counts every frame and
//! records its one-way latency (a busy-polling user-space sink would starve the
//! forwarder on a 2-vCPU machine). RFC 2889's learning tests ([`rfc2889`]) add a third
//! port. Devices under test are interleaved round by round, since a shared VM's speed
//! drifts; the table shows every round and the median.
use std::{
    path::PathBuf,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use hairpin::{
    control::{port::Interface, preflight, xdp::XdpAttachMode},
    netlab::{Lab, Netns},
};

mod charts;
mod generator;
mod rfc2889;
mod sink;

use sink::ProbeSink;

/// Measure hairpin against the Linux bridge, Open vSwitch and dpdk-testpmd.
#[derive(Debug, Parser)]
struct Args {
    /// The `hairpin` binary under test (a release build).
    #[arg(long)]
    hairpin: PathBuf,
    /// One short round at 64 bytes, no RFC 2889 (for CI): checks the harness, not the
    /// speed.
    #[arg(long)]
    quick: bool,
    /// Seconds per trial.
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// Trials in the binary search for the zero-loss rate (0: no search).
    #[arg(long, default_value_t = 6)]
    search_steps: u32,
    /// Latency is measured in a trial at this fraction of each device's zero-loss rate.
    #[arg(long, default_value_t = 0.5)]
    latency_load: f64,
    /// Flows the generator spreads its frames over (UDP source ports 9000 and up); the
    /// sink checks each flow's order.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    flows: u32,
    /// Loss (percent) a trial may show and still count as zero-loss.
    #[arg(long, default_value_t = 0.1)]
    loss_tolerance: f64,
    /// Rounds (each runs every device once). The defaults (all sizes, one round, 0.5 s
    /// trials) sweep every device in about 10 minutes here; for medians at one size,
    /// e.g. `--sizes 64 --rounds 3 --seconds 1 --search-steps 7`.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Frame sizes in bytes, FCS included as RFC 2544 counts them (64 sends 60 bytes on
    /// the veth), comma-separated; `all` for 64,128,256,512,1024,1280,1518 (the default;
    /// `--quick`: 64).
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    sizes: Option<Vec<Sizes>>,
    /// Write every trial and the summary to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the run here: `report.json` (unless `--json` says elsewhere), and PNG charts
    /// `throughput.png` (zero-loss Mpps by frame size) and `latency-SIZE.png` (latency
    /// percentile curves at `--latency-load`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Extra arguments for `hairpin run`, space-separated. The default, `--busy-poll`,
    /// gives hairpin's worker its core to spin on, as PMD-based forwarders run.
    #[arg(long, default_value = "--busy-poll", allow_hyphen_values = true)]
    hairpin_args: String,
    /// Traffic generator: XDP live frames (fast, no skb per frame) or an AF_XDP socket
    /// (copy mode on veth: one skb per frame, the slower ceiling).
    #[arg(long, value_enum, default_value_t = GeneratorKind::Live)]
    generator: GeneratorKind,
    /// How the sink's XDP program on s0 attaches (the direct path always counts natively
    /// on d0, where frames arrive as xdp_frames). Generic (skb) mode is the cheaper sink for
    /// frames that arrive as skbs (from the bridge, or AF_XDP copy-mode TX): native mode
    /// on a veth first copies each such skb into a page with XDP headroom.
    #[arg(long, value_enum, default_value_t = XdpAttachMode::Generic)]
    sink_xdp: XdpAttachMode,
    /// After the run, read the JSON report back (`--json` or `--out` is required) and
    /// fail unless it is well-formed: every device measured at every size, every figure
    /// a finite non-negative number, every device forwarding frames, latency recorded,
    /// and (with `--out`) every chart a PNG. Checks the harness, not the speed.
    #[arg(long)]
    check: bool,
    /// Skip the RFC 2889 tests (address caching capacity, learning rate, broadcast rate)
    /// of the learning switches among `--devices` (hairpin veb, the Linux bridge, OVS
    /// normal). `--quick` skips them too.
    #[arg(long)]
    no_rfc2889: bool,
    /// Trials in the RFC 2889 address caching capacity search.
    #[arg(long, default_value_t = 10)]
    rfc2889_steps: u32,
    /// Print every trial of the zero-loss search.
    #[arg(long)]
    verbose: bool,
    /// Append hairpin's own output (its counters at exit) to this file.
    #[arg(long)]
    dut_log: Option<PathBuf>,
    /// Devices to measure, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    devices: Vec<Dut>,
}

/// One `--sizes` entry: a size, or all of RFC 2544's.
#[derive(Clone, Debug)]
struct Sizes(Vec<usize>);

const RFC2544_SIZES: [usize; 7] = [64, 128, 256, 512, 1024, 1280, 1518];

fn parse_size(text: &str) -> Result<Sizes, String> {
    if text == "all" {
        return Ok(Sizes(RFC2544_SIZES.to_vec()));
    }
    match text.parse::<usize>() {
        Ok(n) if (64..=1518).contains(&n) => Ok(Sizes(vec![n])),
        _ => Err(format!("{text:?}: a frame size from 64 to 1518, or `all`")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum GeneratorKind {
    /// `BPF_PROG_TEST_RUN` live frames with an `XDP_TX` program.
    Live,
    /// An AF_XDP socket transmitting from its UMEM.
    AfXdp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Dut {
    /// No forwarder: the sink's XDP program on d0 itself, the generator's ceiling.
    Direct,
    Bridge,
    Xconnect,
    Veb,
    /// d0 a downlink, d1 the uplink: every frame goes up.
    Vepa,
    /// `veb` with VLANs: d0 an access port of VLAN 10, d1 a trunk; every frame gets a
    /// tag pushed on its way out.
    VebVlan,
    /// `vepa` with VLANs: d0 an access port of VLAN 10, d1 a trunk uplink.
    VepaVlan,
    /// dpdk-testpmd, AF_XDP poll-mode driver, `io` forwarding.
    TestpmdIo,
    /// dpdk-testpmd, AF_XDP poll-mode driver, `mac` forwarding.
    TestpmdMac,
    /// Open vSwitch userspace datapath, AF_XDP ports, one flow per direction.
    OvsFlows,
    /// Open vSwitch userspace datapath, AF_XDP ports, the learning switch (`NORMAL`).
    OvsNormal,
}

impl Dut {
    const ALL: [Self; 11] = [
        Self::Direct,
        Self::Bridge,
        Self::OvsFlows,
        Self::OvsNormal,
        Self::TestpmdIo,
        Self::TestpmdMac,
        Self::Xconnect,
        Self::Veb,
        Self::Vepa,
        Self::VebVlan,
        Self::VepaVlan,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct (no DUT)",
            Self::Bridge => "linux bridge",
            Self::Xconnect => "hairpin xconnect",
            Self::Veb => "hairpin veb",
            Self::Vepa => "hairpin vepa",
            Self::VebVlan => "hairpin veb vlan",
            Self::VepaVlan => "hairpin vepa vlan",
            Self::TestpmdIo => "testpmd io",
            Self::TestpmdMac => "testpmd mac",
            Self::OvsFlows => "ovs afxdp flows",
            Self::OvsNormal => "ovs afxdp normal",
        }
    }

    /// Whether RFC 2889's learning tests apply: a learning switch on any number of ports.
    fn learns(self) -> bool {
        matches!(self, Self::Veb | Self::Bridge | Self::OvsNormal)
    }

    /// The program this device needs, if it is not part of this workspace.
    fn program(self) -> Option<&'static str> {
        match self {
            Self::TestpmdIo | Self::TestpmdMac => Some("dpdk-testpmd"),
            Self::OvsFlows | Self::OvsNormal => Some("ovs-vswitchd"),
            _ => None,
        }
    }
}

struct Trial {
    sent: u64,
    received: u64,
    seconds: f64,
    /// Frames that arrived after a later frame of their flow.
    reordered: u64,
    /// Frames that arrived with the generator's probe.
    probed: u64,
    /// One-way latency of the frames that arrived (ns); empty without probes.
    latency: hdrhistogram::Histogram<u64>,
}

/// The latency percentiles reported.
const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)];

impl Trial {
    /// `p50/p90/p99/p99.9/max` in µs, or `n/a` without probes.
    fn latency_text(&self) -> String {
        if self.latency.is_empty() {
            return "n/a".to_owned();
        }
        let us = |ns: u64| format!("{:.1}", ns as f64 / 1e3);
        let mut parts: Vec<String> = PERCENTILES
            .iter()
            .map(|&(name, q)| format!("{name} {}", us(self.latency.value_at_quantile(q / 100.0))))
            .collect();
        parts.push(format!("max {} us", us(self.latency.max())));
        parts.join(", ")
    }

    fn percentiles_json(&self) -> serde_json::Value {
        if self.latency.is_empty() {
            return serde_json::Value::Null;
        }
        let mut out = serde_json::Map::new();
        for (name, q) in PERCENTILES {
            out.insert(
                name.to_owned(),
                self.latency.value_at_quantile(q / 100.0).into(),
            );
        }
        out.insert("max".to_owned(), self.latency.max().into());
        out.insert("samples".to_owned(), self.latency.len().into());
        out.into()
    }

    fn mpps(&self) -> f64 {
        self.received as f64 / self.seconds / 1e6
    }

    fn offered(&self) -> f64 {
        self.sent as f64 / self.seconds
    }
}

fn main() {
    // The library logs through `tracing`; aya's `log` records reach it too.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("hairpin-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(mut args: Args) -> Result<()> {
    if args.quick {
        args.no_rfc2889 = true;
        args.sizes.get_or_insert_with(|| vec![Sizes(vec![64])]);
        args.rounds = 1;
        args.seconds = 0.5;
        args.search_steps = 6;
    }
    if args.generator == GeneratorKind::AfXdp {
        // The AF_XDP generator has no rate control: overload trials only.
        args.search_steps = 0;
    }
    if args.check && args.json.is_none() && args.out.is_none() {
        bail!("--check reads the report back: give --json FILE or --out DIR");
    }
    preflight::check()?;
    if !args.hairpin.exists() {
        bail!(
            "{} does not exist: build it with `cargo xtask build --release`",
            args.hairpin.display()
        );
    }
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let (gen_core, fwd_core) = match cores.as_slice() {
        [] => bail!("cannot read this process's CPU set"),
        [only] => (*only, *only),
        [a, b, ..] => (*a, *b),
    };

    Lab::sweep_stale();
    let mut lab = Lab::new("bench");
    let gen_ns = lab.add_ns("gen")?;
    let dut = lab.add_ns("dut")?;
    let sink = lab.add_ns("sink")?;
    // No IPv6 chatter (router solicitations, MLD reports): the sinks count every frame.
    for ns in [&gen_ns, &dut, &sink] {
        for scope in ["all", "default"] {
            ns.run(
                "sysctl",
                &["-qw", &format!("net.ipv6.conf.{scope}.disable_ipv6=1")],
            )?;
        }
    }
    lab.veth((&gen_ns, "g0"), (&dut, "d0"), 1)?;
    lab.veth((&dut, "d1"), (&sink, "s0"), 1)?;
    // RFC 2889's third port, to a monitor that counts floods.
    lab.veth((&dut, "d2"), (&sink, "m0"), 1)?;
    // Live frames arrive on d0 as xdp_frames, which a veth takes only in NAPI mode: on
    // when an XDP program is attached (hairpin), or with GRO on (the Linux bridge).
    dut.run("ethtool", &["-K", "d0", "gro", "on"])?;
    let mut live = generator::LiveFrames::load()?;
    live.set_flows(args.flows)?;
    let g0_index = gen_ns.enter(|| Interface::lookup("g0").map(|i| i.ifindex))??;
    let generator = Generator {
        kind: args.generator,
        live,
        ifindex: g0_index,
    };

    let (mut sink_s0, sink_iface) = sink.enter(|| ProbeSink::attach("s0", args.sink_xdp))??;
    let sink_mac = sink_iface.mac;
    let gen_mac = gen_ns.enter(|| Interface::lookup("g0").map(|i| i.mac))??;
    let sizes: Vec<usize> = match &args.sizes {
        Some(sizes) => sizes.iter().flat_map(|s| s.0.iter().copied()).collect(),
        None => RFC2544_SIZES.to_vec(),
    };
    println!(
        "hairpin-bench: frame sizes {sizes:?}, {} round(s) of {:.1} s trials per device; {:?} generator on core {gen_core}, forwarder on core {fwd_core}",
        args.rounds, args.seconds, args.generator
    );
    let devices: Vec<Dut> = if args.devices.is_empty() {
        Dut::ALL.to_vec()
    } else {
        args.devices.clone()
    }
    .into_iter()
    .filter(|d| match d.program() {
        Some(program) if !on_path(program) => {
            println!(
                "hairpin-bench: skipping {}: {program} is not installed (`cargo xtask bench` installs it)",
                d.name()
            );
            false
        }
        _ => true,
    })
    .collect();
    let mut harness = Harness {
        gen_ns: &gen_ns,
        generator,
        frame: Vec::new(),
        core: gen_core,
        context: String::new(),
        log: Vec::new(),
    };
    let seconds = Duration::from_secs_f64(args.seconds);
    let mut summary = Vec::new();
    // For the charts: zero-loss Mpps by size, per device; each size's latency
    // histograms (rounds merged), per device.
    let mut throughput: Vec<(Dut, Vec<(usize, f64)>)> =
        devices.iter().map(|&d| (d, Vec::new())).collect();
    let mut latencies: LatencyBySize = Vec::new();
    for &size in &sizes {
        // RFC 2544 sizes count the 4-byte FCS, which a veth never carries.
        harness.frame = generator::udp_frame(gen_mac, sink_mac, size - 4);
        let mut results: Vec<(Dut, Vec<Outcome>)> =
            devices.iter().map(|&d| (d, Vec::new())).collect();
        for round in 0..args.rounds {
            for (dut_kind, outcomes) in &mut results {
                // The direct path counts on d0 itself; every other device on s0.
                let mut direct = match dut_kind {
                    Dut::Direct => Some(
                        dut.enter(|| ProbeSink::attach("d0", XdpAttachMode::Native))??
                            .0,
                    ),
                    _ => None,
                };
                let counter = match direct.as_mut() {
                    Some(d) => d,
                    None => &mut sink_s0,
                };
                let stop = start_dut(&mut lab, &dut, *dut_kind, &args, fwd_core, TWO_PORTS)?;
                harness.context = format!("{}|{size}|{}", dut_kind.name(), round + 1);
                // Let the forwarder settle (and the bridge learn) before measuring.
                let all = hairpin_common::GEN_SHARE_ONE;
                let sinks = &mut [counter];
                harness.trial(Duration::from_millis(200), all, sinks)?;
                let overload = harness.trial(seconds, all, sinks)?;
                let zero_loss = if args.search_steps > 0 {
                    harness.zero_loss_rate(sinks, seconds, &args)?
                } else {
                    None
                };
                // Latency at a fraction of the zero-loss rate (of the overload rate when
                // no rate was loss-free).
                let full = zero_loss.map_or(all, |z| z.share);
                let share = ((f64::from(full) * args.latency_load).round() as u32).max(1);
                let at_load = harness.trial(seconds, share, sinks)?;
                stop(&mut lab, &dut)?;
                drop(direct);
                println!(
                    "  {size:>4} B round {}: {:<17} overload: {:>6.3} Mpps offered, {:>6.3} delivered ({:>4.1}% lost); zero-loss: {}; latency at {:.3} Mpps: {}",
                    round + 1,
                    dut_kind.name(),
                    overload.offered() / 1e6,
                    overload.mpps(),
                    loss(&overload),
                    zero_loss.map_or("n/a".to_owned(), |z| format!("{:.3} Mpps", z.rate / 1e6)),
                    at_load.offered() / 1e6,
                    at_load.latency_text(),
                );
                outcomes.push(Outcome {
                    overload,
                    zero_loss: zero_loss.map(|z| z.rate),
                    at_load,
                });
            }
        }
        println!();
        let load = (args.latency_load * 100.0).round();
        println!(
            "| {size} B | zero-loss Mpps (median) | Gbit/s at zero loss | under overload Mpps (median) | zero-loss by round | latency at {load}% p50 / p99 / p99.9 / max us (median) |"
        );
        println!("| --- | ---: | ---: | ---: | --- | ---: |");
        for (dut_kind, outcomes) in &results {
            let overload = median(outcomes.iter().map(|o| o.overload.mpps()));
            let zero: Vec<f64> = outcomes
                .iter()
                .filter_map(|o| o.zero_loss)
                .map(|r| r / 1e6)
                .collect();
            let zero_median = (!zero.is_empty()).then(|| median(zero.iter().copied()));
            let each: Vec<String> = zero.iter().map(|r| format!("{r:.3}")).collect();
            let fmt = |v: Option<f64>, digits: usize| {
                v.map_or("n/a".to_owned(), |v| format!("{v:.digits$}"))
            };
            // Line rate counts the frame, its FCS, preamble and inter-frame gap: 20 bytes more.
            let gbps = zero_median.map(|m| m * 1e6 * (size + 20) as f64 * 8.0 / 1e9);
            // Each percentile's median over the rounds.
            let pct = |q: Option<f64>| {
                let values: Vec<f64> = outcomes
                    .iter()
                    .filter(|o| !o.at_load.latency.is_empty())
                    .map(|o| {
                        let h = &o.at_load.latency;
                        q.map_or(h.max(), |q| h.value_at_quantile(q)) as f64 / 1e3
                    })
                    .collect();
                (!values.is_empty()).then(|| median(values.into_iter()))
            };
            let latency = [pct(Some(0.5)), pct(Some(0.99)), pct(Some(0.999)), pct(None)];
            if let (Some(m), Some((_, points))) = (
                zero_median,
                throughput.iter_mut().find(|(d, _)| d == dut_kind),
            ) {
                points.push((size, m));
            }
            let mut merged = hdrhistogram::Histogram::new(3)?;
            for o in outcomes {
                merged.add(&o.at_load.latency)?;
            }
            match latencies.last_mut() {
                Some((s, per_device)) if *s == size => per_device.push((*dut_kind, merged)),
                _ => latencies.push((size, vec![(*dut_kind, merged)])),
            }
            println!(
                "| {} | {} | {} | {overload:.3} | {} | {} |",
                dut_kind.name(),
                fmt(zero_median, 3),
                fmt(gbps, 2),
                each.join(", "),
                latency.map(|v| fmt(v, 1)).join(" / "),
            );
            summary.push(serde_json::json!({
                "size": size,
                "device": dut_kind.name(),
                "zero_loss_mpps_median": zero_median,
                "overload_mpps_median": overload,
                "zero_loss_mpps_by_round": zero,
                "latency_load": args.latency_load,
                "latency_us_median": {
                    "p50": latency[0], "p99": latency[1], "p99.9": latency[2], "max": latency[3],
                },
            }));
        }
        println!();
    }
    let learners: Vec<Dut> = devices.iter().copied().filter(|d| d.learns()).collect();
    let mut rfc2889_json = Vec::new();
    if !args.no_rfc2889 && !learners.is_empty() {
        println!(
            "hairpin-bench: RFC 2889 on {}",
            learners
                .iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        // The sinks on the generator's port (frames switched back to it) and on the
        // monitor (floods).
        let (g0_sink, _) = gen_ns.enter(|| ProbeSink::attach("g0", args.sink_xdp))??;
        let (m0_sink, _) = sink.enter(|| ProbeSink::attach("m0", args.sink_xdp))??;
        let mut rig = rfc2889::Rig {
            lab: &mut lab,
            dut: &dut,
            sink_ns: &sink,
            args: &args,
            core: fwd_core,
            g0: g0_sink,
            s0: sink_s0,
            m0: m0_sink,
            gen_mac,
            s0_mac: sink_mac,
            lossy: 0,
        };
        harness.frame = generator::udp_frame(gen_mac, sink_mac, 60);
        let mut rows = Vec::new();
        for &kind in &learners {
            harness.context = format!("{} rfc2889|64|1", kind.name());
            let f = rig.run(kind, &mut harness)?;
            println!(
                "  {:<17} address caching capacity: {}; learning rate: {}; broadcast: {} zero-loss, {:.3} Mpps under overload; {} lossy trial(s)",
                kind.name(),
                f.capacity.map_or("n/a".to_owned(), |c| c.to_string()),
                f.learning_rate.map_or("n/a".to_owned(), |(r, n)| format!(
                    "{:.3} M addresses/s ({n} addresses)",
                    r / 1e6
                )),
                f.broadcast_zero_loss
                    .map_or("n/a".to_owned(), |r| format!("{:.3} Mpps", r / 1e6)),
                f.broadcast_overload / 1e6,
                f.lossy,
            );
            rfc2889_json.push(serde_json::json!({
                "lossy_trials": f.lossy,
                "device": kind.name(),
                "address_caching_capacity": f.capacity,
                "learning_rate_per_s": f.learning_rate.map(|(r, _)| r),
                "learning_rate_addresses": f.learning_rate.map(|(_, n)| n),
                "broadcast_zero_loss_mpps": f.broadcast_zero_loss.map(|r| r / 1e6),
                "broadcast_overload_mpps": f.broadcast_overload / 1e6,
            }));
            rows.push((kind, f));
        }
        sink_s0 = rig.s0;
        println!();
        println!(
            "| RFC 2889, 64 B | address caching capacity | learning rate (M addresses/s) | broadcast zero-loss Mpps (to 2 ports) | broadcast under overload Mpps |"
        );
        println!("| --- | ---: | ---: | ---: | ---: |");
        for (kind, f) in &rows {
            let opt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
            // Within one step of the search's top: the table holds at least that much.
            let top = rfc2889::MAX_ADDRESSES - (rfc2889::MAX_ADDRESSES >> args.rfc2889_steps);
            println!(
                "| {} | {} | {} | {} | {:.3} |",
                kind.name(),
                f.capacity.map_or("n/a".to_owned(), |c| if c >= top {
                    format!("≥ {c} (the search's limit)")
                } else {
                    c.to_string()
                }),
                opt(f.learning_rate.map(|(r, _)| r / 1e6)),
                opt(f.broadcast_zero_loss.map(|r| r / 1e6)),
                f.broadcast_overload / 1e6
            );
        }
        println!();
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if args.json.is_none() {
            args.json = Some(dir.join("report.json"));
        }
        match draw_charts(dir, &throughput, &latencies, args.latency_load) {
            Ok(files) => {
                for file in &files {
                    println!("hairpin-bench: chart {}", file.display());
                }
                if args.check {
                    check_charts(&files)?;
                }
            }
            Err(e) if args.check => return Err(e.context("drawing the charts")),
            Err(e) => println!("hairpin-bench: no charts: {e:#}"),
        }
    }
    if let Some(path) = &args.json {
        let report = serde_json::json!({
            "machine": machine(),
            "generator": format!("{:?}", args.generator),
            "generator_core": gen_core,
            "forwarder_core": fwd_core,
            "rounds": args.rounds,
            "trial_seconds": args.seconds,
            "search_steps": args.search_steps,
            "loss_tolerance_percent": args.loss_tolerance,
            "hairpin_args": args.hairpin_args,
            "summary": summary,
            "rfc2889": rfc2889_json,
            "trials": harness.log,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("hairpin-bench: every trial written to {}", path.display());
        if args.check {
            let names: Vec<&str> = devices.iter().map(|d| d.name()).collect();
            check_report(path, &names, &sizes)?;
            println!("hairpin-bench: report checked: well-formed");
        }
    }
    drop(sink_s0);
    Ok(())
}

/// Per frame size, each device's latency histogram (rounds merged).
type LatencyBySize = Vec<(usize, Vec<(Dut, hdrhistogram::Histogram<u64>)>)>;

/// Draws the run's charts into `dir`; returns the files written.
fn draw_charts(
    dir: &std::path::Path,
    throughput: &[(Dut, Vec<(usize, f64)>)],
    latencies: &LatencyBySize,
    load: f64,
) -> Result<Vec<PathBuf>> {
    charts::init_font()?;
    let mut files = Vec::new();
    let series: Vec<_> = throughput
        .iter()
        .filter(|(_, points)| !points.is_empty())
        .map(|(d, points)| charts::Series {
            name: d.name(),
            data: points.clone(),
        })
        .collect();
    let path = dir.join("throughput.png");
    charts::throughput(&path, &series)?;
    files.push(path);
    for (size, per_device) in latencies {
        let series: Vec<_> = per_device
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(d, h)| charts::Series {
                name: d.name(),
                data: h,
            })
            .collect();
        let path = dir.join(format!("latency-{size}.png"));
        let title = format!(
            "One-way latency, {size}-byte frames at {:.0} % of each device's zero-loss rate",
            load * 100.0
        );
        charts::latency(&path, &title, &series)?;
        files.push(path);
    }
    Ok(files)
}

/// Checks that every chart is a PNG of some substance.
fn check_charts(files: &[PathBuf]) -> Result<()> {
    const PNG: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    if files.is_empty() {
        bail!("no charts were drawn");
    }
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        if !bytes.starts_with(&PNG) || bytes.len() < 4096 {
            bail!("{} is not a PNG chart", file.display());
        }
    }
    Ok(())
}

/// Reads the JSON report at `path` back and checks its shape (see `--check`).
fn check_report(path: &std::path::Path, devices: &[&str], sizes: &[usize]) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let figure = |v: &serde_json::Value, what: &str| -> Result<f64> {
        match v.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => bail!("{what}: {v} is not a finite non-negative number"),
        }
    };
    let summary = report["summary"].as_array().context("no summary array")?;
    for &size in sizes {
        for &device in devices {
            let entry = summary
                .iter()
                .find(|e| e["device"] == device && e["size"] == size)
                .with_context(|| format!("no summary for {device} at {size} B"))?;
            let what = format!("{device} at {size} B");
            let overload = figure(&entry["overload_mpps_median"], &what)?;
            if overload == 0.0 {
                bail!("{what}: forwarded nothing under overload");
            }
            if !entry["zero_loss_mpps_median"].is_null() {
                figure(&entry["zero_loss_mpps_median"], &what)?;
            }
            for p in ["p50", "p99", "p99.9", "max"] {
                figure(
                    &entry["latency_us_median"][p],
                    &format!("{what}: latency {p}"),
                )?;
            }
        }
    }
    let trials = report["trials"].as_array().context("no trials array")?;
    if trials.len() < devices.len() * sizes.len() * 2 {
        bail!(
            "{} trials, fewer than two per device and size",
            trials.len()
        );
    }
    for trial in trials {
        for key in [
            "sent",
            "received",
            "seconds",
            "offered_mpps",
            "delivered_mpps",
        ] {
            figure(&trial[key], key)?;
        }
    }
    for key in ["kernel", "cpu"] {
        if !report["machine"][key].is_string() {
            bail!("machine.{key} missing");
        }
    }
    Ok(())
}

/// Whether `program` is found on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// What the report says of the machine it ran on.
fn machine() -> serde_json::Value {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned());
    serde_json::json!({
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "hairpin_bench": env!("CARGO_PKG_VERSION"),
    })
}

fn loss(t: &Trial) -> f64 {
    if t.sent == 0 {
        0.0
    } else {
        100.0 * (1.0 - t.received as f64 / t.sent as f64).max(0.0)
    }
}

struct Generator {
    kind: GeneratorKind,
    live: generator::LiveFrames,
    ifindex: u32,
}

struct Outcome {
    overload: Trial,
    /// Frames per second delivered at the highest zero-loss rate found (none: no
    /// searched rate was loss-free, or no search).
    zero_loss: Option<f64>,
    /// The trial at `--latency-load` of the zero-loss rate.
    at_load: Trial,
}

/// The zero-loss rate found, and the generator share that offered it.
#[derive(Clone, Copy, Debug)]
struct ZeroLoss {
    /// Frames per second delivered.
    rate: f64,
    /// Runs in 1024 the generator transmitted.
    share: u32,
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

struct Harness<'a> {
    gen_ns: &'a Netns,
    generator: Generator,
    frame: Vec<u8>,
    core: usize,
    /// "device|size|round" of the trials now running, for the log.
    context: String,
    /// Every trial, for the JSON report.
    log: Vec<serde_json::Value>,
}

impl Harness<'_> {
    /// One trial: the generator runs for about `duration` sending `share` runs in 1024
    /// (all of them: flat out), and the sink counts what arrived.
    fn trial(
        &mut self,
        duration: Duration,
        share: u32,
        sinks: &mut [&mut ProbeSink],
    ) -> Result<Trial> {
        for sink in sinks.iter_mut() {
            sink.reset()?;
        }
        let (frame, core, g) = (&self.frame, self.core, &mut self.generator);
        let (sent, seconds) = self.gen_ns.enter(|| -> Result<(u64, f64)> {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
            Ok(match g.kind {
                GeneratorKind::Live => {
                    let p = g.live.blast(g.ifindex, frame, duration, share)?;
                    (p.frames, p.seconds)
                }
                GeneratorKind::AfXdp => {
                    let s = generator::blast("g0", frame, duration)?;
                    (s.frames, s.elapsed.as_secs_f64())
                }
            })
        })??;
        // Frames still in flight land within a moment.
        thread::sleep(Duration::from_millis(50));
        // Every sink must get every frame: the trial delivered what the poorest got.
        let mut readings = Vec::with_capacity(sinks.len());
        for sink in sinks.iter() {
            readings.push(sink.reading()?);
        }
        let received = readings.iter().map(|r| r.frames).min().unwrap_or(0);
        let reading = readings.swap_remove(0);
        let t = Trial {
            sent,
            received,
            seconds,
            reordered: reading.reordered,
            probed: reading.probed,
            latency: reading.latency,
        };
        let mut context = self.context.split('|');
        self.log.push(serde_json::json!({
            "device": context.next(),
            "size": context.next().and_then(|s| s.parse::<usize>().ok()),
            "round": context.next().and_then(|s| s.parse::<usize>().ok()),
            "share_of_1024": share,
            "sent": t.sent,
            "received": t.received,
            "seconds": t.seconds,
            "offered_mpps": t.offered() / 1e6,
            "delivered_mpps": t.mpps(),
            "loss_percent": loss(&t),
            "reordered": t.reordered,
            "probed": t.probed,
            "latency_ns": t.percentiles_json(),
        }));
        Ok(t)
    }

    /// Sends at least `frames` frames at `share` runs in 1024 (the live generator only);
    /// returns the seconds it took.
    fn send_frames(&mut self, frames: u64, share: u32) -> Result<f64> {
        let (frame, core, g) = (&self.frame, self.core, &mut self.generator);
        if g.kind != GeneratorKind::Live {
            bail!("RFC 2889 needs the live generator (many source addresses)");
        }
        self.gen_ns.enter(|| -> Result<f64> {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
            Ok(g.live
                .blast_frames(g.ifindex, frame, frames, share)?
                .seconds)
        })?
    }

    /// RFC 2544 throughput: the highest offered rate whose trial loses no more than the
    /// tolerance, by binary search over the generator's share. Returns the delivered
    /// frames per second at that rate.
    fn zero_loss_rate(
        &mut self,
        sinks: &mut [&mut ProbeSink],
        duration: Duration,
        args: &Args,
    ) -> Result<Option<ZeroLoss>> {
        let (mut lo, mut hi) = (0u32, hairpin_common::GEN_SHARE_ONE);
        let mut best = None;
        for _ in 0..args.search_steps {
            let share = (lo + hi).div_ceil(2);
            if share == hi && hi != hairpin_common::GEN_SHARE_ONE {
                break;
            }
            let t = self.trial(duration, share, sinks)?;
            if args.verbose {
                println!(
                    "    share {share:>4}/1024: offered {:.3} Mpps, delivered {:.3} Mpps, lost {} ({:.3}%)",
                    t.offered() / 1e6,
                    t.mpps(),
                    t.sent.saturating_sub(t.received),
                    loss(&t)
                );
            }
            if loss(&t) <= args.loss_tolerance {
                best = Some(ZeroLoss {
                    rate: t.received as f64 / t.seconds,
                    share,
                });
                lo = share;
            } else {
                hi = share - 1;
            }
            if lo >= hi {
                break;
            }
        }
        Ok(best)
    }
}

fn log_target(path: Option<&std::path::Path>) -> Result<Stdio> {
    Ok(match path {
        None => Stdio::null(),
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?
            .into(),
    })
}

type Stop = Box<dyn FnOnce(&mut Lab, &Netns) -> Result<()>>;

/// The DUT's ports in the RFC 2544 topology.
const TWO_PORTS: &[&str] = &["d0", "d1"];
/// The DUT's ports in the RFC 2889 topology: d2 leads to the monitor port m0.
const THREE_PORTS: &[&str] = &["d0", "d1", "d2"];

/// Starts device `kind` on `ports` (the learning switches take [`THREE_PORTS`] too;
/// the others only [`TWO_PORTS`]); returns how to stop it.
fn start_dut(
    lab: &mut Lab,
    dut: &Netns,
    kind: Dut,
    args: &Args,
    core: usize,
    ports: &[&str],
) -> Result<Stop> {
    match kind {
        Dut::Direct => Ok(Box::new(|_, _| Ok(()))),
        Dut::Bridge => {
            dut.ip(&["link", "add", "br0", "type", "bridge"])?;
            for &port in ports {
                dut.ip(&["link", "set", port, "master", "br0"])?;
            }
            dut.ip(&["link", "set", "br0", "up"])?;
            Ok(Box::new(|_, dut| {
                dut.ip(&["link", "del", "br0"])?;
                Ok(())
            }))
        }
        Dut::TestpmdIo | Dut::TestpmdMac => {
            let mode = if kind == Dut::TestpmdIo { "io" } else { "mac" };
            // `ip netns exec` gives the command a mount namespace of its own, where the
            // AF_XDP driver's libbpf finds bpffs once mounted.
            let script = format!(
                "mount -t bpf bpf /sys/fs/bpf && exec dpdk-testpmd -l {main},{core} --main-lcore {main} \
                 --no-huge --no-shconf --no-pci -m 1024 --log-level=warning \
                 --vdev net_af_xdp0,iface=d0 --vdev net_af_xdp1,iface=d1 -- \
                 --forward-mode={mode} --auto-start --nb-cores=1 --rxq=1 --txq=1 --stats-period=3600 \
                 --record-core-cycles",
                main = if core == 0 { 1 } else { 0 },
            );
            let mut cmd = dut.command("sh");
            cmd.args(["-c", &script])
                .stdout(log_target(args.dut_log.as_deref())?)
                .stderr(log_target(args.dut_log.as_deref())?);
            lab.spawn(cmd)?;
            if !dut.wait_for_xdp(&["d0", "d1"], Duration::from_secs(20)) {
                bail!("testpmd did not attach within 20 s");
            }
            let index = lab.process_count() - 1;
            Ok(Box::new(move |lab, _| stop_processes(lab, index)))
        }
        Dut::OvsFlows | Dut::OvsNormal => start_ovs(lab, dut, kind == Dut::OvsNormal, core, ports),
        Dut::Xconnect | Dut::Veb | Dut::Vepa | Dut::VebVlan | Dut::VepaVlan => {
            const VLANS: [&str; 4] = ["--vlan", "d0=10", "--trunk", "d1=10,20"];
            let list = ports.join(",");
            let run_args: Vec<&str> = match kind {
                Dut::Xconnect => vec!["--mode", "xconnect", "--ports", "d0,d1"],
                Dut::Veb => vec!["--mode", "veb", "--ports", &list],
                Dut::Vepa => vec!["--mode", "vepa", "--ports", "d0", "--uplink", "d1"],
                Dut::VebVlan => [&["--mode", "veb", "--ports", "d0,d1"][..], &VLANS].concat(),
                _ => [
                    &["--mode", "vepa", "--ports", "d0", "--uplink", "d1"][..],
                    &VLANS,
                ]
                .concat(),
            };
            let mut cmd = dut.command(&args.hairpin.to_string_lossy());
            // A control socket of its own: the bench runs beside any other hairpin.
            let socket = format!("/run/hairpin/bench-{}.sock", std::process::id());
            cmd.arg("run")
                .args(&run_args)
                .args(["--cores", &core.to_string(), "--socket", &socket])
                .args(args.hairpin_args.split_whitespace())
                .stdout(log_target(args.dut_log.as_deref())?)
                .stderr(log_target(args.dut_log.as_deref())?);
            lab.spawn(cmd)?;
            if !dut.wait_for_xdp(ports, Duration::from_secs(20)) {
                bail!("hairpin did not attach within 20 s");
            }
            let index = lab.process_count() - 1;
            Ok(Box::new(move |lab, _| stop_processes(lab, index)))
        }
    }
}

/// Open vSwitch with its database in a directory of its own, the userspace (`netdev`)
/// datapath, d0 and d1 as AF_XDP ports with one queue each, its PMD thread on `core`.
fn start_ovs(
    lab: &mut Lab,
    dut: &Netns,
    normal: bool,
    core: usize,
    ports: &[&str],
) -> Result<Stop> {
    let dir = std::env::temp_dir().join(format!("{}-ovs", dut.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let db = format!("unix:{}", path("db.sock"));
    // Everything OVS keeps (database, sockets, pid files, logs) stays in `dir`, away from
    // a system OVS and from a concurrent run.
    let ovs = |program: &str| {
        let mut cmd = dut.command(program);
        for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            cmd.env(var, &dir);
        }
        cmd
    };
    let run = |program: &str, args: &[&str]| -> Result<()> {
        let mut cmd = ovs(program);
        cmd.args(args);
        hairpin::netlab::run(cmd)?;
        Ok(())
    };
    let first = lab.process_count();
    run(
        "ovsdb-tool",
        &[
            "create",
            &path("conf.db"),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ],
    )?;
    let mut server = ovs("ovsdb-server");
    server
        .arg(path("conf.db"))
        .arg(format!("--remote=punix:{}", path("db.sock")))
        .arg(format!("--log-file={}", path("ovsdb-server.log")))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    lab.spawn(server)?;
    let vsctl = |args: &[&str]| -> Result<()> {
        let mut full = vec!["--db", &db, "--timeout=10"];
        full.extend_from_slice(args);
        run("ovs-vsctl", &full)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while vsctl(&["--no-wait", "init"]).is_err() {
        if Instant::now() > deadline {
            bail!(
                "ovsdb-server did not start within 10 s (log in {})",
                dir.display()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    // libxdp looks for bpffs; `ip netns exec` gives the command its own mount namespace.
    let mut switch = ovs("sh");
    switch
        .args([
            "-c",
            &format!(
                "mount -t bpf bpf /sys/fs/bpf && exec ovs-vswitchd {db} --log-file={}",
                path("ovs-vswitchd.log")
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    lab.spawn(switch)?;
    let mask = format!("other_config:pmd-cpu-mask={:#x}", 1u64 << core);
    vsctl(&["set", "Open_vSwitch", ".", &mask])?;
    vsctl(&[
        "add-br",
        "br0",
        "--",
        "set",
        "bridge",
        "br0",
        "datapath_type=netdev",
    ])?;
    for &port in ports {
        vsctl(&[
            "add-port",
            "br0",
            port,
            "--",
            "set",
            "interface",
            port,
            "type=afxdp",
            "options:xdp-mode=native",
            "options:n_rxq=1",
        ])?;
    }
    if !normal {
        run("ovs-ofctl", &["del-flows", "br0"])?;
        run(
            "ovs-ofctl",
            &["add-flow", "br0", "in_port=d0,actions=output:d1"],
        )?;
        run(
            "ovs-ofctl",
            &["add-flow", "br0", "in_port=d1,actions=output:d0"],
        )?;
    }
    if !dut.wait_for_xdp(ports, Duration::from_secs(20)) {
        bail!(
            "Open vSwitch did not attach within 20 s (logs in {})",
            dir.display()
        );
    }
    // Removing the bridge detaches the XDP programs before the daemons stop.
    let mut remove = ovs("ovs-vsctl");
    remove.args(["--db", &db, "--timeout=10", "del-br", "br0"]);
    let dir = dir.clone();
    Ok(Box::new(move |lab, _| {
        let removed = hairpin::netlab::run(remove);
        stop_processes(lab, first)?;
        removed?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }))
}

/// Stops the lab's processes from index `first` on, newest first, with SIGTERM, and waits
/// for each to exit.
fn stop_processes(lab: &mut Lab, first: usize) -> Result<()> {
    for index in (first..lab.process_count()).rev() {
        let process = lab.process(index).context("no process to stop")?;
        if process.child().try_wait()?.is_some() {
            continue;
        }
        process.signal(libc::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while process.child().try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("process {index} of the lab did not stop within 10 s of SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
