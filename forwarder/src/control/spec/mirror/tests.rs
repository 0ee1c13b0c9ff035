//! `MirrorSpec` from every front end, and its checks' refusals.
use super::*;

fn spec(name: &str, from: &[&str], to: &str) -> MirrorSpec {
    MirrorSpec {
        name: name.into(),
        from: from.iter().map(|s| (*s).to_owned()).collect(),
        direction: Direction::Both,
        to: to.into(),
    }
}

#[test]
fn one_spec_reads_the_protocol_the_config_file_and_the_command_line() {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        spec: MirrorSpec,
    }
    let want = MirrorSpec {
        direction: Direction::In,
        ..spec("m1", &["p0", "p1"], "mon")
    };
    let json = serde_json::to_string(&want).unwrap();
    assert_eq!(
        json,
        r#"{"name":"m1","from":["p0","p1"],"direction":"in","to":"mon"}"#
    );
    assert_eq!(serde_json::from_str::<MirrorSpec>(&json).unwrap(), want);
    let toml: MirrorSpec = toml::from_str(
        "name = \"m1\"\nfrom = [\"p0\", \"p1\"]\ndirection = \"in\"\nto = \"mon\"\n",
    )
    .unwrap();
    assert_eq!(toml, want);
    let cli = Cli::try_parse_from(["x", "m1", "--from", "p0,p1", "--in", "--to", "mon"]).unwrap();
    assert_eq!(cli.spec, want);
    // Both directions by default, everywhere.
    let cli = Cli::try_parse_from(["x", "m1", "--from", "p0", "--to", "mon"]).unwrap();
    assert_eq!(cli.spec, spec("m1", &["p0"], "mon"));
    let cli = Cli::try_parse_from(["x", "m1", "--from", "p0", "--out", "--to", "mon"]).unwrap();
    assert_eq!(cli.spec.direction, Direction::Out);
    let toml: MirrorSpec =
        toml::from_str("name = \"m1\"\nfrom = [\"p0\"]\nto = \"mon\"\n").unwrap();
    assert_eq!(toml.direction, Direction::Both);
    // One direction flag at most; --from and --to are needed; unknown keys refused.
    assert!(
        Cli::try_parse_from(["x", "m1", "--from", "p0", "--in", "--out", "--to", "m"]).is_err()
    );
    assert!(Cli::try_parse_from(["x", "m1", "--to", "mon"]).is_err());
    assert!(Cli::try_parse_from(["x", "m1", "--from", "p0"]).is_err());
    let e = toml::from_str::<MirrorSpec>("name = \"m\"\nfrom = [\"a\"]\nto = \"b\"\ncolour = 1\n")
        .unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
    let e = toml::from_str::<MirrorSpec>(
        "name = \"m\"\nfrom = [\"a\"]\nto = \"b\"\ndirection = \"up\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown variant"), "{e}");
}

#[test]
fn a_mirror_on_its_own_needs_a_name_ports_and_a_monitor_port_apart() {
    let why = |s: MirrorSpec| s.check().unwrap_err();
    assert!(spec("m1", &["p0", "p1"], "mon").check().is_ok());
    let e = why(spec("", &["p0"], "mon"));
    assert_eq!(e.field, MirrorField::Name);
    assert!(
        why(spec("two words", &["p0"], "mon"))
            .why
            .contains("without spaces")
    );
    assert!(
        why(spec(&"m".repeat(MAX_NAME + 1), &["p0"], "mon"))
            .why
            .contains("at most")
    );
    let e = why(spec("m1", &[], "mon"));
    assert_eq!(
        (e.field, e.to_string().as_str()),
        (
            MirrorField::From(0),
            "mirror m1: no port to mirror: give at least one (--from PORT[,PORT...])"
        )
    );
    let e = why(spec("m1", &["p0", "p1", "p0"], "mon"));
    assert_eq!(
        (e.field, e.why.as_str()),
        (MirrorField::From(2), "p0 is given twice")
    );
    let e = why(spec("m1", &["p0", "mon"], "mon"));
    assert_eq!(e.field, MirrorField::To);
    assert!(e.why.starts_with("mon is mirrored too"), "{e}");
    assert_eq!(e.key(3), "mirror[3].to");
    assert_eq!(
        why(spec("m1", &["p0", ""], "mon")).key(0),
        "mirror[0].from[1]"
    );
}

/// p0, p1, mon, mon2 downlinks, up the uplink, gone a port the mirror may wait for.
fn lookup(name: &str) -> PortLookup {
    match name {
        "p0" | "p1" | "mon" | "mon2" => PortLookup::Port(Role::Downlink),
        "up" => PortLookup::Port(Role::Uplink),
        "gone" => PortLookup::Awaited,
        _ => PortLookup::Unknown,
    }
}

fn check_last(mode: Mode, mirrors: &[MirrorSpec]) -> Result<(), MirrorError> {
    check_mirror(mode, mirrors, mirrors.len() - 1, &lookup, "this bridge")
}

#[test]
fn a_mirror_among_others_names_known_ports_and_keeps_monitor_ports_apart() {
    let m0 = spec("m0", &["p0"], "mon");
    let ok = |m: MirrorSpec| check_last(Mode::Veb, &[m0.clone(), m]).is_ok();
    let why = |m: MirrorSpec| check_last(Mode::Veb, &[m0.clone(), m]).unwrap_err();
    // The uplink may be mirrored; a port may be the monitor port of several mirrors;
    // a mirrored port may be mirrored by several; a port that went away is waited for.
    assert!(ok(spec("m1", &["up", "p0"], "mon")));
    assert!(ok(spec("m1", &["p1"], "mon2")));
    assert!(ok(spec("m1", &["gone"], "mon2")));
    assert!(ok(spec("m1", &["p1"], "gone")));
    assert_eq!(
        why(spec("m0", &["p1"], "mon2")).why,
        "there is a mirror m0 already"
    );
    let e = why(spec("m1", &["p1", "vm9"], "mon2"));
    assert_eq!(
        (e.field, e.to_string().as_str()),
        (
            MirrorField::From(1),
            "mirror m1: vm9 is not a port of this bridge"
        )
    );
    assert_eq!(why(spec("m1", &["p1"], "vm9")).field, MirrorField::To);
    let e = why(spec("m1", &["p1"], "up"));
    assert!(e.why.starts_with("up is the uplink"), "{e}");
    // A monitor port is mirrored by no one, and no mirrored port is a monitor port.
    let e = why(spec("m1", &["mon"], "mon2"));
    assert_eq!(e.field, MirrorField::From(0));
    assert!(
        e.why.starts_with("mon is the monitor port of mirror m0"),
        "{e}"
    );
    let e = why(spec("m1", &["p1"], "p0"));
    assert_eq!(e.field, MirrorField::To);
    assert!(e.why.starts_with("p0 is mirrored by mirror m0"), "{e}");
    // Only the mirrors before it are looked at: the first of a pair is not refused.
    assert!(
        check_mirror(
            Mode::Veb,
            &[m0.clone(), spec("m1", &["p1"], "p0")],
            0,
            &lookup,
            "x"
        )
        .is_ok()
    );
    // Not in the two-port modes.
    for mode in [Mode::Xconnect, Mode::Passthru] {
        let e = check_last(mode, std::slice::from_ref(&m0)).unwrap_err();
        assert!(e.why.contains("exactly its two ports"), "{e}");
    }
    assert!(check_last(Mode::Vepa, std::slice::from_ref(&m0)).is_ok());
}
