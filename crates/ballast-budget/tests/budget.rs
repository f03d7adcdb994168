//! The budget guard under concurrency, cancellation, scopes, windows and failing stores.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use ballast_budget::{
    BudgetConfig, BudgetExceeded, BudgetLayer, BudgetScope, BudgetUnavailable, BudgetWindow,
    Limits, MemoryStore, Readout, Reservation, Reserve, SpendStore, StoreError, WindowId,
};
use ballast_classify::{
    ClassifiedError, ClassifyLayer, Outcome, OutcomeClass, Provider, RequestFacts,
};
use ballast_cost::Usd;
use ballast_sim::{Flavor, Scenario, Simulator};
use futures::future::join_all;
use proptest::prelude::*;
use tower::{Layer, ServiceBuilder, ServiceExt};

fn usd(s: &str) -> Usd {
    s.parse().unwrap()
}

/// Chat request `i`, with its facts read (as `ReadRequestLayer` would).
fn chat(i: usize) -> http::Request<String> {
    chat_in(Flavor::XAi, i)
}

/// Request `i` in `flavor`'s own API, with its facts read.
fn chat_in(flavor: Flavor, i: usize) -> http::Request<String> {
    let mut request = flavor.request(
        "grok-code-fast-1",
        50 + (i as u64 * 37) % 450,
        &format!("task {i}"),
    );
    RequestFacts::note(&mut request);
    request
}

/// What the guard reserves for `request` at grok-code-fast-1's prices ($0.20 in, $1.50 out
/// per million): its prompt bound in and its output cap out.
fn reservation(request: &http::Request<String>) -> Usd {
    let facts = RequestFacts::of(request);
    usd("0.20").per_million(facts.prompt_tokens())
        + usd("1.50").per_million(facts.output_cap().unwrap_or(500))
}

/// What `overrunning(factor)` bills for `request`: one prompt token, `factor` times the cap.
fn overrun_bill(request: &http::Request<String>, factor: u64) -> Usd {
    let cap = RequestFacts::of(request).output_cap().unwrap_or(500);
    usd("0.20").per_million(1) + usd("1.50").per_million(cap * factor)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Many concurrent callers against a flaky provider and a small budget: what the provider
    /// billed never exceeds the budget (usage always stays within the output cap here), and
    /// when everything has settled nothing is left reserved.
    /// Both ways through the guard: a store that answers at once (in memory) and one that
    /// is awaited.
    #[test]
    fn the_provider_never_bills_past_the_budget(
        scenario in ballast_sim::strategy::flaky_scenario(),
        budget_micros in 100u64..20_000,
        calls in 1usize..200,
        concurrency in 1usize..64,
        awaited in any::<bool>(),
    ) {
        let budget = Usd::from_picos(budget_micros * 1_000_000);
        let rt = ballast_sim::paused_runtime().unwrap();
        let sim = Simulator::new(Scenario { quota_ticks: None, ..scenario });
        let config = BudgetConfig::daily(budget);
        let (billed, readout, refused) = rt.block_on(async move {
            if awaited {
                bill(BudgetLayer::with_store(config, Flaky::default()), sim, calls, concurrency).await
            } else {
                bill(BudgetLayer::new(config), sim, calls, concurrency).await
            }
        });
        prop_assert!(billed <= budget, "billed {billed} over a budget of {budget} ({refused} refused)");
        prop_assert_eq!(readout.reserved, Usd::ZERO);
        prop_assert!(readout.spent <= budget);
    }
}

