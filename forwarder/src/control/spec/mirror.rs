//! A port mirror's settings (SPAN) as an operator writes them — one type,
//! [`MirrorSpec`], wherever they come from — and their checks.
//!
//! | where | how it reads a `MirrorSpec` |
//! | --- | --- |
//! | `hairpin mirror add NAME --from PORT[,PORT...] [--in\|--out\|--both] --to PORT` | clap, `#[command(flatten)]` |
//! | the config file's `[[mirror]]` (`name`, `from`, `direction`, `to`) | serde (TOML) |
//! | the control socket's `mirror_add`, the state dir's run-time mirrors | serde (JSON) |
//!
//! A mirror sends copies of the frames its `from` ports receive and/or send
//! (`direction`) out of its monitor port, `to`, which then forwards nothing else.
//! [`MirrorSpec::check`] checks a mirror on its own; [`check_mirror`] against the
//! bridge's ports and the mirrors before it. Their [`MirrorError`] names the mirror and
//! the field, which each front end says in its own words (`mirror m1: ...`, the config
//! file's `mirror[0].to: ...`).
use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Args, Command, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::{
    control::protocol::Direction,
    switch::{Mode, Role},
};

/// The longest mirror name, in bytes.
pub const MAX_NAME: usize = 64;

/// A port mirror, as `hairpin mirror add`, the config file's `[[mirror]]`, the control
/// socket and the state dir give it (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorSpec {
    /// Its name, which `mirror del` and `show mirrors` use.
    pub name: String,
    /// The mirrored ports.
    pub from: Vec<String>,
    /// Which of their frames: those they receive, send, or both (the default).
    #[serde(default)]
    pub direction: Direction,
    /// The monitor port the copies go out of.
    pub to: String,
}

/// The part of a mirror an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorField {
    /// `name` (or the mirror as a whole).
    Name,
    /// The `n`th of `from` (or `from` as a whole when it is empty).
    From(usize),
    /// `to`.
    To,
}

impl MirrorField {
    /// The config file's key within its `[[mirror]]`: `name`, `from[1]`, `to`.
    pub fn key(self) -> String {
        match self {
            Self::Name => "name".into(),
            Self::From(n) => format!("from[{n}]"),
            Self::To => "to".into(),
        }
    }
}

/// A mirror [`MirrorSpec::check`] or [`check_mirror`] refused: `Display` says it as
/// `mirror m1: why`; [`MirrorError::key`] as the config file's key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mirror {mirror}: {why}")]
pub struct MirrorError {
    /// The mirror's name, as given.
    pub mirror: String,
    /// Which part of it is wrong.
    pub field: MirrorField,
    /// What is wrong.
    pub why: String,
}

impl MirrorError {
    fn new(spec: &MirrorSpec, field: MirrorField, why: impl Into<String>) -> Self {
        Self {
            mirror: spec.name.clone(),
            field,
            why: why.into(),
        }
    }

    /// As the config file's key of mirror `i`: `mirror[1].to: ...`.
    pub fn key(&self, i: usize) -> String {
        format!("mirror[{i}].{}", self.field.key())
    }
}

/// What the bridge knows of a port a mirror names ([`check_mirror`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortLookup {
    /// A port of the bridge, with its role.
    Port(Role),
    /// Not a port now, but one the mirror may wait for: a port of a run-time mirror
    /// that went away with its interface (the mirror resumes when it is added again).
    Awaited,
    /// Not a port: the mirror is refused.
    Unknown,
}

impl MirrorSpec {
    /// Every key serde reads.
    pub const KEYS: [&'static str; 4] = ["name", "from", "direction", "to"];

    /// Checks the mirror on its own: a name, at least one port to mirror, each once,
    /// and a monitor port that is not among them.
    pub fn check(&self) -> Result<(), MirrorError> {
        let bad = |field, why: String| Err(MirrorError::new(self, field, why));
        if self.name.is_empty() {
            return bad(MirrorField::Name, "give the mirror a name".into());
        }
        if self.name.len() > MAX_NAME
            || self
                .name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        {
            return bad(
                MirrorField::Name,
                format!(
                    "name {:?}: give at most {MAX_NAME} bytes, without spaces, control \
                     characters or commas",
                    self.name
                ),
            );
        }
        if self.from.is_empty() {
            return bad(
                MirrorField::From(0),
                "no port to mirror: give at least one (--from PORT[,PORT...])".into(),
            );
        }
        for (n, port) in self.from.iter().enumerate() {
            if port.is_empty() {
                return bad(MirrorField::From(n), "an empty port name".into());
            }
            if self.from[..n].contains(port) {
                return bad(MirrorField::From(n), format!("{port} is given twice"));
            }
        }
        if self.to.is_empty() {
            return bad(
                MirrorField::To,
                "no monitor port: give the port the copies go out of (--to PORT)".into(),
            );
        }
        if self.from.contains(&self.to) {
            return bad(
                MirrorField::To,
                format!(
                    "{} is mirrored too: a monitor port forwards nothing but the copies, so \
                     it has no frames to mirror; give another monitor port",
                    self.to
                ),
            );
        }
        Ok(())
    }

    /// Every port it names: the mirrored ones, then the monitor port.
    pub fn ports(&self) -> impl Iterator<Item = &str> {
        self.from
            .iter()
            .chain(std::iter::once(&self.to))
            .map(String::as_str)
    }

    /// Whether it names port `name` (mirrored or monitor).
    pub fn uses(&self, name: &str) -> bool {
        self.ports().any(|p| p == name)
    }
}

/// The name of a mirror's direction, as the protocol and the config file write it.
pub fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::In => "in",
        Direction::Out => "out",
        Direction::Both => "both",
    }
}

