//! An AF_XDP traffic generator: the same small UDP frame, as fast as the kernel takes it.
//!
//! Every UMEM frame is written once; the loop then only moves descriptors: reserve a
//! batch on the TX ring, kick the kernel, reap completions. In copy mode (veth) the
//! `sendto` kick does the transmitting, so the loop's core is the generator's ceiling.
use std::{
    io::Write as _,
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use hairpin::wire::Mac;
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

/// The XDP live-frames generator: hairpin's `hairpin_gen` program (`XDP_TX`) run with
/// `BPF_PROG_TEST_RUN` and `BPF_F_TEST_XDP_LIVE_FRAMES`, so the kernel transmits the test
/// frame out of the port as xdp_frames, with no skb per frame.
///
/// Each `BPF_PROG_TEST_RUN` call costs some 20 ms of set-up here whatever its length,
/// so a trial is one long call, and its emission time is the kernel's own measure
/// (nanoseconds per run times runs), not the wall clock around it. Pacing is done inside
/// the program: it transmits a share of its runs, evenly spaced.
pub struct LiveFrames {
    ebpf: aya::Ebpf,
    /// Nanoseconds per run last seen, to size the next call.
    ns_per_run: f64,
}

/// What one paced trial sent.
#[derive(Clone, Copy, Debug)]
pub struct Paced {
    /// Frames transmitted.
    pub frames: u64,
    /// Seconds the kernel spent running the program.
    pub seconds: f64,
}

impl LiveFrames {
    /// Loads the generator program.
    pub fn load() -> Result<Self> {
        let mut ebpf = aya::Ebpf::load(hairpin::control::xdp::embedded_object()?)?;
        let program: &mut aya::programs::Xdp = ebpf
            .program_mut(hairpin_common::GENERATOR_PROGRAM_NAME)
            .context("the eBPF object has no generator program")?
            .try_into()?;
        program.load()?;
        Ok(Self {
            ebpf,
            ns_per_run: 250.0,
        })
    }

    fn sent(&self) -> Result<u64> {
        let map = self
            .ebpf
            .map(hairpin_common::maps::GEN_STATE)
            .context("no GEN_STATE map")?;
        let state: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(map)?;
        Ok(state.get(&1, 0)?.iter().sum())
    }

    /// Sets `GEN_CONFIG[index]`.
    fn configure(&mut self, index: u32, value: u32) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(hairpin_common::maps::GEN_CONFIG)
            .context("no GEN_CONFIG map")?;
        let mut config: aya::maps::Array<_, u32> = aya::maps::Array::try_from(map)?;
        config.set(index, value, 0)?;
        Ok(())
    }

    fn set_share(&mut self, share: u32) -> Result<()> {
        self.configure(0, share.clamp(1, hairpin_common::GEN_SHARE_ONE))
    }

    /// Spreads the frames over `flows` flows (UDP source ports 9000 and up).
    pub fn set_flows(&mut self, flows: u32) -> Result<()> {
        self.configure(1, flows.clamp(1, hairpin_common::probe::MAX_FLOWS))
    }

    /// Gives the frames `n` distinct source MACs (the frame's own with the last three
    /// bytes 0 to `n - 1`); 0: the frame's own only.
    pub fn set_sources(&mut self, n: u32) -> Result<()> {
        self.configure(2, n.min(1 << 24))
    }

    /// Starts the sequence numbers (and the pacing) again from 0, as the sink's flow
    /// state is reset for each trial.
    fn reset_sequence(&mut self) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(hairpin_common::maps::GEN_STATE)
            .context("no GEN_STATE map")?;
        let mut state: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(map)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        for i in [0, 2] {
            state.set(i, aya::maps::PerCpuValues::try_from(vec![0u64; cpus])?, 0)?;
        }
        Ok(())
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
        self.set_share(share)?;
        self.reset_sequence()?;
        // The frame's first 16 bytes, which the program writes into every frame it sends.
        for (i, word) in (3..).zip(frame[..16].chunks_exact(4)) {
            let word: [u8; 4] = word.try_into().expect("4 bytes");
            self.configure(i, u32::from_ne_bytes(word))?;
        }
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let len = u32::try_from(frame.len()).context("frame too long")?;
        let mut ctx = [0u8; 24];
        for (i, v) in [0, len, 0, ifindex, 0, 0].into_iter().enumerate() {
            ctx[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
        }
        let program: &aya::programs::Xdp = self
            .ebpf
            .program(hairpin_common::GENERATOR_PROGRAM_NAME)
            .context("the eBPF object has no generator program")?
            .try_into()?;
        let before = self.sent()?;
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat: runs,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::default()
        })?;
        let frames = self.sent()? - before;
        // The kernel reports the mean time per run.
        let ns = (result.duration.as_nanos() as f64).max(1.0);
        self.ns_per_run = ns;
        Ok(Paced {
            frames,
            seconds: ns * f64::from(runs) / 1e9,
        })
    }
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
