//! The whole stack, patient by default, under random flaky providers and random deadlines:
//! every call ends within its deadline (an attempt's time limit is what is left of it, when
//! sooner: before, the last attempt could answer up to its 20-s limit late), every call is
//! answered once, the breaker's lines empty, and provider calls stay within the attempts allowed
//! and the breaker's probes.

use std::time::Duration;

use ballast::classify::{Deadline, Outcome, OutcomeClass};
use ballast::{Config, Preset, StackBuilder};
use ballast_sim::{Flavor, Scenario, Simulator};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::ServiceExt;

// Only the request builder is shared here.
#[allow(dead_code)]
mod common;

#[derive(Debug)]
struct Seen {
    /// Per call: how far past its deadline it ended (zero when within), and its class.
    ends: Vec<(Duration, OutcomeClass)>,
    waiting: u32,
    provider_calls: usize,
    opened: u64,
}

/// `calls` (arrival ms, deadline s) through `service`, each at its time with its deadline:
/// per call, how far past its deadline it ended (zero when within), and its class.
async fn send<B: Send + 'static>(
    service: &impl common::JobService<B>,
    calls: &[(u64, u64)],
) -> Vec<(Duration, OutcomeClass)> {
    let arrivals = calls.iter().map(|call| call.0);
    common::spawn_jobs(service, arrivals, |i, service| {
        let deadline_s = calls[i].1;
        async move {
            let mut request = common::varied_job(i);
            let deadline = Deadline::after(Duration::from_secs(deadline_s));
            deadline.set_sooner(request.extensions_mut());
            let result = service.oneshot(request).await;
            let late = Instant::now().saturating_duration_since(deadline.instant());
            (late, Outcome::from_result(&result).class())
        }
    })
    .await
}

