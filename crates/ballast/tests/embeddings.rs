//! Embeddings through the whole stack and through a route: sent as they were asked (the API
//! refuses any field a middleware adds), priced to the provider's bill, read whole however
//! large, never served by another model, and under callers that give up at any moment.

use std::time::Duration;

use ballast::route::Served;
use ballast::{Config, Preset, RouteBuilder, StackBuilder};
use ballast_classify::{Outcome, OutcomeClass};
use ballast_cost::Usd;
use ballast_sim::{Flavor, Price, Scenario, SimOutcome, Simulator};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower::ServiceExt;

// The shared run figures and job runner; not every helper is used here.
#[allow(dead_code)]
mod common;

/// `text-embedding-3-small`: $0.02 per million input tokens, nothing for output.
const SMALL: Price = Price {
    input: 200,
    cached_input: 200,
    output: 0,
};

/// An OpenAI provider for embeddings, priced as the table prices the model.
fn openai(scenario: Scenario) -> Scenario {
    Scenario {
        flavor: Flavor::OpenAi,
        price: SMALL,
        ..scenario
    }
}

/// An embeddings call for `input` (a JSON value), of `text-embedding-3-small`.
fn embed(url: &str, input: &serde_json::Value) -> http::Request<String> {
    let body = serde_json::json!({"model": "text-embedding-3-small", "input": input});
    http::Request::post(url).body(body.to_string()).unwrap()
}

/// Job `i` of the property: a batch of one to four texts of 1 to 8 KB, so that a budget
/// of a few dollars' thousandths binds.
fn job(i: usize) -> http::Request<String> {
    let texts: Vec<String> = (0..=i % 4)
        .map(|n| format!("passage {i}.{n} ").repeat(60 + (i * 37 + n * 11) % 400))
        .collect();
    embed(
        "http://sim.invalid/v1/embeddings",
        &serde_json::json!(texts),
    )
}

async fn body_of<B>(response: http::Response<B>) -> serde_json::Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// The answer to `request` through `stack`, read whole: larger than a chat answer's cap.
async fn read_large(
    stack: &ballast::Stack<http_body_util::Full<bytes::Bytes>>,
    request: http::Request<String>,
) -> bytes::Bytes {
    let response = stack.service.clone().oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        bytes.len() > ballast_classify::DEFAULT_BODY_LIMIT,
        "{}",
        bytes.len()
    );
    bytes
}

/// The facade sends an embeddings call as it was asked: no output cap, no stream options
/// (OpenAI's schema takes no other field, and the simulator refuses one as OpenAI does).
/// Each answer is priced at the table's price to the provider's bill exactly, and the
/// budget holds the same spent.
#[test]
fn an_embeddings_call_is_sent_as_asked_and_priced_as_billed() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(openai(Scenario::healthy()));
        let stack = StackBuilder::new(Config::new(Preset::OpenAi))
            .seed(1)
            .build(sim.clone());
        let inputs = [
            serde_json::json!("The food was delicious and the waiter was kind."),
            serde_json::json!(["one", "two", "three"]),
            serde_json::json!([[1, 2, 3], [4, 5]]),
        ];
        for input in &inputs {
            let request = embed("http://sim.invalid/v1/embeddings", input);
            let response = stack.service.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
            let vectors = if input.is_string() {
                1
            } else {
                input.as_array().unwrap().len()
            };
            let answer = body_of(response).await;
            assert_eq!(answer["data"].as_array().unwrap().len(), vectors);
            assert_eq!(
                answer["data"][0]["embedding"].as_array().unwrap().len(),
                1536
            );
        }
        let ledger = sim.ledger();
        assert_eq!(
            ledger.count(SimOutcome::Success),
            3,
            "{:?}",
            ledger.entries()
        );
        assert!(ledger.entries().iter().all(|e| e.completion_tokens == 0));
        let billed = Usd::from_xai_ticks(ledger.billed_ticks());
        // 200 ticks a token: the prompt's tokens times $0.02 per million.
        let tokens: u64 = ledger.entries().iter().map(|e| e.prompt_tokens).sum();
        assert_eq!(billed, Usd::from_xai_ticks(tokens * 200));
        assert_eq!(stack.spend.total(), billed);
        assert_eq!(stack.spend.worst_case(), Usd::ZERO);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let readout = stack.budget.readout(None).await.unwrap();
        assert_eq!((readout.spent, readout.reserved), (billed, Usd::ZERO));
    });
}

