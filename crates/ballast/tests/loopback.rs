//! End to end over loopback HTTP: the whole stack over the default hyper-util client
//! (`https_client`, which also speaks plain HTTP) against the simulated provider served on
//! 127.0.0.1, one scenario per test. Real sockets need real time: the provider's clock runs
//! 60 times faster and the stack is time-scaled to match, so the assertions are about what
//! happened (every call answered, every delivered attempt counted, the budget kept, the
//! breaker opening), never about how long it took.

use std::time::Duration;

use ballast::{Config, Preset, StackBuilder};
use ballast_classify::{Outcome, OutcomeClass};
use ballast_cost::Usd;
use ballast_sim::{ExpectedKey, Hangs, Scenario, SimOutcome, SimServer, Simulator};
use futures::future::join_all;
use tower::ServiceExt;

const SCALE: f64 = 60.0;
const KEY: &str = "xai-loopback-test-key";

// Each test file uses its part of what they share (`check` or `check_real_time`).
#[allow(dead_code)]
mod common;

use common::{Run, check_real_time, job};

async fn run(scenario: Scenario, budget: &str, calls: usize, workers: usize) -> Run {
    let budget: Usd = budget.parse().unwrap();
    let sim = Simulator::new(Scenario {
        api_key: Some(ExpectedKey(KEY.into())),
        time_scale: SCALE,
        ..scenario
    });
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/v1", server.url());
    let config = Config::from_vars(Preset::XAi, |name| match name {
        "XAI_API_KEY" => Some(KEY.into()),
        "XAI_BASE_URL" => Some(base.clone()),
        "DAILY_BUDGET_USD" => Some(budget.to_string().trim_start_matches('$').to_owned()),
        _ => None,
    })
    .unwrap();
    let url = format!("{}/chat/completions", config.base_url);
    let stack = StackBuilder::new(config)
        .time_scale(SCALE)
        .build_https()
        .unwrap();
    let mut classes = Vec::new();
    let ids: Vec<usize> = (0..calls).collect();
    for wave in ids.chunks(workers) {
        let batch = wave
            .iter()
            .map(|i| stack.service.clone().oneshot(job(&url, *i, 50 + i % 200)));
        for result in join_all(batch).await {
            classes.push(Outcome::from_result(&result).class());
        }
        // The callers' pace: a wave per simulated second.
        tokio::time::sleep(Duration::from_secs(1).div_f64(SCALE)).await;
    }
    Run::new(classes, &sim.ledger(), &stack.spend, budget).with_breaker(&stack.breaker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_day_without_hangs() {
    // Hangs cut by the client's timeout may still be written to the socket and marked
    // delivered by the server: the count is checked where nothing hangs (a hedge's loser
    // may still be delivered after it was dropped: `check_real_time`).
    let scenario = Scenario {
        hangs: Hangs::NONE,
        ..Scenario::bad_day()
    };
    let run = run(scenario, "0.05", 120, 8).await;
    check_real_time(&run, 120);
    // Real time over real sockets moves the figure a little (the paused-clock test in
    // stack.rs pins its own: 231 of 240): measured 117 to 120 of 120 in five runs here. At
    // least 90% served, the issue-19 target (95%) less scheduling noise.
    let successes = run.classes.iter().filter(|c| c.is_success()).count();
    assert!(successes >= 108, "{successes} of 120: {:?}", run.classes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_day_with_hangs_never_counts_more_than_was_billed() {
    let run = run(Scenario::bad_day(), "0.05", 120, 8).await;
    assert_eq!(run.classes.len(), 120);
    assert!(run.billed <= run.budget);
    assert!(
        run.counted <= run.billed,
        "{} > {}",
        run.counted,
        run.billed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_budget_is_never_exceeded() {
    let run = run(Scenario::healthy(), "0.005", 120, 8).await;
    check_real_time(&run, 120);
    assert!(run.classes.contains(&OutcomeClass::BudgetExceeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_opens_the_breaker_and_recovery_closes_it() {
    let run = run(
        Scenario::outage_then_recovery(Duration::from_secs(5), Duration::from_secs(30)),
        "1",
        200,
        4,
    )
    .await;
    check_real_time(&run, 200);
    // Patient callers wait for the probe instead of seeing the open breaker: it opened,
    // and no caller was refused, as the 5-minute deadline outlasts the 25 s outage.
    assert!(run.breaker_opened >= 1, "opened");
    assert!(
        !run.classes.contains(&OutcomeClass::CircuitOpen),
        "{:?}",
        run.classes
    );
    assert!(run.classes.last().unwrap().is_success(), "recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_rate_limits() {
    let run = run(Scenario::lying_rate_limits(), "1", 120, 8).await;
    check_real_time(&run, 120);
    assert!(run.classes.iter().any(|c| c.is_success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_refused_once_and_latches() {
    let sim = Simulator::new(Scenario {
        api_key: Some(ExpectedKey("xai-the-right-one".into())),
        time_scale: SCALE,
        ..Scenario::healthy()
    });
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/v1", server.url());
    let config = Config::from_vars(Preset::XAi, |name| match name {
        "XAI_API_KEY" => Some("xai-the-wrong-one".into()),
        "XAI_BASE_URL" => Some(base.clone()),
        _ => None,
    })
    .unwrap();
    let url = format!("{}/chat/completions", config.base_url);
    let stack = StackBuilder::new(config)
        .time_scale(SCALE)
        .build_https()
        .unwrap();
    let mut classes = Vec::new();
    for _ in 0..5 {
        let request = http::Request::post(&url)
            .body(String::from(
                r#"{"model":"grok-code-fast-1","max_tokens":10}"#,
            ))
            .unwrap();
        classes.push(Outcome::from_result(&stack.service.clone().oneshot(request).await).class());
    }
    assert_eq!(classes[0], OutcomeClass::Auth);
    assert!(
        classes[1..].iter().all(|c| *c == OutcomeClass::CircuitOpen),
        "{classes:?}"
    );
    assert_eq!(
        sim.ledger().count(SimOutcome::BadKey),
        1,
        "one call reached the provider"
    );
}
