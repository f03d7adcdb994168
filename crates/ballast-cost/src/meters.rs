//! The `metrics` handles a logger feeds, registered once per model and class.
//!
//! Building a metric key with labels on every call costs allocations even with no recorder
//! installed; registered handles cost an atomic add. Models are capped so a stream of odd
//! model names cannot blow up label cardinality. Install the metrics recorder before the
//! first call: handles registered earlier stay with the no-op recorder.

use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use ballast_classify::OutcomeClass;
use metrics::{Counter, Gauge, Histogram};

use crate::layer::Scope;

/// Models with their own labels; past this, calls count under `model="other"`.
const MAX_MODELS: usize = 256;

#[derive(Debug)]
pub(crate) struct ModelMeters {
    pub(crate) input: Counter,
    pub(crate) cached_input: Counter,
    pub(crate) output: Counter,
    pub(crate) cost_picos: Counter,
    requests: [OnceLock<Counter>; OutcomeClass::COUNT],
    first_token: OnceLock<Histogram>,
    model: Arc<str>,
    scope: Scope,
    /// Set once the missing price of this model has been warned about.
    unknown_price_warned: AtomicBool,
    /// Set once an unpriced call of this model has been warned about.
    unpriced_warned: AtomicBool,
}

impl ModelMeters {
    fn new(model: &str, scope: Scope) -> Self {
        let model: Arc<str> = Arc::from(model);
        let tokens = |kind: &'static str| metrics::counter!("ballast_tokens_total", "model" => model.to_string(), "kind" => kind);
        Self {
            input: tokens("input"),
            cached_input: tokens("cached_input"),
            output: tokens("output"),
            cost_picos: metrics::counter!("ballast_cost_picousd_total", "model" => model.to_string()),
            requests: std::array::from_fn(|_| OnceLock::new()),
            first_token: OnceLock::new(),
            model,
            scope,
            unknown_price_warned: AtomicBool::new(false),
            unpriced_warned: AtomicBool::new(false),
        }
    }

    /// Warns once per model (once for all models past the cap) that `model` has no price:
    /// a flag on the model's meters, no lock and no allocation on later calls.
    pub(crate) fn warn_unknown_price(&self, model: &str) {
        if self.unknown_price_warned.load(Ordering::Relaxed)
            || self.unknown_price_warned.swap(true, Ordering::Relaxed)
        {
            return;
        }
        tracing::warn!(
            target: "ballast::cost",
            model,
            "no price for model {model:?}: costs are estimated at the fallback (dearest) price; add it to the price table"
        );
    }

    /// Warns once per model that a call of `model` Ballast has no reading of reported no
    /// usage (an image, a speech, a transcription): logged unpriced, at nothing.
    pub(crate) fn warn_unpriced(&self, model: &str) {
        if self.unpriced_warned.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(
            target: "ballast::cost",
            model,
            "a call to {model:?} reported no usage: logged unpriced (cost_source=\"unpriced\"); the provider may bill it by the character or the minute, which Ballast does not price"
        );
    }

    /// Time to a stream's first content, registered with the first stream.
    pub(crate) fn first_token(&self) -> &Histogram {
        self.first_token.get_or_init(|| {
            metrics::histogram!(
                "ballast_time_to_first_token_seconds",
                "model" => self.model.to_string(),
                "scope" => self.scope.as_str()
            )
        })
    }

    pub(crate) fn requests(&self, class: OutcomeClass) -> &Counter {
        self.requests[class.index()].get_or_init(|| {
            metrics::counter!(
                "ballast_requests_total",
                "model" => self.model.to_string(),
                "class" => class.as_str(),
                "scope" => self.scope.as_str()
            )
        })
    }
}

#[derive(Debug)]
pub(crate) struct Meters {
    scope: Scope,
    models: ArcSwap<HashMap<Box<str>, Arc<ModelMeters>>>,
    other: OnceLock<Arc<ModelMeters>>,
    durations: [OnceLock<Histogram>; OutcomeClass::COUNT],
    spend_today: OnceLock<Gauge>,
}

impl Meters {
    pub(crate) fn new(scope: Scope) -> Self {
        Self {
            scope,
            models: ArcSwap::from_pointee(HashMap::default()),
            other: OnceLock::new(),
            durations: std::array::from_fn(|_| OnceLock::new()),
            spend_today: OnceLock::new(),
        }
    }

    /// The handles for `model`, registered on first use.
    pub(crate) fn model(&self, model: &str) -> Arc<ModelMeters> {
        if let Some(found) = self.models.load().get(model) {
            return Arc::clone(found);
        }
        let mut chosen = None;
        self.models.rcu(|models| {
            let mut models = HashMap::clone(models);
            if let Some(found) = models.get(model) {
                chosen = Some(Arc::clone(found));
            } else if models.len() < MAX_MODELS {
                let meters = Arc::new(ModelMeters::new(model, self.scope));
                models.insert(Box::from(model), Arc::clone(&meters));
                chosen = Some(meters);
            }
            models
        });
        chosen.unwrap_or_else(|| {
            Arc::clone(
                self.other
                    .get_or_init(|| Arc::new(ModelMeters::new("other", self.scope))),
            )
        })
    }

    /// The day's spend, registered on first use (not once per call).
    pub(crate) fn spend_today(&self) -> &Gauge {
        self.spend_today
            .get_or_init(|| metrics::gauge!("ballast_spend_today_usd"))
    }

    pub(crate) fn duration(&self, class: OutcomeClass) -> &Histogram {
        self.durations[class.index()].get_or_init(|| {
            metrics::histogram!(
                "ballast_request_duration_seconds",
                "class" => class.as_str(),
                "scope" => self.scope.as_str()
            )
        })
    }
}
