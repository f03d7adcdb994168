//! The stream path's cost per event (#20): a 1,000-event chat stream, one event per frame,
//! read to its end raw (the body as a client gets it with no middleware) and through the
//! classifier (held back to the first content, then each frame fed to the SSE parser, each
//! event read for content, usage and the end, the idle timer reset). Before the timings,
//! allocations per event of each path (a counting global allocator).
//!
//! ```text
//! cargo bench -p ballast-benches --bench stream
//! ```
// criterion's macros define public, undocumented functions.
#![allow(missing_docs)]

use std::alloc::System;
use std::convert::Infallible;

use ballast_classify::{ClassifyLayer, Provider};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body::Frame;
use http_body_util::BodyExt;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, ServiceExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const EVENTS: usize = 1_000;

/// A chat stream of `EVENTS` events: the role preamble, content chunks, the finish, usage
/// and `[DONE]`, each its own frame.
fn events() -> Vec<Bytes> {
    let chunk = |delta: &str, finish: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,\"model\":\"grok-code-fast-1\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        ))
    };
    let mut events = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    while events.len() < EVENTS - 3 {
        events.push(chunk(r#"{"content":"tok tok tok tok "}"#, "null"));
    }
    events.push(chunk("{}", "\"stop\""));
    events.push(Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":3992,\"total_tokens\":4032}}\n\n",
    ));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// The events as a body, one frame each; with `wait`, the body has nothing once before each
/// frame (it wakes itself at once), as a stream read off a socket does between events.
struct Frames {
    events: std::vec::IntoIter<Bytes>,
    wait: bool,
    waited: bool,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.wait && !self.waited {
            self.waited = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        self.waited = false;
        std::task::Poll::Ready(self.events.next().map(|e| Ok(Frame::data(e))))
    }
}

// The body owns its frames, as one read off a socket does.
#[allow(clippy::unnecessary_to_owned)]
fn response(events: &[Bytes], wait: bool) -> http::Response<Frames> {
    let mut response = http::Response::new(Frames {
        events: events.to_vec().into_iter(),
        wait,
        waited: false,
    });
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

fn request() -> http::Request<String> {
    http::Request::post("https://api.x.ai/v1/chat/completions")
        .body(r#"{"model":"grok-code-fast-1","stream":true}"#.to_owned())
        .unwrap_or_default()
}

/// Reads the raw stream to its end: the bytes a client gets with no middleware.
async fn raw(events: &[Bytes], wait: bool) -> usize {
    // A timer in the runtime's wheel, as a server always has (the stack's own timeouts,
    // hyper's): the driver's turn between waits then costs the same with and without the
    // watch, whose idle timer is its own cost.
    let timer = tokio::time::sleep(std::time::Duration::from_secs(3600));
    tokio::pin!(timer);
    let _ = futures::poll!(timer.as_mut());
    let mut body = response(events, wait).into_body();
    let mut n = 0;
    while let Some(Ok(frame)) = body.frame().await {
        n += frame.data_ref().map_or(0, Bytes::len);
    }
    n
}

/// Reads it through the classifier, watched.
async fn watched(events: &[Bytes], wait: bool) -> usize {
    // The body built as `raw` builds it (one reference count per event), moved in.
    let mut prepared = Some(response(events, wait));
    let service = ClassifyLayer::new(Provider::XAi).layer(tower::service_fn(
        move |_: http::Request<String>| {
            let response = prepared.take().ok_or("called twice");
            async move { response }
        },
    ));
    let Ok(response) = service.oneshot(request()).await else {
        return 0;
    };
    let mut body = response.into_body();
    let mut n = 0;
    while let Some(Ok(frame)) = body.frame().await {
        n += frame.data_ref().map_or(0, Bytes::len);
    }
    n
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"));
    let events = events();
    // Allocations per event, each path once (the events prepared outside the region,
    // each path run once before it: statics built on first use are not per event).
    for (name, watch) in [("raw", false), ("watched", true)] {
        runtime.block_on(async {
            if watch {
                watched(&events, false).await
            } else {
                raw(&events, false).await
            }
        });
        let prepared = events.clone();
        let region = Region::new(GLOBAL);
        let bytes = runtime.block_on(async {
            if watch {
                watched(&prepared, false).await
            } else {
                raw(&prepared, false).await
            }
        });
        let stats = region.change();
        println!(
            "{name:>8}: {bytes} bytes, {:.2} allocations per event",
            stats.allocations as f64 / EVENTS as f64
        );
    }
    let mut group = c.benchmark_group("stream_1000_events");
    for (name, wait) in [("", false), ("_waiting", true)] {
        group.bench_function(format!("raw{name}"), |b| {
            b.iter(|| runtime.block_on(raw(&events, wait)))
        });
        group.bench_function(format!("watched{name}"), |b| {
            b.iter(|| runtime.block_on(watched(&events, wait)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
