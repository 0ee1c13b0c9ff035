//! [`decide`]'s tests: each mode's rules on made-up bridges, and the invariants of
//! every mode on random bridges and frames (proptest).
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::{
    switch::{
        DEFAULT_MAX_MACS, Fdb, GROUP_FWD_RESTRICTED, MAX_PORTS, PortPolicy, Role, TablesError,
        tables::tables_of,
        vlan::{self, PortVlans},
    },
    wire::Mac,
};

const A: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);
const B: Mac = Mac([0x02, 0, 0, 0, 0, 0x0b]);
const C: Mac = Mac([0x02, 0, 0, 0, 0, 0x0c]);

fn frame(dst: Mac, src: Mac) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(60, 0);
    f
}

fn act(t: &Tables, frame: &[u8], ingress: PortId, now: u32) -> Action {
    decide(t, frame, ingress, now).action
}

fn veb(ports: usize) -> Tables {
    Tables::with_ports(Mode::Veb, ports, 1024).unwrap()
}

#[test]
fn unknown_unicast_floods_to_every_other_port_and_teaches_the_source() {
    let t = veb(3);
    assert_eq!(
        act(&t, &frame(B, A), 0, 1),
        Action::Flood(PortSet::EMPTY.with(1).with(2))
    );
    assert_eq!(t.fdb.lookup(0, A), Some(0));
    // The reply goes straight back to where A was learned.
    assert_eq!(act(&t, &frame(A, B), 2, 1), Action::Forward(0));
    // And now B is known too.
    assert_eq!(act(&t, &frame(B, A), 0, 1), Action::Forward(2));
}

#[test]
fn broadcast_and_multicast_flood_but_never_back_to_ingress() {
    let t = veb(4);
    let all_but_1 = PortSet::first(4).without(1);
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, A), 1, 1),
        Action::Flood(all_but_1)
    );
    let mcast = Mac([0x01, 0x00, 0x5e, 0, 0, 1]);
    assert_eq!(act(&t, &frame(mcast, A), 1, 1), Action::Flood(all_but_1));
}

#[test]
fn a_destination_on_the_ingress_segment_is_filtered() {
    let t = veb(3);
    act(&t, &frame(B, A), 0, 1);
    act(&t, &frame(A, C), 0, 1); // C lives on port 0 too.
    assert_eq!(
        act(&t, &frame(C, A), 0, 1),
        Action::Drop(DropReason::SameSegment)
    );
}

#[test]
fn a_moved_station_is_followed_at_once() {
    let t = veb(3);
    act(&t, &frame(B, A), 0, 1);
    act(&t, &frame(B, A), 2, 1);
    assert_eq!(act(&t, &frame(A, B), 1, 1), Action::Forward(2));
}

#[test]
fn runts_and_bad_sources_are_dropped_and_never_learned() {
    let t = veb(2);
    assert_eq!(
        act(&t, &frame(B, A)[..13], 0, 1),
        Action::Drop(DropReason::Runt)
    );
    assert_eq!(act(&t, &[], 0, 1), Action::Drop(DropReason::Runt));
    assert_eq!(
        act(&t, &frame(B, Mac::ZERO), 0, 1),
        Action::Drop(DropReason::BadSourceMac)
    );
    assert_eq!(
        act(&t, &frame(B, Mac([0x01, 0, 0x5e, 0, 0, 9])), 0, 1),
        Action::Drop(DropReason::BadSourceMac)
    );
    assert!(t.fdb.is_empty());
    // A header-only frame is not a runt.
    assert!(matches!(
        act(&t, &frame(B, A)[..14], 0, 1),
        Action::Flood(_)
    ));
}

#[test]
fn a_single_port_bridge_has_nowhere_to_flood() {
    let t = veb(1);
    assert_eq!(
        act(&t, &frame(B, A), 0, 1),
        Action::Drop(DropReason::NoEgress)
    );
}

