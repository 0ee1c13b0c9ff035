//! The links, addresses and routes hairpin-cni makes, over rtnetlink (`rtnetlink`, on
//! a single-threaded tokio runtime: each call runs to completion before the next).
//!
//! An [`Rtnl`] acts in the network namespace it was opened in: open it on a thread
//! inside the pod's namespace ([`crate::netns::within`]) to work there.
use std::{fs::File, net::IpAddr, os::fd::AsRawFd as _};

use futures_util::TryStreamExt as _;
use hairpin::wire::Mac;
use rtnetlink::{
    Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
    packet_route::{
        address::{AddressAttribute, AddressMessage},
        link::{InfoData, InfoVeth, LinkAttribute, LinkMessage},
    },
};
use tokio::runtime::Runtime;

/// A failed netlink request: what was asked and the kernel's (or the library's) answer.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {source}")]
pub struct RtnlError {
    doing: String,
    #[source]
    source: rtnetlink::Error,
}

fn context(doing: impl FnOnce() -> String) -> impl FnOnce(rtnetlink::Error) -> RtnlError {
    move |source| RtnlError {
        doing: doing(),
        source,
    }
}

/// A route netlink connection and the runtime that drives it.
#[derive(Debug)]
pub struct Rtnl {
    runtime: Runtime,
    handle: Handle,
}

/// A link's index, MAC and MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkId {
    /// Its index.
    pub index: u32,
    /// Its hardware address.
    pub mac: Option<Mac>,
    /// Its MTU.
    pub mtu: Option<u32>,
}

impl Rtnl {
    /// Opens a connection in the calling thread's network namespace.
    pub fn open() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let handle = runtime.block_on(async {
            let (connection, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(connection);
            Ok::<_, std::io::Error>(handle)
        })?;
        Ok(Self { runtime, handle })
    }

    /// The link named `name`, or `None` when there is none.
    pub fn link(&self, name: &str) -> Result<Option<LinkId>, RtnlError> {
        let found = self.runtime.block_on(async {
            self.handle
                .link()
                .get()
                .match_name(name.to_owned())
                .execute()
                .try_next()
                .await
        });
        match found {
            Ok(message) => Ok(message.map(|m| link_id(&m))),
            Err(rtnetlink::Error::NetlinkError(e)) if -e.raw_code() == libc::ENODEV => Ok(None),
            Err(e) => Err(context(|| format!("looking up {name}"))(e)),
        }
    }

    /// Makes a veth pair: `host` here, up, and `peer` in the namespace open at `netns`
    /// (down), with `mac` if given; both ends of MTU `mtu` if given.
    pub fn add_veth(
        &self,
        host: &str,
        peer: &str,
        netns: &File,
        mac: Option<Mac>,
        mtu: Option<u32>,
    ) -> Result<(), RtnlError> {
        let mut pod_end = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_owned())
            .setns_by_fd(netns.as_raw_fd());
        if let Some(mac) = mac {
            pod_end = pod_end.address(mac.0.to_vec());
        }
        let mut host_end = LinkVeth::new(host, peer);
        if let Some(mtu) = mtu {
            pod_end = pod_end.mtu(mtu);
            host_end = host_end.mtu(mtu);
        }
        let message = host_end
            .set_info_data(InfoData::Veth(InfoVeth::Peer(pod_end.build())))
            .up()
            .build();
        self.runtime
            .block_on(self.handle.link().add(message).execute())
            .map_err(context(|| {
                format!("creating veth {host} (peer {peer} in the pod)")
            }))
    }

    /// Deletes link `name`; `false` if there was none.
    pub fn delete(&self, name: &str) -> Result<bool, RtnlError> {
        let Some(link) = self.link(name)? else {
            return Ok(false);
        };
        match self
            .runtime
            .block_on(self.handle.link().del(link.index).execute())
        {
            Ok(()) => Ok(true),
            // Gone in between (the pod's namespace went, taking the pair with it).
            Err(rtnetlink::Error::NetlinkError(e)) if -e.raw_code() == libc::ENODEV => Ok(false),
            Err(e) => Err(context(|| format!("deleting {name}"))(e)),
        }
    }

    /// Sets the alias (`ip link set NAME alias TEXT`) of link `name`.
    pub fn set_alias(&self, name: &str, alias: &str) -> Result<(), RtnlError> {
        let message = LinkUnspec::new_with_name(name).alias(alias).build();
        self.runtime
            .block_on(self.handle.link().set(message).execute())
            .map_err(context(|| format!("setting {name}'s alias")))
    }

    /// Sets link `index` up.
    pub fn set_up(&self, index: u32) -> Result<(), RtnlError> {
        let message = LinkUnspec::new_with_index(index).up().build();
        self.runtime
            .block_on(self.handle.link().set(message).execute())
            .map_err(context(|| format!("setting link {index} up")))
    }

    /// Adds `address/prefix` to link `index`.
    pub fn add_address(&self, index: u32, address: IpAddr, prefix: u8) -> Result<(), RtnlError> {
        self.runtime
            .block_on(self.handle.address().add(index, address, prefix).execute())
            .map_err(context(|| format!("adding {address}/{prefix}")))
    }

    /// The addresses on link `index`, with their prefix lengths.
    pub fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, RtnlError> {
        let messages: Vec<AddressMessage> = self
            .runtime
            .block_on(
                self.handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect(),
            )
            .map_err(context(|| format!("listing the addresses of link {index}")))?;
        Ok(messages
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some((*ip, m.header.prefix_len)),
                    _ => None,
                })
            })
            .collect())
    }

    /// Adds a route to `destination/prefix` out of link `index`, via `gateway` if given.
    pub fn add_route(
        &self,
        index: u32,
        destination: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
    ) -> Result<(), RtnlError> {
        let doing = || match gateway {
            Some(gw) => format!("adding a route to {destination}/{prefix} via {gw}"),
            None => format!("adding a route to {destination}/{prefix}"),
        };
        let invalid = |e: String| RtnlError {
            doing: doing(),
            source: rtnetlink::Error::InvalidNla(e),
        };
        let mut route = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(destination, prefix)
            .map_err(|e| invalid(e.to_string()))?
            .output_interface(index);
        if let Some(gw) = gateway {
            route = route.gateway(gw).map_err(|e| invalid(e.to_string()))?;
        }
        self.runtime
            .block_on(self.handle.route().add(route.build()).execute())
            .map_err(context(doing))
    }
}

fn link_id(message: &LinkMessage) -> LinkId {
    let mac = message.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok().map(Mac),
        _ => None,
    });
    let mtu = message.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    });
    LinkId {
        index: message.header.index,
        mac,
        mtu,
    }
}
