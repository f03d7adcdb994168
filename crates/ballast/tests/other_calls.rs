//! Calls the stack has no reading of (the model list, moderations, images, audio:
//! `Dialect::Other`) pass through it as they were asked, and are charged what their answers
//! report: the APIs refuse any field a middleware adds, and most of these calls are free.
//! An image generation has a bound (its images at their largest), so an answer without
//! usage is charged it, as any call's worst case; another answer billed by a unit Ballast
//! does not price is counted unpriced, not guessed at.

use std::time::Duration;

use ballast::{Config, Preset, RouteBuilder, StackBuilder};
use ballast_cost::Usd;
use ballast_sim::{Flavor, PER_IMAGE_TICKS, Price, Scenario, SimOutcome, Simulator};
use http_body_util::BodyExt;
use tower::ServiceExt;

// The shared job runner; not every helper is used here.
#[allow(dead_code)]
mod common;

/// `gpt-image-1` as the built-in table prices it ($10 and $40 a million tokens; ticks are
/// 1e-10 dollars).
const GPT_IMAGE_1: Price = Price {
    input: 100_000,
    cached_input: 25_000,
    output: 400_000,
};

fn openai() -> Scenario {
    Scenario {
        flavor: Flavor::OpenAi,
        price: GPT_IMAGE_1,
        ..Scenario::healthy()
    }
}

fn call(method: &str, path: &str, body: &str) -> http::Request<String> {
    http::Request::builder()
        .method(method)
        .uri(format!("http://sim.invalid{path}"))
        .body(body.to_owned())
        .unwrap()
}

async fn answer<B>(response: http::Response<B>) -> (u16, serde_json::Value)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Through the facade with its default output cap (which it writes into every chat call):
/// the model list, a moderation and two image generations are sent as they were asked (the
/// simulated API refuses an unknown field as OpenAI's does), and charged: nothing for the
/// free ones, the reported usage at the table's price for `gpt-image-1` (the bill, to the
/// picodollar), and for `dall-e-3`, billed by the image with no usage reported, its worst
/// case: its dearest image, $0.12, against a bill of $0.04. Before `Dialect::Other` the facade wrote
/// `max_completion_tokens` into each POST (refused: 400) and charged each call the default
/// cap at the dearest price (about $0.04 for a model list).
#[test]
fn calls_with_no_reading_are_sent_as_asked_and_charged_what_they_report() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(openai());
        let stack = StackBuilder::new(Config::new(Preset::OpenAi))
            .seed(1)
            .build(sim.clone());
        let send = |request| stack.service.clone().oneshot(request);

        let (status, list) = answer(send(call("GET", "/v1/models", "")).await.unwrap()).await;
        assert_eq!((status, list["object"].as_str()), (200, Some("list")));
        let (status, moderated) = answer(
            send(call(
                "POST",
                "/v1/moderations",
                r#"{"model":"omni-moderation-latest","input":["one","two"]}"#,
            ))
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{moderated}");
        assert_eq!(moderated["results"].as_array().unwrap().len(), 2);
        assert_eq!(stack.spend.total(), Usd::ZERO);

        let (status, images) = answer(
            send(call(
                "POST",
                "/v1/images/generations",
                r#"{"model":"gpt-image-1","prompt":"a lighthouse in a storm","n":2}"#,
            ))
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{images}");
        assert_eq!(images["data"].as_array().unwrap().len(), 2);
        assert_eq!(
            images["usage"]["output_tokens"],
            2 * ballast_sim::IMAGE_TOKENS
        );
        let by_tokens = sim.ledger().billed_ticks();
        // 16 prompt tokens (a quarter of 64 bytes) at $10 a million and 2 112 output
        // tokens at $40.
        assert_eq!(by_tokens, 16 * 100_000 + 2_112 * 400_000);
        assert_eq!(stack.spend.total(), Usd::from_xai_ticks(by_tokens));

        let (status, _) = answer(
            send(call(
                "POST",
                "/v1/images/generations",
                r#"{"model":"dall-e-3","prompt":"a lighthouse"}"#,
            ))
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        let ledger = sim.ledger();
        // The free calls are not in the ledger; both image calls succeeded.
        assert_eq!(ledger.entries().len(), 2, "{:?}", ledger.entries());
        assert_eq!(ledger.count(SimOutcome::Success), 2);
        // The provider billed $0.04 more; the spend counts the image's bound, 6 240 output
        // tokens at the table's $19.2308 a million: $0.120000192, never under the bill.
        assert_eq!(ledger.billed_ticks(), by_tokens + PER_IMAGE_TICKS);
        let worst = Usd::from_picos(120_000_192_000);
        assert_eq!(stack.spend.total(), Usd::from_xai_ticks(by_tokens) + worst);
        assert_eq!(stack.spend.worst_case(), worst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let readout = stack.budget.readout(None).await.unwrap();
        assert_eq!(
            (readout.spent, readout.reserved),
            (Usd::from_xai_ticks(by_tokens) + worst, Usd::ZERO)
        );
    });
}

/// A chat call at a path no dialect names (an OpenAI-compatible server's own) is still
/// read as chat, and capped; a body without `messages` there is not.
#[test]
fn a_chat_body_at_an_unnamed_path_is_still_chat() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sim = Simulator::new(openai());
        let provider = {
            let seen = seen.clone();
            tower::service_fn(
                move |request: http::Request<ballast::classify::RequestBody>| {
                    let body = String::from_utf8(request.body().bytes().to_vec()).unwrap();
                    seen.lock().unwrap().push(body);
                    let mut request = request;
                    *request.uri_mut() = "http://sim.invalid/v1/chat/completions".parse().unwrap();
                    sim.clone().oneshot(request)
                },
            )
        };
        let stack = StackBuilder::new(Config::new(Preset::OpenAi)).build(provider);
        let chat = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
        let response = stack
            .service
            .clone()
            .oneshot(call("POST", "/api/chat", chat))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let sent = seen.lock().unwrap()[0].clone();
        let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(sent["max_completion_tokens"], 500, "{sent}");
    });
}

