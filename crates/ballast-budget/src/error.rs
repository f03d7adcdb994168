//! [`BudgetExceeded`] and [`BudgetUnavailable`]: calls the guard refused.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ballast_classify::{ClassifiedError, HintSource, Outcome, OutcomeClass, WaitHint};
use ballast_cost::Usd;

/// The call's worst case did not fit in what is left of a budget; nothing was sent.
///
/// Returned inside a [`ClassifiedError`] of class `BudgetExceeded` whose wait hint is the
/// time until the window turns (a web app can answer 429 with that `Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetExceeded {
    /// The full account: `None` is the global budget.
    pub scope: Option<Arc<str>>,
    /// Its limit.
    pub limit: Usd,
    /// Spent plus reserved in it.
    pub committed: Usd,
    /// What this call would have reserved.
    pub asked: Usd,
    /// Time until the window turns.
    pub resets_in: Duration,
}

impl BudgetExceeded {
    pub(crate) fn into_classified(self) -> ClassifiedError {
        let hint = WaitHint::new(self.resets_in, HintSource::BudgetWindow);
        let outcome = Outcome::new(OutcomeClass::BudgetExceeded).with_wait_hint(Some(hint));
        ClassifiedError::new(outcome, Some(Box::new(self)))
    }
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let account = match &self.scope {
            Some(scope) => format!("budget of {scope}"),
            None => "global budget".to_owned(),
        };
        write!(
            f,
            "the {account} ({} a window) has {} committed; this call needs up to {}; it resets in {}s",
            self.limit,
            self.committed,
            self.asked,
            self.resets_in.as_secs()
        )
    }
}

impl std::error::Error for BudgetExceeded {}

/// The spend store failed and the guard is set to fail closed; nothing was sent.
#[derive(Debug)]
pub struct BudgetUnavailable(pub(crate) crate::StoreError);

impl BudgetUnavailable {
    pub(crate) fn into_classified(self) -> ClassifiedError {
        ClassifiedError::new(
            Outcome::new(OutcomeClass::BudgetExceeded),
            Some(Box::new(self)),
        )
    }
}

impl fmt::Display for BudgetUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the budget store is unavailable, so the call was refused (fail closed): {}",
            self.0
        )
    }
}

impl std::error::Error for BudgetUnavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
