//! A port's settings as an operator writes them — one type, [`PortSpec`], wherever they
//! come from — and the one check that turns them into the bridge's [`PortConfig`].
//!
//! | where | how it reads a `PortSpec` |
//! | --- | --- |
//! | `hairpin port add NAME --vlan 10 ...` | clap, `#[command(flatten)]` |
//! | `hairpin run --ports ... --vlan PORT=VID ...` | [`PortFlags`], gathered per port by [`PortFlags::specs`] |
//! | the config file's `[[port]]` | serde (TOML) |
//! | the control socket's `port_add`, `ports.json` in the state dir | serde (JSON) |
//! | hairpin-cni's attachment keys (`vlan`, `trunk`, `native`, `hairpin`; `allow_ip` from IPAM) | serde (JSON) |
//!
//! [`PortSpec::check`] is the only place a setting's value is checked; its
//! [`SettingError`] names the setting, and each front end says it in its own words: an
//! option (`--vlan 4095: ...`), a `run` option with its port (`--vlan vm1=4095: ...`), a
//! key of the file (`port[2].vlan: ...`).
//!
//! A port mirror's settings have their own type, [`MirrorSpec`] (`spec/mirror.rs`).
//!
//! A new per-port setting is a field here (with its clap and serde attributes, a
//! `PortFlags` field for `run`, and its check into [`PortPolicy`]), and what the switch
//! does with it.
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod limits;
pub mod mirror;
pub use limits::{LimitFlags, LimitSpec};
pub use mirror::MirrorSpec;

use super::config::PortConfig;
use crate::{
    switch::{
        DEFAULT_MAX_MACS, Mode, PortPolicy, Role, VlanId,
        guard::{IpPrefix, MAX_ALLOWED_IPS, PrefixError},
        vlan::{self, PortVlans},
    },
    wire::{Mac, MacParseError},
};

/// A port's settings, as `hairpin port add`, the config file's `[[port]]`, the control
/// socket and hairpin-cni give them (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(try_from = "Fields")]
pub struct PortSpec {
    /// The interface.
    pub name: String,
    /// The port towards the physical network (the config file also takes
    /// `role = "uplink"`).
    #[arg(long)]
    pub uplink: bool,
    /// Access port of this VLAN.
    #[arg(long, conflicts_with = "trunk")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u32>,
    /// Trunk of these VLANs, e.g. `10,20,100-110`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    /// The trunk's native VLAN.
    #[arg(long, requires = "trunk")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native: Option<u32>,
    /// Reflective relay.
    #[arg(long)]
    pub hairpin: bool,
    /// Anti-spoofing: the port may send only from these MACs (repeatable). The config
    /// file calls it `allowed_macs`.
    #[arg(long, value_name = "MAC")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// A static MAC table entry on the port (repeatable).
    #[arg(long = "static-mac", value_name = "MAC")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_macs: Vec<String>,
    /// The most MAC table entries the port may learn; sources past it are forwarded but
    /// not learned, and counted (0: no limit; default 4096 on a downlink, none on the
    /// uplink).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_macs: Option<u32>,

    /// Storm control and ingress policing (`spec/limits.rs`).
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: LimitSpec,
    /// IP source guard: the port's IP, ARP and neighbour discovery may use only the
    /// addresses of these prefixes (repeatable; `10.0.0.5/32`, `fd00::/64`).
    #[arg(long = "allow-ip", value_name = "CIDR")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_ip: Vec<String>,
}

