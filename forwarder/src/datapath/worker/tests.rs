//! Turns of real workers on fake sockets ([`crate::datapath::fake`]): no root, no
//! thread. Each test plays the kernel's side of every socket between two turns and
//! checks what a user would see: the frames that leave each port, the counters, and
//! every frame back where the ledger says.
use std::{
    sync::{Arc, atomic::AtomicBool, mpsc},
    thread,
    time::Instant,
};

use super::{
    Route, Turns, Worker,
    ports::{CLOSE_DRAIN, CLOSE_GRACE},
};
use crate::{
    datapath::{
        DatapathConfig,
        budget::Budget,
        command::{Command, Joining, Reply},
        fake::{FakeSocket, Sent},
        group::{self, Group},
        handoff::{self, Mailbox},
        latency,
        stats::{PortQueueSnapshot, WorkerCounters},
        tap::{self, Taps},
        visits::{QUIET_TURNS, SWEEP, Visits},
        xsk::{Kick, MAX_CHAIN, Umem},
    },
    switch::{
        DropReason, Fdb, MAX_PORTS, Mode, PortId, PortPolicy, PortSet, Tables, vlan::PortVlans,
    },
};

/// Entries of every ring: the least the datapath takes, so that rings fill quickly.
const RING: u32 = 64;

/// A port's quota at the start with rings of [`RING`]: its ring.
const QUOTA: usize = RING as usize;

/// Workers on fake sockets, driven turn by turn.
struct Rig {
    workers: Vec<(Worker, Turns)>,
    replies: mpsc::Receiver<Reply>,
    taps: Arc<Taps>,
}

/// An Ethernet frame of `len` bytes from `src` to `dst` (an experimental EtherType: no
/// checksum to finish), its payload numbered by `n`.
fn frame(dst: [u8; 6], src: [u8; 6], len: usize, n: u8) -> Vec<u8> {
    let mut f = [dst, src].concat();
    f.extend([0x88, 0xb5]);
    f.extend((0..len - 14).map(|i| (i as u8) ^ n));
    f
}

/// Station `n`'s MAC.
fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

const BROADCAST: [u8; 6] = [0xff; 6];

impl Rig {
    /// `workers` workers deciding with `tables`, each with a first UMEM sized for
    /// `ports` ports as `Datapath::start` sizes it, and no port yet.
    fn new(workers: usize, ports: usize, tables: Tables) -> Self {
        let config = DatapathConfig {
            ring_size: RING,
            ..DatapathConfig::default()
        };
        let frames = config.umem_frames_for(ports) as usize;
        let umems: Vec<Arc<Umem>> = (0..workers)
            .map(|_| Arc::new(Umem::new(frames as u32, config.frame_size).unwrap()))
            .collect();
        let mailboxes: Arc<[Mailbox]> = umems
            .iter()
            .map(|u| Mailbox::new(Arc::clone(u)).unwrap())
            .collect::<Vec<_>>()
            .into();
        let (reply_to, replies) = mpsc::channel();
        let tables = Arc::new(tables);
        let taps = Arc::new(Taps::new(workers));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = umems
            .into_iter()
            .enumerate()
            .map(|(w, umem)| {
                let reserve = Budget::reserve(frames, RING as usize, handoff::CREDITS);
                let budget = Budget::new(frames, reserve, config.growth_frames(ports));
                let mut worker = Worker {
                    index: w,
                    groups: vec![Some(Group::new(umem, budget))],
                    ports: Vec::new(),
                    routes: [Route::Gone; MAX_PORTS],
                    queues: [0; MAX_PORTS],
                    replies: reply_to.clone(),
                    seq: 0,
                    tables: Arc::clone(&tables),
                    taps: Arc::clone(&taps),
                    mailboxes: Arc::clone(&mailboxes),
                    counters: Arc::new(WorkerCounters::new(MAX_PORTS)),
                    stop: Arc::clone(&stop),
                    epoch: Instant::now(),
                    busy_poll: false,
                    latency: latency::Recorder::new(latency::shared()),
                    max_chain: 1,
                    ring: RING as usize,
                    visits: Visits::default(),
                    closing: 0,
                    stats_cursor: 0,
                };
                worker.prime();
                let turns = worker.turns();
                (worker, turns)
            })
            .collect();
        Self {
            workers,
            replies,
            taps,
        }
    }