#[test]
fn xconnect_patches_two_ports_whatever_the_addresses() {
    let t = Tables::with_ports(Mode::Xconnect, 2, 16).unwrap();
    assert_eq!(act(&t, &frame(B, A), 0, 1), Action::Forward(1));
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, Mac::ZERO), 1, 1),
        Action::Forward(0)
    );
    assert!(t.fdb.is_empty(), "xconnect learns nothing");
    assert!(Tables::with_ports(Mode::Xconnect, 3, 16).is_err());
    assert!(
        Tables::with_ports(Mode::Veb, 0, 16).is_ok(),
        "a bridge may start empty and get its ports at run time"
    );
    assert!(Tables::with_ports(Mode::Veb, MAX_PORTS + 1, 16).is_err());
}

/// vm1 (port 0) and vm2 (port 1) are downlinks, port 2 the uplink.
fn edge(mode: Mode) -> Tables {
    let mut policies = vec![PortPolicy::default(); 3];
    policies[2].role = Role::Uplink;
    tables_of(mode, &policies, 1024).unwrap()
}

/// The reserved group address `01:80:c2:00:00:0n`.
fn reserved(n: u8) -> Mac {
    Mac([0x01, 0x80, 0xc2, 0, 0, n])
}

#[test]
fn reserved_group_addresses_are_never_relayed_by_default() {
    for mode in [Mode::Veb, Mode::Vepa, Mode::Private] {
        let t = edge(mode);
        // STP, pause, LACP, 802.1X, LLDP, and the rest of the block: from a downlink
        // (never up to the uplink) and from the uplink (never down to a VM).
        for n in 0..0x10 {
            for ingress in [0, 2] {
                assert_eq!(
                    act(&t, &frame(reserved(n), A), ingress, 1),
                    Action::Drop(DropReason::Reserved),
                    "{mode} {} from port {ingress}",
                    reserved(n)
                );
            }
        }
        // Just past the block: ordinary multicast.
        assert!(matches!(
            act(&t, &frame(reserved(0x10), B), 1, 1),
            Action::Flood(_) | Action::Forward(2)
        ));
    }
}

#[test]
fn the_group_forward_mask_relays_the_chosen_ones_but_never_pause_or_lacp() {
    let t = veb(3).with_group_fwd_mask(1 << 0x0e | 1 << 0x03 | GROUP_FWD_RESTRICTED);
    let others = Action::Flood(PortSet::EMPTY.with(1).with(2));
    assert_eq!(act(&t, &frame(reserved(0x0e), A), 0, 1), others, "LLDP");
    assert_eq!(act(&t, &frame(reserved(0x03), A), 0, 1), others, "802.1X");
    for n in [0x00, 0x01, 0x02, 0x0d] {
        assert_eq!(
            act(&t, &frame(reserved(n), A), 0, 1),
            Action::Drop(DropReason::Reserved),
            "{}",
            reserved(n)
        );
    }
    // A relayed frame is checked like any other: a spoofed source is still dropped.
    let mut policies = vec![PortPolicy::default(); 2];
    policies[0].allowed_sources = vec![A];
    let t = tables_of(Mode::Veb, &policies, 16)
        .unwrap()
        .with_group_fwd_mask(1 << 0x0e);
    assert_eq!(
        act(&t, &frame(reserved(0x0e), B), 0, 1),
        Action::Drop(DropReason::Spoofed)
    );
}

#[test]
fn vepa_sends_everything_from_a_downlink_to_the_uplink() {
    let t = edge(Mode::Vepa);
    act(&t, &frame(A, B), 1, 1); // B learned on vm2
    assert_eq!(
        act(&t, &frame(B, A), 0, 1),
        Action::Forward(2),
        "even a local destination"
    );
    assert_eq!(act(&t, &frame(Mac::BROADCAST, A), 0, 1), Action::Forward(2));
    assert_eq!(t.fdb.lookup(0, A), Some(0));
}

