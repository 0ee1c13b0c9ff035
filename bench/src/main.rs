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
//!
//! The parts: [`devices`] starts and stops each device under test; [`harness`] builds
//! the lab and runs one trial at an offered load; [`rfc2544`] searches the zero-loss
//! rate and measures latency at each frame size; [`rfc2889`] tests the learning
//! switches; [`report`] prints the tables, writes the JSON report and the charts
//! ([`charts`]), and checks them. [`run`] is the whole run, step by step.
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Parser;
use hairpin::control::{preflight, xdp::XdpAttachMode};

mod charts;
mod cpu;
mod devices;
mod generator;
mod harness;
mod report;
mod rfc2544;
mod rfc2889;
mod sink;

use devices::Dut;
use harness::{Cores, Generator, GeneratorKind, Harness, Topology};
use report::Report;
use rfc2544::{Sizes, parse_size};
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
    /// sizes up to 9018 run the lab at MTU 9000, e.g. `--sizes 64,1518,9018`;
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
    /// Idle ports attached to hairpin beside the two measured (veth pairs in the DUT's
    /// namespace that carry nothing, added with `hairpin port add` once it runs): what
    /// a bridge full of quiet ports costs the busy ones. Every mode but xconnect.
    #[arg(long, default_value_t = 0)]
    idle_ports: usize,
    /// `hairpin capture` arguments (e.g. `d0 --in`, or `d0 icmp` for a filter that
    /// selects nothing the generator sends) run against every hairpin device for the
    /// whole of its trials, writing pcapng to /dev/null: what a capture costs the frame
    /// path (compare with a run without it).
    #[arg(long, allow_hyphen_values = true)]
    capture: Option<String>,
    /// Traffic generator: XDP live frames (fast, no skb per frame), the XDP fan-out (no
    /// skb per frame either, for kernels that refuse live-frames test runs), or an AF_XDP
    /// socket (copy mode on veth: one skb per frame, no pacing). `auto` probes live
    /// frames once and falls back to the fan-out.
    #[arg(long, value_enum, default_value_t = GeneratorKind::Auto)]
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
    /// Where the ingress veth's NAPI runs (the kernel's receive work, hairpin's fast path
    /// and the Linux bridge's forwarding among it): on the sending core (the kernel's
    /// default for a veth), or a thread pinned to the forwarder's core (a NIC queue's
    /// interrupt on the forwarder's core). Each core's busy time per frame is reported
    /// either way.
    #[arg(long, value_enum, default_value_t)]
    napi: cpu::NapiPlacement,
    /// Devices to measure, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    devices: Vec<Dut>,
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

/// The whole run: settle the options, set up the lab, RFC 2544 at every size, RFC 2889
/// on the learning switches, then the report.
fn run(mut args: Args) -> Result<()> {
    apply_presets(&mut args);
    check_prerequisites(&args)?;
    let mut bench = Bench::set_up(args)?;
    bench.rfc2544()?;
    bench.rfc2889()?;
    bench.write_report()
}

/// Applies what `--quick` and the AF_XDP generator imply to the other options.
fn apply_presets(args: &mut Args) {
    if args.quick {
        args.no_rfc2889 = true;
        args.sizes.get_or_insert_with(rfc2544::quick_sizes);
        args.rounds = 1;
        args.seconds = 0.5;
        args.search_steps = 6;
    }
    if !args.generator.paces() {
        // The AF_XDP generator has no rate control: overload trials only.
        args.search_steps = 0;
    }
}

/// Fails early on options that cannot work together, on a host that cannot run AF_XDP,
/// and on a missing `--hairpin` binary.
fn check_prerequisites(args: &Args) -> Result<()> {
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
    Ok(())
}

