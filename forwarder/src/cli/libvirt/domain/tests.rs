use proptest::prelude::*;

use super::*;

/// A domain with two ethernet interfaces (vm-a, and one libvirt has not named), a
/// bridge interface, and `ports` in its metadata.
fn domain(ports: &str) -> String {
    format!(
        r#"<domain type='qemu'>
  <name>web1</name>
  <metadata>
    <other:thing xmlns:other="https://example.com/x"><other:port dev="zz"/></other:thing>
    <hp:ports xmlns:hp="{NAMESPACE}">{ports}</hp:ports>
  </metadata>
  <devices>
    <interface type='ethernet'>
      <mac address='52:54:00:00:00:01'/>
      <target dev='vm-a' managed='no'/>
      <model type='virtio'/>
    </interface>
    <interface type='ethernet'>
      <mac address='52:54:00:00:00:02'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:00:00:03'/>
      <source bridge='br0'/>
      <target dev='vnet7'/>
    </interface>
  </devices>
</domain>"#
    )
}

fn error(ports: &str) -> String {
    format!("{:#}", Domain::parse(&domain(ports)).unwrap_err())
}

#[test]
fn a_port_by_dev_gets_its_settings_and_the_interface_mac_as_only_source() {
    let d = Domain::parse(&domain(r#"<hp:port dev="vm-a" vlan="10"/>"#)).unwrap();
    assert_eq!(d.name, "web1");
    let specs = d.specs().unwrap();
    assert_eq!(
        specs,
        [PortSpec {
            name: "vm-a".into(),
            vlan: Some(10),
            allow: vec!["52:54:00:00:00:01".into()],
            ..PortSpec::default()
        }]
    );
}

#[test]
fn every_attribute_reaches_the_spec() {
    let d = Domain::parse(&domain(
        r#"<hp:port dev="vm-a" trunk="10,20" native="10" hairpin="on" spoofchk="off"
             max_macs="8" allow_ip="10.0.0.5/32, fd00::/64"/>"#,
    ))
    .unwrap();
    assert_eq!(
        d.specs().unwrap(),
        [PortSpec {
            name: "vm-a".into(),
            trunk: Some("10,20".into()),
            native: Some(10),
            hairpin: true,
            max_macs: Some(8),
            allow_ip: vec!["10.0.0.5/32".into(), "fd00::/64".into()],
            ..PortSpec::default()
        }]
    );
}

#[test]
fn a_port_by_mac_is_checked_before_its_tap_has_a_name_and_attached_after() {
    let d = Domain::parse(&domain(r#"<hp:port mac="52:54:00:00:00:02" vlan="20"/>"#)).unwrap();
    let e = format!("{:#}", d.specs().unwrap_err());
    assert!(e.contains("no <target dev> yet"), "{e}");
    // Once running, libvirt's XML names the tap.
    let running = domain(r#"<hp:port mac="52:54:00:00:00:02" vlan="20"/>"#).replace(
        "<mac address='52:54:00:00:00:02'/>",
        "<mac address='52:54:00:00:00:02'/><target dev='vnet3'/>",
    );
    let d = Domain::parse(&running).unwrap();
    assert_eq!(d.specs().unwrap()[0].name, "vnet3");
    assert_eq!(d.specs().unwrap()[0].allow, ["52:54:00:00:00:02"]);
    // MACs compare as MACs, not as text.
    assert!(Domain::parse(&domain(r#"<hp:port mac="52:54:00:00:00:0A"/>"#)).is_err());
    assert!(Domain::parse(&domain(r#"<hp:port mac="52:54:00:00:00:01"/>"#)).is_ok());
    assert!(Domain::parse(&domain(r#"<hp:port mac="52:54:00:00:00:1"/>"#)).is_err());
}

#[test]
fn no_metadata_or_no_ports_attaches_nothing() {
    let d = Domain::parse(&domain("")).unwrap();
    assert!(d.is_empty());
    let bare = "<domain type='qemu'><name>x</name></domain>";
    assert!(Domain::parse(bare).unwrap().is_empty());
}

#[test]
fn malformed_settings_say_which_element_attribute_and_why() {
    for (ports, says) in [
        (r#"<hp:port dev="vm-a" vlan="4095"/>"#, "vlan='4095'"),
        (
            r#"<hp:port dev="vm-a" vlan="ten"/>"#,
            "vlan='ten': not a number",
        ),
        (r#"<hp:port dev="vm-a" trunk="10,x"/>"#, "trunk='10,x'"),
        (r#"<hp:port dev="vm-a" vlan="10" trunk="20"/>"#, "not both"),
        (r#"<hp:port dev="vm-a" native="10"/>"#, "native='10'"),
        (
            r#"<hp:port dev="vm-a" hairpin="yes"/>"#,
            "hairpin='yes': give on or off",
        ),
        (r#"<hp:port dev="vm-a" spoofchk="1"/>"#, "spoofchk='1'"),
        (
            r#"<hp:port dev="vm-a" allow_ip="10.0.0.300/32"/>"#,
            "allow_ip='10.0.0.300/32'",
        ),
        (
            r#"<hp:port dev="vm-a" colour="red"/>"#,
            "unknown attribute colour",
        ),
        (
            r#"<hp:port dev="vm-b"/>"#,
            "no <interface> of the domain has <target dev='vm-b'/>",
        ),
        (
            r#"<hp:port mac="52:54:00:00:00:09"/>"#,
            "<mac address='52:54:00:00:00:09'/>",
        ),
        (r#"<hp:port vlan="10"/>"#, "dev= "),
        (
            r#"<hp:port dev="vm-a" mac="52:54:00:00:00:01"/>"#,
            "one of them",
        ),
        (r#"<hp:port dev="vnet7"/>"#, "not type='ethernet'"),
        (
            r#"<hp:port dev="vm-a"/><hp:port mac="52:54:00:00:00:01"/>"#,
            "one per interface",
        ),
        (r#"<hp:bridge dev="vm-a"/>"#, "<bridge> in <hairpin:ports>"),
    ] {
        let e = error(ports);
        assert!(e.contains(says), "{ports}: {e}");
        assert!(e.starts_with("domain web1: "), "{ports}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    let e = error(r#"<hp:port dev="vm-a" vlan="4095"/>"#);
    assert!(e.contains("<hairpin:port dev='vm-a'>"), "{e}");
}

#[test]
fn spoofchk_needs_the_interface_mac() {
    let xml = domain(r#"<hp:port dev="vm-a"/>"#).replace("<mac address='52:54:00:00:00:01'/>", "");
    let e = format!("{:#}", Domain::parse(&xml).unwrap_err());
    assert!(e.contains("has no <mac address>"), "{e}");
    let xml = xml.replace(r#"dev="vm-a"/>"#, r#"dev="vm-a" spoofchk="off"/>"#);
    assert!(Domain::parse(&xml).is_ok());
    let multicast =
        domain(r#"<hp:port dev="vm-a"/>"#).replace("52:54:00:00:00:01", "01:00:5e:00:00:01");
    let e = format!("{:#}", Domain::parse(&multicast).unwrap_err());
    assert!(e.contains("spoofchk: "), "{e}");
}

#[test]
fn other_elements_of_hairpin_s_namespace_are_refused() {
    let xml = domain("").replace(
        "</metadata>",
        &format!(r#"<hp:port xmlns:hp="{NAMESPACE}" dev="vm-a"/></metadata>"#),
    );
    let e = format!("{:#}", Domain::parse(&xml).unwrap_err());
    assert!(e.contains("<port> in the metadata"), "{e}");
}

#[test]
fn what_is_not_a_domain_is_refused() {
    for (text, says) in [
        ("", "no domain XML on stdin"),
        ("  \n", "no domain XML on stdin"),
        ("<domain", "malformed"),
        ("<network/>", "a <network>, not a libvirt <domain>"),
        ("<!DOCTYPE d [<!ENTITY a 'b'>]><domain/>", "malformed"),
    ] {
        let e = format!("{:#}", Domain::parse(text).unwrap_err());
        assert!(e.contains(says), "{text:?}: {e}");
        assert!(taps_leniently(text).is_err());
    }
}

#[test]
fn a_stopping_domain_s_taps_are_read_even_with_bad_settings() {
    let xml =
        domain(r#"<hp:port dev="vm-a" vlan="4095"/><hp:port mac="52:54:00:00:00:02" colour="x"/>"#)
            .replace(
                "<mac address='52:54:00:00:00:02'/>",
                "<mac address='52:54:00:00:00:02'/><target dev='vnet3'/>",
            );
    assert!(Domain::parse(&xml).is_err());
    assert_eq!(taps_leniently(&xml).unwrap(), ["vm-a", "vnet3"]);
    // Ports that name no interface name no tap.
    assert!(
        taps_leniently(&domain(r#"<hp:port dev="zz"/>"#))
            .unwrap()
            .is_empty()
    );
}

proptest! {
    #[test]
    fn no_input_panics(text in ".{0,300}", attr in "[a-z_]{1,9}", value in ".{0,20}") {
        let _ = Domain::parse(&text);
        let _ = taps_leniently(&text);
        let value = value.replace(['"', '<', '&'], "");
        let xml = domain(&format!(r#"<hp:port dev="vm-a" {attr}="{value}"/>"#));
        if let Ok(d) = Domain::parse(&xml) {
            let _ = d.specs();
        }
        let _ = taps_leniently(&xml);
    }
}
