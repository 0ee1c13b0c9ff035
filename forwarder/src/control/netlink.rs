//! hairpin's window on the kernel's links and addresses, over rtnetlink.
//!
//! [`Netlink`] holds two route sockets of the network namespace it was opened in: one
//! subscribed to the link and address multicast groups, read without blocking by
//! [`Netlink::changes`] whenever poll(2) says [`Netlink::events_fd`] is readable, and
//! one for requests (dumps of links and addresses, a link by name). Keeping them apart
//! means a reply never has to be told from a notification, and a dump never races the
//! notifications it would otherwise interleave with.
//!
//! Messages are built and decoded with `netlink-packet-route`; the sockets are
//! `netlink-sys`'s, so this module needs no `unsafe` and no privileges.
use std::{
    fmt, io,
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
};

use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTIPART, NLM_F_REQUEST,
    NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NlasIterator, Parseable as _, ParseableParametrized as _,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressHeader, AddressMessage},
    link::{LinkAttribute, LinkFlags, LinkHeader, LinkMessage, LinkXdp},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A link as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub ifindex: u32,
    /// Its name.
    pub name: String,
    /// Its hardware address, when it is a 6-byte (Ethernet) one.
    pub mac: Option<[u8; 6]>,
    /// Its MTU.
    pub mtu: u32,
    /// Whether it is administratively up (`IFF_UP`).
    pub admin_up: bool,
    /// Whether it can pass frames: `IFF_LOWER_UP` (carrier) or `IFF_RUNNING` (operstate
    /// UP, or UNKNOWN as for `lo` and tun devices). The kernel sets neither while the
    /// link is administratively down.
    pub oper_up: bool,
    /// The largest MTU it accepts (`IFLA_MAX_MTU`), if it reports a limit.
    pub max_mtu: Option<u32>,
    /// The XDP program attached to it (`IFLA_XDP_PROG_ID`), if any.
    pub xdp_prog_id: Option<u32>,
    /// Its alias (`ip link set NAME alias TEXT`; hairpin-cni names the pod there), if
    /// it has one.
    pub alias: Option<String>,
}

/// Something that changed, read from the multicast groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `RTM_NEWLINK`: a link appeared or changed (name, state, MTU, ...).
    Link(Link),
    /// `RTM_DELLINK`: a link was deleted or left this namespace.
    LinkGone {
        /// Its index.
        ifindex: u32,
        /// Its name (empty if the kernel did not say).
        name: String,
    },
    /// `RTM_NEWADDR` / `RTM_DELADDR` on this interface: re-read its addresses.
    Addresses {
        /// The interface.
        ifindex: u32,
    },
    /// The kernel dropped notifications (`ENOBUFS` on the multicast socket):
    /// resynchronise with full dumps.
    Overrun,
}

