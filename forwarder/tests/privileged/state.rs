//! What hairpin keeps when its surroundings fail: the state directory (a corrupt file
//! set aside, a good one restored, one owner, a change that cannot be saved refused)
//! and a closed stderr (`hairpin run ... 2>&1 | head -1` goes on forwarding).
use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    Topology, ping,
    runtime::{HAIRPIN, SocketFile, ask, ask_json, port, start, stream, stream_result, take_log},
};

/// A state directory of this test's own, removed when the test ends.
struct StateDir(PathBuf);

impl StateDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hp-{tag}-{}.state", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&dir);
        Self(dir)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// The names of the ports `ports.json` lists.
    fn saved(&self) -> Vec<String> {
        let text = std::fs::read(self.0.join("ports.json")).unwrap();
        let saved: Value = serde_json::from_slice(&text).unwrap();
        saved["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The files whose name starts with `ports.json.corrupt-`.
    fn set_aside(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("ports.json.corrupt-")
            })
            .collect()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits up to `timeout` for the last process the lab started to exit.
fn wait_exit(topo: &mut Topology, timeout: Duration) -> ExitStatus {
    let last = topo.lab.process_count() - 1;
    wait_exit_of(topo, last, timeout)
}

/// Waits up to `timeout` for the `index`-th process the lab started to exit.
fn wait_exit_of(topo: &mut Topology, index: usize, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    let child = topo.lab.process(index).unwrap().child();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "hairpin did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `hairpin run ARGS --socket <a socket of its own>` in the switch namespace and
/// waits for it to exit (it must: it is refused); returns its status and stderr.
fn run_refused(topo: &mut Topology, tag: &str, args: &[&str]) -> (ExitStatus, String) {
    let socket =
        SocketFile::new(std::env::temp_dir().join(format!("hp-{tag}-{}.sock", std::process::id())));
    let log = std::env::temp_dir().join(format!("hp-{tag}-{}.log", std::process::id()));
    let mut cmd = topo.sw.command(HAIRPIN);
    cmd.arg("run")
        .args(args)
        .arg("--socket")
        .arg(&*socket)
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap());
    topo.lab.spawn(cmd).unwrap();
    let status = wait_exit(topo, Duration::from_secs(30));
    (status, take_log(&log))
}

/// Waits up to 5 s for hairpin's log to contain `text` (lines reach the file as they
/// are logged; the test may look a moment earlier).
fn log_says(log: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = std::fs::read_to_string(log).unwrap_or_default();
        if now.contains(text) || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_state_dir_sets_a_corrupt_file_aside_restores_a_good_one_and_has_one_owner() {
    let mut topo = Topology::new("stat", &[1, 1, 1]);
    let dir = StateDir::new("stat");
    std::fs::create_dir_all(&dir.0).unwrap();
    // A file cut short, as a full disk or a crash of an older hairpin left it.
    let corrupt = b"{\"version\":1,\"ports\":[{\"name\":\"p1\",\"vl".to_vec();
    std::fs::write(dir.0.join("ports.json"), &corrupt).unwrap();
    let args = ["--ports", "p0", "--state-dir", dir.arg()];
    let (socket, log) = start(&mut topo, "stat", &args, Stdio::null());

    // Set aside under a new name, named in an error line, never overwritten.
    let aside = dir.set_aside();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), corrupt);
    let aside_name = aside[0].file_name().unwrap().to_string_lossy().into_owned();
    let text = log_says(&log, &aside_name);
    assert!(
        text.lines()
            .any(|l| l.contains("ERROR") && l.contains(&aside_name)),
        "the log names the copy: {text}"
    );
    ask(&socket, &["port", "add", "p1"]).unwrap();
    assert_eq!(dir.saved(), ["p1"]);
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        corrupt,
        "the copy is kept"
    );
    ping(&topo.vms[0], &topo.addr(1), 2).unwrap();

    // A second hairpin on the same directory (another socket, another port) is refused
    // before it attaches anything or touches the file.
    let (status, second) = run_refused(
        &mut topo,
        "stat2",
        &["--ports", "p2", "--state-dir", dir.arg()],
    );
    assert!(!status.success(), "{second}");
    assert!(
        second.contains("another hairpin keeps its run-time ports in this state directory"),
        "{second}"
    );
    assert!(!topo.sw.has_xdp("p2"), "the refused one attached p2");
    assert_eq!(dir.saved(), ["p1"], "the first's file is as it was");
    ping(&topo.vms[1], &topo.addr(0), 2).expect("the first goes on");

    // A restart restores the port the file lists.
    topo.lab.process(0).unwrap().signal(libc::SIGTERM).unwrap();
    let status = wait_exit_of(&mut topo, 0, Duration::from_secs(10));
    assert!(status.success(), "{}", take_log(&log));
    let stdout = std::env::temp_dir().join(format!("hp-stat-{}.out", std::process::id()));
    let (socket, log) = start(
        &mut topo,
        "stat3",
        &args,
        Stdio::from(File::create(&stdout).unwrap()),
    );
    let ports = ask_json(&socket, &["show", "ports"]);
    let p1 = port(&ports, "p1");
    assert_eq!(
        (&p1["origin"], &p1["state"]),
        (&json!("runtime"), &json!("up")),
        "{p1}"
    );
    let text = log_says(&log, "p1: run-time port restored");
    assert!(text.contains("p1: run-time port restored"), "{text}");
    ping(&topo.vms[1], &topo.addr(0), 2).expect("through the restored port");
    assert_eq!(dir.saved(), ["p1"]);

    // A configured port the kernel deletes: absent, its counters among the departed;
    // the final table lists it once.
    topo.sw.ip(&["link", "del", "p0"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while port(&ask_json(&socket, &["show", "ports"]), "p0")["state"] != "absent" {
        assert!(Instant::now() < deadline, "p0 never went absent");
        std::thread::sleep(Duration::from_millis(50));
    }
    topo.lab
        .last_process()
        .unwrap()
        .signal(libc::SIGTERM)
        .unwrap();
    assert!(wait_exit(&mut topo, Duration::from_secs(10)).success());
    let table = std::fs::read_to_string(&stdout).unwrap();
    let _ = std::fs::remove_file(&stdout);
    let rows = |name: &str| {
        table
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(name))
            .count()
    };
    assert_eq!((rows("p0"), rows("p1")), (1, 1), "{table}");
    let _ = take_log(&log);
}

