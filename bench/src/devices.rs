//! The devices under test: which there are ([`Dut`]), how each starts inside the DUT
//! namespace on the given ports ([`start_dut`]), and how it stops (the [`Stop`] it
//! returns).
use std::{
    path::Path,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hairpin::{
    control::xdp::XdpAttachMode,
    netlab::{Lab, Netns, ovs::Ovs},
};

use crate::Args;

/// A device under test (`--devices`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dut {
    /// No forwarder: the sink's XDP program on d0 itself, the generator's ceiling.
    Direct,
    Bridge,
    Xconnect,
    Veb,
    /// d0 a downlink, d1 the uplink: every frame goes up.
    Vepa,
    /// `veb` with VLANs: d0 an access port of VLAN 10, d1 a trunk; every frame gets a
    /// tag pushed on its way out.
    VebVlan,
    /// `vepa` with VLANs: d0 an access port of VLAN 10, d1 a trunk uplink.
    VepaVlan,
    /// `veb` with the kernel fast path on (`--fast-path on`), floods in the kernel too
    /// (`--fast-floods on`, the default).
    VebFast,
    /// `veb` with the kernel fast path for learned unicast only (`--fast-floods off`):
    /// broadcast, multicast and unknown unicast by the workers.
    VebFastNoFloods,
    /// `vepa` with the kernel fast path on.
    VepaFast,
    /// `veb vlan` with the kernel fast path on: the tag pushed inside XDP.
    VebVlanFast,
    /// dpdk-testpmd, AF_XDP poll-mode driver, `io` forwarding.
    TestpmdIo,
    /// dpdk-testpmd, AF_XDP poll-mode driver, `mac` forwarding.
    TestpmdMac,
    /// Open vSwitch userspace datapath, AF_XDP ports, one flow per direction.
    OvsFlows,
    /// Open vSwitch userspace datapath, AF_XDP ports, the learning switch (`NORMAL`).
    OvsNormal,
}

impl Dut {
    const ALL: [Self; 15] = [
        Self::Direct,
        Self::Bridge,
        Self::OvsFlows,
        Self::OvsNormal,
        Self::TestpmdIo,
        Self::TestpmdMac,
        Self::Xconnect,
        Self::Veb,
        Self::Vepa,
        Self::VebVlan,
        Self::VepaVlan,
        Self::VebFast,
        Self::VebFastNoFloods,
        Self::VepaFast,
        Self::VebVlanFast,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct (no DUT)",
            Self::Bridge => "linux bridge",
            Self::Xconnect => "hairpin xconnect",
            Self::Veb => "hairpin veb",
            Self::Vepa => "hairpin vepa",
            Self::VebVlan => "hairpin veb vlan",
            Self::VepaVlan => "hairpin vepa vlan",
            Self::VebFast => "hairpin veb fast",
            Self::VebFastNoFloods => "hairpin veb fast, no kernel floods",
            Self::VepaFast => "hairpin vepa fast",
            Self::VebVlanFast => "hairpin veb vlan fast",
            Self::TestpmdIo => "testpmd io",
            Self::TestpmdMac => "testpmd mac",
            Self::OvsFlows => "ovs afxdp flows",
            Self::OvsNormal => "ovs afxdp normal",
        }
    }

    /// Whether this is hairpin with its kernel fast path on.
    pub fn fast_path(self) -> bool {
        matches!(
            self,
            Self::VebFast | Self::VebFastNoFloods | Self::VepaFast | Self::VebVlanFast
        )
    }

    /// How the sink on s0 attaches for this device: natively where the device sends
    /// xdp_frames (the fast path redirects them, and a veth takes redirected frames only
    /// when its peer runs XDP natively or has GRO on), else `default` (`--sink-xdp`).
    pub fn sink_mode(self, default: XdpAttachMode) -> XdpAttachMode {
        if self.fast_path() {
            XdpAttachMode::Native
        } else {
            default
        }
    }

    /// The VLAN the sink's port s0 is in, tagged (d1 is then a trunk).
    pub fn sink_vlan(self) -> Option<u16> {
        matches!(self, Self::VebVlan | Self::VepaVlan | Self::VebVlanFast).then_some(10)
    }

    /// Whether RFC 2889's learning tests apply: a learning switch on any number of ports.
    pub fn learns(self) -> bool {
        matches!(
            self,
            Self::Veb | Self::VebFast | Self::VebFastNoFloods | Self::Bridge | Self::OvsNormal
        )
    }

    /// Whether it carries frames longer than 1518 bytes on veths of MTU 9000. Open
    /// vSwitch's and DPDK's AF_XDP ports attach single-buffer XDP programs, which a veth
    /// refuses beyond about 3500 bytes of MTU: they are not measured at jumbo sizes.
    pub fn carries_jumbo(self) -> bool {
        !matches!(
            self,
            Self::TestpmdIo | Self::TestpmdMac | Self::OvsFlows | Self::OvsNormal
        )
    }

    /// The program this device needs, if it is not part of this workspace.
    fn program(self) -> Option<&'static str> {
        match self {
            Self::TestpmdIo | Self::TestpmdMac => Some("dpdk-testpmd"),
            Self::OvsFlows | Self::OvsNormal => Some("ovs-vswitchd"),
            _ => None,
        }
    }
}

