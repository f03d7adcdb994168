//! Streamed answers through the classifier: read in any chunking, held back until their
//! first content, ended by their terminal event or failed by a cut, a stall or an error
//! event; every end heard once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_classify::{
    ClassifiedBody, ClassifyLayer, InspectBody, Outcome, OutcomeClass, Provider, StreamEnd,
    StreamError, StreamSummary, StreamTimeouts, StreamUsage,
};
use ballast_sim::{Flavor, Scenario, SimOutcome, Simulator, StreamFaults};
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use proptest::prelude::*;
use tower::{Layer, ServiceExt};

fn provider(flavor: Flavor) -> Provider {
    match flavor {
        Flavor::XAi => Provider::XAi,
        Flavor::OpenAi => Provider::OpenAi,
        Flavor::Anthropic => Provider::Anthropic,
        Flavor::Gemini => Provider::Gemini,
    }
}

/// A streamed request in `flavor`'s API, asking for usage in the stream.
fn streamed(flavor: Flavor, max_tokens: u64) -> http::Request<String> {
    let mut request = flavor.request("grok-code-fast-1", max_tokens, "hi");
    let body: serde_json::Value = serde_json::from_str(request.body()).unwrap();
    let mut body = body.as_object().unwrap().clone();
    match flavor {
        Flavor::Gemini => {
            let path = request
                .uri()
                .path()
                .replace(":generateContent", ":streamGenerateContent");
            *request.uri_mut() = format!("{path}?alt=sse").parse().unwrap();
        }
        _ => {
            body.insert("stream".into(), true.into());
            body.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
    }
    *request.body_mut() = serde_json::Value::Object(body).to_string();
    request
}

/// The summaries the hooks heard.
type Heard = Arc<Mutex<Vec<StreamSummary>>>;

fn listen<B>(response: &mut http::Response<ClassifiedBody<B>>) -> Heard {
    let heard = Heard::default();
    let sink = Arc::clone(&heard);
    response
        .body_mut()
        .on_end(Box::new(move |summary| sink.lock().unwrap().push(*summary)))
        .unwrap_or_else(|_| panic!("not a watched stream"));
    heard
}

/// Reads a body to its end: its bytes, and the error it ended with, if any.
async fn drain<B>(body: B) -> (Vec<u8>, Option<StreamError>)
where
    B: http_body::Body<Data = Bytes, Error = ballast_classify::BoxError> + Unpin,
{
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => bytes.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..])),
            Err(error) => {
                let error = error.downcast_ref::<StreamError>().copied();
                assert!(body.frame().await.is_none(), "nothing after the error");
                return (bytes, error);
            }
        }
    }
    (bytes, None)
}

/// A streamed answer's bytes all at once, from the plain (not streaming) simulator.
async fn all_at_once(sim: Simulator, flavor: Flavor, max_tokens: u64) -> Bytes {
    let response = sim.oneshot(streamed(flavor, max_tokens)).await.unwrap();
    response.into_body().collect().await.unwrap().to_bytes()
}

/// Lets the provider's side of a stream finish its bill.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Every dialect: a whole stream reaches the caller byte for byte, ends `Finished`, and the
/// usage it reported is what the provider billed.
#[tokio::test(start_paused = true)]
async fn a_whole_stream_passes_unchanged_and_reports_its_usage() {
    for flavor in [
        Flavor::XAi,
        Flavor::OpenAi,
        Flavor::Anthropic,
        Flavor::Gemini,
    ] {
        let sim = Simulator::new(Scenario {
            flavor,
            cached_share: 0.25,
            ..Scenario::healthy()
        });
        // The same answer, all at once, from the plain service (same seed, same draws).
        let whole = Simulator::new(Scenario {
            flavor,
            cached_share: 0.25,
            ..Scenario::healthy()
        });
        let expected = all_at_once(whole, flavor, 40).await;
        let service = ClassifyLayer::new(provider(flavor)).layer(sim.streaming());
        let mut response = service.oneshot(streamed(flavor, 40)).await.unwrap();
        assert!(Outcome::from_response(&response).is_success());
        let heard = listen(&mut response);
        let (bytes, error) = drain(response.into_body()).await;
        assert_eq!(error, None, "{flavor:?}");
        assert_eq!(
            Bytes::from(bytes),
            expected,
            "{flavor:?}: the provider's bytes"
        );
        let summary = heard.lock().unwrap()[0];
        assert_eq!(summary.end, StreamEnd::Finished);
        let entry = sim.ledger().entries()[0].clone();
        assert_eq!(entry.outcome, SimOutcome::Success);
        assert!(entry.delivered);
        assert_eq!(
            summary.usage,
            Some(StreamUsage {
                prompt: entry.prompt_tokens,
                cached: entry.cached_tokens,
                cache_write: 0,
                completion: entry.completion_tokens,
            }),
            "{flavor:?}"
        );
        assert_eq!(
            summary.content_bytes,
            ballast_sim::completion_text(entry.completion_tokens).len() as u64,
            "{flavor:?}: every token's text"
        );
    }
}

