//! `hairpin-bench`: frames per second through hairpin and through the Linux bridge, on the
//! same topology, in one run.
//!
//! ```text
//!   ns gen: g0 ──veth── d0 ┐ ns dut: hairpin (xconnect | veb) or a Linux bridge ┌ d1 ──veth── s0 :ns sink
//! ```
//!
//! The generator ([`generator`]) transmits 64-byte UDP frames over AF_XDP on g0, pinned to one
//! core; the forwarder under test runs pinned to the other; the sink is hairpin's XDP
//! program in drop mode on s0, which counts every frame that arrives (a busy-polling
//! user-space sink would starve the forwarder on a 2-vCPU machine). Devices under test are
//! interleaved round by round, since a shared VM's speed drifts; the table shows every
//! round and the median.
use std::{
    path::PathBuf,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use hairpin::{
    control::{
        port::Interface,
        preflight,
        xdp::{Steering, XdpAttachMode},
    },
    netlab::{Lab, Netns},
};
use hairpin_common::{PortConf, port_flags};

mod generator;

/// Measure hairpin against the Linux bridge.
#[derive(Debug, Parser)]
struct Args {
    /// The `hairpin` binary under test (a release build).
    #[arg(long)]
    hairpin: PathBuf,
    /// One short round (for CI): checks the harness, not the speed.
    #[arg(long)]
    quick: bool,
    /// Seconds per trial.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds (each runs every device once).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Frame size in bytes, without FCS.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Extra arguments for `hairpin run` (e.g. `--xdp-mode=generic`), space-separated.
    #[arg(long, default_value = "")]
    hairpin_args: String,
    /// Devices to measure, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    devices: Vec<Dut>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Dut {
    /// No forwarder: the sink's XDP program on d0 itself, the generator's ceiling.
    Direct,
    Bridge,
    Xconnect,
    Veb,
}

impl Dut {
    const ALL: [Self; 4] = [Self::Direct, Self::Bridge, Self::Xconnect, Self::Veb];

    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct (no DUT)",
            Self::Bridge => "linux bridge",
            Self::Xconnect => "hairpin xconnect",
            Self::Veb => "hairpin veb",
        }
    }
}

struct Trial {
    sent: u64,
    received: u64,
    seconds: f64,
}

