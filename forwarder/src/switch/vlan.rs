//! 802.1Q VLANs: which VLAN a frame belongs to on ingress, which ports carry each VLAN,
//! and whether a frame leaves a port tagged.
//!
//! A bridge is VLAN-aware as soon as one port has a VLAN setting (as a Linux bridge with
//! `vlan_filtering 1`); ports without one are then access ports of VLAN 1 (the Linux
//! bridge's default PVID). A VLAN-unaware bridge forwards every frame as it came, tags
//! and all, with one MAC table (VLAN 0).
//!
//! Per port, either an **access** VLAN (untagged in and out) or a **trunk**: a list of
//! VLANs carried tagged, and optionally a native VLAN carried untagged. On ingress:
//!
//! - an untagged frame belongs to the port's access or native VLAN; a trunk without a
//!   native VLAN drops it;
//! - a priority-tagged frame (an 802.1Q tag with VLAN 0, which carries only a priority)
//!   is an untagged one, on access ports and trunks alike (802.1Q 6.9.1, as the Linux
//!   bridge and Open vSwitch do), unless a second tag follows it;
//! - an 802.1Q-tagged frame belongs to the VLAN of its tag if the port is a trunk that
//!   carries it;
//! - everything else is dropped (`vlan`): a frame tagged with a VLAN on an access port,
//!   a priority tag in front of another tag (no VLAN hopping by double tagging), a tag
//!   for a VLAN the trunk does not carry, and 802.1ad service tags (hairpin is not a
//!   provider bridge).
//!
//! On egress a priority tag goes where the frame leaves untagged (access ports, a
//! trunk's native VLAN), as in the Linux bridge and Open vSwitch (whose
//! `priority-tags` is off by default); where it leaves tagged, the VLAN is filled in
//! and the priority kept.
use std::fmt;

use super::{DropReason, PortId, PortSet, VlanId};
use crate::wire::{
    Dot1qTag,
    dot1q::{
        self, INNER_OFFSET, OFFSET, TAG_LEN, TCI_OFFSET, TPID_8021AD, TPID_8021Q, TPID_QINQ_LEGACY,
        VID_MASK,
    },
};

/// The VLAN ports belong to when nothing says otherwise.
pub const DEFAULT_VLAN: VlanId = 1;
/// VLAN IDs an operator may use: 0 means "priority tag only" and 4095 is reserved.
pub const USABLE: std::ops::RangeInclusive<VlanId> = 1..=4094;

/// One port's VLAN setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortVlans {
    /// Untagged in and out, in this VLAN.
    Access(VlanId),
    /// These VLANs tagged; untagged frames in `native`, if any.
    Trunk {
        /// VLANs carried tagged.
        tagged: Vec<VlanId>,
        /// The VLAN untagged frames belong to (sent untagged).
        native: Option<VlanId>,
    },
}

impl PortVlans {
    /// Every VLAN the port carries.
    pub fn vlans(&self) -> impl Iterator<Item = VlanId> + '_ {
        let (untagged, tagged): (Option<VlanId>, &[VlanId]) = match self {
            Self::Access(v) => (Some(*v), &[]),
            Self::Trunk { tagged, native } => (*native, tagged),
        };
        untagged.into_iter().chain(tagged.iter().copied())
    }
}

impl fmt::Display for PortVlans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Access(v) => write!(f, "access VLAN {v}"),
            Self::Trunk { tagged, native } => {
                write!(f, "trunk of {} VLAN(s)", tagged.len())?;
                if let Some(n) = native {
                    write!(f, ", native VLAN {n}")?;
                }
                Ok(())
            }
        }
    }
}

/// A VLAN ID outside 1–4094.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("VLAN {0} is outside 1-4094")]
pub struct BadVlan(pub u32);

