//! Publishing the bridge to the XDP program: the tables the workers decide with, and
//! the kernel fast path's maps (which ports it may forward between, and to whom), worked
//! out again whenever a port, a setting or a device's XDP features change.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use hairpin_common::{
    FastConf, NO_SLOT, SlotConf, fast_mode,
    flood::{self, DOMAINS, MAX_MEMBERS},
    slot_flags,
};

use super::{Bridge, BridgeError, kernel::XdpProgram};
use crate::{
    control::{
        netdev::XDP_ACT_NDO_XMIT,
        xdp::{AttachedMode, FastFloods, monotonic_ns},
    },
    switch::{MAX_PORTS, Mode, PortId, Role, Tables, VlanId, flood_domains, guard::IpPrefix},
};

/// A flood domain's ports, as (slot, ifindex).
type Members = Vec<(u32, u32)>;

/// The fast path's floods as published: each VLAN's `FLOOD_VLAN` word (where not 0)
/// and each domain's members, (slot, ifindex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Floods {
    words: BTreeMap<VlanId, u32>,
    /// By domain ([`DOMAINS`] of them).
    domains: Vec<Members>,
}

impl Default for Floods {
    /// None: the workers flood every VLAN.
    fn default() -> Self {
        Self {
            words: BTreeMap::new(),
            domains: vec![Vec::new(); DOMAINS as usize],
        }
    }
}

impl Floods {
    /// Whether a flood of VLAN `vid` from port `ingress` (`hairpin`: reflective relay
    /// on) is the kernel's, as published.
    pub(super) fn whole(&self, vid: VlanId, ingress: PortId, hairpin: bool) -> bool {
        self.words
            .get(&vid)
            .is_some_and(|&w| flood::complete(w, u32::from(ingress), hairpin))
    }

    /// The floods for `tables`, `egress` being the ports the kernel can send to (by
    /// slot): a VLAN's floods are the kernel's when it reaches every port of the VLAN's
    /// domain (or all but one, which then floods through the workers itself), its
    /// domain has room (`MAX_MEMBERS`) and there is a domain map for it (VLANs that
    /// reach the same ports share one); `before`'s maps are kept for the same members.
    fn plan(tables: &Tables, egress: &[Option<u32>], before: &Self) -> Self {
        let mut plan = Self::default();
        // (VLAN, members, tagged, the one port out of reach)
        let mut wanted: Vec<(VlanId, Members, bool, Option<u32>)> = Vec::new();
        for (vid, ports) in flood_domains(tables) {
            let (reached, missed): (Vec<PortId>, Vec<PortId>) = ports
                .iter()
                .partition(|&p| egress[usize::from(p)].is_some());
            let lone = match missed[..] {
                [] => None,
                [one] => Some(u32::from(one)),
                _ => continue,
            };
            // None to send to, or only one port and no other: a flood from it goes
            // nowhere, which the workers count (`no_egress`).
            let alone = reached.len() == 1 && missed.is_empty();
            if reached.is_empty() || alone || reached.len() > MAX_MEMBERS as usize {
                continue;
            }
            let members: Vec<(u32, u32)> = reached
                .iter()
                .map(|&p| (u32::from(p), egress[usize::from(p)].expect("reached")))
                .collect();
            let tagged = vid != 0 && reached.iter().any(|&p| tables.vlans.pvid(p) != Some(vid));
            wanted.push((vid, members, tagged, lone));
        }
        // Members already in a map keep it; new ones take the first free map.
        let mut taken = vec![false; DOMAINS as usize];
        for (_, members, _, _) in &wanted {
            if let Some(i) = before.domains.iter().position(|d| d == members) {
                plan.domains[i].clone_from(members);
                taken[i] = true;
            }
        }
        for (vid, members, tagged, lone) in wanted {
            let domain = match plan.domains.iter().position(|d| *d == members) {
                Some(i) => i,
                None => match taken.iter().position(|t| !t) {
                    Some(i) => {
                        plan.domains[i].clone_from(&members);
                        taken[i] = true;
                        i
                    }
                    // More distinct domains than maps: this VLAN's floods are the
                    // workers'.
                    None => continue,
                },
            };
            plan.words
                .insert(vid, flood::entry(domain as u32, tagged, lone));
        }
        plan
    }
}

