//! The bridge over the fake kernel (`fake.rs`), without root: the order of its kernel
//! calls when a port comes and goes (at start, at run time, when its interface vanishes
//! or loses its carrier), what a refused or failed port leaves behind (nothing), the MAC
//! table's static and learned entries, and stop. Reload, all or nothing, has its own
//! file (`tests/reload.rs`), and so do port mirrors (`tests/mirror.rs`), storm
//! control and policing (`tests/meters.rs`) and the IP source guard's maps
//! (`tests/guard.rs`).
use std::net::IpAddr;

use hairpin_common::port_flags::{PASS_HOST_MAC, STEER};

use super::{
    Bridge, BridgeError,
    fake::{Call, FakeKernel},
};
use crate::{
    control::{
        config::{BridgeConfig, PortConfig},
        netdev::XDP_ACT_NDO_XMIT,
        netlink::Change,
        port::PortError,
        xdp::{FastPath, XdpError},
    },
    datapath::{DatapathConfig, DatapathError, ZeroCopy},
    switch::{PortId, Role},
    wire::Mac,
};

mod guard;
mod meters;
mod mirror;
mod reload;

const MAC_A: Mac = Mac([0x02, 0, 0, 0, 0xaa, 1]);
const MAC_B: Mac = Mac([0x02, 0, 0, 0, 0xbb, 2]);

/// A kernel with interfaces `p0` (ifindex 10, two RX queues), `p1` to `p4` (11 to 14,
/// one queue each) and `big` (20, four queues).
fn kernel() -> FakeKernel {
    let kernel = FakeKernel::default();
    kernel.add_link("p0", 10, 2);
    for i in 1..=4 {
        kernel.add_link(&format!("p{i}"), 10 + i, 1);
    }
    kernel.add_link("big", 20, 4);
    kernel
}

/// A `veb` bridge of `ports`: two workers (`p0` has two queues), copy mode (the netdev
/// family is not asked), no fast path.
fn config(ports: Vec<PortConfig>) -> BridgeConfig {
    BridgeConfig {
        ports,
        cores: Some(vec![0, 0]),
        fast_path: FastPath::Off,
        datapath: DatapathConfig {
            zero_copy: ZeroCopy::Off,
            ..DatapathConfig::default()
        },
        ..BridgeConfig::default()
    }
}

fn downlinks(names: &[&str]) -> Vec<PortConfig> {
    names.iter().map(|n| PortConfig::downlink(n)).collect()
}

/// The bridge of `p0` and `p1` over `kernel`, the calls of its start forgotten.
fn two_ports(kernel: &FakeKernel) -> Bridge {
    let bridge = Bridge::with_kernel(config(downlinks(&["p0", "p1"])), Box::new(kernel.clone()))
        .expect("the fake kernel starts it");
    kernel.take_calls();
    bridge
}

/// (name, slot, state) of every port.
fn ports(bridge: &Bridge) -> Vec<(String, PortId, String)> {
    bridge
        .ports()
        .into_iter()
        .map(|p| (p.name, p.slot, p.state))
        .collect()
}

fn port(name: &str, slot: PortId, state: &str) -> (String, PortId, String) {
    (name.to_owned(), slot, state.to_owned())
}

/// The calls that attach port `id` (interface `name`, `ifindex`, `queues` RX queues)
/// after its admission, the tables then sending to `up`.
fn attach_calls(id: PortId, ifindex: u32, queues: u32, up: &[PortId]) -> Vec<Call> {
    let slot = u32::from(id);
    let mut calls = vec![Call::Open(id), Call::ReserveQueues { slot, queues }];
    calls.extend((0..queues).map(|queue| Call::Bind { slot, queue }));
    calls.extend([
        Call::Attach(id),
        Call::SetTables(up.to_vec()),
        Call::ConfigurePort {
            ifindex,
            slot,
            flags: STEER,
        },
        Call::XdpAttach(ifindex),
        Call::SetTables(up.to_vec()),
    ]);
    calls
}

