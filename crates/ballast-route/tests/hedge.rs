//! Hedging under the paused clock: a stuck call gets a second attempt after the percentile
//! delay, the first success wins, failures never beat a pending success, and the cap holds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_classify::{BoxError, Deadline, RequestBody, Sent};
use ballast_route::{HedgeConfig, HedgeLayer};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

/// What a test provider's service and call count are.
type Provider = (
    tower::util::BoxCloneSyncService<http::Request<RequestBody>, http::Response<()>, BoxError>,
    Arc<AtomicUsize>,
);

/// A provider whose `n`th call (from 0) answers `plan(n)`: a status after a delay, or never.
/// It notes no departures (`Sent`): the hedge times its calls from when they are made.
fn provider(plan: impl Fn(usize) -> Option<(u16, Duration)> + Send + Sync + 'static) -> Provider {
    stack(false, move |n| (Duration::ZERO, plan(n)))
}

/// A stack whose `n`th call first waits `plan(n).0` in a local line (a throttle's turn, a
/// breaker's patience), notes that it left (`Sent`, as the attempt's cost logger does) when
/// `marks`, then answers `plan(n).1`: a status after a delay, or never.
fn stack(
    marks: bool,
    plan: impl Fn(usize) -> (Duration, Option<(u16, Duration)>) + Send + Sync + 'static,
) -> Provider {
    let calls = Arc::new(AtomicUsize::new(0));
    let plan = Arc::new(plan);
    let counted = Arc::clone(&calls);
    let service = tower::service_fn(move |request: http::Request<RequestBody>| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        let (line, answer) = plan(n);
        async move {
            tokio::time::sleep(line).await;
            if marks {
                Sent::mark_request(&request, Instant::now());
            }
            match answer {
                Some((status, delay)) => {
                    tokio::time::sleep(delay).await;
                    Ok(http::Response::builder().status(status).body(()).unwrap())
                }
                None => std::future::pending().await,
            }
        }
    });
    (tower::util::BoxCloneSyncService::new(service), calls)
}

