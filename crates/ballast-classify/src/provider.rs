//! [`Provider`]: the stock classifier, and the rules it applies.

use std::sync::LazyLock;

use http::header::CONTENT_TYPE;
use memchr::memmem::Finder;
use serde::Deserialize;

use crate::hint::{self, HintSource, WaitHint};
use crate::{ClassifyResponse, Outcome, OutcomeClass, ProviderError, ResponseView, Verdict};

/// The LLM providers Ballast knows by name.
///
/// Every variant reads every error dialect (OpenAI, xAI, Anthropic, Gemini), because
/// gateways and "OpenAI-compatible" proxies mix them freely; the variant decides what is
/// provider-specific outside the body, such as the API key's shape
/// ([`ApiKey::parse`](crate::ApiKey::parse)) and the header it travels in.
///
/// ```
/// use ballast_classify::{ClassifyResponse, OutcomeClass, Provider, ResponseView};
///
/// let headers = http::HeaderMap::new();
/// let body = br#"{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xa***yz."}"#;
/// let view = ResponseView::new(http::StatusCode::BAD_REQUEST, &headers, Some(body));
/// assert_eq!(Provider::XAi.classify(&view).outcome.class(), OutcomeClass::Auth);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// xAI (Grok), `https://api.x.ai`.
    XAi,
    /// OpenAI, `https://api.openai.com`.
    OpenAi,
    /// Anthropic (Claude), `https://api.anthropic.com`.
    Anthropic,
    /// Google Gemini API, `https://generativelanguage.googleapis.com`.
    Gemini,
    /// Any OpenAI-compatible API (gateways, local servers, other vendors).
    OpenAiCompatible,
}

impl Provider {
    /// A stable lower-case name (`"xai"`, `"openai"`, `"anthropic"`, `"gemini"`,
    /// `"openai_compatible"`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::XAi => "xai",
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::OpenAiCompatible => "openai_compatible",
        }
    }

    /// The prefix every key of this provider starts with, when it has one.
    pub const fn key_prefix(self) -> Option<&'static str> {
        match self {
            Self::XAi => Some("xai-"),
            Self::OpenAi => Some("sk-"),
            Self::Anthropic => Some("sk-ant-"),
            Self::Gemini | Self::OpenAiCompatible => None,
        }
    }
}

impl ClassifyResponse for Provider {
    fn classify(&self, view: &ResponseView<'_>) -> Verdict {
        classify_response(view)
    }
}

/// The rules every stock provider applies: status first, then the body refines.
fn classify_response(view: &ResponseView<'_>) -> Verdict {
    let status = view.status();
    let base = OutcomeClass::from_status(status);
    let outcome = Outcome::new(base).with_status(status);
    let Some(body) = view.body() else {
        return finish(view, outcome, None);
    };
    if base.is_success() {
        return classify_success_body(view, outcome, body);
    }
    let detail = ProviderError::parse(body);
    let class = match &detail {
        Some(err) => refine(base, err),
        None => base,
    };
    finish(view, outcome.with_class(class), detail)
}

fn finish(view: &ResponseView<'_>, outcome: Outcome, detail: Option<ProviderError>) -> Verdict {
    let hint = if outcome.is_success() {
        None
    } else {
        find_hint(view, outcome.class(), detail.as_ref())
    };
    Verdict {
        outcome: outcome.with_wait_hint(hint),
        detail: detail.map(Box::new),
    }
}

/// Explicit retry headers, then Gemini's `RetryInfo`, then (rate limits only) the reset
/// headers, then the message text.
fn find_hint(
    view: &ResponseView<'_>,
    class: OutcomeClass,
    detail: Option<&ProviderError>,
) -> Option<WaitHint> {
    let headers = view.headers();
    hint::explicit_hint(headers, view.now())
        .or_else(|| {
            let delay = hint::parse_go_duration(detail?.retry_delay()?)?;
            Some(WaitHint::new(delay, HintSource::RetryInfo))
        })
        .or_else(|| {
            (class == OutcomeClass::RateLimited)
                .then(|| hint::reset_hint(headers, view.now()))
                .flatten()
        })
        .or_else(|| {
            let delay = hint::parse_message(detail?.message()?)?;
            Some(WaitHint::new(delay, HintSource::Message))
        })
}

