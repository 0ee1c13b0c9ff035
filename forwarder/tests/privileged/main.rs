//! Privileged integration tests: real namespaces, real veths, this kernel's XDP and AF_XDP.
//!
//! Built only with `--features privileged-tests` (`cargo xtask test` turns it on). Every
//! test builds its own [`hairpin::netlab::Lab`], named after the test and this process,
//! and the lab removes itself on every path, panics included. A test that cannot run
//! here (not root, no AF_XDP) fails with the reason; none passes by skipping.

mod capacity;
mod capture;
mod cni;
mod datapath;
mod differential;
mod edge;
mod fast_path;
mod fast_vlan;
mod faults;
mod guard;
mod guest;
mod jumbo;
mod kernel_floods;
mod learning;
mod libvirt;
mod lifecycle;
mod limits;
mod metrics_bounds;
mod mirror;
mod observe;
mod offloads;
mod podman;
mod reload;
mod reserved;
mod runtime;
mod service;
mod soak;
mod state;
mod trace;
mod vlan;
mod vms;
mod xdp_counters;

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    thread,
    time::Duration,
};

use hairpin::{
    control::{
        bridge::Bridge,
        config::{BridgeConfig, PortConfig},
        port::Interface,
        preflight,
        xdp::{FastFloods, FastPath, XdpAttachMode},
    },
    datapath::{DatapathConfig, Snapshot},
    netlab::{Lab, LabError, Netns},
    switch::{Mode, PortId, PortPolicy, vlan::PortVlans},
    wire::Mac,
};

/// A fresh lab for one test, after checking that privileged tests can run at all.
pub fn lab(tag: &str) -> Lab {
    if let Err(e) = preflight::check() {
        panic!("privileged tests cannot run here: {e}");
    }
    Lab::sweep_stale();
    Lab::new(tag)
}

/// Pings `addr` from inside `ns`: `count` echoes, failing on the first unanswered one.
pub fn ping(ns: &Netns, addr: &str, count: u32) -> Result<(), LabError> {
    let count = count.to_string();
    ns.run("ping", &["-c", &count, "-i", "0.05", "-W", "2", "-q", addr])
        .map(drop)
}

/// The MAC address of `ifname` in `ns`.
pub fn mac_of(ns: &Netns, ifname: &str) -> Mac {
    ns.enter(|| Interface::lookup(ifname).unwrap().mac).unwrap()
}

/// A switch namespace `sw` with ports `p0..pN`, each cabled to a "VM" namespace whose
/// `eth0` has address 198.18.0.(i+1)/24.
#[derive(Debug)]
pub struct Topology {
    pub lab: Lab,
    pub sw: Netns,
    pub vms: Vec<Netns>,
}

impl Topology {
    /// The MAC address of VM `vm`'s `eth0`.
    pub fn vm_mac(&self, vm: usize) -> Mac {
        mac_of(&self.vms[vm], "eth0")
    }

    /// Lets the fast path send to every VM: a veth takes redirected frames only while
    /// its peer has GRO on (or runs XDP). GRO is off by default on a veth, so this is a
    /// lab setting, for tests about something else that run on the fast path (the
    /// offloads tests run with the defaults).
    pub fn fast_path_ready(&self) {
        for vm in &self.vms {
            vm.run("ethtool", &["-K", "eth0", "gro", "on"]).unwrap();
        }
    }

    /// One VM per entry of `queues`, its veth pair with that many queues per end.
    pub fn new(tag: &str, queues: &[u32]) -> Self {
        let mut lab = lab(tag);
        let sw = lab.add_ns("sw").unwrap();
        let mut vms = Vec::new();
        for (i, &q) in queues.iter().enumerate() {
            let vm = lab.add_ns(&format!("vm{i}")).unwrap();
            // No IPv6 chatter (router solicitations, MLD): tests count and age frames.
            for scope in ["all", "default"] {
                vm.run(
                    "sysctl",
                    &["-qw", &format!("net.ipv6.conf.{scope}.disable_ipv6=1")],
                )
                .unwrap();
            }
            lab.veth((&vm, "eth0"), (&sw, &format!("p{i}")), q).unwrap();
            vm.ip(&[
                "addr",
                "add",
                &format!("198.18.0.{}/24", i + 1),
                "dev",
                "eth0",
            ])
            .unwrap();
            vms.push(vm);
        }
        Self { lab, sw, vms }
    }

