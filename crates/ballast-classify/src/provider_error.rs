//! [`ProviderError`]: the error object a provider put in a response body, in any dialect.

use std::fmt;

use serde::Deserialize;

/// The longest message kept, in bytes. Provider messages are a sentence or two; a longer one
/// is most likely an HTML error page and not worth carrying around.
const MAX_MESSAGE: usize = 512;

/// Key prefixes that are masked wherever a provider message echoes a key back.
const KEY_PREFIXES: [&str; 4] = ["xai-", "sk-", "AIza", "gsk_"];

/// The error object a provider put in a body, read from any of the dialects Ballast knows.
///
/// | dialect | shape |
/// |---|---|
/// | OpenAI and compatibles | `{"error": {"message", "type", "param", "code"}}` |
/// | xAI | `{"code": "...", "error": "..."}` (flat), or the OpenAI shape |
/// | Anthropic | `{"type": "error", "error": {"type", "message", "details": {"error_code"}}, "request_id"}` |
/// | Gemini | `{"error": {"code": 429, "message", "status", "details": [...]}}`, or a one-element array of that |
///
/// The message is truncated to 512 bytes and anything that looks like an API key is masked,
/// so a `ProviderError` is safe to log.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProviderError {
    kind: Option<Box<str>>,
    code: Option<Box<str>>,
    status: Option<Box<str>>,
    http_code: Option<u16>,
    message: Option<Box<str>>,
    reason: Option<Box<str>>,
    retry_delay: Option<Box<str>>,
}

impl ProviderError {
    /// Reads the error object from a JSON body, or `None` when the body holds none.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
        let envelope = if *first == b'[' {
            // Gemini's streaming endpoints wrap the error in an array.
            serde_json::from_slice::<Vec<Envelope>>(body)
                .ok()?
                .into_iter()
                .next()?
        } else {
            serde_json::from_slice::<Envelope>(body).ok()?
        };
        envelope.into_provider_error()
    }

    /// The error's type: OpenAI `type`, Anthropic `error.type` (`"overloaded_error"`).
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// The error's code: OpenAI `code` (`"insufficient_quota"`), xAI's top-level `code`.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Gemini's status name (`"RESOURCE_EXHAUSTED"`).
    pub fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }

    /// A numeric HTTP-like code inside the body (Gemini, OpenRouter's errors in 200 bodies).
    pub fn http_code(&self) -> Option<u16> {
        self.http_code
    }

    /// The human-readable message, truncated and with keys masked.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Gemini's `ErrorInfo.reason` (`"API_KEY_INVALID"`), Anthropic's `details.error_code`
    /// (`"enforced_spend_limit_reached"`).
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Gemini's `RetryInfo.retryDelay` as written (`"34s"`).
    pub fn retry_delay(&self) -> Option<&str> {
        self.retry_delay.as_deref()
    }

    /// Whether `needle` (lower case) appears in the type, code, status, reason or message.
    pub(crate) fn mentions(&self, needle: &str) -> bool {
        [
            &self.kind,
            &self.code,
            &self.status,
            &self.reason,
            &self.message,
        ]
        .into_iter()
        .flatten()
        .any(|text| contains_ignore_ascii_case(text, needle))
    }

    /// Whether the type, code, status or reason is exactly `name` (any case).
    pub(crate) fn is_named(&self, name: &str) -> bool {
        [&self.kind, &self.code, &self.status, &self.reason]
            .into_iter()
            .flatten()
            .any(|text| text.eq_ignore_ascii_case(name))
    }
}

impl fmt::Debug for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("ProviderError");
        let fields = [
            ("kind", &self.kind),
            ("code", &self.code),
            ("status", &self.status),
            ("reason", &self.reason),
            ("message", &self.message),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                s.field(name, value);
            }
        }
        if let Some(code) = self.http_code {
            s.field("http_code", &code);
        }
        s.finish()
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .kind
            .as_deref()
            .or(self.code.as_deref())
            .or(self.status.as_deref());
        match (name, self.message.as_deref()) {
            (Some(name), Some(message)) => write!(f, "{name}: {message}"),
            (Some(name), None) => f.write_str(name),
            (None, Some(message)) => f.write_str(message),
            (None, None) => f.write_str("provider error"),
        }
    }
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// Truncates to [`MAX_MESSAGE`] bytes on a char boundary and masks key-like words.
pub(crate) fn sanitize_message(message: &str) -> Box<str> {
    let mut end = message.len().min(MAX_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message[..end];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = KEY_PREFIXES
        .iter()
        .filter_map(|prefix| find_word_start(rest, prefix))
        .min()
    {
        out.push_str(&rest[..start]);
        let word_len = rest[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | ')'))
            .unwrap_or(rest.len() - start);
        out.push_str("[redacted]");
        rest = &rest[start + word_len..];
    }
    out.push_str(rest);
    out.into_boxed_str()
}

/// The byte index of `prefix` where it starts a word in `text`.
fn find_word_start(text: &str, prefix: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(prefix) {
        let index = from + found;
        let at_word_start = text[..index]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        if at_word_start {
            return Some(index);
        }
        from = index + prefix.len();
    }
    None
}

// ---- the wire shapes ------------------------------------------------------------------------

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    error: Option<ErrorField>,
    #[serde(default, rename = "type")]
    kind: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Text(String),
    Object(ErrorObject),
    Other(serde_json::Value),
}

#[derive(Deserialize, Default)]
struct ErrorObject {
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    kind: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    status: Option<serde_json::Value>,
    /// Gemini: a list of typed details; Anthropic: an object (`error_code`).
    #[serde(default)]
    details: Option<serde_json::Value>,
}

