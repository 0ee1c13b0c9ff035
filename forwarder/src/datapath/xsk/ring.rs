//! The rings an AF_XDP socket shares with the kernel: one producer and one consumer
//! each, on memory mapped from the socket, and in tests on the heap with a fake kernel
//! at the other end (`Ring::pair`).
//!
//! `unsafe` here: the ring's indices, flags and entries are read and written through
//! pointers into that memory, as the kernel's `if_xdp.h` ABI lays it out.
#![allow(unsafe_code)]

#[cfg(test)]
use std::{cell::UnsafeCell, mem::MaybeUninit, sync::Arc};
use std::{
    io, mem,
    os::fd::RawFd,
    ptr::{self, NonNull},
    sync::atomic::{AtomicU32, Ordering},
};

/// A shared-memory ring of the kernel's, mapped from a socket (in tests, also one on
/// the heap: `Ring::pair`).
///
/// `T` is `libc::xdp_desc` for RX and TX, `u64` (a frame address) for fill and
/// completion. The side that produces writes entries, then publishes its index with
/// release ordering; the side that consumes reads the other's index with acquire
/// ordering before reading entries. Each side caches the other's index and reloads it
/// only when the cache says the ring is full (or empty).
#[derive(Debug)]
pub struct Ring<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<T>,
    mask: u32,
    /// Our copy of the producer index (ours to advance on a producer ring).
    cached_prod: u32,
    /// Our copy of the consumer index (ours to advance on a consumer ring).
    cached_cons: u32,
    /// What the pointers point into.
    memory: Memory,
}

/// Where a ring's indices, flags and entries lie.
#[derive(Debug)]
enum Memory {
    /// `len` bytes mapped from a socket at `map`, unmapped when the ring is dropped.
    Mapped { map: NonNull<u8>, len: usize },
    /// On the heap, shared with the ring's other end ([`Ring::pair`]), freed when both
    /// ends are gone.
    #[cfg(test)]
    Heap {
        _memory: Arc<dyn std::any::Any + Send + Sync>,
    },
}

