//! [`CostLogLayer`]: configuration for the cost-estimating logger.

use std::sync::Arc;

use ballast_classify::Provider;
use tower_layer::Layer;

use crate::meters::Meters;
use crate::service::CostLog;
use crate::{DailySpend, HealthMonitor, PriceTable};

/// Which calls a [`CostLog`] sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Each attempt (below the retry layer): every billed attempt is logged and counted.
    Attempt,
    /// The logical call (above the retry layer): final outcome, attempts, total cost.
    Call,
}

impl Scope {
    /// `"attempt"` or `"call"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Attempt => "attempt",
            Self::Call => "call",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) provider: Provider,
    pub(crate) prices: PriceTable,
    pub(crate) scope: Scope,
    pub(crate) log_content: bool,
    pub(crate) health: Option<HealthMonitor>,
    pub(crate) spend: Arc<DailySpend>,
    pub(crate) meters: Meters,
    /// The output cap of a request that names none, for the charge of a dropped attempt.
    pub(crate) default_max_tokens: u64,
}

/// Logs every call with its tokens, cost, duration and outcome, and feeds `metrics`.
///
/// Put one at [`Scope::Call`] above the retry layer and one at [`Scope::Attempt`] below it
/// (sharing [`spend`](Self::spend)): the attempt logger sees every billed attempt, the call
/// logger sees what the caller saw, with the attempts' costs added up.
///
/// A call dropped by its caller is logged as `cancelled`. At attempt scope the provider had
/// the request and may bill it in full: it is charged its worst case (the prompt estimate
/// and the output cap), as the budget settles it. At call scope it is charged what its
/// attempts were; a call-scope logger with none below cannot tell whether anything was sent
/// and charges nothing.
#[derive(Debug, Clone)]
pub struct CostLogLayer {
    shared: Arc<Shared>,
}

impl CostLogLayer {
    /// A logger for `provider` at `scope`, with the built-in prices.
    pub fn new(provider: Provider, scope: Scope) -> Self {
        Self {
            shared: Arc::new(Shared {
                provider,
                prices: PriceTable::builtin(),
                scope,
                log_content: false,
                health: None,
                spend: Arc::new(DailySpend::default()),
                meters: Meters::new(scope),
                default_max_tokens: 500,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            f(shared);
        } else {
            let old = &self.shared;
            let mut shared = Shared {
                provider: old.provider,
                prices: old.prices.clone(),
                scope: old.scope,
                log_content: old.log_content,
                health: old.health.clone(),
                spend: Arc::clone(&old.spend),
                meters: Meters::new(old.scope),
                default_max_tokens: old.default_max_tokens,
            };
            f(&mut shared);
            self.shared = Arc::new(shared);
        }
        self
    }

    /// Prices from `table` instead of the built-in ones.
    pub fn prices(self, table: PriceTable) -> Self {
        self.edit(|s| s.prices = table)
    }

    /// Feeds `monitor` with every call (use at [`Scope::Call`]).
    pub fn health(self, monitor: HealthMonitor) -> Self {
        self.edit(|s| s.health = Some(monitor))
    }

    /// Shares today's spend with another logger (the other scope) or a dashboard.
    pub fn spend(self, spend: Arc<DailySpend>) -> Self {
        self.edit(|s| s.spend = spend)
    }

    /// Logs prompt and response text too (`gen_ai.prompt`, `gen_ai.completion`, 4 KiB each).
    /// Off by default: prompts hold users' data.
    pub fn log_content(self, on: bool) -> Self {
        self.edit(|s| s.log_content = on)
    }

    /// The output cap of a request that names none (default 500, as the budget's): an
    /// attempt dropped while the provider had it is charged its prompt and this many output
    /// tokens, or the cap the request names, as the budget charges it.
    pub fn default_max_tokens(self, tokens: u64) -> Self {
        self.edit(|s| s.default_max_tokens = tokens)
    }

    /// Today's spend as this logger counted it.
    pub fn daily_spend(&self) -> Arc<DailySpend> {
        Arc::clone(&self.shared.spend)
    }
}

impl<S> Layer<S> for CostLogLayer {
    type Service = CostLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CostLog::new(inner, Arc::clone(&self.shared))
    }
}
