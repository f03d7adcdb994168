//! The cancellation faults of issue 17, measured: callers that give up while the provider
//! works, or while they wait for a throttle turn. In-process simulator, tokio's paused
//! clock: the figures are the same on every run and machine.
//!
//! ```text
//! cargo run --release --example faults
//! ```

use std::time::Duration;

use ballast::{Config, Preset, StackBuilder};
use ballast_cost::Usd;
use ballast_sim::{Scenario, Simulator};
use tower::ServiceExt;

fn job(i: usize) -> http::Request<String> {
    http::Request::post("http://sim.invalid/v1/chat/completions")
        .body(format!(
            r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"job {i}"}}],"max_tokens":300}}"#
        ))
        .unwrap()
}

fn config(budget: &str) -> Config {
    Config::from_vars(Preset::XAi, |name| {
        (name == "DAILY_BUDGET_USD").then(|| budget.to_owned())
    })
    .expect("a valid budget")
}

/// `calls` callers, one every `every`, each giving up `patience(i)` after it called.
async fn abandon(
    budget: &str,
    calls: usize,
    every: Duration,
    patience: impl Fn(usize) -> Duration,
) -> (Usd, Usd, Usd, usize) {
    let sim = Simulator::new(Scenario::healthy());
    let stack = StackBuilder::new(config(budget))
        .no_throttle()
        .seed(1)
        .build(sim.clone());
    let mut tasks = Vec::new();
    for i in 0..calls {
        let call = stack.service.clone().oneshot(job(i));
        let patience = patience(i);
        tasks.push(tokio::spawn(async move {
            tokio::time::timeout(patience, call).await.is_err()
        }));
        tokio::time::sleep(every).await;
    }
    let mut gave_up = 0;
    for task in tasks {
        gave_up += usize::from(task.await.unwrap_or(false));
    }
    tokio::time::sleep(Duration::from_secs(600)).await;
    let readout = stack.budget.readout(None).await.expect("memory store");
    (
        Usd::from_xai_ticks(sim.ledger().billed_ticks()),
        readout.spent,
        readout.reserved,
        gave_up,
    )
}

fn main() {
    let rt = ballast_sim::paused_runtime().expect("a runtime");
    rt.block_on(async {
        println!("1000 callers, one every 150 ms, each giving up 0.1-0.3 s in (provider healthy):");
        let (billed, charged, reserved, gave_up) = abandon("50", 1000, Duration::from_millis(150), |i| {
            Duration::from_millis(100 + (i as u64 * 37) % 200)
        })
        .await;
        println!(
            "  gave up {gave_up}; provider billed {billed}; budget charged {charged}; left reserved {reserved}"
        );

        println!("a $0.001 budget, callers giving up at 300 ms, 200 callers one every 50 ms:");
        let (billed, charged, reserved, gave_up) =
            abandon("0.001", 200, Duration::from_millis(50), |_| Duration::from_millis(300)).await;
        println!(
            "  gave up {gave_up}; provider billed {billed} (budget $0.001); budget charged {charged}; left reserved {reserved}"
        );

        println!("200 callers give up 50 ms into their wait for a throttle turn (480 rpm):");
        let sim = Simulator::new(Scenario::healthy());
        let stack = StackBuilder::new(config("50")).seed(1).build(sim.clone());
        let waits: Vec<_> = (0..200)
            .map(|i| {
                let call = stack.service.clone().oneshot(job(i));
                tokio::spawn(tokio::time::timeout(Duration::from_millis(50), call))
            })
            .collect();
        for wait in waits {
            let _ = wait.await;
        }
        let arrived = sim.now();
        let _ = stack.service.clone().oneshot(job(999)).await;
        let sent = sim.ledger().entries().last().map_or(arrived, |e| e.at);
        let queued = stack.throttle.as_ref().map_or(0, |t| t.queued());
        println!(
            "  the next real call waited {:?} for its turn; {queued} left in the line",
            sent.saturating_sub(arrived)
        );
    });
}
