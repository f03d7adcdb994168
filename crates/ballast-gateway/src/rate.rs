//! [`KeyRate`]: a client key's share of the gateway: at most `rpm` calls a minute, with a
//! burst of ten seconds' worth, by GCRA on one atomic (no lock on the way of a call).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct KeyRate {
    epoch: Instant,
    /// Nanoseconds between calls at the steady pace.
    interval: u64,
    /// How far ahead of now the schedule may run: the burst, less one call.
    tolerance: u64,
    /// The theoretical arrival time of the next call, in nanoseconds from `epoch`.
    next: AtomicU64,
}

impl KeyRate {
    /// At most `rpm` calls a minute (above 0), `rpm / 6` at once (at least one).
    pub(crate) fn new(rpm: f64) -> Self {
        let interval = (60e9 / rpm).clamp(1.0, u64::MAX as f64) as u64;
        let burst = (rpm / 6.0).round().max(1.0) as u64;
        Self {
            epoch: Instant::now(),
            interval,
            tolerance: interval.saturating_mul(burst - 1),
            next: AtomicU64::new(0),
        }
    }

    /// Lets a call through at `now`, or says how long until one would be.
    pub(crate) fn admit(&self, now: Instant) -> Result<(), Duration> {
        let now =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let start = next.max(now);
            let ahead = start - now;
            if ahead > self.tolerance {
                return Err(Duration::from_nanos(ahead - self.tolerance));
            }
            match self.next.compare_exchange_weak(
                next,
                start.saturating_add(self.interval),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => next = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 60 a minute: ten at once, the eleventh told to wait a second; a second later one
    /// more, and after a quiet minute ten again.
    #[tokio::test(start_paused = true)]
    async fn a_burst_of_ten_seconds_then_the_pace() {
        let rate = KeyRate::new(60.0);
        let now = Instant::now();
        for i in 0..10 {
            assert_eq!(rate.admit(now), Ok(()), "call {i}");
        }
        assert_eq!(rate.admit(now), Err(Duration::from_secs(1)));
        let later = now + Duration::from_millis(400);
        assert_eq!(rate.admit(later), Err(Duration::from_millis(600)));
        let second = now + Duration::from_secs(1);
        assert_eq!(rate.admit(second), Ok(()));
        assert_eq!(rate.admit(second), Err(Duration::from_secs(1)));
        let quiet = now + Duration::from_secs(71);
        for i in 0..10 {
            assert_eq!(rate.admit(quiet), Ok(()), "after a quiet minute, call {i}");
        }
        assert!(rate.admit(quiet).is_err());
    }

    /// One a minute: one at once, the next a minute later.
    #[tokio::test(start_paused = true)]
    async fn one_a_minute() {
        let rate = KeyRate::new(1.0);
        let now = Instant::now();
        assert_eq!(rate.admit(now), Ok(()));
        assert_eq!(rate.admit(now), Err(Duration::from_secs(60)));
    }
}
