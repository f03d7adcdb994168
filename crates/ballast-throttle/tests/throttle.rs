//! The throttle over the simulated provider, under tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ballast_classify::{BoxError, ClassifyLayer, Outcome, OutcomeClass, Provider};
use ballast_sim::{Flavor, LimitStep, Scenario, SimOutcome, Simulator};
use ballast_throttle::{ThrottleConfig, ThrottleHandle, ThrottleLayer, Throttled};
use proptest::prelude::*;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

type Stack = BoxCloneService<http::Request<String>, Outcome, BoxError>;
type Response =
    http::Response<ballast_classify::ClassifiedBody<http_body_util::Full<bytes::Bytes>>>;

fn request() -> http::Request<String> {
    request_in(Flavor::XAi)
}

/// A request in `flavor`'s own API.
fn request_in(flavor: Flavor) -> http::Request<String> {
    flavor.request("grok-code-fast-1", 50, "hi")
}

fn stack(sim: &Simulator, config: ThrottleConfig) -> (Stack, ThrottleHandle) {
    let layer = ThrottleLayer::new(config);
    let handle = layer.handle();
    let service = ServiceBuilder::new()
        .layer(layer)
        .timeout(Duration::from_secs(90))
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(sim.clone());
    let service = ServiceExt::<http::Request<String>>::map_result(
        service,
        |result: Result<Response, BoxError>| Ok::<_, BoxError>(Outcome::from_result(&result)),
    );
    (BoxCloneService::new(service), handle)
}

/// `workers` callers sending back to back for `run`; returns each caller's outcomes.
async fn drive(stack: &Stack, workers: usize, run: Duration) -> Vec<Vec<OutcomeClass>> {
    drive_in(Flavor::XAi, stack, workers, run).await
}

/// [`drive`] with requests in `flavor`'s API.
async fn drive_in(
    flavor: Flavor,
    stack: &Stack,
    workers: usize,
    run: Duration,
) -> Vec<Vec<OutcomeClass>> {
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let stack = stack.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while start.elapsed() < run {
                    let outcome = stack.clone().oneshot(request_in(flavor)).await.unwrap();
                    if outcome.class() == OutcomeClass::Throttled {
                        // A refused caller comes back after the hinted wait.
                        let wait = outcome
                            .wait_hint()
                            .map_or(Duration::from_secs(1), |h| h.delay());
                        tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
                    }
                    seen.push(outcome.class());
                }
                seen
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// The most calls the provider received in any `window`.
fn peak(sim: &Simulator, window: Duration) -> usize {
    let times: Vec<Duration> = sim.ledger().entries().iter().map(|e| e.at).collect();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[test]
fn it_learns_a_lying_limit_and_follows_it_down_and_up() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario {
            rejections_count: true,
            ..Scenario::lying_rate_limits()
        });
        let (stack, handle) = stack(&sim, ThrottleConfig::starting_at(480.0));
        let mut paces = Vec::new();
        for minute in [5, 15, 25] {
            let until = Duration::from_secs(60 * minute);
            drive(&stack, 16, until.saturating_sub(sim.now())).await;
            paces.push(handle.rate_rpm());
        }
        // 250, then 150, then 200 requests/min.
        for (pace, limit) in paces.iter().zip([250.0, 150.0, 200.0]) {
            assert!(
                (limit * 0.85..=limit * 1.15).contains(pace),
                "pace {pace:.0} for a limit of {limit}: {paces:?}"
            );
        }
        let ledger = sim.ledger();
        let share = ledger.count(SimOutcome::RateLimited) as f64 / ledger.len() as f64;
        assert!(share < 0.03, "{:.1}% of calls answered 429", 100.0 * share);
    });
}

#[test]
fn callers_are_served_fairly() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario {
            hidden_limit: vec![LimitStep::new(Duration::ZERO, 120)],
            ..Scenario::healthy()
        });
        let (stack, _) = stack(&sim, ThrottleConfig::starting_at(120.0));
        let seen = drive(&stack, 8, Duration::from_secs(600)).await;
        let successes: Vec<usize> = seen
            .iter()
            .map(|s| s.iter().filter(|c| c.is_success()).count())
            .collect();
        let (min, max) = (
            *successes.iter().min().unwrap(),
            *successes.iter().max().unwrap(),
        );
        assert!(min > 0 && max as f64 <= min as f64 * 1.15, "{successes:?}");
    });
}

