//! The ports as the command line gives them, two ways that must agree:
//!
//! - `run --ports vf0,vf1 --uplink eth0 --vlan vf0=10 --trunk eth0=10,20 --native
//!   eth0=1 --allow vf0=MAC --static-mac vf0=MAC --allow-ip vf0=CIDR --hairpin eth0
//!   --police-rate vf0=100M --storm-broadcast vf1=1000 ...` (`PortFlags::ports`: the
//!   options gathered into one `PortSpec` per port, each checked);
//! - `port add NAME [--uplink] [--vlan V] [--trunk LIST] [--native V] [--hairpin]
//!   [--max-macs N] [--allow MAC]... [--static-mac MAC]... [--allow-ip CIDR]...
//!   [--storm-broadcast PPS] [--storm-multicast PPS] [--storm-unknown-unicast PPS]
//!   [--storm-burst N] [--police-rate BITS] [--police-burst BYTES] [--police-pps PPS]`
//!   (`PortSpec::check`, also the control socket's, the config file's and hairpin-cni's
//!   way in).
//!
//! The input is one such command line, without the `hairpin` (words split at
//! whitespace, `--option value` or `--option=value`). Nothing panics; a bridge `run`
//! accepts has ports that `port add` and the config file accept as they are; and `port
//! add` accepts a port exactly when `run` accepts the same port with the same options.
#![no_main]

use std::{path::Path, sync::Arc};

use hairpin::{
    control::{
        config::{BridgeConfig, PortConfig},
        config_file,
        spec::{LimitFlags, PortArg, PortFlags, PortSpec},
    },
    switch::{Fdb, Mode, PortSet, Tables, TablesError},
};
use hairpin_fuzz::to_toml;
use libfuzzer_sys::fuzz_target;

/// `hairpin run`'s port options, as clap would hand them over.
#[derive(Debug, Default)]
struct Run {
    mode: Mode,
    ports: Vec<String>,
    uplink: Option<String>,
    flags: PortFlags,
}

impl Run {
    /// The options in `words`; `None` where clap would refuse the command line.
    fn parse(words: &[(&str, Option<&str>)]) -> Option<Self> {
        let mut run = Self::default();
        for &(option, value) in words {
            let value = value?;
            let list = || value.split(',').map(str::to_owned);
            match option {
                "--mode" => {
                    run.mode = match value {
                        "veb" => Mode::Veb,
                        "vepa" => Mode::Vepa,
                        "private" => Mode::Private,
                        "xconnect" => Mode::Xconnect,
                        "passthru" => Mode::Passthru,
                        _ => return None,
                    }
                }
                "--ports" => run.ports.extend(list()),
                "--uplink" if run.uplink.is_none() => run.uplink = Some(value.to_owned()),
                "--hairpin" => run.flags.hairpin.extend(list()),
                "--allow" => run.flags.allow.push(port_arg(value)?),
                "--static-mac" => run.flags.static_mac.push(port_arg(value)?),
                "--vlan" => run.flags.vlan.push(port_arg(value)?),
                "--trunk" => run.flags.trunk.push(port_arg(value)?),
                "--native" => run.flags.native.push(port_arg(value)?),
                "--max-macs" => run.flags.max_macs.push(port_arg(value)?),
                "--storm-broadcast" => run.flags.limits.storm_broadcast.push(port_arg(value)?),
                "--storm-multicast" => run.flags.limits.storm_multicast.push(port_arg(value)?),
                "--storm-unknown-unicast" => {
                    run.flags.limits.storm_unknown_unicast.push(port_arg(value)?);
                }
                "--storm-burst" => run.flags.limits.storm_burst.push(port_arg(value)?),
                "--police-rate" => run.flags.limits.police_rate.push(port_arg(value)?),
                "--police-burst" => run.flags.limits.police_burst.push(port_arg(value)?),
                "--police-pps" => run.flags.limits.police_pps.push(port_arg(value)?),
                "--allow-ip" => run.flags.allow_ip.push(port_arg(value)?),
                _ => return None,
            }
        }
        Some(run)
    }

    fn ports(&self) -> Result<Vec<PortConfig>, String> {
        self.flags
            .ports(self.mode, &self.ports, self.uplink.as_deref())
            .map_err(|e| e.to_string())
    }
}

