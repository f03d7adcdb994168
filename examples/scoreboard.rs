//! The flakiness scoreboard: every simulator scenario, every policy, side by side.
//!
//! ```text
//! cargo run --release --example scoreboard                 # a table
//! cargo run --release --example scoreboard -- --json       # one JSON object per line
//! cargo run --release --example scoreboard -- --plot DIR   # SVG charts per scenario
//! cargo run --release --example scoreboard -- --minutes 10 # a shorter run
//! cargo run --release --example scoreboard -- --scenario 5xx_bursts --policy ballast --seed 3
//! cargo run --release --example scoreboard -- --once       # plain callers: one call per item
//! cargo run --release --example scoreboard -- --no-hedge   # Ballast's rows with hedging off
//! ```
//!
//! Each (policy, scenario) pair runs a fresh simulated provider for 30 simulated minutes
//! under tokio's paused clock (a run takes about a second). Workers take items from an
//! endless queue: an item is done when it succeeds; a failure the caller can wait out (a
//! retryable class, an open breaker) goes back to the worker after the `Retry-After` the
//! `Fallback` names (at least 1 s), for up to 15 minutes; any other failure, or running out
//! of those 15 minutes, loses the item. A spent budget refuses items (counted apart).
//!
//! Policies: Ballast's defaults (the facade's `StackBuilder`, with the adaptive throttle the
//! xAI preset turns on), and the same without the throttle; the story's naive retry;
//! tower's `Retry` with its default `TpsBudget` (no backoff, as tower ships it); no retry;
//! `tower-resilience` as its docs show (retry: 3 attempts, exponential from 100 ms; circuit
//! breaker: 50% of 100 calls, 30 s open), and its AIMD adaptive limiter (initial 10, 1 to
//! 100, latency threshold 100 ms) under the same retry; and an oracle: Ballast's defaults
//! paced at exactly the hidden limit. `tower-resilience` measures time with
//! `std::time::Instant`, which the paused clock cannot move, so its rows run in real time
//! with the provider's clock 600 times faster and its durations divided by 600.
//!
//! Columns: `goodput_ratio` is successes over what the hidden limit allowed over the run
//! (the integral of the limit), or, where there is no limit, over the successes the same
//! workers get from the same provider without its faults (and without a budget);
//! `rate_limited_share` is 429s over provider calls; `calls_per_logical_request` is
//! provider calls over items done; `items_lost_share` is lost items over items done;
//! `p50_ms` / `p99_ms` are item latencies (first call to done, provider time);
//! `budget_overshoot_usd` is what the provider billed past the budget;
//! `breaker_open_after_failures` is how many failed provider calls the outage cost before
//! the first local refusal; `recovery_s` is from the outage's end to the first success.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast::classify::{BoxError, ClassifyLayer, Outcome, OutcomeClass, Provider};
use ballast::cost::Usd;
use ballast::retry::{RetryLayer, RetryPolicy};
use ballast::{Config, Fallback, Preset, StackBuilder};
use ballast_examples::percentile;
use ballast_sim::{
    BurstModel, Hangs, LimitStep, Overload, Scenario, SimOutcome, Simulator, TICKS_PER_USD,
};
use serde_json::json;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

/// What a worker calls: a request in, the final outcome out.
type Stack = BoxCloneSyncService<http::Request<String>, Outcome, Infallible>;

/// How long an item may keep coming back (provider time).
const ITEM_DEADLINE: Duration = Duration::from_secs(900);
/// `--once`: plain callers, as an SDK with its retries off: each item gets one call to the
/// stack, and any failure loses it (the `lost` column is then the share of callers not
/// served).
static ONCE: AtomicBool = AtomicBool::new(false);
/// `--no-hedge`: Ballast's rows with hedging off (`StackBuilder::no_hedge`; on by default
/// since 2026-12-06).
static NO_HEDGE: AtomicBool = AtomicBool::new(false);
/// Provider seconds per real second for the rows that need real time.
const REAL_SCALE: f64 = 600.0;

/// A scenario with the load put on it.
#[derive(Clone)]
struct Case {
    name: &'static str,
    scenario: Scenario,
    workers: usize,
    budget: Usd,
    outage: Option<(Duration, Duration)>,
    /// A second provider, healthy, that only `ballast_failover` is configured to fall back
    /// to (the others have no failover to use): the two-provider scenarios of #19 item 5.
    fallback: Option<Scenario>,
}

