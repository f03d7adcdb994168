//! A caller of Anthropic's Messages API served by an OpenAI-compatible target: its request
//! as a chat request, and the chat answer back as Anthropic's (a message, a stream of
//! Messages events, an error in Anthropic's shape).
//!
//! The translated subset mirrors the chat one ([`translate`](crate::translate)): the
//! system prompt (a string or text blocks), user and assistant turns of text (a string or
//! text blocks; `thinking` blocks of earlier answers are left out, the other target has
//! no use for them), `max_tokens`, `temperature`, `top_p`, `stop_sequences` (at most four,
//! as chat takes), `metadata.user_id` and `stream` (asking for the usage chunk, which the
//! answer's usage is read from). `thinking` and `top_k` are dropped: the answer comes
//! without a visible chain of thought, its meaning unchanged. What would lose meaning is
//! not translated and the target is passed over: tools, MCP servers, structured output,
//! images, documents, tool results, and an assistant turn last (Anthropic's prefill: the
//! answer continues it; chat would answer after it).

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};

use crate::translate::Untranslatable;

/// Fields whose meaning a chat request cannot carry: such a request is not translated.
const UNTRANSLATED: [&str; 6] = [
    "tools",
    "tool_choice",
    "mcp_servers",
    "container",
    "output_format",
    "context_management",
];

/// The stop sequences chat takes at most.
const MAX_STOPS: usize = 4;

/// The Messages request `body` as a chat request for `model`, streamed when `stream`.
pub(crate) fn to_chat(body: &[u8], model: &str, stream: bool) -> Result<Bytes, Untranslatable> {
    let refuse = |what: &str| Err(Untranslatable(format!("{what} is not translated")));
    let request: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|_| Untranslatable("the body is not a JSON object".into()))?;
    for field in UNTRANSLATED {
        if request.get(field).is_some_and(|v| !v.is_null()) {
            return refuse(field);
        }
    }
    let mut messages = Vec::new();
    match request.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(json!({"role": "system", "content": text})),
        Some(Value::Array(blocks)) => {
            let text = texts(blocks)?;
            messages.push(json!({"role": "system", "content": text}));
        }
        Some(_) => return refuse("a system prompt other than text"),
    }
    let Some(turns) = request.get("messages").and_then(Value::as_array) else {
        return refuse("a request without messages");
    };
    for turn in turns {
        let role = match turn.get("role").and_then(Value::as_str) {
            Some(role @ ("user" | "assistant")) => role,
            _ => return refuse("a message of role other than user or assistant"),
        };
        let text = match turn.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(blocks)) => texts(blocks)?,
            _ => return refuse("a message without text"),
        };
        messages.push(json!({"role": role, "content": text}));
    }
    match turns
        .last()
        .and_then(|t| t.get("role"))
        .and_then(Value::as_str)
    {
        Some("user") => {}
        Some(_) => return refuse("an assistant turn last (a prefill)"),
        None => return refuse("a request without messages"),
    }
    let mut chat = json!({"model": model, "messages": messages});
    if let Some(cap) = request.get("max_tokens").and_then(Value::as_u64) {
        chat["max_tokens"] = json!(cap);
    }
    for knob in ["temperature", "top_p"] {
        if let Some(value) = request.get(knob).filter(|v| v.is_number()) {
            chat[knob] = value.clone();
        }
    }
    if let Some(stops) = request.get("stop_sequences").and_then(Value::as_array) {
        if stops.len() > MAX_STOPS {
            return refuse("more than four stop sequences");
        }
        if !stops.is_empty() {
            chat["stop"] = Value::Array(stops.clone());
        }
    }
    if let Some(user) = request
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        chat["user"] = json!(user);
    }
    if stream {
        chat["stream"] = json!(true);
        chat["stream_options"] = json!({"include_usage": true});
    }
    Ok(Bytes::from(chat.to_string()))
}

