//! The cost logger against the simulator's ledger, and the health monitor it feeds.

use std::time::Duration;

use ballast_classify::{ClassifyLayer, Outcome, Provider};
use ballast_cost::{CostLogLayer, HealthMonitor, Scope, Usd};
use ballast_retry::{RetryLayer, RetryPolicy};
use ballast_sim::{Flavor, Scenario, Simulator};
use futures::future::join_all;
use proptest::prelude::*;
use tower::{ServiceBuilder, ServiceExt};

fn provider_for(flavor: Flavor) -> Provider {
    match flavor {
        Flavor::XAi => Provider::XAi,
        Flavor::OpenAi => Provider::OpenAi,
        Flavor::Anthropic => Provider::Anthropic,
        Flavor::Gemini => Provider::Gemini,
    }
}

/// Request `i` for `model` in `flavor`'s own API, with its facts read (as
/// `ReadRequestLayer` would).
fn request_in(flavor: Flavor, i: usize, model: &str) -> http::Request<String> {
    let mut request = flavor.request(model, 20 + (i % 300) as u64, &format!("PROMPT-CANARY {i}"));
    request
        .headers_mut()
        .insert("authorization", "Bearer xai-CANARYKEY123".parse().unwrap());
    ballast_classify::RequestFacts::note(&mut request);
    request
}

fn request(i: usize, model: &str) -> http::Request<String> {
    request_in(Flavor::XAi, i, model)
}

/// Runs `calls` logical calls through call logger, retry, attempt logger, timeout, classify
/// and the simulator. Returns what the two loggers counted today and the ledger.
fn run(
    scenario: Scenario,
    calls: usize,
    concurrency: usize,
) -> (Usd, Usd, Usd, ballast_sim::Ledger) {
    let rt = ballast_sim::paused_runtime().unwrap();
    rt.block_on(async move {
        let flavor = scenario.flavor;
        let provider = provider_for(flavor);
        let sim = Simulator::new(scenario);
        let call_log = CostLogLayer::new(provider, Scope::Call);
        let attempt_log = CostLogLayer::new(provider, Scope::Attempt);
        let service = ServiceBuilder::new()
            .layer(call_log.clone())
            .layer(RetryLayer::new(RetryPolicy::builder().no_budget().build()))
            .layer(attempt_log.clone())
            .timeout(Duration::from_secs(90))
            .layer(ClassifyLayer::new(provider))
            .service(sim.clone());
        let ids: Vec<usize> = (0..calls).collect();
        for wave in ids.chunks(concurrency) {
            join_all(wave.iter().map(|i| {
                service
                    .clone()
                    .oneshot(request_in(flavor, *i, "grok-code-fast-1"))
            }))
            .await;
        }
        let attempts = attempt_log.daily_spend();
        (
            attempts.total().saturating_sub(attempts.worst_case()),
            attempts.worst_case(),
            call_log.daily_spend().total(),
            sim.ledger(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Over random flaky providers in every dialect, what the attempt logger counted from
    /// reported usage equals what the provider billed for the answers the client received,
    /// to the picodollar; with its worst-case charges (timeouts, answers that said nothing)
    /// it is no less than all the provider billed; the call logger, seeing only what the
    /// attempts told it, counts nothing twice.
    #[test]
    fn logged_cost_equals_what_the_ledger_billed(
        scenario in ballast_sim::strategy::flaky_scenario(),
        cached_share in 0.0..0.9f64,
        calls in 1usize..50,
        concurrency in 1usize..8,
    ) {
        let scenario = Scenario { cached_share, ..scenario };
        let (attempts, worst, call, ledger) = run(scenario, calls, concurrency);
        prop_assert_eq!(attempts, Usd::from_xai_ticks(ledger.delivered_usage_ticks()));
        prop_assert!(attempts + worst >= Usd::from_xai_ticks(ledger.billed_ticks()));
        prop_assert_eq!(call, Usd::ZERO, "the call logger left the counting to the attempts");
    }
}

#[tokio::test(start_paused = true)]
async fn the_health_monitor_sees_logical_calls() {
    let monitor = HealthMonitor::default();
    let sim = Simulator::new(Scenario::total_outage());
    let service = ServiceBuilder::new()
        .layer(CostLogLayer::new(Provider::XAi, Scope::Call).health(monitor.clone()))
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(sim);
    for i in 0..12 {
        let response = service
            .clone()
            .oneshot(request(i, "grok-code-fast-1"))
            .await
            .unwrap();
        assert!(!Outcome::from_response(&response).is_success());
    }
    let status = monitor.status();
    assert_eq!((status.calls, status.errors), (12, 12));
    assert!(status.error_rate_high && !status.is_healthy());
    // And in the model's own window.
    let model = monitor.status_of("grok-code-fast-1").unwrap();
    assert_eq!((model.calls, model.errors), (12, 12));
}

/// The attempt logger notes when the attempt leaves on the `Sent` cell it carries (for a
/// hedge above the local lines); the call logger does not.
#[tokio::test(start_paused = true)]
async fn the_attempt_logger_notes_when_the_attempt_leaves() {
    use ballast_classify::Sent;
    use tower::Layer;
    for (scope, noted) in [(Scope::Attempt, true), (Scope::Call, false)] {
        let sent = Sent::new();
        let mut request = request(1, "grok-code-fast-1");
        request.extensions_mut().insert(sent.clone());
        let service = CostLogLayer::new(Provider::XAi, scope).layer(tower::service_fn(
            |_: http::Request<String>| async {
                Ok::<_, ballast_classify::BoxError>(http::Response::new(String::new()))
            },
        ));
        let at = tokio::time::Instant::now();
        let _ = service.oneshot(request).await;
        assert_eq!(sent.at(), noted.then_some(at), "{scope:?}");
    }
}