#[test]
fn vepa_delivers_reflected_frames_but_never_back_to_their_sender() {
    let t = edge(Mode::Vepa);
    act(&t, &frame(B, A), 0, 1); // A on vm1
    act(&t, &frame(A, B), 1, 1); // B on vm2
    // The adjacent switch reflects A -> B back down the uplink.
    assert_eq!(act(&t, &frame(B, A), 2, 1), Action::Forward(1));
    // A's broadcast, reflected, reaches every downlink but A's own.
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, A), 2, 1),
        Action::Flood(PortSet::EMPTY.with(1))
    );
    // So does a reflected frame between two stations behind A's port: that segment
    // had it already (found by the differential test against a bridge).
    let d = Mac([0x02, 0, 0, 0, 0, 0x0d]);
    act(&t, &frame(B, d), 0, 1); // d behind vm1 too
    assert_eq!(
        act(&t, &frame(d, A), 2, 1),
        Action::Drop(DropReason::SameSegment)
    );
    // Reflections do not teach the table that A moved to the uplink.
    assert_eq!(t.fdb.lookup(0, A), Some(0));
    // A station out on the network is learned on the uplink, and reaches any downlink.
    assert_eq!(act(&t, &frame(A, C), 2, 1), Action::Forward(0));
    assert_eq!(t.fdb.lookup(0, C), Some(2));
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, C), 2, 1),
        Action::Flood(PortSet::EMPTY.with(0).with(1)),
        "broadcasts from the uplink go to downlinks only"
    );
    // A frame for a station on the uplink that came from the uplink stays there.
    assert_eq!(
        act(&t, &frame(C, Mac([2, 0, 0, 0, 0, 0xdd])), 2, 1),
        Action::Drop(DropReason::SameSegment)
    );
}

#[test]
fn private_mode_keeps_downlinks_apart_even_through_a_reflecting_switch() {
    let t = edge(Mode::Private);
    act(&t, &frame(B, A), 0, 1);
    act(&t, &frame(A, B), 1, 1);
    assert_eq!(act(&t, &frame(B, A), 0, 1), Action::Forward(2));
    assert_eq!(
        act(&t, &frame(B, A), 2, 1),
        Action::Drop(DropReason::PrivateIsolation)
    );
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, A), 2, 1),
        Action::Drop(DropReason::PrivateIsolation)
    );
    // The outside world still reaches every downlink.
    assert_eq!(act(&t, &frame(A, C), 2, 1), Action::Forward(0));
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, C), 2, 1),
        Action::Flood(PortSet::EMPTY.with(0).with(1))
    );
}
#[test]
fn veb_floods_to_the_uplink_too_and_switches_locally() {
    let t = edge(Mode::Veb);
    assert_eq!(
        act(&t, &frame(B, A), 0, 1),
        Action::Flood(PortSet::EMPTY.with(1).with(2))
    );
    act(&t, &frame(A, B), 1, 1);
    assert_eq!(
        act(&t, &frame(B, A), 0, 1),
        Action::Forward(1),
        "local, not via the uplink"
    );
}

#[test]
fn ports_far_apart_in_the_slots_flood_learn_and_keep_their_vlans() {
    // Four ports in slots of different words of the port set, the last slot among
    // them; the slots between are free. Two carry VLAN 10, two VLAN 20.
    let ids: [PortId; 4] = [3, 64, 700, MAX_PORTS as PortId - 1];
    let mut slots = vec![None; MAX_PORTS];
    for (k, &id) in ids.iter().enumerate() {
        slots[usize::from(id)] = Some(PortPolicy {
            vlans: Some(PortVlans::Access(if k % 2 == 0 { 10 } else { 20 })),
            ..PortPolicy::default()
        });
    }
    let up = ids.iter().fold(PortSet::EMPTY, |s, &p| s.with(p));
    let t = Tables::new(Mode::Veb, &slots, up, Arc::new(Fdb::with_capacity(64))).unwrap();
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, A), 3, 1),
        Action::Flood(PortSet::EMPTY.with(700)),
        "VLAN 10's other port only"
    );
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, B), MAX_PORTS as PortId - 1, 1),
        Action::Flood(PortSet::EMPTY.with(64))
    );
    assert_eq!(act(&t, &frame(A, C), 700, 1), Action::Forward(3));
    assert_eq!(t.fdb.lookup(10, C), Some(700));
    assert_eq!(act(&t, &frame(B, C), 64, 1), Action::Forward(1023));
}

