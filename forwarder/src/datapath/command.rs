//! What the control plane asks of a worker, and how the worker answers: the commands
//! [`super::Datapath`] sends on a worker's [`super::handoff::Mailbox`], applied by the
//! worker between two batches.
use std::sync::Arc;

use super::{group::Group, xsk::Socket};
use crate::switch::{PortId, Tables};

/// What the control plane asks of a worker ([`super::Datapath`] sends them).
#[derive(Debug)]
pub enum Command {
    /// Decide with these tables from now on.
    Tables(Arc<Tables>),
    /// Port `id`, with `queues` RX queues, joins; `joining` is this worker's socket on
    /// it, if the port has this worker's queue. `max_chain`: the most buffers a frame of
    /// the port's may take (1 without `XDP_USE_SG`; a zero-copy driver's own limit);
    /// `mtu`: its MTU.
    Attach {
        id: PortId,
        queues: u32,
        joining: Option<Box<Joining>>,
        max_chain: usize,
        mtu: u32,
    },
    /// Port `id`'s MTU changed.
    Mtu { id: PortId, mtu: u32 },
    /// Port `id` leaves: close this worker's socket on it, if any.
    Detach { id: PortId },
}

/// A port's socket on a worker, and the group whose UMEM it is bound to.
#[derive(Debug)]
pub struct Joining {
    pub socket: Socket,
    /// The group's index among the worker's.
    pub group: usize,
    /// The group, when the control plane made it for this socket.
    pub made: Option<Group>,
}

/// A worker's answer: command `seq` is done.
#[derive(Debug)]
pub struct Reply {
    pub worker: usize,
    pub seq: u64,
    /// Frames taken back from a closed socket (a `Detach`).
    pub reclaimed: usize,
}
