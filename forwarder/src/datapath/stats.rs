//! Lock-free counters the workers write and the control thread reads, each defined
//! once, in one of the two tables below.
//!
//! Every counter has exactly one writer, the worker that owns it, so an increment is a
//! relaxed load and store (no locked read-modify-write on the frame path); readers see a
//! value at most one batch old. Each worker's block sits behind its own `Arc`, so two
//! workers never write the same cache line.
//!
//! A counter is one row of a table, `port_counters!` for a port's or
//! `worker_counters!` for a worker's (the macros are in `stats/derive.rs`). From the
//! row come the worker's atomic [`Counter`] ([`PortQueueCounters`], [`WorkerCounters`]),
//! the plain copy the control plane reads, sums and subtracts ([`PortQueueSnapshot`],
//! [`WorkerSnapshot`]), the control protocol's field ([`PortCounters`], [`WorkerStats`];
//! the JSON names are the rows' names), and, through the DTO's `ROWS`, its Prometheus
//! family and its `show stats` column. Adding a counter is adding its row here (and to
//! the tests at the bottom, which pin the JSON names, families and columns) and
//! counting it where it happens (`datapath/worker.rs`).
use std::sync::atomic::{AtomicU64, Ordering};

use super::group::MAX_UMEMS;
use crate::switch::{DropReason, MAX_PORTS, PortId};

#[macro_use]
mod derive;

port_counters! {
    counted by the workers, reported {
        /// Frames received.
        rx_packets
            metric(1, Counter, "hairpin_port_rx_packets", "Frames received on the port.")
            column(1, "rx_pkts", 12);
        /// Bytes received.
        rx_bytes
            metric(2, Counter, "hairpin_port_rx_bytes", "Bytes received on the port.")
            column(2, "rx_bytes", 14);
        /// Frames sent (put on the TX ring).
        tx_packets
            metric(3, Counter, "hairpin_port_tx_packets", "Frames sent on the port.")
            column(3, "tx_pkts", 12);
        /// Bytes sent.
        tx_bytes
            metric(4, Counter, "hairpin_port_tx_bytes", "Bytes sent on the port.")
            column(4, "tx_bytes", 14);
        /// Extra copies made to flood a frame (one per egress port beyond the first).
        flood_copies
            metric(7, Counter, "hairpin_port_flood_copies",
                "Extra copies made to flood frames received on the port.")
            column(5, "flood_cp", 9);
        /// Frames received with a TCP or UDP checksum an offload left partial, which
        /// hairpin finished (`wire::checksum`; the fast path's own are merged in).
        #[serde(default)]
        checksums_finished
            metric(8, Counter, "hairpin_port_checksums_finished",
                "Frames received on the port with a TCP or UDP checksum an offload left partial, finished by hairpin.")
            column(7, "csum_fin", 9);
        /// Large TCP segments received (an offload's, longer than the port's MTU) that
        /// hairpin cut into segments the MTU admits (`wire::segment`).
        #[serde(default)]
        segmented
            metric(9, Counter, "hairpin_port_segmented",
                "Large TCP segments received on the port (an offload's, longer than its MTU), cut by hairpin into segments the MTU admits.")
            column(8, "tso_cut", 9);
        /// Frames handed to the worker owning the egress queue.
        handoff_out
            column(6, "handoff", 9);
    }
    counted by the workers, not reported {
        /// Frames another worker handed here for this port.
        handoff_in;
    }
    dropped by the kernel, reported as drops {
        /// The kernel's drops for this socket (`XDP_STATISTICS`): frames lost because
        /// the RX ring was full (hairpin fell behind) ...
        kernel_rx_ring_full: "rx_ring_full", "the socket's RX ring was full: hairpin fell behind";
        /// ... or because the fill ring was empty (no free frame to receive into) ...
        kernel_fill_ring_empty: "fill_ring_empty", "the fill ring was empty: no frame to receive into";
        /// ... or dropped for another reason (too big for a frame, ...).
        kernel_rx_dropped: "rx_dropped", "dropped by the kernel (too big?)";
    }
    merged from the fast path, reported {
        /// Of `rx_packets`, the frames the kernel fast path forwarded (`--fast-path`;
        /// no worker saw them).
        #[serde(default)]
        fast_rx_packets
            metric(5, Counter, "hairpin_port_fast_rx_packets",
                "Of the frames received on the port, those the kernel fast path forwarded.");
        /// Of `tx_packets`, the frames the kernel fast path sent.
        #[serde(default)]
        fast_tx_packets
            metric(6, Counter, "hairpin_port_fast_tx_packets",
                "Of the frames sent on the port, those the kernel fast path sent.");
        /// Of `fast_rx_packets`, the frames the kernel fast path flooded (broadcast,
        /// multicast, unknown unicast: a copy to every port of the VLAN, each counted
        /// in that port's `fast_tx_packets`).
        #[serde(default)]
        fast_flood_packets
            metric(10, Counter, "hairpin_port_fast_flood_packets",
                "Of the frames the kernel fast path forwarded from the port, those it flooded.");
    }
    merged from the fast path, not reported {
        /// Of `rx_bytes`, those of `fast_rx_packets`.
        fast_rx_bytes;
        /// Of `tx_bytes`, those of `fast_tx_packets`.
        fast_tx_bytes;
    }
}

