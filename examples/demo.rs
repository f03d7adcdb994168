//! The main demo: one workload through the whole Ballast stack, then through the story's
//! naive retry loop, then through Ballast with a second provider to fall back to
//! (`RouteBuilder`), side by side.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! With no `XAI_API_KEY`, no key and no network are needed: the provider is `ballast-sim`'s
//! bad day (a hidden rate limit under the documented 480/min, wrong wait hints, 5xx bursts,
//! hangs, broken bodies) served on 127.0.0.1 with simulated time running 60 times faster, and
//! the stack is time-scaled to match (`StackBuilder::time_scale`). Each pass gets a fresh
//! provider with the same seed, so all face the same day; the third pass also has a second,
//! healthy simulated provider behind the first, asked for `grok-4-fast`.
//!
//! With `XAI_API_KEY` set it talks to the real API (`XAI_BASE_URL`, `DAILY_BUDGET_USD`,
//! `MAX_TOKENS_DEFAULT`, `REQUEST_TIMEOUT` are read as the facade documents) with a small
//! workload, and spends real money: a few cents at the defaults.
//!
//! Knobs: `DEMO_REQUESTS` (1500 simulated, 10 live), `DEMO_WORKERS` (24 simulated, 2 live).
//! Flags that change the first pass (Ballast alone), to see what each part costs and buys:
//! `-- --no-hedge` (hedging off; on by default), `--no-breaker` (the breaker disabled),
//! `--no-throttle`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ballast::classify::{BoxError, ClassifyLayer, OutcomeClass, ReadRequestLayer, RequestBody};
use ballast::cost::{CostLogLayer, Scope, Usd};
use ballast::retry::{RetryLayer, RetryPolicy};
use ballast::{
    ChatClient, ChatError, ChatReply, Config, Preset, RouteBuilder, StackBuilder, StackService,
};
use ballast_examples::{WireCounts, percentile};
use ballast_sim::{Outage, Price, Scenario, SimServer, Simulator};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

/// The pass with a fallback: the same stack as the first pass, and a second (healthy)
/// simulated provider behind it.
const FALLBACK: &str = "with fallback";

/// What a pass sends its chats through: a stack, a route, or the naive loop.
type ChatService = BoxCloneSyncService<
    http::Request<String>,
    http::Response<ballast::classify::ClassifiedBody<hyper::body::Incoming>>,
    BoxError,
>;

/// Simulated seconds per real second against the simulated provider.
const TIME_SCALE: f64 = 60.0;
/// What each worker waits between its requests, in provider time.
const THINK_TIME: Duration = Duration::from_secs(1);
/// How long a job may keep going back on the queue (provider time).
const JOB_DEADLINE: Duration = Duration::from_secs(600);
/// When the simulated provider goes down, and for how long (provider time).
const OUTAGE: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(90));

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().unwrap_or_else(|_| {
            eprintln!("{name}={value:?} is not a whole number; using {default}");
            default
        }),
        Err(_) => default,
    }
}

/// Where the requests go: a fresh simulated provider per pass, or the real one.
enum Upstream {
    Simulated,
    Live,
}

/// What one pass came to.
struct Pass {
    name: &'static str,
    replies: Vec<(Duration, Result<ChatReply, ChatError>)>,
    wire: Arc<WireCounts>,
    trips: Option<u64>,
    requeued: usize,
    /// How long the pass took to finish every job, in provider time.
    took: Duration,
    spend: Usd,
    budget: Option<Usd>,
    /// What the simulated providers' ledgers billed, in US dollars (`None` when live).
    billed: Option<f64>,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let live = std::env::var_os("XAI_API_KEY").is_some();
    let upstream = if live {
        Upstream::Live
    } else {
        Upstream::Simulated
    };
    let requests = env_count("DEMO_REQUESTS", if live { 10 } else { 1500 });
    let workers = env_count("DEMO_WORKERS", if live { 2 } else { 24 }).max(1);
    let config = Config::from_env(Preset::XAi)?;
    match upstream {
        Upstream::Live => println!(
            "Ballast demo: {requests} requests from {workers} workers to {} (live, real money)\n",
            config.base_url
        ),
        Upstream::Simulated => println!(
            "Ballast demo: {requests} requests from {workers} workers to a simulated bad day over \
             loopback HTTP\n(documents 480 requests/min, enforces 250, lies in its hints, fails \
             in bursts, hangs; simulated time x{TIME_SCALE})\n"
        ),
    }
    let flags: Vec<String> = std::env::args()
        .filter(|arg| {
            matches!(
                arg.as_str(),
                "--no-hedge" | "--no-breaker" | "--no-throttle"
            )
        })
        .collect();
    if !flags.is_empty() {
        println!("first pass (ballast) run with {}\n", flags.join(" "));
    }

