//! [`Throttled`]: the typed refusal of a call that could not be given a turn in time.

use std::fmt;
use std::time::Duration;

use ballast_classify::{ClassifiedError, HintSource, Outcome, OutcomeClass, WaitHint};

use crate::limiter::Refusal;

/// A call the throttle refused without sending: too many calls were waiting, or its turn
/// was further off than the longest wait allowed. It travels inside a [`ClassifiedError`] of
/// class [`OutcomeClass::Throttled`] whose wait hint is when its turn would have come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    wait: Duration,
    queue_full: bool,
}

impl Throttled {
    pub(crate) fn from_refusal(refusal: Refusal) -> Self {
        match refusal {
            Refusal::QueueFull(wait) => Self {
                wait,
                queue_full: true,
            },
            Refusal::TooLong(wait) => Self {
                wait,
                queue_full: false,
            },
        }
    }

    /// How long the call would have waited for its turn.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Whether it was refused because the queue was full (else: the wait was too long).
    pub fn queue_full(&self) -> bool {
        self.queue_full
    }

    pub(crate) fn into_error(self) -> ClassifiedError {
        let outcome = Outcome::new(OutcomeClass::Throttled)
            .with_wait_hint(Some(WaitHint::new(self.wait, HintSource::Throttle)));
        ClassifiedError::new(outcome, Some(Box::new(self)))
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.queue_full {
            write!(
                f,
                "throttled: the queue is full; the next turn is in {:.1}s",
                self.wait.as_secs_f64()
            )
        } else {
            write!(
                f,
                "throttled: the next turn is in {:.1}s, past the longest wait allowed",
                self.wait.as_secs_f64()
            )
        }
    }
}

impl std::error::Error for Throttled {}
