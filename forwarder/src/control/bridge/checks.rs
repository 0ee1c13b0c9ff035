//! Checks of a configuration and a port against what hairpin can carry: what can be
//! told without the kernel, the workers a configuration asks for, the largest frame a
//! port takes and the warning when its MTU is more.
use std::sync::Arc;

use super::{BridgeError, refused};
use crate::{
    control::{
        config::{BridgeConfig, MAX_FDB_SIZE},
        port::Interface,
    },
    datapath::{
        DatapathError,
        xsk::{HEADROOM, MAX_CHAIN},
    },
    switch::{Fdb, GROUP_FWD_RESTRICTED, MAX_PORTS, PortPolicy, PortSet, Tables},
    wire::{ETHERNET_HEADER_LEN, Mac, dot1q},
};

/// Checks what can be checked of a configuration without the kernel.
pub fn check_config(config: &BridgeConfig) -> Result<(), BridgeError> {
    if config.ports.len() > MAX_PORTS {
        return Err(refused(format!(
            "{} ports given; hairpin serves at most {MAX_PORTS}",
            config.ports.len()
        )));
    }
    let mut statics: Vec<(Mac, &str)> = Vec::new();
    for (i, p) in config.ports.iter().enumerate() {
        if config.ports[..i].iter().any(|q| q.name == p.name) {
            return Err(refused(format!("port {} is given twice", p.name)));
        }
        for &mac in &p.static_macs {
            // The same MAC twice on one port is one station, as `port add` takes it.
            if let Some((_, other)) = statics
                .iter()
                .find(|&&(m, owner)| m == mac && owner != p.name)
            {
                return Err(refused(format!(
                    "static MAC {mac} is given on ports {other} and {}: one station lives on one port",
                    p.name
                )));
            }
            statics.push((mac, &p.name));
        }
    }
    if config.group_fwd_mask & GROUP_FWD_RESTRICTED != 0 {
        return Err(refused(format!(
            "group_fwd_mask {:#06x}: pause (bit 1) and LACP/slow protocols (bit 2) belong to \
             one link and are never relayed",
            config.group_fwd_mask
        )));
    }
    if config.fdb_capacity == 0 || config.fdb_capacity > MAX_FDB_SIZE {
        return Err(refused(format!(
            "MAC table size {}: give 1 to {MAX_FDB_SIZE} entries",
            config.fdb_capacity
        )));
    }
    if config.fdb_max_age == 0 {
        return Err(refused(
            "MAC table age 0: learned entries would be gone before their first reply; give 1 second or more",
        ));
    }
    let slots: Vec<Option<PortPolicy>> = config
        .ports
        .iter()
        .map(|p| Some(p.policy.clone()))
        .collect();
    Tables::new(
        config.mode,
        &slots,
        PortSet::EMPTY,
        Arc::new(Fdb::with_capacity(1)),
    )?;
    super::mirror::check_config_mirrors(config)
}

/// Workers to run: `--queues`, or the most RX queues any port has (at least one).
pub(super) fn worker_count(
    config: &BridgeConfig,
    ifaces: &[Interface],
) -> Result<usize, BridgeError> {
    let most = ifaces.iter().map(|p| p.rx_queues).max().unwrap_or(1);
    let queues = config.queues.unwrap_or(most);
    if queues == 0 || queues > hairpin_common::MAX_QUEUES {
        return Err(refused(format!(
            "--queues {queues}: give 1 to {}",
            hairpin_common::MAX_QUEUES
        )));
    }
    if !ifaces.is_empty() && queues > most {
        return Err(refused(format!(
            "--queues {queues}: no port has that many RX queues (the most is {most})"
        )));
    }
    if let Some(p) = ifaces.iter().find(|p| p.rx_queues > queues) {
        return Err(DatapathError::UnservedQueues {
            port: p.name.clone(),
            has: p.rx_queues,
            workers: queues as usize,
        }
        .into());
    }
    Ok(queues as usize)
}

