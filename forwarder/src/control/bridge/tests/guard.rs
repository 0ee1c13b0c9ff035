//! The IP source guard over the fake kernel: each guarded port's prefixes published to
//! the fast path's tries before its `IP_GUARD` flag and taken out after it, changed on
//! reload, gone with the port; and the fast path's drops counted as the port's
//! `ip_spoofed`.
use hairpin_common::{guard::Drops, slot_flags::IP_GUARD};

use super::{config, downlinks, kernel};
use crate::{
    control::{
        bridge::{
            Bridge,
            fake::{Call, FakeKernel},
        },
        config::{BridgeConfig, PortConfig},
        xdp::FastPath,
    },
    switch::DropReason,
};

/// `p0` allowed `prefixes`, `p1` without a guard, the fast path on.
fn guarded(prefixes: &[&str]) -> BridgeConfig {
    let mut ports = downlinks(&["p0", "p1"]);
    ports[0].policy.allowed_ips = prefixes.iter().map(|p| p.parse().unwrap()).collect();
    BridgeConfig {
        fast_path: FastPath::Auto,
        ..config(ports)
    }
}

fn position(calls: &[Call], what: impl Fn(&Call) -> bool) -> usize {
    calls
        .iter()
        .position(what)
        .unwrap_or_else(|| panic!("not called: {calls:?}"))
}

fn set_guard(slot: u32) -> impl Fn(&Call) -> bool {
    move |c| matches!(c, Call::SetGuard { slot: s, .. } if *s == slot)
}

