//! A worker's ports as they come and go: the control plane's [`Command`]s applied
//! between two turns, where frames for each port go from here ([`Route`]), and ports
//! leaving.
//!
//! `Attach` gives the worker a port's socket (and the group made for it, if any): the
//! port gets a quota of its group's budget and its fill ring is filled at once. `Detach`
//! makes the port *closing*: nothing more is sent to it or refilled, what it receives is
//! dropped, its TX ring drains; once it has been closing for [`CLOSE_GRACE`] with an
//! empty TX ring (or for [`CLOSE_DRAIN`] in any case), its socket closes, every frame
//! the socket held comes back to the pool ([`crate::datapath::holders`]), a group other
//! than the first goes with its last port, and only then is the `Detach` answered.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{BATCH, Route, Worker};
use crate::{
    datapath::{
        command::{Command, Joining, Reply},
        xsk::{Desc, Socket},
    },
    switch::{MAX_PORTS, PortId},
};

/// A closing socket stays open at least this long, so that a frame the kernel was
/// already steering to it (on another CPU, as its map entry went) lands on its ring.
pub(super) const CLOSE_GRACE: Duration = Duration::from_millis(20);

/// ... and at most this long waiting for its TX ring to drain (a deleted device's never
/// does).
pub(super) const CLOSE_DRAIN: Duration = Duration::from_millis(500);

/// One (port, queue) socket of a worker.
#[derive(Debug)]
pub(in crate::datapath) struct WorkerPort {
    pub id: PortId,
    pub socket: Socket,
    /// The group whose UMEM its socket is bound to: every frame it holds is of it.
    pub group: usize,
    /// Frames decided for this port this turn, not yet on the TX ring.
    pub pending: Vec<Desc>,
    /// Frames on the fill ring or in the RX ring behind it.
    pub in_fill: usize,
    /// Frames on the TX ring or in the completion ring behind it.
    pub in_tx: usize,
    /// Frames were submitted and not yet kicked, or the last kick stopped early.
    pub tx_backlog: bool,
    /// Since when the port has been leaving (see the module docs).
    pub closing: Option<Instant>,
    /// The number of the `Detach` that made it leave, answered once its socket closed.
    pub detach_seq: u64,
    /// Dropping the rest of a chain far longer than [`crate::datapath::xsk::MAX_CHAIN`].
    pub discarding: bool,
    /// The most buffers a frame it receives or sends may take.
    pub max_chain: usize,
    /// Its MTU: a TCP segment longer is an offload's, cut to it ([`Worker::cut`]).
    pub mtu: u32,
    /// Frames its fill and RX rings may hold together ([`crate::datapath::budget::Budget`]).
    pub quota: usize,
    /// Its RX ring held a quarter of its quota or more at once since its last refill:
    /// the kernel drains its fill ring faster than a turn refills it.
    pub hungry: bool,
    /// Frames received since the last look at idle ports.
    pub window: usize,
}

impl WorkerPort {
    /// A port of MTU `mtu` served through `socket` on group `group`'s UMEM, whose
    /// frames take at most `max_chain` buffers, with a quota of `quota` frames, nothing
    /// on its rings yet.
    pub fn new(
        id: PortId,
        socket: Socket,
        group: usize,
        max_chain: usize,
        mtu: u32,
        quota: usize,
    ) -> Self {
        Self {
            id,
            socket,
            group,
            pending: Vec::with_capacity(4 * BATCH),
            in_fill: 0,
            in_tx: 0,
            tx_backlog: false,
            closing: None,
            detach_seq: 0,
            discarding: false,
            max_chain,
            mtu,
            quota,
            hungry: false,
            window: 0,
        }
    }
}

