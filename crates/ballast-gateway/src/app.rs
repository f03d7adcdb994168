//! [`Gateway`]: the routes, over the stack (or the fallback route) the config describes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ballast::breaker::{BreakerHandle, BreakerState};
use ballast::budget::{BudgetLayer, BudgetScope, MemoryStore};
use ballast::classify::{BoxError, ClassifiedBody, Dialect, Outcome, OutcomeClass, ProviderError};
use ballast::cost::{CostTally, HealthMonitor};
use ballast::route::{Api, Served};
use ballast::{Fallback, InBandErrors, RouteBuilder, StackBuilder, error_answer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::body::DeadlineBody;
use crate::cache::{AnswerCache, Asked, Cached, Flight, Keeping};
use crate::config::{AdminToken, GatewayConfig, ThrottleSetting};
use crate::count_tokens::Counter;
use crate::headers::{is_allowed_header, keep_allowed_headers};
use crate::rate::KeyRate;

/// The stack, or the route over the stacks of the primary and its fallbacks.
type Upstream = BoxCloneSyncService<
    http::Request<DeadlineBody<Body>>,
    http::Response<ClassifiedBody<hyper::body::Incoming>>,
    BoxError,
>;

/// A client key's budget scope and share of the pace.
#[derive(Debug)]
struct Caller {
    scope: BudgetScope,
    rate: Option<(f64, KeyRate)>,
}

/// One target the gateway can send to: its name, the model it is asked for (the caller's
/// when `None`), its breakers.
#[derive(Debug, Clone)]
pub(crate) struct TargetInfo {
    pub(crate) name: String,
    pub(crate) model: String,
    pub(crate) breakers: BreakerHandle,
    pub(crate) throttle: Option<ballast::throttle::ThrottleHandle>,
}

pub(crate) struct App {
    upstream: Upstream,
    upstream_uri: http::Uri,
    /// The primary's Responses API endpoint (`{base}/responses`).
    responses_uri: http::Uri,
    /// The Messages endpoint under the primary's base (`{base}/messages`): a route hands
    /// the path after the version on to the target that speaks Anthropic's API.
    messages_uri: http::Uri,
    /// Whether a target of the provider's chain takes Anthropic's Messages API (see
    /// [`may_serve`]).
    speaks_messages: bool,
    /// Whether a target of the provider's chain speaks Gemini's API (its callers' calls go
    /// to Gemini targets only).
    speaks_gemini: bool,
    /// The primary's Embeddings endpoint (`{base}/embeddings`).
    embeddings_uri: http::Uri,
    /// The primary's legacy Completions endpoint (`{base}/completions`).
    completions_uri: http::Uri,
    /// Whether a target of the provider's chain speaks OpenAI's API (the only one that
    /// serves legacy completions).
    serves_completions: bool,
    /// Whether a target of the provider's chain serves embeddings (an OpenAI-compatible
    /// one asked for the caller's model: [`Api::may_serve`]).
    serves_embeddings: bool,
    /// Whether the primary speaks OpenAI's API: calls with no reading of their own
    /// (moderations, images, audio) pass through to it ([`passthrough`]).
    passes_through: bool,
    /// The primary's base, under which a Gemini call's path goes (`{base}/models/...`): a
    /// route hands the path after the version on to its Gemini target.
    base: String,
    pub(crate) targets: Vec<TargetInfo>,
    pub(crate) budget: BudgetLayer<Arc<MemoryStore>>,
    health: HealthMonitor,
    prometheus: Option<PrometheusHandle>,
    body_timeout: std::time::Duration,
    pub(crate) admin_token: Option<AdminToken>,
    /// The callers' keys by their SHA-256: the budget scope each counts in, its rate.
    client_keys: HashMap<[u8; 32], Caller>,
    /// How many of `targets` are the provider and its fallbacks (the named routes' come
    /// after).
    default_targets: usize,
    /// The named routes, by the model name callers ask for, each with whether a target of
    /// its chain takes Anthropic's Messages API.
    routes: HashMap<String, (Upstream, bool)>,
    /// Each named route's name and its first target's, in the order configured.
    route_names: Vec<(String, String)>,
    /// Every client key's scope and its own daily budget, in the order configured.
    pub(crate) scopes: Vec<(BudgetScope, Option<ballast::cost::Usd>)>,
    /// The answer cache, when `BALLAST_CACHE_TTL` asks for one.
    cache: Option<AnswerCache>,
    /// Where token counts go: the first Anthropic target of the provider's chain.
    counter: Option<Counter>,
    /// Where Gemini's token counts go: the first Gemini target, if any.
    gemini_counter: Option<Counter>,
}

/// The gateway: an OpenAI-compatible front over a Ballast stack, or over a fallback chain
/// of them.
///
/// Routes: `POST /v1/chat/completions` and `POST /v1/responses` (streamed or not),
/// `POST /v1/messages` (Anthropic's Messages API: as it is to Anthropic targets, translated
/// to OpenAI-compatible and Gemini ones that name their model), `POST /v1/messages/count_tokens`
/// (Anthropic's token count, from the first Anthropic target), `POST
/// /v1beta/models/{model}:generateContent` and `:streamGenerateContent` (Gemini's API, to
/// the Gemini targets),
/// `GET /v1/models` (the configured
/// targets' models), `GET /healthz` (liveness), `GET /readyz` (readiness: 503 only when no
/// target can serve or the budget is spent), `GET /metrics` (Prometheus, when a handle is
/// given), and with an admin token `GET /admin/breakers`, `POST /admin/breakers/reset`,
/// `GET /admin/budget`. Any other path is a 404 in OpenAI's error shape.
#[derive(Clone)]
pub struct Gateway {
    app: Arc<App>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.app.targets.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("Gateway")
            .field("targets", &names)
            .field("upstream", &self.app.upstream_uri)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// The gateway `config` describes, calling out with the facade's HTTPS client;
    /// `/metrics` renders `prometheus` when given.
    pub fn new(
        config: &GatewayConfig,
        prometheus: Option<PrometheusHandle>,
    ) -> Result<Self, BoxError> {
        let primary = config.provider.clone();
        // One budget for every stack and route: one store.
        let store = Arc::new(MemoryStore::new());
        let base = primary.base_url.to_string();
        let upstream_uri: http::Uri =
            format!("{}/chat/completions", base.trim_end_matches('/')).parse()?;
        let responses_uri: http::Uri =
            format!("{}/responses", base.trim_end_matches('/')).parse()?;
        let messages_uri: http::Uri = format!("{}/messages", base.trim_end_matches('/')).parse()?;
        let embeddings_uri: http::Uri =
            format!("{}/embeddings", base.trim_end_matches('/')).parse()?;
        let completions_uri: http::Uri =
            format!("{}/completions", base.trim_end_matches('/')).parse()?;
        // Which of the caller APIs the provider's chain serves. The primary is asked for the
        // caller's model: it takes Messages only as Anthropic, embeddings as it is.
        // The provider's chain: the primary, then its fallbacks.
        let chain = || {
            std::iter::once(&config.provider)
                .chain(config.fallbacks.iter().map(|fallback| &fallback.config))
        };
        let chain_serves = |dialect| {
            primary.preset.api().may_serve(dialect, false)
                || config
                    .fallbacks
                    .iter()
                    .any(|target| may_serve(target, dialect))
        };
        let serves_completions = chain_serves(Dialect::Completions);
        let serves_embeddings = chain_serves(Dialect::Embeddings);
        let speaks_messages = chain_serves(Dialect::Messages);
        let speaks_gemini = chain_serves(Dialect::Gemini);
        let base_path = base.trim_end_matches('/').to_owned();
        let passes_through = primary.preset.api() == ballast::route::Api::OpenAi;
        // One stack when the primary speaks chat and nothing comes after it; otherwise a
        // route (fallbacks, or a primary whose API the caller's chat is translated to).
        let (upstream, targets, budget, health) =
            if config.fallbacks.is_empty() && primary.preset.api() == Api::OpenAi {
                let model = primary.preset.default_model().to_owned();
                let name = primary.preset.name().to_owned();
                let builder = scoped(
                    config,
                    StackBuilder::new(primary),
                    StackBuilder::scope_budget,
                );
                let builder = if config.hedge {
                    builder
                } else {
                    builder.no_hedge()
                };
                let builder = match config.throttle {
                    ThrottleSetting::Auto => builder,
                    ThrottleSetting::Off => builder.no_throttle(),
                    ThrottleSetting::PerMinute(rpm) => {
                        builder.throttle(ballast::throttle::ThrottleConfig::starting_at(rpm))
                    }
                };
                let stack = builder.budget_store(Arc::clone(&store)).build_https()?;
                (
                    BoxCloneSyncService::new(stack.service),
                    vec![TargetInfo {
                        name,
                        model,
                        breakers: stack.breaker,
                        throttle: stack.throttle,
                    }],
                    stack.budget,
                    stack.health,
                )
            } else {
                let mut models = vec![primary.preset.default_model().to_owned()];
                let mut route = scoped(
                    config,
                    RouteBuilder::new(primary).budget_store(Arc::clone(&store)),
                    RouteBuilder::scope_budget,
                );
                for fallback in &config.fallbacks {
                    models.push(
                        fallback
                            .model
                            .clone()
                            .unwrap_or_else(|| fallback.config.preset.default_model().to_owned()),
                    );
                    let (config, model) = (fallback.config.clone(), fallback.model.as_deref());
                    route = if fallback.alongside {
                        route.alongside(config, model)
                    } else {
                        route.fallback(config, model)
                    };
                }
                if !config.hedge {
                    route = route.no_hedge();
                }
                let route = route.build_https()?;
                let (_, first) = &route.targets[0];
                let targets = route
                    .targets
                    .iter()
                    .zip(models)
                    .map(|((name, stack), model)| TargetInfo {
                        name: name.clone(),
                        model,
                        breakers: stack.breaker.clone(),
                        throttle: stack.throttle.clone(),
                    })
                    .collect();
                (
                    BoxCloneSyncService::new(route.service),
                    targets,
                    first.budget.clone(),
                    first.health.clone(),
                )
            };
        let mut app = App {
            upstream,
            upstream_uri,
            responses_uri,
            messages_uri,
            speaks_messages,
            speaks_gemini,
            embeddings_uri,
            passes_through,
            serves_embeddings,
            completions_uri,
            serves_completions,
            base: base_path,
            default_targets: targets.len(),
            targets,
            budget,
            health,
            prometheus,
            body_timeout: config.body_timeout,
            cache: config
                .cache_ttl
                .map(|ttl| AnswerCache::new(ttl, config.cache_bytes)),
            counter: Counter::first_of(ballast::Preset::Anthropic, chain())?,
            gemini_counter: Counter::first_of(ballast::Preset::Gemini, chain())?,
            admin_token: config.admin_token.clone(),
            client_keys: HashMap::new(),
            scopes: Vec::new(),
            routes: HashMap::new(),
            route_names: Vec::new(),
        };
        for named in &config.routes {
            let Some(route) = RouteBuilder::from_chain(named.chain.clone()) else {
                continue;
            };
            let mut route = scoped(
                config,
                route.budget_store(Arc::clone(&store)),
                RouteBuilder::scope_budget,
            );
            if !config.hedge {
                route = route.no_hedge();
            }
            let route = route.build_https()?;
            for ((name, stack), target) in route.targets.iter().zip(&named.chain) {
                app.targets.push(TargetInfo {
                    name: format!("{}/{name}", named.model),
                    model: target
                        .model
                        .clone()
                        .unwrap_or_else(|| target.config.preset.default_model().to_owned()),
                    breakers: stack.breaker.clone(),
                    throttle: stack.throttle.clone(),
                });
            }
            let owner = route.targets[0].0.clone();
            let speaks_messages = named
                .chain
                .iter()
                .any(|target| may_serve(target, Dialect::Messages));
            app.routes.insert(
                named.model.clone(),
                (BoxCloneSyncService::new(route.service), speaks_messages),
            );
            app.route_names.push((named.model.clone(), owner));
        }
        for key in &config.client_keys {
            let scope = BudgetScope(Arc::from(key.name.as_str()));
            let rate = key.rpm.map(|rpm| (rpm, KeyRate::new(rpm)));
            app.client_keys.insert(
                key.sha256,
                Caller {
                    scope: scope.clone(),
                    rate,
                },
            );
            app.scopes.push((scope, key.daily_budget));
        }
        Ok(Self { app: Arc::new(app) })
    }

    /// The routes, ready to serve.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(status_page))
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/responses", post(responses))
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/completions", post(completions))
            .route("/v1/moderations", post(passthrough))
            .route("/v1/images/{operation}", post(passthrough))
            .route("/v1/audio/{operation}", post(passthrough))
            .route("/v1beta/models/{call}", post(gemini))
            .route("/v1/models", get(models))
            .route("/v1/models/{*id}", get(model))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .merge(crate::admin::routes())
            .fallback(not_found)
            // After every route: it is set on the routes registered so far.
            .method_not_allowed_fallback(method_not_allowed)
            // The stack reads the body under its own cap (32 MiB), answering 413 in
            // OpenAI's shape; axum's 2 MB default would answer in plain text first.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(Arc::clone(&self.app))
    }

    /// Lands the budget settlements a store refused (call before the process ends).
    pub async fn flush(&self) {
        self.app.budget.flush().await;
    }
}

