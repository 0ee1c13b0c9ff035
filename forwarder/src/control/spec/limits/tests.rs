//! Storm control and policing settings from every front end, and their errors in each
//! one's words.
use super::super::{Mode, PortFlags};
use super::*;

fn arg(s: &str) -> PortArg {
    s.parse().unwrap()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Every setting, as `port add` would give them.
fn all() -> PortSpec {
    PortSpec {
        limits: LimitSpec {
            storm_broadcast: Some(1000),
            storm_multicast: Some(2000),
            storm_unknown_unicast: Some(300),
            storm_burst: Some(50),
            police_rate: Some("100M".into()),
            police_burst: Some("64k".into()),
            police_pps: Some(80_000),
        },
        ..PortSpec::named("vm1")
    }
}

#[test]
fn every_front_end_reads_the_same_limits() {
    use clap::Parser;

    let want = all();
    let json = serde_json::to_string(&want).unwrap();
    assert_eq!(
        json,
        r#"{"name":"vm1","uplink":false,"hairpin":false,"storm_broadcast":1000,"storm_multicast":2000,"storm_unknown_unicast":300,"storm_burst":50,"police_rate":"100M","police_burst":"64k","police_pps":80000}"#
    );
    assert_eq!(serde_json::from_str::<PortSpec>(&json).unwrap(), want);
    let toml: PortSpec = toml::from_str(
        "name = \"vm1\"\nstorm_broadcast = 1000\nstorm_multicast = 2000\n\
         storm_unknown_unicast = 300\nstorm_burst = 50\npolice_rate = \"100M\"\n\
         police_burst = \"64k\"\npolice_pps = 80000\n",
    )
    .unwrap();
    assert_eq!(toml, want);
    // A number where a count is wanted is the same count.
    let plain: PortSpec =
        toml::from_str("name = \"vm1\"\npolice_rate = 100000000\npolice_burst = 64000\n").unwrap();
    assert_eq!(
        plain.check().unwrap().policy.limits,
        PortSpec {
            limits: LimitSpec {
                police_rate: Some("100M".into()),
                police_burst: Some("64k".into()),
                ..LimitSpec::default()
            },
            ..PortSpec::named("vm1")
        }
        .check()
        .unwrap()
        .policy
        .limits
    );

    #[derive(Parser)]
    struct Add {
        #[command(flatten)]
        spec: PortSpec,
    }
    let cli = Add::try_parse_from([
        "add",
        "vm1",
        "--storm-broadcast",
        "1000",
        "--storm-multicast",
        "2000",
        "--storm-unknown-unicast",
        "300",
        "--storm-burst",
        "50",
        "--police-rate",
        "100M",
        "--police-burst",
        "64k",
        "--police-pps",
        "80000",
    ])
    .unwrap();
    assert_eq!(cli.spec, want);

    let flags = PortFlags {
        limits: LimitFlags {
            storm_broadcast: vec![arg("vm1=1000")],
            storm_multicast: vec![arg("vm1=2000")],
            storm_unknown_unicast: vec![arg("vm1=300")],
            storm_burst: vec![arg("vm1=50")],
            police_rate: vec![arg("vm1=100M")],
            police_burst: vec![arg("vm1=64k")],
            police_pps: vec![arg("vm1=80000")],
        },
        ..PortFlags::default()
    };
    let specs = flags
        .specs(Mode::Veb, &names(&["vm1", "vm2"]), None)
        .unwrap();
    assert_eq!(specs[0], want);
    assert_eq!(specs[1], PortSpec::named("vm2"));

    let limits = want.check().unwrap().policy.limits;
    assert_eq!(
        limits,
        Limits {
            storm_broadcast: Some(1000),
            storm_multicast: Some(2000),
            storm_unknown_unicast: Some(300),
            storm_burst: Some(50),
            police_rate: Some(100_000_000),
            police_burst: Some(64_000),
            police_pps: Some(80_000),
        }
    );
    // Written back (a state file, `show ports`), the same limits, in plain numbers.
    let back = PortSpec::from(&want.check().unwrap());
    assert_eq!(back.limits.police_rate.as_deref(), Some("100000000"));
    assert_eq!(back.check().unwrap().policy.limits, limits);
}

#[test]
fn zero_is_no_limit_and_nothing_is_none() {
    let zero = PortSpec {
        limits: LimitSpec {
            storm_broadcast: Some(0),
            police_rate: Some("0".into()),
            police_pps: Some(0),
            ..LimitSpec::default()
        },
        ..PortSpec::named("vm1")
    };
    assert!(zero.check().unwrap().policy.limits.is_empty());
    assert_eq!(
        PortSpec::named("vm1").check().unwrap().policy.limits,
        Limits::default()
    );
}

#[test]
fn amounts_take_thousands_millions_and_billions() {
    assert_eq!(parse_amount("100M"), Ok(100_000_000));
    assert_eq!(parse_amount("1G"), Ok(1_000_000_000));
    assert_eq!(parse_amount("64k"), Ok(64_000));
    assert_eq!(parse_amount("64K"), Ok(64_000));
    assert_eq!(parse_amount("1500"), Ok(1500));
    for bad in ["", "M", "1.5M", "-1", "10m", "1 M", "10Mbit"] {
        assert!(parse_amount(bad).is_err(), "{bad:?}");
    }
    assert!(
        parse_amount("99999999999999999999")
            .unwrap_err()
            .contains("too large")
    );
    assert!(
        parse_amount("20000000000G")
            .unwrap_err()
            .contains("too large")
    );
}

#[test]
fn errors_name_the_setting_as_each_front_end_calls_it() {
    let check = |limits: LimitSpec| {
        PortSpec {
            limits,
            ..PortSpec::named("vm1")
        }
        .check()
        .unwrap_err()
    };
    let e = check(LimitSpec {
        police_rate: Some("100X".into()),
        ..LimitSpec::default()
    });
    assert_eq!(
        e.to_string(),
        "--police-rate: \"100X\" is not a number (digits, then k, M or G for thousands, millions, billions)"
    );
    assert_eq!(e.key(2), "port[2].police_rate");
    let e = check(LimitSpec {
        police_rate: Some("1000".into()),
        ..LimitSpec::default()
    });
    assert!(
        e.to_string()
            .starts_with("--police-rate 1000: below 8000 bits/s"),
        "{e}"
    );
    assert!(
        e.for_port("vm1")
            .starts_with("--police-rate vm1=1000: below"),
        "{e}"
    );
    let e = check(LimitSpec {
        police_burst: Some("64k".into()),
        ..LimitSpec::default()
    });
    assert_eq!(
        e.to_string(),
        "--police-burst 64k: the burst of police_rate, in bytes: give police_rate too"
    );
    let e = check(LimitSpec {
        police_rate: Some("1M".into()),
        police_burst: Some("0".into()),
        ..LimitSpec::default()
    });
    assert!(e.to_string().contains("a burst of 0 bytes"), "{e}");
    let e = check(LimitSpec {
        storm_burst: Some(10),
        ..LimitSpec::default()
    });
    assert!(e.to_string().contains("without a storm rate"), "{e}");
    assert_eq!(e.key(0), "port[0].storm_burst");
    let e = check(LimitSpec {
        storm_broadcast: Some(10),
        storm_burst: Some(0),
        ..LimitSpec::default()
    });
    assert!(
        e.to_string().starts_with("--storm-burst 0: a burst of 0"),
        "{e}"
    );

    // The file's own words for a value that is no count at all.
    let e = toml::from_str::<PortSpec>("name = \"a\"\npolice_rate = 1.5\n").unwrap_err();
    assert!(e.to_string().contains("a whole number, or a string"), "{e}");
    let e = toml::from_str::<PortSpec>("name = \"a\"\npolice_rate = -5\n").unwrap_err();
    assert!(e.to_string().contains("negative"), "{e}");
}

#[test]
fn run_options_name_their_port_and_come_once() {
    let ports = names(&["vm1", "vm2"]);
    let err = |limits: LimitFlags| {
        PortFlags {
            limits,
            ..PortFlags::default()
        }
        .ports(Mode::Veb, &ports, None)
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        err(LimitFlags {
            storm_broadcast: vec![arg("vm3=10")],
            ..LimitFlags::default()
        }),
        "--storm-broadcast vm3: vm3 is not one of the bridged ports (vm1,vm2)"
    );
    assert_eq!(
        err(LimitFlags {
            police_pps: vec![arg("vm1=lots")],
            ..LimitFlags::default()
        }),
        "--police-pps vm1=lots: not a whole number (frames, or frames per second)"
    );
    assert!(
        err(LimitFlags {
            police_rate: vec![arg("vm1=1M"), arg("vm1=2M")],
            ..LimitFlags::default()
        })
        .contains("given twice")
    );
    assert_eq!(
        err(LimitFlags {
            police_rate: vec![arg("vm2=1k")],
            ..LimitFlags::default()
        }),
        "--police-rate vm2=1k: below 8000 bits/s (8k), the slowest rate hairpin polices; \
         the rate is in bits per second (100M is 100 Mbit/s)"
    );
    let ok = PortFlags {
        limits: LimitFlags {
            police_rate: vec![arg("vm2=10M")],
            storm_multicast: vec![arg("vm1=100")],
            ..LimitFlags::default()
        },
        ..PortFlags::default()
    }
    .ports(Mode::Veb, &ports, None)
    .unwrap();
    assert_eq!(ok[0].policy.limits.storm_multicast, Some(100));
    assert_eq!(ok[1].policy.limits.police_rate, Some(10_000_000));
}

#[test]
fn the_config_file_names_the_port_and_key() {
    let parse = |text: &str| {
        crate::control::config_file::parse(text, std::path::Path::new("hairpin.toml"))
            .map(|c| c.ports[0].policy.limits)
            .map_err(|e| e.to_string())
    };
    let e = parse("[[port]]\nname = \"vm1\"\npolice_rate = \"fast\"\n").unwrap_err();
    assert!(
        e.contains("hairpin.toml: port[0].police_rate: \"fast\" is not a number"),
        "{e}"
    );
    let limits =
        parse("[[port]]\nname = \"vm1\"\npolice_rate = \"1G\"\nstorm_multicast = 100\n").unwrap();
    assert_eq!(limits.police_rate, Some(1_000_000_000));
    assert_eq!(limits.storm_multicast, Some(100));
}
