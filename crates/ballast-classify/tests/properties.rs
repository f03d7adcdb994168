//! Property tests: the classifier against the simulator's ground truth, and against garbage.

use std::collections::HashMap;
use std::time::Duration;

use ballast_classify::{
    BoxError, ClassifyLayer, ClassifyResponse, MAX_WAIT_HINT, Outcome, OutcomeClass, Provider,
    ResponseView,
};
use ballast_sim::{ExpectedKey, Flavor, HintStyle, LimitStep, Scenario, SimOutcome, Simulator};
use bytes::Bytes;
use futures::future::join_all;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use tower::{Layer, ServiceBuilder, ServiceExt};

/// What the classifier must say about a request the simulator decided `outcome` for.
fn expected(outcome: SimOutcome, status: u16) -> OutcomeClass {
    match outcome {
        SimOutcome::Success | SimOutcome::Hung => OutcomeClass::Success,
        SimOutcome::RateLimited => OutcomeClass::RateLimited,
        SimOutcome::QuotaExhausted => OutcomeClass::QuotaExhausted,
        SimOutcome::BadKey => OutcomeClass::Auth,
        SimOutcome::BadRequest => OutcomeClass::BadRequest,
        SimOutcome::ContextTooLong => OutcomeClass::ContextTooLong,
        SimOutcome::ServerError if status == 529 => OutcomeClass::Overloaded,
        SimOutcome::ServerError | SimOutcome::Outage | SimOutcome::ErrorInOk => {
            OutcomeClass::ServerError
        }
        SimOutcome::Malformed => OutcomeClass::InvalidResponse,
        // These requests ask for no stream.
        SimOutcome::StreamCut | SimOutcome::StreamError => OutcomeClass::Unknown,
    }
}

fn provider_for(flavor: Flavor) -> Provider {
    match flavor {
        Flavor::XAi => Provider::XAi,
        Flavor::OpenAi => Provider::OpenAi,
        Flavor::Anthropic => Provider::Anthropic,
        Flavor::Gemini => Provider::Gemini,
    }
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    (ballast_sim::strategy::flaky_scenario(), any::<bool>()).prop_map(|(scenario, wrong_key)| {
        Scenario {
            api_key: wrong_key.then(|| ExpectedKey("xai-expected".into())),
            ..scenario
        }
    })
}

/// Request `i` in `flavor`'s own API; one in 17 has a broken body.
fn request(flavor: Flavor, i: usize) -> http::Request<Full<Bytes>> {
    let mut request = flavor
        .request("grok-code-fast-1", 20 + (i % 300) as u64, "hi")
        .map(|body| {
            let body = if i % 17 == 16 {
                "{broken".to_owned()
            } else {
                body
            };
            Full::new(Bytes::from(body))
        });
    request
        .headers_mut()
        .insert("authorization", "Bearer xai-test".parse().unwrap());
    request
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Over random flaky scenarios and every dialect, each response's class is the one the
    /// simulator's ledger says it should be; every attempt the client gave up on is a
    /// timeout; nothing is lost.
    #[test]
    fn classes_match_the_simulators_ground_truth(scenario in arb_scenario(), n in 1usize..80, concurrency in 1usize..8) {
        let flavor = scenario.flavor;
        let provider = provider_for(flavor);
        let rt = ballast_sim::paused_runtime().unwrap();
        let (results, ledger) = rt.block_on(async move {
            let sim = Simulator::new(scenario);
            let service = ServiceBuilder::new()
                .timeout(Duration::from_secs(200))
                .layer(ClassifyLayer::new(provider))
                .service(sim.clone());
            let mut results = Vec::new();
            let indices: Vec<usize> = (0..n).collect();
            for wave in indices.chunks(concurrency) {
                let calls = wave.iter().map(|i| service.clone().oneshot(request(flavor, *i)));
                results.extend(join_all(calls).await);
            }
            (results, sim.ledger())
        });
        prop_assert_eq!(ledger.len(), n);
        let mut seen = HashMap::new();
        let mut timeouts = 0;
        for result in &results {
            let result: &Result<_, BoxError> = result;
            let outcome = Outcome::from_result(result);
            match result {
                Ok(response) => {
                    let id: u64 = response.headers()["x-request-id"].to_str().unwrap().parse().unwrap();
                    seen.insert(id, outcome);
                }
                Err(_) => {
                    prop_assert_eq!(outcome.class(), OutcomeClass::Timeout);
                    timeouts += 1;
                }
            }
        }
        for entry in ledger.entries() {
            match seen.get(&entry.id) {
                Some(outcome) => {
                    let status = entry.status.unwrap();
                    prop_assert_eq!(outcome.class(), expected(entry.outcome, status), "entry {:?}", entry);
                    prop_assert_eq!(outcome.status().map(|s| s.as_u16()), Some(status));
                }
                None => prop_assert!(!entry.delivered),
            }
        }
        prop_assert_eq!(timeouts + seen.len(), n);
    }

    /// A truthful or scaled hint always reaches the outcome, whatever the dialect.
    #[test]
    fn rate_limit_hints_survive_every_dialect(flavor in ballast_sim::strategy::flavor(), secs in 1u64..600) {
        let scenario = Scenario {
            flavor,
            hidden_limit: vec![LimitStep::new(Duration::ZERO, 1)],
            wait_hint: HintStyle::Fixed(Duration::from_secs(secs)),
            ..Scenario::healthy()
        };
        let provider = provider_for(flavor);
        let rt = ballast_sim::paused_runtime().unwrap();
        let outcome = rt.block_on(async move {
            let service = ClassifyLayer::new(provider).layer(Simulator::new(scenario));
            service.clone().oneshot(request(flavor, 0)).await.unwrap();
            let response = service.oneshot(request(flavor, 1)).await.unwrap();
            Outcome::from_response(&response)
        });
        prop_assert_eq!(outcome.class(), OutcomeClass::RateLimited);
        prop_assert_eq!(outcome.wait_hint().map(|h| h.delay()), Some(Duration::from_secs(secs)));
    }
}

