//! Failover through two whole stacks, each over its own simulated provider: the primary
//! down for a minute, the fallback well; a prompt too long for the primary's window.

use std::time::Duration;

use ballast::budget::MemoryStore;
use ballast::classify::{Outcome, OutcomeClass, ReadRequestLayer};
use ballast::cost::Usd;
use ballast::route::{Failover, Served, Target};
use ballast::{Config, Preset, RouteBuilder, StackBuilder};
use ballast_sim::{Flavor, Scenario, SimOutcome, Simulator};
use tower::{Layer, ServiceExt};

// The request builder and the job runner are shared here.
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
    // 16 failed calls in the outage: the 5 that opened its breaker, then 11 probes (the
    // first call after each open time of 3 s and its jitter); nothing else was held on or
    // sent to it.
    assert_eq!(primary.len(), 31);
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
        // The primary failed the first 5 calls once each (one attempt there before the
        // fallback), which opened its breaker, then 2 probes as its open time ran out
        // (seeded, paused clock: exact); every other call was refused there at once and
        // went on.
        assert_eq!(primary_sim.ledger().len(), 7);
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
    // Seeded, paused clock: exact. The fallback took the 48 calls sent during the two
    // outages and one sent just after, the primary's breaker still open from its last
    // failed probe (it was 51: with a 5 s open time, two such calls more). Each outage starts right after successes, so the primary's breaker trips as for a
    // burst (`PartialTrip`: open 1.5 s, three probes, an outage's only after 40 failed
    // probes): every call of the outage after the 5 that opened it probes the primary
    // first (failing at once) and is served by the fallback, then an outage's probe each
    // 3 s: 21 failed calls an outage.
    assert_eq!(fallback, 49);
    // 89 calls on the primary, 42 of them failed. (85 with a 5 s open time; 86 when the
    // read layer cloned the stack below for every call: the retries' jitter streams are
    // numbered by policy clone.)
    assert_eq!(seen.primary.len(), 89);
    assert_eq!(
        seen.primary
            .entries()
            .iter()
            .filter(|e| e.outcome != SimOutcome::Success)
            .count(),
        42
    );
}

/// Claude Sonnet 4.5's prices in the simulator's ticks ($3 / $0.30 / $15 per million).
const CLAUDE_SONNET: ballast_sim::Price = ballast_sim::Price {
    input: 30_000,
    cached_input: 3_000,
    output: 150_000,
};

/// Gemini 2.5 Flash's ($0.30 / $0.075 / $2.50 per million).
const GEMINI_FLASH: ballast_sim::Price = ballast_sim::Price {
    input: 3_000,
    cached_input: 750,
    output: 25_000,
};

/// The route `BALLAST_FALLBACKS` names (`anthropic`, then `gemini:gemini-2.5-flash`)
/// behind an xAI primary, each target over its simulated provider in `sims` (xAI,
/// Anthropic, Gemini), streaming what is asked as a stream.
fn xai_anthropic_gemini(sims: &[Simulator; 3]) -> ballast::Route<ballast_sim::SimBody> {
    let client = {
        let sims = sims.clone();
        tower::service_fn(
            move |request: http::Request<ballast::classify::RequestBody>| {
                let sim = match request.uri().host() {
                    Some("anthropic.invalid") => &sims[1],
                    Some("gemini.invalid") => &sims[2],
                    _ => &sims[0],
                };
                sim.streaming().oneshot(request)
            },
        )
    };
    let vars = |name: &str| {
        match name {
            "XAI_BASE_URL" => Some("http://xai.invalid/v1"),
            "BALLAST_FALLBACKS" => Some("anthropic, gemini:gemini-2.5-flash"),
            "ANTHROPIC_BASE_URL" => Some("http://anthropic.invalid/v1"),
            "GEMINI_BASE_URL" => Some("http://gemini.invalid/v1beta"),
            _ => None,
        }
        .map(str::to_owned)
    };
    RouteBuilder::from_vars(Preset::XAi, vars)
        .unwrap()
        .seed(5)
        .build(client)
}

/// Simulators of xAI, Anthropic and Gemini in these scenarios, each speaking its own API
/// at its model's price.
fn three_providers(xai: Scenario, anthropic: Scenario, gemini: Scenario) -> [Simulator; 3] {
    [
        Simulator::new(xai),
        Simulator::new(Scenario {
            flavor: Flavor::Anthropic,
            price: CLAUDE_SONNET,
            ..anthropic
        }),
        Simulator::new(Scenario {
            flavor: Flavor::Gemini,
            price: GEMINI_FLASH,
            ..gemini
        }),
    ]
}

/// An agent's chat call offering the tool `look` (its schema closed to other arguments),
/// with `messages`, streamed or not.
fn agent_call(messages: serde_json::Value, stream: bool) -> http::Request<String> {
    let tools = serde_json::json!([{"type": "function", "function": {
        "name": "look", "description": "Looks a word up.",
        "parameters": {"type": "object", "properties": {"arg": {"type": "string"}},
                       "additionalProperties": false},
    }}]);
    http::Request::post("http://caller.invalid/v1/chat/completions")
        .body(
            serde_json::json!({
                "model": "grok-code-fast-1", "max_tokens": 60, "stream": stream,
                "tools": tools, "messages": messages,
            })
            .to_string(),
        )
        .unwrap()
}

/// A chat stream's first choice of each chunk (`[DONE]` left out).
fn stream_choices(text: &str) -> Vec<serde_json::Value> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str::<serde_json::Value>(data).unwrap()["choices"][0].clone())
        .collect()
}

/// What a route from xAI to Anthropic to Gemini did with `calls` chat requests.
struct Translated {
    /// Per call: status, the target that served it, the answer's JSON.
    answers: Vec<(u16, String, serde_json::Value)>,
    /// Per target (xai, anthropic, gemini): its ledger and its stack's counted spend.
    targets: Vec<(ballast_sim::Ledger, Usd)>,
}

