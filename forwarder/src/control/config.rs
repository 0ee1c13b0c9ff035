//! The bridge as configured ([`BridgeConfig`], [`PortConfig`]), and turning what the
//! operator wrote (command-line options today) into it, checked: the ordered ports,
//! each one's policy, the static MAC entries.
//!
//! Every error names the option and the port it is about; nothing is attached until the
//! whole specification is valid.
use std::str::FromStr;

use super::{
    protocol::PortSpec,
    xdp::{FastPath, XdpAttachMode},
};
use crate::{
    datapath::DatapathConfig,
    switch::{
        Mode, PortId, PortPolicy, Role,
        vlan::{self, PortVlans},
    },
    wire::{Mac, MacParseError},
};

/// A port as configured: its name, policy and static MAC entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// The interface name.
    pub name: String,
    /// Role, reflective relay, anti-spoofing, VLANs.
    pub policy: PortPolicy,
    /// MAC table entries that never age or move, in every VLAN of the port.
    pub static_macs: Vec<Mac>,
}

impl PortConfig {
    /// A plain downlink called `name`.
    pub fn downlink(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            policy: PortPolicy::default(),
            static_macs: Vec::new(),
        }
    }
}

/// The whole bridge, as the command line or the configuration file describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The switching mode.
    pub mode: Mode,
    /// The ports, in slot order.
    pub ports: Vec<PortConfig>,
    /// MAC table capacity.
    pub fdb_capacity: usize,
    /// Seconds a learned MAC lives unseen.
    pub fdb_max_age: u32,
    /// XDP attach mode.
    pub xdp_mode: XdpAttachMode,
    /// Queue indices to serve (workers); by default the most any port has.
    pub queues: Option<u32>,
    /// Core for each worker.
    pub cores: Option<Vec<usize>>,
    /// Sockets, rings, UMEMs.
    pub datapath: DatapathConfig,
    /// Bit `n`: relay frames to the reserved group address `01:80:c2:00:00:0n` (none by
    /// default; as the Linux bridge's `group_fwd_mask`).
    pub group_fwd_mask: u16,
    /// The kernel fast path.
    pub fast_path: FastPath,
}

/// Largest MAC table: 16 M entries (1 GiB of buckets).
pub const MAX_FDB_SIZE: usize = 1 << 24;

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Veb,
            ports: Vec::new(),
            fdb_capacity: 65_536,
            fdb_max_age: 300,
            xdp_mode: XdpAttachMode::Auto,
            queues: None,
            cores: None,
            datapath: DatapathConfig::default(),
            group_fwd_mask: 0,
            fast_path: FastPath::default(),
        }
    }
}

/// A `PORT=VALUE` pair (`--vlan`, `--trunk`, `--native`), the value checked later.
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

/// A `PORT=MAC` pair (`--allow`, `--static-mac`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMac {
    /// The port name.
    pub port: String,
    /// The MAC.
    pub mac: Mac,
}

/// An error parsing a `PORT=MAC` pair.
#[derive(Debug, thiserror::Error)]
pub enum PortMacError {
    /// No `=`.
    #[error("{0:?}: expected PORT=MAC, e.g. vm1=02:00:00:00:00:01")]
    Shape(String),
    /// A bad MAC.
    #[error(transparent)]
    Mac(#[from] MacParseError),
}

impl FromStr for PortMac {
    type Err = PortMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (port, mac) = s
            .split_once('=')
            .ok_or_else(|| PortMacError::Shape(s.to_owned()))?;
        if port.is_empty() {
            return Err(PortMacError::Shape(s.to_owned()));
        }
        Ok(Self {
            port: port.to_owned(),
            mac: mac.parse()?,
        })
    }
}

/// An error in the bridge's specification.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
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
    /// A bad VLAN setting.
    #[error("{option} {port}={value}: {why}")]
    Vlan {
        /// The option.
        option: &'static str,
        /// The port.
        port: String,
        /// The value given.
        value: String,
        /// What is wrong.
        why: String,
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
    /// A multicast or zero MAC where a station's MAC is needed.
    #[error("{option} {port}={mac}: not a station's MAC (multicast or all-zero)")]
    NotUnicast {
        /// The option.
        option: &'static str,
        /// The port.
        port: String,
        /// The MAC.
        mac: Mac,
    },
}

