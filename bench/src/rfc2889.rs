//! RFC 2889 tests of the learning switches (hairpin `veb`, the Linux bridge, Open
//! vSwitch `NORMAL`), on a third DUT port d2 whose peer m0 is a counting monitor:
//!
//! ```text
//!   ns gen: g0 ──── d0 ┐ ns dut ┌ d1 ──── s0 ┐ ns sink
//!                      └─ d2 ───┼─────── m0 ┘ (monitor: counts floods)
//! ```
//!
//! - **Address caching capacity** (section 5.7): the generator sends from N distinct
//!   source MACs into d0 (the switch learns them there); then s0 sends one frame to each
//!   of the N addresses. A switch that remembers them all sends every frame to d0 only;
//!   one that forgot some floods those to m0 too. The capacity is the largest N with
//!   nothing at m0, by binary search, a fresh switch each trial.
//! - **Address learning rate** (section 5.8): the same with N at the capacity found (at
//!   most [`LEARN_ADDRESSES`]), searching the highest rate of the learning frames at
//!   which every address is still learned.
//! - **Broadcast forwarding rate** (section 5.9): broadcast frames into d0, counted at
//!   s0 and m0; the RFC 2544 search for the highest rate both receive without loss.
//!
//! A trial is valid only if every learning frame got through (flooded to s0) and every
//! test frame reached g0: otherwise a lost frame could pass for a forgotten address.
use std::{thread, time::Duration};

use anyhow::Result;
use hairpin::{
    netlab::{Lab, Netns},
    wire::Mac,
};

use crate::{
    Args,
    devices::{Dut, THREE_PORTS, start_dut},
    generator,
    harness::{self, Harness, Topology},
    sink::ProbeSink,
};

/// Most addresses the capacity search tries.
pub const MAX_ADDRESSES: u32 = 1 << 17;
/// Addresses learned in the learning-rate search (or the capacity, if smaller).
pub const LEARN_ADDRESSES: u32 = 4096;
/// The generator's share while teaching addresses for the capacity search: slow enough
/// for every switch here to take every frame.
const TEACH_SHARE: u32 = 32;

/// The ports and counters the tests use.
pub struct Rig<'a> {
    pub lab: &'a mut Lab,
    pub dut: &'a Netns,
    pub sink_ns: &'a Netns,
    pub args: &'a Args,
    pub core: usize,
    /// Counts the test frames delivered back to the generator's port.
    pub g0: ProbeSink,
    /// Counts learning frames (they flood there) and broadcasts.
    pub s0: &'a mut ProbeSink,
    /// The monitor: floods.
    pub m0: ProbeSink,
    pub gen_mac: Mac,
    pub s0_mac: Mac,
    /// Trials that lost learning or test frames (each retried once).
    pub lossy: u32,
}

/// One learn-then-probe trial.
#[derive(Clone, Copy, Debug)]
struct Probe {
    /// Learning frames that got through the switch (to s0).
    taught: u64,
    /// Seconds the learning frames took.
    teach_seconds: f64,
    /// Test frames that reached g0.
    delivered: u64,
    /// Test frames flooded to m0: addresses the switch did not know.
    flooded: u64,
}

impl Probe {
    fn valid(&self, n: u32) -> bool {
        self.taught >= u64::from(n) && self.delivered >= u64::from(n)
    }
}

/// Each core's busy ns per frame: (core, ns).
type PerCore = Vec<(usize, f64)>;

/// What the tests found for one device.
#[derive(Debug)]
pub struct Findings {
    /// Trials that lost frames (retried; a capacity trial lossy twice counts as failed).
    pub lossy: u32,
    pub capacity: Option<u32>,
    /// Addresses per second, and how many.
    pub learning_rate: Option<(f64, u32)>,
    /// Broadcast frames per second in, each delivered to both other ports.
    pub broadcast_zero_loss: Option<f64>,
    pub broadcast_overload: f64,
    /// Each core's busy time per frame delivered (a copy at s0 or m0) at the broadcast
    /// zero-loss rate: (core, ns).
    pub broadcast_ns: PerCore,
}

/// The generator's MAC with its last three bytes replaced by `i`: address `i` of a test.
fn address(base: Mac, i: u32) -> Mac {
    let mut m = base.0;
    m[3..].copy_from_slice(&i.to_be_bytes()[1..]);
    Mac(m)
}

