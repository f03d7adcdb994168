//! Per-request overhead of each Ballast layer and of the whole stack over a ready in-process
//! service answering a 2 KB chat completion, side by side with the bare service, tower's own
//! Retry + TpsBudget + Timeout, and the peers people would pick instead: `tower-resilience`
//! (circuit breaker + retry; adaptive limiter), `recloser` and `failsafe` (breakers). At 1
//! and 2 worker threads, 64 tasks each. Before the timings, allocations per request of each
//! stack (a counting global allocator, one thread).
//!
//! ```text
//! cargo bench -p ballast-benches --bench stack
//! BALLAST_QUICK=1 cargo bench -p ballast-benches --bench stack     # allocations, then a quick table
//! BALLAST_QUICK=1 BALLAST_PROMPT_KB=32 cargo bench -p ballast-benches --bench stack   # a 32 KB prompt
//! BALLAST_QUICK=1 BALLAST_SMALL_RESPONSE=1 cargo bench -p ballast-benches --bench stack # control bookkeeping only
//! BALLAST_QUICK=1 BALLAST_ONLY=bare,ballast_bookkeeping cargo bench -p ballast-benches --bench stack
//! ```
// criterion's macros define public, undocumented functions.
#![allow(missing_docs)]

use std::alloc::System;
use std::convert::Infallible;
use std::future::Ready;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast::throttle::{ThrottleConfig, ThrottleLayer};
use ballast::{Config, Preset, StackBuilder};
use ballast_benches::{response, success_body_2kb, success_body_small};
use ballast_breaker::{BreakerConfig, BreakerLayer};
use ballast_budget::{BudgetConfig, BudgetLayer};
use ballast_classify::{BoxError, ClassifyLayer, Provider, ReadRequestLayer, RequestBody};
use ballast_cost::{CostLogLayer, Scope, Usd};
use ballast_retry::{RetryLayer, RetryPolicy};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::futures::CircuitBreaker as _;
use http_body_util::Full;
use recloser::{AsyncRecloser, Recloser};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const TASKS: u64 = 64;
const URL: &str = "https://api.x.ai/v1/chat/completions";
const BODY: &str = r#"{"model":"grok-code-fast-1","messages":[{"role":"user","content":"Refactor this"}],"max_tokens":500}"#;

type Request = http::Request<String>;
type Stack = BoxCloneSyncService<Request, (), BoxError>;

/// The request body: `BODY`, or with `BALLAST_PROMPT_KB=n` a prompt of about n KB with the
/// cap at the end (the request-side scans then walk the whole prompt).
fn body() -> &'static str {
    static BODY_OF_SIZE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BODY_OF_SIZE.get_or_init(|| {
        let kb: usize = std::env::var("BALLAST_PROMPT_KB")
            .ok()
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(0);
        if kb == 0 {
            return String::from(BODY);
        }
        let turn = r#"{"role":"user","content":"Refactor this function so that it borrows instead of cloning, and explain why. "},"#;
        let turns = turn.repeat(kb * 1024 / turn.len());
        format!(
            r#"{{"model":"grok-code-fast-1","messages":[{}],"max_tokens":500}}"#,
            turns.trim_end_matches(',')
        )
    })
}

fn request() -> Request {
    http::Request::post(URL)
        .header("content-type", "application/json")
        .body(String::from(body()))
        .unwrap_or_default()
}

/// The provider: ready at once, a 2 KB chat completion every time, for requests with any
/// body (`String` for the peers, the read body under Ballast's `ReadRequestLayer`).
fn bare<B: Send + 'static>() -> impl Service<
    http::Request<B>,
    Response = http::Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<Full<Bytes>>, Infallible>> + Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let body = if std::env::var_os("BALLAST_SMALL_RESPONSE").is_some() {
        success_body_small()
    } else {
        success_body_2kb()
    };
    tower::service_fn(move |_request: http::Request<B>| {
        let body = body.clone();
        async move { Ok::<_, Infallible>(response(200, body).map(Full::new)) }
    })
}

/// Boxes a stack, dropping its response after reading it (every stack pays the same box).
fn boxed<S, R: 'static>(service: S) -> Stack
where
    S: Service<Request, Response = R> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(service.map_response(drop).map_err(Into::into))
}