#[test]
fn hairpin_ports_reflect_frames_back_where_they_came_from() {
    // One port, hairpin on: the adjacent switch of a VEPA host (reflective relay).
    let t = tables_of(
        Mode::Veb,
        &[PortPolicy {
            hairpin: true,
            ..PortPolicy::default()
        }],
        64,
    )
    .unwrap();
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, A), 0, 1),
        Action::Flood(PortSet::EMPTY.with(0))
    );
    act(&t, &frame(A, B), 0, 1);
    assert_eq!(act(&t, &frame(B, A), 0, 1), Action::Forward(0));
    // Without hairpin the same frames stay put.
    let t = veb(1);
    act(&t, &frame(A, B), 0, 1);
    assert_eq!(
        act(&t, &frame(B, A), 0, 1),
        Action::Drop(DropReason::SameSegment)
    );
}

#[test]
fn a_port_at_its_mac_limit_still_forwards_but_learns_no_more() {
    let mut policies = vec![PortPolicy::default(); 3];
    policies[0].max_macs = 2;
    policies[2].max_macs = 0; // no limit
    let t = tables_of(Mode::Veb, &policies, 1024).unwrap();
    for src in [A, B] {
        assert!(matches!(
            act(&t, &frame(Mac::BROADCAST, src), 0, 1),
            Action::Flood(_)
        ));
    }
    // The third source's frame is forwarded as any other, but not learned: a
    // reply to it is flooded.
    let known = Mac([0x02, 0, 0, 0, 0, 0x99]);
    act(&t, &frame(Mac::BROADCAST, known), 1, 1);
    assert_eq!(act(&t, &frame(known, C), 0, 1), Action::Forward(1));
    assert_eq!(t.fdb.lookup(0, C), None);
    assert!(matches!(act(&t, &frame(C, known), 1, 1), Action::Flood(_)));
    assert_eq!((t.fdb.learned_on(0), t.fdb.refused(0)), (2, 1));
    // A port without a limit learns as many as come.
    for n in 0..(DEFAULT_MAX_MACS + 10) {
        let b = n.to_be_bytes();
        let src = Mac([0x02, 1, b[0], b[1], b[2], b[3]]);
        act(&t, &frame(Mac::BROADCAST, src), 2, 1);
    }
    assert_eq!(t.fdb.refused(2), 0);
}

#[test]
fn anti_spoofing_drops_unlisted_sources_before_learning() {
    let mut policies = vec![PortPolicy::default(); 2];
    policies[0].allowed_sources = vec![A];
    let t = tables_of(Mode::Veb, &policies, 64).unwrap();
    assert!(matches!(act(&t, &frame(B, A), 0, 1), Action::Flood(_)));
    assert_eq!(
        act(&t, &frame(B, C), 0, 1),
        Action::Drop(DropReason::Spoofed)
    );
    assert_eq!(
        t.fdb.lookup(0, C),
        None,
        "a spoofed source is never learned"
    );
    assert!(
        matches!(act(&t, &frame(B, C), 1, 1), Action::Flood(_)),
        "other ports are free"
    );
}

/// Ports 0 to 2 downlinks, port 2 a mirror's monitor port, port 3 the uplink.
fn with_monitor(mode: Mode) -> Tables {
    let mut policies = vec![PortPolicy::default(); 4];
    policies[3].role = Role::Uplink;
    policies[2].monitor = true;
    tables_of(mode, &policies, 1024).unwrap()
}

#[test]
fn a_monitor_port_drops_what_it_receives_and_learns_nothing() {
    for mode in [Mode::Veb, Mode::Vepa, Mode::Private] {
        let t = with_monitor(mode);
        assert!(t.is_monitor(2) && !t.is_monitor(0));
        for bytes in [
            frame(B, A),
            frame(Mac::BROADCAST, A),
            tagged(B, A, 10),
            frame(B, A)[..10].to_vec(),
        ] {
            assert_eq!(
                act(&t, &bytes, 2, 1),
                Action::Drop(DropReason::Monitor),
                "{mode}"
            );
        }
        assert!(
            t.fdb.is_empty(),
            "{mode}: nothing learned on a monitor port"
        );
        // The other ports are not held up by it.
        assert!(!matches!(act(&t, &frame(C, A), 0, 1), Action::Drop(_)));
    }
}

