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

    /// The owner's side: the data of `desc`, a frame taken off `inbound`.
    fn data(mailbox: &Mailbox, desc: Desc) -> Vec<u8> {
        // SAFETY: `desc` came off the mailbox's inbound queue, so this thread is its only
        // holder, as the owner is in the worker.
        unsafe { mailbox.umem.data(desc) }.to_vec()
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
        let credit = Desc {
            addr: pool[1].addr - 4,
            len: 64,
        };
        mailbox.credits.push(credit).unwrap();
        assert!(mailbox.send(&[b"dst", b"", b"src+", b"payload"], 7));
        assert!(mailbox.credits.is_empty(), "the credit was used");
        let (desc, port) = mailbox.inbound.pop().unwrap();
        assert_eq!(port, 7);
        // At the headroom of the credit's chunk, whatever the credit's address was.
        assert_eq!(
            desc,
            Desc {
                addr: pool[1].addr,
                len: 14
            }
        );
        assert_eq!(data(&mailbox, desc), b"dstsrc+payload");
        assert!(mailbox.inbound.is_empty());
    }

    #[test]
    fn without_credits_a_send_fails_and_queues_nothing() {
        let (mailbox, _pool) = mailbox(1);
        assert!(!mailbox.send(&[&[0x5a; 60]], 1));
        assert!(mailbox.inbound.is_empty());
        assert!(mailbox.credits.is_empty());
    }

    #[test]
    fn a_frame_too_large_for_a_umem_frame_gives_its_credit_back() {
        let (mailbox, pool) = mailbox(1);
        mailbox.credits.push(pool[0]).unwrap();
        // One byte too many, in one part or spread over several.
        assert!(!mailbox.send(&[&[1; ROOM + 1]], 0));
        assert!(!mailbox.send(&[&[1; ROOM], &[2]], 0));
        assert_eq!(mailbox.credits.len(), 1, "the credit is back");
        assert!(mailbox.inbound.is_empty());
        // The largest frame that fits goes through whole.
        let big: Vec<u8> = (0..ROOM).map(|i| i as u8).collect();
        assert!(mailbox.send(&[&big[..1000], &big[1000..]], 3));
        let (desc, port) = mailbox.inbound.pop().unwrap();
        assert_eq!((data(&mailbox, desc), port), (big, 3));
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
        /// Another worker sends a frame of this many bytes to this port.
        Send(usize, PortId),
        /// The owner takes the oldest frame waiting and, once it is transmitted, lends it
        /// again.
        Take,
    }

    fn any_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            // Sometimes larger than a UMEM frame.
            2 => (0..ROOM + 64, any::<PortId>()).prop_map(|(len, port)| Step::Send(len, port)),
            1 => Just(Step::Take),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the sends and takes: a send succeeds exactly when a credit is left
        /// and the frame fits, the owner takes the frames in the order they were sent,
        /// intact, and no credit is ever lost or made up (credits and frames waiting
        /// always add up to what the owner lent).
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
                    Step::Send(len, port) => {
                        let frame: Vec<u8> = (0..len).map(|i| (i + n) as u8).collect();
                        let fits = len <= ROOM;
                        let credit_left = !mailbox.credits.is_empty();
                        let (head, tail) = frame.split_at(len / 3);
                        prop_assert_eq!(mailbox.send(&[head, tail], port), fits && credit_left);
                        if fits && credit_left {
                            waiting.push_back((frame, port));
                        }
                    }
                    Step::Take => {
                        let taken = mailbox.inbound.pop();
                        prop_assert_eq!(taken.is_some(), !waiting.is_empty());
                        if let Some((desc, port)) = taken {
                            let sent = waiting.pop_front();
                            prop_assert_eq!(Some((data(&mailbox, desc), port)), sent);
                            mailbox.credits.push(mailbox.umem.reset(desc)).unwrap();
                        }
                    }
                }
                prop_assert_eq!(mailbox.inbound.len(), waiting.len());
                prop_assert_eq!(mailbox.credits.len() + mailbox.inbound.len(), lent as usize);
            }
        }
    }

    /// The frame number `n` of the two-thread test: its number, then up to 200 bytes
    /// that depend on it.
    fn numbered(n: u32) -> Vec<u8> {
        let mut f = n.to_be_bytes().to_vec();
        f.extend((0..n % 200).map(|i| (n ^ i) as u8));
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
                    while !mailbox.send(&[&frame], (n % 64) as PortId) {
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
                mailbox.credits.push(mailbox.umem.reset(desc)).unwrap();
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
