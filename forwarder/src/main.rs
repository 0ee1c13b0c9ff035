//! The `hairpin` command line: `run` (the switch, as a service), `demo`, `watch`, and the
//! client commands that query and change a running switch over its control socket.
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use hairpin::control::protocol::Request;

mod cli;
mod demo;

use cli::{
    args::*,
    client::ask,
    serve::{forward, watch},
};

fn main() {
    init_logging();
    if let Err(e) = run(Cli::parse()) {
        use std::io::Write as _;
        // A closed stderr loses the message, not the exit status.
        let _ = writeln!(std::io::stderr(), "hairpin: error: {e:#}");
        std::process::exit(1);
    }
}

/// Logs go to stderr through `tracing`, filtered by `RUST_LOG` (`info` by default; e.g.
/// `RUST_LOG=hairpin=debug,aya=warn`), coloured only on a terminal, and without a
/// timestamp under systemd, whose journal stamps every line itself. A closed stderr
/// drops lines, counted ([`logging`]): it never stops hairpin.
fn init_logging() {
    use std::io::IsTerminal as _;
    use tracing_subscriber::{EnvFilter, filter::LevelFilter};
    let (filter, bad) = match EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
    {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(hairpin::logging::LogWriter::new(
            std::io::stderr(),
            !journal,
        ))
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    if journal {
        builder.without_time().init();
    } else {
        builder.init();
    }
    if let Some(e) = bad {
        tracing::warn!("RUST_LOG ignored ({e}); logging at info");
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => forward(*args),
        Command::Demo { seconds } => demo::run(seconds.map(Duration::from_secs)),
        Command::Top {
            interval,
            once,
            socket,
        } => cli::top::run(&socket, Duration::from_secs_f64(interval), once),
        Command::Watch { ports, xdp_mode } => watch(&ports, xdp_mode),
        Command::Port(PortCommand::Add { spec, client }) => ask(&client, Request::PortAdd(spec)),
        Command::Port(PortCommand::Del { name, client }) => ask(&client, Request::PortDel { name }),
        Command::Show(ShowCommand::Ports(client)) => ask(&client, Request::ShowPorts),
        Command::Show(ShowCommand::Fdb { port, vlan, client }) => {
            ask(&client, Request::ShowFdb { port, vlan })
        }
        Command::Show(ShowCommand::Stats(client)) => ask(&client, Request::ShowStats),
        Command::Show(ShowCommand::Mirrors(client)) => ask(&client, Request::ShowMirrors),
        Command::Mirror(MirrorCommand::Add { spec, client }) => {
            ask(&client, Request::MirrorAdd(spec))
        }
        Command::Mirror(MirrorCommand::Del { name, client }) => {
            ask(&client, Request::MirrorDel { name })
        }
        Command::Fdb(FdbCommand::Add {
            port,
            mac,
            vlan,
            client,
        }) => ask(&client, Request::FdbAdd { port, mac, vlan }),
        Command::Fdb(FdbCommand::Del { mac, vlan, client }) => {
            ask(&client, Request::FdbDel { mac, vlan })
        }
        Command::Fdb(FdbCommand::Flush { port, client }) => {
            ask(&client, Request::FdbFlush { port })
        }
        Command::Reload(client) => ask(&client, Request::Reload),
        Command::Trace(args) => ask(
            &args.client,
            Request::Trace {
                port: args.port.clone(),
                frame: args.frame(),
            },
        ),
        Command::Capture(args) => cli::capture::run(&args),
        Command::LibvirtHook(args) => cli::libvirt::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn mirror_commands_take_their_spec_and_the_client_options() {
        use hairpin::control::protocol::Direction;
        let cli = Cli::try_parse_from([
            "hairpin", "mirror", "add", "ids", "--from", "vm1,vm2", "--out", "--to", "mon",
            "--json",
        ])
        .unwrap();
        let Command::Mirror(MirrorCommand::Add { spec, client }) = cli.command else {
            panic!("not a mirror add");
        };
        assert_eq!(spec.name, "ids");
        assert_eq!(spec.from, ["vm1", "vm2"]);
        assert_eq!((spec.direction, spec.to.as_str()), (Direction::Out, "mon"));
        assert!(client.json);
        let cli = Cli::try_parse_from(["hairpin", "mirror", "del", "ids"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Mirror(MirrorCommand::Del { name, .. }) if name == "ids"
        ));
        assert!(Cli::try_parse_from(["hairpin", "show", "mirrors", "--json"]).is_ok());
        assert!(
            Cli::try_parse_from(["hairpin", "mirror", "add", "ids", "--in", "--both"]).is_err()
        );
    }
}
