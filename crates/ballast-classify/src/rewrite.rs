//! Rewrites of a read request that keep its body and its [`RequestFacts`] in step.
//!
//! Layers that change what is sent (the default output cap; failover's model) go through
//! these, so no layer ever reads facts that the body contradicts.

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
/// `generationConfig.maxOutputTokens`. Returns whether it wrote; a request that has a cap,
/// or whose body is not a JSON object, is left as it is.
pub fn default_output_cap(
    request: &mut http::Request<RequestBody>,
    tokens: u64,
    chat_field: ChatCapField,
) -> bool {
    let Some(facts) = request.extensions().get::<RequestFacts>() else {
        return false;
    };
    if facts.output_cap.is_some() || !facts.json_object {
        return false;
    }
    let body = request.body().bytes();
    let rewritten = match facts.dialect {
        Dialect::Chat => insert_first(body, &format!("\"{}\":{tokens}", chat_field.name())),
        Dialect::Responses => insert_first(body, &format!("\"max_output_tokens\":{tokens}")),
        Dialect::Messages => insert_first(body, &format!("\"max_tokens\":{tokens}")),
        Dialect::Gemini => gemini_cap(body, tokens),
    };
    let Some(rewritten) = rewritten else {
        return false;
    };
    replace(request, rewritten, |facts| facts.output_cap = Some(tokens));
    true
}

/// Sets the model a JSON request asks for (failover to another target's model): its
/// top-level `"model"` member, replaced or added. Returns whether it wrote; a body that is
/// not a JSON object, or a Gemini request (whose model is in its path), is left as it is.
pub fn model(request: &mut http::Request<RequestBody>, name: &str) -> bool {
    let Some(facts) = request.extensions().get::<RequestFacts>() else {
        return false;
    };
    if !facts.json_object || facts.dialect == Dialect::Gemini {
        return false;
    }
    let Ok(quoted) = serde_json::to_string(name) else {
        return false;
    };
    let body = request.body().bytes();
    let rewritten = match crate::json::top_level(body, "model") {
        Some(old) => {
            let Some(at) = offset_in(body, old) else {
                return false;
            };
            let mut out = Vec::with_capacity(body.len() + quoted.len());
            out.extend_from_slice(&body[..at]);
            out.extend_from_slice(quoted.as_bytes());
            out.extend_from_slice(&body[at + old.len()..]);
            Some(out)
        }
        None => insert_first(body, &format!("\"model\":{quoted}")),
    };
    let Some(rewritten) = rewritten else {
        return false;
    };
    replace(request, rewritten, |facts| {
        facts.model = Some(ModelName::new(name));
    });
    true
}

/// Swaps in the rewritten body and updates the facts to match it.
fn replace(
    request: &mut http::Request<RequestBody>,
    body: Vec<u8>,
    update: impl FnOnce(&mut RequestFacts),
) {
    let body = Bytes::from(body);
    *request.body_mut() = RequestBody::from(body.clone());
    if let Some(facts) = request.extensions_mut().get_mut::<RequestFacts>() {
        facts.body_len = body.len() as u64;
        facts.body = body;
        update(facts);
    }
}

/// Where `part` (a slice of `whole`) starts in it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)
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

/// Gemini: into the generation config object when there is one (in either spelling), else
/// a new one.
fn gemini_cap(body: &[u8], tokens: u64) -> Option<Vec<u8>> {
    let member = format!("\"maxOutputTokens\":{tokens}");
    let config = crate::json::top_level(body, "generationConfig")
        .or_else(|| crate::json::top_level(body, "generation_config"));
    let Some(config) = config else {
        return insert_first(body, &format!("\"generationConfig\":{{{member}}}"));
    };
    let at = offset_in(body, config)?;
    let inner = insert_first(config, &member)?;
    let mut rewritten = Vec::with_capacity(body.len() + member.len() + 1);
    rewritten.extend_from_slice(&body[..at]);
    rewritten.extend_from_slice(&inner);
    rewritten.extend_from_slice(&body[at + config.len()..]);
    Some(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
