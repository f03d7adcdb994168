//! What the end-to-end tests share: the request each call sends, one run's figures, and the
//! invariants every run keeps.

use ballast_classify::OutcomeClass;
use ballast_cost::Usd;
use ballast_sim::{Ledger, SimOutcome};

/// Job `i`: a short chat completion with an output cap of `cap`.
pub(crate) fn job(url: &str, i: usize, cap: usize) -> http::Request<String> {
    http::Request::post(url)
        .body(format!(
            r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"job {i}"}}],"max_tokens":{cap}}}"#
        ))
        .unwrap()
}

/// What one run came to.
pub(crate) struct Run {
    pub(crate) calls: usize,
    pub(crate) classes: Vec<OutcomeClass>,
    pub(crate) billed: Usd,
    pub(crate) delivered: Usd,
    /// What the attempt logger counted from reported usage, and at worst cases (attempts
    /// that may have been billed and said nothing: timeouts, 2xx answers without usage).
    pub(crate) counted: Usd,
    pub(crate) worst: Usd,
    pub(crate) budget: Usd,
    pub(crate) bad_keys: usize,
    /// Times the stack's breakers opened (set by the runs that read them).
    pub(crate) breaker_opened: u64,
}

impl Run {
    /// The run's figures: what the callers saw, what the provider's ledger says, what the
    /// stack counted.
    pub(crate) fn new(
        classes: Vec<OutcomeClass>,
        ledger: &Ledger,
        spend: &ballast_cost::DailySpend,
        budget: Usd,
    ) -> Self {
        Self {
            calls: classes.len(),
            classes,
            billed: Usd::from_xai_ticks(ledger.billed_ticks()),
            delivered: Usd::from_xai_ticks(ledger.delivered_usage_ticks()),
            counted: spend.total().saturating_sub(spend.worst_case()),
            worst: spend.worst_case(),
            budget,
            bad_keys: ledger.count(SimOutcome::BadKey),
            breaker_opened: 0,
        }
    }

    /// The run, with the times its breakers opened read from `handle`.
    pub(crate) fn with_breaker(mut self, handle: &ballast::breaker::BreakerHandle) -> Self {
        self.breaker_opened = handle.snapshot().iter().map(|key| key.opened_total).sum();
        self
    }
}

/// Every call answered with a known class, nothing billed past the budget, every billed and
/// delivered attempt counted from its usage, and the key on the wire as given.
pub(crate) fn check(run: &Run, calls: usize) {
    assert_eq!(
        run.counted, run.delivered,
        "every billed, delivered attempt with usage counted"
    );
    check_bounds(run, calls);
}

/// [`check`] for runs in real time over sockets: a hedge's loser (or an attempt its caller
/// dropped) may be written to the socket, and marked delivered by the provider, after the
/// stack let go of it, so its usage is never read. Such an attempt is settled at its worst
/// case instead: what was delivered and not counted from usage is within the worst cases.
pub(crate) fn check_real_time(run: &Run, calls: usize) {
    assert!(
        run.counted <= run.delivered,
        "counted {} over delivered {}",
        run.counted,
        run.delivered
    );
    assert!(
        run.delivered.saturating_sub(run.counted) <= run.worst,
        "delivered {} and counted {}: the difference is not within the worst cases {}",
        run.delivered,
        run.counted,
        run.worst
    );
    check_bounds(run, calls);
}

/// What [`check`] and [`check_real_time`] share: every call answered with a known class,
/// nothing billed past the budget, the bill within the count, the key clean on the wire.
fn check_bounds(run: &Run, calls: usize) {
    assert_eq!(run.calls, calls, "every call answered");
    assert!(
        !run.classes.contains(&OutcomeClass::Unknown),
        "{:?}",
        run.classes
    );
    assert!(
        run.billed <= run.budget,
        "billed {} over the budget {}",
        run.billed,
        run.budget
    );
    assert!(
        run.counted + run.worst >= run.billed,
        "the count ({} and {} at worst cases) is below the bill {}",
        run.counted,
        run.worst,
        run.billed
    );
    assert_eq!(run.bad_keys, 0, "the key went on the wire, clean");
}