    /// `workers` workers and `ports` plain downlinks, all up, in VEB mode.
    fn veb(workers: usize, ports: usize) -> Self {
        Self::new(
            workers,
            ports,
            Tables::with_ports(Mode::Veb, ports, 1024).unwrap(),
        )
    }

    fn worker(&self, w: usize) -> &Worker {
        &self.workers[w].0
    }

    /// One turn of worker `w`; returns its work.
    fn turn(&mut self, w: usize) -> usize {
        let (worker, turns) = &mut self.workers[w];
        worker.turn(turns)
    }

    /// A turn of every worker, in order.
    fn turn_all(&mut self) {
        for w in 0..self.workers.len() {
            self.turn(w);
        }
    }

    /// Puts `command` in worker `w`'s mailbox.
    fn command(&self, w: usize, command: Command) {
        assert!(self.worker(w).mailboxes[w].commands.push(command).is_ok());
    }

    /// Attaches port `id` with `queues` RX queues, each served by the worker of its
    /// index through a fake socket on its first UMEM, or with `new_group`, on a group of
    /// that index made for it; a turn of every worker applies it. Returns the kernel's
    /// side of each socket, by queue.
    fn attach_with(
        &mut self,
        id: PortId,
        queues: u32,
        max_chain: usize,
        new_group: Option<usize>,
    ) -> Vec<FakeSocket> {
        let mut fakes = Vec::new();
        for w in 0..self.workers.len() {
            let joining = (w < queues as usize).then(|| {
                let (umem, made) = match new_group {
                    None => (Arc::clone(&self.worker(w).mailboxes[w].umem), None),
                    Some(_) => {
                        let frames = group::more_frames(RING as usize) as u32;
                        let umem = Arc::new(Umem::new(frames, 2048).unwrap());
                        let made = Group::new(Arc::clone(&umem), group::more_budget(RING as usize));
                        (umem, Some(made))
                    }
                };
                let (socket, fake) = FakeSocket::open(&umem, RING);
                fakes.push(fake);
                Box::new(Joining {
                    socket,
                    group: new_group.unwrap_or(0),
                    made,
                })
            });
            self.command(
                w,
                Command::Attach {
                    id,
                    queues,
                    joining,
                    max_chain,
                    mtu: 1500,
                },
            );
        }
        self.turn_all();
        fakes
    }

    /// Attaches port `id`, one queue, on worker 0's first UMEM.
    fn attach(&mut self, id: PortId) -> FakeSocket {
        self.attach_with(id, 1, 1, None).pop().unwrap()
    }

    /// Tells every worker to let port `id` go.
    fn detach(&self, id: PortId) {
        for w in 0..self.workers.len() {
            self.command(w, Command::Detach { id });
        }
    }

    /// The answers to commands so far: (worker, number, frames reclaimed).
    fn replies(&self) -> Vec<(usize, u64, usize)> {
        self.replies
            .try_iter()
            .map(|r| (r.worker, r.seq, r.reclaimed))
            .collect()
    }

    /// Worker `w`'s counters of port `id`.
    fn counters(&self, w: usize, id: PortId) -> PortQueueSnapshot {
        PortQueueSnapshot::of(self.worker(w).counters.port(id))
    }

    /// Every frame of worker `w` is back where nothing is in flight: in its group's free
    /// pool, on a port's fill (or RX) ring, or lent to other workers; none lost, none
    /// counted twice.
    fn assert_all_back(&self, w: usize) {
        let worker = self.worker(w);
        worker.check_ledger();
        for p in &worker.ports {
            assert_eq!(p.in_tx, 0, "port {} has frames on its TX ring", p.id);
            assert!(p.pending.is_empty(), "port {} has frames pending", p.id);
        }
        for (g, group) in worker.groups.iter().enumerate() {
            let Some(group) = group else { continue };
            let in_fill: usize = worker
                .ports
                .iter()
                .filter(|p| p.group == g)
                .map(|p| p.in_fill)
                .sum();
            assert_eq!(
                group.pool.len() + in_fill + group.lent,
                group.total_frames,
                "worker {w}: frames of UMEM {g} not back"
            );
            assert_eq!(group.total_frames, group.umem.frames() as usize);
        }
    }
}

