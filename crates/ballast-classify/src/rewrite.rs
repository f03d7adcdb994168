//! Rewrites of a read request that keep its body and its [`RequestFacts`] in step.
//!
//! Layers that change what is sent (the default output cap; failover's model) go through
//! these, so no layer ever reads facts that the body contradicts, and no `content-length`
//! the new body contradicts is sent.

use bytes::Bytes;

use crate::facts::{Dialect, ModelName, RequestFacts};
use crate::read_request::RequestBody;

/// The field a chat request's output cap goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChatCapField {
    /// `max_tokens`: xAI, Groq, DeepSeek, most OpenAI-compatible APIs.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`: OpenAI (its reasoning models refuse `max_tokens`).
    MaxCompletionTokens,
}

impl ChatCapField {
    fn name(self) -> &'static str {
        match self {
            Self::MaxTokens => "max_tokens",
            Self::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// Writes `tokens` as the output cap of a request that names none, in its dialect's field:
/// chat `chat_field`, Responses `max_output_tokens`, Messages `max_tokens`, Gemini
/// `generationConfig.maxOutputTokens`. A field that is there without a valid cap (`null`,
/// a string) gets the value, so the provider, which reads the last of duplicate names,
/// reads the cap the facts say. Returns whether it wrote; a request that has a cap, or
/// whose body is not a JSON object, is left as it is.
pub fn default_output_cap(
    request: &mut http::Request<RequestBody>,
    tokens: u64,
    chat_field: ChatCapField,
) -> bool {
    edit(request, |facts| write_output_cap(facts, tokens, chat_field))
}

/// Sets the model a JSON request asks for (failover to another target's model): the value
/// of its (last) top-level `"model"` member, or a new one. Returns whether it wrote; a body
/// that is not a JSON object, or a Gemini request (whose model is in its path), is left as
/// it is.
pub fn model(request: &mut http::Request<RequestBody>, name: &str) -> bool {
    edit(request, |facts| write_model(facts, name))
}

/// Replaces a read request's address and body with another API's (a route's translation of
/// a chat request for Anthropic or Gemini): the facts are read again from the new path and
/// body, keeping the first reading's deadline and prompt bound (the same prompt, bounded by
/// the reader's estimator).
pub fn replace(request: &mut http::Request<RequestBody>, uri: http::Uri, body: Bytes) {
    let mut facts = RequestFacts::read(uri.path(), &body, &crate::HalfByteCount);
    if let Some(first) = request.extensions().get::<RequestFacts>() {
        facts.deadline = first.deadline;
        facts.prompt_tokens = first.prompt_tokens;
    }
    *request.uri_mut() = uri;
    *request.body_mut() = RequestBody::from(body);
    request.headers_mut().remove(http::header::CONTENT_LENGTH);
    request.extensions_mut().insert(facts);
}

/// Asks a streamed chat (or legacy completions) request for its usage
/// (`stream_options.include_usage: true`) when
/// the caller did not, so the stream's cost is read from the provider, not estimated; the
/// facts note it ([`RequestFacts::stream_usage_added`]) and the classifier keeps the
/// usage-only chunk from the caller. Other `stream_options` are kept. Returns whether it
/// wrote.
pub fn stream_usage(request: &mut http::Request<RequestBody>) -> bool {
    edit(request, write_stream_usage)
}

/// [`stream_usage`] on facts not yet in a request.
pub(crate) fn write_stream_usage(facts: &mut RequestFacts) -> bool {
    // Chat and the legacy Completions API take `stream_options` (OpenAI's, and the
    // compatible APIs that follow it); the others have their own usage events.
    if !matches!(facts.dialect, Dialect::Chat | Dialect::Completions)
        || !facts.stream
        || !facts.json_object
    {
        return false;
    }
    let asked = br#""stream_options""#;
    let existing = if memchr::memmem::find(&facts.body, asked).is_some() {
        std::str::from_utf8(&facts.body)
            .ok()
            .and_then(|text| crate::scan::last_member(text, "stream_options"))
    } else {
        None
    };
    let value = match existing.map(serde_json::from_slice::<serde_json::Value>) {
        None => r#"{"include_usage":true}"#.to_owned(),
        Some(Ok(serde_json::Value::Object(mut options))) => {
            if options.get("include_usage") == Some(&serde_json::Value::Bool(true)) {
                return false;
            }
            options.insert("include_usage".into(), serde_json::Value::Bool(true));
            serde_json::Value::Object(options).to_string()
        }
        // `null`, or not an object: the provider would refuse or ignore it; replaced.
        Some(_) => r#"{"include_usage":true}"#.to_owned(),
    };
    let Some(rewritten) = set_member(&facts.body, "stream_options", &value) else {
        return false;
    };
    facts.body = Bytes::from(rewritten);
    facts.usage_added = true;
    true
}

/// [`default_output_cap`] on facts not yet in a request (they hold the body).
pub(crate) fn write_output_cap(
    facts: &mut RequestFacts,
    tokens: u64,
    chat_field: ChatCapField,
) -> bool {
    // A call Ballast has no reading of is sent as it is: its cap is 0, and it has none.
    if facts.output_cap.is_some() || !facts.json_object {
        return false;
    }
    let value = tokens.to_string();
    let rewritten = match facts.dialect {
        Dialect::Gemini => gemini_cap(&facts.body, &value),
        dialect => {
            let field = match dialect {
                Dialect::Chat => chat_field.name(),
                Dialect::Responses => "max_output_tokens",
                _ => "max_tokens",
            };
            set_member(&facts.body, field, &value)
        }
    };
    let Some(rewritten) = rewritten else {
        return false;
    };
    facts.body = Bytes::from(rewritten);
    facts.output_cap = Some(tokens);
    true
}

fn write_model(facts: &mut RequestFacts, name: &str) -> bool {
    if !facts.json_object || matches!(facts.dialect, Dialect::Gemini | Dialect::Other) {
        return false;
    }
    let Ok(quoted) = serde_json::to_string(name) else {
        return false;
    };
    let Some(rewritten) = set_member(&facts.body, "model", &quoted) else {
        return false;
    };
    facts.body = Bytes::from(rewritten);
    facts.model = Some(ModelName::new(name));
    true
}

/// Runs `change` on the request's facts (they hold the body) and, when it wrote, sends the
/// rewritten body.
fn edit(
    request: &mut http::Request<RequestBody>,
    change: impl FnOnce(&mut RequestFacts) -> bool,
) -> bool {
    let Some(facts) = request.extensions_mut().get_mut::<RequestFacts>() else {
        return false;
    };
    if !change(facts) {
        return false;
    }
    let body = facts.body.clone();
    *request.body_mut() = RequestBody::from(body);
    // The body's length changed: a caller's `content-length` would lie; the client sets
    // one from the body's exact size.
    request.headers_mut().remove(http::header::CONTENT_LENGTH);
    true
}

/// `object` with `value` (JSON text) as the value of its member `name`: the last one of
/// that name when there is one (a parser keeps the last), else a new first member. Only a
/// body that names the member (quoted, without escapes) is walked for it.
fn set_member(object: &[u8], name: &str, value: &str) -> Option<Vec<u8>> {
    let quoted = format!("\"{name}\"");
    if memchr::memmem::find(object, quoted.as_bytes()).is_some() {
        let text = std::str::from_utf8(object).ok()?;
        if let Some(old) = crate::scan::last_member(text, name) {
            return splice(object, old, value.as_bytes());
        }
    }
    insert_first(object, &format!("{quoted}:{value}"))
}

/// `whole` with `part` (a slice of it) replaced by `replacement`.
fn splice(whole: &[u8], part: &[u8], replacement: &[u8]) -> Option<Vec<u8>> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let mut out = Vec::with_capacity(whole.len() - part.len() + replacement.len());
    out.extend_from_slice(&whole[..at]);
    out.extend_from_slice(replacement);
    out.extend_from_slice(&whole[at + part.len()..]);
    Some(out)
}

/// `object` with `member` as its first member, or `None` when it is not an object.
fn insert_first(object: &[u8], member: &str) -> Option<Vec<u8>> {
    let open = object.iter().position(|b| !b.is_ascii_whitespace())?;
    if object[open] != b'{' {
        return None;
    }
    let empty = object[open + 1..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'}');
    let mut rewritten = Vec::with_capacity(object.len() + member.len() + 1);
    rewritten.extend_from_slice(&object[..=open]);
    rewritten.extend_from_slice(member.as_bytes());
    if !empty {
        rewritten.push(b',');
    }
    rewritten.extend_from_slice(&object[open + 1..]);
    Some(rewritten)
}

/// Gemini: `maxOutputTokens` in the (last) generation config object, in either spelling;
/// a config that is not an object is replaced by one; none: a new one.
fn gemini_cap(body: &[u8], value: &str) -> Option<Vec<u8>> {
    let named = |name: &str| memchr::memmem::find(body, name.as_bytes()).is_some();
    let config = if named("\"generationConfig\"") || named("\"generation_config\"") {
        let text = std::str::from_utf8(body).ok()?;
        crate::scan::last_member(text, "generationConfig")
            .or_else(|| crate::scan::last_member(text, "generation_config"))
    } else {
        None
    };
    let Some(config) = config else {
        return insert_first(
            body,
            &format!("\"generationConfig\":{{\"maxOutputTokens\":{value}}}"),
        );
    };
    let inner = match set_member(config, "maxOutputTokens", value) {
        Some(inner) => inner,
        None => format!("{{\"maxOutputTokens\":{value}}}").into_bytes(),
    };
    splice(body, config, &inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed_facts(path: &str, body: &str) -> RequestFacts {
        RequestFacts::read(path, &Bytes::from(body.to_owned()), &crate::HalfByteCount)
    }

    #[test]
    fn a_rewritten_body_loses_the_content_length_it_no_longer_has() {
        let body = r#"{"model":"a","messages":[]}"#;
        let mut request = http::Request::post("/v1/chat/completions")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(RequestBody::new(body))
            .unwrap();
        RequestFacts::note(&mut request);
        assert!(model(&mut request, "a-longer-model"));
        assert!(
            request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .is_none()
        );
        let mut request = http::Request::post("/v1/chat/completions")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(RequestBody::new(body))
            .unwrap();
        RequestFacts::note(&mut request);
        replace(
            &mut request,
            http::Uri::from_static("/v1/messages"),
            Bytes::from_static(b"{}"),
        );
        assert!(
            request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .is_none()
        );
    }

    #[test]
    fn stream_usage_is_asked_for_once_and_other_options_kept() {
        let cases = [
            (
                r#"{"model":"m","stream":true}"#,
                Some(r#"{"stream_options":{"include_usage":true},"model":"m","stream":true}"#),
            ),
            (
                r#"{"model":"m","stream":true,"stream_options":{"include_obfuscation":false}}"#,
                Some(
                    r#"{"model":"m","stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}"#,
                ),
            ),
            (
                r#"{"model":"m","stream":true,"stream_options":null}"#,
                Some(r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#),
            ),
            (
                r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
                None,
            ),
            (r#"{"model":"m"}"#, None),
            (r#"{"model":"m","stream":false}"#, None),
        ];
        for (body, expected) in cases {
            let mut facts = streamed_facts("/v1/chat/completions", body);
            let wrote = write_stream_usage(&mut facts);
            assert_eq!(wrote, expected.is_some(), "{body}");
            assert_eq!(facts.stream_usage_added(), wrote);
            if let Some(expected) = expected {
                assert_eq!(std::str::from_utf8(&facts.body).unwrap(), expected);
            }
        }
        // Other dialects have their usage in their own events.
        let mut messages = streamed_facts("/v1/messages", r#"{"model":"m","stream":true}"#);
        assert!(!write_stream_usage(&mut messages));
    }
    use crate::facts::HalfByteCount;

    fn read(path: &str, body: &str) -> http::Request<RequestBody> {
        let bytes = Bytes::from(body.to_owned());
        let facts = RequestFacts::read(path, &bytes, &HalfByteCount);
        let mut request = http::Request::post(path)
            .body(RequestBody::from(bytes))
            .unwrap();
        request.extensions_mut().insert(facts);
        request
    }

    fn capped(path: &str, body: &str) -> String {
        let mut request = read(path, body);
        default_output_cap(&mut request, 500, ChatCapField::MaxTokens);
        String::from_utf8(request.into_body().into_bytes().to_vec()).unwrap()
    }

    #[test]
    fn each_dialect_gets_its_field() {
        assert_eq!(
            capped("/v1/chat/completions", r#"{"model":"m"}"#),
            r#"{"max_tokens":500,"model":"m"}"#
        );
        assert_eq!(
            capped("/v1/messages", r#" { } "#),
            r#" {"max_tokens":500 } "#
        );
        assert_eq!(
            capped("/v1/responses", r#"{"model":"m"}"#),
            r#"{"max_output_tokens":500,"model":"m"}"#
        );
        assert_eq!(
            capped(
                "/v1beta/models/gemini-2.5-flash:generateContent",
                r#"{"contents":[]}"#
            ),
            r#"{"generationConfig":{"maxOutputTokens":500},"contents":[]}"#
        );
        assert_eq!(
            capped(
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                r#"{"contents":[],"generationConfig":{"temperature":0.2}}"#
            ),
            r#"{"contents":[],"generationConfig":{"maxOutputTokens":500,"temperature":0.2}}"#
        );
        let mut openai = read("/v1/chat/completions", r#"{"model":"o3"}"#);
        default_output_cap(&mut openai, 64, ChatCapField::MaxCompletionTokens);
        assert_eq!(
            &openai.body().bytes()[..],
            br#"{"max_completion_tokens":64,"model":"o3"}"#
        );
        assert_eq!(
            capped("/v1/chat/completions", "[1]"),
            "[1]",
            "not an object"
        );
        assert_eq!(
            capped("/v1/chat/completions", r#"{"max_tokens":9}"#),
            r#"{"max_tokens":9}"#,
            "a cap of its own"
        );
        // The legacy Completions API's cap is `max_tokens`, whatever chat's field.
        let mut legacy = read("/v1/completions", r#"{"model":"m","prompt":"a"}"#);
        default_output_cap(&mut legacy, 64, ChatCapField::MaxCompletionTokens);
        assert_eq!(
            &legacy.body().bytes()[..],
            br#"{"max_tokens":64,"model":"m","prompt":"a"}"#
        );
        // The Embeddings API takes no field of the kind: nothing is written.
        let embeddings = r#"{"model":"text-embedding-3-small","input":"a","stream":true}"#;
        assert_eq!(capped("/v1/embeddings", embeddings), embeddings);
        let mut request = read("/v1/embeddings", embeddings);
        assert!(!stream_usage(&mut request));
    }

    /// After a rewrite, the facts are what a fresh read of the new body gives.
    #[test]
    fn the_facts_follow_the_body() {
        for path in [
            "/v1/chat/completions",
            "/v1/messages",
            "/v1/responses",
            "/v1beta/models/g:generateContent",
        ] {
            let mut request = read(path, r#"{"model":"m","generationConfig":{}}"#);
            assert!(default_output_cap(
                &mut request,
                500,
                ChatCapField::MaxTokens
            ));
            if path.ends_with("completions") {
                assert!(model(&mut request, "grok-4 \"fast\""));
            }
            let body = request.body().bytes().clone();
            let fresh = RequestFacts::read(path, &body, &HalfByteCount);
            let facts = request.extensions().get::<RequestFacts>().unwrap();
            assert_eq!(facts.output_cap(), Some(500), "{path}");
            assert_eq!(
                (facts.model(), facts.output_cap(), facts.body_len()),
                (fresh.model(), fresh.output_cap(), fresh.body_len()),
                "{path}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let mut request = read("/v1/messages", r#"{"max_tokens":5}"#);
        assert!(model(&mut request, "claude"));
        assert_eq!(
            &request.body().bytes()[..],
            br#"{"model":"claude","max_tokens":5}"#
        );
    }

    /// A field the parser would read last is the one rewritten: a `null` cap, a duplicate
    /// model, a Gemini config that is not an object. The body then says what the facts say.
    #[test]
    fn the_member_a_parser_keeps_is_the_one_rewritten() {
        let cases = [
            (
                "/v1/chat/completions",
                r#"{"max_tokens":null,"model":"m"}"#,
                r#"{"max_tokens":500,"model":"m"}"#,
            ),
            (
                "/v1/messages",
                r#"{"max_tokens":7,"max_tokens":"x"}"#,
                r#"{"max_tokens":7,"max_tokens":500}"#,
            ),
            (
                "/v1beta/models/g:generateContent",
                r#"{"generationConfig":null}"#,
                r#"{"generationConfig":{"maxOutputTokens":500}}"#,
            ),
            (
                "/v1beta/models/g:generateContent",
                r#"{"generation_config":{"maxOutputTokens":null,"x":1}}"#,
                r#"{"generation_config":{"maxOutputTokens":500,"x":1}}"#,
            ),
        ];
        for (path, body, want) in cases {
            let mut request = read(path, body);
            assert!(
                default_output_cap(&mut request, 500, ChatCapField::MaxTokens),
                "{body}"
            );
            let sent = request.body().bytes().clone();
            assert_eq!(std::str::from_utf8(&sent).unwrap(), want);
            let fresh = RequestFacts::read(path, &sent, &HalfByteCount);
            assert_eq!(fresh.output_cap(), Some(500), "{want}");
            assert_eq!(
                request.extensions().get::<RequestFacts>().unwrap().body(),
                &sent
            );
        }
        let mut request = read("/v1/chat/completions", r#"{"model":"a","model":"b"}"#);
        assert!(model(&mut request, "c"));
        let sent = request.body().bytes().clone();
        assert_eq!(&sent[..], br#"{"model":"a","model":"c"}"#);
        let fresh = RequestFacts::read("/v1/chat/completions", &sent, &HalfByteCount);
        assert_eq!(fresh.model(), Some("c"));
    }
}
