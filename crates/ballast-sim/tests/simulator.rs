//! The simulated provider, driven as a client would drive it.

use std::collections::HashMap;
use std::time::Duration;

use ballast_sim::{
    ExpectedKey, Flavor, Hangs, HintStyle, Latency, Ledger, LimitStep, Scenario, SimOutcome,
    SimServer, Simulator,
};
use bytes::Bytes;
use futures::future::join_all;
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use serde_json::Value;
use tower::{Service, ServiceExt};

fn chat(max_tokens: u64) -> http::Request<Full<Bytes>> {
    request_in(Flavor::XAi, max_tokens)
}

/// A well-formed request in `flavor`'s API, with a key.
fn request_in(flavor: Flavor, max_tokens: u64) -> http::Request<Full<Bytes>> {
    let mut request = flavor
        .request("grok-code-fast-1", max_tokens, "hi")
        .map(|body| Full::new(Bytes::from(body)));
    request
        .headers_mut()
        .insert("authorization", "Bearer xai-test".parse().unwrap());
    request
}

#[derive(Debug, Clone, PartialEq)]
struct Observed {
    status: u16,
    id: u64,
    body: Bytes,
}

async fn send(mut sim: Simulator, request: http::Request<Full<Bytes>>) -> Observed {
    let response = ServiceExt::<http::Request<Full<Bytes>>>::ready(&mut sim)
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Observed { status, id, body }
}

/// Sends `n` requests in waves of `concurrency`, each with a 200 s client timeout. Returns
/// what the client saw (`None`: it gave up) and the ledger.
fn run(scenario: Scenario, n: usize, concurrency: usize) -> (Vec<Option<Observed>>, Ledger) {
    ballast_sim::paused_runtime().unwrap().block_on(async move {
        let flavor = scenario.flavor;
        let sim = Simulator::new(scenario);
        let mut observed = Vec::new();
        let indices: Vec<usize> = (0..n).collect();
        for wave in indices.chunks(concurrency.max(1)) {
            let calls = wave.iter().map(|i| {
                let max_tokens = 50 + (*i as u64 * 37) % 400;
                let call = send(sim.clone(), request_in(flavor, max_tokens));
                async move {
                    tokio::time::timeout(Duration::from_secs(200), call)
                        .await
                        .ok()
                }
            });
            observed.extend(join_all(calls).await);
        }
        (observed, sim.ledger())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Every answer the client saw is in the ledger with the same status and marked
    /// delivered; every request the client gave up on is in the ledger as not delivered.
    #[test]
    fn ledger_equals_what_the_client_observed(scenario in ballast_sim::strategy::flaky_scenario(), n in 1usize..60, concurrency in 1usize..8) {
        let (observed, ledger) = run(scenario, n, concurrency);
        prop_assert_eq!(ledger.len(), n);
        let seen: HashMap<u64, &Observed> = observed.iter().flatten().map(|o| (o.id, o)).collect();
        prop_assert_eq!(seen.len(), observed.iter().flatten().count(), "ids are unique");
        for entry in ledger.entries() {
            match seen.get(&entry.id) {
                Some(o) => {
                    prop_assert!(entry.delivered);
                    prop_assert_eq!(entry.status, Some(o.status));
                }
                None => prop_assert!(!entry.delivered),
            }
            // The provider bills the work it did: answers, broken ones and errors in a 200.
            let billable = matches!(
                entry.outcome,
                SimOutcome::Success | SimOutcome::Hung | SimOutcome::Malformed | SimOutcome::ErrorInOk
            );
            if !billable {
                prop_assert_eq!(entry.billed_ticks, 0);
            }
        }
        let gave_up = observed.iter().filter(|o| o.is_none()).count();
        prop_assert_eq!(gave_up, ledger.entries().iter().filter(|e| !e.delivered).count());
    }

    /// The same seed and the same requests give the same run, byte for byte.
    #[test]
    fn same_seed_same_run(seed in any::<u64>(), n in 1usize..40, concurrency in 1usize..6) {
        let scenario = Scenario { seed, ..Scenario::bad_day() };
        let first = run(scenario.clone(), n, concurrency);
        let second = run(scenario, n, concurrency);
        prop_assert_eq!(first.0, second.0);
        prop_assert_eq!(first.1, second.1);
    }
}

/// Sends at `rps` for `secs` simulated seconds; returns how many were accepted.
fn accepted_at(scenario: Scenario, rps: u32, secs: u32) -> usize {
    ballast_sim::paused_runtime().unwrap().block_on(async move {
        let sim = Simulator::new(scenario);
        let mut calls = Vec::new();
        for i in 0..rps * secs {
            let sim = sim.clone();
            calls.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs_f64(f64::from(i) / f64::from(rps))).await;
                send(sim, chat(10)).await.status
            }));
        }
        let mut accepted = 0;
        for call in calls {
            if call.await.unwrap() == 200 {
                accepted += 1;
            }
        }
        accepted
    })
}

