//! A caller of OpenAI's Responses API served by an Anthropic or Gemini target: its request
//! read as a chat request (then translated as chat is, see [`translate`](crate::translate)),
//! and the chat answer the target's is turned into written back as a response (a stream as
//! the Responses API's events).
//!
//! The translated subset: `instructions`, `input` (a string, or message items of text;
//! `function_call` and `function_call_output` items; `reasoning` items are left out),
//! function `tools`, `tool_choice`, `parallel_tool_calls`, `max_output_tokens`,
//! `temperature`, `top_p`, `user` and `stream`. What chat cannot carry is not translated and
//! the target is passed over: a stored conversation (`previous_response_id`,
//! `conversation`), hosted tools (web search, file search, code interpreter, MCP...),
//! structured output, images and files, background runs, prompt templates.

use bytes::BytesMut;
use serde_json::{Map, Value, json};

use crate::chat_chunk::{ChatChunk, ChatStreamWriter, Kept};
use crate::translate::{Untranslatable, refuse};

/// Fields whose meaning a chat request cannot carry.
const UNTRANSLATED: [&str; 5] = [
    "previous_response_id",
    "conversation",
    "background",
    "prompt",
    "include_obfuscation",
];

/// The Responses request `request` as a chat request (a JSON object).
pub(crate) fn to_chat(request: &Map<String, Value>) -> Result<Map<String, Value>, Untranslatable> {
    for field in UNTRANSLATED {
        if request
            .get(field)
            .is_some_and(|v| !v.is_null() && *v != Value::Bool(false))
        {
            return refuse(field);
        }
    }
    if let Some(format) = request
        .get("text")
        .and_then(|text| text.pointer("/format/type"))
        .and_then(Value::as_str)
        && format != "text"
    {
        return refuse("a text format other than text");
    }
    let mut messages: Vec<Value> = Vec::new();
    if let Some(instructions) = request.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match request.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for item in items {
                read_item(item, &mut messages)?;
            }
        }
        _ => return refuse("a request without input"),
    }
    let mut chat = Map::new();
    if let Some(model) = request.get("model") {
        chat.insert("model".into(), model.clone());
    }
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = request.get("tools").and_then(Value::as_array)
        && !tools.is_empty()
    {
        let tools = tools
            .iter()
            .map(|tool| {
                if tool.get("type").and_then(Value::as_str) != Some("function") {
                    return refuse("a hosted tool");
                }
                let mut function = Map::new();
                for field in ["name", "description", "parameters"] {
                    if let Some(value) = tool.get(field).filter(|v| !v.is_null()) {
                        function.insert(field.into(), value.clone());
                    }
                }
                Ok(json!({"type": "function", "function": function}))
            })
            .collect::<Result<Vec<_>, _>>()?;
        chat.insert("tools".into(), Value::Array(tools));
    }
    match request.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(mode)) => {
            chat.insert("tool_choice".into(), json!(mode));
        }
        Some(choice) => match (
            choice.get("type").and_then(Value::as_str),
            choice.get("name").and_then(Value::as_str),
        ) {
            (Some("function"), Some(name)) => {
                chat.insert(
                    "tool_choice".into(),
                    json!({"type": "function", "function": {"name": name}}),
                );
            }
            _ => return refuse("a tool_choice of another kind"),
        },
    }
    for (from, to) in [
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("user", "user"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("stream", "stream"),
    ] {
        if let Some(value) = request.get(from).filter(|v| !v.is_null()) {
            chat.insert(to.into(), value.clone());
        }
    }
    Ok(chat)
}

