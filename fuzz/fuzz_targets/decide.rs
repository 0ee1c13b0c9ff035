//! `decide()`: a random bridge switches random frames, and every verdict keeps the
//! invariants that hold in every mode (see `hairpin::switch::decide`).
//!
//! The input, byte by byte (zeros once it runs out):
//!
//! - the set-up: mode (`% 5`: veb, vepa, private, xconnect, passthru); ports (`1 + b %
//!   64`, always 2 in xconnect and passthru), port `i` in slot `i x stride`, the stride
//!   1, 5, 11 or 16 by the same byte's top two bits (1 in xconnect and passthru), so
//!   that slots reach past a port set's first word and past 255, up to 1008; the
//!   uplink (none if past the last port; vepa, private and passthru take the last port
//!   then); ports 0-7 without
//!   carrier (one bit each); the group forward mask (2 bytes); the MAC table's size
//!   (`4 << b % 8` entries, small enough to fill);
//! - per port, two bytes: flags (bit 0 hairpin, 1 a free slot, 2 anti-spoofing: only
//!   `02:00:00:00:00:0N` and `02:00:00:00:00:1N` may send, 3 a static MAC
//!   `02:00:00:00:00:2N` in VLANs 0-4, 4-5 the VLAN setting: none, access, trunk, trunk
//!   with a native VLAN, 6 a limit of learned MACs, 7 a mirror's monitor port (not the
//!   uplink, nor in xconnect and passthru)) and VLANs (access: `1 + b % 4`; trunk: VLANs
//!   1-4 by the bits of the low nibble, native `1 + (b >> 4) % 4`);
//! - then frames until the input ends: ingress (`% ports`; bit 7 ages the table
//!   first), the time in seconds, the length, the frame's bytes.
#![no_main]

use std::sync::Arc;

use hairpin::{
    switch::{
        Action, DropReason, Fdb, GROUP_FWD_RESTRICTED, Limits, Mode, PortId, PortPolicy, PortSet,
        Role, Tables, VlanId,
        vlan::{self, PortVlans},
    },
    wire::{
        Mac,
        dot1q::{TAG_LEN, TPID_8021Q},
    },
};
use hairpin_fuzz::Input;
use libfuzzer_sys::fuzz_target;

fn station(n: u8) -> Mac {
    Mac([0x02, 0, 0, 0, 0, n])
}

