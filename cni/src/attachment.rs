//! What one network configuration asks of hairpin: the keys `hairpin-cni` reads beside
//! the standard ones (`cniVersion`, `name`, `type`, `ipam`, `dns`, ...).
//!
//! ```json
//! {"cniVersion":"1.0.0","name":"tenant-a","type":"hairpin-cni",
//!  "socket":"/run/hairpin/hairpin.sock","vlan":10,"spoofchk":true,"ip_guard":true,"mtu":9000,
//!  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.10.0.0/24"}]]}}
//! ```
use std::{collections::HashMap, net::IpAddr, path::PathBuf};

use cni_plugin::config::NetworkConfig;
use hairpin::{
    control::{service::DEFAULT_SOCKET, spec::PortSpec},
    switch::guard::IpPrefix,
    wire::{ETHERNET_HEADER_LEN, Mac, dot1q::TAG_LEN},
};
use serde::Deserialize;
use serde_json::Value;

use crate::failure::Failure;

/// The plugin's own keys, and one a runtime or Multus may add that it ignores
/// (`capabilities`, last).
const OWN_KEYS: [&str; 7] = [
    "socket",
    "spoofchk",
    "mac",
    "parent",
    "mtu",
    "ip_guard",
    "capabilities",
];

/// The port settings ([`PortSpec::KEYS`]) a pod may not choose: its port's name is the
/// host end's, it is never the uplink, its sources and static entries come from
/// `spoofchk` and nothing else, and its IP source guard from `ip_guard` and the IPAM
/// result. Every other port setting is a key of its own, read as `hairpin port add`
/// and the config file read it.
const NOT_FOR_PODS: [&str; 7] = [
    "name",
    "uplink",
    "role",
    "allow",
    "allowed_macs",
    "static_macs",
    "allow_ip",
];

/// Whether `key` is one of the port's settings a pod may give.
fn is_port_key(key: &str) -> bool {
    PortSpec::KEYS.contains(&key) && !NOT_FOR_PODS.contains(&key)
}

/// The MTUs a pod's veth may have: IPv4's minimum to the largest a veth takes.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

/// One attachment's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The node's hairpin control socket.
    pub socket: PathBuf,
    /// The pod's port: an access port (`vlan`) or a trunk (`trunk`, `native`), reflective
    /// relay (`hairpin`), the most MACs it may learn (`max_macs`); its name is the host interface's, given when it is made.
    pub port: PortSpec,
    /// Anti-spoofing: the pod may send only from its own MAC (as SR-IOV's `spoofchk`).
    pub spoofchk: bool,
    /// The pod interface's MAC (else the kernel picks one). `runtimeConfig.mac` wins.
    pub mac: Option<Mac>,
    /// A parent interface for a macvlan: refused (see [`Attachment::from_config`]).
    pub parent: Option<String>,
    /// The MTU of both ends of the pod's veth (else the kernel's 1500). ADD fails when
    /// hairpin cannot carry frames that long on the port.
    pub mtu: Option<u32>,
    /// IP source guard (libvirt's `clean-traffic`): the pod's IP, ARP and neighbour
    /// discovery may use only the addresses its IPAM result gave it (each alone, `/32`
    /// or `/128`), its MAC's link-local address, and DHCP and DAD's unspecified one.
    /// On by default; a pod without IPAM addresses has no guard.
    pub ip_guard: bool,
}

/// The plugin's own keys.
#[derive(Deserialize)]
struct Own {
    #[serde(default = "default_socket")]
    socket: PathBuf,
    #[serde(default = "yes")]
    spoofchk: bool,
    #[serde(default, deserialize_with = "mac")]
    mac: Option<Mac>,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default = "yes")]
    ip_guard: bool,
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}

fn yes() -> bool {
    true
}

fn mac<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Mac>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let mac: Mac = text.parse().map_err(serde::de::Error::custom)?;
    if mac.is_learnable() {
        Ok(Some(mac))
    } else {
        Err(serde::de::Error::custom(format!(
            "{mac} is not a station's MAC (multicast or all-zero)"
        )))
    }
}

