//! What the end-to-end tests share: the request each call sends, one run's figures, and the
//! invariants every run keeps.

use ballast_classify::OutcomeClass;
use ballast_cost::Usd;
use ballast_sim::{Ledger, SimOutcome};
use tower::ServiceExt;

/// Job `i`: a short chat completion with an output cap of `cap`.
pub(crate) fn job(url: &str, i: usize, cap: usize) -> http::Request<String> {
    http::Request::post(url)
        .body(format!(
            r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"job {i}"}}],"max_tokens":{cap}}}"#
        ))
        .unwrap()
}

/// What one run came to.
pub(crate) struct Run {
    pub(crate) calls: usize,
    pub(crate) classes: Vec<OutcomeClass>,
    pub(crate) billed: Usd,
    pub(crate) delivered: Usd,
    /// What the attempt logger counted from reported usage, and at worst cases (attempts
    /// that may have been billed and said nothing: timeouts, 2xx answers without usage).
    pub(crate) counted: Usd,
    pub(crate) worst: Usd,
    pub(crate) budget: Usd,
    pub(crate) bad_keys: usize,
    /// Times the stack's breakers opened (set by the runs that read them).
    pub(crate) breaker_opened: u64,
}

impl Run {
    /// The run's figures: what the callers saw, what the provider's ledger says, what the
    /// stack counted.
    pub(crate) fn new(
        classes: Vec<OutcomeClass>,
        ledger: &Ledger,
        spend: &ballast_cost::DailySpend,
        budget: Usd,
    ) -> Self {
        Self {
            calls: classes.len(),
            classes,
            billed: Usd::from_xai_ticks(ledger.billed_ticks()),
            delivered: Usd::from_xai_ticks(ledger.delivered_usage_ticks()),
            counted: spend.total().saturating_sub(spend.worst_case()),
            worst: spend.worst_case(),
            budget,
            bad_keys: ledger.count(SimOutcome::BadKey),
            breaker_opened: 0,
        }
    }

    /// The run, with the times its breakers opened read from `handle`.
    pub(crate) fn with_breaker(mut self, handle: &ballast::breaker::BreakerHandle) -> Self {
        self.breaker_opened = handle.snapshot().iter().map(|key| key.opened_total).sum();
        self
    }
}

/// Every call answered with a known class, nothing billed past the budget, every billed and
/// delivered attempt counted from its usage, and the key on the wire as given.
pub(crate) fn check(run: &Run, calls: usize) {
    assert_eq!(
        run.counted, run.delivered,
        "every billed, delivered attempt with usage counted"
    );
    check_bounds(run, calls);
}

/// [`check`] for runs in real time over sockets: a hedge's loser (or an attempt its caller
/// dropped) may be written to the socket, and marked delivered by the provider, after the
/// stack let go of it, so its usage is never read. Such an attempt is settled at its worst
/// case instead: what was delivered and not counted from usage is within the worst cases.
pub(crate) fn check_real_time(run: &Run, calls: usize) {
    assert!(
        run.counted <= run.delivered,
        "counted {} over delivered {}",
        run.counted,
        run.delivered
    );
    assert!(
        run.delivered.saturating_sub(run.counted) <= run.worst,
        "delivered {} and counted {}: the difference is not within the worst cases {}",
        run.delivered,
        run.counted,
        run.worst
    );
    check_bounds(run, calls);
}

/// What [`check`] and [`check_real_time`] share: every call answered with a known class,
/// nothing billed past the budget, the bill within the count, the key clean on the wire.
fn check_bounds(run: &Run, calls: usize) {
    assert_eq!(run.calls, calls, "every call answered");
    assert!(
        !run.classes.contains(&OutcomeClass::Unknown),
        "{:?}",
        run.classes
    );
    assert!(
        run.billed <= run.budget,
        "billed {} over the budget {}",
        run.billed,
        run.budget
    );
    assert!(
        run.counted + run.worst >= run.billed,
        "the count ({} and {} at worst cases) is below the bill {}",
        run.counted,
        run.worst,
        run.billed
    );
    assert_eq!(run.bad_keys, 0, "the key went on the wire, clean");
}

