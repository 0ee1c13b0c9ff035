//! `hairpin-cni`: a CNI plugin (spec 1.0.0) that attaches a pod to the node's hairpin.
//!
//! ADD makes a veth pair, the pod's end moved into `CNI_NETNS` and named `CNI_IFNAME`,
//! gets addresses from the IPAM plugin the configuration names, and asks hairpin
//! (over its control socket) to attach the host end as a port with the attachment's
//! VLAN, reflective relay and anti-spoofing settings, and an IP source guard of the
//! addresses IPAM gave (unless `ip_guard` is off). DEL undoes all of it and succeeds
//! when there is nothing left to undo; CHECK verifies that it is all still there.
//! Errors are the spec's error result on stdout, with its codes ([`failure::code`]).
//!
//! The runtime (or Multus) runs it with `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME` and `CNI_PATH` in the environment and the network configuration on
//! stdin; the keys it reads are in [`attachment`].
mod attachment;
mod failure;
mod hairpin_client;
mod ipam;
mod link;
mod netns;

use std::{
    env,
    io::Read as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::exit,
    str::FromStr as _,
};

use cni_plugin::{
    Cni, Command, Inputs,
    macaddr::MacAddr,
    reply::{Interface, SuccessReply, VersionReply, reply},
};
use hairpin::wire::Mac;
use semver::Version;

use crate::{
    attachment::{Attachment, host_ifname},
    failure::Failure,
    hairpin_client::Hairpin,
    link::{LinkId, Rtnl},
};

/// The CNI versions whose results this plugin writes.
const SUPPORTED: [&str; 1] = ["1.0.0"];

fn main() {
    if env::var("CNI_COMMAND").as_deref() == Ok("VERSION") {
        version();
    }
    // Malformed input (environment, JSON) is answered and exits here.
    let inputs = match Cni::load().into_inputs() {
        Some(inputs) => inputs,
        None => unreachable!("VERSION is answered above"),
    };
    let cni_version = inputs.config.cni_version.clone();
    let outcome = if cni_version.major == 1 {
        match inputs.command {
            Command::Add => add(&inputs).map(Some),
            Command::Del => del(&inputs).map(|()| None),
            Command::Check => check(&inputs).map(|()| None),
            Command::Version => unreachable!("VERSION is answered above"),
        }
    } else {
        Err(Failure::incompatible_version(format!(
            "cniVersion {cni_version}: hairpin-cni speaks {}",
            SUPPORTED.join(", ")
        )))
    };
    match outcome {
        Ok(Some(result)) => reply(result),
        Ok(None) => exit(0),
        Err(failure) => {
            eprintln!("hairpin-cni: {failure}");
            reply(failure.into_reply(cni_version))
        }
    }
}

/// VERSION: the versions this plugin speaks (answered before any other parsing, so a
/// runtime can ask with any input).
fn version() -> ! {
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let asked = serde_json::from_str::<serde_json::Value>(&input)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .and_then(|v| Version::parse(&v).ok());
    let supported: Vec<Version> = SUPPORTED
        .iter()
        .map(|v| Version::parse(v).expect("a version"))
        .collect();
    reply(VersionReply {
        cni_version: asked.unwrap_or_else(|| supported[0].clone()),
        supported_versions: supported,
    })
}

/// The pieces of an ADD made so far, removed again if a later step fails.
struct Undo<'a> {
    inputs: &'a Inputs,
    host: &'a str,
    hairpin: Hairpin<'a>,
    rtnl: &'a Rtnl,
    veth: bool,
    ipam: bool,
    port: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        let warn = |f: Failure| eprintln!("hairpin-cni: undoing a failed ADD: {f}");
        if self.port {
            self.hairpin.del_port(self.host).unwrap_or_else(warn);
        }
        if self.veth
            && let Err(e) = self.rtnl.delete(self.host)
        {
            warn(Failure::io("deleting the veth", e));
        }
        if self.ipam {
            ipam::delegate("DEL", &self.inputs.config, &self.inputs.path)
                .map(drop)
                .unwrap_or_else(warn);
        }
    }
}

impl Undo<'_> {
    fn disarm(mut self) {
        (self.veth, self.ipam, self.port) = (false, false, false);
    }
}

fn netns_path(inputs: &Inputs) -> Result<&Path, Failure> {
    inputs
        .netns
        .as_deref()
        .ok_or_else(|| Failure::io("CNI_NETNS", "not set"))
}

