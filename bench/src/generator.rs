//! The traffic generators: XDP live frames ([`LiveFrames`], the default), the XDP
//! fan-out ([`Fanout`], where the kernel refuses live frames), an AF_XDP socket
//! ([`blast`], `--generator af-xdp`), and for frames longer than live frames carry, an
//! AF_XDP socket sending chains ([`Chains`]).
//!
//! The AF_XDP ones write every UMEM frame once; the loop then only moves descriptors:
//! reserve a batch on the TX ring, kick the kernel, reap completions. In copy mode (veth)
//! the `sendto` kick does the transmitting, so the loop's core is the generator's
//! ceiling.
use std::{
    io::Write as _,
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use hairpin::wire::Mac;
use hairpin_common::generator as g;
use xsk_rs::{
    FrameDesc, Socket, Umem,
    config::{BindFlags, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
};

const FRAMES: u32 = 4096;
const BATCH: usize = 64;

/// A UDP/IPv4 frame of `len` bytes (at least 60) from `src` to `dst`, checksums valid.
pub fn udp_frame(src: Mac, dst: Mac, len: usize) -> Vec<u8> {
    let len = len.max(60);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    let mut ip = [
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
    ];
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    ip[10..12].copy_from_slice(&(!((folded & 0xffff) + (folded >> 16)) as u16).to_be_bytes());
    f.extend_from_slice(&ip);
    let udp_len = ip_len - 20;
    f.extend_from_slice(&9000u16.to_be_bytes());
    f.extend_from_slice(&9001u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]); // UDP checksum 0: none, valid for IPv4
    f.resize(len, 0);
    f
}

/// What one generator run did.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// Frames the kernel completed.
    pub frames: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Transmits `frame` on `ifname` queue 0 for `duration`, from the calling thread.
pub fn blast(ifname: &str, frame: &[u8], duration: Duration) -> Result<Sent> {
    let umem_config = UmemConfig::builder()
        .comp_queue_size(QueueSize::new(2048).expect("power of two"))
        .build()
        .map_err(|e| anyhow!("UMEM config: {e}"))?;
    let (umem, mut descs) = Umem::new(umem_config, FRAMES.try_into().expect("non-zero"), false)
        .map_err(|e| anyhow!("creating the generator's UMEM: {e}"))?;
    let socket_config = SocketConfig::builder()
        .tx_queue_size(QueueSize::new(2048).expect("power of two"))
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP | BindFlags::XDP_COPY)
        .build();
    let name = ifname
        .parse()
        .map_err(|_| anyhow!("bad interface name {ifname}"))?;
    // SAFETY: libxdp's program load is inhibited and this UMEM has only this socket.
    let (mut tx, _rx, rings) = unsafe { Socket::new(socket_config, &umem, &name, 0) }
        .map_err(|e| anyhow!("binding the generator to {ifname}: {e}"))?;
    let (_fq, mut cq) = rings.context("the first socket of a UMEM has its own rings")?;
    for desc in &mut descs {
        // SAFETY: the frames are fresh from this UMEM and on no ring yet.
        unsafe { umem.data_mut(desc) }.cursor().write_all(frame)?;
    }
    let fd = tx.fd().as_raw_fd();
    let mut free = descs;
    let mut done = [FrameDesc::default(); BATCH];
    let mut completed = 0u64;
    let start = Instant::now();
    let mut turns = 0u32;
    loop {
        let n = free.len().min(BATCH);
        if n > 0 {
            let from = free.len() - n;
            // SAFETY: `free` holds frames of `umem` that are on no ring.
            if unsafe { tx.produce(&free[from..]) } == n {
                free.truncate(from);
            }
        }
        kick(fd);
        // SAFETY: completions are frames of `umem` the kernel is done with.
        let c = unsafe { cq.consume(&mut done) };
        for desc in &mut done[..c] {
            // Completions come back with length 0; the bytes are still there.
            // SAFETY: as above, the frame is ours again.
            unsafe { umem.data_mut(desc) }.cursor().set_pos(frame.len());
        }
        free.extend_from_slice(&done[..c]);
        completed += c as u64;
        turns = turns.wrapping_add(1);
        if turns.is_multiple_of(64) && start.elapsed() >= duration {
            break;
        }
    }
    Ok(Sent {
        frames: completed,
        elapsed: start.elapsed(),
    })
}

