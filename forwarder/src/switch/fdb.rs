//! The MAC table (forwarding database): bounded, shared by every worker, lock-free.
//!
//! The table is an array of 64-byte buckets, each holding four slots of two words; the
//! layout is [`hairpin_common::fdb`]'s, which hairpin's XDP program reads too:
//!
//! - `key`: `1 << 63 | vlan << 48 | mac`, or 0 for an empty slot;
//! - `val`: `stamp << 32 | flags << 16 | (port + 1)`, or 0 while a slot is being filled
//!   or emptied.
//!
//! A key hashes to one bucket and lives in one of its four slots, or not at all: there is
//! no probing into other buckets, so an entry can be removed by clearing its slot, with no
//! tombstones. When all four slots of a bucket are taken, the new address is not learned
//! and [`Fdb::full_events`] counts it; frames to it are flooded, as a bridge with a full
//! table does. The table never grows, whatever the source addresses a flood brings.
//!
//! Every worker reads and learns concurrently with plain atomic loads and
//! compare-and-swaps; a learn is visible to every other worker as soon as its store is
//! (well within a microsecond), and no lock is ever taken on the frame path. Learning
//! writes only when something changed (a new address, a move, or a stamp at least a second
//! old), so a steady flow does not bounce the cache line between cores. Aging
//! ([`Fdb::age`]) runs on the control thread: it empties a slot by swapping its `val` to 0
//! first (so a racing learner's compare-and-swap fails and retries) and then its `key`.
//!
//! Each port may hold a limited number of learned entries ([`Fdb::learn_at_most`], the
//! port's `max_macs`), so that one port cannot fill the table that every port shares: a
//! count per port, changed only when an entry is made, moves or goes (never on a
//! refresh), and a count of the learns refused for it.
//!
//! The buckets live in the table's own memory ([`Fdb::with_capacity`]) or in memory it
//! shares with the XDP program's fast path ([`Fdb::in_shared`]), which looks entries up
//! there and refreshes the stamps of the sources it forwards for, by the same
//! compare-and-swap as a learn: one table, so a move, an age or a flush is seen by both
//! paths at once. That shared region is this module's only `unsafe`.
#![allow(unsafe_code)]
use std::{
    fmt,
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use hairpin_common::fdb::{FLAG_STATIC, SLOTS, VALID, bucket_index, encode, port_of, stamp_of};

use super::MAX_PORTS;
use crate::wire::Mac;

/// A zeroed count for each port.
fn per_port<T: Default>() -> Box<[T]> {
    (0..MAX_PORTS).map(|_| T::default()).collect()
}

/// Index of a port in the bridge, `0..MAX_PORTS`.
pub type PortId = u16;

/// A VLAN id, 0..=4095 (0 for untagged traffic).
pub type VlanId = u16;

#[derive(Debug, Default)]
#[repr(C)]
struct Slot {
    key: AtomicU64,
    val: AtomicU64,
}

/// [`hairpin_common::fdb::Bucket`] with atomic words (the same size and layout).
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct Bucket {
    slots: [Slot; SLOTS],
}

const _: () = assert!(size_of::<Bucket>() == size_of::<hairpin_common::fdb::Bucket>());

/// Memory another party maps too, where a table may live: the region stays mapped for
/// as long as this value lives.
pub trait SharedMemory: Send + Sync + fmt::Debug {
    /// The region's start and its length in bytes.
    fn region(&self) -> (NonNull<u8>, usize);
}

/// Where the buckets are.
#[derive(Debug)]
enum Storage {
    Owned(Box<[Bucket]>),
    Shared {
        /// Keeps the region mapped.
        #[allow(dead_code)]
        memory: Box<dyn SharedMemory>,
        buckets: NonNull<Bucket>,
        len: usize,
    },
}

// SAFETY: the shared region is only ever accessed through `AtomicU64`s (see
// `Fdb::in_shared`'s contract), which are `Sync`; `memory` keeps it mapped.
unsafe impl Send for Storage {}
// SAFETY: as above.
unsafe impl Sync for Storage {}

impl Storage {
    fn buckets(&self) -> &[Bucket] {
        match self {
            Self::Owned(b) => b,
            // SAFETY: `in_shared` checked that `len` buckets fit the region at
            // `buckets`, aligned, and the region outlives `self` (held in `memory`).
            Self::Shared { buckets, len, .. } => unsafe {
                std::slice::from_raw_parts(buckets.as_ptr(), *len)
            },
        }
    }
}

/// Shared memory [`Fdb::in_shared`] cannot use.
#[derive(Debug, thiserror::Error)]
pub enum SharedMemoryError {
    /// The bucket count is not a power of two.
    #[error("{0} buckets: not a power of two")]
    NotPowerOfTwo(usize),
    /// The region is smaller than the buckets.
    #[error("the region has {have} bytes, the table needs {need}")]
    TooSmall {
        /// Bytes in the region.
        have: usize,
        /// Bytes the buckets take.
        need: usize,
    },
    /// The region does not start on a bucket boundary.
    #[error("the region is not 64-byte aligned")]
    Misaligned,
}

/// What a call to [`Fdb::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// The address moved here from another port.
    Moved {
        /// The port it was on.
        from: PortId,
    },
    /// Nothing needed writing (or the entry is static).
    Unchanged,
    /// Its stamp was refreshed.
    Refreshed,
    /// Its bucket was full: not learned.
    Full,
    /// The port already holds as many learned entries as it may: not learned.
    Limited,
}

