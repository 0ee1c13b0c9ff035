//! The netlink decoders (`hairpin::control::netlink`): the input is one datagram from
//! the kernel, read both as notifications (`Netlink::changes`) and as the answer to a
//! request (the sequence number of its first message). Nothing panics, and every link
//! and address decoded, encoded again the way the kernel would send it, decodes the
//! same.
#![no_main]

use std::net::IpAddr;

use hairpin::control::netlink::{Change, Link, fuzzing};
use libfuzzer_sys::fuzz_target;
use netlink_packet_core::NLM_F_MULTIPART;
use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressMessage},
    link::{LinkAttribute, LinkFlags, LinkMessage, LinkXdp},
};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;

/// One netlink message: the header, then `payload`, padded to 4 bytes.
fn message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut out = Vec::with_capacity(len.next_multiple_of(4));
    out.extend((len as u32).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(flags.to_ne_bytes());
    out.extend(seq.to_ne_bytes());
    out.extend(0u32.to_ne_bytes());
    out.extend(payload);
    out.resize(len.next_multiple_of(4), 0);
    out
}

fn emitted(message: &impl netlink_packet_core::Emitable) -> Vec<u8> {
    let mut bytes = vec![0; message.buffer_len()];
    message.emit(&mut bytes);
    bytes
}

/// `link` as the kernel reports it in an `RTM_NEWLINK`.
fn link_message(link: &Link) -> Vec<u8> {
    let mut message = LinkMessage::default();
    message.header.index = link.ifindex;
    if link.admin_up {
        message.header.flags |= LinkFlags::Up;
    }
    if link.oper_up {
        message.header.flags |= LinkFlags::LowerUp;
    }
    let attributes = &mut message.attributes;
    attributes.push(LinkAttribute::IfName(link.name.clone()));
    attributes.push(LinkAttribute::Mtu(link.mtu));
    if let Some(mac) = link.mac {
        attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(max) = link.max_mtu {
        attributes.push(LinkAttribute::MaxMtu(max));
    }
    if let Some(alias) = &link.alias {
        attributes.push(LinkAttribute::IfAlias(alias.clone()));
    }
    if let Some(id) = link.xdp_prog_id {
        attributes.push(LinkAttribute::Xdp(vec![LinkXdp::ProgId(id)]));
    }
    emitted(&message)
}

/// `ip` on interface `index` as the kernel reports it in an `RTM_NEWADDR`.
fn address_message(index: u32, ip: IpAddr) -> Vec<u8> {
    let mut message = AddressMessage::default();
    message.header.index = index;
    message.header.family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.attributes.push(AddressAttribute::Local(ip));
    emitted(&message)
}

fn check_link(link: &Link) {
    assert_ne!(link.ifindex, 0, "a link without an index");
    assert_ne!(link.max_mtu, Some(0), "no limit is None");
    assert_ne!(link.xdp_prog_id, Some(0), "no program is None");
    let again = message(RTM_NEWLINK, 0, 1, &link_message(link));
    assert_eq!(
        fuzzing::notifications(&again),
        [Change::Link(link.clone())],
        "{link:?} encoded again"
    );
    let (complete, links, _) = fuzzing::reply(&again, 1);
    assert!(complete.unwrap(), "a single answer is complete");
    assert_eq!(links, std::slice::from_ref(link));
}

fuzz_target!(|data: &[u8]| {
    for change in fuzzing::notifications(data) {
        match change {
            Change::Link(link) => check_link(&link),
            Change::LinkGone { .. } | Change::Addresses { .. } => {}
            Change::Overrun => panic!("an overrun is the socket's, never in a datagram"),
        }
    }
    let seq = data
        .get(8..12)
        .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap()));
    let (_, links, addresses) = fuzzing::reply(data, seq);
    links.iter().for_each(check_link);
    for (index, ip) in addresses {
        let again = message(RTM_NEWADDR, NLM_F_MULTIPART, 2, &address_message(index, ip));
        let (complete, _, decoded) = fuzzing::reply(&again, 2);
        assert!(!complete.unwrap(), "a dump goes on until NLMSG_DONE");
        assert_eq!(decoded, [(index, ip)], "{ip} on {index} encoded again");
    }
});
