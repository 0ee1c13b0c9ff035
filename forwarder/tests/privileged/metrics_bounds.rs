//! The metrics endpoint holds when its clients misbehave (#27): a 256 MB request head on
//! one connection and 2000 idle connections leave hairpin's memory where it was and start
//! no thread per connection, and a normal scrape meanwhile answers within 1 s.
use std::{
    io::{self, Write as _},
    net::TcpStream,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    Topology,
    faults::{hairpin_pid, rss_kib},
    observe::{METRICS, get},
    runtime::{start, take_log},
};

/// The idle connections held at once.
const IDLE: usize = 2000;

/// One `VmXxx:` or `Threads:` figure of `/proc/PID/status`.
fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in: {status}"))
}

/// Lets this process hold `needed` descriptors: raises its soft `RLIMIT_NOFILE` (up to
/// the hard limit) when it is lower. Every idle connection is a descriptor here.
fn allow_descriptors(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: fills a live `rlimit`.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit: {}", io::Error::last_os_error());
    if limit.rlim_cur >= needed {
        return;
    }
    assert!(
        limit.rlim_max >= needed,
        "this test holds {needed} descriptors; the hard RLIMIT_NOFILE is {}",
        limit.rlim_max
    );
    limit.rlim_cur = needed;
    // SAFETY: reads a live `rlimit`.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(set, 0, "setrlimit: {}", io::Error::last_os_error());
}

#[test]
fn a_huge_head_and_2000_idle_connections_leave_memory_alone_and_a_scrape_answers() {
    allow_descriptors(IDLE as u64 + 512);
    let mut topo = Topology::new("mbound", &[1]);
    let (_socket, log) = start(
        &mut topo,
        "mbound",
        &["--ports", "p0", "--metrics", METRICS],
        Stdio::null(),
    );
    let pid = hairpin_pid(&mut topo);
    // One scrape first: what a scrape allocates is in the figure before.
    let (status, _) = get(&topo.sw, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    let rss_before = rss_kib(pid);
    let threads_before = status_field(pid, "Threads:");
    // The high-water mark from here on (`clear_refs` 5 resets VmHWM to VmRSS), and
    // VmRSS sampled every 10 ms besides.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let sampled = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (done, sampled) = (Arc::clone(&done), Arc::clone(&sampled));
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                sampled.fetch_max(rss_kib(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // A 256 MB header field on one connection; hairpin answers 431 after 16 KiB and
    // closes it, so the writes stop with an error long before the end.
    let mut big = topo
        .sw
        .enter(|| TcpStream::connect(METRICS))
        .unwrap()
        .unwrap();
    let sender = thread::spawn(move || {
        let mut sent = 0usize;
        let chunk = vec![b'a'; 1024 * 1024];
        let result = big
            .write_all(b"GET /metrics HTTP/1.1\r\nX-Big: ")
            .and_then(|()| {
                for _ in 0..256 {
                    big.write_all(&chunk)?;
                    sent += chunk.len();
                }
                Ok(())
            });
        (sent, result)
    });
    // 2000 connections that send nothing, all held open on this side.
    let idle = topo
        .sw
        .enter(|| {
            (0..IDLE)
                .map(|_| TcpStream::connect(METRICS))
                .collect::<io::Result<Vec<_>>>()
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("opening {IDLE} connections: {e}"));
    let threads_during = status_field(pid, "Threads:");

    let began = Instant::now();
    let (status, body) = get(&topo.sw, "/metrics");
    let scraped = began.elapsed();
    assert!(status.contains(" 200 "), "{status}");
    assert!(body.contains("hairpin_port_rx_packets_total{port=\"p0\"}"));
    let (sent, result) = sender.join().unwrap();

    thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let sampled = sampled.load(Ordering::Relaxed);
    let peak = status_field(pid, "VmHWM:").max(sampled);
    let after = rss_kib(pid);
    eprintln!(
        "RSS {rss_before} kB before, peak {peak} kB (sampled {sampled} kB), {after} kB after; \
         threads {threads_before} then {threads_during}; scrape {scraped:.1?}; the big head \
         stopped after {} MiB: {result:?}",
        sent / (1024 * 1024)
    );
    assert!(
        peak <= rss_before + 50 * 1024,
        "RSS went from {rss_before} kB to {peak} kB"
    );
    assert!(
        scraped < Duration::from_secs(1),
        "a scrape beside {IDLE} idle connections took {scraped:?}"
    );
    // No thread per connection (one more would be another part of hairpin's doing).
    assert!(
        threads_during <= threads_before + 1,
        "{threads_before} threads before, {threads_during} with {IDLE} connections open"
    );
    assert!(
        result.is_err(),
        "hairpin read all of a 256 MB header ({sent} bytes)"
    );

    // Still serving once they are gone.
    drop(idle);
    let (status, _) = get(&topo.sw, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    drop(topo);
    let log = take_log(&log);
    assert!(!log.contains("panicked"), "{log}");
}
