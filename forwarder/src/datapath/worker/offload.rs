//! What an offload left undone, finished before a frame goes out: a TCP or UDP
//! checksum left partial (`wire::checksum`), and a TCP segment larger than the ingress
//! port's MTU cut into segments it admits (`wire::segment`), as OVS's "prepare for
//! send" step does for a userspace datapath's tap ports.
//!
//! `unsafe` here: the frames' bytes are read and the segments written through
//! [`Umem::data`] and friends, by the ownership rules of [`Umem`].
#![allow(unsafe_code)]

use super::{RX_BATCH, Umems, Worker, umem_of};
use crate::{
    datapath::{
        stats::PortQueueCounters,
        xsk::{Desc, MAX_CHAIN, Umem},
    },
    switch::{Action, DropReason, Now, PortId, decide_metered},
    wire::{
        ETHERNET_HEADER_LEN, checksum,
        dot1q::{self, TAG_LEN},
        segment::{Cutter, MAX_HEADERS, Uncuttable},
    },
};

impl Worker {
    /// Cuts the frame `chain` of `len` bytes, received on `ingress` of MTU `mtu`, if
    /// it is a large TCP segment (longer than the MTU admits: an Ethernet header, and a
    /// tag if it has one), into segments the MTU admits, written into frames of the
    /// pool, and queues them as the large one's verdict says ([`crate::wire::segment`]).
    /// Returns whether it took the frame (cut, or dropped and counted); `false` leaves
    /// it to be forwarded as it came (not TCP, or no longer than its tag allows). The
    /// caller frees `chain` either way.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub(super) fn cut(
        &mut self,
        umems: &Umems,
        from: usize,
        chain: &[Desc],
        len: usize,
        ingress: PortId,
        c: &PortQueueCounters,
        mtu: usize,
        now: Now,
        wake: &mut u64,
    ) -> bool {
        let umem = umem_of(umems, from);
        // SAFETY: the chain came off this worker's RX ring; it is only read here, and
        // the segments are written into other frames, from the pool.
        let first = unsafe { umem.data(chain[0]) };
        let tagged =
            first.get(dot1q::OFFSET..dot1q::OFFSET + 2) == Some(&dot1q::TPID_8021Q.to_be_bytes());
        if tagged && len <= mtu + ETHERNET_HEADER_LEN + TAG_LEN {
            return false;
        }
        let mut rest: [&[u8]; RX_BATCH] = [&[]; RX_BATCH];
        for (part, &buffer) in rest.iter_mut().zip(&chain[1..]) {
            // SAFETY: as above.
            *part = unsafe { umem.data(buffer) };
        }
        let rest = &rest[..chain.len() - 1];
        let mut cutter = match Cutter::new(first, rest, mtu) {
            Ok(cutter) => cutter,
            Err(Uncuttable::NotTcp) => return false,
            Err(Uncuttable::Truncated | Uncuttable::NoRoom) => {
                c.drop(DropReason::Oversize);
                return true;
            }
        };
        // Decided (and policed) once, for every segment: they share its Ethernet header
        // and tag.
        let verdict = decide_metered(&self.tables, first, len, ingress, now);
        if let Action::Drop(reason) = verdict.action {
            c.drop(reason);
            return true;
        }
        let hlen = cutter.header_len();
        let (mut headers, mut payload) = ([0; MAX_HEADERS], Vec::with_capacity(4));
        while cutter.next_into(&mut headers, &mut payload).is_some() {
            let mut parts: [&[u8]; MAX_CHAIN + 1] = [&[]; MAX_CHAIN + 1];
            let len = hlen + payload.iter().map(|p| p.len()).sum::<usize>();
            let buffers = umem.buffers_for(len);
            if buffers > MAX_CHAIN || payload.len() > MAX_CHAIN {
                c.drop(DropReason::Oversize);
                return true;
            }
            parts[0] = &headers[..hlen];
            parts[1..=payload.len()].copy_from_slice(&payload);
            let mut segment = [Desc::default(); MAX_CHAIN];
            let segment = &mut segment[..buffers];
            if !self.group(from).take(segment) {
                c.drop(DropReason::NoFreeFrame);
                return true;
            }
            // SAFETY: the frames came from the group's free pool: frames of `umem` that
            // nothing else holds.
            unsafe { umem.write_chain(segment, &parts[..=payload.len()]) };
            self.dispatch(umems, from, segment, verdict, c, wake);
        }
        c.segmented.add(1);
        true
    }
}

/// Finishes the TCP or UDP checksum of the frame `chain` if an offload left it partial
/// (`wire::checksum`); true when it did.
#[inline]
pub(super) fn finish_checksum(umem: &Umem, chain: &[Desc]) -> bool {
    let mut rest: [&[u8]; MAX_CHAIN] = [&[]; MAX_CHAIN];
    for (slot, &desc) in rest.iter_mut().zip(&chain[1..]) {
        // SAFETY: the chain came off this worker's RX ring and is on no ring now; its
        // buffers are frames of `umem` that only this worker touches.
        *slot = unsafe { umem.data(desc) };
    }
    // SAFETY: as above; the first buffer is a different frame from the others, and
    // nothing else reads it while this runs.
    let first = unsafe { umem.data_mut(chain[0]) };
    let others = (chain.len() - 1).min(MAX_CHAIN);
    checksum::finish_partial(first, &rest[..others]) == checksum::Finish::Finished
}