impl Bridge {
    /// Builds tables from the slots (and the mirrors' monitor ports) as they are and
    /// gives them to the workers and the fast path; then the mirrors follow
    /// ([`Bridge::follow_mirrors`]).
    pub(super) fn publish(&mut self) -> Result<(), BridgeError> {
        let tables = Arc::new(self.build_tables(&self.slots)?);
        if tables.vlans.is_aware() != self.tables.vlans.is_aware() {
            // Entries learned in VLAN 0 mean nothing to a VLAN-aware bridge, and back.
            self.fdb.flush(None);
        }
        self.datapath.set_tables(&tables)?;
        let before = std::mem::replace(&mut self.tables, tables);
        let fast = self.publish_fast();
        self.restart_meters(&before);
        self.follow_mirrors();
        fast
    }

    /// Starts afresh the meters of every slot whose limits changed from `before` (a
    /// port's settings, or another port in the slot), now that the workers and the
    /// fast path meter by the new ones: a meter left ahead by a slower rate would
    /// otherwise refuse frames for up to its old burst's time. Frames metered between
    /// the two by the old settings can only have charged the fresh meter.
    fn restart_meters(&self, before: &Tables) {
        for id in 0..MAX_PORTS as PortId {
            if before.limits(id) != self.tables.limits(id) {
                self.tables.meters.reset(id);
            }
        }
    }