/// `calls` OpenAI chat requests (with `extra` fields), one every 2 s, through the route that `BALLAST_FALLBACKS`
/// names (`anthropic`, then `gemini:gemini-2.5-flash`) behind an xAI primary; each target
/// over its own simulated provider speaking its own API.
fn through_translation(
    xai: Scenario,
    anthropic: Scenario,
    gemini: Scenario,
    calls: usize,
    extra: &str,
) -> Translated {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sims = three_providers(xai, anthropic, gemini);
        let route = xai_anthropic_gemini(&sims);
        let mut answers = Vec::new();
        for i in 0..calls {
            let request = http::Request::post("http://caller.invalid/v1/chat/completions")
                .body(format!(
                    r#"{{"model":"grok-code-fast-1","max_tokens":60{extra},"messages":[{{"role":"system","content":"Be brief."}},{{"role":"user","content":"job {i}"}}]}}"#
                ))
                .unwrap();
            let response = route.service.clone().oneshot(request).await.unwrap();
            let served = Served::of(&response).unwrap().target.to_string();
            let status = response.status().as_u16();
            let body = response.body().bytes().cloned().unwrap_or_default();
            let json = serde_json::from_slice(&body).unwrap_or_default();
            answers.push((status, served, json));
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        Translated {
            answers,
            targets: sims
                .iter()
                .zip(&route.targets)
                .map(|(sim, (_, stack))| (sim.ledger(), stack.spend.total()))
                .collect(),
        }
    })
}

/// An xAI primary down for good, Anthropic next: every OpenAI chat call is answered by
/// Claude, translated there and back (a chat completion naming the model that answered,
/// its usage what Anthropic billed), each provider's bill what its stack counted to the
/// picodollar, its thinking included. The calls set both `temperature` and `top_p`, as
/// many SDK configurations do, which recent Claude models (and the simulator) refuse
/// together.
#[test]
fn an_anthropic_fallback_answers_openai_callers_in_their_dialect() {
    let seen = through_translation(
        Scenario::total_outage(),
        Scenario {
            cached_share: 0.25,
            reasoning_share: 0.5,
            ..Scenario::healthy()
        },
        Scenario::healthy(),
        12,
        r#","temperature":0.7,"top_p":0.9"#,
    );
    let anthropic = seen.targets[1].0.entries();
    assert_eq!(anthropic.len(), 12, "each call once on Anthropic");
    for ((status, served, json), entry) in seen.answers.iter().zip(anthropic) {
        assert_eq!((*status, served.as_str()), (200, "anthropic"));
        assert_eq!(entry.model, "claude-sonnet-4-5");
        assert_eq!(json["object"], "chat.completion");
        assert_eq!(json["model"], "claude-sonnet-4-5");
        assert!(json["choices"][0]["message"]["content"].is_string());
        assert_eq!(json["usage"]["prompt_tokens"], entry.prompt_tokens);
        assert_eq!(
            json["usage"]["prompt_tokens_details"]["cached_tokens"],
            entry.cached_tokens
        );
        assert_eq!(json["usage"]["completion_tokens"], entry.completion_tokens);
    }
    assert!(anthropic.iter().any(|e| e.cached_tokens > 0));
    assert!(
        anthropic
            .iter()
            .all(|e| e.reasoning_tokens * 2 <= e.completion_tokens)
    );
    assert!(anthropic.iter().any(|e| e.reasoning_tokens > 0));
    // Gemini was never needed.
    assert_eq!(seen.targets[2].0.len(), 0);
    for (ledger, spend) in &seen.targets {
        assert_eq!(*spend, Usd::from_xai_ticks(ledger.billed_ticks()));
    }
    assert!(seen.targets[1].1 > Usd::ZERO);
    // The primary: the 5 failures that opened its breaker (the first five calls, one
    // attempt each before the fallback), then a probe when each open time ran out (seeded,
    // paused: exact).
    let primary = seen.targets[0].0.entries();
    assert!(primary.iter().all(|e| e.outcome == SimOutcome::Outage));
    assert_eq!(primary.len(), 8);
}

/// An agent's turn with tools, xAI down and Anthropic next: the chat call offering a tool
/// is answered by Claude with a call to it (chat's `tool_calls`, its input as the
/// arguments string); the agent runs the tool and sends the conversation back, its
/// assistant turn with the call and the tool's result; Anthropic (which refuses a
/// `tool_use` not answered by a `tool_result` right after, as the simulator does) takes
/// it and answers in text. Each provider billed what its stack counted.
#[test]
fn an_agents_tool_calls_go_to_anthropic_and_back() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sims = three_providers(
            Scenario::total_outage(),
            Scenario::healthy(),
            Scenario::healthy(),
        );
        let route = xai_anthropic_gemini(&sims);
        let ask = |messages: serde_json::Value| agent_call(messages, false);
        let user = serde_json::json!({"role": "user", "content": "Look up 'sim'."});
        let response = route
            .service
            .clone()
            .oneshot(ask(serde_json::json!([user])))
            .await
            .unwrap();
        assert_eq!(Served::of(&response).unwrap().target.as_ref(), "anthropic");
        let answer: serde_json::Value =
            serde_json::from_slice(response.body().bytes().unwrap()).unwrap();
        let choice = &answer["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        let call = choice["message"]["tool_calls"][0].clone();
        assert_eq!(call["function"]["name"], "look");
        assert_eq!(call["function"]["arguments"], ballast_sim::TOOL_INPUT);
        let id = call["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("toolu_"), "{id}");

        let assistant = choice["message"].clone();
        let result = serde_json::json!({"role": "tool", "tool_call_id": id, "content": "found"});
        let response = route
            .service
            .clone()
            .oneshot(ask(serde_json::json!([user, assistant, result])))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value =
            serde_json::from_slice(response.body().bytes().unwrap()).unwrap();
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        assert!(answer["choices"][0]["message"]["content"].is_string());

        // Streamed: Claude's `tool_use` block and its `input_json_delta`s as chat's
        // tool-call chunks, the arguments whole once joined.
        let request = agent_call(serde_json::json!([user]), true);
        let response = route.service.clone().oneshot(request).await.unwrap();
        let text = String::from_utf8(
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let choices = stream_choices(&text);
        let calls: Vec<&serde_json::Value> = choices
            .iter()
            .filter_map(|c| c.pointer("/delta/tool_calls/0"))
            .collect();
        assert_eq!(calls[0]["function"]["name"], "look");
        assert!(calls[0]["id"].as_str().unwrap().starts_with("toolu_"));
        assert!(calls.iter().all(|call| call["index"] == 0));
        let arguments: String = calls
            .iter()
            .filter_map(|call| call["function"]["arguments"].as_str())
            .collect();
        assert_eq!(arguments, ballast_sim::TOOL_INPUT);
        assert_eq!(
            choices
                .iter()
                .rev()
                .find_map(|c| c["finish_reason"].as_str()),
            Some("tool_calls")
        );

        tokio::time::sleep(Duration::from_secs(60)).await;
        let anthropic = sims[1].ledger();
        assert_eq!(anthropic.len(), 3);
        assert!(
            anthropic
                .entries()
                .iter()
                .all(|e| e.outcome == SimOutcome::Success)
        );
        assert_eq!(sims[2].ledger().len(), 0);
        for (sim, (_, stack)) in sims.iter().zip(&route.targets) {
            assert_eq!(
                stack.spend.total(),
                Usd::from_xai_ticks(sim.ledger().billed_ticks())
            );
        }
    });
}

