//! hairpin's own AF_XDP layer: the UMEM, the sockets and their four rings, driven
//! directly with the kernel's `if_xdp.h` ABI.
//!
//! Why not xsk-rs here (it still drives the benchmark's AF_XDP generator): a switch
//! edits frames in place. Pushing an 802.1Q tag writes four bytes into the headroom in
//! front of the received frame and transmits from four bytes earlier; popping one
//! transmits from four bytes later. Both need the descriptor's address, which xsk-rs's
//! `FrameDesc` keeps private (set only by the rings), so without this layer every tag
//! push or pop would copy the whole payload. Owning the rings also drops a layer of
//! libxdp calls from the per-frame path.
//!
//! Frames are `frame_size`-byte chunks of one anonymous mapping (aligned mode). The
//! kernel places received data [`HEADROOM`] bytes into a chunk; hairpin writes its own
//! frames (copies) at the same offset, so every frame has room for tags in front. A
//! descriptor may start anywhere in its chunk, and the completion ring returns the
//! address that was transmitted: [`Umem::chunk`] maps it back to the chunk.
//!
//! A frame longer than a chunk holds (a jumbo frame) is a *chain*: several descriptors
//! in a row on a ring, every one but the last marked [`Desc::more`] (the kernel's
//! `XDP_PKT_CONTD`), on sockets bound with `XDP_USE_SG` ([`Bind::sg`]). The kernel
//! splits what it receives into chunk-sized buffers and joins what it transmits.
//!
//! The seam for tests: in test builds a [`Ring`] may also live on the heap, with its
//! other end held by a fake kernel, and a [`Socket`] may send its three calls to the
//! kernel (`kick_tx`, `wake_rx`, `statistics`) to that fake instead (`Kernel`,
//! `super::fake`), so that the workers run without root. Other builds have neither: the
//! rings and calls the workers use are the same code, with no branch more.
#![allow(unsafe_code)]

mod ring;

#[cfg(test)]
use std::sync::Arc;
use std::{
    io, mem,
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd},
    ptr::{self, NonNull},
};

pub use self::ring::Ring;

/// Bytes in front of a frame's data in its chunk: the kernel's `XDP_PACKET_HEADROOM`,
/// where received frames start, and where hairpin starts the frames it writes.
pub const HEADROOM: u32 = 256;

/// The most buffers hairpin takes as one frame (a chain): what a copy-mode TX ring joins
/// into one frame at most is the kernel's `MAX_SKB_FRAGS` (17 unless the kernel was built
/// otherwise), one less to stay clear of the edge. At 2048-byte chunks that is frames of
/// up to 28 672 bytes; longer chains are dropped (`oversize`).
pub const MAX_CHAIN: usize = 16;

/// One buffer: where its data starts in the UMEM, how long it is, and whether the frame
/// goes on in the next descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// Byte offset of the first byte of data from the start of the UMEM.
    pub addr: u64,
    /// Bytes of data.
    pub len: u32,
    /// Another buffer of the same frame follows (`XDP_PKT_CONTD`): this one is not the
    /// frame's last.
    pub more: bool,
}

impl Desc {
    /// A frame's only (or last) buffer.
    #[inline]
    pub const fn new(addr: u64, len: u32) -> Self {
        Self {
            addr,
            len,
            more: false,
        }
    }
}

/// The frames of `descs` (a run of whole chains): each frame's buffers, in order.
#[inline]
pub fn frames(descs: &[Desc]) -> impl Iterator<Item = &[Desc]> {
    descs.split_inclusive(|d| !d.more)
}

/// A UMEM: `frames` chunks of `frame_size` bytes in one anonymous mapping.
///
/// The mapping is shared by the kernel (which reads and writes frames it owns) and by
/// workers (through [`Umem::data`] and friends). Who may touch which frame is a matter
/// of ownership, not of this type: a frame belongs to exactly one party at a time (a
/// ring, a worker's pool, a mailbox), which the callers of the `unsafe` accessors
/// guarantee.
#[derive(Debug)]
pub struct Umem {
    area: NonNull<u8>,
    frames: u32,
    frame_size: u32,
}

// SAFETY: the mapping lives until `Umem` is dropped and is never remapped; access to a
// frame's bytes is governed by frame ownership (see the type's docs), which callers
// uphold through the `unsafe` accessors.
unsafe impl Send for Umem {}
// SAFETY: as above; `&Umem` hands out no bytes without an `unsafe` call.
unsafe impl Sync for Umem {}

