//! Which waiting call takes a turn (`ThrottleConfig::newest_first`), under tokio's paused
//! clock: the moments calls leave stay those of arrival order, only who leaves changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_classify::{ClassifyLayer, Provider};
use ballast_throttle::{ThrottleConfig, ThrottleHandle, ThrottleLayer};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// When each call reached the provider (since the start), by name.
type Sent = Arc<Mutex<Vec<(Duration, String)>>>;

type Stack = BoxCloneService<http::Request<String>, http::StatusCode, BoxError>;

/// A throttle at 60 a minute (a turn a second, held: successes do not raise it) over a
/// provider that answers at once and writes down who came when.
fn stack(newest_first: Option<Duration>, start: Instant, sent: &Sent) -> (Stack, ThrottleHandle) {
    let layer = ThrottleLayer::new(ThrottleConfig {
        newest_first,
        recover_per_sec: 0.0,
        ..ThrottleConfig::starting_at(60.0)
    });
    let handle = layer.handle();
    let sent = Arc::clone(sent);
    let provider = tower::service_fn(move |request: http::Request<String>| {
        sent.lock()
            .unwrap()
            .push((start.elapsed(), request.into_body()));
        async {
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        br#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
                    )))
                    .unwrap(),
            )
        }
    });
    let service = ServiceBuilder::new()
        .layer(layer)
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(provider)
        .map_response(|response| response.status());
    (BoxCloneService::new(service), handle)
}

fn named(name: &str) -> http::Request<String> {
    http::Request::post("http://sim.invalid/v1/chat/completions")
        .body(name.to_owned())
        .unwrap()
}

/// Calls "a" to "d" joining 0.1 s apart at a turn a second: "a" goes at once, the others
/// wait. Who goes at 0, 1, 2 and 3 s.
async fn four_calls(newest_first: Option<Duration>) -> Vec<(Duration, String)> {
    let start = Instant::now();
    let sent = Sent::default();
    let (stack, handle) = stack(newest_first, start, &sent);
    let mut calls = Vec::new();
    for name in ["a", "b", "c", "d"] {
        calls.push(tokio::spawn(stack.clone().oneshot(named(name))));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), http::StatusCode::OK);
    }
    assert_eq!(handle.queued(), 0);
    sent.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn a_turn_goes_to_the_newest_call_unless_one_has_waited_too_long() {
    let seconds = |n: u64| Duration::from_secs(n);
    for (newest_first, order) in [
        (None, ["a", "b", "c", "d"]),
        // Newest first: "d" at 1 s; at 2 s "c" (newer than "b"); "b" last.
        (Some(seconds(10)), ["a", "d", "c", "b"]),
        // "b" has waited 1.9 s at 2 s, past 1.5 s: it goes before "c".
        (Some(Duration::from_millis(1500)), ["a", "d", "b", "c"]),
    ] {
        let sent = four_calls(newest_first).await;
        let names: Vec<&str> = sent.iter().map(|(_, name)| name.as_str()).collect();
        assert_eq!(names, order, "{newest_first:?}");
        let moments: Vec<Duration> = sent.iter().map(|(at, _)| *at).collect();
        assert_eq!(
            moments,
            [seconds(0), seconds(1), seconds(2), seconds(3)],
            "{newest_first:?}: the moments are the pace's"
        );
    }
}

