//! An OpenAI-compatible proxy served by axum and backed by the Ballast stack.
//!
//! ```text
//! cargo run --release --example axum_proxy
//! curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model":"grok-code-fast-1","messages":[{"role":"user","content":"hi"}]}'
//! curl -s localhost:8080/healthz
//! curl -s localhost:8080/readyz
//! curl -s localhost:8080/metrics
//! ```
//!
//! - `POST /v1/chat/completions`: the body goes upstream as it is, through retry, breaker,
//!   budget, cost logging, timeout and classification; the answer comes back as it is.
//!   A streamed answer (`"stream": true`) is held back until its first content (a failure
//!   before it is retried, or failed over, unseen), then passed on as it comes; the stack
//!   asks for its usage (the usage-only chunk is kept from an SDK that did not ask) and
//!   settles its cost at its end; one that is cut, stalls or fails after content ends with
//!   an error event in OpenAI's shape, never with `[DONE]`. Point an OpenAI SDK at `http://127.0.0.1:8080/v1`
//!   with any API key: the proxy drops the caller's credentials and uses its own.
//!   Failures the caller can fix (bad request, context too long, content filtered) come
//!   back with the provider's own message, masked of anything key-like, in OpenAI's error
//!   shape; upstream headers are allow-listed (content type, request ids, rate-limit and
//!   retry headers); any other path is a 404 in the same shape. Every other failure becomes the `Fallback`
//!   answer (503, or 429 with `Retry-After` when the breaker is open or the budget spent),
//!   with the detail in the log, never in the answer.
//! - `GET /healthz`: liveness, always 200. `GET /readyz`: breaker states (per target),
//!   budget left, error rate and latency, as JSON; `status` `ready`, `degraded` (serving,
//!   past a health threshold) or `unavailable` (503: no target can serve, each has a
//!   breaker open, or the budget is spent).
//! - `GET /metrics`: Prometheus text (every `ballast_*` metric the layers record).
//!
//! Environment: `BALLAST_LISTEN` (default `127.0.0.1:8080`); with `XAI_API_KEY` the upstream
//! is `XAI_BASE_URL` (default `https://api.x.ai/v1`), without it the simulated provider's bad
//! day on loopback, in real time. `BALLAST_FALLBACKS` (`openai:gpt-4o-mini,...`, each with
//! its own key and base URL variables) puts fallbacks behind it: a call the primary cannot
//! serve goes to the next (`RouteBuilder`); `/readyz` then reports every target's breakers
//! and is degraded only when none can serve. `DAILY_BUDGET_USD`, `MAX_TOKENS_DEFAULT`, `REQUEST_TIMEOUT`
//! as the facade reads them; `BALLAST_THROTTLE` = `auto` (default: the preset's throttle,
//! on for xAI), `off`, or a starting pace in requests per minute; `RUST_LOG` for the log
//! (default `info`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ballast::breaker::{BreakerHandle, BreakerState};
use ballast::budget::{BudgetLayer, MemoryStore};
use ballast::classify::{BoxError, ClassifiedBody, Dialect, Outcome, OutcomeClass, ProviderError};
use ballast::cost::HealthMonitor;
use ballast::{Config, Fallback, InBandErrors, Preset, RouteBuilder, StackBuilder};
use ballast_sim::{Scenario, SimServer, Simulator};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// The stack, or the route over the stacks of the primary and its fallbacks.
type Upstream = BoxCloneSyncService<
    http::Request<Body>,
    http::Response<ClassifiedBody<hyper::body::Incoming>>,
    BoxError,
>;