/// The calls that detach port `id` (`ifindex`, `queues` RX queues) while it has
/// `entries` MAC table entries, the tables then sending to `up`.
fn detach_calls(id: PortId, ifindex: u32, queues: u32, up: &[PortId], entries: usize) -> Vec<Call> {
    let slot = u32::from(id);
    let mut calls = vec![Call::ForgetPort(ifindex), Call::XdpDetach(ifindex)];
    calls.extend((0..queues).map(|queue| Call::Unbind { slot, queue }));
    calls.extend([
        Call::SetTables(up.to_vec()),
        Call::Detach { id, entries },
        Call::ReleaseQueues(slot),
    ]);
    calls
}

fn entries_of(bridge: &Bridge, id: PortId) -> Vec<(Mac, bool)> {
    let mut entries: Vec<_> = bridge
        .fdb()
        .entries()
        .into_iter()
        .filter(|e| e.port == id)
        .map(|e| (e.mac, e.is_static))
        .collect();
    entries.sort_by_key(|e| e.0.0);
    entries
}

#[test]
fn start_admits_opens_binds_serves_publishes_then_steers_each_port_in_turn() {
    let kernel = kernel();
    let bridge =
        Bridge::with_kernel(config(downlinks(&["p0", "p1"])), Box::new(kernel.clone())).unwrap();
    let mut expected = vec![
        Call::Lookup("p0".into()),
        Call::Lookup("p1".into()),
        Call::LoadProgram,
        Call::OpenRtnetlink,
        Call::StartWorkers(2),
        Call::LinkByName("p0".into()),
        Call::Admit { id: 0, queues: 2 },
    ];
    expected.extend(attach_calls(0, 10, 2, &[0]));
    expected.extend([
        Call::LinkByName("p1".into()),
        Call::Admit { id: 1, queues: 1 },
    ]);
    expected.extend(attach_calls(1, 11, 1, &[0, 1]));
    assert_eq!(kernel.calls(), expected);
    assert_eq!(ports(&bridge), [port("p0", 0, "up"), port("p1", 1, "up")]);
    assert_eq!(kernel.bound(), [(0, 0), (0, 1), (1, 0)]);
    assert_eq!(kernel.port_map(), [(10, 0), (11, 1)]);
    assert_eq!(kernel.xdp_attached(), [10, 11]);
    assert_eq!(kernel.served(), [(0, 2), (1, 1)]);
    assert_eq!(bridge.cores(), [0, 0]);
}

#[test]
fn a_port_added_at_run_time_takes_the_next_slot_and_is_steered_last() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    assert_eq!(bridge.add_port(PortConfig::downlink("p2")).unwrap(), 2);
    let mut expected = vec![
        Call::Lookup("p2".into()),
        Call::LinkByName("p2".into()),
        Call::Admit { id: 2, queues: 1 },
    ];
    expected.extend(attach_calls(2, 12, 1, &[0, 1, 2]));
    assert_eq!(kernel.take_calls(), expected);
    let info = bridge.ports().into_iter().find(|p| p.slot == 2).unwrap();
    assert_eq!(
        (
            info.name.as_str(),
            info.state.as_str(),
            info.origin.as_str()
        ),
        ("p2", "up", "runtime")
    );
    assert_eq!(
        (info.ifindex, info.queues, info.xdp.as_deref()),
        (Some(12), 1, Some("native"))
    );
    assert_eq!(bridge.runtime_ports().collect::<Vec<_>>(), ["p2"]);
    assert_eq!(kernel.served(), [(0, 2), (1, 1), (2, 1)]);
}

#[test]
fn an_unknown_interface_is_refused_after_one_lookup() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    let e = bridge.add_port(PortConfig::downlink("nope0")).unwrap_err();
    assert!(
        matches!(&e, BridgeError::Port(PortError::NoSuchDevice { name }) if name == "nope0"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "interface nope0: no such device in this network namespace"
    );
    assert_eq!(kernel.take_calls(), [Call::Lookup("nope0".into())]);
    assert_eq!(ports(&bridge), [port("p0", 0, "up"), port("p1", 1, "up")]);
    // Refused before a slot was taken: the next port gets slot 2.
    assert_eq!(bridge.add_port(PortConfig::downlink("p2")).unwrap(), 2);
}

