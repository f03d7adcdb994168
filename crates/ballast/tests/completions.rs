//! The legacy Completions API (`/v1/completions`: fill-in-the-middle for code editors, base
//! models) through the whole stack: its cap written in its own field, its stream passed on
//! from its first chunk, its answer priced to the provider's bill.

use std::time::Duration;

use ballast::{Config, Preset, StackBuilder};
use ballast_cost::Usd;
use ballast_sim::{Flavor, Scenario, SimOutcome, Simulator};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// OpenAI, billing `gpt-4o-mini` as the table prices it: $0.15 / $0.075 / $0.60 per million.
fn openai() -> Scenario {
    Scenario {
        flavor: Flavor::OpenAi,
        price: ballast_sim::Price {
            input: 1_500,
            cached_input: 750,
            output: 6_000,
        },
        ..Scenario::healthy()
    }
}

fn completion(stream: bool) -> http::Request<String> {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "prompt": "def fibonacci(n):",
        "suffix": "    return a",
        "stream": stream,
    });
    http::Request::post("http://sim.invalid/v1/completions")
        .body(body.to_string())
        .unwrap()
}

/// A completion without a cap gets the default one as `max_tokens` (the field the legacy
/// API takes, for OpenAI too, whose chat calls get `max_completion_tokens`), and is priced
/// as billed.
#[test]
fn a_completion_is_capped_in_its_own_field_and_priced_as_billed() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(openai());
        let stack = StackBuilder::new(Config::new(Preset::OpenAi)).build(sim.clone());
        let response = stack
            .service
            .clone()
            .oneshot(completion(false))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["object"], "text_completion");
        let ledger = sim.ledger();
        assert_eq!(
            ledger.count(SimOutcome::Success),
            1,
            "{:?}",
            ledger.entries()
        );
        // The default cap, 500, bounds what the simulator generates.
        assert!(ledger.entries()[0].completion_tokens <= 500);
        assert_eq!(
            stack.spend.total(),
            Usd::from_xai_ticks(ledger.billed_ticks())
        );
    });
}

/// A streamed completion is passed on from its first chunk: its head comes when the
/// provider's first text does (400 ms), long before its last (8 ms a token); its cost is
/// read from the usage asked for on the caller's behalf. Its chunks
/// carry `text`, not a chat delta; before they were read as content, the stream was held
/// until it ended (or failed at the 20-s first-content timeout).
#[test]
fn a_streamed_completion_is_passed_on_from_its_first_chunk() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(openai());
        let stack = StackBuilder::new(Config::new(Preset::OpenAi))
            .no_hedge()
            .build(sim.streaming());
        let start = tokio::time::Instant::now();
        let response = stack
            .service
            .clone()
            .oneshot(completion(true))
            .await
            .unwrap();
        let head = start.elapsed();
        assert_eq!(response.status(), 200);
        let events = response.into_body().collect().await.unwrap().to_bytes();
        let end = start.elapsed();
        let events = String::from_utf8(events.to_vec()).unwrap();
        assert!(events.contains(r#""object":"text_completion""#), "{events}");
        assert!(events.trim_end().ends_with("data: [DONE]"), "{events}");
        let tokens = sim.ledger().entries()[0].completion_tokens;
        // Seeded, paused clock: the head at the first chunk (after the first token's
        // 389 ms), the end after all 285 tokens (8 ms each, jittered).
        assert_eq!(
            (head, end, tokens),
            (
                Duration::from_millis(389),
                Duration::from_millis(2_629),
                285
            )
        );
        // Its usage asked for (`stream_options`, as for chat) and read: the spend is the bill.
        assert!(!events.contains(r#""choices":[]"#), "{events}");
        assert_eq!(
            stack.spend.total(),
            Usd::from_xai_ticks(sim.ledger().billed_ticks())
        );
    });
}
