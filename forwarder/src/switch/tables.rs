//! The bridge's set-up as [`decide`](super::decide) reads it: the [`Mode`], each port's
//! [`Role`] and [`PortPolicy`], and the [`Tables`] built from them (with the shared MAC
//! table), or the [`TablesError`] that says why they cannot be built.
use std::{fmt, sync::Arc};

use super::{
    Fdb, MAX_PORTS, PortId, PortSet,
    guard::{IpGuard, IpPrefix},
    meters::{Limits, Meters, PortMeters},
    vlan::{PortVlans, VlanTable},
};
use crate::wire::Mac;

/// The switching mode, in 802.1Qbg / Linux macvlan terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Virtual Ethernet bridge: downlinks switch to each other locally; unknown and
    /// broadcast frames flood to every other port, the uplink included.
    #[default]
    Veb,
    /// Virtual Ethernet port aggregator: every frame from a downlink goes to the uplink;
    /// the adjacent switch reflects frames between local downlinks back.
    Vepa,
    /// As `vepa`, but downlinks never reach each other, even through a reflecting switch.
    Private,
    /// Two ports patched to each other, no lookups (like testpmd `io`): for benchmarks.
    Xconnect,
    /// One downlink owns the uplink (macvlan `passthru`): frames cross between the two
    /// untouched, with no table; the downlink's anti-spoofing list still applies, and
    /// the host keeps its own traffic on the uplink.
    Passthru,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Veb => "veb",
            Self::Vepa => "vepa",
            Self::Private => "private",
            Self::Xconnect => "xconnect",
            Self::Passthru => "passthru",
        })
    }
}

/// An error in the bridge's set-up.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// Too few or too many ports for the mode.
    #[error("{mode} mode needs {need} ports, got {got}")]
    PortCount {
        /// The mode.
        mode: Mode,
        /// What it needs.
        need: String,
        /// What it got.
        got: usize,
    },
    /// More than one uplink.
    #[error("only one port may be the uplink (ports {first} and {second} both are)")]
    TwoUplinks {
        /// The first uplink's index.
        first: usize,
        /// The second's.
        second: usize,
    },
    /// VEPA or private mode without an uplink.
    #[error("{0} mode needs an uplink port")]
    NeedsUplink(Mode),
    /// VLAN settings in `xconnect` or `passthru` mode, which forward frames untouched.
    #[error("{0} mode passes frames through untouched: it takes no VLAN settings")]
    UntouchedVlans(Mode),
}

/// A port's place in the edge bridge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Faces a VM or container (a VF, macvlan, veth or tap).
    #[default]
    Downlink,
    /// Towards the physical network; at most one.
    Uplink,
}

/// How the bridge treats one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPolicy {
    /// Uplink or downlink.
    pub role: Role,
    /// Reflective relay: frames may go back out of this port when their destination
    /// lives behind it too (the hairpin a VEPA station's adjacent switch must do).
    pub hairpin: bool,
    /// Anti-spoofing: the source MACs frames from this port may carry (empty: any).
    pub allowed_sources: Vec<Mac>,
    /// Access VLAN or trunk (none: VLAN 1 untagged once any port has a VLAN setting).
    pub vlans: Option<PortVlans>,
    /// The most MAC table entries the port may learn (0: no limit); sources past it are
    /// forwarded but not learned, and counted ([`Fdb::refused`]).
    pub max_macs: u32,
    /// A port mirror's monitor port (SPAN): it sends the mirror's copies and nothing
    /// else. Frames it receives are dropped ([`DropReason::Monitor`](super::DropReason::Monitor))
    /// and never learned, no flood reaches it, and a frame for a station on it (a static
    /// entry) is dropped. Not a setting of the port's own: the bridge sets it from its
    /// mirrors when it builds the tables.
    pub monitor: bool,

    /// Storm control and ingress policing ([`super::meters`]).
    pub limits: Limits,
    /// The IP source guard: the prefixes the port's IP, ARP and neighbour discovery may
    /// use (empty: no guard; see [`guard`](super::guard)).
    pub allowed_ips: Vec<IpPrefix>,
}

/// Entries a downlink may learn unless its `max_macs` says otherwise: room for a VM
/// that routes for many, and a sixteenth of the default table, which no one port then
/// fills. The uplink, behind which the whole network lives, has no limit by default.
pub const DEFAULT_MAX_MACS: u32 = 4096;

impl Default for PortPolicy {
    /// A downlink, no reflective relay, any source, no VLAN setting, learning at most
    /// [`DEFAULT_MAX_MACS`], not a monitor port, no IP source guard.
    fn default() -> Self {
        Self {
            role: Role::Downlink,
            hairpin: false,
            allowed_sources: Vec::new(),
            vlans: None,
            max_macs: DEFAULT_MAX_MACS,
            monitor: false,
            limits: Limits::default(),
            allowed_ips: Vec::new(),
        }
    }
}

