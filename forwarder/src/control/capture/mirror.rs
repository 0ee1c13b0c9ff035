//! Port mirrors (SPAN) as the capture thread carries them out: each tapped frame of a
//! mirrored port, in the mirror's directions, is sent as it is out of the monitor port
//! (an `AF_PACKET` socket on its interface, which never waits: a copy the device's
//! queue has no room for is counted lost, as are copies the rings had no room for).
use std::{
    io,
    sync::{Arc, Mutex, PoisonError},
};

use crate::{switch::PortId, sys::PacketSocket};

/// A port mirror (SPAN) as the capture thread carries it out: copies of the frames of
/// `from` in directions `dirs` are sent out of port `to` (interface `to_ifindex`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorSink {
    /// Its name.
    pub name: String,
    /// The mirrored ports.
    pub from: Vec<PortId>,
    /// `datapath::tap::IN` and/or `OUT`.
    pub dirs: u8,
    /// The monitor port.
    pub to: PortId,
    /// The monitor port's interface.
    pub to_ifindex: u32,
}

/// What a mirror did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MirrorCounts {
    /// Copies sent out of the monitor port.
    pub copies: u64,
    /// Copies lost: the rings were full, or the monitor port's queue.
    pub lost: u64,
}

/// Each mirror's counts by name, as the capture thread last published them.
pub type SharedCounts = Arc<Mutex<Vec<(String, MirrorCounts)>>>;

/// A mirror being carried out.
#[derive(Debug)]
pub(super) struct LiveMirror {
    pub sink: MirrorSink,
    socket: PacketSocket,
    counts: MirrorCounts,
    /// Copies that could not be sent.
    unsent: u64,
    /// The mirrored ports' ring losses when it began.
    lost_at_start: u64,
}

impl LiveMirror {
    /// Opens the monitor port's socket; `lost_now`: the mirrored ports' ring losses.
    pub fn open(sink: MirrorSink, lost_now: u64) -> io::Result<Self> {
        Ok(Self {
            socket: PacketSocket::open(sink.to_ifindex)?,
            sink,
            counts: MirrorCounts::default(),
            unsent: 0,
            lost_at_start: lost_now,
        })
    }

    /// Whether it copies `port`'s frames in direction `dir`.
    pub fn takes(&self, port: PortId, dir: u8) -> bool {
        self.sink.dirs & dir != 0 && self.sink.from.contains(&port)
    }

    /// Sends a copy of `frame` out of the monitor port.
    pub fn send(&mut self, frame: &[u8]) {
        match self.socket.try_send(frame) {
            Ok(()) => self.counts.copies += 1,
            Err(_) => self.unsent += 1,
        }
    }

    /// Its counts, the mirrored ports' ring losses being `lost_now`.
    pub fn counts(&self, lost_now: u64) -> MirrorCounts {
        MirrorCounts {
            copies: self.counts.copies,
            lost: self.unsent + lost_now.saturating_sub(self.lost_at_start),
        }
    }
}

/// Publishes each mirror's counts for [`super::Captures::mirror_counts`].
pub(super) fn publish(shared: &SharedCounts, counts: Vec<(String, MirrorCounts)>) {
    *shared.lock().unwrap_or_else(PoisonError::into_inner) = counts;
}
