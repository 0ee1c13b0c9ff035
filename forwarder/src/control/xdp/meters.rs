//! The XDP program's maps for storm control and policing: `METERS`, every meter's
//! state, which the workers' [`Meters`] live in (mapped into this process, as the MAC
//! table is), and `METER_DROPS` and `STORM_DROPS`, what the fast path's policing and storm
//! control dropped on each port.
use aya::maps::{Map, MapData, PerCpuArray};
use hairpin_common::{maps, meter::Dropped};

use super::{Steering, XdpError, map_error, map_values};
use crate::switch::Meters;

/// The meters' maps.
pub(super) struct MeterMaps {
    /// Mapped by [`Steering::shared_meters`].
    state: MapData,
    drops: PerCpuArray<MapData, Dropped>,
    storm_drops: PerCpuArray<MapData, Dropped>,
}

impl MeterMaps {
    /// The maps the object declares as `METERS`, `METER_DROPS` and `STORM_DROPS`.
    pub(super) fn new(state: Map, drops: Map, storm_drops: Map) -> Result<Self, XdpError> {
        let state = match state {
            Map::Array(data) => data,
            _ => {
                return Err(XdpError::MapType {
                    name: maps::METERS,
                    source: aya::maps::MapError::InvalidName {
                        name: maps::METERS.to_owned(),
                    },
                });
            }
        };
        Ok(Self {
            state,
            drops: PerCpuArray::try_from(drops).map_err(|source| XdpError::MapType {
                name: maps::METER_DROPS,
                source,
            })?,
            storm_drops: PerCpuArray::try_from(storm_drops).map_err(|source| {
                XdpError::MapType {
                    name: maps::STORM_DROPS,
                    source,
                }
            })?,
        })
    }
}

impl Steering {
    /// The workers' meters, in the program's `METERS` map (zero: every meter fresh), so
    /// that the fast path's policing charges the same ones.
    #[allow(unsafe_code)]
    pub fn shared_meters(&self) -> Result<Meters, XdpError> {
        let memory =
            map_values(&self.fast.meters.state, Meters::BYTES).map_err(XdpError::MapMeters)?;
        // SAFETY: an array map's mapping is page-aligned and of the size asked for
        // (checked again by `in_shared`); the XDP program touches its words only with
        // aligned 8-byte loads and compare-and-swaps (`ebpf/src/fast.rs`).
        unsafe { Meters::in_shared(memory) }
            .map_err(|e| XdpError::MapMeters(std::io::Error::other(e)))
    }

    /// What the fast path's policing dropped on port `slot`, summed over CPUs.
    pub fn meter_drops(&self, slot: u32) -> Result<Dropped, XdpError> {
        summed(&self.fast.meters.drops, slot, maps::METER_DROPS)
    }

    /// What the fast path's storm control dropped on port `slot`, summed over CPUs.
    pub fn storm_drops(&self, slot: u32) -> Result<Dropped, XdpError> {
        summed(&self.fast.meters.storm_drops, slot, maps::STORM_DROPS)
    }
}

/// Element `slot` of per-CPU drop counters `map` (named `name`), summed over CPUs.
fn summed(
    map: &PerCpuArray<MapData, Dropped>,
    slot: u32,
    name: &'static str,
) -> Result<Dropped, XdpError> {
    let per_cpu = map.get(&slot, 0).map_err(map_error("reading", name))?;
    Ok(per_cpu.iter().fold(Dropped::default(), |mut t, c| {
        t.packets += c.packets;
        t.bytes += c.bytes;
        t
    }))
}
