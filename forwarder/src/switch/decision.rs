//! [`decide`], the switching decision for one frame: it classifies the frame into a
//! VLAN, checks its source, learns the source into the shared MAC table and answers
//! with a [`Verdict`].
use super::{Action, DropReason, Mode, PortId, PortSet, Tables, Verdict, VlanId, vlan::Classified};
use crate::wire::EthernetFrame;

/// Decides what happens to `frame`, received on `ingress` at `now` (table seconds),
/// learning its source address on the way.
///
/// Whatever the mode, a frame received on a mirror's monitor port is dropped
/// ([`DropReason::Monitor`]) before anything else, its source never learned: the port
/// sends the mirror's copies and forwards nothing (the tables leave it out of every
/// flood, and a frame for a station a static entry puts on it is dropped too).
///
/// In every mode but `xconnect`: runts, frames outside the VLANs the port carries (see
/// [`vlan`](super::vlan)), multicast or all-zero sources, (on a port with an
/// anti-spoofing list) unlisted sources and (on a port with an IP source guard) frames
/// it refuses ([`guard`](super::guard): `ip_spoofed`) are dropped; the source is
/// learned in the frame's VLAN (unless its port has learned its `max_macs` already:
/// then it is forwarded all the same); frames to a
/// reserved group address are dropped unless the group forward mask relays them (then
/// they are multicast like any other; `passthru` relays them all); a frame
/// never leaves by its ingress port unless that port has hairpin (reflective relay) on,
/// and never leaves by a port that does not carry its VLAN. Then, by mode:
///
/// - `veb`: known unicast goes to its port; broadcast, multicast and unknown unicast
///   flood to every other port of the VLAN.
/// - `vepa`: from a downlink, everything goes to the uplink. From the uplink, unicast
///   goes to the downlink that owns the destination (flooded to the VLAN's downlinks when
///   unknown) unless the source lives there too; broadcast and multicast go to every downlink of the VLAN but the one the
///   source lives on (a frame the adjacent switch reflected never returns to its sender).
///   A source seen on the uplink is not learned there when it lives on a downlink: that
///   is a reflected frame, not a station that moved.
/// - `private`: as `vepa`, but a reflected frame (from the uplink, sourced by a local
///   downlink) reaches no other downlink.
#[inline]
pub fn decide(tables: &Tables, frame: &[u8], ingress: PortId, now: u32) -> Verdict {
    decide_with::<true>(tables, frame, ingress, now)
}

/// [`decide`], learning the source only when `LEARN` is true: with it false the MAC
/// table is read and never written (`hairpin trace` asks what would happen). The
/// verdict is the same either way but for a frame sent to its own source, which
/// [`decide`] finds on the ingress port once learned there ([`trace`](super::trace)
/// accounts for it).
#[inline]
pub fn decide_with<const LEARN: bool>(
    tables: &Tables,
    frame: &[u8],
    ingress: PortId,
    now: u32,
) -> Verdict {
    if tables.monitors.contains(ingress) {
        return Verdict::drop(DropReason::Monitor);
    }
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Verdict::drop(DropReason::Runt);
    };
    match tables.mode {
        Mode::Xconnect => {
            return Verdict {
                action: to_peer(tables, ingress),
                vlan: Classified::default(),
            };
        }
        Mode::Passthru => {
            let allowed = &tables.allowed_sources[usize::from(ingress)];
            let action = if !allowed.is_empty() && !allowed.contains(&eth.src()) {
                Action::Drop(DropReason::Spoofed)
            } else if refused_by_guard(tables, frame, ingress) {
                Action::Drop(DropReason::IpSpoofed)
            } else {
                to_peer(tables, ingress)
            };
            return Verdict {
                action,
                vlan: Classified::default(),
            };
        }
        _ => {}
    }
    match tables.vlans.classify(frame, ingress) {
        Ok(vlan) => Verdict {
            action: switch::<LEARN>(tables, &eth, ingress, vlan.vid, now),
            vlan,
        },
        Err(reason) => Verdict::drop(reason),
    }
}