/// One input item as chat messages (appended to `out`).
fn read_item(item: &Value, out: &mut Vec<Value>) -> Result<(), Untranslatable> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some(role @ ("user" | "assistant" | "system" | "developer")) => role,
                _ => return refuse("a message of another role"),
            };
            let text = match item.get("content") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.get("type").and_then(Value::as_str), part.get("text")) {
                            (
                                Some("input_text" | "output_text" | "text"),
                                Some(Value::String(part)),
                            ) => text.push_str(part),
                            _ => return refuse("a content part other than text"),
                        }
                    }
                    text
                }
                _ => return refuse("a message without text"),
            };
            out.push(json!({"role": role, "content": text}));
        }
        "function_call" => {
            let (Some(id), Some(name)) = (
                item.get("call_id").and_then(Value::as_str),
                item.get("name").and_then(Value::as_str),
            ) else {
                return refuse("a function call without its id or name");
            };
            let call = json!({"id": id, "type": "function", "function": {
                "name": name,
                "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}"),
            }});
            // Calls one after the other are one assistant turn's; so are calls right after
            // the assistant's text.
            match out.last_mut() {
                Some(last) if last["role"] == "assistant" => {
                    match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        Some(calls) => calls.push(call),
                        None => last["tool_calls"] = json!([call]),
                    }
                }
                _ => out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let Some(id) = item.get("call_id").and_then(Value::as_str) else {
                return refuse("a function call output without its id");
            };
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|part| match part.get("text") {
                        Some(Value::String(text)) => Ok(text.as_str()),
                        _ => refuse("a function output other than text"),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .concat(),
                _ => String::new(),
            };
            out.push(json!({"role": "tool", "tool_call_id": id, "content": output}));
        }
        "reasoning" => {}
        _ => return refuse("an input item of another kind"),
    }
    Ok(())
}

/// Seconds since the epoch.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A chat finish reason as a response's status and its `incomplete_details`.
fn status(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// Chat usage as a response's.
fn usage(usage: Option<&Value>) -> Value {
    let count = |pointer: &str| {
        usage
            .and_then(|u| u.pointer(pointer))
            .and_then(Value::as_u64)
    };
    let prompt = count("/prompt_tokens").unwrap_or(0);
    let output = count("/completion_tokens").unwrap_or(0);
    json!({
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": count("/prompt_tokens_details/cached_tokens").unwrap_or(0)},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": count("/completion_tokens_details/reasoning_tokens").unwrap_or(0)},
        "total_tokens": prompt + output,
    })
}

/// A message output item of `text`.
fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

/// A function call output item.
fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
           "arguments": arguments, "status": status})
}

/// A response object.
fn response(
    id: &str,
    model: &str,
    status: (&str, Value),
    output: Vec<Value>,
    usage: Value,
) -> Value {
    json!({"id": id, "object": "response", "created_at": now_secs(), "status": status.0,
           "incomplete_details": status.1, "model": model, "output": output, "usage": usage})
}

/// A chat completion as a response.
pub(crate) fn response_from_completion(completion: &Value) -> Option<Value> {
    let choice = completion.get("choices")?.get(0)?;
    let id = completion
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("translated");
    let mut output = Vec::new();
    if let Some(text) = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        output.push(message_item(&format!("msg_{id}"), text, "completed"));
    }
    for call in choice
        .pointer("/message/tool_calls")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let call_id = call.get("id").and_then(Value::as_str).unwrap_or("");
        output.push(call_item(
            &format!("fc_{call_id}"),
            call_id,
            call.pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or(""),
            call.pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or(""),
            "completed",
        ));
    }
    Some(response(
        &format!("resp_{id}"),
        completion
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(""),
        status(choice.get("finish_reason").and_then(Value::as_str)),
        output,
        usage(completion.get("usage")),
    ))
}

