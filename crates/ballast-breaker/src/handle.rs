//! [`BreakerHandle`]: inspect and steer the breakers of a layer.

use std::sync::Arc;

use crate::registry::{DISABLED, FORCED_OPEN, NORMAL, Registry, emit};
use crate::{BreakerKey, BreakerState};

/// A handle on the breakers of one [`BreakerLayer`](crate::BreakerLayer): every service the
/// layer made shares them.
#[derive(Debug, Clone)]
pub struct BreakerHandle {
    registry: Arc<Registry>,
}

/// One breaker, as a handle sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySnapshot {
    /// Its key.
    pub key: BreakerKey,
    /// Its state (forced-open or disabled when the handle says so).
    pub state: BreakerState,
    /// Calls in the window.
    pub calls: u32,
    /// Provider failures in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow: u32,
    /// `failures / calls`, 0 when there were none.
    pub failure_rate: f64,
    /// Provider failures in a row.
    pub consecutive_failures: u32,
    /// Trips in a row since it last closed.
    pub trips: u32,
    /// Times it opened or latched since it was created.
    pub opened_total: u64,
    /// Calls refused by admission in the window (not sent).
    pub refused: u32,
    /// The share of calls admission refuses now, 0 to 1 (0 without admission).
    pub shed: f64,
    /// Calls waiting in its line for the next chance now (with [`Patience`](crate::Patience)).
    pub waiting: u32,
}

impl BreakerHandle {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// Every breaker (the overflow breaker last).
    pub fn snapshot(&self) -> Vec<KeySnapshot> {
        let now = self.registry.now();
        let mode = self.registry.mode();
        let mut out = Vec::new();
        self.registry.for_each(|breaker| {
            let totals = breaker.totals(now);
            let state = match mode {
                FORCED_OPEN => BreakerState::ForcedOpen,
                DISABLED => BreakerState::Disabled,
                _ => breaker.state(now),
            };
            out.push(KeySnapshot {
                key: breaker.key().clone(),
                state,
                calls: totals.calls,
                failures: totals.failures,
                slow: totals.slow,
                failure_rate: if totals.calls == 0 {
                    0.0
                } else {
                    f64::from(totals.failures) / f64::from(totals.calls)
                },
                consecutive_failures: breaker.consecutive_failures(),
                trips: breaker.trips(),
                opened_total: breaker.opened(),
                refused: totals.refused,
                shed: breaker.shed_share(),
                waiting: breaker.waiting.load(std::sync::atomic::Ordering::Acquire),
            });
        });
        out
    }

    /// The breaker for `host` and `model`, if it exists.
    pub fn get(&self, host: &str, model: &str) -> Option<KeySnapshot> {
        self.snapshot()
            .into_iter()
            .find(|s| s.key.host() == host && s.key.model() == model)
    }

    /// How many keys are tracked (the overflow breaker not counted).
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// Whether no key is tracked yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses every call until [`resume`](Self::resume).
    pub fn force_open(&self) {
        self.registry.set_mode(FORCED_OPEN);
        tracing::warn!(target: "ballast::breaker", "circuit breakers forced open");
    }

    /// Lets every call through, counting nothing, until [`resume`](Self::resume).
    pub fn disable(&self) {
        self.registry.set_mode(DISABLED);
        tracing::warn!(target: "ballast::breaker", "circuit breakers disabled");
    }

    /// Back to normal operation after `force_open` or `disable`.
    pub fn resume(&self) {
        self.registry.set_mode(NORMAL);
        tracing::info!(target: "ballast::breaker", "circuit breakers resumed");
    }

    /// Refuses every call to `host` and `model` until [`reset_key`](Self::reset_key)
    /// (the breaker is made if it did not exist). The other keys go on as they were.
    pub fn force_open_key(&self, host: &str, model: &str) {
        let now = self.registry.now();
        let breaker = self.registry.breaker(crate::KeyParts { host, model }, now);
        if let Some(transition) = breaker.force_open(now) {
            emit(breaker.key(), &transition);
        }
    }

    /// Closes the breaker of `host` and `model` and forgets its history, latched or forced
    /// open included; the other keys go on as they were. Returns whether it exists.
    pub fn reset_key(&self, host: &str, model: &str) -> bool {
        let now = self.registry.now();
        let mut found = false;
        self.registry.for_each(|breaker| {
            if breaker.key().host() == host && breaker.key().model() == model {
                found = true;
                if let Some(transition) = breaker.reset(now) {
                    emit(breaker.key(), &transition);
                }
            }
        });
        found
    }

    /// Closes every breaker and forgets its history, latched ones included (after the key
    /// was fixed or the account topped up).
    pub fn reset(&self) {
        let now = self.registry.now();
        self.registry.for_each(|breaker| {
            if let Some(transition) = breaker.reset(now) {
                emit(breaker.key(), &transition);
            }
        });
    }
}
