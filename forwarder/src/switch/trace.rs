//! [`trace`]: the switching decision explained, for `hairpin trace`. It runs
//! [`decide_with`] without learning (so the verdict is the one a worker would reach and
//! the MAC table is left as it is) and reads, beside it, what each step saw: the frame's
//! VLAN, the source check, what learning would do, the destination's entry, the mode's
//! rule and the tag action on each egress port, from the same functions the workers use
//! ([`VlanTable::classify`](super::vlan::VlanTable::classify),
//! [`VlanTable::retag`](super::vlan::VlanTable::retag)).
use super::{
    Action, DropReason, Mode, PortId, Tables, Verdict, decide_with,
    fdb::Entry,
    meters::{self, Limit, Rate},
    vlan::{Classified, Retag},
};
use crate::wire::{EthernetFrame, Mac};

/// What learning the frame's source would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learning {
    /// Nothing: the mode learns nothing, or the frame is dropped before learning (a
    /// runt, outside the port's VLANs, a bad or spoofed source, one the IP source guard
    /// refuses, a monitor port's).
    Skipped,
    /// Nothing: a frame from the uplink sourced by a station on a local downlink is a
    /// reflection, not a move.
    Reflection {
        /// The downlink the source lives on.
        home: PortId,
    },
    /// A new entry on the ingress port.
    New,
    /// The entry moves to the ingress port.
    Moved {
        /// The port it is on now.
        from: PortId,
    },
    /// The entry, already on the ingress port, has its stamp refreshed.
    Refreshed,
    /// A static entry, which learning never moves.
    Static {
        /// Its port.
        port: PortId,
    },
    /// Refused: the ingress port holds its `max_macs` learned entries already (the
    /// frame is forwarded all the same).
    Limited {
        /// The port's limit.
        limit: u32,
    },
}

/// One frame's decision, step by step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// [`decide`](super::decide)'s answer.
    pub verdict: Verdict,
    /// The bridge's mode.
    pub mode: Mode,
    /// Whether the bridge is VLAN-aware.
    pub vlan_aware: bool,
    /// The frame's source and destination (`None` for a runt).
    pub addresses: Option<(Mac, Mac)>,
    /// The frame's VLAN, or why ingress refused it (`None` in `xconnect` and
    /// `passthru`, which classify nothing, and for a runt).
    pub classified: Option<Result<Classified, DropReason>>,
    /// The ingress port's anti-spoofing check: `None` with no list on the port,
    /// else whether the source is on it.
    pub source_allowed: Option<bool>,
    /// What learning the source would do.
    pub learning: Learning,
    /// The source's entry in the frame's VLAN before this frame.
    pub source_entry: Option<Entry>,
    /// The destination's entry in the frame's VLAN (unicast destinations only).
    pub destination_entry: Option<Entry>,
    /// The rule that gave the verdict, in words.
    pub rule: &'static str,
    /// Each egress port with the tag action on the way out.
    pub egress: Vec<(PortId, Retag)>,

    /// The ingress port's limits the frame is subject to (its policing, its class's
    /// storm control): whether it is within them depends on the meters' state, which a
    /// trace does not read.
    pub limits: Vec<(Limit, Rate)>,
}

