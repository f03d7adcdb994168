//! [`BudgetConfig`]: limits, window, estimates and failure policy.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ballast_cost::{PriceTable, Usd};

use crate::BudgetWindow;

/// What the budget guard enforces. Build with [`BudgetConfig::daily`] and the setters.
#[derive(Clone)]
pub struct BudgetConfig {
    pub(crate) global: Usd,
    pub(crate) window: BudgetWindow,
    pub(crate) scope_default: Option<Usd>,
    pub(crate) scope_limits: HashMap<Arc<str>, Usd>,
    pub(crate) default_max_tokens: u64,
    pub(crate) lease: Duration,
    pub(crate) fail_open: bool,
    pub(crate) store_deadline: Duration,
    pub(crate) outbox: Option<PathBuf>,
    pub(crate) prices: Arc<PriceTable>,
}

impl std::fmt::Debug for BudgetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetConfig")
            .field("global", &self.global)
            .field("window", &self.window)
            .field("scope_default", &self.scope_default)
            .field("scope_limits", &self.scope_limits)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("lease", &self.lease)
            .field("fail_open", &self.fail_open)
            .field("store_deadline", &self.store_deadline)
            .field("outbox", &self.outbox)
            .finish_non_exhaustive()
    }
}

impl BudgetConfig {
    /// `limit` per UTC day (the story's `DAILY_BUDGET_USD=50` is `BudgetConfig::daily(Usd::from_dollars(50))`).
    ///
    /// Defaults: requests without an output cap are assumed to produce 500 tokens (the
    /// story's `MAX_TOKENS_DEFAULT`); reservations are leased for 10 minutes (longer than
    /// any sane attempt); a store failure, or a store call taking over 250 ms, refuses calls
    /// (fail closed); settlements the store refuses are kept in memory (no outbox file);
    /// built-in prices.
    pub fn daily(limit: Usd) -> Self {
        Self {
            global: limit,
            window: BudgetWindow::daily(),
            scope_default: None,
            scope_limits: HashMap::new(),
            default_max_tokens: 500,
            lease: Duration::from_secs(600),
            fail_open: false,
            store_deadline: Duration::from_millis(250),
            outbox: None,
            prices: Arc::new(PriceTable::builtin()),
        }
    }

    /// The window (daily at UTC midnight by default; monthly, or shifted).
    pub fn window(mut self, window: BudgetWindow) -> Self {
        self.window = window;
        self
    }

    /// Every scope (a [`BudgetScope`](crate::BudgetScope) on the request) gets `limit` too.
    pub fn per_scope(mut self, limit: Usd) -> Self {
        self.scope_default = Some(limit);
        self
    }

    /// `scope` gets `limit` (over the per-scope default).
    pub fn scope_limit(mut self, scope: &str, limit: Usd) -> Self {
        self.scope_limits.insert(Arc::from(scope), limit);
        self
    }

    /// Output tokens assumed for a request without a cap (default 500). So that the
    /// provider cannot produce more than was reserved, have the layer that reads requests
    /// write the same cap into them (`ReadRequestLayer::default_output_cap`; the facade
    /// does).
    pub fn default_max_tokens(mut self, tokens: u64) -> Self {
        self.default_max_tokens = tokens;
        self
    }

    /// How long a reservation may be held in a shared store (default 10 minutes).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// When the store fails: `true` lets calls through with a loud warning, `false` (the
    /// default) refuses them.
    pub fn fail_open(mut self, open: bool) -> Self {
        self.fail_open = open;
        self
    }

    /// How long a store call may take (default 250 ms). Past it a reservation counts as a
    /// store failure (refused, or let through when failing open), and a settlement is kept
    /// for retry, so callers never stall on a store that is down.
    pub fn store_deadline(mut self, deadline: Duration) -> Self {
        self.store_deadline = deadline.max(Duration::from_millis(1));
        self
    }

    /// Keeps settlements the store refused in the file at `path` too (append-only, synced
    /// on each write), so they survive the process: the guard replays the file when it is
    /// built and lands its settlements once the store answers. Put it on a disk of its
    /// own host (next to the process), not on the store's.
    pub fn outbox(mut self, path: impl Into<PathBuf>) -> Self {
        self.outbox = Some(path.into());
        self
    }

    /// Prices from `table`.
    pub fn prices(mut self, table: PriceTable) -> Self {
        self.prices = Arc::new(table);
        self
    }

    pub(crate) fn scope_limit_of(&self, scope: &Arc<str>) -> Option<Usd> {
        self.scope_limits.get(scope).copied().or(self.scope_default)
    }
}