/// Whether a route's target may take a call in `dialect`, by the route's own rule
/// ([`Api::may_serve`]), decided here before any target exists to ask.
fn may_serve(target: &ballast::FallbackConfig, dialect: Dialect) -> bool {
    target
        .config
        .preset
        .api()
        .may_serve(dialect, target.model.is_some())
}

/// `builder` with each client key's scope given its daily budget through `scope_budget`:
/// its own, or the global one for a key without (so that its spend is still counted in
/// its scope, where the read-out finds it).
fn scoped<B>(
    config: &GatewayConfig,
    builder: B,
    scope_budget: impl Fn(B, &str, ballast::cost::Usd) -> B,
) -> B {
    config.client_keys.iter().fold(builder, |builder, key| {
        let limit = key.daily_budget.unwrap_or(config.provider.daily_budget);
        scope_budget(builder, &key.name, limit)
    })
}

/// The caller's key's entry, or the message of the 401 to answer; `Ok(None)` when the
/// gateway has no client keys.
fn caller<'a>(app: &'a App, headers: &http::HeaderMap) -> Result<Option<&'a Caller>, &'static str> {
    if app.client_keys.is_empty() {
        return Ok(None);
    }
    // A bearer token (OpenAI's SDKs), `x-api-key` (Anthropic's) or `x-goog-api-key`
    // (Google's).
    let offered = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .or_else(|| {
            ["x-api-key", "x-goog-api-key"]
                .iter()
                .find_map(|name| headers.get(*name).and_then(|value| value.to_str().ok()))
        })
        .map(str::trim);
    let Some(offered) = offered.filter(|key| !key.is_empty()) else {
        return Err("This gateway needs a client key, sent as a bearer token or in x-api-key.");
    };
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(offered.as_bytes()).into();
    match app.client_keys.get(&digest) {
        Some(caller) => Ok(Some(caller)),
        // Never the key itself, in the answer or the log.
        None => Err("The client key is not known to this gateway."),
    }
}