/// The eBPF object of the kernel-side generators ([`LiveFrames`], [`Fanout`]): their
/// programs, and the settings and per-CPU state they share (`GEN_CONFIG`, `GEN_STATE`,
/// by [`hairpin_common::generator`]).
pub struct GenObject {
    ebpf: aya::Ebpf,
}

impl GenObject {
    /// Spreads the frames over `flows` flows (UDP source ports 9000 and up).
    pub fn set_flows(&mut self, flows: u32) -> Result<()> {
        self.configure(g::FLOWS, flows.clamp(1, hairpin_common::probe::MAX_FLOWS))
    }

    /// Gives the frames `n` distinct source MACs (the frame's own with the last three
    /// bytes 0 to `n - 1`); 0: the frame's own only.
    pub fn set_sources(&mut self, n: u32) -> Result<()> {
        self.configure(g::SOURCES, n.min(1 << 24))
    }

    fn load() -> Result<Self> {
        Ok(Self {
            ebpf: aya::Ebpf::load(hairpin::control::xdp::embedded_object()?)?,
        })
    }

    /// Loads the XDP program `name`.
    fn load_program(&mut self, name: &str) -> Result<()> {
        let program: &mut aya::programs::Xdp = self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("the eBPF object has no {name} program"))?
            .try_into()?;
        program.load().with_context(|| format!("loading {name}"))?;
        Ok(())
    }

    fn program(&self, name: &str) -> Result<&aya::programs::Xdp> {
        Ok(self
            .ebpf
            .program(name)
            .with_context(|| format!("the eBPF object has no {name} program"))?
            .try_into()?)
    }

    /// State word `index`, per CPU.
    fn state_per_cpu(&self, index: u32) -> Result<Vec<u64>> {
        let map = self
            .ebpf
            .map(hairpin_common::maps::GEN_STATE)
            .context("no GEN_STATE map")?;
        let state: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(map)?;
        Ok(state.get(&index, 0)?.to_vec())
    }

    /// State word `index`, summed over the CPUs.
    fn state(&self, index: u32) -> Result<u64> {
        Ok(self.state_per_cpu(index)?.iter().sum())
    }

    /// State word `index` of the CPU that ran the generator (the only one non-zero).
    fn state_max(&self, index: u32) -> Result<u64> {
        Ok(self.state_per_cpu(index)?.into_iter().max().unwrap_or(0))
    }

    /// Sets config word `index`.
    fn configure(&mut self, index: u32, value: u32) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(hairpin_common::maps::GEN_CONFIG)
            .context("no GEN_CONFIG map")?;
        let mut config: aya::maps::Array<_, u32> = aya::maps::Array::try_from(map)?;
        config.set(index, value, 0)?;
        Ok(())
    }

    /// Zeroes the state: sequence numbers (and the pacing) start again from 0, as the
    /// sink's flow state is reset for each trial.
    fn reset(&mut self) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(hairpin_common::maps::GEN_STATE)
            .context("no GEN_STATE map")?;
        let mut state: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(map)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        for i in 0..g::STATE_LEN {
            state.set(i, aya::maps::PerCpuValues::try_from(vec![0u64; cpus])?, 0)?;
        }
        Ok(())
    }

    /// Settings for the next trial: `share` in 1024, at most `limit` frames (0: no
    /// limit), and the frame's first 16 bytes, which the programs write into every frame
    /// they send; then the state reset.
    fn prepare(&mut self, frame: &[u8], share: u32, limit: u64) -> Result<()> {
        self.configure(g::SHARE, share.clamp(1, hairpin_common::GEN_SHARE_ONE))?;
        self.configure(g::LIMIT, u32::try_from(limit).context("too many frames")?)?;
        for (i, word) in (g::HEAD..).zip(frame[..16].chunks_exact(4)) {
            let word: [u8; 4] = word.try_into().expect("4 bytes");
            self.configure(i, u32::from_ne_bytes(word))?;
        }
        self.reset()
    }
}