/// A `PORT=VALUE` value; it is split at its first `=`.
fn port_arg(text: &str) -> Option<PortArg> {
    let parsed: PortArg = text.parse().ok()?;
    assert_eq!(format!("{}={}", parsed.port, parsed.value), text);
    Some(parsed)
}

/// The words of `text`, as (option, value) pairs: `--option=value`, or `--option` and the
/// word after it unless that is an option too.
fn options<'a>(words: &[&'a str], flags: &[&str]) -> Option<Vec<(&'a str, Option<&'a str>)>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        if !word.starts_with("--") {
            return None;
        }
        i += 1;
        match word.split_once('=') {
            Some((option, value)) => out.push((option, Some(value))),
            None if flags.contains(&word) => out.push((word, None)),
            None => {
                out.push((word, words.get(i).copied()));
                i += 1;
            }
        }
    }
    Some(out)
}

/// `run`: every port of a bridge it accepts is one `port add` accepts as it is, and the
/// config file, given the same settings, loads the same bridge.
fn run(words: &[&str]) {
    let Some(run) = options(words, &[]).and_then(|o| Run::parse(&o)) else {
        return;
    };
    let Ok(ports) = run.ports() else {
        return;
    };
    for port in &ports {
        assert_eq!(
            PortSpec::from(port).check().as_ref(),
            Ok(port),
            "port add {:?}",
            port.name
        );
    }
    let slots: Vec<_> = ports.iter().map(|p| Some(p.policy.clone())).collect();
    let tables = Tables::new(run.mode, &slots, PortSet::first(slots.len().min(64)), {
        Arc::new(Fdb::with_capacity(16))
    });
    match tables {
        Ok(_) => {}
        // What the command line leaves to the bridge to check.
        Err(TablesError::PortCount { .. } | TablesError::UntouchedVlans(_)) => return,
        Err(e) => panic!("run accepted a bridge hairpin cannot build: {e}"),
    }
    // The config file says the same (it refuses what the bridge would, and a name
    // given twice, which the bridge refuses when it attaches the second one).
    let unique = ports
        .iter()
        .enumerate()
        .all(|(i, p)| ports[..i].iter().all(|q| q.name != p.name));
    if ports.is_empty() || !unique {
        return;
    }
    let config = BridgeConfig {
        mode: run.mode,
        ports,
        ..BridgeConfig::default()
    };
    let text = to_toml(&config);
    match config_file::parse(&text, Path::new("fuzz.toml")) {
        Ok(loaded) => assert_eq!(loaded, config, "as a file:\n{text}"),
        Err(e) => panic!("run accepts it but the config file does not: {e}\n{text}"),
    }
}

