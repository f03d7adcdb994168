//! The breaker's cost per call on the closed path, at 1 and 2 worker threads with many
//! tasks sharing one key: the case a global lock would serialise.
// criterion's macros define public, undocumented functions.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::time::Duration;

use ballast_breaker::{BreakerConfig, BreakerLayer};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, Service, ServiceExt};

const TASKS: u64 = 64;

fn ok_service() -> impl Service<
    http::Request<String>,
    Response = http::Response<()>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|_request: http::Request<String>| async {
        Ok::<_, Infallible>(http::Response::new(()))
    })
}

fn request() -> http::Request<String> {
    http::Request::post("https://api.x.ai/v1/chat/completions")
        .body(String::from(
            r#"{"model":"grok-code-fast-1","max_tokens":500}"#,
        ))
        .unwrap_or_default()
}

/// Runs `iters` calls split over `TASKS` tasks on `threads` workers; returns the wall time.
fn run<S>(threads: usize, service: S, iters: u64) -> Duration
where
    S: Service<http::Request<String>, Response = http::Response<()>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    ballast_benches::run_tasks(threads, TASKS, iters, move || {
        let call = service.clone().oneshot(request());
        async move {
            let _ = call.await;
        }
    })
}

fn closed_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_closed");
    for threads in [1, 2] {
        group.bench_function(format!("bare_{threads}_threads"), |b| {
            b.iter_custom(|iters| run(threads, ok_service(), iters))
        });
        let layer = BreakerLayer::new(BreakerConfig::default());
        group.bench_function(format!("breaker_{threads}_threads"), |b| {
            b.iter_custom(|iters| run(threads, layer.layer(ok_service()), iters))
        });
    }
    group.finish();
}

criterion_group!(benches, closed_path);
criterion_main!(benches);