impl Umem {
    /// Maps `frames` chunks of `frame_size` bytes (a power of two, 2048 or more).
    pub fn new(frames: u32, frame_size: u32) -> io::Result<Self> {
        if !frame_size.is_power_of_two() || frame_size < 2048 || frames == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let len = frames as usize * frame_size as usize;
        // SAFETY: an anonymous private mapping; no existing memory is touched.
        let area = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            area: NonNull::new(area.cast()).expect("mmap does not return null on success"),
            frames,
            frame_size,
        })
    }

    /// Size of one chunk.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// How many chunks.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Every chunk, as an empty frame at [`HEADROOM`]: the initial free pool.
    pub fn all_frames(&self) -> Vec<Desc> {
        (0..u64::from(self.frames))
            .map(|i| Desc::new(i * u64::from(self.frame_size) + u64::from(HEADROOM), 0))
            .collect()
    }

    /// The start of the chunk holding `addr`.
    #[inline]
    pub fn chunk(&self, addr: u64) -> u64 {
        addr & !(u64::from(self.frame_size) - 1)
    }

    /// `desc` reset to an empty frame at its chunk's [`HEADROOM`].
    #[inline]
    pub fn reset(&self, desc: Desc) -> Desc {
        Desc::new(self.chunk(desc.addr) + u64::from(HEADROOM), 0)
    }

    /// Bytes a frame's buffer holds at most: from [`HEADROOM`] to the end of its chunk.
    #[inline]
    pub fn room(&self) -> u32 {
        self.frame_size - HEADROOM
    }

    /// Whether `desc` lies inside one chunk of this UMEM.
    #[inline]
    fn holds(&self, desc: Desc) -> bool {
        let end = desc.addr + u64::from(desc.len);
        (desc.addr as usize) < self.len()
            && end as usize <= self.len()
            && (desc.len == 0 || self.chunk(desc.addr) == self.chunk(end - 1))
    }

    fn len(&self) -> usize {
        self.frames as usize * self.frame_size as usize
    }

    /// The data of `desc`.
    ///
    /// # Safety
    ///
    /// The caller owns the frame (it is on no ring and no other thread writes it) for as
    /// long as the slice lives.
    #[inline]
    pub unsafe fn data(&self, desc: Desc) -> &[u8] {
        assert!(self.holds(desc), "descriptor {desc:?} outside the UMEM");
        // SAFETY: in bounds (checked above); the caller owns the frame.
        unsafe {
            std::slice::from_raw_parts(
                self.area.as_ptr().add(desc.addr as usize),
                desc.len as usize,
            )
        }
    }

    /// The data of `desc`, writable.
    ///
    /// # Safety
    ///
    /// The caller owns the frame exclusively for as long as the slice lives: no other
    /// slice of it exists, it is on no ring, no other thread touches it.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn data_mut(&self, desc: Desc) -> &mut [u8] {
        assert!(self.holds(desc), "descriptor {desc:?} outside the UMEM");
        // SAFETY: in bounds (checked above); the caller owns the frame exclusively.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.area.as_ptr().add(desc.addr as usize),
                desc.len as usize,
            )
        }
    }

    /// How many buffers a frame of `len` bytes takes (at least one).
    #[inline]
    pub fn buffers_for(&self, len: usize) -> usize {
        len.div_ceil(self.room() as usize).max(1)
    }

    /// Copies `parts`, one after the other, into the frames of `chain` (exactly
    /// [`Umem::buffers_for`] their length of them), each filled from [`HEADROOM`] to the
    /// end of its chunk but the last, and makes `chain` the chain holding them: every
    /// buffer but the last marked [`Desc::more`].
    ///
    /// # Safety
    ///
    /// As [`Umem::data_mut`], for the whole chunk of every frame of `chain`.
    pub unsafe fn write_chain(&self, chain: &mut [Desc], parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        assert_eq!(
            chain.len(),
            self.buffers_for(len),
            "a chain of the wrong length"
        );
        let room = self.room() as usize;
        let mut parts = parts.iter().copied().filter(|p| !p.is_empty());
        let mut part: &[u8] = &[];
        let mut left = len;
        for buffer in chain.iter_mut() {
            let take = left.min(room);
            left -= take;
            *buffer = Desc {
                addr: self.chunk(buffer.addr) + u64::from(HEADROOM),
                len: take as u32,
                more: left > 0,
            };
            // SAFETY: the caller owns the chunk exclusively; the buffer fits in it.
            let mut to = unsafe { self.data_mut(*buffer) };
            while !to.is_empty() {
                if part.is_empty() {
                    part = parts.next().expect("the parts hold `len` bytes");
                }
                let n = part.len().min(to.len());
                to[..n].copy_from_slice(&part[..n]);
                (part, to) = (&part[n..], &mut to[n..]);
            }
        }
    }

    /// `desc` grown by `bytes` at the front, if its chunk has that much headroom left.
    #[inline]
    pub fn grow_front(&self, desc: Desc, bytes: u32) -> Option<Desc> {
        (desc.addr - self.chunk(desc.addr) >= u64::from(bytes)).then_some(Desc {
            addr: desc.addr - u64::from(bytes),
            len: desc.len + bytes,
            more: desc.more,
        })
    }

    fn registration(&self) -> libc::xdp_umem_reg {
        libc::xdp_umem_reg {
            addr: self.area.as_ptr() as u64,
            len: self.len() as u64,
            chunk_size: self.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        }
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once. The kernel pins the pages a
        // socket registered, so a socket still open keeps them; unmapping removes only
        // this process's view, and the workers close their sockets before they drop
        // their UMEMs (the end of `Worker::run`), so no frame is touched after.
        unsafe { libc::munmap(self.area.as_ptr().cast(), self.len()) };
    }
}

