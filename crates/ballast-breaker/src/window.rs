//! The time-based sliding window: calls, failures and slow calls in fixed buckets.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Counts over the last `buckets` buckets of time, lock-free.
///
/// A bucket is reused when its slot comes round again: the first writer of a new period
/// claims it by compare-and-swap on its period number and zeroes it. Under contention at that
/// instant a concurrent increment can be lost; the window is a health estimate, and one call
/// in a boundary race does not change a verdict.
#[derive(Debug)]
pub(crate) struct Window {
    buckets: Box<[Bucket]>,
    bucket_nanos: u64,
}

/// Counters are striped so that threads recording successes at the same time do not fight
/// over one cache line.
const STRIPES: usize = 4;

#[derive(Debug, Default)]
struct Bucket {
    /// The period this bucket counts, plus one (0: never used).
    period: AtomicU64,
    stripes: [Stripe; STRIPES],
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Stripe {
    calls: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
    refused: AtomicU32,
}

/// This thread's stripe, assigned round-robin on first use.
fn stripe_index() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static INDEX: usize = (NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES as u64) as usize;
    }
    INDEX.with(|i| *i)
}

/// What the window holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Totals {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
    /// Calls refused by admission (not sent).
    pub(crate) refused: u32,
}

impl Window {
    pub(crate) fn new(buckets: u32, bucket_nanos: u64) -> Self {
        Self {
            buckets: (0..buckets.max(1)).map(|_| Bucket::default()).collect(),
            bucket_nanos: bucket_nanos.max(1),
        }
    }

    fn period(&self, now: u64) -> u64 {
        now / self.bucket_nanos + 1
    }

    pub(crate) fn record(&self, now: u64, failure: bool, slow: bool) {
        let stripe = self.stripe(now);
        stripe.calls.fetch_add(1, Ordering::AcqRel);
        if failure {
            stripe.failures.fetch_add(1, Ordering::AcqRel);
        }
        if slow {
            stripe.slow.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Counts a call refused by admission.
    pub(crate) fn record_refused(&self, now: u64) {
        self.stripe(now).refused.fetch_add(1, Ordering::AcqRel);
    }

    /// This thread's stripe of the bucket for `now`, claimed and zeroed if its period is new.
    fn stripe(&self, now: u64) -> &Stripe {
        let period = self.period(now);
        let len = self.buckets.len() as u64;
        let bucket = &self.buckets[(period % len) as usize];
        let seen = bucket.period.load(Ordering::Acquire);
        if seen != period
            && bucket
                .period
                .compare_exchange(seen, period, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            for stripe in &bucket.stripes {
                stripe.calls.store(0, Ordering::Release);
                stripe.failures.store(0, Ordering::Release);
                stripe.slow.store(0, Ordering::Release);
                stripe.refused.store(0, Ordering::Release);
            }
        }
        &bucket.stripes[stripe_index()]
    }

    pub(crate) fn totals(&self, now: u64) -> Totals {
        let current = self.period(now);
        // Periods start at 1: 0 marks a bucket cleared (its counters are stale until reused).
        let oldest = current.saturating_sub(self.buckets.len() as u64 - 1).max(1);
        let mut totals = Totals::default();
        for bucket in self.buckets.iter() {
            let period = bucket.period.load(Ordering::Acquire);
            if period >= oldest && period <= current {
                for stripe in &bucket.stripes {
                    totals.calls += stripe.calls.load(Ordering::Acquire);
                    totals.failures += stripe.failures.load(Ordering::Acquire);
                    totals.slow += stripe.slow.load(Ordering::Acquire);
                    totals.refused += stripe.refused.load(Ordering::Acquire);
                }
            }
        }
        totals
    }

    pub(crate) fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.period.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_cleared_window_counts_nothing_from_before() {
        let window = Window::new(3, 5 * SEC);
        window.record(0, true, false);
        window.clear();
        window.record(6 * SEC, false, true);
        assert_eq!(
            window.totals(6 * SEC),
            Totals {
                calls: 1,
                failures: 0,
                slow: 1,
                refused: 0,
            }
        );
    }

    #[test]
    fn old_buckets_fall_out() {
        let window = Window::new(10, SEC);
        window.record(0, true, false);
        window.record(SEC / 2, false, true);
        window.record(9 * SEC, true, false);
        assert_eq!(
            window.totals(9 * SEC),
            Totals {
                calls: 3,
                failures: 2,
                slow: 1,
                refused: 0,
            }
        );
        // At 10 s the first bucket (0..1 s) is out of the window.
        assert_eq!(window.totals(10 * SEC).calls, 1);
        // Its slot is reused, counting from zero.
        window.record(10 * SEC, false, false);
        assert_eq!(window.totals(10 * SEC).calls, 2);
        window.clear();
        assert_eq!(window.totals(10 * SEC), Totals::default());
    }
}