/// One entry, as [`Fdb::entries`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The VLAN.
    pub vlan: VlanId,
    /// The address.
    pub mac: Mac,
    /// The port it was learned on.
    pub port: PortId,
    /// The time (table seconds) it was last seen.
    pub stamp: u32,
    /// Configured, never aged or moved.
    pub is_static: bool,
}

/// The MAC table. See the module documentation for the design.
#[derive(Debug)]
pub struct Fdb {
    buckets: Storage,
    shift: u32,
    full: AtomicU64,
    moves: AtomicU64,
    /// Learned (not static) entries per port.
    learned: Box<[AtomicU32]>,
    /// Learns refused per port by its limit.
    refused: Box<[AtomicU64]>,
}

const fn key(vlan: VlanId, mac: Mac) -> u64 {
    hairpin_common::fdb::key(vlan, mac.to_u64())
}

/// The `val` of `slot`, whose key is `key`, once a learner that has claimed the key has
/// stored it too (nanoseconds, unless that learner was preempted in between); 0 if the
/// slot is being emptied instead, or after a bounded spin: a worker never waits on
/// another, and the frame that gave up is at worst flooded.
fn settled(slot: &Slot, key: u64) -> u64 {
    for _ in 0..1024 {
        let val = slot.val.load(Ordering::Acquire);
        if val != 0 || slot.key.load(Ordering::Acquire) != key {
            return val;
        }
        std::hint::spin_loop();
    }
    0
}

impl Fdb {
    /// A table with room for at least `capacity` entries (rounded up to a power of two,
    /// at least one bucket).
    pub fn with_capacity(capacity: usize) -> Self {
        let buckets = Self::buckets_for(capacity);
        let shift = 64 - buckets.trailing_zeros();
        Self {
            buckets: Storage::Owned((0..buckets).map(|_| Bucket::default()).collect()),
            shift,
            full: AtomicU64::new(0),
            moves: AtomicU64::new(0),
            learned: per_port(),
            refused: per_port(),
        }
    }

    /// The bucket count [`Fdb::with_capacity`] and [`Fdb::in_shared`] give a table of
    /// at least `capacity` entries: a power of two, at least one.
    pub fn buckets_for(capacity: usize) -> usize {
        capacity.div_ceil(SLOTS).max(1).next_power_of_two()
    }

    /// Bytes of `buckets` buckets.
    pub const fn bytes_for(buckets: usize) -> usize {
        buckets * size_of::<Bucket>()
    }

