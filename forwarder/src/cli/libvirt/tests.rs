use super::*;

/// A hairpin in memory: its ports, and every request, in order.
#[derive(Default)]
struct Fake {
    ports: Vec<PortSpec>,
    log: Vec<String>,
    /// Refuse to attach this port.
    refuse: Option<String>,
    /// Not answering at all.
    down: bool,
}

impl Fake {
    fn names(&self) -> Vec<&str> {
        self.ports.iter().map(|p| p.name.as_str()).collect()
    }
}

impl Switch for Fake {
    fn ports(&mut self) -> Result<Vec<String>> {
        if self.down {
            bail!("/run/hairpin/hairpin.sock: No such file or directory");
        }
        Ok(self.ports.iter().map(|p| p.name.clone()).collect())
    }

    fn add(&mut self, spec: PortSpec) -> Result<()> {
        self.log.push(format!("add {}", spec.name));
        if self.refuse.as_deref() == Some(spec.name.as_str()) {
            bail!(
                "attaching {}: hairpin refused: no such interface",
                spec.name
            );
        }
        self.ports.push(spec);
        Ok(())
    }

    fn del(&mut self, name: &str) -> Result<()> {
        self.log.push(format!("del {name}"));
        self.ports.retain(|p| p.name != name);
        Ok(())
    }
}

fn xml(ports: &str) -> String {
    format!(
        r#"<domain type='qemu'><name>vm</name>
  <metadata><hp:ports xmlns:hp="{}">{ports}</hp:ports></metadata>
  <devices>
    <interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='t0'/></interface>
    <interface type='ethernet'><mac address='52:54:00:00:00:02'/><target dev='t1'/></interface>
  </devices></domain>"#,
        domain::NAMESPACE
    )
}

const TWO: &str = r#"<hp:port dev="t0" vlan="10"/><hp:port dev="t1" vlan="20"/>"#;

#[test]
fn operations_are_read_and_unknown_ones_do_nothing() {
    assert_eq!(Operation::from("prepare"), Operation::Prepare);
    assert_eq!(Operation::from("release"), Operation::Release);
    assert_eq!(Operation::from("start"), Operation::Other);
    assert_eq!(Operation::from("define"), Operation::Other);
    let mut fake = Fake {
        down: true,
        ..Fake::default()
    };
    assert!(
        hook(Operation::Other, "garbage", &mut fake)
            .unwrap()
            .is_empty()
    );
    assert!(fake.log.is_empty());
}

#[test]
fn prepare_migrate_and_restore_check_and_touch_nothing() {
    for op in [Operation::Prepare, Operation::Migrate, Operation::Restore] {
        let mut fake = Fake {
            down: true,
            ..Fake::default()
        };
        assert!(hook(op, &xml(TWO), &mut fake).unwrap().is_empty());
        let e = hook(op, &xml(r#"<hp:port dev="t0" vlan="4095"/>"#), &mut fake).unwrap_err();
        assert!(format!("{e:#}").contains("vlan='4095'"), "{e:#}");
        assert!(fake.log.is_empty(), "{op:?}: {:?}", fake.log);
    }
}

#[test]
fn started_attaches_every_port_and_replaces_a_stale_one() {
    let mut fake = Fake {
        ports: vec![PortSpec::named("uplink"), PortSpec::named("t1")],
        ..Fake::default()
    };
    hook(Operation::Started, &xml(TWO), &mut fake).unwrap();
    assert_eq!(fake.log, ["add t0", "del t1", "add t1"]);
    assert_eq!(fake.names(), ["uplink", "t0", "t1"]);
    assert_eq!(fake.ports[2].vlan, Some(20));
    assert_eq!(fake.ports[2].allow, ["52:54:00:00:00:02"]);
}

#[test]
fn started_fails_when_an_attach_fails_and_stopped_detaches_what_was_attached() {
    let mut fake = Fake {
        refuse: Some("t1".into()),
        ..Fake::default()
    };
    let e = hook(Operation::Started, &xml(TWO), &mut fake).unwrap_err();
    assert!(format!("{e:#}").contains("attaching t1"), "{e:#}");
    assert_eq!(fake.names(), ["t0"]);
    hook(Operation::Stopped, &xml(TWO), &mut fake).unwrap();
    hook(Operation::Release, &xml(TWO), &mut fake).unwrap();
    assert!(fake.names().is_empty());
    assert_eq!(fake.log, ["add t0", "add t1", "del t0"]);
}

#[test]
fn started_without_ports_asks_hairpin_nothing() {
    let mut fake = Fake {
        down: true,
        ..Fake::default()
    };
    hook(Operation::Started, &xml(""), &mut fake).unwrap();
    hook(Operation::Stopped, &xml(""), &mut fake).unwrap();
    hook(Operation::Reconnect, &xml(""), &mut fake).unwrap();
    assert!(fake.log.is_empty());
}

#[test]
fn stopped_fails_when_hairpin_is_not_answering() {
    let mut fake = Fake {
        down: true,
        ..Fake::default()
    };
    assert!(hook(Operation::Stopped, &xml(TWO), &mut fake).is_err());
}

#[test]
fn reconnect_attaches_what_is_missing_and_only_warns() {
    let mut fake = Fake {
        ports: vec![PortSpec::named("t0")],
        ..Fake::default()
    };
    assert!(
        hook(Operation::Reconnect, &xml(TWO), &mut fake)
            .unwrap()
            .is_empty()
    );
    assert_eq!(fake.log, ["add t1"]);
    let mut fake = Fake {
        down: true,
        ..Fake::default()
    };
    let warnings = hook(Operation::Attach, &xml(TWO), &mut fake).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("keeps running"), "{warnings:?}");
    let warnings = hook(
        Operation::Reconnect,
        &xml(r#"<hp:port dev="t9"/>"#),
        &mut fake,
    )
    .unwrap();
    assert!(warnings[0].contains("t9"), "{warnings:?}");
}

#[test]
fn the_socket_is_the_option_else_the_environment_else_the_default() {
    assert_eq!(socket(Some(Path::new("/x.sock"))), Path::new("/x.sock"));
    // The environment is the process's: read, never set, here.
    let want = std::env::var_os("HAIRPIN_SOCKET")
        .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from);
    assert_eq!(socket(None), want);
}