    /// The address of VM `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("198.18.0.{}", i + 1)
    }

    /// The switch-side port names.
    pub fn port_names(&self) -> Vec<String> {
        (0..self.vms.len()).map(|i| format!("p{i}")).collect()
    }

    /// Starts a bridge in-process on every switch-side port.
    pub fn start(&self, config: TestConfig) -> Bridge {
        let names = self.port_names();
        let ports: Vec<&str> = names.iter().map(String::as_str).collect();
        start_in(&self.sw, &ports, config)
    }
}

/// What a test sets of a bridge; [`start_in`] names the ports.
#[derive(Clone, Debug)]
pub struct TestConfig {
    pub mode: Mode,
    /// Per port, in the order of the port names (missing: a plain downlink).
    pub policies: Vec<PortPolicy>,
    /// (port index, MAC).
    pub static_macs: Vec<(PortId, Mac)>,
    pub fdb_capacity: usize,
    pub fdb_max_age: u32,
    pub busy_poll: bool,
    pub group_fwd_mask: u16,
    pub fast_path: FastPath,
    pub fast_floods: FastFloods,
    pub xdp_mode: XdpAttachMode,
}

impl Default for TestConfig {
    fn default() -> Self {
        let d = BridgeConfig::default();
        Self {
            mode: d.mode,
            policies: Vec::new(),
            static_macs: Vec::new(),
            fdb_capacity: d.fdb_capacity,
            fdb_max_age: d.fdb_max_age,
            busy_poll: false,
            group_fwd_mask: d.group_fwd_mask,
            fast_path: d.fast_path,
            fast_floods: d.fast_floods,
            xdp_mode: d.xdp_mode,
        }
    }
}

impl TestConfig {
    /// The bridge on `ports`.
    pub fn bridge(&self, ports: &[&str]) -> BridgeConfig {
        BridgeConfig {
            mode: self.mode,
            ports: ports
                .iter()
                .enumerate()
                .map(|(i, name)| PortConfig {
                    name: (*name).to_owned(),
                    policy: self.policies.get(i).cloned().unwrap_or_default(),
                    static_macs: self
                        .static_macs
                        .iter()
                        .filter(|(p, _)| usize::from(*p) == i)
                        .map(|&(_, m)| m)
                        .collect(),
                })
                .collect(),
            fdb_capacity: self.fdb_capacity,
            fdb_max_age: self.fdb_max_age,
            group_fwd_mask: self.group_fwd_mask,
            fast_path: self.fast_path,
            fast_floods: self.fast_floods,
            xdp_mode: self.xdp_mode,
            datapath: DatapathConfig {
                busy_poll: self.busy_poll,
                ..DatapathConfig::default()
            },
            ..BridgeConfig::default()
        }
    }
}

/// A policy per port giving it these VLAN settings, and nothing else.
pub fn vlan_policies(vlans: &[PortVlans]) -> Vec<PortPolicy> {
    vlans
        .iter()
        .map(|v| PortPolicy {
            vlans: Some(v.clone()),
            ..PortPolicy::default()
        })
        .collect()
}

/// Starts a bridge in-process on `ports` of namespace `sw` (its sockets and lookups
/// stay in that namespace).
pub fn start_in(sw: &Netns, ports: &[&str], config: TestConfig) -> Bridge {
    let config = config.bridge(ports);
    sw.enter(|| Bridge::start(config)).unwrap().unwrap()
}

/// The counters of a bridge stopped by [`finish`].
#[derive(Debug)]
pub struct Finished {
    pub snapshot: Snapshot,
    pub fdb_entries: usize,
}

