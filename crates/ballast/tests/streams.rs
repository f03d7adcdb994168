//! Streamed calls through the whole stack, against the simulator streaming in real dialect:
//! counted and settled as the provider billed, retried when they fail before their first
//! content, never ending clean when they were cut.

use std::time::Duration;

use ballast::classify::{Attempt, BoxError, Outcome, OutcomeClass, StreamEnd, StreamError};
use ballast::cost::Usd;
use ballast::{Config, Preset, StackBuilder};
use ballast_sim::{Scenario, SimOutcome, Simulator, StreamFaults};
use bytes::Bytes;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

// Only the stack read-outs are shared here.
#[allow(dead_code)]
mod common;

/// Streamed chat request `i`, asking for usage in the stream.
fn streamed(i: usize, max_tokens: u64) -> http::Request<String> {
    http::Request::post("http://sim.invalid/v1/chat/completions")
        .body(format!(
            r#"{{"model":"grok-code-fast-1","stream":true,"stream_options":{{"include_usage":true}},"max_tokens":{max_tokens},"messages":[{{"role":"user","content":"job {i}"}}]}}"#
        ))
        .unwrap()
}

/// Job `i` as a streamed legacy completion (fill-in-the-middle), its usage not asked for
/// (the read layer asks for it).
fn streamed_completion(i: usize, max_tokens: u64) -> http::Request<String> {
    http::Request::post("http://sim.invalid/v1/completions")
        .body(format!(
            r#"{{"model":"grok-code-fast-1","stream":true,"max_tokens":{max_tokens},"prompt":"fn job_{i}() {{","suffix":"}}"}}"#
        ))
        .unwrap()
}

/// Job `i` as a streamed chat call offering a tool (the simulated providers answer it with
/// a streamed tool call).
fn streamed_with_a_tool(i: usize, max_tokens: u64) -> http::Request<String> {
    http::Request::post("http://sim.invalid/v1/chat/completions")
        .body(format!(
            r#"{{"model":"grok-code-fast-1","stream":true,"stream_options":{{"include_usage":true}},"max_tokens":{max_tokens},"tools":[{{"type":"function","function":{{"name":"look","parameters":{{"type":"object"}}}}}}],"messages":[{{"role":"user","content":"job {i}"}}]}}"#
        ))
        .unwrap()
}

/// Job `i` as a streamed call of OpenAI's Responses API; odd jobs offer a function tool.
fn streamed_responses(i: usize, max_tokens: u64) -> http::Request<String> {
    let tools = if i % 2 == 1 {
        r#","tools":[{"type":"function","name":"look","parameters":{"type":"object"}}]"#
    } else {
        ""
    };
    http::Request::post("http://sim.invalid/v1/responses")
        .body(format!(
            r#"{{"model":"grok-code-fast-1","stream":true,"max_output_tokens":{max_tokens}{tools},"input":"job {i}"}}"#
        ))
        .unwrap()
}

/// The callers of [`run_abandoned`]: chat, chat whose odd jobs offer a tool, Anthropic's
/// Messages API, or OpenAI's Responses API (their odd jobs offering a tool too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callers {
    Chat,
    ChatWithTools,
    Messages,
    Responses,
}

/// Job `i` as a streamed call of Anthropic's Messages API; odd jobs offer a tool (the
/// simulated providers answer them with a streamed tool call).
fn streamed_messages(i: usize, max_tokens: u64) -> http::Request<String> {
    let tools = if i % 2 == 1 {
        r#","tools":[{"name":"look","input_schema":{"type":"object"}}]"#
    } else {
        ""
    };
    http::Request::post("http://sim.invalid/v1/messages")
        .header("anthropic-version", "2023-06-01")
        .body(format!(
            r#"{{"model":"claude-sonnet-4-5","stream":true,"max_tokens":{max_tokens}{tools},"messages":[{{"role":"user","content":"job {i}"}}]}}"#
        ))
        .unwrap()
}

/// Reads a body to its end: its bytes and how it ended (`None`: cleanly).
async fn drain<B>(mut body: B) -> (Vec<u8>, Option<StreamEnd>)
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            Err(error) => return (bytes, error.downcast_ref::<StreamError>().map(|e| e.end())),
        }
    }
    (bytes, None)
}