/// Two rtnetlink sockets of the namespace they were opened in: one subscribed to
/// `RTNLGRP_LINK`, `RTNLGRP_IPV4_IFADDR` and `RTNLGRP_IPV6_IFADDR` (non-blocking), one
/// for requests.
pub struct Netlink {
    events: Socket,
    requests: Socket,
    /// The sequence number of the last request sent.
    seq: u32,
    /// Where datagrams land; grown when one is larger.
    buf: Vec<u8>,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink")
            .field("events_fd", &self.events.as_raw_fd())
            .field("requests_fd", &self.requests.as_raw_fd())
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// The kernel sizes dump datagrams by the largest read it has seen, up to 32 KiB:
/// reading with at least that much keeps dumps to few datagrams.
const RECEIVE_BUFFER: usize = 32 * 1024;

/// Asked of the kernel for the multicast socket, so bursts of notifications (many
/// links changing at once) overrun it less often. It caps the value at `rmem_max`.
const EVENTS_SOCKET_BUFFER: libc::c_int = 1 << 20;

/// How many times a dump the kernel marks inconsistent (`NLM_F_DUMP_INTR`: the table
/// changed while it was being read) is tried before its last result is taken as is.
const DUMP_ATTEMPTS: u32 = 3;

/// At most this many datagrams per [`Netlink::changes`] call, so a storm of
/// notifications cannot keep the caller in it forever; the rest stay readable.
const MAX_DATAGRAMS_PER_CALL: usize = 1024;

/// `sizeof(struct ifinfomsg)`, before a link message's attributes.
const IFINFOMSG_LEN: usize = 16;
/// `sizeof(struct ifaddrmsg)`, before an address message's attributes.
const IFADDRMSG_LEN: usize = 8;

/// The link attributes [`Link`] is made of: only these are decoded.
const LINK_ATTRIBUTES: [u16; 6] = [
    libc::IFLA_IFNAME,
    libc::IFLA_MTU,
    libc::IFLA_ADDRESS,
    libc::IFLA_MAX_MTU,
    libc::IFLA_XDP,
    libc::IFLA_IFALIAS,
];
/// The address attributes an address is read from.
const ADDRESS_ATTRIBUTES: [u16; 2] = [libc::IFA_ADDRESS, libc::IFA_LOCAL];

impl Netlink {
    /// Opens both sockets in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut events = Socket::new(NETLINK_ROUTE)?;
        // Port 0: the kernel picks a free port id.
        events.bind(&SocketAddr::new(0, 0))?;
        for group in [
            libc::RTNLGRP_LINK,
            libc::RTNLGRP_IPV4_IFADDR,
            libc::RTNLGRP_IPV6_IFADDR,
        ] {
            events.add_membership(group)?;
        }
        events.set_rx_buf_sz(EVENTS_SOCKET_BUFFER)?;
        events.set_non_blocking(true)?;
        let mut requests = Socket::new(NETLINK_ROUTE)?;
        requests.bind(&SocketAddr::new(0, 0))?;
        Ok(Self {
            events,
            requests,
            seq: 0,
            buf: vec![0; RECEIVE_BUFFER],
        })
    }

    /// The multicast socket's descriptor, for poll(2) (readable = changes pending).
    pub fn events_fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }

    /// Every change pending now, without blocking (empty Vec when none). `ENOBUFS`
    /// becomes [`Change::Overrun`] (once per call) and reading goes on. A call reads at
    /// most 1024 datagrams; the descriptor stays readable if more are pending.
    pub fn changes(&mut self) -> io::Result<Vec<Change>> {
        let mut out = Vec::new();
        for _ in 0..MAX_DATAGRAMS_PER_CALL {
            let datagram = match receive(&self.events, &mut self.buf) {
                Ok(datagram) => datagram,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The socket's queue overflowed and notifications were lost; the
                // kernel reports that once, then delivers what came after.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if !out.contains(&Change::Overrun) {
                        out.push(Change::Overrun);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            changes_in(datagram, &mut out);
        }
        Ok(out)
    }

    /// Every link (`RTM_GETLINK` dump).
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let replies = self.request(
            &RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(links_in(&replies).collect())
    }

    /// The link called `name`, if there is one (`RTM_GETLINK` with `IFLA_IFNAME`;
    /// `ENODEV` is `Ok(None)`). A name no interface can have (empty, 16 bytes or
    /// longer, with a NUL) is an `InvalidInput` error.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a valid interface name"),
            ));
        }
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        match self.request(&RouteNetlinkMessage::GetLink(message), 0) {
            Ok(replies) => Ok(links_in(&replies).find(|link| link.name == name)),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The IPv4 and IPv6 addresses of `ifindex` (`RTM_GETADDR` dump filtered by index),
    /// each the interface's own: `IFA_LOCAL` where there is one, else `IFA_ADDRESS`.
    pub fn addresses(&mut self, ifindex: u32) -> io::Result<Vec<IpAddr>> {
        let mut message = AddressMessage::default();
        // Without NETLINK_GET_STRICT_CHK the kernel dumps every interface's addresses
        // whatever the index says; the filter below is what counts.
        message.header.index = ifindex;
        let replies = self.request(&RouteNetlinkMessage::GetAddress(message), NLM_F_DUMP)?;
        Ok(addresses_in(&replies)
            .filter(|&(index, _)| index == ifindex)
            .map(|(_, ip)| ip)
            .collect())
    }

    /// Sends `message` as a request with `flags` and collects the replies, retrying a
    /// dump the kernel reports inconsistent.
    fn request(&mut self, message: &RouteNetlinkMessage, flags: u16) -> io::Result<Vec<Reply>> {
        let mut attempt = 1;
        loop {
            let seq = self.send(message.clone(), flags)?;
            let mut replies = Replies::default();
            while !absorb(receive(&self.requests, &mut self.buf)?, seq, &mut replies)? {}
            if !replies.interrupted || attempt >= DUMP_ATTEMPTS {
                return Ok(replies.messages);
            }
            tracing::debug!("netlink: dump {seq} was interrupted by a change, asking again");
            attempt += 1;
        }
    }

    /// Sends `message` to the kernel under a new sequence number, which it returns.
    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.requests.send_to(&bytes, &SocketAddr::new(0, 0), 0)?;
        Ok(self.seq)
    }
}

