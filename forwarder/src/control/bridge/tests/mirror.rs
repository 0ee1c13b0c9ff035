//! Port mirrors over the fake kernel: what `mirror add` and `mirror del` change (the
//! monitor port's tables, its MAC entries, the fast path, what the capture thread is
//! given), what they refuse and leave as it was, mirrors that wait for an absent port,
//! and mirrors in the configuration, at start and on reload.
use super::{MAC_A, MAC_B, config, downlinks, entries_of, kernel};
use crate::{
    control::{
        bridge::{
            Bridge, BridgeError,
            fake::{Call, FakeKernel},
        },
        capture::MirrorSink,
        config::{BridgeConfig, PortConfig},
        netdev::XDP_ACT_NDO_XMIT,
        protocol::{Direction, MirrorInfo},
        spec::MirrorSpec,
        xdp::FastPath,
    },
    datapath::{DatapathError, tap},
    switch::{Mode, Role},
};

fn spec(name: &str, from: &[&str], to: &str) -> MirrorSpec {
    MirrorSpec {
        name: name.into(),
        from: from.iter().map(|s| (*s).to_owned()).collect(),
        direction: Direction::Both,
        to: to.into(),
    }
}

/// `p0` to `p2` downlinks (slots 0 to 2, ifindexes 10 to 12) and `p3` the uplink
/// (slot 3), the calls of its start forgotten.
fn four_ports(kernel: &FakeKernel) -> Bridge {
    let bridge = Bridge::with_kernel(config(ports()), Box::new(kernel.clone())).unwrap();
    kernel.take_calls();
    bridge
}

fn ports() -> Vec<PortConfig> {
    let mut ports = downlinks(&["p0", "p1", "p2", "p3"]);
    ports[3].policy.role = Role::Uplink;
    ports
}

/// (name, state, missing, origin) of every mirror.
fn shown(bridge: &Bridge) -> Vec<(String, String, Vec<String>, String)> {
    bridge
        .mirrors()
        .into_iter()
        .map(|m: MirrorInfo| (m.name, m.state, m.missing, m.origin))
        .collect()
}

fn row(
    name: &str,
    state: &str,
    missing: &[&str],
    origin: &str,
) -> (String, String, Vec<String>, String) {
    (
        name.into(),
        state.into(),
        missing.iter().map(|s| (*s).to_owned()).collect(),
        origin.into(),
    )
}

/// The sink of a mirror of slots `from` to slot `to` (interface `to_ifindex`), both
/// directions.
fn sink(name: &str, from: &[u16], to: u16, to_ifindex: u32) -> MirrorSink {
    MirrorSink {
        name: name.into(),
        from: from.to_vec(),
        dirs: tap::IN | tap::OUT,
        to,
        to_ifindex,
    }
}