#[test]
fn floods_leave_a_monitor_port_out() {
    let t = with_monitor(Mode::Veb);
    let others = Action::Flood(PortSet::EMPTY.with(1).with(3));
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, A), 0, 1),
        others,
        "broadcast"
    );
    assert_eq!(act(&t, &frame(B, A), 0, 1), others, "unknown unicast");
    // From the uplink of an edge bridge: to the downlinks but the monitor port.
    let t = with_monitor(Mode::Vepa);
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, A), 3, 1),
        Action::Flood(PortSet::EMPTY.with(0).with(1))
    );
    // A bridge whose only other port is a monitor port has nowhere to flood.
    let mut policies = vec![PortPolicy::default(); 2];
    policies[1].monitor = true;
    let t = tables_of(Mode::Veb, &policies, 16).unwrap();
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, A), 0, 1),
        Action::Drop(DropReason::NoEgress)
    );
}

#[test]
fn a_station_static_on_a_monitor_port_is_sent_nothing_and_trace_says_why() {
    let t = with_monitor(Mode::Veb);
    t.fdb.insert_static(0, B, 2);
    assert_eq!(
        act(&t, &frame(B, A), 0, 1),
        Action::Drop(DropReason::Monitor)
    );
    let tr = crate::switch::trace(&t, &frame(B, A), 0, 1);
    assert_eq!(tr.rule, "the destination is on a mirror's monitor port");
    // What the monitor port itself sends: dropped, and nothing learned.
    let tr = crate::switch::trace(&t, &frame(A, C), 2, 1);
    assert_eq!(tr.verdict.action, Action::Drop(DropReason::Monitor));
    assert_eq!(tr.learning, crate::switch::Learning::Skipped);
    assert!(tr.rule.contains("monitor port"), "{}", tr.rule);
}

fn tagged(dst: Mac, src: Mac, vid: VlanId) -> Vec<u8> {
    let mut f = frame(dst, src);
    f.splice(12..12, [0x81, 0x00, (vid >> 8) as u8, vid as u8]);
    f
}

fn vlan_policies(settings: &[Option<PortVlans>]) -> Vec<PortPolicy> {
    settings
        .iter()
        .map(|v| PortPolicy {
            vlans: v.clone(),
            ..PortPolicy::default()
        })
        .collect()
}

#[test]
fn vlans_keep_floods_and_the_mac_table_apart() {
    let trunk = PortVlans::Trunk {
        tagged: vec![10, 20],
        native: None,
    };
    // 0, 2: access 10; 1: access 20; 3: trunk 10,20.
    let t = tables_of(
        Mode::Veb,
        &vlan_policies(&[
            Some(PortVlans::Access(10)),
            Some(PortVlans::Access(20)),
            Some(PortVlans::Access(10)),
            Some(trunk),
        ]),
        1024,
    )
    .unwrap();
    let set = |ports: &[PortId]| ports.iter().fold(PortSet::EMPTY, |s, &p| s.with(p));
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, A), 0, 1),
        Action::Flood(set(&[2, 3]))
    );
    assert_eq!(
        act(&t, &frame(Mac::BROADCAST, B), 1, 1),
        Action::Flood(set(&[3]))
    );
    // C lives in VLAN 10 on port 2 and in VLAN 20 behind the trunk: two entries.
    act(&t, &frame(Mac::BROADCAST, C), 2, 1);
    act(&t, &tagged(Mac::BROADCAST, C, 20), 3, 1);
    assert_eq!(t.fdb.lookup(10, C), Some(2));
    assert_eq!(t.fdb.lookup(20, C), Some(3));
    assert_eq!(act(&t, &frame(C, A), 0, 1), Action::Forward(2));
    assert_eq!(act(&t, &frame(C, B), 1, 1), Action::Forward(3));
    let v = decide(&t, &frame(C, B), 1, 1).vlan;
    assert_eq!(t.vlans.retag(v, 3), vlan::Retag::Push(20));
    // A tag on an access port is dropped before anything is learned.
    let hop = Mac([0x02, 0, 0, 0, 0, 0x99]);
    assert_eq!(
        act(&t, &tagged(Mac::BROADCAST, hop, 20), 0, 1),
        Action::Drop(DropReason::Vlan)
    );
    assert_eq!(t.fdb.lookup(20, hop), None);
    assert_eq!(t.fdb.lookup(10, hop), None);
}