    /// Gives the XDP program's fast path the tables as they are now: each port's VLANs,
    /// hairpin, role, anti-spoofing list and IP source guard, and the ports it may send to (attached,
    /// up, not a mirror's monitor port, and with a driver that takes redirected frames).
    ///
    /// A monitor port is, to the fast path, a port it never sends to (not in `EGRESS`,
    /// not `CONFIGURED`) and whose every source is refused (`ANTI_SPOOF` with an empty
    /// list): all its frames go to the workers, which drop them (`monitor_port`), as
    /// they drop a frame for a station a static entry puts on it.
    fn publish_fast(&mut self) -> Result<(), BridgeError> {
        let Some(egress) = self.fast_egress_now() else {
            return Ok(());
        };
        // The floods first leave the kernel for the VLANs whose domains change; the
        // new domains go in once the ports' settings are in.
        let floods_on = self.config.fast_floods == FastFloods::On;
        let floods = if floods_on {
            Floods::plan(&self.tables, &egress, &self.floods)
        } else {
            Floods::default()
        };
        self.park_floods(&floods)?;
        let tables = &self.tables;
        let uplink = self.slots.iter().position(|s| {
            s.as_ref()
                .is_some_and(|s| s.config.policy.role == Role::Uplink)
        });
        let mode = match self.config.mode {
            Mode::Veb => fast_mode::VEB,
            Mode::Vepa => fast_mode::VEPA,
            Mode::Private => fast_mode::PRIVATE,
            Mode::Passthru => fast_mode::PASSTHRU,
            Mode::Xconnect => fast_mode::OFF,
        };
        for id in 0..MAX_PORTS as PortId {
            let slot = self.slots.get(usize::from(id)).and_then(Option::as_ref);
            let mut conf = SlotConf::default();
            let mut allowed = Vec::new();
            if let Some(slot) = slot {
                let policy = &slot.config.policy;
                conf.flags = slot_flags::CONFIGURED;
                if policy.hairpin {
                    conf.flags |= slot_flags::HAIRPIN;
                }
                if policy.role == Role::Uplink {
                    conf.flags |= slot_flags::UPLINK;
                }
                if !policy.allowed_sources.is_empty() {
                    conf.flags |= slot_flags::ANTI_SPOOF;
                    allowed = policy.allowed_sources.iter().map(|m| m.0).collect();
                }
                if tables.vlans.is_trunk(id) {
                    conf.flags |= slot_flags::TRUNK;
                }
                // Until attached, as generic: nothing runs the program for it yet.
                if slot
                    .attached
                    .as_ref()
                    .is_none_or(|a| a.xdp == AttachedMode::Generic)
                {
                    conf.flags |= slot_flags::GENERIC;
                }
                conf.pvid = tables.vlans.pvid(id).unwrap_or(0);
                // Flooded copies leave tagged for the domain's trunks: this port takes
                // its untagged VLAN's off.
                if conf.pvid != 0 && mode != fast_mode::PASSTHRU {
                    conf.flags |= slot_flags::UNTAG;
                }
                if let Some(a) = &slot.attached {
                    conf.mtu = u16::try_from(a.mtu).unwrap_or(u16::MAX);
                }
                for vid in tables.vlans.vlans_of(id) {
                    let v = usize::from(vid);
                    conf.members[v / 64] |= 1 << (v % 64);
                }
                if tables.is_monitor(id) {
                    conf.flags = (conf.flags & !slot_flags::CONFIGURED) | slot_flags::ANTI_SPOOF;
                    allowed.clear();
                }

                // Ingress policing: the fast path meters the frames it carries.
                let meters = tables.port_meters(id);
                conf.police_bytes = meters.police_bytes;
                conf.police_packets = meters.police_packets;
                conf.storm = meters.storm;
            }
            // The IP source guard: its prefixes in before the flag goes on, out after
            // it goes off, so the fast path never checks a source against a list
            // missing one the port may use.
            let guard = slot.map_or(&[][..], |s| &s.config.policy.allowed_ips[..]);
            if !guard.is_empty() {
                conf.flags |= slot_flags::IP_GUARD;
                publish_guard(&mut *self.steering, &mut self.guard_slots, id, guard)?;
            }
            let now = Some((conf, allowed, egress[usize::from(id)]));
            let published = &mut self.fast_slots[usize::from(id)];
            if *published != now {
                let (conf, allowed, egress) = now.as_ref().expect("just made");
                *published = None; // until written whole
                self.steering
                    .set_fast_slot(u32::from(id), conf, allowed, *egress)?;
                *published = now;
            }
            if guard.is_empty() {
                publish_guard(&mut *self.steering, &mut self.guard_slots, id, &[])?;
            }
        }
        self.publish_floods(floods)?;
        self.fast_egress = egress;
        let epoch_ns = monotonic_ns().saturating_sub(self.epoch.elapsed().as_nanos() as u64);
        self.steering.set_fast_conf(FastConf {
            mode,
            shift: self.fdb.shift(),
            vlan_aware: u32::from(self.tables.vlans.is_aware()),
            uplink: uplink.map_or(NO_SLOT, |u| u as u32),
            epoch_ns,
            floods: u32::from(floods_on),
            group_fwd_mask: u32::from(self.tables.group_fwd_mask()),
        })?;
        Ok(())
    }

    /// Takes out of the kernel's hands the floods of every VLAN whose domain is to
    /// change (their word 0: the workers flood them), before anything else changes.
    fn park_floods(&mut self, plan: &Floods) -> Result<(), BridgeError> {
        let now = &self.floods;
        let parked: Vec<VlanId> = now
            .words
            .iter()
            .filter(|&(vid, &word)| {
                let domain = flood::domain_of(word).map_or(0, |d| d as usize);
                plan.words.get(vid) != Some(&word) || plan.domains[domain] != now.domains[domain]
            })
            .map(|(&vid, _)| vid)
            .collect();
        for vid in parked {
            self.steering.set_flood_vlan(vid, 0)?;
            self.floods.words.remove(&vid);
        }
        Ok(())
    }

