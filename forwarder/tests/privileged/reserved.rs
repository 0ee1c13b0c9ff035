//! IEEE 802.1Q's reserved group addresses (`01:80:c2:00:00:00` to `..:0f`: STP, pause,
//! LACP, 802.1X, LLDP, ...) through real veths: a bridge never relays them, so
//! nothing a VM sends to them reaches another VM or the uplink, and what the adjacent
//! switch sends to them on the uplink goes to the host's own stack (its lldpd);
//! `group_fwd_mask` relays the chosen ones, never pause or LACP.
use hairpin::{
    switch::{DropReason, PortPolicy, Role},
    wire::Mac,
};

use crate::{Capture, TestConfig, Topology, finish, send_raw};

/// A frame from `src` to `01:80:c2:00:00:0{last}`, with a local experimental EtherType
/// (0x88b5) so captures tell it from the hosts' own traffic.
fn to_reserved(last: u8, src: Mac) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&[0x01, 0x80, 0xc2, 0x00, 0x00, last]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.push(last);
    f.resize(64, 0);
    f
}

/// How many captured lines are reserved-address test frames to `..:0{last}`.
fn seen(lines: &[String], last: u8) -> usize {
    let dst = format!("01:80:c2:00:00:{last:02x}");
    lines
        .iter()
        .filter(|l| l.contains(&dst) && l.contains("0x88b5"))
        .count()
}

/// The same, sent by `src` only.
fn seen_from(lines: &[String], last: u8, src: Mac) -> usize {
    let src = src.to_string();
    let only: Vec<String> = lines.iter().filter(|l| l.contains(&src)).cloned().collect();
    seen(&only, last)
}

/// vm0 and vm1 on downlinks p0 and p1, the adjacent switch (vm2) on uplink p2.
fn run(mask: u16) -> (Vec<String>, Vec<String>, Vec<String>, u64, Mac) {
    let topo = Topology::new("rsvd", &[1, 1, 1]);
    let mut policies = vec![PortPolicy::default(); 3];
    policies[2].role = Role::Uplink;
    let config = TestConfig {
        policies,
        group_fwd_mask: mask,
        ..TestConfig::default()
    };
    let tmp = |what: &str| std::env::temp_dir().join(format!("{}-{what}.pcap", topo.sw.name()));
    let bridge = topo.start(config);
    let vm1 = Capture::start(&topo.vms[1], "eth0", tmp("vm1"));
    let switch = Capture::start(&topo.vms[2], "eth0", tmp("vm2"));
    let host = Capture::start(&topo.sw, "p2", tmp("host"));

    // From a VM: STP, pause, LACP, 802.1X, LLDP. From the adjacent switch: LLDP.
    let vm0 = topo.vm_mac(0);
    let adjacent = topo.vm_mac(2);
    let frames: Vec<_> = [0x00, 0x01, 0x02, 0x03, 0x0e]
        .into_iter()
        .map(|last| to_reserved(last, vm0))
        .collect();
    send_raw(&topo.vms[0], "eth0", &frames);
    send_raw(&topo.vms[2], "eth0", &[to_reserved(0x0e, adjacent)]);

    let (vm1, switch, host) = (vm1.finish(), switch.finish(), host.finish());
    let s = finish(bridge);
    let reserved = s.port_total(0).drops[DropReason::Reserved as usize];
    (vm1, switch, host, reserved, adjacent)
}

#[test]
fn reserved_group_addresses_stay_on_their_link_unless_the_mask_relays_them() {
    // By default: none of vm0's five reach vm1 or the uplink, all five counted; the
    // switch's LLDP goes to the host, not to the VMs.
    let (vm1, switch, host, reserved, adjacent) = run(0);
    for last in [0x00, 0x01, 0x02, 0x03, 0x0e] {
        assert_eq!(seen(&vm1, last), 0, "{last:#x} reached vm1: {vm1:#?}");
        assert_eq!(
            seen(&switch, last) - usize::from(last == 0x0e),
            0,
            "{switch:#?}"
        );
    }
    assert_eq!(reserved, 5, "reserved drops on p0");
    assert_eq!(
        seen_from(&host, 0x0e, adjacent),
        1,
        "the switch's LLDP did not reach the host: {host:#?}"
    );

    // LLDP and 802.1X relayed (pause and LACP asked for too: never). The switch's LLDP
    // now goes through hairpin to the VMs instead of the host.
    let (vm1, switch, host, reserved, adjacent) = run(1 << 0x0e | 1 << 0x03);
    assert_eq!(
        seen(&vm1, 0x0e),
        2,
        "vm0's and the switch's LLDP on vm1: {vm1:#?}"
    );
    assert_eq!(seen(&vm1, 0x03), 1, "{vm1:#?}");
    assert_eq!(seen(&switch, 0x03), 1, "{switch:#?}");
    for last in [0x00, 0x01, 0x02] {
        assert_eq!(seen(&vm1, last), 0, "{last:#x} reached vm1: {vm1:#?}");
        assert_eq!(
            seen(&switch, last),
            0,
            "{last:#x} reached the uplink: {switch:#?}"
        );
    }
    assert_eq!(reserved, 3, "STP, pause and LACP dropped on p0");
    assert_eq!(seen_from(&host, 0x0e, adjacent), 0, "{host:#?}");
}
