//! Usage extraction from a 2 KB response, and the cost logger's overhead with no `tracing`
//! subscriber and with one that formats every event (to a sink).
// criterion's macros define public, undocumented functions.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;

use ballast_benches::success_body_2kb;
use ballast_classify::{ClassifiedBody, ClassifyResponse, Provider, ResponseView};
use ballast_cost::{CostLogLayer, PriceTable, Scope, Usage};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, ServiceExt};

fn usage(c: &mut Criterion) {
    let body = success_body_2kb();
    let table = PriceTable::builtin();
    let mut group = c.benchmark_group("cost_usage");
    group.bench_function("usage_from_2kb_body", |b| {
        b.iter(|| black_box(Usage::from_body(black_box(&body))))
    });
    let classified = {
        let headers = http::HeaderMap::new();
        let view = ResponseView::new(http::StatusCode::OK, &headers, Some(&body));
        let span = Provider::XAi.classify(&view).usage;
        http::Response::new(ClassifiedBody::<()>::buffered(body.clone()).with_usage_span(span))
    };
    group.bench_function("usage_at_classifier_span", |b| {
        b.iter(|| black_box(Usage::of_response(black_box(&classified))))
    });
    group.bench_function("find_usage_object_only", |b| {
        b.iter(|| black_box(ballast_classify::json::top_level(black_box(&body), "usage")))
    });
    let prompt = {
        let turn = r#"{"role":"user","content":"Refactor this function so that it borrows instead of cloning, and explain why. "},"#;
        let turns = turn.repeat(32 * 1024 / turn.len());
        format!(
            r#"{{"model":"grok-code-fast-1","messages":[{}],"max_tokens":500}}"#,
            turns.trim_end_matches(',')
        )
    };
    let prompt = Bytes::from(prompt);
    // The one pass every request gets: model, stream, cap and prompt bound.
    group.bench_function("request_facts_of_32kb_prompt", |b| {
        b.iter(|| {
            black_box(ballast_classify::RequestFacts::read(
                "/v1/chat/completions",
                black_box(&prompt),
                &ballast_classify::HalfByteCount,
            ))
        })
    });
    group.bench_function("usage_and_price", |b| {
        b.iter(|| {
            let usage = Usage::from_body(black_box(&body)).unwrap_or_default();
            black_box(table.cost(Some("grok-code-fast-1"), &usage))
        })
    });
    group.finish();
}

fn logger(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let body = success_body_2kb();
    let bare = tower::service_fn(move |_request: http::Request<Bytes>| {
        let body = body.clone();
        async move { Ok::<_, Infallible>(http::Response::new(body)) }
    });
    let request = || {
        http::Request::new(Bytes::from_static(
            br#"{"model":"grok-code-fast-1","messages":[{"role":"user","content":"hi"}],"max_tokens":500}"#,
        ))
    };
    let logged = CostLogLayer::new(Provider::XAi, Scope::Attempt).layer(bare.clone());
    let mut group = c.benchmark_group("cost_logger");
    group.bench_function("bare_service", |b| {
        b.iter(|| runtime.block_on(bare.clone().oneshot(request())))
    });
    group.bench_function("logger_no_subscriber", |b| {
        b.iter(|| runtime.block_on(logged.clone().oneshot(request())))
    });
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("logger_fmt_subscriber", |b| {
            b.iter(|| runtime.block_on(logged.clone().oneshot(request())))
        });
    });
    group.finish();
}

criterion_group!(benches, usage, logger);
criterion_main!(benches);
