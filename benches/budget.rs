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
    store_round_trip(
        c,
        "budget_memory/reserve_and_settle",
        &runtime,
        MemoryStore::new(),
    );
    let mut group = c.benchmark_group("budget_memory");
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

/// Reserve plus settle against one store, timed on `runtime`.
fn store_round_trip<St: SpendStore>(
    c: &mut Criterion,
    name: &str,
    runtime: &tokio::runtime::Runtime,
    store: St,
) {
    let window = BudgetWindow::daily().at(SystemTime::now());
    let limits = Limits {
        global: Usd::from_dollars(1_000_000),
        scope: None,
    };
    let amount: Usd = "0.001".parse().unwrap_or_default();
    c.bench_function(name, |b| {
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
}

fn shared_stores(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    if let Ok(store) = ballast_budget::SqliteStore::in_memory() {
        store_round_trip(
            c,
            "budget_sqlite/reserve_and_settle_in_memory",
            &runtime,
            store,
        );
    }
    let path = std::env::temp_dir().join(format!("ballast-bench-{}.db", std::process::id()));
    if let Ok(store) = ballast_budget::SqliteStore::open(&path) {
        store_round_trip(
            c,
            "budget_sqlite/reserve_and_settle_on_disk",
            &runtime,
            store,
        );
    }
    let _ = std::fs::remove_file(&path);
    // Redis: only where a redis-server binary is installed (CI installs it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0);
    let Ok(mut server) = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
    else {
        eprintln!("redis-server not installed: skipping the Redis store benchmark");
        return;
    };
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("redis://127.0.0.1:{port}/");
    if let Ok(store) = runtime.block_on(ballast_budget::RedisStore::connect(&url, "bench")) {
        store_round_trip(
            c,
            "budget_redis/reserve_and_settle_loopback",
            &runtime,
            store,
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}

criterion_group!(benches, memory, shared_stores);
criterion_main!(benches);