fn rtnl() -> Result<Rtnl, Failure> {
    Rtnl::open().map_err(|e| Failure::io("opening a netlink socket", e))
}

fn add(inputs: &Inputs) -> Result<SuccessReply, Failure> {
    let attachment = Attachment::from_config(&inputs.config)?;
    let netns_path = netns_path(inputs)?;
    let netns = netns::open(netns_path)?;
    let host = host_ifname(&inputs.container_id, &inputs.ifname);
    let hairpin = Hairpin::new(&attachment.socket);
    // Asked first, so a hairpin that is not up yet leaves nothing behind.
    if hairpin.port(&host)?.is_some() {
        return Err(Failure::hairpin_refused(format!(
            "{host} is a port already: DEL this attachment first"
        )));
    }
    let rtnl = rtnl()?;
    if rtnl
        .link(&host)
        .map_err(|e| Failure::io("netlink", e))?
        .is_some()
    {
        return Err(Failure::io(
            format!("host interface {host}"),
            "exists already: DEL this attachment first",
        ));
    }
    let mut undo = Undo {
        inputs,
        host: &host,
        hairpin,
        rtnl: &rtnl,
        veth: true,
        ipam: false,
        port: false,
    };
    rtnl.add_veth(
        &host,
        &inputs.ifname,
        &netns,
        attachment.mac,
        attachment.mtu,
    )
    .map_err(|e| Failure::io("netlink", e))?;
    // Which pod the port is, for `hairpin show ports` and `ip link`.
    rtnl.set_alias(&host, &pod_alias(&inputs.container_id, &inputs.ifname))
        .map_err(|e| Failure::io("netlink", e))?;
    undo.ipam = true;
    let ipam = ipam::delegate("ADD", &inputs.config, &inputs.path)?;
    let pod = netns::within(&netns, || configure_pod(&inputs.ifname, ipam.as_ref()))?;
    let host_link = rtnl
        .link(&host)
        .map_err(|e| Failure::io("netlink", e))?
        .ok_or_else(|| Failure::io(format!("host interface {host}"), "gone"))?;
    undo.port = true;
    let addresses: Vec<IpAddr> = ipam
        .as_ref()
        .map(|r| r.ips.iter().map(|ip| ip.address.ip()).collect())
        .unwrap_or_default();
    hairpin.add_port(attachment.port_spec(&host, pod.mac, &addresses))?;
    carries_the_mtu(&hairpin, &host, &attachment)?;
    undo.disarm();
    Ok(result(inputs, netns_path, &host, host_link, pod, ipam))
}

/// The host end's alias: the container and its interface, which its name (a hash of
/// both) does not show.
fn pod_alias(container_id: &str, ifname: &str) -> String {
    format!("cni {container_id} {ifname}")
}

/// Fails when the pod's MTU makes frames longer than hairpin carries on its port (its
/// UMEM frame size, multi-buffer in its socket mode and kernel): a jumbo pod would
/// otherwise lose every long frame.
fn carries_the_mtu(
    hairpin: &Hairpin<'_>,
    host: &str,
    attachment: &Attachment,
) -> Result<(), Failure> {
    let Some(longest) = attachment.longest_frame() else {
        return Ok(());
    };
    let largest = hairpin
        .port(host)?
        .and_then(|p| p.largest_frame)
        .ok_or_else(|| {
            Failure::hairpin_refused(format!("{host}: hairpin did not say what it carries"))
        })?;
    if longest > largest {
        return Err(Failure::invalid_config(format!(
            "mtu {}: the pod's frames are up to {longest} bytes, hairpin carries {largest} on \
             {host} (see \"Jumbo frames\" in hairpin's README)",
            attachment.mtu.unwrap_or_default()
        )));
    }
    Ok(())
}

