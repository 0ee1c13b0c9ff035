//! Throw-away labs of network namespaces and veth pairs, for the demo and the tests.
//!
//! A [`Lab`] names everything it creates `hp-<tag>-<pid>-<name>`, so concurrent labs
//! (parallel tests, a CI run beside a developer's) never collide, and deletes all of it
//! when dropped, on panics too. Interfaces live inside the lab's namespaces, where their
//! short names cannot collide with anything outside. [`Lab::sweep_stale`] removes what
//! a killed process left behind.
use std::{
    fs::File,
    io,
    path::Path,
    process::{Child, Command, Output, Stdio},
    thread,
};

use crate::sys;

pub mod ovs;

pub use crate::sys::PacketSocket;

/// An error building or using a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command could not be started.
    #[error("running `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it did not start.
        #[source]
        source: io::Error,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Entering a namespace failed.
    #[error("entering network namespace {ns}")]
    Enter {
        /// The namespace.
        ns: String,
        /// The error from the kernel.
        #[source]
        source: io::Error,
    },
    /// Something the lab started did not become ready in time.
    #[error("{what}")]
    NotReady {
        /// What, and where to look.
        what: String,
    },
}

const PREFIX: &str = "hp-";

/// A network namespace of a [`Lab`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Its full name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` inside the namespace and returns its output, failing on a
    /// non-zero exit.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output, LabError> {
        let mut cmd = self.command(program);
        cmd.args(args);
        run(cmd)
    }

    /// Runs `ip args` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<Output, LabError> {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name]).args(args);
        run(cmd)
    }

    /// Whether an XDP program is attached to `ifname` in this namespace.
    pub fn has_xdp(&self, ifname: &str) -> bool {
        self.ip(&["-d", "link", "show", "dev", ifname])
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
    }

    /// Waits until every port in `ifnames` has an XDP program (hairpin is forwarding), or
    /// `timeout` passes; returns whether they all did.
    pub fn wait_for_xdp(&self, ifnames: &[&str], timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if ifnames.iter().all(|i| self.has_xdp(i)) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Runs `f` on a thread that has entered this namespace, and returns its result.
    ///
    /// Sockets, ioctls and netlink calls made by `f` act inside the namespace; the
    /// file system (and `/sys`) stays the caller's.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
        let path = Path::new("/var/run/netns").join(&self.name);
        let enter_err = |source| LabError::Enter {
            ns: self.name.clone(),
            source,
        };
        let file = File::open(&path).map_err(enter_err)?;
        sys::in_netns(&file, f).map_err(enter_err)
    }
}

fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` to completion and returns its output, failing on a non-zero exit with its
/// command line and stderr.
pub fn run(mut cmd: Command) -> Result<Output, LabError> {
    let command = describe(&cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(LabError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output)
}

/// A process running inside a lab; killed and reaped when dropped.
#[derive(Debug)]
pub struct LabProcess {
    child: Child,
}

impl LabProcess {
    /// The underlying child, to signal it or wait for it.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        sys::send_signal(self.child.id(), signal)
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        // It may have exited already; either way it is reaped below.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A set of network namespaces, removed with everything in them when dropped.
#[derive(Debug)]
pub struct Lab {
    base: String,
    namespaces: Vec<Netns>,
    processes: Vec<LabProcess>,
}

impl Lab {
    /// An empty lab; `tag` (a few letters) says what it is for.
    pub fn new(tag: &str) -> Self {
        Self {
            base: format!("{PREFIX}{tag}-{}-", std::process::id()),
            namespaces: Vec::new(),
            processes: Vec::new(),
        }
    }

    /// Creates namespace `name` with its loopback up.
    pub fn add_ns(&mut self, name: &str) -> Result<Netns, LabError> {
        let ns = Netns {
            name: format!("{}{name}", self.base),
        };
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "add", &ns.name]);
        run(cmd)?;
        self.namespaces.push(ns.clone());
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a veth pair `a.1` (in `a.0`) <-> `b.1` (in `b.0`) with `queues` RX and TX
    /// queues on each end, and sets both up.
    ///
    /// Offloads stay as the kernel sets them, as on a real host: with TX checksumming
    /// on, the stacks hand each other TCP and UDP segments whose checksum is left
    /// partial, and hairpin finishes them (`wire::checksum`).
    pub fn veth(&self, a: (&Netns, &str), b: (&Netns, &str), queues: u32) -> Result<(), LabError> {
        let q = queues.to_string();
        a.0.ip(&[
            "link",
            "add",
            a.1,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            b.1,
            "netns",
            b.0.name(),
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ])?;
        for (ns, ifname) in [a, b] {
            ns.ip(&["link", "set", ifname, "up"])?;
        }
        Ok(())
    }

    /// Creates veth pairs `a <-> b`, both ends in `ns`, and sets them up: one `ip
    /// -batch`, so that a thousand pairs take seconds. They go with the namespace.
    ///
    /// They are quiet: IPv6 is off on them (no link-local address, router solicitation
    /// or multicast listener report). With IPv6 on, every end coming up sends a few
    /// multicast frames, which a bridge floods to every other pair, whose far ends are
    /// all in `ns`: with a thousand pairs that is a million frames, each looked up among
    /// the namespace's two thousand link-local routes (the kernel's `fe80::/64` lookup is
    /// linear in them), minutes of one core's time spent in the lab's own stack.
    pub fn veth_pairs(&self, ns: &Netns, pairs: &[(String, String)]) -> Result<(), LabError> {
        let key = "net.ipv6.conf.default.disable_ipv6";
        let was = ns.run("sysctl", &["-n", key])?;
        let was = String::from_utf8_lossy(&was.stdout).trim().to_owned();
        ns.run("sysctl", &["-qw", &format!("{key}=1")])?;
        let made = self.veth_batch(ns, pairs);
        ns.run("sysctl", &["-qw", &format!("{key}={was}")])?;
        made
    }

    fn veth_batch(&self, ns: &Netns, pairs: &[(String, String)]) -> Result<(), LabError> {
        let mut batch = String::new();
        for (a, b) in pairs {
            batch += &format!("link add {a} type veth peer name {b}\n");
            batch += &format!("link set {a} up\nlink set {b} up\n");
        }
        let file = std::env::temp_dir().join(format!("{}.veths", ns.name()));
        std::fs::write(&file, batch).map_err(|source| LabError::Spawn {
            command: format!("writing {}", file.display()),
            source,
        })?;
        let done = ns.ip(&["-batch", &file.display().to_string()]);
        let _ = std::fs::remove_file(&file);
        done.map(drop)
    }

    /// Starts `cmd` (built with [`Netns::command`]) and keeps it until the lab is dropped.
    pub fn spawn(&mut self, mut cmd: Command) -> Result<&mut LabProcess, LabError> {
        let command = describe(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| LabError::Spawn { command, source })?;
        self.processes.push(LabProcess { child });
        Ok(self.processes.last_mut().expect("just pushed"))
    }

    /// How many processes [`Lab::spawn`] started.
    pub fn process_count(&self) -> usize {
        self.processes.len()
    }

    /// The `index`-th process [`Lab::spawn`] started.
    pub fn process(&mut self, index: usize) -> Option<&mut LabProcess> {
        self.processes.get_mut(index)
    }

    /// The process most recently started with [`Lab::spawn`].
    pub fn last_process(&mut self) -> Option<&mut LabProcess> {
        self.processes.last_mut()
    }

    /// Deletes namespaces left by labs whose process no longer exists.
    pub fn sweep_stale() {
        let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "del", &name]);
                if run(cmd).is_ok() {
                    tracing::info!("removed stale lab namespace {name}");
                }
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first: they hold the namespaces' devices open.
        self.processes.clear();
        for ns in self.namespaces.drain(..).rev() {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "del", &ns.name]);
            if let Err(e) = run(cmd) {
                eprintln!("lab cleanup: {e}");
            }
        }
    }
}
