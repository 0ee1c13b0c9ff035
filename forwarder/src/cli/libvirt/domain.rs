//! What a libvirt domain asks of hairpin: its `<interface type='ethernet'>`s (their tap,
//! their MAC) and, in its `<metadata>`, one `<hairpin:port>` per interface to attach,
//! read into the project's one port type, [`PortSpec`].
//!
//! ```xml
//! <metadata>
//!   <hairpin:ports xmlns:hairpin="https://hairpin.dev/xmlns/libvirt/1">
//!     <hairpin:port dev="vm1-eth0" vlan="10"/>
//!     <hairpin:port mac="52:54:00:00:00:02" trunk="10,20" native="10" spoofchk="off"/>
//!   </hairpin:ports>
//! </metadata>
//! ```
//!
//! A port names its interface by `dev` (the interface's `<target dev>`) or by `mac`
//! (its `<mac address>`: for taps libvirt names itself, `vnetN`, known only once the
//! domain runs). Its other attributes ([`ATTRIBUTES`]) are the port settings a VM may
//! choose, spelt as the config file spells them; `spoofchk` (on unless `off`) makes the
//! interface's MAC the port's only allowed source. Interfaces with no `<hairpin:port>`
//! are left alone. Every value is checked by [`PortSpec::check`], the check `hairpin
//! port add` and the config file go through, and a wrong one is an error naming the
//! element, the attribute and what is wrong.
use anyhow::{Context as _, Result, anyhow, bail};
use hairpin::{
    control::spec::{PortSpec, Setting, SettingError},
    wire::Mac,
};
use roxmltree::{Document, Node};

/// The XML namespace of hairpin's elements in a domain's `<metadata>`.
pub(crate) const NAMESPACE: &str = "https://hairpin.dev/xmlns/libvirt/1";

/// The attributes a `<hairpin:port>` takes.
pub(crate) const ATTRIBUTES: [&str; 9] = [
    "dev", "mac", "vlan", "trunk", "native", "hairpin", "spoofchk", "max_macs", "allow_ip",
];

/// The name a port's spec has while its tap's name is not known yet (`prepare`, for a
/// tap libvirt names itself): only its settings are checked then.
const UNNAMED: &str = "unnamed";

/// One of the domain's network interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Interface {
    /// Its `type` (`ethernet`, `bridge`, `direct`, ...).
    kind: String,
    /// Its `<mac address>`, as written.
    mac: Option<String>,
    /// Its `<target dev>`: the tap's name.
    dev: Option<String>,
}

impl Interface {
    /// How an error names it.
    fn describe(&self) -> String {
        match (&self.dev, &self.mac) {
            (Some(dev), _) => format!("<interface type='{}'> {dev}", self.kind),
            (None, Some(mac)) => format!("<interface type='{}'> of MAC {mac}", self.kind),
            (None, None) => format!("<interface type='{}'>", self.kind),
        }
    }
}

/// A domain, as far as hairpin is concerned.
#[derive(Debug)]
pub(crate) struct Domain {
    /// Its `<name>`.
    pub(crate) name: String,
    /// One entry per `<hairpin:port>`, in order: its interface, and the port's
    /// settings, named after the interface's tap when it has one (else [`UNNAMED`]).
    ports: Vec<(Interface, PortSpec)>,
}

impl Domain {
    /// Reads and checks the domain XML `text`: an error names what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let doc = document(text)?;
        let root = doc.root_element();
        let name = child(root, "name")
            .and_then(|n| n.text())
            .unwrap_or_default()
            .trim()
            .to_owned();
        let interfaces = interfaces(root);
        let mut ports: Vec<(Interface, PortSpec)> = Vec::new();
        let mut taken: Vec<usize> = Vec::new();
        for element in port_elements(root).with_context(|| format!("domain {name}"))? {
            let (i, spec) = port(element, &interfaces)
                .with_context(|| format!("domain {name}: {}", describe_element(element)))?;
            if taken.contains(&i) {
                bail!(
                    "domain {name}: {}: {} has a <hairpin:port> already: one per interface",
                    describe_element(element),
                    interfaces[i].describe()
                );
            }
            taken.push(i);
            ports.push((interfaces[i].clone(), spec));
        }
        Ok(Self { name, ports })
    }

    /// The ports to attach, each named after its tap; an error if an interface has no
    /// tap name yet (the domain is not running).
    pub(crate) fn specs(&self) -> Result<Vec<PortSpec>> {
        self.ports
            .iter()
            .map(|(interface, spec)| match &interface.dev {
                Some(_) => Ok(spec.clone()),
                None => Err(anyhow!(
                    "domain {}: {} has no <target dev> yet: libvirt names a running \
                     domain's taps",
                    self.name,
                    interface.describe()
                )),
            })
            .collect()
    }

    /// Whether it asks for any port.
    pub(crate) fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
}