impl Trial {
    fn mpps(&self) -> f64 {
        self.received as f64 / self.seconds / 1e6
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("hairpin-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(mut args: Args) -> Result<()> {
    if args.quick {
        args.rounds = 1;
        args.seconds = 1.0;
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
    lab.veth((&gen_ns, "g0"), (&dut, "d0"), 1)?;
    lab.veth((&dut, "d1"), (&sink, "s0"), 1)?;

    let (steering, sink_mac) = sink.enter(|| -> Result<_> {
        let s0 = Interface::lookup("s0")?;
        let mut steering = Steering::load()?;
        steering.configure_port(
            &s0,
            PortConf {
                slot: 0,
                flags: port_flags::DROP,
                ..PortConf::default()
            },
        )?;
        steering.attach(&s0, XdpAttachMode::Native)?;
        Ok((steering, s0.mac))
    })??;
    let gen_mac = gen_ns.enter(|| Interface::lookup("g0").map(|i| i.mac))??;
    let frame = generator::udp_frame(gen_mac, sink_mac, args.size);
    let sunk = |s: &Steering| s.queue_stats(0, 0).map(|s| s.dropped);

    println!(
        "hairpin-bench: {}-byte frames, {} round(s) of {:.1} s per device; generator on core {gen_core}, forwarder on core {fwd_core}",
        frame.len(),
        args.rounds,
        args.seconds
    );
    let devices = if args.devices.is_empty() {
        Dut::ALL.to_vec()
    } else {
        args.devices.clone()
    };
    let mut results: Vec<(Dut, Vec<Trial>)> = devices.iter().map(|&d| (d, Vec::new())).collect();
    for round in 0..args.rounds {
        for (dut_kind, trials) in &mut results {
            // The direct path counts on d0 itself; every other device on s0.
            let direct = match dut_kind {
                Dut::Direct => Some(dut.enter(|| drop_sink("d0"))??.0),
                _ => None,
            };
            let counter = direct.as_ref().unwrap_or(&steering);
            let stop = start_dut(&mut lab, &dut, *dut_kind, &args, fwd_core)?;
            let count = || sunk(counter);
            // Let the forwarder settle (and the bridge learn) before measuring.
            let warm = trial(
                &gen_ns,
                &frame,
                Duration::from_millis(200),
                gen_core,
                &count,
            )?;
            let seconds = Duration::from_secs_f64(args.seconds);
            let t = trial(&gen_ns, &frame, seconds, gen_core, &count)?;
            stop(&mut lab, &dut)?;
            drop(direct);
            println!(
                "  round {}: {:<17} {:>6.3} Mpps delivered, {:>6.3} Mpps offered, loss {:>5.1}% (warm-up {} frames)",
                round + 1,
                dut_kind.name(),
                t.mpps(),
                t.sent as f64 / t.seconds / 1e6,
                loss(&t),
                warm.received
            );
            trials.push(t);
        }
    }

    println!();
    println!("| device | median Mpps | loss | rounds (Mpps) |");
    println!("| --- | ---: | ---: | --- |");
    for (dut_kind, trials) in &results {
        let mut rates: Vec<f64> = trials.iter().map(Trial::mpps).collect();
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let each: Vec<String> = trials.iter().map(|t| format!("{:.3}", t.mpps())).collect();
        let lost: f64 = trials.iter().map(loss).sum::<f64>() / trials.len() as f64;
        println!(
            "| {} | {median:.3} | {lost:.1}% | {} |",
            dut_kind.name(),
            each.join(", ")
        );
    }
    drop(steering);
    Ok(())
}

/// hairpin's XDP program on `ifname` in drop mode: counts and drops every frame.
fn drop_sink(ifname: &str) -> Result<(Steering, hairpin::control::port::Mac)> {
    let iface = Interface::lookup(ifname)?;
    let mut steering = Steering::load()?;
    steering.configure_port(
        &iface,
        PortConf {
            slot: 0,
            flags: port_flags::DROP,
            ..PortConf::default()
        },
    )?;
    steering.attach(&iface, XdpAttachMode::Native)?;
    Ok((steering, iface.mac))
}

fn loss(t: &Trial) -> f64 {
    if t.sent == 0 {
        0.0
    } else {
        100.0 * (1.0 - t.received as f64 / t.sent as f64).max(0.0)
    }
}

fn trial(
    gen_ns: &Netns,
    frame: &[u8],
    duration: Duration,
    core: usize,
    sunk: &dyn Fn() -> Result<u64, hairpin::control::xdp::XdpError>,
) -> Result<Trial> {
    let before = sunk()?;
    let sent = gen_ns.enter(|| {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
        generator::blast("g0", frame, duration)
    })??;
    // Frames still in flight land within a moment.
    thread::sleep(Duration::from_millis(50));
    let after = sunk()?;
    Ok(Trial {
        sent: sent.frames,
        received: after - before,
        seconds: sent.elapsed.as_secs_f64(),
    })
}

type Stop = Box<dyn FnOnce(&mut Lab, &Netns) -> Result<()>>;

fn start_dut(lab: &mut Lab, dut: &Netns, kind: Dut, args: &Args, core: usize) -> Result<Stop> {
    match kind {
        Dut::Direct => Ok(Box::new(|_, _| Ok(()))),
        Dut::Bridge => {
            dut.ip(&["link", "add", "br0", "type", "bridge"])?;
            for port in ["d0", "d1"] {
                dut.ip(&["link", "set", port, "master", "br0"])?;
            }
            dut.ip(&["link", "set", "br0", "up"])?;
            Ok(Box::new(|_, dut| {
                dut.ip(&["link", "del", "br0"])?;
                Ok(())
            }))
        }
        Dut::Xconnect | Dut::Veb => {
            let mode = if kind == Dut::Xconnect {
                "xconnect"
            } else {
                "veb"
            };
            let mut cmd = dut.command(&args.hairpin.to_string_lossy());
            cmd.args([
                "run",
                "--mode",
                mode,
                "--ports",
                "d0,d1",
                "--cores",
                &core.to_string(),
            ])
            .args(args.hairpin_args.split_whitespace())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            lab.spawn(cmd)?;
            if !dut.wait_for_xdp(&["d0", "d1"], Duration::from_secs(20)) {
                bail!("hairpin did not attach within 20 s");
            }
            Ok(Box::new(|lab, _| {
                let process = lab.last_process().context("hairpin process")?;
                process.signal(libc::SIGTERM)?;
                let deadline = Instant::now() + Duration::from_secs(10);
                while process.child().try_wait()?.is_none() {
                    if Instant::now() > deadline {
                        bail!("hairpin did not stop within 10 s of SIGTERM");
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                Ok(())
            }))
        }
    }
}
