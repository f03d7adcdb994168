//! Keep LLM API calls alive, cheap and observable when the provider is flaky.
//!
//! The facade over the Ballast layers. So far it holds what every app needs around them:
//! provider [`Preset`]s, a checked [`Config`] read from the environment (the story's
//! `XAI_API_KEY`, `DAILY_BUDGET_USD`, `MAX_TOKENS_DEFAULT`, `REQUEST_TIMEOUT`), and the
//! [`Fallback`] that turns any failure into a user-safe HTTP answer. The layers themselves
//! are re-exported; `examples/custom_stack.rs` composes them.
//!
//! # Example
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

mod config;
mod fallback;
mod preset;

pub use config::{Config, ConfigError};
pub use fallback::Fallback;
pub use preset::Preset;

pub use ballast_breaker as breaker;
pub use ballast_budget as budget;
pub use ballast_classify as classify;
pub use ballast_cost as cost;
pub use ballast_retry as retry;
