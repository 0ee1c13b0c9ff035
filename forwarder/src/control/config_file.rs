//! `hairpin run --config FILE`: the whole bridge in one TOML file.
//!
//! ```toml
//! mode = "vepa"              # veb | vepa | private | xconnect | passthru
//!
//! [datapath]                 # every key optional
//! queues = 2
//! cores = [2, 3]
//! xdp_mode = "auto"          # auto | native | generic
//! fast_path = "auto"         # auto | on | off: learned unicast forwarded inside XDP
//! fast_floods = "on"         # on | off: and floods from learned sources (with fast_path)
//! zero_copy = "auto"         # auto | on | off
//! ring_size = 2048
//! frame_size = 2048
//! busy_poll = false
//! umem_frames = 27392        # each worker's first UMEM; default: full rings for 4 busy ports + 64 per port (4 to 32)
//!
//! [fdb]
//! size = 65536
//! age = 300                  # seconds
//!
//! [[port]]
//! name = "eth0"
//! role = "uplink"            # uplink | downlink (default)
//!
//! [[port]]
//! name = "vf0"
//! hairpin = false
//! allowed_macs = ["02:00:00:00:00:10"]   # anti-spoofing; empty or absent: any
//! static_macs = ["02:00:00:00:00:10"]
//! vlan = 10                  # access port of VLAN 10 (untagged in and out)
//!
//! [[port]]
//! name = "vf1"
//! trunk = "10,20,100-110"    # VLANs carried tagged
//! native = 1                 # optional: untagged frames belong to VLAN 1
//!
//! [[mirror]]                 # a port mirror (SPAN)
//! name = "ids"
//! from = ["vf0", "vf1"]      # the ports whose frames are copied
//! direction = "both"         # in | out | both (the default)
//! to = "vf2"                 # the monitor port: forwards nothing but the copies
//! ```
//!
//! Once any port has `vlan` or `trunk`, the bridge is VLAN-aware and ports with neither
//! are access ports of VLAN 1; static MACs are entered in every VLAN their port carries.
//!
//! Unknown keys are errors. Every error names the file and the key; nothing is attached
//! until the whole file is valid.
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{
    control::{
        config::{BridgeConfig, MAX_FDB_SIZE, PortConfig},
        spec::{
            MirrorSpec, PortSpec,
            mirror::{PortLookup, check_mirror},
        },
        xdp::{FastFloods, FastPath, XdpAttachMode},
    },
    datapath::{DatapathConfig, ZeroCopy},
    switch::{Fdb, GROUP_FWD_RESTRICTED, Mode, PortSet, Tables},
};

