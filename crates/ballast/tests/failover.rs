//! Failover through two whole stacks, each over its own simulated provider: the primary
//! down for a minute, the fallback well; a prompt too long for the primary's window.

use std::time::Duration;

use ballast::budget::MemoryStore;
use ballast::classify::{Outcome, OutcomeClass, ReadRequestLayer};
use ballast::cost::Usd;
use ballast::route::{Failover, Served, Target};
use ballast::{Config, Preset, StackBuilder};
use ballast_sim::{Scenario, SimOutcome, Simulator};
use tower::{Layer, ServiceExt};

// Only the request builder is shared here.
#[allow(dead_code)]
mod common;

const BASE: &str = "http://sim.invalid/v1";

/// Who served each call, when it arrived, and the two providers' ledgers and the stacks'
/// counted spend.
struct Seen {
    served: Vec<(Duration, OutcomeClass, Option<String>, Option<String>)>,
    primary: ballast_sim::Ledger,
    fallback: ballast_sim::Ledger,
    primary_spend: Usd,
    fallback_spend: Usd,
    /// The route's one budget, as the shared store has it.
    budget_spent: Usd,
    budget_reserved: Usd,
}

/// `calls` (arrival, prompt) through a route of a primary over `primary` and a fallback on
/// `grok-4-fast` over `fallback`.
fn run(primary: Scenario, fallback: Scenario, calls: Vec<(Duration, String)>) -> Seen {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let (primary_sim, fallback_sim) = (Simulator::new(primary), Simulator::new(fallback));
        // One daily budget for the route: both stacks reserve from the same store.
        let store = std::sync::Arc::new(MemoryStore::new());
        let primary = StackBuilder::new(Config::new(Preset::XAi))
            .seed(1)
            .budget_store(std::sync::Arc::clone(&store))
            .build(primary_sim.clone());
        let fallback = StackBuilder::new(Config::new(Preset::XAi))
            .seed(2)
            .budget_store(store)
            .build(fallback_sim.clone());
        let route = ReadRequestLayer::new().layer(Failover::new([
            Target::new("primary", BASE.parse().unwrap(), primary.service.clone()),
            Target::new("fallback", BASE.parse().unwrap(), fallback.service.clone())
                .model("grok-4-fast"),
        ]));
        let tasks: Vec<_> = calls
            .into_iter()
            .map(|(at, prompt)| {
                let route = route.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(at).await;
                    let request = http::Request::post(format!("{BASE}/chat/completions"))
                        .header("authorization", "Bearer caller-key")
                        .body(format!(
                            r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"{prompt}"}}],"max_tokens":50}}"#
                        ))
                        .unwrap();
                    let result = route.oneshot(request).await;
                    let class = Outcome::from_result(&result).class();
                    let (target, model) = match &result {
                        Ok(response) => {
                            let served = Served::of(response);
                            (
                                served.map(|s| s.target.to_string()),
                                served.and_then(|s| s.model.as_ref().map(|m| m.to_string())),
                            )
                        }
                        Err(_) => (None, None),
                    };
                    (at, class, target, model)
                })
            })
            .collect();
        let mut served = Vec::new();
        for task in tasks {
            served.push(task.await.unwrap());
        }
        // Settlements land.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let budget = primary.budget.readout(None).await.unwrap();
        Seen {
            budget_spent: budget.spent,
            budget_reserved: budget.reserved,
            served,
            primary: primary_sim.ledger(),
            fallback: fallback_sim.ledger(),
            primary_spend: primary.spend.total(),
            fallback_spend: fallback.spend.total(),
        }
    })
}

