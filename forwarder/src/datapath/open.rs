//! Opening a port: its AF_XDP sockets made and bound, one per RX queue, each on one of
//! its worker's UMEMs (the first with room, or a new one: [`super::group`]); and the
//! check, before anything is made, that every worker can give the port frames and that
//! the bridge's sockets would not hold too much kernel memory ([`Datapath::admit`]).
use std::{
    os::fd::{AsRawFd as _, RawFd},
    sync::{Arc, atomic::Ordering},
    thread,
    time::{Duration, Instant},
};

use super::{
    Datapath, DatapathError, GroupHandle, KERNEL_BYTES_PER_FRAME, PortQueues, ZeroCopy,
    budget::Budget,
    group::{self, Placement, Room},
    xsk::{self, Bind, MAX_CHAIN, Socket, Umem},
};
use crate::switch::PortId;

/// How long to retry binding a queue that the kernel still holds for a closed socket.
const BIND_BUSY_WAIT: Duration = Duration::from_secs(3);

/// A port's sockets, made by [`Datapath::open`] and not yet served.
#[derive(Debug)]
pub struct PortSockets {
    pub(super) id: PortId,
    /// One per queue, queue `q` at index `q`.
    pub(super) sockets: Vec<Socket>,
    zero_copy: bool,
    /// Per queue: where the socket went among its worker's UMEMs.
    pub(super) places: Vec<Place>,
    /// The longest chain the port's sockets take and transmit.
    pub(super) max_chain: usize,
}

impl PortSockets {
    /// Each socket's queue and descriptor, for the XDP program's socket map.
    pub fn fds(&self) -> impl Iterator<Item = (u32, RawFd)> + '_ {
        (0u32..).zip(self.sockets.iter().map(|s| s.as_raw_fd()))
    }

    /// Whether they bound zero-copy.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Whether they take frames longer than a UMEM frame, as chains (`XDP_USE_SG`).
    pub fn multi_buffer(&self) -> bool {
        self.max_chain > 1
    }

    /// The most UMEM frames one frame of theirs may take: [`MAX_CHAIN`] in copy mode
    /// with `XDP_USE_SG`, the driver's `xdp_zc_max_segs` zero-copy, else 1.
    pub fn max_chain(&self) -> usize {
        self.max_chain
    }
}

/// Where one socket of a port went among its worker's UMEMs.
#[derive(Debug)]
pub(super) struct Place {
    /// The group's index.
    pub(super) group: usize,
    /// The group's UMEM, if it was made for this socket.
    pub(super) made: Option<Arc<Umem>>,
    /// Whether the socket registered the UMEM, and if so whether with `XDP_USE_SG`
    /// (every later socket on that UMEM inherits it).
    pub(super) registered: Option<bool>,
}