/// A tower retry policy over tower's `TpsBudget`: retry errors while the budget allows.
#[derive(Clone)]
struct TowerPolicy(Arc<TpsBudget>);

impl<Res, E> tower::retry::Policy<Request, Res, E> for TowerPolicy {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Request, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(_) => self.0.withdraw().then(|| std::future::ready(())),
        }
    }

    fn clone_request(&mut self, request: &Request) -> Option<Request> {
        Some(copy_request(request))
    }
}

/// A copy of `request`'s method, URI, headers and body (`http::Request` is not `Clone`).
fn copy_request(request: &Request) -> Request {
    let mut clone = http::Request::new(request.body().clone());
    *clone.method_mut() = request.method().clone();
    *clone.uri_mut() = request.uri().clone();
    *clone.headers_mut() = request.headers().clone();
    clone
}

/// `http::Request` is not `Clone`; tower-resilience's retry needs a request that is.
#[derive(Clone)]
struct CloneableRequest(Arc<(http::Method, http::Uri, http::HeaderMap, String)>);

impl From<Request> for CloneableRequest {
    fn from(request: Request) -> Self {
        let (parts, body) = request.into_parts();
        Self(Arc::new((parts.method, parts.uri, parts.headers, body)))
    }
}

impl CloneableRequest {
    fn to_request(&self) -> Request {
        let (method, uri, headers, body) = &*self.0;
        let mut request = http::Request::new(body.clone());
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers.clone();
        request
    }
}

/// One stand-in layer of the design's floor: `before` on the request, `after` on the response
/// (taken and handed back),
/// nothing else (no state, no body reading).
#[derive(Clone)]
struct StandIn<S, F, G> {
    inner: S,
    before: F,
    after: G,
}

impl<S, F, G, R> Service<Request> for StandIn<S, F, G>
where
    S: Service<Request, Response = http::Response<R>>,
    S::Future: Send + 'static,
    F: Fn(&mut Request),
    G: Fn(http::Response<R>) -> http::Response<R> + Clone + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = futures::future::MapOk<S::Future, G>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        (self.before)(&mut request);
        futures::TryFutureExt::map_ok(self.inner.call(request), self.after.clone())
    }
}

/// Wraps `inner` in a [`StandIn`].
fn stand_in<S, F, G>(before: F, after: G) -> impl Fn(S) -> StandIn<S, F, G> + Clone
where
    F: Clone,
    G: Clone,
{
    move |inner| StandIn {
        inner,
        before: before.clone(),
        after: after.clone(),
    }
}

/// tower's `Retry` as Ballast uses it (the request cloned with its extensions before the
/// first attempt), never retrying.
#[derive(Clone)]
struct CloneOnly;

impl<Res, E> tower::retry::Policy<Request, Res, E> for CloneOnly {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Request, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, request: &Request) -> Option<Request> {
        let mut clone = copy_request(request);
        *clone.extensions_mut() = request.extensions().clone();
        Some(clone)
    }
}