    /// Writes the domains of `plan` that changed, then the words of the VLANs whose
    /// floods change (parked before, [`Bridge::park_floods`]).
    fn publish_floods(&mut self, plan: Floods) -> Result<(), BridgeError> {
        for (i, members) in plan.domains.iter().enumerate() {
            if self.floods.domains[i] != *members {
                // Until written whole.
                self.floods.domains[i] = vec![(NO_SLOT, 0)];
                self.steering.set_flood_domain(i as u32, members)?;
                self.floods.domains[i].clone_from(members);
            }
        }
        for (&vid, &word) in &plan.words {
            if self.floods.words.get(&vid) != Some(&word) {
                self.steering.set_flood_vlan(vid, word)?;
                self.floods.words.insert(vid, word);
            }
        }
        Ok(())
    }

    /// The ports the fast path may send to now, by slot (`None` with the fast path
    /// off): attached, up, not a mirror's monitor port (whatever the tables say: a
    /// port that is to become one is never published as an egress), allowed by
    /// `--fast-path` (`auto`: copy mode only), and with a
    /// driver that takes redirected frames, which the kernel says (a veth's changes with
    /// its peer's XDP program or GRO, which hairpin's own attaching and detaching
    /// change too). The kernel is asked about every device at once, in one dump; a
    /// port the dump missed, on its own.
    fn fast_egress_now(&mut self) -> Option<Vec<Option<u32>>> {
        let netdev = self.netdev.as_mut()?;
        let known: HashMap<u32, u64> = match netdev.all_xdp_features() {
            Ok(all) => all.into_iter().collect(),
            Err(e) => {
                tracing::warn!("XDP features of the devices: {e}");
                HashMap::new()
            }
        };
        let fast_path = self.config.fast_path;
        let mut egress = vec![None; MAX_PORTS];
        for (id, slot) in self.slots.iter().enumerate() {
            let Some(a) = slot
                .as_ref()
                .filter(|s| !self.mirrors.is_monitor(&s.config.name))
                .and_then(|s| s.attached.as_ref())
                .filter(|a| a.oper_up && fast_path.sends_to(a.zero_copy))
            else {
                continue;
            };
            let ifindex = a.iface.ifindex;
            let features = match known.get(&ifindex) {
                Some(&f) => Ok(f),
                None => netdev.xdp_features(ifindex),
            };
            match features {
                Ok(f) if f & XDP_ACT_NDO_XMIT != 0 => egress[id] = Some(ifindex),
                Ok(_) => {}
                Err(e) => tracing::warn!("{}: XDP features: {e}", a.iface.name),
            }
        }
        Some(egress)
    }

    /// Follows the ports' drivers: a port whose driver now takes redirected frames, or
    /// no longer does (a veth whose peer lost its XDP program or GRO), is given to the
    /// fast path or taken from it. Called every tick, it asks at most once a second:
    /// the kernel sends no link event for it.
    pub(super) fn follow_fast_egress(&mut self) {
        if self.fast_checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.fast_checked = Instant::now();
        let Some(now) = self.fast_egress_now() else {
            return;
        };
        if now == self.fast_egress {
            return;
        }
        for (id, (was, is)) in self.fast_egress.iter().zip(&now).enumerate() {
            if was.is_some() != is.is_some()
                && let Some(name) = self.slots[id].as_ref().map(|s| &s.config.name)
            {
                if is.is_some() {
                    tracing::info!(
                        "{name}: takes redirected frames now; the fast path sends to it"
                    );
                } else {
                    tracing::info!(
                        "{name}: takes no redirected frames now; the workers send to it"
                    );
                }
            }
        }
        if let Err(e) = self.publish_fast() {
            tracing::error!("updating the fast path: {e}");
        }
    }
}