#[test]
fn hidden_limit_is_enforced_per_second_and_moves() {
    let scenario = Scenario::lying_rate_limits();
    // 10 requests/s for a minute against a hidden 250/min: about 250 get through, not 480.
    let accepted = accepted_at(scenario.clone(), 10, 60);
    assert!((245..=260).contains(&accepted), "accepted {accepted}");
    // Per-second enforcement: a burst of 20 in one instant gets only a second's worth.
    let burst = ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario::lying_rate_limits());
        let calls = (0..20).map(|_| send(sim.clone(), chat(10)));
        join_all(calls)
            .await
            .iter()
            .filter(|o| o.status == 200)
            .count()
    });
    assert_eq!(burst, 4, "250/min is 4.17/s");
    // After ten minutes the limit drops to 150.
    let ledger = ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario::lying_rate_limits());
        tokio::time::sleep(Duration::from_secs(600)).await;
        send(sim.clone(), chat(10)).await;
        sim.ledger()
    });
    assert_eq!(ledger.entries()[0].hidden_rpm, Some(150));
}

#[test]
fn counted_rejections_lock_out_a_client_that_pushes() {
    let mut scenario = Scenario {
        hidden_limit: vec![LimitStep::new(Duration::ZERO, 150)],
        ..Scenario::lying_rate_limits()
    };
    let lenient = accepted_at(scenario.clone(), 8, 60);
    scenario.rejections_count = true;
    let strict = accepted_at(scenario, 8, 60);
    assert!((145..=160).contains(&lenient), "lenient {lenient}");
    assert!(strict < 10, "strict {strict}");
}

