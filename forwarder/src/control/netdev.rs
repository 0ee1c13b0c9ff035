//! The kernel's `netdev` generic netlink family: what a device can do with XDP.
//!
//! The fast path may send to a port only if the port's driver takes frames redirected
//! from another device (`NETDEV_XDP_ACT_NDO_XMIT`); otherwise the kernel drops them
//! after the XDP program has let go. A veth takes them only while its peer receives
//! through NAPI (an XDP program or GRO on the peer), a macvlan never does, and the
//! answer changes as the other end changes: the control plane asks again whenever it
//! publishes the fast path's ports.
//!
//! Messages are built and decoded with `netlink-packet-generic`; the family's id is
//! resolved once, by name, over the same socket.
use std::io;

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    Nla, NlaBuffer, NlasIterator, Parseable, ParseableParametrized, parse_u32, parse_u64,
};
use netlink_packet_generic::{
    GenlFamily, GenlHeader, GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

/// `NETDEV_XDP_ACT_NDO_XMIT`: the driver takes frames redirected to it.
pub const XDP_ACT_NDO_XMIT: u64 = 1 << 2;
/// `NETDEV_XDP_ACT_XSK_ZEROCOPY`: the driver binds AF_XDP sockets zero-copy.
pub const XDP_ACT_XSK_ZEROCOPY: u64 = 1 << 3;

const FAMILY: &str = "netdev";
const CMD_DEV_GET: u8 = 1;
const A_DEV_IFINDEX: u16 = 1;
const A_DEV_XDP_FEATURES: u16 = 3;
const A_DEV_XDP_ZC_MAX_SEGS: u16 = 4;

/// What a device does with XDP and AF_XDP, as the kernel says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceXdp {
    /// `NETDEV_XDP_ACT_*` bits.
    pub features: u64,
    /// How many buffers its driver joins into one frame for a zero-copy socket bound
    /// with `XDP_USE_SG` (1: none; the kernel says only for zero-copy drivers).
    pub zc_max_segs: u32,
}

/// An attribute of a `netdev` device message.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DevAttr {
    Ifindex(u32),
    XdpFeatures(u64),
    XdpZcMaxSegs(u32),
    Other(DefaultNla),
}

impl Nla for DevAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Ifindex(_) | Self::XdpZcMaxSegs(_) => 4,
            Self::XdpFeatures(_) => 8,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Ifindex(_) => A_DEV_IFINDEX,
            Self::XdpFeatures(_) => A_DEV_XDP_FEATURES,
            Self::XdpZcMaxSegs(_) => A_DEV_XDP_ZC_MAX_SEGS,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Ifindex(v) | Self::XdpZcMaxSegs(v) => {
                buffer[..4].copy_from_slice(&v.to_ne_bytes());
            }
            Self::XdpFeatures(v) => buffer[..8].copy_from_slice(&v.to_ne_bytes()),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DevAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let value = buf.value();
        Ok(match buf.kind() {
            A_DEV_IFINDEX => Self::Ifindex(parse_u32(value)?),
            A_DEV_XDP_FEATURES => Self::XdpFeatures(parse_u64(value)?),
            A_DEV_XDP_ZC_MAX_SEGS => Self::XdpZcMaxSegs(parse_u32(value)?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl DeviceXdp {
    /// From a device answer's attributes (`None` without the features).
    fn from_attrs(attrs: &[DevAttr]) -> Option<Self> {
        let features = attrs.iter().find_map(|a| match a {
            DevAttr::XdpFeatures(f) => Some(*f),
            _ => None,
        })?;
        let zc_max_segs = attrs
            .iter()
            .find_map(|a| match a {
                DevAttr::XdpZcMaxSegs(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(1);
        Some(Self {
            features,
            zc_max_segs,
        })
    }
}

/// A `netdev` device request or answer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DevMessage {
    cmd: u8,
    attrs: Vec<DevAttr>,
}

impl GenlFamily for DevMessage {
    fn family_name() -> &'static str {
        FAMILY
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        1
    }
}

impl Emitable for DevMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for DevMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| DevAttr::parse(&nla)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            cmd: header.cmd,
            attrs,
        })
    }
}

/// A socket to the `netdev` family, in the namespace it was opened in.
pub struct Netdev {
    socket: Socket,
    family: u16,
    seq: u32,
}

