//! Reserve plus settle, per store: the store operations alone, and the whole guard over a
//! ready service.
// criterion's macros define public, undocumented functions.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use ballast_budget::{
    BudgetConfig, BudgetLayer, BudgetWindow, Limits, MemoryStore, Reserve, SpendStore,
};
use ballast_cost::Usd;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, ServiceExt};

fn memory(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let store = MemoryStore::new();
    let window = BudgetWindow::daily().at(SystemTime::now());
    let limits = Limits {
        global: Usd::from_dollars(1_000_000),
        scope: None,
    };
    let amount: Usd = "0.001".parse().unwrap_or_default();
    let mut group = c.benchmark_group("budget_memory");
    group.bench_function("reserve_and_settle", |b| {
        b.iter(|| {
            runtime.block_on(async {
                if let Ok(Reserve::Granted(reservation)) = store
                    .reserve(
                        window,
                        &limits,
                        amount,
                        Duration::from_secs(600),
                        SystemTime::now(),
                    )
                    .await
                {
                    let _ = store.settle(&reservation, amount).await;
                }
            })
        })
    });
    let provider = tower::service_fn(|_request: http::Request<String>| async {
        Ok::<_, Infallible>(http::Response::new(String::from(
            r#"{"usage":{"prompt_tokens":800,"completion_tokens":400}}"#,
        )))
    });
    let guarded =
        BudgetLayer::new(BudgetConfig::daily(Usd::from_dollars(1_000_000))).layer(provider);
    let request = || {
        http::Request::new(String::from(
            r#"{"model":"grok-code-fast-1","messages":[{"role":"user","content":"hi"}],"max_tokens":500}"#,
        ))
    };
    group.bench_function("bare_service", |b| {
        b.iter(|| runtime.block_on(provider.oneshot(request())))
    });
    group.bench_function("guarded_service", |b| {
        b.iter(|| runtime.block_on(guarded.clone().oneshot(request())))
    });
    group.finish();
}

criterion_group!(benches, memory);
criterion_main!(benches);