struct App {
    stack: Upstream,
    upstream: http::Uri,
    /// Each target's name and breakers, the primary first.
    breakers: Vec<(String, BreakerHandle)>,
    budget: BudgetLayer<Arc<MemoryStore>>,
    health: HealthMonitor,
    prometheus: PrometheusHandle,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colour only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    // A host name (`localhost:8080`) or an address; the first address it resolves to.
    let listen: SocketAddr = match std::env::var("BALLAST_LISTEN") {
        Ok(value) => {
            let expected = || {
                format!(
                    "BALLAST_LISTEN: expected host:port such as 127.0.0.1:8080 or localhost:8080, got {value:?}"
                )
            };
            tokio::net::lookup_host(value.trim())
                .await
                .map_err(|_| expected())?
                .next()
                .ok_or_else(expected)?
        }
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 8080)),
    };

    let mut config = Config::from_env(Preset::XAi)?;
    // Kept alive for as long as the proxy runs.
    let _simulated = if config.api_key.is_none() {
        let server = SimServer::start(Simulator::new(Scenario::bad_day())).await?;
        config.base_url = format!("{}/v1", server.url()).parse()?;
        tracing::info!(upstream = %config.base_url, "no XAI_API_KEY: the upstream is the simulated provider's bad day");
        Some(server)
    } else {
        tracing::info!(upstream = %config.base_url, "live upstream");
        None
    };
    let upstream = format!(
        "{}/chat/completions",
        config.base_url.to_string().trim_end_matches('/')
    )
    .parse()?;
    let config_for_route = config.clone();
    let builder = StackBuilder::new(config);
    let builder = match std::env::var("BALLAST_THROTTLE").as_deref().map(str::trim) {
        Err(_) | Ok("" | "auto") => builder,
        Ok("off") => builder.no_throttle(),
        Ok(rpm) => match rpm.parse::<f64>() {
            Ok(rpm) if rpm.is_finite() && rpm > 0.0 => {
                builder.throttle(ballast::throttle::ThrottleConfig::starting_at(rpm))
            }
            _ => {
                return Err(format!(
                    "BALLAST_THROTTLE: expected auto, off or requests per minute, got {rpm:?}"
                )
                .into());
            }
        },
    };
    let fallbacks = Config::fallbacks_from_env()?;
    let app = if fallbacks.is_empty() {
        let stack = builder
            .budget_store(Arc::new(MemoryStore::new()))
            .build_https()?;
        App {
            stack: BoxCloneSyncService::new(stack.service),
            upstream,
            breakers: vec![(Preset::XAi.name().to_owned(), stack.breaker)],
            budget: stack.budget,
            health: stack.health,
            prometheus,
        }
    } else {
        // BALLAST_FALLBACKS: a route, each target a whole stack with its preset's throttle,
        // one budget for all.
        let mut route = RouteBuilder::new(config_for_route);
        for fallback in fallbacks {
            tracing::info!(target = fallback.config.preset.name(), upstream = %fallback.config.base_url, model = ?fallback.model, "fallback");
            route = route.fallback(fallback.config, fallback.model.as_deref());
        }
        let route = route.build_https()?;
        let (_, primary) = &route.targets[0];
        App {
            budget: primary.budget.clone(),
            health: primary.health.clone(),
            breakers: route
                .targets
                .iter()
                .map(|(name, stack)| (name.clone(), stack.breaker.clone()))
                .collect(),
            stack: BoxCloneSyncService::new(route.service),
            upstream,
            prometheus,
        }
    };
    let budget = app.budget.clone();
    let app = Arc::new(app);
    let router = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        // The stack reads the body under its own cap (32 MiB), answering 413 in OpenAI's
        // shape; axum's 2 MB default would answer in plain text first.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, "ballast proxy listening");
    serve(listener, router).await;
    // Settlements a store refused land before the process goes (and stay in the outbox
    // file, when one is configured, if they still cannot).
    budget.flush().await;
    Ok(())
}

/// How long a connection may take to send a request's headers: a client trickling them
/// (slowloris) is closed after this, not held.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; one past it is closed at once, so a flood of idle
/// connections cannot take every descriptor.
const MAX_CONNECTIONS: usize = 1024;
/// How long in-flight calls get to finish on shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` with hyper's HTTP/1 server (axum's `serve` has no
/// header-read timeout): each connection under [`HEADER_READ_TIMEOUT`], at most
/// [`MAX_CONNECTIONS`] at once; on Ctrl-C or SIGTERM, stops accepting and lets in-flight
/// calls finish for up to [`DRAIN`].
async fn serve(listener: tokio::net::TcpListener, router: Router) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was taken: go on.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(max = MAX_CONNECTIONS, "connection refused: too many open");
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight calls still running after {DRAIN:?}: closing");
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: flushing kept settlements");
}

