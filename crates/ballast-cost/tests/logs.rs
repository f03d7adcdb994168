//! What reaches the logs. Its own test binary: `tracing` caches each call site's interest
//! process-wide, so a test running without a subscriber on another thread could hide events
//! from the scoped subscriber these tests install. Within it the tests take turns
//! ([`one_at_a_time`]): a call site first reached while another test's subscriber was
//! being installed could otherwise be cached as uninteresting (about one run in ten lost
//! an event when they ran in parallel).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_classify::{ClassifyLayer, Provider};
use ballast_cost::{CostLogLayer, HealthMonitor, Scope};
use ballast_retry::{RetryLayer, RetryPolicy};
use ballast_sim::{ExpectedKey, Flavor, Scenario, Simulator};
use tower::{ServiceBuilder, ServiceExt};

/// Request `i` for `model`, with its facts read (as `ReadRequestLayer` would).
fn request(i: usize, model: &str) -> http::Request<String> {
    let mut request = http::Request::post("/v1/chat/completions")
        .header("authorization", "Bearer xai-CANARYKEY123")
        .body(format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"PROMPT-CANARY {i}"}}],"max_tokens":{}}}"#,
            20 + i % 300
        ))
        .unwrap();
    ballast_classify::RequestFacts::note(&mut request);
    request
}

/// Held for the whole of each test of this binary, so that their subscribers never overlap.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs `f` with the `tracing` output captured (every level with `trace`, else the
/// subscriber's default), handing it the capture to read mid-run; returns its result and
/// the text.
fn with_captured_logs<T>(trace: bool, f: impl FnOnce(&Captured) -> T) -> (T, String) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    let captured = Captured::default();
    let writer = captured.clone();
    let level = if trace {
        tracing::level_filters::LevelFilter::TRACE
    } else {
        tracing::level_filters::LevelFilter::INFO
    };
    // Events only: the `ballast::gen_ai` spans are for exporters, not a prefix on each line.
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_filter(level)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                !meta.is_span()
            })),
    );
    let out = tracing::subscriber::with_default(subscriber, || f(&captured));
    let text = captured.text();
    (out, text)
}

fn logs_of(log_content: bool, model: &str, scenario: Scenario) -> String {
    let ((), text) = with_captured_logs(true, |_| {
        let rt = ballast_sim::paused_runtime().unwrap();
        rt.block_on(async {
            let sim = Simulator::new(scenario);
            let service = ServiceBuilder::new()
                .layer(
                    CostLogLayer::new(Provider::XAi, Scope::Call)
                        .health(HealthMonitor::default())
                        .log_content(log_content),
                )
                .layer(RetryLayer::new(RetryPolicy::default()))
                .layer(CostLogLayer::new(Provider::XAi, Scope::Attempt).log_content(log_content))
                .timeout(Duration::from_secs(90))
                .layer(ClassifyLayer::new(Provider::XAi))
                .service(sim);
            for i in 0..30 {
                let _ = service.clone().oneshot(request(i, model)).await;
            }
        });
    });
    text
}

#[test]
fn no_key_and_no_prompt_in_the_logs_by_default() {
    let _turn = one_at_a_time();
    let scenario = Scenario {
        api_key: Some(ExpectedKey("xai-CANARYKEY123".into())),
        ..Scenario::bad_day()
    };
    let logs = logs_of(false, "grok-code-fast-1", scenario.clone());
    assert!(
        logs.contains("gen_ai.request.model=\"grok-code-fast-1\""),
        "{logs}"
    );
    assert!(logs.contains("ballast.cost_source=\"reported\""), "{logs}");
    assert!(logs.contains("ballast.scope=\"attempt\"") && logs.contains("ballast.scope=\"call\""));
    assert!(!logs.contains("CANARYKEY"), "a key reached the logs");
    assert!(!logs.contains("PROMPT-CANARY"), "a prompt reached the logs");

    // Content logging shows prompts, and still never the key.
    let logs = logs_of(true, "grok-code-fast-1", scenario);
    assert!(logs.contains("PROMPT-CANARY"));
    assert!(!logs.contains("CANARYKEY"));
}