/// An error in OpenAI's shape, `kind` as its `type` and its `code` (as [`Fallback`]'s).
pub(crate) fn openai_error(status: http::StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": {
        "message": message,
        "type": kind,
        "param": null,
        "code": kind,
    }});
    (status, axum::Json(body)).into_response()
}

/// `POST /v1/chat/completions`: see [`forward`].
async fn chat_completions(
    State(app): State<Arc<App>>,
    headers: http::HeaderMap,
    body: Body,
) -> Response {
    let uri = app.upstream_uri.clone();
    forward(&app, &headers, body, uri, Dialect::Chat).await
}

/// `POST /v1/responses` (OpenAI's Responses API, as xAI and OpenAI serve it; translated
/// for Anthropic and Gemini targets): see [`forward`]. A target that cannot take a
/// Responses request (one the translation cannot carry) is passed over.
async fn responses(State(app): State<Arc<App>>, headers: http::HeaderMap, body: Body) -> Response {
    let uri = app.responses_uri.clone();
    forward(&app, &headers, body, uri, Dialect::Responses).await
}

/// `POST /v1/messages` (Anthropic's Messages API, for Anthropic's SDKs and the tools built
/// on them): see [`forward`]. The request goes as it is to a target that speaks
/// Anthropic's API, with the caller's `anthropic-version` (or `2023-06-01`) and
/// `anthropic-beta`, or translated to an OpenAI-compatible or Gemini fallback that names its model
/// (`openai:gpt-4o-mini`), the answer back as Anthropic's; the route passes the other
/// targets over. Errors come back in Anthropic's shape. A gateway with no such target
/// answers 404 at once.
async fn messages(State(app): State<Arc<App>>, headers: http::HeaderMap, body: Body) -> Response {
    let uri = app.messages_uri.clone();
    forward(&app, &headers, body, uri, Dialect::Messages).await
}

/// `POST /v1/embeddings` (OpenAI's Embeddings API, as every OpenAI-compatible API serves
/// it): see [`forward`]. The call goes as it was asked (no output cap or stream option is
/// added: the API refuses fields it does not know), priced at its input tokens; a route
/// passes over every target that would answer from another model (one that names its
/// own, whose vectors would sit in another space than the caller's) or that has no such
/// API (Anthropic, Gemini). A gateway whose chain has no such target answers 404 at once.
async fn embeddings(State(app): State<Arc<App>>, headers: http::HeaderMap, body: Body) -> Response {
    if !app.serves_embeddings {
        return openai_error(
            http::StatusCode::NOT_FOUND,
            "not_found",
            NO_EMBEDDINGS_TARGET,
        );
    }
    let uri = app.embeddings_uri.clone();
    forward(&app, &headers, body, uri, Dialect::Embeddings).await
}

/// `POST /v1/completions` (the legacy Completions API: fill-in-the-middle for code editors,
/// base models): see [`forward`]. Through the whole stack as chat is (its cap in
/// `max_tokens`, its stream passed on from its first text), to the OpenAI-compatible
/// targets of the chain; 404 at once on a gateway without one.
async fn completions(
    State(app): State<Arc<App>>,
    headers: http::HeaderMap,
    body: Body,
) -> Response {
    if !app.serves_completions {
        return openai_error(
            http::StatusCode::NOT_FOUND,
            "not_found",
            "No target of this gateway serves legacy completions: they need an OpenAI-compatible target.",
        );
    }
    let uri = app.completions_uri.clone();
    forward(&app, &headers, body, uri, Dialect::Completions).await
}