/// The data of each frame in `sent`.
fn data(sent: &[Sent]) -> Vec<Vec<u8>> {
    sent.iter().map(|s| s.data.clone()).collect()
}

#[test]
fn a_frame_to_a_port_of_the_same_umem_leaves_by_its_own_descriptor() {
    let mut rig = Rig::veb(1, 2);
    let (a, b) = (rig.attach(0), rig.attach(1));
    let f = frame(BROADCAST, mac(1), 60, 0);
    let at = a.receive(&f).unwrap();
    assert!(rig.turn(0) > 0);
    assert_eq!(
        b.sent(),
        [Sent {
            addrs: vec![at],
            data: f
        }],
        "the received frame itself, no copy"
    );
    assert!(a.sent().is_empty(), "never back out of its ingress port");
    assert_eq!(rig.counters(0, 0).rx_packets, 1);
    assert_eq!(rig.counters(0, 1).tx_packets, 1);
    assert_eq!(rig.counters(0, 0).flood_copies, 0);
    rig.assert_all_back(0);
}

#[test]
fn a_unicast_goes_only_to_the_port_its_destination_was_learned_on() {
    let mut rig = Rig::veb(1, 3);
    let fakes: Vec<FakeSocket> = (0..3).map(|id| rig.attach(id)).collect();
    // Station 2 speaks first, from port 1: flooded, and learned.
    fakes[1].receive(&frame(BROADCAST, mac(2), 60, 0)).unwrap();
    rig.turn(0);
    assert_eq!(fakes[0].sent().len(), 1);
    assert_eq!(fakes[2].sent().len(), 1);
    let to_2 = frame(mac(2), mac(1), 100, 1);
    fakes[0].receive(&to_2).unwrap();
    rig.turn(0);
    assert_eq!(data(&fakes[1].sent()), [to_2]);
    assert!(
        fakes[2].sent().is_empty(),
        "a learned unicast is not flooded"
    );
    assert_eq!(rig.counters(0, 0).flood_copies, 0);
    rig.assert_all_back(0);
}

#[test]
fn a_flood_copies_the_frame_to_every_other_port_and_frees_every_frame() {
    let mut rig = Rig::veb(1, 4);
    let fakes: Vec<FakeSocket> = (0..4).map(|id| rig.attach(id)).collect();
    let f = frame(BROADCAST, mac(1), 300, 7);
    let at = fakes[0].receive(&f).unwrap();
    rig.turn(0);
    let sent: Vec<Vec<Sent>> = fakes.iter().map(FakeSocket::sent).collect();
    assert!(sent[0].is_empty());
    for s in &sent[1..] {
        assert_eq!(data(s), std::slice::from_ref(&f));
    }
    let itself = sent[1..].iter().filter(|s| s[0].addrs == [at]).count();
    assert_eq!(itself, 1, "one port gets the received frame itself");
    assert_eq!(rig.counters(0, 0).flood_copies, 2);
    let tx: u64 = (1..4).map(|id| rig.counters(0, id).tx_packets).sum();
    assert_eq!(tx, 3);
    rig.assert_all_back(0);
}

#[test]
fn a_tapped_port_s_frames_are_copied_as_received_and_as_sent_drops_with_their_reason() {
    let mut rig = Rig::veb(1, 3);
    let fakes: Vec<FakeSocket> = (0..3).map(|id| rig.attach(id)).collect();
    rig.taps.arm();
    rig.taps.set(0, tap::IN);
    rig.taps.set(2, tap::OUT);
    let f = frame(BROADCAST, mac(1), 200, 3);
    fakes[0].receive(&f).unwrap();
    let mut bad = frame(BROADCAST, mac(1), 60, 0);
    bad[6] = 0x01;
    fakes[0].receive(&bad).unwrap();
    // Port 1 is not tapped, nor port 2's receiving.
    fakes[1].receive(&frame(BROADCAST, mac(2), 90, 1)).unwrap();
    rig.turn(0);
    let mut tapped = Vec::new();
    rig.taps
        .drain(|t| tapped.push((t.port, t.dir, t.reason, t.data.clone())));
    tapped.sort_by_key(|t| (t.0, t.1, t.3.len()));
    assert_eq!(
        tapped,
        [
            (0, tap::IN, Some(DropReason::BadSourceMac), bad.clone()),
            (0, tap::IN, None, f.clone()),
            (2, tap::OUT, None, frame(BROADCAST, mac(2), 90, 1)),
            (2, tap::OUT, None, f.clone()),
        ]
    );
    // Untapped, nothing more is copied.
    rig.taps.set(0, 0);
    rig.taps.set(2, 0);
    fakes[0].receive(&f).unwrap();
    rig.turn(0);
    let mut more = 0;
    rig.taps.drain(|_| more += 1);
    assert_eq!((more, rig.taps.lost(0)), (0, 0));
    rig.assert_all_back(0);
}

