//! `hairpin run` as a service: the bridge from the options or the config file, the
//! signals (reload, counters, stop), systemd's readiness and watchdog, counters on stdout;
//! and `hairpin watch`.
use std::{
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hairpin::control::{
    config::BridgeConfig,
    config_file, metrics,
    port::Interface,
    preflight,
    protocol::{Request, Response},
    service::{self, Service, ServiceOptions},
    xdp::{Steering, XdpAttachMode},
};
use hairpin::datapath::DatapathConfig;
use hairpin_common::PortConf;
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

use super::args::*;
use super::client::counters_text;

fn lookup_ports(names: &[String]) -> Result<Vec<Interface>> {
    Ok(names
        .iter()
        .map(|name| Interface::lookup(name))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The bridge the command line describes.
fn config_from_options(args: &RunArgs) -> Result<BridgeConfig> {
    if args.ports.is_empty() && args.uplink.is_none() {
        // A switch with no port yet: qemu's scripts, libvirt's hook and hairpin-cni add
        // them (`hairpin port add`) as VMs and pods come.
        tracing::info!("no port given: waiting for `hairpin port add`");
    }
    let ports = args
        .port_flags
        .ports(args.mode, &args.ports, args.uplink.as_deref())?;
    Ok(BridgeConfig {
        mode: args.mode,
        ports,
        fdb_capacity: args.fdb_size,
        fdb_max_age: args.fdb_age,
        xdp_mode: args.xdp_mode,
        queues: args.queues,
        cores: args.cores.clone().map(|c| c.0),
        datapath: DatapathConfig {
            zero_copy: args.zero_copy,
            ring_size: args.ring_size,
            frame_size: args.frame_size,
            busy_poll: args.busy_poll,
            umem_frames: args.umem_frames,
        },
        group_fwd_mask: args.group_fwd_mask,
        fast_path: args.fast_path,
        fast_floods: args.fast_floods,
        mirrors: Vec::new(),
    })
}

/// Output that never holds anyone up: lines go to a thread that writes them to stdout,
/// through a short queue; when stdout is full or closed, lines are dropped (and a
/// closed stdout's EPIPE is ignored), so `hairpin run | head -1` keeps forwarding.
struct Printer {
    lines: Option<mpsc::SyncSender<String>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Printer {
    fn new() -> Self {
        let (lines, inbox) = mpsc::sync_channel::<String>(64);
        let thread = thread::Builder::new()
            .name("hairpin-output".into())
            .spawn(move || {
                use std::io::Write as _;
                let mut stdout = std::io::stdout();
                for text in inbox {
                    let _ = stdout.write_all(text.as_bytes());
                    let _ = stdout.flush();
                }
            })
            .ok();
        Self {
            lines: Some(lines),
            thread,
        }
    }

    fn print(&self, text: String) {
        if let Some(lines) = &self.lines {
            let _ = lines.try_send(text);
        }
    }

    /// Waits up to `timeout` for what was printed to be written.
    fn finish(mut self, timeout: Duration) {
        drop(self.lines.take());
        let deadline = Instant::now() + timeout;
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

pub(crate) fn forward(args: RunArgs) -> Result<()> {
    let (config, config_file) = match &args.config {
        Some(path) => (config_file::load(path)?, Some(path.clone())),
        None => (config_from_options(&args)?, None),
    };
    preflight::check()?;
    // Before anything starts, so that no signal finds the default action (death).
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])
        .context("installing signal handlers")?;
    let mode = config.mode;
    let ports = config.ports.len();
    let service = Service::spawn(
        config,
        ServiceOptions {
            socket: Some(args.socket.clone()),
            config_file,
            state_dir: args.state_dir.clone(),
        },
    )?;
    // This thread, and the threads it starts, keep off the workers' cores too.
    service::keep_off(service.cores());
    let metrics = args
        .metrics
        .map(|addr| metrics::serve(addr, service.caller(), service.cores()))
        .transpose()?;
    tracing::info!(
        "forwarding: mode {mode}, {} worker(s) on cores {:?}; control socket {}{}; Ctrl-C to stop",
        service.cores().len(),
        service.cores(),
        args.socket.display(),
        metrics
            .as_ref()
            .map(|m| format!("; metrics at http://{}/metrics", m.addr()))
            .unwrap_or_default()
    );
    // Every port is attached and the socket answers: ready (Type=notify under systemd).
    systemd(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("forwarding: {ports} port(s), mode {mode}")),
    ]);
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut last_ping = Instant::now();
    let printer = Printer::new();
    let mut last_print = Instant::now();
    'running: loop {
        for signal in signals.pending() {
            match signal {
                SIGHUP => reload(&service),
                SIGUSR1 => print_stats(&service, &printer),
                _ => break 'running,
            }
        }
        if args.stats > 0 && last_print.elapsed() >= Duration::from_secs(args.stats) {
            last_print = Instant::now();
            print_stats(&service, &printer);
        }
        // The watchdog is fed only while the control thread answers: a wedged control
        // plane gets the service restarted.
        if let Some(every) = watchdog
            && last_ping.elapsed() >= every
            && matches!(service.call(Request::ShowPorts), Response::Ports { .. })
        {
            last_ping = Instant::now();
            systemd(&[NotifyState::Watchdog]);
        }
        thread::sleep(Duration::from_millis(50));
    }
    systemd(&[NotifyState::Stopping]);
    drop(metrics);
    let (fin, panicked) = service.stop();
    tracing::info!(
        "stopped; XDP detached from {} port(s)",
        fin.ports.iter().filter(|p| p.state != "absent").count()
    );
    printer.print(counters_text(&fin) + "\n");
    printer.finish(Duration::from_secs(2));
    if panicked > 0 {
        bail!("{panicked} worker(s) panicked; the counters above may be incomplete");
    }
    Ok(())
}

/// SIGHUP: re-reads the configuration file, telling systemd while it does.
fn reload(service: &Service) {
    let mut reloading = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        reloading.push(now);
    }
    systemd(&reloading);
    match service.call(Request::Reload) {
        Response::Done { message } => tracing::info!("SIGHUP: {message}"),
        Response::Error { message } => tracing::warn!("SIGHUP: {message}"),
        _ => {}
    }
    systemd(&[NotifyState::Ready]);
}