/// `POST /v1/moderations`, `/v1/images/{operation}` and `/v1/audio/{operation}`: the
/// OpenAI calls that are not text generation, through the whole stack to the primary as
/// they came (their `content-type`, a form's boundary included, and body; nothing written
/// into them): paced, retried, behind the breaker and the budget, and charged what their
/// answers report (`Dialect::Other`: an image of `gpt-image-1` by its usage, a moderation
/// nothing, an answer without usage logged unpriced). Never cached, never hedged, never
/// sent to a fallback. 404 at once when the primary is not OpenAI-compatible.
async fn passthrough(
    State(app): State<Arc<App>>,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Body,
) -> Response {
    if !app.passes_through {
        return openai_error(
            http::StatusCode::NOT_FOUND,
            "not_found",
            "This gateway's provider is not OpenAI-compatible: it serves no moderations, images or audio.",
        );
    }
    let rest = uri.path().strip_prefix("/v1").unwrap_or(uri.path());
    let upstream = match uri.query() {
        Some(query) => format!("{}{rest}?{query}", app.base),
        None => format!("{}{rest}", app.base),
    };
    let Ok(upstream) = upstream.parse() else {
        return openai_error(
            http::StatusCode::BAD_REQUEST,
            "bad_request",
            "A path the provider cannot be asked for.",
        );
    };
    let kind = headers.get(http::header::CONTENT_TYPE).cloned();
    forward_as(&app, &headers, body, upstream, Dialect::Other, kind).await
}

/// The message of the 404 for an embeddings call on a gateway none of whose targets serves
/// it.
const NO_EMBEDDINGS_TARGET: &str = "No target of this gateway serves embeddings: they need an OpenAI-compatible target asked for the caller's model (BALLAST_PROVIDER=openai, or openai in BALLAST_FALLBACKS without a model of its own).";

/// `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`, and the
/// embeddings' `:embedContent` and `:batchEmbedContents` (Gemini's API, for Google's Gen AI
/// SDKs pointed at the gateway): see [`forward`]. The call goes as
/// it is to the provider's chain, which passes every target but Gemini's over (a Gemini
/// target that names its model asks for that one); errors in Gemini's shape. The caller's
/// key, in `x-goog-api-key` or the query's `key`, is never sent on. 404 in Gemini's shape
/// for another method, or on a gateway with no Gemini target.
async fn gemini(
    State(app): State<Arc<App>>,
    axum::extract::Path(call): axum::extract::Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: http::HeaderMap,
    body: Body,
) -> Response {
    let not_found = |message: &str| {
        error_answer(
            Dialect::Gemini,
            http::StatusCode::NOT_FOUND,
            "not_found",
            None,
            message,
        )
        .map(Body::from)
    };
    if !app.speaks_gemini {
        return not_found(NO_GEMINI_TARGET);
    }
    // A token count: from the first Gemini target, outside the stack as Anthropic's is
    // (see [`count_tokens`](crate::count_tokens)).
    if call.ends_with(":countTokens") {
        let counter = app.gemini_counter.as_ref().ok_or(NO_GEMINI_TARGET);
        return count(&app, &headers, body, Dialect::Gemini, counter, Some(&call)).await;
    }
    const METHODS: [&str; 4] = [
        ":generateContent",
        ":streamGenerateContent",
        ":embedContent",
        ":batchEmbedContents",
    ];
    if !METHODS.iter().any(|method| call.ends_with(method)) {
        return not_found(
            "This gateway serves generateContent, streamGenerateContent, embedContent, batchEmbedContents and countTokens.",
        );
    }
    let query = query.as_deref().map(without_key).filter(|q| !q.is_empty());
    let uri = match query {
        Some(query) => format!("{}/models/{call}?{query}", app.base),
        None => format!("{}/models/{call}", app.base),
    };
    let Ok(uri) = uri.parse::<http::Uri>() else {
        return not_found("The model's name is not one this gateway can ask for.");
    };
    forward(&app, &headers, body, uri, Dialect::Gemini).await
}

/// The message of the 404 for a Gemini call on a gateway without a Gemini target.
const NO_GEMINI_TARGET: &str = "No target of this gateway speaks Gemini's API: add a gemini target (BALLAST_PROVIDER=gemini, or gemini in BALLAST_FALLBACKS).";

/// A query without its `key` parameters: Gemini's API takes a key there, and the caller's
/// credentials never go further.
fn without_key(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| pair.split('=').next() != Some("key") && !pair.is_empty())
        .collect::<Vec<_>>()
        .join("&")
}

/// The message of the 404 for a Messages call no target can take.
const NO_MESSAGES_TARGET: &str = "No target of this gateway takes Anthropic's Messages API: add an anthropic target (BALLAST_PROVIDER=anthropic, or anthropic in BALLAST_FALLBACKS or a route's chain), or a fallback that names its model (openai:gpt-4o-mini).";

/// The Anthropic headers a Messages call takes from its caller: the API version (required:
/// Anthropic's own default when the caller sent none) and the beta features asked for.
pub(crate) fn anthropic_headers(from: &http::HeaderMap, to: &mut http::HeaderMap) {
    const VERSION: http::HeaderName = http::HeaderName::from_static("anthropic-version");
    const BETA: http::HeaderName = http::HeaderName::from_static("anthropic-beta");
    let version = from
        .get(&VERSION)
        .cloned()
        .unwrap_or(http::HeaderValue::from_static("2023-06-01"));
    to.insert(VERSION, version);
    for beta in from.get_all(&BETA) {
        to.append(BETA, beta.clone());
    }
}

/// Forwards the body to `uri` through the stack and answers with what came back, a failed
/// stream ended in `dialect`'s error event, any failure in `dialect`'s error shape. The
/// body goes in as it arrives, due whole within the body timeout (408 after it): the stack
/// reads it once, under its size cap (413 past it, and nothing is sent).
async fn forward(
    app: &App,
    headers: &http::HeaderMap,
    body: Body,
    uri: http::Uri,
    dialect: Dialect,
) -> Response {
    forward_as(app, headers, body, uri, dialect, None).await
}

