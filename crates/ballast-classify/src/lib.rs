//! One outcome vocabulary for LLM API calls, and the tower layer that produces it.
//!
//! Providers fail in many dialects: a 429 with a wrong `retry-after`, a 400 that really means
//! "bad key", an error object inside a 200, a 529 "overloaded". This crate turns each
//! response or transport error into one [`Outcome`]: an [`OutcomeClass`] that says whether
//! to retry and whether the provider is unhealthy, the HTTP status, and the provider's
//! [`WaitHint`] if it gave one. Every other Ballast layer (retry, breaker, budget, cost) reads
//! that verdict from the response's extensions or from the error, and never parses a body
//! again.
//!
//! # Example
//!
//! ```
//! use ballast_classify::{ClassifyLayer, Outcome, OutcomeClass, Provider};
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // Any HTTP client service will do; this one always answers like a rate-limited xAI.
//! let client = tower::service_fn(|_request: http::Request<String>| async {
//!     let body = r#"{"code":"Too many requests","error":"Please try again in 20s."}"#;
//!     Ok::<_, std::convert::Infallible>(
//!         http::Response::builder()
//!             .status(429)
//!             .header("content-type", "application/json")
//!             .body(Full::new(Bytes::from(body)))
//!             .unwrap(),
//!     )
//! });
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(ClassifyLayer::new(Provider::XAi))
//!     .service(client);
//!
//! let request = http::Request::post("https://api.x.ai/v1/chat/completions").body(String::new())?;
//! let response = service.ready().await?.call(request).await?;
//!
//! let outcome = Outcome::from_response(&response);
//! assert_eq!(outcome.class(), OutcomeClass::RateLimited);
//! assert!(outcome.is_retryable());
//! assert_eq!(outcome.wait_hint().unwrap().delay().as_secs(), 20);
//! # Ok(())
//! # }
//! ```
//!
//! # What travels where
//!
//! | where | what | written by | read by |
//! |---|---|---|---|
//! | response extensions | [`Outcome`] | [`Classify`] | retry, breaker, budget, cost |
//! | response extensions | [`ProviderError`] (failures with an error body) | [`Classify`] | logging, fallbacks |
//! | response body | [`ClassifiedBody`] (buffered bytes, and where the usage object sits: [`UsageSpan`], with its counts: [`UsageFields`]) | [`Classify`] | cost (usage) |
//! | error | [`ClassifiedError`] (transport, unreadable body) | [`Classify`] | all, via [`Outcome::from_error`] |
//! | request and response extensions | [`Attempt`] | retry | cost, logs |
//! | request extensions | [`RequestFacts`] (dialect, model, stream, output cap, prompt bound), read once from the collected [`RequestBody`] | [`ReadRequestLayer`], outermost; [`rewrite`] keeps them in step with the body | breaker, throttle, budget, cost |
//! | response body | a watched stream ([`stream`]): its end heard through [`ClassifiedBody::on_end`] with a [`StreamSummary`] | [`Classify`] | budget, cost, breaker |
//!
//! # Modules
//!
//! - [`stream`]: streamed answers held back to their first content, watched as they pass,
//!   ended by their terminal event or failed by a cut, a stall or an error event.
//! - [`rewrite`]: changes to a read request (default output cap, model) that keep its body
//!   and its facts in step.
//! - [`hint`]: wait-hint parsing for every header and body style, safe on bad input.
//! - [`json`]: one top-level value, or an object's members, out of a JSON body, without
//!   parsing the rest.
//! - [`ApiKey`]: checks a key's shape before the first request.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod attempt;
mod body;
mod class;
mod classify;
mod deadline;
mod error;
mod error_body;
mod events;
mod facts;
mod future;
pub mod hint;
pub mod json;
mod key;
mod layer;
mod outcome;
mod provider;
mod provider_error;
mod read;
mod read_request;
mod request;
pub mod rewrite;
mod scan;
mod service;
mod sse;
pub mod stream;
mod usage_fields;
mod usage_span;
mod watched;
pub mod window;

pub use attempt::{Attempt, Queued, Sent, Speculative};
pub use body::ClassifiedBody;
pub use class::OutcomeClass;
pub use classify::{ClassifyResponse, ResponseView, Verdict};
pub use deadline::{Deadline, FailFast};
pub use error::{BodyTooLarge, BoxError, ClassifiedError};
pub use error_body::error_body;
pub use events::StreamUsage;
pub use facts::{
    Dialect, HalfByteCount, IMAGE_OUTPUT_BOUND, ModelName, RequestFacts, TokenEstimator,
};
pub use future::ResponseFuture;
pub use hint::{HintSource, HintTrust, MAX_WAIT_HINT, WaitHint};
pub use key::{ApiKey, KeyError};
pub use layer::{ClassifyLayer, DEFAULT_BODY_LIMIT, DEFAULT_EMBEDDINGS_BODY_LIMIT};
pub use outcome::{Outcome, never_sent};
pub use provider::Provider;
pub use provider_error::ProviderError;
pub use read_request::{
    DEFAULT_REQUEST_LIMIT, ReadRequest, ReadRequestLayer, RequestBody, RequestBodyError,
    RequestTooLarge, ResponseFuture as ReadRequestFuture, copy_request,
};
pub use request::{InspectBody, model_of};
pub use service::Classify;
pub use stream::{StreamEnd, StreamError, StreamSummary, StreamTimeouts};
pub use usage_fields::{UsageDetails, UsageField, UsageFields, chat_output_tokens};
pub use usage_span::UsageSpan;
