//! A caller of Anthropic's Messages API served by an OpenAI-compatible target: its request
//! as a chat request, and the chat answer back as Anthropic's (a message, a stream of
//! Messages events, an error in Anthropic's shape).
//!
//! The translated subset mirrors the chat one ([`translate`](crate::translate)): the
//! system prompt (a string or text blocks), user and assistant turns of text (a string or
//! text blocks; `thinking` blocks of earlier answers are left out, the other target has
//! no use for them), tools (client tools: definitions, choice, `tool_use` blocks and the
//! `tool_result` blocks that answer them, see [`tool_use`](crate::tool_use)),
//! `max_tokens`, `temperature`, `top_p`, `stop_sequences` (at most four, as chat takes),
//! `metadata.user_id` and `stream` (asking for the usage chunk, which the answer's usage
//! is read from). `thinking` and `top_k` are dropped: the answer comes without a visible
//! chain of thought, its meaning unchanged. What would lose meaning is not translated and
//! the target is passed over: server tools, MCP servers, structured output, images,
//! documents, a tool result other than text, and an assistant turn last (Anthropic's
//! prefill: the answer continues it; chat would answer after it).

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};

use crate::chat_chunk::{ChatChunk, ChatStreamWriter, Kept};
use crate::tool_use;
use crate::translate::{Untranslatable, refuse};

/// Fields whose meaning a chat request cannot carry: such a request is not translated.
const UNTRANSLATED: [&str; 4] = [
    "mcp_servers",
    "container",
    "output_format",
    "context_management",
];

/// The stop sequences chat takes at most.
const MAX_STOPS: usize = 4;

/// The Messages request `body` as a chat request for `model`, streamed when `stream`.
pub(crate) fn to_chat(body: &[u8], model: &str, stream: bool) -> Result<Bytes, Untranslatable> {
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
            let text = Turn::read(blocks)?.text;
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
        match turn.get("content") {
            Some(Value::String(text)) => messages.push(json!({"role": role, "content": text})),
            Some(Value::Array(blocks)) => Turn::read(blocks)?.into_chat(role, &mut messages)?,
            _ => return refuse("a message without text"),
        }
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
    if let Some(tools) = request.get("tools").and_then(Value::as_array)
        && !tools.is_empty()
    {
        chat["tools"] = Value::Array(tool_use::to_chat_tools(tools)?);
    }
    let (choice, parallel) = tool_use::to_chat_choice(request.get("tool_choice"))?;
    if let Some(choice) = choice {
        chat["tool_choice"] = choice;
    }
    if let Some(parallel) = parallel {
        chat["parallel_tool_calls"] = json!(parallel);
    }
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

/// A turn's content blocks, read: its text (text blocks joined; `thinking` blocks of
/// earlier answers left out), its tool calls and the tool results it gives.
struct Turn {
    text: String,
    /// `tool_use` blocks as chat tool calls.
    calls: Vec<Value>,
    /// `tool_result` blocks: (the call's id, the text).
    results: Vec<(String, String)>,
}

impl Turn {
    fn read(blocks: &[Value]) -> Result<Self, Untranslatable> {
        let mut turn = Self {
            text: String::new(),
            calls: Vec::new(),
            results: Vec::new(),
        };
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if !turn.text.is_empty() {
                        turn.text.push_str("\n\n");
                    }
                    turn.text
                        .push_str(block.get("text").and_then(Value::as_str).unwrap_or(""));
                }
                Some("thinking" | "redacted_thinking") => {}
                Some("tool_use") => turn.calls.push(tool_use::to_tool_call(block)),
                Some("tool_result") => {
                    let Some(id) = block.get("tool_use_id").and_then(Value::as_str) else {
                        return refuse("a tool result without its call's id");
                    };
                    turn.results
                        .push((id.to_owned(), tool_use::result_text(block)?));
                }
                _ => return refuse("a content block other than text or tool use"),
            }
        }
        Ok(turn)
    }

    /// The turn as chat messages: the tool results first (one `tool` message each, as chat
    /// wants them right after the calls), then the text; an assistant's text with its
    /// tool calls.
    fn into_chat(self, role: &str, out: &mut Vec<Value>) -> Result<(), Untranslatable> {
        for (id, text) in self.results {
            if role != "user" {
                return refuse("a tool result outside a user turn");
            }
            out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
        }
        if self.calls.is_empty() {
            if !self.text.is_empty() || out.last().is_none_or(|m| m["role"] != "tool") {
                out.push(json!({"role": role, "content": self.text}));
            }
            return Ok(());
        }
        if role != "assistant" {
            return refuse("a tool call outside an assistant turn");
        }
        let content = if self.text.is_empty() {
            Value::Null
        } else {
            json!(self.text)
        };
        out.push(json!({"role": "assistant", "content": content, "tool_calls": self.calls}));
        Ok(())
    }
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

