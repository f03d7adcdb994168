//! The retry policy driven through the simulator under tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_classify::{
    Attempt, BoxError, ClassifiedError, ClassifyLayer, HintSource, Outcome, OutcomeClass, Provider,
    WaitHint,
};
use ballast_retry::{
    Backoff, Decision, HintBeyondDeadline, HintTrust, Jitter, RetryLayer, RetryPolicy, StopReason,
};
use ballast_sim::{HintStyle, LimitStep, Scenario, Simulator};
use bytes::Bytes;
use futures::future::join_all;
use http_body_util::Full;
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(200);

#[derive(Debug, Clone)]
struct Record {
    logical: u64,
    attempt: u32,
    sent: Instant,
    done: Instant,
    class: OutcomeClass,
}

type Response = http::Response<ballast_classify::ClassifiedBody<Full<Bytes>>>;

/// Retry over a recorder over timeout, classify and the simulator. Returns the final result
/// of each logical call, every attempt recorded, and the number of calls the provider saw.
fn run(
    scenario: Scenario,
    policy: RetryPolicy,
    calls: usize,
    concurrency: usize,
) -> (Vec<Result<Response, BoxError>>, Vec<Record>, usize) {
    let rt = ballast_sim::paused_runtime().unwrap();
    rt.block_on(async move {
        let provider = Provider::XAi;
        let flavor = scenario.flavor;
        let sim = Simulator::new(scenario);
        let records = Arc::new(Mutex::new(Vec::new()));
        let attempt_stack = ServiceBuilder::new()
            .timeout(ATTEMPT_TIMEOUT)
            .layer(ClassifyLayer::new(provider))
            .service(sim.clone());
        let recorder = {
            let records = Arc::clone(&records);
            tower::service_fn(move |request: http::Request<Full<Bytes>>| {
                let records = Arc::clone(&records);
                let mut inner = attempt_stack.clone();
                async move {
                    let logical = request.headers()["x-logical"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    let attempt = Attempt::of_request(&request).get();
                    let sent = Instant::now();
                    let result = ServiceExt::<http::Request<Full<Bytes>>>::ready(&mut inner)
                        .await?
                        .call(request)
                        .await;
                    let class = Outcome::from_result(&result).class();
                    records.lock().unwrap().push(Record {
                        logical,
                        attempt,
                        sent,
                        done: Instant::now(),
                        class,
                    });
                    result
                }
            })
        };
        let service = ServiceBuilder::new()
            .layer(RetryLayer::new(policy))
            .service(recorder);
        let mut results = Vec::new();
        let ids: Vec<u64> = (0..calls as u64).collect();
        for wave in ids.chunks(concurrency.max(1)) {
            let batch = wave.iter().map(|id| {
                let mut request = flavor
                    .request("grok-code-fast-1", 20 + *id % 200, "hi")
                    .map(|body| Full::new(Bytes::from(body)));
                request
                    .headers_mut()
                    .insert("x-logical", id.to_string().parse().unwrap());
                service.clone().oneshot(request)
            });
            results.extend(join_all(batch).await);
        }
        let records = records.lock().unwrap().clone();
        (results, records, sim.ledger().len())
    })
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        Just(Jitter::Add(Duration::from_secs(1))),
    ]
}

fn hint_trust() -> impl Strategy<Value = HintTrust> {
    prop_oneof![
        Just(HintTrust::Ignore),
        Just(HintTrust::Honour),
        Just(HintTrust::Floor),
        Just(HintTrust::Clamp {
            slack: Duration::from_secs(5)
        }),
    ]
}

#[derive(Debug, Clone)]
struct Knobs {
    max_attempts: u32,
    jitter: Jitter,
    trust: HintTrust,
    max_delay: Duration,
    deadline: Option<Duration>,
    budget: Option<(f64, u32)>,
    seed: u64,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        1u32..6,
        jitter(),
        hint_trust(),
        1u64..120,
        prop::option::of(10u64..900),
        prop::option::of((0.0..1.0f64, 0u32..20)),
        any::<u64>(),
    )
        .prop_map(
            |(max_attempts, jitter, trust, max_delay, deadline, budget, seed)| Knobs {
                max_attempts,
                jitter,
                trust,
                max_delay: Duration::from_secs(max_delay),
                deadline: deadline.map(Duration::from_secs),
                budget,
                seed,
            },
        )
}