fn arb_header() -> impl Strategy<Value = (HeaderName, HeaderValue)> {
    let names = prop_oneof![
        Just("retry-after"),
        Just("retry-after-ms"),
        Just("x-ms-retry-after-ms"),
        Just("x-ratelimit-reset-requests"),
        Just("x-ratelimit-remaining-requests"),
        Just("x-ratelimit-reset-tokens"),
        Just("anthropic-ratelimit-requests-reset"),
        Just("anthropic-ratelimit-tokens-remaining"),
        Just("content-type"),
        Just("content-length"),
    ];
    let values = prop_oneof![
        "[0-9]{0,30}(\\.[0-9]{0,10})?",
        "-?[0-9]{1,5}(ms|s|m|h|us|ns)?([0-9]{1,3}(ms|s|m))?",
        "[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9:]{8} GMT",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}(Z|[+-][0-9]{2}:[0-9]{2})",
        "(application/json|text/html|text/event-stream)(; charset=[a-z0-9-]+)?",
        prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    (names, values).prop_filter_map("header value", |(name, value)| {
        let value = HeaderValue::from_str(&value).ok()?;
        Some((HeaderName::from_static(name), value))
    })
}

fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    let word = "[a-zA-Z_ .0-9]{0,24}";
    let json_error = (word, word, word, prop::option::of(0u32..1000), word).prop_map(
        |(message, kind, code, number, delay)| {
            let code = number.map_or(format!("\"{code}\""), |n| n.to_string());
            format!(
                r#"{{"error":{{"message":"{message}","type":"{kind}","code":{code},"status":"{kind}","details":[{{"retryDelay":"{delay}","reason":"{kind}"}}]}}}}"#
            )
            .into_bytes()
        },
    );
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_error,
        (word, word).prop_map(|(c, e)| format!(r#"{{"code":"{c}","error":"{e}"}}"#).into_bytes()),
        word.prop_map(|w| format!(
            r#"{{"choices":[{{"finish_reason":"{w}"}}],"stop_reason":"{w}"}}"#
        )
        .into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Classification never panics on arbitrary status, headers and bodies, and every hint
    /// it returns is bounded.
    #[test]
    fn never_panics_and_hints_stay_bounded(
        status in 100u16..1000,
        headers in prop::collection::vec(arb_header(), 0..6),
        body in arb_body(),
        streaming in any::<bool>(),
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(name, value);
        }
        let body = (!streaming).then_some(&body[..]);
        let view = ResponseView::new(status, &map, body);
        let verdict = Provider::XAi.classify(&view);
        if let Some(hint) = verdict.outcome.wait_hint() {
            prop_assert!(hint.delay() <= MAX_WAIT_HINT);
            prop_assert!(!verdict.outcome.is_success());
        }
        prop_assert_eq!(verdict.outcome.status(), Some(status));
        if status.is_server_error() {
            prop_assert!(verdict.outcome.is_provider_failure());
        }
    }
}