/// [`PortSpec`] as serde reads it: the config file's spellings (`role`,
/// `allowed_macs`) beside the protocol's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    name: String,
    #[serde(default)]
    uplink: Option<bool>,
    #[serde(default)]
    role: Option<FileRole>,
    #[serde(default)]
    vlan: Option<u32>,
    #[serde(default)]
    trunk: Option<String>,
    #[serde(default)]
    native: Option<u32>,
    #[serde(default)]
    hairpin: bool,
    #[serde(default, alias = "allowed_macs")]
    allow: Vec<String>,
    #[serde(default)]
    static_macs: Vec<String>,
    #[serde(default)]
    max_macs: Option<u32>,

    #[serde(default)]
    storm_broadcast: Option<u32>,
    #[serde(default)]
    storm_multicast: Option<u32>,
    #[serde(default)]
    storm_unknown_unicast: Option<u32>,
    #[serde(default)]
    storm_burst: Option<u32>,
    #[serde(default, deserialize_with = "limits::amount")]
    police_rate: Option<String>,
    #[serde(default, deserialize_with = "limits::amount")]
    police_burst: Option<String>,
    #[serde(default)]
    police_pps: Option<u32>,
    #[serde(default)]
    allow_ip: Vec<String>,
}

/// The config file's `role`.
#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum FileRole {
    Downlink,
    Uplink,
}

impl TryFrom<Fields> for PortSpec {
    type Error = String;

    fn try_from(f: Fields) -> Result<Self, String> {
        let uplink = match (f.uplink, f.role) {
            (Some(uplink), Some(role)) if uplink != (role == FileRole::Uplink) => {
                return Err(format!(
                    "port {}: `uplink` and `role` disagree; give one of them",
                    f.name
                ));
            }
            (Some(uplink), _) => uplink,
            (None, role) => role == Some(FileRole::Uplink),
        };
        Ok(Self {
            name: f.name,
            uplink,
            vlan: f.vlan,
            trunk: f.trunk,
            native: f.native,
            hairpin: f.hairpin,
            allow: f.allow,
            static_macs: f.static_macs,
            max_macs: f.max_macs,
            limits: LimitSpec {
                storm_broadcast: f.storm_broadcast,
                storm_multicast: f.storm_multicast,
                storm_unknown_unicast: f.storm_unknown_unicast,
                storm_burst: f.storm_burst,
                police_rate: f.police_rate,
                police_burst: f.police_burst,
                police_pps: f.police_pps,
            },
            allow_ip: f.allow_ip,
        })
    }
}

/// One of a port's settings, as an error names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `vlan`.
    Vlan,
    /// `trunk`.
    Trunk,
    /// `native`.
    Native,
    /// The `n`th of `allow`.
    Allow(usize),
    /// The `n`th of `static_macs`.
    StaticMac(usize),

    /// Storm control or policing.
    Limit(limits::Key),
    /// The `n`th of `allow_ip`.
    AllowIp(usize),
}

impl Setting {
    /// The command-line option (`hairpin port add` and `run`).
    pub fn option(self) -> &'static str {
        match self {
            Self::Vlan => "--vlan",
            Self::Trunk => "--trunk",
            Self::Native => "--native",
            Self::Allow(_) => "--allow",
            Self::StaticMac(_) => "--static-mac",
            Self::Limit(key) => key.option(),
            Self::AllowIp(_) => "--allow-ip",
        }
    }

    /// The config file's key, within its `[[port]]` (`allowed_macs[0]`).
    pub fn key(self) -> String {
        match self {
            Self::Vlan => "vlan".into(),
            Self::Trunk => "trunk".into(),
            Self::Native => "native".into(),
            Self::Allow(n) => format!("allowed_macs[{n}]"),
            Self::StaticMac(n) => format!("static_macs[{n}]"),
            Self::Limit(key) => key.key().into(),
            Self::AllowIp(n) => format!("allow_ip[{n}]"),
        }
    }
}

/// A setting [`PortSpec::check`] refused. `Display` says it as `hairpin port add`'s
/// option (`--vlan 4095: VLAN 4095 is outside 1-4094`); [`SettingError::for_port`] as a
/// `run` option, [`SettingError::key`] as the config file's key. The value is named
/// once: after the option, unless `why` starts with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {why}", self.option_and_value(None))]
pub struct SettingError {
    /// Which setting.
    pub setting: Setting,
    /// Its value, as given.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

impl SettingError {
    fn new(setting: Setting, value: impl ToString, why: impl ToString) -> Self {
        Self {
            setting,
            value: value.to_string(),
            why: why.to_string(),
        }
    }