fn policy(knobs: &Knobs) -> RetryPolicy {
    let mut builder = RetryPolicy::builder()
        .max_attempts(knobs.max_attempts)
        .jitter(knobs.jitter)
        .hint_trust(knobs.trust)
        .max_delay(knobs.max_delay)
        .seed(knobs.seed);
    builder = match knobs.deadline {
        Some(deadline) => builder.deadline(deadline),
        None => builder.no_deadline(),
    };
    builder = match knobs.budget {
        Some((ratio, reserve)) => builder.budget(ratio, reserve, reserve.max(20)),
        None => builder.no_budget(),
    };
    builder.build()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Over random flaky providers and random policies: attempts are numbered 1..n with
    /// n <= max; only retryable classes are ever followed by another attempt; no wait exceeds
    /// the cap; every attempt starts within the deadline; the final response carries n.
    #[test]
    fn retries_follow_the_rules(
        scenario in ballast_sim::strategy::flaky_scenario(),
        knobs in knobs(),
        calls in 1usize..40,
        concurrency in 1usize..8,
    ) {
        let (results, records, _) = run(scenario, policy(&knobs), calls, concurrency);
        prop_assert_eq!(results.len(), calls);
        for (id, result) in results.iter().enumerate() {
            let mut attempts: Vec<&Record> = records.iter().filter(|r| r.logical == id as u64).collect();
            attempts.sort_by_key(|r| r.attempt);
            let n = attempts.len() as u32;
            prop_assert!(n >= 1 && n <= knobs.max_attempts, "{n} attempts");
            for (i, record) in attempts.iter().enumerate() {
                prop_assert_eq!(record.attempt, i as u32 + 1);
            }
            for pair in attempts.windows(2) {
                prop_assert!(pair[0].class.is_retryable(), "{:?} was retried", pair[0].class);
                prop_assert!(pair[1].sent >= pair[0].done);
                prop_assert!(pair[1].sent - pair[0].done <= knobs.max_delay);
            }
            let first = attempts[0].sent;
            if let Some(deadline) = knobs.deadline {
                for record in &attempts {
                    prop_assert!(record.sent - first <= deadline);
                }
                let last = attempts[attempts.len() - 1];
                prop_assert!(last.done - first <= deadline + ATTEMPT_TIMEOUT);
            }
            if let Ok(response) = result {
                prop_assert_eq!(Attempt::of_response(response).get(), n);
            }
        }
    }

    /// During a total outage nothing is deposited: N logical calls make at most
    /// N * (1 + ratio) + reserve inner calls.
    #[test]
    fn outage_calls_are_bounded_by_the_budget(
        ratio in 0.0..0.5f64,
        reserve in 0u32..20,
        max_attempts in 2u32..6,
        calls in 1usize..120,
        concurrency in 1usize..16,
    ) {
        let policy = RetryPolicy::builder()
            .max_attempts(max_attempts)
            .budget(ratio, reserve, reserve + 10)
            .build();
        let (_, _, inner) = run(Scenario::total_outage(), policy, calls, concurrency);
        let bound = calls as f64 * (1.0 + ratio) + f64::from(reserve);
        prop_assert!(inner as f64 <= bound, "{inner} inner calls for {calls}, bound {bound}");
    }
}

#[test]
fn total_outage_costs_about_one_call_per_request_with_defaults() {
    let (_, _, inner) = run(Scenario::total_outage(), RetryPolicy::default(), 400, 8);
    let per_request = inner as f64 / 400.0;
    println!("total outage: {inner} inner calls for 400 logical calls ({per_request:.3} each)");
    assert!(
        per_request <= 1.05,
        "{per_request} calls per logical request"
    );
    // tower's own budget keeps a reserve of 10 retries per second; at LLM rates that is
    // every failure retried, the 3.0 this replaces.
    let (_, _, naive) = run(Scenario::total_outage(), RetryPolicy::naive(), 40, 8);
    assert_eq!(naive, 120, "the story's loop triples an outage");
}

#[test]
fn non_retryable_classes_are_never_retried() {
    for class in OutcomeClass::ALL {
        let mut policy = RetryPolicy::builder().no_budget().build().clone();
        let decision = policy.decide(&Outcome::new(class));
        let expected = match class {
            OutcomeClass::Success => Decision::Stop(StopReason::Success),
            c if c.is_retryable() => {
                assert!(matches!(decision, Decision::Retry(_)), "{class}");
                continue;
            }
            _ => Decision::Stop(StopReason::NotRetryable),
        };
        assert_eq!(decision, expected, "{class}");
    }
}

