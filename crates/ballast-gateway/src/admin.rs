//! The admin routes, behind the admin token: breaker state per key, resetting a key (or a
//! target's breakers), and the budget's read-out.
//!
//! Without a configured token they do not exist (404, as any unknown path); with one, a
//! call without it, or with another, is answered 401 in OpenAI's error shape.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::app::{App, breakers_json, budget_json, openai_error, scopes_json};

/// The most a reset request's body may hold.
const RESET_BODY_LIMIT: usize = 16 * 1024;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/breakers", get(breakers))
        .route("/admin/breakers/reset", post(reset))
        .route("/admin/budget", get(budget))
}

/// `None` when the call may go on; the answer otherwise.
fn refused(app: &App, headers: &http::HeaderMap) -> Option<Response> {
    let Some(token) = &app.admin_token else {
        return Some(openai_error(
            http::StatusCode::NOT_FOUND,
            "not_found",
            "The admin routes are off: set BALLAST_ADMIN_TOKEN to turn them on.",
        ));
    };
    let offered = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match offered {
        Some(offered) if token.matches(offered) => None,
        _ => Some(openai_error(
            http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "The admin routes need the admin token as a bearer token.",
        )),
    }
}

/// Every target's breakers, key by key.
async fn breakers(State(app): State<Arc<App>>, headers: http::HeaderMap) -> Response {
    if let Some(answer) = refused(&app, &headers) {
        return answer;
    }
    axum::Json(json!({ "breakers": breakers_json(&app) })).into_response()
}

/// Resets breakers: `{"target", "host", "model"}` resets that key (of every target when
/// `target` is left out); `{"target"}` alone, every key of that target; `{}`, all of them.
/// Answers how many keys were reset.
async fn reset(
    State(app): State<Arc<App>>,
    headers: http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    // The token first: nobody without it gets a body read.
    if let Some(answer) = refused(&app, &headers) {
        return answer;
    }
    let Ok(body) = axum::body::to_bytes(body, RESET_BODY_LIMIT).await else {
        return openai_error(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request",
            "A reset request is a small JSON object.",
        );
    };
    let request: serde_json::Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(value @ serde_json::Value::Object(_)) => value,
            _ => {
                return openai_error(
                    http::StatusCode::BAD_REQUEST,
                    "bad_request",
                    "Expected a JSON object with optional target, host and model.",
                );
            }
        }
    };
    let field = |name: &str| request.get(name).and_then(serde_json::Value::as_str);
    let (target, host, model) = (field("target"), field("host"), field("model"));
    if host.is_some() != model.is_some() {
        return openai_error(
            http::StatusCode::BAD_REQUEST,
            "bad_request",
            "A key is a host and a model: give both, or neither.",
        );
    }
    let mut reset = 0;
    for info in app
        .targets
        .iter()
        .filter(|info| target.is_none_or(|name| info.name == name))
    {
        match (host, model) {
            (Some(host), Some(model)) => reset += usize::from(info.breakers.reset_key(host, model)),
            _ => {
                reset += info.breakers.snapshot().len();
                info.breakers.reset();
            }
        }
    }
    tracing::info!(target: "ballast::gateway", ?target, ?host, ?model, reset, "breakers reset by the admin route");
    axum::Json(json!({ "reset": reset })).into_response()
}

/// The budget's read-out.
async fn budget(State(app): State<Arc<App>>, headers: http::HeaderMap) -> Response {
    if let Some(answer) = refused(&app, &headers) {
        return answer;
    }
    let (budget, spent_out) = budget_json(&app).await;
    axum::Json(json!({
        "budget": budget,
        "spent_out": spent_out,
        "scopes": scopes_json(&app).await,
    }))
    .into_response()
}
