//! A simulated flaky LLM provider, for tests, examples and benchmarks.
//!
//! One [`Scenario`] drives two faces: [`Simulator`], an in-process `tower::Service` over
//! `http` types, and [`SimServer`], the same provider on a loopback HTTP port. It speaks the
//! providers' own JSON (xAI, OpenAI, Anthropic, Gemini: see [`Flavor`]) and plays the
//! failures that hurt in production: a hidden rate limit below the documented one that moves
//! over time, wrong wait hints, 5xx in bursts, hangs, broken bodies, errors inside 200s, an
//! exhausted quota, rejected keys.
//!
//! Everything is deterministic from the scenario's seed, and time follows tokio's clock, so
//! under `tokio::time::pause()` a simulated hour takes milliseconds. The [`Ledger`] records
//! every request, its outcome and what the provider billed, so tests can compare what a
//! client believes with what really happened.
//!
//! It depends on no other Ballast crate: it plays the provider, not the client.
//!
//! # Example
//!
//! ```
//! use ballast_sim::{Scenario, SimOutcome, Simulator};
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let provider = Simulator::new(Scenario::bad_day());
//! for _ in 0..20 {
//!     let request = http::Request::post("/v1/chat/completions")
//!         .body(Full::new(Bytes::from(r#"{"model":"grok-code-fast-1","max_tokens":100}"#)))?;
//!     let response = provider.clone().oneshot(request).await?;
//!     println!("{}", response.status());
//! }
//! let ledger = provider.ledger();
//! assert_eq!(ledger.len(), 20);
//! println!("billed ${:.6}, {} rate limited", ledger.billed_usd(), ledger.count(SimOutcome::RateLimited));
//! # Ok(())
//! # }
//! ```
//!
//! # Presets
//!
//! | preset | what it plays |
//! |---|---|
//! | [`Scenario::healthy`] | no limits, no faults |
//! | [`Scenario::total_outage`] | 503 for every request |
//! | [`Scenario::outage_then_recovery`] | healthy with an outage window |
//! | [`Scenario::lying_rate_limits`] | documents 480 rpm, enforces 250, 150, then 200; random hints |
//! | [`Scenario::bad_day`] | the above plus 5xx bursts, hangs, broken bodies, errors in 200s |
//!
//! With the `proptest` feature, `strategy::flaky_scenario()` draws random flaky providers
//! for property tests.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod embeddings;
mod ledger;
mod other;
mod scenario;
mod server;
mod simulator;
#[cfg(feature = "proptest")]
pub mod strategy;
mod stream;
mod tools;
mod wire;

pub use ledger::{Ledger, LedgerEntry, SimOutcome};
pub use other::{IMAGE_TOKENS, PER_IMAGE_TICKS};
pub use scenario::{
    BurstModel, ExpectedKey, Flavor, Hangs, HintStyle, Latency, LimitStep, Outage, Overload, Price,
    Scenario, StreamFaults, TICKS_PER_USD,
};
pub use server::SimServer;
pub use simulator::{BoxError, Simulator, Streaming};
pub use stream::{SimBody, StreamCut, completion_text};
pub use tools::{THOUGHT_SIGNATURE, TOOL_INPUT};

/// A current-thread tokio runtime with its clock paused, for driving a [`Simulator`]: waits
/// take no real time, so a simulated hour runs in milliseconds, the same way every run.
pub fn paused_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
}