impl Envelope {
    fn into_provider_error(self) -> Option<ProviderError> {
        let mut out = ProviderError::default();
        match self.error? {
            ErrorField::Text(message) => {
                // xAI's flat shape: {"code": "...", "error": "..."}.
                out.message = Some(sanitize_message(&message));
                apply_code(&mut out, self.code);
            }
            ErrorField::Object(object) => {
                out.message = object
                    .message
                    .as_ref()
                    .and_then(serde_json::Value::as_str)
                    .map(sanitize_message);
                out.kind = short_text(object.kind.as_ref());
                apply_code(&mut out, object.code);
                out.status = short_text(object.status.as_ref());
                match &object.details {
                    Some(serde_json::Value::Array(details)) => {
                        for detail in details {
                            if let Some(reason) = detail.get("reason") {
                                out.reason = out.reason.or_else(|| short_text(Some(reason)));
                            }
                            if let Some(delay) = detail.get("retryDelay") {
                                out.retry_delay =
                                    out.retry_delay.or_else(|| short_text(Some(delay)));
                            }
                        }
                    }
                    // Anthropic: `"details": {"error_code": "enforced_spend_limit_reached"}`.
                    Some(details @ serde_json::Value::Object(_)) => {
                        out.reason = short_text(details.get("error_code"));
                    }
                    _ => {}
                }
                if out.code.is_none() && out.http_code.is_none() {
                    apply_code(&mut out, self.code);
                }
            }
            ErrorField::Other(serde_json::Value::Null) => return None,
            ErrorField::Other(_) => {}
        }
        if out.kind.is_none() {
            // Anthropic's outer `"type": "error"` says nothing the inner type does not.
            out.kind = short_text(self.kind.as_ref()).filter(|kind| &**kind != "error");
        }
        Some(out)
    }
}

fn apply_code(out: &mut ProviderError, code: Option<serde_json::Value>) {
    match code {
        Some(serde_json::Value::Number(n)) => {
            out.http_code = n.as_u64().and_then(|n| u16::try_from(n).ok());
        }
        Some(serde_json::Value::String(s)) => {
            if let Ok(n) = s.trim().parse::<u16>() {
                out.http_code = Some(n);
            } else {
                out.code = Some(truncate_name(&s));
            }
        }
        _ => {}
    }
}

fn short_text(value: Option<&serde_json::Value>) -> Option<Box<str>> {
    value?.as_str().map(truncate_name)
}

/// Type, code and status names are identifiers; cap them like messages.
fn truncate_name(name: &str) -> Box<str> {
    sanitize_message(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let body = br#"{"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}"#;
        let err = ProviderError::parse(body).unwrap();
        assert_eq!(err.kind(), Some("insufficient_quota"));
        assert_eq!(err.code(), Some("insufficient_quota"));
        assert!(err.mentions("current quota"));
        assert!(err.is_named("INSUFFICIENT_QUOTA"));
    }

    #[test]
    fn xai_flat_shape_masks_key() {
        let body = br#"{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xai-abcdef1234567890. You can obtain an API key from https://console.x.ai."}"#;
        let err = ProviderError::parse(body).unwrap();
        assert_eq!(err.code(), Some("Client specified an invalid argument"));
        let message = err.message().unwrap();
        assert!(!message.contains("abcdef"), "{message}");
        assert!(message.contains("Incorrect API key provided: [redacted]"));
        assert!(!format!("{err:?}").contains("abcdef"));
        assert!(!err.to_string().contains("abcdef"));
    }

    #[test]
    fn anthropic_shape() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let err = ProviderError::parse(body).unwrap();
        assert_eq!(err.kind(), Some("overloaded_error"));
        assert_eq!(err.message(), Some("Overloaded"));
    }

    #[test]
    fn gemini_shape_with_details_and_array() {
        let body = br#"[{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED", "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []}, {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34s"}]}}]"#;
        let err = ProviderError::parse(body).unwrap();
        assert_eq!(err.http_code(), Some(429));
        assert_eq!(err.status(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(err.retry_delay(), Some("34s"));

        let body = br#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}"#;
        let err = ProviderError::parse(body).unwrap();
        assert_eq!(err.reason(), Some("API_KEY_INVALID"));
    }

    #[test]
    fn no_error_object() {
        assert_eq!(ProviderError::parse(br#"{"choices": []}"#), None);
        assert_eq!(ProviderError::parse(br#"{"error": null}"#), None);
        assert_eq!(ProviderError::parse(b"not json"), None);
        assert_eq!(ProviderError::parse(b""), None);
        assert_eq!(ProviderError::parse(b"[]"), None);
    }

    #[test]
    fn odd_error_values_still_count() {
        let err = ProviderError::parse(br#"{"error": 42}"#).unwrap();
        assert_eq!(err, ProviderError::default());
        let err = ProviderError::parse(br#"{"error": {"code": "503", "message": 7}}"#).unwrap();
        assert_eq!(err.http_code(), Some(503));
        assert_eq!(err.message(), None);
    }

    #[test]
    fn messages_are_truncated_on_char_boundaries() {
        let long = "é".repeat(1000);
        let message = sanitize_message(&long);
        assert!(message.len() <= MAX_MESSAGE);
        assert!(message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn masking_only_at_word_starts() {
        assert_eq!(
            &*sanitize_message("key sk-proj-123 and task-force, (xai-9)"),
            "key [redacted] and task-force, ([redacted])"
        );
    }
}