impl Attachment {
    /// Reads and checks the settings in `config`: an unknown key is code 2, a bad value
    /// (or settings hairpin would refuse) code 7.
    /// The pod's MAC comes from `runtimeConfig.mac`, else `MAC=` in `CNI_ARGS` (what
    /// podman passes for `--mac-address`), else the `mac` key.
    pub fn from_config(config: &NetworkConfig) -> Result<Self, Failure> {
        let args = std::env::var("CNI_ARGS").ok();
        let mac = match runtime_mac(config)? {
            Some(mac) => Some(mac),
            None => args_mac(args.as_deref())?,
        };
        Self::from_keys(&config.specific, mac)
    }

    fn from_keys(keys: &HashMap<String, Value>, runtime_mac: Option<Mac>) -> Result<Self, Failure> {
        let mut unknown: Vec<&str> = keys
            .keys()
            .map(String::as_str)
            .filter(|k| !OWN_KEYS.contains(k) && !is_port_key(k))
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            let reads: Vec<&str> = OWN_KEYS[..OWN_KEYS.len() - 1]
                .iter()
                .copied()
                .chain(PortSpec::KEYS.into_iter().filter(|k| is_port_key(k)))
                .collect();
            return Err(Failure::unsupported_field(format!(
                "hairpin-cni does not know {} (it reads {})",
                unknown.join(", "),
                reads.join(", ")
            )));
        }
        let (mut port, own): (serde_json::Map<_, _>, _) = keys
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, _)| is_port_key(k));
        // The host end's name, which `port_spec` gives it once the veth is made.
        port.insert("name".into(), Value::String(String::new()));
        let invalid =
            |e: serde_json::Error| Failure::invalid_config(format!("hairpin-cni settings: {e}"));
        let own: Own = serde_json::from_value(Value::Object(own)).map_err(invalid)?;
        let mut attachment = Self {
            socket: own.socket,
            port: serde_json::from_value(Value::Object(port)).map_err(invalid)?,
            spoofchk: own.spoofchk,
            mac: own.mac,
            parent: own.parent,
            mtu: own.mtu,
            ip_guard: own.ip_guard,
        };
        if let Some(parent) = &attachment.parent {
            return Err(Failure::invalid_config(format!(
                "parent {parent}: hairpin-cni attaches pods by veth only; a macvlan's \
                 frames leave through its parent's transmit path, where hairpin never \
                 sees them (docs/kubernetes.md)"
            )));
        }
        if let Some(mtu) = attachment.mtu
            && !MTU_RANGE.contains(&mtu)
        {
            return Err(Failure::invalid_config(format!(
                "mtu {mtu}: a veth's MTU is {} to {}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            )));
        }
        if runtime_mac.is_some() {
            attachment.mac = runtime_mac;
        }
        // Everything hairpin would refuse is refused here, before anything is made.
        attachment
            .port_spec("check", attachment.mac, &[])
            .check()
            .map_err(|e| Failure::invalid_config(format!("hairpin would refuse the port: {e}")))?;
        Ok(attachment)
    }

    /// The longest frame the pod sends at its MTU (Ethernet header included, FCS not;
    /// with an 802.1Q tag on a trunk), if an MTU is set.
    pub fn longest_frame(&self) -> Option<u32> {
        let tag = if self.port.trunk.is_some() {
            TAG_LEN
        } else {
            0
        };
        self.mtu.map(|mtu| mtu + (ETHERNET_HEADER_LEN + tag) as u32)
    }

    /// The `port add` request for host interface `name`, the pod's MAC being `pod_mac`
    /// and its IPAM addresses `addresses`.
    pub fn port_spec(&self, name: &str, pod_mac: Option<Mac>, addresses: &[IpAddr]) -> PortSpec {
        PortSpec {
            name: name.to_owned(),
            allow: match pod_mac {
                Some(mac) if self.spoofchk => vec![mac.to_string()],
                _ => Vec::new(),
            },
            allow_ip: self.allow_ip(addresses),
            ..self.port.clone()
        }
    }

    /// The IP source guard's prefixes for a pod of `addresses`: each alone, with
    /// `ip_guard` (none without).
    pub fn allow_ip(&self, addresses: &[IpAddr]) -> Vec<String> {
        if !self.ip_guard {
            return Vec::new();
        }
        let mut prefixes: Vec<IpPrefix> = addresses.iter().map(|&a| IpPrefix::host(a)).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        prefixes.iter().map(ToString::to_string).collect()
    }
}

/// `runtimeConfig.mac`, which a runtime sets for the `mac` capability (Multus does
/// when the pod's network selection names a MAC).
fn runtime_mac(config: &NetworkConfig) -> Result<Option<Mac>, Failure> {
    let Some(mac) = config.runtime.as_ref().and_then(|r| r.mac) else {
        return Ok(None);
    };
    let mac: Mac = mac
        .to_string()
        .parse()
        .map_err(|e| Failure::invalid_config(format!("runtimeConfig.mac: {e}")))?;
    Ok(Some(mac))
}

/// `MAC=` in `CNI_ARGS` (`K=V` pairs joined by `;`, as runtimes pass them; the keys
/// this plugin does not read are ignored).
fn args_mac(args: Option<&str>) -> Result<Option<Mac>, Failure> {
    let Some(text) = args
        .into_iter()
        .flat_map(|a| a.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.trim() == "MAC")
        .map(|(_, value)| value.trim())
    else {
        return Ok(None);
    };
    let mac: Mac = text
        .parse()
        .map_err(|e| Failure::invalid_config(format!("CNI_ARGS MAC={text}: {e}")))?;
    if !mac.is_learnable() {
        return Err(Failure::invalid_config(format!(
            "CNI_ARGS MAC={mac}: not a station's MAC (multicast or all-zero)"
        )));
    }
    Ok(Some(mac))
}

/// The host end of a pod's veth: `hp` and 13 hex digits of a hash of the container ID
/// and the interface name, so DEL finds it from its inputs alone. (FNV-1a: stable
/// across builds, unlike std's hasher.)
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let hash = container_id
        .bytes()
        .chain([0])
        .chain(ifname.bytes())
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("hp{:013x}", hash >> 12)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(keys: Value) -> Result<Attachment, Failure> {
        let Value::Object(map) = keys else {
            panic!("an object")
        };
        Attachment::from_keys(&map.into_iter().collect(), None)
    }

    #[test]
    fn cni_args_give_the_mac_podman_asks_for() {
        let mac = |args| args_mac(Some(args));
        assert_eq!(
            mac("IgnoreUnknown=1;K8S_POD_NAME=web;MAC=02:00:00:00:00:0a").unwrap(),
            Some("02:00:00:00:00:0a".parse().unwrap())
        );
        assert_eq!(mac("IgnoreUnknown=1;IP=10.0.0.5").unwrap(), None);
        assert_eq!(args_mac(None).unwrap(), None);
        assert_eq!(mac("").unwrap(), None);
        for bad in [
            "MAC=02:00",
            "MAC=01:00:5e:00:00:01",
            "MAC=00:00:00:00:00:00",
        ] {
            let e = mac(bad).unwrap_err();
            assert_eq!(e.code, crate::failure::code::INVALID_CONFIG, "{bad}");
            assert!(e.to_string().contains("CNI_ARGS MAC="), "{e}");
        }
    }

    #[test]
    fn defaults_are_the_default_socket_and_spoofchk_on() {
        let a = parse(json!({})).expect("valid");
        assert_eq!(a.socket, PathBuf::from(DEFAULT_SOCKET));
        assert!(a.spoofchk);
        assert!(!a.port.hairpin);
        let spec = a.port_spec("hp1", Some("02:00:00:00:00:01".parse().expect("mac")), &[]);
        assert_eq!(spec.allow, ["02:00:00:00:00:01"]);
        assert_eq!(spec.name, "hp1");
        assert!(a.ip_guard);
        assert!(spec.allow_ip.is_empty(), "no IPAM address, no guard");
    }

    #[test]
    fn spoofchk_off_allows_any_source() {
        let a = parse(json!({"spoofchk": false, "vlan": 10})).expect("valid");
        let spec = a.port_spec("hp1", Some("02:00:00:00:00:01".parse().expect("mac")), &[]);
        assert!(spec.allow.is_empty());
        assert_eq!(spec.vlan, Some(10));
    }

    #[test]
    fn unknown_keys_are_code_2_and_named() {
        let e = parse(json!({"vaIn": 10, "vlan": 10})).expect_err("typo");
        assert_eq!(e.code, 2);
        assert!(e.details.contains("vaIn"), "{}", e.details);
        // A pod chooses neither its port's name, nor the uplink, nor its sources.
        for key in ["name", "uplink", "allow", "static_macs", "allow_ip"] {
            let e = parse(json!({ key: "x" })).expect_err(key);
            assert_eq!(e.code, 2, "{key}");
        }
        // Every other port setting is the pod's to give.
        let a = parse(json!({"max_macs": 16})).expect("valid");
        assert_eq!(a.port_spec("hp1", None, &[]).max_macs, Some(16));
        let e = parse(json!({"nope": 1})).expect_err("unknown");
        assert!(
            e.details.contains(
                "it reads socket, spoofchk, mac, parent, mtu, ip_guard, vlan, trunk, native, hairpin, max_macs"
            ),
            "{}",
            e.details
        );
    }

    #[test]
    fn bad_values_are_code_7() {
        for keys in [
            json!({"vlan": 5000}),
            json!({"vlan": "ten"}),
            json!({"vlan": 10, "trunk": "20"}),
            json!({"native": 5}),
            json!({"trunk": "10-"}),
            json!({"mac": "01:00:5e:00:00:01"}),
            json!({"mac": "nonsense"}),
            json!({"parent": "eth0"}),
            json!({"mtu": 67}),
            json!({"mtu": 65536}),
            json!({"mtu": "9000"}),
            json!({"ip_guard": "yes"}),
        ] {
            let e = parse(keys.clone()).expect_err("invalid");
            assert_eq!(e.code, 7, "{keys}: {}", e.details);
        }
    }

    #[test]
    fn the_longest_frame_is_the_mtu_and_the_header_and_a_tag_on_a_trunk() {
        assert_eq!(parse(json!({})).expect("valid").longest_frame(), None);
        let access = parse(json!({"mtu": 9000, "vlan": 10})).expect("valid");
        assert_eq!(access.longest_frame(), Some(9014));
        let trunk = parse(json!({"mtu": 9000, "trunk": "10,20"})).expect("valid");
        assert_eq!(trunk.longest_frame(), Some(9018));
    }

    #[test]
    fn host_names_are_stable_short_and_distinct() {
        let a = host_ifname("c0ffee", "net1");
        assert_eq!(a, host_ifname("c0ffee", "net1"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("hp"));
        assert_ne!(a, host_ifname("c0ffee", "net2"));
        assert_ne!(a, host_ifname("c0ffe", "enet1"));
    }

    #[test]
    fn the_ip_guard_is_filled_from_the_ipam_addresses_unless_turned_off() {
        let addresses: Vec<IpAddr> = ["10.10.0.5", "fd00::5", "10.10.0.5"]
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect();
        let a = parse(json!({"vlan": 10})).expect("valid");
        let spec = a.port_spec("hp1", None, &addresses);
        assert_eq!(spec.allow_ip, ["10.10.0.5/32", "fd00::5/128"]);
        // hairpin takes it as it is.
        let config = spec.check().expect("hairpin accepts it");
        assert_eq!(config.policy.allowed_ips.len(), 2);
        let off = parse(json!({"ip_guard": false})).expect("valid");
        assert!(!off.ip_guard);
        assert!(off.port_spec("hp1", None, &addresses).allow_ip.is_empty());
    }
}