#[test]
fn the_queue_is_bounded_and_refusals_are_typed() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario::healthy());
        let config = ThrottleConfig {
            max_queue: 4,
            max_wait: Duration::from_secs(600),
            ..ThrottleConfig::starting_at(6.0)
        };
        let (stack, handle) = stack(&sim, config);
        let peak_queue = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let stack = stack.clone();
                let handle = handle.clone();
                let peak_queue = Arc::clone(&peak_queue);
                tokio::spawn(async move {
                    let outcome = stack.oneshot(request()).await.unwrap();
                    peak_queue.fetch_max(handle.queued(), Ordering::Relaxed);
                    outcome
                })
            })
            .collect();
        let mut throttled = 0;
        for call in calls {
            let outcome = call.await.unwrap();
            if outcome.class() == OutcomeClass::Throttled {
                throttled += 1;
                assert!(outcome.wait_hint().is_some());
            }
        }
        assert!(peak_queue.load(Ordering::Relaxed) <= 4);
        assert_eq!(
            throttled, 15,
            "one sent at once, four waited, the rest refused"
        );
        // The error itself says why.
        let refused = ServiceBuilder::new()
            .layer(ThrottleLayer::new(ThrottleConfig {
                max_wait: Duration::ZERO,
                ..ThrottleConfig::starting_at(1.0)
            }))
            .service(sim.clone());
        let _ = ServiceExt::<http::Request<String>>::oneshot(refused.clone(), request()).await;
        let error = ServiceExt::<http::Request<String>>::oneshot(refused, request())
            .await
            .unwrap_err();
        let throttled = std::error::Error::source(&*error)
            .and_then(|e| e.downcast_ref::<Throttled>())
            .unwrap();
        assert!(!throttled.queue_full());
        assert!(error.to_string().contains("throttled"), "{error}");
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the provider does, the throttle never sends faster than its maximum, and
    /// never holds more calls than its queue allows.
    #[test]
    fn never_faster_than_the_maximum(
        scenario in ballast_sim::strategy::flaky_scenario(),
        max_rpm in 30.0f64..600.0,
        start in 0.2f64..1.0,
        workers in 1usize..24,
    ) {
        ballast_sim::paused_runtime().unwrap().block_on(async {
            let flavor = scenario.flavor;
            let sim = Simulator::new(scenario);
            let config = ThrottleConfig {
                max_rpm,
                max_queue: 8,
                ..ThrottleConfig::starting_at(max_rpm * start)
            };
            let (stack, handle) = stack(&sim, config);
            let queued = Arc::new(AtomicUsize::new(0));
            let watcher = {
                let queued = Arc::clone(&queued);
                let handle = handle.clone();
                tokio::spawn(async move {
                    loop {
                        queued.fetch_max(handle.queued(), Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            };
            drive_in(flavor, &stack, workers, Duration::from_secs(180)).await;
            watcher.abort();
            let allowed = (max_rpm).ceil() as usize + 1;
            let seen = peak(&sim, Duration::from_secs(60));
            prop_assert!(seen <= allowed, "{seen} calls in a minute, max {max_rpm:.0}/min");
            prop_assert!(queued.load(Ordering::Relaxed) <= 8);
            prop_assert!(handle.rate_rpm() <= max_rpm + 1e-9);
            Ok(())
        })?;
    }
}

/// A 429 while calls wait for their turns: none of them goes out at the turn it was given
/// at the old pace, and they are woken to take new turns at once, ahead of a call that
/// arrives after the 429. (A call that does not wait takes no lock to listen for this; the
/// wake must still reach the ones that do.)
/// What `first_call_limited` was sent: when, and the body (the call's name).
type Sent = Arc<std::sync::Mutex<Vec<(Duration, String)>>>;

/// A provider that answers its first call 429 and the others 200, each after 100 ms,
/// writing down in `sent` when each arrived.
fn first_call_limited(
    start: tokio::time::Instant,
    sent: &Sent,
) -> impl tower::Service<
    http::Request<String>,
    Response = http::Response<http_body_util::Full<bytes::Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let sent = Arc::clone(sent);
    tower::service_fn(move |request: http::Request<String>| {
        let at = start.elapsed();
        let first = {
            let mut sent = sent.lock().unwrap();
            sent.push((at, request.into_body()));
            sent.len() == 1
        };
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (status, body) = if first {
                (429, r#"{"error":"rate limited"}"#)
            } else {
                (
                    200,
                    r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
                )
            };
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        body.as_bytes(),
                    )))
                    .unwrap(),
            )
        }
    })
}