/// Reads one datagram into `buf`, growing it first if the datagram is larger, so
/// nothing is cut off.
fn receive<'b>(socket: &Socket, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
    loop {
        // With MSG_TRUNC the kernel returns the datagram's full length even though
        // nothing is copied; MSG_PEEK leaves it queued for the read below.
        let mut nothing: &mut [u8] = &mut [];
        let size = match socket.recv(&mut nothing, libc::MSG_PEEK | libc::MSG_TRUNC) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => result?,
        };
        if size > buf.len() {
            buf.resize(size, 0);
        }
        let len = match socket.recv(&mut buf.as_mut_slice(), 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => result?,
        };
        return Ok(&buf[..len.min(buf.len())]);
    }
}

/// One reply message to a request: its type and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reply {
    kind: u16,
    payload: Vec<u8>,
}

/// The replies to one request so far.
#[derive(Debug, Default)]
struct Replies {
    messages: Vec<Reply>,
    /// The kernel flagged the dump inconsistent (`NLM_F_DUMP_INTR`).
    interrupted: bool,
}

/// Adds the replies to request `seq` in `datagram` to `replies`; returns whether the
/// reply is complete: `NLMSG_DONE` ends a dump, a message without `NLM_F_MULTI` a
/// single answer, `NLMSG_ERROR` either (as an error unless it is an acknowledgement).
fn absorb(datagram: &[u8], seq: u32, replies: &mut Replies) -> io::Result<bool> {
    for frame in frames(datagram) {
        let frame = frame?;
        if frame.seq != seq {
            // What is left of an earlier request's reply, cut short by an error.
            continue;
        }
        if frame.flags & NLM_F_DUMP_INTR != 0 {
            replies.interrupted = true;
        }
        match frame.kind {
            NLMSG_DONE => return done_status(frame.payload).map(|()| true),
            NLMSG_ERROR => return error_status(frame.payload).map(|()| true),
            NLMSG_NOOP => {}
            kind => {
                replies.messages.push(Reply {
                    kind,
                    payload: frame.payload.to_vec(),
                });
                if frame.flags & NLM_F_MULTIPART == 0 {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// One message of a datagram: its header's fields and its payload.
#[derive(Debug)]
struct Frame<'a> {
    kind: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

/// The messages of `datagram` in order. One whose length does not fit is an error and
/// ends the iteration: nothing after it can be delimited.
fn frames(datagram: &[u8]) -> impl Iterator<Item = io::Result<Frame<'_>>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match NetlinkBuffer::new_checked(rest) {
            Ok(buffer) => {
                let frame = Frame {
                    kind: buffer.message_type(),
                    flags: buffer.flags(),
                    seq: buffer.sequence_number(),
                    payload: buffer.payload(),
                };
                // Messages start on 4-byte boundaries; the last may lack its padding.
                let next = (buffer.length() as usize).next_multiple_of(4);
                rest = rest.get(next..).unwrap_or_default();
                Some(Ok(frame))
            }
            Err(e) => {
                rest = &[];
                Some(Err(malformed(e)))
            }
        }
    })
}

fn malformed(e: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink message: {e}"),
    )
}

