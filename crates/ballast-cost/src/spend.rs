//! Spend counters: today's total, and one logical call's total across its attempts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Usd;

const SECS_PER_DAY: u64 = 86_400;

/// Spend since UTC midnight, lock-free; it starts again at zero on the first call of a new day.
#[derive(Debug, Default)]
pub struct DailySpend {
    day: AtomicU64,
    picos: AtomicU64,
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
        let total = self.picos.fetch_add(cost.picos(), Ordering::AcqRel);
        Usd::from_picos(total.saturating_add(cost.picos()))
    }

    /// Spend so far today.
    pub fn total(&self) -> Usd {
        self.roll(Self::today());
        Usd::from_picos(self.picos.load(Ordering::Acquire))
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
}

impl CallSpend {
    /// Adds one attempt's cost.
    pub fn add(&self, cost: Usd) {
        self.inner.picos.fetch_add(cost.picos(), Ordering::AcqRel);
        self.inner.attempts_logged.store(true, Ordering::Release);
    }

    /// The total so far.
    pub fn total(&self) -> Usd {
        Usd::from_picos(self.inner.picos.load(Ordering::Acquire))
    }

    /// Whether an attempt-scope logger added to it.
    pub fn attempts_logged(&self) -> bool {
        self.inner.attempts_logged.load(Ordering::Acquire)
    }
}
