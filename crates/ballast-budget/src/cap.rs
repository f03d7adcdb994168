//! The default output cap, written into requests that name none, in each dialect's field.
//!
//! A reservation bounds the bill only if the provider cannot produce more than was reserved,
//! so a request without a cap gets the default one the guard reserved for.

use ballast_classify::InspectBody;

/// Where a request's output cap goes, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// A top-level member (`max_tokens`, `max_output_tokens`, ...).
    Top(&'static str),
    /// Gemini: `generationConfig.maxOutputTokens`.
    GeminiConfig,
}

/// The field for `path`: Anthropic's Messages (`max_tokens`), OpenAI's Responses
/// (`max_output_tokens`), Gemini's `generateContent` family (`generationConfig`), else
/// `chat_field` (chat completions: `max_tokens`, or `max_completion_tokens` for OpenAI).
fn field_for(path: &str, chat_field: &'static str) -> Field {
    if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
        Field::GeminiConfig
    } else if path.ends_with("/messages") {
        Field::Top("max_tokens")
    } else if path.ends_with("/responses") {
        Field::Top("max_output_tokens")
    } else {
        Field::Top(chat_field)
    }
}

/// Writes `tokens` as the request's output cap (see [`field_for`]); bodies that cannot be
/// rewritten in place or are not a JSON object are left as they are.
pub(crate) fn write_default_cap<B: InspectBody>(
    request: &mut http::Request<B>,
    chat_field: &'static str,
    tokens: u64,
) {
    let field = field_for(request.uri().path(), chat_field);
    let Some(bytes) = request.body().inspect() else {
        return;
    };
    let rewritten = match field {
        Field::Top(name) => insert_first(bytes, &format!("\"{name}\":{tokens}")),
        Field::GeminiConfig => gemini(bytes, tokens),
    };
    if let Some(rewritten) = rewritten {
        request.body_mut().replace(rewritten);
    }
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

/// Gemini: into the `generationConfig` object when there is one, else a new one.
fn gemini(body: &[u8], tokens: u64) -> Option<Vec<u8>> {
    let member = format!("\"maxOutputTokens\":{tokens}");
    let Some(config) = ballast_classify::json::top_level(body, "generationConfig") else {
        return insert_first(body, &format!("\"generationConfig\":{{{member}}}"));
    };
    // `config` is a slice of `body`: where it starts is its distance from the body's start.
    let at = (config.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
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

    fn capped(path: &str, body: &str) -> String {
        let mut request = http::Request::post(path).body(body.to_owned()).unwrap();
        write_default_cap(&mut request, "max_tokens", 500);
        request.into_body()
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
        let mut openai = http::Request::post("/v1/chat/completions")
            .body(String::from(r#"{"model":"o3"}"#))
            .unwrap();
        write_default_cap(&mut openai, "max_completion_tokens", 64);
        assert_eq!(
            openai.body(),
            r#"{"max_completion_tokens":64,"model":"o3"}"#
        );
        assert_eq!(
            capped("/v1/chat/completions", "[1]"),
            "[1]",
            "not an object"
        );
    }

    #[test]
    fn the_cap_written_is_the_cap_read() {
        for path in [
            "/v1/chat/completions",
            "/v1/messages",
            "/v1/responses",
            "/v1beta/models/g:generateContent",
        ] {
            let body = capped(path, r#"{"model":"m","generationConfig":{}}"#);
            assert_eq!(
                ballast_classify::output_cap(body.as_bytes()),
                Some(500),
                "{path}: {body}"
            );
            serde_json::from_str::<serde_json::Value>(&body).unwrap();
        }
    }
}