    /// An empty table of `buckets` buckets (a power of two) in `memory`, which another
    /// party (the XDP program) reads and writes too.
    ///
    /// # Safety
    ///
    /// The region must start 64-byte aligned, hold at least [`Fdb::bytes_for`]`(buckets)`
    /// bytes, all zero, and stay mapped while `memory` lives; whoever else touches it
    /// must do so only with aligned 8-byte loads, stores and compare-and-swaps that
    /// follow the layout's rules ([`hairpin_common::fdb`]).
    pub unsafe fn in_shared(
        memory: Box<dyn SharedMemory>,
        buckets: usize,
    ) -> Result<Self, SharedMemoryError> {
        let (start, len) = memory.region();
        if !buckets.is_power_of_two() {
            return Err(SharedMemoryError::NotPowerOfTwo(buckets));
        }
        if len < Self::bytes_for(buckets) {
            return Err(SharedMemoryError::TooSmall {
                have: len,
                need: Self::bytes_for(buckets),
            });
        }
        if start.as_ptr().align_offset(align_of::<Bucket>()) != 0 {
            return Err(SharedMemoryError::Misaligned);
        }
        Ok(Self {
            buckets: Storage::Shared {
                buckets: start.cast(),
                len: buckets,
                memory,
            },
            shift: 64 - buckets.trailing_zeros(),
            full: AtomicU64::new(0),
            moves: AtomicU64::new(0),
            learned: per_port(),
            refused: per_port(),
        })
    }

    /// The shift that picks a bucket from a key's hash ([`bucket_index`]), which the
    /// XDP program is told.
    pub fn shift(&self) -> u32 {
        self.shift
    }

