//! Keep LLM API calls alive, cheap and observable when the provider is flaky.
//!
//! The facade over the Ballast layers: provider [`Preset`]s, a checked [`Config`] read from
//! the environment (the story's `XAI_API_KEY`, `DAILY_BUDGET_USD`, `MAX_TOKENS_DEFAULT`,
//! `REQUEST_TIMEOUT`), a [`StackBuilder`] that composes every layer in the right order over
//! any HTTP client service (hyper-util's with rustls by default: [`https_client`],
//! [`StackBuilder::build_https`]), a typed [`ChatClient`] on top, and the [`Fallback`] that
//! turns any failure into a user-safe HTTP answer. The layer crates are re-exported for
//! custom stacks.
//!
//! # Example
//!
//! ```
//! use ballast::{Config, Preset, StackBuilder};
//! use ballast_classify::Outcome;
//! use ballast_sim::{Scenario, Simulator};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // Any `Service<http::Request<String>>` client: hyper-util's in production, the
//! // simulated provider here.
//! let client = Simulator::new(Scenario::bad_day());
//! let stack = StackBuilder::new(Config::new(Preset::XAi)).build(client);
//! let request = http::Request::post("https://api.x.ai/v1/chat/completions")
//!     .body(String::from(r#"{"model":"grok-code-fast-1","max_tokens":200}"#))?;
//! let result = stack.service.clone().oneshot(request).await;
//! println!("{}; spent today {}", Outcome::from_result(&result).class(), stack.spend.total());
//! # Ok(())
//! # }
//! ```
//!
//! # Configuration
//!
//! ```
//! use ballast::{Config, Preset};
//!
//! // From a map here; `Config::from_env(Preset::XAi)` reads the process environment.
//! let config = Config::from_vars(Preset::XAi, |name| match name {
//!     "DAILY_BUDGET_USD" => Some("20".into()),
//!     _ => None,
//! })
//! .unwrap();
//! assert_eq!(config.daily_budget.to_string(), "$20");
//! assert_eq!(config.request_timeout.as_secs(), 90);
//!
//! let error = Config::from_vars(Preset::XAi, |name| {
//!     (name == "XAI_API_KEY").then(|| "xai-abc\n".into())
//! })
//! .unwrap_err();
//! assert!(error.to_string().starts_with("XAI_API_KEY: the API key has leading or trailing whitespace"));
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod chat;
#[cfg(feature = "rustls")]
mod client;
mod config;
mod fallback;
mod in_band;
mod preset;
mod routing;
mod stack;

pub use chat::{ChatClient, ChatError, ChatReply};
#[cfg(feature = "rustls")]
pub use client::{HttpsClient, https_client};
pub use config::{Config, ConfigError, FallbackConfig};
pub use fallback::{Fallback, error_answer};
pub use in_band::InBandErrors;
pub use preset::Preset;
pub use routing::{Route, RouteBuilder, RouteService};
pub use stack::{DEFAULT_DEADLINE, Stack, StackBuilder, StackService};

pub use ballast_breaker as breaker;
pub use ballast_budget as budget;
pub use ballast_classify as classify;
pub use ballast_cost as cost;
pub use ballast_retry as retry;
pub use ballast_route as route;
pub use ballast_throttle as throttle;
