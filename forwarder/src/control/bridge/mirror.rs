//! Port mirrors (SPAN): the bridge keeps them ([`Mirrors`]), checks each against its
//! ports and the others, makes their monitor ports forward nothing else, and tells the
//! capture thread, which makes the copies, what to copy where.
//!
//! A mirror names its ports; it is carried out while they are all attached, and waits
//! (kept, `show mirrors` says `waiting` and for which) while one is absent: a
//! configuration port whose interface vanished, or a run-time port that went with its
//! interface and may be added again. A port a mirror names cannot be removed with `port
//! del` until the mirror is (the refusal names the mirror).
//!
//! A monitor port is one in the tables ([`PortPolicy::monitor`](crate::switch::PortPolicy::monitor)):
//! set by name from the mirrors each time the tables are built, so a port that comes
//! (back) is one from its first tables on. After every publishing of the tables
//! ([`Bridge::publish`], on any change of ports or mirrors), [`Bridge::follow_mirrors`]
//! flushes the learned entries of a port that has just become a monitor port, and gives
//! the capture thread the mirrors it carries out now when they changed
//! ([`Captures::set_mirrors`](crate::control::capture::Captures::set_mirrors)), which
//! stops a removed mirror's copies at once.
use super::{Bridge, BridgeError, Origin, Slot, refused};
use crate::{
    control::{
        capture::MirrorSink,
        config::{BridgeConfig, PortConfig},
        protocol::{Direction, MirrorInfo},
        spec::{
            MirrorSpec,
            mirror::{PortLookup, check_mirror},
        },
    },
    datapath::tap,
    switch::{PortId, PortPolicy, PortSet, Role},
};

/// A mirror and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mirror {
    pub(super) spec: MirrorSpec,
    /// The configuration (`[[mirror]]`) or `hairpin mirror add`.
    pub(super) origin: Origin,
}

/// The bridge's mirrors, and what was last made of them.
#[derive(Debug, Default)]
pub(super) struct Mirrors {
    /// The configuration's, then those added at run time, each in the order added.
    pub(super) list: Vec<Mirror>,
    /// What the capture thread was last given.
    sinks: Vec<MirrorSink>,
    /// The monitor ports' slots as last published.
    monitors: PortSet,
}

impl Mirrors {
    /// The configuration's mirrors (checked already, with the configuration).
    pub(super) fn of_config(config: &BridgeConfig) -> Self {
        Self {
            list: config
                .mirrors
                .iter()
                .map(|spec| Mirror {
                    spec: spec.clone(),
                    origin: Origin::Config,
                })
                .collect(),
            ..Self::default()
        }
    }

    /// Whether port `name` is a mirror's monitor port.
    pub(super) fn is_monitor(&self, name: &str) -> bool {
        self.list.iter().any(|m| m.spec.to == name)
    }

    /// The first mirror that names port `name`.
    fn using(&self, name: &str) -> Option<&MirrorSpec> {
        self.list.iter().map(|m| &m.spec).find(|m| m.uses(name))
    }
}

/// The policies of `slots`, `None` for free ones, with the ports `mirrors` names as
/// monitor ports marked so.
pub(super) fn policies(slots: &[Option<Slot>], mirrors: &Mirrors) -> Vec<Option<PortPolicy>> {
    slots
        .iter()
        .map(|s| {
            s.as_ref().map(|s| PortPolicy {
                monitor: mirrors.is_monitor(&s.config.name),
                ..s.config.policy.clone()
            })
        })
        .collect()
}

/// Checks the mirrors of `config` against its ports (what can be checked without the
/// kernel: [`super::check_config`]).
pub(super) fn check_config_mirrors(config: &BridgeConfig) -> Result<(), BridgeError> {
    let role = |name: &str| {
        config
            .ports
            .iter()
            .find(|p| p.name == name)
            .map_or(PortLookup::Unknown, |p| PortLookup::Port(p.policy.role))
    };
    for i in 0..config.mirrors.len() {
        check_mirror(config.mode, &config.mirrors, i, &role, "the configuration")
            .map_err(|e| refused(e.to_string()))?;
    }
    Ok(())
}