/// A chat caller's prompt-caching breakpoints (`cache_control` on message parts, as
/// LiteLLM's and Portkey's chat APIs take them) reach Anthropic where they were: two are
/// taken and the call served; five are refused by the simulated Anthropic as the real one
/// refuses them (at most four), which shows they arrive.
#[test]
fn prompt_caching_breakpoints_reach_anthropic() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sims = three_providers(
            Scenario::total_outage(),
            Scenario::healthy(),
            Scenario::total_outage(),
        );
        let route = xai_anthropic_gemini(&sims);
        let ask = |marks: usize| {
            let parts: Vec<serde_json::Value> = (0..5)
                .map(|i| {
                    let mut part =
                        serde_json::json!({"type": "text", "text": format!("Part {i}. ")});
                    if i < marks {
                        part["cache_control"] = serde_json::json!({"type": "ephemeral"});
                    }
                    part
                })
                .collect();
            http::Request::post("http://caller.invalid/v1/chat/completions")
                .body(
                    serde_json::json!({
                        "model": "grok-code-fast-1", "max_tokens": 60,
                        "messages": [{"role": "user", "content": parts}],
                    })
                    .to_string(),
                )
                .unwrap()
        };
        let response = route.service.clone().oneshot(ask(2)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(Served::of(&response).unwrap().target.as_ref(), "anthropic");
        let response = route.service.clone().oneshot(ask(5)).await.unwrap();
        assert_eq!(response.status(), 400);
        let error: serde_json::Value =
            serde_json::from_slice(response.body().bytes().unwrap()).unwrap();
        assert_eq!(
            error["error"]["message"],
            "A maximum of 4 blocks with cache_control may be provided."
        );
        let outcomes: Vec<SimOutcome> = sims[1]
            .ledger()
            .entries()
            .iter()
            .map(|e| e.outcome)
            .collect();
        assert_eq!(outcomes, [SimOutcome::Success, SimOutcome::BadRequest]);
    });
}

/// The same agent with xAI and Anthropic down: Gemini answers with a call, signed (Gemini 3
/// refuses a step of the current turn sent back without its signature, as the simulator
/// does). The call comes back with its signature in `extra_content` (where Gemini's own
/// OpenAI-compatible API puts it) and goes back with it: a forged one is refused, which
/// shows it is the caller's that reaches Gemini. A caller that dropped it, and a
/// conversation whose calls another provider made, are sent marked as history from another
/// model, and answered. Streamed, the call comes whole in one chunk. Gemini billed what its
/// stack counted.
#[test]
fn an_agents_tool_calls_go_to_gemini_with_their_signatures() {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sims = three_providers(
            Scenario::total_outage(),
            Scenario::total_outage(),
            Scenario::healthy(),
        );
        let route = xai_anthropic_gemini(&sims);
        let ask = agent_call;
        let send = |request| async {
            let response = route.service.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        };
        let user = serde_json::json!({"role": "user", "content": "Look up 'sim'."});
        let (status, body) = send(ask(serde_json::json!([user]), false)).await;
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        let choice = &answer["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        let assistant = choice["message"].clone();
        let call = &assistant["tool_calls"][0];
        assert_eq!(call["function"]["name"], "look");
        assert_eq!(call["function"]["arguments"], ballast_sim::TOOL_INPUT);
        let id = call["id"].as_str().unwrap().to_owned();
        assert_eq!(id, format!("call_{}_0", answer["id"].as_str().unwrap()));
        let signature = call["extra_content"]["google"]["thought_signature"]
            .as_str()
            .unwrap();
        assert!(
            signature.starts_with(ballast_sim::THOUGHT_SIGNATURE),
            "{signature}"
        );
        let result = serde_json::json!({"role": "tool", "tool_call_id": id, "content": "found"});

        let (status, body) = send(ask(serde_json::json!([user, assistant, result]), false)).await;
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");

        let mut forged = assistant.clone();
        forged["tool_calls"][0]["extra_content"]["google"]["thought_signature"] =
            serde_json::json!("forged");
        let (status, body) = send(ask(serde_json::json!([user, forged, result]), false)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("Corrupted thought signature."), "{body}");

        let mut dropped = assistant.clone();
        dropped["tool_calls"][0]
            .as_object_mut()
            .unwrap()
            .remove("extra_content");
        let (status, body) = send(ask(serde_json::json!([user, dropped, result]), false)).await;
        assert_eq!(status, 200, "{body}");
        let claudes = serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "toolu_01", "type": "function", "function": {"name": "look", "arguments": "{}"}},
        ]});
        let claudes_result =
            serde_json::json!({"role": "tool", "tool_call_id": "toolu_01", "content": "found"});
        let (status, body) = send(ask(
            serde_json::json!([user, claudes, claudes_result]),
            false,
        ))
        .await;
        assert_eq!(status, 200, "{body}");

        let (status, text) = send(ask(serde_json::json!([user]), true)).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let choices = stream_choices(&text);
        let calls: Vec<&serde_json::Value> = choices
            .iter()
            .filter_map(|c| c.pointer("/delta/tool_calls/0"))
            .collect();
        assert_eq!(calls.len(), 1, "{text}");
        assert_eq!(calls[0]["index"], 0);
        assert_eq!(calls[0]["function"]["arguments"], ballast_sim::TOOL_INPUT);
        assert!(
            calls[0]["extra_content"]["google"]["thought_signature"]
                .as_str()
                .unwrap()
                .starts_with(ballast_sim::THOUGHT_SIGNATURE)
        );
        assert_eq!(
            choices
                .iter()
                .rev()
                .find_map(|c| c["finish_reason"].as_str()),
            Some("tool_calls")
        );

        tokio::time::sleep(Duration::from_secs(60)).await;
        let outcomes: Vec<SimOutcome> = sims[2]
            .ledger()
            .entries()
            .iter()
            .map(|e| e.outcome)
            .collect();
        use SimOutcome::{BadRequest, Success};
        assert_eq!(
            outcomes,
            [Success, Success, BadRequest, Success, Success, Success]
        );
        for (sim, (_, stack)) in sims.iter().zip(&route.targets) {
            assert_eq!(
                stack.spend.total(),
                Usd::from_xai_ticks(sim.ledger().billed_ticks())
            );
        }
    });
}