/// `calls`: (arrival ms, deadline s) per call.
fn run(scenario: Scenario, calls: &[(u64, u64)]) -> Seen {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(scenario);
        let config = Config::from_vars(Preset::XAi, |name| match name {
            "REQUEST_TIMEOUT" => Some("20".to_owned()),
            _ => None,
        })
        .unwrap();
        let stack = StackBuilder::new(config).seed(11).build(sim.clone());
        let ends = send(&stack.service, calls).await;
        Seen {
            ends,
            waiting: stack.breaker.snapshot().iter().map(|key| key.waiting).sum(),
            provider_calls: sim.ledger().len(),
            opened: stack
                .breaker
                .snapshot()
                .iter()
                .map(|key| key.opened_total)
                .sum(),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random flaky providers (limits, 5xx bursts, hangs, broken 200s), random arrivals and
    /// deadlines from 1 s to 10 min, with the facade's patience on.
    #[test]
    fn no_call_outlives_its_deadline(
        scenario in ballast_sim::strategy::flaky_scenario(),
        calls in prop::collection::vec((0u64..60_000, 1u64..600), 1..60),
    ) {
        let scenario = Scenario { flavor: Flavor::XAi, ..scenario };
        let seen = run(scenario, &calls);
        prop_assert_eq!(seen.ends.len(), calls.len(), "every call answered once");
        for (late, class) in &seen.ends {
            prop_assert!(late.is_zero(), "{late:?} past the deadline ({class}): {seen:?}");
            prop_assert!(*class != OutcomeClass::Unknown, "{seen:?}");
        }
        prop_assert_eq!(seen.waiting, 0, "the breaker's lines are empty");
        // The 3 attempts per call, plus the failed probes a waiting call sent again: at most
        // four per open time (a sudden episode's probes; a partial trip's, three; an
        // outage's, one), however many wait.
        prop_assert!(
            seen.provider_calls as u64 <= 3 * calls.len() as u64 + 4 * seen.opened,
            "{} provider calls for {} calls, {} trips", seen.provider_calls, calls.len(), seen.opened
        );
    }
}

/// `calls` (arrival ms, deadline s) through a route of two targets, each over its own
/// simulated provider (`primary` at any host but `fallback.invalid`, `fallback` there):
/// how far past its deadline each call ended, the provider calls of both, the breakers'
/// trips and waiting calls summed over both targets.
fn run_route(primary: Scenario, fallback: Scenario, calls: &[(u64, u64)]) -> Seen {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let (primary, fallback) = (Simulator::new(primary), Simulator::new(fallback));
        let vars = |name: &str| (name == "REQUEST_TIMEOUT").then(|| "20".to_owned());
        let config = Config::from_vars(Preset::XAi, vars).unwrap();
        let (client, route) =
            common::two_providers(primary.clone(), (fallback.clone(), Flavor::XAi), config);
        let route = route.seed(11).build(client);
        let ends = send(&route.service, calls).await;
        let keys = || route.targets.iter().flat_map(|(_, s)| s.breaker.snapshot());
        Seen {
            ends,
            waiting: keys().map(|key| key.waiting).sum(),
            provider_calls: primary.ledger().len() + fallback.ledger().len(),
            opened: keys().map(|key| key.opened_total).sum(),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The same through a route of two flaky providers (the fallback's whole stack after
    /// the primary's one attempt): failover starts no target past the deadline, as the
    /// retry starts no attempt past it.
    #[test]
    fn no_routed_call_outlives_its_deadline(
        primary in ballast_sim::strategy::flaky_scenario(),
        fallback in ballast_sim::strategy::flaky_scenario(),
        calls in prop::collection::vec((0u64..60_000, 1u64..600), 1..40),
    ) {
        let primary = Scenario { flavor: Flavor::XAi, ..primary };
        let fallback = Scenario { flavor: Flavor::XAi, ..fallback };
        let seen = run_route(primary, fallback, &calls);
        prop_assert_eq!(seen.ends.len(), calls.len(), "every call answered once");
        for (late, class) in &seen.ends {
            prop_assert!(late.is_zero(), "{late:?} past the deadline ({class}): {seen:?}");
            prop_assert!(*class != OutcomeClass::Unknown, "{seen:?}");
        }
        prop_assert_eq!(seen.waiting, 0, "the breakers' lines are empty");
        // One attempt on the primary and three on the fallback per call, plus the failed
        // probes of either's waiting calls, four per open time.
        prop_assert!(
            seen.provider_calls as u64 <= 4 * calls.len() as u64 + 4 * seen.opened,
            "{} provider calls for {} calls, {} trips", seen.provider_calls, calls.len(), seen.opened
        );
    }
}

/// A provider down for a minute, then well; 40 plain callers (no retries of their own)
/// arriving over the outage with the facade's 5-minute deadline: none is sent away by the
/// open breaker, and the provider sees only the failures that opened it, its probes and
/// one call per caller once it is back.
#[test]
fn plain_callers_outwait_a_one_minute_outage() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sim = Simulator::new(Scenario::outage_then_recovery(
            Duration::ZERO,
            Duration::from_secs(60),
        ));
        let config = Config::new(Preset::XAi);
        let stack = StackBuilder::new(config).seed(3).build(sim.clone());
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let service = stack.service.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(i * 1_500)).await;
                    let request =
                        common::job("http://sim.invalid/v1/chat/completions", i as usize, 50);
                    Outcome::from_result(&service.oneshot(request).await).class()
                })
            })
            .collect();
        let mut classes = Vec::new();
        for task in tasks {
            classes.push(task.await.unwrap());
        }
        let served = classes.iter().filter(|c| c.is_success()).count();
        // No caller was sent away by the open breaker, and every one was served: a failed
        // probe sends its caller back in line (up to `Patience::max_probes`, 4, times per
        // attempt), and none ran out of attempts before the minute was over. (With the seed's
        // random streams before the read layer stopped cloning the stack, one caller was the
        // probe 4 times on each of its 3 attempts and got the provider's 500.)
        assert!(!classes.contains(&OutcomeClass::CircuitOpen), "{classes:?}");
        assert_eq!(served, 40, "{classes:?}");
        // 40 successes; 5 failures opened the breaker, 16 probes failed (one per open time of
        // 3 s and its jitter, each opening it again), the seventeenth closed it.
        assert_eq!(sim.ledger().len(), 61);
        let key = &stack.breaker.snapshot()[0];
        assert_eq!(key.opened_total, 17);
        assert_eq!(key.waiting, 0);
    });
}