/// A call that was given an earlier turn and left before it woke: the turn goes to the call
/// the line chooses next, and the later turn that call held goes back, so a call that comes
/// after takes it.
#[tokio::test(start_paused = true)]
async fn a_turn_given_to_a_call_that_left_goes_to_the_next() {
    let start = Instant::now();
    let sent = Sent::default();
    let (mut stack, handle) = stack(Some(Duration::from_secs(10)), start, &sent);
    let a = tokio::spawn(stack.clone().oneshot(named("a")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = tokio::spawn(stack.clone().oneshot(named("b")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // "c" takes the turn at 2 s and is never polled: at 1 s "b" gives it its own turn.
    let c = ServiceExt::ready(&mut stack)
        .await
        .unwrap()
        .call(named("c"));
    assert_eq!(handle.queued(), 2);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(sent.lock().unwrap().len() == 1, "no one went at 1 s");
    // At 1.5 s "c" leaves: the turn of 1 s it was given goes to "b", and the turn of 2 s
    // "b" had taken goes back and is the next caller's. "e", newer than "b" and called
    // before "b" wakes, is given the turn that has come, "b" taking the one at 2 s.
    drop(c);
    let e = stack.clone().oneshot(named("e"));
    let (a, b, e) = tokio::join!(a, b, e);
    for result in [a.unwrap(), b.unwrap(), e] {
        assert_eq!(result.unwrap(), http::StatusCode::OK);
    }
    let sent = sent.lock().unwrap().clone();
    let millis = |ms: u64| Duration::from_millis(ms);
    assert_eq!(
        sent,
        [
            (millis(0), "a".to_owned()),
            (millis(1500), "e".to_owned()),
            (millis(2000), "b".to_owned())
        ]
    );
    assert_eq!(handle.queued(), 0);
}

/// Calls joining at `gaps` apart, those with a `leave` giving up that long after joining;
/// when each of the others was sent, by its index.
fn run(
    newest_first: Option<Duration>,
    calls: &[(Duration, Option<Duration>)],
) -> (Vec<(Duration, usize)>, usize) {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let start = Instant::now();
        let sent = Sent::default();
        let (stack, handle) = stack(newest_first, start, &sent);
        let mut tasks = Vec::new();
        for (i, (gap, leave)) in calls.iter().enumerate() {
            tokio::time::sleep(*gap).await;
            let call = stack.clone().oneshot(named(&i.to_string()));
            let leave = *leave;
            tasks.push(tokio::spawn(async move {
                match leave {
                    Some(after) => tokio::time::timeout(after, call).await.is_err(),
                    None => {
                        call.await.unwrap();
                        false
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let sent = sent
            .lock()
            .unwrap()
            .iter()
            .map(|(at, name)| (*at, name.parse().unwrap()))
            .collect();
        (sent, handle.queued())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Newest first, with calls joining at random and some giving up: every call that stays
    /// is sent once, a call that left only before it left, each waiting at most `overdue`
    /// plus a turn for every call; the line ends empty; and where no call gives up, the
    /// moments calls are sent are exactly those of arrival order: no turn lost, none added.
    /// (Where calls give up, which ones leave differs between the orders, and so may the
    /// moments: `a_turn_given_to_a_call_that_left_goes_to_the_next` pins the hand-over.)
    #[test]
    fn newest_first_serves_every_call_once_on_the_pace_of_arrival_order(
        calls in prop::collection::vec(
            (0u64..1500, prop::option::weighted(0.25, 1u64..4000)),
            1..12,
        ),
        overdue_ms in 500u64..6000,
    ) {
        let calls: Vec<(Duration, Option<Duration>)> = calls
            .into_iter()
            .map(|(gap, leave)| (Duration::from_millis(gap), leave.map(Duration::from_millis)))
            .collect();
        let overdue = Duration::from_millis(overdue_ms);
        let (sent, queued) = run(Some(overdue), &calls);
        let (in_order, _) = run(None, &calls);
        prop_assert_eq!(queued, 0);
        let mut joined = Duration::ZERO;
        for (i, (gap, leave)) in calls.iter().enumerate() {
            joined += *gap;
            let times: Vec<Duration> = sent.iter().filter(|(_, n)| *n == i).map(|(at, _)| *at).collect();
            match leave {
                None => prop_assert_eq!(times.len(), 1, "call {} sent {:?}", i, times),
                Some(after) => {
                    prop_assert!(times.len() <= 1);
                    prop_assert!(times.iter().all(|at| *at <= joined + *after), "call {} sent after it left", i);
                }
            }
            if let [at] = times[..] {
                let bound = overdue + Duration::from_secs(calls.len() as u64);
                prop_assert!(at - joined <= bound, "call {} waited {:?}", i, at - joined);
            }
        }
        if calls.iter().all(|(_, leave)| leave.is_none()) {
            let moments = |sent: &[(Duration, usize)]| sent.iter().map(|(at, _)| *at).collect::<Vec<_>>();
            prop_assert_eq!(moments(&sent), moments(&in_order));
        }
    }
}