/// [`forward`], the body sent as `kind` (its `content-type`) when given, JSON otherwise; a
/// call with no reading ([`Dialect::Other`]) is never cached.
async fn forward_as(
    app: &App,
    headers: &http::HeaderMap,
    body: Body,
    uri: http::Uri,
    dialect: Dialect,
    kind: Option<http::HeaderValue>,
) -> Response {
    let refuse = |status: http::StatusCode, kind: &str, message: &str| -> Response {
        error_answer(dialect, status, kind, Some(kind), message).map(Body::from)
    };
    let caller = match caller(app, headers) {
        Ok(caller) => caller,
        Err(message) => {
            return refuse(http::StatusCode::UNAUTHORIZED, "invalid_api_key", message);
        }
    };
    if let Some((rpm, rate)) = caller.and_then(|caller| caller.rate.as_ref())
        && let Err(wait) = rate.admit(tokio::time::Instant::now())
    {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut answer = refuse(
            http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!(
                "This client key's share is {rpm} requests a minute; try again in {seconds} s."
            ),
        );
        answer
            .headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        return answer;
    }
    let scope = caller.map(|caller| caller.scope.clone());
    let timed_out = Arc::new(AtomicBool::new(false));
    let deadline = tokio::time::Instant::now() + app.body_timeout;
    let (mut upstream, mut speaks_messages) = (&app.upstream, app.speaks_messages);
    // What the call asks of the cache, read only when there is one.
    let (cache, asked) = match &app.cache {
        Some(_) if dialect == Dialect::Other => (None, Asked::Bypass),
        Some(cache) => match Asked::of(headers) {
            Asked::Bypass => (None, Asked::Bypass),
            asked => (Some(cache), asked),
        },
        None => (None, Asked::Bypass),
    };
    // The key a whole answer to this call is kept under.
    let mut keep = None;
    // Leading identical calls in flight: they wait until this is dropped, at the end.
    let mut _leading = None;
    // With named routes the model decides the route, and with the cache the whole call is
    // its key: the body is read here (under the same deadline and cap as the stack's), and
    // handed on whole.
    let body = if app.routes.is_empty() && cache.is_none() {
        body
    } else {
        let bytes = match read_whole(app, body, deadline, &timed_out, dialect).await {
            Ok(bytes) => bytes,
            Err(answer) => return answer,
        };
        if !app.routes.is_empty()
            && let Some((route, speaks)) =
                requested_model(&bytes).and_then(|model| app.routes.get(&model))
        {
            (upstream, speaks_messages) = (route, *speaks);
        }
        if let Some(cache) = cache {
            let scope = scope.as_ref().map_or("", |scope| &scope.0);
            let key = AnswerCache::key(scope, uri.path(), headers, &bytes);
            if asked == Asked::Use
                && let Some(hit) = cache.get(&key, tokio::time::Instant::now())
            {
                metrics::counter!("ballast_cache_answers_total", "result" => "hit").increment(1);
                return from_cache(&hit);
            }
            // An identical call in flight: wait for its answer (not for a stream, whose
            // answer is kept only at its end, nor for a caller asking afresh).
            if asked == Asked::Use && !streamed(uri.path(), &bytes) {
                match cache.fly(key) {
                    Flight::Lead(guard) => _leading = Some(guard),
                    Flight::Follow(leader) => {
                        Flight::wait(leader).await;
                        if let Some(hit) = cache.get(&key, tokio::time::Instant::now()) {
                            metrics::counter!("ballast_cache_answers_total", "result" => "coalesced")
                                .increment(1);
                            return from_cache(&hit);
                        }
                        // Nothing kept (it failed, or its caller left): this call goes on
                        // by itself.
                    }
                }
            }
            keep = Some((cache, key));
        }
        Body::from(bytes)
    };
    if dialect == Dialect::Messages && !speaks_messages {
        return refuse(http::StatusCode::NOT_FOUND, "not_found", NO_MESSAGES_TARGET);
    }
    let body = DeadlineBody::new(body, deadline, Arc::clone(&timed_out));
    let mut request = http::Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        kind.unwrap_or(http::HeaderValue::from_static("application/json")),
    );
    if dialect == Dialect::Messages {
        anthropic_headers(headers, request.headers_mut());
    }
    if let Some(scope) = scope {
        request.extensions_mut().insert(scope);
    }
    // The caller's own timeout, when it sends one: no wait in the stack outlasts it.
    if let Some(within) = crate::timeout::callers_time(headers) {
        ballast::classify::Deadline::after(within).set_sooner(request.extensions_mut());
    }
    let tally = CostTally::default();
    request.extensions_mut().insert(tally.clone());
    let result = upstream.clone().oneshot(request).await;
    if timed_out.load(Ordering::Acquire) {
        return body_timed_out(app, dialect);
    }
    let outcome = Outcome::from_result(&result);
    // Who answered, and whether the answer is whole (a stream's last call is counted when
    // it ends, after the headers).
    // A single stack's answer carries no `Served`: its one target answered.
    let (target, whole) = match &result {
        Ok(response) => (
            Some(Served::of(response).map_or(app.targets[0].name.as_str(), |s| &s.target)),
            !response.body().is_streaming(),
        ),
        Err(_) => (None, true),
    };
    let target = target.and_then(|name| http::HeaderValue::from_str(name).ok());
    let mut answer = match result {
        Ok(response) if outcome.is_success() => {
            let (mut parts, body) = response.into_parts();
            keep_allowed_headers(&mut parts.headers);
            // A stream that fails after its first content ends with an error event the
            // SDK raises, never with `[DONE]`.
            let body = match keep {
                None => Body::new(InBandErrors::new(body, dialect)),
                Some((cache, key)) => {
                    metrics::counter!("ballast_cache_answers_total", "result" => "miss")
                        .increment(1);
                    parts
                        .headers
                        .insert(CACHE, http::HeaderValue::from_static("miss"));
                    let answer = Cached {
                        status: parts.status,
                        headers: parts.headers.clone(),
                        body: body.bytes().cloned().unwrap_or_default(),
                        target: target.clone(),
                        kept: tokio::time::Instant::now(),
                    };
                    if body.is_streaming() {
                        // Kept once it has ended well.
                        let body = Keeping::new(body, cache.clone(), key, answer);
                        Body::new(InBandErrors::new(body, dialect))
                    } else {
                        cache.put(key, answer);
                        Body::new(InBandErrors::new(body, dialect))
                    }
                }
            };
            Response::from_parts(parts, body)
        }
        // The caller can fix it: the provider's message, masked (an upstream that echoes a
        // key does not hand it on) and in OpenAI's error shape, not its body as it came.
        Ok(response) if is_callers_fault(outcome.class()) => {
            let detail = response.extensions().get::<ProviderError>();
            let message = detail
                .and_then(ProviderError::message)
                .unwrap_or("The request could not be processed.");
            let mut answer = error_answer(
                dialect,
                response.status(),
                outcome.class().as_str(),
                detail.and_then(ProviderError::code),
                message,
            )
            .map(Body::from);
            for (name, value) in response.headers() {
                if is_allowed_header(name)
                    && name != http::header::CONTENT_TYPE
                    && name != http::header::CONTENT_LENGTH
                {
                    answer.headers_mut().insert(name, value.clone());
                }
            }
            answer
        }
        Ok(_) => {
            tracing::warn!(class = %outcome.class(), status = ?outcome.status(), "upstream failed; answering with a fallback");
            Fallback::from_outcome(&outcome)
                .into_response_in(dialect)
                .map(Body::from)
        }
        Err(error) => Fallback::from_error(&*error)
            .into_response_in(dialect)
            .map(Body::from),
    };
    report(answer.headers_mut(), target, whole.then_some(&tally));
    answer
}

