//! Every core counted: what each core of the machine spent while a trial ran, read from
//! `/proc/stat` (user, system, interrupt and softirq time alike: a forwarder's work in
//! the kernel's NAPI counts as much as its workers'), and where the ingress veth's NAPI
//! runs ([`NapiPlacement`]).
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use hairpin::netlab::Netns;

/// The kernel's clock ticks per second for `/proc/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Busy and total ticks of each core, from one reading of `/proc/stat`.
#[derive(Clone, Debug, Default)]
pub struct CpuTimes(Vec<(usize, u64, u64)>);

impl CpuTimes {
    /// Now.
    pub fn read() -> Result<Self> {
        let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        Ok(Self::parse(&text))
    }

    /// The `cpuN` lines of a `/proc/stat`: busy is every field but idle and iowait.
    fn parse(text: &str) -> Self {
        let cores = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let core = fields.next()?.strip_prefix("cpu")?.parse::<usize>().ok()?;
                let ticks: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal (guest time is in user).
                let total: u64 = ticks.iter().take(8).sum();
                let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
                Some((core, total - idle, total))
            })
            .collect();
        Self(cores)
    }

    /// What each core did from `self` to `later`, over `wall` of time.
    pub fn until(&self, later: &Self, wall: Duration) -> Vec<CoreUse> {
        later
            .0
            .iter()
            .filter_map(|&(core, busy, _)| {
                let &(_, before, _) = self.0.iter().find(|c| c.0 == core)?;
                Some(CoreUse {
                    core,
                    busy_s: busy.saturating_sub(before) as f64 / USER_HZ,
                    wall_s: wall.as_secs_f64(),
                })
            })
            .collect()
    }
}

/// One core's busy time over a trial.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoreUse {
    pub core: usize,
    /// Seconds it was not idle (10 ms resolution).
    pub busy_s: f64,
    /// Seconds the trial took.
    pub wall_s: f64,
}

impl CoreUse {
    /// Busy share in percent (at most 100: the ticks are coarser than the wall clock).
    pub fn percent(&self) -> f64 {
        (100.0 * self.busy_s / self.wall_s.max(1e-9)).min(100.0)
    }

    /// Its busy time per frame, in nanoseconds.
    pub fn ns_per_frame(&self, frames: u64) -> f64 {
        self.busy_s.min(self.wall_s) * 1e9 / frames.max(1) as f64
    }
}

/// Where the ingress veth's (d0's) NAPI, and so the kernel's receive work of every
/// device (XDP, hairpin's fast path, the Linux bridge and OVS's datapath), runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NapiPlacement {
    /// Where the kernel runs it: in the softirq of the core that sent to the veth, the
    /// generator's (a NIC queue's interrupt on a core of its own).
    #[default]
    Sender,
    /// A NAPI thread pinned to the forwarder's core (a NIC queue's interrupt on the
    /// forwarder's core, as on a host with few cores): the forwarder's workers and the
    /// kernel's receive work share it.
    Forwarder,
}

impl NapiPlacement {
    /// Its name in the report and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sender => "sender",
            Self::Forwarder => "forwarder",
        }
    }

    /// Puts `ifname`'s NAPI in `ns` where `self` says: on `Forwarder`, a thread
    /// (`threaded`) pinned to `core`.
    pub fn apply(self, ns: &Netns, ifname: &str, core: usize) -> Result<()> {
        let threaded = u8::from(self == Self::Forwarder);
        ns.run(
            "sh",
            &[
                "-c",
                &format!("echo {threaded} > /sys/class/net/{ifname}/threaded"),
            ],
        )
        .with_context(|| format!("making {ifname}'s NAPI threaded={threaded}"))?;
        if self == Self::Sender {
            return Ok(());
        }
        // The kernel names the thread napi/IFNAME-NAPI_ID; the lab's names are its own
        // while the bench runs (it sweeps stale labs first).
        let prefix = format!("napi/{ifname}-");
        let mut pinned = 0;
        for entry in std::fs::read_dir("/proc").context("listing /proc")? {
            let Ok(pid) = entry?.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if !comm.trim_end().starts_with(&prefix) {
                continue;
            }
            // SAFETY: a CPU set built on the stack, passed with its size.
            let ok = unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(core, &mut set);
                libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set)
            } == 0;
            if !ok {
                bail!(
                    "pinning {} (pid {pid}) to core {core}: {}",
                    comm.trim_end(),
                    std::io::Error::last_os_error()
                );
            }
            pinned += 1;
        }
        if pinned == 0 {
            bail!("no NAPI thread of {ifname} (napi/{ifname}-*) after making it threaded");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_everything_but_idle_and_iowait() {
        let before = CpuTimes::parse(
            "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 5 0 5 50 0 0 0 0 0 0\ncpu1 5 0 5 50 0 0 0 0 0 0\nintr 1\n",
        );
        let after = CpuTimes::parse(
            "cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 55 0 15 90 10 0 40 0 0 0\ncpu1 5 0 5 150 0 0 0 0 0 0\n",
        );
        let used = before.until(&after, Duration::from_secs(2));
        assert_eq!(used.len(), 2);
        // cpu0: 50 user + 10 system + 40 softirq ticks = 1 s of 2; cpu1: idle.
        assert_eq!(used[0].core, 0);
        assert!((used[0].busy_s - 1.0).abs() < 1e-9);
        assert!((used[0].percent() - 50.0).abs() < 1e-9);
        assert!((used[0].ns_per_frame(1_000_000) - 1000.0).abs() < 1e-6);
        assert_eq!(used[1].busy_s, 0.0);
    }
}