/// A run in progress: the lab, the generator and sink, and the results so far.
///
/// Fields drop in order: the sink and the generator go before the lab that holds their
/// interfaces.
struct Bench {
    /// The sink on s0, where every device but `direct` delivers.
    s0: ProbeSink,
    harness: Harness,
    report: Report,
    /// The devices measured, in order.
    devices: Vec<Dut>,
    /// The frame sizes measured, in order.
    sizes: Vec<usize>,
    cores: Cores,
    args: Args,
    topology: Topology,
}

impl Bench {
    /// Picks the cores, builds the lab, loads the generator, attaches the sink on s0,
    /// and says what the run will measure.
    fn set_up(args: Args) -> Result<Self> {
        let cores = Cores::pick()?;
        let topology = Topology::build()?;
        args.napi.apply(&topology.dut_ns, "d0", cores.forwarder)?;
        let generator = Generator::load(&topology, &args, cores.generator)?;
        if let Some(why) = &generator.fallback {
            println!(
                "hairpin-bench: the kernel refuses live frames ({why}): using the fan-out generator"
            );
        }
        let (s0, _) = topology
            .sink_ns
            .enter(|| ProbeSink::attach("s0", args.sink_xdp))??;
        let sizes = rfc2544::frame_sizes(&args);
        println!(
            "hairpin-bench: frame sizes {sizes:?}, {} round(s) of {:.1} s trials per device; {} generator on core {}, forwarder on core {}, d0's NAPI on the {} core",
            args.rounds,
            args.seconds,
            generator.kind.name(),
            cores.generator,
            cores.forwarder,
            args.napi.name()
        );
        let devices = devices::selected(&args);
        Ok(Self {
            s0,
            harness: Harness::new(&topology.gen_ns, generator, cores.generator),
            report: Report::new(&devices),
            devices,
            sizes,
            cores,
            args,
            topology,
        })
    }

    /// RFC 2544 at every frame size: every device, round by round, then the size's table.
    fn rfc2544(&mut self) -> Result<()> {
        for &size in &self.sizes {
            // Jumbo sizes: the lab at MTU 9000, the devices that carry such frames.
            let jumbo = size > rfc2544::STANDARD_MAX;
            self.topology
                .set_mtu(if jumbo { rfc2544::JUMBO_MTU } else { 1500 })?;
            let devices: Vec<Dut> = self
                .devices
                .iter()
                .copied()
                .filter(|d| !jumbo || d.carries_jumbo())
                .collect();
            for skipped in self.devices.iter().filter(|d| !devices.contains(d)) {
                println!(
                    "  {size:>4} B: {} not measured (its AF_XDP ports take no frames this long)",
                    skipped.name()
                );
            }
            let results = rfc2544::measure_size(
                &mut self.topology,
                &mut self.harness,
                &mut self.s0,
                &devices,
                size,
                &self.args,
                self.cores.forwarder,
            )?;
            self.report.add_size(
                size,
                &results,
                self.args.latency_load,
                self.args.loss_tolerance,
            )?;
        }
        self.topology.set_mtu(1500)?;
        Ok(())
    }

    /// RFC 2889 on the learning switches among the devices (unless `--no-rfc2889`), then
    /// its table.
    fn rfc2889(&mut self) -> Result<()> {
        let learners: Vec<Dut> = self
            .devices
            .iter()
            .copied()
            .filter(|d| d.learns())
            .collect();
        if self.args.no_rfc2889 || learners.is_empty() {
            return Ok(());
        }
        let rows = rfc2889::measure(
            &mut self.topology,
            &mut self.harness,
            &mut self.s0,
            &learners,
            &self.args,
            self.cores.forwarder,
        )?;
        self.report.add_rfc2889(&rows, self.args.rfc2889_steps);
        Ok(())
    }

    /// The charts and the JSON report, checked with `--check`.
    fn write_report(&self) -> Result<()> {
        self.report.write(
            &self.args,
            self.cores,
            &self.devices,
            &self.sizes,
            &self.harness.generator,
            &self.harness.log,
        )
    }
}