    let ballast = run(&upstream, &config, "ballast", requests, workers).await?;
    let naive = run(&upstream, &config, "naive retry", requests, workers).await?;
    let mut passes = vec![ballast, naive];
    // A second simulated provider to fall back to (against the real API there is none).
    if matches!(upstream, Upstream::Simulated) {
        passes.push(run(&upstream, &config, FALLBACK, requests, workers).await?);
    }
    summary(&passes, requests);
    Ok(())
}

/// Runs the workload once through the stack named `name`.
async fn run(
    upstream: &Upstream,
    config: &Config,
    name: &'static str,
    requests: usize,
    workers: usize,
) -> Result<Pass, BoxError> {
    let mut config = config.clone();
    let (scale, _server) = match upstream {
        Upstream::Live => (1.0, None),
        Upstream::Simulated => {
            let scenario = Scenario {
                time_scale: TIME_SCALE,
                outages: vec![Outage {
                    start: OUTAGE.0,
                    duration: OUTAGE.1,
                }],
                ..Scenario::bad_day()
            };
            let server = SimServer::start(Simulator::new(scenario)).await?;
            config.base_url = format!("{}/v1", server.url()).parse()?;
            (TIME_SCALE, Some(server))
        }
    };
    let wire = Arc::new(WireCounts::default());
    let client = WireCounts::wrap(&wire, ballast::https_client()?);

    // The fallback: a second simulated provider, well, at its own address.
    let _fallback_server = match name {
        FALLBACK => Some(
            SimServer::start(Simulator::new(Scenario {
                time_scale: TIME_SCALE,
                seed: 99,
                // Asked for grok-4-fast, it bills at grok-4-fast's price.
                price: Price::GROK_4_FAST,
                ..Scenario::healthy()
            }))
            .await?,
        ),
        _ => None,
    };
    let (service, breaker, spend): (ChatService, _, Vec<_>) = if name == "ballast" {
        let flag = |name: &str| std::env::args().any(|arg| arg == name);
        let mut builder = StackBuilder::new(config.clone()).time_scale(scale);
        if flag("--no-hedge") {
            builder = builder.no_hedge();
        }
        if flag("--no-throttle") {
            builder = builder.no_throttle();
        }
        let stack = builder.build(client);
        if flag("--no-breaker") {
            stack.breaker.disable();
        }
        (
            BoxCloneSyncService::new(stack.service),
            Some(stack.breaker),
            vec![stack.spend],
        )
    } else if let Some(fallback) = &_fallback_server {
        let mut second = config.clone();
        second.base_url = format!("{}/v1", fallback.url()).parse()?;
        let route = RouteBuilder::new(config.clone())
            .fallback(second, Some("grok-4-fast"))
            .time_scale(scale)
            .build(client);
        let spend = route.targets.iter().map(|(_, s)| s.spend.clone()).collect();
        let breaker = route.targets[0].1.breaker.clone();
        (
            BoxCloneSyncService::new(route.service),
            Some(breaker),
            spend,
        )
    } else {
        // The story's loop: per-attempt timeout, naive retry, nothing else; an attempt
        // logger only to count what it spends.
        let provider = config.preset.provider();
        let auth = config.api_key.as_ref().map(|key| key.header(provider));
        let attempt_log = CostLogLayer::new(provider, Scope::Attempt);
        let spend = attempt_log.daily_spend();
        let service: StackService<_> = tower::Layer::layer(
            &ReadRequestLayer::new(),
            BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .layer(RetryLayer::new(
                        RetryPolicy::naive_builder().time_scale(scale).build(),
                    ))
                    .layer(attempt_log)
                    .timeout(config.request_timeout.div_f64(scale))
                    .layer(ClassifyLayer::new(provider))
                    .map_request(move |mut request: http::Request<RequestBody>| {
                        if let Some((name, value)) = &auth {
                            request.headers_mut().insert(name.clone(), value.clone());
                        }
                        request
                    })
                    .service(tower::ServiceExt::map_err(client, BoxError::from)),
            ),
        );
        (BoxCloneSyncService::new(service), None, vec![spend])
    };
    let chat = ChatClient::new(service, &config, config.preset.default_model());

    let progress = ProgressBar::new(requests as u64).with_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    progress.set_prefix(name);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let requeued = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let began = Instant::now();
    for _ in 0..workers {
        let chat = chat.clone();
        let next = Arc::clone(&next);
        let failed = Arc::clone(&failed);
        let requeued = Arc::clone(&requeued);
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return replies;
                }
                // A job queue's worker: a job the stack gave up on for now goes back on
                // the queue after the wait the fallback names, until the job's deadline.
                let started = Instant::now();
                let reply = loop {
                    let reply = chat.chat(&prompt(n)).await;
                    let Err(error) = &reply else { break reply };
                    let class = error.outcome().class();
                    let again = class.is_retryable() || class == OutcomeClass::CircuitOpen;
                    if !again || started.elapsed().mul_f64(scale) > JOB_DEADLINE {
                        break reply;
                    }
                    requeued.fetch_add(1, Ordering::Relaxed);
                    // The provider's hints are in provider time; the breaker's come
                    // from its own scaled clock and are real time already.
                    let outcome = error.outcome();
                    let wait = match (error.fallback().retry_after, outcome.wait_hint()) {
                        (Some(wait), Some(hint)) if !hint.source().is_provider() => wait,
                        (wait, _) => wait.unwrap_or(Duration::from_secs(1)).div_f64(scale),
                    };
                    tokio::time::sleep(wait).await;
                };
                let latency = started.elapsed().mul_f64(scale);
                if reply.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                progress.inc(1);
                progress.set_message(format!("{} failed", failed.load(Ordering::Relaxed)));
                replies.push((latency, reply));
                tokio::time::sleep(THINK_TIME.div_f64(scale)).await;
            }
        }));
    }
    let mut replies = Vec::with_capacity(requests);
    for task in tasks {
        replies.extend(task.await?);
    }
    progress.finish();
    // The ground truth: what the providers billed, whatever the stack recorded.
    let billed = [&_server, &_fallback_server]
        .into_iter()
        .flatten()
        .map(|server| server.simulator().ledger().billed_usd())
        .reduce(|a, b| a + b);
    Ok(Pass {
        name,
        replies,
        wire,
        requeued: requeued.load(Ordering::Relaxed),
        took: began.elapsed().mul_f64(scale),
        trips: breaker.map(|b| b.snapshot().iter().map(|k| k.opened_total).sum()),
        spend: spend.iter().map(|s| s.total()).sum(),
        budget: (name != "naive retry").then_some(config.daily_budget),
        billed,
    })
}

