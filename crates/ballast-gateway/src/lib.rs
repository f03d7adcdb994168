//! An OpenAI-compatible gateway in front of any SDK, backed by the Ballast stack.
//!
//! ```text
//! cargo run --release -p ballast-gateway            # no key: the simulated bad day
//! OPENAI_BASE_URL=http://127.0.0.1:8080/v1 python my_app.py
//! ```
//!
//! Point any OpenAI SDK at it with any API key: the gateway drops the caller's credentials
//! and calls the configured provider with its own, through the whole stack (retry,
//! breaker with patience, throttle where the preset's limits lie, budget, cost logging,
//! classification), falling back along `BALLAST_FALLBACKS`. Anthropic's SDKs (and the
//! tools built on them) can point at it too (`ANTHROPIC_BASE_URL=http://127.0.0.1:8080`):
//! `POST /v1/messages` goes as it is to the targets that speak Anthropic's API, its
//! errors in Anthropic's shape; so do Google's Gen AI SDKs, whose `generateContent` calls
//! go as they are to the Gemini targets. Settings come from the
//! environment, over an optional TOML file (`BALLAST_CONFIG`); see [`GatewayConfig`] for
//! each one and README.md for the reference.
//!
//! # Example
//!
//! ```
//! use ballast_gateway::{Gateway, GatewayConfig, Settings};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let settings = Settings::from_toml("provider = \"openai\"\nthrottle = \"off\"", |_| None)?;
//! let gateway = Gateway::new(&GatewayConfig::from_settings(&settings)?, None)?;
//! let answer = gateway
//!     .router()
//!     .oneshot(http::Request::get("/v1/models").body(axum::body::Body::empty())?)
//!     .await?;
//! assert_eq!(answer.status(), 200);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod app;
mod body;
mod cache;
mod config;
mod count_tokens;
mod headers;
#[cfg(feature = "otel")]
mod otel;
#[cfg(not(feature = "otel"))]
mod otel_off;
mod rate;
mod serve;
mod timeout;

pub use app::Gateway;
pub use body::{BodyTimedOut, DeadlineBody};
pub use config::{
    AdminToken, ClientKey, GatewayConfig, GatewayError, LogFormat, NamedRoute, Settings,
    ThrottleSetting,
};
#[cfg(feature = "otel")]
pub use otel::Otel;
#[cfg(not(feature = "otel"))]
pub use otel_off::Otel;
pub use serve::{DRAIN, serve, shutdown_signal};
