//! What one server-sent event of a streamed answer says, in each dialect.
//!
//! The SSE framing is `sse-parse`'s (WHATWG's algorithm, any chunking); this module reads
//! the events' JSON for what the layers need: content delivered, usage, the end, an error
//! sent inside the stream.

use serde_json::Value;

use crate::{Dialect, OutcomeClass, ProviderError};

/// Token counts a stream reported (the last report of each count wins: providers send
/// running totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamUsage {
    /// Prompt tokens, cached ones included.
    pub prompt: u64,
    /// Of the prompt, tokens read from a cache.
    pub cached: u64,
    /// Of the prompt, tokens written to a cache (Anthropic bills them apart).
    pub cache_write: u64,
    /// Output tokens, reasoning included.
    pub completion: u64,
}

/// What one event said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Said {
    /// Bytes of content (text, tool-call arguments, refusals) it delivered.
    pub(crate) content: u64,
    /// Whether it ends the answer as the provider meant it to end.
    pub(crate) end: bool,
    /// An error sent inside the stream, classified.
    pub(crate) error: Option<OutcomeClass>,
    /// Counts it reported; `None` leaves each count as it was.
    pub(crate) prompt: Option<u64>,
    pub(crate) cached: Option<u64>,
    pub(crate) cache_write: Option<u64>,
    pub(crate) completion: Option<u64>,
}

impl Said {
    /// Applies the counts to `usage`.
    pub(crate) fn count_into(&self, usage: &mut Option<StreamUsage>) {
        if self.prompt.is_none()
            && self.cached.is_none()
            && self.cache_write.is_none()
            && self.completion.is_none()
        {
            return;
        }
        let usage = usage.get_or_insert_with(StreamUsage::default);
        if let Some(n) = self.prompt {
            usage.prompt = n;
        }
        if let Some(n) = self.cached {
            usage.cached = n;
        }
        if let Some(n) = self.cache_write {
            usage.cache_write = n;
        }
        if let Some(n) = self.completion {
            usage.completion = n;
        }
    }
}

/// Reads one event (`event` its type, `data` its data) of a stream in `dialect`.
pub(crate) fn read(dialect: Dialect, event: &str, data: &str) -> Said {
    let data = data.trim();
    // OpenAI chat's (and every compatible API's) end marker.
    if data == "[DONE]" {
        return Said {
            end: true,
            ..Said::default()
        };
    }
    if event == "error" {
        return error_event(data.as_bytes());
    }
    let Ok(json) = serde_json::from_str::<Value>(data) else {
        return Said::default();
    };
    if json.get("error").is_some_and(|e| !e.is_null()) && json.get("type").is_none() {
        return error_event(data.as_bytes());
    }
    match dialect {
        Dialect::Chat => chat(&json),
        Dialect::Responses => responses(&json),
        Dialect::Messages => messages(&json),
        Dialect::Gemini => gemini(&json),
    }
}

/// An error sent inside the stream, classified as the same error in a 200 body would be.
fn error_event(data: &[u8]) -> Said {
    let class = ProviderError::parse(data).map_or(OutcomeClass::ServerError, |error| {
        crate::provider::error_in_success_class(&error)
    });
    Said {
        error: Some(class),
        ..Said::default()
    }
}

fn count(value: Option<&Value>) -> Option<u64> {
    value.and_then(Value::as_u64)
}

fn text_len(value: Option<&Value>) -> u64 {
    value.and_then(Value::as_str).map_or(0, |s| s.len() as u64)
}

/// A chat completion chunk: `choices[].delta` content, `finish_reason`, and `usage` (the
/// last chunk, with `stream_options.include_usage`; xAI sends it on every chunk).
fn chat(json: &Value) -> Said {
    let mut said = Said::default();
    if let Some(choices) = json.get("choices").and_then(Value::as_array) {
        for choice in choices {
            if let Some(delta) = choice.get("delta") {
                said.content += text_len(delta.get("content"))
                    + text_len(delta.get("refusal"))
                    + text_len(delta.get("reasoning_content"));
                if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                    for call in calls {
                        said.content += text_len(call.pointer("/function/arguments"))
                            + text_len(call.pointer("/function/name"));
                    }
                }
            }
            if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
                said.end = true;
            }
        }
    }
    if let Some(usage) = json.get("usage").filter(|u| u.is_object()) {
        said.prompt = count(usage.get("prompt_tokens"));
        said.completion = count(usage.get("completion_tokens"));
        said.cached = count(usage.pointer("/prompt_tokens_details/cached_tokens"));
    }
    said
}

/// A Responses API event: `response.output_text.delta` (and the other deltas) deliver,
/// `response.completed` / `response.incomplete` end with usage, `response.failed` fails.
fn responses(json: &Value) -> Said {
    let mut said = Said::default();
    let kind = json.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "response.failed" | "error" => return error_event(json.to_string().as_bytes()),
        "response.completed" | "response.incomplete" => {
            said.end = true;
            if let Some(usage) = json.pointer("/response/usage").filter(|u| u.is_object()) {
                said.prompt = count(usage.get("input_tokens"));
                said.completion = count(usage.get("output_tokens"));
                said.cached = count(usage.pointer("/input_tokens_details/cached_tokens"));
            }
        }
        _ if kind.ends_with(".delta") => said.content = text_len(json.get("delta")),
        _ => {}
    }
    said
}