/// After a 429 the waiting calls take new turns after the pause. In arrival order the woken
/// calls go first; newest first, the turn that comes first goes to the call that joined
/// last, and each later turn to the newest left, the calls woken by the 429 keeping the
/// moment they first joined.
#[test]
fn waiting_calls_take_new_turns_after_a_429() {
    for (newest_first, expected) in [
        (None, ["a", "b", "c", "d", "late"]),
        (Some(Duration::from_secs(10)), ["a", "late", "c", "d", "b"]),
    ] {
        let sent = calls_around_a_429(newest_first);
        let order: Vec<&str> = sent.iter().map(|(_, name)| name.as_str()).collect();
        assert_eq!(order, expected, "{newest_first:?}: {sent:?}");
    }
}

/// Four calls at once at 60 a minute, the first answered 429, and a fifth half a second
/// later: when each was sent, checking that none went inside the pause.
fn calls_around_a_429(newest_first: Option<Duration>) -> Vec<(Duration, String)> {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let start = tokio::time::Instant::now();
        let sent = Sent::default();
        let provider = first_call_limited(start, &sent);
        let config = ThrottleConfig {
            max_wait: Duration::from_secs(60),
            newest_first,
            ..ThrottleConfig::starting_at(60.0)
        };
        let pause = config.pause;
        let service = ServiceBuilder::new()
            .layer(ThrottleLayer::new(config))
            .layer(ClassifyLayer::new(Provider::XAi))
            .service(provider);
        let call = |name: &str| {
            let request = http::Request::post("http://sim.invalid/v1/chat/completions")
                .body(name.to_owned())
                .unwrap();
            tokio::spawn(service.clone().oneshot(request))
        };
        // Turns at 0, 1, 2 and 3 s at 60 a minute; the first is answered 429 at 0.1 s.
        let mut calls: Vec<_> = ["a", "b", "c", "d"].into_iter().map(call).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        calls.push(call("late"));
        for call in calls {
            let _ = call.await.unwrap();
        }
        let sent = sent.lock().unwrap().clone();
        assert_eq!(sent[0].0, Duration::ZERO);
        let answered = Duration::from_millis(100);
        for (at, name) in &sent[1..] {
            assert!(
                *at >= answered + pause,
                "{name} sent at {at:?}, inside the pause after the 429: {sent:?}"
            );
        }
        sent
    })
}

/// 200 callers queue for turns at 480 a minute and give up 50 ms later: their turns go back,
/// so a real call that comes next waits its fair turn (at once here, the line being empty),
/// not the 25 s the abandoned line would have held it.
#[tokio::test(start_paused = true)]
async fn callers_that_give_up_waiting_give_their_turns_back() {
    let sim = Simulator::new(Scenario::healthy());
    let config = ThrottleConfig {
        max_queue: 1000,
        max_wait: Duration::from_secs(60),
        ..ThrottleConfig::starting_at(480.0)
    };
    let (stack, handle) = stack(&sim, config);
    let abandoned: Vec<_> = (0..200)
        .map(|_| {
            let stack = stack.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(50), stack.oneshot(request())).await
            })
        })
        .collect();
    let mut gave_up = 0;
    for call in abandoned {
        if call.await.unwrap().is_err() {
            gave_up += 1;
        }
    }
    // At 8 a second, the first call went at once (and was with the provider when its
    // caller left); 199 were waiting for turns up to 24.875 s away.
    assert_eq!(gave_up, 200);
    assert_eq!(handle.queued(), 0, "nobody is left in the line");
    let outcome = stack.clone().oneshot(request()).await.unwrap();
    assert_eq!(outcome.class(), OutcomeClass::Success);
    let ledger = sim.ledger();
    assert_eq!(
        ledger.len(),
        2,
        "the abandoned calls never reached the provider"
    );
    // It arrived at 50 ms and went at its fair turn: one interval (125 ms) after the one
    // call that went, not 25 s later.
    assert_eq!(ledger.entries()[1].at, Duration::from_millis(125));
}

/// A call made now (its turn taken when called), not yet polled.
async fn called(stack: &mut Stack) -> <Stack as tower::Service<http::Request<String>>>::Future {
    use tower::Service;
    ServiceExt::<http::Request<String>>::ready(stack)
        .await
        .unwrap()
        .call(request())
}

