//! The counters of ports removed while running, kept so totals stay whole.
//!
//! Removals are summed by interface name, so a port that comes and goes (a VM
//! restarting, a pod's veth under the same name) is one row. Names are many under pod
//! churn (each pod's host-side veth has its own), so only the [`NAMES`] most recently
//! removed keep a row of their own; older ones are summed into one row named
//! [`EARLIER`]. The totals over all rows never lose a frame, and the list stays bounded.
use std::collections::VecDeque;

use crate::datapath::stats::PortQueueSnapshot;

/// Names that keep a row of their own.
pub const NAMES: usize = 256;

/// The row that sums the ports removed before the last [`NAMES`] names. Parentheses
/// keep it apart from interface names in practice (the kernel allows them, nobody
/// names a port so).
pub const EARLIER: &str = "(earlier)";

/// One row: a name, how many times a port of that name was removed, and its counters
/// summed over those removals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Departure {
    pub name: String,
    pub removals: u64,
    pub counters: PortQueueSnapshot,
}

/// The rows, most recently removed last, with the sum of older ones.
#[derive(Debug, Default)]
pub struct Departures {
    recent: VecDeque<Departure>,
    earlier: Option<Departure>,
}

impl Departures {
    /// Records that the port `name` was removed with `counters`.
    pub fn record(&mut self, name: &str, counters: &PortQueueSnapshot) {
        let mut row = match self.recent.iter().position(|d| d.name == name) {
            Some(i) => self.recent.remove(i).expect("position is in range"),
            None => Departure {
                name: name.to_owned(),
                ..Departure::default()
            },
        };
        row.removals += 1;
        row.counters.accumulate(counters);
        self.recent.push_back(row);
        if self.recent.len() > NAMES {
            let oldest = self.recent.pop_front().expect("over NAMES, so not empty");
            let earlier = self.earlier.get_or_insert_with(|| Departure {
                name: EARLIER.to_owned(),
                ..Departure::default()
            });
            earlier.removals += oldest.removals;
            earlier.counters.accumulate(&oldest.counters);
        }
    }

    /// The rows: the older ports' sum first (when there is one), then the recent names
    /// from least to most recently removed.
    pub fn rows(&self) -> impl Iterator<Item = &Departure> {
        self.earlier.iter().chain(&self.recent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(rx: u64) -> PortQueueSnapshot {
        PortQueueSnapshot {
            rx_packets: rx,
            rx_bytes: rx * 100,
            ..PortQueueSnapshot::default()
        }
    }

    #[test]
    fn a_name_removed_again_is_one_row_with_its_sums() {
        let mut d = Departures::default();
        d.record("vf1", &counted(5));
        d.record("vf2", &counted(1));
        d.record("vf1", &counted(7));
        let rows: Vec<_> = d.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].name.as_str(), rows[0].removals), ("vf2", 1));
        assert_eq!((rows[1].name.as_str(), rows[1].removals), ("vf1", 2));
        assert_eq!(rows[1].counters, counted(12));
    }

    #[test]
    fn churn_of_new_names_stays_bounded_and_loses_nothing() {
        let mut d = Departures::default();
        let churn = 10 * NAMES as u64;
        for i in 0..churn {
            d.record(&format!("veth{i:08x}"), &counted(i));
        }
        let rows: Vec<_> = d.rows().collect();
        assert_eq!(
            rows.len(),
            NAMES + 1,
            "the recent names and one for the rest"
        );
        assert_eq!(rows[0].name, EARLIER);
        assert_eq!(rows[0].removals, churn - NAMES as u64);
        assert_eq!(
            rows.last().unwrap().name,
            format!("veth{:08x}", churn - 1),
            "the latest is kept by name"
        );
        let removals: u64 = rows.iter().map(|r| r.removals).sum();
        let frames: u64 = rows.iter().map(|r| r.counters.rx_packets).sum();
        assert_eq!(removals, churn);
        assert_eq!(frames, (0..churn).sum::<u64>());
    }

    #[test]
    fn a_name_seen_again_moves_to_the_recent_end() {
        let mut d = Departures::default();
        d.record("kept", &counted(1));
        for i in 0..NAMES - 1 {
            d.record(&format!("p{i}"), &counted(0));
        }
        // "kept" is the oldest of NAMES rows; removing it again saves it from the fold.
        d.record("kept", &counted(2));
        d.record("one-more", &counted(0));
        let rows: Vec<_> = d.rows().collect();
        assert_eq!(rows[0].name, EARLIER);
        assert_eq!(rows[0].removals, 1, "p0 was folded, not kept");
        let kept = rows.iter().find(|r| r.name == "kept").unwrap();
        assert_eq!((kept.removals, kept.counters.rx_packets), (2, 3));
    }
}