#[test]
fn vepa_sends_a_vlan_up_only_if_the_uplink_carries_it() {
    let mut policies = vlan_policies(&[
        Some(PortVlans::Access(10)),
        Some(PortVlans::Access(20)),
        Some(PortVlans::Trunk {
            tagged: vec![10],
            native: None,
        }),
    ]);
    policies[2].role = Role::Uplink;
    let t = tables_of(Mode::Vepa, &policies, 1024).unwrap();
    assert_eq!(act(&t, &frame(B, A), 0, 1), Action::Forward(2));
    assert_eq!(
        act(&t, &frame(A, B), 1, 1),
        Action::Drop(DropReason::NoUplink)
    );
    assert!(matches!(
        tables_of(
            Mode::Xconnect,
            &vlan_policies(&[Some(PortVlans::Access(10)), None]),
            16
        ),
        Err(TablesError::UntouchedVlans(Mode::Xconnect))
    ));
}

#[test]
fn passthru_gives_the_uplink_to_one_downlink() {
    let mut policies = vec![PortPolicy::default(); 2];
    policies[1].role = Role::Uplink;
    policies[0].allowed_sources = vec![A];
    let t = tables_of(Mode::Passthru, &policies, 16).unwrap();
    assert_eq!(act(&t, &frame(Mac::BROADCAST, A), 0, 1), Action::Forward(1));
    assert_eq!(act(&t, &frame(C, B), 1, 1), Action::Forward(0));
    assert_eq!(
        act(&t, &frame(B, C), 0, 1),
        Action::Drop(DropReason::Spoofed)
    );
    assert_eq!(t.fdb.len(), 0, "nothing is learned");
    assert!(matches!(
        Tables::with_ports(Mode::Passthru, 2, 16),
        Err(TablesError::NeedsUplink(Mode::Passthru))
    ));
    let mut three = vec![PortPolicy::default(); 3];
    three[2].role = Role::Uplink;
    assert!(tables_of(Mode::Passthru, &three, 16).is_err());
}

/// A MAC from a pool of 24, so that frames meet stations seen before: unicast or
/// multicast (the first byte's low bit), all-zero now and then.
fn any_mac() -> impl Strategy<Value = Mac> {
    (0u8..4, 0u8..6).prop_map(|(first, last)| Mac([first, 0, 0, 0, 0, last]))
}

/// One port's VLAN setting: none, access to VLAN 1-3, or a trunk of some of VLANs 1-3
/// with or without VLAN 1 native.
fn any_port_vlans() -> impl Strategy<Value = Option<PortVlans>> {
    prop_oneof![
        Just(None),
        (1..=3u16).prop_map(|v| Some(PortVlans::Access(v))),
        (any::<[bool; 3]>(), any::<bool>()).prop_map(|(carried, native)| {
            Some(PortVlans::Trunk {
                tagged: (1..=3).filter(|&v| carried[usize::from(v) - 1]).collect(),
                native: native.then_some(1),
            })
        }),
    ]
}

/// A bridge for the property tests.
#[derive(Clone, Debug)]
struct Bridge {
    mode: Mode,
    /// Which port is the uplink.
    uplink: usize,
    /// One per port.
    policies: Vec<PortPolicy>,
    /// A mirror's monitor port, if there is one (never the uplink).
    monitor: Option<usize>,
}

