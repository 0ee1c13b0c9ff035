//! `hairpin trace`: what the bridge does with a frame received on a port, explained
//! step by step against the tables the workers hold now ([`switch::trace`], which runs
//! the workers' own `decide()` without learning), and which path would carry it: the
//! XDP program's fast path, by the conditions the bridge publishes to it
//! (`bridge/fast.rs`), or the workers.
use super::{Bridge, BridgeError, refused};
use crate::{
    control::{
        protocol::{TraceEgress, TraceFrame, TraceReport},
        xdp::{AttachedMode, FastFloods},
    },
    switch::{
        self, Action, DropReason, Mode, PortId, fdb::Entry, guard::FastGuard, meters::Limit,
        trace::Learning,
    },
    wire::Mac,
};

/// The Ethernet header's length, to the ethertype's end.
const HEADER: usize = 14;

/// The longest frame one XDP buffer holds with the common drivers (veth, virtio-net,
/// most NICs): a 4 KiB page less XDP's headroom (256) and the tail room for the skb's
/// shared info (320). A longer frame comes in several (multi-buffer XDP).
const ONE_BUFFER: usize = 4096 - 256 - 320;

impl Bridge {
    /// Explains what the bridge does with `frame` received on port `name` now; changes
    /// nothing (the MAC table included).
    pub fn trace(&self, name: &str, frame: &TraceFrame) -> Result<TraceReport, BridgeError> {
        let ingress = self
            .find(name)
            .ok_or_else(|| refused(format!("{name} is not a port of this bridge")))?;
        let bytes = frame_bytes(frame)?;
        let t = switch::trace(&self.tables, &bytes, ingress, self.now());
        let mut lines = Vec::new();
        let (src, dst) = t
            .addresses
            .ok_or_else(|| refused("the frame is shorter than an Ethernet header"))?;
        let ethertype = u16::from_be_bytes([bytes[12], bytes[13]]);
        lines.push(format!(
            "frame: {src} > {dst}, ethertype {ethertype:#06x}, {} bytes, in on {name}",
            bytes.len()
        ));
        lines.push(format!("mode: {}", t.mode));
        let vlan = match t.classified {
            Some(Ok(c)) if t.vlan_aware => {
                let how = match c.tci {
                    Some(tci) => format!("tagged VID {} PCP {}", tci & 0x0fff, tci >> 13),
                    None => "untagged".to_owned(),
                };
                lines.push(format!("vlan: {how} on {name}: VLAN {}", c.vid));
                Some(c.vid)
            }
            Some(Err(_)) => {
                lines.push(format!("vlan: not in a VLAN {name} carries"));
                None
            }
            Some(Ok(_)) => {
                lines.push("vlan: the bridge is not VLAN-aware".to_owned());
                None
            }
            None => {
                lines.push(format!("vlan: {} classifies no VLAN", t.mode));
                None
            }
        };
        match t.source_allowed {
            Some(true) => lines.push(format!("source: {src} is on {name}'s anti-spoofing list")),
            Some(false) => lines.push(format!(
                "source: {src} is NOT on {name}'s anti-spoofing list"
            )),
            None if !src.is_learnable() => {
                lines.push(format!("source: {src} is multicast or all-zero"));
            }
            None => lines.push(format!("source: {name} has no anti-spoofing list")),
        }
        if let Some(guard) = self.tables.guard(ingress) {
            lines.push(match guard.check(&bytes) {
                Ok(()) => format!("ip guard: {name}'s allow_ip passes it"),
                Err(why) => format!("ip guard: {name}'s allow_ip refuses it: {why}"),
            });
        }
        let learning = self.learning_text(t.learning);
        lines.push(format!("learning: {src} {learning}"));
        let destination_port = t.destination_entry.map(|e| self.port_name(e.port));
        lines.push(format!(
            "lookup: {dst} {}",
            self.lookup_text(dst, t.destination_entry)
        ));
        lines.push(format!("rule: {}", t.rule));
        let egress: Vec<TraceEgress> = t
            .egress
            .iter()
            .map(|&(port, retag)| TraceEgress {
                port: self.port_name(port),
                tag: retag.describe(),
            })
            .collect();
        let list = egress
            .iter()
            .map(|e| format!("{} ({})", e.port, e.tag))
            .collect::<Vec<_>>()
            .join(", ");
        let (action, drop_reason) = match t.verdict.action {
            Action::Forward(_) => {
                lines.push(format!("action: forward to {list}"));
                ("forward", None)
            }
            Action::Flood(_) => {
                lines.push(format!("action: flood to {list}"));
                ("flood", None)
            }
            Action::Drop(reason) => {
                lines.push(format!("action: drop ({})", reason.name()));
                ("drop", Some(reason.name().to_owned()))
            }
        };
        let limits: Vec<String> = t
            .limits
            .iter()
            .map(|&(limit, rate)| limit.describe(rate))
            .collect();
        if !limits.is_empty() {
            lines.push(format!(
                "limits: subject to {} (whether it is within them depends on the meters, \
                 which a trace does not read); over them it is dropped as {}",
                limits.join(", "),
                self.limit_reasons(&t)
            ));
        }
        let (path, path_reason) = match self.fast_or_why(&t, ingress, &bytes) {
            _ if drop_reason.is_some() => ("none", None),
            Ok(()) => ("fast", None),
            Err(why) => ("workers", Some(why)),
        };
        lines.push(match &path_reason {
            None if path == "fast" && matches!(t.verdict.action, Action::Flood(_)) => {
                "path: fast (the kernel floods it: a copy per port)".to_owned()
            }
            None if path == "fast" => "path: fast (the XDP program redirects it)".to_owned(),
            None => "path: none (dropped)".to_owned(),
            Some(why) => format!("path: workers ({why})"),
        });
        Ok(TraceReport {
            port: name.to_owned(),
            mode: t.mode.to_string(),
            vlan,
            source_allowed: t.source_allowed,
            learning,
            destination_port,
            rule: t.rule.to_owned(),
            action: action.to_owned(),
            limits,
            drop_reason,
            egress,
            path: path.to_owned(),
            path_reason,
            lines,
        })
    }