#[test]
fn wait_hints_follow_the_style() {
    for (style, check) in [
        (
            HintStyle::Truthful,
            (|s: f64| s > 0.0 && s <= 1.5) as fn(f64) -> bool,
        ),
        (HintStyle::Fixed(Duration::from_secs(42)), |s| s == 42.0),
        (HintStyle::Scaled(100.0), |s| s > 10.0),
    ] {
        let scenario = Scenario {
            hidden_limit: vec![LimitStep::new(Duration::ZERO, 60)],
            wait_hint: style,
            ..Scenario::healthy()
        };
        let (observed, _) = run(scenario, 3, 3);
        let rejected = observed.iter().flatten().find(|o| o.status == 429).unwrap();
        let json: Value = serde_json::from_slice(&rejected.body).unwrap();
        let message = json["error"].as_str().unwrap();
        let secs: f64 = message
            .split("try again in ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(check(secs), "{style:?}: {message}");
    }
}

#[test]
fn quota_runs_out_after_the_configured_spend() {
    let scenario = Scenario {
        quota_ticks: Some(10_000_000), // $0.001
        ..Scenario::healthy()
    };
    let (_, ledger) = run(scenario, 20, 1);
    let first_quota = ledger
        .entries()
        .iter()
        .position(|e| e.outcome == SimOutcome::QuotaExhausted)
        .unwrap();
    assert!(first_quota > 0);
    let billed_before: u64 = ledger.entries()[..first_quota]
        .iter()
        .map(|e| e.billed_ticks)
        .sum();
    assert!(billed_before >= 10_000_000);
    assert!(
        ledger.entries()[first_quota..]
            .iter()
            .all(|e| e.outcome == SimOutcome::QuotaExhausted)
    );
}

#[test]
fn wrong_key_gets_the_providers_bad_key_answer() {
    for (flavor, status) in [
        (Flavor::XAi, 400),
        (Flavor::OpenAi, 401),
        (Flavor::Anthropic, 401),
        (Flavor::Gemini, 400),
    ] {
        let scenario = Scenario {
            flavor,
            api_key: Some(ExpectedKey("xai-right".into())),
            ..Scenario::healthy()
        };
        let (observed, ledger) = run(scenario, 1, 1);
        assert_eq!(observed[0].as_ref().unwrap().status, status, "{flavor:?}");
        assert_eq!(ledger.entries()[0].outcome, SimOutcome::BadKey);
    }
}

#[test]
fn latency_grows_with_output_tokens() {
    let elapsed = |max_tokens| {
        ballast_sim::paused_runtime().unwrap().block_on(async move {
            let sim = Simulator::new(Scenario::healthy());
            let start = tokio::time::Instant::now();
            send(sim, chat(max_tokens)).await;
            start.elapsed()
        })
    };
    let short = elapsed(8);
    let long = elapsed(2000);
    assert!(short < Duration::from_secs(1), "{short:?}");
    assert!(long > Duration::from_secs(3), "{long:?}");
}

#[test]
fn hangs_for_ever_are_not_delivered_and_bill_the_work_done() {
    let scenario = Scenario {
        hangs: Hangs {
            probability: 1.0,
            answer_after: None,
        },
        ..Scenario::healthy()
    };
    let (observed, ledger) = run(scenario, 3, 3);
    assert!(observed.iter().all(Option::is_none));
    assert_eq!(ledger.count(SimOutcome::Hung), 3);
    // Billed for the prompt and the tokens made until the client left.
    let work: u64 = ledger
        .entries()
        .iter()
        .map(|e| e.prompt_tokens * 2_000 + e.completion_tokens * 15_000)
        .sum();
    assert_eq!(ledger.billed_ticks(), work);
    assert!(ledger.entries().iter().all(|e| e.completion_tokens > 0));
    assert!(
        ledger
            .entries()
            .iter()
            .all(|e| e.status.is_none() && !e.delivered)
    );
}

#[test]
fn slow_hangs_answer_late_and_are_billed() {
    let scenario = Scenario {
        hangs: Hangs {
            probability: 1.0,
            answer_after: Some(Duration::from_secs(150)),
        },
        ..Scenario::healthy()
    };
    let (observed, ledger) = run(scenario, 2, 2);
    assert!(observed.iter().all(|o| o.as_ref().unwrap().status == 200));
    assert_eq!(ledger.delivered_billed_ticks(), ledger.billed_ticks());
    assert!(ledger.billed_ticks() > 0);
}

fn usage_of(flavor: Flavor) -> (Value, ballast_sim::LedgerEntry) {
    let scenario = Scenario {
        flavor,
        cached_share: 0.5,
        ..Scenario::healthy()
    };
    let (observed, ledger) = run(scenario, 1, 1);
    let json: Value = serde_json::from_slice(&observed[0].as_ref().unwrap().body).unwrap();
    (json, ledger.entries()[0].clone())
}

#[test]
fn usage_follows_each_providers_convention() {
    let (json, entry) = usage_of(Flavor::XAi);
    assert_eq!(json["usage"]["prompt_tokens"], entry.prompt_tokens);
    assert_eq!(
        json["usage"]["prompt_tokens_details"]["cached_tokens"],
        entry.cached_tokens
    );
    assert_eq!(json["usage"]["completion_tokens"], entry.completion_tokens);
    assert_eq!(json["usage"]["cost_in_usd_ticks"], entry.billed_ticks);
    assert!(entry.cached_tokens > 0);
    let price = ballast_sim::Price::GROK_CODE_FAST_1;
    assert_eq!(
        entry.billed_ticks,
        (entry.prompt_tokens - entry.cached_tokens) * price.input
            + entry.cached_tokens * price.cached_input
            + entry.completion_tokens * price.output
    );

    let (json, entry) = usage_of(Flavor::OpenAi);
    assert_eq!(json["usage"]["prompt_tokens"], entry.prompt_tokens);
    assert!(json["usage"].get("cost_in_usd_ticks").is_none());

    // Anthropic counts cache reads apart from input tokens.
    let (json, entry) = usage_of(Flavor::Anthropic);
    assert_eq!(
        json["usage"]["input_tokens"],
        entry.prompt_tokens - entry.cached_tokens
    );
    assert_eq!(
        json["usage"]["cache_read_input_tokens"],
        entry.cached_tokens
    );
    assert_eq!(json["usage"]["output_tokens"], entry.completion_tokens);

    let (json, entry) = usage_of(Flavor::Gemini);
    assert_eq!(
        json["usageMetadata"]["promptTokenCount"],
        entry.prompt_tokens
    );
    assert_eq!(
        json["usageMetadata"]["candidatesTokenCount"],
        entry.completion_tokens
    );
}

/// A reasoning model's answer (half its output reasoning): billed as output, reported as
/// each provider reports it (xAI beside `completion_tokens`, its total counting them;
/// OpenAI and Anthropic inside the output count; Gemini as `thoughtsTokenCount`).
#[test]
fn reasoning_is_billed_and_reported_as_each_provider_does() {
    let answer = |flavor| {
        let scenario = Scenario {
            flavor,
            reasoning_share: 0.5,
            ..Scenario::healthy()
        };
        let (observed, ledger) = run(scenario, 1, 1);
        let json: Value = serde_json::from_slice(&observed[0].as_ref().unwrap().body).unwrap();
        let entry = ledger.entries()[0].clone();
        let price = ballast_sim::Price::GROK_CODE_FAST_1;
        assert_eq!(
            entry.billed_ticks,
            entry.prompt_tokens * price.input + entry.completion_tokens * price.output
        );
        assert_eq!(entry.reasoning_tokens, entry.completion_tokens / 2);
        (json, entry)
    };
    let (json, entry) = answer(Flavor::XAi);
    let usage = &json["usage"];
    assert_eq!(
        usage["completion_tokens"],
        entry.completion_tokens - entry.reasoning_tokens
    );
    assert_eq!(
        usage["completion_tokens_details"]["reasoning_tokens"],
        entry.reasoning_tokens
    );
    assert_eq!(
        usage["total_tokens"],
        entry.prompt_tokens + entry.completion_tokens
    );
    let (json, entry) = answer(Flavor::OpenAi);
    assert_eq!(json["usage"]["completion_tokens"], entry.completion_tokens);
    assert_eq!(
        json["usage"]["completion_tokens_details"]["reasoning_tokens"],
        entry.reasoning_tokens
    );
    let (json, entry) = answer(Flavor::Anthropic);
    assert_eq!(json["usage"]["output_tokens"], entry.completion_tokens);
    let (json, entry) = answer(Flavor::Gemini);
    let metadata = &json["usageMetadata"];
    assert_eq!(
        metadata["candidatesTokenCount"],
        entry.completion_tokens - entry.reasoning_tokens
    );
    assert_eq!(metadata["thoughtsTokenCount"], entry.reasoning_tokens);
}

#[test]
fn spoiled_successes() {
    let scenario = Scenario {
        malformed_probability: 1.0,
        ..Scenario::healthy()
    };
    let (observed, ledger) = run(scenario, 1, 1);
    let body = &observed[0].as_ref().unwrap().body;
    assert!(serde_json::from_slice::<Value>(body).is_err());
    let entry = &ledger.entries()[0];
    assert_eq!(entry.outcome, SimOutcome::Malformed);
    assert_eq!(
        ledger.billed_ticks(),
        entry.prompt_tokens * 2_000 + entry.completion_tokens * 15_000,
        "billed in full"
    );

    let scenario = Scenario {
        error_in_ok_probability: 1.0,
        ..Scenario::healthy()
    };
    let (observed, ledger) = run(scenario, 1, 1);
    let observed = observed[0].as_ref().unwrap();
    assert_eq!(observed.status, 200);
    let json: Value = serde_json::from_slice(&observed.body).unwrap();
    assert!(json["error"].is_object());
    assert_eq!(ledger.entries()[0].outcome, SimOutcome::ErrorInOk);
}

#[test]
fn outage_answers_503_then_recovers() {
    let scenario = Scenario::outage_then_recovery(Duration::from_secs(10), Duration::from_secs(60));
    let statuses = ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(scenario);
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(send(sim.clone(), chat(5)).await.status);
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        statuses
    });
    assert_eq!(statuses[0], 200);
    assert!(statuses[2..6].iter().all(|s| *s == 503), "{statuses:?}");
    assert_eq!(statuses[9], 200);
}