prop_compose! {
    /// 1-8 ports in `veb`, `vepa` or `private` mode, one of them the uplink, about a
    /// quarter with hairpin on; VLAN-unaware in half the cases, a random VLAN setting
    /// per port in the other half; in a third of the cases, another port a mirror's
    /// monitor port.
    fn any_bridge()(ports in 1..=8usize)(
        mode in prop_oneof![Just(Mode::Veb), Just(Mode::Vepa), Just(Mode::Private)],
        uplink in 0..ports,
        hairpin in prop::collection::vec(prop::bool::weighted(0.25), ports),
        vlans in prop_oneof![
            Just(vec![None; ports]),
            prop::collection::vec(any_port_vlans(), ports),
        ],
        monitor in prop::option::weighted(1.0 / 3.0, 0..ports),
    ) -> Bridge {
        let mut policies: Vec<PortPolicy> = hairpin
            .into_iter()
            .zip(vlans)
            .map(|(hairpin, vlans)| PortPolicy {
                hairpin,
                vlans,
                ..PortPolicy::default()
            })
            .collect();
        policies[uplink].role = Role::Uplink;
        let monitor = monitor.filter(|&m| m != uplink);
        if let Some(m) = monitor {
            policies[m].monitor = true;
        }
        Bridge { mode, uplink, policies, monitor }
    }
}

/// One frame arriving at the bridge.
#[derive(Clone, Debug)]
struct Arrival {
    dst: Mac,
    src: Mac,
    /// The VLAN of its 802.1Q tag (0: a priority tag), if it has one.
    vid: Option<VlanId>,
    /// Its length: the 60-byte frame (64 tagged) is cut there.
    len: usize,
    /// The port it arrives on, of however many the bridge has.
    ingress: prop::sample::Index,
    now: u32,
}

impl Arrival {
    fn bytes(&self) -> Vec<u8> {
        let mut f = match self.vid {
            Some(vid) => tagged(self.dst, self.src, vid),
            None => frame(self.dst, self.src),
        };
        f.truncate(self.len);
        f
    }
}

prop_compose! {
    /// A frame between MACs of the pool, tagged with VLAN 0-3 one time in three, cut
    /// to 0-79 bytes (whole, a bare header or a runt), at one of four instants.
    fn any_arrival()(
        dst in any_mac(),
        src in any_mac(),
        vid in prop::option::weighted(1.0 / 3.0, 0..4u16),
        len in 0..80usize,
        ingress in any::<prop::sample::Index>(),
        now in 0..4u32,
    ) -> Arrival {
        Arrival { dst, src, vid, len, ingress, now }
    }
}