fn cases() -> Vec<Case> {
    let dollars = |d: u64| Usd::from_dollars(d);
    let limits = |count: bool| Scenario {
        rejections_count: count,
        ..Scenario::lying_rate_limits()
    };
    let outage = (Duration::from_secs(300), Duration::from_secs(600));
    // The primary flapping: down a minute, up a minute, for the whole run.
    let flapping = Scenario {
        name: "flapping".into(),
        outages: (0..60)
            .map(|i| ballast_sim::Outage {
                start: Duration::from_secs(60 + 120 * i),
                duration: Duration::from_secs(60),
            })
            .collect(),
        ..Scenario::healthy()
    };
    let healthy_fallback = || {
        Some(Scenario {
            name: "fallback".into(),
            seed: 99,
            ..Scenario::healthy()
        })
    };
    vec![
        Case {
            name: "primary_outage_with_fallback",
            scenario: Scenario::outage_then_recovery(outage.0, outage.1),
            workers: 8,
            budget: dollars(50),
            outage: Some(outage),
            fallback: healthy_fallback(),
        },
        Case {
            name: "primary_flapping_with_fallback",
            scenario: flapping,
            workers: 8,
            budget: dollars(50),
            outage: None,
            fallback: healthy_fallback(),
        },
        Case {
            name: "limit_250_150_200_429s_count",
            scenario: limits(true),
            workers: 32,
            budget: dollars(50),
            outage: None,
            fallback: None,
        },
        Case {
            name: "limit_250_150_200_429s_free",
            scenario: limits(false),
            workers: 32,
            budget: dollars(50),
            outage: None,
            fallback: None,
        },
        Case {
            name: "outage_10min",
            scenario: Scenario::outage_then_recovery(outage.0, outage.1),
            workers: 8,
            budget: dollars(50),
            outage: Some(outage),
            fallback: None,
        },
        Case {
            name: "5xx_bursts",
            scenario: Scenario {
                name: "5xx_bursts".into(),
                server_errors: BurstModel {
                    enter_bad: 0.05,
                    leave_bad: 0.1,
                    fail_when_good: 0.02,
                    fail_when_bad: 0.8,
                    // Bad spells of 10 s on average, one every 20 s of good: per second.
                    step: Some(Duration::from_secs(1)),
                },
                ..Scenario::healthy()
            },
            workers: 8,
            budget: dollars(50),
            outage: None,
            fallback: None,
        },
        Case {
            name: "overload",
            scenario: Scenario {
                name: "overload".into(),
                // Room for 3 calls a second; 16 workers offer about twice that, and every
                // retry adds to what fails.
                overload: Some(Overload {
                    capacity_rpm: 180,
                    window: Duration::from_secs(10),
                }),
                ..Scenario::healthy()
            },
            workers: 16,
            budget: dollars(50),
            outage: None,
            fallback: None,
        },
        Case {
            name: "hangs",
            scenario: Scenario {
                name: "hangs".into(),
                hangs: Hangs {
                    probability: 0.05,
                    answer_after: None,
                },
                ..Scenario::healthy()
            },
            workers: 8,
            budget: dollars(50),
            outage: None,
            fallback: None,
        },
        Case {
            name: "64_callers_small_budget",
            scenario: Scenario::healthy(),
            workers: 64,
            budget: "0.50".parse().unwrap_or(Usd::ZERO),
            outage: None,
            fallback: None,
        },
    ]
}

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Ballast,
    /// Ballast with the second provider as its fallback (two-provider cases only).
    BallastFailover,
    BallastNoThrottle,
    Naive,
    TowerRetry,
    TowerResilience,
    TowerResilienceAdaptive,
    NoRetry,
    Oracle,
}

impl Policy {
    const ALL: [Policy; 9] = [
        Policy::Ballast,
        Policy::BallastFailover,
        Policy::BallastNoThrottle,
        Policy::Naive,
        Policy::TowerRetry,
        Policy::TowerResilience,
        Policy::TowerResilienceAdaptive,
        Policy::NoRetry,
        Policy::Oracle,
    ];

    fn name(self) -> &'static str {
        match self {
            Policy::Ballast => "ballast",
            Policy::BallastFailover => "ballast_failover",
            Policy::BallastNoThrottle => "ballast_no_throttle",
            Policy::Naive => "naive_retry",
            Policy::TowerRetry => "tower_retry_tpsbudget",
            Policy::TowerResilience => "tower_resilience",
            Policy::TowerResilienceAdaptive => "tower_resilience_adaptive",
            Policy::NoRetry => "no_retry",
            Policy::Oracle => "oracle",
        }
    }

    /// Provider seconds per real second: 1 under the paused clock.
    fn scale(self) -> f64 {
        match self {
            Policy::TowerResilience | Policy::TowerResilienceAdaptive => REAL_SCALE,
            _ => 1.0,
        }
    }
}

/// A failure as a clonable error, for the peers whose retry needs `E: Clone`.
#[derive(Debug, Clone)]
struct Failed(Outcome);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.class())
    }
}

impl std::error::Error for Failed {}