/// The devices `--devices` names (all by default), less those whose program is not
/// installed, each skipped with a printed reason.
pub fn selected(args: &Args) -> Vec<Dut> {
    if args.devices.is_empty() {
        Dut::ALL.to_vec()
    } else {
        args.devices.clone()
    }
    .into_iter()
    .filter(|d| match d.program() {
        Some(program) if !on_path(program) => {
            println!(
                "hairpin-bench: skipping {}: {program} is not installed (`cargo xtask bench` installs it)",
                d.name()
            );
            false
        }
        _ => true,
    })
    .collect()
}

/// Whether `program` is found on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// How to stop a device that [`start_dut`] started.
pub type Stop = Box<dyn FnOnce(&mut Lab, &Netns) -> Result<()>>;

/// The DUT's ports in the RFC 2544 topology.
pub const TWO_PORTS: &[&str] = &["d0", "d1"];
/// The DUT's ports in the RFC 2889 topology: d2 leads to the monitor port m0.
pub const THREE_PORTS: &[&str] = &["d0", "d1", "d2"];

/// Starts device `kind` on `ports` (the learning switches take [`THREE_PORTS`] too;
/// the others only [`TWO_PORTS`]); returns how to stop it.
pub fn start_dut(
    lab: &mut Lab,
    dut: &Netns,
    kind: Dut,
    args: &Args,
    core: usize,
    ports: &[&str],
) -> Result<Stop> {
    match kind {
        Dut::Direct => Ok(Box::new(|_, _| Ok(()))),
        Dut::Bridge => start_bridge(dut, ports),
        Dut::TestpmdIo | Dut::TestpmdMac => {
            start_testpmd(lab, dut, kind == Dut::TestpmdIo, args, core)
        }
        Dut::OvsFlows | Dut::OvsNormal => start_ovs(lab, dut, kind == Dut::OvsNormal, core, ports),
        Dut::Xconnect
        | Dut::Veb
        | Dut::Vepa
        | Dut::VebVlan
        | Dut::VepaVlan
        | Dut::VebFast
        | Dut::VebFastNoFloods
        | Dut::VepaFast
        | Dut::VebVlanFast => start_hairpin(lab, dut, kind, args, core, ports),
    }
}

/// The Linux bridge br0 over `ports`.
fn start_bridge(dut: &Netns, ports: &[&str]) -> Result<Stop> {
    dut.ip(&["link", "add", "br0", "type", "bridge"])?;
    for &port in ports {
        dut.ip(&["link", "set", port, "master", "br0"])?;
    }
    dut.ip(&["link", "set", "br0", "up"])?;
    Ok(Box::new(|_, dut| {
        dut.ip(&["link", "del", "br0"])?;
        Ok(())
    }))
}