/// The design's floor: Ballast's six layers as stand-ins that do only what the contract
/// between them asks (the clock reads each layer needs, the extensions they exchange, tower's
/// `Retry` cloning the request), with no body reading and no state. What is left above this
/// row is the layers' own work.
fn design_floor() -> Stack {
    use std::hint::black_box;
    use tokio::time::Instant as Clock;

    #[derive(Clone, Default)]
    struct Spend(Arc<std::sync::atomic::AtomicU64>);
    #[derive(Clone, Copy)]
    struct Outcome(u16);
    #[derive(Clone, Copy)]
    struct Usage(u64, u64);
    type Response = http::Response<Full<Bytes>>;

    // What the read layer leaves: the facts, a reference to the body inside.
    let facts = ballast_classify::RequestFacts::read(
        "/v1/chat/completions",
        &Bytes::from_static(BODY.as_bytes()),
        &ballast_classify::HalfByteCount,
    );
    let call_logger = stand_in(
        move |request: &mut Request| {
            black_box(Clock::now());
            let extensions = request.extensions_mut();
            extensions.insert(Spend::default());
            extensions.insert(facts.clone());
        },
        |response: Response| {
            black_box(Clock::now());
            black_box(response.extensions().get::<Usage>().map(|u| u.0 + u.1));
            response
        },
    );
    let breaker = stand_in(
        |request: &mut Request| {
            black_box(Clock::now());
            black_box(request.extensions().get::<ballast_classify::RequestFacts>());
        },
        |response: Response| {
            black_box(Clock::now());
            black_box(response.extensions().get::<Outcome>().map(|o| o.0));
            response
        },
    );
    let budget = stand_in(
        |request: &mut Request| {
            black_box(std::time::SystemTime::now());
            black_box(request.extensions().get::<ballast_classify::RequestFacts>());
        },
        |response: Response| {
            black_box(response.extensions().get::<Usage>().map(|u| u.0 + u.1));
            response
        },
    );
    let attempt_logger = stand_in(
        |request: &mut Request| {
            black_box(Clock::now());
            black_box(
                request
                    .extensions()
                    .get::<Spend>()
                    .map(|s| Arc::clone(&s.0)),
            );
        },
        |mut response: Response| {
            black_box(Clock::now());
            response.extensions_mut().insert(Usage(812, 421));
            response
        },
    );
    let classify = stand_in(
        |_: &mut Request| {},
        |mut response: Response| {
            response.extensions_mut().insert(Outcome(200));
            response
        },
    );
    boxed(
        ServiceBuilder::new()
            .layer_fn(call_logger)
            .retry(CloneOnly)
            .layer_fn(breaker)
            .layer_fn(budget)
            .layer_fn(attempt_logger)
            .layer_fn(classify)
            .service(bare()),
    )
}

/// The floor of any design that retries, fused or not: one layer that keeps a copy of the
/// request for a retry (the inner service consumes the original), reads the clock when the
/// attempt starts and ends, and counts the answer in one shared atomic. No extensions, no
/// body reading, no other state. Whatever a stack does on top of this costs more.
fn fused_floor() -> Stack {
    use std::hint::black_box;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::time::Instant as Clock;

    let answered = Arc::new(AtomicU64::new(0));
    let mut inner = bare();
    boxed(tower::service_fn(move |request: Request| {
        let copy = copy_request(&request);
        let started = Clock::now();
        let call = inner.call(request);
        let answered = Arc::clone(&answered);
        async move {
            let response = call.await;
            answered.fetch_add(1, Ordering::Relaxed);
            black_box(started.elapsed());
            drop(black_box(copy));
            response
        }
    }))
}

