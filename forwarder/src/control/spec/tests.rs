//! `PortSpec` from every front end, its check's errors in each one's words, and `run`'s
//! per-port options gathered into specs.
use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn arg(s: &str) -> PortArg {
    s.parse().unwrap()
}

#[test]
fn one_spec_reads_the_protocol_the_config_file_and_the_command_line() {
    use clap::Parser;

    let want = PortSpec {
        name: "vm1".into(),
        max_macs: Some(10),
        uplink: true,
        trunk: Some("10,20".into()),
        native: Some(1),
        hairpin: true,
        allow: vec!["02:00:00:00:00:01".into()],
        static_macs: vec!["02:00:00:00:00:02".into()],
        ..PortSpec::default()
    };
    let json = serde_json::to_string(&want).unwrap();
    assert_eq!(
        json,
        r#"{"name":"vm1","uplink":true,"trunk":"10,20","native":1,"hairpin":true,"allow":["02:00:00:00:00:01"],"static_macs":["02:00:00:00:00:02"],"max_macs":10}"#
    );
    assert_eq!(serde_json::from_str::<PortSpec>(&json).unwrap(), want);
    let toml: PortSpec = toml::from_str(
        "name = \"vm1\"\nrole = \"uplink\"\ntrunk = \"10,20\"\nnative = 1\nhairpin = true\n\
         allowed_macs = [\"02:00:00:00:00:01\"]\nstatic_macs = [\"02:00:00:00:00:02\"]\n\
         max_macs = 10\n",
    )
    .unwrap();
    assert_eq!(toml, want);

    #[derive(Parser)]
    struct Add {
        #[command(flatten)]
        spec: PortSpec,
    }
    let cli = Add::try_parse_from([
        "add",
        "vm1",
        "--uplink",
        "--trunk",
        "10,20",
        "--native",
        "1",
        "--hairpin",
        "--allow",
        "02:00:00:00:00:01",
        "--static-mac",
        "02:00:00:00:00:02",
        "--max-macs",
        "10",
    ])
    .unwrap();
    assert_eq!(cli.spec, want);
    assert!(Add::try_parse_from(["add", "vm1", "--vlan", "1", "--trunk", "2"]).is_err());
    assert!(Add::try_parse_from(["add", "vm1", "--native", "1"]).is_err());

    // The checked configuration gives the same settings back.
    assert_eq!(PortSpec::from(&want.check().unwrap()), want);
    let trunk = PortSpec {
        trunk: Some("1,3-5,7,9-10".into()),
        ..PortSpec::named("t")
    };
    assert_eq!(PortSpec::from(&trunk.check().unwrap()), trunk);
}