/// A stream `faults` makes go wrong, through the classifier with the default timeouts.
async fn faulty(
    flavor: Flavor,
    faults: StreamFaults,
    seed: u64,
    max_tokens: u64,
) -> (
    Result<http::Response<ClassifiedBody<ballast_sim::SimBody>>, ballast_classify::ClassifiedError>,
    Simulator,
) {
    let sim = Simulator::new(Scenario {
        flavor,
        seed,
        stream_faults: faults,
        ..Scenario::healthy()
    });
    let service = ClassifyLayer::new(provider(flavor)).layer(sim.streaming());
    (service.oneshot(streamed(flavor, max_tokens)).await, sim)
}

/// A cut after content: the caller gets the bytes, then an `Err` item, never a clean end;
/// the hooks hear `Cut`; the provider billed the tokens generated until the cut.
#[tokio::test(start_paused = true)]
async fn a_cut_after_content_ends_in_an_error_not_a_clean_end() {
    let faults = StreamFaults {
        cut: 1.0,
        ..StreamFaults::NONE
    };
    let mut seen_after_content = 0;
    for seed in 1..20 {
        let (result, sim) = faulty(Flavor::XAi, faults, seed, 200).await;
        let Ok(mut response) = result else {
            // Cut before any content: the attempt failed as a network error, nothing sent on.
            let error = result.unwrap_err();
            assert_eq!(error.outcome().class(), OutcomeClass::Network);
            settle().await;
            assert_eq!(sim.ledger().entries()[0].completion_tokens, 0);
            continue;
        };
        seen_after_content += 1;
        let heard = listen(&mut response);
        let (bytes, error) = drain(response.into_body()).await;
        settle().await;
        let entry = sim.ledger().entries()[0].clone();
        assert_eq!(error.map(|e| e.end()), Some(StreamEnd::Cut));
        assert!(!String::from_utf8_lossy(&bytes).contains("[DONE]"));
        let summary = heard.lock().unwrap()[0];
        assert_eq!(summary.end, StreamEnd::Cut);
        assert_eq!(summary.end.outcome().class(), OutcomeClass::Network);
        assert_eq!(entry.outcome, SimOutcome::StreamCut);
        assert_eq!(
            summary.content_bytes,
            ballast_sim::completion_text(entry.completion_tokens).len() as u64
        );
        assert!(summary.output_bound() >= entry.completion_tokens);
    }
    assert!(
        seen_after_content >= 10,
        "{seen_after_content} of 19 cut after content"
    );
}

