//! The test bed and its trials: the cores the generator and the forwarder run on
//! ([`Cores`]), the namespaces and veths of the lab ([`Topology`]), the generator
//! ([`Generator`]), and the [`Harness`] that runs one trial at an offered load and
//! logs it ([`Trial`]).
use std::{thread, time::Duration};

use anyhow::{Context as _, Result, bail};
use hairpin::{
    control::port::Interface,
    netlab::{Lab, Netns, PacketSocket},
    wire::{
        Mac,
        dot1q::{self, TAG_LEN},
    },
};

use crate::{
    Args,
    cpu::{CoreUse, CpuTimes},
    generator,
    sink::ProbeSink,
};

/// The traffic generator `--generator` picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GeneratorKind {
    /// Live frames where the kernel allows them, else the fan-out.
    Auto,
    /// `BPF_PROG_TEST_RUN` live frames with an `XDP_TX` program.
    Live,
    /// A frame circulating through an XDP program that broadcasts copies through a
    /// devmap (for kernels that refuse live frames).
    Fanout,
    /// An AF_XDP socket transmitting from its UMEM (no pacing, no probes).
    AfXdp,
}

impl GeneratorKind {
    /// Its name in the report and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Live => "live-frames",
            Self::Fanout => "fanout",
            Self::AfXdp => "af-xdp",
        }
    }

    /// Whether it paces (offers less than its full rate): the zero-loss search and the
    /// latency trial need it.
    pub fn paces(self) -> bool {
        self != Self::AfXdp
    }
}

/// The cores the generator and the forwarder under test are pinned to.
#[derive(Clone, Copy, Debug)]
pub struct Cores {
    pub generator: usize,
    pub forwarder: usize,
}

impl Cores {
    /// The first two cores of this process's CPU set (the same core twice if it has
    /// only one).
    pub fn pick() -> Result<Self> {
        let cores: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        let (generator, forwarder) = match cores.as_slice() {
            [] => bail!("cannot read this process's CPU set"),
            [only] => (*only, *only),
            [a, b, ..] => (*a, *b),
        };
        Ok(Self {
            generator,
            forwarder,
        })
    }
}

/// The lab: namespaces gen, dut and sink, the veths g0–d0 and d1–s0, and RFC 2889's
/// d2–m0.
#[derive(Debug)]
pub struct Topology {
    pub lab: Lab,
    pub gen_ns: Netns,
    pub dut_ns: Netns,
    pub sink_ns: Netns,
    /// g0's MAC address: the test frames' source.
    pub gen_mac: Mac,
    /// s0's MAC address: the test frames' destination.
    pub sink_mac: Mac,
}

impl Topology {
    /// Builds the lab (after removing what killed runs left behind).
    pub fn build() -> Result<Self> {
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
        // The fan-out generator's turning pair, both ends in the generator's namespace.
        lab.veth((&gen_ns, "a0"), (&gen_ns, "a1"), 1)?;
        // Live frames arrive on d0 as xdp_frames, which a veth takes only in NAPI mode: on
        // when an XDP program is attached (hairpin), or with GRO on (the Linux bridge).
        dut.run("ethtool", &["-K", "d0", "gro", "on"])?;
        let gen_mac = gen_ns.enter(|| Interface::lookup("g0").map(|i| i.mac))??;
        let sink_mac = sink.enter(|| Interface::lookup("s0").map(|i| i.mac))??;
        Ok(Self {
            lab,
            gen_ns,
            dut_ns: dut,
            sink_ns: sink,
            gen_mac,
            sink_mac,
        })
    }
}

impl Topology {
    /// Sets the MTU of every veth of the lab, both ends.
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        let mtu = mtu.to_string();
        for (ns, ifname) in [
            (&self.gen_ns, "g0"),
            (&self.dut_ns, "d0"),
            (&self.dut_ns, "d1"),
            (&self.sink_ns, "s0"),
            (&self.dut_ns, "d2"),
            (&self.sink_ns, "m0"),
        ] {
            ns.ip(&["link", "set", ifname, "mtu", &mtu])?;
        }
        Ok(())
    }
}

