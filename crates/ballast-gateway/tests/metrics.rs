//! `/metrics` and the status page: the read-out gauges equal what the layers and the
//! provider's ledger say. Its own test binary: it installs the process's metrics recorder.

#[allow(dead_code)]
mod common;

use axum::body::Body;
use ballast::cost::Usd;
use ballast_gateway::{Gateway, GatewayConfig};
use ballast_sim::SimServer;
use http_body_util::BodyExt;
use tower::ServiceExt;

const KEY: &str = "xai-gateway-metrics-key";

async fn get(gateway: &Gateway, path: &str) -> (http::StatusCode, http::HeaderMap, String) {
    let answer = gateway
        .router()
        .oneshot(http::Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = answer.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// The value of the series `name` with exactly `labels` in Prometheus text.
fn series(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().parse().unwrap())
}

/// Five calls served: the spend gauge, the budget's spent gauge and the ledger agree to
/// the picodollar; the error rate is 0 over 5 calls; the breaker is closed (0); the status
/// page is served and names the gauges it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gauges_equal_the_ledger_and_the_page_reads_them() {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let sim = common::simulator(KEY);
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/v1", server.url());
    let settings = common::settings(&[("XAI_API_KEY", KEY), ("XAI_BASE_URL", &base)]);
    let config = GatewayConfig::from_settings(&settings).unwrap();
    let gateway = Gateway::new(&config, Some(prometheus)).unwrap();
    for i in 0..5 {
        let request = http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"call {i}"}}],"max_tokens":30}}"#
            )))
            .unwrap();
        let answer = gateway.router().oneshot(request).await.unwrap();
        assert_eq!(answer.status(), 200);
        answer.into_body().collect().await.unwrap();
    }
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 5);
    let billed = Usd::from_xai_ticks(ledger.billed_ticks()).as_f64();

    let (status, _, text) = get(&gateway, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        series(&text, "ballast_spend_today_usd", ""),
        Some(billed),
        "{text}"
    );
    assert_eq!(
        series(&text, "ballast_budget_spent_usd", r#"scope="global""#),
        Some(billed)
    );
    assert_eq!(
        series(&text, "ballast_budget_reserved_usd", r#"scope="global""#),
        Some(0.0)
    );
    assert_eq!(
        series(&text, "ballast_budget_remaining_usd", r#"scope="global""#),
        Some(50.0 - billed)
    );
    assert_eq!(series(&text, "ballast_error_rate", ""), Some(0.0));
    assert_eq!(series(&text, "ballast_calls_in_window", ""), Some(5.0));
    // The breaker's key is the host (no port) and the model.
    assert_eq!(
        series(
            &text,
            "ballast_breaker_state",
            r#"target="xai",key="127.0.0.1/grok-code-fast-1""#
        ),
        Some(0.0),
        "{text}"
    );
    // The xAI preset's throttle starts at the documented 480 a minute, with none queued.
    assert_eq!(
        series(&text, "ballast_throttle_queued", r#"target="xai""#),
        Some(0.0)
    );

    // Every metric the Grafana dashboard reads is one the gateway exports (those that
    // appear only after a stream or a breaker transition excepted by name).
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/grafana/ballast.json")).unwrap();
    let mut named = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("ballast_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                named.push(name);
            }
        }
    }
    assert!(named.len() >= 15, "{named:?}");
    for name in named {
        let later = [
            "ballast_time_to_first_token_seconds",
            "ballast_breaker_transitions_total",
        ];
        assert!(
            later.contains(&name.as_str()) || text.contains(&format!("\n{name}")),
            "the dashboard reads {name}, which /metrics does not export"
        );
    }

    let (status, headers, page) = get(&gateway, "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    for needle in [
        r#"id="spend""#,
        r#"id="error-rate""#,
        r#"id="latency""#,
        "ballast_spend_today_usd",
        "ballast_error_rate",
        "ballast_avg_latency_seconds",
        "ballast_breaker_state",
        "ballast_budget_remaining_usd",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
}