    /// Whether the fast path carries the traced frame, or why the workers do: the
    /// conditions of `ebpf/src/fast.rs` that the control plane knows (the fast path on,
    /// a unicast frame the mode sends to one port, its source already on the ingress
    /// port, an egress port that takes redirected frames, a frame within the MTU).
    fn fast_or_why(&self, t: &switch::Trace, ingress: PortId, frame: &[u8]) -> Result<(), String> {
        if self.netdev.is_none() || t.mode == Mode::Xconnect {
            return Err("the fast path is off".to_owned());
        }
        let egress = match t.verdict.action {
            Action::Forward(egress) => Some(egress),
            Action::Flood(_) if self.config.fast_floods == FastFloods::Off => {
                return Err("a flood, and --fast-floods is off: the workers copy it".to_owned());
            }
            Action::Flood(_) if t.mode != Mode::Veb => {
                return Err(format!("a flood in {}: the workers copy it", t.mode));
            }
            Action::Flood(_) => None,
            _ => return Err("a flood: the workers copy it".to_owned()),
        };
        let (src, dst) = t.addresses.expect("a forwarded frame has a header");
        if egress.is_some() && dst.is_multicast() {
            return Err("a group destination".to_owned());
        }
        if t.mode != Mode::Passthru && t.source_entry.is_none_or(|e| e.port != ingress) {
            return Err(format!(
                "{src} is not yet in the MAC table on this port: learning is the workers'"
            ));
        }
        if self
            .tables
            .guard(ingress)
            .is_some_and(|g| g.fast_path(frame) == FastGuard::Workers)
        {
            return Err(
                "ARP, ICMPv6, an IPv6 extension header, or a source the IP source \
                        guard's exceptions cover: the workers check it"
                    .to_owned(),
            );
        }
        let attached = self.slots[usize::from(ingress)]
            .as_ref()
            .and_then(|s| s.attached.as_ref());
        if let Some(a) = attached {
            let tag = if u16::from_be_bytes([frame[12], frame[13]]) == 0x8100 {
                4
            } else {
                0
            };
            if frame.len() > a.mtu as usize + HEADER + tag {
                return Err("longer than the ingress MTU (a segment the workers cut)".to_owned());
            }
        }
        if frame.len() > ONE_BUFFER {
            return Err(format!(
                "{} bytes: more than one XDP buffer holds (a jumbo frame arrives in several, \
                 which the fast path leaves to the workers)",
                frame.len()
            ));
        }
        let Some(egress) = egress else {
            let generic = attached.is_none_or(|a| a.xdp == AttachedMode::Generic);
            if generic {
                return Err("a flood from a port in generic XDP mode: the workers copy it".into());
            }
            let vid = t.verdict.vlan.vid;
            let hairpin = self.tables.hairpin_on(ingress);
            if !self.floods.whole(vid, ingress, hairpin) {
                return Err(format!(
                    "a flood, and the kernel cannot reach every port of VLAN {vid} (a port \
                     that takes no redirected frames): the workers copy it"
                ));
            }
            return Ok(());
        };
        if self
            .fast_egress
            .get(usize::from(egress))
            .is_none_or(Option::is_none)
        {
            return Err(format!(
                "{} takes no redirected frames from the fast path (down, zero-copy under \
                 --fast-path auto, or its driver)",
                self.port_name(egress)
            ));
        }
        Ok(())
    }