/// The tap names a domain's `<hairpin:port>`s name, read leniently: what a domain that
/// stops had attached, even if its settings are now wrong (edited while it ran).
pub(crate) fn taps_leniently(text: &str) -> Result<Vec<String>> {
    let doc = document(text)?;
    let root = doc.root_element();
    let interfaces = interfaces(root);
    let mut taps = Vec::new();
    for element in port_elements(root)? {
        let found = match (element.attribute("dev"), element.attribute("mac")) {
            (Some(dev), _) => interfaces
                .iter()
                .any(|i| i.dev.as_deref() == Some(dev))
                .then(|| dev.to_owned()),
            (None, Some(mac)) => find_by_mac(&interfaces, mac)
                .ok()
                .flatten()
                .and_then(|i| interfaces[i].dev.clone()),
            (None, None) => None,
        };
        if let Some(tap) = found
            && !taps.contains(&tap)
        {
            taps.push(tap);
        }
    }
    Ok(taps)
}

/// The document, which must be a `<domain>`.
fn document(text: &str) -> Result<Document<'_>> {
    if text.trim().is_empty() {
        bail!("no domain XML on stdin (libvirt gives the hook the domain's XML there)");
    }
    let doc = Document::parse(text).map_err(|e| anyhow!("the domain XML is malformed: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "domain" || root.tag_name().namespace().is_some() {
        bail!(
            "the XML on stdin is a <{}>, not a libvirt <domain>",
            root.tag_name().name()
        );
    }
    Ok(doc)
}

/// The first child element of `node` called `name` (no namespace).
fn child<'a, 'input>(node: Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
    node.children()
        .find(|c| c.is_element() && c.has_tag_name(name) && c.tag_name().namespace().is_none())
}

/// The domain's `<devices><interface>`s.
fn interfaces(root: Node<'_, '_>) -> Vec<Interface> {
    let Some(devices) = child(root, "devices") else {
        return Vec::new();
    };
    devices
        .children()
        .filter(|c| c.is_element() && c.has_tag_name("interface"))
        .map(|i| Interface {
            kind: i.attribute("type").unwrap_or_default().to_owned(),
            mac: child(i, "mac")
                .and_then(|m| m.attribute("address"))
                .map(str::to_owned),
            dev: child(i, "target")
                .and_then(|t| t.attribute("dev"))
                .map(str::to_owned),
        })
        .collect()
}

/// Every `<hairpin:port>` of the `<metadata>`'s `<hairpin:ports>`; any other element in
/// hairpin's namespace is an error.
fn port_elements<'a, 'input>(root: Node<'a, 'input>) -> Result<Vec<Node<'a, 'input>>> {
    let Some(metadata) = child(root, "metadata") else {
        return Ok(Vec::new());
    };
    let mut ports = Vec::new();
    for element in metadata.children().filter(Node::is_element) {
        if element.tag_name().namespace() != Some(NAMESPACE) {
            continue;
        }
        if element.tag_name().name() != "ports" {
            bail!(
                "<{}> in the metadata: hairpin's namespace {NAMESPACE} has <ports>",
                element.tag_name().name()
            );
        }
        for port in element.children().filter(Node::is_element) {
            let tag = port.tag_name();
            if tag.namespace() != Some(NAMESPACE) || tag.name() != "port" {
                bail!(
                    "<{}> in <hairpin:ports>: it holds <hairpin:port> elements only",
                    tag.name()
                );
            }
            ports.push(port);
        }
    }
    Ok(ports)
}

/// How an error names a `<hairpin:port>`: by the attribute that names its interface.
fn describe_element(element: Node<'_, '_>) -> String {
    match (element.attribute("dev"), element.attribute("mac")) {
        (Some(dev), _) => format!("<hairpin:port dev='{dev}'>"),
        (None, Some(mac)) => format!("<hairpin:port mac='{mac}'>"),
        (None, None) => "<hairpin:port>".to_owned(),
    }
}

