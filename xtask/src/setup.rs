//! `cargo xtask setup`: installs what is missing, and only that.
//!
//! Each step checks first and says what it found; a second run installs nothing.
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::{status, step};

/// Debian packages the build, the tests and the demo need.
const PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "LLVM 22, which bpf-linker links against"),
    ("libpolly-22-dev", "needed by LLVM 22's cmake files"),
    ("clang-22", "compiles libxdp's XDP dispatcher for xsk-rs"),
    ("m4", "libxdp's build"),
    ("libelf-dev", "libbpf (vendored by xsk-rs)"),
    ("zlib1g-dev", "libbpf (vendored by xsk-rs)"),
    ("pkg-config", "finding libelf and zlib"),
    (
        "iproute2",
        "network namespaces and veth for the demo and tests",
    ),
    ("iputils-ping", "ping in the demo and tests"),
    ("iperf3", "TCP streams in the demo and tests"),
    ("tcpdump", "captures in the tests"),
    (
        "libpcap-dev",
        "libpcap to link: the captures' filters (tcpdump's language)",
    ),
    (
        "busybox-static",
        "busybox httpd, the file server of the tests' verified TCP transfers",
    ),
    ("curl", "the client of the tests' verified TCP transfers"),
    (
        "qemu-system-x86",
        "the tests' VMs (TCG, virtio-net with qemu's default offloads)",
    ),
    (
        "libvirt-daemon-system",
        "libvirtd and virsh for the libvirt hook's test (its own daemon, the domains' taps)",
    ),
    (
        "linux-image-amd64",
        "the tests' guest kernel and its virtio-net and 802.1Q modules",
    ),
    ("cpio", "packs the tests' guest initramfs"),
    (
        "podman",
        "the container runtime of the tests (its CNI backend runs hairpin-cni)",
    ),
    (
        "runc",
        "podman's OCI runtime in the tests (crun refuses some cgroup layouts)",
    ),
    (
        "openvswitch-switch",
        "Open vSwitch: the VLAN reference bridge of the differential test, and a peer in the benchmark",
    ),
    (
        "ethtool",
        "GRO on lab veths the fast path sends into, and the tests' offload checks",
    ),
    (
        "systemd",
        "systemd-analyze, which checks contrib/hairpin.service in the tests",
    ),
    (
        "prometheus",
        "promtool, which checks the metrics endpoint's output in the tests",
    ),
    (
        "containernetworking-plugins",
        "the host-local IPAM plugin hairpin-cni delegates to in the tests",
    ),
];

/// Debian packages of the forwarders `cargo xtask bench` measures hairpin against.
const BENCH_PEERS: &[(&str, &str)] = &[
    ("dpdk-dev", "dpdk-testpmd, a peer in the benchmark"),
    ("librte-net-af-xdp23", "DPDK's AF_XDP poll-mode driver"),
    ("fonts-dejavu-core", "the text of the benchmark's charts"),
];

const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Runs every step.
pub fn run() -> Result<()> {
    nightly()?;
    packages()?;
    kubernetes_validate()?;
    bpf_linker()?;
    cargo_fuzz()?;
    step("setup: done");
    Ok(())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nightly() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to build the XDP program; install it from rustup.rs")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        step("setup: installing the nightly toolchain (the XDP program needs -Z build-std)");
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        step("setup: nightly rust-src: present");
    } else {
        step("setup: nightly rust-src: installing (to build core for bpfel-unknown-none)");
        status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

fn is_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.contains("install ok installed"))
}

/// Installs the benchmark's peers if missing. Failing is not fatal: the benchmark then
/// skips those peers and says why.
pub fn bench_peers() {
    if let Err(e) = install("benchmark peers", BENCH_PEERS) {
        step(&format!(
            "setup: benchmark peers not installed ({e:#}); the benchmark skips them"
        ));
    }
}

fn packages() -> Result<()> {
    install("Debian packages", PACKAGES)
}

/// The one Python package: `kubernetes-validate`, from PyPI, with which the tests check
/// `deploy/kubernetes/` (and whose PyYAML they read it with).
fn kubernetes_validate() -> Result<()> {
    if let Some(version) = output(Command::new("kubernetes-validate").arg("--version")) {
        step(&format!(
            "setup: kubernetes-validate {}: present",
            version.trim()
        ));
        return Ok(());
    }
    step(
        "setup: kubernetes-validate: installing from PyPI (checks deploy/kubernetes/ in the tests)",
    );
    status(Command::new("python3").args(["-m", "pip", "install", "-q", "kubernetes-validate"]))?;
    if output(Command::new("kubernetes-validate").arg("--version")).is_none() {
        bail!("pip installed kubernetes-validate, but it is not on PATH");
    }
    Ok(())
}

fn install(what: &str, packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<_> = packages.iter().filter(|(p, _)| !is_installed(p)).collect();
    if missing.is_empty() {
        step(&format!("setup: {what}: all {} present", packages.len()));
        return Ok(());
    }
    for (package, why) in &missing {
        step(&format!("setup: Debian package {package}: missing ({why})"));
    }
    if !crate::is_root() {
        bail!("installing Debian packages needs root: run `sudo -E cargo xtask setup`");
    }
    step("setup: apt-get update");
    status(Command::new("apt-get").args(["update", "-q"]))?;
    step("setup: apt-get install");
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(missing.iter().map(|(p, _)| p))
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    for (package, _) in &missing {
        if NO_DAEMON.contains(package) {
            quiet_daemon(package);
        }
    }
    Ok(())
}

/// Packages installed for a tool of theirs whose daemon the package starts and enables
/// (`prometheus` for promtool): setup stops and disables the daemon it brought.
const NO_DAEMON: &[&str] = &["prometheus"];

fn quiet_daemon(service: &str) {
    step(&format!(
        "setup: {service}: installed for its tools; its daemon is stopped and disabled"
    ));
    // Whichever init the machine has; neither may be there (a container), and the
    // daemon may not have started: nothing here is an error.
    for args in [
        vec!["systemctl", "disable", "--now", service],
        vec!["invoke-rc.d", service, "stop"],
        vec!["update-rc.d", service, "disable"],
    ] {
        let _ = Command::new(args[0])
            .args(&args[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn bpf_linker() -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version"));
    let links_llvm22 = output(Command::new("sh").args(["-c", "ldd \"$(command -v bpf-linker)\""]))
        .is_some_and(|l| l.contains("libLLVM.so.22"));
    if let Some(version) = &version
        && links_llvm22
    {
        step(&format!(
            "setup: {}: present, linked against LLVM 22",
            version.trim()
        ));
        return Ok(());
    }
    step(&format!(
        "setup: bpf-linker {BPF_LINKER_VERSION}: building against LLVM 22 (a few minutes, once)"
    ));
    status(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--force",
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )
}

/// cargo-fuzz's version line, if it is installed.
pub fn cargo_fuzz_version() -> Option<String> {
    output(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["fuzz", "--version"]),
    )
    .map(|v| v.trim().to_owned())
}

/// cargo-fuzz, which builds and runs the fuzz targets of `fuzz/` (`cargo xtask fuzz`, and
/// briefly in `cargo xtask test`).
fn cargo_fuzz() -> Result<()> {
    if let Some(version) = cargo_fuzz_version() {
        step(&format!("setup: {version}: present"));
        return Ok(());
    }
    step(&format!(
        "setup: cargo-fuzz {CARGO_FUZZ_VERSION}: installing (runs the fuzz targets)"
    ));
    status(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())).args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
        ]),
    )
}
