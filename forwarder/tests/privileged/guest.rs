//! Real guests: qemu VMs with virtio-net at qemu's defaults (checksum and segmentation
//! offloads on), booted under TCG (this kind of machine has no usable KVM and no
//! vhost-net) from the host's own Debian kernel and a busybox initramfs built once per
//! run.
//!
//! A guest is told what to do on its kernel command line (`hp.*`): its address (on a
//! VLAN device of its own when given `hp.vlan`), the peers it pings and fetches a file
//! from, the addresses it must not reach. It serves a random file of its own with
//! busybox httpd and reports on its serial console, which the test reads from a file:
//! `HP-SUM <sha256>` of its file, `HP-PING <peer> ok|lost`, `HP-GOT <peer> <sha256>` of the
//! file fetched, `HP-APART <addr> reached|unreached <uptime>`, its TCP counters (`HP-SNMP`), and
//! `HP-END`; `HP-READY <uptime>` once its address is set (uptimes in seconds: guests
//! started together can be ordered by them). Given `hp.newmac`, it then changes its MAC
//! to that one and pings its peers and the addresses it must not reach again:
//! `HP-MOVED <addr> reached|unreached`.
use std::{
    collections::HashMap,
    fmt::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use hairpin::netlab::{Lab, Netns};

/// The guest's kernel and initramfs.
#[derive(Debug)]
pub struct Image {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Modules the guest loads, with what they need: the virtio PCI transport, virtio-net,
/// and 802.1Q for guests that tag their own frames.
const MODULES: &[&str] = &["virtio_pci", "virtio_net", "8021q"];

/// The guest's `/init`.
const INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do insmod "/lib/modules/$m" || echo "HP-ERROR insmod $m"; done
arg() { for w in $(cat /proc/cmdline); do case "$w" in "hp.$1="*) echo "${w#hp.$1=}";; esac; done; }
ip link set lo up
ip link set eth0 up
dev=eth0
vlan=$(arg vlan)
if [ -n "$vlan" ]; then
    ip link add link eth0 name "eth0.$vlan" type vlan id "$vlan"
    ip link set "eth0.$vlan" up
    dev="eth0.$vlan"
fi
ip addr add "$(arg ip)" dev "$dev"
echo "HP-READY $(cut -d' ' -f1 /proc/uptime)"
mkdir -p /www
dd if=/dev/urandom of=/www/blob bs=1024 count="$(arg kib)" 2>/dev/null
echo "HP-SUM $(sha256sum < /www/blob | cut -d' ' -f1)"
httpd -p 80 -h /www
for p in $(arg peers | tr , ' '); do
    n=0
    until ping -c 1 -W 1 "$p" >/dev/null 2>&1 || [ $n -ge 120 ]; do n=$((n + 1)); done
    if ping -c 3 -W 2 "$p" >/dev/null 2>&1; then echo "HP-PING $p ok"; else echo "HP-PING $p lost"; fi
    echo "HP-GOT $p $(timeout 120 wget -q -O - "http://$p/blob" | sha256sum | cut -d' ' -f1)"
done
for p in $(arg apart | tr , ' '); do
    t=$(cut -d' ' -f1 /proc/uptime)
    if ping -c 3 -W 1 "$p" >/dev/null 2>&1; then echo "HP-APART $p reached $t"; else echo "HP-APART $p unreached $t"; fi
done
m=$(arg newmac)
if [ -n "$m" ]; then
    ip link set eth0 address "$m"
    for p in $(arg peers | tr , ' ') $(arg apart | tr , ' '); do
        if ping -c 5 -W 1 "$p" >/dev/null 2>&1; then echo "HP-MOVED $p reached"; else echo "HP-MOVED $p unreached"; fi
    done
fi
grep '^Tcp:' /proc/net/snmp | sed 's/^/HP-SNMP /'
echo HP-END
while :; do sleep 3600; done
"#;

/// The image, built on first use (a test that cannot build it fails with the reason).
pub fn image() -> &'static Image {
    static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
    match IMAGE.get_or_init(build) {
        Ok(image) => image,
        Err(e) => {
            panic!("cannot build the guest image (`cargo xtask setup` installs its parts): {e}")
        }
    }
}

