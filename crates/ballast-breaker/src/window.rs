//! The time-based sliding window: calls, failures and slow calls in fixed buckets.

use ballast_classify::window::RollingCounts;

/// Calls, failures, slow calls and refusals over the last `buckets` buckets of time: the
/// shared [`RollingCounts`], read as the breaker's [`Totals`].
#[derive(Debug)]
pub(crate) struct Window(RollingCounts<4>);

const CALLS: usize = 0;
const FAILURES: usize = 1;
const SLOW: usize = 2;
const REFUSED: usize = 3;

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
        Self(RollingCounts::new(buckets, bucket_nanos))
    }

    pub(crate) fn record(&self, now: u64, failure: bool, slow: bool) {
        let mut counts = [0; 4];
        counts[CALLS] = 1;
        counts[FAILURES] = u64::from(failure);
        counts[SLOW] = u64::from(slow);
        self.0.add(now, counts);
    }

    /// Counts a call refused by admission.
    pub(crate) fn record_refused(&self, now: u64) {
        let mut counts = [0; 4];
        counts[REFUSED] = 1;
        self.0.add(now, counts);
    }

    pub(crate) fn totals(&self, now: u64) -> Totals {
        let counts = self.0.totals(now);
        let count = |i: usize| u32::try_from(counts[i]).unwrap_or(u32::MAX);
        Totals {
            calls: count(CALLS),
            failures: count(FAILURES),
            slow: count(SLOW),
            refused: count(REFUSED),
        }
    }

    pub(crate) fn clear(&self) {
        self.0.clear();
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