    /// The drop reasons of the limits `t` is subject to: `policed`, `storm`.
    fn limit_reasons(&self, t: &switch::Trace) -> String {
        let mut reasons: Vec<&str> = t
            .limits
            .iter()
            .map(|(limit, _)| match limit {
                Limit::Storm(_) => DropReason::Storm.name(),
                Limit::PoliceRate | Limit::PolicePps => DropReason::Policed.name(),
            })
            .collect();
        reasons.dedup();
        reasons.join(" or ")
    }

    fn port_name(&self, id: PortId) -> String {
        self.slots
            .get(usize::from(id))
            .and_then(Option::as_ref)
            .map_or_else(|| format!("slot {id}"), |s| s.config.name.clone())
    }

    fn learning_text(&self, learning: Learning) -> String {
        match learning {
            Learning::Skipped => "none (not learned)".to_owned(),
            Learning::Reflection { home } => {
                format!("none (a reflection: it lives on {})", self.port_name(home))
            }
            Learning::New => "new".to_owned(),
            Learning::Moved { from } => format!("moved from {}", self.port_name(from)),
            Learning::Refreshed => "refreshed".to_owned(),
            Learning::Static { port } => format!("static on {}", self.port_name(port)),
            Learning::Limited { limit } => format!("refused (max_macs {limit})"),
        }
    }

    fn lookup_text(&self, dst: Mac, entry: Option<Entry>) -> String {
        match entry {
            _ if dst.is_multicast() => "is a group address".to_owned(),
            Some(e) if e.is_static => format!("static on {}", self.port_name(e.port)),
            Some(e) => format!("learned on {}", self.port_name(e.port)),
            None => "unknown".to_owned(),
        }
    }
}