/// The output item a stream of Responses events has open.
enum Open {
    Message {
        id: String,
        text: String,
    },
    Call {
        k: u64,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Chat completion chunks (the ones a translated target's stream is turned into) as the
/// Responses API's events, one stream's worth, each numbered: `response.created` and
/// `response.in_progress` with the first chunk; a message item with one text part for
/// content (`response.output_text.delta`s), a function call item for each tool call
/// (`response.function_call_arguments.delta`s), each item done before the next is added;
/// `[DONE]` ends the last item and the response (`response.completed`, or
/// `response.incomplete` at the cap), with every item and the usage.
pub(crate) struct Events {
    id: String,
    model: String,
    sequence: u64,
    started: bool,
    open: Option<Open>,
    done: Vec<Value>,
    /// The usage and finish reason, for the end.
    kept: Kept,
}

impl Events {
    pub(crate) fn new(model: &str) -> Self {
        Self {
            id: "resp_translated".into(),
            model: model.to_owned(),
            sequence: 0,
            started: false,
            open: None,
            done: Vec::new(),
            kept: Kept::default(),
        }
    }

    fn event(&mut self, kind: &str, mut data: Value, out: &mut BytesMut) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.extend_from_slice(format!("event: {kind}\ndata: {data}\n\n").as_bytes());
    }

    /// Ends the open item, if any.
    fn close(&mut self, out: &mut BytesMut) {
        let index = self.done.len();
        match self.open.take() {
            Some(Open::Message { id, text }) => {
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                self.event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
                    out,
                );
                self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                    out,
                );
                let item = message_item(&id, &text, "completed");
                self.event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                    out,
                );
                self.done.push(item);
            }
            Some(Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            }) => {
                self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": arguments}),
                    out,
                );
                let item = call_item(&id, &call_id, &name, &arguments, "completed");
                self.event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                    out,
                );
                self.done.push(item);
            }
            None => {}
        }
    }
}