/// The model a fallback speaking `flavor`'s API is asked for in [`two_providers`],
/// and the simulator's price for it (the price table's).
pub(crate) fn fallback_model(flavor: ballast_sim::Flavor) -> (&'static str, ballast_sim::Price) {
    use ballast_sim::{Flavor, Price};
    match flavor {
        // Claude Sonnet 4.5: $3 / $0.30 / $15 per million.
        Flavor::Anthropic => (
            "claude-sonnet-4-5",
            Price {
                input: 30_000,
                cached_input: 3_000,
                output: 150_000,
            },
        ),
        // Gemini 2.5 Flash: $0.30 / $0.075 / $2.50 per million.
        Flavor::Gemini => (
            "gemini-2.5-flash",
            Price {
                input: 3_000,
                cached_input: 750,
                output: 25_000,
            },
        ),
        _ => ("grok-4-fast", Price::GROK_4_FAST),
    }
}

/// A client that reaches `primary` at any host but `fallback.invalid`, and `fallback.0`
/// there (two simulators, or two simulators' `streaming()` services); and a route of two
/// targets configured by `config`: the primary, then the fallback at that host, speaking
/// `fallback.1`'s API (an OpenAI chat call is translated for Anthropic and Gemini) and
/// asked for its [`fallback_model`] (xAI's: `grok-4-fast`).
pub(crate) fn two_providers<S>(
    primary: S,
    fallback: (S, ballast_sim::Flavor),
    config: ballast::Config,
) -> (
    impl tower::Service<
        http::Request<ballast::classify::RequestBody>,
        Response = S::Response,
        Error = ballast::classify::BoxError,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static,
    ballast::RouteBuilder,
)
where
    S: tower::Service<
            http::Request<ballast::classify::RequestBody>,
            Error = ballast::classify::BoxError,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (fallback, flavor) = fallback;
    let client = tower::service_fn(
        move |request: http::Request<ballast::classify::RequestBody>| {
            let sim = match request.uri().host() {
                Some("fallback.invalid") => &fallback,
                _ => &primary,
            };
            sim.clone().oneshot(request)
        },
    );
    let mut second = config.clone();
    second.preset = preset_of(flavor);
    second.base_url = match flavor {
        ballast_sim::Flavor::Gemini => "http://fallback.invalid/v1beta",
        _ => "http://fallback.invalid/v1",
    }
    .parse()
    .unwrap();
    let model = fallback_model(flavor).0;
    let route = ballast::RouteBuilder::new(config).fallback(second, Some(model));
    (client, route)
}

/// The preset of the provider whose API `flavor` is.
pub(crate) fn preset_of(flavor: ballast_sim::Flavor) -> ballast::Preset {
    match flavor {
        ballast_sim::Flavor::Anthropic => ballast::Preset::Anthropic,
        ballast_sim::Flavor::Gemini => ballast::Preset::Gemini,
        ballast_sim::Flavor::OpenAi => ballast::Preset::OpenAi,
        _ => ballast::Preset::XAi,
    }
}

/// Job `i` of a property test's run: a chat completion whose cap varies with `i` (50 to
/// 449 tokens).
pub(crate) fn varied_job(i: usize) -> http::Request<String> {
    job("http://sim.invalid/v1/chat/completions", i, 50 + i % 400)
}

/// A service the property tests send their jobs through: the facade's stack or a route,
/// whose futures may go to a task of their own.
pub(crate) trait JobService<B>:
    tower::Service<
        http::Request<String>,
        Response = http::Response<B>,
        Error = ballast::classify::BoxError,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> JobService<B> for S where
    S: tower::Service<
            http::Request<String>,
            Response = http::Response<B>,
            Error = ballast::classify::BoxError,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

