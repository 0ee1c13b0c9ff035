//! Reload: a re-read configuration file, applied all or nothing.
//!
//! A reload is planned whole before anything changes ([`Plan`]): the file's own checks,
//! the settings that need a restart, the ports it removes, changes, re-attaches and
//! adds, the slots they take, the tables the bridge would then have (VLANs, roles, the
//! mode's rules) with the run-time ports that stay, one port for each static MAC, and
//! every interface it attaches: there, with no more RX queues than workers, and for a
//! port it adds, admitted by the workers (frames and kernel memory), and the mirrors it
//! leaves: the file's, and those added at run time that the file does not name, each
//! checked against the ports the bridge will have and the others. A refusal there
//! changes nothing.
//!
//! Then the plan is applied: the mirrors first (so a port that becomes a monitor port
//! is one from its first tables on, and a mirror that goes stops its copies before its
//! ports change), then in the order of the ports' lifecycle (removals first, then the
//! file's ports in its order), each step logged with what undoes it ([`Applied`]).
//! When the kernel or the workers still refuse a step, the steps before it are undone,
//! last first: ports added are detached and forgotten, changed ones get their settings,
//! origin and MAC table entries back, removed ones are attached again in their slots
//! with their settings, MAC table entries and counters (which go on from where they
//! were). A removed port's counters join the departed list only once the reload stands.
//! What cannot be undone (a removed port whose interface refuses to be attached again)
//! is said in the answer, port by port; such a port stays configured, absent, and is
//! attached again when its interface next changes, as any absent port.
use std::collections::HashMap;

use super::{
    Admission, Bridge, BridgeError, Origin, Slot, check_config, check_statics_unique, free_slot_in,
    full, mirror::Mirror, refused, report::since,
};
use crate::{
    control::{
        config::{BridgeConfig, PortConfig},
        port::Interface,
        spec::mirror::{PortLookup, check_mirror},
    },
    datapath::{PortQueues, stats::PortQueueSnapshot},
    switch::{MAX_PORTS, Mode, PortId, fdb::Entry},
};

/// What a reload does, worked out before anything changes.
#[derive(Debug)]
struct Plan {
    /// The configuration ports the file no longer names, by slot.
    removed: Vec<PortId>,
    /// What becomes of each port the file names, in its order.
    steps: Vec<Step>,
    /// The mirrors from now on, if they change: the file's, then those added at run
    /// time that it does not name.
    mirrors: Option<Vec<Mirror>>,
}

/// What becomes of one port the file names.
#[derive(Debug)]
enum Step {
    /// Nothing, but that it is a configuration port from now on.
    Keep(PortId),
    /// New settings, in place (its sockets stay).
    Change(PortId, PortConfig),
    /// A new role: detached from slot `from`, attached in slot `to` (the uplink's
    /// entry in the XDP program's port map differs).
    Reattach {
        from: PortId,
        to: PortId,
        config: PortConfig,
        iface: Interface,
    },
    /// A new port, in slot `id`; its interface's MTU now.
    Add {
        id: PortId,
        config: PortConfig,
        iface: Interface,
        mtu: u32,
    },
}

/// A step applied, with what undoes it.
#[derive(Debug)]
enum Applied {
    /// Port `id` was of origin `was`.
    Adopted { id: PortId, was: Origin },
    /// Port `id` had these settings, this origin and these MAC table entries.
    Changed {
        id: PortId,
        config: Box<PortConfig>,
        origin: Origin,
        entries: Vec<Entry>,
    },
    /// A port left its slot.
    Removed(Box<Removed>),
    /// A port was put in slot `id` (attached, or half and undone already).
    Added(PortId),
    /// The mirrors were these.
    Mirrors(Vec<Mirror>),
}

/// A port a reload took out of its slot: what it takes to put it back.
#[derive(Debug)]
struct Removed {
    id: PortId,
    /// Its settings, origin and counters' baseline (not attached).
    slot: Slot,
    /// Its interface, if it was attached.
    iface: Option<Interface>,
    /// Its MAC table entries.
    entries: Vec<Entry>,
    /// Its counters, queue by queue, as they were reported when it left.
    shown: Vec<PortQueueSnapshot>,
    /// Its count of learns refused by its `max_macs`, when it left.
    refused: u64,
    /// Its row for the departed list, recorded once the reload stands.
    departure: Option<(String, PortQueueSnapshot)>,
}