/// [`decide`] for a frame of VLAN `vid`.
#[inline]
fn switch<const LEARN: bool>(
    tables: &Tables,
    eth: &EthernetFrame<&[u8]>,
    ingress: PortId,
    vid: VlanId,
    now: u32,
) -> Action {
    let src = eth.src();
    if !src.is_learnable() {
        return Action::Drop(DropReason::BadSourceMac);
    }
    let allowed = &tables.allowed_sources[usize::from(ingress)];
    if !allowed.is_empty() && !allowed.contains(&src) {
        return Action::Drop(DropReason::Spoofed);
    }
    if refused_by_guard(tables, eth.as_bytes(), ingress) {
        return Action::Drop(DropReason::IpSpoofed);
    }
    let dst = eth.dst();
    let from_uplink = tables.uplink == Some(ingress);
    let edge = matches!(tables.mode, Mode::Vepa | Mode::Private);
    // Only ports that are up: a port without carrier, or on its way out, is sent nothing.
    let members = tables.vlans.members(vid, &tables.ports).and(&tables.ports);

    // Where the source lives. On a VEPA uplink, a source that lives on a local downlink
    // is a reflection and is not learned there.
    let limit = tables.max_macs[usize::from(ingress)];
    let src_home = if edge && from_uplink {
        match tables.fdb.lookup(vid, src) {
            Some(home) if tables.downlinks.contains(home) => Some(home),
            _ => {
                if LEARN {
                    tables.fdb.learn_at_most(vid, src, ingress, now, limit);
                }
                None
            }
        }
    } else {
        if LEARN {
            tables.fdb.learn_at_most(vid, src, ingress, now, limit);
        }
        None
    };

    // 802.1Q: a bridge does not relay frames for its own link (STP, pause, LACP, 802.1X,
    // LLDP). On a port that keeps host traffic the XDP program hands them to the host.
    if let Some(bit) = dst.reserved_group()
        && tables.group_fwd_mask & (1 << bit) == 0
    {
        return Action::Drop(DropReason::Reserved);
    }

    if edge && !from_uplink {
        return match tables.uplink {
            Some(up) if members.contains(up) => Action::Forward(up),
            Some(up) if !tables.ports.contains(up) => Action::Drop(DropReason::PortDown),
            _ => Action::Drop(DropReason::NoUplink),
        };
    }
    if tables.mode == Mode::Private && src_home.is_some() {
        return Action::Drop(DropReason::PrivateIsolation);
    }

    let known = if dst.is_multicast() {
        None
    } else {
        tables.fdb.lookup(vid, dst)
    };
    let hairpin = tables.hairpin.contains(ingress);
    match known {
        Some(port) if port == ingress && !hairpin => Action::Drop(DropReason::SameSegment),
        // A reflection does not go back down to its source's own port, which had it
        // already (as a reflected flood skips that port).
        Some(port) if src_home == Some(port) => Action::Drop(DropReason::SameSegment),
        // A static entry on a monitor port: it forwards nothing but its copies.
        Some(port) if tables.monitors.contains(port) => Action::Drop(DropReason::Monitor),
        // An entry not yet flushed for a port that went down or away.
        Some(port) if !tables.ports.contains(port) => Action::Drop(DropReason::PortDown),
        // Only a static entry can name a port outside the VLAN.
        Some(port) if !members.contains(port) => Action::Drop(DropReason::NoEgress),
        Some(port) => Action::Forward(port),
        None => {
            let mut targets = if edge { tables.downlinks } else { tables.ports };
            targets = targets.and(&members);
            if !hairpin {
                targets = targets.without(ingress);
            }
            if let Some(home) = src_home {
                targets = targets.without(home);
            }
            flood(targets)
        }
    }
}

/// Whether `ingress` has an IP source guard that refuses `frame` ([`super::guard`]).
#[inline]
fn refused_by_guard(tables: &Tables, frame: &[u8], ingress: PortId) -> bool {
    tables
        .guard(ingress)
        .is_some_and(|guard| guard.check(frame).is_err())
}

/// `xconnect` and `passthru`: the other of the two ports, if it is up.
#[inline]
fn to_peer(tables: &Tables, ingress: PortId) -> Action {
    let peer = ingress ^ 1;
    if tables.ports.contains(peer) {
        Action::Forward(peer)
    } else {
        Action::Drop(DropReason::PortDown)
    }
}

fn flood(ports: PortSet) -> Action {
    if ports.is_empty() {
        Action::Drop(DropReason::NoEgress)
    } else {
        Action::Flood(ports)
    }
}

#[cfg(test)]
mod tests;