impl ChatStreamWriter for Events {
    fn start(&mut self, chunk: Option<&ChatChunk>, out: &mut BytesMut) {
        if self.started {
            return;
        }
        if let Some(chunk) = chunk {
            if let Some(id) = chunk.id() {
                self.id = format!("resp_{id}");
            }
            if let Some(model) = chunk.model() {
                model.clone_into(&mut self.model);
            }
        }
        let created = response(
            &self.id,
            &self.model,
            ("in_progress", Value::Null),
            Vec::new(),
            Value::Null,
        );
        self.event("response.created", json!({"response": created}), out);
        self.event("response.in_progress", json!({"response": created}), out);
        self.started = true;
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close(out);
            let id = format!("msg_{}", self.done.len());
            let index = self.done.len();
            self.event(
                "response.output_item.added",
                json!({"output_index": index, "item": {"type": "message", "id": id,
                       "status": "in_progress", "role": "assistant", "content": []}}),
                out,
            );
            self.event(
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}}),
                out,
            );
            self.open = Some(Open::Message {
                id,
                text: String::new(),
            });
        }
        let index = self.done.len();
        if let Some(Open::Message { id, text: all }) = &mut self.open {
            all.push_str(text);
            let id = id.clone();
            self.event(
                "response.output_text.delta",
                json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text}),
                out,
            );
        }
    }

    fn call(&mut self, call: &Value, out: &mut BytesMut) {
        let k = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        if !matches!(&self.open, Some(Open::Call { k: open, .. }) if *open == k) {
            self.close(out);
            let call_id = call
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let id = format!("fc_{call_id}");
            let index = self.done.len();
            let item = call_item(&id, &call_id, &name, "", "in_progress");
            self.event(
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
                out,
            );
            self.open = Some(Open::Call {
                k,
                id,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        let index = self.done.len();
        let Some(piece) = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        if let Some(Open::Call { id, arguments, .. }) = &mut self.open {
            arguments.push_str(piece);
            let id = id.clone();
            self.event(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": piece}),
                out,
            );
        }
    }

    fn kept(&mut self) -> &mut Kept {
        &mut self.kept
    }

    fn done(&mut self, out: &mut BytesMut) {
        self.close(out);
        let status = status(self.kept.finish.as_deref());
        let kind = if status.0 == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let response = response(
            &self.id,
            &self.model,
            status,
            self.done.clone(),
            usage(self.kept.usage.as_ref()),
        );
        self.event(kind, json!({"response": response}), out);
    }

    fn error(&mut self, message: &str, out: &mut BytesMut) {
        self.event(
            "error",
            json!({"code": "server_error", "message": message}),
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(request: Value) -> Result<Value, Untranslatable> {
        to_chat(request.as_object().unwrap()).map(Value::Object)
    }

    #[test]
    fn an_agents_request_reads_as_chat() {
        let request = json!({
            "model": "gpt-5", "instructions": "Be brief.", "max_output_tokens": 64,
            "stream": true, "store": false, "reasoning": {"effort": "low"},
            "tools": [{"type": "function", "name": "look", "description": "Looks.",
                       "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "look"},
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Find it."}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
                {"type": "function_call", "call_id": "c1", "name": "look", "arguments": "{\"q\":1}"},
                {"type": "function_call", "call_id": "c2", "name": "look", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "A"},
                {"type": "function_call_output", "call_id": "c2", "output": "B"},
            ],
        });
        assert_eq!(
            chat(request).unwrap(),
            json!({
                "model": "gpt-5", "max_tokens": 64, "stream": true,
                "tools": [{"type": "function", "function": {"name": "look", "description": "Looks.",
                           "parameters": {"type": "object"}}}],
                "tool_choice": {"type": "function", "function": {"name": "look"}},
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Find it."},
                    {"role": "assistant", "content": "Looking.", "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}},
                        {"id": "c2", "type": "function", "function": {"name": "look", "arguments": "{}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "c1", "content": "A"},
                    {"role": "tool", "tool_call_id": "c2", "content": "B"},
                ],
            })
        );
        assert_eq!(
            chat(json!({"input": "hi"})).unwrap(),
            json!({"messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn what_chat_cannot_carry_is_not_translated() {
        for (request, why) in [
            (
                json!({"input": "x", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"input": "x", "tools": [{"type": "web_search"}]}),
                "a hosted tool",
            ),
            (
                json!({"input": "x", "text": {"format": {"type": "json_schema"}}}),
                "a text format other than text",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]}),
                "a content part other than text",
            ),
            (
                json!({"input": [{"type": "web_search_call"}]}),
                "an input item of another kind",
            ),
            (json!({"instructions": "x"}), "a request without input"),
        ] {
            assert_eq!(
                chat(request).unwrap_err().0,
                format!("{why} is not translated")
            );
        }
        assert!(
            chat(json!({"input": "x", "background": false, "text": {"format": {"type": "text"}}}))
                .is_ok()
        );
    }

    #[test]
    fn a_completion_comes_back_as_a_response() {
        let completion = json!({
            "id": "msg_1", "model": "claude-sonnet-4-5",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Looking.",
                "tool_calls": [{"id": "toolu_1", "type": "function",
                                "function": {"name": "look", "arguments": "{\"q\":1}"}}]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                      "prompt_tokens_details": {"cached_tokens": 4}},
        });
        let mut response = response_from_completion(&completion).unwrap();
        response["created_at"] = json!(0);
        assert_eq!(
            response,
            json!({
                "id": "resp_msg_1", "object": "response", "created_at": 0, "status": "completed",
                "incomplete_details": null, "model": "claude-sonnet-4-5",
                "output": [
                    {"type": "message", "id": "msg_msg_1", "status": "completed", "role": "assistant",
                     "content": [{"type": "output_text", "text": "Looking.", "annotations": []}]},
                    {"type": "function_call", "id": "fc_toolu_1", "call_id": "toolu_1", "name": "look",
                     "arguments": "{\"q\":1}", "status": "completed"},
                ],
                "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 4},
                          "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": 17},
            })
        );
    }

    #[test]
    fn chunks_come_back_as_numbered_responses_events() {
        let mut events = Events::new("asked");
        let mut out = BytesMut::new();
        for data in [
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"On "}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"it."}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"look","arguments":""}}]}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#,
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
        let kinds: Vec<&str> = data.iter().map(|d| d["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let numbers: Vec<u64> = data
            .iter()
            .map(|d| d["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, (0..14).collect::<Vec<_>>());
        let done = &data[13]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "On it.");
        assert_eq!(done["output"][1]["call_id"], "t1");
        assert_eq!(done["output"][1]["arguments"], "{}");
        assert_eq!(done["usage"]["input_tokens"], 9);
        assert_eq!(data[12]["output_index"], 1);
    }
}