/// An answer far over a chat answer's 4 MiB cap (200 vectors of 3 072 floats, about 7 MB)
/// is read whole: refusing it would fail a call the provider billed.
#[test]
fn a_large_batch_is_read_whole() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(openai(Scenario::healthy()));
        let stack = StackBuilder::new(Config::new(Preset::OpenAi)).build(sim.clone());
        let texts: Vec<String> = (0..200).map(|i| format!("passage {i}")).collect();
        let body = serde_json::json!({
            "model": "text-embedding-3-small", "input": texts, "dimensions": 3072,
        });
        let request = http::Request::post("http://sim.invalid/v1/embeddings")
            .body(body.to_string())
            .unwrap();
        let bytes = read_large(&stack, request).await;
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["data"].as_array().unwrap().len(), 200);
        assert_eq!(
            answer["data"][199]["embedding"].as_array().unwrap().len(),
            3072
        );
        assert_eq!(
            stack.spend.total(),
            Usd::from_xai_ticks(sim.ledger().billed_ticks())
        );
    });
}

/// A route never serves embeddings from another model (its vectors would sit in another
/// space beside the caller's) nor from an API without them: with the primary down, a
/// fallback that names its own model and an Anthropic fallback are passed over (nothing
/// reaches them), and the next OpenAI-compatible target asked for the caller's model
/// serves the call. Without such a target, the primary's failure is the answer.
#[test]
fn embeddings_fail_over_only_to_the_same_model() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let down = Simulator::new(openai(Scenario::total_outage()));
        let renamed = Simulator::new(openai(Scenario::healthy()));
        let anthropic = Simulator::new(Scenario {
            flavor: Flavor::Anthropic,
            ..Scenario::healthy()
        });
        let same = Simulator::new(openai(Scenario::healthy()));
        let sims = [
            down.clone(),
            renamed.clone(),
            anthropic.clone(),
            same.clone(),
        ];
        let client = tower::service_fn(
            move |request: http::Request<ballast::classify::RequestBody>| {
                let sim = match request.uri().host() {
                    Some("b.invalid") => &sims[1],
                    Some("c.invalid") => &sims[2],
                    Some("d.invalid") => &sims[3],
                    _ => &sims[0],
                };
                sim.clone().oneshot(request)
            },
        );
        let at = |preset, host: &str| {
            let mut config = Config::new(preset);
            config.base_url = format!("http://{host}/v1").parse().unwrap();
            config
        };
        let chain = |last: bool| {
            let route = RouteBuilder::new(at(Preset::OpenAi, "a.invalid"))
                .fallback(
                    at(Preset::OpenAi, "b.invalid"),
                    Some("text-embedding-3-large"),
                )
                .fallback(at(Preset::Anthropic, "c.invalid"), None);
            if last {
                route.fallback(at(Preset::OpenAi, "d.invalid"), None)
            } else {
                route
            }
        };

        let route = chain(true).seed(1).build(client.clone());
        let request = embed(
            "http://gateway.invalid/v1/embeddings",
            &serde_json::json!("hi"),
        );
        let response = route.service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let served = Served::of(&response).unwrap();
        assert_eq!((&*served.target, served.passed_over), ("openai#3", 3));
        assert_eq!(
            (
                renamed.ledger().len(),
                anthropic.ledger().len(),
                same.ledger().len()
            ),
            (0, 0, 1)
        );
        assert_eq!(down.ledger().count(SimOutcome::Outage), 1);

        let route = chain(false).seed(1).build(client);
        let request = embed(
            "http://gateway.invalid/v1/embeddings",
            &serde_json::json!("hi"),
        );
        let result = route.service.clone().oneshot(request).await;
        let class = Outcome::from_result(&result).class();
        assert_eq!(class, OutcomeClass::ServerError);
        assert_eq!((renamed.ledger().len(), anthropic.ledger().len()), (0, 0));
    });
}