/// A kernel status code (0 or a negative errno) as a result.
fn status(code: i32) -> io::Result<()> {
    match code {
        0 => Ok(()),
        // `saturating_neg`: a forged i32::MIN must not overflow.
        code => Err(io::Error::from_raw_os_error(code.saturating_neg())),
    }
}

/// `NLMSG_DONE`'s payload: the dump's status, when the kernel includes one.
fn done_status(payload: &[u8]) -> io::Result<()> {
    if payload.is_empty() {
        return Ok(());
    }
    status(DoneBuffer::new_checked(payload).map_err(malformed)?.code())
}

/// `NLMSG_ERROR`'s payload: an error, or 0 for an acknowledgement.
fn error_status(payload: &[u8]) -> io::Result<()> {
    let code = ErrorBuffer::new_checked(payload).map_err(malformed)?.code();
    status(code.map_or(0, i32::from))
}

/// The links among `replies`.
fn links_in(replies: &[Reply]) -> impl Iterator<Item = Link> + '_ {
    replies
        .iter()
        .filter(|reply| reply.kind == libc::RTM_NEWLINK)
        .filter_map(|reply| parse_link(&reply.payload))
        .filter_map(|message| link_from(&message))
}

/// The addresses among `replies`, each with its interface's index.
fn addresses_in(replies: &[Reply]) -> impl Iterator<Item = (u32, IpAddr)> + '_ {
    replies
        .iter()
        .filter(|reply| reply.kind == libc::RTM_NEWADDR)
        .filter_map(|reply| parse_address(&reply.payload))
        .filter_map(|message| Some((message.header.index, address_from(&message)?)))
}

/// Adds the changes the notifications in `datagram` report to `out`.
fn changes_in(datagram: &[u8], out: &mut Vec<Change>) {
    for frame in frames(datagram) {
        match frame {
            Ok(frame) => out.extend(change_from(frame.kind, frame.payload)),
            Err(e) => {
                // The rest of this datagram cannot be delimited; later ones can.
                tracing::warn!("netlink: skipping the rest of a notification: {e}");
                break;
            }
        }
    }
}

/// The change a notification reports, if it is one this module follows.
fn change_from(kind: u16, payload: &[u8]) -> Option<Change> {
    match kind {
        libc::RTM_NEWLINK => link_from(&parse_link(payload)?).map(Change::Link),
        libc::RTM_DELLINK => {
            let message = parse_link(payload)?;
            let name = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    LinkAttribute::IfName(name) => Some(name.clone()),
                    _ => None,
                });
            Some(Change::LinkGone {
                ifindex: message.header.index,
                name: name.unwrap_or_default(),
            })
        }
        libc::RTM_NEWADDR | libc::RTM_DELADDR => {
            let header = AddressHeader::parse(payload).ok()?;
            Some(Change::Addresses {
                ifindex: header.index,
            })
        }
        _ => None,
    }
}