fn build() -> Result<Image, String> {
    let (kernel, modules) = guest_kernel()?;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("guest-{}", std::process::id()));
    let root = dir.join("root");
    let _ = std::fs::remove_dir_all(&dir);
    for sub in [
        "bin",
        "proc",
        "sys",
        "dev",
        "etc",
        "lib/modules",
        "www",
        "tmp",
    ] {
        std::fs::create_dir_all(root.join(sub)).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .map_err(|e| format!("/bin/busybox (busybox-static): {e}"))?;
    // The interpreter of /init; the other applets' links /init makes itself.
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let mut order = String::new();
    for m in load_order(&modules)? {
        let name = Path::new(&m)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        std::fs::copy(modules.join(&m), root.join("lib/modules").join(&name))
            .map_err(|e| format!("{m}: {e}"))?;
        writeln!(order, "{name}").unwrap();
    }
    std::fs::write(root.join("etc/modules"), order).unwrap();
    std::fs::write(root.join("init"), INIT).unwrap();
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let initrd = dir.join("initrd.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | cpio --quiet -o -H newc > {}",
            root.display(),
            initrd.display()
        ))
        .status()
        .map_err(|e| format!("cpio: {e}"))?;
    if !status.success() {
        return Err(format!("cpio failed: {status}"));
    }
    Ok(Image { kernel, initrd })
}

/// The newest installed kernel with virtio-net as a module, and its module directory.
fn guest_kernel() -> Result<(PathBuf, PathBuf), String> {
    let mut found: Vec<(PathBuf, PathBuf)> = std::fs::read_dir("/boot")
        .map_err(|e| format!("/boot: {e}"))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("vmlinuz-")?.to_owned();
            let modules = PathBuf::from(format!("/lib/modules/{version}"));
            modules
                .join("kernel/drivers/net/virtio_net.ko")
                .exists()
                .then(|| (e.path(), modules))
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        "no /boot/vmlinuz-* with an uncompressed virtio_net.ko (linux-image-amd64)".into()
    })
}

/// [`MODULES`] and what they depend on, each after its dependencies, as paths relative
/// to `modules` (from its `modules.dep`).
fn load_order(modules: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(modules.join("modules.dep"))
        .map_err(|e| format!("modules.dep: {e}"))?;
    let deps: HashMap<String, Vec<String>> = text
        .lines()
        .filter_map(|l| {
            let (module, needs) = l.split_once(':')?;
            Some((
                module.to_owned(),
                needs.split_whitespace().map(str::to_owned).collect(),
            ))
        })
        .collect();
    let path_of = |name: &str| {
        deps.keys()
            .find(|k| k.rsplit('/').next() == Some(&format!("{name}.ko")))
            .cloned()
            .ok_or_else(|| format!("no module {name} in modules.dep"))
    };
    fn visit(m: &str, deps: &HashMap<String, Vec<String>>, out: &mut Vec<String>) {
        if out.iter().any(|o| o == m) {
            return;
        }
        // modules.dep lists a module's whole closure, nearest first: load the far end first.
        for d in deps.get(m).into_iter().flatten().rev() {
            visit(d, deps, out);
        }
        out.push(m.to_owned());
    }
    let mut out = Vec::new();
    for name in MODULES {
        visit(&path_of(name)?, &deps, &mut out);
    }
    if let Some(m) = out.iter().find(|m| !m.ends_with(".ko")) {
        return Err(format!(
            "{m} is compressed; the guest's busybox insmod takes plain .ko"
        ));
    }
    Ok(out)
}

/// What a guest does (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Role {
    /// Its address, with prefix length.
    pub ip: String,
    /// The VLAN it tags its own frames with, if any.
    pub vlan: Option<u16>,
    /// Peers it pings and fetches the file from.
    pub peers: Vec<String>,
    /// Addresses it must not reach.
    pub apart: Vec<String>,
    /// The size of its file, KiB.
    pub kib: u32,
    /// The MAC it changes to once done, then pings its peers and `apart` from.
    pub new_mac: Option<String>,
}

impl Role {
    /// The kernel command line that tells a guest this role, its console on ttyS0.
    pub fn kernel_args(&self) -> String {
        let mut append = format!(
            "console=ttyS0 quiet panic=-1 hp.ip={} hp.kib={}",
            self.ip, self.kib
        );
        if let Some(v) = self.vlan {
            write!(append, " hp.vlan={v}").unwrap();
        }
        if !self.peers.is_empty() {
            write!(append, " hp.peers={}", self.peers.join(",")).unwrap();
        }
        if !self.apart.is_empty() {
            write!(append, " hp.apart={}", self.apart.join(",")).unwrap();
        }
        if let Some(mac) = &self.new_mac {
            write!(append, " hp.newmac={mac}").unwrap();
        }
        append
    }
}