#[test]
fn classes_can_be_overridden() {
    let mut policy = RetryPolicy::builder()
        .retry_class(OutcomeClass::Timeout, false)
        .retry_class(OutcomeClass::InvalidResponse, true)
        .build()
        .clone();
    assert_eq!(
        policy.decide(&Outcome::new(OutcomeClass::Timeout)),
        Decision::Stop(StopReason::NotRetryable)
    );
    let mut policy = policy.clone();
    assert!(matches!(
        policy.decide(&Outcome::new(OutcomeClass::InvalidResponse)),
        Decision::Retry(_)
    ));
}

#[test]
fn max_attempts_counts_the_first_call() {
    let mut policy = RetryPolicy::builder()
        .max_attempts(3)
        .no_budget()
        .build()
        .clone();
    let failure = Outcome::new(OutcomeClass::ServerError);
    assert!(matches!(policy.decide(&failure), Decision::Retry(_)));
    assert!(matches!(policy.decide(&failure), Decision::Retry(_)));
    assert_eq!(
        policy.decide(&failure),
        Decision::Stop(StopReason::MaxAttempts)
    );
}

#[test]
fn the_budget_stops_retries_and_successes_refill_it() {
    let template = RetryPolicy::builder()
        .budget(0.5, 1, 5)
        .max_attempts(10)
        .build();
    let failure = Outcome::new(OutcomeClass::Network);
    let mut call = template.clone();
    assert!(matches!(call.decide(&failure), Decision::Retry(_)));
    assert_eq!(call.decide(&failure), Decision::Stop(StopReason::Budget));
    for _ in 0..2 {
        template
            .clone()
            .decide(&Outcome::new(OutcomeClass::Success));
    }
    let mut call = template.clone();
    assert!(matches!(call.decide(&failure), Decision::Retry(_)));
    assert_eq!(template.budget().unwrap().balance(), 0.0);
}

#[tokio::test(start_paused = true)]
async fn hints_are_weighed_by_trust() {
    let hint = |secs| {
        Outcome::new(OutcomeClass::RateLimited).with_wait_hint(Some(WaitHint::new(
            Duration::from_secs(secs),
            HintSource::Message,
        )))
    };
    let decide = |trust, outcome: &Outcome| {
        RetryPolicy::builder()
            .jitter(Jitter::None)
            .hint_trust(trust)
            .no_budget()
            .build()
            .clone()
            .decide(outcome)
    };
    let secs = Duration::from_secs;
    // Rate limits back off 2 s first.
    assert_eq!(
        decide(HintTrust::Ignore, &hint(30)),
        Decision::Retry(secs(2))
    );
    assert_eq!(
        decide(HintTrust::Honour, &hint(30)),
        Decision::Retry(secs(30))
    );
    assert_eq!(decide(HintTrust::Floor, &hint(1)), Decision::Retry(secs(2)));
    assert_eq!(
        decide(HintTrust::Clamp { slack: secs(5) }, &hint(30)),
        Decision::Retry(secs(7))
    );
    // Never past the maximum delay, whatever the trust.
    assert_eq!(
        decide(HintTrust::Honour, &hint(3600)),
        Decision::Retry(secs(60))
    );
}

#[test]
fn a_hint_past_the_deadline_ends_the_call_at_once_with_a_typed_error() {
    let scenario = Scenario {
        hidden_limit: vec![LimitStep::new(Duration::ZERO, 1)],
        wait_hint: HintStyle::Fixed(Duration::from_secs(600)),
        ..Scenario::healthy()
    };
    let policy = RetryPolicy::builder()
        .hint_trust(HintTrust::Honour)
        .max_delay(Duration::from_secs(3600))
        .deadline(Duration::from_secs(120))
        .build();
    let (results, records, inner) = run(scenario, policy, 2, 1);
    assert!(results[0].is_ok());
    let error = results[1].as_ref().unwrap_err();
    assert_eq!(
        Outcome::from_error(&**error).class(),
        OutcomeClass::RateLimited
    );
    let classified = error.downcast_ref::<ClassifiedError>().unwrap();
    let reason = std::error::Error::source(classified)
        .unwrap()
        .downcast_ref::<HintBeyondDeadline>()
        .unwrap();
    assert_eq!(reason.asked(), Duration::from_secs(600));
    assert!(reason.remaining() <= Duration::from_secs(120));
    assert!(error.to_string().contains("600.0s"), "{error}");
    assert_eq!(inner, 2, "no second attempt for the rate-limited call");
    // It ended at once: no time passed for it beyond its one attempt.
    let second = records.iter().find(|r| r.logical == 1).unwrap();
    assert!(second.done - second.sent < Duration::from_secs(1));
}