worker_counters! {
    /// Every counter of one worker.
    pub struct WorkerCounters {
        /// Per port, indexed by [`PortId`].
        pub ports: Vec<PortQueueCounters>,
        /// Gauges, by group ([`super::group`]): frames promised, and that may be
        /// promised in all. The control plane places new ports by them.
        pub group_promised: Vec<Counter>,
        /// See `group_promised`.
        pub group_budget: Vec<Counter>,
    }
    /// One worker's counters, as the control protocol carries them.
    pub struct WorkerStats {
        /// Its index, which is the RX queue it serves on every port.
        pub queue: u32,
        /// The core it runs on.
        pub core: usize,
        /// Frames it received (over every port).
        pub rx_frames: u64,
        /// Frames it sent (over every port).
        pub tx_frames: u64,
    }
    counted by the workers, reported {
        /// Nanoseconds spent in turns that did work (the metrics give it in seconds
        /// and cycles).
        busy_ns;
        /// Times the worker went to sleep for lack of work.
        sleeps
            metric(1, Counter, "hairpin_worker_sleeps", "Times a worker slept for lack of work.");
        /// Gauge: UMEM frames in the worker's free pool.
        free_frames
            metric(2, Gauge, "hairpin_worker_umem_free_frames", "UMEM frames in a worker's free pool.");
        /// Gauge: UMEM frames the worker owns in all.
        total_frames
            metric(6, Gauge, "hairpin_worker_umem_frames", "UMEM frames a worker owns.");
        /// Gauge: UMEM frames promised to its ports' fill rings (`datapath::budget`;
        /// each port's quota grows with its traffic and shrinks when idle).
        #[serde(default)]
        promised_frames
            metric(3, Gauge, "hairpin_worker_umem_promised_frames",
                "UMEM frames a worker promised to its ports' fill rings (quotas that grow with a port's traffic).");
        /// Gauge: UMEM frames it may promise in all (its frames less a reserve for
        /// frames in flight); a UMEM with fewer than 64 left takes no more ports.
        #[serde(default)]
        budget_frames
            metric(4, Gauge, "hairpin_worker_umem_budget_frames",
                "UMEM frames a worker may promise to fill rings in all; a UMEM with fewer than 64 left takes no more ports.");
        /// Gauge: UMEMs it has (groups, each shared by up to 32 of its ports' sockets).
        #[serde(default)]
        umems
            metric(5, Gauge, "hairpin_worker_umems", "UMEMs a worker has, each shared by up to 32 ports' sockets.");
    }
}

/// A counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Sets a gauge.
    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A reported counter of a DTO `T` ([`PortCounters`], [`WorkerStats`]), from its table.
#[derive(Debug)]
pub struct CounterRow<T> {
    /// Its name: the field's, in Rust and in JSON.
    pub name: &'static str,
    /// Reads it.
    pub get: Read<T>,
    /// Its Prometheus family, if it has one of its own.
    pub metric: Option<Metric>,
    /// Its column in `show stats`, if it has one.
    pub column: Option<Column>,
}

/// How a counter is read from its DTO `T`.
pub type Read<T> = fn(&T) -> u64;

