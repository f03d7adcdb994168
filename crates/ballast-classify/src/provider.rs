//! [`Provider`]: the stock classifier, and the rules it applies.

use serde::Deserialize;

use crate::hint::{self, HintSource, WaitHint};
use crate::service::MediaType;
use crate::usage_fields::FieldReader;
use crate::{
    ClassifyResponse, Outcome, OutcomeClass, ProviderError, ResponseView, UsageFields, UsageSpan,
    Verdict,
};

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
        usage: None,
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

/// A 2xx body: one structural scan first, so an ordinary success costs no JSON parse.
fn classify_success_body(view: &ResponseView<'_>, outcome: Outcome, body: &[u8]) -> Verdict {
    if body.trim_ascii().is_empty() {
        return Verdict::new(outcome);
    }
    let scan = match body_kind(view) {
        BodyKind::Json => match scan_json(body) {
            Some(scan) => scan,
            None => return Verdict::new(outcome.with_class(OutcomeClass::InvalidResponse)),
        },
        // A 200 HTML page from an API endpoint is a captive portal or a misrouted proxy.
        BodyKind::Html => return Verdict::new(outcome.with_class(OutcomeClass::InvalidResponse)),
        BodyKind::Other => return Verdict::new(outcome),
    };
    if scan.error_key
        && let Some(err) = ProviderError::parse(body)
    {
        let class = error_in_success_class(&err);
        return finish(view, outcome.with_class(class), Some(err));
    }
    if scan.filter_mark && is_content_filtered(body) {
        return Verdict::new(outcome.with_class(OutcomeClass::ContentFiltered));
    }
    Verdict {
        usage: scan
            .usage
            .map(|(start, end, key)| UsageSpan::new(start, end, key).with_fields(scan.fields)),
        ..Verdict::new(outcome)
    }
}

