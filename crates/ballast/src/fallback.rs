//! [`Fallback`]: any Ballast failure as a user-safe HTTP answer for web apps.

use std::error::Error as StdError;
use std::time::Duration;

use ballast_classify::{Dialect, Outcome, OutcomeClass};
use http::StatusCode;

/// What a web app should answer when an LLM call failed: a status, a message safe to show a
/// user (no provider detail, no key, no prompt), and `Retry-After` when waiting helps.
///
/// The detail is logged (`tracing`, target `ballast::fallback`) when the fallback is made.
///
/// ```
/// use ballast::Fallback;
/// use ballast_classify::{Outcome, OutcomeClass};
///
/// let fallback = Fallback::from_outcome(&Outcome::new(OutcomeClass::Timeout));
/// assert_eq!(fallback.status, http::StatusCode::GATEWAY_TIMEOUT);
/// let response = fallback.into_response();
/// assert!(response.body().contains("took too long"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The status to answer with.
    pub status: StatusCode,
    /// A message safe to show a user.
    pub message: &'static str,
    /// The outcome class, for the body's `type` and for logs.
    pub class: OutcomeClass,
    /// When to come back, if waiting helps.
    pub retry_after: Option<Duration>,
}

impl Fallback {
    /// The fallback for an outcome (of a response or an error).
    pub fn from_outcome(outcome: &Outcome) -> Self {
        use OutcomeClass::*;
        let class = outcome.class();
        let (status, message) = match class {
            CircuitOpen => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The AI service is temporarily unavailable. Please try again shortly.",
            ),
            BudgetExceeded => (
                StatusCode::TOO_MANY_REQUESTS,
                "The AI budget for today is used up. Please try again later.",
            ),
            RateLimited | Throttled => (
                StatusCode::TOO_MANY_REQUESTS,
                "The AI service is busy. Please try again in a moment.",
            ),
            Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "The AI service took too long to answer. Please try again.",
            ),
            ServerError | Overloaded | Network | InvalidResponse => (
                StatusCode::BAD_GATEWAY,
                "The AI service failed to answer. Please try again.",
            ),
            // The operator must act (fix the key, top up); the user can only wait.
            Auth | QuotaExhausted => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The AI service is not available right now.",
            ),
            ContextTooLong => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request is too long for the AI model. Please shorten it.",
            ),
            ContentFiltered => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "The AI service declined this request.",
            ),
            BadRequest => (
                StatusCode::BAD_REQUEST,
                "The request could not be processed.",
            ),
            // A local layer of the app's own (a tenant quota, a policy) said no.
            Refused => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The AI service cannot take this request right now.",
            ),
            _ => (
                StatusCode::BAD_GATEWAY,
                "The AI service failed to answer. Please try again.",
            ),
        };
        let retry_after = match class {
            CircuitOpen | BudgetExceeded | RateLimited | Throttled | Refused | Overloaded
            | ServerError => outcome
                .wait_hint()
                .map(|hint| hint.delay())
                .or((class == CircuitOpen).then_some(Duration::from_secs(5))),
            _ => None,
        };
        Self {
            status,
            message,
            class,
            retry_after,
        }
    }

    /// The fallback for an error from a Ballast stack; logs the error's detail.
    pub fn from_error(error: &(dyn StdError + 'static)) -> Self {
        let outcome = Outcome::from_error(error);
        tracing::warn!(target: "ballast::fallback", class = %outcome.class(), %error, "LLM call failed; answering with a fallback");
        if in_chain::<ballast_classify::RequestTooLarge>(error) {
            return Self {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: "The request is too large.",
                class: outcome.class(),
                retry_after: None,
            };
        }
        if in_chain::<ballast_budget::BudgetUnavailable>(error) {
            // Not "the budget is used up": the store that keeps it did not answer.
            return Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "The AI budget could not be checked right now. Please try again shortly.",
                class: outcome.class(),
                retry_after: Some(Duration::from_secs(1)),
            };
        }
        Self::from_outcome(&outcome)
    }

    /// An HTTP response: the status, `Retry-After` in whole seconds (rounded up), and a
    /// JSON body in OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`:
    /// `type` and `code` both the outcome class (`circuit_open`, `budget_exceeded`...), the
    /// field an OpenAI SDK surfaces as the error's `code`; `param` null.
    pub fn into_response(self) -> http::Response<String> {
        self.into_response_in(Dialect::Chat)
    }

    /// [`into_response`](Self::into_response) for a caller of `dialect`'s API: the body in
    /// that API's error shape (see [`error_answer`]), the outcome class as its code where
    /// the shape has one.
    pub fn into_response_in(self, dialect: Dialect) -> http::Response<String> {
        let class = self.class.as_str();
        let mut response = error_answer(dialect, self.status, class, Some(class), self.message);
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(secs.max(1)),
            );
        }
        response
    }
}

