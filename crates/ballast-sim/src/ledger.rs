//! [`Ledger`]: what the simulated provider received, answered and billed.

use std::time::Duration;

use crate::TICKS_PER_USD;

/// What the simulator decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimOutcome {
    /// A normal answer with usage (billed).
    Success,
    /// A success that hung first: billed in full if it ever answered, else for the prompt
    /// and the tokens generated until the client left.
    Hung,
    /// 429 from the hidden rate limit.
    RateLimited,
    /// The account is out of credits.
    QuotaExhausted,
    /// The key was wrong.
    BadKey,
    /// The request was not valid JSON, or lacked a model.
    BadRequest,
    /// The prompt did not fit the context window.
    ContextTooLong,
    /// A server error from the burst model (500, 502, 503, or Anthropic's 529).
    ServerError,
    /// A 503 during an outage window.
    Outage,
    /// A 200 whose body is broken JSON (billed in full: the work was done).
    Malformed,
    /// A 200 with an error object inside (its prompt billed, per
    /// [`Scenario::bills_errors_in_ok`](crate::Scenario::bills_errors_in_ok)).
    ErrorInOk,
    /// A streamed answer whose connection was cut before its end (billed for the prompt and
    /// the tokens generated until then).
    StreamCut,
    /// A streamed answer that ended with an error event (billed as a cut one).
    StreamError,
}

/// One request, as the provider saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The request's number, also sent as the `x-request-id` response header.
    pub id: u64,
    /// When it arrived, in simulated time.
    pub at: Duration,
    /// What was decided.
    pub outcome: SimOutcome,
    /// The status sent, or `None` for a request that hangs for ever.
    pub status: Option<u16>,
    /// The model asked for.
    pub model: String,
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Prompt tokens served from cache.
    pub cached_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// Of the output tokens, reasoning (the answer's own are the rest).
    pub reasoning_tokens: u64,
    /// What the provider bills for it, in ticks; billed when generated, whether or not the
    /// client waited for the answer (a request that hangs for ever: when the client leaves).
    pub billed_ticks: u64,
    /// Whether the answer was handed to the client (false if the client gave up first).
    pub delivered: bool,
    /// The limit enforced when it arrived, if any.
    pub hidden_rpm: Option<u32>,
}

/// A snapshot of every request the simulator received, in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    entries: Vec<LedgerEntry>,
}

impl Ledger {
    pub(crate) fn new(entries: Vec<LedgerEntry>) -> Self {
        Self { entries }
    }

    /// Every entry, in arrival order.
    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    /// How many requests arrived.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none did.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for a request id (`x-request-id`).
    pub fn get(&self, id: u64) -> Option<&LedgerEntry> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.entries.get(i))
            .filter(|e| e.id == id)
    }

    /// How many requests ended as `outcome`.
    pub fn count(&self, outcome: SimOutcome) -> usize {
        self.entries.iter().filter(|e| e.outcome == outcome).count()
    }

    /// Everything billed, in ticks.
    pub fn billed_ticks(&self) -> u64 {
        self.entries.iter().map(|e| e.billed_ticks).sum()
    }

    /// Billed for answers the client received, in ticks.
    pub fn delivered_billed_ticks(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.delivered)
            .map(|e| e.billed_ticks)
            .sum()
    }

    /// Billed for answers the client received with their usage readable (successes, and
    /// hangs that answered): what a logger that reads usage can count. Broken bodies and
    /// errors inside a 200 are billed too, but say nothing of their cost.
    pub fn delivered_usage_ticks(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.delivered && matches!(e.outcome, SimOutcome::Success | SimOutcome::Hung))
            .map(|e| e.billed_ticks)
            .sum()
    }

    /// Everything billed, in US dollars (for display; compare ticks in tests).
    pub fn billed_usd(&self) -> f64 {
        self.billed_ticks() as f64 / TICKS_PER_USD as f64
    }
}