/// `calls` calls in waves of `concurrency`; what the provider billed, the budget's readout
/// once everything settled, and how many calls the guard refused.
async fn bill<St: SpendStore>(
    layer: BudgetLayer<St>,
    sim: Simulator,
    calls: usize,
    concurrency: usize,
) -> (Usd, Readout, usize) {
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .timeout(Duration::from_secs(90))
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(sim.clone());
    let mut refused = 0;
    let flavor = sim.scenario().flavor;
    let ids: Vec<usize> = (0..calls).collect();
    for wave in ids.chunks(concurrency) {
        for result in join_all(
            wave.iter()
                .map(|i| service.clone().oneshot(chat_in(flavor, *i))),
        )
        .await
        {
            if let Err(error) = result
                && Outcome::from_error(&*error).class() == OutcomeClass::BudgetExceeded
            {
                refused += 1;
            }
        }
    }
    // Let hung requests finish on the provider's side, and releases run.
    tokio::time::sleep(Duration::from_secs(600)).await;
    (
        Usd::from_xai_ticks(sim.ledger().billed_ticks()),
        layer.readout(None).await.unwrap(),
        refused,
    )
}

/// A provider that ignores the output cap: it bills `factor` times the cap.
fn overrunning(
    factor: u64,
) -> impl tower::Service<
    http::Request<String>,
    Response = http::Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |request: http::Request<String>| {
        let cap = RequestFacts::of(&request).output_cap().unwrap_or(500);
        async move {
            let body = format!(
                r#"{{"usage":{{"prompt_tokens":1,"completion_tokens":{}}}}}"#,
                cap * factor
            );
            Ok::<_, Infallible>(http::Response::new(body))
        }
    })
}

/// When usage overruns the cap, the overshoot is exactly bounded: spend never exceeds the
/// budget plus the sum of each call's overrun (actual minus reserved).
#[tokio::test]
async fn overrun_is_bounded_by_the_sum_of_overruns() {
    let budget = usd("0.01");
    let layer = BudgetLayer::new(BudgetConfig::daily(budget));
    let service = layer.layer(overrunning(3));
    let price = usd("1.50");
    let mut overruns = Usd::ZERO;
    let mut billed = Usd::ZERO;
    let mut granted = 0;
    for i in 0..40 {
        let request = chat(i);
        let cap = RequestFacts::of(&request).output_cap().unwrap();
        let bill = overrun_bill(&request, 3);
        if service.clone().oneshot(request).await.is_ok() {
            granted += 1;
            billed = billed + bill;
            // Billed 3x the cap's output; reserved the cap (plus the prompt bound).
            overruns = overruns + price.per_million(2 * cap);
        }
    }
    let spent = layer.readout(None).await.unwrap().spent;
    // Calls go until the spend (3x each reservation's output) passes the budget.
    assert!(granted >= 2, "{granted}");
    assert_eq!(spent, billed, "each call settled at what it was billed");
    assert!(spent > budget, "the provider overran, so did the spend");
    assert!(
        spent <= budget + overruns,
        "{spent} > {budget} + {overruns}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_after_it_was_sent_is_charged_its_reservation() {
    dropped_call_charged(BudgetLayer::new(BudgetConfig::daily(usd("1")))).await;
    let awaited = BudgetLayer::with_store(BudgetConfig::daily(usd("1")), Flaky::default());
    dropped_call_charged(awaited).await;
}

async fn dropped_call_charged<St: SpendStore>(layer: BudgetLayer<St>) {
    let slow = tower::service_fn(|_request: http::Request<String>| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Infallible>(http::Response::new(String::new()))
    });
    let service = layer.layer(slow);
    let mut call = Box::pin(service.clone().oneshot(chat(0)));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut call)
            .await
            .is_err()
    );
    let in_flight = layer.readout(None).await.unwrap();
    assert_eq!(in_flight.reserved, reservation(&chat(0)));
    // The caller gives up while the provider works on it: the provider may bill it.
    drop(call);
    tokio::task::yield_now().await;
    let readout = layer.readout(None).await.unwrap();
    assert_eq!(
        (readout.reserved, readout.spent),
        (Usd::ZERO, in_flight.reserved)
    );
}

