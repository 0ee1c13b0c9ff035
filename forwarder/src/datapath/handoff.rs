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
//! A jumbo frame takes several credits, one per buffer of its chain, and still one entry
//! on the inbound queue (so chains from different senders never interleave): the first
//! buffer's chunk lists the chain's other buffers in its first bytes, in front of the
//! headroom, as an mbuf's `next` pointer does in DPDK ([`Mailbox::send`],
//! [`Mailbox::chain`]).
//!
//! The same mailbox carries the control plane's commands to the worker (a port's
//! sockets to serve or to close, new tables): the one channel through which the
//! datapath changes while it runs. The worker looks at it once per turn.
//!
//! `unsafe` here: senders write into frames of the owner's UMEM they took as credits,
//! and the owner reads a chain's links, by the ownership rules of [`Umem`].
#![allow(unsafe_code)]
use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use crossbeam_queue::ArrayQueue;

use super::{
    command::Command,
    xsk::{Desc, HEADROOM, MAX_CHAIN, Umem},
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
    /// The longest chain the owner's sockets transmit (1 until one bound with
    /// `XDP_USE_SG` joins).
    max_chain: AtomicUsize,
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
            max_chain: AtomicUsize::new(1),
            sleeping: AtomicBool::new(false),
            wake: EventFd::new()?,
        })
    }

    /// Copies the frame made of `parts` into the owner's frames (a chain of up to
    /// `max_chain` buffers) and queues it for `port`.
    ///
    /// Returns `false` when too few credits are left (the owner is behind) or the frame
    /// needs more than `max_chain` buffers: the frame is dropped.
    pub fn send(&self, parts: &[&[u8]], port: PortId, max_chain: usize) -> bool {
        let len = parts.iter().map(|p| p.len()).sum();
        let buffers = self.umem.buffers_for(len);
        if buffers > max_chain.min(MAX_CHAIN) {
            return false;
        }
        let mut chain = [Desc::default(); MAX_CHAIN];
        for i in 0..buffers {
            let Some(credit) = self.credits.pop() else {
                // Not enough: give back what was taken.
                for &credit in &chain[..i] {
                    let _ = self.credits.push(credit);
                }
                return false;
            };
            chain[i] = credit;
        }
        let chain = &mut chain[..buffers];
        // SAFETY: every frame of `chain` is a frame of `self.umem` that its owner gave up
        // when it published it as a credit; popping it made this thread its only holder
        // until it is pushed onto `inbound`.
        unsafe {
            self.umem.write_chain(chain, parts);
            write_links(&self.umem, chain);
        }
        // `inbound` is as large as `credits` and every frame in it was a credit, so it
        // never overflows; if it ever did, the credits are returned rather than lost.
        if let Err((first, _)) = self.inbound.push((chain[0], port)) {
            let _ = self.credits.push(first);
            for &credit in &chain[1..] {
                let _ = self.credits.push(credit);
            }
            return false;
        }
        true
    }

    /// The owner: the whole chain of `first`, an entry it took off `inbound`, in
    /// `chain`; returns how many buffers it has.
    ///
    /// # Safety
    ///
    /// The caller took `first` off `inbound`: it holds the chain's frames.
    pub unsafe fn chain(&self, first: Desc, chain: &mut [Desc; MAX_CHAIN]) -> usize {
        chain[0] = first;
        if !first.more {
            return 1;
        }
        // SAFETY: the caller holds the chain, so its first chunk too.
        let links = unsafe {
            self.umem
                .data(Desc::new(self.umem.chunk(first.addr), LINKS_LEN))
        };
        let n = u32::from_le_bytes(links[..4].try_into().expect("four bytes")) as usize;
        debug_assert!((2..=MAX_CHAIN).contains(&n), "a chain of {n} buffers");
        for (i, link) in links[4..].chunks_exact(LINK_LEN).take(n - 1).enumerate() {
            chain[i + 1] = Desc {
                addr: u64::from_le_bytes(link[..8].try_into().expect("eight bytes")),
                len: u32::from_le_bytes(link[8..].try_into().expect("four bytes")),
                more: i + 2 < n,
            };
        }
        n
    }

    /// The longest chain the owner transmits: what senders may hand it.
    pub fn max_chain(&self) -> usize {
        self.max_chain.load(Ordering::Relaxed)
    }

    /// The owner: its sockets transmit chains of up to `n` buffers.
    pub fn set_max_chain(&self, n: usize) {
        self.max_chain.store(n, Ordering::Relaxed);
    }

    /// Wakes the owner if it is sleeping.
    pub fn wake(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
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

/// Bytes of one link: a buffer's address and length.
const LINK_LEN: usize = 12;

/// Bytes of a chain's links: its length, then a link for each buffer after the first.
const LINKS_LEN: u32 = (4 + (MAX_CHAIN - 1) * LINK_LEN) as u32;

// The links lie in front of the headroom, out of reach of a pushed tag.
const _: () = assert!(LINKS_LEN + 4 <= HEADROOM);

/// Writes the links of `chain` into its first chunk (nothing for a single buffer).
///
/// # Safety
///
/// The caller owns every frame of `chain` exclusively.
unsafe fn write_links(umem: &Umem, chain: &[Desc]) {
    if chain.len() < 2 {
        return;
    }
    // SAFETY: the caller owns the chain's first chunk.
    let links = unsafe { umem.data_mut(Desc::new(umem.chunk(chain[0].addr), LINKS_LEN)) };
    links[..4].copy_from_slice(&(chain.len() as u32).to_le_bytes());
    for (link, buffer) in links[4..].chunks_exact_mut(LINK_LEN).zip(&chain[1..]) {
        link[..8].copy_from_slice(&buffer.addr.to_le_bytes());
        link[8..].copy_from_slice(&buffer.len.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, thread};

    use proptest::prelude::*;

    use super::*;
    use crate::{datapath::xsk::HEADROOM, sys};

    /// Chunk size of the test UMEMs.
    const FRAME_SIZE: u32 = 2048;

    /// The most a UMEM frame takes: from the headroom to the end of its chunk.
    const ROOM: usize = (FRAME_SIZE - HEADROOM) as usize;

    /// A mailbox on a fresh UMEM of `frames` chunks, none of them lent yet, and the
    /// chunks, as the owner's free pool.
    fn mailbox(frames: u32) -> (Mailbox, Vec<Desc>) {
        let umem = Arc::new(Umem::new(frames, FRAME_SIZE).unwrap());
        let pool = umem.all_frames();
        (Mailbox::new(umem).unwrap(), pool)
    }

    /// The owner's side: the data of `desc`, a frame taken off `inbound` (all of its
    /// chain).
    fn data(mailbox: &Mailbox, desc: Desc) -> Vec<u8> {
        chain(mailbox, desc)
            .iter()
            // SAFETY: `desc` came off the mailbox's inbound queue, so this thread is the
            // only holder of its chain, as the owner is in the worker.
            .flat_map(|&buffer| unsafe { mailbox.umem.data(buffer) }.to_vec())
            .collect()
    }

    /// The owner's side: the chain of `desc`, a frame taken off `inbound`.
    fn chain(mailbox: &Mailbox, desc: Desc) -> Vec<Desc> {
        let mut chain = [Desc::default(); MAX_CHAIN];
        // SAFETY: as in `data`.
        let n = unsafe { mailbox.chain(desc, &mut chain) };
        chain[..n].to_vec()
    }

    /// The owner's side: lends every buffer of `desc`'s chain again.
    fn lend_again(mailbox: &Mailbox, desc: Desc) {
        for buffer in chain(mailbox, desc) {
            mailbox.credits.push(mailbox.umem.reset(buffer)).unwrap();
        }
    }

    /// How many times the owner's eventfd was notified since it was last drained (0:
    /// it is not readable, so `poll` would sleep); drains it.
    fn notifications(mailbox: &Mailbox) -> u64 {
        let mut count = 0u64;
        // SAFETY: reads eight bytes into a live `u64` from the mailbox's eventfd, which
        // is non-blocking: when nothing was notified the read fails with EAGAIN.
        let read = unsafe {
            libc::read(
                mailbox.wake_fd().raw(),
                std::ptr::from_mut(&mut count).cast(),
                8,
            )
        };
        if read == 8 { count } else { 0 }
    }

    #[test]
    fn a_send_copies_the_parts_into_a_credit_and_queues_it_for_its_port() {
        let (mailbox, pool) = mailbox(2);
        // A credit as the owner may publish it: a frame of the pool, anywhere in its
        // chunk (here one that was sent with a pushed tag).
        let credit = Desc::new(pool[1].addr - 4, 64);
        mailbox.credits.push(credit).unwrap();
        assert!(mailbox.send(&[b"dst", b"", b"src+", b"payload"], 7, 1));
        assert!(mailbox.credits.is_empty(), "the credit was used");
        let (desc, port) = mailbox.inbound.pop().unwrap();
        assert_eq!(port, 7);
        // At the headroom of the credit's chunk, whatever the credit's address was.
        assert_eq!(desc, Desc::new(pool[1].addr, 14));
        assert_eq!(data(&mailbox, desc), b"dstsrc+payload");
        assert!(mailbox.inbound.is_empty());
    }

    #[test]
    fn without_credits_a_send_fails_and_queues_nothing() {
        let (mailbox, _pool) = mailbox(1);
        assert!(!mailbox.send(&[&[0x5a; 60]], 1, MAX_CHAIN));
        assert!(mailbox.inbound.is_empty());
        assert!(mailbox.credits.is_empty());
    }

    #[test]
    fn a_frame_longer_than_the_chains_allowed_gives_its_credits_back() {
        let (mailbox, pool) = mailbox(3);
        for credit in pool {
            mailbox.credits.push(credit).unwrap();
        }
        // Without chains: one byte too many, in one part or spread over several.
        assert!(!mailbox.send(&[&[1; ROOM + 1]], 0, 1));
        assert!(!mailbox.send(&[&[1; ROOM], &[2]], 0, 1));
        // Chains of two at most: three buffers' worth.
        assert!(!mailbox.send(&[&[1; 2 * ROOM + 1]], 0, 2));
        assert_eq!(mailbox.credits.len(), 3, "the credits are back");
        assert!(mailbox.inbound.is_empty());
        // The largest frame that fits goes through whole.
        let big: Vec<u8> = (0..ROOM).map(|i| i as u8).collect();
        assert!(mailbox.send(&[&big[..1000], &big[1000..]], 3, 1));
        let (desc, port) = mailbox.inbound.pop().unwrap();
        assert_eq!((data(&mailbox, desc), port), (big, 3));
        // Three buffers' worth with two credits left: refused, both kept.
        assert!(!mailbox.send(&[&[7; 2 * ROOM + 1]], 0, MAX_CHAIN));
        assert_eq!(mailbox.credits.len(), 2);
        assert!(mailbox.inbound.is_empty());
    }

    #[test]
    fn a_chain_is_one_entry_listing_its_buffers_in_its_first_chunk() {
        let (mailbox, pool) = mailbox(4);
        for credit in pool {
            mailbox.credits.push(credit).unwrap();
        }
        let jumbo: Vec<u8> = (0..2 * ROOM + 100).map(|i| (i * 7) as u8).collect();
        // A pushed tag's worth of parts, as a flood copy to a trunk gives.
        assert!(mailbox.send(
            &[&jumbo[..12], &[0x81, 0, 0, 10], &jumbo[12..]],
            5,
            MAX_CHAIN
        ));
        assert_eq!(mailbox.inbound.len(), 1, "one entry for the chain");
        assert_eq!(mailbox.credits.len(), 1, "three credits taken");
        let (desc, port) = mailbox.inbound.pop().unwrap();
        let chain = chain(&mailbox, desc);
        let lens: Vec<u32> = chain.iter().map(|d| d.len).collect();
        let more: Vec<bool> = chain.iter().map(|d| d.more).collect();
        assert_eq!(lens, [ROOM as u32, ROOM as u32, 104]);
        assert_eq!(more, [true, true, false]);
        assert!(
            chain
                .iter()
                .all(|d| mailbox.umem.chunk(d.addr) + u64::from(HEADROOM) == d.addr)
        );
        let mut want = jumbo[..12].to_vec();
        want.extend([0x81, 0, 0, 10]);
        want.extend(&jumbo[12..]);
        assert_eq!((data(&mailbox, desc), port), (want, 5));
    }

    #[test]
    fn prepare_sleep_refuses_while_frames_or_commands_wait() {
        let (mailbox, pool) = mailbox(1);
        assert!(mailbox.prepare_sleep(), "nothing waits");
        mailbox.woke();
        mailbox.inbound.push((pool[0], 0)).unwrap();
        assert!(!mailbox.prepare_sleep(), "a frame waits");
        mailbox.inbound.pop().unwrap();
        mailbox.commands.push(Command::Detach { id: 0 }).unwrap();
        assert!(!mailbox.prepare_sleep(), "a command waits");
        mailbox.commands.pop().unwrap();
        assert!(mailbox.prepare_sleep(), "nothing waits any more");
    }

    #[test]
    fn wake_notifies_only_an_owner_that_said_it_would_sleep() {
        let (mailbox, pool) = mailbox(1);
        // Awake: no notification.
        mailbox.wake();
        assert_eq!(notifications(&mailbox), 0);
        // About to sleep: one, however many senders wake it.
        assert!(mailbox.prepare_sleep());
        mailbox.wake();
        mailbox.wake();
        mailbox.wake();
        assert_eq!(notifications(&mailbox), 1);
        // Woken, then awake again: senders' wakes cost nothing any more.
        mailbox.woke();
        mailbox.wake();
        assert_eq!(notifications(&mailbox), 0);
        // `woke` drains a notification the owner did not wait for (it woke on a socket).
        assert!(mailbox.prepare_sleep());
        mailbox.wake();
        mailbox.woke();
        assert_eq!(notifications(&mailbox), 0);
        // A sleep refused because work waits leaves the owner awake.
        mailbox.inbound.push((pool[0], 0)).unwrap();
        assert!(!mailbox.prepare_sleep());
        mailbox.wake();
        assert_eq!(notifications(&mailbox), 0);
    }

    /// One step of a sender or of the owner.
    #[derive(Clone, Debug)]
    enum Step {
        /// Another worker sends a frame of this many bytes to this port, in chains of
        /// up to so many buffers.
        Send(usize, PortId, usize),
        /// The owner takes the oldest frame waiting and, once it is transmitted, lends it
        /// again.
        Take,
    }

    fn any_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            // Often larger than a UMEM frame.
            2 => (0..3 * ROOM + 64, any::<PortId>(), 1..=3usize)
                .prop_map(|(len, port, max)| Step::Send(len, port, max)),
            1 => Just(Step::Take),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the sends and takes: a send succeeds exactly when credits for every
        /// buffer are left and the chain is short enough, the owner takes the frames in
        /// the order they were sent, intact, and no credit is ever lost or made up
        /// (credits and the buffers of frames waiting always add up to what the owner
        /// lent).
        #[test]
        fn every_credit_is_accounted_for(
            lent in 1..8u32,
            steps in prop::collection::vec(any_step(), 0..64),
        ) {
            let (mailbox, pool) = mailbox(lent);
            for credit in pool {
                mailbox.credits.push(credit).unwrap();
            }
            // The frames waiting, as the model has them.
            let mut waiting = VecDeque::new();
            for (n, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Send(len, port, max) => {
                        let frame: Vec<u8> = (0..len).map(|i| (i + n) as u8).collect();
                        let buffers = len.div_ceil(ROOM).max(1);
                        let ok = buffers <= max && buffers <= mailbox.credits.len();
                        let (head, tail) = frame.split_at(len / 3);
                        prop_assert_eq!(mailbox.send(&[head, tail], port, max), ok);
                        if ok {
                            waiting.push_back((frame, port, buffers));
                        }
                    }
                    Step::Take => {
                        let taken = mailbox.inbound.pop();
                        prop_assert_eq!(taken.is_some(), !waiting.is_empty());
                        if let Some((desc, port)) = taken {
                            let sent = waiting.pop_front();
                            let buffers = chain(&mailbox, desc).len();
                            prop_assert_eq!(Some((data(&mailbox, desc), port, buffers)), sent);
                            lend_again(&mailbox, desc);
                        }
                    }
                }
                prop_assert_eq!(mailbox.inbound.len(), waiting.len());
                let held: usize = waiting.iter().map(|w| w.2).sum();
                prop_assert_eq!(mailbox.credits.len() + held, lent as usize);
            }
        }
    }

    /// The frame number `n` of the two-thread test: its number, then bytes that depend
    /// on it; every tenth a jumbo frame (a chain of up to three buffers).
    fn numbered(n: u32) -> Vec<u8> {
        let mut f = n.to_be_bytes().to_vec();
        let len = if n.is_multiple_of(10) {
            n % (3 * ROOM as u32 - 4)
        } else {
            n % 200
        };
        f.extend((0..len).map(|i| (n ^ i) as u8));
        f
    }

    #[test]
    fn frames_from_another_thread_all_arrive_intact_and_in_order() {
        const FRAMES: u32 = 20_000;
        // Few credits, so that the sender keeps running out and waits for the owner.
        let (mailbox, pool) = mailbox(8);
        for credit in pool {
            mailbox.credits.push(credit).unwrap();
        }
        let mailbox = Arc::new(mailbox);
        let sender = thread::spawn({
            let mailbox = Arc::clone(&mailbox);
            move || {
                for n in 0..FRAMES {
                    let frame = numbered(n);
                    while !mailbox.send(&[&frame], (n % 64) as PortId, MAX_CHAIN) {
                        thread::yield_now();
                    }
                    mailbox.wake();
                }
            }
        });
        // The owner: takes what arrives and lends each frame again; when nothing waits,
        // sleeps on the eventfd as the worker does (with a timeout far longer than the
        // test, so that a lost wake-up shows as a hang's worth of delay, not a failure
        // to finish).
        let mut next = 0;
        let mut timeouts = 0;
        while next < FRAMES {
            if let Some((desc, port)) = mailbox.inbound.pop() {
                assert_eq!(data(&mailbox, desc), numbered(next), "frame {next}");
                assert_eq!(port, (next % 64) as PortId, "frame {next}");
                lend_again(&mailbox, desc);
                next += 1;
            } else if mailbox.prepare_sleep() {
                let mut fds = [libc::pollfd {
                    fd: mailbox.wake_fd().raw(),
                    events: libc::POLLIN,
                    revents: 0,
                }];
                sys::poll(&mut fds, 5_000);
                if fds[0].revents & libc::POLLIN == 0 {
                    timeouts += 1;
                }
                mailbox.woke();
            }
        }
        sender.join().unwrap();
        assert!(mailbox.inbound.is_empty(), "nothing more than was sent");
        assert_eq!(mailbox.credits.len(), 8, "every credit back");
        assert_eq!(timeouts, 0, "a sleeping owner missed a wake-up");
    }
}
