//! Spend counters: today's total, and one logical call's total across its attempts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::Usd;

const SECS_PER_DAY: u64 = 86_400;

/// How long the loggers go without looking at the wall clock for a new day: a suspended
/// host or a clock step is noticed within this.
const WALL_CLOCK_EVERY: Duration = Duration::from_secs(60);

/// Spend since UTC midnight, lock-free; it starts again at zero on the first call of a new day.
#[derive(Debug)]
pub struct DailySpend {
    day: AtomicU64,
    picos: AtomicU64,
    /// Of `picos`, what was charged at attempts' worst case (no usage reported).
    worst_picos: AtomicU64,
    /// When the loggers next look at the wall clock, in nanoseconds after `epoch` on the
    /// monotonic clock they already read: the next midnight, or a minute, whichever is first.
    check_at: AtomicU64,
    epoch: Instant,
}

impl Default for DailySpend {
    fn default() -> Self {
        Self {
            day: AtomicU64::new(0),
            picos: AtomicU64::new(0),
            worst_picos: AtomicU64::new(0),
            check_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl DailySpend {
    fn today() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / SECS_PER_DAY)
    }

    /// Adds `cost` to today's spend; returns the new total.
    pub fn add(&self, cost: Usd) -> Usd {
        self.roll(Self::today());
        self.add_unrolled(cost, false)
    }

    /// Spend so far today.
    pub fn total(&self) -> Usd {
        self.roll(Self::today());
        Usd::from_picos(self.picos.load(Ordering::Acquire))
    }

    /// Of today's spend, what was charged at attempts' worst case because no usage was
    /// reported (timeouts, callers that left, 2xx answers that said nothing): the rest is
    /// what the providers reported or the price table made of their usage.
    pub fn worst_case(&self) -> Usd {
        self.roll(Self::today());
        Usd::from_picos(self.worst_picos.load(Ordering::Acquire))
    }

    /// [`add`](Self::add) for a logger that has just read the monotonic clock (`now`): the
    /// wall clock is read only when a new day may have begun, or a minute has passed.
    pub(crate) fn add_at(&self, now: Instant, cost: Usd, worst: bool) -> Usd {
        self.roll_at(now);
        self.add_unrolled(cost, worst)
    }

    /// [`total`](Self::total), as [`add_at`](Self::add_at) reads the clock.
    pub(crate) fn total_at(&self, now: Instant) -> Usd {
        self.roll_at(now);
        Usd::from_picos(self.picos.load(Ordering::Acquire))
    }

    fn add_unrolled(&self, cost: Usd, worst: bool) -> Usd {
        if worst {
            self.worst_picos.fetch_add(cost.picos(), Ordering::AcqRel);
        }
        let total = self.picos.fetch_add(cost.picos(), Ordering::AcqRel);
        Usd::from_picos(total.saturating_add(cost.picos()))
    }

    fn roll_at(&self, now: Instant) {
        let at =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        if at < self.check_at.load(Ordering::Acquire) {
            return;
        }
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.roll(wall.as_secs() / SECS_PER_DAY);
        let day = Duration::from_secs(SECS_PER_DAY);
        let into_day =
            Duration::from_nanos(u64::try_from(wall.as_nanos() % day.as_nanos()).unwrap_or(0));
        let wait = day.saturating_sub(into_day).min(WALL_CLOCK_EVERY);
        let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.check_at
            .store(at.saturating_add(wait), Ordering::Release);
    }

    fn roll(&self, today: u64) {
        let day = self.day.load(Ordering::Acquire);
        if day != today
            && self
                .day
                .compare_exchange(day, today, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.picos.store(0, Ordering::Release);
            self.worst_picos.store(0, Ordering::Release);
        }
    }
}

/// One logical call's spend, shared by its attempts through the request's extensions: the
/// call-scope logger puts it there, and each attempt-scope logger below adds its cost.
#[derive(Debug, Clone, Default)]
pub struct CallSpend {
    inner: Arc<CallSpendInner>,
}

#[derive(Debug, Default)]
struct CallSpendInner {
    picos: AtomicU64,
    attempts_logged: AtomicBool,
    /// Today's spend as the attempt logger counted it after this call's last attempt.
    today_picos: AtomicU64,
    /// The caller's tally, when the request carried one.
    tally: Option<CostTally>,
}

impl CallSpend {
    /// A call's spend that also counts into the caller's `tally`.
    pub(crate) fn counting_into(tally: CostTally) -> Self {
        Self {
            inner: Arc::new(CallSpendInner {
                tally: Some(tally),
                ..CallSpendInner::default()
            }),
        }
    }