/// In a route, a call with no reading goes to the first target of its API only, as it was
/// asked (no model of the target's written in), even when that target fails: a second
/// account holds none of the first's files or batches. An Anthropic token count goes to the
/// first Anthropic target, past an OpenAI primary.
#[test]
fn a_route_sends_a_call_with_no_reading_to_its_first_target_only() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let primary = Simulator::new(Scenario {
            flavor: Flavor::OpenAi,
            ..Scenario::total_outage()
        });
        let fallback = Simulator::new(openai());
        let anthropic = Simulator::new(Scenario {
            flavor: Flavor::Anthropic,
            ..Scenario::healthy()
        });
        let client = {
            let (primary, fallback, anthropic) =
                (primary.clone(), fallback.clone(), anthropic.clone());
            tower::service_fn(
                move |request: http::Request<ballast::classify::RequestBody>| {
                    let sim = match request.uri().host() {
                        Some("b.invalid") => &fallback,
                        Some("c.invalid") => &anthropic,
                        _ => &primary,
                    };
                    sim.clone().oneshot(request)
                },
            )
        };
        let at = |preset, host: &str| {
            let mut config = Config::new(preset);
            config.base_url = format!("http://{host}/v1").parse().unwrap();
            config
        };
        let route = RouteBuilder::new(at(Preset::OpenAi, "a.invalid"))
            .fallback(at(Preset::OpenAi, "b.invalid"), Some("gpt-image-1-mini"))
            .fallback(at(Preset::Anthropic, "c.invalid"), None)
            .seed(3)
            .build(client);
        let count = http::Request::post("http://gateway.invalid/v1/messages/count_tokens")
            .header("anthropic-version", "2023-06-01")
            .body(
                r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#
                    .to_owned(),
            )
            .unwrap();
        let counted = route.service.clone().oneshot(count).await.unwrap();
        let served = ballast::route::Served::of(&counted).unwrap();
        assert_eq!((&*served.target, served.passed_over), ("anthropic", 2));
        let (status, answer) = answer(counted).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["input_tokens"].as_u64().is_some(), "{answer}");
        let request = call(
            "POST",
            "/v1/images/generations",
            r#"{"model":"gpt-image-1","prompt":"a lighthouse"}"#,
        );
        let result = route.service.clone().oneshot(request).await;
        let status = match &result {
            Ok(response) => response.status().as_u16(),
            Err(error) => ballast::Fallback::from_error(&**error).status.as_u16(),
        };
        assert_eq!(status, 503);
        assert!(fallback.ledger().entries().is_empty());
        assert!(!primary.ledger().entries().is_empty());
        assert!(
            primary
                .ledger()
                .entries()
                .iter()
                .all(|entry| entry.model == "gpt-image-1")
        );
    });
}

