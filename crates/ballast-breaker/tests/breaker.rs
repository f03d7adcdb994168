//! The breaker in use: probes, cancellation, keys, latches, retry, and a provider outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ballast_breaker::{BreakerConfig, BreakerLayer, BreakerState, PartialTrip};
use ballast_classify::{BoxError, ClassifyLayer, Outcome, OutcomeClass, Provider, RequestFacts};
use ballast_retry::{RetryLayer, RetryPolicy};
use ballast_sim::{Scenario, SimOutcome, Simulator};
use futures::future::join_all;
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Layer, ServiceBuilder, ServiceExt};

/// A request for `model`, with its facts read (as `ReadRequestLayer` would).
fn request(model: &str) -> http::Request<String> {
    let mut request = http::Request::post("https://api.x.ai/v1/chat/completions")
        .body(format!(r#"{{"model":"{model}","max_tokens":20}}"#))
        .unwrap();
    RequestFacts::note(&mut request);
    request
}

/// `request` with its facts read (as `ReadRequestLayer` would).
fn noted(mut request: http::Request<String>) -> http::Request<String> {
    RequestFacts::note(&mut request);
    request
}

/// A provider whose answers the test steers: 500 while `failing` (when the call arrives),
/// else 200, after `delay` (failures after `fail_in`).
#[derive(Clone)]
struct Steered {
    failing: Arc<AtomicBool>,
    delay: Duration,
    fail_in: Duration,
    calls: Arc<AtomicUsize>,
}

impl Steered {
    fn new(delay: Duration) -> Self {
        Self {
            failing: Arc::new(AtomicBool::new(true)),
            delay,
            fail_in: delay,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Failures in 50 ms, answers after `delay`: a provider's 5xx against its generations.
    fn failing_fast(delay: Duration) -> Self {
        Self {
            fail_in: Duration::from_millis(50),
            ..Self::new(delay)
        }
    }

    fn service(&self) -> TestProvider {
        let failing = Arc::clone(&self.failing);
        let (delay, fail_in) = (self.delay, self.fail_in);
        answering(&self.calls, move || {
            if failing.load(Ordering::SeqCst) {
                (500, fail_in)
            } else {
                (200, delay)
            }
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A test provider: `http::Request<String>` in, an empty response out.
type TestProvider = tower::util::BoxCloneService<
    http::Request<String>,
    http::Response<()>,
    std::convert::Infallible,
>;

/// A provider that counts its calls in `calls` and answers each with the status, after the
/// delay, that `answer` gives when the call arrives.
fn answering(
    calls: &Arc<AtomicUsize>,
    answer: impl Fn() -> (u16, Duration) + Clone + Send + 'static,
) -> TestProvider {
    let calls = Arc::clone(calls);
    tower::service_fn(move |_request: http::Request<String>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let (status, delay) = answer();
        async move {
            tokio::time::sleep(delay).await;
            Ok(http::Response::builder().status(status).body(()).unwrap())
        }
    })
    .boxed_clone()
}

fn quiet_config() -> BreakerConfig {
    BreakerConfig {
        open_jitter: 0.0,
        ..BreakerConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_n_probes_and_closes_after_success() {
    let provider = Steered::new(Duration::from_secs(1));
    let layer = BreakerLayer::new(BreakerConfig {
        probes: 2,
        ..quiet_config()
    });
    let handle = layer.handle();
    let service = layer.layer(provider.service());
    for _ in 0..5 {
        service.clone().oneshot(request("m")).await.unwrap();
    }
    assert!(matches!(
        handle.get("api.x.ai", "m").unwrap().state,
        BreakerState::Open { .. }
    ));
    provider.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = provider.calls.load(Ordering::SeqCst);
    let results = join_all((0..10).map(|_| service.clone().oneshot(request("m")))).await;
    assert_eq!(
        provider.calls.load(Ordering::SeqCst) - before,
        2,
        "two probes in flight"
    );
    let refused = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_err_and(|e| Outcome::from_error(&**e).class() == OutcomeClass::CircuitOpen)
        })
        .count();
    assert_eq!(refused, 8);
    let snapshot = handle.get("api.x.ai", "m").unwrap();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(snapshot.trips, 0, "trips in a row reset on closing");
    assert_eq!(snapshot.opened_total, 1, "but the lifetime count stays");
}

/// The wait hint of a call the breaker refused.
fn refusal_hint(result: Result<http::Response<()>, BoxError>) -> Option<Duration> {
    let outcome = Outcome::from_error(&*result.unwrap_err());
    assert_eq!(outcome.class(), OutcomeClass::CircuitOpen);
    outcome.wait_hint().map(|hint| hint.delay())
}

/// The wait hints of a refusal after a partial trip, and after an outage's (no jitter).
const PARTIAL: Option<Duration> = Some(Duration::from_millis(1500));
const OUTAGE: Option<Duration> = Some(Duration::from_secs(3));

fn partial_config(outage_after: u32) -> BreakerConfig {
    BreakerConfig {
        partial: Some(PartialTrip {
            open: Duration::from_millis(1500),
            probes: 3,
            outage_after,
            ramp: None,
            ..PartialTrip::default()
        }),
        ..quiet_config()
    }
}

/// A breaker over the test provider.
type Tested = ballast_breaker::Breaker<TestProvider>;

/// `n` calls, one after another.
async fn send(service: &Tested, n: usize) {
    for _ in 0..n {
        service.clone().oneshot(request("m")).await.unwrap();
    }
}

/// The wait hint a call is refused with now.
async fn hint_now(service: &Tested) -> Option<Duration> {
    refusal_hint(service.clone().oneshot(request("m")).await)
}

/// Five calls at once: how many reached the provider, and how many were refused.
async fn five_at_once(service: &Tested, provider: &Steered) -> (usize, usize) {
    let before = provider.calls.load(Ordering::SeqCst);
    let results = join_all((0..5).map(|_| service.clone().oneshot(request("m")))).await;
    let sent = provider.calls.load(Ordering::SeqCst) - before;
    (sent, results.iter().filter(|r| r.is_err()).count())
}

/// A breaker with partial trips (`outage_after` failed probes) over a provider answering in
/// 1 s, tripped in a burst: one success, then five failures.
async fn tripped_in_a_burst(outage_after: u32) -> (Steered, Tested) {
    let provider = Steered::new(Duration::from_secs(1));
    let service = BreakerLayer::new(partial_config(outage_after)).layer(provider.service());
    trip_in_a_burst(&service, &provider).await;
    (provider, service)
}

/// Trips `service` over `provider` in a burst: one success, then five failures.
async fn trip_in_a_burst(service: &Tested, provider: &Steered) {
    provider.failing.store(false, Ordering::SeqCst);
    send(service, 1).await;
    provider.failing.store(true, Ordering::SeqCst);
    send(service, 5).await;
}

/// Partial trips whose probes are followed by more calls after each `ramp` they stay quiet.
fn ramping(ramp: Duration) -> BreakerConfig {
    BreakerConfig {
        partial: Some(PartialTrip {
            ramp: Some(ramp),
            ..PartialTrip::default()
        }),
        ..quiet_config()
    }
}

/// Starts `n` calls and lets them reach the provider (or be refused); their handles.
async fn start(
    service: &Tested,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<http::Response<()>, BoxError>>> {
    let calls = (0..n)
        .map(|_| tokio::spawn(service.clone().oneshot(request("m"))))
        .collect();
    tokio::task::yield_now().await;
    calls
}

/// After a partial trip, probes that stay out without failing are taken for answers under
/// way: the limit on probes doubles each `ramp` (3, 6, 12), and a refused call is told to
/// come back when it next grows, not after `half_open_wait`. The first answer closes it.
#[tokio::test(start_paused = true)]
async fn quiet_probes_let_more_calls_follow_them() {
    let provider = Steered::failing_fast(Duration::from_secs(1));
    let layer = BreakerLayer::new(ramping(Duration::from_millis(250)));
    let handle = layer.handle();
    let service = layer.layer(provider.service());
    trip_in_a_burst(&service, &provider).await;
    assert_eq!(hint_now(&service).await, PARTIAL);
    provider.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut out = start(&service, 3).await;
    assert_eq!(provider.calls(), 1 + 5 + 3, "three probes");
    assert_eq!(
        hint_now(&service).await,
        Some(Duration::from_millis(250)),
        "come back when the limit grows"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hint_now(&service).await, Some(Duration::from_millis(150)));
    tokio::time::sleep(Duration::from_millis(150)).await;
    out.extend(start(&service, 4).await);
    assert_eq!(provider.calls(), 9 + 3, "quiet for 250 ms: six out");
    tokio::time::sleep(Duration::from_millis(250)).await;
    out.extend(start(&service, 7).await);
    assert_eq!(provider.calls(), 12 + 6, "quiet for 500 ms: twelve out");
    let refused = join_all(out)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().is_err())
        .count();
    assert_eq!(refused, 1 + 1, "one refused at 250 ms, one at 500 ms");
    assert_eq!(
        handle.get("api.x.ai", "m").unwrap().state,
        BreakerState::Closed,
        "the first answer closed it"
    );
}

/// The ramp is a burst's: after an outage's trip (no recent success) one probe goes, and
/// however long it stays out, no call follows it before it answers.
#[tokio::test(start_paused = true)]
async fn an_outage_probe_is_not_followed() {
    let provider = Steered::failing_fast(Duration::from_secs(1));
    let service = BreakerLayer::new(ramping(Duration::from_millis(250))).layer(provider.service());
    send(&service, 5).await;
    assert_eq!(hint_now(&service).await, OUTAGE, "never served: an outage");
    provider.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let probe = start(&service, 1).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        hint_now(&service).await,
        Some(Duration::from_secs(1)),
        "half_open_wait, not the ramp"
    );
    assert_eq!(provider.calls(), 5 + 1, "only the probe went");
    join_all(probe).await;
}

/// A probe's success keeps a partial episode from becoming an outage, also when it answers
/// after its half-open period ended (a faster failure of its round reopened the breaker, and
/// it half-opened again): a provider failing four calls in five answers its successes last.
#[tokio::test(start_paused = true)]
async fn a_late_success_keeps_the_episode_partial() {
    let provider = Steered::failing_fast(Duration::from_secs(2));
    let service = BreakerLayer::new(partial_config(3)).layer(provider.service());
    trip_in_a_burst(&service, &provider).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    provider.failing.store(false, Ordering::SeqCst);
    let late = start(&service, 1).await;
    provider.failing.store(true, Ordering::SeqCst);
    // Its round's failure: one miss of three, reopened for 1.5 s.
    send(&service, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The next period's failure: the second miss. The success answers 0.4 s later.
    send(&service, 1).await;
    join_all(late).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Without the late success this would be the third miss: an outage.
    send(&service, 1).await;
    assert_eq!(
        hint_now(&service).await,
        PARTIAL,
        "the late success started the count again"
    );
}

/// A breaker that trips while the provider still serves calls (a burst) opens for the
/// partial open time and sends three probes at once; once `outage_after` probes have failed
/// with none succeeding, it is an outage: the full open time and one probe.
#[tokio::test(start_paused = true)]
async fn a_partial_trip_probes_sooner_with_more_calls_until_it_is_an_outage() {
    let (provider, service) = tripped_in_a_burst(6).await;
    assert_eq!(
        hint_now(&service).await,
        PARTIAL,
        "partial: opens for 1.5 s"
    );
    for round in 1..=2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let sent = five_at_once(&service, &provider).await;
        assert_eq!(sent, (3, 2), "round {round}: three probes, two refused");
    }
    // Six failed probes, none succeeding: an outage now. The trip of the last round was
    // still a partial one (its first failure came before the sixth); from here, one probe
    // and the full open time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        five_at_once(&service, &provider).await,
        (1, 4),
        "an outage: one probe"
    );
    assert_eq!(
        hint_now(&service).await,
        OUTAGE,
        "an outage: the full open time"
    );
}

/// A breaker with partial trips (10 failed probes make an outage) over a provider answering
/// in 100 ms, tripped by five failures after `served` successes.
async fn tripped_after(served: usize) -> (Steered, Tested) {
    let provider = Steered::new(Duration::from_millis(100));
    let service = BreakerLayer::new(partial_config(10)).layer(provider.service());
    provider.failing.store(false, Ordering::SeqCst);
    send(&service, served).await;
    provider.failing.store(true, Ordering::SeqCst);
    send(&service, 5).await;
    (provider, service)
}

/// A trip while at least 85% of the window's calls had succeeded (failures that began among
/// successes, as a burst's do) opens for 100 ms, not 1.5 s, and lets four probes out, not
/// three, and so do the episode's trips from failed probes; once `outage_after` probes have
/// failed it is an outage's. A trip after the successes thinned is an ordinary partial one.
#[tokio::test(start_paused = true)]
async fn a_trip_among_successes_opens_briefly() {
    // 29 served of 34 (85.3%): sudden.
    let (provider, service) = tripped_after(29).await;
    let brief = Some(Duration::from_millis(100));
    assert_eq!(hint_now(&service).await, brief, "sudden: opens for 100 ms");
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = five_at_once(&service, &provider).await;
        assert_eq!(sent, (4, 1), "round {round}: four probes");
        if round < 3 {
            assert_eq!(
                hint_now(&service).await,
                brief,
                "round {round}: still sudden"
            );
        }
    }
    // Twelve failed probes, ten needed (the third round's trip came at the ninth, still
    // sudden): an outage now, one probe and the full open time.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(five_at_once(&service, &provider).await, (1, 4));
    assert_eq!(hint_now(&service).await, OUTAGE);

    // 28 served of 33 (84.8%): an ordinary partial trip, three probes after 1.5 s.
    let (provider, service) = tripped_after(28).await;
    assert_eq!(hint_now(&service).await, PARTIAL);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(five_at_once(&service, &provider).await, (3, 2));
}

/// A probe dropped before its answer gives its slot back and is no failed probe: it does not
/// bring a partial episode nearer to an outage.
#[tokio::test(start_paused = true)]
async fn a_dropped_partial_probe_is_not_a_failed_one() {
    let (_provider, service) = tripped_in_a_burst(2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut dropped = Box::pin(service.clone().oneshot(request("m")));
    assert!(
        futures::FutureExt::now_or_never(&mut dropped).is_none(),
        "a probe in flight"
    );
    drop(dropped);
    // One failed probe: one miss of two, still partial.
    send(&service, 1).await;
    assert_eq!(
        hint_now(&service).await,
        PARTIAL,
        "the dropped probe did not count"
    );
}

/// Without a success within the window (the provider was down from the first call), a trip
/// is an outage's from the start; and a success remembered across a close (which clears the
/// window) still makes the next trip a partial one.
#[tokio::test(start_paused = true)]
async fn a_trip_is_partial_only_after_a_recent_success() {
    let provider = Steered::new(Duration::from_millis(100));
    let service = BreakerLayer::new(partial_config(40)).layer(provider.service());
    send(&service, 5).await;
    assert_eq!(hint_now(&service).await, OUTAGE, "never served: an outage");
    tokio::time::sleep(Duration::from_secs(5)).await;
    provider.failing.store(false, Ordering::SeqCst);
    // The probe succeeds and closes it, which clears the window.
    send(&service, 1).await;
    provider.failing.store(true, Ordering::SeqCst);
    send(&service, 5).await;
    assert_eq!(
        hint_now(&service).await,
        PARTIAL,
        "served 0.6 s ago: partial"
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    // Eleven seconds later the remembered success has left the window: the probe that
    // fails now trips from half-open, still the same partial episode (1.5 s).
    let _ = service.clone().oneshot(request("m")).await;
    assert_eq!(
        hint_now(&service).await,
        PARTIAL,
        "the episode stays partial"
    );
}

/// While the probe is out, a refused caller is told to come back soon, not after a whole
/// open time: the probe decides in about a call's time.
#[tokio::test(start_paused = true)]
async fn a_call_refused_while_the_probe_is_out_is_told_to_come_back_soon() {
    let provider = Steered::new(Duration::from_secs(2));
    let service = BreakerLayer::new(BreakerConfig {
        consecutive_failures: 1,
        ..quiet_config()
    })
    .layer(provider.service());
    service.clone().oneshot(request("m")).await.unwrap();
    let hint_of = |result: Result<http::Response<()>, BoxError>| {
        let outcome = Outcome::from_error(&*result.unwrap_err());
        assert_eq!(outcome.class(), OutcomeClass::CircuitOpen);
        outcome.wait_hint().map(|hint| hint.delay())
    };
    let open = hint_of(service.clone().oneshot(request("m")).await);
    assert_eq!(
        open,
        Some(Duration::from_secs(3)),
        "open: the time to the probe"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    provider.failing.store(false, Ordering::SeqCst);
    let probe = tokio::spawn(service.clone().oneshot(request("m")));
    tokio::task::yield_now().await;
    let refused = hint_of(service.clone().oneshot(request("m")).await);
    assert_eq!(
        refused,
        Some(Duration::from_secs(1)),
        "half-open: come back soon"
    );
    assert_eq!(probe.await.unwrap().unwrap().status(), 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let back = service.clone().oneshot(request("m")).await.unwrap();
    assert_eq!(back.status(), 200, "closed by the time it came back");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_gives_its_slot_back() {
    let provider = Steered::new(Duration::from_secs(10));
    let layer = BreakerLayer::new(BreakerConfig {
        consecutive_failures: 1,
        ..quiet_config()
    });
    let service = layer.layer(provider.service());
    service.clone().oneshot(request("m")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The probe is abandoned by its caller after a second.
    let abandoned = tokio::time::timeout(
        Duration::from_secs(1),
        service.clone().oneshot(request("m")),
    )
    .await;
    assert!(abandoned.is_err());
    let before = provider.calls.load(Ordering::SeqCst);
    provider.failing.store(false, Ordering::SeqCst);
    let response = service.clone().oneshot(request("m")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        provider.calls.load(Ordering::SeqCst) - before,
        1,
        "the next probe was let through"
    );
}

#[tokio::test(start_paused = true)]
async fn keys_are_per_host_and_model() {
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let calls = Arc::clone(&calls);
        tower::service_fn(move |request: http::Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let status = if request.body().contains("\"bad\"") {
                503
            } else {
                200
            };
            async move { Ok::<_, BoxError>(http::Response::builder().status(status).body(()).unwrap()) }
        })
    };
    let layer = BreakerLayer::new(quiet_config());
    let handle = layer.handle();
    let service = layer.layer(provider);
    for _ in 0..8 {
        let _ = service.clone().oneshot(request("bad")).await;
        service.clone().oneshot(request("good")).await.unwrap();
    }
    assert!(matches!(
        handle.get("api.x.ai", "bad").unwrap().state,
        BreakerState::Open { .. }
    ));
    assert_eq!(
        handle.get("api.x.ai", "good").unwrap().state,
        BreakerState::Closed
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5 + 8,
        "bad stopped after 5, good never"
    );

    // The facts name the key, not the body.
    let mut named = request("ignored");
    named
        .extensions_mut()
        .insert(RequestFacts::default().with_model("bad"));
    let error = service.clone().oneshot(named).await.unwrap_err();
    assert_eq!(
        Outcome::from_error(&*error).class(),
        OutcomeClass::CircuitOpen
    );
}

#[tokio::test(start_paused = true)]
async fn the_key_map_is_bounded() {
    let provider = tower::service_fn(|_request: http::Request<String>| async {
        Ok::<_, BoxError>(http::Response::new(()))
    });
    let layer = BreakerLayer::new(BreakerConfig {
        max_keys: 10,
        idle_eviction: Duration::from_secs(60),
        ..quiet_config()
    });
    let handle = layer.handle();
    let service = layer.layer(provider);
    for i in 0..50 {
        service
            .clone()
            .oneshot(request(&format!("model-{i}")))
            .await
            .unwrap();
        assert!(handle.len() <= 10);
    }
    // Once the first keys sit idle past the eviction time, new keys take their places.
    tokio::time::sleep(Duration::from_secs(61)).await;
    service.clone().oneshot(request("fresh")).await.unwrap();
    assert!(handle.get("api.x.ai", "fresh").is_some());
    assert!(handle.len() <= 10);
}

#[tokio::test(start_paused = true)]
async fn auth_latches_until_reset_and_the_handle_steers() {
    let status = Arc::new(AtomicUsize::new(401));
    let provider = {
        let status = Arc::clone(&status);
        tower::service_fn(move |_request: http::Request<String>| {
            let code = status.load(Ordering::SeqCst) as u16;
            async move { Ok::<_, BoxError>(http::Response::builder().status(code).body(()).unwrap()) }
        })
    };
    let layer = BreakerLayer::new(quiet_config());
    let handle = layer.handle();
    let service = layer.layer(provider);
    service.clone().oneshot(request("m")).await.unwrap();
    // Latched: refused until the re-probe time (10 minutes), whatever waits before it.
    tokio::time::sleep(Duration::from_secs(599)).await;
    let error = service.clone().oneshot(request("m")).await.unwrap_err();
    assert!(error.to_string().contains("API key"), "{error}");
    assert_eq!(Outcome::from_error(&*error).wait_hint(), None);

    status.store(200, Ordering::SeqCst);
    handle.reset();
    assert_eq!(
        service
            .clone()
            .oneshot(request("m"))
            .await
            .unwrap()
            .status(),
        200
    );

    handle.force_open();
    assert!(service.clone().oneshot(request("m")).await.is_err());
    assert_eq!(
        handle.get("api.x.ai", "m").unwrap().state,
        BreakerState::ForcedOpen
    );
    handle.disable();
    status.store(500, Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(
            service
                .clone()
                .oneshot(request("m"))
                .await
                .unwrap()
                .status(),
            500
        );
    }
    handle.resume();
    assert_eq!(
        handle.get("api.x.ai", "m").unwrap().state,
        BreakerState::Closed,
        "disabled counts nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_does_not_hammer_an_open_breaker() {
    let provider = Steered::new(Duration::from_millis(100));
    // Open longer than the retry's backoff (2 s and up, jittered): the sixth attempt meets
    // the open breaker, not a half-open one whose probe it would be.
    let breaker = BreakerLayer::new(BreakerConfig {
        open_base: Duration::from_secs(30),
        open_cap: Duration::from_secs(30),
        ..quiet_config()
    });
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(
            RetryPolicy::builder().no_budget().max_attempts(3).build(),
        ))
        .layer(breaker)
        .service(provider.service());
    // Two logical calls of three attempts each: the fifth failure opens the breaker, and the
    // sixth attempt is refused without reaching the provider.
    for _ in 0..2 {
        let _ = service.clone().oneshot(request("m")).await;
    }
    assert_eq!(provider.calls.load(Ordering::SeqCst), 5);
    let started = Instant::now();
    let error = service.clone().oneshot(request("m")).await.unwrap_err();
    assert_eq!(
        Outcome::from_error(&*error).class(),
        OutcomeClass::CircuitOpen
    );
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "refused at once, not retried"
    );
    assert_eq!(provider.calls.load(Ordering::SeqCst), 5);
}

/// A ten-minute outage at 200 requests/min through classify and the breaker.
#[test]
fn outage_opens_fast_and_recovery_is_found_within_30_seconds() {
    let rt = ballast_sim::paused_runtime().unwrap();
    rt.block_on(async {
        let outage_start = Duration::from_secs(60);
        let outage = Duration::from_secs(600);
        let sim = Simulator::new(Scenario::outage_then_recovery(outage_start, outage));
        let layer = BreakerLayer::new(BreakerConfig::default());
        let handle = layer.handle();
        let service = ServiceBuilder::new()
            .layer(layer)
            .timeout(Duration::from_secs(90))
            .layer(ClassifyLayer::new(Provider::XAi))
            .service(sim.clone());
        let start = Instant::now();
        let mut first_refusal = None;
        let mut tasks = Vec::new();
        // 200 requests/min: one every 300 ms, for 15 minutes.
        for i in 0..3000u32 {
            tokio::time::sleep_until(start + Duration::from_millis(300) * i).await;
            let service = service.clone();
            tasks.push(tokio::spawn(async move {
                let result = service
                    .oneshot(noted(
                        http::Request::post("http://sim/v1/chat/completions")
                            .body(String::from(r#"{"model":"grok-code-fast-1","max_tokens":50}"#))
                            .unwrap(),
                    ))
                    .await;
                (Instant::now(), Outcome::from_result(&result).class())
            }));
            if first_refusal.is_none()
                && handle
                    .get("sim", "grok-code-fast-1")
                    .is_some_and(|s| matches!(s.state, BreakerState::Open { .. }))
            {
                first_refusal = Some(start.elapsed());
            }
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        assert_eq!(results.len(), 3000, "every call answered");
        let ledger = sim.ledger();
        // Opened after exactly 5 failed calls, the docs' figure: at 200 requests/min, 1.5 s
        // into the outage. (A success sent before the run began does not reset it.)
        let opened = first_refusal.expect("the breaker opened");
        assert_eq!(opened - outage_start, Duration::from_millis(1500));
        let failed_before_open = ledger
            .entries()
            .iter()
            .filter(|e| e.outcome == SimOutcome::Outage && e.at <= opened)
            .count();
        assert_eq!(failed_before_open, 5, "failed calls before opening");
        // While open, only probes reach the provider: one per open time of 3 s plus up to
        // 20% jitter, so 166 to 200 in 600 s, after the 5 that opened it.
        let during = ledger.entries().iter().filter(|e| e.outcome == SimOutcome::Outage).count();
        assert!((171..=205).contains(&during), "{during} calls reached the provider during the outage");
        // The first success after recovery comes within 30 s.
        let recovered = outage_start + outage;
        let first_success = ledger
            .entries()
            .iter()
            .find(|e| e.at >= recovered && e.outcome == SimOutcome::Success)
            .expect("a success after recovery");
        assert!(first_success.at - recovered <= Duration::from_secs(30), "first success {:?} after recovery", first_success.at - recovered);
        println!(
            "outage: opened {:.1}s after it began, {failed_before_open} failed calls first, {during} calls in 10 min, first success {:.1}s after recovery",
            (opened - outage_start).as_secs_f64(),
            (first_success.at - recovered).as_secs_f64()
        );
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Over random flaky providers, with callers that give up at random: every call gets a
    /// response or a typed error, and no breaker is left wedged (a non-latched breaker lets
    /// a call through once its longest open time has passed).
    #[test]
    fn nothing_is_lost_and_nothing_wedges(
        scenario in ballast_sim::strategy::flaky_scenario(),
        calls in 1usize..80,
        concurrency in 1usize..10,
        patience in prop::option::of(1u64..120),
    ) {
        let rt = ballast_sim::paused_runtime().unwrap();
        rt.block_on(async move {
            let flavor = scenario.flavor;
            let sim = Simulator::new(scenario);
            let layer = BreakerLayer::new(BreakerConfig::default());
            let handle = layer.handle();
            let service = ServiceBuilder::new()
                .layer(layer)
                .timeout(Duration::from_secs(90))
                .layer(ClassifyLayer::new(Provider::XAi))
                .service(sim.clone());
            let mut answered = 0;
            let ids: Vec<usize> = (0..calls).collect();
            for wave in ids.chunks(concurrency) {
                let batch = wave.iter().map(|_| {
                    let call = service.clone().oneshot(
                        flavor.request("m", 30, "hi"),
                    );
                    async move {
                        match patience {
                            Some(secs) => tokio::time::timeout(Duration::from_secs(secs), call).await.ok(),
                            None => Some(call.await),
                        }
                    }
                });
                for result in join_all(batch).await {
                    if let Some(result) = result {
                        let class = Outcome::from_result(&result).class();
                        prop_assert!(class != OutcomeClass::Unknown, "{:?}", result.err());
                    }
                    answered += 1;
                }
            }
            prop_assert_eq!(answered, calls);
            let config = BreakerConfig::default();
            tokio::time::sleep(config.longest_open() + config.max_hint).await;
            let latched = handle.snapshot().iter().any(|s| matches!(s.state, BreakerState::Latched(_)));
            if !latched {
                let before = sim.ledger().len();
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    service.clone().oneshot(
                        flavor.request("m", 30, "hi"),
                    ),
                )
                .await;
                prop_assert_eq!(sim.ledger().len(), before + 1, "the breaker let a call through");
            }
            Ok(())
        })?;
    }
}

/// A server's wait hint stretches the open time as far as the one hint policy allows
/// (`HintTrust`, the retry's too): by default 5 s past the backoff's open time; honoured,
/// all of it up to `max_hint`.
#[tokio::test(start_paused = true)]
async fn a_server_hint_keeps_the_breaker_open_as_far_as_it_is_trusted() {
    use ballast_classify::HintTrust;
    // (trust, hint, open time: the backoff's alone is 3 s)
    let cases = [
        (HintTrust::default(), 40, 8),
        (HintTrust::default(), 2, 3),
        (HintTrust::Honour, 40, 40),
        (HintTrust::Honour, 100, 60),
        (HintTrust::Ignore, 40, 3),
    ];
    for (trust, hint, open) in cases {
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = {
            let calls = Arc::clone(&calls);
            tower::service_fn(move |_request: http::Request<String>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut response = http::Response::builder().status(503).body(()).unwrap();
                    let hint = ballast_classify::WaitHint::new(
                        Duration::from_secs(hint),
                        ballast_classify::HintSource::RetryAfter,
                    );
                    response.extensions_mut().insert(
                        Outcome::from_status(http::StatusCode::SERVICE_UNAVAILABLE)
                            .with_wait_hint(Some(hint)),
                    );
                    Ok::<_, BoxError>(response)
                }
            })
        };
        let layer = BreakerLayer::new(BreakerConfig {
            consecutive_failures: 1,
            hint_trust: trust,
            ..quiet_config()
        });
        let handle = layer.handle();
        let service = layer.layer(provider);
        service.clone().oneshot(request("m")).await.unwrap();
        let BreakerState::Open { retry_in } = handle.get("api.x.ai", "m").unwrap().state else {
            panic!("open");
        };
        assert_eq!(
            retry_in,
            Duration::from_secs(open),
            "{trust:?}, hint {hint} s"
        );
        tokio::time::sleep(Duration::from_secs(open - 1)).await;
        assert!(service.clone().oneshot(request("m")).await.is_err());
        tokio::time::sleep(Duration::from_secs(1)).await;
        service.clone().oneshot(request("m")).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

/// A provider answering each request as its headers say: `x-status` after `x-millis`.
fn scripted() -> tower::util::BoxCloneService<http::Request<String>, http::Response<()>, BoxError> {
    tower::service_fn(|request: http::Request<String>| {
        let header =
            |name: &str| -> u64 { request.headers()[name].to_str().unwrap().parse().unwrap() };
        let (status, millis) = (header("x-status"), header("x-millis"));
        async move {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            let status = u16::try_from(status).unwrap();
            Ok::<_, BoxError>(http::Response::builder().status(status).body(()).unwrap())
        }
    })
    .boxed_clone()
}

fn scripted_request(status: u16, millis: u64) -> http::Request<String> {
    let mut request = request("m");
    let headers = request.headers_mut();
    headers.insert("x-status", status.into());
    headers.insert("x-millis", millis.into());
    request
}

#[tokio::test(start_paused = true)]
async fn a_success_sent_before_a_run_of_failures_does_not_end_it() {
    let layer = BreakerLayer::with_seed(quiet_config(), 1);
    let handle = layer.handle();
    let service = layer.layer(scripted());
    let state = || handle.get("api.x.ai", "m").unwrap().state.as_str();

    // A long completion is under way when the provider falls over.
    let long = tokio::spawn(service.clone().oneshot(scripted_request(200, 10_000)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..4 {
        let _ = service.clone().oneshot(scripted_request(500, 10)).await;
    }
    // It ends well, but it was sent before the failures began: old news.
    assert!(long.await.unwrap().is_ok());
    assert_eq!(state(), "closed");
    let _ = service.clone().oneshot(scripted_request(500, 10)).await;
    assert_eq!(
        state(),
        "open",
        "five failures in a row, whatever finished meanwhile"
    );

    // A success sent after the run began does end it.
    let layer = BreakerLayer::with_seed(quiet_config(), 1);
    let handle = layer.handle();
    let service = layer.layer(scripted());
    for _ in 0..4 {
        let _ = service.clone().oneshot(scripted_request(500, 10)).await;
    }
    let _ = service.clone().oneshot(scripted_request(200, 10)).await;
    let _ = service.clone().oneshot(scripted_request(500, 10)).await;
    assert_eq!(
        handle.get("api.x.ai", "m").unwrap().state.as_str(),
        "closed"
    );
}

/// A provider with room for two calls a second that fails the rest with 503: overload, the
/// case admission is for (its failures come from the load it is offered).
#[derive(Clone, Default)]
struct TwoASecond {
    served: Arc<std::sync::Mutex<(u64, u32)>>,
    calls: Arc<AtomicUsize>,
}

impl TwoASecond {
    fn service(&self, start: Instant) -> TestProvider {
        let served = Arc::clone(&self.served);
        answering(&self.calls, move || {
            let second = start.elapsed().as_secs();
            let mut served = served.lock().unwrap();
            if served.0 != second {
                *served = (second, 0);
            }
            let status = if served.1 < 2 {
                served.1 += 1;
                200
            } else {
                503
            };
            (status, Duration::ZERO)
        })
    }
}

/// Ten calls a second for a minute into a provider with room for two: the classic breaker
/// opens and refuses everything while the provider still serves two calls a second;
/// admission never opens, sends about `multiplier` (2) calls per success, and refuses the
/// rest at once, so nearly every call it sends past the first seconds is one the provider
/// has room for.
#[tokio::test(start_paused = true)]
async fn admission_sends_in_proportion_to_what_an_overloaded_provider_serves() {
    async fn run(config: BreakerConfig) -> (usize, usize, usize, ballast_breaker::KeySnapshot) {
        let provider = TwoASecond::default();
        let layer = BreakerLayer::with_seed(config, 7);
        let handle = layer.handle();
        let service = layer.layer(provider.service(Instant::now()));
        let (mut served, mut refused) = (0, 0);
        for _ in 0..600 {
            match service.clone().oneshot(request("m")).await {
                Ok(response) if response.status() == 200 => served += 1,
                Ok(_) => {}
                Err(error) => {
                    assert_eq!(
                        Outcome::from_error(&*error).class(),
                        OutcomeClass::CircuitOpen
                    );
                    refused += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sent = provider.calls.load(Ordering::SeqCst);
        (sent, served, refused, handle.get("api.x.ai", "m").unwrap())
    }
    let (sent, served, refused, snapshot) = run(BreakerConfig::adaptive()).await;
    // Room for 120 successes in the minute: admission got 114 of them (seed 7), sending
    // 249 calls (2.2 per success), and never opened.
    assert_eq!((sent, served, refused), (249, 114, 351));
    assert_eq!(snapshot.opened_total, 0);
    assert_eq!(snapshot.state, BreakerState::Shedding);
    assert_eq!((snapshot.calls, snapshot.refused), (38, 52));
    // The classic breaker, same provider: opened fifteen times and served 60.
    let (sent, served, refused, snapshot) = run(quiet_config()).await;
    assert_eq!((sent, served, refused), (165, 60, 435));
    assert_eq!(snapshot.opened_total, 15);
}

/// With admission, an outage still opens the breaker: five failures in a row with no
/// success in the window; a run of five inside a window that still holds a success does not.
#[tokio::test(start_paused = true)]
async fn with_admission_an_outage_still_opens() {
    let provider = Steered::new(Duration::from_millis(10));
    let layer = BreakerLayer::with_seed(BreakerConfig::adaptive(), 7);
    let handle = layer.handle();
    let service = layer.layer(provider.service());
    provider.failing.store(false, Ordering::SeqCst);
    service.clone().oneshot(request("m")).await.unwrap();
    provider.failing.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        service.clone().oneshot(request("m")).await.unwrap();
    }
    let snapshot = handle.get("api.x.ai", "m").unwrap();
    assert_eq!(snapshot.opened_total, 0, "a success is still in the window");
    assert_eq!(snapshot.consecutive_failures, 5);
    // Ten seconds on, the success has left the window: the next failure opens it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    service.clone().oneshot(request("m")).await.unwrap();
    let snapshot = handle.get("api.x.ai", "m").unwrap();
    assert!(
        matches!(snapshot.state, BreakerState::Open { .. }),
        "{snapshot:?}"
    );
    assert_eq!(snapshot.opened_total, 1);
}

/// A latched key lets one probe through every `latch_reprobe`: a key still rejected latches
/// again for as long, a fixed one closes, with no reset and no restart.
#[tokio::test(start_paused = true)]
async fn a_latched_key_is_probed_again_after_the_reprobe_time() {
    let status = Arc::new(AtomicUsize::new(401));
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let (status, calls) = (Arc::clone(&status), Arc::clone(&calls));
        tower::service_fn(move |_request: http::Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let code = status.load(Ordering::SeqCst) as u16;
            async move { Ok::<_, BoxError>(http::Response::builder().status(code).body(()).unwrap()) }
        })
    };
    let layer = BreakerLayer::new(quiet_config());
    let handle = layer.handle();
    let service = layer.layer(provider);
    let state = || handle.get("api.x.ai", "m").unwrap().state;
    let latched = BreakerState::Latched(ballast_breaker::LatchReason::Auth);
    service.clone().oneshot(request("m")).await.unwrap();
    assert_eq!(state(), latched);
    let minute = Duration::from_secs(60);
    tokio::time::sleep(9 * minute).await;
    assert!(service.clone().oneshot(request("m")).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "refused while latched");
    // At 10 minutes one probe goes; the key is still bad: latched again, for 10 more.
    tokio::time::sleep(minute).await;
    assert_eq!(
        service
            .clone()
            .oneshot(request("m"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(state(), latched);
    tokio::time::sleep(9 * minute).await;
    assert!(service.clone().oneshot(request("m")).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The key is fixed; the next probe closes the breaker.
    status.store(200, Ordering::SeqCst);
    tokio::time::sleep(minute).await;
    assert_eq!(
        service
            .clone()
            .oneshot(request("m"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(state(), BreakerState::Closed);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// The handle steers one key: forced open, reset, read out, the other keys untouched.
#[tokio::test(start_paused = true)]
async fn the_handle_steers_one_key() {
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let calls = Arc::clone(&calls);
        tower::service_fn(move |request: http::Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            // Model "bad" has a rejected key.
            let code = if request.body().contains("bad") {
                401
            } else {
                200
            };
            async move { Ok::<_, BoxError>(http::Response::builder().status(code).body(()).unwrap()) }
        })
    };
    let layer = BreakerLayer::new(quiet_config());
    let handle = layer.handle();
    let service = layer.layer(provider);
    let call = |model: &str| service.clone().oneshot(request(model));
    assert_eq!(call("a").await.unwrap().status(), 200);
    // Forced open before its first call: made, and refused.
    handle.force_open_key("api.x.ai", "b");
    assert_eq!(
        handle.get("api.x.ai", "b").unwrap().state,
        BreakerState::ForcedOpen
    );
    let refused = call("b").await.unwrap_err();
    assert_eq!(
        Outcome::from_error(&*refused).class(),
        OutcomeClass::CircuitOpen
    );
    assert_eq!(
        call("a").await.unwrap().status(),
        200,
        "another key goes on"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A latched key, reset alone.
    assert_eq!(call("bad").await.unwrap().status(), 401);
    assert!(call("bad").await.is_err());
    assert!(handle.reset_key("api.x.ai", "bad"));
    assert_eq!(
        handle.get("api.x.ai", "bad").unwrap().state,
        BreakerState::Closed
    );
    assert_eq!(
        handle.get("api.x.ai", "b").unwrap().state,
        BreakerState::ForcedOpen
    );
    assert!(call("b").await.is_err(), "still forced open");
    assert!(handle.reset_key("api.x.ai", "b"));
    assert_eq!(call("b").await.unwrap().status(), 200);
    assert!(!handle.reset_key("api.x.ai", "never-seen"));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}
