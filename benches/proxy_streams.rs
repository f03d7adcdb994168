//! The gateway serving many streams at once (#20): a loopback upstream streaming a chat
//! answer of 20 content events 50 ms apart (about 1 s), `BALLAST_STREAMS` (1,000) callers
//! starting together on warm connections, straight at the upstream and through the proxy.
//! Reported: time to
//! first byte of the body (p50 / p99) on each path and the difference, every stream read
//! whole, and the proxy's memory per open stream (its resident set at the peak, less before).
//!
//! ```text
//! bash benches/proxy_streams.sh
//! BALLAST_STREAMS=2000 bash benches/proxy_streams.sh
//! ```
#![allow(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const EVENTS: usize = 20;
const GAP: Duration = Duration::from_millis(50);

fn chunk(delta: &str, finish: &str) -> Bytes {
    Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"grok-code-fast-1\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
    ))
}

/// The upstream: every request answered with a stream at the pace above, usage included.
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let _ = request.into_body().collect().await;
                        let (send, receive) =
                            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                        tokio::spawn(async move {
                            let _ = send
                                .send(Ok(Frame::data(chunk(
                                    r#"{"role":"assistant","content":""}"#,
                                    "null",
                                ))))
                                .await;
                            for _ in 0..EVENTS {
                                tokio::time::sleep(GAP).await;
                                let _ = send
                                    .send(Ok(Frame::data(chunk(
                                        r#"{"content":"tok tok tok "}"#,
                                        "null",
                                    ))))
                                    .await;
                            }
                            let _ = send.send(Ok(Frame::data(chunk("{}", "\"stop\"")))).await;
                            let usage = Bytes::from_static(b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":60,\"total_tokens\":100}}\n\n");
                            let _ = send.send(Ok(Frame::data(usage))).await;
                            let _ = send
                                .send(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))))
                                .await;
                        });
                        let body =
                            StreamBody::new(futures::stream::unfold(receive, |mut r| async move {
                                r.recv().await.map(|item| (item, r))
                            }));
                        let mut response = http::Response::new(body);
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("text/event-stream"),
                        );
                        Ok::<_, Infallible>(response)
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

/// One streamed call: time to the first body byte, and whether it was read whole.
async fn stream_once(client: HttpClient, url: String) -> (Option<Duration>, bool) {
    let body = r#"{"model":"grok-code-fast-1","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = http::Request::post(&url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let Ok(response) = client.request(request).await else {
        return (None, false);
    };
    let mut body = response.into_body();
    let mut first = None;
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return (first, false);
        };
        if let Some(data) = frame.data_ref() {
            first.get_or_insert_with(|| started.elapsed());
            text.extend_from_slice(data);
        }
    }
    (first, text.ends_with(b"data: [DONE]\n\n"))
}

/// `n` streams started together; the times to first byte (sorted) and how many were whole.
async fn many(
    client: &HttpClient,
    url: &str,
    n: usize,
    pid: Option<u32>,
) -> (Vec<Duration>, usize, u64) {
    let tasks: Vec<_> = (0..n)
        .map(|_| tokio::spawn(stream_once(client.clone(), url.to_owned())))
        .collect();
    // The proxy's resident set while every stream is open.
    tokio::time::sleep(GAP * (EVENTS as u32) / 2).await;
    let peak = pid.map_or(0, rss_kib);
    let mut firsts = Vec::new();
    let mut whole = 0;
    for task in tasks {
        if let Ok((first, ok)) = task.await {
            firsts.extend(first);
            whole += usize::from(ok);
        }
    }
    firsts.sort();
    (firsts, whole, peak)
}

/// A process's resident set, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
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
    let n: usize = std::env::var("BALLAST_STREAMS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"));
    runtime.block_on(async move {
        let upstream = upstream().await;
        let (mut child, proxy) = ballast_benches::spawn_proxy(
            &format!("http://{upstream}/v1"),
            &[("BALLAST_THROTTLE", "off")],
        );
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(n)
            .build_http();
        let direct = format!("http://{upstream}/v1/chat/completions");
        let through = format!("http://{proxy}/v1/chat/completions");
        // Warm both paths and their connection pools with as many streams: a burst of new
        // connections overflows the listeners' backlogs (SYNs retried after 1 s), which
        // measures the kernel, not the proxy.
        let _ = many(&client, &direct, n, None).await;
        let _ = many(&client, &through, n, None).await;
        let idle = rss_kib(child.id());
        println!("{n} streams at once, {EVENTS} content events {} ms apart:", GAP.as_millis());
        println!("{:>8} {:>12} {:>12} {:>8}", "path", "ttfb p50 ms", "ttfb p99 ms", "whole");
        let mut rows = Vec::new();
        for (name, url, pid) in [("direct", &direct, None), ("proxy", &through, Some(child.id()))] {
            let (firsts, whole, peak) = many(&client, url, n, pid).await;
            let (p50, p99) = (percentile(&firsts, 50.0), percentile(&firsts, 99.0));
            println!("{name:>8} {:>12.2} {:>12.2} {whole:>8}", ms(p50), ms(p99));
            rows.push((p50, p99, peak));
        }
        println!(
            "{:>8} {:>12.2} {:>12.2}",
            "added",
            ms(rows[1].0) - ms(rows[0].0),
            ms(rows[1].1) - ms(rows[0].1)
        );
        let peak = rows[1].2;
        println!(
            "proxy resident set: {idle} KiB idle, {peak} KiB with {n} streams open: {:.1} KiB per stream",
            peak.saturating_sub(idle) as f64 / n as f64
        );
        let _ = child.kill();
        let _ = child.wait();
    });
}