/// Decodes an `RTM_NEWLINK` or `RTM_DELLINK` payload, keeping only [`LINK_ATTRIBUTES`].
///
/// Messages of a family other than `AF_UNSPEC` are not link reports: a bridge sends
/// `AF_BRIDGE` ones about its ports to the same group, and its `RTM_DELLINK` only means
/// a port left the bridge. Decoding attribute by attribute, and only the ones read,
/// keeps one the crate cannot parse (nested bond, VF or bridge data from a newer
/// kernel) from hiding the whole link, and skips the cost of the statistics.
fn parse_link(payload: &[u8]) -> Option<LinkMessage> {
    let header = LinkHeader::parse(payload).ok()?;
    if header.interface_family != AddressFamily::Unspec {
        return None;
    }
    let mut message = LinkMessage::default();
    for nla in NlasIterator::new(payload.get(IFINFOMSG_LEN..)?) {
        let Ok(nla) = nla else { break };
        if !LINK_ATTRIBUTES.contains(&nla.kind()) {
            continue;
        }
        match LinkAttribute::parse_with_param(&nla, header.interface_family) {
            Ok(attribute) => message.attributes.push(attribute),
            Err(e) => tracing::debug!("netlink: skipping link attribute {}: {e}", nla.kind()),
        }
    }
    message.header = header;
    Some(message)
}

/// Decodes an `RTM_NEWADDR` payload, keeping only [`ADDRESS_ATTRIBUTES`] (as
/// [`parse_link`] does, and for the same reasons).
fn parse_address(payload: &[u8]) -> Option<AddressMessage> {
    let header = AddressHeader::parse(payload).ok()?;
    let mut message = AddressMessage::default();
    for nla in NlasIterator::new(payload.get(IFADDRMSG_LEN..)?) {
        let Ok(nla) = nla else { break };
        if !ADDRESS_ATTRIBUTES.contains(&nla.kind()) {
            continue;
        }
        match AddressAttribute::parse(&nla) {
            Ok(attribute) => message.attributes.push(attribute),
            Err(e) => tracing::debug!("netlink: skipping address attribute {}: {e}", nla.kind()),
        }
    }
    message.header = header;
    Some(message)
}

