//! The `hairpin` command line.
use std::{thread, time::Duration};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use hairpin::control::{
    port::Interface,
    preflight,
    xdp::{Steering, XdpAttachMode},
};
use hairpin_common::PortConf;

/// hairpin: an IEEE 802.1Qbg edge virtual bridge over AF_XDP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach the XDP program to ports in pass-through mode (frames still go to the
    /// kernel) and print its per-queue counters every second until Ctrl-C.
    Watch {
        /// Ports to watch, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        ports: Vec<String>,
        /// XDP attach mode.
        #[arg(long, value_enum, default_value_t)]
        xdp_mode: XdpAttachMode,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("hairpin: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Watch { ports, xdp_mode } => watch(&ports, xdp_mode),
    }
}

fn watch(names: &[String], mode: XdpAttachMode) -> Result<()> {
    preflight::check()?;
    let ports = names
        .iter()
        .map(|name| Interface::lookup(name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut steering = Steering::load()?;
    for (slot, port) in (0u32..).zip(&ports) {
        steering.configure_port(
            port,
            PortConf {
                slot,
                ..PortConf::default()
            },
        )?;
        let attached = steering.attach(port, mode)?;
        log::info!(
            "{}: XDP attached ({attached}), {} RX queue(s), MAC {}",
            port.name,
            port.rx_queues,
            port.mac
        );
    }
    hairpin::catch_stop_signals().context("installing signal handlers")?;
    while !hairpin::stop_requested() {
        thread::sleep(Duration::from_secs(1));
        for (slot, port) in (0u32..).zip(&ports) {
            for queue in 0..port.rx_queues {
                let s = steering.queue_stats(slot, queue)?;
                println!(
                    "{:>15} q{queue:<3} rx {:>12} pkts {:>14} bytes  passed {:>12}",
                    port.name, s.rx_packets, s.rx_bytes, s.passed
                );
            }
        }
    }
    steering.detach_all();
    log::info!("detached from {} port(s)", ports.len());
    Ok(())
}