/// The interface `mac` names, if any (an error if `mac` is no MAC).
fn find_by_mac(interfaces: &[Interface], mac: &str) -> Result<Option<usize>> {
    let want: Mac = mac.parse().map_err(|e| anyhow!("mac='{mac}': {e}"))?;
    Ok(interfaces
        .iter()
        .position(|i| i.mac.as_deref().and_then(|m| m.parse::<Mac>().ok()) == Some(want)))
}

/// A `<hairpin:port>`'s interface (its index) and settings, checked.
fn port(element: Node<'_, '_>, interfaces: &[Interface]) -> Result<(usize, PortSpec)> {
    for attribute in element.attributes() {
        if attribute.namespace().is_some() || !ATTRIBUTES.contains(&attribute.name()) {
            bail!(
                "unknown attribute {}: a port takes {}",
                attribute.name(),
                ATTRIBUTES.join(", ")
            );
        }
    }
    let i = match (element.attribute("dev"), element.attribute("mac")) {
        (Some(dev), None) => interfaces
            .iter()
            .position(|i| i.dev.as_deref() == Some(dev))
            .ok_or_else(|| {
                anyhow!(
                    "no <interface> of the domain has <target dev='{dev}'/> ({})",
                    known(interfaces)
                )
            })?,
        (None, Some(mac)) => find_by_mac(interfaces, mac)?.ok_or_else(|| {
            anyhow!(
                "no <interface> of the domain has <mac address='{mac}'/> ({})",
                known(interfaces)
            )
        })?,
        _ => bail!(
            "name its interface with dev= (the interface's <target dev>) or mac= (its \
             <mac address>), one of them"
        ),
    };
    let interface = &interfaces[i];
    if interface.kind != "ethernet" {
        bail!(
            "{} is not type='ethernet': hairpin attaches the taps of ethernet interfaces \
             (a macvtap's lower device is a hairpin port itself, see the README)",
            interface.describe()
        );
    }
    let attr = |name: &str| element.attribute(name).map(str::to_owned);
    let number = |name: &str| -> Result<Option<u32>> {
        attr(name)
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| anyhow!("{name}='{v}': not a number"))
            })
            .transpose()
    };
    let spoofchk = switch(element, "spoofchk")?.unwrap_or(true);
    let allow = match (&interface.mac, spoofchk) {
        (Some(mac), true) => vec![mac.clone()],
        (None, true) => bail!(
            "spoofchk is on (the default) but {} has no <mac address>: give it one, or \
             spoofchk='off'",
            interface.describe()
        ),
        (_, false) => Vec::new(),
    };
    let spec = PortSpec {
        name: interface.dev.clone().unwrap_or_else(|| UNNAMED.to_owned()),
        vlan: number("vlan")?,
        trunk: attr("trunk"),
        native: number("native")?,
        hairpin: switch(element, "hairpin")?.unwrap_or(false),
        allow,
        max_macs: number("max_macs")?,
        allow_ip: attr("allow_ip")
            .map(|list| {
                list.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        ..PortSpec::default()
    };
    spec.check().map_err(|e| setting_error(&e, interface))?;
    Ok((i, spec))
}

/// An `on`/`off` attribute.
fn switch(element: Node<'_, '_>, name: &str) -> Result<Option<bool>> {
    match element.attribute(name) {
        None => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(other) => bail!("{name}='{other}': give on or off"),
    }
}

/// [`PortSpec::check`]'s refusal, said as the attribute that gave the value.
fn setting_error(e: &SettingError, interface: &Interface) -> anyhow::Error {
    let attribute = match e.setting {
        Setting::Vlan => "vlan",
        Setting::Trunk => "trunk",
        Setting::Native => "native",
        Setting::AllowIp(_) => "allow_ip",
        Setting::Allow(_) => {
            return anyhow!(
                "spoofchk: {} has <mac address='{}'/>: {}",
                interface.describe(),
                e.value,
                e.why
            );
        }
        // Not attributes of a <hairpin:port>; said as `port add` would.
        Setting::StaticMac(_) | Setting::Limit(_) => return anyhow!("{e}"),
    };
    anyhow!("{attribute}='{}': {}", e.value, e.why)
}

/// The interfaces an error lists: what a port could have named.
fn known(interfaces: &[Interface]) -> String {
    if interfaces.is_empty() {
        return "it has none".to_owned();
    }
    let list: Vec<String> = interfaces.iter().map(Interface::describe).collect();
    format!("it has {}", list.join(", "))
}

#[cfg(test)]
mod tests;