/// A stall after content ends the stream within the idle timeout (30 s), as a timeout.
#[tokio::test(start_paused = true)]
async fn a_stall_ends_within_the_idle_timeout() {
    let faults = StreamFaults {
        stall: 1.0,
        stall_for: Duration::from_secs(45),
        ..StreamFaults::NONE
    };
    let mut stalled = 0;
    for seed in 1..12 {
        let (result, _sim) = faulty(Flavor::Anthropic, faults, seed, 200).await;
        let Ok(mut response) = result else {
            // A stall before content: the first-content timeout (20 s) fails the attempt.
            assert_eq!(result.unwrap_err().outcome().class(), OutcomeClass::Timeout);
            continue;
        };
        let heard = listen(&mut response);
        let started = tokio::time::Instant::now();
        let (_, error) = drain(response.into_body()).await;
        let summary = heard.lock().unwrap()[0];
        if summary.end == StreamEnd::Finished {
            // The stall fell after the last content event, within its terminal events' gap.
            continue;
        }
        stalled += 1;
        assert_eq!(error.map(|e| e.end()), Some(StreamEnd::Stalled));
        assert_eq!(summary.end.outcome().class(), OutcomeClass::Timeout);
        // Content before the stall came 25 ms apart; then 30 s of silence.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(30) && took < Duration::from_secs(31),
            "{took:?}"
        );
    }
    assert!(stalled >= 5, "{stalled}");
}

/// An error event before any content is the attempt's outcome, in its class; after
/// content, the caller gets the provider's error event, then an `Err` item.
#[tokio::test(start_paused = true)]
async fn error_events_are_classified_before_and_after_content() {
    let faults = StreamFaults {
        error_event: 1.0,
        ..StreamFaults::NONE
    };
    let (mut before, mut after) = (0, 0);
    for seed in 1..40 {
        let (result, sim) = faulty(Flavor::Anthropic, faults, seed, 20).await;
        let mut response = result.unwrap();
        let outcome = Outcome::from_response(&response);
        let ledger = sim.clone();
        if !outcome.is_success() {
            before += 1;
            assert_eq!(outcome.class(), OutcomeClass::Overloaded);
            assert!(!response.body().watches_stream());
            continue;
        }
        after += 1;
        let heard = listen(&mut response);
        let (bytes, error) = drain(response.into_body()).await;
        assert!(String::from_utf8_lossy(&bytes).contains("overloaded_error"));
        assert_eq!(
            error.map(|e| e.end()),
            Some(StreamEnd::Failed(OutcomeClass::Overloaded))
        );
        assert_eq!(
            heard.lock().unwrap()[0].end,
            StreamEnd::Failed(OutcomeClass::Overloaded)
        );
        settle().await;
        assert_eq!(
            ledger.ledger().entries()[0].outcome,
            SimOutcome::StreamError
        );
    }
    assert!(before >= 3 && after >= 10, "{before} before, {after} after");
}

/// No content within the first-content timeout: the attempt fails as a timeout, with
/// nothing sent on to the caller.
#[tokio::test(start_paused = true)]
async fn a_slow_first_token_times_out_before_the_caller_sees_anything() {
    let faults = StreamFaults {
        slow_first_share: 1.0,
        slow_first: Duration::from_secs(40),
        ..StreamFaults::NONE
    };
    let started = tokio::time::Instant::now();
    let (result, _) = faulty(Flavor::OpenAi, faults, 1, 200).await;
    let error = result.unwrap_err();
    assert_eq!(error.outcome().class(), OutcomeClass::Timeout);
    // Headers after the time to first token (about 300 ms), then 20 s for content.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(20) && took < Duration::from_secs(21),
        "{took:?}"
    );
    // Shorter timeouts are taken.
    let sim = Simulator::new(Scenario {
        flavor: Flavor::OpenAi,
        stream_faults: faults,
        ..Scenario::healthy()
    });
    let service = ClassifyLayer::new(Provider::OpenAi)
        .stream_timeouts(StreamTimeouts {
            first_content: Duration::from_secs(50),
            idle: Duration::from_secs(30),
        })
        .layer(sim.streaming());
    let response = service.oneshot(streamed(Flavor::OpenAi, 30)).await.unwrap();
    assert!(Outcome::from_response(&response).is_success());
}