/// What a run came to.
struct Streams {
    /// Per call: the outcome at the headers, the attempt that answered, how the body ended.
    calls: Vec<(OutcomeClass, u32, Option<StreamEnd>, bool)>,
    ledger: ballast_sim::Ledger,
    counted: Usd,
    spent: Usd,
    reserved: Usd,
}

/// `calls` streamed calls one after another through the facade's stack over `scenario`;
/// a caller in `leave_every` drops its body after the first frame.
fn run(scenario: Scenario, calls: usize, max_tokens: u64, leave_every: Option<usize>) -> Streams {
    ballast_sim::paused_runtime().unwrap().block_on(async move {
        let sim = Simulator::new(scenario);
        let stack = StackBuilder::new(Config::new(Preset::XAi))
            .seed(3)
            .build(sim.streaming());
        let mut seen = Vec::new();
        for i in 0..calls {
            let result = stack.service.clone().oneshot(streamed(i, max_tokens)).await;
            let class = Outcome::from_result(&result).class();
            match result {
                Ok(response) => {
                    let attempt = Attempt::of_response(&response).get();
                    let mut body = response.into_body();
                    if leave_every.is_some_and(|n| i % n == n - 1) {
                        let _ = body.frame().await;
                        drop(body);
                        seen.push((class, attempt, Some(StreamEnd::Dropped), false));
                        continue;
                    }
                    let (bytes, end) = drain(body).await;
                    let done = String::from_utf8_lossy(&bytes).contains("data: [DONE]");
                    seen.push((class, attempt, end, done));
                }
                Err(_) => seen.push((class, 0, None, false)),
            }
        }
        // The provider's side of the last streams, and the settlements, land.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let readout = stack.budget.readout(None).await.unwrap();
        Streams {
            calls: seen,
            ledger: sim.ledger(),
            counted: stack.spend.total(),
            spent: readout.spent,
            reserved: readout.reserved,
        }
    })
}

/// Healthy streams: every one whole, and what the stack counted and settled is what the
/// provider billed, to the picodollar.
#[test]
fn whole_streams_are_counted_as_the_provider_billed() {
    // Without reasoning, and as a reasoning model answers (grok-code-fast-1 thinks first:
    // 80% of its output here, reported beside `completion_tokens` and billed as output):
    // the same output drawn, the same bill, $0.0025129, counted in full either way.
    for reasoning_share in [0.0, 0.8] {
        let run = run(
            Scenario {
                cached_share: 0.3,
                reasoning_share,
                ..Scenario::healthy()
            },
            20,
            120,
            None,
        );
        assert!(
            run.calls
                .iter()
                .all(|c| *c == (OutcomeClass::Success, 1, None, true)),
            "{:?}",
            run.calls
        );
        assert_eq!(run.ledger.len(), 20);
        assert!(run.ledger.entries().iter().all(|e| e.delivered));
        let billed_here = Usd::from_xai_ticks(run.ledger.billed_ticks());
        assert_eq!(billed_here, Usd::from_picos(2_512_900_000));
        assert_eq!(run.counted, billed_here, "reasoning {reasoning_share}");
        assert_eq!(run.spent, billed_here);
        assert_eq!(run.reserved, Usd::ZERO);
    }
}

/// Streams that end with an error event, before or after their first content. Before it,
/// nothing reached the caller: the stack retries, invisibly. After it, the caller gets the
/// provider's bytes and then the error, never a clean end. Every stream is charged no less
/// than the provider billed, and the budget holds exactly what the logger counted.
#[test]
fn error_events_before_content_are_retried_and_after_it_surface() {
    let run = run(
        Scenario {
            stream_faults: StreamFaults {
                error_event: 0.5,
                ..StreamFaults::NONE
            },
            ..Scenario::healthy()
        },
        40,
        20,
        None,
    );
    let mut retried = 0;
    for (class, attempt, end, done) in &run.calls {
        match end {
            None => {
                assert_eq!(*class, OutcomeClass::Success);
                assert!(done, "a clean end is a whole stream");
            }
            Some(end) => {
                assert_eq!(*end, StreamEnd::Failed(OutcomeClass::ServerError));
                assert!(!done);
            }
        }
        if *attempt > 1 {
            retried += 1;
        }
    }
    let errors = run
        .ledger
        .entries()
        .iter()
        .filter(|e| e.outcome == SimOutcome::StreamError)
        .count();
    let surfaced = run.calls.iter().filter(|c| c.2.is_some()).count();
    // Seeded, paused clock: exact. 40 calls made 51 provider calls: the 11 error events
    // before content were retried (9 calls, two of them twice); the 19 after it surfaced.
    assert_eq!(
        (run.ledger.len(), errors, surfaced, retried),
        (51, 30, 19, 9)
    );
    let billed = Usd::from_xai_ticks(run.ledger.billed_ticks());
    // Billed $0.0010329; counted $0.0018534 (the 30 streams that ended in an error event
    // at their worst case).
    assert_eq!(
        (billed, run.counted),
        (
            Usd::from_picos(1_032_900_000),
            Usd::from_picos(1_853_400_000)
        )
    );
    assert_eq!(run.spent, run.counted);
    assert_eq!(run.reserved, Usd::ZERO);
}