/// A [`PortSpec`] (`hairpin port add`, the control socket) checked into a port's
/// configuration; the error says which setting is wrong.
pub fn port_config(spec: &PortSpec) -> Result<PortConfig, String> {
    let station = |what: &str, text: &str| -> Result<Mac, String> {
        let mac: Mac = text
            .parse()
            .map_err(|e: MacParseError| format!("{what}: {e}"))?;
        if mac.is_learnable() {
            Ok(mac)
        } else {
            Err(format!(
                "{what} {mac}: not a station's MAC (multicast or all-zero)"
            ))
        }
    };
    let vid = |what: &str, v: u32| vlan::check(v).map_err(|e| format!("{what} {v}: {e}"));
    let vlans = match (spec.vlan, &spec.trunk, spec.native) {
        (None, None, None) => None,
        (Some(v), None, None) => Some(PortVlans::Access(vid("--vlan", v)?)),
        (None, Some(list), native) => Some(PortVlans::Trunk {
            tagged: vlan::parse_list(list).map_err(|e| format!("--trunk {list}: {e}"))?,
            native: native.map(|n| vid("--native", n)).transpose()?,
        }),
        (Some(_), Some(_), _) => {
            return Err("a port is an access port (--vlan) or a trunk (--trunk), not both".into());
        }
        (_, None, Some(_)) => {
            return Err("--native belongs to a trunk: give --trunk too".into());
        }
    };
    Ok(PortConfig {
        name: spec.name.clone(),
        policy: PortPolicy {
            role: if spec.uplink {
                Role::Uplink
            } else {
                Role::Downlink
            },
            hairpin: spec.hairpin,
            allowed_sources: spec
                .allow
                .iter()
                .map(|m| station("--allow", m))
                .collect::<Result<_, _>>()?,
            vlans,
        },
        static_macs: spec
            .static_macs
            .iter()
            .map(|m| station("--static-mac", m))
            .collect::<Result<_, _>>()?,
    })
}

/// The bridge as specified: ports in slot order (downlinks, then the uplink), with
/// their policies and the static MAC entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Port names, slot order.
    pub ports: Vec<String>,
    /// One per port.
    pub policies: Vec<PortPolicy>,
    /// (port slot, MAC).
    pub static_macs: Vec<(PortId, Mac)>,
}

/// What the command line says about the bridge's ports.
#[derive(Clone, Debug, Default)]
pub struct PortOptions<'a> {
    /// `--ports`: the downlinks (or, in `veb`/`xconnect` without `--uplink`, all ports).
    pub ports: &'a [String],
    /// `--uplink`.
    pub uplink: Option<&'a str>,
    /// `--hairpin`.
    pub hairpin: &'a [String],
    /// `--allow`.
    pub allow: &'a [PortMac],
    /// `--static-mac`.
    pub static_macs: &'a [PortMac],
    /// `--vlan`: access ports.
    pub vlan: &'a [PortArg],
    /// `--trunk`: trunk ports and their VLAN lists.
    pub trunk: &'a [PortArg],
    /// `--native`: trunks' native VLANs.
    pub native: &'a [PortArg],
}

impl BridgeSpec {
    /// The ports, each with its policy and static MACs.
    pub fn into_ports(self) -> Vec<PortConfig> {
        let statics = self.static_macs;
        self.ports
            .into_iter()
            .zip(self.policies)
            .enumerate()
            .map(|(i, (name, policy))| PortConfig {
                name,
                policy,
                static_macs: statics
                    .iter()
                    .filter(|(p, _)| usize::from(*p) == i)
                    .map(|&(_, m)| m)
                    .collect(),
            })
            .collect()
    }