/// How a guest's virtio-net reaches the host.
#[derive(Debug)]
pub enum Nic<'a> {
    /// A tap qemu makes with this name, attached and detached by the shipped
    /// `contrib/qemu-ifup` and `contrib/qemu-ifdown` (its `script=` and `downscript=`),
    /// which read the port's settings from qemu's environment, `env` (see
    /// [`tap_settings`]).
    Tap {
        name: &'a str,
        env: &'a [(String, String)],
    },
    /// The macvtap of this name (in the guest's namespace), opened as qemu's fd 3.
    Macvtap { name: &'a str },
}

/// A running guest: its serial console's file; the process is the lab's.
#[derive(Debug)]
pub struct Vm {
    pub name: String,
    pub console: PathBuf,
    /// Its index among the lab's processes (none: libvirt's guest).
    pub process: Option<usize>,
}

impl Vm {
    /// Boots a guest in `ns` (qemu runs there, so its tap is made there), MAC `mac`.
    pub fn boot(
        lab: &mut Lab,
        ns: &Netns,
        name: &str,
        mac: &str,
        nic: Nic<'_>,
        role: &Role,
    ) -> Self {
        let image = image();
        let console = std::env::temp_dir().join(format!("{}-{name}.console", ns.name()));
        let _ = std::fs::remove_file(&console);
        let append = role.kernel_args();
        let mut env: &[(String, String)] = &[];
        let mut qemu = format!(
            "exec qemu-system-x86_64 -accel tcg -m 256 -smp 1 -nodefaults -display none \
             -no-reboot -kernel {} -initrd {} -append '{append}' -serial file:{} \
             -device virtio-net-pci,netdev=n0,mac={mac} ",
            image.kernel.display(),
            image.initrd.display(),
            console.display(),
        );
        match nic {
            // vhost=off: there is no /dev/vhost-net here; qemu's own virtio-net backend
            // keeps the same offloads.
            Nic::Tap {
                name,
                env: settings,
            } => {
                env = settings;
                write!(
                    qemu,
                    "-netdev tap,id=n0,ifname={name},script={},downscript={},vhost=off",
                    contrib("qemu-ifup").display(),
                    contrib("qemu-ifdown").display()
                )
                .unwrap();
            }
            Nic::Macvtap { name } => {
                let dev = ns
                    .run(
                        "sh",
                        &["-c", &format!("cat /sys/class/net/{name}/macvtap/*/dev")],
                    )
                    .unwrap();
                let dev = String::from_utf8_lossy(&dev.stdout).trim().to_owned();
                let (major, minor) = dev.split_once(':').expect("major:minor");
                let node = std::env::temp_dir().join(format!("{}-{name}", ns.name()));
                let _ = std::fs::remove_file(&node);
                let made = Command::new("mknod")
                    .arg(&node)
                    .args(["c", major, minor])
                    .status()
                    .unwrap();
                assert!(made.success(), "mknod {} c {major} {minor}", node.display());
                write!(
                    qemu,
                    "-netdev tap,id=n0,fd=3,vhost=off 3<>{}",
                    node.display()
                )
                .unwrap();
            }
        }
        let mut cmd = ns.command("bash");
        cmd.args(["-c", &qemu])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        lab.spawn(cmd).unwrap();
        Self {
            name: name.to_owned(),
            console,
            process: Some(lab.process_count() - 1),
        }
    }

    /// A guest someone else runs (libvirt), known by its serial console's file.
    pub fn on_console(name: &str, console: PathBuf) -> Self {
        let _ = std::fs::remove_file(&console);
        Self {
            name: name.to_owned(),
            console,
            process: None,
        }
    }

    /// Its console so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Waits until it has said `HP-END`, and returns its report.
    pub fn report(&self, timeout: Duration) -> Report {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.output();
            if text.contains("HP-END") {
                return Report::parse(&self.name, &text);
            }
            assert!(
                Instant::now() < deadline && !text.contains("Kernel panic"),
                "{} did not finish (timeout {timeout:?}); its console:\n{text}",
                self.name
            );
            thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.console);
    }
}