/// The bytes of `frame`: a described one padded to the Ethernet minimum (60 bytes).
fn frame_bytes(frame: &TraceFrame) -> Result<Vec<u8>, BridgeError> {
    match frame {
        TraceFrame::Described {
            src,
            dst,
            vlan,
            pcp,
            ethertype,
        } => {
            let mac = |text: &str| {
                text.parse::<Mac>()
                    .map_err(|_| refused(format!("{text:?} is not a MAC address")))
            };
            let (src, dst) = (mac(src)?, mac(dst)?);
            if vlan.is_some_and(|v| v > 4094) || *pcp > 7 {
                return Err(refused("a VLAN id is 0 to 4094, a PCP 0 to 7"));
            }
            let mut bytes = Vec::with_capacity(64);
            bytes.extend_from_slice(&dst.0);
            bytes.extend_from_slice(&src.0);
            if let Some(vid) = vlan {
                bytes.extend_from_slice(&0x8100u16.to_be_bytes());
                bytes.extend_from_slice(&(u16::from(*pcp) << 13 | vid).to_be_bytes());
            }
            bytes.extend_from_slice(&ethertype.to_be_bytes());
            bytes.resize(60, 0);
            Ok(bytes)
        }
        TraceFrame::Hex(text) => {
            let digits: Vec<u8> = text
                .bytes()
                .filter(|b| !b.is_ascii_whitespace() && !matches!(b, b':' | b'-' | b'.'))
                .collect();
            if !digits.len().is_multiple_of(2) {
                return Err(refused("the hex frame has an odd number of digits"));
            }
            let bytes = digits
                .chunks(2)
                .map(|pair| {
                    std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| refused("the frame is not hexadecimal"))?;
            if bytes.len() < HEADER {
                return Err(refused(
                    "the frame is shorter than an Ethernet header (14 bytes)",
                ));
            }
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        control::{
            bridge::fake::FakeKernel,
            config::{BridgeConfig, PortConfig},
            netdev::XDP_ACT_NDO_XMIT,
            xdp::FastPath,
        },
        datapath::{DatapathConfig, ZeroCopy},
        switch::vlan::PortVlans,
    };

    const A: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);
    const B: Mac = Mac([0x02, 0, 0, 0, 0, 0x0b]);
    const C: Mac = Mac([0x02, 0, 0, 0, 0, 0x0c]);

    /// `p0` and `p1` access ports of VLAN 10 (`p1` allows only B), `p2` a trunk of 10
    /// and 20; the fast path on where the driver takes redirects (`p1` only); A learned
    /// on `p0`, B on `p1`.
    fn bridge() -> Bridge {
        bridge_with(1500, &[11])
    }

    /// [`bridge`] with every port's MTU `mtu`.
    fn bridge_with_mtu(mtu: u32) -> Bridge {
        bridge_with(mtu, &[11])
    }

    /// [`bridge`] with every port's MTU `mtu`, the devices of `fast` taking redirects.
    fn bridge_with(mtu: u32, fast: &[u32]) -> Bridge {
        let kernel = FakeKernel::default();
        for i in 0..3 {
            kernel.add_link(&format!("p{i}"), 10 + i, 1);
            kernel.change_link(&format!("p{i}"), |l| l.mtu = mtu);
        }
        for &ifindex in fast {
            kernel.set_features(ifindex, XDP_ACT_NDO_XMIT);
        }
        let mut ports: Vec<_> = ["p0", "p1", "p2"]
            .iter()
            .map(|n| PortConfig::downlink(n))
            .collect();
        ports[0].policy.vlans = Some(PortVlans::Access(10));
        ports[1].policy.vlans = Some(PortVlans::Access(10));
        ports[1].policy.allowed_sources = vec![B];
        ports[2].policy.vlans = Some(PortVlans::Trunk {
            tagged: vec![10, 20],
            native: None,
        });
        let config = BridgeConfig {
            ports,
            cores: Some(vec![0]),
            fast_path: FastPath::Auto,
            datapath: DatapathConfig {
                zero_copy: ZeroCopy::Off,
                ..DatapathConfig::default()
            },
            ..BridgeConfig::default()
        };
        let bridge = Bridge::with_kernel(config, Box::new(kernel)).expect("the fake starts it");
        bridge.fdb.learn(10, A, 0, bridge.now());
        bridge.fdb.learn(10, B, 1, bridge.now());
        bridge
    }

    fn described(src: Mac, dst: Mac) -> TraceFrame {
        TraceFrame::Described {
            src: src.to_string(),
            dst: dst.to_string(),
            vlan: None,
            pcp: 0,
            ethertype: 0x0800,
        }
    }

    fn egress(report: &TraceReport) -> Vec<(&str, &str)> {
        report
            .egress
            .iter()
            .map(|e| (e.port.as_str(), e.tag.as_str()))
            .collect()
    }

    #[test]
    fn a_known_unicast_takes_the_fast_path_to_its_port_and_the_table_stays() {
        let bridge = bridge();
        let before = bridge.fdb.entries();
        let r = bridge.trace("p0", &described(A, B)).unwrap();
        assert_eq!(r.action, "forward");
        assert_eq!(egress(&r), [("p1", "keep")]);
        assert_eq!(r.vlan, Some(10));
        assert_eq!(r.learning, "refreshed");
        assert_eq!(r.destination_port.as_deref(), Some("p1"));
        assert_eq!(r.path, "fast", "{:?}", r.lines);
        assert_eq!(bridge.fdb.entries(), before, "a trace changes nothing");
        // Back the other way: p0's driver takes no redirected frames.
        let r = bridge.trace("p1", &described(B, A)).unwrap();
        assert_eq!(egress(&r), [("p0", "keep")]);
        assert_eq!(r.path, "workers");
        assert!(r.path_reason.unwrap().contains("p0 takes no redirected"));
    }

    #[test]
    fn a_flood_is_the_kernels_when_it_reaches_every_port_of_the_vlan() {
        let broadcast = Mac([0xff; 6]);
        let r = bridge().trace("p0", &described(A, broadcast)).unwrap();
        assert_eq!(r.action, "flood");
        assert_eq!(r.path, "workers");
        let why = r.path_reason.unwrap();
        assert!(why.contains("cannot reach every port of VLAN 10"), "{why}");

        let bridge = bridge_with(1500, &[10, 11, 12]);
        let r = bridge.trace("p0", &described(A, broadcast)).unwrap();
        assert_eq!(egress(&r), [("p1", "keep"), ("p2", "push VID 10")]);
        assert_eq!(r.path, "fast", "{:?}", r.lines);
        assert!(r.lines.iter().any(|l| l.contains("the kernel floods it")));
        // Unknown unicast too; a source not yet learned here is the workers'.
        let r = bridge.trace("p0", &described(A, C)).unwrap();
        assert_eq!(r.path, "fast", "{:?}", r.lines);
        let r = bridge.trace("p0", &described(C, broadcast)).unwrap();
        assert_eq!(r.path, "workers");
        assert!(r.path_reason.unwrap().contains("not yet in the MAC table"));
    }

    #[test]
    fn a_jumbo_frame_is_the_workers_even_on_a_path_the_fast_path_takes() {
        let bridge = bridge_with_mtu(9000);
        let hex = |len: usize| {
            let mut f = [B.0, A.0].concat();
            f.extend([0x08, 0x00]);
            f.resize(len, 0);
            TraceFrame::Hex(f.iter().map(|b| format!("{b:02x}")).collect())
        };
        let r = bridge.trace("p0", &hex(1514)).unwrap();
        assert_eq!(r.path, "fast", "{:?}", r.lines);
        let r = bridge.trace("p0", &hex(9014)).unwrap();
        assert_eq!(egress(&r), [("p1", "keep")]);
        assert_eq!(r.path, "workers");
        assert!(
            r.path_reason
                .unwrap()
                .contains("9014 bytes: more than one XDP buffer")
        );
    }

    #[test]
    fn an_unknown_destination_floods_the_vlan_pushing_its_tag_to_the_trunk() {
        let bridge = bridge();
        let r = bridge.trace("p0", &described(A, C)).unwrap();
        assert_eq!(r.action, "flood");
        assert_eq!(egress(&r), [("p1", "keep"), ("p2", "push VID 10")]);
        assert_eq!(r.path, "workers");
        assert!(
            r.lines
                .iter()
                .any(|l| l == "lookup: 02:00:00:00:00:0c unknown")
        );
        // A tagged frame from the trunk leaves the access ports untagged.
        let tagged = TraceFrame::Described {
            src: C.to_string(),
            dst: Mac::BROADCAST.to_string(),
            vlan: Some(10),
            pcp: 3,
            ethertype: 0x0806,
        };
        let r = bridge.trace("p2", &tagged).unwrap();
        assert_eq!(egress(&r), [("p0", "pop"), ("p1", "pop")]);
        assert_eq!(r.learning, "new");
        assert!(bridge.fdb.get(10, C).is_none());
    }

    #[test]
    fn a_spoofed_source_a_foreign_vlan_and_a_hex_frame() {
        let bridge = bridge();
        let r = bridge.trace("p1", &described(C, A)).unwrap();
        assert_eq!(r.action, "drop");
        assert_eq!(r.drop_reason.as_deref(), Some("spoofed"));
        assert_eq!(r.source_allowed, Some(false));
        assert_eq!(r.learning, "none (not learned)");
        assert!(r.egress.is_empty());
        // VLAN 30 is not the trunk's.
        let foreign = TraceFrame::Described {
            src: C.to_string(),
            dst: A.to_string(),
            vlan: Some(30),
            pcp: 0,
            ethertype: 0x0800,
        };
        let r = bridge.trace("p2", &foreign).unwrap();
        assert_eq!(r.drop_reason.as_deref(), Some("vlan"));
        // The same known unicast as a hex frame.
        let hex = TraceFrame::Hex(format!("{B} {A} 0800 {}", "00".repeat(46)));
        let r = bridge.trace("p0", &hex).unwrap();
        assert_eq!(egress(&r), [("p1", "keep")]);
        // Refused: an unknown port, a frame too short, bad hex.
        assert!(bridge.trace("p9", &described(A, B)).is_err());
        assert!(bridge.trace("p0", &TraceFrame::Hex("ffff".into())).is_err());
        assert!(bridge.trace("p0", &TraceFrame::Hex("zz".into())).is_err());
    }
}