/// The primary is down for the first minute; 40 plain callers arrive 2.5 s apart. Every one
/// is served: by the fallback while the primary's breaker is open, by the primary again
/// within 30 s of its recovery. Each provider bills what its stack counted, to the
/// picodollar, and the fallback was asked for its own model.
#[test]
fn a_primary_down_for_a_minute_is_covered_by_the_fallback() {
    let calls = (0..40)
        .map(|i| (Duration::from_millis(i * 2_500), format!("job {i}")))
        .collect();
    let seen = run(
        Scenario::outage_then_recovery(Duration::ZERO, Duration::from_secs(60)),
        Scenario::healthy(),
        calls,
    );
    let classes: Vec<_> = seen.served.iter().map(|s| s.1).collect();
    assert_eq!(classes, [OutcomeClass::Success; 40], "every call served");
    let by = |name: &str| {
        seen.served
            .iter()
            .filter(|s| s.2.as_deref() == Some(name))
            .count()
    };
    // Back on the primary within 30 s of its recovery.
    for (at, _, target, _) in &seen.served {
        if *at >= Duration::from_secs(90) {
            assert_eq!(target.as_deref(), Some("primary"), "at {at:?}");
        }
        if *at < Duration::from_secs(60) {
            assert_eq!(target.as_deref(), Some("fallback"), "at {at:?}");
        }
    }
    // Seeded, paused clock: exact. The first call after the recovery (62.5 s) was the
    // primary's probe, and it stayed there.
    assert_eq!((by("fallback"), by("primary")), (25, 15));
    assert_eq!(seen.served[25].0, Duration::from_millis(62_500));
    assert_eq!(seen.served[25].2.as_deref(), Some("primary"));
    // The fallback served its calls once each, on its own model; nothing of it failed.
    let fallback = seen.fallback.entries();
    assert_eq!(fallback.len(), by("fallback"));
    assert!(fallback.iter().all(|e| e.outcome == SimOutcome::Success));
    assert!(fallback.iter().all(|e| e.model == "grok-4-fast"));
    assert!(
        seen.served
            .iter()
            .filter(|s| s.2.as_deref() == Some("fallback"))
            .all(|s| s.3.as_deref() == Some("grok-4-fast"))
    );
    // The primary answered its successes, and failed only in the outage.
    let primary = seen.primary.entries();
    let primary_ok = primary
        .iter()
        .filter(|e| e.outcome == SimOutcome::Success)
        .count();
    assert_eq!(primary_ok, by("primary"));
    assert!(
        primary
            .iter()
            .all(|e| e.outcome == SimOutcome::Success || e.at < Duration::from_secs(60))
    );
    // 12 failed calls in the outage: the 5 that opened its breaker, then 7 probes (the
    // first call after each open time); nothing else was held on or sent to it.
    assert_eq!(primary.len(), 27);
    // Money: each stack counted exactly what its provider billed.
    assert_eq!(
        seen.primary_spend,
        Usd::from_xai_ticks(seen.primary.billed_ticks())
    );
    assert_eq!(
        seen.fallback_spend,
        Usd::from_xai_ticks(seen.fallback.billed_ticks())
    );
    assert!(seen.fallback_spend > Usd::ZERO);
    // The route's one budget holds both providers' bills, nothing left reserved.
    assert_eq!(
        seen.budget_spent,
        Usd::from_xai_ticks(seen.primary.billed_ticks() + seen.fallback.billed_ticks())
    );
    assert_eq!(seen.budget_reserved, Usd::ZERO);
}

/// A prompt too long for the primary's window: one attempt there, then the fallback, whose
/// window is larger. A prompt that fits stays on the primary.
#[test]
fn a_prompt_too_long_for_the_primary_goes_to_the_larger_window() {
    let long = "word ".repeat(400);
    let seen = run(
        Scenario {
            context_window: 200,
            ..Scenario::healthy()
        },
        Scenario::healthy(),
        vec![
            (Duration::ZERO, long),
            (Duration::from_secs(1), "short".to_owned()),
        ],
    );
    assert_eq!(seen.served[0].1, OutcomeClass::Success);
    assert_eq!(seen.served[0].2.as_deref(), Some("fallback"));
    assert_eq!(seen.served[1].2.as_deref(), Some("primary"));
    let primary: Vec<_> = seen.primary.entries().iter().map(|e| e.outcome).collect();
    assert_eq!(
        primary,
        [SimOutcome::ContextTooLong, SimOutcome::Success],
        "one attempt on the primary for the long prompt"
    );
    assert_eq!(seen.fallback.len(), 1);
}