/// Runs every test on each of `learners`, printing each device's findings as it
/// goes; `s0` is the sink on s0, `core` the forwarder's.
pub fn measure(
    topology: &mut Topology,
    harness: &mut Harness,
    s0: &mut ProbeSink,
    learners: &[Dut],
    args: &Args,
    core: usize,
) -> Result<Vec<(Dut, Findings)>> {
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
    let (g0_sink, _) = topology
        .gen_ns
        .enter(|| ProbeSink::attach("g0", args.sink_xdp))??;
    let (m0_sink, _) = topology
        .sink_ns
        .enter(|| ProbeSink::attach("m0", args.sink_xdp))??;
    let mut rig = Rig {
        lab: &mut topology.lab,
        dut: &topology.dut_ns,
        sink_ns: &topology.sink_ns,
        args,
        core,
        g0: g0_sink,
        s0,
        m0: m0_sink,
        gen_mac: topology.gen_mac,
        s0_mac: topology.sink_mac,
        lossy: 0,
    };
    harness.frame = generator::udp_frame(topology.gen_mac, topology.sink_mac, 60);
    let mut rows = Vec::new();
    for &kind in learners {
        harness.context = format!("{} rfc2889|64|1", kind.name());
        let f = rig.run(kind, harness)?;
        println!(
            "  {:<17} address caching capacity: {}; learning rate: {}; broadcast: {} zero-loss ({}), {:.3} Mpps under overload; {} lossy trial(s)",
            kind.name(),
            f.capacity.map_or("n/a".to_owned(), |c| c.to_string()),
            f.learning_rate.map_or("n/a".to_owned(), |(r, n)| format!(
                "{:.3} M addresses/s ({n} addresses)",
                r / 1e6
            )),
            f.broadcast_zero_loss
                .map_or("n/a".to_owned(), |r| format!("{:.3} Mpps", r / 1e6)),
            crate::report::per_core(&f.broadcast_ns),
            f.broadcast_overload / 1e6,
            f.lossy,
        );
        rows.push((kind, f));
    }
    Ok(rows)
}