/// Every stack measured, by name.
fn stacks() -> Vec<(&'static str, Stack)> {
    let provider = Provider::XAi;
    let budget = || BudgetLayer::new(BudgetConfig::daily(Usd::from_dollars(1_000_000)));
    let retry = || RetryLayer::new(RetryPolicy::default());
    let breaker = || BreakerLayer::new(BreakerConfig::default());
    let classify = || ClassifyLayer::new(provider);
    let mut out: Vec<(&'static str, Stack)> = vec![
        ("bare", boxed(bare())),
        (
            "read_request",
            boxed(
                ServiceBuilder::new()
                    .layer(ReadRequestLayer::new())
                    .map_err(|never: Infallible| -> BoxError { match never {} })
                    .service(bare::<RequestBody>()),
            ),
        ),
        ("classify", boxed(classify().layer(bare()))),
        (
            "classify+cost_log",
            boxed(
                ServiceBuilder::new()
                    .layer(ReadRequestLayer::new())
                    .layer(CostLogLayer::new(provider, Scope::Attempt))
                    .layer(classify())
                    .service(bare()),
            ),
        ),
        (
            "retry",
            boxed(
                ServiceBuilder::new()
                    .layer(retry())
                    .map_err(|never: Infallible| -> BoxError { match never {} })
                    .service(bare()),
            ),
        ),
        (
            "breaker",
            boxed(
                ServiceBuilder::new()
                    .layer(ReadRequestLayer::new())
                    .layer(breaker())
                    .service(bare::<RequestBody>()),
            ),
        ),
        (
            "budget",
            boxed(
                ServiceBuilder::new()
                    .layer(ReadRequestLayer::new())
                    .layer(budget())
                    .service(bare::<RequestBody>()),
            ),
        ),
        (
            "throttle",
            boxed(
                ServiceBuilder::new()
                    .layer(ReadRequestLayer::new())
                    .layer(ThrottleLayer::new(ThrottleConfig::starting_at(1e12)))
                    .service(bare::<RequestBody>()),
            ),
        ),
        (
            "ballast_bookkeeping",
            boxed(
                ServiceBuilder::new()
                    .layer(ReadRequestLayer::new())
                    .layer(CostLogLayer::new(provider, Scope::Call))
                    .layer(retry())
                    .layer(breaker())
                    .layer(budget())
                    .layer(CostLogLayer::new(provider, Scope::Attempt))
                    .layer(classify())
                    .service(bare::<RequestBody>()),
            ),
        ),
    ];
    let mut config = Config::new(Preset::XAi);
    config.daily_budget = Usd::from_dollars(1_000_000);
    out.push((
        "ballast_facade",
        boxed(
            StackBuilder::new(config.clone())
                .no_throttle()
                .build(bare())
                .service,
        ),
    ));
    // The throttle's bookkeeping without its pacing: a pace no benchmark reaches.
    out.push((
        "ballast_facade_with_throttle",
        boxed(
            StackBuilder::new(config.clone())
                .throttle(ThrottleConfig::starting_at(1e12))
                .build(bare())
                .service,
        ),
    ));
    // The same without the hedge (on by default since 2026-12-06): what the hedge costs.
    out.push((
        "ballast_facade_with_throttle_no_hedge",
        boxed(
            StackBuilder::new(config)
                .throttle(ThrottleConfig::starting_at(1e12))
                .no_hedge()
                .build(bare())
                .service,
        ),
    ));
    out.push(("design_floor", design_floor()));
    out.push(("fused_floor", fused_floor()));
    out.push((
        "tower_retry_tpsbudget_timeout",
        boxed(
            ServiceBuilder::new()
                .retry(TowerPolicy(Arc::new(TpsBudget::default())))
                .timeout(Duration::from_secs(90))
                .service(bare()),
        ),
    ));
    let resilience_breaker = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .ok();
    let resilience_retry = tower_resilience::retry::RetryLayer::<
        CloneableRequest,
        http::Response<Full<Bytes>>,
        Infallible,
    >::builder()
    .max_attempts(3)
    .exponential_backoff(Duration::from_millis(100))
    .build();
    if let Some(resilience_breaker) = resilience_breaker {
        let inner = ServiceBuilder::new()
            .layer(resilience_retry)
            .map_request(|request: CloneableRequest| request.to_request())
            .service(bare());
        out.push((
            "tower_resilience_breaker_retry",
            boxed(
                ServiceBuilder::new()
                    .map_request(CloneableRequest::from)
                    .layer(resilience_breaker)
                    .service(inner),
            ),
        ));
    }
    // tower-resilience's adaptive limiter (AIMD on latency), limits its docs show.
    let aimd = tower_resilience::adaptive::Aimd::builder()
        .initial_limit(10)
        .min_limit(1)
        .max_limit(100)
        .build();
    if let Ok(aimd) = aimd {
        out.push((
            "tower_resilience_adaptive",
            boxed(
                ServiceBuilder::new()
                    .layer(tower_resilience::adaptive::AdaptiveLimiterLayer::new(aimd))
                    .service(bare()),
            ),
        ));
    }
    let recloser = AsyncRecloser::from(Recloser::default());
    out.push((
        "recloser",
        boxed(tower::service_fn(move |request: Request| {
            let mut inner = bare();
            let call = recloser.call(async move { inner.call(request).await });
            async move { call.await.map_err(|e| BoxError::from(format!("{e:?}"))) }
        })),
    ));
    let failsafe = failsafe::Config::new().build();
    out.push((
        "failsafe",
        boxed(tower::service_fn(move |request: Request| {
            let mut inner = bare();
            let call = failsafe.call(async move { inner.call(request).await });
            async move { call.await.map_err(|e| BoxError::from(format!("{e:?}"))) }
        })),
    ));
    out
}

