//! Types shared by hairpin's XDP program (`ebpf/`) and its user-space forwarder.
//!
//! Everything here is `#[repr(C)]` plain data with a fixed layout: the same bytes are
//! written by one side and read by the other through BPF maps. With the `user` feature
//! the map value types implement [`aya::Pod`].
#![no_std]

/// Upper bound on the ports one hairpin instance serves.
pub const MAX_PORTS: u32 = 64;

/// Upper bound on the RX queues hairpin serves per port.
pub const MAX_QUEUES: u32 = 64;

/// Most host IPv4 addresses the XDP program answers ARP for (`HOST_IPV4`).
pub const MAX_HOST_ADDRESSES: u32 = 64;

/// Entries in the per-(port, queue) maps: `XSKS` and `QUEUE_STATS`.
pub const MAX_PORT_QUEUES: u32 = MAX_PORTS * MAX_QUEUES;

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "hairpin";

/// Name of the benchmark generator's XDP program (`XDP_TX`, run in live-frames mode).
pub const GENERATOR_PROGRAM_NAME: &str = "hairpin_gen";

/// The generator sends `GEN_CONFIG[0]` runs out of this many.
pub const GEN_SHARE_ONE: u32 = 1024;

/// Map names, as the eBPF object declares them.
pub mod maps {
    /// `HashMap<u32 ifindex, PortConf>`: which ports hairpin serves.
    pub const PORTS: &str = "PORTS";
    /// `HashMap<u32, u8>`: the host's IPv4 addresses (network-order bytes as a native
    /// `u32`) whose ARP requests go to the host's stack.
    pub const HOST_IPV4: &str = "HOST_IPV4";
    /// `HashMap<[u8; 16], u8>`: the host's IPv6 addresses whose neighbour solicitations
    /// go to the host's stack.
    pub const HOST_IPV6: &str = "HOST_IPV6";
    /// `XskMap`, indexed by [`super::xsk_index`].
    pub const XSKS: &str = "XSKS";
    /// `PerCpuArray<QueueStats>`, indexed by [`super::xsk_index`].
    pub const QUEUE_STATS: &str = "QUEUE_STATS";
    /// `Array<u32>`: the generator's share of runs that transmit, out of
    /// [`super::GEN_SHARE_ONE`].
    pub const GEN_CONFIG: &str = "GEN_CONFIG";
    /// `PerCpuArray<u64>`: the generator's pacing accumulator and frames sent.
    pub const GEN_STATE: &str = "GEN_STATE";
}

/// The slot of (port, queue) in the XSKMAP and the per-queue counters.
///
/// Returns `None` when either is out of range, so no caller can index past the maps.
#[inline(always)]
pub const fn xsk_index(port_slot: u32, queue: u32) -> Option<u32> {
    if port_slot < MAX_PORTS && queue < MAX_QUEUES {
        Some(port_slot * MAX_QUEUES + queue)
    } else {
        None
    }
}

/// What the XDP program does with the frames of one port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortConf {
    /// The port's slot, `0..MAX_PORTS`: the first half of its [`xsk_index`].
    pub slot: u32,
    /// [`port_flags`] bits.
    pub flags: u32,
    /// With [`port_flags::PASS_HOST_MAC`]: frames to this destination MAC go to the
    /// host's stack instead of hairpin (the host keeps its own connectivity).
    pub host_mac: [u8; 6],
    /// Padding, kept zero.
    pub _pad: [u8; 2],
}

/// Bits of [`PortConf::flags`].
pub mod port_flags {
    /// Redirect frames into the AF_XDP socket bound to their queue (when one is).
    pub const STEER: u32 = 1 << 0;
    /// Hand frames addressed to [`super::PortConf::host_mac`], and ARP requests and IPv6
    /// neighbour solicitations for the host's addresses, to the kernel's stack.
    pub const PASS_HOST_MAC: u32 = 1 << 1;
    /// Count and drop every frame (`XDP_DROP`): the benchmark's sink.
    pub const DROP: u32 = 1 << 2;
}

/// Per-(port, queue) counters kept by the XDP program, one copy per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames the program saw on this queue.
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames redirected into the queue's AF_XDP socket.
    pub steered: u64,
    /// Frames handed to the kernel's stack (`XDP_PASS`): no socket bound, or host traffic.
    pub passed: u64,
    /// Frames dropped (`XDP_DROP`, on a port in [`port_flags::DROP`] mode).
    pub dropped: u64,
}

impl QueueStats {
    /// Adds `other` into `self`, as when summing the per-CPU copies.
    pub fn accumulate(&mut self, other: &Self) {
        self.rx_packets = self.rx_packets.wrapping_add(other.rx_packets);
        self.rx_bytes = self.rx_bytes.wrapping_add(other.rx_bytes);
        self.steered = self.steered.wrapping_add(other.steered);
        self.passed = self.passed.wrapping_add(other.passed);
        self.dropped = self.dropped.wrapping_add(other.dropped);
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `PortConf` is `repr(C)`, `Copy`, made only of integers and byte arrays, and
    // has no padding bytes the compiler could leave uninitialised (`_pad` is explicit).
    unsafe impl aya::Pod for super::PortConf {}
    // SAFETY: `QueueStats` is `repr(C)`, `Copy`, and made only of `u64`s: no padding.
    unsafe impl aya::Pod for super::QueueStats {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xsk_index_is_dense_and_bounded() {
        assert_eq!(xsk_index(0, 0), Some(0));
        assert_eq!(xsk_index(1, 0), Some(MAX_QUEUES));
        assert_eq!(
            xsk_index(MAX_PORTS - 1, MAX_QUEUES - 1),
            Some(MAX_PORT_QUEUES - 1)
        );
        assert_eq!(xsk_index(MAX_PORTS, 0), None);
        assert_eq!(xsk_index(0, MAX_QUEUES), None);
    }

    #[test]
    fn map_value_layouts_are_stable() {
        assert_eq!(core::mem::size_of::<PortConf>(), 16);
        assert_eq!(core::mem::size_of::<QueueStats>(), 40);
    }
}
