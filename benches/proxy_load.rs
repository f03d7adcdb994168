//! The gateway (`crates/ballast-gateway`) at load, against a loopback upstream that
//! answers a 2 KB chat completion at once: open-loop latency at fixed rates, straight at the
//! upstream and through the proxy, and the proxy's closed-loop throughput. The proxy runs as
//! its own process (the release example binary) with its throttle off.
//!
//! ```text
//! bash benches/proxy_load.sh                       # builds the proxy, then runs this
//! BALLAST_RATES=1000,2000 BALLAST_SECONDS=10 bash benches/proxy_load.sh
//! ```
//!
//! Open loop: request `i` is due at `start + i / rate`, sent then whatever the answers before
//! it did, and its latency counts from when it was due (so a stall shows in every request it
//! delays: no coordinated omission). The client, the upstream and the proxy share the
//! machine's cores; the "direct" row pays the same client and upstream costs, so the proxy's
//! added latency is the difference of the two rows.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ballast_benches::success_body_2kb;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

const BODY: &str = r#"{"model":"grok-code-fast-1","messages":[{"role":"user","content":"Refactor this"}],"max_tokens":500}"#;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The upstream: a 2 KB completion for every request, at once.
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let body = success_body_2kb();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let body = body.clone();
                        async move {
                            // Read the request, as a provider would.
                            let _ = request.into_body().collect().await;
                            let mut response = http::Response::new(Full::new(body));
                            response.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Starts the proxy binary in front of `upstream`, its throttle off; waits until it
/// accepts.
fn proxy(upstream: SocketAddr) -> (Child, SocketAddr) {
    ballast_benches::spawn_proxy(
        &format!("http://{upstream}/v1"),
        &[("BALLAST_THROTTLE", "off")],
    )
}

fn request(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One call; true when it was answered 200 with the whole body read.
async fn call(client: &HttpClient, url: &str) -> bool {
    match client.request(request(url)).await {
        Ok(response) => {
            let ok = response.status() == 200;
            ok && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

/// Latencies (from when each request was due) of `rate` requests a second for `seconds`.
async fn open_loop(
    client: &HttpClient,
    url: &str,
    rate: u64,
    seconds: u64,
) -> (Vec<Duration>, u64) {
    let total = rate * seconds;
    let failed = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(due).await;
        let (client, url, failed) = (client.clone(), url.to_owned(), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            if !call(&client, &url).await {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            due.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(latency) = task.await {
            latencies.push(latency);
        }
    }
    latencies.sort();
    (latencies, failed.load(Ordering::Relaxed))
}

/// Requests a second with `concurrency` callers one after another each, for `seconds`.
async fn closed_loop(client: &HttpClient, url: &str, concurrency: usize, seconds: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, done) = (client.clone(), url.to_owned(), Arc::clone(&done));
            tokio::spawn(async move {
                while Instant::now() < until {
                    if call(&client, &url).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    done.load(Ordering::Relaxed) as f64 / seconds as f64
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let rates: Vec<u64> = std::env::var("BALLAST_RATES")
        .unwrap_or_else(|_| "1000,2000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let seconds: u64 = std::env::var("BALLAST_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"));
    runtime.block_on(async move {
        let upstream = upstream().await;
        let (mut child, proxy) = proxy(upstream);
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4096)
            .build_http();
        let direct_url = format!("http://{upstream}/v1/chat/completions");
        let proxy_url = format!("http://{proxy}/v1/chat/completions");
        // Warm both paths (connections, the proxy's first model and metrics labels).
        for url in [&direct_url, &proxy_url] {
            let _ = open_loop(&client, url, 500, 2).await;
        }
        println!("open loop, {seconds} s per row, latency from when each request was due (ms):");
        println!(
            "{:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "rate", "path", "p50", "p99", "max", "failed", "rps"
        );
        for rate in &rates {
            let mut rows = Vec::new();
            for (name, url) in [("direct", &direct_url), ("proxy", &proxy_url)] {
                let started = Instant::now();
                let (latencies, failed) = open_loop(&client, url, *rate, seconds).await;
                let rps = latencies.len() as f64 / started.elapsed().as_secs_f64();
                let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
                let max = latencies.last().copied().unwrap_or_default();
                println!(
                    "{rate:>6} {name:>8} {:>8.3} {:>8.3} {:>8.3} {failed:>8} {rps:>8.0}",
                    ms(p50),
                    ms(p99),
                    ms(max)
                );
                rows.push((p50, p99));
            }
            let added = |i: usize| {
                let (direct, proxied) = (rows[0], rows[1]);
                let (a, b) = if i == 0 {
                    (direct.0, proxied.0)
                } else {
                    (direct.1, proxied.1)
                };
                ms(b) - ms(a)
            };
            println!(
                "{rate:>6} {:>8} {:>8.3} {:>8.3}",
                "added",
                added(0),
                added(1)
            );
        }
        println!("\nclosed loop, 64 callers, {seconds} s (requests per second):");
        for (name, url) in [("direct", &direct_url), ("proxy", &proxy_url)] {
            println!(
                "{name:>8} {:>10.0}",
                closed_loop(&client, url, 64, seconds).await
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    });
}