/// Forwards the body upstream through the stack and answers with what came back. The body
/// goes in as axum gave it: the stack reads it once, under its size cap (a longer one is
/// answered 413 in the OpenAI error shape, and nothing is sent).
async fn chat_completions(State(app): State<Arc<App>>, body: Body) -> Response {
    let mut request = http::Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = app.upstream.clone();
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let result = app.stack.clone().oneshot(request).await;
    let outcome = Outcome::from_result(&result);
    match result {
        Ok(response) if outcome.is_success() => {
            let (mut parts, body) = response.into_parts();
            keep_allowed_headers(&mut parts.headers);
            // A stream that fails after its first content ends with an error event the
            // SDK raises, never with `[DONE]`.
            Response::from_parts(parts, Body::new(InBandErrors::new(body, Dialect::Chat)))
        }
        // The caller can fix it: the provider's message, masked (an upstream that echoes a
        // key does not hand it on) and in OpenAI's error shape, not its body as it came.
        Ok(response) if is_callers_fault(outcome.class()) => {
            let detail = response.extensions().get::<ProviderError>();
            let message = detail
                .and_then(ProviderError::message)
                .unwrap_or("The request could not be processed.");
            let body = json!({"error": {
                "message": message,
                "type": outcome.class().as_str(),
                "param": null,
                "code": detail.and_then(ProviderError::code),
            }});
            let mut answer = (response.status(), axum::Json(body)).into_response();
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
                .into_response()
                .map(Body::from)
        }
        Err(error) => Fallback::from_error(&*error)
            .into_response()
            .map(Body::from),
    }
}

/// The upstream headers a caller gets: the content type, request ids and the rate-limit
/// and retry hints; nothing else (no `server`, `www-authenticate`, cookies, or a header a
/// provider may echo a key in).
fn is_allowed_header(name: &http::HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "content-type"
            | "content-length"
            | "x-request-id"
            | "request-id"
            | "retry-after"
            | "retry-after-ms"
            | "openai-processing-ms"
            | "openai-version"
    ) || name.starts_with("x-ratelimit-")
        || name.starts_with("anthropic-ratelimit-")
}

fn keep_allowed_headers(headers: &mut http::HeaderMap) {
    let dropped: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| !is_allowed_header(name))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
}

/// Any other path: a 404 in OpenAI's error shape, not an empty one.
async fn not_found(uri: http::Uri) -> Response {
    let body = json!({"error": {
        "message": format!("No route for {}: this proxy serves POST /v1/chat/completions, GET /healthz, /readyz and /metrics.", uri.path()),
        "type": "not_found",
        "param": null,
        "code": null,
    }});
    (http::StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// Failures only the caller can fix: they get the provider's own message.
fn is_callers_fault(class: OutcomeClass) -> bool {
    matches!(
        class,
        OutcomeClass::BadRequest | OutcomeClass::ContextTooLong | OutcomeClass::ContentFiltered
    )
}

/// Liveness: the process answers. Always 200; `/readyz` says whether it can serve.
async fn healthz() -> Response {
    axum::Json(json!({"status": "alive"})).into_response()
}

/// Readiness, with the detail: 503 only when no target can serve (each has a breaker open
/// or latched) or the budget is spent; `status` is `ready`, `degraded` (serving, but the
/// error rate or latency is past its threshold) or `unavailable`.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let mut breakers = Vec::new();
    // Degraded only when no target can serve: each has a breaker that is open or latched.
    let mut open = true;
    for (target, handle) in &app.breakers {
        let snapshot = handle.snapshot();
        open &= snapshot.iter().any(|b| {
            !matches!(
                b.state,
                BreakerState::Closed | BreakerState::HalfOpen | BreakerState::Shedding
            )
        });
        breakers.extend(snapshot.into_iter().map(|b| {
            json!({
                "target": target,
                "key": b.key.to_string(),
                "state": b.state.as_str(),
                "calls": b.calls,
                "failure_rate": b.failure_rate,
                "opened_total": b.opened_total,
                "waiting": b.waiting,
            })
        }));
    }
    let (budget, spent_out) = match app.budget.readout(None).await {
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
    };
    let health = app.health.status();
    let ok = !open && !spent_out;
    let status = match (ok, health.is_healthy()) {
        (false, _) => "unavailable",
        (true, false) => "degraded",
        (true, true) => "ready",
    };
    let body = json!({
        "status": status,
        "breakers": breakers,
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

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.prometheus.render(),
    )
        .into_response()
}