impl Worker {
    /// Applies the control plane's pending commands; returns whether the set of sockets
    /// changed.
    pub(super) fn apply_commands(&mut self) -> bool {
        let mut changed = false;
        while let Some(command) = self.mailboxes[self.index].commands.pop() {
            self.seq += 1;
            match command {
                Command::Tables(tables) => self.tables = tables,
                Command::Attach {
                    id,
                    queues,
                    joining,
                    max_chain,
                    mtu,
                } => {
                    self.queues[usize::from(id)] = queues;
                    if let Some(joining) = joining {
                        let Joining {
                            socket,
                            group: g,
                            made,
                        } = *joining;
                        if let Some(made) = made {
                            if self.groups.len() <= g {
                                self.groups.resize_with(g + 1, || None);
                            }
                            assert!(self.groups[g].is_none(), "group {g} made twice");
                            self.groups[g] = Some(made);
                        }
                        self.max_chain = self.max_chain.max(max_chain);
                        self.mailboxes[self.index].set_max_chain(self.max_chain);
                        let ring = self.ring;
                        let group = self.group(g);
                        let quota = group.budget.admit(ring);
                        group.ports += 1;
                        self.publish_budget();
                        self.ports
                            .push(WorkerPort::new(id, socket, g, max_chain, mtu, quota));
                        let i = self.ports.len() - 1;
                        self.refill(i);
                        changed = true;
                    }
                    self.route();
                }
                Command::Mtu { id, mtu } => {
                    for port in self.ports.iter_mut().filter(|p| p.id == id) {
                        port.mtu = mtu;
                    }
                }
                Command::Detach { id } => {
                    self.queues[usize::from(id)] = 0;
                    self.route();
                    if let Some(port) = self.ports.iter_mut().find(|p| p.id == id) {
                        // Acknowledged once the socket is closed (`finish_closing`).
                        if port.closing.is_none() {
                            self.closing += 1;
                        }
                        port.closing = Some(Instant::now());
                        port.detach_seq = self.seq;
                        continue;
                    }
                }
            }
            self.reply(self.seq, 0);
        }
        changed
    }

    /// Tells the control plane that command `seq` is done.
    pub(super) fn reply(&self, seq: u64, reclaimed: usize) {
        // The control plane gone means the datapath is stopping: nobody to tell.
        let _ = self.replies.send(Reply {
            worker: self.index,
            seq,
            reclaimed,
        });
    }

    /// Recomputes where frames for each port go from here.
    pub(super) fn route(&mut self) {
        let mut local = [None; MAX_PORTS];
        for (i, p) in self.ports.iter().enumerate() {
            local[usize::from(p.id)] = Some(i);
        }
        for (id, route) in self.routes.iter_mut().enumerate() {
            let queues = self.queues[id] as usize;
            *route = match local[id] {
                Some(i) if self.ports[i].closing.is_none() => Route::Local(i),
                Some(_) => Route::Gone,
                None if queues > 0 => Route::Remote(self.index % queues),
                None => Route::Gone,
            };
        }
    }

    /// Closes the sockets of ports that have been leaving long enough, taking back every
    /// frame they held; returns whether any closed.
    pub(super) fn finish_closing(&mut self) -> bool {
        if self.closing == 0 {
            return false;
        }
        let Some(i) = self.ports.iter().position(|p| {
            p.closing.is_some_and(|since| {
                let waited = since.elapsed();
                waited >= CLOSE_GRACE && (p.in_tx == 0 || waited >= CLOSE_DRAIN)
            })
        }) else {
            return false;
        };
        let port = self.ports.remove(i);
        self.closing -= 1;
        let (id, g, held) = (port.id, port.group, port.in_fill + port.in_tx);
        let group = self.groups[g]
            .as_mut()
            .expect("a group lives while it has ports");
        group.budget.release(port.quota);
        group.ports -= 1;
        group.pool.extend_from_slice(&port.pending);
        drop(port.socket); // unmaps the rings and closes: the kernel lets go of all of it
        let chunks = group.holders.reclaim(id);
        debug_assert_eq!(
            chunks.len(),
            held,
            "worker {}: port {id} held other frames than its rings counted",
            self.index
        );
        let reclaimed = chunks.len();
        let umem = Arc::clone(&group.umem);
        group
            .pool
            .extend(chunks.into_iter().map(|c| umem.reset(Desc::new(c, 0))));
        // Counted as gone so the ledger balances also if the kernel kept one.
        group.total_frames -= held - reclaimed.min(held);
        if g != 0 && group.ports == 0 {
            // Every frame is back in its pool: the UMEM goes (the first stays, for
            // the credits it lends).
            self.groups[g] = None;
        }
        self.publish_budget();
        self.publish_frames();
        self.route();
        self.reply(port.detach_seq, reclaimed);
        true
    }
}