#[test]
fn a_copy_that_cannot_leave_is_tapped_on_its_egress_port_with_the_reason() {
    // Port 2 is in the tables but has no socket: its flood copy is dropped.
    let mut rig = Rig::veb(1, 3);
    let a = rig.attach(0);
    let _b = rig.attach(1);
    rig.taps.arm();
    rig.taps.set(2, tap::OUT);
    let f = frame(BROADCAST, mac(1), 100, 9);
    a.receive(&f).unwrap();
    rig.turn(0);
    let mut tapped = Vec::new();
    rig.taps
        .drain(|t| tapped.push((t.port, t.dir, t.reason, t.data.clone())));
    assert_eq!(tapped, [(2, tap::OUT, Some(DropReason::PortDown), f)]);
    rig.assert_all_back(0);
}

#[test]
fn a_frame_to_a_port_of_another_umem_is_copied_there_once() {
    let mut rig = Rig::veb(1, 2);
    let a = rig.attach(0);
    let b = rig.attach_with(1, 1, 1, Some(1)).pop().unwrap();
    b.transmit_on_kick(false);
    let f = frame(BROADCAST, mac(1), 200, 3);
    a.receive(&f).unwrap();
    rig.turn(0);
    let worker = rig.worker(0);
    let (first, other) = (
        worker.groups[0].as_ref().unwrap(),
        worker.groups[1].as_ref().unwrap(),
    );
    let port_b = &worker.ports[1];
    assert_eq!(port_b.in_tx, 1);
    assert_eq!(b.tx_ready(), 1, "one copy on B's TX ring");
    assert_eq!(
        other.pool.len() + port_b.in_fill + 1,
        other.total_frames,
        "one frame of B's UMEM taken for it"
    );
    let in_fill_a = worker.ports[0].in_fill;
    assert_eq!(
        first.pool.len() + in_fill_a + first.lent,
        first.total_frames,
        "the received frame is free again at once"
    );
    assert_eq!(b.transmit(), 1);
    assert_eq!(data(&b.sent()), [f]);
    rig.turn(0);
    rig.assert_all_back(0);
}

#[test]
fn a_frame_for_a_port_another_worker_serves_is_handed_over_and_sent_there() {
    let mut rig = Rig::veb(2, 2);
    // Port 0 has a queue on each worker; port 1 only on worker 0.
    let a = rig.attach_with(0, 2, 1, None);
    let b = rig.attach_with(1, 1, 1, None).pop().unwrap();
    let f = frame(BROADCAST, mac(1), 60, 9);
    a[1].receive(&f).unwrap();
    rig.turn(1);
    assert_eq!(rig.counters(1, 1).handoff_out, 1);
    assert!(b.sent().is_empty(), "not sent by worker 1");
    rig.assert_all_back(1);
    rig.turn(0);
    assert_eq!(rig.counters(0, 1).handoff_in, 1);
    assert_eq!(rig.counters(0, 1).tx_packets, 1);
    assert_eq!(data(&b.sent()), [f]);
    rig.assert_all_back(0);
    assert_eq!(
        rig.worker(0).groups[0].as_ref().unwrap().lent,
        handoff::CREDITS,
        "the credit used is lent again"
    );
}