/// Parses a VLAN list such as `10,20,100-110`.
pub fn parse_list(text: &str) -> Result<Vec<VlanId>, String> {
    let one = |s: &str| -> Result<VlanId, String> {
        let v: u32 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a VLAN number"))?;
        check(v).map_err(|e| e.to_string())
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (one(a)?, one(b)?);
                if a > b {
                    return Err(format!("{part:?}: the range runs backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(one(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Checks that `v` is a usable VLAN ID.
pub fn check(v: u32) -> Result<VlanId, BadVlan> {
    match VlanId::try_from(v) {
        Ok(id) if USABLE.contains(&id) => Ok(id),
        _ => Err(BadVlan(v)),
    }
}

/// A frame's VLAN as ingress classified it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Classified {
    /// The VLAN (0 on a VLAN-unaware bridge).
    pub vid: VlanId,
    /// The tag control information, if the frame arrived with an 802.1Q tag.
    pub tci: Option<u16>,
}

/// What to do to a frame's tag on its way out of one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retag {
    /// Leave it as it is.
    Keep,
    /// Insert a tag with this TCI after the source MAC.
    Push(u16),
    /// Remove the tag.
    Pop,
    /// Overwrite the tag's TCI (a priority-tagged frame leaving tagged).
    Rewrite(u16),
}

/// Who carries which VLAN, built once from the ports' settings.
#[derive(Debug)]
pub struct VlanTable {
    aware: bool,
    /// Per port: the VLAN of its untagged frames.
    pvid: Vec<Option<VlanId>>,
    /// Per port: whether it accepts tagged frames at all (a trunk).
    trunk: PortSet,
    /// Per VLAN id (4096, when aware): its index in `sets`, 0 for a VLAN no port
    /// carries. A port set is 128 bytes; a few VLANs in use keep the table small.
    index: Box<[u16]>,
    /// Per VLAN in use, after an empty first: the ports that carry it, and those that
    /// send it untagged.
    sets: Vec<VlanPorts>,
    /// The VLAN id of each of `sets`.
    vids: Vec<VlanId>,
}

/// The ports of one VLAN.
#[derive(Clone, Copy, Debug, Default)]
struct VlanPorts {
    members: PortSet,
    untagged: PortSet,
}

impl VlanTable {
    /// The table for ports with these settings (`None`: no setting). VLAN-unaware if no
    /// port has one.
    pub fn new(ports: &[Option<PortVlans>]) -> Self {
        let aware = ports.iter().any(Option::is_some);
        let mut table = Self {
            aware,
            pvid: vec![None; ports.len()],
            trunk: PortSet::EMPTY,
            index: Box::default(),
            sets: vec![VlanPorts::default()],
            vids: vec![0],
        };
        if !aware {
            return table;
        }
        table.index = vec![0; 4096].into_boxed_slice();
        for (i, setting) in ports.iter().enumerate() {
            let port = i as PortId;
            let setting = setting.clone().unwrap_or(PortVlans::Access(DEFAULT_VLAN));
            let untagged = match &setting {
                PortVlans::Access(v) => Some(*v),
                PortVlans::Trunk { native, .. } => {
                    table.trunk = table.trunk.with(port);
                    *native
                }
            };
            table.pvid[i] = untagged;
            for v in setting.vlans() {
                let set = table.set_mut(v);
                set.members = set.members.with(port);
            }
            if let Some(v) = untagged {
                let set = table.set_mut(v);
                set.untagged = set.untagged.with(port);
            }
        }
        table
    }

    /// VLAN `vid`'s ports, made when first asked for.
    fn set_mut(&mut self, vid: VlanId) -> &mut VlanPorts {
        let v = usize::from(vid & 0xfff);
        if self.index[v] == 0 {
            self.index[v] = self.sets.len() as u16;
            self.sets.push(VlanPorts::default());
            self.vids.push(vid & 0xfff);
        }
        &mut self.sets[usize::from(self.index[v])]
    }

    /// VLAN `vid`'s ports (none when no port carries it or the bridge is unaware).
    #[inline]
    fn set(&self, vid: VlanId) -> &VlanPorts {
        let i = self
            .index
            .get(usize::from(vid & 0xfff))
            .copied()
            .unwrap_or(0);
        &self.sets[usize::from(i)]
    }

    /// Every VLAN some port carries (none on a VLAN-unaware bridge).
    pub fn in_use(&self) -> impl Iterator<Item = VlanId> + '_ {
        self.vids.iter().skip(1).copied()
    }

    /// Whether any port has a VLAN setting.
    pub fn is_aware(&self) -> bool {
        self.aware
    }

    /// The ports that carry `vid` (every port on a VLAN-unaware bridge).
    #[inline]
    pub fn members<'a>(&'a self, vid: VlanId, all: &'a PortSet) -> &'a PortSet {
        if self.aware {
            &self.set(vid).members
        } else {
            all
        }
    }

    /// The VLAN of `port`'s untagged frames (none on a VLAN-unaware bridge, or a trunk
    /// without a native VLAN).
    pub fn pvid(&self, port: PortId) -> Option<VlanId> {
        self.pvid.get(usize::from(port)).copied().flatten()
    }

    /// Whether `port` takes tagged frames (a trunk).
    pub fn is_trunk(&self, port: PortId) -> bool {
        self.trunk.contains(port)
    }

    /// Every VLAN `port` carries (none on a VLAN-unaware bridge).
    pub fn vlans_of(&self, port: PortId) -> impl Iterator<Item = VlanId> {
        let mut vids: Vec<VlanId> = (self.vids.iter().zip(&self.sets))
            .skip(1)
            .filter(|(_, set)| set.members.contains(port))
            .map(|(&vid, _)| vid)
            .collect();
        vids.sort_unstable();
        vids.into_iter()
    }

    /// The VLAN of `frame` (at least an Ethernet header long) received on `ingress`, or
    /// why it is dropped.
    #[inline]
    pub fn classify(&self, frame: &[u8], ingress: PortId) -> Result<Classified, DropReason> {
        if !self.aware {
            return Ok(Classified::default());
        }
        let ethertype = u16::from_be_bytes([frame[OFFSET], frame[OFFSET + 1]]);
        let pvid = self.pvid[usize::from(ingress)];
        match ethertype {
            TPID_8021Q => {
                let tag = Dot1qTag::new_checked(frame).map_err(|_| DropReason::Runt)?;
                let tci = tag.tci();
                let vid = match tag.vid() {
                    0 => {
                        // A priority tag: untagged, unless another tag hides behind it.
                        if dot1q::is_stacking(tag.inner_ethertype()) {
                            return Err(DropReason::Vlan);
                        }
                        pvid.ok_or(DropReason::Vlan)?
                    }
                    _ if !self.trunk.contains(ingress) => return Err(DropReason::Vlan),
                    v => v,
                };
                if self.set(vid).members.contains(ingress) {
                    Ok(Classified {
                        vid,
                        tci: Some(tci),
                    })
                } else {
                    Err(DropReason::Vlan)
                }
            }
            TPID_8021AD | TPID_QINQ_LEGACY => Err(DropReason::Vlan),
            _ => pvid
                .map(|vid| Classified { vid, tci: None })
                .ok_or(DropReason::Vlan),
        }
    }

    /// What a frame classified as `c` needs on its way out of `egress` (a member of its
    /// VLAN).
    #[inline]
    pub fn retag(&self, c: Classified, egress: PortId) -> Retag {
        if !self.aware {
            return Retag::Keep;
        }
        let tagged = !self.set(c.vid).untagged.contains(egress);
        match (c.tci, tagged) {
            (None, false) => Retag::Keep,
            (None, true) => Retag::Push(c.vid),
            (Some(_), false) => Retag::Pop,
            (Some(tci), true) if tci & VID_MASK == c.vid => Retag::Keep,
            // A priority tag: keep its priority, fill in the VLAN.
            (Some(tci), true) => Retag::Rewrite((tci & !VID_MASK) | c.vid),
        }
    }
}

/// `frame` with `retag` applied, as up to three slices to copy one after the other
/// (`tag` holds the bytes of a pushed or rewritten tag).
pub fn retagged_parts<'a>(
    frame: &'a [u8],
    retag: Retag,
    tag: &'a mut [u8; TAG_LEN],
) -> [&'a [u8]; 3] {
    match retag {
        Retag::Keep => [frame, &[], &[]],
        Retag::Push(tci) => {
            *tag = dot1q::tag(tci);
            [&frame[..OFFSET], &tag[..], &frame[OFFSET..]]
        }
        Retag::Pop => [&frame[..OFFSET], &frame[OFFSET + TAG_LEN..], &[]],
        Retag::Rewrite(tci) => {
            tag[..2].copy_from_slice(&tci.to_be_bytes());
            [&frame[..TCI_OFFSET], &tag[..2], &frame[INNER_OFFSET..]]
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn untagged() -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0] = 2;
        f[6] = 2;
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    fn tagged(tpid: u16, tci: u16) -> Vec<u8> {
        let mut f = untagged();
        f.splice(
            12..12,
            tpid.to_be_bytes().into_iter().chain(tci.to_be_bytes()),
        );
        f
    }

    fn table() -> VlanTable {
        // 0: access 10; 1: access 20; 2: trunk 10,20 native 30; 3: no setting (VLAN 1).
        VlanTable::new(&[
            Some(PortVlans::Access(10)),
            Some(PortVlans::Access(20)),
            Some(PortVlans::Trunk {
                tagged: vec![10, 20],
                native: Some(30),
            }),
            None,
        ])
    }

    #[test]
    fn lists_parse_with_ranges_and_refuse_bad_ids() {
        assert_eq!(parse_list("10,20,30-32").unwrap(), vec![10, 20, 30, 31, 32]);
        assert_eq!(parse_list("5,5,4").unwrap(), vec![4, 5]);
        assert!(parse_list("0").is_err());
        assert!(parse_list("4095").is_err());
        assert!(parse_list("20-10").is_err());
        assert!(parse_list("ten").is_err());
        assert!(parse_list("").is_err());
    }

    #[test]
    fn ingress_puts_frames_in_their_port_s_vlan() {
        let t = table();
        let c = |f: &[u8], p| t.classify(f, p);
        assert_eq!(c(&untagged(), 0), Ok(Classified { vid: 10, tci: None }));
        assert_eq!(c(&untagged(), 2), Ok(Classified { vid: 30, tci: None }));
        assert_eq!(c(&untagged(), 3), Ok(Classified { vid: 1, tci: None }));
        assert_eq!(
            c(&tagged(TPID_8021Q, 0x2014), 2),
            Ok(Classified {
                vid: 20,
                tci: Some(0x2014)
            })
        );
        // A priority tag is the native VLAN's.
        assert_eq!(
            c(&tagged(TPID_8021Q, 0x6000), 2),
            Ok(Classified {
                vid: 30,
                tci: Some(0x6000)
            })
        );
    }

    #[test]
    fn priority_tagged_frames_on_access_ports_are_the_access_vlans() {
        let t = table();
        // Priority 5 on access port 0 (VLAN 10): in VLAN 10, the priority kept.
        let c = t.classify(&tagged(TPID_8021Q, 0xa000), 0);
        assert_eq!(
            c,
            Ok(Classified {
                vid: 10,
                tci: Some(0xa000)
            })
        );
        let c = c.unwrap();
        // Untagged out of an access port of VLAN 10 (port 0 itself, the only one here),
        // the priority tag gone; tagged out of a trunk with the VLAN filled in and the
        // priority kept.
        assert_eq!(t.retag(c, 0), Retag::Pop);
        assert_eq!(t.retag(c, 2), Retag::Rewrite(0xa00a));
        // The frame as it leaves the trunk.
        let frame = tagged(TPID_8021Q, 0xa000);
        let mut tag = [0; TAG_LEN];
        let out = retagged_parts(&frame, t.retag(c, 2), &mut tag).concat();
        assert_eq!(out, tagged(TPID_8021Q, 0xa00a));
        let out = retagged_parts(&frame, t.retag(c, 0), &mut tag).concat();
        assert_eq!(out, untagged());
        // On a port without a setting (VLAN 1) too.
        assert_eq!(
            t.classify(&tagged(TPID_8021Q, 0x2000), 3),
            Ok(Classified {
                vid: 1,
                tci: Some(0x2000)
            })
        );
    }

    #[test]
    fn a_priority_tag_never_hides_a_second_tag() {
        let t = table();
        for inner in [TPID_8021Q, TPID_8021AD, TPID_QINQ_LEGACY] {
            let mut hop = tagged(inner, 20);
            hop.splice(12..12, [0x81, 0x00, 0x00, 0x00]);
            assert_eq!(t.classify(&hop, 0), Err(DropReason::Vlan), "{inner:#x}");
            assert_eq!(t.classify(&hop, 2), Err(DropReason::Vlan), "{inner:#x}");
        }
    }

    #[test]
    fn tagged_frames_never_hop_vlans() {
        let t = table();
        // A tag on an access port, even for the port's own VLAN, and double tags.
        assert_eq!(
            t.classify(&tagged(TPID_8021Q, 10), 0),
            Err(DropReason::Vlan)
        );
        assert_eq!(
            t.classify(&tagged(TPID_8021Q, 20), 0),
            Err(DropReason::Vlan)
        );
        let mut double = tagged(TPID_8021Q, 20);
        double.splice(12..12, [0x88, 0xa8, 0x00, 0x0a]);
        assert_eq!(t.classify(&double, 0), Err(DropReason::Vlan));
        assert_eq!(t.classify(&double, 2), Err(DropReason::Vlan));
        // A trunk refuses VLANs it does not carry.
        assert_eq!(
            t.classify(&tagged(TPID_8021Q, 99), 2),
            Err(DropReason::Vlan)
        );
        // A trunk without a native VLAN refuses untagged and priority-tagged frames.
        let bare = VlanTable::new(&[Some(PortVlans::Trunk {
            tagged: vec![10],
            native: None,
        })]);
        assert_eq!(bare.classify(&untagged(), 0), Err(DropReason::Vlan));
        assert_eq!(
            bare.classify(&tagged(TPID_8021Q, 0), 0),
            Err(DropReason::Vlan)
        );
        // A truncated tag.
        assert_eq!(
            t.classify(&tagged(TPID_8021Q, 10)[..15], 2),
            Err(DropReason::Runt)
        );
    }

    #[test]
    fn egress_tags_exactly_where_the_port_carries_the_vlan_tagged() {
        let t = table();
        let plain = |vid| Classified { vid, tci: None };
        let tag = |vid, tci| Classified {
            vid,
            tci: Some(tci),
        };
        assert_eq!(
            *t.members(10, &PortSet::first(4)),
            PortSet::EMPTY.with(0).with(2)
        );
        assert_eq!(*t.members(1, &PortSet::first(4)), PortSet::EMPTY.with(3));
        assert_eq!(t.retag(plain(10), 0), Retag::Keep);
        assert_eq!(t.retag(plain(10), 2), Retag::Push(10));
        assert_eq!(t.retag(tag(10, 0x200a), 0), Retag::Pop);
        assert_eq!(t.retag(tag(10, 0x200a), 2), Retag::Keep);
        assert_eq!(t.retag(tag(30, 0x6000), 2), Retag::Pop);
        let unaware = VlanTable::new(&[None, None]);
        assert!(!unaware.is_aware());
        assert_eq!(
            unaware.classify(&tagged(TPID_8021Q, 10), 0),
            Ok(Classified::default())
        );
        assert_eq!(unaware.retag(plain(0), 1), Retag::Keep);
    }

    #[test]
    fn retagged_frames_have_the_right_bytes() {
        let frame = untagged();
        let mut tag = [0; TAG_LEN];
        let pushed: Vec<u8> = retagged_parts(&frame, Retag::Push(0x0014), &mut tag).concat();
        assert_eq!(pushed, tagged(TPID_8021Q, 0x0014));
        let popped: Vec<u8> = retagged_parts(&pushed, Retag::Pop, &mut tag).concat();
        assert_eq!(popped, frame);
        let prio = tagged(TPID_8021Q, 0x6000);
        let rewritten: Vec<u8> = retagged_parts(&prio, Retag::Rewrite(0x601e), &mut tag).concat();
        assert_eq!(rewritten, tagged(TPID_8021Q, 0x601e));
        assert_eq!(
            retagged_parts(&frame, Retag::Keep, &mut tag).concat(),
            frame
        );
    }

    /// A port as the model sees it.
    struct ModelPort {
        /// The VLAN its untagged frames belong to, and that it sends untagged.
        untagged: Option<VlanId>,
        /// The VLANs it takes tagged (a trunk's, its native VLAN included); none on an
        /// access port.
        tagged: Vec<VlanId>,
    }

    impl ModelPort {
        /// A port with `setting`, on a VLAN-aware bridge.
        fn new(setting: &Option<PortVlans>) -> Self {
            match setting {
                // No setting: an access port of VLAN 1.
                None => Self {
                    untagged: Some(1),
                    tagged: vec![],
                },
                Some(PortVlans::Access(v)) => Self {
                    untagged: Some(*v),
                    tagged: vec![],
                },
                Some(PortVlans::Trunk { tagged, native }) => Self {
                    untagged: *native,
                    tagged: tagged.iter().copied().chain(*native).collect(),
                },
            }
        }

        fn carries(&self, vid: VlanId) -> bool {
            self.untagged == Some(vid) || self.tagged.contains(&vid)
        }
    }

    /// The two bytes of `frame` at `at`, if it has them.
    fn be16(frame: &[u8], at: usize) -> Option<u16> {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// The model of ingress: the VLAN `frame` belongs to on `port`, or why it is dropped.
    fn model_ingress(port: &ModelPort, frame: &[u8]) -> Result<VlanId, DropReason> {
        match be16(frame, 12) {
            Some(0x8100) => {
                // A tag is four bytes, its TCI and the inner EtherType: a frame cut short
                // of them is a runt.
                let (Some(tci), Some(inner)) = (be16(frame, 14), be16(frame, 16)) else {
                    return Err(DropReason::Runt);
                };
                match tci & 0x0fff {
                    // A priority tag hiding a second tag is VLAN hopping.
                    0 if matches!(inner, 0x8100 | 0x88a8 | 0x9100) => Err(DropReason::Vlan),
                    // Otherwise it makes an untagged frame.
                    0 => port.untagged.ok_or(DropReason::Vlan),
                    vid if port.tagged.contains(&vid) => Ok(vid),
                    _ => Err(DropReason::Vlan),
                }
            }
            // Service tags.
            Some(0x88a8 | 0x9100) => Err(DropReason::Vlan),
            _ => port.untagged.ok_or(DropReason::Vlan),
        }
    }

    /// The TCI of the 802.1Q tag `frame` came with, if it came with one.
    fn arrived_tci(frame: &[u8]) -> Option<u16> {
        be16(frame, 12)
            .filter(|&tpid| tpid == 0x8100)
            .and(be16(frame, 14))
    }

    /// The model of egress: `frame` (admitted: whole tag included), of VLAN `vid`, as it
    /// leaves `port` (which carries `vid`): untagged where the port sends the VLAN
    /// untagged, else with a tag for `vid` that keeps the priority (and DEI bit) of the
    /// tag it came with.
    fn model_egress(port: &ModelPort, frame: &[u8], vid: VlanId) -> Vec<u8> {
        let arrived_tci = arrived_tci(frame);
        let rest = if arrived_tci.is_some() {
            &frame[16..]
        } else {
            &frame[12..]
        };
        let mut out = frame[..12].to_vec();
        if port.untagged != Some(vid) {
            let tci = arrived_tci.map_or(vid, |tci| (tci & 0xf000) | vid);
            out.extend_from_slice(&[0x81, 0x00]);
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(rest);
        out
    }

    /// A port's VLAN setting: none, access to one of VLANs 1-4, or a trunk of some of
    /// them with or without a native VLAN (which may be one of its tagged ones too).
    fn any_setting() -> impl Strategy<Value = Option<PortVlans>> {
        prop_oneof![
            Just(None),
            (1..=4u16).prop_map(|v| Some(PortVlans::Access(v))),
            (any::<[bool; 4]>(), proptest::option::of(1..=4u16)).prop_map(|(carried, native)| {
                Some(PortVlans::Trunk {
                    tagged: (1..=4).filter(|&v| carried[usize::from(v) - 1]).collect(),
                    native,
                })
            }),
        ]
    }

    /// A tag: mostly 802.1Q, sometimes a service tag; any priority and DEI bit; VLAN 0
    /// (a priority tag), one of the ports' 1-4, or 5, which no port carries.
    fn any_tag() -> impl Strategy<Value = [u8; TAG_LEN]> {
        (
            prop_oneof![
                4 => Just(TPID_8021Q),
                1 => Just(TPID_8021AD),
                1 => Just(TPID_QINQ_LEGACY),
            ],
            0u16..0x10,
            0u16..=5,
        )
            .prop_map(|(tpid, pcp_dei, vid)| {
                let [a, b] = tpid.to_be_bytes();
                let [c, d] = (pcp_dei << 12 | vid).to_be_bytes();
                [a, b, c, d]
            })
    }

    prop_compose! {
        /// A frame with no tag, one or two in front of its EtherType and a short payload;
        /// one in five cut anywhere after the Ethernet header.
        fn any_frame()(
            macs in any::<[u8; 12]>(),
            tags in proptest::collection::vec(any_tag(), 0..=2),
            ethertype in prop_oneof![Just(0x0800u16), Just(0x0806), Just(0x86dd)],
            payload in proptest::collection::vec(any::<u8>(), 0..32),
            cut in proptest::option::weighted(0.2, any::<proptest::sample::Index>()),
        ) -> Vec<u8> {
            let mut f = macs.to_vec();
            f.extend(tags.iter().flatten());
            f.extend_from_slice(&ethertype.to_be_bytes());
            f.extend(payload);
            if let Some(cut) = cut {
                f.truncate(14 + cut.index(f.len() - 13));
            }
            f
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// For any ports' settings and any frame, from any port to any port: `classify`
        /// admits the frame into the VLAN the model does (or drops it for the same
        /// reason), `members` agrees with the model on who carries that VLAN, and
        /// `retag` with `retagged_parts` give the bytes the model pushes, pops or rewrites.
        #[test]
        fn classify_and_retag_agree_with_a_plain_model(
            settings in proptest::collection::vec(any_setting(), 1..=4),
            frame in any_frame(),
        ) {
            let t = VlanTable::new(&settings);
            let all = PortSet::first(settings.len());
            let aware = settings.iter().any(Option::is_some);
            let model: Vec<ModelPort> = settings.iter().map(ModelPort::new).collect();
            for ingress in 0..settings.len() {
                let got = t.classify(&frame, ingress as PortId);
                if !aware {
                    // Every frame passes as it came, in VLAN 0, to every port.
                    prop_assert_eq!(got, Ok(Classified::default()));
                    prop_assert_eq!(*t.members(0, &all), all);
                    for egress in all.iter() {
                        prop_assert_eq!(t.retag(Classified::default(), egress), Retag::Keep);
                    }
                    continue;
                }
                let expected = model_ingress(&model[ingress], &frame);
                prop_assert_eq!(got.map(|c| c.vid), expected, "from port {}", ingress);
                let (Ok(c), Ok(vid)) = (got, expected) else {
                    continue;
                };
                prop_assert_eq!(c.tci, arrived_tci(&frame));
                for (egress, port) in model.iter().enumerate() {
                    let egress = egress as PortId;
                    prop_assert_eq!(t.members(vid, &all).contains(egress), port.carries(vid));
                    if !port.carries(vid) {
                        continue;
                    }
                    let mut tag = [0; TAG_LEN];
                    let out = retagged_parts(&frame, t.retag(c, egress), &mut tag).concat();
                    prop_assert_eq!(
                        out,
                        model_egress(port, &frame, vid),
                        "VLAN {} from port {} to port {}",
                        vid,
                        ingress,
                        egress
                    );
                }
            }
        }
    }
}