/// Explains what [`decide`](super::decide) does with `frame` received on `ingress` at
/// `now`, without changing the MAC table.
pub fn trace(tables: &Tables, frame: &[u8], ingress: PortId, now: u32) -> Trace {
    let verdict = decide_with::<false>(tables, frame, ingress, now);
    let eth = EthernetFrame::new_checked(frame).ok();
    let addresses = eth.as_ref().map(|e| (e.src(), e.dst()));
    let classifies = !matches!(tables.mode, Mode::Xconnect | Mode::Passthru);
    let classified = match (&eth, classifies) {
        (Some(_), true) => Some(tables.vlans.classify(frame, ingress)),
        _ => None,
    };
    let vid = verdict.vlan.vid;
    let allowed = &tables.allowed_sources[usize::from(ingress)];
    let source_allowed = match (addresses, allowed.is_empty()) {
        (Some((src, _)), false) => Some(allowed.contains(&src)),
        _ => None,
    };
    let source_entry = addresses.and_then(|(src, _)| tables.fdb.get(vid, src));
    let destination_entry = addresses
        .filter(|(_, dst)| !dst.is_multicast())
        .and_then(|(_, dst)| tables.fdb.get(vid, dst));
    let learning = match (addresses, classified) {
        (Some((src, _)), Some(Ok(_)))
            if src.is_learnable()
                && source_allowed != Some(false)
                && !tables.monitors.contains(ingress)
                && verdict.action != Action::Drop(DropReason::IpSpoofed) =>
        {
            learning(tables, ingress, source_entry)
        }
        _ => Learning::Skipped,
    };
    // The one frame whose own learn changes its verdict: a source sent to itself, which
    // decide() finds on the ingress port once it has learned it there.
    let mut verdict = verdict;
    if let Some((src, dst)) = addresses
        && src == dst
        && matches!(
            learning,
            Learning::New | Learning::Moved { .. } | Learning::Refreshed
        )
        && matches!(
            verdict.action,
            Action::Flood(_) | Action::Drop(DropReason::NoEgress)
        )
    {
        verdict.action = if !tables.hairpin.contains(ingress) {
            Action::Drop(DropReason::SameSegment)
        } else if !tables.ports.contains(ingress) {
            Action::Drop(DropReason::PortDown)
        } else {
            Action::Forward(ingress)
        };
    }
    let egress = match verdict.action {
        Action::Forward(port) => vec![(port, tables.vlans.retag(verdict.vlan, port))],
        Action::Flood(ports) => ports
            .iter()
            .map(|port| (port, tables.vlans.retag(verdict.vlan, port)))
            .collect(),
        Action::Drop(_) => Vec::new(),
    };
    let rule = rule(tables, ingress, &verdict, addresses.map(|(_, dst)| dst));
    let limits = meters::subject_to(tables, frame, ingress, verdict.action);
    Trace {
        verdict,
        mode: tables.mode,
        vlan_aware: tables.vlans.is_aware(),
        addresses,
        classified,
        source_allowed,
        learning,
        source_entry,
        destination_entry,
        rule,
        egress,
        limits,
    }
}

/// What learning a learnable, allowed source whose entry is `entry` would do on
/// `ingress` (as [`decide`](super::decide) and [`Fdb::learn_at_most`](super::Fdb::learn_at_most)
/// do it).
fn learning(tables: &Tables, ingress: PortId, entry: Option<Entry>) -> Learning {
    let edge = matches!(tables.mode, Mode::Vepa | Mode::Private);
    if edge
        && tables.uplink == Some(ingress)
        && let Some(home) = entry
            .map(|e| e.port)
            .filter(|&p| tables.downlinks.contains(p))
    {
        return Learning::Reflection { home };
    }
    let limit = tables.max_macs[usize::from(ingress)];
    let at_limit = tables.fdb.learned_on(ingress) >= limit;
    match entry {
        Some(e) if e.is_static => Learning::Static { port: e.port },
        Some(e) if e.port == ingress => Learning::Refreshed,
        Some(_) | None if at_limit => Learning::Limited { limit },
        Some(e) => Learning::Moved { from: e.port },
        None => Learning::New,
    }
}

