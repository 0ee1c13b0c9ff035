//! Checks that name what is missing before anything is attached.
use crate::sys;

/// Something the kernel or the process lacks.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Not root (nor the capabilities).
    #[error(
        "hairpin needs root (or CAP_NET_ADMIN + CAP_BPF + CAP_NET_RAW) to attach XDP and open \
         AF_XDP sockets; run it with sudo, or `cargo xtask run`, which does"
    )]
    NotRoot,
    /// The kernel has no AF_XDP.
    #[error(
        "this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS); hairpin needs Linux >= 5.10 with AF_XDP"
    )]
    NoAfXdp(#[source] std::io::Error),
}

/// Fails with the first missing requirement.
pub fn check() -> Result<(), PreflightError> {
    match sys::af_xdp_available() {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(PreflightError::NotRoot),
        Err(e) => Err(PreflightError::NoAfXdp(e)),
    }
}