/// Tells systemd (when it started us with `Type=notify`; otherwise does nothing).
fn systemd(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("sd_notify: {e}");
    }
}

fn print_stats(service: &Service, printer: &Printer) {
    if let Response::Stats(stats) = service.call(Request::ShowStats) {
        printer.print(counters_text(&stats) + "\n");
    }
}

pub(crate) fn watch(names: &[String], mode: XdpAttachMode) -> Result<()> {
    preflight::check()?;
    let ports = lookup_ports(names)?;
    let mut steering = Steering::load(1, false)?; // No MAC table: the smallest map.
    for (slot, port) in (0u32..).zip(&ports) {
        steering.configure_port(
            port,
            PortConf {
                slot,
                ..PortConf::default()
            },
        )?;
        let attached = steering.attach(port, mode)?;
        tracing::info!(
            "{}: XDP attached ({attached}), {} RX queue(s), MAC {}",
            port.name,
            port.rx_queues,
            port.mac
        );
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        thread::sleep(Duration::from_secs(1));
        let mut text = String::new();
        for (slot, port) in (0u32..).zip(&ports) {
            for queue in 0..port.rx_queues {
                let s = steering.queue_stats(slot, queue)?;
                text += &format!(
                    "{:>15} q{queue:<3} rx {:>12} pkts {:>14} bytes  passed {:>12}\n",
                    port.name, s.rx_packets, s.rx_bytes, s.passed
                );
            }
        }
        // A closed stdout (`hairpin watch | head`) loses the lines, and the watch goes
        // on until a signal stops it and detaches.
        use std::io::Write as _;
        let _ = std::io::stdout().write_all(text.as_bytes());
    }
    steering.detach_all();
    tracing::info!("detached from {} port(s)", ports.len());
    Ok(())
}