/// The XDP live-frames generator: hairpin's `hairpin_gen` program (`XDP_TX`) run with
/// `BPF_PROG_TEST_RUN` and `BPF_F_TEST_XDP_LIVE_FRAMES`, so the kernel transmits the test
/// frame out of the port as xdp_frames, with no skb per frame.
///
/// Each `BPF_PROG_TEST_RUN` call costs some 20 ms of set-up here whatever its length,
/// so a trial is one long call, and its emission time is the kernel's own measure
/// (nanoseconds per run times runs), not the wall clock around it. Pacing is done inside
/// the program: it transmits a share of its runs, evenly spaced.
pub struct LiveFrames {
    object: GenObject,
    /// Nanoseconds per run last seen, to size the next call.
    ns_per_run: f64,
}

/// What one paced trial sent.
#[derive(Clone, Copy, Debug)]
pub struct Paced {
    /// Frames transmitted.
    pub frames: u64,
    /// Seconds the kernel spent sending them.
    pub seconds: f64,
}

impl LiveFrames {
    /// Loads the generator program.
    pub fn load() -> Result<Self> {
        let mut object = GenObject::load()?;
        object.load_program(hairpin_common::GENERATOR_PROGRAM_NAME)?;
        Ok(Self {
            object,
            ns_per_run: 250.0,
        })
    }

    /// Asks the kernel for one live-frames run out of `ifindex` (of the calling thread's
    /// namespace) that sends nothing: kernels that refuse live-frames test runs say so
    /// here (EPERM under some BPF LSM policies, EOPNOTSUPP or EINVAL before Linux 5.18).
    pub fn probe(&mut self, ifindex: u32, frame: &[u8]) -> Result<()> {
        // A share of 1 in 1024: the first run drops its frame.
        self.run(ifindex, frame, 1, 1)?;
        // One run's time says nothing of a long call's.
        self.ns_per_run = 250.0;
        Ok(())
    }

    /// Its settings shared with the other kernel-side generator.
    pub fn settings(&mut self) -> &mut GenObject {
        &mut self.object
    }

    /// Transmits `frame` out of interface `ifindex` (of the calling thread's namespace)
    /// for about `duration`, `share` runs in 1024.
    pub fn blast(
        &mut self,
        ifindex: u32,
        frame: &[u8],
        duration: Duration,
        share: u32,
    ) -> Result<Paced> {
        let runs = (duration.as_secs_f64() * 1e9 / self.ns_per_run).clamp(1e4, 4e9) as u32;
        self.run(ifindex, frame, runs, share)
    }

    /// Transmits at least `frames` frames (a handful more at most), `share` runs in
    /// 1024.
    pub fn blast_frames(
        &mut self,
        ifindex: u32,
        frame: &[u8],
        frames: u64,
        share: u32,
    ) -> Result<Paced> {
        let share = share.clamp(1, hairpin_common::GEN_SHARE_ONE);
        let runs = (frames * u64::from(hairpin_common::GEN_SHARE_ONE)).div_ceil(u64::from(share));
        self.run(
            ifindex,
            frame,
            u32::try_from(runs).context("too many frames")?,
            share,
        )
    }

    fn run(&mut self, ifindex: u32, frame: &[u8], runs: u32, share: u32) -> Result<Paced> {
        use aya::programs::{TestRun as _, TestRunAttrs, TestRunOptions};
        self.object.prepare(frame, share, 0)?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let len = u32::try_from(frame.len()).context("frame too long")?;
        let mut ctx = [0u8; 24];
        for (i, v) in [0, len, 0, ifindex, 0, 0].into_iter().enumerate() {
            ctx[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
        }
        let program = self
            .object
            .program(hairpin_common::GENERATOR_PROGRAM_NAME)?;
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat: runs,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::default()
        })?;
        let frames = self.object.state(g::SENT)?;
        // The kernel reports the mean time per run.
        let ns = (result.duration.as_nanos() as f64).max(1.0);
        self.ns_per_run = ns;
        Ok(Paced {
            frames,
            seconds: ns * f64::from(runs) / 1e9,
        })
    }
}

