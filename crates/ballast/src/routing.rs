//! [`RouteBuilder`]: a primary and its fallbacks, each a whole stack, under one budget.

use std::sync::Arc;
use std::time::Duration;

use ballast_budget::MemoryStore;
use ballast_classify::{BoxError, ClassifiedBody, ReadRequest, ReadRequestLayer, RequestBody};
use ballast_cost::Usd;
use ballast_route::{Api, Failover, Target};
use http_body::Body;
use tower::{Layer, Service};

use crate::{Config, ConfigError, FallbackConfig, Preset, Stack, StackBuilder};

/// The routed service: requests with any body, read once at the top, then the first target
/// that can serve them. Clone it freely.
pub type RouteService<R> = ReadRequest<Failover<ClassifiedBody<R>>>;

/// Builds a [`Failover`] route: the primary first, then each fallback, each target a whole
/// stack from [`StackBuilder`] (its own breaker, throttle, key, prices), all reserving from
/// one budget store.
///
/// Each target speaks its preset's API ([`Preset::api`]): an Anthropic or Gemini target gets
/// chat requests translated (the common subset; see [`Api`](crate::route::Api)) and
/// answers back as chat completions, and is asked for its preset's default model unless
/// another is named.
///
/// ```
/// use ballast::{Config, Preset, RouteBuilder};
///
/// let route = RouteBuilder::new(Config::new(Preset::XAi))
///     .fallback(Config::new(Preset::OpenAi), Some("gpt-4o-mini"))
///     .fallback(Config::new(Preset::XAi), Some("grok-4-fast"));
/// assert_eq!(route.names(), ["xai", "openai", "xai#2"]);
/// ```
#[derive(Debug)]
pub struct RouteBuilder {
    targets: Vec<FallbackConfig>,
    time_scale: f64,
    seed: Option<u64>,
    scope_budgets: Vec<(String, Usd)>,
    hedge: Option<ballast_route::HedgeConfig>,
    store: Option<Arc<MemoryStore>>,
    attempts_before_fallback: Option<u32>,
    line_before_fallback: Option<Duration>,
}

/// A built route: the service, and each target's stack (its handles), first first.
#[derive(Debug)]
pub struct Route<R> {
    /// The service.
    pub service: RouteService<R>,
    /// Each target's name and stack.
    pub targets: Vec<(String, Stack<R, Arc<MemoryStore>>)>,
}

impl RouteBuilder {
    /// A route whose primary is `primary`, asked for the caller's model.
    pub fn new(primary: Config) -> Self {
        Self {
            targets: vec![FallbackConfig {
                config: primary,
                model: None,
                alongside: false,
            }],
            time_scale: 1.0,
            seed: None,
            scope_budgets: Vec::new(),
            hedge: Some(ballast_route::HedgeConfig::default()),
            store: None,
            attempts_before_fallback: Some(1),
            line_before_fallback: Some(Duration::from_secs(1)),
        }
    }

    /// A route over `chain`, first first, each target asked for its own model (`None`: the
    /// caller's); `None` for an empty chain.
    pub fn from_chain(chain: Vec<FallbackConfig>) -> Option<Self> {
        let mut chain = chain.into_iter();
        let first = chain.next()?;
        let model = first.model.clone();
        let mut route = Self::new(first.config);
        route.targets[0].model = model;
        route.targets.extend(chain);
        Some(route)
    }