    /// A table as [`Fdb::with_capacity`], ready to share between tables and workers.
    pub fn shared(capacity: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::with_capacity(capacity))
    }

    /// How many entries the table can hold at most.
    pub fn capacity(&self) -> usize {
        self.buckets.buckets().len() * SLOTS
    }

    fn bucket(&self, key: u64) -> &Bucket {
        &self.buckets.buckets()[bucket_index(key, self.shift) as usize]
    }

    /// The port `mac` was learned on in `vlan`, if it was.
    #[inline]
    pub fn lookup(&self, vlan: VlanId, mac: Mac) -> Option<PortId> {
        let key = key(vlan, mac);
        self.bucket(key)
            .slots
            .iter()
            .find(|s| s.key.load(Ordering::Acquire) == key)
            .and_then(|s| port_of(s.val.load(Ordering::Acquire)))
    }

    /// The entry for `mac` in `vlan`, if there is one (read only: `hairpin trace`).
    pub fn get(&self, vlan: VlanId, mac: Mac) -> Option<Entry> {
        let key = key(vlan, mac);
        let val = self
            .bucket(key)
            .slots
            .iter()
            .find(|s| s.key.load(Ordering::Acquire) == key)?
            .val
            .load(Ordering::Acquire);
        Some(Entry {
            vlan,
            mac,
            port: port_of(val)?,
            stamp: stamp_of(val),
            is_static: val & FLAG_STATIC != 0,
        })
    }

    /// Records that `mac` was seen on `port` in `vlan` at time `now` (seconds).
    #[inline]
    pub fn learn(&self, vlan: VlanId, mac: Mac, port: PortId, now: u32) -> Learned {
        self.learn_at_most(vlan, mac, port, now, u32::MAX)
    }

    /// As [`Fdb::learn`], but a new entry on `port` (or a move there) is refused
    /// ([`Learned::Limited`], counted in [`Fdb::refused`]) while `port` holds `limit`
    /// learned entries already. Exact under concurrent learners: the count is taken
    /// before the entry is made and given back if it is not.
    #[inline]
    pub fn learn_at_most(
        &self,
        vlan: VlanId,
        mac: Mac,
        port: PortId,
        now: u32,
        limit: u32,
    ) -> Learned {
        self.upsert(key(vlan, mac), port, now, 0, limit)
    }

    /// Adds a static entry: never aged, never moved by learning.
    pub fn insert_static(&self, vlan: VlanId, mac: Mac, port: PortId) -> Learned {
        self.upsert(key(vlan, mac), port, 0, FLAG_STATIC, u32::MAX)
    }

    /// Learned entries on `port` now.
    pub fn learned_on(&self, port: PortId) -> u32 {
        self.learned[usize::from(port)].load(Ordering::Relaxed)
    }

    /// Learns refused on `port` by its limit since it was attached.
    pub fn refused(&self, port: PortId) -> u64 {
        self.refused[usize::from(port)].load(Ordering::Relaxed)
    }

    /// Takes one of `port`'s `limit` learned entries, or counts a refusal.
    fn reserve(&self, port: PortId, limit: u32) -> bool {
        let count = &self.learned[usize::from(port)];
        // A plain load first: a port at its limit (a flood of new sources) costs no
        // read-modify-write of the shared count per frame.
        if count.load(Ordering::Relaxed) < limit {
            if count.fetch_add(1, Ordering::AcqRel) < limit {
                return true;
            }
            count.fetch_sub(1, Ordering::AcqRel);
        }
        self.refused[usize::from(port)].fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Gives back one of `port`'s learned entries.
    fn release(&self, port: PortId) {
        self.learned[usize::from(port)].fetch_sub(1, Ordering::AcqRel);
    }

    /// Learns (`flags` 0, within `limit`) or makes static (`FLAG_STATIC`) the entry
    /// `key` on `port`. The per-port counts follow: a learned entry made on `port`, or
    /// moved there, takes one of `port`'s before it is written (and gives it back if it
    /// is not); a learned entry that moves away or becomes static gives its old port's
    /// back.
    fn upsert(&self, key: u64, port: PortId, now: u32, flags: u64, limit: u32) -> Learned {
        let bucket = self.bucket(key);
        let wanted = encode(port, now, flags);
        let forced = flags & FLAG_STATIC != 0;
        // Two rounds: a lost race (another learner, or the ager) is retried once.
        for _ in 0..2 {
            for slot in &bucket.slots {
                if slot.key.load(Ordering::Acquire) != key {
                    continue;
                }
                // Another thread may be filling this very entry (key claimed, value
                // not yet stored): wait the nanoseconds until it is, so that a learn
                // that returns is always seen by the next lookup. If the ager is
                // emptying it instead, leave it: the next frame learns again.
                let val = settled(slot, key);
                let Some(old) = port_of(val) else {
                    return Learned::Unchanged;
                };
                let was_static = val & FLAG_STATIC != 0;
                if was_static && !forced {
                    return Learned::Unchanged;
                }
                if !forced && old == port && now.saturating_sub(stamp_of(val)) < 1 {
                    return Learned::Unchanged;
                }
                let moving_here = !forced && old != port;
                if moving_here && !self.reserve(port, limit) {
                    return Learned::Limited;
                }
                if slot
                    .val
                    .compare_exchange(val, wanted, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    if !was_static && (forced || old != port) {
                        self.release(old);
                    }
                    if old == port {
                        return Learned::Refreshed;
                    }
                    if !forced {
                        // Rare (a station migrating, or a loop): a shared counter.
                        self.moves.fetch_add(1, Ordering::Relaxed);
                    }
                    return Learned::Moved { from: old };
                }
                if moving_here {
                    self.release(port);
                }
            }
            let mut held = false;
            for slot in &bucket.slots {
                let current = slot.key.load(Ordering::Acquire);
                // Another learner inserted the same address a moment ago: go update it.
                if current == key {
                    break;
                }
                if current != 0 {
                    continue;
                }
                if !forced && !held {
                    if !self.reserve(port, limit) {
                        return Learned::Limited;
                    }
                    held = true;
                }
                match slot
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        slot.val.store(wanted, Ordering::Release);
                        return Learned::New;
                    }
                    Err(current) if current == key => break,
                    Err(_) => {}
                }
            }
            if held {
                self.release(port);
            }
        }
        self.full.fetch_add(1, Ordering::Relaxed);
        Learned::Full
    }

    /// Removes learned entries last seen `max_age` seconds or more before `now`;
    /// returns how many.
    pub fn age(&self, now: u32, max_age: u32) -> usize {
        self.remove_learned(|val| now.saturating_sub(stamp_of(val)) >= max_age)
    }

    /// Removes every learned (not static) entry on `port` (`None`: on every port);
    /// returns how many.
    pub fn flush(&self, port: Option<PortId>) -> usize {
        self.remove_where(false, |_, val| port.is_none_or(|p| port_of(val) == Some(p)))
    }

    /// Removes every entry on `port`, static ones too (the port is leaving the bridge,
    /// or its settings change).
    pub fn remove_port(&self, port: PortId) -> usize {
        self.remove_where(true, |_, val| port_of(val) == Some(port))
    }

    /// Starts `port`'s count of refused learns over (it is detached: counts are since
    /// it was attached); returns what it was.
    pub fn reset_refused(&self, port: PortId) -> u64 {
        self.refused[usize::from(port)].swap(0, Ordering::Relaxed)
    }

    /// Gives `port` back the count [`Fdb::reset_refused`] took (a detach undone).
    pub fn restore_refused(&self, port: PortId, refused: u64) {
        self.refused[usize::from(port)].store(refused, Ordering::Relaxed);
    }

    /// Removes the entry for `mac` in `vlan`, static or learned; returns whether there
    /// was one.
    pub fn remove(&self, vlan: VlanId, mac: Mac) -> bool {
        let wanted = key(vlan, mac);
        self.remove_where(true, |key, _| key == wanted) > 0
    }

    /// Removes `mac`'s entries in every VLAN, static or learned, in one pass over the
    /// table; returns how many.
    pub fn remove_mac(&self, mac: Mac) -> usize {
        const VLAN_BITS: u64 = 0xfff << 48;
        let wanted = key(0, mac) & !VLAN_BITS;
        self.remove_where(true, |key, _| key & !VLAN_BITS == wanted)
    }

    fn remove_learned(&self, doomed: impl Fn(u64) -> bool) -> usize {
        self.remove_where(false, |_, val| doomed(val))
    }

    /// Empties every slot whose key and `val` satisfy `doomed` (static ones only with
    /// `statics`): `val` first, by compare-and-swap (a racing learner's own swap then
    /// fails and retries), then `key`.
    fn remove_where(&self, statics: bool, doomed: impl Fn(u64, u64) -> bool) -> usize {
        let mut removed = 0;
        for slot in self.buckets.buckets().iter().flat_map(|b| &b.slots) {
            let val = slot.val.load(Ordering::Acquire);
            if val == 0 || (val & FLAG_STATIC != 0 && !statics) {
                continue;
            }
            if !doomed(slot.key.load(Ordering::Acquire), val) {
                continue;
            }
            if slot
                .val
                .compare_exchange(val, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.key.store(0, Ordering::Release);
                if val & FLAG_STATIC == 0
                    && let Some(port) = port_of(val)
                {
                    self.release(port);
                }
                removed += 1;
            }
        }
        removed
    }

    /// Times a learn found its bucket full.
    pub fn full_events(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// Times a learned address moved from one port to another.
    pub fn moves(&self) -> u64 {
        self.moves.load(Ordering::Relaxed)
    }

    /// A snapshot of the entries (for display; not atomic as a whole).
    pub fn entries(&self) -> Vec<Entry> {
        self.buckets
            .buckets()
            .iter()
            .flat_map(|b| &b.slots)
            .filter_map(|slot| {
                let key = slot.key.load(Ordering::Acquire);
                let val = slot.val.load(Ordering::Acquire);
                let port = port_of(val)?;
                (key & VALID != 0).then(|| {
                    let b = key.to_be_bytes();
                    Entry {
                        vlan: ((key >> 48) & 0xfff) as VlanId,
                        mac: Mac([b[2], b[3], b[4], b[5], b[6], b[7]]),
                        port,
                        stamp: stamp_of(val),
                        is_static: val & FLAG_STATIC != 0,
                    }
                })
            })
            .collect()
    }

    /// How many entries the table holds now.
    pub fn len(&self) -> usize {
        self.buckets
            .buckets()
            .iter()
            .flat_map(|b| &b.slots)
            .filter(|s| s.val.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u32) -> Mac {
        let b = n.to_be_bytes();
        Mac([0x02, 0, b[0], b[1], b[2], b[3]])
    }

    /// Heap memory standing in for the XDP program's map.
    #[derive(Debug)]
    struct Region(Box<[Bucket]>);

    impl SharedMemory for Region {
        fn region(&self) -> (NonNull<u8>, usize) {
            (
                NonNull::from(&self.0[0]).cast(),
                self.0.len() * size_of::<Bucket>(),
            )
        }
    }

    #[test]
    fn a_shared_table_is_laid_out_as_the_xdp_program_reads_it() {
        let region = Region((0..16).map(|_| Bucket::default()).collect());
        let words = NonNull::from(&region.0[0]).cast::<[[u64; 2]; SLOTS]>();
        // SAFETY: the region is 16 zeroed, aligned buckets that outlive the table.
        let fdb = unsafe { Fdb::in_shared(Box::new(region), 16) }.unwrap();
        assert_eq!(fdb.capacity(), 64);
        fdb.learn(7, mac(1), 5, 100);
        // Read the words as the XDP program does: hash, bucket, slot, port.
        let key = hairpin_common::fdb::key_of(7, mac(1).0);
        let index = bucket_index(key, fdb.shift()) as usize;
        // SAFETY: `index` is below 16 (the shift of a 16-bucket table); the table is
        // quiescent while this test reads.
        let bucket = unsafe { *words.as_ptr().add(index) };
        let slot = bucket
            .iter()
            .find(|s| s[0] == key)
            .expect("the key in its bucket");
        assert_eq!(port_of(slot[1]), Some(5));
        assert_eq!(stamp_of(slot[1]), 100);
    }

    #[test]
    fn shared_memory_that_does_not_fit_is_refused() {
        let memory = || Box::new(Region((0..4).map(|_| Bucket::default()).collect()));
        // SAFETY: every call is refused before the region is used.
        unsafe {
            assert!(matches!(
                Fdb::in_shared(memory(), 8),
                Err(SharedMemoryError::TooSmall { .. })
            ));
            assert!(matches!(
                Fdb::in_shared(memory(), 3),
                Err(SharedMemoryError::NotPowerOfTwo(3))
            ));
        }
    }

    #[test]
    fn learns_looks_up_and_keeps_vlans_apart() {
        let fdb = Fdb::with_capacity(64);
        assert_eq!(fdb.lookup(0, mac(1)), None);
        assert_eq!(fdb.learn(0, mac(1), 3, 10), Learned::New);
        assert_eq!(fdb.lookup(0, mac(1)), Some(3));
        assert_eq!(fdb.lookup(7, mac(1)), None, "another VLAN is another table");
        assert_eq!(fdb.learn(0, mac(1), 3, 10), Learned::Unchanged);
        assert_eq!(fdb.learn(0, mac(1), 3, 11), Learned::Refreshed);
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn follows_a_moved_address_at_once() {
        let fdb = Fdb::with_capacity(64);
        fdb.learn(0, mac(1), 0, 5);
        assert_eq!(fdb.learn(0, mac(1), 2, 5), Learned::Moved { from: 0 });
        assert_eq!(fdb.lookup(0, mac(1)), Some(2));
        assert_eq!(fdb.moves(), 1);
    }

    #[test]
    fn ages_learned_entries_but_not_static_ones() {
        let fdb = Fdb::with_capacity(64);
        fdb.learn(0, mac(1), 0, 100);
        fdb.learn(0, mac(2), 1, 350);
        fdb.insert_static(0, mac(3), 2);
        assert_eq!(fdb.age(400, 300), 1);
        assert_eq!(fdb.lookup(0, mac(1)), None);
        assert_eq!(fdb.lookup(0, mac(2)), Some(1));
        assert_eq!(fdb.age(10_000, 300), 1);
        assert_eq!(fdb.lookup(0, mac(3)), Some(2), "static entries never age");
        assert_eq!(
            fdb.learn(0, mac(3), 0, 10_000),
            Learned::Unchanged,
            "nor move"
        );
        // An aged slot is reused.
        assert_eq!(fdb.learn(0, mac(1), 1, 10_001), Learned::New);
    }

    #[test]
    fn stays_bounded_under_a_flood_of_random_sources() {
        let fdb = Fdb::with_capacity(1024);
        let mut full = 0;
        for n in 0..100_000u32 {
            if fdb.learn(0, mac(n.wrapping_mul(2_654_435_761)), 0, 1) == Learned::Full {
                full += 1;
            }
        }
        assert_eq!(fdb.capacity(), 1024);
        assert!(fdb.len() <= 1024);
        assert!(fdb.len() > 900, "buckets fill nearly evenly: {}", fdb.len());
        assert_eq!(fdb.full_events(), full);
        assert!(full >= 100_000 - 1024);
    }

    #[test]
    fn flush_removes_learned_entries_and_remove_port_the_static_ones_too() {
        let fdb = Fdb::with_capacity(64);
        fdb.learn(0, mac(1), 0, 1);
        fdb.learn(0, mac(2), 1, 1);
        fdb.insert_static(0, mac(3), 0);
        assert_eq!(fdb.flush(Some(0)), 1);
        assert_eq!(fdb.lookup(0, mac(1)), None);
        assert_eq!(fdb.lookup(0, mac(2)), Some(1));
        assert_eq!(
            fdb.lookup(0, mac(3)),
            Some(0),
            "static entries survive a flush"
        );
        fdb.learn(0, mac(1), 0, 1);
        assert_eq!(fdb.remove_port(0), 2);
        assert_eq!(fdb.lookup(0, mac(3)), None);
        assert_eq!(fdb.lookup(0, mac(2)), Some(1));
        assert!(fdb.remove(0, mac(2)));
        assert!(!fdb.remove(0, mac(2)), "already gone");
        fdb.learn(3, mac(2), 1, 1);
        fdb.insert_static(9, mac(2), 2);
        fdb.learn(3, mac(5), 1, 1);
        assert_eq!(fdb.remove_mac(mac(2)), 2, "in every VLAN");
        assert_eq!(fdb.lookup(3, mac(5)), Some(1), "other MACs stay");
        assert!(fdb.remove(3, mac(5)));
        fdb.learn(5, mac(4), 1, 1);
        fdb.learn(6, mac(4), 2, 1);
        assert_eq!(fdb.flush(None), 2);
        assert!(fdb.is_empty());
    }

    #[test]
    fn concurrent_learners_agree() {
        let fdb = Fdb::with_capacity(4096);
        std::thread::scope(|s| {
            for port in 0..4u16 {
                let fdb = &fdb;
                s.spawn(move || {
                    for n in 0..1000u32 {
                        fdb.learn(0, mac(n), port, 1);
                    }
                });
            }
        });
        // (Right after its own learn a thread may still miss an entry whose filler was
        // preempted between claiming the key and storing the value, four threads on
        // fewer cores; once all are done, every address is there.)
        assert!((0..1000).all(|n| fdb.lookup(0, mac(n)).is_some()));
        assert_eq!(fdb.len(), 1000, "one entry per address, whoever won");
        let entries = fdb.entries();
        assert_eq!(entries.len(), 1000);
        assert!(entries.iter().all(|e| e.port < 4 && e.vlan == 0));
    }

    #[test]
    fn a_port_learns_at_most_its_limit_and_refusals_are_counted() {
        let fdb = Fdb::with_capacity(1024);
        let learned: Vec<Learned> = (0..5)
            .map(|n| fdb.learn_at_most(0, mac(n), 1, 10, 3))
            .collect();
        assert_eq!(
            learned,
            [
                Learned::New,
                Learned::New,
                Learned::New,
                Learned::Limited,
                Learned::Limited
            ]
        );
        assert_eq!((fdb.learned_on(1), fdb.refused(1)), (3, 2));
        assert_eq!(fdb.lookup(0, mac(3)), None, "refused: not learned");
        // A station already learned is refreshed at the limit; other ports are not
        // limited by this one's.
        assert_eq!(fdb.learn_at_most(0, mac(0), 1, 12, 3), Learned::Refreshed);
        assert_eq!(fdb.learn_at_most(0, mac(9), 2, 12, 3), Learned::New);
        // A station moving onto a full port is refused too, and stays where it was.
        assert_eq!(fdb.learn_at_most(0, mac(9), 1, 13, 3), Learned::Limited);
        assert_eq!(fdb.lookup(0, mac(9)), Some(2));
        // Aging frees room.
        assert_eq!(fdb.age(100, 30), 4);
        assert_eq!(fdb.learned_on(1), 0);
        assert_eq!(fdb.learn_at_most(0, mac(4), 1, 100, 3), Learned::New);
        // New settings take a port's entries, not its count of refusals; leaving
        // takes both, and coming back (a leave undone) restores the count.
        fdb.remove_port(1);
        assert_eq!((fdb.learned_on(1), fdb.refused(1)), (0, 3));
        assert_eq!(fdb.reset_refused(1), 3);
        assert_eq!(fdb.refused(1), 0);
        fdb.restore_refused(1, 3);
        assert_eq!(fdb.refused(1), 3);
    }

    #[test]
    fn the_counts_follow_moves_statics_flushes_and_removals() {
        let fdb = Fdb::with_capacity(1024);
        let counts = |fdb: &Fdb| (fdb.learned_on(1), fdb.learned_on(2));
        fdb.learn(0, mac(1), 1, 5);
        fdb.learn(0, mac(2), 1, 5);
        assert_eq!(counts(&fdb), (2, 0));
        assert_eq!(fdb.learn(0, mac(1), 2, 6), Learned::Moved { from: 1 });
        assert_eq!(counts(&fdb), (1, 1));
        // A static entry is not a learned one: made over a learned entry, it gives
        // that port's count back; static entries are never counted.
        fdb.insert_static(0, mac(2), 2);
        fdb.insert_static(0, mac(3), 1);
        assert_eq!(counts(&fdb), (0, 1));
        assert_eq!(fdb.flush(None), 1);
        assert_eq!(counts(&fdb), (0, 0));
        fdb.learn(0, mac(4), 1, 7);
        fdb.learn(5, mac(4), 2, 7);
        assert!(fdb.remove(0, mac(4)));
        assert_eq!(counts(&fdb), (0, 1));
        assert_eq!(fdb.remove_mac(mac(4)), 1);
        assert_eq!(counts(&fdb), (0, 0));
        assert_eq!(fdb.len(), 2, "the two static entries");
    }

    #[test]
    fn concurrent_learners_never_pass_the_limit() {
        let fdb = Fdb::with_capacity(1 << 16);
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let fdb = &fdb;
                s.spawn(move || {
                    for n in 0..1000 {
                        fdb.learn_at_most(0, mac(t * 1000 + n), 7, 1, 100);
                    }
                });
            }
        });
        let on_port = fdb.entries().iter().filter(|e| e.port == 7).count();
        assert_eq!((on_port, fdb.learned_on(7)), (100, 100));
        assert_eq!(fdb.refused(7), 4000 - 100 - fdb.full_events());
    }
}