/// `body` read whole, due by `deadline` (raising `timed_out` past it) and under the
/// stack's size cap; or the answer for a body that could not be: 408, 413 or 400 in
/// `dialect`'s error shape.
async fn read_whole(
    app: &App,
    body: Body,
    deadline: tokio::time::Instant,
    timed_out: &Arc<AtomicBool>,
    dialect: Dialect,
) -> Result<bytes::Bytes, Response> {
    let refuse = |status: http::StatusCode, message: &str| -> Response {
        error_answer(dialect, status, "bad_request", Some("bad_request"), message).map(Body::from)
    };
    let read = http_body_util::Limited::new(
        DeadlineBody::new(body, deadline, Arc::clone(timed_out)),
        ROUTED_BODY_LIMIT,
    );
    match http_body_util::BodyExt::collect(read).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) if timed_out.load(Ordering::Acquire) => Err(body_timed_out(app, dialect)),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(refuse(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "The request is too large.",
        )),
        Err(_) => Err(refuse(
            http::StatusCode::BAD_REQUEST,
            "The request body could not be read.",
        )),
    }
}

/// `POST /v1/messages/count_tokens`: Anthropic's token count, from the first Anthropic
/// target (see [`count_tokens`](crate::count_tokens)); 404 in Anthropic's shape without
/// one. A client key is checked as for any call, but a count takes nothing of its share.
async fn count_tokens(
    State(app): State<Arc<App>>,
    headers: http::HeaderMap,
    body: Body,
) -> Response {
    let missing = "No target of this gateway counts tokens: add an anthropic target (BALLAST_PROVIDER=anthropic, or anthropic in BALLAST_FALLBACKS); without one, count with your own estimate.";
    let counter = app.counter.as_ref().ok_or(missing);
    count(&app, &headers, body, Dialect::Messages, counter, None).await
}

/// A token count by `counter` (or its 404, `Err` the message), of `body` for `call` (a
/// Gemini `{model}:countTokens`), answered in `dialect`: a client key is checked as for any
/// call, but a count takes nothing of its share.
async fn count(
    app: &App,
    headers: &http::HeaderMap,
    body: Body,
    dialect: Dialect,
    counter: Result<&Counter, &str>,
    call: Option<&str>,
) -> Response {
    let refuse = |status: http::StatusCode, kind: &str, message: &str| -> Response {
        error_answer(dialect, status, kind, Some(kind), message).map(Body::from)
    };
    if let Err(message) = caller(app, headers) {
        return refuse(http::StatusCode::UNAUTHORIZED, "invalid_api_key", message);
    }
    let counter = match counter {
        Ok(counter) => counter,
        Err(missing) => return refuse(http::StatusCode::NOT_FOUND, "not_found", missing),
    };
    let timed_out = Arc::new(AtomicBool::new(false));
    let deadline = tokio::time::Instant::now() + app.body_timeout;
    match read_whole(app, body, deadline, &timed_out, dialect).await {
        Ok(bytes) => counter.count(headers, bytes, call).await,
        Err(answer) => answer,
    }
}

/// The gateway's own answer headers: `x-ballast-target`, the target that answered (or
/// whose failure this is), and for an answer that is not streamed `x-ballast-calls`, the
/// provider calls the call made (retries, hedges and every target tried), and
/// `x-ballast-cost-usd`, what they were counted to cost.
fn report(
    headers: &mut http::HeaderMap,
    target: Option<http::HeaderValue>,
    tally: Option<&CostTally>,
) {
    if let Some(value) = target {
        headers.insert(TARGET, value);
    }
    if let Some(tally) = tally {
        headers.insert(CALLS, http::HeaderValue::from(tally.calls()));
        let cost = tally.total().to_string();
        if let Ok(value) = http::HeaderValue::from_str(cost.trim_start_matches('$')) {
            headers.insert(COST, value);
        }
    }
}

/// An answer kept in the cache, answered again: its status, headers, body and target,
/// `x-ballast-cache: hit`, `Age` (whole seconds since it was kept), no calls at no cost.
fn from_cache(hit: &Cached) -> Response {
    let mut answer = Response::new(Body::from(hit.body.clone()));
    *answer.status_mut() = hit.status;
    *answer.headers_mut() = hit.headers.clone();
    let headers = answer.headers_mut();
    headers.insert(CACHE, http::HeaderValue::from_static("hit"));
    let age = tokio::time::Instant::now().saturating_duration_since(hit.kept);
    headers.insert(http::header::AGE, http::HeaderValue::from(age.as_secs()));
    report(headers, hit.target.clone(), Some(&CostTally::default()));
    answer
}

/// Whether a call to `path` with `body` asks for a stream (in the body, or Gemini's path).
fn streamed(path: &str, body: &bytes::Bytes) -> bool {
    ballast::classify::RequestFacts::read(path, body, &ballast::classify::HalfByteCount).is_stream()
}

/// Whether the answer came from the cache (`hit`) or was kept in it (`miss`).
const CACHE: http::HeaderName = http::HeaderName::from_static("x-ballast-cache");
/// The target that answered.
const TARGET: http::HeaderName = http::HeaderName::from_static("x-ballast-target");
/// The provider calls the call made.
const CALLS: http::HeaderName = http::HeaderName::from_static("x-ballast-calls");
/// What the call's provider calls were counted to cost, in US dollars.
const COST: http::HeaderName = http::HeaderName::from_static("x-ballast-cost-usd");

/// The most a request read by the gateway itself (to choose a named route) may hold: the
/// stack's own cap.
const ROUTED_BODY_LIMIT: usize = 32 << 20;

/// The 408 for a body that did not arrive in time, in `dialect`'s error shape.
fn body_timed_out(app: &App, dialect: Dialect) -> Response {
    let message = format!(
        "The request body did not arrive within {} s.",
        app.body_timeout.as_secs()
    );
    error_answer(
        dialect,
        http::StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        Some("request_timeout"),
        &message,
    )
    .map(Body::from)
}

/// The top-level `model` of a JSON request body, if it has one.
fn requested_model(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Model {
        model: Option<String>,
    }
    serde_json::from_slice::<Model>(body).ok()?.model
}

/// Failures only the caller can fix: they get the provider's own message.
fn is_callers_fault(class: OutcomeClass) -> bool {
    matches!(
        class,
        OutcomeClass::BadRequest | OutcomeClass::ContextTooLong | OutcomeClass::ContentFiltered
    )
}

