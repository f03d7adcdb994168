//! [`HintBeyondDeadline`]: the one error the retry policy makes itself.

use std::fmt;
use std::time::Duration;

use ballast_classify::Outcome;

/// The provider asked to wait longer than the call's deadline allows, so the call ended at
/// once instead of sleeping into a certain timeout.
///
/// It reaches the caller inside a [`ClassifiedError`](ballast_classify::ClassifiedError)
/// carrying the last attempt's outcome (so `Outcome::from_error` still says
/// `rate_limited`); find it in the source chain:
///
/// ```
/// # use std::time::Duration;
/// # use ballast_classify::{BoxError, ClassifiedError, Outcome, OutcomeClass};
/// # use ballast_retry::HintBeyondDeadline;
/// # fn example(error: BoxError) {
/// let source = error
///     .downcast_ref::<ClassifiedError>()
///     .and_then(|e| std::error::Error::source(e))
///     .and_then(|s| s.downcast_ref::<HintBeyondDeadline>());
/// if let Some(hint) = source {
///     println!("the provider wanted {:?}, we had {:?}", hint.asked(), hint.remaining());
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintBeyondDeadline {
    asked: Duration,
    remaining: Duration,
    attempts: u32,
    outcome: Outcome,
}

impl HintBeyondDeadline {
    pub(crate) fn new(
        asked: Duration,
        remaining: Duration,
        attempts: u32,
        outcome: Outcome,
    ) -> Self {
        Self {
            asked,
            remaining,
            attempts,
            outcome,
        }
    }

    /// How long the provider asked to wait.
    pub fn asked(&self) -> Duration {
        self.asked
    }

    /// What was left of the deadline.
    pub fn remaining(&self) -> Duration {
        self.remaining
    }

    /// Attempts made.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last attempt's outcome.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
}

impl fmt::Display for HintBeyondDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the provider asked to wait {:.1}s",
            self.asked.as_secs_f64()
        )?;
        if let Some(hint) = self.outcome.wait_hint() {
            write!(f, " ({})", hint.source().as_str())?;
        }
        write!(
            f,
            " but only {:.1}s remain of the retry deadline, after {} attempt{} ({})",
            self.remaining.as_secs_f64(),
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.outcome.class()
        )
    }
}

impl std::error::Error for HintBeyondDeadline {}