/// The tap directions of `direction`.
fn dirs(direction: Direction) -> u8 {
    match direction {
        Direction::In => tap::IN,
        Direction::Out => tap::OUT,
        Direction::Both => tap::IN | tap::OUT,
    }
}

/// In words, for messages: `received`, `sent`, `received and sent`.
fn direction_words(direction: Direction) -> &'static str {
    match direction {
        Direction::In => "received",
        Direction::Out => "sent",
        Direction::Both => "received and sent",
    }
}

impl Bridge {
    /// Adds mirror `spec` at run time: checked against the ports and the other mirrors
    /// (see [`check_mirror`]), then its monitor port forwards nothing else and the
    /// copies begin (once its ports are all attached).
    pub fn add_mirror(&mut self, spec: MirrorSpec) -> Result<String, BridgeError> {
        let mut specs: Vec<MirrorSpec> = self.mirrors.list.iter().map(|m| m.spec.clone()).collect();
        specs.push(spec.clone());
        let lookup = |name: &str| self.port_lookup(name);
        check_mirror(
            self.config.mode,
            &specs,
            specs.len() - 1,
            &lookup,
            "this bridge",
        )
        .map_err(|e| refused(e.to_string()))?;
        self.mirrors.list.push(Mirror {
            spec: spec.clone(),
            origin: Origin::Runtime,
        });
        if let Err(e) = self.publish() {
            self.mirrors.list.pop();
            if let Err(again) = self.publish() {
                tracing::error!("mirror {}: taking it back: {again}", spec.name);
            }
            return Err(e);
        }
        let missing = self.missing(&spec);
        let message = if missing.is_empty() {
            format!(
                "mirror {}: copies of the frames {} {} go out of {}",
                spec.name,
                spec.from.join(", "),
                direction_words(spec.direction),
                spec.to
            )
        } else {
            format!(
                "mirror {}: added; it waits for {} (absent) to copy anything; {} forwards \
                 nothing else from now on",
                spec.name,
                missing.join(", "),
                spec.to
            )
        };
        tracing::info!("{message}");
        Ok(message)
    }

    /// Removes mirror `name`: its copies stop at once, and its monitor port forwards
    /// again unless another mirror has it too.
    pub fn remove_mirror(&mut self, name: &str) -> Result<String, BridgeError> {
        let i = self
            .mirrors
            .list
            .iter()
            .position(|m| m.spec.name == name)
            .ok_or_else(|| {
                refused(format!(
                    "there is no mirror {name} (`hairpin show mirrors` lists them)"
                ))
            })?;
        let mirror = self.mirrors.list.remove(i);
        if let Err(e) = self.publish() {
            self.mirrors.list.insert(i, mirror);
            if let Err(again) = self.publish() {
                tracing::error!("mirror {name}: putting it back: {again}");
            }
            return Err(e);
        }
        let to = &mirror.spec.to;
        let message = if self.mirrors.is_monitor(to) {
            format!("mirror {name} removed; {to} is still another mirror's monitor port")
        } else {
            format!("mirror {name} removed; {to} forwards again")
        };
        tracing::info!("{message}");
        Ok(message)
    }

    /// Every mirror, with its state and counts.
    pub fn mirrors(&self) -> Vec<MirrorInfo> {
        let counts = self.captures.mirror_counts();
        self.mirrors
            .list
            .iter()
            .map(|m| {
                let missing = self.missing(&m.spec);
                let active = self.mirrors.sinks.iter().any(|s| s.name == m.spec.name);
                let count = counts
                    .iter()
                    .find(|(name, _)| *name == m.spec.name)
                    .map(|(_, c)| *c)
                    .unwrap_or_default();
                MirrorInfo {
                    name: m.spec.name.clone(),
                    from: m.spec.from.clone(),
                    direction: m.spec.direction,
                    to: m.spec.to.clone(),
                    state: if active { "active" } else { "waiting" }.to_owned(),
                    missing,
                    origin: match m.origin {
                        Origin::Config => "config",
                        Origin::Runtime => "runtime",
                    }
                    .to_owned(),
                    copies: count.copies,
                    lost: count.lost,
                }
            })
            .collect()
    }