fn set_fast_slot(slot: u32) -> impl Fn(&Call) -> bool {
    move |c| matches!(c, Call::SetFastSlot { slot: s, .. } if *s == slot)
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_guarded_port_gets_its_prefixes_before_its_flag_and_loses_them_after() {
    let kernel = kernel();
    let mut bridge = Bridge::with_kernel(
        guarded(&["10.0.0.5/32", "fd00::5/128"]),
        Box::new(kernel.clone()),
    )
    .unwrap();
    assert_eq!(
        kernel.guards(),
        [(0, strings(&["10.0.0.5/32", "fd00::5/128"]))]
    );
    assert_ne!(kernel.fast_flags(0) & IP_GUARD, 0);
    assert_eq!(kernel.fast_flags(1) & IP_GUARD, 0);
    let calls = kernel.take_calls();
    assert!(position(&calls, set_guard(0)) < position(&calls, set_fast_slot(0)));
    assert!(
        !calls.iter().any(set_guard(1)),
        "no guard, nothing written: {calls:?}"
    );

    // A changed list: written again (the tries take the difference), flag kept.
    bridge
        .reload(guarded(&["10.0.0.5/32", "10.0.0.7/32"]))
        .unwrap();
    assert_eq!(
        kernel.guards(),
        [(0, strings(&["10.0.0.5/32", "10.0.0.7/32"]))]
    );
    assert_ne!(kernel.fast_flags(0) & IP_GUARD, 0);
    // The same list again: nothing written.
    kernel.take_calls();
    bridge
        .reload(guarded(&["10.0.0.5/32", "10.0.0.7/32"]))
        .unwrap();
    assert!(!kernel.take_calls().iter().any(set_guard(0)));

    // No list: the flag off first, then the prefixes out.
    bridge.reload(guarded(&[])).unwrap();
    let calls = kernel.take_calls();
    assert!(position(&calls, set_fast_slot(0)) < position(&calls, set_guard(0)));
    assert!(kernel.guards().is_empty());
    assert_eq!(kernel.fast_flags(0) & IP_GUARD, 0);
}

#[test]
fn a_removed_guarded_port_takes_its_prefixes_with_it() {
    let kernel = kernel();
    let mut bridge = Bridge::with_kernel(guarded(&[]), Box::new(kernel.clone())).unwrap();
    let mut p2 = PortConfig::downlink("p2");
    p2.policy.allowed_ips = vec!["192.0.2.0/24".parse().unwrap()];
    bridge.add_port(p2).unwrap();
    assert_eq!(kernel.guards(), [(2, strings(&["192.0.2.0/24"]))]);
    bridge.remove_port("p2").unwrap();
    assert!(kernel.guards().is_empty());
    assert_eq!(kernel.fast_flags(2) & IP_GUARD, 0);
}

#[test]
fn without_the_fast_path_nothing_is_published() {
    let kernel = kernel();
    let c = BridgeConfig {
        fast_path: FastPath::Off,
        ..guarded(&["10.0.0.5/32"])
    };
    let _bridge = Bridge::with_kernel(c, Box::new(kernel.clone())).unwrap();
    assert!(!kernel.calls().iter().any(set_guard(0)));
}

#[test]
fn the_fast_paths_drops_are_the_ports_ip_spoofed_drops() {
    let kernel: FakeKernel = kernel();
    let bridge = Bridge::with_kernel(guarded(&["10.0.0.5/32"]), Box::new(kernel.clone())).unwrap();
    kernel.set_guard_drops(
        0,
        Drops {
            packets: 7,
            bytes: 420,
        },
    );
    let ports = bridge.ports();
    let p0 = &ports[0];
    assert_eq!(p0.allowed_ips, ["10.0.0.5/32"]);
    assert_eq!(
        p0.counters.drops.get(DropReason::IpSpoofed.name()),
        Some(&7)
    );
    assert_eq!((p0.counters.rx_packets, p0.counters.rx_bytes), (7, 420));
    assert_eq!(p0.per_queue[0].drops, 7);
    assert!(ports[1].allowed_ips.is_empty());
    assert!(
        !ports[1]
            .counters
            .drops
            .contains_key(DropReason::IpSpoofed.name())
    );
}

#[test]
fn trace_says_what_the_guard_thinks_and_which_path_checks_it() {
    use crate::control::protocol::TraceFrame;

    let kernel = kernel();
    kernel.set_features(11, crate::control::netdev::XDP_ACT_NDO_XMIT);
    let bridge = Bridge::with_kernel(guarded(&["10.0.0.5/32"]), Box::new(kernel.clone())).unwrap();
    let vm = crate::wire::Mac([2, 0, 0, 0, 0, 0x10]);
    let peer = crate::wire::Mac([2, 0, 0, 0, 0, 0x11]);
    bridge.fdb().learn(0, vm, 0, bridge.now());
    bridge.fdb().learn(0, peer, 1, bridge.now());
    let hex = |sender: [u8; 4], ethertype: &str| {
        let mut f = format!("{peer}{vm}{ethertype}").replace(':', "");
        if ethertype == "0806" {
            // A gratuitous ARP reply of the VM's for `sender`.
            f += "0001080006040002";
            f += &vm.to_string().replace(':', "");
            f += &format!(
                "{:02x}{:02x}{:02x}{:02x}",
                sender[0], sender[1], sender[2], sender[3]
            );
            f += "000000000000";
            f += &format!(
                "{:02x}{:02x}{:02x}{:02x}",
                sender[0], sender[1], sender[2], sender[3]
            );
        } else {
            f += "4500001c000000004011";
            f += "0000";
            f += &format!(
                "{:02x}{:02x}{:02x}{:02x}",
                sender[0], sender[1], sender[2], sender[3]
            );
            f += "0a000006";
            f += "0001000200080000";
        }
        TraceFrame::Hex(f)
    };
    let spoofed = bridge.trace("p0", &hex([10, 0, 0, 6], "0806")).unwrap();
    assert_eq!(spoofed.drop_reason.as_deref(), Some("ip_spoofed"));
    assert!(
        spoofed.lines.iter().any(|l| l
            == "ip guard: p0's allow_ip refuses it: ARP sender 10.0.0.6 is not one the port may use"),
        "{:#?}",
        spoofed.lines
    );
    assert_eq!(spoofed.learning, "none (not learned)");
    let own_arp = bridge.trace("p0", &hex([10, 0, 0, 5], "0806")).unwrap();
    assert_eq!(own_arp.action, "forward");
    assert_eq!(own_arp.path, "workers", "{:#?}", own_arp.lines);
    let own_ip = bridge.trace("p0", &hex([10, 0, 0, 5], "0800")).unwrap();
    assert!(
        own_ip
            .lines
            .contains(&"ip guard: p0's allow_ip passes it".to_owned()),
        "{:#?}",
        own_ip.lines
    );
    assert_eq!(own_ip.path, "fast", "{:#?}", own_ip.lines);
}
