//! libvirt attaches its VMs by itself: a real libvirtd (Debian's `libvirt-daemon-system`)
//! with the shipped `contrib/libvirt-hook-qemu` as its qemu hook, `virsh start` and
//! `virsh destroy`, a libvirtd restart (`reconnect`), and guests under TCG on
//! libvirt-made taps, their port settings in the domains' `<metadata>`.
//!
//! ```text
//!   vm a ── ta (access 10, by dev) ┐
//!   vm b ── vnetN (access 10, by mac) ┼ hairpin      vm d: vlan='4095', never starts
//!   vm c ── tc (access 20; then a new MAC) ┘
//! ```
//!
//! The test's libvirtd is its own, alone with its guests and hairpin in the test's
//! switch namespace (its taps are made there): it runs in a mount namespace where
//! `/etc/libvirt`, `/run/libvirt`, `/var/lib/libvirt`, `/var/log/libvirt` and
//! `/var/cache/libvirt` are directories of the test's, so the host's libvirt
//! configuration (its hooks, networks, domains) is neither read nor changed, and a
//! libvirtd the host may run is left alone. `virsh` reaches it by its socket.
use std::{
    collections::HashMap,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use hairpin::netlab::Netns;
use serde_json::Value;

use crate::{
    Topology,
    guest::{Report, Role, Vm, contrib, image},
    runtime::{ask_json, port, start},
};

/// The namespace of hairpin's elements in a domain's metadata (`cli/libvirt/domain.rs`).
const NAMESPACE: &str = "https://hairpin.dev/xmlns/libvirt/1";

/// Each guest's file, KiB.
const KIB: u32 = 2048;

/// Boots, transfers and reports under TCG on a busy two-core machine.
const TIMEOUT: Duration = Duration::from_secs(200);

/// The directories of libvirt's that the test's libvirtd sees as its own.
const PRIVATE: [(&str, &str); 5] = [
    ("etc", "/etc/libvirt"),
    ("run", "/run/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("log", "/var/log/libvirt"),
    ("cache", "/var/cache/libvirt"),
];

/// The test's libvirtd: started in the switch namespace, with hairpin's hook; on every
/// path, its domains are destroyed, it is stopped (by its PID) and its directory goes.
struct Libvirt {
    dir: PathBuf,
    /// The switch namespace, where it runs.
    ns: Netns,
    daemon: Option<Child>,
    domains: Vec<String>,
    /// Mount points of [`PRIVATE`] the host lacked, made for the bind mounts and
    /// removed at the end if still empty.
    made: Vec<&'static str>,
}

impl Libvirt {
    /// Starts libvirtd in `topo`'s switch namespace with the hook attaching to the
    /// hairpin at `socket`, and waits until it answers.
    fn start(topo: &Topology, socket: &Path) -> Self {
        let dir = std::env::temp_dir().join(format!("{}-libvirt", topo.sw.name()));
        let _ = std::fs::remove_dir_all(&dir);
        for (sub, _) in PRIVATE {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for sub in ["etc/hooks", "etc/qemu"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // Guests as root, without cgroups (`ip netns exec` remounts /sys, hiding
        // them), mount namespaces or labels; logs to files, without virtlogd.
        std::fs::write(
            dir.join("etc/qemu.conf"),
            "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\nremember_owner = 0\n\
             security_driver = \"none\"\nnamespaces = [ ]\ncgroup_controllers = [ ]\n\
             stdio_handler = \"file\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("etc/libvirtd.conf"),
            "auth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n\
             log_outputs = \"3:file:/var/log/libvirt/libvirtd.log\"\n",
        )
        .unwrap();
        // The shipped hook, told where this test's hairpin and its socket are (libvirt
        // gives hooks a bare environment).
        let hook = dir.join("etc/hooks/qemu");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\nHAIRPIN_BIN={} HAIRPIN_SOCKET={} exec {} \"$@\"\n",
                crate::runtime::HAIRPIN,
                socket.display(),
                contrib("libvirt-hook-qemu").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let made = PRIVATE
            .iter()
            .map(|&(_, target)| target)
            .filter(|target| !Path::new(target).exists())
            .collect();
        let mut libvirt = Self {
            dir,
            ns: topo.sw.clone(),
            daemon: None,
            domains: Vec::new(),
            made,
        };
        libvirt.spawn();
        libvirt
    }

    /// Starts the daemon, in a mount namespace of its own (`ip netns exec` makes one)
    /// where the [`PRIVATE`] directories are the test's, and waits until it answers.
    fn spawn(&mut self) {
        let mut script = String::from("set -e\n");
        for (sub, target) in PRIVATE {
            script += &format!(
                "mkdir -p {target}\nmount --bind {} {target}\n",
                self.dir.join(sub).display()
            );
        }
        script += &format!(
            "exec libvirtd --pid-file {}\n",
            self.dir.join("libvirtd.pid").display()
        );
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("libvirtd.out"))
            .unwrap();
        let daemon = self
            .ns
            .command("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("libvirtd (libvirt-daemon-system, `cargo xtask setup`): {e}")
            });
        self.daemon = Some(daemon);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.virsh(&["version"]).status.success() {
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(Child::try_wait) {
                panic!("libvirtd exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "libvirtd did not answer: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the daemon (SIGTERM to its PID, then SIGKILL after 15 s); its domains
    /// keep running.
    fn stop(&mut self) {
        let Some(mut daemon) = self.daemon.take() else {
            return;
        };
        let pid = daemon.id() as i32;
        // SAFETY: a signal to the libvirtd this test started, its child, not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = daemon.kill();
        let _ = daemon.wait();
    }

    /// Restarts the daemon, as an upgrade would: its `reconnect` hook runs for each
    /// running domain.
    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs `virsh ARGS` against this libvirtd.
    fn virsh(&self, args: &[&str]) -> Output {
        let uri = format!(
            "qemu:///system?socket={}",
            self.dir.join("run/libvirt-sock").display()
        );
        Command::new("virsh")
            .args(["-q", "-c", &uri])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `virsh ARGS`, which must succeed.
    fn must(&self, args: &[&str]) -> String {
        let out = self.virsh(args);
        assert!(
            out.status.success(),
            "virsh {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Defines domain `name` from `xml`.
    fn define(&mut self, name: &str, xml: &str) {
        let file = self.dir.join(format!("{name}.xml"));
        std::fs::write(&file, xml).unwrap();
        self.domains.push(name.to_owned());
        self.must(&["define", &file.display().to_string()]);
    }

    /// libvirtd's own output and log, for messages.
    fn log(&self) -> String {
        let read = |p: &str| std::fs::read_to_string(self.dir.join(p)).unwrap_or_default();
        format!(
            "\nlibvirtd's output:\n{}\nits log:\n{}",
            read("libvirtd.out"),
            read("log/libvirtd.log")
        )
    }

    /// The PIDs of the guests' qemu processes still running.
    fn qemu_pids(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("run/qemu")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| t.trim().parse().ok())
            .collect()
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        for name in &self.domains {
            let _ = self.virsh(&["destroy", name]);
            let _ = self.virsh(&["undefine", name]);
        }
        self.stop();
        // Guests a libvirtd that failed to destroy them left (the pid files are in the
        // test's own directory: they are this test's guests).
        for pid in self.qemu_pids() {
            // SAFETY: a plain signal to a process ID; at worst it names no process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for target in &self.made {
            let _ = std::fs::remove_dir(target);
        }
    }
}

/// A domain's XML: a guest of `role` on one libvirt-made tap (named `tap`, else by
/// libvirt) with MAC `mac`, its console to `console`, and `ports` in its metadata.
fn domain(
    name: &str,
    mac: &str,
    tap: Option<&str>,
    role: &Role,
    console: &Path,
    ports: &str,
) -> String {
    let image = image();
    let target = tap.map_or(String::new(), |t| format!("<target dev='{t}'/>"));
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{}</kernel>
    <initrd>{}</initrd>
    <cmdline>{}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <metadata>
    <hairpin:ports xmlns:hairpin='{NAMESPACE}'>{ports}</hairpin:ports>
  </metadata>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='ethernet'>
      <mac address='{mac}'/>
      {target}
      <model type='virtio'/>
      <driver name='qemu'/>
    </interface>
    <serial type='file'>
      <source path='{}'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>",
        image.kernel.display(),
        image.initrd.display(),
        role.kernel_args(),
        console.display()
    )
}

fn role(ip: &str, peers: &[&str], apart: &[&str]) -> Role {
    Role {
        ip: format!("{ip}/24"),
        peers: peers.iter().map(|p| (*p).to_owned()).collect(),
        apart: apart.iter().map(|p| (*p).to_owned()).collect(),
        kib: KIB,
        ..Role::default()
    }
}

/// The port whose only allowed source is `mac`: the tap libvirt named.
fn port_of_mac(ports: &Value, mac: &str) -> Option<String> {
    ports["ports"].as_array()?.iter().find_map(|p| {
        (p["allowed_macs"] == serde_json::json!([mac]))
            .then(|| p["name"].as_str().unwrap().to_owned())
    })
}

/// The names of hairpin's ports.
fn names(ports: &Value) -> Vec<String> {
    let mut names: Vec<String> = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    names.sort_unstable();
    names
}

#[test]
fn virsh_start_attaches_domains_with_their_metadata_and_destroy_detaches_them() {
    let mut topo = Topology::new("lvirt", &[]);
    let (socket, log) = start(&mut topo, "lvirt", &[], Stdio::null());
    let mut libvirt = Libvirt::start(&topo, &socket);
    let (a, b, c) = ("10.9.3.1", "10.9.3.2", "10.9.3.3");
    let macs = [
        "52:54:00:00:0c:01",
        "52:54:00:00:0c:02",
        "52:54:00:00:0c:03",
    ];
    let moved = "52:54:00:00:0c:33";
    // a and b fetch each other's files and look for c, in the same subnet but VLAN 20;
    // c looks for them, then takes another MAC and tries again.
    let mut role_c = role(c, &[], &[a, b]);
    role_c.new_mac = Some(moved.to_owned());
    let guests = [
        (
            "a",
            role(a, &[b], &[c]),
            Some("ta"),
            r#"<hairpin:port dev='ta' vlan='10'/>"#.to_owned(),
        ),
        (
            "b",
            role(b, &[a], &[c]),
            None,
            format!("<hairpin:port mac='{}' vlan='10'/>", macs[1]),
        ),
        (
            "c",
            role_c,
            Some("tc"),
            r#"<hairpin:port dev='tc' vlan='20' spoofchk='on'/>"#.to_owned(),
        ),
    ];
    let mut vms = Vec::new();
    for (i, (name, role, tap, ports)) in guests.iter().enumerate() {
        let vm = Vm::on_console(name, libvirt.dir.join(format!("{name}.console")));
        let xml = domain(name, macs[i], *tap, role, &vm.console, ports);
        libvirt.define(name, &xml);
        vms.push(vm);
    }
    // c first: a and b boot after it, so a time on their clocks after c's address
    // was set is after it on c's too.
    for name in ["c", "a", "b"] {
        libvirt.must(&["start", name]);
    }

    // Attached by the hook at `started`, with the metadata's VLANs and the domains'
    // MACs as their only sources.
    let ports = ask_json(&socket, &["show", "ports"]);
    let vnet = port_of_mac(&ports, macs[1])
        .unwrap_or_else(|| panic!("b's tap (by mac) is a port allowing {}: {ports}", macs[1]));
    let mut want = vec!["ta".to_owned(), "tc".to_owned(), vnet.clone()];
    want.sort_unstable();
    assert_eq!(names(&ports), want, "{ports}");
    for (tap, vlan, mac) in [
        ("ta", "10", macs[0]),
        (vnet.as_str(), "10", macs[1]),
        ("tc", "20", macs[2]),
    ] {
        let p = port(&ports, tap);
        let vlans = p["vlans"].as_str().unwrap_or_default();
        assert!(
            vlans.contains(&format!("VLAN {vlan}")),
            "{tap} in VLAN {vlan}: {p}"
        );
        assert_eq!(p["allowed_macs"], serde_json::json!([mac]), "{tap}: {p}");
    }

    let reports: Vec<Report> = vms.iter().map(|vm| vm.report(TIMEOUT)).collect();
    let [ra, rb, rc] = [&reports[0], &reports[1], &reports[2]];
    let sums: HashMap<String, String> = [(a, ra), (b, rb)]
        .iter()
        .map(|(addr, r)| {
            assert_eq!(r.sum.len(), 64, "{} made its file:\n{}", r.name, r.console);
            ((*addr).to_owned(), r.sum.clone())
        })
        .collect();
    ra.assert_fetched(&sums);
    rb.assert_fetched(&sums);
    for r in [ra, rb] {
        r.assert_kept_from(c, rc.ready + 1.0, "c's clock, which started first");
    }
    for peer in [a, b] {
        assert_eq!(
            rc.apart.get(peer).map(|x| x.0),
            Some(false),
            "c reached {peer}:\n{}",
            rc.console
        );
        assert_eq!(
            rc.moved.get(peer),
            Some(&false),
            "c with a new MAC reached {peer}:\n{}",
            rc.console
        );
    }
    // c's frames from its new MAC were dropped, and counted.
    let ports = ask_json(&socket, &["show", "ports"]);
    let spoofed = port(&ports, "tc")["counters"]["drops"]["spoofed"]
        .as_u64()
        .unwrap_or(0);
    assert!(spoofed > 0, "tc's drops for a source not allowed: {ports}");

    // libvirtd restarts while the domains run: its `reconnect` attaches the port that
    // went missing meanwhile, as it was.
    crate::runtime::ask(&socket, &["port", "del", "tc"]).unwrap();
    libvirt.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ports = loop {
        let ports = ask_json(&socket, &["show", "ports"]);
        if names(&ports).iter().any(|n| n == "tc") {
            break ports;
        }
        assert!(
            Instant::now() < deadline,
            "reconnect did not attach tc: {ports}{}",
            libvirt.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let p = port(&ports, "tc");
    assert!(
        p["vlans"].as_str().unwrap_or_default().contains("VLAN 20"),
        "{p}"
    );
    assert_eq!(p["allowed_macs"], serde_json::json!([macs[2]]), "{p}");
    assert!(libvirt.must(&["domstate", "c"]).contains("running"));

    // `virsh destroy`: the hook's `stopped` detaches the port.
    libvirt.must(&["destroy", "a"]);
    let ports = ask_json(&socket, &["show", "ports"]);
    let mut want = vec!["tc".to_owned(), vnet];
    want.sort_unstable();
    assert_eq!(names(&ports), want, "a's port is gone: {ports}");

    // Malformed metadata: the hook's `prepare` fails the start with its message, and
    // nothing is attached.
    let console = libvirt.dir.join("d.console");
    let xml = domain(
        "d",
        "52:54:00:00:0c:04",
        Some("td"),
        &role("10.9.3.4", &[], &[]),
        &console,
        "<hairpin:port dev='td' vlan='4095'/>",
    );
    libvirt.define("d", &xml);
    let out = libvirt.virsh(&["start", "d"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("virsh start d: {stderr}");
    assert!(!out.status.success(), "d started: {stderr}");
    assert!(
        stderr.contains("domain d: <hairpin:port dev='td'>: vlan='4095'"),
        "virsh start d says the hook's message: {stderr}"
    );
    assert!(libvirt.must(&["domstate", "d"]).contains("shut off"));
    let after = ask_json(&socket, &["show", "ports"]);
    assert_eq!(
        names(&after),
        names(&ports),
        "nothing of d attached: {after}"
    );
    drop(libvirt);
    crate::runtime::take_log(&log);
}
