//! What classification costs per response: the verdict alone, and the whole layer over a
//! ready in-process service.
// criterion's macros define public, undocumented functions.
#![allow(missing_docs)]

use std::convert::Infallible;

use ballast_benches::{rate_limited_body, response, success_body_2kb};
use ballast_classify::{ClassifyLayer, ClassifyResponse, Provider, ResponseView};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::Full;
use std::hint::black_box;
use tower::{Layer, ServiceExt};

fn verdicts(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify_verdict");
    for (name, status, body) in [
        ("success_2kb", 200, success_body_2kb()),
        ("rate_limited_xai", 429, rate_limited_body()),
    ] {
        let response = response(status, body);
        group.bench_function(name, |b| {
            b.iter(|| {
                let view = ResponseView::new(
                    response.status(),
                    response.headers(),
                    Some(black_box(response.body())),
                );
                black_box(Provider::XAi.classify(&view))
            })
        });
    }
    group.finish();
}

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let body = success_body_2kb();
    let bare = tower::service_fn(move |_req: http::Request<()>| {
        let body = body.clone();
        async move {
            let mut r = response(200, Bytes::new()).map(|_| Full::new(body));
            r.headers_mut().remove(http::header::CONTENT_TYPE);
            Ok::<_, Infallible>(r)
        }
    });
    let mut group = c.benchmark_group("classify_layer");
    group.bench_function("bare_service", |b| {
        b.iter(|| runtime.block_on(bare.clone().oneshot(http::Request::new(()))))
    });
    let classified = ClassifyLayer::new(Provider::XAi).layer(bare.clone());
    group.bench_function("with_classify_2kb_success", |b| {
        b.iter(|| runtime.block_on(classified.clone().oneshot(http::Request::new(()))))
    });
    group.finish();
}

criterion_group!(benches, verdicts, layer);
criterion_main!(benches);