/// The [`Link`] a link message describes; `None` if it lacks an index, a name or an
/// MTU, which the kernel always sends.
fn link_from(message: &LinkMessage) -> Option<Link> {
    let (mut name, mut mtu, mut mac, mut max_mtu, mut xdp_prog_id) = (None, None, None, None, None);
    let mut alias = None;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(value) => name = Some(value.clone()),
            LinkAttribute::Mtu(value) => mtu = Some(*value),
            // Text up to its first NUL, as the kernel stores it; empty is none.
            LinkAttribute::IfAlias(value) => {
                let text = value.split('\0').next().unwrap_or_default();
                alias = (!text.is_empty()).then(|| text.to_owned());
            }
            LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            // 0 is what devices without a limit (lo, tun) report.
            LinkAttribute::MaxMtu(value) => max_mtu = Some(*value).filter(|&max| max > 0),
            LinkAttribute::Xdp(xdp) => {
                xdp_prog_id = xdp.iter().find_map(|x| match x {
                    LinkXdp::ProgId(id) if *id > 0 => Some(*id),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    let flags = message.header.flags;
    let ifindex = message.header.index;
    (ifindex != 0).then_some(())?;
    Some(Link {
        ifindex,
        name: name?,
        mac,
        mtu: mtu?,
        admin_up: flags.contains(LinkFlags::Up),
        oper_up: flags.intersects(LinkFlags::LowerUp | LinkFlags::Running),
        max_mtu,
        xdp_prog_id,
        alias,
    })
}

/// The interface's own address an address message gives, if it gives one of its
/// family.
fn address_from(message: &AddressMessage) -> Option<IpAddr> {
    let (mut local, mut address) = (None, None);
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; with a point-to-point peer IFA_ADDRESS
    // is the peer's. IPv6 sends IFA_LOCAL only in that case, so the rule holds for both.
    let ip = local.or(address)?;
    let family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    (message.header.family == family).then_some(ip)
}

/// The decoders [`Netlink`] runs on what the kernel sends, without its sockets, for the
/// fuzz targets (`fuzz/fuzz_targets/netlink.rs`). Not an API: hidden from the
/// documentation, it changes with this module.
#[doc(hidden)]
pub mod fuzzing {
    use std::{io, net::IpAddr};

    use super::{Change, Link, Replies};

    /// The changes a datagram from the multicast socket reports, as
    /// [`Netlink::changes`](super::Netlink::changes) decodes them.
    pub fn notifications(datagram: &[u8]) -> Vec<Change> {
        let mut out = Vec::new();
        super::changes_in(datagram, &mut out);
        out
    }

    /// A datagram answering request `seq`, read as the requests read it: whether it
    /// completes the answer (or the error that ends it), then the links and the
    /// addresses (interface index, address) of the messages it adds.
    pub fn reply(datagram: &[u8], seq: u32) -> (io::Result<bool>, Vec<Link>, Vec<(u32, IpAddr)>) {
        let mut replies = Replies::default();
        let complete = super::absorb(datagram, seq, &mut replies);
        let links = super::links_in(&replies.messages).collect();
        let addresses = super::addresses_in(&replies.messages).collect();
        (complete, links, addresses)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, Ipv6Addr},
        time::{Duration, Instant},
    };

    use super::*;

    fn link_message(flags: LinkFlags, attributes: Vec<LinkAttribute>) -> LinkMessage {
        let mut message = LinkMessage::default();
        message.header.index = 7;
        message.header.flags = flags;
        message.attributes = attributes;
        message
    }

    fn veth_attributes() -> Vec<LinkAttribute> {
        vec![
            LinkAttribute::IfName("hp-veth0".to_owned()),
            LinkAttribute::Mtu(1500),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
            LinkAttribute::MaxMtu(65535),
            LinkAttribute::TxQueueLen(1000),
        ]
    }

    /// `message`'s payload as the kernel would send it.
    fn bytes_of(message: &impl netlink_packet_core::Emitable) -> Vec<u8> {
        let mut bytes = vec![0; message.buffer_len()];
        message.emit(&mut bytes);
        bytes
    }

    /// One netlink message: header with `kind`, `flags`, `seq`, then `payload`, padded.
    fn frame(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = 16 + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(len.next_multiple_of(4), 0);
        m
    }

    #[test]
    fn loopback_is_listed_found_by_name_and_has_its_address() {
        let mut netlink = Netlink::open().unwrap();
        let links = netlink.links().unwrap();
        let lo = links.iter().find(|link| link.name == "lo").unwrap();
        assert_eq!(lo.ifindex, 1);
        assert_eq!(lo.mtu, 65536);
        assert!(lo.admin_up);
        assert_eq!(netlink.link_by_name("lo").unwrap().as_ref(), Some(lo));
        assert_eq!(netlink.link_by_name("hp-nosuchdev").unwrap(), None);
        assert_eq!(
            netlink.link_by_name("").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let addresses = netlink.addresses(1).unwrap();
        assert!(
            addresses.contains(&IpAddr::from(Ipv4Addr::LOCALHOST)),
            "{addresses:?}"
        );
        // A second dump on the same socket works too (sequence numbers move on).
        assert_eq!(netlink.links().unwrap().len(), links.len());
    }

    #[test]
    fn changes_do_not_block() {
        let mut netlink = Netlink::open().unwrap();
        let start = Instant::now();
        netlink.changes().unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(format!("{netlink:?}").starts_with("Netlink"));
    }

    #[test]
    fn link_messages_convert_to_links() {
        let up = LinkFlags::Up | LinkFlags::Broadcast | LinkFlags::Running | LinkFlags::LowerUp;
        let link = link_from(&link_message(up, veth_attributes())).unwrap();
        assert_eq!(
            link,
            Link {
                ifindex: 7,
                name: "hp-veth0".to_owned(),
                mac: Some([2, 0, 0, 0, 0, 1]),
                mtu: 1500,
                admin_up: true,
                oper_up: true,
                max_mtu: Some(65535),
                xdp_prog_id: None,
                alias: None,
            }
        );
        // An alias (hairpin-cni names the pod there); an empty one is none.
        let mut aliased = veth_attributes();
        aliased.push(LinkAttribute::IfAlias("cni c0ffee net1".to_owned()));
        let link = link_from(&link_message(up, aliased)).unwrap();
        assert_eq!(link.alias.as_deref(), Some("cni c0ffee net1"));
        for none in ["", "\0\0\0"] {
            let mut empty = veth_attributes();
            empty.push(LinkAttribute::IfAlias(none.to_owned()));
            assert_eq!(link_from(&link_message(up, empty)).unwrap().alias, None);
        }
        let mut nul = veth_attributes();
        nul.push(LinkAttribute::IfAlias("pod\0rest".to_owned()));
        assert_eq!(
            link_from(&link_message(up, nul)).unwrap().alias.as_deref(),
            Some("pod")
        );
        // Up, but no carrier (a veth whose peer is down).
        let no_carrier = link_from(&link_message(LinkFlags::Up, veth_attributes())).unwrap();
        assert!(no_carrier.admin_up && !no_carrier.oper_up);
        // Carrier without IFF_RUNNING (dormant) still counts; admin down is neither.
        let dormant = LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Dormant;
        assert!(
            link_from(&link_message(dormant, veth_attributes()))
                .unwrap()
                .oper_up
        );
        let down = link_from(&link_message(LinkFlags::Broadcast, veth_attributes())).unwrap();
        assert!(!down.admin_up && !down.oper_up);
        // Like lo without IFLA_ADDRESS: no MAC; and max MTU 0, meaning no limit.
        let lo = link_from(&link_message(
            LinkFlags::Up | LinkFlags::Loopback | LinkFlags::Running,
            vec![
                LinkAttribute::IfName("lo".to_owned()),
                LinkAttribute::Mtu(65536),
                LinkAttribute::MaxMtu(0),
            ],
        ))
        .unwrap();
        assert_eq!((lo.mac, lo.max_mtu, lo.oper_up), (None, None, true));
        // No name, no MTU or index 0: not a usable report.
        assert_eq!(
            link_from(&link_message(up, vec![LinkAttribute::Mtu(1500)])),
            None
        );
        assert_eq!(
            link_from(&link_message(
                up,
                vec![LinkAttribute::IfName("x".to_owned())]
            )),
            None
        );
        let mut no_index = link_message(up, veth_attributes());
        no_index.header.index = 0;
        assert_eq!(link_from(&no_index), None);
    }

    #[test]
    fn link_notifications_decode_from_the_wire() {
        let up = LinkFlags::Up | LinkFlags::Running | LinkFlags::LowerUp;
        let message = link_message(up, veth_attributes());
        let expected = link_from(&message).unwrap();
        let payload = bytes_of(&message);
        assert_eq!(
            change_from(libc::RTM_NEWLINK, &payload),
            Some(Change::Link(expected))
        );
        assert_eq!(
            change_from(libc::RTM_DELLINK, &payload),
            Some(Change::LinkGone {
                ifindex: 7,
                name: "hp-veth0".to_owned()
            })
        );
        // A bridge's AF_BRIDGE report about a port is not a link change.
        let mut port = message.clone();
        port.header.interface_family = AddressFamily::Bridge;
        assert_eq!(change_from(libc::RTM_DELLINK, &bytes_of(&port)), None);
        // Truncated: no header, no change (and no panic).
        assert_eq!(change_from(libc::RTM_NEWLINK, &payload[..10]), None);
        assert_eq!(change_from(libc::RTM_NEWROUTE, &payload), None);
    }

    fn address_message(family: AddressFamily, attributes: Vec<AddressAttribute>) -> AddressMessage {
        let mut message = AddressMessage::default();
        message.header.family = family;
        message.header.index = 5;
        message.attributes = attributes;
        message
    }

    #[test]
    fn address_messages_give_the_interface_s_own_address() {
        let own = IpAddr::from([198, 18, 0, 1]);
        let peer = IpAddr::from([198, 18, 0, 2]);
        let v4 = address_message(
            AddressFamily::Inet,
            vec![
                AddressAttribute::Address(peer),
                AddressAttribute::Local(own),
            ],
        );
        assert_eq!(address_from(&v4), Some(own));
        let ip6 = IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let v6 = address_message(AddressFamily::Inet6, vec![AddressAttribute::Address(ip6)]);
        assert_eq!(address_from(&v6), Some(ip6));
        // An address of the other family, or none at all, gives nothing.
        let mixed = address_message(AddressFamily::Inet6, vec![AddressAttribute::Local(own)]);
        assert_eq!(address_from(&mixed), None);
        assert_eq!(
            address_from(&address_message(AddressFamily::Inet, vec![])),
            None
        );
        // From the wire, and as a notification.
        let parsed = parse_address(&bytes_of(&v4)).unwrap();
        assert_eq!(address_from(&parsed), Some(own));
        assert_eq!(
            change_from(libc::RTM_DELADDR, &bytes_of(&v4)),
            Some(Change::Addresses { ifindex: 5 })
        );
    }

    #[test]
    fn replies_are_matched_by_sequence_and_end_at_done_or_error() {
        let multi = NLM_F_MULTIPART;
        let mut replies = Replies::default();
        // A stale reply (seq 6) is skipped; seq 7's dump goes on until NLMSG_DONE.
        let mut datagram = frame(libc::RTM_NEWLINK, multi, 6, &[1; 16]);
        datagram.extend(frame(libc::RTM_NEWLINK, multi, 7, &[2; 16]));
        assert!(!absorb(&datagram, 7, &mut replies).unwrap());
        let mut datagram = frame(libc::RTM_NEWLINK, multi | NLM_F_DUMP_INTR, 7, &[3; 16]);
        datagram.extend(frame(NLMSG_DONE, multi, 7, &0i32.to_ne_bytes()));
        assert!(absorb(&datagram, 7, &mut replies).unwrap());
        let payloads: Vec<u8> = replies.messages.iter().map(|r| r.payload[0]).collect();
        assert_eq!(payloads, [2, 3]);
        assert!(replies.interrupted);
        // A single answer (no NLM_F_MULTI) is complete by itself.
        let mut single = Replies::default();
        assert!(absorb(&frame(libc::RTM_NEWLINK, 0, 8, &[4; 16]), 8, &mut single).unwrap());
        // NLMSG_ERROR carries a negative errno; 0 is an acknowledgement.
        let mut error = (-libc::ENODEV).to_ne_bytes().to_vec();
        error.extend(frame(libc::RTM_GETLINK, NLM_F_REQUEST, 9, &[]));
        let err = absorb(
            &frame(NLMSG_ERROR, 0, 9, &error),
            9,
            &mut Replies::default(),
        );
        assert_eq!(err.unwrap_err().raw_os_error(), Some(libc::ENODEV));
        let ack = frame(NLMSG_ERROR, 0, 9, &0i32.to_ne_bytes());
        assert!(absorb(&ack, 9, &mut Replies::default()).unwrap());
        // A failed dump reports its error in NLMSG_DONE.
        let done = frame(NLMSG_DONE, multi, 9, &(-libc::EINVAL).to_ne_bytes());
        let err = absorb(&done, 9, &mut Replies::default());
        assert_eq!(err.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        // Malformed: a length beyond the datagram, a short error, i32::MIN.
        let mut truncated = frame(libc::RTM_NEWLINK, multi, 7, &[0; 16]);
        truncated.truncate(20);
        let err = absorb(&truncated, 7, &mut Replies::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let short = frame(NLMSG_ERROR, 0, 9, &[0xff; 2]);
        assert!(absorb(&short, 9, &mut Replies::default()).is_err());
        let forged = frame(NLMSG_ERROR, 0, 9, &i32::MIN.to_ne_bytes());
        assert!(absorb(&forged, 9, &mut Replies::default()).is_err());
    }
}