#[test]
fn unknown_models_are_flagged_and_never_free() {
    let _turn = one_at_a_time();
    let scenario = Scenario {
        flavor: Flavor::OpenAi,
        ..Scenario::healthy()
    };
    let logs = logs_of(false, "mystery-model-9", scenario);
    let warning = logs
        .lines()
        .find(|line| line.contains("no price for model"))
        .unwrap_or_else(|| panic!("no warning: {logs}"));
    assert!(warning.contains("mystery-model-9"), "{warning}");
    assert_eq!(
        logs.matches("no price for model").count(),
        1,
        "warned once, not per call"
    );
    assert!(logs.contains("ballast.cost_source=\"unknown_price\""));
    assert!(!logs.contains("ballast.cost_usd=0.0 ballast.cost_source=\"unknown_price\""));
}

/// A call with no reading of its own (`Dialect::Other`) is charged what its answer reports:
/// a speech billed by the character (no usage in its answer) is logged unpriced at nothing,
/// its model warned about once; a model list (no model) and a moderation (a free model in
/// the table) are unpriced too, with no warning; an image that reports usage is priced by
/// it, and one that does not (`dall-e-3`) is charged its bound, as any worst case.
#[test]
fn calls_with_no_reading_and_no_usage_are_logged_unpriced() {
    use bytes::Bytes;
    use http_body_util::Full;
    let _turn = one_at_a_time();
    let ((), logs) = with_captured_logs(false, |_| {
        let rt = ballast_sim::paused_runtime().unwrap();
        rt.block_on(async {
            let provider = tower::service_fn(|request: http::Request<String>| async move {
                let body: &[u8] = if request.uri().path().ends_with("/images/generations")
                    && request.body().contains("gpt-image-1")
                {
                    br#"{"data":[{"b64_json":"x"}],"usage":{"input_tokens":10,"output_tokens":1056}}"#
                } else {
                    br#"{"data":[{"b64_json":"x"}]}"#
                };
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(body)))
                        .unwrap(),
                )
            });
            let service = ServiceBuilder::new()
                .layer(CostLogLayer::new(Provider::OpenAi, Scope::Attempt))
                .layer(ClassifyLayer::new(Provider::OpenAi))
                .service(provider);
            let calls = [
                ("POST", "/v1/audio/speech", r#"{"model":"tts-1","input":"a cat"}"#),
                ("POST", "/v1/audio/speech", r#"{"model":"tts-1","input":"a dog"}"#),
                ("GET", "/v1/models", ""),
                ("POST", "/v1/moderations", r#"{"model":"omni-moderation-latest","input":"hi"}"#),
                ("POST", "/v1/images/generations", r#"{"model":"gpt-image-1","prompt":"a cow"}"#),
                ("POST", "/v1/images/generations", r#"{"model":"dall-e-3","prompt":"a cat"}"#),
            ];
            for (method, path, body) in calls {
                let mut request = http::Request::builder()
                    .method(method)
                    .uri(path)
                    .body(body.to_owned())
                    .unwrap();
                ballast_classify::RequestFacts::note(&mut request);
                service.clone().oneshot(request).await.unwrap();
            }
        });
    });
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("ballast.cost_source"))
        .collect();
    assert_eq!(lines.len(), 6, "{logs}");
    let has = |i: usize, text: &str| assert!(lines[i].contains(text), "{text}: {}", lines[i]);
    for i in 0..4 {
        has(i, "ballast.cost_source=\"unpriced\"");
        has(i, "ballast.cost_usd=0.0 ");
    }
    has(0, "gen_ai.operation.name=\"audio\"");
    has(3, "gen_ai.operation.name=\"moderations\"");
    // 10 tokens at $10 a million and 1 056 at $40: $0.04234.
    has(4, "ballast.cost_source=\"estimated\"");
    has(4, "ballast.cost_usd=0.04234 ");
    // An image's bound, 6 240 output tokens at $19.2308 a million: its dearest image.
    has(5, "ballast.cost_source=\"worst_case\"");
    has(5, "ballast.cost_usd=0.120000192 ");
    has(5, "gen_ai.operation.name=\"images\"");
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("reported no usage"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("tts-1"), "{}", warnings[0]);
}

type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    metrics_util::debugging::DebugValue,
)>;

