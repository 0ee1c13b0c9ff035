//! Drops in the log, rate-limited: the workers never log (a line per frame would stall
//! the frame path and flood the journal); they count. The control thread reads the
//! counters every [`INTERVAL`] and writes at most one line per port and reason, with
//! the count since the last line:
//!
//! ```text
//! WARN vf0: 1234 frame(s) dropped in the last 10 s: spoofed (source MAC not allowed on the port)
//! ```
//!
//! Reasons that mean trouble (hairpin or the kernel falling behind, a tenant spoofing,
//! malformed frames, no uplink) are warnings; reasons that are the bridge doing its job
//! (a frame staying on its segment, a VLAN the port does not carry, a port that is down)
//! are logged at debug level.
use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use tracing::Level;

use super::protocol::PortInfo;
use crate::{datapath::stats::SOCKET_DROPS, switch::DropReason};

/// How often drops are summed up in the log.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Reasons worth a warning, with what they mean: these of hairpin's, and every one of
/// the kernel's ([`SOCKET_DROPS`]).
const TROUBLE: [(&str, &str); 11] = [
    (DropReason::Runt.name(), "shorter than an Ethernet header"),
    (
        DropReason::BadSourceMac.name(),
        "multicast or zero source MAC",
    ),
    (
        DropReason::Spoofed.name(),
        "source MAC not allowed on the port",
    ),
    (
        DropReason::IpSpoofed.name(),
        "IP, ARP or ND address not allowed on the port",
    ),
    (
        DropReason::NoUplink.name(),
        "vepa/private mode without an uplink",
    ),
    (DropReason::TxRingFull.name(), "the egress TX ring was full"),
    (
        DropReason::HandoffFull.name(),
        "the handoff to another worker was full",
    ),
    (DropReason::NoFreeFrame.name(), "no free UMEM frame"),
    (DropReason::NoHeadroom.name(), "no room to push a VLAN tag"),
    (
        DropReason::Oversize.name(),
        "longer than hairpin carries (see the MTU warning at start)",
    ),
    (
        DropReason::Storm.name(),
        "over the port's storm control limit (a broadcast, multicast or unknown-unicast storm)",
    ),
];

/// What `reason` means, if it is worth a warning.
fn trouble(reason: &str) -> Option<&'static str> {
    TROUBLE
        .iter()
        .copied()
        .chain(SOCKET_DROPS.iter().map(|d| (d.name, d.meaning)))
        .find(|&(r, _)| r == reason)
        .map(|(_, meaning)| meaning)
}

/// Remembers what was last reported.
#[derive(Debug)]
pub struct DropLog {
    seen: HashMap<String, BTreeMap<String, u64>>,
    last: Instant,
}

impl Default for DropLog {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl DropLog {
    /// Starts counting at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            seen: HashMap::new(),
            last: now,
        }
    }

    /// Whether [`INTERVAL`] has passed since the last report.
    pub fn due(&self, now: Instant) -> bool {
        now.duration_since(self.last) >= INTERVAL
    }

    /// Writes the lines for what `ports` dropped since the last call.
    pub fn report(&mut self, ports: &[PortInfo], now: Instant) {
        for (level, line) in self.lines(ports, now) {
            if level == Level::WARN {
                tracing::warn!("{line}");
            } else {
                tracing::debug!("{line}");
            }
        }
    }

    /// The lines for what `ports` dropped since the last call, one per port and reason.
    pub fn lines(&mut self, ports: &[PortInfo], now: Instant) -> Vec<(Level, String)> {
        let secs = now.duration_since(self.last).as_secs_f64().round();
        self.last = now;
        let mut out = Vec::new();
        let mut seen = HashMap::with_capacity(ports.len());
        for port in ports {
            let before = self.seen.remove(&port.name).unwrap_or_default();
            for (reason, &count) in &port.counters.drops {
                // A count that went down is a port that was re-attached: all new.
                let new = match before.get(reason) {
                    Some(&old) if old <= count => count - old,
                    _ => count,
                };
                if new == 0 {
                    continue;
                }
                let trouble = trouble(reason);
                let level = if trouble.is_some() {
                    Level::WARN
                } else {
                    Level::DEBUG
                };
                let meaning = trouble.map_or(String::new(), |m| format!(" ({m})"));
                out.push((
                    level,
                    format!(
                        "{}: {new} frame(s) dropped in the last {secs} s: {reason}{meaning}",
                        port.name
                    ),
                ));
            }
            seen.insert(port.name.clone(), port.counters.drops.clone());
        }
        self.seen = seen;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::PortCounters;

    fn port(name: &str, drops: &[(&str, u64)]) -> PortInfo {
        PortInfo::example(
            name,
            PortCounters {
                drops: drops.iter().map(|&(r, n)| (r.to_owned(), n)).collect(),
                ..PortCounters::default()
            },
        )
    }

    #[test]
    fn one_line_per_port_and_reason_with_the_interval_count() {
        let t0 = Instant::now();
        let mut log = DropLog::new(t0);
        assert!(!log.due(t0));
        assert!(log.due(t0 + INTERVAL));
        let lines = log.lines(
            &[
                port(
                    "vf0",
                    &[(DropReason::Spoofed.name(), 1000), ("same_segment", 5)],
                ),
                port("vf1", &[]),
            ],
            t0 + INTERVAL,
        );
        assert_eq!(
            lines,
            vec![
                (
                    Level::DEBUG,
                    "vf0: 5 frame(s) dropped in the last 10 s: same_segment".to_owned()
                ),
                (
                    Level::WARN,
                    "vf0: 1000 frame(s) dropped in the last 10 s: spoofed (source MAC not allowed on the port)"
                        .to_owned()
                ),
            ]
        );
        // Only what is new is reported; nothing new, no line.
        let lines = log.lines(
            &[port(
                "vf0",
                &[(DropReason::Spoofed.name(), 1003), ("same_segment", 5)],
            )],
            t0 + 2 * INTERVAL,
        );
        assert_eq!(lines.len(), 1);
        assert!(lines[0].1.starts_with("vf0: 3 frame(s)"), "{lines:?}");
        assert!(
            log.lines(
                &[port("vf0", &[(DropReason::Spoofed.name(), 1003)])],
                t0 + 3 * INTERVAL
            )
            .is_empty()
        );
        // Counters that restarted (the port was re-attached) count from zero.
        let lines = log.lines(
            &[port("vf0", &[(DropReason::Spoofed.name(), 2)])],
            t0 + 4 * INTERVAL,
        );
        assert!(lines[0].1.starts_with("vf0: 2 frame(s)"), "{lines:?}");
    }

    #[test]
    fn the_kernels_drops_are_warnings_saying_what_they_mean() {
        let t0 = Instant::now();
        let mut log = DropLog::new(t0);
        let lines = log.lines(
            &[port("vf0", &[("kernel_fill_ring_empty", 4)])],
            t0 + INTERVAL,
        );
        assert_eq!(
            lines,
            [(
                Level::WARN,
                "vf0: 4 frame(s) dropped in the last 10 s: kernel_fill_ring_empty (the fill ring was empty: no frame to receive into)"
                    .to_owned()
            )]
        );
    }
}
