//! The main demo: a busy client against the simulated bad-day provider, over loopback HTTP,
//! with every response classified.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! No key and no network needed: the provider is `ballast-sim`'s bad day (a hidden rate
//! limit under the documented one, wrong wait hints, 5xx bursts, hangs, broken bodies),
//! served on 127.0.0.1 with simulated time running 60 times faster than real time. The
//! client is hyper-util's, with tower's per-attempt timeout and Ballast's classifier. There
//! is no retry yet: this shows what each attempt came to, which is what every later layer
//! decides on.
//!
//! Knobs (environment): `DEMO_REQUESTS` (default 400), `DEMO_WORKERS` (default 12).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ballast_classify::{BoxError, ClassifyLayer, Outcome, OutcomeClass, Provider};
use ballast_examples::percentile;
use ballast_sim::{Scenario, SimOutcome, SimServer, Simulator};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

/// Simulated seconds per real second.
const TIME_SCALE: f64 = 60.0;
/// The per-attempt timeout the story's team used: 90 s.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(90);
/// What each worker waits between requests, in simulated time.
const THINK_TIME: Duration = Duration::from_millis(500);

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().unwrap_or_else(|_| {
            eprintln!("{name}={value:?} is not a whole number; using {default}");
            default
        }),
        Err(_) => default,
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let requests = env_count("DEMO_REQUESTS", 400);
    let workers = env_count("DEMO_WORKERS", 12).max(1);

    let scenario = Scenario {
        time_scale: TIME_SCALE,
        ..Scenario::bad_day()
    };
    let simulator = Simulator::new(scenario);
    let server = SimServer::start(simulator.clone()).await?;
    let url: http::Uri = format!("{}/v1/chat/completions", server.url()).parse()?;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = ServiceBuilder::new()
        .timeout(simulator.real_duration(ATTEMPT_TIMEOUT))
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(client);

    println!(
        "Ballast demo: {requests} requests from {workers} workers to a simulated bad day at {} \
         (documents 480 requests/min, enforces 250; simulated time x{TIME_SCALE})\n",
        server.url()
    );
    println!("  sim time  request  class              status  latency  wait hint");

    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let service = service.clone();
        let simulator = simulator.clone();
        let next = Arc::clone(&next);
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return seen;
                }
                let body = format!(
                    r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"Refactor function {n}"}}],"max_tokens":{}}}"#,
                    100 + (n * 53) % 400
                );
                let request = http::Request::post(url.clone())
                    .header("content-type", "application/json")
                    .header("authorization", "Bearer xai-demo")
                    .body(Full::new(Bytes::from(body)))
                    .expect("a valid request");
                let started = simulator.now();
                let result = service.clone().oneshot(request).await;
                let latency = simulator.now().saturating_sub(started);
                let outcome = Outcome::from_result(&result);
                let status = outcome
                    .status()
                    .map_or_else(|| "-".to_owned(), |s| s.as_u16().to_string());
                let hint = outcome.wait_hint().map_or_else(String::new, |h| {
                    format!("{:.1}s ({})", h.delay().as_secs_f64(), h.source().as_str())
                });
                println!(
                    "  {:>7.1}s  #{n:<6}  {:<17}  {status:>6}  {:>6.1}s  {hint}",
                    started.as_secs_f64(),
                    outcome.class().as_str(),
                    latency.as_secs_f64(),
                );
                seen.push((outcome.class(), latency));
                tokio::time::sleep(simulator.real_duration(THINK_TIME)).await;
            }
        }));
    }

    let mut by_class: BTreeMap<OutcomeClass, usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    for task in tasks {
        for (class, latency) in task.await? {
            *by_class.entry(class).or_default() += 1;
            if class.is_success() {
                latencies.push(latency);
            }
        }
    }

    println!("\nWhat the client saw, by outcome class:\n");
    println!("  class              count   share  retryable  provider failure");
    for (class, count) in &by_class {
        println!(
            "  {:<17}  {count:>5}  {:>5.1}%  {:<9}  {}",
            class.as_str(),
            100.0 * *count as f64 / requests as f64,
            if class.is_retryable() { "yes" } else { "no" },
            if class.is_provider_failure() {
                "yes"
            } else {
                "no"
            },
        );
    }
    let p50 = percentile(&mut latencies, 0.50);
    let p95 = percentile(&mut latencies, 0.95);
    println!(
        "\n  successful latency (simulated): p50 {:.1}s, p95 {:.1}s",
        p50.as_secs_f64(),
        p95.as_secs_f64()
    );

    let ledger = simulator.ledger();
    println!("\nWhat the provider's ledger says:\n");
    for outcome in [
        SimOutcome::Success,
        SimOutcome::RateLimited,
        SimOutcome::ServerError,
        SimOutcome::Hung,
        SimOutcome::Malformed,
        SimOutcome::ErrorInOk,
    ] {
        println!(
            "  {:<13} {:>5}",
            format!("{outcome:?}"),
            ledger.count(outcome)
        );
    }
    let undelivered = ledger.entries().iter().filter(|e| !e.delivered).count();
    println!(
        "\n  {} requests received, ${:.4} billed, of which ${:.4} for answers the client never \
         got ({undelivered} abandoned after the {}s timeout).",
        ledger.len(),
        ledger.billed_usd(),
        (ledger.billed_ticks() - ledger.delivered_billed_ticks()) as f64
            / ballast_sim::TICKS_PER_USD as f64,
        ATTEMPT_TIMEOUT.as_secs(),
    );
    let rate_limited = by_class
        .get(&OutcomeClass::RateLimited)
        .copied()
        .unwrap_or(0);
    println!(
        "\n  {rate_limited} attempts were rate limited well below the documented 480/min, and their \
         hints were random. The retry and throttle layers exist for exactly this."
    );
    Ok(())
}