/// The route from variables: `BALLAST_FALLBACKS` names an OpenAI-compatible fallback on its
/// own base URL and model; the primary is down for good. Every call is served by the
/// fallback, the caller's key reaching neither provider.
#[test]
fn a_route_from_the_environment_serves_from_its_fallback() {
    use ballast::RouteBuilder;
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let primary_sim = Simulator::new(Scenario::total_outage());
        let fallback_sim = Simulator::new(Scenario::healthy());
        // One client reaching both providers by host, as an HTTPS client would.
        let client = {
            let (primary, fallback) = (primary_sim.clone(), fallback_sim.clone());
            tower::service_fn(move |request: http::Request<ballast::classify::RequestBody>| {
                assert!(request.headers().get("authorization").is_none());
                let sim = match request.uri().host() {
                    Some("primary.invalid") => primary.clone(),
                    _ => fallback.clone(),
                };
                sim.oneshot(request)
            })
        };
        let vars = |name: &str| {
            match name {
                "XAI_BASE_URL" => Some("http://primary.invalid/v1"),
                "BALLAST_FALLBACKS" => Some("openai_compatible:grok-4-fast"),
                "LLM_BASE_URL" => Some("http://fallback.invalid/v1"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let builder = RouteBuilder::from_vars(Preset::XAi, vars).unwrap().seed(3);
        assert_eq!(builder.names(), ["xai", "openai_compatible"]);
        let route = builder.build(client);
        let mut served = Vec::new();
        for i in 0..10 {
            let request = http::Request::post("http://caller.invalid/v1/chat/completions")
                .header("authorization", "Bearer caller-key")
                .body(format!(
                    r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"job {i}"}}]}}"#
                ))
                .unwrap();
            let response = route.service.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
            served.push(Served::of(&response).unwrap().target.to_string());
        }
        assert_eq!(served, ["openai_compatible"; 10]);
        let fallback = fallback_sim.ledger();
        assert_eq!(fallback.len(), 10);
        assert!(fallback.entries().iter().all(|e| e.model == "grok-4-fast"));
        // The primary failed the 5 calls that opened its breaker, then the probes that fell
        // due while the first calls' retries waited (seeded, paused clock: exact); every
        // other call was refused there at once and went on.
        assert_eq!(primary_sim.ledger().len(), 8);
        assert!(
            primary_sim
                .ledger()
                .entries()
                .iter()
                .all(|e| e.status.is_some_and(|s| s >= 500))
        );
    });
}

/// The primary flaps: down 60 s, up 60 s, twice. 96 plain callers 2.5 s apart over the four
/// minutes: every one served, and each time the primary comes back the route is on it again
/// within 30 s.
#[test]
fn a_flapping_primary_is_covered_and_returned_to() {
    let outages = (0..2)
        .map(|i| ballast_sim::Outage {
            start: Duration::from_secs(120 * i),
            duration: Duration::from_secs(60),
        })
        .collect();
    let calls = (0..96)
        .map(|i| (Duration::from_millis(i * 2_500), format!("job {i}")))
        .collect();
    let seen = run(
        Scenario {
            outages,
            ..Scenario::healthy()
        },
        Scenario::healthy(),
        calls,
    );
    assert!(
        seen.served.iter().all(|s| s.1 == OutcomeClass::Success),
        "every call served"
    );
    for (at, _, target, _) in &seen.served {
        let into_cycle = at.as_secs() % 120;
        if into_cycle < 60 {
            assert_eq!(
                target.as_deref(),
                Some("fallback"),
                "at {at:?}: primary down"
            );
        } else if into_cycle >= 90 {
            assert_eq!(
                target.as_deref(),
                Some("primary"),
                "at {at:?}: back within 30 s"
            );
        }
    }
    assert!(
        seen.primary
            .entries()
            .iter()
            .all(|e| e.outcome == SimOutcome::Success || e.at.as_secs() % 120 < 60)
    );
    let fallback = seen
        .served
        .iter()
        .filter(|s| s.2.as_deref() == Some("fallback"))
        .count();
    // Seeded, paused clock: exact. The fallback took the calls of each outage, its last
    // second included (25), and after the second outage one more (182.5 s), the primary's
    // breaker still open from its last failed probe. The primary failed 12 calls in each
    // outage: the 5 that opened its breaker, then a probe every 7.5 s.
    assert_eq!(fallback, 51);
    assert_eq!(seen.primary.len(), 45 + 24);
}