static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static FILTER_MARKS: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
    [
        Finder::new(b"\"content_filter\""),
        Finder::new(b"\"refusal\""),
        Finder::new(b"\"SAFETY\""),
    ]
});

/// A 2xx body: cheap byte scans first, so an ordinary success costs no JSON parse.
fn classify_success_body(view: &ResponseView<'_>, outcome: Outcome, body: &[u8]) -> Verdict {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Verdict::new(outcome);
    }
    match body_kind(view) {
        BodyKind::Json => {
            let shaped = matches!(
                (trimmed.first(), trimmed.last()),
                (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
            );
            if !shaped {
                return Verdict::new(outcome.with_class(OutcomeClass::InvalidResponse));
            }
        }
        BodyKind::Html => {
            // A 200 HTML page from an API endpoint is a captive portal or a misrouted proxy.
            return Verdict::new(outcome.with_class(OutcomeClass::InvalidResponse));
        }
        BodyKind::Other => return Verdict::new(outcome),
    }
    if ERROR_KEY.find(body).is_some()
        && let Some(err) = ProviderError::parse(body)
    {
        let class = error_in_success_class(&err);
        return finish(view, outcome.with_class(class), Some(err));
    }
    if FILTER_MARKS.iter().any(|f| f.find(body).is_some()) && is_content_filtered(body) {
        return Verdict::new(outcome.with_class(OutcomeClass::ContentFiltered));
    }
    Verdict::new(outcome)
}

enum BodyKind {
    Json,
    Html,
    Other,
}

fn body_kind(view: &ResponseView<'_>) -> BodyKind {
    let Some(content_type) = view.headers().get(CONTENT_TYPE) else {
        // No content type: judge by the first byte.
        let first = view
            .body()
            .and_then(|b| b.trim_ascii_start().first().copied());
        return if first == Some(b'<') {
            BodyKind::Html
        } else {
            BodyKind::Json
        };
    };
    let content_type = content_type.as_bytes();
    let essence = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if essence.eq_ignore_ascii_case(b"application/json") || essence.ends_with(b"+json") {
        BodyKind::Json
    } else if essence.eq_ignore_ascii_case(b"text/html") {
        BodyKind::Html
    } else {
        BodyKind::Other
    }
}

/// An error object inside a 2xx body is a failure; its class comes from a numeric code in
/// the body when there is one (OpenRouter, Gemini), else from its names.
fn error_in_success_class(err: &ProviderError) -> OutcomeClass {
    let base = err
        .http_code()
        .and_then(|code| http::StatusCode::from_u16(code).ok())
        .map(OutcomeClass::from_status)
        .filter(|class| !class.is_success() && *class != OutcomeClass::Unknown)
        .or_else(|| class_from_names(err))
        .unwrap_or(OutcomeClass::ServerError);
    refine(base, err)
}

fn class_from_names(err: &ProviderError) -> Option<OutcomeClass> {
    const NAMES: [(&str, OutcomeClass); 12] = [
        ("rate_limit_exceeded", OutcomeClass::RateLimited),
        ("rate_limit_error", OutcomeClass::RateLimited),
        ("RESOURCE_EXHAUSTED", OutcomeClass::RateLimited),
        ("overloaded_error", OutcomeClass::Overloaded),
        ("invalid_request_error", OutcomeClass::BadRequest),
        ("INVALID_ARGUMENT", OutcomeClass::BadRequest),
        ("authentication_error", OutcomeClass::Auth),
        ("permission_error", OutcomeClass::Auth),
        ("UNAUTHENTICATED", OutcomeClass::Auth),
        ("PERMISSION_DENIED", OutcomeClass::Auth),
        ("DEADLINE_EXCEEDED", OutcomeClass::Timeout),
        ("api_error", OutcomeClass::ServerError),
    ];
    NAMES
        .iter()
        .find(|(name, _)| err.is_named(name))
        .map(|(_, class)| *class)
}

/// Body rules on top of the status: each rule only moves between classes the status allows,
/// so a stray word in a message cannot turn a 500 into "bad request".
fn refine(base: OutcomeClass, err: &ProviderError) -> OutcomeClass {
    use OutcomeClass::*;
    match base {
        RateLimited | BadRequest | Auth | Success if is_quota(err) => QuotaExhausted,
        BadRequest if is_auth(err) => Auth,
        BadRequest if is_context_too_long(err) => ContextTooLong,
        BadRequest if is_content_filtered_error(err) => ContentFiltered,
        ServerError if err.is_named("overloaded_error") || err.mentions("overloaded") => Overloaded,
        _ => base,
    }
}

