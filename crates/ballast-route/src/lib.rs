//! Failover across LLM provider targets.
//!
//! A [`Failover`] holds an ordered chain of [`Target`]s, each its own whole Ballast stack
//! (breaker, throttle, budget, key, prices) at its own base URL, maybe asking for another
//! model. A call goes to the first target; when its final outcome says that target cannot
//! serve it now (open or latched breaker, empty quota, refused key, context too long,
//! retries spent on a server error, overload, timeout or rate limit), the next target gets
//! it. A content filter's refusal goes back to the caller. Every call starts at the first
//! target, so the chain is back on the primary as soon as its breaker lets a call through.
//! The response names the target that answered ([`Served`]); each target's stack logs and
//! bills its own attempts.
//!
//! The route rewrites the model and the address and drops the caller's credentials; the
//! target's stack sets its own key. OpenAI-compatible targets (xAI, OpenAI, Groq, DeepSeek,
//! OpenRouter, any base URL) take the request as it is; a target that
//! [`speaks`](Target::speaks) Anthropic's or Gemini's [`Api`] gets an OpenAI chat request
//! translated, and its answer back as a chat completion (a stream as chat chunks); a
//! caller of Anthropic's Messages API is served by OpenAI-compatible and Gemini targets
//! the same way, its answer back as Anthropic's message or events, and a caller of
//! OpenAI's Responses API by Anthropic and Gemini targets, its answer back as a response.
//! Embeddings and legacy completions go to targets of their own API only, embeddings only
//! to one asked for the caller's model.
//!
//! Targets that serve alike share the load when grouped ([`Failover::share_load`]): a call
//! starts at the least busy of them. A target that can fail over spends at most half of
//! what is left of a call's deadline on an attempt ([`AttemptTimeoutLayer`], in each
//! target's stack), so the next has the rest.
//!
//! # Example
//!
//! ```
//! use ballast_classify::{OutcomeClass, RequestBody};
//! use ballast_route::{Failover, Served, Target};
//! use tower::{ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A primary that is down (503) and a fallback that answers, each standing in for a
//! // whole stack built by `ballast::StackBuilder`.
//! let answering = |status: u16| {
//!     service_fn(move |request: http::Request<RequestBody>| async move {
//!         let seen = request.uri().to_string();
//!         Ok::<_, std::convert::Infallible>(
//!             http::Response::builder().status(status).body(seen).unwrap(),
//!         )
//!     })
//! };
//! let route = Failover::new([
//!     Target::new("xai", "https://api.x.ai/v1".parse().unwrap(), answering(503)),
//!     Target::new("openai", "https://api.openai.com/v1".parse().unwrap(), answering(200))
//!         .model("gpt-4o-mini"),
//! ]);
//! let request = http::Request::post("/v1/chat/completions")
//!     .body(RequestBody::new(r#"{"model":"grok-code-fast-1"}"#))
//!     .unwrap();
//! let response = route.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.body(), "https://api.openai.com/v1/chat/completions");
//! let served = Served::of(&response).unwrap();
//! assert_eq!(&*served.target, "openai");
//! assert_eq!(served.passed_over, 1);
//! # }
//! ```

mod attempt_timeout;
mod chat_chunk;
mod failover;
mod from_messages;
mod from_responses;
mod gemini_tools;
mod hedge;
mod latencies;
mod served;
mod target;
mod tool_use;
mod translate;
#[cfg(test)]
mod translate_props;

pub use attempt_timeout::{AttemptTimeout, AttemptTimeoutFuture, AttemptTimeoutLayer};
pub use failover::{Failover, ResponseFuture};
pub use hedge::{Hedge, HedgeConfig, HedgeFuture, HedgeLayer};
pub use served::Served;
pub use target::Target;
pub use translate::{ANTHROPIC_MAX_TOKENS, Api};