/// The value of the metric `name` of `kind` carrying all of `labels`.
fn metric<'a>(
    snapshot: &'a Snapshot,
    kind: metrics_util::MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a metrics_util::debugging::DebugValue> {
    snapshot.iter().find_map(|(key, _, _, value)| {
        let key_labels: Vec<(&str, &str)> =
            key.key().labels().map(|l| (l.key(), l.value())).collect();
        (key.kind() == kind
            && key.key().name() == name
            && labels.iter().all(|l| key_labels.contains(l)))
        .then_some(value)
    })
}

#[test]
fn metrics_count_tokens_cost_and_requests() {
    let _turn = one_at_a_time();
    use metrics_util::MetricKind;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let ledger = metrics::with_local_recorder(&recorder, || {
        let rt = ballast_sim::paused_runtime().unwrap();
        rt.block_on(async {
            let sim = Simulator::new(Scenario {
                cached_share: 0.5,
                ..Scenario::healthy()
            });
            let service = ServiceBuilder::new()
                .layer(CostLogLayer::new(Provider::XAi, Scope::Attempt))
                .layer(ClassifyLayer::new(Provider::XAi))
                .service(sim.clone());
            for i in 0..10 {
                service
                    .clone()
                    .oneshot(request(i, "grok-code-fast-1"))
                    .await
                    .unwrap();
            }
            sim.ledger()
        })
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |kind, name: &str, labels: &[(&str, &str)]| metric(&snapshot, kind, name, labels);
    let counter =
        |name: &str, labels: &[(&str, &str)]| match value(MetricKind::Counter, name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name} {labels:?}: {other:?}"),
        };
    let model = ("model", "grok-code-fast-1");
    let output: u64 = ledger.entries().iter().map(|e| e.completion_tokens).sum();
    let cached: u64 = ledger.entries().iter().map(|e| e.cached_tokens).sum();
    assert_eq!(
        counter("ballast_tokens_total", &[model, ("kind", "output")]),
        output
    );
    assert_eq!(
        counter("ballast_tokens_total", &[model, ("kind", "cached_input")]),
        cached
    );
    assert_eq!(
        counter("ballast_cost_picousd_total", &[model]),
        ledger.billed_ticks() * 100
    );
    assert_eq!(
        counter(
            "ballast_requests_total",
            &[model, ("class", "success"), ("scope", "attempt")]
        ),
        10
    );
    match value(MetricKind::Gauge, "ballast_spend_today_usd", &[]) {
        Some(DebugValue::Gauge(usd)) => assert!(usd.into_inner() >= ledger.billed_usd() * 0.999),
        other => panic!("spend gauge: {other:?}"),
    }
}

/// A call its caller drops is logged and counted as `cancelled`, at both scopes, and the
/// health monitor does not count it as an error. The provider had the attempt and may bill
/// it whole: it is charged its worst case (prompt estimate and cap), as the budget settles
/// it, and the call line carries its attempt's charge.
#[test]
fn dropped_calls_are_logged_and_counted_as_cancelled() {
    let _turn = one_at_a_time();
    use metrics_util::MetricKind;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let health = HealthMonitor::default();
    let monitor = health.clone();
    let spend = Mutex::new(None);
    let ((), logs) = with_captured_logs(false, |_| {
        metrics::with_local_recorder(&recorder, || {
            let rt = ballast_sim::paused_runtime().unwrap();
            rt.block_on(async {
                let sim = Simulator::new(Scenario::healthy());
                let attempts = CostLogLayer::new(Provider::XAi, Scope::Attempt);
                *spend.lock().unwrap() = Some(attempts.daily_spend());
                let service = ServiceBuilder::new()
                    .layer(CostLogLayer::new(Provider::XAi, Scope::Call).health(monitor))
                    .layer(attempts)
                    .layer(ClassifyLayer::new(Provider::XAi))
                    .service(sim.clone());
                for i in 0..3 {
                    let call = service.clone().oneshot(request(i, "grok-code-fast-1"));
                    // The caller gives up while the provider works.
                    assert!(
                        tokio::time::timeout(Duration::from_millis(1), call)
                            .await
                            .is_err()
                    );
                }
            });
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let count = |scope: &str| {
        let labels = [("class", "cancelled"), ("scope", scope)];
        metric(
            &snapshot,
            MetricKind::Counter,
            "ballast_requests_total",
            &labels,
        )
        .map(|value| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(count("attempt"), Some(3));
    assert_eq!(count("call"), Some(3));
    assert_eq!(
        logs.matches("ballast.outcome=\"cancelled\"").count(),
        6,
        "{logs}"
    );
    assert_eq!(
        health.status().calls,
        0,
        "a dropped call is not a provider error"
    );
    // grok-code-fast-1: $0.20 and $1.50 per million tokens, in picodollars per token.
    let worst: Vec<u64> = (0..3)
        .map(|i| {
            let request = request(i, "grok-code-fast-1");
            let facts = ballast_classify::RequestFacts::of(&request);
            facts.prompt_tokens() * 200_000 + facts.output_cap().unwrap() * 1_500_000
        })
        .collect();
    let spend = spend.into_inner().unwrap().unwrap();
    assert_eq!(spend.total().picos(), worst.iter().sum::<u64>());
    for picos in worst {
        let line = format!("ballast.cost_usd={:?}", picos as f64 / 1e12);
        assert_eq!(
            logs.matches(&line).count(),
            2,
            "{line} at both scopes: {logs}"
        );
    }
}

/// A streamed answer is logged at its end: its usage and cost, time to first content and
/// output pace, and its content bytes as the response's size.
#[test]
fn a_stream_is_logged_at_its_end_with_its_pace() {
    let _turn = one_at_a_time();
    use http_body_util::BodyExt;
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (entry, logs) = with_captured_logs(false, |captured| {
        metrics::with_local_recorder(&recorder, || {
            ballast_sim::paused_runtime().unwrap().block_on(async {
            let sim = Simulator::new(Scenario::healthy());
            let service = ServiceBuilder::new()
                .layer(CostLogLayer::new(Provider::XAi, Scope::Attempt))
                .layer(ClassifyLayer::new(Provider::XAi))
                .service(sim.streaming());
            let mut request = http::Request::post("/v1/chat/completions")
                .body(
                    r#"{"model":"grok-code-fast-1","stream":true,"stream_options":{"include_usage":true},"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#
                        .to_owned(),
                )
                .unwrap();
            ballast_classify::RequestFacts::note(&mut request);
            let response = service.oneshot(request).await.unwrap();
            assert!(
                !captured.text().contains("llm attempt"),
                "nothing logged before the end"
            );
            response.into_body().collect().await.unwrap();
            sim.ledger().entries()[0].clone()
        })
        })
    });
    // The time to first content is a histogram too, per model: one stream, 40 ms.
    let snapshot = snapshotter.snapshot().into_vec();
    match metric(
        &snapshot,
        metrics_util::MetricKind::Histogram,
        "ballast_time_to_first_token_seconds",
        &[("model", "grok-code-fast-1"), ("scope", "attempt")],
    ) {
        Some(metrics_util::debugging::DebugValue::Histogram(values)) => {
            assert_eq!(
                values.iter().map(|v| v.into_inner()).collect::<Vec<_>>(),
                [0.04]
            );
        }
        other => panic!("time to first token: {other:?}"),
    }
    assert!(logs.contains("llm attempt success"), "{logs}");
    assert!(
        logs.contains(&format!(
            "gen_ai.usage.output_tokens={}",
            entry.completion_tokens
        )),
        "{logs}"
    );
    assert!(
        logs.contains(&format!(
            "ballast.response_bytes={}",
            ballast_sim::completion_text(entry.completion_tokens).len()
        )),
        "{logs}"
    );
    // The scenario generates a token every 8 ms, five to an event: the first content comes
    // 40 ms after the headers, and the rest at 5 tokens per 40 ms (the first event's tokens
    // over the time after it: paused clock, exact).
    let field = |name: &str| {
        logs.split(&format!("{name}="))
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        field("ballast.stream.time_to_first_token_ms"),
        "40",
        "{logs}"
    );
    let rate: f64 = field("ballast.stream.output_tokens_per_s").parse().unwrap();
    let events = entry.completion_tokens.div_ceil(5);
    let expected = entry.completion_tokens as f64 / ((events - 1) as f64 * 0.040);
    assert!((rate - expected).abs() < 1e-6, "{rate} vs {expected}");
}

/// A call whose every attempt timed out logs all its attempts at call scope: three, not one
/// (a failure that ends in an error carries its count from the retry layer).
#[test]
fn a_call_that_fails_every_attempt_logs_all_of_them() {
    let _turn = one_at_a_time();
    let ((), text) = with_captured_logs(true, |_| {
        let rt = ballast_sim::paused_runtime().unwrap();
        rt.block_on(async {
            let hangs = tower::service_fn(|_: http::Request<String>| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, ballast_classify::BoxError>(http::Response::new(String::new()))
            });
            let service = ServiceBuilder::new()
                .layer(CostLogLayer::new(Provider::XAi, Scope::Call))
                .layer(RetryLayer::new(RetryPolicy::default()))
                .layer(CostLogLayer::new(Provider::XAi, Scope::Attempt))
                .layer(ClassifyLayer::new(Provider::XAi))
                .timeout(Duration::from_secs(30))
                .service(hangs);
            let error = service
                .oneshot(request(0, "grok-code-fast-1"))
                .await
                .unwrap_err();
            assert_eq!(
                ballast_classify::Outcome::from_error(&*error).class(),
                ballast_classify::OutcomeClass::Timeout
            );
            assert_eq!(
                ballast_classify::Attempt::of_error(&*error).map(|a| a.get()),
                Some(3)
            );
        });
    });
    let calls: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ballast.scope=\"call\""))
        .collect();
    let attempts: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ballast.scope=\"attempt\""))
        .collect();
    assert_eq!(calls.len(), 1, "{text}");
    assert_eq!(attempts.len(), 3, "{text}");
    assert!(calls[0].contains("ballast.attempts=3"), "{}", calls[0]);
    assert!(
        calls[0].contains("ballast.outcome=\"timeout\""),
        "{}",
        calls[0]
    );
}

/// A call a local layer refused (nothing sent) between the two loggers: the spend gauge
/// keeps the attempt logger's total (the call logger wrote its own zero over it), and the
/// health monitor does not count the refusal as a provider error.
#[test]
fn a_local_refusal_leaves_the_spend_gauge_and_health_alone() {
    let _turn = one_at_a_time();
    use metrics_util::MetricKind;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let health = HealthMonitor::default();
    let monitor = health.clone();
    let total = metrics::with_local_recorder(&recorder, || {
        ballast_sim::paused_runtime().unwrap().block_on(async {
            let sim = Simulator::new(Scenario::healthy());
            let attempts = CostLogLayer::new(Provider::XAi, Scope::Attempt);
            let spend = attempts.daily_spend();
            let inner = ServiceBuilder::new()
                .layer(attempts)
                .layer(ClassifyLayer::new(Provider::XAi))
                .service(sim);
            // A local layer between the loggers: the second call is refused there.
            let refusing = tower::service_fn(move |request: http::Request<String>| {
                let inner = inner.clone();
                async move {
                    if request.body().contains("refuse me") {
                        return Err(Box::new(ballast_classify::ClassifiedError::refused(
                            "not now".into(),
                            None,
                        )) as ballast_classify::BoxError);
                    }
                    inner.oneshot(request).await
                }
            });
            let service = ServiceBuilder::new()
                .layer(CostLogLayer::new(Provider::XAi, Scope::Call).health(monitor))
                .service(refusing);
            service
                .clone()
                .oneshot(request(0, "grok-code-fast-1"))
                .await
                .unwrap();
            let mut refused = request(1, "grok-code-fast-1");
            *refused.body_mut() = r#"{"model":"grok-code-fast-1","messages":[{"role":"user","content":"refuse me"}]}"#.to_owned();
            ballast_classify::RequestFacts::note(&mut refused);
            assert!(service.clone().oneshot(refused).await.is_err());
            spend.total()
        })
    });
    assert!(total > ballast_cost::Usd::ZERO);
    let snapshot = snapshotter.snapshot().into_vec();
    let gauge = metric(&snapshot, MetricKind::Gauge, "ballast_spend_today_usd", &[]);
    match gauge {
        Some(DebugValue::Gauge(value)) => assert_eq!(value.into_inner(), total.as_f64()),
        other => panic!("{other:?}"),
    }
    let status = health.status();
    assert_eq!(
        (status.calls, status.errors),
        (1, 0),
        "the refusal is not counted"
    );
}

/// The call line tells today's spend as the attempt logger counted it (it told its own
/// logger's zero).
#[test]
fn the_call_line_tells_todays_spend() {
    let _turn = one_at_a_time();
    let logs = logs_of(false, "grok-code-fast-1", Scenario::healthy());
    let today = |scope: &str| {
        logs.lines()
            .rfind(|l| l.contains(&format!("ballast.scope=\"{scope}\"")))
            .and_then(|l| l.split("ballast.spend_today_usd=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {scope} line: {logs}"))
    };
    let attempt = today("attempt");
    assert_ne!(attempt, "0.0");
    assert_eq!(today("call"), attempt);
}

/// The health monitor warns once per crossing, overall and per model, and says when it
/// clears. Its verdict is worked out after each failed call and while an alert is raised;
/// after a success in a healthy window only once per bucket (10 s by default), so a
/// crossing a success causes is seen at the next bucket.
#[test]
fn health_warns_once_per_crossing_and_clears() {
    let _turn = one_at_a_time();
    let second = Duration::from_secs(1);
    let ((), logs) = with_captured_logs(false, |_| {
        ballast_sim::paused_runtime().unwrap().block_on(async {
            let monitor = HealthMonitor::default();
            // 3 failures, then 6 successes: 9 calls, under the 10 needed for a verdict.
            for i in 0..9 {
                monitor.record_for("m", i < 3, second);
            }
            // The 10th call, a success, makes it 30%; a success in a healthy window
            // is not judged again within its bucket.
            monitor.record_for("m", false, second);
            assert!(monitor.status().error_rate_high);
            tokio::time::advance(Duration::from_secs(10)).await;
            // Next bucket: judged, 3 of 11 is above 20%: one warning each.
            monitor.record_for("m", false, second);
            // Still above, and raised: no second warning.
            monitor.record_for("m", true, second);
            // 4 of 20 is 20%, not above: cleared at the 20th call, not before.
            for _ in 0..7 {
                monitor.record_for("m", false, second);
            }
            assert!(monitor.status().error_rate_high, "4 of 19");
            monitor.record_for("m", false, second);
            assert!(!monitor.status().error_rate_high, "4 of 20");
        });
    });
    let raised = "provider error rate above 20%: 11 calls, 27.3% errors";
    assert_eq!(logs.matches(raised).count(), 2, "{logs}");
    assert_eq!(
        logs.matches(&format!("model \"m\": {raised}")).count(),
        1,
        "{logs}"
    );
    let cleared = "provider error rate back to normal: 20 calls, 20.0% errors";
    assert_eq!(logs.matches(cleared).count(), 2, "{logs}");
    assert_eq!(logs.matches("error rate").count(), 4, "{logs}");
}