/// Callers that leave mid-stream, and cut streams: each charged its worst case (prompt
/// estimate and cap: what was seen does not bound a model's unseen reasoning), and the
/// budget holds what the logger counted.
#[test]
fn cut_and_abandoned_streams_are_charged_no_less_than_billed() {
    let run = run(
        Scenario {
            stream_faults: StreamFaults {
                cut: 0.3,
                ..StreamFaults::NONE
            },
            ..Scenario::healthy()
        },
        30,
        150,
        Some(4),
    );
    let left = run
        .calls
        .iter()
        .filter(|c| c.2 == Some(StreamEnd::Dropped))
        .count();
    let cut = run
        .calls
        .iter()
        .filter(|c| c.2 == Some(StreamEnd::Cut))
        .count();
    // Seeded, paused clock: exact (a cut before content is retried and not seen here).
    assert_eq!((left, cut), (7, 9));
    let billed = Usd::from_xai_ticks(run.ledger.billed_ticks());
    // Billed $0.0031077; counted $0.0066517 (2.1x: 16 of the 30 streams left at their
    // worst case; from what was seen, before, $0.0048502).
    assert_eq!(
        (billed, run.counted),
        (
            Usd::from_picos(3_107_700_000),
            Usd::from_picos(6_651_700_000)
        )
    );
    assert_eq!(run.spent, run.counted);
    assert_eq!(run.reserved, Usd::ZERO);
}

/// A caller that did not ask for usage: the stack asks for it, reads the stream's cost
/// from it (counted exactly as billed), and keeps the usage-only chunk from the caller, who
/// gets every other byte as the provider sent it.
#[test]
fn usage_asked_for_the_caller_is_read_and_kept_from_it() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario::healthy());
        let stack = StackBuilder::new(Config::new(Preset::XAi)).build(sim.streaming());
        let mut received = Vec::new();
        for i in 0..5 {
            let request = http::Request::post("http://sim.invalid/v1/chat/completions")
                .body(format!(
                    r#"{{"model":"grok-code-fast-1","stream":true,"max_tokens":80,"messages":[{{"role":"user","content":"job {i}"}}]}}"#
                ))
                .unwrap();
            let response = stack.service.clone().oneshot(request).await.unwrap();
            let (bytes, end) = drain(response.into_body()).await;
            assert_eq!(end, None);
            received.push(String::from_utf8(bytes).unwrap());
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        let ledger = sim.ledger();
        assert_eq!(
            stack.spend.total(),
            Usd::from_xai_ticks(ledger.billed_ticks()),
            "read from the usage chunk, not estimated"
        );
        for (text, entry) in received.iter().zip(ledger.entries()) {
            assert!(!text.contains(r#""choices":[]"#), "no usage-only chunk: {text}");
            assert!(!text.contains(r#""usage""#));
            assert!(text.ends_with("data: [DONE]\n\n"));
            // Every content event, as sent.
            let content: String = text
                .split("\n\n")
                .filter_map(|event| event.strip_prefix("data: "))
                .filter(|data| *data != "[DONE]")
                .map(|data| serde_json::from_str::<serde_json::Value>(data).unwrap())
                .filter_map(|c| Some(c.pointer("/choices/0/delta/content")?.as_str()?.to_owned()))
                .collect();
            assert_eq!(
                content,
                ballast_sim::completion_text(entry.completion_tokens)
            );
        }
    });
}

/// Through a proxy's body: a stream cut after its content ends with an error event in the
/// caller's dialect (here chat's), no `[DONE]`, and a clean end of the body the proxy sends.
#[test]
fn a_cut_stream_ends_in_an_error_event_for_the_proxys_caller() {
    use ballast::InBandErrors;
    use ballast::classify::Dialect;
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario {
            stream_faults: StreamFaults {
                cut: 1.0,
                ..StreamFaults::NONE
            },
            ..Scenario::healthy()
        });
        let stack = StackBuilder::new(Config::new(Preset::XAi))
            .seed(3)
            .build(sim.streaming());
        let mut events = 0;
        for i in 0..6 {
            let response = stack
                .service
                .clone()
                .oneshot(streamed(i, 150))
                .await
                .unwrap();
            let body = InBandErrors::new(response.into_body(), Dialect::Chat);
            let (bytes, end) = drain(body).await;
            let text = String::from_utf8(bytes).unwrap();
            assert_eq!(end, None, "the proxy's body ends clean");
            assert!(!text.contains("[DONE]"));
            let last = text.trim_end().rsplit("\n\n").next().unwrap();
            assert!(last.starts_with("data: {\"error\""), "{last}");
            let error: serde_json::Value =
                serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
            assert_eq!(error["error"]["code"], "network");
            events += 1;
        }
        assert_eq!(events, 6);
    });
}

