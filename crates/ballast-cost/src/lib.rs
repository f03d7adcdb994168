//! What an LLM call costs, before and after, and a tower layer that logs and counts it.
//!
//! - [`Usd`]: exact money (integer picodollars), so a day of calls adds up without drift.
//! - [`Usage`]: token counts from any provider's response, normalised so cached tokens are
//!   never counted twice.
//! - [`PriceTable`]: prices per model with long-context tiers and provenance, built in for
//!   current xAI, OpenAI, Anthropic and Gemini models, overridable from a JSON file or code.
//!   A provider-reported cost (xAI's `cost_in_usd_ticks`) wins; an unknown model is priced at
//!   the dearest known price and flagged, never silently free.
//! - [`estimate`]: the worst case of a request before it is sent (prompt bound plus output
//!   cap, from its `RequestFacts`), for budget guards; the prompt bound is a cheap byte
//!   count, or with the `tokenizer` feature a real tokenizer (`Tokenizer`, `o200k_base` plus
//!   a margin).
//! - [`CostLogLayer`]: one `tracing` event per attempt and per logical call with OpenTelemetry
//!   GenAI names, `metrics` for requests, tokens, cost, duration and today's spend, and a
//!   [`HealthMonitor`] over error rate and latency. No prompt text and no key are logged
//!   unless content logging is switched on.
//!
//! # Example
//!
//! ```
//! use ballast_cost::{PriceTable, Usage, Usd, CostSource};
//!
//! let body = br#"{"choices":[],"usage":{"prompt_tokens":5000,"completion_tokens":2000,
//!     "prompt_tokens_details":{"cached_tokens":4000}}}"#;
//! let usage = Usage::from_body(body).unwrap();
//! assert_eq!((usage.input_tokens, usage.cached_input_tokens), (1000, 4000));
//!
//! let (cost, source) = PriceTable::builtin().cost(Some("grok-code-fast-1"), &usage);
//! // 1000 x $0.20 + 4000 x $0.02 + 2000 x $1.50, per million tokens.
//! assert_eq!(cost, "0.00328".parse::<Usd>().unwrap());
//! assert_eq!(source, CostSource::Estimated);
//! ```
//!
//! # Where the logger goes
//!
//! ```text
//! CostLogLayer(Scope::Call) -> retry -> ... -> CostLogLayer(Scope::Attempt) -> timeout -> classify -> client
//! ```
//!
//! The attempt logger reads usage from the classifier's buffered body (just the usage object,
//! at the span the classifier noted), so it sits above the classifier; the call logger puts a [`CallSpend`] in the request's extensions, the attempt
//! loggers add to it, and the call's event carries the total.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod charge;
mod estimate;
mod health;
mod layer;
mod meters;
mod money;
mod price;
mod record;
mod service;
mod spend;
mod usage;

/// How prompt tokens are bounded (defined beside the request facts that carry the count).
pub use ballast_classify::{HalfByteCount, TokenEstimator};
pub use charge::Charge;
#[cfg(feature = "tokenizer")]
pub use estimate::Tokenizer;
pub use estimate::{RequestEstimate, estimate, estimate_at};
pub use health::{HealthConfig, HealthMonitor, HealthStatus};
pub use layer::{CostLogLayer, Scope};
pub use money::{ParseUsdError, Usd};
pub use price::{CostSource, ModelPrice, Price, PriceFileError, PriceTable, PriceTier, Rate};
pub use service::{CostLog, ResponseFuture};
pub use spend::{CallSpend, CostTally, DailySpend};
pub use usage::Usage;