/// An Anthropic Messages event: `message_start` (prompt usage), `content_block_delta`
/// (content), `message_delta` (output usage so far), `message_stop` (the end), `error`.
fn messages(json: &Value) -> Said {
    let mut said = Said::default();
    match json.get("type").and_then(Value::as_str).unwrap_or("") {
        "message_start" => {
            if let Some(usage) = json.pointer("/message/usage") {
                let input = count(usage.get("input_tokens")).unwrap_or(0);
                let read = count(usage.get("cache_read_input_tokens")).unwrap_or(0);
                let write = count(usage.get("cache_creation_input_tokens")).unwrap_or(0);
                // Anthropic counts cache reads and writes apart from `input_tokens`.
                said.prompt = Some(input + read + write);
                said.cached = Some(read);
                said.cache_write = Some(write);
                said.completion = count(usage.get("output_tokens"));
            }
        }
        "content_block_delta" => {
            if let Some(delta) = json.get("delta") {
                said.content = text_len(delta.get("text"))
                    + text_len(delta.get("partial_json"))
                    + text_len(delta.get("thinking"));
            }
        }
        "message_delta" => said.completion = count(json.pointer("/usage/output_tokens")),
        "message_stop" => said.end = true,
        "error" => return error_event(json.to_string().as_bytes()),
        _ => {}
    }
    said
}

/// A Gemini `streamGenerateContent?alt=sse` chunk: candidate parts (content), a
/// `finishReason` (the end), `usageMetadata` (running totals).
fn gemini(json: &Value) -> Said {
    let mut said = Said::default();
    if let Some(candidates) = json.get("candidates").and_then(Value::as_array) {
        for candidate in candidates {
            if let Some(parts) = candidate
                .pointer("/content/parts")
                .and_then(Value::as_array)
            {
                said.content += parts.iter().map(|p| text_len(p.get("text"))).sum::<u64>();
            }
            if candidate.get("finishReason").is_some_and(|r| !r.is_null()) {
                said.end = true;
            }
        }
    }
    if let Some(usage) = json.get("usageMetadata").filter(|u| u.is_object()) {
        said.prompt = count(usage.get("promptTokenCount"));
        said.cached = count(usage.get("cachedContentTokenCount"));
        let thoughts = count(usage.get("thoughtsTokenCount")).unwrap_or(0);
        said.completion = count(usage.get("candidatesTokenCount")).map(|n| n + thoughts);
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_chunks() {
        let said = read(
            Dialect::Chat,
            "",
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
        );
        assert_eq!((said.content, said.end), (3, false));
        let said = read(
            Dialect::Chat,
            "",
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        );
        assert_eq!((said.content, said.end), (0, true));
        let said = read(
            Dialect::Chat,
            "",
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":2}}}"#,
        );
        let mut usage = None;
        said.count_into(&mut usage);
        assert_eq!(
            usage,
            Some(StreamUsage {
                prompt: 9,
                cached: 2,
                cache_write: 0,
                completion: 4
            })
        );
        assert!(read(Dialect::Chat, "", " [DONE] ").end);
        let error = read(
            Dialect::Chat,
            "",
            r#"{"error":{"message":"The server is overloaded","type":"server_error"}}"#,
        );
        assert_eq!(error.error, Some(OutcomeClass::Overloaded));
        let limited = read(
            Dialect::Chat,
            "",
            r#"{"error":{"message":"slow down","type":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(limited.error, Some(OutcomeClass::RateLimited));
        assert_eq!(read(Dialect::Chat, "", "{broken"), Said::default());
    }

    #[test]
    fn anthropic_events() {
        let mut usage = None;
        read(
            Dialect::Messages,
            "message_start",
            r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":2,"output_tokens":1}}}"#,
        )
        .count_into(&mut usage);
        let delta = read(
            Dialect::Messages,
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi!"}}"#,
        );
        assert_eq!(delta.content, 3);
        read(
            Dialect::Messages,
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
        )
        .count_into(&mut usage);
        assert_eq!(
            usage,
            Some(StreamUsage {
                prompt: 17,
                cached: 5,
                cache_write: 2,
                completion: 15
            })
        );
        assert!(
            read(
                Dialect::Messages,
                "message_stop",
                r#"{"type":"message_stop"}"#
            )
            .end
        );
        let error = read(
            Dialect::Messages,
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(error.error, Some(OutcomeClass::Overloaded));
    }

    #[test]
    fn responses_and_gemini_events() {
        let delta = read(
            Dialect::Responses,
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","delta":"abc"}"#,
        );
        assert_eq!(delta.content, 3);
        let mut usage = None;
        let done = read(
            Dialect::Responses,
            "response.completed",
            r#"{"type":"response.completed","response":{"usage":{"input_tokens":7,"output_tokens":3,"input_tokens_details":{"cached_tokens":1}}}}"#,
        );
        assert!(done.end);
        done.count_into(&mut usage);
        assert_eq!(
            usage.map(|u| (u.prompt, u.cached, u.completion)),
            Some((7, 1, 3))
        );
        assert!(
            read(
                Dialect::Responses,
                "response.failed",
                r#"{"type":"response.failed","response":{"error":{"code":"server_error","message":"x"}}}"#
            )
            .error
            .is_some()
        );
        let chunk = read(
            Dialect::Gemini,
            "",
            r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"thoughtsTokenCount":3}}"#,
        );
        assert_eq!((chunk.content, chunk.end), (2, true));
        assert_eq!((chunk.prompt, chunk.completion), (Some(4), Some(5)));
    }
}
