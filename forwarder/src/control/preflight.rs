//! Checks that name what is missing before anything is attached.
use crate::sys;

/// The capabilities hairpin needs, by number (`linux/capability.h`), and what for.
pub const CAPABILITIES: [(u32, &str, &str); 5] = [
    (12, "CAP_NET_ADMIN", "attach XDP, bind AF_XDP sockets"),
    (13, "CAP_NET_RAW", "open AF_XDP sockets"),
    (14, "CAP_IPC_LOCK", "lock the UMEM's memory"),
    (
        38,
        "CAP_PERFMON",
        "verify the XDP program (pointer arithmetic on packets)",
    ),
    (39, "CAP_BPF", "load the XDP program and its maps"),
];

/// CAP_SYS_ADMIN, which the kernel accepts in place of CAP_BPF and CAP_PERFMON.
const CAP_SYS_ADMIN: u32 = 21;

/// Something the kernel or the process lacks.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Capabilities missing.
    #[error(
        "hairpin needs root, or the capabilities CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK, \
         CAP_BPF and CAP_PERFMON; this process lacks {}. Run it with sudo (or `cargo xtask \
         run`), or grant them (systemd: AmbientCapabilities=)",
        .0.join(", ")
    )]
    MissingCapabilities(Vec<&'static str>),
    /// The kernel has no AF_XDP.
    #[error(
        "this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS); hairpin needs Linux >= 5.10 with AF_XDP"
    )]
    NoAfXdp(#[source] std::io::Error),
}

/// The capabilities of [`CAPABILITIES`] missing from the effective set `effective` (the
/// `CapEff` mask of `/proc/self/status`).
pub fn missing(effective: u64) -> Vec<&'static str> {
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    CAPABILITIES
        .iter()
        .filter(|(cap, name, _)| {
            let admin_will_do = matches!(*name, "CAP_BPF" | "CAP_PERFMON") && has(CAP_SYS_ADMIN);
            !has(*cap) && !admin_will_do
        })
        .map(|(_, name, _)| *name)
        .collect()
}

/// The effective capability mask of this process, from `/proc/self/status`.
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Fails with the first missing requirement.
pub fn check() -> Result<(), PreflightError> {
    if let Some(effective) = effective_capabilities() {
        let lacking = missing(effective);
        if !lacking.is_empty() {
            return Err(PreflightError::MissingCapabilities(lacking));
        }
    }
    match sys::af_xdp_available() {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            Err(PreflightError::MissingCapabilities(vec!["CAP_NET_RAW"]))
        }
        Err(e) => Err(PreflightError::NoAfXdp(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_exactly_the_capabilities_missing() {
        let all = CAPABILITIES.iter().fold(0u64, |m, (c, _, _)| m | 1 << c);
        assert!(missing(all).is_empty());
        assert!(missing(u64::MAX).is_empty());
        // The three the README used to list are not enough.
        let three = 1 << 12 | 1 << 13 | 1 << 39;
        assert_eq!(missing(three), ["CAP_IPC_LOCK", "CAP_PERFMON"]);
        // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as in the kernel.
        let admin = 1 << 12 | 1 << 13 | 1 << 14 | 1 << CAP_SYS_ADMIN;
        assert!(missing(admin).is_empty());
        assert_eq!(missing(0).len(), 5);
    }
}