/// Reserved group addresses no group forward mask relays: MAC control (pause, `..:01`)
/// and the slow protocols (LACP, marker, OAM, `..:02`). Both belong to one link; the
/// Linux bridge refuses them in its `group_fwd_mask` too.
pub const GROUP_FWD_RESTRICTED: u16 = 0b0110;

/// Everything [`decide`](super::decide) reads: the mode, the ports and their policies,
/// and the MAC table, which it also learns sources into.
///
/// Ports live in fixed slots ([`PortId`]) for as long as they are configured. The tables
/// are immutable once built: when a port comes, goes, or changes state, the control plane
/// builds new tables (sharing the same MAC table) and hands them to the workers, which
/// switch over between two batches.
#[derive(Debug)]
pub struct Tables {
    pub(super) mode: Mode,
    /// Ports frames may leave by: attached, with carrier, and not monitor ports.
    pub(super) ports: PortSet,
    /// Mirrors' monitor ports ([`PortPolicy::monitor`]): what they receive is dropped.
    pub(super) monitors: PortSet,
    pub(super) uplink: Option<PortId>,
    pub(super) downlinks: PortSet,
    pub(super) hairpin: PortSet,
    /// Bit `n`: frames to `01:80:c2:00:00:0n` are relayed like other multicast.
    pub(super) group_fwd_mask: u16,
    /// Per slot; empty where any source is allowed.
    pub(super) allowed_sources: Vec<Box<[Mac]>>,
    /// Per slot: the most entries the port may learn (`u32::MAX`: no limit).
    pub(super) max_macs: Box<[u32]>,
    /// Per slot: the IP source guard, where the port has one.
    pub(super) guards: Vec<Option<IpGuard>>,
    /// Who carries which VLAN.
    pub vlans: VlanTable,
    /// The MAC table, keyed by (VLAN, MAC); learning writes to it through atomics.
    pub fdb: Arc<Fdb>,

    /// Per slot: storm control and policing as configured.
    pub(super) limits: Box<[Limits]>,
    /// Per slot: their meters' settings.
    pub(super) port_meters: Box<[PortMeters]>,
    /// Ports with a policing limit.
    pub(super) policed: PortSet,
    /// Ports with a storm control limit.
    pub(super) storm: PortSet,
    /// The meters' state, shared with the tables these replace (and the XDP program).
    pub meters: Arc<Meters>,
}

impl Tables {
    /// Tables for the configured ports, `slots[id]` being the policy of port `id` (`None`:
    /// a free slot), in `mode`. Only the ports of `up` are sent to; `fdb` is shared with
    /// the tables these replace.
    pub fn new(
        mode: Mode,
        slots: &[Option<PortPolicy>],
        up: PortSet,
        fdb: Arc<Fdb>,
    ) -> Result<Self, TablesError> {
        if slots.len() > MAX_PORTS {
            return Err(TablesError::PortCount {
                mode,
                need: format!("at most {MAX_PORTS}"),
                got: slots.len(),
            });
        }
        let configured = slots.iter().flatten().count();
        if matches!(mode, Mode::Xconnect | Mode::Passthru) && (configured != 2 || slots.len() != 2)
        {
            let need = match mode {
                Mode::Xconnect => "exactly 2",
                _ => "exactly 2 (one downlink and the uplink)",
            }
            .to_owned();
            return Err(TablesError::PortCount {
                mode,
                need,
                got: configured,
            });
        }
        let mut uplink = None;
        let mut downlinks = PortSet::EMPTY;
        let mut hairpin = PortSet::EMPTY;
        let mut configured_set = PortSet::EMPTY;
        let mut monitors = PortSet::EMPTY;
        for (i, policy) in slots.iter().enumerate() {
            let Some(policy) = policy else { continue };
            let id = i as PortId;
            configured_set = configured_set.with(id);
            if policy.monitor {
                monitors = monitors.with(id);
            }
            match (policy.role, uplink) {
                (Role::Uplink, Some(first)) => {
                    return Err(TablesError::TwoUplinks {
                        first: usize::from(first),
                        second: i,
                    });
                }
                (Role::Uplink, None) => uplink = Some(id),
                (Role::Downlink, _) => downlinks = downlinks.with(id),
            }
            if policy.hairpin {
                hairpin = hairpin.with(id);
            }
        }
        if matches!(mode, Mode::Vepa | Mode::Private | Mode::Passthru) && uplink.is_none() {
            return Err(TablesError::NeedsUplink(mode));
        }
        let vlans: Vec<Option<PortVlans>> = slots
            .iter()
            .map(|p| p.as_ref().and_then(|p| p.vlans.clone()))
            .collect();
        if matches!(mode, Mode::Xconnect | Mode::Passthru) && vlans.iter().any(Option::is_some) {
            return Err(TablesError::UntouchedVlans(mode));
        }
        let mut allowed_sources = vec![Box::<[Mac]>::default(); MAX_PORTS];
        let mut max_macs = vec![u32::MAX; MAX_PORTS].into_boxed_slice();
        for (i, policy) in slots.iter().enumerate() {
            if let Some(policy) = policy {
                allowed_sources[i] = policy.allowed_sources.clone().into_boxed_slice();
                if policy.max_macs != 0 {
                    max_macs[i] = policy.max_macs;
                }
            }
        }
        let mut limits = vec![Limits::default(); MAX_PORTS].into_boxed_slice();
        let mut port_meters = vec![PortMeters::default(); MAX_PORTS].into_boxed_slice();
        let (mut policed, mut storm) = (PortSet::EMPTY, PortSet::EMPTY);
        for (i, policy) in slots.iter().enumerate() {
            if let Some(policy) = policy {
                limits[i] = policy.limits;
                port_meters[i] = policy.limits.meters();
                if port_meters[i].polices() {
                    policed = policed.with(i as PortId);
                }
                if port_meters[i].storms() {
                    storm = storm.with(i as PortId);
                }
            }
        }
        let mut guards = vec![None; MAX_PORTS];
        for (i, policy) in slots.iter().enumerate() {
            if let Some(policy) = policy {
                guards[i] = IpGuard::new(&policy.allowed_ips);
            }
        }
        // A monitor port is sent nothing but its mirrors' copies, which do not go
        // through the tables.
        let ports = monitors
            .iter()
            .fold(up.and(&configured_set), PortSet::without);
        Ok(Self {
            mode,
            ports,
            monitors,
            uplink,
            downlinks,
            hairpin,
            group_fwd_mask: 0,
            allowed_sources,
            max_macs,
            guards,
            vlans: VlanTable::new(&vlans),
            fdb,
            limits,
            port_meters,
            policed,
            storm,
            meters: Arc::new(Meters::owned()),
        })
    }