proptest! {
    // A case runs up to 200 frames through one bridge, so that later frames find the
    // stations earlier ones taught it; 256 cases take well under a second in a debug
    // build.
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the bridge and the frames: a frame is admitted only in a VLAN its port
    /// carries and leaves only by ports of that VLAN, never back by its ingress port
    /// unless that has hairpin on, never by a port the bridge does not have or by a
    /// monitor port (whose own frames are all dropped); in `vepa`
    /// and `private` mode a downlink's frame goes to the uplink alone, and a flood
    /// never goes back up the uplink (unless it has hairpin on).
    #[test]
    fn random_frames_respect_every_modes_invariants(
        bridge in any_bridge(),
        arrivals in prop::collection::vec(any_arrival(), 1..200),
    ) {
        let Bridge { mode, uplink, policies, monitor } = &bridge;
        let (mode, uplink, ports) = (*mode, *uplink as PortId, policies.len());
        let monitor = monitor.map(|m| m as PortId);
        let t = tables_of(mode, policies, 256).expect("a valid bridge");
        // Which VLANs a port carries, from the policies rather than the tables.
        let aware = policies.iter().any(|p| p.vlans.is_some());
        let carries = |p: PortId, vid: VlanId| {
            !aware
                || policies[usize::from(p)]
                    .vlans
                    .clone()
                    .unwrap_or(PortVlans::Access(vlan::DEFAULT_VLAN))
                    .vlans()
                    .any(|v| v == vid)
        };
        for a in &arrivals {
            let ingress = a.ingress.index(ports) as PortId;
            let back_ok = policies[usize::from(ingress)].hairpin;
            let to_uplink_only = mode != Mode::Veb && ingress != uplink;
            let verdict = decide(&t, &a.bytes(), ingress, a.now);
            let vid = verdict.vlan.vid;
            if monitor == Some(ingress) {
                prop_assert_eq!(
                    verdict.action,
                    Action::Drop(DropReason::Monitor),
                    "{}: a monitor port's frame went on", mode
                );
            }
            if !matches!(verdict.action, Action::Drop(_)) {
                prop_assert!(carries(ingress, vid), "{mode}: admitted outside its VLANs");
            }
            match verdict.action {
                Action::Forward(p) => {
                    prop_assert!(usize::from(p) < ports, "{mode}: to port {p} of {ports}");
                    prop_assert!(carries(p, vid), "{mode}: forwarded out of VLAN {vid}");
                    prop_assert!(
                        p != ingress || back_ok,
                        "{mode}: back to ingress without hairpin"
                    );
                    prop_assert!(
                        !to_uplink_only || p == uplink,
                        "{mode}: downlink frame not to the uplink"
                    );
                    prop_assert!(monitor != Some(p), "{mode}: forwarded to a monitor port");
                }
                Action::Flood(set) => {
                    prop_assert!(
                        set.iter().all(|p| usize::from(p) < ports),
                        "{mode}: flooded to {set:?} of {ports} ports"
                    );
                    prop_assert!(
                        set.iter().all(|p| carries(p, vid)),
                        "{mode}: flooded out of VLAN {vid}"
                    );
                    prop_assert!(!to_uplink_only, "{mode}: a downlink frame flooded");
                    prop_assert!(
                        monitor.is_none_or(|m| !set.contains(m)),
                        "{mode}: flooded to a monitor port"
                    );
                    prop_assert!(
                        !set.contains(ingress) || back_ok,
                        "{mode}: flooded back to ingress without hairpin"
                    );
                    if mode != Mode::Veb {
                        prop_assert!(
                            !set.contains(uplink) || back_ok,
                            "{mode}: flooded back up the uplink"
                        );
                    }
                }
                Action::Drop(_) => {}
            }
        }
    }

    /// The kernel fast path floods a VLAN's frame over the VLAN's flood domain, less
    /// the ingress port unless it has hairpin on: that is exactly the set `decide`
    /// floods to (for a source learned on the ingress, which is all the fast path
    /// floods), and none is `no_egress`, whatever the bridge and the frames.
    #[test]
    fn a_flood_domain_less_the_ingress_is_what_decide_floods_to(
        bridge in any_bridge(),
        arrivals in prop::collection::vec(any_arrival(), 1..200),
    ) {
        let Bridge { mode, policies, .. } = &bridge;
        let (mode, ports) = (*mode, policies.len());
        let t = tables_of(mode, policies, 256).expect("a valid bridge");
        let domains = crate::switch::flood_domains(&t);
        prop_assert!(mode == Mode::Veb || domains.is_empty(), "{mode}: kernel floods");
        for a in &arrivals {
            let ingress = a.ingress.index(ports) as PortId;
            let verdict = decide(&t, &a.bytes(), ingress, a.now);
            let flooded = match verdict.action {
                Action::Flood(set) => set,
                Action::Drop(DropReason::NoEgress) => PortSet::EMPTY,
                _ => continue,
            };
            if mode != Mode::Veb {
                continue;
            }
            let vid = verdict.vlan.vid;
            let domain = domains
                .iter()
                .find(|(v, _)| *v == vid)
                .map(|(_, set)| *set)
                .expect("every VLAN a frame is admitted in has a domain");
            let expected = if policies[usize::from(ingress)].hairpin {
                domain
            } else {
                domain.without(ingress)
            };
            prop_assert_eq!(flooded, expected, "VLAN {}, from port {}", vid, ingress);
        }
    }
}