/// A ring's memory on the heap: what a socket's mapping holds, laid out by Rust.
#[cfg(test)]
struct HeapRing<T> {
    producer: AtomicU32,
    consumer: AtomicU32,
    flags: AtomicU32,
    /// Written only by the producing end, into slots the consuming end released; read
    /// only by the consuming end, from slots the producing end published.
    entries: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: the indices are atomics; an entry is written by one end and read by the other
// only after the release/acquire pair of the ring's protocol (as the kernel's are).
#[cfg(test)]
unsafe impl<T: Send> Sync for HeapRing<T> {}

// SAFETY: the ring is used by one thread at a time (`&mut self` for every index
// change); the mapping belongs to it.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps the ring at `pgoff` of socket `fd`, with `size` entries laid out as `offsets`
    /// says.
    pub(super) fn map(
        fd: RawFd,
        pgoff: u64,
        size: u32,
        offsets: &libc::xdp_ring_offset,
    ) -> io::Result<Self> {
        let map_len = offsets.desc as usize + size as usize * mem::size_of::<T>();
        // SAFETY: maps the socket's ring; the kernel checks `pgoff` and the length.
        let map = unsafe {
            libc::mmap(
                ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(map.cast::<u8>()).expect("mmap does not return null on success");
        // SAFETY: the kernel's offsets lie inside the mapping it just made.
        let at = |offset: u64| unsafe { map.add(offset as usize) };
        let mut ring = Self {
            producer: at(offsets.producer).cast(),
            consumer: at(offsets.consumer).cast(),
            flags: at(offsets.flags).cast(),
            entries: at(offsets.desc).cast(),
            mask: size - 1,
            cached_prod: 0,
            cached_cons: 0,
            memory: Memory::Mapped { map, len: map_len },
        };
        // (Not `Self { .., ..ring }`: the fields are `Copy`, so that would copy them out
        // and drop `ring`, unmapping what the copy points into.)
        ring.cached_prod = ring.load_producer();
        ring.cached_cons = ring.load_consumer();
        Ok(ring)
    }

    fn load_producer(&self) -> u32 {
        // SAFETY: the index lives in the mapping, which lives as long as `self`.
        unsafe { self.producer.as_ref() }.load(Ordering::Acquire)
    }

    fn load_consumer(&self) -> u32 {
        // SAFETY: as in `load_producer`.
        unsafe { self.consumer.as_ref() }.load(Ordering::Acquire)
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }

    /// Producer side: free slots, reloading the consumer index if fewer than `want`
    /// are known free.
    #[inline]
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.size() - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = self.load_consumer();
        self.size() - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Producer side: writes `entry` into the next slot (not yet visible to the
    /// kernel). The caller checked [`Ring::free`].
    #[inline]
    pub fn push(&mut self, entry: T) {
        debug_assert!(self.cached_prod.wrapping_sub(self.cached_cons) < self.size());
        let slot = (self.cached_prod & self.mask) as usize;
        // SAFETY: `slot` indexes the ring's entries inside the mapping; the slot is free
        // (the caller checked), so the kernel does not read it until it is published.
        unsafe { self.entries.add(slot).write(entry) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }

    /// Producer side: makes every pushed entry visible to the kernel.
    #[inline]
    pub fn publish(&self) {
        // SAFETY: as in `load_producer`; the release store orders the entries before it.
        unsafe { self.producer.as_ref() }.store(self.cached_prod, Ordering::Release);
    }

    /// Consumer side: entries ready to read.
    #[inline]
    pub fn available(&mut self) -> u32 {
        let ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready > 0 {
            return ready;
        }
        self.cached_prod = self.load_producer();
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Consumer side: the `i`-th ready entry. The caller checked [`Ring::available`].
    #[inline]
    pub fn get(&self, i: u32) -> T {
        debug_assert!(i < self.cached_prod.wrapping_sub(self.cached_cons));
        let slot = (self.cached_cons.wrapping_add(i) & self.mask) as usize;
        // SAFETY: `slot` indexes the entries; the kernel published it (acquire load in
        // `available`) and does not rewrite it until we release it.
        unsafe { self.entries.add(slot).read() }
    }

    /// Consumer side: gives the first `n` ready entries back to the kernel.
    #[inline]
    pub fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // SAFETY: as in `load_producer`; the release store orders our reads before it.
        unsafe { self.consumer.as_ref() }.store(self.cached_cons, Ordering::Release);
    }

    /// Whether the kernel asks to be woken (`XDP_RING_NEED_WAKEUP`) to go on with this
    /// ring.
    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: as in `load_producer`.
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        match self.memory {
            // SAFETY: the mapping made in `map`, unmapped once.
            Memory::Mapped { map, len } => unsafe {
                libc::munmap(map.as_ptr().cast(), len);
            },
            #[cfg(test)]
            Memory::Heap { .. } => {}
        }
    }
}

#[cfg(test)]
impl<T: Copy + Send + 'static> Ring<T> {
    /// Both ends of one ring of `size` entries (a power of two) on the heap: one for the
    /// socket's user, one for the fake kernel playing the other side
    /// (`datapath/fake.rs`). Each end is a producer or a consumer by the calls it makes.
    pub(in crate::datapath) fn pair(size: u32) -> (Self, Self) {
        assert!(size.is_power_of_two(), "a ring of {size} entries");
        let memory = Arc::new(HeapRing::<T> {
            producer: AtomicU32::new(0),
            consumer: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            entries: (0..size)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
        });
        let end = || Self {
            producer: NonNull::from(&memory.producer),
            consumer: NonNull::from(&memory.consumer),
            flags: NonNull::from(&memory.flags),
            // `UnsafeCell` and `MaybeUninit` are `repr(transparent)`: a slot is a `T`.
            entries: NonNull::new(memory.entries.as_ptr().cast_mut().cast::<T>())
                .expect("a boxed slice is not null"),
            mask: size - 1,
            cached_prod: 0,
            cached_cons: 0,
            memory: Memory::Heap {
                _memory: Arc::clone(&memory) as Arc<dyn std::any::Any + Send + Sync>,
            },
        };
        (end(), end())
    }

    /// Consumer side: entries ready to read, the producer index read afresh (as the
    /// kernel does; [`Ring::available`] trusts its cache while it has entries).
    pub(in crate::datapath) fn ready(&mut self) -> u32 {
        self.cached_prod = self.load_producer();
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// The kernel's end: asks (or stops asking) to be woken for this ring
    /// (`XDP_RING_NEED_WAKEUP`).
    pub(in crate::datapath) fn set_needs_wakeup(&self, on: bool) {
        let flag = if on { libc::XDP_RING_NEED_WAKEUP } else { 0 };
        // SAFETY: as in `load_producer`.
        unsafe { self.flags.as_ref() }.store(flag, Ordering::Relaxed);
    }
}