    /// Checks `options` for `mode` and builds the specification.
    pub fn from_options(mode: Mode, options: &PortOptions<'_>) -> Result<Self, SpecError> {
        let mut ports: Vec<String> = options.ports.to_vec();
        if let Some(uplink) = options.uplink {
            if ports.iter().any(|p| p == uplink) {
                return Err(SpecError::UplinkInPorts(uplink.to_owned()));
            }
            ports.push(uplink.to_owned());
        } else if matches!(mode, Mode::Vepa | Mode::Private | Mode::Passthru) {
            return Err(SpecError::NeedsUplink(mode));
        }
        let mut policies = vec![PortPolicy::default(); ports.len()];
        if options.uplink.is_some()
            && let Some(last) = policies.last_mut()
        {
            last.role = Role::Uplink;
        }
        let slot = |option: &'static str, port: &str| {
            ports
                .iter()
                .position(|p| p == port)
                .ok_or_else(|| SpecError::UnknownPort {
                    option,
                    port: port.to_owned(),
                    known: ports.join(","),
                })
        };
        for port in options.hairpin {
            let i = slot("--hairpin", port)?;
            policies[i].hairpin = true;
        }
        for PortMac { port, mac } in options.allow {
            let i = slot("--allow", port)?;
            if !mac.is_learnable() {
                return Err(SpecError::NotUnicast {
                    option: "--allow",
                    port: port.clone(),
                    mac: *mac,
                });
            }
            policies[i].allowed_sources.push(*mac);
        }
        let bad = |option, arg: &PortArg, why: String| SpecError::Vlan {
            option,
            port: arg.port.clone(),
            value: arg.value.clone(),
            why,
        };
        let number = |option, arg: &PortArg| {
            arg.value
                .parse::<u32>()
                .map_err(|_| "not a VLAN number".to_owned())
                .and_then(|v| vlan::check(v).map_err(|e| e.to_string()))
                .map_err(|why| bad(option, arg, why))
        };
        for arg in options.vlan {
            let i = slot("--vlan", &arg.port)?;
            if policies[i].vlans.is_some() {
                return Err(bad(
                    "--vlan",
                    arg,
                    "the port already has a VLAN setting".into(),
                ));
            }
            policies[i].vlans = Some(PortVlans::Access(number("--vlan", arg)?));
        }
        for arg in options.trunk {
            let i = slot("--trunk", &arg.port)?;
            if policies[i].vlans.is_some() {
                return Err(bad(
                    "--trunk",
                    arg,
                    "the port already has a VLAN setting".into(),
                ));
            }
            let tagged = vlan::parse_list(&arg.value).map_err(|why| bad("--trunk", arg, why))?;
            policies[i].vlans = Some(PortVlans::Trunk {
                tagged,
                native: None,
            });
        }
        for arg in options.native {
            let i = slot("--native", &arg.port)?;
            let vid = number("--native", arg)?;
            match &mut policies[i].vlans {
                Some(PortVlans::Trunk { native, .. }) => *native = Some(vid),
                _ => {
                    return Err(bad(
                        "--native",
                        arg,
                        "a native VLAN belongs to a trunk: give the port --trunk too".into(),
                    ));
                }
            }
        }
        let mut static_macs: Vec<(PortId, Mac)> = Vec::new();
        for PortMac { port, mac } in options.static_macs {
            let i = slot("--static-mac", port)?;
            if !mac.is_learnable() {
                return Err(SpecError::NotUnicast {
                    option: "--static-mac",
                    port: port.clone(),
                    mac: *mac,
                });
            }
            // The same MAC twice for one port is one station, as `port add` and the
            // config file take it; on two ports, it is refused.
            if let Some(&(other, _)) = static_macs
                .iter()
                .find(|&&(p, m)| m == *mac && usize::from(p) != i)
            {
                return Err(SpecError::StaticTwice {
                    mac: *mac,
                    first: ports[usize::from(other)].clone(),
                    second: port.clone(),
                });
            }
            static_macs.push((i as PortId, *mac));
        }
        Ok(Self {
            ports,
            policies,
            static_macs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_port_mac_pairs() {
        let pm: PortMac = "vm1=02:00:00:00:00:01".parse().unwrap();
        assert_eq!(pm.port, "vm1");
        assert_eq!(pm.mac, Mac([2, 0, 0, 0, 0, 1]));
        assert!("vm1".parse::<PortMac>().is_err());
        assert!("=02:00:00:00:00:01".parse::<PortMac>().is_err());
        assert!("vm1=02:00".parse::<PortMac>().is_err());
    }

    #[test]
    fn the_uplink_comes_last_with_its_role() {
        let ports = names(&["vm1", "vm2"]);
        let hairpin = names(&["eth0"]);
        let allow = vec!["vm1=02:00:00:00:00:01".parse().unwrap()];
        let statics = vec!["vm2=02:00:00:00:00:02".parse().unwrap()];
        let spec = BridgeSpec::from_options(
            Mode::Vepa,
            &PortOptions {
                ports: &ports,
                uplink: Some("eth0"),
                hairpin: &hairpin,
                allow: &allow,
                static_macs: &statics,
                ..PortOptions::default()
            },
        )
        .unwrap();
        assert_eq!(spec.ports, names(&["vm1", "vm2", "eth0"]));
        assert_eq!(spec.policies[2].role, Role::Uplink);
        assert!(spec.policies[2].hairpin);
        assert_eq!(spec.policies[0].role, Role::Downlink);
        assert_eq!(
            spec.policies[0].allowed_sources,
            vec![Mac([2, 0, 0, 0, 0, 1])]
        );
        assert_eq!(spec.static_macs, vec![(1, Mac([2, 0, 0, 0, 0, 2]))]);
    }

    #[test]
    fn a_static_mac_repeated_on_one_port_is_one_station_and_on_two_is_refused() {
        let ports = names(&["vm1", "vm2"]);
        let options = |statics: &[&str]| {
            let statics: Vec<PortMac> = statics.iter().map(|s| s.parse().unwrap()).collect();
            BridgeSpec::from_options(
                Mode::Veb,
                &PortOptions {
                    ports: &ports,
                    static_macs: &statics,
                    ..PortOptions::default()
                },
            )
        };
        let spec = options(&["vm1=02:00:00:00:00:01", "vm1=02:00:00:00:00:01"]).unwrap();
        assert_eq!(spec.static_macs, vec![(0, Mac([2, 0, 0, 0, 0, 1])); 2]);
        assert!(matches!(
            options(&["vm1=02:00:00:00:00:01", "vm2=02:00:00:00:00:01"]),
            Err(SpecError::StaticTwice { .. })
        ));

        // The bridge's own check agrees (config files and reloads go through it).
        let bridge = |statics: [&[Mac]; 2]| BridgeConfig {
            ports: ["vm1", "vm2"]
                .iter()
                .zip(statics)
                .map(|(name, macs)| PortConfig {
                    name: (*name).to_owned(),
                    policy: crate::switch::PortPolicy::default(),
                    static_macs: macs.to_vec(),
                })
                .collect(),
            ..BridgeConfig::default()
        };
        let m = Mac([2, 0, 0, 0, 0, 1]);
        assert!(crate::control::bridge::check_config(&bridge([&[m, m], &[]])).is_ok());
        assert!(crate::control::bridge::check_config(&bridge([&[m], &[m]])).is_err());
    }

    #[test]
    fn vlan_options_make_access_ports_and_trunks() {
        let ports = names(&["vm1", "vm2", "up"]);
        let arg = |s: &str| s.parse::<PortArg>().unwrap();
        let spec = BridgeSpec::from_options(
            Mode::Veb,
            &PortOptions {
                ports: &ports,
                vlan: &[arg("vm1=10")],
                trunk: &[arg("up=10,20-21")],
                native: &[arg("up=1")],
                ..PortOptions::default()
            },
        )
        .unwrap();
        assert_eq!(spec.policies[0].vlans, Some(PortVlans::Access(10)));
        assert_eq!(spec.policies[1].vlans, None);
        assert_eq!(
            spec.policies[2].vlans,
            Some(PortVlans::Trunk {
                tagged: vec![10, 20, 21],
                native: Some(1)
            })
        );
        let err = |vlan: &[PortArg], trunk: &[PortArg], native: &[PortArg]| {
            BridgeSpec::from_options(
                Mode::Veb,
                &PortOptions {
                    ports: &ports,
                    vlan,
                    trunk,
                    native,
                    ..PortOptions::default()
                },
            )
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            err(&[arg("vm1=4095")], &[], &[]),
            "--vlan vm1=4095: VLAN 4095 is outside 1-4094"
        );
        assert!(err(&[arg("vm1=10")], &[arg("vm1=20")], &[]).contains("already has"));
        assert!(err(&[], &[], &[arg("vm1=5")]).contains("belongs to a trunk"));
        assert!(err(&[], &[arg("up=30-20")], &[]).contains("runs backwards"));
        assert!("vm1".parse::<PortArg>().is_err());
    }

    #[test]
    fn errors_name_the_option_and_the_port() {
        let ports = names(&["vm1", "vm2"]);
        let err = |mode, options: PortOptions<'_>| {
            BridgeSpec::from_options(mode, &options)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(
                Mode::Vepa,
                PortOptions {
                    ports: &ports,
                    ..PortOptions::default()
                }
            ),
            "--mode vepa needs --uplink IF (the port towards the adjacent switch)"
        );
        let hairpin = names(&["vm3"]);
        assert_eq!(
            err(
                Mode::Veb,
                PortOptions {
                    ports: &ports,
                    hairpin: &hairpin,
                    ..PortOptions::default()
                }
            ),
            "--hairpin vm3: vm3 is not one of the bridged ports (vm1,vm2)"
        );
        assert!(
            err(
                Mode::Veb,
                PortOptions {
                    ports: &ports,
                    uplink: Some("vm1"),
                    ..PortOptions::default()
                }
            )
            .contains("also in --ports")
        );
        let allow = vec!["vm1=01:00:5e:00:00:01".parse().unwrap()];
        assert!(
            err(
                Mode::Veb,
                PortOptions {
                    ports: &ports,
                    allow: &allow,
                    ..PortOptions::default()
                }
            )
            .contains("not a station's MAC")
        );
    }
}