/// A call's turn is taken when it is called. A future dropped before its first poll (a
/// caller that built the call and left) is in line all the same, and gives its turn back:
/// the queue empties and the next call goes at the turn the dropped one held.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_its_first_poll_gives_its_turn_back() {
    let sim = Simulator::new(Scenario::healthy());
    let (mut stack, handle) = stack(&sim, ThrottleConfig::starting_at(480.0));
    let first = called(&mut stack).await;
    // Its turn is now: it goes straight to the provider when polled.
    let second = called(&mut stack).await;
    assert_eq!(
        handle.queued(),
        1,
        "the second call waits for its turn, 125 ms off"
    );
    drop(second);
    assert_eq!(handle.queued(), 0, "dropped unpolled, it left the line");
    let third = stack.clone().oneshot(request());
    let (first, third) = tokio::join!(first, third);
    assert_eq!(first.unwrap().class(), OutcomeClass::Success);
    assert_eq!(third.unwrap().class(), OutcomeClass::Success);
    let ledger = sim.ledger();
    assert_eq!(
        ledger.len(),
        2,
        "the dropped call never reached the provider"
    );
    // The first went at 0; the third, called at 0 too, took the turn the dropped call gave
    // back, one interval later (125 ms at 480 a minute), not two (250 ms).
    assert_eq!(ledger.entries()[1].at, Duration::from_millis(125));
}

/// A call whose turn comes after its `Deadline` is refused at once, told how far off the
/// turn was, and the turn goes to the next call.
#[tokio::test(start_paused = true)]
async fn a_call_whose_turn_is_past_its_deadline_is_refused_at_once() {
    let sim = Simulator::new(Scenario::healthy());
    let (mut stack, handle) = stack(&sim, ThrottleConfig::starting_at(480.0));
    let first = called(&mut stack).await;
    // 125 ms to its turn, 100 ms to its deadline.
    let mut hurried = request();
    ballast_classify::Deadline::after(Duration::from_millis(100))
        .set_sooner(hurried.extensions_mut());
    let start = tokio::time::Instant::now();
    let refused = stack.clone().oneshot(hurried).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");
    assert_eq!(refused.class(), OutcomeClass::Throttled);
    assert_eq!(
        refused.wait_hint().map(|hint| hint.delay()),
        Some(Duration::from_millis(125)),
        "the hint is the turn, not the deadline"
    );
    assert_eq!(handle.queued(), 0);
    let third = stack.clone().oneshot(request());
    let (first, third) = tokio::join!(first, third);
    assert_eq!(first.unwrap().class(), OutcomeClass::Success);
    assert_eq!(third.unwrap().class(), OutcomeClass::Success);
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 2);
    assert_eq!(
        ledger.entries()[1].at,
        Duration::from_millis(125),
        "the refused call's turn went to the next"
    );
}

/// A call whose new turn after a 429 comes past its `Deadline` is refused then, not held.
#[test]
fn a_new_turn_past_the_deadline_is_refused() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let start = tokio::time::Instant::now();
        let sent = Sent::default();
        let service = ServiceBuilder::new()
            .layer(ThrottleLayer::new(ThrottleConfig::starting_at(60.0)))
            .layer(ClassifyLayer::new(Provider::XAi))
            .service(first_call_limited(start, &sent));
        let call = |name: &str| {
            let mut request = http::Request::post("http://sim.invalid/v1/chat/completions")
                .body(name.to_owned())
                .unwrap();
            ballast_classify::Deadline::after(Duration::from_secs(2))
                .set_sooner(request.extensions_mut());
            let service = service.clone();
            tokio::spawn(async move {
                let result = service.oneshot(request).await;
                (start.elapsed(), Outcome::from_result(&result).class())
            })
        };
        // Turns at 0, 1 and 2 s, all within the 2 s deadlines; the 429 at 0.1 s pauses the
        // line for 1.25 s and slows the pace: "b" still makes it, "c" does not.
        let calls: Vec<_> = ["a", "b", "c"].into_iter().map(call).collect();
        let mut ends = Vec::new();
        for call in calls {
            ends.push(call.await.unwrap());
        }
        assert_eq!(ends[1].1, OutcomeClass::Success);
        assert_eq!(
            ends[2],
            (Duration::from_millis(100), OutcomeClass::Throttled),
            "refused when the 429 moved its turn past its deadline"
        );
        let names: Vec<String> = sent
            .lock()
            .unwrap()
            .iter()
            .map(|(_, n)| n.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
    });
}