impl Datapath {
    /// Makes `port`'s sockets, one per RX queue, on the UMEMs of the workers that will
    /// serve them (the first with room, or a new one: [`group`]). Nothing is received
    /// on them until the XDP program steers to them.
    pub fn open(&self, port: &PortQueues) -> Result<PortSockets, DatapathError> {
        if port.queues as usize > self.workers.len() {
            return Err(DatapathError::UnservedQueues {
                port: port.name.clone(),
                has: port.queues,
                workers: self.workers.len(),
            });
        }
        let mut zero_copy = self.config.zero_copy != ZeroCopy::Off;
        let mut sockets = Vec::with_capacity(port.queues as usize);
        let mut places = Vec::with_capacity(port.queues as usize);
        let mut umems_sg = true;
        for queue in 0..port.queues {
            let w = queue as usize;
            let (group, made) = match self.placement(w) {
                Placement::Join(g) => (g, None),
                Placement::Make(g) => (g, Some(self.make_umem(w)?)),
                Placement::Full => return Err(self.no_frames(port, w)),
            };
            let handle = match made {
                Some(_) => None,
                None => self.workers[w].groups.get(group).and_then(Option::as_ref),
            };
            let umem = match (&made, handle) {
                (Some(umem), _) | (None, Some(GroupHandle { umem, .. })) => umem,
                (None, None) => unreachable!("a port joins only a group that is there"),
            };
            // The first socket on a UMEM registers it; the others share it.
            let shared_with = handle.and_then(|h| h.sockets.first().map(|&(_, fd)| fd));
            let bind = Bind {
                ifindex: port.ifindex,
                queue,
                zero_copy,
                shared_with,
                sg: self.takes_chains(zero_copy, port.zc_max_segs),
            };
            let created = match self.bind(umem, bind) {
                Err(e)
                    if zero_copy
                        && self.config.zero_copy == ZeroCopy::Auto
                        && shared_with.is_none() =>
                {
                    tracing::info!(
                        "{}: zero-copy is not available ({e}); using copy mode",
                        port.name
                    );
                    zero_copy = false;
                    self.bind(
                        umem,
                        Bind {
                            zero_copy,
                            sg: self.takes_chains(false, port.zc_max_segs),
                            ..bind
                        },
                    )
                }
                other => other,
            };
            let (socket, sg) = created.map_err(|source| DatapathError::Socket {
                port: port.name.clone(),
                queue,
                mode: match (shared_with, zero_copy) {
                    (Some(_), _) => "sharing the worker's UMEM",
                    (None, true) => "zero-copy",
                    (None, false) => "copy",
                },
                source,
            })?;
            // A socket sharing a UMEM binds in the mode of the UMEM's first socket, so
            // ask the kernel what this one got.
            zero_copy = xsk::zero_copy(&socket).unwrap_or(false);
            if self.config.zero_copy == ZeroCopy::On && !zero_copy {
                return Err(DatapathError::NotZeroCopy {
                    port: port.name.clone(),
                    queue,
                });
            }
            let registered = shared_with.is_none().then_some(sg);
            // Every queue's UMEM must take chains for the port to.
            umems_sg &= registered.unwrap_or(handle.is_some_and(|h| h.sg));
            sockets.push(socket);
            places.push(Place {
                group,
                made,
                registered,
            });
        }
        // Zero-copy, the driver joins (and transmits) no more than its own number of
        // buffers.
        let max_chain = match (umems_sg, zero_copy) {
            (false, _) => 1,
            (true, true) => (port.zc_max_segs as usize).clamp(1, MAX_CHAIN),
            (true, false) => MAX_CHAIN,
        };
        Ok(PortSockets {
            id: port.id,
            sockets,
            zero_copy,
            places,
            max_chain,
        })
    }

    /// Where a new socket goes among worker `w`'s UMEMs ([`group::place`]). A UMEM the
    /// worker still has is never made again: one let go of while the worker did not
    /// answer in time is taken for full until the worker's gauges say it is gone.
    pub(super) fn placement(&self, w: usize) -> Placement {
        let worker = &self.workers[w];
        let rooms: Vec<Option<Room>> = worker
            .groups
            .iter()
            .enumerate()
            .map(|(g, handle)| {
                let budget = worker.counters.group_budget[g].get() as usize;
                let full = Room {
                    ports: group::PORTS_PER_UMEM,
                    frames: false,
                };
                match handle {
                    Some(h) if !h.retired => Some(Room {
                        ports: h.sockets.len(),
                        frames: Budget::room(
                            budget,
                            worker.counters.group_promised[g].get() as usize,
                        ),
                    }),
                    // The worker has none there (a live UMEM's budget is never 0).
                    _ if budget == 0 => None,
                    _ => Some(full),
                }
            })
            .collect();
        group::place(&rooms)
    }

    /// A new UMEM for worker `w`, of [`group::more_frames`].
    fn make_umem(&self, w: usize) -> Result<Arc<Umem>, DatapathError> {
        let frames = group::more_frames(self.config.ring_size as usize) as u32;
        Umem::new(frames, self.config.frame_size)
            .map(Arc::new)
            .map_err(|source| DatapathError::Umem {
                worker: w,
                frames: frames.into(),
                frame_size: self.config.frame_size,
                source,
            })
    }