/// A transcription streamed as OpenAI streams it (`transcript.text.delta` events, then
/// `transcript.text.done` with its usage, no `[DONE]`): passed on as it came, at once, and
/// charged its usage at the table's price. Read as chat (before `Dialect::Other`), its
/// events held no content: the stream was held back until the provider ended it and then
/// failed as cut, after the provider had billed it.
#[test]
fn an_unread_stream_passes_as_it_came_and_is_charged_its_usage() {
    use bytes::Bytes;
    use http_body_util::Full;
    const EVENTS: &str = concat!(
        "data: {\"type\":\"transcript.text.delta\",\"delta\":\"Hello\"}\n\n",
        "data: {\"type\":\"transcript.text.delta\",\"delta\":\" world\"}\n\n",
        "data: {\"type\":\"transcript.text.done\",\"text\":\"Hello world\",",
        "\"usage\":{\"type\":\"tokens\",\"input_tokens\":140,\"output_tokens\":45,\"total_tokens\":185}}\n\n",
    );
    let answer = || {
        http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(Full::new(Bytes::from_static(EVENTS.as_bytes())))
            .unwrap()
    };
    let form = "--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-mini-transcribe\r\n--x--\r\n";
    let (bytes, calls, spent) = ballast_sim::paused_runtime().unwrap().block_on(call_once(
        "/v1/audio/transcriptions",
        form,
        answer,
    ));
    assert_eq!((&bytes[..], calls), (EVENTS.as_bytes(), 1));
    // The form's model, `gpt-4o-mini-transcribe`: 140 tokens at $3 a million and 45 at $5,
    // $0.000645.
    assert_eq!(spent, Usd::from_picos(645_000_000));
}

