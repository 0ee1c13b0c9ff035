//! VLAN classification and retagging (`hairpin::switch::vlan`) against a model of
//! 802.1Q as the module documents it, written here from scratch: which VLAN a frame
//! belongs to on ingress, who carries it, and the bytes it leaves each port with.
//!
//! The input: ports (`1 + b % 8`), per port two bytes (the setting, `% 4`: none, access,
//! trunk, trunk with a native VLAN; then the access VLAN `1 + b % 8`, or the trunk's
//! VLANs 1-8 as bits, a native trunk's VLAN `1 + b % 8` being a third byte), the port
//! whose VLAN list is checked (`% ports`), then frames until the input ends: ingress
//! (`% ports`), length, bytes.
#![no_main]

use hairpin::{
    switch::{
        DropReason, PortId, PortSet, VlanId,
        vlan::{Classified, PortVlans, VlanTable, retagged_parts},
    },
    wire::dot1q::{TAG_LEN, TPID_8021AD, TPID_8021Q, TPID_QINQ_LEGACY},
};
use hairpin_fuzz::Input;
use libfuzzer_sys::fuzz_target;

/// One port as the model sees it.
struct Port {
    /// The VLAN of its untagged frames: an access port's, a trunk's native one.
    untagged: Option<VlanId>,
    /// Takes tagged frames.
    trunk: bool,
    /// Every VLAN it carries.
    vlans: Vec<VlanId>,
}

impl Port {
    fn new(setting: Option<&PortVlans>) -> Self {
        match setting {
            // A port without a setting on a VLAN-aware bridge: access port of VLAN 1.
            None => Self::new(Some(&PortVlans::Access(1))),
            Some(PortVlans::Access(v)) => Self {
                untagged: Some(*v),
                trunk: false,
                vlans: vec![*v],
            },
            Some(PortVlans::Trunk { tagged, native }) => Self {
                untagged: *native,
                trunk: true,
                vlans: tagged.iter().copied().chain(*native).collect(),
            },
        }
    }

    fn carries(&self, vid: VlanId) -> bool {
        self.vlans.contains(&vid)
    }

    /// The frame's VLAN and tag on ingress, or why it is dropped.
    fn classify(&self, frame: &[u8]) -> Result<Classified, DropReason> {
        let be = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
        match be(12) {
            TPID_8021Q if frame.len() < 18 => Err(DropReason::Runt),
            TPID_8021Q => {
                let tci = be(14);
                let vid = match tci & 0x0fff {
                    // A priority tag: the frame is untagged, unless it hides a second tag.
                    0 if matches!(be(16), TPID_8021Q | TPID_8021AD | TPID_QINQ_LEGACY) => {
                        return Err(DropReason::Vlan);
                    }
                    0 => self.untagged.ok_or(DropReason::Vlan)?,
                    vid if self.trunk && self.carries(vid) => vid,
                    _ => return Err(DropReason::Vlan),
                };
                Ok(Classified {
                    vid,
                    tci: Some(tci),
                })
            }
            TPID_8021AD | TPID_QINQ_LEGACY => Err(DropReason::Vlan),
            _ => self
                .untagged
                .map(|vid| Classified { vid, tci: None })
                .ok_or(DropReason::Vlan),
        }
    }

    /// The frame classified as `c` as it leaves this port: untagged where the port
    /// sends the VLAN untagged, else with one tag of the VLAN, the priority kept.
    fn egress(&self, frame: &[u8], c: Classified) -> Vec<u8> {
        let rest = if c.tci.is_some() {
            &frame[12 + TAG_LEN..]
        } else {
            &frame[12..]
        };
        let mut out = frame[..12].to_vec();
        if self.untagged != Some(c.vid) {
            let tci = (c.tci.unwrap_or(0) & 0xf000) | c.vid;
            out.extend(TPID_8021Q.to_be_bytes());
            out.extend(tci.to_be_bytes());
        }
        out.extend(rest);
        out
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let n = 1 + usize::from(input.byte() % 8);
    let settings: Vec<Option<PortVlans>> = (0..n)
        .map(|_| {
            let (kind, b) = (input.byte() % 4, input.byte());
            match kind {
                0 => None,
                1 => Some(PortVlans::Access(1 + VlanId::from(b % 8))),
                _ => Some(PortVlans::Trunk {
                    tagged: (1..=8).filter(|v| b & (1 << (v - 1)) != 0).collect(),
                    native: (kind == 3).then(|| 1 + VlanId::from(input.byte() % 8)),
                }),
            }
        })
        .collect();
    let table = VlanTable::new(&settings);
    let aware = settings.iter().any(Option::is_some);
    assert_eq!(table.is_aware(), aware);
    let ports: Vec<Port> = settings.iter().map(|s| Port::new(s.as_ref())).collect();
    let all = PortSet::first(n);
    // One port's VLANs (a walk over all 4096 VLANs: one port per input is enough).
    let listed = usize::from(input.byte()) % n;
    let vlans: Vec<VlanId> = table.vlans_of(listed as PortId).collect();
    let mut expected = if aware {
        ports[listed].vlans.clone()
    } else {
        vec![]
    };
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(vlans, expected, "the VLANs of port {listed}");

    while !input.is_empty() {
        let ingress = usize::from(input.byte()) % n;
        let len = usize::from(input.byte());
        let frame = input.take(len);
        if frame.len() < 14 {
            // `classify` takes frames `decide` has checked to hold an Ethernet header.
            continue;
        }
        let got = table.classify(frame, ingress as PortId);
        if !aware {
            // VLAN-unaware: one VLAN, every frame forwarded as it came.
            assert_eq!(got, Ok(Classified::default()));
            for egress in 0..n {
                let retag = table.retag(Classified::default(), egress as PortId);
                let mut tag = [0; TAG_LEN];
                assert_eq!(retagged_parts(frame, retag, &mut tag).concat(), frame);
            }
            continue;
        }
        let expected = ports[ingress].classify(frame);
        assert_eq!(got, expected, "classified on port {ingress}");
        let Ok(c) = got else { continue };
        let members: Vec<usize> = (0..n).filter(|&p| ports[p].carries(c.vid)).collect();
        let set = table.members(c.vid, &all);
        assert_eq!(
            set.iter().map(usize::from).collect::<Vec<_>>(),
            members,
            "members of VLAN {}",
            c.vid
        );
        for &egress in &members {
            let mut tag = [0; TAG_LEN];
            let retag = table.retag(c, egress as PortId);
            let out = retagged_parts(frame, retag, &mut tag).concat();
            assert_eq!(
                out,
                ports[egress].egress(frame, c),
                "{c:?} out of port {egress} ({retag:?})"
            );
            // What a port sends comes back in on it in the same VLAN, unless popping
            // the tag bared another one (a tag in a tag, or a service tag, behind it).
            let bared = u16::from_be_bytes([out[12], out[13]]);
            let inner_tag = c.tci.is_some()
                && ports[egress].untagged == Some(c.vid)
                && matches!(bared, TPID_8021Q | TPID_8021AD | TPID_QINQ_LEGACY);
            if !inner_tag {
                let back = table.classify(&out, egress as PortId).map(|c| c.vid);
                assert_eq!(back, Ok(c.vid), "{out:02x?} back in on port {egress}");
            }
        }
    }
});
