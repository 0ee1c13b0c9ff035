//! The node's hairpin, over its control socket.
use std::{io, path::Path};

use hairpin::control::{
    protocol::{PortInfo, Request, Response},
    service::request,
    spec::PortSpec,
};

use crate::failure::Failure;

/// The hairpin listening on one socket.
#[derive(Clone, Copy, Debug)]
pub struct Hairpin<'a> {
    socket: &'a Path,
}

impl<'a> Hairpin<'a> {
    /// The hairpin at `socket`.
    pub fn new(socket: &'a Path) -> Self {
        Self { socket }
    }

    fn call(&self, what: &Request) -> Result<Response, Failure> {
        request(self.socket, what).map_err(|e| match e.kind() {
            // Not started yet (a DaemonSet pod restarting): the runtime retries.
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                Failure::try_again_later(format!("hairpin is not answering: {e}"))
            }
            _ => Failure::io("asking hairpin", e),
        })
    }

    /// Port `name`, if hairpin has it.
    pub fn port(&self, name: &str) -> Result<Option<PortInfo>, Failure> {
        match self.call(&Request::ShowPorts)? {
            Response::Ports { ports } => Ok(ports.into_iter().find(|p| p.name == name)),
            other => Err(unexpected(&other)),
        }
    }

    /// Attaches a port.
    pub fn add_port(&self, spec: PortSpec) -> Result<(), Failure> {
        self.change(&Request::PortAdd(spec))
    }

    /// Detaches port `name`.
    pub fn del_port(&self, name: &str) -> Result<(), Failure> {
        self.change(&Request::PortDel {
            name: name.to_owned(),
        })
    }

    fn change(&self, what: &Request) -> Result<(), Failure> {
        match self.call(what)? {
            Response::Done { .. } => Ok(()),
            Response::Error { message } => Err(Failure::hairpin_refused(message)),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(response: &Response) -> Failure {
    Failure::io("asking hairpin", format!("unexpected answer {response:?}"))
}