/// The text of Messages content blocks, joined; `thinking` blocks (of earlier answers)
/// left out; any other block (image, document, tool use or result) is not translated.
fn texts(blocks: &[Value]) -> Result<String, Untranslatable> {
    let mut text = String::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if !text.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""));
            }
            Some("thinking" | "redacted_thinking") => {}
            _ => {
                return Err(Untranslatable(
                    "a content block other than text is not translated".into(),
                ));
            }
        }
    }
    Ok(text)
}

/// A chat finish reason as Anthropic's stop reason.
fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Chat usage as Anthropic's counts: `input_tokens` without the cache reads (chat's
/// `prompt_tokens` holds them), `output_tokens` with the reasoning.
fn usage(usage: Option<&Value>) -> Value {
    let count = |pointer: &str| {
        usage
            .and_then(|u| u.pointer(pointer))
            .and_then(Value::as_u64)
    };
    let prompt = count("/prompt_tokens");
    let cached = count("/prompt_tokens_details/cached_tokens").unwrap_or(0);
    let output = ballast_classify::chat_output_tokens(
        prompt,
        count("/completion_tokens").unwrap_or(0),
        count("/completion_tokens_details/reasoning_tokens").unwrap_or(0),
        count("/total_tokens"),
    );
    let prompt = prompt.unwrap_or(0);
    json!({
        "input_tokens": prompt.saturating_sub(cached),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached.min(prompt),
        "output_tokens": output,
    })
}

/// A chat completion as an Anthropic message (`model`: when the completion names none).
pub(crate) fn message_from_completion(body: &Value, model: &str) -> Option<Value> {
    let choice = body.get("choices")?.get(0)?;
    let text = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .unwrap_or("");
    let content = if text.is_empty() {
        json!([])
    } else {
        json!([{"type": "text", "text": text}])
    };
    Some(json!({
        "id": body.get("id").and_then(Value::as_str).unwrap_or("msg_translated"),
        "type": "message",
        "role": "assistant",
        "model": body.get("model").and_then(Value::as_str).unwrap_or(model),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage(body.get("usage")),
    }))
}

/// Chat completion chunks as Anthropic's Messages events, one stream's worth: the message
/// and its one text block start with the first chunk, each content delta is a text delta,
/// and `[DONE]` ends the block and the message with the stop reason and the usage (the
/// chunk asked for with `include_usage`; Anthropic's `message_delta` carries the final
/// counts, `message_start` zeros, as chat reports none before the end).
pub(crate) struct Events {
    model: String,
    started: bool,
    finish: Option<String>,
    usage: Option<Value>,
}