/// The other way: an agent speaking Anthropic's Messages API (Claude Code's shape), its
/// Anthropic primary down, xAI's `grok-4-fast` next. The call offering a tool is answered
/// by Grok's tool call, back as a `tool_use` block; the agent sends its result as a
/// `tool_result` block, which reaches xAI as a `tool` message right after the call (the
/// simulated xAI refuses it otherwise, as the real one does) and is answered in text.
/// Each provider billed what its stack counted.
#[test]
fn an_anthropic_agents_tool_calls_go_to_an_openai_compatible_target_and_back() {
    an_anthropic_agent_served_by(Flavor::XAi);
}

/// The same with a Gemini fallback (`gemini:gemini-2.5-flash`): the Messages call goes to
/// chat and from there to Gemini, Gemini's call comes back as a `tool_use` block (its
/// arguments in one delta when streamed: Gemini sends a call whole), and the tool's result
/// reaches Gemini as a `functionResponse` right after the call, the step marked as history
/// from another model (Messages has no place for Gemini's signature; the simulated Gemini
/// refuses a step unsigned, as the real one does).
#[test]
fn an_anthropic_agents_tool_calls_go_to_gemini_and_back() {
    an_anthropic_agent_served_by(Flavor::Gemini);
}

/// An Anthropic agent's turn with tools, Anthropic down, served by a fallback of `flavor`.
fn an_anthropic_agent_served_by(flavor: Flavor) {
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let primary = Simulator::new(Scenario {
            flavor: Flavor::Anthropic,
            price: CLAUDE_SONNET,
            ..Scenario::total_outage()
        });
        let (fallback_model, price) = common::fallback_model(flavor);
        let fallback = Simulator::new(Scenario {
            flavor,
            price,
            ..Scenario::healthy()
        });
        let (client, route) = common::two_providers(
            primary.streaming(),
            (fallback.streaming(), flavor),
            Config::new(Preset::Anthropic),
        );
        let route = route.seed(3).build(client);
        let ask = |messages: serde_json::Value| {
            http::Request::post("http://caller.invalid/v1/messages")
                .header("anthropic-version", "2023-06-01")
                .body(
                    serde_json::json!({
                        "model": "claude-sonnet-4-5", "max_tokens": 60,
                        "tools": [{"name": "look", "description": "Looks a word up.",
                                   "input_schema": {"type": "object"}}],
                        "messages": messages,
                    })
                    .to_string(),
                )
                .unwrap()
        };
        let user = serde_json::json!({"role": "user", "content": "Look up 'sim'."});
        let response = route
            .service
            .clone()
            .oneshot(ask(serde_json::json!([user])))
            .await
            .unwrap();
        let target = Served::of(&response).unwrap().target.clone();
        assert_eq!(target.as_ref(), common::preset_of(flavor).name());
        let message: serde_json::Value =
            serde_json::from_slice(response.body().bytes().unwrap()).unwrap();
        assert_eq!(message["type"], "message");
        assert_eq!(message["stop_reason"], "tool_use");
        let call = message["content"][0].clone();
        assert_eq!(
            (call["type"].as_str(), call["name"].as_str()),
            (Some("tool_use"), Some("look"))
        );
        let input: serde_json::Value = serde_json::from_str(ballast_sim::TOOL_INPUT).unwrap();
        assert_eq!(call["input"], input);

        let assistant = serde_json::json!({"role": "assistant", "content": [call.clone()]});
        let result = serde_json::json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call["id"], "content": "found"},
        ]});
        let response = route
            .service
            .clone()
            .oneshot(ask(serde_json::json!([user, assistant, result])))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let message: serde_json::Value =
            serde_json::from_slice(response.body().bytes().unwrap()).unwrap();
        assert_eq!(message["stop_reason"], "end_turn");
        assert_eq!(message["content"][0]["type"], "text");

        // Streamed: Grok's tool-call chunks as a `tool_use` block and its
        // `input_json_delta`s (no empty text block before it), `stop_reason: tool_use`.
        let mut streamed: serde_json::Value =
            serde_json::from_str(ask(serde_json::json!([user])).body()).unwrap();
        streamed["stream"] = serde_json::json!(true);
        let request = http::Request::post("http://caller.invalid/v1/messages")
            .header("anthropic-version", "2023-06-01")
            .body(streamed.to_string())
            .unwrap();
        let response = route.service.clone().oneshot(request).await.unwrap();
        let text = String::from_utf8(
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        // xAI streams the arguments in pieces (three from the simulator), Gemini whole.
        let deltas = if flavor == Flavor::Gemini { 1 } else { 3 };
        let mut expected = vec!["message_start", "content_block_start"];
        expected.extend(std::iter::repeat_n("content_block_delta", deltas));
        expected.extend(["content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(kinds, expected, "{text}");
        assert_eq!(events[1]["content_block"]["type"], "tool_use");
        assert_eq!(events[1]["content_block"]["name"], "look");
        let input: String = events[2..2 + deltas]
            .iter()
            .map(|e| e["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(input, ballast_sim::TOOL_INPUT);
        let delta = &events[3 + deltas];
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");

        tokio::time::sleep(Duration::from_secs(60)).await;
        let served = fallback.ledger();
        assert_eq!(served.len(), 3);
        // The usage chunk the translation asked for, in Anthropic's counts: the bill's.
        let last = served.entries()[2].clone();
        assert_eq!(
            delta["usage"]["output_tokens"],
            serde_json::json!(last.completion_tokens)
        );
        assert_eq!(
            delta["usage"]["input_tokens"],
            serde_json::json!(last.prompt_tokens - last.cached_tokens)
        );
        assert!(
            served
                .entries()
                .iter()
                .all(|e| e.outcome == SimOutcome::Success && e.model == fallback_model)
        );
        for (sim, (_, stack)) in [&primary, &fallback].into_iter().zip(&route.targets) {
            assert_eq!(
                stack.spend.total(),
                Usd::from_xai_ticks(sim.ledger().billed_ticks())
            );
        }
    });
}

/// A caller of OpenAI's Responses API (an agent's shape: instructions, input items,
/// function tools), xAI down, Anthropic next: Claude's tool call comes back as a
/// `function_call` output item, the agent's `function_call` and `function_call_output`
/// items reach Anthropic as `tool_use` and `tool_result` blocks (the simulated API checks
/// them), the text answer as a message item; streamed, as the Responses API's numbered
/// events. Usage in the response's counts, each bill what its stack counted.
#[test]
fn a_responses_caller_is_served_by_anthropic_translated() {
    use http_body_util::BodyExt;
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let sims = [
            Simulator::new(Scenario::total_outage()),
            Simulator::new(Scenario {
                flavor: Flavor::Anthropic,
                price: CLAUDE_SONNET,
                reasoning_share: 0.5,
                ..Scenario::healthy()
            }),
            Simulator::new(Scenario {
                flavor: Flavor::Gemini,
                price: GEMINI_FLASH,
                ..Scenario::healthy()
            }),
        ];
        let route = xai_anthropic_gemini(&sims);
        let ask = |input: serde_json::Value, stream: bool| {
            http::Request::post("http://caller.invalid/v1/responses")
                .body(
                    serde_json::json!({
                        "model": "grok-code-fast-1", "instructions": "Be brief.",
                        "max_output_tokens": 60, "stream": stream, "store": false,
                        "tools": [{"type": "function", "name": "look",
                                   "parameters": {"type": "object"}}],
                        "input": input,
                    })
                    .to_string(),
                )
                .unwrap()
        };
        let user = serde_json::json!({"role": "user", "content": [
            {"type": "input_text", "text": "Look up 'sim'."},
        ]});
        let response = route
            .service
            .clone()
            .oneshot(ask(serde_json::json!([user]), false))
            .await
            .unwrap();
        assert_eq!(Served::of(&response).unwrap().target.as_ref(), "anthropic");
        let answer: serde_json::Value =
            serde_json::from_slice(response.body().bytes().unwrap()).unwrap();
        assert_eq!(
            (answer["object"].as_str(), answer["status"].as_str()),
            (Some("response"), Some("completed"))
        );
        let call = answer["output"][0].clone();
        assert_eq!(call["type"], "function_call");
        assert_eq!(call["name"], "look");
        assert_eq!(call["arguments"], ballast_sim::TOOL_INPUT);
        let entry = sims[1].ledger().entries()[0].clone();
        assert_eq!(answer["usage"]["input_tokens"], entry.prompt_tokens);
        assert_eq!(answer["usage"]["output_tokens"], entry.completion_tokens);

        let output = serde_json::json!({"type": "function_call_output",
                                        "call_id": call["call_id"], "output": "found"});
        let response = route
            .service
            .clone()
            .oneshot(ask(serde_json::json!([user, call, output]), false))
            .await
            .unwrap();
        let answer: serde_json::Value =
            serde_json::from_slice(response.body().bytes().unwrap()).unwrap();
        assert_eq!(answer["status"], "completed", "{answer}");
        assert_eq!(answer["output"][0]["type"], "message");
        assert_eq!(answer["output"][0]["content"][0]["type"], "output_text");

        let response = route
            .service
            .clone()
            .oneshot(ask(serde_json::json!([user]), true))
            .await
            .unwrap();
        let text = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        let numbers: Vec<u64> = events
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
        assert_eq!(events[0]["type"], "response.created");
        let arguments: String = events
            .iter()
            .filter(|e| e["type"] == "response.function_call_arguments.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(arguments, ballast_sim::TOOL_INPUT);
        let done = &events.last().unwrap();
        assert_eq!(done["type"], "response.completed", "{text}");
        tokio::time::sleep(Duration::from_secs(60)).await;
        let entry = sims[1].ledger().entries()[2].clone();
        assert_eq!(
            done["response"]["usage"]["output_tokens"],
            entry.completion_tokens
        );
        assert_eq!(
            done["response"]["output"][0]["call_id"],
            events
                .iter()
                .find(|e| e["type"] == "response.output_item.added")
                .unwrap()["item"]["call_id"]
        );

        let anthropic = sims[1].ledger();
        assert_eq!(anthropic.len(), 3);
        assert!(
            anthropic
                .entries()
                .iter()
                .all(|e| e.outcome == SimOutcome::Success)
        );
        for (sim, (_, stack)) in sims.iter().zip(&route.targets) {
            assert_eq!(
                stack.spend.total(),
                Usd::from_xai_ticks(sim.ledger().billed_ticks())
            );
        }
    });
}

/// Anthropic out of credit too (a 400 that latches its breaker): Gemini answers, translated;
/// Anthropic's failures are not billed as completions anywhere.
#[test]
fn past_an_empty_anthropic_account_gemini_answers() {
    let seen = through_translation(
        Scenario::total_outage(),
        Scenario {
            quota_ticks: Some(0),
            ..Scenario::healthy()
        },
        Scenario::healthy(),
        8,
        "",
    );
    assert!(
        seen.answers
            .iter()
            .all(|(status, served, json)| *status == 200
                && served == "gemini"
                && json["model"] == "gemini-2.5-flash"
                && json["object"] == "chat.completion"),
        "{:?}",
        seen.answers
    );
    let gemini = seen.targets[2].0.entries();
    assert_eq!(gemini.len(), 8);
    assert!(gemini.iter().all(|e| e.model == "gemini-2.5-flash"));
    // The empty account latched Anthropic's breaker at its first answer: once asked.
    let anthropic = seen.targets[1].0.entries();
    assert_eq!(anthropic.len(), 1);
    assert_eq!(anthropic[0].outcome, SimOutcome::QuotaExhausted);
    assert_eq!(seen.targets[1].1, Usd::ZERO);
    for (ledger, spend) in &seen.targets {
        assert_eq!(*spend, Usd::from_xai_ticks(ledger.billed_ticks()));
    }
}

/// Streams and failover: a primary whose streams send nothing after their preamble (their
/// first content 60 s late, past the 20 s first-content timeout) and a healthy fallback.
/// Every caller gets a whole stream from the fallback, having seen nothing of the
/// primary's.
#[test]
fn a_stream_that_fails_before_content_fails_over_unseen() {
    use ballast::route::Target;
    use ballast_sim::StreamFaults;
    use http_body_util::BodyExt;
    ballast_sim::paused_runtime().unwrap().block_on(async {
        let primary_sim = Simulator::new(Scenario {
            stream_faults: StreamFaults {
                slow_first_share: 1.0,
                slow_first: Duration::from_secs(60),
                ..StreamFaults::NONE
            },
            ..Scenario::healthy()
        });
        let fallback_sim = Simulator::new(Scenario::healthy());
        let primary = StackBuilder::new(Config::new(Preset::XAi))
            .seed(1)
            .build(primary_sim.streaming());
        let fallback = StackBuilder::new(Config::new(Preset::XAi))
            .seed(2)
            .build(fallback_sim.streaming());
        let route = ReadRequestLayer::new().layer(Failover::new([
            Target::new("primary", BASE.parse().unwrap(), primary.service.clone()),
            Target::new("fallback", BASE.parse().unwrap(), fallback.service.clone()),
        ]));
        for i in 0..5 {
            let request = http::Request::post(format!("{BASE}/chat/completions"))
                .body(format!(
                    r#"{{"model":"grok-code-fast-1","stream":true,"max_tokens":40,"messages":[{{"role":"user","content":"job {i}"}}]}}"#
                ))
                .unwrap();
            let response = route.clone().oneshot(request).await.unwrap();
            assert!(Outcome::from_response(&response).is_success());
            assert_eq!(Served::of(&response).unwrap().target.as_ref(), "fallback");
            let text = String::from_utf8(
                response.into_body().collect().await.unwrap().to_bytes().to_vec(),
            )
            .unwrap();
            assert!(text.ends_with("data: [DONE]\n\n"));
            assert!(!text.contains("error"), "{text}");
        }
        assert_eq!(fallback_sim.ledger().len(), 5);
        // The first call tried the primary 3 times (its retries), the second twice: the 5
        // failures opened the primary's breaker, and the rest went on to the fallback at
        // once.
        assert!(
            primary_sim
                .ledger()
                .entries()
                .iter()
                .all(|e| !e.delivered)
        );
        assert_eq!(primary_sim.ledger().len(), 5);
    });
}

/// Streamed chat calls through a route whose primary (xAI) is down: the Anthropic
/// fallback's Messages stream, and past an empty Anthropic account Gemini's stream (both
/// models thinking first), reach the caller as chat chunks: the content as generated (the
/// thinking is not shown), the usage chunk, thinking included, equal to the
/// provider's ledger when the caller asked for one (none when it did not), `[DONE]` at the
/// end; each provider billed what its stack counted, to the picodollar.
#[test]
fn streams_are_translated_for_anthropic_and_gemini_fallbacks() {
    use ballast_sim::Flavor;
    use http_body_util::BodyExt;
    for (anthropic_empty, asks_usage) in
        [(false, true), (true, true), (false, false), (true, false)]
    {
        ballast_sim::paused_runtime().unwrap().block_on(async {
            let sims = [
                Simulator::new(Scenario::total_outage()),
                Simulator::new(Scenario {
                    flavor: Flavor::Anthropic,
                    price: CLAUDE_SONNET,
                    quota_ticks: anthropic_empty.then_some(0),
                    reasoning_share: 0.5,
                    ..Scenario::healthy()
                }),
                Simulator::new(Scenario {
                    flavor: Flavor::Gemini,
                    price: GEMINI_FLASH,
                    reasoning_share: 0.5,
                    ..Scenario::healthy()
                }),
            ];
            let route = xai_anthropic_gemini(&sims);
            let (answering, model) = if anthropic_empty {
                (2, "gemini-2.5-flash")
            } else {
                (1, "claude-sonnet-4-5")
            };
            let options = if asks_usage {
                r#","stream_options":{"include_usage":true}"#
            } else {
                ""
            };
            for i in 0..4 {
                let request = http::Request::post("http://caller.invalid/v1/chat/completions")
                    .body(format!(
                        r#"{{"model":"grok-code-fast-1","stream":true{options},"max_tokens":60,"messages":[{{"role":"user","content":"job {i}"}}]}}"#
                    ))
                    .unwrap();
                let response = route.service.clone().oneshot(request).await.unwrap();
                assert!(Outcome::from_response(&response).is_success());
                let text = String::from_utf8(
                    response.into_body().collect().await.unwrap().to_bytes().to_vec(),
                )
                .unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
                let entry = sims[answering].ledger().entries().last().unwrap().clone();
                assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
                let chunks: Vec<serde_json::Value> = text
                    .split("\n\n")
                    .filter_map(|event| event.strip_prefix("data: "))
                    .filter(|data| *data != "[DONE]")
                    .map(|data| serde_json::from_str(data).unwrap())
                    .collect();
                assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
                assert!(chunks.iter().all(|c| c["model"] == model), "{text}");
                let content: String = chunks
                    .iter()
                    .filter_map(|c| c.pointer("/choices/0/delta/content")?.as_str())
                    .collect();
                // The answer's own tokens; the thinking before them is billed, not shown.
                assert_eq!(
                    content,
                    ballast_sim::completion_text(entry.completion_tokens - entry.reasoning_tokens)
                );
                assert!(entry.reasoning_tokens > 0);
                let usage = &chunks.last().unwrap()["usage"];
                if asks_usage {
                    assert_eq!(usage["prompt_tokens"], entry.prompt_tokens);
                    assert_eq!(usage["completion_tokens"], entry.completion_tokens);
                } else {
                    assert!(!text.contains(r#""usage""#), "{text}");
                    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
                }
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert_eq!(sims[answering].ledger().len(), 4);
            for (sim, (_, stack)) in sims.iter().zip(&route.targets) {
                assert_eq!(
                    stack.spend.total(),
                    Usd::from_xai_ticks(sim.ledger().billed_ticks())
                );
            }
        });
    }
}

/// What one call through a `RouteBuilder` route whose primary fails (`primary`) and whose
/// fallback is well, with `attempts` before the fallback, came to.
#[derive(Debug)]
struct OneCall {
    /// Provider calls each target's simulator saw.
    calls: (usize, usize),
    /// The target that served.
    served: String,
    /// The caller's `CostTally`: provider calls and cost.
    tallied: (u32, Usd),
    /// What each target's stack counted.
    counted: (Usd, Usd),
}

fn one_call_past_a_failing_primary(primary: Scenario, attempts: Option<u32>) -> OneCall {
    ballast_sim::paused_runtime().unwrap().block_on(async move {
        let primary = Simulator::new(primary);
        let fallback = Simulator::new(Scenario::healthy());
        let (client, route) = common::two_providers(
            primary.clone(),
            (fallback.clone(), Flavor::XAi),
            Config::new(Preset::XAi),
        );
        let route = route
            .attempts_before_fallback(attempts)
            .seed(3)
            .build(client);
        let tally = ballast::cost::CostTally::default();
        let mut request = common::job(&format!("{BASE}/chat/completions"), 1, 50);
        request.extensions_mut().insert(tally.clone());
        let response = route.service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let spend = |i: usize| route.targets[i].1.spend.total();
        OneCall {
            calls: (primary.ledger().len(), fallback.ledger().len()),
            served: Served::of(&response).unwrap().target.to_string(),
            tallied: (tally.calls(), tally.total()),
            counted: (spend(0), spend(1)),
        }
    })
}

/// A primary down (503s) for the hour.
fn down() -> Scenario {
    Scenario::outage_then_recovery(Duration::ZERO, Duration::from_secs(3_600))
}

#[test]
fn a_retryable_failure_goes_to_the_next_target_at_once() {
    // The default: the primary's 503 is not tried again there; the fallback answers.
    let once = one_call_past_a_failing_primary(down(), Some(1));
    assert_eq!((once.calls, once.served.as_str()), ((1, 1), "xai#2"));
    // Each target's own attempts (three): the primary is asked three times first.
    let thrice = one_call_past_a_failing_primary(down(), None);
    assert_eq!((thrice.calls, thrice.served.as_str()), ((3, 1), "xai#2"));
    // The caller's tally: every provider call (the 503s cost nothing).
    assert_eq!(thrice.tallied, (4, thrice.counted.1));
}

/// Provider calls each target's simulator saw for 20 calls at once through a route of two
/// healthy xAI targets (each throttled from 480 a minute: a turn every 125 ms), with
/// `wait` as the primary's longest line.
fn twenty_calls_at_once(wait: Option<Duration>) -> (usize, usize) {
    ballast_sim::paused_runtime().unwrap().block_on(async move {
        let primary = Simulator::new(Scenario::healthy());
        let fallback = Simulator::new(Scenario::healthy());
        let (client, route) = common::two_providers(
            primary.clone(),
            (fallback.clone(), Flavor::XAi),
            Config::new(Preset::XAi),
        );
        let route = route
            .line_before_fallback(wait)
            .no_hedge()
            .seed(3)
            .build(client);
        let calls = (0..20).map(|i| {
            route
                .service
                .clone()
                .oneshot(common::job(&format!("{BASE}/chat/completions"), i, 50))
        });
        for response in futures::future::join_all(calls).await {
            assert_eq!(response.unwrap().status(), 200);
        }
        (
            primary.ledger().entries().len(),
            fallback.ledger().entries().len(),
        )
    })
}

#[test]
fn a_call_whose_turn_on_the_primary_is_far_off_goes_to_the_fallback_at_once() {
    // The default, 1 s: turns at 0 to 1 s (nine) on the primary, the other eleven on the
    // fallback at once.
    assert_eq!(twenty_calls_at_once(Some(Duration::from_secs(1))), (9, 11));
    // The throttle's own 60 s: every call waits its turn on the primary.
    assert_eq!(twenty_calls_at_once(None), (20, 0));
}

/// The ledgers' sizes and the call's class and length for one call with a deadline of
/// `deadline` through a route whose primary hangs (its attempt times out after the
/// preset's 90 s) and whose fallback is well.
fn one_call_past_a_hanging_primary(deadline: Duration) -> (usize, usize, OutcomeClass, Duration) {
    use ballast::classify::Deadline;
    ballast_sim::paused_runtime().unwrap().block_on(async move {
        let primary = Simulator::new(Scenario {
            hangs: ballast_sim::Hangs {
                probability: 1.0,
                answer_after: None,
            },
            ..Scenario::healthy()
        });
        let fallback = Simulator::new(Scenario::healthy());
        let (client, route) = common::two_providers(
            primary.clone(),
            (fallback.clone(), Flavor::XAi),
            Config::new(Preset::XAi),
        );
        let route = route.no_hedge().seed(3).build(client);
        let mut request = common::job(&format!("{BASE}/chat/completions"), 1, 50);
        Deadline::after(deadline).set_sooner(request.extensions_mut());
        let start = tokio::time::Instant::now();
        let result = route.service.oneshot(request).await;
        (
            primary.ledger().entries().len(),
            fallback.ledger().entries().len(),
            Outcome::from_result(&result).class(),
            start.elapsed(),
        )
    })
}

#[test]
fn no_target_is_tried_past_the_calls_deadline() {
    // A 30 s deadline: the primary, which can fail over, spends at most half of it (15 s)
    // and the fallback answers 544 ms later (its latency for the seeded answer). Before the
    // deadline was shared, the primary's attempt ran its whole 90 s, past the deadline, and
    // the fallback was never tried: a timeout for a call a healthy target could serve.
    assert_eq!(
        one_call_past_a_hanging_primary(Duration::from_secs(30)),
        (1, 1, OutcomeClass::Success, Duration::from_millis(15_544))
    );
    // Four minutes: half is past the primary's own 90-s limit, which holds.
    assert_eq!(
        one_call_past_a_hanging_primary(Duration::from_secs(240)),
        (1, 1, OutcomeClass::Success, Duration::from_millis(90_544))
    );
    // A deadline of 1 ms: the primary's half (on tokio's millisecond timer, 1 ms) ends at
    // the deadline, and the fallback is not tried past it, as no retry starts past it.
    assert_eq!(
        one_call_past_a_hanging_primary(Duration::from_millis(1)),
        (1, 0, OutcomeClass::Timeout, Duration::from_millis(1))
    );
}

/// Every answer of the primary is broken (billed, not JSON): its one attempt, then the
/// fallback answers. The caller's `CostTally` counts both provider calls, each as its own
/// stack counted it: the broken answer at its worst case ($0.0000842), the fallback's
/// answer as read ($0.0000464).
#[test]
fn a_broken_answer_on_the_primary_goes_to_the_fallback() {
    let broken = Scenario {
        malformed_probability: 1.0,
        ..Scenario::healthy()
    };
    let one = one_call_past_a_failing_primary(broken, Some(1));
    assert_eq!((one.calls, one.served.as_str()), ((1, 1), "xai#2"));
    assert_eq!(
        one.counted,
        (Usd::from_picos(84_200_000), Usd::from_picos(46_400_000))
    );
    assert_eq!(one.tallied, (2, Usd::from_picos(130_600_000)));
}

/// How one way of using two keys came out: calls served, 429s the providers sent, provider
/// calls per call served, the p50 and p95 of the calls' latency (paused clock, provider
/// time), and each key's share of the provider calls.
#[derive(Debug, PartialEq)]
struct TwoKeys {
    served: usize,
    rate_limited: usize,
    calls_per_served: String,
    p50_p95: (Duration, Duration),
    per_key: (usize, usize),
}

/// `calls` calls, one every `every`, through two keys of the same provider whose limit
/// lies (250 calls a minute each, hinted at random), used as `way`: `"chain"` (the second
/// a fallback of the first), `"spread"` (the second alongside the first).
fn two_keys(way: &str, calls: usize, every: Duration) -> TwoKeys {
    ballast_sim::paused_runtime().unwrap().block_on(async move {
        let key = |seed| {
            Simulator::new(Scenario {
                seed,
                ..Scenario::lying_rate_limits()
            })
        };
        let (first, second) = (key(11), key(12));
        let client = {
            let (first, second) = (first.clone(), second.clone());
            tower::service_fn(
                move |request: http::Request<ballast::classify::RequestBody>| {
                    let sim = match request.uri().host() {
                        Some("second.invalid") => &second,
                        _ => &first,
                    };
                    sim.clone().oneshot(request)
                },
            )
        };
        let mut other = Config::new(Preset::XAi);
        other.base_url = "http://second.invalid/v1".parse().unwrap();
        let route = RouteBuilder::new(Config::new(Preset::XAi)).seed(5);
        let route = match way {
            "spread" => route.alongside(other, None),
            _ => route.fallback(other, None),
        }
        .build(client);
        let latencies = common::spawn_jobs(
            &route.service,
            (0..calls).map(|i| i as u64 * every.as_millis() as u64),
            |i, service| async move {
                let start = tokio::time::Instant::now();
                let request = common::job(&format!("{BASE}/chat/completions"), i, 50);
                let result = service.oneshot(request).await;
                Outcome::from_result(&result)
                    .is_success()
                    .then(|| start.elapsed())
            },
        )
        .await;
        let mut served: Vec<Duration> = latencies.into_iter().flatten().collect();
        served.sort();
        let at = |q: f64| served[((served.len() as f64 * q) as usize).min(served.len() - 1)];
        let (first, second) = (first.ledger(), second.ledger());
        TwoKeys {
            served: served.len(),
            rate_limited: first.count(SimOutcome::RateLimited)
                + second.count(SimOutcome::RateLimited),
            calls_per_served: format!(
                "{:.2}",
                (first.len() + second.len()) as f64 / served.len() as f64
            ),
            p50_p95: (at(0.5), at(0.95)),
            per_key: (first.len(), second.len()),
        }
    })
}

/// Two keys of a provider whose limit lies (250 calls a minute each), offered 400 calls a
/// minute for five minutes (more than one key takes, less than two; `cargo test -p ballast
/// --test failover two_keys`). Chained, the first key
/// takes all it can and the second only what waits more than a second in the first's line;
/// alongside, each takes every other call, and neither meets its limit.
#[test]
fn two_keys_alongside_share_the_load() {
    let every = Duration::from_millis(150);
    // Seeded providers and stacks under the paused clock: the figures are determined.
    assert_eq!(
        two_keys("chain", 2_000, every),
        TwoKeys {
            served: 2_000,
            rate_limited: 35,
            calls_per_served: "1.02".into(),
            p50_p95: (Duration::from_millis(773), Duration::from_millis(5_771)),
            per_key: (1_237, 798),
        }
    );
    // Every call served at once, no 429 (each key at 200 calls a minute, under its 250),
    // one provider call each, p95 under a second; the keys within 3 calls of even (a key
    // that answers slower has more in flight, and the next call goes to the other).
    assert_eq!(
        two_keys("spread", 2_000, every),
        TwoKeys {
            served: 2_000,
            rate_limited: 0,
            calls_per_served: "1.00".into(),
            p50_p95: (Duration::from_millis(640), Duration::from_millis(857)),
            per_key: (1_003, 997),
        }
    );
}
