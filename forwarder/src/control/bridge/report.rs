//! What the bridge tells: its ports and their counters, the workers' and the MAC
//! table's figures, as the control protocol's types ([`super::super::protocol`]).
use super::{Bridge, Origin, largest_frame};
use crate::{
    control::protocol::{
        DepartedPort, LimitInfo, PortCounters, PortInfo, QueueCounters, Stats, WorkerStats,
    },
    datapath::{Snapshot, stats::PortQueueSnapshot},
    switch::{DropReason, Fdb, PortId, Role},
};

impl Bridge {
    /// The names of the ports added at run time.
    pub fn runtime_ports(&self) -> impl Iterator<Item = &str> {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.origin == Origin::Runtime)
            .map(|s| s.config.name.as_str())
    }

    /// Every port, by slot.
    pub fn ports(&self) -> Vec<PortInfo> {
        let snapshot = self.datapath.snapshot();
        self.port_infos(&snapshot)
    }

    fn port_infos(&self, snapshot: &Snapshot) -> Vec<PortInfo> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as PortId, s.as_ref()?)))
            .map(|(id, slot)| {
                let p = &slot.config.policy;
                let a = slot.attached.as_ref();
                let queues = since(&self.port_queues(snapshot, id), &slot.baseline);
                let total = queues
                    .iter()
                    .fold(PortQueueSnapshot::default(), |mut t, q| {
                        t.accumulate(q);
                        t
                    });
                let served = a.map_or(0, |a| a.iface.rx_queues as usize);
                PortInfo {
                    name: slot.config.name.clone(),
                    slot: id,
                    state: match a {
                        None => "absent",
                        Some(a) if a.oper_up => "up",
                        Some(_) => "down",
                    }
                    .to_owned(),
                    role: match p.role {
                        Role::Uplink => "uplink",
                        Role::Downlink => "downlink",
                    }
                    .to_owned(),
                    vlans: p.vlans.as_ref().map(ToString::to_string),
                    hairpin: p.hairpin,
                    allowed_macs: p.allowed_sources.iter().map(ToString::to_string).collect(),
                    learned_macs: self.fdb.learned_on(id),
                    max_macs: p.max_macs,
                    macs_refused: self.fdb.refused(id),
                    origin: match slot.origin {
                        Origin::Config => "config",
                        Origin::Runtime => "runtime",
                    }
                    .to_owned(),
                    ifindex: a.map(|a| a.iface.ifindex),
                    alias: a.and_then(|a| a.alias.clone()),
                    queues: a.map_or(0, |a| a.iface.rx_queues),
                    xdp: a.map(|a| a.xdp.to_string()),
                    zero_copy: a.is_some_and(|a| a.zero_copy),
                    mtu: a.map(|a| a.mtu),
                    largest_frame: a
                        .map(|a| largest_frame(self.config.datapath.frame_size, a.max_chain)),
                    counters: PortCounters::from(&total),
                    per_queue: (0u32..)
                        .zip(&queues)
                        .take(served)
                        .map(|(queue, q)| QueueCounters {
                            queue,
                            rx_packets: q.rx_packets,
                            rx_bytes: q.rx_bytes,
                            tx_packets: q.tx_packets,
                            tx_bytes: q.tx_bytes,
                            drops: q.drop_counts().map(|(_, n)| n).sum(),
                        })
                        .collect(),
                    limits: p
                        .limits
                        .in_force()
                        .into_iter()
                        .map(|(limit, r)| {
                            let info = LimitInfo {
                                rate: r.rate,
                                burst: r.burst,
                            };
                            (limit.name().to_owned(), info)
                        })
                        .collect(),
                    allowed_ips: p.allowed_ips.iter().map(ToString::to_string).collect(),
                }
            })
            .collect()
    }

    /// Every counter now.
    pub fn stats(&self) -> Stats {
        let mut s = self.datapath.snapshot();
        let latency_ns = std::mem::take(&mut s.latency);
        Stats {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            start_time_s: self.started.as_secs_f64(),
            uptime_s: self.epoch.elapsed().as_secs_f64(),
            ports: self.port_infos(&s),
            departed: self
                .departed
                .rows()
                .map(|d| DepartedPort {
                    name: d.name.clone(),
                    removals: d.removals,
                    counters: PortCounters::from(&d.counters),
                })
                .collect(),
            workers: (0..)
                .zip(&s.workers)
                .map(|(w, counters)| WorkerStats {
                    queue: w as u32,
                    core: self.datapath.cores()[w],
                    rx_frames: s.worker_rx(w),
                    tx_frames: s.per_queue.iter().map(|port| port[w].tx_packets).sum(),
                    ..WorkerStats::from(counters)
                })
                .collect(),
            cpu_hz: self.cpu_hz,
            fdb_entries: self.fdb.len(),
            fdb_capacity: self.fdb.capacity(),
            fdb_full: self.fdb.full_events(),
            fdb_moves: self.fdb.moves(),
            latency_ns,
            captures: self.captures.running(),
            mirrors: self.mirrors(),
            log_lines_dropped: crate::logging::lines_dropped(),
        }
    }

    /// The datapath's counters now, per port slot and worker.
    pub fn snapshot(&self) -> Snapshot {
        self.datapath.snapshot()
    }

    /// Port slot `id`'s counters, queue (worker) by queue: the workers' own with, when
    /// the fast path is on, what it received on the port (and flooded) and sent out of
    /// it, and what its policing, storm control and IP source guard dropped, merged in.
    /// The XDP program's counters are the slot's, not the port's: like the workers',
    /// they count from the slot's [`super::Slot::baseline`].
    pub(super) fn port_queues(&self, snapshot: &Snapshot, id: PortId) -> Vec<PortQueueSnapshot> {
        let mut queues = snapshot.port_queues(id).to_vec();
        if self.netdev.is_some() {
            let slot = u32::from(id);
            // What the fast path sent out of the port is counted per port: it is
            // reported with the first queue's.
            // Unreadable counters (never expected) count as none, as the kernel's
            // socket statistics do.
            let tx = self.steering.fast_tx(slot).unwrap_or_default();
            let mut sent = (tx.packets, tx.bytes);
            // So is what its policing dropped on the port.
            let dropped = self.steering.meter_drops(slot).unwrap_or_default();
            let mut policed = (dropped.packets, dropped.bytes);
            let dropped = self.steering.storm_drops(slot).unwrap_or_default();
            let mut storm = (dropped.packets, dropped.bytes);
            for (queue, q) in (0u32..).zip(&mut queues) {
                let rx = self.steering.queue_stats(slot, queue).unwrap_or_default();
                q.add_fast((rx.fast, rx.fast_bytes), std::mem::take(&mut sent));
                q.add_fast_drops(DropReason::Policed, std::mem::take(&mut policed));
                q.add_fast_drops(DropReason::Storm, std::mem::take(&mut storm));
                q.checksums_finished += rx.checksums_finished;
                q.fast_flood_packets += rx.fast_flood;
            }
            // What the fast path's IP source guard dropped: received and dropped, as
            // the workers count their own, under the same reason; with the first
            // queue's, as the guard counts per port.
            if let Some(first) = queues.first_mut() {
                let dropped = self.steering.guard_drops(slot).unwrap_or_default();
                first.rx_packets += dropped.packets;
                first.rx_bytes += dropped.bytes;
                first.drops[DropReason::IpSpoofed as usize] += dropped.packets;
            }
        }
        queues
    }

    /// The MAC table.
    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }

    /// The XDP program's own per-queue counters for port `name`.
    pub fn xdp_stats(&self, name: &str) -> Vec<hairpin_common::QueueStats> {
        let Some(id) = self.find(name) else {
            return Vec::new();
        };
        let queues = self
            .slot(id)
            .attached
            .as_ref()
            .map_or(0, |a| a.iface.rx_queues);
        (0..queues)
            .map(|q| {
                self.steering
                    .queue_stats(u32::from(id), q)
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// Each queue's counters since `baseline` (a queue missing there counts from zero).
pub(super) fn since(
    now: &[PortQueueSnapshot],
    baseline: &[PortQueueSnapshot],
) -> Vec<PortQueueSnapshot> {
    now.iter()
        .enumerate()
        .map(|(i, q)| q.since(baseline.get(i).unwrap_or(&PortQueueSnapshot::default())))
        .collect()
}

/// The CPU clock in Hz, as `/proc/cpuinfo` reports it (the first CPU's), to turn busy
/// time into cycles as `pmd-stats-show` reports them.
pub(super) fn cpu_hz() -> Option<u64> {
    let mhz: f64 = std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1e6) as u64)
}
