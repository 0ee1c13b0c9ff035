//! The IP source guard's tests: prefixes, each rule and each exception on frames built
//! here, the fast path's rule against the workers', and `decide` on a guarded port.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::switch::{
    Action, DropReason, Mode, PortPolicy, PortSet, Role, decide, tables::tables_of, vlan::PortVlans,
};

const VM: Mac = Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const OTHER: Mac = Mac([0x02, 0, 0, 0, 0, 0x20]);
const DST: Mac = Mac([0x02, 0, 0, 0, 0, 0x99]);
const OWN4: [u8; 4] = [10, 0, 0, 5];
const NEIGHBOUR4: [u8; 4] = [10, 0, 0, 6];

fn own6() -> Ipv6Addr {
    "fd00::5".parse().unwrap()
}

fn neighbour6() -> Ipv6Addr {
    "fd00::6".parse().unwrap()
}

fn guard(list: &[&str]) -> IpGuard {
    let prefixes: Vec<IpPrefix> = list.iter().map(|s| s.parse().unwrap()).collect();
    IpGuard::new(&prefixes).unwrap()
}

/// The guard of a VM allowed 10.0.0.5 and fd00::5.
fn vm() -> IpGuard {
    guard(&["10.0.0.5/32", "fd00::5/128"])
}

fn eth(src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// `frame` with a tag of `tpid` for VLAN 10 pushed in front of its EtherType.
fn tagged(frame: &[u8], tpid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&tpid.to_be_bytes());
    f.extend_from_slice(&[0, 10]);
    f.extend_from_slice(&frame[12..]);
    f
}

fn ipv4(src: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, protocol, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&[255, 255, 255, 255]);
    p.extend_from_slice(payload);
    eth(VM, ETH_P_IP, &p)
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 8, 0, 0]);
    u
}

fn arp(operation: u16, sender_mac: Mac, sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0, 6, 4];
    a.extend_from_slice(&operation.to_be_bytes());
    a.extend_from_slice(&sender_mac.0);
    a.extend_from_slice(&sender);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target);
    eth(VM, ETH_P_ARP, &a)
}

fn ipv6(src: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 255]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(payload);
    eth(VM, ETH_P_IPV6, &p)
}

/// An ND message of `kind` with `target` (NS, NA) and link-layer address options.
fn nd(kind: u8, target: Option<Ipv6Addr>, options: &[(u8, Mac)]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    match kind {
        ndp::ROUTER_ADVERT => m.extend_from_slice(&[0; 8]),
        ndp::REDIRECT => m.extend_from_slice(&[0; 32]),
        _ => {}
    }
    if let Some(t) = target {
        m.extend_from_slice(&t.octets());
    }
    for &(k, mac) in options {
        m.extend_from_slice(&[k, 1]);
        m.extend_from_slice(&mac.0);
    }
    m
}

const SLLA: u8 = ndp::SOURCE_LINK_LAYER;
const TLLA: u8 = ndp::TARGET_LINK_LAYER;
const UNSPECIFIED: Ipv6Addr = Ipv6Addr::UNSPECIFIED;

#[test]
fn prefixes_read_print_and_contain() {
    let p: IpPrefix = "10.0.0.0/24".parse().unwrap();
    assert_eq!(p.to_string(), "10.0.0.0/24");
    assert_eq!(p.prefix_len(), 24);
    assert!(p.contains(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 77))));
    assert!(!p.contains(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1))));
    assert!(!p.contains("::a00:5".parse().unwrap()), "another family");
    let host: IpPrefix = "fd00::5".parse().unwrap();
    assert_eq!(host.to_string(), "fd00::5/128");
    assert_eq!(
        "10.0.0.5".parse::<IpPrefix>().unwrap().to_string(),
        "10.0.0.5/32"
    );
    let all: IpPrefix = "::/0".parse().unwrap();
    assert!(all.contains(IpAddr::V6(own6())));
    assert_eq!(
        "10.0.0.5/24".parse::<IpPrefix>().unwrap_err().to_string(),
        "10.0.0.5/24 has bits set past its length: the prefix is 10.0.0.0/24"
    );
    for bad in [
        "",
        "10.0.0/8",
        "10.0.0.0/33",
        "fd00::/129",
        "10.0.0.0/+8",
        "10.0.0.0/",
        "x/8",
        "10.0.0.0/0008",
        "10.0.0.0/8/8",
    ] {
        let e = bad.parse::<IpPrefix>().unwrap_err();
        assert!(matches!(e, PrefixError::Syntax(_)), "{bad}: {e}");
        assert!(e.to_string().starts_with(&format!("{bad:?}")), "{e}");
    }
}

