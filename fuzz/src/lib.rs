//! What hairpin's fuzz targets share: a reader that turns the fuzzer's bytes into
//! choices, and the conversions their round trips need (a port's configuration back into
//! a `port add` request, a whole configuration back into TOML).
//!
//! The targets, in `fuzz_targets/`:
//!
//! - `decide`: random bridges (mode, ports, roles, VLANs, hairpin, anti-spoofing, static
//!   MACs, ports down) switch random frames; every verdict keeps the invariants of
//!   [`hairpin::switch::decide`].
//! - `vlan_retag`: VLAN classification and retagging against a model of 802.1Q written
//!   in the target.
//! - `config_file`: `hairpin run --config` files; one that loads prints back to TOML that
//!   loads the same (mirrors included), and each port is one `port add` would accept.
//! - `port_spec`: the command line's port options (`run --ports ... --vlan PORT=VID`)
//!   and `port add`, which must agree with each other and with the config file.
//! - `netlink`: the kernel's link and address messages, as notifications and as
//!   replies.
//! - `ip_guard`: the IP source guard's verdict on random frames against a model of its
//!   rules written in the target, and the fast path's rule against the guard's.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use hairpin::{
    control::{
        config::BridgeConfig,
        spec::{PortSpec, mirror::direction_name},
        xdp::XdpAttachMode,
    },
    datapath::ZeroCopy,
};

/// The fuzzer's bytes, read front to back; zeros once they run out, so every input is a
/// complete one.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The next byte, 0 past the end.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// The next `n` bytes, or as many as are left.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// `text` as a TOML basic string, quoted.
pub fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => write!(out, "\\u{:04X}", u32::from(c)).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `config` as a config file (README.md, "The config file"), every key written out.
pub fn to_toml(config: &BridgeConfig) -> String {
    let mut out = String::new();
    let w = &mut out;
    writeln!(w, "mode = \"{}\"", config.mode).unwrap();
    writeln!(w, "group_fwd_mask = {}", config.group_fwd_mask).unwrap();
    writeln!(w, "[datapath]").unwrap();
    if let Some(queues) = config.queues {
        writeln!(w, "queues = {queues}").unwrap();
    }
    if let Some(cores) = &config.cores {
        writeln!(w, "cores = {cores:?}").unwrap();
    }
    let xdp_mode = match config.xdp_mode {
        XdpAttachMode::Auto => "auto",
        XdpAttachMode::Native => "native",
        XdpAttachMode::Generic => "generic",
    };
    let zero_copy = match config.datapath.zero_copy {
        ZeroCopy::Auto => "auto",
        ZeroCopy::On => "on",
        ZeroCopy::Off => "off",
    };
    writeln!(w, "xdp_mode = \"{xdp_mode}\"").unwrap();
    writeln!(w, "zero_copy = \"{zero_copy}\"").unwrap();
    writeln!(w, "ring_size = {}", config.datapath.ring_size).unwrap();
    writeln!(w, "frame_size = {}", config.datapath.frame_size).unwrap();
    writeln!(w, "busy_poll = {}", config.datapath.busy_poll).unwrap();
    if let Some(frames) = config.datapath.umem_frames {
        writeln!(w, "umem_frames = {frames}").unwrap();
    }
    writeln!(w, "[fdb]").unwrap();
    writeln!(w, "size = {}", config.fdb_capacity).unwrap();
    writeln!(w, "age = {}", config.fdb_max_age).unwrap();
    for port in &config.ports {
        let spec = PortSpec::from(port);
        writeln!(w, "[[port]]").unwrap();
        writeln!(w, "name = {}", toml_string(&spec.name)).unwrap();
        let role = if spec.uplink { "uplink" } else { "downlink" };
        writeln!(w, "role = \"{role}\"").unwrap();
        writeln!(w, "hairpin = {}", spec.hairpin).unwrap();
        writeln!(w, "allowed_macs = {:?}", spec.allow).unwrap();
        writeln!(w, "static_macs = {:?}", spec.static_macs).unwrap();
        if let Some(vlan) = spec.vlan {
            writeln!(w, "vlan = {vlan}").unwrap();
        }
        if let Some(trunk) = &spec.trunk {
            writeln!(w, "trunk = \"{trunk}\"").unwrap();
        }
        if let Some(native) = spec.native {
            writeln!(w, "native = {native}").unwrap();
        }
        if let Some(max_macs) = spec.max_macs {
            writeln!(w, "max_macs = {max_macs}").unwrap();
        }
        let limits = &spec.limits;
        let counts = [
            ("storm_broadcast", limits.storm_broadcast),
            ("storm_multicast", limits.storm_multicast),
            ("storm_unknown_unicast", limits.storm_unknown_unicast),
            ("storm_burst", limits.storm_burst),
            ("police_pps", limits.police_pps),
        ];
        for (key, value) in counts {
            if let Some(n) = value {
                writeln!(w, "{key} = {n}").unwrap();
            }
        }
        // Rates and bursts as text, as "100M" is written.
        for (key, value) in [
            ("police_rate", &limits.police_rate),
            ("police_burst", &limits.police_burst),
        ] {
            if let Some(text) = value {
                writeln!(w, "{key} = {}", toml_string(text)).unwrap();
            }
        }
        writeln!(w, "allow_ip = {:?}", spec.allow_ip).unwrap();
    }
    for mirror in &config.mirrors {
        writeln!(w, "[[mirror]]").unwrap();
        writeln!(w, "name = {}", toml_string(&mirror.name)).unwrap();
        let from: Vec<String> = mirror.from.iter().map(|p| toml_string(p)).collect();
        writeln!(w, "from = [{}]", from.join(", ")).unwrap();
        writeln!(w, "direction = \"{}\"", direction_name(mirror.direction)).unwrap();
        writeln!(w, "to = {}", toml_string(&mirror.to)).unwrap();
    }
    out
}