/// Timeout and classifier over the simulator, failures as `Err(Failed)`: what the peers see.
fn peer_base(
    sim: Simulator,
    scale: f64,
) -> impl Service<
    http::Request<String>,
    Response = (),
    Error = Failed,
    Future = impl Future<Output = Result<(), Failed>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    let inner = ServiceBuilder::new()
        .timeout(Duration::from_secs(90).div_f64(scale))
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(sim);
    tower::service_fn(move |request: http::Request<String>| {
        let inner = inner.clone();
        async move {
            let result = inner.oneshot(request).await;
            let outcome = Outcome::from_result(&result);
            if outcome.is_success() {
                Ok(())
            } else {
                Err(Failed(outcome))
            }
        }
    })
}

/// Any stack, answering with the final outcome.
fn outcomes<S, R, E>(service: S, outcome: fn(Result<R, E>) -> Outcome) -> Stack
where
    S: Service<http::Request<String>, Response = R, Error = E> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    R: 'static,
    E: 'static,
{
    BoxCloneSyncService::new(tower::service_fn(move |request: http::Request<String>| {
        let service = service.clone();
        async move { Ok::<_, Infallible>(outcome(service.oneshot(request).await)) }
    }))
}

fn ballast_outcome<R>(result: Result<R, BoxError>) -> Outcome
where
    R: 'static,
    Result<R, BoxError>: OutcomeOf,
{
    result.outcome()
}

/// `Outcome::from_result` for the responses this file sees.
trait OutcomeOf {
    fn outcome(&self) -> Outcome;
}

impl<B> OutcomeOf for Result<http::Response<B>, BoxError> {
    fn outcome(&self) -> Outcome {
        Outcome::from_result(self)
    }
}

/// Tower's retry policy with its `TpsBudget`: retries retryable classes while the budget
/// allows, at once.
#[derive(Clone)]
struct TowerPolicy(Arc<TpsBudget>);

impl<Res> tower::retry::Policy<http::Request<String>, Res, Failed> for TowerPolicy {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _: &mut http::Request<String>,
        result: &mut Result<Res, Failed>,
    ) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(Failed(outcome)) if outcome.is_retryable() => {
                self.0.withdraw().then(|| std::future::ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, request: &http::Request<String>) -> Option<http::Request<String>> {
        let mut clone = http::Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.headers_mut() = request.headers().clone();
        Some(clone)
    }
}

/// `http::Request` is not `Clone`; tower-resilience's retry needs a request that is.
#[derive(Clone)]
struct Job(Arc<String>);

fn to_request(job: Job) -> http::Request<String> {
    let mut request = http::Request::new(String::clone(&job.0));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static("http://sim.invalid/v1/chat/completions");
    request
}

/// A Ballast stack paced at the hidden limit: the oracle.
fn paced(stack: Stack, schedule: Vec<LimitStep>, start: Instant) -> Stack {
    let next = Arc::new(Mutex::new(start));
    BoxCloneSyncService::new(tower::service_fn(move |request: http::Request<String>| {
        let stack = stack.clone();
        let next = Arc::clone(&next);
        let schedule = schedule.clone();
        async move {
            let now = Instant::now();
            let rpm = limit_at(&schedule, now - start).unwrap_or(u32::MAX).max(1);
            let slot = {
                let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
                let slot = (*next).max(now);
                *next = slot + Duration::from_secs(60) / rpm;
                slot
            };
            tokio::time::sleep_until(slot).await;
            stack.oneshot(request).await
        }
    }))
}

fn limit_at(schedule: &[LimitStep], at: Duration) -> Option<u32> {
    schedule
        .iter()
        .take_while(|step| step.from <= at)
        .last()
        .map(|step| step.rpm)
}