/// A caller that gives up while the stream is held back (its first content is slow): the
/// attempt is charged its reservation (the provider may be generating), nothing stays
/// reserved, and the provider's bill for it is within that charge.
#[test]
fn a_call_dropped_before_its_first_content_is_charged_within_its_reservation() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario {
            stream_faults: StreamFaults {
                slow_first_share: 1.0,
                slow_first: Duration::from_secs(15),
                ..StreamFaults::NONE
            },
            ..Scenario::healthy()
        });
        let stack = StackBuilder::new(Config::new(Preset::XAi)).build(sim.streaming());
        let call = stack.service.clone().oneshot(streamed(0, 100));
        assert!(
            tokio::time::timeout(Duration::from_secs(5), call)
                .await
                .is_err(),
            "still held back at 5 s"
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        let readout = stack.budget.readout(None).await.unwrap();
        let billed = Usd::from_xai_ticks(sim.ledger().billed_ticks());
        assert_eq!(readout.reserved, Usd::ZERO);
        assert!(readout.spent > Usd::ZERO);
        assert!(billed <= readout.spent, "{billed} > {}", readout.spent);
        // The logger logged the attempt as cancelled at the same worst case: its prompt
        // estimate and its cap, priced as the budget prices it.
        assert_eq!(stack.spend.total(), readout.spent);
    });
}

/// A stream whose first content does not come within the first-content timeout (20 s) is
/// left, and tried again; each attempt is charged its worst case (prompt bound and cap),
/// not what was seen of it (nothing): the provider may have been generating all along (a
/// reasoning model thinks before its first content) and bills it. Here each of the three
/// attempts was generating its first five tokens when it was left.
#[test]
fn a_stream_silent_past_its_first_content_timeout_is_charged_its_worst_case() {
    let (ledger, counted, spent) = ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario {
            stream_faults: StreamFaults {
                slow_first_share: 1.0,
                slow_first: Duration::from_secs(30),
                ..StreamFaults::NONE
            },
            ..Scenario::healthy()
        });
        let stack = StackBuilder::new(Config::new(Preset::XAi))
            .seed(5)
            .build(sim.streaming());
        let result = stack.service.clone().oneshot(streamed(0, 100)).await;
        assert_eq!(Outcome::from_result(&result).class(), OutcomeClass::Timeout);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let readout = stack.budget.readout(None).await.unwrap();
        assert_eq!(readout.reserved, Usd::ZERO);
        (sim.ledger(), stack.spend.total(), readout.spent)
    });
    assert_eq!(ledger.len(), 3);
    assert!(
        ledger
            .entries()
            .iter()
            .all(|e| e.completion_tokens == 5 && !e.delivered)
    );
    // Billed 3 x (37 prompt + 5 output tokens), $0.0000447; counted 3 x (the prompt bound,
    // 73 tokens, and the 100-token cap), $0.0004938 (before: the prompt bound and one
    // output token, $0.0000483, over the bill only by the prompt bound's margin).
    assert_eq!(
        (Usd::from_xai_ticks(ledger.billed_ticks()), counted),
        (Usd::from_picos(44_700_000), Usd::from_picos(493_800_000))
    );
    assert_eq!(spent, counted);
}