    /// The mirrors added at run time.
    pub fn runtime_mirrors(&self) -> impl Iterator<Item = &MirrorSpec> {
        self.mirrors
            .list
            .iter()
            .filter(|m| m.origin == Origin::Runtime)
            .map(|m| &m.spec)
    }

    /// What the capture thread carries out now: each mirror whose ports are all
    /// attached, by slot, with its monitor port's interface.
    pub fn mirror_sinks(&self) -> &[MirrorSink] {
        &self.mirrors.sinks
    }

    /// After the tables were published: the learned entries of ports that have just
    /// become monitor ports are flushed (they learn nothing from now on, and no frame
    /// should be sent to them), and the capture thread is given the mirrors to carry
    /// out now if they changed.
    pub(super) fn follow_mirrors(&mut self) {
        let monitors = (0..self.slots.len() as PortId)
            .filter(|&id| self.tables.is_monitor(id))
            .fold(PortSet::EMPTY, PortSet::with);
        for id in monitors
            .iter()
            .filter(|&id| !self.mirrors.monitors.contains(id))
        {
            let flushed = self.fdb.flush(Some(id));
            tracing::info!(
                "{}: a monitor port now: it forwards nothing but its mirrors' copies \
                 ({flushed} learned MAC(s) forgotten)",
                self.slot(id).config.name
            );
        }
        self.mirrors.monitors = monitors;
        let sinks: Vec<MirrorSink> = self
            .mirrors
            .list
            .iter()
            .filter_map(|m| self.sink(&m.spec))
            .collect();
        if sinks != self.mirrors.sinks {
            self.captures.set_mirrors(sinks.clone());
            self.mirrors.sinks = sinks;
        }
    }

    /// Mirror `spec` as the capture thread carries it out, if its ports are all
    /// attached.
    fn sink(&self, spec: &MirrorSpec) -> Option<MirrorSink> {
        let from = spec
            .from
            .iter()
            .map(|name| self.attached_port(name).map(|(id, _)| id))
            .collect::<Option<Vec<PortId>>>()?;
        let (to, to_ifindex) = self.attached_port(&spec.to)?;
        Some(MirrorSink {
            name: spec.name.clone(),
            from,
            dirs: dirs(spec.direction),
            to,
            to_ifindex,
        })
    }

    /// Port `name`'s slot and interface, if it is attached.
    fn attached_port(&self, name: &str) -> Option<(PortId, u32)> {
        let id = self.find(name)?;
        let a = self.slot(id).attached.as_ref()?;
        Some((id, a.iface.ifindex))
    }

    /// The ports of `spec` that are not attached now.
    fn missing(&self, spec: &MirrorSpec) -> Vec<String> {
        spec.ports()
            .filter(|name| self.attached_port(name).is_none())
            .map(str::to_owned)
            .collect()
    }

    /// What mirror checks know of port `name`: its role if it is a port.
    fn port_lookup(&self, name: &str) -> PortLookup {
        self.find(name).map_or(PortLookup::Unknown, |id| {
            PortLookup::Port(self.slot(id).config.policy.role)
        })
    }

    /// Refuses to remove port `name` while a mirror names it.
    pub(super) fn refuse_if_mirrored(&self, name: &str) -> Result<(), BridgeError> {
        match self.mirrors.using(name) {
            Some(m) => Err(refused(format!(
                "mirror {} uses {name}: delete it first (hairpin mirror del {})",
                m.name, m.name
            ))),
            None => Ok(()),
        }
    }

    /// Refuses a port `config` to add as the uplink when a mirror has it as its monitor
    /// port (waiting for it).
    pub(super) fn check_port_for_mirrors(&self, config: &PortConfig) -> Result<(), BridgeError> {
        match self.mirrors.list.iter().find(|m| m.spec.to == config.name) {
            Some(m) if config.policy.role == Role::Uplink => Err(refused(format!(
                "{}: mirror {} has it as its monitor port, which the uplink cannot be (it \
                 would cut the host off); delete the mirror first",
                config.name, m.spec.name
            ))),
            _ => Ok(()),
        }
    }
}