impl Rig<'_> {
    /// Runs every test on `kind`.
    pub fn run(&mut self, kind: Dut, harness: &mut Harness) -> Result<Findings> {
        self.lossy = 0;
        let capacity = self.capacity(kind, harness)?;
        let learning_rate = match capacity {
            Some(c) => self.learning_rate(kind, harness, c.min(LEARN_ADDRESSES))?,
            None => None,
        };
        let (broadcast_zero_loss, broadcast_overload, broadcast_ns) =
            self.broadcast(kind, harness)?;
        Ok(Findings {
            lossy: self.lossy,
            capacity,
            learning_rate,
            broadcast_zero_loss,
            broadcast_overload,
            broadcast_ns,
        })
    }

    /// Teaches a fresh switch `n` addresses at `share`, then sends a frame to each.
    fn probe(&mut self, kind: Dut, harness: &mut Harness, n: u32, share: u32) -> Result<Probe> {
        let stop = start_dut(self.lab, self.dut, kind, self.args, self.core, THREE_PORTS)?;
        let result = self.teach_and_test(harness, n, share);
        stop(self.lab, self.dut)?;
        result
    }

    fn teach_and_test(&mut self, harness: &mut Harness, n: u32, share: u32) -> Result<Probe> {
        // Let the switch settle (OVS assigns its queues, hairpin fills its rings).
        thread::sleep(Duration::from_millis(300));
        self.s0.reset()?;
        harness.generator.set_sources(n)?;
        let taught = harness.send_frames(u64::from(n), share);
        harness.generator.set_sources(0)?;
        let teach_seconds = taught?;
        thread::sleep(Duration::from_millis(100));
        let taught = self.s0.reading()?.frames;
        self.g0.reset()?;
        self.m0.reset()?;
        let (base, src) = (self.gen_mac, self.s0_mac);
        self.sink_ns
            .enter(|| harness::send_to_each(n, |i| address(base, i), src, None))??;
        thread::sleep(Duration::from_millis(200));
        Ok(Probe {
            taught,
            teach_seconds,
            delivered: self.g0.reading()?.frames,
            flooded: self.m0.reading()?.frames,
        })
    }

    /// RFC 2889 5.7: the largest number of addresses a fresh switch learns without
    /// forgetting any.
    fn capacity(&mut self, kind: Dut, harness: &mut Harness) -> Result<Option<u32>> {
        let (mut lo, mut hi) = (0u32, MAX_ADDRESSES);
        for _ in 0..self.args.rfc2889_steps {
            if lo >= hi {
                break;
            }
            let n = (lo + hi).div_ceil(2);
            // A trial that lost frames says nothing: try it again, once.
            let mut p = self.probe(kind, harness, n, TEACH_SHARE)?;
            if !p.valid(n) {
                self.lossy += 1;
                p = self.probe(kind, harness, n, TEACH_SHARE)?;
            }
            if self.args.verbose {
                println!(
                    "    {n:>6} addresses: {} taught, {} delivered, {} flooded",
                    p.taught, p.delivered, p.flooded
                );
            }
            if !p.valid(n) {
                // Twice lossy: count it as forgotten, so the capacity found is a floor.
                self.lossy += 1;
                hi = n - 1;
                continue;
            }
            if p.flooded == 0 {
                lo = n;
            } else {
                hi = n - 1;
            }
        }
        Ok((lo > 0).then_some(lo))
    }

    /// RFC 2889 5.8: the highest rate of learning frames at which `n` addresses are all
    /// learned. Returns addresses per second.
    fn learning_rate(
        &mut self,
        kind: Dut,
        harness: &mut Harness,
        n: u32,
    ) -> Result<Option<(f64, u32)>> {
        let (mut lo, mut hi) = (0u32, hairpin_common::GEN_SHARE_ONE);
        let mut best = None;
        for _ in 0..self.args.search_steps {
            let share = (lo + hi).div_ceil(2);
            if lo >= hi {
                break;
            }
            let p = self.probe(kind, harness, n, share)?;
            let rate = f64::from(n) / p.teach_seconds.max(1e-9);
            // Lost learning frames are addresses not learned: the rate was too high.
            let ok = p.valid(n) && p.flooded == 0;
            if !p.valid(n) {
                self.lossy += 1;
            }
            if self.args.verbose {
                println!(
                    "    learning {n} addresses at {:.3} M/s: {} taught, {} delivered, {} flooded",
                    rate / 1e6,
                    p.taught,
                    p.delivered,
                    p.flooded
                );
            }
            if ok {
                best = Some((rate, n));
                lo = share;
            } else {
                hi = share - 1;
            }
        }
        Ok(best)
    }

    /// RFC 2889 5.9: broadcast frames into d0, counted at both s0 and m0 (both attached
    /// natively for a device that sends xdp_frames: the kernel floods only to ports
    /// that take them).
    fn broadcast(
        &mut self,
        kind: Dut,
        harness: &mut Harness,
    ) -> Result<(Option<f64>, f64, PerCore)> {
        let mode = kind.sink_mode(self.args.sink_xdp);
        self.sink_ns.enter(|| self.s0.set_mode(mode))??;
        self.sink_ns.enter(|| self.m0.set_mode(mode))??;
        let unicast = std::mem::take(&mut harness.frame);
        let mut frame = unicast.clone();
        frame[..6].copy_from_slice(&Mac::BROADCAST.0);
        harness.frame = frame;
        let stop = start_dut(self.lab, self.dut, kind, self.args, self.core, THREE_PORTS)?;
        let seconds = Duration::from_secs_f64(self.args.seconds);
        let all = hairpin_common::GEN_SHARE_ONE;
        let mut sinks = [&mut *self.s0, &mut self.m0];
        let result = (|| -> Result<_> {
            harness.trial(Duration::from_millis(200), all, &mut sinks)?;
            let overload = harness.trial(seconds, all, &mut sinks)?;
            let zero = harness.zero_loss_rate(&mut sinks, seconds, self.args)?;
            let ns = zero.as_ref().map_or(Vec::new(), |z| z.ns_per_frame.clone());
            Ok((zero.map(|z| z.rate), overload.mpps() * 1e6, ns))
        })();
        stop(self.lab, self.dut)?;
        harness.frame = unicast;
        result
    }
}
