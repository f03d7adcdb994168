//! The breaker against a small reference model, step by step, under the paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ballast_breaker::{BreakerConfig, BreakerLayer, BreakerState, PartialTrip};
use ballast_classify::{Outcome, OutcomeClass};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Success,
    Failure,
    Neutral,
    Auth,
}

impl Kind {
    fn class(self) -> OutcomeClass {
        match self {
            Kind::Success => OutcomeClass::Success,
            Kind::Failure => OutcomeClass::ServerError,
            Kind::Neutral => OutcomeClass::RateLimited,
            Kind::Auth => OutcomeClass::Auth,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Call { kind: Kind, millis: u64 },
    Advance { millis: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        6 => Just(Kind::Success),
        6 => Just(Kind::Failure),
        2 => Just(Kind::Neutral),
        1 => Just(Kind::Auth),
    ];
    prop_oneof![
        4 => (kind, 0u64..4000).prop_map(|(kind, millis)| Op::Call { kind, millis }),
        1 => (0u64..30_000).prop_map(|millis| Op::Advance { millis }),
    ]
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    (
        (1u32..8, 1u64..20, 1u32..10, 1u32..15, 0.1..1.0f64),
        (1u64..5, 0.1..1.0f64, 1u64..10, 1.0..3.0f64, 1u64..40),
        (1u32..3, 1u32..3, any::<bool>(), 1u64..120),
        prop::option::of((
            1u64..5,
            1u32..4,
            1u32..6,
            prop::option::of(1u64..2000),
            prop::option::of((0.0..=1.0f64, 1u64..3000, 1u32..6)),
        )),
    )
        .prop_map(
            |(
                (consecutive, window, buckets, min_calls, failure_rate),
                (slow, slow_rate, base, growth, cap),
                (probes, probe_successes, latch, reprobe),
                partial,
            )| BreakerConfig {
                // The ramp cannot show here (one call at a time: never more than one
                // probe out), but it must not change what one call at a time sees.
                partial: partial.map(|(open, probes, outage_after, ramp, sudden)| PartialTrip {
                    open: Duration::from_secs(open),
                    probes,
                    outage_after,
                    ramp: ramp.map(Duration::from_millis),
                    sudden_share: sudden.map(|(share, _, _)| share),
                    sudden_open: Duration::from_millis(sudden.map_or(100, |(_, open, _)| open)),
                    sudden_probes: sudden.map_or(4, |(_, _, probes)| probes),
                }),
                consecutive_failures: consecutive,
                window: Duration::from_secs(window),
                buckets,
                min_calls,
                failure_rate,
                slow_call: Duration::from_secs(slow),
                slow_rate,
                open_base: Duration::from_secs(base),
                open_growth: growth,
                open_cap: Duration::from_secs(cap),
                open_jitter: 0.0,
                probes,
                probe_successes,
                latch_on_auth_and_quota: latch,
                latch_reprobe: Duration::from_secs(reprobe),
                ..BreakerConfig::default()
            },
        )
}

/// The rules, written as plainly as possible.
#[derive(Debug)]
struct Model {
    config: BreakerConfig,
    state: ModelState,
    /// (time, failure, slow) of calls counted while closed.
    events: Vec<(u64, bool, bool)>,
    consecutive: u32,
    run_since: u64,
    trips: u32,
    /// When a call last succeeded.
    last_success: Option<u64>,
    /// The failed probes of a partial episode; `None` outside one.
    partial_misses: Option<u32>,
    /// Whether the episode began with at least `sudden_share` of the window's calls served.
    sudden: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ModelState {
    Closed,
    Open { until: u64 },
    HalfOpen { successes: u32 },
    Latched { until: u64 },
}

impl Model {
    fn bucket(&self) -> u64 {
        (self.config.window.as_nanos() / u128::from(self.config.buckets.max(1))).max(1) as u64
    }

    fn totals(&self, now: u64) -> (u32, u32, u32) {
        let period = |t: u64| t / self.bucket() + 1;
        let current = period(now);
        let oldest = current.saturating_sub(u64::from(self.config.buckets.max(1)) - 1);
        let mut totals = (0, 0, 0);
        for &(t, failure, slow) in &self.events {
            if period(t) >= oldest && period(t) <= current {
                totals.0 += 1;
                totals.1 += u32::from(failure);
                totals.2 += u32::from(slow);
            }
        }
        totals
    }

    /// Whether a call at `now` goes through (and as a probe).
    fn admit(&mut self, now: u64) -> Option<bool> {
        match self.state {
            ModelState::Closed => Some(false),
            ModelState::Open { until } if now < until => None,
            ModelState::Open { .. } => {
                self.state = ModelState::HalfOpen { successes: 0 };
                Some(true)
            }
            ModelState::HalfOpen { .. } => Some(true),
            ModelState::Latched { until } if now < until => None,
            // Latched long enough: one probe finds out whether the key was fixed.
            ModelState::Latched { .. } => {
                self.state = ModelState::HalfOpen { successes: 0 };
                Some(true)
            }
        }
    }

    fn trip(&mut self, now: u64, from_probe: bool) {
        self.trips += 1;
        if !from_probe {
            let (calls, failures, _) = self.totals(now);
            let window = self.config.window.as_nanos() as u64;
            let recent = self.last_success.is_some_and(|at| now - at <= window);
            self.partial_misses =
                (self.config.partial.is_some() && (failures < calls || recent)).then_some(0);
            let served = f64::from(calls - failures);
            self.sudden = self.partial_misses.is_some()
                && calls > 0
                && self
                    .config
                    .partial
                    .and_then(|partial| partial.sudden_share)
                    .is_some_and(|share| served >= share * f64::from(calls));
        }
        let open = match (self.config.partial, self.partial_misses) {
            (Some(partial), Some(_)) if self.sudden => partial.sudden_open,
            (Some(partial), Some(_)) => partial.open,
            _ => self.config.open_time(self.trips),
        };
        self.state = ModelState::Open {
            until: now + open.as_nanos() as u64,
        };
        self.events.clear();
        self.consecutive = 0;
    }

    fn record(&mut self, probe: bool, kind: Kind, elapsed: Duration, now: u64) {
        let slow = elapsed >= self.config.slow_call;
        if kind == Kind::Success {
            self.last_success = Some(now);
        }
        if kind == Kind::Failure
            && probe
            && let (Some(partial), Some(misses)) = (self.config.partial, self.partial_misses)
        {
            self.partial_misses = (misses + 1 < partial.outage_after).then_some(misses + 1);
        }
        match kind {
            Kind::Auth if self.config.latch_on_auth_and_quota => {
                if !matches!(self.state, ModelState::Latched { .. }) {
                    self.partial_misses = None;
                    self.state = ModelState::Latched {
                        until: now + self.config.latch_reprobe.as_nanos() as u64,
                    };
                }
            }
            Kind::Auth | Kind::Neutral => {}
            Kind::Success if probe => {
                // A probe's success: the provider serves, the episode counts misses anew.
                if self.partial_misses.is_some() {
                    self.partial_misses = Some(0);
                }
                if let ModelState::HalfOpen { successes } = self.state {
                    let successes = successes + 1;
                    if successes >= self.config.probe_successes {
                        self.state = ModelState::Closed;
                        self.partial_misses = None;
                        self.trips = 0;
                        self.events.clear();
                        self.consecutive = 0;
                    } else {
                        self.state = ModelState::HalfOpen { successes };
                    }
                }
            }
            Kind::Failure if probe => {
                if matches!(self.state, ModelState::HalfOpen { .. }) {
                    self.trip(now, true);
                }
            }
            Kind::Success | Kind::Failure => {
                if self.state != ModelState::Closed {
                    return;
                }
                let failure = kind == Kind::Failure;
                self.events.push((now, failure, slow));
                // A success sent before the current run of failures began does not end it.
                let sent = now.saturating_sub(elapsed.as_nanos() as u64);
                self.consecutive = if failure {
                    if self.consecutive == 0 {
                        self.run_since = now;
                    }
                    self.consecutive + 1
                } else if sent >= self.run_since {
                    0
                } else {
                    self.consecutive
                };
                if !failure && !slow {
                    return;
                }
                let (calls, failures, slows) = self.totals(now);
                let enough = calls >= self.config.min_calls;
                let rate = |n: u32| f64::from(n) / f64::from(calls.max(1));
                if self.consecutive >= self.config.consecutive_failures
                    || (enough && rate(failures) >= self.config.failure_rate)
                    || (enough && rate(slows) >= self.config.slow_rate)
                {
                    self.trip(now, false);
                }
            }
        }
    }

    fn observed(&self, now: u64) -> &'static str {
        match self.state {
            ModelState::Closed => "closed",
            ModelState::Open { until } if now < until => "open",
            ModelState::Open { .. } | ModelState::HalfOpen { .. } => "half_open",
            ModelState::Latched { .. } => "latched",
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn breaker_follows_the_reference_model(config in config(), ops in prop::collection::vec(op(), 1..120)) {
        let rt = ballast_sim::paused_runtime().unwrap();
        rt.block_on(async move {
            let start = Instant::now();
            let inner_calls = Arc::new(AtomicUsize::new(0));
            let inner = {
                let inner_calls = Arc::clone(&inner_calls);
                tower::service_fn(move |request: http::Request<String>| {
                    inner_calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let class: u8 = request.headers()["x-class"].to_str().unwrap().parse().unwrap();
                        let millis: u64 = request.headers()["x-millis"].to_str().unwrap().parse().unwrap();
                        tokio::time::sleep(Duration::from_millis(millis)).await;
                        let mut response = http::Response::new(());
                        response.extensions_mut().insert(Outcome::new(OutcomeClass::ALL[class as usize]));
                        Ok::<_, std::convert::Infallible>(response)
                    }
                })
            };
            let layer = BreakerLayer::with_seed(config.clone(), 1);
            let handle = layer.handle();
            let service = layer.layer(inner);
            let mut model = Model { config, state: ModelState::Closed, events: Vec::new(), consecutive: 0, run_since: 0, trips: 0, last_success: None, partial_misses: None, sudden: false };
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Advance { millis } => tokio::time::sleep(Duration::from_millis(millis)).await,
                    Op::Call { kind, millis } => {
                        let now = start.elapsed().as_nanos() as u64;
                        let expected = model.admit(now);
                        let before = inner_calls.load(Ordering::SeqCst);
                        let mut request = http::Request::post("https://api.x.ai/v1/chat/completions")
                            .header("x-class", kind.class().index().to_string())
                            .header("x-millis", millis.to_string())
                            .body(String::from(r#"{"model":"m"}"#))
                            .unwrap();
                        ballast_classify::RequestFacts::note(&mut request);
                        let result = service.clone().oneshot(request).await;
                        let admitted = inner_calls.load(Ordering::SeqCst) > before;
                        prop_assert_eq!(admitted, expected.is_some(), "step {}: {:?}", step, op);
                        match expected {
                            Some(probe) => {
                                prop_assert!(result.is_ok());
                                let now = start.elapsed().as_nanos() as u64;
                                model.record(probe, kind, Duration::from_millis(millis), now);
                            }
                            None => {
                                let error = result.unwrap_err();
                                prop_assert_eq!(Outcome::from_error(&*error).class(), OutcomeClass::CircuitOpen);
                            }
                        }
                    }
                }
                let now = start.elapsed().as_nanos() as u64;
                let snapshot = handle.get("api.x.ai", "m");
                let state = snapshot.map(|s| s.state.as_str()).unwrap_or("closed");
                prop_assert_eq!(state, model.observed(now), "after step {}: {:?}", step, op);
            }
            Ok(())
        })?;
    }
}

#[test]
fn open_state_reports_time_to_the_next_probe() {
    let rt = ballast_sim::paused_runtime().unwrap();
    rt.block_on(async {
        let failing = tower::service_fn(|_: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(
                http::Response::builder().status(500).body(()).unwrap(),
            )
        });
        let config = BreakerConfig {
            open_jitter: 0.0,
            ..BreakerConfig::default()
        };
        let layer = BreakerLayer::new(config);
        let service = layer.layer(failing);
        let request = || {
            http::Request::post("http://h/")
                .body(String::new())
                .unwrap()
        };
        for _ in 0..5 {
            service.clone().oneshot(request()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let error = service.clone().oneshot(request()).await.unwrap_err();
        let outcome = Outcome::from_error(&*error);
        // Open for 3 s, 2 of them gone: the next probe in 1 s.
        assert_eq!(outcome.wait_hint().unwrap().delay(), Duration::from_secs(1));
        let refusal = error
            .downcast_ref::<ballast_classify::ClassifiedError>()
            .and_then(|e| std::error::Error::source(e))
            .and_then(|e| e.downcast_ref::<ballast_breaker::BreakerOpen>())
            .unwrap();
        assert_eq!(refusal.key().host(), "h");
        assert_eq!(refusal.retry_in(), Some(Duration::from_secs(1)));
        assert!(matches!(refusal.state(), BreakerState::Open { .. }));
        assert!(error.to_string().contains("circuit_open"), "{error}");
    });
}

/// A provider whose answers are set by the request (`x-class`, `x-millis`), counting the
/// calls it was sent while the breaker said half-open (probes) and how many of them were
/// in flight at once at most.
#[derive(Clone, Default)]
struct Probed {
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

fn probed(
    probed: &Probed,
    handle: ballast_breaker::BreakerHandle,
) -> impl tower::Service<
    http::Request<String>,
    Response = http::Response<()>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<http::Response<()>, std::convert::Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    let probed = probed.clone();
    tower::service_fn(move |request: http::Request<String>| {
        let probe = handle
            .get("api.x.ai", "m")
            .is_some_and(|s| s.state.as_str() == "half_open");
        let class: u8 = request.headers()["x-class"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let millis: u64 = request.headers()["x-millis"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let probed = probed.clone();
        if probe {
            let now = probed.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            probed.most.fetch_max(now, Ordering::SeqCst);
        }
        async move {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            if probe {
                probed.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            let mut response = http::Response::new(());
            response
                .extensions_mut()
                .insert(Outcome::new(OutcomeClass::ALL[class as usize]));
            Ok(response)
        }
    })
}

fn call(kind: Kind, millis: u64) -> http::Request<String> {
    let mut request = http::Request::post("https://api.x.ai/v1/chat/completions")
        .header("x-class", kind.class().index().to_string())
        .header("x-millis", millis.to_string())
        .body(String::from(r#"{"model":"m"}"#))
        .unwrap();
    ballast_classify::RequestFacts::note(&mut request);
    request
}

/// A probe still out when its half-open period ends (another probe failed, the breaker
/// reopened, then half-opened again) keeps its slot, and its answer, arriving in the next
/// period, does not count there: with `probes: 2`, never three probes in flight, and a
/// stale success does not close the breaker.
#[test]
fn a_probe_of_an_ended_period_neither_adds_a_slot_nor_decides() {
    let rt = ballast_sim::paused_runtime().unwrap();
    rt.block_on(async {
        let config = BreakerConfig {
            consecutive_failures: 1,
            open_base: Duration::from_secs(1),
            open_growth: 1.0,
            open_jitter: 0.0,
            probes: 2,
            probe_successes: 1,
            ..BreakerConfig::default()
        };
        let layer = BreakerLayer::with_seed(config, 1);
        let handle = layer.handle();
        let counts = Probed::default();
        let service = layer.layer(probed(&counts, handle.clone()));
        let state = || handle.get("api.x.ai", "m").unwrap().state.as_str();
        // Open.
        let _ = service.clone().oneshot(call(Kind::Failure, 0)).await;
        assert_eq!(state(), "open");
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Period 1: a probe that fails at 10 ms, one that succeeds at 3 s.
        let fails = tokio::spawn(service.clone().oneshot(call(Kind::Failure, 10)));
        let late = tokio::spawn(service.clone().oneshot(call(Kind::Success, 3_000)));
        tokio::task::yield_now().await;
        fails.await.unwrap().unwrap();
        assert_eq!(state(), "open");
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Period 2: the late probe still holds one of the two slots: one new probe goes,
        // the next is refused.
        let slow = tokio::spawn(service.clone().oneshot(call(Kind::Success, 10_000)));
        tokio::task::yield_now().await;
        let refused = service.clone().oneshot(call(Kind::Success, 0)).await;
        assert!(refused.is_err(), "a third probe in flight");
        assert_eq!(counts.most.load(Ordering::SeqCst), 2);
        // The late probe's success (period 1) arrives: it does not close the breaker.
        late.await.unwrap().unwrap();
        assert_eq!(state(), "half_open");
        // Period 2's own probe does.
        slow.await.unwrap().unwrap();
        assert_eq!(state(), "closed");
    });
}

/// Calls that often outlast an open time (up to 12 s), with short steps between them.
fn overlapping() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        5 => Just(Kind::Success),
        6 => Just(Kind::Failure),
        1 => Just(Kind::Neutral),
    ];
    prop_oneof![
        4 => (kind, prop_oneof![0u64..200, 0u64..12_000]).prop_map(|(kind, millis)| Op::Call { kind, millis }),
        2 => (0u64..3_000).prop_map(|millis| Op::Advance { millis }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Overlapping calls across half-open periods: never more than `probes` probes in
    /// flight (or a partial trip's, when more); every call answered or refused as open;
    /// once every call has ended and the longest open time has passed, a call goes through
    /// (no wedged slot).
    #[test]
    fn overlapping_calls_never_exceed_the_probes(
        config in config(),
        ops in prop::collection::vec(overlapping(), 1..160),
    ) {
        let rt = ballast_sim::paused_runtime().unwrap();
        rt.block_on(async move {
            // A partial trip's episode lets its own number of probes out, and opens for its
            // own time. Without its ramp: the ramp's growth is tested on its own
            // (`quiet_probes_let_more_calls_follow_them`, tests/breaker.rs).
            let config = BreakerConfig {
                partial: config.partial.map(|partial| PartialTrip { ramp: None, ..partial }),
                ..config
            };
            let partial = config.partial;
            let probes = partial
                .map_or(config.probes, |p| p.probes.max(p.sudden_probes).max(config.probes))
                .max(1) as usize;
            let cap = partial.map_or(config.open_cap, |p| p.open.max(p.sudden_open).max(config.open_cap));
            let layer = BreakerLayer::with_seed(config, 1);
            let handle = layer.handle();
            let counts = Probed::default();
            let service = layer.layer(probed(&counts, handle.clone()));
            let mut calls = Vec::new();
            for op in ops {
                match op {
                    Op::Advance { millis } => tokio::time::sleep(Duration::from_millis(millis)).await,
                    Op::Call { kind, millis } => {
                        calls.push(tokio::spawn(service.clone().oneshot(call(kind, millis))));
                        tokio::task::yield_now().await;
                    }
                }
                prop_assert!(counts.most.load(Ordering::SeqCst) <= probes);
            }
            for call in calls {
                match call.await.unwrap() {
                    Ok(_) => {}
                    Err(error) => prop_assert_eq!(
                        Outcome::from_error(&*error).class(),
                        OutcomeClass::CircuitOpen
                    ),
                }
            }
            prop_assert!(counts.most.load(Ordering::SeqCst) <= probes);
            prop_assert_eq!(counts.in_flight.load(Ordering::SeqCst), 0);
            let state = handle.get("api.x.ai", "m").map(|s| s.state.as_str()).unwrap_or("closed");
            if state != "latched" {
                tokio::time::sleep(cap * 2).await;
                let result = service.clone().oneshot(call(Kind::Success, 0)).await;
                prop_assert!(result.is_ok(), "wedged in {}", state);
            }
            Ok(())
        })?;
    }
}
