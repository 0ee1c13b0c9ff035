//! A real container runtime on hairpin: podman 4.3 (its CNI backend, runc) runs
//! containers from a busybox root directory (no registry) on two CNI networks of type
//! `hairpin-cni`, one per tenant VLAN, against a hairpin that started with no port.
//! podman runs in the switch namespace's network (through `nsenter --net`, so that the
//! namespaces it mounts for its containers stay visible to its next command), with a
//! configuration and storage of the test's own.
//!
//! ```text
//!   c1 (VLAN 10, httpd, --mac-address) ┐
//!   c2 (VLAN 10, fetches c1's file)    ├ veths made by hairpin-cni ── hairpin
//!   c3 (VLAN 20, same subnet, apart)   ┘
//! ```
use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::{Value, json};

use crate::{
    Topology,
    runtime::{HAIRPIN, ask_json, start},
};

/// A podman of the test's own: configuration, storage, CNI networks and a container
/// root, all under one directory; its containers removed and the directory with them
/// when dropped.
struct Podman {
    dir: PathBuf,
    /// The switch namespace's network namespace file.
    netns: PathBuf,
}

impl Podman {
    fn new(topo: &Topology, socket: &Path) -> Self {
        let dir = std::env::temp_dir().join(format!("{}-podman", topo.sw.name()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["cni", "leases", "tmp", "root/bin", "root/www", "root/etc"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let plugins = Path::new(HAIRPIN).parent().unwrap();
        let d = dir.display();
        // runc, not crun (which refuses this machine's cgroup layout); ulimits within
        // what the test's own process may raise (podman's defaults ask for more).
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
                 [network]\n\
                 network_backend = \"cni\"\n\
                 cni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\n\
                 network_config_dir = \"{d}/cni\"\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 events_logfile_path = \"{d}/events.log\"\n\
                 tmp_dir = \"{d}/tmp\"\n",
                plugins.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{d}/run\"\ngraphroot = \"{d}/graph\"\n"
            ),
        )
        .unwrap();
        for (name, vlan, range) in [("hpt10", 10, (10, 19)), ("hpt20", 20, (20, 29))] {
            let conflist = json!({
                "cniVersion": "1.0.0",
                "name": name,
                "plugins": [{
                    "type": "hairpin-cni",
                    "socket": socket,
                    "vlan": vlan,
                    "spoofchk": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": dir.join("leases"),
                        "ranges": [[{
                            "subnet": "10.10.0.0/24",
                            "rangeStart": format!("10.10.0.{}", range.0),
                            "rangeEnd": format!("10.10.0.{}", range.1),
                        }]]
                    }
                }]
            });
            std::fs::write(
                dir.join(format!("cni/{name}.conflist")),
                conflist.to_string(),
            )
            .unwrap();
        }
        let root = dir.join("root");
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox (setup installs busybox-static)");
        for applet in ["sh", "httpd", "wget", "sha256sum", "timeout", "cat"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        Self {
            dir,
            netns: Path::new("/var/run/netns").join(topo.sw.name()),
        }
    }

    /// `podman ARGS` in the switch namespace's network, with the test's configuration.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .args(["timeout", "120", "podman"])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .expect("podman (setup installs podman and runc)")
    }

    /// `podman ARGS`, which must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn rootfs(&self) -> String {
        self.dir.join("root").display().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// hairpin's port for the container whose ID is `id` (hairpin-cni names it in the
/// port's alias), if any.
fn port_of(ports: &Value, id: &str) -> Option<Value> {
    ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["alias"].as_str().is_some_and(|a| a.contains(id)))
        .cloned()
}

#[test]
fn podman_containers_on_hairpin_cni_keep_their_mac_reach_their_vlan_only_and_leave() {
    let mut topo = Topology::new("podman", &[]);
    let (socket, _log) = start(&mut topo, "podman", &[], Stdio::null());
    let podman = Podman::new(&topo, &socket);
    let rootfs = podman.rootfs();
    // 4 MiB, served by c1 and fetched by c2 over TCP: veths with default offloads.
    let blob: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    std::fs::write(Path::new(&rootfs).join("www/blob"), &blob).unwrap();
    let want = crate::sha256(&blob);

    let mac = "02:aa:00:00:10:01";
    let c1 = podman.ok(&[
        "run",
        "-d",
        "--network",
        "hpt10",
        "--mac-address",
        mac,
        "--rootfs",
        &rootfs,
        "/bin/httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let inspect = |what: &str| {
        podman.ok(&[
            "inspect",
            "-f",
            &format!("{{{{.NetworkSettings.Networks.hpt10.{what}}}}}"),
            &c1,
        ])
    };
    let (addr, got_mac) = (inspect("IPAddress"), inspect("MacAddress"));
    assert_eq!(
        got_mac, mac,
        "podman's --mac-address is the container's MAC"
    );
    let ports = ask_json(&socket, &["show", "ports"]);
    let port = port_of(&ports, &c1).unwrap_or_else(|| panic!("no port names {c1}: {ports}"));
    assert_eq!(port["vlans"], "access VLAN 10", "{port}");
    assert_eq!(
        port["allowed_macs"],
        json!([mac]),
        "spoofchk keeps the MAC asked for: {port}"
    );

    // Same VLAN: the file, whole.
    let fetch = format!("wget -q -O - http://{addr}/blob | sha256sum");
    let same = podman.ok(&[
        "run",
        "--rm",
        "--network",
        "hpt10",
        "--rootfs",
        &rootfs,
        "/bin/sh",
        "-c",
        &fetch,
    ]);
    assert_eq!(
        same.split_whitespace().next(),
        Some(want.as_str()),
        "c2 fetched c1's file"
    );

    // Another VLAN, same subnet, while c1 serves (c2 just fetched from it): nothing.
    let apart = format!("timeout 5 wget -q -O /dev/null http://{addr}/blob && echo reached");
    let out = podman.run(&[
        "run",
        "--rm",
        "--network",
        "hpt20",
        "--rootfs",
        &rootfs,
        "/bin/sh",
        "-c",
        &apart,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && !text.contains("reached"),
        "c3 reached c1 across VLANs: {text}"
    );

    // Only c1's port is left (c2's and c3's went with their `--rm`), until c1 stops.
    let ports = ask_json(&socket, &["show", "ports"]);
    assert_eq!(ports["ports"].as_array().unwrap().len(), 1, "{ports}");
    podman.ok(&["stop", "--time", "0", &c1]);
    let ports = ask_json(&socket, &["show", "ports"]);
    assert!(
        port_of(&ports, &c1).is_none(),
        "podman stop removes the port: {ports}"
    );
    podman.ok(&["rm", &c1]);
}