fn request() -> http::Request<RequestBody> {
    http::Request::post("http://p.invalid/v1/chat/completions")
        .body(RequestBody::new(r#"{"model":"m"}"#))
        .unwrap()
}

/// Ten calls through `service`: the hedge's record of a kind needs `min_samples` (10 in
/// `config`) answers before it hedges.
async fn warm_up<S>(service: &S)
where
    S: tower::Service<http::Request<RequestBody>, Error = BoxError> + Clone,
    S::Response: std::fmt::Debug,
{
    for _ in 0..10 {
        service.clone().oneshot(request()).await.unwrap();
    }
}

fn config() -> HedgeConfig {
    HedgeConfig {
        percentile: 0.9,
        min_samples: 10,
        max_share: 0.5,
        ..HedgeConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_stuck_call_is_hedged_after_the_percentile_and_the_hedge_answers() {
    // Ten calls answer in 1 s; the eleventh hangs for ever, its hedge answers in 1 s.
    let (provider, calls) = provider(|n| (n != 10).then_some((200, Duration::from_secs(1))));
    let layer = HedgeLayer::new(config());
    let service = layer.layer(provider);
    for _ in 0..10 {
        let response = service.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        layer.counts(),
        (10, 0),
        "no hedge before min_samples answers"
    );
    let start = Instant::now();
    let response = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    // p90 of ten 1 s answers is the 1 s bucket's upper bound, 2^(40/4) ms = 1.024 s; the
    // hedge then takes its 1 s.
    assert_eq!(start.elapsed(), Duration::from_millis(2_024));
    assert_eq!(calls.load(Ordering::SeqCst), 12);
    assert_eq!(layer.counts(), (11, 1));
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_in_a_line_below_is_timed_from_when_it_leaves() {
    // Ten calls wait 3 s for their turn and answer 1 s after leaving: the delay is the 1 s
    // bucket's bound (1.024 s), not the 4 s each took in all.
    let (provider, calls) = stack(true, |n| match n {
        // Waits 5 s for its turn, then answers in 1 s: never hedged.
        10 => (Duration::from_secs(5), Some((200, Duration::from_secs(1)))),
        // Waits 2 s, then hangs: hedged 1.024 s after it left; the hedge answers at once.
        11 => (Duration::from_secs(2), None),
        12 => (Duration::ZERO, Some((200, Duration::ZERO))),
        _ => (Duration::from_secs(3), Some((200, Duration::from_secs(1)))),
    });
    let layer = HedgeLayer::new(config());
    let service = layer.layer(provider);
    warm_up(&service).await;
    let start = Instant::now();
    service.clone().oneshot(request()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(6));
    assert_eq!(
        layer.counts(),
        (11, 0),
        "a call still in line is not hedged"
    );
    let start = Instant::now();
    service.clone().oneshot(request()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(3_024));
    assert_eq!(layer.counts(), (12, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 13);
}

#[tokio::test(start_paused = true)]
async fn a_failed_hedge_does_not_beat_a_pending_success() {
    // Warm up with ten 1 s answers; then the original takes 3 s and the hedge fails at once.
    let (provider, _) = provider(|n| match n {
        10 => Some((200, Duration::from_secs(3))),
        11 => Some((503, Duration::ZERO)),
        _ => Some((200, Duration::from_secs(1))),
    });
    let layer = HedgeLayer::new(config());
    let service = layer.layer(provider);
    warm_up(&service).await;
    let start = Instant::now();
    let response = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the original's success, not the hedge's 503"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn all_failing_gives_the_first_attempts_failure() {
    // The original fails at 3 s; its hedge at once (1.024 s), the second hedge (2.048 s)
    // at once too.
    let (provider, _) = provider(|n| match n {
        10 => Some((500, Duration::from_secs(3))),
        11 => Some((503, Duration::ZERO)),
        12 => Some((502, Duration::ZERO)),
        _ => Some((200, Duration::from_secs(1))),
    });
    let service = HedgeLayer::new(config()).layer(provider);
    warm_up(&service).await;
    let response = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 500);
}

#[tokio::test(start_paused = true)]
async fn hedges_stay_under_their_share_of_calls() {
    // Everything is slow after the warm-up: every call would be hedged without the cap.
    let (provider, calls) = provider(|n| {
        Some((
            200,
            if n < 10 {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(10)
            },
        ))
    });
    let layer = HedgeLayer::new(HedgeConfig {
        max_share: 0.1,
        ..config()
    });
    let service = layer.layer(provider);
    warm_up(&service).await;
    let results = futures_join(&service, 90).await;
    assert!(results.iter().all(|status| *status == 200));
    let (seen, hedges) = layer.counts();
    assert_eq!(seen, 100);
    assert_eq!(hedges, 10, "10% of 100 calls");
    assert_eq!(calls.load(Ordering::SeqCst), 110);
}

/// `n` concurrent calls, their statuses.
async fn futures_join<S>(service: &S, n: usize) -> Vec<u16>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<()>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let service = service.clone();
            let statuses = Arc::clone(&statuses);
            tokio::spawn(async move {
                let response = service.oneshot(request()).await.unwrap();
                statuses.lock().unwrap().push(response.status().as_u16());
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(statuses).unwrap().into_inner().unwrap()
}

/// Counts the provider calls in flight: one more while a guard lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `provider` with its attempts in flight counted in `in_flight` (one more while each lives).
fn counted(
    provider: Provider,
    in_flight: &Arc<AtomicUsize>,
) -> tower::util::BoxCloneSyncService<http::Request<RequestBody>, http::Response<()>, BoxError> {
    let in_flight = Arc::clone(in_flight);
    let (provider, _) = provider;
    tower::util::BoxCloneSyncService::new(tower::service_fn(
        move |request: http::Request<RequestBody>| {
            let guard = InFlight::new(&in_flight);
            let answer = provider.clone().oneshot(request);
            async move {
                let _guard = guard;
                answer.await
            }
        },
    ))
}

/// Ten calls answered through `service`, then one still pending 5 s after it was made.
async fn stalled_after_ten<S>(service: &S) -> impl std::future::Future + use<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<()>, Error = BoxError>
        + Clone,
{
    warm_up(service).await;
    let mut call = Box::pin(service.clone().oneshot(request()));
    assert!(
        tokio::time::timeout(Duration::from_secs(5), &mut call)
            .await
            .is_err()
    );
    call
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_drops_both_attempts() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let provider = provider(|n| (n < 10).then_some((200, Duration::from_secs(1))));
    let calls = Arc::clone(&provider.1);
    let service = HedgeLayer::new(config()).layer(counted(provider, &in_flight));
    let call = stalled_after_ten(&service).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        13,
        "the original and its two hedges (1.024 s and 2.048 s)"
    );
    assert_eq!(in_flight.load(Ordering::SeqCst), 3);
    drop(call);
    assert_eq!(in_flight.load(Ordering::SeqCst), 0, "every attempt dropped");
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_while_its_attempt_waits_in_a_line_leaves_nothing() {
    // Ten answers 1 s after leaving; then a call whose attempt waits in a line below for
    // ever: dropped after 5 s (the delay, 1.024 s, passed five times over), it has sent no
    // hedge, and its one attempt is gone with it.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let provider = stack(true, |n| {
        if n < 10 {
            (Duration::ZERO, Some((200, Duration::from_secs(1))))
        } else {
            (Duration::MAX, None)
        }
    });
    let calls = Arc::clone(&provider.1);
    let layer = HedgeLayer::new(config());
    let service = layer.layer(counted(provider, &in_flight));
    let call = stalled_after_ten(&service).await;
    assert_eq!(layer.counts(), (11, 0), "no hedge for a call still in line");
    assert_eq!(in_flight.load(Ordering::SeqCst), 1);
    drop(call);
    assert_eq!(in_flight.load(Ordering::SeqCst), 0, "its attempt dropped");
    assert_eq!(calls.load(Ordering::SeqCst), 11);
}

/// A hedge that hangs too gets a hedge of its own at the next delay; the call is served
/// by it, and no more than `max_per_call` hedges go out for one call.
#[tokio::test(start_paused = true)]
async fn a_hedge_that_hangs_too_is_hedged_again_up_to_the_cap() {
    // Ten 1 s answers; then calls 10 and 11 hang for ever, 12 answers in 1 s.
    let (hanging, calls) =
        provider(|n| (n != 10 && n != 11).then_some((200, Duration::from_secs(1))));
    let layer = HedgeLayer::new(config());
    let service = layer.layer(hanging);
    warm_up(&service).await;
    let start = Instant::now();
    let response = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    // Hedged at 1.024 s, hedged again at 2.048 s, answered 1 s later.
    assert_eq!(start.elapsed(), Duration::from_millis(3_048));
    assert_eq!(calls.load(Ordering::SeqCst), 13);
    assert_eq!(layer.counts(), (11, 2));

    // With one hedge a call, two hanging attempts wait on.
    let (one_hedge, calls) =
        provider(|n| (n != 10 && n != 11).then_some((200, Duration::from_secs(1))));
    let service = HedgeLayer::new(HedgeConfig {
        max_per_call: 1,
        ..config()
    })
    .layer(one_hedge);
    warm_up(&service).await;
    let mut call = Box::pin(service.clone().oneshot(request()));
    assert!(
        tokio::time::timeout(Duration::from_secs(60), &mut call)
            .await
            .is_err()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 12);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_leaves_past_the_calls_deadline() {
    // Ten 1 s answers; then call 10 and its first hedge fail after 4 s, the second hedge
    // answers in 1 s. Hedges would leave at 1.024 s and 2.048 s. A call whose deadline
    // (1.5 s) falls between them is hedged once and ends with both failures (the first
    // attempt's, at 1.024 + 4 s); one whose deadline (0.5 s) comes before the delay is not
    // hedged; one with time for both is answered by the second. A hedge past the deadline
    // would end later than the call may (its deadline plus one attempt).
    for (deadline_ms, hedges, calls_made, answered) in [
        (1_500, 1, 12, (500, 5_024)),
        (500, 0, 11, (500, 4_000)),
        (5_000, 2, 13, (200, 3_048)),
    ] {
        let (provider, calls) = provider(|n| match n {
            10 | 11 => Some((500, Duration::from_secs(4))),
            _ => Some((200, Duration::from_secs(1))),
        });
        let layer = HedgeLayer::new(config());
        let service = layer.layer(provider);
        warm_up(&service).await;
        let start = Instant::now();
        let mut call = request();
        Deadline::after(Duration::from_millis(deadline_ms)).set_sooner(call.extensions_mut());
        let response = service.clone().oneshot(call).await.unwrap();
        assert_eq!(
            (response.status().as_u16(), start.elapsed()),
            (answered.0, Duration::from_millis(answered.1)),
            "deadline {deadline_ms} ms"
        );
        assert_eq!(layer.counts(), (11, hedges), "deadline {deadline_ms} ms");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            calls_made,
            "deadline {deadline_ms} ms"
        );
    }
}

#[test]
fn time_scaling_divides_the_times_and_never_panics() {
    let config = HedgeConfig::default();
    let fast = config.time_scaled(60.0);
    assert_eq!(fast.period, Duration::from_secs(1));
    assert_eq!(fast.min_delay, Duration::from_nanos(1_666_667));
    // Out of range: left as they were, not a panic.
    assert_eq!(config.time_scaled(1e-300), config);
    assert_eq!(config.time_scaled(f64::NAN), config);
    assert_eq!(config.time_scaled(0.0), config);
}

/// A request for `model` with its facts noted, streamed or not.
fn request_for(model: &str, stream: bool) -> http::Request<RequestBody> {
    let mut request = http::Request::post("http://p.invalid/v1/chat/completions")
        .body(RequestBody::new(format!(
            r#"{{"model":"{model}","stream":{stream}}}"#
        )))
        .unwrap();
    ballast_classify::RequestFacts::note(&mut request);
    request
}

/// Each model, streamed or not, is hedged on its own answers: a fast model's stuck call
/// after the fast model's p90 (1.024 s), not the 8.192 s that one record of both models'
/// answers would give; and a kind with fewer than `min_samples` answers of its own (the
/// fast model streamed) is not hedged, whatever its model's whole answers took.
#[tokio::test(start_paused = true)]
async fn each_model_is_hedged_on_its_own_answers() {
    let hang_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let (hang, counted) = (Arc::clone(&hang_next), Arc::clone(&calls));
    let provider = tower::service_fn(move |request: http::Request<RequestBody>| {
        counted.fetch_add(1, Ordering::SeqCst);
        let facts = ballast_classify::RequestFacts::of(&request);
        let answer = match (facts.model(), facts.is_stream()) {
            _ if hang.swap(false, Ordering::SeqCst) => None,
            (Some("slow"), _) => Some(Duration::from_secs(8)),
            (_, true) => Some(Duration::from_secs(3)),
            _ => Some(Duration::from_secs(1)),
        };
        async move {
            match answer {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    Ok::<_, BoxError>(http::Response::builder().status(200).body(()).unwrap())
                }
                None => std::future::pending().await,
            }
        }
    });
    let layer = HedgeLayer::new(config());
    let service = layer.layer(provider);
    for model in ["slow", "fast"] {
        for _ in 0..10 {
            service
                .clone()
                .oneshot(request_for(model, false))
                .await
                .unwrap();
        }
    }
    assert_eq!(layer.counts(), (20, 0));

    hang_next.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let response = service.clone().oneshot(request_for("fast", false)).await;
    assert_eq!(response.unwrap().status(), 200);
    assert_eq!(start.elapsed(), Duration::from_millis(2_024));
    assert_eq!(
        (layer.counts(), calls.load(Ordering::SeqCst)),
        ((21, 1), 22)
    );

    let start = Instant::now();
    service
        .clone()
        .oneshot(request_for("fast", true))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(
        (layer.counts(), calls.load(Ordering::SeqCst)),
        ((22, 1), 23),
        "the first streamed call of its model is not hedged"
    );
}