/// The fan-out generator, for kernels that refuse live frames: a frame circulates
/// between the two ends of a veth pair (`a0` → `a1` → `a0` ...); each time it reaches
/// `a1`, `hairpin_fanout` there broadcasts it through the `FANOUT` devmap to `copies`
/// entries of the generator's port and one of `a0`, and `hairpin_gen_egress` paces and
/// stamps each copy bound for the port. The kernel copies each frame (a page and a
/// memcpy) and sends it as an xdp_frame: no skb, no system call per frame. Everything
/// runs in the softirq of the core that sent the first frames (the generator's).
///
/// Its clock is the program's own: the time from the first frame it sent to the last.
pub struct Fanout {
    object: GenObject,
    /// `a0`'s index: where the circulating frame is sent in.
    inject: u32,
    /// The attachment to `a1`, kept while the generator lives.
    _link: aya::programs::xdp::XdpLinkId,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("inject", &self.inject)
            .finish_non_exhaustive()
    }
}

impl Fanout {
    /// Loads the programs in the calling thread's namespace, attaches `hairpin_fanout` to
    /// `turn` (natively: the copies must be xdp_frames), and fills the devmap: `copies`
    /// entries of `port`, then `inject` (the other end of `turn`'s veth), the way back.
    pub fn load(port: u32, inject: u32, turn: u32, copies: u32) -> Result<Self> {
        use aya::programs::xdp::XdpMode;
        anyhow::ensure!(
            (1..g::FANOUT_ENTRIES).contains(&copies),
            "the fan-out makes 1 to {} copies a turn",
            g::FANOUT_ENTRIES - 1
        );
        let mut object = GenObject::load()?;
        object.load_program(hairpin_common::GEN_EGRESS_PROGRAM_NAME)?;
        object.load_program(hairpin_common::FANOUT_PROGRAM_NAME)?;
        let egress = object
            .program(hairpin_common::GEN_EGRESS_PROGRAM_NAME)?
            .fd()?
            .try_clone()?;
        {
            let map = object
                .ebpf
                .map_mut(hairpin_common::maps::FANOUT)
                .context("no FANOUT map")?;
            let mut devmap: aya::maps::DevMap<_> = aya::maps::DevMap::try_from(map)?;
            for i in 0..copies {
                devmap
                    .set(i, port, Some(&egress), 0)
                    .context("a devmap entry with an egress program (Linux 5.8)")?;
            }
            devmap.set(copies, inject, None, 0)?;
        }
        let program: &mut aya::programs::Xdp = object
            .ebpf
            .program_mut(hairpin_common::FANOUT_PROGRAM_NAME)
            .context("no fan-out program")?
            .try_into()?;
        let link = program
            .attach_to_if_index(turn, XdpMode::Driver)
            .context("attaching the fan-out program natively")?;
        // Stopped until a trial starts: a stray frame must not start it.
        object.configure(g::STOP, 1)?;
        Ok(Self {
            object,
            inject,
            _link: link,
        })
    }

    /// Its settings shared with the other kernel-side generator.
    pub fn settings(&mut self) -> &mut GenObject {
        &mut self.object
    }

    /// Sends `frame` for about `duration`, `share` in 1024 of the copies, from the
    /// calling thread's core (which runs the fan-out from then on).
    pub fn blast(&mut self, frame: &[u8], duration: Duration, share: u32) -> Result<Paced> {
        self.start(frame, share, 0)?;
        std::thread::sleep(duration);
        self.stop()
    }