/// A caller that drops the body mid-stream: the hooks hear `Dropped`, with what was read.
#[tokio::test(start_paused = true)]
async fn a_dropped_stream_is_heard_as_dropped() {
    let sim = Simulator::new(Scenario::healthy());
    let service = ClassifyLayer::new(Provider::XAi).layer(sim.streaming());
    let mut response = service.oneshot(streamed(Flavor::XAi, 300)).await.unwrap();
    let heard = listen(&mut response);
    let mut body = response.into_body();
    // The held-back preamble and first content, then two more frames.
    for _ in 0..3 {
        body.frame().await.unwrap().unwrap();
    }
    drop(body);
    let summary = heard.lock().unwrap()[0];
    assert_eq!(summary.end, StreamEnd::Dropped);
    assert_eq!(summary.end.outcome().class(), OutcomeClass::Cancelled);
    assert!(summary.content_bytes > 0);
    // The provider learns at its next send; it bills what it generated by then.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let entry = sim.ledger().entries()[0].clone();
    assert!(!entry.delivered);
    assert!(summary.output_bound() >= entry.completion_tokens);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However a stream's bytes are split into frames, the classifier reads the same
    /// events: the same content, usage and end, and the caller gets the same bytes.
    #[test]
    fn any_chunking_reads_the_same(
        flavor in ballast_sim::strategy::flavor(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let rt = ballast_sim::paused_runtime().unwrap();
        let (whole, split) = rt.block_on(async move {
            let sim = Simulator::new(Scenario { flavor, ..Scenario::healthy() });
            let bytes = all_at_once(sim, flavor, 60).await;
            let read = |chunks: Vec<Bytes>| async move {
                let service = ClassifyLayer::new(provider(flavor)).layer(tower::service_fn(
                    move |_: http::Request<String>| {
                        let frames = chunks.clone().into_iter().map(|c| {
                            Ok::<_, std::convert::Infallible>(Frame::data(c))
                        });
                        async move {
                            let mut response = http::Response::new(StreamBody::new(
                                futures::stream::iter(frames),
                            ));
                            response.headers_mut().insert(
                                "content-type",
                                http::HeaderValue::from_static("text/event-stream"),
                            );
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                ));
                let mut response = service.oneshot(streamed(flavor, 60)).await.unwrap();
                let heard = listen(&mut response);
                let (out, error) = drain(response.into_body()).await;
                let summary = heard.lock().unwrap()[0];
                (out, error, summary.end, summary.usage, summary.content_bytes, summary.events)
            };
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            points.dedup();
            let mut chunks = Vec::new();
            let mut last = 0;
            for point in points.into_iter().chain([bytes.len()]) {
                if point > last {
                    chunks.push(bytes.slice(last..point));
                    last = point;
                }
            }
            (read(vec![bytes.clone()]).await, read(chunks).await)
        });
        prop_assert_eq!(&whole.0, &split.0);
        prop_assert_eq!(whole, split);
    }
}

/// A streamed Responses API request (OpenAI's `/v1/responses`).
fn streamed_responses(max_tokens: u64) -> http::Request<String> {
    let mut request = Flavor::responses_request("gpt-4.1-mini", max_tokens, "hi");
    let mut body: serde_json::Value = serde_json::from_str(request.body()).unwrap();
    body["stream"] = true.into();
    *request.body_mut() = body.to_string();
    request
}

/// The Responses API's named events: the whole stream passes byte for byte, ends
/// `Finished` at `response.completed`, and its usage is the provider's bill.
#[tokio::test(start_paused = true)]
async fn a_responses_stream_passes_unchanged_and_reports_its_usage() {
    let scenario = || Scenario {
        flavor: Flavor::OpenAi,
        cached_share: 0.25,
        ..Scenario::healthy()
    };
    let expected = Simulator::new(scenario())
        .oneshot(streamed_responses(40))
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&expected).into_owned();
    assert!(text.starts_with("event: response.created\n"), "{text}");
    assert!(text.contains("event: response.completed\n"), "{text}");
    let sim = Simulator::new(scenario());
    let service = ClassifyLayer::new(Provider::OpenAi).layer(sim.streaming());
    let mut response = service.oneshot(streamed_responses(40)).await.unwrap();
    assert!(Outcome::from_response(&response).is_success());
    let heard = listen(&mut response);
    let (bytes, error) = drain(response.into_body()).await;
    assert_eq!(error, None);
    assert_eq!(Bytes::from(bytes), expected);
    let summary = heard.lock().unwrap()[0];
    assert_eq!(summary.end, StreamEnd::Finished);
    let entry = sim.ledger().entries()[0].clone();
    assert_eq!(entry.outcome, SimOutcome::Success);
    assert_eq!(
        summary.usage,
        Some(StreamUsage {
            prompt: entry.prompt_tokens,
            cached: entry.cached_tokens,
            cache_write: 0,
            completion: entry.completion_tokens,
        })
    );
    // Only the deltas count as content; `output_text.done` repeats the whole text.
    assert_eq!(
        summary.content_bytes,
        ballast_sim::completion_text(entry.completion_tokens).len() as u64
    );
}

/// A Responses API `error` event: before content the attempt fails as a server error;
/// after content the caller gets the event, then an `Err` item, and the hooks hear it.
#[tokio::test(start_paused = true)]
async fn a_responses_error_event_is_a_server_error() {
    let faults = StreamFaults {
        error_event: 1.0,
        ..StreamFaults::NONE
    };
    let (mut before, mut after) = (0, 0);
    for seed in 1..30 {
        let sim = Simulator::new(Scenario {
            flavor: Flavor::OpenAi,
            seed,
            stream_faults: faults,
            ..Scenario::healthy()
        });
        let service = ClassifyLayer::new(Provider::OpenAi).layer(sim.streaming());
        let mut response = service.oneshot(streamed_responses(20)).await.unwrap();
        let outcome = Outcome::from_response(&response);
        if !outcome.is_success() {
            before += 1;
            assert_eq!(outcome.class(), OutcomeClass::ServerError);
            continue;
        }
        after += 1;
        let heard = listen(&mut response);
        let (bytes, error) = drain(response.into_body()).await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(text.contains("event: error\n"), "{text}");
        assert!(!text.contains("response.completed"), "{text}");
        assert_eq!(
            error.map(|e| e.end()),
            Some(StreamEnd::Failed(OutcomeClass::ServerError))
        );
        assert_eq!(
            heard.lock().unwrap()[0].end,
            StreamEnd::Failed(OutcomeClass::ServerError)
        );
        settle().await;
        assert_eq!(sim.ledger().entries()[0].outcome, SimOutcome::StreamError);
    }
    assert!(before >= 2 && after >= 10, "{before} before, {after} after");
}

/// An event longer than `MAX_EVENT_BYTES` is passed on unread; if the stream is then cut,
/// its bytes count as content in the output bound, so the charge does not miss them.
#[tokio::test(start_paused = true)]
async fn an_event_too_long_to_read_counts_in_the_bound() {
    let chunk = |text: &str| {
        Bytes::from(format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n"
        ))
    };
    let huge = "x".repeat(ballast_classify::stream::MAX_EVENT_BYTES + 10);
    let frames = vec![chunk("first"), chunk(&huge), chunk("last")];
    let service = ClassifyLayer::new(Provider::XAi).layer(tower::service_fn(
        move |_: http::Request<String>| {
            let frames = frames
                .clone()
                .into_iter()
                .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(c)));
            async move {
                let mut response =
                    http::Response::new(StreamBody::new(futures::stream::iter(frames)));
                response.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("text/event-stream"),
                );
                Ok::<_, std::convert::Infallible>(response)
            }
        },
    ));
    let mut response = service.oneshot(streamed(Flavor::XAi, 60)).await.unwrap();
    let heard = listen(&mut response);
    let (bytes, error) = drain(response.into_body()).await;
    assert_eq!(error.map(|e| e.end()), Some(StreamEnd::Cut));
    assert!(
        bytes.len() > huge.len(),
        "the long event reached the caller"
    );
    let summary = heard.lock().unwrap()[0];
    assert_eq!(summary.overflows, 1);
    assert_eq!(summary.content_bytes, 9, "first + last, read");
    assert!(summary.overflow_bytes >= huge.len() as u64);
    assert!(summary.output_bound() > huge.len() as u64);
}
