//! The XDP program's IP source guard maps (`ebpf/src/guard.rs`): each guarded port's
//! prefixes in two longest-prefix-match tries keyed by (slot, address), and the frames
//! the fast path dropped, per port and CPU.
use std::{collections::BTreeMap, net::IpAddr};

use aya::maps::{LpmTrie, Map, MapData, PerCpuArray, lpm_trie::Key};
use hairpin_common::{guard, maps};

use super::{XdpError, absent, map_error};
use crate::switch::guard::IpPrefix;

/// The guard's maps, and what hairpin wrote into them.
pub(super) struct GuardMaps {
    v4: LpmTrie<MapData, [u8; 8], u8>,
    v6: LpmTrie<MapData, [u8; 20], u8>,
    drops: PerCpuArray<MapData, guard::Drops>,
    /// What the tries hold, by slot, to take out what a port no longer lists.
    now: BTreeMap<u32, Vec<IpPrefix>>,
}

/// One prefix of port `slot` as a key of its family's trie.
enum GuardKey {
    V4(Key<[u8; 8]>),
    V6(Key<[u8; 20]>),
}

fn key(slot: u32, prefix: &IpPrefix) -> GuardKey {
    let len = guard::prefix_len(prefix.prefix_len());
    match prefix.addr() {
        IpAddr::V4(a) => GuardKey::V4(Key::new(len, guard::v4_key(slot, a.octets()))),
        IpAddr::V6(a) => GuardKey::V6(Key::new(len, guard::v6_key(slot, a.octets()))),
    }
}

impl GuardMaps {
    /// From the program's `GUARD_V4`, `GUARD_V6` and `GUARD_DROPS` maps.
    pub(super) fn new(v4: Map, v6: Map, drops: Map) -> Result<Self, XdpError> {
        let typed = |name| move |source| XdpError::MapType { name, source };
        Ok(Self {
            v4: LpmTrie::try_from(v4).map_err(typed(maps::GUARD_V4))?,
            v6: LpmTrie::try_from(v6).map_err(typed(maps::GUARD_V6))?,
            drops: PerCpuArray::try_from(drops).map_err(typed(maps::GUARD_DROPS))?,
            now: BTreeMap::new(),
        })
    }

    /// Makes port `slot`'s prefixes `prefixes`: the new ones in first, then the ones it
    /// no longer lists out, so a port whose list changes never misses one it keeps.
    /// (The bridge sets the port's `IP_GUARD` flag after a list is in, and clears it
    /// before a list is emptied.)
    pub(super) fn set(&mut self, slot: u32, prefixes: &[IpPrefix]) -> Result<(), XdpError> {
        let had = self.now.get(&slot).cloned().unwrap_or_default();
        for prefix in prefixes.iter().filter(|p| !had.contains(p)) {
            let (inserted, name) = match key(slot, prefix) {
                GuardKey::V4(k) => (self.v4.insert(&k, 1, 0), maps::GUARD_V4),
                GuardKey::V6(k) => (self.v6.insert(&k, 1, 0), maps::GUARD_V6),
            };
            inserted.map_err(map_error("updating", name))?;
            // Remembered at once: a failure further on leaves it to take out later.
            self.now.entry(slot).or_default().push(*prefix);
        }
        for prefix in had.iter().filter(|p| !prefixes.contains(p)) {
            let (removed, name) = match key(slot, prefix) {
                GuardKey::V4(k) => (self.v4.remove(&k), maps::GUARD_V4),
                GuardKey::V6(k) => (self.v6.remove(&k), maps::GUARD_V6),
            };
            match removed {
                Err(e) if !absent(&e) => return Err(map_error("updating", name)(e)),
                _ => {}
            }
            if let Some(list) = self.now.get_mut(&slot) {
                list.retain(|p| p != prefix);
            }
        }
        if self.now.get(&slot).is_some_and(Vec::is_empty) {
            self.now.remove(&slot);
        }
        Ok(())
    }

    /// What the fast path's guard dropped on port `slot`, summed over CPUs.
    pub(super) fn drops(&self, slot: u32) -> Result<guard::Drops, XdpError> {
        let per_cpu = self
            .drops
            .get(&slot, 0)
            .map_err(map_error("reading", maps::GUARD_DROPS))?;
        Ok(per_cpu.iter().fold(guard::Drops::default(), |mut t, c| {
            t.packets += c.packets;
            t.bytes += c.bytes;
            t
        }))
    }
}
