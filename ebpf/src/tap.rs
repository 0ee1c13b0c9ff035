//! Copies of the frames the fast path carries, for captures and mirrors
//! (`hairpin_common::tap`): while user space taps a port (`TAPS`), each of its frames
//! the fast path forwards is copied, as received and as sent, into the `TAP_RING` ring
//! buffer, which hairpin's capture thread drains on its own clock (no wake-up per
//! record). A full ring loses the copy, never the frame, and counts it (`TAP_LOST`).
//! A frame the fast path drops (policing, the IP source guard) is copied as received,
//! with the reason. With nothing tapped a frame pays two array reads.
use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{bpf_ktime_get_ns, bpf_xdp_load_bytes},
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
    programs::XdpContext,
};
pub use hairpin_common::tap::{IN, IP_SPOOFED, OUT, POLICED, STORM};
use hairpin_common::{
    MAX_PORTS,
    tap::{Meta, RING_BYTES, Record, SNAP},
};

/// By port slot: the directions tapped.
#[map]
static TAPS: Array<u8> = Array::with_max_entries(MAX_PORTS, 0);

#[map]
static TAP_RING: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// By port slot: copies lost to a full ring.
#[map]
static TAP_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_PORTS, 0);

/// Whether `slot`'s frames in direction `dir` are tapped.
#[inline(always)]
pub fn wants(slot: u32, dir: u8) -> bool {
    TAPS.get(slot).is_some_and(|&f| f & dir != 0)
}

/// Copies the frame in `ctx` (one buffer) into the ring as `slot`'s, in direction `dir`;
/// `reason`: why it is dropped, zero if it is not.
#[inline(always)]
pub fn take(ctx: &XdpContext, slot: u32, dir: u8, reason: u8) {
    let len = (ctx.data_end() - ctx.data()) as u32;
    let Some(mut entry) = TAP_RING.reserve::<Record>(0) else {
        lost(slot);
        return;
    };
    let kept = if len as usize > SNAP {
        SNAP as u32
    } else {
        len
    };
    // 1 to SNAP, by a mask the verifier follows (after `black_box`, so that the
    // compiler, which knows `kept` is at most SNAP, keeps it); equal to `kept` but for
    // an empty frame, whose copy then fails.
    let caplen = (core::hint::black_box(kept.wrapping_sub(1)) & (SNAP as u32 - 1)) + 1;
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at the reserved, 8-byte aligned `Record` in the ring; the
    // helper copies `caplen` (at most SNAP) bytes into its `data` and fails if they are
    // not all in the frame.
    let copied = unsafe {
        (*record).meta = Meta {
            ts_ns: bpf_ktime_get_ns(),
            len,
            caplen,
            slot: slot as u16,
            dir,
            reason,
            _pad: 0,
        };
        bpf_xdp_load_bytes(ctx.ctx, 0, (&raw mut (*record).data).cast(), caplen)
    };
    if copied != 0 {
        entry.discard(0);
        lost(slot);
        return;
    }
    entry.submit(u64::from(BPF_RB_NO_WAKEUP));
}

/// Counts a copy of `slot`'s frame lost.
#[inline(always)]
fn lost(slot: u32) {
    if let Some(n) = TAP_LOST.get_ptr_mut(slot) {
        // SAFETY: a per-CPU element, touched only by this CPU while this program runs.
        unsafe { *n += 1 };
    }
}
