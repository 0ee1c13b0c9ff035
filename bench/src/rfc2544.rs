//! RFC 2544 on two ports: the frame sizes (`--sizes`), the throughput search (the
//! highest offered rate without loss, [`Harness::zero_loss_rate`]), and each device's
//! round at one size ([`measure_size`]): overload, zero-loss rate, latency at
//! `--latency-load` of it.
use std::time::Duration;

use anyhow::Result;
use hairpin::control::xdp::XdpAttachMode;

use crate::{
    Args,
    devices::{Dut, TWO_PORTS, start_dut},
    generator,
    harness::{Harness, Topology, Trial, loss},
    sink::ProbeSink,
};

/// One `--sizes` entry: a size, or all of RFC 2544's.
#[derive(Clone, Debug)]
pub struct Sizes(Vec<usize>);

const RFC2544_SIZES: [usize; 7] = [64, 128, 256, 512, 1024, 1280, 1518];

/// The longest frame of an MTU-1500 Ethernet, FCS included.
pub const STANDARD_MAX: usize = 1518;

/// The lab's MTU for sizes beyond [`STANDARD_MAX`], and the longest frame it carries
/// (9000 bytes of payload, the header and the FCS).
pub const JUMBO_MTU: u32 = 9000;
const JUMBO_MAX: usize = JUMBO_MTU as usize + 18;

/// Parses one `--sizes` entry: a frame size from 64 to 9018 (beyond 1518 the lab runs at
/// MTU 9000 for it), or `all`.
pub fn parse_size(text: &str) -> Result<Sizes, String> {
    if text == "all" {
        return Ok(Sizes(RFC2544_SIZES.to_vec()));
    }
    match text.parse::<usize>() {
        Ok(n) if (64..=JUMBO_MAX).contains(&n) => Ok(Sizes(vec![n])),
        _ => Err(format!(
            "{text:?}: a frame size from 64 to {JUMBO_MAX} (jumbo beyond {STANDARD_MAX}), or `all`"
        )),
    }
}

/// `--quick`'s sizes: 64 bytes only.
pub fn quick_sizes() -> Vec<Sizes> {
    vec![Sizes(vec![64])]
}

/// The frame sizes to measure, in order: `--sizes`, or all of RFC 2544's.
pub fn frame_sizes(args: &Args) -> Vec<usize> {
    match &args.sizes {
        Some(sizes) => sizes.iter().flat_map(|s| s.0.iter().copied()).collect(),
        None => RFC2544_SIZES.to_vec(),
    }
}

/// What one round found for one device at one size.
pub struct Outcome {
    pub overload: Trial,
    /// Frames per second delivered at the highest zero-loss rate found (none: no
    /// searched rate was loss-free, or no search).
    pub zero_loss: Option<f64>,
    /// Each core's busy time per frame at that rate: (core, ns).
    pub zero_loss_ns: Vec<(usize, f64)>,
    /// The trial at `--latency-load` of the zero-loss rate.
    pub at_load: Trial,
}

/// Every device's outcomes at one size, one per round.
pub type Results = Vec<(Dut, Vec<Outcome>)>;

/// The zero-loss rate found, and the generator share that offered it.
#[derive(Clone, Debug)]
pub struct ZeroLoss {
    /// Frames per second delivered.
    pub rate: f64,
    /// Runs in 1024 the generator transmitted.
    pub share: u32,
    /// Each core's busy time per frame in that trial: (core, ns).
    pub ns_per_frame: Vec<(usize, f64)>,
}