    /// The refusal of `port` for want of room on worker `w`.
    fn no_frames(&self, port: &PortQueues, w: usize) -> DatapathError {
        let groups = &self.workers[w].groups;
        DatapathError::NoFrames {
            port: port.name.clone(),
            worker: w,
            umems: groups.iter().flatten().count(),
            ports: groups.iter().flatten().map(|g| g.sockets.len()).sum(),
        }
    }

    /// Whether to ask for chains (`XDP_USE_SG`) on a socket bound `zero_copy` (or not)
    /// to a device whose driver joins `zc_max_segs` buffers zero-copy: in copy mode
    /// where the kernel can (Linux 6.6), zero-copy where the driver joins more than one
    /// (the kernel refuses `XDP_USE_SG` on a driver that joins none).
    fn takes_chains(&self, zero_copy: bool, zc_max_segs: u32) -> bool {
        self.sg.load(Ordering::Relaxed) && (!zero_copy || zc_max_segs > 1)
    }

    /// Creates and binds one socket; returns it and whether it took chains. The kernel
    /// releases a closed socket's hold on its queue from a work item: right after
    /// another process (or an earlier run, or a port just removed) let go of this queue,
    /// binding can fail with EBUSY for a moment.
    ///
    /// A kernel that does not know `XDP_USE_SG` (before 6.6) refuses it with EINVAL: the
    /// socket is bound without it, and so is every socket after it.
    fn bind(&self, umem: &Umem, bind: Bind) -> std::io::Result<(Socket, bool)> {
        let deadline = Instant::now() + BIND_BUSY_WAIT;
        loop {
            match Socket::new(umem, self.config.ring_size, bind) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::EINVAL)
                        && bind.sg
                        && bind.shared_with.is_none() =>
                {
                    let without = self.bind(umem, Bind { sg: false, ..bind });
                    if without.is_ok() {
                        tracing::warn!(
                            "AF_XDP multi-buffer (XDP_USE_SG) is not available ({e}): frames \
                             longer than a UMEM frame ({} bytes) are dropped",
                            umem.room()
                        );
                        self.sg.store(false, Ordering::Relaxed);
                    }
                    return without;
                }
                other => return other.map(|socket| (socket, bind.sg)),
            }
        }
    }

    /// Checks that every worker serving one of `port`'s queues can give it a quota
    /// without taking frames promised to the ports it serves ([`super::budget`]), in a UMEM it
    /// has or a new one, and that the bridge's sockets would not hold too much kernel
    /// memory with the port's: the reason, naming the option to change, if not.
    pub fn admit(&self, port: &PortQueues) -> Result<(), DatapathError> {
        let more = group::more_frames(self.config.ring_size as usize) as u64;
        let (mut sockets, mut frames, mut most) = (0, 0, 0);
        for (w, worker) in self.workers.iter().enumerate() {
            for h in worker.groups.iter().flatten() {
                let n = h.sockets.len() as u64;
                sockets += n;
                frames += n * u64::from(h.umem.frames());
                most = most.max(u64::from(h.umem.frames()));
            }
            if w < port.queues as usize {
                sockets += 1;
                frames += match self.placement(w) {
                    Placement::Join(g) => u64::from(
                        worker.groups[g]
                            .as_ref()
                            .expect("a port joins only a group that is there")
                            .umem
                            .frames(),
                    ),
                    Placement::Make(_) => {
                        most = most.max(more);
                        more
                    }
                    Placement::Full => return Err(self.no_frames(port, w)),
                };
            }
        }
        let bytes = frames * KERNEL_BYTES_PER_FRAME;
        if bytes > self.kernel_memory_limit {
            return Err(DatapathError::KernelMemory {
                port: port.name.clone(),
                sockets: sockets as usize,
                frames: most,
                mib: bytes >> 20,
                limit_mib: self.kernel_memory_limit >> 20,
            });
        }
        Ok(())
    }
}
