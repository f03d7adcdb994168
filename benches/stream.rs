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
use http_body_util::{BodyExt, StreamBody};
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

type Frames =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn body(events: &[Bytes]) -> Frames {
    let frames: Vec<_> = events.iter().cloned().map(|e| Ok(Frame::data(e))).collect();
    StreamBody::new(futures::stream::iter(frames))
}

fn response(events: &[Bytes]) -> http::Response<Frames> {
    let mut response = http::Response::new(body(events));
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
async fn raw(events: &[Bytes]) -> usize {
    let mut body = response(events).into_body();
    let mut n = 0;
    while let Some(Ok(frame)) = body.frame().await {
        n += frame.data_ref().map_or(0, Bytes::len);
    }
    n
}

/// Reads it through the classifier, watched.
async fn watched(events: &[Bytes]) -> usize {
    let events = events.to_vec();
    let service = ClassifyLayer::new(Provider::XAi).layer(tower::service_fn(
        move |_: http::Request<String>| {
            let response = response(&events);
            async move { Ok::<_, Infallible>(response) }
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
    // Allocations per event, each path once (the events prepared outside the region).
    for (name, watch) in [("raw", false), ("watched", true)] {
        let prepared = events.clone();
        let region = Region::new(GLOBAL);
        let bytes = runtime.block_on(async {
            if watch {
                watched(&prepared).await
            } else {
                raw(&prepared).await
            }
        });
        let stats = region.change();
        println!(
            "{name:>8}: {bytes} bytes, {:.2} allocations per event",
            stats.allocations as f64 / EVENTS as f64
        );
    }
    let mut group = c.benchmark_group("stream_1000_events");
    group.bench_function("raw", |b| b.iter(|| runtime.block_on(raw(&events))));
    group.bench_function("watched", |b| b.iter(|| runtime.block_on(watched(&events))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
