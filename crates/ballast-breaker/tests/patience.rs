//! Patience: calls refused by an open breaker wait in a bounded line, within their deadline,
//! and are let go in order when the probe closes it.

use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use ballast_breaker::{
    Breaker, BreakerConfig, BreakerHandle, BreakerLayer, BreakerOpen, BreakerState, PartialTrip,
    Patience,
};
use ballast_classify::{BoxError, Deadline, Outcome, OutcomeClass, RequestFacts};
use futures::future::join_all;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

/// A request numbered `n` (header `x-n`), with its facts read.
fn request(n: usize) -> http::Request<String> {
    let mut request = http::Request::post("https://api.x.ai/v1/chat/completions")
        .header("x-n", n.to_string())
        .body(r#"{"model":"m","max_tokens":20}"#.to_owned())
        .unwrap();
    RequestFacts::note(&mut request);
    request
}

/// `request(n)` that must be answered within `within`.
fn due(n: usize, within: Duration) -> http::Request<String> {
    let mut request = request(n);
    Deadline::after(within).set_sooner(request.extensions_mut());
    request
}

/// What a [`Recorder`] serves through.
type Provider = tower::util::BoxCloneService<
    http::Request<String>,
    http::Response<()>,
    std::convert::Infallible,
>;

/// A provider that answers 500 while `failing`, else 200, after `delay`, and writes down
/// which call (`x-n`) arrived when.
#[derive(Clone)]
struct Recorder {
    failing: Arc<AtomicBool>,
    delay: Duration,
    arrivals: Arc<Mutex<Vec<(usize, Duration)>>>,
    start: Instant,
}

impl Recorder {
    fn new(delay: Duration) -> Self {
        Self {
            failing: Arc::new(AtomicBool::new(true)),
            delay,
            arrivals: Arc::default(),
            start: Instant::now(),
        }
    }

    fn arrivals(&self) -> Vec<(usize, Duration)> {
        self.arrivals.lock().unwrap().clone()
    }

    fn calls(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }

    fn service(&self) -> Provider {
        let this = self.clone();
        tower::service_fn(move |request: http::Request<String>| {
            let n = request.headers()["x-n"].to_str().unwrap().parse().unwrap();
            this.arrivals
                .lock()
                .unwrap()
                .push((n, this.start.elapsed()));
            let status = if this.failing.load(Ordering::SeqCst) {
                500
            } else {
                200
            };
            let delay = this.delay;
            async move {
                tokio::time::sleep(delay).await;
                Ok(http::Response::builder().status(status).body(()).unwrap())
            }
        })
        .boxed_clone()
    }
}

/// Opens after one failure for 5 s (no jitter), one probe; patient with `max_waiting`.
/// Open for 5 s after each trip (the default is 3 s): room for deadlines on either side.
fn config(max_waiting: u32) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 1,
        open_jitter: 0.0,
        open_base: Duration::from_secs(5),
        open_cap: Duration::from_secs(5),
        patience: Some(Patience {
            max_waiting,
            ..Patience::default()
        }),
        ..BreakerConfig::default()
    }
}

/// Polls `future` once.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// The breaker's refusal inside a `circuit_open` error.
fn open_of(error: &BoxError) -> &BreakerOpen {
    assert_eq!(
        Outcome::from_error(&**error).class(),
        OutcomeClass::CircuitOpen,
        "{error}"
    );
    error
        .downcast_ref::<ballast_classify::ClassifiedError>()
        .and_then(std::error::Error::source)
        .and_then(|e| e.downcast_ref::<BreakerOpen>())
        .expect("a BreakerOpen inside")
}

/// A refusal's state and wait hint (`None` for a success or a refusal without a hint).
fn refusal(result: &Result<http::Response<()>, BoxError>) -> Option<(BreakerState, Duration)> {
    let error = result.as_ref().err()?;
    let hint = Outcome::from_error(&**error).wait_hint()?.delay();
    Some((open_of(error).state(), hint))
}

/// The service under test: a breaker over a [`Recorder`].
type Tested = Breaker<Provider>;

/// A breaker with `config` over a provider answering after `delay`, opened by one failed
/// call (request 0): the provider, the handle, the service.
async fn opened(config: BreakerConfig, delay: Duration) -> (Recorder, BreakerHandle, Tested) {
    let provider = Recorder::new(delay);
    let layer = BreakerLayer::new(config);
    let handle = layer.handle();
    let service = layer.layer(provider.service());
    service.clone().oneshot(request(0)).await.unwrap();
    (provider, handle, service)
}

