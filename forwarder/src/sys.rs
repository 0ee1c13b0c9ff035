//! The few raw syscalls hairpin makes itself, each behind a safe function.
//!
//! BPF goes through aya; AF_XDP sockets, rings and their syscalls through
//! [`crate::datapath::xsk`].
//! Keeping the rest of the `unsafe` FFI here leaves the other modules free of it.
#![allow(unsafe_code)]

use std::{
    io, mem,
    os::fd::{FromRawFd as _, OwnedFd},
    ptr,
};

/// `socket(AF_INET, SOCK_DGRAM)`: the handle ioctls on interfaces go through.
pub fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// The interface's hardware (MAC) address, by `SIOCGIFHWADDR`.
pub fn hardware_address(sock: libc::c_int, name: &str) -> io::Result<[u8; 6]> {
    let mut req = ifreq_for(name)?;
    // SAFETY: `req` is a valid `ifreq` naming the interface; the kernel writes
    // `ifru_hwaddr` only.
    if unsafe { libc::ioctl(sock, libc::SIOCGIFHWADDR, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(data) {
        *dst = src as u8;
    }
    Ok(mac)
}

/// `struct ethtool_channels` from `linux/ethtool.h`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// RX queues in use (`rx_count + combined_count`), by `ETHTOOL_GCHANNELS`.
pub fn ethtool_rx_channels(sock: libc::c_int, name: &str) -> io::Result<u32> {
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_data = ptr::from_mut(&mut channels).cast();
    // SAFETY: `req` names the interface and points at a live `ethtool_channels` the
    // kernel fills in; both outlive the call.
    if unsafe { libc::ioctl(sock, libc::SIOCETHTOOL, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(channels.rx_count + channels.combined_count)
}

/// Whether this kernel has AF_XDP sockets, by opening (and closing) one.
pub fn af_xdp_available() -> io::Result<()> {
    // SAFETY: plain syscall with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns; dropping closes it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// Runs `f` on a thread of its own that has entered the network namespace open at `ns`,
/// and returns its result. Sockets, ioctls and netlink calls made by `f` act inside the
/// namespace; the calling thread stays where it is.
pub fn in_netns<T: Send>(
    ns: &(impl std::os::fd::AsRawFd + Sync),
    f: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_netns(ns)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Moves the calling thread into the network namespace open at `ns`.
fn enter_netns(ns: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    // SAFETY: `setns` only reads the descriptor; it affects the calling thread alone.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A `poll` entry for `fd`, waiting for `events`.
pub fn pollfd(fd: libc::c_int, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `kill` touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The index of interface `name` in the calling thread's namespace, or 0 if none.
pub fn if_index(name: &std::ffi::CStr) -> u32 {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

/// An eventfd, to wake a sleeping worker.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A new non-blocking eventfd.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with constant arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the eventfd readable.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes eight bytes from a live `u64`. A full counter (EAGAIN) already
        // means "readable", so the result needs no handling.
        let _ = unsafe { libc::write(self.raw(), ptr::from_ref(&one).cast(), 8) };
    }

    /// Resets it to not readable.
    pub fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads eight bytes into a live `u64`; EAGAIN (nothing to drain) is fine.
        let _ = unsafe { libc::read(self.raw(), ptr::from_mut(&mut value).cast(), 8) };
    }

    /// Its descriptor, for `poll`.
    pub fn raw(&self) -> libc::c_int {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }
}

impl From<EventFd> for OwnedFd {
    /// The eventfd's descriptor, owned (a fake socket's, in the datapath's tests).
    fn from(eventfd: EventFd) -> Self {
        eventfd.0
    }
}

/// An AF_PACKET socket that sends raw Ethernet frames out of one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    addr: libc::sockaddr_ll,
}

impl PacketSocket {
    /// Opens a socket sending out of interface `ifindex` of the calling thread's
    /// namespace.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        // SAFETY: plain socket creation; the descriptor is owned right below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `sockaddr_ll` is plain data; all-zero plus the fields set is valid.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        Ok(Self { fd, addr })
    }

    /// Sends `frame` as it is, waiting while the device's queue is full (`ENOBUFS`).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd as _;
        loop {
            // SAFETY: `frame` and `addr` are live for the call; the sizes are theirs.
            let sent = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    ptr::from_ref(&self.addr).cast(),
                    mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if sent >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOBUFS) {
                return Err(e);
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

impl PacketSocket {
    /// Sends `frame` as it is, or fails at once (`ENOBUFS`, `EAGAIN`: the device's
    /// queue is full) rather than wait.
    pub fn try_send(&self, frame: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: `frame` and `addr` are live for the call; the sizes are theirs.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
                ptr::from_ref(&self.addr).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Moves the calling thread off the workers' `cores` when there is another core, as a
/// DPDK application's main lcore keeps off its polling cores: the control plane's
/// ticks and answers never preempt a worker.
pub fn keep_off(cores: &[usize]) {
    let others: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .filter(|c| !cores.contains(c))
        .collect();
    if !others.is_empty()
        && let Err(e) = set_affinity(&others)
    {
        tracing::warn!("could not move a control thread off the workers' cores: {e}");
    }
}

/// Restricts the calling thread to `cores`.
pub fn set_affinity(cores: &[usize]) -> io::Result<()> {
    // SAFETY: all-zero is an empty CPU set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    for &core in cores {
        // SAFETY: CPU_SET writes one bit of the live `set`; it ignores cores beyond it.
        unsafe { libc::CPU_SET(core, &mut set) };
    }
    // SAFETY: the kernel reads the live `set` of the given size; 0 is this thread.
    if unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The host's memory in bytes (`MemTotal` in `/proc/meminfo`).
pub fn memory_total() -> io::Result<u64> {
    let info = std::fs::read_to_string("/proc/meminfo")?;
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no MemTotal in /proc/meminfo"))
}

/// Waits until one of `fds` is ready or `timeout_ms` passes; EINTR counts as a wake-up.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) {
    // SAFETY: `fds` is a live, correctly sized array of `pollfd` for the whole call.
    // Errors (EINTR from a signal) just end the wait early: the caller re-checks state.
    let _ = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
}

/// Calls `f` on each of `items` from several threads at once, and returns when all are
/// done. Closing an AF_XDP socket or detaching an XDP link makes the kernel wait for an
/// RCU grace period (`synchronize_net`: some 6 ms here); a thousand one after the other
/// take seconds, from many threads at once they share grace periods. Where a thread
/// cannot be started, its share is dropped without `f`.
pub fn in_parallel<T: Send>(mut items: Vec<T>, f: impl Fn(T) + Sync) {
    const THREADS: usize = 32;
    let per = items.len().div_ceil(THREADS).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        while !items.is_empty() {
            let chunk: Vec<T> = items.drain(..per.min(items.len())).collect();
            let spawned = std::thread::Builder::new()
                .name("hairpin-close".into())
                .spawn_scoped(scope, move || chunk.into_iter().for_each(f));
            // A thread that could not start dropped its share as it failed.
            drop(spawned);
        }
    });
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill; the clock always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