/// Copies the fan-out generator sends out of g0 per turn of its circulating frame: as
/// many as a veth's NAPI takes in one poll (64), so d0's receive ring (256) never
/// overflows between its polls, and the bursts are as long as the live-frames
/// generator's batches. More circulating frames or copies overrun d0's ring (measured in
/// docs/performance.md).
const FANOUT_COPIES: u32 = 64;

/// The kernel-side generator a run uses.
enum Kernel {
    Live(generator::LiveFrames),
    Fanout(generator::Fanout),
    /// `--generator af-xdp`.
    None,
}

/// The traffic generator, ready to transmit out of g0.
pub struct Generator {
    /// The generator in use (never `Auto`).
    pub kind: GeneratorKind,
    /// Why live frames were not used, when `--generator auto` fell back.
    pub fallback: Option<String>,
    kernel: Kernel,
    /// For frames longer than live frames carry, whatever `kind` says.
    pub chains: generator::Chains,
    /// g0's index, in the gen namespace.
    ifindex: u32,
}

impl Generator {
    /// Loads the generator `--generator` names (`auto`: live frames if the kernel runs
    /// them, else the fan-out), spread over `--flows` flows, to transmit out of g0 in
    /// `gen_ns`; `core` is the generator's.
    pub fn load(topology: &Topology, args: &Args, core: usize) -> Result<Self> {
        let gen_ns = &topology.gen_ns;
        let ifindex = gen_ns.enter(|| Interface::lookup("g0").map(|i| i.ifindex))??;
        let probe = generator::udp_frame(topology.gen_mac, topology.sink_mac, 60);
        let live = || -> Result<generator::LiveFrames> {
            gen_ns.enter(|| -> Result<_> {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
                let mut live = generator::LiveFrames::load()?;
                live.probe(ifindex, &probe)?;
                Ok(live)
            })?
        };
        let fanout = || -> Result<generator::Fanout> {
            gen_ns.enter(|| -> Result<_> {
                let index = |name| Interface::lookup(name).map(|i| i.ifindex);
                generator::Fanout::load(ifindex, index("a0")?, index("a1")?, FANOUT_COPIES)
                    .context("the fan-out generator (XDP broadcast through a devmap, Linux 5.15)")
            })?
        };
        let (kernel, fallback) = match args.generator {
            GeneratorKind::Auto => match live() {
                Ok(live) => (Kernel::Live(live), None),
                Err(refused) => match fanout() {
                    Ok(fanout) => (Kernel::Fanout(fanout), Some(format!("{refused:#}"))),
                    Err(e) => bail!(
                        "no generator that paces can run here: the kernel refuses live frames ({refused:#}), and {e:#}; `--generator af-xdp` measures overload only"
                    ),
                },
            },
            GeneratorKind::Live => (Kernel::Live(live()?), None),
            GeneratorKind::Fanout => (Kernel::Fanout(fanout()?), None),
            GeneratorKind::AfXdp => (Kernel::None, None),
        };
        let kind = match kernel {
            Kernel::Live(_) => GeneratorKind::Live,
            Kernel::Fanout(_) => GeneratorKind::Fanout,
            Kernel::None => GeneratorKind::AfXdp,
        };
        let mut generator = Self {
            kind,
            fallback,
            kernel,
            chains: generator::Chains::default(),
            ifindex,
        };
        if let Some(settings) = generator.settings() {
            settings.set_flows(args.flows)?;
        }
        Ok(generator)
    }

    /// The kernel-side generator's settings, if one runs.
    fn settings(&mut self) -> Option<&mut generator::GenObject> {
        match &mut self.kernel {
            Kernel::Live(live) => Some(live.settings()),
            Kernel::Fanout(fanout) => Some(fanout.settings()),
            Kernel::None => None,
        }
    }

    /// Gives the frames `n` distinct source MACs; 0: the frame's own only.
    pub fn set_sources(&mut self, n: u32) -> Result<()> {
        match self.settings() {
            Some(settings) => settings.set_sources(n),
            None => bail!(
                "RFC 2889 needs many source addresses: a kernel-side generator (live frames or the fan-out)"
            ),
        }
    }
}

