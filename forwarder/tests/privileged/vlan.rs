//! 802.1Q VLANs through real veths: access ports of one VLAN talk, of two VLANs do not;
//! the trunk carries each VLAN with its tag (captured by tcpdump on the trunk's peer);
//! tagged frames from the trunk reach their VLAN's access ports untagged; tagged and
//! double-tagged frames from an access port are dropped (no VLAN hopping).
use hairpin::{
    control::port::Interface,
    switch::{DropReason, vlan::PortVlans},
    wire::Mac,
};

use crate::{Capture, TestConfig, Topology, finish, ping, send_raw, vlan_policies};

/// A broadcast frame from `src` with `tags` (TPID, VLAN) in order, then a local
/// experimental EtherType.
fn tagged_broadcast(src: Mac, tags: &[(u16, u16)]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&Mac::BROADCAST.0);
    f.extend_from_slice(&src.0);
    for &(tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(64, 0);
    f
}

#[test]
fn vlans_separate_ports_tag_the_trunk_and_stop_hopping() {
    // p0, p1: access VLAN 10; p2: access VLAN 20; p3: trunk of 10 and 20, no native VLAN.
    let topo = Topology::new("vlan", &[1, 1, 1, 1]);
    let vlans = [
        PortVlans::Access(10),
        PortVlans::Access(10),
        PortVlans::Access(20),
        PortVlans::Trunk {
            tagged: vec![10, 20],
            native: None,
        },
    ];
    let config = TestConfig {
        policies: vlan_policies(&vlans),
        ..TestConfig::default()
    };
    let trunk_file = std::env::temp_dir().join(format!("{}-trunk.pcap", topo.sw.name()));
    let access_file = std::env::temp_dir().join(format!("{}-p2.pcap", topo.sw.name()));
    let datapath = topo.start(config);
    let trunk = Capture::start(&topo.vms[3], "eth0", trunk_file);
    let access = Capture::start(&topo.vms[2], "eth0", access_file);

    ping(&topo.vms[0], &topo.addr(1), 3).expect("same VLAN: vm0 and vm1 talk");
    ping(&topo.vms[0], &topo.addr(2), 1).expect_err("VLAN 10 never reaches VLAN 20");
    ping(&topo.vms[2], &topo.addr(0), 1).expect_err("VLAN 20 never reaches VLAN 10");

    // From the trunk: a frame tagged 20 reaches p2 only, untagged.
    let trunk_mac = topo.vm_mac(3);
    send_raw(
        &topo.vms[3],
        "eth0",
        &[tagged_broadcast(trunk_mac, &[(0x8100, 20)])],
    );
    // From access port p0: a tag of its own VLAN, another VLAN's, double tags (802.1Q
    // in 802.1Q, 802.1ad outside): all dropped.
    let vm0 = topo.vm_mac(0);
    let hops = [
        tagged_broadcast(vm0, &[(0x8100, 10)]),
        tagged_broadcast(vm0, &[(0x8100, 20)]),
        tagged_broadcast(vm0, &[(0x8100, 10), (0x8100, 20)]),
        tagged_broadcast(vm0, &[(0x88a8, 10), (0x8100, 20)]),
    ];
    // A priority tag (VLAN 0, priority 5) on the access port is the port's VLAN: the
    // frame leaves the trunk tagged 10 with its priority. One hiding a second tag is a
    // hop like the others.
    let mut priority = tagged_broadcast(vm0, &[(0x8100, 0xa000)]);
    priority[16..18].copy_from_slice(&[0x88, 0xb6]);
    let hidden = tagged_broadcast(vm0, &[(0x8100, 0), (0x8100, 20)]);
    send_raw(&topo.vms[0], "eth0", &hops);
    send_raw(&topo.vms[0], "eth0", &[priority, hidden]);
    let on_trunk = trunk.finish();
    let on_p2 = access.finish();
    let s = finish(datapath);

    let vm0_text = vm0.to_string();
    let vm2_text = topo.vm_mac(2).to_string();
    let trunk_text = trunk_mac.to_string();
    // The switch host's own traffic on p3 (IPv6 multicast listener reports) is not
    // hairpin's to tag.
    let host_text = topo
        .sw
        .enter(|| Interface::lookup("p3").unwrap().mac)
        .unwrap()
        .to_string();
    // vm0's ARP for vm2 left by the trunk tagged 10; vm2's ARP for vm0 tagged 20.
    assert!(
        on_trunk.iter().any(|l| l.contains(&vm0_text)
            && l.contains("vlan 10")
            && l.contains("who-has 198.18.0.3")),
        "no VLAN 10 ARP from vm0 on the trunk: {on_trunk:#?}"
    );
    assert!(
        on_trunk.iter().any(|l| l.contains(&vm2_text)
            && l.contains("vlan 20")
            && l.contains("who-has 198.18.0.1")),
        "no VLAN 20 ARP from vm2 on the trunk: {on_trunk:#?}"
    );
    // Nothing leaves the trunk untagged (it has no native VLAN), and vm0's tagged
    // frames never get out.
    for line in on_trunk.iter().filter(|l| !l.starts_with('\t')) {
        if line.contains(&trunk_text) || line.contains(&host_text) {
            continue; // frames the trunk's peer or the switch host sent themselves
        }
        assert!(line.contains("vlan "), "untagged on the trunk: {line}");
        assert!(
            !line.contains("0x88b5"),
            "a hopping frame got through: {line}"
        );
    }
    assert!(
        on_trunk
            .iter()
            .any(|l| l.contains(&vm0_text) && l.contains("vlan 10, p 5") && l.contains("0x88b6")),
        "the priority-tagged frame did not leave the trunk in VLAN 10, priority 5: {on_trunk:#?}"
    );
    // p2 got the trunk's VLAN 20 frame, untagged, and nothing of VLAN 10.
    let from_trunk: Vec<_> = on_p2.iter().filter(|l| l.contains(&trunk_text)).collect();
    assert_eq!(from_trunk.len(), 1, "{on_p2:#?}");
    assert!(!from_trunk[0].contains("vlan"), "{}", from_trunk[0]);
    assert!(
        !on_p2.iter().any(|l| l.contains(&vm0_text)),
        "VLAN 10 reached p2: {on_p2:#?}"
    );
    // The counters agree: the five hopping attempts were dropped on p0.
    let p0 = s.port_total(0);
    assert_eq!(p0.drops[DropReason::Vlan as usize], 5, "{p0:?}");
    assert_eq!(s.port_total(3).drops[DropReason::Vlan as usize], 0);
}