/// The models the gateway names, with who serves each: the provider and its fallbacks
/// (the targets before the named routes' own), then each named route by the name callers
/// ask for.
fn named_models(app: &App) -> impl Iterator<Item = (&str, &str)> {
    app.targets[..app.default_targets]
        .iter()
        .map(|target| (target.model.as_str(), target.name.as_str()))
        .chain(
            app.route_names
                .iter()
                .map(|(route, owner)| (route.as_str(), owner.as_str())),
        )
}

/// One model in OpenAI's and Anthropic's shapes at once.
fn model_entry(id: &str, owner: &str) -> serde_json::Value {
    json!({
        "id": id,
        "object": "model",
        "created": 0,
        "owned_by": owner,
        "type": "model",
        "display_name": id,
        "created_at": "1970-01-01T00:00:00Z",
    })
}

/// The configured targets' models, in OpenAI's list shape (`owned_by` names the target)
/// and Anthropic's at once (`type`, `display_name`, `created_at`, `has_more`, `first_id`,
/// `last_id`): each SDK reads its own fields of the one list.
async fn models(State(app): State<Arc<App>>) -> Response {
    let data: Vec<_> = named_models(&app)
        .map(|(id, owner)| model_entry(id, owner))
        .collect();
    let (first, last) = (
        data.first().map(|m| m["id"].clone()),
        data.last().map(|m| m["id"].clone()),
    );
    axum::Json(json!({
        "object": "list",
        "data": data,
        "has_more": false,
        "first_id": first,
        "last_id": last,
    }))
    .into_response()
}

/// `GET /v1/models/{model}` (the SDKs' `models.retrieve`): the model, as `/v1/models` lists
/// it; 404 in OpenAI's shape for one the gateway does not name (a model id may hold `/`:
/// `x-ai/grok-code-fast-1`).
async fn model(
    State(app): State<Arc<App>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match named_models(&app).find(|(named, _)| *named == id) {
        Some((id, owner)) => axum::Json(model_entry(id, owner)).into_response(),
        None => openai_error(
            http::StatusCode::NOT_FOUND,
            "not_found",
            &format!("The model '{id}' is not one this gateway serves: see GET /v1/models."),
        ),
    }
}

/// Any other path: a 404 in OpenAI's error shape, not an empty one.
async fn not_found(uri: http::Uri) -> Response {
    openai_error(
        http::StatusCode::NOT_FOUND,
        "not_found",
        &format!(
            "No route for {}: this gateway serves POST /v1/chat/completions, /v1/responses and /v1/messages, GET /v1/models, /healthz, /readyz and /metrics.",
            uri.path()
        ),
    )
}

/// A known path asked with another method: 405 in OpenAI's shape (axum adds `Allow`). A
/// fallback of the router's, not a layer over every response: `map_response` would box a
/// future on every request's path.
async fn method_not_allowed() -> Response {
    openai_error(
        http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This path does not take that method (see the Allow header).",
    )
}

/// Liveness: the process answers. Always 200; `/readyz` says whether it can serve.
async fn healthz() -> Response {
    axum::Json(json!({"status": "alive"})).into_response()
}

/// Whether a breaker in `state` refuses calls (open or latched, not probing or shedding).
pub(crate) fn refuses(state: BreakerState) -> bool {
    !matches!(
        state,
        BreakerState::Closed | BreakerState::HalfOpen | BreakerState::Shedding
    )
}

/// Whether a target's breakers refuse every model it has been asked for: at least one key
/// refuses and none lets calls through (the overflow breaker counts only once it has had
/// calls). One model's open breaker does not make the target unable to serve the others.
fn cannot_serve(breakers: &[ballast::breaker::KeySnapshot]) -> bool {
    let mut keys = breakers.iter().filter(|b| {
        let unused_overflow = b.key.host() == "(overflow)" && b.calls == 0 && !refuses(b.state);
        !unused_overflow
    });
    let first = keys.next();
    first.is_some_and(|b| refuses(b.state)) && keys.all(|b| refuses(b.state))
}

/// Every target's breakers as JSON.
pub(crate) fn breakers_json(app: &App) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for target in &app.targets {
        out.extend(target.breakers.snapshot().into_iter().map(|b| {
            json!({
                "target": target.name,
                "key": b.key.to_string(),
                "host": b.key.host(),
                "model": b.key.model(),
                "state": b.state.as_str(),
                "calls": b.calls,
                "failures": b.failures,
                "failure_rate": b.failure_rate,
                "opened_total": b.opened_total,
                "waiting": b.waiting,
            })
        }));
    }
    out
}

/// Each client key's scope's read-out as JSON (limit and remaining `null` for a key with
/// no budget of its own: it has the global one's).
pub(crate) async fn scopes_json(app: &App) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (scope, own) in &app.scopes {
        match app.budget.readout(Some(&scope.0)).await {
            Ok(readout) => out.push(json!({
                "scope": &*scope.0,
                "limit_usd": own.map(|limit| limit.as_f64()),
                "spent_usd": readout.spent.as_f64(),
                "reserved_usd": readout.reserved.as_f64(),
                "remaining_usd": own.map(|_| readout.remaining().as_f64()),
            })),
            Err(error) => out.push(json!({"scope": &*scope.0, "error": error.to_string()})),
        }
    }
    out
}

/// The budget's read-out as JSON, and whether it is spent.
pub(crate) async fn budget_json(app: &App) -> (serde_json::Value, bool) {
    match app.budget.readout(None).await {
        Ok(readout) => (
            json!({
                "limit_usd": readout.limit.as_f64(),
                "spent_usd": readout.spent.as_f64(),
                "reserved_usd": readout.reserved.as_f64(),
                "remaining_usd": readout.remaining().as_f64(),
            }),
            readout.remaining().picos() == 0,
        ),
        Err(error) => (json!({ "error": error.to_string() }), false),
    }
}

/// Readiness, with the detail: 503 only when no target can serve (each has a breaker open
/// or latched) or the budget is spent; `status` is `ready`, `degraded` (serving, but the
/// error rate or latency is past its threshold) or `unavailable`.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let none_can_serve = app
        .targets
        .iter()
        .all(|target| cannot_serve(&target.breakers.snapshot()));
    let (budget, spent_out) = budget_json(&app).await;
    let health = app.health.status();
    let ok = !none_can_serve && !spent_out;
    let status = match (ok, health.is_healthy()) {
        (false, _) => "unavailable",
        (true, false) => "degraded",
        (true, true) => "ready",
    };
    let body = json!({
        "status": status,
        "breakers": breakers_json(&app),
        "budget": budget,
        "calls": {
            "in_window": health.calls,
            "error_rate": health.error_rate,
            "avg_latency_ms": health.avg_latency.as_millis() as u64,
            "healthy": health.is_healthy(),
        },
    });
    let status = if ok {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The status page: the story's three numbers (spend today, error rate, average latency)
/// against their thresholds, the budget left and every breaker, read from `/metrics` by
/// the page itself every 5 s. One static file, no build step.
async fn status_page() -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("status.html"),
    )
        .into_response()
}