/// dpdk-testpmd on d0 and d1 with the AF_XDP poll-mode driver, `io` forwarding (else
/// `mac`), its forwarding lcore on `core`.
fn start_testpmd(lab: &mut Lab, dut: &Netns, io: bool, args: &Args, core: usize) -> Result<Stop> {
    let mode = if io { "io" } else { "mac" };
    // `ip netns exec` gives the command a mount namespace of its own, where the
    // AF_XDP driver's libbpf finds bpffs once mounted.
    let script = format!(
        "mount -t bpf bpf /sys/fs/bpf && exec dpdk-testpmd -l {main},{core} --main-lcore {main} \
         --no-huge --no-shconf --no-pci -m 1024 --log-level=warning \
         --vdev net_af_xdp0,iface=d0 --vdev net_af_xdp1,iface=d1 -- \
         --forward-mode={mode} --auto-start --nb-cores=1 --rxq=1 --txq=1 --stats-period=3600 \
         --record-core-cycles",
        main = if core == 0 { 1 } else { 0 },
    );
    let mut cmd = dut.command("sh");
    cmd.args(["-c", &script])
        .stdout(log_target(args.dut_log.as_deref())?)
        .stderr(log_target(args.dut_log.as_deref())?);
    spawn_attached(lab, dut, cmd, "testpmd", &["d0", "d1"])
}

/// Starts `cmd` as a process of the lab and waits until every one of `ports` has an XDP
/// program; the returned stop ends it.
fn spawn_attached(
    lab: &mut Lab,
    dut: &Netns,
    cmd: std::process::Command,
    what: &str,
    ports: &[&str],
) -> Result<Stop> {
    lab.spawn(cmd)?;
    if !dut.wait_for_xdp(ports, Duration::from_secs(20)) {
        bail!("{what} did not attach within 20 s");
    }
    let index = lab.process_count() - 1;
    Ok(Box::new(move |lab, _| stop_processes(lab, index)))
}

/// The `hairpin` binary under test in mode `kind` on `ports`, its worker on `core`.
fn start_hairpin(
    lab: &mut Lab,
    dut: &Netns,
    kind: Dut,
    args: &Args,
    core: usize,
    ports: &[&str],
) -> Result<Stop> {
    const VLANS: [&str; 4] = ["--vlan", "d0=10", "--trunk", "d1=10,20"];
    let list = ports.join(",");
    let run_args: Vec<&str> = match kind {
        Dut::Xconnect => vec!["--mode", "xconnect", "--ports", "d0,d1"],
        // No per-port limit on d0's learning (`--max-macs`, 4096 on a downlink by
        // default): RFC 2889 teaches the table through d0 alone and measures the table.
        Dut::Veb | Dut::VebFast | Dut::VebFastNoFloods => {
            vec!["--mode", "veb", "--ports", &list, "--max-macs", "d0=0"]
        }
        Dut::Vepa | Dut::VepaFast => vec!["--mode", "vepa", "--ports", "d0", "--uplink", "d1"],
        Dut::VebVlan | Dut::VebVlanFast => {
            [&["--mode", "veb", "--ports", "d0,d1"][..], &VLANS].concat()
        }
        _ => [
            &["--mode", "vepa", "--ports", "d0", "--uplink", "d1"][..],
            &VLANS,
        ]
        .concat(),
    };
    let fast = kind.fast_path();
    let mut cmd = dut.command(&args.hairpin.to_string_lossy());
    // A control socket of its own: the bench runs beside any other hairpin.
    let socket = format!("/run/hairpin/bench-{}.sock", std::process::id());
    cmd.arg("run")
        .args(&run_args)
        .args(["--fast-path", if fast { "on" } else { "off" }])
        // (Only where it is off: older binaries, measured against, have no such option.)
        .args(if kind == Dut::VebFastNoFloods {
            &["--fast-floods", "off"][..]
        } else {
            &[]
        })
        .args(["--cores", &core.to_string(), "--socket", &socket])
        .args(args.hairpin_args.split_whitespace())
        .stdout(log_target(args.dut_log.as_deref())?)
        .stderr(log_target(args.dut_log.as_deref())?);
    let stop = spawn_attached(lab, dut, cmd, "hairpin", ports)?;
    // xconnect has exactly its two ports.
    if kind != Dut::Xconnect {
        add_idle_ports(lab, dut, args, &socket)?;
    }
    if let Some(capture) = &args.capture {
        start_capture(lab, dut, args, &socket, capture)?;
    }
    Ok(stop)
}