#[test]
fn keys_lists_every_key_serde_reads() {
    let err = serde_json::from_str::<PortSpec>(r#"{"x":1}"#)
        .unwrap_err()
        .to_string();
    let expected: Vec<&str> = err
        .split("expected one of ")
        .nth(1)
        .unwrap()
        .split(", ")
        .map(|k| k.split('`').nth(1).unwrap())
        .collect();
    let mut keys = PortSpec::KEYS.to_vec();
    let mut expected = expected.clone();
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(expected, keys, "{err}");
}

#[test]
fn unknown_keys_and_a_disagreeing_role_are_refused() {
    assert!(serde_json::from_str::<PortSpec>(r#"{"name":"a","colour":1}"#).is_err());
    let err = toml::from_str::<PortSpec>("name = \"a\"\nuplink = false\nrole = \"uplink\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("disagree"), "{err}");
    // Old state files wrote `uplink` always.
    let old: PortSpec = serde_json::from_str(r#"{"name":"a","uplink":false}"#).unwrap();
    assert_eq!(old, PortSpec::named("a"));
}

#[test]
fn errors_name_the_setting_as_each_front_end_calls_it() {
    let bad = PortSpec {
        vlan: Some(4095),
        ..PortSpec::named("vm1")
    };
    let e = bad.check().unwrap_err();
    assert_eq!(e.to_string(), "--vlan 4095: VLAN 4095 is outside 1-4094");
    assert_eq!(
        e.for_port("vm1"),
        "--vlan vm1=4095: VLAN 4095 is outside 1-4094"
    );
    assert_eq!(e.key(3), "port[3].vlan");
    let e = PortSpec {
        allow: vec!["02:00:00:00:00:01".into(), "01:00:5e:00:00:01".into()],
        ..PortSpec::named("vm1")
    }
    .check()
    .unwrap_err();
    assert_eq!(e.key(0), "port[0].allowed_macs[1]");
    assert_eq!(
        e.to_string(),
        "--allow: 01:00:5e:00:00:01 is not a station's MAC (multicast or all-zero)"
    );
    let e = PortSpec {
        native: Some(5),
        ..PortSpec::named("vm1")
    }
    .check()
    .unwrap_err();
    assert!(e.to_string().contains("belongs to a trunk"), "{e}");
    let e = PortSpec {
        vlan: Some(5),
        trunk: Some("6".into()),
        ..PortSpec::named("vm1")
    }
    .check()
    .unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
}

#[test]
fn the_uplink_comes_last_with_its_role() {
    let flags = PortFlags {
        hairpin: names(&["eth0"]),
        allow: vec![arg("vm1=02:00:00:00:00:01")],
        static_mac: vec![arg("vm2=02:00:00:00:00:02")],
        ..PortFlags::default()
    };
    let ports = flags
        .ports(Mode::Vepa, &names(&["vm1", "vm2"]), Some("eth0"))
        .unwrap();
    let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["vm1", "vm2", "eth0"]);
    assert_eq!(ports[2].policy.role, Role::Uplink);
    assert!(ports[2].policy.hairpin);
    assert_eq!(ports[0].policy.role, Role::Downlink);
    assert_eq!(
        ports[0].policy.allowed_sources,
        vec![Mac([2, 0, 0, 0, 0, 1])]
    );
    assert_eq!(ports[1].static_macs, vec![Mac([2, 0, 0, 0, 0, 2])]);
}

#[test]
fn a_static_mac_repeated_on_one_port_is_one_station_and_on_two_is_refused() {
    let ports = names(&["vm1", "vm2"]);
    let run = |statics: &[&str]| {
        PortFlags {
            static_mac: statics.iter().map(|s| arg(s)).collect(),
            ..PortFlags::default()
        }
        .ports(Mode::Veb, &ports, None)
    };
    let configs = run(&["vm1=02:00:00:00:00:01", "vm1=02:00:00:00:00:01"]).unwrap();
    assert_eq!(configs[0].static_macs, vec![Mac([2, 0, 0, 0, 0, 1]); 2]);
    assert!(matches!(
        run(&["vm1=02:00:00:00:00:01", "vm2=02:00:00:00:00:01"]),
        Err(FlagError::StaticTwice { .. })
    ));

    // The bridge's own check agrees (config files and reloads go through it).
    let bridge = |statics: [&[Mac]; 2]| super::super::config::BridgeConfig {
        ports: ["vm1", "vm2"]
            .iter()
            .zip(statics)
            .map(|(name, macs)| PortConfig {
                static_macs: macs.to_vec(),
                ..PortConfig::downlink(name)
            })
            .collect(),
        ..Default::default()
    };
    let m = Mac([2, 0, 0, 0, 0, 1]);
    assert!(crate::control::bridge::check_config(&bridge([&[m, m], &[]])).is_ok());
    assert!(crate::control::bridge::check_config(&bridge([&[m], &[m]])).is_err());
}

#[test]
fn vlan_options_make_access_ports_and_trunks() {
    let ports = names(&["vm1", "vm2", "up"]);
    let configs = PortFlags {
        vlan: vec![arg("vm1=10")],
        trunk: vec![arg("up=10,20-21")],
        native: vec![arg("up=1")],
        ..PortFlags::default()
    }
    .ports(Mode::Veb, &ports, None)
    .unwrap();
    assert_eq!(configs[0].policy.vlans, Some(PortVlans::Access(10)));
    assert_eq!(configs[1].policy.vlans, None);
    assert_eq!(
        configs[2].policy.vlans,
        Some(PortVlans::Trunk {
            tagged: vec![10, 20, 21],
            native: Some(1)
        })
    );
    let err = |vlan: &[&str], trunk: &[&str], native: &[&str]| {
        let list = |l: &[&str]| l.iter().map(|s| arg(s)).collect();
        PortFlags {
            vlan: list(vlan),
            trunk: list(trunk),
            native: list(native),
            ..PortFlags::default()
        }
        .ports(Mode::Veb, &ports, None)
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        err(&["vm1=4095"], &[], &[]),
        "--vlan vm1=4095: VLAN 4095 is outside 1-4094"
    );
    assert!(err(&["vm1=10"], &["vm1=20"], &[]).contains("already has"));
    assert!(err(&[], &[], &["vm1=5"]).contains("belongs to a trunk"));
    assert!(err(&[], &["up=30-20"], &[]).contains("runs backwards"));
    assert!(err(&["vm1=x"], &[], &[]).contains("not a VLAN number"));
    assert!("vm1".parse::<PortArg>().is_err());
}

#[test]
fn errors_name_the_option_and_the_port() {
    let ports = names(&["vm1", "vm2"]);
    let err = |mode, flags: PortFlags, uplink: Option<&str>| {
        flags.ports(mode, &ports, uplink).unwrap_err().to_string()
    };
    assert_eq!(
        err(Mode::Vepa, PortFlags::default(), None),
        "--mode vepa needs --uplink IF (the port towards the adjacent switch)"
    );
    assert_eq!(
        err(
            Mode::Veb,
            PortFlags {
                hairpin: names(&["vm3"]),
                ..PortFlags::default()
            },
            None
        ),
        "--hairpin vm3: vm3 is not one of the bridged ports (vm1,vm2)"
    );
    assert!(err(Mode::Veb, PortFlags::default(), Some("vm1")).contains("also in --ports"));
    assert_eq!(
        err(
            Mode::Veb,
            PortFlags {
                allow: vec![arg("vm1=01:00:5e:00:00:01")],
                ..PortFlags::default()
            },
            None
        ),
        "--allow vm1: 01:00:5e:00:00:01 is not a station's MAC (multicast or all-zero)"
    );
    assert!(
        err(
            Mode::Veb,
            PortFlags {
                allow: vec![arg("vm1=02:00")],
                ..PortFlags::default()
            },
            None
        )
        .contains("is not a MAC address")
    );
}

#[test]
fn max_macs_defaults_to_4096_on_a_downlink_and_no_limit_on_the_uplink() {
    let limit = |spec: PortSpec| spec.check().unwrap().policy.max_macs;
    assert_eq!(limit(PortSpec::named("vm1")), DEFAULT_MAX_MACS);
    assert_eq!(
        limit(PortSpec {
            uplink: true,
            ..PortSpec::named("eth0")
        }),
        0
    );
    let none = PortSpec {
        max_macs: Some(0),
        ..PortSpec::named("vm1")
    };
    assert_eq!(limit(none.clone()), 0);
    // Written back, a default stays unwritten and a chosen limit is kept.
    assert_eq!(PortSpec::from(&none.check().unwrap()), none);
    let plain = PortSpec::named("vm1");
    assert_eq!(PortSpec::from(&plain.check().unwrap()), plain);

    let flags = |values: &[&str]| PortFlags {
        max_macs: values.iter().map(|s| arg(s)).collect(),
        ..PortFlags::default()
    };
    let ports = names(&["vm1", "vm2"]);
    let configs = flags(&["vm2=16"]).ports(Mode::Veb, &ports, None).unwrap();
    assert_eq!(
        (configs[0].policy.max_macs, configs[1].policy.max_macs),
        (DEFAULT_MAX_MACS, 16)
    );
    let err = |values: &[&str]| {
        flags(values)
            .ports(Mode::Veb, &ports, None)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(&["vm1=many"]),
        "--max-macs vm1=many: not a number of entries"
    );
    assert!(err(&["vm1=1", "vm1=2"]).contains("given twice"));
    assert!(err(&["vm3=1"]).contains("not one of the bridged ports"));
}

#[test]
fn allow_ip_reads_from_every_front_end_and_is_kept_canonical() {
    use clap::Parser;

    let want = PortSpec {
        allow_ip: vec!["10.0.0.5/32".into(), "fd00::/64".into()],
        ..PortSpec::named("vm1")
    };
    let json = serde_json::to_string(&want).unwrap();
    assert_eq!(
        json,
        r#"{"name":"vm1","uplink":false,"hairpin":false,"allow_ip":["10.0.0.5/32","fd00::/64"]}"#
    );
    assert_eq!(serde_json::from_str::<PortSpec>(&json).unwrap(), want);
    let toml: PortSpec =
        toml::from_str("name = \"vm1\"\nallow_ip = [\"10.0.0.5/32\", \"fd00::/64\"]\n").unwrap();
    assert_eq!(toml, want);
    #[derive(Parser)]
    struct Add {
        #[command(flatten)]
        spec: PortSpec,
    }
    let cli = Add::try_parse_from([
        "add",
        "vm1",
        "--allow-ip",
        "10.0.0.5/32",
        "--allow-ip",
        "fd00::/64",
    ])
    .unwrap();
    assert_eq!(cli.spec, want);
    let run = PortFlags {
        allow_ip: vec![arg("vm1=10.0.0.5/32"), arg("vm1=fd00::/64")],
        ..PortFlags::default()
    }
    .specs(Mode::Veb, &names(&["vm1", "vm2"]), None)
    .unwrap();
    assert_eq!(run[0], want);
    assert!(run[1].allow_ip.is_empty());

    // Checked: sorted, each once, a bare address its host prefix; written back so.
    let config = PortSpec {
        allow_ip: vec!["fd00::/64".into(), "10.0.0.5".into(), "10.0.0.5/32".into()],
        ..PortSpec::named("vm1")
    }
    .check()
    .unwrap();
    let printed: Vec<String> = config
        .policy
        .allowed_ips
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(printed, ["10.0.0.5/32", "fd00::/64"]);
    assert_eq!(PortSpec::from(&config), want);
    assert!(
        PortSpec::named("vm1")
            .check()
            .unwrap()
            .policy
            .allowed_ips
            .is_empty()
    );
}

#[test]
fn allow_ip_errors_name_the_entry_in_each_front_ends_words() {
    let check = |list: &[&str], uplink: bool| {
        PortSpec {
            uplink,
            allow_ip: list.iter().map(|s| (*s).to_owned()).collect(),
            ..PortSpec::named("vm1")
        }
        .check()
        .unwrap_err()
    };
    let e = check(&["10.0.0.5/32", "10.0.0.5/24"], false);
    assert_eq!(
        e.to_string(),
        "--allow-ip: 10.0.0.5/24 has bits set past its length: the prefix is 10.0.0.0/24"
    );
    assert_eq!(e.key(2), "port[2].allow_ip[1]");
    assert_eq!(
        e.for_port("vm1"),
        "--allow-ip vm1: 10.0.0.5/24 has bits set past its length: the prefix is 10.0.0.0/24"
    );
    let e = check(&["10.0.0/8"], false);
    assert!(
        e.to_string()
            .starts_with("--allow-ip: \"10.0.0/8\" is not an IP prefix"),
        "{e}"
    );
    let e = check(&["10.0.0.5/32"], true);
    assert!(e.to_string().contains("belongs on a downlink"), "{e}");
    let many: Vec<String> = (0..=MAX_ALLOWED_IPS)
        .map(|i| format!("10.0.{i}.0/24"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let e = check(&many, false);
    assert_eq!(e.setting, Setting::AllowIp(MAX_ALLOWED_IPS));
    assert!(e.to_string().contains("at most 64 prefixes"), "{e}");
    // The same prefix many times is one.
    let same = vec!["10.0.0.5/32".to_owned(); MAX_ALLOWED_IPS + 5];
    let one = PortSpec {
        allow_ip: same,
        ..PortSpec::named("vm1")
    };
    assert_eq!(one.check().unwrap().policy.allowed_ips.len(), 1);
    // `run` names the port.
    let e = PortFlags {
        allow_ip: vec![arg("vm1=fd00::/129")],
        ..PortFlags::default()
    }
    .ports(Mode::Veb, &names(&["vm1"]), None)
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("--allow-ip vm1: \"fd00::/129\" is not an IP prefix"),
        "{e}"
    );
    let e = PortFlags {
        allow_ip: vec![arg("vm9=10.0.0.5/32")],
        ..PortFlags::default()
    }
    .ports(Mode::Veb, &names(&["vm1"]), None)
    .unwrap_err()
    .to_string();
    assert!(e.contains("not one of the bridged ports"), "{e}");
}