#[test]
fn a_port_with_more_queues_than_workers_is_refused_after_one_lookup() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    let e = bridge.add_port(PortConfig::downlink("big")).unwrap_err();
    assert!(
        matches!(
            &e,
            BridgeError::Datapath(DatapathError::UnservedQueues { port, has: 4, workers: 2 })
                if port == "big"
        ),
        "{e:?}"
    );
    assert_eq!(kernel.take_calls(), [Call::Lookup("big".into())]);
    assert_eq!(ports(&bridge).len(), 2);
    // A port of the same name, or a second refusal, finds nothing left over.
    assert!(bridge.add_port(PortConfig::downlink("big")).is_err());
}

#[test]
fn a_port_the_workers_cannot_admit_leaves_nothing_and_its_slot_free() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    kernel.fail(
        |c| matches!(c, Call::Admit { .. }),
        DatapathError::Cores("no frames to promise".into()),
    );
    let e = bridge.add_port(PortConfig::downlink("p2")).unwrap_err();
    assert!(
        matches!(e, BridgeError::Datapath(DatapathError::Cores(_))),
        "{e:?}"
    );
    // Nothing was made; the slot is forgotten and the tables published without it.
    assert_eq!(
        kernel.take_calls(),
        [
            Call::Lookup("p2".into()),
            Call::LinkByName("p2".into()),
            Call::Admit { id: 2, queues: 1 },
            Call::SetTables(vec![0, 1]),
        ]
    );
    assert_eq!(ports(&bridge), [port("p0", 0, "up"), port("p1", 1, "up")]);
    assert_eq!(kernel.bound(), [(0, 0), (0, 1), (1, 0)]);
    assert_eq!(
        kernel.reserved().keys().copied().collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(kernel.xdp_attached(), [10, 11]);
    // Slots are reused as late as possible: the next port takes slot 3, and the
    // refused name can be added again.
    assert_eq!(bridge.add_port(PortConfig::downlink("p2")).unwrap(), 3);
}

#[test]
fn xdp_refused_midway_undoes_the_port_in_the_detach_order() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    kernel.fail(
        |c| *c == Call::XdpAttach(12),
        XdpError::Occupied {
            port: "p2".into(),
            prog_id: Some(42),
        },
    );
    let e = bridge.add_port(PortConfig::downlink("p2")).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "attaching XDP to p2: another XDP program (id 42) is attached to it; \
             hairpin does not replace it"
        ),
        "{e}"
    );
    let calls = kernel.take_calls();
    let failed = calls
        .iter()
        .position(|c| *c == Call::XdpAttach(12))
        .unwrap();
    let mut undo = detach_calls(2, 12, 1, &[0, 1], 0);
    // Then the slot is forgotten.
    undo.push(Call::SetTables(vec![0, 1]));
    assert_eq!(calls[failed + 1..], undo);
    // Nothing of it is left: no socket bound, no program, no port map entry, no queue
    // entries, not served, not listed.
    assert_eq!(kernel.bound(), [(0, 0), (0, 1), (1, 0)]);
    assert_eq!(kernel.xdp_attached(), [10, 11]);
    assert_eq!(kernel.port_map(), [(10, 0), (11, 1)]);
    assert_eq!(
        kernel.reserved().keys().copied().collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(kernel.served(), [(0, 2), (1, 1)]);
    assert_eq!(ports(&bridge).len(), 2);
}

#[test]
fn an_occupied_port_names_the_program_the_kernel_reports() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    kernel.change_link("p2", |l| l.xdp_prog_id = Some(77));
    kernel.fail(
        |c| *c == Call::XdpAttach(12),
        XdpError::Occupied {
            port: "p2".into(),
            prog_id: None,
        },
    );
    let e = bridge.add_port(PortConfig::downlink("p2")).unwrap_err();
    assert!(e.to_string().contains("another XDP program (id 77)"), "{e}");
    let calls = kernel.take_calls();
    let failed = calls
        .iter()
        .position(|c| *c == Call::XdpAttach(12))
        .unwrap();
    assert_eq!(calls[failed + 1], Call::LinkByName("p2".into()));
    assert_eq!(kernel.xdp_attached(), [10, 11]);
}

