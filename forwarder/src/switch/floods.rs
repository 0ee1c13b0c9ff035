//! [`flood_domains`]: the ports each VLAN's floods reach, which the kernel fast path
//! floods over (`control/bridge/fast.rs` gives each VLAN's domain to the XDP program).
use super::{Mode, PortSet, Tables, VlanId};

/// Each VLAN's flood domain (VLAN 0 on a VLAN-unaware bridge): the ports a flood of the
/// VLAN reaches from a source learned on its ingress port, that port apart unless it
/// has hairpin on, exactly as [`decide`](super::decide) floods (ports that are up, not
/// monitor ports, that carry the VLAN). Only in `veb`: in `vepa` and `private` a
/// downlink's group frames go to the uplink alone and the uplink's floods leave out
/// the source's own downlink, so those stay the workers' (none here).
pub fn flood_domains(tables: &Tables) -> Vec<(VlanId, PortSet)> {
    if tables.mode != Mode::Veb {
        return Vec::new();
    }
    let vids: Vec<VlanId> = if tables.vlans.is_aware() {
        tables.vlans.in_use().collect()
    } else {
        vec![0]
    };
    vids.into_iter()
        .map(|vid| {
            let members = tables.vlans.members(vid, &tables.ports).and(&tables.ports);
            (vid, members)
        })
        .collect()
}