/// With `stream_usage(false)` the stack leaves a stream as the caller asked for it: no
/// usage chunk from the provider, and the stream charged from what was seen of it (no less
/// than billed).
#[test]
fn without_stream_usage_a_stream_is_charged_from_what_was_seen() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario::healthy());
        let stack = StackBuilder::new(Config::new(Preset::XAi))
            .stream_usage(false)
            .build(sim.streaming());
        let request = http::Request::post("http://sim.invalid/v1/chat/completions")
            .body(
                r#"{"model":"grok-code-fast-1","stream":true,"max_tokens":80,"messages":[{"role":"user","content":"hi"}]}"#
                    .to_owned(),
            )
            .unwrap();
        let body_len = request.body().len() as u64;
        let response = stack.service.clone().oneshot(request).await.unwrap();
        let (bytes, end) = drain(response.into_body()).await;
        assert_eq!(end, None);
        assert!(!String::from_utf8_lossy(&bytes).contains(r#""usage""#));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let entry = sim.ledger().entries()[0].clone();
        // The prompt bound (a token per two bytes of the body) and one output token per byte
        // of content, two events as large as the largest more, plus one, at
        // grok-code-fast-1's $0.20 and $1.50 per million: above the bill, never below.
        let text = ballast_sim::completion_text(entry.completion_tokens);
        let largest = (0..entry.completion_tokens.div_ceil(5))
            .map(|chunk| {
                let from = chunk * 5;
                let to = (from + 5).min(entry.completion_tokens);
                let before = ballast_sim::completion_text(from).len();
                ballast_sim::completion_text(to).len() - before
            })
            .max()
            .unwrap() as u64;
        let expected = Usd::from_picos(
            body_len.div_ceil(2) * 200_000
                + (text.len() as u64 + 2 * largest + 1) * 1_500_000,
        );
        let counted = stack.spend.total();
        assert_eq!(counted, expected);
        assert!(counted > Usd::from_xai_ticks(entry.billed_ticks));
        assert_eq!(stack.budget.readout(None).await.unwrap().spent, counted);
    });
}

/// Streamed Responses API calls (`/v1/responses`, named events): the usage in
/// `response.completed` settles the budget and the logger to what the provider billed.
#[test]
fn responses_streams_are_counted_as_the_provider_billed() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario {
            cached_share: 0.3,
            ..Scenario::healthy()
        });
        let stack = StackBuilder::new(Config::new(Preset::XAi))
            .seed(3)
            .build(sim.streaming());
        for i in 0..10 {
            let body = format!(
                r#"{{"model":"grok-code-fast-1","stream":true,"max_output_tokens":90,"input":"job {i}"}}"#
            );
            let request = http::Request::post("http://sim.invalid/v1/responses")
                .body(body)
                .unwrap();
            let response = stack.service.clone().oneshot(request).await.unwrap();
            let (bytes, end) = drain(response.into_body()).await;
            assert_eq!(end, None);
            let text = String::from_utf8_lossy(&bytes).into_owned();
            // `response.incomplete` is the end of an answer cut at its cap.
            let ends = text.matches("event: response.completed\n").count()
                + text.matches("event: response.incomplete\n").count();
            assert_eq!(ends, 1, "{text}");
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        let ledger = sim.ledger();
        assert_eq!(ledger.len(), 10);
        assert!(ledger.entries().iter().all(|e| e.outcome == SimOutcome::Success));
        let billed = Usd::from_xai_ticks(ledger.billed_ticks());
        assert!(billed > Usd::ZERO);
        assert_eq!(stack.spend.total(), billed);
        let readout = stack.budget.readout(None).await.unwrap();
        assert_eq!(readout.spent, billed);
        assert_eq!(readout.reserved, Usd::ZERO);
    });
}

/// How a streaming caller leaves: never (reads to the end), after `ms` wherever the call
/// is (waiting for its headers or reading its body), or after `frames` frames of its body.
#[derive(Debug, Clone, Copy)]
enum Leave {
    Never,
    After(u64),
    AfterFrames(usize),
}

fn leave() -> impl proptest::strategy::Strategy<Value = Leave> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Leave::Never),
        (0u64..60_000).prop_map(Leave::After),
        (0usize..40).prop_map(Leave::AfterFrames),
    ]
}