#[test]
fn a_socket_map_refusing_the_second_queue_unbinds_the_first() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    // p0, the port with two queues, comes back in slot 2.
    bridge.remove_port("p0").unwrap();
    kernel.take_calls();
    kernel.fail(
        |c| *c == Call::Bind { slot: 2, queue: 1 },
        XdpError::OutOfRange { slot: 2, queue: 1 },
    );
    let e = bridge.add_port(PortConfig::downlink("p0")).unwrap_err();
    assert_eq!(e.to_string(), "port slot 2 has no queue 1 in the XDP maps");
    assert_eq!(
        kernel.take_calls(),
        [
            Call::Lookup("p0".into()),
            Call::LinkByName("p0".into()),
            Call::Admit { id: 2, queues: 2 },
            Call::Open(2),
            Call::ReserveQueues { slot: 2, queues: 2 },
            Call::Bind { slot: 2, queue: 0 },
            Call::Bind { slot: 2, queue: 1 },
            // Undone as any attached port: the workers, which never had it, are told
            // to let it go all the same.
            Call::ForgetPort(10),
            Call::XdpDetach(10),
            Call::Unbind { slot: 2, queue: 0 },
            Call::Unbind { slot: 2, queue: 1 },
            Call::SetTables(vec![1]),
            Call::Detach { id: 2, entries: 0 },
            Call::ReleaseQueues(2),
            Call::SetTables(vec![1]),
        ]
    );
    assert_eq!(kernel.bound(), [(1, 0)]);
    assert_eq!(kernel.reserved().keys().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(ports(&bridge), [port("p1", 1, "up")]);
}

#[test]
fn a_removed_port_leaves_steering_then_forwarding_then_the_workers_then_the_mac_table() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    bridge.fdb().learn(0, MAC_A, 1, 0);
    bridge.fdb().learn(0, MAC_B, 0, 0);
    bridge.remove_port("p1").unwrap();
    // The program lets the port go first (the kernel has it back), then the socket
    // map, then the tables; the workers close its sockets while its entries are still
    // there (frames for its stations are dropped as port_down, not flooded), and they
    // go after.
    let mut expected = detach_calls(1, 11, 1, &[0], 1);
    expected.push(Call::SetTables(vec![0]));
    assert_eq!(kernel.take_calls(), expected);
    assert_eq!(entries_of(&bridge, 1), []);
    assert_eq!(entries_of(&bridge, 0), [(MAC_B, false)]);
    assert_eq!(ports(&bridge), [port("p0", 0, "up")]);
    assert_eq!(kernel.bound(), [(0, 0), (0, 1)]);
    assert_eq!(kernel.xdp_attached(), [10]);
    assert_eq!(kernel.served(), [(0, 2)]);
    // Its counters are kept among the departed.
    assert_eq!(bridge.stats().departed[0].name, "p1");
    // A port that is not there is refused.
    let e = bridge.remove_port("p1").unwrap_err();
    assert_eq!(e.to_string(), "p1 is not a port of this bridge");
}

#[test]
fn carrier_loss_takes_the_port_out_of_the_tables_and_keeps_its_entries() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    bridge.fdb().learn(0, MAC_A, 1, 0);
    kernel.change_link("p1", |l| l.oper_up = false);
    bridge.tick();
    // Nothing is detached: the tables no longer send to it. Its stations' entries stay
    // (README: frames for them are dropped as port_down at once, not flooded).
    assert_eq!(kernel.take_calls(), [Call::SetTables(vec![0])]);
    assert_eq!(ports(&bridge), [port("p0", 0, "up"), port("p1", 1, "down")]);
    assert_eq!(entries_of(&bridge, 1), [(MAC_A, false)]);
    assert_eq!(kernel.bound(), [(0, 0), (0, 1), (1, 0)]);
    kernel.change_link("p1", |l| l.oper_up = true);
    bridge.tick();
    assert_eq!(kernel.take_calls(), [Call::SetTables(vec![0, 1])]);
    assert_eq!(ports(&bridge)[1], port("p1", 1, "up"));
    assert_eq!(entries_of(&bridge, 1), [(MAC_A, false)]);
}