/// What a guest reported.
#[derive(Debug)]
pub struct Report {
    pub name: String,
    pub console: String,
    pub sum: String,
    pub pings: HashMap<String, bool>,
    pub got: HashMap<String, String>,
    /// Per address: reached, and when the check began.
    pub apart: HashMap<String, (bool, f64)>,
    /// When its address was set.
    pub ready: f64,
    /// Per address, whether it reached it after changing its MAC.
    pub moved: HashMap<String, bool>,
    pub tcp: HashMap<String, u64>,
}

impl Report {
    fn parse(name: &str, console: &str) -> Self {
        let mut r = Self {
            name: name.to_owned(),
            console: console.to_owned(),
            sum: String::new(),
            pings: HashMap::new(),
            got: HashMap::new(),
            apart: HashMap::new(),
            ready: f64::NAN,
            moved: HashMap::new(),
            tcp: HashMap::new(),
        };
        let mut snmp: Vec<Vec<String>> = Vec::new();
        for line in console.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["HP-SUM", sum] => r.sum = (*sum).to_owned(),
                ["HP-PING", peer, how] => {
                    r.pings.insert((*peer).to_owned(), *how == "ok");
                }
                ["HP-GOT", peer, sum] => {
                    r.got.insert((*peer).to_owned(), (*sum).to_owned());
                }
                ["HP-APART", addr, how, at] => {
                    let at = at.parse().unwrap_or(f64::NAN);
                    r.apart.insert((*addr).to_owned(), (*how == "reached", at));
                }
                ["HP-MOVED", peer, how] => {
                    r.moved.insert((*peer).to_owned(), *how == "reached");
                }
                ["HP-READY", at] => r.ready = at.parse().unwrap_or(f64::NAN),
                ["HP-SNMP", "Tcp:", rest @ ..] => {
                    snmp.push(rest.iter().map(|w| (*w).to_owned()).collect());
                }
                _ => {}
            }
        }
        if let [names, values] = snmp.as_slice() {
            for (n, v) in names.iter().zip(values) {
                if let Ok(v) = v.parse() {
                    r.tcp.insert(n.clone(), v);
                }
            }
        }
        r
    }

    /// Checks it did not reach `addr`, and looked for it only after `up_at` of its own
    /// clock (when the guest at `addr` was surely up): `why` says how that was found.
    pub fn assert_kept_from(&self, addr: &str, up_at: f64, why: &str) {
        let (reached, at) = self.apart[addr];
        assert!(
            !reached,
            "{} reached {addr} across VLANs:\n{}",
            self.name, self.console
        );
        assert!(
            at > up_at,
            "{} looked for {addr} at {at} s, before {up_at:.1} s ({why})",
            self.name
        );
    }

    /// Checks it reached every peer and fetched each one's file intact (`sums`: every
    /// guest's own file's sum, by address), with no TCP segment refused for its checksum.
    pub fn assert_fetched(&self, sums: &HashMap<String, String>) {
        let c = &self.console;
        for (peer, sum) in sums {
            if let Some(got) = self.got.get(peer) {
                assert_eq!(
                    self.pings.get(peer),
                    Some(&true),
                    "{} pings {peer}:\n{c}",
                    self.name
                );
                assert_eq!(got, sum, "{} fetched {peer}'s file:\n{c}", self.name);
            }
        }
        assert!(!self.got.is_empty(), "{} fetched nothing:\n{c}", self.name);
        assert_eq!(
            self.tcp.get("InCsumErrors"),
            Some(&0),
            "{}: TCP segments with bad checksums:\n{c}",
            self.name
        );
    }
}

/// A shipped script of `contrib/`.
pub fn contrib(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(script)
}

/// qemu's environment for `contrib/qemu-ifup` and `qemu-ifdown` (as the README shows
/// them): this test's hairpin binary and its control socket `socket`, and the port's
/// settings `settings` (`("HAIRPIN_VLAN", "10")`, ...).
pub fn tap_settings(socket: &Path, settings: &[(&str, &str)]) -> Vec<(String, String)> {
    [
        ("HAIRPIN_BIN", crate::runtime::HAIRPIN),
        ("HAIRPIN_SOCKET", &socket.display().to_string()),
    ]
    .iter()
    .chain(settings)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}
