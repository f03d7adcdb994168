//! Callers served on the simulator's bad day, in real time over loopback: plain callers (no
//! retries of their own, a 5-minute deadline) through the gateway, side by side with an
//! OpenAI-SDK-like client straight at the provider (its defaults: 2 retries on 408, 409,
//! 429, 5xx and connection errors, backoff 0.5 s doubling to 8 s with up to 25% jitter off,
//! `retry-after` honoured up to 60 s, a 10-minute timeout).
//!
//! ```text
//! bash benches/proxy_bad_day.sh                           # 600 requests, 32 callers
//! BALLAST_REQUESTS=200 BALLAST_WORKERS=16 bash benches/proxy_bad_day.sh
//! ```
//!
//! Each row gets its own provider (`Scenario::bad_day`, same seed), so both start from the
//! same state; "upstream calls" is that provider's ledger: every request it received.
//! Issue #19's target: through the proxy, >= 95% of requests served within the deadline at
//! <= 1.3 upstream calls per success.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ballast_sim::{Scenario, SimServer, Simulator};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How a caller calls.
#[derive(Clone, Copy)]
enum Caller {
    /// Once, within a deadline.
    Plain { deadline: Duration },
    /// As the OpenAI SDK does by default.
    Sdk,
}

fn request(url: &str, i: usize) -> http::Request<Full<Bytes>> {
    let body = format!(
        r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"Refactor job {i}"}}],"max_tokens":300}}"#
    );
    http::Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer xai-loadtestloadtestloadtest")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One attempt: `Ok(status)` with the whole body read, or `Err` for a connection error or
/// a timeout; the provider's `retry-after` when it gave one; and for a failure, the error's
/// `type` when the body names one (a label for the report only: the first `"type":"..."`
/// in the body, read without a JSON parser).
async fn attempt(
    client: &HttpClient,
    url: &str,
    i: usize,
    timeout: Duration,
) -> (Result<u16, ()>, Option<Duration>, Option<String>) {
    let call = async {
        let response = client.request(request(url, i)).await.map_err(|_| ())?;
        let status = response.status().as_u16();
        let hint = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| *s > 0.0 && *s <= 60.0)
            .map(Duration::from_secs_f64);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| ())?
            .to_bytes();
        let error_type = (status != 200)
            .then(|| {
                let text = String::from_utf8_lossy(&body);
                let rest = &text[text.find("\"type\":\"")? + 8..];
                Some(rest[..rest.find('"')?].to_owned())
            })
            .flatten();
        Ok::<_, ()>((status, hint, error_type))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok((status, hint, error_type))) => (Ok(status), hint, error_type),
        _ => (Err(()), None, None),
    }
}

/// Call `i` the way `caller` calls: how it ended (`None`: served, a 200; else what the
/// caller got) and how long it took.
async fn serve(
    client: &HttpClient,
    url: &str,
    i: usize,
    caller: Caller,
) -> (Option<String>, Duration) {
    let started = Instant::now();
    match caller {
        Caller::Plain { deadline } => {
            let (result, _, error_type) = attempt(client, url, i, deadline).await;
            let failure = match result {
                Ok(200) => None,
                Ok(status) => Some(format!("{status} {}", error_type.as_deref().unwrap_or("-"))),
                Err(()) => Some("no answer".to_owned()),
            };
            (failure, started.elapsed())
        }
        Caller::Sdk => {
            let mut retries = 0u32;
            loop {
                let (result, hint, _) = attempt(client, url, i, Duration::from_secs(600)).await;
                let retryable = match result {
                    Ok(200) => return (None, started.elapsed()),
                    Ok(status) => matches!(status, 408 | 409 | 429) || status >= 500,
                    Err(()) => true,
                };
                if !retryable || retries == 2 {
                    let failure = result.map_or("no answer".to_owned(), |s| s.to_string());
                    return (Some(failure), started.elapsed());
                }
                let backoff = (0.5 * 2f64.powi(retries as i32)).min(8.0);
                // The SDK's jitter: up to a quarter off, here from the call's own numbers.
                let jitter = 1.0 - 0.25 * ((i * 7 + retries as usize * 13) % 100) as f64 / 100.0;
                let wait = hint.unwrap_or(Duration::from_secs_f64(backoff * jitter));
                tokio::time::sleep(wait).await;
                retries += 1;
            }
        }
    }
}

/// `requests` calls from `workers` callers, each taking the next call when its last one
/// ends: how many were served, every call's duration, and the failures by what they got.
async fn drive(
    url: &str,
    requests: usize,
    workers: usize,
    caller: Caller,
) -> (usize, Vec<Duration>, BTreeMap<String, usize>) {
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.to_owned(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return seen;
                    }
                    seen.push(serve(&client, &url, i, caller).await);
                }
            })
        })
        .collect();
    let mut served = 0;
    let mut durations = Vec::with_capacity(requests);
    let mut failures = BTreeMap::new();
    for task in tasks {
        for (failure, took) in task.await.unwrap_or_default() {
            match failure {
                None => served += 1,
                Some(failure) => *failures.entry(failure).or_insert(0) += 1,
            }
            durations.push(took);
        }
    }
    durations.sort();
    (served, durations, failures)
}

/// Starts the proxy binary in front of `upstream` with its defaults (the xAI preset's
/// throttle, a patient breaker, a 5-minute deadline); waits until it accepts.
fn proxy(upstream: &str) -> (Child, SocketAddr) {
    ballast_benches::spawn_proxy(&format!("{upstream}/v1"), &[("DAILY_BUDGET_USD", "1000")])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn main() {
    let requests = env_usize("BALLAST_REQUESTS", 600);
    let workers = env_usize("BALLAST_WORKERS", 32);
    let rows = std::env::var("BALLAST_ROWS").unwrap_or_else(|_| "sdk,proxy".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"));
    println!(
        "the simulator's bad day, real time, {requests} requests from {workers} callers:\n\
         {:<34} {:>8} {:>9} {:>14} {:>8} {:>8} {:>8}",
        "client", "served", "served %", "calls/success", "p50 s", "p95 s", "wall s"
    );
    runtime.block_on(async move {
        for row in rows.split(',').map(str::trim) {
            let server = SimServer::start(Simulator::new(Scenario::bad_day()))
                .await
                .unwrap_or_else(|e| panic!("the simulator: {e}"));
            let (name, child, url, caller) = match row {
                "sdk" => (
                    "SDK straight at the provider",
                    None,
                    format!("{}/v1/chat/completions", server.url()),
                    Caller::Sdk,
                ),
                _ => {
                    let (child, listen) = proxy(&server.url());
                    (
                        "plain, through the proxy",
                        Some(child),
                        format!("http://{listen}/v1/chat/completions"),
                        Caller::Plain {
                            deadline: Duration::from_secs(300),
                        },
                    )
                }
            };
            let started = Instant::now();
            let (served, durations, failures) = drive(&url, requests, workers, caller).await;
            let wall = started.elapsed();
            let calls = server.simulator().ledger().len();
            println!(
                "{name:<34} {served:>8} {:>8.1}% {:>14.2} {:>8.1} {:>8.1} {:>8.0}",
                100.0 * served as f64 / requests as f64,
                calls as f64 / served.max(1) as f64,
                percentile(&durations, 50.0).as_secs_f64(),
                percentile(&durations, 95.0).as_secs_f64(),
                wall.as_secs_f64()
            );
            if !failures.is_empty() {
                let listed: Vec<String> =
                    failures.iter().map(|(f, n)| format!("{f}: {n}")).collect();
                println!("{:<34} not served: {}", "", listed.join(", "));
            }
            if let Some(mut child) = child {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    });
}
