//! Which socket each UMEM chunk was last given to the kernel through.
//!
//! A worker hands frames to the kernel on fill rings (to receive into) and TX rings (to
//! send), and gets them back on RX and completion rings. When a socket closes, whatever
//! it still held never comes back on a ring: the unconsumed fill entries, a zero-copy
//! driver's receive buffers, frames stuck on the TX ring of a device that was deleted.
//! This record names those frames, so that every one of them returns to the free pool.
//!
//! Two bytes per chunk, written by the owning worker only: a plain store when a frame is
//! given or taken back, no atomics.
use crate::switch::PortId;

/// The holder of every chunk of one UMEM.
#[derive(Debug)]
pub struct Holders {
    /// Per chunk: 0 while the worker has it, else the holding port's id + 1.
    by_chunk: Box<[PortId]>,
    /// log2 of the chunk size.
    shift: u32,
}

impl Holders {
    /// A record for `chunks` chunks of `chunk_size` bytes (a power of two), all with the
    /// worker.
    pub fn new(chunks: u32, chunk_size: u32) -> Self {
        debug_assert!(chunk_size.is_power_of_two());
        Self {
            by_chunk: vec![0; chunks as usize].into_boxed_slice(),
            shift: chunk_size.trailing_zeros(),
        }
    }

    /// The frame at `addr` (anywhere in its chunk) goes to the kernel through `port`.
    #[inline]
    pub fn give(&mut self, addr: u64, port: PortId) {
        self.by_chunk[(addr >> self.shift) as usize] = port + 1;
    }

    /// The frame at `addr` is back with the worker.
    #[inline]
    pub fn take(&mut self, addr: u64) {
        self.by_chunk[(addr >> self.shift) as usize] = 0;
    }

    /// Takes back every chunk `port` still holds (its socket is closed); returns their
    /// start addresses.
    pub fn reclaim(&mut self, port: PortId) -> Vec<u64> {
        let mut chunks = Vec::new();
        for (i, holder) in self.by_chunk.iter_mut().enumerate() {
            if *holder == port + 1 {
                *holder = 0;
                chunks.push((i as u64) << self.shift);
            }
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_s_chunks_come_back_and_no_others() {
        let mut h = Holders::new(8, 2048);
        h.give(2048 + 256, 3); // chunk 1, on port 3's fill ring
        h.give(3 * 2048 + 252, 3); // chunk 3, a tagged frame on port 3's TX ring
        h.give(4 * 2048 + 256, 5); // chunk 4, port 5
        h.give(5 * 2048 + 256, 3);
        h.take(5 * 2048 + 300); // received back from port 3
        assert_eq!(h.reclaim(3), vec![2048, 3 * 2048]);
        assert!(h.reclaim(3).is_empty(), "reclaimed once");
        assert_eq!(h.reclaim(5), vec![4 * 2048]);
    }
}