#[test]
fn a_dropped_frame_is_counted_and_its_frame_freed() {
    let mut rig = Rig::veb(1, 2);
    let (a, b) = (rig.attach(0), rig.attach(1));
    // A multicast source is never forwarded.
    let mut bad = frame(BROADCAST, mac(1), 60, 0);
    bad[6] = 0x01;
    a.receive(&bad).unwrap();
    // Nor is a runt.
    a.receive(&bad[..10]).unwrap();
    rig.turn(0);
    assert!(b.sent().is_empty());
    let c = rig.counters(0, 0);
    assert_eq!(c.drops[DropReason::BadSourceMac as usize], 1);
    assert_eq!(c.drops[DropReason::Runt as usize], 1);
    assert_eq!(c.rx_packets, 2);
    rig.assert_all_back(0);
}

#[test]
fn closing_a_port_takes_back_every_frame_its_socket_held() {
    let mut rig = Rig::veb(1, 2);
    let (a, b) = (rig.attach(0), rig.attach(1));
    // Two frames wait on B's RX ring as it is let go of.
    b.receive(&frame(BROADCAST, mac(2), 60, 1)).unwrap();
    b.receive(&frame(BROADCAST, mac(2), 60, 2)).unwrap();
    rig.detach(1);
    rig.turn(0);
    assert!(
        a.sent().is_empty(),
        "what a closing port receives is dropped"
    );
    assert_eq!(rig.counters(0, 1).drops[DropReason::PortDown as usize], 2);
    assert!(!b.closed(), "open for its grace time");
    assert!(
        rig.replies().iter().all(|&(_, seq, _)| seq != 3),
        "not yet answered"
    );
    // A frame for it meanwhile is dropped too.
    a.receive(&frame(mac(2), mac(1), 60, 3)).unwrap();
    rig.turn(0);
    assert!(b.sent().is_empty());
    thread::sleep(CLOSE_GRACE);
    rig.turn(0);
    assert!(b.closed());
    // Its fill ring held its quota but the two frames received.
    assert_eq!(rig.replies(), [(0, 3, QUOTA - 2)]);
    assert_eq!(rig.worker(0).ports.len(), 1);
    rig.assert_all_back(0);
}

#[test]
fn a_port_whose_tx_ring_never_drains_closes_after_a_while_with_every_frame_back() {
    let mut rig = Rig::veb(1, 2);
    let (a, b) = (rig.attach(0), rig.attach(1));
    b.transmit_on_kick(false);
    for n in 0..3 {
        a.receive(&frame(BROADCAST, mac(1), 60, n)).unwrap();
    }
    rig.turn(0);
    assert_eq!(b.tx_ready(), 3);
    rig.detach(1);
    rig.turn(0);
    thread::sleep(CLOSE_GRACE);
    rig.turn(0);
    assert!(!b.closed(), "waits for its TX ring");
    thread::sleep(CLOSE_DRAIN);
    rig.turn(0);
    assert!(b.closed());
    assert_eq!(rig.replies().last(), Some(&(0, 3, QUOTA + 3)));
    rig.assert_all_back(0);
}

#[test]
fn a_full_tx_ring_is_counted_and_no_frame_is_lost() {
    let mut rig = Rig::veb(1, 2);
    let (a, b) = (rig.attach(0), rig.attach(1));
    b.transmit_on_kick(false);
    for round in 0..2 {
        for n in 0..QUOTA {
            a.receive(&frame(BROADCAST, mac(1), 60, n as u8)).unwrap();
        }
        rig.turn(0);
        assert_eq!(b.tx_ready(), QUOTA, "round {round}");
    }
    let c = rig.counters(0, 1);
    assert_eq!(c.tx_packets, QUOTA as u64);
    assert_eq!(c.drops[DropReason::TxRingFull as usize], QUOTA as u64);
    assert_eq!(b.transmit(), QUOTA);
    rig.turn(0);
    assert_eq!(b.sent().len(), QUOTA);
    rig.assert_all_back(0);
}

#[test]
fn the_fill_ring_is_topped_up_once_a_batch_s_worth_was_received() {
    let mut rig = Rig::veb(1, 2);
    let (a, b) = (rig.attach(0), rig.attach(1));
    assert_eq!(a.fill_ready(), QUOTA, "filled as it was attached");
    for n in 0..10 {
        a.receive(&frame(BROADCAST, mac(1), 60, n)).unwrap();
    }
    rig.turn(0);
    assert_eq!(
        a.fill_ready(),
        QUOTA - 10,
        "ten are not worth a ring operation"
    );
    for n in 0..30 {
        a.receive(&frame(BROADCAST, mac(1), 60, n)).unwrap();
    }
    rig.turn(0);
    assert_eq!(a.fill_ready(), QUOTA, "topped up again");
    assert_eq!(rig.worker(0).ports[0].in_fill, QUOTA);
    assert_eq!(b.sent().len(), 40);
    rig.assert_all_back(0);
}

