//! OpenTelemetry: a call through the gateway reaches an OTLP collector stub (HTTP, JSON)
//! as two spans, the call and its attempt, with the GenAI semantic conventions' names and
//! the figures the provider's ledger holds. Its own test binary: it installs the process's
//! subscriber.
#![cfg(feature = "otel")]

#[allow(dead_code)]
mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use ballast_gateway::{Gateway, GatewayConfig, Otel};
use ballast_sim::SimServer;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

const KEY: &str = "xai-gateway-otel-key";

/// An attribute's value in OTLP JSON (`{"key", "value": {"stringValue" | "intValue" |
/// "doubleValue"}}`), as text.
fn attribute(span: &Value, key: &str) -> Option<String> {
    span["attributes"].as_array()?.iter().find_map(|a| {
        (a["key"] == key).then(|| {
            let value = &a["value"];
            value["stringValue"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| value["intValue"].as_str().map(str::to_owned))
                .or_else(|| value["intValue"].as_i64().map(|n| n.to_string()))
                .or_else(|| value["doubleValue"].as_f64().map(|x| x.to_string()))
                .unwrap_or_else(|| value.to_string())
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reaches_the_collector_as_a_call_span_and_an_attempt_span() {
    // The collector stub: keeps every export's body.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = Arc::clone(&received);
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                axum::Json(serde_json::json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let otel = Otel::new(&endpoint).unwrap();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(otel.layer()))
        .unwrap();

    let sim = common::simulator(KEY);
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/v1", server.url());
    let settings = common::settings(&[("XAI_API_KEY", KEY), ("XAI_BASE_URL", &base)]);
    let gateway = Gateway::new(&GatewayConfig::from_settings(&settings).unwrap(), None).unwrap();
    let request = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"model":"grok-code-fast-1","messages":[{"role":"user","content":"hi"}],"max_tokens":30}"#,
        ))
        .unwrap();
    let answer = gateway.router().oneshot(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.into_body().collect().await.unwrap();
    tokio::task::spawn_blocking(move || otel.shutdown())
        .await
        .unwrap()
        .unwrap();

    let spans: Vec<Value> = received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|export| {
            export["resourceSpans"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
                .flat_map(|s| s["spans"].as_array().into_iter().flatten())
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let by_scope = |scope: &str| {
        spans
            .iter()
            .find(|s| attribute(s, "ballast.scope").as_deref() == Some(scope))
            .unwrap_or_else(|| panic!("no {scope} span: {spans:#?}"))
    };
    let (call, attempt) = (by_scope("call"), by_scope("attempt"));
    let entry = sim.ledger().entries()[0].clone();
    for span in [call, attempt] {
        assert_eq!(span["name"], "chat grok-code-fast-1");
        assert_eq!(
            attribute(span, "gen_ai.operation.name").as_deref(),
            Some("chat")
        );
        assert_eq!(
            attribute(span, "gen_ai.provider.name").as_deref(),
            Some("xai")
        );
        assert_eq!(
            attribute(span, "gen_ai.request.model").as_deref(),
            Some("grok-code-fast-1")
        );
        assert_eq!(attribute(span, "error.type"), None);
    }
    // The attempt: a client span under the call, with the provider's usage and the cost.
    assert_eq!(attempt["parentSpanId"], call["spanId"]);
    assert_eq!(attempt["traceId"], call["traceId"]);
    assert_eq!(attempt["kind"], 3, "SPAN_KIND_CLIENT");
    assert_eq!(
        attribute(attempt, "gen_ai.response.model").as_deref(),
        Some("grok-code-fast-1")
    );
    assert_eq!(
        attribute(attempt, "gen_ai.usage.input_tokens"),
        Some(entry.prompt_tokens.to_string())
    );
    assert_eq!(
        attribute(attempt, "gen_ai.usage.output_tokens"),
        Some(entry.completion_tokens.to_string())
    );
    let billed = ballast::cost::Usd::from_xai_ticks(entry.billed_ticks).as_f64();
    assert_eq!(
        attribute(attempt, "gen_ai.usage.cost"),
        Some(billed.to_string())
    );
    assert_eq!(
        attribute(call, "gen_ai.usage.cost"),
        Some(billed.to_string())
    );
}