/// Inside the pod: the IPAM addresses and routes, link up. Offloads stay as the kernel
/// sets them: hairpin finishes the checksums the pod's stack leaves partial.
fn configure_pod(ifname: &str, ipam: Option<&SuccessReply>) -> Result<LinkId, Failure> {
    let rtnl = rtnl()?;
    let netlink = |e| Failure::io("netlink in the pod", e);
    let link = rtnl
        .link(ifname)
        .map_err(netlink)?
        .ok_or_else(|| Failure::io(format!("{ifname} in the pod"), "not there after creation"))?;
    if let Some(ipam) = ipam {
        for ip in &ipam.ips {
            rtnl.add_address(link.index, ip.address.ip(), ip.address.prefix())
                .map_err(netlink)?;
        }
    }
    rtnl.set_up(link.index).map_err(netlink)?;
    if let Some(ipam) = ipam {
        for route in &ipam.routes {
            // A route without its own gateway goes via the gateway of its family.
            let gateway = route.gw.or_else(|| {
                ipam.ips
                    .iter()
                    .filter_map(|ip| ip.gateway)
                    .find(|gw| gw.is_ipv4() == route.dst.is_ipv4())
            });
            rtnl.add_route(link.index, route.dst.ip(), route.dst.prefix(), gateway)
                .map_err(netlink)?;
        }
    }
    Ok(link)
}

fn mac_addr(mac: Option<Mac>) -> Option<MacAddr> {
    mac.and_then(|m| MacAddr::from_str(&m.to_string()).ok())
}

fn result(
    inputs: &Inputs,
    netns: &Path,
    host: &str,
    host_link: LinkId,
    pod: LinkId,
    ipam: Option<SuccessReply>,
) -> SuccessReply {
    let interfaces = vec![
        Interface {
            name: host.to_owned(),
            mac: mac_addr(host_link.mac),
            sandbox: PathBuf::new(),
        },
        Interface {
            name: inputs.ifname.clone(),
            mac: mac_addr(pod.mac),
            sandbox: netns.to_owned(),
        },
    ];
    let (mut ips, routes, dns) = match ipam {
        Some(r) => (r.ips, r.routes, r.dns),
        None => (
            Vec::new(),
            Vec::new(),
            inputs.config.dns.clone().unwrap_or_default(),
        ),
    };
    for ip in &mut ips {
        ip.interface = Some(1);
    }
    SuccessReply {
        cni_version: inputs.config.cni_version.clone(),
        interfaces,
        ips,
        routes,
        dns,
        specific: Default::default(),
    }
}

fn del(inputs: &Inputs) -> Result<(), Failure> {
    let attachment = Attachment::from_config(&inputs.config)?;
    let host = host_ifname(&inputs.container_id, &inputs.ifname);
    let hairpin = Hairpin::new(&attachment.socket);
    match hairpin.port(&host) {
        Ok(Some(_)) => hairpin.del_port(&host)?,
        Ok(None) => {}
        // A hairpin that is not running has no port to remove.
        Err(f) if f.code == failure::code::TRY_AGAIN_LATER => {
            eprintln!("hairpin-cni: {f}: removing the veth and the addresses only");
        }
        Err(f) => return Err(f),
    }
    rtnl()?
        .delete(&host)
        .map_err(|e| Failure::io("netlink", e))?;
    ipam::delegate("DEL", &inputs.config, &inputs.path)?;
    Ok(())
}

