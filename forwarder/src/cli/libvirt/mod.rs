//! `hairpin libvirt-hook`: libvirt's qemu hook (`/etc/libvirt/hooks/qemu` execs it as
//! `qemu DOMAIN OPERATION SUBOP EXTRA`, the domain XML on stdin), which attaches a
//! domain's taps to hairpin with the settings of its `<metadata>` (`domain.rs`) and
//! detaches them when it stops.
//!
//! | operation | what the hook does |
//! | --- | --- |
//! | `prepare` | checks the metadata: an error fails the start with its message, before qemu runs |
//! | `started` | attaches each port (qemu has made the taps): a port of that name already there is replaced; an error fails the start, and libvirt stops the domain (whose `stopped` detaches what was attached) |
//! | `stopped`, `release` | detaches the ports hairpin has; one already gone is fine |
//! | `reconnect`, `attach` | (libvirtd restarted) attaches the ports hairpin lacks; an error is a warning: libvirt kills a domain whose reconnect hook fails |
//! | `migrate`, `restore` | checks the metadata (an error cancels them) and prints nothing, which keeps the XML; the domain's `started` attaches |
//! | any other | nothing |
use std::{
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use hairpin::control::{
    protocol::{Request, Response},
    service::{self, DEFAULT_SOCKET},
    spec::PortSpec,
};

mod domain;

use domain::Domain;

/// `hairpin libvirt-hook`'s arguments: libvirt's, and where hairpin listens.
#[derive(Debug, Args)]
pub(crate) struct HookArgs {
    /// The control socket of the hairpin to attach to (default: $HAIRPIN_SOCKET, else
    /// /run/hairpin/hairpin.sock).
    #[arg(long)]
    pub(crate) socket: Option<PathBuf>,
    /// The domain's name.
    pub(crate) domain: String,
    /// What libvirt is doing: prepare, start, started, stopped, release, migrate,
    /// restore, reconnect, attach.
    pub(crate) operation: String,
    /// libvirt's sub-operation and extra argument (`begin -`, `end -`): not used.
    #[arg(allow_hyphen_values = true)]
    pub(crate) rest: Vec<String>,
}

/// Runs the hook: reads the domain XML from stdin when the operation needs it.
pub(crate) fn run(args: &HookArgs) -> Result<()> {
    let operation = Operation::from(args.operation.as_str());
    if operation == Operation::Other {
        return Ok(());
    }
    let mut xml = String::new();
    std::io::stdin()
        .read_to_string(&mut xml)
        .context("reading the domain XML from stdin")?;
    let socket = socket(args.socket.as_deref());
    let mut hairpin = Socket(&socket);
    let warnings = hook(operation, &xml, &mut hairpin)?;
    // Written, never `eprintln!`: libvirt may run the hook with stderr closed, and a panic
    // here fails the hook, which at `reconnect` makes libvirt kill the running domain.
    let mut stderr = std::io::stderr().lock();
    for warning in warnings {
        let _ = writeln!(
            stderr,
            "hairpin libvirt-hook: domain {}: {warning}",
            args.domain
        );
    }
    Ok(())
}

/// The socket: `--socket`, else `$HAIRPIN_SOCKET`, else the service's default.
fn socket(given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HAIRPIN_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// The operations libvirt runs the qemu hook for that the hook acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Prepare,
    Started,
    Stopped,
    Release,
    Reconnect,
    Attach,
    Migrate,
    Restore,
    /// `start` (before qemu runs) and any operation a newer libvirt adds.
    Other,
}

impl From<&str> for Operation {
    fn from(text: &str) -> Self {
        match text {
            "prepare" => Self::Prepare,
            "started" => Self::Started,
            "stopped" => Self::Stopped,
            "release" => Self::Release,
            "reconnect" => Self::Reconnect,
            "attach" => Self::Attach,
            "migrate" => Self::Migrate,
            "restore" => Self::Restore,
            _ => Self::Other,
        }
    }
}

/// What the hook needs of hairpin: a seam, so that the operations are tested without
/// one running.
trait Switch {
    /// The names of its ports.
    fn ports(&mut self) -> Result<Vec<String>>;
    /// Attaches a port.
    fn add(&mut self, spec: PortSpec) -> Result<()>;
    /// Detaches a port.
    fn del(&mut self, name: &str) -> Result<()>;
}

/// The hairpin at a control socket.
struct Socket<'a>(&'a Path);

impl Socket<'_> {
    fn call(&self, request: Request) -> Result<Response> {
        let response = service::request(self.0, &request)?;
        match response {
            Response::Error { message } => Err(anyhow!("hairpin refused: {message}")),
            other => Ok(other),
        }
    }
}

impl Switch for Socket<'_> {
    fn ports(&mut self) -> Result<Vec<String>> {
        match self.call(Request::ShowPorts)? {
            Response::Ports { ports } => Ok(ports.into_iter().map(|p| p.name).collect()),
            other => bail!("unexpected answer from hairpin: {other:?}"),
        }
    }

    fn add(&mut self, spec: PortSpec) -> Result<()> {
        let name = spec.name.clone();
        self.call(Request::PortAdd(spec))
            .with_context(|| format!("attaching {name}"))
            .map(drop)
    }

    fn del(&mut self, name: &str) -> Result<()> {
        self.call(Request::PortDel {
            name: name.to_owned(),
        })
        .with_context(|| format!("detaching {name}"))
        .map(drop)
    }
}

/// Does what `operation` asks with the domain XML `xml`; returns the warnings to print
/// (an error fails the hook, and with it what libvirt was doing).
fn hook(operation: Operation, xml: &str, hairpin: &mut dyn Switch) -> Result<Vec<String>> {
    match operation {
        Operation::Prepare | Operation::Migrate | Operation::Restore => {
            Domain::parse(xml)?;
            Ok(Vec::new())
        }
        Operation::Started => {
            let domain = Domain::parse(xml)?;
            if domain.is_empty() {
                return Ok(Vec::new());
            }
            let specs = domain.specs()?;
            let have = hairpin.ports()?;
            for spec in specs {
                // Left from an earlier run (a state dir keeps ports): its settings may
                // be old ones.
                if have.contains(&spec.name) {
                    hairpin.del(&spec.name)?;
                }
                hairpin.add(spec)?;
            }
            Ok(Vec::new())
        }
        Operation::Stopped | Operation::Release => {
            let taps = domain::taps_leniently(xml)?;
            if taps.is_empty() {
                return Ok(Vec::new());
            }
            let have = hairpin.ports()?;
            for tap in taps.iter().filter(|t| have.contains(t)) {
                hairpin.del(tap)?;
            }
            Ok(Vec::new())
        }
        Operation::Reconnect | Operation::Attach => Ok(reattach(xml, hairpin)
            .err()
            .map(|e| format!("{e:#} (the domain keeps running)"))
            .into_iter()
            .collect()),
        Operation::Other => Ok(Vec::new()),
    }
}

/// Attaches the ports of a running domain that hairpin lacks (it restarted without a
/// state dir, or someone removed them).
fn reattach(xml: &str, hairpin: &mut dyn Switch) -> Result<()> {
    let domain = Domain::parse(xml)?;
    if domain.is_empty() {
        return Ok(());
    }
    let specs = domain.specs()?;
    let have = hairpin.ports()?;
    for spec in specs.into_iter().filter(|s| !have.contains(&s.name)) {
        hairpin.add(spec)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
