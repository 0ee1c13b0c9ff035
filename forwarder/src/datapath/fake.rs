//! A fake kernel for the datapath's unit tests, in the spirit of aya's `sys/fake.rs` and
//! OVS's netdev-dummy: AF_XDP sockets that need no root.
//!
//! [`FakeSocket::open`] makes a [`Socket`] whose four rings live on the heap
//! ([`Ring::pair`]) and whose calls to the kernel (a TX kick, an RX wake-up, the
//! statistics) come here ([`xsk::Kernel`]), and hands the test the kernel's side of it.
//! The test then plays that kernel, step by step, between two turns of a worker:
//!
//! - [`FakeSocket::receive`] takes frames from the fill ring, writes a frame into them
//!   (at [`HEADROOM`], a chain where it is longer than a frame holds) and puts them on
//!   the RX ring, or counts the miss as the kernel does (`rx_fill_ring_empty_descs`,
//!   `rx_ring_full`);
//! - [`FakeSocket::transmit`] takes the whole frames on the TX ring, keeps what they
//!   carried for the test to look at ([`FakeSocket::sent`]), and returns their
//!   addresses on the completion ring, as far as it has room. A kick does it too, as
//!   copy mode's `sendto` does, unless the test says otherwise
//!   ([`FakeSocket::transmit_on_kick`]); what a kick answers can be scripted;
//! - kicks and wake-ups are counted, and the statistics are what the test sets.
//!
//! The UMEM is a real one: an anonymous mapping needs no privilege. Compiled for tests
//! only.
//!
//! `unsafe` here: the fake kernel writes frames it took off the fill ring and reads the
//! ones on the TX ring, by the ownership rules of [`Umem`], as the kernel does.
#![allow(unsafe_code)]

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use super::xsk::{self, Desc, HEADROOM, Kick, Ring, Socket, Umem};

/// A frame the fake kernel transmitted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// The address of each of its buffers, as the TX ring gave them.
    pub addrs: Vec<u64>,
    /// Its bytes, the buffers joined.
    pub data: Vec<u8>,
}

/// The kernel's side of one fake socket, for the test.
#[derive(Debug)]
pub struct FakeSocket(Arc<Link>);

/// What the socket and the test share.
struct Link {
    umem: Arc<Umem>,
    rings: Mutex<Rings>,
    kicks: AtomicUsize,
    wakeups: AtomicUsize,
    transmit_on_kick: AtomicBool,
    stats: Mutex<libc::xdp_statistics>,
}

/// The kernel's ends of a socket's rings, and what it transmitted.
struct Rings {
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    comp: Ring<u64>,
    /// Frames transmitted, not yet looked at.
    sent: Vec<Sent>,
    /// What the next kicks answer (then [`Kick::Done`]).
    answers: VecDeque<Kick>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("kicks", &self.kicks)
            .field("wakeups", &self.wakeups)
            .finish_non_exhaustive()
    }
}

impl Link {
    fn rings(&self) -> std::sync::MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, libc::xdp_statistics> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Transmits the whole frames on the TX ring that the completion ring has room for;
    /// returns how many.
    fn transmit(&self) -> usize {
        let rings = &mut *self.rings();
        let ready = rings.tx.ready();
        let room = rings.comp.free(ready).min(ready);
        // Whole frames only: up to the end of the last one that fits.
        let mut take = 0;
        for i in 0..room {
            if xsk::from_xdp(rings.tx.get(i)).more {
                continue;
            }
            take = i + 1;
        }
        let mut frame = Sent::default();
        let mut frames = 0;
        for i in 0..take {
            let desc = xsk::from_xdp(rings.tx.get(i));
            // SAFETY: a frame on the TX ring is the kernel's until it is on the
            // completion ring; the worker touches none of it meanwhile.
            frame
                .data
                .extend_from_slice(unsafe { self.umem.data(desc) });
            frame.addrs.push(desc.addr);
            rings.comp.push(desc.addr);
            if !desc.more {
                rings.sent.push(std::mem::take(&mut frame));
                frames += 1;
            }
        }
        rings.tx.release(take);
        rings.comp.publish();
        frames
    }
}

impl xsk::Kernel for Link {
    fn kick_tx(&self) -> Kick {
        self.kicks.fetch_add(1, Ordering::Relaxed);
        if self.transmit_on_kick.load(Ordering::Relaxed) {
            self.transmit();
        }
        self.rings().answers.pop_front().unwrap_or(Kick::Done)
    }

    fn wake_rx(&self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
    }

    fn statistics(&self) -> libc::xdp_statistics {
        *self.stats()
    }
}

