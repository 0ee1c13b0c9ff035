//! The few raw syscalls hairpin makes itself, each behind a safe function.
//!
//! BPF goes through aya; AF_XDP sockets and rings through [`crate::datapath::xsk`].
//! Keeping the rest of the `unsafe` FFI here leaves the other modules free of it.
#![allow(unsafe_code)]

use std::{
    io, mem,
    os::fd::{FromRawFd as _, OwnedFd},
    ptr,
    sync::atomic::{AtomicBool, Ordering},
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

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Routes SIGINT and SIGTERM to [`stop_requested`] instead of killing the process.
pub fn catch_stop_signals() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` is plain data; all-zero plus the fields set below is valid.
        let mut action: libc::sigaction = unsafe { mem::zeroed() };
        action.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: installs an async-signal-safe handler; `action` is fully initialised.
        if unsafe { libc::sigaction(signal, &action, ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived since [`catch_stop_signals`].
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Moves the calling thread into the network namespace open at `ns`.
pub fn enter_netns(ns: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    // SAFETY: `setns` only reads the descriptor; it affects the calling thread alone.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

/// Waits until one of `fds` is ready or `timeout_ms` passes; EINTR counts as a wake-up.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) {
    // SAFETY: `fds` is a live, correctly sized array of `pollfd` for the whole call.
    // Errors (EINTR from a signal) just end the wait early: the caller re-checks state.
    let _ = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
}

/// What a TX kick (`sendto` on an AF_XDP socket) reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kick {
    /// The kernel took what was on the ring.
    Done,
    /// It stopped early (its per-call budget, a full completion ring, no buffers): kick
    /// again after draining completions.
    Again,
    /// The device is down, or another error: nothing to retry now.
    Failed,
}

/// Asks the kernel to transmit what is on the socket's TX ring.
#[inline]
pub fn kick_tx(fd: libc::c_int) -> Kick {
    // SAFETY: a zero-length `sendto` with null buffers on a descriptor we own; the kernel
    // reads no memory of ours.
    let ret = unsafe { libc::sendto(fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0) };
    if ret >= 0 {
        return Kick::Done;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS) => Kick::Again,
        _ => Kick::Failed,
    }
}

/// Wakes the kernel to fill an AF_XDP socket's RX ring (a zero-copy driver waiting for
/// fill-ring entries).
#[inline]
pub fn wake_rx(fd: libc::c_int) {
    // SAFETY: a zero-length `recvfrom` with null buffers on a descriptor we own; the
    // kernel writes no memory of ours. Errors (EAGAIN) mean nothing to do.
    let _ = unsafe {
        libc::recvfrom(
            fd,
            ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
}

/// The kernel's drop counters of AF_XDP socket `fd` (`XDP_STATISTICS`).
pub fn xsk_statistics(fd: libc::c_int) -> io::Result<libc::xdp_statistics> {
    // SAFETY: all-zero is a valid `xdp_statistics` (plain integers).
    let mut stats: libc::xdp_statistics = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into the live `stats`.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            ptr::from_mut(&mut stats).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats)
}

/// Whether the AF_XDP socket `fd` is bound in zero-copy mode (`XDP_OPTIONS`).
pub fn xsk_zero_copy(fd: libc::c_int) -> io::Result<bool> {
    let mut flags: u32 = 0;
    let mut len = mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into the live `flags`.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_OPTIONS,
            ptr::from_mut(&mut flags).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}

/// The IPv4 and IPv6 addresses of interface `name` in the calling thread's namespace.
pub fn ip_addresses(name: &str) -> io::Result<Vec<std::net::IpAddr>> {
    let mut list: *mut libc::ifaddrs = ptr::null_mut();
    // SAFETY: `getifaddrs` fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&mut list) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list `getifaddrs` returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: `ifa_name` is a NUL-terminated string owned by the list.
        let ifname = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
        // SAFETY: `ifa_addr` is non-null and points at a sockaddr owned by the list.
        let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
        if ifname.to_bytes() != name.as_bytes() {
            continue;
        }
        if family == libc::AF_INET {
            // SAFETY: an AF_INET address is a `sockaddr_in`.
            let sin = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in>() };
            out.push(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into());
        } else if family == libc::AF_INET6 {
            // SAFETY: an AF_INET6 address is a `sockaddr_in6`.
            let sin6 = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in6>() };
            out.push(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr).into());
        }
    }
    // SAFETY: `list` came from `getifaddrs` and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}