/// Brooker's contention experiment, with a provider that takes one request per second:
/// 30 clients start together and retry their 429s. Without jitter they collide wave after
/// wave; full jitter spreads them out.
#[test]
fn full_jitter_needs_far_fewer_calls_than_none_under_contention() {
    let scenario = Scenario {
        hidden_limit: vec![LimitStep::new(Duration::ZERO, 60)],
        wait_hint: HintStyle::None,
        ..Scenario::healthy()
    };
    let calls_with = |jitter| {
        let policy = RetryPolicy::builder()
            .jitter(jitter)
            .backoff(
                OutcomeClass::RateLimited,
                Backoff::exponential(Duration::from_secs(1), Duration::from_secs(120)),
            )
            .max_delay(Duration::from_secs(120))
            .max_attempts(100)
            .no_budget()
            .no_deadline()
            .seed(7)
            .build();
        let (results, _, inner) = run(scenario.clone(), policy, 30, 30);
        let succeeded = results
            .iter()
            .filter(|r| {
                r.as_ref()
                    .is_ok_and(|r| Outcome::from_response(r).is_success())
            })
            .count();
        (inner, succeeded)
    };
    let (none, none_ok) = calls_with(Jitter::None);
    let (full, full_ok) = calls_with(Jitter::Full);
    println!("contention: no jitter {none} calls, full jitter {full} calls for 30 clients");
    assert_eq!((none_ok, full_ok), (30, 30));
    assert!(
        full * 2 < none,
        "full jitter {full} calls, no jitter {none}"
    );
}

/// Time-scaled, the provider's hints are in provider time, while a local layer's (here an
/// open breaker's, from its own scaled clock) are real time and count `scale` times more.
#[test]
fn time_scale_reads_local_hints_as_real_time() {
    let mut policy = RetryPolicy::builder()
        .jitter(Jitter::None)
        .no_budget()
        .deadline(Duration::from_secs(600))
        .hint_trust(HintTrust::Honour)
        .retry_class(OutcomeClass::CircuitOpen, true)
        .time_scale(10.0)
        .build();
    let hinted = |class, source| {
        Outcome::new(class).with_wait_hint(Some(WaitHint::new(Duration::from_millis(500), source)))
    };
    let breaker = hinted(OutcomeClass::CircuitOpen, HintSource::CircuitBreaker);
    assert_eq!(
        policy.decide(&breaker),
        Decision::Retry(Duration::from_secs(5)),
        "half a real second is five provider seconds"
    );
    let provider = hinted(OutcomeClass::RateLimited, HintSource::RetryAfter);
    let Decision::Retry(wait) = policy.decide(&provider) else {
        panic!("a 429 is retried")
    };
    assert!(
        wait < Duration::from_secs(5),
        "the provider's hint stays as it is: {wait:?}"
    );
}

/// Against a provider whose clock runs 60 times faster, waits and the deadline stay in
/// provider time and each sleep lasts a sixtieth of it.
#[tokio::test(start_paused = true)]
async fn time_scale_divides_sleeps_and_scales_the_deadline() {
    use tower::retry::Policy;
    let mut policy = RetryPolicy::builder()
        .jitter(Jitter::None)
        .no_budget()
        .max_attempts(5)
        .deadline(Duration::from_secs(120))
        .time_scale(60.0)
        .build();
    assert_eq!(policy.config().time_scale(), 60.0);
    let mut request = http::Request::new(String::new());
    let failed = || -> Result<http::Response<()>, BoxError> {
        Err(Box::new(ClassifiedError::new(
            Outcome::new(OutcomeClass::ServerError),
            None,
        )))
    };
    let start = Instant::now();
    // Server errors back off 2 s, then 4 s, in provider time: 2/60 s and 4/60 s real.
    Policy::retry(&mut policy, &mut request, &mut failed())
        .unwrap()
        .await;
    // (tokio's timer rounds up to the millisecond)
    let near = |real: Duration, expected: Duration| {
        real >= expected && real <= expected + Duration::from_millis(1)
    };
    assert!(near(Instant::now() - start, Duration::from_secs(2) / 60));
    Policy::retry(&mut policy, &mut request, &mut failed())
        .unwrap()
        .await;
    assert!(
        near(Instant::now() - start, Duration::from_secs(6) / 60)
            || near(
                Instant::now() - start,
                Duration::from_secs(6) / 60 + Duration::from_millis(1)
            )
    );
    // Two real seconds are 120 provider seconds: the deadline has passed.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(Policy::retry(&mut policy, &mut request, &mut failed()).is_none());
    // Bad scales are read as 1.0.
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let policy = RetryPolicy::builder().time_scale(bad).build();
        assert_eq!(policy.config().time_scale(), 1.0);
    }
}