/// Runs `iters` calls split over `TASKS` tasks on `threads` workers; returns the wall time.
fn run(threads: usize, service: &Stack, iters: u64) -> Duration {
    let service = service.clone();
    ballast_benches::run_tasks(threads, TASKS, iters, move || {
        let call = service.clone().oneshot(request());
        async move {
            let _ = call.await;
        }
    })
}

/// Allocations and bytes per request, one thread, after a warm-up.
fn allocations() {
    const CALLS: u64 = 2_000;
    let runtime = one_thread();
    eprintln!("\nallocations per request (one thread, {CALLS} calls after a warm-up):");
    eprintln!("  {:<32} {:>8} {:>10}", "stack", "allocs", "bytes");
    for (name, service) in stacks() {
        let (allocs, bytes) = runtime.block_on(async {
            for _ in 0..100 {
                let _ = service.clone().oneshot(request()).await;
            }
            let region = Region::new(GLOBAL);
            for _ in 0..CALLS {
                let _ = service.clone().oneshot(request()).await;
            }
            let change = region.change();
            (change.allocations, change.bytes_allocated)
        });
        eprintln!(
            "  {name:<32} {:>8.1} {:>10.0}",
            allocs as f64 / CALLS as f64,
            bytes as f64 / CALLS as f64
        );
    }
    eprintln!();
}

/// With `BALLAST_QUICK` set: per stack, the best of nine rounds of 20 000 calls, in ns per
/// request, one thread (one task after another) and two threads (`TASKS` tasks); the stacks
/// take turns within each round, so a noisy moment on a shared VM hits them all alike. The
/// tables in BENCHMARKS.md come from this mode.
fn quick() {
    const CALLS: u32 = 20_000;
    let runtime = one_thread();
    let stacks = chosen_stacks();
    let mut best = vec![(Duration::MAX, Duration::MAX); stacks.len()];
    for _ in 0..9 {
        for ((_, service), best) in stacks.iter().zip(&mut best) {
            let one = runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..CALLS {
                    let _ = service.clone().oneshot(request()).await;
                }
                start.elapsed()
            });
            let two = run(2, service, u64::from(CALLS));
            *best = (best.0.min(one), best.1.min(two));
        }
    }
    eprintln!("\nbest of 9 rounds of {CALLS} calls, ns per request:");
    eprintln!("  {:<32} {:>9} {:>9}", "stack", "1 thread", "2 threads");
    for ((name, _), (one, two)) in stacks.iter().zip(best) {
        let ns = |d: Duration| d.as_nanos() as f64 / f64::from(CALLS);
        eprintln!("  {name:<32} {:>9.0} {:>9.0}", ns(one), ns(two));
    }
}

/// With `BALLAST_CALLS=n`: n calls of each chosen stack (`BALLAST_ONLY`), on one thread,
/// nothing printed. Run under `valgrind --tool=callgrind` at two values of n: the difference
/// in instructions over the difference in calls is a stack's instructions per request, a
/// figure a noisy machine does not move.
fn calls(n: u64) {
    let runtime = one_thread();
    for (_, service) in chosen_stacks() {
        runtime.block_on(async {
            for _ in 0..n {
                let _ = service.clone().oneshot(request()).await;
            }
        });
    }
}

/// The stacks `BALLAST_ONLY` names (comma-separated), or every stack without it.
fn chosen_stacks() -> Vec<(&'static str, Stack)> {
    let only = std::env::var("BALLAST_ONLY").ok();
    stacks()
        .into_iter()
        .filter(|(name, _)| {
            only.as_deref()
                .is_none_or(|only| only.split(',').any(|o| o == *name))
        })
        .collect()
}

/// A current-thread runtime with timers: the one-thread measurements run on it.
fn one_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"))
}

fn overhead(c: &mut Criterion) {
    if let Some(n) = std::env::var("BALLAST_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        calls(n);
        return;
    }
    if std::env::var_os("BALLAST_QUICK").is_some() {
        allocations();
        quick();
        return;
    }
    allocations();
    let stacks = stacks();
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("stack_{threads}_threads"));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        for (name, service) in &stacks {
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| run(threads, service, iters))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, overhead);
criterion_main!(benches);