#[test]
fn a_frame_leaving_a_trunk_gets_its_tag_pushed_in_place_and_popped_back() {
    let slots = [
        Some(PortPolicy {
            vlans: Some(PortVlans::Access(10)),
            ..PortPolicy::default()
        }),
        Some(PortPolicy {
            vlans: Some(PortVlans::Trunk {
                tagged: vec![10],
                native: None,
            }),
            ..PortPolicy::default()
        }),
    ];
    let fdb = Arc::new(Fdb::with_capacity(64));
    let tables = Tables::new(Mode::Veb, &slots, PortSet::first(2), fdb).unwrap();
    let mut rig = Rig::new(1, 2, tables);
    let (access, trunk) = (rig.attach(0), rig.attach(1));
    let untagged = frame(BROADCAST, mac(1), 60, 5);
    let tagged = [&untagged[..12], &[0x81, 0x00, 0x00, 10], &untagged[12..]].concat();
    let at = access.receive(&untagged).unwrap();
    rig.turn(0);
    assert_eq!(
        trunk.sent(),
        [Sent {
            addrs: vec![at - 4],
            data: tagged.clone()
        }],
        "tagged in the headroom, no copy"
    );
    let at = trunk.receive(&tagged).unwrap();
    rig.turn(0);
    assert_eq!(
        access.sent(),
        [Sent {
            addrs: vec![at + 4],
            data: untagged
        }],
        "untagged where it lies"
    );
    rig.assert_all_back(0);
}

#[test]
fn a_quiet_port_is_still_visited_and_its_first_frame_seen() {
    let ports = SWEEP + 4;
    let mut rig = Rig::veb(1, ports);
    let fakes: Vec<FakeSocket> = (0..ports as PortId).map(|id| rig.attach(id)).collect();
    for _ in 0..=QUIET_TURNS {
        rig.turn(0);
    }
    assert!(
        rig.worker(0).visits.awake().is_empty(),
        "every port fell asleep"
    );
    let last = ports - 1;
    fakes[last]
        .receive(&frame(BROADCAST, mac(9), 60, 0))
        .unwrap();
    let turns = (1..=ports.div_ceil(SWEEP))
        .find(|_| {
            rig.turn(0);
            rig.counters(0, last as PortId).rx_packets == 1
        })
        .expect("the quiet port's frame was never seen");
    assert!(turns <= ports.div_ceil(SWEEP));
    for fake in &fakes[..last] {
        assert_eq!(fake.sent().len(), 1);
    }
    rig.assert_all_back(0);
}

#[test]
fn commands_are_answered_in_order_a_detach_once_its_socket_is_closed() {
    let mut rig = Rig::veb(1, 2);
    let (_a, b) = (rig.attach(0), rig.attach(1));
    assert_eq!(rig.replies(), [(0, 1, 0), (0, 2, 0)], "the two attaches");
    let tables = Arc::new(Tables::with_ports(Mode::Veb, 2, 64).unwrap());
    rig.command(0, Command::Tables(tables));
    rig.command(0, Command::Detach { id: 1 });
    // A port this worker has no socket on: nothing to wait for.
    rig.command(0, Command::Detach { id: 7 });
    rig.turn(0);
    assert_eq!(rig.replies(), [(0, 3, 0), (0, 5, 0)]);
    thread::sleep(CLOSE_GRACE);
    rig.turn(0);
    assert!(b.closed());
    assert_eq!(rig.replies(), [(0, 4, QUOTA)]);
    rig.assert_all_back(0);
}