/// The rule of the mode (or the check) that gave `verdict`, in words.
fn rule(tables: &Tables, ingress: PortId, verdict: &Verdict, dst: Option<Mac>) -> &'static str {
    let from_uplink = tables.uplink == Some(ingress);
    let edge = matches!(tables.mode, Mode::Vepa | Mode::Private);
    let multicast = dst.is_some_and(Mac::is_multicast);
    match (tables.mode, verdict.action) {
        (Mode::Xconnect | Mode::Passthru, Action::Forward(_)) => "to the other port",
        (_, Action::Drop(reason)) => match reason {
            DropReason::Runt => "shorter than an Ethernet header",
            DropReason::BadSourceMac => "a multicast or all-zero source is never forwarded",
            DropReason::Spoofed => "the source is not on the port's anti-spoofing list",
            DropReason::Vlan => "not in a VLAN the ingress port carries",
            DropReason::Reserved => {
                "a reserved group address the group forward mask does not relay"
            }
            DropReason::NoUplink => "a downlink's frames go to the uplink, and there is none",
            DropReason::PrivateIsolation => "private: a reflected frame reaches no other downlink",
            DropReason::SameSegment => "the destination lives on the ingress segment",
            DropReason::PortDown => "the egress port is down",
            DropReason::NoEgress => "no port to send it to",
            DropReason::Monitor if tables.monitors.contains(ingress) => {
                "a mirror's monitor port: it sends the mirror's copies and forwards nothing"
            }
            DropReason::Monitor => "the destination is on a mirror's monitor port",
            DropReason::Storm => "over the ingress port's storm control limit for its class",
            DropReason::Policed => "over the ingress port's policing limit",
            DropReason::IpSpoofed => "the port's IP source guard refuses it (allow_ip)",
            _ => "dropped",
        },
        (_, Action::Forward(_)) if edge && !from_uplink => "a downlink's frames go to the uplink",
        (_, Action::Forward(_)) if edge => "from the uplink: to the destination's downlink",
        (_, Action::Forward(_)) => "known unicast: to the destination's port",
        (_, Action::Flood(_)) if multicast => {
            "broadcast or multicast: to every other port of the VLAN"
        }
        (_, Action::Flood(_)) => "unknown unicast: flooded to every other port of the VLAN",
    }
}

impl Retag {
    /// The action in words: `keep`, `push VID 10`, `pop`, `rewrite VID 10 PCP 3`.
    pub fn describe(self) -> String {
        match self {
            Self::Keep => "keep".to_owned(),
            Self::Push(tci) => format!("push VID {}{}", tci & 0x0fff, pcp(tci)),
            Self::Pop => "pop".to_owned(),
            Self::Rewrite(tci) => format!("rewrite VID {}{}", tci & 0x0fff, pcp(tci)),
        }
    }
}

