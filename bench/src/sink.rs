//! The benchmark's sink: hairpin's `hairpin_sink` XDP program on the receiving port.
//!
//! It counts every frame and, for frames carrying the generator's probe, records the
//! one-way latency (send and receive stamps come from the same `bpf_ktime_get_ns` clock
//! on the same host) into a per-CPU histogram and counts frames that arrive after a
//! later one of their flow. Counting and dropping in XDP keeps up with the generator
//! where a busy-polling user-space sink would take a core from the forwarder on a
//! 2-vCPU machine. [`ProbeSink::reading`] folds the per-CPU histogram buckets into an
//! HdrHistogram for percentiles.
use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Array, PerCpuArray, PerCpuValues},
    programs::{
        Xdp,
        xdp::{XdpLinkId, XdpMode},
    },
};
use hairpin::control::{port::Interface, xdp::XdpAttachMode};
use hairpin_common::{SINK_PROGRAM_NAME, maps, probe, sink_stat};
use hdrhistogram::Histogram;

/// The sink's program, attached to one interface until dropped.
pub struct ProbeSink {
    ebpf: Ebpf,
    ifindex: u32,
    mode: XdpAttachMode,
    /// The attachment (`None` only between a failed re-attach and the drop).
    link: Option<XdpLinkId>,
}

/// What the sink saw since its last reset.
#[derive(Debug)]
pub struct Reading {
    /// Every frame.
    pub frames: u64,
    /// Frames with a probe.
    pub probed: u64,
    /// Probed frames that arrived after a later frame of their flow.
    pub reordered: u64,
    /// One-way latency of the probed frames, in nanoseconds (bucket midpoints, 3 %).
    pub latency: Histogram<u64>,
}

impl ProbeSink {
    /// Loads the sink and attaches it to `ifname` in the calling thread's namespace.
    pub fn attach(ifname: &str, mode: XdpAttachMode) -> Result<(Self, Interface)> {
        let iface = Interface::lookup(ifname)?;
        let mut ebpf = Ebpf::load(hairpin::control::xdp::embedded_object()?)?;
        let program: &mut Xdp = ebpf
            .program_mut(SINK_PROGRAM_NAME)
            .context("the eBPF object has no sink program")?
            .try_into()?;
        program.load()?;
        let link = Self::attach_program(program, iface.ifindex, mode)?;
        let sink = Self {
            ebpf,
            ifindex: iface.ifindex,
            mode,
            link: Some(link),
        };
        Ok((sink, iface))
    }

    fn attach_program(program: &mut Xdp, ifindex: u32, mode: XdpAttachMode) -> Result<XdpLinkId> {
        let xdp_mode = match mode {
            XdpAttachMode::Native => XdpMode::Driver,
            XdpAttachMode::Generic => XdpMode::Skb,
            XdpAttachMode::Auto => XdpMode::default(),
        };
        program
            .attach_to_if_index(ifindex, xdp_mode)
            .with_context(|| format!("attaching the sink to interface {ifindex}"))
    }

    /// Attaches the sink again in `mode`, unless it already is; its counters stay.
    pub fn set_mode(&mut self, mode: XdpAttachMode) -> Result<()> {
        if mode == self.mode {
            return Ok(());
        }
        let program: &mut Xdp = self
            .ebpf
            .program_mut(SINK_PROGRAM_NAME)
            .context("the eBPF object has no sink program")?
            .try_into()?;
        if let Some(link) = self.link.take() {
            program.detach(link)?;
        }
        self.link = Some(Self::attach_program(program, self.ifindex, mode)?);
        self.mode = mode;
        Ok(())
    }

    fn per_cpu(&self, name: &str) -> Result<PerCpuArray<&aya::maps::MapData, u64>> {
        let map = self
            .ebpf
            .map(name)
            .with_context(|| format!("no {name} map"))?;
        Ok(PerCpuArray::try_from(map)?)
    }

    /// Zeroes every counter, the histogram and the flows' sequence state.
    pub fn reset(&mut self) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let zeros = || PerCpuValues::try_from(vec![0u64; cpus]);
        for (name, len) in [
            (maps::SINK_STATS, sink_stat::COUNT),
            (maps::SINK_LATENCY, probe::LATENCY_BUCKETS),
        ] {
            let map = self
                .ebpf
                .map_mut(name)
                .with_context(|| format!("no {name} map"))?;
            let mut array: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
            for i in 0..len {
                array.set(i, zeros()?, 0)?;
            }
        }
        let map = self
            .ebpf
            .map_mut(maps::SINK_FLOWS)
            .context("no SINK_FLOWS map")?;
        let mut flows: Array<_, u64> = Array::try_from(map)?;
        for i in 0..probe::MAX_FLOWS {
            flows.set(i, 0, 0)?;
        }
        Ok(())
    }

    /// Everything the sink saw since its last reset.
    pub fn reading(&self) -> Result<Reading> {
        let stats = self.per_cpu(maps::SINK_STATS)?;
        let stat = |i| -> Result<u64> { Ok(stats.get(&i, 0)?.iter().sum()) };
        let buckets = self.per_cpu(maps::SINK_LATENCY)?;
        let mut latency = Histogram::new(3)?;
        for b in 0..probe::LATENCY_BUCKETS {
            let n: u64 = buckets.get(&b, 0)?.iter().sum();
            if n > 0 {
                let (low, high) = probe::bucket_range(b);
                latency.record_n((low + high) / 2, n)?;
            }
        }
        Ok(Reading {
            frames: stat(sink_stat::FRAMES)?,
            probed: stat(sink_stat::PROBED)?,
            reordered: stat(sink_stat::REORDERED)?,
            latency,
        })
    }
}