/// Whether a port with `setting` carries `vid` on a VLAN-aware bridge.
fn carries(setting: Option<&PortVlans>, vid: VlanId) -> bool {
    match setting {
        None => vid == vlan::DEFAULT_VLAN,
        Some(PortVlans::Access(v)) => vid == *v,
        Some(PortVlans::Trunk { tagged, native }) => tagged.contains(&vid) || *native == Some(vid),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = [
        Mode::Veb,
        Mode::Vepa,
        Mode::Private,
        Mode::Xconnect,
        Mode::Passthru,
    ][usize::from(input.byte() % 5)];
    let patch = matches!(mode, Mode::Xconnect | Mode::Passthru);
    let edge = matches!(mode, Mode::Vepa | Mode::Private);
    let shape = input.byte();
    let ports = 1 + usize::from(shape % 64);
    let n = if patch { 2 } else { ports };
    let stride = if patch {
        1
    } else {
        [1, 5, 11, 16][usize::from(shape >> 6)]
    };
    let slot = |i: usize| (i * stride) as PortId;
    let uplink = match usize::from(input.byte()) {
        u if u < n => Some(u),
        _ if edge || mode == Mode::Passthru => Some(n - 1),
        _ => None,
    };
    let down = input.byte();
    let up = (0..n)
        .filter(|&i| i >= 8 || down & (1 << i) == 0)
        .fold(PortSet::EMPTY, |s, i| s.with(slot(i)));
    let group_fwd_mask = input.u16();
    let fdb = Arc::new(Fdb::with_capacity(4 << (input.byte() % 8)));

    let mut slots: Vec<Option<PortPolicy>> = vec![None; (n - 1) * stride + 1];
    let mut statics = Vec::new();
    for i in 0..n {
        let (flags, vlans) = (input.byte(), input.byte());
        let id = slot(i);
        let n8 = i as u8;
        if flags & 0b10 != 0 && !patch && uplink != Some(i) {
            continue;
        }
        let setting = match (flags >> 4) & 3 {
            _ if patch => None,
            0 => None,
            1 => Some(PortVlans::Access(1 + VlanId::from(vlans % 4))),
            kind => Some(PortVlans::Trunk {
                tagged: (1..=4).filter(|v| vlans & (1 << (v - 1)) != 0).collect(),
                native: (kind == 3).then(|| 1 + VlanId::from((vlans >> 4) % 4)),
            }),
        };
        if flags & 0b1000 != 0 {
            statics.push((id, station(0x20 + n8)));
        }
        slots[usize::from(id)] = Some(PortPolicy {
            role: if uplink == Some(i) {
                Role::Uplink
            } else {
                Role::Downlink
            },
            hairpin: flags & 1 != 0,
            allowed_sources: if flags & 0b100 != 0 {
                vec![station(n8), station(0x10 + n8)]
            } else {
                Vec::new()
            },
            vlans: setting,
            // Bit 6: a port that learns one to four addresses at most (the rest are
            // forwarded unlearned, which no invariant below may mind).
            max_macs: if flags & 0b100_0000 != 0 {
                1 + u32::from(vlans >> 6)
            } else {
                0
            },
            monitor: flags & 0x80 != 0 && !patch && uplink != Some(i),
            // Limits are metered around `decide`, not by it (`decide_metered`).
            limits: Limits::default(),
            // The IP source guard has a target of its own (`ip_guard`).
            allowed_ips: Vec::new(),
        });
    }
    let tables = Tables::new(mode, &slots, up, Arc::clone(&fdb))
        .expect("the set-up is a valid one")
        .with_group_fwd_mask(group_fwd_mask);
    for &(port, mac) in &statics {
        for vid in 0..=4 {
            fdb.insert_static(vid, mac, port);
        }
    }

    let aware = tables.vlans.is_aware();
    let policy = |p: PortId| slots.get(usize::from(p)).and_then(Option::as_ref);
    let configured = |p: PortId| policy(p).is_some();
    let in_vlan =
        |p: PortId, vid: VlanId| !aware || carries(policy(p).and_then(|p| p.vlans.as_ref()), vid);
    let relayed_groups = group_fwd_mask & !GROUP_FWD_RESTRICTED;
    let uplink = uplink.map(slot);

    while !input.is_empty() {
        let control = input.byte();
        let now = u32::from(input.byte());
        let len = usize::from(input.byte());
        let frame = input.take(len);
        let ingress = slot(usize::from(control & 0x7f) % n);
        if control & 0x80 != 0 {
            fdb.age(now, 2);
        }
        // Frames come in only through the sockets of configured ports.
        let Some(from) = policy(ingress) else {
            continue;
        };
        let verdict = hairpin::switch::decide(&tables, frame, ingress, now);
        let action = verdict.action;
        let vid = verdict.vlan.vid;
        if from.monitor {
            assert_eq!(
                action,
                Action::Drop(DropReason::Monitor),
                "{mode}: a monitor port's frame went on"
            );
            continue;
        }
        if frame.len() < 14 {
            assert_eq!(action, Action::Drop(DropReason::Runt), "a runt");
            continue;
        }
        if matches!(action, Action::Drop(DropReason::Runt)) {
            assert!(frame.len() < 14 + TAG_LEN, "only a cut tag is a runt too");
        }
        if patch {
            let peer = ingress ^ 1;
            let spoofed = mode == Mode::Passthru
                && !from.allowed_sources.is_empty()
                && !from.allowed_sources.contains(&src(frame));
            let expected = if spoofed {
                Action::Drop(DropReason::Spoofed)
            } else if up.contains(peer) {
                Action::Forward(peer)
            } else {
                Action::Drop(DropReason::PortDown)
            };
            assert_eq!(action, expected, "{mode}: frames cross to the peer");
            continue;
        }
        let targets = match action {
            Action::Drop(_) => continue,
            Action::Forward(p) => PortSet::EMPTY.with(p),
            Action::Flood(set) => {
                assert!(!set.is_empty(), "{mode}: a flood to nobody");
                if edge {
                    assert_eq!(Some(ingress), uplink, "{mode}: a downlink's frame flooded");
                }
                set
            }
        };
        // Whatever passes: a learnable, allowed source in one of the port's VLANs, to a
        // destination the bridge relays, in the tag the frame came with.
        let source = src(frame);
        assert!(source.is_learnable(), "{mode}: a bad source passed");
        assert!(
            from.allowed_sources.is_empty() || from.allowed_sources.contains(&source),
            "{mode}: a spoofed source passed"
        );
        if let Some(bit) = dst(frame).reserved_group() {
            assert!(
                relayed_groups & (1 << bit) != 0,
                "{mode}: reserved group {bit:#x} relayed"
            );
        }
        assert!(in_vlan(ingress, vid), "{mode}: admitted outside its VLANs");
        let tagged = u16::from_be_bytes([frame[12], frame[13]]) == TPID_8021Q;
        if aware {
            assert_eq!(verdict.vlan.tci.is_some(), tagged, "{mode}: the tag seen");
        } else {
            assert_eq!(verdict.vlan, Default::default(), "{mode}: unaware VLAN");
        }
        let mut tag = [0; TAG_LEN];
        for p in targets.iter() {
            assert!(configured(p), "{mode}: to port {p}, not configured");
            assert!(
                policy(p).is_some_and(|p| !p.monitor),
                "{mode}: to port {p}, a monitor port"
            );
            assert!(up.contains(p), "{mode}: to port {p}, which is down");
            assert!(
                p != ingress || from.hairpin,
                "{mode}: back to the ingress port without hairpin"
            );
            assert!(
                in_vlan(p, vid),
                "{mode}: out of port {p}, not in VLAN {vid}"
            );
            if edge && Some(ingress) != uplink {
                assert_eq!(
                    Some(p),
                    uplink,
                    "{mode}: a downlink's frame not to the uplink"
                );
            }
            if edge && Some(ingress) == uplink && matches!(action, Action::Flood(_)) {
                assert_ne!(Some(p), uplink, "{mode}: a flood back up");
            }
            // How it leaves: retagged for the port, without a panic, one tag at most
            // added or removed.
            let parts = vlan::retagged_parts(frame, tables.vlans.retag(verdict.vlan, p), &mut tag);
            let out_len: usize = parts.iter().map(|part| part.len()).sum();
            assert!(out_len.abs_diff(frame.len()) <= TAG_LEN);
        }
    }
});

fn dst(frame: &[u8]) -> Mac {
    Mac(frame[..6].try_into().unwrap())
}

fn src(frame: &[u8]) -> Mac {
    Mac(frame[6..12].try_into().unwrap())
}