/// What one pass over a 2xx JSON body found.
#[derive(Debug, Default, PartialEq, Eq)]
struct JsonScan {
    /// An `"error"` key near the top (depth 1, or 2 inside a top-level array).
    error_key: bool,
    /// A content-filter marker: a `"content_filter"`, `"refusal"` or `"SAFETY"` value, or a
    /// `"blockReason"` key.
    filter_mark: bool,
    /// The first top-level `"usage"` or `"usageMetadata"` object: start, end, key.
    usage: Option<(usize, usize, &'static str)>,
    /// A `"usage"` object's counts, when every member read had the usual shape.
    fields: Option<UsageFields>,
}

/// The counts of the top-level `"usage"` object of `body`, read as the classifier reads
/// them (for [`UsageFields::read`]).
pub(crate) fn usage_fields_of(body: &[u8]) -> Option<UsageFields> {
    scan_json(body)?.fields
}

/// Where the scan stands with the usage object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UsageMark {
    /// Not seen yet (or seen, not an object).
    Looking,
    /// Its key was just read: an object may open next.
    Key(&'static str),
    /// Inside it, opened at this index.
    Inside(usize, &'static str),
    /// Found, or no longer looked for.
    Done,
}

/// One pass over a body that should be one complete JSON object or array.
///
/// `None` unless it is one: a JSON object or array (after JSON white space) that a JSON
/// parser accepts, with nothing but white space after it. The grammar is checked as the
/// pass goes (separators, colons, literals, numbers, string escapes, no raw control
/// characters in strings), as `serde_json` checks it when reading into `IgnoredAny`
/// (property-tested against it on arbitrary bytes): a body cut off in transit (even on a
/// `}`), or one that balances but is not JSON (`{"a" 1 2}`), is caught. String contents
/// are skipped eight bytes at a time, and the few names that matter are compared on the
/// way, so an ordinary success costs one fast pass instead of a parse. Invalid UTF-8
/// inside a string is not checked, as `serde_json` does not over bytes.
fn scan_json(body: &[u8]) -> Option<JsonScan> {
    let mut i = skip_json_ws(body, 0);
    if !matches!(body.get(i), Some(b'{' | b'[')) {
        return None;
    }
    let mut scan = JsonScan::default();
    let mut usage = UsageMark::Looking;
    // The usage object's counts, read on the way (while `reading`: inside `"usage"`).
    let mut reader = FieldReader::default();
    let mut reading = false;
    let mut nesting = Nesting::default();
    let mut expect = Expect::Value;
    loop {
        i = skip_json_ws(body, i);
        let byte = *body.get(i)?;
        let value = matches!(expect, Expect::Value | Expect::ValueOrEnd);
        match byte {
            b'{' | b'[' if value => {
                if reading {
                    reader.open(byte == b'{');
                }
                if let UsageMark::Key(key) = usage {
                    usage = if byte == b'{' {
                        UsageMark::Inside(i, key)
                    } else {
                        UsageMark::Looking
                    };
                    reading = usage == UsageMark::Inside(i, "usage");
                }
                nesting.push(byte == b'{');
                expect = if byte == b'{' {
                    Expect::KeyOrEnd
                } else {
                    Expect::ValueOrEnd
                };
            }
            b'}' | b']' => {
                let object = byte == b'}';
                let closes = match expect {
                    Expect::CommaOrEnd => true,
                    Expect::KeyOrEnd => object,
                    Expect::ValueOrEnd => !object,
                    _ => false,
                };
                if !closes || nesting.pop()? != object {
                    return None;
                }
                if reading {
                    reader.close(nesting.depth());
                }
                if nesting.depth() == 1
                    && let UsageMark::Inside(start, key) = usage
                {
                    scan.usage = Some((start, i + 1, key));
                    if reading {
                        scan.fields = std::mem::take(&mut reader).finish();
                        reading = false;
                    }
                    usage = UsageMark::Done;
                }
                if nesting.depth() == 0 {
                    return (skip_json_ws(body, i + 1) == body.len()).then_some(scan);
                }
                expect = Expect::CommaOrEnd;
            }
            b',' if expect == Expect::CommaOrEnd => {
                expect = if nesting.in_object() {
                    Expect::Key
                } else {
                    Expect::Value
                };
            }
            b':' if expect == Expect::Colon => expect = Expect::Value,
            b'"' => {
                let key = matches!(expect, Expect::Key | Expect::KeyOrEnd);
                if !key && !value {
                    return None;
                }
                let start = i + 1;
                i = crate::json::string_end(body, i)?;
                let text = &body[start..i];
                let depth = nesting.depth();
                if reading {
                    if key {
                        reader.key(depth, text);
                    } else {
                        reader.other();
                    }
                }
                if key {
                    if depth == 1 && usage == UsageMark::Looking {
                        usage = match text {
                            b"usage" => UsageMark::Key("usage"),
                            b"usageMetadata" => UsageMark::Key("usageMetadata"),
                            _ => UsageMark::Looking,
                        };
                    }
                    expect = Expect::Colon;
                } else {
                    if let UsageMark::Key(_) = usage {
                        usage = UsageMark::Looking;
                    }
                    expect = Expect::CommaOrEnd;
                }
                note_string(&mut scan, text, depth, key);
            }
            b't' | b'f' | b'n' if value => {
                let word: &[u8] = match byte {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                if !body[i..].starts_with(word) {
                    return None;
                }
                if reading {
                    if byte == b'n' {
                        reader.null();
                    } else {
                        reader.other();
                    }
                }
                if let UsageMark::Key(_) = usage {
                    usage = UsageMark::Looking;
                }
                i += word.len() - 1;
                expect = Expect::CommaOrEnd;
            }
            b'-' | b'0'..=b'9' if value => {
                if let UsageMark::Key(_) = usage {
                    usage = UsageMark::Looking;
                }
                let end = number_end(body, i)?;
                if reading {
                    reader.number(&body[i..end]);
                }
                i = end - 1;
                expect = Expect::CommaOrEnd;
            }
            _ => return None,
        }
        i += 1;
    }
}

/// What the JSON grammar allows next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (after a colon, or a comma in an array).
    Value,
    /// A value or `]` (just after `[`).
    ValueOrEnd,
    /// A key (after a comma in an object).
    Key,
    /// A key or `}` (just after `{`).
    KeyOrEnd,
    /// The colon after a key.
    Colon,
    /// A comma or the end of the container (after a value).
    CommaOrEnd,
}

/// Which containers the scan is inside: objects (true) or arrays, innermost last. The
/// first 64 levels in one word (a `u128` cost about 20 more instructions a push: its
/// variable shifts are two-word); deeper ones (no provider's answer) in a vector.
#[derive(Debug, Default)]
struct Nesting {
    shallow: u64,
    deep: Vec<bool>,
    depth: usize,
}

impl Nesting {
    const SHALLOW: usize = u64::BITS as usize;

    fn push(&mut self, object: bool) {
        if self.depth < Self::SHALLOW {
            let bit = 1u64 << self.depth;
            self.shallow = if object {
                self.shallow | bit
            } else {
                self.shallow & !bit
            };
        } else {
            self.deep.push(object);
        }
        self.depth += 1;
    }

    /// Whether the container closed was an object; `None` at the top.
    fn pop(&mut self) -> Option<bool> {
        let object = self.top()?;
        self.depth -= 1;
        if self.depth >= Self::SHALLOW {
            self.deep.pop();
        }
        Some(object)
    }

    fn top(&self) -> Option<bool> {
        let index = self.depth.checked_sub(1)?;
        if index < Self::SHALLOW {
            Some(self.shallow >> index & 1 == 1)
        } else {
            self.deep.last().copied()
        }
    }

    fn in_object(&self) -> bool {
        self.top() == Some(true)
    }

    fn depth(&self) -> usize {
        self.depth
    }
}

/// JSON's white space: space, tab, line feed, carriage return (not form feed).
fn skip_json_ws(body: &[u8], mut i: usize) -> usize {
    while matches!(body.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the JSON number that starts at `i`:
/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn number_end(body: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut j: usize| {
        while body.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j
    };
    if body.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match body.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i + 1),
        _ => return None,
    };
    if body.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(body.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(body.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

/// Compares one string token against the few names that matter: most strings cost a
/// length comparison.
fn note_string(scan: &mut JsonScan, text: &[u8], depth: usize, is_key: bool) {
    match text {
        b"error" if depth <= 2 && is_key => scan.error_key = true,
        b"content_filter" | b"refusal" | b"SAFETY" if !is_key => scan.filter_mark = true,
        b"blockReason" if is_key => scan.filter_mark = true,
        _ => {}
    }
}

enum BodyKind {
    Json,
    Html,
    Other,
}

fn body_kind(view: &ResponseView<'_>) -> BodyKind {
    match view.media() {
        MediaType::Json => BodyKind::Json,
        MediaType::Html => BodyKind::Html,
        MediaType::EventStream | MediaType::Other => BodyKind::Other,
        MediaType::Missing => {
            // No content type: judge by the first byte.
            let first = view
                .body()
                .and_then(|b| b.trim_ascii_start().first().copied());
            if first == Some(b'<') {
                BodyKind::Html
            } else {
                BodyKind::Json
            }
        }
    }
}

/// An error object inside a 2xx body is a failure; its class comes from a numeric code in
/// the body when there is one (OpenRouter, Gemini), else from its names.
pub(crate) fn error_in_success_class(err: &ProviderError) -> OutcomeClass {
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
    const NAMES: [&str; 4] = [
        "insufficient_quota",
        "billing_error",
        "billing_hard_limit_reached",
        // Anthropic's 429 at the monthly spend limit: lasts until next month.
        "enforced_spend_limit_reached",
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn complete_json_cases() {
        let complete: [&[u8]; 6] = [
            br#"{}"#,
            br#"[]"#,
            br#"{"a":[1,{"b":"x}]"}]}"#,
            br#"{"quote":"he said \"}\" and \\"}  "#,
            b"[[[]]]\n",
            br#"{"unicode":"\u00e9 \\\" ]"}"#,
        ];
        for body in complete {
            assert!(
                scan_json(body).is_some(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let broken: [&[u8]; 8] = [
            b"",
            br#"{"a":{"b":1}"#,
            br#"{"a":"unterminated}"#,
            br#"{"a":1}}"#,
            br#"{"a":1} trailing"#,
            br#"{"a":"\"#,
            b"not json",
            b"]",
        ];
        for body in broken {
            assert!(
                scan_json(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn names_are_found_only_where_they_mean_something() {
        let scan = |b: &[u8]| scan_json(b).unwrap();
        assert!(scan(br#"{"error":{"message":"x"}}"#).error_key);
        assert!(scan(br#"[{"error" : {"code":500}}]"#).error_key);
        assert!(!scan(br#"{"content":"\"error\": no"}"#).error_key);
        assert!(
            !scan(br#"{"text":"error"}"#).error_key,
            "a value, not a key"
        );
        assert!(!scan(br#"{"a":{"b":{"error":1}}}"#).error_key, "too deep");
        assert!(scan(br#"{"choices":[{"finish_reason":"content_filter"}]}"#).filter_mark);
        assert!(scan(br#"{"promptFeedback":{"blockReason":"OTHER"}}"#).filter_mark);
        assert!(
            !scan(br#"{"content_filter":false}"#).filter_mark,
            "a key, not a value"
        );
        assert_eq!(scan(br#"{"a":1}"#), JsonScan::default());
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".*", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn balanced_bodies_that_are_not_json_are_caught() {
        let broken: [&[u8]; 12] = [
            br#"{"a" 1 2}"#,
            b"{,,}",
            br#"{"a":1,}"#,
            b"[1 2]",
            br#"{"a":tru}"#,
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":"\x"}"#,
            b"{\"a\":\"tab\there\"}",
            br#"{"a"}"#,
            br#"{"a":[}]}"#,
            b"\x0c{}",
        ];
        for body in broken {
            assert!(
                scan_json(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err());
        }
    }

    /// Bytes that look like JSON: its punctuation, literals, digits, escapes and white
    /// space, with a few other bytes.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            4 => prop::sample::select(&b"{}[]\",:"[..]).prop_map(|b| vec![b]),
            2 => prop::sample::select(
                &[
                    "true", "false", "null", "tru", "0", "-1", "01", "1.5", "1e9", "2E-3", "1.",
                    "-", "\\", "\\u00e9", "\\x", "\\u12", "\"a\"", "\"a\":",
                ][..]
            )
            .prop_map(|t| t.as_bytes().to_vec()),
            1 => prop::sample::select(&b" \t\n\r\x0c"[..]).prop_map(|b| vec![b]),
            1 => any::<u8>().prop_map(|b| vec![b]),
            2 => "[a-z]{1,3}".prop_map(String::into_bytes),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    /// A valid JSON object with one byte inserted, replaced or removed.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        (
            arb_json(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            0..3u8,
        )
            .prop_map(|(value, at, byte, how)| {
                let mut body = serde_json::to_vec(&serde_json::json!({"v": value})).unwrap();
                let at = at.index(body.len());
                match how {
                    0 => body.insert(at, byte),
                    1 => body[at] = byte,
                    _ => {
                        body.remove(at);
                    }
                }
                body
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The scan accepts exactly what `serde_json` accepts (read into `IgnoredAny`), for
        /// any bytes that open with an object or an array, and nothing else.
        #[test]
        fn accepts_what_serde_json_accepts(
            body in prop_oneof![jsonish(), mutated(), prop::collection::vec(any::<u8>(), 0..48)]
        ) {
            let ours = scan_json(&body).is_some();
            let theirs = serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
            let opens = body
                .iter()
                .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .is_some_and(|b| matches!(b, b'{' | b'['));
            if opens {
                prop_assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(&body));
            } else {
                prop_assert!(!ours);
            }
        }
    }

    proptest! {
        /// Every serialized object is complete, and every strict prefix of it is not: a body
        /// cut off anywhere is caught.
        #[test]
        fn prefixes_of_json_are_incomplete(value in arb_json(), cut in any::<prop::sample::Index>()) {
            let body = serde_json::to_vec(&serde_json::json!({"v": value})).unwrap();
            prop_assert!(scan_json(&body).is_some());
            let cut = cut.index(body.len());
            prop_assert!(scan_json(body[..cut].trim_ascii()).is_none());
        }

        /// The usage span the scan notes is exactly the first top-level `usage` (else
        /// `usageMetadata`) object a walk of the body finds, with any other values, keys
        /// and white space around it.
        #[test]
        fn usage_span_is_the_top_level_usage_object(
            members in prop::collection::vec(
                (prop_oneof![Just("usage".to_owned()), Just("usageMetadata".to_owned()), "[a-z]{1,8}"], arb_json()),
                0..6,
            ),
            pretty in any::<bool>(),
            padding in "[ \n]{0,3}",
        ) {
            let mut body = padding.clone().into_bytes();
            let object: serde_json::Map<_, _> = members.into_iter().collect();
            let json = if pretty {
                serde_json::to_vec_pretty(&object).unwrap()
            } else {
                serde_json::to_vec(&object).unwrap()
            };
            body.extend_from_slice(&json);
            body.extend_from_slice(padding.as_bytes());
            let headers = http::HeaderMap::new();
            let view = ResponseView::new(http::StatusCode::OK, &headers, Some(&body));
            let span = Provider::OpenAi.classify(&view).usage;
            let object_at = |key| {
                crate::json::top_level(&body, key).filter(|raw| raw.starts_with(b"{"))
            };
            let want = match object_at("usage") {
                Some(raw) => Some((raw, "usage")),
                None => object_at("usageMetadata").map(|raw| (raw, "usageMetadata")),
            };
            // The scan takes the first of the two keys whose value is an object.
            let first = object.iter().find(|(k, v)| (k.as_str() == "usage" || k.as_str() == "usageMetadata") && v.is_object());
            match (span, first) {
                (None, None) => prop_assert!(want.is_none()),
                (Some(span), Some((key, _))) => {
                    prop_assert_eq!(span.key(), key.as_str());
                    prop_assert_eq!(span.slice(&body), crate::json::top_level(&body, key));
                }
                (span, first) => prop_assert!(false, "span {:?}, first usage {:?}", span, first),
            }
        }
    }

    #[test]
    fn usage_span_cases() {
        let span = |body: &[u8]| {
            let headers = http::HeaderMap::new();
            let view = ResponseView::new(http::StatusCode::OK, &headers, Some(body));
            Provider::XAi
                .classify(&view)
                .usage
                .and_then(|s| s.slice(body))
                .map(|raw| String::from_utf8_lossy(raw).into_owned())
        };
        assert_eq!(
            span(br#"{"usage":{"a":{"b":1}},"x":2}"#).as_deref(),
            Some(r#"{"a":{"b":1}}"#)
        );
        assert_eq!(
            span(br#"{"usage":null,"x":{"a":1}}"#),
            None,
            "not the next object"
        );
        assert_eq!(
            span(br#"{"usage":[{"a":1}]}"#),
            None,
            "an array is not usage"
        );
        assert_eq!(span(br#"{"m":{"usage":{"a":1}}}"#), None, "not top level");
        assert_eq!(
            span(br#"{"t":"usage","o":{"a":1}}"#),
            None,
            "a value, not a key"
        );
        assert_eq!(span(br#"[{"usage":{"a":1}}]"#), None, "inside an array");
        assert_eq!(
            span(br#"{"usage" : {"a":1}}"#).as_deref(),
            Some(r#"{"a":1}"#)
        );
    }
}