/// An error reading or checking a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("{path}: cannot read it")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown key or a bad value.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's description: line, column, key and what is wrong.
        message: String,
    },
    /// A value is well-formed but wrong.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, e.g. `port[2].allowed_macs[0]`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    group_fwd_mask: u16,
    #[serde(default)]
    datapath: FileDatapath,
    #[serde(default)]
    fdb: FileFdb,
    #[serde(default)]
    port: Vec<PortSpec>,
    #[serde(default)]
    mirror: Vec<MirrorSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDatapath {
    queues: Option<u32>,
    cores: Option<Vec<usize>>,
    xdp_mode: Option<XdpAttachMode>,
    fast_path: Option<FastPath>,
    fast_floods: Option<FastFloods>,
    zero_copy: Option<ZeroCopy>,
    ring_size: Option<u32>,
    frame_size: Option<u32>,
    busy_poll: Option<bool>,
    umem_frames: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFdb {
    size: Option<usize>,
    age: Option<u32>,
}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<BridgeConfig, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Checks the TOML `text`, read from `path` (named in errors).
pub fn parse(text: &str, path: &Path) -> Result<BridgeConfig, ConfigFileError> {
    let file: File = toml::from_str(text).map_err(|e| ConfigFileError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    let invalid = |key: String, message: String| ConfigFileError::Invalid {
        path: path.to_owned(),
        key,
        message,
    };
    let mode = file.mode;
    let mut ports: Vec<PortConfig> = Vec::with_capacity(file.port.len());
    for (i, port) in file.port.iter().enumerate() {
        if ports.iter().any(|p| p.name == port.name) {
            return Err(invalid(
                format!("port[{i}].name"),
                format!("{} is listed twice", port.name),
            ));
        }
        let config = port.check().map_err(|e| invalid(e.key(i), e.why))?;
        for (j, mac) in config.static_macs.iter().enumerate() {
            if let Some(other) = ports.iter().find(|p| p.static_macs.contains(mac)) {
                return Err(invalid(
                    format!("port[{i}].static_macs[{j}]"),
                    format!(
                        "{mac} is already static on {}: one station lives on one port",
                        other.name
                    ),
                ));
            }
        }
        ports.push(config);
    }
    // The bridge's own checks (port count, one uplink, an uplink for VEPA), with the
    // file's key names.
    let slots: Vec<_> = ports.iter().map(|p| Some(p.policy.clone())).collect();
    if let Err(e) = Tables::new(mode, &slots, PortSet::EMPTY, Fdb::shared(1)) {
        let key = match &e {
            crate::switch::TablesError::TwoUplinks { second, .. } => {
                format!("port[{second}].role")
            }
            crate::switch::TablesError::NeedsUplink(_) => "mode".to_owned(),
            crate::switch::TablesError::PortCount { .. } => "port".to_owned(),
            crate::switch::TablesError::UntouchedVlans(_) => "mode".to_owned(),
        };
        return Err(invalid(key, e.to_string()));
    }
    // Mirrors name ports of the file: each port's role, by name.
    let role = |name: &str| -> PortLookup {
        ports
            .iter()
            .find(|p| p.name == name)
            .map_or(PortLookup::Unknown, |p| PortLookup::Port(p.policy.role))
    };
    for i in 0..file.mirror.len() {
        check_mirror(
            mode,
            &file.mirror,
            i,
            &role,
            "the file (no [[port]] has that name)",
        )
        .map_err(|e| invalid(e.key(i), e.why))?;
    }
    let defaults = BridgeConfig::default();
    let fdb_capacity = file.fdb.size.unwrap_or(defaults.fdb_capacity);
    if fdb_capacity == 0 || fdb_capacity > MAX_FDB_SIZE {
        return Err(invalid(
            "fdb.size".into(),
            format!("{fdb_capacity}: give 1 to {MAX_FDB_SIZE} entries"),
        ));
    }
    let fdb_max_age = file.fdb.age.unwrap_or(defaults.fdb_max_age);
    if fdb_max_age == 0 {
        return Err(invalid(
            "fdb.age".into(),
            "0: learned entries would be gone before their first reply; give 1 second or more"
                .into(),
        ));
    }
    if file.group_fwd_mask & GROUP_FWD_RESTRICTED != 0 {
        return Err(invalid(
            "group_fwd_mask".into(),
            format!(
                "{:#06x}: pause (bit 1) and LACP/slow protocols (bit 2) belong to one link and \
                 are never relayed",
                file.group_fwd_mask
            ),
        ));
    }
    let d = file.datapath;
    let datapath = DatapathConfig::default();
    Ok(BridgeConfig {
        mode,
        ports,
        fdb_capacity,
        fdb_max_age,
        xdp_mode: d.xdp_mode.unwrap_or_default(),
        queues: d.queues,
        cores: d.cores,
        datapath: DatapathConfig {
            zero_copy: d.zero_copy.unwrap_or_default(),
            ring_size: d.ring_size.unwrap_or(datapath.ring_size),
            frame_size: d.frame_size.unwrap_or(datapath.frame_size),
            busy_poll: d.busy_poll.unwrap_or(false),
            umem_frames: d.umem_frames,
        },
        group_fwd_mask: file.group_fwd_mask,
        fast_path: d.fast_path.unwrap_or_default(),
        fast_floods: d.fast_floods.unwrap_or_default(),
        mirrors: file.mirror,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        switch::{PortPolicy, Role, vlan::PortVlans},
        wire::Mac,
    };

    fn parse(text: &str) -> Result<BridgeConfig, ConfigFileError> {
        super::parse(text, Path::new("hairpin.toml"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_group_forward_mask_is_read_and_pause_and_lacp_are_refused() {
        let ports = "[[port]]\nname = \"a\"\n[[port]]\nname = \"b\"\n";
        let config = parse(&format!("group_fwd_mask = 0x4008\n{ports}")).expect("valid");
        assert_eq!(config.group_fwd_mask, 0x4008);
        assert_eq!(parse(ports).expect("valid").group_fwd_mask, 0);
        for mask in ["0x2", "0x4", "0xffff"] {
            let e = parse(&format!("group_fwd_mask = {mask}\n{ports}")).expect_err(mask);
            assert!(e.to_string().contains("group_fwd_mask"), "{e}");
        }
    }

    #[test]
    fn reads_a_full_vepa_bridge() {
        let c = parse(
            r#"
            mode = "vepa"
            [datapath]
            queues = 2
            cores = [0, 1]
            zero_copy = "off"
            busy_poll = true
            [fdb]
            size = 1024
            age = 60
            [[port]]
            name = "vf0"
            allowed_macs = ["02:00:00:00:00:10"]
            static_macs = ["02:00:00:00:00:10"]
            [[port]]
            name = "eth0"
            role = "uplink"
            hairpin = true
            "#,
        )
        .unwrap();
        let names: Vec<_> = c.ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["vf0", "eth0"]);
        assert_eq!(c.mode, Mode::Vepa);
        assert_eq!((c.queues, c.cores.as_deref()), (Some(2), Some(&[0, 1][..])));
        assert_eq!(c.datapath.zero_copy, ZeroCopy::Off);
        assert!(c.datapath.busy_poll);
        assert_eq!((c.fdb_capacity, c.fdb_max_age), (1024, 60));
        assert_eq!(c.ports[1].policy.role, Role::Uplink);
        assert!(c.ports[1].policy.hairpin);
        assert_eq!(
            c.ports[0].policy.allowed_sources,
            [Mac([2, 0, 0, 0, 0, 0x10])]
        );
        assert_eq!(c.ports[0].static_macs, [Mac([2, 0, 0, 0, 0, 0x10])]);
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let c = parse("[[port]]\nname = \"a\"\n[[port]]\nname = \"b\"\n").unwrap();
        assert_eq!(c.mode, Mode::Veb);
        assert_eq!(c.datapath.ring_size, DatapathConfig::default().ring_size);
        assert_eq!(c.ports[0].policy, PortPolicy::default());
    }

    #[test]
    fn a_file_with_no_port_is_a_switch_waiting_for_port_add() {
        let c = parse("mode = \"veb\"").unwrap();
        assert!(c.ports.is_empty());
        // VEPA still needs its uplink from the start.
        assert_eq!(
            err("mode = \"vepa\""),
            "hairpin.toml: mode: vepa mode needs an uplink port"
        );
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        assert!(err("mode = \"hub\"\n[[port]]\nname = \"a\"").starts_with("hairpin.toml: "));
        assert!(err("mode = \"hub\"\n[[port]]\nname = \"a\"").contains("unknown variant `hub`"));
        assert!(err("[[port]]\nname = \"a\"\ncolour = \"red\"").contains("unknown field `colour`"));
        assert_eq!(
            err("[[port]]\nname = \"a\"\nallowed_macs = [\"02:00:00:00:00\"]"),
            "hairpin.toml: port[0].allowed_macs[0]: \"02:00:00:00:00\" is not a MAC address (expected six hex bytes like 02:00:00:00:00:01)"
        );
        assert_eq!(
            err("[[port]]\nname = \"a\"\nstatic_macs = [\"ff:ff:ff:ff:ff:ff\"]"),
            "hairpin.toml: port[0].static_macs[0]: ff:ff:ff:ff:ff:ff is not a station's MAC (multicast or all-zero)"
        );
        assert_eq!(
            err("[[port]]\nname = \"a\"\n[[port]]\nname = \"a\""),
            "hairpin.toml: port[1].name: a is listed twice"
        );
        assert_eq!(
            err("mode = \"private\"\n[[port]]\nname = \"a\""),
            "hairpin.toml: mode: private mode needs an uplink port"
        );
        assert!(
            err("[[port]]\nname = \"a\"\nrole = \"uplink\"\n[[port]]\nname = \"b\"\nrole = \"uplink\"")
                .starts_with("hairpin.toml: port[1].role: only one port may be the uplink")
        );
        assert_eq!(
            err("[[port]]\nname = \"a\"\nvlan = 4095"),
            "hairpin.toml: port[0].vlan: VLAN 4095 is outside 1-4094"
        );
        assert_eq!(
            err("[[port]]\nname = \"a\"\ntrunk = \"10,x\""),
            "hairpin.toml: port[0].trunk: \"x\" is not a VLAN number"
        );
        assert!(err("[[port]]\nname = \"a\"\nvlan = 1\ntrunk = \"2\"").contains("not both"));
        assert!(
            err("[[port]]\nname = \"a\"\nnative = 1").starts_with("hairpin.toml: port[0].native:")
        );
        assert!(
            err("mode = \"xconnect\"\n[[port]]\nname = \"a\"\nvlan = 2\n[[port]]\nname = \"b\"")
                .starts_with("hairpin.toml: mode: xconnect mode passes frames through untouched")
        );
        let two = "[[port]]\nname = \"a\"\nstatic_macs = [\"02:00:00:00:00:01\"]\n[[port]]\nname = \"b\"\nstatic_macs = [\"02:00:00:00:00:01\"]";
        assert_eq!(
            err(two),
            "hairpin.toml: port[1].static_macs[0]: 02:00:00:00:00:01 is already static on a: one station lives on one port"
        );
        assert_eq!(
            err("[fdb]\nsize = 0\n[[port]]\nname = \"a\""),
            "hairpin.toml: fdb.size: 0: give 1 to 16777216 entries"
        );
        assert!(err("[fdb]\nsize = 4294967295\n[[port]]\nname = \"a\"").contains("give 1 to"));
        assert!(
            err("[fdb]\nage = 0\n[[port]]\nname = \"a\"").starts_with("hairpin.toml: fdb.age: 0:")
        );
    }

    #[test]
    fn reads_mirrors_and_names_the_key_of_a_wrong_one() {
        let ports = "[[port]]\nname = \"up\"\nrole = \"uplink\"\n[[port]]\nname = \"a\"\n\
                     [[port]]\nname = \"b\"\n[[port]]\nname = \"mon\"\n";
        let c = parse(&format!(
            "{ports}[[mirror]]\nname = \"m1\"\nfrom = [\"a\", \"up\"]\nto = \"mon\"\n\
             [[mirror]]\nname = \"m2\"\nfrom = [\"b\"]\ndirection = \"out\"\nto = \"mon\"\n"
        ))
        .unwrap();
        let m: Vec<_> = c
            .mirrors
            .iter()
            .map(|m| (m.name.as_str(), m.from.len(), m.direction, m.to.as_str()))
            .collect();
        use crate::control::protocol::Direction;
        assert_eq!(
            m,
            [
                ("m1", 2, Direction::Both, "mon"),
                ("m2", 1, Direction::Out, "mon")
            ]
        );
        let mirror = |body: &str| err(&format!("{ports}[[mirror]]\n{body}"));
        assert_eq!(
            mirror("name = \"m1\"\nfrom = [\"a\", \"x\"]\nto = \"mon\""),
            "hairpin.toml: mirror[0].from[1]: x is not a port of the file (no [[port]] has \
             that name)"
        );
        assert!(
            mirror("name = \"m1\"\nfrom = [\"a\"]\nto = \"up\"")
                .starts_with("hairpin.toml: mirror[0].to: up is the uplink")
        );
        assert!(
            mirror("name = \"m1\"\nfrom = [\"a\"]\nto = \"a\"")
                .starts_with("hairpin.toml: mirror[0].to: a is mirrored too")
        );
        assert!(mirror("name = \"m1\"\nfrom = [\"a\"]").contains("missing field `to`"));
        assert!(
            mirror("name = \"m1\"\nfrom = [\"a\"]\nto = \"mon\"\nmirror = 1")
                .contains("unknown field `mirror`")
        );
        let two = "name = \"m1\"\nfrom = [\"a\"]\nto = \"mon\"\n[[mirror]]\n\
                   name = \"m2\"\nfrom = [\"mon\"]\nto = \"b\"";
        assert!(
            mirror(two).starts_with(
                "hairpin.toml: mirror[1].from[0]: mon is the monitor port of mirror m1"
            ),
            "{}",
            mirror(two)
        );
    }

    #[test]
    fn every_example_in_the_readme_is_a_valid_config() {
        let readme = include_str!("../../../README.md");
        let mut examples = 0;
        for block in readme.split("```toml\n").skip(1) {
            let text = block.split("```").next().unwrap();
            if let Err(e) = super::parse(text, Path::new("README.md")) {
                panic!("README example does not parse: {e}\n{text}");
            }
            examples += 1;
        }
        assert!(examples >= 5, "{examples} examples found");
    }

    #[test]
    fn reads_access_ports_and_trunks() {
        let config = super::parse(
            "[[port]]\nname = \"vm1\"\nvlan = 10\n[[port]]\nname = \"up\"\ntrunk = \"10,20-22\"\nnative = 5\n[[port]]\nname = \"vm2\"",
            Path::new("hairpin.toml"),
        )
        .unwrap();
        let vlans: Vec<_> = config
            .ports
            .iter()
            .map(|p| p.policy.vlans.clone())
            .collect();
        assert_eq!(
            vlans,
            vec![
                Some(PortVlans::Access(10)),
                Some(PortVlans::Trunk {
                    tagged: vec![10, 20, 21, 22],
                    native: Some(5)
                }),
                None
            ]
        );
    }
}
