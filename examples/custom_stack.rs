//! The whole Ballast stack, layer by layer, with `tower::ServiceBuilder` over hyper-util's
//! client, against the simulated provider on loopback.
//!
//! ```text
//! cargo run --release --example custom_stack
//! ```
//!
//! The order, outermost first (ARCHITECTURE.md says why): cost logger for the logical call,
//! retry, breaker, budget guard, cost logger for each attempt, per-attempt timeout,
//! classifier, HTTP client.

use std::sync::Arc;
use std::time::Duration;

use ballast_breaker::{BreakerConfig, BreakerLayer};
use ballast_budget::{BudgetConfig, BudgetLayer};
use ballast_classify::{Attempt, BoxError, ClassifyLayer, Outcome, Provider};
use ballast_cost::{CostLogLayer, HealthMonitor, Scope, Usd};
use ballast_retry::{Backoff, RetryLayer, RetryPolicy};
use ballast_sim::{BurstModel, Latency, LimitStep, Scenario, SimServer, Simulator};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A provider with a hidden 600/min limit (truthful hints) and 10% server errors, fast
    // enough that the example takes a few seconds of real time.
    let provider = SimServer::start(Simulator::new(Scenario {
        hidden_limit: vec![LimitStep::new(Duration::ZERO, 600)],
        server_errors: BurstModel {
            enter_bad: 0.0,
            leave_bad: 1.0,
            fail_when_good: 0.1,
            fail_when_bad: 0.1,
            step: None,
        },
        latency: Latency {
            base: Duration::from_millis(20),
            per_output_token: Duration::from_micros(100),
            error: Duration::from_millis(5),
        },
        ..Scenario::healthy()
    }))
    .await?;

    let health = HealthMonitor::default();
    let budget = BudgetLayer::new(BudgetConfig::daily("0.05".parse()?));
    let breaker = BreakerLayer::new(BreakerConfig::default());
    let retry = RetryPolicy::builder()
        // Short waits for the example; the defaults are seconds.
        .backoff(
            ballast_classify::OutcomeClass::RateLimited,
            Backoff::exponential(Duration::from_millis(200), Duration::from_secs(2)),
        )
        .backoff(
            ballast_classify::OutcomeClass::ServerError,
            Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1)),
        )
        .build();
    let client = Client::builder(TokioExecutor::new()).build_http::<String>();

    let service = ServiceBuilder::new()
        .layer(CostLogLayer::new(Provider::XAi, Scope::Call).health(health.clone()))
        .layer(RetryLayer::new(retry))
        .layer(breaker.clone())
        .layer(budget.clone())
        .layer(CostLogLayer::new(Provider::XAi, Scope::Attempt))
        .timeout(Duration::from_secs(90))
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(client);

    let url = Arc::new(format!("{}/v1/chat/completions", provider.url()));
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let service = service.clone();
        let url = Arc::clone(&url);
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                let body = format!(
                    r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"job {worker}-{n}"}}],"max_tokens":200}}"#
                );
                let request = http::Request::post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body)
                    .expect("a valid request");
                let result = service.clone().oneshot(request).await;
                let outcome = Outcome::from_result(&result);
                let attempts = result.as_ref().map_or(0, |r| Attempt::of_response(r).get());
                println!(
                    "worker {worker} job {n}: {} after {attempts} attempt(s)",
                    outcome.class()
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }

    let spend = budget.readout(None).await?;
    let billed = Usd::from_xai_ticks(provider.simulator().ledger().billed_ticks());
    println!(
        "\nbudget: spent {} of {}, {} reserved",
        spend.spent, spend.limit, spend.reserved
    );
    println!("provider billed: {billed}");
    println!("health: {}", health.status());
    for key in breaker.handle().snapshot() {
        if key.calls > 0 || key.trips > 0 {
            println!(
                "breaker {}: {} ({} calls in window)",
                key.key, key.state, key.calls
            );
        }
    }
    Ok(())
}
