//! The whole stack under callers that give up at any moment: before their turn, while the
//! provider works, while a retry sleeps. Money, turns and logs must all come out right.

use std::time::Duration;

use ballast::{Config, Preset, RouteBuilder, StackBuilder};
use ballast_cost::Usd;
use ballast_sim::{Flavor, Price, Scenario, Simulator};
use metrics_util::debugging::DebuggingRecorder;
use proptest::prelude::*;

// The job runners and the settled figures are shared; not every helper is used here.
#[allow(dead_code)]
mod common;

/// What one run came to.
#[derive(Debug)]
struct Outcome {
    settled: common::Settled,
    logged_calls: u64,
    calls: u64,
    /// The callers' tallies together, and the provider's calls.
    tallied: (usize, Usd),
    provider_calls: usize,
}

fn run(scenario: Scenario, budget: Usd, calls: &[(u64, Option<u64>)], hedge: bool) -> Outcome {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (billed, spent, counted, reserved, queued, tallied, provider_calls) =
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
                let tallies =
                    common::send_giving_up(&stack.service, calls, common::varied_job).await;
                // Spawned settlements land, hung requests end on the provider's side.
                tokio::time::sleep(Duration::from_secs(600)).await;
                let readout = stack.budget.readout(None).await.unwrap();
                let queued = common::queued(&stack);
                (
                    Usd::from_xai_ticks(sim.ledger().billed_ticks()),
                    readout.spent,
                    stack.spend.total(),
                    readout.reserved,
                    queued,
                    common::tallied(&tallies),
                    sim.ledger().len(),
                )
            })
        });
    let logged_calls = common::calls_logged(&snapshotter);
    Outcome {
        settled: common::Settled {
            billed,
            spent,
            counted,
            budget,
            reserved,
            queued,
        },
        logged_calls,
        calls: calls.len() as u64,
        tallied,
        provider_calls,
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
    /// each provider call, and its cost, is in exactly one caller's `CostTally`; with
    /// hedging on or off.
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
        out.settled.check()?;
        prop_assert_eq!(out.logged_calls, out.calls, "{:?}", out);
        prop_assert_eq!(out.tallied, (out.provider_calls, out.settled.counted), "{:?}", out);
    }
}

/// `calls` through a `RouteBuilder` route of two targets, the primary over `primary`, the
/// fallback (`grok-4-fast`) over `fallback` (or, `alongside`, the two sharing the load),
/// under one daily budget of `budget`.
fn run_route(
    primary: Scenario,
    fallback: Scenario,
    budget: Usd,
    calls: &[(u64, Option<u64>)],
    alongside: bool,
) -> (common::Settled, (usize, Usd), usize) {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let (primary, fallback) = (Simulator::new(primary), Simulator::new(fallback));
        let dollars = budget.to_string().trim_start_matches('$').to_owned();
        let vars = |name: &str| (name == "DAILY_BUDGET_USD").then(|| dollars.clone());
        let config = Config::from_vars(Preset::XAi, vars).unwrap();
        let mut second = config.clone();
        second.base_url = "http://fallback.invalid/v1".parse().unwrap();
        let (client, route) = common::two_providers(
            primary.clone(),
            (fallback.clone(), Flavor::XAi),
            config.clone(),
        );
        let route = if alongside {
            RouteBuilder::new(config).alongside(second, Some("grok-4-fast"))
        } else {
            route
        };
        let route = route.seed(7).build(client);
        let tallies = common::send_giving_up(&route.service, calls, common::varied_job).await;
        // Spawned settlements land, hung requests end on the providers' side.
        tokio::time::sleep(Duration::from_secs(600)).await;
        let stacks = || route.targets.iter().map(|(_, stack)| stack);
        let readout = route.targets[0].1.budget.readout(None).await.unwrap();
        let queued = stacks().map(common::queued).sum();
        let provider_calls = primary.ledger().len() + fallback.ledger().len();
        let settled = common::Settled {
            billed: Usd::from_xai_ticks(
                primary.ledger().billed_ticks() + fallback.ledger().billed_ticks(),
            ),
            spent: readout.spent,
            counted: stacks().map(|stack| stack.spend.total()).sum(),
            budget,
            reserved: readout.reserved,
            queued,
        };
        (settled, common::tallied(&tallies), provider_calls)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The same through a route of two flaky providers under one budget (hedging on, the
    /// facade's default), chained or alongside each other: a call dropped on the primary,
    /// between targets or on the fallback leaves nothing reserved or waiting; both providers' bills together stay
    /// within the budget and under what the budget holds spent, which the two targets'
    /// loggers counted; each provider call, on either target, and its cost, is in exactly
    /// one caller's `CostTally`.
    #[test]
    fn cancelled_routed_callers_never_cost_past_the_budget_or_leave_anything_held(
        primary in ballast_sim::strategy::flaky_scenario(),
        fallback in ballast_sim::strategy::flaky_scenario(),
        budget_micros in 100u64..3_000,
        calls in prop::collection::vec((0u64..30_000, prop::option::of(0u64..40_000)), 1..60),
        alongside in any::<bool>(),
    ) {
        let primary = Scenario { flavor: Flavor::XAi, ..primary };
        // The fallback is asked for grok-4-fast, and bills at its price.
        let fallback = Scenario { flavor: Flavor::XAi, price: Price::GROK_4_FAST, ..fallback };
        let budget = Usd::from_picos(budget_micros * 1_000_000);
        let (settled, tallied, provider_calls) = run_route(primary, fallback, budget, &calls, alongside);
        settled.check()?;
        prop_assert_eq!(tallied, (provider_calls, settled.counted), "{:?}", settled);
    }
}