impl Events {
    pub(crate) fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            finish: None,
            usage: None,
        }
    }

    fn event(kind: &str, data: &Value, out: &mut BytesMut) {
        out.extend_from_slice(format!("event: {kind}\ndata: {data}\n\n").as_bytes());
    }

    fn start(&mut self, chunk: Option<&Value>, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(model) = chunk.and_then(|c| c.get("model")).and_then(Value::as_str) {
            model.clone_into(&mut self.model);
        }
        let id = chunk
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
            .unwrap_or("msg_translated");
        Self::event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
            out,
        );
        Self::event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
            out,
        );
    }

    /// Writes what the caller gets for the chat event `data` (of type `event`).
    pub(crate) fn on(&mut self, event: &str, data: &str, out: &mut BytesMut) {
        if data.trim() == "[DONE]" {
            self.start(None, out);
            Self::event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
                out,
            );
            Self::event(
                "message_delta",
                &json!({"type": "message_delta",
                        "delta": {"stop_reason": stop_reason(self.finish.as_deref()),
                                  "stop_sequence": null},
                        "usage": usage(self.usage.as_ref())}),
                out,
            );
            Self::event("message_stop", &json!({"type": "message_stop"}), out);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if event == "error" || chunk.get("error").is_some_and(|e| !e.is_null()) {
            let message = chunk
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("the provider failed mid-stream");
            Self::event(
                "error",
                &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
                out,
            );
            return;
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        self.start(Some(&chunk), out);
        if let Some(text) = choice
            .pointer("/delta/content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            Self::event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": text}}),
                out,
            );
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(finish.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value, stream: bool) -> Result<Value, Untranslatable> {
        let bytes = to_chat(body.to_string().as_bytes(), "gpt-4o-mini", stream)?;
        Ok(serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn messages_to_chat() {
        let request = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "temperature": 0.3,
            "top_k": 5,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u1"},
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "...", "signature": "s"},
                    {"type": "text", "text": "Hello."},
                ]},
                {"role": "user", "content": [{"type": "text", "text": "Sum"}, {"type": "text", "text": "2+2"}]},
            ],
        });
        assert_eq!(
            chat(request.clone(), false).unwrap(),
            json!({
                "model": "gpt-4o-mini",
                "max_tokens": 64,
                "temperature": 0.3,
                "stop": ["END"],
                "user": "u1",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "Sum\n\n2+2"},
                ],
            })
        );
        let streamed = chat(request, true).unwrap();
        assert_eq!(streamed["stream"], true);
        assert_eq!(streamed["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn what_would_lose_meaning_is_not_translated() {
        let base = || {
            json!({"model": "c", "max_tokens": 9,
                   "messages": [{"role": "user", "content": "x"}]})
        };
        let with = |field: &str, value: Value| {
            let mut request = base();
            request[field] = value;
            chat(request, false).map(|_| ()).map_err(|why| why.0)
        };
        assert_eq!(
            with("tools", json!([{"name": "t"}])),
            Err("tools is not translated".into())
        );
        assert_eq!(
            with("output_format", json!({"type": "json_schema"})),
            Err("output_format is not translated".into())
        );
        assert_eq!(
            with("stop_sequences", json!(["a", "b", "c", "d", "e"])),
            Err("more than four stop sequences is not translated".into())
        );
        assert_eq!(
            with(
                "messages",
                json!([{"role": "user", "content": [{"type": "image", "source": {}}]}])
            ),
            Err("a content block other than text is not translated".into())
        );
        assert_eq!(
            with(
                "messages",
                json!([{"role": "user", "content": "x"}, {"role": "assistant", "content": "The answer is"}])
            ),
            Err("an assistant turn last (a prefill) is not translated".into())
        );
        assert_eq!(with("tools", Value::Null), Ok(()));
    }

    #[test]
    fn a_completion_comes_back_as_a_message() {
        let completion = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "grok-4-fast",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"},
                         "finish_reason": "length"}],
            // xAI: 30 reasoning tokens beside the 2 of the answer, as the total says.
            "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 52,
                      "prompt_tokens_details": {"cached_tokens": 8},
                      "completion_tokens_details": {"reasoning_tokens": 30}},
        });
        assert_eq!(
            message_from_completion(&completion, "asked").unwrap(),
            json!({
                "id": "chatcmpl-1", "type": "message", "role": "assistant",
                "model": "grok-4-fast",
                "content": [{"type": "text", "text": "4"}],
                "stop_reason": "max_tokens", "stop_sequence": null,
                "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 8, "output_tokens": 32},
            })
        );
        assert_eq!(message_from_completion(&json!({"error": {}}), "m"), None);
    }

    #[test]
    fn chunks_come_back_as_messages_events() {
        let mut events = Events::new("asked");
        let mut out = BytesMut::new();
        for data in [
            r#"{"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            r#"{"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
            r#"{"id":"c1","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
            "[DONE]",
        ] {
            events.on("", data, &mut out);
        }
        let text = String::from_utf8(out.to_vec()).unwrap();
        let kinds: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("event: "))
            .collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let data: Vec<Value> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(data[0]["message"]["model"], "gpt-4o-mini");
        assert_eq!(data[0]["message"]["id"], "c1");
        assert_eq!(
            data[2]["delta"],
            json!({"type": "text_delta", "text": "Hel"})
        );
        assert_eq!(
            data[5],
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"input_tokens": 9, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": 0, "output_tokens": 2}})
        );
    }

    #[test]
    fn an_error_chunk_is_anthropics_error_event_and_no_stop_follows() {
        let mut events = Events::new("m");
        let mut out = BytesMut::new();
        events.on(
            "",
            r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            "event: error\ndata: {\"error\":{\"message\":\"overloaded\",\"type\":\"api_error\"},\"type\":\"error\"}\n\n"
        );
    }
}
