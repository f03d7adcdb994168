//! [`RollingCounts`]: counters over a rolling window of time, lock-free: the one window type
//! the breaker (calls, failures, slow, refused) and the health monitor (calls, errors,
//! latency) both count in.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters are striped so that threads counting at the same time do not fight over one
/// cache line.
const STRIPES: usize = 4;

/// `N` counters over the last `buckets` buckets of time, lock-free.
///
/// Time is nanoseconds from any fixed origin the owner chooses (its epoch, on tokio's clock).
/// A bucket is reused when its slot comes round again: the first writer of a new period
/// claims it by compare-and-swap on its period number and zeroes it. Under contention at
/// that instant a concurrent increment can be lost; a window is an estimate of health, and
/// one call in a boundary race does not change a verdict.
///
/// ```
/// use ballast_classify::window::RollingCounts;
///
/// // Calls and failures over 10 s in 1 s buckets.
/// let window = RollingCounts::<2>::new(10, 1_000_000_000);
/// window.add(0, [1, 1]);
/// window.add(500_000_000, [1, 0]);
/// assert_eq!(window.totals(9_000_000_000), [2, 1]);
/// // Ten seconds on, the first bucket has left the window.
/// assert_eq!(window.totals(10_000_000_000), [0, 0]);
/// ```
#[derive(Debug)]
pub struct RollingCounts<const N: usize> {
    buckets: Box<[Bucket<N>]>,
    bucket_nanos: u64,
}

#[derive(Debug)]
struct Bucket<const N: usize> {
    /// The period this bucket counts, plus one (0: never used, or cleared).
    period: AtomicU64,
    stripes: [Stripe<N>; STRIPES],
}

#[derive(Debug)]
#[repr(align(64))]
struct Stripe<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Bucket<N> {
    fn default() -> Self {
        Self {
            period: AtomicU64::new(0),
            stripes: std::array::from_fn(|_| Stripe(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }
}

/// This thread's stripe, assigned round-robin on first use.
fn stripe_index() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static INDEX: usize = (NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES as u64) as usize;
    }
    INDEX.with(|i| *i)
}

impl<const N: usize> RollingCounts<N> {
    /// A window of `buckets` buckets of `bucket_nanos` each (at least one of one).
    pub fn new(buckets: u32, bucket_nanos: u64) -> Self {
        Self {
            buckets: (0..buckets.max(1)).map(|_| Bucket::default()).collect(),
            bucket_nanos: bucket_nanos.max(1),
        }
    }

    fn period(&self, now: u64) -> u64 {
        now / self.bucket_nanos + 1
    }

    /// Adds `counts` at time `now` (zeros are skipped).
    pub fn add(&self, now: u64, counts: [u64; N]) {
        let period = self.period(now);
        let bucket = &self.buckets[(period % self.buckets.len() as u64) as usize];
        let seen = bucket.period.load(Ordering::Acquire);
        if seen != period
            && bucket
                .period
                .compare_exchange(seen, period, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            for stripe in &bucket.stripes {
                for counter in &stripe.0 {
                    counter.store(0, Ordering::Release);
                }
            }
        }
        let stripe = &bucket.stripes[stripe_index()];
        for (counter, count) in stripe.0.iter().zip(counts) {
            if count != 0 {
                counter.fetch_add(count, Ordering::AcqRel);
            }
        }
    }

    /// The sums over the window ending at `now`.
    pub fn totals(&self, now: u64) -> [u64; N] {
        let current = self.period(now);
        // Periods start at 1: 0 marks a bucket cleared (its counters are stale until reused).
        let oldest = current.saturating_sub(self.buckets.len() as u64 - 1).max(1);
        let mut totals = [0u64; N];
        for bucket in self.buckets.iter() {
            let period = bucket.period.load(Ordering::Acquire);
            if period >= oldest && period <= current {
                for stripe in &bucket.stripes {
                    for (total, counter) in totals.iter_mut().zip(&stripe.0) {
                        *total = total.saturating_add(counter.load(Ordering::Acquire));
                    }
                }
            }
        }
        totals
    }

    /// Forgets everything counted so far.
    pub fn clear(&self) {
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
        let window = RollingCounts::<3>::new(3, 5 * SEC);
        window.add(0, [1, 1, 0]);
        window.clear();
        window.add(6 * SEC, [1, 0, 1]);
        assert_eq!(window.totals(6 * SEC), [1, 0, 1]);
    }

    #[test]
    fn old_buckets_fall_out_and_their_slots_count_again_from_zero() {
        let window = RollingCounts::<3>::new(10, SEC);
        window.add(0, [1, 1, 0]);
        window.add(SEC / 2, [1, 0, 1]);
        window.add(9 * SEC, [1, 1, 0]);
        assert_eq!(window.totals(9 * SEC), [3, 2, 1]);
        // At 10 s the first bucket (0..1 s) is out of the window.
        assert_eq!(window.totals(10 * SEC), [1, 1, 0]);
        window.add(10 * SEC, [1, 0, 0]);
        assert_eq!(window.totals(10 * SEC), [2, 1, 0]);
        window.clear();
        assert_eq!(window.totals(10 * SEC), [0, 0, 0]);
    }

    #[test]
    fn threads_count_into_their_own_stripes_and_nothing_is_lost_within_a_bucket() {
        let window = std::sync::Arc::new(RollingCounts::<1>::new(4, SEC));
        // The period claimed before the threads start counting (a claim racing an add may
        // lose that add, as the type's doc says).
        window.add(SEC / 2, [0]);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let window = std::sync::Arc::clone(&window);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        window.add(SEC / 2, [1]);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(window.totals(SEC / 2), [40_000]);
    }
}