impl Bridge {
    /// Applies `new` (a re-read configuration file): ports added, removed and changed.
    /// Settings that need a restart (mode, workers, rings, MAC table) must not differ.
    /// Ports added at run time are left alone unless the file names them.
    ///
    /// All or nothing: everything is checked before anything changes, and a step the
    /// kernel refuses while applying undoes those before it. The error says which of
    /// the two happened, or, if undoing failed in part, what is left.
    pub fn reload(&mut self, new: BridgeConfig) -> Result<String, BridgeError> {
        let plan = self
            .plan(&new)
            .map_err(|e| BridgeError::ReloadRefused(Box::new(e)))?;
        let next_slot = self.next_slot;
        let mut applied = Vec::new();
        let mut done = Vec::new();
        if let Err(e) = self.apply(plan, &mut applied, &mut done) {
            let left = self.undo(applied);
            self.next_slot = next_slot;
            let reason = Box::new(e);
            return Err(if left.is_empty() {
                BridgeError::ReloadUndone(reason)
            } else {
                BridgeError::ReloadPartlyUndone {
                    reason,
                    left: left.join("; "),
                }
            });
        }
        for step in applied {
            if let Applied::Removed(removed) = step
                && let Some((name, counters)) = removed.departure
            {
                self.departed.record(&name, &counters);
            }
        }
        self.config.fdb_max_age = new.fdb_max_age;
        self.config.ports = new.ports;
        self.config.mirrors = new.mirrors;
        Ok(if done.is_empty() {
            "reloaded: nothing changed".to_owned()
        } else {
            format!("reloaded: {}", done.join(", "))
        })
    }

