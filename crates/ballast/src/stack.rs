//! [`StackBuilder`]: the whole Ballast stack over any HTTP client, in the right order.

use std::sync::Arc;
use std::time::Duration;

use ballast_breaker::{BreakerConfig, BreakerHandle, BreakerLayer, PartialTrip};
use ballast_budget::{BudgetConfig, BudgetLayer, MemoryStore, SpendStore};
use ballast_classify::rewrite::ChatCapField;
use ballast_classify::{
    BoxError, ClassifiedBody, ClassifyLayer, OutcomeClass, ReadRequest, ReadRequestLayer,
    RequestBody, StreamTimeouts,
};
use ballast_cost::{CostLogLayer, DailySpend, HealthMonitor, Scope, Usd};
use ballast_retry::{RetryLayer, RetryPolicy};
use ballast_route::{HedgeConfig, HedgeLayer};
use ballast_throttle::{ThrottleConfig, ThrottleHandle, ThrottleLayer};
use http_body::Body;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::Config;

/// The composed service: requests with any body (`String`, `Bytes`, `Full`, axum's `Body`,
/// hyper's `Incoming`, a `BoxBody`: any [`http_body::Body`]), read once at the top;
/// responses with the classifier's body. Clone it freely; clones share breakers, budget,
/// retry budget and logs.
pub type StackService<R> = ReadRequest<
    BoxCloneSyncService<http::Request<RequestBody>, http::Response<ClassifiedBody<R>>, BoxError>,
>;

/// `duration` on a clock `scale` times faster (unchanged when that is out of range).
pub(crate) fn scaled(duration: Duration, scale: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() / scale).unwrap_or(duration)
}

/// How long a call may take by default, waits and attempts included: 5 minutes.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

/// Builds the whole stack, outermost first:
///
/// ```text
/// read request -> cost log (call) -> retry -> [hedge] -> breaker -> throttle -> budget -> cost log (attempt) -> timeout -> classify -> auth -> client
/// ```
///
/// The request is read once: its body collected under a size cap (default
/// [`DEFAULT_REQUEST_LIMIT`](crate::classify::DEFAULT_REQUEST_LIMIT), 32 MiB), its facts (model, stream, output cap, prompt bound)
/// noted for every layer below, and the default output cap written into requests without
/// one, so the reservation bounds what the provider can bill. The call logger sees what the caller sees; retry decides on each attempt's outcome; the
/// breaker answers at once while open (before any budget is reserved or turn taken); the
/// throttle sends each attempt at its turn and learns the real rate limit from the
/// answers (on by default for presets whose documented limits lie); the budget guard
/// reserves each attempt's worst case and settles its cost; the attempt logger counts every
/// billed attempt; the timeout bounds each attempt including its body; the classifier gives
/// every layer above its verdict; the API key is set last, on the wire only.
#[derive(Debug)]
pub struct StackBuilder<St = MemoryStore> {
    config: Config,
    breaker: BreakerConfig,
    retry: Option<RetryPolicy>,
    store: St,
    health: HealthMonitor,
    time_scale: f64,
    seed: Option<u64>,
    throttle: Option<ThrottleConfig>,
    read: ReadRequestLayer,
    deadline: Option<Duration>,
    hedge: Option<HedgeConfig>,
    streams: StreamTimeouts,
    stream_usage: bool,
    hint_trust: Option<ballast_classify::HintTrust>,
    scope_budgets: Vec<(String, Usd)>,
}

/// What a built stack exposes besides the service: the handles to watch and steer it.
#[derive(Debug)]
pub struct Stack<R, St = MemoryStore> {
    /// The service.
    pub service: StackService<R>,
    /// The breakers.
    pub breaker: BreakerHandle,
    /// The budget (read-outs, kept settlements).
    pub budget: BudgetLayer<St>,
    /// Error rate and latency of logical calls.
    pub health: HealthMonitor,
    /// Today's spend as the attempt logger counted it.
    pub spend: Arc<DailySpend>,
    /// The throttle's pace and queue, when there is a throttle.
    pub throttle: Option<ThrottleHandle>,
}