fn stack(
    policy: Policy,
    case: &Case,
    sim: &Simulator,
    fallback: Option<&Simulator>,
    seed: u64,
) -> Stack {
    let scale = policy.scale();
    match policy {
        Policy::BallastFailover => {
            let mut config = Config::new(Preset::XAi);
            config.daily_budget = case.budget;
            let mut second = config.clone();
            second.base_url = "http://fallback.invalid/v1"
                .parse()
                .unwrap_or_else(|_| second.base_url.clone());
            // One client reaching both providers by host, as an HTTPS client would.
            let (primary, fallback) = (sim.clone(), fallback.unwrap_or(sim).clone());
            let client = tower::service_fn(
                move |request: http::Request<ballast::classify::RequestBody>| {
                    let sim = if request.uri().host() == Some("fallback.invalid") {
                        fallback.clone()
                    } else {
                        primary.clone()
                    };
                    sim.oneshot(request)
                },
            );
            let route = ballast::RouteBuilder::new(config)
                .fallback(second, Some("grok-code-fast-1"))
                .seed(seed)
                .build(client);
            outcomes(route.service, ballast_outcome)
        }
        Policy::Ballast | Policy::BallastNoThrottle | Policy::Oracle => {
            let mut config = Config::new(Preset::XAi);
            config.daily_budget = case.budget;
            let builder = StackBuilder::new(config).seed(seed);
            let builder = if NO_HEDGE.load(Ordering::Relaxed) {
                builder.no_hedge()
            } else {
                builder
            };
            // The oracle paces itself: the learned throttle would only get in its way.
            let builder = if policy == Policy::Ballast {
                builder
            } else {
                builder.no_throttle()
            };
            let stack = builder.build(sim.clone());
            let stack = outcomes(stack.service, ballast_outcome);
            if policy == Policy::Oracle {
                paced(stack, case.scenario.hidden_limit.clone(), Instant::now())
            } else {
                stack
            }
        }
        Policy::Naive => outcomes(
            ServiceBuilder::new()
                .layer(RetryLayer::new(
                    RetryPolicy::naive_builder().seed(seed).build(),
                ))
                .timeout(Duration::from_secs(90))
                .layer(ClassifyLayer::new(Provider::XAi))
                .service(sim.clone()),
            ballast_outcome,
        ),
        Policy::NoRetry => outcomes(
            ServiceBuilder::new()
                .timeout(Duration::from_secs(90))
                .layer(ClassifyLayer::new(Provider::XAi))
                .service(sim.clone()),
            ballast_outcome,
        ),
        Policy::TowerRetry => outcomes(
            ServiceBuilder::new()
                .retry(TowerPolicy(Arc::new(TpsBudget::default())))
                .service(peer_base(sim.clone(), scale)),
            peer_outcome,
        ),
        Policy::TowerResilience => {
            let breaker = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .failure_rate_threshold(0.5)
                .sliding_window_size(100)
                .wait_duration_in_open(Duration::from_secs(30).div_f64(scale))
                .build();
            let Ok(breaker) = breaker else {
                return unavailable();
            };
            use tower_resilience::circuitbreaker::CircuitBreakerError;
            resilience_retry(
                BoxCloneSyncService::new(
                    ServiceBuilder::new()
                        .map_err(|error: CircuitBreakerError<Failed>| match error {
                            CircuitBreakerError::Inner(failed) => failed,
                            _ => Failed(Outcome::new(OutcomeClass::CircuitOpen)),
                        })
                        .layer(breaker)
                        .service(peer_base(sim.clone(), scale)),
                ),
                scale,
            )
        }
        Policy::TowerResilienceAdaptive => {
            let aimd = tower_resilience::adaptive::Aimd::builder()
                .initial_limit(10)
                .min_limit(1)
                .max_limit(100)
                .latency_threshold(Duration::from_millis(100).div_f64(scale))
                .build();
            let Ok(aimd) = aimd else {
                return unavailable();
            };
            use tower_resilience::adaptive::{AdaptiveError, AdaptiveLimiterLayer};
            resilience_retry(
                BoxCloneSyncService::new(
                    ServiceBuilder::new()
                        .map_err(|error: AdaptiveError<Failed>| match error {
                            AdaptiveError::Service(failed) => failed,
                            _ => Failed(Outcome::new(OutcomeClass::Overloaded)),
                        })
                        .layer(AdaptiveLimiterLayer::new(aimd))
                        .service(peer_base(sim.clone(), scale)),
                ),
                scale,
            )
        }
    }
}

/// tower-resilience's retry as its docs show it (3 attempts, exponential from 100 ms) over
/// `guarded`.
fn resilience_retry(
    guarded: BoxCloneSyncService<http::Request<String>, (), Failed>,
    scale: f64,
) -> Stack {
    let retry = tower_resilience::retry::RetryLayer::<Job, (), Failed>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(100).div_f64(scale))
        .build();
    outcomes(
        ServiceBuilder::new()
            .map_request(|request: http::Request<String>| Job(Arc::new(request.into_body())))
            .layer(retry)
            .map_request(to_request)
            .service(guarded),
        peer_outcome,
    )
}

fn peer_outcome(result: Result<(), Failed>) -> Outcome {
    match result {
        Ok(()) => Outcome::new(OutcomeClass::Success),
        Err(Failed(outcome)) => outcome,
    }
}

fn unavailable() -> Stack {
    BoxCloneSyncService::new(tower::service_fn(|_: http::Request<String>| async {
        Ok::<_, Infallible>(Outcome::new(OutcomeClass::Unknown))
    }))
}

/// What the workers saw.
#[derive(Default)]
struct Seen {
    done: u64,
    succeeded: u64,
    lost: u64,
    refused: u64,
    latencies: Vec<Duration>,
    first_refusal: Option<Duration>,
}

