//! Publishing the bridge to the XDP program: the tables the workers decide with, and
//! the kernel fast path's maps (which ports it may forward between, and to whom), worked
//! out again whenever a port, a setting or a device's XDP features change.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use hairpin_common::{FastConf, NO_SLOT, SlotConf, fast_mode, slot_flags};

use super::{Bridge, BridgeError, kernel::XdpProgram};
use crate::{
    control::{
        netdev::XDP_ACT_NDO_XMIT,
        xdp::{AttachedMode, monotonic_ns},
    },
    switch::{MAX_PORTS, Mode, PortId, Role, Tables, guard::IpPrefix},
};

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
        self.fast_egress = egress;
        let epoch_ns = monotonic_ns().saturating_sub(self.epoch.elapsed().as_nanos() as u64);
        self.steering.set_fast_conf(FastConf {
            mode,
            shift: self.fdb.shift(),
            vlan_aware: u32::from(tables.vlans.is_aware()),
            uplink: uplink.map_or(NO_SLOT, |u| u as u32),
            epoch_ns,
        })?;
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
