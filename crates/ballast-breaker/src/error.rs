//! [`BreakerOpen`]: the error of a call the breaker refused.

use std::fmt;
use std::time::Duration;

use ballast_classify::{ClassifiedError, HintSource, Outcome, OutcomeClass, WaitHint};

use crate::{BreakerKey, BreakerState};

/// A call the breaker refused without sending it.
///
/// It reaches the caller inside a [`ClassifiedError`] of class
/// [`CircuitOpen`](OutcomeClass::CircuitOpen), whose wait hint is the time until the next
/// probe, so `Outcome::from_error` knows it and the retry policy does not hammer it (the class
/// is not retried by default; turn it on and the policy waits for the probe when its deadline
/// allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerOpen {
    key: BreakerKey,
    state: BreakerState,
    retry_in: Option<Duration>,
}

impl BreakerOpen {
    pub(crate) fn new(key: BreakerKey, state: BreakerState, retry_in: Option<Duration>) -> Self {
        Self {
            key,
            state,
            retry_in,
        }
    }

    /// The breaker's key.
    pub fn key(&self) -> &BreakerKey {
        &self.key
    }

    /// The breaker's state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// When to come back: the time to the next probe while open, the configured
    /// `half_open_wait` while the probes are out; `None` while latched or forced open.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_in
    }

    /// This refusal as the [`ClassifiedError`] the breaker returns.
    pub fn into_classified(self) -> ClassifiedError {
        let hint = self
            .retry_in
            .map(|d| WaitHint::new(d, HintSource::CircuitBreaker));
        let outcome = Outcome::new(OutcomeClass::CircuitOpen).with_wait_hint(hint);
        ClassifiedError::new(outcome, Some(Box::new(self)))
    }
}

impl fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker for {} is {}", self.key, self.state)
    }
}

impl std::error::Error for BreakerOpen {}