/// `--capture ARGS`: `hairpin capture ARGS -w /dev/null` against the running hairpin,
/// stopped with it (the lab stops its processes last first); returns once hairpin
/// captures.
fn start_capture(
    lab: &mut Lab,
    dut: &Netns,
    args: &Args,
    socket: &str,
    capture: &str,
) -> Result<()> {
    let mut cmd = dut.command(&args.hairpin.to_string_lossy());
    cmd.arg("capture")
        .args(capture.split_whitespace())
        .args(["-w", "/dev/null", "--socket", socket])
        .stdout(Stdio::null())
        .stderr(log_target(args.dut_log.as_deref())?);
    lab.spawn(cmd)?;
    // Its `capturing` line goes to the log; the answer takes well under this.
    thread::sleep(Duration::from_millis(500));
    let index = lab.process_count() - 1;
    let process = lab.process(index).context("the capture")?;
    if let Some(status) = process.child().try_wait()? {
        bail!("hairpin capture {capture} ended at once: {status}");
    }
    Ok(())
}

/// `--idle-ports N`: N veth pairs in the DUT's namespace, one end of each added to the
/// running hairpin (the lab removes them with the namespace). Not for xconnect, which
/// has exactly two ports.
fn add_idle_ports(lab: &Lab, dut: &Netns, args: &Args, socket: &str) -> Result<()> {
    let names: Vec<(String, String)> = (0..args.idle_ports)
        .map(|i| (format!("idle{i}a"), format!("idle{i}b")))
        .collect();
    // Made for the first device, kept for the next (the namespace outlives them).
    if args.idle_ports > 0 && dut.ip(&["link", "show", &names[0].0]).is_err() {
        lab.veth_pairs(dut, &names)?;
    }
    for (a, _) in &names {
        let out = dut.run(
            &args.hairpin.to_string_lossy(),
            &["port", "add", a, "--socket", socket],
        );
        out.with_context(|| format!("adding idle port {a}"))?;
    }
    Ok(())
}

/// Open vSwitch ([`Ovs`]: its database in a directory of its own), the userspace
/// (`netdev`) datapath, `ports` as AF_XDP ports with one queue each, its PMD thread on
/// `core`; the learning switch if `normal`, else one flow per direction.
fn start_ovs(
    lab: &mut Lab,
    dut: &Netns,
    normal: bool,
    core: usize,
    ports: &[&str],
) -> Result<Stop> {
    let first = lab.process_count();
    let ovs = Ovs::start(lab, dut)?;
    let mask = format!("other_config:pmd-cpu-mask={:#x}", 1u64 << core);
    ovs.vsctl(&["set", "Open_vSwitch", ".", &mask])?;
    ovs.add_userspace_bridge("br0")?;
    for &port in ports {
        ovs.vsctl(&[
            "add-port",
            "br0",
            port,
            "--",
            "set",
            "interface",
            port,
            "type=afxdp",
            "options:xdp-mode=native",
            "options:n_rxq=1",
        ])?;
    }
    if !normal {
        ovs.ofctl(&["del-flows", "br0"])?;
        ovs.ofctl(&["add-flow", "br0", "in_port=d0,actions=output:d1"])?;
        ovs.ofctl(&["add-flow", "br0", "in_port=d1,actions=output:d0"])?;
    }
    if !dut.wait_for_xdp(ports, Duration::from_secs(20)) {
        let error = anyhow::anyhow!(
            "Open vSwitch did not attach within 20 s (logs in {})",
            ovs.dir().display()
        );
        // The error points at the logs: keep the directory.
        ovs.keep_logs();
        return Err(error);
    }
    Ok(Box::new(move |lab, _| {
        // Removing the bridge detaches the XDP programs before the daemons stop.
        let removed = ovs.vsctl(&["del-br", "br0"]);
        stop_processes(lab, first)?;
        removed?;
        // The directory goes only now, with the daemons stopped.
        drop(ovs);
        Ok(())
    }))
}

/// Where a device's output goes: appended to `path`, or nowhere.
fn log_target(path: Option<&Path>) -> Result<Stdio> {
    Ok(match path {
        None => Stdio::null(),
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?
            .into(),
    })
}

/// Stops the lab's processes from index `first` on, newest first, with SIGTERM, and waits
/// for each to exit.
fn stop_processes(lab: &mut Lab, first: usize) -> Result<()> {
    for index in (first..lab.process_count()).rev() {
        let process = lab.process(index).context("no process to stop")?;
        if process.child().try_wait()?.is_some() {
            continue;
        }
        process.signal(libc::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while process.child().try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("process {index} of the lab did not stop within 10 s of SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