/// The request's `Deadline` bounds the waits like the policy's own deadline, whichever ends
/// first.
#[tokio::test(start_paused = true)]
async fn the_requests_deadline_bounds_the_waits() {
    let secs = Duration::from_secs;
    let policy = RetryPolicy::builder()
        .jitter(Jitter::None)
        .hint_trust(HintTrust::Honour)
        .no_budget()
        .deadline(secs(300))
        .build();
    let limited = Outcome::new(OutcomeClass::RateLimited)
        .with_wait_hint(Some(WaitHint::new(secs(30), HintSource::Message)));
    assert_eq!(
        policy.clone().decide_within(&limited, Some(secs(10))),
        Decision::HintBeyondDeadline {
            asked: secs(30),
            remaining: secs(10)
        }
    );
    assert_eq!(
        policy.clone().decide_within(&limited, Some(secs(40))),
        Decision::Retry(secs(30))
    );
    let failed = Outcome::new(OutcomeClass::ServerError);
    assert_eq!(
        policy.clone().decide_within(&failed, Some(Duration::ZERO)),
        Decision::Stop(StopReason::Deadline)
    );
    // Through the layer: a provider that always fails, a call due in half a second, gets one
    // attempt (the first backoff is longer); without the deadline, three.
    let calls = Arc::new(Mutex::new(0_u32));
    let service = {
        let calls = Arc::clone(&calls);
        ServiceBuilder::new()
            .layer(RetryLayer::new(policy))
            .service(tower::service_fn(move |_: http::Request<String>| {
                *calls.lock().unwrap() += 1;
                let error = ClassifiedError::new(Outcome::new(OutcomeClass::ServerError), None);
                std::future::ready(Err::<http::Response<()>, BoxError>(Box::new(error)))
            }))
    };
    let mut due = http::Request::new(String::new());
    ballast_classify::Deadline::after(Duration::from_millis(500)).set_sooner(due.extensions_mut());
    assert!(service.clone().oneshot(due).await.is_err());
    assert_eq!(*calls.lock().unwrap(), 1);
    assert!(
        service
            .clone()
            .oneshot(http::Request::new(String::new()))
            .await
            .is_err()
    );
    assert_eq!(*calls.lock().unwrap(), 4);
}

/// Each provider key (host and model) spends its own retry budget: a model whose calls all
/// fail empties its reserve, and another model's call is still retried.
#[tokio::test(start_paused = true)]
async fn each_model_spends_its_own_retry_budget() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Layer, ServiceExt};
    let sent = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let provider = {
        let sent = Arc::clone(&sent);
        tower::service_fn(move |request: http::Request<String>| {
            let bad = request.body().contains("\"bad\"");
            sent[usize::from(!bad)].fetch_add(1, Ordering::SeqCst);
            // "bad" always fails; "good" fails its first attempt only.
            let first = ballast_classify::Attempt::of_request(&request).get() == 1;
            let class = if bad || first {
                OutcomeClass::ServerError
            } else {
                OutcomeClass::Success
            };
            async move {
                let mut response = http::Response::new(());
                response.extensions_mut().insert(Outcome::new(class));
                Ok::<_, ballast_classify::BoxError>(response)
            }
        })
    };
    // A reserve of two retries per key, nothing deposited.
    let policy = RetryPolicy::builder()
        .budget(0.0, 2, 2)
        .max_attempts(3)
        .build();
    let service = ballast_retry::RetryLayer::new(policy.clone()).layer(provider);
    let call = |model: &str| {
        let mut request = http::Request::post("https://api.x.ai/v1/chat/completions")
            .body(format!(r#"{{"model":"{model}"}}"#))
            .unwrap();
        ballast_classify::RequestFacts::note(&mut request);
        service.clone().oneshot(request)
    };
    for _ in 0..3 {
        let _ = call("bad").await;
    }
    // Three attempts (two retries: the reserve), then one each: 5 calls.
    assert_eq!(sent[0].load(Ordering::SeqCst), 5);
    assert_eq!(policy.budget_of("api.x.ai", "bad").unwrap().balance(), 0.0);
    let good = call("good").await.unwrap();
    assert_eq!(Outcome::from_response(&good).class(), OutcomeClass::Success);
    assert_eq!(
        sent[1].load(Ordering::SeqCst),
        2,
        "retried from its own budget"
    );
    assert_eq!(policy.budget_of("api.x.ai", "good").unwrap().balance(), 1.0);
}