/// How to bind a socket.
#[derive(Clone, Copy, Debug)]
pub struct Bind {
    /// The interface.
    pub ifindex: u32,
    /// Its RX/TX queue.
    pub queue: u32,
    /// Ask for zero-copy (else copy mode). Ignored when sharing: a socket sharing a UMEM
    /// takes the mode of the UMEM's first socket.
    pub zero_copy: bool,
    /// The UMEM's first socket, for every socket after it.
    pub shared_with: Option<RawFd>,
    /// Take frames longer than a chunk as chains (`XDP_USE_SG`, Linux 6.6 and later).
    /// Ignored when sharing: a sharing socket does what the UMEM's first socket does.
    pub sg: bool,
}

/// An AF_XDP socket bound to one queue, with its RX, TX, fill and completion rings.
#[derive(Debug)]
pub struct Socket {
    /// Frames the kernel received.
    pub rx: Ring<libc::xdp_desc>,
    /// Frames to transmit.
    pub tx: Ring<libc::xdp_desc>,
    /// Free frames the kernel may receive into.
    pub fill: Ring<u64>,
    /// Transmitted frames, back from the kernel.
    pub comp: Ring<u64>,
    /// In tests, the fake kernel its calls go to instead of the real one.
    #[cfg(test)]
    fake: Option<Arc<dyn Kernel>>,
    // Last: the rings are unmapped before the socket closes.
    fd: OwnedFd,
}

/// The kernel's side of a socket, played by a test ([`super::fake`]): what
/// [`Socket::kick_tx`], [`Socket::wake_rx`] and [`Socket::statistics`] ask of it.
#[cfg(test)]
pub(super) trait Kernel: Send + Sync + std::fmt::Debug {
    /// A TX kick (`sendto`).
    fn kick_tx(&self) -> Kick;
    /// A wake-up to fill the RX ring (`recvfrom`).
    fn wake_rx(&self);
    /// The socket's drop counters (`XDP_STATISTICS`).
    fn statistics(&self) -> libc::xdp_statistics;
}