    /// Adds one attempt's cost.
    pub fn add(&self, cost: Usd) {
        self.inner.picos.fetch_add(cost.picos(), Ordering::AcqRel);
        self.inner.attempts_logged.store(true, Ordering::Release);
        if let Some(tally) = &self.inner.tally {
            tally.add(cost);
        }
    }

    /// The total so far.
    pub fn total(&self) -> Usd {
        Usd::from_picos(self.inner.picos.load(Ordering::Acquire))
    }

    /// Whether an attempt-scope logger added to it.
    pub fn attempts_logged(&self) -> bool {
        self.inner.attempts_logged.load(Ordering::Acquire)
    }

    /// Notes today's spend as the attempt logger counted it, for the call's log line.
    pub(crate) fn note_today(&self, today: Usd) {
        self.inner
            .today_picos
            .store(today.picos(), Ordering::Release);
    }

    /// Today's spend as the attempt logger last counted it for this call.
    pub(crate) fn today(&self) -> Usd {
        Usd::from_picos(self.inner.today_picos.load(Ordering::Acquire))
    }
}

/// What one call cost and how many provider calls it made, for its caller: put a
/// `CostTally` in a request's extensions (keeping a clone), and every attempt the stack's
/// loggers record for that call (retries, hedges, each target of a route) adds its cost,
/// as charged, to it.
///
/// Read it once the response is in hand: for an answer that is not streamed every attempt
/// has been counted by then; a stream's last attempt is counted when its body ends. Only
/// stacks with both a call-scope and an attempt-scope [`CostLogLayer`](crate::CostLogLayer)
/// count into it (the facade's do). The gateway reports it in its `x-ballast-cost-usd`
/// and `x-ballast-calls` headers.
///
/// ```
/// use ballast_cost::{CostTally, Usd};
///
/// let tally = CostTally::default();
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(tally.clone());
/// // ... the call goes through the stack ...
/// assert_eq!((tally.total(), tally.calls()), (Usd::ZERO, 0));
/// ```
#[derive(Debug, Clone, Default)]
pub struct CostTally {
    inner: Arc<TallyInner>,
}

#[derive(Debug, Default)]
struct TallyInner {
    picos: AtomicU64,
    calls: AtomicU32,
}

impl CostTally {
    fn add(&self, cost: Usd) {
        self.inner.picos.fetch_add(cost.picos(), Ordering::AcqRel);
        self.inner.calls.fetch_add(1, Ordering::AcqRel);
    }

    /// The cost counted so far, as the loggers charged it (a timed-out attempt its worst
    /// case).
    pub fn total(&self) -> Usd {
        Usd::from_picos(self.inner.picos.load(Ordering::Acquire))
    }

    /// The provider calls counted so far (attempts sent, hedges included; calls a local
    /// layer refused are not sent and not counted).
    pub fn calls(&self) -> u32 {
        self.inner.calls.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_day_starts_at_zero_and_the_wall_clock_is_read_once_a_minute_at_most() {
        let spend = DailySpend::default();
        let start = Instant::now();
        assert_eq!(
            spend.add_at(start, Usd::from_picos(5), false),
            Usd::from_picos(5)
        );
        // Pretend the day the spend was made in is long gone: within the minute the wall
        // clock is not read, so nothing rolls...
        spend.day.store(1, Ordering::Release);
        assert_eq!(
            spend.add_at(start + Duration::from_secs(59), Usd::from_picos(1), true),
            Usd::from_picos(6)
        );
        // The worst-case part is kept apart, and rolls with the day.
        assert_eq!(spend.worst_picos.load(Ordering::Acquire), 1);
        // ...a minute on it is, and the new day starts from zero.
        assert_eq!(
            spend.add_at(start + Duration::from_secs(61), Usd::from_picos(2), false),
            Usd::from_picos(2)
        );
        assert_eq!(
            spend.total_at(start + Duration::from_secs(62)),
            Usd::from_picos(2)
        );
        assert_eq!(spend.worst_picos.load(Ordering::Acquire), 0);
        assert_eq!(
            spend.total(),
            Usd::from_picos(2),
            "the same day by the wall clock"
        );
    }
}