/// `port add NAME ...`: accepted exactly when `run` accepts the one port with the same
/// options, and then the same port.
fn port_add(name: &str, words: &[&str]) {
    let Some(options) = options(words, &["--uplink", "--hairpin"]) else {
        return;
    };
    let mut spec = PortSpec {
        name: name.to_owned(),
        ..PortSpec::default()
    };
    for (option, value) in options {
        // clap: `--vlan` and `--native` are numbers, each option but the lists once.
        let number = || value.and_then(|v| v.parse::<u32>().ok());
        match (option, value) {
            ("--uplink", None) if !spec.uplink => spec.uplink = true,
            ("--hairpin", None) if !spec.hairpin => spec.hairpin = true,
            ("--vlan", Some(_)) if spec.vlan.is_none() && number().is_some() => {
                spec.vlan = number();
            }
            ("--trunk", Some(list)) if spec.trunk.is_none() => spec.trunk = Some(list.to_owned()),
            ("--native", Some(_)) if spec.native.is_none() && number().is_some() => {
                spec.native = number();
            }
            ("--max-macs", Some(_)) if spec.max_macs.is_none() && number().is_some() => {
                spec.max_macs = number();
            }
            ("--storm-broadcast", Some(_))
                if spec.limits.storm_broadcast.is_none() && number().is_some() =>
            {
                spec.limits.storm_broadcast = number();
            }
            ("--storm-multicast", Some(_))
                if spec.limits.storm_multicast.is_none() && number().is_some() =>
            {
                spec.limits.storm_multicast = number();
            }
            ("--storm-unknown-unicast", Some(_))
                if spec.limits.storm_unknown_unicast.is_none() && number().is_some() =>
            {
                spec.limits.storm_unknown_unicast = number();
            }
            ("--storm-burst", Some(_)) if spec.limits.storm_burst.is_none() && number().is_some() => {
                spec.limits.storm_burst = number();
            }
            ("--police-pps", Some(_)) if spec.limits.police_pps.is_none() && number().is_some() => {
                spec.limits.police_pps = number();
            }
            ("--police-rate", Some(text)) if spec.limits.police_rate.is_none() => {
                spec.limits.police_rate = Some(text.to_owned());
            }
            ("--police-burst", Some(text)) if spec.limits.police_burst.is_none() => {
                spec.limits.police_burst = Some(text.to_owned());
            }
            ("--allow", Some(mac)) => spec.allow.push(mac.to_owned()),
            ("--static-mac", Some(mac)) => spec.static_macs.push(mac.to_owned()),
            ("--allow-ip", Some(prefix)) => spec.allow_ip.push(prefix.to_owned()),
            _ => return,
        }
    }
    let added: Result<PortConfig, String> = spec.check().map_err(|e| e.to_string());
    if let Ok(port) = &added {
        assert_eq!(port.name, spec.name);
        assert_eq!(PortSpec::from(port).check().as_ref(), Ok(port));
    }
    // The same port on `run`'s command line, where a name holding `=` or `,` cannot be
    // written.
    if name.contains(['=', ',']) {
        return;
    }
    let list = |values: &[String]| values.iter().map(|v| arg(name, v)).collect();
    let as_run = Run {
        ports: if spec.uplink {
            vec![]
        } else {
            vec![name.to_owned()]
        },
        uplink: spec.uplink.then(|| name.to_owned()),
        flags: PortFlags {
            hairpin: if spec.hairpin {
                vec![name.to_owned()]
            } else {
                vec![]
            },
            vlan: spec.vlan.iter().map(|v| arg(name, v)).collect(),
            trunk: spec.trunk.iter().map(|l| arg(name, l)).collect(),
            native: spec.native.iter().map(|v| arg(name, v)).collect(),
            allow: list(&spec.allow),
            static_mac: list(&spec.static_macs),
            max_macs: spec.max_macs.iter().map(|n| arg(name, n)).collect(),
            limits: {
                let l = &spec.limits;
                LimitFlags {
                    storm_broadcast: l.storm_broadcast.iter().map(|n| arg(name, n)).collect(),
                    storm_multicast: l.storm_multicast.iter().map(|n| arg(name, n)).collect(),
                    storm_unknown_unicast: l
                        .storm_unknown_unicast
                        .iter()
                        .map(|n| arg(name, n))
                        .collect(),
                    storm_burst: l.storm_burst.iter().map(|n| arg(name, n)).collect(),
                    police_rate: l.police_rate.iter().map(|t| arg(name, t)).collect(),
                    police_burst: l.police_burst.iter().map(|t| arg(name, t)).collect(),
                    police_pps: l.police_pps.iter().map(|n| arg(name, n)).collect(),
                }
            },
            allow_ip: list(&spec.allow_ip),
        },
        ..Run::default()
    };
    // An empty trunk list or rate is no `PORT=VALUE` (clap refuses it).
    let empty = |v: &Option<String>| v.as_ref().is_some_and(String::is_empty);
    let run = (!empty(&spec.trunk)
        && !empty(&spec.limits.police_rate)
        && !empty(&spec.limits.police_burst))
    .then(|| as_run.ports());
    match (added, run) {
        (Ok(port), Some(Ok(ports))) => assert_eq!(ports, [port], "port add and run"),
        (Err(_), None | Some(Err(_))) => {}
        (added, run) => panic!("port add says {added:?}, run says {run:?}"),
    }
}

fn arg(port: &str, value: &impl ToString) -> PortArg {
    PortArg {
        port: port.to_owned(),
        value: value.to_string(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["run", rest @ ..] => run(rest),
        ["port", "add", name, rest @ ..] => port_add(name, rest),
        _ => {}
    }
});
