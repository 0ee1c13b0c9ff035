//! How long frames spend inside hairpin: per-worker HdrHistograms, merged on demand.
//!
//! Each worker times every busy turn from reading its RX rings to submitting its TX
//! rings, and records it into a histogram it owns alone. About every 100 ms it folds that
//! histogram into a shared one behind a mutex and starts afresh: one lock a tenth of a
//! second, never one per frame. The control thread merges the shared histograms whenever
//! it wants percentiles, without stopping anyone.
use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

/// Highest recordable latency: 10 s, in nanoseconds.
const HIGHEST_NS: u64 = 10_000_000_000;

/// Significant figures kept (0.1 % resolution).
const SIGFIG: u8 = 3;

/// How often a worker folds its histogram into the shared one.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, SIGFIG).expect("constant, valid bounds")
}

/// The shared side: what the control thread reads.
pub type SharedHistogram = Arc<Mutex<Histogram<u64>>>;

/// A new, empty shared histogram.
pub fn shared() -> SharedHistogram {
    Arc::new(Mutex::new(new_histogram()))
}

/// The worker's side.
#[derive(Debug)]
pub struct Recorder {
    local: Histogram<u64>,
    shared: SharedHistogram,
    last_flush: Instant,
}

impl Recorder {
    /// A recorder feeding `shared`.
    pub fn new(shared: SharedHistogram) -> Self {
        Self {
            local: new_histogram(),
            shared,
            last_flush: Instant::now(),
        }
    }

    /// Records one turn that took `ns` nanoseconds, and folds into the shared histogram
    /// when it is time.
    #[inline]
    pub fn record(&mut self, ns: u64, now: Instant) {
        self.local.saturating_record(ns.max(1));
        if now.duration_since(self.last_flush) >= FLUSH_EVERY {
            self.flush(now);
        }
    }

    /// Folds what was recorded into the shared histogram.
    pub fn flush(&mut self, now: Instant) {
        if self.local.is_empty() {
            return;
        }
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = shared.add(&self.local);
        drop(shared);
        self.local.reset();
        self.last_flush = now;
    }
}

/// Percentiles of a merged histogram, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Turns recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

/// Merges `histograms` and reads the percentiles.
pub fn merge(histograms: &[SharedHistogram]) -> Percentiles {
    let mut total = new_histogram();
    for h in histograms {
        let h = h.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = total.add(&*h);
    }
    if total.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: total.len(),
        p50: total.value_at_quantile(0.5),
        p99: total.value_at_quantile(0.99),
        p999: total.value_at_quantile(0.999),
        max: total.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_flush_and_merge_across_workers() {
        let (a, b) = (shared(), shared());
        let mut ra = Recorder::new(Arc::clone(&a));
        let mut rb = Recorder::new(Arc::clone(&b));
        let t0 = Instant::now();
        for ns in 1..=1000 {
            ra.record(ns * 1000, t0);
        }
        rb.record(5_000_000, t0);
        // Nothing is visible before a flush...
        assert_eq!(merge(&[Arc::clone(&a), Arc::clone(&b)]).count, 0);
        // ... and everything after, without stopping the recorders.
        ra.record(1000, t0 + FLUSH_EVERY);
        rb.flush(t0);
        let p = merge(&[a, b]);
        assert_eq!(p.count, 1002);
        assert!((499_000..=501_000).contains(&p.p50), "{p:?}");
        assert!((989_000..=993_000).contains(&p.p99), "{p:?}");
        assert!((4_990_000..=5_010_000).contains(&p.max), "{p:?}");
    }
}