/// What one trial sent and what arrived.
pub struct Trial {
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
    /// Frames that arrived after a later frame of their flow.
    pub reordered: u64,
    /// Frames that arrived with the generator's probe.
    pub probed: u64,
    /// One-way latency of the frames that arrived (ns); empty without probes.
    pub latency: hdrhistogram::Histogram<u64>,
    /// What every core of the machine spent while the trial ran.
    pub cpu: Vec<CoreUse>,
}

/// The latency percentiles reported.
const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)];

impl Trial {
    /// `p50/p90/p99/p99.9/max` in µs, or `n/a` without probes.
    pub fn latency_text(&self) -> String {
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

    pub fn mpps(&self) -> f64 {
        self.received as f64 / self.seconds / 1e6
    }

    pub fn offered(&self) -> f64 {
        self.sent as f64 / self.seconds
    }

    /// Each core's busy time per frame delivered, in ns: (core, ns).
    pub fn ns_per_frame(&self) -> Vec<(usize, f64)> {
        self.cpu
            .iter()
            .map(|c| (c.core, c.ns_per_frame(self.received)))
            .collect()
    }
}

/// The share of the frames sent that did not arrive, in percent.
pub fn loss(t: &Trial) -> f64 {
    if t.sent == 0 {
        0.0
    } else {
        100.0 * (1.0 - t.received as f64 / t.sent as f64).max(0.0)
    }
}

/// The median of `values` (the upper one of an even count; 0 if there are none).
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs trials: the generator sends [`Harness::frame`] from its namespace, the sinks
/// count what arrives, and every trial is logged for the report.
pub struct Harness {
    gen_ns: Netns,
    pub generator: Generator,
    /// The frame the generator sends.
    pub frame: Vec<u8>,
    core: usize,
    /// "device|size|round" of the trials now running, for the log.
    pub context: String,
    /// Every trial, for the JSON report.
    pub log: Vec<serde_json::Value>,
}

impl Harness {
    /// A harness that sends from `generator` in `gen_ns`, pinned to `core`; no frame yet.
    pub fn new(gen_ns: &Netns, generator: Generator, core: usize) -> Self {
        Self {
            gen_ns: gen_ns.clone(),
            generator,
            frame: Vec::new(),
            core,
            context: String::new(),
            log: Vec::new(),
        }
    }

    /// One trial: the generator runs for about `duration` sending `share` runs in 1024
    /// (all of them: flat out), and the sink counts what arrived.
    pub fn trial(
        &mut self,
        duration: Duration,
        share: u32,
        sinks: &mut [&mut ProbeSink],
    ) -> Result<Trial> {
        for sink in sinks.iter_mut() {
            sink.reset()?;
        }
        let refused_before = self.refused_by_d0()?;
        let (cpu_before, wall) = (CpuTimes::read()?, std::time::Instant::now());
        let (frame, core, g) = (&self.frame, self.core, &mut self.generator);
        let (sent, seconds) = self.gen_ns.enter(|| -> Result<(u64, f64)> {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
            Ok(match &mut g.kernel {
                _ if frame.len() > generator::LIVE_FRAME_MAX => {
                    let s = g.chains.blast(g.ifindex, frame, duration, share)?;
                    (s.frames, s.elapsed.as_secs_f64())
                }
                Kernel::Live(live) => {
                    let p = live.blast(g.ifindex, frame, duration, share)?;
                    (p.frames, p.seconds)
                }
                Kernel::Fanout(fanout) => {
                    let p = fanout.blast(frame, duration, share)?;
                    (p.frames, p.seconds)
                }
                Kernel::None => {
                    let s = generator::blast("g0", frame, duration)?;
                    (s.frames, s.elapsed.as_secs_f64())
                }
            })
        })??;
        // Frames still in flight land within a moment.
        thread::sleep(Duration::from_millis(50));
        let cpu = cpu_before.until(&CpuTimes::read()?, wall.elapsed());
        // Frames the generator handed to g0 that never entered d0 were never offered.
        let refused = self.refused_by_d0()? - refused_before;
        let sent = sent.saturating_sub(refused);
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
            cpu,
        };
        let mut context = self.context.split('|');
        self.log.push(serde_json::json!({
            "device": context.next(),
            "size": context.next().and_then(|s| s.parse::<usize>().ok()),
            "round": context.next().and_then(|s| s.parse::<usize>().ok()),
            "share_of_1024": share,
            "sent": t.sent,
            "refused_by_d0": refused,
            "received": t.received,
            "seconds": t.seconds,
            "offered_mpps": t.offered() / 1e6,
            "delivered_mpps": t.mpps(),
            "loss_percent": loss(&t),
            "reordered": t.reordered,
            "probed": t.probed,
            "latency_ns": t.percentiles_json(),
            "cpu": t.cpu.iter().map(|c| serde_json::json!({
                "core": c.core,
                "busy_percent": c.percent(),
                "ns_per_frame": c.ns_per_frame(t.received),
            })).collect::<Vec<_>>(),
        }));
        Ok(t)
    }

