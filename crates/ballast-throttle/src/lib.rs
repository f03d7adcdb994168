//! Learn the rate limit the provider really enforces, and send at that rate.
//!
//! A provider's documented limit is a ceiling, not a promise: 429s arrive below it and the
//! real limit moves. Retrying after 429s cannot fix that; pacing can. [`ThrottleLayer`]
//! gives each call a turn at the current pace, shared by every clone and caller (each turn
//! that comes going to the newest waiting call, unless one has waited 5 s:
//! [`ThrottleConfig::newest_first`]), and learns the pace from the answers: a 429 lowers
//! it by 10% (once per 3 s cooldown: later 429s answer calls sent before the cut), before
//! any 429 successes raise it 8% a second, and after one the pace holds for 10 s, then probes 0.5% a second above it
//! (the defaults; [`ThrottleConfig`]). The provider's remaining/reset headers may slow it, never speed it
//! up. Latency is not read: an LLM's latency follows the length of its answer, not
//! congestion. A call whose turn is too far off, or that finds the queue full, is refused at
//! once with [`Throttled`] (class `throttled`, with the wait as its hint).
//!
//! Fleet mode (feature `redis`): `ThrottleLayer::fleet` takes turns from one timeline in
//! Redis (a GCRA in a Lua script, on the server's clock) shared by every process with the
//! same API key; a 429 in one process pauses them all. Without Redis a process falls back to
//! its local limiter and logs a warning: a turn not given within 250 ms is taken locally,
//! and while Redis is down it is asked again once a second.
//!
//! # Example
//!
//! ```
//! use ballast_classify::{ClassifyLayer, Outcome, Provider};
//! use ballast_sim::{Scenario, Simulator};
//! use ballast_throttle::{ThrottleConfig, ThrottleLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // xAI documents 480 requests a minute; start there and let the answers teach the rest.
//! let throttle = ThrottleLayer::new(ThrottleConfig::starting_at(480.0));
//! let handle = throttle.handle();
//! let service = ServiceBuilder::new()
//!     .layer(throttle)
//!     .layer(ClassifyLayer::new(Provider::XAi))
//!     .service(Simulator::new(Scenario::lying_rate_limits()));
//! let request = http::Request::post("https://api.x.ai/v1/chat/completions")
//!     .body(String::from(r#"{"model":"grok-code-fast-1","max_tokens":50}"#))?;
//! let result = service.oneshot(request).await;
//! println!("{}; pacing at {:.0} requests/min", Outcome::from_result(&result).class(), handle.rate_rpm());
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod error;
#[cfg(feature = "redis")]
mod fleet;
mod layer;
mod limiter;
mod line;
mod service;

pub use config::ThrottleConfig;
pub use error::Throttled;
#[cfg(feature = "redis")]
pub use fleet::{Fleet, FleetError};
pub use layer::{ThrottleHandle, ThrottleLayer};
pub use service::{ResponseFuture, Throttle};