#[tokio::test(start_paused = true)]
async fn waiting_calls_get_one_probe_then_go_in_the_order_they_came() {
    // One failure opens it for 5 s.
    let (provider, handle, service) = opened(config(256), Duration::from_millis(500)).await;
    assert!(matches!(
        handle.get("api.x.ai", "m").unwrap().state,
        BreakerState::Open { .. }
    ));
    provider.failing.store(false, Ordering::SeqCst);
    // Ten callers arrive while it is open, a millisecond apart.
    let mut calls = Vec::new();
    for n in 1..=10 {
        calls.push(tokio::spawn(service.clone().oneshot(request(n))));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let results = join_all(calls).await;
    assert!(
        results.iter().all(|r| r.as_ref().unwrap().is_ok()),
        "every waiting call was served"
    );
    let arrivals = provider.arrivals();
    assert_eq!(
        arrivals.len(),
        11,
        "one failure, one probe, nine let go: no probe per waiter"
    );
    // The probe goes when the open time ends (5.5 s after the start: the failure took 0.5 s),
    // the others when it closes the breaker, half a second later, in the order they came.
    let probe = arrivals[1];
    assert_eq!(probe.1, Duration::from_millis(5_500));
    let rest: Vec<usize> = arrivals[2..].iter().map(|(n, _)| *n).collect();
    let expected: Vec<usize> = (1..=10).filter(|n| *n != probe.0).collect();
    assert_eq!(rest, expected, "let go in the order they came");
    assert!(
        arrivals[2..]
            .iter()
            .all(|(_, at)| *at == Duration::from_millis(6_000)),
        "{arrivals:?}"
    );
    assert_eq!(
        handle.get("api.x.ai", "m").unwrap().state,
        BreakerState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn the_line_is_bounded_and_the_rest_are_told_the_open_time() {
    let (provider, handle, service) = opened(config(3), Duration::ZERO).await;
    let waiting_now = || handle.get("api.x.ai", "m").unwrap().waiting;
    let mut waiting = Vec::new();
    for n in 1..=3 {
        let mut call = Box::pin(service.clone().oneshot(request(n)));
        assert!(poll_once(&mut call).await.is_pending(), "call {n} waits");
        waiting.push(call);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refused = service.clone().oneshot(request(4)).await;
    assert_eq!(
        refusal(&refused),
        Some((
            BreakerState::Open {
                retry_in: Duration::from_secs(4)
            },
            Duration::from_secs(4)
        )),
        "the fourth is refused at once, told the 4 s left of the open time"
    );
    assert_eq!(waiting_now(), 3);
    // A waiting call that is dropped gives its place back.
    drop(waiting.pop());
    assert_eq!(waiting_now(), 2);
    let mut fourth = Box::pin(service.clone().oneshot(request(5)));
    assert!(
        poll_once(&mut fourth).await.is_pending(),
        "a place came free"
    );
    provider.failing.store(false, Ordering::SeqCst);
    let results = join_all(waiting.into_iter().chain([fourth])).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(waiting_now(), 0);
    assert_eq!(
        provider.calls(),
        4,
        "the failure and the three waiting calls"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_that_cannot_outwait_the_open_time_is_refused_at_once_with_an_honest_hint() {
    let (provider, _, service) = opened(config(256), Duration::ZERO).await;
    let start = Instant::now();
    let refused = service
        .clone()
        .oneshot(due(1, Duration::from_secs(3)))
        .await;
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no time spent waiting in vain"
    );
    assert_eq!(
        refusal(&refused).map(|(_, hint)| hint),
        Some(Duration::from_secs(5)),
        "the hint is the open time, not the deadline"
    );
    // A call whose deadline covers the open time waits it out and is served.
    provider.failing.store(false, Ordering::SeqCst);
    let served = service
        .clone()
        .oneshot(due(2, Duration::from_secs(6)))
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_gives_up_at_its_deadline() {
    // The probe hangs for a minute; a waiter with 3 s left gives up after 3 s.
    let provider = Recorder::new(Duration::from_secs(60));
    let service = BreakerLayer::new(config(256)).layer(provider.service());
    let first = tokio::spawn(service.clone().oneshot(request(0)));
    tokio::time::sleep(Duration::from_secs(60)).await;
    first.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let probe = tokio::spawn(service.clone().oneshot(request(1)));
    tokio::task::yield_now().await;
    let start = Instant::now();
    let refused = service
        .clone()
        .oneshot(due(2, Duration::from_secs(3)))
        .await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(
        refusal(&refused),
        Some((BreakerState::HalfOpen, Duration::from_secs(1)))
    );
    assert_eq!(provider.calls(), 2, "the failure and the probe");
    probe.abort();
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_sends_the_waiters_back_for_the_next_open_time() {
    let growing = BreakerConfig {
        open_cap: Duration::from_secs(20),
        ..config(256)
    };
    let (provider, _, service) = opened(growing, Duration::ZERO).await;
    // Two waiters: one with room for two open times (5 s + 10 s), one with room for one.
    let long = tokio::spawn(service.clone().oneshot(due(1, Duration::from_secs(20))));
    tokio::task::yield_now().await;
    let short = tokio::spawn(service.clone().oneshot(due(2, Duration::from_secs(8))));
    tokio::task::yield_now().await;
    // At 5 s the first waiter probes and fails; the open time doubles to 10 s, past the
    // second's deadline: it is refused then, told 10 s.
    let start = Instant::now();
    let short = short.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(
        refusal(&short).map(|(_, hint)| hint),
        Some(Duration::from_secs(10))
    );
    // The failed probe's caller has room for the next open time: it goes back in line and
    // probes again at 15 s; that fails too, the next open time (20 s) ends past its
    // deadline, and it gets the second probe's own answer.
    let long = long.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    assert_eq!(long.status(), 500, "the last probe's own answer");
    let times: Vec<Duration> = provider.arrivals().iter().map(|(_, at)| *at).collect();
    assert_eq!(
        times,
        [
            Duration::ZERO,
            Duration::from_secs(5),
            Duration::from_secs(15)
        ]
    );
}

/// A failed probe is the breaker's finding, not its caller's failure: the caller goes back
/// in line and is served when the provider is back, with one call per open time in all.
#[tokio::test(start_paused = true)]
async fn a_caller_whose_probe_fails_is_served_when_the_provider_is_back() {
    let (provider, _, service) = opened(config(256), Duration::ZERO).await;
    let recovery = {
        let failing = Arc::clone(&provider.failing);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(17)).await;
            failing.store(false, Ordering::SeqCst);
        })
    };
    let start = Instant::now();
    let served = service.clone().oneshot(request(1)).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(20));
    let arrivals = provider.arrivals();
    assert_eq!(
        arrivals,
        [0, 5, 10, 15, 20].map(|s| (if s == 0 { 0 } else { 1 }, Duration::from_secs(s))),
        "the first failure, then the caller as the probe once per 5 s open time"
    );
    recovery.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_wake_up_given_to_a_dropped_waiter_passes_on() {
    let (provider, handle, service) = opened(config(256), Duration::ZERO).await;
    provider.failing.store(false, Ordering::SeqCst);
    let mut first = Box::pin(service.clone().oneshot(request(1)));
    let mut second = pin!(service.clone().oneshot(request(2)));
    assert!(poll_once(&mut first).await.is_pending());
    assert!(poll_once(&mut second).await.is_pending());
    // Reset closes the breaker and wakes the first in line, which is dropped before it runs.
    handle.reset();
    drop(first);
    let response = poll_once(&mut second).await;
    assert!(
        matches!(response, Poll::Ready(Ok(_))),
        "the second was woken in the first's place, with no time passed"
    );
    assert_eq!(
        provider.arrivals(),
        vec![(0, Duration::ZERO), (2, Duration::ZERO)]
    );
}

#[tokio::test(start_paused = true)]
async fn without_patience_a_refused_call_fails_at_once() {
    let fail_fast = BreakerConfig {
        patience: None,
        ..config(256)
    };
    let (_, _, service) = opened(fail_fast, Duration::ZERO).await;
    let start = Instant::now();
    let refused = service.clone().oneshot(request(1)).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        refusal(&refused).map(|(_, hint)| hint),
        Some(Duration::from_secs(5))
    );
}

/// How long a patient call (a minute's deadline) to a provider that stays down waits
/// before its last probe's own 500 comes back.
async fn failed_after(service: &Tested) -> Duration {
    let start = Instant::now();
    let failed = service
        .clone()
        .oneshot(due(1, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(failed.status(), 500, "the last probe's own answer");
    start.elapsed()
}

/// A provider that stays down costs a patient call at most `max_probes` probes, not one per
/// open time until its deadline.
#[tokio::test(start_paused = true)]
async fn a_call_is_the_probe_at_most_max_probes_times() {
    let two_probes = BreakerConfig {
        patience: Some(Patience {
            max_probes: 2,
            ..Patience::default()
        }),
        ..config(256)
    };
    let (provider, _, service) = opened(two_probes, Duration::ZERO).await;
    assert_eq!(failed_after(&service).await, Duration::from_secs(10));
    assert_eq!(provider.calls(), 3, "the first failure and two probes");
}

/// The probes of a partial trip (a burst) are bounded for the whole episode, not per call:
/// a waiting call may be one of them more than `max_probes` times, and once the episode is
/// an outage's its probes count again.
#[tokio::test(start_paused = true)]
async fn the_probes_of_a_partial_trip_do_not_use_up_a_calls_own() {
    let provider = Recorder::new(Duration::ZERO);
    let service = BreakerLayer::new(BreakerConfig {
        partial: Some(PartialTrip {
            open: Duration::from_secs(1),
            probes: 1,
            outage_after: 4,
            ramp: None,
            ..PartialTrip::default()
        }),
        patience: Some(Patience {
            max_probes: 2,
            ..Patience::default()
        }),
        ..config(256)
    })
    .layer(provider.service());
    provider.failing.store(false, Ordering::SeqCst);
    service.clone().oneshot(request(0)).await.unwrap();
    provider.failing.store(true, Ordering::SeqCst);
    service.clone().oneshot(request(0)).await.unwrap();
    // Four partial probes 1 s apart (the fourth failure makes it an outage: 5 s), then the
    // call's own two.
    assert_eq!(failed_after(&service).await, Duration::from_secs(4 + 5 + 5));
    assert_eq!(provider.calls(), 2 + 4 + 2);
}

/// Waiting calls follow the handle: disabling the breakers lets them through at once,
/// forcing them open refuses them at once.
#[tokio::test(start_paused = true)]
async fn waiting_calls_follow_the_handle() {
    let (provider, handle, service) = opened(config(256), Duration::ZERO).await;
    provider.failing.store(false, Ordering::SeqCst);
    let start = Instant::now();
    let mut refused = Box::pin(service.clone().oneshot(request(1)));
    assert!(poll_once(&mut refused).await.is_pending());
    handle.force_open();
    let refused = refused.await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    let error = refused.unwrap_err();
    assert_eq!(
        open_of(&error).state(),
        BreakerState::ForcedOpen,
        "refused at once"
    );
    handle.resume();
    let mut let_through = Box::pin(service.clone().oneshot(request(2)));
    assert!(poll_once(&mut let_through).await.is_pending());
    handle.disable();
    let served = let_through.await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(start.elapsed(), Duration::ZERO, "let through at once");
    assert_eq!(
        provider.arrivals(),
        [(0, Duration::ZERO), (2, Duration::ZERO)]
    );
}

/// A request marked `FailFast` (a router's target that is not the last) is refused at once
/// even by a patient breaker, so the router can try the next target.
#[tokio::test(start_paused = true)]
async fn a_fail_fast_request_is_refused_at_once() {
    let (_, _, service) = opened(config(256), Duration::ZERO).await;
    let mut hurried = request(1);
    hurried.extensions_mut().insert(ballast_classify::FailFast);
    let start = Instant::now();
    let refused = service.clone().oneshot(hurried).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        refusal(&refused).map(|(_, hint)| hint),
        Some(Duration::from_secs(5))
    );
}

/// After a partial trip, waiting calls follow the probes that stay quiet, at each step of
/// the ramp (three at the end of the open time, three more 250 ms later, the last two at
/// 500 ms), not when the first probe answers a second later.
#[tokio::test(start_paused = true)]
async fn waiting_calls_follow_quiet_probes() {
    let provider = Recorder::new(Duration::from_secs(1));
    let service = BreakerLayer::new(BreakerConfig {
        partial: Some(PartialTrip {
            ramp: Some(Duration::from_millis(250)),
            ..PartialTrip::default()
        }),
        ..config(256)
    })
    .layer(provider.service());
    provider.failing.store(false, Ordering::SeqCst);
    service.clone().oneshot(request(0)).await.unwrap();
    provider.failing.store(true, Ordering::SeqCst);
    service.clone().oneshot(request(1)).await.unwrap();
    // Tripped at 2 s, after a success: partial, open until 3.5 s.
    provider.failing.store(false, Ordering::SeqCst);
    let served = join_all((2..10).map(|n| service.clone().oneshot(request(n)))).await;
    assert!(served.iter().all(|r| r.as_ref().unwrap().status() == 200));
    let mut sent: Vec<u128> = provider.arrivals()[2..]
        .iter()
        .map(|(_, at)| at.as_millis())
        .collect();
    sent.sort_unstable();
    assert_eq!(sent, [3500, 3500, 3500, 3750, 3750, 3750, 4000, 4000]);
}
