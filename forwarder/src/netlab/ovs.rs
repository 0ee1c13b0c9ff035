//! Open vSwitch inside a lab namespace: the benchmark's peer and the reference bridge of
//! the differential test.
//!
//! Everything OVS keeps (database, sockets, pid files, logs) stays in a directory of the
//! namespace's own, away from a system OVS and from a concurrent run. The daemons are
//! processes of the [`Lab`], so they stop with it on every path.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{Lab, LabError, Netns, run};

/// How long the daemons get to answer after starting.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// `ovsdb-server` and `ovs-vswitchd` running in one namespace of a lab.
#[derive(Debug)]
pub struct Ovs {
    ns: Netns,
    dir: PathBuf,
    db: String,
    /// Keep `dir` when dropped: an error points at the logs in it.
    keep: bool,
}

impl Ovs {
    /// Creates a fresh database and starts both daemons in `ns`; returns once the
    /// database answers. Their processes belong to `lab`.
    pub fn start(lab: &mut Lab, ns: &Netns) -> Result<Self, LabError> {
        let dir = std::env::temp_dir().join(format!("{}-ovs", ns.name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Spawn {
            command: format!("mkdir {}", dir.display()),
            source,
        })?;
        let ovs = Self {
            ns: ns.clone(),
            db: format!("unix:{}", dir.join("db.sock").display()),
            dir,
            keep: false,
        };
        let mut create = ovs.command("ovsdb-tool");
        create
            .arg("create")
            .arg(ovs.path("conf.db"))
            .arg("/usr/share/openvswitch/vswitch.ovsschema");
        run(create)?;

        let mut server = ovs.command("ovsdb-server");
        server
            .arg(ovs.path("conf.db"))
            .arg(format!("--remote=punix:{}", ovs.path("db.sock").display()))
            .arg(format!(
                "--log-file={}",
                ovs.path("ovsdb-server.log").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.spawn(server)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while let Err(e) = ovs.vsctl(&["--no-wait", "init"]) {
            if Instant::now() > deadline {
                return Err(ovs.not_ready("ovsdb-server", e));
            }
            thread::sleep(Duration::from_millis(50));
        }

        // libxdp (its AF_XDP ports) looks for bpffs, and `ip netns exec` gives the
        // command a mount namespace of its own, without one.
        let mut switch = ovs.command("sh");
        switch
            .arg("-c")
            .arg(format!(
                "mount -t bpf bpf /sys/fs/bpf && exec ovs-vswitchd {} --log-file={}",
                ovs.db,
                ovs.path("ovs-vswitchd.log").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.spawn(switch)?;
        // `ovs-vsctl` without --no-wait returns once ovs-vswitchd has applied a change.
        while let Err(e) = ovs.vsctl(&["set", "Open_vSwitch", ".", "external_ids:lab=1"]) {
            if Instant::now() > deadline {
                return Err(ovs.not_ready("ovs-vswitchd", e));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(ovs)
    }

    /// A command for one of OVS's programs, inside the namespace, using this instance.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = self.ns.command(program);
        for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            cmd.env(var, &self.dir);
        }
        cmd
    }

    /// Runs `ovs-vsctl args` against this instance's database (waiting up to 10 s for
    /// ovs-vswitchd to apply a change).
    pub fn vsctl(&self, args: &[&str]) -> Result<Output, LabError> {
        let mut cmd = self.command("ovs-vsctl");
        cmd.args(["--db", &self.db, "--timeout=10"]).args(args);
        run(cmd)
    }

    /// Adds bridge `name` on the userspace (`netdev`) datapath.
    pub fn add_userspace_bridge(&self, name: &str) -> Result<Output, LabError> {
        self.vsctl(&[
            "add-br",
            name,
            "--",
            "set",
            "bridge",
            name,
            "datapath_type=netdev",
        ])
    }

    /// Runs `ovs-ofctl args`.
    pub fn ofctl(&self, args: &[&str]) -> Result<Output, LabError> {
        let mut cmd = self.command("ovs-ofctl");
        cmd.args(args);
        run(cmd)
    }

    /// Runs `ovs-appctl args` (to ovs-vswitchd).
    pub fn appctl(&self, args: &[&str]) -> Result<Output, LabError> {
        let mut cmd = self.command("ovs-appctl");
        cmd.args(args);
        run(cmd)
    }

    /// The directory with the database and the daemons' logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Leaves the directory with the logs in place when this value goes: for an error
    /// that points there.
    pub fn keep_logs(mut self) {
        self.keep = true;
    }

    fn not_ready(mut self, daemon: &str, last: LabError) -> LabError {
        self.keep = true;
        LabError::NotReady {
            what: format!(
                "{daemon} did not answer within {} s (logs in {}; last: {last})",
                START_TIMEOUT.as_secs(),
                self.dir.display()
            ),
        }
    }
}

impl Drop for Ovs {
    /// Removes the directory (unless told to keep it); the daemons stop with the lab.
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
