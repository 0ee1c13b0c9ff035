//! The datapath's errors, each naming what failed on what, and the option to change
//! where one would help.
use super::{COMMAND_TIMEOUT, KERNEL_BYTES_PER_FRAME, budget};

/// An error of the datapath. Each names what failed on what.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// `--cores` has too few entries or a core that is not allowed.
    #[error("--cores: {0}")]
    Cores(String),
    /// A ring, frame or UMEM size is not usable.
    #[error("{what} {value} is not usable: {why}")]
    Size {
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: u64,
        /// Why not.
        why: String,
    },
    /// Creating a worker's UMEM failed.
    #[error(
        "creating the UMEM of worker {worker} ({frames} frames of {frame_size} bytes){hint}",
        hint = if source.raw_os_error() == Some(libc::ENOMEM) || source.raw_os_error() == Some(libc::EPERM) {
            ": not enough lockable memory? (CAP_IPC_LOCK, or a smaller --umem-frames / --ring-size)"
        } else { "" }
    )]
    Umem {
        /// The worker.
        worker: usize,
        /// Frames asked for.
        frames: u64,
        /// Their size.
        frame_size: u32,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Creating or binding an AF_XDP socket failed.
    #[error(
        "binding an AF_XDP socket to {port} queue {queue} ({mode}){hint}",
        hint = if source.raw_os_error() == Some(libc::EMFILE) {
            ": hairpin has as many files open as it may (a socket per port and worker, \
             an XDP link per port): raise its limit (`ulimit -n` before `hairpin run`, \
             LimitNOFILE= in its unit)"
        } else {
            ""
        }
    )]
    Socket {
        /// The port.
        port: String,
        /// The queue.
        queue: u32,
        /// "zero-copy" or "copy".
        mode: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `--zero-copy on`, but a socket bound in copy mode.
    #[error("{port} queue {queue} bound in copy mode, but --zero-copy on was asked for")]
    NotZeroCopy {
        /// The port.
        port: String,
        /// The queue.
        queue: u32,
    },
    /// A port has more RX queues than there are workers.
    #[error(
        "port {port} has {has} RX queues but only {workers} are served: frames on the others would \
         bypass hairpin; serve them all (--queues {has}, at start) or reduce them (ethtool -L {port} combined {workers})"
    )]
    UnservedQueues {
        /// The port.
        port: String,
        /// Its queue count.
        has: u32,
        /// Workers running.
        workers: usize,
    },
    /// None of a worker's UMEMs has frames left to promise a new port, and it may make
    /// no more.
    #[error(
        "{port} cannot be served without taking frames the running ports need: worker \
         {worker}'s {umems} UMEMs have promised the fill rings of their ports (the bridge \
         has {ports}) all but fewer than the {min} frames a port needs to start; remove \
         idle ports",
        min = budget::MIN_QUOTA
    )]
    NoFrames {
        /// The port refused.
        port: String,
        /// The worker without room.
        worker: usize,
        /// Its UMEMs.
        umems: usize,
        /// Ports attached.
        ports: usize,
    },
    /// A worker's sockets would take more kernel memory than the host can spare.
    #[error(
        "{port} refused: with it, the bridge's {sockets} AF_XDP sockets would hold about \
         {mib} MiB of kernel memory (each socket about {per} bytes for every frame of the \
         UMEM it is bound to, up to {frames} frames), past a quarter of this host's memory \
         ({limit_mib} MiB); smaller UMEMs (--umem-frames, --ring-size, or umem_frames and \
         ring_size in the config file) let more ports in",
        per = KERNEL_BYTES_PER_FRAME
    )]
    KernelMemory {
        /// The port refused.
        port: String,
        /// The bridge's sockets, this port's included.
        sockets: usize,
        /// The most frames of a UMEM.
        frames: u64,
        /// The kernel memory they would hold.
        mib: u64,
        /// What it may hold.
        limit_mib: u64,
    },
    /// Starting a worker thread or its wake-up eventfd failed.
    #[error("starting worker {worker}")]
    Worker {
        /// The worker.
        worker: usize,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A worker did not answer a command: it panicked or is stuck.
    #[error("worker {worker} did not {what} within {COMMAND_TIMEOUT:?}")]
    Unresponsive {
        /// The worker.
        worker: usize,
        /// What it was asked.
        what: &'static str,
    },
}
