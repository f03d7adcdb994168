//! The whole stack under callers that give up at any moment: before their turn, while the
//! provider works, while a retry sleeps. Money, turns and logs must all come out right.

use std::time::Duration;

use ballast::{Config, Preset, StackBuilder};
use ballast_cost::Usd;
use ballast_sim::{Flavor, Scenario, Simulator};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use proptest::prelude::*;
use tower::ServiceExt;

// Only the request builder is shared here; the run figures are the other tests'.
#[allow(dead_code)]
mod common;

/// What one run came to.
#[derive(Debug)]
struct Outcome {
    billed: Usd,
    /// What the budget holds spent, and what the attempt logger counted.
    spent: Usd,
    counted: Usd,
    budget: Usd,
    reserved: Usd,
    queued: usize,
    logged_calls: u64,
    calls: u64,
}

fn run(scenario: Scenario, budget: Usd, calls: &[(u64, Option<u64>)], hedge: bool) -> Outcome {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (billed, spent, counted, reserved, queued) =
        metrics::with_local_recorder(&recorder, || {
            ballast_sim::paused_runtime().unwrap().block_on(async {
                let sim = Simulator::new(scenario);
                let config = Config::from_vars(Preset::XAi, |name| match name {
                    "DAILY_BUDGET_USD" => {
                        Some(budget.to_string().trim_start_matches('$').to_owned())
                    }
                    _ => None,
                })
                .unwrap();
                let builder = StackBuilder::new(config).seed(7);
                // Hedging on: extra attempts, raced and dropped, under the same money rules.
                let builder = if hedge {
                    builder.hedge(ballast::route::HedgeConfig {
                        min_samples: 5,
                        max_share: 0.3,
                        ..ballast::route::HedgeConfig::default()
                    })
                } else {
                    builder
                };
                let stack = builder.build(sim.clone());
                let tasks: Vec<_> = calls
                    .iter()
                    .enumerate()
                    .map(|(i, &(start_ms, cancel_ms))| {
                        let service = stack.service.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(start_ms)).await;
                            let request = common::job(
                                "http://sim.invalid/v1/chat/completions",
                                i,
                                50 + i % 400,
                            );
                            let call = service.oneshot(request);
                            match cancel_ms {
                                // The caller gives up after `ms`, wherever the call is.
                                Some(ms) => {
                                    let _ =
                                        tokio::time::timeout(Duration::from_millis(ms), call).await;
                                }
                                None => {
                                    let _ = call.await;
                                }
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                // Spawned settlements land, hung requests end on the provider's side.
                tokio::time::sleep(Duration::from_secs(600)).await;
                let readout = stack.budget.readout(None).await.unwrap();
                let queued = stack.throttle.as_ref().map_or(0, |t| t.queued())
                    + stack
                        .breaker
                        .snapshot()
                        .iter()
                        .map(|key| key.waiting as usize)
                        .sum::<usize>();
                (
                    Usd::from_xai_ticks(sim.ledger().billed_ticks()),
                    readout.spent,
                    stack.spend.total(),
                    readout.reserved,
                    queued,
                )
            })
        });
    let logged_calls = snapshotter
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
        .sum();
    Outcome {
        billed,
        spent,
        counted,
        budget,
        reserved,
        queued,
        logged_calls,
        calls: calls.len() as u64,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random flaky providers (limits, 5xx bursts, hangs, broken and error-bearing 200s,
    /// all billed as a real provider would), random arrival times, and callers that drop
    /// their call after a random delay, from before its throttle turn to deep into the
    /// provider's work. The provider never bills past the budget (the simulator keeps to
    /// the output cap, so the documented overrun is zero); nothing stays reserved; the
    /// throttle's line and the breaker's (patience) are empty; every call is logged once;
    /// every billed attempt is charged, and the logger counts what the budget holds spent;
    /// with hedging on or off.
    #[test]
    fn cancelled_callers_never_cost_past_the_budget_or_leave_anything_held(
        scenario in ballast_sim::strategy::flaky_scenario(),
        budget_micros in 100u64..3_000,
        calls in prop::collection::vec((0u64..30_000, prop::option::of(0u64..40_000)), 1..80),
        hedge in any::<bool>(),
    ) {
        let scenario = Scenario { flavor: Flavor::XAi, ..scenario };
        let budget = Usd::from_picos(budget_micros * 1_000_000);
        let out = run(scenario, budget, &calls, hedge);
        prop_assert!(out.billed <= out.budget, "{out:?}");
        // Every billed attempt is charged and counted, dropped ones at their worst case:
        // the budget and the logger agree, and neither is below the bill.
        prop_assert!(out.billed <= out.spent, "{out:?}");
        prop_assert_eq!(out.counted, out.spent, "{:?}", out);
        prop_assert_eq!(out.reserved, Usd::ZERO, "{:?}", out);
        prop_assert_eq!(out.queued, 0, "{:?}", out);
        prop_assert_eq!(out.logged_calls, out.calls, "{:?}", out);
    }
}