fn ok_provider() -> impl tower::Service<
    http::Request<String>,
    Response = http::Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|_request: http::Request<String>| async {
        Ok::<_, Infallible>(http::Response::new(String::new()))
    })
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_while_the_store_reserves_leaves_nothing_reserved() {
    let store = Flaky {
        reserve_delay: Duration::from_millis(100),
        ..Flaky::default()
    };
    let layer = BudgetLayer::with_store(BudgetConfig::daily(usd("1")), store);
    let service = layer.layer(ok_provider());
    let abandoned =
        tokio::time::timeout(Duration::from_millis(50), service.clone().oneshot(chat(0))).await;
    assert!(abandoned.is_err());
    // The store grants the reservation after the caller left; nothing was sent.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let readout = layer.readout(None).await.unwrap();
    assert_eq!((readout.reserved, readout.spent), (Usd::ZERO, Usd::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_store_past_its_deadline_is_refused_at_the_deadline_not_waited_for() {
    let store = Flaky {
        reserve_delay: Duration::from_secs(25),
        ..Flaky::default()
    };
    let layer = BudgetLayer::with_store(BudgetConfig::daily(usd("1")), store);
    let service = layer.layer(ok_provider());
    let started = tokio::time::Instant::now();
    let error = service.clone().oneshot(chat(0)).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    let unavailable = std::error::Error::source(error.downcast_ref::<ClassifiedError>().unwrap())
        .unwrap()
        .downcast_ref::<BudgetUnavailable>()
        .expect("BudgetUnavailable, not BudgetExceeded");
    assert!(
        unavailable
            .to_string()
            .contains("did not answer within 250ms"),
        "{unavailable}"
    );
    // Failing open, the call goes through at the same deadline.
    let open = BudgetLayer::with_store(
        BudgetConfig::daily(usd("1"))
            .fail_open(true)
            .store_deadline(Duration::from_millis(40)),
        Flaky {
            reserve_delay: Duration::from_secs(25),
            ..Flaky::default()
        },
    );
    let started = tokio::time::Instant::now();
    open.layer(ok_provider()).oneshot(chat(0)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(40));
    // The late grants are released when they arrive: nothing stays reserved.
    tokio::time::sleep(Duration::from_secs(30)).await;
    for layer in [&layer, &open] {
        let readout = layer.readout(None).await.unwrap();
        assert_eq!((readout.reserved, readout.spent), (Usd::ZERO, Usd::ZERO));
    }
}

/// A caller that leaves while its settlement is with the store does not take the settlement
/// with it: it is sent again from a task, and lands once.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_while_it_settles_still_settles() {
    let store = Flaky {
        settle_delay: Duration::from_millis(100),
        ..Flaky::default()
    };
    let layer = BudgetLayer::with_store(BudgetConfig::daily(usd("1")), store);
    let provider = tower::service_fn(|_request: http::Request<String>| async {
        let body = String::from(r#"{"usage":{"prompt_tokens":1000,"completion_tokens":100}}"#);
        Ok::<_, Infallible>(http::Response::new(body))
    });
    let service = layer.layer(provider);
    // The answer comes at once; the caller leaves 50 ms into the 100 ms settlement.
    let left = tokio::time::timeout(Duration::from_millis(50), service.oneshot(chat(7))).await;
    assert!(left.is_err());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let readout = layer.readout(None).await.unwrap();
    // 1000 x $0.20 + 100 x $1.50, per million.
    assert_eq!(
        (readout.spent, readout.reserved),
        (usd("0.00035"), Usd::ZERO)
    );
    assert_eq!(layer.pending_settlements(), 0);
}

/// How each way an attempt can end is charged: the provider's error statuses and attempts
/// that provably never left release; anything the provider may have billed keeps the
/// reservation; usage gives the actual cost.
#[tokio::test(start_paused = true)]
async fn each_ending_is_charged_as_the_provider_may_have_billed_it() {
    type End = fn() -> Result<http::Response<String>, ballast_classify::BoxError>;
    fn status(code: u16, body: &str) -> Result<http::Response<String>, ballast_classify::BoxError> {
        Ok(http::Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .unwrap())
    }
    fn io(kind: std::io::ErrorKind) -> Result<http::Response<String>, ballast_classify::BoxError> {
        Err(Box::new(std::io::Error::from(kind)))
    }
    const USAGE: &str = r#"{"choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":100}}"#;
    // (what happened, how it ended, charged: None = the reservation, Some = that figure)
    let cases: [(&str, End, Option<Usd>); 9] = [
        (
            "200 with usage",
            || status(200, USAGE),
            Some(usd("0.00035")),
        ),
        ("200 without usage", || status(200, "{}"), None),
        (
            "200 with an error inside",
            || status(200, r#"{"error":{"message":"boom","type":"server_error"}}"#),
            None,
        ),
        (
            "200 not JSON",
            || status(200, r#"{"choices":[{"mess"#),
            None,
        ),
        ("503", || status(503, "{}"), Some(Usd::ZERO)),
        ("429", || status(429, "{}"), Some(Usd::ZERO)),
        (
            "connection refused",
            || io(std::io::ErrorKind::ConnectionRefused),
            Some(Usd::ZERO),
        ),
        (
            "connection reset",
            || io(std::io::ErrorKind::ConnectionReset),
            None,
        ),
        ("timed out", || io(std::io::ErrorKind::TimedOut), None),
    ];
    for (what, end, charged) in cases {
        let layer = BudgetLayer::new(BudgetConfig::daily(usd("1")));
        let provider =
            tower::service_fn(move |_request: http::Request<String>| async move { end() });
        let service = ServiceBuilder::new()
            .layer(layer.clone())
            .layer(ClassifyLayer::new(Provider::XAi))
            .service(provider);
        // The reservation of this request, seen by a provider that never answers.
        let probe = BudgetLayer::new(BudgetConfig::daily(usd("1")));
        let mut pending = Box::pin(
            probe
                .layer(tower::service_fn(|_r: http::Request<String>| {
                    std::future::pending::<Result<http::Response<String>, Infallible>>()
                }))
                .oneshot(chat(7)),
        );
        let _ = tokio::time::timeout(Duration::from_millis(1), &mut pending).await;
        let reservation = probe.readout(None).await.unwrap().reserved;
        let _ = service.oneshot(chat(7)).await;
        let readout = layer.readout(None).await.unwrap();
        assert_eq!(readout.reserved, Usd::ZERO, "{what}");
        assert_eq!(readout.spent, charged.unwrap_or(reservation), "{what}");
    }
}

#[tokio::test(start_paused = true)]
async fn failures_release_and_timeouts_keep_the_estimate() {
    let failing = tower::service_fn(|_request: http::Request<String>| async {
        Ok::<_, Infallible>(
            http::Response::builder()
                .status(503)
                .body(String::new())
                .unwrap(),
        )
    });
    let layer = BudgetLayer::new(BudgetConfig::daily(usd("1")));
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(failing);
    let response = service.oneshot(chat(0)).await.unwrap();
    assert_eq!(
        Outcome::from_response(&response).class(),
        OutcomeClass::ServerError
    );
    assert_eq!(
        layer.readout(None).await.unwrap().spent,
        Usd::ZERO,
        "a 503 is not billed"
    );

    let hanging = tower::service_fn(|_request: http::Request<String>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Infallible>(http::Response::new(String::new()))
    });
    let layer = BudgetLayer::new(BudgetConfig::daily(usd("1")));
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .timeout(Duration::from_secs(90))
        .service(hanging);
    assert!(service.oneshot(chat(0)).await.is_err());
    let readout = layer.readout(None).await.unwrap();
    assert_eq!(
        readout.spent,
        reservation(&chat(0)),
        "a timed-out call may have been billed: its estimate stays spent"
    );
    assert_eq!(readout.reserved, Usd::ZERO);
}

#[tokio::test]
async fn scopes_have_budgets_of_their_own() {
    let layer = BudgetLayer::new(
        BudgetConfig::daily(usd("1"))
            .per_scope(usd("0.002"))
            .scope_limit("big", usd("0.5")),
    );
    let service = layer.layer(overrunning(1));
    let scoped = |scope: &str, i| {
        let mut request = chat(i);
        request
            .extensions_mut()
            .insert(BudgetScope(Arc::from(scope)));
        request
    };
    // tenant-a's worst case (up to 500 tokens at $1.50 a million) is under $0.001: two fit.
    let mut a_refused = None;
    for i in 0..10 {
        if let Err(error) = service.clone().oneshot(scoped("tenant-a", 9)).await {
            a_refused = Some((i, error));
            break;
        }
    }
    let (i, error) = a_refused.expect("tenant-a hit its budget");
    assert!(i >= 2);
    let refusal = error
        .downcast_ref::<ClassifiedError>()
        .and_then(|e| std::error::Error::source(e))
        .and_then(|e| e.downcast_ref::<BudgetExceeded>())
        .unwrap();
    assert_eq!(refusal.scope.as_deref(), Some("tenant-a"));
    assert!(error.to_string().contains("budget of tenant-a"), "{error}");
    assert!(
        Outcome::from_error(&*error).wait_hint().is_some(),
        "says when it resets"
    );
    // Other scopes and unscoped calls go on.
    service
        .clone()
        .oneshot(scoped("tenant-b", 9))
        .await
        .unwrap();
    service.clone().oneshot(scoped("big", 9)).await.unwrap();
    service.clone().oneshot(chat(9)).await.unwrap();
    let a = layer.readout(Some("tenant-a")).await.unwrap();
    assert_eq!(a.limit, usd("0.002"));
    assert!(a.spent <= a.limit);
    let global = layer.readout(None).await.unwrap();
    assert!(global.spent >= a.spent);
}

#[tokio::test]
async fn windows_are_separate_accounts() {
    let store = MemoryStore::new();
    let window = BudgetWindow::daily();
    let today = window.at(SystemTime::now());
    let tomorrow = window.at(SystemTime::UNIX_EPOCH + Duration::from_secs(today.end));
    let limits = Limits {
        global: usd("1"),
        scope: None,
    };
    let full = store
        .reserve(
            today,
            &limits,
            usd("1"),
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert!(matches!(full, Reserve::Granted(_)));
    let refused = store
        .reserve(
            today,
            &limits,
            usd("0.000001"),
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert!(matches!(refused, Reserve::Refused { .. }));
    // At midnight the whole budget is back, exactly.
    let next = store
        .reserve(
            tomorrow,
            &limits,
            usd("1"),
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert!(matches!(next, Reserve::Granted(_)));
}

/// A store that fails its first `n` settlements, or everything, or takes `reserve_delay` to
/// reserve and `settle_delay` to settle (a Redis far away, or down); with `at_once`, it answers without being awaited,
/// as the memory store does.
#[derive(Default)]
struct Flaky {
    memory: MemoryStore,
    fail_reserve: bool,
    reserve_delay: Duration,
    settle_delay: Duration,
    settle_failures: AtomicU32,
    at_once: bool,
    /// Reservations answered at once.
    reserved_at_once: AtomicU32,
}

impl Flaky {
    fn settle_fails(&self) -> bool {
        let left = self.settle_failures.load(Ordering::SeqCst);
        if left > 0 {
            self.settle_failures.store(left - 1, Ordering::SeqCst);
        }
        left > 0
    }
}

impl SpendStore for Flaky {
    async fn reserve(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
        now: SystemTime,
    ) -> Result<Reserve, StoreError> {
        if !self.reserve_delay.is_zero() {
            tokio::time::sleep(self.reserve_delay).await;
        }
        if self.fail_reserve {
            return Err(StoreError::new("connection refused", None));
        }
        self.memory
            .reserve(window, limits, amount, lease, now)
            .await
    }

    async fn settle(&self, reservation: &Reservation, actual: Usd) -> Result<(), StoreError> {
        if !self.settle_delay.is_zero() {
            tokio::time::sleep(self.settle_delay).await;
        }
        if self.settle_fails() {
            return Err(StoreError::new("connection reset", None));
        }
        self.memory.settle(reservation, actual).await
    }

    fn reserve_now(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
        now: SystemTime,
    ) -> Option<Result<Reserve, StoreError>> {
        if !self.at_once {
            return None;
        }
        self.reserved_at_once.fetch_add(1, Ordering::SeqCst);
        if self.fail_reserve {
            return Some(Err(StoreError::new("connection refused", None)));
        }
        self.memory.reserve_now(window, limits, amount, lease, now)
    }

    fn settle_now(&self, reservation: &Reservation, actual: Usd) -> Option<Result<(), StoreError>> {
        if !self.at_once {
            return None;
        }
        if self.settle_fails() {
            return Some(Err(StoreError::new("connection reset", None)));
        }
        self.memory.settle_now(reservation, actual)
    }

    async fn readout(
        &self,
        window: WindowId,
        scope: Option<&str>,
        now: SystemTime,
    ) -> Result<Readout, StoreError> {
        self.memory.readout(window, scope, now).await
    }
}

#[tokio::test]
async fn a_failing_store_fails_closed_by_default_and_open_when_asked() {
    for at_once in [false, true] {
        let failing = || Flaky {
            fail_reserve: true,
            at_once,
            ..Flaky::default()
        };
        let layer = BudgetLayer::with_store(BudgetConfig::daily(usd("1")), failing());
        let error = layer
            .layer(overrunning(1))
            .oneshot(chat(0))
            .await
            .unwrap_err();
        assert!(
            std::error::Error::source(error.downcast_ref::<ClassifiedError>().unwrap())
                .unwrap()
                .is::<BudgetUnavailable>()
        );

        let config = BudgetConfig::daily(usd("1")).fail_open(true);
        let layer = BudgetLayer::with_store(config, failing());
        assert!(layer.layer(overrunning(1)).oneshot(chat(0)).await.is_ok());
    }
}

#[tokio::test]
async fn settlements_the_store_refuses_are_kept_and_retried() {
    // Awaited, and answering at once (the guard's other path): nothing is lost either way.
    for at_once in [false, true] {
        kept_and_retried(Flaky {
            settle_failures: AtomicU32::new(2),
            at_once,
            ..Flaky::default()
        })
        .await;
    }
}

async fn kept_and_retried(store: Flaky) {
    let at_once = store.at_once;
    let layer = BudgetLayer::with_store(BudgetConfig::daily(usd("1")), store);
    let service = layer.layer(overrunning(1));
    service.clone().oneshot(chat(0)).await.unwrap();
    assert_eq!(layer.pending_settlements(), 1);
    // The settlement the store refused is kept: the reservation stays held meanwhile.
    assert_eq!(
        layer.readout(None).await.unwrap().reserved,
        reservation(&chat(0))
    );
    layer.flush().await; // fails once more: still kept
    assert_eq!(layer.pending_settlements(), 1);
    // The next call flushes it, from a task of its own (no caller waits on a store that
    // may still be down).
    service.clone().oneshot(chat(1)).await.unwrap();
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert_eq!(layer.pending_settlements(), 0);
    let readout = layer.readout(None).await.unwrap();
    assert_eq!(readout.reserved, Usd::ZERO);
    // Each call settled at its bill: 1 prompt token and its cap's output.
    assert_eq!(
        readout.spent,
        overrun_bill(&chat(0), 1) + overrun_bill(&chat(1), 1)
    );
    // The first call went the way the store allows (the second, with a settlement kept,
    // is always awaited: it flushes first).
    let answered = layer.store().reserved_at_once.load(Ordering::SeqCst);
    assert_eq!(answered, u32::from(at_once));
}