#[test]
fn an_mtu_change_is_told_to_the_workers_and_published() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    kernel.change_link("p1", |l| l.mtu = 9000);
    bridge.tick();
    assert_eq!(
        kernel.take_calls(),
        [
            Call::SetMtu { id: 1, mtu: 9000 },
            Call::SetTables(vec![0, 1])
        ]
    );
    assert_eq!(bridge.ports()[1].mtu, Some(9000));
}

#[test]
fn a_vanished_configuration_port_waits_absent_and_comes_back_without_admission() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    bridge.fdb().learn(0, MAC_A, 1, 0);
    kernel.remove_link("p1");
    bridge.tick();
    // Detached, its entries kept (frames for its stations dropped, not flooded).
    assert_eq!(kernel.take_calls(), detach_calls(1, 11, 1, &[0], 1));
    assert_eq!(
        ports(&bridge),
        [port("p0", 0, "up"), port("p1", 1, "absent")]
    );
    assert_eq!(entries_of(&bridge, 1), [(MAC_A, false)]);
    assert_eq!(kernel.bound(), [(0, 0), (0, 1)]);
    // It comes back under another ifindex: attached again in its slot, not admitted
    // again.
    kernel.add_link("p1", 31, 1);
    kernel.change_link("p1", |_| {});
    bridge.tick();
    let mut expected = vec![Call::Lookup("p1".into()), Call::LinkByName("p1".into())];
    expected.extend(attach_calls(1, 31, 1, &[0, 1]));
    assert_eq!(kernel.take_calls(), expected);
    assert_eq!(ports(&bridge), [port("p0", 0, "up"), port("p1", 1, "up")]);
    assert_eq!(bridge.ports()[1].ifindex, Some(31));
}

#[test]
fn a_vanished_runtime_port_is_forgotten_with_its_entries() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    assert_eq!(bridge.add_port(PortConfig::downlink("p2")).unwrap(), 2);
    bridge.fdb().learn(0, MAC_A, 2, 0);
    kernel.take_calls();
    kernel.remove_link("p2");
    bridge.tick();
    let mut expected = detach_calls(2, 12, 1, &[0, 1], 1);
    expected.push(Call::SetTables(vec![0, 1]));
    assert_eq!(kernel.take_calls(), expected);
    assert_eq!(entries_of(&bridge, 2), []);
    assert_eq!(ports(&bridge).len(), 2);
    // It does not come back by itself.
    kernel.add_link("p2", 32, 1);
    kernel.change_link("p2", |_| {});
    bridge.tick();
    assert_eq!(kernel.take_calls(), []);
}

#[test]
fn a_renamed_interface_stays_the_same_port_under_its_configured_name() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    kernel.change_link("p1", |l| l.name = "renamed".into());
    bridge.tick();
    // Followed by ifindex: nothing to do.
    assert_eq!(kernel.take_calls(), []);
    let info = &bridge.ports()[1];
    assert_eq!(
        (info.name.as_str(), info.state.as_str(), info.ifindex),
        ("p1", "up", Some(11))
    );
    // When it goes under its new name, its port goes absent.
    kernel.remove_link("renamed");
    bridge.tick();
    assert_eq!(kernel.take_calls(), detach_calls(1, 11, 1, &[0], 0));
    assert_eq!(ports(&bridge)[1], port("p1", 1, "absent"));
}

#[test]
fn a_lost_notification_resynchronises_every_port_with_a_dump() {
    let kernel = kernel();
    let mut bridge = two_ports(&kernel);
    // p1 vanishes and p0 loses its carrier, and the kernel drops both notifications.
    kernel.remove_link("p1");
    kernel.change_link("p0", |l| l.oper_up = false);
    kernel.drop_changes();
    kernel.push_change(Change::Overrun);
    bridge.tick();
    let mut expected = vec![Call::Links];
    expected.extend(detach_calls(1, 11, 1, &[0], 0));
    expected.push(Call::SetTables(vec![]));
    assert_eq!(kernel.take_calls(), expected);
    assert_eq!(
        ports(&bridge),
        [port("p0", 0, "down"), port("p1", 1, "absent")]
    );
}