fn setsockopt<T>(fd: RawFd, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: the kernel reads `size_of::<T>()` bytes from the live `value`.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            option,
            ptr::from_ref(value).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Socket {
    /// Creates a socket with rings of `ring_size` entries and binds it as `bind` says;
    /// the first socket of `umem` registers it.
    pub fn new(umem: &Umem, ring_size: u32, bind: Bind) -> io::Result<Self> {
        if !ring_size.is_power_of_two() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: plain socket creation; the descriptor is owned right below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if bind.shared_with.is_none() {
            setsockopt(raw, libc::XDP_UMEM_REG, &umem.registration())?;
        }
        // Every socket has its own fill and completion rings, which a socket sharing a
        // UMEM needs when it binds another queue or device than the first.
        setsockopt(raw, libc::XDP_UMEM_FILL_RING, &ring_size)?;
        setsockopt(raw, libc::XDP_UMEM_COMPLETION_RING, &ring_size)?;
        setsockopt(raw, libc::XDP_RX_RING, &ring_size)?;
        setsockopt(raw, libc::XDP_TX_RING, &ring_size)?;

        let (off, len): (libc::xdp_mmap_offsets, _) = xdp_getsockopt(raw, libc::XDP_MMAP_OFFSETS)?;
        if len != mem::size_of::<libc::xdp_mmap_offsets>() {
            // Kernels before 5.4 have no ring flags (need_wakeup).
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        let rx = Ring::map(raw, libc::XDP_PGOFF_RX_RING as u64, ring_size, &off.rx)?;
        let tx = Ring::map(raw, libc::XDP_PGOFF_TX_RING as u64, ring_size, &off.tx)?;
        let fill = Ring::map(raw, libc::XDP_UMEM_PGOFF_FILL_RING, ring_size, &off.fr)?;
        let comp = Ring::map(
            raw,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            ring_size,
            &off.cr,
        )?;

        let sg = if bind.sg { libc::XDP_USE_SG } else { 0 };
        let flags = match bind.shared_with {
            // The kernel refuses mode flags on a sharing socket: it inherits them.
            Some(_) => libc::XDP_SHARED_UMEM,
            None if bind.zero_copy => libc::XDP_USE_NEED_WAKEUP | libc::XDP_ZEROCOPY | sg,
            None => libc::XDP_USE_NEED_WAKEUP | libc::XDP_COPY | sg,
        };
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: bind.ifindex,
            sxdp_queue_id: bind.queue,
            sxdp_shared_umem_fd: bind.shared_with.unwrap_or(0) as u32,
        };
        // SAFETY: the kernel reads the live `addr` of the given size.
        let ret = unsafe {
            libc::bind(
                raw,
                ptr::from_ref(&addr).cast(),
                mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            rx,
            tx,
            fill,
            comp,
            #[cfg(test)]
            fake: None,
            fd,
        })
    }

    /// A socket on rings of [`Ring::pair`] (the user's ends; `kernel` holds the others)
    /// whose calls go to `kernel`: no AF_XDP socket, no root. Its descriptor is an
    /// eventfd nothing notifies, for `poll`.
    #[cfg(test)]
    pub(super) fn fake(
        [rx, tx]: [Ring<libc::xdp_desc>; 2],
        [fill, comp]: [Ring<u64>; 2],
        kernel: Arc<dyn Kernel>,
    ) -> io::Result<Self> {
        Ok(Self {
            rx,
            tx,
            fill,
            comp,
            fake: Some(kernel),
            fd: crate::sys::EventFd::new()?.into(),
        })
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
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

impl Socket {
    /// Asks the kernel to transmit what is on the socket's TX ring.
    #[inline]
    pub fn kick_tx(&self) -> Kick {
        #[cfg(test)]
        if let Some(kernel) = &self.fake {
            return kernel.kick_tx();
        }
        let fd = self.as_raw_fd();
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

    /// Wakes the kernel to fill the socket's RX ring (a zero-copy driver waiting for
    /// fill-ring entries).
    #[inline]
    pub fn wake_rx(&self) {
        #[cfg(test)]
        if let Some(kernel) = &self.fake {
            return kernel.wake_rx();
        }
        let fd = self.as_raw_fd();
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

    /// The kernel's drop counters of this socket (`XDP_STATISTICS`).
    pub fn statistics(&self) -> io::Result<libc::xdp_statistics> {
        #[cfg(test)]
        if let Some(kernel) = &self.fake {
            return Ok(kernel.statistics());
        }
        xdp_getsockopt(self.as_raw_fd(), libc::XDP_STATISTICS).map(|(stats, _)| stats)
    }
}

/// Whether `socket` is bound in zero-copy mode (`XDP_OPTIONS`).
pub fn zero_copy(socket: &Socket) -> io::Result<bool> {
    #[cfg(test)]
    if socket.fake.is_some() {
        return Ok(false);
    }
    let (flags, _): (u32, _) = xdp_getsockopt(socket.as_raw_fd(), libc::XDP_OPTIONS)?;
    Ok(flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}

/// Plain-data values of `SOL_XDP` socket options, for which all-zero bytes are valid.
trait XdpOption: Copy {}
impl XdpOption for u32 {}
impl XdpOption for libc::xdp_statistics {}
impl XdpOption for libc::xdp_mmap_offsets {}

/// Reads `SOL_XDP` option `option` of AF_XDP socket `fd`; returns it and how many bytes
/// the kernel wrote (older kernels write shorter structures).
fn xdp_getsockopt<T: XdpOption>(fd: libc::c_int, option: libc::c_int) -> io::Result<(T, usize)> {
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

/// An RX or TX ring entry for `desc`.
#[inline]
pub fn to_xdp(desc: Desc) -> libc::xdp_desc {
    libc::xdp_desc {
        addr: desc.addr,
        len: desc.len,
        options: if desc.more { libc::XDP_PKT_CONTD } else { 0 },
    }
}

/// The buffer an RX ring entry describes.
#[inline]
pub fn from_xdp(entry: libc::xdp_desc) -> Desc {
    Desc {
        addr: entry.addr,
        len: entry.len,
        more: entry.options & libc::XDP_PKT_CONTD != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_start_after_the_headroom_and_map_back_to_their_chunk() {
        let umem = Umem::new(4, 2048).unwrap();
        let frames = umem.all_frames();
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[1].addr, 2048 + u64::from(HEADROOM));
        assert_eq!(umem.chunk(frames[1].addr + 100), 2048);
        let grown = umem.grow_front(Desc::new(2048 + 10, 60), 4).unwrap();
        assert_eq!(grown, Desc::new(2048 + 6, 64));
        assert_eq!(umem.grow_front(Desc::new(2048 + 2, 60), 4), None);
        assert_eq!(umem.reset(grown), Desc::new(2048 + 256, 0));
    }

    #[test]
    fn a_chain_fills_each_frame_but_the_last_and_reads_back_whole() {
        let umem = Umem::new(4, 2048).unwrap();
        let room = umem.room() as usize;
        let jumbo: Vec<u8> = (0..2 * room + 10).map(|i| (i % 251) as u8).collect();
        let parts: [&[u8]; 3] = [&jumbo[..12], b"", &jumbo[12..]];
        assert_eq!(umem.buffers_for(jumbo.len()), 3);
        assert_eq!(umem.buffers_for(0), 1);
        assert_eq!(umem.buffers_for(room), 1);
        // Frames anywhere in their chunks; the chain starts each at the headroom.
        let mut chain = [
            umem.all_frames()[3],
            umem.all_frames()[0],
            umem.all_frames()[2],
        ];
        chain[0].addr += 40;
        // SAFETY: the test owns every frame of its UMEM; no socket uses it.
        unsafe { umem.write_chain(&mut chain, &parts) };
        let shape: Vec<(u64, u32, bool)> = chain.iter().map(|d| (d.addr, d.len, d.more)).collect();
        assert_eq!(
            shape,
            [
                (3 * 2048 + 256, room as u32, true),
                (256, room as u32, true),
                (2 * 2048 + 256, 10, false)
            ]
        );
        // SAFETY: as above.
        let back: Vec<u8> = chain
            .iter()
            .flat_map(|&d| unsafe { umem.data(d) }.to_vec())
            .collect();
        assert_eq!(back, jumbo);
        // Read back as frames: one, of three buffers; a frame after it stands alone.
        let mut ring = chain.to_vec();
        ring.push(Desc::new(2048 + 256, 60));
        let frames: Vec<usize> = frames(&ring).map(<[Desc]>::len).collect();
        assert_eq!(frames, [3, 1]);
        // An XDP descriptor carries `more` as XDP_PKT_CONTD, both ways.
        assert_eq!(to_xdp(chain[0]).options, libc::XDP_PKT_CONTD);
        assert_eq!(to_xdp(chain[2]).options, 0);
        assert_eq!(from_xdp(to_xdp(chain[0])), chain[0]);
        assert_eq!(from_xdp(to_xdp(chain[2])), chain[2]);
    }

    #[test]
    fn chunks_are_powers_of_two_of_2048_bytes_or_more() {
        assert!(Umem::new(1, 3000).is_err());
        assert!(Umem::new(1, 1024).is_err());
        assert!(Umem::new(0, 2048).is_err());
        assert_eq!(Umem::new(1, 4096).unwrap().room(), 4096 - HEADROOM);
    }
}
