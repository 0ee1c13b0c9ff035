//! Handing frames to the worker that owns the egress queue.
//!
//! A port with fewer queues than there are workers (a veth or macvlan has one) is
//! transmitted on only by the workers that own one of its queues. Another worker that
//! needs to send there copies the frame into a free frame of the owner's UMEM — a
//! *credit* the owner published in its [`Mailbox`] — and pushes the filled descriptor onto
//! the owner's inbound queue; the owner transmits it as its own. One copy, no lock, no
//! allocation: both queues are fixed-size crossbeam `ArrayQueue`s. A sleeping owner is
//! woken through an eventfd, only when it said it was going to sleep.
//!
//! The same mailbox carries the control plane's commands to the worker (a port's
//! sockets to serve or to close, new tables): the one channel through which the
//! datapath changes while it runs. The worker looks at it once per turn.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use crossbeam_queue::ArrayQueue;

use super::{
    worker::Command,
    xsk::{Desc, Umem},
};
use crate::{switch::PortId, sys::EventFd};

/// Frames one worker lends to the others at most.
pub const CREDITS: usize = 512;

/// Commands that may wait for a worker at once (the control plane sends one at a time
/// and waits for it to be done).
const COMMANDS: usize = 16;

/// One worker's inbox.
#[derive(Debug)]
pub struct Mailbox {
    /// The owner's UMEM, where senders write.
    pub umem: Arc<Umem>,
    /// Free frames of the owner's UMEM that senders may fill.
    pub credits: ArrayQueue<Desc>,
    /// Filled frames, with the port to send each on.
    pub inbound: ArrayQueue<(Desc, PortId)>,
    /// The control plane's commands.
    pub(super) commands: ArrayQueue<Command>,
    sleeping: AtomicBool,
    wake: EventFd,
}

impl Mailbox {
    /// An empty mailbox for a worker whose UMEM is `umem`.
    pub fn new(umem: Arc<Umem>) -> std::io::Result<Self> {
        Ok(Self {
            umem,
            credits: ArrayQueue::new(CREDITS),
            inbound: ArrayQueue::new(CREDITS),
            commands: ArrayQueue::new(COMMANDS),
            sleeping: AtomicBool::new(false),
            wake: EventFd::new()?,
        })
    }

    /// Copies the frame made of `parts` into one of the owner's frames and queues it for
    /// `port`.
    ///
    /// Returns `false` when no credit is left (the owner is behind): the frame is dropped.
    pub fn send(&self, parts: &[&[u8]], port: PortId) -> bool {
        let Some(credit) = self.credits.pop() else {
            return false;
        };
        // SAFETY: `credit` is a frame of `self.umem` that its owner gave up when it
        // published it; popping it made this thread its only holder until it is pushed
        // onto `inbound`.
        let Some(credit) = (unsafe { self.umem.write(credit, parts) }) else {
            // Cannot happen for frames from a port of MTU-sized frames; give it back.
            let _ = self.credits.push(credit);
            return false;
        };
        // `inbound` is as large as `credits` and every frame in it was a credit, so it
        // never overflows; if it ever did, the credit is returned rather than lost.
        if let Err((credit, _)) = self.inbound.push((credit, port)) {
            let _ = self.credits.push(credit);
            return false;
        }
        true
    }

    /// Wakes the owner if it is sleeping.
    pub fn wake(&self) {
        if self.sleeping.swap(false, Ordering::AcqRel) {
            self.wake.notify();
        }
    }

    /// The owner: about to sleep. Returns `false` if work arrived meanwhile.
    pub fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        if self.inbound.is_empty() && self.commands.is_empty() {
            true
        } else {
            self.sleeping.store(false, Ordering::Relaxed);
            false
        }
    }

    /// The owner: awake again.
    pub fn woke(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
        self.wake.drain();
    }

    /// The eventfd the owner sleeps on.
    pub fn wake_fd(&self) -> &EventFd {
        &self.wake
    }
}
