//! The typed chat helper in every dialect, through the whole stack, against the simulator.

use ballast::{ChatClient, Config, Preset, StackBuilder};
use ballast_classify::OutcomeClass;
use ballast_cost::{CostSource, Usd};
use ballast_sim::{Flavor, Scenario, Simulator};

fn config(preset: Preset) -> Config {
    Config::from_vars(preset, |name| {
        name.ends_with("_BASE_URL")
            .then(|| "http://provider.invalid/v1".to_owned())
    })
    .unwrap()
}

#[test]
fn one_prompt_in_every_dialect() {
    // Each preset's default model at its list price, in the simulator's ticks ($1e-10):
    // the provider bills what the price table says.
    let price = |input, cached_input, output| ballast_sim::Price {
        input,
        cached_input,
        output,
    };
    for (preset, flavor, price) in [
        (
            Preset::XAi,
            Flavor::XAi,
            ballast_sim::Price::GROK_CODE_FAST_1,
        ),
        (Preset::OpenAi, Flavor::OpenAi, price(2_500, 250, 20_000)),
        (
            Preset::Anthropic,
            Flavor::Anthropic,
            price(30_000, 3_000, 150_000),
        ),
        (Preset::Gemini, Flavor::Gemini, price(3_000, 750, 25_000)),
    ] {
        ballast_sim::paused_runtime().unwrap().block_on(async {
            let sim = Simulator::new(Scenario {
                flavor,
                cached_share: 0.5,
                price,
                ..Scenario::healthy()
            });
            let config = config(preset);
            let stack = StackBuilder::new(config.clone()).build(sim.clone());
            let chat = ChatClient::new(stack.service, &config, preset.default_model());
            let reply = chat
                .chat("Explain the borrow checker in one line.")
                .await
                .unwrap();
            let entry = sim.ledger().entries()[0].clone();
            assert!(!reply.text.is_empty(), "{preset:?}");
            let usage = reply.usage.unwrap();
            assert_eq!(usage.output_tokens, entry.completion_tokens, "{preset:?}");
            assert_eq!(usage.prompt_tokens(), entry.prompt_tokens, "{preset:?}");
            assert_eq!(reply.attempts, 1);
            // What the provider billed, to the picodollar: reported by xAI, priced from
            // the usage for the others.
            assert_eq!(
                reply.cost,
                Usd::from_xai_ticks(entry.billed_ticks),
                "{preset:?}"
            );
            if preset == Preset::XAi {
                assert_eq!(reply.cost_source, Some(CostSource::Reported));
            }
        });
    }
}

#[test]
fn failures_come_back_typed_with_a_fallback() {
    for patient in [false, true] {
        ballast_sim::paused_runtime().unwrap().block_on(async {
            let config = config(Preset::XAi);
            let builder = StackBuilder::new(config.clone()).seed(1);
            let builder = if patient {
                builder
            } else {
                builder.fail_fast()
            };
            let sim = Simulator::new(Scenario::total_outage());
            let stack = builder.build(sim.clone());
            let chat = ChatClient::new(stack.service, &config, "grok-code-fast-1");
            let mut classes = Vec::new();
            for _ in 0..5 {
                let error = chat.chat("hi").await.unwrap_err();
                classes.push(error.outcome().class());
                let fallback = error.fallback();
                assert!(fallback.status.is_server_error());
            }
            assert_eq!(classes[0], OutcomeClass::ServerError);
            if patient {
                // Each call waits for the breaker's next probe and is that probe, up to 4
                // times an attempt (`Patience::max_probes`): it ends with the provider's own
                // answer, after 45 provider calls in all (seeded: exact).
                assert_eq!(classes, [OutcomeClass::ServerError; 5]);
                assert_eq!(sim.ledger().len(), 45);
            } else {
                assert_eq!(
                    *classes.last().unwrap(),
                    OutcomeClass::CircuitOpen,
                    "{classes:?}"
                );
            }
        });
    }
}
