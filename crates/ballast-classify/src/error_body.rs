//! [`error_body`]: an error written in the shape of each dialect's API, the inverse of
//! [`ProviderError`](crate::ProviderError)'s reading.

use http::StatusCode;

use crate::Dialect;

/// An error answered with `status` and `message`, in the error shape of `dialect`'s API:
///
/// | dialect | body |
/// |---|---|
/// | chat, Responses | OpenAI's `{"error": {"message", "type": kind, "param": null, "code"}}` |
/// | Anthropic's Messages | `{"type": "error", "error": {"type", "message"}}`, `type` named from the status as Anthropic names its errors (`invalid_request_error`, `authentication_error`, `rate_limit_error`, `api_error`, `overloaded_error`...) |
/// | Gemini | `{"error": {"code": status, "message", "status"}}`, `status` the RPC name of the status (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, `UNAVAILABLE`...) |
///
/// For a proxy or a route that answers each caller in the API it called.
///
/// ```
/// use ballast_classify::{Dialect, error_body};
/// use http::StatusCode;
///
/// let body = error_body(Dialect::Messages, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None, "Slow down.");
/// assert_eq!(body, r#"{"type":"error","error":{"type":"rate_limit_error","message":"Slow down."}}"#);
/// let body = error_body(Dialect::Chat, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None, "Slow down.");
/// assert_eq!(body, r#"{"error":{"message":"Slow down.","type":"rate_limited","param":null,"code":null}}"#);
/// ```
pub fn error_body(
    dialect: Dialect,
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
) -> String {
    // Written in order (SDKs and users read the fields as documented, and a map would sort
    // them); each string quoted and escaped by serde_json.
    let text = |s: &str| serde_json::Value::from(s).to_string();
    match dialect {
        // A call with no reading of its own (moderations, images, audio, files) is one of
        // OpenAI's APIs, or a compatible one's.
        Dialect::Chat
        | Dialect::Responses
        | Dialect::Completions
        | Dialect::Embeddings
        | Dialect::Other => {
            format!(
                r#"{{"error":{{"message":{},"type":{},"param":null,"code":{}}}}}"#,
                text(message),
                text(kind),
                code.map_or_else(|| "null".to_owned(), text),
            )
        }
        Dialect::Messages => format!(
            r#"{{"type":"error","error":{{"type":"{}","message":{}}}}}"#,
            anthropic_type(status),
            text(message),
        ),
        Dialect::Gemini => format!(
            r#"{{"error":{{"code":{},"message":{},"status":"{}"}}}}"#,
            status.as_u16(),
            text(message),
            rpc_status(status),
        ),
    }
}

/// Anthropic's name for an error answered with `status`.
pub(crate) fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        408 | 504 => "timeout_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The RPC status name Gemini answers `status` with.
fn rpc_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        408 | 504 => "DEADLINE_EXCEEDED",
        429 => "RESOURCE_EXHAUSTED",
        422 => "FAILED_PRECONDITION",
        400..=499 => "INVALID_ARGUMENT",
        502 | 503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_names_its_errors_by_status() {
        let kinds: Vec<&str> = [400, 401, 402, 403, 404, 413, 422, 429, 500, 502, 504, 529]
            .into_iter()
            .map(|s| anthropic_type(StatusCode::from_u16(s).unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                "invalid_request_error",
                "authentication_error",
                "billing_error",
                "permission_error",
                "not_found_error",
                "request_too_large",
                "invalid_request_error",
                "rate_limit_error",
                "api_error",
                "api_error",
                "timeout_error",
                "overloaded_error"
            ]
        );
    }

    #[test]
    fn a_message_of_any_text_is_escaped_and_reads_back_as_the_provider_error() {
        let message = "say \"hi\"\n\\ to {\"key\": 1}";
        for dialect in [Dialect::Chat, Dialect::Messages, Dialect::Gemini] {
            let body = error_body(
                dialect,
                StatusCode::BAD_REQUEST,
                "bad_request",
                None,
                message,
            );
            let read = crate::ProviderError::parse(body.as_bytes()).unwrap();
            assert_eq!(read.message(), Some(message), "{dialect:?}");
        }
        let body = error_body(
            Dialect::Chat,
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
            "m",
        );
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(json["error"]["code"].is_null());
    }
}
