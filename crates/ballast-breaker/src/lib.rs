//! A circuit breaker layer for LLM API calls, tuned for their request rates.
//!
//! tower has no circuit breaker, and the usual defaults elsewhere (100 calls before judging)
//! take half a minute or forever at 150-250 requests a minute. [`Breaker`] judges a short
//! time window and runs of failures, counts only what says the provider is unhealthy (server
//! errors, overload, timeouts, network errors, per `ballast-classify`), and fails fast while
//! open:
//!
//! - **closed** → **open** after `consecutive_failures` provider failures in a row (a
//!   success from a call sent before the run began, such as a long completion still in
//!   flight when an outage starts, does not end the run), or when the window's failure rate
//!   or slow-call rate passes its threshold (once it holds `min_calls`);
//! - **open** for a time that grows on repeated trips, with jitter, capped; a server's wait
//!   hint can stretch it; calls fail at once with [`BreakerOpen`] (class `CircuitOpen`,
//!   carrying the key and the time to the next probe);
//! - **half-open**: at most `probes` calls in flight at once (a probe of an earlier
//!   half-open period still out keeps its slot); only this period's answers decide:
//!   `probe_successes` successes close, a failure reopens;
//! - **latched** on a rejected key or an exhausted quota: no short wait fixes those, so
//!   every call is refused for `latch_reprobe` (10 minutes), then one probe finds out
//!   whether the key was fixed or the account topped up (success closes, the same failure
//!   latches again); [`BreakerHandle::reset_key`] or [`BreakerHandle::reset`] at once;
//! - **forced open** or **disabled** through the handle, for every key
//!   ([`BreakerHandle::force_open`]) or one ([`BreakerHandle::force_open_key`], until its
//!   `reset_key`).
//!
//! With [`Patience`] ([`BreakerConfig::patient`]), a refused call does not fail at once: it
//! waits in its key's bounded line, within its [`Deadline`](ballast_classify::Deadline),
//! for the next chance (the open time's end, the probe's answer), and the waiters leave in
//! the order they came once the probe closes the breaker. Only a call whose deadline cannot
//! be met fails, told the open time.
//!
//! Breakers are per key (host and model by default), kept in a bounded map. The closed path
//! is lock-free (atomics, and a copy-on-write `ArcSwap<HashMap>` of keys: a lookup is one
//! load, a new key copies the map); transitions are rare and take a per-key lock.
//! Every transition is a `tracing` event and feeds the `metrics` counters
//! `ballast_breaker_transitions_total{breaker,to}` and gauge `ballast_breaker_closed{breaker}`.
//!
//! # Example
//!
//! ```
//! use ballast_breaker::{BreakerConfig, BreakerLayer, BreakerOpen, BreakerState};
//! use ballast_classify::{Outcome, OutcomeClass, ReadRequestLayer, RequestBody};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // A provider that answers 503 to everything.
//! let provider = tower::service_fn(|_request: http::Request<RequestBody>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::builder().status(503).body(()).unwrap())
//! });
//! let layer = BreakerLayer::new(BreakerConfig::default());
//! let handle = layer.handle();
//! // The request read once on top: the breaker keys by the model it names.
//! let service = ServiceBuilder::new()
//!     .layer(ReadRequestLayer::new())
//!     .layer(layer)
//!     .service(provider);
//!
//! let request = || {
//!     http::Request::post("https://api.x.ai/v1/chat/completions")
//!         .body(String::from(r#"{"model":"grok-code-fast-1"}"#))
//!         .unwrap()
//! };
//! for _ in 0..5 {
//!     let response = service.clone().oneshot(request()).await.unwrap();
//!     assert_eq!(response.status(), 503);
//! }
//! // Five failures in a row: the sixth call is refused without reaching the provider.
//! let error = service.clone().oneshot(request()).await.unwrap_err();
//! assert_eq!(Outcome::from_error(&*error).class(), OutcomeClass::CircuitOpen);
//! let snapshot = handle.get("api.x.ai", "grok-code-fast-1").unwrap();
//! assert!(matches!(snapshot.state, BreakerState::Open { .. }));
//! # }
//! ```
//!
//! # With retry
//!
//! Put the breaker inside the retry layer. Its refusals have class `CircuitOpen`, which
//! `ballast-retry` does not retry by default: an open breaker ends the call at once rather
//! than being hammered. To wait for the next probe instead, give the breaker [`Patience`]:
//! the call waits inside the breaker, where the next chance is known, not on a hint.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod error;
mod future;
mod handle;
mod key;
mod layer;
mod patience;
mod registry;
mod service;
mod state;
mod status;
mod window;

pub use config::{Admission, BreakerConfig, PartialTrip, Patience};
pub use error::BreakerOpen;
pub use future::ResponseFuture;
pub use handle::{BreakerHandle, KeySnapshot};
pub use key::{BreakerKey, HostAndModel, HostOnly, KeyFn, KeyParts};
pub use layer::BreakerLayer;
pub use service::Breaker;
pub use status::{BreakerState, LatchReason};