/// Measures every device at `size` bytes, `--rounds` times, the devices interleaved
/// round by round; prints each round.
pub fn measure_size(
    topology: &mut Topology,
    harness: &mut Harness,
    s0: &mut ProbeSink,
    devices: &[Dut],
    size: usize,
    args: &Args,
    core: usize,
) -> Result<Results> {
    // RFC 2544 sizes count the 4-byte FCS, which a veth never carries.
    harness.frame = generator::udp_frame(topology.gen_mac, topology.sink_mac, size - 4);
    let mut results: Results = devices.iter().map(|&d| (d, Vec::new())).collect();
    for round in 0..args.rounds {
        for (dut_kind, outcomes) in &mut results {
            harness.context = format!("{}|{size}|{}", dut_kind.name(), round + 1);
            let outcome = measure_round(topology, harness, s0, *dut_kind, args, core)?;
            println!(
                "  {size:>4} B round {}: {:<17} overload: {:>6.3} Mpps offered, {:>6.3} delivered ({:>4.1}% lost); zero-loss: {}; latency at {:.3} Mpps: {}",
                round + 1,
                dut_kind.name(),
                outcome.overload.offered() / 1e6,
                outcome.overload.mpps(),
                loss(&outcome.overload),
                outcome
                    .zero_loss
                    .map_or("n/a".to_owned(), |rate| format!("{:.3} Mpps", rate / 1e6)),
                outcome.at_load.offered() / 1e6,
                outcome.at_load.latency_text(),
            );
            outcomes.push(outcome);
        }
    }
    Ok(results)
}

/// One round of device `kind`: starts it, lets it settle, then the overload trial, the
/// zero-loss search and the latency trial; stops it.
fn measure_round(
    topology: &mut Topology,
    harness: &mut Harness,
    s0: &mut ProbeSink,
    kind: Dut,
    args: &Args,
    core: usize,
) -> Result<Outcome> {
    let Topology {
        lab,
        dut_ns: dut,
        sink_ns,
        gen_mac,
        sink_mac,
        ..
    } = topology;
    // In the sink's namespace: the kernel finds s0 by its index there.
    sink_ns.enter(|| s0.set_mode(kind.sink_mode(args.sink_xdp)))??;
    // The direct path counts on d0 itself; every other device on s0.
    let mut direct = match kind {
        Dut::Direct => Some(
            dut.enter(|| ProbeSink::attach("d0", XdpAttachMode::Native))??
                .0,
        ),
        _ => None,
    };
    let counter = match direct.as_mut() {
        Some(d) => d,
        None => s0,
    };
    let stop = start_dut(lab, dut, kind, args, core, TWO_PORTS)?;
    // RFC 2544's learning frames (section 23): the sink announces its address, so a
    // learning switch forwards the test frames to it instead of flooding them (and
    // hairpin's fast path, which takes only known destinations, can take them).
    let (to, from) = (*gen_mac, *sink_mac);
    let vlan = kind.sink_vlan();
    sink_ns.enter(|| crate::harness::send_to_each(1, |_| to, from, vlan))??;
    let seconds = Duration::from_secs_f64(args.seconds);
    // Let the forwarder settle (and the bridge learn) before measuring.
    let all = hairpin_common::GEN_SHARE_ONE;
    let sinks = &mut [counter];
    harness.trial(Duration::from_millis(200), all, sinks)?;
    let overload = harness.trial(seconds, all, sinks)?;
    let zero_loss = if args.search_steps > 0 {
        harness.zero_loss_rate(sinks, seconds, args)?
    } else {
        None
    };
    // Latency at a fraction of the zero-loss rate (of the overload rate when no rate was
    // loss-free).
    let full = zero_loss.as_ref().map_or(all, |z| z.share);
    let share = ((f64::from(full) * args.latency_load).round() as u32).max(1);
    let at_load = harness.trial(seconds, share, sinks)?;
    stop(lab, dut)?;
    drop(direct);
    Ok(Outcome {
        overload,
        zero_loss: zero_loss.as_ref().map(|z| z.rate),
        zero_loss_ns: zero_loss.map(|z| z.ns_per_frame).unwrap_or_default(),
        at_load,
    })
}

impl Harness {
    /// RFC 2544 throughput: the highest offered rate whose trial loses no more than the
    /// tolerance, by binary search over the generator's share. Returns the delivered
    /// frames per second at that rate.
    pub fn zero_loss_rate(
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
                    ns_per_frame: t.ns_per_frame(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_rfc_2544_frame_sizes_jumbo_ones_or_all() {
        assert_eq!(parse_size("64").unwrap().0, [64]);
        assert_eq!(parse_size("1518").unwrap().0, [1518]);
        assert_eq!(parse_size("9018").unwrap().0, [9018]);
        assert_eq!(parse_size("all").unwrap().0, RFC2544_SIZES);
        for bad in ["63", "9019", "", "big"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