/// An error answer with `status` and `message` in the error shape of `dialect`'s API
/// (the body as [`error_body`](ballast_classify::error_body) writes it, JSON's content
/// type), for a proxy that answers each caller in the API it called.
///
/// ```
/// use ballast::error_answer;
/// use ballast::classify::Dialect;
/// use http::StatusCode;
///
/// let answer = error_answer(Dialect::Messages, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None, "Slow down.");
/// assert_eq!(
///     answer.body(),
///     r#"{"type":"error","error":{"type":"rate_limit_error","message":"Slow down."}}"#
/// );
/// ```
pub fn error_answer(
    dialect: Dialect,
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
) -> http::Response<String> {
    let body = ballast_classify::error_body(dialect, status, kind, code, message);
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Whether an error of type `E` is in `error`'s source chain.
fn in_chain<E: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(err) = current {
        if err.is::<E>() {
            return true;
        }
        current = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_classify::{ClassifiedError, HintSource, WaitHint};

    #[test]
    fn open_breaker_and_spent_budget_say_when_to_come_back() {
        let hint = WaitHint::new(Duration::from_millis(4200), HintSource::CircuitBreaker);
        let fallback = Fallback::from_outcome(
            &Outcome::new(OutcomeClass::CircuitOpen).with_wait_hint(Some(hint)),
        );
        let response = fallback.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "5");

        let hint = WaitHint::new(Duration::from_secs(3600), HintSource::BudgetWindow);
        let response = Fallback::from_outcome(
            &Outcome::new(OutcomeClass::BudgetExceeded).with_wait_hint(Some(hint)),
        )
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "3600");
        assert_eq!(
            response.body(),
            r#"{"error":{"message":"The AI budget for today is used up. Please try again later.","type":"budget_exceeded","param":null,"code":"budget_exceeded"}}"#
        );
    }

    #[test]
    fn every_answer_is_openai_shaped_json() {
        for class in OutcomeClass::ALL {
            let response = Fallback::from_outcome(&Outcome::new(class)).into_response();
            let body: serde_json::Value = serde_json::from_str(response.body())
                .unwrap_or_else(|e| panic!("{class}: {e}: {}", response.body()));
            let error = &body["error"];
            assert_eq!(error["type"], class.as_str(), "{class}");
            assert_eq!(error["code"], class.as_str(), "{class}");
            assert!(error["param"].is_null(), "{class}");
            assert!(
                error["message"].as_str().is_some_and(|m| m.ends_with('.')),
                "{class}"
            );
            assert_eq!(error.as_object().map(|o| o.len()), Some(4), "{class}");
        }
    }

    #[test]
    fn each_dialect_gets_the_error_shape_of_its_api() {
        use serde_json::json;
        let open = || Fallback::from_outcome(&Outcome::new(OutcomeClass::CircuitOpen));
        let message = "The AI service is temporarily unavailable. Please try again shortly.";
        let answer = |dialect| {
            let response = open().into_response_in(dialect);
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[http::header::RETRY_AFTER], "5");
            serde_json::from_str::<serde_json::Value>(response.body()).unwrap()
        };
        assert_eq!(
            answer(Dialect::Messages),
            json!({"type": "error", "error": {"type": "api_error", "message": message}})
        );
        assert_eq!(
            answer(Dialect::Gemini),
            json!({"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}})
        );
        assert_eq!(
            answer(Dialect::Responses),
            json!({"error": {"message": message, "type": "circuit_open", "param": null, "code": "circuit_open"}})
        );
    }

    #[test]
    fn every_class_has_its_answer() {
        use OutcomeClass::*;
        let expected = |class| match class {
            BudgetExceeded | RateLimited | Throttled => 429,
            CircuitOpen | Auth | QuotaExhausted | Refused => 503,
            Timeout => 504,
            ContextTooLong => 413,
            ContentFiltered => 422,
            BadRequest => 400,
            _ => 502,
        };
        for class in OutcomeClass::ALL {
            if class.is_success() {
                continue;
            }
            let fallback = Fallback::from_outcome(&Outcome::new(class));
            assert_eq!(fallback.status.as_u16(), expected(class), "{class}");
            assert_eq!(fallback.class, class);
            // A sentence for a user: no class name, no detail.
            assert!(
                fallback.message.ends_with('.'),
                "{class}: {}",
                fallback.message
            );
            assert!(!fallback.message.contains(class.as_str()), "{class}");
        }
    }

    #[test]
    fn errors_keep_their_detail_out_of_the_answer() {
        let error = ClassifiedError::new(
            Outcome::new(OutcomeClass::Auth),
            Some("Incorrect API key provided: xai-SECRET".into()),
        );
        let response = Fallback::from_error(&error).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!response.body().contains("SECRET"));
        assert!(!response.body().contains("key"));
    }
}
