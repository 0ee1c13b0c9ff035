//! Reload over the fake kernel: what a good reload changes (only what the file changed,
//! in the lifecycle's order), and that a refused one, or one the kernel fails half-way,
//! leaves the ports, their VLANs, static and learned MAC entries, counters and origins,
//! and what the XDP program and the workers hold, as they were; and, where undoing
//! fails, what the answer says is left.
use std::collections::BTreeMap;

use hairpin_common::port_flags::{PASS_HOST_MAC, STEER};

use super::{
    MAC_A, MAC_B, attach_calls, config, detach_calls, downlinks, kernel, port, ports, two_ports,
};
use crate::{
    control::{
        bridge::{
            Bridge, BridgeError,
            fake::{Call, FakeKernel},
        },
        config::{BridgeConfig, PortConfig},
        protocol::PortInfo,
        xdp::XdpError,
    },
    datapath::DatapathError,
    switch::{
        PortId, Role,
        fdb::{Entry, Learned},
        vlan::PortVlans,
    },
    wire::Mac,
};

const MAC_C: Mac = Mac([0x02, 0, 0, 0, 0xcc, 3]);

/// Everything a reload may change, as a test sees it.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    /// As `show ports` lists them: settings, state, origin, counters.
    ports: Vec<PortInfo>,
    /// The MAC table, static and learned, with their stamps.
    fdb: Vec<Entry>,
    bound: Vec<(u32, u32)>,
    port_map: Vec<(u32, u32)>,
    xdp: Vec<u32>,
    served: Vec<(PortId, u32)>,
    reserved: BTreeMap<u32, u32>,
    /// The departed list's names.
    departed: Vec<String>,
}

fn seen(bridge: &Bridge, kernel: &FakeKernel) -> Seen {
    let mut fdb = bridge.fdb().entries();
    fdb.sort_by_key(|e| (e.vlan, e.mac.0, e.port));
    Seen {
        ports: bridge.ports(),
        fdb,
        bound: kernel.bound(),
        port_map: kernel.port_map(),
        xdp: kernel.xdp_attached(),
        served: kernel.served(),
        reserved: kernel.reserved(),
        departed: bridge
            .stats()
            .departed
            .into_iter()
            .map(|d| d.name)
            .collect(),
    }
}

/// A VLAN-aware bridge: `p0` and `p1` in VLAN 10 (`p1` with the static MAC A), `p2` in
/// VLAN 20; B learned on `p0` and C on `p2` (at table second 5), and counters: `p1`
/// has received 4 frames, `p2` 7 (since it was attached at 3).
fn vlan_bridge(kernel: &FakeKernel) -> Bridge {
    kernel.set_received(2, 3);
    let mut bridge = Bridge::with_kernel(config(vlan_ports()), Box::new(kernel.clone())).unwrap();
    bridge.fdb().learn(10, MAC_B, 0, 5);
    bridge.fdb().learn(20, MAC_C, 2, 5);
    // p2 refused a station at a limit of one: its count of refusals is one of the
    // counters a reload undone must give back.
    assert_eq!(
        bridge.fdb().learn_at_most(20, MAC_A, 2, 5, 1),
        Learned::Limited
    );
    kernel.set_received(1, 4);
    kernel.set_received(2, 10);
    bridge.tick();
    kernel.take_calls();
    bridge
}

/// The ports of [`vlan_bridge`].
fn vlan_ports() -> Vec<PortConfig> {
    let mut file = downlinks(&["p0", "p1", "p2"]);
    file[0].policy.vlans = Some(PortVlans::Access(10));
    file[1].policy.vlans = Some(PortVlans::Access(10));
    file[1].static_macs = vec![MAC_A];
    file[2].policy.vlans = Some(PortVlans::Access(20));
    file
}

/// A downlink `name` in access VLAN `vid`.
fn access(name: &str, vid: u16) -> PortConfig {
    let mut p = PortConfig::downlink(name);
    p.policy.vlans = Some(PortVlans::Access(vid));
    p
}