impl StackBuilder<MemoryStore> {
    /// A builder from `config`, with the budget in memory.
    pub fn new(config: Config) -> Self {
        let throttle = config
            .preset
            .documented_rpm()
            .filter(|_| config.preset.limits_lie())
            .map(|rpm| ThrottleConfig::starting_at(f64::from(rpm)));
        Self {
            throttle,
            config,
            breaker: BreakerConfig {
                partial: Some(PartialTrip::default()),
                ..BreakerConfig::patient()
            },
            retry: None,
            store: MemoryStore::new(),
            health: HealthMonitor::default(),
            time_scale: 1.0,
            seed: None,
            read: ReadRequestLayer::new(),
            deadline: Some(DEFAULT_DEADLINE),
            hedge: Some(HedgeConfig::default()),
            streams: StreamTimeouts::default(),
            stream_usage: true,
            hint_trust: None,
            scope_budgets: Vec::new(),
        }
    }
}

impl<St: SpendStore> StackBuilder<St> {
    /// Keeps the budget in `store` (SQLite for one host, Redis for a fleet).
    pub fn budget_store<St2: SpendStore>(self, store: St2) -> StackBuilder<St2> {
        StackBuilder {
            config: self.config,
            breaker: self.breaker,
            retry: self.retry,
            store,
            health: self.health,
            time_scale: self.time_scale,
            seed: self.seed,
            throttle: self.throttle,
            read: self.read,
            deadline: self.deadline,
            hedge: self.hedge,
            streams: self.streams,
            stream_usage: self.stream_usage,
            hint_trust: self.hint_trust,
            scope_budgets: self.scope_budgets,
        }
    }

