//! The files in `contrib/` stay true to hairpin: the example config parses to what its
//! comments say, and the systemd unit passes `systemd-analyze verify`, grants exactly the
//! capabilities the preflight check asks for, and lets through the system calls hairpin
//! makes. No root needed; `systemd-analyze` is (Debian package `systemd`, which
//! `cargo xtask setup` installs). Without it these tests fail, never skip.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use hairpin::{
    control::{config_file, preflight::CAPABILITIES, service::DEFAULT_SOCKET, xdp::XdpAttachMode},
    datapath::ZeroCopy,
    switch::{Mode, Role, vlan::PortVlans},
    wire::Mac,
};

/// Where the unit expects the binary; the verify test points it at this build's.
const INSTALLED_BINARY: &str = "/usr/local/bin/hairpin";

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(name)
}

fn read(name: &str) -> String {
    let path = contrib(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs `systemd-analyze ARGS`, failing loudly when it is not installed.
fn systemd_analyze(args: &[&std::ffi::OsStr]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run systemd-analyze ({e}): these tests need the Debian package `systemd` \
                 (`apt-get install systemd`, or `cargo xtask setup`)"
            )
        })
}

/// The values of every `key=` line of a unit file, in order (comments skipped).
fn settings<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .collect()
}

/// The one value of `key`, which the unit must set exactly once.
fn setting<'a>(unit: &'a str, key: &str) -> &'a str {
    match settings(unit, key)[..] {
        [value] => value,
        ref values => panic!("hairpin.service sets {key} {} times", values.len()),
    }
}

fn mac(text: &str) -> Mac {
    text.parse().unwrap()
}

#[test]
fn the_example_config_is_what_its_comments_say() {
    let config = config_file::parse(&read("hairpin.toml"), &contrib("hairpin.toml"))
        .unwrap_or_else(|e| panic!("contrib/hairpin.toml does not parse: {e}"));

    assert_eq!(config.mode, Mode::Veb);
    let names: Vec<_> = config.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "enp65s0f0",
            "enp65s0f0v0",
            "enp65s0f0v1",
            "enp65s0f0v2",
            "enp65s0f0v3"
        ]
    );

    // The uplink: a trunk of the VMs' VLANs, management untagged in VLAN 1.
    let uplink = &config.ports[0].policy;
    assert_eq!(uplink.role, Role::Uplink);
    assert_eq!(
        uplink.vlans,
        Some(PortVlans::Trunk {
            tagged: vec![10, 20, 30],
            native: Some(1)
        })
    );
    assert!(
        config.ports[1..]
            .iter()
            .all(|p| p.policy.role == Role::Downlink)
    );
    assert!(config.ports.iter().all(|p| !p.policy.hairpin));

    // web1, web2 in VLAN 10 and db1 in VLAN 20, each locked to and known by its MAC.
    for (port, vlan, station) in [
        (1, 10, "52:54:00:0a:00:01"),
        (2, 10, "52:54:00:0a:00:02"),
        (3, 20, "52:54:00:14:00:01"),
    ] {
        let p = &config.ports[port];
        assert_eq!(p.policy.vlans, Some(PortVlans::Access(vlan)), "{}", p.name);
        assert_eq!(p.policy.allowed_sources, [mac(station)], "{}", p.name);
        assert_eq!(p.static_macs, [mac(station)], "{}", p.name);
    }

    // The router: every VLAN tagged, no native VLAN, its MACs learned.
    let router = &config.ports[4];
    assert_eq!(
        router.policy.vlans,
        Some(PortVlans::Trunk {
            tagged: vec![10, 20, 30],
            native: None
        })
    );
    assert!(router.policy.allowed_sources.is_empty() && router.static_macs.is_empty());

    assert_eq!(config.queues, Some(2));
    assert_eq!(config.cores.as_deref(), Some(&[2, 3][..]));
    assert_eq!(config.xdp_mode, XdpAttachMode::Auto);
    assert_eq!(config.datapath.zero_copy, ZeroCopy::Auto);
    assert_eq!(
        (config.datapath.ring_size, config.datapath.frame_size),
        (2048, 2048)
    );
    assert!(!config.datapath.busy_poll);
    assert_eq!(config.datapath.umem_frames, None);
    assert_eq!((config.fdb_capacity, config.fdb_max_age), (16384, 300));
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let unit = read("hairpin.service");
    let exec_start = setting(&unit, "ExecStart");
    assert!(
        exec_start.starts_with(&format!("{INSTALLED_BINARY} run --config ")),
        "ExecStart={exec_start}"
    );
    // systemd-analyze checks that the binary exists: point the copy at this build's.
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("contrib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hairpin.service");
    std::fs::write(
        &path,
        unit.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_hairpin")),
    )
    .unwrap();

    let out = systemd_analyze(&["verify".as_ref(), path.as_os_str()]);
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about_the_unit: Vec<&str> = stderr.lines().filter(|l| l.contains("hairpin")).collect();
    assert!(
        out.status.success() && about_the_unit.is_empty(),
        "systemd-analyze verify {}: {}\n{stderr}",
        path.display(),
        out.status
    );
}

