//! The shipped KVM scripts of `contrib/` say to hairpin what their environment says,
//! without root: `qemu-ifup` and `qemu-ifdown` run against a stand-in `ip` and
//! `hairpin` that record their arguments, and `libvirt-hook-qemu` passes libvirt's
//! arguments and stdin on. The privileged VM and libvirt tests run them for real.
use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(name)
}

/// A directory with a stand-in `ip` and `hairpin`: each appends its arguments, one
/// line, to `calls`; `hairpin` also copies its stdin there, prints `$FAKE_SAYS` on
/// stderr and exits with `$FAKE_EXIT`.
struct Fakes(PathBuf);

impl Fakes {
    fn new(tag: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("kvm-scripts-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let calls = dir.join("calls");
        for (name, extra) in [
            ("ip", ""),
            (
                "hairpin",
                "[ -t 0 ] || cat >> CALLS\nprintf '%s' \"${FAKE_SAYS:-}\" >&2\nexit \"${FAKE_EXIT:-0}\"\n",
            ),
        ] {
            let path = dir.join(name);
            let body = format!("#!/bin/sh\necho {name} \"$@\" >> CALLS\n{extra}")
                .replace("CALLS", &calls.display().to_string());
            std::fs::write(&path, body).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self(dir)
    }

    /// Runs `script ARGS` with `env` (and the stand-ins first on PATH), `stdin` on
    /// its stdin.
    fn run(&self, script: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
        let path = format!("{}:{}", self.0.display(), std::env::var("PATH").unwrap());
        let mut child = Command::new(contrib(script))
            .args(args)
            .env_clear()
            .env("PATH", path)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// What the stand-ins were called with, and were given, since the last look.
    fn calls(&self) -> String {
        let path = self.0.join("calls");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        text
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn qemu_ifup_brings_the_tap_up_and_adds_it_with_the_environment_s_settings() {
    let fakes = Fakes::new("up");
    let out = fakes.run("qemu-ifup", &["tap9"], &[], "");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fakes.calls(),
        "ip link set tap9 up\nhairpin port add tap9\n"
    );

    let out = fakes.run(
        "qemu-ifup",
        &["tap9"],
        &[
            ("HAIRPIN_TRUNK", "10,20"),
            ("HAIRPIN_NATIVE", "10"),
            ("HAIRPIN_RELAY", "on"),
            ("HAIRPIN_MAC", "52:54:00:00:00:01"),
            ("HAIRPIN_SOCKET", "/tmp/x.sock"),
            ("HAIRPIN_OPTIONS", "--max-macs 4  --police-pps 100"),
        ],
        "",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fakes.calls(),
        "ip link set tap9 up\nhairpin port add tap9 --trunk 10,20 --native 10 --hairpin \
         --allow 52:54:00:00:00:01 --socket /tmp/x.sock --max-macs 4 --police-pps 100\n"
    );

    let out = fakes.run("qemu-ifup", &["tap9"], &[("HAIRPIN_VLAN", "10")], "");
    assert!(out.status.success(), "{out:?}");
    assert!(fakes.calls().ends_with("hairpin port add tap9 --vlan 10\n"));
}

#[test]
fn qemu_ifup_fails_with_hairpin_s_refusal_and_on_a_bad_setting() {
    let fakes = Fakes::new("refused");
    let out = fakes.run(
        "qemu-ifup",
        &["tap9"],
        &[
            ("HAIRPIN_VLAN", "4095"),
            ("FAKE_EXIT", "1"),
            (
                "FAKE_SAYS",
                "hairpin: error: --vlan 4095: VLAN 4095 is outside 1-4094",
            ),
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside 1-4094"));
    fakes.calls();

    let out = fakes.run("qemu-ifup", &["tap9"], &[("HAIRPIN_RELAY", "maybe")], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HAIRPIN_RELAY=maybe: give on or off"),
        "{stderr}"
    );
    assert!(!fakes.calls().contains("hairpin"), "nothing added");

    let out = fakes.run("qemu-ifup", &[], &[], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tap name"));
}

#[test]
fn qemu_ifdown_deletes_the_port_and_a_port_already_gone_is_fine() {
    let fakes = Fakes::new("down");
    let out = fakes.run(
        "qemu-ifdown",
        &["tap9"],
        &[("HAIRPIN_SOCKET", "/tmp/x.sock")],
        "",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fakes.calls(),
        "hairpin port del tap9 --socket /tmp/x.sock\n"
    );

    let gone = [
        ("FAKE_EXIT", "1"),
        (
            "FAKE_SAYS",
            "hairpin: error: tap9 is not a port of this bridge",
        ),
    ];
    assert!(
        fakes
            .run("qemu-ifdown", &["tap9"], &gone, "")
            .status
            .success()
    );

    let down = [
        ("FAKE_EXIT", "1"),
        (
            "FAKE_SAYS",
            "hairpin: error: /run/hairpin/hairpin.sock: Connection refused",
        ),
    ];
    let out = fakes.run("qemu-ifdown", &["tap9"], &down, "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("qemu-ifdown: hairpin: error:"));
}

#[test]
fn the_libvirt_hook_passes_libvirt_s_arguments_and_the_domain_xml_on() {
    let fakes = Fakes::new("hook");
    let hairpin = fakes.0.join("hairpin");
    let out = fakes.run(
        "libvirt-hook-qemu",
        &["web1", "prepare", "begin", "-"],
        &[("HAIRPIN_BIN", &hairpin.display().to_string())],
        "<domain/>\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout (migrate takes it as the XML)"
    );
    assert_eq!(
        fakes.calls(),
        "hairpin libvirt-hook web1 prepare begin -\n<domain/>\n"
    );
}