/// The names of the mirrors the capture thread carries out, as it reports them.
fn counted(bridge: &Bridge) -> Vec<String> {
    bridge
        .captures
        .mirror_counts()
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn a_mirror_makes_its_monitor_port_forward_nothing_and_its_removal_gives_it_back() {
    let kernel = kernel();
    let mut bridge = four_ports(&kernel);
    bridge.fdb().learn(0, MAC_A, 2, 0);
    bridge.fdb().insert_static(0, MAC_B, 2);
    let message = bridge.add_mirror(spec("m1", &["p0", "p3"], "p2")).unwrap();
    assert_eq!(
        message,
        "mirror m1: copies of the frames p0, p3 received and sent go out of p2"
    );
    // The tables flood to every port but the monitor port; nothing else is called.
    assert_eq!(kernel.take_calls(), [Call::SetTables(vec![0, 1, 3])]);
    // Its learned entries are forgotten; a static one stays (and is dropped).
    assert_eq!(entries_of(&bridge, 2), [(MAC_B, true)]);
    assert_eq!(bridge.mirror_sinks(), [sink("m1", &[0, 3], 2, 12)]);
    assert_eq!(counted(&bridge), ["m1"]);
    assert_eq!(shown(&bridge), [row("m1", "active", &[], "runtime")]);
    assert_eq!(bridge.runtime_mirrors().count(), 1);
    // A second mirror to the same monitor port, of the frames p1 receives.
    let mut inbound = spec("m2", &["p1"], "p2");
    inbound.direction = Direction::In;
    bridge.add_mirror(inbound).unwrap();
    kernel.take_calls();
    assert_eq!(
        bridge.mirror_sinks()[1],
        MirrorSink {
            dirs: tap::IN,
            ..sink("m2", &[1], 2, 12)
        }
    );
    // Removing one: the other keeps the port a monitor port.
    assert_eq!(
        bridge.remove_mirror("m1").unwrap(),
        "mirror m1 removed; p2 is still another mirror's monitor port"
    );
    assert_eq!(counted(&bridge), ["m2"]);
    assert_eq!(kernel.take_calls(), [Call::SetTables(vec![0, 1, 3])]);
    // Removing the last: it forwards again, and the copies stop at once.
    assert_eq!(
        bridge.remove_mirror("m2").unwrap(),
        "mirror m2 removed; p2 forwards again"
    );
    assert_eq!(kernel.take_calls(), [Call::SetTables(vec![0, 1, 2, 3])]);
    assert!(bridge.mirror_sinks().is_empty());
    assert!(counted(&bridge).is_empty());
    assert!(bridge.mirrors().is_empty());
    let e = bridge.remove_mirror("m2").unwrap_err();
    assert_eq!(
        e.to_string(),
        "there is no mirror m2 (`hairpin show mirrors` lists them)"
    );
}

#[test]
fn a_refused_mirror_changes_nothing() {
    let kernel = kernel();
    let mut bridge = four_ports(&kernel);
    bridge.add_mirror(spec("m1", &["p0"], "p2")).unwrap();
    kernel.take_calls();
    let before = bridge.mirror_sinks().to_vec();
    let refusal = |bridge: &mut Bridge, s: MirrorSpec| match bridge.add_mirror(s) {
        Err(BridgeError::Refused(why)) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refusal(&mut bridge, spec("m2", &["p1", "vm9"], "p2")),
        "mirror m2: vm9 is not a port of this bridge"
    );
    assert!(
        refusal(&mut bridge, spec("m2", &["p1"], "p3")).starts_with("mirror m2: p3 is the uplink")
    );
    assert!(
        refusal(&mut bridge, spec("m2", &["p1"], "p1"))
            .starts_with("mirror m2: p1 is mirrored too")
    );
    assert_eq!(
        refusal(&mut bridge, spec("m1", &["p1"], "p2")),
        "mirror m1: there is a mirror m1 already"
    );
    assert!(
        refusal(&mut bridge, spec("m2", &["p2"], "p1"))
            .starts_with("mirror m2: p2 is the monitor port of mirror m1")
    );
    assert!(
        refusal(&mut bridge, spec("m2", &["p1"], "p0"))
            .starts_with("mirror m2: p0 is mirrored by mirror m1")
    );
    assert!(refusal(&mut bridge, spec("", &["p1"], "p0")).contains("give the mirror a name"));
    // A port a mirror names stays until the mirror goes.
    for port in ["p0", "p2"] {
        let e = bridge.remove_port(port).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("mirror m1 uses {port}: delete it first (hairpin mirror del m1)")
        );
    }
    assert!(kernel.take_calls().is_empty());
    assert_eq!(bridge.mirror_sinks(), before);
    assert_eq!(shown(&bridge), [row("m1", "active", &[], "runtime")]);
    // Once it is gone, so can they be.
    bridge.remove_mirror("m1").unwrap();
    bridge.remove_port("p2").unwrap();
}

