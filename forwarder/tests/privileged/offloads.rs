//! TCP between stacks that keep their offloads, as on a real host: the veths here keep
//! the kernel's defaults (TX checksumming on), so every TCP segment reaches hairpin with
//! a partial checksum, which hairpin must finish on every path. A real server and client
//! (busybox httpd, curl) move a file each way, its SHA-256 compared; iperf3 streams each
//! way. Through the workers, and through the kernel fast path; between access ports, and
//! across a trunk to a second hairpin that pops the tag again (this kernel has no 8021q,
//! so no VLAN device can end a trunk).
//!
//! ```text
//!   vm0 ── p0 (access 10) ┐         ┌ p2 (trunk 10) ── eth0 (trunk 10) ┐ hairpin B ┌ q0 (access 10) ── far
//!   vm1 ── p1 (access 10) ┘ hairpin A                                  (in vm2's namespace)
//! ```
use std::{path::Path, process::Stdio, thread, time::Duration};

use hairpin::{
    control::{bridge::Bridge, xdp::FastPath},
    netlab::{LabError, Netns},
    switch::vlan::PortVlans,
};

use crate::{TestConfig, Topology, iperf, ping, start_in, vlan_policies};

/// The far host's address, behind hairpin B.
const FAR: &str = "198.18.0.20";

/// A busybox httpd serving `dir` in `ns` on `port`, until dropped.
pub(crate) struct Httpd(std::process::Child);

impl Httpd {
    pub(crate) fn start(ns: &Netns, dir: &Path, port: u16) -> Self {
        let child = ns
            .command("busybox")
            .args(["httpd", "-f", "-p", &port.to_string(), "-h"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("busybox httpd (setup installs busybox-static)");
        thread::sleep(Duration::from_millis(200));
        Self(child)
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fetches `url` from inside `ns` and returns its SHA-256.
pub(crate) fn fetch_sha256(ns: &Netns, url: &str) -> Result<String, LabError> {
    let out = ns.run(
        "bash",
        &[
            "-c",
            &format!("set -o pipefail; curl -sS --fail --max-time 20 {url} | sha256sum"),
        ],
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Checks that `ns`'s `eth0` checksums in "hardware": the test is about that default.
fn assert_tx_checksumming_on(ns: &Netns) {
    let out = ns.run("ethtool", &["-k", "eth0"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.trim() == "tx-checksumming: on"),
        "the lab must keep the kernel's default offloads:\n{text}"
    );
}

#[test]
fn tcp_with_default_offloads_crosses_the_workers_the_fast_path_and_a_trunk() {
    let mut topo = Topology::new("offl", &[1, 1, 1]);
    let far = topo.lab.add_ns("far").unwrap();
    topo.lab
        .veth((&far, "eth0"), (&topo.vms[2], "q0"), 1)
        .unwrap();
    far.ip(&["addr", "add", &format!("{FAR}/24"), "dev", "eth0"])
        .unwrap();
    for ns in [&topo.vms[0], &topo.vms[1], &far] {
        assert_tx_checksumming_on(ns);
    }

    // A file of 4 MiB, served from both ends.
    let dir = std::env::temp_dir().join(format!("{}-www", topo.sw.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let payload: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("payload"), &payload).unwrap();
    let want = crate::sha256(&payload);

    let access = vlan_policies(&[
        PortVlans::Access(10),
        PortVlans::Access(10),
        PortVlans::Trunk {
            tagged: vec![10],
            native: None,
        },
    ]);
    let far_side = vlan_policies(&[
        PortVlans::Trunk {
            tagged: vec![10],
            native: None,
        },
        PortVlans::Access(10),
    ]);
    for fast_path in [FastPath::Off, FastPath::Auto] {
        if fast_path == FastPath::Auto {
            // The fast path sends into a veth only when its peer has GRO on (or runs
            // XDP): turned on so that this pass tests the fast path. Offloads stay.
            for ns in [&topo.vms[0], &topo.vms[1], &far] {
                ns.run("ethtool", &["-K", "eth0", "gro", "on"]).unwrap();
            }
        }
        let config = |policies: &[hairpin::switch::PortPolicy]| TestConfig {
            policies: policies.to_vec(),
            fast_path,
            ..TestConfig::default()
        };
        let a = topo.start(config(&access));
        let b = start_in(&topo.vms[2], &["eth0", "q0"], config(&far_side));
        let pass = format!("fast path {fast_path:?}");

        ping(&topo.vms[0], &topo.addr(1), 3).unwrap();
        ping(&topo.vms[0], FAR, 3).unwrap();
        // Both ways between the access ports, and both ways across the trunk.
        for (server, client, addr) in [
            (&topo.vms[1], &topo.vms[0], topo.addr(1)),
            (&topo.vms[0], &topo.vms[1], topo.addr(0)),
            (&far, &topo.vms[0], FAR.to_owned()),
            (&topo.vms[0], &far, topo.addr(0)),
        ] {
            let _httpd = Httpd::start(server, &dir, 8000);
            let got = fetch_sha256(client, &format!("http://{addr}:8000/payload")).unwrap();
            assert_eq!(got, want, "{pass}: the file from {addr} arrived whole");
        }
        iperf(&topo, 0, 1, 2, 1).unwrap();
        iperf(&topo, 1, 0, 2, 1).unwrap();

        let finished = |bridge: &Bridge, port: &str| {
            let stats = bridge.stats();
            let info = stats.ports.iter().find(|p| p.name == port).unwrap();
            (
                info.counters.checksums_finished,
                format!("{:?}", info.counters),
            )
        };
        for (bridge, port) in [(&a, "p0"), (&a, "p1"), (&b, "q0")] {
            let (n, counters) = finished(bridge, port);
            assert!(
                n > 1000,
                "{pass}: the partial checksums of {port}'s TCP were finished: {counters}"
            );
        }
        if fast_path == FastPath::Auto {
            let fast: u64 = a
                .stats()
                .ports
                .iter()
                .map(|p| p.counters.fast_rx_packets)
                .sum();
            assert!(
                fast > 1000,
                "the TCP segments took the fast path, their checksums finished there: {:?}",
                a.stats().ports
            );
        }
        for bridge in [a, b] {
            let (_, panicked) = bridge.stop();
            assert_eq!(panicked, 0);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