#[test]
fn a_port_change_that_cannot_be_saved_is_refused_and_changes_nothing() {
    let mut topo = Topology::new("stro", &[1, 1, 1]);

    // A state directory that cannot be made (a file where it goes): no start.
    let file = StateDir::new("strf");
    std::fs::write(&file.0, "not a directory").unwrap();
    let (status, said) = run_refused(
        &mut topo,
        "strf",
        &["--ports", "p0", "--state-dir", file.arg()],
    );
    assert!(!status.success(), "{said}");
    assert!(said.contains("making the state directory"), "{said}");

    let dir = StateDir::new("stro");
    let args = ["--ports", "p0", "--state-dir", dir.arg()];
    let (socket, log) = start(&mut topo, "stro", &args, Stdio::null());
    ask(&socket, &["port", "add", "p1"]).unwrap();
    assert_eq!(dir.saved(), ["p1"]);

    // The directory turns read-only under hairpin. Root writes through mode 0500, so
    // the test mounts the directory read-only over itself, in hairpin's own mount
    // namespace (`ip netns exec` gave it one): the kernel refuses every write there
    // (EROFS) whoever asks, the test's view stays writable, and the mount goes with
    // hairpin, whatever happens to the test.
    let pid = topo.lab.last_process().unwrap().child().id().to_string();
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_ne!(
        ns(&pid),
        ns("self"),
        "hairpin shares the test's mount namespace"
    );
    let in_hairpins = |args: &[&str]| {
        let out = Command::new("nsenter")
            .args(["--target", &pid, "--mount", "--"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    in_hairpins(&["mount", "--bind", dir.arg(), dir.arg()]);
    in_hairpins(&["mount", "-o", "remount,bind,ro", dir.arg()]);

    let said = ask(&socket, &["port", "add", "p2"]).expect_err("not saved, not attached");
    assert!(
        said.contains("p2: not attached: the run-time ports cannot be saved")
            && said.contains("Read-only file system"),
        "the reason: {said}"
    );
    let said = ask(&socket, &["port", "del", "p1"]).expect_err("not saved, not removed");
    assert!(
        said.contains("p1: not removed") && said.contains("Read-only file system"),
        "the reason: {said}"
    );
    let ports = ask_json(&socket, &["show", "ports"]);
    let names: Vec<&str> = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p0", "p1"], "nothing changed: {ports}");
    assert!(!topo.sw.has_xdp("p2"));
    ping(&topo.vms[1], &topo.addr(0), 2).expect("p1 still forwards");
    assert_eq!(dir.saved(), ["p1"]);

    // Writable again: the same requests go through.
    in_hairpins(&["umount", dir.arg()]);
    ask(&socket, &["port", "add", "p2"]).unwrap();
    ask(&socket, &["port", "del", "p1"]).unwrap();
    assert_eq!(dir.saved(), ["p2"]);
    ping(&topo.vms[2], &topo.addr(0), 2).unwrap();
    let text = take_log(&log);
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn a_closed_stderr_does_not_stop_forwarding() {
    // `hairpin run ... 2>&1 | head -1`: one pipe for both, closed after the first line.
    let mut topo = Topology::new("pipe", &[1, 1, 1]);
    let socket =
        SocketFile::new(std::env::temp_dir().join(format!("hp-pipe-{}.sock", std::process::id())));
    let (reader, writer) = std::io::pipe().unwrap();
    let mut cmd = topo.sw.command(HAIRPIN);
    cmd.args(["run", "--ports", "p0,p1", "--stats", "1", "--socket"])
        .arg(&*socket)
        // Plenty of lines: every client request and port event.
        .env("RUST_LOG", "debug")
        .stdout(writer.try_clone().unwrap())
        .stderr(writer);
    topo.lab.spawn(cmd).unwrap();
    // (The lab dropped the command, and the writing ends with it: hairpin holds the
    // only ones.)
    let (first_tx, first) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(reader).read_line(&mut line);
        let _ = first_tx.send(line);
        // The reader goes here: the pipe is closed.
    });
    let line = first
        .recv_timeout(Duration::from_secs(30))
        .expect("a first line");
    assert!(!line.is_empty(), "hairpin wrote nothing");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ask(&socket, &["show", "ports"]).is_err() {
        assert!(Instant::now() < deadline, "hairpin never answered");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Ten seconds of forwarding while hairpin logs and prints into the closed pipe.
    let ab = stream(&topo.vms[0], &topo.addr(1), 1000);
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(10) {
        ask(&socket, &["port", "add", "p2"]).unwrap_or_else(|e| panic!("round {round}: {e}"));
        ask(&socket, &["port", "del", "p2"]).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let process = topo.lab.last_process().unwrap();
        process.signal(libc::SIGUSR1).unwrap();
        // Without --config: a refusal, logged.
        process.signal(libc::SIGHUP).unwrap();
        round += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let (sent, received) = stream_result(ab);
    assert_eq!(sent, received, "the stream lost nothing ({sent} sent)");
    assert!(
        matches!(
            topo.lab.last_process().unwrap().child().try_wait(),
            Ok(None)
        ),
        "hairpin stopped"
    );
    ping(&topo.vms[1], &topo.addr(0), 2).expect("still forwarding");
    // The lines the closed pipe refused are counted where an operator looks.
    let stats = crate::runtime::ask_json(&socket, &["show", "stats"]);
    let dropped = stats["log_lines_dropped"].as_u64().unwrap_or(0);
    assert!(
        dropped >= round,
        "{dropped} log lines dropped in {round} rounds"
    );

    // SIGTERM: a clean stop, its last lines lost.
    topo.lab
        .last_process()
        .unwrap()
        .signal(libc::SIGTERM)
        .unwrap();
    let status = wait_exit(&mut topo, Duration::from_secs(10));
    assert!(status.success(), "exit: {status}");
    assert!(!topo.sw.has_xdp("p0") && !topo.sw.has_xdp("p1"), "detached");
}