/// The reload: `p2` removed, `p1` moved to VLAN 30, `p3` added, and `gone0`,
/// an interface that does not exist, added too (after `p3`).
fn with_a_missing_interface() -> BridgeConfig {
    let mut file = vlan_ports();
    file.pop();
    file[1].policy.vlans = Some(PortVlans::Access(30));
    file.push(access("p3", 30));
    file.push(access("gone0", 30));
    config(file)
}

/// Whether every call in `calls` only asks (looks an interface or a link up, or asks
/// the workers whether they would admit a port).
fn only_asked(calls: &[Call]) -> bool {
    calls.iter().all(|c| {
        matches!(
            c,
            Call::Lookup(_) | Call::LinkByName(_) | Call::Admit { .. } | Call::Device(_)
        )
    })
}

#[test]
fn reload_removes_changes_and_adds_only_what_the_file_changed() {
    let kernel = kernel();
    let mut bridge = Bridge::with_kernel(
        config(downlinks(&["p0", "p1", "p2"])),
        Box::new(kernel.clone()),
    )
    .unwrap();
    assert_eq!(bridge.add_port(PortConfig::downlink("p3")).unwrap(), 3);
    kernel.take_calls();
    let mut new = downlinks(&["p0", "p1", "p4"]);
    new[1].policy.hairpin = true;
    let answer = bridge.reload(config(new)).unwrap();
    assert_eq!(answer, "reloaded: p2 removed, p1 changed, p4 added");
    // First checked (p4 there, as a link too, and admitted), then applied.
    let mut expected = vec![
        Call::Lookup("p4".into()),
        Call::LinkByName("p4".into()),
        Call::Admit { id: 4, queues: 1 },
    ];
    expected.extend(detach_calls(2, 12, 1, &[0, 1, 3], 0));
    expected.extend([
        Call::SetTables(vec![0, 1, 3]),
        // p1's change: new tables, its sockets untouched.
        Call::SetTables(vec![0, 1, 3]),
        Call::LinkByName("p4".into()),
        Call::Admit { id: 4, queues: 1 },
    ]);
    expected.extend(attach_calls(4, 14, 1, &[0, 1, 3, 4]));
    assert_eq!(kernel.take_calls(), expected);
    assert_eq!(
        ports(&bridge),
        [
            port("p0", 0, "up"),
            port("p1", 1, "up"),
            port("p3", 3, "up"),
            port("p4", 4, "up")
        ]
    );
    let infos = bridge.ports();
    assert!(infos[1].hairpin);
    assert_eq!(
        infos[2].origin, "runtime",
        "a run-time port the file does not name"
    );
    // The removed port's counters are among the departed once the reload stands.
    let departed = bridge.stats().departed;
    assert_eq!(
        departed.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["p2"]
    );
    // The same file again changes nothing.
    let mut same = downlinks(&["p0", "p1", "p4"]);
    same[1].policy.hairpin = true;
    assert_eq!(
        bridge.reload(config(same)).unwrap(),
        "reloaded: nothing changed"
    );
    assert_eq!(kernel.take_calls(), []);
}

#[test]
fn reload_refuses_what_needs_a_restart_and_changes_nothing() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    let mut new = config(downlinks(&["p0"]));
    new.fdb_capacity = 1024;
    let e = bridge.reload(new).unwrap_err();
    assert!(e.to_string().contains("need a restart"), "{e}");
    assert!(e.to_string().ends_with("; nothing changed"), "{e}");
    assert_eq!(kernel.take_calls(), []);
    assert_eq!(ports(&bridge).len(), 2);
}

#[test]
fn a_role_change_on_reload_reattaches_the_port_in_a_new_slot() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    let mut new = downlinks(&["p0", "p1"]);
    new[1].policy.role = Role::Uplink;
    assert_eq!(
        bridge.reload(config(new)).unwrap(),
        "reloaded: p1 re-attached"
    );
    let calls = kernel.take_calls();
    let mut expected = vec![Call::Lookup("p1".into()), Call::LinkByName("p1".into())];
    expected.extend(detach_calls(1, 11, 1, &[0], 0));
    expected.extend([
        Call::SetTables(vec![0]),
        Call::LinkByName("p1".into()),
        Call::Admit { id: 2, queues: 1 },
        Call::Open(2),
        Call::ReserveQueues { slot: 2, queues: 1 },
        Call::Bind { slot: 2, queue: 0 },
        Call::Attach(2),
        Call::SetTables(vec![0, 2]),
        // The uplink's addresses, then its entry passes the host's frames up.
        Call::Addresses(11),
        Call::ConfigurePort {
            ifindex: 11,
            slot: 2,
            flags: STEER | PASS_HOST_MAC,
        },
        Call::XdpAttach(11),
        Call::SetTables(vec![0, 2]),
    ]);
    assert_eq!(calls, expected);
    assert_eq!(ports(&bridge), [port("p0", 0, "up"), port("p1", 2, "up")]);
}

