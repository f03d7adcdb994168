//! Class-aware, jittered retry for LLM API calls that cannot storm.
//!
//! [`RetryPolicy`] is a `tower::retry::Policy` that reads each attempt's
//! [`Outcome`](ballast_classify::Outcome) from `ballast-classify` and decides:
//!
//! - **whether**: by class. Rate limits, server errors, overload, timeouts and network errors
//!   are retried; auth, bad requests, context too long, content filters and exhausted quota
//!   never are (override per class);
//! - **when**: per-class [`Backoff`] with [`Jitter`] (full by default), a hard cap on any wait,
//!   and the provider's wait hint weighed by [`HintTrust`] (clamped by default: hints lie);
//! - **whether it may**: a [`RetryBudget`] per provider key (host and model), shared by every
//!   clone (retries withdraw, successes deposit 20%), so a total outage costs about one call
//!   per logical request, not three, and one failing model cannot spend the others' retries;
//! - **until when**: a deadline across all attempts. No wait that would end past it starts,
//!   and a hint that points past it ends the call at once with [`HintBeyondDeadline`].
//!
//! Each retried request carries [`Attempt`](ballast_classify::Attempt)`(n)` in its extensions
//! and the final response carries the attempt count.
//!
//! # Example
//!
//! The classifier, tower's per-attempt timeout and this retry over hyper-util's client, here
//! pointed at the simulated provider on loopback:
//!
//! ```
//! use std::time::Duration;
//!
//! use ballast_classify::{Attempt, ClassifyLayer, Outcome, OutcomeClass, Provider};
//! use ballast_retry::{Backoff, RetryLayer, RetryPolicy};
//! use ballast_sim::{BurstModel, Latency, Scenario, SimServer, Simulator};
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::timeout::TimeoutLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // A provider that fails half its calls with a 5xx; with this seed, the first one.
//! let provider = SimServer::start(Simulator::new(Scenario {
//!     seed: 3,
//!     server_errors: BurstModel { enter_bad: 0.0, leave_bad: 1.0, fail_when_good: 0.5, fail_when_bad: 0.5, step: None },
//!     latency: Latency::INSTANT,
//!     ..Scenario::healthy()
//! }))
//! .await?;
//!
//! let policy = RetryPolicy::builder()
//!     .backoff(OutcomeClass::ServerError, Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2)))
//!     .build();
//! let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let service = ServiceBuilder::new()
//!     .layer(RetryLayer::new(policy))
//!     .layer(TimeoutLayer::new(Duration::from_secs(90))) // per attempt
//!     .layer(ClassifyLayer::new(Provider::XAi))
//!     .service(client);
//!
//! let request = http::Request::post(format!("{}/v1/chat/completions", provider.url()))
//!     .body(Full::new(Bytes::from_static(br#"{"model":"grok-code-fast-1","max_tokens":10}"#)))?;
//! // The first attempt gets a 503, is classified retryable, and the second succeeds.
//! let response = service.oneshot(request).await?;
//! assert!(Outcome::from_response(&response).is_success());
//! assert_eq!(Attempt::of_response(&response).get(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! Request bodies must be `Clone` to be replayed: `Full<Bytes>`, `Bytes` and `String` clone
//! cheaply. For a streaming body, collect it into `Bytes` first (LLM requests are small), or
//! the call cannot be retried.
//!
//! The policy is written for errors of type `BoxError`, which is what tower's `Timeout` (and
//! so the usual stack below retry) returns.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod backoff;
mod budget;
mod error;
mod layer;
mod policy;

pub use backoff::{Backoff, HintTrust, Jitter};
pub use budget::RetryBudget;
pub use error::HintBeyondDeadline;
pub use layer::RetryLayer;
pub use policy::{ClassRule, Decision, RetryConfig, RetryPolicy, RetryPolicyBuilder, StopReason};
