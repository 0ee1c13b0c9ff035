//! The IP source guard's maps, as the XDP program and hairpin write and read them: two
//! longest-prefix-match tries, keyed by the port's slot (big-endian, so that a slot is
//! the first 32 bits every key of the port shares) and then the address, and a per-CPU
//! count of the frames the fast path dropped.
use super::MAX_PORTS;

/// Prefixes one port's IP source guard may list (`allow_ip`).
pub const MAX_ALLOWED_IPS: u32 = 64;

/// Entries of each trie: every port's whole list, whatever its family.
pub const ENTRIES: u32 = MAX_PORTS * MAX_ALLOWED_IPS;

/// The data of port `slot`'s IPv4 key for `addr` (network order).
#[inline(always)]
pub const fn v4_key(slot: u32, addr: [u8; 4]) -> [u8; 8] {
    let s = slot.to_be_bytes();
    [s[0], s[1], s[2], s[3], addr[0], addr[1], addr[2], addr[3]]
}

/// The data of port `slot`'s IPv6 key for `addr` (network order).
#[inline(always)]
pub const fn v6_key(slot: u32, addr: [u8; 16]) -> [u8; 20] {
    let s = slot.to_be_bytes();
    let mut key = [0u8; 20];
    key[0] = s[0];
    key[1] = s[1];
    key[2] = s[2];
    key[3] = s[3];
    let mut i = 0;
    while i < 16 {
        key[4 + i] = addr[i];
        i += 1;
    }
    key
}

/// The bits of a key that a prefix of `len` bits covers: the slot's 32, then the
/// prefix's. A lookup asks with every bit (`prefix_len(32)` or `prefix_len(128)`).
#[inline(always)]
pub const fn prefix_len(len: u8) -> u32 {
    32 + len as u32
}

/// Whether IPv6 next header `next` is ICMPv6 or an extension header the workers'
/// guard walks (hop-by-hop, routing, fragment, AH, destination options, mobility,
/// HIP, shim6, the experimental two): behind one, a neighbour discovery message may
/// lie, so the fast path leaves a guarded port's frame to the workers.
#[inline(always)]
pub const fn workers_read(next: u8) -> bool {
    matches!(
        next,
        0 | 43 | 44 | 51 | 58 | 60 | 135 | 139 | 140 | 253 | 254
    )
}

/// Frames of one port the fast path's guard dropped, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// Frames.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_key_starts_with_its_slot_so_a_prefix_never_covers_another_port() {
        assert_eq!(v4_key(0x0102, [10, 0, 0, 5]), [0, 0, 1, 2, 10, 0, 0, 5]);
        let mut addr = [0u8; 16];
        addr[0] = 0xfd;
        addr[15] = 5;
        let key = v6_key(7, addr);
        assert_eq!(key[..4], [0, 0, 0, 7]);
        assert_eq!(key[4..], addr);
        assert_eq!(prefix_len(24), 56);
        assert_eq!(prefix_len(0), 32, "a /0 still matches only its own port");
    }
}
