//! What one retry decision costs: the policy's `decide`, and tower's `Policy::retry` with the
//! request and result it updates.
// criterion's macros define public, undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use ballast_classify::{BoxError, HintSource, Outcome, OutcomeClass, WaitHint};
use ballast_retry::RetryPolicy;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tower::retry::Policy;

fn decisions(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _guard = runtime.enter();
    let template = RetryPolicy::default();
    let success = Outcome::new(OutcomeClass::Success);
    let rate_limited = Outcome::new(OutcomeClass::RateLimited).with_wait_hint(Some(WaitHint::new(
        Duration::from_secs(12),
        HintSource::Message,
    )));

    let mut group = c.benchmark_group("retry_decide");
    group.bench_function("new_session", |b| b.iter(|| black_box(template.clone())));
    group.bench_function("success_deposits", |b| {
        b.iter_batched(
            || template.clone(),
            |mut policy| black_box(policy.decide(&success)),
            BatchSize::SmallInput,
        )
    });
    // Without a budget, so every iteration reaches the wait computation.
    let unbudgeted = RetryPolicy::builder().no_budget().build();
    group.bench_function("rate_limited_with_hint", |b| {
        b.iter_batched(
            || unbudgeted.clone(),
            |mut policy| black_box(policy.decide(&rate_limited)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("policy_retry_success", |b| {
        b.iter_batched(
            || {
                let mut response = http::Response::new(());
                response.extensions_mut().insert(success);
                (
                    template.clone(),
                    http::Request::new(()),
                    Ok::<_, BoxError>(response),
                )
            },
            |(mut policy, mut request, mut result)| {
                black_box(policy.retry(&mut request, &mut result).is_none())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