#[test]
fn the_two_port_modes_take_no_mirror() {
    let kernel = kernel();
    let mut c = config(downlinks(&["p0", "p1"]));
    c.mode = Mode::Xconnect;
    let mut bridge = Bridge::with_kernel(c.clone(), Box::new(kernel.clone())).unwrap();
    let e = bridge.add_mirror(spec("m1", &["p0"], "p1")).unwrap_err();
    assert!(e.to_string().contains("exactly its two ports"), "{e}");
    // Nor does a configuration of them.
    c.mirrors = vec![spec("m1", &["p0"], "p1")];
    drop(bridge);
    let e = Bridge::with_kernel(c, Box::new(self::kernel())).unwrap_err();
    assert!(e.to_string().contains("exactly its two ports"), "{e}");
}

#[test]
fn a_mirror_waits_while_a_port_is_absent_and_resumes_when_it_is_back() {
    let kernel = kernel();
    let mut bridge = four_ports(&kernel);
    bridge.add_port(PortConfig::downlink("p4")).unwrap();
    bridge.add_mirror(spec("m1", &["p0", "p1"], "p2")).unwrap();
    bridge.add_mirror(spec("m2", &["p4"], "p2")).unwrap();
    // A configuration port's interface goes: the mirror waits, the other goes on.
    kernel.remove_link("p1");
    bridge.tick();
    assert_eq!(
        shown(&bridge),
        [
            row("m1", "waiting", &["p1"], "runtime"),
            row("m2", "active", &[], "runtime")
        ]
    );
    assert_eq!(bridge.mirror_sinks(), [sink("m2", &[4], 2, 12)]);
    assert_eq!(counted(&bridge), ["m2"]);
    kernel.add_link("p1", 11, 1);
    kernel.change_link("p1", |_| {});
    bridge.tick();
    assert_eq!(shown(&bridge)[0], row("m1", "active", &[], "runtime"));
    assert_eq!(
        bridge.mirror_sinks(),
        [sink("m1", &[0, 1], 2, 12), sink("m2", &[4], 2, 12)]
    );
    // A run-time port goes with its interface: forgotten, and its mirror waits for a
    // port of that name to be added again.
    kernel.remove_link("p4");
    bridge.tick();
    assert_eq!(shown(&bridge)[1], row("m2", "waiting", &["p4"], "runtime"));
    // A new mirror of it is refused meanwhile: it is no port.
    let e = bridge.add_mirror(spec("m3", &["p4"], "p2")).unwrap_err();
    assert_eq!(e.to_string(), "mirror m3: p4 is not a port of this bridge");
    kernel.add_link("p4", 14, 1);
    // Back in another slot (a slot freed is taken last).
    assert_eq!(bridge.add_port(PortConfig::downlink("p4")).unwrap(), 5);
    assert_eq!(shown(&bridge)[1], row("m2", "active", &[], "runtime"));
    // A waiting monitor port is a monitor port from its first tables on.
    kernel.take_calls();
    kernel.remove_link("p2");
    bridge.tick();
    assert_eq!(shown(&bridge)[0], row("m1", "waiting", &["p2"], "runtime"));
    kernel.add_link("p2", 12, 1);
    kernel.change_link("p2", |_| {});
    bridge.tick();
    assert_eq!(shown(&bridge)[0], row("m1", "active", &[], "runtime"));
    let tables: Vec<_> = kernel
        .take_calls()
        .into_iter()
        .filter(|c| matches!(c, Call::SetTables(_)))
        .collect();
    assert!(
        tables
            .iter()
            .all(|c| *c == Call::SetTables(vec![0, 1, 3, 5])),
        "{tables:?}"
    );
}

#[test]
fn an_uplink_is_not_added_as_a_waiting_mirrors_monitor_port() {
    let kernel = kernel();
    let mut bridge =
        Bridge::with_kernel(config(downlinks(&["p0", "p1"])), Box::new(kernel.clone())).unwrap();
    bridge.add_port(PortConfig::downlink("p2")).unwrap();
    bridge.add_mirror(spec("m1", &["p0"], "p2")).unwrap();
    kernel.remove_link("p2");
    bridge.tick();
    kernel.add_link("p2", 12, 1);
    let mut uplink = PortConfig::downlink("p2");
    uplink.policy.role = Role::Uplink;
    let e = bridge.add_port(uplink).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("p2: mirror m1 has it as its monitor port, which the uplink cannot be"),
        "{e}"
    );
}