#[test]
fn bad_requests_and_long_prompts() {
    let (observed, ledger) = ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario::healthy());
        let broken = http::Request::post("/")
            .body(Full::new(Bytes::from("{not json")))
            .unwrap();
        let no_model = http::Request::post("/")
            .body(Full::new(Bytes::from("{}")))
            .unwrap();
        let huge = format!(r#"{{"model":"m","prompt":"{}"}}"#, "x".repeat(1_100_000));
        let huge = http::Request::post("/")
            .body(Full::new(Bytes::from(huge)))
            .unwrap();
        let mut out = Vec::new();
        for request in [broken, no_model, huge] {
            out.push(send(sim.clone(), request).await.status);
        }
        (out, sim.ledger())
    });
    assert_eq!(observed, [400, 400, 400]);
    assert_eq!(ledger.count(SimOutcome::BadRequest), 2);
    assert_eq!(ledger.count(SimOutcome::ContextTooLong), 1);
}

/// Each API refuses, with a 400 and no charge, what the real one refuses: Anthropic a
/// request without `max_tokens`, with both sampling knobs, without messages or with an
/// empty one; Gemini a request without contents or with an empty text. The well-formed
/// request next to each is served.
#[test]
fn each_api_refuses_what_the_real_one_refuses() {
    let anthropic = |body: serde_json::Value| {
        let mut request = request_in(Flavor::Anthropic, 10);
        *request.body_mut() = Full::new(Bytes::from(body.to_string()));
        request
    };
    let gemini = |contents: serde_json::Value| {
        let mut request = request_in(Flavor::Gemini, 10);
        *request.body_mut() = Full::new(Bytes::from(
            serde_json::json!({ "contents": contents }).to_string(),
        ));
        request
    };
    let hi = serde_json::json!([{"role": "user", "content": "hi"}]);
    let cases = [
        anthropic(serde_json::json!({"model": "m", "messages": hi})),
        anthropic(
            serde_json::json!({"model": "m", "max_tokens": 9, "temperature": 0.5, "top_p": 0.9, "messages": hi}),
        ),
        anthropic(serde_json::json!({"model": "m", "max_tokens": 9, "messages": []})),
        anthropic(
            serde_json::json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": ""}]}),
        ),
        anthropic(serde_json::json!({"model": "m", "max_tokens": 9, "top_p": 0.9, "messages": hi})),
        gemini(serde_json::json!([])),
        gemini(serde_json::json!([{"role": "user", "parts": [{"text": ""}]}])),
        gemini(serde_json::json!([{"role": "user", "parts": [{"text": "hi"}]}])),
    ];
    let speaking = |flavor| {
        Simulator::new(Scenario {
            flavor,
            ..Scenario::healthy()
        })
    };
    let (statuses, ledgers) = ballast_sim::paused_runtime().unwrap().block_on(async {
        let sims = [speaking(Flavor::Anthropic), speaking(Flavor::Gemini)];
        let mut statuses = Vec::new();
        for (i, request) in cases.into_iter().enumerate() {
            statuses.push(send(sims[i / 5].clone(), request).await.status);
        }
        (statuses, sims.map(|sim| sim.ledger()))
    });
    assert_eq!(statuses, [400, 400, 400, 400, 200, 400, 400, 200]);
    // (refused, served, ticks billed for the refused ones)
    let counts = |ledger: &Ledger| {
        let refused = |e: &&ballast_sim::LedgerEntry| e.outcome == SimOutcome::BadRequest;
        (
            ledger.entries().iter().filter(refused).count(),
            ledger.count(SimOutcome::Success),
            ledger
                .entries()
                .iter()
                .filter(refused)
                .map(|e| e.billed_ticks)
                .sum::<u64>(),
        )
    };
    assert_eq!(counts(&ledgers[0]), (4, 1, 0));
    assert_eq!(counts(&ledgers[1]), (2, 1, 0));
}

