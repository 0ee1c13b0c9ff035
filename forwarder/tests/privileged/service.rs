//! The control socket holds when its clients misbehave (#27): clients that connect and
//! send nothing, or trickle a byte at a time, hold up neither the kernel's changes nor
//! another client's command nor a stop. Runs the `hairpin` binary as an operator would.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::Path,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use crate::{
    Topology, ping,
    runtime::{ask, ask_json, port, start, take_log},
};

/// Clients that never send a request (`idle`) or send one byte every 1.5 s
/// (`trickling`), each connecting again as soon as hairpin closes it, until stopped.
struct Pests {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// What hairpin answered the idle ones.
    answers: Arc<Mutex<Vec<String>>>,
}

impl Pests {
    fn start(socket: &Path, idle: usize, trickling: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for _ in 0..idle {
            let (socket, stop, answers) = (socket.to_owned(), stop.clone(), answers.clone());
            threads.push(thread::spawn(move || {
                while let Some(stream) = connect(&socket, &stop) {
                    stream
                        .set_read_timeout(Some(Duration::from_millis(500)))
                        .unwrap();
                    let mut line = String::new();
                    let mut reader = BufReader::new(&stream);
                    // Read until hairpin answers and closes, or the test is over.
                    while !stop.load(Ordering::Relaxed) {
                        match reader.read_line(&mut line) {
                            Ok(0) => break,
                            Ok(_) => {
                                answers.lock().unwrap().push(std::mem::take(&mut line));
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => break,
                        }
                    }
                }
            }));
        }
        for _ in 0..trickling {
            let (socket, stop) = (socket.to_owned(), stop.clone());
            threads.push(thread::spawn(move || {
                while let Some(mut stream) = connect(&socket, &stop) {
                    for &byte in b"{\"version\":1,\"request\":\"show_ports\"}\n"
                        .iter()
                        .cycle()
                    {
                        if stream.write_all(&[byte]).is_err() {
                            break;
                        }
                        for _ in 0..15 {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            }));
        }
        Self {
            stop,
            threads,
            answers,
        }
    }

    /// Stops them; what hairpin answered the idle ones.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let answers = self.answers.lock().unwrap();
        answers.clone()
    }
}

/// A connection to `socket`, retried while hairpin is busy; none once `stop` is set.
fn connect(socket: &Path, stop: &AtomicBool) -> Option<UnixStream> {
    while !stop.load(Ordering::Relaxed) {
        match UnixStream::connect(socket) {
            Ok(stream) => return Some(stream),
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    None
}

#[test]
fn idle_and_trickling_clients_hold_up_no_link_change_command_or_stop() {
    let mut topo = Topology::new("svc", &[1, 1, 1]);
    let (socket, log) = start(&mut topo, "svc", &["--ports", "p0,p1,p2"], Stdio::null());
    let mode = std::fs::metadata(&*socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the control socket is root's only");
    ping(&topo.vms[0], &topo.addr(2), 1).unwrap();

    let pests = Pests::start(&socket, 50, 5);
    // All of them connected, and the first ones past their deadline once.
    thread::sleep(Duration::from_millis(2500));

    // A port's link goes: detached at once, not after the clients.
    let deleted = Instant::now();
    topo.sw.ip(&["link", "del", "p2"]).unwrap();
    loop {
        let ports = ask_json(&socket, &["show", "ports"]);
        if port(&ports, "p2")["state"] == "absent" {
            break;
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(1),
            "p2 not detached 1 s after its link went: {ports}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let detached = deleted.elapsed();

    // A command answers at once, every time.
    for _ in 0..5 {
        let asked = Instant::now();
        let ports = ask(&socket, &["show", "ports"]).unwrap_or_else(|e| panic!("{e}"));
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(1), "show ports took {took:?}");
        assert!(ports.contains("p0"), "{ports}");
        thread::sleep(Duration::from_millis(300));
    }
    ping(&topo.vms[0], &topo.addr(1), 2).expect("still forwarding");

    // SIGTERM: out within 2 s, the socket gone with it.
    let process = topo.lab.last_process().unwrap();
    process.signal(libc::SIGTERM).unwrap();
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = process.child().try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "hairpin did not exit within 2 s of SIGTERM"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let exited = signalled.elapsed();
    assert!(status.success(), "{status}: {}", take_log(&log));
    assert!(!socket.exists(), "the socket is removed on exit");

    let answers = pests.finish();
    let log = take_log(&log);
    assert!(
        answers
            .iter()
            .any(|a| a.contains("\"message\":\"no request within 2 s\"")),
        "the idle clients are told why they are closed: {answers:?}"
    );
    assert!(
        answers.iter().all(|a| a.contains("\"response\":\"error\"")),
        "{answers:?}"
    );
    assert_eq!(log.matches("p2 is gone").count(), 1, "{log}");
    assert!(!log.contains("panicked"), "{log}");
    println!("detached in {detached:?}, exited {exited:?} after SIGTERM");
}