#[test]
fn a_missing_interface_refuses_the_whole_reload_before_anything_changes() {
    let kernel = kernel();
    let mut bridge = vlan_bridge(&kernel);
    let before = seen(&bridge, &kernel);
    assert_eq!(before.ports[2].counters.rx_packets, 7);
    let e = bridge.reload(with_a_missing_interface()).unwrap_err();
    assert!(matches!(e, BridgeError::ReloadRefused(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "interface gone0: no such device in this network namespace; nothing changed"
    );
    // p3 was checked, then gone0 looked for: nothing else was asked or done.
    assert_eq!(
        kernel.take_calls(),
        [
            Call::Lookup("p3".into()),
            Call::LinkByName("p3".into()),
            Call::Lookup("gone0".into()),
        ]
    );
    // p2 still there with its counters and its station, p1 still in VLAN 10 with its
    // static MAC, p3 not added, nothing departed.
    assert_eq!(seen(&bridge, &kernel), before);
    // The file without the missing interface applies, p3 in the slot it would have had.
    let mut good = with_a_missing_interface();
    good.ports.pop();
    assert_eq!(
        bridge.reload(good).unwrap(),
        "reloaded: p2 removed, p1 changed, p3 added"
    );
    assert_eq!(
        ports(&bridge),
        [
            port("p0", 0, "up"),
            port("p1", 1, "up"),
            port("p3", 3, "up")
        ]
    );
    assert_eq!(bridge.ports()[1].vlans.as_deref(), Some("access VLAN 30"));
    assert_eq!(super::entries_of(&bridge, 1), [(MAC_A, true)]);
}

#[test]
fn a_port_with_more_queues_than_workers_refuses_the_whole_reload() {
    let kernel = kernel();
    let mut bridge = vlan_bridge(&kernel);
    let before = seen(&bridge, &kernel);
    let mut file = vlan_ports();
    file.remove(0);
    file.push(access("big", 10));
    let e = bridge.reload(config(file)).unwrap_err();
    assert!(
        matches!(&e, BridgeError::ReloadRefused(inner)
            if matches!(**inner, BridgeError::Datapath(DatapathError::UnservedQueues { has: 4, workers: 2, .. }))),
        "{e:?}"
    );
    assert_eq!(kernel.take_calls(), [Call::Lookup("big".into())]);
    assert_eq!(seen(&bridge, &kernel), before, "p0 not removed");
}

#[test]
fn a_port_the_workers_cannot_admit_refuses_the_whole_reload() {
    let kernel = kernel();
    let mut bridge = vlan_bridge(&kernel);
    let before = seen(&bridge, &kernel);
    kernel.fail(
        |c| matches!(c, Call::Admit { .. }),
        DatapathError::Cores("no frames to promise".into()),
    );
    let mut file = vlan_ports();
    file[1].policy.hairpin = true;
    file.push(access("p3", 20));
    let e = bridge.reload(config(file.clone())).unwrap_err();
    assert!(matches!(e, BridgeError::ReloadRefused(_)), "{e:?}");
    assert!(e.to_string().ends_with("; nothing changed"), "{e}");
    assert_eq!(
        kernel.take_calls(),
        [
            Call::Lookup("p3".into()),
            Call::LinkByName("p3".into()),
            Call::Admit { id: 3, queues: 1 },
        ]
    );
    assert_eq!(seen(&bridge, &kernel), before, "p1 not changed");
    // Admitted now: applied whole.
    assert_eq!(
        bridge.reload(config(file)).unwrap(),
        "reloaded: p1 changed, p3 added"
    );
}

#[test]
fn a_port_refused_admission_after_the_removals_puts_them_back() {
    let kernel = kernel();
    let mut bridge = vlan_bridge(&kernel);
    let before = seen(&bridge, &kernel);
    // Refused before the removals and again after them.
    for _ in 0..2 {
        kernel.fail(
            |c| matches!(c, Call::Admit { .. }),
            DatapathError::Cores("no frames to promise".into()),
        );
    }
    let mut file = vlan_ports();
    file.pop();
    file.push(access("p3", 20));
    let e = bridge.reload(config(file)).unwrap_err();
    assert!(matches!(e, BridgeError::ReloadUndone(_)), "{e:?}");
    assert!(
        e.to_string()
            .ends_with("; the reload was undone: nothing changed"),
        "{e}"
    );
    let calls = kernel.take_calls();
    // p2 went, p3 was refused, p2 came back in its slot without being admitted again.
    let refused = calls
        .iter()
        .rposition(|c| *c == Call::Admit { id: 3, queues: 1 })
        .unwrap();
    assert!(calls[..refused].contains(&Call::XdpDetach(12)), "{calls:?}");
    assert!(calls[refused..].contains(&Call::XdpAttach(12)), "{calls:?}");
    assert!(
        !calls.contains(&Call::Admit { id: 2, queues: 1 }),
        "{calls:?}"
    );
    // Its counters go on from where they were (7), its station is back.
    assert_eq!(seen(&bridge, &kernel), before);
    kernel.set_received(2, 12);
    assert_eq!(bridge.ports()[2].counters.rx_packets, 9);
}

#[test]
fn a_kernel_failure_midway_undoes_removals_changes_and_additions() {
    let kernel = kernel();
    kernel.add_link("p5", 15, 1);
    let mut bridge = vlan_bridge(&kernel);
    assert_eq!(bridge.add_port(access("p3", 20)).unwrap(), 3);
    kernel.take_calls();
    let before = seen(&bridge, &kernel);
    // p2 removed, p1 moved to VLAN 30 without its static MAC, p3 (a run-time port)
    // named by the file, p4 and p5 added: the XDP program refuses p5.
    let mut file = vlan_ports();
    file.pop();
    file[1].policy.vlans = Some(PortVlans::Access(30));
    file[1].static_macs.clear();
    file.extend([access("p3", 20), access("p4", 30), access("p5", 30)]);
    kernel.fail(
        |c| *c == Call::XdpAttach(15),
        XdpError::Occupied {
            port: "p5".into(),
            prog_id: Some(42),
        },
    );
    let e = bridge.reload(config(file.clone())).unwrap_err();
    assert!(matches!(e, BridgeError::ReloadUndone(_)), "{e:?}");
    let message = e.to_string();
    assert!(
        message.starts_with("attaching XDP to p5: another XDP program (id 42)")
            && message.ends_with("; the reload was undone: nothing changed"),
        "{message}"
    );
    // Everything applied was undone: p5 and p4 detached, p3 a run-time port again, p1
    // back in VLAN 10 with its static MAC, p2 attached again in slot 2 with its
    // counters and station; nothing departed.
    let calls = kernel.take_calls();
    let failed = calls
        .iter()
        .position(|c| *c == Call::XdpAttach(15))
        .unwrap();
    let undo = &calls[failed + 1..];
    let at = |c: &Call| undo.iter().position(|x| x == c).unwrap();
    assert!(
        at(&Call::XdpDetach(15)) < at(&Call::XdpDetach(14)),
        "{undo:?}"
    );
    assert!(
        at(&Call::XdpDetach(14)) < at(&Call::XdpAttach(12)),
        "{undo:?}"
    );
    assert_eq!(seen(&bridge, &kernel), before);
    assert_eq!(bridge.runtime_ports().collect::<Vec<_>>(), ["p3"]);
    // Without the failure, the same file applies, in the slots it would have had.
    assert_eq!(
        bridge.reload(config(file)).unwrap(),
        "reloaded: p2 removed, p1 changed, p4 added, p5 added"
    );
    assert_eq!(
        ports(&bridge),
        [
            port("p0", 0, "up"),
            port("p1", 1, "up"),
            port("p3", 3, "up"),
            port("p4", 4, "up"),
            port("p5", 5, "up")
        ]
    );
    assert_eq!(bridge.runtime_ports().count(), 0);
    assert_eq!(bridge.stats().departed[0].name, "p2");
}

#[test]
fn a_changed_max_macs_or_vlan_changes_only_that() {
    let kernel = kernel();
    let mut bridge = vlan_bridge(&kernel);
    let mut expected = seen(&bridge, &kernel);
    let mut file = vlan_ports();
    file[1].policy.max_macs = 7;
    assert_eq!(
        bridge.reload(config(file.clone())).unwrap(),
        "reloaded: p1 changed"
    );
    // New tables, nothing else: no socket, program or port map entry touched.
    assert_eq!(kernel.take_calls(), [Call::SetTables(vec![])]);
    expected.ports[1].max_macs = 7;
    assert_eq!(seen(&bridge, &kernel), expected);
    // p1 into VLAN 20: its static MAC follows it there; the others' stations and
    // counters stay.
    file[1].policy.vlans = Some(PortVlans::Access(20));
    assert_eq!(bridge.reload(config(file)).unwrap(), "reloaded: p1 changed");
    assert_eq!(kernel.take_calls(), [Call::SetTables(vec![])]);
    expected.ports[1].vlans = Some("access VLAN 20".into());
    expected.fdb.retain(|e| e.port != 1);
    expected.fdb.push(Entry {
        vlan: 20,
        mac: MAC_A,
        port: 1,
        stamp: 0,
        is_static: true,
    });
    expected.fdb.sort_by_key(|e| (e.vlan, e.mac.0, e.port));
    assert_eq!(seen(&bridge, &kernel), expected);
}

#[test]
fn an_undo_that_fails_says_which_port_is_left_absent() {
    let kernel = kernel();
    let mut bridge = vlan_bridge(&kernel);
    let mut file = vlan_ports();
    file.pop();
    file.push(access("p3", 20));
    // p3's attach fails, and so does p2's, attached again to undo its removal.
    for ifindex in [13, 12] {
        kernel.fail(
            move |c| *c == Call::XdpAttach(ifindex),
            XdpError::OutOfRange { slot: 9, queue: 9 },
        );
    }
    let e = bridge.reload(config(file)).unwrap_err();
    assert!(matches!(e, BridgeError::ReloadPartlyUndone { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "port slot 9 has no queue 9 in the XDP maps; undoing the reload left p2 absent in \
         slot 2: attaching it again failed: port slot 9 has no queue 9 in the XDP maps; \
         everything else is as before the reload"
    );
    // As the answer says: p2 configured and absent, p3 not there; nothing departed.
    assert_eq!(
        ports(&bridge),
        [
            port("p0", 0, "up"),
            port("p1", 1, "up"),
            port("p2", 2, "absent")
        ]
    );
    assert_eq!(bridge.ports()[2].origin, "config");
    assert!(bridge.stats().departed.is_empty());
    assert_eq!(kernel.xdp_attached(), [10, 11]);
    // As any absent port, it is attached again when its interface next changes.
    kernel.change_link("p2", |_| {});
    bridge.tick();
    assert_eq!(ports(&bridge)[2], port("p2", 2, "up"));
}

#[test]
fn a_role_change_in_xconnect_mode_is_refused_before_anything_changes() {
    let kernel = kernel();
    let mut c = config(downlinks(&["p0", "p1"]));
    c.mode = crate::switch::Mode::Xconnect;
    let mut bridge = Bridge::with_kernel(c.clone(), Box::new(kernel.clone())).unwrap();
    kernel.take_calls();
    let before = seen(&bridge, &kernel);
    c.ports[1].policy.role = Role::Uplink;
    let e = bridge.reload(c).unwrap_err();
    assert_eq!(
        e.to_string(),
        "p1: xconnect mode has exactly its two ports: changing a port's role needs a \
         restart; nothing changed"
    );
    assert!(only_asked(&kernel.take_calls()));
    assert_eq!(seen(&bridge, &kernel), before);
}
