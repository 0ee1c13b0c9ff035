//! 802.1Qbg edge bridging against real kernel peers: macvlan devices in VEPA and private
//! mode, and a Linux bridge with `hairpin on` as the adjacent switch.
use hairpin::{
    netlab::Netns,
    switch::{Mode, PortPolicy, Role},
};

use hairpin::control::bridge::Bridge;

use crate::{TestConfig, Topology, finish, lab, ping, start_in};

#[test]
fn reflective_relay_lets_vepa_macvlans_on_one_port_talk() {
    let mut lab = lab("relay");
    let sw = lab.add_ns("sw").unwrap();
    let host = lab.add_ns("host").unwrap();
    let vms = [lab.add_ns("vm1").unwrap(), lab.add_ns("vm2").unwrap()];
    lab.veth((&host, "h0"), (&sw, "p0"), 1).unwrap();
    for (i, vm) in vms.iter().enumerate() {
        let mv = format!("mv{i}");
        host.ip(&[
            "link", "add", &mv, "link", "h0", "type", "macvlan", "mode", "vepa",
        ])
        .unwrap();
        host.ip(&["link", "set", &mv, "netns", vm.name()]).unwrap();
        vm.ip(&["addr", "add", &format!("198.18.0.{}/24", i + 1), "dev", &mv])
            .unwrap();
        vm.ip(&["link", "set", &mv, "up"]).unwrap();
    }
    let relay = TestConfig {
        policies: vec![PortPolicy {
            hairpin: true,
            ..PortPolicy::default()
        }],
        ..TestConfig::default()
    };

    // hairpin on p0 relays the VEPA macvlans' frames back down the same port.
    let datapath = start_in(&sw, &["p0"], relay.clone());
    ping(&vms[0], "198.18.0.2", 3).unwrap();
    ping(&vms[1], "198.18.0.1", 3).unwrap();
    let s = finish(datapath);
    let p0 = s.port_total(0);
    assert!(
        p0.rx_packets >= 12 && p0.tx_packets >= 12,
        "relayed on p0: {p0:?}"
    );

    // Without hairpin on the port, nothing comes back: the macvlans cannot talk.
    let datapath = start_in(&sw, &["p0"], TestConfig::default());
    ping(&vms[0], "198.18.0.2", 2).expect_err("no reflective relay, no path");
    let s = finish(datapath);
    assert!(
        s.port_total(0).drops.iter().sum::<u64>() > 0,
        "frames filtered: {s:?}"
    );

    // macvlan private mode refuses relayed broadcasts from its siblings, so address
    // resolution fails (the kernel still passes relayed unicast: forget the neighbours).
    for (i, vm) in vms.iter().enumerate() {
        vm.ip(&[
            "link",
            "set",
            &format!("mv{i}"),
            "type",
            "macvlan",
            "mode",
            "private",
        ])
        .unwrap();
        vm.ip(&["neigh", "flush", "all"]).unwrap();
    }
    let datapath = start_in(&sw, &["p0"], relay);
    ping(&vms[0], "198.18.0.2", 2).expect_err("private macvlans never talk");
    finish(datapath);
}

/// vm0 and vm1 on hairpin's downlinks p0 and p1; hairpin's uplink `upl` is cabled to
/// `ext0`, a port of the Linux bridge br0 in namespace ext; a host "far" (198.18.0.9) is
/// on br0's other port.
struct Station {
    topo: Topology,
    ext: Netns,
    far: Netns,
}

impl Station {
    fn new(tag: &str) -> Self {
        let mut topo = Topology::new(tag, &[1, 1]);
        let ext = topo.lab.add_ns("ext").unwrap();
        let far = topo.lab.add_ns("far").unwrap();
        topo.lab.veth((&topo.sw, "upl"), (&ext, "ext0"), 1).unwrap();
        topo.lab.veth((&far, "f0"), (&ext, "ext1"), 1).unwrap();
        far.ip(&["addr", "add", "198.18.0.9/24", "dev", "f0"])
            .unwrap();
        ext.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
        for port in ["ext0", "ext1"] {
            ext.ip(&["link", "set", port, "master", "br0"]).unwrap();
        }
        ext.ip(&["link", "set", "br0", "up"]).unwrap();
        let station = Self { topo, ext, far };
        station.bridge_hairpin(true);
        station
    }

    fn bridge_hairpin(&self, on: bool) {
        let state = if on { "on" } else { "off" };
        self.ext
            .ip(&[
                "link",
                "set",
                "ext0",
                "type",
                "bridge_slave",
                "hairpin",
                state,
            ])
            .unwrap();
    }

    fn start(&self, mode: Mode) -> Bridge {
        let mut policies = vec![PortPolicy::default(); 3];
        policies[2].role = Role::Uplink;
        start_in(
            &self.topo.sw,
            &["p0", "p1", "upl"],
            TestConfig {
                mode,
                policies,
                ..TestConfig::default()
            },
        )
    }
}

