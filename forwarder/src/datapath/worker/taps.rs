//! A worker's side of the taps ([`crate::datapath::tap`]): the bytes of a frame that
//! lies in a UMEM, handed to the worker's tap ring.
use super::{
    super::{
        tap::{self, Taps},
        xsk::{self, Desc, MAX_CHAIN, Umem},
    },
    Worker,
};
use crate::switch::{DropReason, PortId};

/// Taps each frame of `descs` (whole chains, frames of `umem`) as `port`'s in direction
/// `dir`, dropped for `reason` if any, on worker `worker`'s ring.
///
/// # Safety
///
/// The caller owns the frames (off its RX ring or on its pending batch), and nothing
/// writes them during the call.
pub(super) unsafe fn tap_frames(
    taps: &Taps,
    worker: usize,
    umem: &Umem,
    descs: &[Desc],
    port: PortId,
    dir: u8,
    reason: Option<DropReason>,
) {
    let mut parts: [&[u8]; MAX_CHAIN] = [&[]; MAX_CHAIN];
    for chain in xsk::frames(descs) {
        let n = chain.len().min(MAX_CHAIN);
        for (part, &desc) in parts.iter_mut().zip(&chain[..n]) {
            // SAFETY: the caller owns the frame; the slice ends with this call.
            *part = unsafe { umem.data(desc) };
        }
        taps.take(worker, port, dir, reason, &parts[..n]);
    }
}

/// Taps the frames of `pending` (a port's batch, retagged) as `port` sends them: the
/// first `sent` go on its TX ring, the rest are dropped for a full ring.
///
/// # Safety
///
/// As [`tap_frames`].
pub(super) unsafe fn tap_sent(
    taps: &Taps,
    worker: usize,
    umem: &Umem,
    pending: &[Desc],
    sent: usize,
    port: PortId,
) {
    let (out, full) = pending.split_at(sent);
    let ring_full = Some(DropReason::TxRingFull);
    // SAFETY: as the caller's.
    unsafe {
        tap_frames(taps, worker, umem, out, port, tap::OUT, None);
        tap_frames(taps, worker, umem, full, port, tap::OUT, ring_full);
    }
}

impl Worker {
    /// Taps, if `egress`'s sent frames are tapped, the frame `parts` (as it would have
    /// left) that could not be sent there for `reason`.
    #[inline]
    pub(super) fn tap_dropped(&self, egress: PortId, parts: &[&[u8]], reason: DropReason) {
        if self.taps.wants(egress, tap::OUT) {
            self.taps
                .take(self.index, egress, tap::OUT, Some(reason), parts);
        }
    }
}