    /// These tables metering in `meters` (the ones the tables they replace use, and the
    /// XDP program), in place of meters of their own.
    #[must_use]
    pub fn with_meters(mut self, meters: Arc<Meters>) -> Self {
        self.meters = meters;
        self
    }

    /// Port `port`'s storm control and policing.
    pub fn limits(&self, port: PortId) -> &Limits {
        &self.limits[usize::from(port)]
    }

    /// Port `port`'s meters' settings.
    pub fn port_meters(&self, port: PortId) -> &PortMeters {
        &self.port_meters[usize::from(port)]
    }

    /// These tables relaying the reserved group addresses whose bits `mask` sets (none
    /// by default; [`GROUP_FWD_RESTRICTED`] bits are ignored).
    #[must_use]
    pub fn with_group_fwd_mask(mut self, mask: u16) -> Self {
        self.group_fwd_mask = mask & !GROUP_FWD_RESTRICTED;
        self
    }

    /// Port `port`'s IP source guard, if it has one ([`PortPolicy::allowed_ips`]).
    #[inline]
    pub fn guard(&self, port: PortId) -> Option<&IpGuard> {
        self.guards.get(usize::from(port))?.as_ref()
    }

    /// Whether port `port` has reflective relay (hairpin) on.
    pub fn hairpin_on(&self, port: PortId) -> bool {
        self.hairpin.contains(port)
    }

    /// Bit `n`: frames to `01:80:c2:00:00:0n` are relayed like other multicast.
    pub fn group_fwd_mask(&self) -> u16 {
        self.group_fwd_mask
    }

    /// Whether port `port` is a mirror's monitor port ([`PortPolicy::monitor`]).
    pub fn is_monitor(&self, port: PortId) -> bool {
        self.monitors.contains(port)
    }

    /// Tables for `n` plain downlinks, all up (no uplink, no hairpin, no anti-spoofing),
    /// with a fresh MAC table of `fdb_capacity` entries.
    pub fn with_ports(mode: Mode, n: usize, fdb_capacity: usize) -> Result<Self, TablesError> {
        Self::new(
            mode,
            &vec![Some(PortPolicy::default()); n],
            PortSet::first(n.min(MAX_PORTS)),
            Arc::new(Fdb::with_capacity(fdb_capacity)),
        )
    }
}

/// Tables for `policies` in slots 0.., all up: the unit tests' bridge.
#[cfg(test)]
pub(super) fn tables_of(
    mode: Mode,
    policies: &[PortPolicy],
    fdb_capacity: usize,
) -> Result<Tables, TablesError> {
    let slots: Vec<_> = policies.iter().cloned().map(Some).collect();
    Tables::new(
        mode,
        &slots,
        PortSet::first(policies.len()),
        Arc::new(Fdb::with_capacity(fdb_capacity)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_modes_need_one_uplink() {
        let plain = vec![PortPolicy::default(); 2];
        assert!(matches!(
            tables_of(Mode::Vepa, &plain, 16),
            Err(TablesError::NeedsUplink(Mode::Vepa))
        ));
        let mut two = plain.clone();
        two[0].role = Role::Uplink;
        two[1].role = Role::Uplink;
        assert!(matches!(
            tables_of(Mode::Veb, &two, 16),
            Err(TablesError::TwoUplinks {
                first: 0,
                second: 1
            })
        ));
    }
}