#[test]
fn the_unit_grants_exactly_the_capabilities_preflight_checks() {
    let unit = read("hairpin.service");
    let wanted: BTreeSet<&str> = CAPABILITIES.iter().map(|(_, name, _)| *name).collect();
    for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        let listed: Vec<&str> = setting(&unit, key).split_whitespace().collect();
        let set: BTreeSet<&str> = listed.iter().copied().collect();
        assert_eq!(set, wanted, "{key}");
        assert_eq!(set.len(), listed.len(), "{key} lists one twice");
    }
    assert_ne!(setting(&unit, "User"), "root");
    assert_eq!(setting(&unit, "NoNewPrivileges"), "yes");
}

#[test]
fn the_unit_is_a_notify_service_that_reloads_on_sighup() {
    let unit = read("hairpin.service");
    assert_eq!(setting(&unit, "Type"), "notify");
    assert_eq!(setting(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert!(setting(&unit, "ExecStart").contains(" run --config /etc/hairpin/hairpin.toml"));
    // The control socket's default directory, made by systemd for the unprivileged user.
    let socket_dir = Path::new(DEFAULT_SOCKET).parent().unwrap();
    assert_eq!(
        Path::new("/run").join(setting(&unit, "RuntimeDirectory")),
        socket_dir
    );
    assert_eq!(setting(&unit, "RuntimeDirectoryMode"), "0700");
    // Run-time ports are kept there, and the directory outlives a restart.
    assert!(
        setting(&unit, "ExecStart").contains(&format!(" --state-dir {} ", socket_dir.display())),
        "ExecStart keeps no state in {}",
        socket_dir.display()
    );
    assert_eq!(setting(&unit, "RuntimeDirectoryPreserve"), "yes");
    assert_eq!(setting(&unit, "LimitMEMLOCK"), "infinity");
    let families: BTreeSet<&str> = setting(&unit, "RestrictAddressFamilies")
        .split_whitespace()
        .collect();
    for family in ["AF_XDP", "AF_NETLINK", "AF_UNIX", "AF_INET", "AF_INET6"] {
        assert!(
            families.contains(family),
            "RestrictAddressFamilies lacks {family}"
        );
    }
    // The host's interfaces, and capabilities in the host's namespaces.
    for key in ["PrivateNetwork", "PrivateUsers", "CPUAffinity"] {
        assert!(settings(&unit, key).is_empty(), "{key} must not be set");
    }
}

/// The system calls `hairpin run` makes, as `strace -f` saw them on x86_64 through a
/// whole run (start with `--metrics`, frames forwarded, `port add`/`port del`,
/// `show ports|stats`, a scrape, `top --once`, `reload`, SIGHUP, SIGUSR1, SIGTERM), plus
/// those its code makes on paths that run did not take (`connect`/`sendmsg` for
/// sd_notify, `recvmsg` in netlink-sys, `ppoll`, `kill`, `getdents64`). A filter that
/// drops one fails here rather than with SIGSYS on a host.
const NEEDED_SYSCALLS: &[&str] = &[
    "accept4",
    "access",
    "arch_prctl",
    "bind",
    "bpf",
    "brk",
    "chmod",
    "clock_nanosleep",
    "clone3",
    "close",
    "connect",
    "eventfd2",
    "execve",
    "fcntl",
    "futex",
    "getdents64",
    "getpeername",
    "getrandom",
    "getsockname",
    "getsockopt",
    "gettid",
    "ioctl",
    "kill",
    "listen",
    "mmap",
    "mprotect",
    "mremap",
    "munmap",
    "newfstatat",
    "openat",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "prlimit64",
    "read",
    "recvfrom",
    "recvmsg",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_getaffinity",
    "sched_setaffinity",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_tid_address",
    "setsockopt",
    "shutdown",
    "sigaltstack",
    "socket",
    "socketpair",
    "statx",
    "uname",
    "write",
];

/// systemd's system call groups (`@name` -> members, which may be groups).
fn syscall_groups() -> BTreeMap<String, Vec<String>> {
    let out = systemd_analyze(&["syscall-filter".as_ref()]);
    assert!(
        out.status.success(),
        "systemd-analyze syscall-filter: {}",
        out.status
    );
    // `@group` at the start of a line, then its members indented (`# ...`: its
    // description), then a blank line.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let member = line.trim();
        if line.starts_with('@') {
            current = Some(member.to_owned());
        } else if !line.starts_with(' ') {
            current = None;
        } else if let Some(group) = &current
            && !member.starts_with('#')
        {
            groups
                .entry(group.clone())
                .or_default()
                .push(member.to_owned());
        }
    }
    groups
}

fn expand(groups: &BTreeMap<String, Vec<String>>, name: &str, into: &mut BTreeSet<String>) {
    if name.starts_with('@') {
        let members = groups
            .get(name)
            .unwrap_or_else(|| panic!("systemd knows no system call group {name}"));
        for member in members {
            expand(groups, member, into);
        }
    } else {
        into.insert(name.to_owned());
    }
}

#[test]
fn the_unit_system_call_filter_lets_through_what_hairpin_calls() {
    let unit = read("hairpin.service");
    let groups = syscall_groups();
    // As systemd reads them: the first line is an allow list; later lines add to it, or
    // take from it when they start with `~`.
    let mut allowed = BTreeSet::new();
    for (i, line) in settings(&unit, "SystemCallFilter").into_iter().enumerate() {
        let (deny, names) = match line.strip_prefix('~') {
            Some(names) => (true, names),
            None => (false, line),
        };
        assert!(
            !(deny && i == 0),
            "the first SystemCallFilter= must be an allow list"
        );
        let mut set = BTreeSet::new();
        for name in names.split_whitespace() {
            expand(&groups, name, &mut set);
        }
        if deny {
            allowed.retain(|s| !set.contains(s));
        } else {
            allowed.extend(set);
        }
    }
    assert!(
        !allowed.is_empty(),
        "hairpin.service has no SystemCallFilter="
    );
    let blocked: Vec<_> = NEEDED_SYSCALLS
        .iter()
        .filter(|s| !allowed.contains(**s))
        .collect();
    assert!(blocked.is_empty(), "SystemCallFilter= blocks {blocked:?}");
    // And it is a filter: the privileged calls hairpin never makes stay out.
    for call in [
        "setuid",
        "chown",
        "init_module",
        "mount",
        "setrlimit",
        "ptrace",
    ] {
        assert!(
            !allowed.contains(call),
            "SystemCallFilter= lets {call} through"
        );
    }
}