#[tokio::test]
async fn loopback_http_face_serves_the_same_provider() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let scenario = Scenario {
        latency: Latency::INSTANT,
        // One request a minute: the next ones, a moment later, are always refused.
        hidden_limit: vec![LimitStep::new(Duration::ZERO, 1)],
        ..Scenario::healthy()
    };
    let server = SimServer::start(Simulator::new(scenario)).await.unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (mut parts, body) = chat(20).into_parts();
        parts.uri = format!("{}/v1/chat/completions", server.url())
            .parse()
            .unwrap();
        let response = client
            .request(http::Request::from_parts(parts, body))
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(statuses, [200, 429, 429]);
    let ledger = server.simulator().ledger();
    assert_eq!(ledger.len(), 3);
    assert_eq!(ledger.count(SimOutcome::Success), 1);
    assert!(ledger.entries().iter().all(|e| e.delivered));
}

#[test]
fn extreme_knobs_saturate_instead_of_panicking() {
    for time_scale in [0.0, f64::NAN, -1.0, f64::INFINITY, 1e-300] {
        let scenario = Scenario {
            time_scale,
            hidden_limit: vec![LimitStep::new(Duration::ZERO, 1)],
            wait_hint: HintStyle::Scaled(1e300),
            price: ballast_sim::Price {
                input: u64::MAX,
                cached_input: u64::MAX,
                output: u64::MAX,
            },
            ..Scenario::healthy()
        };
        // 1e-300 makes every answer take "for ever" in real time: the client gives up, and
        // nothing panics on the way.
        let (_, ledger) = run(scenario, 3, 1);
        assert_eq!(ledger.len(), 3, "{time_scale}");
        assert_eq!(ledger.entries()[0].billed_ticks, u64::MAX);
    }
}