    /// As `run`'s `PORT=VALUE` option: `--vlan vm1=4095: VLAN 4095 is outside 1-4094`.
    pub fn for_port(&self, port: &str) -> String {
        format!("{}: {}", self.option_and_value(Some(port)), self.why)
    }

    /// `--vlan 4095`, `--vlan vm1=4095`; `--allow`, `--allow vm1` where `why` names
    /// the value itself.
    fn option_and_value(&self, port: Option<&str>) -> String {
        let option = self.setting.option();
        let named =
            self.why.starts_with(&self.value) || self.why.starts_with(&format!("{:?}", self.value));
        match (port, named) {
            (None, true) => option.to_owned(),
            (None, false) => format!("{option} {}", self.value),
            (Some(port), true) => format!("{option} {port}"),
            (Some(port), false) => format!("{option} {port}={}", self.value),
        }
    }

    /// As the config file's key of port `i`: `port[2].vlan: VLAN 4095 is outside 1-4094`.
    pub fn key(&self, i: usize) -> String {
        format!("port[{i}].{}", self.setting.key())
    }
}

impl PortSpec {
    /// Every key serde reads, the config file's spellings (`role`, `allowed_macs`)
    /// included: what a front end that passes keys through (hairpin-cni) may accept.
    pub const KEYS: [&'static str; 19] = [
        "name",
        "uplink",
        "role",
        "vlan",
        "trunk",
        "native",
        "hairpin",
        "allow",
        "allowed_macs",
        "static_macs",
        "max_macs",
        limits::KEYS[0],
        limits::KEYS[1],
        limits::KEYS[2],
        limits::KEYS[3],
        limits::KEYS[4],
        limits::KEYS[5],
        limits::KEYS[6],
        "allow_ip",
    ];