#[test]
fn static_macs_are_entered_at_attach_changed_on_reload_and_go_with_the_port() {
    let kernel = kernel();
    let mut ports_config = downlinks(&["p0", "p1"]);
    ports_config[1].static_macs = vec![MAC_A];
    let mut bridge =
        Bridge::with_kernel(config(ports_config.clone()), Box::new(kernel.clone())).unwrap();
    assert_eq!(entries_of(&bridge, 1), [(MAC_A, true)]);
    // Another port may not have it.
    let mut p2 = PortConfig::downlink("p2");
    p2.static_macs = vec![MAC_A];
    let e = bridge.add_port(p2).unwrap_err();
    assert_eq!(
        e.to_string(),
        "static MAC 02:00:00:00:aa:01 is already on port p1: one station lives on one port"
    );
    // Reload: the old one goes, the new one comes, the port stays attached.
    ports_config[1].static_macs = vec![MAC_B];
    kernel.take_calls();
    assert_eq!(
        bridge.reload(config(ports_config)).unwrap(),
        "reloaded: p1 changed"
    );
    assert_eq!(entries_of(&bridge, 1), [(MAC_B, true)]);
    assert_eq!(kernel.take_calls(), [Call::SetTables(vec![0, 1])]);
    // The operator's entries: added, refused on another port, removed.
    assert_eq!(
        bridge.fdb_add("p0", MAC_A, None).unwrap(),
        "02:00:00:00:aa:01 static on p0 in 1 VLAN(s)"
    );
    assert!(bridge.fdb_add("p1", MAC_A, None).is_err());
    assert_eq!(
        bridge.fdb_del(MAC_A, None).unwrap(),
        "02:00:00:00:aa:01: 1 entry removed"
    );
    // Removed with its port.
    bridge.remove_port("p1").unwrap();
    assert_eq!(entries_of(&bridge, 1), []);
    assert!(bridge.fdb().entries().is_empty());
}

#[test]
fn the_uplink_hands_the_hosts_addresses_to_the_kernel_and_follows_them() {
    let kernel = kernel();
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    let b: IpAddr = "2001:db8::1".parse().unwrap();
    kernel.set_addresses(11, &[a]);
    let mut ports_config = downlinks(&["p0", "p1"]);
    ports_config[1].policy.role = Role::Uplink;
    let mut bridge = Bridge::with_kernel(config(ports_config), Box::new(kernel.clone())).unwrap();
    let calls = kernel.take_calls();
    let at = |c: &Call| calls.iter().position(|x| x == c).unwrap();
    // The addresses before the port map entry that passes them up.
    assert!(at(&Call::Addresses(11)) < at(&Call::AddHostAddress(a)));
    assert!(
        at(&Call::AddHostAddress(a))
            < at(&Call::ConfigurePort {
                ifindex: 11,
                slot: 1,
                flags: STEER | PASS_HOST_MAC
            })
    );
    assert_eq!(kernel.host_addresses(), [a]);
    // An address change on the uplink is followed.
    kernel.set_addresses(11, &[b]);
    kernel.push_change(Change::Addresses { ifindex: 11 });
    bridge.tick();
    assert_eq!(
        kernel.take_calls(),
        [
            Call::Addresses(11),
            Call::AddHostAddress(b),
            Call::RemoveHostAddress(a)
        ]
    );
    assert_eq!(kernel.host_addresses(), [b]);
    // Removing the uplink takes them out.
    bridge.remove_port("p1").unwrap();
    assert!(kernel.host_addresses().is_empty());
}