#[test]
fn the_own_link_local_address_is_the_macs_eui_64() {
    assert_eq!(
        link_local_of(VM),
        "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn ipv4_must_come_from_an_allowed_source() {
    let g = vm();
    assert_eq!(g.check(&ipv4(OWN4, 6, &[0; 20])), Ok(()));
    assert_eq!(
        g.check(&ipv4(NEIGHBOUR4, 6, &[0; 20])),
        Err(Refusal::Source(IpAddr::V4(Ipv4Addr::from(NEIGHBOUR4))))
    );
    let subnet = guard(&["10.0.0.0/24"]);
    assert_eq!(subnet.check(&ipv4(NEIGHBOUR4, 6, &[0; 20])), Ok(()));
    assert!(subnet.check(&ipv4([10, 0, 1, 6], 6, &[0; 20])).is_err());
    // A guard of IPv6 prefixes alone refuses every IPv4 source.
    assert!(
        guard(&["fd00::/64"])
            .check(&ipv4(OWN4, 6, &[0; 20]))
            .is_err()
    );
}

#[test]
fn dhcp_and_igmp_pass_from_the_unspecified_source_and_nothing_else() {
    let g = vm();
    assert_eq!(g.check(&ipv4([0; 4], 17, &udp(68, 67))), Ok(()), "DHCP");
    assert_eq!(g.check(&ipv4([0; 4], 2, &[0x22; 8])), Ok(()), "IGMP");
    for (what, frame) in [
        ("to another port", ipv4([0; 4], 17, &udp(68, 53))),
        ("from another port", ipv4([0; 4], 17, &udp(1234, 67))),
        ("TCP", ipv4([0; 4], 6, &udp(68, 67))),
        ("UDP header cut", ipv4([0; 4], 17, &[0, 68])),
    ] {
        assert_eq!(g.check(&frame), Err(Refusal::Unspecified), "{what}");
    }
    let mut later = ipv4([0; 4], 17, &udp(68, 67));
    later[14 + 7] = 1; // fragment offset 8
    assert_eq!(g.check(&later), Err(Refusal::Unspecified));
}

#[test]
fn ipv4_that_does_not_add_up_is_refused() {
    let g = vm();
    // A total length past this buffer: the packet goes on in the frame's next ones
    // (a jumbo frame): its header is what counts.
    let mut long = ipv4(OWN4, 6, &[0; 20]);
    long[14 + 3] = 200;
    assert!(g.check(&long).is_ok());
    let mut short = ipv4(OWN4, 6, &[]);
    short.truncate(14 + 19);
    assert!(matches!(g.check(&short), Err(Refusal::Malformed(_))));
}

#[test]
fn arp_must_name_an_allowed_sender_at_the_frames_own_mac() {
    let g = vm();
    assert_eq!(g.check(&arp(2, VM, OWN4, OWN4)), Ok(()), "gratuitous");
    assert_eq!(g.check(&arp(1, VM, OWN4, NEIGHBOUR4)), Ok(()), "request");
    assert_eq!(
        g.check(&arp(2, VM, NEIGHBOUR4, NEIGHBOUR4)),
        Err(Refusal::ArpSender(Ipv4Addr::from(NEIGHBOUR4))),
        "claiming the neighbour's address"
    );
    assert_eq!(
        g.check(&arp(2, OTHER, OWN4, OWN4)),
        Err(Refusal::ArpSenderMac(OTHER))
    );
    // Probes (RFC 5227): the sender 0.0.0.0, for an address the port may use.
    assert_eq!(g.check(&arp(1, VM, [0; 4], OWN4)), Ok(()));
    assert_eq!(
        g.check(&arp(1, VM, [0; 4], NEIGHBOUR4)),
        Err(Refusal::ArpProbe(Ipv4Addr::from(NEIGHBOUR4)))
    );
    assert!(
        g.check(&arp(2, VM, [0; 4], OWN4)).is_err(),
        "a reply from 0.0.0.0"
    );
    let mut other_kind = arp(2, VM, OWN4, OWN4);
    other_kind[14 + 2] = 0x86;
    assert!(matches!(g.check(&other_kind), Err(Refusal::Malformed(_))));
    let mut cut = arp(2, VM, OWN4, OWN4);
    cut.truncate(14 + 27);
    assert!(matches!(g.check(&cut), Err(Refusal::Malformed(_))));
}

#[test]
fn ipv6_must_come_from_an_allowed_source_or_the_own_link_local_address() {
    let g = vm();
    assert_eq!(g.check(&ipv6(own6(), 6, &[0; 20])), Ok(()));
    assert_eq!(
        g.check(&ipv6(neighbour6(), 6, &[0; 20])),
        Err(Refusal::Source(IpAddr::V6(neighbour6())))
    );
    assert_eq!(g.check(&ipv6(link_local_of(VM), 6, &[0; 20])), Ok(()));
    let theirs = link_local_of(OTHER);
    assert_eq!(
        g.check(&ipv6(theirs, 6, &[0; 20])),
        Err(Refusal::Source(IpAddr::V6(theirs)))
    );
    // Listed, any link-local address passes.
    let any_link_local = guard(&["fd00::5/128", "fe80::/64"]);
    assert_eq!(any_link_local.check(&ipv6(theirs, 6, &[0; 20])), Ok(()));
}

#[test]
fn dad_router_solicitations_and_mld_reports_pass_from_the_unspecified_source() {
    let g = vm();
    let dad = nd(ndp::NEIGHBOR_SOLICIT, Some(own6()), &[]);
    assert_eq!(g.check(&ipv6(UNSPECIFIED, 58, &dad)), Ok(()), "DAD");
    let dad_ll = nd(ndp::NEIGHBOR_SOLICIT, Some(link_local_of(VM)), &[]);
    assert_eq!(
        g.check(&ipv6(UNSPECIFIED, 58, &dad_ll)),
        Ok(()),
        "DAD, link-local"
    );
    let theirs = nd(ndp::NEIGHBOR_SOLICIT, Some(neighbour6()), &[]);
    assert_eq!(
        g.check(&ipv6(UNSPECIFIED, 58, &theirs)),
        Err(Refusal::Target(neighbour6())),
        "DAD for the neighbour's address"
    );
    let rs = nd(ndp::ROUTER_SOLICIT, None, &[]);
    assert_eq!(g.check(&ipv6(UNSPECIFIED, 58, &rs)), Ok(()), "RS");
    // An MLDv2 report behind its hop-by-hop header (router alert).
    let mut mld = vec![58, 0, 5, 2, 0, 0, 1, 0];
    mld.extend_from_slice(&[ndp::MLD2_REPORT, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(g.check(&ipv6(UNSPECIFIED, 0, &mld)), Ok(()), "MLDv2");
    assert_eq!(
        g.check(&ipv6(UNSPECIFIED, 58, &[128, 0, 0, 0, 0, 0, 0, 0])),
        Err(Refusal::Unspecified),
        "an echo request"
    );
    assert_eq!(
        g.check(&ipv6(UNSPECIFIED, 17, &udp(546, 547))),
        Err(Refusal::Unspecified)
    );
}

#[test]
fn an_advertisement_must_be_for_an_allowed_target_and_at_the_frames_own_mac() {
    let g = vm();
    let own = nd(ndp::NEIGHBOR_ADVERT, Some(own6()), &[(TLLA, VM)]);
    assert_eq!(g.check(&ipv6(own6(), 58, &own)), Ok(()));
    let own_ll = nd(ndp::NEIGHBOR_ADVERT, Some(link_local_of(VM)), &[(TLLA, VM)]);
    assert_eq!(g.check(&ipv6(link_local_of(VM), 58, &own_ll)), Ok(()));
    // Unsolicited, claiming the neighbour's address, from the VM's own.
    let theirs = nd(ndp::NEIGHBOR_ADVERT, Some(neighbour6()), &[(TLLA, VM)]);
    assert_eq!(
        g.check(&ipv6(own6(), 58, &theirs)),
        Err(Refusal::Target(neighbour6()))
    );
    // Hidden behind a destination options header: found all the same.
    let mut hidden = vec![58, 0, 1, 4, 0, 0, 0, 0];
    hidden.extend_from_slice(&theirs);
    assert_eq!(
        g.check(&ipv6(own6(), 60, &hidden)),
        Err(Refusal::Target(neighbour6()))
    );
    let elsewhere = nd(ndp::NEIGHBOR_ADVERT, Some(own6()), &[(TLLA, OTHER)]);
    assert_eq!(
        g.check(&ipv6(own6(), 58, &elsewhere)),
        Err(Refusal::LinkLayerOption)
    );
}

#[test]
fn link_layer_options_must_carry_the_frames_own_mac() {
    let g = vm();
    let ns = nd(ndp::NEIGHBOR_SOLICIT, Some(neighbour6()), &[(SLLA, VM)]);
    assert_eq!(
        g.check(&ipv6(own6(), 58, &ns)),
        Ok(()),
        "resolving a neighbour"
    );
    let ns = nd(ndp::NEIGHBOR_SOLICIT, Some(neighbour6()), &[(SLLA, OTHER)]);
    assert_eq!(
        g.check(&ipv6(own6(), 58, &ns)),
        Err(Refusal::LinkLayerOption)
    );
    let ra = nd(ndp::ROUTER_ADVERT, None, &[(SLLA, OTHER)]);
    assert_eq!(
        g.check(&ipv6(own6(), 58, &ra)),
        Err(Refusal::LinkLayerOption)
    );
    let rs = nd(ndp::ROUTER_SOLICIT, None, &[(SLLA, VM), (SLLA, OTHER)]);
    assert_eq!(
        g.check(&ipv6(own6(), 58, &rs)),
        Err(Refusal::LinkLayerOption),
        "the second of two"
    );
    // A redirect's target link-layer address is its better hop's: not checked.
    let redirect = nd(ndp::REDIRECT, None, &[(TLLA, OTHER)]);
    assert_eq!(g.check(&ipv6(own6(), 58, &redirect)), Ok(()));
    // Other options pass; malformed ones are refused.
    let mut mtu = nd(ndp::ROUTER_ADVERT, None, &[]);
    mtu.extend_from_slice(&[5, 1, 0, 0, 0, 0, 5, 0xdc]);
    assert_eq!(g.check(&ipv6(own6(), 58, &mtu)), Ok(()));
    let mut zero = nd(ndp::NEIGHBOR_ADVERT, Some(own6()), &[(TLLA, VM)]);
    zero[25] = 0;
    assert!(matches!(
        g.check(&ipv6(own6(), 58, &zero)),
        Err(Refusal::Malformed(_))
    ));
    let mut wide = nd(ndp::NEIGHBOR_ADVERT, Some(own6()), &[]);
    wide.extend_from_slice(&[TLLA, 2]);
    wide.extend_from_slice(&VM.0);
    wide.extend_from_slice(&[0; 8]);
    assert_eq!(
        g.check(&ipv6(own6(), 58, &wide)),
        Err(Refusal::LinkLayerOption)
    );
}

#[test]
fn fragmented_nd_is_refused_and_later_fragments_are_checked_as_ip() {
    let g = vm();
    let mut first = vec![58, 0, 0, 1, 0, 0, 0, 7]; // offset 0, more fragments
    first.extend_from_slice(&nd(ndp::NEIGHBOR_ADVERT, Some(own6()), &[]));
    assert_eq!(
        g.check(&ipv6(own6(), 44, &first)),
        Err(Refusal::FragmentedNd)
    );
    let later = [58, 0, 0, 0x10, 0, 0, 0, 7, 0xaa, 0xbb];
    assert_eq!(g.check(&ipv6(own6(), 44, &later)), Ok(()));
    assert_eq!(
        g.check(&ipv6(UNSPECIFIED, 44, &later)),
        Err(Refusal::Unspecified)
    );
    // A fragment of an echo passes.
    let mut echo = vec![58, 0, 0, 1, 0, 0, 0, 7];
    echo.extend_from_slice(&[128, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(g.check(&ipv6(own6(), 44, &echo)), Ok(()));
}

#[test]
fn ipv6_that_does_not_add_up_is_refused() {
    let g = vm();
    // A payload length past this buffer: the packet goes on in the frame's next ones.
    let mut long = ipv6(own6(), 6, &[0; 20]);
    long[14 + 4] = 1;
    assert!(g.check(&long).is_ok());
    let cut_ext = ipv6(own6(), 0, &[6, 1, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(g.check(&cut_ext), Err(Refusal::Malformed(_))));
    let empty_icmp = ipv6(own6(), 58, &[]);
    assert!(matches!(g.check(&empty_icmp), Err(Refusal::Malformed(_))));
    let cut_na = ipv6(own6(), 58, &[ndp::NEIGHBOR_ADVERT, 0, 0, 0]);
    assert!(matches!(g.check(&cut_na), Err(Refusal::Malformed(_))));
}

#[test]
fn tags_are_looked_behind_and_other_ethertypes_pass() {
    let g = vm();
    let own = ipv4(OWN4, 6, &[0; 20]);
    let foreign = ipv4(NEIGHBOUR4, 6, &[0; 20]);
    for tpid in [0x8100, 0x88a8] {
        assert_eq!(g.check(&tagged(&own, tpid)), Ok(()));
        assert!(g.check(&tagged(&foreign, tpid)).is_err());
        assert!(g.check(&tagged(&tagged(&foreign, 0x8100), tpid)).is_err());
        assert_eq!(g.check(&tagged(&tagged(&own, 0x8100), tpid)), Ok(()));
    }
    let three = tagged(&tagged(&tagged(&own, 0x8100), 0x8100), 0x88a8);
    assert_eq!(g.check(&three), Err(Refusal::StackedTags));
    for ethertype in [0x88cc, 0x8864, 0x8847, 0x8035] {
        assert_eq!(
            g.check(&eth(VM, ethertype, &[0xff; 46])),
            Ok(()),
            "{ethertype:#x}"
        );
    }
    assert!(matches!(g.check(&own[..13]), Err(Refusal::Malformed(_))));
}

/// Every frame of these tests, and a few more, with the guard the test used.
fn sample() -> Vec<(IpGuard, Vec<u8>)> {
    let g = vm();
    let mut frames = vec![
        ipv4(OWN4, 6, &[0; 20]),
        ipv4(NEIGHBOUR4, 6, &[0; 20]),
        ipv4([0; 4], 17, &udp(68, 67)),
        ipv4([0; 4], 6, &[0; 20]),
        arp(2, VM, OWN4, OWN4),
        arp(2, VM, NEIGHBOUR4, NEIGHBOUR4),
        ipv6(own6(), 6, &[0; 20]),
        ipv6(own6(), 17, &udp(1, 2)),
        ipv6(neighbour6(), 6, &[0; 20]),
        ipv6(link_local_of(VM), 6, &[0; 20]),
        ipv6(link_local_of(OTHER), 6, &[0; 20]),
        ipv6(
            UNSPECIFIED,
            58,
            &nd(ndp::NEIGHBOR_SOLICIT, Some(own6()), &[]),
        ),
        ipv6(UNSPECIFIED, 17, &udp(546, 547)),
        ipv6(
            own6(),
            58,
            &nd(ndp::NEIGHBOR_ADVERT, Some(neighbour6()), &[]),
        ),
        ipv6(own6(), 60, &[58, 0, 1, 4, 0, 0, 0, 0, 136, 0, 0, 0]),
        ipv6(own6(), 44, &[6, 0, 0, 0x10, 0, 0, 0, 7]),
        ipv6(own6(), 50, &[0; 16]),
        eth(VM, 0x88cc, &[0; 46]),
    ];
    let tagged_frames: Vec<Vec<u8>> = frames
        .iter()
        .flat_map(|f| {
            [
                tagged(f, 0x8100),
                tagged(f, 0x88a8),
                tagged(&tagged(f, 0x8100), 0x8100),
            ]
        })
        .collect();
    frames.extend(tagged_frames);
    let mut bad = ipv4(OWN4, 6, &[0; 20]);
    bad[14 + 3] = 255;
    frames.push(bad);
    frames.into_iter().map(|f| (g.clone(), f)).collect()
}

#[test]
fn the_fast_path_passes_only_what_the_workers_pass_and_drops_only_what_they_refuse() {
    let mut seen = [0usize; 3];
    for (g, frame) in sample() {
        let fast = g.fast_path(&frame);
        let workers = g.check(&frame);
        match fast {
            FastGuard::Pass => assert_eq!(workers, Ok(()), "{frame:02x?}"),
            FastGuard::Drop => assert!(workers.is_err(), "{frame:02x?}"),
            FastGuard::Workers => {}
        }
        seen[fast as usize] += 1;
    }
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
}

#[test]
fn the_fast_path_leaves_arp_nd_and_the_exceptions_to_the_workers() {
    let g = vm();
    let cases = [
        (ipv4(OWN4, 6, &[0; 20]), FastGuard::Pass),
        (ipv4(NEIGHBOUR4, 6, &[0; 20]), FastGuard::Drop),
        (ipv4([0; 4], 17, &udp(68, 67)), FastGuard::Workers),
        (arp(2, VM, OWN4, OWN4), FastGuard::Workers),
        (ipv6(own6(), 6, &[0; 20]), FastGuard::Pass),
        (ipv6(own6(), 58, &[128, 0, 0, 0]), FastGuard::Workers),
        (
            ipv6(own6(), 0, &[6, 0, 0, 0, 0, 0, 0, 0]),
            FastGuard::Workers,
        ),
        (ipv6(UNSPECIFIED, 58, &[133, 0, 0, 0]), FastGuard::Workers),
        (ipv6(link_local_of(VM), 6, &[0; 20]), FastGuard::Workers),
        (ipv6(neighbour6(), 6, &[0; 20]), FastGuard::Drop),
        (eth(VM, 0x88cc, &[]), FastGuard::Pass),
        (
            tagged(&ipv4(NEIGHBOUR4, 6, &[0; 20]), 0x8100),
            FastGuard::Drop,
        ),
        (
            tagged(&ipv4(NEIGHBOUR4, 6, &[0; 20]), 0x88a8),
            FastGuard::Workers,
        ),
    ];
    for (frame, want) in cases {
        assert_eq!(g.fast_path(&frame), want, "{frame:02x?}");
    }
}

/// Two downlinks: port 0 a VM allowed 10.0.0.5 and fd00::5 (and its MAC alone), port
/// 1 without a guard.
fn guarded(mode: Mode) -> crate::switch::Tables {
    let vm = PortPolicy {
        allowed_sources: vec![VM],
        allowed_ips: ["10.0.0.5/32", "fd00::5/128"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect(),
        ..PortPolicy::default()
    };
    let mut other = PortPolicy::default();
    if mode == Mode::Passthru {
        other.role = Role::Uplink;
    }
    tables_of(mode, &[vm, other], 16).unwrap()
}

#[test]
fn decide_drops_what_the_guard_refuses_and_learns_nothing_from_it() {
    let t = guarded(Mode::Veb);
    let act = |frame: &[u8], port| decide(&t, frame, port, 1).action;
    let flood_to_1 = Action::Flood(PortSet::EMPTY.with(1));
    for frame in [
        ipv4(NEIGHBOUR4, 6, &[0; 20]),
        arp(2, VM, NEIGHBOUR4, NEIGHBOUR4),
        ipv6(
            own6(),
            58,
            &nd(ndp::NEIGHBOR_ADVERT, Some(neighbour6()), &[]),
        ),
    ] {
        assert_eq!(act(&frame, 0), Action::Drop(DropReason::IpSpoofed));
        assert_eq!(t.fdb.lookup(0, VM), None, "not learned");
    }
    // The port's own traffic, DHCP and DAD included.
    for frame in [
        ipv4(OWN4, 6, &[0; 20]),
        ipv4([0; 4], 17, &udp(68, 67)),
        ipv6(
            UNSPECIFIED,
            58,
            &nd(ndp::NEIGHBOR_SOLICIT, Some(own6()), &[]),
        ),
        arp(2, VM, OWN4, OWN4),
    ] {
        assert_eq!(act(&frame, 0), flood_to_1);
    }
    assert_eq!(t.fdb.lookup(0, VM), Some(0));
    // The MAC check comes first, and keeps its own reason.
    let mut other_mac = ipv4(OWN4, 6, &[0; 20]);
    other_mac[6..12].copy_from_slice(&OTHER.0);
    assert_eq!(act(&other_mac, 0), Action::Drop(DropReason::Spoofed));
    // Port 1 has no guard.
    let mut from_1 = ipv4(NEIGHBOUR4, 6, &[0; 20]);
    from_1[6..12].copy_from_slice(&OTHER.0);
    assert_eq!(act(&from_1, 1), Action::Flood(PortSet::EMPTY.with(0)));
}

#[test]
fn decide_guards_passthru_and_tagged_frames_on_a_trunk() {
    let t = guarded(Mode::Passthru);
    assert_eq!(
        decide(&t, &ipv4(NEIGHBOUR4, 6, &[0; 20]), 0, 1).action,
        Action::Drop(DropReason::IpSpoofed)
    );
    assert_eq!(
        decide(&t, &ipv4(OWN4, 6, &[0; 20]), 0, 1).action,
        Action::Forward(1)
    );
    let trunk = PortPolicy {
        vlans: Some(PortVlans::Trunk {
            tagged: vec![10],
            native: None,
        }),
        allowed_ips: vec!["10.0.0.5/32".parse().unwrap()],
        ..PortPolicy::default()
    };
    let access = PortPolicy {
        vlans: Some(PortVlans::Access(10)),
        ..PortPolicy::default()
    };
    let t = tables_of(Mode::Veb, &[trunk, access], 16).unwrap();
    let own = tagged(&ipv4(OWN4, 6, &[0; 20]), 0x8100);
    assert_eq!(
        decide(&t, &own, 0, 1).action,
        Action::Flood(PortSet::EMPTY.with(1))
    );
    let foreign = tagged(&ipv4(NEIGHBOUR4, 6, &[0; 20]), 0x8100);
    assert_eq!(
        decide(&t, &foreign, 0, 1).action,
        Action::Drop(DropReason::IpSpoofed)
    );
}