    /// A plain downlink called `name`.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    /// Checks every setting and makes the port's configuration: its policy and static
    /// MACs. The error names the first setting that is wrong.
    pub fn check(&self) -> Result<PortConfig, SettingError> {
        let station = |setting: Setting, text: &str| -> Result<Mac, SettingError> {
            let mac: Mac = text
                .parse()
                .map_err(|e: MacParseError| SettingError::new(setting, text, e))?;
            if mac.is_learnable() {
                Ok(mac)
            } else {
                Err(SettingError::new(
                    setting,
                    text,
                    format!("{mac} is not a station's MAC (multicast or all-zero)"),
                ))
            }
        };
        let vid = |setting, v: u32| vlan::check(v).map_err(|e| SettingError::new(setting, v, e));
        let vlans = match (self.vlan, &self.trunk, self.native) {
            (None, None, None) => None,
            (Some(v), None, None) => Some(PortVlans::Access(vid(Setting::Vlan, v)?)),
            (None, Some(list), native) => Some(PortVlans::Trunk {
                tagged: vlan::parse_list(list)
                    .map_err(|e| SettingError::new(Setting::Trunk, list, e))?,
                native: native.map(|n| vid(Setting::Native, n)).transpose()?,
            }),
            (Some(_), Some(list), _) => {
                return Err(SettingError::new(
                    Setting::Trunk,
                    list,
                    "a port is an access port (vlan) or a trunk (trunk), not both",
                ));
            }
            (_, None, Some(n)) => {
                return Err(SettingError::new(
                    Setting::Native,
                    n,
                    "a native VLAN belongs to a trunk: give the port a trunk too",
                ));
            }
        };
        Ok(PortConfig {
            name: self.name.clone(),
            policy: PortPolicy {
                role: if self.uplink {
                    Role::Uplink
                } else {
                    Role::Downlink
                },
                hairpin: self.hairpin,
                allowed_sources: self
                    .allow
                    .iter()
                    .enumerate()
                    .map(|(n, m)| station(Setting::Allow(n), m))
                    .collect::<Result<_, _>>()?,
                vlans,
                max_macs: self
                    .max_macs
                    .unwrap_or_else(|| default_max_macs(self.uplink)),
                // The bridge's mirrors say which ports are monitor ports.
                monitor: false,
                limits: self.limits.check()?,
                allowed_ips: allowed_ips(&self.allow_ip, self.uplink)?,
            },
            static_macs: self
                .static_macs
                .iter()
                .enumerate()
                .map(|(n, m)| station(Setting::StaticMac(n), m))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<&PortConfig> for PortSpec {
    /// The settings that make `config` (as a state file or `show ports` would keep them).
    fn from(config: &PortConfig) -> Self {
        let p = &config.policy;
        let (vlan, trunk, native) = match &p.vlans {
            None => (None, None, None),
            Some(PortVlans::Access(v)) => (Some(u32::from(*v)), None, None),
            Some(PortVlans::Trunk { tagged, native }) => {
                (None, Some(vlan_list(tagged)), native.map(u32::from))
            }
        };
        Self {
            name: config.name.clone(),
            uplink: p.role == Role::Uplink,
            vlan,
            trunk,
            native,
            hairpin: p.hairpin,
            allow: p.allowed_sources.iter().map(ToString::to_string).collect(),
            static_macs: config.static_macs.iter().map(ToString::to_string).collect(),
            max_macs: (p.max_macs != default_max_macs(p.role == Role::Uplink))
                .then_some(p.max_macs),
            limits: LimitSpec::from(&p.limits),
            allow_ip: p.allowed_ips.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A port's `max_macs` when none is given: [`DEFAULT_MAX_MACS`] on a downlink, no
/// limit (0) on the uplink.
fn default_max_macs(uplink: bool) -> u32 {
    if uplink { 0 } else { DEFAULT_MAX_MACS }
}

/// `allow_ip`'s prefixes, checked, in order and each once: at most
/// [`MAX_ALLOWED_IPS`], none on the uplink.
fn allowed_ips(list: &[String], uplink: bool) -> Result<Vec<IpPrefix>, SettingError> {
    if let (true, Some(first)) = (uplink, list.first()) {
        return Err(SettingError::new(
            Setting::AllowIp(0),
            first,
            "the uplink carries every station behind it: an IP source guard belongs on a downlink",
        ));
    }
    let mut prefixes = Vec::with_capacity(list.len());
    for (n, text) in list.iter().enumerate() {
        let prefix: IpPrefix = text
            .parse()
            .map_err(|e: PrefixError| SettingError::new(Setting::AllowIp(n), text, e))?;
        if !prefixes.contains(&prefix) {
            prefixes.push(prefix);
        }
        if prefixes.len() > MAX_ALLOWED_IPS {
            return Err(SettingError::new(
                Setting::AllowIp(n),
                text,
                format!("a port allows at most {MAX_ALLOWED_IPS} prefixes"),
            ));
        }
    }
    prefixes.sort_unstable();
    Ok(prefixes)
}

/// `vlans` (in order) as `--trunk` takes them, runs as ranges: `10,20-22`.
fn vlan_list(vlans: &[VlanId]) -> String {
    let mut runs: Vec<(VlanId, VlanId)> = Vec::new();
    for &v in vlans {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == v => *end = v,
            _ => runs.push((v, v)),
        }
    }
    runs.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A `PORT=VALUE` pair of `run`'s per-port options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortArg {
    /// The port name.
    pub port: String,
    /// What follows the `=`.
    pub value: String,
}

impl FromStr for PortArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((port, value)) if !port.is_empty() && !value.is_empty() => Ok(Self {
                port: port.to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(format!("{s:?}: expected PORT=VALUE, e.g. vm1=10")),
        }
    }
}

/// `hairpin run`'s per-port options: each names its port (`--vlan vm1=10`) and sets one
/// field of that port's [`PortSpec`].
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PortFlags {
    /// Ports with reflective relay: frames may go back out of the port they came in on.
    #[arg(long, conflicts_with = "config", value_delimiter = ',')]
    pub hairpin: Vec<String>,
    /// Anti-spoofing: PORT=MAC lets PORT send from MAC, and only from the MACs so listed
    /// (repeat the option for more).
    #[arg(long, conflicts_with = "config", value_name = "PORT=MAC")]
    pub allow: Vec<PortArg>,
    /// A MAC table entry that never ages or moves, in every VLAN of the port (repeatable).
    #[arg(long, conflicts_with = "config", value_name = "PORT=MAC")]
    pub static_mac: Vec<PortArg>,
    /// Access port: PORT=VID puts PORT in VLAN VID, untagged (repeatable). Once any port
    /// has a VLAN setting, ports without one are access ports of VLAN 1.
    #[arg(long, conflicts_with = "config", value_name = "PORT=VID")]
    pub vlan: Vec<PortArg>,
    /// Trunk port: PORT=LIST carries the VLANs of LIST tagged, e.g. `up=10,20,100-110`
    /// (repeatable).
    #[arg(long, conflicts_with = "config", value_name = "PORT=LIST")]
    pub trunk: Vec<PortArg>,
    /// A trunk's native VLAN: PORT=VID carries VLAN VID untagged on trunk PORT.
    #[arg(long, conflicts_with = "config", value_name = "PORT=VID")]
    pub native: Vec<PortArg>,
    /// PORT=N: PORT learns at most N MAC table entries; sources past them are forwarded
    /// but not learned, and counted (0: no limit; default 4096 on a downlink, none on
    /// the uplink).
    #[arg(long, conflicts_with = "config", value_name = "PORT=N")]
    pub max_macs: Vec<PortArg>,

    /// Storm control and ingress policing, per port (`spec/limits.rs`).
    #[command(flatten)]
    pub limits: LimitFlags,
    /// IP source guard: PORT=CIDR lets PORT's IP, ARP and neighbour discovery use the
    /// addresses of CIDR, and only those so listed (repeat the option for more).
    #[arg(long, conflicts_with = "config", value_name = "PORT=CIDR")]
    pub allow_ip: Vec<PortArg>,
}

/// An error in `run`'s ports and per-port options.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// An option names a port that is not bridged.
    #[error("{option} {port}: {port} is not one of the bridged ports ({known})")]
    UnknownPort {
        /// The option.
        option: &'static str,
        /// The port it named.
        port: String,
        /// The bridged ports.
        known: String,
    },
    /// The uplink is also listed among the ports.
    #[error(
        "--uplink {0}: it is also in --ports; list downlinks in --ports and the uplink only in --uplink"
    )]
    UplinkInPorts(String),
    /// VEPA or private without an uplink.
    #[error("--mode {0} needs --uplink IF (the port towards the adjacent switch)")]
    NeedsUplink(Mode),
    /// A setting given twice for one port, or a value that is not what the option takes.
    #[error("{option} {port}={value}: {why}")]
    Option {
        /// The option.
        option: &'static str,
        /// The port.
        port: String,
        /// The value given.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// A setting [`PortSpec::check`] refused.
    #[error("{}", .error.for_port(.port))]
    Setting {
        /// The port.
        port: String,
        /// What is wrong.
        error: SettingError,
    },
    /// One MAC static on two ports.
    #[error("--static-mac {mac} is given for {first} and {second}: one station lives on one port")]
    StaticTwice {
        /// The MAC.
        mac: Mac,
        /// The first port.
        first: String,
        /// The second.
        second: String,
    },
}

impl PortFlags {
    /// The ports of `run --ports PORTS [--uplink UPLINK]` in slot order (the downlinks,
    /// then the uplink), each with the settings these options give it, checked.
    pub fn ports(
        &self,
        mode: Mode,
        ports: &[String],
        uplink: Option<&str>,
    ) -> Result<Vec<PortConfig>, FlagError> {
        let specs = self.specs(mode, ports, uplink)?;
        let mut configs: Vec<PortConfig> = Vec::with_capacity(specs.len());
        for spec in &specs {
            let config = spec.check().map_err(|error| FlagError::Setting {
                port: spec.name.clone(),
                error,
            })?;
            // The same MAC twice for one port is one station, as `port add` and the
            // config file take it; on two ports, it is refused.
            for mac in &config.static_macs {
                if let Some(other) = configs.iter().find(|c| c.static_macs.contains(mac)) {
                    return Err(FlagError::StaticTwice {
                        mac: *mac,
                        first: other.name.clone(),
                        second: spec.name.clone(),
                    });
                }
            }
            configs.push(config);
        }
        Ok(configs)
    }

    /// The ports' [`PortSpec`]s, unchecked but for the options' shape.
    pub fn specs(
        &self,
        mode: Mode,
        ports: &[String],
        uplink: Option<&str>,
    ) -> Result<Vec<PortSpec>, FlagError> {
        let mut specs: Vec<PortSpec> = ports.iter().map(|p| PortSpec::named(p)).collect();
        if let Some(uplink) = uplink {
            if ports.iter().any(|p| p == uplink) {
                return Err(FlagError::UplinkInPorts(uplink.to_owned()));
            }
            specs.push(PortSpec {
                uplink: true,
                ..PortSpec::named(uplink)
            });
        } else if matches!(mode, Mode::Vepa | Mode::Private | Mode::Passthru) {
            return Err(FlagError::NeedsUplink(mode));
        }
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let slot = |option: &'static str, port: &str| {
            names
                .iter()
                .position(|name| name == port)
                .ok_or_else(|| FlagError::UnknownPort {
                    option,
                    port: port.to_owned(),
                    known: names.join(","),
                })
        };
        let bad = |option, arg: &PortArg, why: &str| FlagError::Option {
            option,
            port: arg.port.clone(),
            value: arg.value.clone(),
            why: why.to_owned(),
        };
        let number = |option, arg: &PortArg| {
            arg.value
                .parse::<u32>()
                .map_err(|_| bad(option, arg, "not a VLAN number"))
        };
        for port in &self.hairpin {
            specs[slot("--hairpin", port)?].hairpin = true;
        }
        for arg in &self.allow {
            let i = slot("--allow", &arg.port)?;
            specs[i].allow.push(arg.value.clone());
        }
        for arg in &self.vlan {
            let i = slot("--vlan", &arg.port)?;
            let vid = number("--vlan", arg)?;
            if specs[i].vlan.is_some() || specs[i].trunk.is_some() {
                return Err(bad("--vlan", arg, "the port already has a VLAN setting"));
            }
            specs[i].vlan = Some(vid);
        }
        for arg in &self.trunk {
            let i = slot("--trunk", &arg.port)?;
            if specs[i].vlan.is_some() || specs[i].trunk.is_some() {
                return Err(bad("--trunk", arg, "the port already has a VLAN setting"));
            }
            specs[i].trunk = Some(arg.value.clone());
        }
        for arg in &self.native {
            let i = slot("--native", &arg.port)?;
            let vid = number("--native", arg)?;
            if specs[i].trunk.is_none() {
                return Err(bad(
                    "--native",
                    arg,
                    "a native VLAN belongs to a trunk: give the port --trunk too",
                ));
            }
            specs[i].native = Some(vid);
        }
        for arg in &self.static_mac {
            let i = slot("--static-mac", &arg.port)?;
            specs[i].static_macs.push(arg.value.clone());
        }
        for arg in &self.max_macs {
            let i = slot("--max-macs", &arg.port)?;
            let n = arg
                .value
                .parse::<u32>()
                .map_err(|_| bad("--max-macs", arg, "not a number of entries"))?;
            if specs[i].max_macs.replace(n).is_some() {
                return Err(bad("--max-macs", arg, "given twice for the port"));
            }
        }
        self.limits.apply(&mut specs)?;
        for arg in &self.allow_ip {
            let i = slot("--allow-ip", &arg.port)?;
            specs[i].allow_ip.push(arg.value.clone());
        }
        Ok(specs)
    }
}

#[cfg(test)]
mod tests;