/// A coding-assistant prompt of varying length.
fn prompt(n: usize) -> String {
    let context = "fn parse(input: &str) -> Result<Ast, Error> { todo!() }\n".repeat(1 + n % 7);
    format!("Review this code and suggest one fix (ticket {n}):\n{context}")
}

fn summary(passes: &[Pass], requests: usize) {
    let rows: Vec<(&str, Vec<String>)> = vec![
        (
            "requests",
            passes.iter().map(|_| requests.to_string()).collect(),
        ),
        (
            "succeeded",
            passes
                .iter()
                .map(|p| {
                    let ok = p.replies.iter().filter(|(_, r)| r.is_ok()).count();
                    format!("{ok} ({:.1}%)", 100.0 * ok as f64 / requests.max(1) as f64)
                })
                .collect(),
        ),
        (
            "jobs put back by workers",
            passes.iter().map(|p| p.requeued.to_string()).collect(),
        ),
        (
            "calls to the provider",
            passes.iter().map(|p| p.wire.calls().to_string()).collect(),
        ),
        (
            "retries (calls - jobs)",
            passes
                .iter()
                .map(|p| p.wire.calls().saturating_sub(requests as u64).to_string())
                .collect(),
        ),
        (
            "calls per job",
            passes
                .iter()
                .map(|p| format!("{:.2}", p.wire.calls() as f64 / requests.max(1) as f64))
                .collect(),
        ),
        (
            "429s received",
            passes
                .iter()
                .map(|p| p.wire.rate_limited().to_string())
                .collect(),
        ),
        (
            "5xx received",
            passes
                .iter()
                .map(|p| p.wire.server_errors().to_string())
                .collect(),
        ),
        (
            "breaker trips",
            passes
                .iter()
                .map(|p| p.trips.map_or("-".into(), |t| t.to_string()))
                .collect(),
        ),
        (
            "spend / budget",
            passes
                .iter()
                .map(|p| match p.budget {
                    Some(budget) => format!("${:.4} / {budget}", p.spend.as_f64()),
                    None => format!("${:.4} / none", p.spend.as_f64()),
                })
                .collect(),
        ),
        (
            "billed by the provider",
            passes
                .iter()
                .map(|p| p.billed.map_or("-".into(), |usd| format!("${usd:.4}")))
                .collect(),
        ),
        (
            "all jobs done after",
            passes
                .iter()
                .map(|p| format!("{:.0}s", p.took.as_secs_f64()))
                .collect(),
        ),
        (
            "latency mean",
            passes
                .iter()
                .map(|p| {
                    let total: Duration = p.replies.iter().map(|(l, _)| *l).sum();
                    let mean = total.as_secs_f64() / p.replies.len().max(1) as f64;
                    format!("{mean:.1}s")
                })
                .collect(),
        ),
        (
            "latency p50 / p95",
            passes
                .iter()
                .map(|p| {
                    let mut latencies: Vec<Duration> = p.replies.iter().map(|(l, _)| *l).collect();
                    format!(
                        "{:.1}s / {:.1}s",
                        percentile(&mut latencies, 0.50).as_secs_f64(),
                        percentile(&mut latencies, 0.95).as_secs_f64()
                    )
                })
                .collect(),
        ),
    ];
    println!();
    print!("  {:<22}", "");
    for pass in passes {
        print!("  {:>18}", pass.name);
    }
    println!();
    for (label, cells) in rows {
        print!("  {label:<22}");
        for cell in cells {
            print!("  {cell:>18}");
        }
        println!();
    }
    for pass in passes {
        let mut failures: BTreeMap<OutcomeClass, usize> = BTreeMap::new();
        for (_, reply) in &pass.replies {
            if let Err(error) = reply {
                *failures.entry(error.outcome().class()).or_default() += 1;
            }
        }
        let list: Vec<String> = failures
            .iter()
            .map(|(class, n)| format!("{class} {n}"))
            .collect();
        println!(
            "\n  {} failures by class: {}",
            pass.name,
            if list.is_empty() {
                "none".into()
            } else {
                list.join(", ")
            }
        );
    }
    println!(
        "\n  Each job is done when it succeeds or fails for good; a job the stack gives up on for \
         now (a retryable\n  failure, an open breaker) goes back on the queue after the wait the \
         fallback names, for up to {} min.\n  Latency is per job, in provider time.",
        JOB_DEADLINE.as_secs() / 60
    );
}