fn request(n: u64) -> http::Request<String> {
    let body = format!(
        r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"Refactor function {n} of the parser"}}],"max_tokens":{}}}"#,
        100 + (n * 53) % 300
    );
    to_request(Job(Arc::new(body)))
}

/// Runs `workers` workers against `stack` for `run` of provider time.
async fn drive(stack: Stack, workers: usize, run: Duration, scale: f64) -> Seen {
    let start = Instant::now();
    let provider_time = move || start.elapsed().mul_f64(scale);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let stack = stack.clone();
        let seen = Arc::clone(&seen);
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut n = worker as u64 * 1_000_000;
            while provider_time() < run && !stop.load(Ordering::Relaxed) {
                n += 1;
                let item_start = provider_time();
                loop {
                    let outcome = stack
                        .clone()
                        .oneshot(request(n))
                        .await
                        .unwrap_or_else(|never| match never {});
                    let now = provider_time();
                    let class = outcome.class();
                    let settled = {
                        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                        if class == OutcomeClass::CircuitOpen && seen.first_refusal.is_none() {
                            seen.first_refusal = Some(now);
                        }
                        let again = !ONCE.load(Ordering::Relaxed)
                            && (class.is_retryable() || class == OutcomeClass::CircuitOpen);
                        if class.is_success() {
                            seen.done += 1;
                            seen.succeeded += 1;
                            seen.latencies.push(now - item_start);
                            true
                        } else if class == OutcomeClass::BudgetExceeded {
                            seen.done += 1;
                            seen.refused += 1;
                            true
                        } else if !again || now - item_start > ITEM_DEADLINE {
                            seen.done += 1;
                            seen.lost += 1;
                            seen.latencies.push(now - item_start);
                            true
                        } else {
                            // The run is over: the item stays pending.
                            now >= run
                        }
                    };
                    if settled {
                        if !class.is_success() {
                            // A caller pauses after a refusal or a lost item instead of
                            // spinning: until the budget's window turns, or a second.
                            let pause = Fallback::from_outcome(&outcome)
                                .retry_after
                                .unwrap_or(Duration::ZERO)
                                .max(Duration::from_secs(1))
                                .min(run);
                            tokio::time::sleep(pause.div_f64(scale)).await;
                        }
                        break;
                    }
                    let wait = Fallback::from_outcome(&outcome)
                        .retry_after
                        .unwrap_or(Duration::ZERO)
                        .max(Duration::from_secs(1));
                    tokio::time::sleep(wait.div_f64(scale)).await;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    stop.store(true, Ordering::Relaxed);
    Arc::try_unwrap(seen)
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .unwrap_or_default()
}

/// One (policy, scenario) result.
struct Row {
    policy: &'static str,
    scenario: &'static str,
    goodput_ratio: f64,
    rate_limited_share: f64,
    calls_per_logical_request: f64,
    items_lost_share: f64,
    p50_ms: u128,
    p99_ms: u128,
    budget_overshoot_usd: f64,
    breaker_open_after_failures: Option<u64>,
    recovery_s: Option<f64>,
    calls: u64,
    items: u64,
    /// Per simulated minute: successes, 429s, calls.
    minutes: Vec<(u64, u64, u64)>,
}

/// What the same workers get from the same provider without its faults: the capacity a
/// scenario without a hidden limit is measured against.
fn fault_free(case: &Case) -> Case {
    Case {
        scenario: Scenario {
            server_errors: BurstModel::NONE,
            overload: None,
            hangs: Hangs::NONE,
            outages: Vec::new(),
            malformed_probability: 0.0,
            error_in_ok_probability: 0.0,
            ..case.scenario.clone()
        },
        budget: Usd::from_dollars(1_000_000),
        outage: None,
        ..case.clone()
    }
}

fn run_one(policy: Policy, case: &Case, minutes: u64, seed: u64, baseline: u64) -> Row {
    let scale = policy.scale();
    let run = Duration::from_secs(60 * minutes);
    let scenario = Scenario {
        seed,
        time_scale: scale,
        ..case.scenario.clone()
    };
    let runtime = if scale == 1.0 {
        ballast_sim::paused_runtime()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
    };
    let Ok(runtime) = runtime else {
        eprintln!("no runtime");
        std::process::exit(1);
    };
    let (sim, fallback, seen) = runtime.block_on(async {
        let sim = Simulator::new(scenario);
        let fallback = case.fallback.clone().map(|fallback| {
            Simulator::new(Scenario {
                time_scale: scale,
                ..fallback
            })
        });
        let stack = stack(policy, case, &sim, fallback.as_ref(), seed);
        let seen = drive(stack, case.workers, run, scale).await;
        (sim, fallback, seen)
    });
    // Calls to both providers count; the outage figures read the primary's.
    let ledger = sim.ledger();
    let mut all = ledger.entries().to_vec();
    if let Some(fallback) = &fallback {
        all.extend(fallback.ledger().entries().iter().cloned());
    }
    let entries = &all;
    let calls = entries.len() as u64;
    let rate_limited = ledger.count(SimOutcome::RateLimited) as u64;
    let mut by_minute = vec![(0, 0, 0); minutes as usize];
    for entry in entries {
        let minute = (entry.at.as_secs() / 60) as usize;
        if let Some(slot) = by_minute.get_mut(minute) {
            slot.2 += 1;
            match entry.outcome {
                SimOutcome::Success => slot.0 += 1,
                SimOutcome::RateLimited => slot.1 += 1,
                _ => {}
            }
        }
    }
    let schedule = &case.scenario.hidden_limit;
    let allowed: f64 = (0..minutes * 60)
        .map(|s| {
            limit_at(schedule, Duration::from_secs(s)).map_or(0.0, |rpm| f64::from(rpm) / 60.0)
        })
        .sum();
    let goodput_ratio = if schedule.is_empty() {
        ratio(seen.succeeded, baseline)
    } else {
        seen.succeeded as f64 / allowed.max(1.0)
    };
    let billed = ledger.billed_ticks() as f64 / TICKS_PER_USD as f64;
    let (breaker_open_after_failures, recovery_s) = match case.outage {
        Some((start, length)) => {
            let end = start + length;
            let opened_at = seen.first_refusal.filter(|at| *at >= start);
            let failures = entries
                .iter()
                .filter(|e| {
                    e.at >= start
                        && e.at < opened_at.unwrap_or(end)
                        && matches!(e.outcome, SimOutcome::Outage | SimOutcome::ServerError)
                })
                .count() as u64;
            let recovery = entries
                .iter()
                .filter(|e| e.at >= end && e.outcome == SimOutcome::Success)
                .map(|e| (e.at - end).as_secs_f64())
                .next();
            (opened_at.map(|_| failures), recovery)
        }
        None => (None, None),
    };
    let mut latencies = seen.latencies.clone();
    Row {
        policy: policy.name(),
        scenario: case.name,
        goodput_ratio,
        rate_limited_share: ratio(rate_limited, calls),
        calls_per_logical_request: ratio(calls, seen.done),
        items_lost_share: ratio(seen.lost, seen.done),
        p50_ms: percentile(&mut latencies, 0.50).as_millis(),
        p99_ms: percentile(&mut latencies, 0.99).as_millis(),
        budget_overshoot_usd: (billed - case.budget.as_f64()).max(0.0),
        breaker_open_after_failures,
        recovery_s,
        calls,
        items: seen.done,
        minutes: by_minute,
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json_out = args.iter().any(|a| a == "--json");
    ONCE.store(args.iter().any(|a| a == "--once"), Ordering::Relaxed);
    NO_HEDGE.store(args.iter().any(|a| a == "--no-hedge"), Ordering::Relaxed);
    let plot_dir = args
        .iter()
        .position(|a| a == "--plot")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let minutes = args
        .iter()
        .position(|a| a == "--minutes")
        .and_then(|i| args.get(i + 1))
        .and_then(|m| m.parse().ok())
        .unwrap_or(30u64)
        .max(1);
    let only = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (only_scenario, only_policy) = (only("--scenario"), only("--policy"));
    let seed = only("--seed").and_then(|s| s.parse().ok()).unwrap_or(7u64);

    let mut rows: BTreeMap<&'static str, Vec<Row>> = BTreeMap::new();
    let cases = cases();
    for case in cases
        .iter()
        .filter(|c| only_scenario.as_deref().is_none_or(|s| s == c.name))
    {
        let baseline = if case.scenario.hidden_limit.is_empty() {
            let clean = fault_free(case);
            let items = run_one(Policy::NoRetry, &clean, minutes, seed, 0).items;
            items.max(1)
        } else {
            0
        };
        for policy in Policy::ALL
            .into_iter()
            .filter(|p| only_policy.as_deref().is_none_or(|n| n == p.name()))
            // Failover needs a second provider: only the two-provider cases have one.
            .filter(|p| *p != Policy::BallastFailover || case.fallback.is_some())
        {
            let started = std::time::Instant::now();
            let row = run_one(policy, case, minutes, seed, baseline);
            eprintln!(
                "{:>28} {:<27} {:>6.1}s real",
                case.name,
                policy.name(),
                started.elapsed().as_secs_f64()
            );
            if json_out {
                println!(
                    "{}",
                    json!({
                        "policy": row.policy,
                        "scenario": row.scenario,
                        "goodput_ratio": round(row.goodput_ratio),
                        "rate_limited_share": round(row.rate_limited_share),
                        "calls_per_logical_request": round(row.calls_per_logical_request),
                        "items_lost_share": round(row.items_lost_share),
                        "p50_ms": row.p50_ms,
                        "p99_ms": row.p99_ms,
                        "budget_overshoot_usd": round(row.budget_overshoot_usd),
                        "breaker_open_after_failures": row.breaker_open_after_failures,
                        "recovery_s": row.recovery_s.map(round),
                        "calls": row.calls,
                        "items": row.items,
                        "clock": if policy.scale() == 1.0 { "paused" } else { "real x600" },
                        "successes_per_minute": row.minutes.iter().map(|m| m.0).collect::<Vec<_>>(),
                        "rate_limited_per_minute": row.minutes.iter().map(|m| m.1).collect::<Vec<_>>(),
                    })
                );
            }
            rows.entry(case.name).or_default().push(row);
        }
    }
    if !json_out {
        print_table(&rows, &cases, minutes, seed);
    }
    if let Some(dir) = plot_dir {
        if let Err(error) = plot::write_all(&dir, &rows, &cases, minutes) {
            eprintln!("plotting into {dir}: {error}");
            std::process::exit(1);
        }
        eprintln!("charts written to {dir}");
    }
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn print_table(rows: &BTreeMap<&'static str, Vec<Row>>, cases: &[Case], minutes: u64, seed: u64) {
    println!("Ballast scoreboard: {minutes} simulated minutes per run\n");
    for (scenario, rows) in rows {
        let case = cases.iter().find(|c| c.name == *scenario);
        println!("{scenario}");
        println!(
            "  {:<27} {:>8} {:>6} {:>10} {:>6} {:>8} {:>8} {:>9} {:>8} {:>9} {:>7}",
            "policy",
            "goodput",
            "429s",
            "calls/item",
            "lost",
            "p50 s",
            "p99 s",
            "overshoot",
            "open@",
            "recovery",
            "calls"
        );
        for row in rows {
            println!(
                "  {:<27} {:>7.1}% {:>5.1}% {:>10.2} {:>5.1}% {:>8.1} {:>8.1} {:>9.2} {:>8} {:>9} {:>7}",
                row.policy,
                100.0 * row.goodput_ratio,
                100.0 * row.rate_limited_share,
                row.calls_per_logical_request,
                100.0 * row.items_lost_share,
                row.p50_ms as f64 / 1000.0,
                row.p99_ms as f64 / 1000.0,
                row.budget_overshoot_usd,
                row.breaker_open_after_failures
                    .map_or("-".into(), |n| n.to_string()),
                row.recovery_s.map_or("-".into(), |s| format!("{s:.1}s")),
                row.calls,
            );
        }
        if let Some((bad, ceiling)) = case.and_then(|case| burst_ceiling(case, seed, minutes)) {
            println!(
                "  weather (seed {seed}): bad {:.1}% of the run; no policy can expect more than {:.1}% goodput at {CALLS_PER_ITEM} calls per item",
                100.0 * bad,
                100.0 * ceiling
            );
        }
        println!();
    }
}

/// The calls per item #19 allows in the 5xx bursts.
const CALLS_PER_ITEM: f64 = 1.5;

/// For a scenario whose 5xx bursts follow the clock, the share of the run in bad weather
/// and the most goodput any policy can expect from it at [`CALLS_PER_ITEM`].
///
/// In good weather a call succeeds with chance `s_g`, in bad with `s_b`, and no worker
/// serves more items in good weather than it does without faults: of the fault-free run's
/// items, at most `G = 1 - bad` come in good weather. Items served in bad weather cost
/// `1 / s_b` calls each, those in good `1 / s_g`; with `B` of them in bad weather, calls
/// per item `(G / s_g + B / s_b) / (G + B) <= c` gives
/// `B <= G (c - 1 / s_g) / (1 / s_b - c)`, and goodput `G + B` at most
/// `(1 - bad) (1 + (c - 1 / s_g) / (1 / s_b - c))`. An expectation over the run's calls:
/// a run's luck moves it by about a point. `None` for other scenarios.
fn burst_ceiling(case: &Case, seed: u64, minutes: u64) -> Option<(f64, f64)> {
    let scenario = Scenario {
        seed,
        ..case.scenario.clone()
    };
    let bad = scenario.bad_share(Duration::from_secs(60 * minutes))?;
    Some((bad, ceiling(bad, &scenario.server_errors, CALLS_PER_ITEM)))
}

/// The goodput ceiling of [`burst_ceiling`] for a run `bad` of whose time is bad weather.
fn ceiling(bad: f64, bursts: &BurstModel, calls_per_item: f64) -> f64 {
    let (good_cost, bad_cost) = (
        1.0 / (1.0 - bursts.fail_when_good),
        1.0 / (1.0 - bursts.fail_when_bad),
    );
    if !(good_cost.is_finite() && calls_per_item >= good_cost) {
        return 0.0;
    }
    let in_bad = if calls_per_item >= bad_cost {
        f64::INFINITY
    } else {
        (calls_per_item - good_cost) / (bad_cost - calls_per_item)
    };
    ((1.0 - bad) * (1.0 + in_bad)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(name: &str) -> Case {
        cases()
            .into_iter()
            .find(|case| case.name == name)
            .expect("a scoreboard case")
    }

    /// At the calls a good-weather item costs, nothing is left for bad weather: the
    /// ceiling is the good share; at what a bad-weather item costs, every item can be
    /// served.
    #[test]
    fn the_ceiling_runs_from_the_good_share_to_everything() {
        let model = case("5xx_bursts").scenario.server_errors;
        assert_eq!(ceiling(0.25, &model, 1.0 / 0.98), 0.75);
        assert_eq!(ceiling(0.25, &model, 5.0), 1.0);
        assert_eq!(
            ceiling(0.25, &model, 1.0),
            0.0,
            "fewer calls than successes need"
        );
    }

    /// The figure the scoreboard prints for the bursts on seed 7 over 30 minutes.
    #[test]
    fn seed_seven_allows_at_most_73_and_a_half_percent_at_one_and_a_half_calls() {
        let (bad, ceiling) = burst_ceiling(&case("5xx_bursts"), 7, 30).expect("bursts");
        assert_eq!(
            (
                format!("{:.1}", 100.0 * bad),
                format!("{:.1}", 100.0 * ceiling)
            ),
            ("35.3".to_owned(), "73.5".to_owned())
        );
        assert_eq!(burst_ceiling(&case("overload"), 7, 30), None);
    }
}

mod plot {
    //! SVG charts with plotters: per scenario, accepted requests per minute of each policy
    //! against the hidden limit, and the share of 429s per minute.

    use std::collections::BTreeMap;

    use plotters::prelude::*;

    use super::{Case, Row, limit_at};

    const COLORS: [RGBColor; 7] = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0x7f, 0x7f, 0x7f),
    ];

    pub(super) fn write_all(
        dir: &str,
        rows: &BTreeMap<&'static str, Vec<Row>>,
        cases: &[Case],
        minutes: u64,
    ) -> Result<(), Box<dyn std::error::Error>> {
        std::fs::create_dir_all(dir)?;
        for case in cases {
            let Some(rows) = rows.get(case.name) else {
                continue;
            };
            accepted(
                &format!("{dir}/{}_accepted.svg", case.name),
                case,
                rows,
                minutes,
            )?;
            rejected(
                &format!("{dir}/{}_429s.svg", case.name),
                case,
                rows,
                minutes,
            )?;
        }
        Ok(())
    }

    fn accepted(
        path: &str,
        case: &Case,
        rows: &[Row],
        minutes: u64,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let peak = rows
            .iter()
            .flat_map(|r| r.minutes.iter().map(|m| m.0))
            .max()
            .unwrap_or(1)
            .max(300) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: successful requests per minute", case.name),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..minutes as f64, 0f64..peak * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("simulated minute")
            .y_desc("requests/min")
            .draw()?;
        if !case.scenario.hidden_limit.is_empty() {
            let limit: Vec<(f64, f64)> = (0..=minutes * 60)
                .step_by(10)
                .filter_map(|s| {
                    limit_at(
                        &case.scenario.hidden_limit,
                        std::time::Duration::from_secs(s),
                    )
                    .map(|rpm| (s as f64 / 60.0, f64::from(rpm)))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(limit, BLACK.stroke_width(3)))?
                .label("hidden limit")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(3))
                });
        }
        for (i, row) in rows.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points = row
                .minutes
                .iter()
                .enumerate()
                .map(|(m, (ok, _, _))| (m as f64 + 0.5, *ok as f64));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(row.policy)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
        Ok(())
    }

    fn rejected(
        path: &str,
        case: &Case,
        rows: &[Row],
        minutes: u64,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: share of calls answered 429, per minute", case.name),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..minutes as f64, 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_desc("simulated minute")
            .y_desc("% of calls")
            .draw()?;
        for (i, row) in rows.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points = row
                .minutes
                .iter()
                .enumerate()
                .map(|(m, (_, limited, calls))| {
                    let share = if *calls == 0 {
                        0.0
                    } else {
                        100.0 * *limited as f64 / *calls as f64
                    };
                    (m as f64 + 0.5, share)
                });
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(row.policy)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
        Ok(())
    }
}