impl FakeSocket {
    /// A socket on `umem` with rings of `ring_size` entries, and the kernel's side of
    /// it. Like a copy-mode socket, its TX ring asks for kicks and its fill ring never
    /// asks for a wake-up.
    pub fn open(umem: &Arc<Umem>, ring_size: u32) -> (Socket, Self) {
        let (rx, kernel_rx) = Ring::pair(ring_size);
        let (tx, kernel_tx) = Ring::pair(ring_size);
        let (fill, kernel_fill) = Ring::pair(ring_size);
        let (comp, kernel_comp) = Ring::pair(ring_size);
        kernel_tx.set_needs_wakeup(true);
        let link = Arc::new(Link {
            umem: Arc::clone(umem),
            rings: Mutex::new(Rings {
                rx: kernel_rx,
                tx: kernel_tx,
                fill: kernel_fill,
                comp: kernel_comp,
                sent: Vec::new(),
                answers: VecDeque::new(),
            }),
            kicks: AtomicUsize::new(0),
            wakeups: AtomicUsize::new(0),
            transmit_on_kick: AtomicBool::new(true),
            // SAFETY: plain integers, for which all-zero is valid.
            stats: Mutex::new(unsafe { std::mem::zeroed() }),
        });
        let socket = Socket::fake([rx, tx], [fill, comp], Arc::clone(&link) as _)
            .expect("an eventfd for the fake socket");
        (socket, Self(link))
    }

    /// The kernel receives `frame`: writes it into frames off the fill ring (a chain if
    /// one does not hold it) and puts it on the RX ring. Returns the address of its
    /// first buffer, or `None` when the fill ring had too few frames or the RX ring too
    /// little room (counted in the statistics, as the kernel does).
    pub fn receive(&self, frame: &[u8]) -> Option<u64> {
        let umem = &self.0.umem;
        let rings = &mut *self.0.rings();
        let buffers = umem.buffers_for(frame.len());
        if (rings.fill.ready() as usize) < buffers {
            let mut stats = self.0.stats();
            stats.rx_fill_ring_empty_descs += 1;
            stats.rx_dropped += 1;
            return None;
        }
        if (rings.rx.free(buffers as u32) as usize) < buffers {
            self.0.stats().rx_ring_full += 1;
            return None;
        }
        let room = umem.room() as usize;
        let mut first = None;
        for k in 0..buffers {
            let part = &frame[(k * room).min(frame.len())..((k + 1) * room).min(frame.len())];
            let chunk = umem.chunk(rings.fill.get(k as u32));
            let desc = Desc {
                addr: chunk + u64::from(HEADROOM),
                len: part.len() as u32,
                more: k + 1 < buffers,
            };
            // SAFETY: a frame off the fill ring is the kernel's until it is on the RX
            // ring; the worker touches none of it meanwhile.
            unsafe { umem.data_mut(desc) }.copy_from_slice(part);
            rings.rx.push(xsk::to_xdp(desc));
            first.get_or_insert(desc.addr);
        }
        rings.fill.release(buffers as u32);
        rings.rx.publish();
        first
    }

    /// The kernel transmits the whole frames on the TX ring, as far as the completion
    /// ring has room; returns how many.
    pub fn transmit(&self) -> usize {
        self.0.transmit()
    }

    /// The frames transmitted since the last look.
    pub fn sent(&self) -> Vec<Sent> {
        std::mem::take(&mut self.0.rings().sent)
    }

    /// Whether a kick transmits (copy mode), or only [`FakeSocket::transmit`] does (a
    /// device that does not drain its TX ring).
    pub fn transmit_on_kick(&self, on: bool) {
        self.0.transmit_on_kick.store(on, Ordering::Relaxed);
    }

    /// The next kicks answer `answers`, in order.
    pub fn answer_kicks(&self, answers: impl IntoIterator<Item = Kick>) {
        self.0.rings().answers.extend(answers);
    }

    /// Whether the TX ring asks for kicks and the fill ring for RX wake-ups.
    pub fn needs_wakeup(&self, tx: bool, fill: bool) {
        let rings = self.0.rings();
        rings.tx.set_needs_wakeup(tx);
        rings.fill.set_needs_wakeup(fill);
    }

    /// TX kicks so far.
    pub fn kicks(&self) -> usize {
        self.0.kicks.load(Ordering::Relaxed)
    }

    /// RX wake-ups so far.
    pub fn wakeups(&self) -> usize {
        self.0.wakeups.load(Ordering::Relaxed)
    }

    /// What `XDP_STATISTICS` reports from now on.
    pub fn set_statistics(&self, stats: libc::xdp_statistics) {
        *self.0.stats() = stats;
    }

    /// Frames on the fill ring, for the kernel to receive into.
    pub fn fill_ready(&self) -> usize {
        self.0.rings().fill.ready() as usize
    }

    /// Frames on the TX ring, not yet transmitted.
    pub fn tx_ready(&self) -> usize {
        self.0.rings().tx.ready() as usize
    }

    /// Whether the socket was closed (the worker dropped it).
    pub fn closed(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }
}