/// A breaker state as the number `ballast_breaker_state` carries (the status page reads it
/// back by the same order).
fn state_code(state: BreakerState) -> f64 {
    match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Shedding => 2.0,
        BreakerState::Open { .. } => 3.0,
        BreakerState::Latched(_) => 4.0,
        BreakerState::ForcedOpen => 5.0,
        BreakerState::Disabled => 6.0,
    }
}

/// Sets the gauges that are read-outs rather than counts, at scrape time: the health
/// window's error rate and average latency, each breaker's state, each throttle's pace and
/// queue, and the budget's limit, spent, reserved and remaining.
async fn refresh_gauges(app: &App) {
    let health = app.health.status();
    metrics::gauge!("ballast_error_rate").set(health.error_rate);
    metrics::gauge!("ballast_avg_latency_seconds").set(health.avg_latency.as_secs_f64());
    metrics::gauge!("ballast_calls_in_window").set(health.calls as f64);
    for target in &app.targets {
        for breaker in target.breakers.snapshot() {
            metrics::gauge!(
                "ballast_breaker_state",
                "target" => target.name.clone(),
                "key" => breaker.key.to_string()
            )
            .set(state_code(breaker.state));
        }
        if let Some(throttle) = &target.throttle {
            let name = target.name.clone();
            metrics::gauge!("ballast_throttle_pace_rpm", "target" => name.clone())
                .set(throttle.rate_rpm());
            metrics::gauge!("ballast_throttle_queued", "target" => name)
                .set(throttle.queued() as f64);
        }
    }
    if let Ok(readout) = app.budget.readout(None).await {
        for (name, usd) in [
            ("ballast_budget_limit_usd", readout.limit),
            ("ballast_budget_spent_usd", readout.spent),
            ("ballast_budget_reserved_usd", readout.reserved),
            ("ballast_budget_remaining_usd", readout.remaining()),
        ] {
            metrics::gauge!(name, "scope" => "global").set(usd.as_f64());
        }
    }
    for (scope, own) in &app.scopes {
        if let Ok(readout) = app.budget.readout(Some(&scope.0)).await {
            let label = scope.0.to_string();
            metrics::gauge!("ballast_budget_spent_usd", "scope" => label.clone())
                .set(readout.spent.as_f64());
            metrics::gauge!("ballast_budget_reserved_usd", "scope" => label.clone())
                .set(readout.reserved.as_f64());
            if own.is_some() {
                metrics::gauge!("ballast_budget_limit_usd", "scope" => label.clone())
                    .set(readout.limit.as_f64());
                metrics::gauge!("ballast_budget_remaining_usd", "scope" => label)
                    .set(readout.remaining().as_f64());
            }
        }
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let Some(prometheus) = &app.prometheus else {
        return openai_error(
            http::StatusCode::NOT_FOUND,
            "not_found",
            "This gateway was started without a metrics recorder.",
        );
    };
    refresh_gauges(&app).await;
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast::breaker::{BreakerKey, KeySnapshot, LatchReason};

    /// A Gemini caller's key in the query never goes on; the rest of the query does.
    #[test]
    fn the_query_goes_on_without_its_key() {
        assert_eq!(without_key("alt=sse&key=AIza-secret"), "alt=sse");
        assert_eq!(without_key("key=AIza-secret"), "");
        assert_eq!(without_key("keyword=1&key&alt=sse"), "keyword=1&alt=sse");
    }

    fn key(host: &str, model: &str, state: BreakerState, calls: u32) -> KeySnapshot {
        KeySnapshot {
            key: BreakerKey::new(host, model),
            state,
            calls,
            failures: 0,
            slow: 0,
            failure_rate: 0.0,
            consecutive_failures: 0,
            trips: 0,
            opened_total: 0,
            refused: 0,
            shed: 0.0,
            waiting: 0,
        }
    }

    #[test]
    fn a_messages_call_takes_the_callers_version_and_betas_and_nothing_else() {
        let mut from = http::HeaderMap::new();
        let mut to = http::HeaderMap::new();
        anthropic_headers(&from, &mut to);
        assert_eq!(to.len(), 1);
        assert_eq!(to["anthropic-version"], "2023-06-01");

        from.insert("anthropic-version", "2024-01-01".parse().unwrap());
        from.append("anthropic-beta", "context-1m-2025-08-07".parse().unwrap());
        from.append(
            "anthropic-beta",
            "interleaved-thinking-2025-05-14".parse().unwrap(),
        );
        from.insert("x-api-key", "sk-ant-the-callers-own".parse().unwrap());
        let mut to = http::HeaderMap::new();
        anthropic_headers(&from, &mut to);
        assert_eq!(to["anthropic-version"], "2024-01-01");
        let betas: Vec<_> = to.get_all("anthropic-beta").iter().collect();
        assert_eq!(
            betas,
            ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"]
        );
        assert_eq!(to.len(), 3, "no key, no other header");
    }

    #[test]
    fn a_target_cannot_serve_only_when_every_key_it_was_asked_for_refuses() {
        let open = BreakerState::Open {
            retry_in: std::time::Duration::from_secs(5),
        };
        let latched = BreakerState::Latched(LatchReason::Auth);
        let overflow = key("(overflow)", "", BreakerState::Closed, 0);
        assert!(
            !cannot_serve(std::slice::from_ref(&overflow)),
            "nothing asked yet"
        );
        assert!(cannot_serve(&[
            key("api.x.ai", "a", open, 9),
            overflow.clone()
        ]));
        assert!(cannot_serve(&[
            key("api.x.ai", "a", open, 9),
            key("api.x.ai", "b", latched, 1),
            overflow.clone(),
        ]));
        assert!(
            !cannot_serve(&[
                key("api.x.ai", "a", open, 9),
                key("api.x.ai", "b", BreakerState::Closed, 30),
                overflow.clone(),
            ]),
            "model b is still served"
        );
        assert!(
            !cannot_serve(&[
                key("api.x.ai", "a", open, 9),
                key("(overflow)", "", BreakerState::Closed, 4),
            ]),
            "the overflow breaker serves models past the cap"
        );
        assert!(!cannot_serve(&[key(
            "api.x.ai",
            "a",
            BreakerState::HalfOpen,
            9
        )]));
    }
}