/// A burst chain stepped by time flips with the clock, not with the requests: here it
/// changes state every second (both probabilities 1), whoever calls.
#[test]
fn time_stepped_bursts_follow_the_clock_not_the_requests() {
    let scenario = Scenario {
        server_errors: ballast_sim::BurstModel {
            enter_bad: 1.0,
            leave_bad: 1.0,
            fail_when_good: 0.0,
            fail_when_bad: 1.0,
            step: Some(Duration::from_secs(1)),
        },
        latency: Latency::INSTANT,
        ..Scenario::healthy()
    };
    let statuses = ballast_sim::paused_runtime().unwrap().block_on(async move {
        let sim = Simulator::new(scenario);
        let mut statuses = Vec::new();
        tokio::time::sleep(Duration::from_millis(500)).await;
        for _ in 0..4 {
            // Two requests in the same second see the same state.
            statuses.push(send(sim.clone(), chat(10)).await.status);
            statuses.push(send(sim.clone(), chat(10)).await.status);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        statuses
    });
    let failed: Vec<bool> = statuses.iter().map(|s| *s >= 500).collect();
    assert_eq!(
        failed,
        [false, false, true, true, false, false, true, true],
        "{statuses:?}"
    );
}

/// A time-stepped burst chain draws from its own generator: its bad spells fall at the same
/// seconds for a client calling once a second as for one calling four times as often, so
/// every client run against one seed meets the same weather.
#[test]
fn time_stepped_spells_are_the_same_whoever_calls() {
    let scenario = Scenario {
        seed: 5,
        server_errors: ballast_sim::BurstModel {
            enter_bad: 0.3,
            leave_bad: 0.3,
            fail_when_good: 0.0,
            fail_when_bad: 1.0,
            step: Some(Duration::from_secs(1)),
        },
        latency: Latency::INSTANT,
        ..Scenario::healthy()
    };
    let spells = |calls_a_second: u32| {
        let scenario = scenario.clone();
        ballast_sim::paused_runtime().unwrap().block_on(async move {
            let sim = Simulator::new(scenario);
            let gap = Duration::from_secs(1) / calls_a_second;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut bad = Vec::new();
            for _ in 0..40 {
                let statuses = join_all((0..calls_a_second).map(|i| {
                    let sim = sim.clone();
                    async move {
                        tokio::time::sleep(gap * i).await;
                        send(sim, chat(10)).await.status
                    }
                }))
                .await;
                // Every call of one second sees the same state.
                assert!(statuses.iter().all(|s| (*s >= 500) == (statuses[0] >= 500)));
                bad.push(statuses[0] >= 500);
                tokio::time::sleep(Duration::from_secs(1) - gap * (calls_a_second - 1)).await;
            }
            bad
        })
    };
    let once = spells(1);
    assert_eq!(once, spells(4));
    assert!(once.contains(&true) && once.contains(&false), "{once:?}");
}

/// The ground truth is pessimistic: the provider bills the work it did, whatever reached
/// the client. A request that hangs for ever is billed for its prompt and the tokens made
/// until the client left; a broken 200 is billed in full; an error inside a 200 bills its
/// prompt (unless the scenario says it does not).
#[tokio::test(start_paused = true)]
async fn the_provider_bills_the_work_done_before_the_client_left() {
    let latency = Latency {
        base: Duration::ZERO,
        per_output_token: Duration::from_millis(10),
        error: Duration::ZERO,
    };
    let hangs = Scenario {
        hangs: Hangs {
            probability: 1.0,
            answer_after: None,
        },
        latency,
        ..Scenario::healthy()
    };
    let sim = Simulator::new(hangs);
    let request = chat(1000);
    let prompt = http_body::Body::size_hint(request.body())
        .exact()
        .unwrap()
        .div_ceil(4);
    let left = tokio::time::timeout(Duration::from_secs(1), send(sim.clone(), request)).await;
    assert!(left.is_err(), "it hangs");
    let entry = sim.ledger().entries()[0].clone();
    assert_eq!(entry.outcome, SimOutcome::Hung);
    // 1 s at 10 ms a token: 100 tokens made, at 15 000 ticks each, plus the prompt at 2 000.
    assert_eq!(entry.completion_tokens, 100);
    assert_eq!(entry.billed_ticks, prompt * 2_000 + 100 * 15_000);
    assert!(!entry.delivered);

    let broken = Simulator::new(Scenario {
        malformed_probability: 1.0,
        ..Scenario::healthy()
    });
    send(broken.clone(), chat(50)).await;
    let entry = broken.ledger().entries()[0].clone();
    assert_eq!(entry.outcome, SimOutcome::Malformed);
    assert_eq!(
        entry.billed_ticks,
        entry.prompt_tokens * 2_000 + entry.completion_tokens * 15_000
    );
    assert!(entry.completion_tokens > 0);

    for bills in [true, false] {
        let error_in_ok = Simulator::new(Scenario {
            error_in_ok_probability: 1.0,
            bills_errors_in_ok: bills,
            ..Scenario::healthy()
        });
        send(error_in_ok.clone(), chat(50)).await;
        let entry = error_in_ok.ledger().entries()[0].clone();
        assert_eq!(entry.outcome, SimOutcome::ErrorInOk);
        let prompt_ticks = entry.prompt_tokens * 2_000;
        assert_eq!(entry.billed_ticks, if bills { prompt_ticks } else { 0 });
    }
}

/// An overloaded provider fails what it has no room for, and more as the load grows (what
/// it is offered includes the retries): at 120 a minute over 10 s it serves the first 20
/// arrivals of a window, then each request with probability `(20 / arrivals)^2`; once the
/// old arrivals have left the window, one a second is within capacity and nothing fails.
#[test]
fn overload_fails_in_proportion_to_the_load_offered() {
    let scenario = Scenario {
        overload: Some(ballast_sim::Overload {
            capacity_rpm: 120,
            window: Duration::from_secs(10),
        }),
        latency: Latency::INSTANT,
        ..Scenario::healthy()
    };
    let statuses = ballast_sim::paused_runtime().unwrap().block_on(async move {
        let sim = Simulator::new(scenario);
        let mut statuses = Vec::new();
        // 100 requests in 10 s: 10 a second, five times the capacity.
        for _ in 0..100 {
            statuses.push(send(sim.clone(), chat(10)).await.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Quiet for 10 s, then one a second: within capacity.
        tokio::time::sleep(Duration::from_secs(10)).await;
        for _ in 0..10 {
            statuses.push(send(sim.clone(), chat(10)).await.status);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        statuses
    });
    assert!(statuses[..20].iter().all(|s| *s == 200), "{statuses:?}");
    let failed = statuses[20..100].iter().filter(|s| **s == 503).count();
    // Arrival n (21 to 100, all in the window) fails with probability 1 - (20/n)^2:
    // about 80 - 400 * (1/20.5 - 1/100.5) = 64.5 expected; seed 1 gives 65.
    assert_eq!(failed, 65, "{statuses:?}");
    assert!(statuses[100..].iter().all(|s| *s == 200), "{statuses:?}");
}

/// `Scenario::bad_share` is the share of the run's seconds in which a call meets the bad
/// state: with every call failing in it and none outside, a call each second fails in
/// exactly that share of the seconds (the scoreboard's bursts ceiling rests on it).
#[test]
fn bad_share_is_the_share_of_seconds_calls_meet_the_bad_state() {
    let scenario = Scenario {
        seed: 7,
        server_errors: ballast_sim::BurstModel {
            enter_bad: 0.05,
            leave_bad: 0.1,
            fail_when_good: 0.0,
            fail_when_bad: 1.0,
            step: Some(Duration::from_secs(1)),
        },
        latency: Latency::INSTANT,
        ..Scenario::healthy()
    };
    let seconds = 600;
    let share = scenario
        .bad_share(Duration::from_secs(seconds))
        .expect("a time-stepped chain");
    let failed = ballast_sim::paused_runtime().unwrap().block_on(async move {
        let sim = Simulator::new(scenario);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut failed = 0u64;
        for _ in 0..seconds {
            failed += u64::from(send(sim.clone(), chat(10)).await.status >= 500);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        failed
    });
    assert_eq!(failed as f64 / seconds as f64, share);
    assert_eq!(failed, 206, "this seed's bad seconds");
}