    /// Sends exactly `frames` frames, `share` in 1024 of the copies.
    pub fn blast_frames(&mut self, frame: &[u8], frames: u64, share: u32) -> Result<Paced> {
        self.start(frame, share, frames)?;
        let mut last = (0, Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(2));
            let turns = self.object.state_max(g::TURNS)?;
            if self.object.state_max(g::ENDED)? > 0 {
                break;
            }
            if turns != last.0 {
                last = (turns, Instant::now());
            } else if last.1.elapsed() > Duration::from_millis(200) {
                break;
            }
        }
        self.stop()
    }

    fn start(&mut self, frame: &[u8], share: u32, limit: u64) -> Result<()> {
        self.object.configure(g::STOP, 0)?;
        self.object.prepare(frame, share, limit)?;
        let socket = hairpin::netlab::PacketSocket::open(self.inject)
            .context("an AF_PACKET socket to start the fan-out")?;
        socket.send(frame).context("starting the fan-out")
    }

    /// Stops the circulating frame and waits until it has ended (or stopped turning:
    /// one lost on the way is over too).
    fn stop(&mut self) -> Result<Paced> {
        self.object.configure(g::STOP, 1)?;
        let mut turns = u64::MAX;
        for _ in 0..500 {
            if self.object.state_max(g::ENDED)? > 0 {
                break;
            }
            let now = self.object.state_max(g::TURNS)?;
            if now == turns {
                break;
            }
            turns = now;
            std::thread::sleep(Duration::from_millis(2));
        }
        let frames = self.object.state(g::SENT)?;
        anyhow::ensure!(
            self.object.state(g::TURNS)? > 0,
            "the fan-out generator never turned: the frames sent into interface {} did not reach its program",
            self.inject
        );
        let span = self
            .object
            .state_max(g::LAST_NS)?
            .saturating_sub(self.object.state_max(g::FIRST_NS)?);
        // The span covers the gaps between the frames: one fewer than the frames.
        let seconds = if frames > 1 {
            span as f64 / 1e9 * frames as f64 / (frames - 1) as f64
        } else {
            0.0
        };
        Ok(Paced { frames, seconds })
    }
}

/// The longest frame live frames send: the kernel runs `BPF_PROG_TEST_RUN` in live-frames
/// mode on one page only (4096 bytes less its headroom and `skb_shared_info`); longer
/// frames go out of [`Chains`].
pub const LIVE_FRAME_MAX: usize = 3000;

/// UMEM frame size of [`Chains`]: a 9018-byte frame is a chain of three.
const CHAIN_FRAME_SIZE: u32 = 4096;

/// Chains in flight at most.
const CHAINS: usize = 512;

/// A multi-buffer AF_XDP generator (hairpin's own `xsk` layer, `XDP_USE_SG`, copy mode):
/// each frame a chain of UMEM frames, each stamped with the generator's [`probe`] as the
/// live generator's program stamps it (flow 0). Paced by the clock: `share` in 1024 of
/// the rate it last reached flat out with the same frame (measured first if unknown).
///
/// [`probe`]: hairpin_common::probe
#[derive(Debug, Default)]
pub struct Chains {
    /// (frame length, frames per second flat out).
    full_rate: Option<(usize, f64)>,
}

impl Chains {
    /// Transmits `frame` out of interface `ifindex` (of the calling thread's namespace)
    /// for about `duration`, at `share` in 1024 of its full rate.
    pub fn blast(
        &mut self,
        ifindex: u32,
        frame: &[u8],
        duration: Duration,
        share: u32,
    ) -> Result<Sent> {
        let full = match self.full_rate {
            Some((len, rate)) if len == frame.len() => Some(rate),
            _ => None,
        };
        let share = share.clamp(1, hairpin_common::GEN_SHARE_ONE);
        let rate = if share == hairpin_common::GEN_SHARE_ONE {
            None
        } else {
            let full = match full {
                Some(rate) => rate,
                None => self.calibrate(ifindex, frame)?,
            };
            Some(full * f64::from(share) / f64::from(hairpin_common::GEN_SHARE_ONE))
        };
        let sent = send_chains(ifindex, frame, duration, rate)?;
        if rate.is_none() {
            self.full_rate = Some((frame.len(), sent.frames as f64 / sent.elapsed.as_secs_f64()));
        }
        Ok(sent)
    }

    /// Measures the full rate with a short burst.
    fn calibrate(&mut self, ifindex: u32, frame: &[u8]) -> Result<f64> {
        let sent = send_chains(ifindex, frame, Duration::from_millis(200), None)?;
        let rate = sent.frames as f64 / sent.elapsed.as_secs_f64();
        self.full_rate = Some((frame.len(), rate));
        Ok(rate)
    }
}