#[test]
fn the_fast_path_never_sends_to_a_monitor_port() {
    let kernel = kernel();
    for ifindex in [10, 11, 12] {
        kernel.set_features(ifindex, XDP_ACT_NDO_XMIT);
    }
    let mut c = config(downlinks(&["p0", "p1", "p2"]));
    c.fast_path = FastPath::Auto;
    let mut bridge = Bridge::with_kernel(c, Box::new(kernel.clone())).unwrap();
    assert_eq!(kernel.fast_egress(), [(0, 10), (1, 11), (2, 12)]);
    bridge.add_mirror(spec("m1", &["p0"], "p2")).unwrap();
    assert_eq!(kernel.fast_egress(), [(0, 10), (1, 11)]);
    // The next look at the drivers leaves it out too.
    bridge.tick();
    assert_eq!(kernel.fast_egress(), [(0, 10), (1, 11)]);
    bridge.remove_mirror("m1").unwrap();
    assert_eq!(kernel.fast_egress(), [(0, 10), (1, 11), (2, 12)]);
}

#[test]
fn a_mirror_the_workers_refuse_to_carry_out_is_taken_back() {
    let kernel = kernel();
    let mut bridge = four_ports(&kernel);
    kernel.fail(
        |c| *c == Call::SetTables(vec![0, 1, 3]),
        DatapathError::Cores("stopped".into()),
    );
    bridge.add_mirror(spec("m1", &["p0"], "p2")).unwrap_err();
    assert!(bridge.mirrors().is_empty());
    assert!(bridge.mirror_sinks().is_empty());
}

/// A configuration of [`ports`] with `mirrors`.
fn with_mirrors(mirrors: Vec<MirrorSpec>) -> BridgeConfig {
    BridgeConfig {
        mirrors,
        ..config(ports())
    }
}

#[test]
fn the_configurations_mirrors_are_carried_out_from_the_start() {
    let kernel = kernel();
    let bridge = Bridge::with_kernel(
        with_mirrors(vec![spec("ids", &["p0", "p1"], "p2")]),
        Box::new(kernel.clone()),
    )
    .unwrap();
    assert_eq!(bridge.mirror_sinks(), [sink("ids", &[0, 1], 2, 12)]);
    assert_eq!(shown(&bridge), [row("ids", "active", &[], "config")]);
    // The monitor port never was in a flood.
    let tables: Vec<_> = kernel
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::SetTables(ports) => Some(ports),
            _ => None,
        })
        .collect();
    assert!(tables.iter().all(|t| !t.contains(&2)), "{tables:?}");
    assert_eq!(tables.last().unwrap(), &[0, 1, 3]);
    // A configuration's mirror of a port it does not have is refused.
    let e = Bridge::with_kernel(
        with_mirrors(vec![spec("ids", &["p0", "vm9"], "p2")]),
        Box::new(self::kernel()),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "mirror ids: vm9 is not a port of the configuration"
    );
}