/// `calls` (arrival ms, then the ms after which the caller gives up, if it does) through
/// `service`, each at its time, job `i` being `job(i)` with a `CostTally` of its own
/// (returned, in call order); returns when every caller has its answer or gave up.
pub(crate) async fn send_giving_up<B: Send + 'static>(
    service: &impl JobService<B>,
    calls: &[(u64, Option<u64>)],
    job: impl Fn(usize) -> http::Request<String>,
) -> Vec<ballast_cost::CostTally> {
    let tallies: Vec<ballast_cost::CostTally> = calls.iter().map(|_| Default::default()).collect();
    spawn_jobs(service, calls.iter().map(|call| call.0), |i, service| {
        let cancel_ms = calls[i].1;
        let mut request = job(i);
        request.extensions_mut().insert(tallies[i].clone());
        async move {
            let call = service.oneshot(request);
            match cancel_ms {
                // The caller gives up after `ms`, wherever the call is.
                Some(ms) => {
                    drop(tokio::time::timeout(std::time::Duration::from_millis(ms), call).await)
                }
                None => drop(call.await),
            }
        }
    })
    .await;
    tallies
}

/// The callers' tallies together: (provider calls, cost).
pub(crate) fn tallied(tallies: &[ballast_cost::CostTally]) -> (usize, Usd) {
    (
        tallies.iter().map(|t| t.calls() as usize).sum(),
        tallies.iter().map(ballast_cost::CostTally::total).sum(),
    )
}

/// For each arrival (ms) in `arrivals`, call `i` on a task of its own, begun at its arrival:
/// `call(i, service)` with a clone of `service`; what each call came to, in order.
pub(crate) async fn spawn_jobs<S, T, F>(
    service: &S,
    arrivals: impl IntoIterator<Item = u64>,
    call: impl Fn(usize, S) -> F,
) -> Vec<T>
where
    S: Clone,
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = arrivals
        .into_iter()
        .enumerate()
        .map(|(i, at)| {
            let call = call(i, service.clone());
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(at)).await;
                call.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// Calls still waiting in a stack's throttle line or its breakers' lines.
pub(crate) fn queued<R, St>(stack: &ballast::Stack<R, St>) -> usize {
    stack.throttle.as_ref().map_or(0, |t| t.queued())
        + stack
            .breaker
            .snapshot()
            .iter()
            .map(|key| key.waiting as usize)
            .sum::<usize>()
}

/// Where the money and the lines stand after a run whose callers may have given up.
#[derive(Debug)]
pub(crate) struct Settled {
    /// What the providers billed.
    pub(crate) billed: Usd,
    /// What the budget holds spent, and what the attempt loggers counted.
    pub(crate) spent: Usd,
    pub(crate) counted: Usd,
    /// The daily budget.
    pub(crate) budget: Usd,
    /// Still reserved, and still waiting in a line.
    pub(crate) reserved: Usd,
    pub(crate) queued: usize,
}

impl Settled {
    /// The providers never billed past the budget (the simulator keeps to the output cap,
    /// so the documented overrun is zero); every billed attempt is charged, dropped ones at
    /// their worst case: the budget and the loggers agree, and neither is below the bill;
    /// nothing stays reserved or waiting.
    pub(crate) fn check(&self) -> Result<(), proptest::test_runner::TestCaseError> {
        proptest::prop_assert!(self.billed <= self.budget, "{self:?}");
        proptest::prop_assert!(self.billed <= self.spent, "{self:?}");
        proptest::prop_assert_eq!(self.counted, self.spent, "{:?}", self);
        proptest::prop_assert_eq!(self.reserved, Usd::ZERO, "{:?}", self);
        proptest::prop_assert_eq!(self.queued, 0, "{:?}", self);
        Ok(())
    }
}

/// The calls logged at call scope (`ballast_requests_total{scope="call"}`, every class) in
/// a debugging recorder's snapshot.
pub(crate) fn calls_logged(snapshotter: &metrics_util::debugging::Snapshotter) -> u64 {
    use metrics_util::MetricKind;
    use metrics_util::debugging::DebugValue;
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, _, _, _)| {
            key.kind() == MetricKind::Counter
                && key.key().name() == "ballast_requests_total"
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "scope" && l.value() == "call")
        })
        .map(|(_, _, _, value)| match value {
            DebugValue::Counter(n) => n,
            other => panic!("{other:?}"),
        })
        .sum()
}
