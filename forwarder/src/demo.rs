//! `hairpin demo`: three "VMs" in network namespaces, bridged by hairpin in a fourth.
//!
//! ```text
//!   vm1 (198.18.0.1) eth0 ── port1 ┐
//!   vm2 (198.18.0.2) eth0 ── port2 ┼─ hairpin run --mode veb   (namespace "sw")
//!   vm3 (198.18.0.3) eth0 ── port3 ┘
//! ```
//!
//! hairpin runs as a child process in "sw", exactly as a user would run it, with its
//! Prometheus endpoint on the namespace's loopback. The demo pings every pair of VMs,
//! streams TCP from vm1 to vm3 with iperf3, then starts a steady ping from vm1 to vm2 and
//! shows the live `hairpin top` view until Ctrl-C (or `--seconds`); the lab is removed on
//! every way out.
use std::{
    sync::{Arc, atomic::AtomicBool},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hairpin::{
    control::preflight,
    netlab::{Lab, Netns},
};

/// hairpin's metrics endpoint, on the switch namespace's own loopback.
const METRICS: &str = "127.0.0.1:9417";

const VMS: [(&str, &str, &str); 3] = [
    ("vm1", "port1", "198.18.0.1"),
    ("vm2", "port2", "198.18.0.2"),
    ("vm3", "port3", "198.18.0.3"),
];

pub fn run(limit: Option<Duration>) -> Result<()> {
    preflight::check()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    Lab::sweep_stale();
    let mut lab = Lab::new("demo");
    let sw = lab.add_ns("sw")?;
    let mut vms: Vec<Netns> = Vec::new();
    for (vm, port, addr) in VMS {
        let ns = lab.add_ns(vm)?;
        lab.veth((&ns, "eth0"), (&sw, port), 1)?;
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        println!(
            "demo: {} eth0 {addr}/24  <->  {} {port}",
            ns.name(),
            sw.name()
        );
        vms.push(ns);
    }

    let exe = std::env::current_exe().context("finding the hairpin binary")?;
    // A socket of its own, so the demo runs beside a hairpin serving the default one.
    let socket = format!("/run/hairpin/demo-{}.sock", std::process::id());
    let mut cmd = sw.command(&exe.to_string_lossy());
    cmd.args([
        "run",
        "--mode",
        "veb",
        "--ports",
        "port1,port2,port3",
        "--metrics",
        METRICS,
        "--socket",
        &socket,
    ]);
    println!(
        "demo: ip netns exec {} hairpin run --mode veb --ports port1,port2,port3 --metrics {METRICS} --socket {socket}",
        sw.name()
    );
    let hairpin_index = lab.process_count();
    lab.spawn(cmd)?;
    let ports: Vec<&str> = VMS.iter().map(|v| v.1).collect();
    if !sw.wait_for_xdp(&ports, Duration::from_secs(15)) {
        bail!("hairpin did not attach to {ports:?} within 15 s (see its log above)");
    }

    for (i, (a, _, _)) in VMS.iter().enumerate() {
        for (b, _, addr) in &VMS[i + 1..] {
            let out = vms[i].run("ping", &["-c", "3", "-i", "0.2", "-W", "1", addr]);
            let verdict = match &out {
                Ok(o) => summary_line(&o.stdout, "packet loss"),
                Err(e) => format!("FAILED: {e}"),
            };
            println!("demo: ping {a} -> {b}: {verdict}");
        }
    }
    let mut server = vms[2].command("iperf3");
    server.args(["-s", "-1", "-B", VMS[2].2]);
    lab.spawn(server)?;
    thread::sleep(Duration::from_millis(300));
    match vms[0].run("iperf3", &["-c", VMS[2].2, "-t", "3", "-f", "m"]) {
        Ok(o) => println!(
            "demo: iperf3 vm1 -> vm3 (TCP, 3 s): {}",
            summary_line(&o.stdout, "receiver")
        ),
        Err(e) => println!("demo: iperf3 vm1 -> vm3 FAILED: {e}"),
    }

    // A steady trickle vm1 -> vm2 for the live view; port3 stays idle.
    let mut trickle = vms[0].command("ping");
    trickle
        .args(["-i", "0.01", "-q", VMS[1].2])
        .stdout(std::process::Stdio::null());
    lab.spawn(trickle)?;
    println!(
        "demo: forwarding until {}; vm1 pings vm2 every 10 ms. Also try:\n\
         demo:   ip netns exec {} curl -s http://{METRICS}/metrics\n\
         demo:   hairpin show ports --socket {socket}",
        limit.map_or("Ctrl-C".to_owned(), |l| format!(
            "{} s have passed",
            l.as_secs()
        )),
        sw.name()
    );
    thread::sleep(Duration::from_secs(2));
    let until = limit.map(|l| Instant::now() + l);
    if let Err(e) = crate::cli::top::watch(
        std::path::Path::new(&socket),
        Duration::from_secs(1),
        &stop,
        until,
    ) {
        println!("demo: the live view stopped: {e:#}");
    }
    // hairpin got the same Ctrl-C if there was one; SIGTERM it in any case and let it
    // print its final counters before the lab goes.
    if let Some(hairpin) = lab.process(hairpin_index) {
        let _ = hairpin.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(hairpin.child().try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
    println!("demo: removing the lab");
    Ok(())
}

/// The last line of `output` containing `needle`, trimmed.
fn summary_line(output: &[u8], needle: &str) -> String {
    String::from_utf8_lossy(output)
        .lines()
        .rfind(|l| l.contains(needle))
        .map_or_else(|| "(no summary)".to_owned(), |l| l.trim().to_owned())
}