impl std::ops::Deref for Finished {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// Stops a bridge started by [`start_in`], checking no worker panicked.
pub fn finish(bridge: Bridge) -> Finished {
    let snapshot = bridge.snapshot();
    let fdb_entries = bridge.fdb().len();
    let (_, panicked) = bridge.stop();
    assert_eq!(panicked, 0);
    Finished {
        snapshot,
        fdb_entries,
    }
}

/// Streams TCP from VM `client` to VM `server` for `seconds` with `flows` parallel
/// connections; fails unless iperf3 reports success.
pub fn iperf(
    topo: &Topology,
    client: usize,
    server: usize,
    seconds: u32,
    flows: u32,
) -> Result<(), LabError> {
    iperf_report(topo, client, server, seconds, flows).map(drop)
}

/// [`iperf`], returning the client's report.
pub fn iperf_report(
    topo: &Topology,
    client: usize,
    server: usize,
    seconds: u32,
    flows: u32,
) -> Result<String, LabError> {
    let addr = topo.addr(server);
    let mut daemon = topo.vms[server].command("iperf3");
    daemon.args(["-s", "-1", "-B", &addr]).stdout(Stdio::null());
    let mut server_proc = daemon.spawn().map_err(|source| LabError::Spawn {
        command: "iperf3 -s".into(),
        source,
    })?;
    // Give it a moment to listen; the client retries its connect within its timeout too.
    thread::sleep(Duration::from_millis(300));
    let (s, f) = (seconds.to_string(), flows.to_string());
    let result = topo.vms[client]
        .run(
            "timeout",
            &[
                "30",
                "iperf3",
                "-c",
                &addr,
                "-t",
                &s,
                "-P",
                &f,
                "--connect-timeout",
                "3000",
            ],
        )
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    let _ = server_proc.kill();
    let _ = server_proc.wait();
    result
}

/// tcpdump writing everything `ifname` of `ns` sees to a file, until dropped.
#[derive(Debug)]
pub struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing and waits until tcpdump has opened the interface.
    pub fn start(ns: &Netns, ifname: &str, file: PathBuf) -> Self {
        let capture = Self::spawn(ns, ifname, file, &[]);
        Self::settle();
        capture
    }

    /// Starts tcpdump with `args` and returns at once: for several captures started
    /// together, followed by one [`Capture::settle`].
    pub fn spawn(ns: &Netns, ifname: &str, file: PathBuf, args: &[&str]) -> Self {
        let mut cmd = ns.command("tcpdump");
        cmd.args(["-i", ifname, "-nn", "-U"])
            .args(args)
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("starting tcpdump");
        Self { child, file }
    }

    /// Gives tcpdump a moment to open its interface; nothing is sent before that.
    pub fn settle() {
        thread::sleep(Duration::from_millis(700));
    }

    /// Stops the capture and returns it decoded, one line per frame, link level shown.
    /// Frames sent just before are given a second to be written (a loaded machine
    /// delays tcpdump, not the frames).
    pub fn finish(mut self) -> Vec<String> {
        thread::sleep(Duration::from_secs(1));
        self.stop();
        let out = std::process::Command::new("tcpdump")
            .args(["-nn", "-e", "-r"])
            .arg(&self.file)
            .stderr(Stdio::null())
            .output()
            .expect("reading the capture");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Stops the capture at once and returns its frames, bytes as on the wire (libpcap
    /// puts back the 802.1Q tag the kernel moved out of the frame). The caller gives
    /// tcpdump time to write the last frames first.
    pub fn frames(mut self) -> Vec<Vec<u8>> {
        self.stop();
        let file = std::fs::File::open(&self.file).expect("opening the capture");
        let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap file");
        let mut frames = Vec::new();
        while let Some(packet) = reader.next_packet() {
            frames.push(packet.expect("a pcap record").data.into_owned());
        }
        frames
    }

    fn stop(&mut self) {
        let _ = send_signal(&self.child, libc::SIGINT);
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

fn send_signal(child: &Child, signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: signals a child we spawned and have not reaped.
    if unsafe { libc::kill(child.id() as libc::pid_t, signal) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An AF_PACKET socket on `ifname` of the calling thread's namespace (call it inside
/// [`Netns::enter`]).
pub fn packet_socket(ifname: &str) -> hairpin::netlab::PacketSocket {
    let index = Interface::lookup(ifname).unwrap().ifindex;
    hairpin::netlab::PacketSocket::open(index).expect("AF_PACKET socket")
}

/// Sends raw Ethernet frames out of `ifname` in `ns` through an AF_PACKET socket.
pub fn send_raw(ns: &Netns, ifname: &str, frames: &[Vec<u8>]) {
    ns.enter(|| {
        let socket = packet_socket(ifname);
        for frame in frames {
            socket.send(frame).expect("sending a raw frame");
        }
    })
    .unwrap();
}

/// The SHA-256 of `bytes`, as sha256sum prints it.
pub fn sha256(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}