/// A counter's Prometheus family (one sample per port, or per worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    /// Where it comes among its table's families in the exposition (lowest first).
    pub order: u8,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The family's name (a counter's without `_total`).
    pub name: &'static str,
    /// Its `# HELP` text.
    pub help: &'static str,
}

/// A Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows (until its port or worker starts over).
    Counter,
    /// A level, up or down.
    Gauge,
}

/// A counter's column in `show stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Where it comes among the columns (lowest first).
    pub order: u8,
    /// The header.
    pub header: &'static str,
    /// The width, right-aligned.
    pub width: usize,
}

/// One of the kernel's drop counters of a port's AF_XDP sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketDrop {
    /// Its name in [`PortQueueSnapshot`] and among a port's drops (`kernel_...`).
    pub name: &'static str,
    /// Its `reason` label in `hairpin_port_socket_drops`.
    pub label: &'static str,
    /// What it means, as the drop log says it.
    pub meaning: &'static str,
}

/// The rows of `rows` that have a metric, in the exposition's order.
pub fn in_metric_order<T>(rows: &[CounterRow<T>]) -> Vec<(Metric, Read<T>)> {
    let mut out: Vec<_> = rows
        .iter()
        .filter_map(|r| Some((r.metric?, r.get)))
        .collect();
    out.sort_by_key(|(m, _)| m.order);
    out
}

/// The rows of `rows` that have a `show stats` column, in the table's order.
pub fn in_column_order<T>(rows: &[CounterRow<T>]) -> Vec<(Column, Read<T>)> {
    let mut out: Vec<_> = rows
        .iter()
        .filter_map(|r| Some((r.column?, r.get)))
        .collect();
    out.sort_by_key(|(c, _)| c.order);
    out
}

impl PortQueueCounters {
    /// Counts one drop.
    #[inline]
    pub fn drop(&self, reason: DropReason) {
        self.drops[reason as usize].add(1);
    }
}

impl WorkerCounters {
    /// Counters for `ports` ports.
    pub fn new(ports: usize) -> Self {
        assert!(ports <= MAX_PORTS);
        Self {
            ports: (0..ports).map(|_| PortQueueCounters::default()).collect(),
            group_promised: (0..MAX_UMEMS).map(|_| Counter::default()).collect(),
            group_budget: (0..MAX_UMEMS).map(|_| Counter::default()).collect(),
            ..Self::default()
        }
    }

    /// The counters of `port`.
    #[inline]
    pub fn port(&self, port: PortId) -> &PortQueueCounters {
        &self.ports[port as usize]
    }
}

impl PortQueueSnapshot {
    /// Merges in what the kernel fast path received (`rx`) and sent (`tx`), each as
    /// (frames, bytes): counted in the totals and apart.
    pub fn add_fast(&mut self, rx: (u64, u64), tx: (u64, u64)) {
        self.rx_packets += rx.0;
        self.rx_bytes += rx.1;
        self.tx_packets += tx.0;
        self.tx_bytes += tx.1;
        self.fast_rx_packets += rx.0;
        self.fast_rx_bytes += rx.1;
        self.fast_tx_packets += tx.0;
        self.fast_tx_bytes += tx.1;
    }

    /// Merges in `(frames, bytes)` the kernel fast path received and dropped for
    /// `reason` (its policing): received, and dropped, as the workers count theirs.
    pub fn add_fast_drops(&mut self, reason: DropReason, dropped: (u64, u64)) {
        self.rx_packets += dropped.0;
        self.rx_bytes += dropped.1;
        self.drops[reason as usize] += dropped.0;
    }

