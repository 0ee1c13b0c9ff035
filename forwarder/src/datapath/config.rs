//! How the datapath runs: its settings ([`DatapathConfig`]), the sizes of its rings
//! and UMEMs and the checks on them, the kernel memory its sockets hold, and the cores
//! its workers are pinned to.
use std::sync::Arc;

use super::{DatapathError, budget, group, handoff, xsk::Umem};

/// Busy ports each worker's first UMEM has full rings for, by default (the others share
/// what is left; UMEMs made for more ports have full rings for one: [`group::more_frames`]).
pub const BUSY_PORTS: usize = 4;

/// `--zero-copy auto|on|off`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZeroCopy {
    /// Zero-copy where the driver supports it, copy mode otherwise.
    #[default]
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode.
    Off,
}

/// How to run the datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatapathConfig {
    /// AF_XDP bind mode.
    pub zero_copy: ZeroCopy,
    /// Entries of every ring (RX, TX, fill, completion); a power of two.
    pub ring_size: u32,
    /// UMEM frame size; a power of two, at least 2048.
    pub frame_size: u32,
    /// Workers never sleep: they spin on their rings, each owning its core.
    pub busy_poll: bool,
    /// Frames in each worker's first UMEM; by default
    /// [`DatapathConfig::umem_frames_for`] the ports at start. (UMEMs made for more
    /// ports have [`group::more_frames`].)
    pub umem_frames: Option<u32>,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        Self {
            zero_copy: ZeroCopy::Auto,
            ring_size: 2048,
            frame_size: 2048,
            busy_poll: false,
            umem_frames: None,
        }
    }
}

impl DatapathConfig {
    /// Frames one port needs for full rings: a full fill ring, a full RX ring and a full
    /// TX ring at once.
    pub fn frames_per_port(&self) -> u64 {
        3 * u64::from(self.ring_size)
    }

    /// The budget's growth part ([`budget`]) of each worker's first UMEM when `ports`
    /// ports are known at start: full rings for [`BUSY_PORTS`] busy ports,
    /// and at least a full quota (a ring) for every port known at start that it serves
    /// (up to [`group::PORTS_PER_UMEM`]). The rest of the UMEM is 64 frames for each port
    /// to come.
    pub fn growth_frames(&self, ports: usize) -> usize {
        (BUSY_PORTS * self.frames_per_port() as usize)
            .max(ports.min(group::PORTS_PER_UMEM) * self.ring_size as usize)
    }

    /// Frames of each worker's first UMEM when `ports` ports are known at start: full
    /// rings for [`BUSY_PORTS`] busy ports (the least growth part), the
    /// least quota ([`budget::MIN_QUOTA`]) for each port it serves (at least as many as
    /// the busy ones, at most [`group::PORTS_PER_UMEM`]: more go into other UMEMs), and
    /// a ring's worth for flood copies and the credits lent to other workers. Ports
    /// share them by the [`budget`]. No more: every socket on the UMEM costs the kernel
    /// [`KERNEL_BYTES_PER_FRAME`] for each of its frames.
    pub fn umem_frames_for(&self, ports: usize) -> u64 {
        let extra = u64::from(self.ring_size) + handoff::CREDITS as u64;
        let served = ports.clamp(BUSY_PORTS, group::PORTS_PER_UMEM);
        self.umem_frames.map_or(
            BUSY_PORTS as u64 * self.frames_per_port()
                + (served * budget::MIN_QUOTA) as u64
                + extra,
            u64::from,
        )
    }
}

/// Kernel memory an AF_XDP socket holds for each frame of the UMEM it shares: every
/// socket bound to another device or queue gets a buffer pool of its own, with a
/// descriptor for every frame of the UMEM (`xp_create_and_assign_umem`). Measured on
/// Linux 6.18 (copy mode, the host's `MemAvailable` with 100 ports): 120 to 180 bytes.
/// So a worker's sockets cost the kernel ports x frames x this: a UMEM shared by many
/// ports must stay small.
pub const KERNEL_BYTES_PER_FRAME: u64 = 128;

/// Checks the sizes of `config` for a bridge of `ports` ports at start.
pub(super) fn validate_sizes(config: &DatapathConfig, ports: usize) -> Result<(), DatapathError> {
    let size_err = |what, value: u64, why: &str| DatapathError::Size {
        what,
        value,
        why: why.to_owned(),
    };
    if !config.ring_size.is_power_of_two() || !(64..=16384).contains(&config.ring_size) {
        return Err(size_err(
            "ring size",
            config.ring_size.into(),
            "a power of two from 64 to 16384",
        ));
    }
    if !config.frame_size.is_power_of_two() || !(2048..=4096).contains(&config.frame_size) {
        return Err(size_err(
            "frame size",
            config.frame_size.into(),
            "2048 or 4096",
        ));
    }
    let frames = config.umem_frames_for(ports);
    let least = config.frames_per_port() + u64::from(config.ring_size) + handoff::CREDITS as u64;
    if frames < least {
        return Err(size_err(
            "UMEM frames",
            frames,
            &format!("at least {least} (full rings for one port, plus flood and handoff frames)"),
        ));
    }
    // The frame index must fit a u32 and the UMEM a sane share of memory.
    if frames > u64::from(MAX_UMEM_FRAMES) {
        return Err(size_err(
            "UMEM frames",
            frames,
            &format!(
                "at most {MAX_UMEM_FRAMES} per worker (asked for {ports} port(s) at start with \
                 --ring-size {}): lower --umem-frames or --ring-size",
                config.ring_size
            ),
        ));
    }
    Ok(())
}

/// Most frames one worker's UMEM may have (1 GiB of 4 KiB frames).
const MAX_UMEM_FRAMES: u32 = 1 << 18;

/// One UMEM per worker, each sized for every socket it will own.
pub(super) fn make_umems(
    workers: usize,
    ports: usize,
    config: &DatapathConfig,
) -> Result<Vec<Arc<Umem>>, DatapathError> {
    let frames = config.umem_frames_for(ports);
    (0..workers)
        .map(|w| {
            Umem::new(frames as u32, config.frame_size)
                .map(Arc::new)
                .map_err(|source| DatapathError::Umem {
                    worker: w,
                    frames,
                    frame_size: config.frame_size,
                    source,
                })
        })
        .collect()
}

/// Picks a core for each of `workers` workers: `cores` if given (checked against this
/// process's CPU set), else the allowed cores in turn.
pub fn pick_cores(cores: Option<&[usize]>, workers: usize) -> Result<Vec<usize>, DatapathError> {
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if let Some(cores) = cores {
        if cores.len() < workers {
            return Err(DatapathError::Cores(format!(
                "{} core(s) given for {workers} queue(s): give one core per queue",
                cores.len()
            )));
        }
        if let Some(bad) = cores
            .iter()
            .find(|c| !allowed.is_empty() && !allowed.contains(c))
        {
            return Err(DatapathError::Cores(format!(
                "core {bad} is not in this process's CPU set {allowed:?}"
            )));
        }
        return Ok(cores[..workers].to_vec());
    }
    if allowed.is_empty() {
        return Err(DatapathError::Cores(
            "cannot read this process's CPU set".to_owned(),
        ));
    }
    if workers > allowed.len() {
        tracing::warn!(
            "{workers} queues on {} cores: some workers share a core",
            allowed.len()
        );
    }
    Ok((0..workers).map(|i| allowed[i % allowed.len()]).collect())
}