/// Job `i` of the property: an image of `gpt-image-1` (billed by tokens, reported), one of
/// `dall-e-3` (billed by the image, unreported), a moderation, or the model list.
fn other_job(i: usize) -> http::Request<String> {
    match i % 4 {
        0 => call(
            "POST",
            "/v1/images/generations",
            &format!(
                r#"{{"model":"gpt-image-1","prompt":"picture {i}","n":{}}}"#,
                1 + i % 3
            ),
        ),
        1 => call(
            "POST",
            "/v1/images/generations",
            &format!(r#"{{"model":"dall-e-3","prompt":"picture {i}"}}"#),
        ),
        2 => call(
            "POST",
            "/v1/moderations",
            &format!(r#"{{"model":"omni-moderation-latest","input":"text {i}"}}"#),
        ),
        _ => call("GET", "/v1/models", ""),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Callers of calls with no reading, under random flaky providers (limits, bursts,
    /// hangs, broken and error-bearing 200s, billed as a real provider would), giving up
    /// at random moments: nothing is written into a request (the provider refuses none),
    /// nothing stays reserved or waiting, every call is logged once, the provider never
    /// bills past the budget, the spend is never under the bill (an image call with no
    /// usage to go by, dropped, hung, broken, or `dall-e-3`'s, is charged its bound), and
    /// the callers' tallies hold exactly it.
    #[test]
    fn callers_of_unread_calls_giving_up_leave_nothing_held_and_cost_no_less_than_billed(
        scenario in ballast_sim::strategy::flaky_scenario(),
        budget_cents in 10u64..300,
        calls in proptest::collection::vec(
            (0u64..30_000, proptest::option::of(0u64..40_000)),
            1..60,
        ),
    ) {
        use metrics_util::debugging::DebuggingRecorder;
        let scenario = Scenario { flavor: Flavor::OpenAi, price: GPT_IMAGE_1, ..scenario };
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let (ledger, counted, spent, reserved, queued, tallied) =
            metrics::with_local_recorder(&recorder, || {
                ballast_sim::paused_runtime().unwrap().block_on(async {
                    let sim = Simulator::new(scenario);
                    let mut config = Config::new(Preset::OpenAi);
                    config.daily_budget = Usd::from_picos(budget_cents * 10_000_000_000);
                    let stack = StackBuilder::new(config).seed(5).build(sim.clone());
                    let tallies =
                        common::send_giving_up(&stack.service, &calls, other_job).await;
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    let readout = stack.budget.readout(None).await.unwrap();
                    (
                        sim.ledger(),
                        stack.spend.total(),
                        readout.spent,
                        readout.reserved,
                        common::queued(&stack),
                        common::tallied(&tallies).1,
                    )
                })
            });
        let logged = common::calls_logged(&snapshotter);
        proptest::prop_assert_eq!(logged, calls.len() as u64);
        proptest::prop_assert_eq!(ledger.count(SimOutcome::BadRequest), 0, "{:?}", ledger.entries());
        proptest::prop_assert_eq!((reserved, queued), (Usd::ZERO, 0));
        proptest::prop_assert_eq!(spent, counted);
        proptest::prop_assert_eq!(tallied, counted);
        let billed = Usd::from_xai_ticks(ledger.billed_ticks());
        let budget = Usd::from_picos(budget_cents * 10_000_000_000);
        proptest::prop_assert!(billed <= budget, "{billed} > {budget}");
        proptest::prop_assert!(billed <= counted, "{billed} > {counted}");
    }
}

/// Sends `asked` to `path` through the facade over a provider that answers every call with
/// `answer()`: the bytes the caller read, the provider calls made, and the spend once
/// everything settled.
async fn call_once<R, F>(path: &str, asked: &str, answer: F) -> (bytes::Bytes, usize, Usd)
where
    F: Fn() -> http::Response<R> + Clone + Send + Sync + 'static,
    R: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    R::Error: Into<ballast::classify::BoxError>,
{
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let calls = calls.clone();
        tower::service_fn(move |_: http::Request<ballast::classify::RequestBody>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            async move { Ok::<_, std::convert::Infallible>(answer()) }
        })
    };
    let stack = StackBuilder::new(Config::new(Preset::OpenAi)).build(provider);
    let response = stack
        .service
        .clone()
        .oneshot(call("POST", path, asked))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    tokio::time::sleep(Duration::from_secs(1)).await;
    (bytes, calls.load(Ordering::SeqCst), stack.spend.total())
}

/// An image drawn as a stream (`gpt-image-1`, `stream: true`): its first event, a partial
/// image, comes after 40 s of drawing and the last, the whole image with the usage, 40 s
/// later, each about 1.5 MB of base64. Passed on as it came in one provider call, and
/// charged its usage. Before, the 20-s first-content timeout (tuned for a model's first
/// token) failed it and sent it again, each one billed, and an event over 1 MiB went
/// unread, its usage with it.
#[test]
fn an_image_drawn_as_a_stream_is_waited_for_and_charged() {
    use bytes::Bytes;
    use http_body_util::StreamBody;
    let image = "A".repeat(1_500_000);
    let events = vec![
        (
            Duration::from_secs(40),
            format!(
                "event: image_generation.partial_image\ndata: {{\"type\":\"image_generation.partial_image\",\"b64_json\":\"{image}\",\"partial_image_index\":0}}\n\n"
            ),
        ),
        (
            Duration::from_secs(40),
            format!(
                "event: image_generation.completed\ndata: {{\"type\":\"image_generation.completed\",\"b64_json\":\"{image}\",\"usage\":{{\"input_tokens\":16,\"output_tokens\":1056,\"total_tokens\":1072}}}}\n\n"
            ),
        ),
    ];
    let sent: String = events.iter().map(|(_, event)| event.as_str()).collect();
    let answer = move || {
        let frames = futures::stream::unfold(events.clone().into_iter(), |mut rest| async move {
            let (after, event) = rest.next()?;
            tokio::time::sleep(after).await;
            let frame = http_body::Frame::data(Bytes::from(event));
            Some((Ok::<_, std::convert::Infallible>(frame), rest))
        });
        http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(StreamBody::new(frames))
            .unwrap()
    };
    let asked =
        r#"{"model":"gpt-image-1","prompt":"a lighthouse","stream":true,"partial_images":1}"#;
    let (bytes, calls, spent) = ballast_sim::paused_runtime().unwrap().block_on(call_once(
        "/v1/images/generations",
        asked,
        answer,
    ));
    assert_eq!((bytes.len(), calls), (sent.len(), 1));
    // 16 tokens at $10 a million and 1 056 at $40: $0.04240.
    assert_eq!(spent, Usd::from_picos(42_400_000_000));
}

/// Ten images as base64 (about 9 MB, over a chat answer's 4 MiB cap) are read whole and
/// charged their usage: refused as too large, the call failed after the provider billed it,
/// and was sent again.
#[test]
fn a_large_image_answer_is_read_whole() {
    use bytes::Bytes;
    use http_body_util::Full;
    let image = "A".repeat(900_000);
    let data: Vec<String> = (0..10)
        .map(|_| format!(r#"{{"b64_json":"{image}"}}"#))
        .collect();
    let answer = format!(
        r#"{{"created":1,"data":[{}],"usage":{{"input_tokens":16,"output_tokens":10560,"total_tokens":10576}}}}"#,
        data.join(",")
    );
    assert!(answer.len() > ballast_classify::DEFAULT_BODY_LIMIT);
    let answer = Bytes::from(answer);
    let whole = answer.clone();
    let answer = move || {
        let answer = answer.clone();
        http::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(answer))
            .unwrap()
    };
    let asked = r#"{"model":"gpt-image-1","prompt":"ten lighthouses","n":10}"#;
    let (bytes, calls, spent) = ballast_sim::paused_runtime().unwrap().block_on(call_once(
        "/v1/images/generations",
        asked,
        answer,
    ));
    assert_eq!((bytes, calls), (whole, 1));
    // 16 tokens at $10 a million and 10 560 at $40: $0.42256.
    assert_eq!(spent, Usd::from_picos(422_560_000_000));
}