/// Sends `frame` as chains out of `ifindex` queue 0 for `duration`, at most `rate`
/// frames per second (none: flat out); counts the frames the kernel completed.
fn send_chains(ifindex: u32, frame: &[u8], duration: Duration, rate: Option<f64>) -> Result<Sent> {
    use hairpin::datapath::xsk::{self, Bind, Desc, Socket, Umem};
    use hairpin_common::probe;
    let umem_frames = (CHAINS * 4) as u32;
    let umem = Umem::new(umem_frames, CHAIN_FRAME_SIZE).context("the chain generator's UMEM")?;
    let buffers = umem.buffers_for(frame.len());
    anyhow::ensure!(
        buffers <= xsk::MAX_CHAIN && buffers * CHAINS <= umem_frames as usize,
        "a {}-byte frame is too long for the chain generator",
        frame.len()
    );
    let mut socket = Socket::new(
        &umem,
        2048,
        Bind {
            ifindex,
            queue: 0,
            zero_copy: false,
            shared_with: None,
            sg: true,
        },
    )
    .context("binding the chain generator (AF_XDP multi-buffer, Linux 6.6)")?;
    let all = umem.all_frames();
    let mut chains: Vec<Vec<Desc>> = all
        .chunks_exact(buffers)
        .take(CHAINS)
        .map(|c| c.to_vec())
        .collect();
    for chain in &mut chains {
        // SAFETY: the UMEM is this function's alone; no frame is on a ring yet.
        unsafe { umem.write_chain(chain, &[frame]) };
    }
    let mut free: Vec<usize> = (0..chains.len()).rev().collect();
    let mut in_flight = std::collections::VecDeque::new();
    let (mut seq, mut completed, mut returned) = (0u32, 0u64, 0usize);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let allowed = rate.map_or(u64::MAX, |r| (elapsed.as_secs_f64() * r) as u64 + 1);
        let mut pushed = false;
        while u64::from(seq) < allowed
            && let Some(&i) = free.last()
            && socket.tx.free(buffers as u32) >= buffers as u32
        {
            free.pop();
            let mut stamp = [0u8; probe::LEN];
            stamp[..2].copy_from_slice(&probe::MAGIC.to_le_bytes());
            stamp[4..8].copy_from_slice(&seq.to_le_bytes());
            stamp[8..].copy_from_slice(&monotonic_ns().to_le_bytes());
            // SAFETY: the chain is on no ring (it is free); the probe lies in its first
            // buffer (checked: the frame is longer than a UMEM frame's first bytes).
            let first = unsafe { umem.data_mut(chains[i][0]) };
            first[probe::OFFSET..probe::OFFSET + probe::LEN].copy_from_slice(&stamp);
            for &d in &chains[i] {
                socket.tx.push(xsk::to_xdp(d));
            }
            in_flight.push_back(i);
            seq = seq.wrapping_add(1);
            pushed = true;
            if in_flight.len() % BATCH == 0 {
                break;
            }
        }
        if pushed {
            socket.tx.publish();
        }
        kick(fd);
        // Completions come back in order, a buffer at a time: a chain is free once all
        // of its buffers are.
        let n = socket.comp.available();
        socket.comp.release(n);
        returned += n as usize;
        while returned >= buffers
            && let Some(i) = in_flight.pop_front()
        {
            returned -= buffers;
            free.push(i);
            completed += 1;
        }
    }
    Ok(Sent {
        frames: completed,
        elapsed: start.elapsed(),
    })
}

/// `CLOCK_MONOTONIC` in ns: the clock `bpf_ktime_get_ns` reads, which the sink compares.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the live `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn kick(fd: libc::c_int) {
    // SAFETY: a zero-length sendto on our own AF_XDP socket; the kernel reads nothing of
    // ours. EAGAIN and friends just mean "kick again", which the loop does.
    let _ = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_has_a_valid_ip_header() {
        let f = udp_frame(Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]), 64);
        assert_eq!(f.len(), 64);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        // The IPv4 header checksum verifies to 0xffff.
        let sum: u32 = f[14..34]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let folded = (sum & 0xffff) + (sum >> 16);
        assert_eq!(folded, 0xffff);
        assert_eq!(
            udp_frame(Mac::ZERO, Mac::ZERO, 10).len(),
            60,
            "padded to the minimum"
        );
    }
}