impl std::fmt::Debug for Netdev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netdev")
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl Netdev {
    /// Opens the socket and resolves the family (kernels before 6.3 have none).
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let mut netdev = Self {
            socket,
            family: 0,
            seq: 0,
        };
        let answer: GenlMessage<GenlCtrl> = netdev.ask(GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY.to_owned())],
        }))?;
        netdev.family = answer
            .payload
            .nlas
            .iter()
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| io::Error::other("the kernel named no id for the netdev family"))?;
        Ok(netdev)
    }

    /// What device `ifindex` does with XDP.
    pub fn device(&mut self, ifindex: u32) -> io::Result<DeviceXdp> {
        let mut request = GenlMessage::from_payload(DevMessage {
            cmd: CMD_DEV_GET,
            attrs: vec![DevAttr::Ifindex(ifindex)],
        });
        request.set_resolved_family_id(self.family);
        let answer: GenlMessage<DevMessage> = self.ask(request)?;
        DeviceXdp::from_attrs(&answer.payload.attrs)
            .ok_or_else(|| io::Error::other(format!("no XDP features for ifindex {ifindex}")))
    }

    /// The XDP features (`NETDEV_XDP_ACT_*` bits) of device `ifindex`.
    pub fn xdp_features(&mut self, ifindex: u32) -> io::Result<u64> {
        self.device(ifindex).map(|d| d.features)
    }

    /// The XDP features of every device of this network namespace, by ifindex: one
    /// request, however many devices.
    pub fn all_xdp_features(&mut self) -> io::Result<Vec<(u32, u64)>> {
        let mut request = GenlMessage::from_payload(DevMessage {
            cmd: CMD_DEV_GET,
            attrs: Vec::new(),
        });
        request.set_resolved_family_id(self.family);
        request.finalize();
        let mut message = NetlinkMessage::from(request);
        self.seq = self.seq.wrapping_add(1);
        message.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        message.header.sequence_number = self.seq;
        message.finalize();
        let mut buf = vec![0u8; message.buffer_len()];
        message.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut devices = Vec::new();
        loop {
            let (bytes, _) = self.socket.recv_from_full()?;
            // A dump answers with several messages to a read, DONE after the last.
            let mut at = 0;
            while let Some(len) = bytes
                .get(at..at + 4)
                .map(|l| u32::from_ne_bytes(l.try_into().expect("4 bytes")) as usize)
                .filter(|&len| len >= 16 && at + len <= bytes.len())
            {
                let answer =
                    NetlinkMessage::<GenlMessage<DevMessage>>::deserialize(&bytes[at..at + len])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                at += len.next_multiple_of(4);
                if answer.header.sequence_number != self.seq {
                    continue;
                }
                match answer.payload {
                    NetlinkPayload::InnerMessage(inner) => {
                        let attrs = &inner.payload.attrs;
                        let ifindex = attrs.iter().find_map(|a| match a {
                            DevAttr::Ifindex(i) => Some(*i),
                            _ => None,
                        });
                        if let (Some(ifindex), Some(device)) =
                            (ifindex, DeviceXdp::from_attrs(attrs))
                        {
                            devices.push((ifindex, device.features));
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(devices),
                    NetlinkPayload::Error(e) => return Err(e.to_io()),
                    _ => {}
                }
            }
        }
    }

    /// Sends one request and reads its one answer.
    fn ask<F>(&mut self, mut request: GenlMessage<F>) -> io::Result<GenlMessage<F>>
    where
        F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
    {
        request.finalize();
        let mut message = NetlinkMessage::from(request);
        self.seq = self.seq.wrapping_add(1);
        message.header.flags = NLM_F_REQUEST;
        message.header.sequence_number = self.seq;
        message.finalize();
        let mut buf = vec![0u8; message.buffer_len()];
        message.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        loop {
            let (bytes, _) = self.socket.recv_from_full()?;
            let answer = NetlinkMessage::<GenlMessage<F>>::deserialize(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            if answer.header.sequence_number != self.seq {
                continue;
            }
            return match answer.payload {
                NetlinkPayload::InnerMessage(inner) => Ok(inner),
                NetlinkPayload::Error(e) => Err(e.to_io()),
                other => Err(io::Error::other(format!(
                    "unexpected netlink answer: {other:?}"
                ))),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_request_round_trips() {
        let message = DevMessage {
            cmd: CMD_DEV_GET,
            attrs: vec![
                DevAttr::Ifindex(7),
                DevAttr::XdpFeatures(0x7f),
                DevAttr::XdpZcMaxSegs(5),
            ],
        };
        let mut buf = vec![0u8; message.buffer_len()];
        message.emit(&mut buf);
        let back = DevMessage::parse_with_param(
            &buf[..],
            GenlHeader {
                cmd: CMD_DEV_GET,
                version: 1,
            },
        )
        .unwrap();
        assert_eq!(back, message);
        assert_eq!(
            DeviceXdp::from_attrs(&back.attrs),
            Some(DeviceXdp {
                features: 0x7f,
                zc_max_segs: 5
            })
        );
    }

    #[test]
    fn a_device_that_names_no_zero_copy_segments_joins_none() {
        let attrs = [DevAttr::Ifindex(7), DevAttr::XdpFeatures(0x3)];
        assert_eq!(
            DeviceXdp::from_attrs(&attrs).map(|d| d.zc_max_segs),
            Some(1)
        );
        assert_eq!(DeviceXdp::from_attrs(&[DevAttr::Ifindex(7)]), None);
    }

    #[test]
    fn loopback_takes_no_redirected_frames() {
        // Unprivileged: the netdev family answers anyone. Loopback has no XDP driver
        // support, so it has no NDO_XMIT.
        let Ok(mut netdev) = Netdev::open() else {
            panic!("the netdev generic netlink family is missing (kernel before 6.3?)");
        };
        let features = netdev.xdp_features(1).unwrap();
        assert_eq!(features & XDP_ACT_NDO_XMIT, 0, "{features:#x}");
        // The dump names it too, with the same features, each device once.
        let all = netdev.all_xdp_features().unwrap();
        assert!(all.contains(&(1, features)), "{all:?}");
        let ifindexes: std::collections::BTreeSet<u32> = all.iter().map(|d| d.0).collect();
        assert_eq!(ifindexes.len(), all.len(), "{all:?}");
    }
}