/// Gemini's embeddings (`:embedContent`, `:batchEmbedContents`) through a Gemini stack: sent
/// as asked (no `generationConfig` written: the simulated Gemini refuses an unknown field, as
/// Gemini does), served (a large batch read whole), and, as Gemini's answer reports no usage, charged at their worst
/// case, the prompt bound (half a token a byte) at `gemini-embedding-001`'s $0.15 per
/// million, against a bill of the simulator's quarter token a byte: never less than billed.
#[test]
fn gemini_embeddings_are_sent_as_asked_and_charged_no_less_than_billed() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario {
            flavor: Flavor::Gemini,
            price: Price {
                input: 1_500,
                cached_input: 1_500,
                output: 0,
            },
            ..Scenario::healthy()
        });
        let stack = StackBuilder::new(Config::new(Preset::Gemini)).build(sim.clone());
        let base = "http://sim.invalid/v1beta/models/gemini-embedding-001";
        let one = serde_json::json!({"content": {"parts": [{"text": "The food was good."}]}});
        let batch = serde_json::json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "one"}]}},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "two"}]}},
        ]});
        let mut bound = 0;
        for (method, body) in [("embedContent", &one), ("batchEmbedContents", &batch)] {
            let body = body.to_string();
            bound += (body.len() as u64).div_ceil(2);
            let request = http::Request::post(format!("{base}:{method}"))
                .body(body)
                .unwrap();
            let response = stack.service.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200, "{method}");
        }
        // A batch of 100 vectors of 3 072 dimensions, about 6 MB: read whole, past chat's
        // 4 MiB, as OpenAI's are.
        let content = serde_json::json!({"parts": [{"text": "a passage"}]});
        let large: Vec<_> = (0..100)
            .map(|_| serde_json::json!({"content": content}))
            .collect();
        let body = serde_json::json!({"requests": large}).to_string();
        bound += (body.len() as u64).div_ceil(2);
        let request = http::Request::post(format!("{base}:batchEmbedContents"))
            .body(body)
            .unwrap();
        read_large(&stack, request).await;
        let ledger = sim.ledger();
        assert_eq!(
            ledger.count(SimOutcome::Success),
            3,
            "{:?}",
            ledger.entries()
        );
        let billed = Usd::from_xai_ticks(ledger.billed_ticks());
        // Billed: a quarter token a byte of each body, rounded up.
        let tokens: u64 = ledger.entries().iter().map(|e| e.prompt_tokens).sum();
        assert_eq!(billed, Usd::from_xai_ticks(tokens * 1_500));
        // Charged: the prompt bound, half a token a byte, each body rounded up.
        assert_eq!(stack.spend.total(), Usd::from_xai_ticks(bound * 1_500));
        assert!(stack.spend.total() >= billed);
    });
}

/// What one property run came to.
#[derive(Debug)]
struct Run {
    settled: common::Settled,
    tallied: (usize, Usd),
    provider_calls: usize,
    refused_by_provider: usize,
}

fn run(scenario: Scenario, budget: Usd, calls: &[(u64, Option<u64>)]) -> Run {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(scenario);
        let dollars = budget.to_string().trim_start_matches('$').to_owned();
        let vars = |name: &str| (name == "DAILY_BUDGET_USD").then(|| dollars.clone());
        let stack = StackBuilder::new(Config::from_vars(Preset::OpenAi, vars).unwrap())
            .seed(3)
            .build(sim.clone());
        let tallies = common::send_giving_up(&stack.service, calls, job).await;
        // Spawned settlements land, hung requests end on the provider's side.
        tokio::time::sleep(Duration::from_secs(600)).await;
        let readout = stack.budget.readout(None).await.unwrap();
        let ledger = sim.ledger();
        Run {
            settled: common::Settled {
                billed: Usd::from_xai_ticks(ledger.billed_ticks()),
                spent: readout.spent,
                counted: stack.spend.total(),
                budget,
                reserved: readout.reserved,
                queued: common::queued(&stack),
            },
            tallied: common::tallied(&tallies),
            provider_calls: ledger.len(),
            refused_by_provider: ledger.count(SimOutcome::BadRequest),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random flaky OpenAI providers (limits, 5xx bursts, hangs billed for the work done
    /// before the client left, broken and error-bearing 200s), random arrivals, and callers
    /// that give up after a random delay: embeddings calls never cost past the budget,
    /// every billed attempt is charged (the budget and the loggers agree, neither under the
    /// bill), nothing stays reserved or waiting, each provider call and its cost is in one
    /// caller's `CostTally`, and the provider refuses none (nothing was added to a body).
    #[test]
    fn embeddings_callers_never_cost_past_the_budget_or_leave_anything_held(
        scenario in ballast_sim::strategy::flaky_scenario(),
        budget_micros in 20u64..2_000,
        calls in prop::collection::vec((0u64..30_000, prop::option::of(0u64..40_000)), 1..60),
    ) {
        let budget = Usd::from_picos(budget_micros * 1_000_000);
        let out = run(openai(scenario), budget, &calls);
        out.settled.check()?;
        prop_assert_eq!(out.tallied, (out.provider_calls, out.settled.counted), "{:?}", out);
        prop_assert_eq!(out.refused_by_provider, 0, "{:?}", out);
    }
}