    /// Keeps the budget in `store` (shared with other routes or stacks) rather than in a
    /// store of the route's own.
    pub fn budget_store(mut self, store: Arc<MemoryStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The primary from `preset`'s variables and the fallbacks from `BALLAST_FALLBACKS`
    /// ([`Config::fallbacks_from_env`]).
    pub fn from_env(primary: Preset) -> Result<Self, ConfigError> {
        Self::from_vars(primary, |name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `var`.
    pub fn from_vars(
        primary: Preset,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut route = Self::new(Config::from_vars(primary, &var)?);
        route.targets.extend(Config::fallbacks_from_vars(var)?);
        Ok(route)
    }

    /// Adds a fallback after the targets so far, asked for `model` (`None`: the caller's).
    pub fn fallback(mut self, config: Config, model: Option<&str>) -> Self {
        self.targets.push(FallbackConfig {
            config,
            model: model.map(str::to_owned),
            alongside: false,
        });
        self
    }

    /// Adds a target that serves alike with the one added before it (the same model under
    /// another key, in another region, or from another provider), asked for `model`, and
    /// shares its load ([`Failover::share_load`]): a call starts at the one of the group
    /// with the fewest calls in flight, taken in turn when they are equally busy, and goes
    /// on to the others of the group before the fallbacks after it. Two keys whose
    /// provider limits each: twice the calls a minute before anything waits or fails over.
    ///
    /// Every target of a group that is not the route's last keeps one attempt and a 1-s
    /// throttle line ([`attempts_before_fallback`](Self::attempts_before_fallback),
    /// [`line_before_fallback`](Self::line_before_fallback)), as a fallback would; the
    /// members of the last group keep their own.
    ///
    /// ```
    /// use ballast::{Config, Preset, RouteBuilder};
    ///
    /// let mut second_key = Config::new(Preset::XAi);
    /// second_key.base_url = "https://api.x.ai/v1".parse().unwrap();
    /// let route = RouteBuilder::new(Config::new(Preset::XAi))
    ///     .alongside(second_key, None)
    ///     .fallback(Config::new(Preset::OpenAi), Some("gpt-4o-mini"));
    /// assert_eq!(route.names(), ["xai", "xai#2", "openai"]);
    /// ```
    pub fn alongside(mut self, config: Config, model: Option<&str>) -> Self {
        self.targets.push(FallbackConfig {
            config,
            model: model.map(str::to_owned),
            alongside: true,
        });
        self
    }

    /// Every target's stack for a simulated provider whose clock runs `scale` times faster
    /// (see [`StackBuilder::time_scale`]).
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.time_scale = scale;
        self
    }

    /// How many attempts each target before the last group makes before the call goes on to
    /// the next (default 1: a retryable failure, a 429 or a 5xx, is tried again on the next
    /// target at once, where the target's own retry would have waited its backoff); `None`
    /// keeps each target's [`Config::max_attempts`]. The last target (every target of the
    /// last group, see [`alongside`](Self::alongside)) keeps its own. Measured on the
    /// scoreboard's two-provider rows (six seeds) against each target's three attempts:
    /// the primary flapping 96.4% -> 99.4% goodput, its outage 99.2% -> 99.5%, at the same
    /// calls per item (1.10, 1.02); the demo's fallback column p95 7.4 s -> 6.4 s
    /// (`BENCHMARKS.md`, "Failing over at once").
    pub fn attempts_before_fallback(mut self, attempts: Option<u32>) -> Self {
        self.attempts_before_fallback = attempts.map(|n| n.max(1));
        self
    }

    /// How far off a turn in a throttle's line may be, on every target before the last
    /// group, before the call goes on to the next target at once (default 1 s, in the provider's time:
    /// a target whose line is longer is refused as `throttled`, which fails over); `None`
    /// keeps each throttle's own `max_wait` (60 s). With the throttle serving the newest
    /// call first, a call bumped in the primary's line would wait there up to 5 s while the
    /// fallback is idle: the demo's fallback column p95 8.7 to 8.9 s with the primary's own
    /// 60 s line, 8.7 s with 3 s, 5.4 to 5.7 s with 1 s (`BENCHMARKS.md`, "Newest first").
    pub fn line_before_fallback(mut self, wait: Option<Duration>) -> Self {
        self.line_before_fallback = wait;
        self
    }

    /// Seeds every target's jitter (target `i` with `seed + i`), for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// A daily budget of `limit` for calls carrying the scope `scope`, kept across every
    /// target (see [`StackBuilder::scope_budget`]).
    pub fn scope_budget(mut self, scope: &str, limit: Usd) -> Self {
        self.scope_budgets.push((scope.to_owned(), limit));
        self
    }

    /// Hedges slow calls on every target with `config` (on by default; see
    /// [`StackBuilder::hedge`]).
    pub fn hedge(mut self, config: ballast_route::HedgeConfig) -> Self {
        self.hedge = Some(config);
        self
    }

    /// No hedging on any target (see [`StackBuilder::no_hedge`]).
    pub fn no_hedge(mut self) -> Self {
        self.hedge = None;
        self
    }

    /// The targets' names, first first: the preset's name, numbered when it repeats
    /// (`openai`, `openai#2`).
    pub fn names(&self) -> Vec<String> {
        let presets: Vec<Preset> = self.targets.iter().map(|t| t.config.preset).collect();
        presets
            .iter()
            .enumerate()
            .map(
                |(i, preset)| match presets[..i].iter().filter(|p| *p == preset).count() {
                    0 => preset.name().to_owned(),
                    before => format!("{}#{}", preset.name(), before + 1),
                },
            )
            .collect()
    }

    /// Composes the route over `client`, which reaches every target's base URL.
    pub fn build<C, R>(self, client: C) -> Route<R>
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
        let names = self.names();
        let store = self
            .store
            .clone()
            .unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let mut targets = Vec::new();
        let mut chain = Vec::new();
        // The groups that share their load: a target alongside the one before it joins its
        // group (the first has none before it).
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        for (i, target) in self.targets.iter().enumerate() {
            match groups.last_mut() {
                Some(group) if target.alongside => group.end = i + 1,
                _ => groups.push(i..i + 1),
            }
        }
        // Every target before the last group gives way to the next at once.
        let last = groups.last().map_or(0, |group| group.start);
        for (i, (mut target, name)) in self.targets.into_iter().zip(names).enumerate() {
            if let Some(attempts) = self.attempts_before_fallback
                && i < last
            {
                target.config.max_attempts = attempts;
            }
            let base = target.config.base_url.clone();
            let preset = target.config.preset;
            let builder = self.scope_budgets.iter().fold(
                StackBuilder::new(target.config)
                    .time_scale(self.time_scale)
                    .budget_store(Arc::clone(&store)),
                |builder, (scope, limit)| builder.scope_budget(scope, *limit),
            );
            let builder = match &self.hedge {
                Some(config) => builder.hedge(*config),
                None => builder.no_hedge(),
            };
            let mut builder = match self.seed {
                Some(seed) => builder.seed(seed.wrapping_add(i as u64)),
                None => builder,
            };
            if let Some(wait) = self.line_before_fallback
                && i < last
                && let Some(throttle) = builder.throttle_mut()
            {
                throttle.max_wait = wait;
            }
            let stack = builder.build(client.clone());
            let mut link =
                Target::new(name.clone(), base, stack.service.clone()).speaks(preset.api());
            // A target that translates needs a model of its own: its preset's default
            // unless one is named (the caller's model means nothing to it); a call in its
            // own dialect keeps the caller's.
            link = match (target.model, preset.api()) {
                (Some(model), _) => link.model(model),
                (None, Api::OpenAi) => link,
                (None, _) => link.translation_model(preset.default_model()),
            };
            chain.push(link);
            targets.push((name, stack));
        }
        // The whole route's deadline, the facade's default: every target keeps the sooner.
        let within = crate::stack::scaled(crate::DEFAULT_DEADLINE, self.time_scale);
        Route {
            service: ReadRequestLayer::new().deadline(within).layer(
                groups
                    .into_iter()
                    .fold(Failover::new(chain), Failover::share_load),
            ),
            targets,
        }
    }
}

#[cfg(feature = "rustls")]
impl RouteBuilder {
    /// Composes the route over the default client, [`https_client`](crate::https_client).
    pub fn build_https(self) -> std::io::Result<Route<hyper::body::Incoming>> {
        Ok(self.build(crate::https_client()?))
    }
}
