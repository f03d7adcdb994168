//! One piece of code against three providers: the xAI, OpenAI and Anthropic presets.
//!
//! ```text
//! cargo run --release --example providers
//! ```
//!
//! For each preset whose key variable is set (`XAI_API_KEY`, `OPENAI_API_KEY`,
//! `ANTHROPIC_API_KEY`) it calls the real API; for the others, a simulated provider speaking
//! that preset's dialect (request shape, usage fields, error bodies, wait-hint headers) on
//! loopback. The code below does not change with the provider: the preset picks the
//! dialect, the auth header, the key check, the default model and the prices.

use ballast::classify::BoxError;
use ballast::{ChatClient, Config, Preset, StackBuilder};
use ballast_sim::{Flavor, Scenario, SimServer, Simulator};

const TIME_SCALE: f64 = 60.0;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    for (preset, flavor) in [
        (Preset::XAi, Flavor::XAi),
        (Preset::OpenAi, Flavor::OpenAi),
        (Preset::Anthropic, Flavor::Anthropic),
    ] {
        let mut config = Config::from_env(preset)?;
        let mut scale = 1.0;
        // Kept alive while the preset is in use.
        let mut _simulated = None;
        if config.api_key.is_none() {
            let scenario = Scenario {
                flavor,
                time_scale: TIME_SCALE,
                ..Scenario::bad_day()
            };
            let server = SimServer::start(Simulator::new(scenario)).await?;
            config.base_url = format!("{}/v1", server.url()).parse()?;
            scale = TIME_SCALE;
            _simulated = Some(server);
        }

        // The same for every provider from here on.
        let stack = StackBuilder::new(config.clone())
            .time_scale(scale)
            .build_https()?;
        let chat = ChatClient::new(stack.service, &config, preset.default_model());
        println!(
            "{preset:?} ({}, model {}):",
            if _simulated.is_some() {
                "simulated"
            } else {
                "live"
            },
            preset.default_model()
        );
        for prompt in ["Say hello in five words.", "Name one tower layer."] {
            match chat.chat(prompt).await {
                Ok(reply) => println!(
                    "  ok in {} attempt(s), {} ({:?}), {} tokens out: {:.40}...",
                    reply.attempts,
                    reply.cost,
                    reply.cost_source,
                    reply.usage.map_or(0, |u| u.output_tokens),
                    reply.text
                ),
                Err(error) => {
                    let fallback = error.fallback();
                    println!(
                        "  failed: {} -> {} {:?}",
                        error.outcome().class(),
                        fallback.status,
                        fallback.message
                    );
                }
            }
        }
        println!("  spent today: {}\n", stack.spend.total());
    }
    Ok(())
}
