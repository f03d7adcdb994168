//! A spend cap for LLM calls that concurrent requests cannot overshoot.
//!
//! A check of "spent so far < budget" before each call lets every concurrent call through
//! at once. [`BudgetGuard`] instead **reserves** each call's worst case (prompt bound plus
//! output cap at the model's price, from `ballast-cost`) atomically against what is left,
//! refuses the call with [`BudgetExceeded`] when it does not fit, and **settles** the actual
//! cost when the response arrives. While every call's usage stays within its output cap,
//! what the provider bills never exceeds the budget.
//!
//! - Windows: daily at UTC midnight (or an offset), or monthly ([`BudgetWindow`]).
//! - Scopes: a global budget plus per-scope budgets for a [`BudgetScope`] on the request.
//! - Stores: [`SpendStore`]; [`MemoryStore`] (the default, lock-free), and with the `sqlite`
//!   feature `SqliteStore` (persistent, shared by the processes of one host), and with the
//!   `redis` feature `RedisStore` (shared by a fleet).
//! - An attempt the provider may have billed is charged at its reservation unless its usage
//!   is known, also when its caller drops it after it was sent; only provider error statuses
//!   and attempts that provably never left are released (see [`BudgetGuard`]).
//! - A store failure, or a store call past its deadline (250 ms), fails closed
//!   ([`BudgetUnavailable`]) unless configured to fail open; a settlement the store cannot
//!   take is kept (in an outbox file too, with [`BudgetConfig::outbox`]) and retried.
//! - Shared stores survive crashes: reservations of a dead process are reclaimed at their
//!   worst case when their lease ends, and ids are unique across a store's data loss.
//!
//! # Example
//!
//! ```
//! use ballast_budget::{BudgetConfig, BudgetLayer};
//! use ballast_classify::{Outcome, OutcomeClass, ReadRequestLayer, RequestBody};
//! use ballast_cost::Usd;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let provider = tower::service_fn(|_request: http::Request<RequestBody>| async {
//!     let body = String::from(r#"{"usage":{"prompt_tokens":10,"completion_tokens":100}}"#);
//!     Ok::<_, std::convert::Infallible>(http::Response::new(body))
//! });
//! // One cent a day; each call may produce up to 2 000 tokens at $1.50 a million: $0.003.
//! let budget = BudgetLayer::new(BudgetConfig::daily("0.01".parse().unwrap()));
//! // The request read once on top: the guard prices its model, bounds its prompt, reads
//! // its cap.
//! let service = ServiceBuilder::new()
//!     .layer(ReadRequestLayer::new())
//!     .layer(budget.clone())
//!     .service(provider);
//! let request = || {
//!     http::Request::post("/v1/chat/completions")
//!         .body(String::from(r#"{"model":"grok-code-fast-1","max_tokens":2000}"#))
//!         .unwrap()
//! };
//! // Three worst cases fit at once; a fourth would not, but each settles at its real cost.
//! for _ in 0..20 {
//!     service.clone().oneshot(request()).await.unwrap();
//! }
//! let readout = budget.readout(None).await.unwrap();
//! assert_eq!(readout.reserved, Usd::ZERO);
//! assert!(readout.spent < "0.01".parse().unwrap());
//! # }
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod error;
mod future;
mod guard;
mod id;
mod layer;
mod memory;
mod outbox;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
mod window;

use std::sync::Arc;

pub use config::BudgetConfig;
pub use error::{BudgetExceeded, BudgetUnavailable};
pub use future::ResponseFuture;
pub use guard::BudgetGuard;
pub use layer::BudgetLayer;
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::{Persistence, PersistenceCheck, RedisStore};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{Limits, Readout, Reservation, Reserve, SpendStore, StoreError};
pub use window::{BudgetWindow, Period, WindowId};

/// The budget scope of a request (tenant, user, API key), as a request extension. Scopes
/// with a limit in the [`BudgetConfig`] are held to it on top of the global budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetScope(pub Arc<str>);