/// Streamed calls (arrival ms, cap, how the caller leaves) through the facade's stack over
/// `scenario`, or with `fallback` through a route of two (the fallback asked for its
/// flavor's model at any host `fallback.invalid`), under one daily budget of `budget`. The
/// callers speak chat (on one stack, a third of them legacy completions) to an xAI primary,
/// or Anthropic's Messages API to an Anthropic primary.
fn run_abandoned(
    scenario: Scenario,
    fallback: Option<Scenario>,
    budget: Usd,
    calls: &[(u64, u64, Leave)],
    callers: Callers,
) -> common::Settled {
    ballast_sim::paused_runtime().unwrap().block_on(async move {
        let sims: Vec<_> = std::iter::once(scenario)
            .chain(fallback)
            .map(Simulator::new)
            .collect();
        let dollars = budget.to_string().trim_start_matches('$').to_owned();
        let preset = if callers == Callers::Messages {
            Preset::Anthropic
        } else {
            Preset::XAi
        };
        let config = Config::from_vars(preset, |name| {
            (name == "DAILY_BUDGET_USD").then(|| dollars.clone())
        })
        .unwrap();
        let (service, stacks) = match &sims[..] {
            [primary, fallback] => {
                let flavor = fallback.scenario().flavor;
                let (client, route) = common::two_providers(
                    primary.streaming(),
                    (fallback.streaming(), flavor),
                    config,
                );
                let route = route.seed(5).build(client);
                let stacks: Vec<_> = route.targets.into_iter().map(|(_, s)| s).collect();
                (BoxCloneSyncService::new(route.service), stacks)
            }
            _ => {
                let stack = StackBuilder::new(config)
                    .seed(5)
                    .budget_store(std::sync::Arc::new(ballast::budget::MemoryStore::new()))
                    .build(sims[0].streaming());
                (BoxCloneSyncService::new(stack.service.clone()), vec![stack])
            }
        };
        let arrivals = calls.iter().map(|call| call.0);
        common::spawn_jobs(&service, arrivals, |i, service| {
            let (_, cap, leave) = calls[i];
            async move {
                let call = async move {
                    let request = match callers {
                        Callers::Messages => streamed_messages(i, cap),
                        Callers::ChatWithTools if i % 2 == 1 => streamed_with_a_tool(i, cap),
                        Callers::Responses => streamed_responses(i, cap),
                        Callers::Chat if i % 3 == 2 => streamed_completion(i, cap),
                        _ => streamed(i, cap),
                    };
                    let Ok(response) = service.oneshot(request).await else {
                        return;
                    };
                    let mut body = response.into_body();
                    let mut frames = 0;
                    while let Some(Ok(_)) = body.frame().await {
                        frames += 1;
                        if matches!(leave, Leave::AfterFrames(n) if frames >= n) {
                            return;
                        }
                    }
                };
                match leave {
                    Leave::After(ms) => {
                        let _ = tokio::time::timeout(Duration::from_millis(ms), call).await;
                    }
                    _ => call.await,
                }
            }
        })
        .await;
        // The provider's side of the streams left behind, and the settlements, land.
        tokio::time::sleep(Duration::from_secs(600)).await;
        // One budget: every target's stack reads the same store.
        let readout = stacks[0].budget.readout(None).await.unwrap();
        common::Settled {
            billed: Usd::from_xai_ticks(sims.iter().map(|s| s.ledger().billed_ticks()).sum()),
            spent: readout.spent,
            counted: stacks.iter().map(|s| s.spend.total()).sum(),
            budget,
            reserved: readout.reserved,
            queued: stacks.iter().map(common::queued).sum(),
        }
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Streams from a flaky provider (its calls' faults and its streams': cuts, stalls,
    /// error and broken events, late first content; a third of them legacy completions) to
    /// callers who leave at any moment:
    /// before their headers, mid-stream, after some frames, or never. The provider never
    /// bills past the budget; every billed stream is charged no less than billed, and the
    /// logger counts what the budget holds spent; nothing stays reserved or waiting.
    #[test]
    fn abandoned_streams_never_cost_past_the_budget_or_leave_anything_held(
        scenario in ballast_sim::strategy::flaky_scenario(),
        faults in ballast_sim::strategy::stream_faults(),
        budget_micros in 100u64..3_000,
        calls in proptest::collection::vec((0u64..30_000, 1u64..400, leave()), 1..60),
    ) {
        let scenario = Scenario {
            flavor: ballast_sim::Flavor::XAi,
            stream_faults: faults,
            ..scenario
        };
        let budget = Usd::from_picos(budget_micros * 1_000_000);
        run_abandoned(scenario, None, budget, &calls, Callers::Chat).check()?;
    }

    /// The same through a route of two such providers, the fallback speaking xAI's,
    /// Anthropic's or Gemini's API (the caller's chat translated there and back) at its
    /// model's price: streams that fail before their first content on the primary go to
    /// the fallback, under one budget. Half the calls offer a tool, answered by streamed
    /// tool calls (Gemini's whole and signed).
    #[test]
    fn abandoned_routed_streams_never_cost_past_the_budget_or_leave_anything_held(
        primary in ballast_sim::strategy::flaky_scenario(),
        fallback in ballast_sim::strategy::flaky_scenario(),
        flavor in proptest::sample::select(vec![
            ballast_sim::Flavor::XAi,
            ballast_sim::Flavor::Anthropic,
            ballast_sim::Flavor::Gemini,
        ]),
        faults in (ballast_sim::strategy::stream_faults(), ballast_sim::strategy::stream_faults()),
        budget_micros in 100u64..3_000,
        calls in proptest::collection::vec((0u64..30_000, 1u64..400, leave()), 1..60),
    ) {
        let primary = Scenario {
            flavor: ballast_sim::Flavor::XAi,
            stream_faults: faults.0,
            ..primary
        };
        let fallback = Scenario {
            flavor,
            stream_faults: faults.1,
            price: common::fallback_model(flavor).1,
            ..fallback
        };
        let budget = Usd::from_picos(budget_micros * 1_000_000);
        run_abandoned(primary, Some(fallback), budget, &calls, Callers::ChatWithTools).check()?;
    }

    /// The same for callers of Anthropic's Messages API: a flaky Anthropic primary, and a
    /// flaky xAI (a reasoning model half the time) or Gemini fallback the calls are
    /// translated for, their events back as Messages events; half the calls offer a tool,
    /// answered by streamed tool calls.
    #[test]
    fn abandoned_messages_streams_translated_never_cost_past_the_budget_or_leave_anything_held(
        primary in ballast_sim::strategy::flaky_scenario(),
        fallback in ballast_sim::strategy::flaky_scenario(),
        faults in (ballast_sim::strategy::stream_faults(), ballast_sim::strategy::stream_faults()),
        budget_micros in 100u64..3_000,
        calls in proptest::collection::vec((0u64..30_000, 1u64..400, leave()), 1..60),
        flavor in proptest::sample::select(vec![
            ballast_sim::Flavor::XAi,
            ballast_sim::Flavor::Gemini,
        ]),
    ) {
        use ballast_sim::Flavor;
        let primary = Scenario {
            flavor: Flavor::Anthropic,
            stream_faults: faults.0,
            price: common::fallback_model(Flavor::Anthropic).1,
            ..primary
        };
        let fallback = Scenario {
            flavor,
            stream_faults: faults.1,
            price: common::fallback_model(flavor).1,
            ..fallback
        };
        let budget = Usd::from_picos(budget_micros * 1_000_000);
        run_abandoned(primary, Some(fallback), budget, &calls, Callers::Messages).check()?;
    }

    /// The same for callers of OpenAI's Responses API: a flaky xAI primary taking them as
    /// they are, and a flaky Anthropic or Gemini fallback they are translated for, its
    /// events back as the Responses API's; half the calls offer a tool.
    #[test]
    fn abandoned_responses_streams_translated_never_cost_past_the_budget_or_leave_anything_held(
        primary in ballast_sim::strategy::flaky_scenario(),
        fallback in ballast_sim::strategy::flaky_scenario(),
        flavor in proptest::sample::select(vec![
            ballast_sim::Flavor::Anthropic,
            ballast_sim::Flavor::Gemini,
        ]),
        faults in (ballast_sim::strategy::stream_faults(), ballast_sim::strategy::stream_faults()),
        budget_micros in 100u64..3_000,
        calls in proptest::collection::vec((0u64..30_000, 1u64..400, leave()), 1..60),
    ) {
        let primary = Scenario {
            flavor: ballast_sim::Flavor::XAi,
            stream_faults: faults.0,
            ..primary
        };
        let fallback = Scenario {
            flavor,
            stream_faults: faults.1,
            price: common::fallback_model(flavor).1,
            ..fallback
        };
        let budget = Usd::from_picos(budget_micros * 1_000_000);
        run_abandoned(primary, Some(fallback), budget, &calls, Callers::Responses).check()?;
    }
}