/// The largest frame (Ethernet header included, FCS not) hairpin carries through a
/// port whose frames take at most `max_chain` UMEM frames ([`MAX_CHAIN`] in copy mode
/// with multi-buffer, a zero-copy driver's own limit, else one).
pub fn largest_frame(frame_size: u32, max_chain: usize) -> u32 {
    max_chain as u32 * (frame_size - HEADROOM)
}

/// What to tell the operator when port `name`'s MTU is more than hairpin carries on it,
/// if it is.
pub(super) fn mtu_warning(
    name: &str,
    mtu: u32,
    frame_size: u32,
    max_chain: usize,
    zero_copy: bool,
) -> Option<String> {
    let largest = largest_frame(frame_size, max_chain);
    let carried = largest - ETHERNET_HEADER_LEN as u32;
    if mtu <= carried {
        return None;
    }
    let (why, counted) = if max_chain > 1 {
        let whose = if zero_copy && max_chain < MAX_CHAIN {
            " (its driver's zero-copy limit)"
        } else {
            ""
        };
        (
            format!("a frame takes at most {max_chain} UMEM frames of {frame_size} bytes{whose}"),
            "oversize",
        )
    } else if zero_copy {
        (
            format!(
                "its driver takes no multi-buffer frames zero-copy: one UMEM frame of \
                 {frame_size} bytes (--frame-size 4096 carries more, --zero-copy off all)"
            ),
            "kernel_rx_dropped",
        )
    } else {
        (
            format!(
                "this kernel has no AF_XDP multi-buffer (Linux 6.6): one UMEM frame of \
                 {frame_size} bytes"
            ),
            "kernel_rx_dropped",
        )
    };
    Some(format!(
        "{name}: MTU {mtu} is more than hairpin carries ({why}): the largest frame that passes \
         is {largest} bytes (MTU {carried}, {} with a VLAN tag); longer ones are dropped and \
         counted as {counted}",
        carried - dot1q::TAG_LEN as u32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_frame_is_a_whole_chain_of_umem_frames_or_one() {
        assert_eq!(largest_frame(2048, 1), 1792);
        assert_eq!(largest_frame(2048, MAX_CHAIN), 16 * 1792);
        assert_eq!(largest_frame(4096, MAX_CHAIN), 16 * 3840);
        assert_eq!(largest_frame(4096, 5), 5 * 3840);
    }

    #[test]
    fn an_mtu_over_what_passes_is_told_with_the_largest_frame_and_why() {
        // MTU 9000 with multi-buffer sockets: carried, no word.
        assert_eq!(mtu_warning("p0", 9000, 2048, MAX_CHAIN, false), None);
        assert_eq!(mtu_warning("p0", 1778, 2048, 1, false), None);
        // One byte over one UMEM frame, copy mode on an old kernel.
        let w = mtu_warning("p0", 1779, 2048, 1, false).unwrap();
        assert!(
            w.starts_with("p0: MTU 1779 is more than hairpin carries"),
            "{w}"
        );
        assert!(
            w.contains("largest frame that passes is 1792 bytes (MTU 1778, 1774 with a VLAN tag)"),
            "{w}"
        );
        assert!(
            w.contains("no AF_XDP multi-buffer") && w.ends_with("kernel_rx_dropped"),
            "{w}"
        );
        // Zero-copy: says how to carry more.
        let w = mtu_warning("eth1", 9000, 2048, 1, true).unwrap();
        assert!(
            w.contains("zero-copy") && w.contains("--zero-copy off"),
            "{w}"
        );
        // Past a whole chain.
        let w = mtu_warning("p1", 65000, 2048, MAX_CHAIN, false).unwrap();
        assert!(w.contains("28672 bytes") && w.ends_with("oversize"), "{w}");
        // A zero-copy driver that joins three buffers: 9000 does not fit in 2048s.
        let w = mtu_warning("eth2", 9000, 2048, 3, true).unwrap();
        assert!(
            w.contains("at most 3 UMEM frames") && w.contains("zero-copy limit"),
            "{w}"
        );
        assert_eq!(mtu_warning("eth2", 9000, 4096, 3, true), None);
    }
}