#[test]
fn reload_adds_changes_and_removes_the_files_mirrors_and_keeps_run_time_ones() {
    let kernel = kernel();
    let mut bridge = four_ports(&kernel);
    bridge.add_mirror(spec("rt", &["p1"], "p2")).unwrap();
    kernel.take_calls();
    // A reload that only adds a mirror.
    let answer = bridge
        .reload(with_mirrors(vec![spec("ids", &["p0"], "p2")]))
        .unwrap();
    assert_eq!(answer, "reloaded: mirror ids added");
    assert_eq!(
        shown(&bridge),
        [
            row("ids", "active", &[], "config"),
            row("rt", "active", &[], "runtime")
        ]
    );
    assert_eq!(
        bridge.mirror_sinks(),
        [sink("ids", &[0], 2, 12), sink("rt", &[1], 2, 12)]
    );
    // The same file again: nothing changes.
    let answer = bridge
        .reload(with_mirrors(vec![spec("ids", &["p0"], "p2")]))
        .unwrap();
    assert_eq!(answer, "reloaded: nothing changed");
    // Changed, and the run-time one taken over by the file.
    let mut out = spec("ids", &["p0", "p3"], "p2");
    out.direction = Direction::Out;
    let answer = bridge
        .reload(with_mirrors(vec![out, spec("rt", &["p1"], "p2")]))
        .unwrap();
    assert_eq!(answer, "reloaded: mirror ids changed");
    assert_eq!(shown(&bridge)[1], row("rt", "active", &[], "config"));
    assert_eq!(bridge.mirror_sinks()[0].dirs, tap::OUT);
    // Removed: the copies stop, and the monitor port forwards again.
    kernel.take_calls();
    let answer = bridge.reload(with_mirrors(Vec::new())).unwrap();
    assert_eq!(answer, "reloaded: mirror ids removed, mirror rt removed");
    assert!(bridge.mirror_sinks().is_empty());
    assert_eq!(kernel.take_calls(), [Call::SetTables(vec![0, 1, 2, 3])]);
}

#[test]
fn a_reload_that_removes_a_run_time_mirrors_port_is_refused_whole() {
    let kernel = kernel();
    let mut bridge = four_ports(&kernel);
    bridge.add_mirror(spec("rt", &["p1"], "p2")).unwrap();
    kernel.take_calls();
    let mut fewer = ports();
    fewer.remove(1);
    let mut new = with_mirrors(vec![spec("ids", &["p0"], "p2")]);
    new.ports = fewer;
    let e = bridge.reload(new).unwrap_err();
    assert_eq!(
        e.to_string(),
        "mirror rt: p1 is not a port of the reloaded bridge (the mirror was added at run \
         time: delete it first); nothing changed"
    );
    assert!(kernel.take_calls().is_empty());
    assert_eq!(shown(&bridge), [row("rt", "active", &[], "runtime")]);
    // A file's mirror of a port the file does not list is refused by the file's check.
    let e = bridge
        .reload(with_mirrors(vec![spec("ids", &["p9"], "p2")]))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("p9 is not a port of the configuration"),
        "{e}"
    );
    // A run-time mirror that waits for a port gone before goes on waiting.
    bridge.add_port(PortConfig::downlink("p4")).unwrap();
    bridge.add_mirror(spec("gone", &["p4"], "p0")).unwrap();
    kernel.remove_link("p4");
    bridge.tick();
    assert_eq!(
        bridge.reload(config(ports())).unwrap(),
        "reloaded: nothing changed"
    );
    assert_eq!(
        shown(&bridge)[1],
        row("gone", "waiting", &["p4"], "runtime")
    );
}

#[test]
fn a_reload_undone_puts_the_mirrors_back() {
    let kernel = kernel();
    let mut bridge = four_ports(&kernel);
    bridge.add_mirror(spec("rt", &["p1"], "p2")).unwrap();
    let before = (shown(&bridge), bridge.mirror_sinks().to_vec());
    // A new port whose attaching fails, after the mirrors changed.
    let mut more = ports();
    more.push(PortConfig::downlink("p4"));
    let mut new = with_mirrors(vec![spec("ids", &["p0", "p4"], "p2")]);
    new.ports = more;
    kernel.fail(
        |c| *c == Call::XdpAttach(14),
        crate::control::xdp::XdpError::OutOfRange { slot: 4, queue: 0 },
    );
    let e = bridge.reload(new).unwrap_err();
    assert!(matches!(e, BridgeError::ReloadUndone(_)), "{e:?}");
    assert_eq!((shown(&bridge), bridge.mirror_sinks().to_vec()), before);
}
