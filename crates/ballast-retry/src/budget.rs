//! [`RetryBudget`]: caps retries at a fraction of successes, shared by every clone; one per
//! provider key (host and model), so one failing model cannot spend the others' retries.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Balance units per retry. A ratio is stored in millionths of a retry, so 10% is exactly
/// 100 000 units per success and 1/3 is 333 333: no rounding lets a fraction through as a
/// whole retry (tower#857, where integer division turned a 10% budget into far more).
const UNITS_PER_RETRY: u64 = 1_000_000;

/// A budget of retries: every success deposits `ratio` of a retry, every retry withdraws one,
/// and a retry with nothing left in the budget is not made.
///
/// It starts with `reserve` retries, so a fresh process can retry before its first success,
/// and never holds more than `max_balance`, so a long quiet spell cannot bank a storm. During a
/// total outage nothing is deposited: `N` logical calls make at most `N + reserve` inner calls.
///
/// Lock-free: one atomic, updated with compare-and-swap, so a withdrawal either takes a whole
/// retry or nothing, even under contention; it is never overdrawn.
#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicU64,
    deposit: u64,
    max_balance: u64,
    ratio: f64,
}

impl RetryBudget {
    /// A budget of `ratio` retries per success (0.1 = 10%), starting with `reserve` retries
    /// and holding at most `max(max_balance, reserve)`.
    ///
    /// `ratio` is clamped to `[0, 1000]`; NaN is read as 0.
    pub fn new(ratio: f64, reserve: u32, max_balance: u32) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1000.0)
        };
        let max_balance = u64::from(max_balance.max(reserve)) * UNITS_PER_RETRY;
        Self {
            balance: AtomicU64::new(u64::from(reserve) * UNITS_PER_RETRY),
            deposit: (ratio * UNITS_PER_RETRY as f64).round() as u64,
            max_balance,
            ratio,
        }
    }

    /// Records a success.
    pub fn deposit(&self) {
        if self.deposit == 0 {
            return;
        }
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |balance| {
                (balance < self.max_balance)
                    .then(|| balance.saturating_add(self.deposit).min(self.max_balance))
            });
    }

    /// Takes one retry, or returns `false` when less than one is left.
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |balance| {
                balance.checked_sub(UNITS_PER_RETRY)
            })
            .is_ok()
    }

    /// Retries left, as a fraction (2.5 = two whole retries and half of a third).
    pub fn balance(&self) -> f64 {
        self.balance.load(Ordering::Acquire) as f64 / UNITS_PER_RETRY as f64
    }

    /// The configured ratio.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }
}

impl fmt::Display for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2} retries left ({:.0}% of successes)",
            self.balance(),
            self.ratio * 100.0
        )
    }
}

/// How many budgets a policy keeps: keys (host and model) hash into this many, so memory is
/// bounded whatever the keys; two keys share one budget with odds of 1 in 256 a pair.
pub(crate) const BUDGET_SLOTS: usize = 256;

/// The retry budgets of one policy, one per provider key: a model whose calls all fail
/// spends its own retries, not those of the models still answering. A fixed table, not a
/// map: no lock, no allocation per call, bounded memory.
pub(crate) struct Budgets {
    slots: Box<[RetryBudget]>,
    hasher: foldhash::fast::FixedState,
}

impl Budgets {
    pub(crate) fn new(ratio: f64, reserve: u32, max_balance: u32) -> Self {
        Self {
            slots: (0..BUDGET_SLOTS)
                .map(|_| RetryBudget::new(ratio, reserve, max_balance))
                .collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x5EED),
        }
    }

    /// The slot of `host` and `model`.
    pub(crate) fn slot(&self, host: &str, model: &str) -> usize {
        use std::hash::BuildHasher;
        (self.hasher.hash_one((host, model)) % BUDGET_SLOTS as u64) as usize
    }

    pub(crate) fn get(&self, slot: usize) -> &RetryBudget {
        &self.slots[slot % BUDGET_SLOTS]
    }
}

impl fmt::Debug for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budgets")
            .field("slots", &BUDGET_SLOTS)
            .field("each", &self.slots[0])
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fractional_ratios_are_exact() {
        let budget = RetryBudget::new(0.1, 0, 1000);
        for _ in 0..9 {
            budget.deposit();
        }
        assert!(
            !budget.try_withdraw(),
            "nine successes at 10% are not a retry"
        );
        budget.deposit();
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());

        let third = RetryBudget::new(1.0 / 3.0, 0, 1000);
        for _ in 0..2999 {
            third.deposit();
        }
        let mut retries = 0;
        while third.try_withdraw() {
            retries += 1;
        }
        assert_eq!(retries, 999, "2999 successes at 1/3 are 999 whole retries");
    }

    #[test]
    fn reserve_and_cap() {
        let budget = RetryBudget::new(0.5, 2, 3);
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!(budget.balance(), 3.0);
        assert_eq!(RetryBudget::new(f64::NAN, 0, 0).ratio(), 0.0);
    }

    #[test]
    fn never_overdrawn_under_contention() {
        let budget = Arc::new(RetryBudget::new(0.25, 50, 100));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let budget = Arc::clone(&budget);
                std::thread::spawn(move || {
                    let mut taken = 0u32;
                    for i in 0..10_000 {
                        if (i + t) % 2 == 0 {
                            budget.deposit();
                        } else if budget.try_withdraw() {
                            taken += 1;
                        }
                    }
                    taken
                })
            })
            .collect();
        let taken: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // 20 000 deposits at 25% = 5 000 retries, plus a reserve of 50; the cap only lowers it.
        assert!(taken <= 5_050, "taken {taken}");
        // Nothing made from nothing: what was taken and what is left never exceed what
        // came in (the cap only throws some away), and the balance keeps to its cap.
        let left = budget.balance();
        assert!(
            f64::from(taken) + left <= 5_050.0,
            "taken {taken}, left {left}"
        );
        assert!(left <= 100.0, "left {left}");
    }
}
