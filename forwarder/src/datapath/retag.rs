//! 802.1Q tags pushed, popped and rewritten where a frame lies in its UMEM frame: a
//! pushed tag goes into the headroom, a popped one is covered by moving the MACs, and no
//! payload byte moves. The tag's bytes are [`crate::wire::dot1q`]'s, as the switch's
//! copies ([`crate::switch::vlan::retagged_parts`]) use them; the tests check every retag against that
//! plain copy.
//!
//! `unsafe` here: the frame's bytes, headroom included, are written through
//! [`Umem::data_mut`], by the ownership rules of [`Umem`].
#![allow(unsafe_code)]

use super::xsk::{Desc, Umem};
use crate::{
    switch::vlan::Retag,
    wire::dot1q::{self, TAG_LEN},
};

/// Applies `retag` to frame `desc` where it lies: a pushed tag goes into the headroom
/// (the destination and source MACs move four bytes forward), a popped one is covered by
/// moving them four bytes back. No payload byte moves. Returns the frame to transmit, or
/// `None` when there is no headroom left for a push.
///
/// # Safety
///
/// The caller owns `desc` exclusively (as [`Umem::data_mut`] requires), and a tagged
/// frame (`Pop`, `Rewrite`) is at least 16 bytes long, as classification checked.
#[inline]
pub(super) unsafe fn retag_in_place(umem: &Umem, desc: Desc, retag: Retag) -> Option<Desc> {
    const MACS: usize = dot1q::OFFSET;
    let tag = TAG_LEN as u32;
    match retag {
        Retag::Keep => Some(desc),
        Retag::Push(tci) => {
            let out = umem.grow_front(desc, tag)?;
            // SAFETY: the caller owns the frame, headroom included.
            let bytes = unsafe { umem.data_mut(out) };
            bytes.copy_within(TAG_LEN..TAG_LEN + MACS, 0);
            bytes[MACS..MACS + TAG_LEN].copy_from_slice(&dot1q::tag(tci));
            Some(out)
        }
        Retag::Pop => {
            // SAFETY: the caller owns the frame.
            let bytes = unsafe { umem.data_mut(desc) };
            bytes.copy_within(0..MACS, TAG_LEN);
            Some(Desc {
                addr: desc.addr + u64::from(tag),
                len: desc.len - tag,
                more: desc.more,
            })
        }
        Retag::Rewrite(tci) => {
            // SAFETY: the caller owns the frame.
            let bytes = unsafe { umem.data_mut(desc) };
            bytes[dot1q::TCI_OFFSET..dot1q::INNER_OFFSET].copy_from_slice(&tci.to_be_bytes());
            Some(desc)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{datapath::xsk::HEADROOM, switch::vlan};

    /// Chunk size of the test UMEMs. They have two chunks and the frames go in the
    /// second, the last: a frame may end where the mapping does, and a push that reached
    /// into the chunk in front would show in the first.
    const FRAME_SIZE: u32 = 2048;

    /// Byte offset of the second chunk.
    const CHUNK: u64 = FRAME_SIZE as u64;

    /// Every byte of `umem`, chunk by chunk.
    fn snapshot(umem: &Umem) -> Vec<u8> {
        let mut bytes = Vec::new();
        for frame in umem.all_frames() {
            let chunk = Desc::new(umem.chunk(frame.addr), umem.frame_size());
            // SAFETY: the test owns every frame of its UMEM (no socket uses it), and no
            // slice of it is alive.
            bytes.extend_from_slice(unsafe { umem.data(chunk) });
        }
        bytes
    }

    /// Lays `frame` `offset` bytes into the second chunk of `umem` (every other byte of
    /// the UMEM set to 0xa5) and applies `retag` where it lies. Returns the bytes of the
    /// frame `retag_in_place` gives back, or `None` as it does, after checking that the
    /// frame still ends where it did (no payload byte moved) and that no byte outside
    /// the frame it gave back changed (none at all when it gave none).
    fn retag_at(umem: &Umem, offset: u32, frame: &[u8], retag: Retag) -> Option<Vec<u8>> {
        for chunk in umem.all_frames() {
            let chunk = Desc::new(umem.chunk(chunk.addr), umem.frame_size());
            // SAFETY: as in `snapshot`.
            unsafe { umem.data_mut(chunk) }.fill(0xa5);
        }
        let desc = Desc::new(CHUNK + u64::from(offset), frame.len() as u32);
        // SAFETY: as in `snapshot`.
        unsafe { umem.data_mut(desc) }.copy_from_slice(frame);
        let before = snapshot(umem);
        // SAFETY: as in `snapshot`; `Pop` and `Rewrite` are only asked of frames of 16
        // bytes or more.
        let out = unsafe { retag_in_place(umem, desc, retag) };
        let after = snapshot(umem);
        let Some(out) = out else {
            assert!(after == before, "{retag:?} gave no frame, yet wrote");
            return None;
        };
        assert_eq!(
            out.addr + u64::from(out.len),
            desc.addr + u64::from(desc.len),
            "{retag:?} moved the payload"
        );
        let kept = out.addr as usize..(out.addr + u64::from(out.len)) as usize;
        for (i, (was, is)) in before.iter().zip(&after).enumerate() {
            assert!(
                kept.contains(&i) || was == is,
                "{retag:?} wrote byte {i}, outside the frame {out:?}"
            );
        }
        // SAFETY: as in `snapshot`.
        Some(unsafe { umem.data(out) }.to_vec())
    }

    /// The plain model: `frame` copied out with `retag` applied.
    fn model(frame: &[u8], retag: Retag) -> Vec<u8> {
        let mut tag = [0; TAG_LEN];
        vlan::retagged_parts(frame, retag, &mut tag).concat()
    }

    /// `len` bytes, no two neighbours alike; with an 802.1Q priority tag (priority 5)
    /// after the MACs if `tagged`.
    fn sample(len: usize, tagged: bool) -> Vec<u8> {
        let mut f: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
        if tagged {
            f[12..16].copy_from_slice(&[0x81, 0x00, 0xa0, 0x00]);
        }
        f
    }

    #[test]
    fn every_retag_gives_the_plain_copy_at_every_length_and_place() {
        let umem = Umem::new(2, FRAME_SIZE).unwrap();
        let room = FRAME_SIZE - HEADROOM;
        for retag in [
            Retag::Keep,
            Retag::Push(0xa00a),
            Retag::Pop,
            Retag::Rewrite(0xa00a),
        ] {
            let tagged = matches!(retag, Retag::Pop | Retag::Rewrite(_));
            // The shortest frame `decide` passes: an Ethernet header, and a whole tag.
            let min = if tagged { 18 } else { 14 };
            // Minimum sizes, the usual ones, a frame that fills what a received frame
            // may (from the headroom to the end of the chunk) and a whole chunk.
            for len in [min, min + 1, 60, 64, 1514, 1518, room - 4, room, FRAME_SIZE] {
                // At the very start of the chunk, just short of and just at four bytes of
                // headroom, where received frames start, and ending with the chunk.
                for offset in [0, 1, 3, 4, 5, HEADROOM - 4, HEADROOM, FRAME_SIZE - len] {
                    if offset + len > FRAME_SIZE {
                        continue;
                    }
                    let frame = sample(len as usize, tagged);
                    let want = match retag {
                        Retag::Push(_) if offset < TAG_LEN as u32 => None,
                        _ => Some(model(&frame, retag)),
                    };
                    assert_eq!(
                        retag_at(&umem, offset, &frame, retag),
                        want,
                        "{retag:?}, {len} bytes at offset {offset}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_a_push_needs_room_and_only_four_bytes_of_it() {
        let umem = Umem::new(2, FRAME_SIZE).unwrap();
        let untagged = sample(60, false);
        let tagged = sample(64, true);
        // Fewer than four bytes in front of the frame: no push (the bytes in front belong
        // to the chunk before), and nothing written.
        for offset in 0..TAG_LEN as u32 {
            assert_eq!(retag_at(&umem, offset, &untagged, Retag::Push(10)), None);
        }
        // Exactly four: the frame then starts at the chunk's first byte.
        assert_eq!(
            retag_at(&umem, TAG_LEN as u32, &untagged, Retag::Push(10)),
            Some(model(&untagged, Retag::Push(10)))
        );
        // Keeping, popping and rewriting need no room at all.
        for retag in [Retag::Keep, Retag::Pop, Retag::Rewrite(0xa00a)] {
            assert_eq!(
                retag_at(&umem, 0, &tagged, retag),
                Some(model(&tagged, retag)),
                "{retag:?}"
            );
        }
    }

    /// Any retag: keep, or push, pop or rewrite with any TCI.
    fn any_retag() -> impl Strategy<Value = Retag> {
        prop_oneof![
            Just(Retag::Keep),
            any::<u16>().prop_map(Retag::Push),
            Just(Retag::Pop),
            any::<u16>().prop_map(Retag::Rewrite),
        ]
    }

    /// Where a frame lies in its chunk.
    #[derive(Clone, Debug)]
    enum Place {
        /// This many bytes from the chunk's start (the edge a push may not cross).
        Start(u32),
        /// Anywhere.
        Anywhere(prop::sample::Index),
        /// Ending with the chunk.
        End,
    }

    prop_compose! {
        /// Random bytes, 18 up to a whole chunk of them, in the chunk's first bytes, at
        /// its end or anywhere.
        fn any_placed_frame()(
            frame in prop::collection::vec(any::<u8>(), 18..=FRAME_SIZE as usize),
            place in prop_oneof![
                (0..2 * TAG_LEN as u32).prop_map(Place::Start),
                any::<prop::sample::Index>().prop_map(Place::Anywhere),
                Just(Place::End),
            ],
        ) -> (u32, Vec<u8>) {
            let last = FRAME_SIZE - frame.len() as u32;
            let offset = match place {
                Place::Start(offset) => offset.min(last),
                Place::Anywhere(i) => i.index(last as usize + 1) as u32,
                Place::End => last,
            };
            (offset, frame)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_retags_in_place_give_the_plain_copy(
            (offset, frame) in any_placed_frame(),
            retag in any_retag(),
        ) {
            let umem = Umem::new(2, FRAME_SIZE).unwrap();
            let want = match retag {
                Retag::Push(_) if offset < TAG_LEN as u32 => None,
                _ => Some(model(&frame, retag)),
            };
            prop_assert_eq!(retag_at(&umem, offset, &frame, retag), want);
        }
    }
}