    /// The largest request body read, in bytes (default [`DEFAULT_REQUEST_LIMIT`](crate::classify::DEFAULT_REQUEST_LIMIT), 32 MiB);
    /// a longer one fails at once as [`RequestTooLarge`](crate::classify::RequestTooLarge)
    /// (413 through [`Fallback`](crate::Fallback)) and nothing is sent.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.read = self.read.limit(bytes);
        self
    }

    /// How prompt tokens are bounded, once per call, for the budget's reservation and the
    /// throttle's token pace (default: [`HalfByteCount`](crate::classify::HalfByteCount);
    /// `ballast_cost::Tokenizer` with the `tokenizer` feature is tighter).
    pub fn estimator(
        mut self,
        estimator: impl crate::classify::TokenEstimator + Send + Sync + 'static,
    ) -> Self {
        self.read = self.read.estimator(estimator);
        self
    }

    /// Paces attempts with an adaptive throttle (on by default, starting at the documented
    /// rate, for presets whose limits lie: `Preset::limits_lie`).
    pub fn throttle(mut self, config: ThrottleConfig) -> Self {
        self.throttle = Some(config);
        self
    }

    /// The throttle's settings, to change one of them, when there is a throttle.
    pub(crate) fn throttle_mut(&mut self) -> Option<&mut ThrottleConfig> {
        self.throttle.as_mut()
    }

    /// No throttle.
    pub fn no_throttle(mut self) -> Self {
        self.throttle = None;
        self
    }

    /// How long a call may take in all, waits and attempts included (default 5 minutes, the
    /// retry policy's own deadline): each call gets a [`Deadline`](crate::classify::Deadline)
    /// (an earlier one the caller set is kept), within which a refused call waits for the
    /// breaker's next chance and retries wait their turn. Past it the call fails with an
    /// honest `Retry-After`.
    pub fn deadline(mut self, within: Duration) -> Self {
        self.deadline = Some(within);
        self
    }

    /// No deadline of the stack's own: only the caller's [`Deadline`](crate::classify::Deadline),
    /// if it sets one, and the retry policy's.
    pub fn no_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// Hedges slow attempts with `config` (on by default, with
    /// [`HedgeConfig::default`](crate::route::HedgeConfig)): an attempt slower than a high
    /// percentile of recent answers, timed from when it left the breaker's and the
    /// throttle's lines, gets a second one, the first success kept, the other dropped (its
    /// reservation settled at its worst case); at most `max_share` extra calls. Its times
    /// are scaled with [`time_scale`](Self::time_scale).
    pub fn hedge(mut self, config: HedgeConfig) -> Self {
        self.hedge = Some(config);
        self
    }

    /// No hedging: one attempt at a time, however long it takes (up to the attempt
    /// timeout).
    pub fn no_hedge(mut self) -> Self {
        self.hedge = None;
        self
    }

    /// Timeouts of streamed answers (default 20 s to the first content, 30 s between frames
    /// after it; scaled with [`time_scale`](Self::time_scale)): a stream silent before its
    /// first content fails its attempt as a timeout (retried, nothing reached the caller);
    /// one silent after it ends with an error.
    pub fn stream_timeouts(mut self, timeouts: StreamTimeouts) -> Self {
        self.streams = timeouts;
        self
    }

    /// Whether chat streams are asked for their usage when the caller did not (default on):
    /// the stream's cost is then read from the provider, and the usage-only chunk is kept
    /// from the caller. Off, such a stream is charged from what was seen of it, which a
    /// model that reasons without showing it bills more than: leave it on for those.
    pub fn stream_usage(mut self, on: bool) -> Self {
        self.stream_usage = on;
        self
    }

    /// Fails fast: a call the breaker refuses fails at once, with the time to its next chance
    /// as `Retry-After`, instead of waiting for it (for apps with their own fallback).
    pub fn fail_fast(mut self) -> Self {
        self.breaker.patience = None;
        self
    }

    /// Breaker settings (default: `BreakerConfig::patient()` with
    /// [`PartialTrip`](crate::breaker::PartialTrip): refused calls wait for the next chance
    /// within their deadline, and a trip during a 5xx burst probes every 1.5 s with three
    /// calls; a config without `patience` fails fast).
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Gives calls carrying a [`BudgetScope`](ballast_budget::BudgetScope) named `scope`
    /// a daily budget of their own, `limit`, within the global one (a gateway's client
    /// key, a team, a tenant).
    pub fn scope_budget(mut self, scope: &str, limit: Usd) -> Self {
        self.scope_budgets.push((scope.to_owned(), limit));
        self
    }

    /// How far the provider's wait hints are trusted, by every layer that reads them: the
    /// default retry policy's wait and the breaker's open time (default
    /// [`HintTrust::default`](crate::classify::HintTrust): clamped to 5 s past the computed
    /// wait), over what [`breaker`](Self::breaker) set, in any order. A policy given to
    /// [`retry`](Self::retry) keeps its own.
    pub fn hint_trust(mut self, trust: ballast_classify::HintTrust) -> Self {
        self.hint_trust = Some(trust);
        self
    }

    /// The retry policy (default: `RetryPolicy` defaults with the config's attempts, and a
    /// broken answer, `invalid_response`, tried again: the provider billed it, and one more
    /// call serves the caller).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// For demos and tests against a simulated provider whose clock runs `scale` times faster
    /// than real time (`ballast-sim`'s `time_scale`): the attempt timeout, the default retry
    /// policy's waits and deadline, and the breaker's windows and open times all shrink by
    /// `scale`. A policy given to [`retry`](Self::retry) keeps its own scale
    /// (`RetryPolicyBuilder::time_scale`). The provider's wait hints stay in provider time,
    /// while the breaker's and the throttle's are in the scaled, real time they run on
    /// ([`HintSource::is_provider`](crate::classify::HintSource::is_provider) tells them
    /// apart). Default 1.0; leave it there against a real provider.
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.time_scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        self
    }

    /// Seeds the breaker's and the default retry policy's jitter, for reproducible runs
    /// (tests, the scoreboard). Default: random.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The health monitor to feed.
    pub fn health(mut self, monitor: HealthMonitor) -> Self {
        self.health = monitor;
        self
    }

    /// Composes the stack over `client`.
    pub fn build<C, R>(self, client: C) -> Stack<R, St>
    where
        C: Service<http::Request<RequestBody>, Response = http::Response<R>>
            + Clone
            + Send
            + Sync
            + 'static,
        C::Error: Into<BoxError>,
        C::Future: Send + 'static,
        R: Body + Send + Sync + 'static,
        R::Data: Send,
        R::Error: Into<BoxError>,
    {
        let config = self.config;
        let provider = config.preset.provider();
        let auth = config.api_key.as_ref().map(|key| key.header(provider));
        // Requests without an output cap get the default one, in their dialect's field, so
        // the reservation bounds what the provider can bill.
        let chat_cap = match config.preset {
            crate::Preset::OpenAi => ChatCapField::MaxCompletionTokens,
            _ => ChatCapField::MaxTokens,
        };
        let scale = self.time_scale;
        let read = self
            .read
            .default_output_cap(config.max_tokens_default)
            .chat_cap_field(chat_cap)
            .stream_usage(self.stream_usage);
        let read = match self.deadline {
            Some(within) => read.deadline(scaled(within, scale)),
            None => read,
        };
        let budget_config = self.scope_budgets.iter().fold(
            BudgetConfig::daily(config.daily_budget).default_max_tokens(config.max_tokens_default),
            |budget, (scope, limit)| budget.scope_limit(scope, *limit),
        );
        let budget = BudgetLayer::with_store(budget_config, self.store);
        let mut breaker_config = self.breaker.time_scaled(scale);
        let hint_trust = self.hint_trust.unwrap_or(breaker_config.hint_trust);
        breaker_config.hint_trust = hint_trust;
        let breaker = match self.seed {
            Some(seed) => BreakerLayer::with_seed(breaker_config, seed),
            None => BreakerLayer::new(breaker_config),
        };
        let seed = self.seed;
        let retry = self.retry.unwrap_or_else(|| {
            let builder = RetryPolicy::builder()
                .max_attempts(config.max_attempts)
                .hint_trust(hint_trust)
                .retry_class(OutcomeClass::InvalidResponse, true)
                .time_scale(scale);
            match seed {
                Some(seed) => builder.seed(seed),
                None => builder,
            }
            .build()
        });
        let timeout = scaled(config.request_timeout, scale);
        let throttle = self
            .throttle
            .map(|config| ThrottleLayer::new(config.time_scaled(scale)));
        let hedge = self
            .hedge
            .map(|config| HedgeLayer::new(config.time_scaled(scale)));
        let attempt_log = CostLogLayer::new(provider, Scope::Attempt)
            .default_max_tokens(config.max_tokens_default);
        let spend = attempt_log.daily_spend();
        let service = ServiceBuilder::new()
            .layer(CostLogLayer::new(provider, Scope::Call).health(self.health.clone()))
            .layer(RetryLayer::new(retry))
            .option_layer(hedge)
            .layer(breaker.clone())
            .option_layer(throttle.clone())
            .layer(budget.clone())
            // The attempt's future (logger, timeout, classify, client) boxed once: each
            // layer above moves its inner future into its own, and one allocation costs
            // less than those copies (`benches/instructions.sh`: the facade with the
            // throttle 34 434 -> 33 875 a request; boxing below the retry, the breaker or
            // the throttle instead saved 170 to 450, and two boxes less than one).
            .map_future(Box::pin)
            .layer(attempt_log)
            // tower's timeout, but a target of a route that can fail over spends at most
            // half of what is left of the call's deadline, leaving the rest to the next.
            .layer(ballast_route::AttemptTimeoutLayer::new(timeout))
            .layer(ClassifyLayer::new(provider).stream_timeouts(self.streams.time_scaled(scale)))
            .map_request(move |mut request: http::Request<RequestBody>| {
                if let Some((name, value)) = &auth
                    && !request.headers().contains_key(name)
                {
                    request.headers_mut().insert(name.clone(), value.clone());
                }
                request
            })
            .service(client.map_err(Into::into));
        Stack {
            service: tower::Layer::layer(&read, BoxCloneSyncService::new(service)),
            breaker: breaker.handle(),
            budget,
            health: self.health,
            spend,
            throttle: throttle.map(|layer| layer.handle()),
        }
    }
}

#[cfg(feature = "rustls")]
impl<St: SpendStore> StackBuilder<St> {
    /// Composes the stack over the default client, [`https_client`](crate::https_client).
    pub fn build_https(self) -> std::io::Result<Stack<hyper::body::Incoming, St>> {
        Ok(self.build(crate::https_client()?))
    }
}