/// A chat tool call as a `tool_use` block; arguments that are not a JSON object (a model
/// can write broken JSON) give an empty input, as Anthropic's input is always an object.
fn tool_use_of(call: &Value) -> Value {
    let input = call
        .pointer("/function/arguments")
        .and_then(Value::as_str)
        .and_then(|arguments| serde_json::from_str::<Value>(arguments).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    json!({
        "type": "tool_use",
        "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
        "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or(""),
        "input": input,
    })
}

/// A chat completion as an Anthropic message (`model`: when the completion names none).
pub(crate) fn message_from_completion(body: &Value, model: &str) -> Option<Value> {
    let choice = body.get("choices")?.get(0)?;
    let text = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut content = Vec::new();
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(calls) = choice
        .pointer("/message/tool_calls")
        .and_then(Value::as_array)
    {
        content.extend(calls.iter().map(tool_use_of));
    }
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

/// The content block a stream of Messages events has open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool call, by chat's index of it.
    Tool(u64),
}

/// Chat completion chunks as Anthropic's Messages events, one stream's worth: the message
/// starts with the first chunk; content deltas are a text block's deltas, a tool call's
/// chunks a `tool_use` block's start and `input_json_delta`s (a block opened as its first
/// piece comes, closed when another kind begins: never an empty text block, which a
/// client sending the answer back would have refused); `[DONE]` ends the last block and
/// the message with the stop reason and the usage (the chunk asked for with
/// `include_usage`; Anthropic's `message_delta` carries the final counts, `message_start`
/// zeros, as chat reports none before the end).
pub(crate) struct Events {
    model: String,
    started: bool,
    /// The usage and finish reason, for the end.
    kept: Kept,
    /// The open block and its index.
    open: Option<(u64, Block)>,
    /// The index the next block gets.
    next: u64,
}

impl Events {
    pub(crate) fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            kept: Kept::default(),
            open: None,
            next: 0,
        }
    }

    fn event(kind: &str, data: &Value, out: &mut BytesMut) {
        out.extend_from_slice(format!("event: {kind}\ndata: {data}\n\n").as_bytes());
    }

    /// Closes the open block, if any.
    fn close(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            Self::event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
                out,
            );
        }
    }

    /// Makes `block` the open one (starting it as `content_block`), its index.
    fn open(
        &mut self,
        block: Block,
        content_block: impl FnOnce() -> Value,
        out: &mut BytesMut,
    ) -> u64 {
        if let Some((index, open)) = self.open
            && open == block
        {
            return index;
        }
        self.close(out);
        let index = self.next;
        self.next += 1;
        self.open = Some((index, block));
        Self::event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": content_block()}),
            out,
        );
        index
    }
}