#[test]
fn a_vlan_floods_in_the_kernel_while_it_reaches_all_its_ports_but_at_most_the_sender() {
    let kernel = kernel();
    for ifindex in [10, 11, 12] {
        kernel.set_features(ifindex, XDP_ACT_NDO_XMIT);
    }
    let mut c = config(downlinks(&["p0", "p1", "p2"]));
    c.fast_path = FastPath::On;
    let mut bridge = Bridge::with_kernel(c.clone(), Box::new(kernel.clone())).unwrap();
    let floods = kernel.floods();
    let (word, members) = &floods[&0];
    assert_eq!(*members, [(0, 10), (1, 11), (2, 12)]);
    assert!(hairpin_common::flood::complete(*word, 0, false));

    // p1 goes down: out of VLAN 0's floods altogether (the workers send it nothing
    // either), the rest stay in the kernel.
    kernel.change_link("p1", |l| l.oper_up = false);
    bridge.tick();
    assert_eq!(kernel.floods()[&0].1, [(0, 10), (2, 12)]);
    // p2 stops taking redirected frames: whole only for p2's own floods.
    kernel.set_features(12, 0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    bridge.tick();
    let floods = kernel.floods();
    let (word, members) = &floods[&0];
    assert_eq!(*members, [(0, 10)]);
    assert!(hairpin_common::flood::complete(*word, 2, false));
    assert!(!hairpin_common::flood::complete(*word, 0, false));

    // `--fast-floods off`: none in the kernel.
    c.fast_floods = crate::control::xdp::FastFloods::Off;
    let kernel = self::kernel();
    let _bridge = Bridge::with_kernel(c, Box::new(kernel.clone())).unwrap();
    assert!(kernel.floods().is_empty());
}

#[test]
fn the_fast_path_sends_to_ports_whose_driver_takes_redirects_while_they_are_up() {
    let kernel = kernel();
    kernel.set_features(11, XDP_ACT_NDO_XMIT);
    let mut c = config(downlinks(&["p0", "p1"]));
    c.fast_path = FastPath::Auto;
    let mut bridge = Bridge::with_kernel(c, Box::new(kernel.clone())).unwrap();
    assert!(kernel.calls().contains(&Call::OpenNetdev));
    assert_eq!(kernel.fast_egress(), [(1, 11)]);
    kernel.take_calls();
    kernel.change_link("p1", |l| l.oper_up = false);
    bridge.tick();
    assert!(kernel.fast_egress().is_empty());
    let calls = kernel.take_calls();
    assert!(
        calls.contains(&Call::SetFastSlot {
            slot: 1,
            egress: None
        }),
        "{calls:?}"
    );
    // Without the netdev family, `auto` leaves every frame to the workers.
    let kernel = self::kernel();
    kernel.without_netdev();
    let mut c = config(downlinks(&["p0", "p1"]));
    c.fast_path = FastPath::Auto;
    let _bridge = Bridge::with_kernel(c, Box::new(kernel.clone())).unwrap();
    assert!(
        !kernel
            .calls()
            .iter()
            .any(|c| matches!(c, Call::SetFastSlot { .. }))
    );
    // `on` needs it.
    let kernel = self::kernel();
    kernel.without_netdev();
    let mut c = config(downlinks(&["p0", "p1"]));
    c.fast_path = FastPath::On;
    let e = Bridge::with_kernel(c, Box::new(kernel.clone())).unwrap_err();
    assert!(matches!(e, BridgeError::Netdev(_)), "{e:?}");
}

#[test]
fn a_failed_start_leaves_nothing_attached() {
    let kernel = kernel();
    kernel.fail(
        |c| *c == Call::XdpAttach(11),
        XdpError::OutOfRange { slot: 9, queue: 9 },
    );
    let e = Bridge::with_kernel(config(downlinks(&["p0", "p1"])), Box::new(kernel.clone()))
        .unwrap_err();
    assert!(matches!(e, BridgeError::Xdp(_)), "{e:?}");
    let calls = kernel.calls();
    assert_eq!(
        calls[calls.len() - 2..],
        [Call::WorkersStopped, Call::ProgramUnloaded]
    );
    assert!(kernel.xdp_attached().is_empty());
}

#[test]
fn stop_takes_every_port_from_the_program_then_stops_the_workers() {
    let kernel = kernel();
    let bridge = two_ports(&kernel);
    let (stats, panicked) = bridge.stop();
    assert_eq!(
        kernel.take_calls(),
        [
            Call::ForgetPort(10),
            Call::ForgetPort(11),
            Call::XdpDetachPorts(vec![10, 11]),
            Call::WorkersStopped,
            Call::ProgramUnloaded,
        ]
    );
    assert_eq!(panicked, 0);
    assert_eq!(stats.ports.len(), 2);
    assert!(kernel.xdp_attached().is_empty());
    assert!(kernel.served().is_empty());
}