fn is_quota(err: &ProviderError) -> bool {
    const NAMES: [&str; 3] = [
        "insufficient_quota",
        "billing_error",
        "billing_hard_limit_reached",
    ];
    const PHRASES: [&str; 4] = [
        // xAI: "...has either used all available credits or reached its monthly spending limit"
        "used all available credits",
        "monthly spending limit",
        // Anthropic: "Your credit balance is too low to access the Anthropic API."
        "credit balance is too low",
        "billing hard limit",
    ];
    NAMES.iter().any(|n| err.is_named(n))
        || PHRASES.iter().any(|p| err.mentions(p))
        // OpenAI and Gemini say "exceeded your current quota" for quota exhaustion; Gemini
        // says it for per-minute limits too, but then adds a RetryInfo delay.
        || (err.mentions("exceeded your current quota") && err.retry_delay().is_none())
}

fn is_auth(err: &ProviderError) -> bool {
    const NAMES: [&str; 6] = [
        "invalid_api_key",
        "authentication_error",
        "permission_error",
        "API_KEY_INVALID",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
    ];
    const PHRASES: [&str; 5] = [
        // xAI answers a bad key with 400 "Incorrect API key provided".
        "incorrect api key",
        "invalid api key",
        "api key not valid",
        "invalid x-api-key",
        "no api key",
    ];
    NAMES.iter().any(|n| err.is_named(n)) || PHRASES.iter().any(|p| err.mentions(p))
}

fn is_context_too_long(err: &ProviderError) -> bool {
    const PHRASES: [&str; 8] = [
        "context_length_exceeded",
        "context length",
        "context window",
        "maximum context",
        "prompt is too long",
        "maximum prompt length",
        "exceeds the maximum number of tokens",
        "too many tokens",
    ];
    PHRASES.iter().any(|p| err.mentions(p))
}

fn is_content_filtered_error(err: &ProviderError) -> bool {
    const NAMES: [&str; 3] = [
        "content_filter",
        "content_policy_violation",
        "content_filtered",
    ];
    NAMES.iter().any(|n| err.is_named(n))
        || err.mentions("content management policy")
        || err.mentions("content policy")
}

/// Whether a successful body says the output was withheld: OpenAI `finish_reason:
/// "content_filter"` on every choice, Anthropic `stop_reason: "refusal"`, Gemini
/// `promptFeedback.blockReason` or `finishReason: "SAFETY"` on every candidate.
fn is_content_filtered(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        choices: Vec<Choice>,
        #[serde(default)]
        stop_reason: Option<String>,
        #[serde(default, rename = "promptFeedback")]
        prompt_feedback: Option<Feedback>,
        #[serde(default)]
        candidates: Vec<Candidate>,
    }
    #[derive(Deserialize)]
    struct Choice {
        #[serde(default)]
        finish_reason: Option<String>,
    }
    #[derive(Deserialize)]
    struct Feedback {
        #[serde(default, rename = "blockReason")]
        block_reason: Option<String>,
    }
    #[derive(Deserialize)]
    struct Candidate {
        #[serde(default, rename = "finishReason")]
        finish_reason: Option<String>,
    }
    let Ok(parsed) = serde_json::from_slice::<Body>(body) else {
        return false;
    };
    let all_filtered = |reasons: &mut dyn Iterator<Item = Option<&str>>, filtered: &str| {
        let mut any = false;
        for reason in reasons {
            if reason != Some(filtered) {
                return false;
            }
            any = true;
        }
        any
    };
    all_filtered(
        &mut parsed.choices.iter().map(|c| c.finish_reason.as_deref()),
        "content_filter",
    ) || parsed.stop_reason.as_deref() == Some("refusal")
        || parsed
            .prompt_feedback
            .is_some_and(|f| f.block_reason.is_some())
        || all_filtered(
            &mut parsed.candidates.iter().map(|c| c.finish_reason.as_deref()),
            "SAFETY",
        )
}
