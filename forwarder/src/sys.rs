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

/// Plain-data values of `SOL_XDP` socket options, for which all-zero bytes are valid.
pub trait XdpOption: Copy {}
impl XdpOption for u32 {}
impl XdpOption for libc::xdp_statistics {}
impl XdpOption for libc::xdp_mmap_offsets {}

/// Reads `SOL_XDP` option `option` of AF_XDP socket `fd`; returns it and how many bytes
/// the kernel wrote (older kernels write shorter structures).
pub fn xdp_getsockopt<T: XdpOption>(
    fd: libc::c_int,
    option: libc::c_int,
) -> io::Result<(T, usize)> {
    // SAFETY: `T` is plain data of integers (`XdpOption`), for which all-zero is valid.
    let mut value: T = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into the live `value`.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            option,
            ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((value, len as usize))
}

/// The kernel's drop counters of AF_XDP socket `fd` (`XDP_STATISTICS`).
pub fn xsk_statistics(fd: libc::c_int) -> io::Result<libc::xdp_statistics> {
    xdp_getsockopt(fd, libc::XDP_STATISTICS).map(|(stats, _)| stats)
}

/// Whether the AF_XDP socket `fd` is bound in zero-copy mode (`XDP_OPTIONS`).
pub fn xsk_zero_copy(fd: libc::c_int) -> io::Result<bool> {
    let (flags, _): (u32, _) = xdp_getsockopt(fd, libc::XDP_OPTIONS)?;
    Ok(flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}

/// A netlink route socket, bound to the network namespace it was opened in, for
/// reading an interface's addresses (`RTM_GETADDR` dumps).
#[derive(Debug)]
pub struct RouteSocket {
    fd: OwnedFd,
    seq: u32,
}

/// `struct ifaddrmsg` of `linux/if_addr.h`.
#[repr(C)]
#[derive(Clone, Copy)]
struct IfAddrMsg {
    family: u8,
    prefixlen: u8,
    flags: u8,
    scope: u8,
    index: u32,
}

/// A dump request: `struct nlmsghdr` then `struct ifaddrmsg`.
#[repr(C)]
struct AddrRequest {
    header: libc::nlmsghdr,
    body: IfAddrMsg,
}

impl RouteSocket {
    const RTM_NEWADDR: u16 = 20;
    const RTM_GETADDR: u16 = 22;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const IFA_ADDRESS: u16 = 1;
    const IFA_LOCAL: u16 = 2;

    /// Opens a route socket in the calling thread's network namespace.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain socket creation; the descriptor is owned right below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, seq: 0 })
    }

    /// The IPv4 and IPv6 addresses of interface `ifindex`, as the kernel has them now.
    pub fn addresses(&mut self, ifindex: u32) -> io::Result<Vec<std::net::IpAddr>> {
        use std::os::fd::AsRawFd as _;
        self.seq = self.seq.wrapping_add(1);
        let request = AddrRequest {
            header: libc::nlmsghdr {
                nlmsg_len: mem::size_of::<AddrRequest>() as u32,
                nlmsg_type: Self::RTM_GETADDR,
                nlmsg_flags: Self::NLM_F_REQUEST | Self::NLM_F_DUMP,
                nlmsg_seq: self.seq,
                nlmsg_pid: 0,
            },
            body: IfAddrMsg {
                family: libc::AF_UNSPEC as u8,
                prefixlen: 0,
                flags: 0,
                scope: 0,
                index: 0,
            },
        };
        let fd = self.fd.as_raw_fd();
        // SAFETY: sends the live `request` of its own size to the kernel (address null:
        // netlink's default destination, the kernel).
        let sent = unsafe {
            libc::send(
                fd,
                ptr::from_ref(&request).cast(),
                mem::size_of::<AddrRequest>(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if Self::parse(&buf[..n as usize], self.seq, ifindex, &mut out)? {
                return Ok(out);
            }
        }
    }

    /// Adds the addresses of `ifindex` in one datagram of a dump to `out`; returns
    /// whether the dump is complete.
    fn parse(
        mut data: &[u8],
        seq: u32,
        ifindex: u32,
        out: &mut Vec<std::net::IpAddr>,
    ) -> io::Result<bool> {
        let align = |n: usize| (n + 3) & !3;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink message");
        let u16_at = |d: &[u8], i: usize| u16::from_ne_bytes([d[i], d[i + 1]]);
        let u32_at = |d: &[u8], i: usize| u32::from_ne_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
        while data.len() >= 16 {
            let len = u32_at(data, 0) as usize;
            if len < 16 || len > data.len() {
                return Err(bad());
            }
            let (kind, msg_seq) = (u16_at(data, 4), u32_at(data, 8));
            let msg = &data[16..len];
            data = &data[align(len).min(data.len())..];
            if msg_seq != seq {
                continue; // a reply to an earlier request
            }
            match kind {
                Self::NLMSG_DONE => return Ok(true),
                Self::NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(
                        msg.get(..4)
                            .ok_or_else(bad)?
                            .try_into()
                            .map_err(|_| bad())?,
                    );
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                Self::RTM_NEWADDR if msg.len() >= 8 => {
                    let (family, index) = (msg[0], u32_at(msg, 4));
                    if index != ifindex {
                        continue;
                    }
                    let mut attrs = &msg[8..];
                    let (mut local, mut address) = (None, None);
                    while attrs.len() >= 4 {
                        let alen = u16_at(attrs, 0) as usize;
                        if alen < 4 || alen > attrs.len() {
                            return Err(bad());
                        }
                        let (atype, value) = (u16_at(attrs, 2), &attrs[4..alen]);
                        match atype {
                            Self::IFA_LOCAL => local = Some(value),
                            Self::IFA_ADDRESS => address = Some(value),
                            _ => {}
                        }
                        attrs = &attrs[align(alen).min(attrs.len())..];
                    }
                    // IPv4: IFA_LOCAL is the interface's own address (IFA_ADDRESS may be
                    // a point-to-point peer's); IPv6 has only IFA_ADDRESS.
                    let ip = match (i32::from(family), local.or(address)) {
                        (libc::AF_INET, Some(v)) if v.len() == 4 => {
                            std::net::IpAddr::from(<[u8; 4]>::try_from(v).map_err(|_| bad())?)
                        }
                        (libc::AF_INET6, Some(v)) if v.len() == 16 => {
                            std::net::IpAddr::from(<[u8; 16]>::try_from(v).map_err(|_| bad())?)
                        }
                        _ => continue,
                    };
                    out.push(ip);
                }
                _ => {}
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One netlink message: header (type, sequence 7), then `body`.
    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = 16 + body.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m.resize((len + 3) & !3, 0);
        m
    }

    /// An `RTM_NEWADDR` body: ifaddrmsg for `index`, then one attribute.
    fn address(family: u8, index: u32, attr: u16, value: &[u8]) -> Vec<u8> {
        let mut b = vec![family, 24, 0, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        b.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&attr.to_ne_bytes());
        b.extend_from_slice(value);
        b
    }

    #[test]
    fn address_dumps_parse_to_the_interface_s_addresses() {
        let v6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let mut datagram = message(20, &address(2, 5, 2, &[198, 18, 0, 1]));
        datagram.extend(message(20, &address(2, 6, 2, &[10, 0, 0, 1]))); // another port
        datagram.extend(message(20, &address(10, 5, 1, &v6.octets())));
        let mut out = Vec::new();
        assert!(!RouteSocket::parse(&datagram, 7, 5, &mut out).unwrap());
        assert!(RouteSocket::parse(&message(3, &[0; 4]), 7, 5, &mut out).unwrap());
        assert_eq!(
            out,
            vec![
                std::net::IpAddr::from([198, 18, 0, 1]),
                std::net::IpAddr::from(v6)
            ]
        );
        // A kernel error is reported; a truncated message is refused.
        let err = RouteSocket::parse(&message(2, &(-1i32).to_ne_bytes()), 7, 5, &mut out);
        assert_eq!(err.unwrap_err().raw_os_error(), Some(1));
        assert!(RouteSocket::parse(&datagram[..20], 7, 5, &mut out).is_err());
    }
}