    /// xdp_frames g0 could not hand to d0 (its receive ring full), so far: the veth
    /// counts them on g0 (`ethtool -S`, `tx_queue_N_xdp_xmit_errors`).
    fn refused_by_d0(&self) -> Result<u64> {
        let out = self.gen_ns.run("ethtool", &["-S", "g0"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.trim().split_once(':'))
            .filter(|(name, _)| name.starts_with("tx_queue_") && name.ends_with("_xdp_xmit_errors"))
            .filter_map(|(_, n)| n.trim().parse::<u64>().ok())
            .sum())
    }

    /// Sends at least `frames` frames at `share` in 1024 (a kernel-side generator only);
    /// returns the seconds it took.
    pub fn send_frames(&mut self, frames: u64, share: u32) -> Result<f64> {
        let (frame, core, g) = (&self.frame, self.core, &mut self.generator);
        self.gen_ns.enter(|| -> Result<f64> {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
            Ok(match &mut g.kernel {
                Kernel::Live(live) => live.blast_frames(g.ifindex, frame, frames, share)?.seconds,
                Kernel::Fanout(fanout) => fanout.blast_frames(frame, frames, share)?.seconds,
                Kernel::None => {
                    bail!("RFC 2889 needs a kernel-side generator (live frames or the fan-out)")
                }
            })
        })?
    }
}

/// Sends one frame from `src` to each of `n` addresses out of `s0`, tagged with `vlan`
/// if given, paced so the switch's receive rings never overflow.
pub fn send_to_each(n: u32, dst: impl Fn(u32) -> Mac, src: Mac, vlan: Option<u16>) -> Result<()> {
    let socket =
        PacketSocket::open(Interface::lookup("s0")?.ifindex).context("AF_PACKET socket")?;
    let mut frame = [0u8; 64];
    frame[6..12].copy_from_slice(&src.0);
    let mut at = dot1q::OFFSET;
    if let Some(vid) = vlan {
        frame[at..at + TAG_LEN].copy_from_slice(&dot1q::tag(vid));
        at += TAG_LEN;
    }
    frame[at..at + 2].copy_from_slice(&[0x88, 0xb5]); // local experimental EtherType
    for i in 0..n {
        frame[..6].copy_from_slice(&dst(i).0);
        socket.send(&frame).context("sending a test frame")?;
        if i % 64 == 63 {
            thread::sleep(Duration::from_micros(400));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_upper_middle() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), 3.0);
        assert_eq!(median(std::iter::empty()), 0.0);
    }

    #[test]
    fn loss_is_the_missing_share() {
        let trial = |sent, received| Trial {
            sent,
            received,
            seconds: 1.0,
            reordered: 0,
            probed: 0,
            latency: hdrhistogram::Histogram::new(3).unwrap(),
            cpu: Vec::new(),
        };
        assert_eq!(loss(&trial(0, 0)), 0.0);
        assert!((loss(&trial(1000, 990)) - 1.0).abs() < 1e-9);
        // More received than sent (a stray frame) is no loss, never a gain.
        assert_eq!(loss(&trial(10, 11)), 0.0);
    }
}