/// Checks `mirrors[i]` in a bridge of `mode`: on its own ([`MirrorSpec::check`]),
/// against the ports (`port` says what each name is; `whose` names where ports are
/// looked for, as in "vm9 is not a port of `whose`"), and against the mirrors before
/// it: a name of its own, no monitor port among its mirrored ports nor its monitor port
/// among theirs (a monitor port forwards nothing: it has nothing to mirror, and what
/// went out of it would be cut). A port may be the monitor port of several mirrors, and
/// the uplink may be mirrored, but it is never a monitor port (that would cut the host
/// off the network).
pub fn check_mirror(
    mode: Mode,
    mirrors: &[MirrorSpec],
    i: usize,
    port: &dyn Fn(&str) -> PortLookup,
    whose: &str,
) -> Result<(), MirrorError> {
    let spec = &mirrors[i];
    spec.check()?;
    let bad = |field, why: String| Err(MirrorError::new(spec, field, why));
    if matches!(mode, Mode::Xconnect | Mode::Passthru) {
        return bad(
            MirrorField::Name,
            format!("{mode} mode has exactly its two ports: none is free to be a monitor port"),
        );
    }
    let before = &mirrors[..i];
    if before.iter().any(|m| m.name == spec.name) {
        return bad(
            MirrorField::Name,
            format!("there is a mirror {} already", spec.name),
        );
    }
    for (n, name) in spec.from.iter().enumerate() {
        if port(name) == PortLookup::Unknown {
            return bad(
                MirrorField::From(n),
                format!("{name} is not a port of {whose}"),
            );
        }
        if let Some(other) = before.iter().find(|m| m.to == *name) {
            return bad(
                MirrorField::From(n),
                format!(
                    "{name} is the monitor port of mirror {}: it forwards nothing, there is \
                     nothing to mirror",
                    other.name
                ),
            );
        }
    }
    match port(&spec.to) {
        PortLookup::Unknown => {
            return bad(
                MirrorField::To,
                format!("{} is not a port of {whose}", spec.to),
            );
        }
        PortLookup::Port(Role::Uplink) => {
            return bad(
                MirrorField::To,
                format!(
                    "{} is the uplink: as a monitor port it would forward nothing else and cut \
                     the host and its guests off the network; give a downlink",
                    spec.to
                ),
            );
        }
        PortLookup::Port(Role::Downlink) | PortLookup::Awaited => {}
    }
    if let Some(other) = before.iter().find(|m| m.from.contains(&spec.to)) {
        return bad(
            MirrorField::To,
            format!(
                "{} is mirrored by mirror {}: as a monitor port it would forward nothing, \
                 and {} would have nothing to copy from it",
                spec.to, other.name, other.name
            ),
        );
    }
    Ok(())
}

// ---- the command line -------------------------------------------------------------
//
// `--in`, `--out` and `--both` set one field, `direction`, which clap's derive cannot
// say: the arguments are declared here by hand.

const NAME: &str = "name";
const FROM: &str = "from";
const TO: &str = "to";
const IN: &str = "in";
const OUT: &str = "out";
const BOTH: &str = "both";

impl Args for MirrorSpec {
    fn augment_args(cmd: Command) -> Command {
        cmd.arg(
            Arg::new(NAME)
                .required(true)
                .value_name("NAME")
                .help("The mirror's name (for `mirror del` and `show mirrors`)."),
        )
        .arg(
            Arg::new(FROM)
                .long(FROM)
                .required(true)
                .value_delimiter(',')
                .value_name("PORT[,PORT...]")
                .help("The ports whose frames are copied."),
        )
        .arg(
            Arg::new(IN)
                .long(IN)
                .action(ArgAction::SetTrue)
                .help("Only the frames they receive (as they arrive)."),
        )
        .arg(
            Arg::new(OUT)
                .long(OUT)
                .action(ArgAction::SetTrue)
                .help("Only the frames they send (as they leave, tag and all)."),
        )
        .arg(
            Arg::new(BOTH)
                .long(BOTH)
                .action(ArgAction::SetTrue)
                .help("The frames they receive and those they send (the default)."),
        )
        .group(ArgGroup::new("direction").args([IN, OUT, BOTH]))
        .arg(
            Arg::new(TO)
                .long(TO)
                .required(true)
                .value_name("PORT")
                .help(
                    "The monitor port the copies go out of; it forwards nothing else while \
                     the mirror lasts.",
                ),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for MirrorSpec {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let text = |id: &str| {
            matches.get_one::<String>(id).cloned().ok_or_else(|| {
                clap::Error::raw(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    format!("the mirror's {id} is missing\n"),
                )
            })
        };
        let flag = |id: &str| matches.get_flag(id);
        Ok(Self {
            name: text(NAME)?,
            from: matches
                .get_many::<String>(FROM)
                .map(|v| v.cloned().collect())
                .unwrap_or_default(),
            direction: match (flag(IN), flag(OUT)) {
                (true, _) => Direction::In,
                (_, true) => Direction::Out,
                _ => Direction::Both,
            },
            to: text(TO)?,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