impl ChatStreamWriter for Events {
    fn start(&mut self, chunk: Option<&ChatChunk>, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(model) = chunk.and_then(ChatChunk::model) {
            model.clone_into(&mut self.model);
        }
        let id = chunk.and_then(ChatChunk::id).unwrap_or("msg_translated");
        Self::event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
            out,
        );
    }

    /// A content delta: in the text block (opened first if another is open).
    fn text(&mut self, text: &str, out: &mut BytesMut) {
        let index = self.open(Block::Text, || json!({"type": "text", "text": ""}), out);
        Self::event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": text}}),
            out,
        );
    }

    /// A tool call's delta: in its `tool_use` block (opened with its first piece).
    fn call(&mut self, call: &Value, out: &mut BytesMut) {
        let k = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let index = self.open(
            Block::Tool(k),
            || {
                json!({"type": "tool_use",
                       "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
                       "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or(""),
                       "input": {}})
            },
            out,
        );
        if let Some(partial) = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            Self::event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": partial}}),
                out,
            );
        }
    }

    fn kept(&mut self) -> &mut Kept {
        &mut self.kept
    }

    fn done(&mut self, out: &mut BytesMut) {
        self.close(out);
        Self::event(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self.kept.finish.as_deref()),
                              "stop_sequence": null},
                    "usage": usage(self.kept.usage.as_ref())}),
            out,
        );
        Self::event("message_stop", &json!({"type": "message_stop"}), out);
    }

    fn error(&mut self, message: &str, out: &mut BytesMut) {
        Self::event(
            "error",
            &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
            out,
        );
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
            with(
                "tools",
                json!([{"type": "web_search_20250305", "name": "web_search"}])
            ),
            Err("a server tool is not translated".into())
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
            Err("a content block other than text or tool use is not translated".into())
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

    /// An agent's conversation (Claude Code's shape): tools, an assistant turn with text,
    /// thinking and two `tool_use` blocks, the user turn answering them with two
    /// `tool_result` blocks and a text. Chat gets the tools as functions, the assistant's
    /// calls as `tool_calls`, one `tool` message per result right after, then the text.
    #[test]
    fn an_agents_turns_go_to_chat() {
        let request = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 64,
            "tools": [{"name": "read", "description": "Reads a file.",
                       "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Read both."},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "...", "signature": "s"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "read", "input": {"path": "b"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "A"},
                    {"type": "tool_result", "tool_use_id": "toolu_2",
                     "content": [{"type": "text", "text": "B"}], "is_error": false},
                    {"type": "text", "text": "Now sum them."},
                ]},
            ],
        });
        assert_eq!(
            chat(request, false).unwrap(),
            json!({
                "model": "gpt-4o-mini", "max_tokens": 64,
                "tools": [{"type": "function", "function": {"name": "read", "description": "Reads a file.",
                           "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}],
                "tool_choice": "auto", "parallel_tool_calls": false,
                "messages": [
                    {"role": "user", "content": "Read both."},
                    {"role": "assistant", "content": "Reading.", "tool_calls": [
                        {"id": "toolu_1", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"a\"}"}},
                        {"id": "toolu_2", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"b\"}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "A"},
                    {"role": "tool", "tool_call_id": "toolu_2", "content": "B"},
                    {"role": "user", "content": "Now sum them."},
                ],
            })
        );
    }

    /// The model's tool calls come back as `tool_use` blocks (the arguments parsed into
    /// the input; broken JSON an empty input), `stop_reason: tool_use`; streamed, a text
    /// block, then a `tool_use` block per call with its arguments as `input_json_delta`s,
    /// each block closed before the next opens.
    #[test]
    fn tool_calls_come_back_as_tool_use() {
        let completion = json!({
            "id": "chatcmpl-2", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"a\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "read", "arguments": "{broken"}},
                ]}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        });
        let message = message_from_completion(&completion, "asked").unwrap();
        assert_eq!(
            message["content"],
            json!([
                {"type": "tool_use", "id": "call_1", "name": "read", "input": {"path": "a"}},
                {"type": "tool_use", "id": "call_2", "name": "read", "input": {}},
            ])
        );
        assert_eq!(message["stop_reason"], "tool_use");

        let mut events = Events::new("asked");
        let mut out = BytesMut::new();
        for data in [
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"On it."}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"read","arguments":""}}]}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"path\":"}}]}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"a\"}"}}]}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"read","arguments":"{}"}}]}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ] {
            events.on("", data, &mut out);
        }
        let text = String::from_utf8(out.to_vec()).unwrap();
        let data: Vec<Value> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let shape: Vec<String> = data
            .iter()
            .map(|d| {
                let kind = d["type"].as_str().unwrap();
                match d.get("index") {
                    Some(index) => format!("{kind} {index}"),
                    None => kind.to_owned(),
                }
            })
            .collect();
        assert_eq!(
            shape,
            [
                "message_start",
                "content_block_start 0",
                "content_block_delta 0",
                "content_block_stop 0",
                "content_block_start 1",
                "content_block_delta 1",
                "content_block_delta 1",
                "content_block_stop 1",
                "content_block_start 2",
                "content_block_delta 2",
                "content_block_stop 2",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            data[4]["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "read", "input": {}})
        );
        let input: String = data[5..7]
            .iter()
            .map(|d| d["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(input, "{\"path\":\"a\"}");
        assert_eq!(data[11]["delta"]["stop_reason"], "tool_use");
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