    /// Works out what `new` changes and checks all of it, changing nothing.
    fn plan(&mut self, new: &BridgeConfig) -> Result<Plan, BridgeError> {
        check_config(new)?;
        let fixed = |c: &BridgeConfig| {
            (
                c.mode,
                c.fdb_capacity,
                c.xdp_mode,
                c.queues,
                c.cores.clone(),
                c.datapath.clone(),
                c.group_fwd_mask,
                c.fast_path,
                c.fast_floods,
            )
        };
        if fixed(new) != fixed(&self.config) {
            return Err(refused(
                "the new configuration changes the mode, [datapath], the MAC table size or \
                 group_fwd_mask or the fast path: those need a restart (only ports and fdb.age change on reload)",
            ));
        }
        let pair = matches!(new.mode, Mode::Xconnect | Mode::Passthru);
        if pair {
            let names: Vec<&str> = new.ports.iter().map(|p| p.name.as_str()).collect();
            let current: Vec<&str> = self
                .slots
                .iter()
                .flatten()
                .map(|s| s.config.name.as_str())
                .collect();
            if names != current {
                return Err(refused(format!(
                    "{} mode has exactly its two ports: changing them needs a restart",
                    new.mode
                )));
            }
        }
        let removed: Vec<PortId> = (0..self.slots.len() as PortId)
            .filter(|&id| {
                self.slots[usize::from(id)].as_ref().is_some_and(|s| {
                    s.origin == Origin::Config && !new.ports.iter().any(|p| p.name == s.config.name)
                })
            })
            .collect();
        // The slots as they will be, to check the whole against the tables' rules.
        let mut layout = self.bare_slots();
        for &id in &removed {
            layout[usize::from(id)] = None;
        }
        let mut next = self.next_slot;
        let mut steps = Vec::new();
        for port in &new.ports {
            let Some(id) = self.find(&port.name) else {
                let (iface, mtu) = self.attachable(&port.name)?;
                let id = place(&mut layout, &mut next, port)?;
                steps.push(Step::Add {
                    id,
                    config: port.clone(),
                    iface,
                    mtu,
                });
                continue;
            };
            let slot = self.slot(id);
            if slot.config == *port {
                steps.push(Step::Keep(id));
            } else if slot.config.policy.role != port.policy.role && slot.attached.is_some() {
                if pair {
                    return Err(refused(format!(
                        "{}: {} mode has exactly its two ports: changing a port's role needs \
                         a restart",
                        port.name, new.mode
                    )));
                }
                let (iface, _) = self.attachable(&port.name)?;
                layout[usize::from(id)] = None;
                let to = place(&mut layout, &mut next, port)?;
                steps.push(Step::Reattach {
                    from: id,
                    to,
                    config: port.clone(),
                    iface,
                });
            } else {
                // A port that is absent takes its new role when it is attached.
                layout[usize::from(id)] = Some(Slot::new(port.clone(), Origin::Config));
                steps.push(Step::Change(id, port.clone()));
            }
        }
        self.build_tables(&layout)?;
        for (id, slot) in layout.iter().enumerate() {
            if let Some(slot) = slot {
                check_statics_unique(&layout, &slot.config, Some(id as PortId))?;
            }
        }
        // The workers' admission, against the bridge as it is. Ports the reload removes
        // or re-attaches give their frames back first: with them, a port refused here
        // is asked again after they went, and the reload undone if it is refused then.
        let frees = !removed.is_empty() || steps.iter().any(|s| matches!(s, Step::Reattach { .. }));
        for step in &steps {
            if let Step::Add { id, iface, mtu, .. } = step {
                let queues = PortQueues {
                    id: *id,
                    name: iface.name.clone(),
                    ifindex: iface.ifindex,
                    queues: iface.rx_queues,
                    zc_max_segs: self.zc_max_segs(iface),
                    mtu: *mtu,
                };
                match self.datapath.admit(&queues) {
                    Ok(()) => {}
                    Err(e) if frees => tracing::info!(
                        "{}: {e}; asked again once the reload's removals are done",
                        iface.name
                    ),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let mirrors = self.plan_mirrors(new, &layout)?;
        Ok(Plan {
            removed,
            steps,
            mirrors,
        })
    }

    /// The mirrors `new` leaves, checked against the ports of `layout` (the bridge's
    /// once reloaded); `None` if they do not change. A mirror added at run time stays
    /// unless the file names it (then it is the file's); one that names a port the
    /// reload removes is refused, one that waits for a port gone before may go on
    /// waiting.
    fn plan_mirrors(
        &self,
        new: &BridgeConfig,
        layout: &[Option<Slot>],
    ) -> Result<Option<Vec<Mirror>>, BridgeError> {
        let mut mirrors: Vec<Mirror> = new
            .mirrors
            .iter()
            .map(|spec| Mirror {
                spec: spec.clone(),
                origin: Origin::Config,
            })
            .collect();
        let from_file = mirrors.len();
        mirrors.extend(
            self.mirrors
                .list
                .iter()
                .filter(|m| {
                    m.origin == Origin::Runtime
                        && !new.mirrors.iter().any(|n| n.name == m.spec.name)
                })
                .cloned(),
        );
        let specs: Vec<_> = mirrors.iter().map(|m| m.spec.clone()).collect();
        for i in 0..specs.len() {
            let lookup = |name: &str| {
                let role = layout
                    .iter()
                    .flatten()
                    .find(|s| s.config.name == name)
                    .map(|s| s.config.policy.role);
                match role {
                    Some(role) => PortLookup::Port(role),
                    None if i >= from_file && self.find(name).is_none() => PortLookup::Awaited,
                    None => PortLookup::Unknown,
                }
            };
            let whose = if i < from_file {
                "the configuration"
            } else {
                "the reloaded bridge (the mirror was added at run time: delete it first)"
            };
            check_mirror(new.mode, &specs, i, &lookup, whose)
                .map_err(|e| refused(e.to_string()))?;
        }
        Ok((mirrors != self.mirrors.list).then_some(mirrors))
    }

    /// Interface `name` and its MTU, if it is there, as the kernel's links list it too
    /// (what attaching it looks for), and the workers can serve each of its RX queues.
    fn attachable(&mut self, name: &str) -> Result<(Interface, u32), BridgeError> {
        let iface = self.servable(name)?;
        let mtu = self.link_of(&iface)?.mtu;
        Ok((iface, mtu))
    }

    /// Applies `plan`, step by step, logging each in `applied` and telling it in
    /// `done`; stops at the first step that fails (whose own half is undone already).
    fn apply(
        &mut self,
        plan: Plan,
        applied: &mut Vec<Applied>,
        done: &mut Vec<String>,
    ) -> Result<(), BridgeError> {
        let mut saved = self.entries_of(&plan);
        let mut entries = |id: PortId| saved.remove(&id).unwrap_or_default();
        if let Some(mirrors) = plan.mirrors {
            done.extend(mirror_changes(&self.mirrors.list, &mirrors));
            let was = std::mem::replace(&mut self.mirrors.list, mirrors);
            applied.push(Applied::Mirrors(was));
            self.publish()?;
        }
        for id in plan.removed {
            let removed = self.take_out(id, entries(id));
            done.push(format!("{} removed", removed.slot.config.name));
            applied.push(Applied::Removed(Box::new(removed)));
        }
        for step in plan.steps {
            match step {
                Step::Keep(id) => {
                    let slot = self.slot_mut(id);
                    let was = std::mem::replace(&mut slot.origin, Origin::Config);
                    applied.push(Applied::Adopted { id, was });
                }
                Step::Change(id, config) => {
                    let name = config.name.clone();
                    self.change(id, config, entries(id), applied)?;
                    done.push(format!("{name} changed"));
                }
                Step::Reattach {
                    from,
                    to,
                    config,
                    iface,
                } => {
                    let name = config.name.clone();
                    let removed = self.take_out(from, entries(from));
                    applied.push(Applied::Removed(Box::new(removed)));
                    self.put_in(to, config, iface, applied)?;
                    done.push(format!("{name} re-attached"));
                }
                Step::Add {
                    id, config, iface, ..
                } => {
                    let name = config.name.clone();
                    self.put_in(id, config, iface, applied)?;
                    done.push(format!("{name} added"));
                }
            }
        }
        Ok(())
    }

    /// Takes port `id`, whose MAC table entries are `entries`, out of its slot:
    /// detached, its entries removed, its slot forgotten; returns what puts it back.
    fn take_out(&mut self, id: PortId, entries: Vec<Entry>) -> Removed {
        let shown = since(
            &self.port_queues(&self.datapath.snapshot(), id),
            &self.slot(id).baseline,
        );
        let iface = self.slot(id).attached.as_ref().map(|a| a.iface.clone());
        let refused = self.fdb.refused(id);
        let departure = self.take_down(id, false);
        // An absent port kept its entries and its count: they go too.
        self.fdb.remove_port(id);
        self.fdb.reset_refused(id);
        let slot = self.slots[usize::from(id)]
            .take()
            .expect("a configured slot");
        self.forget(id);
        Removed {
            id,
            slot,
            iface,
            entries,
            shown,
            refused,
            departure,
        }
    }

    /// Puts a configuration port of `config` in slot `id` and attaches `iface` to it.
    fn put_in(
        &mut self,
        id: PortId,
        config: PortConfig,
        iface: Interface,
        applied: &mut Vec<Applied>,
    ) -> Result<(), BridgeError> {
        self.put(id, Slot::new(config, Origin::Config));
        self.next_slot = usize::from(id) + 1;
        applied.push(Applied::Added(id));
        self.attach_or_undo(id, iface, Admission::Check, false)
    }

    /// Changes port `id`'s policy and static MACs in place (its sockets stay); it is a
    /// configuration port from now on. `entries` are its MAC table entries.
    fn change(
        &mut self,
        id: PortId,
        config: PortConfig,
        entries: Vec<Entry>,
        applied: &mut Vec<Applied>,
    ) -> Result<(), BridgeError> {
        let slot = self.slot_mut(id);
        let old = std::mem::replace(&mut slot.config, config);
        let origin = std::mem::replace(&mut slot.origin, Origin::Config);
        applied.push(Applied::Changed {
            id,
            config: Box::new(old),
            origin,
            entries,
        });
        self.build_tables(&self.slots)?;
        self.fdb.remove_port(id);
        self.publish()?;
        if self.slot(id).attached.is_some() {
            self.insert_statics(id)?;
        }
        tracing::info!("{}: settings changed", self.slot(id).config.name);
        Ok(())
    }

    /// Undoes `applied`, last first; returns what could not be undone, port by port.
    fn undo(&mut self, applied: Vec<Applied>) -> Vec<String> {
        let mut left = Vec::new();
        for step in applied.into_iter().rev() {
            match step {
                Applied::Adopted { id, was } => self.slot_mut(id).origin = was,
                Applied::Changed {
                    id,
                    config,
                    origin,
                    entries,
                } => {
                    let name = config.name.clone();
                    let slot = self.slot_mut(id);
                    slot.config = *config;
                    slot.origin = origin;
                    self.fdb.remove_port(id);
                    if let Err(e) = self.publish() {
                        left.push(format!(
                            "{name} with its old settings, which the workers did not take: {e}"
                        ));
                    }
                    self.restore_entries(id, &entries);
                }
                Applied::Removed(removed) => {
                    if let Err(e) = self.put_back(*removed) {
                        left.push(e);
                    }
                }
                Applied::Added(id) => {
                    if self.slots.get(usize::from(id)).is_some_and(Option::is_some) {
                        // Never part of the bridge: no departure.
                        self.take_down(id, false);
                        self.forget(id);
                    }
                }
                Applied::Mirrors(was) => {
                    self.mirrors.list = was;
                    if let Err(e) = self.publish() {
                        left.push(format!(
                            "the mirrors as they were, which the workers did not take: {e}"
                        ));
                    }
                }
            }
        }
        if !left.is_empty() {
            tracing::error!("undoing a reload left {}", left.join("; "));
        }
        left
    }

    /// Puts a port a reload took out back in its slot, attached again if it was, its
    /// counters going on from where they were. Its slot is free: what the reload put
    /// there after it is undone first.
    fn put_back(&mut self, removed: Removed) -> Result<(), String> {
        let Removed {
            id,
            slot,
            iface,
            entries,
            shown,
            refused,
            ..
        } = removed;
        let name = slot.config.name.clone();
        let baseline = slot.baseline.clone();
        self.put(id, slot);
        let result = match iface {
            Some(iface) => self
                .attach_or_undo(id, iface, Admission::Skip, false)
                .map_err(|e| format!("{name} absent in slot {id}: attaching it again failed: {e}")),
            None => self
                .publish()
                .map_err(|e| format!("{name} back in slot {id}, absent, but {e}")),
        };
        // Attaching counts from now: shift its baseline so that what it had counted
        // before it left is counted still.
        let slot = self.slot_mut(id);
        if slot.baseline != baseline {
            slot.baseline = since(&slot.baseline, &shown);
        }
        self.restore_entries(id, &entries);
        self.fdb.restore_refused(id, refused);
        result
    }

    /// The MAC table entries of the ports `plan` removes, changes or re-attaches, by
    /// port (one pass over the table, none if it touches no port).
    fn entries_of(&self, plan: &Plan) -> HashMap<PortId, Vec<Entry>> {
        let mut touched = vec![false; MAX_PORTS];
        let ids = plan
            .removed
            .iter()
            .copied()
            .chain(plan.steps.iter().filter_map(|s| match s {
                Step::Change(id, _) | Step::Reattach { from: id, .. } => Some(*id),
                Step::Keep(_) | Step::Add { .. } => None,
            }));
        for id in ids {
            touched[usize::from(id)] = true;
        }
        let mut by_port: HashMap<PortId, Vec<Entry>> = HashMap::new();
        if !touched.contains(&true) {
            return by_port;
        }
        for e in self.fdb.entries() {
            if touched[usize::from(e.port)] {
                by_port.entry(e.port).or_default().push(e);
            }
        }
        by_port
    }

    /// Enters `entries` on port `id` again: static ones as they were, learned ones
    /// unless the station was learned elsewhere meanwhile.
    fn restore_entries(&self, id: PortId, entries: &[Entry]) {
        for e in entries {
            if e.is_static {
                self.fdb.insert_static(e.vlan, e.mac, id);
            } else if self.fdb.lookup(e.vlan, e.mac).is_none() {
                self.fdb.learn(e.vlan, e.mac, id, e.stamp);
            }
        }
    }
}

/// What changing the mirrors from `old` to `new` does, mirror by mirror: `mirror m1
/// added`, `removed`, `changed`.
fn mirror_changes(old: &[Mirror], new: &[Mirror]) -> Vec<String> {
    let mut done = Vec::new();
    for m in new {
        match old.iter().find(|o| o.spec.name == m.spec.name) {
            None => done.push(format!("mirror {} added", m.spec.name)),
            Some(o) if o.spec != m.spec => done.push(format!("mirror {} changed", m.spec.name)),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|m| m.spec.name == o.spec.name) {
            done.push(format!("mirror {} removed", o.spec.name));
        }
    }
    done
}

/// Takes a free slot of `layout` (as [`Bridge::free_slot`] will) for `port`.
fn place(
    layout: &mut Vec<Option<Slot>>,
    next: &mut usize,
    port: &PortConfig,
) -> Result<PortId, BridgeError> {
    let id = free_slot_in(layout, next).ok_or_else(|| full(&port.name))?;
    if layout.len() <= usize::from(id) {
        layout.resize_with(usize::from(id) + 1, || None);
    }
    layout[usize::from(id)] = Some(Slot::new(port.clone(), Origin::Config));
    Ok(id)
}