#[test]
fn a_vepa_station_reaches_its_neighbour_only_through_the_adjacent_switch() {
    let station = Station::new("vepa");
    let vm = &station.topo.vms;

    let datapath = station.start(Mode::Vepa);
    ping(&vm[0], &station.topo.addr(1), 3).unwrap();
    ping(&vm[1], &station.topo.addr(0), 3).unwrap();
    ping(&vm[0], "198.18.0.9", 2).unwrap();
    // The external bridge stops reflecting: local frames have no path left.
    station.bridge_hairpin(false);
    ping(&vm[0], &station.topo.addr(1), 2).expect_err("VEPA never switches locally");
    let s = finish(datapath);
    let (p0, p1, up) = (s.port_total(0), s.port_total(1), s.port_total(2));
    // Every frame vm0 and vm1 sent crossed the uplink (and came back while reflected).
    assert!(up.tx_packets >= p0.rx_packets + p1.rx_packets, "{s:?}");
    assert!(up.rx_packets >= 12, "reflected frames came back up: {up:?}");
    assert_eq!(
        s.per_queue[0][0].flood_copies + s.per_queue[1][0].flood_copies,
        0,
        "downlinks never flood"
    );

    // In VEB mode the same ping is switched locally, with the uplink down.
    station.ext.ip(&["link", "set", "ext0", "down"]).unwrap();
    let datapath = station.start(Mode::Veb);
    ping(&vm[0], &station.topo.addr(1), 3).unwrap();
    let s = finish(datapath);
    assert!(s.port_total(1).tx_packets >= 3);
}

#[test]
fn private_downlinks_reach_the_network_but_not_each_other() {
    let station = Station::new("priv");
    let vm = &station.topo.vms;
    let datapath = station.start(Mode::Private);
    ping(&vm[0], "198.18.0.9", 3).unwrap();
    ping(&vm[1], "198.18.0.9", 3).unwrap();
    ping(&station.far, &station.topo.addr(0), 2).unwrap();
    ping(&vm[0], &station.topo.addr(1), 2).expect_err("private: no path between downlinks");
    let s = finish(datapath);
    let isolated = s.port_total(2).drops[hairpin::switch::DropReason::PrivateIsolation as usize];
    assert!(
        isolated > 0,
        "reflected frames counted as private drops: {s:?}"
    );
}

#[test]
fn the_host_keeps_its_own_addresses_on_the_uplink() {
    let station = Station::new("host");
    let sw = &station.topo.sw;
    sw.ip(&["addr", "add", "198.18.0.20/24", "dev", "upl"])
        .unwrap();
    sw.ip(&["addr", "add", "2001:db8::20/64", "dev", "upl", "nodad"])
        .unwrap();
    station
        .far
        .ip(&["addr", "add", "2001:db8::9/64", "dev", "f0", "nodad"])
        .unwrap();
    let mut datapath = station.start(Mode::Vepa);
    // The host behind hairpin's uplink answers ARP, neighbour discovery and ping on its
    // own addresses ...
    ping(&station.far, "198.18.0.20", 3).unwrap();
    ping(&station.far, "2001:db8::20", 3).unwrap();
    // ... on addresses it gets while hairpin runs, from the next tick on ...
    sw.ip(&["addr", "add", "198.18.0.21/24", "dev", "upl"])
        .unwrap();
    sw.ip(&["addr", "add", "2001:db8::21/64", "dev", "upl", "nodad"])
        .unwrap();
    datapath.tick();
    ping(&station.far, "198.18.0.21", 3).expect("an address added at run time answers");
    ping(&station.far, "2001:db8::21", 3).expect("an IPv6 address added at run time answers");
    // ... and no longer claims one it gave up: its ARP requests are switched like any
    // other frame (to the downlinks, where no one answers).
    sw.ip(&["addr", "del", "198.18.0.21/24", "dev", "upl"])
        .unwrap();
    // (The far side forgets the MAC it learned for it: an echo sent to the host's MAC
    // would rightly still go to the host.)
    station.far.ip(&["neigh", "flush", "dev", "f0"]).unwrap();
    datapath.tick();
    // What XDP passes to the host's stack shows in a capture on upl; what it steers
    // to hairpin does not.
    let mut capture = sw.command("timeout");
    capture
        .args([
            "3",
            "tcpdump",
            "-i",
            "upl",
            "-nn",
            "-l",
            "arp and host 198.18.0.21",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let capture = capture.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    ping(&station.far, "198.18.0.21", 1).expect_err("the removed address is gone");
    let seen = capture.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout).trim(),
        "",
        "ARP for a removed address still went to the host"
    );
    // ... while the downlinks' traffic still crosses hairpin.
    ping(&station.topo.vms[0], "198.18.0.9", 3).unwrap();
    let xdp = datapath.xdp_stats("upl");
    let s = finish(datapath);
    assert!(
        xdp[0].passed >= 8,
        "ARP, ND and echoes passed to the host: {:?}",
        xdp[0]
    );
    assert!(s.port_total(0).tx_packets >= 3, "{s:?}");
}