#[test]
fn a_port_joining_a_new_group_brings_its_umem_which_goes_with_it() {
    let mut rig = Rig::veb(1, 2);
    let a = rig.attach(0);
    let b = rig.attach_with(1, 1, 1, Some(1)).pop().unwrap();
    let worker = rig.worker(0);
    assert_eq!(worker.counters.umems.get(), 2);
    assert!(worker.counters.group_budget[1].get() > 0);
    assert_eq!(worker.ports[1].group, 1);
    assert_eq!(b.fill_ready(), QUOTA, "filled from its own UMEM");
    let f = frame(BROADCAST, mac(2), 60, 0);
    b.receive(&f).unwrap();
    rig.turn(0);
    assert_eq!(data(&a.sent()), [f], "copied into the first UMEM");
    rig.detach(1);
    rig.turn(0);
    thread::sleep(CLOSE_GRACE);
    rig.turn(0);
    let worker = rig.worker(0);
    assert!(worker.groups[1].is_none(), "unmapped with its last port");
    assert_eq!(worker.counters.umems.get(), 1);
    rig.assert_all_back(0);
}

#[test]
fn kicks_go_only_where_the_kernel_asks_and_are_retried_while_it_says_again() {
    let mut rig = Rig::veb(1, 2);
    let (a, b) = (rig.attach(0), rig.attach(1));
    b.needs_wakeup(false, false);
    b.transmit_on_kick(false);
    a.receive(&frame(BROADCAST, mac(1), 60, 0)).unwrap();
    rig.turn(0);
    assert_eq!(b.kicks(), 0, "no kick the ring did not ask for");
    assert_eq!(b.transmit(), 1);
    b.needs_wakeup(true, false);
    b.transmit_on_kick(true);
    b.answer_kicks([Kick::Again, Kick::Again]);
    a.receive(&frame(BROADCAST, mac(1), 60, 1)).unwrap();
    rig.turn(0);
    assert_eq!(b.kicks(), 3, "kicked until done");
    assert_eq!(b.sent().len(), 2);
    rig.assert_all_back(0);
}

#[test]
fn a_fill_ring_that_asks_for_a_wake_up_gets_one() {
    let mut rig = Rig::veb(1, 2);
    let umem = Arc::clone(&rig.worker(0).mailboxes[0].umem);
    let (socket, fake) = FakeSocket::open(&umem, RING);
    fake.needs_wakeup(true, true);
    rig.command(
        0,
        Command::Attach {
            id: 0,
            queues: 1,
            joining: Some(Box::new(Joining {
                socket,
                group: 0,
                made: None,
            })),
            max_chain: 1,
            mtu: 1500,
        },
    );
    rig.turn(0);
    assert_eq!(fake.fill_ready(), QUOTA);
    assert_eq!(fake.wakeups(), 1, "woken as its fill ring was filled");
}

#[test]
fn the_kernel_s_drop_counters_are_copied_into_the_port_s() {
    let mut rig = Rig::veb(1, 2);
    let (a, _b) = (rig.attach(0), rig.attach(1));
    // SAFETY: plain integers, for which all-zero is valid.
    let mut stats: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    stats.rx_dropped = 10;
    stats.rx_fill_ring_empty_descs = 4;
    stats.rx_ring_full = 3;
    a.set_statistics(stats);
    rig.workers[0].0.read_kernel_stats(2);
    let c = rig.counters(0, 0);
    assert_eq!(
        (
            c.kernel_rx_ring_full,
            c.kernel_fill_ring_empty,
            c.kernel_rx_dropped
        ),
        (3, 4, 6),
        "the fill-ring misses counted once"
    );
}

#[test]
fn a_jumbo_frame_leaves_as_the_same_chain_or_is_dropped_where_chains_are_not_taken() {
    let mut rig = Rig::veb(1, 3);
    let a = rig.attach_with(0, 1, MAX_CHAIN, None).pop().unwrap();
    let b = rig.attach_with(1, 1, MAX_CHAIN, None).pop().unwrap();
    let c = rig.attach_with(2, 1, 1, None).pop().unwrap();
    let jumbo = frame(BROADCAST, mac(1), 5000, 4);
    a.receive(&jumbo).unwrap();
    rig.turn(0);
    let sent = b.sent();
    assert_eq!(data(&sent), [jumbo]);
    assert_eq!(sent[0].addrs.len(), 3, "three buffers");
    assert!(c.sent().is_empty(), "a port without chains takes none");
    assert_eq!(rig.counters(0, 2).drops[DropReason::Oversize as usize], 1);
    rig.assert_all_back(0);
}

mod meters;