/// Writes slot `id`'s IP source guard prefixes into the fast path's tries, if they are
/// not what was last written there (`published`, by slot).
fn publish_guard(
    steering: &mut dyn XdpProgram,
    published: &mut [Vec<IpPrefix>],
    id: PortId,
    prefixes: &[IpPrefix],
) -> Result<(), BridgeError> {
    let published = &mut published[usize::from(id)];
    if published != prefixes {
        steering.set_guard(u32::from(id), prefixes)?;
        *published = prefixes.to_vec();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::switch::{Fdb, PortPolicy, PortSet, vlan::PortVlans};

    /// Tables of `vlans`, one port each (`None`: VLAN-unaware), every port up, in `veb`.
    fn tables(vlans: &[Option<PortVlans>]) -> Tables {
        let slots: Vec<Option<PortPolicy>> = vlans
            .iter()
            .map(|v| {
                Some(PortPolicy {
                    vlans: v.clone(),
                    ..PortPolicy::default()
                })
            })
            .collect();
        let up = PortSet::first(vlans.len());
        Tables::new(Mode::Veb, &slots, up, Arc::new(Fdb::with_capacity(64))).unwrap()
    }

    /// Ports `0..n` the kernel can send to (ifindex = 100 + slot), but those of `out`.
    fn egress(n: usize, out: &[usize]) -> Vec<Option<u32>> {
        let mut e = vec![None; MAX_PORTS];
        for (p, slot) in e.iter_mut().enumerate().take(n) {
            if !out.contains(&p) {
                *slot = Some(100 + p as u32);
            }
        }
        e
    }

    fn members(plan: &Floods, vid: VlanId) -> &[(u32, u32)] {
        let domain = flood::domain_of(plan.words[&vid]).unwrap();
        &plan.domains[domain as usize]
    }

    #[test]
    fn a_vlan_floods_in_the_kernel_when_it_reaches_all_its_ports_or_all_but_one() {
        let t = tables(&[None, None, None]);
        let plan = Floods::plan(&t, &egress(3, &[]), &Floods::default());
        assert_eq!(members(&plan, 0), [(0, 100), (1, 101), (2, 102)]);
        assert!(flood::complete(plan.words[&0], 0, false));
        assert!(flood::complete(plan.words[&0], 2, true));

        // Port 1 out of reach: whole only for port 1's own floods (no hairpin).
        let plan = Floods::plan(&t, &egress(3, &[1]), &Floods::default());
        assert_eq!(members(&plan, 0), [(0, 100), (2, 102)]);
        let word = plan.words[&0];
        assert!(flood::complete(word, 1, false));
        assert!(!flood::complete(word, 0, false) && !flood::complete(word, 1, true));

        // Two out of reach: the workers flood it all.
        let plan = Floods::plan(&t, &egress(3, &[0, 1]), &Floods::default());
        assert!(plan.words.is_empty());
    }

    #[test]
    fn vlans_reaching_the_same_ports_share_a_domain_that_stays_put() {
        let trunk = |native| PortVlans::Trunk {
            tagged: vec![10, 20, 30],
            native,
        };
        // VLANs 10 and 20 on both trunks (tagged: some port takes them tagged); VLAN 30
        // also on an access port, VLAN 1 native on one trunk only.
        let t = tables(&[
            Some(trunk(Some(1))),
            Some(trunk(None)),
            Some(PortVlans::Access(30)),
        ]);
        let plan = Floods::plan(&t, &egress(3, &[]), &Floods::default());
        assert_eq!(members(&plan, 10), [(0, 100), (1, 101)]);
        assert_eq!(plan.words[&10], plan.words[&20], "one domain for both");
        assert_ne!(plan.words[&10] & flood::TAGGED, 0);
        assert_eq!(members(&plan, 30), [(0, 100), (1, 101), (2, 102)]);
        // VLAN 1 has one port: its floods go nowhere, which the workers count.
        assert!(!plan.words.contains_key(&1));

        // Port 2 goes out of reach: VLAN 30's domain changes, the others keep theirs.
        let next = Floods::plan(&t, &egress(3, &[2]), &plan);
        assert_eq!(next.words[&10], plan.words[&10]);
        assert_eq!(members(&next, 30), [(0, 100), (1, 101)]);
        assert_eq!(
            flood::domain_of(next.words[&30]),
            flood::domain_of(next.words[&10]),
            "now the same ports as VLAN 10's"
        );
    }
}