fn pcp(tci: u16) -> String {
    match tci >> 13 {
        0 => String::new(),
        p => format!(" PCP {p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::{PortPolicy, PortSet, decide, tables::tables_of, vlan::PortVlans};

    const A: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);
    const B: Mac = Mac([0x02, 0, 0, 0, 0, 0x0b]);

    fn frame(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = Vec::with_capacity(60);
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.resize(60, 0);
        f
    }

    fn veb(ports: usize) -> Tables {
        Tables::with_ports(Mode::Veb, ports, 1024).unwrap()
    }

    #[test]
    fn deciding_without_learning_leaves_the_table_and_gives_the_same_verdict() {
        let t = veb(3);
        let f = frame(B, A);
        let quiet = decide_with::<false>(&t, &f, 0, 1);
        assert!(t.fdb.is_empty(), "nothing learned");
        assert_eq!(quiet, decide(&t, &f, 0, 1));
        assert_eq!(t.fdb.lookup(0, A), Some(0), "decide itself learns");
        let back = frame(A, B);
        assert_eq!(
            decide_with::<false>(&t, &back, 2, 1),
            decide(&t, &back, 2, 1)
        );
        let before = t.fdb.entries();
        let traced = trace(&t, &frame(A, B), 1, 5);
        assert_eq!(t.fdb.entries(), before, "a trace changes nothing");
        assert_eq!(traced.learning, Learning::Moved { from: 2 });
    }

    #[test]
    fn a_known_unicast_goes_to_its_port_and_learning_refreshes() {
        let t = veb(3);
        decide(&t, &frame(B, A), 0, 1);
        decide(&t, &frame(A, B), 2, 1);
        let tr = trace(&t, &frame(B, A), 0, 1);
        assert_eq!(tr.verdict.action, Action::Forward(2));
        assert_eq!(tr.egress, vec![(2, Retag::Keep)]);
        assert_eq!(tr.learning, Learning::Refreshed);
        assert_eq!(tr.destination_entry.map(|e| e.port), Some(2));
        assert_eq!(tr.rule, "known unicast: to the destination's port");
    }

    #[test]
    fn an_unknown_destination_floods_and_a_new_source_would_be_learned() {
        let t = veb(3);
        let tr = trace(&t, &frame(B, A), 1, 1);
        assert_eq!(
            tr.verdict.action,
            Action::Flood(PortSet::EMPTY.with(0).with(2))
        );
        assert_eq!(tr.egress, vec![(0, Retag::Keep), (2, Retag::Keep)]);
        assert_eq!(tr.learning, Learning::New);
        assert!(t.fdb.is_empty());
    }

    #[test]
    fn an_untagged_frame_to_a_trunk_gets_its_vlan_pushed() {
        let mut policies = vec![PortPolicy::default(); 3];
        policies[0].vlans = Some(PortVlans::Access(10));
        policies[1].vlans = Some(PortVlans::Access(10));
        policies[2].vlans = Some(PortVlans::Trunk {
            tagged: vec![10, 20],
            native: None,
        });
        let t = tables_of(Mode::Veb, &policies, 64).unwrap();
        let tr = trace(&t, &frame(B, A), 0, 1);
        assert_eq!(tr.classified, Some(Ok(Classified { vid: 10, tci: None })));
        assert_eq!(tr.egress, vec![(1, Retag::Keep), (2, Retag::Push(10))]);
        assert_eq!(Retag::Push(10).describe(), "push VID 10");
    }

    #[test]
    fn a_spoofed_source_is_dropped_and_not_learned() {
        let mut policies = vec![PortPolicy::default(); 2];
        policies[0].allowed_sources = vec![A];
        let t = tables_of(Mode::Veb, &policies, 16).unwrap();
        let tr = trace(&t, &frame(A, B), 0, 1);
        assert_eq!(tr.verdict.action, Action::Drop(DropReason::Spoofed));
        assert_eq!(tr.source_allowed, Some(false));
        assert_eq!(tr.learning, Learning::Skipped);
        assert!(tr.egress.is_empty());
        assert_eq!(trace(&t, &frame(B, A), 0, 1).source_allowed, Some(true));
    }

    #[test]
    fn a_frame_to_its_own_source_is_traced_as_decide_learns_it() {
        let t = veb(3);
        let f = frame(A, A);
        let traced = trace(&t, &f, 0, 1);
        assert!(t.fdb.is_empty());
        assert_eq!(traced.verdict, decide(&t, &f, 0, 1));
        assert_eq!(traced.verdict.action, Action::Drop(DropReason::SameSegment));
    }

    #[test]
    fn a_reserved_address_is_dropped_but_its_source_learned() {
        let t = veb(2);
        let lldp = Mac([0x01, 0x80, 0xc2, 0, 0, 0x0e]);
        let tr = trace(&t, &frame(lldp, A), 0, 1);
        assert_eq!(tr.verdict.action, Action::Drop(DropReason::Reserved));
        assert_eq!(tr.learning, Learning::New);
        assert!(tr.rule.contains("reserved"));
    }

    #[test]
    fn a_port_at_its_limit_refuses_the_learn_and_a_static_entry_stays() {
        let mut policies = vec![PortPolicy::default(); 2];
        policies[0].max_macs = 1;
        let t = tables_of(Mode::Veb, &policies, 16).unwrap();
        decide(&t, &frame(B, A), 0, 1);
        let c = Mac([0x02, 0, 0, 0, 0, 0x0c]);
        assert_eq!(
            trace(&t, &frame(B, c), 0, 1).learning,
            Learning::Limited { limit: 1 }
        );
        t.fdb.insert_static(0, B, 1);
        assert_eq!(
            trace(&t, &frame(A, B), 0, 1).learning,
            Learning::Static { port: 1 }
        );
    }
}