fn check(inputs: &Inputs) -> Result<(), Failure> {
    let attachment = Attachment::from_config(&inputs.config)?;
    let host = host_ifname(&inputs.container_id, &inputs.ifname);
    let port = Hairpin::new(&attachment.socket)
        .port(&host)?
        .ok_or_else(|| Failure::check_failed(format!("{host} is not a port of hairpin")))?;
    if port.state == "absent" {
        return Err(Failure::check_failed(format!(
            "hairpin's port {host} has no interface"
        )));
    }
    if port.hairpin != attachment.port.hairpin {
        return Err(Failure::check_failed(format!(
            "hairpin's port {host} has reflective relay {}, the configuration {}",
            on_off(port.hairpin),
            on_off(attachment.port.hairpin)
        )));
    }
    // The VLAN settings, as hairpin shows them.
    let want = attachment
        .port_spec(&host, None, &[])
        .check()
        .map_err(|e| Failure::invalid_config(e.to_string()))?
        .policy
        .vlans
        .map(|v| v.to_string());
    if port.vlans != want {
        return Err(Failure::check_failed(format!(
            "hairpin's port {host} has VLANs {}, the configuration {}",
            port.vlans.as_deref().unwrap_or("none"),
            want.as_deref().unwrap_or("none")
        )));
    }
    if rtnl()?
        .link(&host)
        .map_err(|e| Failure::io("netlink", e))?
        .is_none()
    {
        return Err(Failure::check_failed(format!(
            "host interface {host} is gone"
        )));
    }
    let prev = prev_addresses(inputs.config.prev_result.as_ref())?;
    let netns = netns::open(netns_path(inputs)?)?;
    let ifname = &inputs.ifname;
    let (pod, addresses) = netns::within(&netns, || {
        let rtnl = rtnl()?;
        let netlink = |e| Failure::io("netlink in the pod", e);
        let pod = rtnl
            .link(ifname)
            .map_err(netlink)?
            .ok_or_else(|| Failure::check_failed(format!("{ifname} is not in the pod")))?;
        Ok((pod, rtnl.addresses(pod.index).map_err(netlink)?))
    })?;
    if let Some(mtu) = attachment.mtu
        && pod.mtu != Some(mtu)
    {
        return Err(Failure::check_failed(format!(
            "{ifname} in the pod has MTU {}, the configuration {mtu}",
            pod.mtu.map_or("unknown".to_owned(), |m| m.to_string())
        )));
    }
    if attachment.spoofchk {
        let mac = pod.mac.map(|m| m.to_string()).unwrap_or_default();
        if port.allowed_macs != [mac.clone()] {
            return Err(Failure::check_failed(format!(
                "hairpin's port {host} allows {:?}, not only the pod's {mac}",
                port.allowed_macs
            )));
        }
    }
    // The IP source guard, as ADD made it from the same addresses.
    if !prev.is_empty() {
        let ips: Vec<IpAddr> = prev.iter().map(|&(ip, _)| ip).collect();
        let want = attachment.allow_ip(&ips);
        if port.allowed_ips != want {
            return Err(Failure::check_failed(format!(
                "hairpin's port {host} has the IP source guard {:?}, the configuration {want:?}",
                port.allowed_ips
            )));
        }
    }
    for want in prev {
        if !addresses.contains(&want) {
            return Err(Failure::check_failed(format!(
                "{}/{} is not on {ifname} in the pod",
                want.0, want.1
            )));
        }
    }
    ipam::delegate("CHECK", &inputs.config, &inputs.path)?;
    Ok(())
}

/// The addresses of CHECK's `prevResult`, read leniently: a runtime written in Go
/// re-encodes the result it was given, leaving out what is empty (an interface's
/// `sandbox`, `dns`), so only `ips[].address` is read.
fn prev_addresses(prev: Option<&serde_json::Value>) -> Result<Vec<(IpAddr, u8)>, Failure> {
    let bad = |what: String| Failure::invalid_config(format!("prevResult: {what}"));
    let Some(ips) = prev.and_then(|p| p.get("ips")) else {
        return Ok(Vec::new());
    };
    let ips = ips
        .as_array()
        .ok_or_else(|| bad(format!("ips is not a list: {ips}")))?;
    ips.iter()
        .map(|ip| {
            let text = ip
                .get("address")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| bad(format!("an address is missing: {ip}")))?;
            let (addr, prefix) = text
                .split_once('/')
                .ok_or_else(|| bad(format!("{text} is not an address/prefix")))?;
            match (addr.parse::<IpAddr>(), prefix.parse::<u8>()) {
                (Ok(addr), Ok(prefix)) => Ok((addr, prefix)),
                _ => Err(bad(format!("{text} is not an address/prefix"))),
            }
        })
        .collect()
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_prev_result_re_encoded_by_a_go_runtime_is_read() {
        // As podman (Go) hands it back for CHECK: no `sandbox` on the host interface,
        // no `dns`, no `routes`.
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "hp0123456789abc", "mac": "02:00:00:00:00:01"},
                {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 1},
                {"address": "fd00::5/64", "interface": 1}
            ]
        });
        assert_eq!(
            prev_addresses(Some(&prev)).unwrap(),
            [
                ("10.88.0.5".parse().unwrap(), 16),
                ("fd00::5".parse().unwrap(), 64)
            ]
        );
        assert_eq!(prev_addresses(Some(&json!({}))).unwrap(), []);
        assert_eq!(prev_addresses(None).unwrap(), []);
    }

    #[test]
    fn a_malformed_prev_result_is_invalid_configuration() {
        for prev in [
            json!({"ips": "10.0.0.1/24"}),
            json!({"ips": [{"gateway": "10.0.0.1"}]}),
            json!({"ips": [{"address": "10.0.0.1"}]}),
            json!({"ips": [{"address": "ten/24"}]}),
        ] {
            let e = prev_addresses(Some(&prev)).unwrap_err();
            assert_eq!(e.code, failure::code::INVALID_CONFIG, "{prev}");
        }
    }
}