    /// Every drop counter, hairpin's and then the kernel's, by name.
    pub fn drop_counts(&self) -> impl Iterator<Item = (&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| r.name())
            .zip(self.drops)
            .chain(self.socket_drop_counts())
    }

    /// All drops hairpin made (not counting the kernel's).
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// The drops that happened, hairpin's and then the kernel's, as `reason=count` pairs.
    pub fn drop_summary(&self) -> String {
        let parts: Vec<String> = self
            .drop_counts()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join(",")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_sum_and_summarise_drops() {
        let c = WorkerCounters::new(2);
        c.port(1).rx_packets.add(3);
        c.port(1).drop(DropReason::Runt);
        c.port(1).drop(DropReason::Runt);
        c.port(1).drop(DropReason::TxRingFull);
        c.port(1).kernel_rx_ring_full.set(7);
        let mut total = PortQueueSnapshot::of(c.port(1));
        total.accumulate(&PortQueueSnapshot::of(c.port(1)));
        assert_eq!(total.rx_packets, 6);
        assert_eq!(total.dropped(), 6);
        assert_eq!(
            total.drop_summary(),
            "runt=4,tx_ring_full=2,kernel_rx_ring_full=14"
        );
        assert_eq!(PortQueueSnapshot::of(c.port(0)).drop_summary(), "-");
    }

    /// Every counter read from the atomic block, summed, subtracted and put in the DTO
    /// lands in its own field: the derived types agree with the table.
    #[test]
    fn every_counter_goes_from_the_workers_to_the_wire() {
        let c = WorkerCounters::new(1);
        let port = c.port(0);
        let names: Vec<&str> = port.counters().map(|(name, _)| name).collect();
        for (i, (_, counter)) in (1..).zip(port.counters()) {
            counter.set(i);
        }
        port.drop(DropReason::Spoofed);
        let once = PortQueueSnapshot::of(port);
        let mut twice = once;
        twice.accumulate(&once);
        assert_eq!(twice.since(&once), once);
        for (name, value) in once.values() {
            let expected = names.iter().position(|&n| n == name).map_or(0, |i| i + 1);
            assert_eq!(value, expected as u64, "{name}");
        }
        // What only the fast path counts is merged in later.
        let fast = [
            "fast_rx_packets",
            "fast_tx_packets",
            "fast_flood_packets",
            "fast_rx_bytes",
            "fast_tx_bytes",
        ];
        assert_eq!(once.values().count(), names.len() + fast.len());
        let dto = PortCounters::from(&once);
        for row in PortCounters::ROWS {
            let value = once.values().find(|&(n, _)| n == row.name).unwrap().1;
            assert_eq!((row.get)(&dto), value, "{}", row.name);
        }
        let drops: Vec<(&str, u64)> = dto.drops.iter().map(|(r, &n)| (r.as_str(), n)).collect();
        let kernel = |name| (name, once.values().find(|&(n, _)| n == name).unwrap().1);
        assert_eq!(
            drops,
            [
                kernel("kernel_fill_ring_empty"),
                kernel("kernel_rx_dropped"),
                kernel("kernel_rx_ring_full"),
                ("spoofed", 1),
            ]
        );
        let w = WorkerSnapshot::of(&c);
        c.sleeps.add(2);
        c.umems.set(3);
        assert_eq!(w, WorkerSnapshot::default());
        let w = WorkerStats::from(&WorkerSnapshot::of(&c));
        assert_eq!((w.sleeps, w.umems, w.busy_ns), (2, 3, 0));
    }

    /// The control protocol's names and their order, which clients and the privileged
    /// tests read: the DTO has one field per reported row, and the drops.
    #[test]
    fn port_counters_json_names_are_the_tables_and_do_not_change() {
        let json = serde_json::to_string(&PortCounters::default()).unwrap();
        assert_eq!(
            json,
            r#"{"rx_packets":0,"rx_bytes":0,"tx_packets":0,"tx_bytes":0,"flood_copies":0,"checksums_finished":0,"segmented":0,"handoff_out":0,"fast_rx_packets":0,"fast_tx_packets":0,"fast_flood_packets":0,"drops":{}}"#
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut rows: Vec<&str> = PortCounters::ROWS.iter().map(|r| r.name).collect();
        rows.push("drops");
        // (`Value` sorts its keys; the string above pins their order.)
        rows.sort_unstable();
        assert_eq!(keys, rows);
        // Fields added after the first release may be missing from an older server's.
        let old: PortCounters = serde_json::from_str(
            r#"{"rx_packets":1,"rx_bytes":2,"tx_packets":3,"tx_bytes":4,"flood_copies":5,"handoff_out":6,"drops":{}}"#,
        )
        .unwrap();
        assert_eq!((old.handoff_out, old.segmented), (6, 0));
        assert!(serde_json::from_str::<PortCounters>(r#"{"drops":{}}"#).is_err());
        let names: Vec<&str> = SOCKET_DROPS.iter().map(|d| d.name).collect();
        assert_eq!(
            names,
            [
                "kernel_rx_ring_full",
                "kernel_fill_ring_empty",
                "kernel_rx_dropped"
            ]
        );
    }

    #[test]
    fn worker_stats_json_names_are_the_tables_and_do_not_change() {
        let json = serde_json::to_string(&WorkerStats::default()).unwrap();
        assert_eq!(
            json,
            r#"{"queue":0,"core":0,"rx_frames":0,"tx_frames":0,"busy_ns":0,"sleeps":0,"free_frames":0,"total_frames":0,"promised_frames":0,"budget_frames":0,"umems":0}"#
        );
        let rows: Vec<&str> = WorkerStats::ROWS.iter().map(|r| r.name).collect();
        assert_eq!(
            rows,
            [
                "busy_ns",
                "sleeps",
                "free_frames",
                "total_frames",
                "promised_frames",
                "budget_frames",
                "umems"
            ]
        );
    }

    /// The families and `show stats` columns the tables make, in their order: the
    /// README, dashboards and the privileged tests name them.
    #[test]
    fn the_tables_metrics_and_columns_do_not_change() {
        fn metrics<T>(rows: &[CounterRow<T>]) -> Vec<(&'static str, MetricKind)> {
            in_metric_order(rows)
                .iter()
                .map(|(m, _)| (m.name, m.kind))
                .collect()
        }
        use MetricKind::{Counter, Gauge};
        assert_eq!(
            metrics(PortCounters::ROWS),
            [
                ("hairpin_port_rx_packets", Counter),
                ("hairpin_port_rx_bytes", Counter),
                ("hairpin_port_tx_packets", Counter),
                ("hairpin_port_tx_bytes", Counter),
                ("hairpin_port_fast_rx_packets", Counter),
                ("hairpin_port_fast_tx_packets", Counter),
                ("hairpin_port_flood_copies", Counter),
                ("hairpin_port_checksums_finished", Counter),
                ("hairpin_port_segmented", Counter),
                ("hairpin_port_fast_flood_packets", Counter),
            ]
        );
        assert_eq!(
            metrics(WorkerStats::ROWS),
            [
                ("hairpin_worker_sleeps", Counter),
                ("hairpin_worker_umem_free_frames", Gauge),
                ("hairpin_worker_umem_promised_frames", Gauge),
                ("hairpin_worker_umem_budget_frames", Gauge),
                ("hairpin_worker_umems", Gauge),
                ("hairpin_worker_umem_frames", Gauge),
            ]
        );
        let columns: Vec<(&str, usize)> = in_column_order(PortCounters::ROWS)
            .iter()
            .map(|(c, _)| (c.header, c.width))
            .collect();
        assert_eq!(
            columns,
            [
                ("rx_pkts", 12),
                ("rx_bytes", 14),
                ("tx_pkts", 12),
                ("tx_bytes", 14),
                ("flood_cp", 9),
                ("handoff", 9),
                ("csum_fin", 9),
                ("tso_cut", 9),
            ]
        );
        let labels: Vec<&str> = SOCKET_DROPS.iter().map(|d| d.label).collect();
        assert_eq!(labels, ["rx_ring_full", "fill_ring_empty", "rx_dropped"]);
    }

    /// Orders are unique, so the exposition and the columns have one order.
    #[test]
    fn metric_and_column_orders_are_unique() {
        fn unique(orders: impl Iterator<Item = u8>) -> bool {
            let mut orders: Vec<u8> = orders.collect();
            let n = orders.len();
            orders.sort_unstable();
            orders.dedup();
            orders.len() == n
        }
        assert!(unique(
            PortCounters::ROWS
                .iter()
                .filter_map(|r| r.metric)
                .map(|m| m.order)
        ));
        assert!(unique(
            PortCounters::ROWS
                .iter()
                .filter_map(|r| r.column)
                .map(|c| c.order)
        ));
        assert!(unique(
            WorkerStats::ROWS
                .iter()
                .filter_map(|r| r.metric)
                .map(|m| m.order)
        ));
        assert!(WorkerStats::ROWS.iter().all(|r| r.column.is_none()));
    }
}
