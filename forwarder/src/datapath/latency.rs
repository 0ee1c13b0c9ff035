//! How long frames spend inside hairpin: per-worker HdrHistograms, merged on demand.
//!
//! Each worker times every busy turn from reading its RX rings to submitting its TX
//! rings, and records it into a histogram it owns alone. About every 100 ms it folds that
//! histogram into a shared one behind a mutex and starts afresh: one lock a tenth of a
//! second, never one per frame, and only a `try_lock`: when a reader holds the lock the
//! worker keeps recording locally and folds at its next turn, so a scrape never makes a
//! worker wait. The control thread merges the shared histograms whenever it wants
//! percentiles or buckets, without stopping anyone.
use std::{
    sync::{Arc, Mutex, PoisonError, TryLockError},
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

    /// Folds what was recorded into the shared histogram, unless a reader holds it (then
    /// the next turn tries again).
    pub fn flush(&mut self, now: Instant) {
        if self.local.is_empty() {
            return;
        }
        let mut shared = match self.shared.try_lock() {
            Ok(shared) => shared,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = shared.add(&self.local);
        drop(shared);
        self.local.reset();
        self.last_flush = now;
    }
}

/// A merged histogram, read out: percentiles and every non-empty bucket, in nanoseconds.
/// It is also the control socket's `latency_ns` (hence serde).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Turns recorded.
    pub count: u64,
    /// Their total time, from the buckets (within the histogram's 0.1 % resolution).
    pub sum: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Every bucket that holds something, ascending: the highest value it stands for
    /// and how many turns fell in it. Two summaries of the same histogram taken apart
    /// in time subtract bucket by bucket into the histogram of the interval
    /// ([`Summary::since`]).
    pub buckets: Vec<(u64, u64)>,
}

impl Summary {
    /// Reads `h`.
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let buckets: Vec<(u64, u64)> = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        Self {
            count: h.len(),
            sum: buckets
                .iter()
                .map(|&(v, n)| v.saturating_mul(n))
                .fold(0, u64::saturating_add),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            buckets,
        }
    }

    /// What was recorded after `earlier`, an earlier summary of the same histograms:
    /// the interval's own percentiles, as `hairpin top` shows them.
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let before: std::collections::HashMap<u64, u64> = earlier.buckets.iter().copied().collect();
        let mut h = new_histogram();
        for &(value, count) in &self.buckets {
            let n = count.saturating_sub(before.get(&value).copied().unwrap_or(0));
            if n > 0 {
                let _ = h.record_n(value, n);
            }
        }
        Self::of(&h)
    }
}

/// Merges `histograms` and reads them out.
pub fn merge(histograms: &[SharedHistogram]) -> Summary {
    let mut total = new_histogram();
    for h in histograms {
        let h = h.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = total.add(&*h);
    }
    Summary::of(&total)
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
        let sum: u64 = (1..=1000).map(|ns| ns * 1000).sum::<u64>() + 1000 + 5_000_000;
        assert!(p.sum.abs_diff(sum) < sum / 500, "{} vs {sum}", p.sum);
        assert_eq!(p.buckets.iter().map(|b| b.1).sum::<u64>(), p.count);
    }

    #[test]
    fn a_later_summary_minus_an_earlier_one_is_the_interval() {
        let h = shared();
        let mut r = Recorder::new(Arc::clone(&h));
        let t0 = Instant::now();
        for _ in 0..1000 {
            r.record(2_000, t0);
        }
        r.flush(t0);
        let before = merge(std::slice::from_ref(&h));
        for _ in 0..100 {
            r.record(50_000, t0);
        }
        r.flush(t0);
        let interval = merge(std::slice::from_ref(&h)).since(&before);
        assert_eq!(interval.count, 100);
        assert!((49_900..=50_100).contains(&interval.p50), "{interval:?}");
        assert_eq!(before.since(&before).count, 0);
    }

    #[test]
    fn a_worker_never_waits_for_a_reader() {
        let h = shared();
        let mut r = Recorder::new(Arc::clone(&h));
        let t0 = Instant::now();
        r.record(1_000, t0);
        let held = h.lock().unwrap();
        r.flush(t0); // returns at once, keeping its turns
        drop(held);
        assert_eq!(merge(std::slice::from_ref(&h)).count, 0);
        r.flush(t0);
        assert_eq!(merge(std::slice::from_ref(&h)).count, 1);
    }
}
